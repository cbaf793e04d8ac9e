//! The `lint` feature carries every SQL-reading dependency: a service that only applies
//! (`default-features = false, features = ["runtime"]`) builds without sqlparser, toml or
//! serde_json. Read from `cargo tree`, so it holds for what cargo would build.

use std::process::Command;

/// migrate-core's normal dependencies (the whole tree, one crate name a line) with `features`.
fn dependency_names(features: &str) -> Vec<String> {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-p",
            "migrate-core",
            "--no-default-features",
        ])
        .args(["--features", features])
        .args(["-e", "normal", "--prefix", "none", "--format", "{p}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

const LINT_ONLY: [&str; 3] = ["sqlparser", "toml", "serde_json"];

#[test]
fn the_runtime_alone_depends_on_no_sql_parser_nor_toml() {
    let runtime = dependency_names("runtime");
    assert!(runtime.iter().any(|name| name == "tokio-postgres"));
    for name in LINT_ONLY {
        assert!(
            !runtime.iter().any(|found| found == name),
            "`runtime` alone depends on {name}"
        );
    }
    // The same reading sees them where `lint` is on.
    let with_lint = dependency_names("runtime,lint");
    for name in LINT_ONLY {
        assert!(
            with_lint.iter().any(|found| found == name),
            "`lint` does not bring {name}"
        );
    }
}
