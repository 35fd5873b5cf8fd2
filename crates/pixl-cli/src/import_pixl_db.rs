//! `pixl import-pixl-db --url postgres://...`: takes over what a PIXL deployment already
//! exported, from PIXL's own database (its `pixl_pipeline` schema: `extract` and
//! `image`, as PIXL's alembic migrations leave them). Every image PIXL exported becomes
//! a study in state `exported` with PIXL's pseudonymous study UID and patient id, so that
//! `pixl populate` never queues it again (it is matched, as PIXL matches, on project, MRN
//! and accession number, and on the study UID where both sides have one) and the linker
//! still finds it. Images PIXL did not export are left: the next `pixl populate` queues
//! them as new. Running it again changes nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use pixl_core::config::Settings;
use pixl_core::db::DbFailure;
use pixl_core::ids::{Mrn, ProjectSlug, PseudoStudyUid};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row};

/// The schemas PIXL has used for its pipeline tables, newest first.
pub const PIXL_SCHEMAS: &[&str] = &["pixl_pipeline", "pipeline", "pixl"];

/// Why the import could not run. Never holds a value of PIXL's rows or the URL's password.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("--url is not a valid postgres:// URL")]
    BadUrl,
    #[error("cannot connect to PIXL's database at {host}:{port}: {failure}")]
    Connect { host: String, port: u16, failure: DbFailure },
    #[error("PIXL's database has no extract and image tables in schema {}", .0.join(", "))]
    NoSchema(Vec<String>),
    #[error("PIXL's image table has no column {0}")]
    MissingColumn(&'static str),
    #[error("{step}: {failure}")]
    Sql { step: &'static str, failure: DbFailure },
    #[error(transparent)]
    Db(#[from] pixl_core::db::DbError),
}

fn sql(step: &'static str) -> impl Fn(sqlx::Error) -> ImportError {
    move |error| ImportError::Sql { step, failure: DbFailure::classify(&error) }
}

/// What was imported, per project slug.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProjectImport {
    /// Exported by PIXL, now recorded here.
    pub imported: u64,
    /// Exported by PIXL and already recorded here (an earlier import, or pixl's own).
    pub already_known: u64,
    /// Not exported by PIXL: left for `pixl populate`.
    pub not_exported: u64,
    /// Rows that cannot be used (an empty MRN, no accession number nor study UID).
    pub unusable: u64,
    /// Imported without a pseudonymous study UID (PIXL recorded none, or not a UID): never
    /// exported again, but not in an image linker.
    pub without_pseudo_uid: u64,
    /// Exported by PIXL, but pixl has the study queued, in progress or failed (a populate
    /// ran before the import): not changed here; `pixl stop --purge` and an import first
    /// would have kept PIXL's pseudonyms.
    pub in_progress_here: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    pub schema: String,
    pub projects: BTreeMap<String, ProjectImport>,
    /// Extract slugs that are not valid project slugs (their rows are not imported).
    pub bad_slugs: Vec<String>,
}

impl fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "PIXL database, schema {}:", self.schema)?;
        for (slug, p) in &self.projects {
            writeln!(
                f,
                "  {slug}: {} exported studies imported ({} without a pseudonymous study UID), {} already known, {} not exported (left for pixl populate), {} unusable rows",
                p.imported, p.without_pseudo_uid, p.already_known, p.not_exported, p.unusable
            )?;
            if p.in_progress_here > 0 {
                writeln!(
                    f,
                    "  {slug}: WARNING {} studies PIXL exported are queued, in progress or failed here (pixl populate ran before this import): they would be exported again with new pseudonyms; stop them (pixl stop --purge) unless that is wanted",
                    p.in_progress_here
                )?;
            }
        }
        if !self.bad_slugs.is_empty() {
            writeln!(f, "  not imported: extract slugs that are not valid project slugs: {}", self.bad_slugs.join(", "))?;
        }
        Ok(())
    }
}

struct Image {
    mrn: String,
    accession_number: Option<String>,
    study_uid: Option<String>,
    study_date: Option<NaiveDate>,
    pseudo_study_uid: Option<String>,
    pseudo_patient_id: Option<String>,
    exported_at: DateTime<Utc>,
}

async fn connect_pixl(url: &str) -> Result<PgPool, ImportError> {
    let options = PgConnectOptions::from_str(url).map_err(|_| ImportError::BadUrl)?;
    let (host, port) = (options.get_host().to_owned(), options.get_port());
    PgPoolOptions::new().max_connections(1).connect_with(options).await.map_err(|error| ImportError::Connect {
        host,
        port,
        failure: DbFailure::classify(&error),
    })
}

