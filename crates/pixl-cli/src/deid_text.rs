//! `pixl deid-text IN OUT`: free-text de-identification of a directory of `.txt` files, a
//! JSON-lines file or a parquet file, with the `pixl-text` engine; and `pixl deid-text eval`,
//! which scores it (or another tool's spans) against gold annotations.
//!
//! Streaming with bounded memory: notes are read in chunks, each chunk de-identified on all
//! threads, then written in input order. Nothing of a note's text reaches the log, the
//! summary or an error message: errors name the file, line or row and what was wrong.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    fs::File,
    io::{BufRead, BufReader, BufWriter, Write},
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use anyhow::{Context, bail};
use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchReader, StringArray};
use parquet::arrow::{ArrowWriter, arrow_reader::ParquetRecordBatchReaderBuilder};
use pixl_text::{Category, Detection, Patient, Probes, Span, surrogate::DateOrder};
use serde_json::{Map, Value, json};

/// What `pixl deid-text` writes in place of each note.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputForm {
    /// Every character of PHI replaced by `*` (Philter's output; lengths kept).
    Asterisk,
    /// Each span replaced by its category: `[NAME]`, `[DATE]`.
    Tags,
    /// Consistent surrogates: fake names, dates shifted per patient, ages 90+ (needs --key-file).
    Surrogate,
    /// The spans found, with categories (character offsets), as JSON: for review tools.
    Spans,
}

/// Options of a run.
#[derive(Clone)]
pub struct Options {
    pub output: OutputForm,
    pub threads: usize,
    /// JSON-lines and parquet: the text field or column.
    pub column: String,
    /// JSON-lines and parquet: the id field or column (default: "id" if there is one, else
    /// the line or row number).
    pub id_column: Option<String>,
    /// JSON-lines and parquet: the patient field or column, to find the note's probes and
    /// keep surrogates consistent per patient. Directories: the folder a file is in.
    pub patient_column: String,
    pub probes: Option<PathBuf>,
    /// Surrogates' key (at least 32 bytes).
    pub key: Option<Vec<u8>>,
    pub date_order: DateOrder,
    pub progress: bool,
    /// Name the files that could not be de-identified in the summary (their paths may hold
    /// identifiers: shown only when asked).
    pub list_failed: bool,
}

impl fmt::Debug for Options {
    /// Never shows the surrogate key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("output", &self.output)
            .field("threads", &self.threads)
            .field("column", &self.column)
            .field("id_column", &self.id_column)
            .field("patient_column", &self.patient_column)
            .field("probes", &self.probes)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("date_order", &self.date_order)
            .field("list_failed", &self.list_failed)
            .finish_non_exhaustive()
    }
}

/// What a run did. Holds counts only: no text, no identifier.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Notes de-identified and written.
    pub notes: u64,
    pub bytes: u64,
    pub flagged: u64,
    /// Parquet rows whose text is null: kept null.
    pub nulls: u64,
    /// Notes not de-identified (not UTF-8), by where they are; they were not written.
    pub failed: Vec<String>,
    /// Whether `Display` names the failed notes' places.
    pub list_failed: bool,
    pub spans: BTreeMap<Category, u64>,
    pub seconds: f64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate = self.notes as f64 / self.seconds.max(1e-9);
        writeln!(f, "{} notes ({:.1} MB) de-identified in {:.2} s ({rate:.0} notes/s)", self.notes, self.bytes as f64 / 1e6, self.seconds)?;
        let spans: Vec<String> = self.spans.iter().map(|(c, n)| format!("{c} {n}")).collect();
        writeln!(f, "spans: {}", if spans.is_empty() { "none".to_owned() } else { spans.join(", ") })?;
        writeln!(f, "flagged (masked whole: over the size limit): {}", self.flagged)?;
        if self.nulls > 0 {
            writeln!(f, "null texts (kept null): {}", self.nulls)?;
        }
        if !self.failed.is_empty() {
            writeln!(f, "NOT de-identified, not written: {} notes that are not valid UTF-8", self.failed.len())?;
            if self.list_failed {
                for place in &self.failed {
                    writeln!(f, "  {place}")?;
                }
            } else {
                writeln!(f, "  (--list-failed names them; their paths may hold identifiers)")?;
            }
        }
        Ok(())
    }
}

/// One note in flight.
struct Item {
    id: String,
    patient: Option<String>,
    text: Result<String, String>,
}

struct Done {
    id: String,
    /// The output (text or spans JSON); `None` when the note failed.
    output: Option<String>,
    detection: Option<Detection>,
}

