//! One file per rule: its id, documentation, examples and check, and for a rule that remembers
//! earlier statements (held locks, validated checks, the set's indexes) that memory too, as a
//! `RuleMemory` the engine drives. The examples are whole migration files; each rule's tests
//! run them (bad ones must be caught, good ones must be clean under every rule).

pub mod autocommit_rerun_unsafe;
pub mod blocking_statement;
pub mod column_type_change;
pub mod constraint_not_valid;
mod declared_indexes;
pub mod destructive_cascade;
pub mod drop_in_expand;
pub mod enum_value_same_transaction;
pub mod exclusion_constraint;
pub mod foreign_key_without_index;
pub mod identifier_too_long;
pub mod lock_held_across_statements;
pub mod prefer_robust_types;
pub mod require_concurrent_index;
pub mod require_if_not_exists;
pub mod session_setting;
pub mod set_not_null_scan;
pub mod table_persistence_change;
pub mod transaction_control;
pub mod unbounded_update;
pub mod unique_via_index;
pub mod unparseable;
pub mod volatile_default;

use sqlparser::ast::{AlterTable, AlterTableOperation, Statement};

use super::StatementContext;

/// The operations of an `ALTER TABLE` on a table that existed before this file: operations
/// on a table created earlier in the same part are exempt from lock and rewrite rules (it is
/// empty and no other session can see it yet).
pub(crate) fn existing_table_operations<'a>(
    context: &StatementContext<'a>,
) -> Option<(&'a AlterTable, &'a [AlterTableOperation])> {
    match context.ast {
        Some(Statement::AlterTable(alter)) if !context.is_new_table(&alter.name) => {
            Some((alter, alter.operations.as_slice()))
        }
        _ => None,
    }
}

/// A name for messages, between double quotes: `"users"`, `"public.users"`. A name written
/// with quoted parts (`"Envelope"`, `app."Orders"`) is shown as written, never quoted twice
/// (`""Envelope""`).
pub(crate) fn quoted(name: impl std::fmt::Display) -> String {
    let written = name.to_string();
    if written.contains('"') {
        written
    } else {
        format!("\"{written}\"")
    }
}
