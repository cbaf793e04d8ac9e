//! `migrate flag get|set|list`

use migrate_core::runtime::Migrator;
use migrate_core::runtime::state::flags::{Flag, validate_flag_name};
use serde_json::json;

use crate::cli::{FlagCommand, OnOff};
use crate::error::{CliError, Outcome};
use crate::output::{self, Cell, Style};
use crate::{Context, block_on};

pub fn run(context: &Context, action: FlagCommand) -> anyhow::Result<Outcome> {
    // Names are checked before connecting: a typo is a usage error, not a database one.
    if let FlagCommand::Get { name } | FlagCommand::Set { name, .. } = &action {
        validate_flag_name(name).map_err(|error| CliError::Usage(error.to_string()))?;
    }
    let database = context.database("flag")?;
    // The flags table is named after the history table; the migration files play no part.
    let empty = migrate_core::Migrations::empty();
    let migrator = Migrator::new(&empty, context.config.migrator.clone())?;
    let store = migrator.flags()?;
    block_on(async {
        let client = context.connect(database).await?;
        match action {
            FlagCommand::Get { name } => {
                let flag = store.get(&client, &name).await?;
                print_one(context, &flag);
            }
            FlagCommand::Set { name, state } => {
                let flag = store.set(&client, &name, state == OnOff::On).await?;
                print_one(context, &flag);
            }
            FlagCommand::List => {
                let flags = store.list(&client).await?;
                print_list(context, &flags);
            }
        }
        anyhow::Ok(())
    })??;
    Ok(Outcome::Success)
}

fn flag_json(flag: &Flag) -> serde_json::Value {
    json!({
        "name": flag.name,
        "enabled": flag.enabled,
        "updated_at": output::timestamp(flag.updated_at),
    })
}

fn state(flag: &Flag) -> Cell {
    if flag.enabled {
        Cell::styled("on", Style::Green)
    } else {
        Cell::styled("off", Style::Yellow)
    }
}

fn print_one(context: &Context, flag: &Flag) {
    if context.json() {
        output::print_json(&flag_json(flag));
    } else {
        let cell = state(flag);
        println!(
            "{} {} (updated {})",
            flag.name,
            output::paint(&cell.text, cell.style, context.config.color),
            output::timestamp(flag.updated_at)
        );
    }
}

fn print_list(context: &Context, flags: &[Flag]) {
    if context.json() {
        let items: Vec<_> = flags.iter().map(flag_json).collect();
        output::print_json(&json!({ "flags": items }));
        return;
    }
    if flags.is_empty() {
        println!("no flags set");
        return;
    }
    let rows: Vec<Vec<Cell>> = flags
        .iter()
        .map(|f| {
            vec![
                Cell::new(f.name.clone()),
                state(f),
                Cell::new(output::timestamp(f.updated_at)),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &["FLAG", "STATE", "UPDATED AT"],
            &rows,
            context.config.color
        )
    );
}
