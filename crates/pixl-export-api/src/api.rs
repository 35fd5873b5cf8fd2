//! export-api's REST face: PIXL's `POST /export-patient-data`, plus `/heart-beat` and
//! `/metrics`.
//!
//! `POST /export-patient-data {"project_name", "extract_datetime"}` (PIXL's body; its
//! `output_dir` is accepted and ignored: the export tree is `HOST_EXPORT_ROOT_DIR`) writes
//! `radiology/IMAGE_LINKER.parquet` for the extract beside the OMOP public files `pixl
//! populate` copied, then uploads every parquet file of the extract to the project's
//! `destination.parquet`. Passing upload problems are retried with a doubling pause up to
//! `EXPORT_API_MAX_ATTEMPTS`; the answer lists what was uploaded where, or says why not.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use pixl_core::export_tree;
use pixl_core::ids::ProjectSlug;
use pixl_core::project_config::{ProjectConfigError, load_project};

use crate::destination::{ParquetBundle, UploadError};
use crate::parquet_check::IdentifierDigests;
use crate::service::Context;

pub use pixl_core::rest::{ExportPatientData, PatientDataExported};

/// Every way the endpoint fails, and its status: the one place statuses are chosen.
#[derive(Debug, thiserror::Error)]
pub enum ExportDataError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("project config: {0}")]
    Project(#[from] ProjectConfigError),
    #[error("upload failed: {0}")]
    Upload(UploadError),
    #[error("{0}")]
    Internal(String),
    /// A file failed the identifier check: nothing was uploaded.
    #[error("refusing to export: {0}")]
    Refused(String),
    #[error(
        "refusing to export: {count} report(s) of this extract are flagged by the second check and wait for review \
         (pixl reports list --project {project}); release or redact them, or export without them (pixl export-patient-data --skip-flagged)"
    )]
    Flagged { count: i64, project: String },
}

impl IntoResponse for ExportDataError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) | Self::Project(ProjectConfigError::Missing { .. }) => StatusCode::NOT_FOUND,
            Self::Project(_) => StatusCode::UNPROCESSABLE_ENTITY,
            // Retried already: still passing means the destination is down right now.
            Self::Upload(error) if error.transient => StatusCode::SERVICE_UNAVAILABLE,
            Self::Upload(_) => StatusCode::BAD_GATEWAY,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Flagged { .. } => StatusCode::CONFLICT,
        };
        if status.is_server_error() {
            tracing::warn!(%status, error = %self, "export-patient-data failed");
        }
        (status, Json(serde_json::json!({ "error": self.to_string() }))).into_response()
    }
}

