//! The HTTP API: known answers, batches, bad input, salts, Key Vault, auth.

use std::sync::atomic::Ordering;

use pixl_core::hashing::{HashAlgorithm, ProjectKeys};
use pixl_secrets::testing::fake_key_vault::FakeKeyVault;
use reqwest::StatusCode;

use crate::harness::{self, Hasher};

async fn get(client: &reqwest::Client, url: String) -> (StatusCode, String) {
    let response = client.get(url).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

#[tokio::test]
async fn pixl_known_answers_through_the_pixl_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let hasher = harness::local(dir.path(), &[]).await;
    let client = reqwest::Client::new();
    let cases = [
        ("", "cc8ab6f3e63235b45f3d00cbc4873efac59bf15cec4bdffd461882d57dfc010f"),
        ("&length=64", "cc8ab6f3e63235b45f3d00cbc4873efac59bf15cec4bdffd461882d57dfc010f"),
        ("&length=16", "b721eef65328a79c"),
    ];
    for (length, expected) in cases {
        let (status, body) = get(&client, hasher.url(&format!("/hash?project_slug=blake-project&message=test{length}"))).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, expected));
    }
    hasher.stop().await;
}

#[tokio::test]
async fn hmac_is_the_default_and_batches_match_single_calls() {
    let dir = tempfile::tempdir().unwrap();
    let hasher = harness::local(dir.path(), &[]).await;
    let client = reqwest::Client::new();
    let messages = ["987654321", "AA12345601", "1.2.840.1"];
    let mut singles = Vec::new();
    for message in messages {
        let (status, body) = get(&client, hasher.url(&format!("/hash?project_slug=hmac-project&message={message}&length=24"))).await;
        assert_eq!(status, StatusCode::OK);
        singles.push(body);
    }
    let batch: serde_json::Value = client
        .post(hasher.url("/hash"))
        .json(&serde_json::json!({"project_slug": "hmac-project", "messages": messages, "length": 24}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(batch["hashes"], serde_json::json!(singles));

    // The salt was created in the secret store; recomputing with it gives the same answer.
    let secrets: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("secrets.json")).unwrap()).unwrap();
    let salt = secrets["hmac-project"].as_str().unwrap();
    assert_eq!(salt.len(), 16);
    let keys = ProjectKeys::new(b"test-key".to_vec(), salt.to_owned(), "pixl_salt".to_owned(), HashAlgorithm::HmacSha256).unwrap();
    assert_eq!(singles[0], keys.hash("987654321", 24).unwrap());
    hasher.stop().await;
}

#[tokio::test]
async fn bad_input_gets_400_naming_the_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let hasher = harness::local(dir.path(), &[]).await;
    let client = reqwest::Client::new();
    let cases = [
        ("/hash?project_slug=hmac-project&message=secret-mrn&length=1", StatusCode::BAD_REQUEST, "invalid parameter length: must be from 2 to 64"),
        ("/hash?project_slug=hmac-project&message=secret-mrn&length=65", StatusCode::BAD_REQUEST, "invalid parameter length: must be from 2 to 64"),
        ("/hash?project_slug=hmac-project&message=secret-mrn&length=ten", StatusCode::BAD_REQUEST, "invalid parameter length: must be a whole number"),
        ("/hash?message=secret-mrn", StatusCode::BAD_REQUEST, "missing parameter: project_slug"),
        ("/hash?project_slug=hmac-project", StatusCode::BAD_REQUEST, "missing parameter: message"),
        ("/hash?project_slug=hmac-project&message=", StatusCode::BAD_REQUEST, "invalid parameter message: is empty"),
        ("/hash?project_slug=../etc&message=secret-mrn", StatusCode::BAD_REQUEST, "invalid parameter project_slug"),
        ("/hash?project_slug=nobody&message=secret-mrn", StatusCode::NOT_FOUND, "unknown project \\\"nobody\\\""),
    ];
    for (path, status, expected) in cases {
        let (got_status, body) = get(&client, hasher.url(path)).await;
        assert_eq!(got_status, status, "{path}: {body}");
        assert!(body.starts_with("{\"error\":") && body.contains(expected), "{path}: {body}");
        assert!(!body.contains("secret-mrn"), "{path}: {body}");
    }
    let posts = [
        (serde_json::json!({"project_slug": "hmac-project"}), "missing parameter: messages"),
        (serde_json::json!({"project_slug": "hmac-project", "messages": ["a", ""]}), "message 1 is empty"),
        (serde_json::json!({"project_slug": "hmac-project", "messages": ["secret-mrn"], "length": 0}), "invalid parameter length"),
        (serde_json::json!({"messages": ["secret-mrn"]}), "missing parameter: project_slug"),
        (serde_json::json!({"project_slug": "hmac-project", "messages": "secret-mrn"}), "invalid parameter body: not a batch request (wrong field or type"),
    ];
    for (body, expected) in posts {
        let response = client.post(hasher.url("/hash")).json(&body).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let text = response.text().await.unwrap();
        assert!(text.contains(expected) && !text.contains("secret-mrn"), "{text}");
    }
    let too_many: Vec<String> = (0..10_001).map(|i| i.to_string()).collect();
    let response = client.post(hasher.url("/hash")).json(&serde_json::json!({"project_slug": "hmac-project", "messages": too_many})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    hasher.stop().await;
}

