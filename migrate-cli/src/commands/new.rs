//! `migrate new NAME --phase P [--requires V]`

use std::io::Write;
use std::path::Path;

use migrate_core::Phase;
use migrate_core::source::parse_file_name;
use serde_json::json;

use crate::cli::PhaseArg;
use crate::error::{CliError, Outcome};
use crate::{Context, Source, output};

/// Padding when the folder has no migration yet.
const DEFAULT_WIDTH: usize = 4;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NewError {
    #[error(
        "{folder} holds version {newest}, the largest a version can be (versions are stored as \
         bigint): the next version does not fit, so no file was written; if that version is a \
         mistake, rename its file before it is applied"
    )]
    VersionsExhausted { newest: u64, folder: String },
}

pub fn run(
    context: &Context,
    name: &str,
    phase: PhaseArg,
    requires: Option<u64>,
) -> anyhow::Result<Outcome> {
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid_name {
        return Err(CliError::Usage(format!(
            "invalid migration name `{name}`: use [a-z0-9_]+, e.g. add_email_verified"
        ))
        .into());
    }
    let phase = match phase {
        PhaseArg::Expand => Phase::Expand,
        PhaseArg::Backfill => Phase::Backfill,
        PhaseArg::Contract => Phase::Contract,
    };
    let (dir, display) = context.folder(None);
    let mut existing = existing_versions(&dir)?;
    if let Source::Embedded(set) = &context.source {
        // The binary's own versions count too: a file numbered below them would be a
        // pending migration older than applied ones, refused by every database.
        existing.extend(set.iter().map(|migration| {
            let width = digits_of(&migration.file_name);
            (migration.version, migration.phase, width)
        }));
    }
    match (phase, requires) {
        (Phase::Contract, None) => {
            return Err(CliError::Usage(
                "a contract finishes an expand: pass --requires <expand version>".into(),
            )
            .into());
        }
        (Phase::Contract, Some(version))
            if !existing
                .iter()
                .any(|(v, p, _)| *v == version && *p == Phase::Expand) =>
        {
            return Err(CliError::Usage(format!(
                "--requires {version}: {display} has no expand migration with that version"
            ))
            .into());
        }
        (Phase::Contract, Some(_)) => {}
        (_, Some(_)) => {
            return Err(CliError::Usage("--requires is only for --phase contract".into()).into());
        }
        _ => {}
    }
    let newest = existing.iter().max_by_key(|(v, _, _)| *v);
    let version = match newest {
        None => 1,
        // Versions are stored as bigint: a file past i64::MAX would never lint.
        Some((v, _, _)) if *v >= i64::MAX as u64 => {
            return Err(NewError::VersionsExhausted {
                newest: *v,
                folder: display,
            }
            .into());
        }
        Some((v, _, _)) => v + 1,
    };
    let width = newest.map_or(DEFAULT_WIDTH, |(_, _, width)| *width);
    let file_name = match phase {
        Phase::Expand => format!("{version:0width$}_{name}.expand.sql"),
        other => format!("{version:0width$}_{name}.{other}.sql"),
    };
    std::fs::create_dir_all(&dir).map_err(|source| CliError::Io {
        what: format!("creating {display}"),
        source,
    })?;
    let path = dir.join(&file_name);
    let shown = migrate_core::source::display_join(&display, &file_name);
    // create_new: refuses atomically, even against a file created since the scan.
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(CliError::FileExists(shown).into());
        }
        Err(source) => {
            return Err(CliError::Io {
                what: format!("creating {shown}"),
                source,
            }
            .into());
        }
    };
    file.write_all(template(phase, requires).as_bytes())
        .map_err(|source| CliError::Io {
            what: format!("writing {shown}"),
            source,
        })?;
    if context.json() {
        output::print_json(&json!({
            "created": shown,
            "version": version,
            "name": name,
            "phase": phase.as_str(),
            "requires": requires,
        }));
    } else {
        println!("created {shown}");
        eprintln!("{}", context.name_commands(&next_steps(phase, &shown)));
    }
    Ok(Outcome::Success)
}

/// What to do with the new file, on stderr: the template holds no statement to run, so
/// `lint` (and the build) refuse it until it is written.
fn next_steps(phase: Phase, shown: &str) -> String {
    match phase {
        Phase::Backfill => format!(
            "next: in {shown}, name the table and its key in the `-- migrate:backfill` line and \
             write the UPDATE in place of the <placeholders> (its WHERE must skip rows already \
             done); `migrate lint` refuses the file until then"
        ),
        Phase::Expand | Phase::Contract => format!(
            "next: write the statements of the up part of {shown}, and a down part that undoes \
             them; `migrate lint` refuses the file until its up part has one, and `migrate \
             check` proves the down part restores the schema"
        ),
    }
}

/// (version, phase, digits in the file name) of every migration file of `dir`; a missing
/// folder has none.
fn existing_versions(dir: &Path) -> anyhow::Result<Vec<(u64, Phase, usize)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CliError::Io {
                what: format!("reading {}", dir.display()),
                source,
            }
            .into());
        }
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if let Ok((version, _, phase)) = parse_file_name(&file_name) {
            found.push((version, phase, digits_of(&file_name)));
        }
    }
    Ok(found)
}

/// How many digits a file name's version is written with (`0007_...`: 4).
fn digits_of(file_name: &str) -> usize {
    file_name.bytes().take_while(u8::is_ascii_digit).count()
}

/// Where the up part's statements go, in the expand and contract templates. It says why
/// `lint` refuses the file (`empty-file`) until the up part has a statement, and it lets
/// that finding recognise a file that is still the untouched template.
use migrate_core::source::NEW_FILE_PLACEHOLDER as UP_PLACEHOLDER;

/// The new file. It holds no statement that could run, so it fails `lint` (empty-file, or
/// the backfill's placeholders) until written: a forgotten template cannot be deployed.
fn template(phase: Phase, requires: Option<u64>) -> String {
    match phase {
        Phase::Expand => format!(
            "\
-- Expand: add tables, columns and indexes (CREATE INDEX CONCURRENTLY IF NOT EXISTS ...).
-- The running release must keep working: no DROP, RENAME or type change here.
-- migrate:up
{UP_PLACEHOLDER}


-- migrate:down
-- Undo the up part exactly: `migrate check` proves it restores the schema.

"
        ),
        Phase::Backfill => "\
-- Backfill: the runtime runs the UPDATE in short keyed batches, sized and paced to the
-- server's load (add target=<ms> to change the batch duration aimed at, or batch=<rows>
-- delay=<ms> to fix them); its WHERE must skip rows already done, so the backfill is
-- idempotent and resumable.
-- migrate:backfill table=<table> key=<key column>
-- migrate:up
UPDATE <table> SET <new column> = <expression> WHERE <new column> IS NULL;

-- migrate:down
-- Data only: usually nothing to revert.
"
        .to_owned(),
        Phase::Contract => format!(
            "\
-- Contract: remove what the expand made obsolete, once every release reads the new shape.
-- migrate:requires {}
-- migrate:up
{UP_PLACEHOLDER}


-- migrate:down
-- Recreate what the up part removes (data in dropped columns does not come back).

",
            requires.unwrap_or_default()
        ),
    }
}
