//! PIXL's own project configs (`../shared/fixtures/pixl-configs/`, as PIXL's sites use them)
//! load unchanged, and each project's scheme de-identifies a generated instance of one of
//! its modalities from one of its allowed manufacturers: written, marked, pseudonymous,
//! with no original identifier left (the run's own check against the originals).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dicom_dictionary_std::tags;
use pixl_core::hashing::{HashAlgorithm, ProjectKeys};
use pixl_core::project_config::load_all;
use pixl_deid::Project;
use pixl_dicom::scheme::TagOp;
use pixl_testkit::dicom::Synthetic;

fn fixtures() -> PathBuf {
    pixl_testkit::repo_root().join("../shared/fixtures/pixl-configs")
}

/// A manufacturer name the project allows: the first of some real makers' names that one
/// of its regexes matches.
fn allowed_manufacturer(project: &Project) -> String {
    const MAKERS: &[&str] = &["Carestream Health", "Company", "SIEMENS", "Philips Medical Systems", "GE MEDICAL SYSTEMS", "TOSHIBA", "FUJIFILM"];
    let patterns: Vec<regex::Regex> =
        project.loaded.config.allowed_manufacturers.iter().map(|m| regex::RegexBuilder::new(&m.regex).case_insensitive(true).build().unwrap()).collect();
    MAKERS
        .iter()
        .find(|maker| patterns.iter().any(|p| p.is_match(maker)))
        .unwrap_or_else(|| panic!("no known maker is allowed by {}", project.loaded.slug))
        .to_string()
}

fn text(object: &dicom_object::DefaultDicomObject, tag: dicom_core::Tag) -> String {
    object.element(tag).unwrap().to_str().unwrap().trim().to_owned()
}

fn outputs(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if dir.exists() {
        pixl_testkit::dicom::all_files(dir, &mut files);
    }
    files
}

#[tokio::test]
async fn every_pixl_config_loads_and_deidentifies_an_instance() {
    let configs = fixtures();
    let results = load_all(&configs).expect("the fixtures directory is readable");
    assert!(results.len() >= 13, "PIXL's configs are there: {}", results.len());
    let mut slugs = Vec::new();
    for result in results {
        let loaded = result.unwrap_or_else(|error| panic!("a PIXL config is rejected: {error}"));
        slugs.push(loaded.slug.clone());
    }

    for slug in slugs {
        let project = Arc::new(Project::load(&configs, &slug).unwrap_or_else(|error| panic!("{slug}: {error}")));
        let modality = project.loaded.config.project.modalities[0].clone();
        let dir = tempfile::tempdir().unwrap();
        let count = project.loaded.config.min_instances_per_series.max(1);
        let mut inputs = Vec::new();
        for n in 0..count {
            let mut instance = Synthetic::new(&modality, n + 1);
            instance.manufacturer = Some(allowed_manufacturer(&project));
            let path = dir.path().join(format!("in-{n}.dcm"));
            instance.write(&path);
            inputs.push(path);
        }
        let keys = ProjectKeys::new(b"fixture-key".to_vec(), "fixture-salt-0123".to_owned(), String::new(), HashAlgorithm::PixlBlake2b).unwrap();
        let out = dir.path().join("out");
        let summary = pixl_deid::deidentify_files(Arc::clone(&project), inputs.clone(), Default::default(), &keys, out.clone()).await.unwrap();
        assert_eq!(summary.written, u64::from(count), "{slug}: {summary}");

        let manufacturer = allowed_manufacturer(&project);
        let patient_id_op = project.scheme.resolve(Some(&manufacturer)).op(tags::PATIENT_ID);
        let written = outputs(&out);
        assert_eq!(written.len(), count as usize, "{slug}");
        for path in &written {
            let object = dicom_object::open_file(path).unwrap();
            let patient_id = text(&object, tags::PATIENT_ID);
            assert_ne!(patient_id, "MRN40417711", "{slug}");
            if patient_id_op == Some(TagOp::SecureHash) {
                assert_eq!(patient_id, keys.hash("MRN40417711", 64).unwrap(), "{slug}: PatientID is the keyed hash of the MRN");
            }
            assert_ne!(text(&object, tags::STUDY_INSTANCE_UID), "1.2.826.0.1.3680043.10.1002.1", "{slug}");
            assert_eq!(text(&object, tags::MODALITY), modality, "{slug}");
        }
        pixl_testkit::dicom::assert_no_identifiers(&inputs, &written);
    }
}

#[test]
fn pixl_configs_warn_about_what_pixl_ignores() {
    let results = load_all(&fixtures()).unwrap();
    for loaded in results.into_iter().map(Result::unwrap) {
        // Every fixture lists allowed_manufacturers; none needs a warning for that.
        assert!(!loaded.warnings.iter().any(|w| w.contains("allowed_manufacturers")), "{}: {:?}", loaded.slug, loaded.warnings);
    }
}
