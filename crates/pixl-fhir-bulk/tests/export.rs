//! The Bulk Data client against the strict test server: one test per behaviour of the
//! Bulk Data Access IG and SMART Backend Services that a client must get right.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pixl_core::retry::Backoff;
use pixl_fhir_bulk::export::{Event, ExportError, ExportOptions, State};
use pixl_fhir_bulk::http::RetryPolicy;
use pixl_fhir_bulk::jose::{self, Alg, SigningKey};
use pixl_fhir_bulk::testing::{BulkServer, FileFault, Logged, RetryAfterStyle, Script, sample_data};
use pixl_fhir_bulk::{BulkClient, TokenSource, discover};
use serde_json::{Value, json};

const CLIENT: &str = "pixl-test-client";

fn quick(max: Duration) -> RetryPolicy {
    RetryPolicy {
        backoff: Backoff::new(Duration::from_millis(20), Duration::from_millis(200)),
        max_tries: 5,
        retry_after_min: Duration::ZERO,
        retry_after_max: max,
    }
}

fn options(server: &BulkServer) -> ExportOptions {
    let mut options = ExportOptions::new(server.base.clone());
    options.retry = quick(Duration::from_millis(100));
    options.poll = RetryPolicy { max_tries: u32::MAX, ..quick(Duration::from_millis(100)) };
    options
}

fn script_with(key: &SigningKey) -> Script {
    let mut clients = BTreeMap::new();
    clients.insert(CLIENT.to_owned(), vec![key.public_jwk()]);
    Script { clients, lines_per_file: 40, retry_after: RetryAfterStyle::Seconds(1), ..Script::default() }
}

async fn connect(server: &BulkServer, key: SigningKey) -> (BulkClient, Arc<TokenSource>) {
    let http = reqwest::Client::new();
    let retry = quick(Duration::from_millis(100));
    let config = discover(&http, &server.base, key.alg(), &retry).await.expect("discovery");
    let tokens = Arc::new(TokenSource::new(http.clone(), &config, CLIENT, "system/*.rs", Arc::new(key), retry));
    (BulkClient::new(http, Some(tokens.clone())), tokens)
}

fn gets_of(log: &[Logged], fragment: &str) -> usize {
    log.iter().filter(|r| r.method == "GET" && r.path.contains(fragment)).count()
}

/// Every downloaded output file holds exactly the server's bytes.
fn assert_files_match(server: &BulkServer, out: &Path) {
    let state = State::load(out).unwrap().unwrap();
    let outputs: Vec<_> = state.files.iter().filter(|(_, f)| f.kind == pixl_fhir_bulk::export::FileKind::Output).collect();
    assert_eq!(outputs.len(), server.file_count());
    for (_, file) in outputs {
        let body = std::fs::read_to_string(out.join(&file.path)).unwrap();
        let expected = (0..server.file_count()).filter_map(|i| server.file_body(i)).find(|b| *b == body);
        assert!(expected.is_some(), "{} differs from every file the server has", file.path);
        assert!(file.done);
    }
}

#[tokio::test]
async fn exports_with_rs384_and_es384_keys_then_deletes_the_job() {
    for alg in [Alg::Rs384, Alg::Es384] {
        let key = SigningKey::generate(alg, "kid-1");
        let server = BulkServer::start(sample_data(50), script_with(&key)).await;
        let (client, tokens) = connect(&server, key).await;
        let out = tempfile::tempdir().unwrap();
        let summary = client.export(&options(&server), out.path()).await.expect("export");
        assert_eq!(summary.resources, BTreeMap::from([("Observation".to_owned(), 150), ("Patient".to_owned(), 50)]));
        assert_eq!((summary.files_downloaded, summary.files_skipped), (server.file_count(), 0));
        assert!(summary.job_deleted);
        assert!(server.job_deleted());
        assert_files_match(&server, out.path());
        assert!(out.path().join("Patient.001.ndjson").is_file() && out.path().join("Observation.004.ndjson").is_file());
        let log = server.log();
        assert!(log.iter().all(|r| r.status != 401), "no request went without a valid token");
        assert_eq!(tokens.tokens_requested(), 1, "one token for the whole run");
        assert_eq!(log.iter().filter(|r| r.method == "DELETE").count(), 1);
        let state = State::load(out.path()).unwrap().unwrap();
        assert!(state.complete && state.job_deleted);
        assert!(std::fs::read_dir(out.path()).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".part")));
    }
}

