//! The real DICOM corpus (pydicom's bundled files), a project accepting all of it, and the
//! check that no identifier of any input survives in any output.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;

/// One file of pydicom's corpus.
pub fn pydicom_file(name: &str) -> PathBuf {
    pydicom_files().join(name)
}

/// pydicom's bundled test files, found through the Python that test/run.sh provisioned.
pub fn pydicom_files() -> PathBuf {
    let output = std::process::Command::new("python3")
        .args(["-c", "import os, pydicom; print(os.path.join(os.path.dirname(pydicom.__file__), 'data', 'test_files'))"])
        .output()
        .expect("python3 runs");
    assert!(output.status.success(), "pydicom is installed (test/run.sh installs it): {}", String::from_utf8_lossy(&output.stderr));
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

/// `<dir>/configs` with project `check-project`: every modality of the corpus, the shipped
/// profiles, any manufacturer.
pub fn project_dir(dir: &Path) -> PathBuf {
    let configs = dir.join("configs");
    std::fs::create_dir_all(&configs).unwrap();
    std::os::unix::fs::symlink(crate::repo_root().join("projects/configs/tag-operations"), configs.join("tag-operations")).unwrap();
    std::fs::write(
        configs.join("check-project.yaml"),
        "project:\n  name: check-project\n  modalities: [CT, MR, OT, US, CR, DX, NM, PT, RTSTRUCT, RTDOSE, RTPLAN, SR, MG, XA, RF]\n\
         tag_operation_files:\n  base: [base.yaml, ct.yaml, mr.yaml, xray.yaml, us.yaml, pet.yaml, nm.yaml, rt.yaml]\n\
         allowed_manufacturers:\n  - regex: '.*'\n\
         min_instances_per_series: 1\ndestination:\n  dicom: none\n  parquet: none\n",
    )
    .unwrap();
    configs
}

pub fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { all_files(&path, out) } else { out.push(path) }
    }
}

fn text(object: &dicom_object::InMemDicomObject, tag: dicom_core::Tag) -> Option<String> {
    object.element_opt(tag).ok().flatten().and_then(|e| e.to_str().ok().map(|s| s.trim_matches([' ', '\0']).to_owned()))
}

/// Identifying values of an input: names, ids, accession, UIDs, dates.
fn identifiers(path: &Path) -> BTreeSet<String> {
    let Ok(object) = dicom_object::open_file(path) else { return BTreeSet::new() };
    let mut values = BTreeSet::new();
    for tag in [
        tags::PATIENT_NAME,
        tags::PATIENT_ID,
        tags::ACCESSION_NUMBER,
        tags::STUDY_INSTANCE_UID,
        tags::SERIES_INSTANCE_UID,
        tags::SOP_INSTANCE_UID,
        tags::STUDY_DATE,
        tags::PATIENT_BIRTH_DATE,
        tags::INSTITUTION_NAME,
        tags::REFERRING_PHYSICIAN_NAME,
        tags::OPERATORS_NAME,
        tags::FRAME_OF_REFERENCE_UID,
    ] {
        // Very short values (a one-letter name) would match by chance anywhere.
        if let Some(value) = text(&object, tag).filter(|v| v.len() >= 6) {
            values.insert(value);
        }
    }
    values
}

/// Asserts that no identifying value of any input appears in any byte of any output
/// (pixel data aside), and that every output is marked and has a consistent file meta.
pub fn assert_no_identifiers(inputs: &[PathBuf], outputs: &[PathBuf]) {
    // A value within some input's Manufacturer (kept on purpose: Retain Device Identity) is
    // not a secret: pydicom's MR files name "TOSHIBA" as institution, "TOSHIBA_MEC" as maker.
    let manufacturers: BTreeSet<String> = inputs.iter().filter_map(|p| dicom_object::open_file(p).ok()).filter_map(|o| text(&o, tags::MANUFACTURER)).collect();
    let secrets: BTreeSet<String> = inputs.iter().flat_map(|p| identifiers(p)).filter(|s| !manufacturers.iter().any(|m| m.contains(s.as_str()))).collect();
    assert!(secrets.len() > 5, "the inputs have identifiers to look for: {}", secrets.len());
    let any_secret = regex::bytes::Regex::new(&secrets.iter().map(|s| regex::escape(s)).collect::<Vec<_>>().join("|")).unwrap();
    for path in outputs {
        // Every byte but the pixel data, which passes through untouched and whose numbers
        // would match short digit strings by chance.
        let mut object = dicom_object::open_file(path).unwrap();
        let pixels = object.take_element(tags::PIXEL_DATA).ok();
        let mut bytes = Vec::new();
        object.write_all(&mut bytes).unwrap();
        if let Some(found) = any_secret.find(&bytes) {
            let value = String::from_utf8_lossy(found.as_bytes()).into_owned();
            let holder = object.iter().find(|e| e.to_str().is_ok_and(|v| v.contains(&value))).map(|e| e.header().tag);
            panic!("{value:?} survived in {} (element {holder:?})", path.display());
        }
        if let Some(pixels) = pixels {
            object.put(pixels);
        }
        assert_eq!(object.element(tags::PATIENT_IDENTITY_REMOVED).unwrap().to_str().unwrap().trim(), "YES");
        assert_eq!(
            object.meta().media_storage_sop_instance_uid().trim_end_matches('\0'),
            object.element(tags::SOP_INSTANCE_UID).unwrap().to_str().unwrap().trim_end_matches('\0')
        );
    }
}

