//! The anon store and its HTTP face. De-identified studies live under
//! `<anon store>/<project>/<pseudonymous study uid>/<series>/<sop>.dcm`; export-api fetches
//! one as a zip with `GET /studies/{pseudo_study_uid}/archive[?project=<slug>]`. Entries are
//! stored, not deflated: DICOM pixel data barely compresses and the archive crosses a
//! local network.

use std::path::{Path, PathBuf};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use pixl_core::ids::{ProjectSlug, PseudoStudyUid};
use serde::Deserialize;

use crate::raw_cache::RawCache;

/// The de-identified studies on disk.
#[derive(Debug, Clone)]
pub struct AnonStore {
    root: PathBuf,
}

impl AnonStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Where a project's studies are written.
    pub fn project_dir(&self, project: &ProjectSlug) -> PathBuf {
        self.root.join(project.as_str())
    }

    /// The directory of a study, if it exists: in `project`, or in whichever project has it
    /// (pseudonymous UIDs are 128-bit keyed hashes; two projects never share one).
    pub fn find(&self, uid: &PseudoStudyUid, project: Option<&ProjectSlug>) -> Option<PathBuf> {
        if let Some(project) = project {
            let dir = self.project_dir(project).join(uid.as_str());
            return dir.is_dir().then_some(dir);
        }
        std::fs::read_dir(&self.root).ok()?.filter_map(Result::ok).map(|e| e.path().join(uid.as_str())).find(|dir| dir.is_dir())
    }
}

/// Writes a zip of `study_dir` (entries `<series>/<sop>.dcm`, sorted) to `out`.
pub fn write_zip(study_dir: &Path, out: std::fs::File) -> Result<std::fs::File, String> {
    let mut zip = zip::ZipWriter::new(out);
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored).large_file(false);
    let mut series: Vec<PathBuf> =
        std::fs::read_dir(study_dir).map_err(|e| e.to_string())?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
    series.sort();
    for series_dir in series {
        let series_name = series_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&series_dir)
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
            .collect();
        files.sort();
        for file in files {
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            zip.start_file(format!("{series_name}/{name}"), options).map_err(|e| e.to_string())?;
            let mut input = std::fs::File::open(&file).map_err(|e| e.to_string())?;
            std::io::copy(&mut input, &mut zip).map_err(|e| e.to_string())?;
        }
    }
    zip.finish().map_err(|e| e.to_string())
}

#[derive(Deserialize)]
struct ArchiveQuery {
    project: Option<String>,
}

fn problem(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// A de-identified study as a zip of `<series>/<sop>.dcm` entries (stored, not deflated).
#[utoipa::path(get, path = "/studies/{uid}/archive", tag = "de-identified studies", security(("bearer" = [])),
    params(("uid" = String, Path, description = "pseudonymous StudyInstanceUID"), ("project" = Option<String>, Query, description = "the project's slug")),
    responses((status = 200, description = "the zip", content_type = "application/zip"), (status = 400, description = "not a UID or a slug"),
              (status = 401, description = "missing or wrong bearer token"), (status = 404, description = "no such de-identified study")))]
