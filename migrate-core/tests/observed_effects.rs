//! The static lock analysis proven against PostgreSQL: every statement of every rule example
//! (bad and good) and of the example set runs on a scratch database while
//! `runtime::observe` records the locks it was granted, the relations it rewrote and the tables
//! it scanned; any disagreement with `lock_analysis` fails the test.
//!
//! Each rule example runs alone on a fresh database holding [`FIXTURE`], the tables the
//! examples name. Statements that cannot run there are listed in [`EXPECTED_FAILURES`] with the
//! reason (a bad example that fails by design, an object another example creates): any other
//! failure, and any listed one that stops failing, fails the test.

mod common;

use common::{cluster, plain_client};
use migrate_core::Migration;
use migrate_core::lint::RULES;
use migrate_core::lock_analysis::{DeclaredSchema, LockMode};
use migrate_core::runtime::observe::{SectionEffects, observe_section_in};
use migrate_core::source::{SourceFile, load_files};

/// The tables, types and objects the rule examples use, as they would exist in production.
const FIXTURE: &str = "
CREATE EXTENSION IF NOT EXISTS btree_gist;
CREATE TYPE order_status AS ENUM ('new', 'paid');
CREATE TABLE orgs (id bigint PRIMARY KEY);
CREATE TABLE users (id bigint PRIMARY KEY, email text, name text, legacy_name text,
    legacy_email text, email_normalized text, login text, city text, zip text,
    updated_at timestamptz, org_id bigint, newsletter boolean);
ALTER TABLE users ADD CONSTRAINT users_org_fk FOREIGN KEY (org_id) REFERENCES orgs (id);
CREATE INDEX idx_users_legacy ON users (legacy_name);
ALTER TABLE users ADD CONSTRAINT users_legacy_check CHECK (legacy_name <> '');
CREATE VIEW users_legacy_view AS SELECT id, legacy_email FROM users;
CREATE TABLE orders (id integer PRIMARY KEY, user_id bigint, total numeric, amount integer,
    status order_status, created_at timestamptz);
CREATE INDEX idx_orders_created ON orders (created_at);
CREATE MATERIALIZED VIEW order_totals AS SELECT user_id, sum(total) AS total FROM orders GROUP BY user_id;
CREATE UNIQUE INDEX order_totals_user ON order_totals (user_id);
CREATE UNLOGGED TABLE events (id bigint NOT NULL, at timestamptz);
CREATE UNIQUE INDEX events_id_idx ON events (id);
CREATE TABLE sessions (id bigint PRIMARY KEY, expires_at timestamptz);
CREATE TABLE countries (name text);
CREATE TABLE audit_log (id bigint PRIMARY KEY, note text);
CREATE TABLE old_sessions (id bigint);
CREATE TABLE legacy_users (id bigint);
CREATE SEQUENCE invoice_seq;
CREATE TABLE order_status_codes (code text PRIMARY KEY, label text);
CREATE TABLE orders_archive (id bigint, total numeric);
CREATE TABLE legacy_orders (id bigint, total numeric);
CREATE TABLE posts (id bigint PRIMARY KEY);
CREATE TABLE comments (id bigint PRIMARY KEY, post_id bigint, legacy_post_id bigint, body text);
CREATE TABLE customer_subscription_invoices (billing_period_start date, status text);
CREATE TABLE bookings (id bigint, room_id bigint NOT NULL, during tstzrange NOT NULL);
CREATE TABLE plans (id bigint PRIMARY KEY, code text UNIQUE, name text, price numeric);
";

