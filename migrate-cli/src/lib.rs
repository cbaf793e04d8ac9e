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
//! [`Embedded`] gives the service's name, version and settings (`MigratorConfig`), and
//! [`Embedded::run_from`] runs the words after the service's own (`orders-service migrate
//! status`); [`MigrateCommand`] mounts the subcommands in a service's own clap command line.
//! [`Source::Embedded`] says which commands use the embedded set and which need `--dir`.
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
use migrate_core::runtime::{
    ConnectOptions, MigratorConfig, TableName, check_history_table, connect_with,
};
use tokio_postgres::Client;

use cli::{BackfillAction, Cli, Command, Format};
use config::{Config, DatabaseUrl};
use error::{CliError, Outcome};

/// Where the migration set comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A set embedded with `migrations!()`.
    ///
    /// Database commands (`up`, `status`, `repair`, ...) always use it: `--dir` or
    /// `--layout` given to them is refused (exit 2), so that no command applies, or records
    /// the checksums of, files the binary does not have. The folder commands (`new`, `lint`,
    /// `check`, `squash`) need `--dir` (or their folder argument): the folder the set was
    /// built from is a path of the build machine. `new` numbers after the highest version of
    /// the embedded set and of that folder.
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

/// A service's embedded CLI: its migration set, the settings it runs with, and the name,
/// version and description its `--help`, `--version`, errors and hints show.
///
/// The service's own binary as `orders-service migrate status` (the service reads its first
/// argument, and hands the rest to [`Embedded::run_from`]):
///
/// ```no_run
/// static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("../migrations");
///
/// #[tokio::main]
/// async fn main() -> std::process::ExitCode {
///     let mut args = std::env::args_os().skip(1);
///     match args.next() {
///         Some(word) if word == "migrate" => {
///             migrate_cli::Embedded::new(&MIGRATIONS)
///                 .name("orders-service migrate")
///                 .version(env!("CARGO_PKG_VERSION"))
///                 .config(migrate_core::runtime::MigratorConfig {
///                     contract_stabilisation: std::time::Duration::from_secs(3600),
///                     ..Default::default()
///                 })
///                 .run_from(args)
///                 .await
///         }
///         _ => std::process::ExitCode::SUCCESS, // serve
///     }
/// }
/// ```
///
/// A service with a clap command line of its own mounts [`MigrateCommand`] instead.
#[derive(Debug, Clone)]
pub struct Embedded {
    migrations: &'static Migrations,
    identity: Identity,
    config: MigratorConfig,
}

/// What `--help`, `--version`, errors and hints call the program.
#[derive(Debug, Clone, Default)]
struct Identity {
    name: Option<String>,
    version: Option<&'static str>,
    about: Option<&'static str>,
}

impl Identity {
    /// The command line that runs the subcommands, as hints name it (`migrate`,
    /// `orders-service migrate`).
    fn program(&self) -> &str {
        self.name.as_deref().unwrap_or(DEFAULT_PROGRAM)
    }
}

/// The program name of the `migrate` binary, and of an embedded CLI not given one.
const DEFAULT_PROGRAM: &str = "migrate";

impl From<&'static Migrations> for Embedded {
    fn from(migrations: &'static Migrations) -> Embedded {
        Embedded::new(migrations)
    }
}

impl Embedded {
    /// The CLI over `migrations`, with [`MigratorConfig::default`], called `migrate` until
    /// [`Embedded::name`] says otherwise.
    pub fn new(migrations: &'static Migrations) -> Embedded {
        Embedded {
            migrations,
            identity: Identity::default(),
            config: MigratorConfig::default(),
        }
    }

    /// The command line that runs the subcommands, as `--help`, `--version`, errors and hints
    /// show it: `env!("CARGO_PKG_NAME")`, or `"orders-service migrate"` when the service runs
    /// them under a subcommand of its own.
    pub fn name(mut self, name: impl Into<String>) -> Embedded {
        self.identity.name = Some(name.into());
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

    /// The service's settings (the ones its start-up `Migrator` uses, e.g. a contract
    /// stabilisation of an hour): every command runs with them, and a command-line option
    /// replaces only its own setting, when given. `--allow-out-of-order` and
    /// `--ignore-missing` can turn a refusal off, not back on.
    pub fn config(mut self, config: MigratorConfig) -> Embedded {
        self.config = config;
        self
    }

    /// Runs the command line of the process ([`std::env::args_os`]; the first is the program).
    pub fn run(self) -> ExitCode {
        self.run_args(std::env::args_os().collect())
    }

    /// Runs `args`, whose first is the program (as in [`std::env::args_os`]).
    pub fn run_args(self, args: Vec<OsString>) -> ExitCode {
        run_outside_runtime(self.into_program(), Invocation::Args(args))
    }

    /// [`Embedded::run`] for async code: the command runs on a thread of its own (it drives
    /// its one connection on a runtime of its own) and this future waits for it.
    pub async fn run_async(self) -> ExitCode {
        let args: Vec<OsString> = std::env::args_os().collect();
        run_on_own_thread(self.into_program(), Invocation::Args(args)).await
    }

    /// Runs the subcommand in `args`, which holds no program name: its first item is the
    /// subcommand (`["status"]`, `["up", "--to", "4"]`). For a service that reads its own
    /// words first: `orders-service migrate status` hands over what follows `migrate`, and
    /// names the program with [`Embedded::name`]`("orders-service migrate")`. Async as
    /// [`Embedded::run_async`].
    pub async fn run_from<I, T>(self, args: I) -> ExitCode
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        let program = self.into_program();
        let mut argv = vec![OsString::from(program.identity.program())];
        argv.extend(args.into_iter().map(Into::into));
        run_on_own_thread(program, Invocation::Args(argv)).await
    }

