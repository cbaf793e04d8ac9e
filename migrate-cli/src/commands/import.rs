//! `migrate import --from TOOL [--dry-run]`

use migrate_core::runtime::Migrator;
use migrate_core::source::Layout;
use serde_json::json;

use crate::error::Outcome;
use crate::output::{self, Cell};
use crate::{Context, block_on};

pub fn run(context: &Context, from: Layout, dry_run: bool) -> anyhow::Result<Outcome> {
    let database = context.database("import")?;
    let migrations = context.migrations()?;
    let migrator = Migrator::new(&migrations, context.config.migrator.clone())?;
    let report = block_on(async {
        let client = context.connect(database).await?;
        anyhow::Ok(migrator.import(&client, from, dry_run).await?)
    })??;
    if context.json() {
        let rows: Vec<_> = report
            .imported
            .iter()
            .map(|r| {
                json!({
                    "version": r.version,
                    "file": r.file_name,
                    "checksum": r.checksum,
                    "checksum_compared": r.checksum_compared,
                    "applied_at": r.applied_at.map(output::timestamp),
                })
            })
            .collect();
        output::print_json(&json!({
            "from": from.as_str(),
            "dry_run": dry_run,
            "imported": rows,
            "pending": report.pending,
        }));
        return Ok(Outcome::Success);
    }
    let verb = if dry_run { "would import" } else { "imported" };
    println!(
        "{verb} {} applied migration(s) from {from}'s history{}",
        report.imported.len(),
        if dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        }
    );
    let rows: Vec<Vec<Cell>> = report
        .imported
        .iter()
        .map(|r| {
            vec![
                Cell::new(r.version.to_string()),
                Cell::new(r.file_name.clone()),
                Cell::new(if r.checksum_compared {
                    "matches"
                } else {
                    "not recorded"
                }),
                Cell::new(r.checksum.clone()),
                Cell::new(
                    r.applied_at
                        .map_or_else(|| "not recorded".to_owned(), output::timestamp),
                ),
            ]
        })
        .collect();
    if !rows.is_empty() {
        print!(
            "{}",
            output::table(
                &[
                    "VERSION",
                    "FILE",
                    "THEIR CHECKSUM",
                    "OUR CHECKSUM",
                    "APPLIED AT",
                ],
                &rows,
                context.config.color
            )
        );
    }
    if report.imported.iter().any(|r| r.applied_at.is_none()) {
        println!("{}", context.name_commands(&format!(
            "{from} records no time of application: `migrate status` shows the import's time as \
             APPLIED AT for those"
        )));
    }
    if !report.pending.is_empty() {
        let versions: Vec<String> = report.pending.iter().map(u64::to_string).collect();
        println!(
            "{}",
            context.name_commands(&format!(
                "pending (not applied by {from}; `migrate up` runs them): {}",
                versions.join(", ")
            ))
        );
    }
    Ok(Outcome::Success)
}
