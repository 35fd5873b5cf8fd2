//! Deployment configuration: read from the environment (and a `.env` file) once at start-up,
//! validated, with secrets wrapped so that they never print.
//!
//! Variable names follow PIXL where PIXL has one. `.env.sample` at the repository root lists
//! exactly the variables read here.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

/// Every environment variable pixl reads, in the order of `.env.sample` (a test keeps the
/// two equal).
pub const VARIABLES: &[&str] = &[
    "ENV",
    "PIXL_DB_HOST",
    "PIXL_DB_PORT",
    "PIXL_DB_USER",
    "PIXL_DB_PASSWORD",
    "PIXL_DB_NAME",
    "CLI_PIXL_DB_HOST",
    "CLI_PIXL_DB_PORT",
    "RABBITMQ_HOST",
    "RABBITMQ_PORT",
    "RABBITMQ_USERNAME",
    "RABBITMQ_PASSWORD",
    "PIXL_QUEUE_PREFIX",
    "PIXL_MAX_MESSAGES_IN_FLIGHT",
    "PIXL_SHUTDOWN_GRACE_SECONDS",
    "PROJECT_CONFIGS_DIR",
    "HOST_EXPORT_ROOT_DIR",
    "PIXL_ROOT",
    "HASHER_API_URL",
    "HASHER_API_HOST",
    "HASHER_API_PORT",
    "HASHER_API_TOKEN",
    "HASHER_API_ALLOW_NO_TOKEN",
    "HASHER_ALGORITHM",
    "AZURE_KEY_VAULT_SECRET_NAME",
    "LOCAL_SALT_VALUE",
    "PIXL_SECRETS_FILE",
    "PIXL_SECRETS_TTL_SECONDS",
    "HASHER_API_AZ_CLIENT_ID",
    "HASHER_API_AZ_CLIENT_PASSWORD",
    "HASHER_API_AZ_TENANT_ID",
    "HASHER_API_AZ_KEY_VAULT_NAME",
    "HASHER_API_AZ_KEY_VAULT_URL",
    "AZURE_AUTHORITY_HOST",
    "PIXL_EXTRA_CA_FILE",
    "IMAGING_API_HOST",
    "IMAGING_API_PORT",
    "IMAGING_API_URL",
    "IMAGING_API_AE_TITLE",
    "PRIMARY_DICOM_SOURCE_AE_TITLE",
    "PRIMARY_DICOM_SOURCE_HOST",
    "PRIMARY_DICOM_SOURCE_PORT",
    "PRIMARY_DICOM_SOURCE_NAME",
    "SECONDARY_DICOM_SOURCE_AE_TITLE",
    "SECONDARY_DICOM_SOURCE_HOST",
    "SECONDARY_DICOM_SOURCE_PORT",
    "SECONDARY_DICOM_SOURCE_NAME",
    "SECONDARY_DICOM_SOURCE_WINDOW",
    "TZ",
    "ANON_NODE_URL",
    "IMAGING_API_RATE",
    "CLI_RETRY_SECONDS",
    "IMAGING_API_MAX_ATTEMPTS",
    "IMAGING_API_RETRY_PAUSE",
    "PIXL_QUERY_TIMEOUT",
    "PIXL_DICOM_TRANSFER_TIMEOUT",
    "ANON_NODE_AE_TITLE",
    "ANON_NODE_DICOM_HOST",
    "ANON_NODE_DICOM_PORT",
    "ANON_NODE_DICOM_PUBLISH_HOST",
    "ANON_NODE_ALLOWED_CALLERS",
    "ANON_NODE_RAW_CACHE_DIR",
    "ANON_NODE_RAW_CACHE_MAX_SIZE_MB",
    "ANON_NODE_RAW_RETENTION_HOURS",
    "ANON_NODE_ANON_STORE_DIR",
    "ANON_NODE_ANON_RETENTION_DAYS",
    "ANON_NODE_SWEEP_SECONDS",
    "ANON_NODE_HTTP_HOST",
    "ANON_NODE_HTTP_PORT",
    "ANON_NODE_API_TOKEN",
    "ANON_NODE_ALLOW_NO_TOKEN",
    "ANON_NODE_CONCURRENCY",
    "ANON_NODE_SCP",
    "EXPORT_API_HOST",
    "EXPORT_API_PORT",
    "EXPORT_API_URL",
    "EXPORT_API_CONCURRENCY",
    "EXPORT_API_MAX_ATTEMPTS",
    "EXPORT_API_RETRY_PAUSE",
    "EXPORT_API_WORK_DIR",
    "EXPORT_DIRECTORY_ROOT",
    "EXPORT_FTPS_TLS",
    "XNAT_DESTINATION",
    "XNAT_OVERWRITE",
    "TRE_API_URL",
    "EXPORT_API_AZ_CLIENT_ID",
    "EXPORT_API_AZ_CLIENT_PASSWORD",
    "EXPORT_API_AZ_TENANT_ID",
    "EXPORT_API_AZ_KEY_VAULT_NAME",
    "EXPORT_API_AZ_KEY_VAULT_URL",
    "EHR_API_HOST",
    "EHR_API_PORT",
    "EHR_API_TOKEN",
    "EHR_API_ALLOW_NO_TOKEN",
    "EHR_API_CONCURRENCY",
    "EHR_API_MAX_ATTEMPTS",
    "EHR_API_RETRY_PAUSE",
    "EMAP_DB_HOST",
    "EMAP_DB_PORT",
    "EMAP_DB_NAME",
    "EMAP_DB_USER",
    "EMAP_DB_PASSWORD",
    "EMAP_DB_SCHEMA_NAME",
    "EMAP_OBSERVATION_HEIGHT",
    "EMAP_OBSERVATION_WEIGHT",
    "EMAP_OBSERVATION_GCS",
    "PIXL_LOG_FORMAT",
    "RUST_LOG",
    "DEBUG",
];