#[tokio::test]
async fn requests_without_a_token_get_401_and_a_bearer_challenge() {
    let key = SigningKey::generate(Alg::Es384, "k");
    let server = BulkServer::start(sample_data(2), script_with(&key)).await;
    let http = reqwest::Client::new();
    let response =
        http.get(format!("{}/$export", server.base)).header("Accept", "application/fhir+json").header("Prefer", "respond-async").send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    // A client whose key the server does not know is refused, and says so without retrying.
    let stranger = SigningKey::generate(Alg::Es384, "k");
    let (client, tokens) = connect(&server, stranger).await;
    let error = client.export(&options(&server), tempfile::tempdir().unwrap().path()).await.unwrap_err();
    assert!(matches!(&error, ExportError::Auth(pixl_fhir_bulk::smart::AuthError::Refused { error, .. }) if error == "invalid_client"), "{error}");
    assert_eq!(tokens.tokens_requested(), 1);
}

#[tokio::test]
async fn the_token_endpoint_refuses_bad_assertions() {
    let key = SigningKey::generate(Alg::Rs384, "k");
    let server = BulkServer::start(sample_data(1), script_with(&key)).await;
    let http = reqwest::Client::new();
    let token_url = server.token_url().to_owned();
    let post = |assertion: String| {
        let (http, token_url) = (http.clone(), token_url.clone());
        async move {
            let body = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "client_credentials")
                .append_pair("scope", "system/*.rs")
                .append_pair("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
                .append_pair("client_assertion", &assertion)
                .finish();
            let response = http.post(&token_url).header("Content-Type", "application/x-www-form-urlencoded").body(body).send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    let now = jose::now_secs();
    let claims = |aud: &str, exp: u64, jti: &str| json!({"iss": CLIENT, "sub": CLIENT, "aud": aud, "exp": exp, "jti": jti});
    let good = key.sign(&claims(&token_url, now + 200, "jti-1"));
    let (status, body) = post(good.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "bearer");
    for (what, assertion) in [
        ("replayed jti", good),
        ("wrong aud", key.sign(&claims("https://elsewhere/token", now + 200, "jti-2"))),
        ("expired", key.sign(&claims(&token_url, now - 10, "jti-3"))),
        ("exp more than five minutes ahead", key.sign(&claims(&token_url, now + 600, "jti-4"))),
        ("unknown kid", SigningKey::generate(Alg::Rs384, "other").sign(&claims(&token_url, now + 200, "jti-5"))),
        ("signed by another key", SigningKey::generate(Alg::Rs384, "k").sign(&claims(&token_url, now + 200, "jti-6"))),
        ("sub differs from iss", key.sign(&json!({"iss": CLIENT, "sub": "x", "aud": token_url, "exp": now + 200, "jti": "jti-7"}))),
    ] {
        let (status, body) = post(assertion).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_client")), "{what}");
    }
}

#[tokio::test]
async fn retry_after_in_seconds_and_as_an_http_date_is_obeyed_and_progress_shown() {
    for style in [RetryAfterStyle::Seconds(1), RetryAfterStyle::HttpDate(2)] {
        let key = SigningKey::generate(Alg::Es384, "k");
        let script = Script { polls_before_done: 2, retry_after: style, ..script_with(&key) };
        let server = BulkServer::start(sample_data(3), script).await;
        let (client, _) = connect(&server, key).await;
        let progress = Arc::new(Mutex::new(Vec::new()));
        let seen = progress.clone();
        let client = client.on_event(move |event| {
            if let Event::Progress(Some(p)) = event {
                seen.lock().unwrap().push(p.clone());
            }
        });
        let mut options = options(&server);
        options.poll.retry_after_max = Duration::from_secs(10);
        client.export(&options, tempfile::tempdir().unwrap().path()).await.expect("export");
        let polls: Vec<Logged> = server.log().into_iter().filter(|r| r.method == "GET" && r.path.contains("/jobs/")).collect();
        assert_eq!(polls.len(), 3, "two 202s then the manifest");
        for pair in polls.windows(2) {
            let gap = pair[1].at.duration_since(pair[0].at);
            // One second exactly, or an HTTP-date two seconds ahead with whole-second precision.
            assert!(gap >= Duration::from_millis(950), "{style:?}: polled again after {gap:?}");
        }
        assert_eq!(*progress.lock().unwrap(), ["33% done", "66% done"]);
    }
}

#[tokio::test]
async fn polling_too_fast_gets_429_and_waits() {
    let key = SigningKey::generate(Alg::Es384, "k");
    let script = Script { polls_before_done: 2, retry_after: RetryAfterStyle::None, min_poll_interval: Some(Duration::from_secs(1)), ..script_with(&key) };
    let server = BulkServer::start(sample_data(3), script).await;
    let (client, _) = connect(&server, key).await;
    let mut options = options(&server);
    options.poll.retry_after_max = Duration::from_secs(5);
    client.export(&options, tempfile::tempdir().unwrap().path()).await.expect("export");
    let log = server.log();
    let throttled = log.iter().filter(|r| r.status == 429).count();
    assert!(throttled >= 1, "the client's backoff (20 ms) is faster than the server allows");
    // After each 429 the client waited the Retry-After (1 s) before polling again.
    let polls: Vec<&Logged> = log.iter().filter(|r| r.path.contains("/jobs/") && r.method == "GET").collect();
    for pair in polls.windows(2).filter(|p| p[0].status == 429) {
        assert!(pair[1].at.duration_since(pair[0].at) >= Duration::from_millis(950));
    }
}

#[tokio::test]
async fn transient_status_errors_are_retried_and_fatal_ones_fail_without_quoting_the_server() {
    let key = SigningKey::generate(Alg::Es384, "k");
    let script = Script { polls_before_done: 1, transient_at: vec![1, 2], ..script_with(&key) };
    let server = BulkServer::start(sample_data(3), script).await;
    let (client, _) = connect(&server, key).await;
    client.export(&options(&server), tempfile::tempdir().unwrap().path()).await.expect("transient errors are retried");
    assert_eq!(server.log().iter().filter(|r| r.status == 500).count(), 2);

    let key = SigningKey::generate(Alg::Es384, "k");
    let script = Script { fatal_at: Some(2), ..script_with(&key) };
    let server = BulkServer::start(sample_data(3), script).await;
    let (client, _) = connect(&server, key).await;
    let error = client.export(&options(&server), tempfile::tempdir().unwrap().path()).await.unwrap_err();
    assert!(matches!(&error, ExportError::JobFailed { issues, .. } if issues == &[("fatal".to_owned(), "processing".to_owned())]), "{error}");
    assert!(!error.to_string().contains("Patient/p1"), "diagnostics are not repeated: {error}");
}

#[tokio::test]
async fn a_second_kick_off_waits_for_the_running_export() {
    let key = SigningKey::generate(Alg::Es384, "k");
    let script = Script { polls_before_done: 0, ..script_with(&key) };
    let server = BulkServer::start(sample_data(3), script).await;
    let (client, tokens) = connect(&server, key).await;
    // Another export is running: kicked off by hand, finished 1.5 s later by its first poll.
    let http = reqwest::Client::new();
    let token = secrecy::ExposeSecret::expose_secret(&tokens.token().await.unwrap()).to_owned();
    let first = http
        .get(format!("{}/$export", server.base))
        .bearer_auth(&token)
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 202);
    let location = first.headers()["content-location"].to_str().unwrap().to_owned();
    let finisher = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        http.get(location).bearer_auth(token).send().await.unwrap().status()
    });
    let mut options = options(&server);
    options.retry.retry_after_max = Duration::from_secs(2);
    client.export(&options, tempfile::tempdir().unwrap().path()).await.expect("export after the running one");
    assert_eq!(finisher.await.unwrap(), 200);
    let kick_offs: Vec<u16> = server.log().iter().filter(|r| r.path.ends_with("$export")).map(|r| r.status).collect();
    assert_eq!(kick_offs.first(), Some(&202));
    assert!(kick_offs.contains(&429) && kick_offs.last() == Some(&202), "{kick_offs:?}");
}

