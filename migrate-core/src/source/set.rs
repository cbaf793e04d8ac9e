//! A set of files: each parsed on its own, then the checks across files (unique versions, a
//! contract's `requires`).

use std::collections::BTreeMap;

use super::file::{ParsedFile, parse_source};
use super::folder::SourceFile;
use super::layout::MigrationSource;
use crate::diagnostic::{Diagnostic, codes};
use crate::migration::{Migrations, Phase};
use crate::parallel;

/// The result of reading a folder: the files that parsed, and every problem found.
#[derive(Debug, Clone, Default)]
pub struct LoadedSet {
    /// The files that became migrations, in version order (a file with an error that prevents
    /// it, or a duplicate version, is left out).
    pub files: Vec<ParsedFile>,
    /// Every file-level problem, unsorted ([`crate::check_dir`] sorts them with the lint's).
    pub diagnostics: Vec<Diagnostic>,
}

impl LoadedSet {
    /// The migration set, in version order.
    pub fn migrations(&self, dir: &str) -> Migrations {
        Migrations::from_sorted(
            dir.to_owned(),
            self.files.iter().map(|f| f.migration.clone()).collect(),
        )
    }
}

/// Parses files of our layout into a set: each file on its own (on every core), then the
/// checks across files (duplicate versions, `requires`). Files with errors are left out of
/// `files`.
pub fn load_files(
    sources: &[SourceFile],
    known_rules: &(dyn Fn(&str) -> bool + Sync),
) -> LoadedSet {
    let mut migrations = Vec::new();
    let mut diagnostics = Vec::new();
    for source in sources {
        match MigrationSource::ours(source) {
            Ok(migration) => migrations.push(migration),
            Err(diagnostic) => diagnostics.push(diagnostic),
        }
    }
    let mut set = load_sources(&migrations, known_rules);
    set.diagnostics.extend(diagnostics);
    set
}

/// [`load_files`] over migrations of any layout ([`super::assemble`]).
pub fn load_sources(
    sources: &[MigrationSource],
    known_rules: &(dyn Fn(&str) -> bool + Sync),
) -> LoadedSet {
    let mut set = LoadedSet::default();
    let threads = parallel::threads_for(sources.len());
    let parsed =
        parallel::map_in_order(sources, threads, |source| parse_source(source, known_rules));
    for result in parsed {
        match result {
            Ok((parsed, diagnostics)) => {
                set.diagnostics.extend(diagnostics);
                set.files.push(parsed);
            }
            Err(diagnostics) => set.diagnostics.extend(diagnostics),
        }
    }
    check_versions(sources, &mut set);
    set.files.sort_by_key(|f| f.migration.version);
    check_requires(&mut set);
    check_replaces(&mut set);
    set
}

/// A squash replaces files that are gone: one still in the set would run twice on a fresh
/// database (its own statements, then the squash's).
fn check_replaces(set: &mut LoadedSet) {
    let versions: Vec<u64> = set.files.iter().map(|f| f.migration.version).collect();
    for file in &set.files {
        let m = &file.migration;
        let still: Vec<String> = m
            .replaces
            .iter()
            .filter(|v| **v != m.version && versions.contains(v))
            .map(u64::to_string)
            .collect();
        if !still.is_empty() {
            set.diagnostics.push(
                Diagnostic::error(
                    &file.display_path,
                    1,
                    1,
                    codes::BAD_DIRECTIVE,
                    format!(
                        "this squash replaces versions {}, whose files are still in the set",
                        still.join(", ")
                    ),
                )
                .with_help(
                    "remove the files a squash replaces; databases that applied them keep working",
                ),
            );
        }
    }
}

