//! The migration model: what a migration file is once read, split and checked.
//!
//! Text is a `Cow<'static, str>` and lists are `Cow<'static, [T]>`: a set `migrations!()`
//! embedded borrows its statements from the embedded file texts ([`packed`]), while a set
//! read from a folder at run time owns its data. Both come from the same loader
//! ([`crate::check_dir`]).

pub mod packed;

use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;

use packed::PackError;

use crate::checksum::Checksum;

/// The phase of an expand/contract change, taken from the file name
/// (`0002_email.expand.sql`); `expand` when the name has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Phase {
    /// Adds columns, tables, indexes. Old application code keeps working.
    #[default]
    Expand,
    /// Moves existing rows in keyed batches.
    Backfill,
    /// Removes what the expand made obsolete, once the gates pass.
    Contract,
}

impl Phase {
    /// Every phase, in lifecycle order.
    pub const ALL: [Phase; 3] = [Phase::Expand, Phase::Backfill, Phase::Contract];

    /// The name used in file names and the history table: `expand`, `backfill`, `contract`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Expand => "expand",
            Phase::Backfill => "backfill",
            Phase::Contract => "contract",
        }
    }

    /// The phase [`Phase::as_str`] names (exact, lowercase), else `None`.
    pub fn parse(text: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|phase| phase.as_str() == text)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the runtime executes a section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransactionMode {
    /// BEGIN, every statement, the history row, COMMIT: all or nothing.
    Transactional,
    /// Each statement on its own, then the history row. Needed by statements PostgreSQL
    /// refuses inside a transaction block (CREATE INDEX CONCURRENTLY, VACUUM, ...), or forced
    /// with `-- migrate:no-transaction`.
    Autocommit,
}

impl TransactionMode {
    /// `transaction` or `autocommit`, as `migrate plan` and `migrate status` show it.
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionMode::Transactional => "transaction",
            TransactionMode::Autocommit => "autocommit",
        }
    }
}

/// One SQL statement of a migration, exactly as written, with its position in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The statement text without the terminating `;`, comments before it excluded.
    pub sql: Cow<'static, str>,
    /// 1-based line of the statement's first token in the original file.
    pub line: u32,
    /// 1-based column (in characters) of the statement's first token.
    pub column: u32,
    /// PostgreSQL refuses to run this statement inside a transaction block.
    pub non_transactional: bool,
}

/// The up or down part of a migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The statements in file order; empty for an explicit empty down part.
    pub statements: Cow<'static, [Statement]>,
    /// How the runtime runs them, detected from the statements and `-- migrate:no-transaction`.
    pub mode: TransactionMode,
    /// The part's own file when it is not the migration's `file_name`: the down file of a
    /// layout that keeps the down part apart (diesel's `down.sql`, sqlx's `.down.sql`, ...).
    /// The statements' lines are that file's.
    pub file_name: Option<Cow<'static, str>>,
}

/// Parameters of `-- migrate:backfill table=<t> key=<col> [target=<ms> | batch=<n> delay=<ms>]`.
///
/// The names are the exact names PostgreSQL stores: the directive's names follow SQL's rules,
/// like names in statements (`table=Orders` is `orders`, unquoted names are folded to lower
/// case; `table="Orders"` is `Orders`), and the loader keeps the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillSpec {
    /// The schema of `table=<schema>.<table>`; `None` when the directive names the table
    /// alone (it is then found through `search_path`).
    pub schema: Option<Cow<'static, str>>,
    /// The table every `UPDATE` of the file names, as PostgreSQL stores its name.
    pub table: Cow<'static, str>,
    /// The column the runtime pages by (`key=`); batches walk it in ascending order.
    pub key: Cow<'static, str>,
    /// How its batches are sized and paced.
    pub pace: BackfillPace,
}