#[tokio::test]
async fn partial_and_paged_manifests_are_followed_and_each_file_fetched_once() {
    let key = SigningKey::generate(Alg::Es384, "k");
    let script = Script { polls_before_done: 3, files_per_page: Some(2), partial_in_202: true, lines_per_file: 20, ..script_with(&key) };
    let server = BulkServer::start(sample_data(30), script).await;
    let (client, _) = connect(&server, key).await;
    let mut options = options(&server);
    options.params.allow_partial_manifests = true;
    let out = tempfile::tempdir().unwrap();
    let summary = client.export(&options, out.path()).await.expect("export");
    assert_eq!(summary.resources.values().sum::<u64>(), 120);
    let log = server.log();
    assert!(log.iter().any(|r| r.query.contains("page=3")), "the next links were followed");
    let file_gets: Vec<&Logged> = log.iter().filter(|r| r.path.contains("/files/")).collect();
    let distinct: std::collections::HashSet<&str> = file_gets.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(file_gets.len(), distinct.len(), "no file fetched twice");
    assert_eq!(distinct.len(), server.file_count());
    // Downloads started while the job was still running (files of the 202's partial manifests).
    let first_file = log.iter().position(|r| r.path.contains("/files/")).unwrap();
    let last_202 = log.iter().rposition(|r| r.status == 202 && r.path.contains("/jobs/")).unwrap();
    assert!(first_file < last_202, "downloads began during polling");
    assert!(State::load(out.path()).unwrap().unwrap().manifests.len() >= 3);
    assert_files_match(&server, out.path());
}

