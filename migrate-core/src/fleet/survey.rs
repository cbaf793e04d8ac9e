//! Reading every target in parallel: `fleet status`, `fleet verify`, `fleet backfill`, and
//! the check of every target before a rollout. One connection per database at a time (its
//! schemas are read one after another on it), `parallel` databases at once.

use futures_util::StreamExt as _;
use tokio_postgres::Client;

use super::error::TargetError;
use super::report::{FleetBackfillReport, FleetStatusReport, TargetBackfills, TargetStatus};
use super::session::{base_search_path, enter_schema, history_exists};
use super::{Fleet, Target};
use crate::runtime::{BackfillState, MigrationState, Plan, StatusEntry, StatusReport, UpTo};

/// What is read from each target.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Read {
    /// What `up` would apply, refusing as `up` would (drift, unknown versions, ...).
    Plan,
    Status,
    Verify(Option<u64>),
    Backfills,
    Pause(bool),
}

pub(crate) enum ReadOutput {
    Plan(#[allow(dead_code)] Plan),
    Status(StatusReport),
    Backfills(Vec<BackfillState>, Option<bool>),
}

pub(crate) type TargetRead = (Target, Result<ReadOutput, TargetError>);

impl Fleet<'_> {
    /// `read` on every target, in rollout order. A database that cannot be reached (or has
    /// no schema matching) is one entry with its error, labelled with the database.
    pub(crate) async fn read_all(&self, read: Read) -> Vec<TargetRead> {
        let per_database: Vec<Vec<TargetRead>> = futures_util::stream::iter(0..self.targets.len())
            .map(|index| self.read_database(index, read))
            .buffered(self.parallel)
            .collect()
            .await;
        per_database.into_iter().flatten().collect()
    }

    async fn read_database(&self, index: usize, read: Read) -> Vec<TargetRead> {
        let database = &self.targets.databases()[index];
        let whole = Target::new(database, index, None);
        let work = async {
            let client = self.connect(database).await?;
            let targets = self.targets_of(index, &client).await?;
            let base = base_search_path(&client).await?;
            let mut reads = Vec::with_capacity(targets.len());
            for target in targets {
                let result = self.read_target(&client, &target, &base, read).await;
                reads.push((target, result));
            }
            Ok::<_, TargetError>(reads)
        };
        let result = match self.target_timeout {
            Some(limit) => tokio::time::timeout(limit, work)
                .await
                .unwrap_or(Err(TargetError::TimedOut { limit })),
            None => work.await,
        };
        result.unwrap_or_else(|error| vec![(whole, Err(error))])
    }

    async fn read_target(
        &self,
        client: &Client,
        target: &Target,
        base: &str,
        read: Read,
    ) -> Result<ReadOutput, TargetError> {
        let migrator = self.migrator(target.schema.as_deref())?;
        if let Some(schema) = &target.schema {
            // Backfill plans and verification name the application's tables unqualified.
            enter_schema(client, schema, base).await?;
        }
        if target.schema.is_some()
            && !matches!(read, Read::Pause(_))
            && !history_exists(client, migrator.history_table()).await?
        {
            // A schema never rolled: everything pending, nothing to verify. (The runtime
            // would refuse to read a missing history table while other schemas have theirs,
            // see `session::create_history`.)
            return Ok(match read {
                Read::Plan => ReadOutput::Plan(Plan::default()),
                Read::Status => ReadOutput::Status(self.all_pending()),
                _ => ReadOutput::Backfills(Vec::new(), Some(false)),
            });
        }
        Ok(match read {
            Read::Plan => ReadOutput::Plan(migrator.plan(client, UpTo::All).await?),
            Read::Status => ReadOutput::Status(migrator.status(client).await?),
            Read::Verify(version) => {
                ReadOutput::Backfills(migrator.verify_backfills(client, version).await?, None)
            }
            Read::Backfills => {
                let paused = migrator.backfills_paused(client).await?;
                ReadOutput::Backfills(migrator.backfills(client).await?, Some(paused))
            }
            Read::Pause(paused) => {
                migrator.pause_backfills(client, paused).await?;
                ReadOutput::Backfills(Vec::new(), Some(paused))
            }
        })
    }

    /// The status of a target with no history yet: every migration pending.
    fn all_pending(&self) -> StatusReport {
        StatusReport {
            entries: self
                .migrations
                .iter()
                .map(|m| StatusEntry {
                    version: m.version,
                    name: m.name.to_string(),
                    phase: Some(m.phase),
                    state: MigrationState::Pending,
                    applied_at: None,
                    duration_ms: None,
                    detail: None,
                })
                .collect(),
        }
    }

    fn database_of(&self, target: &Target) -> String {
        self.targets.databases()[target.database]
            .redacted_url()
            .to_owned()
    }

    /// Every target's migrations by state, read in parallel. An unreachable target is one
    /// entry with its error; the others are still read.
    pub async fn status(&self) -> FleetStatusReport {
        let targets = self
            .read_all(Read::Status)
            .await
            .into_iter()
            .map(|(target, result)| {
                let database = self.database_of(&target);
                match result {
                    Ok(ReadOutput::Status(report)) => {
                        TargetStatus::from_report(target.label, database, target.schema, report)
                    }
                    Ok(_) => unreachable_output(),
                    Err(error) => {
                        TargetStatus::from_error(target.label, database, target.schema, error)
                    }
                }
            })
            .collect();
        FleetStatusReport { targets }
    }

    /// Every target's backfills re-counted (as `Migrator::verify_backfills`), in parallel.
    pub async fn verify(&self, version: Option<u64>) -> FleetBackfillReport {
        self.backfill_report(Read::Verify(version)).await
    }

    /// Every target's backfill progress and pause flag, in parallel.
    pub async fn backfills(&self) -> FleetBackfillReport {
        self.backfill_report(Read::Backfills).await
    }

    /// Sets or clears the operator's pause of backfills on every target.
    pub async fn pause_backfills(&self, paused: bool) -> FleetBackfillReport {
        self.backfill_report(Read::Pause(paused)).await
    }

    async fn backfill_report(&self, read: Read) -> FleetBackfillReport {
        let targets = self
            .read_all(read)
            .await
            .into_iter()
            .map(|(target, result)| {
                let database = self.database_of(&target);
                let (states, paused, error) = match result {
                    Ok(ReadOutput::Backfills(states, paused)) => (states, paused, None),
                    Ok(_) => unreachable_output(),
                    Err(error) => (Vec::new(), None, Some(error)),
                };
                TargetBackfills {
                    target: target.label,
                    database,
                    schema: target.schema,
                    states,
                    paused,
                    error,
                }
            })
            .collect();
        FleetBackfillReport { targets }
    }
}

/// Each `Read` has exactly one output variant (see `read_target`).
fn unreachable_output() -> ! {
    unreachable!("read_target answers each read with its own output")
}