fn check_versions(sources: &[MigrationSource], set: &mut LoadedSet) {
    let mut by_version: BTreeMap<u64, Vec<&SourceFile>> = BTreeMap::new();
    for source in sources {
        by_version
            .entry(source.version)
            .or_default()
            .push(&source.file);
    }
    for (version, files) in by_version {
        if files.len() < 2 {
            continue;
        }
        let names: Vec<&str> = files.iter().map(|f| f.file_name.as_str()).collect();
        for file in &files {
            set.diagnostics.push(
                Diagnostic::error(
                    &file.display_path,
                    1,
                    1,
                    codes::DUPLICATE_VERSION,
                    format!(
                        "version {version} is used by {} files: {}",
                        files.len(),
                        names.join(", ")
                    ),
                )
                .with_help(
                    "give each migration its own version, e.g. the next free number or a timestamp",
                ),
            );
        }
        set.files.retain(|f| f.migration.version != version);
    }
}

fn check_requires(set: &mut LoadedSet) {
    let phases: BTreeMap<u64, Phase> = set
        .files
        .iter()
        .map(|f| (f.migration.version, f.migration.phase))
        .collect();
    for file in &set.files {
        let migration = &file.migration;
        if migration.phase != Phase::Contract {
            continue;
        }
        let problem = match migration.requires {
            None => Some("a contract file must name the expand it finishes with `-- migrate:requires <version>`".to_owned()),
            Some(required) if required >= migration.version => {
                Some(format!("requires {required}, which is not an earlier version"))
            }
            Some(required) => match phases.get(&required) {
                Some(Phase::Expand) => None,
                Some(phase) => Some(format!("requires {required}, which is a {phase} migration, not an expand")),
                None => Some(format!("requires {required}, which is not a migration of this set")),
            },
        };
        if let Some(problem) = problem {
            set.diagnostics.push(
                Diagnostic::error(&file.display_path, 1, 1, codes::BAD_REQUIRES, problem)
                    .with_help("-- migrate:requires <version of the expand migration this contract finishes>"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::testing::{any_rule, codes_of, file};

    #[test]
    fn file_level_errors_name_the_file() {
        let set = load_files(
            &[
                file("003_a.sql", "SELECT 1;"),
                file("0003_b.sql", "SELECT 1;"),
                file("0004_empty.sql", "  -- nothing here\n"),
                file("0005_x.sql", "-- migrate:frobnicate\nSELECT 1;"),
                file("notes.sql", "SELECT 1;"),
                file("0006_u.sql", "SELECT 'open"),
            ],
            &any_rule,
        );
        let mut found = codes_of(&set);
        found.sort();
        assert_eq!(
            found,
            [
                "bad-file-name",
                "duplicate-version",
                "duplicate-version",
                "empty-file",
                "syntax",
                "unknown-directive"
            ]
        );
        assert!(
            set.diagnostics
                .iter()
                .any(|d| d.file == "migrations/0003_b.sql" && d.message.contains("003_a.sql"))
        );
        assert!(set.files.is_empty());
    }

    #[test]
    fn contract_requires_an_earlier_expand() {
        let set = load_files(
            &[
                file("0001_a.sql", "SELECT 1;"),
                file(
                    "0002_b.backfill.sql",
                    "-- migrate:backfill table=a key=id\nUPDATE a SET x = 1 WHERE x IS NULL;",
                ),
                file("0003_c.contract.sql", "-- migrate:requires 1\nSELECT 1;"),
                file("0004_d.contract.sql", "SELECT 1;"),
                file("0005_e.contract.sql", "-- migrate:requires 2\nSELECT 1;"),
                file("0006_f.contract.sql", "-- migrate:requires 9\nSELECT 1;"),
            ],
            &any_rule,
        );
        let problems: Vec<&str> = set.diagnostics.iter().map(|d| d.file.as_str()).collect();
        assert_eq!(
            problems,
            [
                "migrations/0004_d.contract.sql",
                "migrations/0005_e.contract.sql",
                "migrations/0006_f.contract.sql"
            ]
        );
        let backfill = set.files[1].migration.backfill.clone().unwrap();
        assert_eq!(
            (
                backfill.table.as_ref(),
                backfill.key.as_ref(),
                backfill.pace
            ),
            (
                "a",
                "id",
                crate::migration::BackfillPace::Adaptive { target_ms: None }
            )
        );
    }
}
