//! `migrate repair [--version V]`

use migrate_core::runtime::Migrator;
use serde_json::json;

use crate::error::Outcome;
use crate::output::{self, Cell};
use crate::{Context, block_on};

pub fn run(context: &Context, version: Option<u64>) -> anyhow::Result<Outcome> {
    let database = context.database("repair")?;
    let migrations = context.migrations()?;
    let migrator = Migrator::new(&migrations, context.config.migrator.clone())?;
    let report = block_on(async {
        let client = context.connect(database).await?;
        anyhow::Ok(migrator.repair(&client, version).await?)
    })??;
    if context.json() {
        let items: Vec<_> = report
            .repaired
            .iter()
            .map(|r| {
                json!({
                    "version": r.version,
                    "file": r.file_name,
                    "old_checksum": r.old_checksum,
                    "new_checksum": r.new_checksum,
                })
            })
            .collect();
        output::print_json(&json!({ "repaired": items }));
        return Ok(Outcome::Success);
    }
    if report.repaired.is_empty() {
        println!("nothing to repair: every applied migration matches its file");
        return Ok(Outcome::Success);
    }
    println!(
        "repaired {} migration(s): the history now records the files' current checksums",
        report.repaired.len()
    );
    let rows: Vec<Vec<Cell>> = report
        .repaired
        .iter()
        .map(|r| {
            vec![
                Cell::new(r.version.to_string()),
                Cell::new(r.file_name.clone()),
                Cell::new(r.old_checksum.clone()),
                Cell::new(r.new_checksum.clone()),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &["VERSION", "FILE", "OLD CHECKSUM", "NEW CHECKSUM"],
            &rows,
            context.config.color
        )
    );
    Ok(Outcome::Success)
}
