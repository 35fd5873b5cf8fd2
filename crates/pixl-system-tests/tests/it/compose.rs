//! docker-compose.yml as Debian's docker-compose reads it (no engine needed): it refuses
//! to start without the services' tokens, and publishes no port of hasher-api,
//! imaging-api or anon-node's HTTP API unless docker-compose.host-ports.yml is added.

use std::process::Command;

fn config(env: &str, extra: &[&str]) -> std::process::Output {
    let root = pixl_testkit::repo_root();
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("env");
    std::fs::write(&env_file, env).unwrap();
    let mut command = Command::new("docker-compose");
    command.current_dir(&root).arg("--env-file").arg(&env_file).args(["-f", "docker-compose.yml"]);
    for file in extra {
        command.args(["-f", file]);
    }
    command.arg("config").output().expect("docker-compose (test/run.sh installs it)")
}

fn sample_with(token: &str) -> String {
    let sample = std::fs::read_to_string(pixl_testkit::repo_root().join(".env.sample")).unwrap();
    sample
        .lines()
        .map(|line| if line.starts_with("HASHER_API_TOKEN=") { format!("HASHER_API_TOKEN={token}") } else { line.to_owned() })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn compose_requires_the_tokens_and_publishes_no_internal_port() {
    let refused = config(&sample_with(""), &[]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("HASHER_API_TOKEN"), "{}", String::from_utf8_lossy(&refused.stderr));

    let accepted = config(&sample_with("a-long-random-token"), &[]);
    assert!(accepted.status.success(), "{}", String::from_utf8_lossy(&accepted.stderr));
    let text = String::from_utf8(accepted.stdout).unwrap();
    // The published ports, per service: docker-compose 1.29 prints each service's
    // `ports:` as a list of `host:published:target/protocol` under it.
    let (mut service, mut in_ports) = (String::new(), false);
    let mut published = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("  ").filter(|l| !l.starts_with(' ')).and_then(|l| l.strip_suffix(':')) {
            (service, in_ports) = (name.to_owned(), false);
        } else if line.starts_with("    ") && !line.starts_with("     ") && !line.starts_with("    - ") {
            in_ports = line.trim() == "ports:";
        } else if in_ports && let Some(port) = line.strip_prefix("    - ") {
            published.push((service.clone(), port.to_owned()));
        }
    }
    let services: Vec<&str> = published.iter().map(|(s, _)| s.as_str()).collect();
    for internal in ["hasher-api", "imaging-api", "ehr-api"] {
        assert!(!services.contains(&internal), "{internal} publishes a port: {published:?}");
    }
    assert_eq!(published.iter().filter(|(s, _)| s == "anon-node").count(), 1, "anon-node publishes its DICOM port only: {published:?}");

    let with_ports = config(&sample_with("a-long-random-token"), &["docker-compose.host-ports.yml"]);
    assert!(with_ports.status.success(), "{}", String::from_utf8_lossy(&with_ports.stderr));
    let text = String::from_utf8(with_ports.stdout).unwrap();
    assert!(text.contains("8000") && text.contains("8001") && text.contains("8002") && text.contains("8004"), "{text}");
}
