//! Reading a folder: its `.sql` files as bytes, and how their paths are shown.

use std::path::{Path, PathBuf};

use super::file_name::is_sql_like;
use crate::diagnostic::{Diagnostic, codes};

/// A `.sql` file as read from disk.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path shown in diagnostics (`migrations/0001_users.sql`).
    pub display_path: String,
    /// The bare file name, which gives version, name and phase.
    pub file_name: String,
    /// The content, unchanged: the checksum covers these bytes. Shared, not copied, by the
    /// migration a file becomes (a big file held twice took its size again, issue 21, item 20).
    pub bytes: std::sync::Arc<[u8]>,
}

/// What [`read_dir`] found: the files it read, and an error for every `.sql` entry that is
/// not a readable file.
#[derive(Debug, Clone, Default)]
pub struct FolderContents {
    /// Sorted by file name.
    pub files: Vec<SourceFile>,
    /// diesel's migrations, one folder each: its `up.sql`, `down.sql` and `metadata.toml`
    /// named `<folder>/<file>`; sorted.
    pub nested: Vec<SourceFile>,
    /// Flyway's script configurations, `<script>.sql.conf`; sorted.
    pub script_configs: Vec<SourceFile>,
    pub diagnostics: Vec<Diagnostic>,
}

/// The files of a diesel migration folder that are read; others in it are its own business.
const NESTED_FILES: [&str; 3] = ["up.sql", "down.sql", "metadata.toml"];

/// Reads every `.sql` file of `dir` (not recursively), whatever the case of the extension
/// (see [`is_sql_like`]). `display_dir` prefixes the paths shown in diagnostics. Other files
/// are ignored, except a subfolder with an `up.sql` (diesel's layout) and `*.sql.conf`
/// (Flyway's), which [`super::assemble`] reads or refuses.
///
/// Symlinks are followed: a link to a file is read as that file (its bytes are what is
/// linted, checksummed and applied, as `include_bytes!` reads them in the macro). A `.sql`
/// entry that is no file once links are followed (a directory, a dangling link, a pipe, a
/// device) is an error naming it: skipping it would drop a migration without a word, and
/// reading a pipe or a device could wait or grow forever.
pub fn read_dir(dir: &Path, display_dir: &str) -> Result<FolderContents, std::io::Error> {
    let mut contents = FolderContents::default();
    // The files to read, found first (only regular files: a pipe or a device is never
    // opened) and then read on every core: a corpus of hundreds of files spends most of
    // this in system calls.
    let mut to_read: Vec<(Entry, PathBuf, SourceFile)> = Vec::new();
    let source = |display_path: String, file_name: String| SourceFile {
        display_path,
        file_name,
        bytes: std::sync::Arc::from([]),
    };
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let display_path = display_join(display_dir, &file_name);
        if file_name.ends_with(".sql.conf") {
            to_read.push((
                Entry::ScriptConfig,
                entry.path(),
                source(display_path, file_name),
            ));
            continue;
        }
        if !is_sql_like(&file_name) {
            let path = entry.path();
            if !file_name.starts_with('.') && path.join("up.sql").is_file() {
                for nested in NESTED_FILES {
                    let inner = path.join(nested);
                    if inner.is_file() {
                        let name = format!("{file_name}/{nested}");
                        let shown = display_join(display_dir, &name);
                        to_read.push((Entry::Nested, inner, source(shown, name)));
                    }
                }
            }
            continue;
        }
        let path = entry.path();
        let problem = match std::fs::metadata(&path) {
            Ok(metadata) if metadata.is_file() => {
                to_read.push((Entry::Migration, path, source(display_path, file_name)));
                continue;
            }
            Ok(metadata) if metadata.is_dir() => {
                format!("`{file_name}` is a directory, not a migration file")
            }
            Ok(_) => format!("`{file_name}` is not a regular file (a device, a pipe or a socket)"),
            Err(error) => format!("cannot read `{file_name}`: {error}"),
        };
        contents
            .diagnostics
            .push(not_a_migration(display_path, problem));
    }
    let threads = crate::parallel::threads_for(to_read.len());
    let read = crate::parallel::map_in_order(&to_read, threads, |(_, path, _)| std::fs::read(path));
    for ((entry, _, mut file), bytes) in to_read.into_iter().zip(read) {
        match (entry, bytes) {
            (Entry::Migration, Err(error)) => {
                let problem = format!("cannot read `{}`: {error}", file.file_name);
                contents
                    .diagnostics
                    .push(not_a_migration(file.display_path, problem));
            }
            (Entry::Nested | Entry::ScriptConfig, Err(error)) => return Err(error),
            (entry, Ok(bytes)) => {
                file.bytes = bytes.into();
                match entry {
                    Entry::Migration => contents.files.push(file),
                    Entry::Nested => contents.nested.push(file),
                    Entry::ScriptConfig => contents.script_configs.push(file),
                }
            }
        }
    }
    for list in [
        &mut contents.files,
        &mut contents.nested,
        &mut contents.script_configs,
    ] {
        list.sort_by(|a, b| a.file_name.cmp(&b.file_name));
    }
    Ok(contents)
}

