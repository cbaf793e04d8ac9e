//! What a statement does to the tables it touches: the lock it takes on which table, and
//! whether it rewrites the table or scans it while holding that lock. `migrate plan` prints
//! this for every pending statement.
//!
//! The lock modes and their conflicts are PostgreSQL's table-level locks
//! (<https://www.postgresql.org/docs/current/explicit-locking.html#LOCKING-TABLES>); the lock of
//! each `ALTER TABLE` form comes from the notes of
//! <https://www.postgresql.org/docs/current/sql-altertable.html> ("ACCESS EXCLUSIVE unless
//! noted otherwise"; when several subcommands are given, the strongest lock any of them needs
//! is taken). No database is consulted: facts that depend on the data (a binary-coercible type
//! change, an existing validated `CHECK (c IS NOT NULL)`) are given as notes, never guessed.

mod declared;

use std::fmt;

use sqlparser::ast::{
    AlterColumnOperation, AlterTableOperation, ColumnOption, FromTable, ObjectName, ObjectType,
    Statement, TableConstraint, TableFactor, TableObject, TableWithJoins,
};

use crate::classify::{self, Fallback, Words};
use crate::splitter;
use crate::sql::{
    ActionKind, ReadStatement, Skipped, SplitAlter, read_statement, volatile_function,
};

pub use declared::DeclaredSchema;

/// PostgreSQL's table-level lock modes, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LockMode {
    /// Taken by `SELECT`; conflicts only with ACCESS EXCLUSIVE.
    AccessShare,
    /// Taken by `SELECT ... FOR UPDATE/SHARE`.
    RowShare,
    /// Taken by `INSERT`, `UPDATE`, `DELETE`: what the application's writes need.
    RowExclusive,
    /// Taken by `CREATE INDEX CONCURRENTLY`, `VALIDATE CONSTRAINT`, plain `VACUUM`: blocks
    /// schema changes and maintenance, not reads or writes.
    ShareUpdateExclusive,
    /// Taken by `CREATE INDEX` without `CONCURRENTLY`: blocks writes.
    Share,
    /// Taken by `ADD FOREIGN KEY` (on both tables) and `CREATE TRIGGER`: blocks writes.
    ShareRowExclusive,
    /// Taken by `REFRESH MATERIALIZED VIEW CONCURRENTLY`: blocks writes and locking reads.
    Exclusive,
    /// Taken by most `ALTER TABLE` forms, `DROP`, `TRUNCATE`, `VACUUM FULL`: blocks
    /// everything, plain reads included.
    AccessExclusive,
}

impl LockMode {
    /// Every mode, weakest first.
    pub const ALL: [LockMode; 8] = [
        LockMode::AccessShare,
        LockMode::RowShare,
        LockMode::RowExclusive,
        LockMode::ShareUpdateExclusive,
        LockMode::Share,
        LockMode::ShareRowExclusive,
        LockMode::Exclusive,
        LockMode::AccessExclusive,
    ];

    /// The name PostgreSQL uses (`LOCK TABLE t IN <name> MODE`).
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::AccessShare => "ACCESS SHARE",
            LockMode::RowShare => "ROW SHARE",
            LockMode::RowExclusive => "ROW EXCLUSIVE",
            LockMode::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            LockMode::Share => "SHARE",
            LockMode::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            LockMode::Exclusive => "EXCLUSIVE",
            LockMode::AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }

    /// Table 13.2 "Conflicting Lock Modes" of the PostgreSQL docs, spelled out: it is not a
    /// simple order (SHARE does not conflict with itself, ROW EXCLUSIVE neither).
    pub fn conflicts_with(self, other: LockMode) -> bool {
        use LockMode::*;
        let conflicts: &[LockMode] = match self {
            AccessShare => &[AccessExclusive],
            RowShare => &[Exclusive, AccessExclusive],
            RowExclusive => &[Share, ShareRowExclusive, Exclusive, AccessExclusive],
            ShareUpdateExclusive => &[
                ShareUpdateExclusive,
                Share,
                ShareRowExclusive,
                Exclusive,
                AccessExclusive,
            ],
            Share => &[
                RowExclusive,
                ShareUpdateExclusive,
                ShareRowExclusive,
                Exclusive,
                AccessExclusive,
            ],
            ShareRowExclusive => &[
                RowExclusive,
                ShareUpdateExclusive,
                Share,
                ShareRowExclusive,
                Exclusive,
                AccessExclusive,
            ],
            Exclusive => &[
                RowShare,
                RowExclusive,
                ShareUpdateExclusive,
                Share,
                ShareRowExclusive,
                Exclusive,
                AccessExclusive,
            ],
            AccessExclusive => &LockMode::ALL,
        };
        conflicts.contains(&other)
    }

    /// Plain `SELECT`s wait (they take ACCESS SHARE).
    pub fn blocks_reads(self) -> bool {
        self.conflicts_with(LockMode::AccessShare)
    }

    /// `INSERT`/`UPDATE`/`DELETE` wait (they take ROW EXCLUSIVE).
    pub fn blocks_writes(self) -> bool {
        self.conflicts_with(LockMode::RowExclusive)
    }

    /// What the application notices while the lock is held.
    pub fn impact(self) -> &'static str {
        if self.blocks_reads() {
            "blocks reads and writes"
        } else if self.blocks_writes() {
            "blocks writes"
        } else {
            "does not block reads or writes"
        }
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A lock on one relation, as written in the statement (`public.users`, `users`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableLock {
    /// The relation's name as PostgreSQL reads what the statement writes (unquoted parts in
    /// lower case, quoted ones with their quotes), not resolved against `search_path`.
    pub table: String,
    /// The strongest mode the statement takes on it.
    pub mode: LockMode,
    /// Why a table the statement does not name is locked: what the set declares (a foreign
    /// key, a view, a trigger) that makes PostgreSQL lock it. `None` for the tables named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub because: Option<String>,
    /// Taken only when the statement changes rows (an `ON DELETE CASCADE` action, a
    /// trigger's body): a statement that changes none takes no lock there.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub when_rows_change: bool,
}

impl TableLock {
    /// A lock on a table the statement names.
    pub fn named(table: impl Into<String>, mode: LockMode) -> TableLock {
        TableLock {
            table: table.into(),
            mode,
            because: None,
            when_rows_change: false,
        }
    }
}

/// Work done on the whole table while the statement's lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TableWork {
    /// Catalog change only: brief, whatever the table size.
    None,
    /// Reads every row (to validate, or to build an index) holding the lock.
    Scan,
    /// Writes a new copy of the table (and its indexes) holding the lock.
    Rewrite,
}

impl TableWork {
    /// `none`, `scan` or `rewrite`: the serialized name too.
    pub fn as_str(self) -> &'static str {
        match self {
            TableWork::None => "none",
            TableWork::Scan => "scan",
            TableWork::Rewrite => "rewrite",
        }
    }
}

