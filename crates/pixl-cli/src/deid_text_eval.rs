//! `pixl deid-text eval --gold FILE`: scores the engine (or another tool's spans, with
//! `--predicted`) against gold standoff annotations.
//!
//! Gold: JSON lines `{"id", "text", "spans": [{"start", "end", "category"}]}` with
//! character offsets (as Python and i2b2 count), or i2b2-2014 XML (one file, or a
//! directory of `.xml` files: `<TEXT><![CDATA[...]]></TEXT><TAGS><NAME start= end= TYPE=
//! .../>...</TAGS>`). Predicted: JSON lines `{"id", "spans": [...]}`, as `pixl deid-text
//! --output spans` writes them.
//!
//! The figures hold no text. False negatives and false positives, with context, go to a
//! local file only when asked (`--errors FILE`): it holds PHI.

use std::{
    collections::HashMap,
    fmt,
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context, bail};
use pixl_text::{
    Category, Probes, Span,
    eval::{Score, score},
};
use serde_json::{Value, json};

use crate::deid_text::{id_of, json_objects, read_probes};

/// One gold note: text and spans, in bytes.
pub struct GoldNote {
    pub id: String,
    pub patient: Option<String>,
    pub text: String,
    pub spans: Vec<Span>,
}

impl fmt::Debug for GoldNote {
    /// Never shows the text or the patient.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoldNote").field("id", &self.id).field("spans", &self.spans.len()).finish_non_exhaustive()
    }
}

/// Byte offset of each character offset (and of the end).
fn byte_offsets(text: &str) -> Vec<usize> {
    text.char_indices().map(|(at, _)| at).chain([text.len()]).collect()
}

fn to_bytes(offsets: &[usize], start: u64, end: u64, category: Category, place: &str) -> anyhow::Result<Span> {
    let chars = offsets.len() - 1;
    if start > end || end as usize > chars {
        bail!("{place}: span {start}..{end} is outside the text ({chars} characters)");
    }
    Ok(Span { start: offsets[start as usize], end: offsets[end as usize], category })
}

fn category_of(name: &str, place: &str) -> anyhow::Result<Category> {
    Category::parse(name).with_context(|| format!("{place}: unknown category (use NAME, DATE, AGE, ID, CONTACT, LOCATION, ORGANISATION, OTHER)"))
}

fn spans_of(object: &serde_json::Map<String, Value>, text: &str, place: &str) -> anyhow::Result<Vec<Span>> {
    let offsets = byte_offsets(text);
    let mut spans = Vec::new();
    for (i, span) in object.get("spans").and_then(Value::as_array).with_context(|| format!("{place}: no \"spans\" list"))?.iter().enumerate() {
        let place = format!("{place}: span {}", i + 1);
        let start = span.get("start").and_then(Value::as_u64).with_context(|| format!("{place}: no \"start\""))?;
        let end = span.get("end").and_then(Value::as_u64).with_context(|| format!("{place}: no \"end\""))?;
        let category = match span.get("category").and_then(Value::as_str) {
            Some(name) => category_of(name, &place)?,
            None => Category::Other,
        };
        spans.push(to_bytes(&offsets, start, end, category, &place)?);
    }
    Ok(spans)
}

/// Reads gold notes from JSON lines or i2b2 XML.
pub fn read_gold(path: &Path) -> anyhow::Result<Vec<GoldNote>> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot list {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("xml")))
            .collect();
        files.sort();
        if files.is_empty() {
            bail!("{}: no .xml files", path.display());
        }
        return files.iter().map(|f| read_i2b2(f)).collect();
    }
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("xml")) {
        return Ok(vec![read_i2b2(path)?]);
    }
    let mut notes = Vec::new();
    for (n, entry) in json_objects(path)?.enumerate() {
        let (place, object) = entry?;
        let text = object.get("text").and_then(Value::as_str).with_context(|| format!("{place}: no \"text\" string"))?.to_owned();
        let spans = spans_of(&object, &text, &place)?;
        let id = object.get("id").and_then(id_of).unwrap_or_else(|| (n + 1).to_string());
        notes.push(GoldNote { id, patient: object.get("patient_id").and_then(id_of), text, spans });
    }
    Ok(notes)
}

