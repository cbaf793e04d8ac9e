//! The defaults the documents state are the defaults the code has: the README's
//! `MigratorConfig` table, the option tables of docs/cli.md and `migrate up --help` are read
//! and compared with `MigratorConfig::default()`, so none of them can drift. No database.

use std::path::Path;
use std::time::Duration;

use clap::CommandFactory;
use migrate_cli::cli::Cli;
use migrate_core::runtime::{BackfillControl, MigratorConfig};

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The rows of the Markdown table whose header line starts with `header`, as cells.
fn table(text: &str, header: &str) -> Vec<Vec<String>> {
    let start = text
        .find(header)
        .unwrap_or_else(|| panic!("no table starting with {header:?}"));
    text[start..]
        .lines()
        .skip(2) // header and separator
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            // `\|` inside a cell is not a separator.
            line.replace("\\|", "\u{0}")
                .trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().replace('\u{0}', "|"))
                .collect()
        })
        .collect()
}

/// `5 s`, `15 min`, `500 ms`, `0` (the README's style) and `5s`, `15m`, `1h` (the CLI's).
fn duration(text: &str) -> Duration {
    let text = text.trim().trim_matches('`');
    if text == "0" {
        return Duration::ZERO;
    }
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    let number: u64 = digits
        .parse()
        .unwrap_or_else(|_| panic!("not a duration: {text:?}"));
    match text[digits.len()..].trim() {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" | "min" => Duration::from_secs(number * 60),
        "h" => Duration::from_secs(number * 3600),
        unit => panic!("unknown unit {unit:?} in {text:?}"),
    }
}

#[test]
fn the_readme_states_the_runtime_defaults() {
    // Exhaustive: a new field fails to compile here until the README documents it.
    let MigratorConfig {
        history_table,
        application_name,
        lock_timeout,
        statement_timeout,
        index_build_workers,
        lock_wait,
        lock_retries,
        retry_backoff,
        allow_out_of_order,
        ignore_missing,
        contract_stabilisation,
        max_replica_lag,
        running_queries_window,
        network_timeout,
        backfill,
    } = MigratorConfig::default();
    let readme = read("README.md");
    let mut documented = Vec::new();
    for row in table(&readme, "| `MigratorConfig` field |") {
        let fields: Vec<&str> = row[0].split(" / ").map(|f| f.trim_matches('`')).collect();
        let values: Vec<&str> = row[1].split(" / ").collect();
        assert_eq!(fields.len(), values.len(), "{row:?}");
        for (field, value) in fields.into_iter().zip(values) {
            let stale = format!("README: the default of `{field}` is stale: {value}");
            match field {
                "history_table" => assert_eq!(value, format!("`{history_table}`"), "{stale}"),
                "application_name" => {
                    assert_eq!(value, format!("`{application_name}`"), "{stale}")
                }
                "lock_timeout" => assert_eq!(duration(value), lock_timeout, "{stale}"),
                "statement_timeout" => assert_eq!(duration(value), statement_timeout, "{stale}"),
                "index_build_workers" => {
                    assert_eq!(value, format!("`{index_build_workers:?}`"), "{stale}")
                }
                "lock_wait" => assert_eq!(duration(value), lock_wait, "{stale}"),
                "lock_retries" => assert_eq!(value, lock_retries.to_string(), "{stale}"),
                "retry_backoff" => assert_eq!(duration(value), retry_backoff, "{stale}"),
                "allow_out_of_order" => {
                    assert_eq!(value, allow_out_of_order.to_string(), "{stale}")
                }
                "ignore_missing" => assert_eq!(value, ignore_missing.to_string(), "{stale}"),
                "contract_stabilisation" => {
                    assert_eq!(duration(value), contract_stabilisation, "{stale}")
                }
                "max_replica_lag" => {
                    let limit = value
                        .trim_matches('`')
                        .strip_prefix("Some(")
                        .and_then(|v| v.strip_suffix(')'))
                        .map(duration);
                    assert_eq!(limit, max_replica_lag, "{stale}");
                }
                "running_queries_window" => {
                    assert_eq!(value, format!("`{running_queries_window:?}`"), "{stale}")
                }
                "network_timeout" => assert_eq!(duration(value), network_timeout, "{stale}"),
                "backfill" => {
                    assert_eq!(value, "`BackfillControl::default()`", "{stale}");
                    assert_eq!(backfill, BackfillControl::default());
                }
                other => panic!("README documents `{other}`, which MigratorConfig lacks"),
            }
            documented.push(field.to_owned());
        }
    }
    assert_eq!(documented.len(), 15, "every field once: {documented:?}");
}

