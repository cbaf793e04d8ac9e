//! What the set declares that makes a statement lock tables it does not name: foreign keys
//! (dropping one, its column, its table or changing the column's type takes ACCESS EXCLUSIVE
//! on the other table too; deleting rows runs the `ON DELETE` actions on the referencing
//! tables), views and materialized views (`DROP ... CASCADE` drops them too), and triggers
//! (their function's body runs inside the statement, `DROP FUNCTION ... CASCADE` drops them).
//!
//! [`DeclaredSchema`] is read from the set's statements in order, as PostgreSQL would build
//! the schema; each lock it adds says which declaration causes it. Every lock here was read in
//! `pg_locks` on PostgreSQL 15, and a test that observes them on a real server keeps them
//! checked.
//! What the set does not declare (objects made by hand, by a `DO` block, by an extension) is
//! unknown here: `migrate check` shows what PostgreSQL does.

use std::collections::HashMap;

use sqlparser::ast::{
    AlterColumnOperation, AlterTableOperation, ColumnOption, CreateFunctionBody, DropBehavior,
    Expr, ObjectType, ReferentialAction, RenameTableNameKind, Statement, TableConstraint,
    TableFactor, TriggerEvent, Value,
};

use super::{LockAnalysis, LockMode, TableLock, analyze, name};
use crate::classify::Words;
use crate::splitter::{self, TokenKind};
use crate::sql::{
    ReadStatement, Skipped, ident_key, read_statement, table_key, table_key_is, table_key_of,
};

/// The foreign keys, views, triggers and trigger functions a set has declared so far.
#[derive(Debug, Clone, Default)]
pub struct DeclaredSchema {
    foreign_keys: Vec<ForeignKey>,
    /// Table key → its primary key's columns: what a `REFERENCES t` without columns means.
    primary_keys: HashMap<String, Vec<String>>,
    views: Vec<View>,
    triggers: Vec<Trigger>,
    /// Function key → the locks its body takes (read from its text: `INSERT INTO t`,
    /// `UPDATE t`, `DELETE FROM t`, `REFRESH MATERIALIZED VIEW [CONCURRENTLY] v`).
    function_locks: HashMap<String, Vec<(String, LockMode)>>,
}

#[derive(Debug, Clone)]
struct ForeignKey {
    /// The constraint's name: as declared, else PostgreSQL's default `<table>_<cols>_fkey`.
    name: String,
    /// The referencing table, as written.
    table: String,
    columns: Vec<String>,
    /// The referenced table, as written.
    references: String,
    /// Empty when the declaration names none (the referenced table's primary key).
    referenced_columns: Vec<String>,
    on_delete: Option<ReferentialAction>,
}

#[derive(Debug, Clone)]
struct View {
    name: String,
    materialized: bool,
    /// Keys of the relations its query reads.
    sources: Vec<String>,
}

#[derive(Debug, Clone)]
struct Trigger {
    name: String,
    /// The table, as written.
    table: String,
    function: String,
    events: Vec<Event>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Insert,
    Update,
    Delete,
    Truncate,
}

fn key(written: &str) -> String {
    table_key_of(written)
}

impl DeclaredSchema {
    /// An empty schema: nothing declared yet.
    pub fn new() -> DeclaredSchema {
        DeclaredSchema::default()
    }

    /// The lock analysis of one statement's text (without its `;`) with what the statements
    /// before it declared, then records what it declares itself. Never fails, like
    /// [`super::analyze_sql`].
    pub fn analyze_sql(&mut self, sql: &str) -> LockAnalysis {
        let Ok(tokens) = splitter::tokenize(sql) else {
            return LockAnalysis::unknown();
        };
        let words = Words::new(sql, &tokens);
        let read = read_statement(sql, &words);
        let mut analysis = analyze(&read, &words);
        self.extend(&read, &mut analysis);
        self.record(&read, &words);
        analysis
    }

