//! The storage SCP against dcmtk's `echoscu` and `storescu` (Debian package dcmtk), with
//! real DICOM files from PyPI pydicom (both installed by test/run.sh).

use pixl_testkit::dicom::pydicom_file;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use dicom_dictionary_std::tags;
use pixl_anon_node::raw_cache::RawCache;
use pixl_anon_node::scp::{ScpConfig, serve};
use tokio_util::sync::CancellationToken;

async fn start(cache: &RawCache) -> (u16, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let shutdown = CancellationToken::new();
    let config = ScpConfig { ae_title: "PIXL_RAW".to_owned(), allowed_callers: BTreeSet::from(["ARCHIVE".to_owned()]) };
    tokio::spawn(serve(listener, config, cache.clone(), shutdown.clone()));
    (port, shutdown)
}

/// Runs a dcmtk tool off the async runtime (it blocks until the association ends).
async fn dcmtk(tool: &'static str, args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || Command::new(tool).env("TCP_NODELAY", "1").args(args).output().expect("dcmtk is installed")).await.unwrap()
}

fn args(calling: &str, port: u16, files: &[PathBuf]) -> Vec<String> {
    let mut args = vec!["-aet".to_owned(), calling.to_owned(), "-aec".to_owned(), "PIXL_RAW".to_owned(), "127.0.0.1".to_owned(), port.to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    args
}

#[tokio::test]
async fn echo_and_store_real_files_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let cache = RawCache::open(dir.path().join("raw"), 0).unwrap();
    let (port, shutdown) = start(&cache).await;

    let echo = dcmtk("echoscu", args("ARCHIVE", port, &[])).await;
    assert!(echo.status.success(), "{}", String::from_utf8_lossy(&echo.stderr));

    let files = [pydicom_file("CT_small.dcm"), pydicom_file("MR_small.dcm")];
    let store = dcmtk("storescu", args("ARCHIVE", port, &files)).await;
    assert!(store.status.success(), "{}", String::from_utf8_lossy(&store.stderr));

    for file in &files {
        let original = dicom_object::open_file(file).unwrap();
        let study = original.element(tags::STUDY_INSTANCE_UID).unwrap().to_str().unwrap().trim_end_matches('\0').to_owned();
        let sop = original.element(tags::SOP_INSTANCE_UID).unwrap().to_str().unwrap().trim_end_matches('\0').to_owned();
        let cached_path = cache.root().join(&study).join(format!("{sop}.dcm"));
        let cached = dicom_object::open_file(&cached_path).unwrap_or_else(|e| panic!("{}: {e}", cached_path.display()));
        assert_eq!(cached.meta().media_storage_sop_instance_uid().trim_end_matches('\0'), sop);
        assert_eq!(cached.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap(), original.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap());
        assert_eq!(cached.element(tags::PATIENT_NAME).unwrap().to_str().unwrap(), original.element(tags::PATIENT_NAME).unwrap().to_str().unwrap());
    }
    shutdown.cancel();
}

#[tokio::test]
async fn unknown_callers_are_rejected_and_nothing_is_cached() {
    let dir = tempfile::tempdir().unwrap();
    let cache = RawCache::open(dir.path().join("raw"), 0).unwrap();
    let (port, shutdown) = start(&cache).await;
    let store = dcmtk("storescu", args("INTRUDER", port, &[pydicom_file("CT_small.dcm")])).await;
    assert!(!store.status.success());
    let stderr = String::from_utf8_lossy(&store.stderr);
    assert!(stderr.contains("Association Rejected") || stderr.contains("rejected"), "{stderr}");
    assert!(!cache.root().exists() || std::fs::read_dir(cache.root()).unwrap().count() == 0);
    shutdown.cancel();
}

/// A command set in Implicit VR Little Endian, as a test SCU sends it.
fn command(elements: Vec<dicom_core::DataElement<dicom_object::InMemDicomObject>>) -> Vec<u8> {
    let object = dicom_object::InMemDicomObject::command_from_element_iter(elements);
    let mut bytes = Vec::new();
    object.write_dataset_with_ts(&mut bytes, pixl_dimse::transfer_syntax("1.2.840.10008.1.2").unwrap()).unwrap();
    bytes
}

fn status_of(pdu: dicom_ul::pdu::Pdu) -> u16 {
    let dicom_ul::pdu::Pdu::PData { data } = pdu else { panic!("expected P-DATA, got {pdu:?}") };
    let object = dicom_object::InMemDicomObject::read_dataset_with_ts(&data[0].data[..], pixl_dimse::transfer_syntax("1.2.840.10008.1.2").unwrap()).unwrap();
    object.element(tags::STATUS).unwrap().to_int::<u16>().unwrap()
}

