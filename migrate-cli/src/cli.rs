//! The command line, as clap parses it. Nothing here runs anything: `crate::config` turns
//! these raw flags into a checked `Config` first.
//!
//! `--dir`, `--format` and `-v` are global; the database, timeout, lock and contract-gate
//! options belong to the subcommands that use them (`GROUPS`), so each `--help` lists only
//! what applies.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::duration::{ReplicaLagLimit, parse_duration, parse_replica_lag_limit};

/// The end of `migrate --help`: exit codes and where the database comes from.
pub(crate) const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  failure (database unreachable, a migration failed, check found a broken down part, ...)
  2  usage error (bad flags, unknown rule, invalid name)
  3  lint findings at error level (lint, or a command refusing a folder that does not lint)
  4  refused: the history and the files disagree (drift, applied versions missing from the
     files, pending versions older than the newest applied)

Database, first found: --database-url, DATABASE_URL, the PG* variables (PGHOST, PGPORT,
PGDATABASE, PGUSER, PGPASSWORD, PGSSLMODE), the DB_* variables (DB_HOST, DB_PORT, DB_NAME,
DB_USER, DB_PASSWORD). Passwords are never printed.";

/// The command line as the rest of the crate reads it: the global options, the database,
/// timeout, lock and contract-gate options (wherever they were written), and the command.
///
/// Public for its clap command (`Cli::command()`, from [`CommandFactory`]): what `--help`
/// shows, for tests and tools that read it. Its fields are the crate's own.
//
// clap sees the layout of `TopLevel` (below), with each option group attached only to the
// subcommands that use it (see `GROUPS`): `migrate new --help` shows no replica lag.
// The groups are attached when the clap command is built rather than flattened into
// `Command`'s variants, because commands read them through `crate::config::Config`,
// never from the variant they dispatch on.
#[derive(Debug)]
pub struct Cli {
    /// `--dir`.
    pub(crate) dir: Option<PathBuf>,
    /// `--layout`.
    pub(crate) layout: Option<migrate_core::source::Layout>,
    /// `--format`.
    pub(crate) format: Format,
    /// How many `-v`.
    pub(crate) verbose: u8,
    /// Where the database and its state tables are.
    pub(crate) database: DatabaseArgs,
    /// The session's `lock_timeout` and `statement_timeout`.
    pub(crate) timeouts: TimeoutArgs,
    /// How long to wait for the migration lock.
    pub(crate) lock: LockArgs,
    /// The contract gates' limits.
    pub(crate) gates: GateArgs,
    /// The backfill controller's settings.
    pub(crate) backfill: BackfillArgs,
    /// The subcommand and its own arguments.
    pub(crate) command: Command,
}

/// Zero-downtime PostgreSQL migrations: lint, plan, apply, revert and check
/// expand/backfill/contract migration files.
#[derive(Debug, Parser)]
#[command(name = "migrate", version, max_term_width = 100)]
struct TopLevel {
    /// Folder of migration files [default: migrations].
    #[arg(long, global = true, value_name = "DIR")]
    dir: Option<PathBuf>,

    /// Read the folder in another tool's layout: migrate, sqlx, golang-migrate, dbmate,
    /// refinery, flyway, diesel [default: `layout` of migrate.toml, else detected from the
    /// file names].
    #[arg(long, global = true, value_name = "LAYOUT", value_parser = parse_layout)]
    layout: Option<migrate_core::source::Layout>,

    /// Output format; `github` (workflow annotations) is for `lint` only.
    #[arg(long, global = true, value_enum, default_value_t = Format::Human)]
    format: Format,

    /// Log more to stderr (-v: info, -vv: debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

// Where the database is and where its migration state lives. (Plain comments on these
// groups: clap would take a doc comment as the `about` of every command they join.)
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Database")]
pub(crate) struct DatabaseArgs {
    /// PostgreSQL connection string (postgres://user:pass@host:port/db?sslmode=verify-full or
    /// key=value). Prefer DATABASE_URL: a flag's value is visible to other local users in
    /// the process list.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,

    /// History table, `table` or `schema.table` [default: public.schema_migrations]. The
    /// backfill progress, partial-run and flags tables are named after it
    /// (`<table>_backfill`, `<table>_partial`, `<table>_flags`).
    #[arg(long, value_name = "NAME")]
    pub history_table: Option<String>,

    /// Client-side allowance for the server's answers: the runtime's own queries wait at
    /// most lock_timeout + this, migration statements statement_timeout + this; a server
    /// that stops answering then fails the run instead of hanging it [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub network_timeout: Option<Duration>,
}

// The session's timeouts.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Timeouts")]
pub(crate) struct TimeoutArgs {
    /// Session lock_timeout: the longest a statement waits for a lock (and so the longest
    /// the application queues behind it), e.g. 5s, 500ms; from 1ms to 10m (0 would mean
    /// "wait forever" to PostgreSQL, so it is refused). It also bounds, with
    /// --network-timeout, every query of the runtime's own [default: 5s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub lock_timeout: Option<Duration>,

    /// Session statement_timeout; 0 disables it (and the client's bound on migration
    /// statements, see --network-timeout) [default: 15m].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub statement_timeout: Option<Duration>,

    /// Parallel workers an index build may add (the session's
    /// max_parallel_maintenance_workers): 0 keeps each CREATE INDEX [CONCURRENTLY] on one
    /// core, as a backfill batch, so a build on a large table does not take every core of the
    /// server from the application; `server` leaves the server's setting [default: 0].
    #[arg(long, value_name = "N|server", value_parser = parse_index_build_workers)]
    pub index_build_workers: Option<IndexBuildWorkers>,
}

/// `--index-build-workers`: a count, or the server's own setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexBuildWorkers(pub Option<u32>);

fn parse_index_build_workers(text: &str) -> Result<IndexBuildWorkers, String> {
    if text == "server" {
        return Ok(IndexBuildWorkers(None));
    }
    match text.parse::<u32>() {
        // PostgreSQL's own bound on max_parallel_maintenance_workers.
        Ok(workers) if workers <= 1024 => Ok(IndexBuildWorkers(Some(workers))),
        _ => Err(format!(
            "expected a number of workers from 0 to 1024, or `server`, got `{text}`"
        )),
    }
}

// The advisory lock that lets one run at a time change the database.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Migration lock")]
pub(crate) struct LockArgs {
    /// How long to wait for another migration run's advisory lock [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub lock_wait: Option<Duration>,
}

// What must hold before a contract migration runs.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Contract gates")]
pub(crate) struct GateArgs {
    /// Time that must pass between applying an expand and its contract, on the server's
    /// clock, e.g. 30m, 24h [default: 0, no wait].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub contract_stabilisation: Option<Duration>,

