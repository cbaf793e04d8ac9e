//! [`ScratchCluster`]: start, standbys, connection details, stop.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use tempfile::TempDir;

use crate::binaries::{PgBinaries, ServerVersion};
use crate::database::ScratchDatabase;
use crate::error::{ScratchError, io_error};
use crate::process::{Launcher, RunAs, run};
use crate::settings::{PASSWORD_GROUP, write_replica_settings, write_settings};
use crate::tls::{TlsFiles, write_certificates};

/// Superuser of every scratch cluster (`initdb -U postgres`).
pub const SUPERUSER: &str = "postgres";
const PORT_ATTEMPTS: u32 = 8;
/// Seconds `pg_ctl -w` waits for the server to accept connections.
const START_TIMEOUT_SECS: &str = "60";

/// A running throwaway PostgreSQL cluster; stopped and deleted on drop.
pub struct ScratchCluster {
    binaries: PgBinaries,
    version: ServerVersion,
    launcher: Launcher,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    tls: Option<TlsFiles>,
    databases: AtomicU64,
    /// `cluster_name` of a standby from [`ScratchCluster::start_replica`]; `None` for a primary.
    replica_name: Option<String>,
    /// Standbys made from this cluster so far, for unique standby names.
    replicas: AtomicU64,
    /// Stops the server when its stdin closes: on drop, or when this process dies.
    watchdog: Option<(Child, ChildStdin)>,
    // Last: dropped after the server is stopped.
    root: TempDir,
}

impl fmt::Debug for ScratchCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScratchCluster")
            .field("version", &self.version.number)
            .field("data_dir", &self.data_dir)
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .field("replica_name", &self.replica_name)
            .finish()
    }
}

