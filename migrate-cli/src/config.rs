//! Raw flags and the environment turned into one checked configuration, before anything
//! connects or writes.

use std::path::PathBuf;

use migrate_core::runtime::{AutovacuumPause, MigratorConfig};

use crate::cli::{Cli, Command, Format};
use crate::error::CliError;

/// Where the database connection string came from; shown in messages instead of the
/// string itself, which may hold a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlSource {
    /// `--database-url`.
    Flag,
    /// `DATABASE_URL`.
    DatabaseUrl,
    /// libpq's `PGHOST`, `PGPORT`, `PGDATABASE`, `PGUSER`, ...
    PgVariables,
    /// `DB_HOST`, `DB_PORT`, `DB_NAME`, `DB_USER`, `DB_PASSWORD`.
    DbVariables,
}

impl UrlSource {
    /// The source as messages name it, e.g. `the PG* variables`.
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
    /// A `postgres://` URL or `key=value` string; may hold a password.
    pub url: String,
    /// Where it came from.
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
    /// `--layout`, when given: wins over migrate.toml's `layout` and detection.
    pub layout: Option<migrate_core::source::Layout>,
    /// The database of the commands that need one; `None` when none is configured.
    pub database: Option<DatabaseUrl>,
    /// `--format`.
    pub format: Format,
    /// The runtime's settings, defaults overridden by the options.
    pub migrator: MigratorConfig,
    /// ANSI colours on stdout.
    pub color: bool,
    /// ANSI colours in the logs on stderr: only when stderr is a terminal.
    pub stderr_color: bool,
    /// Progress bars on stderr.
    pub progress: bool,
    /// `-v` count: 0 warnings, 1 info, 2 and more debug.
    pub verbose: u8,
}

