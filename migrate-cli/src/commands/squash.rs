//! `migrate squash --to V [--dry-run]`: one migration that creates the schema the versions up
//! to V make, in place of their files.
//!
//! The squash is `pg_dump --schema-only` of a scratch database at V, taken apart into its
//! statements without owners, privileges, comments between statements, session settings and
//! the state tables. Before anything is written it is proven on the folder as it will be (the
//! replaced files gone, the squash in): the folder lints clean, and a fresh scratch database
//! built from it up to V has the same schema as one built from the original files (compared
//! as `baseline` compares). Databases that applied the replaced files keep working: its
//! `-- migrate:replaces` line lists them, and the runtime reads a history that has them all
//! as having applied the squash.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use migrate_core::lock_analysis::{roles_or_privileges, writes_rows};
use migrate_core::source::Layout;
use migrate_core::{CheckedSet, Diagnostic, Migration, Migrations, Phase};
use serde_json::json;

use crate::Context;
use crate::diff::line_diff;
use crate::error::{CliError, Outcome};
use crate::output;
use crate::schema::{clean, object_statements};
use crate::scratch_schema::ScratchSchemas;

/// Diff lines shown before "... and N more".
const DIFF_LINES_SHOWN: usize = 60;

/// Settings pg_dump's script relies on, kept for the squash's own transaction: the body of a
/// SQL function may name a table created further down (pg_dump does not order by what a body
/// reads).
const KEPT_SETTINGS: &str = "SET LOCAL check_function_bodies = false;";

/// Rules about running a statement where its objects already exist, hold rows or serve
/// traffic (locks, scans, rewrites, re-runs). A squash runs only on a database without any
/// of its objects, in one transaction: the runtime reads a database that applied the
/// replaced files as having applied it, and refuses one that applied only some.
const FRESH_DATABASE_RULES: [&str; 13] = [
    "autocommit-rerun-unsafe",
    "blocking-statement",
    "column-type-change",
    "constraint-not-valid",
    "enum-value-same-transaction",
    "exclusion-constraint",
    "lock-held-across-statements",
    "require-concurrent-index",
    "require-if-not-exists",
    "set-not-null-scan",
    "table-persistence-change",
    "unique-via-index",
    "volatile-default",
];

/// The reason of a generated allow of a [`FRESH_DATABASE_RULES`] rule.
const FRESH_DATABASE_REASON: &str =
    "a squash runs only on a database without these objects, in one transaction";

/// The reason of a generated `unparseable` allow: the linter cannot read what pg_dump wrote,
/// the comparison of schemas is what proves it.
const UNPARSEABLE_REASON: &str =
    "written by pg_dump; proven by building a database from this file and comparing schemas";

pub fn run(context: &Context, to: u64, dry_run: bool) -> anyhow::Result<Outcome> {
    let (dir, display) = context.folder(None);
    let checked = context.check(&dir, &display)?;
    if checked.layout != Layout::Migrate {
        return Err(CliError::Usage(format!(
            "{display} is in {}'s layout and a squash is a file of migrate's own layout: rename \
             the files into it first (docs/cli.md, `squash`); nothing was written",
            checked.layout
        ))
        .into());
    }
    if checked.has_errors() {
        for diagnostic in checked.errors() {
            eprintln!("{diagnostic}");
        }
        return Err(CliError::InvalidSet {
            display_dir: display,
            errors: checked.errors().count(),
        }
        .into());
    }
    let migrations = checked.migrations(&dir.to_string_lossy());
    let replaced = replaced_migrations(&migrations, to)?;
    refuse_what_a_dump_loses(&replaced)?;
    let versions = replaced_versions(&replaced);

    let scratch = ScratchSchemas::start(context)?;
    let original = scratch.schema_at(context, &migrations, to)?;
    let statements = object_statements(&original)?;
    let file_name = squash_file_name(&replaced);
    let removed: Vec<String> = replaced.iter().map(|m| m.file_name.to_string()).collect();

    // The folder as it will be, in a temporary copy: linted, then built from.
    let future = TempDir::new()?;
    copy_folder_without(&dir, future.path(), &removed)?;
    let squash = Squash {
        to,
        versions: &versions,
        statements: &statements,
        file_name: &file_name,
    };
    let text = squash.linting_clean(future.path(), &display, &checked)?;

    // The proof: the new folder alone builds the same schema up to V.
    let rebuilt_set = migrate_core::check_dir_as(future.path(), &display, Some(Layout::Migrate))?
        .migrations(&future.path().to_string_lossy());
    let rebuilt = scratch.schema_at(context, &rebuilt_set, to)?;
    let diff = line_diff(&clean(&original), &clean(&rebuilt));
    if !diff.is_empty() {
        print_difference(context, to, &diff);
        return Ok(Outcome::Disagreement);
    }

    if !dry_run {
        write_squash(&dir, &file_name, &text, &removed)?;
    }
    if context.json() {
        output::print_json(&json!({
            "file": file_name,
            "replaces": versions,
            "removed": removed,
            "dry_run": dry_run,
            "text": text,
        }));
    } else if dry_run {
        print!("{text}");
        eprintln!(
            "dry run: would write {display}/{file_name} and remove {}; proven on scratch \
             databases (it lints clean and builds the schema the files build); nothing was written",
            removed.join(", ")
        );
    } else {
        println!(
            "wrote {display}/{file_name} and removed {} (your version control keeps them); \
             proven on scratch databases: the folder lints clean and builds the schema the \
             files built. Databases that applied them read the squash as applied.",
            removed.join(", ")
        );
    }
    Ok(Outcome::Success)
}

