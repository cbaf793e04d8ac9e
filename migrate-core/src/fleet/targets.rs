//! The targets file: one database a line, `URL` or `NAME URL`, rolled in file order.
//!
//! ```text
//! # region shards
//! eu-1 postgres://deploy@eu-1.db/app?sslmode=verify-full
//! postgres://deploy@us-1.db/app
//! ```
//!
//! Blank lines and `#` comments are ignored. Two lines naming the same database (same host,
//! port and database name, whatever the user or the options) or the same NAME are refused,
//! naming both lines: rolling a database twice in one rollout is never what was meant.

use std::collections::HashMap;
use std::path::Path;

use tokio_postgres::config::Host;

use super::error::{FleetError, TargetsProblem};
use crate::runtime::ConnectOptions;

/// One database of the fleet, as its line gave it.
#[derive(Clone)]
pub struct DatabaseTarget {
    name: Option<String>,
    line: usize,
    options: ConnectOptions,
    display: String,
}

// By hand: the options hold the password.
impl std::fmt::Debug for DatabaseTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseTarget")
            .field("name", &self.name)
            .field("line", &self.line)
            .field("database", &self.display)
            .finish_non_exhaustive()
    }
}

impl DatabaseTarget {
    /// What messages call it: its NAME, else its URL without password or options.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.display)
    }

    /// The NAME of its line, if it had one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// `user@host:port/database`: the URL with no password and no options.
    pub fn redacted_url(&self) -> &str {
        &self.display
    }

    /// Its line in the targets file, from 1 (0 for targets given through the API).
    pub fn line(&self) -> usize {
        self.line
    }

    pub(crate) fn options(&self) -> &ConnectOptions {
        &self.options
    }
}

/// The parsed targets file, in file order.
#[derive(Debug, Clone)]
pub struct TargetList {
    databases: Vec<DatabaseTarget>,
}

impl TargetList {
    /// Reads and parses `path`; problems name `path:line`.
    pub fn read(path: &Path) -> Result<TargetList, FleetError> {
        let text = std::fs::read_to_string(path).map_err(|source| FleetError::ReadTargets {
            path: path.to_path_buf(),
            source,
        })?;
        TargetList::parse(&text, &path.display().to_string())
    }

    /// Parses the text of a targets file; `display_path` names it in errors. Every problem
    /// of every line is reported at once.
    pub fn parse(text: &str, display_path: &str) -> Result<TargetList, FleetError> {
        let mut databases = Vec::new();
        let mut problems = Vec::new();
        let mut seen_names: HashMap<String, usize> = HashMap::new();
        let mut seen_databases: HashMap<String, usize> = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.trim();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let problem = |reason: String| TargetsProblem {
                file: display_path.to_owned(),
                line,
                reason,
            };
            let words: Vec<&str> = content.split_whitespace().collect();
            let (name, url) = match words.as_slice() {
                [url] => (None, *url),
                [name, url] => (Some(*name), *url),
                _ => {
                    problems.push(problem(format!(
                        "expected `URL` or `NAME URL`, found {} words",
                        words.len()
                    )));
                    continue;
                }
            };
            if let Some(name) = name
                && let Err(reason) = check_name(name)
            {
                problems.push(problem(reason));
                continue;
            }
            let target = match DatabaseTarget::from_url(name, url, line) {
                Ok(target) => target,
                Err(reason) => {
                    problems.push(problem(reason));
                    continue;
                }
            };
            if let Some(name) = name
                && let Some(first) = seen_names.insert(name.to_owned(), line)
            {
                problems.push(problem(format!(
                    "duplicate target: the name `{name}` is already used on line {first}"
                )));
                continue;
            }
            let key = database_key(&target.options);
            if let Some(first) = seen_databases.get(&key) {
                problems.push(problem(format!(
                    "duplicate target: {} is the same database as line {first}",
                    target.display
                )));
                continue;
            }
            seen_databases.insert(key, line);
            databases.push(target);
        }
        if !problems.is_empty() {
            return Err(FleetError::InvalidTargets { problems });
        }
        if databases.is_empty() {
            return Err(FleetError::NoTargets {
                file: display_path.to_owned(),
            });
        }
        Ok(TargetList { databases })
    }

    /// A list from `(name, url)` pairs, e.g. a service's tenants from its own registry,
    /// checked as the file's lines are (line numbers count from 1 in the order given).
    pub fn from_urls<'a>(
        targets: impl IntoIterator<Item = (Option<&'a str>, &'a str)>,
    ) -> Result<TargetList, FleetError> {
        let text: String = targets
            .into_iter()
            .map(|(name, url)| match name {
                Some(name) => format!("{name} {url}\n"),
                None => format!("{url}\n"),
            })
            .collect();
        TargetList::parse(&text, "targets")
    }

    /// The databases, in file order.
    pub fn databases(&self) -> &[DatabaseTarget] {
        &self.databases
    }

    /// How many databases.
    pub fn len(&self) -> usize {
        self.databases.len()
    }

    /// Never true for a parsed list (an empty file is refused); for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.databases.is_empty()
    }
}

