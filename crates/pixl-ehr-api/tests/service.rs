//! ehr-api as a service, on the machine's real Postgres (the pixl database and a synthetic
//! EMAP database) and RabbitMQ: every study's EHR row de-identified, checked and stored
//! once; the report that names its patient under a misspelt surname flagged and withheld
//! until a person releases it; a study the EHR lacks, a project without a config, an EHR
//! database that does not answer; a redelivered message that changes nothing; reports
//! kept from the extract; and `POST /deidentify`.

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use pixl_cli::demo_ehr as synthetic;
use pixl_core::config::DatabaseSettings;
use pixl_core::ids::StudyId;
use pixl_core::outbox::{self, MessageKind};
use pixl_core::queues::WorkQueue;
use pixl_core::testing::TestContext;
use pixl_ehr_api::service::{EhrConfig, run};
use sqlx::Row;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "a-long-random-ehr-token";
const PROJECT: &str = "test-extract-uclh-omop-cdm";

fn emap_settings() -> DatabaseSettings {
    DatabaseSettings {
        host: "127.0.0.1".to_owned(),
        port: 5432,
        user: "postgres".to_owned(),
        password: String::new().into(),
        name: format!("pixl_test_emap_{:016x}", rand_suffix()),
    }
}

fn rand_suffix() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)
}

struct Service {
    url: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Service {
    async fn start(ctx: &TestContext, emap: &DatabaseSettings, extra: &[(&str, &str)]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mut vars: Vec<(String, String)> = vec![
            ("EHR_API_TOKEN".into(), TOKEN.into()),
            ("EHR_API_RETRY_PAUSE".into(), "0.2".into()),
            ("EMAP_DB_HOST".into(), emap.host.clone()),
            ("EMAP_DB_PORT".into(), emap.port.to_string()),
            ("EMAP_DB_USER".into(), emap.user.clone()),
            ("EMAP_DB_NAME".into(), emap.name.clone()),
        ];
        vars.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let config = EhrConfig::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())).unwrap();
        let shutdown = CancellationToken::new();
        let settings = ctx.settings.clone();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move { run(config, &settings, listener, stop).await.unwrap() });
        Self { url, shutdown, task }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task).await.unwrap().unwrap();
    }
}

async fn insert_study(ctx: &TestContext, project: &str, mrn: &str, accession: &str, date: NaiveDate) -> StudyId {
    let extract: i64 = sqlx::query_scalar(
        "INSERT INTO extracts (project_slug, extract_datetime) VALUES ($1, '2024-01-01T00:00:00Z')
         ON CONFLICT ON CONSTRAINT extracts_identity DO UPDATE SET project_slug = EXCLUDED.project_slug RETURNING id",
    )
    .bind(project)
    .fetch_one(&ctx.pool)
    .await
    .unwrap();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO studies (extract_id, project_slug, mrn, accession_number, study_date, ehr_wanted) VALUES ($1, $2, $3, $4, $5, true) RETURNING id",
    )
    .bind(extract)
    .bind(project)
    .bind(mrn)
    .bind(accession)
    .bind(date)
    .fetch_one(&ctx.pool)
    .await
    .unwrap();
    StudyId(id)
}

async fn queue(ctx: &TestContext, studies: &[StudyId]) {
    let mut tx = ctx.pool.begin().await.unwrap();
    for study in studies {
        outbox::enqueue(&mut tx, *study, MessageKind::Ehr, WorkQueue::Ehr, 0).await.unwrap();
    }
    tx.commit().await.unwrap();
    outbox::relay(&ctx.pool, &ctx.broker, 100, |_| {}).await.unwrap();
}