    /// Longest replay lag of any replica (pg_stat_replication) before a contract runs; the
    /// gate waits that long for replicas to catch up, then refuses. `off` disables it. The
    /// role needs pg_monitor to see the lag [default: 30s].
    #[arg(long, value_name = "DURATION|off", value_parser = parse_replica_lag_limit)]
    pub max_replica_lag: Option<ReplicaLagLimit>,
}

// How backfills without batch=/delay= pace themselves.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Backfill controller")]
pub(crate) struct BackfillArgs {
    /// The duration each backfill batch aims at: batches are sized from the measured rows/s
    /// so that each holds its rows' locks about this long. A file's `target=` overrides
    /// it; `batch=`/`delay=` fix the batches instead [default: 100ms].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub backfill_target: Option<Duration>,

    /// The duration each batch aims at while an application runs on the server (the
    /// controller measures at least 50 of its transactions a second): its transactions
    /// queue behind a batch's CPU and commit for as long as the batch runs. On an idle
    /// server batches aim at --backfill-target. `off`: --backfill-target throughout; a
    /// file's `target=` sets both [default: 3ms].
    #[arg(long, value_name = "DURATION|off", value_parser = parse_replica_lag_limit)]
    pub backfill_busy_target: Option<ReplicaLagLimit>,

    /// Back off while more sessions than this are active in pg_stat_activity, on average
    /// over a batch and the rest before it [default:
    /// twice the most seen in the second before the backfill, and at least 8 more].
    #[arg(long, value_name = "SESSIONS")]
    pub backfill_max_active: Option<u32>,

    /// A cheap query the application really runs (e.g. a primary-key read), timed on a
    /// second connection during each batch; the backfill backs off when it is twice as slow
    /// as before the backfill. `off` disables it [default: SELECT count(*) FROM
    /// generate_series(1, 1000), a tenth of a millisecond of work that waits for a CPU as the
    /// application's queries do].
    #[arg(long, value_name = "SQL|off")]
    pub backfill_probe: Option<String>,

    /// Pause backfills while this query returns true (one row, one boolean column).
    #[arg(long, value_name = "SQL")]
    pub backfill_throttle_query: Option<String>,

    /// Most batches a backfill runs at once, over disjoint key ranges, each on its own
    /// connection: a ceiling, the controller adds one only while the server has room
    /// [default: 4].
    #[arg(long, value_name = "N")]
    pub backfill_workers: Option<u32>,

    /// The database server's CPUs, against which the sessions running there are counted
    /// [default: read from the server's /proc/cpuinfo, which needs pg_read_server_files;
    /// without it that signal is off].
    #[arg(long, value_name = "N")]
    pub backfill_server_cpus: Option<u32>,

    /// The share of the server's CPUs, in percent, that everything running there is kept
    /// under, backfill batches included: the batches rest so that the application's use and
    /// theirs stay below it. Higher is a faster backfill and a slower application on a busy
    /// server: its sessions queue for a CPU while a batch holds one [default: 75].
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub backfill_max_cpu_percent: Option<u32>,

    /// Pause backfills while a replica has not replayed WAL written longer ago than this;
    /// `off` disables it [default: 5s].
    #[arg(long, value_name = "DURATION|off", value_parser = parse_replica_lag_limit)]
    pub backfill_max_replica_lag: Option<ReplicaLagLimit>,

    /// Abort backfills (progress kept, the next up resumes) while a replica lags more than
    /// this, on two readings a poll apart [default: off].
    #[arg(long, value_name = "DURATION|off", value_parser = parse_replica_lag_limit)]
    pub backfill_critical_replica_lag: Option<ReplicaLagLimit>,

    /// Abort a backfill paused longer than this, for any reason (progress kept)
    /// [default: off].
    #[arg(long, value_name = "DURATION|off", value_parser = parse_replica_lag_limit)]
    pub backfill_max_pause: Option<ReplicaLagLimit>,

    /// Pause backfills while more WAL segments than this wait for the archiver
    /// (pg_wal/archive_status; needs pg_monitor). `off` disables it [default: 64].
    #[arg(long, value_name = "SEGMENTS|off", value_parser = parse_count_or_off)]
    pub backfill_max_wal_backlog: Option<CountLimit>,

    /// Which autovacuum runs on the backfill's table pause it [default: wraparound].
    #[arg(long, value_name = "WHICH")]
    pub backfill_autovacuum: Option<AutovacuumArg>,

    /// Pause backfills while a transaction holding back the xmin horizon (or a prepared
    /// one) is older than this: every dead row a batch leaves stays until it ends. `off`
    /// disables it [default: 10m].
    #[arg(long, value_name = "DURATION|off", value_parser = parse_replica_lag_limit)]
    pub backfill_max_xact_age: Option<ReplicaLagLimit>,

    /// Whether the backfill vacuums its table itself, each time its batches have changed
    /// half of autovacuum's threshold for it: paced like autovacuum, but its writes reach
    /// the disk as it goes, where an autovacuum worker's reach it in one burst that stalls
    /// the application's commits; the freed space takes the next batches' rows, so the table
    /// does not double. Like autovacuum it yields: it is cancelled when a session waits
    /// behind it for a lock on the table (an ALTER TABLE, an ANALYZE), or when a stop signal
    /// comes up (a pause, replica lag), and the next comes after as many rows again. `off`
    /// leaves the dead rows to autovacuum [default: on].
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    pub backfill_vacuum: Option<bool>,
}

fn parse_on_off(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(format!("invalid value `{text}`: expected `on` or `off`")),
    }
}

/// `--backfill-autovacuum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum AutovacuumArg {
    /// No autovacuum pauses a backfill.
    Off,
    /// Autovacuums that prevent transaction ID wraparound.
    Wraparound,
    /// Every autovacuum of the table.
    Any,
}

/// A count, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CountLimit(pub Option<u64>);

fn parse_count_or_off(text: &str) -> Result<CountLimit, String> {
    if text.trim().eq_ignore_ascii_case("off") {
        return Ok(CountLimit(None));
    }
    text.trim()
        .parse()
        .map(|count| CountLimit(Some(count)))
        .map_err(|_| format!("invalid count `{text}`: expected a whole number, or `off`"))
}

/// An option group of [`GROUPS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    /// [`DatabaseArgs`].
    Database,
    /// [`TimeoutArgs`].
    Timeouts,
    /// [`LockArgs`].
    Lock,
    /// [`GateArgs`].
    Gates,
    /// [`BackfillArgs`].
    Backfill,
}

