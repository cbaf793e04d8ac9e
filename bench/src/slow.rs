//! How many of the application's statements the server itself found slow: the server logs
//! every statement whose execution took over a threshold (`log_min_duration_statement`) with
//! its end time, so the share of slow statements can be set beside the share of slow
//! transactions pgbench saw. Where pgbench sees many more, the time was lost outside the
//! statements' execution: waiting to be scheduled on a CPU (pgbench's threads, and a backend
//! before it reads its next statement: the two share the machine's cores with the server's
//! other work) or in the socket.

use std::os::unix::fs::PermissionsExt;

use tempfile::TempDir;

/// Where the server writes its log, and the threshold.
pub struct ServerLog {
    dir: TempDir,
    pub slow_ms: u32,
}

impl ServerLog {
    pub fn new(slow_ms: u32) -> Result<ServerLog, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        // The server may run as another user (the scratch harness's launcher under root).
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .map_err(|e| e.to_string())?;
        Ok(ServerLog { dir, slow_ms })
    }

    /// The server settings that write the log.
    pub fn settings(&self) -> Vec<String> {
        vec![
            "logging_collector = on".to_owned(),
            format!("log_directory = '{}'", self.dir.path().display()),
            format!("log_min_duration_statement = {}", self.slow_ms),
            "log_line_prefix = '%m %a '".to_owned(),
        ]
    }

    /// pgbench's statements the server logged as slow that ended in `from_us..to_us`
    /// (epoch µs).
    pub fn slow_statements(&self, (from_us, to_us): (i64, i64)) -> Result<u64, String> {
        let mut count = 0;
        for entry in std::fs::read_dir(self.dir.path()).map_err(|e| e.to_string())? {
            let path = entry.map_err(|e| e.to_string())?.path();
            let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
            count += text
                .lines()
                .filter(|line| line.contains(" pgbench LOG:  duration: "))
                .filter_map(logged_at_us)
                .filter(|&at| at >= from_us && at <= to_us)
                .count() as u64;
        }
        Ok(count)
    }
}

/// The epoch µs of a log line starting `YYYY-MM-DD HH:MM:SS.mmm UTC` (`%m`; the scratch
/// cluster's time zone is UTC).
fn logged_at_us(line: &str) -> Option<i64> {
    let (date, rest) = line.split_once(' ')?;
    let (time, rest) = rest.split_once(' ')?;
    if !rest.starts_with("UTC ") {
        return None;
    }
    let mut ymd = date.split('-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let (hms, millis) = time.split_once('.')?;
    let mut parts = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (parts.next()??, parts.next()??, parts.next()??);
    let millis: i64 = millis.parse().ok()?;
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second;
    Some(seconds * 1_000_000 + millis * 1_000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_is_read_as_its_epoch_time() {
        let line = "2026-12-07 03:49:05.894 UTC pgbench LOG:  duration: 57.009 ms  statement: x";
        // date -u -d '2026-12-07 03:49:05' +%s
        assert_eq!(logged_at_us(line), Some(1_796_615_345_894_000));
        assert_eq!(logged_at_us("1970-01-01 00:00:00.001 UTC x"), Some(1_000));
        assert_eq!(logged_at_us("garbage"), None);
    }
}
