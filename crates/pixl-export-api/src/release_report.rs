//! The release report of an extract: `release-report.json` and a one-page
//! `release-report.html` in the extract's directory of the export tree, uploaded beside
//! its parquet files. It is for the information-governance officer who signs the release
//! off: what software and which configuration (with SHA-256 digests) produced the data,
//! what was exported and what was dropped and why, what the free-text de-identification
//! removed and what a person decided about flagged reports, what the identifier checks
//! scanned and found, and what the tag scheme does to each DICOM attribute.
//!
//! It holds counts, file names, digests, reasons written by pixl or by reviewers, and
//! attribute names: never an identifier, a pseudonym or report text.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pixl_core::project_config::LoadedProject;
use pixl_dicom::scheme::{TagOp, TagScheme};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};

pub const JSON_FILE: &str = "release-report.json";
pub const HTML_FILE: &str = "release-report.html";

/// The git commit the binary was built from (`unknown` outside a checkout).
pub const GIT_HASH: &str = env!("PIXL_GIT_HASH");

#[derive(Debug, Clone, Serialize)]
pub struct ReleaseReport {
    pub format: &'static str,
    pub generated_at: String,
    pub project: String,
    pub extract: String,
    pub software: Software,
    /// The configuration the data was produced with.
    pub configuration: Vec<FileDigest>,
    pub studies: Studies,
    pub reports: Reports,
    pub leak_scan: LeakScan,
    pub dicom_attributes: Attributes,
}

