//! `pg_dump` of any database and loading SQL into a scratch one: [`PgDump`], [`DumpSource`],
//! [`ScratchCluster::load_sql`].
//!
//! `migrate check` compares the schema before and after each migration, and checks pending
//! migrations against a copy of production's schema; a baseline compares a database's schema
//! with the one the files produce. All of them need the same three things: a dump of a scratch
//! database, a dump of a real one (read-only, password never on a command line), and loading a
//! dump into a fresh scratch database.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::binaries::PgBinaries;
use crate::cluster::{SUPERUSER, ScratchCluster};
use crate::database::ScratchDatabase;
use crate::error::{ScratchError, io_error};

/// Where `pg_dump` connects. Every parameter reaches it through libpq's environment variables
/// (`PGHOST`, `PGPASSWORD`, ...), never its command line, which other local users can read in
/// `/proc` and which error messages repeat.
#[derive(Clone)]
pub struct DumpSource {
    host: String,
    port: u16,
    user: String,
    dbname: String,
    password: Option<String>,
    ssl_mode: String,
    ssl_root_cert: Option<PathBuf>,
    connect_timeout: Duration,
}

// Hand-written so the password never reaches a log through `{:?}`.
impl std::fmt::Debug for DumpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DumpSource")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("dbname", &self.dbname)
            .field("ssl_mode", &self.ssl_mode)
            .finish_non_exhaustive()
    }
}

impl DumpSource {
    /// A server given by its parts; `host` may be a unix-socket folder. TLS `prefer` and a
    /// 10 s connect timeout until set otherwise.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        user: impl Into<String>,
        dbname: impl Into<String>,
    ) -> DumpSource {
        DumpSource {
            host: host.into(),
            port,
            user: user.into(),
            dbname: dbname.into(),
            password: None,
            ssl_mode: "prefer".to_owned(),
            ssl_root_cert: None,
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// A database of a scratch cluster (superuser, no TLS).
    pub fn scratch(database: &ScratchDatabase) -> DumpSource {
        DumpSource::new(database.host(), database.port(), SUPERUSER, database.name())
            .ssl_mode("disable")
    }

    /// The password (`PGPASSWORD` of the `pg_dump` process only).
    pub fn password(mut self, password: impl Into<String>) -> DumpSource {
        self.password = Some(password.into());
        self
    }

    /// libpq's `sslmode` (`disable`, `prefer`, `require`, `verify-ca`, `verify-full`).
    pub fn ssl_mode(mut self, mode: impl Into<String>) -> DumpSource {
        self.ssl_mode = mode.into();
        self
    }

    /// libpq's `sslrootcert`: a PEM file of trusted roots.
    pub fn ssl_root_cert(mut self, path: impl Into<PathBuf>) -> DumpSource {
        self.ssl_root_cert = Some(path.into());
        self
    }

    /// How long opening the connection may take (libpq counts whole seconds, at least 2).
    pub fn connect_timeout(mut self, timeout: Duration) -> DumpSource {
        self.connect_timeout = timeout;
        self
    }

    /// `user@host:port/dbname`, for messages: never the password.
    pub fn describe(&self) -> String {
        format!("{}@{}:{}/{}", self.user, self.host, self.port, self.dbname)
    }

    fn apply(&self, command: &mut Command) {
        // The caller's PG* variables must not add to or redirect the connection.
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(|k| k.starts_with("PG")) {
                command.env_remove(key);
            }
        }
        command
            .env("PGHOST", &self.host)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", &self.user)
            .env("PGDATABASE", &self.dbname)
            .env("PGSSLMODE", &self.ssl_mode)
            .env(
                "PGCONNECT_TIMEOUT",
                self.connect_timeout.as_secs().max(2).to_string(),
            )
            .env("PGAPPNAME", "migrate")
            // Every transaction of the session is read-only, whatever pg_dump does: a server
            // refuses any write with SQLSTATE 25006 (docs: runtime-config-client,
            // default_transaction_read_only).
            .env("PGOPTIONS", "-c default_transaction_read_only=on");
        if let Some(password) = &self.password {
            command.env("PGPASSWORD", password);
        }
        if let Some(root) = &self.ssl_root_cert {
            command.env("PGSSLROOTCERT", root);
        }
    }
}

/// A `pg_dump` run, built up then [`run`](PgDump::run): plain SQL on standard output, with
/// owners and privileges (a scratch cluster gets the roles it names from
/// [`ScratchCluster::load_sql`]).
#[derive(Debug, Clone)]
pub struct PgDump {
    program: PathBuf,
    source: DumpSource,
    args: Vec<OsString>,
}

