//! Reading a folder: its `.sql` files as bytes, and how their paths are shown.

use std::path::Path;

use super::file_name::is_sql_like;

/// A `.sql` file as read from disk.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path shown in diagnostics (`migrations/0001_users.sql`).
    pub display_path: String,
    /// The bare file name, which gives version, name and phase.
    pub file_name: String,
    /// The content, unchanged: the checksum covers these bytes.
    pub bytes: Vec<u8>,
}

/// Reads every `.sql` file of `dir` (not recursively), whatever the case of the extension
/// (see [`is_sql_like`]). `display_dir` prefixes the paths shown in diagnostics. Other files
/// are ignored.
pub fn read_dir(dir: &Path, display_dir: &str) -> Result<Vec<SourceFile>, std::io::Error> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if !is_sql_like(&file_name) {
            continue;
        }
        let bytes = std::fs::read(entry.path())?;
        files.push(SourceFile {
            display_path: display_join(display_dir, &file_name),
            file_name,
            bytes,
        });
    }
    files.sort_by(|a, b| a.file_name.cmp(&b.file_name));
    Ok(files)
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
            .into_iter()
            .map(|f| f.file_name)
            .collect();
        assert_eq!(read, ["0001_a.sql", "0002_b.SQL", "0003_c.Sql"]);
        let set = load_files(&read_dir(dir, "m").unwrap(), &any_rule);
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