async fn archive(State(store): State<AnonStore>, UrlPath(uid): UrlPath<String>, Query(query): Query<ArchiveQuery>) -> Response {
    // Validation also keeps the path inside the store: a UID is digits and dots.
    let Ok(uid) = PseudoStudyUid::parse(&uid) else {
        return problem(StatusCode::BAD_REQUEST, "not a study instance UID");
    };
    let project = match query.project.as_deref().map(ProjectSlug::parse) {
        None => None,
        Some(Ok(project)) => Some(project),
        Some(Err(_)) => return problem(StatusCode::BAD_REQUEST, "project is not a project slug"),
    };
    let Some(dir) = store.find(&uid, project.as_ref()) else {
        return problem(StatusCode::NOT_FOUND, "no de-identified study with this UID");
    };
    // Built in an unnamed temporary file beside the store (a study can be gigabytes), then
    // streamed; the file disappears when the response is done.
    let temp_root = store.root.clone();
    let built = tokio::task::spawn_blocking(move || {
        let temp = tempfile::tempfile_in(&temp_root).map_err(|e| e.to_string())?;
        let mut file = write_zip(&dir, temp)?;
        use std::io::Seek;
        let length = file.stream_position().map_err(|e| e.to_string())?;
        file.rewind().map_err(|e| e.to_string())?;
        Ok::<_, String>((file, length))
    })
    .await;
    match built {
        Ok(Ok((file, length))) => {
            metrics::counter!("pixl_anon_node_archives_served_total").increment(1);
            let stream = tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(file), 256 * 1024);
            Response::builder()
                .header(header::CONTENT_TYPE, "application/zip")
                .header(header::CONTENT_LENGTH, length)
                .header(header::CONTENT_DISPOSITION, format!("attachment; filename=\"{}.zip\"", uid.as_str()))
                .body(Body::from_stream(stream))
                .expect("valid response")
        }
        Ok(Err(error)) => {
            tracing::error!(%error, "cannot build a study archive");
            problem(StatusCode::INTERNAL_SERVER_ERROR, "cannot build the archive")
        }
        Err(_) => problem(StatusCode::INTERNAL_SERVER_ERROR, "cannot build the archive"),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CachedQuery {
    study_uid: String,
}

/// `POST /raw-cache/series` `{"study_uid": ...}` → `{"series": {"<series uid>": <instances>},
/// "accepting": bool}`: what the raw cache holds of a study, so that imaging-api moves only
/// what is missing, and whether the cache takes new studies now (backpressure). Inside the
/// identifiable zone (original UIDs); the UID travels in the body, never in a URL that a
/// proxy or access log would keep. Needs the API token.
#[utoipa::path(post, path = "/raw-cache/series", tag = "raw cache (internal)", security(("bearer" = [])),
    responses((status = 200, description = "{\"series\": {<series uid>: <instances>}, \"accepting\": bool}"),
              (status = 400, description = "not {\"study_uid\": <uid>}"), (status = 401, description = "missing or wrong bearer token")))]
async fn cached_series(State(cache): State<RawCache>, body: Result<axum::Json<CachedQuery>, axum::extract::rejection::JsonRejection>) -> Response {
    let Ok(axum::Json(query)) = body else {
        return problem(StatusCode::BAD_REQUEST, "expected {\"study_uid\": <uid>}");
    };
    let Ok(uid) = pixl_core::ids::StudyUid::parse(&query.study_uid) else {
        return problem(StatusCode::BAD_REQUEST, "not a study instance UID");
    };
    let accepting = cache.accepting();
    match tokio::task::spawn_blocking(move || cache.series_counts(&uid)).await {
        Ok(Ok(counts)) => axum::Json(serde_json::json!({ "series": counts, "accepting": accepting })).into_response(),
        _ => problem(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the raw cache"),
    }
}

/// `GET /stores`: disk use of the raw cache and the anon store (sizes and counts only).
#[utoipa::path(get, path = "/stores", tag = "operations",
    responses((status = 200, description = "{\"raw_cache\": {bytes, max_bytes, studies, in_progress, accepting}, \"anon_store\": {bytes, studies}}")))]
async fn stores(State((store, cache)): State<(AnonStore, RawCache)>) -> Response {
    let root = store.root.clone();
    let anon = tokio::task::spawn_blocking(move || disk_use(&root)).await.unwrap_or_default();
    axum::Json(serde_json::json!({
        "raw_cache": cache.usage(),
        "anon_store": { "bytes": anon.0, "studies": anon.1 },
    }))
    .into_response()
}

/// Bytes under `root` and the number of study directories (`<project>/<study>`).
fn disk_use(root: &Path) -> (u64, u64) {
    fn bytes(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| match e.file_type() {
                        Ok(t) if t.is_dir() => bytes(&e.path()),
                        _ => e.metadata().map(|m| m.len()).unwrap_or(0),
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    let studies = std::fs::read_dir(root)
        .map(|projects| projects.filter_map(Result::ok).map(|p| std::fs::read_dir(p.path()).map(|d| d.count() as u64).unwrap_or(0)).sum())
        .unwrap_or(0);
    (bytes(root), studies)
}

/// The node's HTTP API. `/studies/{uid}/archive` and `POST /raw-cache/series` need the API
/// token (when one is configured); `/stores`, `/heart-beat` and `/metrics` are open (they
/// hold counts only). Internal: compose publishes no port of anon-node.
pub fn routes(store: AnonStore, cache: RawCache, token: Option<secrecy::SecretString>, health: pixl_core::http::Health) -> Router {
    let protected = utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(archive))
        .with_state(store.clone())
        .merge(utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(cached_series)).with_state(cache.clone()));
    let protected = match token {
        Some(token) => pixl_core::http::require_bearer(protected, token),
        None => protected,
    };
    let api = protected
        .merge(utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(stores)).with_state((store, cache)))
        .merge(pixl_core::http::observability("anon-node", health));
    pixl_core::http::documented(api, "pixl anon-node", "The archive's C-MOVE destination: its internal HTTP API (not published outside the deployment).")
}