/// The option groups each subcommand takes; subcommands not listed (`lint`, `explain`,
/// `new`) take none. Read-only commands take no advisory lock; only `up` runs contracts;
/// `check` starts its own scratch cluster (no database options, and its contract gates are
/// off) but runs migrations under the session timeouts.
pub(crate) const GROUPS: &[(&str, &[Group])] = &[
    ("status", &[Group::Database, Group::Timeouts]),
    ("plan", &[Group::Database, Group::Timeouts]),
    ("backfill", &[Group::Database, Group::Timeouts]),
    ("verify", &[Group::Database, Group::Timeouts]),
    ("flag", &[Group::Database, Group::Timeouts]),
    ("reconcile", &[Group::Database, Group::Timeouts]),
    ("repair", &[Group::Database, Group::Timeouts, Group::Lock]),
    ("import", &[Group::Database, Group::Timeouts, Group::Lock]),
    ("baseline", &[Group::Database, Group::Timeouts, Group::Lock]),
    ("down", &[Group::Database, Group::Timeouts, Group::Lock]),
    (
        "up",
        &[
            Group::Database,
            Group::Timeouts,
            Group::Lock,
            Group::Gates,
            Group::Backfill,
        ],
    ),
    (
        "fleet",
        &[
            Group::Database,
            Group::Timeouts,
            Group::Lock,
            Group::Gates,
            Group::Backfill,
        ],
    ),
    ("check", &[Group::Timeouts, Group::Backfill]),
    ("squash", &[Group::Timeouts]),
];

/// `backfill rerun` runs batches under the migration lock, as `up` does: it takes these
/// besides `backfill`'s groups, which pause, resume and the read-only view do not show.
const BACKFILL_RERUN_GROUPS: &[Group] = &[Group::Lock, Group::Backfill];

fn groups_of(subcommand: &str) -> &'static [Group] {
    GROUPS
        .iter()
        .find(|(name, _)| *name == subcommand)
        .map_or(&[], |(_, groups)| groups)
}

fn augment(command: clap::Command, group: Group) -> clap::Command {
    match group {
        Group::Database => DatabaseArgs::augment_args(command),
        Group::Timeouts => TimeoutArgs::augment_args(command),
        Group::Lock => LockArgs::augment_args(command),
        Group::Gates => GateArgs::augment_args(command),
        Group::Backfill => BackfillArgs::augment_args(command),
    }
}

/// The ids of a group's options.
fn ids_of(group: Group) -> Vec<clap::Id> {
    augment(clap::Command::new("group"), group)
        .get_arguments()
        .map(|arg| arg.get_id().clone())
        .collect()
}

impl CommandFactory for Cli {
    fn command() -> clap::Command {
        let mut command = TopLevel::command();
        for &(name, groups) in GROUPS {
            command = command.mut_subcommand(name, |mut sub| {
                for &group in groups {
                    sub = augment(sub, group);
                    if matches!(name, "flag" | "backfill" | "fleet") {
                        // Also after the action: `migrate flag get NAME --database-url URL`.
                        for id in ids_of(group) {
                            sub = sub.mut_arg(id, |arg| arg.global(true));
                        }
                    }
                }
                sub
            });
        }
        command = command.mut_subcommand("backfill", |backfill| {
            backfill.mut_subcommand("rerun", |mut rerun| {
                for &group in BACKFILL_RERUN_GROUPS {
                    rerun = augment(rerun, group);
                }
                rerun
            })
        });
        // Before the subcommand, as earlier releases took them (`migrate --database-url URL
        // up`): still accepted, not shown, and ignored by commands that do not use them.
        for group in [
            Group::Database,
            Group::Timeouts,
            Group::Lock,
            Group::Gates,
            Group::Backfill,
        ] {
            command = augment(command, group);
            for id in ids_of(group) {
                command = command.mut_arg(id, |arg| arg.hide(true));
            }
        }
        // Commands this build lacks are not offered (they still parse, to say why).
        #[cfg(not(feature = "check"))]
        {
            for name in ["check", "squash"] {
                command = command.mut_subcommand(name, |sub| sub.hide(true));
            }
            // Its schema comparison needs a scratch cluster too: only --trust is left.
            command = command.mut_subcommand("baseline", |baseline| {
                baseline.mut_arg("trust", |trust| {
                    trust.help(
                        "Skip the schema comparison (said loudly): record without checking. \
                         Required here: this binary was built without `check`, which the \
                         comparison needs (scratch clusters)",
                    )
                })
            });
        }
        command.after_help(format!("{EXIT_CODES}\n\n{OPTIONS_MOVED}"))
    }

    fn command_for_update() -> clap::Command {
        Self::command()
    }
}

/// `command` (a service's subcommand, e.g. `migrate` of `orders-service`) given the
/// options and subcommands of [`Cli`], with hints naming `program`.
pub(crate) fn mount_into(command: clap::Command, program: &str) -> clap::Command {
    let full = Cli::command();
    let mut mounted = command
        .subcommand_required(true)
        .arg_required_else_help(true)
        .max_term_width(100)
        .args(
            full.get_arguments()
                .filter(|arg| !arg.is_positional())
                .cloned(),
        )
        .subcommands(full.get_subcommands().cloned());
    if let Some(after) = full.get_after_help() {
        mounted = mounted.after_help(after.clone());
    }
    // Mounted, it always runs over an embedded set (`MigrateCommand::run`).
    for_program(for_embedded_set(mounted, None), program)
}

/// `text` with each hint's `` `migrate `` (`` `migrate up` ``) naming `program` instead.
pub(crate) fn name_commands(text: &str, program: &str) -> String {
    if program == "migrate" {
        return text.to_owned();
    }
    text.replace("`migrate ", &format!("`{program} "))
}

/// `command` with its help texts naming `program` in hints (`` `orders-service up --help` ``).
pub(crate) fn for_program(command: clap::Command, program: &str) -> clap::Command {
    use clap::builder::{Resettable, StyledStr};
    let rename = |text: Option<&StyledStr>| match text {
        Some(text) => Resettable::Value(StyledStr::from(name_commands(&text.to_string(), program))),
        None => Resettable::Reset,
    };
    let about = rename(command.get_about());
    let long_about = rename(command.get_long_about());
    let after_help = rename(command.get_after_help());
    let after_long_help = rename(command.get_after_long_help());
    command
        .about(about)
        .long_about(long_about)
        .after_help(after_help)
        .after_long_help(after_long_help)
        .mut_args(|arg| {
            let help = rename(arg.get_help());
            let long_help = rename(arg.get_long_help());
            arg.help(help).long_help(long_help)
        })
        .mut_subcommands(|sub| for_program(sub, program))
}

