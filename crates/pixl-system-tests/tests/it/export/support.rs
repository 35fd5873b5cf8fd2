//! What the export-api tests share: a real FTPS server (pyftpdlib with a certificate made
//! at test time), de-identified studies made by the real engine, anon-node's archive
//! endpoint serving them, and export-api itself, in process or as its binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pixl_cli::demo_data::{StudySpec, radiograph_studies, write_study};
use pixl_core::ids::{ProjectSlug, StudyId};
use pixl_core::outbox::{self, MessageKind};
use pixl_core::queues::WorkQueue;
use pixl_core::testing::TestContext;
use pixl_core::testing::peers::{free_port, wait_for_port};
use pixl_core::testing::tls::TestPki;
use sqlx::Row;
use tokio_util::sync::CancellationToken;

pub const PROJECT: &str = "test-extract-uclh-omop-cdm";

/// The repository's `test/` directory.
pub fn test_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test")
}

/// A running pyftpdlib FTPS server (test/ftps_server.py), killed when dropped.
#[derive(Debug)]
pub struct FtpsServer {
    /// What the server serves: uploads land here.
    pub root: PathBuf,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// The CA that signed the server's certificate.
    pub ca_file: PathBuf,
    child: Child,
}

impl Drop for FtpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl FtpsServer {
    /// Starts a server in `dir`; `read_limit` throttles uploads (bytes per second).
    pub fn start(dir: &Path, implicit: bool, read_limit: Option<u64>) -> Self {
        let dir = dir.join(format!("ftps-{}", if implicit { "implicit" } else { "explicit" }));
        let root = dir.join("root");
        std::fs::create_dir_all(&root).unwrap();
        let pki = TestPki::new();
        let ca_file = pki.write_ca(&dir);
        std::fs::write(dir.join("server.pem"), &pki.server_cert_pem).unwrap();
        std::fs::write(dir.join("server.key"), &pki.server_key_pem).unwrap();
        let port = free_port();
        let log = dir.join("server.log");
        let mut command = Command::new("python3");
        command
            .arg(test_dir().join("ftps_server.py"))
            .args(["--root", &root.display().to_string(), "--port", &port.to_string(), "--user", "pixl-upload", "--password", "ftp-password-for-tests"])
            .args(["--cert", &dir.join("server.pem").display().to_string(), "--key", &dir.join("server.key").display().to_string()]);
        if implicit {
            command.arg("--implicit");
        }
        if let Some(limit) = read_limit {
            command.args(["--read-limit", &limit.to_string()]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("python3 with pyftpdlib and pyopenssl (test/run.sh installs them)");
        wait_for_port(port, "the FTPS server", &log);
        Self { root, port, user: "pixl-upload".to_owned(), password: "ftp-password-for-tests".to_owned(), ca_file, child }
    }

    /// Every file under the served root, relative, sorted.
    pub fn files(&self) -> Vec<String> {
        let mut found = Vec::new();
        all_files(&self.root, &mut found);
        let mut names: Vec<String> = found.iter().map(|p| p.strip_prefix(&self.root).unwrap().display().to_string()).collect();
        names.sort();
        names
    }

    /// How many times the server stored each file (by its final name): uploads go to a
    /// hidden `.<name>.partial` and are renamed, so stores are counted on the partial
    /// names in pyftpdlib's transfer log.
    pub fn stores(&self) -> std::collections::BTreeMap<String, usize> {
        let log = std::fs::read_to_string(self.root.parent().unwrap().join("server.log")).unwrap_or_default();
        let mut counts = std::collections::BTreeMap::new();
        for line in log.lines().filter(|l| l.contains(" STOR ") && l.contains("completed=1")) {
            let Some(path) = line.split(" STOR ").nth(1).and_then(|rest| rest.split_whitespace().next()) else { continue };
            let name = path.rsplit('/').next().unwrap_or(path).trim_start_matches('.').trim_end_matches(".partial").to_owned();
            *counts.entry(name).or_insert(0) += 1;
        }
        counts
    }

    /// The project's FTPS secrets for this server.
    pub fn secrets(&self, prefix: &str) -> Vec<(String, String)> {
        vec![
            (format!("{prefix}--ftp--host"), "127.0.0.1".to_owned()),
            (format!("{prefix}--ftp--port"), self.port.to_string()),
            (format!("{prefix}--ftp--username"), self.user.clone()),
            (format!("{prefix}--ftp--password"), self.password.clone()),
        ]
    }
}

/// Every file under `dir`, recursively.
pub fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { all_files(&path, out) } else { out.push(path) }
    }
}

