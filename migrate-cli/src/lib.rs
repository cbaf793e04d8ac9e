//! The `migrate` command line, also usable as a library so a service that embeds its
//! migrations with `migrations!()` exposes the same subcommands:
//!
//! ```no_run
//! // The folder is relative to the crate's Cargo.toml.
//! static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("../migrations");
//!
//! fn main() -> std::process::ExitCode {
//!     migrate_cli::run_embedded(&MIGRATIONS)
//! }
//! ```
//!
//! Flow (ripgrep style): clap parses the raw flags ([`cli::Cli`]), `config::Config` checks
//! them and resolves the environment, then one command runs and returns an
//! `error::Outcome` or an error; only this edge turns errors into messages and documented
//! exit codes.

#![warn(missing_docs)]

pub mod cli;
mod commands;
mod config;
#[cfg(feature = "check")]
mod diff;
mod duration;
mod error;
mod output;
#[cfg(feature = "check")]
mod schema;
#[cfg(feature = "check")]
mod scratch_schema;
mod size;

use anyhow::Context as _;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use migrate_core::Migrations;
use migrate_core::runtime::{ConnectOptions, TableName, check_history_table, connect_with};
use tokio_postgres::Client;

use cli::{BackfillAction, Cli, Command, Format};
use config::{Config, DatabaseUrl};
use error::{CliError, Outcome};

/// Where the migration set comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A set embedded with `migrations!()`: database commands use it; folder commands (lint,
    /// check, new) use `--dir`, else the folder the set was built from.
    Embedded(&'static Migrations),
    /// Read at run time from `--dir`, else this folder.
    Dir(PathBuf),
}

/// `main` of a service binary that embeds its migrations. Callable from plain `main` and
/// from async code (`#[tokio::main]`): inside a tokio runtime the command runs on a thread of
/// its own, so it never starts a runtime within a runtime. `--help` and `--version` say
/// `migrate`; use [`Embedded`] to show the service's own name, version and description.
pub fn run_embedded(migrations: &'static Migrations) -> ExitCode {
    Embedded::new(migrations).run()
}

/// A service's embedded CLI: its migration set, and the name, version and description its
/// `--help` and `--version` show.
///
/// ```no_run
/// static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("../migrations");
///
/// #[tokio::main]
/// async fn main() -> std::process::ExitCode {
///     migrate_cli::Embedded::new(&MIGRATIONS)
///         .name(env!("CARGO_PKG_NAME"))
///         .version(env!("CARGO_PKG_VERSION"))
///         .about("Orders service: database migrations")
///         .run_async()
///         .await
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Embedded {
    migrations: &'static Migrations,
    identity: Identity,
}

/// What `--help` and `--version` call the program.
#[derive(Debug, Clone, Default)]
struct Identity {
    name: Option<&'static str>,
    version: Option<&'static str>,
    about: Option<&'static str>,
}

impl Embedded {
    /// The CLI over `migrations`, called `migrate` in `--help` and `--version` until
    /// [`Embedded::name`] says otherwise.
    pub fn new(migrations: &'static Migrations) -> Embedded {
        Embedded {
            migrations,
            identity: Identity::default(),
        }
    }

    /// The program name in `--help` and `--version` (e.g. `env!("CARGO_PKG_NAME")`).
    pub fn name(mut self, name: &'static str) -> Embedded {
        self.identity.name = Some(name);
        self
    }

    /// The version `--version` prints (e.g. `env!("CARGO_PKG_VERSION")`).
    pub fn version(mut self, version: &'static str) -> Embedded {
        self.identity.version = Some(version);
        self
    }

    /// The first line of `--help`.
    pub fn about(mut self, about: &'static str) -> Embedded {
        self.identity.about = Some(about);
        self
    }

    /// Runs the command line of the process ([`std::env::args_os`]).
    pub fn run(self) -> ExitCode {
        self.run_args(std::env::args_os().collect())
    }

    /// Runs `args` (the first is the program name).
    pub fn run_args(self, args: Vec<OsString>) -> ExitCode {
        run_outside_runtime(Source::Embedded(self.migrations), self.identity, args)
    }

    /// [`Embedded::run`] for async code: the command runs on a thread of its own (it drives
    /// its one connection on a runtime of its own) and this future waits for it.
    pub async fn run_async(self) -> ExitCode {
        let (done, result) = tokio::sync::oneshot::channel();
        let args: Vec<OsString> = std::env::args_os().collect();
        let spawned = std::thread::Builder::new()
            .name("migrate".into())
            .spawn(move || {
                let _ = done.send(run_identified(
                    Source::Embedded(self.migrations),
                    &self.identity,
                    args,
                ));
            });
        if spawned.is_err() {
            eprintln!("error: could not start the migration thread");
            return ExitCode::from(error::EXIT_FAILURE);
        }
        result
            .await
            .unwrap_or_else(|_| ExitCode::from(error::EXIT_FAILURE))
    }
}