/// The error for a `.sql` entry that could not be read as a migration.
fn not_a_migration(display_path: String, problem: String) -> Diagnostic {
    Diagnostic::error(display_path, 1, 1, codes::IO, problem).with_help(
        "a migration is a regular file (or a symlink to one) named \
         `<version>_<name>[.<phase>].sql`; rename or remove this entry",
    )
}

/// What a folder entry to read is.
enum Entry {
    /// A `.sql` file of the folder.
    Migration,
    /// A file of a diesel migration folder.
    Nested,
    /// A Flyway `<script>.sql.conf`.
    ScriptConfig,
}

/// `dir/file_name` as diagnostics show it; a file of `.` or of no dir shows its bare name.
pub fn display_join(dir: &str, file_name: &str) -> String {
    if dir.is_empty() || dir == "." {
        file_name.to_owned()
    } else {
        format!("{}/{}", dir.trim_end_matches('/'), file_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::testing::any_rule;
    use crate::source::{load_files, parse_file_name};

    #[test]
    fn upper_case_extensions_are_refused_not_ignored() {
        for name in ["0002_b.SQL", "0003_c.Sql", "0004_d.expand.sQl"] {
            assert_eq!(
                parse_file_name(name).unwrap_err(),
                "migration files end in lower-case .sql",
                "{name}"
            );
        }
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        for name in [
            "0001_a.sql",
            "0002_b.SQL",
            "0003_c.Sql",
            "notes.txt",
            "x.sq",
        ] {
            std::fs::write(dir.join(name), "SELECT 1;").unwrap();
        }
        let read: Vec<String> = read_dir(dir, "m")
            .unwrap()
            .files
            .into_iter()
            .map(|f| f.file_name)
            .collect();
        assert_eq!(read, ["0001_a.sql", "0002_b.SQL", "0003_c.Sql"]);
        let set = load_files(&read_dir(dir, "m").unwrap().files, &any_rule);
        let problems: Vec<(&str, &str, &str)> = set
            .diagnostics
            .iter()
            .map(|d| (d.file.as_str(), d.code, d.message.as_str()))
            .collect();
        assert_eq!(
            problems,
            [
                (
                    "m/0002_b.SQL",
                    "bad-file-name",
                    "`0002_b.SQL` is not a migration file name: migration files end in lower-case .sql"
                ),
                (
                    "m/0003_c.Sql",
                    "bad-file-name",
                    "`0003_c.Sql` is not a migration file name: migration files end in lower-case .sql"
                ),
            ]
        );
        assert!(
            set.diagnostics[0]
                .help
                .as_deref()
                .unwrap()
                .contains("case-insensitive filesystem")
        );
        assert_eq!(set.files.len(), 1);
    }
}
