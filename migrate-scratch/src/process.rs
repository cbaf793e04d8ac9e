//! Running the PostgreSQL programs, as an unprivileged user when this process is root.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::error::{ScratchError, io_error};

/// Unprivileged account the server runs as when this process is root (default `nobody`).
pub const PG_USER_ENV: &str = "MIGRATE_PG_USER";

/// The account the server processes run as, when it is not this process's own.
#[derive(Debug, Clone)]
pub(crate) struct RunAs {
    uid: u32,
    gid: u32,
}

impl RunAs {
    pub(crate) fn for_current_process() -> Result<Option<RunAs>, ScratchError> {
        // SAFETY: geteuid has no preconditions and cannot fail (POSIX).
        if unsafe { libc::geteuid() } != 0 {
            return Ok(None);
        }
        let user = std::env::var(PG_USER_ENV).unwrap_or_else(|_| "nobody".to_owned());
        let id = |flag: &str| -> Option<u32> {
            let output = Command::new("id").arg(flag).arg(&user).output().ok()?;
            if !output.status.success() {
                return None;
            }
            String::from_utf8(output.stdout).ok()?.trim().parse().ok()
        };
        match (id("-u"), id("-g")) {
            (Some(uid), Some(gid)) if uid != 0 => Ok(Some(RunAs { uid, gid })),
            _ => Err(ScratchError::UnprivilegedUserMissing { user }),
        }
    }

    pub(crate) fn chown(&self, path: &Path) -> Result<(), ScratchError> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
            .map_err(io_error(format!("chown {}", path.display())))
    }
}

/// How a cluster's command lines are built: directly, or through `setpriv` when root.
#[derive(Debug, Clone)]
pub(crate) struct Launcher {
    pub(crate) run_as: Option<RunAs>,
    pub(crate) home: PathBuf,
}

impl Launcher {
    pub(crate) fn command(&self, program: &Path) -> Command {
        let mut command = match &self.run_as {
            None => Command::new(program),
            Some(run_as) => {
                let mut command = Command::new("setpriv");
                command
                    .arg(format!("--reuid={}", run_as.uid))
                    .arg(format!("--regid={}", run_as.gid))
                    .arg("--init-groups")
                    .arg(program);
                command
            }
        };
        // The unprivileged user cannot enter root's working directory or HOME, and inherited
        // PG* variables (PGDATA, PGPORT, ...) must not redirect the scratch tools.
        command.current_dir(&self.home).env("HOME", &self.home);
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(|k| k.starts_with("PG")) {
                command.env_remove(key);
            }
        }
        command.env("LC_ALL", "C");
        command
    }
}

pub(crate) fn run(mut command: Command) -> Result<Output, ScratchError> {
    let rendered = render(&command);
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(io_error(format!("running `{rendered}`")))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(ScratchError::CommandFailed {
            command: rendered,
            status: output.status.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        })
    }
}

fn render(command: &Command) -> String {
    let mut parts = vec![command.get_program().to_string_lossy().into_owned()];
    parts.extend(command.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}