/// Waits until every study has an EHR state; returns them with their failure reasons.
async fn wait_handled(ctx: &TestContext, studies: &[StudyId]) -> Vec<(String, Option<String>)> {
    let ids: Vec<i64> = studies.iter().map(|s| s.0).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = sqlx::query("SELECT id, ehr_state::text AS state, ehr_failure_reason FROM studies WHERE id = ANY($1) ORDER BY id")
            .bind(&ids)
            .fetch_all(&ctx.pool)
            .await
            .unwrap();
        if rows.len() == ids.len() && rows.iter().all(|r| r.get::<Option<String>, _>("state").is_some()) {
            let by_id: std::collections::HashMap<i64, (String, Option<String>)> =
                rows.iter().map(|r| (r.get("id"), (r.get("state"), r.get("ehr_failure_reason")))).collect();
            return ids.iter().map(|id| by_id[id].clone()).collect();
        }
        assert!(Instant::now() < deadline, "the studies were not all handled in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_study_is_deidentified_checked_and_stored_once_and_a_flagged_report_waits_for_review() {
    let ctx = TestContext::new().await;
    let emap = emap_settings();
    let date = NaiveDate::from_ymd_opt(2024, 5, 1).unwrap();
    let keys: Vec<(String, String, NaiveDate)> = (0..6).map(|i| (format!("4001{i:04}"), format!("RRV{i:07}"), date)).collect();
    let patients = synthetic::patients(&keys, 11);
    synthetic::create_database(&emap, &patients).await.unwrap();

    let mut studies = Vec::new();
    for (mrn, accession, date) in &keys {
        studies.push(insert_study(&ctx, PROJECT, mrn, accession, *date).await);
    }
    let nobody = insert_study(&ctx, PROJECT, "99999999", "RRV9999999", date).await;
    let unconfigured = insert_study(&ctx, "no-such-project", "40010000", "RRV0000000", date).await;
    let mut all = studies.clone();
    all.extend([nobody, unconfigured]);
    // One at a time: a redelivery below is handled before the message queued after it.
    let service = Service::start(&ctx, &emap, &[("EHR_API_CONCURRENCY", "1")]).await;
    queue(&ctx, &all).await;
    let states = wait_handled(&ctx, &all).await;

    // The first patient's report names them as "Walked" (for Walker): the engine keeps
    // the English word, the second check flags it.
    assert_eq!(states[0].0, "flagged");
    assert!(states[1..6].iter().all(|(state, _)| state == "done"), "{states:?}");
    assert_eq!(states[6].0, "no_record");
    assert_eq!(states[7].0, "failed");
    let reason = states[7].1.clone().unwrap();
    assert!(reason.contains("project config"), "{reason}");
    let letters = ctx.take_dead_letters(WorkQueue::Ehr).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].1, reason, "dead-lettered with the same reason");

    let flags: Vec<(String, i32, i32)> =
        sqlx::query_as("SELECT reason, span_start, span_end FROM report_flags WHERE study_id = $1").bind(studies[0].0).fetch_all(&ctx.pool).await.unwrap();
    let flagged_text: String =
        sqlx::query_scalar("SELECT report_text FROM ehr_anon WHERE study_id = $1").bind(studies[0].0).fetch_one(&ctx.pool).await.unwrap();
    assert_eq!(flags.len(), 1, "{flags:?}");
    assert_eq!(flags[0].0, "name variant");
    let flagged: String = flagged_text.chars().skip(flags[0].1 as usize).take((flags[0].2 - flags[0].1) as usize).collect();
    assert_eq!(flagged, "Walked", "the span is in characters of the stored text");

    // No identifier of any patient in any stored row; the fields are there.
    for (patient, study) in patients.iter().zip(&studies) {
        let row = sqlx::query("SELECT age, sex, ethnicity, height, weight, gcs, report_text, report_spans::text AS spans FROM ehr_anon WHERE study_id = $1")
            .bind(study.0)
            .fetch_one(&ctx.pool)
            .await
            .unwrap();
        let text: String = row.get("report_text");
        for identifier in patient.identifiers() {
            assert!(!text.contains(&identifier), "study {}: an identifier is left in the report: {text}", study.0);
        }
        assert!(text.contains("[NAME]") && text.contains("[DATE]"), "{text}");
        let expected_age = pixl_ehr_api::age_at(patient.date_of_birth, date).unwrap() as i32;
        assert_eq!(row.get::<Option<i32>, _>("age"), Some(expected_age));
        assert_eq!(row.get::<Option<String>, _>("sex").as_deref(), Some(patient.sex));
        assert!(row.get::<Option<f64>, _>("height").is_some() && row.get::<Option<f64>, _>("gcs").is_some());
        assert!(row.get::<String, _>("spans").contains("\"NAME\""));
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM ehr_anon").fetch_one(&ctx.pool).await.unwrap();
    assert_eq!(stored, 6, "no row for the study the EHR lacks or the failed one");

    // A redelivered message changes nothing: handled before the next study's message
    // (one at a time), and the stored row is as it was.
    let before: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT updated_at FROM ehr_anon WHERE study_id = $1").bind(studies[1].0).fetch_one(&ctx.pool).await.unwrap();
    let later = insert_study(&ctx, PROJECT, "99999998", "RRV9999998", date).await;
    queue(&ctx, &[studies[1], later]).await;
    assert_eq!(wait_handled(&ctx, &[later]).await[0].0, "no_record");
    let after: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT updated_at FROM ehr_anon WHERE study_id = $1").bind(studies[1].0).fetch_one(&ctx.pool).await.unwrap();
    assert_eq!(before, after);

    // Review: the flagged report is released with a reason, recorded with the operator.
    let listed = pixl_core::review::list(&ctx.pool, Some(PROJECT)).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].study_id, listed[0].reasons.get("name variant")), (studies[0].0, Some(&1)));
    let error = pixl_core::review::release(&ctx.pool, studies[0].0, "  ", "tester").await.unwrap_err();
    assert!(error.to_string().contains("reason"), "{error}");
    assert_eq!(pixl_core::review::release(&ctx.pool, studies[0].0, "a word, not the patient", "tester").await.unwrap(), 1);
    let audit: (String, String, String) =
        sqlx::query_as("SELECT action, reason, operator FROM report_reviews WHERE study_id = $1").bind(studies[0].0).fetch_one(&ctx.pool).await.unwrap();
    assert_eq!(audit, ("release".to_owned(), "a word, not the patient".to_owned(), "tester".to_owned()));
    assert!(pixl_core::review::list(&ctx.pool, None).await.unwrap().is_empty());
    assert!(pixl_core::review::redact(&ctx.pool, studies[0].0, "tester").await.is_err(), "nothing left to decide");
    let cleared: i64 = sqlx::query_scalar("SELECT count(*) FROM report_flags WHERE cleared_by IS NOT NULL").fetch_one(&ctx.pool).await.unwrap();
    assert_eq!(cleared, 1, "the flag stays on record, cleared by the review");

    service.stop().await;
    synthetic::drop_database(&emap).await.unwrap();
    ctx.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_ehr_database_fails_the_study_after_its_attempts_and_a_kept_report_is_used_then_deleted() {
    let ctx = TestContext::new().await;
    // EMAP on a port nobody listens on.
    let mut emap = emap_settings();
    emap.port = pixl_core::testing::peers::free_port();
    let date = NaiveDate::from_ymd_opt(2024, 5, 1).unwrap();
    let waiting = insert_study(&ctx, PROJECT, "40012345", "RRV1234567", date).await;
    // A project reading its reports from the extract needs no EMAP.
    let kept = insert_study(&ctx, "reports-parquet-project", "40055555", "RRV5555555", date).await;
    sqlx::query("INSERT INTO ehr_source_reports (study_id, report_text) VALUES ($1, $2)")
        .bind(kept.0)
        .bind("CT chest for MRN 40055555 on 01/05/2024: no abnormality. Reported by Dr Lindqvist.")
        .execute(&ctx.pool)
        .await
        .unwrap();
    let service = Service::start(&ctx, &emap, &[("EHR_API_MAX_ATTEMPTS", "2")]).await;
    queue(&ctx, &[waiting, kept]).await;
    let states = wait_handled(&ctx, &[waiting, kept]).await;
    assert_eq!(states[0].0, "failed");
    let reason = states[0].1.clone().unwrap();
    assert!(reason.contains("gave up after 2 attempts") && reason.contains("EHR"), "{reason}");
    assert_eq!(states[1].0, "done");
    let text: String = sqlx::query_scalar("SELECT report_text FROM ehr_anon WHERE study_id = $1").bind(kept.0).fetch_one(&ctx.pool).await.unwrap();
    assert!(!text.contains("40055555") && !text.contains("Lindqvist") && !text.contains("01/05/2024"), "{text}");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM ehr_source_reports").fetch_one(&ctx.pool).await.unwrap();
    assert_eq!(left, 0, "the raw report is deleted once de-identified");
    service.stop().await;
    ctx.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_deidentify_needs_the_token_and_answers_text_spans_and_flags() {
    let ctx = TestContext::new().await;
    let emap = emap_settings();
    let service = Service::start(&ctx, &emap, &[]).await;
    let client = reqwest::Client::new();
    let url = format!("{}/deidentify", service.url);
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{}/heart-beat", service.url)).send().await.is_err() {
        assert!(Instant::now() < deadline, "ehr-api does not answer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = serde_json::json!({
        "text": "Mr Ödön Walker (MRN 40012345) seen 3 March 2024; his sister Sarah Walked was present.",
        "probes": {"surnames": ["Walker"], "first_names": ["Ödön"], "identifiers": ["40012345"]}
    });
    assert_eq!(client.post(&url).json(&body).send().await.unwrap().status(), reqwest::StatusCode::UNAUTHORIZED);
    assert_eq!(client.post(&url).bearer_auth("wrong").json(&body).send().await.unwrap().status(), reqwest::StatusCode::UNAUTHORIZED);
    let answer: serde_json::Value = client.post(&url).bearer_auth(TOKEN).json(&body).send().await.unwrap().json().await.unwrap();
    let text = answer["text"].as_str().unwrap();
    assert!(!text.contains("Ödön") && !text.contains("40012345") && !text.contains("Walker") && !text.contains("3 March"), "{text}");
    let spans = answer["spans"].as_array().unwrap();
    // Offsets are in characters of the request's text: "Ödön Walker" is characters 3..14
    // (bytes 3..16).
    assert!(spans.iter().any(|s| s["start"] == 3 && s["end"] == 14 && s["category"] == "NAME"), "{spans:?}");
    let flags = answer["flags"].as_array().unwrap();
    assert_eq!(flags.len(), 1, "{flags:?}");
    let flagged: String = text.chars().skip(flags[0]["start"].as_u64().unwrap() as usize).take(6).collect();
    assert_eq!(flagged, "Walked");

    // A malformed body is named by kind and place, never echoed.
    let response = client.post(&url).bearer_auth(TOKEN).body(r#"{"text": "Walker", "probes": {"surnames": 40012345}}"#).send().await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::BAD_REQUEST);
    let error = response.text().await.unwrap();
    assert!(!error.contains("40012345") && !error.contains("Walker") && error.contains("line 1"), "{error}");
    let document = client.get(format!("{}/openapi.json", service.url)).send().await.unwrap().text().await.unwrap();
    assert!(document.contains("\"/deidentify\""), "{document}");
    service.stop().await;
    ctx.teardown().await;
}
