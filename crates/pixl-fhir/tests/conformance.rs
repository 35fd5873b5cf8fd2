//! The SQL on FHIR v2 specification's own test suite (`../shared/fixtures/sql-on-fhir-v2-tests`):
//! every file, every test; expected rows compared as an unordered collection, views that
//! must be rejected must fail (when compiled or when run). Prints pass/fail per file;
//! every non-experimental test must pass.

use std::path::{Path, PathBuf};

use pixl_fhir::view::View;
use serde_json::Value;

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/sql-on-fhir-v2-tests")
}

/// Runs one test; `Err` says why it failed.
fn run(resources: &[Value], test: &Value) -> Result<(), String> {
    let expect_error = test.get("expectError").and_then(Value::as_bool) == Some(true);
    let outcome = View::from_json(&test["view"]).and_then(|view| {
        let mut rows = Vec::new();
        for resource in resources {
            view.rows(resource, &mut rows)?;
        }
        Ok((view, rows))
    });
    match (outcome, expect_error) {
        (Err(_), true) => Ok(()),
        (Ok(_), true) => Err("the view was accepted but must be rejected".into()),
        (Err(e), false) => Err(format!("unexpected error: {e}")),
        (Ok((view, rows)), false) => {
            let names: Vec<&str> = view.columns.iter().map(|c| c.name.as_str()).collect();
            if let Some(columns) = test.get("expectColumns").and_then(Value::as_array) {
                let expected: Vec<&str> = columns.iter().filter_map(Value::as_str).collect();
                if expected != names {
                    return Err(format!("columns {names:?}, expected {expected:?}"));
                }
            }
            let got: Vec<serde_json::Map<String, Value>> = rows.into_iter().map(|row| names.iter().map(|n| n.to_string()).zip(row).collect()).collect();
            let expected: Vec<serde_json::Map<String, Value>> =
                test["expect"].as_array().ok_or("no expect")?.iter().map(|r| r.as_object().cloned().unwrap_or_default()).collect();
            if same_rows(&got, &expected) {
                Ok(())
            } else {
                Err(format!("rows {}\nexpected {}", serde_json::to_string(&got).unwrap(), serde_json::to_string(&expected).unwrap()))
            }
        }
    }
}

/// Unordered comparison; numbers compare by value (2 = 2.0); a missing key in an expected
/// row stands for null.
fn same_rows(got: &[serde_json::Map<String, Value>], expected: &[serde_json::Map<String, Value>]) -> bool {
    if got.len() != expected.len() {
        return false;
    }
    let mut unused: Vec<bool> = vec![true; expected.len()];
    'rows: for row in got {
        for (i, want) in expected.iter().enumerate() {
            if unused[i] && row_equal(row, want) {
                unused[i] = false;
                continue 'rows;
            }
        }
        return false;
    }
    true
}

fn row_equal(got: &serde_json::Map<String, Value>, want: &serde_json::Map<String, Value>) -> bool {
    let keys: std::collections::BTreeSet<&String> = got.keys().chain(want.keys()).collect();
    keys.into_iter().all(|k| value_equal(got.get(k).unwrap_or(&Value::Null), want.get(k).unwrap_or(&Value::Null)))
}

fn value_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() < 1e-9,
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| value_equal(a, b)),
        _ => a == b,
    }
}

#[test]
fn the_specifications_test_suite_passes() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(suite_dir())
        .expect("the suite is in ../shared/fixtures")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "the whole suite is there: {}", files.len());
    let mut failures = Vec::new();
    let (mut passed, mut total, mut experimental_passed, mut experimental_total) = (0, 0, 0, 0);
    for file in &files {
        let suite: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let resources = suite["resources"].as_array().cloned().unwrap_or_default();
        let (mut file_pass, mut file_total) = (0, 0);
        for test in suite["tests"].as_array().unwrap() {
            let experimental = test.get("tags").and_then(Value::as_array).is_some_and(|t| t.iter().any(|t| t == "experimental"));
            let result = run(&resources, test);
            file_total += 1;
            if experimental {
                experimental_total += 1;
                experimental_passed += result.is_ok() as usize;
            } else {
                total += 1;
                passed += result.is_ok() as usize;
            }
            match result {
                Ok(()) => file_pass += 1,
                Err(why) if !experimental => failures.push(format!("{} / {}: {why}", file.file_name().unwrap().to_string_lossy(), test["title"])),
                Err(why) => println!("  (experimental) {} / {}: {why}", file.file_name().unwrap().to_string_lossy(), test["title"]),
            }
        }
        println!("{:<24} {file_pass}/{file_total}", file.file_name().unwrap().to_string_lossy());
    }
    println!("non-experimental: {passed}/{total}; experimental: {experimental_passed}/{experimental_total}");
    assert!(failures.is_empty(), "{} failing:\n{}", failures.len(), failures.join("\n\n"));
    assert!(total > 100, "the suite's tests were all run: {total}");
}
