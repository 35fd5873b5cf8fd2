//! The shipped default views and views read from a folder.

use std::path::{Path, PathBuf};

use crate::view::{View, ViewError, is_shorthand, views_from_shorthand};

/// The default views (SQL on FHIR v2 ViewDefinitions in `crates/pixl-fhir/views/`).
const DEFAULTS: &[(&str, &str)] = &[
    ("allergy_intolerance", include_str!("../views/allergy_intolerance.json")),
    ("condition", include_str!("../views/condition.json")),
    ("diagnostic_report", include_str!("../views/diagnostic_report.json")),
    ("encounter", include_str!("../views/encounter.json")),
    ("imaging_study", include_str!("../views/imaging_study.json")),
    ("immunization", include_str!("../views/immunization.json")),
    ("medication_request", include_str!("../views/medication_request.json")),
    ("observation", include_str!("../views/observation.json")),
    ("observation_component", include_str!("../views/observation_component.json")),
    ("patient", include_str!("../views/patient.json")),
    ("procedure", include_str!("../views/procedure.json")),
];

/// Why views could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ViewsError {
    #[error("cannot read views from {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not JSON (line {line}, column {column})")]
    Json { path: PathBuf, line: usize, column: usize },
    #[error("{path}: {source}")]
    View { path: PathBuf, source: ViewError },
    #[error("{0} holds no view (.json files)")]
    Empty(PathBuf),
}

/// The shipped default views.
pub fn default_views() -> Vec<View> {
    DEFAULTS
        .iter()
        .map(|(name, text)| {
            let json: serde_json::Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("shipped view {name} is not JSON: {e}"));
            View::from_json(&json).unwrap_or_else(|e| panic!("shipped view {name} is not valid: {e}"))
        })
        .collect()
}

/// The views of a folder: every `.json` file, a ViewDefinition (or a JSON array of them)
/// or the workshop's shorthand (`{"Patient": [["name", "path"], ...]}`).
pub fn load_views(dir: &Path) -> Result<Vec<View>, ViewsError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ViewsError::Read { path: dir.to_owned(), source })?;
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|e| e == "json")).collect();
    files.sort();
    let mut views = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(|source| ViewsError::Read { path: path.clone(), source })?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| ViewsError::Json { path: path.clone(), line: e.line(), column: e.column() })?;
        let wrap = |source| ViewsError::View { path: path.clone(), source };
        if is_shorthand(&json) {
            views.extend(views_from_shorthand(&json).map_err(wrap)?);
        } else if let Some(list) = json.as_array() {
            for item in list {
                views.push(View::from_json(item).map_err(wrap)?);
            }
        } else {
            views.push(View::from_json(&json).map_err(wrap)?);
        }
    }
    if views.is_empty() {
        return Err(ViewsError::Empty(dir.to_owned()));
    }
    Ok(views)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_shipped_views_are_valid_and_named_apart() {
        let views = super::default_views();
        let names: std::collections::BTreeSet<&str> = views.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names.len(), views.len());
        for ty in [
            "Patient",
            "Encounter",
            "Condition",
            "Observation",
            "MedicationRequest",
            "Procedure",
            "DiagnosticReport",
            "ImagingStudy",
            "AllergyIntolerance",
            "Immunization",
        ] {
            assert!(views.iter().any(|v| v.resource == ty), "{ty}");
        }
    }
}
