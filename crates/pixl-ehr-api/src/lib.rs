//! ehr-api (issue 14), so far its EHR source: per study, the patient's structured fields and
//! the radiology report from the hospital's EMAP "star" database, read-only, with the
//! queries in `queries/*.sql`; and what the service derives from them (age at study, the
//! patient's probes for the report's de-identification).
//!
//! Per study: [`Source::record`] reads the EHR record, [`deidentify`] de-identifies the
//! report with the patient's probes and runs the second check on the result, [`store`]
//! writes the de-identified row, the flags and `studies.ehr_state` (migrations 0007,
//! 0008). [`service`] is the `ehr` consumer and the HTTP API (`POST /deidentify`);
//! The review of flagged reports (`pixl reports`) is `pixl_core::review`: the command links
//! no service crate.
//!
//! Nothing here logs or formats a value read from the EHR: errors say which query failed
//! and how (pixl-core's `DbFailure`), never with what.

pub mod api;
pub mod service;

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
const OBSERVATIONS: &str = include_str!("../queries/observations.sql");

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
        let options = Self::options(settings)?;
        let pool = Self::pool_options().connect_with(options).await.map_err(|e| EhrError::Connect {
            host: settings.database.host.clone(),
            port: settings.database.port,
            failure: DbFailure::classify(&e),
        })?;
        Ok(Self { pool, types: settings.observation_types.clone() })
    }

    /// Like [`EmapSource::connect`], without reaching the database until the first query
    /// (the service starts while EMAP is away; its studies wait for it).
    pub fn connect_lazy(settings: &EmapSettings) -> Result<Self, EhrError> {
        let pool = Self::pool_options().connect_lazy_with(Self::options(settings)?);
        Ok(Self { pool, types: settings.observation_types.clone() })
    }

    fn pool_options() -> PgPoolOptions {
        PgPoolOptions::new().max_connections(24).acquire_timeout(std::time::Duration::from_secs(10))
    }

    fn options(settings: &EmapSettings) -> Result<sqlx::postgres::PgConnectOptions, EhrError> {
        let schema = &settings.schema;
        if schema.is_empty() || !schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || schema.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(EhrError::Schema(schema.clone()));
        }
        Ok(settings
            .database
            .connect_options()
            .options([("search_path", schema.as_str()), ("default_transaction_read_only", "on")])
            .application_name("pixl-ehr-api"))
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

    /// Height, weight and GCS nearest `at`, within 24 hours either side, in one query.
    pub async fn observations(&self, mrn: &str, at: DateTime<Utc>) -> Result<(Option<f64>, Option<f64>, Option<f64>), EhrError> {
        let names = [self.types.height.as_str(), self.types.weight.as_str(), self.types.gcs.as_str()];
        let rows: Vec<(String, Option<f64>)> =
            sqlx::query_as(OBSERVATIONS).bind(mrn).bind(&names[..]).bind(at).fetch_all(&self.pool).await.map_err(EhrError::query("observations"))?;
        let value = |name: &str| rows.iter().find(|(n, _)| n == name).and_then(|(_, v)| *v);
        Ok((value(names[0]), value(names[1]), value(names[2])))
    }

    /// Everything for one study: its three queries at once, on three connections.
    pub async fn record(&self, mrn: &str, accession_number: &str, study_time: DateTime<Utc>) -> Result<EhrRecord, EhrError> {
        let (demographics, report, observations) = tokio::join!(self.demographics(mrn), self.report(accession_number, mrn), self.observations(mrn, study_time));
        let demographics = demographics?;
        if demographics.is_none() {
            return Ok(EhrRecord::default());
        }
        let (height, weight, gcs) = observations?;
        Ok(EhrRecord { demographics, report: report?, height, weight, gcs })
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

/// A study as ehr-api reads it from the pixl database (identifiable: never logged).
#[derive(Clone)]
pub struct StudyKeys {
    pub mrn: String,
    pub accession_number: String,
    pub study_date: Option<NaiveDate>,
}

impl fmt::Debug for StudyKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StudyKeys").field("study_date", &self.study_date.is_some()).finish_non_exhaustive()
    }
}

