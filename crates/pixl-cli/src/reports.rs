//! `pixl reports` (the review of reports the second check flagged) and `pixl
//! release-report` (the release report of an extract, written again from the database).

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use pixl_core::config::Settings;
use pixl_ehr_api::review;

/// `pixl reports list`: the reports waiting for review, with their flags per reason.
pub async fn list(settings: &Settings, project: Option<&str>) -> anyhow::Result<String> {
    let pool = pixl_core::db::connect(&settings.database, 1).await?;
    let flagged = review::list(&pool, project).await?;
    pool.close().await;
    let mut out = String::new();
    if flagged.is_empty() {
        writeln!(out, "no report waits for review")?;
        return Ok(out);
    }
    let mut totals = std::collections::BTreeMap::<&str, i64>::new();
    writeln!(out, "{:>10}  {:<32} flags", "study", "project")?;
    for report in &flagged {
        let reasons: Vec<String> = report.reasons.iter().map(|(reason, n)| format!("{n} {reason}")).collect();
        writeln!(out, "{:>10}  {:<32} {}", report.study_id, report.project, reasons.join(", "))?;
        for (reason, n) in &report.reasons {
            *totals.entry(reason).or_default() += n;
        }
    }
    let totals: Vec<String> = totals.iter().map(|(reason, n)| format!("{n} {reason}")).collect();
    writeln!(out, "\n{} report(s) wait for review; flags: {}", flagged.len(), totals.join(", "))?;
    writeln!(out, "pixl reports show ID shows one; pixl reports release ID --reason TEXT or pixl reports redact ID decides")?;
    Ok(out)
}

/// `pixl reports show ID`: the flagged report with its flagged spans marked. It may hold
/// PHI: printed to a terminal only, after a warning.
pub async fn show(settings: &Settings, study_id: i64) -> anyhow::Result<String> {
    if !std::io::stdout().is_terminal() {
        anyhow::bail!("pixl reports show prints a report that may hold PHI: it writes to a terminal only, not to a file or a pipe");
    }
    let pool = pixl_core::db::connect(&settings.database, 1).await?;
    let (text, flags) = review::show(&pool, study_id).await?;
    pool.close().await;
    let (open, close) = ("\x1b[1;41m", "\x1b[0m");
    let mut out = String::new();
    writeln!(out, "WARNING: this report may contain PHI (the second check doubts the marked places). Do not copy it anywhere.\n")?;
    writeln!(out, "{}\n", review::marked(&text, &flags, open, close))?;
    for flag in &flags {
        writeln!(out, "  characters {}..{}: {}", flag.start, flag.end, flag.reason)?;
    }
    Ok(out)
}

/// `pixl reports release ID --reason TEXT`.
pub async fn release(settings: &Settings, study_id: i64, reason: &str) -> anyhow::Result<String> {
    let pool = pixl_core::db::connect(&settings.database, 1).await?;
    let cleared = review::release(&pool, study_id, reason, &review::operator()).await?;
    pool.close().await;
    Ok(format!("released the report of study {study_id} as it is ({cleared} flag(s) cleared; recorded with your name and the reason)\n"))
}

/// `pixl reports redact ID`.
pub async fn redact(settings: &Settings, study_id: i64) -> anyhow::Result<String> {
    let pool = pixl_core::db::connect(&settings.database, 1).await?;
    let cleared = review::redact(&pool, study_id, &review::operator()).await?;
    pool.close().await;
    Ok(format!("redacted {cleared} flagged span(s) of the report of study {study_id} (recorded with your name)\n"))
}

/// `pixl release-report PARQUET_DIR`: the release report of the extract (its
/// `extract_summary.json` names project and time), written again into the export tree
/// from the database, the project's files and a new identifier check of the extract's
/// parquet files. Returns the paths written.
pub async fn release_report(settings: &Settings, parquet_dir: &Path) -> anyhow::Result<[PathBuf; 2]> {
    use pixl_export_api::release_report;
    let (project, extract_datetime) = crate::cohort::omop::read_summary(parquet_dir)?;
    let loaded = pixl_core::project_config::load_project(&settings.project_configs_dir, &project)?;
    let pool = pixl_core::db::connect(&settings.database, 2).await?;
    let extract_id: Option<i64> = sqlx::query_scalar("SELECT id FROM extracts WHERE project_slug = $1 AND extract_datetime = $2")
        .bind(project.as_str())
        .bind(extract_datetime)
        .fetch_optional(&pool)
        .await?;
    let slug = pixl_core::export_tree::extract_time_slug(extract_datetime);
    let extract_id = extract_id.ok_or_else(|| anyhow::anyhow!("project {project} has no extract of {slug} in the database; populate it first"))?;
    let extract_dir = pixl_core::export_tree::extract_dir(&settings.host_export_root_dir, &project, extract_datetime);
    let files = if extract_dir.is_dir() { pixl_export_api::linker::parquet_files(&extract_dir)? } else { Vec::new() };
    let digests = pixl_export_api::parquet_check::IdentifierDigests::load(&pool, project.as_str()).await?;
    let blocked = files.iter().find_map(|relative| digests.scan(&extract_dir.join(relative), &relative.display().to_string()).err()).map(|e| e.to_string());
    let radiology = extract_dir.join("radiology").join(pixl_export_api::radiology::RADIOLOGY_FILE);
    let reports = if radiology.is_file() { parquet_rows(&radiology)? } else { 0 };
    let scan = release_report::ParquetScan { files: files.iter().map(|f| f.display().to_string()).collect(), identifiers_compared: digests.len(), blocked };
    let report = release_report::build(&pool, &loaded, extract_id, &slug, reports, scan).await?;
    pool.close().await;
    Ok(release_report::write(&extract_dir, &report)?)
}

fn parquet_rows(path: &Path) -> anyhow::Result<usize> {
    let file = std::fs::File::open(path)?;
    let reader = parquet::file::reader::SerializedFileReader::new(file).map_err(|_| anyhow::anyhow!("{}: not a readable parquet file", path.display()))?;
    use parquet::file::reader::FileReader;
    Ok(usize::try_from(reader.metadata().file_metadata().num_rows()).unwrap_or(0))
}