/// A generated instance with identifying values in the usual places and pixel data of a
/// chosen shape (8 bits per sample, uncompressed, explicit VR little endian). Fields are
/// public so a test sets only what it cares about.
#[derive(Debug, Clone)]
pub struct Synthetic {
    pub modality: String,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub study_uid: String,
    pub series_uid: String,
    pub sop_uid: String,
    pub series_number: Option<i32>,
    pub series_description: String,
    pub patient_id: String,
    pub accession: String,
    pub rows: u16,
    pub columns: u16,
    /// 1 (MONOCHROME2) or 3 (RGB).
    pub samples_per_pixel: u16,
    /// PlanarConfiguration of RGB: 0 interleaved, 1 one plane per sample. `pixels` must
    /// be in that layout.
    pub planar_configuration: u16,
    pub frames: u32,
    /// `rows * columns * samples * frames` bytes; by default every byte is `fill`.
    pub pixels: Option<Vec<u8>>,
    pub fill: u8,
    /// Regions of `SequenceOfUltrasoundRegions` as (x0, y0, x1, y1), inclusive.
    pub us_regions: Vec<(u32, u32, u32, u32)>,
}

impl Synthetic {
    /// Instance `n` of a series, with made-up identifiers that a leak check can look for.
    pub fn new(modality: &str, n: u32) -> Self {
        Self {
            modality: modality.to_owned(),
            manufacturer: Some("Carestream".to_owned()),
            model: None,
            study_uid: "1.2.826.0.1.3680043.10.1002.1".to_owned(),
            series_uid: "1.2.826.0.1.3680043.10.1002.1.1".to_owned(),
            sop_uid: format!("1.2.826.0.1.3680043.10.1002.1.1.{n}"),
            series_number: Some(1),
            series_description: "AXIAL".to_owned(),
            patient_id: "MRN40417711".to_owned(),
            accession: "ACC9031007".to_owned(),
            rows: 16,
            columns: 16,
            samples_per_pixel: 1,
            planar_configuration: 0,
            frames: 1,
            pixels: None,
            fill: 0x80,
            us_regions: Vec::new(),
        }
    }

    pub fn pixel_len(&self) -> usize {
        usize::from(self.rows) * usize::from(self.columns) * usize::from(self.samples_per_pixel) * self.frames as usize
    }

