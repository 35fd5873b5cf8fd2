//! The reports of an extract: `radiology/radiology.parquet` beside the image linker, one
//! row per study of the extract whose EHR row ehr-api stored and no flag withholds
//! (`procedure_occurrence_id`, `pseudo_study_uid`, `age`, `sex`, `ethnicity`, `height`,
//! `weight`, `gcs`, `report_text`). Every value is de-identified or pseudonymous: the
//! report went through pixl-text and the second check (or a person's review), the age is
//! in whole years with 90 and over as 90.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use sqlx::{PgPool, Row};

/// The file's name, in the extract's `radiology/` folder.
pub const RADIOLOGY_FILE: &str = "radiology.parquet";

/// One row. Its `Debug` shows no report text.
#[derive(Clone, PartialEq)]
pub struct ReportRow {
    pub procedure_occurrence_id: Option<i64>,
    pub pseudo_study_uid: Option<String>,
    pub age: Option<i32>,
    pub sex: Option<String>,
    pub ethnicity: Option<String>,
    pub height: Option<f64>,
    pub weight: Option<f64>,
    pub gcs: Option<f64>,
    pub report_text: Option<String>,
}

impl std::fmt::Debug for ReportRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportRow").field("procedure_occurrence_id", &self.procedure_occurrence_id).finish_non_exhaustive()
    }
}

/// Where the EHR of an extract's studies stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EhrCounts {
    /// Stored and not withheld (done, or released/redacted by a person).
    pub ready: i64,
    /// Withheld: the second check doubts them and nobody has reviewed them yet.
    pub flagged: i64,
    /// Not handled yet by ehr-api.
    pub pending: i64,
    /// The EHR has no such patient.
    pub no_record: i64,
    pub failed: i64,
}

/// The studies an extract names (as the image linker counts them), by id, with this
/// extract's procedure ids.
const EXTRACT_STUDIES: &str = "SELECT DISTINCT named.procedure_occurrence_id, named.id FROM (
         SELECT s.procedure_occurrence_id, s.id FROM studies s WHERE s.extract_id = $1
         UNION ALL
         SELECT es.procedure_occurrence_id, es.study_id FROM extract_studies es WHERE es.extract_id = $1
     ) named";

/// How the EHR of the extract's studies stands.
pub async fn counts(pool: &PgPool, extract_id: i64) -> Result<EhrCounts, sqlx::Error> {
    let sql = format!(
        "SELECT s.ehr_state::text AS state, count(DISTINCT s.id) AS n FROM ({EXTRACT_STUDIES}) x JOIN studies s ON s.id = x.id
         WHERE s.ehr_wanted OR s.ehr_state IS NOT NULL GROUP BY 1"
    );
    let mut counts = EhrCounts::default();
    for row in sqlx::query(sqlx::AssertSqlSafe(sql)).bind(extract_id).fetch_all(pool).await? {
        let n: i64 = row.get("n");
        match row.get::<Option<String>, _>("state").as_deref() {
            Some("done") => counts.ready += n,
            Some("flagged") => counts.flagged += n,
            Some("no_record") => counts.no_record += n,
            Some("failed") => counts.failed += n,
            _ => counts.pending += n,
        }
    }
    Ok(counts)
}

/// The rows of the file: the extract's studies whose EHR row is stored and not withheld,
/// ordered by procedure and study.
pub async fn rows(pool: &PgPool, extract_id: i64) -> Result<Vec<ReportRow>, sqlx::Error> {
    let sql = format!(
        "SELECT x.procedure_occurrence_id, s.pseudo_study_uid, a.age, a.sex, a.ethnicity, a.height, a.weight, a.gcs, a.report_text
         FROM ({EXTRACT_STUDIES}) x JOIN studies s ON s.id = x.id JOIN ehr_anon a ON a.study_id = s.id
         WHERE s.ehr_state = 'done'
         ORDER BY x.procedure_occurrence_id NULLS LAST, s.id"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(extract_id).fetch_all(pool).await?;
    rows.into_iter()
        .map(|row| {
            Ok(ReportRow {
                procedure_occurrence_id: row.try_get("procedure_occurrence_id")?,
                pseudo_study_uid: row.try_get("pseudo_study_uid")?,
                age: row.try_get("age")?,
                sex: row.try_get("sex")?,
                ethnicity: row.try_get("ethnicity")?,
                height: row.try_get("height")?,
                weight: row.try_get("weight")?,
                gcs: row.try_get("gcs")?,
                report_text: row.try_get("report_text")?,
            })
        })
        .collect()
}

pub fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("procedure_occurrence_id", DataType::Int64, true),
        Field::new("pseudo_study_uid", DataType::Utf8, true),
        Field::new("age", DataType::Int32, true),
        Field::new("sex", DataType::Utf8, true),
        Field::new("ethnicity", DataType::Utf8, true),
        Field::new("height", DataType::Float64, true),
        Field::new("weight", DataType::Float64, true),
        Field::new("gcs", DataType::Float64, true),
        Field::new("report_text", DataType::Utf8, true),
    ]))
}

/// Writes the file to `path` (a temporary file beside it, then a rename).
pub fn write(path: &Path, rows: &[ReportRow]) -> Result<(), String> {
    let parent = path.parent().ok_or("the radiology path has no directory")?;
    std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let text = |f: fn(&ReportRow) -> Option<&str>| -> ArrayRef { Arc::new(rows.iter().map(f).collect::<StringArray>()) };
    let float = |f: fn(&ReportRow) -> Option<f64>| -> ArrayRef { Arc::new(rows.iter().map(f).collect::<Float64Array>()) };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(rows.iter().map(|r| r.procedure_occurrence_id).collect::<Int64Array>()),
        text(|r| r.pseudo_study_uid.as_deref()),
        Arc::new(rows.iter().map(|r| r.age).collect::<Int32Array>()),
        text(|r| r.sex.as_deref()),
        text(|r| r.ethnicity.as_deref()),
        float(|r| r.height),
        float(|r| r.weight),
        float(|r| r.gcs),
        text(|r| r.report_text.as_deref()),
    ];
    // The arrays match the schema by construction; arrow's error would name no value.
    let batch = RecordBatch::try_new(schema(), columns).map_err(|e| e.to_string())?;
    let partial = parent.join(format!(".{RADIOLOGY_FILE}.partial"));
    let file = std::fs::File::create(&partial).map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None).map_err(|e| e.to_string())?;
    writer.write(&batch).map_err(|e| e.to_string())?;
    writer.close().map_err(|e| e.to_string())?;
    std::fs::rename(&partial, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