/// `command` of a binary that embeds its set (`versions`, e.g. `versions 1-5`, when known):
/// `--dir` and `--layout` say that only the folder commands take them.
pub(crate) fn for_embedded_set(command: clap::Command, versions: Option<&str>) -> clap::Command {
    let embeds = match versions {
        Some(versions) => format!("this binary embeds its migrations ({versions})"),
        None => "this binary embeds its migrations".to_owned(),
    };
    command
        .mut_arg("dir", |arg| {
            arg.help(format!(
                "Folder of migration files, for the folder commands (lint, check, new, squash), \
                 which need it: {embeds}, which the database commands always use (they refuse \
                 --dir)"
            ))
        })
        .mut_arg("layout", |arg| {
            arg.help(
                "Read the --dir folder in another tool's layout: migrate, sqlx, golang-migrate, \
                 dbmate, refinery, flyway, diesel (folder commands only)",
            )
        })
}

fn parse_layout(text: &str) -> Result<migrate_core::source::Layout, String> {
    migrate_core::source::Layout::parse(text).ok_or_else(|| {
        format!(
            "unknown layout (known: {})",
            migrate_core::source::Layout::names()
        )
    })
}

/// Where the command-specific options are documented, in `migrate --help`.
const OPTIONS_MOVED: &str = "\
Database, timeout, lock and contract-gate options go after the command that uses them:
`migrate up --help` lists them all, e.g. `migrate up --database-url URL --lock-timeout 2s`.";

impl FromArgMatches for Cli {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let top = TopLevel::from_arg_matches(matches)?;
        let mut cli = Cli {
            dir: top.dir,
            layout: top.layout,
            format: top.format,
            verbose: top.verbose,
            database: DatabaseArgs::from_arg_matches(matches)?,
            timeouts: TimeoutArgs::from_arg_matches(matches)?,
            lock: LockArgs::from_arg_matches(matches)?,
            gates: GateArgs::from_arg_matches(matches)?,
            backfill: BackfillArgs::from_arg_matches(matches)?,
            command: top.command,
        };
        // Written after the subcommand, an option wins over the same one before it.
        if let Some((name, sub)) = matches.subcommand() {
            for &group in groups_of(name) {
                cli.prefer_group(group, sub)?;
            }
            if let ("backfill", Some(("rerun", rerun))) = (name, sub.subcommand()) {
                for &group in BACKFILL_RERUN_GROUPS {
                    cli.prefer_group(group, rerun)?;
                }
            }
        }
        Ok(cli)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Cli {
    /// The options of `group` given in `matches` (a subcommand's) win over the same ones
    /// given before it.
    fn prefer_group(&mut self, group: Group, matches: &ArgMatches) -> Result<(), clap::Error> {
        match group {
            Group::Database => self
                .database
                .prefer(DatabaseArgs::from_arg_matches(matches)?),
            Group::Timeouts => self
                .timeouts
                .prefer(TimeoutArgs::from_arg_matches(matches)?),
            Group::Lock => self.lock.prefer(LockArgs::from_arg_matches(matches)?),
            Group::Gates => self.gates.prefer(GateArgs::from_arg_matches(matches)?),
            Group::Backfill => self
                .backfill
                .prefer(BackfillArgs::from_arg_matches(matches)?),
        }
        Ok(())
    }
}

impl Parser for Cli {}

impl DatabaseArgs {
    fn prefer(&mut self, later: DatabaseArgs) {
        self.database_url = later.database_url.or(self.database_url.take());
        self.history_table = later.history_table.or(self.history_table.take());
        self.network_timeout = later.network_timeout.or(self.network_timeout);
    }
}

impl TimeoutArgs {
    fn prefer(&mut self, later: TimeoutArgs) {
        self.lock_timeout = later.lock_timeout.or(self.lock_timeout);
        self.statement_timeout = later.statement_timeout.or(self.statement_timeout);
        self.index_build_workers = later.index_build_workers.or(self.index_build_workers);
    }
}

impl LockArgs {
    fn prefer(&mut self, later: LockArgs) {
        self.lock_wait = later.lock_wait.or(self.lock_wait);
    }
}

impl GateArgs {
    fn prefer(&mut self, later: GateArgs) {
        self.contract_stabilisation = later.contract_stabilisation.or(self.contract_stabilisation);
        self.max_replica_lag = later.max_replica_lag.or(self.max_replica_lag);
    }
}

impl BackfillArgs {
    fn prefer(&mut self, later: BackfillArgs) {
        self.backfill_target = later.backfill_target.or(self.backfill_target);
        self.backfill_busy_target = later.backfill_busy_target.or(self.backfill_busy_target);
        self.backfill_max_active = later.backfill_max_active.or(self.backfill_max_active);
        self.backfill_probe = later.backfill_probe.or(self.backfill_probe.take());
        self.backfill_throttle_query = later
            .backfill_throttle_query
            .or(self.backfill_throttle_query.take());
        self.backfill_max_replica_lag = later
            .backfill_max_replica_lag
            .or(self.backfill_max_replica_lag);
        self.backfill_critical_replica_lag = later
            .backfill_critical_replica_lag
            .or(self.backfill_critical_replica_lag);
        self.backfill_max_pause = later.backfill_max_pause.or(self.backfill_max_pause);
        self.backfill_max_wal_backlog = later
            .backfill_max_wal_backlog
            .or(self.backfill_max_wal_backlog);
        self.backfill_autovacuum = later.backfill_autovacuum.or(self.backfill_autovacuum);
        self.backfill_max_xact_age = later.backfill_max_xact_age.or(self.backfill_max_xact_age);
        self.backfill_vacuum = later.backfill_vacuum.or(self.backfill_vacuum);
        self.backfill_workers = later.backfill_workers.or(self.backfill_workers);
        self.backfill_server_cpus = later.backfill_server_cpus.or(self.backfill_server_cpus);
        self.backfill_max_cpu_percent = later
            .backfill_max_cpu_percent
            .or(self.backfill_max_cpu_percent);
    }
}

impl Command {
    /// The subcommand's name, as typed.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Command::Status => "status",
            Command::Up { .. } => "up",
            Command::Down { .. } => "down",
            Command::Plan { .. } => "plan",
            Command::Lint { .. } => "lint",
            Command::Explain { .. } => "explain",
            Command::New { .. } => "new",
            Command::Repair { .. } => "repair",
            Command::Import { .. } => "import",
            Command::Baseline { .. } => "baseline",
            Command::Squash { .. } => "squash",
            Command::Backfill { .. } => "backfill",
            Command::Verify { .. } => "verify",
            Command::Reconcile { .. } => "reconcile",
            Command::Check { .. } => "check",
            Command::Flag { .. } => "flag",
            Command::Fleet { .. } => "fleet",
        }
    }

    /// Whether it reads or writes a migration folder (`--dir`) rather than applying or
    /// checking a set against a database.
    pub(crate) fn works_on_folder(&self) -> bool {
        matches!(
            self,
            Command::Lint { .. }
                | Command::Check { .. }
                | Command::New { .. }
                | Command::Squash { .. }
        )
    }

    /// Whether it was given its folder as an argument (`lint DIR`, `check DIR`).
    pub(crate) fn has_folder_argument(&self) -> bool {
        matches!(
            self,
            Command::Lint { path: Some(_) } | Command::Check { path: Some(_), .. }
        )
    }
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Aligned tables; colour on a terminal unless NO_COLOR is set.
    Human,
    /// One JSON document on stdout, with the shape documented in docs/cli.md.
    Json,
    /// GitHub Actions workflow annotations (lint only).
    Github,
}

