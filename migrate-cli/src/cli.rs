//! The command line, as clap parses it. Nothing here runs anything: [`crate::config`] turns
//! these raw flags into a checked [`crate::config::Config`] first.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::duration::{ReplicaLagLimit, parse_duration, parse_replica_lag_limit};

pub const EXIT_CODES: &str = "\
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

/// Zero-downtime PostgreSQL migrations: lint, plan, apply, revert and check expand/backfill/
/// contract migration files.
#[derive(Debug, Parser)]
#[command(name = "migrate", version, after_help = EXIT_CODES, max_term_width = 100)]
pub struct Cli {
    /// Folder of migration files [default: migrations, or the embedded set's folder].
    #[arg(long, global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// PostgreSQL connection string (postgres://user:pass@host:port/db?sslmode=verify-full or
    /// key=value). Prefer DATABASE_URL: a flag's value is visible to other local users in
    /// the process list.
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,

    /// Output format; `github` (workflow annotations) is for `lint` only.
    #[arg(long, global = true, value_enum, default_value_t = Format::Human)]
    pub format: Format,

    /// History table, `table` or `schema.table` [default: public.schema_migrations]. The
    /// flags table is named after it (`<table>_flags`).
    #[arg(long, global = true, value_name = "NAME")]
    pub history_table: Option<String>,

    /// Session lock_timeout: the longest a statement waits for a lock (and so the longest
    /// the application queues behind it), e.g. 5s, 500ms; from 1ms to 10m (0 would mean
    /// "wait forever" to PostgreSQL, so it is refused) [default: 5s].
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    pub lock_timeout: Option<Duration>,

    /// Session statement_timeout; 0 disables it (and the client's bound on migration
    /// statements, see --network-timeout) [default: 15m].
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    pub statement_timeout: Option<Duration>,

    /// How long to wait for another migration run's advisory lock [default: 60s].
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    pub lock_wait: Option<Duration>,

    /// Contract gate: time that must pass between applying an expand and its contract, on
    /// the server's clock, e.g. 30m, 24h [default: 0, no wait].
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    pub contract_stabilisation: Option<Duration>,

    /// Contract gate: longest replay lag of any replica (pg_stat_replication) before a
    /// contract runs; the gate waits that long for replicas to catch up, then refuses. `off`
    /// disables it. The role needs pg_monitor to see the lag [default: 30s].
    #[arg(long, global = true, value_name = "DURATION|off", value_parser = parse_replica_lag_limit)]
    pub max_replica_lag: Option<ReplicaLagLimit>,

    /// Client-side allowance for the server's answers: the runtime's own queries wait at
    /// most lock_timeout + this, migration statements statement_timeout + this; a server
    /// that stops answering then fails the run instead of hanging it [default: 30s].
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    pub network_timeout: Option<Duration>,

    /// Log more to stderr (-v: info, -vv: debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned tables; colour on a terminal unless NO_COLOR is set.
    Human,
    /// One JSON document on stdout, with the shape documented in docs/cli.md.
    Json,
    /// GitHub Actions workflow annotations (lint only).
    Github,
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
    Up {
        /// Apply only migrations up to and including this version.
        #[arg(long, value_name = "VERSION")]
        to: Option<u64>,
        /// Print what would be applied, evaluating every check and contract gate the real
        /// run does (it exits as the real run would); touch nothing.
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
    /// Read only. Without a database every migration is shown.
    Plan,

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

    /// Show every backfill statement's progress: rows done, last key, finished and verified.
    ///
    /// Read only. A backfill runs in keyed batches during `up`; its progress survives a
    /// killed run, which resumes from the last key.
    Backfill,

    /// Check again that applied backfills left no row behind: count the rows that still
    /// match each backfill statement's WHERE, and record verified_at where none does.
    ///
    /// Run it before deploying a contract: application code that does not dual-write can
    /// create rows in the old shape after a backfill ran. Only reads the application's
    /// tables. Exits 1 when rows remain.
    Verify {
        /// Only this backfill migration.
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
    Check {
        /// The folder [default: --dir].
        #[arg(value_name = "DIR")]
        path: Option<PathBuf>,
    },

    /// Read and set dual-write flags (table `<history table>_flags`).
    Flag {
        #[command(subcommand)]
        action: FlagCommand,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PhaseArg {
    Expand,
    Backfill,
    Contract,
}

#[derive(Debug, Subcommand)]
pub enum FlagCommand {
    /// Print one flag; exits 1 when it was never set.
    Get { name: String },
    /// Turn a flag on or off, creating it (and the flags table) if needed.
    Set { name: String, state: OnOff },
    /// List every flag.
    List,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}
