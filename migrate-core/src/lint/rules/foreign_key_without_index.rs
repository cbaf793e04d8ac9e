//! `foreign-key-without-index`

use sqlparser::ast::{
    AlterTableOperation, ColumnOption, ForeignKeyConstraint, Statement, TableConstraint,
};

use super::declared_indexes::declared_indexes;
use super::quoted;
use crate::classify::{Words, text_mentions};
use crate::lint::{Check, Example, Finding, Level, Rule, RuleMemory, StatementContext};
use crate::migration::display_identifier;
use crate::source::{ParsedFile, SectionKind, StatementSource};
use crate::sql::{ident_key, parse_statement_of, table_key};

/// The `foreign-key-without-index` rule: its documentation, examples and check.
/// `migrate explain foreign-key-without-index` prints it.
pub static RULE: Rule = Rule {
    id: "foreign-key-without-index",
    default_level: Level::Warn,
    summary: "A foreign key's columns need an index on the referencing table, somewhere in the set.",
    explanation: "PostgreSQL indexes the referenced key, never the referencing columns. Without an \
index there, every DELETE of a parent row (and every UPDATE of its key) scans the whole child \
table to check for references, holding its row locks meanwhile; `ON DELETE CASCADE` turns one \
delete into a table scan per child table. The cost grows with the child table until deletes \
time out. The rule looks for an index, primary key or unique constraint whose leading columns \
are the foreign key's, created anywhere in the set (a later migration may add it \
CONCURRENTLY). Warns by default.",
    rewrite: "CREATE INDEX CONCURRENTLY IF NOT EXISTS <child>_<columns>_idx ON <child> (<columns>);",
    bad: &[Example {
        file_name: "0002_comments.expand.sql",
        sql: "CREATE TABLE IF NOT EXISTS comments (\n    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n    post_id bigint NOT NULL REFERENCES posts (id),\n    body text NOT NULL\n);",
    }],
    good: &[Example {
        file_name: "0002_comments.expand.sql",
        sql: "CREATE TABLE IF NOT EXISTS comments (\n    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n    post_id bigint NOT NULL REFERENCES posts (id),\n    body text NOT NULL\n);\n\
CREATE INDEX IF NOT EXISTS comments_post_id_idx ON comments (post_id);\n\
CREATE TABLE IF NOT EXISTS post_tags (\n    post_id bigint NOT NULL REFERENCES posts (id),\n    tag text NOT NULL,\n    PRIMARY KEY (post_id, tag)\n);",
    }],
    check: Check::WithMemory(SetIndexes::start),
};

/// `(table, leading columns)` of every index the set's up parts create (indexes, primary
/// keys, unique constraints), whichever file creates them: a later migration may add the
/// index a foreign key needs.
#[derive(Default)]
struct SetIndexes {
    indexes: Vec<(String, Vec<String>)>,
}

impl SetIndexes {
    fn start() -> Box<dyn RuleMemory> {
        Box::<SetIndexes>::default()
    }

    /// True when some index of the set starts with exactly `columns` (in any order), so a
    /// lookup by those columns (a foreign key check) can use it.
    fn has_index_leading_with(&self, table: &str, columns: &[String]) -> bool {
        let mut wanted: Vec<&String> = columns.iter().collect();
        wanted.sort();
        self.indexes.iter().any(|(indexed_table, indexed)| {
            if indexed_table != table || indexed.len() < columns.len() {
                return false;
            }
            let mut leading: Vec<&String> = indexed[..columns.len()].iter().collect();
            leading.sort();
            leading == wanted
        })
    }

    /// Records the indexes a statement creates.
    fn record_indexes(&mut self, statement: &Statement) {
        self.indexes.extend(
            declared_indexes(statement)
                .into_iter()
                .map(|index| (index.table, index.columns)),
        );
    }
}

/// A file's up statements.
fn up_statements(file: &ParsedFile) -> impl Iterator<Item = &StatementSource> {
    file.statements
        .iter()
        .filter(|s| s.section == SectionKind::Up)
}

/// True when the statement has the word `REFERENCES` (not in a string, comment or body).
fn has_references(file: &ParsedFile, statement: &StatementSource) -> bool {
    // Lexed only when the word is somewhere in its text.
    text_mentions(file.text(statement), "REFERENCES")
        && Words::new(&file.source, &file.tokens(statement)).contains("REFERENCES")
}

