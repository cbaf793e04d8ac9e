//! What `up` applies and what `down` reverts, decided from the set and the history rows
//! alone: pure functions, unit-tested without a database (protocol step 3 in
//! docs/design.md). The migrator only reads the rows and turns a [`Refusal`] into its error.

use std::collections::BTreeSet;

use super::report::UpTo;
use super::state::history::HistoryRow;
use crate::migration::{Migration, Migrations, Section};

/// Why the history and the set cannot go on together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Applied versions the set does not contain.
    UnknownApplied(Vec<u64>),
    /// An applied migration's file changed since.
    Drifted {
        version: u64,
        file: String,
        expected: String,
        found: String,
    },
    /// Pending versions older than the newest applied one.
    OutOfOrder {
        pending: Vec<u64>,
        newest_applied: u64,
    },
    /// Migrations to revert without a down part.
    NoDownPart(Vec<u64>),
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Options {
    pub allow_out_of_order: bool,
    pub ignore_missing: bool,
}

fn check_checksum(m: &Migration, row: &HistoryRow) -> Result<(), Refusal> {
    let found = m.checksum.to_hex();
    if row.checksum != found {
        return Err(Refusal::Drifted {
            version: m.version,
            file: m.file_name.to_string(),
            expected: row.checksum.clone(),
            found,
        });
    }
    Ok(())
}

/// The migrations `up(target)` applies, ascending, after refusing unknown applied versions
/// (unless ignored), drift, and pending versions older than the newest applied (unless
/// allowed).
pub(crate) fn to_apply<'m>(
    migrations: &'m Migrations,
    rows: &[HistoryRow],
    target: UpTo,
    options: Options,
) -> Result<Vec<&'m Migration>, Refusal> {
    let unknown: Vec<u64> = rows
        .iter()
        .filter(|r| migrations.get(r.version).is_none())
        .map(|r| r.version)
        .collect();
    if !unknown.is_empty() && !options.ignore_missing {
        return Err(Refusal::UnknownApplied(unknown));
    }
    for row in rows {
        if let Some(m) = migrations.get(row.version) {
            check_checksum(m, row)?;
        }
    }
    let applied: BTreeSet<u64> = rows.iter().map(|r| r.version).collect();
    let pending: Vec<&'m Migration> = migrations
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .filter(|m| match target {
            UpTo::All => true,
            UpTo::Version(v) => m.version <= v,
        })
        .collect();
    if let Some(&newest_applied) = applied.last() {
        let older: Vec<u64> = pending
            .iter()
            .filter(|m| m.version < newest_applied)
            .map(|m| m.version)
            .collect();
        if !older.is_empty() && !options.allow_out_of_order {
            return Err(Refusal::OutOfOrder {
                pending: older,
                newest_applied,
            });
        }
    }
    Ok(pending)
}