    fn into_program(self) -> Program {
        Program {
            source: Source::Embedded(self.migrations),
            identity: self.identity,
            config: self.config,
        }
    }
}

/// The migration subcommands as clap arguments, for a service with a clap command line of
/// its own: mount it as a subcommand, then run it over the embedded set.
///
/// ```no_run
/// use clap::{Parser, Subcommand};
///
/// static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("../migrations");
///
/// #[derive(Parser)]
/// #[command(name = "orders-service")]
/// struct Cli {
///     #[command(subcommand)]
///     command: Command,
/// }
///
/// #[derive(Subcommand)]
/// enum Command {
///     /// Serve requests.
///     Serve,
///     /// The database migrations: `orders-service migrate status`, ...
///     Migrate(migrate_cli::MigrateCommand),
/// }
///
/// #[tokio::main]
/// async fn main() -> std::process::ExitCode {
///     match Cli::parse().command {
///         Command::Serve => std::process::ExitCode::SUCCESS,
///         Command::Migrate(migrate) => migrate.run_async(&MIGRATIONS).await,
///     }
/// }
/// ```
///
/// Help and usage are the parent's (`orders-service migrate up --help`), and hints in
/// messages name the parent's command path (the program's file name and the subcommand's
/// name), unless [`Embedded::name`] gives one: run it with
/// `migrate.run(Embedded::new(&MIGRATIONS).config(...))` for the service's settings.
#[derive(Debug)]
pub struct MigrateCommand {
    // Boxed: a service's command enum stays small beside it (clippy's large_enum_variant).
    cli: Box<Cli>,
}

/// The name under which [`MigrateCommand`] was mounted (`migrate` in `orders-service
/// migrate`), seen when clap builds the parent's command.
static MOUNTED_AS: std::sync::OnceLock<String> = std::sync::OnceLock::new();

impl MigrateCommand {
    /// Runs the parsed subcommand over `embedded` (an [`Embedded`], or the `&'static
    /// Migrations` alone). Callable from plain and async code, as [`run_embedded`].
    pub fn run(self, embedded: impl Into<Embedded>) -> ExitCode {
        run_outside_runtime(self.program(embedded.into()), Invocation::Parsed(self.cli))
    }

    /// [`MigrateCommand::run`] for async code: the command runs on a thread of its own.
    pub async fn run_async(self, embedded: impl Into<Embedded>) -> ExitCode {
        run_on_own_thread(self.program(embedded.into()), Invocation::Parsed(self.cli)).await
    }

    fn program(&self, embedded: Embedded) -> Program {
        let mut program = embedded.into_program();
        if program.identity.name.is_none() {
            program.identity.name = Some(mounted_path());
        }
        program
    }
}

/// `<program file name> <mounted name>`, e.g. `orders-service migrate`.
fn mounted_path() -> String {
    let binary = std::env::args_os()
        .next()
        .and_then(|first| file_name_of(&first))
        .unwrap_or_else(|| DEFAULT_PROGRAM.to_owned());
    match MOUNTED_AS.get() {
        Some(name) => format!("{binary} {name}"),
        None => binary,
    }
}

/// The file name of a program path (`/usr/bin/orders-service`: `orders-service`).
fn file_name_of(program: &std::ffi::OsStr) -> Option<String> {
    Path::new(program)
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| !name.is_empty())
}

impl clap::FromArgMatches for MigrateCommand {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        Ok(MigrateCommand {
            cli: Box::new(Cli::from_arg_matches(matches)?),
        })
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self.cli = Cli::from_arg_matches(matches)?;
        Ok(())
    }
}