/// The lock analysis of one statement.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LockAnalysis {
    /// Strongest lock per relation, in statement order. Empty for statements that take no
    /// table lock worth reporting (CREATE FUNCTION, GRANT, ...), or unknown ones.
    pub locks: Vec<TableLock>,
    /// The whole-table work done under those locks.
    pub work: TableWork,
    /// False when the statement kind is not recognised: nothing is claimed about it.
    pub known: bool,
    /// A fact the analysis cannot decide offline, or what makes the statement safe.
    pub note: Option<String>,
    /// The table a `CREATE TABLE` makes: later statements of the same transaction lock it
    /// while it is still empty and invisible to other sessions.
    pub creates: Option<String>,
}

impl LockAnalysis {
    fn new() -> LockAnalysis {
        LockAnalysis {
            locks: Vec::new(),
            work: TableWork::None,
            known: true,
            note: None,
            creates: None,
        }
    }

    fn unknown() -> LockAnalysis {
        LockAnalysis {
            known: false,
            ..LockAnalysis::new()
        }
    }

    fn lock(mut self, table: impl Into<String>, mode: LockMode) -> LockAnalysis {
        self.add(table.into(), mode);
        self
    }

    fn add(&mut self, table: String, mode: LockMode) {
        match self.locks.iter_mut().find(|l| l.table == table) {
            Some(existing) => existing.mode = existing.mode.max(mode),
            None => self.locks.push(TableLock::named(table, mode)),
        }
    }

    fn work(mut self, work: TableWork) -> LockAnalysis {
        self.work = self.work.max(work);
        self
    }

    fn note(mut self, note: impl Into<String>) -> LockAnalysis {
        self.add_note(note);
        self
    }

    fn add_note(&mut self, note: impl Into<String>) {
        let note = note.into();
        self.note = Some(match self.note.take() {
            Some(previous) => format!("{previous}; {note}"),
            None => note,
        });
    }

    /// The strongest lock taken, if any.
    pub fn strongest(&self) -> Option<LockMode> {
        self.locks.iter().map(|l| l.mode).max()
    }

    /// True when the application's reads or writes wait for a whole-table scan or rewrite.
    pub fn blocks_during_table_work(&self) -> bool {
        self.work != TableWork::None && self.strongest().is_some_and(LockMode::blocks_writes)
    }
}

/// Analyses one statement's text (without its `;`). Never fails: an unrecognised or
/// unparseable statement gives [`LockAnalysis::known`] = false.
pub fn analyze_sql(sql: &str) -> LockAnalysis {
    let Ok(tokens) = splitter::tokenize(sql) else {
        return LockAnalysis::unknown();
    };
    let words = Words::new(sql, &tokens);
    analyze(&read_statement(sql, &words), &words)
}

/// Analyses a statement from its AST (when sqlparser parsed it) and its tokens. The tokens
/// decide for the kinds sqlparser fails on or misreads (see [`classify::fallback`]), and for
/// the actions of an `ALTER TABLE` it could not parse.
pub(crate) fn analyze(read: &ReadStatement, words: &Words<'_>) -> LockAnalysis {
    // sqlparser reads `DROP INDEX CONCURRENTLY idx` as an index named "concurrently".
    let trust_ast = !words.starts_with(&["DROP", "INDEX"]);
    let mut analysis = match (read.ast(), read) {
        (_, ReadStatement::Skipped(Skipped::View(view))) => {
            create_view(&view.name, view.materialized, view.or_replace, words)
        }
        (Some(statement), _) if trust_ast => from_ast(statement, words),
        (None, ReadStatement::SplitAlter { .. }) => LockAnalysis::new(),
        _ => from_tokens(words),
    };
    if let Some(split) = read.split_alter() {
        unparsed_actions(split, &mut analysis);
    }
    // Kept for every statement of a file until the set pass: one lock is the usual case.
    analysis.locks.shrink_to_fit();
    analysis
}

/// The locks of `ALTER TABLE` actions sqlparser could not parse, read in `pg_locks` on
/// PostgreSQL 15. An action nobody recognised gets ALTER TABLE's default, ACCESS EXCLUSIVE
/// ("unless noted otherwise" in the docs), and says its table work is unknown.
fn unparsed_actions(split: &SplitAlter, analysis: &mut LockAnalysis) {
    use LockMode::*;
    for action in &split.unparsed {
        let (mode, work) = match &action.kind {
            ActionKind::AddNotNull { not_valid, .. } => {
                if *not_valid {
                    (AccessExclusive, TableWork::None)
                } else {
                    analysis.add_note("a NOT NULL constraint scans the table unless NOT VALID");
                    (AccessExclusive, TableWork::Scan)
                }
            }
            ActionKind::AlterConstraint | ActionKind::ColumnCatalog => {
                (AccessExclusive, TableWork::None)
            }
            ActionKind::PlannerSetting => (ShareUpdateExclusive, TableWork::None),
            ActionKind::Unknown => {
                analysis.add_note(format!(
                    "`{}` not read: ACCESS EXCLUSIVE assumed, table work unknown",
                    action.text
                ));
                (AccessExclusive, TableWork::None)
            }
        };
        analysis.add(split.table.clone(), mode);
        analysis.work = analysis.work.max(work);
    }
    let table = split.table.clone();
    analysis
        .locks
        .sort_by_key(|lock| (lock.table != table, lock.table.clone()));
}