impl RuleMemory for SetIndexes {
    /// The indexes of the whole set, before the first statement. Only when some statement
    /// declares a foreign key (`REFERENCES`, from the tokens), and only index-making
    /// statements are parsed, so sets without foreign keys pay nothing.
    fn start_set(&mut self, files: &[&ParsedFile]) {
        if !files
            .iter()
            .any(|file| up_statements(file).any(|s| has_references(file, s)))
        {
            return;
        }
        // Parsing is most of the cost: each file on any core, the indexes kept in file order.
        let threads = crate::parallel::threads_for(files.len());
        let per_file = crate::parallel::map_in_order(files, threads, |file| {
            let mut indexes = SetIndexes::default();
            for statement in up_statements(file) {
                // Lexed whole only when the leading keywords may make an index.
                let head = file.head_tokens(statement, 3);
                let head = Words::new(&file.source, &head);
                let (creates, alters) = (
                    head.starts_with(&["CREATE", "INDEX"])
                        || head.starts_with(&["CREATE", "UNIQUE", "INDEX"])
                        || head.starts_with(&["CREATE", "TABLE"]),
                    head.starts_with(&["ALTER", "TABLE"]),
                );
                let text = file.text(statement);
                if !creates
                    && !(alters
                        && (text_mentions(text, "PRIMARY") || text_mentions(text, "UNIQUE")))
                {
                    continue;
                }
                let tokens = file.tokens(statement);
                let words = Words::new(&file.source, &tokens);
                let makes_index = creates || words.contains("PRIMARY") || words.contains("UNIQUE");
                if makes_index && let Ok(ast) = parse_statement_of(file.text(statement), &words) {
                    indexes.record_indexes(&ast);
                }
            }
            indexes.indexes
        });
        self.indexes.extend(per_file.into_iter().flatten());
    }

    fn check(&self, context: &StatementContext<'_>, findings: &mut Vec<Finding>) {
        let (table, foreign_keys) = match context.ast {
            Some(Statement::CreateTable(create)) => {
                let mut keys: Vec<ForeignKeyColumns> = create
                    .constraints
                    .iter()
                    .filter_map(|c| match c {
                        TableConstraint::ForeignKey(fk) => {
                            let (columns, parent) = columns_of(fk);
                            Some((columns, parent, None))
                        }
                        _ => None,
                    })
                    .collect();
                for column in &create.columns {
                    for option in &column.options {
                        if let ColumnOption::ForeignKey(fk) = &option.option {
                            keys.push((
                                vec![ident_key(&column.name)],
                                fk.foreign_table.to_string(),
                                None,
                            ));
                        }
                    }
                }
                (create.name.clone(), keys)
            }
            Some(Statement::AlterTable(alter)) => {
                let keys = alter
                    .operations
                    .iter()
                    .filter_map(|operation| match operation {
                        AlterTableOperation::AddConstraint {
                            constraint: TableConstraint::ForeignKey(fk),
                            ..
                        } => {
                            let (columns, parent) = columns_of(fk);
                            Some((columns, parent, context.action_position(operation)))
                        }
                        _ => None,
                    })
                    .collect();
                (alter.name.clone(), keys)
            }
            _ => return,
        };
        let key = table_key(&table);
        for (columns, parent, at) in foreign_keys {
            if columns.is_empty() || self.has_index_leading_with(&key, &columns) {
                continue;
            }
            // The columns are exact names: shown as a statement would write them.
            let list = columns
                .iter()
                .map(|column| display_identifier(column))
                .collect::<Vec<_>>()
                .join(", ");
            let index = display_identifier(&format!("{key}_{}_idx", columns.join("_")));
            findings.push(
                Finding::at_action(at, format!(
                    "no index on {table} ({list}): every DELETE from {} (and every key UPDATE) scans {} to check the foreign key",
                    quoted(&parent),
                    quoted(&table)
                ))
                .help(format!(
                    "CREATE INDEX CONCURRENTLY IF NOT EXISTS {index} ON {table} ({list}); (in its own migration)"
                )),
            );
        }
    }
}

/// A foreign key's columns (exact names), the table it references as written, and where the
/// action adding it starts when not at its statement's start.
type ForeignKeyColumns = (Vec<String>, String, Option<(u32, u32)>);

/// The columns of a PRIMARY KEY or UNIQUE constraint (each builds an index).
fn columns_of(fk: &ForeignKeyConstraint) -> (Vec<String>, String) {
    (
        fk.columns.iter().map(ident_key).collect(),
        fk.foreign_table.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::lint_example;

    #[test]
    fn examples() {
        crate::lint::testing::check_examples(&super::RULE);
    }

    #[test]
    fn an_index_added_by_a_later_migration_counts() {
        let set = "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;\n\
-- file: 0002_b.expand.sql\n\
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_user_id_idx ON orders (user_id);";
        assert_eq!(lint_example("0001_a.expand.sql", set), vec![]);
    }
    #[test]
    fn an_index_on_other_leading_columns_does_not_count() {
        let sql = "CREATE TABLE IF NOT EXISTS likes (user_id bigint REFERENCES users (id), post_id bigint REFERENCES posts (id), PRIMARY KEY (user_id, post_id));";
        let found: Vec<String> = lint_example("0001_likes.expand.sql", sql)
            .iter()
            .map(|d| d.message.clone())
            .collect();
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("likes (post_id)"), "{found:?}");
    }
}
