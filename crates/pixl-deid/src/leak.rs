//! The last check before de-identified output is kept: no original identifier of the
//! study (PatientID, PatientName, AccessionNumber, Study/Series/SOP Instance UIDs of the
//! raw instances, and the values the database holds for the study) may appear in any
//! element value of the output, at any depth, file meta included. A scheme that keeps one
//! of them by mistake fails here with a reason naming the identifier kind and the tag,
//! never the value.

use std::collections::BTreeMap;
use std::fmt;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use dicom_core::value::Value;
use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

/// What an original value was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IdentifierKind {
    PatientId,
    PatientName,
    AccessionNumber,
    StudyInstanceUid,
    SeriesInstanceUid,
    SopInstanceUid,
}

impl IdentifierKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::PatientId => "PatientID",
            Self::PatientName => "PatientName",
            Self::AccessionNumber => "AccessionNumber",
            Self::StudyInstanceUid => "StudyInstanceUID",
            Self::SeriesInstanceUid => "SeriesInstanceUID",
            Self::SopInstanceUid => "SOPInstanceUID",
        }
    }
}

/// Values shorter than this are matched only as a whole element value: a 5-digit
/// PatientID would otherwise match inside any number.
const MIN_SUBSTRING: usize = 6;
/// Values shorter than this are not looked for at all: "1" or "AB" as an accession number
/// would match every count and code. Real identifiers are longer.
const MIN_LENGTH: usize = 4;
/// The dummies the engine writes: a patient literally named "Anonymized" is not leaked by
/// them.
const DUMMIES: [&str; 2] = ["ANONYMIZED", "ANONYMOUS"];
/// Name parts shorter than this are not looked for alone ("LI", "DOE").
const MIN_NAME_PART: usize = 4;

/// The original identifiers of one study.
#[derive(Debug, Default, Clone)]
pub struct Originals {
    values: BTreeMap<String, IdentifierKind>,
}

impl Originals {
    /// Adds an original value (trimmed; empty values are ignored). PatientName adds its
    /// components too.
    pub fn add(&mut self, kind: IdentifierKind, value: &str) {
        let mut insert = |value: &str| {
            let value = value.trim_matches([' ', '\0', '^']).to_uppercase();
            if value.chars().count() >= MIN_LENGTH && !DUMMIES.contains(&value.as_str()) {
                self.values.entry(value).or_insert(kind);
            }
        };
        insert(value);
        if kind == IdentifierKind::PatientName {
            for part in value.split(['^', '=', ' ']).map(str::trim).filter(|p| p.chars().count() >= MIN_NAME_PART) {
                insert(part);
            }
        }
    }

    /// Adds every value of `other`.
    pub fn extend(&mut self, other: &Originals) {
        for (value, kind) in &other.values {
            self.values.entry(value.clone()).or_insert(*kind);
        }
    }

    /// Adds the identifiers of a raw instance's header.
    pub fn add_header(&mut self, header: &InMemDicomObject) {
        for (tag, kind) in [
            (tags::PATIENT_ID, IdentifierKind::PatientId),
            (tags::PATIENT_NAME, IdentifierKind::PatientName),
            (tags::ACCESSION_NUMBER, IdentifierKind::AccessionNumber),
            (tags::STUDY_INSTANCE_UID, IdentifierKind::StudyInstanceUid),
            (tags::SERIES_INSTANCE_UID, IdentifierKind::SeriesInstanceUid),
            (tags::SOP_INSTANCE_UID, IdentifierKind::SopInstanceUid),
        ] {
            if let Some(value) = pixl_dicom::element_text(header, tag) {
                self.add(kind, &value);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The matcher for [`check`].
    pub fn matcher(&self) -> Matcher {
        let long: Vec<(&String, &IdentifierKind)> = self.values.iter().filter(|(v, _)| v.chars().count() >= MIN_SUBSTRING).collect();
        let automaton = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .build(long.iter().map(|(v, _)| v.as_bytes()))
            .expect("literal patterns always build");
        Matcher { automaton, kinds: long.iter().map(|(_, k)| **k).collect(), exact: self.values.clone() }
    }
}

/// Finds original identifiers in element values.
#[derive(Debug, Clone)]
pub struct Matcher {
    automaton: AhoCorasick,
    kinds: Vec<IdentifierKind>,
    exact: BTreeMap<String, IdentifierKind>,
}

/// An original identifier found in the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    pub kind: IdentifierKind,
    /// Where: the tags from the top level down.
    pub path: Vec<Tag>,
}

impl fmt::Display for Leak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path: Vec<String> = self.path.iter().map(|t| format!("({:04X},{:04X})", t.group(), t.element())).collect();
        write!(f, "the de-identified output still holds the original {} in {}", self.kind.label(), path.join(" > "))
    }
}

/// Value representations whose bytes are text (or may hide text: OB and UN carry private
/// elements of unknown shape).
fn textual(vr: VR) -> bool {
    !matches!(vr, VR::OW | VR::OF | VR::OD | VR::OL | VR::OV | VR::FL | VR::FD | VR::SL | VR::SS | VR::UL | VR::US | VR::AT | VR::SV | VR::UV | VR::SQ)
}

/// Image bytes, never text: pixel data, overlays, waveforms.
fn is_bulk(tag: Tag) -> bool {
    tag == tags::PIXEL_DATA
        || tag == tags::FLOAT_PIXEL_DATA
        || tag == tags::DOUBLE_FLOAT_PIXEL_DATA
        || (tag.group() & 0xFF00 == 0x6000 && tag.element() == 0x3000)
        || tag == tags::WAVEFORM_DATA
}

