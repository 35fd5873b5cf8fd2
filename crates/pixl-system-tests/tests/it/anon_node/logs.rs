//! The `pixl-anon-node` binary at trace level, receiving a real file with dcmtk `storescu`
//! and de-identifying it through the queue: its logs hold no identifier of the file or
//! the study row, and no key; and (traced with strace) every file it acknowledges or
//! records is fsynced, with its directory, first.

use pixl_testkit::dicom::pydicom_file;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dicom_dictionary_std::tags;
use pixl_core::ids::{ProjectSlug, StudyId};
use pixl_core::messages::{QueueMessage, StudyRef};
use pixl_core::queues::{Outgoing, WorkQueue};
use pixl_core::testing::TestContext;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn the_service_logs_no_identifier() {
    let ctx = TestContext::new().await;
    let dir = tempfile::tempdir().unwrap();
    let configs = dir.path().join("configs");
    std::fs::create_dir_all(&configs).unwrap();
    std::os::unix::fs::symlink(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../projects/configs/tag-operations"), configs.join("tag-operations"))
        .unwrap();
    std::fs::write(
        configs.join("log-project.yaml"),
        "project:\n  name: log-project\n  modalities: [CT]\ntag_operation_files:\n  base: [base.yaml, ct.yaml]\n\
         allowed_manufacturers:\n  - regex: '.*'\nmin_instances_per_series: 1\ndestination:\n  dicom: none\n  parquet: none\n",
    )
    .unwrap();
    let key = "log-test-hashing-key-8c1f";
    let secrets = dir.path().join("secrets.json");
    std::fs::write(&secrets, format!(r#"{{"hashing-key": "{key}"}}"#)).unwrap();

    let mut services = crate::harness::Services::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hasher_url = services.hasher_with(listener, &secrets, &configs).await.base_url;

    let (dicom_port, http_port) = (free_port(), free_port());
    let log_path = dir.path().join("node.log");
    // Under strace (syscalls with file paths): acknowledged means on disk.
    let trace_path = dir.path().join("syscalls.txt");
    let mut node = Command::new("strace")
        .args(["-f", "-qq", "-y", "-e", "trace=fsync,fdatasync,rename,renameat,renameat2", "-o"])
        .arg(&trace_path)
        .arg(pixl_testkit::bin_path("pixl-anon-node"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("PIXL_DB_NAME", &ctx.settings.database.name)
        .env("PIXL_QUEUE_PREFIX", &ctx.settings.queue_prefix)
        .env("PROJECT_CONFIGS_DIR", &configs)
        .env("HASHER_API_URL", &hasher_url)
        .env("HASHER_API_TOKEN", crate::harness::HASHER_TOKEN)
        .env("ANON_NODE_API_TOKEN", crate::harness::ANON_NODE_TOKEN)
        .env("ANON_NODE_DICOM_PORT", dicom_port.to_string())
        .env("ANON_NODE_HTTP_PORT", http_port.to_string())
        .env("ANON_NODE_ALLOWED_CALLERS", "ARCHIVE")
        .env("ANON_NODE_RAW_CACHE_DIR", dir.path().join("raw"))
        .env("ANON_NODE_ANON_STORE_DIR", dir.path().join("anon"))
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", dicom_port)).is_err() {
        assert!(Instant::now() < deadline, "anon-node did not start: {}", std::fs::read_to_string(&log_path).unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let file = pydicom_file("CT_small.dcm");
    let store = Command::new("storescu")
        .env("TCP_NODELAY", "1")
        .args(["-aet", "ARCHIVE", "-aec", "PIXL_RAW", "127.0.0.1", &dicom_port.to_string()])
        .arg(&file)
        .output()
        .unwrap();
    assert!(store.status.success(), "{}", String::from_utf8_lossy(&store.stderr));

    let object = dicom_object::open_file(&file).unwrap();
    let value = |tag| object.element(tag).unwrap().to_str().unwrap().trim().trim_end_matches('\0').to_owned();
    let (mrn, accession) = ("MRN-LOG-4471", "ACC-LOG-9932");
    let extract: i64 = sqlx::query_scalar("INSERT INTO extracts (project_slug, extract_datetime) VALUES ('log-project', now()) RETURNING id")
        .fetch_one(&ctx.pool)
        .await
        .unwrap();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO studies (extract_id, project_slug, mrn, accession_number, study_uid, state) VALUES ($1, 'log-project', $2, $3, $4, 'retrieved') RETURNING id",
    )
    .bind(extract)
    .bind(mrn)
    .bind(accession)
    .bind(value(tags::STUDY_INSTANCE_UID))
    .fetch_one(&ctx.pool)
    .await
    .unwrap();
    let message = QueueMessage::AnonymiseV1(StudyRef { study_id: StudyId(id), project: ProjectSlug::parse("log-project").unwrap() });
    ctx.broker.publish(&Outgoing { queue: WorkQueue::Anonymise, priority: 0, message }).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state: String = sqlx::query_scalar("SELECT state::text FROM studies WHERE id = $1").bind(id).fetch_one(&ctx.pool).await.unwrap();
        if state == "anonymised" {
            break;
        }
        assert!(Instant::now() < deadline, "study is {state}: {}", std::fs::read_to_string(&log_path).unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // SIGTERM to anon-node itself (strace's child); strace ends with its exit status.
    let child = Command::new("pgrep").arg("-P").arg(node.id().to_string()).output().unwrap();
    let pid = String::from_utf8(child.stdout).unwrap().trim().to_owned();
    let _ = Command::new("kill").arg("-TERM").arg(&pid).status();
    let exit = node.wait().unwrap();
    assert!(exit.success(), "anon-node stops cleanly on SIGTERM: {exit:?}");

    // The raw instance: its partial file fsynced before the rename, the study's directory
    // after it (before C-STORE success); the de-identified instance likewise, and its
    // directories, before the study is recorded.
    let trace = std::fs::read_to_string(&trace_path).unwrap();
    let lines: Vec<&str> = trace.lines().collect();
    let position = |what: &str, test: &dyn Fn(&str) -> bool| lines.iter().position(|l| test(l)).unwrap_or_else(|| panic!("no {what} in {trace}"));
    let raw = dir.path().join("raw").display().to_string();
    let anon = dir.path().join("anon").display().to_string();
    let synced_raw = position("fsync of the raw partial", &|l: &str| l.contains("fsync(") && l.contains(&raw) && l.contains(".partial>"));
    let renamed_raw = position("rename of the raw instance", &|l: &str| l.contains("rename") && l.contains(&raw) && l.contains(".dcm\""));
    let synced_raw_dir =
        lines.iter().skip(renamed_raw).position(|l| l.contains("fsync(") && l.contains(&raw) && !l.contains(".partial") && !l.contains(".dcm"));
    assert!(synced_raw < renamed_raw && synced_raw_dir.is_some(), "raw cache: fsync, rename, fsync of the directory: {trace}");
    let synced_anon = position("fsync of a de-identified partial", &|l: &str| l.contains("fsync(") && l.contains(&anon) && l.contains(".partial>"));
    let renamed_anon = position("rename of a de-identified instance", &|l: &str| l.contains("rename") && l.contains(&anon) && l.contains(".dcm\""));
    let synced_anon_dir =
        lines.iter().skip(renamed_anon).position(|l| l.contains("fsync(") && l.contains(&anon) && !l.contains(".partial") && !l.contains(".dcm"));
    assert!(synced_anon < renamed_anon && synced_anon_dir.is_some(), "anon store: fsync, rename, fsync of the directories: {trace}");
    services.stop().await;

    let mut logs = String::new();
    std::fs::File::open(&log_path).unwrap().read_to_string(&mut logs).unwrap();
    assert!(logs.contains("study de-identified"), "the logs say what happened: {logs}");
    let secrets = [
        value(tags::PATIENT_NAME),
        value(tags::PATIENT_ID),
        value(tags::STUDY_INSTANCE_UID),
        value(tags::SERIES_INSTANCE_UID),
        value(tags::SOP_INSTANCE_UID),
        value(tags::INSTITUTION_NAME),
        mrn.to_owned(),
        accession.to_owned(),
        key.to_owned(),
    ];
    for secret in secrets {
        assert!(!secret.is_empty());
        assert!(!logs.contains(&secret), "{secret:?} is in the logs");
    }
    ctx.teardown().await;
}