/// A configuration value that is missing or malformed. Names the variable; never echoes a
/// secret value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{variable} is invalid: {problem}")]
    Invalid { variable: &'static str, problem: String },
    #[error("could not read {path}: {problem}")]
    DotEnv { path: PathBuf, problem: String },
}

/// The one environment reader of every pixl binary: values come through a lookup (the
/// process environment, or a map in tests), a blank value counts as unset, and every
/// problem is a [`ConfigError`] naming the variable, never echoing a secret.
pub struct Env<F> {
    lookup: F,
}

impl<F> std::fmt::Debug for Env<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Env")
    }
}

impl Env<fn(&str) -> Option<String>> {
    /// The process environment.
    pub fn process() -> Self {
        Env { lookup: |name| std::env::var(name).ok() }
    }
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    pub fn new(lookup: F) -> Self {
        Self { lookup }
    }

    /// The trimmed value, if set and not blank; else the value of PIXL's name for the same
    /// setting ([`crate::pixl_env`]), if that is set.
    pub fn get(&self, name: &str) -> Option<String> {
        crate::pixl_env::with_pixl_names(name, &self.lookup).map(|value| value.trim().to_owned())
    }

    /// " (set as PIXL's X)" when `name` is unset and its value comes from PIXL's name, for
    /// error messages.
    fn origin(&self, name: &str) -> String {
        let set = |name: &str| (self.lookup)(name).is_some_and(|v| !v.trim().is_empty());
        if set(name) {
            return String::new();
        }
        crate::pixl_env::aliases_of(name).find(|pixl| set(pixl)).map(|pixl| format!(" (set as PIXL's {pixl})")).unwrap_or_default()
    }

    pub fn text(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or_else(|| default.to_owned())
    }

    pub fn path(&self, name: &str, default: &str) -> PathBuf {
        PathBuf::from(self.text(name, default))
    }