impl ScratchCluster {
    /// The cluster this process shares among its callers (a test binary's tests, each with
    /// databases of its own): started on first use, stopped when the process exits (by the
    /// watchdog, as a `static` is never dropped). A start that fails is tried again by the
    /// next call.
    pub fn shared() -> Result<&'static ScratchCluster, ScratchError> {
        static SHARED: std::sync::Mutex<Option<&'static ScratchCluster>> =
            std::sync::Mutex::new(None);
        let mut shared = SHARED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(cluster) = *shared {
            return Ok(cluster);
        }
        let cluster: &'static ScratchCluster = Box::leak(Box::new(ScratchCluster::start()?));
        *shared = Some(cluster);
        Ok(cluster)
    }

    /// Starts a cluster without TLS, on the binaries [`PgBinaries::locate`] finds
    /// (`$MIGRATE_PG_MAJOR` picks the major).
    pub fn start() -> Result<ScratchCluster, ScratchError> {
        ScratchCluster::start_inner(PgBinaries::locate()?, false, &[])
    }

    /// Starts a cluster without TLS on these binaries, e.g. those of production's major
    /// ([`PgBinaries::locate_major`]).
    pub fn start_on(binaries: PgBinaries) -> Result<ScratchCluster, ScratchError> {
        ScratchCluster::start_inner(binaries, false, &[])
    }

    /// Starts a cluster with `ssl=on` and a server certificate signed by a fresh CA, whose PEM
    /// is at [`TlsFiles::ca_cert`], so clients can test `sslmode=require`, `verify-ca` and
    /// `verify-full`. Plain connections are still accepted.
    pub fn start_with_tls() -> Result<ScratchCluster, ScratchError> {
        ScratchCluster::start_inner(PgBinaries::locate()?, true, &[])
    }

    /// Starts a cluster without TLS whose server loads `libraries` at start
    /// (`shared_preload_libraries`), e.g. `pg_stat_statements`, which must be loaded that way
    /// before `CREATE EXTENSION` can read its statistics
    /// (<https://www.postgresql.org/docs/15/pgstatstatements.html>). Each name must be a
    /// plain identifier.
    pub fn start_with_preloaded(libraries: &[&str]) -> Result<ScratchCluster, ScratchError> {
        ScratchCluster::start_inner(PgBinaries::locate()?, false, libraries)
    }

    fn start_inner(
        binaries: PgBinaries,
        tls: bool,
        preload: &[&str],
    ) -> Result<ScratchCluster, ScratchError> {
        let version = binaries.version()?;
        let run_as = RunAs::for_current_process()?;
        let (root, data_dir, socket_dir) =
            cluster_folder("migrate-scratch-", run_as.as_ref(), None)?;
        let launcher = Launcher {
            run_as,
            home: root.path().to_path_buf(),
        };

        let mut initdb = launcher.command(&binaries.dir().join("initdb"));
        initdb
            .arg("-D")
            .arg(&data_dir)
            .args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C"])
            // No `--no-instructions` (14+): the text it leaves out is captured, never shown.
            .arg("-N");
        run(initdb)?;

        let tls = if tls {
            Some(write_certificates(root.path(), &data_dir, &launcher)?)
        } else {
            None
        };
        write_settings(&data_dir, &socket_dir, tls.is_some(), preload)?;

        let mut cluster = ScratchCluster {
            binaries,
            version,
            launcher,
            data_dir,
            socket_dir,
            port: 0,
            tls,
            databases: AtomicU64::new(0),
            replica_name: None,
            replicas: AtomicU64::new(0),
            watchdog: None,
            root,
        };
        cluster.watchdog = Some(cluster.spawn_watchdog()?);
        cluster.start_server()?;
        cluster.psql(SUPERUSER, &format!("CREATE ROLE {PASSWORD_GROUP} NOLOGIN"))?;
        Ok(cluster)
    }

    /// Starts a hot standby of this cluster, streaming from it over TCP (127.0.0.1), on its
    /// own port, socket folder and data folder; stopped and deleted on drop like any cluster
    /// (drop it before or after its primary, either works).
    ///
    /// Made with `pg_basebackup -R` (which writes `standby.signal` and `primary_conninfo`),
    /// run as the same unprivileged account as the server. The primary needs nothing extra:
    /// every scratch cluster runs with `wal_level = replica` and `max_wal_senders = 10`, and
    /// `initdb -A trust` already trusts `replication` connections from 127.0.0.1
    /// (<https://www.postgresql.org/docs/15/app-pgbasebackup.html>). The standby's
    /// `cluster_name` ([`ScratchCluster::replica_name`]) is what the primary shows as
    /// `application_name` in `pg_stat_replication`, since `primary_conninfo` sets none
    /// (<https://www.postgresql.org/docs/15/runtime-config-replication.html#GUC-SYNCHRONOUS-STANDBY-NAMES>).
    pub fn start_replica(&self) -> Result<ScratchCluster, ScratchError> {
        self.start_replica_under(None)
    }

    /// [`ScratchCluster::start_replica`], with the standby's folder under `parent` instead
    /// of the system's temporary folder: a benchmark puts it on another file system (e.g. a
    /// tmpfs) so that the standby's writes do not queue with the primary's on one disk, as
    /// a standby on its own machine's disk would not.
    pub fn start_replica_under(
        &self,
        parent: Option<&Path>,
    ) -> Result<ScratchCluster, ScratchError> {
        let number = self.replicas.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "scratch_replica_{}_{}_{number}",
            std::process::id(),
            self.port
        );
        let (root, data_dir, socket_dir) = cluster_folder(
            "migrate-scratch-replica-",
            self.launcher.run_as.as_ref(),
            parent,
        )?;
        let launcher = Launcher {
            run_as: self.launcher.run_as.clone(),
            home: root.path().to_path_buf(),
        };
        let mut basebackup = launcher.command(&self.binaries.program("pg_basebackup"));
        basebackup
            .arg("-D")
            .arg(&data_dir)
            .args(["-h", self.host(), "-U", SUPERUSER])
            .arg("-p")
            .arg(self.port.to_string())
            // -R: standby.signal + primary_conninfo; fast checkpoint and no fsync: speed.
            .args(["-R", "-X", "stream", "-c", "fast", "--no-sync"]);
        run(basebackup)?;
        write_replica_settings(&data_dir, &socket_dir, &name, (self.host(), self.port))?;

        let mut replica = ScratchCluster {
            binaries: self.binaries.clone(),
            version: self.version.clone(),
            launcher,
            data_dir,
            socket_dir,
            port: 0,
            tls: self.tls.clone(),
            databases: AtomicU64::new(0),
            replica_name: Some(name),
            replicas: AtomicU64::new(0),
            watchdog: None,
            root,
        };
        replica.watchdog = Some(replica.spawn_watchdog()?);
        replica.start_server()?;
        Ok(replica)
    }

    /// The standby's `cluster_name`, which the primary's `pg_stat_replication` shows as its
    /// `application_name`; `None` for a cluster from [`ScratchCluster::start`].
    pub fn replica_name(&self) -> Option<&str> {
        self.replica_name.as_deref()
    }

    /// A child that blocks reading its stdin, whose other end only this process holds; when
    /// it reads end-of-file (drop, or this process died by any means), it stops the server
    /// and removes the folder.
    fn spawn_watchdog(&self) -> Result<(Child, ChildStdin), ScratchError> {
        let stop = self.pg_ctl_command(&["stop", "-m", "immediate", "-w"]);
        let mut args: Vec<OsString> = vec![stop.get_program().to_os_string()];
        args.extend(stop.get_args().map(|a| a.to_os_string()));
        let mut child = Command::new("sh")
            .arg("-c")
            // Both outputs discarded: pg_ctl complains harmlessly when the server is not up.
            .arg(r#"root="$1"; shift; read -r _; "$@" >/dev/null 2>&1; rm -rf -- "$root""#)
            .arg("scratch-watchdog")
            .arg(self.root.path())
            .args(args)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io_error("spawning the scratch watchdog"))?;
        let stdin = child.stdin.take().ok_or_else(|| ScratchError::Io {
            what: "scratch watchdog".into(),
            source: io::Error::other("no stdin pipe"),
        })?;
        Ok((child, stdin))
    }

    /// Stops the server, `pg_ctl stop -m fast` (sessions ended cleanly) or `-m immediate`
    /// (as after a crash: recovery runs at the next start), for fault tests. The folder stays.
    pub fn stop_server(&self, immediate: bool) -> Result<(), ScratchError> {
        let mode = if immediate { "immediate" } else { "fast" };
        run(self.pg_ctl_command(&["stop", "-m", mode, "-w"]))?;
        Ok(())
    }

    /// Starts a server stopped by [`ScratchCluster::stop_server`] again, on the same port.
    pub fn start_server_again(&self) -> Result<(), ScratchError> {
        let mut start = self.pg_ctl_command(&["-w", "-t", START_TIMEOUT_SECS, "-l"]);
        start
            .arg(self.log_path())
            .arg("-o")
            .arg(format!("-p {}", self.port))
            .arg("start");
        run(start)?;
        Ok(())
    }

    fn pg_ctl_command(&self, args: &[&str]) -> Command {
        let mut command = self.launcher.command(&self.binaries.dir().join("pg_ctl"));
        command.arg("-D").arg(&self.data_dir).args(args);
        command
    }

    fn log_path(&self) -> PathBuf {
        self.root.path().join("server.log")
    }

    /// Picks a port by binding port 0, then starts the server on it; another process may take
    /// the port in between, so a bind failure is retried with a new port.
    fn start_server(&mut self) -> Result<(), ScratchError> {
        let mut last_log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let log = self.log_path();
            let _ = fs::remove_file(&log);
            let mut start = self.pg_ctl_command(&["-w", "-t", START_TIMEOUT_SECS, "-l"]);
            start
                .arg(&log)
                .arg("-o")
                .arg(format!("-p {port}"))
                .arg("start");
            match run(start) {
                Ok(_) => {
                    self.port = port;
                    return Ok(());
                }
                Err(error) => {
                    last_log = fs::read_to_string(&log).unwrap_or_default();
                    // "SSL is not supported by this build": a server built without OpenSSL
                    // refuses `ssl = on`.
                    if self.tls.is_some() && last_log.contains("not supported by this build") {
                        return Err(ScratchError::NotInThisBuild {
                            feature: "TLS",
                            binaries: self.binaries.dir().to_path_buf(),
                        });
                    }
                    // "could not bind IPv4 address ... Address already in use" (errno EADDRINUSE).
                    if !last_log.contains("already in use") {
                        return Err(match error {
                            ScratchError::CommandFailed {
                                command,
                                status,
                                output,
                            } => ScratchError::CommandFailed {
                                command,
                                status,
                                output: format!("{output}\nserver log:\n{last_log}"),
                            },
                            other => other,
                        });
                    }
                }
            }
        }
        Err(ScratchError::PortsExhausted {
            attempts: PORT_ATTEMPTS,
            log: last_log,
        })
    }

    /// The address the server listens on: always `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The TCP port the server listens on, picked when it started.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The private unix-socket folder (`host=` for libpq-style clients).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The cluster's data directory (`PGDATA`), inside the temporary folder.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The installation this cluster runs, for its client programs (`psql`, `pg_dump`, ...).
    pub fn binaries(&self) -> &PgBinaries {
        &self.binaries
    }

    /// The server's version (`postgres --version` of its binaries), for tests and messages
    /// to say which major ran.
    pub fn version(&self) -> &ServerVersion {
        &self.version
    }

    /// Whether this build ships the extension `name` (`pg_available_extensions`): builds
    /// without contrib, or with part of it, lack `pgcrypto` or `pg_stat_statements`.
    pub fn has_extension(&self, name: &str) -> Result<bool, ScratchError> {
        self.catalog_names("pg_available_extensions", "name", name)
    }

    /// Whether this build has the collation `name` (`und-x-icu` needs a build with ICU).
    pub fn has_collation(&self, name: &str) -> Result<bool, ScratchError> {
        self.catalog_names("pg_collation", "collname", name)
    }

    /// Whether a row of `catalog` has `column = name`.
    fn catalog_names(&self, catalog: &str, column: &str, name: &str) -> Result<bool, ScratchError> {
        let literal = name.replace('\'', "''");
        let found = self.psql(
            SUPERUSER,
            &format!("SELECT count(*) FROM {catalog} WHERE {column} = '{literal}'"),
        )?;
        Ok(found.trim() != "0")
    }

    /// For a test that needs `what` (`has` says whether the build has it): prints the
    /// `skipped:` line it shows when it skips for lack of it, and returns `has`.
    pub fn says_skipped_without(&self, has: bool, what: &str) -> bool {
        if !has {
            eprintln!("skipped: the build of {} has no {what}", self.version());
        }
        has
    }

    /// `Some` for a cluster from [`ScratchCluster::start_with_tls`].
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        self.database_url(SUPERUSER)
    }

    fn database_url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@{}:{}/{database}",
            self.host(),
            self.port
        )
    }

    /// Runs SQL as the superuser through `psql` on the TCP port, stopping at the first error.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, ScratchError> {
        let mut command = Command::new(self.binaries.program("psql"));
        command
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", self.host(), "-U", SUPERUSER, "-d", database])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-c")
            .arg(sql)
            .env("PGSSLMODE", "disable")
            .env_remove("PGPASSWORD");
        let output = run(command)?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// A new, empty database with a name unique in this cluster (`scratch_<pid>_<n>`).
    pub fn create_database(&self) -> Result<ScratchDatabase, ScratchError> {
        let number = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = format!("scratch_{}_{number}", std::process::id());
        // The name is made of ASCII letters, digits and `_`: safe to quote verbatim.
        self.psql(SUPERUSER, &format!("CREATE DATABASE \"{name}\""))?;
        Ok(ScratchDatabase {
            url: self.database_url(&name),
            host: self.host().to_owned(),
            port: self.port,
            name,
        })
    }

    /// A LOGIN role authenticated by `scram-sha-256` on TCP (every other role is trusted),
    /// owning nothing; for tests of password handling. `name` must be a plain identifier.
    pub fn create_login_role(&self, name: &str, password: &str) -> Result<(), ScratchError> {
        let identifier = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && name.bytes().next().is_some_and(|b| !b.is_ascii_digit());
        if !identifier {
            return Err(ScratchError::InvalidRoleName {
                name: name.to_owned(),
            });
        }
        let literal = password.replace('\'', "''");
        self.psql(
            SUPERUSER,
            &format!("CREATE ROLE \"{name}\" LOGIN PASSWORD '{literal}' IN ROLE {PASSWORD_GROUP}"),
        )?;
        Ok(())
    }
}

