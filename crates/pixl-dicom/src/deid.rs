//! Applying a resolved scheme to one DICOM object: an allow-list. Every element not in the
//! scheme is removed, at every depth of every sequence, private elements included (kept
//! only when their private creator is kept too). Pixel data passes through untouched.
//!
//! Keyed values (hashes, new UIDs, the date offset) come from [`Pseudonyms`], which the
//! service fills beforehand with one hasher-api batch for the values [`keyed_inputs`]
//! lists. The engine itself holds no key and does no I/O.

use std::collections::{BTreeMap, BTreeSet};

use dicom_core::value::{DataSetSequence, PrimitiveValue, Value};
use dicom_core::{DataElement, Length, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileDicomObject, InMemDicomObject};

use crate::scheme::{ResolvedScheme, TagOp};

/// Keyed hashes computed outside the engine (by the hasher-api).
pub trait Pseudonyms {
    /// The 64-hex-character keyed hash of `input` (one of [`keyed_inputs`]).
    fn hash(&self, input: &str) -> Option<&str>;
}

impl Pseudonyms for BTreeMap<String, String> {
    fn hash(&self, input: &str) -> Option<&str> {
        self.get(input).map(String::as_str)
    }
}

/// A de-identification that cannot proceed. Names tags and VRs, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeidError {
    #[error("operation {op:?} cannot apply to {tag} with VR {vr}")]
    OpNotApplicable { tag: Tag, vr: VR, op: TagOp },
    /// PIXL's `secure-hash` takes LO values only, and PIXL skips an instance that asks it
    /// to hash another VR.
    #[error("secure-hash of {tag}, whose VR is {vr}, not LO (PIXL skips such an instance)")]
    SecureHashNotLo { tag: Tag, vr: VR },
    #[error("no pseudonym was computed for the value of {tag}")]
    MissingPseudonym { tag: Tag },
}

/// What de-identification produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub study_instance_uid: Option<String>,
    pub series_instance_uid: Option<String>,
    pub sop_instance_uid: Option<String>,
    /// Elements removed, at every depth.
    pub removed: usize,
}

/// Input of a UID remapping.
pub fn uid_input(uid: &str) -> String {
    format!("uid:{uid}")
}

/// Input of the per-patient date offset.
pub fn date_shift_input(patient_id: &str) -> String {
    format!("date-shift:{patient_id}")
}

/// A UID under the `2.25` root (UUID-derived UIDs, PS3.5 B.2) from a 64-hex hash: the
/// decimal of its first 128 bits.
pub fn uid_from_hash(hash: &str) -> Option<String> {
    let value = u128::from_str_radix(hash.get(..32)?, 16).ok()?;
    Some(format!("2.25.{value}"))
}

/// Days to move a patient's dates back, from a 64-hex hash: 30 to 3679.
pub fn date_offset_days(hash: &str) -> Option<i64> {
    Some(i64::from(u32::from_str_radix(hash.get(..8)?, 16).ok()? % 3650) + 30)
}

/// Every input the engine will ask [`Pseudonyms::hash`] for when applying `scheme` to
/// `object`.
pub fn keyed_inputs(object: &InMemDicomObject, scheme: &ResolvedScheme) -> BTreeSet<String> {
    let mut inputs = BTreeSet::new();
    let patient_id = patient_id(object);
    collect(object, scheme, &patient_id, false, &mut inputs);
    inputs
}

fn patient_id(object: &InMemDicomObject) -> String {
    crate::element_text(object, tags::PATIENT_ID).unwrap_or_default()
}

/// A value as pydicom reads it, so that hashes match PIXL's: trailing padding (spaces,
/// NULs) removed, leading spaces kept.
fn dicom_text(value: &str) -> &str {
    value.trim_end_matches([' ', '\0'])
}

/// `dummied`: inside a sequence under `replace`, where every kept value is dummied.
fn collect(object: &InMemDicomObject, scheme: &ResolvedScheme, patient_id: &str, dummied: bool, inputs: &mut BTreeSet<String>) {
    for element in object.iter() {
        let tag = element.header().tag;
        let vr = element.header().vr();
        let Some(op) = op_for(object, scheme, tag).filter(|op| *op != TagOp::Delete) else { continue };
        let op = if dummied { TagOp::Replace } else { op };
        match element.value() {
            Value::Sequence(sequence) => {
                for item in sequence.items() {
                    collect(item, scheme, patient_id, dummied || op == TagOp::Replace, inputs);
                }
            }
            Value::Primitive(value) => {
                let strings = || value.to_multi_str().iter().map(|v| dicom_text(v).to_owned()).filter(|v| !v.is_empty()).collect::<Vec<_>>();
                match (op, vr) {
                    (TagOp::ReplaceUid | TagOp::ReplaceUidOrEmpty | TagOp::SecureHashAnyVr | TagOp::Replace, VR::UI) => {
                        inputs.extend(strings().iter().map(|u| uid_input(u)))
                    }
                    (TagOp::SecureHash, VR::LO) | (TagOp::SecureHashAnyVr, _) => inputs.extend(strings()),
                    (TagOp::DateShift, VR::DA | VR::DT) => {
                        inputs.insert(date_shift_input(patient_id));
                    }
                    _ => {}
                }
            }
            Value::PixelSequence(_) => {}
        }
    }
}