impl PgDump {
    /// `pg_dump` of `binaries`' installation, connecting to `source`.
    pub fn new(binaries: &PgBinaries, source: DumpSource) -> PgDump {
        PgDump::with_program(binaries.program("pg_dump"), source)
    }

    /// A given `pg_dump` binary (tests use a missing one).
    pub fn with_program(program: impl Into<PathBuf>, source: DumpSource) -> PgDump {
        PgDump {
            program: program.into(),
            source,
            args: Vec::new(),
        }
    }

    /// Definitions only (`--schema-only`).
    pub fn schema_only(mut self) -> PgDump {
        self.args.push("--schema-only".into());
        self
    }

    /// Rows only (`--data-only`), as `COPY` blocks.
    pub fn data_only(mut self) -> PgDump {
        self.args.push("--data-only".into());
        self
    }

    /// Only this table (`--table`, a pattern: quote names, `"public"."t"`); repeatable.
    pub fn table(mut self, pattern: &str) -> PgDump {
        self.args.push("--table".into());
        self.args.push(pattern.into());
        self
    }

    /// Leave this table out (`--exclude-table`, a pattern); repeatable.
    pub fn exclude_table(mut self, pattern: &str) -> PgDump {
        self.args.push("--exclude-table".into());
        self.args.push(pattern.into());
        self
    }

    /// Read in a snapshot exported by another session with `pg_export_snapshot()`, so what
    /// that session reads and the dump agree (`--snapshot`).
    pub fn snapshot(mut self, id: &str) -> PgDump {
        self.args.push(format!("--snapshot={id}").into());
        self
    }

    /// Give up instead of waiting longer for a table's ACCESS SHARE lock
    /// (`--lock-wait-timeout`): pg_dump locks every table it dumps, and a DDL statement
    /// holding ACCESS EXCLUSIVE would otherwise make it wait.
    pub fn lock_wait_timeout(mut self, timeout: Duration) -> PgDump {
        self.args
            .push(format!("--lock-wait-timeout={}ms", timeout.as_millis().max(1)).into());
        self
    }