impl Matcher {
    fn find(&self, bytes: &[u8]) -> Option<IdentifierKind> {
        if let Some(found) = self.automaton.find(bytes) {
            return Some(self.kinds[found.pattern().as_usize()]);
        }
        let text = String::from_utf8_lossy(bytes);
        for value in text.split('\\') {
            let value = value.trim_matches([' ', '\0']).to_uppercase();
            if let Some(kind) = self.exact.get(&value) {
                return Some(*kind);
            }
            // Name parts as whole words.
            for word in value.split(|c: char| !c.is_alphanumeric()) {
                if let Some(kind) = self.exact.get(word).filter(|k| **k == IdentifierKind::PatientName) {
                    return Some(*kind);
                }
            }
        }
        None
    }

    /// Checks every element of a data set.
    pub fn check(&self, object: &InMemDicomObject) -> Result<(), Leak> {
        self.walk(object, &mut Vec::new())
    }

    /// Checks a file: its file meta group, then its data set.
    pub fn check_file(&self, file: &dicom_object::DefaultDicomObject) -> Result<(), Leak> {
        for element in file.meta().to_element_iter() {
            if let Value::Primitive(primitive) = element.value()
                && let Some(kind) = self.find(&primitive.to_bytes())
            {
                return Err(Leak { kind, path: vec![element.header().tag] });
            }
        }
        self.check(file)
    }

    fn walk(&self, object: &InMemDicomObject, path: &mut Vec<Tag>) -> Result<(), Leak> {
        for element in object.iter() {
            let tag = element.header().tag;
            path.push(tag);
            match element.value() {
                Value::Sequence(sequence) => {
                    for item in sequence.items() {
                        self.walk(item, path)?;
                    }
                }
                Value::Primitive(primitive) if textual(element.header().vr()) && !is_bulk(tag) => {
                    // The device's maker and model are kept on purpose (Retain Device
                    // Identity); a patient who shares a name with one leaks nothing there.
                    let device = tag == tags::MANUFACTURER || tag == tags::MANUFACTURER_MODEL_NAME;
                    if let Some(kind) = self.find(&primitive.to_bytes()).filter(|kind| !(device && *kind == IdentifierKind::PatientName)) {
                        return Err(Leak { kind, path: path.clone() });
                    }
                }
                _ => {}
            }
            path.pop();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use dicom_core::{DataElement, PrimitiveValue, dicom_value};

    use super::*;

    fn object(elements: Vec<DataElement<InMemDicomObject>>) -> InMemDicomObject {
        InMemDicomObject::from_element_iter(elements)
    }

    fn originals() -> Matcher {
        let mut originals = Originals::default();
        originals.add(IdentifierKind::PatientId, "40012345");
        originals.add(IdentifierKind::PatientName, "Fleming^Alexandra");
        originals.add(IdentifierKind::AccessionNumber, "AB12");
        originals.add(IdentifierKind::SeriesInstanceUid, "1");
        originals.add(IdentifierKind::PatientName, "Anonymized^Anonymous");
        originals.add(IdentifierKind::StudyInstanceUid, "1.2.826.0.1.3680043.2.1125.1");
        originals.matcher()
    }

    #[test]
    fn finds_originals_at_any_depth_and_names_only_kind_and_tag() {
        let matcher = originals();
        let clean = object(vec![DataElement::new(tags::PATIENT_ID, VR::LO, PrimitiveValue::from("9f3a2b"))]);
        assert_eq!(matcher.check(&clean), Ok(()));

        let cases: Vec<(DataElement<InMemDicomObject>, IdentifierKind, &str)> = vec![
            (DataElement::new(tags::PATIENT_ID, VR::LO, PrimitiveValue::from("40012345")), IdentifierKind::PatientId, "(0010,0020)"),
            (DataElement::new(tags::STUDY_DESCRIPTION, VR::LO, PrimitiveValue::from("CT for alexandra")), IdentifierKind::PatientName, "(0008,1030)"),
            (DataElement::new(tags::ACCESSION_NUMBER, VR::SH, PrimitiveValue::from("ab12")), IdentifierKind::AccessionNumber, "(0008,0050)"),
            (
                DataElement::new(
                    tags::REFERENCED_STUDY_SEQUENCE,
                    VR::SQ,
                    dicom_core::value::DataSetSequence::from(vec![object(vec![DataElement::new(
                        tags::REFERENCED_SOP_INSTANCE_UID,
                        VR::UI,
                        dicom_value!(Str, "1.2.826.0.1.3680043.2.1125.1"),
                    )])]),
                ),
                IdentifierKind::StudyInstanceUid,
                "(0008,1110) > (0008,1155)",
            ),
        ];
        for (element, kind, path) in cases {
            let leak = matcher.check(&object(vec![element])).unwrap_err();
            assert_eq!(leak.kind, kind);
            let text = leak.to_string();
            assert!(text.ends_with(path), "{text}");
            assert!(!text.contains("40012345") && !text.to_lowercase().contains("alexandra"), "{text}");
        }
    }

    #[test]
    fn short_values_match_whole_values_only() {
        let matcher = originals();
        // "AB12" inside a longer word is not the accession number; a one-character value is
        // not looked for; the engine's dummies are not leaks; pixel-like bulk is skipped.
        let clean = object(vec![
            DataElement::new(tags::SERIES_DESCRIPTION, VR::LO, PrimitiveValue::from("TAB123 axial")),
            DataElement::new(tags::SERIES_NUMBER, VR::IS, PrimitiveValue::from("1")),
            DataElement::new(tags::PATIENT_NAME, VR::PN, PrimitiveValue::from("ANONYMIZED")),
            DataElement::new(tags::MANUFACTURER, VR::LO, PrimitiveValue::from("Fleming Medical")),
            DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::U8(b"40012345".to_vec().into())),
        ]);
        assert_eq!(matcher.check(&clean), Ok(()));
    }
}
