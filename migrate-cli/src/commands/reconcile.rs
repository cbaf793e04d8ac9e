//! `migrate reconcile [--version V]`

use migrate_core::runtime::Migrator;
use serde_json::json;

use crate::error::Outcome;
use crate::output::{self, Cell};
use crate::{Context, block_on};

pub fn run(context: &Context, version: Option<u64>) -> anyhow::Result<Outcome> {
    let database = context.database("reconcile")?;
    let migrations = context.migrations()?;
    if let Some(version) = version
        && !migrations
            .iter()
            .any(|m| m.version == version && m.compare.is_some())
    {
        anyhow::bail!(
            "version {version} is not a backfill migration of this set with a `-- migrate:compare` (its mapping is what reconcile replays)"
        );
    }
    let migrator = Migrator::new(&migrations, context.config.migrator.clone())?;
    let (reports, left, (unreplayable, first_unreplayable)) = block_on(async {
        let client = context.connect(database).await?;
        let reports = migrator.reconcile(&client, version).await?;
        anyhow::Ok((
            reports,
            super::status::queue_lengths(migrator.reconcile_queue(&client).await?),
            migrator.unreplayable_keys(&client, 20).await?,
        ))
    })??;
    let declared: Vec<u64> = reports.iter().map(|r| r.version).collect();
    // Keys queued under a version without a compare cannot be replayed: say so.
    let orphaned: Vec<(u64, i64)> = left
        .into_iter()
        .filter(|(v, _)| !declared.contains(v) && version.is_none_or(|given| given == *v))
        .collect();
    if context.json() {
        let items: Vec<_> = reports
            .iter()
            .map(|r| {
                json!({
                    "version": r.version,
                    "replayed": r.replayed,
                    "keys": r.keys,
                    "changed": r.changed,
                    "unreplayable": r.unreplayable.iter().map(|k| json!({
                        "key": k.key,
                        "failure": k.failure,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let orphaned: Vec<_> = orphaned
            .iter()
            .map(|(version, keys)| json!({ "version": version, "keys": keys }))
            .collect();
        let kept: Vec<_> = first_unreplayable
            .iter()
            .map(|k| json!({ "version": k.version, "key": k.key, "failure": k.failure }))
            .collect();
        output::print_json(&json!({
            "reconciled": items,
            "not_replayable": orphaned,
            "unreplayable_in_queue": { "keys": unreplayable, "first": kept },
        }));
    } else {
        let rows: Vec<Vec<Cell>> = reports
            .iter()
            .map(|r| {
                vec![
                    Cell::new(r.version.to_string()),
                    Cell::new(r.replayed.to_string()),
                    Cell::new(r.keys.to_string()),
                    Cell::new(r.changed.to_string()),
                ]
            })
            .collect();
        if rows.is_empty() {
            println!("nothing to reconcile: no backfill migration declares `-- migrate:compare`");
        } else {
            print!(
                "{}",
                output::table(
                    &["VERSION", "QUEUED", "KEYS", "CHANGED"],
                    &rows,
                    context.config.color
                )
            );
        }
        for key in reports.iter().flat_map(|r| &r.unreplayable) {
            eprintln!(
                "key {} of version {} cannot be replayed, skipped and marked so in the queue: {}",
                key.key, key.version, key.failure
            );
        }
        if unreplayable > 0 {
            eprintln!(
                "{unreplayable} queued key(s) could not be replayed and are kept in the queue, not retried: fix those rows, then delete their queue rows (failed_at IS NOT NULL) and compare again"
            );
        }
        for (version, keys) in &orphaned {
            eprintln!(
                "{keys} queued key(s) of version {version} cannot be replayed: the set has no `-- migrate:compare` for it"
            );
        }
    }
    Ok(if orphaned.is_empty() && unreplayable == 0 {
        Outcome::Success
    } else {
        Outcome::Failure
    })
}