/// How a backfill's batches are sized and paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackfillPace {
    /// The runtime's controller sizes each batch to take about `target_ms` (`target=`; `None`
    /// takes the runner's configured target), from the rows/s it measures, and backs off or
    /// pauses when the application or a replica suffers.
    Adaptive {
        /// `target=<ms>`: the batch duration aimed at.
        target_ms: Option<u32>,
    },
    /// `batch=` and/or `delay=`: an explicit override, batches of `batch_size` keys each its
    /// own short transaction, `delay_ms` between them, whatever the server's load.
    Fixed {
        /// Keys per batch (`batch=`, 1000 when only `delay=` is written).
        batch_size: u32,
        /// Pause between batches in milliseconds (`delay=`, 0 when only `batch=` is written).
        delay_ms: u32,
    },
}

impl BackfillSpec {
    /// `batch=` when only `delay=` is written.
    pub const DEFAULT_BATCH_SIZE: u32 = 1000;
    /// `delay=` when only `batch=` is written: no pause.
    pub const DEFAULT_DELAY_MS: u32 = 0;

    /// The table as a statement would name it, quoted only where needed (`app.orders`,
    /// `"Orders"`): for messages.
    pub fn table_name(&self) -> String {
        match &self.schema {
            Some(schema) => format!(
                "{}.{}",
                display_identifier(schema),
                display_identifier(&self.table)
            ),
            None => display_identifier(&self.table),
        }
    }
}

/// A table as PostgreSQL stores its name: the schema (when given) and the table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableRef {
    /// `None`: found through `search_path`.
    pub schema: Option<String>,
    /// The table.
    pub table: String,
}

impl TableRef {
    /// `"schema"."table"`, each part quoted with embedded `"` doubled: safe to splice.
    pub fn quoted(&self) -> String {
        let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
        match &self.schema {
            Some(schema) => format!("{}.{}", quote(schema), quote(&self.table)),
            None => quote(&self.table),
        }
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(schema) = &self.schema {
            write!(f, "{}.", display_identifier(schema))?;
        }
        f.write_str(&display_identifier(&self.table))
    }
}

/// `-- migrate:compare source=<table> target=<table> key=<column> columns=<c>[,<c>...]
/// [map=<SQL expressions>]`: what `migrate verify --compare` compares and `migrate reconcile`
/// re-derives. For each key, the source row's `map` (default: the same `columns`, read
/// from the source) must equal the target row's `columns`, compared as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompareSpec {
    /// Where the values come from (the legacy side).
    pub source: TableRef,
    /// Where they must be (the modern side); may be the source table itself.
    pub target: TableRef,
    /// The key column both tables share; unique in each, ordered by a btree.
    pub key: String,
    /// The target's columns, in order.
    pub columns: Vec<String>,
    /// SQL expressions over a source row, one per column, e.g. `lower(email)`; `None` reads
    /// the same column names from the source.
    pub map: Option<String>,
}

impl CompareSpec {
    /// The two sides are columns of one table.
    pub fn same_table(&self) -> bool {
        self.source == self.target
    }

    /// The source's select list: `map`, or the quoted column names.
    pub fn source_values(&self) -> String {
        match &self.map {
            Some(map) => map.clone(),
            None => self.quoted_columns(),
        }
    }

    /// The target columns, quoted and comma-separated.
    pub fn quoted_columns(&self) -> String {
        self.columns
            .iter()
            .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The key column, quoted.
    pub fn quoted_key(&self) -> String {
        format!("\"{}\"", self.key.replace('"', "\"\""))
    }
}

/// One statement of a backfill file as its keyed batches need it, read from the statement
/// when the set was checked; the runtime adds the key column's type, from the catalog, and
/// builds the batch SQL from these pieces and the directive (`batch_plan`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchSource {
    /// `UPDATE <table> SET <assignments> WHERE <pending>`.
    Update {
        /// The `SET` list, as SQL.
        assignments: Cow<'static, str>,
        /// The `WHERE` condition: the rows not done yet.
        pending: Cow<'static, str>,
    },
    /// `DELETE FROM <table> WHERE <pending>`: a purge.
    Delete {
        /// The `WHERE` condition: the rows still to delete.
        pending: Cow<'static, str>,
    },
    /// The statement cannot run in keyed batches, and why. The build refuses such a file
    /// (`bad-backfill`, `unbounded-update`); only a set made otherwise meets it at run time.
    Refused(Cow<'static, str>),
}

/// What a contract statement does to an object a query may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// `DROP TABLE`/`VIEW`/`SEQUENCE`/`FUNCTION`/`TYPE`, `ALTER TABLE ... DROP COLUMN`.
    Dropped,
    /// `ALTER TABLE ... RENAME [COLUMN]`: the old name is gone.
    Renamed {
        /// The new name.
        to: Cow<'static, str>,
    },
    /// `ALTER TABLE ... ALTER COLUMN ... TYPE`: queries built for the old type may fail.
    Retyped,
    /// A view that depends on a removed object (from the catalog's `pg_depend`): `CASCADE`
    /// drops it, and without `CASCADE` the contract fails.
    Dependent {
        /// The removed object it depends on, e.g. `column users.legacy`.
        on: Cow<'static, str>,
    },
}

