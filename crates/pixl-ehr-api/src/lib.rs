//! ehr-api (issue 14), so far its EHR source: per study, the patient's structured fields and
//! the radiology report from the hospital's EMAP "star" database, read-only, with the
//! queries in `queries/*.sql`; and what the service derives from them (age at study, the
//! patient's probes for the report's de-identification).
//!
//! `process_study` handles one study end to end into the `ehr_anon` and `report_flags`
//! tables (migration 0007). Not yet: the `ehr` queue and its consumer, review commands,
//! `POST /deidentify`, export and the release report.
//!
//! Nothing here logs or formats a value read from the EHR: errors say which query failed
//! and how (pixl-core's `DbFailure`), never with what.

pub mod report_parquet;

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use pixl_core::{config::DatabaseSettings, db::DbFailure};
use pixl_text::Patient;
use sqlx::{PgPool, Row, postgres::PgPoolOptions};

/// The EHR database: where, and in which schema the star tables are.
#[derive(Debug, Clone)]
pub struct EmapSettings {
    pub database: DatabaseSettings,
    /// The schema of the star tables (EMAP's default: `star`).
    pub schema: String,
    /// `visit_observation_type.name` of the observations kept.
    pub observation_types: ObservationTypes,
}

/// The names of the observation types, as the site's EMAP calls them.
#[derive(Debug, Clone)]
pub struct ObservationTypes {
    pub height: String,
    pub weight: String,
    pub gcs: String,
}

impl EmapSettings {
    /// From `EMAP_DB_*` and `EMAP_OBSERVATION_*` (defaults in `.env.sample`).
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &pixl_core::config::Env<F>) -> Result<Self, pixl_core::config::ConfigError> {
        let defaults = ObservationTypes::default();
        Ok(Self {
            database: DatabaseSettings {
                host: env.text("EMAP_DB_HOST", "127.0.0.1"),
                port: env.number("EMAP_DB_PORT", 5432, 1, u16::MAX)?,
                user: env.text("EMAP_DB_USER", "pixl_ehr_reader"),
                password: env.text("EMAP_DB_PASSWORD", "").into(),
                name: env.text("EMAP_DB_NAME", "emap"),
            },
            schema: env.text("EMAP_DB_SCHEMA_NAME", "star"),
            observation_types: ObservationTypes {
                height: env.text("EMAP_OBSERVATION_HEIGHT", &defaults.height),
                weight: env.text("EMAP_OBSERVATION_WEIGHT", &defaults.weight),
                gcs: env.text("EMAP_OBSERVATION_GCS", &defaults.gcs),
            },
        })
    }
}

impl Default for ObservationTypes {
    fn default() -> Self {
        Self { height: "HEIGHT".to_owned(), weight: "WEIGHT/SCALE".to_owned(), gcs: "R GLASGOW COMA SCALE SCORE".to_owned() }
    }
}

/// Why the EHR source could not answer. Holds no value read from it: database errors are
/// classified by pixl-core's `DbFailure` (kind, SQLSTATE, constraint name), as everywhere.
#[derive(Debug, thiserror::Error)]
pub enum EhrError {
    #[error("the EHR schema name {0:?} is not a plain identifier (letters, digits, underscores)")]
    Schema(String),
    #[error("cannot connect to the EHR database at {host}:{port} ({failure})")]
    Connect { host: String, port: u16, failure: DbFailure },
    #[error("the EHR query {query} failed ({failure})")]
    Query { query: &'static str, failure: DbFailure },
}

impl EhrError {
    fn query(query: &'static str) -> impl Fn(sqlx::Error) -> Self {
        move |e| Self::Query { query, failure: DbFailure::classify(&e) }
    }

    /// Whether trying again later may succeed (the EHR database unreachable, say).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Schema(_) => false,
            Self::Connect { .. } => true,
            Self::Query { failure, .. } => failure.is_transient(),
        }
    }
}

