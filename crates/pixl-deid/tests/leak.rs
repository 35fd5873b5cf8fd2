//! The check against the originals, on a real file: a tag scheme that keeps PatientID (a
//! configuration mistake) writes nothing of the instance and says why, naming the
//! identifier and the tag, never the value; the same scheme without the mistake passes.

use std::path::Path;
use std::sync::Arc;

use pixl_core::hashing::{HashAlgorithm, ProjectKeys};
use pixl_core::ids::ProjectSlug;
use pixl_deid::Project;

fn project(configs: &Path, extra_ops: &str) {
    std::fs::create_dir_all(configs.join("tag-operations")).unwrap();
    for profile in ["base.yaml", "ct.yaml"] {
        std::fs::copy(pixl_testkit::repo_root().join("projects/configs/tag-operations").join(profile), configs.join("tag-operations").join(profile)).unwrap();
    }
    std::fs::write(configs.join("tag-operations/site.yaml"), if extra_ops.is_empty() { "[]\n".to_owned() } else { extra_ops.to_owned() }).unwrap();
    std::fs::write(
        configs.join("leak-project.yaml"),
        "project:\n  name: leak-project\n  modalities: [CT]\ntag_operation_files:\n  base: [base.yaml, ct.yaml, site.yaml]\n\
         allowed_manufacturers:\n  - regex: '.*'\nmin_instances_per_series: 1\ndestination:\n  dicom: none\n  parquet: none\n",
    )
    .unwrap();
}

async fn run(extra_ops: &str) -> pixl_deid::Summary {
    let dir = tempfile::tempdir().unwrap();
    let configs = dir.path().join("configs");
    project(&configs, extra_ops);
    let project = Arc::new(Project::load(&configs, &ProjectSlug::parse("leak-project").unwrap()).unwrap());
    let keys = ProjectKeys::new(b"leak-test-key".to_vec(), "0123456789abcdef".to_owned(), String::new(), HashAlgorithm::HmacSha256).unwrap();
    let input = pixl_testkit::dicom::pydicom_file("CT_small.dcm");
    pixl_deid::deidentify_files(project, vec![input], Default::default(), &keys, dir.path().join("out")).await.unwrap()
}

#[tokio::test]
async fn a_scheme_keeping_an_original_identifier_writes_nothing_and_says_why() {
    let clean = run("").await;
    assert_eq!((clean.written, clean.failed.len()), (1, 0), "{clean}");

    let leaky = run("- name: PatientID\n  group: 0x0010\n  element: 0x0020\n  op: keep\n").await;
    assert_eq!(leaky.written, 0, "{leaky}");
    let reasons: Vec<&String> = leaky.failed.keys().collect();
    assert_eq!(reasons, ["the de-identified output still holds the original PatientID in (0010,0020)"]);
    let summary = leaky.to_string();
    // CT_small.dcm's PatientID.
    assert!(!summary.contains("1CT1"), "{summary}");
}

/// The cohort's participant_id becomes the exported PatientID (PIXL's pseudo_patient_id);
/// a participant_id that is the patient's MRN (a cohort mistake) exports nothing.
#[tokio::test]
async fn a_participant_id_is_the_exported_patient_id_unless_it_is_the_mrn() {
    let dir = tempfile::tempdir().unwrap();
    let configs = dir.path().join("configs");
    project(&configs, "");
    let project = Arc::new(Project::load(&configs, &ProjectSlug::parse("leak-project").unwrap()).unwrap());
    let keys = ProjectKeys::new(b"leak-test-key".to_vec(), "0123456789abcdef".to_owned(), String::new(), HashAlgorithm::HmacSha256).unwrap();
    let input = dir.path().join("in.dcm");
    let mut instance = pixl_testkit::dicom::Synthetic::new("CT", 1);
    instance.patient_id = "MRN40417711".to_owned();
    instance.write(&input);

    let run = |participant: &str, out: &str| {
        let mut study = pixl_deid::StudyInputs { participant_id: Some(participant.to_owned()), ..Default::default() };
        study.originals.add(pixl_deid::leak::IdentifierKind::PatientId, "MRN40417711");
        pixl_deid::deidentify_files(Arc::clone(&project), vec![input.clone()], study, &keys, dir.path().join(out))
    };
    let summary = run("PARTICIPANT-0001", "out").await.unwrap();
    assert_eq!(summary.written, 1, "{summary}");
    let mut files = Vec::new();
    pixl_testkit::dicom::all_files(&dir.path().join("out"), &mut files);
    let object = dicom_object::open_file(&files[0]).unwrap();
    assert_eq!(object.element(dicom_dictionary_std::tags::PATIENT_ID).unwrap().to_str().unwrap().trim_end(), "PARTICIPANT-0001");

    let mistaken = run("MRN40417711", "mistaken").await.unwrap();
    assert_eq!(mistaken.written, 0, "{mistaken}");
    assert_eq!(mistaken.failed.values().sum::<u64>(), 1, "{mistaken}");
}

/// `studies_per_accession: one` (PIXL's way): the instances of two original studies go
/// into one pseudonymous study, each series kept; without it, two studies.
#[tokio::test]
async fn merged_studies_become_one_pseudonymous_study() {
    let dir = tempfile::tempdir().unwrap();
    let configs = dir.path().join("configs");
    project(&configs, "");
    let project = Arc::new(Project::load(&configs, &ProjectSlug::parse("leak-project").unwrap()).unwrap());
    let keys = ProjectKeys::new(b"leak-test-key".to_vec(), "0123456789abcdef".to_owned(), String::new(), HashAlgorithm::HmacSha256).unwrap();
    let mut inputs = Vec::new();
    for (n, study) in ["1.2.826.0.1.3680043.10.1002.41", "1.2.826.0.1.3680043.10.1002.42"].into_iter().enumerate() {
        let mut instance = pixl_testkit::dicom::Synthetic::new("CT", n as u32 + 1);
        instance.study_uid = study.to_owned();
        instance.series_uid = format!("{study}.1");
        let path = dir.path().join(format!("in{n}.dcm"));
        instance.write(&path);
        inputs.push(path);
    }
    let run = |merge_into: Option<&str>, out: &str| {
        let study = pixl_deid::StudyInputs { merge_into: merge_into.map(str::to_owned), ..Default::default() };
        pixl_deid::deidentify_files(Arc::clone(&project), inputs.clone(), study, &keys, dir.path().join(out))
    };
    let separate = run(None, "separate").await.unwrap();
    assert_eq!((separate.written, separate.studies.len()), (2, 2), "{separate}");
    let merged = run(Some("1.2.826.0.1.3680043.10.1002.41"), "merged").await.unwrap();
    assert_eq!((merged.written, merged.studies.len()), (2, 1), "{merged}");
    // The one study is the first study's pseudonymous study, holding both series.
    let first = separate.studies.iter().find(|uid| merged.studies.contains(*uid));
    assert!(first.is_some(), "{separate} / {merged}");
    let study_dir = dir.path().join("merged").join(merged.studies.iter().next().unwrap());
    assert_eq!(std::fs::read_dir(study_dir).unwrap().count(), 2, "two series");
}