/// The object's name as PostgreSQL reads it, for messages and for matching: unquoted parts
/// folded to lower case (`REFERENCES COMMENT` locks `comment`), quoted ones kept with their
/// quotes (`"Orders"`), so that folding it again gives the same table.
pub(crate) fn name(object: &ObjectName) -> String {
    object
        .0
        .iter()
        .map(|part| match part.as_ident() {
            Some(ident) if ident.quote_style.is_none() => ident.value.to_lowercase(),
            _ => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn from_ast(statement: &Statement, words: &Words<'_>) -> LockAnalysis {
    use LockMode::*;
    match statement {
        Statement::Query(_) => LockAnalysis::new().note("ACCESS SHARE on the tables it reads"),
        Statement::Insert(insert) => match &insert.table {
            TableObject::TableName(table) => LockAnalysis::new().lock(name(table), RowExclusive),
            _ => LockAnalysis::unknown(),
        },
        Statement::Update(update) => row_writes(
            std::slice::from_ref(&update.table),
            update.selection.is_some(),
        ),
        Statement::Delete(delete) => {
            let tables = match &delete.from {
                FromTable::WithFromKeyword(tables) | FromTable::WithoutKeyword(tables) => tables,
            };
            row_writes(tables, delete.selection.is_some())
        }
        Statement::CreateIndex(index) => {
            // CONCURRENTLY: two table scans, waiting for older transactions between them;
            // writes go on.
            let mode = if index.concurrently {
                ShareUpdateExclusive
            } else {
                Share
            };
            LockAnalysis::new()
                .lock(name(&index.table_name), mode)
                .work(TableWork::Scan)
        }
        Statement::CreateTable(create) => {
            let mut analysis = LockAnalysis::new().note("new table: no other session sees it");
            analysis.creates = Some(name(&create.name));
            // A foreign key takes SHARE ROW EXCLUSIVE on the referenced table.
            for constraint in &create.constraints {
                if let TableConstraint::ForeignKey(fk) = constraint {
                    analysis.add(name(&fk.foreign_table), ShareRowExclusive);
                }
            }
            for column in &create.columns {
                for option in &column.options {
                    if let ColumnOption::ForeignKey(fk) = &option.option {
                        analysis.add(name(&fk.foreign_table), ShareRowExclusive);
                    }
                }
            }
            if create.query.is_some() {
                reads_its_query(&mut analysis, words, "CREATE TABLE AS");
            }
            analysis
        }
        Statement::AlterTable(alter) => alter_table(&name(&alter.name), &alter.operations),
        Statement::Drop {
            object_type, names, ..
        } => {
            let mut analysis = LockAnalysis::new();
            let mode = match object_type {
                ObjectType::Table
                | ObjectType::View
                | ObjectType::MaterializedView
                | ObjectType::Sequence
                | ObjectType::Index => Some(AccessExclusive),
                _ => None,
            };
            match mode {
                Some(mode) => {
                    for object in names {
                        analysis.add(name(object), mode);
                    }
                    if *object_type == ObjectType::Index {
                        analysis.add_note("and ACCESS EXCLUSIVE on the index's table");
                    }
                }
                None => analysis.add_note("no table lock"),
            }
            analysis
        }
        Statement::Truncate(truncate) => {
            let mut analysis = LockAnalysis::new();
            for target in &truncate.table_names {
                analysis.add(name(&target.name), AccessExclusive);
            }
            analysis
        }
        Statement::CreateTrigger(trigger) => {
            LockAnalysis::new().lock(name(&trigger.table_name), ShareRowExclusive)
        }
        Statement::DropTrigger(trigger) => match &trigger.table_name {
            Some(table) => LockAnalysis::new().lock(name(table), AccessExclusive),
            None => LockAnalysis::unknown(),
        },
        Statement::RefreshMaterializedView(refresh) => {
            // CONCURRENTLY runs the query and applies the difference to the view in place:
            // its file stays (observed on PostgreSQL 15); without it, a new file replaces it.
            let (mode, work) = if refresh.concurrently {
                (Exclusive, TableWork::Scan)
            } else {
                (AccessExclusive, TableWork::Rewrite)
            };
            LockAnalysis::new()
                .lock(name(&refresh.name), mode)
                .work(work)
        }
        Statement::Vacuum(vacuum) => {
            let table = vacuum
                .table_name
                .as_ref()
                .map_or_else(|| "every table".to_owned(), name);
            let (mode, work) = if vacuum.full {
                (AccessExclusive, TableWork::Rewrite)
            } else {
                (ShareUpdateExclusive, TableWork::Scan)
            };
            LockAnalysis::new().lock(table, mode).work(work)
        }
        Statement::Lock(_) => lock_table(words),
        Statement::CreateView(view) => {
            create_view(&name(&view.name), view.materialized, view.or_replace, words)
        }
        Statement::Comment { .. } => LockAnalysis::new()
            .note("SHARE UPDATE EXCLUSIVE on the commented object: does not block reads or writes"),
        Statement::CreateFunction(_)
        | Statement::CreateExtension(_)
        | Statement::CreateSchema { .. }
        | Statement::CreateType { .. }
        | Statement::AlterType(_)
        | Statement::CreateSequence { .. }
        | Statement::Grant(_)
        | Statement::Revoke(_)
        | Statement::DropFunction(_)
        | Statement::DropExtension(_)
        | Statement::CreatePolicy(_)
        | Statement::Set(_) => LockAnalysis::new().note("no lock on existing tables"),
        _ => from_tokens(words),
    }
}

/// `UPDATE` and `DELETE`: ROW EXCLUSIVE on each table they write; without a WHERE, every row
/// stays locked until commit.
fn row_writes(tables: &[TableWithJoins], has_where: bool) -> LockAnalysis {
    let mut analysis = LockAnalysis::new();
    for table in tables {
        if let TableFactor::Table { name: table, .. } = &table.relation {
            analysis.add(name(table), LockMode::RowExclusive);
        }
    }
    if !has_where {
        analysis.add_note("no WHERE: locks every row until commit");
    }
    analysis
}

/// `CREATE [OR REPLACE] [MATERIALIZED] VIEW name`, from its head (the query is not parsed,
/// see [`Skipped::View`]) or from sqlparser's tree.
fn create_view(
    view: &str,
    materialized: bool,
    or_replace: bool,
    words: &Words<'_>,
) -> LockAnalysis {
    if materialized {
        let mut analysis = LockAnalysis::new();
        analysis.creates = Some(view.to_owned());
        reads_its_query(&mut analysis, words, "CREATE MATERIALIZED VIEW");
        analysis
    } else if or_replace {
        LockAnalysis::new().lock(view, LockMode::AccessExclusive)
    } else {
        LockAnalysis::new().note("new view: no lock on existing tables")
    }
}

/// `CREATE TABLE ... AS` and `CREATE MATERIALIZED VIEW` run their query to fill the new
/// relation: every table it reads is read in full under ACCESS SHARE, which blocks nothing but
/// lasts as long as the query (observed on PostgreSQL 15: sequential scans of each source).
/// `WITH NO DATA` runs nothing.
fn reads_its_query(analysis: &mut LockAnalysis, words: &Words<'_>, what: &str) {
    if words.contains_pair("NO", "DATA") {
        analysis.add_note(format!("{what} WITH NO DATA: the query is not run"));
        return;
    }
    analysis.work = analysis.work.max(TableWork::Scan);
    let sources = declared::query_sources(words);
    analysis.add_note(if sources.is_empty() {
        format!("{what} runs its query: reads its tables under ACCESS SHARE (blocks no reads or writes)")
    } else {
        format!(
            "{what} runs its query: reads {} in full under ACCESS SHARE (blocks no reads or writes)",
            sources.join(", ")
        )
    });
}

fn alter_table(table: &str, operations: &[AlterTableOperation]) -> LockAnalysis {
    use LockMode::*;
    let mut analysis = LockAnalysis::new();
    for operation in operations {
        let (mode, work) = match operation {
            AlterTableOperation::AddColumn { column_def, .. } => {
                let type_name = column_def.data_type.to_string().to_ascii_lowercase();
                let rewrites = column_def
                    .options
                    .iter()
                    .any(|option| match &option.option {
                        ColumnOption::Default(expr) => volatile_function(expr).is_some(),
                        ColumnOption::Generated { .. } | ColumnOption::Identity(_) => true,
                        _ => false,
                    })
                    || matches!(
                        type_name.as_str(),
                        "serial" | "bigserial" | "smallserial" | "serial2" | "serial4" | "serial8"
                    );
                // Since PostgreSQL 11 a non-volatile default is stored in the catalog. A
                // UNIQUE or PRIMARY KEY column builds its index, and NOT NULL without a
                // default checks every existing row (both observed on PostgreSQL 15).
                let has = |wanted: fn(&ColumnOption) -> bool| {
                    column_def.options.iter().any(|o| wanted(&o.option))
                };
                let builds_index =
                    has(|o| matches!(o, ColumnOption::Unique(_) | ColumnOption::PrimaryKey(_)));
                let checks_rows = has(|o| matches!(o, ColumnOption::NotNull))
                    && !has(|o| matches!(o, ColumnOption::Default(_)));
                // A foreign key on the new column takes SHARE ROW EXCLUSIVE on the referenced
                // table; with a default it checks every existing row's value (a scan), an
                // all-NULL column has nothing to check (both observed on PostgreSQL 15).
                let mut references = false;
                for option in &column_def.options {
                    if let ColumnOption::ForeignKey(fk) = &option.option {
                        analysis.add(name(&fk.foreign_table), ShareRowExclusive);
                        references = true;
                    }
                }
                let references = references && has(|o| matches!(o, ColumnOption::Default(_)));
                let work = if rewrites {
                    TableWork::Rewrite
                } else if builds_index || checks_rows || references {
                    TableWork::Scan
                } else {
                    TableWork::None
                };
                (AccessExclusive, work)
            }
            AlterTableOperation::AlterColumn { op, .. } => match op {
                AlterColumnOperation::SetDataType { using, .. } => {
                    // The old type is not in the statement: `sql::rewrite_free_change` lists
                    // the changes that skip the rewrite (checked on PostgreSQL 15).
                    analysis.add_note(if using.is_some() {
                        "USING always rewrites the table"
                    } else {
                        "no rewrite only when the new type relaxes the old one's limit (varchar(n) to text or a longer varchar, numeric to a higher precision with the same scale, ...)"
                    });
                    (AccessExclusive, TableWork::Rewrite)
                }
                AlterColumnOperation::SetNotNull => {
                    analysis.add_note(
                        "the scan is skipped when a validated CHECK (col IS NOT NULL) exists",
                    );
                    (AccessExclusive, TableWork::Scan)
                }
                _ => (AccessExclusive, TableWork::None),
            },
            AlterTableOperation::AddConstraint {
                constraint,
                not_valid,
            } => {
                let scan = if *not_valid {
                    TableWork::None
                } else {
                    TableWork::Scan
                };
                match constraint {
                    TableConstraint::ForeignKey(fk) => {
                        analysis.add(name(&fk.foreign_table), ShareRowExclusive);
                        (ShareRowExclusive, scan)
                    }
                    TableConstraint::Check(_) => (AccessExclusive, scan),
                    // Builds the unique index under the lock.
                    TableConstraint::Unique(_) | TableConstraint::PrimaryKey(_) => {
                        (AccessExclusive, TableWork::Scan)
                    }
                    // Builds its index under the lock too (checked on PostgreSQL 15), and has
                    // neither a USING INDEX nor a NOT VALID form.
                    TableConstraint::Exclude(_) => {
                        analysis.add_note(
                            "builds the EXCLUDE constraint's index under the lock; there is no CONCURRENTLY form",
                        );
                        (AccessExclusive, TableWork::Scan)
                    }
                    _ => (AccessExclusive, TableWork::None),
                }
            }
            // Scans, but SHARE UPDATE EXCLUSIVE lets reads and writes continue.
            AlterTableOperation::ValidateConstraint { .. } => {
                (ShareUpdateExclusive, TableWork::Scan)
            }
            AlterTableOperation::EnableTrigger { .. }
            | AlterTableOperation::DisableTrigger { .. }
            | AlterTableOperation::EnableAlwaysTrigger { .. }
            | AlterTableOperation::EnableReplicaTrigger { .. } => {
                (ShareRowExclusive, TableWork::None)
            }
            AlterTableOperation::SetLogged | AlterTableOperation::SetUnlogged => {
                (AccessExclusive, TableWork::Rewrite)
            }
            AlterTableOperation::AttachPartition { .. }
            | AlterTableOperation::AttachPartitionOf { .. } => {
                analysis.add_note(
                    "ACCESS EXCLUSIVE on the partition, scanned unless a CHECK implies its bound",
                );
                (ShareUpdateExclusive, TableWork::None)
            }
            _ => (AccessExclusive, TableWork::None),
        };
        analysis.add(table.to_owned(), mode);
        analysis.work = analysis.work.max(work);
    }
    // The table of the statement comes first, whatever order the operations added locks in.
    analysis
        .locks
        .sort_by_key(|lock| (lock.table != table, lock.table.clone()));
    analysis
}

/// `LOCK [TABLE] [ONLY] name [, ...] [IN mode MODE] [NOWAIT]`; ACCESS EXCLUSIVE by default.
fn lock_table(words: &Words<'_>) -> LockAnalysis {
    let texts: Vec<String> = (0..words.len())
        .filter_map(|i| words.text(i).map(str::to_owned))
        .collect();
    let upper: Vec<String> = texts.iter().map(|t| t.to_ascii_uppercase()).collect();
    let mode = match upper.iter().position(|w| w == "IN") {
        Some(start) => {
            let end = upper
                .iter()
                .position(|w| w == "MODE")
                .unwrap_or(upper.len());
            let spelled = upper.get(start + 1..end).unwrap_or_default().join(" ");
            LockMode::ALL
                .into_iter()
                .find(|mode| mode.as_str() == spelled)
                .unwrap_or(LockMode::AccessExclusive)
        }
        None => LockMode::AccessExclusive,
    };
    let mut analysis = LockAnalysis::new();
    let stop = upper.iter().position(|w| w == "IN" || w == "NOWAIT");
    for (index, text) in texts.iter().enumerate().take(stop.unwrap_or(texts.len())) {
        if matches!(upper[index].as_str(), "LOCK" | "TABLE" | "ONLY" | "," | "*") {
            continue;
        }
        analysis.add(classify::normalize_identifier(text), mode);
    }
    analysis.note("held until the migration's transaction ends")
}

/// `VACUUM (option, ...) [table]`, which sqlparser cannot parse: `FULL` among the options
/// rewrites under ACCESS EXCLUSIVE (observed on PostgreSQL 15), as `VACUUM FULL` does.
fn vacuum_with_options(words: &Words<'_>) -> LockAnalysis {
    use LockMode::*;
    let close = (0..words.len()).find(|&i| words.text(i) == Some(")"));
    let full = (0..close.unwrap_or(0)).any(|i| words.keyword(i).as_deref() == Some("FULL"));
    let table = close
        .and_then(|i| words.text(i + 1))
        .map_or_else(|| "every table".to_owned(), classify::normalize_identifier);
    if full {
        LockAnalysis::new()
            .lock(table, AccessExclusive)
            .work(TableWork::Rewrite)
    } else {
        LockAnalysis::new()
            .lock(table, ShareUpdateExclusive)
            .work(TableWork::Scan)
    }
}

/// The kinds sqlparser cannot parse, from their keywords.
fn from_tokens(words: &Words<'_>) -> LockAnalysis {
    use LockMode::*;
    let object_after = |keywords: &[&str]| -> String {
        let mut index = keywords.len();
        while let Some(word) = words.keyword(index) {
            if matches!(
                word.as_str(),
                "CONCURRENTLY" | "IF" | "EXISTS" | "NOT" | "ONLY"
            ) {
                index += 1;
            } else {
                break;
            }
        }
        words
            .text(index)
            .map(classify::normalize_identifier)
            .unwrap_or_default()
    };
    if words.starts_with(&["LOCK"]) {
        return lock_table(words);
    }
    match classify::fallback(words) {
        Some(Fallback::DropIndex { concurrently, .. }) => {
            let index = object_after(&["DROP", "INDEX"]);
            let (mode, note) = if concurrently {
                (
                    ShareUpdateExclusive,
                    "SHARE UPDATE EXCLUSIVE on the index's table: waits for its transactions, blocks nothing",
                )
            } else {
                (AccessExclusive, "and ACCESS EXCLUSIVE on the index's table")
            };
            LockAnalysis::new().lock(index, mode).note(note)
        }
        Some(Fallback::Reindex { concurrently }) => {
            let kind = words.keyword(1).unwrap_or_default();
            let target = words
                .iter()
                .last()
                .map(|_| {
                    words
                        .text(words.len() - 1)
                        .map(classify::normalize_identifier)
                        .unwrap_or_default()
                })
                .unwrap_or_default();
            let (mode, note) = if concurrently {
                (
                    ShareUpdateExclusive,
                    "rebuilds the index beside the old one; reads and writes continue",
                )
            } else if kind == "INDEX" {
                // ACCESS EXCLUSIVE on the index (observed on PostgreSQL 15): every query that
                // plans on the table opens its indexes, so reads wait too.
                (
                    AccessExclusive,
                    "and SHARE on its table: blocks writes, and reads that plan on the table wait for the index",
                )
            } else {
                (
                    Share,
                    "SHARE on the table, ACCESS EXCLUSIVE on each index: blocks writes",
                )
            };
            LockAnalysis::new()
                .lock(target, mode)
                .work(TableWork::Rewrite)
                .note(note)
        }
        Some(Fallback::Cluster) => {
            let table = words
                .text(1)
                .map(classify::normalize_identifier)
                .unwrap_or_else(|| "every clustered table".to_owned());
            LockAnalysis::new()
                .lock(table, AccessExclusive)
                .work(TableWork::Rewrite)
        }
        Some(Fallback::CreateIndexOnOnly { .. }) => {
            let on = (0..words.len())
                .find(|&i| words.keyword(i).as_deref() == Some("ONLY"))
                .and_then(|i| words.text(i + 1))
                .map(classify::normalize_identifier)
                .unwrap_or_default();
            // Instant only on a partitioned table; a plain table gets its whole index built
            // (observed on PostgreSQL 15): which one it is, only the catalog knows.
            LockAnalysis::new()
                .lock(on, Share)
                .work(TableWork::Scan)
                .note("on a partitioned table only the parent's index: instant, no scan")
        }
        Some(Fallback::CreateTable { .. }) => {
            LockAnalysis::new().note("new table: no other session sees it")
        }
        Some(Fallback::CreateStatistics { .. }) => {
            let on = (0..words.len())
                .rev()
                .find(|&i| words.keyword(i).as_deref() == Some("FROM"))
                .and_then(|i| words.text(i + 1))
                .map(classify::normalize_identifier)
                .unwrap_or_default();
            LockAnalysis::new().lock(on, ShareUpdateExclusive)
        }
        Some(Fallback::DoBlock) => {
            LockAnalysis::unknown().note("a DO block can take any lock: read its body")
        }
        Some(Fallback::Benign(kind)) => {
            if kind == "VACUUM" {
                vacuum_with_options(words)
            } else {
                LockAnalysis::new().note("no lock that blocks reads or writes")
            }
        }
        None => LockAnalysis::unknown(),
    }
}

/// What kind of statement writes rows, when `sql` (one statement, without its `;`) does:
/// `INSERT`, `UPDATE`, `DELETE`, `MERGE`, `COPY ... FROM`, `CREATE TABLE ... AS` and
/// `CREATE MATERIALIZED VIEW` (with data), `REFRESH MATERIALIZED VIEW`, `SELECT ... INTO`, or
/// a `DO` block (it can run anything). `migrate squash` refuses these: a schema-only dump
/// does not carry the rows they wrote. Read from sqlparser's tree, from the leading keywords
/// only for a statement it could not parse.
pub fn writes_rows(sql: &str) -> Option<&'static str> {
    let tokens = splitter::tokenize(sql).ok()?;
    let words = Words::new(sql, &tokens);
    let read = read_statement(sql, &words);
    if let ReadStatement::Skipped(Skipped::View(view)) = &read {
        return (view.materialized && !words.contains_pair("NO", "DATA"))
            .then_some("CREATE MATERIALIZED VIEW");
    }
    match read.into_ast() {
        Some(Statement::Insert(_)) => Some("INSERT"),
        Some(Statement::Update(_)) => Some("UPDATE"),
        Some(Statement::Delete(_)) => Some("DELETE"),
        Some(Statement::Merge(_)) => Some("MERGE"),
        Some(Statement::Copy { to: false, .. }) => Some("COPY ... FROM"),
        Some(Statement::CreateTable(create))
            if create.query.is_some() && !words.contains_pair("NO", "DATA") =>
        {
            Some("CREATE TABLE ... AS")
        }
        Some(Statement::CreateView(view))
            if view.materialized && !words.contains_pair("NO", "DATA") =>
        {
            Some("CREATE MATERIALIZED VIEW")
        }
        Some(Statement::RefreshMaterializedView(_)) if !words.contains_pair("NO", "DATA") => {
            Some("REFRESH MATERIALIZED VIEW")
        }
        Some(Statement::Query(query)) if selects_into(&query.body) => Some("SELECT ... INTO"),
        Some(Statement::Query(query)) if query_writes(&query) => {
            Some("WITH ... (a data-modifying WITH)")
        }
        Some(_) => None,
        None => [
            ("INSERT", "INSERT"),
            ("UPDATE", "UPDATE"),
            ("DELETE", "DELETE"),
            ("MERGE", "MERGE"),
            ("DO", "DO block"),
            ("REFRESH", "REFRESH MATERIALIZED VIEW"),
        ]
        .into_iter()
        .find(|(keyword, _)| words.starts_with(&[keyword]))
        .map(|(_, kind)| kind)
        .or_else(|| {
            (words.starts_with(&["COPY"]) && words.contains("FROM")).then_some("COPY ... FROM")
        }),
    }
}

/// A query whose body or one of whose `WITH` queries is an `INSERT`, `UPDATE`, `DELETE` or
/// `MERGE` (`WITH gone AS (DELETE FROM t RETURNING *) SELECT count(*) FROM gone`).
fn query_writes(query: &sqlparser::ast::Query) -> bool {
    use sqlparser::ast::SetExpr;
    let body_writes = match query.body.as_ref() {
        SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => true,
        SetExpr::Query(inner) => query_writes(inner),
        _ => false,
    };
    body_writes
        || query
            .with
            .as_ref()
            .is_some_and(|with| with.cte_tables.iter().any(|cte| query_writes(&cte.query)))
}

/// `SELECT ... INTO new_table`: creates a table and fills it.
fn selects_into(body: &sqlparser::ast::SetExpr) -> bool {
    matches!(body, sqlparser::ast::SetExpr::Select(select) if select.into.is_some())
}

/// What kind of statement changes roles, privileges, owners or the cluster, when `sql` does:
/// a schema-only dump of a scratch database cannot carry these (roles and databases are the
/// cluster's, and owners and privileges there are the scratch cluster's, not yours), so
/// `migrate squash` refuses to replace them.
pub fn roles_or_privileges(sql: &str) -> Option<&'static str> {
    let tokens = splitter::tokenize(sql).ok()?;
    let words = Words::new(sql, &tokens);
    match read_statement(sql, &words).into_ast() {
        Some(Statement::Grant(_) | Statement::GrantRole(_)) => return Some("GRANT"),
        Some(Statement::Revoke(_) | Statement::RevokeRole(_)) => return Some("REVOKE"),
        Some(Statement::CreateRole(_)) => return Some("CREATE ROLE"),
        Some(Statement::AlterRole { .. }) => return Some("ALTER ROLE"),
        Some(Statement::CreateDatabase { .. }) => return Some("CREATE DATABASE"),
        _ => {}
    }
    let leading: [(&[&str], &'static str); 10] = [
        (&["GRANT"], "GRANT"),
        (&["REVOKE"], "REVOKE"),
        (
            &["ALTER", "DEFAULT", "PRIVILEGES"],
            "ALTER DEFAULT PRIVILEGES",
        ),
        (&["REASSIGN", "OWNED"], "REASSIGN OWNED"),
        (&["SECURITY", "LABEL"], "SECURITY LABEL"),
        (&["CREATE", "DATABASE"], "CREATE DATABASE"),
        (&["CREATE", "TABLESPACE"], "CREATE TABLESPACE"),
        (&["SET", "ROLE"], "SET ROLE"),
        (
            &["SET", "SESSION", "AUTHORIZATION"],
            "SET SESSION AUTHORIZATION",
        ),
        (&["COMMENT", "ON", "ROLE"], "COMMENT ON ROLE"),
    ];
    if let Some((_, kind)) = leading.iter().find(|(k, _)| words.starts_with(k)) {
        return Some(kind);
    }
    let role_statement = ["CREATE", "ALTER", "DROP"].iter().any(|verb| {
        ["ROLE", "USER", "GROUP"]
            .iter()
            .any(|noun| words.starts_with(&[verb, noun]))
    });
    if role_statement {
        return Some("a role statement");
    }
    (words.starts_with(&["ALTER"]) && words.contains_pair("OWNER", "TO")).then_some("OWNER TO")
}

#[cfg(test)]
mod tests {
    use super::LockMode::*;
    use super::*;

    fn analysis(sql: &str) -> LockAnalysis {
        analyze_sql(sql)
    }

    /// (table, mode, work) of a statement with exactly one lock.
    fn single(sql: &str) -> (String, LockMode, TableWork) {
        let analysis = analysis(sql);
        assert!(analysis.known, "{sql}: unknown");
        assert_eq!(analysis.locks.len(), 1, "{sql}: {analysis:?}");
        (
            analysis.locks[0].table.clone(),
            analysis.locks[0].mode,
            analysis.work,
        )
    }

    /// Table 13.2 of <https://www.postgresql.org/docs/current/explicit-locking.html>, row by
    /// row, X = conflict; columns in the same order as the rows.
    #[test]
    fn conflict_matrix_is_the_documented_one() {
        let documented = [
            "       X", // ACCESS SHARE
            "      XX", // ROW SHARE
            "    XXXX", // ROW EXCLUSIVE
            "   XXXXX", // SHARE UPDATE EXCLUSIVE
            "  XX XXX", // SHARE
            "  XXXXXX", // SHARE ROW EXCLUSIVE
            " XXXXXXX", // EXCLUSIVE
            "XXXXXXXX", // ACCESS EXCLUSIVE
        ];
        for (row, requested) in LockMode::ALL.into_iter().enumerate() {
            for (column, held) in LockMode::ALL.into_iter().enumerate() {
                let expected = documented[row].as_bytes()[column] == b'X';
                assert_eq!(
                    requested.conflicts_with(held),
                    expected,
                    "{requested} vs {held}"
                );
                // The relation is symmetric.
                assert_eq!(
                    requested.conflicts_with(held),
                    held.conflicts_with(requested)
                );
            }
        }
        assert!(AccessExclusive.blocks_reads());
        assert!(!Exclusive.blocks_reads() && Exclusive.blocks_writes());
        assert!(Share.blocks_writes() && !ShareUpdateExclusive.blocks_writes());
    }

    #[test]
    fn indexes() {
        // "CREATE INDEX ... acquires SHARE": writes wait for the build.
        assert_eq!(
            single("CREATE INDEX i ON users (email)"),
            ("users".into(), Share, TableWork::Scan)
        );
        assert_eq!(
            single("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON public.users (email)"),
            ("public.users".into(), ShareUpdateExclusive, TableWork::Scan)
        );
        assert!(!analysis("CREATE INDEX CONCURRENTLY i ON users (a)").blocks_during_table_work());
        assert!(analysis("CREATE INDEX i ON users (a)").blocks_during_table_work());
        assert_eq!(single("DROP INDEX i").1, AccessExclusive);
        assert_eq!(
            single("DROP INDEX CONCURRENTLY IF EXISTS i"),
            ("i".into(), ShareUpdateExclusive, TableWork::None)
        );
        // sqlparser takes CONCURRENTLY for the index name here; the tokens decide.
        assert_eq!(
            single("DROP INDEX CONCURRENTLY idx"),
            ("idx".into(), ShareUpdateExclusive, TableWork::None)
        );
        assert_eq!(
            single("REINDEX INDEX CONCURRENTLY i").1,
            ShareUpdateExclusive
        );
        assert_eq!(single("REINDEX TABLE t").1, Share);
    }

    #[test]
    fn names_are_folded_like_postgresql_folds_them() {
        let locked = |sql: &str| -> Vec<String> {
            analysis(sql).locks.into_iter().map(|l| l.table).collect()
        };
        assert_eq!(
            locked("CREATE TABLE c (id int REFERENCES COMMENT ON DELETE CASCADE)"),
            ["comment"]
        );
        assert_eq!(
            single("CREATE INDEX i ON Public.Users (email)").0,
            "public.users"
        );
        assert_eq!(
            single(r#"CREATE INDEX i ON "Orders" (email)"#).0,
            r#""Orders""#
        );
    }

    #[test]
    fn add_column_rewrites_only_with_a_volatile_default() {
        assert_eq!(
            single("ALTER TABLE users ADD COLUMN IF NOT EXISTS note text"),
            ("users".into(), AccessExclusive, TableWork::None)
        );
        assert_eq!(
            single("ALTER TABLE users ADD COLUMN flag boolean NOT NULL DEFAULT false").2,
            TableWork::None
        );
        assert_eq!(
            single("ALTER TABLE users ADD COLUMN public_id uuid DEFAULT gen_random_uuid()").2,
            TableWork::Rewrite
        );
        assert_eq!(
            single("ALTER TABLE users ADD COLUMN n bigserial").2,
            TableWork::Rewrite
        );
        assert_eq!(
            single("ALTER TABLE users ADD COLUMN g int GENERATED ALWAYS AS (id * 2) STORED").2,
            TableWork::Rewrite
        );
    }

    #[test]
    fn alter_column() {
        assert_eq!(
            single("ALTER TABLE users ALTER COLUMN id TYPE bigint"),
            ("users".into(), AccessExclusive, TableWork::Rewrite)
        );
        let not_null = analysis("ALTER TABLE users ALTER COLUMN email SET NOT NULL");
        assert_eq!(
            (not_null.strongest(), not_null.work),
            (Some(AccessExclusive), TableWork::Scan)
        );
        assert!(not_null.note.unwrap().contains("CHECK"));
        assert_eq!(
            single("ALTER TABLE users ALTER COLUMN email DROP NOT NULL").2,
            TableWork::None
        );
        assert_eq!(
            single("ALTER TABLE users ALTER COLUMN s SET DEFAULT 'x'"),
            ("users".into(), AccessExclusive, TableWork::None)
        );
    }

    #[test]
    fn constraints() {
        assert_eq!(
            single("ALTER TABLE orders ADD CONSTRAINT c CHECK (total >= 0)"),
            ("orders".into(), AccessExclusive, TableWork::Scan)
        );
        assert_eq!(
            single("ALTER TABLE orders ADD CONSTRAINT c CHECK (total >= 0) NOT VALID").2,
            TableWork::None
        );
        // "ADD FOREIGN KEY requires only a SHARE ROW EXCLUSIVE lock", on both tables.
        let fk = analysis(
            "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users (id)",
        );
        assert_eq!(
            fk.locks,
            vec![
                TableLock::named("orders", ShareRowExclusive),
                TableLock::named("users", ShareRowExclusive),
            ]
        );
        assert_eq!(fk.work, TableWork::Scan);
        assert!(fk.blocks_during_table_work());
        let fk_not_valid = analysis(
            "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID",
        );
        assert_eq!(fk_not_valid.work, TableWork::None);
        // VALIDATE scans without blocking reads or writes.
        let validate = analysis("ALTER TABLE orders VALIDATE CONSTRAINT fk");
        assert_eq!(validate.strongest(), Some(ShareUpdateExclusive));
        assert_eq!(validate.work, TableWork::Scan);
        assert!(!validate.blocks_during_table_work());
        assert_eq!(
            single("ALTER TABLE users ADD CONSTRAINT u UNIQUE (email)").2,
            TableWork::Scan
        );
        assert_eq!(
            single("ALTER TABLE users ADD CONSTRAINT u UNIQUE USING INDEX i"),
            ("users".into(), AccessExclusive, TableWork::None)
        );
        assert_eq!(
            single("ALTER TABLE users DROP CONSTRAINT IF EXISTS u").1,
            AccessExclusive
        );
    }

    /// Both checked on PostgreSQL 15 in `pg_locks` of the open transaction.
    #[test]
    fn exclusion_constraints_and_persistence_changes_work_under_access_exclusive() {
        let exclude = analysis(
            "ALTER TABLE bookings ADD CONSTRAINT no_overlap EXCLUDE USING gist (room_id WITH =, during WITH &&)",
        );
        assert_eq!(
            (exclude.locks.clone(), exclude.work),
            (
                vec![TableLock::named("bookings", AccessExclusive)],
                TableWork::Scan
            )
        );
        assert!(exclude.blocks_during_table_work());
        assert!(exclude.note.unwrap().contains("EXCLUDE"));
        for sql in ["ALTER TABLE t SET LOGGED", "ALTER TABLE t SET UNLOGGED"] {
            assert_eq!(
                single(sql),
                ("t".into(), AccessExclusive, TableWork::Rewrite),
                "{sql}"
            );
        }
    }

    /// Each of these was a disagreement with PostgreSQL 15 found by observing the statements
    /// on a real server (`runtime::observe`).
    #[test]
    fn corrections_from_the_observed_effects() {
        // A UNIQUE column builds its index; NOT NULL without a default checks every row.
        assert_eq!(
            single("ALTER TABLE users ADD COLUMN IF NOT EXISTS handle text UNIQUE").2,
            TableWork::Scan
        );
        assert_eq!(
            single("ALTER TABLE users ADD COLUMN IF NOT EXISTS tenant_id bigint NOT NULL").2,
            TableWork::Scan
        );
        assert_eq!(
            single("ALTER TABLE users ADD COLUMN f boolean NOT NULL DEFAULT false").2,
            TableWork::None
        );
        // REINDEX INDEX holds ACCESS EXCLUSIVE on the index, not SHARE.
        assert_eq!(
            single("REINDEX INDEX idx_orders_created"),
            (
                "idx_orders_created".into(),
                AccessExclusive,
                TableWork::Rewrite
            )
        );
        // REFRESH ... CONCURRENTLY changes the view in place: no new file.
        assert_eq!(
            single("REFRESH MATERIALIZED VIEW CONCURRENTLY mv"),
            ("mv".into(), Exclusive, TableWork::Scan)
        );
        // VACUUM with options in parentheses, which sqlparser cannot parse.
        assert_eq!(
            single("VACUUM (FULL, ANALYZE) orders"),
            ("orders".into(), AccessExclusive, TableWork::Rewrite)
        );
        assert_eq!(
            single("VACUUM (ANALYZE) orders"),
            ("orders".into(), ShareUpdateExclusive, TableWork::Scan)
        );
        // ON ONLY builds the whole index on a table that is not partitioned.
        assert_eq!(
            single("CREATE INDEX IF NOT EXISTS idx_events_at ON ONLY events (at)"),
            ("events".into(), Share, TableWork::Scan)
        );
    }

    #[test]
    fn strongest_subcommand_wins() {
        let analysis = analysis(
            "ALTER TABLE t VALIDATE CONSTRAINT c, ALTER COLUMN a TYPE bigint, ADD COLUMN b int",
        );
        assert_eq!(analysis.strongest(), Some(AccessExclusive));
        assert_eq!(analysis.work, TableWork::Rewrite);
    }

    /// Checked on PostgreSQL 15 in `pg_locks`: ALTER CONSTRAINT, SET STORAGE and SET
    /// COMPRESSION take ACCESS EXCLUSIVE, SET STATISTICS and CLUSTER ON SHARE UPDATE EXCLUSIVE.
    #[test]
    fn actions_sqlparser_cannot_parse_keep_their_locks() {
        let hidden = analysis(
            "ALTER TABLE public.t ALTER CONSTRAINT fk NOT DEFERRABLE, ALTER COLUMN c SET NOT NULL",
        );
        assert_eq!(
            (hidden.locks.clone(), hidden.work),
            (
                vec![TableLock::named("public.t", AccessExclusive)],
                TableWork::Scan
            )
        );
        assert_eq!(
            single("ALTER TABLE t ADD CONSTRAINT n NOT NULL c"),
            ("t".into(), AccessExclusive, TableWork::Scan)
        );
        assert_eq!(
            single("ALTER TABLE t ADD CONSTRAINT n NOT NULL c NOT VALID").2,
            TableWork::None
        );
        assert_eq!(
            single("ALTER TABLE t ALTER COLUMN c SET STATISTICS DEFAULT, CLUSTER ON t_pkey"),
            ("t".into(), ShareUpdateExclusive, TableWork::None)
        );
        let unknown = analysis("ALTER TABLE t SET ACCESS METHOD heap2");
        assert_eq!(unknown.strongest(), Some(AccessExclusive));
        assert!(unknown.note.unwrap().contains("SET ACCESS METHOD heap2"));
    }

    #[test]
    fn data_changes_take_row_exclusive() {
        assert_eq!(
            single("UPDATE users SET a = 1 WHERE id < 10"),
            ("users".into(), RowExclusive, TableWork::None)
        );
        let all = analysis("UPDATE users SET a = 1");
        assert!(all.note.unwrap().contains("every row"));
        assert_eq!(single("DELETE FROM users WHERE id = 1").1, RowExclusive);
        assert_eq!(single("INSERT INTO users (id) VALUES (1)").1, RowExclusive);
    }

    #[test]
    fn maintenance_and_blocking_statements() {
        assert_eq!(
            single("VACUUM FULL users"),
            ("users".into(), AccessExclusive, TableWork::Rewrite)
        );
        assert_eq!(
            single("CLUSTER users USING users_pkey"),
            ("users".into(), AccessExclusive, TableWork::Rewrite)
        );
        assert_eq!(
            single("LOCK TABLE users"),
            ("users".into(), AccessExclusive, TableWork::None)
        );
        assert_eq!(
            single("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE").1,
            ShareRowExclusive
        );
        assert_eq!(single("TRUNCATE users").1, AccessExclusive);
        assert_eq!(single("DROP TABLE IF EXISTS users").1, AccessExclusive);
        assert_eq!(
            single("REFRESH MATERIALIZED VIEW CONCURRENTLY mv").1,
            Exclusive
        );
        assert_eq!(single("REFRESH MATERIALIZED VIEW mv").1, AccessExclusive);
        assert_eq!(
            single("CREATE TRIGGER t BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION f()").1,
            ShareRowExclusive
        );
        assert_eq!(
            single("DROP TRIGGER IF EXISTS t ON users"),
            ("users".into(), AccessExclusive, TableWork::None)
        );
    }

    #[test]
    fn new_objects_lock_nothing_existing_but_referenced_tables() {
        let create = analysis(
            "CREATE TABLE IF NOT EXISTS orders (id bigint PRIMARY KEY, user_id bigint REFERENCES users (id))",
        );
        assert_eq!(
            create.locks,
            vec![TableLock::named("users", ShareRowExclusive)]
        );
        assert!(
            analysis("CREATE EXTENSION IF NOT EXISTS pg_trgm")
                .locks
                .is_empty()
        );
        assert!(!analysis("DO $$ BEGIN END $$").known);
        assert!(!analysis("FROBNICATE t").known);
    }

    #[test]
    fn statements_that_write_rows_are_named_by_their_kind() {
        for (sql, kind) in [
            ("INSERT INTO t (a) VALUES (1)", "INSERT"),
            ("insert into t select * from s", "INSERT"),
            ("UPDATE t SET a = 1 WHERE id = 2", "UPDATE"),
            ("DELETE FROM t", "DELETE"),
            (
                "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = s.a",
                "MERGE",
            ),
            ("COPY t (a) FROM STDIN", "COPY ... FROM"),
            ("CREATE TABLE c AS SELECT * FROM t", "CREATE TABLE ... AS"),
            ("SELECT * INTO c FROM t", "SELECT ... INTO"),
            ("DO $$ BEGIN INSERT INTO t VALUES (1); END $$", "DO block"),
            (
                "CREATE MATERIALIZED VIEW m AS SELECT * FROM t",
                "CREATE MATERIALIZED VIEW",
            ),
            ("REFRESH MATERIALIZED VIEW m", "REFRESH MATERIALIZED VIEW"),
            (
                "WITH gone AS (DELETE FROM t WHERE a < 0 RETURNING *) SELECT count(*) FROM gone",
                "WITH ... (a data-modifying WITH)",
            ),
            (
                "WITH s AS (SELECT 1), n AS (INSERT INTO t (a) SELECT * FROM s RETURNING a) SELECT * FROM n",
                "WITH ... (a data-modifying WITH)",
            ),
        ] {
            assert_eq!(writes_rows(sql), Some(kind), "{sql}");
        }
        for sql in [
            "CREATE TABLE t (id bigint)",
            "CREATE TABLE c AS SELECT * FROM t WITH NO DATA",
            "COPY t TO STDOUT",
            "SELECT 1",
            "WITH s AS (SELECT 1) SELECT * FROM s",
            "CREATE INDEX CONCURRENTLY i ON t (a)",
            "ALTER TABLE t ADD COLUMN inserted_at timestamptz",
            "-- INSERT in a comment\nCREATE VIEW v AS SELECT 1 AS update",
            "CREATE MATERIALIZED VIEW m AS SELECT * FROM t WITH NO DATA",
        ] {
            assert_eq!(writes_rows(sql), None, "{sql}");
        }
    }

    #[test]
    fn statements_on_roles_privileges_and_owners_are_named() {
        for (sql, kind) in [
            ("GRANT SELECT ON t TO reporting", "GRANT"),
            ("REVOKE ALL ON t FROM PUBLIC", "REVOKE"),
            ("GRANT reporting TO app", "GRANT"),
            ("CREATE ROLE reporting", "CREATE ROLE"),
            ("CREATE USER app WITH PASSWORD 'x'", "a role statement"),
            ("DROP ROLE IF EXISTS reporting", "a role statement"),
            ("ALTER TABLE t OWNER TO app", "OWNER TO"),
            (
                "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO reporting",
                "ALTER DEFAULT PRIVILEGES",
            ),
        ] {
            assert_eq!(roles_or_privileges(sql), Some(kind), "{sql}");
        }
        for sql in [
            "CREATE TABLE t (owner text, role text)",
            "ALTER TABLE t ADD COLUMN grant_id bigint",
            "CREATE INDEX t_owner ON t (owner)",
        ] {
            assert_eq!(roles_or_privileges(sql), None, "{sql}");
        }
    }
}
