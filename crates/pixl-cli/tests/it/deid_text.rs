//! `pixl deid-text` through the binary, on the three input forms (a directory of .txt
//! files, JSON lines, parquet), with the seeded synthetic corpus: every gold entity must
//! come out masked, the other columns of a parquet file unchanged, the summary free of
//! PHI; then `pixl deid-text eval` on JSON-lines and i2b2 XML gold, bad input, probes and
//! surrogates.

use std::{path::Path, process::Output, sync::Arc};

use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use parquet::arrow::{ArrowWriter, arrow_reader::ParquetRecordBatchReaderBuilder};
use pixl_text::synth::{Case, Note, corpus_in};

fn pixl(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pixl")).args(args).output().expect("pixl runs")
}

fn text(output: &Output) -> (String, String) {
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

fn notes() -> Vec<Note> {
    corpus_in(11, 120, Case::Both).0
}

/// The command wrote exactly what the engine gives (asterisks keep lengths in characters),
/// and returns how many gold entities of the note are not masked whole.
fn assert_masked(note: &Note, output: &str) -> usize {
    assert_eq!(output, pixl_text::mask_asterisks(&note.text, &pixl_text::detect(&note.text).spans), "{}: the engine's output", note.id);
    let original: Vec<char> = note.text.chars().collect();
    let masked: Vec<char> = output.chars().collect();
    assert_eq!(original.len(), masked.len(), "{}: the asterisk output keeps the length", note.id);
    let mut missed = 0;
    for span in &note.spans {
        let start = note.text[..span.start].chars().count();
        let end = start + note.text[span.start..span.end].chars().count();
        if (start..end).any(|i| original[i].is_alphanumeric() && masked[i] != '*') {
            missed += 1;
        }
    }
    missed
}

/// At most 1% of the gold entities missed (the engine's own targets are tested in
/// pixl-text; here the command must not lose what the engine finds).
fn assert_recall(notes: &[Note], missed: usize) {
    let entities: usize = notes.iter().map(|n| n.spans.len()).sum();
    assert!(missed * 100 <= entities, "{missed} of {entities} gold entities not masked whole");
}

/// The PHI values of the corpus, to check that none leaks into a summary or an error.
fn phi_values(notes: &[Note]) -> Vec<String> {
    let mut values: Vec<String> = notes.iter().flat_map(|n| n.spans.iter().map(|s| n.text[s.start..s.end].to_owned())).filter(|v| v.len() >= 5).collect();
    values.sort();
    values.dedup();
    values
}

fn assert_no_phi(said: &str, values: &[String]) {
    for value in values {
        assert!(!said.contains(value.as_str()), "the output names PHI: {value:?} in {said:?}");
    }
}

#[test]
fn a_directory_of_text_files_is_masked_file_by_file() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in"), dir.path().join("out"));
    let notes = notes();
    for note in &notes {
        let folder = input.join(&note.patient_id);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(format!("{}.txt", note.id)), &note.text).unwrap();
    }
    let run = pixl(&["deid-text", input.to_str().unwrap(), output.to_str().unwrap(), "--threads", "2"]);
    let (stdout, stderr) = text(&run);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("{} notes", notes.len())), "{stdout}");
    assert!(stdout.contains("NAME ") && stdout.contains("DATE "), "spans per category: {stdout}");
    assert_no_phi(&stdout, &phi_values(&notes));
    assert_no_phi(&stderr, &phi_values(&notes));
    let mut missed = 0;
    for note in &notes {
        let written = std::fs::read_to_string(output.join(&note.patient_id).join(format!("{}.txt", note.id))).unwrap();
        missed += assert_masked(note, &written);
    }
    assert_recall(&notes, missed);
}

#[test]
fn a_file_that_is_not_utf8_is_reported_and_the_others_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("good.txt"), "Seen by Dr Kowalczyk on 03/03/2021.").unwrap();
    std::fs::write(input.join("latin1.txt"), b"Seen by Dr M\xfcller on 03/03/2021.").unwrap();
    let run = pixl(&["deid-text", input.to_str().unwrap(), output.to_str().unwrap()]);
    let (stdout, stderr) = text(&run);
    assert!(!run.status.success(), "a note not de-identified fails the run: {stdout}");
    assert!(stdout.contains("NOT de-identified") && stdout.contains("1 notes that are not valid UTF-8"), "{stdout}");
    assert!(!stdout.contains("latin1.txt"), "paths only when asked: {stdout}");
    assert!(!stdout.contains("ller") && !stderr.contains("ller"), "no text of the bad note is shown");
    assert_eq!(std::fs::read_to_string(output.join("good.txt")).unwrap(), "Seen by Dr ********* on **********.");
    assert!(!output.join("latin1.txt").exists(), "nothing is written for it");
    let listed = pixl(&["deid-text", input.to_str().unwrap(), output.to_str().unwrap(), "--list-failed"]);
    let (stdout, _) = text(&listed);
    assert!(stdout.contains("latin1.txt: the text is not valid UTF-8 (first bad byte at offset 12)"), "{stdout}");
}

