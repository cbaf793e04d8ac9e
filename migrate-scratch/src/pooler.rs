//! A throwaway PgBouncer in front of a scratch cluster, for tests of how the runtime behaves
//! behind a connection pooler.

use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cluster::{SUPERUSER, ScratchCluster, free_port};
use crate::error::{ScratchError, io_error};
use crate::process::{Launcher, RunAs};

/// PgBouncer's `pool_mode` (<https://www.pgbouncer.org/config.html#pool_mode>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// A server connection per client connection, for the client's whole session.
    Session,
    /// A server connection per transaction: session state (advisory locks, prepared
    /// statements, `SET`) does not follow the client.
    Transaction,
    /// A server connection per statement.
    Statement,
}

impl PoolMode {
    fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
            PoolMode::Statement => "statement",
        }
    }
}

/// A PgBouncer listening on a free port of 127.0.0.1, forwarding every database to one
/// scratch cluster, with trust authentication for its superuser. Stopped on drop, and by its
/// watchdog shell when this process dies.
#[derive(Debug)]
pub struct ScratchPooler {
    port: u16,
    mode: PoolMode,
    /// A shell running pgbouncer; closing its stdin stops both.
    watchdog: Option<(Child, ChildStdin)>,
    root: tempfile::TempDir,
}

fn locate() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("pgbouncer"));
    on_path
        .chain([PathBuf::from("/usr/sbin/pgbouncer")])
        .find(|candidate| candidate.is_file())
}

impl ScratchPooler {
    /// Whether PgBouncer is installed here.
    pub fn available() -> bool {
        locate().is_some()
    }

    /// Starts PgBouncer in `mode` in front of `cluster`, with a pool of `pool_size` server
    /// connections per database and user.
    pub fn start(
        cluster: &ScratchCluster,
        mode: PoolMode,
        pool_size: u32,
    ) -> Result<ScratchPooler, ScratchError> {
        let binary = locate().ok_or(ScratchError::PoolerMissing)?;
        let run_as = RunAs::for_current_process()?;
        let root = tempfile::Builder::new()
            .prefix("migrate-pooler-")
            .tempdir()
            .map_err(io_error("creating the pooler folder"))?;
        let port = free_port()?;
        let dir = root.path();
        let config = dir.join("pgbouncer.ini");
        let log = dir.join("pgbouncer.log");
        // Every role the tests use must be listed for trust authentication.
        fs::write(dir.join("userlist.txt"), format!("\"{SUPERUSER}\" \"\"\n"))
            .map_err(io_error("writing the pooler's user list"))?;
        fs::write(
            &config,
            format!(
                "[databases]\n\
                 * = host={host} port={server_port}\n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir =\n\
                 auth_type = trust\n\
                 auth_file = {users}\n\
                 pool_mode = {mode}\n\
                 default_pool_size = {pool_size}\n\
                 max_client_conn = 500\n\
                 logfile = {log}\n\
                 ignore_startup_parameters = extra_float_digits\n",
                host = cluster.host(),
                server_port = cluster.port(),
                users = dir.join("userlist.txt").display(),
                mode = mode.as_str(),
                log = log.display(),
            ),
        )
        .map_err(io_error("writing pgbouncer.ini"))?;
        if let Some(run_as) = &run_as {
            run_as.chown(dir)?;
            for file in ["pgbouncer.ini", "userlist.txt"] {
                run_as.chown(&dir.join(file))?;
            }
        }
        let launcher = Launcher {
            run_as,
            home: dir.to_path_buf(),
        };
        // The shell starts pgbouncer, then waits for its stdin to close (drop, or this
        // process dying) and stops it: no pooler outlives the test.
        let mut inner = launcher.command(&binary);
        inner.arg(&config);
        let mut words: Vec<String> = vec![inner.get_program().to_string_lossy().into_owned()];
        words.extend(inner.get_args().map(|a| a.to_string_lossy().into_owned()));
        let quoted: Vec<String> = words
            .iter()
            .map(|w| format!("'{}'", w.replace('\'', "'\\''")))
            .collect();
        let script = format!(
            "{} >/dev/null 2>&1 & pid=$!; cat >/dev/null; kill $pid 2>/dev/null; wait $pid",
            quoted.join(" ")
        );
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io_error("starting pgbouncer"))?;
        let stdin = child.stdin.take().ok_or_else(|| ScratchError::Io {
            what: "pgbouncer watchdog".into(),
            source: std::io::Error::other("no stdin pipe"),
        })?;
        let pooler = ScratchPooler {
            port,
            mode,
            watchdog: Some((child, stdin)),
            root,
        };
        // Readiness, polled: pgbouncer offers no "started" signal in the foreground.
        let started = Instant::now();
        let limit = Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > limit {
                let log = fs::read_to_string(&log).unwrap_or_default();
                let tail: String = log.lines().rev().take(10).collect::<Vec<_>>().join("\n");
                return Err(ScratchError::PoolerDidNotStart {
                    seconds: limit.as_secs(),
                    log: tail,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(pooler)
    }

    /// The port PgBouncer listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its pool mode.
    pub fn mode(&self) -> PoolMode {
        self.mode
    }

    /// `postgres://postgres@127.0.0.1:PORT/<database>?sslmode=disable` through the pooler.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/{database}?sslmode=disable",
            self.port
        )
    }

    /// The pooler's folder (config and log).
    pub fn dir(&self) -> &std::path::Path {
        self.root.path()
    }
}

impl Drop for ScratchPooler {
    fn drop(&mut self) {
        if let Some((mut child, mut stdin)) = self.watchdog.take() {
            let _ = stdin.flush();
            drop(stdin);
            let _ = child.wait();
        }
    }
}