/// One object a contract removes, names folded like PostgreSQL folds them (schemas ignored,
/// as the linter does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedObject {
    /// `table`, `view`, `sequence`, `function`, `type` or `column`.
    pub kind: &'static str,
    /// The relation (for a column, its table), function or type.
    pub name: Cow<'static, str>,
    /// The column, for `kind == "column"`.
    pub column: Option<Cow<'static, str>>,
    /// What happens to it.
    pub removal: Removal,
    /// Line of the statement in the migration file.
    pub line: u32,
}

impl RemovedObject {
    /// `column users.legacy` or `table carts`: the object, without what happens to it.
    pub fn object(&self) -> String {
        match &self.column {
            Some(column) => format!("column {}.{column}", self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}

impl fmt::Display for RemovedObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.object())?;
        match &self.removal {
            Removal::Dropped => write!(f, " (dropped)"),
            Removal::Renamed { to } => write!(f, " (renamed to {to})"),
            Removal::Retyped => write!(f, " (type changed)"),
            Removal::Dependent { on } => write!(f, " (depends on {on})"),
        }
    }
}

/// What applying a migration needs to know of its statements beyond their text, read from
/// them when the set was checked (by `migrations!()` at build time, by `check_dir` at run
/// time): applying a set never parses SQL, so a service that only applies links no parser.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatementAnalysis {
    /// A backfill's up statements as its batches need them, one per statement, in order;
    /// empty for other phases.
    pub batches: Cow<'static, [BatchSource]>,
    /// What a contract's up part drops, renames or retypes, for the running-queries gate;
    /// empty for other phases.
    pub removes: Cow<'static, [RemovedObject]>,
    /// The tables the migration's statements (up and down) lock, each once, as the lock
    /// analysis writes them (unquoted parts folded to lower case): after a `lock_timeout` the
    /// runtime names the sessions holding locks on those the failing statement names (on all
    /// of them when it names none, e.g. a foreign key's parent). Per migration rather than
    /// per statement: a list on each of thousands of embedded statements doubled the time
    /// rustc takes over the macro's expansion.
    pub locked_tables: Cow<'static, [Cow<'static, str>]>,
}