/// The operation for `tag` in `object`, with the private-creator rule applied.
fn op_for(object: &InMemDicomObject, scheme: &ResolvedScheme, tag: Tag) -> Option<TagOp> {
    let group = tag.group();
    if group % 2 == 1 && tag.element() >= 0x1000 {
        // A private data element: its block's creator (gggg,00xx) must be kept too.
        let creator = Tag(group, tag.element() >> 8);
        let creator_kept = scheme.op(creator) == Some(TagOp::Keep) && object.element_opt(creator).ok().flatten().is_some();
        return if creator_kept { scheme.op(tag) } else { None };
    }
    scheme.op(tag)
}

/// De-identifies `file` in place and sets the file meta's MediaStorageSOPInstanceUID to
/// the new SOPInstanceUID. `sources` names the tag-operation files, for the marker.
pub fn deidentify(
    file: &mut FileDicomObject<InMemDicomObject>,
    scheme: &ResolvedScheme,
    sources: &[String],
    pseudonyms: &dyn Pseudonyms,
) -> Result<Outcome, DeidError> {
    let object = std::mem::replace(&mut **file, InMemDicomObject::new_empty());
    let patient_id = patient_id(&object);
    let mut context = Context { scheme, pseudonyms, patient_id, removed: 0, date_shifted: false, dummied: 0 };
    let mut result = context.transform(object)?;
    mark(&mut result, sources, context.date_shifted);
    let text = |tag| crate::element_text(&result, tag);
    let outcome = Outcome {
        study_instance_uid: text(tags::STUDY_INSTANCE_UID),
        series_instance_uid: text(tags::SERIES_INSTANCE_UID),
        sop_instance_uid: text(tags::SOP_INSTANCE_UID),
        removed: context.removed,
    };
    **file = result;
    let sop = outcome.sop_instance_uid.clone();
    file.update_meta(|meta| rewrite_meta(meta, sop));
    Ok(outcome)
}

/// The implementation class UID written into the file meta of de-identified files (a
/// UUID-derived UID, PS3.5 B.2), so that output does not depend on which software
/// wrote the input.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.222687506510747300128254856654370855656";
/// Implementation version name of de-identified files.
pub const IMPLEMENTATION_VERSION_NAME: &str = "PIXL_RS_1";

/// Rewrites the file meta of a de-identified file: the new SOP Instance UID, pixl's
/// implementation identity, and no application entity titles or private information (the
/// sending site's AE title names the hospital; private information can hold anything).
/// Only the transfer syntax and SOP class survive from the input.
fn rewrite_meta(meta: &mut dicom_object::FileMetaTable, sop_instance_uid: Option<String>) {
    if let Some(sop) = sop_instance_uid {
        meta.media_storage_sop_instance_uid = sop;
    }
    meta.implementation_class_uid = IMPLEMENTATION_CLASS_UID.to_owned();
    meta.implementation_version_name = Some(IMPLEMENTATION_VERSION_NAME.to_owned());
    meta.source_application_entity_title = None;
    meta.sending_application_entity_title = None;
    meta.receiving_application_entity_title = None;
    meta.private_information_creator_uid = None;
    meta.private_information = None;
}

struct Context<'a> {
    scheme: &'a ResolvedScheme,
    pseudonyms: &'a dyn Pseudonyms,
    patient_id: String,
    removed: usize,
    date_shifted: bool,
    /// Inside a sequence under `replace`: every kept value is dummied (dicom-anonymizer
    /// replaces every nested value of a replaced sequence).
    dummied: usize,
}

type Element = DataElement<InMemDicomObject>;