    /// Adds to `analysis` the locks on other tables that what is declared implies.
    pub(crate) fn extend(&self, read: &ReadStatement, analysis: &mut LockAnalysis) {
        let Some(statement) = read.ast() else {
            return;
        };
        let mut extra = Vec::new();
        match statement {
            Statement::AlterTable(alter) => {
                let table = name(&alter.name);
                for operation in &alter.operations {
                    self.alter_locks(&table, operation, &mut extra);
                }
            }
            Statement::Drop {
                object_type,
                names,
                cascade,
                ..
            } => match object_type {
                ObjectType::Table => {
                    for dropped in names {
                        self.drop_table_locks(&name(dropped), *cascade, &mut extra);
                    }
                }
                ObjectType::View | ObjectType::MaterializedView if *cascade => {
                    for dropped in names {
                        self.dependent_view_locks(&key(&name(dropped)), &mut extra);
                    }
                }
                _ => {}
            },
            Statement::DropFunction(drop) if drop.drop_behavior == Some(DropBehavior::Cascade) => {
                for function in &drop.func_desc {
                    let function = table_key(&function.name);
                    for trigger in self.triggers.iter().filter(|t| t.function == function) {
                        extra.push(lock(
                            &trigger.table,
                            LockMode::AccessExclusive,
                            format!("its trigger calling {function} is dropped with it"),
                            false,
                        ));
                    }
                }
            }
            Statement::Truncate(truncate)
                if truncate.cascade == Some(sqlparser::ast::CascadeOption::Cascade) =>
            {
                for target in &truncate.table_names {
                    self.truncate_cascade_locks(&name(&target.name), &mut extra);
                }
            }
            Statement::Delete(delete) => {
                let tables = match &delete.from {
                    sqlparser::ast::FromTable::WithFromKeyword(tables)
                    | sqlparser::ast::FromTable::WithoutKeyword(tables) => tables,
                };
                for table in tables {
                    if let TableFactor::Table { name: table, .. } = &table.relation {
                        self.delete_locks(&name(table), &mut extra, &mut Vec::new());
                    }
                }
            }
            Statement::Update(update) => {
                if let TableFactor::Table { name: table, .. } = &update.table.relation {
                    self.trigger_locks(&name(table), Event::Update, &mut extra);
                }
            }
            Statement::Insert(insert) => {
                if let sqlparser::ast::TableObject::TableName(table) = &insert.table {
                    self.trigger_locks(&name(table), Event::Insert, &mut extra);
                }
            }
            _ => {}
        }
        for lock in extra {
            add_declared(analysis, lock);
        }
    }

    /// [`DeclaredSchema::extend`] of an `INSERT` into `table` whose tree is gone: the locks
    /// its triggers' bodies take.
    /// `table`: the INSERT's table as [`name`] gives it. `analysis` is copied only when
    /// something is added (the analyses of literal INSERTs are shared).
    pub(crate) fn extend_insert(&self, table: &str, analysis: &mut std::sync::Arc<LockAnalysis>) {
        let mut extra = Vec::new();
        self.trigger_locks(table, Event::Insert, &mut extra);
        if extra.is_empty() {
            return;
        }
        let analysis = std::sync::Arc::make_mut(analysis);
        for lock in extra {
            add_declared(analysis, lock);
        }
    }

    fn alter_locks(
        &self,
        table: &str,
        operation: &AlterTableOperation,
        extra: &mut Vec<TableLock>,
    ) {
        let table_key = key(table);
        match operation {
            AlterTableOperation::DropColumn {
                column_names,
                drop_behavior,
                ..
            } => {
                let columns: Vec<String> = column_names.iter().map(ident_key).collect();
                for fk in self.foreign_keys_of(&table_key) {
                    if fk.columns.iter().any(|c| columns.contains(c)) {
                        extra.push(lock(
                            &fk.references,
                            LockMode::AccessExclusive,
                            format!("the column's foreign key {} references it", fk.name),
                            false,
                        ));
                    }
                }
                if *drop_behavior == Some(DropBehavior::Cascade) {
                    for fk in self.referencing_columns(&table_key, &columns) {
                        extra.push(lock(
                            &fk.table,
                            LockMode::AccessExclusive,
                            format!("its foreign key {} on the column is dropped too", fk.name),
                            false,
                        ));
                    }
                }
            }
            AlterTableOperation::DropConstraint { name: dropped, .. } => {
                let dropped = ident_key(dropped);
                for fk in self.foreign_keys_of(&table_key) {
                    if fk.name == dropped {
                        extra.push(lock(
                            &fk.references,
                            LockMode::AccessExclusive,
                            format!("the foreign key {} references it", fk.name),
                            false,
                        ));
                    }
                }
            }
            AlterTableOperation::AlterColumn {
                column_name,
                op: AlterColumnOperation::SetDataType { .. },
            } => {
                // The foreign keys on both sides are rebuilt for the new type.
                let columns = vec![ident_key(column_name)];
                for fk in self.foreign_keys_of(&table_key) {
                    if fk.columns.iter().any(|c| columns.contains(c)) {
                        extra.push(lock(
                            &fk.references,
                            LockMode::AccessExclusive,
                            format!(
                                "the column's foreign key {} is rebuilt for the new type",
                                fk.name
                            ),
                            false,
                        ));
                    }
                }
                for fk in self.referencing_columns(&table_key, &columns) {
                    extra.push(lock(
                        &fk.table,
                        LockMode::AccessExclusive,
                        format!(
                            "its foreign key {} on the column is rebuilt for the new type",
                            fk.name
                        ),
                        false,
                    ));
                }
            }
            _ => {}
        }
    }

