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
//! Flow (ripgrep style): clap parses the raw flags, [`config::Config`] checks them and
//! resolves the environment, then one command runs and returns an [`error::Outcome`] or an
//! error; only this edge turns errors into messages and documented exit codes.

pub mod cli;
mod commands;
pub mod config;
mod diff;
mod duration;
pub mod error;
mod output;

use anyhow::Context as _;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use migrate_core::Migrations;
use migrate_core::runtime::{ConnectOptions, connect_with};
use tokio_postgres::Client;

use cli::{Cli, Command, Format};
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

/// `main` of a service binary that embeds its migrations.
pub fn run_embedded(migrations: &'static Migrations) -> ExitCode {
    die_quietly_on_closed_pipe();
    run_with(Source::Embedded(migrations), std::env::args_os())
}

/// `main` of the `migrate` binary: migrations are read from `--dir`, else `default_dir`.
pub fn run_dir(default_dir: impl Into<PathBuf>) -> ExitCode {
    die_quietly_on_closed_pipe();
    run_with(Source::Dir(default_dir.into()), std::env::args_os())
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
    let cli = match Cli::try_parse_from(args) {
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
        Command::Plan => commands::plan::run(&context),
        Command::Lint { path } => commands::lint::run(&context, path.as_deref()),
        Command::Explain { rule } => commands::explain::run(&context, rule.as_deref()),
        Command::New {
            name,
            phase,
            requires,
        } => commands::new::run(&context, &name, phase, requires),
        Command::Repair { version } => commands::repair::run(&context, version),
        Command::Backfill => commands::backfill::status(&context),
        Command::Verify { version } => commands::backfill::verify(&context, version),
        Command::Check { path } => commands::check::run(&context, path.as_deref()),
        Command::Flag { action } => commands::flag::run(&context, action),
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

    /// The migration set of database commands. A folder is checked exactly as the macro
    /// checks it: a set the build would refuse is refused here too.
    pub fn migrations(&self) -> anyhow::Result<Migrations> {
        if let (Source::Embedded(set), None) = (&self.source, &self.config.dir) {
            return Ok((*set).clone());
        }
        let (dir, display) = self.folder(None);
        let checked = migrate_core::check_dir(&dir, &display)?;
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
        Ok(checked.migrations(&absolute.to_string_lossy()))
    }

    pub fn database(&self, command: &'static str) -> Result<&DatabaseUrl, CliError> {
        self.config
            .database
            .as_ref()
            .ok_or(CliError::NoDatabase { command })
    }

    /// Opens the dedicated connection (the core's `connect_with`: `PGPASSWORD` for a URL
    /// without a password, a 10 s connect timeout bounding TCP, TLS and startup unless the
    /// URL sets one). Errors name where the URL came from, never the URL.
    pub async fn connect(&self, database: &DatabaseUrl) -> anyhow::Result<Client> {
        let from = || format!("the connection string from {}", database.source.describe());
        let mut options = ConnectOptions::parse(&database.url).with_context(from)?;
        options
            .config
            .application_name(&self.config.migrator.application_name);
        Ok(connect_with(options).await?)
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