impl Context<'_> {
    fn transform(&mut self, object: InMemDicomObject) -> Result<InMemDicomObject, DeidError> {
        let ops: Vec<Option<TagOp>> = object.iter().map(|e| op_for(&object, self.scheme, e.header().tag)).collect();
        let mut out = InMemDicomObject::new_empty();
        for (element, op) in object.into_iter().zip(ops) {
            match op {
                None | Some(TagOp::Delete) => self.removed += 1,
                Some(op) => {
                    let op = if self.dummied > 0 { TagOp::Replace } else { op };
                    if let Some(element) = self.apply(element, op)? {
                        out.put(element);
                    }
                }
            }
        }
        Ok(out)
    }

    fn apply(&mut self, element: Element, op: TagOp) -> Result<Option<Element>, DeidError> {
        let tag = element.header().tag;
        let vr = element.header().vr();
        let not_applicable = || DeidError::OpNotApplicable { tag, vr, op };
        let value = element.into_value();
        if let Value::Sequence(sequence) = value {
            return match op {
                TagOp::Keep | TagOp::Replace => {
                    let dummy = op == TagOp::Replace;
                    self.dummied += usize::from(dummy);
                    let items = sequence.into_items().into_iter().map(|item| self.transform(item)).collect::<Result<Vec<_>, _>>();
                    self.dummied -= usize::from(dummy);
                    Ok(Some(DataElement::new(tag, VR::SQ, Value::Sequence(DataSetSequence::new(items?, Length::UNDEFINED)))))
                }
                TagOp::Empty | TagOp::ReplaceUidOrEmpty => {
                    Ok(Some(DataElement::new(tag, VR::SQ, Value::Sequence(DataSetSequence::new(Vec::new(), Length::UNDEFINED)))))
                }
                _ => Err(not_applicable()),
            };
        }
        if let Value::PixelSequence(_) = &value {
            return match op {
                TagOp::Keep => Ok(Some(DataElement::new(tag, vr, value))),
                _ => Err(not_applicable()),
            };
        }
        let Value::Primitive(primitive) = value else { unreachable!("sequences handled above") };
        let strings = || -> Vec<String> { primitive.to_multi_str().iter().map(|v| dicom_text(v).to_owned()).collect() };
        let new_value = match (op, vr) {
            (TagOp::Keep, _) => primitive,
            (TagOp::Empty, _) => PrimitiveValue::Empty,
            (TagOp::SecureHash, vr) if vr != VR::LO => return Err(DeidError::SecureHashNotLo { tag, vr }),
            (TagOp::ReplaceUid | TagOp::ReplaceUidOrEmpty | TagOp::SecureHashAnyVr | TagOp::Replace, VR::UI) => {
                let uids = strings().iter().filter(|u| !u.is_empty()).map(|u| self.new_uid(tag, u)).collect::<Result<Vec<_>, _>>()?;
                PrimitiveValue::Strs(uids.into_iter().collect())
            }
            (TagOp::ReplaceUid, _) => return Err(not_applicable()),
            (TagOp::ReplaceUidOrEmpty, _) => PrimitiveValue::Empty,
            (TagOp::Replace, _) => dummy(vr).ok_or_else(not_applicable)?,
            (TagOp::SecureHash | TagOp::SecureHashAnyVr, vr) if is_text(vr) => {
                let max = max_length(vr);
                let hashes = strings()
                    .iter()
                    .map(|v| {
                        if v.is_empty() {
                            return Ok(String::new());
                        }
                        let hash = self.pseudonyms.hash(v).ok_or(DeidError::MissingPseudonym { tag })?;
                        Ok(hash[..hash.len().min(max)].to_owned())
                    })
                    .collect::<Result<Vec<_>, DeidError>>()?;
                PrimitiveValue::Strs(hashes.into_iter().collect())
            }
            (TagOp::SecureHash | TagOp::SecureHashAnyVr, _) => return Err(not_applicable()),
            (TagOp::DateShift, VR::DA | VR::DT) => {
                let offset = self.date_offset(tag)?;
                self.date_shifted = true;
                let shifted: Vec<String> = strings().iter().map(|v| shift_date(v, vr, offset)).collect();
                PrimitiveValue::Strs(shifted.into_iter().collect())
            }
            (TagOp::DateShift, VR::TM) => primitive,
            (TagOp::DateShift, _) => return Err(not_applicable()),
            (TagOp::Delete, _) => unreachable!("deleted before apply"),
        };
        Ok(Some(DataElement::new(tag, vr, new_value)))
    }

    fn new_uid(&self, tag: Tag, uid: &str) -> Result<String, DeidError> {
        let hash = self.pseudonyms.hash(&uid_input(uid)).ok_or(DeidError::MissingPseudonym { tag })?;
        uid_from_hash(hash).ok_or(DeidError::MissingPseudonym { tag })
    }

    fn date_offset(&self, tag: Tag) -> Result<i64, DeidError> {
        let hash = self.pseudonyms.hash(&date_shift_input(&self.patient_id)).ok_or(DeidError::MissingPseudonym { tag })?;
        date_offset_days(hash).ok_or(DeidError::MissingPseudonym { tag })
    }
}

