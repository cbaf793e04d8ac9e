//! Any bytes as the body of an expand, a backfill and a contract file, loaded and linted as
//! one set (cross-file rules included), then the lock analysis and the batch planner on what
//! parsed: never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use migrate_core::lint::{Config, lint_files, rule};
use migrate_core::source::{SourceFile, load_files};

fuzz_target!(|data: &[u8]| {
    let file = |file_name: &str, prefix: &str| {
        let mut bytes = prefix.as_bytes().to_vec();
        bytes.extend_from_slice(data);
        SourceFile {
            display_path: format!("fuzz/{file_name}"),
            file_name: file_name.to_owned(),
            bytes: bytes.into(),
        }
    };
    let sources = [
        file("0001_a.sql", ""),
        file(
            "0002_b.backfill.sql",
            "-- migrate:backfill table=t key=id\n",
        ),
        file("0003_c.contract.sql", "-- migrate:requires 1\n"),
    ];
    let set = load_files(&sources, &|id| rule(id).is_some());
    let _ = lint_files(&set.files, &Config::default());
    for parsed in &set.files {
        for statement in parsed.migration.up.statements.iter() {
            let _ = migrate_core::lock_analysis::analyze_sql(&statement.sql);
            if let Some(spec) = &parsed.migration.backfill {
                let _ = migrate_core::batch_plan::plan(&statement.sql, spec, "bigint");
            }
        }
    }
});