    /// Runs it; the SQL it printed, without the `\restrict <key>`/`\unrestrict <key>` lines
    /// of pg_dump 15.14 and later, whose random key differs on every run (two dumps of one
    /// schema compare equal).
    pub fn run(&self) -> Result<String, ScratchError> {
        let mut command = Command::new(&self.program);
        command.args(&self.args).stdin(Stdio::null());
        self.source.apply(&mut command);
        let rendered = format!(
            "pg_dump {} ({})",
            self.args
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            self.source.describe()
        );
        let output = command.output().map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ScratchError::ProgramMissing {
                    program: self.program.clone(),
                }
            } else {
                io_error(format!("running {rendered}"))(source)
            }
        })?;
        if !output.status.success() {
            return Err(ScratchError::CommandFailed {
                command: rendered,
                status: output.status.to_string(),
                output: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(without_restrict_lines(&String::from_utf8_lossy(
            &output.stdout,
        )))
    }
}

/// At most this many roles are created for one script: a dump naming more is refused.
const MAX_CREATED_ROLES: usize = 100;

/// The role of psql's `ERROR:  role "name" does not exist`, when that is the error.
fn missing_role(error: &str) -> Option<String> {
    let start = error.find("ERROR:  role \"")? + "ERROR:  role \"".len();
    let rest = &error[start..];
    let end = rest.find("\" does not exist")?;
    Some(rest[..end].to_owned())
}

/// `text` without pg_dump's `\restrict`/`\unrestrict` lines.
pub fn without_restrict_lines(text: &str) -> String {
    text.lines()
        .filter(|line| !line.starts_with("\\restrict") && !line.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `sql` without the `SET name = value;` lines of its headers whose setting `known` does not
/// know. A header runs from pg_dump's `-- PostgreSQL database dump` line (or the start) to the
/// first statement of another kind: a file may hold several dumps (schema, then history rows).
fn without_unknown_settings(sql: &str, known: impl Fn(&str) -> bool) -> String {
    let mut in_header = true;
    let mut kept = String::with_capacity(sql.len());
    for line in sql.split_inclusive('\n') {
        let trimmed = line.trim_end();
        if trimmed == "-- PostgreSQL database dump" {
            in_header = true;
        }
        if in_header {
            let setting = trimmed
                .strip_prefix("SET ")
                .and_then(|rest| rest.split_once(" = "))
                .map(|(name, _)| name)
                .filter(|name| name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            match setting {
                Some(name) if !known(name) => continue,
                Some(_) => {}
                None => {
                    in_header = trimmed.is_empty()
                        || trimmed.starts_with("--")
                        || trimmed.starts_with('\\')
                        || trimmed.starts_with("SELECT pg_catalog.set_config(");
                }
            }
        }
        kept.push_str(line);
    }
    kept
}

impl ScratchCluster {
    /// Runs a SQL script (a dump) in `database` with `psql`, in one transaction, stopping at
    /// the first error: either all of it loads or nothing does
    /// ([`ScratchError::LoadFailed`] with psql's message).
    ///
    /// A dump names the roles owning and granted its objects, which a scratch cluster lacks:
    /// when the script fails only because a role does not exist, that role is created
    /// (`NOLOGIN`, no privileges) and the script runs again from the start. The roles created
    /// are returned.
    ///
    /// A dump made by a newer pg_dump than this server starts with `SET` lines of settings
    /// its own major added (pg_dump 17+ writes `SET transaction_timeout = 0;`), which an older
    /// server refuses; those of the header that this server does not know are left out.
    pub fn load_sql(
        &self,
        database: &ScratchDatabase,
        sql: &str,
    ) -> Result<Vec<String>, ScratchError> {
        let known = self.psql(SUPERUSER, "SELECT name FROM pg_settings")?;
        let known: Vec<&str> = known.lines().map(str::trim).collect();
        let sql = without_unknown_settings(sql, |name| known.contains(&name));
        let mut created = Vec::new();
        loop {
            let error = match self.run_script(database, &sql)? {
                None => return Ok(created),
                Some(error) => error,
            };
            match missing_role(&error) {
                Some(role) if created.len() < MAX_CREATED_ROLES && !created.contains(&role) => {
                    self.psql(
                        SUPERUSER,
                        &format!("CREATE ROLE \"{}\" NOLOGIN", role.replace('"', "\"\"")),
                    )?;
                    created.push(role);
                }
                _ => return Err(ScratchError::LoadFailed { output: error }),
            }
        }
    }

    /// `psql -f -` of `sql` in one transaction; `Some(stderr)` when it failed.
    fn run_script(
        &self,
        database: &ScratchDatabase,
        sql: &str,
    ) -> Result<Option<String>, ScratchError> {
        let mut command = Command::new(self.binaries().program("psql"));
        command
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction"])
            .args(["-h", self.host(), "-U", SUPERUSER, "-d", database.name()])
            .arg("-p")
            .arg(self.port().to_string())
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(|k| k.starts_with("PG")) {
                command.env_remove(key);
            }
        }
        command.env("PGSSLMODE", "disable");
        let mut child = command
            .spawn()
            .map_err(io_error("running psql to load a dump"))?;
        let mut stdin = child.stdin.take().ok_or_else(|| ScratchError::Io {
            what: "psql".into(),
            source: std::io::Error::other("no stdin pipe"),
        })?;
        // Written from a thread: psql may fill its error pipe before reading all its input.
        let script = sql.to_owned();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(script.as_bytes());
        });
        let output = child
            .wait_with_output()
            .map_err(io_error("waiting for psql to load a dump"))?;
        let _ = writer.join();
        Ok((!output.status.success())
            .then(|| String::from_utf8_lossy(&output.stderr).trim().to_owned()))
    }

    /// `pg_dump --schema-only` of a database of this cluster, leaving out `exclude_tables`
    /// (patterns, e.g. quoted state-table names).
    pub fn schema_of(
        &self,
        database: &ScratchDatabase,
        exclude_tables: &[String],
    ) -> Result<String, ScratchError> {
        let mut dump = PgDump::new(self.binaries(), DumpSource::scratch(database)).schema_only();
        for table in exclude_tables {
            dump = dump.exclude_table(table);
        }
        dump.run()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_settings_an_older_server_lacks_are_left_out_and_nothing_else() {
        let dump = "--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\n\
                    SET transaction_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\n\
                    \nCREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$\nBEGIN\nEND $$;\n\
                    SET transaction_timeout = 0;\n";
        let second = "--\n-- PostgreSQL database dump\n--\n\nSET transaction_timeout = 0;\nCOPY t FROM stdin;\n";
        let known = |name: &str| name != "transaction_timeout";
        let kept = without_unknown_settings(dump, known);
        assert_eq!(
            kept,
            dump.replacen("SET transaction_timeout = 0;\n", "", 1),
            "only the header's line goes"
        );
        assert_eq!(without_unknown_settings(dump, |_| true), dump);
        let both = format!("{dump}{second}");
        assert_eq!(
            without_unknown_settings(&both, known),
            format!(
                "{}{}",
                dump.replacen("SET transaction_timeout = 0;\n", "", 1),
                second.replace("SET transaction_timeout = 0;\n", "")
            ),
            "the second dump's header too"
        );
    }
}
