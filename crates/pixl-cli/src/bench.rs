//! `pixl bench ...`: generators for the benchmarks in `docs/benchmarks.md`.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Date32Array, Int64Array, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;

/// Rows per parquet part file.
const PART_ROWS: u64 = 100_000;

/// Writes a synthetic OMOP-ES extract in the batched layout with `rows` procedures: one
/// person per three procedures, every tenth procedure without accession or study UID (as
/// non-imaging procedures are in real extracts). Streams part by part, so memory stays flat.
pub fn generate_omop(out: &Path, rows: u64, project_name: &str) -> std::io::Result<()> {
    let person_dir = out.join("private/person_links");
    let link_dir = out.join("private/procedure_occurrence_links");
    let procedure_dir = out.join("public/omop/procedure_occurrence");
    for dir in [&person_dir, &link_dir, &procedure_dir] {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        out.join("extract_summary.json"),
        serde_json::json!({"datetime": "2024-02-01 09:00:00", "settings": {"cdm_source_name": project_name}}).to_string(),
    )?;
    let persons = rows.div_ceil(3);
    let write = |path: &Path, columns: Vec<(&str, ArrayRef)>| -> std::io::Result<()> {
        let batch = RecordBatch::try_from_iter(columns).map_err(std::io::Error::other)?;
        let mut writer = ArrowWriter::try_new(std::fs::File::create(path)?, batch.schema(), None).map_err(std::io::Error::other)?;
        writer.write(&batch).map_err(std::io::Error::other)?;
        writer.close().map_err(std::io::Error::other)?;
        Ok(())
    };
    for (part, start) in (0..persons).step_by(PART_ROWS as usize).enumerate() {
        let ids: Vec<i64> = (start..(start + PART_ROWS).min(persons)).map(|i| i as i64 + 1).collect();
        let mrns: Vec<String> = ids.iter().map(|id| format!("MRN{id:09}")).collect();
        write(
            &person_dir.join(format!("part-{part}.parquet")),
            vec![("person_id", Arc::new(Int64Array::from(ids)) as ArrayRef), ("PrimaryMrn", Arc::new(StringArray::from(mrns)))],
        )?;
    }
    for (part, start) in (0..rows).step_by(PART_ROWS as usize).enumerate() {
        let ids: Vec<i64> = (start..(start + PART_ROWS).min(rows)).map(|i| i as i64 + 1).collect();
        let imaging = |id: &i64| id % 10 != 0;
        let accessions: Vec<Option<String>> = ids.iter().map(|id| imaging(id).then(|| format!("ACC{id:010}"))).collect();
        let uids: Vec<Option<String>> = ids.iter().map(|id| imaging(id).then(|| format!("1.2.826.0.1.3680043.10.1.{id}"))).collect();
        write(
            &link_dir.join(format!("part-{part}.parquet")),
            vec![
                ("procedure_occurrence_id", Arc::new(Int64Array::from(ids.clone())) as ArrayRef),
                ("AccessionNumber", Arc::new(StringArray::from(accessions))),
                ("StudyUid_X", Arc::new(StringArray::from(uids))),
            ],
        )?;
        let person_ids: Vec<i64> = ids.iter().map(|id| (id - 1) / 3 + 1).collect();
        // Days since 1970-01-01: spread over 2015..2024.
        let dates: Vec<i32> = ids.iter().map(|id| 16_436 + (*id % 3_300) as i32).collect();
        write(
            &procedure_dir.join(format!("part-{part}.parquet")),
            vec![
                ("procedure_occurrence_id", Arc::new(Int64Array::from(ids)) as ArrayRef),
                ("person_id", Arc::new(Int64Array::from(person_ids))),
                ("procedure_date", Arc::new(Date32Array::from(dates))),
            ],
        )?;
    }
    Ok(())
}

