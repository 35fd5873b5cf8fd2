//! Realistic fake studies for `pixl demo`, the end-to-end tests and the benchmarks:
//! radiographs and MR series with patient data in the standard tags, a private block,
//! and a nested sequence referencing another instance. All names, ids and dates are made
//! up; UIDs are under a fixed test root.

use std::path::{Path, PathBuf};

use dicom_core::value::{DataSetSequence, PrimitiveValue, Value};
use dicom_core::{DataElement, Length, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::{FileDicomObject, InMemDicomObject};

/// One series of a fake study.
#[derive(Debug, Clone)]
pub struct SeriesSpec {
    pub modality: &'static str,
    pub description: &'static str,
    pub instances: u32,
}

/// A fake study.
#[derive(Debug, Clone)]
pub struct StudySpec {
    pub patient_id: String,
    pub patient_name: String,
    pub accession_number: String,
    pub study_uid: String,
    /// YYYYMMDD.
    pub study_date: String,
    pub series: Vec<SeriesSpec>,
    /// Rows and columns of each image (16-bit).
    pub size: u16,
    /// Unique among generated studies: roots the series and instance UIDs (a study UID
    /// may be 64 characters already).
    pub number: u32,
}

impl StudySpec {
    /// The UID of series `index` (0-based).
    pub fn series_uid(&self, index: usize) -> String {
        format!("{UID_ROOT}.{}.{}", self.number, index + 1)
    }
}

const DX: &str = "1.2.840.10008.5.1.4.1.1.1.1";
const MR: &str = "1.2.840.10008.5.1.4.1.1.4";
const CT: &str = "1.2.840.10008.5.1.4.1.1.2";

/// The root of every generated UID.
pub const UID_ROOT: &str = "1.2.826.0.1.3680043.10.1001";

/// The two studies of PIXL's system test, with the identifiers of the example OMOP-ES
/// extract (`projects/demo/omop-extract`, procedures 4 and 5 of MRN 987654321): study 1
/// with DX "AP", DX "include123", MR "exclude123" and DX "positioning" series; study 2
/// with DX "include123" and DX "positioning". A DX/CR project filtering "positioning"
/// keeps {AP, include123} and {include123}.
pub fn system_test_studies() -> Vec<StudySpec> {
    let series = |modality, description| SeriesSpec { modality, description, instances: 2 };
    vec![
        StudySpec {
            patient_id: "987654321".to_owned(),
            patient_name: "Fake^Alice^Jane".to_owned(),
            accession_number: "AA12345601".to_owned(),
            study_uid: "1.3.6.1.4.1.14519.5.2.1.99.1071.12985477682660597455732044031486".to_owned(),
            study_date: "20200501".to_owned(),
            series: vec![series("DX", "AP"), series("DX", "include123"), series("MR", "exclude123"), series("DX", "positioning")],
            size: 64,
            number: 1,
        },
        StudySpec {
            patient_id: "987654321".to_owned(),
            patient_name: "Fake^Alice^Jane".to_owned(),
            accession_number: "AA12345605".to_owned(),
            study_uid: "1.2.276.0.7230010.3.1.2.929116473.1.1710754859.579485".to_owned(),
            study_date: "20200601".to_owned(),
            series: vec![series("DX", "include123"), series("DX", "positioning")],
            size: 64,
            number: 2,
        },
    ]
}

/// `count` studies of one DX series of `instances` radiographs each, for demos and
/// benchmarks; `size` 512 gives ~0.5 MB per instance.
pub fn radiograph_studies(count: u32, instances: u32, size: u16) -> Vec<StudySpec> {
    (1..=count)
        .map(|i| StudySpec {
            patient_id: format!("MRN{:07}", 4_000_000 + i),
            patient_name: format!("Fake^Patient{i}^Demo"),
            accession_number: format!("ACC{:08}", 70_000_000 + i),
            study_uid: format!("{UID_ROOT}.3.{i}"),
            study_date: format!("2023{:02}{:02}", 1 + i % 12, 1 + i % 28),
            series: vec![SeriesSpec { modality: "DX", description: "CHEST PA", instances }],
            size,
            number: 1000 + i,
        })
        .collect()
}

fn text(tag: Tag, vr: VR, value: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::from(value))
}