/// (rule, example file, PostgreSQL's error, why it fails on the fixture). Each example runs
/// alone on the fixture, so one that builds on another example's objects, or that is wrong by
/// design, fails; the statements before the failing one are still compared.
const EXPECTED_FAILURES: &[(&str, &str, &str, &str)] = &[
    (
        "require-if-not-exists",
        "0001_users.expand.sql",
        "relation \"users\" already exists",
        "the bad example: no IF NOT EXISTS",
    ),
    (
        "require-if-not-exists",
        "0002_email.expand.sql",
        "column \"email\" of relation \"users\" already exists",
        "the bad example: no IF NOT EXISTS",
    ),
    (
        "require-if-not-exists",
        "0009_idx.contract.sql",
        "index \"idx_users_email\" does not exist",
        "the bad example: no IF EXISTS",
    ),
    (
        "unique-via-index",
        "0005_unique.expand.sql",
        "index \"users_email_key\" does not exist",
        "the index is another example's (0004)",
    ),
    (
        "unique-via-index",
        "0001_users.expand.sql",
        "multiple primary keys for table \"users\" are not allowed",
        "the example creates users, which the fixture has",
    ),
    (
        "unparseable",
        "0005_weird.expand.sql",
        "syntax error at or near \"FROBNICATE\"",
        "the bad example: not SQL",
    ),
    (
        "unparseable",
        "0005_known.expand.sql",
        "relation \"users_email_key\" does not exist",
        "the index is another rule's example",
    ),
    (
        "enum-value-same-transaction",
        "0004_shipped.expand.sql",
        "unsafe use of new value \"shipped\"",
        "the bad example: the failure the rule prevents",
    ),
    (
        "constraint-not-valid",
        "0006_order_totals.expand.sql",
        // wrong_object_type: 15+ says "cannot be performed on relation", 14 "is not a table".
        "(SQLSTATE 42809)",
        "the fixture's order_totals is a materialized view (for the REFRESH examples); IF NOT EXISTS keeps it",
    ),
    (
        "set-not-null-scan",
        "0008_email_constraint.contract.sql",
        "syntax error at or near \"NOT\"",
        "PostgreSQL 18 syntax (a named NOT NULL constraint), on 14-17",
    ),
    (
        "set-not-null-scan",
        "0005_email_required.expand.sql",
        "syntax error at or near \"NOT\"",
        "PostgreSQL 18 syntax (NOT NULL ... NOT VALID)",
    ),
    (
        "set-not-null-scan",
        "0006_validate_email_not_null.expand.sql",
        "constraint \"users_email_not_null\" of relation \"users\" does not exist",
        "PostgreSQL 18 syntax in the file before (its NOT NULL constraint)",
    ),
    (
        "unparseable",
        "0006_hidden.expand.sql",
        "access method \"heap2\" does not exist",
        "the bad example: a hidden action",
    ),
    (
        "autocommit-rerun-unsafe",
        "0007_login_index.expand.sql",
        "\"users_login_idx\" is not a unique index",
        "the example's index is not UNIQUE: ADD UNIQUE USING INDEX refuses it",
    ),
];

/// [`EXPECTED_FAILURES`] on the major the cluster runs: where an older major refuses a bad
/// example for another reason, that reason.
fn expected_failures() -> Vec<(&'static str, &'static str, &'static str, &'static str)> {
    let major = cluster().version().major;
    EXPECTED_FAILURES
        .iter()
        // 18 accepts its own syntax (`ADD CONSTRAINT name NOT NULL column`, `NOT NULL ...
        // NOT VALID`).
        .filter(|&&(_, _, _, why)| !(major >= 18 && why.starts_with("PostgreSQL 18 syntax")))
        .map(|&(rule, file, error, why)| match (rule, file) {
            // ALTER TABLE ... SET ACCESS METHOD is 15+.
            ("unparseable", "0006_hidden.expand.sql") if major < 15 => (
                rule,
                file,
                "syntax error at or near \"ACCESS\"",
                "SET ACCESS METHOD is 15+",
            ),
            _ => (rule, file, error, why),
        })
        .collect()
}

/// Whether `failure` is `extension "name" is not available` for an extension this build lacks.
fn lacks_extension(failure: &str) -> bool {
    failure
        .split_once("extension \"")
        .and_then(|(_, rest)| rest.split_once("\" is not available"))
        .is_some_and(|(name, _)| !common::has_extension(name))
}

/// Rule examples not run: they take over the transaction the observation runs in.
const NOT_RUN: &[&str] = &["transaction-control"];

struct Outcome {
    origin: String,
    effects: SectionEffects,
}

