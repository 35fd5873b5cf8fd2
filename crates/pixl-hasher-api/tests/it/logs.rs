//! The service as a process at debug log level: its logs hold no message, key, salt or
//! token, whatever the requests.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::harness;

#[tokio::test]
async fn logs_never_hold_messages_keys_salts_or_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let configs = harness::project_configs(dir.path());
    let secrets = harness::local_secrets(dir.path());
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_pixl-hasher-api"))
            .current_dir(dir.path())
            .env("HASHER_API_PORT", "0")
            .env("PROJECT_CONFIGS_DIR", &configs)
            .env("PIXL_SECRETS_FILE", &secrets)
            .env("LOCAL_SALT_VALUE", "local-salt-value")
            .env("HASHER_API_TOKEN", "token-value")
            .env("RUST_LOG", "trace")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut startup = Vec::new();
    let address = loop {
        let line = lines_rx.recv_timeout(std::time::Duration::from_secs(30)).expect("hasher-api started");
        startup.push(line.clone());
        if let Some(rest) = line.split("address=").nth(1) {
            break rest.split_whitespace().next().unwrap().trim_matches('"').to_owned();
        }
    };
    let client = reqwest::Client::new();
    let base = format!("http://{address}");
    let mrn = "MRN-0042-SECRET";
    for request in [
        client.get(format!("{base}/hash?project_slug=hmac-project&message={mrn}")).bearer_auth("token-value"),
        client.get(format!("{base}/hash?project_slug=blake-project&message={mrn}&length=99")).bearer_auth("token-value"),
        client.get(format!("{base}/hash?project_slug=nobody&message={mrn}")).bearer_auth("token-value"),
        client.get(format!("{base}/hash?project_slug=hmac-project&message={mrn}")).bearer_auth("wrong-token-value"),
        client.post(format!("{base}/hash")).bearer_auth("token-value").json(&serde_json::json!({"project_slug": "blake-project", "messages": [mrn]})),
    ] {
        let response = request.send().await.unwrap();
        let body = response.text().await.unwrap();
        assert!(!body.contains(mrn) && !body.contains("test-key"), "{body}");
    }
    drop(child);
    // The reader thread ends when the killed process closes its stderr.
    let logs: Vec<String> = startup.into_iter().chain(lines_rx.iter()).collect();
    assert!(logs.iter().any(|l| l.contains("created the project salt")), "request-time logging is on: {logs:?}");
    let created_salt = serde_json::from_slice::<serde_json::Value>(&std::fs::read(&secrets).unwrap()).unwrap()["hmac-project"].as_str().unwrap().to_owned();
    for secret in [mrn, "test-key", "a161577b49a9235a", "local-salt-value", "token-value", created_salt.as_str()] {
        for line in &logs {
            assert!(!line.contains(secret), "log line holds {secret:?}: {line}");
        }
    }
}

/// Kills the service when the test ends, passed or failed, so that no process outlives it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