#[tokio::test]
async fn the_token_goes_with_downloads_only_when_required() {
    for requires in [true, false] {
        let key = SigningKey::generate(Alg::Es384, "k");
        let script = Script { requires_access_token: requires, ..script_with(&key) };
        let server = BulkServer::start(sample_data(5), script).await;
        let (client, _) = connect(&server, key).await;
        client.export(&options(&server), tempfile::tempdir().unwrap().path()).await.expect("export");
        let downloads: Vec<Logged> = server.log().into_iter().filter(|r| r.path.contains("/files/")).collect();
        assert!(!downloads.is_empty());
        assert!(downloads.iter().all(|r| r.authorization == requires && r.status == 200), "requiresAccessToken {requires}");
    }
}

#[tokio::test]
async fn gzip_is_asked_for_and_gives_the_same_bytes_as_identity() {
    for gzip in [true, false] {
        let key = SigningKey::generate(Alg::Es384, "k");
        let server = BulkServer::start(sample_data(40), Script { gzip, ..script_with(&key) }).await;
        let (client, _) = connect(&server, key).await;
        let out = tempfile::tempdir().unwrap();
        client.export(&options(&server), out.path()).await.expect("export");
        assert!(server.log().iter().filter(|r| r.path.contains("/files/")).all(|r| r.accept_encoding.as_deref().is_some_and(|e| e.contains("gzip"))));
        assert_files_match(&server, out.path());
    }
}