impl Config {
    /// Checks the parsed flags and reads the environment through `env` (tests pass a map):
    /// every usage error surfaces here, before anything connects.
    #[cfg(test)]
    pub fn from_cli(cli: &Cli, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, CliError> {
        Config::from_cli_over(cli, MigratorConfig::default(), env)
    }

    /// [`Config::from_cli`] over `base`, the settings a service gave in code
    /// (`Embedded::config`): an option given on the command line replaces its setting, one
    /// not given leaves the base's value, never the CLI's default.
    pub fn from_cli_over(
        cli: &Cli,
        base: MigratorConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, CliError> {
        if cli.format == Format::Github && !matches!(cli.command, Command::Lint { .. }) {
            return Err(CliError::Usage(
                "--format github is only for `lint`; use human or json".into(),
            ));
        }
        let mut migrator = base;
        if let Some(table) = &cli.database.history_table {
            // Validated (and later always quoted) by the runtime; checked here so a typo is a
            // usage error before any connection.
            migrate_core::runtime::TableName::parse(table)
                .map_err(|error| CliError::Usage(error.to_string()))?;
            migrator.history_table = table.clone();
        }
        if let Some(timeout) = cli.timeouts.lock_timeout {
            migrator.lock_timeout = timeout;
        }
        if let Some(timeout) = cli.timeouts.statement_timeout {
            migrator.statement_timeout = timeout;
        }
        if let Some(workers) = cli.timeouts.index_build_workers {
            migrator.index_build_workers = workers.0;
        }
        if let Some(wait) = cli.lock.lock_wait {
            migrator.lock_wait = wait;
        }
        if let Some(stabilisation) = cli.gates.contract_stabilisation {
            migrator.contract_stabilisation = stabilisation;
        }
        if let Some(limit) = cli.gates.max_replica_lag {
            migrator.max_replica_lag = limit.0;
        }
        let backfill = &cli.backfill;
        if let Some(target) = backfill.backfill_target {
            migrator.backfill.target = target;
        }
        if let Some(busy) = backfill.backfill_busy_target {
            migrator.backfill.busy_target = busy.0;
        }
        if let Some(sessions) = backfill.backfill_max_active {
            migrator.backfill.max_active_sessions = Some(sessions);
        }
        if let Some(probe) = &backfill.backfill_probe {
            migrator.backfill.probe_query =
                (!probe.trim().eq_ignore_ascii_case("off")).then(|| probe.clone());
        }
        if let Some(query) = &backfill.backfill_throttle_query {
            migrator.backfill.throttle_query = Some(query.clone());
        }
        if let Some(limit) = backfill.backfill_max_replica_lag {
            migrator.backfill.max_replica_lag = limit.0;
        }
        if let Some(limit) = backfill.backfill_critical_replica_lag {
            migrator.backfill.critical_replica_lag = limit.0;
        }
        if let Some(limit) = backfill.backfill_max_pause {
            migrator.backfill.max_pause = limit.0;
        }
        if let Some(limit) = backfill.backfill_max_wal_backlog {
            migrator.backfill.max_wal_archive_backlog = limit.0;
        }
        if let Some(which) = backfill.backfill_autovacuum {
            migrator.backfill.autovacuum = match which {
                crate::cli::AutovacuumArg::Off => AutovacuumPause::Off,
                crate::cli::AutovacuumArg::Wraparound => AutovacuumPause::Wraparound,
                crate::cli::AutovacuumArg::Any => AutovacuumPause::Any,
            };
        }
        if let Some(limit) = backfill.backfill_max_xact_age {
            migrator.backfill.max_transaction_age = limit.0;
        }
        if let Some(vacuum) = backfill.backfill_vacuum {
            migrator.backfill.vacuum = vacuum;
        }
        if let Some(workers) = backfill.backfill_workers {
            migrator.backfill.max_workers = workers;
        }
        if let Some(cpus) = backfill.backfill_server_cpus {
            migrator.backfill.server_cpus = Some(cpus);
        }
        if let Some(percent) = backfill.backfill_max_cpu_percent {
            migrator.backfill.max_cpu_percent = percent;
        }
        if let Command::Up {
            running_queries_window: Some(window),
            ..
        } = cli.command
        {
            migrator.running_queries_window = window.0;
        }
        if let Command::Up {
            allow_out_of_order,
            ignore_missing,
            ..
        }
        | Command::Fleet {
            action:
                crate::cli::FleetAction::Up {
                    allow_out_of_order,
                    ignore_missing,
                    ..
                },
            ..
        } = cli.command
        {
            // Switches that only turn a refusal off: absent, they leave the base's choice.
            migrator.allow_out_of_order |= allow_out_of_order;
            migrator.ignore_missing |= ignore_missing;
        }
        if let Some(timeout) = cli.database.network_timeout {
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
            layout: cli.layout,
            database: resolve_database_url(cli.database.database_url.as_deref(), env),
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
    use std::time::Duration;

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

    fn config_of(args: &[&str]) -> Config {
        use clap::Parser;
        let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        Config::from_cli(&cli, &env_of(&[])).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// What a command gets from its options, comparable.
    fn essentials(config: &Config) -> (MigratorConfig, Option<(String, UrlSource)>) {
        (
            config.migrator.clone(),
            config.database.as_ref().map(|d| (d.url.clone(), d.source)),
        )
    }

    #[test]
    fn options_after_the_subcommand_give_the_config_they_gave_before_it() {
        let options = [
            "--database-url",
            "postgres://u@h/d",
            "--history-table",
            "app.history",
            "--network-timeout",
            "5s",
            "--lock-timeout",
            "2s",
            "--statement-timeout",
            "0",
            "--lock-wait",
            "30s",
            "--contract-stabilisation",
            "1h",
            "--max-replica-lag",
            "off",
        ];
        let before: Vec<&str> = ["migrate"]
            .into_iter()
            .chain(options)
            .chain(["up", "--to", "3"])
            .collect();
        let after: Vec<&str> = ["migrate", "up", "--to", "3"]
            .into_iter()
            .chain(options)
            .collect();
        let config = config_of(&after);
        assert_eq!(essentials(&config), essentials(&config_of(&before)));
        let migrator = &config.migrator;
        assert_eq!(migrator.history_table, "app.history");
        assert_eq!(migrator.network_timeout, Duration::from_secs(5));
        assert_eq!(migrator.lock_timeout, Duration::from_secs(2));
        assert!(migrator.statement_timeout.is_zero());
        assert_eq!(migrator.lock_wait, Duration::from_secs(30));
        assert_eq!(migrator.contract_stabilisation, Duration::from_secs(3600));
        assert_eq!(migrator.max_replica_lag, None);
        assert_eq!(config.database.unwrap().source, UrlSource::Flag);

        // Written on both sides, the one after the subcommand wins.
        let both = config_of(&[
            "migrate",
            "--lock-timeout",
            "2s",
            "status",
            "--lock-timeout",
            "3s",
        ]);
        assert_eq!(both.migrator.lock_timeout, Duration::from_secs(3));
        // Without options every command gets the defaults, as before.
        for args in [
            &["migrate", "new", "x", "--phase", "expand"][..],
            &["migrate", "up"],
        ] {
            assert_eq!(
                config_of(args).migrator,
                MigratorConfig::default(),
                "{args:?}"
            );
        }
    }

    #[test]
    fn flag_options_go_before_or_after_the_action() {
        for args in [
            &[
                "migrate",
                "flag",
                "get",
                "f",
                "--database-url",
                "postgres://u@h/d",
            ][..],
            &[
                "migrate",
                "flag",
                "--database-url",
                "postgres://u@h/d",
                "get",
                "f",
            ],
            &[
                "migrate",
                "--database-url",
                "postgres://u@h/d",
                "flag",
                "get",
                "f",
            ],
        ] {
            let config = config_of(args);
            assert_eq!(
                config.database.map(|d| d.url).as_deref(),
                Some("postgres://u@h/d"),
                "{args:?}"
            );
        }
        let set = config_of(&["migrate", "flag", "set", "f", "on", "--history-table", "h"]);
        assert_eq!(set.migrator.history_table, "h");
    }

    /// `backfill rerun` takes the lock and controller options `up` takes, after the version
    /// or before the command; `backfill` itself shows neither (see the test below).
    #[test]
    fn backfill_rerun_takes_the_lock_and_controller_options() {
        for args in [
            &[
                "migrate",
                "backfill",
                "rerun",
                "4",
                "--lock-wait",
                "7s",
                "--backfill-target",
                "40ms",
                "--database-url",
                "postgres://u@h/d",
            ][..],
            &[
                "migrate",
                "--lock-wait",
                "1s",
                "--backfill-target",
                "10ms",
                "backfill",
                "rerun",
                "--lock-wait",
                "7s",
                "--backfill-target",
                "40ms",
                "4",
            ],
        ] {
            let config = config_of(args);
            assert_eq!(
                config.migrator.lock_wait,
                Duration::from_secs(7),
                "{args:?}"
            );
            assert_eq!(
                config.migrator.backfill.target,
                Duration::from_millis(40),
                "{args:?}"
            );
        }
        let config = config_of(&["migrate", "backfill", "rerun", "4"]);
        assert_eq!(
            config.migrator.lock_wait,
            MigratorConfig::default().lock_wait
        );
    }

    #[test]
    fn each_subcommand_shows_only_the_options_it_uses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let mut command = Cli::command();
        command.build(); // propagates the global options to the subcommands
        let shown = |name: &str| -> Vec<String> {
            let sub = command.find_subcommand(name).expect(name);
            sub.get_arguments()
                .filter(|arg| !arg.is_hide_set())
                .filter_map(|arg| arg.get_long().map(str::to_owned))
                .collect()
        };
        let database = ["database-url", "history-table", "network-timeout"];
        let timeouts = ["lock-timeout", "statement-timeout"];
        let gates = ["contract-stabilisation", "max-replica-lag"];
        let every = [&database[..], &timeouts, &["lock-wait"], &gates].concat();
        for name in ["new", "explain", "lint"] {
            let options = shown(name);
            assert!(
                every.iter().all(|o| !options.contains(&o.to_string())),
                "{name}: {options:?}"
            );
        }
        for name in ["status", "plan", "backfill", "verify", "flag"] {
            let options = shown(name);
            for option in database.iter().chain(&timeouts) {
                assert!(options.contains(&option.to_string()), "{name}: {option}");
            }
            for option in ["lock-wait", gates[0], gates[1]] {
                assert!(!options.contains(&option.to_string()), "{name}: {option}");
            }
        }
        let up = shown("up");
        assert!(every.iter().all(|o| up.contains(&o.to_string())), "{up:?}");
        let check = shown("check");
        assert!(check.contains(&"lock-timeout".to_owned()));
        assert!(!check.contains(&"database-url".to_owned()), "{check:?}");
        // The global ones everywhere; the others hidden at the top.
        for name in ["new", "up", "check"] {
            let options = shown(name);
            for global in ["dir", "layout", "format", "verbose"] {
                assert!(options.contains(&global.to_owned()), "{name}: {global}");
            }
        }
        let top: Vec<&str> = command
            .get_arguments()
            .filter(|arg| !arg.is_hide_set())
            .filter_map(|arg| arg.get_long())
            .collect();
        assert_eq!(
            top,
            ["dir", "layout", "format", "verbose", "help", "version"]
        );
    }

    #[test]
    fn an_option_a_command_does_not_take_is_refused_after_it() {
        use clap::Parser;
        for args in [
            &[
                "migrate",
                "new",
                "x",
                "--phase",
                "expand",
                "--lock-timeout",
                "2s",
            ][..],
            &["migrate", "explain", "--max-replica-lag", "off"],
            &["migrate", "status", "--lock-wait", "1s"],
            &["migrate", "check", "--database-url", "postgres://u@h/d"],
        ] {
            let error = Cli::try_parse_from(args).expect_err("refused");
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::UnknownArgument,
                "{args:?}"
            );
        }
    }

    /// `Embedded::config`: the service's settings stay where no option is given, for every
    /// command; an option replaces its own setting only.
    #[test]
    fn a_services_config_is_kept_where_no_option_replaces_it() {
        use clap::Parser;
        let mut base = MigratorConfig {
            history_table: "service.history".into(),
            lock_timeout: Duration::from_secs(3),
            statement_timeout: Duration::from_secs(120),
            lock_wait: Duration::from_secs(5),
            contract_stabilisation: Duration::from_secs(3600),
            max_replica_lag: None,
            allow_out_of_order: true,
            network_timeout: Duration::from_secs(9),
            ..MigratorConfig::default()
        };
        base.backfill.target = Duration::from_millis(40);
        base.backfill.max_workers = 2;
        let over_base = |args: &[&str]| {
            let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            Config::from_cli_over(&cli, base.clone(), &env_of(&[]))
                .unwrap_or_else(|e| panic!("{args:?}: {e}"))
                .migrator
        };
        for args in [
            &["migrate", "up"][..],
            &["migrate", "status"],
            &["migrate", "backfill", "rerun", "4"],
            &["migrate", "fleet", "--targets", "t", "up"],
        ] {
            assert_eq!(over_base(args), base, "{args:?}");
        }
        let replaced = over_base(&[
            "migrate",
            "up",
            "--lock-timeout",
            "2s",
            "--backfill-workers",
            "6",
        ]);
        assert_eq!(replaced.lock_timeout, Duration::from_secs(2));
        assert_eq!(replaced.backfill.max_workers, 6);
        let mut expected = base.clone();
        expected.lock_timeout = Duration::from_secs(2);
        expected.backfill.max_workers = 6;
        assert_eq!(replaced, expected);
        // A base the runtime refuses is a usage error, as the same flag would be.
        let cli = Cli::try_parse_from(["migrate", "status"]).unwrap();
        let refused = MigratorConfig {
            lock_timeout: Duration::ZERO,
            ..MigratorConfig::default()
        };
        let error = Config::from_cli_over(&cli, refused, &env_of(&[])).expect_err("refused");
        assert!(matches!(error, CliError::Usage(_)), "{error}");
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