/// Writes every instance of `study` under `out/<accession>/`; the paths written.
pub fn write_study(out: &Path, study: &StudySpec) -> std::io::Result<Vec<PathBuf>> {
    let dir = out.join(&study.accession_number);
    std::fs::create_dir_all(&dir)?;
    let pixels: Vec<u16> = (0..u32::from(study.size) * u32::from(study.size)).map(|i| ((i * 13) % 4096) as u16).collect();
    let mut written = Vec::new();
    for (index, series) in study.series.iter().enumerate() {
        let series_uid = study.series_uid(index);
        let sop_class = match series.modality {
            "MR" => MR,
            "CT" => CT,
            _ => DX,
        };
        for instance in 1..=series.instances {
            let sop_uid = format!("{series_uid}.{instance}");
            let meta = FileMetaTableBuilder::new()
                .transfer_syntax("1.2.840.10008.1.2.1")
                .media_storage_sop_class_uid(sop_class)
                .media_storage_sop_instance_uid(sop_uid.as_str())
                .build()
                .map_err(std::io::Error::other)?;
            let mut object = FileDicomObject::new_empty_with_meta(meta);
            let other = format!("{series_uid}.{}", if instance == 1 { series.instances } else { 1 });
            let reference = InMemDicomObject::from_element_iter([
                text(tags::REFERENCED_SOP_CLASS_UID, VR::UI, sop_class),
                text(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, &other),
            ]);
            let elements = [
                text(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
                text(tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY"),
                text(tags::SOP_CLASS_UID, VR::UI, sop_class),
                text(tags::SOP_INSTANCE_UID, VR::UI, &sop_uid),
                text(tags::STUDY_DATE, VR::DA, &study.study_date),
                text(tags::SERIES_DATE, VR::DA, &study.study_date),
                text(tags::STUDY_TIME, VR::TM, "093000"),
                text(tags::ACCESSION_NUMBER, VR::SH, &study.accession_number),
                text(tags::MODALITY, VR::CS, series.modality),
                text(tags::MANUFACTURER, VR::LO, "Carestream Health"),
                text(tags::INSTITUTION_NAME, VR::LO, "Fake General Hospital"),
                text(tags::REFERRING_PHYSICIAN_NAME, VR::PN, "Doctor^Fake"),
                text(tags::STUDY_DESCRIPTION, VR::LO, "XR CHEST"),
                text(tags::SERIES_DESCRIPTION, VR::LO, series.description),
                text(tags::OPERATORS_NAME, VR::PN, "Radiographer^Fake"),
                DataElement::new(tags::REFERENCED_IMAGE_SEQUENCE, VR::SQ, Value::Sequence(DataSetSequence::new(vec![reference], Length::UNDEFINED))),
                text(tags::PATIENT_NAME, VR::PN, &study.patient_name),
                text(tags::PATIENT_ID, VR::LO, &study.patient_id),
                text(tags::PATIENT_BIRTH_DATE, VR::DA, "19700101"),
                text(tags::PATIENT_SEX, VR::CS, "F"),
                text(tags::PATIENT_ADDRESS, VR::LO, "1 Fake Street, London"),
                text(tags::BODY_PART_EXAMINED, VR::CS, "CHEST"),
                text(tags::STUDY_INSTANCE_UID, VR::UI, &study.study_uid),
                text(tags::SERIES_INSTANCE_UID, VR::UI, &series_uid),
                text(tags::STUDY_ID, VR::SH, "1"),
                text(tags::SERIES_NUMBER, VR::IS, &(index + 1).to_string()),
                text(tags::INSTANCE_NUMBER, VR::IS, &instance.to_string()),
                text(tags::FRAME_OF_REFERENCE_UID, VR::UI, &format!("{UID_ROOT}.{}.99", study.number)),
                DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16)),
                text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
                DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(study.size)),
                DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(study.size)),
                DataElement::new(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16u16)),
                DataElement::new(tags::BITS_STORED, VR::US, PrimitiveValue::from(12u16)),
                DataElement::new(tags::HIGH_BIT, VR::US, PrimitiveValue::from(11u16)),
                DataElement::new(tags::PIXEL_REPRESENTATION, VR::US, PrimitiveValue::from(0u16)),
                text(Tag(0x0029, 0x0010), VR::LO, "FAKE_VENDOR_01"),
                text(Tag(0x0029, 0x1001), VR::LO, &format!("operator note for {}", study.patient_id)),
                DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(pixels.iter().copied().collect())),
            ];
            for element in elements {
                object.put(element);
            }
            let path = dir.join(format!("{}-{}.dcm", index + 1, instance));
            object.write_to_file(&path).map_err(std::io::Error::other)?;
            written.push(path);
        }
    }
    Ok(written)
}