#[tokio::test]
async fn unavailable_and_cut_off_downloads_are_retried_but_wrong_content_fails() {
    let key = SigningKey::generate(Alg::Es384, "k");
    let mut faults = BTreeMap::new();
    faults.insert(0, FileFault { unavailable: 2, ..FileFault::default() });
    faults.insert(1, FileFault { truncated: 1, ..FileFault::default() });
    faults.insert(2, FileFault { wrong_type: true, ..FileFault::default() });
    faults.insert(3, FileFault { wrong_count: true, ..FileFault::default() });
    let script = Script { faults, gzip: false, ..script_with(&key) };
    let server = BulkServer::start(sample_data(50), script).await;
    let (client, _) = connect(&server, key).await;
    let out = tempfile::tempdir().unwrap();
    let error = client.export(&options(&server), out.path()).await.unwrap_err();
    let ExportError::Downloads { failed, total, problems } = &error else { panic!("{error}") };
    assert_eq!((*failed, *total), (2, server.file_count()));
    let text = problems.join("\n");
    assert!(text.contains("line 21 is of another resource type than the manifest's Observation"), "{text}");
    assert!(text.contains("resources, the manifest says 31"), "{text}");
    let state = State::load(out.path()).unwrap().unwrap();
    let done: Vec<&str> = state.files.iter().filter(|(_, f)| f.done).map(|(_, f)| f.path.as_str()).collect();
    assert_eq!(done.len(), server.file_count() - 2, "{done:?}");
    // The retried files are complete and exact.
    for name in ["Observation.001.ndjson", "Observation.002.ndjson"] {
        let body = std::fs::read_to_string(out.path().join(name)).unwrap();
        assert!((0..server.file_count()).filter_map(|i| server.file_body(i)).any(|b| b == body), "{name}");
    }
    // Failed files leave nothing behind, and the job is kept for a rerun.
    assert!(!out.path().join("Observation.003.ndjson").exists() && !out.path().join("Observation.003.ndjson.part").exists());
    assert!(!server.job_deleted());
}

#[tokio::test]
async fn error_and_deleted_files_are_kept_and_summarised() {
    let key = SigningKey::generate(Alg::Es384, "k");
    let server = BulkServer::start(sample_data(5), Script { error_and_deleted: true, ..script_with(&key) }).await;
    let (client, _) = connect(&server, key).await;
    let out = tempfile::tempdir().unwrap();
    let summary = client.export(&options(&server), out.path()).await.expect("export");
    assert_eq!(summary.outcome_issues, BTreeMap::from([(("warning".to_owned(), "processing".to_owned()), 1)]));
    assert_eq!(summary.deleted_entries, 1);
    assert!(out.path().join("error/OperationOutcome.001.ndjson").is_file());
    assert!(out.path().join("deleted/Bundle.001.ndjson").is_file());
}

#[tokio::test]
async fn unknown_parameters_fail_unless_lenient() {
    let key = SigningKey::generate(Alg::Es384, "k");
    let server = BulkServer::start(sample_data(5), script_with(&key)).await;
    let (client, _) = connect(&server, key).await;
    let mut options = options(&server);
    // The test server does not support organizeOutputBy.
    options.params.organize_output_by = Some("Patient".to_owned());
    let error = client.export(&options, tempfile::tempdir().unwrap().path()).await.unwrap_err();
    assert!(matches!(&error, ExportError::KickOffRefused { status, issues } if status.as_u16() == 400 && issues[0].1 == "not-supported"), "{error}");
    options.lenient = true;
    let summary = client.export(&options, tempfile::tempdir().unwrap().path()).await.expect("lenient export");
    assert_eq!(summary.outcome_issues, BTreeMap::from([(("warning".to_owned(), "not-supported".to_owned()), 1)]));
    let kick_off = server.log().into_iter().rfind(|r| r.path.ends_with("$export")).unwrap();
    assert!(kick_off.query.contains("organizeOutputBy=Patient"));
}