// The subcommands. (A plain comment: clap would take a doc comment here as the `about` of
// `migrate` itself.)
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show every migration: version, name, phase, state (applied, pending, drifted, missing
    /// from files), when it was applied and how long it took.
    ///
    /// Read only: takes no lock and creates nothing. Exits 4 when a migration drifted or an
    /// applied one is missing from the files.
    Status,

    /// Apply the pending migrations, in version order.
    ///
    /// Safety: one run at a time (advisory lock); refuses (exit 4) when an applied file was
    /// edited, when the database has versions the files lack, or when a pending version is
    /// older than the newest applied one. Each migration runs in one transaction, or
    /// statement by statement when it needs autocommit (CREATE INDEX CONCURRENTLY); lock
    /// waits are bounded by --lock-timeout and retried. Needs a database: never falls back
    /// to a scratch one.
    ///
    /// --dry-run needs the database too: what would run, and whether it may, depends on its
    /// history (what is applied, drifted or missing) and on the contract gates (expand
    /// applied, backfills verified, stabilisation time, replicas caught up, rows a backfill
    /// left). `migrate plan` shows the statements and their locks without one.
    Up {
        /// Apply only migrations up to and including this version.
        #[arg(long, value_name = "VERSION")]
        to: Option<u64>,
        /// Apply only the expand migrations at the head of the pending ones, up to the first
        /// backfill or contract: what a new release needs before it rolls out, as a
        /// service's start-up apply does. The rest stay pending and are listed with why;
        /// `migrate up` applies them.
        #[arg(long, conflicts_with = "to")]
        expands_only: bool,
        /// Print what would be applied, evaluating every check and contract gate the real
        /// run does against the database (it exits as the real run would); change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Apply pending migrations older than the newest applied one (e.g. merged from a
        /// long-lived branch) instead of refusing them.
        #[arg(long)]
        allow_out_of_order: bool,
        /// Proceed although the database has applied versions the files lack (applied by a
        /// newer release).
        #[arg(long)]
        ignore_missing: bool,
        /// Before each contract, read pg_stat_statements twice this far apart (e.g. 5m); a
        /// query called in between that uses what the contract drops, renames or retypes
        /// refuses it (exit 1). Without a readable pg_stat_statements every contract is
        /// refused. `off` disables it [default: off].
        #[arg(long, value_name = "DURATION|off", value_parser = parse_replica_lag_limit)]
        running_queries_window: Option<ReplicaLagLimit>,
    },

    /// Revert applied migrations newer than --to, newest first, with their down parts.
    ///
    /// Safety: refuses before reverting anything when one of them has no down part or was
    /// edited since it was applied. A down part drops things: data in dropped columns and
    /// tables is gone. Needs a database: never falls back to a scratch one.
    Down {
        /// Keep this version and everything older; 0 reverts everything.
        #[arg(long, value_name = "VERSION")]
        to: u64,
        /// Print what would be reverted, refusing as the real run would (drift, missing
        /// files, no down part); touch nothing.
        #[arg(long)]
        dry_run: bool,
    },

    /// Show each pending statement with its transaction mode, the lock it takes on which
    /// table, and whether it rewrites or scans the table while holding that lock.
    ///
    /// Read only. Without a database every migration is shown. With one, each statement
    /// shows the size of the largest table it locks (pg_total_relation_size, and
    /// pg_class.reltuples as the row estimate), and a statement whose lock blocks the
    /// application while a table over --large-table is scanned or rewritten is flagged LARGE.
    Plan {
        /// The table size above which a blocking scan or rewrite is flagged: kB, MB, GB, TB
        /// (PostgreSQL's units, of 1024) or KiB, MiB, GiB, TiB (the same); plain numbers are
        /// bytes.
        #[arg(long, value_name = "SIZE", default_value = "1GB", value_parser = crate::size::parse_size)]
        large_table: u64,
    },

    /// Lint a migration folder: exactly the findings `migrations!()` reports at build time,
    /// with the same migrate.toml. Exits 3 on error-level findings.
    Lint {
        /// The folder [default: --dir].
        #[arg(value_name = "DIR")]
        path: Option<PathBuf>,
    },

    /// Explain a lint rule: why it matters, the safe rewrite, flagged and accepted examples.
    /// Without RULE, list the rules.
    Explain {
        #[arg(value_name = "RULE")]
        rule: Option<String>,
    },

    /// Write the next migration file from a template (version = highest + 1, keeping the
    /// zero padding of the folder). Never overwrites a file.
    New {
        /// [a-z0-9_]+, e.g. add_email_verified.
        name: String,
        #[arg(long, value_enum)]
        phase: PhaseArg,
        /// The expand this contract finishes (required for --phase contract).
        #[arg(long, value_name = "VERSION")]
        requires: Option<u64>,
    },

    /// Accept the current checksum of edited, already-applied migrations.
    ///
    /// Safety: only for edits that do not change what ran (comments, formatting, a fix also
    /// applied by hand). Updates the history rows' checksums and sets repaired_at, under the
    /// migration lock, and prints old and new checksums. Without --version every drifted
    /// migration is repaired.
    Repair {
        #[arg(long, value_name = "VERSION")]
        version: Option<u64>,
    },

    /// Adopt a database another tool migrated: copy its history into ours.
    ///
    /// Reads the other tool's history table (_sqlx_migrations, refinery_schema_history,
    /// flyway_schema_history, __diesel_schema_migrations, schema_migrations of golang-migrate
    /// or dbmate) and writes one row per applied version into our empty history table, with
    /// our checksums, in one transaction under the migration lock. Refuses, writing nothing,
    /// when an applied version has no file or its file changed since the tool recorded its
    /// checksum (sqlx, refinery, Flyway), listing them. Never changes the other tool's table.
    /// With --dry-run, shows the rows it would write and writes nothing.
    Import {
        /// The tool whose history to read: sqlx, refinery, flyway, diesel, golang-migrate,
        /// dbmate.
        #[arg(long, value_name = "TOOL", value_parser = parse_layout)]
        from: migrate_core::source::Layout,
        /// Show what would be written; write nothing.
        #[arg(long)]
        dry_run: bool,
    },

    /// Adopt a database whose schema was built by other means: record VERSION and every
    /// earlier migration as applied (marked baselined), so `up` starts after them.
    ///
    /// Safety: first builds a scratch PostgreSQL from the files up to VERSION and compares
    /// its `pg_dump --schema-only` with this database's (owners, privileges, our state tables
    /// and other tools' history tables left out); any difference is shown and nothing is
    /// recorded (exit 4). Refuses a history that already has rows and a VERSION not in the
    /// set. Writes in one transaction under the migration lock.
    Baseline {
        /// The last migration the database already has.
        #[arg(long, value_name = "VERSION")]
        version: u64,
        /// Skip the schema comparison (said loudly): record without checking.
        #[arg(long)]
        trust: bool,
    },

    /// Replace the migrations up to VERSION with one file that creates the schema they make.
    ///
    /// Builds a scratch PostgreSQL from the files up to VERSION and writes its
    /// `pg_dump --schema-only` (owners, privileges, session settings and our state tables left
    /// out) as `<VERSION>_squashed.sql` with a `-- migrate:replaces` line, then removes the
    /// files it replaces (your version control keeps them).
    ///
    /// Safety: proven before anything is written. The folder as it will be lints clean (the
    /// allows the squash carries say why each is honest) and a fresh scratch database built
    /// from it has the same schema as one built from the files; a difference is shown and
    /// nothing is written (exit 4). Databases that applied all the replaced versions read the
    /// squash as applied (nothing runs again); one that applied only some is refused, naming
    /// the missing ones (exit 4); a fresh one runs the squash. The squash has no down part:
    /// reverting it would drop the whole schema. Refused, writing nothing (exit 2): a VERSION
    /// not in the set; migrations up to it that write rows (backfills, INSERT, UPDATE, DELETE,
    /// MERGE, COPY FROM, CREATE TABLE AS, materialized views with data, DO) or change roles,
    /// owners or privileges, which a schema dump of a scratch database would lose; another
    /// tool's layout. A set with lint errors exits 3.
    Squash {
        /// The last migration to squash.
        #[arg(long, value_name = "VERSION")]
        to: u64,
        /// Print the squash and the files it would remove; write nothing.
        #[arg(long)]
        dry_run: bool,
    },

    /// Show every backfill statement's progress (rows done, rows/s, batch size, the
    /// controller's state, last key, finished, verified), pause and resume backfills, or
    /// re-run an applied one.
    ///
    /// Without an action: read only. A backfill runs in keyed batches during `up`, sized to
    /// a target duration and backing off or pausing when the application or a replica
    /// suffers; its progress survives a killed run, which resumes from the last key.
    Backfill {
        #[command(subcommand)]
        action: Option<BackfillAction>,
    },

    /// Check again that applied backfills left no row behind: count the rows that still
    /// match each backfill statement's WHERE, and record verified_at where none does.
    ///
    /// Run it before deploying a contract: application code that does not dual-write can
    /// create rows in the old shape after a backfill ran. Only reads the application's
    /// tables. Exits 1 when rows remain.
    ///
    /// With --compare, compares instead the source and target each backfill declares with
    /// `-- migrate:compare` (a copy into new columns or a new table): chunk by chunk over the
    /// key, a count and a checksum per side computed in the database, each chunk at one
    /// snapshot; only chunks that differ are diffed, key by key. Prints the first differing
    /// keys and their count, records a pass (which a contract with
    /// `-- migrate:requires-compare` waits for) and exits 1 on any difference. An
    /// interrupted compare resumes after its last chunk.
    Verify {
        /// Only this backfill migration.
        #[arg(long, value_name = "VERSION")]
        version: Option<u64>,
        #[command(flatten)]
        compare: CompareArgs,
    },

    /// Replay the dual writes whose modern half failed: re-derive each queued key's modern
    /// row from its legacy row with the backfill's `-- migrate:compare` mapping, then
    /// remove it from the queue (`<history table>_reconcile`).
    ///
    /// Idempotent: a key replayed twice, or already right, ends the same. Each batch of 500
    /// is one transaction. `migrate status` shows how many keys wait.
    Reconcile {
        /// Only the queue of this backfill migration.
        #[arg(long, value_name = "VERSION")]
        version: Option<u64>,
    },

    /// Lint, then prove on a throwaway PostgreSQL that every down part restores the schema.
    ///
    /// Starts its own scratch cluster (never touches --database-url): applies the migrations
    /// one at a time recording `pg_dump --schema-only` after each, reverts them one at a time
    /// from the newest comparing with the schema before each, then applies all again and
    /// compares with the first run. Names every migration whose down part does not restore
    /// the schema. Needs the PostgreSQL server binaries (initdb, pg_ctl, postgres, pg_dump).
    ///
    /// Then applies every migration once more on a database of its own while observing what
    /// PostgreSQL does for each statement (the locks its session was granted, the tables and
    /// indexes rewritten, the tables read in full), beside what `plan` predicts; every
    /// disagreement is flagged.
    ///
    /// With --schema-from (or --schema-file) it starts from production's schema and history
    /// instead of an empty database, and checks only the migrations pending there.
    Check {
        /// The folder [default: --dir].
        #[arg(value_name = "DIR")]
        path: Option<PathBuf>,
        /// Start from this database's schema, migration history (and flags and backfill
        /// progress): read with pg_dump in one read-only snapshot; nothing is written there
        /// (every session runs with default_transaction_read_only=on). Only the migrations
        /// pending there are checked.
        #[arg(long, value_name = "DATABASE_URL", conflicts_with = "schema_file")]
        schema_from: Option<String>,
        /// Start from this SQL dump instead (`pg_dump --schema-only`, plus `pg_dump
        /// --data-only --table=<history table>` for the applied migrations).
        #[arg(long, value_name = "FILE")]
        schema_file: Option<PathBuf>,
        /// With --schema-from: copy up to N rows of every table too, so failures that depend
        /// on data (a unique index over duplicates, a NOT NULL, a CHECK) show up. The sample
        /// is not referentially complete: it loads with triggers and foreign-key checks off.
        #[arg(long, value_name = "N", requires = "schema_from")]
        sample_rows: Option<u64>,
        /// The pg_dump to read --schema-from with (it must be at least the server's
        /// version) [default: the scratch cluster's].
        #[arg(long, value_name = "PATH")]
        pg_dump: Option<PathBuf>,
        /// The queries of the release running now: a .sql file (one query per statement,
        /// $1 parameters allowed), a folder of them, or a sqlx offline folder (.sqlx). Each
        /// is prepared after every pending migration: one an expand or backfill breaks fails
        /// the check; one a contract breaks is reported as what must be gone from production
        /// before that contract runs. Repeatable.
        #[arg(long, value_name = "PATH")]
        queries: Vec<PathBuf>,
        /// The queries of the release deployed after the pending set (same forms): each
        /// must work after the last pending migration, else the check fails. Repeatable.
        #[arg(long, value_name = "PATH")]
        next_queries: Vec<PathBuf>,
        /// Add the running release's queries from this database's pg_stat_statements (read
        /// in a read-only session).
        #[arg(long, value_name = "DATABASE_URL")]
        queries_from: Option<String>,
        /// With --queries-from: only the statements called during this long (two readings
        /// that far apart), e.g. 1m.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "queries_from")]
        queries_window: Option<Duration>,
    },

    /// Read and set dual-write flags (table `<history table>_flags`).
    Flag {
        #[command(subcommand)]
        action: FlagCommand,
    },

    /// Roll the set over a fleet: many databases (--targets FILE), or every tenant schema
    /// matching --schemas GLOB in each.
    ///
    /// Each target keeps its own advisory lock, history table and contract gates, so two
    /// fleet runs at once apply every migration exactly once everywhere. A schema target's
    /// history is `<schema>.schema_migrations` and the set runs with that schema first on
    /// search_path; other schemas are never touched. Settings may also come from the
    /// `[fleet]` table of migrate.toml (targets, schemas, parallel, canary, target_timeout);
    /// flags win. Passwords are never printed: a target is shown by its NAME, else as
    /// user@host:port/db.
    Fleet {
        #[command(flatten)]
        fleet: FleetArgs,
        #[command(subcommand)]
        action: FleetAction,
    },
}