/// The migrations up to `to`, refusing a `to` that is not a version of the set and a squash
/// of nothing but itself.
fn replaced_migrations(migrations: &Migrations, to: u64) -> anyhow::Result<Vec<&Migration>> {
    if migrations.get(to).is_none() {
        let known: Vec<String> = migrations.iter().map(|m| m.version.to_string()).collect();
        return Err(CliError::Usage(format!(
            "--to {to} is not a version of the set (its versions: {}); nothing was written",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        ))
        .into());
    }
    let replaced: Vec<&Migration> = migrations.iter().filter(|m| m.version <= to).collect();
    if replaced.len() < 2 {
        return Err(CliError::Usage(format!(
            "{to} is the first migration of the set: a squash of it alone would replace it \
             with itself; nothing was written"
        ))
        .into());
    }
    Ok(replaced)
}

/// Refuses migrations whose effect a schema-only dump of a scratch database does not carry:
/// rows they wrote (a database built from the squash would lack them, and comparing schemas
/// cannot tell), and roles, owners and privileges (the squash leaves the scratch cluster's
/// out, so yours would be lost the same way).
fn refuse_what_a_dump_loses(replaced: &[&Migration]) -> anyhow::Result<()> {
    let first = |m: &Migration, kind_of: fn(&str) -> Option<&'static str>| {
        m.up.statements.iter().find_map(|s| {
            kind_of(&s.sql).map(|kind| format!("{} ({kind} at line {})", m.file_name, s.line))
        })
    };
    let mut rows = Vec::new();
    let mut roles = Vec::new();
    for m in replaced {
        if m.phase == Phase::Backfill {
            rows.push(format!("{} (a backfill)", m.file_name));
        } else if let Some(found) = first(m, writes_rows) {
            rows.push(found);
        }
        if let Some(found) = first(m, roles_or_privileges) {
            roles.push(found);
        }
    }
    let mut problems = Vec::new();
    if !rows.is_empty() {
        problems.push(format!(
            "write rows, which a schema-only dump does not carry: {}",
            rows.join(", ")
        ));
    }
    if !roles.is_empty() {
        problems.push(format!(
            "change roles, owners or privileges, which a squash leaves out (the scratch \
             cluster's are not yours): {}",
            roles.join(", ")
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(CliError::Usage(format!(
        "migrations up to this version {}; squash up to a version before the first of them; \
         nothing was written",
        problems.join("; and ")
    ))
    .into())
}

/// Every version the squash stands for: the replaced files' and those an earlier squash
/// among them stood for.
fn replaced_versions(replaced: &[&Migration]) -> Vec<u64> {
    let mut versions: Vec<u64> = replaced
        .iter()
        .flat_map(|m| std::iter::once(m.version).chain(m.replaces.iter().copied()))
        .collect();
    versions.sort_unstable();
    versions.dedup();
    versions
}

/// `<V>_squashed.sql`, V written as wide as its file wrote it (`0003`).
fn squash_file_name(replaced: &[&Migration]) -> String {
    let (version, width) = replaced.last().map_or((0, 0), |m| {
        let width = m.file_name.bytes().take_while(u8::is_ascii_digit).count();
        (m.version, width)
    });
    format!("{version:0width$}_squashed.sql")
}

/// The squash being written: what its text is made of.
struct Squash<'a> {
    to: u64,
    versions: &'a [u64],
    statements: &'a [&'a str],
    file_name: &'a str,
}

impl Squash<'_> {
    /// The squash's text, with the allows it needs for `folder` (the folder as it will be) to
    /// lint clean; refused, with the findings printed, when one is left it may not allow.
    fn linting_clean(
        &self,
        folder: &Path,
        display: &str,
        original: &CheckedSet,
    ) -> anyhow::Result<String> {
        let mut allows = vec![Vec::new(); self.statements.len()];
        loop {
            let text = squash_text(self.to, self.versions, self.statements, &allows);
            std::fs::write(folder.join(self.file_name), &text)
                .with_context(|| format!("writing the squash into {}", folder.display()))?;
            let linted = migrate_core::check_dir_as(folder, display, Some(Layout::Migrate))?;
            if !linted.has_errors() {
                return Ok(text);
            }
            if !allow_findings(&linted, original, self.file_name, &text, &mut allows) {
                for diagnostic in linted.errors() {
                    eprintln!("{diagnostic}");
                }
                return Err(CliError::Usage(format!(
                    "the folder with the squash of versions up to {} does not lint clean \
                     (above); nothing was written",
                    self.to
                ))
                .into());
            }
        }
    }
}