impl DatabaseTarget {
    fn from_url(name: Option<&str>, url: &str, line: usize) -> Result<DatabaseTarget, String> {
        let scheme_ok = url
            .split_once("://")
            .is_some_and(|(scheme, _)| matches!(scheme, "postgres" | "postgresql"));
        if !scheme_ok {
            return Err(
                "expected a postgres:// or postgresql:// URL (key=value strings have spaces, \
                 which separate NAME and URL here)"
                    .to_owned(),
            );
        }
        // The core's parser never echoes values, so no password reaches this message.
        let options = ConnectOptions::parse(url).map_err(|error| error.to_string())?;
        let display = redact(&options);
        Ok(DatabaseTarget {
            name: name.map(str::to_owned),
            line,
            options,
            display,
        })
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let valid = name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if valid && !name.contains("://") {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a target name: letters, digits, `_`, `-` and `.`, up to 63"
        ))
    }
}

/// `user@host:port/database`, from the parsed options: never the password, never the query.
fn redact(options: &ConnectOptions) -> String {
    let config = &options.config;
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(index, host)| {
            let host = match host {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string(),
            };
            match config.get_ports().get(index).or(config.get_ports().first()) {
                Some(port) => format!("{host}:{port}"),
                None => host,
            }
        })
        .collect();
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let database = config.get_dbname().or(config.get_user()).unwrap_or("");
    format!("{user}{}/{database}", hosts.join(","))
}

/// Same host(s), port(s) and database: the same database, whoever connects.
fn database_key(options: &ConnectOptions) -> String {
    let config = &options.config;
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            Host::Tcp(name) => name.to_ascii_lowercase(),
            #[cfg(unix)]
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<u16> = config.get_ports().to_vec();
    let database = config.get_dbname().or(config.get_user()).unwrap_or("");
    format!("{hosts:?}{ports:?}/{database}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<TargetsProblem> {
        match TargetList::parse(text, "fleet.txt") {
            Err(FleetError::InvalidTargets { problems }) => problems,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn names_urls_comments_and_blank_lines() {
        let list = TargetList::parse(
            "# shards\n\neu-1 postgres://u:secret@h1:5432/app\n  postgres://u@h2/app?sslmode=disable  # \n",
            "fleet.txt",
        );
        // A `#` after the URL is not a comment: the line has three words.
        assert!(list.is_err());
        let list = TargetList::parse(
            "# shards\n\neu-1 postgres://u:secret@h1:5432/app\n  postgres://u@h2/app?sslmode=disable\n",
            "fleet.txt",
        )
        .unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list.databases()[0].label(), "eu-1");
        assert_eq!(list.databases()[0].line(), 3);
        assert_eq!(list.databases()[1].label(), "u@h2:5432/app");
        assert!(!format!("{list:?}").contains("secret"));
        assert_eq!(list.databases()[0].redacted_url(), "u@h1:5432/app");
    }

    #[test]
    fn duplicates_name_both_lines() {
        let found =
            problems("postgres://u:pw@h1/app\nother postgres://v@H1:5432/app?sslmode=disable\n");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].line, 2);
        assert!(found[0].reason.contains("line 1"), "{}", found[0].reason);
        let found = problems("a postgres://h1/x\na postgres://h2/y\n");
        assert_eq!(found[0].line, 2);
        assert!(found[0].reason.contains("`a`") && found[0].reason.contains("line 1"));
    }

    #[test]
    fn every_bad_line_is_reported_without_its_password() {
        let found = problems(
            "mysql://u:hunter2@h/x\nname postgres://u@h/x extra\nbad/name postgres://h/y\npostgres://u:hunter2@h:notaport/z\n",
        );
        let lines: Vec<usize> = found.iter().map(|p| p.line).collect();
        assert_eq!(lines, [1, 2, 3, 4]);
        for problem in &found {
            assert!(!problem.to_string().contains("hunter2"), "{problem}");
            assert!(
                problem
                    .to_string()
                    .starts_with(&format!("fleet.txt:{}:", problem.line))
            );
        }
    }

    #[test]
    fn an_empty_file_is_refused() {
        assert!(matches!(
            TargetList::parse("# nothing\n\n", "fleet.txt"),
            Err(FleetError::NoTargets { .. })
        ));
    }
}
