//! The one entry point that reads, parses and lints a migration folder. The `migrations!()`
//! macro calls it at compile time and the CLI at run time, so `cargo build` and
//! `migrate lint` report the same findings from the same code.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::analysis;
use crate::diagnostic::{self, Diagnostic, Severity};
use crate::lint::{self, Config, config::CONFIG_FILE_NAME, coverage::Coverage};
use crate::migration::Migrations;
use crate::migration::packed::{self, FileTexts, PackError, PackedSet};
use crate::source::{self, DownFile, Entries, FolderContents, Layout, ParsedFile, display_join};

/// Why [`check_dir`] could not check a folder at all. Problems of the files themselves are not
/// errors here but [`Diagnostic`]s of the [`CheckedSet`], so every one of them is reported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// The folder, a file in it or its `migrate.toml` could not be read.
    #[error("cannot read migration folder {}: {source}", path.display())]
    ReadDir {
        /// The folder, as given to [`check_dir`].
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
}

/// What [`CheckedSet::pack`] made of a set.
#[derive(Debug, Clone)]
pub struct EmbeddedSet {
    /// The files whose texts are embedded, in the order the packed set refers to them: each
    /// file's path and text as read.
    pub files: Vec<(PathBuf, String)>,
    /// The pool (embedded after the files' texts) and the packed structure.
    pub packed: PackedSet,
}

/// A folder read, parsed and linted.
#[derive(Debug, Clone)]
pub struct CheckedSet {
    /// Files that parsed, in version order (files with file-level errors are left out); each
    /// holds its `migration`, and [`CheckedSet::migrations`] gives them as a set.
    pub files: Vec<ParsedFile>,
    /// Every file-level error and lint finding, sorted by file and position.
    pub diagnostics: Vec<Diagnostic>,
    /// How the linter read the statements of `files`: parsed, classified from keywords,
    /// flagged, or with hidden actions.
    pub coverage: Coverage,
    /// Every path the result depends on (the `.sql` files and the config file if present),
    /// so the macro can make cargo rebuild when one changes.
    pub inputs: Vec<PathBuf>,
    /// The layout the folder was read in (given, configured or detected).
    pub layout: Layout,
}

impl CheckedSet {
    /// Whether any diagnostic is an error: the set must then not be embedded or applied.
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }

    /// The error diagnostics, in order.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
    }

    /// The warning diagnostics, in order.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }

    /// The set as `migrations!()` embeds it ([`crate::migration::packed`]): the files of
    /// `dir` its statements are slices of (each migration's file, and its down file where
    /// the layout has one; a file no longer readable as UTF-8 is left out and its texts go to
    /// the pool), and the packed rest.
    pub fn pack(&self, dir: &Path) -> Result<EmbeddedSet, PackError> {
        let mut files: Vec<(PathBuf, String)> = Vec::new();
        let mut file_text = |file_name: &str| {
            let path = dir.join(file_name);
            let text = std::fs::read_to_string(&path).ok()?;
            files.push((path, text));
            Some(files.len() - 1)
        };
        let texts: Vec<FileTexts> = self
            .files
            .iter()
            .map(|file| FileTexts {
                up: file_text(&file.migration.file_name),
                down: file
                    .down_file
                    .as_ref()
                    .and_then(|down| file_text(&down.file_name)),
            })
            .collect();
        let text_refs: Vec<&str> = files.iter().map(|(_, text)| text.as_str()).collect();
        let packed = packed::pack(
            &text_refs,
            self.files.iter().map(|file| &file.migration).zip(texts),
        )?;
        Ok(EmbeddedSet { files, packed })
    }

    /// The migration set; `dir` is recorded in it for the runtime's missing-file messages.
    pub fn migrations(&self, dir: &str) -> Migrations {
        Migrations::from_sorted(
            dir.to_owned(),
            self.files.iter().map(|f| f.migration.clone()).collect(),
        )
    }

    /// [`CheckedSet::migrations`] without a copy: each file's migration is moved out and the
    /// rest (the file's text, its statements' lint state) dropped, so a big file's statements
    /// are not held twice while they are applied.
    pub fn into_migrations(self, dir: &str) -> Migrations {
        Migrations::from_sorted(
            dir.to_owned(),
            self.files.into_iter().map(|f| f.migration).collect(),
        )
    }
}

