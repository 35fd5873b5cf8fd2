//! The image linker: `radiology/IMAGE_LINKER.parquet` in an extract's directory of the
//! export tree, one row per exported study of the extract (`procedure_occurrence_id`,
//! `pseudo_study_uid`), so researchers can join the OMOP tables to the images. Both
//! columns are exportable: the procedure id is the OMOP-ES public table's own key, the
//! UID is pseudonymous.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use pixl_core::ids::PseudoStudyUid;
use sqlx::{PgPool, Row};

/// One row of the linker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkerRow {
    /// Null for studies that came from a CSV cohort without one.
    pub procedure_occurrence_id: Option<i64>,
    pub pseudo_study_uid: PseudoStudyUid,
}

/// The exported studies of the project that extract `extract_id` names (whichever extract
/// first queued them, or PIXL exported them), with this extract's procedure ids, whose
/// images went to a destination (not those of a project exporting no DICOM), ordered by
/// procedure and UID.
pub async fn exported_studies(pool: &PgPool, extract_id: i64) -> Result<Vec<LinkerRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT DISTINCT named.procedure_occurrence_id, s.pseudo_study_uid FROM (
             SELECT s.procedure_occurrence_id, s.id FROM studies s WHERE s.extract_id = $1
             UNION ALL
             SELECT es.procedure_occurrence_id, es.study_id FROM extract_studies es WHERE es.extract_id = $1
         ) named
         JOIN studies s ON s.id = named.id
         WHERE s.state = 'exported' AND s.exported_to IS DISTINCT FROM 'none' AND s.pseudo_study_uid IS NOT NULL
         ORDER BY 1 NULLS LAST, 2",
    )
    .bind(extract_id)
    .fetch_all(pool)
    .await?;
    let mut linked = Vec::with_capacity(rows.len());
    for row in rows {
        let uid: String = row.get("pseudo_study_uid");
        // A UID that does not parse is not exported; anon-node only records valid ones.
        if let Ok(pseudo_study_uid) = PseudoStudyUid::parse(&uid) {
            linked.push(LinkerRow { procedure_occurrence_id: row.get("procedure_occurrence_id"), pseudo_study_uid });
        }
    }
    Ok(linked)
}

/// The linker's schema.
pub fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![Field::new("procedure_occurrence_id", DataType::Int64, true), Field::new("pseudo_study_uid", DataType::Utf8, false)]))
}

/// Writes the linker to `path` (a temporary file beside it, then a rename).
pub fn write(path: &Path, rows: &[LinkerRow]) -> Result<(), String> {
    let parent = path.parent().ok_or("the linker path has no directory")?;
    std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let procedures: ArrayRef = Arc::new(rows.iter().map(|r| r.procedure_occurrence_id).collect::<Int64Array>());
    let uids: ArrayRef = Arc::new(rows.iter().map(|r| Some(r.pseudo_study_uid.as_str())).collect::<StringArray>());
    let batch = RecordBatch::try_new(schema(), vec![procedures, uids]).map_err(|e| e.to_string())?;
    let partial = parent.join(".IMAGE_LINKER.parquet.partial");
    let file = std::fs::File::create(&partial).map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None).map_err(|e| e.to_string())?;
    writer.write(&batch).map_err(|e| e.to_string())?;
    writer.close().map_err(|e| e.to_string())?;
    std::fs::rename(&partial, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Every `*.parquet` file under `root`, as sorted relative paths; hidden files (partial
/// writes) are skipped.
pub fn parquet_files(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    fn walk(root: &Path, dir: &Path, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                walk(root, &path, found)?;
            } else if path.extension().is_some_and(|e| e == "parquet") {
                found.push(path.strip_prefix(root).expect("walked from root").to_owned());
            }
        }
        Ok(())
    }
    let mut found = Vec::new();
    walk(root, root, &mut found)?;
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use arrow_array::Array;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    #[test]
    fn linker_round_trips_and_lists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("radiology/IMAGE_LINKER.parquet");
        let rows = vec![
            LinkerRow { procedure_occurrence_id: Some(4), pseudo_study_uid: PseudoStudyUid::parse("2.25.1").unwrap() },
            LinkerRow { procedure_occurrence_id: None, pseudo_study_uid: PseudoStudyUid::parse("2.25.2").unwrap() },
        ];
        write(&path, &rows).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap()).unwrap().build().unwrap();
        let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
        assert_eq!(batches[0].schema(), schema());
        let ids = batches[0].column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        let uids = batches[0].column(1).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!((ids.value(0), ids.is_null(1)), (4, true));
        assert_eq!((uids.value(0), uids.value(1)), ("2.25.1", "2.25.2"));

        std::fs::create_dir_all(dir.path().join("omop/public")).unwrap();
        std::fs::write(dir.path().join("omop/public/PROCEDURE_OCCURRENCE.parquet"), b"").unwrap();
        std::fs::write(dir.path().join("omop/public/.half.parquet"), b"").unwrap();
        std::fs::write(dir.path().join("omop/public/notes.txt"), b"").unwrap();
        assert_eq!(
            parquet_files(dir.path()).unwrap(),
            [PathBuf::from("omop/public/PROCEDURE_OCCURRENCE.parquet"), PathBuf::from("radiology/IMAGE_LINKER.parquet")]
        );
    }
}
