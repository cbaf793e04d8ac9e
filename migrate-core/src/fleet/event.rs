//! What a rollout reports while it runs, for live views.

use super::report::TargetRun;

/// One step of a rollout.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum FleetEvent<'a> {
    /// Every target was checked; `targets` will be rolled, `canaries` of them first.
    Checked {
        /// How many targets (schemas count one each).
        targets: usize,
        /// How many are canaries.
        canaries: usize,
    },
    /// A target's connection is being opened.
    TargetStarted {
        /// Its label.
        target: &'a str,
    },
    /// A migration is about to run on a target.
    MigrationStarted {
        /// The target's label.
        target: &'a str,
        /// The migration's version.
        version: u64,
        /// The migration's name.
        name: &'a str,
    },
    /// A target is finished: done, failed, or stopped by another's failure.
    TargetFinished {
        /// What happened on it.
        run: &'a TargetRun,
    },
}

/// A callback receiving [`FleetEvent`]s; it runs on the rollout's task: keep it quick.
pub type FleetHook = Box<dyn Fn(&FleetEvent<'_>) + Send + Sync>;
