//! Every HTTP API serves an OpenAPI document generated from its handlers, and every route
//! is in it: each documented operation answers (its handler, not the router's 404 or 405),
//! the documented paths are the ones expected, and no service registers a route outside
//! the documented router.

use std::path::Path;

use pixl_core::testing::TestContext;

use crate::harness::{ANON_NODE_TOKEN, EHR_TOKEN, HASHER_TOKEN, Services};

async fn check(client: &reqwest::Client, base: &str, token: &str, expected: &[&str]) {
    let document: serde_json::Value = client.get(format!("{base}/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"), "{document}");
    let paths = document["paths"].as_object().unwrap();
    let mut documented: Vec<&str> = paths.keys().map(String::as_str).collect();
    documented.sort();
    let mut expected = expected.to_vec();
    expected.extend(["/heart-beat", "/metrics", "/openapi.json"]);
    expected.sort();
    assert_eq!(documented, expected, "{base}");
    for (path, item) in paths {
        let url = format!("{base}{}", path.replace("{uid}", "2.25.1"));
        for method in item.as_object().unwrap().keys() {
            let request = match method.as_str() {
                "get" => client.get(&url),
                "post" => client.post(&url).json(&serde_json::json!({})),
                other => panic!("{other} {path}: an unexpected method"),
            };
            let response = request.bearer_auth(token).send().await.unwrap();
            let status = response.status();
            let body = response.bytes().await.unwrap();
            assert_ne!(status, reqwest::StatusCode::METHOD_NOT_ALLOWED, "{method} {path} is not routed");
            assert!(status != reqwest::StatusCode::NOT_FOUND || !body.is_empty(), "{method} {path} is not routed");
        }
    }
}

#[tokio::test]
async fn every_route_of_every_service_is_in_its_openapi_document() {
    let ctx = TestContext::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mut services = Services::new();
    let hasher = services.hasher(dir.path(), &ctx.settings.project_configs_dir, "openapi-key").await;
    let hasher_url = hasher.base_url.clone();
    let node = services.anon_node(&ctx, dir.path(), "VNA", Some(0), hasher, vec![]).await;
    // imaging-api does not reach its archive until it has work.
    let imaging = services.imaging_api_at(&ctx, ("VNA", pixl_core::testing::peers::free_port()), None, &node.url, vec![]).await;
    let vars = crate::export::support::export_vars(dir.path(), &node.url, &dir.path().join("secrets.json"));
    let export = services.export_api(&ctx, &vars).await;
    // ehr-api does not reach its EHR database until it has work.
    let emap = pixl_core::config::DatabaseSettings { port: pixl_core::testing::peers::free_port(), ..ctx.settings.database.clone() };
    let ehr = services.ehr_api(&ctx, &emap).await;
    let client = reqwest::Client::new();
    // The services answer before they are asked anything.
    for url in [
        format!("{hasher_url}/heart-beat"),
        format!("{}/heart-beat", node.url),
        format!("http://{imaging}/heart-beat"),
        format!("{export}/heart-beat"),
        format!("{ehr}/heart-beat"),
    ] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while client.get(&url).send().await.is_err() {
            assert!(std::time::Instant::now() < deadline, "{url} does not answer");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    check(&client, &hasher_url, HASHER_TOKEN, &["/hash"]).await;
    check(&client, &node.url, ANON_NODE_TOKEN, &["/raw-cache/series", "/stores", "/studies/{uid}/archive"]).await;
    check(&client, &format!("http://{imaging}"), "", &["/token-bucket-refresh-rate"]).await;
    check(&client, &export, "", &["/export-patient-data", "/release-report"]).await;
    check(&client, &ehr, EHR_TOKEN, &["/deidentify"]).await;
    services.stop().await;
    ctx.teardown().await;
}

#[test]
fn no_service_registers_an_undocumented_route() {
    let root = pixl_testkit::repo_root().join("crates");
    for service in ["pixl-hasher-api", "pixl-anon-node", "pixl-imaging-api", "pixl-export-api", "pixl-ehr-api"] {
        let mut sources = Vec::new();
        pixl_testkit::dicom::all_files(&root.join(service).join("src"), &mut sources);
        for source in sources.iter().filter(|p| p.extension().is_some_and(|e| e == "rs")) {
            let text = std::fs::read_to_string(source).unwrap();
            assert!(!text.contains(".route("), "{}: routes go through utoipa_axum::routes! so that they are documented", Path::new(source).display());
        }
    }
}