    fn drop_table_locks(&self, table: &str, cascade: bool, extra: &mut Vec<TableLock>) {
        let table_key = key(table);
        for fk in self.foreign_keys_of(&table_key) {
            if !table_key_is(&fk.references, &table_key) {
                extra.push(lock(
                    &fk.references,
                    LockMode::AccessExclusive,
                    format!("the foreign key {} of {table} references it", fk.name),
                    false,
                ));
            }
        }
        if cascade {
            for fk in self
                .foreign_keys
                .iter()
                .filter(|fk| table_key_is(&fk.references, &table_key))
            {
                if !table_key_is(&fk.table, &table_key) {
                    extra.push(lock(
                        &fk.table,
                        LockMode::AccessExclusive,
                        format!(
                            "its foreign key {} to {table} is dropped with CASCADE",
                            fk.name
                        ),
                        false,
                    ));
                }
            }
            self.dependent_view_locks(&table_key, extra);
        }
    }

    /// `DROP ... CASCADE` drops the views and materialized views that read the relation, and
    /// the ones that read those.
    fn dependent_view_locks(&self, relation: &str, extra: &mut Vec<TableLock>) {
        let mut pending = vec![relation.to_owned()];
        let mut seen: Vec<String> = vec![relation.to_owned()];
        while let Some(source) = pending.pop() {
            for view in self.views.iter().filter(|v| v.sources.contains(&source)) {
                let view_key = key(&view.name);
                if seen.contains(&view_key) {
                    continue;
                }
                seen.push(view_key.clone());
                let kind = if view.materialized {
                    "materialized view"
                } else {
                    "view"
                };
                extra.push(lock(
                    &view.name,
                    LockMode::AccessExclusive,
                    format!("a {kind} reading {source}: dropped with CASCADE"),
                    false,
                ));
                pending.push(view_key);
            }
        }
    }

    fn truncate_cascade_locks(&self, table: &str, extra: &mut Vec<TableLock>) {
        let mut pending = vec![key(table)];
        let mut seen = pending.clone();
        while let Some(truncated) = pending.pop() {
            for fk in self
                .foreign_keys
                .iter()
                .filter(|fk| table_key_is(&fk.references, &truncated))
            {
                let referencing = key(&fk.table);
                if seen.contains(&referencing) {
                    continue;
                }
                seen.push(referencing.clone());
                extra.push(lock(
                    &fk.table,
                    LockMode::AccessExclusive,
                    format!(
                        "its foreign key {} references {truncated}: truncated with CASCADE",
                        fk.name
                    ),
                    false,
                ));
                pending.push(referencing);
            }
        }
    }

    /// Deleting rows of `table` runs its `DELETE` triggers and the `ON DELETE` action of every
    /// foreign key referencing it: a cascade deletes (ROW EXCLUSIVE, and on from there), `SET
    /// NULL`/`SET DEFAULT` update (ROW EXCLUSIVE), `NO ACTION`/`RESTRICT` check with `FOR KEY
    /// SHARE` (ROW SHARE). Only when rows are deleted.
    fn delete_locks(&self, table: &str, extra: &mut Vec<TableLock>, seen: &mut Vec<String>) {
        let table_key = key(table);
        if seen.contains(&table_key) {
            return;
        }
        seen.push(table_key.clone());
        self.trigger_locks(table, Event::Delete, extra);
        for fk in self
            .foreign_keys
            .iter()
            .filter(|fk| table_key_is(&fk.references, &table_key))
        {
            let (mode, what) = match fk.on_delete {
                Some(ReferentialAction::Cascade) => (LockMode::RowExclusive, "ON DELETE CASCADE"),
                Some(ReferentialAction::SetNull) => (LockMode::RowExclusive, "ON DELETE SET NULL"),
                Some(ReferentialAction::SetDefault) => {
                    (LockMode::RowExclusive, "ON DELETE SET DEFAULT")
                }
                _ => (LockMode::RowShare, "checked on delete"),
            };
            extra.push(lock(
                &fk.table,
                mode,
                format!("its foreign key {} to {table} is {what}", fk.name),
                true,
            ));
            match fk.on_delete {
                Some(ReferentialAction::Cascade) => self.delete_locks(&fk.table, extra, seen),
                Some(ReferentialAction::SetNull | ReferentialAction::SetDefault) => {
                    self.trigger_locks(&fk.table, Event::Update, extra);
                }
                _ => {}
            }
        }
    }

    /// The locks the bodies of `table`'s triggers on `event` take.
    fn trigger_locks(&self, table: &str, event: Event, extra: &mut Vec<TableLock>) {
        let table_key = key(table);
        for trigger in self
            .triggers
            .iter()
            .filter(|t| table_key_is(&t.table, &table_key) && t.events.contains(&event))
        {
            for (locked, mode) in self
                .function_locks
                .get(&trigger.function)
                .into_iter()
                .flatten()
            {
                extra.push(lock(
                    locked,
                    *mode,
                    format!(
                        "a trigger on {table} runs {}, which locks it",
                        trigger.function
                    ),
                    true,
                ));
            }
        }
    }

    fn foreign_keys_of<'a>(&'a self, table_key: &'a str) -> impl Iterator<Item = &'a ForeignKey> {
        self.foreign_keys
            .iter()
            .filter(move |fk| table_key_is(&fk.table, table_key))
    }

