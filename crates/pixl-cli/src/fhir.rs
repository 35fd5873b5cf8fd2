//! `pixl fhir ...`: FHIR NDJSON (a Bulk Data download, or local files such as Synthea's)
//! to one parquet table per SQL-on-FHIR view, de-identified with a project's keys and
//! FHIR policy; and `pixl fhir example`, the workshop's helper that prints one resource.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use pixl_core::hashing::ProjectKeys;
use pixl_core::ids::ProjectSlug;
use pixl_fhir::convert::{ConvertSummary, convert};
use pixl_fhir::deid::{Deidentifier, FhirPolicy, Keys};
use pixl_fhir::view::View;

/// The project's keys as the FHIR de-identification uses them: the same keyed hash and
/// date shift as the DICOM side (a patient linked by MRN gets the imaging pseudonym and
/// offset).
pub(crate) struct ProjectFhirKeys(pub(crate) ProjectKeys);

impl Keys for ProjectFhirKeys {
    fn pseudonym(&self, input: &str) -> String {
        self.0.hash(input, 64).expect("a non-empty input and a valid length")
    }

    fn dicom_uid(&self, uid: &str) -> Option<String> {
        // As anon-node replaces a UID: the same study or series UID on both sides.
        let hash = self.0.hash(&pixl_dicom::deid::uid_input(uid), 64).ok()?;
        pixl_dicom::deid::uid_from_hash(&hash)
    }

    fn offset_days(&self, patient_key: &str) -> i64 {
        let hash = self.0.hash(&pixl_dicom::deid::date_shift_input(patient_key), 64).expect("a non-empty input and a valid length");
        pixl_dicom::deid::date_offset_days(&hash).expect("a hex hash")
    }
}

/// The FHIR policy file of a project: `<slug>.fhir.yaml` beside its config.
pub fn policy_path(configs_dir: &Path, project: &ProjectSlug) -> PathBuf {
    configs_dir.join(format!("{}.fhir.yaml", project.as_str()))
}

/// `--extract OMOP_DIR`: the extract's project (which `--project`, if given, must name
/// too) and its folder `folder` (`fhir`, `ssmix2`) in the export tree.
pub fn extract_output(export_root: &Path, extract: &Path, project: Option<&str>, folder: &str) -> anyhow::Result<(String, PathBuf)> {
    let (slug, extract_datetime) = crate::cohort::omop::read_summary(extract)?;
    if let Some(project) = project
        && project != slug.as_str()
    {
        anyhow::bail!("--project {project} is not the extract's project ({}, in its extract_summary.json)", slug.as_str());
    }
    let dir = pixl_core::export_tree::extract_dir(export_root, &slug, extract_datetime).join(folder);
    Ok((slug.as_str().to_owned(), dir))
}

/// The FHIR tables' folder in an extract's export tree.
pub const FHIR_DIR: &str = "fhir";

/// The views: from `--views DIR` or the shipped defaults.
pub fn views(dir: Option<&Path>) -> anyhow::Result<Vec<View>> {
    Ok(match dir {
        Some(dir) => pixl_fhir::views::load_views(dir)?,
        None => pixl_fhir::views::default_views(),
    })
}