#[derive(Debug, Clone, Serialize)]
pub struct Software {
    pub name: &'static str,
    pub version: &'static str,
    pub git_hash: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileDigest {
    /// `project config`, `tag operations`, `manufacturer overrides`, `deid recipe`.
    pub role: &'static str,
    pub file: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Studies {
    /// Studies the extract names.
    pub in_extract: i64,
    /// By state (`exported`, `failed`, ...).
    pub by_state: BTreeMap<String, i64>,
    /// Instances written by de-identification, of the exported studies.
    pub instances_exported: u64,
    /// Instances dropped, per filter reason.
    pub instances_dropped: BTreeMap<String, u64>,
    /// Failed studies per reason (written by pixl; no identifier).
    pub failures: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Reports {
    /// Rows of `radiology/radiology.parquet`.
    pub exported: usize,
    /// Withheld: flagged by the second check and not reviewed.
    pub flagged_withheld: i64,
    pub no_ehr_record: i64,
    pub pending: i64,
    pub failed: i64,
    /// Spans the de-identification removed, per PHI category, in the exported reports.
    pub spans_removed: BTreeMap<String, i64>,
    /// Flags raised by the second check, per reason (reviewed or not).
    pub flags_by_reason: BTreeMap<String, i64>,
    /// People's decisions: `release` (with their reasons) and `redact`.
    pub reviews: Vec<Review>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Review {
    pub action: String,
    pub reason: String,
    pub reports: i64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LeakScan {
    pub parquet: ParquetScan,
    pub dicom: DicomScan,
}

/// The identifier check on the parquet files: every string cell compared (whole, word by
/// word and by its digits) with the digests of the project's raw identifiers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ParquetScan {
    pub files: Vec<String>,
    pub identifiers_compared: usize,
    /// `None`: zero hits. Otherwise what blocked the export (file, column, row, kind).
    pub blocked: Option<String>,
}

/// The check on every de-identified study before upload (each instance marked
/// de-identified, belonging to the pseudonymous study).
#[derive(Debug, Clone, Default, Serialize)]
pub struct DicomScan {
    pub studies_passed: i64,
    pub studies_blocked: i64,
}

/// What the tag scheme does to DICOM attributes; any attribute not listed is removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Attributes {
    /// Operation → attributes, e.g. `keep` → `["(0008,0060) Modality", ...]`.
    pub base: BTreeMap<String, Vec<String>>,
    /// Per manufacturer pattern, the attributes whose operation differs.
    pub manufacturer_overrides: Vec<(String, BTreeMap<String, Vec<String>>)>,
    pub not_listed: &'static str,
}

fn sha256_file(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect(),
        Err(error) => format!("unreadable ({})", error.kind()),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

fn op_label(op: TagOp) -> &'static str {
    match op {
        TagOp::Keep => "keep",
        TagOp::Delete => "delete",
        TagOp::Replace => "replace",
        TagOp::ReplaceUid | TagOp::ReplaceUidOrEmpty => "replace UID (keyed)",
        TagOp::SecureHash | TagOp::SecureHashAnyVr => "hash (keyed)",
        TagOp::DateShift => "date shift",
        TagOp::Empty => "empty",
    }
}

fn attribute(tag: dicom_core::Tag) -> String {
    use dicom_core::dictionary::DataDictionary;
    let name = dicom_dictionary_std::StandardDataDictionary.by_tag(tag).map_or("", |entry| entry.alias);
    format!("({:04X},{:04X}) {name}", tag.group(), tag.element()).trim_end().to_owned()
}

fn attributes(project: &LoadedProject) -> Attributes {
    let read = |paths: &[PathBuf]| -> Vec<(String, String)> { paths.iter().map(|p| (file_name(p), std::fs::read_to_string(p).unwrap_or_default())).collect() };
    let mut out = Attributes { not_listed: "removed", ..Attributes::default() };
    let Ok(scheme) = TagScheme::from_yaml(&read(&project.base_tag_files), &read(&project.manufacturer_override_files)) else {
        return out;
    };
    let base = scheme.resolve(None);
    for (tag, op) in &base.ops {
        out.base.entry(op_label(*op).to_owned()).or_default().push(attribute(*tag));
    }
    for entry in scheme.overrides() {
        let mut ops: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for rule in &entry.rules {
            if base.ops.get(&rule.tag()) != Some(&rule.op) {
                ops.entry(op_label(rule.op).to_owned()).or_default().push(attribute(rule.tag()));
            }
        }
        out.manufacturer_overrides.push((entry.pattern.as_str().to_owned(), ops));
    }
    out
}

/// Reads the counts of `deid_summary` ("12 of 14 instances de-identified, 2 dropped
/// (series filter)"), which anon-node writes.
fn add_summary(summary: &str, studies: &mut Studies) {
    for part in summary.split(", ") {
        let mut words = part.splitn(2, ' ');
        let Some(Ok(count)) = words.next().map(str::parse::<u64>) else { continue };
        let rest = words.next().unwrap_or_default();
        if rest.starts_with("of ") && rest.ends_with("instances de-identified") {
            studies.instances_exported += count;
        } else if let Some(reason) = rest.strip_prefix("dropped (").and_then(|r| r.strip_suffix(')')) {
            *studies.instances_dropped.entry(reason.to_owned()).or_default() += count;
        }
    }
}

/// The studies the extract names.
const EXTRACT_STUDIES: &str = "SELECT DISTINCT id FROM (
         SELECT s.id FROM studies s WHERE s.extract_id = $1
         UNION ALL
         SELECT es.study_id FROM extract_studies es WHERE es.extract_id = $1
     ) named";

/// Everything the report says, from the database, the project's files and the scans.
pub async fn build(
    pool: &PgPool,
    project: &LoadedProject,
    extract_id: i64,
    extract_slug: &str,
    reports_exported: usize,
    parquet: ParquetScan,
) -> Result<ReleaseReport, sqlx::Error> {
    let mut configuration = vec![FileDigest { role: "project config", file: file_name(&project.path), sha256: sha256_file(&project.path) }];
    for (role, files) in [
        ("tag operations", &project.base_tag_files),
        ("manufacturer overrides", &project.manufacturer_override_files),
        ("deid recipe", &project.deid_recipe_files),
    ] {
        configuration.extend(files.iter().map(|p| FileDigest { role, file: file_name(p), sha256: sha256_file(p) }));
    }

    let mut studies = Studies::default();
    let mut reports = Reports { exported: reports_exported, ..Reports::default() };
    let mut dicom = DicomScan::default();
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT s.state::text AS state, s.ehr_state::text AS ehr_state, s.ehr_wanted, s.failure_reason, s.deid_summary, s.exported_to
         FROM ({EXTRACT_STUDIES}) x JOIN studies s ON s.id = x.id"
    )))
    .bind(extract_id)
    .fetch_all(pool)
    .await?;
    for row in &rows {
        studies.in_extract += 1;
        let state: String = row.try_get("state")?;
        *studies.by_state.entry(state.clone()).or_default() += 1;
        let failure: Option<String> = row.try_get("failure_reason")?;
        if state == "failed" {
            let reason = failure.clone().unwrap_or_default();
            if reason.starts_with("refusing to export the archive") {
                dicom.studies_blocked += 1;
            }
            *studies.failures.entry(reason).or_default() += 1;
        }
        if state == "exported" {
            if row.try_get::<Option<String>, _>("exported_to")?.as_deref() != Some("none") {
                dicom.studies_passed += 1;
            }
            if let Some(summary) = row.try_get::<Option<String>, _>("deid_summary")? {
                add_summary(&summary, &mut studies);
            }
        }
        match row.try_get::<Option<String>, _>("ehr_state")?.as_deref() {
            Some("flagged") => reports.flagged_withheld += 1,
            Some("no_record") => reports.no_ehr_record += 1,
            Some("failed") => reports.failed += 1,
            Some(_) => {}
            None if row.try_get::<bool, _>("ehr_wanted")? => reports.pending += 1,
            None => {}
        }
    }
    for row in sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT k AS category, sum(v::bigint)::bigint AS n FROM ({EXTRACT_STUDIES}) x
         JOIN studies s ON s.id = x.id AND s.ehr_state = 'done'
         JOIN ehr_anon a ON a.study_id = s.id, jsonb_each_text(a.report_spans) AS e (k, v)
         GROUP BY 1 ORDER BY 1"
    )))
    .bind(extract_id)
    .fetch_all(pool)
    .await?
    {
        reports.spans_removed.insert(row.try_get("category")?, row.try_get("n")?);
    }
    for row in sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT f.reason, count(*) AS n FROM ({EXTRACT_STUDIES}) x JOIN report_flags f ON f.study_id = x.id GROUP BY 1 ORDER BY 1"
    )))
    .bind(extract_id)
    .fetch_all(pool)
    .await?
    {
        reports.flags_by_reason.insert(row.try_get("reason")?, row.try_get("n")?);
    }
    for row in sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT r.action, r.reason, count(DISTINCT r.study_id) AS n FROM ({EXTRACT_STUDIES}) x JOIN report_reviews r ON r.study_id = x.id
         GROUP BY 1, 2 ORDER BY 1, 2"
    )))
    .bind(extract_id)
    .fetch_all(pool)
    .await?
    {
        reports.reviews.push(Review { action: row.try_get("action")?, reason: row.try_get("reason")?, reports: row.try_get("n")? });
    }

    Ok(ReleaseReport {
        format: "pixl-release-report/1",
        generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        project: project.slug.as_str().to_owned(),
        extract: extract_slug.to_owned(),
        software: Software { name: "pixl", version: env!("CARGO_PKG_VERSION"), git_hash: GIT_HASH },
        configuration,
        studies,
        reports,
        leak_scan: LeakScan { parquet, dicom },
        dicom_attributes: attributes(project),
    })
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn table<K: std::fmt::Display, V: std::fmt::Display>(rows: impl IntoIterator<Item = (K, V)>) -> String {
    let body: String = rows.into_iter().map(|(k, v)| format!("<tr><td>{}</td><td>{}</td></tr>", escape(&k.to_string()), escape(&v.to_string()))).collect();
    if body.is_empty() { "<p>none</p>".to_owned() } else { format!("<table>{body}</table>") }
}

