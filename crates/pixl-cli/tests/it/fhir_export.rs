//! `pixl fhir keygen | export` through the binary against the strict Bulk Data test
//! server: the key made by keygen is the one the server registers; an export killed
//! mid-download resumes with `--status` without fetching any complete file again, and its
//! files convert.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use pixl_fhir_bulk::testing::{BulkServer, Script, sample_data};

fn pixl(secrets: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pixl"));
    command.env("PIXL_SECRETS_FILE", secrets).env("PROJECT_CONFIGS_DIR", secrets.parent().unwrap());
    command
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

fn complete_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|e| e == "ndjson")).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_is_resumed_after_the_client_is_killed_and_converts() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.json");
    std::fs::write(&secrets, r#"{"hashing-key": "fhir-export-test-key"}"#).unwrap();

    // The operator's step: a key in the secret store, its public half printed for the server.
    let keygen = pixl(&secrets).args(["fhir", "keygen", "--kid", "pixl-k1", "--alg", "RS384"]).output().unwrap();
    assert!(keygen.status.success(), "{}", text(&keygen));
    let jwks: serde_json::Value = serde_json::from_slice(&keygen.stdout).unwrap();
    assert!(jwks["keys"][0].get("d").is_none(), "only the public key is printed");
    let again = pixl(&secrets).args(["fhir", "keygen", "--kid", "pixl-k2"]).output().unwrap();
    assert!(!again.status.success() && text(&again).contains("already holds"), "{}", text(&again));

    // 16 files of about 0.5 s each, two at a time: the export takes about 4 s.
    let mut clients = BTreeMap::new();
    clients.insert("pixl-cli".to_owned(), jwks["keys"].as_array().unwrap().clone());
    let script = Script { clients, lines_per_file: 50, throttle: Some(25_000), gzip: false, polls_before_done: 1, ..Script::default() };
    let server = BulkServer::start(sample_data(200), script).await;
    let out = dir.path().join("bulk");
    let args = ["fhir", "export", "--base", server.base.as_str(), "--out", out.to_str().unwrap(), "--client-id", "pixl-cli", "--parallel", "2"];
    let mut child = pixl(&secrets).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while complete_files(&out).len() < 3 {
        assert!(started.elapsed() < Duration::from_secs(60), "no file was completed within 60 s");
        assert!(child.try_wait().unwrap().is_none(), "the export ended before it could be killed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    let killed = child.wait_with_output().unwrap();
    let before_kill = complete_files(&out);
    assert!(before_kill.len() < server.file_count(), "killed mid-download");

    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("bulk-state.json")).unwrap()).unwrap();
    let status_url = state["status_url"].as_str().unwrap().to_owned();
    // The resume hint reaches a log too (stderr is not a terminal here).
    assert!(text(&killed).contains(&format!("--status {status_url}")), "{}", text(&killed));
    // An unfinished download is not converted.
    let convert =
        pixl(&secrets).args(["fhir", "convert", out.to_str().unwrap(), "--no-deid", "--out", dir.path().join("t0").to_str().unwrap()]).output().unwrap();
    assert!(!convert.status.success() && text(&convert).contains("not finished"), "{}", text(&convert));
    // Without --status, the folder's unfinished export is not replaced by a new one.
    let refused = pixl(&secrets).args(args).output().unwrap();
    assert!(!refused.status.success() && text(&refused).contains("--status"), "{}", text(&refused));

    let resumed = pixl(&secrets).args(args).args(["--status", &status_url]).output().unwrap();
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert!(text(&resumed).contains("export complete"), "{}", text(&resumed));
    for output in [&resumed, &keygen] {
        let all = text(output);
        assert!(!all.contains("Bearer") && !all.contains("PRIVATE KEY") && !all.contains("eyJ"), "no token, assertion or key in the output: {all}");
    }

    let log = server.log();
    assert_eq!(log.iter().filter(|r| r.path.ends_with("$export")).count(), 1, "one kick-off");
    assert_eq!(log.iter().filter(|r| r.method == "DELETE").count(), 1, "one DELETE");
    // Files complete before the kill were not fetched again; every file is the server's.
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("bulk-state.json")).unwrap()).unwrap();
    for entry in state["files"].as_array().unwrap() {
        let (url, file) = (entry[0].as_str().unwrap(), &entry[1]);
        let local = out.join(file["path"].as_str().unwrap());
        let name = url.rsplit('/').next().unwrap();
        let gets = log.iter().filter(|r| r.method == "GET" && r.path.ends_with(&format!("/{name}"))).count();
        if before_kill.contains(&local) {
            assert_eq!(gets, 1, "{name} was complete before the kill and fetched again");
        }
        let body = std::fs::read_to_string(&local).unwrap();
        assert!((0..server.file_count()).filter_map(|i| server.file_body(i)).any(|b| b == body), "{name}");
    }
    assert_eq!(complete_files(&out).len(), server.file_count());

    let tables = dir.path().join("tables");
    let convert = pixl(&secrets).args(["fhir", "convert", out.to_str().unwrap(), "--no-deid", "--out", tables.to_str().unwrap()]).output().unwrap();
    assert!(convert.status.success(), "{}", text(&convert));
    assert!(text(&convert).contains("800 resources"), "{}", text(&convert));
}