impl Drop for ScratchCluster {
    fn drop(&mut self) {
        match self.watchdog.take() {
            // Closing its stdin makes the watchdog stop the server; wait so no server
            // survives this value.
            Some((mut child, stdin)) => {
                drop(stdin);
                let _ = child.wait();
            }
            None => {
                let _ = self
                    .pg_ctl_command(&["stop", "-m", "immediate", "-w"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// A fresh temporary folder for one server: `data/` (created by initdb or pg_basebackup) and
/// a private `socket/`, both owned by the user the server runs as.
fn cluster_folder(
    prefix: &str,
    run_as: Option<&RunAs>,
    parent: Option<&Path>,
) -> Result<(tempfile::TempDir, PathBuf, PathBuf), ScratchError> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    let root = match parent {
        Some(parent) => builder.tempdir_in(parent),
        None => builder.tempdir(),
    }
    .map_err(io_error("creating the scratch folder"))?;
    let data_dir = root.path().join("data");
    let socket_dir = root.path().join("socket");
    fs::create_dir(&socket_dir).map_err(io_error("creating the socket folder"))?;
    if let Some(run_as) = run_as {
        run_as.chown(root.path())?;
        run_as.chown(&socket_dir)?;
    }
    Ok((root, data_dir, socket_dir))
}

pub(crate) fn free_port() -> Result<u16, ScratchError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(io_error("binding 127.0.0.1:0 to pick a port"))?;
    let port = listener
        .local_addr()
        .map_err(io_error("reading the picked port"))?
        .port();
    Ok(port)
}