async fn run_files(
    files: &[(String, String)],
    fixture: Option<&str>,
) -> Vec<(String, SectionEffects)> {
    let database = cluster().create_database().expect("database");
    if let Some(fixture) = fixture {
        cluster().psql("postgres", "DO $$ BEGIN CREATE ROLE reporting NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$").expect("role");
        cluster().psql(database.name(), fixture).expect("fixture");
    }
    let url = format!("{}?sslmode=disable", database.url());
    let client = plain_client(&url).await;
    let observer = plain_client(&url).await;
    let sources: Vec<SourceFile> = files
        .iter()
        .map(|(name, sql)| SourceFile {
            display_path: name.clone(),
            file_name: name.clone(),
            bytes: sql.clone().into_bytes().into(),
        })
        .collect();
    let set = load_files(&sources, &|_| true);
    let migrations: Vec<&Migration> = set.files.iter().map(|f| &f.migration).collect();
    assert_eq!(
        migrations.len(),
        files.len(),
        "every file parses: {:?}",
        set.diagnostics
    );
    let mut outcomes = Vec::new();
    // As `migrate check` does: each statement predicted with what the files before declared.
    let mut schema = DeclaredSchema::new();
    for migration in migrations {
        let effects = observe_section_in(&client, &observer, &migration.up, &mut schema)
            .await
            .expect("observation");
        outcomes.push((migration.file_name.to_string(), effects));
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_agrees_with_postgresql_on_every_rule_example_and_the_example_set() {
    let mut outcomes: Vec<Outcome> = Vec::new();
    for rule in RULES {
        if NOT_RUN.contains(&rule.id) {
            continue;
        }
        for (kind, examples) in [("bad", rule.bad), ("good", rule.good)] {
            for example in examples {
                for (file, effects) in run_files(&example.files(), Some(FIXTURE)).await {
                    outcomes.push(Outcome {
                        origin: format!("{} {kind} {file}", rule.id),
                        effects,
                    });
                }
            }
        }
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut set: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("migrations")
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().to_string_lossy().into_owned();
            name.ends_with(".sql")
                .then(|| (name, std::fs::read_to_string(e.path()).expect("read")))
        })
        .collect();
    set.sort();
    for (file, effects) in run_files(&set, None).await {
        outcomes.push(Outcome {
            origin: format!("example set {file}"),
            effects,
        });
    }

    let mut problems = Vec::new();
    let mut compared = 0;
    let mut failures = Vec::new();
    for outcome in &outcomes {
        for statement in &outcome.effects.statements {
            println!(
                "{} {}:{} `{}` by {:?}: locks {:?} rewritten {:?} scanned {:?}; predicted {:?} {:?}; {:?}",
                outcome.origin,
                statement.line,
                statement.column,
                statement.sql.lines().next().unwrap_or_default(),
                statement.observed_by,
                statement
                    .locks
                    .iter()
                    .map(|l| format!("{} {}", l.relation, l.mode))
                    .collect::<Vec<_>>(),
                statement.rewritten,
                statement.scanned,
                statement
                    .predicted
                    .locks
                    .iter()
                    .map(|l| format!("{} {}", l.table, l.mode))
                    .collect::<Vec<_>>(),
                statement.predicted.work,
                statement.not_compared,
            );
            if statement.not_compared.is_none() && statement.predicted.known {
                compared += 1;
            }
            for disagreement in &statement.disagreements {
                problems.push(format!(
                    "{} line {}: `{}`: {disagreement}",
                    outcome.origin, statement.line, statement.sql
                ));
            }
        }
        if let Some(error) = &outcome.effects.error {
            failures.push(format!("{}: {error}", outcome.origin));
        }
    }
    let expected = expected_failures();
    let unexpected: Vec<&String> = failures
        .iter()
        // An example needing an extension this build lacks (18.6's PyPI build has no
        // pgcrypto) fails on it: skipped, said by `has_extension`.
        .filter(|failure| !failure.contains("(SQLSTATE 0A000)") || !lacks_extension(failure))
        .filter(|failure| {
            !expected.iter().any(|(rule, file, error, _)| {
                failure.starts_with(rule) && failure.contains(file) && failure.contains(error)
            })
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "statements that failed: {unexpected:#?}"
    );
    for (rule, file, error, why) in expected {
        assert!(
            failures
                .iter()
                .any(|f| f.starts_with(rule) && f.contains(file) && f.contains(error)),
            "{rule} {file} was expected to fail ({why}) and did not: update EXPECTED_FAILURES"
        );
    }
    assert!(
        problems.is_empty(),
        "plan and PostgreSQL disagree:\n{}",
        problems.join("\n")
    );
    assert!(compared > 150, "only {compared} statements compared");
}

/// A set whose statements lock tables they do not name, through what earlier files declared:
/// foreign keys (dropping one, its column or its table; changing its column's type; the
/// `ON DELETE` actions of a `DELETE`), views and materialized views dropped with `CASCADE`, a
/// trigger's body run by a `DELETE` and dropped with its function, a query filling a new
/// relation. Each file runs after the ones before it, as `migrate check` runs a set.
const DECLARED_SET: &[(&str, &str)] = &[
    (
        "0001_schema.expand.sql",
        "CREATE TABLE p (id bigint PRIMARY KEY);
CREATE TABLE c (id bigint PRIMARY KEY, p_id bigint REFERENCES p ON DELETE CASCADE, note text);
CREATE TABLE d (id bigint PRIMARY KEY, c_id bigint,
    CONSTRAINT d_c_fk FOREIGN KEY (c_id) REFERENCES c (id) ON DELETE SET NULL);
CREATE TABLE e (id bigint, p_id bigint REFERENCES p);
CREATE TABLE f (id bigint, p_id bigint REFERENCES p);
CREATE TABLE g (id bigint, p_id bigint REFERENCES p);
CREATE VIEW v AS SELECT p.id, c.note FROM p JOIN c ON c.p_id = p.id;
CREATE MATERIALIZED VIEW mv AS SELECT * FROM v;
CREATE MATERIALIZED VIEW counts AS SELECT count(*) AS n FROM c;
CREATE UNIQUE INDEX counts_n ON counts (n);
CREATE FUNCTION refresh_counts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    REFRESH MATERIALIZED VIEW CONCURRENTLY counts;
    RETURN NULL;
END $$;
CREATE TRIGGER c_counts AFTER DELETE ON c FOR EACH STATEMENT EXECUTE FUNCTION refresh_counts();
",
    ),
    (
        "0002_rows.expand.sql",
        "INSERT INTO p VALUES (1), (2);
INSERT INTO c VALUES (1, 1, 'a'), (2, 2, 'b');
INSERT INTO d VALUES (1, 1), (2, 2);
INSERT INTO e VALUES (1, 2);
ALTER TABLE p RENAME TO parent;
",
    ),
    (
        "0003_delete.expand.sql",
        "DELETE FROM parent WHERE id = 1;\n",
    ),
    (
        "0004_drop_column.expand.sql",
        "ALTER TABLE e DROP COLUMN p_id;\n",
    ),
    (
        "0005_drop_constraint.expand.sql",
        "ALTER TABLE f DROP CONSTRAINT f_p_id_fkey;\n",
    ),
    (
        "0006_retype.expand.sql",
        "ALTER TABLE g ALTER COLUMN p_id TYPE integer;\n",
    ),
    ("0007_drop_view.expand.sql", "DROP VIEW v CASCADE;\n"),
    (
        "0008_fill.expand.sql",
        "CREATE TABLE c_copy AS SELECT * FROM c;
CREATE MATERIALIZED VIEW c_ids AS SELECT id FROM c;
",
    ),
    (
        "0009_drop_function.expand.sql",
        "DROP FUNCTION refresh_counts() CASCADE;\n",
    ),
    ("0010_drop_table.expand.sql", "DROP TABLE c CASCADE;\n"),
    ("0011_truncate.expand.sql", "TRUNCATE parent CASCADE;\n"),
    (
        "0012_reference.expand.sql",
        "INSERT INTO parent VALUES (1);
ALTER TABLE d ADD COLUMN parent_id bigint REFERENCES parent (id);
ALTER TABLE d ADD COLUMN first_parent_id bigint DEFAULT 1 REFERENCES parent (id);
",
    ),
];

#[tokio::test(flavor = "multi_thread")]
async fn locks_on_tables_a_statement_does_not_name_are_predicted_from_the_set() {
    let files: Vec<(String, String)> = DECLARED_SET
        .iter()
        .map(|(name, sql)| ((*name).to_owned(), (*sql).to_owned()))
        .collect();
    let outcomes = run_files(&files, None).await;
    assert_eq!(outcomes.len(), DECLARED_SET.len());
    let mut problems = Vec::new();
    for (file, effects) in &outcomes {
        assert!(effects.error.is_none(), "{file}: {:?}", effects.error);
        for statement in &effects.statements {
            for disagreement in &statement.disagreements {
                problems.push(format!("{file} `{}`: {disagreement}", statement.sql));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "plan and PostgreSQL disagree:\n{}",
        problems.join("\n")
    );
    // Each of these was predicted, for the reason the set declares, and taken.
    let expected: &[(&str, &str, LockMode)] = &[
        ("0003_delete.expand.sql", "public.c", LockMode::RowExclusive),
        ("0003_delete.expand.sql", "public.d", LockMode::RowExclusive),
        (
            "0003_delete.expand.sql",
            "public.counts",
            LockMode::Exclusive,
        ),
        (
            "0004_drop_column.expand.sql",
            "public.parent",
            LockMode::AccessExclusive,
        ),
        (
            "0005_drop_constraint.expand.sql",
            "public.parent",
            LockMode::AccessExclusive,
        ),
        (
            "0006_retype.expand.sql",
            "public.parent",
            LockMode::AccessExclusive,
        ),
        (
            "0007_drop_view.expand.sql",
            "public.mv",
            LockMode::AccessExclusive,
        ),
        (
            "0009_drop_function.expand.sql",
            "public.c",
            LockMode::AccessExclusive,
        ),
        (
            "0010_drop_table.expand.sql",
            "public.parent",
            LockMode::AccessExclusive,
        ),
        (
            "0010_drop_table.expand.sql",
            "public.d",
            LockMode::AccessExclusive,
        ),
        (
            "0010_drop_table.expand.sql",
            "public.c_ids",
            LockMode::AccessExclusive,
        ),
        (
            "0011_truncate.expand.sql",
            "public.g",
            LockMode::AccessExclusive,
        ),
    ];
    for (file, relation, mode) in expected {
        let (_, effects) = outcomes
            .iter()
            .find(|(name, _)| name == file)
            .expect("observed");
        let table = relation.trim_start_matches("public.");
        let statement = &effects.statements[0];
        assert!(
            statement
                .predicted
                .locks
                .iter()
                .any(|l| l.table == table && l.mode == *mode && l.because.is_some()),
            "{file}: {mode} on {table} not predicted: {:?}",
            statement.predicted
        );
        assert!(
            statement
                .locks
                .iter()
                .any(|l| l.relation == *relation && l.mode == *mode),
            "{file}: PostgreSQL took no {mode} on {relation}: {:?}",
            statement.locks
        );
    }
    // A new column's foreign key: SHARE ROW EXCLUSIVE on the referenced table; its rows are
    // checked (a scan) only when a default gives them a value.
    let (_, reference) = outcomes
        .iter()
        .find(|(name, _)| name == "0012_reference.expand.sql")
        .expect("observed");
    let works: Vec<_> = reference.statements[1..]
        .iter()
        .map(|s| (s.predicted.work, s.work))
        .collect();
    use migrate_core::lock_analysis::TableWork;
    assert_eq!(
        works,
        [
            (TableWork::None, TableWork::None),
            (TableWork::Scan, TableWork::Scan)
        ]
    );
    // (The second one finds the lock already held by the first.)
    for statement in &reference.statements[1..2] {
        assert!(
            statement
                .locks
                .iter()
                .any(|l| l.relation == "public.parent" && l.mode == LockMode::ShareRowExclusive),
            "{:?}",
            statement.locks
        );
    }
    // Filling a new relation reads its sources in full.
    let (_, fill) = outcomes
        .iter()
        .find(|(name, _)| name == "0008_fill.expand.sql")
        .expect("observed");
    for statement in &fill.statements {
        assert_eq!(statement.work, migrate_core::lock_analysis::TableWork::Scan);
        assert_eq!(statement.predicted.work, statement.work);
    }
}