#[test]
fn the_readme_states_the_backfill_controller_defaults() {
    // Exhaustive, as above.
    let BackfillControl {
        target,
        busy_target,
        min_batch,
        max_batch,
        max_active_sessions,
        probe_query,
        max_replica_lag,
        throttle_query,
        pause_poll,
        critical_replica_lag,
        max_pause,
        max_wal_archive_backlog,
        autovacuum,
        max_transaction_age,
        server_cpus,
        max_cpu_percent,
        max_workers,
        vacuum,
    } = BackfillControl::default();
    let readme = read("README.md");
    let mut documented = Vec::new();
    for row in table(&readme, "| `BackfillControl` field |") {
        let fields: Vec<&str> = row[0].split(" / ").map(|f| f.trim_matches('`')).collect();
        let values: Vec<&str> = row[1].split(" / ").collect();
        assert_eq!(fields.len(), values.len(), "{row:?}");
        for (field, value) in fields.into_iter().zip(values) {
            let stale = format!("README: the default of `{field}` is stale: {value}");
            match field {
                "target" => assert_eq!(duration(value), target, "{stale}"),
                "min_batch" => assert_eq!(value, min_batch.to_string(), "{stale}"),
                "max_batch" => assert_eq!(value, max_batch.to_string(), "{stale}"),
                "max_active_sessions" => {
                    assert_eq!(value, format!("`{max_active_sessions:?}`"), "{stale}")
                }
                "probe_query" => assert_eq!(value, format!("`{probe_query:?}`"), "{stale}"),
                "max_replica_lag" => {
                    let limit = value
                        .trim_matches('`')
                        .strip_prefix("Some(")
                        .and_then(|v| v.strip_suffix(')'))
                        .map(duration);
                    assert_eq!(limit, max_replica_lag, "{stale}");
                }
                "throttle_query" => {
                    assert_eq!(value, format!("`{throttle_query:?}`"), "{stale}")
                }
                "pause_poll" => assert_eq!(duration(value), pause_poll, "{stale}"),
                "busy_target" | "critical_replica_lag" | "max_pause" | "max_transaction_age" => {
                    let stated = match value.trim_matches('`') {
                        "None" => None,
                        some => Some(duration(
                            some.strip_prefix("Some(")
                                .and_then(|v| v.strip_suffix(')'))
                                .unwrap_or_else(|| panic!("{stale}")),
                        )),
                    };
                    let actual = match field {
                        "busy_target" => busy_target,
                        "critical_replica_lag" => critical_replica_lag,
                        "max_pause" => max_pause,
                        _ => max_transaction_age,
                    };
                    assert_eq!(stated, actual, "{stale}");
                }
                "max_wal_archive_backlog" => {
                    assert_eq!(value, format!("`{max_wal_archive_backlog:?}`"), "{stale}")
                }
                "autovacuum" => assert_eq!(value, format!("`{autovacuum:?}`"), "{stale}"),
                "server_cpus" => assert_eq!(value, format!("`{server_cpus:?}`"), "{stale}"),
                "max_workers" => assert_eq!(value, max_workers.to_string(), "{stale}"),
                "max_cpu_percent" => assert_eq!(value, max_cpu_percent.to_string(), "{stale}"),
                "vacuum" => assert_eq!(value, vacuum.to_string(), "{stale}"),
                other => panic!("README documents `{other}`, which BackfillControl lacks"),
            }
            documented.push(field.to_owned());
        }
    }
    assert_eq!(documented.len(), 18, "every field once: {documented:?}");
}

/// A default as the CLI documents it.
#[derive(Debug)]
enum Stated {
    Text(String),
    Duration(Duration),
    /// `--max-replica-lag`: a duration or `off`.
    Limit(Option<Duration>),
}

impl Stated {
    fn matches(&self, text: &str) -> bool {
        match self {
            Stated::Text(expected) => text == expected,
            Stated::Duration(expected) => duration(text) == *expected,
            Stated::Limit(None) => text == "off",
            Stated::Limit(Some(expected)) => duration(text) == *expected,
        }
    }
}

/// The options whose defaults are `MigratorConfig::default()`'s.
fn cli_defaults() -> Vec<(&'static str, Stated)> {
    let defaults = MigratorConfig::default();
    vec![
        ("--history-table", Stated::Text(defaults.history_table)),
        (
            "--network-timeout",
            Stated::Duration(defaults.network_timeout),
        ),
        ("--lock-timeout", Stated::Duration(defaults.lock_timeout)),
        (
            "--statement-timeout",
            Stated::Duration(defaults.statement_timeout),
        ),
        ("--lock-wait", Stated::Duration(defaults.lock_wait)),
        (
            "--contract-stabilisation",
            Stated::Duration(defaults.contract_stabilisation),
        ),
        ("--max-replica-lag", Stated::Limit(defaults.max_replica_lag)),
    ]
}

#[test]
fn docs_cli_states_the_option_defaults() {
    let doc = read("docs/cli.md");
    let mut rows = Vec::new();
    let mut rest = doc.as_str();
    while let Some(at) = rest.find("| option | meaning | default |") {
        rows.extend(table(&rest[at..], "| option | meaning | default |"));
        rest = &rest[at + 1..];
    }
    for (option, expected) in cli_defaults() {
        let row = rows
            .iter()
            .find(|row| row[0].trim_matches('`').split(' ').next() == Some(option))
            .unwrap_or_else(|| panic!("docs/cli.md has no row for {option}"));
        // `30s`, or `0` (no wait): the first code span.
        let stated = row[2].split('`').nth(1).unwrap_or_default();
        assert!(
            expected.matches(stated),
            "docs/cli.md: the default of {option} is stale: {stated}, not {expected:?}"
        );
    }
}

#[test]
fn help_states_the_option_defaults() {
    let mut command = Cli::command();
    let help = command
        .find_subcommand_mut("up")
        .expect("up")
        .render_long_help()
        .to_string();
    for (option, expected) in cli_defaults() {
        let at = help
            .find(&format!("{option} <"))
            .unwrap_or_else(|| panic!("`up --help` lacks {option}"));
        let default = &help[at..];
        let default = &default[default.find("[default: ").expect(option) + "[default: ".len()..];
        let stated = &default[..default.find([']', ',']).unwrap()];
        assert!(
            expected.matches(stated),
            "`up --help`: the default of {option} is stale: {stated}, not {expected:?}"
        );
    }
}