/// An exact name as a statement would write it: `name` when writing it unquoted gives back
/// exactly `name`, else `"name"`. For messages.
pub fn display_identifier(name: &str) -> String {
    let plain = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if plain {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// One migration file, read, split and checksummed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// The number before the first `_`, compared as an integer.
    pub version: u64,
    /// `[a-z0-9_]+` between the version and the phase.
    pub name: Cow<'static, str>,
    /// From the file name; `expand` when it names none.
    pub phase: Phase,
    /// The file name, e.g. `0002_email_verified.expand.sql`.
    pub file_name: Cow<'static, str>,
    /// See [`crate::checksum`] for the exact definition.
    pub checksum: Checksum,
    /// The statements `up` applies (the whole file when it has no `-- migrate:down`).
    pub up: Section,
    /// `None` when the file has no `-- migrate:down` part: such a migration cannot be reverted.
    pub down: Option<Section>,
    /// `-- migrate:requires <version>`: the expand a contract finishes.
    pub requires: Option<u64>,
    /// `-- migrate:backfill ...` parameters of a backfill file.
    pub backfill: Option<BackfillSpec>,
    /// The arguments of `-- migrate:compare ...` in a backfill file, as written (checked when
    /// the file was read; [`crate::source::parse_compare`] turns them into a [`CompareSpec`]).
    /// Kept as text so an embedded set stays a plain literal.
    pub compare: Option<Cow<'static, str>>,
    /// The line of `-- migrate:compare` in the file, for messages about the compare.
    pub compare_line: Option<u32>,
    /// `-- migrate:requires-compare` in a contract file: every backfill between its expand and
    /// it that declares a compare must have passed it before the contract runs.
    pub requires_compare: bool,
    /// `-- migrate:replaces <v>,<v>,...` of a squash (`migrate squash`): the versions whose
    /// files it replaces, its own included, ascending; empty for every other migration. A
    /// database that applied all of them has applied the squash.
    pub replaces: Cow<'static, [u64]>,
    /// What the runtime needs from the statements, read when the set was checked; `None` for
    /// a set built by hand. The runtime then reads the statements itself where the `lint`
    /// feature is on; where it is off it refuses the set's backfills, and the running-queries
    /// gate (when configured) its contracts, saying why.
    pub analysis: Option<StatementAnalysis>,
}

impl Migration {
    /// `0002_email_verified` style label used in messages.
    pub fn label(&self) -> String {
        format!("{}_{}", self.version, self.name)
    }
}

/// A whole migration set, in ascending version order.
///
/// A set read at run time holds its migrations; a set `migrations!()` embedded holds them
/// packed ([`packed`]) and decodes them on first use, once.
#[derive(Clone)]
pub struct Migrations {
    /// The folder the set was read from (see [`Migrations::dir`]).
    pub(crate) dir: Cow<'static, str>,
    /// What `migrations!()` wrote; `None` for a set made at run time.
    packed: Option<Packed>,
    /// The migrations, sorted by version with no duplicates ([`Migrations::get`] relies on it):
    /// private, so that only the constructors below establish it. Decoded from `packed` on
    /// first use, set at construction otherwise.
    migrations: OnceLock<Result<Vec<Migration>, PackError>>,
}

/// An embedded set's texts (its files', then the pool) and its packed structure.
#[derive(Clone, Copy)]
struct Packed {
    texts: &'static [&'static str],
    blob: &'static [u8],
}

/// Why [`Migrations::new`] refused a list of migrations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MigrationsError {
    /// Two migrations carry the same version.
    #[error("version {version} appears twice ({first} and {second})")]
    DuplicateVersion {
        /// The version.
        version: u64,
        /// The first migration's file.
        first: String,
        /// The second one's.
        second: String,
    },
}

impl Migrations {
    /// A set built by hand: `migrations` in any order, sorted here; two with the same
    /// version are refused. `dir` names the folder files would be looked up in (it may not
    /// exist). Sets from `migrations!()` or `check_dir` need no call to this.
    pub fn new(
        dir: impl Into<String>,
        mut migrations: Vec<Migration>,
    ) -> Result<Migrations, MigrationsError> {
        migrations.sort_by_key(|m| m.version);
        if let Some(pair) = migrations
            .windows(2)
            .find(|pair| pair[0].version == pair[1].version)
        {
            return Err(MigrationsError::DuplicateVersion {
                version: pair[0].version,
                first: pair[0].file_name.to_string(),
                second: pair[1].file_name.to_string(),
            });
        }
        Ok(Migrations::from_sorted(dir.into(), migrations))
    }

    /// A set of migrations already in version order without duplicates (a checked folder's).
    pub(crate) fn from_sorted(
        dir: impl Into<Cow<'static, str>>,
        migrations: Vec<Migration>,
    ) -> Migrations {
        Migrations {
            dir: dir.into(),
            packed: None,
            migrations: OnceLock::from(Ok(migrations)),
        }
    }

    /// A set with no migration, for commands that need a set and no files (`dir` is empty).
    pub const fn empty() -> Migrations {
        Migrations {
            dir: Cow::Borrowed(""),
            packed: None,
            migrations: OnceLock::new(),
        }
    }

