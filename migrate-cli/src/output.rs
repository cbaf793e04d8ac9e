//! Terminal output: aligned tables (coloured on a terminal unless NO_COLOR), JSON documents,
//! timestamps.

use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// ANSI styles; only emitted when colour is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    Bold,
    Green,
    Yellow,
    Red,
}

impl Style {
    fn code(self) -> &'static str {
        match self {
            Style::Plain => "",
            Style::Bold => "1",
            Style::Green => "32",
            Style::Yellow => "33",
            Style::Red => "31",
        }
    }
}

pub fn paint(text: &str, style: Style, color: bool) -> String {
    if !color || style == Style::Plain || text.is_empty() {
        text.to_owned()
    } else {
        format!("\x1b[{}m{text}\x1b[0m", style.code())
    }
}

/// A table cell.
#[derive(Debug, Clone)]
pub struct Cell {
    pub text: String,
    pub style: Style,
}

impl Cell {
    pub fn new(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            style: Style::Plain,
        }
    }

    pub fn styled(text: impl Into<String>, style: Style) -> Cell {
        Cell {
            text: text.into(),
            style,
        }
    }
}

/// Columns padded to their widest cell (in characters); the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<Cell>], color: bool) -> String {
    let columns = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (index, cell) in row.iter().enumerate().take(columns) {
            widths[index] = widths[index].max(cell.text.chars().count());
        }
    }
    let mut out = String::new();
    let header_cells: Vec<Cell> = headers
        .iter()
        .map(|h| Cell::styled(*h, Style::Bold))
        .collect();
    for row in std::iter::once(&header_cells).chain(rows) {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate().take(columns) {
            if index > 0 {
                line.push_str("  ");
            }
            line.push_str(&paint(&cell.text, cell.style, color));
            if index + 1 < columns {
                let pad = widths[index] - cell.text.chars().count();
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Prints one JSON document on stdout, written as it is serialised: a large report (every
/// finding of a big set) is never held twice in memory, as a `Value` and as a string.
pub fn print_json(value: &impl serde::Serialize) {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    // Our reports always serialise; a closed stdout (`| head`) is not worth a panic.
    let _ = serde_json::to_writer_pretty(&mut out, value)
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(out))
        .and_then(|()| out.flush());
}

/// RFC 3339 in UTC, second precision: `2026-05-01T12:00:00Z`.
pub fn timestamp(time: SystemTime) -> String {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// One line of SQL for a table cell: whitespace collapsed, cut at `max` characters.
pub fn one_line(sql: &str, max: usize) -> String {
    let collapsed = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= max {
        collapsed
    } else {
        let cut: String = collapsed.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_rfc3339() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            timestamp(UNIX_EPOCH + Duration::from_secs(1_709_210_096)),
            "2024-02-29T12:34:56Z"
        );
    }

    #[test]
    fn tables_align_without_colour() {
        let rows = vec![
            vec![Cell::new("1"), Cell::styled("applied", Style::Green)],
            vec![Cell::new("1000"), Cell::new("pending")],
        ];
        assert_eq!(
            table(&["VERSION", "STATE"], &rows, false),
            "VERSION  STATE\n1        applied\n1000     pending\n"
        );
        assert!(table(&["A"], &rows, true).contains("\x1b["));
    }
}