/// `main` of the `migrate` binary: migrations are read from `--dir`, else `default_dir`.
pub fn run_dir(default_dir: impl Into<PathBuf>) -> ExitCode {
    run_outside_runtime(
        Source::Dir(default_dir.into()),
        Identity::default(),
        std::env::args_os().collect(),
    )
}

/// Runs the CLI on this thread, or, when called from inside a tokio runtime, on a thread of
/// its own: the CLI starts a runtime for its connection, and tokio forbids starting one
/// within another.
fn run_outside_runtime(source: Source, identity: Identity, args: Vec<OsString>) -> ExitCode {
    if tokio::runtime::Handle::try_current().is_err() {
        die_quietly_on_closed_pipe();
        return run_identified(source, &identity, args);
    }
    // Inside a service's runtime other threads exist: leave its SIGPIPE handling alone.
    std::thread::scope(|scope| {
        scope
            .spawn(|| run_identified(source, &identity, args))
            .join()
            .unwrap_or_else(|_| ExitCode::from(error::EXIT_FAILURE))
    })
}

/// Rust ignores SIGPIPE, so `migrate plan | head` would make `println!` panic on the closed
/// pipe; restore the default action, like other command-line tools: end quietly.
fn die_quietly_on_closed_pipe() {
    // SAFETY: called from the process's main entry points before any thread is spawned;
    // SIG_DFL is a valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Parses `args` (the first is the program name) and runs the command.
pub fn run_with<I, T>(source: Source, args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    run_identified(
        source,
        &Identity::default(),
        args.into_iter().map(Into::into).collect(),
    )
}

fn run_identified(source: Source, identity: &Identity, args: Vec<OsString>) -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let mut command = Cli::command();
    if let Some(name) = identity.name {
        command = command.name(name).bin_name(name);
    }
    if let Some(version) = identity.version {
        command = command.version(version);
    }
    if let Some(about) = identity.about {
        command = command.about(about);
    }
    let parsed = command
        .try_get_matches_from(args)
        .and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(error) => {
            // --help and --version also arrive here, with exit code 0.
            let _ = error.print();
            return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(error::EXIT_USAGE));
        }
    };
    let format = cli.format;
    match run(cli, source) {
        Ok(outcome) => outcome.exit_code(),
        Err(error) => {
            let code = error::exit_code(&error);
            let message = error::render(&error);
            if format == Format::Json {
                let mut document = serde_json::json!({
                    "error": { "message": message, "exit_code": code }
                });
                if let Some((key, partial)) = commands::apply::partial_json(&error) {
                    document[key] = partial;
                }
                output::print_json(&document);
            } else {
                eprintln!("error: {message}");
            }
            ExitCode::from(code)
        }
    }
}

fn run(cli: Cli, source: Source) -> anyhow::Result<Outcome> {
    let config = Config::from_cli(&cli, &|key| std::env::var(key).ok())?;
    init_tracing(config.verbose, config.stderr_color);
    let context = Context { config, source };
    match cli.command {
        Command::Status => commands::status::run(&context),
        Command::Up { to, dry_run, .. } => commands::apply::up(&context, to, dry_run),
        Command::Down { to, dry_run } => commands::apply::down(&context, to, dry_run),
        Command::Plan { large_table } => commands::plan::run(&context, large_table),
        Command::Lint { path } => commands::lint::run(&context, path.as_deref()),
        Command::Explain { rule } => commands::explain::run(&context, rule.as_deref()),
        Command::New {
            name,
            phase,
            requires,
        } => commands::new::run(&context, &name, phase, requires),
        Command::Repair { version } => commands::repair::run(&context, version),
        Command::Import { from, dry_run } => commands::import::run(&context, from, dry_run),
        Command::Baseline { version, trust } => commands::baseline::run(&context, version, trust),
        #[cfg(feature = "check")]
        Command::Squash { to, dry_run } => commands::squash::run(&context, to, dry_run),
        #[cfg(not(feature = "check"))]
        Command::Squash { .. } => Err(CliError::Usage(
            "this binary was built without `check` (scratch clusters), which squash needs to \
             dump and prove the schema; run `migrate squash` from the migrate binary instead"
                .into(),
        )
        .into()),
        Command::Backfill { action: None } => commands::backfill::status(&context),
        Command::Backfill {
            action: Some(BackfillAction::Rerun { version }),
        } => commands::backfill::rerun(&context, version),
        Command::Backfill {
            action: Some(action),
        } => commands::backfill::pause(&context, action),
        Command::Verify { version, compare } if compare.compare => {
            commands::compare::run(&context, version, &compare)
        }
        Command::Verify { version, .. } => commands::backfill::verify(&context, version),
        Command::Reconcile { version } => commands::reconcile::run(&context, version),
        #[cfg(feature = "check")]
        Command::Check {
            path,
            schema_from,
            schema_file,
            sample_rows,
            pg_dump,
            queries,
            next_queries,
            queries_from,
            queries_window,
        } => commands::check::run(
            &context,
            path.as_deref(),
            &commands::check::CheckSource {
                schema_from,
                schema_file,
                sample_rows,
                pg_dump,
                queries: commands::check::QueryOptions {
                    running: queries,
                    next: next_queries,
                    from: queries_from,
                    window: queries_window,
                },
            },
        ),
        #[cfg(not(feature = "check"))]
        Command::Check { .. } => Err(CliError::Usage(
            "this binary was built without `check` (migrate-cli's `check` feature, which \
             brings the scratch PostgreSQL clusters); run `migrate check` from the migrate \
             binary instead"
                .into(),
        )
        .into()),
        Command::Flag { action } => commands::flag::run(&context, action),
        Command::Fleet { fleet, action } => commands::fleet::run(&context, &fleet, &action),
    }
}