async fn key_vault_hasher(fake: &FakeKeyVault, dir: &std::path::Path) -> Hasher {
    let ca = fake.pki.write_ca(dir);
    Hasher::start(harness::config(&[
        ("PROJECT_CONFIGS_DIR", harness::project_configs(dir).display().to_string()),
        ("HASHER_API_AZ_KEY_VAULT_URL", fake.url()),
        ("AZURE_AUTHORITY_HOST", fake.url()),
        ("HASHER_API_AZ_TENANT_ID", "tenant-1".to_owned()),
        ("HASHER_API_AZ_CLIENT_ID", "hasher".to_owned()),
        ("HASHER_API_AZ_CLIENT_PASSWORD", "kv-client-secret".to_owned()),
        ("PIXL_EXTRA_CA_FILE", ca.display().to_string()),
        ("LOCAL_SALT_VALUE", "pixl_salt".to_owned()),
    ]))
    .await
}

#[tokio::test]
async fn a_new_project_salt_is_created_once_under_concurrent_first_requests() {
    let fake = FakeKeyVault::start("tenant-1", "hasher", "kv-client-secret").await;
    fake.state.secrets.lock().unwrap().insert("hashing-key".to_owned(), "test-key".to_owned());
    let dir = tempfile::tempdir().unwrap();
    let hasher = key_vault_hasher(&fake, dir.path()).await;
    let client = reqwest::Client::new();
    let requests = (0..20).map(|_| get(&client, hasher.url("/hash?project_slug=hmac-project&message=987654321")));
    let answers = futures_util::future::join_all(requests).await;
    assert!(answers.iter().all(|(status, _)| *status == StatusCode::OK), "{answers:?}");
    assert!(answers.windows(2).all(|w| w[0].1 == w[1].1), "every request saw the same salt");
    assert_eq!(fake.state.secret_sets.load(Ordering::SeqCst), 1, "the salt was stored once");
    let salt = fake.state.secrets.lock().unwrap().get("hmac-project").cloned().unwrap();
    assert_eq!(salt.len(), 16);
    hasher.stop().await;
}

#[tokio::test]
async fn pixl_known_answer_with_keys_from_key_vault() {
    let fake = FakeKeyVault::start("tenant-1", "hasher", "kv-client-secret").await;
    fake.state.secrets.lock().unwrap().extend([("hashing-key".to_owned(), "test-key".to_owned()), ("blake-alias".to_owned(), "a161577b49a9235a".to_owned())]);
    let dir = tempfile::tempdir().unwrap();
    let hasher = key_vault_hasher(&fake, dir.path()).await;
    let (status, body) = get(&reqwest::Client::new(), hasher.url("/hash?project_slug=blake-project&message=test&length=16")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "b721eef65328a79c"));
    assert_eq!(fake.state.secret_sets.load(Ordering::SeqCst), 0, "an existing salt is not replaced");
    hasher.stop().await;
}

#[tokio::test]
async fn an_unavailable_key_vault_gives_503_and_recovers() {
    let fake = FakeKeyVault::start("tenant-1", "hasher", "kv-client-secret").await;
    fake.state.secrets.lock().unwrap().insert("hashing-key".to_owned(), "test-key".to_owned());
    fake.state.unavailable.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let hasher = key_vault_hasher(&fake, dir.path()).await;
    let client = reqwest::Client::new();
    let response = client.get(hasher.url("/hash?project_slug=hmac-project&message=987654321")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers().get("retry-after").unwrap(), "1");
    let body = response.text().await.unwrap();
    assert!(body.contains("secret store Azure Key Vault is unavailable") && !body.contains("test-key"), "{body}");

    fake.state.unavailable.store(false, Ordering::SeqCst);
    let (status, _) = get(&client, hasher.url("/hash?project_slug=hmac-project&message=987654321")).await;
    assert_eq!(status, StatusCode::OK, "a failure is not remembered");
    hasher.stop().await;
}

#[tokio::test]
async fn the_bearer_token_guards_hash_but_not_heart_beat() {
    let dir = tempfile::tempdir().unwrap();
    let hasher = harness::local(dir.path(), &[("HASHER_API_TOKEN", "s3cret-token".to_owned())]).await;
    let client = reqwest::Client::new();
    let url = hasher.url("/hash?project_slug=hmac-project&message=x");
    assert_eq!(client.get(&url).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(client.get(&url).bearer_auth("wrong").send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(client.get(&url).bearer_auth("s3cret-token").send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(client.get(hasher.url("/heart-beat")).send().await.unwrap().status(), StatusCode::OK);
    let openapi: serde_json::Value = client.get(hasher.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(openapi["openapi"], "3.1.0");
    assert!(openapi["paths"]["/hash"]["post"].is_object());
    hasher.stop().await;
}