    /// The foreign keys that reference one of `columns` of `table_key`.
    fn referencing_columns<'a>(
        &'a self,
        table_key: &'a str,
        columns: &'a [String],
    ) -> impl Iterator<Item = &'a ForeignKey> {
        self.foreign_keys.iter().filter(move |fk| {
            table_key_is(&fk.references, table_key)
                && self
                    .referenced_columns(fk)
                    .iter()
                    .any(|c| columns.contains(c))
        })
    }

    fn referenced_columns(&self, fk: &ForeignKey) -> Vec<String> {
        if fk.referenced_columns.is_empty() {
            self.primary_keys
                .get(&key(&fk.references))
                .cloned()
                .unwrap_or_default()
        } else {
            fk.referenced_columns.clone()
        }
    }

    /// Records what one statement declares or removes.
    pub(crate) fn record(&mut self, read: &ReadStatement, words: &Words<'_>) {
        if let ReadStatement::Skipped(Skipped::View(view)) = read {
            self.record_view(view.name.clone(), view.materialized, words);
            return;
        }
        let Some(statement) = read.ast() else {
            return;
        };
        match statement {
            Statement::CreateTable(create) => {
                let table = name(&create.name);
                let table_key = key(&table);
                self.forget_table(&table_key);
                for column in &create.columns {
                    let column_name = ident_key(&column.name);
                    for option in &column.options {
                        match &option.option {
                            ColumnOption::ForeignKey(fk) => self.foreign_keys.push(ForeignKey {
                                name: constraint_name(
                                    fk.name.as_ref().map(ident_key),
                                    &table,
                                    std::slice::from_ref(&column_name),
                                ),
                                table: table.clone(),
                                columns: vec![column_name.clone()],
                                references: name(&fk.foreign_table),
                                referenced_columns: fk
                                    .referred_columns
                                    .iter()
                                    .map(ident_key)
                                    .collect(),
                                on_delete: fk.on_delete,
                            }),
                            ColumnOption::PrimaryKey(_) => {
                                self.primary_keys
                                    .insert(table_key.clone(), vec![column_name.clone()]);
                            }
                            _ => {}
                        }
                    }
                }
                for constraint in &create.constraints {
                    self.record_constraint(&table, constraint);
                }
            }
            Statement::CreateView(view) => {
                self.record_view(name(&view.name), view.materialized, words);
            }
            Statement::AlterTable(alter) => {
                let table = name(&alter.name);
                for operation in &alter.operations {
                    self.record_alter(&table, operation);
                }
            }
            Statement::Drop {
                object_type, names, ..
            } => {
                for dropped in names {
                    let dropped = key(&name(dropped));
                    match object_type {
                        ObjectType::Table => self.forget_table(&dropped),
                        ObjectType::View | ObjectType::MaterializedView => {
                            self.views.retain(|v| !table_key_is(&v.name, &dropped));
                        }
                        _ => {}
                    }
                }
            }
            Statement::CreateTrigger(trigger) => {
                if let Some(body) = &trigger.exec_body {
                    let events = trigger
                        .events
                        .iter()
                        .map(|event| match event {
                            TriggerEvent::Insert => Event::Insert,
                            TriggerEvent::Update(_) => Event::Update,
                            TriggerEvent::Delete => Event::Delete,
                            TriggerEvent::Truncate => Event::Truncate,
                        })
                        .collect();
                    self.triggers.push(Trigger {
                        name: table_key(&trigger.name),
                        table: name(&trigger.table_name),
                        function: table_key(&body.func_desc.name),
                        events,
                    });
                }
            }
            Statement::DropTrigger(drop) => {
                if let Some(table) = &drop.table_name {
                    let (table_key, trigger) = (key(&name(table)), table_key(&drop.trigger_name));
                    self.triggers
                        .retain(|t| !(table_key_is(&t.table, &table_key) && t.name == trigger));
                }
            }
            Statement::CreateFunction(function) => {
                let body = match &function.function_body {
                    Some(
                        CreateFunctionBody::AsBeforeOptions { body, .. }
                        | CreateFunctionBody::AsAfterOptions(body),
                    ) => string_of(body),
                    _ => None,
                };
                if let Some(body) = body {
                    self.function_locks
                        .insert(table_key(&function.name), body_locks(&body));
                }
            }
            Statement::DropFunction(drop) => {
                for function in &drop.func_desc {
                    let function = table_key(&function.name);
                    self.function_locks.remove(&function);
                    self.triggers.retain(|t| t.function != function);
                }
            }
            _ => {}
        }
    }

    /// A view (re)created: it replaces one of the same name; its sources come from its tokens.
    fn record_view(&mut self, view_name: String, materialized: bool, words: &Words<'_>) {
        let view_key = key(&view_name);
        self.views.retain(|v| !table_key_is(&v.name, &view_key));
        self.views.push(View {
            name: view_name,
            materialized,
            sources: query_sources(words).iter().map(|s| key(s)).collect(),
        });
    }

    fn record_constraint(&mut self, table: &str, constraint: &TableConstraint) {
        match constraint {
            TableConstraint::ForeignKey(fk) => {
                let columns: Vec<String> = fk.columns.iter().map(ident_key).collect();
                self.foreign_keys.push(ForeignKey {
                    name: constraint_name(fk.name.as_ref().map(ident_key), table, &columns),
                    table: table.to_owned(),
                    columns,
                    references: name(&fk.foreign_table),
                    referenced_columns: fk.referred_columns.iter().map(ident_key).collect(),
                    on_delete: fk.on_delete,
                });
            }
            TableConstraint::PrimaryKey(pk) => {
                self.primary_keys.insert(
                    key(table),
                    pk.columns
                        .iter()
                        .filter_map(|c| match &c.column.expr {
                            Expr::Identifier(ident) => Some(ident_key(ident)),
                            _ => None,
                        })
                        .collect(),
                );
            }
            _ => {}
        }
    }

    fn record_alter(&mut self, table: &str, operation: &AlterTableOperation) {
        let table_key = key(table);
        match operation {
            AlterTableOperation::AddConstraint { constraint, .. } => {
                self.record_constraint(table, constraint);
            }
            AlterTableOperation::AddColumn { column_def, .. } => {
                let column = ident_key(&column_def.name);
                for option in &column_def.options {
                    if let ColumnOption::ForeignKey(fk) = &option.option {
                        self.foreign_keys.push(ForeignKey {
                            name: constraint_name(
                                fk.name.as_ref().map(ident_key),
                                table,
                                std::slice::from_ref(&column),
                            ),
                            table: table.to_owned(),
                            columns: vec![column.clone()],
                            references: name(&fk.foreign_table),
                            referenced_columns: fk.referred_columns.iter().map(ident_key).collect(),
                            on_delete: fk.on_delete,
                        });
                    }
                }
            }
            AlterTableOperation::DropColumn { column_names, .. } => {
                let columns: Vec<String> = column_names.iter().map(ident_key).collect();
                let referenced = |fk: &ForeignKey| self.referenced_columns(fk);
                let gone: Vec<usize> = self
                    .foreign_keys
                    .iter()
                    .enumerate()
                    .filter(|(_, fk)| {
                        (table_key_is(&fk.table, &table_key)
                            && fk.columns.iter().any(|c| columns.contains(c)))
                            || (table_key_is(&fk.references, &table_key)
                                && referenced(fk).iter().any(|c| columns.contains(c)))
                    })
                    .map(|(index, _)| index)
                    .collect();
                for index in gone.into_iter().rev() {
                    self.foreign_keys.remove(index);
                }
            }
            AlterTableOperation::DropConstraint { name: dropped, .. } => {
                let dropped = ident_key(dropped);
                self.foreign_keys
                    .retain(|fk| !(table_key_is(&fk.table, &table_key) && fk.name == dropped));
            }
            AlterTableOperation::RenameColumn {
                old_column_name,
                new_column_name,
            } => {
                let (old, new) = (ident_key(old_column_name), ident_key(new_column_name));
                for fk in &mut self.foreign_keys {
                    if table_key_is(&fk.table, &table_key) {
                        rename_in(&mut fk.columns, &old, &new);
                    }
                    if table_key_is(&fk.references, &table_key) {
                        rename_in(&mut fk.referenced_columns, &old, &new);
                    }
                }
                if let Some(columns) = self.primary_keys.get_mut(&table_key) {
                    rename_in(columns, &old, &new);
                }
            }
            AlterTableOperation::RenameConstraint { old_name, new_name } => {
                let (old, new) = (ident_key(old_name), ident_key(new_name));
                for fk in &mut self.foreign_keys {
                    if table_key_is(&fk.table, &table_key) && fk.name == old {
                        fk.name = new.clone();
                    }
                }
            }
            AlterTableOperation::RenameTable { table_name } => {
                let (RenameTableNameKind::As(new_name) | RenameTableNameKind::To(new_name)) =
                    table_name;
                self.rename_relation(&table_key, &name(new_name));
            }
            _ => {}
        }
    }

    fn rename_relation(&mut self, old_key: &str, new_name: &str) {
        let new_key = key(new_name);
        for fk in &mut self.foreign_keys {
            if table_key_is(&fk.table, old_key) {
                fk.table = new_name.to_owned();
            }
            if table_key_is(&fk.references, old_key) {
                fk.references = new_name.to_owned();
            }
        }
        if let Some(columns) = self.primary_keys.remove(old_key) {
            self.primary_keys.insert(new_key.clone(), columns);
        }
        for view in &mut self.views {
            if table_key_is(&view.name, old_key) {
                view.name = new_name.to_owned();
            }
            rename_in(&mut view.sources, old_key, &new_key);
        }
        for trigger in &mut self.triggers {
            if table_key_is(&trigger.table, old_key) {
                trigger.table = new_name.to_owned();
            }
        }
    }

    /// A table is gone (dropped, or created again): its keys, the keys to it, its triggers.
    fn forget_table(&mut self, table_key: &str) {
        self.foreign_keys.retain(|fk| {
            !table_key_is(&fk.table, table_key) && !table_key_is(&fk.references, table_key)
        });
        self.primary_keys.remove(table_key);
        self.triggers.retain(|t| !table_key_is(&t.table, table_key));
    }
}