    /// A number within `min..=max`.
    pub fn number<T>(&self, name: &'static str, default: T, min: T, max: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse::<T>()
                .ok()
                .filter(|value| *value >= min && *value <= max)
                .ok_or_else(|| ConfigError::Invalid { variable: name, problem: format!("{raw:?} is not a number from {min} to {max}{}", self.origin(name)) }),
        }
    }

    /// A duration in (fractional) seconds within `0..=max_seconds`.
    pub fn seconds(&self, name: &'static str, default: f64, max_seconds: f64) -> Result<std::time::Duration, ConfigError> {
        let seconds = self.number(name, default, 0.0, max_seconds)?;
        Ok(std::time::Duration::from_secs_f64(seconds))
    }

    /// `true`/`false` (also `1`/`0`, `yes`/`no`).
    pub fn flag(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name).map(|v| v.to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if ["true", "1", "yes"].contains(&v.as_str()) => Ok(true),
            Some(v) if ["false", "0", "no"].contains(&v.as_str()) => Ok(false),
            Some(v) => Err(ConfigError::Invalid { variable: name, problem: format!("{v:?} is neither true nor false{}", self.origin(name)) }),
        }
    }

    /// One of `choices` (by name).
    pub fn choice<T: Copy>(&self, name: &'static str, default: &str, choices: &[(&str, T)]) -> Result<T, ConfigError> {
        let value = self.text(name, default);
        choices.iter().find(|(text, _)| *text == value).map(|(_, choice)| *choice).ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(text, _)| *text).collect();
            ConfigError::Invalid { variable: name, problem: format!("{value:?} is not one of {}{}", names.join(", "), self.origin(name)) }
        })
    }

    /// `host_var`:`port_var` as a socket address to bind or reach.
    pub fn socket(&self, host_var: &'static str, port_var: &'static str, default_host: &str, default_port: u16) -> Result<std::net::SocketAddr, ConfigError> {
        let host = self.text(host_var, default_host);
        let port = self.number(port_var, default_port, 0, u16::MAX)?;
        format!("{host}:{port}").parse().map_err(|_| ConfigError::Invalid { variable: host_var, problem: format!("{host:?} is not an IP address") })
    }

    /// A DICOM AE title: 1-16 printable ASCII characters.
    pub fn ae_title(&self, name: &'static str, default: &str) -> Result<String, ConfigError> {
        let value = self.text(name, default);
        if value.is_empty() || value.len() > 16 || !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::Invalid { variable: name, problem: format!("an AE title is 1-16 printable characters{}", self.origin(name)) });
        }
        Ok(value)
    }

    /// An http(s) URL.
    pub fn url(&self, name: &'static str, default: &str) -> Result<String, ConfigError> {
        let value = self.text(name, default);
        match url::Url::parse(&value) {
            Ok(parsed) if ["http", "https"].contains(&parsed.scheme()) => Ok(value),
            _ => Err(ConfigError::Invalid { variable: name, problem: format!("not an http(s) URL{}", self.origin(name)) }),
        }
    }

    /// The lookup, with PIXL's names as fallbacks, for readers of a variable family (the
    /// secret stores).
    pub fn lookup(&self) -> impl Fn(&str) -> Option<String> + '_ {
        |name| crate::pixl_env::with_pixl_names(name, &self.lookup)
    }
}

/// A service's bearer token from `token_var`: required, unless `allow_var` is explicitly
/// true (development only), because an open internal API is a door to identifiable data.
pub fn api_token<F: Fn(&str) -> Option<String>>(env: &Env<F>, token_var: &'static str, allow_var: &'static str) -> Result<Option<SecretString>, ConfigError> {
    let token = env.get(token_var);
    if token.as_deref().is_some_and(|t| t.starts_with("change-me")) {
        return Err(ConfigError::Invalid { variable: token_var, problem: "still holds the placeholder of .env.sample: set a long random value".to_owned() });
    }
    let token = token.map(SecretString::from);
    if token.is_none() && !env.flag(allow_var, false)? {
        return Err(ConfigError::Invalid {
            variable: token_var,
            problem: format!("is required (a bearer token); for development only, {allow_var}=true runs without one"),
        });
    }
    Ok(token)
}

