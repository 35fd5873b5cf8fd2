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
}

/// The body of every error answer of pixl's services.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub error: String,
}