#[tokio::test]
async fn post_kick_off_with_patients_and_type_filters() {
    let key = SigningKey::generate(Alg::Es384, "k");
    let server = BulkServer::start(sample_data(5), script_with(&key)).await;
    let (client, _) = connect(&server, key).await;
    let mut options = options(&server);
    options.level = pixl_fhir_bulk::Level::Group("cohort-1".to_owned());
    options.params.patients = vec!["Patient/p1".to_owned()];
    options.params.types = vec!["Patient".to_owned()];
    options.params.type_filters = vec!["Patient?gender=female,male".to_owned()];
    let summary = client.export(&options, tempfile::tempdir().unwrap().path()).await.expect("export");
    assert_eq!(summary.resources.keys().collect::<Vec<_>>(), ["Patient"], "the server applied _type from the Parameters body");
    let kick_off = server.log().into_iter().find(|r| r.path.ends_with("$export")).unwrap();
    assert_eq!((kick_off.method.as_str(), kick_off.path.as_str()), ("POST", "/fhir/Group/cohort-1/$export"));
}

#[tokio::test]
async fn tokens_are_renewed_before_they_expire_during_slow_downloads() {
    let key = SigningKey::generate(Alg::Es384, "k");
    // Tokens last 2 s; each of the 8 files takes about 0.5 s, one at a time.
    let script = Script { expires_in: 2, token_lifetime: Duration::from_secs(2), throttle: Some(4_000), lines_per_file: 10, gzip: false, ..script_with(&key) };
    let server = BulkServer::start(sample_data(20), script).await;
    let (client, tokens) = connect(&server, key).await;
    let mut options = options(&server);
    options.parallel = 1;
    client.export(&options, tempfile::tempdir().unwrap().path()).await.expect("export");
    let log = server.log();
    assert!(log.iter().all(|r| r.status != 401), "every token was renewed before it expired");
    assert!(tokens.tokens_requested() >= 2, "{} tokens", tokens.tokens_requested());
}

#[tokio::test]
async fn at_most_parallel_downloads_at_once() {
    let key = SigningKey::generate(Alg::Es384, "k");
    // 12 files of about 0.1 s each.
    let script = Script { throttle: Some(20_000), lines_per_file: 10, gzip: false, ..script_with(&key) };
    let server = BulkServer::start(sample_data(30), script).await;
    let (client, _) = connect(&server, key).await;
    for parallel in [1, 3] {
        let mut options = options(&server);
        options.parallel = parallel;
        server.reset_peak();
        client.export(&options, tempfile::tempdir().unwrap().path()).await.expect("export");
        assert_eq!(server.peak_concurrent_downloads(), parallel, "parallel {parallel}");
    }
}