/// Writes the linker and uploads an extract's parquet files.
#[tracing::instrument(skip_all, fields(project))]
pub async fn export_patient_data(context: &Context, request: ExportPatientData) -> Result<PatientDataExported, ExportDataError> {
    let project = ProjectSlug::from_name(&request.project_name).map_err(|e| ExportDataError::BadRequest(format!("project_name: {e}")))?;
    tracing::Span::current().record("project", project.as_str());
    let extract_datetime =
        export_tree::parse_extract_datetime(request.extract_datetime.trim()).map_err(|e| ExportDataError::BadRequest(format!("extract_datetime {e}")))?;
    let extract_id: Option<i64> = sqlx::query_scalar("SELECT id FROM extracts WHERE project_slug = $1 AND extract_datetime = $2")
        .bind(project.as_str())
        .bind(extract_datetime)
        .fetch_optional(&context.pool)
        .await
        .map_err(|e| ExportDataError::Internal(pixl_core::db::DbFailure::classify(&e).to_string()))?;
    let extract_slug = export_tree::extract_time_slug(extract_datetime);
    let Some(extract_id) = extract_id else {
        return Err(ExportDataError::NotFound(format!("project {project} has no extract of {extract_slug}; populate it first")));
    };
    let loaded = load_project(&context.configs_dir, &project)?;

    let linked = crate::linker::exported_studies(&context.pool, extract_id)
        .await
        .map_err(|e| ExportDataError::Internal(pixl_core::db::DbFailure::classify(&e).to_string()))?;
    let extract_dir = export_tree::extract_dir(&context.export_root, &project, extract_datetime);
    let linker_path = export_tree::radiology_dir(&extract_dir).join(export_tree::IMAGE_LINKER_FILE);
    let rows = linked.clone();
    tokio::task::spawn_blocking(move || crate::linker::write(&linker_path, &rows))
        .await
        .map_err(|e| ExportDataError::Internal(e.to_string()))?
        .map_err(ExportDataError::Internal)?;

    // The reports: none leaves while any of the extract waits for review, unless asked.
    let internal = |e: sqlx::Error| ExportDataError::Internal(pixl_core::db::DbFailure::classify(&e).to_string());
    let ehr = crate::radiology::counts(&context.pool, extract_id).await.map_err(internal)?;
    if ehr.flagged > 0 && !request.skip_flagged {
        return Err(ExportDataError::Flagged { count: ehr.flagged, project: project.as_str().to_owned() });
    }
    let radiology_path = export_tree::radiology_dir(&extract_dir).join(crate::radiology::RADIOLOGY_FILE);
    let report_rows = crate::radiology::rows(&context.pool, extract_id).await.map_err(internal)?;
    let reports = report_rows.len();
    if loaded.config.ehr != pixl_core::project_config::EhrSource::None {
        let path = radiology_path.clone();
        tokio::task::spawn_blocking(move || crate::radiology::write(&path, &report_rows))
            .await
            .map_err(|e| ExportDataError::Internal(e.to_string()))?
            .map_err(ExportDataError::Internal)?;
    }

    let mut exported = PatientDataExported {
        project: project.as_str().to_owned(),
        extract: extract_slug.clone(),
        linked_studies: linked.len(),
        destination: "none".to_owned(),
        uploaded: Vec::new(),
        reports,
        reports_withheld: ehr.flagged,
        reports_pending: ehr.pending,
        release_report: None,
    };
    let (mut files, report_json, scanned) = check_and_report(context, &loaded, extract_id, &extract_slug, &extract_dir, reports).await?;
    exported.release_report = Some(report_json.display().to_string());
    scanned.map_err(|error| {
        metrics::counter!("pixl_export_parquet_refused_total").increment(1);
        tracing::error!(%error, "a parquet file failed the identifier check; nothing was uploaded");
        ExportDataError::Refused(error.to_string())
    })?;
    tracing::info!(files = files.len(), reports, "parquet files passed the identifier check");

    let uploader = context.destinations.parquet(&loaded).await.map_err(ExportDataError::Upload)?;
    let Some(uploader) = uploader else {
        tracing::info!(
            linked = linked.len(),
            reports,
            "image linker, reports and release report written; the project uploads no parquet files (destination none)"
        );
        return Ok(exported);
    };
    files.push(std::path::PathBuf::from(crate::release_report::JSON_FILE));
    files.push(std::path::PathBuf::from(crate::release_report::HTML_FILE));
    let bundle = ParquetBundle { project: project.clone(), extract_time_slug: extract_slug, root: extract_dir, files };
    let mut attempt = 1;
    exported.destination = uploader.kind().to_owned();
    exported.uploaded = loop {
        match uploader.upload_parquet(&bundle).await {
            Ok(uploaded) => break uploaded,
            Err(error) if error.transient && attempt < context.retry.max_attempts => {
                // A person waits on this call: the pauses stay short.
                let pause = context.retry.backoff.pause(attempt).min(Duration::from_secs(60));
                tracing::warn!(%error, attempt, pause_s = pause.as_secs_f64(), "parquet upload failed; retrying");
                tokio::time::sleep(pause).await;
                attempt += 1;
            }
            Err(error) => return Err(ExportDataError::Upload(error)),
        }
    };
    metrics::counter!("pixl_export_parquet_files_total", "destination" => uploader.kind()).increment(exported.uploaded.len() as u64);
    tracing::info!(files = exported.uploaded.len(), linked = linked.len(), destination = uploader.kind(), "extract parquet files exported");
    Ok(exported)
}

