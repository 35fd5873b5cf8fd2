//! The hasher client of pixl-core against a running hasher-api.

use pixl_core::hasher_client::{HasherClient, HasherClientConfig, HasherError};
use pixl_core::ids::ProjectSlug;

use crate::harness;

fn project(name: &str) -> ProjectSlug {
    ProjectSlug::parse(name).unwrap()
}

#[tokio::test]
async fn single_batch_and_cached_calls() {
    let dir = tempfile::tempdir().unwrap();
    let hasher = harness::local(dir.path(), &[("HASHER_API_TOKEN", "tok".to_owned())]).await;
    let mut config = HasherClientConfig::new(hasher.url(""));
    config.token = Some("tok".to_owned().into());
    let client = HasherClient::new(config).unwrap();

    assert_eq!(client.hash(&project("blake-project"), "test", 16).await.unwrap(), "b721eef65328a79c");
    let messages: Vec<String> = (0..12_000).map(|i| format!("MRN{i:06}")).collect();
    let refs: Vec<&str> = messages.iter().map(String::as_str).collect();
    let hashes = client.hash_batch(&project("hmac-project"), &refs, 64).await.unwrap();
    assert_eq!(hashes.len(), 12_000, "batches larger than one request are split");
    assert_eq!(hashes[11_999], client.hash(&project("hmac-project"), "MRN011999", 64).await.unwrap());

    // With the server gone, cached answers still come back and new ones fail.
    hasher.stop().await;
    assert_eq!(client.hash(&project("blake-project"), "test", 16).await.unwrap(), "b721eef65328a79c");
    let mut quick = HasherClientConfig::new("http://127.0.0.1:9");
    quick.attempts = 2;
    quick.first_backoff = std::time::Duration::from_millis(10);
    let error = HasherClient::new(quick).unwrap().hash(&project("hmac-project"), "MRN-SECRET", 8).await.unwrap_err();
    assert!(matches!(error, HasherError::Unavailable { attempts: 2, .. }), "{error}");
    assert!(!error.to_string().contains("MRN-SECRET"));
}

#[tokio::test]
async fn retries_until_the_service_is_up() {
    let dir = tempfile::tempdir().unwrap();
    // Reserve a port, free it, and start the service there a little later.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let configs = harness::project_configs(dir.path());
    let secrets = harness::local_secrets(dir.path());
    let config = harness::config(&[
        ("PROJECT_CONFIGS_DIR", configs.display().to_string()),
        ("PIXL_SECRETS_FILE", secrets.display().to_string()),
        ("LOCAL_SALT_VALUE", "pixl_salt".to_owned()),
    ]);
    let late = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(pixl_hasher_api::run(config, listener, shutdown.clone()));
        (shutdown, server)
    });
    let client = HasherClient::new(HasherClientConfig::new(format!("http://127.0.0.1:{port}"))).unwrap();
    assert_eq!(client.hash(&project("blake-project"), "test", 64).await.unwrap(), "cc8ab6f3e63235b45f3d00cbc4873efac59bf15cec4bdffd461882d57dfc010f");

    let error = client.hash(&project("nobody"), "x", 8).await.unwrap_err();
    assert!(matches!(error, HasherError::Rejected { status: 404, .. }), "{error}");
    let (shutdown, server) = late.await.unwrap();
    shutdown.cancel();
    server.await.unwrap().unwrap();
}
