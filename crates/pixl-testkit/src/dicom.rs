//! The real DICOM corpus (pydicom's bundled files), a project accepting all of it, and the
//! check that no identifier of any input survives in any output.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;

/// One file of pydicom's corpus.
pub fn pydicom_file(name: &str) -> PathBuf {
    pydicom_files().join(name)
}

/// pydicom's bundled test files, found through the Python that test/run.sh provisioned.
pub fn pydicom_files() -> PathBuf {
    let output = std::process::Command::new("python3")
        .args(["-c", "import os, pydicom; print(os.path.join(os.path.dirname(pydicom.__file__), 'data', 'test_files'))"])
        .output()
        .expect("python3 runs");
    assert!(output.status.success(), "pydicom is installed (test/run.sh installs it): {}", String::from_utf8_lossy(&output.stderr));
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

/// `<dir>/configs` with project `check-project`: every modality of the corpus, the shipped
/// profiles, any manufacturer.
pub fn project_dir(dir: &Path) -> PathBuf {
    let configs = dir.join("configs");
    std::fs::create_dir_all(&configs).unwrap();
    std::os::unix::fs::symlink(crate::repo_root().join("projects/configs/tag-operations"), configs.join("tag-operations")).unwrap();
    std::fs::write(
        configs.join("check-project.yaml"),
        "project:\n  name: check-project\n  modalities: [CT, MR, OT, US, CR, DX, NM, PT, RTSTRUCT, RTDOSE, RTPLAN, SR, MG, XA, RF]\n\
         tag_operation_files:\n  base: [base.yaml, ct.yaml, mr.yaml, xray.yaml, us.yaml, pet.yaml, nm.yaml, rt.yaml]\n\
         allowed_manufacturers:\n  - regex: '.*'\n\
         min_instances_per_series: 1\ndestination:\n  dicom: none\n  parquet: none\n",
    )
    .unwrap();
    configs
}

pub fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { all_files(&path, out) } else { out.push(path) }
    }
}

fn text(object: &dicom_object::InMemDicomObject, tag: dicom_core::Tag) -> Option<String> {
    object.element_opt(tag).ok().flatten().and_then(|e| e.to_str().ok().map(|s| s.trim_matches([' ', '\0']).to_owned()))
}

/// Identifying values of an input: names, ids, accession, UIDs, dates.
fn identifiers(path: &Path) -> BTreeSet<String> {
    let Ok(object) = dicom_object::open_file(path) else { return BTreeSet::new() };
    let mut values = BTreeSet::new();
    for tag in [
        tags::PATIENT_NAME,
        tags::PATIENT_ID,
        tags::ACCESSION_NUMBER,
        tags::STUDY_INSTANCE_UID,
        tags::SERIES_INSTANCE_UID,
        tags::SOP_INSTANCE_UID,
        tags::STUDY_DATE,
        tags::PATIENT_BIRTH_DATE,
        tags::INSTITUTION_NAME,
        tags::REFERRING_PHYSICIAN_NAME,
        tags::OPERATORS_NAME,
        tags::FRAME_OF_REFERENCE_UID,
    ] {
        // Very short values (a one-letter name) would match by chance anywhere.
        if let Some(value) = text(&object, tag).filter(|v| v.len() >= 6) {
            values.insert(value);
        }
    }
    values
}

/// Asserts that no identifying value of any input appears in any byte of any output
/// (pixel data aside), and that every output is marked and has a consistent file meta.
pub fn assert_no_identifiers(inputs: &[PathBuf], outputs: &[PathBuf]) {
    // A value within some input's Manufacturer (kept on purpose: Retain Device Identity) is
    // not a secret: pydicom's MR files name "TOSHIBA" as institution, "TOSHIBA_MEC" as maker.
    let manufacturers: BTreeSet<String> = inputs.iter().filter_map(|p| dicom_object::open_file(p).ok()).filter_map(|o| text(&o, tags::MANUFACTURER)).collect();
    let secrets: BTreeSet<String> = inputs.iter().flat_map(|p| identifiers(p)).filter(|s| !manufacturers.iter().any(|m| m.contains(s.as_str()))).collect();
    assert!(secrets.len() > 5, "the inputs have identifiers to look for: {}", secrets.len());
    let any_secret = regex::bytes::Regex::new(&secrets.iter().map(|s| regex::escape(s)).collect::<Vec<_>>().join("|")).unwrap();
    for path in outputs {
        // Every byte but the pixel data, which passes through untouched and whose numbers
        // would match short digit strings by chance.
        let mut object = dicom_object::open_file(path).unwrap();
        let pixels = object.take_element(tags::PIXEL_DATA).ok();
        let mut bytes = Vec::new();
        object.write_all(&mut bytes).unwrap();
        if let Some(found) = any_secret.find(&bytes) {
            let value = String::from_utf8_lossy(found.as_bytes()).into_owned();
            let holder = object.iter().find(|e| e.to_str().is_ok_and(|v| v.contains(&value))).map(|e| e.header().tag);
            panic!("{value:?} survived in {} (element {holder:?})", path.display());
        }
        if let Some(pixels) = pixels {
            object.put(pixels);
        }
        assert_eq!(object.element(tags::PATIENT_IDENTITY_REMOVED).unwrap().to_str().unwrap().trim(), "YES");
        assert_eq!(
            object.meta().media_storage_sop_instance_uid().trim_end_matches('\0'),
            object.element(tags::SOP_INSTANCE_UID).unwrap().to_str().unwrap().trim_end_matches('\0')
        );
    }
}