#[tokio::test]
async fn a_rerun_with_the_status_url_skips_complete_files_and_finishes() {
    let key = SigningKey::generate(Alg::Es384, "k");
    let mut faults = BTreeMap::new();
    faults.insert(2, FileFault { unavailable: 2, ..FileFault::default() });
    let server = BulkServer::start(sample_data(50), Script { faults, ..script_with(&key) }).await;
    let pem = key.to_pkcs8_pem();
    let (client, _) = connect(&server, key).await;
    let out = tempfile::tempdir().unwrap();
    let mut options = options(&server);
    options.retry.max_tries = 2;
    let error = client.export(&options, out.path()).await.unwrap_err();
    assert!(matches!(error, ExportError::Downloads { failed: 1, .. }), "{error}");
    // Without --status, the folder's unfinished export is not silently replaced.
    let refused = client.export(&options, out.path()).await.unwrap_err();
    assert!(refused.to_string().contains("--status"), "{refused}");
    let status_url = State::load(out.path()).unwrap().unwrap().status_url.unwrap();
    options.status_url = Some(url::Url::parse(&status_url).unwrap());
    let summary = client.export(&options, out.path()).await.expect("resumed export");
    assert_eq!(summary.resources.values().sum::<u64>(), 200);
    let log = server.log();
    assert_eq!(log.iter().filter(|r| r.path.ends_with("$export")).count(), 1, "one kick-off");
    for name in ["Patient-1", "Patient-2", "Observation-1", "Observation-4"] {
        assert_eq!(gets_of(&log, &format!("/{name}.ndjson")), 1, "{name} fetched once");
    }
    assert_eq!((summary.files_downloaded, summary.files_skipped), (1, server.file_count() - 1));
    assert_eq!(gets_of(&log, "/Observation-3.ndjson"), 3, "the failed file: two 503s, then again on the rerun");
    assert_files_match(&server, out.path());
    // DELETE, then the job and its files are gone.
    assert!(server.job_deleted());
    // The same client as another process: its own token from the same key.
    let (_, tokens) = connect(&server, SigningKey::from_text(&pem, Some("k")).unwrap()).await;
    let token = secrecy::ExposeSecret::expose_secret(&tokens.token().await.unwrap()).to_owned();
    let http = reqwest::Client::new();
    let status = http.get(&status_url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(status.status(), 404);
    assert_eq!(status.json::<Value>().await.unwrap()["resourceType"], "OperationOutcome");
    let file = format!("{}/files/job1/Patient-1.ndjson", server.base);
    assert_eq!(http.get(file).bearer_auth(&token).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn a_token_refused_before_its_announced_expiry_is_renewed_once() {
    let key = SigningKey::generate(Alg::Es384, "k");
    // The server says tokens last 300 s but forgets them after 1 s.
    let script = Script { token_lifetime: Duration::from_secs(1), polls_before_done: 2, retry_after: RetryAfterStyle::Seconds(1), ..script_with(&key) };
    let server = BulkServer::start(sample_data(5), script).await;
    let (client, tokens) = connect(&server, key).await;
    let mut options = options(&server);
    options.poll.retry_after_max = Duration::from_secs(2);
    client.export(&options, tempfile::tempdir().unwrap().path()).await.expect("export");
    let log = server.log();
    let refused = log.iter().filter(|r| r.status == 401).count();
    assert!(refused >= 1, "the server refused a token");
    assert_eq!(tokens.tokens_requested() as usize, 1 + refused, "one new token per 401, and each request retried once");
    assert!(log.iter().filter(|r| r.path.contains("/files/")).all(|r| r.status == 200));
}

#[tokio::test]
async fn keep_job_leaves_the_job_and_a_used_folder_is_refused() {
    let key = SigningKey::generate(Alg::Es384, "k");
    let server = BulkServer::start(sample_data(5), script_with(&key)).await;
    let (client, _) = connect(&server, key).await;
    let mut options = options(&server);
    options.keep_job = true;
    let out = tempfile::tempdir().unwrap();
    let summary = client.export(&options, out.path()).await.expect("export");
    assert!(!summary.job_deleted && !server.job_deleted());
    assert_eq!(server.log().iter().filter(|r| r.method == "DELETE").count(), 0);
    // A finished export's folder is not reused, nor is a folder of other files.
    let again = client.export(&options, out.path()).await.unwrap_err();
    assert!(again.to_string().contains("finished export"), "{again}");
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("Patient.001.ndjson"), "{}\n").unwrap();
    let refused = client.export(&options, other.path()).await.unwrap_err();
    assert!(refused.to_string().contains("not empty"), "{refused}");
    assert_eq!(std::fs::read_to_string(other.path().join("Patient.001.ndjson")).unwrap(), "{}\n");
}

#[tokio::test]
async fn lines_over_the_limit_fail_the_file() {
    let key = SigningKey::generate(Alg::Es384, "k");
    let server = BulkServer::start(sample_data(5), script_with(&key)).await;
    let (client, _) = connect(&server, key).await;
    let mut options = options(&server);
    options.max_line_bytes = 200;
    let error = client.export(&options, tempfile::tempdir().unwrap().path()).await.unwrap_err();
    assert!(error.to_string().contains("longer than 200 bytes"), "{error}");
}
