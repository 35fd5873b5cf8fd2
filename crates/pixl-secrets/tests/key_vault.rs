//! The Azure Key Vault secret store, through the real Azure SDK, against the local HTTPS
//! fake of Entra ID and Key Vault (`pixl_secrets::testing::fake_key_vault`).

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use pixl_secrets::testing::fake_key_vault::FakeKeyVault;
use pixl_secrets::{SecretError, SecretsConfig};
use secrecy::{ExposeSecret, SecretString};

fn config(fake: &FakeKeyVault, ca: &std::path::Path, client_secret: &str) -> SecretsConfig {
    let pairs = HashMap::from([
        ("HASHER_API_AZ_KEY_VAULT_URL".to_owned(), fake.url()),
        ("HASHER_API_AZ_TENANT_ID".to_owned(), "00000000-0000-0000-0000-000000000001".to_owned()),
        ("HASHER_API_AZ_CLIENT_ID".to_owned(), "pixl-hasher".to_owned()),
        ("HASHER_API_AZ_CLIENT_PASSWORD".to_owned(), client_secret.to_owned()),
        ("AZURE_AUTHORITY_HOST".to_owned(), fake.url()),
        ("PIXL_EXTRA_CA_FILE".to_owned(), ca.display().to_string()),
        ("PIXL_SECRETS_TTL_SECONDS".to_owned(), "0".to_owned()),
    ]);
    SecretsConfig::from_lookup("HASHER_API", |name| pairs.get(name).cloned()).unwrap()
}

async fn fake() -> (FakeKeyVault, tempfile::TempDir) {
    let fake = FakeKeyVault::start("00000000-0000-0000-0000-000000000001", "pixl-hasher", "client-secret-value").await;
    let dir = tempfile::tempdir().unwrap();
    fake.pki.write_ca(dir.path());
    (fake, dir)
}

#[tokio::test]
async fn get_and_set_through_the_sdk_with_the_401_challenge() {
    let (fake, dir) = fake().await;
    let store = config(&fake, &dir.path().join("ca.pem"), "client-secret-value").open().unwrap();

    assert!(store.get("test-extract-uclh-omop-cdm").await.unwrap().is_none());
    store.set("test-extract-uclh-omop-cdm", &SecretString::from("a161577b49a9235a")).await.unwrap();
    let value = store.get("test-extract-uclh-omop-cdm").await.unwrap().unwrap();
    assert_eq!(value.expose_secret(), "a161577b49a9235a");
    assert_eq!(fake.state.secrets.lock().unwrap().get("test-extract-uclh-omop-cdm").map(String::as_str), Some("a161577b49a9235a"));
    assert!(fake.state.token_requests.load(Ordering::SeqCst) >= 1, "the SDK fetched a token after the challenge");
    assert_eq!(fake.state.secret_sets.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn failures_are_unavailable_errors_without_secrets() {
    let (fake, dir) = fake().await;
    let ca = dir.path().join("ca.pem");

    let wrong = config(&fake, &ca, "wrong-client-secret").open().unwrap();
    let error = wrong.get("anything").await.unwrap_err();
    assert!(matches!(error, SecretError::Unavailable { .. }), "{error}");
    assert!(!error.to_string().contains("wrong-client-secret"), "{error}");

    let store = config(&fake, &ca, "client-secret-value").open().unwrap();
    fake.state.unavailable.store(true, Ordering::SeqCst);
    assert!(matches!(store.get("anything").await, Err(SecretError::Unavailable { .. })));
    fake.state.unavailable.store(false, Ordering::SeqCst);
    assert!(store.get("anything").await.unwrap().is_none());

    fake.stop();
    // Once the fake has stopped, the store says unavailable (not "missing").
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match store.get("anything").await {
            Err(SecretError::Unavailable { .. }) => break,
            other => assert!(std::time::Instant::now() < deadline, "{other:?}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let (fake, _dir) = fake().await;
    // A CA that did not sign the fake's certificate.
    let other = tempfile::tempdir().unwrap();
    let other_ca = pixl_core::testing::tls::TestPki::new().write_ca(other.path());
    let store = config(&fake, &other_ca, "client-secret-value").open().unwrap();
    assert!(matches!(store.get("anything").await, Err(SecretError::Unavailable { .. })));
    assert_eq!(fake.state.secret_gets.load(Ordering::SeqCst), 0);
}
