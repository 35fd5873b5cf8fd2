//! `pixl populate`: a cohort becomes study rows and `imaging` messages, all or nothing.
//!
//! Every row is validated and staged with `COPY` into temporary tables inside one
//! transaction; the OMOP join, PIXL's de-duplication and the insert of new studies (plus
//! one outbox row each) run as set operations in Postgres. Nothing is visible until the
//! transaction commits; any error rolls everything back. After the commit the outbox relay
//! publishes the messages with publisher confirms. If the broker fails half way, the rest
//! stay in the outbox and the next `pixl populate` (of any input) publishes them; studies
//! already known to the project, including exported ones, are never queued again.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pixl_core::config::Settings;
use pixl_core::db::DbError;
use pixl_core::export_tree;
use pixl_core::ids::ProjectSlug;
use pixl_core::outbox::{self, MessageKind, OutboxError};
use pixl_core::queues::{Broker, BrokerError, Topology, WorkQueue};
use sqlx::{PgConnection, Row};

use crate::cohort::{Cohort, CohortError};

/// What to populate and how.
#[derive(Debug, Clone)]
pub struct PopulateOptions {
    pub path: PathBuf,
    /// `imaging-primary` (the VNA) or `imaging-secondary` (the PACS).
    pub queue: WorkQueue,
    /// Message priority 1..=5 (higher is served first).
    pub priority: u8,
    /// Draw progress bars on stderr (only shown on a terminal).
    pub show_progress: bool,
}

/// Why populate stopped. After any of these, nothing of this run was saved, except
/// [`PopulateError::Publish`], where the studies are saved and the messages wait in the
/// outbox.
#[derive(Debug, thiserror::Error)]
pub enum PopulateError {
    #[error(transparent)]
    Cohort(#[from] CohortError),
    #[error("{0}")]
    Database(#[from] DbError),
    #[error("{0}")]
    Broker(#[from] BrokerError),
    #[error("database error while {step}: {source}")]
    Sql { step: &'static str, source: sqlx::Error },
    #[error("{path}: no usable row: every row lacks both an accession number and a study UID, or the extract's tables do not join")]
    Empty { path: PathBuf },
    #[error(
        "{path}: {count} procedure(s) with an accession number or study UID belong to a person without a PrimaryMrn (first procedure_occurrence_id {first_procedure})"
    )]
    MissingMrn { path: PathBuf, count: i64, first_procedure: i64 },
    #[error("the project reads its reports from the extract (ehr: reports-parquet): {0}")]
    Reports(#[from] crate::cohort::reports::ReportFileError),
    #[error("the project reads its reports from the extract (ehr: reports-parquet), which needs an OMOP extract, not a CSV cohort")]
    ReportsNeedOmop,
    #[error("populate can only publish to imaging-primary or imaging-secondary, not {0}")]
    NotAnImagingQueue(&'static str),
    #[error("priority must be from 1 to 5, got {0}")]
    BadPriority(u8),
    #[error("cannot copy the extract's public files to {path}: {source}")]
    ExportCopy { path: PathBuf, source: std::io::Error },
    #[error(
        "the studies are saved, but {pending} message(s) could not be published yet ({source}); run `pixl populate` again when RabbitMQ is back: it publishes them and queues nothing twice"
    )]
    Publish { pending: i64, source: OutboxError },
}

/// Per-project outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectOutcome {
    pub project: ProjectSlug,
    /// Distinct studies (or series selections) of the project in the input.
    pub studies_in_input: i64,
    /// Newly inserted and queued.
    pub queued: i64,
    /// Already known to the project (queued, in progress, exported or failed): not queued again.
    pub already_known: i64,
}

/// What a populate run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PopulateSummary {
    pub input: PathBuf,
    pub rows_read: u64,
    /// Rows with neither accession number nor study UID (dropped, as PIXL does).
    pub dropped_without_identifier: u64,
    /// OMOP procedure links with identifiers that match no procedure or person.
    pub unmatched_links: i64,
    /// Rows folded into another row of the same study.
    pub duplicates_merged: i64,
    pub projects: Vec<ProjectOutcome>,
    /// Messages published by this run (including any left from an earlier run).
    pub published: u64,
    /// Where the extract's public OMOP files were copied, for OMOP extracts.
    pub public_copy: Option<PathBuf>,
    pub elapsed: Duration,
}

