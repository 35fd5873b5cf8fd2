//! Starting a hasher-api for a test.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use pixl_hasher_api::HasherConfig;
use tokio_util::sync::CancellationToken;

/// A project config directory with `blake-project` (pixl-blake2b, secrets under alias
/// `blake-alias`) and `hmac-project` (deployment default).
pub fn project_configs(dir: &Path) -> PathBuf {
    let configs = dir.join("configs");
    std::fs::create_dir_all(configs.join("tag-operations")).unwrap();
    std::fs::write(configs.join("tag-operations/base.yaml"), "[]\n").unwrap();
    let project = |name: &str, extra: &str| {
        format!(
            "project:\n  name: {name}\n  modalities: [DX]\n{extra}tag_operation_files:\n  base: [base.yaml]\ndestination:\n  dicom: none\n  parquet: none\n"
        )
    };
    std::fs::write(configs.join("blake-project.yaml"), project("blake-project", "  azure_kv_alias: blake-alias\n") + "hash_algorithm: pixl-blake2b\n").unwrap();
    std::fs::write(configs.join("hmac-project.yaml"), project("hmac-project", "")).unwrap();
    configs
}

/// Writes a local secrets file with the hashing key and the PIXL test salt for
/// `blake-alias`.
pub fn local_secrets(dir: &Path) -> PathBuf {
    let path = dir.join("secrets.json");
    std::fs::write(&path, r#"{"hashing-key": "test-key", "blake-alias": "a161577b49a9235a"}"#).unwrap();
    path
}

/// A config from `vars`; without a `HASHER_API_TOKEN` among them, in development mode
/// (`HASHER_API_ALLOW_NO_TOKEN=true`), so that tests of other behaviour need no token.
pub fn config(vars: &[(&str, String)]) -> HasherConfig {
    let mut map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    if !map.contains_key("HASHER_API_TOKEN") {
        map.insert("HASHER_API_ALLOW_NO_TOKEN".to_owned(), "true".to_owned());
    }
    HasherConfig::from_lookup(|name| map.get(name).cloned()).unwrap()
}

/// A running hasher-api.
pub struct Hasher {
    pub address: SocketAddr,
    pub shutdown: CancellationToken,
    pub server: tokio::task::JoinHandle<Result<(), pixl_hasher_api::RunFailure>>,
}

impl Hasher {
    pub async fn start(config: HasherConfig) -> Self {
        pixl_core::telemetry::init_for_tests();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(pixl_hasher_api::run(config, listener, shutdown.clone()));
        Self { address, shutdown, server }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.server.await.unwrap().unwrap();
    }
}

/// A hasher-api on the local secrets file of `dir`.
pub async fn local(dir: &Path, extra: &[(&str, String)]) -> Hasher {
    let mut vars = vec![
        ("PROJECT_CONFIGS_DIR", project_configs(dir).display().to_string()),
        ("PIXL_SECRETS_FILE", local_secrets(dir).display().to_string()),
        ("LOCAL_SALT_VALUE", "pixl_salt".to_owned()),
    ];
    vars.extend(extra.iter().cloned());
    Hasher::start(config(&vars)).await
}
