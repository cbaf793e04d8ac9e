//! `migrate baseline --version V [--trust]`

use migrate_core::runtime::Migrator;
use migrate_core::runtime::baseline::BaselineError;
use serde_json::json;

use crate::error::Outcome;
use crate::output;
use crate::{Context, block_on};

/// Diff lines shown before "... and N more".
const DIFF_LINES_SHOWN: usize = 60;

pub fn run(context: &Context, version: u64, trust: bool) -> anyhow::Result<Outcome> {
    let database = context.database("baseline")?;
    let migrations = context.migrations()?;
    let migrator = Migrator::new(&migrations, context.config.migrator.clone())?;
    if migrations.get(version).is_none() {
        return Err(BaselineError::NotInSet { version }.into());
    }
    // Refused before the scratch cluster starts: that takes seconds.
    let applied = block_on(async {
        let client = context.connect(database).await?;
        anyhow::Ok(migrator.status(&client).await?)
    })??;
    let recorded = applied
        .entries
        .iter()
        .filter(|e| e.applied_at.is_some())
        .count();
    if recorded > 0 {
        return Err(BaselineError::HistoryNotEmpty {
            table: migrator.history_table().to_string(),
            rows: recorded,
        }
        .into());
    }
    if trust {
        eprintln!(
            "WARNING: --trust: recording migrations up to {version} as applied WITHOUT checking \
             that the database has what they create; if it does not, later migrations will fail \
             or, worse, succeed on the wrong schema"
        );
    } else {
        let diff = verify::schema_difference(context, &migrations, version, database)?;
        if !diff.is_empty() {
            if context.json() {
                output::print_json(&json!({ "baselined": [], "diff": diff }));
            } else {
                eprintln!(
                    "error: the database's schema is not the one migrations up to {version} create \
                     (- from the files on a scratch database, + this database); nothing was recorded:"
                );
                for line in diff.iter().take(DIFF_LINES_SHOWN) {
                    eprintln!("  {line}");
                }
                if diff.len() > DIFF_LINES_SHOWN {
                    eprintln!("  ... and {} more line(s)", diff.len() - DIFF_LINES_SHOWN);
                }
            }
            return Ok(Outcome::Disagreement);
        }
    }
    let report = block_on(async {
        let client = context.connect(database).await?;
        anyhow::Ok(migrator.baseline(&client, version).await?)
    })??;
    if context.json() {
        output::print_json(&json!({ "baselined": report.recorded, "trusted": trust, "diff": [] }));
    } else {
        println!("{}", context.name_commands(&format!(
            "baselined {} migration(s) up to {version}{}: recorded as applied, marked baselined; `migrate up` starts after them",
            report.recorded.len(),
            if trust {
                " (trusted, not checked)"
            } else {
                " (the schema matches the files)"
            }
        )));
    }
    Ok(Outcome::Success)
}

#[cfg(feature = "check")]
mod verify {
    use migrate_core::Migrations;
    use migrate_scratch::PgDump;

    use crate::Context;
    use crate::config::DatabaseUrl;
    use crate::diff::line_diff;
    use crate::schema::{clean, dump_source};
    use crate::scratch_schema::ScratchSchemas;

    /// `- scratch / + database` lines where the database's schema differs from the one
    /// migrations up to `version` make on a scratch database; empty when they agree.
    pub fn schema_difference(
        context: &Context,
        migrations: &Migrations,
        version: u64,
        database: &DatabaseUrl,
    ) -> anyhow::Result<Vec<String>> {
        let scratch = ScratchSchemas::start(context)?;
        let expected = scratch.schema_at(context, migrations, version)?;
        let mut dump =
            PgDump::new(scratch.cluster().binaries(), dump_source(database)?).schema_only();
        for table in scratch.excluded() {
            dump = dump.exclude_table(table);
        }
        let found = dump.run()?;
        Ok(line_diff(&clean(&expected), &clean(&found)))
    }
}

#[cfg(not(feature = "check"))]
mod verify {
    use migrate_core::Migrations;

    use crate::Context;
    use crate::config::DatabaseUrl;
    use crate::error::CliError;

    pub fn schema_difference(
        _: &Context,
        _: &Migrations,
        _: u64,
        _: &DatabaseUrl,
    ) -> anyhow::Result<Vec<String>> {
        Err(CliError::Usage(
            "this binary was built without `check` (scratch clusters), which baseline needs to \
             compare schemas: run `baseline` from the `migrate` binary, or pass --trust"
                .into(),
        )
        .into())
    }
}