/// Writes the local secret store (`PIXL_SECRETS_FILE`) holding `entries`.
pub fn write_secrets(path: &Path, entries: &[(String, String)]) {
    let map: serde_json::Map<String, serde_json::Value> = entries.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    std::fs::write(path, serde_json::to_vec_pretty(&map).unwrap()).unwrap();
}

/// A copy of `test/configs` whose project `PROJECT` exports DICOM to `dicom` and parquet
/// to `parquet`.
pub fn project_configs(dir: &Path, dicom: &str, parquet: &str) -> PathBuf {
    let configs = dir.join("configs");
    copy_tree(&test_dir().join("configs"), &configs);
    let path = configs.join(format!("{PROJECT}.yaml"));
    let yaml = std::fs::read_to_string(&path).unwrap();
    let yaml = yaml.replace("  dicom: \"directory\"\n  parquet: \"directory\"", &format!("  dicom: \"{dicom}\"\n  parquet: \"{parquet}\""));
    assert!(yaml.contains(&format!("dicom: \"{dicom}\"")), "the test project's destination was not rewritten");
    std::fs::write(path, yaml).unwrap();
    configs
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        // is_dir follows symbolic links (test/configs/tag-operations is one).
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target)
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A study de-identified by the real engine, in the anon store and the database, state
/// `anonymised`: what export-api finds after anon-node's work.
#[derive(Debug, Clone)]
pub struct DeidentifiedStudy {
    pub id: StudyId,
    pub pseudo_study_uid: String,
    pub pseudo_patient_id: String,
    pub instances: usize,
    /// The identifiable study it came from.
    pub original: StudySpec,
}

/// Makes `count` radiograph studies of `instances` images (`size`² pixels), de-identifies
/// them with the project's config and local keys into `<anon_store>/<PROJECT>/`, and
/// records each as an `anonymised` study of one extract.
pub async fn deidentified_studies(ctx: &TestContext, dir: &Path, anon_store: &Path, count: u32, instances: u32, size: u16) -> Vec<DeidentifiedStudy> {
    // Studies made earlier in this test are skipped: the generator is deterministic.
    let existing: i64 = sqlx::query_scalar("SELECT count(*) FROM studies").fetch_one(&ctx.pool).await.unwrap();
    let specs: Vec<StudySpec> = radiograph_studies(existing as u32 + count, instances, size).into_iter().skip(existing as usize).collect();
    let secrets = dir.join("engine-secrets.json");
    std::fs::write(&secrets, r#"{"hashing-key": "export-test-key"}"#).unwrap();
    let secrets = secrets.display().to_string();
    let keys = pixl_secrets::pseudonym_keys::KeySettings::from_lookup(|name| (name == "PIXL_SECRETS_FILE").then(|| secrets.clone())).unwrap().open().unwrap();
    let project = ProjectSlug::parse(PROJECT).unwrap();
    let extract_id: i64 = sqlx::query_scalar(
        "INSERT INTO extracts (project_slug, extract_datetime) VALUES ($1, '2024-01-01T00:00:00Z')
         ON CONFLICT (project_slug, extract_datetime) DO UPDATE SET project_slug = EXCLUDED.project_slug RETURNING id",
    )
    .bind(PROJECT)
    .fetch_one(&ctx.pool)
    .await
    .unwrap();
    let mut studies = Vec::new();
    for (index, spec) in specs.into_iter().enumerate() {
        let index = index + existing as usize;
        let input = dir.join(format!("identifiable-{index}"));
        write_study(&input, &spec).unwrap();
        let output = anon_store.join(PROJECT);
        let before: std::collections::BTreeSet<_> = std::fs::read_dir(&output).map(|d| d.map(|e| e.unwrap().file_name()).collect()).unwrap_or_default();
        let summary = pixl_cli::anonymise::anonymise(&test_dir().join("configs"), &keys, &project, &input, &output).await.unwrap();
        assert_eq!(summary.written, u64::from(instances), "{summary}");
        let added: Vec<_> = std::fs::read_dir(&output).unwrap().map(|e| e.unwrap().file_name()).filter(|n| !before.contains(n)).collect();
        let [uid] = &added[..] else { panic!("one study directory per study: {added:?}") };
        let pseudo_study_uid = uid.to_string_lossy().into_owned();
        let pseudo_patient_id = format!("{:016x}", 0xfeed_0000_u64 + index as u64);
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO studies (extract_id, project_slug, mrn, accession_number, study_uid, procedure_occurrence_id, state,
                                  pseudo_study_uid, pseudo_patient_id)
             VALUES ($1, $2, $3, $4, $5, $6, 'anonymised', $7, $8) RETURNING id",
        )
        .bind(extract_id)
        .bind(PROJECT)
        .bind(&spec.patient_id)
        .bind(&spec.accession_number)
        .bind(&spec.study_uid)
        .bind(1000 + index as i64)
        .bind(&pseudo_study_uid)
        .bind(&pseudo_patient_id)
        .fetch_one(&ctx.pool)
        .await
        .unwrap();
        studies.push(DeidentifiedStudy { id: StudyId(id), pseudo_study_uid, pseudo_patient_id, instances: instances as usize, original: spec });
    }
    studies
}

