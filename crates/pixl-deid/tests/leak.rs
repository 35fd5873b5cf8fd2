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
    pixl_deid::deidentify_files(project, vec![input], Default::default(), &keys, dir.path().join("out"), Default::default()).await.unwrap()
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
