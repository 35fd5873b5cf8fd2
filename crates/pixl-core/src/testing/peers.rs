//! Real DICOM peers on loopback for the tests of every crate: Orthanc (Debian package
//! `orthanc`, optionally with its DICOMweb plugin `orthanc-dicomweb` and HTTP basic
//! authentication) and dcmtk's `dcmqrscp`, each with its own directory and ports, with
//! TCP_NODELAY=1 (see PEERS.md). Killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nothing listens on right now, on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits up to 30 s for something to listen on `port`, else fails with its log.
pub fn wait_for_port(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start: {}", std::fs::read_to_string(log).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running archive.
#[derive(Debug)]
pub struct Peer {
    child: Child,
    pub ae_title: String,
    pub dicom_port: u16,
    pub http_port: Option<u16>,
    /// Orthanc's HTTP user, when authentication is on.
    pub user: Option<(String, String)>,
    /// dcmqrscp's verbose log.
    log: Option<PathBuf>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What an Orthanc peer serves besides DICOM.
#[derive(Debug, Clone, Default)]
pub struct OrthancOptions {
    /// Loads the DICOMweb plugin at `/dicom-web/` (STOW-RS, QIDO-RS, WADO-RS).
    pub dicomweb: bool,
    /// Requires HTTP basic authentication with this user name and password.
    pub user: Option<(String, String)>,
}

/// Where Debian's `orthanc-dicomweb` installs the plugin.
pub const DICOMWEB_PLUGIN: &str = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so";

impl Peer {
    /// Orthanc with AE title `ae_title`, moving to `destination` (AE title, port).
    pub fn orthanc(dir: &Path, ae_title: &str, destination: (&str, u16)) -> Self {
        Self::orthanc_with(dir, ae_title, destination, &OrthancOptions::default())
    }

    /// Orthanc with `options`.
    pub fn orthanc_with(dir: &Path, ae_title: &str, destination: (&str, u16), options: &OrthancOptions) -> Self {
        let dir = dir.join(format!("orthanc-{ae_title}"));
        std::fs::create_dir_all(&dir).unwrap();
        let (http_port, dicom_port) = (free_port(), free_port());
        let mut config = serde_json::json!({
            "Name": ae_title,
            "HttpPort": http_port,
            "DicomPort": dicom_port,
            "DicomAet": ae_title,
            "StorageDirectory": dir.join("storage"),
            "IndexDirectory": dir.join("index"),
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": false,
            "DicomAlwaysAllowEcho": true,
            "DicomAlwaysAllowStore": true,
            "DicomAlwaysAllowFind": true,
            "DicomAlwaysAllowMove": true,
            "DicomAlwaysAllowGet": true,
            "DicomCheckModalityHost": false,
            "SynchronousCMove": true,
            "DicomModalities": { "pixl": [destination.0, "127.0.0.1", destination.1] },
            "Plugins": [],
        });
        if options.dicomweb {
            assert!(Path::new(DICOMWEB_PLUGIN).is_file(), "Orthanc's DICOMweb plugin is installed (Debian package orthanc-dicomweb; test/run.sh installs it)");
            config["Plugins"] = serde_json::json!([DICOMWEB_PLUGIN]);
            config["DicomWeb"] = serde_json::json!({ "Enable": true, "Root": "/dicom-web/" });
        }
        if let Some((user, password)) = &options.user {
            config["AuthenticationEnabled"] = serde_json::json!(true);
            config["RegisteredUsers"] = serde_json::json!({ user: password });
        }
        let config_path = dir.join("orthanc.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let log = dir.join("orthanc.log");
        let child = Command::new("Orthanc")
            .arg(&config_path)
            .env("TCP_NODELAY", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap())
            .spawn()
            .expect("Orthanc is installed (Debian package orthanc; test/run.sh installs it)");
        wait_for_port(http_port, "Orthanc", &log);
        wait_for_port(dicom_port, "Orthanc", &log);
        Self { child, ae_title: ae_title.to_owned(), dicom_port, http_port: Some(http_port), user: options.user.clone(), log: None }
    }

    /// dcmqrscp with AE title `ae_title`, moving to `destination` (AE title, port).
    pub fn dcmqrscp(dir: &Path, ae_title: &str, destination: (&str, u16)) -> Self {
        let dir = dir.join(format!("dcmqrscp-{ae_title}"));
        let storage = dir.join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let port = free_port();
        let config = format!(
            "NetworkTCPPort = {port}\nMaxPDUSize = 16384\nMaxAssociations = 16\n\n\
             HostTable BEGIN\npixl = ({}, 127.0.0.1, {})\nHostTable END\n\n\
             VendorTable BEGIN\nVendorTable END\n\n\
             AETable BEGIN\n{ae_title} {} RW (200, 1024mb) ANY\nAETable END\n",
            destination.0,
            destination.1,
            storage.display()
        );
        let config_path = dir.join("dcmqrscp.cfg");
        std::fs::write(&config_path, config).unwrap();
        let log = dir.join("dcmqrscp.log");
        // Verbose, each line prefixed with the process id: dcmqrscp forks a process per
        // association, and their lines interleave in the one log (see `moves_per_study`).
        // A file appender in append mode writes each line with one write(2) on an O_APPEND
        // file, so lines of different processes never mix; the console appender wrote a
        // line in pieces to the shared stderr, and pieces of two processes' lines mixed.
        let log_config = dir.join("log.cfg");
        std::fs::write(
            &log_config,
            format!(
                "log4cplus.rootLogger = INFO, file\n\
                 log4cplus.appender.file = log4cplus::FileAppender\n\
                 log4cplus.appender.file.File = {}\n\
                 log4cplus.appender.file.Append = true\n\
                 log4cplus.appender.file.ImmediateFlush = true\n\
                 log4cplus.appender.file.layout = log4cplus::PatternLayout\n\
                 log4cplus.appender.file.layout.ConversionPattern = %i %P: %m%n\n",
                log.display()
            ),
        )
        .unwrap();
        let child = Command::new("dcmqrscp")
            .arg("-lc")
            .arg(&log_config)
            .arg("-c")
            .arg(&config_path)
            .arg(port.to_string())
            .env("TCP_NODELAY", "1")
            .stdout(std::fs::File::create(dir.join("dcmqrscp.out")).unwrap())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap())
            .spawn()
            .expect("dcmqrscp is installed (Debian package dcmtk)");
        wait_for_port(port, "dcmqrscp", &log);
        Self { child, ae_title: ae_title.to_owned(), dicom_port: port, http_port: None, user: None, log: Some(log) }
    }

    /// dcmqrscp only: how many C-MOVE requests it received per StudyInstanceUID (from its
    /// verbose log, where each request's identifier follows "Move SCP Request Identifiers"
    /// in the lines of the same process).
    pub fn moves_per_study(&self) -> std::collections::BTreeMap<String, usize> {
        let log = std::fs::read_to_string(self.log.as_ref().expect("a dcmqrscp peer")).unwrap_or_default();
        let mut moves = std::collections::BTreeMap::new();
        let mut in_move: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
        for line in log.lines() {
            let Some((pid, text)) = line.split_once(' ') else { continue };
            if text.contains("Move SCP Request Identifiers:") {
                in_move.insert(pid);
            } else if text.contains("(0020,000d)") && in_move.remove(pid) {
                // The value in brackets after the tag itself, not the first on the line.
                let after_tag = text.split("(0020,000d)").nth(1).unwrap_or_default();
                let uid = after_tag.split('[').nth(1).and_then(|rest| rest.split(']').next()).unwrap_or_default().trim_end_matches('\0').to_owned();
                *moves.entry(uid).or_insert(0) += 1;
            }
        }
        moves
    }

    /// Loads files into the archive: over REST for Orthanc, with storescu for dcmqrscp.
    pub async fn load(&self, files: &[PathBuf]) {
        match self.http_port {
            Some(http) => {
                let client = reqwest::Client::new();
                for file in files {
                    let mut request = client.post(format!("http://127.0.0.1:{http}/instances")).body(std::fs::read(file).unwrap());
                    if let Some((user, password)) = &self.user {
                        request = request.basic_auth(user, Some(password));
                    }
                    let response = request.send().await.unwrap();
                    assert!(response.status().is_success(), "Orthanc refused {}: {}", file.display(), response.status());
                }
            }
            None => {
                let output = Command::new("storescu")
                    .env("TCP_NODELAY", "1")
                    .args(["-aet", "LOADER", "-aec", &self.ae_title, "127.0.0.1", &self.dicom_port.to_string()])
                    .args(files)
                    .output()
                    .unwrap();
                assert!(output.status.success(), "storescu into dcmqrscp: {}", String::from_utf8_lossy(&output.stderr));
            }
        }
    }
}