/// Bad data sets an archive (or anyone allowed to store) could send.
fn bad_data_sets() -> Vec<(&'static str, Vec<u8>)> {
    use dicom_core::value::{DataSetSequence, PrimitiveValue};
    use dicom_core::{DataElement, VR};
    let explicit = pixl_dimse::transfer_syntax("1.2.840.10008.1.2.1").unwrap();
    let header = |object: &dicom_object::InMemDicomObject| {
        let mut bytes = Vec::new();
        object.write_dataset_with_ts(&mut bytes, explicit).unwrap();
        bytes
    };
    // A data set whose sequence is cut in its middle (lengths explicit, then truncated).
    let item =
        dicom_object::InMemDicomObject::from_element_iter([DataElement::new(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from("1.2.3.4.5.6.7"))]);
    let with_sequence = dicom_object::InMemDicomObject::from_element_iter([
        DataElement::new(tags::REFERENCED_IMAGE_SEQUENCE, VR::SQ, DataSetSequence::from(vec![item.clone(), item])),
        DataElement::new(tags::STUDY_INSTANCE_UID, VR::UI, PrimitiveValue::from("1.2.3.4")),
    ]);
    let mut in_sequence = header(&with_sequence);
    in_sequence.truncate(20);
    // An element claiming a value of almost 4 GB, followed by a few bytes.
    let mut huge = vec![0x10, 0x00, 0x10, 0x00, b'U', b'N', 0x00, 0x00];
    huge.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    huge.extend_from_slice(b"not four gigabytes");
    vec![
        ("cut in an element header", vec![0x08, 0x00, 0x18, 0x00, b'U', b'I', 0x40]),
        ("not DICOM at all", b"GET / HTTP/1.1\r\nHost: anon-node\r\n\r\n".to_vec()),
        ("cut inside a sequence", in_sequence),
        ("a 4 GB length field", huge),
    ]
}

/// Garbage in a C-STORE gets a failure status, nothing is cached, and the association
/// goes on: a C-ECHO on it still succeeds.
#[tokio::test]
async fn bad_data_sets_fail_with_a_status_and_the_association_survives() {
    use dicom_core::value::PrimitiveValue;
    use dicom_core::{DataElement, VR};
    use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu};

    let dir = tempfile::tempdir().unwrap();
    let cache = RawCache::open(dir.path().join("raw"), 0).unwrap();
    let (port, shutdown) = start(&cache).await;
    let statuses = tokio::task::spawn_blocking(move || {
        let mut association = dicom_ul::association::client::ClientAssociationOptions::new()
            .calling_ae_title("ARCHIVE")
            .called_ae_title("PIXL_RAW")
            .with_presentation_context("1.2.840.10008.5.1.4.1.1.2", vec!["1.2.840.10008.1.2.1"])
            .with_presentation_context("1.2.840.10008.1.1", vec!["1.2.840.10008.1.2"])
            .establish(("127.0.0.1", port))
            .unwrap();
        let context = |abstract_syntax: &str| association.presentation_contexts().iter().find(|pc| pc.abstract_syntax == abstract_syntax).unwrap().id;
        let (store_context, echo_context) = (context("1.2.840.10008.5.1.4.1.1.2"), context("1.2.840.10008.1.1"));
        let mut store_statuses = Vec::new();
        for (message_id, (what, garbage)) in bad_data_sets().into_iter().enumerate() {
            let store = command(vec![
                DataElement::new(tags::AFFECTED_SOP_CLASS_UID, VR::UI, PrimitiveValue::from("1.2.840.10008.5.1.4.1.1.2")),
                DataElement::new(tags::COMMAND_FIELD, VR::US, PrimitiveValue::from(0x0001u16)),
                DataElement::new(tags::MESSAGE_ID, VR::US, PrimitiveValue::from(message_id as u16 + 1)),
                DataElement::new(tags::PRIORITY, VR::US, PrimitiveValue::from(0u16)),
                DataElement::new(tags::COMMAND_DATA_SET_TYPE, VR::US, PrimitiveValue::from(0x0000u16)),
                DataElement::new(tags::AFFECTED_SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from("1.2.3.4.5")),
            ]);
            association
                .send(&Pdu::PData {
                    data: vec![
                        PDataValue { presentation_context_id: store_context, value_type: PDataValueType::Command, is_last: true, data: store },
                        PDataValue { presentation_context_id: store_context, value_type: PDataValueType::Data, is_last: true, data: garbage },
                    ],
                })
                .unwrap();
            store_statuses.push((what, status_of(association.receive().unwrap())));
        }
        let echo = command(vec![
            DataElement::new(tags::AFFECTED_SOP_CLASS_UID, VR::UI, PrimitiveValue::from("1.2.840.10008.1.1")),
            DataElement::new(tags::COMMAND_FIELD, VR::US, PrimitiveValue::from(0x0030u16)),
            DataElement::new(tags::MESSAGE_ID, VR::US, PrimitiveValue::from(99u16)),
            DataElement::new(tags::COMMAND_DATA_SET_TYPE, VR::US, PrimitiveValue::from(0x0101u16)),
        ]);
        association
            .send(&Pdu::PData {
                data: vec![PDataValue { presentation_context_id: echo_context, value_type: PDataValueType::Command, is_last: true, data: echo }],
            })
            .unwrap();
        let echo_status = status_of(association.receive().unwrap());
        association.release().unwrap();
        (store_statuses, echo_status)
    })
    .await
    .unwrap();
    for (what, status) in &statuses.0 {
        assert_eq!(*status, 0xC000, "{what}");
    }
    assert_eq!(statuses.1, 0x0000, "the association survived");
    assert!(!cache.root().exists() || std::fs::read_dir(cache.root()).unwrap().count() == 0);
    shutdown.cancel();
}
