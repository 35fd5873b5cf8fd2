//! Architecture invariant: export-api handles pseudonymous identifiers only. Its sources
//! name no raw-identifier column or type, never call `expose()` (the only way to a raw
//! identifier's value), and the crate does not depend on anon-node (whose raw cache is
//! the identifiable zone), not even for its tests (the tests that run both live in
//! `pixl-system-tests`). A change that breaks this fails here, in review's place.

use std::path::Path;

#[test]
fn export_api_sources_touch_no_raw_identifier() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = Vec::new();
    all_files(&root.join("src"), &mut sources);
    assert!(sources.len() >= 5, "found the sources");
    // Raw columns of `studies` (word-bounded, so `pseudo_study_uid` does not match), the
    // raw-identifier types of pixl-core, and the raw cache.
    let forbidden = regex::Regex::new(
        r"\b(mrn|accession_number|study_uid|resolved_study_uid|series_uids|participant_id|study_date|Mrn|AccessionNumber|StudyUid|SeriesUid|ParticipantId|raw_cache|RawCache)\b|\.expose\(\)",
    )
    .unwrap();
    for source in &sources {
        let text = std::fs::read_to_string(source).unwrap();
        for (number, line) in text.lines().enumerate() {
            assert!(!forbidden.is_match(line), "{}:{}: {line}", source.display(), number + 1);
        }
    }
}

#[test]
fn export_api_does_not_link_anon_node() {
    let manifest = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    assert!(manifest.contains("pixl-core"), "read the manifest");
    assert!(!manifest.contains("pixl-anon-node") && !manifest.contains("pixl-deid"), "export-api must not link anon-node or the file de-identification");
}

fn all_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { all_files(&path, out) } else { out.push(path) }
    }
}