/// Reads `dir` (and `dir/migrate.toml` when present), parses every migration file and lints
/// the set. `display_dir` is how paths appear in diagnostics, e.g. `migrations`. The layout is
/// `migrate.toml`'s `layout`, else detected ([`check_dir_as`] forces one).
pub fn check_dir(dir: &Path, display_dir: &str) -> Result<CheckedSet, CheckError> {
    check_dir_as(dir, display_dir, None)
}

/// [`check_dir`] reading the folder in `layout` when given (`--layout`, the macro's
/// `layout = "..."`), which wins over `migrate.toml`'s.
pub fn check_dir_as(
    dir: &Path,
    display_dir: &str,
    layout: Option<Layout>,
) -> Result<CheckedSet, CheckError> {
    Ok(check_folder(read_folder(dir, display_dir)?, layout))
}

/// Everything [`check_folder`] reads of a folder, read once: its files' bytes and its
/// `migrate.toml`. The build cache keys on exactly these bytes ([`FolderSnapshot::hash_into`]),
/// so a cached result always belongs to the content that was checked.
#[derive(Debug, Clone)]
pub struct FolderSnapshot {
    dir: PathBuf,
    display_dir: String,
    folder: FolderContents,
    /// `migrate.toml`'s text, when the folder has one.
    config: Option<String>,
}

impl FolderSnapshot {
    /// Feeds every byte a check depends on into `hasher`: each file's name and content, each
    /// problem met while reading, the configuration, and how paths are displayed. Lengths
    /// go first, so no two different snapshots feed the same bytes.
    pub fn hash_into(&self, hasher: &mut impl FnMut(&[u8])) {
        let mut field = |bytes: &[u8]| {
            hasher(&(bytes.len() as u64).to_le_bytes());
            hasher(bytes);
        };
        field(self.display_dir.as_bytes());
        for (kind, files) in [
            ("files", &self.folder.files),
            ("nested", &self.folder.nested),
            ("script_configs", &self.folder.script_configs),
        ] {
            field(kind.as_bytes());
            field(&(files.len() as u64).to_le_bytes());
            for file in files {
                field(file.file_name.as_bytes());
                field(file.display_path.as_bytes());
                field(&file.bytes);
            }
        }
        field(format!("{:?}", self.folder.diagnostics).as_bytes());
        match &self.config {
            Some(text) => field(text.as_bytes()),
            None => field(b"no config file"),
        }
    }
}