/// Loads `.env` from the working directory into the process environment, if the file
/// exists. Variables already set in the environment win, as with docker compose.
pub fn load_dotenv() -> Result<Option<PathBuf>, ConfigError> {
    load_dotenv_from(Path::new(".env"))
}

/// As [`load_dotenv`], for an explicit file.
///
/// Read as docker compose and PIXL's python-decouple read it: a line dotenvy refuses (an
/// unquoted value with spaces, such as PIXL's sample line
/// `ORTHANC_RAW_MAXIMUM_STORAGE_SIZE= // MB`) keeps its raw value (trimmed, without a
/// ` #` comment) rather than failing every command.
pub fn load_dotenv_from(path: &Path) -> Result<Option<PathBuf>, ConfigError> {
    if !path.exists() {
        return Ok(None);
    }
    let unreadable = |problem: String| ConfigError::DotEnv { path: path.to_owned(), problem };
    let text = std::fs::read_to_string(path).map_err(|e| unreadable(e.to_string()))?;
    let pairs = dotenv_pairs(&text).map_err(|index| {
        // dotenvy's parse errors quote the offending text, which may be a secret: only
        // where it is.
        unreadable(format!("syntax error at character {index}"))
    })?;
    // The pairs again, each quoted so that dotenvy takes it as is, and loaded by dotenvy
    // (which leaves variables already in the environment alone).
    let quoted: String = pairs
        .iter()
        .map(|(name, value)| {
            if value.contains('\'') {
                format!("{name}=\"{}\"\n", value.replace('\\', "\\\\").replace('"', "\\\"").replace('$', "\\$"))
            } else {
                format!("{name}='{value}'\n")
            }
        })
        .collect();
    dotenvy::from_read(quoted.as_bytes()).map_err(|_| unreadable("cannot be parsed".to_owned()))?;
    Ok(Some(path.to_owned()))
}

/// The `(name, value)` pairs of a `.env` text (see [`load_dotenv_from`]). `Err` holds the
/// character index of a syntax error in a multi-line quoted value.
pub fn dotenv_pairs(text: &str) -> Result<Vec<(String, String)>, usize> {
    let parse = |text: &str| -> Result<Vec<(String, String)>, dotenvy::Error> { dotenvy::from_read_iter(text.as_bytes()).collect() };
    if let Ok(pairs) = parse(text) {
        return Ok(pairs);
    }
    let mut pairs = Vec::new();
    for line in text.lines() {
        match parse(line) {
            Ok(found) => pairs.extend(found),
            Err(dotenvy::Error::LineParse(_, index)) => {
                let line = line.trim_start().strip_prefix("export ").unwrap_or(line.trim_start());
                let Some((name, raw)) = line.split_once('=') else { return Err(index) };
                let name = name.trim();
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                    return Err(index);
                }
                let raw = raw.split(" #").next().unwrap_or_default().trim();
                pairs.push((name.to_owned(), raw.to_owned()));
            }
            Err(_) => return Err(0),
        }
    }
    Ok(pairs)
}

/// Connection settings for the pixl Postgres database.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Wrapped so that `Debug` prints a redaction.
    pub password: SecretString,
    /// Database name; created at start-up if the server has no database of that name.
    pub name: String,
}

impl DatabaseSettings {
    pub fn connect_options(&self) -> sqlx::postgres::PgConnectOptions {
        self.connect_options_for(&self.name)
    }

    /// Options for another database on the same server (used to create ours).
    pub fn connect_options_for(&self, database: &str) -> sqlx::postgres::PgConnectOptions {
        let options = sqlx::postgres::PgConnectOptions::new().host(&self.host).port(self.port).username(&self.user).database(database).application_name("pixl");
        let password = self.password.expose_secret();
        if password.is_empty() { options } else { options.password(password) }
    }
}

/// Connection settings for RabbitMQ.
#[derive(Debug, Clone)]
pub struct RabbitSettings {
    pub host: String,
    pub port: u16,
    pub username: String,
    /// Wrapped so that `Debug` prints a redaction.
    pub password: SecretString,
}

