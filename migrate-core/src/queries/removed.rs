//! What a contract removes, read from its statements with the linter's statement model, and
//! whether a query names it.
//!
//! The contract gate decides from this, never by trying the contract on production. The
//! decision is deliberately conservative: a query that names the table and the column (or
//! `*`, or an `INSERT` into the table without a column list) counts as using the column, even
//! where an alias would have told PostgreSQL it is another table's. Refusing a contract a
//! little too often costs a wait; running one that breaks the old release costs an outage.

#[cfg(feature = "lint")]
use sqlparser::ast::{AlterColumnOperation, AlterTableOperation, ObjectType, Statement};

use crate::classify::normalize_identifier;
#[cfg(feature = "lint")]
use crate::migration::Migration;
pub use crate::migration::{Removal, RemovedObject};
use crate::splitter::{self, TokenKind};
#[cfg(feature = "lint")]
use crate::sql::{ident_key, parse_statement, table_key};

/// Everything `migration`'s up part drops, renames or retypes. A statement sqlparser cannot
/// read contributes nothing.
#[cfg(feature = "lint")]
pub fn removed_by(migration: &Migration) -> Vec<RemovedObject> {
    let mut removed = Vec::new();
    for statement in migration.up.statements.iter() {
        let Ok(ast) = parse_statement(&statement.sql) else {
            continue;
        };
        let mut push = |kind, name: String, column: Option<String>, removal| {
            removed.push(RemovedObject {
                kind,
                name: name.into(),
                column: column.map(Into::into),
                removal,
                line: statement.line,
            })
        };
        match ast {
            Statement::Drop {
                object_type, names, ..
            } => {
                let kind = match object_type {
                    ObjectType::Table => "table",
                    ObjectType::View | ObjectType::MaterializedView => "view",
                    ObjectType::Sequence => "sequence",
                    ObjectType::Type => "type",
                    _ => continue,
                };
                for name in &names {
                    push(kind, table_key(name), None, Removal::Dropped);
                }
            }
            Statement::DropFunction(drop) => {
                for function in &drop.func_desc {
                    push(
                        "function",
                        table_key(&function.name),
                        None,
                        Removal::Dropped,
                    );
                }
            }
            Statement::AlterTable(alter) => {
                let table = table_key(&alter.name);
                for operation in &alter.operations {
                    match operation {
                        AlterTableOperation::DropColumn { column_names, .. } => {
                            for column in column_names {
                                push(
                                    "column",
                                    table.clone(),
                                    Some(ident_key(column)),
                                    Removal::Dropped,
                                );
                            }
                        }
                        AlterTableOperation::RenameColumn {
                            old_column_name,
                            new_column_name,
                        } => push(
                            "column",
                            table.clone(),
                            Some(ident_key(old_column_name)),
                            Removal::Renamed {
                                to: ident_key(new_column_name).into(),
                            },
                        ),
                        AlterTableOperation::RenameTable { table_name } => push(
                            "table",
                            table.clone(),
                            None,
                            Removal::Renamed {
                                to: new_table_name(&table_name.to_string()).into(),
                            },
                        ),
                        AlterTableOperation::AlterColumn {
                            column_name,
                            op: AlterColumnOperation::SetDataType { .. },
                        } => push(
                            "column",
                            table.clone(),
                            Some(ident_key(column_name)),
                            Removal::Retyped,
                        ),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    removed
}

/// `TO new_name` as sqlparser prints it, folded.
#[cfg(feature = "lint")]
fn new_table_name(printed: &str) -> String {
    let name = printed.trim();
    let name = name
        .strip_prefix("TO ")
        .or_else(|| name.strip_prefix("AS "))
        .unwrap_or(name);
    let folded = normalize_identifier(name.trim());
    folded.rsplit('.').next().unwrap_or_default().to_owned()
}

/// The names a query mentions, folded, and whether it reads whole rows of a table.
struct Mentions {
    names: Vec<String>,
    star: bool,
    /// Tables an `INSERT INTO t` without a column list writes whole rows of.
    whole_row_inserts: Vec<String>,
}

fn mentions(query: &str) -> Mentions {
    let mut mentions = Mentions {
        names: Vec::new(),
        star: false,
        whole_row_inserts: Vec::new(),
    };
    let Ok(tokens) = splitter::tokenize(query) else {
        // A query that does not lex: every word counts, the safe side for a gate.
        mentions.star = true;
        mentions.names = query
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map(str::to_lowercase)
            .collect();
        return mentions;
    };
    let significant: Vec<_> = tokens.iter().filter(|t| !t.is_comment()).collect();
    for (index, token) in significant.iter().enumerate() {
        let text = token.text(query);
        match token.kind {
            TokenKind::Word | TokenKind::QuotedIdent => {
                for part in normalize_identifier(text).split('.') {
                    mentions.names.push(part.to_owned());
                }
                let after_into = index >= 2
                    && significant[index - 1].is_word(query, "into")
                    && significant[index - 2].is_word(query, "insert");
                if after_into {
                    let mut next = index + 1;
                    // `schema . table` is three tokens when the splitter keeps dots apart.
                    while next + 1 < significant.len() && significant[next].text(query) == "." {
                        next += 2;
                    }
                    let followed_by_list =
                        significant.get(next).is_some_and(|t| t.text(query) == "(");
                    if !followed_by_list {
                        let name = normalize_identifier(significant[next - 1].text(query));
                        mentions
                            .whole_row_inserts
                            .push(name.rsplit('.').next().unwrap_or_default().to_owned());
                    }
                }
            }
            // `count(*)` reads no column; `*`, `t.*`, `RETURNING *` read them all.
            TokenKind::Punct if text == "*" => {
                let in_call = index > 0 && significant[index - 1].text(query) == "(";
                if !in_call {
                    mentions.star = true;
                }
            }
            _ => {}
        }
    }
    mentions
}

/// Whether `query` names the relation written `relation` (`public."Orders"`; folded, schema
/// ignored), e.g. to leave out the runtime's own statements on its history table.
pub fn names_relation(query: &str, relation: &str) -> bool {
    // The table part, folded as PostgreSQL folds it.
    let folded = normalize_identifier(relation);
    let name = folded.rsplit('.').next().unwrap_or_default();
    mentions(query)
        .names
        .iter()
        .any(|mentioned| mentioned == name)
}

impl RemovedObject {
    /// Whether `query` names this object (see the module docs for the conservative reading).
    pub fn used_by(&self, query: &str) -> bool {
        let mentions = mentions(query);
        let names = |name: &str| mentions.names.iter().any(|n| n == name);
        if !names(&self.name) {
            return false;
        }
        match &self.column {
            None => true,
            Some(column) => {
                names(column)
                    || mentions.star
                    || mentions.whole_row_inserts.iter().any(|t| *t == self.name)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::migration::{Phase, Section, Statement as MigrationStatement, TransactionMode};

    fn contract(sql: &[&str]) -> Migration {
        Migration {
            version: 3,
            name: Cow::Borrowed("drop_old"),
            phase: Phase::Contract,
            file_name: Cow::Borrowed("0003_drop_old.contract.sql"),
            checksum: crate::checksum::Checksum::of_file(b""),
            up: Section {
                statements: sql
                    .iter()
                    .enumerate()
                    .map(|(i, s)| MigrationStatement {
                        sql: Cow::Owned((*s).to_owned()),
                        line: i as u32 + 1,
                        column: 1,
                        non_transactional: false,
                    })
                    .collect(),
                mode: TransactionMode::Transactional,
                file_name: None,
            },
            down: None,
            requires: None,
            backfill: None,
            compare: None,
            compare_line: None,
            requires_compare: false,
            replaces: Cow::Borrowed(&[]),
            analysis: None,
        }
    }

    #[test]
    fn a_contract_tells_what_it_drops_renames_and_retypes() {
        let removed = removed_by(&contract(&[
            "ALTER TABLE public.Users DROP COLUMN legacy_name, DROP COLUMN \"Old\"",
            "ALTER TABLE orders RENAME COLUMN total TO amount",
            "ALTER TABLE carts RENAME TO baskets",
            "DROP VIEW IF EXISTS user_names",
            "ALTER TABLE users ALTER COLUMN age TYPE bigint",
            "DROP FUNCTION full_name(users)",
            "CREATE INDEX CONCURRENTLY i ON users (email)",
        ]));
        let shown: Vec<String> = removed.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "column users.legacy_name (dropped)",
                "column users.Old (dropped)",
                "column orders.total (renamed to amount)",
                "table carts (renamed to baskets)",
                "view user_names (dropped)",
                "column users.age (type changed)",
                "function full_name (dropped)",
            ]
        );
        assert_eq!(removed[2].line, 2);
    }

    #[test]
    fn a_query_uses_a_column_it_names_or_reads_whole_rows_of() {
        let dropped = &removed_by(&contract(&["ALTER TABLE users DROP COLUMN legacy_name"]))[0];
        for query in [
            "SELECT legacy_name FROM users WHERE id = $1",
            "SELECT u.\"legacy_name\" FROM public.users u",
            "SELECT * FROM users",
            "SELECT u.* FROM users u",
            "DELETE FROM users WHERE id = $1 RETURNING *",
            "INSERT INTO archive SELECT * FROM users",
            "INSERT INTO users VALUES ($1, $2, $3)",
            "UPDATE users SET legacy_name = $1 WHERE id = $2",
            "WITH x AS (SELECT id, legacy_name FROM users) SELECT id FROM x",
        ] {
            assert!(dropped.used_by(query), "{query}");
        }
        for query in [
            "SELECT id, email FROM users WHERE id = $1",
            "SELECT legacy_name FROM customers",
            "INSERT INTO users (id, email) VALUES ($1, $2)",
            "SELECT 1 -- users legacy_name",
            "SELECT count(*) FROM users WHERE email = $1",
        ] {
            assert!(!dropped.used_by(query), "{query}");
        }
        let table = &removed_by(&contract(&["DROP TABLE carts"]))[0];
        assert!(table.used_by("DELETE FROM Carts WHERE id = $1"));
        assert!(!table.used_by("DELETE FROM baskets WHERE id = $1"));
    }
}