impl fmt::Display for PopulateSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "populated from {}", self.input.display())?;
        writeln!(f, "  rows read:                      {}", self.rows_read)?;
        writeln!(f, "  dropped, no accession/study UID: {}", self.dropped_without_identifier)?;
        if self.unmatched_links > 0 {
            writeln!(f, "  dropped, no matching procedure/person: {}", self.unmatched_links)?;
        }
        writeln!(f, "  duplicate rows merged:          {}", self.duplicates_merged)?;
        for project in &self.projects {
            writeln!(
                f,
                "  project {}: {} studies, {} newly queued, {} already known (not queued again)",
                project.project, project.studies_in_input, project.queued, project.already_known
            )?;
        }
        writeln!(f, "  messages published:             {}", self.published)?;
        if let Some(path) = &self.public_copy {
            writeln!(f, "  OMOP public files copied to:    {}", path.display())?;
        }
        write!(f, "  took {:.1}s", self.elapsed.as_secs_f64())
    }
}

/// Runs a populate against the configured Postgres and RabbitMQ.
pub async fn populate(settings: &Settings, options: &PopulateOptions) -> Result<PopulateSummary, PopulateError> {
    let started = Instant::now();
    if !matches!(options.queue, WorkQueue::ImagingPrimary | WorkQueue::ImagingSecondary) {
        return Err(PopulateError::NotAnImagingQueue(options.queue.base_name()));
    }
    if !(1..=5).contains(&options.priority) {
        return Err(PopulateError::BadPriority(options.priority));
    }
    let cohort = Cohort::open(&options.path)?;
    if let Cohort::Omop(extract) = &cohort {
        // Fail before touching any service when the project is unknown.
        pixl_core::project_config::load_project(&settings.project_configs_dir, &extract.project).map_err(CohortError::from)?;
    }

    // Connect to both services first, so that a broker that is down stops us before any
    // write rather than after.
    let broker = Broker::connect(&settings.rabbitmq, Topology::new(settings.queue_prefix.clone())).await?;
    let pool = pixl_core::db::connect(&settings.database, 2).await?;

    let sql = |step: &'static str| move |source| PopulateError::Sql { step, source };
    let mut tx = pool.begin().await.map_err(sql("starting the transaction"))?;
    create_staging_tables(&mut tx).await.map_err(sql("creating staging tables"))?;

    let read_bar = bar(options.show_progress, cohort.expected_rows(), "reading");
    let cohort = std::sync::Arc::new(cohort);
    let stats = stage(&mut tx, cohort.clone(), settings.project_configs_dir.clone(), read_bar.clone()).await?;
    read_bar.finish_and_clear();
    tracing::debug!(elapsed = ?started.elapsed(), "staged");

    let mut unmatched_links = 0;
    if let Cohort::Omop(extract) = cohort.as_ref() {
        unmatched_links = join_omop(&mut tx, &extract.project, extract.extract_datetime, &options.path).await?;
    }

    let saving = bar(options.show_progress, None, "saving studies");
    let ehr_projects = ehr_projects(&mut tx, &settings.project_configs_dir).await?;
    let (duplicates_merged, projects) = insert_studies(&mut tx, options, &ehr_projects).await.map_err(sql("inserting studies"))?;
    saving.finish_and_clear();
    tracing::debug!(elapsed = ?started.elapsed(), "studies inserted");
    if projects.is_empty() {
        return Err(PopulateError::Empty { path: options.path.clone() });
    }

    stage_reports(&mut tx, cohort.as_ref(), &settings.project_configs_dir, &options.path).await?;

    let mut public_copy = None;
    if let Cohort::Omop(extract) = cohort.as_ref() {
        let target = copy_public_files(&extract.public_dir, &settings.host_export_root_dir, &extract.project, extract.extract_datetime)?;
        public_copy = Some(target);
    }
    tx.commit().await.map_err(sql("committing"))?;
    tracing::debug!(elapsed = ?started.elapsed(), "committed");

    let pending = outbox::pending(&pool).await.map_err(sql("counting pending messages"))?;
    let publish_bar = bar(options.show_progress, Some(pending as u64), "publishing");
    let published = outbox::relay(&pool, &broker, 10_000, |n| publish_bar.inc(n)).await;
    publish_bar.finish_and_clear();
    let published = match published {
        Ok(count) => count,
        Err(source) => {
            let pending = outbox::pending(&pool).await.unwrap_or(pending);
            return Err(PopulateError::Publish { pending, source });
        }
    };
    broker.close().await;
    pool.close().await;

    Ok(PopulateSummary {
        input: options.path.clone(),
        rows_read: stats.rows_read,
        dropped_without_identifier: stats.dropped_without_identifier,
        unmatched_links,
        duplicates_merged,
        projects,
        published,
        public_copy,
        elapsed: started.elapsed(),
    })
}