/// The patient's demographics, as the EHR holds them. Its `Debug` shows no value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Demographics {
    pub mrn: String,
    pub nhs_number: Option<String>,
    pub first_name: Option<String>,
    pub middle_name: Option<String>,
    pub last_name: Option<String>,
    pub date_of_birth: Option<NaiveDate>,
    pub sex: Option<String>,
    pub ethnicity: Option<String>,
    pub postcode: Option<String>,
}

impl fmt::Debug for Demographics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Demographics").finish_non_exhaustive()
    }
}

impl Demographics {
    /// What the hospital knows of the patient, as probes for the report's
    /// de-identification and its second check.
    pub fn probes(&self, accession_number: &str) -> Patient {
        let some = |v: &Option<String>| v.iter().filter(|s| !s.trim().is_empty()).cloned().collect::<Vec<_>>();
        let mut first_names = some(&self.first_name);
        first_names.extend(some(&self.middle_name));
        let mut identifiers = vec![self.mrn.clone(), accession_number.to_owned()];
        identifiers.extend(some(&self.nhs_number));
        identifiers.retain(|v| !v.trim().is_empty());
        Patient {
            first_names,
            surnames: some(&self.last_name),
            identifiers,
            dates_of_birth: self.date_of_birth.iter().map(|d| d.format("%Y-%m-%d").to_string()).collect(),
            phones: Vec::new(),
            postcodes: some(&self.postcode),
        }
    }
}

/// Everything the EHR holds for one study. Its `Debug` shows no value.
#[derive(Clone, Default, PartialEq)]
pub struct EhrRecord {
    /// `None` when the EHR has no patient of that MRN.
    pub demographics: Option<Demographics>,
    /// The report's sections joined (ADDENDA, NARRATIVE, IMPRESSION), `None` without any.
    pub report: Option<String>,
    pub height: Option<f64>,
    pub weight: Option<f64>,
    pub gcs: Option<f64>,
}

impl fmt::Debug for EhrRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EhrRecord")
            .field("patient", &self.demographics.is_some())
            .field("report", &self.report.is_some())
            .field("height", &self.height.is_some())
            .field("weight", &self.weight.is_some())
            .field("gcs", &self.gcs.is_some())
            .finish()
    }
}

/// Age in whole years on `on`; 90 and over is 90 (HIPAA's safe harbour).
pub fn age_at(date_of_birth: NaiveDate, on: NaiveDate) -> Option<u32> {
    let mut years = on.year() - date_of_birth.year();
    if (on.month(), on.day()) < (date_of_birth.month(), date_of_birth.day()) {
        years -= 1;
    }
    u32::try_from(years).ok().map(|y| y.min(90))
}

const DEMOGRAPHICS: &str = include_str!("../queries/demographics.sql");
const REPORT: &str = include_str!("../queries/report.sql");
const OBSERVATION: &str = include_str!("../queries/observation.sql");

/// The EHR database, read-only.
#[derive(Debug, Clone)]
pub struct EmapSource {
    pool: PgPool,
    types: ObservationTypes,
}

