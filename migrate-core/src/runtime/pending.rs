//! What `up` applies and what `down` reverts, decided from the set and the history rows
//! alone: pure functions, unit-tested without a database (step 3 of the runtime protocol,
//! see [`crate::runtime`]). The migrator only reads the rows and turns a [`Refusal`] into
//! its error.

use std::collections::BTreeSet;

use super::report::{HeldBack, HeldBackReason, UpTo};
use super::state::history::HistoryRow;
use crate::migration::{Migration, Migrations, Phase, Section};

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
    /// The database applied some of the versions a squash replaces, not all.
    PartlySquashed { squash: u64, missing: Vec<u64> },
}

/// The history as the set sees it: a squash whose replaced versions were all applied (by
/// the files it replaced) counts as applied, with its own checksum, in place of their rows;
/// none applied leaves it pending; some is refused, since the squash would create again
/// what those did.
///
/// Replaced versions older than the oldest one the history has count as applied: an earlier
/// squash stood for them, and a database that ran that squash recorded only its version (a
/// squash of a set holding an older squash lists the older one's versions too).
pub(crate) fn with_squashes_applied(
    migrations: &Migrations,
    mut rows: Vec<HistoryRow>,
) -> Result<Vec<HistoryRow>, Refusal> {
    for squash in migrations.iter().filter(|m| !m.replaces.is_empty()) {
        let own = squash.checksum.to_hex();
        if rows
            .iter()
            .any(|r| r.version == squash.version && r.checksum == own)
        {
            continue; // applied as the squash itself
        }
        let replaced: Vec<&HistoryRow> = rows
            .iter()
            .filter(|r| squash.replaces.contains(&r.version))
            .collect();
        // Only a row of the squash's own version, with another checksum: the squash ran and
        // its file changed since, which the drift check reports.
        let Some(oldest) = replaced
            .iter()
            .map(|r| r.version)
            .filter(|v| *v != squash.version)
            .min()
        else {
            continue; // none applied: the squash is pending
        };
        let missing: Vec<u64> = squash
            .replaces
            .iter()
            .copied()
            .filter(|v| *v > oldest && !replaced.iter().any(|r| r.version == *v))
            .collect();
        if !missing.is_empty() {
            return Err(Refusal::PartlySquashed {
                squash: squash.version,
                missing,
            });
        }
        let mut merged = replaced
            .iter()
            .max_by_key(|r| r.executed_at)
            .map(|r| (*r).clone())
            .unwrap_or_else(|| unreachable!("`oldest` came from a replaced row"));
        merged.duration_ms = replaced.iter().map(|r| r.duration_ms).sum();
        merged.version = squash.version;
        merged.name = squash.name.to_string();
        merged.checksum = own;
        rows.retain(|r| !squash.replaces.contains(&r.version));
        rows.push(merged);
    }
    rows.sort_by_key(|r| r.version);
    Ok(rows)
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
            UpTo::All | UpTo::LeadingExpands => true,
            UpTo::Version(v) => m.version <= v,
        })
        .collect();
    let pending = match target {
        UpTo::LeadingExpands => leading_expands(pending).0,
        UpTo::All | UpTo::Version(_) => pending,
    };
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

/// Splits the pending migrations, ascending, into the expands before the first backfill or
/// contract, and the rest with the reason each is held back ([`UpTo::LeadingExpands`]).
pub(crate) fn leading_expands(pending: Vec<&Migration>) -> (Vec<&Migration>, Vec<HeldBack>) {
    let first_other = pending
        .iter()
        .position(|m| m.phase != Phase::Expand)
        .unwrap_or(pending.len());
    let mut apply = pending;
    let rest = apply.split_off(first_other);
    let blocked_by = rest.first().map(|m| m.version);
    let held = rest
        .iter()
        .map(|m| HeldBack {
            version: m.version,
            file_name: m.file_name.to_string(),
            phase: m.phase,
            reason: match (m.phase, blocked_by) {
                (_, Some(first)) if first != m.version => {
                    HeldBackReason::AfterHeldBack { blocked_by: first }
                }
                (Phase::Backfill, _) => HeldBackReason::Backfill,
                _ => HeldBackReason::Contract,
            },
        })
        .collect();
    (apply, held)
}

