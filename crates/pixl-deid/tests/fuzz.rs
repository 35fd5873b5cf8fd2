//! Property tests of the de-identification engine: real files of pydicom's corpus,
//! mutated (bytes replaced, length fields rewritten, cut anywhere), go through the length
//! check, the parser and the engine with the shipped profiles, and each ends in output or
//! an error, never a panic and never an allocation near what a crafted length claims.

use std::collections::BTreeMap;

use dicom_dictionary_std::tags;
use pixl_dicom::scheme::TagScheme;
use proptest::prelude::*;

const FILES: [&str; 5] = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "JPEG2000.dcm", "MR_small_RLE.dcm"];

fn scheme() -> TagScheme {
    let profiles = pixl_testkit::repo_root().join("projects/configs/tag-operations");
    let read = |name: &str| (name.to_owned(), std::fs::read_to_string(profiles.join(name)).unwrap());
    TagScheme::from_yaml(&[read("base.yaml"), read("ct.yaml"), read("mr.yaml"), read("rt.yaml")], &[]).unwrap()
}

fn corpus() -> Vec<Vec<u8>> {
    FILES.iter().map(|name| std::fs::read(pixl_testkit::dicom::pydicom_file(name)).unwrap()).collect()
}

fn assert_memory_bounded() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let peak_kb: u64 = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap();
    assert!(peak_kb < 2 * 1024 * 1024, "peak memory {peak_kb} kB");
}

/// The whole path of one file's bytes: check, parse, de-identify with made-up keyed hashes.
fn run(bytes: &[u8], scheme: &TagScheme) {
    let Ok(magic) = pixl_dicom::lengths::check_file(bytes) else { return };
    let Ok(mut object) = dicom_object::OpenFileOptions::new().read_preamble(dicom_object::file::ReadPreamble::Never).from_reader(&bytes[magic..]) else {
        return;
    };
    let resolved = scheme.resolve(pixl_dicom::element_text(&object, tags::MANUFACTURER).as_deref());
    let pseudonyms: BTreeMap<String, String> = pixl_dicom::deid::keyed_inputs(&object, &resolved).into_iter().map(|input| (input, "ab".repeat(32))).collect();
    let _ = pixl_dicom::deid::deidentify(&mut object, &resolved, &scheme.sources, &pseudonyms);
    let mut out = Vec::new();
    let _ = object.write_all(&mut out);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_real_files_never_panic_the_engine(
        which in 0..FILES.len(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..16),
        length in any::<Option<(usize, u32)>>(),
        cut in any::<Option<usize>>(),
    ) {
        thread_local! {
            static INPUTS: (Vec<Vec<u8>>, TagScheme) = (corpus(), scheme());
        }
        INPUTS.with(|(files, scheme)| {
            let mut bytes = files[which].clone();
            // Mutations after the preamble, where the parser reads.
            let span = bytes.len() - 132;
            for (position, value) in &flips {
                bytes[132 + position % span] = *value;
            }
            if let Some((position, value)) = length {
                let index = 132 + position % (span - 4);
                bytes[index..index + 4].copy_from_slice(&value.to_le_bytes());
            }
            if let Some(cut) = cut {
                bytes.truncate(132 + cut % (span + 1));
            }
            run(&bytes, scheme);
        });
        assert_memory_bounded();
    }
}