impl EmapSource {
    /// Connects (lazily checked: the first query reports an unreachable database). Every
    /// connection runs read-only, in the star schema.
    pub async fn connect(settings: &EmapSettings) -> Result<Self, EhrError> {
        let schema = &settings.schema;
        if schema.is_empty() || !schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || schema.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(EhrError::Schema(schema.clone()));
        }
        let options = settings
            .database
            .connect_options()
            .options([("search_path", schema.as_str()), ("default_transaction_read_only", "on")])
            .application_name("pixl-ehr-api");
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| EhrError::Connect { host: settings.database.host.clone(), port: settings.database.port, failure: DbFailure::classify(&e) })?;
        Ok(Self { pool, types: settings.observation_types.clone() })
    }

    pub async fn demographics(&self, mrn: &str) -> Result<Option<Demographics>, EhrError> {
        let row = sqlx::query(DEMOGRAPHICS).bind(mrn).fetch_optional(&self.pool).await.map_err(EhrError::query("demographics"))?;
        let Some(row) = row else { return Ok(None) };
        let get = |name: &str| row.try_get::<Option<String>, _>(name).map_err(EhrError::query("demographics"));
        Ok(Some(Demographics {
            mrn: get("mrn")?.unwrap_or_default(),
            nhs_number: get("nhs_number")?,
            first_name: get("firstname")?,
            middle_name: get("middlename")?,
            last_name: get("lastname")?,
            date_of_birth: row.try_get("date_of_birth").map_err(EhrError::query("demographics"))?,
            sex: get("sex")?,
            ethnicity: get("ethnicity")?,
            postcode: get("home_postcode")?,
        }))
    }

    /// The report of the study with this accession number, its sections joined by a blank
    /// line in the order ADDENDA, NARRATIVE, IMPRESSION.
    pub async fn report(&self, accession_number: &str, mrn: &str) -> Result<Option<String>, EhrError> {
        let rows = sqlx::query(REPORT).bind(accession_number).bind(mrn).fetch_all(&self.pool).await.map_err(EhrError::query("report"))?;
        let mut sections = Vec::with_capacity(rows.len());
        for row in rows {
            let text: String = row.try_get("value_as_text").map_err(EhrError::query("report"))?;
            if !text.trim().is_empty() {
                sections.push(text);
            }
        }
        Ok((!sections.is_empty()).then(|| sections.join("\n\n")))
    }

    /// The value of an observation type nearest `at`, within 24 hours either side.
    pub async fn observation(&self, mrn: &str, name: &str, at: DateTime<Utc>) -> Result<Option<f64>, EhrError> {
        let value: Option<Option<f64>> =
            sqlx::query_scalar(OBSERVATION).bind(mrn).bind(name).bind(at).fetch_optional(&self.pool).await.map_err(EhrError::query("observation"))?;
        Ok(value.flatten())
    }

    /// Everything for one study.
    pub async fn record(&self, mrn: &str, accession_number: &str, study_time: DateTime<Utc>) -> Result<EhrRecord, EhrError> {
        let demographics = self.demographics(mrn).await?;
        if demographics.is_none() {
            return Ok(EhrRecord::default());
        }
        Ok(EhrRecord {
            demographics,
            report: self.report(accession_number, mrn).await?,
            height: self.observation(mrn, &self.types.height, study_time).await?,
            weight: self.observation(mrn, &self.types.weight, study_time).await?,
            gcs: self.observation(mrn, &self.types.gcs, study_time).await?,
        })
    }
}

/// What became of one study.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// De-identified, and the second check found nothing.
    Done,
    /// De-identified, and the second check doubts this many places: withheld for review.
    Flagged(usize),
    /// The EHR has no patient of the study's MRN.
    NoRecord,
}