fn write_jsonl(path: &Path, notes: &[Note]) {
    let lines: Vec<String> = notes.iter().map(|n| serde_json::json!({"note_id": n.id, "patient_id": n.patient_id, "body": n.text}).to_string()).collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn json_lines_are_masked_in_order_with_their_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("notes.jsonl"), dir.path().join("out.jsonl"));
    let notes = notes();
    write_jsonl(&input, &notes);
    let run = pixl(&["deid-text", input.to_str().unwrap(), output.to_str().unwrap(), "--column", "body", "--id-column", "note_id"]);
    let (stdout, stderr) = text(&run);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&output).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), notes.len());
    let mut missed = 0;
    for (note, line) in notes.iter().zip(&lines) {
        assert_eq!(line["note_id"], note.id.as_str(), "in input order, under the input's id field");
        assert!(line.get("patient_id").is_none(), "the patient id is not copied out");
        missed += assert_masked(note, line["body"].as_str().unwrap());
    }
    assert_recall(&notes, missed);
}

#[test]
fn a_malformed_json_line_is_named_without_its_content() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("notes.jsonl");
    std::fs::write(&input, "{\"id\": 1, \"text\": \"fine\"}\n{\"id\": 2, \"text\": \"Seen by Dr Kowalczyk\n").unwrap();
    let run = pixl(&["deid-text", input.to_str().unwrap(), dir.path().join("out.jsonl").to_str().unwrap()]);
    let (stdout, stderr) = text(&run);
    assert!(!run.status.success());
    assert!(stderr.contains("line 2") && stderr.contains("not valid JSON"), "{stderr}");
    assert!(!stderr.contains("Kowalczyk") && !stdout.contains("Kowalczyk"), "{stderr}");
}

#[test]
fn a_parquet_file_gets_its_text_column_replaced_and_keeps_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("notes.parquet"), dir.path().join("out.parquet"));
    let notes = notes();
    let batch = RecordBatch::try_from_iter([
        ("note_id", Arc::new(Int64Array::from_iter_values((0..notes.len() as i64).map(|i| 1000 + i))) as ArrayRef),
        ("patient_id", Arc::new(StringArray::from_iter_values(notes.iter().map(|n| n.patient_id.as_str()))) as ArrayRef),
        ("note_text", Arc::new(StringArray::from_iter_values(notes.iter().map(|n| n.text.as_str()))) as ArrayRef),
    ])
    .unwrap();
    let mut writer = ArrowWriter::try_new(std::fs::File::create(&input).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let run = pixl(&["deid-text", input.to_str().unwrap(), output.to_str().unwrap(), "--column", "note_text", "--id-column", "note_id", "--threads", "2"]);
    let (stdout, stderr) = text(&run);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&output).unwrap()).unwrap().build().unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, notes.len());
    assert_eq!(batches[0].schema(), batch.schema(), "same columns, same types");
    let (mut at, mut missed) = (0, 0);
    for out in &batches {
        let ids = out.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        let texts = out.column(2).as_any().downcast_ref::<StringArray>().unwrap();
        for row in 0..out.num_rows() {
            assert_eq!(ids.value(row), 1000 + at as i64, "rows in order, ids unchanged");
            missed += assert_masked(&notes[at], texts.value(row));
            at += 1;
        }
    }
    assert_recall(&notes, missed);
    let missing = pixl(&["deid-text", input.to_str().unwrap(), output.to_str().unwrap(), "--column", "text"]);
    assert!(!missing.status.success());
    assert!(text(&missing).1.contains("no column \"text\""), "{}", text(&missing).1);
}

