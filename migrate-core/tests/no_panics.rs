//! Bad input gets a diagnostic, never a panic: random SQL-ish text through the loader, the
//! splitter, the linter and the lock analysis.

use migrate_core::lint::{Config, lint_files, rule};
use migrate_core::source::{SourceFile, load_files};

/// Pieces that stress the lexer: quotes of every kind, dollar tags, comments, directives,
/// multi-byte characters, keywords the rules look for.
const RISKY: &[&str] = &[
    "'",
    "''",
    "E'",
    "\\'",
    "\"",
    "$$",
    "$a$",
    "$",
    "--",
    "-- migrate:allow unparseable x\n",
    "-- migrate:down\n",
    "-- migrate:up\n",
    "/*",
    "*/",
    "é",
    "日本",
];
const PIECES: &[&str] = &[
    ";",
    "(",
    ")",
    "\n",
    " ",
    "$1",
    "'text'",
    "$$ body; $$",
    "/* c */",
    "-- c\n",
    "CREATE",
    "INDEX",
    "CONCURRENTLY",
    "TABLE",
    "IF",
    "NOT",
    "EXISTS",
    "DROP",
    "ALTER",
    "ADD",
    "COLUMN",
    "UPDATE",
    "SET",
    "WHERE",
    "DELETE",
    "FROM",
    "BEGIN",
    "ATOMIC",
    "END",
    "CASE",
    "FUNCTION",
    "t",
    "x",
    "=",
    "1",
    ".",
    ",",
    "DEFAULT",
    "now()",
    "random()",
    "CHECK",
    "NULL",
];

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }
}

#[test]
fn random_sqlish_files_never_panic() {
    let mut random = Lcg(0x5eed);
    let mut linted_statements = 0;
    for case in 0..20_000 {
        let mut text = String::new();
        for _ in 0..random.next() % 40 {
            let pieces = if random.next().is_multiple_of(10) {
                RISKY
            } else {
                PIECES
            };
            text.push_str(pieces[random.next() % pieces.len()]);
            text.push(' ');
        }
        let phase = ["", ".backfill", ".contract"][case % 3];
        let source = SourceFile {
            display_path: format!("case{case}"),
            file_name: format!("{:04}_case{phase}.sql", case + 1),
            bytes: text.clone().into_bytes().into(),
        };
        let set = load_files(&[source], &|id| rule(id).is_some());
        let diagnostics = lint_files(&set.files, &Config::default());
        for file in &set.files {
            linted_statements += file.statements.len();
            for statement in file.migration.up.statements.iter() {
                let _ = migrate_core::lock_analysis::analyze_sql(&statement.sql);
            }
        }
        // Every diagnostic renders and points inside the file.
        for diagnostic in set.diagnostics.iter().chain(&diagnostics) {
            assert!(!diagnostic.to_string().is_empty());
            assert!(
                diagnostic.line as usize <= text.lines().count().max(1),
                "{text:?}: {diagnostic}"
            );
        }
    }
    // The generator must reach the linter, not only the lexer's error paths.
    assert!(
        linted_statements > 5_000,
        "only {linted_statements} statements were linted"
    );
}
