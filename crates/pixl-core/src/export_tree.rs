//! The export tree under `HOST_EXPORT_ROOT_DIR`, PIXL's layout, shared by `pixl populate`
//! (which copies an extract's public OMOP files in) and export-api (which adds the image
//! linker and uploads the parquet files):
//!
//! ```text
//! <root>/<slug>/all_extracts/<extract time slug>/omop/public/...   (OMOP-ES public tables)
//! <root>/<slug>/all_extracts/<extract time slug>/radiology/IMAGE_LINKER.parquet
//! <root>/<slug>/latest -> all_extracts/<newest extract time slug>
//! ```
//!
//! Everything in it is de-identified: the private (linking) files of an extract are never
//! copied here.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::ids::ProjectSlug;

/// File name of the table linking OMOP procedures to pseudonymous studies.
pub const IMAGE_LINKER_FILE: &str = "IMAGE_LINKER.parquet";

/// PIXL's name for an extract's directory: the slugified ISO timestamp
/// (`2023-12-07 14:08:58` becomes `2023-12-07t14-08-58`).
pub fn extract_time_slug(extract_datetime: DateTime<Utc>) -> String {
    extract_datetime.naive_utc().format("%Y-%m-%dt%H-%M-%S").to_string()
}

/// Parses an extract timestamp: RFC 3339 (`2023-01-01T00:00:00Z`), or a naive
/// `YYYY-MM-DD HH:MM:SS` / `YYYY-MM-DDTHH:MM:SS` taken as UTC (OMOP-ES writes these, and
/// PIXL's `export-patient-data` sends the latter).
pub fn parse_extract_datetime(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(value) = DateTime::parse_from_rfc3339(text) {
        return Ok(value.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(value) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Ok(value.and_utc());
        }
    }
    Err("is not a timestamp (expected e.g. 2023-12-07T14:08:58Z)".to_owned())
}

/// `<root>/<slug>`: a project's part of the tree.
pub fn project_dir(root: &Path, project: &ProjectSlug) -> PathBuf {
    root.join(project.as_str())
}

/// `all_extracts/<extract time slug>`, relative to the project's directory (the target of
/// the `latest` link).
pub fn relative_extract_dir(extract_datetime: DateTime<Utc>) -> PathBuf {
    Path::new("all_extracts").join(extract_time_slug(extract_datetime))
}

/// `<root>/<slug>/all_extracts/<extract time slug>`: everything exported for one extract.
pub fn extract_dir(root: &Path, project: &ProjectSlug, extract_datetime: DateTime<Utc>) -> PathBuf {
    project_dir(root, project).join(relative_extract_dir(extract_datetime))
}

/// `<extract dir>/omop/public`: the extract's public OMOP-ES tables.
pub fn public_dir(extract_dir: &Path) -> PathBuf {
    extract_dir.join("omop").join("public")
}

/// `<extract dir>/radiology`: the image linker.
pub fn radiology_dir(extract_dir: &Path) -> PathBuf {
    extract_dir.join("radiology")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_every_style_pixl_writes() {
        let expected = "2023-12-07T14:08:58Z";
        for text in ["2023-12-07T14:08:58Z", "2023-12-07 14:08:58", "2023-12-07T14:08:58", "2023-12-07T15:08:58+01:00"] {
            let parsed = parse_extract_datetime(text).unwrap();
            assert_eq!(parsed.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), expected, "{text}");
        }
        assert!(parse_extract_datetime("07/12/2023").is_err());
    }

    #[test]
    fn layout_matches_pixl() {
        let at = DateTime::parse_from_rfc3339("2023-12-07T14:08:58Z").unwrap().with_timezone(&Utc);
        assert_eq!(extract_time_slug(at), "2023-12-07t14-08-58");
        let project = ProjectSlug::parse("my-project").unwrap();
        let extract = extract_dir(Path::new("/exports"), &project, at);
        assert_eq!(extract, Path::new("/exports/my-project/all_extracts/2023-12-07t14-08-58"));
        assert_eq!(public_dir(&extract), Path::new("/exports/my-project/all_extracts/2023-12-07t14-08-58/omop/public"));
        assert_eq!(
            radiology_dir(&extract).join(IMAGE_LINKER_FILE),
            Path::new("/exports/my-project/all_extracts/2023-12-07t14-08-58/radiology/IMAGE_LINKER.parquet")
        );
    }
}
