//! Throwaway PostgreSQL clusters for tests and for `migrate check`.
//!
//! [`ScratchCluster::start`] runs `initdb` into a fresh temporary folder and starts a server on
//! a free port of 127.0.0.1; [`ScratchCluster::create_database`] hands out one new database per
//! caller, so tests sharing a cluster still run in parallel without seeing each other.
//!
//! A cluster never outlives its process: `Drop` stops the server (`pg_ctl stop -m immediate`)
//! and removes the folder, and a watchdog child does the same when the process dies without
//! running destructors (a `static` cluster, `SIGKILL`, `std::process::exit`).
//!
//! Speed over durability: `initdb -N`, `fsync=off`, `full_page_writes=off`,
//! `synchronous_commit=off`. Never point this at data you want to keep.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use tempfile::TempDir;

/// Folder holding `initdb`, `pg_ctl` and `postgres`; checked before `PATH`.
pub const PG_BIN_ENV: &str = "MIGRATE_PG_BIN";
/// Unprivileged account the server runs as when this process is root (default `nobody`).
pub const PG_USER_ENV: &str = "MIGRATE_PG_USER";
/// Superuser of every scratch cluster (`initdb -U postgres`).
pub const SUPERUSER: &str = "postgres";
/// Roles made by [`ScratchCluster::create_login_role`] are members of this group, which
/// `pg_hba.conf` sends through `scram-sha-256` on TCP; every other role is trusted.
pub const PASSWORD_GROUP: &str = "scratch_password_users";