/// The squash file: a header, the replaces line, the kept setting, then each statement with
/// its generated allows.
fn squash_text(
    to: u64,
    versions: &[u64],
    statements: &[&str],
    allows: &[Vec<(&'static str, &'static str)>],
) -> String {
    let listed: Vec<String> = versions.iter().map(u64::to_string).collect();
    let mut text = format!(
        "-- Written by `migrate squash --to {to}`: the schema versions {} made, as pg_dump \
         --schema-only wrote it\n-- (owners, privileges and session settings left out). It runs \
         only on a database without them;\n-- a database that applied those versions reads it \
         as applied. No down part: reverting it would drop everything.\n\
         -- migrate:replaces {}\n\n{KEPT_SETTINGS}\n",
        listed.join(", "),
        listed.join(",")
    );
    for (statement, allows) in statements.iter().zip(allows) {
        text.push('\n');
        for (rule, reason) in allows {
            text.push_str(&format!("-- migrate:allow {rule} {reason}\n"));
        }
        text.push_str(statement);
        text.push_str(";\n");
    }
    text
}

/// Adds an allow for each error finding in the squash that the squash may honestly allow
/// (a `FRESH_DATABASE_RULES` rule, `unparseable`, or a rule the replaced files allowed);
/// false when a finding is left that it may not, or none was added (the loop would not end).
fn allow_findings(
    linted: &CheckedSet,
    original: &CheckedSet,
    file_name: &str,
    text: &str,
    allows: &mut [Vec<(&'static str, &'static str)>],
) -> bool {
    let starts = statement_lines(text);
    let mut added = false;
    for diagnostic in linted.errors() {
        let Some(index) = in_squash(diagnostic, file_name, &starts) else {
            return false;
        };
        let Some(rule) = migrate_core::lint::rule(diagnostic.code) else {
            return false;
        };
        let reason = if FRESH_DATABASE_RULES.contains(&rule.id) {
            FRESH_DATABASE_REASON
        } else if rule.id == "unparseable" {
            UNPARSEABLE_REASON
        } else if allowed_in(original, rule.id) {
            "allowed in the migrations this squash replaces, which made this object"
        } else {
            return false;
        };
        if !allows[index].iter().any(|(r, _)| *r == rule.id) {
            allows[index].push((rule.id, reason));
            added = true;
        }
    }
    added
}

/// The 1-based first line of each statement of the squash after the header, in order.
fn statement_lines(text: &str) -> Vec<u32> {
    let Ok(tokens) = migrate_core::splitter::tokenize(text) else {
        return Vec::new();
    };
    migrate_core::splitter::split(text, &tokens)
        .into_iter()
        .filter_map(|item| match item {
            migrate_core::splitter::Item::Statement(s) => Some(s.line),
            migrate_core::splitter::Item::LineComment { .. } => None,
        })
        .skip(1) // KEPT_SETTINGS
        .collect()
}

/// The index of the squash statement a finding is about, if it is about one.
fn in_squash(diagnostic: &Diagnostic, file_name: &str, starts: &[u32]) -> Option<usize> {
    if !diagnostic.file.ends_with(file_name) {
        return None;
    }
    starts.iter().rposition(|start| *start <= diagnostic.line)
}

/// Whether a replaced migration allows `rule` somewhere (`-- migrate:allow <rule> ...`).
fn allowed_in(original: &CheckedSet, rule: &str) -> bool {
    let directive = format!("-- migrate:allow {rule} ");
    original.files.iter().any(|f| {
        f.source
            .lines()
            .any(|l| l.trim_start().starts_with(&directive))
    })
}

/// Copies the files of `from` (not its folders) into `to`, leaving out `skipped` names.
fn copy_folder_without(from: &Path, to: &Path, skipped: &[String]) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_file() && !skipped.contains(&name) {
            std::fs::copy(entry.path(), to.join(&name))
                .with_context(|| format!("copying {name} into a temporary folder"))?;
        }
    }
    Ok(())
}

/// Writes the squash, then removes the replaced files: a failure halfway leaves the squash
/// beside files it replaces, which the next lint names (never files gone with no squash).
fn write_squash(dir: &Path, file_name: &str, text: &str, removed: &[String]) -> anyhow::Result<()> {
    let path = dir.join(file_name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    for name in removed.iter().filter(|n| n.as_str() != file_name) {
        std::fs::remove_file(dir.join(name)).with_context(|| format!("removing {name}"))?;
    }
    Ok(())
}

fn print_difference(context: &Context, to: u64, diff: &[String]) {
    if context.json() {
        output::print_json(&json!({ "file": null, "diff": diff }));
        return;
    }
    eprintln!(
        "error: a database built from the squash differs from one built from the files up to \
         {to} (- files, + squash); nothing was written:"
    );
    for line in diff.iter().take(DIFF_LINES_SHOWN) {
        eprintln!("  {line}");
    }
    if diff.len() > DIFF_LINES_SHOWN {
        eprintln!("  ... and {} more line(s)", diff.len() - DIFF_LINES_SHOWN);
    }
}

/// A temporary folder removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "migrate-squash-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
