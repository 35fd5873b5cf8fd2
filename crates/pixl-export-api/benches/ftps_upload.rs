//! Upload throughput of export-api's FTPS uploader: the same code path as a study export
//! (one session, hidden temporary name, size check, rename), over files given on the
//! command line. `bench/export.sh` runs it against a local FTPS server beside
//! `curl --ftp-ssl` on the same files and records the ratio in docs/benchmarks.md.
//!
//! ```text
//! cargo bench -p pixl-export-api --bench ftps_upload -- \
//!     --port 2121 --user u --ca ca.pem --tls explicit --remote-dir pixl FILE...
//! ```
//! The password is read from `BENCH_FTP_PASSWORD`. Prints one line:
//! `files=N bytes=B seconds=S mb_per_s=R`.

use std::path::PathBuf;
use std::time::Instant;

use pixl_export_api::destination::FtpsTls;
use pixl_export_api::destination::ftps::{FtpsEndpoint, FtpsUploader, tls_client_config};
use secrecy::SecretString;

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let (mut host, mut port, mut user, mut ca, mut tls, mut remote_dir) =
        ("127.0.0.1".to_owned(), 21u16, String::new(), None, FtpsTls::Explicit, "pixl".to_owned());
    let mut files = Vec::new();
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--host" => host = value(),
            "--port" => port = value().parse().expect("--port is a number"),
            "--user" => user = value(),
            "--ca" => ca = Some(PathBuf::from(value())),
            "--tls" => tls = if value() == "implicit" { FtpsTls::Implicit } else { FtpsTls::Explicit },
            "--remote-dir" => remote_dir = value(),
            file => files.push(PathBuf::from(file)),
        }
    }
    assert!(!files.is_empty(), "name the files to upload");
    let password = SecretString::from(std::env::var("BENCH_FTP_PASSWORD").expect("BENCH_FTP_PASSWORD"));
    let endpoint = FtpsEndpoint { host, port, username: user, password, tls };
    let uploader = FtpsUploader::new(endpoint, tls_client_config(ca.as_deref()).expect("TLS settings"), "bench");
    let uploads: Vec<(&std::path::Path, Vec<String>)> =
        files.iter().map(|file| (file.as_path(), vec![remote_dir.clone(), file.file_name().unwrap().to_string_lossy().into_owned()])).collect();
    let bytes: u64 = files.iter().map(|f| std::fs::metadata(f).expect("readable file").len()).sum();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let started = Instant::now();
    runtime.block_on(uploader.put_files(&uploads, false)).expect("upload");
    let seconds = started.elapsed().as_secs_f64();
    println!("files={} bytes={bytes} seconds={seconds:.3} mb_per_s={:.1}", files.len(), bytes as f64 / 1e6 / seconds);
}