fn rename_in(names: &mut [String], old: &str, new: &str) {
    for name in names.iter_mut().filter(|n| *n == old) {
        *name = new.to_owned();
    }
}

/// PostgreSQL's default name of a foreign key: `<table>_<column>[_<column>...]_fkey`
/// (`ChooseConstraintName`), truncated to the identifier limit like the server does for short
/// names only; long ones are not matched by name.
fn constraint_name(declared: Option<String>, table: &str, columns: &[String]) -> String {
    declared.unwrap_or_else(|| format!("{}_{}_fkey", key(table), columns.join("_")))
}

fn lock(table: &str, mode: LockMode, because: String, when_rows_change: bool) -> TableLock {
    TableLock {
        table: table.to_owned(),
        mode,
        because: Some(because),
        when_rows_change,
    }
}

/// Adds a lock the declarations imply, unless the statement already names that table in that
/// mode or a stronger one; its reason goes to the note too, for `plan`'s human output.
fn add_declared(analysis: &mut LockAnalysis, lock: TableLock) {
    let lock_key = key(&lock.table);
    if let Some(existing) = analysis
        .locks
        .iter_mut()
        .find(|l| table_key_is(&l.table, &lock_key))
    {
        if existing.mode >= lock.mode {
            return;
        }
        existing.mode = lock.mode;
        existing.when_rows_change &= lock.when_rows_change;
        if existing.because.is_none() {
            existing.because = lock.because.clone();
        }
    } else {
        analysis.locks.push(lock.clone());
    }
    let when = if lock.when_rows_change {
        " when rows change"
    } else {
        ""
    };
    analysis.add_note(format!(
        "{} on {}{when}: {}",
        lock.mode,
        lock.table,
        lock.because.as_deref().unwrap_or_default()
    ));
}