/// Notes per chunk per thread: bounded memory, enough work to share.
const CHUNK_PER_THREAD: usize = 256;

/// More threads than this are not used.
pub const MAX_THREADS: usize = 256;

/// Byte spans as character offsets.
pub fn char_spans(text: &str, spans: &[Span]) -> Vec<(usize, usize, Category)> {
    let mut out = Vec::with_capacity(spans.len());
    let mut chars = 0;
    let mut at = 0;
    let count_to = |byte: usize, chars: &mut usize, at: &mut usize| {
        *chars += text[*at..byte].chars().count();
        *at = byte;
        *chars
    };
    for span in spans {
        let start = count_to(span.start, &mut chars, &mut at);
        let end = count_to(span.end, &mut chars, &mut at);
        out.push((start, end, span.category));
    }
    out
}

/// The spans JSON of a note: `{"id", "spans": [{"start", "end", "category"}], "flagged"}`.
pub fn spans_json(id: &str, text: &str, detection: &Detection) -> Value {
    let spans: Vec<Value> =
        char_spans(text, &detection.spans).into_iter().map(|(start, end, c)| json!({"start": start, "end": end, "category": c.as_str()})).collect();
    json!({"id": id, "spans": spans, "flagged": detection.flagged})
}

/// Reads the probes file: JSON lines of `{"patient_id", "first_names", "surnames",
/// "identifiers", "dates_of_birth", "phones", "postcodes"}` (lists of strings, any may be
/// missing).
pub fn read_probes(path: &Path) -> anyhow::Result<HashMap<String, Arc<Probes>>> {
    // A patient on several lines (several MRNs, a maiden name) has all of them.
    let mut patients: HashMap<String, Patient> = HashMap::new();
    for entry in json_objects(path).context("the probes file")? {
        let (place, object) = entry?;
        let Some(id) = object.get("patient_id").and_then(id_of) else {
            bail!("{place}: no \"patient_id\"");
        };
        let list = |field: &str| -> anyhow::Result<Vec<String>> {
            match object.get(field) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| anyhow::anyhow!("{place}: \"{field}\" must be a list of strings")))
                    .collect(),
                Some(Value::String(one)) => Ok(vec![one.clone()]),
                Some(_) => bail!("{place}: \"{field}\" must be a list of strings"),
            }
        };
        let patient = patients.entry(id).or_default();
        patient.first_names.extend(list("first_names")?);
        patient.surnames.extend(list("surnames")?);
        patient.identifiers.extend(list("identifiers")?);
        patient.dates_of_birth.extend(list("dates_of_birth")?);
        patient.phones.extend(list("phones")?);
        patient.postcodes.extend(list("postcodes")?);
    }
    Ok(patients.into_iter().map(|(id, patient)| (id, Arc::new(Probes::new(&patient)))).collect())
}

/// Each non-blank line of a JSON-lines file as an object, with its place ("FILE: line N")
/// for error messages; errors name the place, never the content.
pub fn json_objects(path: &Path) -> anyhow::Result<impl Iterator<Item = anyhow::Result<(String, Map<String, Value>)>> + '_> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(BufReader::new(file).lines().enumerate().filter_map(move |(n, line)| {
        let place = format!("{}: line {}", path.display(), n + 1);
        match line {
            Err(_) => Some(Err(anyhow::anyhow!("{place}: cannot read (not UTF-8?)"))),
            Ok(line) if line.trim().is_empty() => None,
            Ok(line) => Some(parse_object(&line).with_context(|| place.clone()).map(|object| (place, object))),
        }
    }))
}

/// Parses one JSON line as an object, with an error that never quotes the line (serde's
/// messages echo values).
pub fn parse_object(line: &str) -> anyhow::Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => bail!("not a JSON object"),
        Err(e) => bail!("not valid JSON ({:?} error at column {})", e.classify(), e.column()),
    }
}

/// A JSON id (string or number) as text.
pub fn id_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

struct Engine {
    options: Options,
    probes: HashMap<String, Arc<Probes>>,
}

