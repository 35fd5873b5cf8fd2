//! The test Bulk Data server over a folder of NDJSON files (`<Type>.ndjson`, as `pixl fhir
//! generate` writes), for the download benchmark (`bench/fhir_download.sh`). An open server:
//! no tokens, `requiresAccessToken` false, the manifest ready at the first poll.
//!
//! `cargo run -p pixl-fhir-bulk --features test-support --example bulk_server -- DIR [--gzip] [--lines-per-file N]`
//! prints the FHIR base URL on its first line and serves until killed.

use std::collections::BTreeMap;

use pixl_fhir_bulk::testing::{BulkServer, RetryAfterStyle, Script};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().expect("usage: bulk_server DIR [--gzip] [--lines-per-file N]"));
    let (mut gzip, mut lines_per_file) = (false, 100_000);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--gzip" => gzip = true,
            "--lines-per-file" => lines_per_file = args.next().and_then(|n| n.parse().ok()).expect("--lines-per-file N"),
            other => panic!("unknown argument {other}"),
        }
    }
    let mut data: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("the NDJSON folder") {
        let path = entry.expect("a folder entry").path();
        if path.extension().is_some_and(|e| e == "ndjson") {
            let resource_type = path.file_stem().unwrap().to_string_lossy().split('.').next().unwrap().to_owned();
            let text = std::fs::read_to_string(&path).expect("a readable file");
            data.entry(resource_type).or_default().extend(text.lines().filter(|l| !l.is_empty()).map(str::to_owned));
        }
    }
    let script = Script { requires_access_token: false, gzip, lines_per_file, polls_before_done: 0, retry_after: RetryAfterStyle::None, ..Script::default() };
    let server = BulkServer::start(data, script).await;
    println!("{}", server.base);
    std::future::pending::<()>().await;
}
