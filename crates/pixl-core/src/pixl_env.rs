//! PIXL's environment variables, each with what pixl does with it, so that a PIXL site's
//! `.env` works unchanged and no variable of it is silently ignored.
//!
//! - [`Handling::Same`]: pixl reads it under the same name, with the same meaning.
//! - [`Handling::Alias`]: pixl reads it when its own name for the value is unset (every
//!   binary's [`crate::config::Env`] falls back to it; `pixl dc` passes it to compose under
//!   pixl's name).
//! - [`Handling::Cli`]: read by `pixl` commands only, as PIXL's CLI does.
//! - [`Handling::NoEffect`]: nothing in pixl corresponds (mostly Orthanc's settings);
//!   `pixl check-env` says so, with the reason, whenever one is set.
//!
//! A test keeps this table complete against PIXL's `.env.sample`.

/// What pixl does with one of PIXL's variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// Read under this name, as PIXL does.
    Same,
    /// Read as pixl's variable of the given name when that one is unset.
    Alias(&'static str),
    /// Read by the `pixl` command only; the text says how.
    Cli(&'static str),
    /// Read, with a meaning the text gives.
    Read(&'static str),
    /// Nothing in pixl corresponds; the text says why.
    NoEffect(&'static str),
}

const ORTHANC: &str = "pixl has no Orthanc: anon-node is the DICOM receiver and de-identifier, and its settings are ANON_NODE_*";
const ORTHANC_PORT: &str = "pixl has no Orthanc; anon-node's DICOM port is ANON_NODE_DICOM_PORT and its HTTP port ANON_NODE_HTTP_PORT";

/// Every variable of PIXL's `.env.sample` and of its compose file and services, with what
/// pixl does with it.
pub const PIXL_VARIABLES: &[(&str, Handling)] = &[
    ("DEBUG", Handling::Read("true: services log at debug level when RUST_LOG is unset (pixl --debug for the CLI)")),
    ("PIXL_DICOM_TRANSFER_TIMEOUT", Handling::Same),
    ("PIXL_QUERY_TIMEOUT", Handling::Same),
    ("CLI_RETRY_SECONDS", Handling::Cli("the pause between rounds of `pixl populate --num-retries`")),
    ("PIXL_DB_HOST", Handling::Same),
    ("PIXL_DB_PORT", Handling::Same),
    ("PIXL_DB_NAME", Handling::Same),
    ("PIXL_DB_USER", Handling::Same),
    ("PIXL_DB_PASSWORD", Handling::Same),
    ("SKIP_ALEMBIC", Handling::NoEffect("pixl applies its own migrations (sqlx) at start-up; there is no alembic")),
    ("CLI_PIXL_DB_HOST", Handling::Cli("the Postgres host of `pixl` commands, instead of PIXL_DB_HOST")),
    ("CLI_PIXL_DB_PORT", Handling::Cli("the Postgres port of `pixl` commands, instead of PIXL_DB_PORT")),
    ("ORTHANC_RAW_DB_HOST", Handling::NoEffect(ORTHANC)),
    ("ORTHANC_RAW_DB_PORT", Handling::NoEffect(ORTHANC)),
    ("ORTHANC_RAW_DB_NAME", Handling::NoEffect(ORTHANC)),
    ("ORTHANC_RAW_DB_USER", Handling::NoEffect(ORTHANC)),
    ("ORTHANC_RAW_DB_PASSWORD", Handling::NoEffect(ORTHANC)),
    ("HASHER_API_PORT", Handling::Same),
    ("ORTHANC_ANON_DICOM_PORT", Handling::NoEffect(ORTHANC_PORT)),
    ("ORTHANC_ANON_WEB_PORT", Handling::NoEffect(ORTHANC_PORT)),
    ("ORTHANC_RAW_DICOM_PORT", Handling::Alias("ANON_NODE_DICOM_PORT")),
    ("ORTHANC_RAW_WEB_PORT", Handling::NoEffect(ORTHANC_PORT)),
    ("PIXL_EXPORT_API_PORT", Handling::Cli("with PIXL_EXPORT_API_HOST, export-api's address when EXPORT_API_URL is unset")),
    ("RABBITMQ_PORT", Handling::Same),
    ("RABBITMQ_ADMIN_PORT", Handling::NoEffect("compose runs RabbitMQ without publishing its management UI")),
    ("PIXL_IMAGING_API_PORT", Handling::Cli("with PIXL_IMAGING_API_HOST, imaging-api's address when IMAGING_API_URL is unset")),
    ("FTP_PORT", Handling::NoEffect("PIXL's test FTP server; a project's FTPS port is the secret <prefix>--ftp--port")),
    ("PIXL_EXPORT_API_HOST", Handling::Cli("with PIXL_EXPORT_API_PORT, export-api's address when EXPORT_API_URL is unset")),
    ("PIXL_EXPORT_API_RATE", Handling::NoEffect("export-api takes studies as fast as EXPORT_API_CONCURRENCY allows; it has no rate")),
    ("PIXL_IMAGING_API_HOST", Handling::Cli("with PIXL_IMAGING_API_PORT, imaging-api's address when IMAGING_API_URL is unset")),
    ("PIXL_IMAGING_API_RATE", Handling::Alias("IMAGING_API_RATE")),
    ("HASHER_API_AZ_CLIENT_ID", Handling::Same),
    ("HASHER_API_AZ_CLIENT_PASSWORD", Handling::Same),
    ("HASHER_API_AZ_TENANT_ID", Handling::Same),
    ("HASHER_API_AZ_KEY_VAULT_NAME", Handling::Same),
    ("HASHER_API_AZ_KEY_VAULT_SECRET_NAME", Handling::Alias("AZURE_KEY_VAULT_SECRET_NAME")),
    ("ORTHANC_RAW_URL", Handling::NoEffect(ORTHANC)),
    ("ORTHANC_RAW_USERNAME", Handling::NoEffect(ORTHANC)),
    ("ORTHANC_RAW_PASSWORD", Handling::NoEffect(ORTHANC)),
    ("ORTHANC_RAW_AE_TITLE", Handling::Alias("ANON_NODE_AE_TITLE")),
    ("ORTHANC_AUTOROUTE_RAW_TO_ANON", Handling::NoEffect("every retrieved study is de-identified; there is no switch")),
    ("ORTHANC_RAW_MAXIMUM_STORAGE_SIZE", Handling::Alias("ANON_NODE_RAW_CACHE_MAX_SIZE_MB")),
    ("ORTHANC_RAW_JOB_HISTORY_SIZE", Handling::NoEffect(ORTHANC)),
    ("ORTHANC_CONCURRENT_JOBS", Handling::NoEffect("C-MOVEs run per message; PIXL_MAX_MESSAGES_IN_FLIGHT bounds them")),
    ("ORTHANC_RAW_RECORD_HEADERS", Handling::NoEffect("pixl does not record raw headers (they are identifiable)")),
    ("ORTHANC_RAW_HEADER_LOG_PATH", Handling::NoEffect("pixl does not record raw headers (they are identifiable)")),
    ("ORTHANC_ANON_URL", Handling::NoEffect(ORTHANC)),
    ("ORTHANC_ANON_USERNAME", Handling::NoEffect(ORTHANC)),
    ("ORTHANC_ANON_PASSWORD", Handling::NoEffect(ORTHANC)),
    ("ORTHANC_ANON_AE_TITLE", Handling::NoEffect(ORTHANC)),
    ("ORTHANC_AUTOROUTE_ANON_TO_ENDPOINT", Handling::NoEffect("a project's destination decides; `none` exports nothing")),
    ("ENABLE_DICOM_WEB", Handling::NoEffect("the DICOMweb destination is a project's `destination.dicom: dicomweb`")),
    ("STUDY_TIME_OFFSET", Handling::NoEffect("PIXL passes it to Orthanc and uses it nowhere; dates are shifted per the tag scheme")),
    ("LOCAL_SALT_VALUE", Handling::Same),
    ("PRIMARY_DICOM_SOURCE_AE_TITLE", Handling::Same),
    ("PRIMARY_DICOM_SOURCE_PORT", Handling::Same),
    ("PRIMARY_DICOM_SOURCE_IP_ADDR", Handling::Alias("PRIMARY_DICOM_SOURCE_HOST")),
    ("PRIMARY_DICOM_SOURCE_MODALITY", Handling::Alias("PRIMARY_DICOM_SOURCE_NAME")),
    ("SECONDARY_DICOM_SOURCE_AE_TITLE", Handling::Same),
    ("SECONDARY_DICOM_SOURCE_PORT", Handling::Same),
    ("SECONDARY_DICOM_SOURCE_IP_ADDR", Handling::Alias("SECONDARY_DICOM_SOURCE_HOST")),
    ("SECONDARY_DICOM_SOURCE_MODALITY", Handling::Alias("SECONDARY_DICOM_SOURCE_NAME")),
    ("AZ_DICOM_ENDPOINT_NAME", Handling::NoEffect("DICOMweb servers are not registered by name; the URL is the secret <prefix>--dicomweb--url")),
    ("AZ_DICOM_ENDPOINT_URL", Handling::NoEffect("a project's DICOMweb URL is the secret <prefix>--dicomweb--url")),
    ("AZ_DICOM_ENDPOINT_TOKEN", Handling::NoEffect("a project's DICOMweb token is the secret <prefix>--dicomweb--token")),
    ("AZ_DICOM_ENDPOINT_CLIENT_ID", Handling::NoEffect("pixl does not fetch Azure DICOM service tokens; put a token in <prefix>--dicomweb--token")),
    ("AZ_DICOM_ENDPOINT_CLIENT_SECRET", Handling::NoEffect("pixl does not fetch Azure DICOM service tokens; put a token in <prefix>--dicomweb--token")),
    ("AZ_DICOM_ENDPOINT_TENANT_ID", Handling::NoEffect("pixl does not fetch Azure DICOM service tokens; put a token in <prefix>--dicomweb--token")),
    ("AZ_DICOM_TOKEN_REFRESH_SECS", Handling::NoEffect("pixl does not fetch Azure DICOM service tokens")),
    ("RABBITMQ_HOST", Handling::Same),
    ("RABBITMQ_USERNAME", Handling::Same),
    ("RABBITMQ_PASSWORD", Handling::Same),
    ("PIXL_MAX_MESSAGES_IN_FLIGHT", Handling::Same),
    ("PROJECT_CONFIGS_DIR", Handling::Same),
    ("EXPORT_AZ_CLIENT_ID", Handling::Alias("EXPORT_API_AZ_CLIENT_ID")),
    ("EXPORT_AZ_CLIENT_PASSWORD", Handling::Alias("EXPORT_API_AZ_CLIENT_PASSWORD")),
    ("EXPORT_AZ_TENANT_ID", Handling::Alias("EXPORT_API_AZ_TENANT_ID")),
    ("EXPORT_AZ_KEY_VAULT_NAME", Handling::Alias("EXPORT_API_AZ_KEY_VAULT_NAME")),
    ("ENV", Handling::Same),
    ("OTEL_SDK_DISABLED", Handling::NoEffect("pixl exports Prometheus metrics at /metrics, not OpenTelemetry")),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", Handling::NoEffect("pixl exports Prometheus metrics at /metrics, not OpenTelemetry")),
    ("TZ", Handling::Read("the local time of the PACS query window (compose sets Europe/London, as PIXL's)")),
    ("XNAT_DESTINATION", Handling::Same),
    ("XNAT_OVERWRITE", Handling::Same),
    ("HTTP_TIMEOUT", Handling::NoEffect("uploads have a 30 s connect timeout and a 300 s timeout between bytes, not a whole-request one")),
    ("LOG_LEVEL", Handling::Alias("RUST_LOG")),
    ("POSTGRES_PORT", Handling::NoEffect("it is an older PIXL's name; pixl commands read CLI_PIXL_DB_PORT, else PIXL_DB_PORT")),
];

/// How pixl handles a PIXL variable, if `name` is one.
pub fn handling(name: &str) -> Option<Handling> {
    PIXL_VARIABLES.iter().find(|(pixl, _)| *pixl == name).map(|(_, handling)| *handling)
}

/// PIXL's names for pixl's variable `ours`, in order of preference.
pub fn aliases_of(ours: &str) -> impl Iterator<Item = &'static str> + '_ {
    PIXL_VARIABLES.iter().filter(move |(_, handling)| matches!(handling, Handling::Alias(target) if *target == ours)).map(|(pixl, _)| *pixl)
}

/// A PIXL variable's value as pixl reads it. PIXL's sample gives Orthanc's storage size as
/// `ORTHANC_RAW_MAXIMUM_STORAGE_SIZE= // MB` (Orthanc takes the leading number, none meaning
/// no limit): its leading number, or unset.
pub fn pixl_value(name: &str, value: String) -> Option<String> {
    if name == "ORTHANC_RAW_MAXIMUM_STORAGE_SIZE" {
        let digits: String = value.trim().chars().take_while(char::is_ascii_digit).collect();
        return (!digits.is_empty()).then_some(digits);
    }
    Some(value)
}

/// `lookup`, falling back to PIXL's names for a variable that is unset or blank.
pub fn with_pixl_names(name: &str, lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
    let set = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
    set(name).or_else(|| aliases_of(name).find_map(|pixl| set(pixl).and_then(|value| pixl_value(pixl, value))))
}

/// The process environment, with PIXL's names as fallbacks: what every binary reads.
pub fn process_lookup(name: &str) -> Option<String> {
    with_pixl_names(name, |name| std::env::var(name).ok())
}

/// Where a `pixl` command reaches a service: `url_var` if set, else PIXL's
/// `http://<pixl_host>:<pixl_port>` if either is set, else `default`.
pub fn cli_service_url(lookup: impl Fn(&str) -> Option<String>, url_var: &str, pixl_host: &str, pixl_port: &str, default: &str) -> String {
    let set = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    if let Some(url) = set(url_var) {
        return url;
    }
    let (host, port) = (set(pixl_host), set(pixl_port));
    if host.is_none() && port.is_none() {
        return default.to_owned();
    }
    let default_port = url::Url::parse(default).ok().and_then(|u| u.port()).unwrap_or(80);
    format!("http://{}:{}", host.unwrap_or_else(|| "127.0.0.1".to_owned()), port.unwrap_or_else(|| default_port.to_string()))
}

/// For `pixl dc`: pixl's variables that are unset but have a PIXL name that is set, with
/// that value, so that compose (which knows only pixl's names) sees them.
pub fn compose_aliases(lookup: impl Fn(&str) -> Option<String>) -> Vec<(&'static str, String)> {
    let set = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
    let mut out: Vec<(&'static str, String)> = Vec::new();
    for (pixl, handling) in PIXL_VARIABLES {
        if let Handling::Alias(ours) = handling
            && set(ours).is_none()
            && !out.iter().any(|(name, _)| name == ours)
            && let Some(value) = set(pixl).and_then(|value| pixl_value(pixl, value))
        {
            out.push((ours, value));
        }
    }
    out
}

/// One line per PIXL variable that is set and is not read under its own name: where it
/// goes, or why it has no effect. For `pixl check-env`.
pub fn report(lookup: impl Fn(&str) -> Option<String>) -> Vec<(&'static str, Result<String, String>)> {
    let mut lines = Vec::new();
    for (name, handling) in PIXL_VARIABLES {
        if lookup(name).is_none() {
            continue;
        }
        let line = match handling {
            Handling::Same => continue,
            Handling::Alias(ours) => {
                if lookup(name).and_then(|value| pixl_value(name, value)).is_none() {
                    Err(format!("PIXL variable {name} holds no value pixl can use; {ours} keeps its default"))
                } else if lookup(ours).is_some_and(|v| !v.trim().is_empty()) {
                    Err(format!("PIXL variable {name} is set but {ours} wins (pixl's name for it)"))
                } else {
                    Ok(format!("PIXL variable {name} is read as {ours}"))
                }
            }
            Handling::Cli(how) => Ok(format!("PIXL variable {name} is read by pixl commands: {how}")),
            Handling::Read(how) => Ok(format!("PIXL variable {name} is read: {how}")),
            Handling::NoEffect(why) => Err(format!("PIXL variable {name} has no effect here because {why}")),
        };
        lines.push((*name, line));
    }
    lines
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn pixl_names_fill_in_for_unset_ones() {
        let env: HashMap<&str, &str> = [("EXPORT_AZ_CLIENT_ID", "from-pixl"), ("PRIMARY_DICOM_SOURCE_IP_ADDR", "10.0.0.5"), ("IMAGING_API_RATE", " ")].into();
        let lookup = |name: &str| env.get(name).map(|v| v.to_string());
        assert_eq!(with_pixl_names("EXPORT_API_AZ_CLIENT_ID", lookup).as_deref(), Some("from-pixl"));
        assert_eq!(with_pixl_names("PRIMARY_DICOM_SOURCE_HOST", lookup).as_deref(), Some("10.0.0.5"));
        assert_eq!(with_pixl_names("IMAGING_API_RATE", lookup), None);
        // PIXL's sample: `ORTHANC_RAW_MAXIMUM_STORAGE_SIZE= // MB` means no number.
        for (value, expected) in [(" // MB", None), ("4000 // MB", Some("4000")), ("512", Some("512"))] {
            let env: HashMap<&str, &str> = [("ORTHANC_RAW_MAXIMUM_STORAGE_SIZE", value)].into();
            let lookup = |name: &str| env.get(name).map(|v| v.to_string());
            assert_eq!(with_pixl_names("ANON_NODE_RAW_CACHE_MAX_SIZE_MB", lookup).as_deref(), expected, "{value:?}");
        }
        let passed = compose_aliases(lookup);
        assert!(passed.contains(&("EXPORT_API_AZ_CLIENT_ID", "from-pixl".to_owned())), "{passed:?}");
    }

    #[test]
    fn every_alias_names_a_variable_pixl_reads() {
        for (name, handling) in PIXL_VARIABLES {
            if let Handling::Alias(ours) = handling {
                let known = crate::config::VARIABLES.contains(ours) || *ours == "RUST_LOG";
                assert!(known, "{name} is an alias of {ours}, which pixl does not read");
            }
        }
    }

    #[test]
    fn every_variable_of_pixls_sample_is_handled() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/pixl-configs/PIXL.env.sample");
        let sample = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let names: Vec<&str> = sample
            .lines()
            .map(|line| line.trim_start_matches('#').trim())
            .filter_map(|line| line.split_once('=').map(|(name, _)| name.trim()))
            .filter(|name| !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .collect();
        assert!(names.len() > 60, "{}", names.len());
        for name in names {
            assert!(handling(name).is_some(), "PIXL's {name} is not in PIXL_VARIABLES");
        }
    }

    #[test]
    fn the_report_names_ignored_variables_with_the_reason() {
        let env: HashMap<&str, &str> = [("ORTHANC_RAW_URL", "http://orthanc-raw:8042"), ("EXPORT_AZ_TENANT_ID", "t"), ("PIXL_DB_HOST", "postgres")].into();
        let lines = report(|name| env.get(name).map(|v| v.to_string()));
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            matches!(&lines.iter().find(|(n, _)| *n == "ORTHANC_RAW_URL").unwrap().1, Err(text) if text.contains("has no effect here because pixl has no Orthanc"))
        );
        assert!(matches!(&lines.iter().find(|(n, _)| *n == "EXPORT_AZ_TENANT_ID").unwrap().1, Ok(text) if text.contains("read as EXPORT_API_AZ_TENANT_ID")));
    }
}