impl Engine {
    fn process(&self, item: Item) -> Done {
        let text = match item.text {
            Ok(text) => text,
            Err(_) => return Done { id: item.id, output: None, detection: None },
        };
        let probes = item.patient.as_ref().and_then(|p| self.probes.get(p)).map(Arc::as_ref);
        let detection = pixl_text::detect_with(&text, probes);
        let output = match self.options.output {
            OutputForm::Asterisk => pixl_text::mask_asterisks(&text, &detection.spans),
            OutputForm::Tags => pixl_text::mask_tags(&text, &detection.spans),
            OutputForm::Surrogate => {
                let key = self.options.key.as_deref().unwrap_or_default();
                // Flagged notes are masked whole, never given a surrogate.
                if detection.flagged {
                    pixl_text::mask_tags(&text, &detection.spans)
                } else {
                    let patient = item.patient.as_deref().unwrap_or(&item.id);
                    pixl_text::surrogate::Surrogates::new(key, patient, self.options.date_order).apply(&text, &detection.spans)
                }
            }
            OutputForm::Spans => spans_json(&item.id, &text, &detection).to_string(),
        };
        Done { id: item.id, output: Some(output), detection: Some(detection) }
    }

    /// De-identifies a chunk on all threads, results in input order.
    fn chunk(&self, items: Vec<Item>, summary: &mut Summary) -> Vec<Done> {
        for item in &items {
            if let Ok(text) = &item.text {
                summary.notes += 1;
                summary.bytes += text.len() as u64;
            }
        }
        let threads = self.options.threads.max(1);
        let done: Vec<Done> = if threads == 1 || items.len() < 2 {
            items.into_iter().map(|i| self.process(i)).collect()
        } else {
            let per = items.len().div_ceil(threads);
            let mut parts: Vec<Vec<Item>> = Vec::new();
            let mut items = items.into_iter().peekable();
            while items.peek().is_some() {
                parts.push(items.by_ref().take(per).collect());
            }
            std::thread::scope(|scope| {
                let handles: Vec<_> =
                    parts.into_iter().map(|part| scope.spawn(move || part.into_iter().map(|i| self.process(i)).collect::<Vec<_>>())).collect();
                handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
            })
        };
        for d in &done {
            if let Some(detection) = &d.detection {
                summary.flagged += u64::from(detection.flagged);
                for span in &detection.spans {
                    *summary.spans.entry(span.category).or_default() += 1;
                }
            }
        }
        done
    }
}

fn progress(options: &Options) -> indicatif::ProgressBar {
    if !options.progress {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos} notes, {per_sec}, {elapsed}").unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar
}

