//! Property tests of the DIMSE codec: any bytes, and mutations of real command sets and
//! identifiers (bytes flipped, lengths rewritten, cut anywhere), decode to a value or an
//! error, never a panic and never an allocation larger than the input.

use proptest::prelude::*;

fn valid_inputs() -> Vec<Vec<u8>> {
    let mut identifier = dicom_object::InMemDicomObject::new_empty();
    identifier.put(dicom_core::DataElement::new(
        dicom_dictionary_std::tags::QUERY_RETRIEVE_LEVEL,
        dicom_core::VR::CS,
        dicom_core::PrimitiveValue::from("STUDY"),
    ));
    identifier.put(dicom_core::DataElement::new(
        dicom_dictionary_std::tags::STUDY_INSTANCE_UID,
        dicom_core::VR::UI,
        dicom_core::PrimitiveValue::from("1.2.3.4.5"),
    ));
    vec![
        pixl_dimse::find_request(1, pixl_dimse::STUDY_ROOT_FIND),
        pixl_dimse::move_request(7, pixl_dimse::STUDY_ROOT_MOVE, "PIXL_RAW"),
        pixl_dimse::encode_identifier(&identifier),
    ]
}

/// A mutation of a valid input: bytes replaced, a 32-bit length field rewritten, a cut.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let inputs = valid_inputs();
    (0..inputs.len(), proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8), any::<Option<(usize, u32)>>(), any::<Option<usize>>()).prop_map(
        move |(which, flips, length, cut)| {
            let mut bytes = inputs[which].clone();
            for (position, value) in flips {
                let index = position % bytes.len();
                bytes[index] = value;
            }
            if let Some((position, value)) = length {
                let index = position % bytes.len().saturating_sub(4).max(1);
                bytes[index..index + 4].copy_from_slice(&value.to_le_bytes());
            }
            if let Some(cut) = cut {
                bytes.truncate(cut % (bytes.len() + 1));
            }
            bytes
        },
    )
}

/// The process's peak resident memory stays far below what one crafted length field could
/// claim (4 GB): the codec refuses such lengths before any parser reserves them.
fn assert_memory_bounded() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let peak_kb: u64 = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap();
    assert!(peak_kb < 1024 * 1024, "peak memory {peak_kb} kB");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = pixl_dimse::Request::decode(&bytes);
        let _ = pixl_dimse::Response::decode(&bytes);
        let _ = pixl_dimse::decode_identifier(&bytes);
        assert_memory_bounded();
    }

    #[test]
    fn mutated_commands_and_identifiers_decode_or_fail_cleanly(bytes in mutated()) {
        let _ = pixl_dimse::Request::decode(&bytes);
        let _ = pixl_dimse::Response::decode(&bytes);
        let _ = pixl_dimse::decode_identifier(&bytes);
        assert_memory_bounded();
    }
}
