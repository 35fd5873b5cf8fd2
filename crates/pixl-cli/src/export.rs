//! `pixl export-patient-data PARQUET_DIR`: asks export-api (`EXPORT_API_URL`) to write the
//! image linker of the extract in PARQUET_DIR (its `extract_summary.json` names the project
//! and the timestamp) and to upload the extract's parquet files to the project's
//! destination. PIXL's command and request.

use std::path::Path;
use std::time::Duration;

use pixl_core::rest::{ErrorBody, ExportPatientData, PatientDataExported};

use crate::cohort::omop::read_summary;

/// export-api's address: `EXPORT_API_URL`, else PIXL's `PIXL_EXPORT_API_HOST` and
/// `PIXL_EXPORT_API_PORT`, else `http://127.0.0.1:8003`.
pub fn export_api_url() -> String {
    pixl_core::pixl_env::cli_service_url(
        |name| std::env::var(name).ok(),
        "EXPORT_API_URL",
        "PIXL_EXPORT_API_HOST",
        "PIXL_EXPORT_API_PORT",
        "http://127.0.0.1:8003",
    )
}

/// Sends the request and returns export-api's answer.
pub async fn export_patient_data(base_url: &str, parquet_dir: &Path, timeout: Duration, skip_flagged: bool) -> anyhow::Result<PatientDataExported> {
    let (project, extract_datetime) = read_summary(parquet_dir)?;
    let request = ExportPatientData {
        project_name: project.as_str().to_owned(),
        extract_datetime: extract_datetime.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        output_dir: None,
        skip_flagged,
    };
    let client = pixl_core::http_client::builder(None)?.timeout(timeout).build()?;
    let url = format!("{}/export-patient-data", base_url.trim_end_matches('/'));
    let response =
        client.post(&url).json(&request).send().await.map_err(|e| anyhow::anyhow!("export-api at {base_url} is not reachable ({e}); is it running?"))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        let reason = serde_json::from_str::<ErrorBody>(&text).map(|body| body.error).unwrap_or(text);
        anyhow::bail!("export-api could not export the extract ({status}): {reason}");
    }
    Ok(response.json().await?)
}

/// What `pixl export-patient-data` prints.
pub fn render(exported: &PatientDataExported) -> String {
    let mut out = format!("project {} extract {}: image linker with {} exported studies\n", exported.project, exported.extract, exported.linked_studies);
    out.push_str(&format!("reports: {} exported (radiology/radiology.parquet)", exported.reports));
    if exported.reports_withheld > 0 {
        out.push_str(&format!(", {} flagged and left out (--skip-flagged)", exported.reports_withheld));
    }
    if exported.reports_pending > 0 {
        out.push_str(&format!(", {} not handled by ehr-api yet", exported.reports_pending));
    }
    out.push('\n');
    if let Some(path) = &exported.release_report {
        out.push_str(&format!("release report: {path} (and release-report.html beside it)\n"));
    }
    if exported.destination == "none" {
        out.push_str("the project's parquet destination is none: nothing uploaded\n");
    } else {
        out.push_str(&format!("uploaded {} files to {}:\n", exported.uploaded.len(), exported.destination));
        for path in &exported.uploaded {
            out.push_str(&format!("  {path}\n"));
        }
    }
    out
}