/// Runs `pixl deid-text` from `input` to `output`.
pub fn run(input: &Path, output: &Path, options: Options) -> anyhow::Result<Summary> {
    if options.output == OutputForm::Surrogate && options.key.as_ref().is_none_or(|k| k.len() < 32) {
        bail!("--output surrogate needs --key-file with a secret of at least 32 bytes (the project's surrogate key)");
    }
    let probes = match &options.probes {
        Some(path) => read_probes(path)?,
        None => HashMap::new(),
    };
    let mut options = options;
    options.threads = options.threads.clamp(1, MAX_THREADS);
    let list_failed = options.list_failed;
    let engine = Engine { options, probes };
    let started = Instant::now();
    let mut summary = Summary { list_failed, ..Summary::default() };
    let metadata = std::fs::metadata(input).with_context(|| format!("cannot read {}", input.display()))?;
    if metadata.is_dir() {
        run_dir(&engine, input, output, &mut summary)?;
    } else {
        // Written under a temporary name and renamed once complete: a run that stops
        // half-way leaves no output that looks whole.
        let partial = partial_path(output);
        let result = if input.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet")) {
            run_parquet(&engine, input, &partial, &mut summary)
        } else {
            run_jsonl(&engine, input, &partial, &mut summary)
        };
        if let Err(error) = result {
            let _ = std::fs::remove_file(&partial);
            return Err(error);
        }
        std::fs::rename(&partial, output).with_context(|| format!("cannot rename {} to {}", partial.display(), output.display()))?;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

fn partial_path(output: &Path) -> PathBuf {
    let mut name = output.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_default();
    name.push(".partial");
    output.with_file_name(name)
}

fn text_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).with_context(|| format!("cannot list {}", at.display()))? {
            let path = entry.with_context(|| format!("cannot list {}", at.display()))?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("txt")) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn run_dir(engine: &Engine, input: &Path, output: &Path, summary: &mut Summary) -> anyhow::Result<()> {
    let files = text_files(input)?;
    std::fs::create_dir_all(output).with_context(|| format!("cannot create {}", output.display()))?;
    let bar = progress(&engine.options);
    let chunk = CHUNK_PER_THREAD * engine.options.threads.max(1);
    for paths in files.chunks(chunk) {
        let mut items = Vec::with_capacity(paths.len());
        for path in paths {
            let relative = path.strip_prefix(input).unwrap_or(path).to_owned();
            let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let text = match pixl_text::as_text(&bytes) {
                Ok(text) => Ok(text.to_owned()),
                Err(e) => Err(format!("{}: {e}", relative.display())),
            };
            if let Err(place) = &text {
                summary.failed.push(place.clone());
            }
            let patient = relative.parent().filter(|p| !p.as_os_str().is_empty()).map(|p| p.to_string_lossy().into_owned());
            items.push(Item { id: relative.to_string_lossy().into_owned(), patient, text });
        }
        for done in engine.chunk(items, summary) {
            let Some(text) = done.output else { continue };
            let mut target = output.join(&done.id);
            if engine.options.output == OutputForm::Spans {
                target.set_extension("json");
            }
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::write(&target, text).with_context(|| format!("cannot write {}", target.display()))?;
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(())
}

fn run_jsonl(engine: &Engine, input: &Path, output: &Path, summary: &mut Summary) -> anyhow::Result<()> {
    let reader = BufReader::new(File::open(input).with_context(|| format!("cannot open {}", input.display()))?);
    let mut writer = BufWriter::new(File::create(output).with_context(|| format!("cannot create {}", output.display()))?);
    let bar = progress(&engine.options);
    let chunk = CHUNK_PER_THREAD * engine.options.threads.max(1);
    let options = &engine.options;
    let mut lines = reader.split(b'\n').enumerate();
    loop {
        let mut items = Vec::with_capacity(chunk);
        for (n, line) in lines.by_ref() {
            let place = format!("{}: line {}", input.display(), n + 1);
            let line = line.with_context(|| format!("{place}: cannot read"))?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let line = pixl_text::as_text(&line).map_err(|e| anyhow::anyhow!("{place}: {e}"))?;
            let object = parse_object(line).with_context(|| place.clone())?;
            let id = match &options.id_column {
                Some(field) => object.get(field).and_then(id_of).with_context(|| format!("{place}: no \"{field}\" (string or number)"))?,
                None => object.get("id").and_then(id_of).unwrap_or_else(|| (n + 1).to_string()),
            };
            let text = object.get(&options.column).and_then(Value::as_str).with_context(|| format!("{place}: no \"{}\" string", options.column))?;
            items.push(Item { id, patient: object.get(&options.patient_column).and_then(id_of), text: Ok(text.to_owned()) });
            if items.len() == chunk {
                break;
            }
        }
        if items.is_empty() {
            break;
        }
        for done in engine.chunk(items, summary) {
            let Some(text) = done.output else { continue };
            if options.output == OutputForm::Spans {
                writeln!(writer, "{text}")?;
            } else {
                // Only the id and the de-identified text: other fields of the input (a
                // patient id, a name) are not copied out.
                let mut object = Map::new();
                object.insert(options.id_column.clone().unwrap_or_else(|| "id".to_owned()), Value::String(done.id));
                object.insert(options.column.clone(), Value::String(text));
                writeln!(writer, "{}", Value::Object(object))?;
            }
            bar.inc(1);
        }
    }
    writer.flush().with_context(|| format!("cannot write {}", output.display()))?;
    bar.finish_and_clear();
    Ok(())
}

fn string_column(batch: &RecordBatch, name: &str, input: &Path) -> anyhow::Result<Vec<Option<String>>> {
    let column = batch.column_by_name(name).with_context(|| format!("{}: no column \"{name}\"", input.display()))?;
    let strings = arrow_array::cast::AsArray::as_string_opt::<i32>(column.as_ref())
        .map(|a| (0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i).to_owned())).collect())
        .or_else(|| {
            arrow_array::cast::AsArray::as_string_opt::<i64>(column.as_ref())
                .map(|a| (0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i).to_owned())).collect())
        })
        .or_else(|| {
            arrow_array::cast::AsArray::as_string_view_opt(column.as_ref())
                .map(|a| (0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i).to_owned())).collect())
        });
    match strings {
        Some(values) => Ok(values),
        // Ids may be integers: their text form.
        None => {
            integers_as_text(column).with_context(|| format!("{}: column \"{name}\" is of type {}, not text or integer", input.display(), column.data_type()))
        }
    }
}

fn integers_as_text(column: &ArrayRef) -> Option<Vec<Option<String>>> {
    if let Some(ints) = arrow_array::cast::AsArray::as_primitive_opt::<arrow_array::types::Int64Type>(column.as_ref()) {
        return Some((0..ints.len()).map(|i| ints.is_valid(i).then(|| ints.value(i).to_string())).collect());
    }
    arrow_array::cast::AsArray::as_primitive_opt::<arrow_array::types::Int32Type>(column.as_ref())
        .map(|ints| (0..ints.len()).map(|i| ints.is_valid(i).then(|| ints.value(i).to_string())).collect())
}

