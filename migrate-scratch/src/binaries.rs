//! Finding the PostgreSQL server binaries: [`PgBinaries`].

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::ScratchError;

/// Folder holding `initdb`, `pg_ctl` and `postgres`; checked before `PATH`.
pub const PG_BIN_ENV: &str = "MIGRATE_PG_BIN";

const SERVER_BINARIES: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// The server binaries in use, all from one folder so versions cannot mix.
#[derive(Debug, Clone)]
pub struct PgBinaries {
    dir: PathBuf,
}

impl PgBinaries {
    /// `$MIGRATE_PG_BIN`, then `PATH`, then `/usr/lib/postgresql/<major>/bin`, newest first.
    pub fn locate() -> Result<PgBinaries, ScratchError> {
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(dir) = std::env::var_os(PG_BIN_ENV) {
            candidates.push(PathBuf::from(dir));
        }
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path));
        }
        candidates.extend(debian_bin_dirs());
        PgBinaries::locate_in(candidates)
    }

    /// The first of `candidates` holding the server binaries.
    pub fn locate_in(candidates: Vec<PathBuf>) -> Result<PgBinaries, ScratchError> {
        for dir in &candidates {
            let initdb = dir.join("initdb");
            if !initdb.is_file() {
                continue;
            }
            // /usr/local/bin/initdb may be a symlink into the versioned folder, which is the
            // one that also holds pg_ctl, postgres, psql and pg_dump of the same version.
            let real_dir = fs::canonicalize(&initdb)
                .ok()
                .and_then(|real| real.parent().map(Path::to_path_buf))
                .unwrap_or_else(|| dir.clone());
            for found in [&real_dir, dir] {
                if SERVER_BINARIES.iter().all(|bin| found.join(bin).is_file()) {
                    return Ok(PgBinaries { dir: found.clone() });
                }
            }
        }
        Err(ScratchError::BinariesMissing {
            searched: candidates,
        })
    }

    /// The folder holding `initdb`, `pg_ctl` and `postgres`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A program of this installation (`psql`, `pg_dump`, ...); falls back to the bare name,
    /// resolved through `PATH`, when the folder lacks it.
    pub fn program(&self, name: &str) -> PathBuf {
        let path = self.dir.join(name);
        if path.is_file() {
            path
        } else {
            PathBuf::from(name)
        }
    }
}

/// `/usr/lib/postgresql/<major>/bin`, highest major first.
fn debian_bin_dirs() -> Vec<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binaries_say_how_to_install_them() {
        let empty = tempfile::tempdir().expect("tempdir");
        let error = PgBinaries::locate_in(vec![empty.path().to_path_buf()])
            .expect_err("an empty folder has no initdb");
        assert!(
            matches!(&error, ScratchError::BinariesMissing { searched } if searched.len() == 1)
        );
        assert!(error.to_string().contains("apt-get install -y postgresql"));
    }
}