/// Reads `dir` (its migration files and `migrate.toml` when present) for [`check_folder`].
pub fn read_folder(dir: &Path, display_dir: &str) -> Result<FolderSnapshot, CheckError> {
    let read_error = |source| CheckError::ReadDir {
        path: dir.to_path_buf(),
        source,
    };
    let folder = source::read_dir(dir, display_dir).map_err(read_error)?;
    let config = match std::fs::read_to_string(dir.join(CONFIG_FILE_NAME)) {
        Ok(text) => Some(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(read_error(error)),
    };
    Ok(FolderSnapshot {
        dir: dir.to_path_buf(),
        display_dir: display_dir.to_owned(),
        folder,
        config,
    })
}

/// Parses every migration file of a folder read by [`read_folder`] and lints the set, in
/// `layout` when given, else `migrate.toml`'s, else the one detected.
pub fn check_folder(snapshot: FolderSnapshot, layout: Option<Layout>) -> CheckedSet {
    let FolderSnapshot {
        dir,
        display_dir,
        folder,
        config,
    } = snapshot;
    let display_dir = display_dir.as_str();
    let mut inputs: Vec<PathBuf> = folder
        .files
        .iter()
        .chain(&folder.nested)
        .chain(&folder.script_configs)
        .map(|s| dir.join(&s.file_name))
        .collect();
    let mut diagnostics = folder.diagnostics;
    let entries = Entries {
        files: folder.files,
        nested: folder.nested,
        script_configs: folder.script_configs,
    };
    let config = match config {
        Some(text) => {
            inputs.push(dir.join(CONFIG_FILE_NAME));
            match Config::parse(&text, &display_join(display_dir, CONFIG_FILE_NAME)) {
                Ok(config) => config,
                Err(problems) => {
                    diagnostics.extend(problems);
                    Config::default()
                }
            }
        }
        None => Config::default(),
    };
    let (layout, sources) = match source::detect(&entries, layout.or(config.layout)) {
        Ok(layout) => {
            let (sources, problems) = source::assemble(&entries, layout, &config.phases);
            diagnostics.extend(problems);
            (layout, sources)
        }
        Err(problems) => {
            diagnostics.extend(problems);
            (Layout::Migrate, Vec::new())
        }
    };
    // The folder's bytes are in `sources` now, and their text in the parsed files next: each
    // copy goes as soon as the next exists, so a large folder is not held three times.
    drop(entries);
    let loaded = source::load_sources(&sources, &|id| lint::rule(id).is_some());
    drop(sources);
    diagnostics.extend(loaded.diagnostics);
    let linted = lint::lint_set(&loaded.files, &config);
    let mut locked_tables = linted.locked_tables;
    let mut findings = linted.diagnostics;
    let down_files: HashMap<&str, &DownFile> = loaded
        .files
        .iter()
        .filter_map(|f| Some((f.display_path.as_str(), f.down_file.as_ref()?)))
        .collect();
    for finding in &mut findings {
        source::relocate(finding, down_files.get(finding.file.as_str()).copied());
    }
    diagnostics.extend(findings);
    diagnostic::sort(&mut diagnostics);
    let mut files = loaded.files;
    // A set with errors is neither embedded nor applied.
    if !diagnostics.iter().any(|d| d.severity == Severity::Error) {
        for file in &mut files {
            let locks = locked_tables.remove(&file.display_path);
            analysis::analyse(file, locks);
        }
    }
    CheckedSet {
        files,
        diagnostics,
        coverage: linted.coverage,
        inputs,
        layout,
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::batch_plan;

    fn checked(files: &[(&str, &str)]) -> Migrations {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let checked = check_dir(dir.path(), "migrations").unwrap();
        // The linter's tables are those of the statements read one by one.
        for file in &checked.files {
            let analysis = file.migration.analysis.as_ref().unwrap();
            let stored: Vec<&str> = analysis.locked_tables.iter().map(AsRef::as_ref).collect();
            assert_eq!(stored, analysis::locked_tables(&file.migration));
        }
        assert!(!checked.has_errors(), "{:?}", checked.diagnostics);
        checked.into_migrations("migrations")
    }

    #[test]
    fn a_checked_set_carries_what_the_runtime_would_have_parsed() {
        let set = checked(&[
            (
                "0001_users.expand.sql",
                "CREATE TABLE IF NOT EXISTS users (id bigint PRIMARY KEY, email text, legacy text);\nALTER TABLE users ADD COLUMN IF NOT EXISTS email_lower text;",
            ),
            (
                "0002_fill.backfill.sql",
                "-- migrate:backfill table=users key=id\nUPDATE users SET email_lower = lower(email) WHERE email_lower IS NULL;\nDELETE FROM users WHERE email IS NULL AND id < 0;",
            ),
            (
                "0003_drop.contract.sql",
                "-- migrate:requires 1\nALTER TABLE users DROP COLUMN IF EXISTS legacy;",
            ),
        ]);
        let expand = set.get(1).unwrap();
        let analysis = expand.analysis.as_ref().unwrap();
        assert_eq!(analysis.locked_tables.as_ref(), [Cow::Borrowed("users")]);
        assert!(analysis.batches.is_empty() && analysis.removes.is_empty());

        let backfill = set.get(2).unwrap();
        let spec = backfill.backfill.as_ref().unwrap();
        let batches = &backfill.analysis.as_ref().unwrap().batches;
        assert_eq!(
            batches.as_ref(),
            [
                crate::migration::BatchSource::Update {
                    assignments: "email_lower = lower(email)".into(),
                    pending: "email_lower IS NULL".into(),
                },
                crate::migration::BatchSource::Delete {
                    pending: "email IS NULL AND id < 0".into(),
                },
            ]
        );
        // The runtime's plan from the stored pieces is the plan of the statement's text.
        for (source, statement) in batches.iter().zip(backfill.up.statements.iter()) {
            assert_eq!(
                batch_plan::plan_source(source, spec, "bigint"),
                Ok(batch_plan::plan(&statement.sql, spec, "bigint").unwrap())
            );
        }

        let contract = set.get(3).unwrap();
        let removes = &contract.analysis.as_ref().unwrap().removes;
        assert_eq!(removes.len(), 1);
        assert_eq!(removes[0].to_string(), "column users.legacy (dropped)");
    }
}