    pub fn build(&self) -> dicom_object::DefaultDicomObject {
        use dicom_core::value::{DataSetSequence, PrimitiveValue, Value};
        use dicom_core::{DataElement, Length, VR};
        use dicom_object::InMemDicomObject;
        let sop_class = match self.modality.as_str() {
            "US" if self.frames > 1 => "1.2.840.10008.5.1.4.1.1.3.1",
            "US" => "1.2.840.10008.5.1.4.1.1.6.1",
            "CT" => "1.2.840.10008.5.1.4.1.1.2",
            "MR" => "1.2.840.10008.5.1.4.1.1.4",
            _ => "1.2.840.10008.5.1.4.1.1.7",
        };
        let meta = dicom_object::meta::FileMetaTableBuilder::new()
            .transfer_syntax("1.2.840.10008.1.2.1")
            .media_storage_sop_class_uid(sop_class)
            .media_storage_sop_instance_uid(&self.sop_uid)
            .build()
            .expect("a complete file meta");
        let mut object = dicom_object::FileDicomObject::new_empty_with_meta(meta);
        let text = |tag, vr, value: &str| DataElement::<InMemDicomObject>::new(tag, vr, PrimitiveValue::from(value));
        let us = |tag, value: u16| DataElement::<InMemDicomObject>::new(tag, VR::US, PrimitiveValue::from(value));
        for element in [
            text(tags::SOP_CLASS_UID, VR::UI, sop_class),
            text(tags::SOP_INSTANCE_UID, VR::UI, &self.sop_uid),
            text(tags::STUDY_DATE, VR::DA, "20230411"),
            text(tags::STUDY_TIME, VR::TM, "101500"),
            text(tags::ACCESSION_NUMBER, VR::SH, &self.accession),
            text(tags::MODALITY, VR::CS, &self.modality),
            text(tags::INSTITUTION_NAME, VR::LO, "Hospital Of Identifiable Things"),
            text(tags::REFERRING_PHYSICIAN_NAME, VR::PN, "Referrer^Identifiable"),
            text(tags::SERIES_DESCRIPTION, VR::LO, &self.series_description),
            text(tags::PATIENT_NAME, VR::PN, "Identifiable^Patient"),
            text(tags::PATIENT_ID, VR::LO, &self.patient_id),
            text(tags::PATIENT_BIRTH_DATE, VR::DA, "19610203"),
            text(tags::PATIENT_SEX, VR::CS, "F"),
            text(tags::STUDY_INSTANCE_UID, VR::UI, &self.study_uid),
            text(tags::SERIES_INSTANCE_UID, VR::UI, &self.series_uid),
            text(tags::STUDY_ID, VR::SH, "STUDY7781"),
            text(tags::INSTANCE_NUMBER, VR::IS, "1"),
            us(tags::SAMPLES_PER_PIXEL, self.samples_per_pixel),
            text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, if self.samples_per_pixel == 3 { "RGB" } else { "MONOCHROME2" }),
            us(tags::ROWS, self.rows),
            us(tags::COLUMNS, self.columns),
            us(tags::BITS_ALLOCATED, 8),
            us(tags::BITS_STORED, 8),
            us(tags::HIGH_BIT, 7),
            us(tags::PIXEL_REPRESENTATION, 0),
        ] {
            object.put(element);
        }
        if let Some(manufacturer) = &self.manufacturer {
            object.put(text(tags::MANUFACTURER, VR::LO, manufacturer));
        }
        if let Some(model) = &self.model {
            object.put(text(tags::MANUFACTURER_MODEL_NAME, VR::LO, model));
        }
        if let Some(number) = self.series_number {
            object.put(text(tags::SERIES_NUMBER, VR::IS, &number.to_string()));
        }
        if self.samples_per_pixel > 1 {
            object.put(us(tags::PLANAR_CONFIGURATION, self.planar_configuration));
        }
        if self.frames > 1 {
            object.put(text(tags::NUMBER_OF_FRAMES, VR::IS, &self.frames.to_string()));
        }
        if !self.us_regions.is_empty() {
            let items = self.us_regions.iter().map(|&(x0, y0, x1, y1)| {
                InMemDicomObject::from_element_iter([
                    DataElement::new(tags::REGION_LOCATION_MIN_X0, VR::UL, PrimitiveValue::from(x0)),
                    DataElement::new(tags::REGION_LOCATION_MIN_Y0, VR::UL, PrimitiveValue::from(y0)),
                    DataElement::new(tags::REGION_LOCATION_MAX_X1, VR::UL, PrimitiveValue::from(x1)),
                    DataElement::new(tags::REGION_LOCATION_MAX_Y1, VR::UL, PrimitiveValue::from(y1)),
                    us(tags::REGION_SPATIAL_FORMAT, 1),
                    us(tags::REGION_DATA_TYPE, 1),
                ])
            });
            object.put(DataElement::new(
                tags::SEQUENCE_OF_ULTRASOUND_REGIONS,
                VR::SQ,
                Value::Sequence(DataSetSequence::new(items.collect::<Vec<_>>(), Length::UNDEFINED)),
            ));
        }
        let pixels = self.pixels.clone().unwrap_or_else(|| vec![self.fill; self.pixel_len()]);
        assert_eq!(pixels.len(), self.pixel_len(), "pixel data matches the shape");
        object.put(DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::U8(pixels.into())));
        object
    }

    /// Writes the instance to `path`.
    pub fn write(&self, path: &Path) {
        self.build().write_to_file(path).expect("the synthetic instance is written");
    }
}
