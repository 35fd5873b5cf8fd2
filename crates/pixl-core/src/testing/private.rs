//! Private instances of the real RabbitMQ and Postgres, for tests that stop and restart
//! them: a test must not take the machine's shared servers away from the tests running
//! beside it. Each instance has its own directory and loopback ports and is stopped when
//! dropped. Started from the machine's own installations (`rabbitmq-server`, Debian's
//! `/usr/lib/postgresql/<version>/bin`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::peers::free_port;

fn run(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(output.status.success(), "{what} failed: {}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
}

fn wait_until(what: &str, seconds: u64, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !ready() {
        assert!(Instant::now() < deadline, "{what} did not come up within {seconds}s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// A RabbitMQ node of its own (node name, AMQP and distribution ports, data directory).
#[derive(Debug)]
pub struct PrivateRabbit {
    pub port: u16,
    node: String,
    _dir: tempfile_dir::TempDir,
}

impl PrivateRabbit {
    /// Starts a node and waits until it accepts connections.
    pub fn start() -> Self {
        let dir = tempfile_dir::TempDir::new("pixl-rabbit");
        let port = free_port();
        let node = format!("pixltest{port}@localhost");
        let root = dir.path();
        // The broker may run as another user (Debian's wrapper switches to `rabbitmq`).
        set_mode(root, 0o777);
        std::fs::write(root.join("rabbitmq.conf"), format!("listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n")).unwrap();
        std::fs::write(root.join("enabled_plugins"), "[].\n").unwrap();
        for file in ["rabbitmq.conf", "enabled_plugins"] {
            set_mode(&root.join(file), 0o666);
        }
        run(
            Command::new("rabbitmq-server")
                .arg("-detached")
                .env("RABBITMQ_NODENAME", &node)
                .env("RABBITMQ_NODE_PORT", port.to_string())
                .env("RABBITMQ_DIST_PORT", free_port().to_string())
                .env("RABBITMQ_MNESIA_BASE", root.join("mnesia"))
                .env("RABBITMQ_LOG_BASE", root.join("log"))
                .env("RABBITMQ_CONFIG_FILE", root.join("rabbitmq.conf"))
                .env("RABBITMQ_ENABLED_PLUGINS_FILE", root.join("enabled_plugins"))
                .env("RABBITMQ_PID_FILE", root.join("pid"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            "rabbitmq-server",
        );
        let rabbit = Self { port, node, _dir: dir };
        // `-detached` returns before the node has registered: until then await_startup
        // fails at once, so it is retried.
        wait_until("RabbitMQ", 120, || {
            Command::new("rabbitmqctl")
                .arg("-n")
                .arg(&rabbit.node)
                .args(["await_startup", "--timeout", "10"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        wait_until("RabbitMQ", 60, || port_open(port));
        rabbit
    }

    fn ctl(&self, args: &[&str]) {
        run(Command::new("rabbitmqctl").arg("-n").arg(&self.node).args(args), "rabbitmqctl");
    }

    /// `rabbitmqctl stop_app`: the broker closes every connection (CONNECTION_FORCED).
    pub fn stop_app(&self) {
        self.ctl(&["stop_app"]);
    }

    /// `rabbitmqctl start_app`, then waits until the port answers.
    pub fn start_app(&self) {
        self.ctl(&["start_app"]);
        wait_until("RabbitMQ", 60, || port_open(self.port));
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").arg("-n").arg(&self.node).arg("stop").stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

/// A Postgres cluster of its own (trust authentication, user `postgres`), on loopback.
#[derive(Debug)]
pub struct PrivatePostgres {
    pub port: u16,
    data: PathBuf,
    bin: PathBuf,
    _dir: tempfile_dir::TempDir,
}

/// The newest Postgres installed by Debian.
fn postgres_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> =
        std::fs::read_dir("/usr/lib/postgresql").expect("Debian's postgresql is installed").filter_map(|e| e.ok().map(|e| e.path())).collect();
    versions.sort();
    versions.pop().expect("a Postgres version").join("bin")
}

/// Runs a Postgres tool as the `postgres` user when this process is root (Postgres refuses
/// to run as root).
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl PrivatePostgres {
    /// Creates a cluster, starts it and waits until it accepts connections.
    pub fn start() -> Self {
        let dir = tempfile_dir::TempDir::new("pixl-postgres");
        set_mode(dir.path(), 0o777);
        let data = dir.path().join("data");
        let bin = postgres_bin();
        run(as_postgres(&bin.join("initdb")).arg("-D").arg(&data).args(["-A", "trust", "-U", "postgres", "--no-sync"]), "initdb");
        let postgres = Self { port: free_port(), data, bin, _dir: dir };
        postgres.start_server();
        postgres
    }

    fn pg_ctl(&self, args: &[&str]) {
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self._dir.path().display());
        run(
            as_postgres(&self.bin.join("pg_ctl")).arg("-D").arg(&self.data).args(["-o", &options, "-w", "-t", "60"]).args(args).stdout(Stdio::null()),
            "pg_ctl",
        );
    }

    fn start_server(&self) {
        self.pg_ctl(&["-l", &self._dir.path().join("server.log").display().to_string(), "start"]);
        wait_until("Postgres", 60, || port_open(self.port));
    }

    /// Stops the server at once (connections are cut, as in a crash or a restart).
    pub fn stop(&self) {
        self.pg_ctl(&["-m", "immediate", "stop"]);
    }

    /// Starts it again.
    pub fn start_again(&self) {
        self.start_server();
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A temporary directory outside `/tmp`'s per-user restrictions, removed when dropped.
mod tempfile_dir {
    use std::path::{Path, PathBuf};

    #[derive(Debug)]
    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(prefix: &str) -> Self {
            let path = std::env::temp_dir().join(format!("{prefix}-{:016x}", rand::random::<u64>()));
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
