//! How the linter read each statement of a set: parsed by sqlparser, skipped (not handed to
//! it: no rule reads its tree), classified from its keywords, or flagged `unparseable`, and
//! the statements where an action may have gone unlinted ("hidden actions"). `migrate lint --format json` reports it as `statements`, so
//! a run on a real corpus shows what the rules did not see.

use crate::classify::Fallback;
use crate::sql::{ActionKind, ReadStatement};

/// How the statements of a set were read.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Coverage {
    /// Every statement, up and down parts.
    pub total: usize,
    /// Parsed by sqlparser: every rule judged the syntax tree.
    pub parsed: usize,
    /// Not handed to sqlparser, because no rule reads their tree: `CREATE [MATERIALIZED]
    /// VIEW`, read from its leading keywords and its tokens (its query is not parsed).
    pub skipped: usize,
    /// Not parsed whole, but recognised: from its keywords as a kind the rules judge from
    /// those (`DROP INDEX CONCURRENTLY`, `REINDEX`, a `CREATE TABLE` form sqlparser lacks,
    /// ...), or an `ALTER TABLE` read action by action, each parsed or classified.
    pub classified: usize,
    /// Not parsed and not recognised, or a `DO` block: reported by the `unparseable` rule
    /// (or allowed after review).
    pub flagged: usize,
    /// Statements with hidden actions: not parsed whole, and neither recognised (each action
    /// of an `ALTER TABLE` parsed or classified) nor reported by the `unparseable` rule, which
    /// happens when that rule is off.
    pub hidden: Vec<Place>,
}

/// Where a statement starts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Place {
    /// The file as shown in diagnostics.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
}

/// How one statement was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reading {
    Parsed,
    Skipped,
    Classified,
    Flagged,
    Hidden,
}

/// How a statement was read: `read` what sqlparser made of it (`None`: parsed, and its tree
/// dropped once the file's rules judged it), `fallback` its keyword classification, `flagged`
/// whether the `unparseable` rule reported it (before allows).
pub(crate) fn reading(
    read: Option<&ReadStatement>,
    fallback: Option<&Fallback>,
    flagged: bool,
) -> Reading {
    let read = match read {
        None | Some(ReadStatement::Parsed(_)) => return Reading::Parsed,
        Some(ReadStatement::Skipped(_)) => return Reading::Skipped,
        Some(read) => read,
    };
    let recognised = match read.split_alter() {
        // Read action by action: each action parsed on its own or classified; an unknown
        // one is the `unparseable` rule's.
        Some(split) => split
            .unparsed
            .iter()
            .all(|action| action.kind != ActionKind::Unknown),
        None => !matches!(fallback, None | Some(Fallback::DoBlock)),
    };
    match (recognised, flagged) {
        (true, _) => Reading::Classified,
        (false, true) => Reading::Flagged,
        (false, false) => Reading::Hidden,
    }
}

impl Coverage {
    /// Counts one statement read as `reading`, starting at `place`.
    pub(crate) fn add(&mut self, reading: Reading, place: impl FnOnce() -> Place) {
        self.total += 1;
        match reading {
            Reading::Parsed => self.parsed += 1,
            Reading::Skipped => self.skipped += 1,
            Reading::Classified => self.classified += 1,
            Reading::Flagged => self.flagged += 1,
            Reading::Hidden => self.hidden.push(place()),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::{Config, Level, lint_set, rule};
    use crate::source::{SourceFile, load_files};

    fn coverage_of(sql: &str, config: &Config) -> super::Coverage {
        let source = SourceFile {
            display_path: "migrations/0002_x.sql".to_owned(),
            file_name: "0002_x.sql".to_owned(),
            bytes: sql.as_bytes().into(),
        };
        let set = load_files(&[source], &|id| rule(id).is_some());
        lint_set(&set.files, config).coverage
    }

    #[test]
    fn statements_are_counted_by_how_they_were_read() {
        let sql = "CREATE TABLE IF NOT EXISTS t (id bigint);\n\
DROP INDEX CONCURRENTLY IF EXISTS idx_a;\n\
REINDEX INDEX CONCURRENTLY idx_a;\n\
ALTER TABLE t ALTER CONSTRAINT t_fk DEFERRABLE;\n\
FROBNICATE t;\n";
        // The ALTER is read action by action: its one action is classified.
        let coverage = coverage_of(sql, &Config::default());
        // sqlparser 0.64 parses neither DROP INDEX CONCURRENTLY nor REINDEX.
        assert_eq!(
            (
                coverage.total,
                coverage.parsed,
                coverage.classified,
                coverage.flagged
            ),
            (5, 1, 3, 1)
        );
        assert!(coverage.hidden.is_empty(), "{:?}", coverage.hidden);
    }

    #[test]
    fn views_are_skipped_and_counted_so() {
        let sql = "CREATE VIEW v AS SELECT a FROM t;
CREATE OR REPLACE VIEW app.\"V\" (a) AS SELECT a FROM t;
CREATE MATERIALIZED VIEW IF NOT EXISTS mv AS SELECT 1 AS x WITH NO DATA;
CREATE VIEW broken AS SELECT FROM WHERE;
SELECT 1;
";
        let coverage = coverage_of(sql, &Config::default());
        assert_eq!(
            (
                coverage.total,
                coverage.parsed,
                coverage.skipped,
                coverage.flagged
            ),
            (5, 1, 4, 0)
        );
    }

    #[test]
    fn an_unflagged_unparseable_statement_is_hidden() {
        let unparseable_off = Config::default().with_level("unparseable", Level::Off);
        let coverage = coverage_of("SELECT 1;\nFROBNICATE t;\n", &unparseable_off);
        let lines: Vec<u32> = coverage.hidden.iter().map(|p| p.line).collect();
        assert_eq!(lines, [2]);
    }

    #[test]
    fn an_alter_read_by_action_is_classified_unless_an_action_is_unknown() {
        let sql = "ALTER TABLE t ALTER COLUMN c SET NOT NULL, ALTER CONSTRAINT fk NOT DEFERRABLE;\n\
ALTER TABLE t ALTER COLUMN c SET NOT NULL, SET ACCESS METHOD heap2;\n";
        let coverage = coverage_of(sql, &Config::default());
        assert_eq!((coverage.classified, coverage.flagged), (1, 1));
        let unparseable_off = Config::default().with_level("unparseable", Level::Off);
        let lines: Vec<u32> = coverage_of(sql, &unparseable_off)
            .hidden
            .iter()
            .map(|p| p.line)
            .collect();
        assert_eq!(lines, [2]);
    }
}
