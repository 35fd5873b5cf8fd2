//! The raw cache's bound: the least recently written studies go first, pinned studies
//! (being received or de-identified) never, and a restart counts what is on disk.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxIndex as _;
use pixl_anon_node::raw_cache::RawCache;

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
    cache.store(CT, sop, EXPLICIT_LE, &dataset(study, sop)).unwrap();
    // Distinct write times, so "least recently written" is well defined.
    std::thread::sleep(std::time::Duration::from_millis(20));
}

#[test]
fn oldest_unpinned_studies_are_evicted_past_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    // Room for about four instances.
    let cache = RawCache::open(dir.path(), 45_000).unwrap();
    let pinned = cache.pin("1.2.3.1");
    store(&cache, "1.2.3.1", "1.2.3.1.1");
    store(&cache, "1.2.3.2", "1.2.3.2.1");
    store(&cache, "1.2.3.2", "1.2.3.2.2");
    store(&cache, "1.2.3.3", "1.2.3.3.1");
    assert_eq!(cache.instances("1.2.3.2").unwrap().len(), 2, "under the bound, nothing goes");

    // A fifth instance: study 1 is oldest but pinned, so study 2 (next oldest) goes whole.
    store(&cache, "1.2.3.4", "1.2.3.4.1");
    assert_eq!(cache.instances("1.2.3.1").unwrap().len(), 1, "pinned study kept");
    assert!(cache.instances("1.2.3.2").unwrap().is_empty(), "least recently written study evicted");
    assert!(!dir.path().join("1.2.3.2").exists());
    assert_eq!(cache.instances("1.2.3.3").unwrap().len(), 1);
    assert_eq!(cache.instances("1.2.3.4").unwrap().len(), 1);
    assert!(cache.size() <= 45_000, "{}", cache.size());

    // Unpinned, study 1 is now the oldest and goes next.
    drop(pinned);
    store(&cache, "1.2.3.5", "1.2.3.5.1");
    store(&cache, "1.2.3.5", "1.2.3.5.2");
    assert!(cache.instances("1.2.3.1").unwrap().is_empty());
    assert!(cache.size() <= 45_000);

    // A restart counts what is on disk and clears partial writes of a crash.
    std::fs::write(dir.path().join("1.2.3.5").join(".1.2.3.5.9.partial"), b"half an instance").unwrap();
    let size = cache.size();
    drop(cache);
    let reopened = RawCache::open(dir.path(), 45_000).unwrap();
    assert_eq!(reopened.size(), size);
    assert!(!dir.path().join("1.2.3.5").join(".1.2.3.5.9.partial").exists());
}

#[test]
fn a_study_over_the_bound_on_its_own_is_kept_while_arriving() {
    let dir = tempfile::tempdir().unwrap();
    let cache = RawCache::open(dir.path(), 15_000).unwrap();
    store(&cache, "1.2.4.1", "1.2.4.1.1");
    store(&cache, "1.2.4.1", "1.2.4.1.2");
    store(&cache, "1.2.4.1", "1.2.4.1.3");
    assert_eq!(cache.instances("1.2.4.1").unwrap().len(), 3, "never evict the study being written to");
}
