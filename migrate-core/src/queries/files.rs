//! Queries from files: a `.sql` file or a folder of them (one query per statement), and a
//! sqlx offline folder (`query-<hash>.json`, as `cargo sqlx prepare` writes it).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::error::QuerySourceError;
use super::query::{Query, QueryOrigin, ResultColumn};
use crate::splitter::{self, Item};

/// The queries at `path`: a sqlx offline file or folder (any `query-*.json` in it), a `.sql`
/// file, or a folder of `.sql` files (read in name order, subfolders included). A path with
/// no query is an error: it is more likely wrong than empty.
pub fn read_path(path: &Path) -> Result<Vec<Query>, QuerySourceError> {
    let read_error = |source| QuerySourceError::Read {
        path: path.to_path_buf(),
        source,
    };
    let metadata = std::fs::metadata(path).map_err(read_error)?;
    let queries = if metadata.is_dir() {
        let mut files = Vec::new();
        collect_files(path, &mut files).map_err(read_error)?;
        files.sort();
        let sqlx: Vec<&PathBuf> = files.iter().filter(|file| is_sqlx_file(file)).collect();
        if sqlx.is_empty() {
            let mut queries = Vec::new();
            for file in files
                .iter()
                .filter(|f| f.extension().is_some_and(|e| e == "sql"))
            {
                queries.extend(read_sql_file(file)?);
            }
            queries
        } else {
            sqlx.into_iter()
                .map(|file| read_sqlx_file(file))
                .collect::<Result<_, _>>()?
        }
    } else if path.extension().is_some_and(|e| e == "json") {
        vec![read_sqlx_file(path)?]
    } else {
        read_sql_file(path)?
    };
    if queries.is_empty() {
        return Err(QuerySourceError::NoQueries {
            path: path.to_path_buf(),
        });
    }
    Ok(queries)
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            collect_files(&entry.path(), files)?;
        } else if kind.is_file() {
            files.push(entry.path());
        }
    }
    Ok(())
}

/// sqlx names every offline file `query-<hash>.json`.
fn is_sqlx_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with("query-") && name.ends_with(".json"))
}