/// Why a study could not be handled. Holds no value of the study or the EHR.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("study {0} is not in the database")]
    NoStudy(i64),
    #[error(transparent)]
    Ehr(#[from] EhrError),
    #[error("the pixl database failed while {step} ({failure})")]
    Database { step: &'static str, failure: DbFailure },
}

fn db(step: &'static str) -> impl Fn(sqlx::Error) -> ProcessError {
    move |e| ProcessError::Database { step, failure: DbFailure::classify(&e) }
}

/// Handles one study: reads its EHR record, de-identifies the report with the patient's
/// probes, runs the second check on the result, and stores the de-identified row, the
/// flags and the state in one transaction. Running it again gives the same rows
/// (idempotent: a redelivered message changes nothing).
pub async fn process_study(pool: &PgPool, source: &EmapSource, study_id: i64) -> Result<Outcome, ProcessError> {
    let row = sqlx::query("SELECT mrn, accession_number, study_date FROM studies WHERE id = $1")
        .bind(study_id)
        .fetch_optional(pool)
        .await
        .map_err(db("reading the study"))?
        .ok_or(ProcessError::NoStudy(study_id))?;
    let mrn: String = row.try_get("mrn").map_err(db("reading the study"))?;
    let accession: Option<String> = row.try_get("accession_number").map_err(db("reading the study"))?;
    let study_date: Option<NaiveDate> = row.try_get("study_date").map_err(db("reading the study"))?;
    // Only the study's date is known: observations are taken nearest its midday.
    let study_time = study_date.and_then(|d| d.and_hms_opt(12, 0, 0)).map(|t| t.and_utc()).unwrap_or_else(Utc::now);
    let accession = accession.unwrap_or_default();
    let record = source.record(&mrn, &accession, study_time).await?;

    let mut tx = pool.begin().await.map_err(db("starting a transaction"))?;
    let Some(demographics) = record.demographics.as_ref() else {
        sqlx::query("UPDATE studies SET ehr_state = 'no_record', ehr_failure_reason = NULL WHERE id = $1")
            .bind(study_id)
            .execute(&mut *tx)
            .await
            .map_err(db("recording the state"))?;
        tx.commit().await.map_err(db("committing"))?;
        return Ok(Outcome::NoRecord);
    };
    let probes_of = demographics.probes(&accession);
    let probes = pixl_text::Probes::new(&probes_of);
    let (report, spans, findings) = match &record.report {
        Some(text) => {
            let detection = pixl_text::detect_with(text, Some(&probes));
            let masked = pixl_text::mask_tags(text, &detection.spans);
            let mut counts = std::collections::BTreeMap::<&str, u64>::new();
            for span in &detection.spans {
                *counts.entry(span.category.as_str()).or_default() += 1;
            }
            let findings = pixl_text::check::check(&masked, Some(&probes_of));
            let findings: Vec<(String, i32, i32)> = findings
                .into_iter()
                .map(|f| {
                    let start = masked[..f.start].chars().count();
                    let end = start + masked[f.start..f.end].chars().count();
                    (f.reason.as_str().to_owned(), i32::try_from(start).unwrap_or(i32::MAX), i32::try_from(end).unwrap_or(i32::MAX))
                })
                .collect();
            (Some(masked), counts, findings)
        }
        None => (None, Default::default(), Vec::new()),
    };
    let spans_json = format!("{{{}}}", spans.iter().map(|(c, n)| format!("\"{c}\":{n}")).collect::<Vec<_>>().join(","));
    let age = match (demographics.date_of_birth, study_date) {
        (Some(dob), Some(on)) => age_at(dob, on).and_then(|a| i32::try_from(a).ok()),
        _ => None,
    };
    sqlx::query(
        "INSERT INTO ehr_anon (study_id, age, sex, ethnicity, height, weight, gcs, report_text, report_spans, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, now())
         ON CONFLICT (study_id) DO UPDATE SET age = $2, sex = $3, ethnicity = $4, height = $5, weight = $6, gcs = $7,
             report_text = $8, report_spans = $9::jsonb, updated_at = now()",
    )
    .bind(study_id)
    .bind(age)
    .bind(&demographics.sex)
    .bind(&demographics.ethnicity)
    .bind(record.height)
    .bind(record.weight)
    .bind(record.gcs)
    .bind(&report)
    .bind(&spans_json)
    .execute(&mut *tx)
    .await
    .map_err(db("storing the de-identified row"))?;
    sqlx::query("DELETE FROM report_flags WHERE study_id = $1").bind(study_id).execute(&mut *tx).await.map_err(db("replacing the flags"))?;
    for (reason, start, end) in &findings {
        sqlx::query("INSERT INTO report_flags (study_id, reason, span_start, span_end) VALUES ($1, $2, $3, $4)")
            .bind(study_id)
            .bind(reason)
            .bind(start)
            .bind(end)
            .execute(&mut *tx)
            .await
            .map_err(db("storing a flag"))?;
    }
    let state = if findings.is_empty() { "done" } else { "flagged" };
    sqlx::query("UPDATE studies SET ehr_state = $2::ehr_state, ehr_failure_reason = NULL WHERE id = $1")
        .bind(study_id)
        .bind(state)
        .execute(&mut *tx)
        .await
        .map_err(db("recording the state"))?;
    tx.commit().await.map_err(db("committing"))?;
    Ok(if findings.is_empty() { Outcome::Done } else { Outcome::Flagged(findings.len()) })
}