fn string_of(body: &Expr) -> Option<String> {
    match body {
        Expr::Value(value) => match &value.value {
            Value::DollarQuotedString(dollar) => Some(dollar.value.clone()),
            Value::SingleQuotedString(text) | Value::EscapedStringLiteral(text) => {
                Some(text.clone())
            }
            _ => None,
        },
        _ => None,
    }
}

/// The table locks a function body's statements take, read from its keywords: a PL/pgSQL
/// body is not SQL sqlparser can read whole.
fn body_locks(body: &str) -> Vec<(String, LockMode)> {
    let Ok(tokens) = splitter::tokenize(body) else {
        return Vec::new();
    };
    let words = Words::new(body, &tokens);
    let keyword = |i: usize| words.keyword(i).unwrap_or_default();
    let relation = |i: usize| -> Option<String> {
        let token = words.iter().nth(i)?;
        if !matches!(token.kind, TokenKind::Word | TokenKind::QuotedIdent) {
            return None;
        }
        Some(name_of(words.text(i)?))
    };
    let mut locks: Vec<(String, LockMode)> = Vec::new();
    let mut add = |table: Option<String>, mode: LockMode| {
        if let Some(table) = table {
            match locks.iter_mut().find(|(t, _)| key(t) == key(&table)) {
                Some(existing) => existing.1 = existing.1.max(mode),
                None => locks.push((table, mode)),
            }
        }
    };
    for i in 0..words.len() {
        match keyword(i).as_str() {
            "INSERT" if keyword(i + 1) == "INTO" => add(relation(i + 2), LockMode::RowExclusive),
            "DELETE" if keyword(i + 1) == "FROM" => add(relation(i + 2), LockMode::RowExclusive),
            // Not `DO UPDATE SET`, `FOR UPDATE`, `BEFORE UPDATE`.
            "UPDATE"
                if keyword(i + 1) != "SET"
                    && !matches!(
                        keyword(i.wrapping_sub(1)).as_str(),
                        "FOR" | "DO" | "OR" | "BEFORE" | "AFTER" | "NO" | "KEY"
                    ) =>
            {
                let at = if keyword(i + 1) == "ONLY" {
                    i + 2
                } else {
                    i + 1
                };
                add(relation(at), LockMode::RowExclusive);
            }
            "REFRESH" if keyword(i + 1) == "MATERIALIZED" && keyword(i + 2) == "VIEW" => {
                if keyword(i + 3) == "CONCURRENTLY" {
                    add(relation(i + 4), LockMode::Exclusive);
                } else {
                    add(relation(i + 3), LockMode::AccessExclusive);
                }
            }
            _ => {}
        }
    }
    locks
}