/// Where the fleet is and how it is rolled (any `fleet` action).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Fleet")]
pub(crate) struct FleetArgs {
    /// The targets: one `URL` or `NAME URL` a line, blank lines and `#` comments ignored,
    /// rolled in file order; a database named twice is refused [default: `targets` of
    /// migrate.toml's [fleet], relative to the migrations folder].
    #[arg(long, value_name = "FILE", global = true)]
    pub targets: Option<PathBuf>,
    /// Every schema matching GLOB (`*` any run, `?` one character; e.g. 'tenant_*') in each
    /// database is a target of its own, instead of the database; a database where none
    /// matches is an error naming it.
    #[arg(long, value_name = "GLOB", global = true)]
    pub schemas: Option<String>,
    /// At most N targets at once, one connection each [default: 8 for up, 32 for reads].
    #[arg(long, value_name = "N", global = true)]
    pub parallel: Option<usize>,
    /// The longest one target may take; past it its statement is cancelled and it fails
    /// (for up: the rollout stops) [default: none].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, global = true)]
    pub target_timeout: Option<Duration>,
}

// `fleet up|status|verify|backfill`. (A plain comment, as on `Command`.)
#[derive(Debug, Clone, Subcommand)]
pub(crate) enum FleetAction {
    /// Apply the pending migrations on every target: every target is checked first
    /// (reachable, schemas found, history agreeing with the files) and nothing runs if one
    /// fails; then the canaries, then the rest in file order. The first failure stops the
    /// rollout: no target starts after it, the ones in flight finish their current
    /// migration. Run it again to resume.
    Up {
        /// The first K targets are canaries: all must succeed before any other starts.
        /// [default: `canary` of migrate.toml's [fleet], else 0]
        #[arg(long, value_name = "K")]
        canary: Option<usize>,
        /// As `up --allow-out-of-order`, on every target.
        #[arg(long)]
        allow_out_of_order: bool,
        /// As `up --ignore-missing`, on every target.
        #[arg(long)]
        ignore_missing: bool,
    },
    /// Every target by state (up to date, pending, drifted, failed, unreachable), read in
    /// parallel; exits 1 when a target is unreachable or failed, 4 when one drifted.
    Status,
    /// As `verify` on every target: exits 1 when rows remain anywhere.
    Verify {
        /// Only this backfill migration.
        #[arg(long, value_name = "VERSION")]
        version: Option<u64>,
    },
    /// Every target's backfill progress, or pause/resume the backfills of every target.
    Backfill {
        #[command(subcommand)]
        action: Option<BackfillAction>,
    },
}