/// Finds the schema holding PIXL's tables (or checks `schema`).
async fn find_schema(pixl: &PgPool, schema: Option<&str>) -> Result<String, ImportError> {
    let candidates: Vec<String> = match schema {
        Some(schema) => vec![schema.to_owned()],
        None => PIXL_SCHEMAS.iter().map(|s| (*s).to_owned()).collect(),
    };
    for candidate in &candidates {
        let tables: i64 = sqlx::query_scalar(
            "SELECT count(DISTINCT table_name) FROM information_schema.tables WHERE table_schema = $1 AND table_name IN ('extract', 'image')",
        )
        .bind(candidate)
        .fetch_one(pixl)
        .await
        .map_err(sql("looking for PIXL's tables"))?;
        if tables == 2 {
            return Ok(candidate.clone());
        }
    }
    Err(ImportError::NoSchema(candidates))
}

/// Reads PIXL's images, per extract slug. Older PIXL versions lack some columns; those
/// read as empty.
async fn read_images(pixl: &PgPool, schema: &str) -> Result<BTreeMap<String, Vec<Option<Image>>>, ImportError> {
    let columns: Vec<String> = sqlx::query_scalar("SELECT column_name::text FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'image'")
        .bind(schema)
        .fetch_all(pixl)
        .await
        .map_err(sql("reading PIXL's image columns"))?;
    let has = |name: &str| columns.iter().any(|c| c == name);
    for required in ["mrn", "accession_number", "exported_at", "extract_id"] {
        if !has(required) {
            return Err(ImportError::MissingColumn(match required {
                "mrn" => "mrn",
                "accession_number" => "accession_number",
                "exported_at" => "exported_at",
                _ => "extract_id",
            }));
        }
    }
    let optional = |name: &str, cast: &str| if has(name) { format!("i.{name}::{cast}") } else { format!("NULL::{cast}") };
    // PIXL's first schema kept the pseudonymous study UID as `hashed_identifier`.
    let pseudo = if has("pseudo_study_uid") { optional("pseudo_study_uid", "text") } else { optional("hashed_identifier", "text") };
    // The schema name was found in information_schema (or given); quoted as an identifier.
    let quoted = format!("\"{}\"", schema.replace('"', "\"\""));
    let query = format!(
        "SELECT e.slug::text AS slug, i.mrn::text AS mrn, i.accession_number::text AS accession_number, {} AS study_uid,
                {} AS study_date, {pseudo} AS pseudo_study_uid, {} AS pseudo_patient_id, i.exported_at::timestamptz AS exported_at
         FROM {quoted}.image i JOIN {quoted}.extract e ON e.extract_id = i.extract_id
         ORDER BY e.slug, i.image_id",
        optional("study_uid", "text"),
        optional("study_date", "date"),
        optional("pseudo_patient_id", "text"),
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(query)).fetch_all(pixl).await.map_err(sql("reading PIXL's images"))?;
    let mut by_slug: BTreeMap<String, Vec<Option<Image>>> = BTreeMap::new();
    for row in rows {
        let text = |name: &str| row.get::<Option<String>, _>(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let slug: String = row.get("slug");
        let image = row.get::<Option<DateTime<Utc>>, _>("exported_at").map(|exported_at| Image {
            mrn: text("mrn").unwrap_or_default(),
            accession_number: text("accession_number"),
            study_uid: text("study_uid"),
            study_date: row.get("study_date"),
            pseudo_study_uid: text("pseudo_study_uid"),
            pseudo_patient_id: text("pseudo_patient_id"),
            exported_at,
        });
        by_slug.entry(slug.trim().to_owned()).or_default().push(image);
    }
    Ok(by_slug)
}

/// Imports what PIXL exported from the database at `url` (schema `schema`, else the
/// first of [`PIXL_SCHEMAS`] that holds PIXL's tables) into pixl's database.
pub async fn import_pixl_db(settings: &Settings, url: &str, schema: Option<&str>) -> Result<ImportSummary, ImportError> {
    let pixl_db = connect_pixl(url).await?;
    let schema = find_schema(&pixl_db, schema).await?;
    let images = read_images(&pixl_db, &schema).await?;
    pixl_db.close().await;

    let pool = pixl_core::db::connect(&settings.database, 2).await?;
    let mut summary = ImportSummary { schema, ..Default::default() };
    for (slug, rows) in images {
        if ProjectSlug::parse(&slug).is_err() {
            summary.bad_slugs.push(slug);
            continue;
        }
        let mut outcome = ProjectImport::default();
        let mut usable = Vec::new();
        for image in rows {
            match image {
                None => outcome.not_exported += 1,
                Some(image) if Mrn::parse(&image.mrn).is_err() || (image.accession_number.is_none() && image.study_uid.is_none()) => outcome.unusable += 1,
                Some(mut image) => {
                    if image.pseudo_study_uid.as_deref().is_some_and(|uid| PseudoStudyUid::parse(uid).is_err()) {
                        image.pseudo_study_uid = None;
                    }
                    outcome.without_pseudo_uid += u64::from(image.pseudo_study_uid.is_none());
                    usable.push(image);
                }
            }
        }
        if !usable.is_empty() {
            let extract_datetime = usable.iter().map(|i| i.exported_at).min().expect("not empty");
            let mut tx = pool.begin().await.map_err(sql("starting the import"))?;
            let extract_id: i64 = sqlx::query_scalar(
                "INSERT INTO extracts (project_slug, extract_datetime) VALUES ($1, $2)
                 ON CONFLICT ON CONSTRAINT extracts_identity DO UPDATE SET project_slug = EXCLUDED.project_slug
                 RETURNING id",
            )
            .bind(&slug)
            .bind(extract_datetime)
            .fetch_one(&mut *tx)
            .await
            .map_err(sql("recording the extract"))?;
            let column = |f: fn(&Image) -> Option<String>| usable.iter().map(f).collect::<Vec<_>>();
            let inserted: i64 = sqlx::query_scalar(
                "WITH inserted AS (
                     INSERT INTO studies (extract_id, project_slug, mrn, accession_number, study_uid, study_date,
                                          pseudo_study_uid, pseudo_patient_id, state, exported_at, exported_to, anon_purged_at)
                     SELECT $1, $2, t.mrn, t.accession_number, t.study_uid, t.study_date, t.pseudo_study_uid,
                            t.pseudo_patient_id, 'exported', t.exported_at, 'PIXL (imported)', t.exported_at
                     FROM UNNEST($3::text[], $4::text[], $5::text[], $6::date[], $7::text[], $8::text[], $9::timestamptz[])
                          AS t (mrn, accession_number, study_uid, study_date, pseudo_study_uid, pseudo_patient_id, exported_at)
                     WHERE NOT EXISTS (
                         SELECT 1 FROM studies s
                         WHERE s.project_slug = $2 AND s.mrn = t.mrn AND s.accession_number IS NOT DISTINCT FROM t.accession_number
                           AND (s.study_uid IS NULL OR t.study_uid IS NULL OR s.study_uid = t.study_uid))
                     ON CONFLICT DO NOTHING
                     RETURNING 1)
                 SELECT count(*) FROM inserted",
            )
            .bind(extract_id)
            .bind(&slug)
            .bind(column(|i| Some(i.mrn.clone())))
            .bind(column(|i| i.accession_number.clone()))
            .bind(column(|i| i.study_uid.clone()))
            .bind(usable.iter().map(|i| i.study_date).collect::<Vec<_>>())
            .bind(column(|i| i.pseudo_study_uid.clone()))
            .bind(column(|i| i.pseudo_patient_id.clone()))
            .bind(usable.iter().map(|i| i.exported_at).collect::<Vec<_>>())
            .fetch_one(&mut *tx)
            .await
            .map_err(sql("recording PIXL's exported studies"))?;
            // Of those not inserted: matched by a study pixl has not exported.
            let in_progress: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM UNNEST($2::text[], $3::text[], $4::text[]) AS t (mrn, accession_number, study_uid)
                 WHERE EXISTS (
                     SELECT 1 FROM studies s
                     WHERE s.project_slug = $1 AND s.mrn = t.mrn AND s.accession_number IS NOT DISTINCT FROM t.accession_number
                       AND (s.study_uid IS NULL OR t.study_uid IS NULL OR s.study_uid = t.study_uid) AND s.state <> 'exported')",
            )
            .bind(&slug)
            .bind(column(|i| Some(i.mrn.clone())))
            .bind(column(|i| i.accession_number.clone()))
            .bind(column(|i| i.study_uid.clone()))
            .fetch_one(&mut *tx)
            .await
            .map_err(sql("looking for studies in progress"))?;
            tx.commit().await.map_err(sql("committing the import"))?;
            outcome.imported = inserted as u64;
            outcome.in_progress_here = in_progress as u64;
            outcome.already_known = (usable.len() as u64).saturating_sub(outcome.imported + outcome.in_progress_here);
        }
        summary.projects.insert(slug, outcome);
    }
    pool.close().await;
    Ok(summary)
}