fn run_parquet(engine: &Engine, input: &Path, output: &Path, summary: &mut Summary) -> anyhow::Result<()> {
    let options = &engine.options;
    let file = File::open(input).with_context(|| format!("cannot open {}", input.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| anyhow::anyhow!("{}: not a readable parquet file ({})", input.display(), parquet_problem(&e)))?
        .with_batch_size(CHUNK_PER_THREAD * options.threads.max(1))
        .build()
        .map_err(|e| anyhow::anyhow!("{}: not a readable parquet file ({})", input.display(), parquet_problem(&e)))?;
    let schema = reader.schema();
    let index =
        schema.index_of(&options.column).map_err(|_| anyhow::anyhow!("{}: no column \"{}\" (give it with --column)", input.display(), options.column))?;
    // Row groups of one chunk: the writer holds no more than that in memory.
    let properties = parquet::file::properties::WriterProperties::builder().set_max_row_group_row_count(Some(CHUNK_PER_THREAD * options.threads)).build();
    let mut writer =
        ArrowWriter::try_new(File::create(output).with_context(|| format!("cannot create {}", output.display()))?, schema.clone(), Some(properties))
            .map_err(|e| anyhow::anyhow!("cannot write {} ({})", output.display(), parquet_problem(&e)))?;
    let bar = progress(options);
    let mut row = 0usize;
    for batch in reader {
        let batch = batch
            .map_err(|e| anyhow::anyhow!("{}: cannot read a row group ({})", input.display(), e.to_string().split(':').next().unwrap_or("arrow error")))?;
        let texts = string_column(&batch, &options.column, input)?;
        let ids = match &options.id_column {
            Some(name) => string_column(&batch, name, input)?,
            None if schema.index_of("id").is_ok() => string_column(&batch, "id", input)?,
            None => (row..row + batch.num_rows()).map(|r| Some((r + 1).to_string())).collect(),
        };
        let patients = if schema.index_of(&options.patient_column).is_ok() {
            string_column(&batch, &options.patient_column, input)?
        } else {
            vec![None; batch.num_rows()]
        };
        let items: Vec<Item> = texts
            .into_iter()
            .zip(ids)
            .zip(patients)
            // A null text is not a note: kept null, counted apart.
            .map(|((text, id), patient)| Item { id: id.unwrap_or_default(), patient, text: text.ok_or_else(String::new) })
            .collect();
        let nulls: Vec<bool> = (0..batch.num_rows()).map(|i| batch.column(index).is_null(i)).collect();
        summary.nulls += nulls.iter().filter(|null| **null).count() as u64;
        let done = engine.chunk(items, summary);
        let replaced: StringArray = done.into_iter().zip(nulls).map(|(d, null)| if null { None } else { d.output }).collect();
        let mut columns = batch.columns().to_vec();
        columns[index] = match schema.field(index).data_type() {
            arrow_schema::DataType::LargeUtf8 => arrow_cast_large(&replaced),
            arrow_schema::DataType::Utf8View => Arc::new(arrow_array::StringViewArray::from_iter(replaced.iter())) as ArrayRef,
            _ => Arc::new(replaced) as ArrayRef,
        };
        let out = RecordBatch::try_new(schema.clone(), columns).map_err(|e| anyhow::anyhow!("cannot build the output rows ({e})"))?;
        writer.write(&out).map_err(|e| anyhow::anyhow!("cannot write {} ({})", output.display(), parquet_problem(&e)))?;
        row += batch.num_rows();
        bar.inc(batch.num_rows() as u64);
    }
    writer.close().map_err(|e| anyhow::anyhow!("cannot write {} ({})", output.display(), parquet_problem(&e)))?;
    bar.finish_and_clear();
    Ok(())
}

fn arrow_cast_large(values: &StringArray) -> ArrayRef {
    Arc::new(arrow_array::LargeStringArray::from_iter(values.iter()))
}

/// A parquet error's kind, without the values some of its messages carry.
fn parquet_problem(error: &parquet::errors::ParquetError) -> &'static str {
    use parquet::errors::ParquetError as E;
    match error {
        E::General(_) => "general error",
        E::NYI(_) => "not supported",
        E::EOF(_) => "unexpected end of file",
        E::ArrowError(_) => "arrow error",
        E::IndexOutOfBound(..) => "index out of bounds",
        E::External(_) => "I/O error",
        _ => "error",
    }
}