/// `verify --compare` and its settings.
#[derive(Debug, Clone, Args)]
pub(crate) struct CompareArgs {
    /// Compare each backfill's declared source and target (see above) instead of
    /// re-counting its WHERE.
    #[arg(long)]
    pub compare: bool,
    /// Differing keys to print (the count covers all).
    #[arg(long, value_name = "N", default_value_t = 100, requires = "compare")]
    pub max_keys: usize,
    /// How long each chunk's queries should take; the chunk size adapts to it.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "250ms", requires = "compare")]
    pub chunk_target: std::time::Duration,
    /// Pause between chunks [default: the backfill's delay=].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "compare")]
    pub delay: Option<std::time::Duration>,
    /// Start from the first key instead of resuming an interrupted compare.
    #[arg(long, requires = "compare")]
    pub restart: bool,
}

/// `new --phase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum PhaseArg {
    Expand,
    Backfill,
    Contract,
}

// `flag get|set|list`. (A plain comment, as on `Command`.)
#[derive(Debug, Subcommand)]
pub(crate) enum FlagCommand {
    /// Print one flag; exits 1 when it was never set.
    Get { name: String },
    /// Turn a flag on or off, creating it (and the flags table) if needed.
    Set { name: String, state: OnOff },
    /// List every flag.
    List,
}

