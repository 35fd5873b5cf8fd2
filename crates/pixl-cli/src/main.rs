//! The `pixl` command line: reads configuration, sets up logging and dispatches.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pixl_core::config::{Settings, load_dotenv};
use pixl_core::queues::WorkQueue;

/// mimalloc reuses the large per-instance buffers of `pixl anonymise`; the system allocator
/// maps and zeroes fresh pages for each, which dominated its profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "pixl", version, about = "PIXL image extraction: populate cohorts and drive the pipeline")]
struct Cli {
    /// Log at debug level (PIXL's --debug).
    #[arg(long, global = true)]
    debug: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Queue the studies of a cohort: an OMOP-ES extract directory or a CSV file.
    Populate {
        /// OMOP-ES extract directory (flat or batched parquet) or CSV cohort file.
        path: PathBuf,
        /// Queue to publish to: imaging-primary (VNA; PIXL's `imaging` is accepted) or
        /// imaging-secondary (PACS). One queue: imaging-api looks in the PACS by itself
        /// for a study the VNA lacks.
        #[arg(long, value_delimiter = ',', default_value = "imaging-primary", value_parser = parse_imaging_queue)]
        queues: Vec<WorkQueue>,
        /// Message priority, 1 (lowest) to 5 (highest).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
        priority: u8,
        /// Studies per second imaging-api takes off the queue (default: its configured rate).
        #[arg(long)]
        rate: Option<f64>,
        /// Only queue the studies; do not start imaging-api on them (`pixl start` later).
        #[arg(long)]
        no_start: bool,
        /// PIXL's retry rounds: wait until no study of the cohort's projects is in
        /// progress, pause CLI_RETRY_SECONDS (default 300), queue the failed ones again;
        /// stop early once nothing failed or a round exported nothing new. Default 0:
        /// the services retry passing failures themselves.
        #[arg(long, default_value_t = 0)]
        num_retries: u32,
    },
    /// Take over what a PIXL deployment exported, from PIXL's database (schema
    /// pixl_pipeline): those studies are never queued again and keep PIXL's pseudonymous
    /// study UIDs and patient ids. Safe to run again.
    ImportPixlDb {
        /// PIXL's database, as postgres://user:password@host:port/database.
        #[arg(long, env = "PIXL_DB_URL", hide_env_values = true)]
        url: String,
        /// The schema of PIXL's tables (default: the first of pixl_pipeline, pipeline, pixl
        /// that has them).
        #[arg(long)]
        schema: Option<String>,
    },
    /// Start (or resume) retrieval at imaging-api: sets the queues' rate.
    Start {
        /// Comma-separated queues.
        #[arg(long, value_delimiter = ',', default_value = "imaging-primary", value_parser = parse_imaging_queue)]
        queues: Vec<WorkQueue>,
        /// Studies per second per queue, more than 0 (default IMAGING_API_RATE, else 5).
        #[arg(long)]
        rate: Option<f64>,
    },
    /// Pause retrieval (rate 0); with --purge also empty the queues (the studies are then
    /// marked failed, "purged", for `pixl retry-failed`).
    Stop {
        #[arg(long, value_delimiter = ',', value_parser = parse_imaging_queue)]
        queues: Vec<WorkQueue>,
        #[arg(long)]
        purge: bool,
    },
    /// Change the retrieval rate.
    Update {
        #[arg(long, value_delimiter = ',', value_parser = parse_imaging_queue)]
        queues: Vec<WorkQueue>,
        #[arg(long)]
        rate: f64,
    },
    /// Studies per project and state, queue depths, dead letters, recent failure reasons;
    /// with --queues, also those queues' retrieval rates (PIXL's `pixl status`).
    Status {
        #[arg(long, value_delimiter = ',', value_parser = parse_imaging_queue)]
        queues: Vec<WorkQueue>,
    },
    /// Stop the compose services (`docker compose stop`), as PIXL's `pixl kill`.
    Kill,
    /// Queue failed studies again (all, or one project's).
    RetryFailed {
        #[arg(long)]
        project: Option<String>,
    },
    /// Write the image linker of an extract and upload its parquet files to the project's
    /// destination (export-api at EXPORT_API_URL does the work).
    ExportPatientData {
        /// The OMOP-ES extract directory (its extract_summary.json names project and time).
        parquet_dir: PathBuf,
        /// Seconds to wait for export-api's answer.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
        /// Export although some reports of the extract are flagged and wait for review
        /// (they are left out); without it the export is refused while any is.
        #[arg(long)]
        skip_flagged: bool,
    },
    /// Review the reports that ehr-api's second check flagged (withheld from export).
    #[command(subcommand)]
    Reports(ReportsCommand),
    /// Write the release report of an extract again (release-report.json and .html in the
    /// export tree), from the database, the project's files and a new identifier check
    /// (export-api at EXPORT_API_URL does the work).
    ReleaseReport {
        /// The OMOP-ES extract directory (its extract_summary.json names project and time).
        parquet_dir: PathBuf,
    },
    /// FHIR: NDJSON to de-identified parquet tables through SQL-on-FHIR views.
    #[command(subcommand)]
    Fhir(FhirCommand),
    /// SS-MIX2 standardized storages (Japanese hospitals' HL7 v2.5 archives).
    #[command(subcommand)]
    Ssmix2(Ssmix2Command),
    /// Decrypt output files encrypted for you (`.bin`, ssmixtools' format) with your RSA
    /// private key (PEM, PKCS#8 or PKCS#1).
    Decrypt {
        /// Encrypted files (`<name>.bin` becomes `<name>`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long)]
        key: PathBuf,
        /// Where the decrypted files go (default: beside each file).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// De-identify a folder of DICOM files offline with a project's config and the local keys.
    Anonymise {
        /// Project slug (its config in PROJECT_CONFIGS_DIR).
        #[arg(long)]
        project: String,
        /// Folder of DICOM files, read recursively.
        input: PathBuf,
        /// Where de-identified files are written (<study>/<series>/<sop>.dcm).
        output: PathBuf,
    },
    /// Run the whole imaging pipeline locally against a local DICOM archive, with fake
    /// studies, and summarise what came out where.
    Demo {
        /// Working directory (cleared first).
        #[arg(long, default_value = "pixl-demo")]
        dir: PathBuf,
        /// The example OMOP-ES extract to populate from.
        #[arg(long, default_value = "projects/demo/omop-extract")]
        extract: PathBuf,
        /// Seconds to wait for the studies.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Check configuration, Postgres, RabbitMQ, project configs and the export directory,
    /// and report PIXL's variables. With --project-configs or --sample-env-file, only
    /// those (offline) checks.
    CheckEnv {
        /// Check this directory of project configs (with their tag-operation files and
        /// deid recipes) and nothing else: the first command of a site moving from PIXL.
        #[arg(long)]
        project_configs: Option<PathBuf>,
        /// PIXL's option: check that every variable named in this file is set.
        #[arg(long)]
        sample_env_file: Option<PathBuf>,
        /// Exit with an error when a variable of --sample-env-file is not set.
        #[arg(long)]
        error: bool,
    },
    /// Manage the local secrets file (development and `pixl demo`).
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Generate benchmark inputs (see docs/benchmarks.md).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// De-identify free text (reports, notes): IN is a directory of .txt files, a JSON-lines
    /// file ({"id", "text"} per line) or a parquet file (--column); OUT takes the same form.
    /// `pixl deid-text eval --gold FILE` scores it against gold annotations.
    #[command(args_conflicts_with_subcommands = true)]
    DeidText {
        #[command(subcommand)]
        eval: Option<DeidTextCommand>,
        /// Input: a directory of .txt files (IN/<patient>/<note>.txt gives each note its
        /// patient), a .jsonl file or a .parquet file.
        input: Option<PathBuf>,
        /// Output: a directory, a .jsonl file or a .parquet file, as the input.
        #[arg(value_name = "OUT")]
        output: Option<PathBuf>,
        /// What replaces each note.
        #[arg(long = "output", alias = "output-form", value_enum, default_value = "asterisk")]
        output_form: pixl_cli::deid_text::OutputForm,
        /// Name the input files that could not be de-identified (their paths may hold
        /// identifiers, so by default only their number is shown).
        #[arg(long)]
        list_failed: bool,
        /// Known PHI per patient (JSON lines: patient_id, first_names, surnames,
        /// identifiers, dates_of_birth, phones, postcodes), found wherever it occurs.
        #[arg(long)]
        probes: Option<PathBuf>,
        /// JSON lines and parquet: the field or column holding the text.
        #[arg(long, default_value = "text")]
        column: String,
        /// JSON lines and parquet: the id field or column (default: "id" if there is one,
        /// else the line or row number).
        #[arg(long)]
        id_column: Option<String>,
        /// JSON lines and parquet: the patient field or column (for probes and surrogates).
        #[arg(long, default_value = "patient_id")]
        patient_column: String,
        /// Surrogates' secret key file (at least 32 bytes; keep one per project).
        #[arg(long, env = "PIXL_TEXT_SURROGATE_KEY_FILE")]
        key_file: Option<PathBuf>,
        /// How surrogates read 03/04/2021.
        #[arg(long, value_enum, default_value = "day-first")]
        date_order: DateOrderArg,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Run `docker compose` for this pixl deployment, e.g. `pixl dc up -d`. As PIXL's:
    /// `up` adds --wait --build --remove-orphans, and `down --volumes` asks first when
    /// ENV=prod. PIXL's variable names in .env are passed under pixl's.
    Dc {
        /// Arguments passed to `docker compose`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(clap::Args)]
struct FhirExportArgs {
    /// The server's FHIR base URL (https, or http to this machine only).
    #[arg(long)]
    base: String,
    /// Where the files are written (one folder per export: it keeps bulk-state.json).
    #[arg(long)]
    out: PathBuf,
    /// The client id registered with the server (none: an open server, no tokens).
    #[arg(long)]
    client_id: Option<String>,
    /// Secret of the secret store that holds the private key (JWK or PEM).
    #[arg(long, default_value = pixl_cli::fhir_export::DEFAULT_KEY_SECRET, conflicts_with = "key_file")]
    key_secret: String,
    /// A file holding the private key (JWK or PEM), instead of the secret store.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// The key id registered with the server (default: the JWK's, or the one `keygen` stored).
    #[arg(long)]
    kid: Option<String>,
    #[arg(long, default_value = pixl_fhir_bulk::smart::DEFAULT_SCOPE)]
    scope: String,
    /// Export a group's members (Group/ID/$export).
    #[arg(long, conflicts_with = "patients")]
    group: Option<String>,
    /// Patient-level export (Patient/$export); the default is system-level ($export).
    #[arg(long = "patient-level")]
    patients: bool,
    /// Resource types (_type), repeatable.
    #[arg(long = "type")]
    types: Vec<String>,
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    until: Option<String>,
    /// FHIR search queries (_typeFilter), repeatable; OR'd per type.
    #[arg(long = "type-filter")]
    type_filters: Vec<String>,
    /// _elements, repeatable.
    #[arg(long = "elements")]
    elements: Vec<String>,
    /// Patient references (patient, POST kick-off), repeatable.
    #[arg(long = "patient")]
    patient_refs: Vec<String>,
    /// includeAssociatedData values, repeatable.
    #[arg(long = "include-associated-data")]
    include_associated_data: Vec<String>,
    /// organizeOutputBy (a resource type).
    #[arg(long)]
    organize_output_by: Option<String>,
    /// allowPartialManifests: download files while the export is still running.
    #[arg(long)]
    allow_partial_manifests: bool,
    /// Kick off with POST and a Parameters body (always with --patient).
    #[arg(long)]
    post: bool,
    /// Prefer: handling=lenient (the server ignores parameters it does not support).
    #[arg(long)]
    lenient: bool,
    /// Concurrent downloads.
    #[arg(long, default_value_t = 5)]
    parallel: usize,
    /// Leave the job on the server instead of deleting it when done.
    #[arg(long)]
    keep_job: bool,
    /// Resume the export whose polling URL this is (saved in OUT/bulk-state.json).
    #[arg(long)]
    status: Option<String>,
}

#[derive(Subcommand)]
enum FhirCommand {
    /// FHIR NDJSON files (a Bulk Data download, Synthea output) to one parquet table per
    /// SQL-on-FHIR view, de-identified with the project's keys and FHIR policy.
    Convert {
        /// Folder of .ndjson files (one resource type per file).
        input: PathBuf,
        /// Where the tables are written (<view>.parquet).
        #[arg(long, required_unless_present = "extract", conflicts_with = "extract")]
        out: Option<PathBuf>,
        /// The OMOP-ES extract these resources belong to: the tables are written into its
        /// export tree (<HOST_EXPORT_ROOT_DIR>/<slug>/all_extracts/<time>/fhir/), where
        /// `pixl export-patient-data` checks them for identifiers and uploads them.
        #[arg(long, conflicts_with = "no_deid")]
        extract: Option<PathBuf>,
        /// Project slug: its keys and `<slug>.fhir.yaml` policy de-identify the resources
        /// (default with --extract: the extract's project).
        #[arg(long, required_unless_present_any = ["no_deid", "extract"], conflicts_with = "no_deid")]
        project: Option<String>,
        /// Write the tables without de-identification (synthetic or de-identified input only).
        #[arg(long)]
        no_deid: bool,
        /// Folder of ViewDefinitions (.json; or the workshop's {"Type": [[name, path]]});
        /// default: the shipped views.
        #[arg(long)]
        views: Option<PathBuf>,
    },
    /// Print one resource of a type from downloaded NDJSON, as downloaded (to a terminal
    /// only: it may hold PHI).
    Example {
        /// Resource type, e.g. Patient.
        resource_type: String,
        /// Folder of .ndjson files.
        dir: PathBuf,
        /// That resource's id (default: the first).
        #[arg(long)]
        id: Option<String>,
    },
    /// Bulk Data $export from a FHIR server (SMART Backend Services) into a folder of
    /// NDJSON files for `pixl fhir convert`. Resume an interrupted run with --status.
    Export(Box<FhirExportArgs>),
    /// Create the Bulk Data client's signing key in the secret store and print the public
    /// key set (JWKS) to register with the FHIR server.
    Keygen {
        /// RS384 or ES384.
        #[arg(long, default_value = "ES384")]
        alg: String,
        /// The key id the server will know the key by.
        #[arg(long)]
        kid: String,
        #[arg(long, default_value = pixl_cli::fhir_export::DEFAULT_KEY_SECRET)]
        key_secret: String,
    },
    /// Write Synthea-like NDJSON (one file per type) for trying `convert` without a server.
    Generate {
        /// Where the .ndjson files are written.
        out: PathBuf,
        #[arg(long, default_value_t = 100)]
        patients: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

#[derive(Subcommand)]
enum ReportsCommand {
    /// The reports waiting for review, with their flags per reason.
    List {
        #[arg(long)]
        project: Option<String>,
    },
    /// Print a flagged report with the doubted places marked (to a terminal only: it may
    /// hold PHI).
    Show {
        /// The study's id, as `pixl reports list` shows it.
        id: i64,
    },
    /// Release a flagged report as it is; recorded with the operator, time and reason.
    Release {
        id: i64,
        /// Why the flags are wrong (recorded in the audit table and the release report).
        #[arg(long)]
        reason: String,
    },
    /// Replace the flagged places of a report by [REDACTED] and release it; recorded.
    Redact { id: i64 },
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Create PIXL_SECRETS_FILE with a new random hashing key (never replaces a key).
    Init,
}

#[derive(Subcommand)]
enum DeidTextCommand {
    /// Score the engine (or another tool's spans) against gold annotations: entity recall
    /// per category, token recall and precision, retention.
    Eval {
        /// Gold: JSON lines {"id", "text", "spans": [{"start", "end", "category"}]}
        /// (character offsets), or i2b2-2014 XML (a file or a directory of .xml files).
        #[arg(long)]
        gold: PathBuf,
        /// Score these spans (JSON lines {"id", "spans"}, as --output spans writes
        /// them) instead of running the engine.
        #[arg(long)]
        predicted: Option<PathBuf>,
        /// Probes for the engine (see `pixl deid-text --probes`); gold notes name their
        /// patient with "patient_id".
        #[arg(long)]
        probes: Option<PathBuf>,
        /// Write every false negative and false positive, with context, to this file (it
        /// holds PHI; created readable by its owner only).
        #[arg(long)]
        errors: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DateOrderArg {
    DayFirst,
    MonthFirst,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FormatArg {
    Parquet,
    Csv,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TimestampsArg {
    SinceBirth,
    Shift,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DobArg {
    None,
    Full,
    Year,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum IdsArg {
    Keyed,
    Shuffled,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FreeTextArg {
    Remove,
    Deidentify,
}

// Variant names are the subcommands users type (`pixl bench generate-omop`).
#[allow(clippy::enum_variant_names)]
#[derive(clap::Args)]
struct Ssmix2ExtractArgs {
    /// The storage's root folder.
    root: PathBuf,
    /// Where the tables go.
    #[arg(long, required_unless_present = "extract", conflicts_with = "extract")]
    out: Option<PathBuf>,
    /// The OMOP-ES extract these patients belong to: the parquet tables are written into
    /// its export tree (<HOST_EXPORT_ROOT_DIR>/<slug>/all_extracts/<time>/ssmix2/), where
    /// `pixl export-patient-data` checks and uploads them with the extract's other files.
    #[arg(long)]
    extract: Option<PathBuf>,
    /// Project slug: its keys make the pseudonyms and date shifts (default with --extract:
    /// the extract's project).
    #[arg(long, required_unless_present = "extract")]
    project: Option<String>,
    /// Appended to every pseudonymous id (as ssmixtools' identity tag).
    #[arg(long)]
    identity_tag: String,
    /// Encrypt every output file for this RSA public key (OpenSSH ssh-rsa or PEM); not
    /// with --extract.
    #[arg(long)]
    recipient_key: Option<PathBuf>,
    /// parquet or csv (with --extract: parquet).
    #[arg(long, value_enum, default_value_t = FormatArg::Parquet)]
    format: FormatArg,
    /// since-birth (as ssmixtools) or shift (by the patient's pixl offset).
    #[arg(long, value_enum, default_value_t = TimestampsArg::SinceBirth)]
    timestamps: TimestampsArg,
    /// Write the date_of_birth table: none, full or year (with --extract: none or year).
    #[arg(long, value_enum, default_value_t = DobArg::None)]
    dob: DobArg,
    /// Patients with a day of records in the period are included (with all their records).
    #[arg(long)]
    period_start: Option<chrono::NaiveDate>,
    #[arg(long)]
    period_end: Option<chrono::NaiveDate>,
    /// Patients with fewer days of records are left out.
    #[arg(long, default_value_t = 1)]
    min_encounters: usize,
    /// Also write the analytics JSON here.
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Threads reading and parsing patients (default: the cores but one).
    #[arg(long)]
    max_workers: Option<usize>,
    /// keyed (the project's pseudonyms) or shuffled (ssmixtools' numbers 1..N in a random
    /// order; needs --id-map-key; not with --extract).
    #[arg(long, value_enum, default_value_t = IdsArg::Keyed)]
    ids: IdsArg,
    /// With --ids shuffled: the storage-id-to-number table is written only encrypted,
    /// for this RSA public key (OpenSSH ssh-rsa or PEM).
    #[arg(long)]
    id_map_key: Option<PathBuf>,
    /// Free-text lab results (TX, FT, ST, text in numeric results) and local code
    /// systems' wording: remove (left out, counted) or deidentify (through pixl-text with
    /// the patient's own names, address, phone numbers and ids as probes; Japanese runs
    /// masked whole; a value pixl-text's second check doubts is left out).
    #[arg(long, value_enum, default_value_t = FreeTextArg::Remove)]
    free_text: FreeTextArg,
}

#[derive(Subcommand)]
enum Ssmix2Command {
    /// Write a generated SS-MIX2 storage (tests, the benchmark, trying `extract`).
    Generate {
        out: PathBuf,
        #[arg(long, default_value_t = 100)]
        patients: usize,
        /// Add what real storages hold: deleted and superseded versions, a 13-digit order
        /// number, a file in the wrong folder, a PID mismatch, a junk file, hour 25.
        #[arg(long)]
        deviations: bool,
    },
    /// Extract visits, admissions, discharges, diagnoses, prescriptions, injections and lab
    /// results into de-identified tables (pseudonymous ids, converted timestamps, no names,
    /// addresses, phones or insurance numbers), optionally encrypted for a recipient.
    Extract(Box<Ssmix2ExtractArgs>),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Write a synthetic OMOP-ES extract (batched layout) of ROWS procedures to OUT.
    GenerateOmop {
        #[arg(long)]
        rows: u64,
        #[arg(long, default_value = "Bench Extract")]
        project_name: String,
        out: PathBuf,
    },
    /// Write STUDIES fake radiograph studies of INSTANCES images (SIZE×SIZE, 16-bit) to OUT,
    /// and OUT/cohort.csv naming them (project test-extract-uclh-omop-cdm).
    GenerateStudies {
        #[arg(long)]
        studies: u32,
        #[arg(long)]
        instances: u32,
        #[arg(long, default_value_t = 512)]
        size: u16,
        out: PathBuf,
    },
    /// Write COUNT synthetic CT slices (~0.5 MB each, PHI in standard and private tags) to OUT.
    GenerateCt {
        #[arg(long)]
        count: u32,
        out: PathBuf,
    },
    /// Reports per second through ehr-api (EHR query, de-identification, check, store)
    /// against the engine alone on the same texts, each on one core (docs/benchmarks.md).
    Ehr {
        #[arg(long, default_value_t = 10_000)]
        studies: usize,
        /// Where the texts, probes and logs go.
        #[arg(long, default_value = "target/bench-ehr")]
        work: PathBuf,
    },
    /// Write COUNT synthetic clinical notes with gold spans (JSON lines, the gold format of
    /// `pixl deid-text eval`) to OUT, and their patients' probes to --probes-out.
    GenerateNotes {
        #[arg(long, default_value_t = 2000)]
        count: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Also write the patients' known PHI here (the --probes file of deid-text).
        #[arg(long)]
        probes_out: Option<PathBuf>,
        /// Only notes in ALL CAPS (`upper`) or only mixed case (`mixed`); default both.
        #[arg(long)]
        case: Option<String>,
        out: PathBuf,
    },
}

fn parse_imaging_queue(value: &str) -> Result<WorkQueue, String> {
    // PIXL's name of the primary queue.
    if value == "imaging" {
        return Ok(WorkQueue::ImagingPrimary);
    }
    match WorkQueue::from_base_name(value) {
        Some(queue @ (WorkQueue::ImagingPrimary | WorkQueue::ImagingSecondary)) => Ok(queue),
        _ => Err("expected imaging-primary or imaging-secondary".to_owned()),
    }
}

fn all_if_empty(queues: Vec<WorkQueue>) -> Vec<WorkQueue> {
    if queues.is_empty() { vec![WorkQueue::ImagingPrimary, WorkQueue::ImagingSecondary] } else { queues }
}

/// `IMAGING_API_RATE`, or 5 studies per second.
fn default_rate() -> f64 {
    pixl_core::pixl_env::process_lookup("IMAGING_API_RATE").and_then(|v| v.trim().parse().ok()).unwrap_or(5.0)
}

#[allow(clippy::too_many_arguments)]
fn deid_text(
    eval: Option<DeidTextCommand>,
    input: Option<PathBuf>,
    output: Option<PathBuf>,
    output_form: pixl_cli::deid_text::OutputForm,
    list_failed: bool,
    probes: Option<PathBuf>,
    column: String,
    id_column: Option<String>,
    patient_column: String,
    key_file: Option<PathBuf>,
    date_order: DateOrderArg,
    threads: Option<usize>,
) -> anyhow::Result<ExitCode> {
    // A panic's message can quote the text it was slicing: only where it happened is said.
    std::panic::set_hook(Box::new(|info| {
        let place = info.location().map_or_else(String::new, |l| format!(" at {}:{}", l.file(), l.line()));
        eprintln!("internal error{place} (the message is not shown: it may quote a note)");
    }));
    if let Some(DeidTextCommand::Eval { gold, predicted, probes, errors }) = eval {
        let evaluation = pixl_cli::deid_text_eval::evaluate(&gold, predicted.as_deref(), probes.as_deref(), errors.as_deref())?;
        print!("{evaluation}");
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(input), Some(output)) = (input, output) else {
        anyhow::bail!("usage: pixl deid-text IN OUT [options], or pixl deid-text eval --gold FILE");
    };
    let key = match key_file {
        Some(path) => Some(std::fs::read(&path).with_context(|| format!("cannot read the key file {}", path.display()))?),
        None => None,
    };
    let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let options = pixl_cli::deid_text::Options {
        output: output_form,
        threads,
        column,
        id_column,
        patient_column,
        probes,
        key,
        date_order: match date_order {
            DateOrderArg::DayFirst => pixl_text::surrogate::DateOrder::DayFirst,
            DateOrderArg::MonthFirst => pixl_text::surrogate::DateOrder::MonthFirst,
        },
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        list_failed,
    };
    let summary = pixl_cli::deid_text::run(&input, &output, options)?;
    print!("{summary}");
    Ok(if summary.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    load_dotenv()?;
    let filter = if cli.debug { pixl_core::telemetry::DEBUG_FILTER } else { "warn,sqlx=error" };
    pixl_core::telemetry::init(pixl_core::telemetry::LogFormat::from_env()?, filter);
    // Free text needs no services: no settings, no runtime.
    let cli = match cli.command {
        Command::DeidText { eval, input, output, output_form, list_failed, probes, column, id_column, patient_column, key_file, date_order, threads } => {
            return deid_text(eval, input, output, output_form, list_failed, probes, column, id_column, patient_column, key_file, date_order, threads);
        }
        Command::Bench(BenchCommand::GenerateNotes { count, seed, probes_out, case, out }) => {
            let case = match case.as_deref() {
                None => pixl_text::synth::Case::Both,
                Some("upper") => pixl_text::synth::Case::Upper,
                Some("mixed") => pixl_text::synth::Case::Mixed,
                Some(_) => anyhow::bail!("--case is upper or mixed"),
            };
            pixl_cli::bench::generate_notes(&out, probes_out.as_deref(), count, seed, case)
                .with_context(|| format!("cannot write the notes to {}", out.display()))?;
            println!("wrote {count} notes to {}", out.display());
            return Ok(ExitCode::SUCCESS);
        }
        command => Cli { debug: cli.debug, command },
    };
    let settings = Settings::for_cli_from_lookup(|name| std::env::var(name).ok())?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    match cli.command {
        Command::Populate { path, queues, priority, rate, no_start, num_retries } => {
            let [queue] = queues[..] else {
                anyhow::bail!(
                    "--queues takes one queue here: each study is queued once, and imaging-api looks in the PACS (imaging-secondary) by itself when the VNA lacks it"
                );
            };
            let options = pixl_cli::populate::PopulateOptions { path, queue, priority, show_progress: true };
            let summary = runtime.block_on(pixl_cli::populate::populate(&settings, &options))?;
            println!("{summary}");
            if !no_start {
                let rate = rate.unwrap_or_else(default_rate);
                match runtime.block_on(pixl_cli::control::set_rate(&pixl_cli::control::imaging_api_url(), &[queue], rate)) {
                    Ok(()) => println!("started {} at {rate} studies/s", queue.base_name()),
                    Err(error) => {
                        eprintln!("warning: the studies are queued but retrieval was not started: {error:#}\nrun `pixl start` once imaging-api is up")
                    }
                }
            }
            if num_retries > 0 {
                let projects: Vec<_> = summary.projects.iter().map(|p| p.project.clone()).collect();
                let pause = std::time::Duration::from_secs_f64(
                    pixl_core::config::Env::new(pixl_core::pixl_env::process_lookup).seconds("CLI_RETRY_SECONDS", 300.0, 86_400.0)?.as_secs_f64(),
                );
                let rounds = pixl_cli::control::RetryRounds { rounds: num_retries, pause, poll: std::time::Duration::from_secs(10) };
                runtime.block_on(pixl_cli::control::retry_rounds(&settings, &projects, &rounds, |line| println!("{line}")))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Start { queues, rate } => {
            let rate = rate.unwrap_or_else(default_rate);
            if !rate.is_finite() || rate <= 0.0 {
                anyhow::bail!("cannot start with a rate of {rate}: it must be more than 0 studies per second (`pixl stop` pauses)");
            }
            runtime.block_on(pixl_cli::control::set_rate(&pixl_cli::control::imaging_api_url(), &queues, rate))?;
            println!("{} at {rate} studies/s", queues.iter().map(|q| q.base_name()).collect::<Vec<_>>().join(", "));
            Ok(ExitCode::SUCCESS)
        }
        Command::Update { queues, rate } => {
            if !rate.is_finite() || rate < 0.0 {
                anyhow::bail!("--rate must be 0 or more studies per second");
            }
            let queues = all_if_empty(queues);
            runtime.block_on(pixl_cli::control::set_rate(&pixl_cli::control::imaging_api_url(), &queues, rate))?;
            println!("{} at {rate} studies/s", queues.iter().map(|q| q.base_name()).collect::<Vec<_>>().join(", "));
            Ok(ExitCode::SUCCESS)
        }
        Command::Stop { queues, purge } => {
            let queues = all_if_empty(queues);
            runtime.block_on(pixl_cli::control::set_rate(&pixl_cli::control::imaging_api_url(), &queues, 0.0))?;
            println!("paused {}", queues.iter().map(|q| q.base_name()).collect::<Vec<_>>().join(", "));
            if purge {
                let purged = runtime.block_on(pixl_cli::control::purge(&settings, &queues))?;
                println!("purged {purged} messages; their studies are marked failed (pixl retry-failed queues them again)");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { dir, extract, timeout } => {
            let options = pixl_cli::demo::DemoOptions { dir, extract, timeout: std::time::Duration::from_secs(timeout) };
            let report = runtime.block_on(pixl_cli::demo::run(&settings, &options))?;
            println!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { queues } => {
            print!("{}", runtime.block_on(pixl_cli::control::status(&settings, &pixl_cli::control::anon_node_url()))?);
            if !queues.is_empty() {
                print!("{}", runtime.block_on(pixl_cli::control::rates(&pixl_cli::control::imaging_api_url(), &queues)));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Kill => run_compose(&settings, &["stop".to_owned()]),
        Command::ImportPixlDb { url, schema } => {
            let summary = runtime.block_on(pixl_cli::import_pixl_db::import_pixl_db(&settings, &url, schema.as_deref()))?;
            print!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        Command::RetryFailed { project } => {
            let queued = runtime.block_on(pixl_cli::control::retry_failed(&settings, project.as_deref()))?;
            println!("queued {queued} failed studies again");
            Ok(ExitCode::SUCCESS)
        }
        Command::ExportPatientData { parquet_dir, timeout, skip_flagged } => {
            let url = pixl_cli::export::export_api_url();
            let exported =
                runtime.block_on(pixl_cli::export::export_patient_data(&url, &parquet_dir, std::time::Duration::from_secs(timeout), skip_flagged))?;
            print!("{}", pixl_cli::export::render(&exported));
            Ok(ExitCode::SUCCESS)
        }
        Command::Reports(command) => {
            let out = match command {
                ReportsCommand::List { project } => runtime.block_on(pixl_cli::reports::list(&settings, project.as_deref()))?,
                ReportsCommand::Show { id } => runtime.block_on(pixl_cli::reports::show(&settings, id))?,
                ReportsCommand::Release { id, reason } => runtime.block_on(pixl_cli::reports::release(&settings, id, &reason))?,
                ReportsCommand::Redact { id } => runtime.block_on(pixl_cli::reports::redact(&settings, id))?,
            };
            print!("{out}");
            Ok(ExitCode::SUCCESS)
        }
        Command::ReleaseReport { parquet_dir } => {
            let [json, html] = runtime.block_on(pixl_cli::reports::release_report(&pixl_cli::export::export_api_url(), &parquet_dir))?;
            println!("release report written: {}\n                       {}", json.display(), html.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Anonymise { project, input, output } => {
            let project = pixl_core::ids::ProjectSlug::parse(&project).context("--project")?;
            let keys = pixl_secrets::pseudonym_keys::KeySettings::from_env()?.open()?;
            let summary = runtime.block_on(pixl_cli::anonymise::anonymise(&settings.project_configs_dir, &keys, &project, &input, &output))?;
            print!("{summary}");
            Ok(if summary.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Fhir(FhirCommand::Convert { input, out, extract, project, no_deid: _, views }) => {
            let (project, out) = match (extract, out) {
                (Some(extract), _) => {
                    let (slug, dir) = pixl_cli::fhir::extract_output(&settings.host_export_root_dir, &extract, project.as_deref(), pixl_cli::fhir::FHIR_DIR)?;
                    (Some(slug), dir)
                }
                (None, Some(out)) => (project, out),
                (None, None) => anyhow::bail!("--out or --extract says where the tables go"),
            };
            let summary = runtime.block_on(pixl_cli::fhir::run_convert(&settings.project_configs_dir, project.as_deref(), &input, &out, views.as_deref()))?;
            pixl_cli::fhir::print_summary(&summary);
            Ok(if summary.bad_line_count == 0 && summary.type_mismatches == 0 && summary.ignored_files.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Fhir(FhirCommand::Example { resource_type, dir, id }) => {
            pixl_cli::fhir::example(&dir, &resource_type, id.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Fhir(FhirCommand::Export(args)) => {
            let FhirExportArgs {
                base,
                out,
                client_id,
                key_secret,
                key_file,
                kid,
                scope,
                group,
                patients,
                types,
                since,
                until,
                type_filters,
                elements,
                patient_refs,
                include_associated_data,
                organize_output_by,
                allow_partial_manifests,
                post,
                lenient,
                parallel,
                keep_job,
                status,
            } = *args;
            let base = url::Url::parse(&base).context("--base is not a URL")?;
            let mut options = pixl_fhir_bulk::ExportOptions::new(base);
            options.level = match (group, patients) {
                (Some(id), _) => pixl_fhir_bulk::Level::Group(id),
                (None, true) => pixl_fhir_bulk::Level::Patient,
                (None, false) => pixl_fhir_bulk::Level::System,
            };
            options.params = pixl_fhir_bulk::ExportParams {
                output_format: None,
                since,
                until,
                types,
                type_filters,
                elements,
                patients: patient_refs,
                include_associated_data,
                organize_output_by,
                allow_partial_manifests,
            };
            (options.post, options.lenient, options.parallel, options.keep_job) = (post, lenient, parallel.max(1), keep_job);
            options.status_url = status.map(|s| url::Url::parse(&s).context("--status is not a URL")).transpose()?;
            let key = match key_file {
                Some(path) => pixl_cli::fhir_export::KeySource::File(path),
                None => pixl_cli::fhir_export::KeySource::Secret(key_secret.clone()),
            };
            let kid = match (&kid, &key, &client_id) {
                (None, pixl_cli::fhir_export::KeySource::Secret(name), Some(_)) => runtime.block_on(pixl_cli::fhir_export::stored_kid(name))?,
                _ => kid,
            };
            let auth = pixl_cli::fhir_export::AuthArgs { client_id, key, kid, scope };
            let extra_ca = pixl_core::pixl_env::process_lookup("PIXL_EXTRA_CA_FILE").map(PathBuf::from);
            let summary = runtime.block_on(pixl_cli::fhir_export::run(options, &auth, extra_ca.as_deref(), &out))?;
            pixl_cli::fhir_export::print_summary(&summary, &out);
            Ok(ExitCode::SUCCESS)
        }
        Command::Fhir(FhirCommand::Keygen { alg, kid, key_secret }) => {
            let alg = pixl_fhir_bulk::Alg::parse(&alg).context("--alg is RS384 or ES384")?;
            let jwks = runtime.block_on(pixl_cli::fhir_export::keygen(alg, &kid, &key_secret))?;
            eprintln!("created {} key {kid:?} in secret {key_secret:?}; register this public key set with the FHIR server:", alg.name());
            println!("{}", serde_json::to_string_pretty(&jwks)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Ssmix2(Ssmix2Command::Extract(args)) => {
            let Ssmix2ExtractArgs {
                root,
                out,
                project,
                identity_tag,
                recipient_key,
                format,
                timestamps,
                dob,
                period_start,
                period_end,
                min_encounters,
                log_dir,
                max_workers,
                ids,
                id_map_key,
                extract,
                free_text,
            } = *args;
            use pixl_ssmix2::extract::{BirthDates, Format, Options, TimeMode};
            let format = match format {
                FormatArg::Parquet => Format::Parquet,
                FormatArg::Csv => Format::Csv,
            };
            let time_mode = match timestamps {
                TimestampsArg::SinceBirth => TimeMode::SinceBirth,
                TimestampsArg::Shift => TimeMode::Shift,
            };
            let birth_dates = match dob {
                DobArg::None => BirthDates::None,
                DobArg::Full => BirthDates::Full,
                DobArg::Year => BirthDates::Year,
            };
            if extract.is_some() {
                pixl_cli::ssmix2::check_export_tree_options(format, recipient_key.is_some(), ids == IdsArg::Shuffled, birth_dates)?;
            }
            if identity_tag.is_empty() || !identity_tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                anyhow::bail!("--identity-tag is letters, digits, '-' and '_' (it becomes part of file names and ids)");
            }
            let recipient = recipient_key.as_deref().map(pixl_cli::ssmix2::read_recipient_key).transpose()?;
            let max_workers = max_workers.unwrap_or_else(pixl_ssmix2::extract::default_workers).max(1);
            let shuffled_ids_map_key = match (ids, &id_map_key) {
                (IdsArg::Keyed, None) => None,
                (IdsArg::Keyed, Some(_)) => anyhow::bail!("--id-map-key is for --ids shuffled"),
                (IdsArg::Shuffled, Some(path)) => Some(pixl_cli::ssmix2::read_recipient_key(path)?),
                (IdsArg::Shuffled, None) => anyhow::bail!("--ids shuffled needs --id-map-key: the table of storage ids and numbers is written only encrypted"),
            };
            let free_text = match free_text {
                FreeTextArg::Remove => pixl_ssmix2::read::FreeText::Remove,
                FreeTextArg::Deidentify => pixl_ssmix2::read::FreeText::Deidentify,
            };
            let (project, out) = match (extract, out) {
                (Some(extract), _) => {
                    pixl_cli::fhir::extract_output(&settings.host_export_root_dir, &extract, project.as_deref(), pixl_cli::ssmix2::SSMIX2_DIR)?
                }
                (None, Some(out)) => (project.expect("clap requires --project without --extract"), out),
                (None, None) => anyhow::bail!("--out or --extract says where the tables go"),
            };
            let options = Options {
                identity_tag,
                time_mode,
                birth_dates,
                period_start,
                period_end,
                min_encounters,
                format,
                recipient,
                shuffled_ids_map_key,
                max_workers,
                free_text,
            };
            let report = runtime.block_on(pixl_cli::ssmix2::run_extract(&settings.project_configs_dir, &project, &root, &out, options))?;
            if let Some(dir) = log_dir {
                std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
                let file = dir.join(format!("analytics_{}.json", report.identity_tag));
                std::fs::copy(out.join(file.file_name().expect("a file name")), &file).with_context(|| format!("cannot write {}", file.display()))?;
            }
            pixl_cli::ssmix2::print_report(&report, &out);
            Ok(ExitCode::SUCCESS)
        }
        Command::Ssmix2(Ssmix2Command::Generate { out, patients, deviations }) => {
            let written = pixl_ssmix2::synth::write(&out, patients, deviations).with_context(|| format!("cannot write to {}", out.display()))?;
            println!("wrote {} files ({:.1} MB) of {patients} patients to {}", written.files, written.bytes as f64 / 1e6, out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Decrypt { files, key, out } => {
            pixl_cli::ssmix2::decrypt(&files, &key, out.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Fhir(FhirCommand::Generate { out, patients, seed }) => {
            let written = pixl_fhir::synth::write(&out, patients, seed).with_context(|| format!("cannot write to {}", out.display()))?;
            println!("wrote {} resources ({:.1} MB) of {patients} patients to {}", written.resources, written.bytes as f64 / 1e6, out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckEnv { project_configs, sample_env_file, error } => {
            let mut checks = Vec::new();
            if project_configs.is_none() && sample_env_file.is_none() {
                checks.extend(runtime.block_on(pixl_cli::check_env::run(&settings)));
            }
            if let Some(dir) = &project_configs {
                checks.extend(pixl_cli::check_env::project_configs(dir));
            }
            if let Some(sample) = &sample_env_file {
                checks.extend(pixl_cli::check_env::sample_env(sample, error));
            }
            checks.extend(pixl_cli::check_env::pixl_variables());
            print!("{}", pixl_cli::check_env::render(&checks));
            let all_ok = checks.iter().all(|c| c.outcome.is_ok());
            Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Secrets(SecretsCommand::Init) => {
            let config = pixl_secrets::SecretsConfig::from_env_prefix("HASHER_API")?;
            let key_name = pixl_core::pixl_env::process_lookup("AZURE_KEY_VAULT_SECRET_NAME");
            let key_name = key_name.as_deref().unwrap_or("hashing-key");
            match runtime.block_on(pixl_cli::secrets::init(&config, key_name))? {
                pixl_cli::secrets::InitOutcome::Created(path) => println!("created hashing key {key_name:?} in {}", path.display()),
                pixl_cli::secrets::InitOutcome::AlreadyThere(path) => {
                    println!("{} already holds hashing key {key_name:?}; left unchanged", path.display())
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::DeidText { .. } | Command::Bench(BenchCommand::GenerateNotes { .. }) => unreachable!("handled before the settings are read"),
        Command::Bench(BenchCommand::Ehr { studies, work }) => {
            let result = runtime.block_on(pixl_cli::bench_ehr::run(&settings, studies, &work, &pixl_cli::bench_ehr::bin_dir()?))?;
            print!("{result}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::GenerateOmop { rows, project_name, out }) => {
            pixl_cli::bench::generate_omop(&out, rows, &project_name).with_context(|| format!("cannot write the extract to {}", out.display()))?;
            println!("wrote {rows} procedures to {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::GenerateStudies { studies, instances, size, out }) => {
            let specs = pixl_cli::demo_data::radiograph_studies(studies, instances, size);
            let mut csv = String::from("procedure_id,mrn,accession_number,project_name,extract_generated_timestamp,study_date,study_uid,participant_id\n");
            for (i, spec) in specs.iter().enumerate() {
                pixl_cli::demo_data::write_study(&out.join("dicom"), spec).with_context(|| format!("cannot write to {}", out.display()))?;
                csv.push_str(&format!(
                    "{i},{},{},test-extract-uclh-omop-cdm,2024-01-01T00:00:00Z,2023-01-01,{},\n",
                    spec.patient_id, spec.accession_number, spec.study_uid
                ));
            }
            std::fs::write(out.join("cohort.csv"), csv)?;
            let uids: String = specs.iter().map(|s| format!("{}\n", s.study_uid)).collect();
            std::fs::write(out.join("study-uids.txt"), uids)?;
            println!("wrote {studies} studies of {instances} instances to {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::GenerateCt { count, out }) => {
            pixl_cli::bench::generate_ct(&out, count).with_context(|| format!("cannot write the slices to {}", out.display()))?;
            println!("wrote {count} CT slices to {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Dc { args } => {
            let args = pixl_cli::dc::with_pixl_habits(&args, &settings.env_name, || {
                eprintln!("WARNING: Attempting to remove volumes in production.");
                eprint!("Are you sure you want to remove the volumes? [y/N] ");
                let mut answer = String::new();
                let _ = std::io::stdin().read_line(&mut answer);
                let yes = matches!(answer.trim(), "y" | "Y" | "yes" | "Yes");
                if !yes {
                    eprintln!("Running 'docker compose down' without removing volumes.");
                }
                yes
            });
            run_compose(&settings, &args)
        }
    }
}

/// `docker compose` with pixl's project, from anywhere in the checkout, with PIXL's
/// variable names passed under pixl's.
fn run_compose(settings: &Settings, args: &[String]) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir()?;
    let root = pixl_cli::dc::find_root(&cwd, std::env::var_os("PIXL_ROOT").filter(|v| !v.is_empty()).map(PathBuf::from))
        .context("no docker-compose.yml here or above, and PIXL_ROOT does not point at one")?;
    let status = std::process::Command::new("docker")
        .args(pixl_cli::dc::compose_args(&root, &settings.env_name, args))
        .envs(pixl_core::pixl_env::compose_aliases(|name| std::env::var(name).ok()))
        .status()
        .context("cannot run docker")?;
    Ok(ExitCode::from(u8::try_from(status.code().unwrap_or(1)).unwrap_or(1)))
}