    /// What `migrations!()` expands to: `texts` are the files' texts (`include_str!`) then
    /// the pool, `blob` the rest ([`packed::pack`]). Not for hand-written code (use
    /// [`Migrations::new`]).
    #[doc(hidden)]
    pub const fn from_packed(
        dir: &'static str,
        texts: &'static [&'static str],
        blob: &'static [u8],
    ) -> Migrations {
        Migrations {
            dir: Cow::Borrowed(dir),
            packed: Some(Packed { texts, blob }),
            migrations: OnceLock::new(),
        }
    }

    /// The migrations in version order; for an embedded set, decoded now if this is the
    /// first use. `Err` only when the embedded data does not decode, which a set written by
    /// the `migrations!()` of the same version never does (another version's is a compile
    /// error): the runtime checks it before it does anything.
    pub fn try_as_slice(&self) -> Result<&[Migration], PackError> {
        let decoded = self.migrations.get_or_init(|| match self.packed {
            Some(Packed { texts, blob }) => packed::unpack(blob, texts),
            None => Ok(Vec::new()),
        });
        match decoded {
            Ok(migrations) => Ok(migrations),
            Err(error) => Err(error.clone()),
        }
    }

    /// The folder the set was read from. For an embedded set it is the absolute path at build
    /// time; the runtime uses it, when it still exists, to name files the binary lacks.
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// The migrations in version order, as a slice.
    ///
    /// # Panics
    ///
    /// When [`Migrations::try_as_slice`] fails: embedded data that does not decode, which
    /// `migrations!()` does not write. The runtime's `Migrator::new` reports it as an error
    /// instead.
    pub fn as_slice(&self) -> &[Migration] {
        match self.try_as_slice() {
            Ok(migrations) => migrations,
            Err(error) => panic!("{error}"),
        }
    }

    /// The migrations in version order.
    pub fn iter(&self) -> std::slice::Iter<'_, Migration> {
        self.as_slice().iter()
    }

    /// How many migrations the set holds.
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Whether the set has no migration at all.
    pub fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    /// The migration with this version, if the set has one.
    pub fn get(&self, version: u64) -> Option<&Migration> {
        let migrations = self.as_slice();
        migrations
            .binary_search_by_key(&version, |m| m.version)
            .ok()
            .map(|index| &migrations[index])
    }
}

impl Default for Migrations {
    fn default() -> Migrations {
        Migrations::empty()
    }
}

/// Sets are equal when they name the same folder and hold the same migrations, however they
/// are stored.
impl PartialEq for Migrations {
    fn eq(&self, other: &Migrations) -> bool {
        self.dir == other.dir && self.try_as_slice() == other.try_as_slice()
    }
}

impl Eq for Migrations {}

impl fmt::Debug for Migrations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Migrations")
            .field("dir", &self.dir)
            .field("migrations", &self.try_as_slice())
            .finish()
    }
}

impl<'a> IntoIterator for &'a Migrations {
    type Item = &'a Migration;
    type IntoIter = std::slice::Iter<'a, Migration>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn migration(version: u64, file: &'static str) -> Migration {
        Migration {
            version,
            name: Cow::Borrowed("m"),
            phase: Phase::Expand,
            file_name: Cow::Borrowed(file),
            checksum: Checksum::of_file(file.as_bytes()),
            up: Section {
                statements: Cow::Owned(Vec::new()),
                mode: TransactionMode::Transactional,
                file_name: None,
            },
            down: None,
            requires: None,
            backfill: None,
            compare: None,
            compare_line: None,
            requires_compare: false,
            replaces: Default::default(),
            analysis: None,
        }
    }

    #[test]
    fn a_set_built_by_hand_is_sorted_and_refuses_a_duplicate_version() {
        let set = Migrations::new(
            "/nowhere",
            vec![migration(3, "0003_c.sql"), migration(1, "0001_a.sql")],
        )
        .unwrap();
        assert_eq!(set.iter().map(|m| m.version).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(set.get(3).map(|m| m.file_name.as_ref()), Some("0003_c.sql"));
        assert_eq!(set.dir(), "/nowhere");
        let duplicate = Migrations::new(
            "/nowhere",
            vec![migration(2, "0002_a.sql"), migration(2, "0002_b.sql")],
        )
        .unwrap_err();
        assert_eq!(
            duplicate,
            MigrationsError::DuplicateVersion {
                version: 2,
                first: "0002_a.sql".into(),
                second: "0002_b.sql".into(),
            }
        );
    }
}