/// The identifier check of every parquet file of the extract, and the release report that
/// says what it found (written also when the check blocks the export). Returns the files
/// checked, the report's JSON path and the check's verdict.
async fn check_and_report(
    context: &Context,
    loaded: &pixl_core::project_config::LoadedProject,
    extract_id: i64,
    extract_slug: &str,
    extract_dir: &std::path::Path,
    reports: usize,
) -> Result<(Vec<std::path::PathBuf>, std::path::PathBuf, Result<(), crate::parquet_check::ScanError>), ExportDataError> {
    let internal = |e: sqlx::Error| ExportDataError::Internal(pixl_core::db::DbFailure::classify(&e).to_string());
    let files = if extract_dir.is_dir() {
        crate::linker::parquet_files(extract_dir).map_err(|e| ExportDataError::Internal(format!("cannot list {}: {e}", extract_dir.display())))?
    } else {
        Vec::new()
    };
    let digests = IdentifierDigests::load(&context.pool, loaded.slug.as_str()).await.map_err(internal)?;
    let (check_root, check_files, check_digests) = (extract_dir.to_owned(), files.clone(), digests.clone());
    let scanned = tokio::task::spawn_blocking(move || {
        check_files.iter().try_for_each(|relative| check_digests.scan(&check_root.join(relative), &relative.display().to_string()))
    })
    .await
    .map_err(|_| ExportDataError::Internal("the identifier check of the parquet files failed".to_owned()))?;
    let scan = crate::release_report::ParquetScan {
        files: files.iter().map(|f| f.display().to_string()).collect(),
        identifiers_compared: digests.len(),
        blocked: scanned.as_ref().err().map(ToString::to_string),
    };
    let report = crate::release_report::build(&context.pool, loaded, extract_id, extract_slug, reports, scan).await.map_err(internal)?;
    let report_dir = extract_dir.to_owned();
    let [json, _] = tokio::task::spawn_blocking(move || crate::release_report::write(&report_dir, &report))
        .await
        .map_err(|e| ExportDataError::Internal(e.to_string()))?
        .map_err(|e| ExportDataError::Internal(format!("cannot write the release report in {}: {e}", extract_dir.display())))?;
    Ok((files, json, scanned))
}

/// `POST /release-report` (`pixl release-report`): writes the extract's release report
/// again, from the database, the project's files and a new identifier check of the
/// extract's parquet files as they are in the export tree. Uploads nothing.
#[utoipa::path(post, path = "/release-report", tag = "export",
    responses((status = 200, description = "the files written"), (status = 400, description = "a field is missing or malformed"),
              (status = 404, description = "no such project or extract"), (status = 422, description = "the project config is invalid")))]