/// A name as written, possibly `schema.name` over three tokens: only its first part here.
fn name_of(text: &str) -> String {
    crate::classify::normalize_identifier(text)
}

/// The relations a query reads, as written after `FROM` and `JOIN` (and after the commas of
/// a `FROM` list), without the names its `WITH` defines. From keywords: good enough to know
/// which views depend on which relations.
pub(super) fn query_sources(words: &Words<'_>) -> Vec<String> {
    let keyword = |i: usize| words.keyword(i).unwrap_or_default();
    let tokens: Vec<_> = words.iter().collect();
    let is_name = |i: usize| {
        tokens
            .get(i)
            .is_some_and(|t| matches!(t.kind, TokenKind::Word | TokenKind::QuotedIdent))
    };
    // `name AS (`: a WITH query's name.
    let mut ctes: Vec<String> = Vec::new();
    for i in 0..tokens.len() {
        if is_name(i) && keyword(i + 1) == "AS" && words.text(i + 2) == Some("(") {
            ctes.push(key(words.text(i).unwrap_or_default()));
        }
    }
    let mut sources: Vec<String> = Vec::new();
    let push = |at: usize, sources: &mut Vec<String>| {
        let mut at = at;
        while matches!(keyword(at).as_str(), "ONLY" | "LATERAL") {
            at += 1;
        }
        if !is_name(at) || keyword(at) == "SELECT" {
            return;
        }
        // `schema . name`
        let mut written = words.text(at).unwrap_or_default().to_owned();
        while words.text(at + 1) == Some(".") && is_name(at + 2) {
            written.push('.');
            written.push_str(words.text(at + 2).unwrap_or_default());
            at += 2;
        }
        let written = name_of(&written);
        if !ctes.contains(&key(&written)) && !sources.contains(&written) {
            sources.push(written);
        }
    };
    // Depth of parentheses at which a FROM list is open.
    let mut depth = 0usize;
    let mut from_at: Vec<usize> = Vec::new();
    for i in 0..tokens.len() {
        match words.text(i) {
            Some("(") => depth += 1,
            Some(")") => {
                from_at.retain(|d| *d < depth);
                depth = depth.saturating_sub(1);
            }
            Some(",") if from_at.last() == Some(&depth) => push(i + 1, &mut sources),
            _ => match keyword(i).as_str() {
                "FROM" | "JOIN" => {
                    if keyword(i) == "FROM" {
                        from_at.retain(|d| *d < depth);
                        from_at.push(depth);
                    }
                    push(i + 1, &mut sources);
                }
                "WHERE" | "GROUP" | "HAVING" | "ORDER" | "LIMIT" | "UNION" | "EXCEPT"
                | "INTERSECT" | "WINDOW" => {
                    from_at.retain(|d| *d < depth);
                }
                _ => {}
            },
        }
    }
    sources
}

#[cfg(test)]
mod tests {
    use super::*;
    use LockMode::*;

    /// The locks of the last statement after the ones before it, as `(table, mode, because)`.
    fn last(statements: &[&str]) -> Vec<(String, LockMode, bool)> {
        let mut schema = DeclaredSchema::new();
        let mut analysis = None;
        for sql in statements {
            analysis = Some(schema.analyze_sql(sql));
        }
        analysis
            .expect("a statement")
            .locks
            .into_iter()
            .map(|l| (l.table, l.mode, l.because.is_some()))
            .collect()
    }

    const SCHEMA: &[&str] = &[
        "CREATE TABLE person (id bigint PRIMARY KEY)",
        "CREATE TABLE community (id bigint PRIMARY KEY, creator_id bigint REFERENCES person ON DELETE CASCADE)",
        "CREATE TABLE post (id bigint PRIMARY KEY, community_id bigint, CONSTRAINT post_community_fk FOREIGN KEY (community_id) REFERENCES community (id) ON DELETE SET NULL)",
        "CREATE TABLE mod_log (id bigint, person_id bigint)",
        "ALTER TABLE mod_log ADD CONSTRAINT mod_log_person_fk FOREIGN KEY (person_id) REFERENCES person (id)",
        "CREATE VIEW community_view AS SELECT c.id, p.id AS person FROM community c JOIN person p ON p.id = c.creator_id",
        "CREATE MATERIALIZED VIEW community_mview AS SELECT * FROM community_view",
        "CREATE MATERIALIZED VIEW post_counts AS WITH counted AS (SELECT community_id FROM post) SELECT count(*) FROM counted",
        "CREATE FUNCTION refresh_counts() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN REFRESH MATERIALIZED VIEW CONCURRENTLY post_counts; INSERT INTO mod_log (id) VALUES (1); RETURN NULL; END $$",
        "CREATE TRIGGER post_counts_refresh AFTER DELETE ON post FOR EACH STATEMENT EXECUTE FUNCTION refresh_counts()",
    ];