/// Writes `count` synthetic CT slices (512×512, 16-bit, ~0.5 MB each) of one study to
/// `out`, shaped like a real scanner's output for the de-identification benchmark: patient
/// data in the standard tags, ~150 private elements in two private blocks, and nested
/// sequences carrying the UIDs of other instances.
pub fn generate_ct(out: &std::path::Path, count: u32) -> std::io::Result<()> {
    use dicom_core::value::{DataSetSequence, PrimitiveValue, Value};
    use dicom_core::{DataElement, Length, Tag, VR};
    use dicom_dictionary_std::tags;
    use dicom_object::meta::FileMetaTableBuilder;
    use dicom_object::{FileDicomObject, InMemDicomObject};

    std::fs::create_dir_all(out)?;
    let study = "1.2.826.0.1.3680043.10.1001.1";
    let series = "1.2.826.0.1.3680043.10.1001.1.1";
    let sop = |i: u32| format!("1.2.826.0.1.3680043.10.1001.1.1.{i}");
    let text = |tag: Tag, vr: VR, value: &str| DataElement::new(tag, vr, PrimitiveValue::from(value));
    let pixels: Vec<u16> = (0..512u32 * 512).map(|i| ((i * 7) % 4096) as u16).collect();
    for i in 1..=count {
        let meta = FileMetaTableBuilder::new()
            .transfer_syntax("1.2.840.10008.1.2.1")
            .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.2")
            .media_storage_sop_instance_uid(sop(i))
            .build()
            .map_err(std::io::Error::other)?;
        let mut object = FileDicomObject::new_empty_with_meta(meta);
        let reference = |uid: String| {
            InMemDicomObject::from_element_iter([
                text(tags::REFERENCED_SOP_CLASS_UID, VR::UI, "1.2.840.10008.5.1.4.1.1.2"),
                text(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, &uid),
            ])
        };
        let neighbours = vec![reference(sop(if i > 1 { i - 1 } else { count })), reference(sop(if i < count { i + 1 } else { 1 }))];
        let elements = [
            text(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
            text(tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY\\AXIAL"),
            text(tags::SOP_CLASS_UID, VR::UI, "1.2.840.10008.5.1.4.1.1.2"),
            text(tags::SOP_INSTANCE_UID, VR::UI, &sop(i)),
            text(tags::STUDY_DATE, VR::DA, "20230314"),
            text(tags::SERIES_DATE, VR::DA, "20230314"),
            text(tags::STUDY_TIME, VR::TM, "101500"),
            text(tags::ACCESSION_NUMBER, VR::SH, "ACC20230314"),
            text(tags::MODALITY, VR::CS, "CT"),
            text(tags::MANUFACTURER, VR::LO, "GE MEDICAL SYSTEMS"),
            text(tags::INSTITUTION_NAME, VR::LO, "University Hospital Trust"),
            text(tags::REFERRING_PHYSICIAN_NAME, VR::PN, "Referrer^Robert"),
            text(tags::STATION_NAME, VR::SH, "CTSTATION7"),
            text(tags::STUDY_DESCRIPTION, VR::LO, "CT CHEST"),
            text(tags::SERIES_DESCRIPTION, VR::LO, "AXIAL 1.25mm"),
            text(tags::OPERATORS_NAME, VR::PN, "Operator^Olivia"),
            DataElement::new(tags::REFERENCED_IMAGE_SEQUENCE, VR::SQ, Value::Sequence(DataSetSequence::new(neighbours, Length::UNDEFINED))),
            text(tags::PATIENT_NAME, VR::PN, "Bench^Patient^Middle"),
            text(tags::PATIENT_ID, VR::LO, "MRN00012345"),
            text(tags::PATIENT_BIRTH_DATE, VR::DA, "19610203"),
            text(tags::PATIENT_SEX, VR::CS, "F"),
            text(tags::PATIENT_AGE, VR::AS, "062Y"),
            text(tags::PATIENT_ADDRESS, VR::LO, "1 Hospital Road, London"),
            text(tags::SLICE_THICKNESS, VR::DS, "1.25"),
            text(tags::KVP, VR::DS, "120"),
            text(tags::STUDY_INSTANCE_UID, VR::UI, study),
            text(tags::SERIES_INSTANCE_UID, VR::UI, series),
            text(tags::SERIES_NUMBER, VR::IS, "2"),
            text(tags::INSTANCE_NUMBER, VR::IS, &i.to_string()),
            text(tags::IMAGE_POSITION_PATIENT, VR::DS, &format!("-250\\-250\\{}", f64::from(i) * 1.25)),
            text(tags::IMAGE_ORIENTATION_PATIENT, VR::DS, "1\\0\\0\\0\\1\\0"),
            text(tags::FRAME_OF_REFERENCE_UID, VR::UI, "1.2.826.0.1.3680043.10.1001.1.9"),
            DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16)),
            text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
            DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(512u16)),
            DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(512u16)),
            text(tags::PIXEL_SPACING, VR::DS, "0.7\\0.7"),
            DataElement::new(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16u16)),
            DataElement::new(tags::BITS_STORED, VR::US, PrimitiveValue::from(12u16)),
            DataElement::new(tags::HIGH_BIT, VR::US, PrimitiveValue::from(11u16)),
            DataElement::new(tags::PIXEL_REPRESENTATION, VR::US, PrimitiveValue::from(0u16)),
            text(tags::RESCALE_INTERCEPT, VR::DS, "-1024"),
            text(tags::RESCALE_SLOPE, VR::DS, "1"),
            text(Tag(0x0019, 0x0010), VR::LO, "GEMS_ACQU_01"),
            text(Tag(0x0043, 0x0010), VR::LO, "GEMS_PARM_01"),
            DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(pixels.iter().copied().collect())),
        ];
        for element in elements {
            object.put(element);
        }
        for k in 0..75u16 {
            object.put(text(Tag(0x0019, 0x1000 + k), VR::LO, &format!("acquisition parameter {k} of MRN00012345")));
            object.put(text(Tag(0x0043, 0x1000 + k), VR::DS, &format!("{}.5", k)));
        }
        object.write_to_file(out.join(format!("slice-{i:05}.dcm"))).map_err(std::io::Error::other)?;
    }
    Ok(())
}