/// `pixl fhir convert`: with a project, de-identified; without, only when the user says
/// `--no-deid` (for data that is already de-identified or synthetic).
pub async fn run_convert(configs_dir: &Path, project: Option<&str>, input: &Path, output: &Path, views_dir: Option<&Path>) -> anyhow::Result<ConvertSummary> {
    if let Some(state) = pixl_fhir_bulk::export::State::load(input)?
        && !state.complete
    {
        anyhow::bail!("the Bulk Data export in {} has not finished: resume it with `pixl fhir export --status ...` first", input.display());
    }
    let views = views(views_dir)?;
    let Some(project) = project else {
        let (input, output) = (input.to_owned(), output.to_owned());
        return tokio::task::spawn_blocking(move || convert(&input, &views, &output, None)).await?.map_err(Into::into);
    };
    let slug = ProjectSlug::parse(project).context("--project")?;
    let loaded = pixl_core::project_config::load_project(configs_dir, &slug)?;
    let policy_file = policy_path(configs_dir, &slug);
    let policy = if policy_file.is_file() { FhirPolicy::load(&policy_file)? } else { FhirPolicy::default() };
    let keys = pixl_secrets::pseudonym_keys::KeySettings::from_env()?.open()?;
    let project_keys = ProjectFhirKeys(keys.project_keys(&loaded).await?);
    let (input, output) = (input.to_owned(), output.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut deid = Deidentifier::new(policy, &project_keys);
        convert(&input, &views, &output, Some(&mut deid))
    })
    .await?
    .map_err(Into::into)
}

/// Prints what a conversion did (no values of the data).
pub fn print_summary(summary: &ConvertSummary) {
    println!("read {} files, {} resources ({:.1} MB)", summary.files, summary.resources, summary.bytes as f64 / 1e6);
    for (view, (rows, path)) in &summary.tables {
        println!("  {view:<24} {rows:>10} rows  {}", path.display());
    }
    for (ty, files) in &summary.unread_files {
        println!("  not read (no view of {ty}): {files} file(s)");
    }
    if let Some(deid) = &summary.deid {
        println!(
            "de-identified: {} resources, {} ids and references pseudonymised, {} dates shifted, {} free-text fields",
            deid.resources, deid.ids_pseudonymised, deid.dates_shifted, deid.free_text_fields
        );
        let removed: Vec<String> = deid.removed.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("  removed: {}", if removed.is_empty() { "nothing".into() } else { removed.join(", ") });
        let spans: Vec<String> = deid.spans_removed.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("  free-text spans removed: {}", if spans.is_empty() { "none".into() } else { spans.join(", ") });
    } else {
        println!("not de-identified (--no-deid)");
    }
    for other in &summary.ignored_files {
        println!("not read (not .ndjson or .jsonl; decompress .gz files first): {}", other.display());
    }
    if summary.type_mismatches > 0 {
        println!("{} values did not fit their column's declared type and were written as null", summary.type_mismatches);
    }
    if summary.bad_line_count > 0 {
        println!("{} lines were not resources and were skipped:", summary.bad_line_count);
        for bad in &summary.bad_lines {
            println!("  {bad}");
        }
    }
}

/// `pixl fhir example TYPE [--id ID] DIR`: one downloaded resource, pretty-printed. The
/// resource is not de-identified, so it is printed to a terminal only.
pub fn example(dir: &Path, resource_type: &str, id: Option<&str>) -> anyhow::Result<()> {
    if !std::io::stdout().is_terminal() {
        anyhow::bail!("pixl fhir example prints a resource as downloaded (it may hold PHI): it writes to a terminal only, not to a file or a pipe");
    }
    for file in pixl_fhir::convert::ndjson_files(dir)? {
        if pixl_fhir::ndjson::file_type(&file)?.as_deref() != Some(resource_type) {
            continue;
        }
        let mut reader = pixl_fhir::ndjson::NdjsonReader::open(&file, pixl_fhir::ndjson::MAX_LINE_BYTES)?;
        while let Some(next) = reader.next_resource() {
            let Ok(resource) = next? else { continue };
            if id.is_none_or(|id| resource.get("id").and_then(|v| v.as_str()) == Some(id)) {
                eprintln!("warning: this resource is as downloaded and may hold PHI");
                println!("{}", serde_json::to_string_pretty(&resource)?);
                return Ok(());
            }
        }
    }
    match id {
        Some(id) => anyhow::bail!("no {resource_type} with id {id:?} in {}", dir.display()),
        None => anyhow::bail!("no {resource_type} in {}", dir.display()),
    }
}