impl clap::Args for MigrateCommand {
    fn augment_args(command: clap::Command) -> clap::Command {
        let _ = MOUNTED_AS.set(command.get_name().to_owned());
        let program = mounted_path();
        cli::mount_into(command, &program)
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}

/// `main` of the `migrate` binary: migrations are read from `--dir`, else `default_dir`.
pub fn run_dir(default_dir: impl Into<PathBuf>) -> ExitCode {
    run_outside_runtime(
        Program::plain(Source::Dir(default_dir.into())),
        Invocation::Args(std::env::args_os().collect()),
    )
}

/// What runs: the set, how the program is called, the settings under the options.
#[derive(Clone)]
struct Program {
    source: Source,
    identity: Identity,
    config: MigratorConfig,
}

impl Program {
    fn plain(source: Source) -> Program {
        Program {
            source,
            identity: Identity::default(),
            config: MigratorConfig::default(),
        }
    }
}

/// The command line: still to parse, or parsed by a service's own clap command.
enum Invocation {
    /// The first is the program.
    Args(Vec<OsString>),
    Parsed(Box<Cli>),
}

/// Runs the CLI on this thread, or, when called from inside a tokio runtime, on a thread of
/// its own: the CLI starts a runtime for its connection, and tokio forbids starting one
/// within another.
fn run_outside_runtime(program: Program, invocation: Invocation) -> ExitCode {
    if tokio::runtime::Handle::try_current().is_err() {
        die_quietly_on_closed_pipe();
        return run_program(&program, invocation);
    }
    // Inside a service's runtime other threads exist: leave its SIGPIPE handling alone.
    std::thread::scope(|scope| {
        scope
            .spawn(|| run_program(&program, invocation))
            .join()
            .unwrap_or_else(|_| ExitCode::from(error::EXIT_FAILURE))
    })
}

/// Runs the CLI on a thread of its own (it drives its connection on a runtime of its own)
/// and waits for it without blocking the caller's runtime.
async fn run_on_own_thread(program: Program, invocation: Invocation) -> ExitCode {
    let (done, result) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("migrate".into())
        .spawn(move || {
            let _ = done.send(run_program(&program, invocation));
        });
    if spawned.is_err() {
        eprintln!("error: could not start the migration thread");
        return ExitCode::from(error::EXIT_FAILURE);
    }
    result
        .await
        .unwrap_or_else(|_| ExitCode::from(error::EXIT_FAILURE))
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
    run_program(
        &Program::plain(source),
        Invocation::Args(args.into_iter().map(Into::into).collect()),
    )
}

fn run_program(program: &Program, invocation: Invocation) -> ExitCode {
    // An embedded CLI not given a name is called as its binary is (clap's usage line does
    // the same), never `migrate`, which is another program on the machine.
    let named;
    let program = match (&invocation, &program.identity.name, &program.source) {
        (Invocation::Args(args), None, Source::Embedded(_)) => {
            match args.first().and_then(|first| file_name_of(first)) {
                Some(name) => {
                    named = Program {
                        identity: Identity {
                            name: Some(name),
                            ..program.identity.clone()
                        },
                        ..program.clone()
                    };
                    &named
                }
                None => program,
            }
        }
        _ => program,
    };
    let cli = match invocation {
        Invocation::Parsed(cli) => *cli,
        Invocation::Args(args) => match parse(program, args) {
            Ok(cli) => cli,
            Err(error) => {
                // --help and --version also arrive here, with exit code 0.
                let _ = error.print();
                return ExitCode::from(
                    u8::try_from(error.exit_code()).unwrap_or(error::EXIT_USAGE),
                );
            }
        },
    };
    let format = cli.format;
    let name = program.identity.program();
    match run(cli, program) {
        Ok(outcome) => outcome.exit_code(),
        Err(error) => {
            let code = error::exit_code(&error);
            let message = cli::name_commands(&error::render(&error), name);
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

/// The clap command of `program` (its name, version, description, and for an embedded set
/// what `--dir` means there) parsing `args`.
fn parse(program: &Program, args: Vec<OsString>) -> Result<Cli, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    let mut command = Cli::command();
    let identity = &program.identity;
    if let Some(name) = &identity.name {
        command = cli::for_program(command.name(name.clone()).bin_name(name.clone()), name);
    }
    if let Some(version) = identity.version {
        command = command.version(version);
    }
    if let Some(about) = identity.about {
        command = command.about(about);
    }
    if let Source::Embedded(set) = &program.source {
        command = cli::for_embedded_set(command, Some(&versions_of(set)));
    }
    command
        .try_get_matches_from(args)
        .and_then(|matches| Cli::from_arg_matches(&matches))
}

/// `versions 1-5`, `version 3`, `no versions` (an empty set).
fn versions_of(set: &Migrations) -> String {
    let mut versions = set.iter().map(|migration| migration.version);
    match (versions.next(), versions.next_back()) {
        (None, _) => "no versions".to_owned(),
        (Some(only), None) => format!("version {only}"),
        (Some(first), Some(last)) => format!("versions {first}-{last}"),
    }
}

/// In a binary that embeds its set: refuses a folder command without a folder, and a folder
/// option given to a database command (see [`Source::Embedded`]).
fn check_embedded_options(
    command: &Command,
    set: &Migrations,
    config: &Config,
) -> Result<(), CliError> {
    let name = command.name();
    if command.works_on_folder() {
        if config.dir.is_none() && !command.has_folder_argument() {
            return Err(CliError::FolderNeeded {
                command: name,
                built_from: set.dir().to_string(),
            });
        }
        return Ok(());
    }
    // `explain` reads no set at all: the options change nothing there.
    if matches!(command, Command::Explain { .. }) {
        return Ok(());
    }
    let option = if config.dir.is_some() {
        "--dir"
    } else if config.layout.is_some() {
        "--layout"
    } else {
        return Ok(());
    };
    Err(CliError::FolderOnDatabaseCommand {
        command: name,
        option,
        versions: versions_of(set),
    })
}

fn run(cli: Cli, program: &Program) -> anyhow::Result<Outcome> {
    let config =
        Config::from_cli_over(&cli, program.config.clone(), &|key| std::env::var(key).ok())?;
    #[cfg(not(feature = "check"))]
    if let Command::Check { .. } | Command::Squash { .. } = cli.command {
        return Err(compiled_out(cli.command.name()).into());
    }
    if let Source::Embedded(set) = &program.source {
        check_embedded_options(&cli.command, set, &config)?;
    }
    init_tracing(config.verbose, config.stderr_color);
    let context = Context {
        config,
        source: program.source.clone(),
        program: program.identity.program().to_owned(),
    };
    match cli.command {
        Command::Status => commands::status::run(&context),
        Command::Up {
            to,
            dry_run,
            expands_only,
            ..
        } => commands::apply::up(&context, to, dry_run, expands_only),
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
        Command::Squash { .. } => Err(compiled_out("squash").into()),
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
        Command::Check { .. } => Err(compiled_out("check").into()),
        Command::Flag { action } => commands::flag::run(&context, action),
        Command::Fleet { fleet, action } => commands::fleet::run(&context, &fleet, &action),
    }
}

/// A command this binary was built without (hidden from its help): `check` and `squash`
/// need migrate-cli's `check` feature, which brings the scratch PostgreSQL clusters.
#[cfg(not(feature = "check"))]
fn compiled_out(command: &str) -> CliError {
    CliError::Usage(format!(
        "this binary was built without `{command}`: it needs migrate-cli's `check` feature \
         (scratch PostgreSQL clusters); run `{command}` from the `migrate` binary instead"
    ))
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
    /// The command line that runs the subcommands (`migrate`, `orders-service migrate`), as
    /// hints name it.
    pub program: String,
}

impl Context {
    /// `text` with its hints (`` `migrate up` ``) naming this program's command line.
    pub fn name_commands(&self, text: &str) -> String {
        cli::name_commands(text, &self.program)
    }

    pub fn json(&self) -> bool {
        self.config.format == Format::Json
    }

    /// A folder command's folder and how to show it: the positional argument, else `--dir`,
    /// else the source's folder (for an embedded set, only `fleet` gets here without a
    /// folder given: it reads the build machine's `migrate.toml` there when it exists).
    pub fn folder(&self, positional: Option<&Path>) -> (PathBuf, String) {
        let dir = positional
            .map(Path::to_path_buf)
            .or_else(|| self.config.dir.clone())
            .unwrap_or_else(|| match &self.source {
                Source::Embedded(set) => PathBuf::from(set.dir()),
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
        // An embedded set is the only one (`--dir` is refused before: see `Source::Embedded`).
        if let Source::Embedded(set) = &self.source {
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
        let mut options = self.connect_options(database)?;
        options
            .config
            .application_name(&self.config.migrator.application_name);
        let client = connect_with(options).await?;
        let table = TableName::parse(&self.config.migrator.history_table)?;
        check_history_table(&client, &table).await?;
        Ok(client)
    }

    /// The parsed connection string: what [`Context::connect`] opens, and where a backfill
    /// under the controller opens its monitor and workers (`Migrator::with_backfill_sessions`
    /// names them after the migration session's application_name, so that nothing taking the
    /// migration session by its name, such as an operator's `pg_terminate_backend`, takes them
    /// too). Errors name where the URL came from, never the URL.
    pub fn connect_options(&self, database: &DatabaseUrl) -> anyhow::Result<ConnectOptions> {
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