// `backfill pause|resume`. (A plain comment, as on `Command`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub(crate) enum BackfillAction {
    /// Pause every running backfill of the database before its next batch, from any
    /// terminal: stored in the database (the `migrate.backfill_paused` flag), so every runner
    /// sees it. Running backfills wait, showing "paused by an operator", until `resume`.
    Pause,
    /// Let paused backfills go on.
    Resume,
    /// Run an applied backfill's statements again, to fill rows written in the old shape
    /// after it ran (a failed `migrate verify` or contract gate names them).
    ///
    /// In keyed batches as `up` runs them, under the migration lock, paced the same way
    /// (controller, `backfill pause`, throttle query, replica lag), progress recorded, then
    /// verified. Its history row stays as it is. Idempotent: the statement's WHERE skips
    /// rows already done. A re-run that was stopped resumes when run again.
    Rerun {
        /// The applied backfill migration.
        #[arg(value_name = "VERSION")]
        version: u64,
    },
}

/// `flag set NAME on|off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OnOff {
    On,
    Off,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_build_workers_are_a_count_or_the_servers_own() {
        assert_eq!(
            parse_index_build_workers("server"),
            Ok(IndexBuildWorkers(None))
        );
        assert_eq!(
            parse_index_build_workers("2"),
            Ok(IndexBuildWorkers(Some(2)))
        );
        for bad in ["-1", "two", "", "2000"] {
            let error = parse_index_build_workers(bad).expect_err(bad);
            assert!(error.contains("from 0 to 1024, or `server`"), "{error}");
        }
    }

    /// Commands that never connect to the database given by `--database-url` (`check` and
    /// `squash` start scratch clusters of their own).
    const OFFLINE: &[&str] = &["lint", "explain", "new", "check", "squash"];

    /// A value for each required argument of the command tree, by id.
    fn sample_value(id: &str) -> &'static str {
        match id {
            "name" => "my_flag",
            "state" => "on",
            "to" | "version" => "3",
            "from" => "sqlx",
            "phase" => "expand",
            other => {
                panic!("no sample value for the required argument `{other}`: add one to this table")
            }
        }
    }

    /// Every runnable command line of the tree (`flag get NAME`, `backfill pause`, `up`, ...)
    /// whose top-level command is not `OFFLINE`.
    fn database_commands() -> Vec<Vec<String>> {
        fn walk(command: &clap::Command, path: Vec<String>, out: &mut Vec<Vec<String>>) {
            let mut line = path.clone();
            for arg in command.get_positionals().filter(|a| a.is_required_set()) {
                line.push(sample_value(arg.get_id().as_str()).to_owned());
            }
            for arg in command
                .get_arguments()
                .filter(|a| a.is_required_set() && !a.is_positional())
            {
                line.push(format!("--{}", arg.get_long().expect("long option")));
                line.push(sample_value(arg.get_id().as_str()).to_owned());
            }
            if !command.is_subcommand_required_set() {
                out.push(line);
            }
            for sub in command.get_subcommands() {
                let mut next = path.clone();
                next.push(sub.get_name().to_owned());
                walk(sub, next, out);
            }
        }
        let mut out = Vec::new();
        for sub in Cli::command().get_subcommands() {
            if OFFLINE.contains(&sub.get_name()) || sub.get_name() == "help" {
                continue;
            }
            walk(sub, vec![sub.get_name().to_owned()], &mut out);
        }
        out
    }

    #[test]
    fn every_database_command_takes_the_database_options_after_it() {
        let commands = database_commands();
        for expected in ["reconcile", "status", "flag get my_flag", "backfill pause"] {
            assert!(
                commands.iter().any(|c| c.join(" ") == expected),
                "{expected} not walked: {commands:?}"
            );
        }
        for line in commands {
            let mut args = vec!["migrate".to_owned()];
            args.extend(line.iter().cloned());
            args.extend(
                [
                    "--database-url",
                    "postgres://u@h/db",
                    "--history-table",
                    "ops.hist",
                    "--network-timeout",
                    "7s",
                    "--lock-timeout",
                    "2s",
                    "--statement-timeout",
                    "9s",
                ]
                .map(str::to_owned),
            );
            let cli = Cli::try_parse_from(&args)
                .unwrap_or_else(|error| panic!("`{}`: {error}", line.join(" ")));
            assert_eq!(
                cli.database.database_url.as_deref(),
                Some("postgres://u@h/db"),
                "{line:?}"
            );
            assert_eq!(cli.database.history_table.as_deref(), Some("ops.hist"));
            assert_eq!(cli.database.network_timeout, Some(Duration::from_secs(7)));
            assert_eq!(cli.timeouts.lock_timeout, Some(Duration::from_secs(2)));
            assert_eq!(cli.timeouts.statement_timeout, Some(Duration::from_secs(9)));
        }
    }

    #[test]
    fn hints_name_the_programs_command_line() {
        let text = "restore the files, or accept the edits with `migrate repair`; see `migrate`";
        assert_eq!(name_commands(text, "migrate"), text);
        assert_eq!(
            name_commands(text, "orders-service migrate"),
            "restore the files, or accept the edits with `orders-service migrate repair`; see \
             `migrate`"
        );
        // In help too, at every depth: `up`'s long help names `plan`, `backfill rerun`'s
        // options too.
        let mut command = for_program(Cli::command(), "orders");
        let up = command
            .find_subcommand_mut("up")
            .expect("up")
            .render_long_help()
            .to_string();
        assert!(up.contains("`orders plan` shows"), "{up}");
        assert!(!up.contains("`migrate "), "{up}");
        let after = command.render_long_help().to_string();
        assert!(
            after.contains("`orders up --help` lists them all"),
            "{after}"
        );
    }

    #[test]
    fn the_mounted_command_parses_as_the_migrate_binary_does() {
        let mounted = mount_into(clap::Command::new("migrate"), "svc migrate");
        let parent = clap::Command::new("svc")
            .subcommand(mounted)
            .subcommand(clap::Command::new("serve"));
        parent.clone().debug_assert();
        let matches = parent
            .try_get_matches_from(["svc", "migrate", "up", "--to", "3", "--lock-timeout", "2s"])
            .expect("parses");
        let (_, sub) = matches.subcommand().expect("subcommand");
        let cli = Cli::from_arg_matches(sub).expect("a Cli");
        assert!(matches!(cli.command, Command::Up { to: Some(3), .. }));
        assert_eq!(cli.timeouts.lock_timeout, Some(Duration::from_secs(2)));
    }

    #[test]
    fn commands_that_take_the_lock_take_lock_wait_after_them() {
        for line in [
            ["up"].as_slice(),
            &["down", "--to", "1"],
            &["repair"],
            &["import", "--from", "sqlx"],
            &["baseline", "--version", "1"],
        ] {
            let mut args = vec!["migrate"];
            args.extend_from_slice(line);
            args.extend(["--lock-wait", "3s"]);
            let cli = Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            assert_eq!(cli.lock.lock_wait, Some(Duration::from_secs(3)), "{line:?}");
        }
    }
}