async fn release_report_route(
    State(context): State<Arc<Context>>,
    body: Result<Json<pixl_core::rest::ReleaseReportRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<pixl_core::rest::ReleaseReportWritten>, ExportDataError> {
    let Json(request) = body.map_err(|rejection| ExportDataError::BadRequest(rejection_kind(&rejection)))?;
    let project = ProjectSlug::from_name(&request.project_name).map_err(|e| ExportDataError::BadRequest(format!("project_name: {e}")))?;
    let extract_datetime =
        export_tree::parse_extract_datetime(request.extract_datetime.trim()).map_err(|e| ExportDataError::BadRequest(format!("extract_datetime {e}")))?;
    let internal = |e: sqlx::Error| ExportDataError::Internal(pixl_core::db::DbFailure::classify(&e).to_string());
    let extract_id: Option<i64> = sqlx::query_scalar("SELECT id FROM extracts WHERE project_slug = $1 AND extract_datetime = $2")
        .bind(project.as_str())
        .bind(extract_datetime)
        .fetch_optional(&context.pool)
        .await
        .map_err(internal)?;
    let extract_slug = export_tree::extract_time_slug(extract_datetime);
    let extract_id = extract_id.ok_or_else(|| ExportDataError::NotFound(format!("project {project} has no extract of {extract_slug}; populate it first")))?;
    let loaded = load_project(&context.configs_dir, &project)?;
    let extract_dir = export_tree::extract_dir(&context.export_root, &project, extract_datetime);
    let radiology = export_tree::radiology_dir(&extract_dir).join(crate::radiology::RADIOLOGY_FILE);
    let reports = if radiology.is_file() {
        let file = std::fs::File::open(&radiology).map_err(|e| ExportDataError::Internal(format!("cannot read {}: {e}", radiology.display())))?;
        parquet::file::reader::SerializedFileReader::new(file)
            .map(|reader| usize::try_from(parquet::file::reader::FileReader::metadata(&reader).file_metadata().num_rows()).unwrap_or(0))
            .map_err(|_| ExportDataError::Internal(format!("{}: not a readable parquet file", radiology.display())))?
    } else {
        0
    };
    let (_, json, _) = check_and_report(&context, &loaded, extract_id, &extract_slug, &extract_dir, reports).await?;
    let html = json.with_file_name(crate::release_report::HTML_FILE);
    Ok(Json(pixl_core::rest::ReleaseReportWritten { json: json.display().to_string(), html: html.display().to_string() }))
}

/// PIXL's `POST /export-patient-data` `{"project_name", "extract_datetime"}`: writes the
/// image linker and uploads the extract's parquet files (after the identifier check).
#[utoipa::path(post, path = "/export-patient-data", tag = "export",
    responses((status = 200, description = "what was uploaded where"), (status = 400, description = "a field is missing or malformed"),
              (status = 404, description = "no such project or extract"), (status = 422, description = "the project config is invalid, or a file failed the identifier check"),
              (status = 502, description = "the destination refused"), (status = 503, description = "the destination is unreachable; retry later")))]
async fn export_patient_data_route(
    State(context): State<Arc<Context>>,
    body: Result<Json<ExportPatientData>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<PatientDataExported>, ExportDataError> {
    // axum's rejection text quotes serde's message, which can quote a value: only its
    // kind is passed on.
    let Json(request) = body.map_err(|rejection| ExportDataError::BadRequest(rejection_kind(&rejection)))?;
    export_patient_data(&context, request).await.map(Json)
}

/// What was wrong with a JSON body, in pixl's words: a missing field is named (the name
/// is ours); anything else only by kind, since serde quotes unknown keys and bad values.
pub fn rejection_kind(rejection: &axum::extract::rejection::JsonRejection) -> String {
    use axum::extract::rejection::JsonRejection;
    match rejection {
        JsonRejection::MissingJsonContentType(_) => "expected Content-Type: application/json".to_owned(),
        JsonRejection::JsonSyntaxError(_) => "the body is not valid JSON".to_owned(),
        JsonRejection::JsonDataError(error) => {
            let text = error.body_text();
            let missing = text.split("missing field `").nth(1).and_then(|rest| rest.split('`').next());
            match missing.filter(|name| ["project_name", "extract_datetime"].contains(name)) {
                Some(name) => format!("the body lacks field {name}"),
                None => "the body has an unknown or malformed field".to_owned(),
            }
        }
        _ => "the body cannot be read".to_owned(),
    }
}

/// `POST /export-patient-data`, `/heart-beat`, `/metrics`, documented at `/openapi.json`.
pub fn routes(context: Arc<Context>, health: pixl_core::http::Health) -> Router {
    let api = utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(export_patient_data_route))
        .routes(utoipa_axum::routes!(release_report_route))
        .with_state(context)
        .merge(pixl_core::http::observability("export-api", health));
    pixl_core::http::documented(api, "pixl export-api", "Delivery to the research environment: an extract's parquet files and image linker.")
}