fn bar(visible: bool, length: Option<u64>, message: &'static str) -> ProgressBar {
    let target = if visible { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
    let bar = match length {
        Some(length) => ProgressBar::with_draw_target(Some(length), target).with_style(
            ProgressStyle::with_template("{msg:>15} [{bar:40}] {human_pos}/{human_len} rows ({per_sec}, {eta} left)")
                .expect("valid template")
                .progress_chars("=> "),
        ),
        None => ProgressBar::with_draw_target(None, target)
            .with_style(ProgressStyle::with_template("{msg:>15} {spinner} {human_pos} rows ({per_sec})").expect("valid template")),
    };
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

async fn create_staging_tables(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    // Temporary tables are private to this transaction and skip the WAL.
    for statement in [
        "SET LOCAL work_mem = '256MB'",
        "CREATE TEMP TABLE stage_cohort (
            row_no bigint NOT NULL, project_slug text NOT NULL, extract_datetime timestamptz NOT NULL,
            mrn text, accession_number text, study_uid text, series_uids text, study_date date,
            procedure_occurrence_id bigint, participant_id text
         ) ON COMMIT DROP",
        "CREATE TEMP TABLE stage_person (row_no bigint NOT NULL, person_id bigint, mrn text) ON COMMIT DROP",
        "CREATE TEMP TABLE stage_procedure (row_no bigint NOT NULL, procedure_occurrence_id bigint, person_id bigint, procedure_date date) ON COMMIT DROP",
        "CREATE TEMP TABLE stage_procedure_link (row_no bigint NOT NULL, procedure_occurrence_id bigint, accession_number text, study_uid text) ON COMMIT DROP",
    ] {
        sqlx::query(statement).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Reads the cohort on a blocking thread and streams its chunks into `COPY`.
async fn stage(
    conn: &mut PgConnection,
    cohort: std::sync::Arc<Cohort>,
    configs_dir: PathBuf,
    progress: ProgressBar,
) -> Result<crate::cohort::ReadStats, PopulateError> {
    let (sender, mut receiver) = tokio::sync::mpsc::channel(4);
    let reader = tokio::task::spawn_blocking(move || {
        let mut check_project = crate::cohort::cached_project_check(configs_dir);
        cohort.stream(&mut check_project, &mut |chunk| sender.blocking_send(chunk).map_err(|_| CohortError::WriterGone), &mut |rows| progress.inc(rows))
    });

    let copy_error = |source| PopulateError::Sql { step: "staging rows", source };
    let written = copy_chunks(conn, &mut receiver).await.map_err(copy_error);
    // Dropping the receiver stops a reader still running after a database error.
    drop(receiver);
    let read = reader.await.expect("the cohort reader does not panic");
    match (read, written) {
        // A database error makes the reader stop with WriterGone; report the cause.
        (Err(CohortError::WriterGone), Err(db)) => Err(db),
        (Err(cohort), _) => Err(cohort.into()),
        (Ok(_), Err(db)) => Err(db),
        (Ok(stats), Ok(())) => {
            for table in ["stage_cohort", "stage_person", "stage_procedure", "stage_procedure_link"] {
                // Temporary tables get no statistics otherwise, and the join plan needs them.
                sqlx::query(sqlx::AssertSqlSafe(format!("ANALYZE {table}"))).execute(&mut *conn).await.map_err(copy_error)?;
            }
            Ok(stats)
        }
    }
}

/// Writes chunks with one `COPY` per run of chunks for the same table (readers send each
/// table's chunks together).
async fn copy_chunks(conn: &mut PgConnection, receiver: &mut tokio::sync::mpsc::Receiver<crate::cohort::StageChunk>) -> Result<(), sqlx::Error> {
    let mut next = receiver.recv().await;
    while let Some(first) = next.take() {
        let table = first.table;
        let mut copy = conn.copy_in_raw(table.copy_statement()).await?;
        copy.send(first.bytes).await?;
        loop {
            match receiver.recv().await {
                Some(chunk) if chunk.table == table => {
                    copy.send(chunk.bytes).await?;
                }
                other => {
                    next = other;
                    break;
                }
            }
        }
        copy.finish().await?;
    }
    Ok(())
}

/// PIXL's join: person links ⋈ procedure occurrence ⋈ procedure links. Returns the
/// number of links with identifiers that matched nothing.
async fn join_omop(conn: &mut PgConnection, project: &ProjectSlug, extract_datetime: DateTime<Utc>, path: &Path) -> Result<i64, PopulateError> {
    let sql = |step: &'static str| move |source| PopulateError::Sql { step, source };
    sqlx::query(
        "INSERT INTO stage_cohort (row_no, project_slug, extract_datetime, mrn, accession_number, study_uid, study_date, procedure_occurrence_id)
         SELECT row_number() OVER (ORDER BY l.row_no, pr.row_no, p.row_no), $1, $2,
                p.mrn, l.accession_number, l.study_uid, pr.procedure_date, pr.procedure_occurrence_id
         FROM stage_person p
         JOIN stage_procedure pr ON pr.person_id = p.person_id
         JOIN stage_procedure_link l ON l.procedure_occurrence_id = pr.procedure_occurrence_id",
    )
    .bind(project.as_str())
    .bind(extract_datetime)
    .execute(&mut *conn)
    .await
    .map_err(sql("joining the OMOP tables"))?;

    let missing = sqlx::query("SELECT count(*), min(procedure_occurrence_id) FROM stage_cohort WHERE mrn IS NULL")
        .fetch_one(&mut *conn)
        .await
        .map_err(sql("checking MRNs"))?;
    let count: i64 = missing.get(0);
    if count > 0 {
        return Err(PopulateError::MissingMrn { path: path.to_owned(), count, first_procedure: missing.get::<Option<i64>, _>(1).unwrap_or(-1) });
    }
    sqlx::query_scalar(
        "SELECT count(*) FROM stage_procedure_link l
         WHERE NOT EXISTS (SELECT 1 FROM stage_cohort c WHERE c.procedure_occurrence_id = l.procedure_occurrence_id)",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(sql("counting unmatched links"))
}

/// De-duplicates the staged rows as PIXL does (first row by study date, then input order),
/// inserts the new studies and one outbox message each. Returns (duplicates merged,
/// per-project outcome).
async fn insert_studies(conn: &mut PgConnection, options: &PopulateOptions, ehr_projects: &[String]) -> Result<(i64, Vec<ProjectOutcome>), sqlx::Error> {
    sqlx::query(
        "CREATE TEMP TABLE stage_studies ON COMMIT DROP AS
         SELECT DISTINCT ON (project_slug, mrn, accession_number, study_uid) *
         FROM stage_cohort
         ORDER BY project_slug, mrn, accession_number, study_uid, study_date NULLS LAST, row_no",
    )
    .execute(&mut *conn)
    .await?;
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM stage_cohort").fetch_one(&mut *conn).await?;
    let distinct: i64 = sqlx::query_scalar("SELECT count(*) FROM stage_studies").fetch_one(&mut *conn).await?;

    sqlx::query(
        "INSERT INTO extracts (project_slug, extract_datetime)
         SELECT DISTINCT project_slug, extract_datetime FROM stage_studies
         ON CONFLICT ON CONSTRAINT extracts_identity DO NOTHING",
    )
    .execute(&mut *conn)
    .await?;

    let queued_rows = sqlx::query(
        "WITH inserted AS (
             INSERT INTO studies (extract_id, project_slug, mrn, accession_number, study_uid, series_uids,
                                  study_date, procedure_occurrence_id, participant_id, waiting_queue, ehr_wanted)
             SELECT e.id, s.project_slug, s.mrn, s.accession_number, s.study_uid,
                    COALESCE(string_to_array(s.series_uids, E'\\\\'), '{}'),
                    s.study_date, s.procedure_occurrence_id, s.participant_id, $2, s.project_slug = ANY($4)
             FROM stage_studies s
             JOIN extracts e ON e.project_slug = s.project_slug AND e.extract_datetime = s.extract_datetime
             -- Exported already, as PIXL matches (project, MRN, accession number) when one
             -- side has no study UID (PIXL's imported studies often have none).
             WHERE NOT EXISTS (
                 SELECT 1 FROM studies x
                 WHERE x.project_slug = s.project_slug AND x.mrn = s.mrn AND x.state = 'exported'
                   AND x.accession_number IS NOT DISTINCT FROM s.accession_number
                   AND (x.study_uid IS NULL OR s.study_uid IS NULL))
             ORDER BY s.row_no
             ON CONFLICT ON CONSTRAINT studies_identity DO NOTHING
             RETURNING id, project_slug
         ), queued AS (
             INSERT INTO outbox (study_id, kind, queue, priority)
             SELECT id, $1, $2, $3 FROM inserted ORDER BY id
         ), ehr_queued AS (
             -- ehr-api's message, beside the imaging one (PIXL queued both).
             INSERT INTO outbox (study_id, kind, queue, priority)
             SELECT id, 'ehr', 'ehr', 0 FROM inserted WHERE project_slug = ANY($4) ORDER BY id
         )
         SELECT project_slug, count(*) FROM inserted GROUP BY project_slug",
    )
    .bind(MessageKind::Imaging.as_str())
    .bind(options.queue.base_name())
    .bind(i16::from(options.priority))
    .bind(ehr_projects)
    .fetch_all(&mut *conn)
    .await?;
    // Every study the extract names, new or known, with the extract's procedure ids: the
    // image linker of this extract covers them all (matched as above).
    sqlx::query(
        "INSERT INTO extract_studies (extract_id, study_id, procedure_occurrence_id)
         SELECT DISTINCT e.id, x.id, c.procedure_occurrence_id
         FROM stage_cohort c
         JOIN extracts e ON e.project_slug = c.project_slug AND e.extract_datetime = c.extract_datetime
         JOIN studies x ON x.project_slug = c.project_slug AND x.mrn = c.mrn
              AND x.accession_number IS NOT DISTINCT FROM c.accession_number
              AND (x.study_uid IS NOT DISTINCT FROM c.study_uid OR x.study_uid IS NULL OR c.study_uid IS NULL)
         ON CONFLICT DO NOTHING",
    )
    .execute(&mut *conn)
    .await?;
    let in_input = sqlx::query("SELECT project_slug, count(*) FROM stage_studies GROUP BY project_slug ORDER BY project_slug").fetch_all(&mut *conn).await?;

    let mut outcomes = Vec::with_capacity(in_input.len());
    for row in in_input {
        let slug: String = row.get(0);
        let studies_in_input: i64 = row.get(1);
        let queued = queued_rows.iter().find(|r| r.get::<String, _>(0) == slug).map_or(0, |r| r.get::<i64, _>(1));
        outcomes.push(ProjectOutcome {
            // Slugs were validated before staging.
            project: ProjectSlug::parse(&slug).expect("staged slugs are valid"),
            studies_in_input,
            queued,
            already_known: studies_in_input - queued,
        });
    }
    Ok((kept - distinct, outcomes))
}

/// For a project whose reports come from the extract (`ehr: reports-parquet`), keeps each
/// report of `private/RADIOLOGY_REPORTS.parquet` for its study (matched by accession
/// number) until ehr-api has de-identified it. Studies ehr-api has handled already are
/// left as they are.
async fn stage_reports(conn: &mut PgConnection, cohort: &Cohort, configs: &Path, path: &Path) -> Result<(), PopulateError> {
    use pixl_core::project_config::EhrSource;
    let projects: Vec<String> = sqlx::query_scalar("SELECT DISTINCT project_slug FROM stage_cohort")
        .fetch_all(&mut *conn)
        .await
        .map_err(|source| PopulateError::Sql { step: "listing the projects", source })?;
    for slug in projects {
        let project = ProjectSlug::parse(&slug).expect("staged slugs are valid");
        if pixl_core::project_config::load_project(configs, &project).map_err(CohortError::from)?.config.ehr != EhrSource::ReportsParquet {
            continue;
        }
        if !matches!(cohort, Cohort::Omop(_)) {
            return Err(PopulateError::ReportsNeedOmop);
        }
        let file = crate::cohort::reports::read_reports(path)?;
        let (accessions, texts): (Vec<String>, Vec<String>) = file.reports.into_iter().map(|(accession, row)| (accession, row.text)).unzip();
        sqlx::query(
            "INSERT INTO ehr_source_reports (study_id, report_text)
             SELECT x.id, r.report_text FROM unnest($1::text[], $2::text[]) AS r (accession_number, report_text)
             JOIN studies x ON x.project_slug = $3 AND x.accession_number = r.accession_number AND x.ehr_state IS NULL
             ON CONFLICT (study_id) DO UPDATE SET report_text = EXCLUDED.report_text",
        )
        .bind(&accessions)
        .bind(&texts)
        .bind(&slug)
        .execute(&mut *conn)
        .await
        .map_err(|source| PopulateError::Sql { step: "keeping the extract's reports", source })?;
    }
    Ok(())
}

/// The projects of the staged cohort whose EHR ehr-api gathers (all but `ehr: none`).
async fn ehr_projects(conn: &mut PgConnection, configs: &Path) -> Result<Vec<String>, PopulateError> {
    let slugs: Vec<String> = sqlx::query_scalar("SELECT DISTINCT project_slug FROM stage_cohort")
        .fetch_all(&mut *conn)
        .await
        .map_err(|source| PopulateError::Sql { step: "listing the projects", source })?;
    let mut wanted = Vec::with_capacity(slugs.len());
    for slug in slugs {
        let project = ProjectSlug::parse(&slug).expect("staged slugs are valid");
        let loaded = pixl_core::project_config::load_project(configs, &project).map_err(CohortError::from)?;
        if loaded.config.ehr != pixl_core::project_config::EhrSource::None {
            wanted.push(slug);
        }
    }
    Ok(wanted)
}

/// Copies `public/` to `<root>/<slug>/all_extracts/<ts>/omop/public/` (replacing an earlier
/// copy of the same extract) and points `<root>/<slug>/latest` at the extract directory.
/// Both steps end with a rename, so a reader never sees a half-copied tree.
fn copy_public_files(public_dir: &Path, export_root: &Path, project: &ProjectSlug, extract_datetime: DateTime<Utc>) -> Result<PathBuf, PopulateError> {
    let project_dir = export_tree::project_dir(export_root, project);
    let relative_extract = export_tree::relative_extract_dir(extract_datetime);
    let target = export_tree::public_dir(&project_dir.join(&relative_extract));
    let omop_dir = target.parent().expect("public/ has a parent").to_owned();
    let error = |path: &Path| {
        let path = path.to_owned();
        move |source| PopulateError::ExportCopy { path, source }
    };
    std::fs::create_dir_all(&omop_dir).map_err(error(&omop_dir))?;
    let partial = omop_dir.join(format!(".public.partial-{}", std::process::id()));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(error(&partial))?;
    }
    copy_tree(public_dir, &partial).map_err(error(&partial))?;
    if target.exists() {
        std::fs::remove_dir_all(&target).map_err(error(&target))?;
    }
    std::fs::rename(&partial, &target).map_err(error(&target))?;

    let latest = project_dir.join("latest");
    let latest_partial = project_dir.join(format!(".latest.partial-{}", std::process::id()));
    let _ = std::fs::remove_file(&latest_partial);
    std::os::unix::fs::symlink(&relative_extract, &latest_partial).map_err(error(&latest))?;
    std::fs::rename(&latest_partial, &latest).map_err(error(&latest))?;
    Ok(target)
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let destination = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &destination)?;
        } else {
            std::fs::copy(entry.path(), destination)?;
        }
    }
    Ok(())
}