fn write_gold(path: &Path, notes: &[Note]) {
    let lines: Vec<String> = notes
        .iter()
        .map(|n| {
            let spans: Vec<serde_json::Value> = n
                .spans
                .iter()
                .map(|s| serde_json::json!({"start": n.text[..s.start].chars().count(), "end": n.text[..s.end].chars().count(), "category": s.category.as_str()}))
                .collect();
            serde_json::json!({"id": n.id, "patient_id": n.patient_id, "text": n.text, "spans": spans}).to_string()
        })
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// "entity recall:   99.80%" -> 99.8
fn figure(report: &str, label: &str) -> f64 {
    let line = report.lines().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("no {label:?} in {report}"));
    line[label.len()..].trim().split('%').next().unwrap().trim().parse().unwrap()
}

#[test]
fn eval_scores_the_engine_and_another_tools_spans_alike() {
    let dir = tempfile::tempdir().unwrap();
    let (gold, spans, errors) = (dir.path().join("gold.jsonl"), dir.path().join("spans.jsonl"), dir.path().join("errors.jsonl"));
    let notes = notes();
    write_gold(&gold, &notes);
    let eval = pixl(&["deid-text", "eval", "--gold", gold.to_str().unwrap(), "--errors", errors.to_str().unwrap()]);
    let (report, stderr) = text(&eval);
    assert!(eval.status.success(), "{report}\n{stderr}");
    for category in ["NAME", "DATE", "AGE", "ID", "CONTACT", "LOCATION", "ORGANISATION"] {
        assert!(report.lines().any(|l| l.trim_start().starts_with(category) && l.contains('%')), "{category} in {report}");
    }
    assert!(figure(&report, "entity recall:") >= 99.0, "{report}");
    assert!(figure(&report, "token precision:") >= 85.0, "{report}");
    assert_no_phi(&report, &phi_values(&notes));
    assert!(std::fs::metadata(&errors).is_ok(), "the errors file is written when asked");
    #[cfg(unix)]
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&errors).unwrap().permissions()) & 0o777, 0o600);

    // The spans output scored with --predicted gives the same figures.
    let run = pixl(&["deid-text", gold.to_str().unwrap(), spans.to_str().unwrap(), "--output", "spans"]);
    assert!(run.status.success(), "{:?}", text(&run));
    let predicted = pixl(&["deid-text", "eval", "--gold", gold.to_str().unwrap(), "--predicted", spans.to_str().unwrap()]);
    let (again, _) = text(&predicted);
    assert!(predicted.status.success(), "{:?}", text(&predicted));
    let body = |r: &str| r.lines().filter(|l| !l.contains("errors")).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&again), body(&report));

    // An empty prediction scores zero recall: the figures can fail.
    std::fs::write(&spans, notes.iter().map(|n| format!("{{\"id\": \"{}\", \"spans\": []}}\n", n.id)).collect::<String>()).unwrap();
    let (nothing, _) = text(&pixl(&["deid-text", "eval", "--gold", gold.to_str().unwrap(), "--predicted", spans.to_str().unwrap()]));
    assert_eq!(figure(&nothing, "entity recall:"), 0.0, "{nothing}");
}

#[test]
fn eval_reads_i2b2_2014_xml() {
    let dir = tempfile::tempdir().unwrap();
    let note = "\nRecord date: 2067-05-03\nSeen by Dr Kowalczyk at Whittington Hospital. Mr Ng is 93.\n";
    let at = |s: &str| note.find(s).unwrap();
    let tag = |element: &str, kind: &str, value: &str| {
        format!(r#"<{element} id="P0" start="{}" end="{}" text="{value}" TYPE="{kind}" comment="" />"#, at(value), at(value) + value.len())
    };
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<deIdi2b2>\n<TEXT><![CDATA[{note}]]></TEXT>\n<TAGS>\n{}\n{}\n{}\n{}\n{}\n</TAGS>\n</deIdi2b2>\n",
        tag("DATE", "DATE", "2067-05-03"),
        tag("NAME", "DOCTOR", "Kowalczyk"),
        tag("LOCATION", "HOSPITAL", "Whittington Hospital"),
        tag("NAME", "PATIENT", "Ng"),
        tag("AGE", "AGE", "93"),
    );
    std::fs::write(dir.path().join("110-01.xml"), xml).unwrap();
    let eval = pixl(&["deid-text", "eval", "--gold", dir.path().to_str().unwrap()]);
    let (report, stderr) = text(&eval);
    assert!(eval.status.success(), "{report}\n{stderr}");
    assert!(report.starts_with("1 notes"), "{report}");
    assert!(report.contains("ORGANISATION") && report.contains("NAME") && report.contains("AGE"), "{report}");
    assert!(figure(&report, "entity recall:") > 0.0, "{report}");

    // Text outside CDATA with entities: offsets count the characters they stand for.
    let escaped = tempfile::tempdir().unwrap();
    let plain = "Seen by Dr Kowalczyk & Dr Nowak <today>.";
    let (k, n) = (plain.find("Kowalczyk").unwrap(), plain.find("Nowak").unwrap());
    std::fs::write(
        escaped.path().join("e.xml"),
        format!(
            "<deIdi2b2><TEXT>Seen by Dr Kowalczyk &amp; Dr Nowak &lt;today&#62;.</TEXT><TAGS><NAME start=\"{k}\" end=\"{}\" TYPE=\"DOCTOR\"/><NAME start=\"{n}\" end=\"{}\" TYPE=\"DOCTOR\"/></TAGS></deIdi2b2>",
            k + 9,
            n + 5
        ),
    )
    .unwrap();
    let (report, stderr) = text(&pixl(&["deid-text", "eval", "--gold", escaped.path().to_str().unwrap()]));
    assert_eq!(figure(&report, "entity recall:"), 100.0, "{report}{stderr}");
    assert!(report.contains("2 / 2"), "{report}");

    std::fs::write(dir.path().join("broken.xml"), "<deIdi2b2><TEXT><![CDATA[Mr Ng]]></TEXT><TAGS><NAME start=\"x\"/></TAGS></deIdi2b2>").unwrap();
    let bad = pixl(&["deid-text", "eval", "--gold", dir.path().join("broken.xml").to_str().unwrap()]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("without numeric start and end"), "{:?}", text(&bad));
}

