//! `pixl ssmix2 extract`: an SS-MIX2 standardized storage to de-identified tables with the
//! project's keys (the same keyed pseudonyms and per-patient date shift as the imaging and
//! FHIR sides), and `pixl decrypt`, the recipient's side of the encrypted output.

use std::path::{Path, PathBuf};

use anyhow::Context;
use pixl_core::ids::ProjectSlug;
use pixl_fhir::deid::Keys;
use pixl_ssmix2::crypto::DecryptionKey;
use pixl_ssmix2::extract::{BirthDates, Format, Ids, Options, Report, extract};

use crate::fhir::ProjectFhirKeys;

impl Ids for ProjectFhirKeys {
    fn pseudonym(&self, pid: &str) -> String {
        Keys::pseudonym(self, pid)
    }

    fn offset_days(&self, pid: &str) -> i64 {
        Keys::offset_days(self, pid)
    }
}

/// An RSA public key file (OpenSSH `ssh-rsa` or PEM) to seal output for.
pub fn read_recipient_key(path: &Path) -> anyhow::Result<pixl_ssmix2::crypto::RecipientKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(pixl_ssmix2::crypto::RecipientKey::parse(&text)?)
}

/// The SS-MIX2 tables' folder in an extract's export tree.
pub const SSMIX2_DIR: &str = "ssmix2";

/// What may go into an extract's export tree: export-api checks every parquet file for
/// raw identifiers and uploads it, so the tables are parquet, not encrypted (the
/// destination is the channel), with the project's pseudonyms (which link them to the
/// extract's images and FHIR tables), and a date of birth at most as its year.
pub fn check_export_tree_options(format: Format, encrypted: bool, shuffled_ids: bool, birth_dates: BirthDates) -> anyhow::Result<()> {
    if format != Format::Parquet {
        anyhow::bail!("--extract writes parquet (export-api checks and uploads parquet files): leave out --format");
    }
    if encrypted {
        anyhow::bail!(
            "--extract and --recipient-key: the export tree is checked for identifiers and uploaded by export-api, so its tables are not encrypted; use --out for files sent to a recipient"
        );
    }
    if shuffled_ids {
        anyhow::bail!("--extract uses the project's pseudonyms (they link the tables to the extract's images and FHIR tables): leave out --ids shuffled");
    }
    if birth_dates == BirthDates::Full {
        anyhow::bail!("--extract and --dob full: a full date of birth does not go into the export tree; use --dob year");
    }
    Ok(())
}

/// Extracts `root` into `out` with the project's keys.
pub async fn run_extract(configs_dir: &Path, project: &str, root: &Path, out: &Path, options: Options) -> anyhow::Result<Report> {
    let slug = ProjectSlug::parse(project).context("--project")?;
    let loaded = pixl_core::project_config::load_project(configs_dir, &slug)?;
    let keys = pixl_secrets::pseudonym_keys::KeySettings::from_env()?.open()?;
    let ids = ProjectFhirKeys(keys.project_keys(&loaded).await?);
    let (root, out) = (root.to_owned(), out.to_owned());
    tokio::task::spawn_blocking(move || {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} patients").expect("a valid template"));
        let report = extract(&root, &out, &options, &ids, &|done, all| {
            bar.set_length(all as u64);
            bar.set_position(done as u64);
        });
        bar.finish_and_clear();
        report
    })
    .await?
    .map_err(Into::into)
}

/// Prints a run's counts.
pub fn print_report(report: &Report, out: &Path) {
    println!(
        "{} patients: {} included, {} without birth date or sex, {} outside the period, {} with fewer visits than asked",
        report.patients, report.patients_included, report.excluded_no_birth_date_or_sex, report.excluded_by_period, report.excluded_by_min_encounters
    );
    println!("{} messages parsed, {} decode errors, {} unparsable", report.messages_parsed, report.decode_errors, report.unparsable_messages);
    for (table, rows) in &report.rows {
        println!("  {table:<22} {rows:>10} rows");
    }
    let free_text = &report.free_text;
    if free_text.deidentified + free_text.withheld > 0 {
        let spans: Vec<String> = free_text.spans_masked.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!(
            "free text: {} values through pixl-text, spans masked: {}; {} left out because pixl-text's second check doubted them",
            free_text.deidentified,
            if spans.is_empty() { "none".to_owned() } else { spans.join(", ") },
            free_text.withheld
        );
    }
    if free_text.removed > 0 {
        println!("free text: {} values left out (--free-text deidentify keeps them through pixl-text)", free_text.removed);
    }
    if !report.deviations.is_empty() {
        let deviations: Vec<String> = report.deviations.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("deviations from the SS-MIX2 guideline: {}", deviations.join(", "));
    }
    println!("written to {} (counts in analytics_{}.json)", out.display(), report.identity_tag);
}

/// `pixl decrypt FILE... --key KEY [--out DIR]`: each `X.bin` becomes `X` (beside it, or in DIR).
pub fn decrypt(files: &[PathBuf], key: &Path, out: Option<&Path>) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(key).with_context(|| format!("cannot read the key {}", key.display()))?;
    let key = DecryptionKey::parse(&text)?;
    for file in files {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let Some(plain_name) = name.strip_suffix(".bin") else {
            anyhow::bail!("{}: not an encrypted output file (no .bin suffix)", file.display());
        };
        let sealed = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let plaintext = key.open(&sealed).with_context(|| file.display().to_string())?;
        let target = out.map(Path::to_owned).unwrap_or_else(|| file.parent().map(Path::to_owned).unwrap_or_default()).join(plain_name);
        if target.exists() {
            anyhow::bail!("{} exists: not replaced", target.display());
        }
        std::fs::write(&target, plaintext).with_context(|| format!("cannot write {}", target.display()))?;
        println!("{}", target.display());
    }
    Ok(())
}