/// What `up(target)` leaves pending on purpose: with [`UpTo::LeadingExpands`], every
/// unapplied migration from the first backfill or contract on; nothing for other targets.
pub(crate) fn held_back(
    migrations: &Migrations,
    rows: &[HistoryRow],
    target: UpTo,
) -> Vec<HeldBack> {
    if target != UpTo::LeadingExpands {
        return Vec::new();
    }
    let applied: BTreeSet<u64> = rows.iter().map(|r| r.version).collect();
    let unapplied = migrations
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .collect();
    leading_expands(unapplied).1
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
            file_name: None,
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
            compare_line: None,
            requires_compare: false,
            replaces: Default::default(),
            analysis: None,
        }
    }

    fn set(versions: &[(u64, bool)]) -> Migrations {
        Migrations::from_sorted(
            "/nonexistent",
            versions.iter().map(|&(v, d)| migration(v, d)).collect(),
        )
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

    fn squash(version: u64, replaces: &[u64]) -> Migration {
        Migration {
            name: Cow::Borrowed("squashed"),
            checksum: Checksum::of_file(format!("squash {version}").as_bytes()),
            replaces: Cow::Owned(replaces.to_vec()),
            ..migration(version, false)
        }
    }

    fn squashed_set(squash: Migration, later: &[u64]) -> Migrations {
        let mut migrations = vec![squash];
        migrations.extend(later.iter().map(|&v| migration(v, true)));
        Migrations::from_sorted("/nonexistent", migrations)
    }

    #[test]
    fn a_history_of_every_replaced_version_reads_as_the_squash_applied() {
        let old = set(&[(1, true), (2, true), (3, true), (4, true)]);
        let rows: Vec<HistoryRow> = old.iter().map(row).collect();
        let new = squashed_set(squash(3, &[1, 2, 3]), &[4]);
        let seen = with_squashes_applied(&new, rows).unwrap();
        assert_eq!(seen.iter().map(|r| r.version).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(seen[0].checksum, new.get(3).unwrap().checksum.to_hex());
        assert_eq!(seen[0].duration_ms, 3);
        assert!(
            to_apply(&new, &seen, UpTo::All, Options::default())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_fresh_history_leaves_the_squash_pending_and_its_own_row_counts() {
        let new = squashed_set(squash(3, &[1, 2, 3]), &[4]);
        let fresh = with_squashes_applied(&new, Vec::new()).unwrap();
        assert_eq!(
            versions(&to_apply(&new, &fresh, UpTo::All, Options::default()).unwrap()),
            [3, 4]
        );
        let own = vec![row(new.get(3).unwrap())];
        assert_eq!(with_squashes_applied(&new, own.clone()).unwrap(), own);
    }

    #[test]
    fn a_history_of_some_replaced_versions_is_refused_naming_the_missing() {
        let old = set(&[(1, true), (2, true), (3, true)]);
        let rows = vec![row(old.get(1).unwrap())];
        let new = squashed_set(squash(3, &[1, 2, 3]), &[]);
        assert_eq!(
            with_squashes_applied(&new, rows).unwrap_err(),
            Refusal::PartlySquashed {
                squash: 3,
                missing: vec![2, 3]
            }
        );
    }

    #[test]
    fn an_edited_squash_that_ran_itself_is_drift() {
        let new = squashed_set(squash(3, &[1, 2, 3]), &[]);
        let mut ran = row(new.get(3).unwrap());
        ran.checksum = "0".repeat(64);
        let seen = with_squashes_applied(&new, vec![ran.clone()]).unwrap();
        assert_eq!(seen, [ran]);
        assert!(matches!(
            to_apply(&new, &seen, UpTo::All, Options::default()),
            Err(Refusal::Drifted { version: 3, .. })
        ));
    }

    #[test]
    fn a_squash_of_a_squash_accepts_either_history() {
        let first = squash(3, &[1, 2, 3]);
        let old = set(&[(1, true), (2, true), (3, true), (4, true), (5, true)]);
        let second = squashed_set(squash(5, &[1, 2, 3, 4, 5]), &[]);
        // Applied the original files.
        let originals: Vec<HistoryRow> = old.iter().map(row).collect();
        let seen = with_squashes_applied(&second, originals).unwrap();
        assert_eq!(seen.iter().map(|r| r.version).collect::<Vec<_>>(), [5]);
        // Applied the first squash, then 4 and 5.
        let after_first = vec![
            row(&first),
            row(old.get(4).unwrap()),
            row(old.get(5).unwrap()),
        ];
        let seen = with_squashes_applied(&second, after_first).unwrap();
        assert_eq!(seen.iter().map(|r| r.version).collect::<Vec<_>>(), [5]);
        // Applied the first squash only: 4 and 5 are missing, not 1 and 2.
        assert_eq!(
            with_squashes_applied(&second, vec![row(&first)]).unwrap_err(),
            Refusal::PartlySquashed {
                squash: 5,
                missing: vec![4, 5]
            }
        );
    }

    #[test]
    fn leading_expands_stop_at_the_first_backfill_or_contract() {
        let phases = [
            (1, Phase::Expand),
            (2, Phase::Expand),
            (3, Phase::Backfill),
            (4, Phase::Expand),
            (5, Phase::Contract),
        ];
        let with_phases = |phases: &[(u64, Phase)]| {
            let list = phases.iter().map(|&(version, phase)| Migration {
                phase,
                ..migration(version, true)
            });
            Migrations::from_sorted("/nonexistent", list.collect())
        };
        let set = with_phases(&phases);
        let rows = [row(set.get(1).unwrap())];
        let startup = to_apply(&set, &rows, UpTo::LeadingExpands, Options::default()).unwrap();
        assert_eq!(versions(&startup), [2]);
        let pending = to_apply(&set, &rows, UpTo::All, Options::default()).unwrap();
        let (apply, held) = leading_expands(pending);
        assert_eq!(versions(&apply), [2]);
        let reasons: Vec<(u64, HeldBackReason)> =
            held.iter().map(|h| (h.version, h.reason)).collect();
        assert_eq!(
            reasons,
            [
                (3, HeldBackReason::Backfill),
                (4, HeldBackReason::AfterHeldBack { blocked_by: 3 }),
                (5, HeldBackReason::AfterHeldBack { blocked_by: 3 }),
            ]
        );

        // A contract first is held back as a contract; nothing pending holds nothing back.
        let set = with_phases(&[(1, Phase::Contract), (2, Phase::Expand)]);
        let (apply, held) = leading_expands(set.iter().collect());
        assert!(apply.is_empty());
        assert_eq!(held[0].reason, HeldBackReason::Contract);
        assert_eq!(
            held[1].reason,
            HeldBackReason::AfterHeldBack { blocked_by: 1 }
        );
        let (apply, held) = leading_expands(Vec::new());
        assert!(apply.is_empty() && held.is_empty());
    }
}