fn is_text(vr: VR) -> bool {
    matches!(vr, VR::AE | VR::AS | VR::CS | VR::LO | VR::LT | VR::PN | VR::SH | VR::ST | VR::UC | VR::UR | VR::UT)
}

/// Maximum value length of a text VR (PS3.5 6.2), for cutting hashes to fit.
fn max_length(vr: VR) -> usize {
    match vr {
        VR::AE | VR::CS | VR::SH => 16,
        VR::AS => 4,
        VR::LO | VR::PN => 64,
        _ => 64,
    }
}

/// The dummy value `replace` writes for a VR; `None` where a dummy makes no sense.
fn dummy(vr: VR) -> Option<PrimitiveValue> {
    Some(match vr {
        VR::AE | VR::CS | VR::LO | VR::LT | VR::PN | VR::SH | VR::ST | VR::UC | VR::UR | VR::UT => PrimitiveValue::from("ANONYMIZED"),
        VR::AS => PrimitiveValue::from("000Y"),
        VR::DA => PrimitiveValue::from("00010101"),
        VR::TM => PrimitiveValue::from("000000.00"),
        // dicom-anonymizer's (PIXL's) dummy date-time.
        VR::DT => PrimitiveValue::from("00010101010101.000000+0000"),
        VR::DS | VR::IS => PrimitiveValue::from("0"),
        VR::US => PrimitiveValue::U16([0].into_iter().collect()),
        VR::SS => PrimitiveValue::I16([0].into_iter().collect()),
        VR::UL => PrimitiveValue::U32([0].into_iter().collect()),
        VR::SL => PrimitiveValue::I32([0].into_iter().collect()),
        VR::UV => PrimitiveValue::U64([0].into_iter().collect()),
        VR::SV => PrimitiveValue::I64([0].into_iter().collect()),
        VR::FL => PrimitiveValue::F32([0.0].into_iter().collect()),
        VR::FD => PrimitiveValue::F64([0.0].into_iter().collect()),
        VR::OB | VR::OW | VR::OF | VR::OD | VR::OL | VR::OV | VR::UN | VR::AT => PrimitiveValue::Empty,
        _ => return None,
    })
}

/// Moves a DA or DT value back by `offset` days; a value that is not a date becomes the
/// dummy date rather than survive unshifted.
fn shift_date(value: &str, vr: VR, offset: i64) -> String {
    if value.is_empty() {
        return String::new();
    }
    let Some(date) = value.get(..8).and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y%m%d").ok()) else {
        return if vr == VR::DA { "00010101".to_owned() } else { "00010101000000.000000".to_owned() };
    };
    let shifted = (date - chrono::Duration::days(offset)).format("%Y%m%d").to_string();
    if vr == VR::DT { format!("{shifted}{}", &value[8..]) } else { shifted }
}

/// PatientIdentityRemoved, DeidentificationMethod and its code sequence (PS3.16 CID 7050).
fn mark(object: &mut InMemDicomObject, sources: &[String], date_shifted: bool) {
    object.put(DataElement::new(tags::PATIENT_IDENTITY_REMOVED, VR::CS, PrimitiveValue::from("YES")));
    let method = format!("pixl allow-list: {}", sources.join(", "));
    object.put(DataElement::new(tags::DEIDENTIFICATION_METHOD, VR::LO, PrimitiveValue::from(method.chars().take(64).collect::<String>())));
    let code = |value: &str, meaning: &str| {
        InMemDicomObject::from_element_iter([
            DataElement::new(tags::CODE_VALUE, VR::SH, PrimitiveValue::from(value)),
            DataElement::new(tags::CODING_SCHEME_DESIGNATOR, VR::SH, PrimitiveValue::from("DCM")),
            DataElement::new(tags::CODE_MEANING, VR::LO, PrimitiveValue::from(meaning)),
        ])
    };
    let mut codes = vec![code("113100", "Basic Application Confidentiality Profile")];
    if date_shifted {
        codes.push(code("113107", "Retain Longitudinal Temporal Information Modified Dates Option"));
    }
    object.put(DataElement::new(tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE, VR::SQ, Value::Sequence(DataSetSequence::new(codes, Length::UNDEFINED))));
}
