//! The de-identification engine on synthetic instances: every op, nested sequences,
//! private creators, UID consistency across instances, pixel data untouched.

use std::collections::BTreeMap;

use dicom_core::value::{DataSetSequence, PrimitiveValue, Value};
use dicom_core::{DataElement, Length, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::{FileDicomObject, InMemDicomObject};
use pixl_dicom::deid::{self, DeidError, date_offset_days, date_shift_input, keyed_inputs, uid_from_hash, uid_input};
use pixl_dicom::scheme::{TagOp, TagScheme};

const SCHEME: &str = r#"
- {name: SOP Class UID, group: 0x0008, element: 0x0016, op: keep}
- {name: SOP Instance UID, group: 0x0008, element: 0x0018, op: replace_UID}
- {name: Study Date, group: 0x0008, element: 0x0020, op: date-shift}
- {name: Study Time, group: 0x0008, element: 0x0030, op: keep}
- {name: Accession Number, group: 0x0008, element: 0x0050, op: secure-hash-any-vr}
- {name: Modality, group: 0x0008, element: 0x0060, op: keep}
- {name: Manufacturer, group: 0x0008, element: 0x0070, op: keep}
- {name: Referring Physician, group: 0x0008, element: 0x0090, op: empty}
- {name: Referenced Image Sequence, group: 0x0008, element: 0x1140, op: keep}
- {name: Referenced SOP Class UID, group: 0x0008, element: 0x1150, op: keep}
- {name: Referenced SOP Instance UID, group: 0x0008, element: 0x1155, op: replace_UID}
- {name: Patient's Name, group: 0x0010, element: 0x0010, op: replace}
- {name: Patient ID, group: 0x0010, element: 0x0020, op: secure-hash}
- {name: Patient's Age, group: 0x0010, element: 0x1010, op: replace}
- {name: Patient's Weight, group: 0x0010, element: 0x1030, op: replace}
- {name: Study Instance UID, group: 0x0020, element: 0x000D, op: replace_UID}
- {name: Series Instance UID, group: 0x0020, element: 0x000E, op: replace_UID}
- {name: Rows, group: 0x0028, element: 0x0010, op: keep}
- {name: Pixel Data, group: 0x7FE0, element: 0x0010, op: keep}
- {name: Acquisition Datetime, group: 0x0008, element: 0x002A, op: date-shift}
"#;

const PRIVATE: &str = r#"
- {name: GEMS private creator, group: 0x0009, element: 0x0010, op: keep}
- {name: GEMS private value, group: 0x0009, element: 0x1001, op: keep}
"#;

fn text(tag: Tag, vr: VR, value: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::from(value))
}

fn instance(sop_uid: &str, referenced_uid: &str) -> FileDicomObject<InMemDicomObject> {
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax("1.2.840.10008.1.2.1")
        .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.1.1")
        .media_storage_sop_instance_uid(sop_uid)
        // The sending site's identity: must not survive into the output's file meta.
        .source_application_entity_title("UCLH_PACS_01")
        .implementation_version_name("HOSPITAL_PACS")
        .build()
        .unwrap();
    let mut object = FileDicomObject::new_empty_with_meta(meta);
    let reference = InMemDicomObject::from_element_iter([
        text(tags::REFERENCED_SOP_CLASS_UID, VR::UI, "1.2.840.10008.5.1.4.1.1.1.1"),
        text(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, referenced_uid),
        // Not in the scheme: must go even inside a kept sequence.
        text(tags::INSTITUTION_NAME, VR::LO, "Nested^Secret"),
    ]);
    for element in [
        text(tags::SOP_CLASS_UID, VR::UI, "1.2.840.10008.5.1.4.1.1.1.1"),
        text(tags::SOP_INSTANCE_UID, VR::UI, sop_uid),
        text(tags::STUDY_DATE, VR::DA, "20200523"),
        text(tags::STUDY_TIME, VR::TM, "133111"),
        text(tags::ACQUISITION_DATE_TIME, VR::DT, "20200523133111.000000"),
        text(tags::ACCESSION_NUMBER, VR::SH, "AA12345601"),
        text(tags::MODALITY, VR::CS, "DX"),
        text(tags::MANUFACTURER, VR::LO, "GE MEDICAL SYSTEMS"),
        text(tags::REFERRING_PHYSICIAN_NAME, VR::PN, "Who^Doctor"),
        text(tags::INSTITUTION_NAME, VR::LO, "Secret Hospital"),
        DataElement::new(tags::REFERENCED_IMAGE_SEQUENCE, VR::SQ, Value::Sequence(DataSetSequence::new(vec![reference], Length::UNDEFINED))),
        text(tags::PATIENT_NAME, VR::PN, "Doe^John"),
        text(tags::PATIENT_ID, VR::LO, "987654321"),
        text(tags::PATIENT_AGE, VR::AS, "042Y"),
        text(tags::PATIENT_WEIGHT, VR::DS, "81.5"),
        text(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.826.0.1.3680043.10.9.1"),
        text(tags::SERIES_INSTANCE_UID, VR::UI, "1.2.826.0.1.3680043.10.9.1.1"),
        DataElement::new(tags::ROWS, VR::US, PrimitiveValue::U16([2].into_iter().collect())),
        text(Tag(0x0009, 0x0010), VR::LO, "GEMS_IDEN_01"),
        text(Tag(0x0009, 0x1001), VR::LO, "PRIVATE-SECRET"),
        text(Tag(0x0011, 0x0010), VR::LO, "OTHER_VENDOR"),
        text(Tag(0x0011, 0x1001), VR::LO, "OTHER-SECRET"),
        DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U8((0..=255u8).cycle().take(4096).collect())),
    ] {
        object.put(element);
    }
    object
}

/// A stand-in for the hasher-api: a deterministic 64-hex digest per input.
fn fake_hash(input: &str) -> String {
    use std::hash::{Hash, Hasher};
    (0..4u8)
        .map(|round| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            (round, input).hash(&mut hasher);
            format!("{:016x}", hasher.finish())
        })
        .collect()
}

fn pseudonyms(objects: &[&FileDicomObject<InMemDicomObject>], scheme: &pixl_dicom::scheme::ResolvedScheme) -> BTreeMap<String, String> {
    objects.iter().flat_map(|o| keyed_inputs(o, scheme)).map(|input| (input.clone(), fake_hash(&input))).collect()
}

fn str_of(object: &InMemDicomObject, tag: Tag) -> Option<String> {
    object.element_opt(tag).unwrap().map(|e| e.to_str().unwrap().trim().to_owned())
}

fn bytes(object: &FileDicomObject<InMemDicomObject>) -> Vec<u8> {
    let mut out = Vec::new();
    object.write_all(&mut out).unwrap();
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn every_op_applies_and_nothing_identifying_survives() {
    let scheme = TagScheme::from_yaml(&[("base.yaml".into(), SCHEME.into()), ("private.yaml".into(), PRIVATE.into())], &[]).unwrap();
    let resolved = scheme.resolve(Some("GE MEDICAL SYSTEMS"));
    let mut first = instance("1.2.826.0.1.3680043.10.9.1.1.1", "1.2.826.0.1.3680043.10.9.1.1.2");
    let mut second = instance("1.2.826.0.1.3680043.10.9.1.1.2", "1.2.826.0.1.3680043.10.9.1.1.1");
    let keys = pseudonyms(&[&first, &second], &resolved);
    let pixels_before = first.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap().to_vec();

    let outcome = deid::deidentify(&mut first, &resolved, &scheme.sources, &keys).unwrap();
    deid::deidentify(&mut second, &resolved, &scheme.sources, &keys).unwrap();

    let expected_uid = |uid: &str| uid_from_hash(&fake_hash(&uid_input(uid))).unwrap();
    let checks: &[(Tag, Option<String>)] = &[
        (tags::SOP_CLASS_UID, Some("1.2.840.10008.5.1.4.1.1.1.1".into())),
        (tags::SOP_INSTANCE_UID, Some(expected_uid("1.2.826.0.1.3680043.10.9.1.1.1"))),
        (tags::STUDY_INSTANCE_UID, Some(expected_uid("1.2.826.0.1.3680043.10.9.1"))),
        (tags::PATIENT_NAME, Some("ANONYMIZED".into())),
        (tags::PATIENT_ID, Some(fake_hash("987654321"))),
        // SH holds 16 characters: the hash is cut to fit.
        (tags::ACCESSION_NUMBER, Some(fake_hash("AA12345601")[..16].to_owned())),
        (tags::PATIENT_AGE, Some("000Y".into())),
        (tags::PATIENT_WEIGHT, Some("0".into())),
        (tags::REFERRING_PHYSICIAN_NAME, Some(String::new())),
        (tags::STUDY_TIME, Some("133111".into())),
        (tags::MODALITY, Some("DX".into())),
        (tags::INSTITUTION_NAME, None),
        (Tag(0x0009, 0x0010), Some("GEMS_IDEN_01".into())),
        (Tag(0x0009, 0x1001), Some("PRIVATE-SECRET".into())),
        (Tag(0x0011, 0x0010), None),
        (Tag(0x0011, 0x1001), None),
        (tags::PATIENT_IDENTITY_REMOVED, Some("YES".into())),
        (tags::DEIDENTIFICATION_METHOD, Some("pixl allow-list: base.yaml, private.yaml".into())),
    ];
    for (tag, expected) in checks {
        assert_eq!(&str_of(&first, *tag), expected, "{tag}");
    }
    let offset = date_offset_days(&fake_hash(&date_shift_input("987654321"))).unwrap();
    let shifted = chrono::NaiveDate::from_ymd_opt(2020, 5, 23).unwrap() - chrono::Duration::days(offset);
    assert_eq!(str_of(&first, tags::STUDY_DATE).unwrap(), shifted.format("%Y%m%d").to_string());
    assert_eq!(str_of(&first, tags::ACQUISITION_DATE_TIME).unwrap(), format!("{}133111.000000", shifted.format("%Y%m%d")));

    // References stay consistent across instances: each points at the other's new UID.
    let reference = |o: &InMemDicomObject| {
        let items = o.element(tags::REFERENCED_IMAGE_SEQUENCE).unwrap().items().unwrap().to_vec();
        assert_eq!(str_of(&items[0], tags::INSTITUTION_NAME), None, "nested elements outside the scheme are removed");
        str_of(&items[0], tags::REFERENCED_SOP_INSTANCE_UID).unwrap()
    };
    assert_eq!(reference(&first), str_of(&second, tags::SOP_INSTANCE_UID).unwrap());
    assert_eq!(reference(&second), str_of(&first, tags::SOP_INSTANCE_UID).unwrap());
    assert_eq!(first.meta().media_storage_sop_instance_uid(), outcome.sop_instance_uid.as_deref().unwrap());
    assert_eq!(first.meta().source_application_entity_title(), None, "no AE title of the sender in the file meta");
    assert_eq!(first.meta().implementation_class_uid(), pixl_dicom::deid::IMPLEMENTATION_CLASS_UID);
    assert_eq!(first.meta().implementation_version_name(), Some(pixl_dicom::deid::IMPLEMENTATION_VERSION_NAME));
    let codes = first.element(tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE).unwrap().items().unwrap().to_vec();
    let code_values: Vec<String> = codes.iter().map(|c| str_of(c, tags::CODE_VALUE).unwrap()).collect();
    assert_eq!(code_values, ["113100", "113107"]);

    assert_eq!(first.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap().to_vec(), pixels_before);
    let written = bytes(&first);
    for identifier in
        ["Doe^John", "987654321", "AA12345601", "20200523", "Secret Hospital", "Nested^Secret", "Who^Doctor", "OTHER-SECRET", "1.2.826.0.1.3680043.10.9.1"]
    {
        assert!(!contains(&written, identifier), "{identifier} survived");
    }
}

#[test]
fn private_elements_go_when_their_creator_is_not_kept() {
    let scheme = TagScheme::from_yaml(
        &[("base.yaml".into(), SCHEME.into()), ("half.yaml".into(), "- {name: GEMS private value, group: 0x0009, element: 0x1001, op: keep}\n".into())],
        &[],
    )
    .unwrap();
    let resolved = scheme.resolve(None);
    let mut object = instance("1.2.3.4", "1.2.3.5");
    let keys = pseudonyms(&[&object], &resolved);
    deid::deidentify(&mut object, &resolved, &scheme.sources, &keys).unwrap();
    assert_eq!(str_of(&object, Tag(0x0009, 0x1001)), None);
    assert_eq!(str_of(&object, Tag(0x0009, 0x0010)), None);
}

#[test]
fn an_op_that_cannot_apply_is_an_error_naming_tag_and_vr() {
    let cases = [
        ("- {name: Patient's Name, group: 0x0010, element: 0x0010, op: replace_UID}\n", Tag(0x0010, 0x0010), VR::PN, TagOp::ReplaceUid),
        ("- {name: Rows, group: 0x0028, element: 0x0010, op: secure-hash-any-vr}\n", Tag(0x0028, 0x0010), VR::US, TagOp::SecureHashAnyVr),
        (
            "- {name: Study Time, group: 0x0008, element: 0x0020, op: date-shift}\n- {name: Modality, group: 0x0008, element: 0x0060, op: date-shift}\n",
            Tag(0x0008, 0x0060),
            VR::CS,
            TagOp::DateShift,
        ),
    ];
    for (yaml, tag, vr, op) in cases {
        let scheme = TagScheme::from_yaml(&[("x.yaml".into(), yaml.into())], &[]).unwrap();
        let resolved = scheme.resolve(None);
        let mut object = instance("1.2.3.4", "1.2.3.5");
        let keys = pseudonyms(&[&object], &resolved);
        let error = deid::deidentify(&mut object, &resolved, &scheme.sources, &keys).unwrap_err();
        assert_eq!(error, DeidError::OpNotApplicable { tag, vr, op });
        assert!(error.to_string().contains(&format!("{tag}")), "{error}");
    }
}

#[test]
fn missing_pseudonyms_are_an_error_not_a_leak() {
    let scheme = TagScheme::from_yaml(&[("base.yaml".into(), SCHEME.into())], &[]).unwrap();
    let resolved = scheme.resolve(None);
    let mut object = instance("1.2.3.4", "1.2.3.5");
    let error = deid::deidentify(&mut object, &resolved, &scheme.sources, &BTreeMap::new()).unwrap_err();
    assert!(matches!(error, DeidError::MissingPseudonym { .. }), "{error}");
}

/// dicom-anonymizer's operations as PIXL accepts them: compound operations are fixed
/// aliases, `replace` writes its dummies (a DT included), a replaced sequence has every
/// kept nested value dummied and its UIDs remapped, `secure-hash` takes LO only, and an
/// entry needs no `name`.
#[test]
fn pixl_operations_behave_as_dicom_anonymizer_defines_them() {
    let yaml = r#"
- {group: 0x0008, element: 0x0016, op: keep}
- {group: 0x0008, element: 0x0018, op: replace_UID}
- {group: 0x0008, element: 0x0050, op: delete_or_empty_or_replace}
- {group: 0x0008, element: 0x0090, op: delete_or_empty}
- {group: 0x0008, element: 0x002A, op: empty_or_replace}
- {group: 0x0008, element: 0x1140, op: delete_or_replace}
- {group: 0x0008, element: 0x1150, op: keep}
- {group: 0x0008, element: 0x1155, op: keep}
- {group: 0x0010, element: 0x0010, op: delete_or_empty_or_replace_UID}
- {group: 0x0020, element: 0x000D, op: delete_or_empty_or_replace_UID}
- {group: 0x0020, element: 0x000E, op: replace_UID}
"#;
    let scheme = TagScheme::from_yaml(&[("pixl.yaml".into(), yaml.into())], &[]).unwrap();
    let resolved = scheme.resolve(None);
    let mut object = instance("1.2.3.4", "1.2.3.5");
    let keys = pseudonyms(&[&object], &resolved);
    deid::deidentify(&mut object, &resolved, &scheme.sources, &keys).unwrap();
    assert_eq!(str_of(&object, tags::ACCESSION_NUMBER).as_deref(), Some("ANONYMIZED"));
    assert_eq!(str_of(&object, tags::REFERRING_PHYSICIAN_NAME).as_deref(), Some(""));
    assert_eq!(str_of(&object, tags::ACQUISITION_DATE_TIME).as_deref(), Some("00010101010101.000000+0000"));
    // PN under the UID-or-empty operation is emptied; a UI is remapped.
    assert_eq!(str_of(&object, tags::PATIENT_NAME).as_deref(), Some(""));
    assert!(str_of(&object, tags::STUDY_INSTANCE_UID).unwrap().starts_with("2.25."));
    // The replaced sequence: its kept values dummied, its UIDs remapped (not kept as is).
    let sequence = object.element(tags::REFERENCED_IMAGE_SEQUENCE).unwrap();
    let item = &sequence.items().unwrap()[0];
    let referenced = str_of(item, tags::REFERENCED_SOP_INSTANCE_UID).unwrap();
    assert!(referenced.starts_with("2.25.") && referenced != "1.2.3.5", "{referenced}");
    assert!(str_of(item, tags::REFERENCED_SOP_CLASS_UID).unwrap().starts_with("2.25."));
    assert_eq!(str_of(item, tags::INSTITUTION_NAME), None, "the allow-list still applies inside");

    // secure-hash on a value that is not LO: PIXL skips the instance.
    let scheme = TagScheme::from_yaml(&[("x.yaml".into(), "- {group: 0x0008, element: 0x0050, op: secure-hash}\n".into())], &[]).unwrap();
    let resolved = scheme.resolve(None);
    let mut object = instance("1.2.3.4", "1.2.3.5");
    let keys = pseudonyms(&[&object], &resolved);
    let error = deid::deidentify(&mut object, &resolved, &scheme.sources, &keys).unwrap_err();
    assert_eq!(error, DeidError::SecureHashNotLo { tag: tags::ACCESSION_NUMBER, vr: VR::SH });
}