/// Every statement of a `.sql` file is one query.
fn read_sql_file(path: &Path) -> Result<Vec<Query>, QuerySourceError> {
    let text = std::fs::read_to_string(path).map_err(|source| QuerySourceError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let tokens = splitter::tokenize(&text).map_err(|error| QuerySourceError::Lex {
        path: path.to_path_buf(),
        line: error.line,
        column: error.column,
        what: error.what,
    })?;
    Ok(splitter::split(&text, &tokens)
        .into_iter()
        .filter_map(|item| match item {
            Item::Statement(statement) => Some(Query {
                origin: QueryOrigin::SqlFile {
                    path: path.to_path_buf(),
                    line: statement.line,
                },
                text: text[statement.range].to_owned(),
                expected_columns: None,
            }),
            Item::LineComment { .. } => None,
        })
        .collect())
}

/// One sqlx offline file: `{"db_name": "PostgreSQL", "query": "...", "describe": {"columns":
/// [{"ordinal", "name", "type_info"}], "parameters", "nullable": [bool|null]}, "hash"}`.
fn read_sqlx_file(path: &Path) -> Result<Query, QuerySourceError> {
    let malformed = |reason: String| QuerySourceError::MalformedSqlx {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|source| QuerySourceError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let document: Value =
        serde_json::from_str(&text).map_err(|error| malformed(format!("invalid JSON: {error}")))?;
    if let Some(db) = document.get("db_name").and_then(Value::as_str)
        && db != "PostgreSQL"
    {
        return Err(malformed(format!("db_name is {db:?}, not \"PostgreSQL\"")));
    }
    let query = document
        .get("query")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("no \"query\" string".to_owned()))?;
    let expected_columns = match document.get("describe") {
        None | Some(Value::Null) => None,
        Some(describe) => Some(read_describe(describe).map_err(malformed)?),
    };
    Ok(Query {
        origin: QueryOrigin::Sqlx {
            path: path.to_path_buf(),
        },
        text: query.to_owned(),
        expected_columns,
    })
}

fn read_describe(describe: &Value) -> Result<Vec<ResultColumn>, String> {
    let columns = describe
        .get("columns")
        .and_then(Value::as_array)
        .ok_or("describe has no \"columns\" array")?;
    let nullable = describe
        .get("nullable")
        .and_then(Value::as_array)
        .ok_or("describe has no \"nullable\" array")?;
    if nullable.len() != columns.len() {
        return Err(format!(
            "describe has {} columns but {} nullable entries",
            columns.len(),
            nullable.len()
        ));
    }
    columns
        .iter()
        .zip(nullable)
        .enumerate()
        .map(|(index, (column, nullable))| {
            let name = column
                .get("name")
                .and_then(Value::as_str)
                .ok_or(format!("column {index} has no \"name\""))?;
            let type_name = match column.get("type_info") {
                Some(Value::String(name)) => name.clone(),
                // A custom type: {"Custom": {"name": "mood", "kind": ...}}.
                Some(Value::Object(custom)) => custom
                    .values()
                    .find_map(|inner| inner.get("name").and_then(Value::as_str))
                    .or_else(|| custom.values().find_map(Value::as_str))
                    .ok_or(format!(
                        "column {index} ({name}) has a type_info without a name"
                    ))?
                    .to_owned(),
                _ => return Err(format!("column {index} ({name}) has no \"type_info\"")),
            };
            let nullable = match nullable {
                Value::Bool(b) => Some(*b),
                Value::Null => None,
                other => {
                    return Err(format!(
                        "nullable entry {index} is {other}, not a boolean or null"
                    ));
                }
            };
            Ok(ResultColumn {
                name: name.to_owned(),
                type_name,
                nullable,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn every_statement_of_a_sql_file_is_a_query_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "app.sql",
            "-- users\nSELECT id FROM users WHERE id = $1;\n\nINSERT INTO users (email)\nVALUES ($1);\n",
        );
        let queries = read_path(&file).unwrap();
        assert_eq!(queries.len(), 2);
        assert_eq!(queries[0].text, "SELECT id FROM users WHERE id = $1");
        assert_eq!(
            queries[1].origin,
            QueryOrigin::SqlFile {
                path: file.clone(),
                line: 4
            }
        );
        assert_eq!(
            queries[1].origin.to_string(),
            format!("{}:4", file.display())
        );
    }

    #[test]
    fn a_sqlx_folder_gives_its_queries_and_describe() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "query-0a1b.json",
            r#"{"db_name":"PostgreSQL","query":"SELECT id, email FROM users","describe":{"columns":[{"ordinal":0,"name":"id","type_info":"Int8"},{"ordinal":1,"name":"email","type_info":{"Custom":{"name":"citext","kind":"Simple"}}}],"parameters":{"Left":[]},"nullable":[false,null]},"hash":"0a1b"}"#,
        );
        write(dir.path(), "notes.sql", "SELECT 1;");
        let queries = read_path(dir.path()).unwrap();
        assert_eq!(queries.len(), 1, "a sqlx folder reads only its query files");
        let columns = queries[0].expected_columns.as_ref().unwrap();
        assert_eq!(columns[0].type_name, "Int8");
        assert_eq!(columns[0].nullable, Some(false));
        assert_eq!(columns[1].type_name, "citext");
        assert_eq!(columns[1].nullable, None);
    }

    #[test]
    fn a_malformed_sqlx_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "query-ff.json",
            r#"{"db_name":"PostgreSQL","hash":"ff"}"#,
        );
        let error = read_path(dir.path()).unwrap_err();
        assert!(
            matches!(&error, QuerySourceError::MalformedSqlx { path, .. } if *path == file),
            "{error:?}"
        );
        write(dir.path(), "query-ff.json", "{ not json");
        assert!(matches!(
            read_path(dir.path()),
            Err(QuerySourceError::MalformedSqlx { .. })
        ));
        write(
            dir.path(),
            "query-ff.json",
            r#"{"query":"SELECT 1","describe":{"columns":[{"name":"x","type_info":"Int4"}],"nullable":[]}}"#,
        );
        assert!(matches!(
            read_path(dir.path()),
            Err(QuerySourceError::MalformedSqlx { .. })
        ));
    }

    #[test]
    fn an_unterminated_string_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "bad.sql", "SELECT 1;\nSELECT 'oops FROM t;\n");
        match read_path(&file) {
            Err(QuerySourceError::Lex { path, line, .. }) => {
                assert_eq!(path, file);
                assert_eq!(line, 2);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_path_without_queries_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_path(dir.path()),
            Err(QuerySourceError::NoQueries { .. })
        ));
        assert!(matches!(
            read_path(&dir.path().join("missing.sql")),
            Err(QuerySourceError::Read { .. })
        ));
    }
}
