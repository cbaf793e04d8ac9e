//! Fleets: one migration set rolled over many databases, or over many tenant schemas of
//! each, with bounded concurrency, canaries first and a stop at the first failure.
//!
//! Each target is migrated by an ordinary [`Migrator`] over a
//! dedicated connection of its own, so it keeps its own advisory lock, history table and
//! contract gates: two fleet runs at once apply every migration exactly once everywhere.
//! A schema target (`--schemas GLOB`) has its history in `<schema>.schema_migrations` and
//! runs the set with that schema first on `search_path`.
//!
//! - [`targets`]: the targets file (`URL` or `NAME URL` a line).
//! - [`SchemaGlob`]: which schemas are targets.
//! - `rollout`: `up`: a check of every target first, then canaries, then the rest.
//! - `survey`: `status`, `verify`, `backfills`, read from every target in parallel.
//!
//! ```no_run
//! # async fn run(migrations: &migrate_core::Migrations) -> Result<(), Box<dyn std::error::Error>> {
//! use migrate_core::fleet::{Fleet, SchemaGlob, TargetList};
//! use migrate_core::runtime::MigratorConfig;
//! let targets = TargetList::read("fleet.targets".as_ref())?;
//! let fleet = Fleet::new(migrations, MigratorConfig::default(), targets)?
//!     .schemas(SchemaGlob::parse("tenant_*")?)
//!     .parallel(8)?
//!     .canary(2);
//! match fleet.up().await {
//!     Ok(report) => println!("{} migration(s) applied", report.applied_count()),
//!     Err(failed) => eprintln!("{}", failed.error),
//! }
//! # Ok(()) }
//! ```

mod error;
mod event;
mod report;
mod rollout;
mod schema_glob;
mod session;
mod survey;
pub mod targets;

use std::time::Duration;

pub use error::{FleetError, TargetError, TargetFailure, TargetsProblem};
pub use event::{FleetEvent, FleetHook};
pub use report::{
    FleetBackfillReport, FleetFailed, FleetStatusReport, FleetUpReport, TargetBackfills,
    TargetHealth, TargetRun, TargetState, TargetStatus,
};
pub use schema_glob::SchemaGlob;
pub use targets::{DatabaseTarget, TargetList};

use crate::migration::Migrations;
use crate::runtime::{Migrator, MigratorConfig, TableName};

/// The default of [`Fleet::parallel`].
pub const DEFAULT_PARALLEL: usize = 8;

/// A migration set and the targets it is rolled over; see the module docs.
pub struct Fleet<'m> {
    migrations: &'m Migrations,
    config: MigratorConfig,
    targets: TargetList,
    schemas: Option<SchemaGlob>,
    parallel: usize,
    canary: usize,
    target_timeout: Option<Duration>,
    events: Option<FleetHook>,
}

impl std::fmt::Debug for Fleet<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("migrations", &self.migrations.len())
            .field("targets", &self.targets)
            .field("schemas", &self.schemas)
            .field("parallel", &self.parallel)
            .field("canary", &self.canary)
            .field("target_timeout", &self.target_timeout)
            .finish_non_exhaustive()
    }
}

impl<'m> Fleet<'m> {
    /// Validates the settings as [`Migrator::new`] does; no I/O.
    pub fn new(
        migrations: &'m Migrations,
        config: MigratorConfig,
        targets: TargetList,
    ) -> Result<Fleet<'m>, FleetError> {
        Migrator::new(migrations, config.clone())?;
        Ok(Fleet {
            migrations,
            config,
            targets,
            schemas: None,
            parallel: DEFAULT_PARALLEL,
            canary: 0,
            target_timeout: None,
            events: None,
        })
    }

    /// Every schema matching `glob` in each database is a target of its own (and the
    /// databases themselves are not).
    pub fn schemas(mut self, glob: SchemaGlob) -> Self {
        self.schemas = Some(glob);
        self
    }

    /// At most `n` targets at once, each on a connection of its own (reads too).
    pub fn parallel(mut self, n: usize) -> Result<Self, FleetError> {
        if n == 0 {
            return Err(FleetError::InvalidSetting {
                setting: "parallel",
                reason: "must be at least 1",
            });
        }
        self.parallel = n;
        Ok(self)
    }

    /// The first `k` targets are canaries: all must succeed before any other starts.
    pub fn canary(mut self, k: usize) -> Self {
        self.canary = k;
        self
    }

    /// The longest one target may take (its connection, checks and migrations); past it
    /// its running statement is cancelled and the target fails.
    pub fn target_timeout(mut self, limit: Duration) -> Self {
        self.target_timeout = Some(limit);
        self
    }

    /// Reports the rollout's progress to `hook` (a live view).
    pub fn with_events(mut self, hook: FleetHook) -> Self {
        self.events = Some(hook);
        self
    }

    /// The databases, in file order.
    pub fn targets(&self) -> &TargetList {
        &self.targets
    }

    fn emit(&self, event: FleetEvent<'_>) {
        if let Some(hook) = &self.events {
            hook(&event);
        }
    }

    /// The migrator of one target: the configured history table, moved into `schema`.
    fn migrator(&self, schema: Option<&str>) -> Result<Migrator<'m>, TargetError> {
        let mut config = self.config.clone();
        if let Some(schema) = schema {
            if !TableName::parse(schema).is_ok_and(|t| t.schema.is_none()) {
                return Err(TargetError::UnsupportedSchemaName {
                    schema: schema.to_owned(),
                });
            }
            let table = TableName::parse(&self.config.history_table)?;
            config.history_table = format!("{schema}.{}", table.name);
        }
        Ok(Migrator::new(self.migrations, config)?)
    }
}

/// One target: a database, or one schema of it.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// Index into the target list.
    pub database: usize,
    pub schema: Option<String>,
    pub label: String,
}

impl Target {
    fn new(database: &DatabaseTarget, index: usize, schema: Option<String>) -> Target {
        let label = match &schema {
            Some(schema) => format!("{}/{schema}", database.label()),
            None => database.label().to_owned(),
        };
        Target {
            database: index,
            schema,
            label,
        }
    }
}