impl RabbitSettings {
    /// The AMQP URI. Contains the password: pass it to lapin, never print it.
    pub fn amqp_uri(&self) -> SecretString {
        let encode = |s: &str| {
            s.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        };
        SecretString::from(format!("amqp://{}:{}@{}:{}/%2f", encode(&self.username), encode(self.password.expose_secret()), self.host, self.port))
    }
}

/// Everything a pixl binary needs to know about its deployment.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub rabbitmq: RabbitSettings,
    /// Where `<slug>.yaml` project configs and their `tag-operations/` live.
    pub project_configs_dir: PathBuf,
    /// Root of the export tree: `<slug>/all_extracts/<extract-ts>/...`.
    pub host_export_root_dir: PathBuf,
    /// Upper bound on messages a consumer processes at once (RabbitMQ prefetch).
    pub max_messages_in_flight: u16,
    /// Prepended to every queue and exchange name. Empty in deployments; tests use a
    /// unique prefix so that they can share one broker.
    pub queue_prefix: String,
    /// `ENV` of PIXL (dev, test, prod...): names the docker compose project.
    pub env_name: String,
    /// `PIXL_SHUTDOWN_GRACE_SECONDS` (default 8): how long in-flight messages may go on after
    /// SIGTERM; within compose's stop timeout (10 s by default).
    pub shutdown_grace: std::time::Duration,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`Settings::from_env`], for `pixl` commands: PIXL's `CLI_PIXL_DB_HOST` and
    /// `CLI_PIXL_DB_PORT` (how a command on the docker host reaches the compose Postgres)
    /// win over `PIXL_DB_HOST` and `PIXL_DB_PORT`, as in PIXL's CLI.
    pub fn for_cli_from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let cli = |name: &str| match name {
            "PIXL_DB_HOST" => lookup("CLI_PIXL_DB_HOST").filter(|v| !v.trim().is_empty()).or_else(|| lookup(name)),
            "PIXL_DB_PORT" => lookup("CLI_PIXL_DB_PORT").filter(|v| !v.trim().is_empty()).or_else(|| lookup(name)),
            _ => lookup(name),
        };
        Self::from_lookup(cli)
    }

    /// Reads settings through `lookup`, so that tests need not touch the process
    /// environment. An empty value counts as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env::new(|name: &str| {
            debug_assert!(VARIABLES.contains(&name) || crate::pixl_env::handling(name).is_some(), "{name} must be listed in VARIABLES and .env.sample");
            lookup(name)
        });
        let get = |name: &str| env.get(name);
        let text = |name: &'static str, default: &str| env.text(name, default);
        let number = |name: &'static str, default: u16, min: u16| env.number(name, default, min, u16::MAX);

        let queue_prefix = text("PIXL_QUEUE_PREFIX", "");
        if !queue_prefix.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(ConfigError::Invalid { variable: "PIXL_QUEUE_PREFIX", problem: "only letters, digits, '-', '_' and '.' are allowed".to_owned() });
        }

        Ok(Self {
            database: DatabaseSettings {
                host: text("PIXL_DB_HOST", "127.0.0.1"),
                port: number("PIXL_DB_PORT", 5432, 1)?,
                user: text("PIXL_DB_USER", "postgres"),
                password: SecretString::from(get("PIXL_DB_PASSWORD").unwrap_or_default()),
                name: text("PIXL_DB_NAME", "pixl"),
            },
            rabbitmq: RabbitSettings {
                host: text("RABBITMQ_HOST", "127.0.0.1"),
                port: number("RABBITMQ_PORT", 5672, 1)?,
                username: text("RABBITMQ_USERNAME", "guest"),
                password: SecretString::from(text("RABBITMQ_PASSWORD", "guest")),
            },
            project_configs_dir: PathBuf::from(text("PROJECT_CONFIGS_DIR", "projects/configs")),
            host_export_root_dir: PathBuf::from(text("HOST_EXPORT_ROOT_DIR", "./exports")),
            max_messages_in_flight: number("PIXL_MAX_MESSAGES_IN_FLIGHT", 5, 1)?,
            queue_prefix,
            env_name: text("ENV", "dev"),
            shutdown_grace: env.seconds("PIXL_SHUTDOWN_GRACE_SECONDS", 8.0, 3600.0)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_suit_a_local_machine() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.database.host, "127.0.0.1");
        assert_eq!(s.database.port, 5432);
        assert_eq!(s.database.name, "pixl");
        assert_eq!(s.rabbitmq.port, 5672);
        assert_eq!(s.max_messages_in_flight, 5);
        assert_eq!(s.project_configs_dir, PathBuf::from("projects/configs"));
    }

    #[test]
    fn bad_numbers_name_the_variable() {
        let err = settings(&[("PIXL_DB_PORT", "five")]).unwrap_err().to_string();
        assert!(err.starts_with("PIXL_DB_PORT is invalid"), "{err}");
        let err = settings(&[("PIXL_MAX_MESSAGES_IN_FLIGHT", "0")]).unwrap_err().to_string();
        assert!(err.contains("PIXL_MAX_MESSAGES_IN_FLIGHT"), "{err}");
        let err = settings(&[("PIXL_QUEUE_PREFIX", "a b")]).unwrap_err().to_string();
        assert!(err.contains("PIXL_QUEUE_PREFIX"), "{err}");
    }

    #[test]
    fn env_sample_lists_exactly_the_variables_read() {
        let sample = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.env.sample")).unwrap();
        let listed: Vec<&str> = sample
            .lines()
            .map(|line| line.trim_start_matches('#').trim())
            .filter_map(|line| line.split_once('=').map(|(name, _)| name))
            .filter(|name| !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
            .collect();
        assert_eq!(listed, VARIABLES);
    }

    #[test]
    fn dotenv_files_read_as_compose_reads_them() {
        let pixl_sample = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/pixl-configs/PIXL.env.sample")).unwrap();
        let pairs = dotenv_pairs(&pixl_sample).unwrap();
        let value = |name: &str| pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(value("ORTHANC_RAW_MAXIMUM_STORAGE_SIZE"), Some("// MB"));
        assert_eq!(value("LOCAL_SALT_VALUE"), Some("PIXL"));
        assert_eq!(value("SECONDARY_DICOM_SOURCE_MODALITY"), Some("UCSECONDARYQR"));
        assert_eq!(value("SECONDARY_DICOM_SOURCE_AE_TITLE"), None, "commented out");
        let ours = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.env.sample")).unwrap();
        let pairs = dotenv_pairs(&ours).unwrap();
        assert!(pairs.contains(&("SECONDARY_DICOM_SOURCE_WINDOW".to_owned(), "weekdays 20:00-08:00".to_owned())), "{pairs:?}");
        assert_eq!(dotenv_pairs("A=\"unclosed\nB=2\n").map(|p| p.len()).unwrap_or(0), 2);
    }

    #[test]
    fn secrets_do_not_print() {
        let s = settings(&[("PIXL_DB_PASSWORD", "hunter2-db"), ("RABBITMQ_PASSWORD", "hunter2-mq")]).unwrap();
        let printed = format!("{s:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
    }

    #[test]
    fn amqp_uri_percent_encodes_credentials() {
        let s = settings(&[("RABBITMQ_USERNAME", "us er"), ("RABBITMQ_PASSWORD", "p@ss/word")]).unwrap();
        assert_eq!(s.rabbitmq.amqp_uri().expose_secret(), "amqp://us%20er:p%40ss%2Fword@127.0.0.1:5672/%2f");
    }

    #[test]
    fn malformed_dotenv_is_reported_without_its_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, "GOOD=1\nBAD LINE secret-value\n").unwrap();
        let err = load_dotenv_from(&path).unwrap_err().to_string();
        assert!(err.contains(".env"), "{err}");
        assert!(!err.contains("secret-value"), "{err}");
    }
}