impl StudyKeys {
    /// From a row with `mrn`, `accession_number` and `study_date`.
    pub fn from_row(row: &sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            mrn: row.try_get("mrn")?,
            accession_number: row.try_get::<Option<String>, _>("accession_number")?.unwrap_or_default(),
            study_date: row.try_get("study_date")?,
        })
    }

    /// Only the study's date is known: observations are taken nearest its midday.
    pub fn study_time(&self) -> DateTime<Utc> {
        self.study_date.and_then(|d| d.and_hms_opt(12, 0, 0)).map(|t| t.and_utc()).unwrap_or_else(Utc::now)
    }
}

/// Where a study's EHR record comes from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// The hospital's EMAP database.
    Emap(&'a EmapSource),
    /// The report `pixl populate` kept from the extract's report parquet (`None`: the file
    /// had none for the study). The person links give the MRN only.
    KeptReport(Option<&'a str>),
}

impl Source<'_> {
    /// The study's EHR record.
    pub async fn record(&self, study: &StudyKeys) -> Result<EhrRecord, EhrError> {
        match self {
            Self::Emap(emap) => emap.record(&study.mrn, &study.accession_number, study.study_time()).await,
            Self::KeptReport(None) => Ok(EhrRecord::default()),
            Self::KeptReport(Some(text)) => Ok(EhrRecord {
                demographics: Some(Demographics { mrn: study.mrn.clone(), ..Demographics::default() }),
                report: Some((*text).to_owned()),
                ..EhrRecord::default()
            }),
        }
    }
}