/// Writes `count` synthetic notes with gold spans (character offsets) as JSON lines to
/// `out`, and, when asked, their patients' probes to `probes_out`. Seeded: reproducible.
pub fn generate_notes(out: &Path, probes_out: Option<&Path>, count: usize, seed: u64, case: pixl_text::synth::Case) -> std::io::Result<()> {
    use std::io::Write;
    let (notes, patients) = pixl_text::synth::corpus_in(seed, count, case);
    let mut writer = std::io::BufWriter::new(std::fs::File::create(out)?);
    for note in &notes {
        let detection = pixl_text::Detection { spans: note.spans.clone(), flagged: false };
        let mut line = crate::deid_text::spans_json(&note.id, &note.text, &detection);
        line["text"] = serde_json::Value::String(note.text.clone());
        line["patient_id"] = serde_json::Value::String(note.patient_id.clone());
        if let Some(object) = line.as_object_mut() {
            object.remove("flagged");
        }
        writeln!(writer, "{line}")?;
    }
    writer.flush()?;
    if let Some(path) = probes_out {
        let mut writer = std::io::BufWriter::new(std::fs::File::create(path)?);
        for patient in &patients {
            let r = &patient.record;
            let line = serde_json::json!({
                "patient_id": patient.id,
                "first_names": r.first_names,
                "surnames": r.surnames,
                "identifiers": r.identifiers,
                "dates_of_birth": r.dates_of_birth,
                "phones": r.phones,
                "postcodes": r.postcodes,
            });
            writeln!(writer, "{line}")?;
        }
        writer.flush()?;
    }
    Ok(())
}