/// One test's world: its database and queues, a directory, the project's destinations,
/// `count` studies de-identified into an anon store that anon-node's routes serve, and an
/// empty secrets file for export-api (`PIXL_SECRETS_FILE`).
pub struct Fixture {
    pub ctx: TestContext,
    pub dir: tempfile::TempDir,
    pub anon_store: PathBuf,
    pub studies: Vec<DeidentifiedStudy>,
    pub anon_node: AnonNodeHttp,
    pub secrets: PathBuf,
}

impl Fixture {
    pub async fn new(dicom: &str, parquet: &str, count: u32, instances: u32, size: u16) -> Self {
        let mut ctx = TestContext::new().await;
        let dir = tempfile::tempdir().unwrap();
        ctx.settings.project_configs_dir = project_configs(dir.path(), dicom, parquet);
        ctx.settings.host_export_root_dir = dir.path().join("exports");
        let anon_store = dir.path().join("anon-store");
        let studies = if count == 0 { Vec::new() } else { deidentified_studies(&ctx, dir.path(), &anon_store, count, instances, size).await };
        let anon_node = AnonNodeHttp::start(&anon_store, &dir.path().join("raw-cache")).await;
        let secrets = dir.path().join("secrets.json");
        write_secrets(&secrets, &[]);
        Self { ctx, dir, anon_store, studies, anon_node, secrets }
    }

    /// export-api's variables for this fixture.
    pub fn vars(&self) -> Vec<(String, String)> {
        export_vars(self.dir.path(), &self.anon_node.url, &self.secrets)
    }
}

/// Queues an `export` message per study through the outbox, as anon-node does.
pub async fn queue_exports(ctx: &TestContext, studies: &[DeidentifiedStudy]) {
    let mut tx = ctx.pool.begin().await.unwrap();
    for study in studies {
        outbox::enqueue(&mut tx, study.id, MessageKind::Export, WorkQueue::Export, 0).await.unwrap();
    }
    tx.commit().await.unwrap();
    outbox::relay(&ctx.pool, &ctx.broker, 100, |_| {}).await.unwrap();
}

/// anon-node's HTTP routes (the archive endpoint) over `anon_store`, in this process.
pub struct AnonNodeHttp {
    pub url: String,
    shutdown: CancellationToken,
}

impl AnonNodeHttp {
    pub async fn start(anon_store: &Path, raw_cache: &Path) -> Self {
        let store = pixl_anon_node::archive::AnonStore::new(anon_store);
        let cache = pixl_anon_node::raw_cache::RawCache::open(raw_cache, 0).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let token = Some(secrecy::SecretString::from(crate::harness::ANON_NODE_TOKEN));
        let routes = pixl_anon_node::archive::routes(store, cache, token, pixl_core::http::Health::default());
        tokio::spawn(pixl_core::http::serve(listener, routes, shutdown.clone()));
        Self { url, shutdown }
    }
}

impl Drop for AnonNodeHttp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The variables of an export-api reading `secrets`, fetching from `anon_node_url`.
pub fn export_vars(dir: &Path, anon_node_url: &str, secrets: &Path) -> Vec<(String, String)> {
    vec![
        ("ANON_NODE_URL".to_owned(), anon_node_url.to_owned()),
        ("ANON_NODE_API_TOKEN".to_owned(), crate::harness::ANON_NODE_TOKEN.to_owned()),
        ("PIXL_SECRETS_FILE".to_owned(), secrets.display().to_string()),
        ("EXPORT_API_WORK_DIR".to_owned(), dir.join("export-work").display().to_string()),
        ("EXPORT_DIRECTORY_ROOT".to_owned(), dir.join("research-export").display().to_string()),
        ("EXPORT_API_RETRY_PAUSE".to_owned(), "0.2".to_owned()),
        ("EXPORT_API_MAX_ATTEMPTS".to_owned(), "3".to_owned()),
        ("PIXL_SECRETS_TTL_SECONDS".to_owned(), "0".to_owned()),
    ]
}

