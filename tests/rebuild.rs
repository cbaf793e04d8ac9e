//! Cargo must rebuild a crate using `migrations!()` when a migration file is edited (no user
//! action), added or removed (with the documented one-line build.rs). This test builds a real
//! throwaway crate between edits and runs it to see what the binary embeds.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

struct Probe {
    dir: PathBuf,
    target: PathBuf,
}

impl Probe {
    fn new(build_rs: bool) -> Probe {
        let root = workspace_root();
        let name = if build_rs {
            "with-build-rs"
        } else {
            "without-build-rs"
        };
        let dir = root.join("target").join("rebuild-probe").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::create_dir_all(dir.join("migrations")).unwrap();
        let manifest = format!(
            "[package]\nname = \"rebuild-probe\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n[dependencies]\nmigrate-core = {{ path = {core:?}, default-features = false }}\nmigrate-macros = {{ path = {macros:?} }}\n\n[workspace]\n",
            core = root.join("migrate-core"),
            macros = root.join("migrate-macros"),
        );
        std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
        // Same dependency versions as the workspace, resolved offline.
        std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
        if build_rs {
            std::fs::write(
                dir.join("build.rs"),
                "fn main() { println!(\"cargo:rerun-if-changed=migrations\"); }\n",
            )
            .unwrap();
        }
        std::fs::write(
            dir.join("src/main.rs"),
            "static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!(\"migrations\");\n\
             fn main() {\n    for m in MIGRATIONS.iter() {\n        println!(\"{} {}\", m.version, m.checksum);\n    }\n}\n",
        )
        .unwrap();
        // Shared between runs so dependencies compile once.
        let target = root.join("target").join("rebuild-probe").join("target");
        Probe { dir, target }
    }

    fn write(&self, file: &str, sql: &str) {
        std::fs::write(self.dir.join("migrations").join(file), sql).unwrap();
    }

    fn remove(&self, file: &str) {
        std::fs::remove_file(self.dir.join("migrations").join(file)).unwrap();
    }

    /// Builds (incrementally) and runs the probe; returns what the binary embeds.
    fn run(&self) -> Vec<String> {
        let output = Command::new(env!("CARGO"))
            .args(["run", "--quiet", "--offline"])
            .current_dir(&self.dir)
            .env("CARGO_TARGET_DIR", &self.target)
            .env_remove("MIGRATE_MACROS_MANIFEST_DIR")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

#[test]
fn edits_adds_and_removes_are_seen_by_the_next_build() {
    let probe = Probe::new(true);
    probe.write(
        "0001_users.sql",
        "CREATE TABLE IF NOT EXISTS users (id bigint PRIMARY KEY);\n",
    );
    let first = probe.run();
    assert_eq!(first.len(), 1);

    probe.write(
        "0001_users.sql",
        "CREATE TABLE IF NOT EXISTS users (id bigint PRIMARY KEY, email text);\n",
    );
    let edited = probe.run();
    assert_eq!(edited.len(), 1);
    assert_ne!(
        first, edited,
        "an edited file must change the embedded checksum"
    );

    probe.write(
        "0002_orders.sql",
        "CREATE TABLE IF NOT EXISTS orders (id bigint PRIMARY KEY);\n",
    );
    let added = probe.run();
    assert_eq!(added.len(), 2, "an added file must be embedded: {added:?}");

    probe.remove("0002_orders.sql");
    let removed = probe.run();
    assert_eq!(
        removed, edited,
        "a removed file must disappear from the binary"
    );
}

#[test]
fn edits_are_seen_even_without_build_rs() {
    let probe = Probe::new(false);
    probe.write(
        "0001_users.sql",
        "CREATE TABLE IF NOT EXISTS users (id bigint PRIMARY KEY);\n",
    );
    let first = probe.run();
    probe.write(
        "0001_users.sql",
        "CREATE TABLE IF NOT EXISTS users (id bigint PRIMARY KEY, email text);\n",
    );
    let edited = probe.run();
    assert_ne!(
        first, edited,
        "include_str! must make cargo rebuild on an edit"
    );
}