/// A de-identified study, as stored in `ehr_anon` and `report_flags`. Holds no identifier
/// of the study: its report is de-identified, its flags are offsets.
#[derive(Debug, Clone, PartialEq)]
pub struct AnonRecord {
    pub age: Option<i32>,
    pub sex: Option<String>,
    pub ethnicity: Option<String>,
    pub height: Option<f64>,
    pub weight: Option<f64>,
    pub gcs: Option<f64>,
    pub report: Option<String>,
    /// Spans removed per category.
    pub spans: std::collections::BTreeMap<&'static str, u64>,
    /// The second check's findings: (reason, start, end) in characters of `report`.
    pub flags: Vec<(&'static str, i32, i32)>,
}

/// De-identifies a study's record: its report with the patient's probes (`[CATEGORY]`
/// tags), then the second check on the result. `None` when the EHR has no such patient.
pub fn deidentify(record: &EhrRecord, study: &StudyKeys) -> Option<AnonRecord> {
    let demographics = record.demographics.as_ref()?;
    let patient = demographics.probes(&study.accession_number);
    let (report, spans, flags) = match &record.report {
        Some(text) => {
            let (masked, spans) = deidentify_text(text, &patient);
            let flags = second_check(&masked, &patient);
            (Some(masked), spans, flags)
        }
        None => (None, Default::default(), Vec::new()),
    };
    let age = match (demographics.date_of_birth, study.study_date) {
        (Some(dob), Some(on)) => age_at(dob, on).and_then(|a| i32::try_from(a).ok()),
        _ => None,
    };
    Some(AnonRecord {
        age,
        sex: demographics.sex.clone(),
        ethnicity: demographics.ethnicity.clone(),
        height: record.height,
        weight: record.weight,
        gcs: record.gcs,
        report,
        spans,
        flags,
    })
}

/// The engine on one text with a patient's probes: the text with `[CATEGORY]` tags, and
/// the spans removed per category.
pub fn deidentify_text(text: &str, patient: &Patient) -> (String, std::collections::BTreeMap<&'static str, u64>) {
    let probes = pixl_text::Probes::new(patient);
    let detection = pixl_text::detect_with(text, Some(&probes));
    let masked = pixl_text::mask_tags(text, &detection.spans);
    let mut counts = std::collections::BTreeMap::<&'static str, u64>::new();
    for span in &detection.spans {
        *counts.entry(span.category.as_str()).or_default() += 1;
    }
    (masked, counts)
}

/// The second check on a de-identified text: (reason, start, end) in characters.
pub fn second_check(masked: &str, patient: &Patient) -> Vec<(&'static str, i32, i32)> {
    pixl_text::check::check(masked, Some(patient))
        .into_iter()
        .map(|f| {
            let start = masked[..f.start].chars().count();
            let end = start + masked[f.start..f.end].chars().count();
            (f.reason.as_str(), i32::try_from(start).unwrap_or(i32::MAX), i32::try_from(end).unwrap_or(i32::MAX))
        })
        .collect()
}

/// Stores what became of a study, on `conn` (the caller's transaction): the de-identified
/// row and its flags, replacing any earlier ones, and `studies.ehr_state`; the report kept
/// from the extract (if any) is deleted, as it is no longer needed.
pub async fn store(conn: &mut sqlx::PgConnection, study_id: i64, anon: Option<&AnonRecord>) -> Result<Outcome, sqlx::Error> {
    let Some(anon) = anon else {
        sqlx::query(
            "WITH kept AS (DELETE FROM ehr_source_reports WHERE study_id = $1)
             UPDATE studies SET ehr_state = 'no_record', ehr_failure_reason = NULL WHERE id = $1",
        )
        .bind(study_id)
        .execute(&mut *conn)
        .await?;
        return Ok(Outcome::NoRecord);
    };
    let spans_json = format!("{{{}}}", anon.spans.iter().map(|(c, n)| format!("\"{c}\":{n}")).collect::<Vec<_>>().join(","));
    let reasons: Vec<&str> = anon.flags.iter().map(|f| f.0).collect();
    let starts: Vec<i32> = anon.flags.iter().map(|f| f.1).collect();
    let ends: Vec<i32> = anon.flags.iter().map(|f| f.2).collect();
    let state = if anon.flags.is_empty() { "done" } else { "flagged" };
    // One statement, one round trip. Its parts see one snapshot: the old open flags are
    // deleted, the new ones inserted, whatever their order.
    sqlx::query(
        "WITH kept AS (DELETE FROM ehr_source_reports WHERE study_id = $1),
         anon AS (
             INSERT INTO ehr_anon (study_id, age, sex, ethnicity, height, weight, gcs, report_text, report_spans, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, now())
             ON CONFLICT (study_id) DO UPDATE SET age = $2, sex = $3, ethnicity = $4, height = $5, weight = $6, gcs = $7,
                 report_text = $8, report_spans = $9::jsonb, updated_at = now()),
         old_flags AS (DELETE FROM report_flags WHERE study_id = $1 AND cleared_by IS NULL),
         new_flags AS (
             INSERT INTO report_flags (study_id, reason, span_start, span_end)
             SELECT $1, r, s, e FROM unnest($10::text[], $11::int[], $12::int[]) AS f (r, s, e))
         UPDATE studies SET ehr_state = $13::ehr_state, ehr_failure_reason = NULL WHERE id = $1",
    )
    .bind(study_id)
    .bind(anon.age)
    .bind(&anon.sex)
    .bind(&anon.ethnicity)
    .bind(anon.height)
    .bind(anon.weight)
    .bind(anon.gcs)
    .bind(&anon.report)
    .bind(&spans_json)
    .bind(&reasons)
    .bind(&starts)
    .bind(&ends)
    .bind(state)
    .execute(&mut *conn)
    .await?;
    Ok(if anon.flags.is_empty() { Outcome::Done } else { Outcome::Flagged(anon.flags.len()) })
}

/// Handles one study end to end outside the queue (tests, tools): reads its EHR record
/// from EMAP, de-identifies and checks it, and stores the result in one transaction.
/// Running it again gives the same rows.
pub async fn process_study(pool: &PgPool, source: &EmapSource, study_id: i64) -> Result<Outcome, ProcessError> {
    let row = sqlx::query("SELECT mrn, accession_number, study_date FROM studies WHERE id = $1")
        .bind(study_id)
        .fetch_optional(pool)
        .await
        .map_err(db("reading the study"))?
        .ok_or(ProcessError::NoStudy(study_id))?;
    let study = StudyKeys::from_row(&row).map_err(db("reading the study"))?;
    let record = Source::Emap(source).record(&study).await?;
    let anon = deidentify(&record, &study);
    let mut tx = pool.begin().await.map_err(db("starting a transaction"))?;
    let outcome = store(&mut tx, study_id, anon.as_ref()).await.map_err(db("storing the result"))?;
    tx.commit().await.map_err(db("committing"))?;
    Ok(outcome)
}