pub fn config(vars: &[(String, String)]) -> pixl_export_api::ExportConfig {
    pixl_export_api::ExportConfig::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())).unwrap()
}

/// export-api running in this process.
pub struct ExportApi {
    pub url: String,
    services: crate::harness::Services,
}

impl ExportApi {
    pub async fn start(ctx: &TestContext, vars: &[(String, String)]) -> Self {
        let mut services = crate::harness::Services::new();
        let url = services.export_api(ctx, vars).await;
        Self { url, services }
    }

    pub async fn stop(self) {
        self.services.stop().await;
    }
}

/// The variables of the binary: this test's database, queues and configs.
pub fn binary_env(ctx: &TestContext, vars: &[(String, String)]) -> Vec<(String, String)> {
    let settings = &ctx.settings;
    let mut env = vec![
        ("PIXL_DB_HOST".to_owned(), settings.database.host.clone()),
        ("PIXL_DB_PORT".to_owned(), settings.database.port.to_string()),
        ("PIXL_DB_USER".to_owned(), settings.database.user.clone()),
        ("PIXL_DB_NAME".to_owned(), settings.database.name.clone()),
        ("PIXL_QUEUE_PREFIX".to_owned(), settings.queue_prefix.clone()),
        ("PROJECT_CONFIGS_DIR".to_owned(), settings.project_configs_dir.display().to_string()),
        ("HOST_EXPORT_ROOT_DIR".to_owned(), settings.host_export_root_dir.display().to_string()),
        ("EXPORT_API_PORT".to_owned(), pixl_core::testing::peers::free_port().to_string()),
        ("PIXL_LOG_FORMAT".to_owned(), "text".to_owned()),
    ];
    env.extend(vars.iter().cloned());
    env
}

pub fn spawn(env: &[(String, String)], log: &Path) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    Command::new(pixl_testkit::bin_path("pixl-export-api"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// (state, failure reason, exported_to) of a study.
pub async fn study_state(ctx: &TestContext, id: StudyId) -> (String, Option<String>, Option<String>) {
    let row = sqlx::query("SELECT state::text AS state, failure_reason, exported_to FROM studies WHERE id = $1").bind(id.0).fetch_one(&ctx.pool).await.unwrap();
    (row.get("state"), row.get("failure_reason"), row.get("exported_to"))
}

/// Waits until every study is in one of `states`; returns (state, reason, exported_to).
pub async fn wait_for(ctx: &TestContext, studies: &[DeidentifiedStudy], states: &[&str]) -> Vec<(String, Option<String>, Option<String>)> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut rows = Vec::new();
        for study in studies {
            rows.push(study_state(ctx, study.id).await);
        }
        if rows.iter().all(|(state, _, _)| states.contains(&state.as_str())) {
            return rows;
        }
        assert!(Instant::now() < deadline, "studies did not settle: {rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The StudyInstanceUID of every DICOM entry of a zip file, and the entry count.
pub fn zip_study_uids(zip: &Path) -> Vec<String> {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(zip).unwrap()).unwrap();
    let mut uids = Vec::new();
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        let object = dicom_object::from_reader(std::io::Cursor::new(&bytes[128..])).unwrap();
        uids.push(object.element(dicom_dictionary_std::tags::STUDY_INSTANCE_UID).unwrap().to_str().unwrap().trim_end_matches('\0').to_owned());
    }
    uids
}

/// Asserts that no byte of `files`, and no decoded parquet value, contains any of
/// `identifiers`.
pub fn assert_no_identifier_in(files: &[PathBuf], identifiers: &[String]) {
    assert!(!files.is_empty(), "nothing to scan");
    for file in files {
        let bytes = std::fs::read(file).unwrap();
        let mut texts = vec![bytes];
        if file.extension().is_some_and(|e| e == "parquet") {
            texts.push(parquet_text(file).into_bytes());
        }
        for text in &texts {
            for identifier in identifiers {
                assert!(identifier.len() >= 4, "identifier too short to scan for: {identifier:?}");
                let found = text.windows(identifier.len()).any(|w| w == identifier.as_bytes());
                assert!(!found, "{} contains the identifier {identifier:?}", file.display());
            }
        }
    }
}

/// Every value of every column of a parquet file, as text (compressed pages hide bytes).
pub fn parquet_text(path: &Path) -> String {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap().build().unwrap();
    let mut text = String::new();
    for batch in reader {
        let batch = batch.unwrap();
        for column in batch.columns() {
            // An array's Debug form lists every value.
            text.push_str(&format!("{column:?}\n"));
        }
    }
    text
}
