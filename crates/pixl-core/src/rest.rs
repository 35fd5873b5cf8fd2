//! Bodies of the REST calls between pixl's own programs (the `pixl` command and the
//! services), defined once so that both sides agree. Like queue messages, they carry
//! project slugs, timestamps and pseudonymous values only.

use serde::{Deserialize, Serialize};

/// `POST /export-patient-data` at export-api: PIXL's body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExportPatientData {
    /// The project's slug or its name (slugified as PIXL does).
    pub project_name: String,
    /// The extract's timestamp, as in its `extract_summary.json`.
    pub extract_datetime: String,
    /// Sent by PIXL's client; ignored (export-api's export tree is `HOST_EXPORT_ROOT_DIR`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_dir: Option<String>,
    /// pixl: export although some reports of the extract are flagged and wait for review
    /// (they are left out); without it the export is refused while any is.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_flagged: bool,
}

/// export-api's answer to `POST /export-patient-data`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PatientDataExported {
    pub project: String,
    /// The extract's time slug (`2023-12-07t14-08-58`).
    pub extract: String,
    /// Rows of the image linker: exported studies of the extract.
    pub linked_studies: usize,
    /// `ftps`, `directory` or `none`.
    pub destination: String,
    /// Remote paths of the uploaded files (empty for `none`).
    pub uploaded: Vec<String>,
    /// Rows of `radiology/radiology.parquet`: de-identified reports exported.
    #[serde(default)]
    pub reports: usize,
    /// Reports left out because they are flagged and wait for review (`skip_flagged`).
    #[serde(default)]
    pub reports_withheld: i64,
    /// Reports ehr-api has not handled yet (not in this export).
    #[serde(default)]
    pub reports_pending: i64,
    /// The release report's JSON file, in export-api's export tree.
    #[serde(default)]
    pub release_report: Option<String>,
}

/// `POST /release-report` at export-api: write an extract's release report again.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReleaseReportRequest {
    /// The project's slug or its name.
    pub project_name: String,
    /// The extract's timestamp, as in its `extract_summary.json`.
    pub extract_datetime: String,
}

/// export-api's answer to `POST /release-report`: the files it wrote.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReleaseReportWritten {
    pub json: String,
    pub html: String,
}

/// The body of every error answer of pixl's services.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub error: String,
}
