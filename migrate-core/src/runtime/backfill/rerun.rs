//! Re-running an applied backfill (`migrate backfill rerun V`).
//!
//! A backfill's history row is written once it is verified, so `up` never runs it again. Rows
//! can still match its WHERE later: a release without dual writes wrote them in the old shape,
//! and `migrate verify` or the contract gate found them. Its statements are idempotent (their
//! WHERE excludes rows already done), so the fix is to run them again: in the same keyed
//! batches as `up`, under the migration lock, with the same pacing, controller, operator pause
//! and recorded progress, then verified. The history row is left as it is.

use std::time::Duration;

use tokio_postgres::Client;
use tracing::Instrument;

use crate::migration::Phase;
use crate::runtime::error::RuntimeError;
use crate::runtime::executor::finish_span;
use crate::runtime::state::backfill_progress::{BackfillProgressTable, statement_index};
use crate::runtime::state::history::sql_version;
use crate::runtime::{Migrator, deadline};

/// What a re-run of an applied backfill did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillRerun {
    /// The backfill migration.
    pub version: u64,
    /// Its file name.
    pub file_name: String,
    /// Rows the re-run updated (or deleted), over all its statements.
    pub rows_done: i64,
    /// How long it took, pauses included.
    pub duration: Duration,
    /// 1 unless `lock_timeout` failures of a batch were retried.
    pub attempts: u32,
}

impl Migrator<'_> {
    /// Runs the up statements of the applied backfill `version` again, in keyed batches and
    /// paced as `up` runs them, under the migration advisory lock, then verifies that no row
    /// matches their WHERE (recording `verified_at`). Its history row stays as it is. A
    /// re-run that was stopped resumes from its cursor when run again.
    ///
    /// Refuses a version that is not a backfill of the set ([`RuntimeError::NotABackfill`]),
    /// one not applied ([`RuntimeError::BackfillNotApplied`]: `up` runs it) and one whose
    /// file changed since it was applied ([`RuntimeError::ChecksumMismatch`]). The connection
    /// is used as by [`Migrator::up`] (see there).
    pub async fn rerun_backfill(
        &self,
        client: &Client,
        version: u64,
    ) -> Result<BackfillRerun, RuntimeError> {
        self.locked(client, |client| self.rerun_locked(client, version))
            .await
    }

    async fn rerun_locked(
        &self,
        client: &Client,
        version: u64,
    ) -> Result<BackfillRerun, RuntimeError> {
        let migration = self
            .migrations
            .get(version)
            .ok_or(RuntimeError::NotABackfill { version })?;
        let (Phase::Backfill, Some(spec)) = (migration.phase, &migration.backfill) else {
            return Err(RuntimeError::NotABackfill { version });
        };
        // Also refuses a configured history table name that is probably a typo.
        let rows = self.read_history(client).await?;
        let Some(row) = rows.iter().find(|row| row.version == version) else {
            return Err(RuntimeError::BackfillNotApplied {
                version,
                file: migration.file_name.to_string(),
            });
        };
        let checksum = migration.checksum.to_hex();
        if row.checksum != checksum {
            return Err(RuntimeError::ChecksumMismatch {
                version,
                file: migration.file_name.to_string(),
                expected: row.checksum.clone(),
                found: checksum,
            });
        }
        let table = BackfillProgressTable::for_history(self.history.table())?;
        let own = Some(self.config.limits().own);
        deadline::within(
            own,
            "creating the backfill progress table",
            table.ensure(client),
        )
        .await??;
        deadline::within(
            own,
            "restarting the backfill's progress",
            table.restart_finished(client, sql_version(version)),
        )
        .await??;
        let settings = self.settings();
        let span = tracing::info_span!(
            "migration",
            version,
            file = %migration.file_name,
            phase = migration.phase.as_str(),
            mode = "batched",
            rerun = true
        );
        let run = async {
            tracing::info!("re-running an applied backfill");
            self.run_backfill(client, migration, spec, &settings, None)
                .await
        };
        let section = finish_span(run.instrument(span.clone()).await, &span)?;
        let mut rows_done = 0;
        for index in 0..migration.up.statements.len() {
            let stored = deadline::within(
                own,
                "reading backfill progress",
                table.read(client, sql_version(version), statement_index(index)),
            )
            .await??;
            rows_done += stored.map_or(0, |stored| stored.rows_done);
        }
        Ok(BackfillRerun {
            version,
            file_name: migration.file_name.to_string(),
            rows_done,
            duration: section.duration,
            attempts: section.attempts,
        })
    }
}