/// The one-page HTML rendering.
pub fn html(report: &ReleaseReport) -> String {
    let scan = &report.leak_scan;
    let verdict = match &scan.parquet.blocked {
        None if report.reports.flagged_withheld == 0 => "<p class=ok>Identifier checks: zero hits. No report is withheld.</p>".to_owned(),
        None => format!("<p class=warn>Identifier checks: zero hits. {} flagged report(s) withheld, not exported.</p>", report.reports.flagged_withheld),
        Some(blocked) => format!("<p class=bad>BLOCKED: {}</p>", escape(blocked)),
    };
    let configuration = table(report.configuration.iter().map(|f| (format!("{}: {}", f.role, f.file), f.sha256.clone())));
    let reviews = table(report.reports.reviews.iter().map(|r| (format!("{} ({} report(s))", r.action, r.reports), r.reason.clone())));
    let attributes: String = report
        .dicom_attributes
        .base
        .iter()
        .map(|(op, tags)| format!("<details><summary>{} ({})</summary><p>{}</p></details>", escape(op), tags.len(), escape(&tags.join(", "))))
        .collect();
    let overrides: String = report
        .dicom_attributes
        .manufacturer_overrides
        .iter()
        .map(|(pattern, ops)| {
            let ops: Vec<String> = ops.iter().map(|(op, tags)| format!("{op}: {}", tags.join(", "))).collect();
            format!("<li>manufacturer /{}/: {}</li>", escape(pattern), escape(&ops.join("; ")))
        })
        .collect();
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Release report: {project} {extract}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:1em auto;font-size:14px}}table{{border-collapse:collapse;margin:.3em 0}}
td{{border:1px solid #ccc;padding:2px 6px;vertical-align:top}}h2{{font-size:1.1em;margin:.8em 0 .2em}}.ok{{color:#060}}.warn{{color:#a60}}.bad{{color:#b00;font-weight:bold}}</style></head><body>
<h1>Release report: {project}, extract {extract}</h1>
<p>Generated {generated} by pixl {version} (git {git}).</p>
{verdict}
<h2>Identifier checks</h2>{scans}
<h2>Studies</h2>{states}<p>Instances exported: {instances}. Dropped by filter:</p>{dropped}<p>Failures:</p>{failures}
<h2>Reports</h2>{report_counts}<p>Spans removed per category:</p>{spans}<p>Second-check flags per reason:</p>{flags}<p>Reviews:</p>{reviews}
<h2>Configuration</h2>{configuration}
<h2>DICOM attributes</h2><p>Any attribute not listed is {not_listed}.</p>{attributes}<ul>{overrides}</ul>
</body></html>
",
        project = escape(&report.project),
        extract = escape(&report.extract),
        generated = escape(&report.generated_at),
        version = report.software.version,
        git = escape(report.software.git_hash),
        scans = table([
            ("parquet files scanned".to_owned(), scan.parquet.files.join(", ")),
            ("raw identifiers compared".to_owned(), scan.parquet.identifiers_compared.to_string()),
            ("parquet result".to_owned(), scan.parquet.blocked.clone().unwrap_or_else(|| "zero hits".to_owned())),
            ("DICOM studies passed".to_owned(), scan.dicom.studies_passed.to_string()),
            ("DICOM studies blocked".to_owned(), scan.dicom.studies_blocked.to_string()),
        ]),
        states = table(std::iter::once(("in extract".to_owned(), report.studies.in_extract)).chain(report.studies.by_state.iter().map(|(k, v)| (k.clone(), *v)))),
        instances = report.studies.instances_exported,
        dropped = table(&report.studies.instances_dropped),
        failures = table(&report.studies.failures),
        report_counts = table([
            ("exported (radiology.parquet)", report.reports.exported as i64),
            ("flagged, withheld", report.reports.flagged_withheld),
            ("no EHR record", report.reports.no_ehr_record),
            ("pending", report.reports.pending),
            ("failed", report.reports.failed),
        ]),
        spans = table(&report.reports.spans_removed),
        flags = table(&report.reports.flags_by_reason),
        not_listed = report.dicom_attributes.not_listed,
    )
}

/// Writes both files into `dir` (each to a temporary file, then renamed).
pub fn write(dir: &Path, report: &ReleaseReport) -> std::io::Result<[PathBuf; 2]> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(report).expect("a release report serializes");
    let mut written = Vec::with_capacity(2);
    for (name, text) in [(JSON_FILE, json), (HTML_FILE, html(report))] {
        let partial = dir.join(format!(".{name}.partial"));
        std::fs::write(&partial, text)?;
        let path = dir.join(name);
        std::fs::rename(&partial, &path)?;
        written.push(path);
    }
    Ok([written[0].clone(), written[1].clone()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deid_summaries_are_counted() {
        let mut studies = Studies::default();
        add_summary("12 of 14 instances de-identified, 2 dropped (series filter)", &mut studies);
        add_summary("3 of 4 instances de-identified, 1 dropped (manufacturer not allowed), 1 dropped (series filter)", &mut studies);
        assert_eq!(studies.instances_exported, 15);
        assert_eq!(studies.instances_dropped.get("series filter"), Some(&3));
        assert_eq!(studies.instances_dropped.get("manufacturer not allowed"), Some(&1));
    }
}
