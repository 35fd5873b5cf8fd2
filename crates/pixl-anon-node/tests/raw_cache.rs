//! The raw cache's bound: only studies already de-identified are evicted (first released,
//! first evicted), studies waiting for de-identification never; a full cache refuses new
//! studies; a restart counts what is on disk.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxIndex as _;
use std::time::Duration;

use pixl_anon_node::raw_cache::{RawCache, StoreError};
use pixl_core::ids::{SopInstanceUid, StudyUid};

const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

/// A data set of about 10 kB in explicit VR little endian.
fn dataset(study: &str, sop: &str) -> Vec<u8> {
    let object = InMemDicomObject::from_element_iter([
        DataElement::new(tags::SOP_CLASS_UID, VR::UI, PrimitiveValue::from(CT)),
        DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from(sop)),
        DataElement::new(tags::STUDY_INSTANCE_UID, VR::UI, PrimitiveValue::from(study)),
        DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::U8(vec![7u8; 10_000].into())),
    ]);
    let mut bytes = Vec::new();
    let ts = dicom_transfer_syntax_registry::TransferSyntaxRegistry.get(EXPLICIT_LE).unwrap();
    object.write_dataset_with_ts(&mut bytes, ts).unwrap();
    bytes
}

fn store(cache: &RawCache, study: &str, sop: &str) {
    cache.store(CT, &SopInstanceUid::parse(sop).unwrap(), EXPLICIT_LE, &dataset(study, sop)).unwrap();
    // Distinct times, so "released first" is well defined.
    std::thread::sleep(std::time::Duration::from_millis(20));
}

fn uid(text: &str) -> StudyUid {
    StudyUid::parse(text).unwrap()
}

fn count(cache: &RawCache, study: &str) -> usize {
    cache.instances(&uid(study)).unwrap().len()
}

const KEEP: Duration = Duration::from_secs(3600);

#[test]
fn studies_waiting_for_de_identification_are_never_evicted() {
    let dir = tempfile::tempdir().unwrap();
    // Room for about four instances.
    let cache = RawCache::open(dir.path(), 45_000).unwrap();
    store(&cache, "1.2.3.1", "1.2.3.1.1");
    store(&cache, "1.2.3.2", "1.2.3.2.1");
    store(&cache, "1.2.3.2", "1.2.3.2.2");
    store(&cache, "1.2.3.3", "1.2.3.3.1");
    // Study 2 is de-identified (kept for a retention); studies 1 and 3 wait.
    cache.release(&uid("1.2.3.2"), KEEP).unwrap();
    assert!(dir.path().join("1.2.3.2/.deidentified").exists(), "the release is on disk");
    assert_eq!(count(&cache, "1.2.3.2"), 2, "under the bound, nothing goes");

    // A fifth instance: study 1 is oldest but waiting, so the released study 2 goes whole.
    store(&cache, "1.2.3.4", "1.2.3.4.1");
    assert_eq!(count(&cache, "1.2.3.1"), 1, "waiting study kept");
    assert_eq!(count(&cache, "1.2.3.2"), 0, "released study evicted");
    assert!(!dir.path().join("1.2.3.2").exists());
    assert!(cache.size() <= 45_000, "{}", cache.size());
    assert!(cache.accepting());

    // Over the bound with only waiting studies: a new study is refused (backpressure), the
    // rest of a study being received is still taken, and nothing is lost.
    store(&cache, "1.2.3.4", "1.2.3.4.2");
    store(&cache, "1.2.3.4", "1.2.3.4.3");
    assert!(!cache.accepting(), "{} bytes", cache.size());
    let refused = cache.store(CT, &SopInstanceUid::parse("1.2.3.6.1").unwrap(), EXPLICIT_LE, &dataset("1.2.3.6", "1.2.3.6.1"));
    assert!(matches!(refused, Err(StoreError::Full)), "{refused:?}");
    store(&cache, "1.2.3.4", "1.2.3.4.4");
    for (study, instances) in [("1.2.3.1", 1), ("1.2.3.3", 1), ("1.2.3.4", 4)] {
        assert_eq!(count(&cache, study), instances, "{study}");
    }

    // De-identified with no retention: deleted at once, and room again.
    cache.release(&uid("1.2.3.4"), Duration::ZERO).unwrap();
    assert!(!dir.path().join("1.2.3.4").exists());
    assert!(cache.accepting());
    assert_eq!(cache.usage().in_progress, 2);

    // A restart counts what is on disk, knows released studies by their marker and clears
    // partial writes of a crash.
    store(&cache, "1.2.3.5", "1.2.3.5.1");
    cache.release(&uid("1.2.3.5"), KEEP).unwrap();
    std::fs::write(dir.path().join("1.2.3.5").join(".1.2.3.5.9.partial"), b"half an instance").unwrap();
    let size = cache.size();
    drop(cache);
    let reopened = RawCache::open(dir.path(), 45_000).unwrap();
    assert_eq!(reopened.size(), size);
    assert_eq!(reopened.usage().in_progress, 2);
    assert!(!dir.path().join("1.2.3.5").join(".1.2.3.5.9.partial").exists());
    // Retention passed: the released study goes.
    assert_eq!(reopened.sweep(Duration::ZERO), 1);
    assert!(!dir.path().join("1.2.3.5").exists());
}

#[test]
fn a_study_over_the_bound_on_its_own_is_kept_while_arriving() {
    let dir = tempfile::tempdir().unwrap();
    let cache = RawCache::open(dir.path(), 15_000).unwrap();
    store(&cache, "1.2.4.1", "1.2.4.1.1");
    store(&cache, "1.2.4.1", "1.2.4.1.2");
    store(&cache, "1.2.4.1", "1.2.4.1.3");
    assert_eq!(count(&cache, "1.2.4.1"), 3, "never evict the study being written to");
}

#[test]
fn a_released_study_received_again_is_in_progress_again() {
    let dir = tempfile::tempdir().unwrap();
    let cache = RawCache::open(dir.path(), 25_000).unwrap();
    store(&cache, "1.2.5.1", "1.2.5.1.1");
    cache.release(&uid("1.2.5.1"), KEEP).unwrap();
    // Another project asks for the same study: it arrives again and must not be evicted.
    store(&cache, "1.2.5.1", "1.2.5.1.2");
    assert!(!dir.path().join("1.2.5.1/.deidentified").exists());
    store(&cache, "1.2.5.2", "1.2.5.2.1");
    store(&cache, "1.2.5.2", "1.2.5.2.2");
    assert_eq!(count(&cache, "1.2.5.1"), 2);
}