const SERVER_BINARIES: [&str; 3] = ["initdb", "pg_ctl", "postgres"];
const PORT_ATTEMPTS: u32 = 8;
/// Seconds `pg_ctl -w` waits for the server to accept connections.
const START_TIMEOUT_SECS: &str = "60";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScratchError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in ${PG_BIN_ENV}, PATH \
         or /usr/lib/postgresql/*/bin (searched: {}); install PostgreSQL \
         (e.g. `apt-get install -y postgresql`) or set {PG_BIN_ENV} to the folder holding them",
        display_paths(.searched)
    )]
    BinariesMissing { searched: Vec<PathBuf> },
    #[error(
        "running as root, and PostgreSQL refuses to run as root: no account `{user}` to run it \
         as (set {PG_USER_ENV} to an existing unprivileged user)"
    )]
    UnprivilegedUserMissing { user: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}):\n{output}")]
    CommandFailed {
        command: String,
        status: String,
        output: String,
    },
    #[error(
        "the server could not bind a free port after {attempts} attempts; last server log:\n{log}"
    )]
    PortsExhausted { attempts: u32, log: String },
    #[error("`{name}` is not a plain role name ([A-Za-z_][A-Za-z0-9_]*)")]
    InvalidRoleName { name: String },
    #[error("generating the TLS certificate: {0}")]
    Certificate(#[from] rcgen::Error),
}

fn display_paths(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    if names.is_empty() {
        "nothing".to_owned()
    } else {
        names.join(", ")
    }
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> ScratchError {
    let what = what.into();
    move |source| ScratchError::Io { what, source }
}

/// The server binaries in use, all from one folder so versions cannot mix.
#[derive(Debug, Clone)]
pub struct PgBinaries {
    dir: PathBuf,
}

impl PgBinaries {
    /// `$MIGRATE_PG_BIN`, then `PATH`, then `/usr/lib/postgresql/<major>/bin`, newest first.
    pub fn locate() -> Result<PgBinaries, ScratchError> {
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(dir) = std::env::var_os(PG_BIN_ENV) {
            candidates.push(PathBuf::from(dir));
        }
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path));
        }
        candidates.extend(debian_bin_dirs());
        PgBinaries::locate_in(candidates)
    }

    /// The first of `candidates` holding the server binaries.
    pub fn locate_in(candidates: Vec<PathBuf>) -> Result<PgBinaries, ScratchError> {
        for dir in &candidates {
            let initdb = dir.join("initdb");
            if !initdb.is_file() {
                continue;
            }
            // /usr/local/bin/initdb may be a symlink into the versioned folder, which is the
            // one that also holds pg_ctl, postgres, psql and pg_dump of the same version.
            let real_dir = fs::canonicalize(&initdb)
                .ok()
                .and_then(|real| real.parent().map(Path::to_path_buf))
                .unwrap_or_else(|| dir.clone());
            for found in [&real_dir, dir] {
                if SERVER_BINARIES.iter().all(|bin| found.join(bin).is_file()) {
                    return Ok(PgBinaries { dir: found.clone() });
                }
            }
        }
        Err(ScratchError::BinariesMissing {
            searched: candidates,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A program of this installation (`psql`, `pg_dump`, ...); falls back to the bare name,
    /// resolved through `PATH`, when the folder lacks it.
    pub fn program(&self, name: &str) -> PathBuf {
        let path = self.dir.join(name);
        if path.is_file() {
            path
        } else {
            PathBuf::from(name)
        }
    }
}

/// `/usr/lib/postgresql/<major>/bin`, highest major first.
fn debian_bin_dirs() -> Vec<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

/// The account the server processes run as, when it is not this process's own.
#[derive(Debug, Clone)]
struct RunAs {
    uid: u32,
    gid: u32,
}

impl RunAs {
    fn for_current_process() -> Result<Option<RunAs>, ScratchError> {
        // SAFETY: geteuid has no preconditions and cannot fail (POSIX).
        if unsafe { libc::geteuid() } != 0 {
            return Ok(None);
        }
        let user = std::env::var(PG_USER_ENV).unwrap_or_else(|_| "nobody".to_owned());
        let id = |flag: &str| -> Option<u32> {
            let output = Command::new("id").arg(flag).arg(&user).output().ok()?;
            if !output.status.success() {
                return None;
            }
            String::from_utf8(output.stdout).ok()?.trim().parse().ok()
        };
        match (id("-u"), id("-g")) {
            (Some(uid), Some(gid)) if uid != 0 => Ok(Some(RunAs { uid, gid })),
            _ => Err(ScratchError::UnprivilegedUserMissing { user }),
        }
    }

    fn chown(&self, path: &Path) -> Result<(), ScratchError> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
            .map_err(io_error(format!("chown {}", path.display())))
    }
}

/// A fresh temporary folder for one server: `data/` (created by initdb or pg_basebackup) and
/// a private `socket/`, both owned by the user the server runs as.
fn cluster_folder(
    prefix: &str,
    run_as: Option<&RunAs>,
) -> Result<(tempfile::TempDir, PathBuf, PathBuf), ScratchError> {
    let root = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
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

/// How a cluster's command lines are built: directly, or through `setpriv` when root.
#[derive(Debug, Clone)]
struct Launcher {
    run_as: Option<RunAs>,
    home: PathBuf,
}

impl Launcher {
    fn command(&self, program: &Path) -> Command {
        let mut command = match &self.run_as {
            None => Command::new(program),
            Some(run_as) => {
                let mut command = Command::new("setpriv");
                command
                    .arg(format!("--reuid={}", run_as.uid))
                    .arg(format!("--regid={}", run_as.gid))
                    .arg("--init-groups")
                    .arg(program);
                command
            }
        };
        // The unprivileged user cannot enter root's working directory or HOME, and inherited
        // PG* variables (PGDATA, PGPORT, ...) must not redirect the scratch tools.
        command.current_dir(&self.home).env("HOME", &self.home);
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(|k| k.starts_with("PG")) {
                command.env_remove(key);
            }
        }
        command.env("LC_ALL", "C");
        command
    }
}

fn run(mut command: Command) -> Result<Output, ScratchError> {
    let rendered = render(&command);
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(io_error(format!("running `{rendered}`")))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(ScratchError::CommandFailed {
            command: rendered,
            status: output.status.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        })
    }
}

fn render(command: &Command) -> String {
    let mut parts = vec![command.get_program().to_string_lossy().into_owned()];
    parts.extend(command.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// Files of a TLS-enabled cluster.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM of the CA that signed the server certificate: the client's `sslrootcert`.
    pub ca_cert: PathBuf,
    /// The server certificate is valid for these names (`localhost`, `127.0.0.1`).
    pub server_names: Vec<String>,
}

/// A running throwaway PostgreSQL cluster; stopped and deleted on drop.
pub struct ScratchCluster {
    binaries: PgBinaries,
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
            .field("data_dir", &self.data_dir)
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .field("replica_name", &self.replica_name)
            .finish()
    }
}

impl ScratchCluster {
    /// Starts a cluster without TLS.
    pub fn start() -> Result<ScratchCluster, ScratchError> {
        ScratchCluster::start_inner(false)
    }

    /// Starts a cluster with `ssl=on` and a server certificate signed by a fresh CA, whose PEM
    /// is at [`TlsFiles::ca_cert`], so clients can test `sslmode=require`, `verify-ca` and
    /// `verify-full`. Plain connections are still accepted.
    pub fn start_with_tls() -> Result<ScratchCluster, ScratchError> {
        ScratchCluster::start_inner(true)
    }

    fn start_inner(tls: bool) -> Result<ScratchCluster, ScratchError> {
        let binaries = PgBinaries::locate()?;
        let run_as = RunAs::for_current_process()?;
        let (root, data_dir, socket_dir) = cluster_folder("migrate-scratch-", run_as.as_ref())?;
        let launcher = Launcher {
            run_as,
            home: root.path().to_path_buf(),
        };

        let mut initdb = launcher.command(&binaries.dir.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data_dir)
            .args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C"])
            .args(["-N", "--no-instructions"]);
        run(initdb)?;

        let tls = if tls {
            Some(write_certificates(root.path(), &data_dir, &launcher)?)
        } else {
            None
        };
        write_settings(&data_dir, &socket_dir, tls.is_some())?;

        let mut cluster = ScratchCluster {
            binaries,
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
        let number = self.replicas.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "scratch_replica_{}_{}_{number}",
            std::process::id(),
            self.port
        );
        let (root, data_dir, socket_dir) =
            cluster_folder("migrate-scratch-replica-", self.launcher.run_as.as_ref())?;
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
        write_replica_settings(&data_dir, &socket_dir, &name)?;

        let mut replica = ScratchCluster {
            binaries: self.binaries.clone(),
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

    fn pg_ctl_command(&self, args: &[&str]) -> Command {
        let mut command = self.launcher.command(&self.binaries.dir.join("pg_ctl"));
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

    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The private unix-socket folder (`host=` for libpq-style clients).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn binaries(&self) -> &PgBinaries {
        &self.binaries
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

/// A database of a [`ScratchCluster`]; dropping it does not drop the database (the whole
/// cluster goes away on its own drop).
#[derive(Debug, Clone)]
pub struct ScratchDatabase {
    url: String,
    host: String,
    port: u16,
    name: String,
}

impl ScratchDatabase {
    /// `postgres://postgres@127.0.0.1:PORT/NAME` (trust authentication, no password).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

fn free_port() -> Result<u16, ScratchError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(io_error("binding 127.0.0.1:0 to pick a port"))?;
    let port = listener
        .local_addr()
        .map_err(io_error("reading the picked port"))?
        .port();
    Ok(port)
}

fn write_settings(data_dir: &Path, socket_dir: &Path, tls: bool) -> Result<(), ScratchError> {
    let quote = |path: &Path| path.display().to_string().replace('\'', "''");
    let mut settings = format!(
        "\n# migrate-scratch\n\
         listen_addresses = '127.0.0.1'\n\
         unix_socket_directories = '{}'\n\
         fsync = off\n\
         full_page_writes = off\n\
         synchronous_commit = off\n\
         shared_buffers = 32MB\n\
         max_connections = 200\n\
         wal_level = replica\n\
         max_wal_senders = 10\n",
        quote(socket_dir)
    );
    if tls {
        settings.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
    }
    let config = data_dir.join("postgresql.conf");
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(&config)
        .map_err(io_error(format!("opening {}", config.display())))?;
    file.write_all(settings.as_bytes())
        .map_err(io_error(format!("writing {}", config.display())))?;

    // pg_hba.conf is read top down, first match wins
    // (https://www.postgresql.org/docs/15/auth-pg-hba-conf.html): password roles first.
    let hba = data_dir.join("pg_hba.conf");
    let existing =
        fs::read_to_string(&hba).map_err(io_error(format!("reading {}", hba.display())))?;
    let rules = format!(
        "host all +{PASSWORD_GROUP} 127.0.0.1/32 scram-sha-256\n\
         host all +{PASSWORD_GROUP} ::1/128 scram-sha-256\n{existing}"
    );
    fs::write(&hba, rules).map_err(io_error(format!("writing {}", hba.display())))?;
    Ok(())
}

/// Settings appended to a standby's copy of the primary's `postgresql.conf` (the last
/// occurrence of a setting wins).
fn write_replica_settings(
    data_dir: &Path,
    socket_dir: &Path,
    name: &str,
) -> Result<(), ScratchError> {
    let quote = |text: &str| text.replace('\'', "''");
    // wal_receiver_status_interval: the standby reports its write/flush/replay positions at
    // least this often, so the primary's pg_stat_replication lag columns follow within a
    // second instead of the default 10 s
    // (https://www.postgresql.org/docs/15/runtime-config-replication.html#GUC-WAL-RECEIVER-STATUS-INTERVAL).
    let settings = format!(
        "\n# migrate-scratch replica\n\
         unix_socket_directories = '{}'\n\
         cluster_name = '{}'\n\
         hot_standby = on\n\
         wal_receiver_status_interval = 1s\n",
        quote(&socket_dir.display().to_string()),
        quote(name)
    );
    let config = data_dir.join("postgresql.conf");
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(&config)
        .map_err(io_error(format!("opening {}", config.display())))?;
    file.write_all(settings.as_bytes())
        .map_err(io_error(format!("writing {}", config.display())))
}

fn write_certificates(
    root: &Path,
    data_dir: &Path,
    launcher: &Launcher,
) -> Result<TlsFiles, ScratchError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "migrate-scratch CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let server_names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let mut server_params = CertificateParams::new(server_names.clone())?;
    server_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let server_key = KeyPair::generate()?;
    let server_cert = server_params.signed_by(&server_key, &issuer)?;

    let ca_path = root.join("ca.crt");
    fs::write(&ca_path, ca_cert.pem()).map_err(io_error("writing ca.crt"))?;
    let cert_path = data_dir.join("server.crt");
    let key_path = data_dir.join("server.key");
    fs::write(&cert_path, server_cert.pem()).map_err(io_error("writing server.crt"))?;
    fs::write(&key_path, server_key.serialize_pem()).map_err(io_error("writing server.key"))?;
    // The server refuses a key readable by group or others, or not owned by its own user
    // (https://www.postgresql.org/docs/15/ssl-tcp.html#SSL-SETUP).
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600))
        .map_err(io_error("chmod server.key"))?;
    if let Some(run_as) = &launcher.run_as {
        run_as.chown(&cert_path)?;
        run_as.chown(&key_path)?;
    }
    Ok(TlsFiles {
        ca_cert: ca_path,
        server_names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binaries_say_how_to_install_them() {
        let empty = tempfile::tempdir().expect("tempdir");
        let error = PgBinaries::locate_in(vec![empty.path().to_path_buf()])
            .expect_err("an empty folder has no initdb");
        assert!(
            matches!(&error, ScratchError::BinariesMissing { searched } if searched.len() == 1)
        );
        assert!(error.to_string().contains("apt-get install -y postgresql"));
    }
}
