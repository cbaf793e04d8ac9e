//! Finding the PostgreSQL server binaries: [`PgBinaries`], of the major asked for.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{ScratchError, io_error};

/// Folder holding `initdb`, `pg_ctl` and `postgres`; checked before everything else.
pub const PG_BIN_ENV: &str = "MIGRATE_PG_BIN";

/// The major to run (`14`): its binaries are looked for in the cache folder
/// ([`PG_CACHE_ENV`], where `scripts/install-pg.sh` puts them) and in Debian's
/// `/usr/lib/postgresql/<major>/bin`, and nowhere else, so a run asked for 14 never runs on 15.
pub const PG_MAJOR_ENV: &str = "MIGRATE_PG_MAJOR";

/// The cache folder of other majors' binaries, `<cache>/<major>/bin`; default
/// `~/.cache/migrate-pg`, or `/var/cache/migrate-pg` for root, whose home the server's
/// unprivileged account cannot enter.
pub const PG_CACHE_ENV: &str = "MIGRATE_PG_CACHE";

const SERVER_BINARIES: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// The server binaries in use, all from one folder so versions cannot mix.
#[derive(Debug, Clone)]
pub struct PgBinaries {
    dir: PathBuf,
}

/// The version of an installation's server, from `postgres --version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerVersion {
    /// The major: 14, 15, ...
    pub major: u32,
    /// The whole version as the server prints it: `14.23`, `18.6`.
    pub number: String,
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgreSQL {}", self.number)
    }
}

impl PgBinaries {
    /// `$MIGRATE_PG_BIN`; else, with `$MIGRATE_PG_MAJOR`, that major's folder (an error when
    /// it is not installed); else `PATH`, then `/usr/lib/postgresql/<major>/bin`, newest first.
    pub fn locate() -> Result<PgBinaries, ScratchError> {
        if let Some(dir) = std::env::var_os(PG_BIN_ENV) {
            return PgBinaries::locate_in(vec![PathBuf::from(dir)]);
        }
        if let Some(value) = std::env::var_os(PG_MAJOR_ENV) {
            let major = value
                .to_str()
                .and_then(|v| v.trim().parse::<u32>().ok())
                .ok_or_else(|| ScratchError::InvalidMajor {
                    value: value.to_string_lossy().into_owned(),
                })?;
            return PgBinaries::locate_major(major).ok_or_else(|| ScratchError::MajorMissing {
                major,
                searched: major_dirs(major),
            });
        }
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path));
        }
        candidates.extend(debian_bin_dirs());
        PgBinaries::locate_in(candidates)
    }

    /// The binaries of `major` installed on this machine: `$MIGRATE_PG_BIN` when it holds
    /// that major, the cache folder ([`PG_CACHE_ENV`]) or Debian's
    /// `/usr/lib/postgresql/<major>/bin`; `None` when none holds them.
    pub fn locate_major(major: u32) -> Option<PgBinaries> {
        let explicit = std::env::var_os(PG_BIN_ENV).map(PathBuf::from);
        explicit
            .into_iter()
            .chain(major_dirs(major))
            .filter_map(|dir| PgBinaries::locate_in(vec![dir]).ok())
            // A folder named 14 holding another major would make a run say what it did not do.
            .find(|found| found.version().is_ok_and(|version| version.major == major))
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

    /// The server's version, from `postgres --version` (which starts no server).
    pub fn version(&self) -> Result<ServerVersion, ScratchError> {
        let postgres = self.dir.join("postgres");
        let output = Command::new(&postgres)
            .arg("--version")
            .output()
            .map_err(io_error(format!(
                "running {} --version",
                postgres.display()
            )))?;
        let text = String::from_utf8_lossy(&output.stdout);
        parse_version(&text).ok_or_else(|| ScratchError::CommandFailed {
            command: format!("{} --version", postgres.display()),
            status: output.status.to_string(),
            output: format!(
                "no version in its output: {text}{}",
                String::from_utf8_lossy(&output.stderr)
            ),
        })
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

/// `postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)` -> 15 and `15.18`; also
/// `18beta1`, whose major is before the letters.
fn parse_version(output: &str) -> Option<ServerVersion> {
    let number = output
        .split("(PostgreSQL)")
        .nth(1)?
        .split_whitespace()
        .next()?;
    let major_digits: String = number.chars().take_while(char::is_ascii_digit).collect();
    Some(ServerVersion {
        major: major_digits.parse().ok()?,
        number: number.to_owned(),
    })
}

/// Where `major`'s binaries may be: the cache folder's, then Debian's.
fn major_dirs(major: u32) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(cache) = cache_dir() {
        dirs.push(cache.join(major.to_string()).join("bin"));
    }
    dirs.push(PathBuf::from(format!("/usr/lib/postgresql/{major}/bin")));
    dirs
}

/// `$MIGRATE_PG_CACHE`, else `~/.cache/migrate-pg`, or `/var/cache/migrate-pg` for root: the
/// server of a root process runs as an unprivileged account ([`crate::PG_USER_ENV`]), which
/// cannot enter `/root` (mode 0700). `scripts/install-pg.sh` picks the same folder.
fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(PG_CACHE_ENV) {
        return Some(PathBuf::from(dir));
    }
    // SAFETY: geteuid has no preconditions and cannot fail (POSIX).
    if unsafe { libc::geteuid() } == 0 {
        return Some(PathBuf::from("/var/cache/migrate-pg"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache").join("migrate-pg"))
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

    #[test]
    fn a_major_not_installed_is_not_found_and_says_how_to_install_it() {
        assert!(PgBinaries::locate_major(99).is_none());
        let error = ScratchError::MajorMissing {
            major: 99,
            searched: major_dirs(99),
        };
        assert!(
            error
                .to_string()
                .contains("install it with `scripts/install-pg.sh 99`"),
            "{error}"
        );
    }

    #[test]
    fn versions_are_read_from_each_build_s_output() {
        let debian = parse_version("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n");
        assert_eq!(
            debian,
            Some(ServerVersion {
                major: 15,
                number: "15.18".into()
            })
        );
        let plain = parse_version("postgres (PostgreSQL) 14.23\n").expect("14.23");
        assert_eq!((plain.major, plain.number.as_str()), (14, "14.23"));
        assert_eq!(
            parse_version("postgres (PostgreSQL) 18beta1").map(|v| v.major),
            Some(18)
        );
        assert_eq!(parse_version("postgres: command not found"), None);
    }
}