    fn after_schema(sql: &str) -> Vec<(String, LockMode, bool)> {
        let mut statements = SCHEMA.to_vec();
        statements.push(sql);
        last(&statements)
    }

    fn has(locks: &[(String, LockMode, bool)], table: &str, mode: LockMode) -> bool {
        locks
            .iter()
            .any(|(t, m, because)| t == table && *m == mode && *because)
    }

    #[test]
    fn dropping_a_foreign_key_its_column_or_its_table_locks_the_referenced_table() {
        let drop_column = after_schema("ALTER TABLE community DROP COLUMN creator_id");
        assert!(
            has(&drop_column, "person", AccessExclusive),
            "{drop_column:?}"
        );
        let default_name =
            after_schema("ALTER TABLE community DROP CONSTRAINT community_creator_id_fkey");
        assert!(
            has(&default_name, "person", AccessExclusive),
            "{default_name:?}"
        );
        let named = after_schema("ALTER TABLE mod_log DROP CONSTRAINT mod_log_person_fk");
        assert!(has(&named, "person", AccessExclusive), "{named:?}");
        let table = after_schema("DROP TABLE post");
        assert!(has(&table, "community", AccessExclusive), "{table:?}");
        let retyped = after_schema("ALTER TABLE person ALTER COLUMN id TYPE integer");
        assert!(has(&retyped, "community", AccessExclusive), "{retyped:?}");
        assert!(has(&retyped, "mod_log", AccessExclusive), "{retyped:?}");
        // A column without a foreign key locks its table only.
        assert_eq!(
            after_schema("ALTER TABLE post DROP COLUMN id"),
            vec![("post".to_owned(), AccessExclusive, false)]
        );
    }

    #[test]
    fn cascades_reach_the_referencing_tables_and_dependent_views() {
        let table = after_schema("DROP TABLE person CASCADE");
        assert!(has(&table, "community", AccessExclusive), "{table:?}");
        assert!(has(&table, "mod_log", AccessExclusive), "{table:?}");
        assert!(has(&table, "community_view", AccessExclusive), "{table:?}");
        assert!(has(&table, "community_mview", AccessExclusive), "{table:?}");
        let view = after_schema("DROP VIEW community_view CASCADE");
        assert!(has(&view, "community_mview", AccessExclusive), "{view:?}");
        assert!(!has(&view, "person", AccessExclusive), "{view:?}");
        let plain = after_schema("DROP VIEW community_view");
        assert_eq!(plain.len(), 1, "{plain:?}");
        let truncate = after_schema("TRUNCATE person CASCADE");
        assert!(has(&truncate, "post", AccessExclusive), "{truncate:?}");
    }

    #[test]
    fn deleting_rows_runs_the_on_delete_actions_and_triggers() {
        let delete = after_schema("DELETE FROM person WHERE id = 1");
        assert!(has(&delete, "community", RowExclusive), "{delete:?}");
        assert!(has(&delete, "post", RowExclusive), "{delete:?}");
        // NO ACTION: the referencing rows are checked with FOR KEY SHARE.
        assert!(has(&delete, "mod_log", RowShare), "{delete:?}");
        let triggered = after_schema("DELETE FROM post WHERE id = 1");
        assert!(has(&triggered, "post_counts", Exclusive), "{triggered:?}");
        assert!(has(&triggered, "mod_log", RowExclusive), "{triggered:?}");
        let function = after_schema("DROP FUNCTION refresh_counts() CASCADE");
        assert!(has(&function, "post", AccessExclusive), "{function:?}");
    }

    #[test]
    fn renames_and_drops_are_followed() {
        let mut statements = SCHEMA.to_vec();
        statements.push("ALTER TABLE person RENAME TO people");
        statements.push("ALTER TABLE community RENAME COLUMN creator_id TO owner_id");
        statements.push("ALTER TABLE community DROP COLUMN owner_id");
        let locks = last(&statements);
        assert!(has(&locks, "people", AccessExclusive), "{locks:?}");
        statements.push("ALTER TABLE community DROP COLUMN IF EXISTS owner_id");
        assert_eq!(last(&statements).len(), 1, "the key went with its column");
    }

    #[test]
    fn a_query_filling_a_new_relation_scans_its_sources() {
        let view = super::super::analyze_sql(
            "CREATE MATERIALIZED VIEW m AS SELECT * FROM a JOIN b ON true, c",
        );
        assert_eq!(view.work, super::super::TableWork::Scan);
        let note = view.note.unwrap_or_default();
        assert!(note.contains("a, b, c"), "{note}");
        let table = super::super::analyze_sql("CREATE TABLE t AS SELECT * FROM a");
        assert_eq!(table.work, super::super::TableWork::Scan);
        let empty =
            super::super::analyze_sql("CREATE MATERIALIZED VIEW m AS SELECT * FROM a WITH NO DATA");
        assert_eq!(empty.work, super::super::TableWork::None);
    }
}
