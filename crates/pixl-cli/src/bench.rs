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