#[test]
fn probes_find_what_no_pattern_would_and_surrogates_are_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("notes.jsonl");
    let lines = [
        serde_json::json!({"id": "a", "patient_id": "p1", "text": "Patient Qzx-7 reviewed. Dr Kowalczyk saw her on 03/03/2021, a 93 year old."}),
        serde_json::json!({"id": "b", "patient_id": "p1", "text": "Dr Kowalczyk again on 13/03/2021."}),
        serde_json::json!({"id": "c", "patient_id": "p2", "text": "Patient Qzx-7 is another person's code here."}),
    ];
    std::fs::write(&input, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let probes = dir.path().join("probes.jsonl");
    std::fs::write(&probes, "{\"patient_id\": \"p1\", \"identifiers\": [\"QZX 7\"]}\n").unwrap();

    let tags = dir.path().join("tags.jsonl");
    let run = pixl(&["deid-text", input.to_str().unwrap(), tags.to_str().unwrap(), "--output", "tags", "--probes", probes.to_str().unwrap()]);
    assert!(run.status.success(), "{:?}", text(&run));
    let out: Vec<serde_json::Value> = std::fs::read_to_string(&tags).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(out[0]["text"].as_str().unwrap().starts_with("Patient [ID] reviewed"), "{}", out[0]);
    assert!(out[2]["text"].as_str().unwrap().contains("Qzx"), "another patient's probes do not apply: {}", out[2]);

    let surrogate = dir.path().join("surrogate.jsonl");
    let refused = pixl(&["deid-text", input.to_str().unwrap(), surrogate.to_str().unwrap(), "--output", "surrogate"]);
    assert!(!refused.status.success());
    assert!(text(&refused).1.contains("--key-file"), "{:?}", text(&refused));
    let key = dir.path().join("key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    let run = pixl(&["deid-text", input.to_str().unwrap(), surrogate.to_str().unwrap(), "--output", "surrogate", "--key-file", key.to_str().unwrap()]);
    assert!(run.status.success(), "{:?}", text(&run));
    let out: Vec<String> = std::fs::read_to_string(&surrogate)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["text"].as_str().unwrap().to_owned())
        .collect();
    let doctor = |s: &str| s.split("Dr ").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    assert!(!out[0].contains("Kowalczyk") && !out[0].contains("03/03/2021"), "{}", out[0]);
    assert_eq!(doctor(&out[0]), doctor(&out[1]), "the same name, the same surrogate within a patient: {out:?}");
    assert!(out[0].contains("a 90+ year old"), "{}", out[0]);
    // Ten days apart before, ten days apart after.
    let date = |s: &str| {
        let found = regex::Regex::new(r"\d{2}/\d{2}/\d{4}").unwrap().find(s).unwrap().as_str().to_owned();
        chrono::NaiveDate::parse_from_str(&found, "%d/%m/%Y").unwrap()
    };
    assert_eq!((date(&out[1]) - date(&out[0])).num_days(), 10, "{out:?}");
}
