//! `pixl reports` (the review of reports the second check flagged, in the database) and
//! `pixl release-report` (the release report of an extract, written again by export-api).

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use pixl_core::config::Settings;
use pixl_core::review;

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

/// `pixl release-report PARQUET_DIR`: asks export-api (`EXPORT_API_URL`) to write the
/// release report of the extract (its `extract_summary.json` names project and time)
/// again, from the database, the project's files and a new identifier check of the
/// extract's parquet files. Returns the paths written (in export-api's export tree).
pub async fn release_report(base_url: &str, parquet_dir: &Path) -> anyhow::Result<[PathBuf; 2]> {
    let (project, extract_datetime) = crate::cohort::omop::read_summary(parquet_dir)?;
    let request = pixl_core::rest::ReleaseReportRequest {
        project_name: project.as_str().to_owned(),
        extract_datetime: extract_datetime.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    let client = pixl_core::http_client::builder(None)?.timeout(std::time::Duration::from_secs(600)).build()?;
    let url = format!("{}/release-report", base_url.trim_end_matches('/'));
    let response =
        client.post(&url).json(&request).send().await.map_err(|e| anyhow::anyhow!("export-api at {base_url} is not reachable ({e}); is it running?"))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        let reason = serde_json::from_str::<pixl_core::rest::ErrorBody>(&text).map(|body| body.error).unwrap_or(text);
        anyhow::bail!("export-api could not write the release report ({status}): {reason}");
    }
    let written: pixl_core::rest::ReleaseReportWritten = response.json().await?;
    Ok([PathBuf::from(written.json), PathBuf::from(written.html)])
}