/// i2b2-2014 categories: the element name, refined by TYPE for organisations.
fn i2b2_category(element: &str, kind: &str) -> Category {
    match (element.to_ascii_uppercase().as_str(), kind.to_ascii_uppercase().as_str()) {
        ("NAME", _) => Category::Name,
        ("DATE", _) => Category::Date,
        ("AGE", _) => Category::Age,
        ("ID", _) => Category::Id,
        ("CONTACT", _) => Category::Contact,
        ("LOCATION", "HOSPITAL" | "ORGANIZATION" | "DEPARTMENT") => Category::Organisation,
        ("LOCATION", _) => Category::Location,
        _ => Category::Other,
    }
}

/// Reads one i2b2-2014 de-identification XML file.
pub fn read_i2b2(path: &Path) -> anyhow::Result<GoldNote> {
    use quick_xml::events::Event;
    let xml = std::fs::read_to_string(path).with_context(|| format!("cannot read {} (not UTF-8?)", path.display()))?;
    let mut reader = quick_xml::Reader::from_str(&xml);
    let mut text: Option<String> = None;
    let mut in_text = false;
    let mut in_tags = false;
    let mut tags: Vec<(String, u64, u64, String)> = Vec::new();
    loop {
        let event = match reader.read_event() {
            Ok(event) => event,
            // quick-xml's errors may quote the document: only the position is reported.
            Err(_) => bail!("{}: byte {}: not well-formed XML", path.display(), reader.buffer_position()),
        };
        let place = || format!("{}: byte {}", path.display(), reader.buffer_position());
        match event {
            Event::Start(e) if e.name().as_ref() == b"TEXT" => {
                in_text = true;
                text.get_or_insert_with(String::new);
            }
            Event::End(e) if e.name().as_ref() == b"TEXT" => in_text = false,
            Event::Start(e) if e.name().as_ref() == b"TAGS" => in_tags = true,
            Event::End(e) if e.name().as_ref() == b"TAGS" => in_tags = false,
            Event::CData(data) if in_text => {
                let bytes = data.into_inner();
                let chunk = std::str::from_utf8(&bytes).map_err(|_| anyhow::anyhow!("{}: TEXT is not UTF-8", place()))?;
                text.get_or_insert_with(String::new).push_str(chunk);
            }
            Event::Text(data) if in_text => {
                let bytes = data.into_inner();
                let raw = std::str::from_utf8(&bytes).map_err(|_| anyhow::anyhow!("{}: TEXT is not UTF-8", place()))?;
                let chunk = quick_xml::escape::unescape(raw).map_err(|_| anyhow::anyhow!("{}: bad entity in TEXT", place()))?;
                text.get_or_insert_with(String::new).push_str(&chunk);
            }
            // Entities outside CDATA ("&amp;", "&#233;") are their own events: each is one
            // character of the text, so offsets after it stay right.
            Event::GeneralRef(reference) if in_text => {
                let character = match reference.resolve_char_ref() {
                    Ok(Some(c)) => c,
                    Ok(None) => match &*reference.decode().map_err(|_| anyhow::anyhow!("{}: bad entity in TEXT", place()))? {
                        "amp" => '&',
                        "lt" => '<',
                        "gt" => '>',
                        "quot" => '"',
                        "apos" => '\'',
                        _ => bail!("{}: an entity in TEXT that XML does not define", place()),
                    },
                    Err(_) => bail!("{}: bad character reference in TEXT", place()),
                };
                text.get_or_insert_with(String::new).push(character);
            }
            Event::Empty(e) | Event::Start(e) if in_tags => {
                let element = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                let mut start = None;
                let mut end = None;
                let mut kind = String::new();
                for attribute in e.attributes() {
                    let attribute = attribute.map_err(|_| anyhow::anyhow!("{}: bad attribute in <{element}>", place()))?;
                    let value = String::from_utf8_lossy(attribute.value.as_ref()).into_owned();
                    match attribute.key.as_ref() {
                        b"start" => start = value.trim().parse::<u64>().ok(),
                        b"end" => end = value.trim().parse::<u64>().ok(),
                        b"TYPE" => kind = value,
                        _ => {}
                    }
                }
                let (Some(start), Some(end)) = (start, end) else { bail!("{}: <{element}> without numeric start and end", place()) };
                tags.push((element, start, end, kind));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let text = text.with_context(|| format!("{}: no <TEXT>", path.display()))?;
    let offsets = byte_offsets(&text);
    let mut spans = Vec::new();
    for (i, (element, start, end, kind)) in tags.iter().enumerate() {
        let place = format!("{}: tag {} <{element}>", path.display(), i + 1);
        spans.push(to_bytes(&offsets, *start, *end, i2b2_category(element, kind), &place)?);
    }
    let id = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(GoldNote { id, patient: None, text, spans })
}

/// Reads another tool's spans (character offsets), by note id.
fn read_predicted(path: &Path, gold: &[GoldNote]) -> anyhow::Result<HashMap<String, Vec<Span>>> {
    let texts: HashMap<&str, &str> = gold.iter().map(|n| (n.id.as_str(), n.text.as_str())).collect();
    let mut out = HashMap::new();
    for entry in json_objects(path)? {
        let (place, object) = entry?;
        let id = object.get("id").and_then(id_of).with_context(|| format!("{place}: no \"id\""))?;
        let text = texts.get(id.as_str()).with_context(|| format!("{place}: no gold note has this id"))?;
        out.insert(id, spans_of(&object, text, &place)?);
    }
    Ok(out)
}

/// The outcome of an evaluation.
#[derive(Debug)]
pub struct Evaluation {
    pub notes: usize,
    pub score: Score,
    pub errors_written: Option<(PathBuf, usize)>,
}

impl fmt::Display for Evaluation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.score;
        writeln!(f, "{} notes", self.notes)?;
        writeln!(f, "entity recall by category (caught / all):")?;
        for (category, (caught, all)) in &s.entities {
            writeln!(f, "  {:<13} {:>7.2}%  {caught} / {all}", category.as_str(), 100.0 * s.category_recall(*category).unwrap_or(1.0))?;
        }
        writeln!(f, "entity recall:   {:.2}%", 100.0 * s.entity_recall())?;
        writeln!(f, "token recall:    {:.2}%  ({} / {} PHI tokens masked whole)", 100.0 * s.token_recall(), s.phi_tokens_masked, s.phi_tokens)?;
        writeln!(f, "token precision: {:.2}%  ({} of {} masked tokens are PHI)", 100.0 * s.token_precision(), s.masked_tokens_phi, s.masked_tokens)?;
        writeln!(f, "retention:       {:.2}%  ({} / {} other tokens kept)", 100.0 * s.retention(), s.other_tokens_kept, s.other_tokens)?;
        if let Some((path, count)) = &self.errors_written {
            writeln!(f, "{count} errors (with PHI) written to {}", path.display())?;
        }
        Ok(())
    }
}

/// Scores the engine (with probes when given) or `predicted` against `gold`.
pub fn evaluate(gold_path: &Path, predicted: Option<&Path>, probes: Option<&Path>, errors: Option<&Path>) -> anyhow::Result<Evaluation> {
    let gold = read_gold(gold_path)?;
    let predicted = predicted.map(|p| read_predicted(p, &gold)).transpose()?;
    let probes: HashMap<String, Arc<Probes>> = probes.map(read_probes).transpose()?.unwrap_or_default();
    let mut writer = match errors {
        Some(path) => Some(BufWriter::new(private_file(path)?)),
        None => None,
    };
    let mut total = Score::default();
    let mut error_count = 0;
    for note in &gold {
        let spans = match &predicted {
            Some(map) => map.get(&note.id).cloned().unwrap_or_default(),
            None => pixl_text::detect_with(&note.text, note.patient.as_ref().and_then(|p| probes.get(p)).map(Arc::as_ref)).spans,
        };
        let (one, misses) = score(&note.text, &note.spans, &spans);
        total.add(&one);
        if let Some(writer) = writer.as_mut() {
            for miss in misses {
                let text = &note.text;
                let mut from = miss.start.saturating_sub(40);
                while !text.is_char_boundary(from) {
                    from -= 1;
                }
                let mut to = (miss.end + 40).min(text.len());
                while !text.is_char_boundary(to) {
                    to += 1;
                }
                let line = json!({
                    "id": note.id,
                    "kind": miss.kind,
                    "category": miss.category.map(Category::as_str),
                    "value": &text[miss.start..miss.end],
                    "context": &text[from..to],
                });
                writeln!(writer, "{line}").context("cannot write the errors file")?;
                error_count += 1;
            }
        }
    }
    if let Some(mut writer) = writer {
        writer.flush().context("cannot write the errors file")?;
    }
    Ok(Evaluation { notes: gold.len(), score: total, errors_written: errors.map(|p| (p.to_owned(), error_count)) })
}

/// A file only its owner can read (it holds PHI).
fn private_file(path: &Path) -> anyhow::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path).with_context(|| format!("cannot create {}", path.display()))?;
    // The mode applies only to a new file: an existing one is made private too.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600)).with_context(|| format!("cannot make {} private", path.display()))?;
    Ok(file)
}