/// The migrations `down(to)` reverts, newest first, with their down parts. Refuses before
/// anything is reverted when one of them is unknown to the set, drifted or has no down part.
pub(crate) fn to_revert<'m>(
    migrations: &'m Migrations,
    rows: &[HistoryRow],
    to: u64,
) -> Result<Vec<(&'m Migration, &'m Section)>, Refusal> {
    let mut newest_first: Vec<&HistoryRow> = rows.iter().filter(|r| r.version > to).collect();
    newest_first.sort_by_key(|r| std::cmp::Reverse(r.version));
    let unknown: Vec<u64> = newest_first
        .iter()
        .filter(|r| migrations.get(r.version).is_none())
        .map(|r| r.version)
        .collect();
    if !unknown.is_empty() {
        return Err(Refusal::UnknownApplied(unknown));
    }
    let mut plan = Vec::new();
    let mut without_down = Vec::new();
    for row in newest_first {
        let Some(m) = migrations.get(row.version) else {
            continue;
        };
        check_checksum(m, row)?;
        match &m.down {
            Some(down) => plan.push((m, down)),
            None => without_down.push(m.version),
        }
    }
    if !without_down.is_empty() {
        without_down.sort_unstable();
        return Err(Refusal::NoDownPart(without_down));
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::SystemTime;

    use super::*;
    use crate::checksum::Checksum;
    use crate::migration::{Phase, Statement, TransactionMode};

    fn migration(version: u64, down: bool) -> Migration {
        let section = |sql: &'static str| Section {
            statements: Cow::Owned(vec![Statement {
                sql: Cow::Borrowed(sql),
                line: 1,
                column: 1,
                non_transactional: false,
            }]),
            mode: TransactionMode::Transactional,
        };
        Migration {
            version,
            name: Cow::Owned(format!("m{version}")),
            phase: Phase::Expand,
            file_name: Cow::Owned(format!("{version:04}_m{version}.sql")),
            checksum: Checksum::of_file(format!("v{version}").as_bytes()),
            up: section("SELECT 1"),
            down: down.then(|| section("SELECT 2")),
            requires: None,
            backfill: None,
            compare: None,
            requires_compare: false,
        }
    }

    fn set(versions: &[(u64, bool)]) -> Migrations {
        Migrations {
            dir: Cow::Borrowed("/nonexistent"),
            migrations: Cow::Owned(versions.iter().map(|&(v, d)| migration(v, d)).collect()),
        }
    }

    fn row(m: &Migration) -> HistoryRow {
        HistoryRow {
            version: m.version,
            name: m.name.to_string(),
            phase: "expand".into(),
            checksum: m.checksum.to_hex(),
            executed_at: SystemTime::UNIX_EPOCH,
            duration_ms: 1,
            executed_by: "test".into(),
            baselined: false,
        }
    }

    fn versions(list: &[&Migration]) -> Vec<u64> {
        list.iter().map(|m| m.version).collect()
    }

    #[test]
    fn pending_are_the_unapplied_up_to_the_target() {
        let set = set(&[(1, true), (2, true), (3, true)]);
        let rows = [row(set.get(1).unwrap())];
        let all = to_apply(&set, &rows, UpTo::All, Options::default()).unwrap();
        assert_eq!(versions(&all), [2, 3]);
        let to_two = to_apply(&set, &rows, UpTo::Version(2), Options::default()).unwrap();
        assert_eq!(versions(&to_two), [2]);
        let none = to_apply(&set, &rows, UpTo::Version(1), Options::default()).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn unknown_applied_versions_are_refused_unless_ignored() {
        let set = set(&[(1, true), (3, true)]);
        let mut rows = vec![row(set.get(1).unwrap())];
        rows.push(HistoryRow {
            version: 2,
            ..row(set.get(1).unwrap())
        });
        assert_eq!(
            to_apply(&set, &rows, UpTo::All, Options::default()).unwrap_err(),
            Refusal::UnknownApplied(vec![2])
        );
        let ignoring = Options {
            ignore_missing: true,
            allow_out_of_order: false,
        };
        assert_eq!(
            versions(&to_apply(&set, &rows, UpTo::All, ignoring).unwrap()),
            [3]
        );
    }

    #[test]
    fn drift_is_refused_naming_both_checksums() {
        let set = set(&[(1, true)]);
        let mut edited = row(set.get(1).unwrap());
        edited.checksum = "0".repeat(64);
        match to_apply(&set, &[edited], UpTo::All, Options::default()).unwrap_err() {
            Refusal::Drifted {
                version,
                expected,
                found,
                ..
            } => {
                assert_eq!(version, 1);
                assert_eq!(expected, "0".repeat(64));
                assert_eq!(found, set.get(1).unwrap().checksum.to_hex());
            }
            other => panic!("expected Drifted, got {other:?}"),
        }
    }

    #[test]
    fn older_pending_versions_are_refused_unless_allowed() {
        let set = set(&[(1, true), (2, true), (3, true)]);
        let rows = [row(set.get(1).unwrap()), row(set.get(3).unwrap())];
        assert_eq!(
            to_apply(&set, &rows, UpTo::All, Options::default()).unwrap_err(),
            Refusal::OutOfOrder {
                pending: vec![2],
                newest_applied: 3
            }
        );
        let allowing = Options {
            allow_out_of_order: true,
            ignore_missing: false,
        };
        assert_eq!(
            versions(&to_apply(&set, &rows, UpTo::All, allowing).unwrap()),
            [2]
        );
    }

    #[test]
    fn down_reverts_newest_first_and_refuses_before_anything() {
        let set = set(&[(1, true), (2, true), (3, true)]);
        let rows: Vec<HistoryRow> = set.iter().map(row).collect();
        let plan = to_revert(&set, &rows, 1).unwrap();
        assert_eq!(
            plan.iter().map(|(m, _)| m.version).collect::<Vec<_>>(),
            [3, 2]
        );
        assert!(to_revert(&set, &rows, 3).unwrap().is_empty());

        let without = self::set(&[(1, true), (2, false), (3, false)]);
        let rows: Vec<HistoryRow> = without.iter().map(row).collect();
        assert_eq!(
            to_revert(&without, &rows, 0).unwrap_err(),
            Refusal::NoDownPart(vec![2, 3])
        );
        let partial = self::set(&[(1, true)]);
        let mut rows = vec![row(partial.get(1).unwrap())];
        rows.push(HistoryRow {
            version: 9,
            ..row(partial.get(1).unwrap())
        });
        assert_eq!(
            to_revert(&partial, &rows, 0).unwrap_err(),
            Refusal::UnknownApplied(vec![9])
        );
    }
}
