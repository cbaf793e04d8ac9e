//! Raw flags and the environment turned into one checked configuration, before anything
//! connects or writes.

use std::path::PathBuf;

use migrate_core::runtime::MigratorConfig;

use crate::cli::{Cli, Command, Format};
use crate::error::CliError;

/// Where the database connection string came from; shown in messages instead of the
/// string itself, which may hold a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlSource {
    Flag,
    DatabaseUrl,
    PgVariables,
    DbVariables,
}

impl UrlSource {
    pub fn describe(self) -> &'static str {
        match self {
            UrlSource::Flag => "--database-url",
            UrlSource::DatabaseUrl => "DATABASE_URL",
            UrlSource::PgVariables => "the PG* variables",
            UrlSource::DbVariables => "the DB_* variables",
        }
    }
}

/// A connection string and its origin. `Debug` hides the string.
#[derive(Clone)]
pub struct DatabaseUrl {
    pub url: String,
    pub source: UrlSource,
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseUrl")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Everything a command needs, checked.
#[derive(Debug)]
pub struct Config {
    /// `--dir`, when given.
    pub dir: Option<PathBuf>,
    pub database: Option<DatabaseUrl>,
    pub format: Format,
    pub migrator: MigratorConfig,
    /// ANSI colours on stdout.
    pub color: bool,
    /// ANSI colours in the logs on stderr: only when stderr is a terminal.
    pub stderr_color: bool,
    /// Progress bars on stderr.
    pub progress: bool,
    pub verbose: u8,
}

impl Config {
    pub fn from_cli(cli: &Cli, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, CliError> {
        if cli.format == Format::Github && !matches!(cli.command, Command::Lint { .. }) {
            return Err(CliError::Usage(
                "--format github is only for `lint`; use human or json".into(),
            ));
        }
        let mut migrator = MigratorConfig::default();
        if let Some(table) = &cli.history_table {
            // Validated (and later always quoted) by the runtime; checked here so a typo is a
            // usage error before any connection.
            migrate_core::runtime::TableName::parse(table)
                .map_err(|error| CliError::Usage(error.to_string()))?;
            migrator.history_table = table.clone();
        }
        if let Some(timeout) = cli.lock_timeout {
            migrator.lock_timeout = timeout;
        }
        if let Some(timeout) = cli.statement_timeout {
            migrator.statement_timeout = timeout;
        }
        if let Some(wait) = cli.lock_wait {
            migrator.lock_wait = wait;
        }
        if let Some(stabilisation) = cli.contract_stabilisation {
            migrator.contract_stabilisation = stabilisation;
        }
        if let Some(limit) = cli.max_replica_lag {
            migrator.max_replica_lag = limit.0;
        }
        if let Command::Up {
            allow_out_of_order,
            ignore_missing,
            ..
        } = cli.command
        {
            migrator.allow_out_of_order = allow_out_of_order;
            migrator.ignore_missing = ignore_missing;
        }
        if let Some(timeout) = cli.network_timeout {
            migrator.network_timeout = timeout;
        }
        migrator.validate().map_err(|error| {
            let flag = match &error {
                migrate_core::runtime::RuntimeError::InvalidSetting { setting, .. } => {
                    format!(" (--{})", setting.replace('_', "-"))
                }
                _ => String::new(),
            };
            CliError::Usage(format!("{error}{flag}"))
        })?;
        let no_color = env("NO_COLOR").is_some_and(|v| !v.is_empty());
        use std::io::IsTerminal;
        Ok(Config {
            dir: cli.dir.clone(),
            database: resolve_database_url(cli.database_url.as_deref(), env),
            format: cli.format,
            migrator,
            color: cli.format == Format::Human && !no_color && std::io::stdout().is_terminal(),
            stderr_color: !no_color && std::io::stderr().is_terminal(),
            progress: cli.format == Format::Human && std::io::stderr().is_terminal(),
            verbose: cli.verbose,
        })
    }
}

/// `--database-url`, else `DATABASE_URL`, else the libpq variables, else `DB_*`. Empty
/// values count as unset.
pub fn resolve_database_url(
    flag: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<DatabaseUrl> {
    let get = |key: &str| env(key).filter(|v| !v.is_empty());
    if let Some(url) = flag.filter(|v| !v.is_empty()) {
        return Some(DatabaseUrl {
            url: url.to_owned(),
            source: UrlSource::Flag,
        });
    }
    if let Some(url) = get("DATABASE_URL") {
        return Some(DatabaseUrl {
            url,
            source: UrlSource::DatabaseUrl,
        });
    }
    let pg = ["PGHOST", "PGPORT", "PGDATABASE", "PGUSER"];
    if pg.iter().any(|key| get(key).is_some()) {
        let user = get("PGUSER").or_else(|| get("USER"));
        return Some(DatabaseUrl {
            url: build_url(
                get("PGHOST").as_deref(),
                get("PGPORT").as_deref(),
                get("PGDATABASE").or_else(|| user.clone()).as_deref(),
                user.as_deref(),
                get("PGPASSWORD").as_deref(),
                get("PGSSLMODE").as_deref(),
                get("PGSSLROOTCERT").as_deref(),
            ),
            source: UrlSource::PgVariables,
        });
    }
    let db = ["DB_HOST", "DB_PORT", "DB_NAME", "DB_USER"];
    if db.iter().any(|key| get(key).is_some()) {
        return Some(DatabaseUrl {
            url: build_url(
                get("DB_HOST").as_deref(),
                get("DB_PORT").as_deref(),
                get("DB_NAME").as_deref(),
                get("DB_USER").as_deref(),
                get("DB_PASSWORD").as_deref(),
                get("PGSSLMODE").as_deref(),
                get("PGSSLROOTCERT").as_deref(),
            ),
            source: UrlSource::DbVariables,
        });
    }
    None
}

/// A `postgres://` URL with every part percent-encoded, so passwords with `@`, `/` or spaces
/// and socket folders (`/var/run/postgresql`) survive.
fn build_url(
    host: Option<&str>,
    port: Option<&str>,
    dbname: Option<&str>,
    user: Option<&str>,
    password: Option<&str>,
    sslmode: Option<&str>,
    sslrootcert: Option<&str>,
) -> String {
    let mut url = String::from("postgres://");
    if let Some(user) = user {
        url.push_str(&encode(user));
        if let Some(password) = password {
            url.push(':');
            url.push_str(&encode(password));
        }
        url.push('@');
    }
    url.push_str(&encode(host.unwrap_or("localhost")));
    if let Some(port) = port {
        url.push(':');
        url.push_str(&encode(port));
    }
    url.push('/');
    if let Some(dbname) = dbname {
        url.push_str(&encode(dbname));
    }
    let mut query = Vec::new();
    if let Some(mode) = sslmode {
        query.push(format!("sslmode={}", encode(mode)));
    }
    if let Some(cert) = sslrootcert {
        query.push(format!("sslrootcert={}", encode(cert)));
    }
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query.join("&"));
    }
    url
}

fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |key| map.get(key).cloned()
    }

    #[test]
    fn order_is_flag_database_url_pg_db() {
        let all = env_of(&[
            ("DATABASE_URL", "postgres://a@h/d"),
            ("PGHOST", "pg"),
            ("DB_HOST", "db"),
        ]);
        let from_flag = resolve_database_url(Some("postgres://f@h/d"), &all).unwrap();
        assert_eq!(from_flag.source, UrlSource::Flag);
        assert_eq!(
            resolve_database_url(None, &all).unwrap().source,
            UrlSource::DatabaseUrl
        );
        let pg = env_of(&[("PGHOST", "pg"), ("DB_HOST", "db"), ("DATABASE_URL", "")]);
        assert_eq!(
            resolve_database_url(None, &pg).unwrap().source,
            UrlSource::PgVariables
        );
        let db = env_of(&[("DB_HOST", "db"), ("PGPASSWORD", "x")]);
        assert_eq!(
            resolve_database_url(None, &db).unwrap().source,
            UrlSource::DbVariables
        );
        assert!(resolve_database_url(None, &env_of(&[("PGPASSWORD", "x")])).is_none());
    }

    #[test]
    fn variables_build_a_parseable_url() {
        let env = env_of(&[
            ("PGHOST", "/var/run/postgresql"),
            ("PGPORT", "5433"),
            ("PGDATABASE", "app"),
            ("PGUSER", "deploy"),
            ("PGPASSWORD", "p@ss word/:?"),
            ("PGSSLMODE", "disable"),
        ]);
        let url = resolve_database_url(None, &env).unwrap().url;
        let options = migrate_core::runtime::ConnectOptions::parse(&url).unwrap();
        assert_eq!(options.config.get_user(), Some("deploy"));
        assert_eq!(options.config.get_dbname(), Some("app"));
        assert_eq!(options.config.get_ports(), &[5433]);
        assert_eq!(
            options.config.get_password(),
            Some("p@ss word/:?".as_bytes())
        );
        assert_eq!(options.ssl_mode, migrate_core::runtime::SslMode::Disable);
        assert!(matches!(
            options.config.get_hosts(),
            [tokio_postgres::config::Host::Unix(path)] if path.as_os_str() == "/var/run/postgresql"
        ));
    }

    #[test]
    fn contract_gate_flags_reach_the_migrator_config() {
        use clap::Parser;
        use std::time::Duration;
        let config_of = |args: &[&str]| {
            let cli = Cli::try_parse_from(args).expect("valid flags");
            Config::from_cli(&cli, &env_of(&[]))
                .expect("valid config")
                .migrator
        };
        let defaults = config_of(&["migrate", "status"]);
        assert_eq!(defaults.contract_stabilisation, Duration::ZERO);
        assert_eq!(defaults.max_replica_lag, Some(Duration::from_secs(30)));
        let set = config_of(&[
            "migrate",
            "up",
            "--contract-stabilisation",
            "1h30m",
            "--max-replica-lag",
            "500ms",
        ]);
        assert_eq!(set.contract_stabilisation, Duration::from_secs(5400));
        assert_eq!(set.max_replica_lag, Some(Duration::from_millis(500)));
        let off = config_of(&["migrate", "--max-replica-lag", "off", "up"]);
        assert_eq!(off.max_replica_lag, None);
        assert!(Cli::try_parse_from(["migrate", "--max-replica-lag", "soon", "up"]).is_err());
    }

    #[test]
    fn timeouts_that_would_turn_a_bound_off_are_usage_errors() {
        use clap::Parser;
        let error_of = |args: &[&str]| {
            let cli = Cli::try_parse_from(args).expect("parses");
            Config::from_cli(&cli, &env_of(&[])).expect_err("refused")
        };
        for args in [
            &["migrate", "--lock-timeout", "0", "up"][..],
            &["migrate", "--lock-timeout", "2h", "up"][..],
            &["migrate", "--network-timeout", "0", "status"][..],
        ] {
            let error = error_of(args);
            assert!(matches!(error, CliError::Usage(_)), "{args:?}: {error}");
            assert!(
                error.to_string().contains(&format!("({})", args[1])),
                "{error}"
            );
        }
        let cli = Cli::try_parse_from(["migrate", "--statement-timeout", "0", "up"]).unwrap();
        let config = Config::from_cli(&cli, &env_of(&[])).expect("0 disables statement_timeout");
        assert!(config.migrator.statement_timeout.is_zero());
    }

    #[test]
    fn debug_never_shows_the_url() {
        let url = DatabaseUrl {
            url: "postgres://u:hunter2@h/d".into(),
            source: UrlSource::Flag,
        };
        assert!(!format!("{url:?}").contains("hunter2"));
    }
}