fn init_tracing(verbose: u8, color: bool) {
    let level = match verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    // A service embedding the CLI may have installed its own subscriber: keep it.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .with_ansi(color)
        .try_init();
}

/// What every command gets.
pub(crate) struct Context {
    pub config: Config,
    pub source: Source,
}

impl Context {
    pub fn json(&self) -> bool {
        self.config.format == Format::Json
    }

    /// A folder command's folder and how to show it: the positional argument, else `--dir`,
    /// else the source's folder.
    pub fn folder(&self, positional: Option<&Path>) -> (PathBuf, String) {
        let dir = positional
            .map(Path::to_path_buf)
            .or_else(|| self.config.dir.clone())
            .unwrap_or_else(|| match &self.source {
                Source::Embedded(set) => PathBuf::from(set.dir.as_ref()),
                Source::Dir(default) => default.clone(),
            });
        let display = dir.to_string_lossy().trim_end_matches('/').to_owned();
        (dir, display)
    }

    /// Reads, parses and lints a folder as the macro does, in `--layout` when given.
    pub fn check(&self, dir: &Path, display: &str) -> anyhow::Result<migrate_core::CheckedSet> {
        Ok(migrate_core::check_dir_as(
            dir,
            display,
            self.config.layout,
        )?)
    }

    /// The migration set of database commands. A folder is checked exactly as the macro
    /// checks it: a set the build would refuse is refused here too.
    pub fn migrations(&self) -> anyhow::Result<Migrations> {
        if let (Source::Embedded(set), None) = (&self.source, &self.config.dir) {
            return Ok((*set).clone());
        }
        let (dir, display) = self.folder(None);
        let checked = self.check(&dir, &display)?;
        if checked.has_errors() {
            for diagnostic in checked.errors() {
                eprintln!("{diagnostic}");
            }
            return Err(CliError::InvalidSet {
                display_dir: display,
                errors: checked.errors().count(),
            }
            .into());
        }
        let absolute = std::fs::canonicalize(&dir).unwrap_or(dir);
        Ok(checked.into_migrations(&absolute.to_string_lossy()))
    }

    pub fn database(&self, command: &'static str) -> Result<&DatabaseUrl, CliError> {
        self.config
            .database
            .as_ref()
            .ok_or(CliError::NoDatabase { command })
    }

    /// Opens the dedicated connection (the core's `connect_with`: `PGPASSWORD` for a URL
    /// without a password, a 10 s connect timeout bounding TCP, TLS and startup unless the
    /// URL sets one), then runs the history-table guard ([`check_history_table`]) before the
    /// command touches anything: every database command connects here, so none can skip it.
    /// Errors name where the URL came from, never the URL.
    pub async fn connect(&self, database: &DatabaseUrl) -> anyhow::Result<Client> {
        let from = || format!("the connection string from {}", database.source.describe());
        let mut options = ConnectOptions::parse(&database.url).with_context(from)?;
        options
            .config
            .application_name(&self.config.migrator.application_name);
        let client = connect_with(options).await?;
        let table = TableName::parse(&self.config.migrator.history_table)?;
        check_history_table(&client, &table).await?;
        Ok(client)
    }

    /// Where a backfill under the controller opens its monitor and workers (see
    /// `Migrator::with_backfill_sessions`), named after the migration session's
    /// application_name, so that nothing taking the migration session by its name (an
    /// operator's `pg_terminate_backend`, a lock-holder report) takes them too.
    pub fn backfill_sessions(&self, database: &DatabaseUrl) -> anyhow::Result<ConnectOptions> {
        let from = || format!("the connection string from {}", database.source.describe());
        ConnectOptions::parse(&database.url).with_context(from)
    }
}

/// Runs a future on a single-threaded runtime: the CLI drives one connection at a time.
pub(crate) fn block_on<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| CliError::Io {
            what: "starting the async runtime".into(),
            source,
        })?;
    Ok(runtime.block_on(future))
}

/// Runs a future on a runtime with worker threads: `fleet` drives many connections at once,
/// and their TLS and protocol work spreads over the cores.
pub(crate) fn block_on_multi_thread<F: std::future::Future>(
    future: F,
) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| CliError::Io {
            what: "starting the async runtime".into(),
            source,
        })?;
    Ok(runtime.block_on(future))
}
