//! How the runtime writes values for people: in refusals, errors and log lines.

use std::time::Duration;

/// `1h 2m 3s`, `4.5s`, `120ms`: what a person reads in a refusal.
pub(crate) fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs >= 60 {
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        let mut text = String::new();
        if h > 0 {
            text.push_str(&format!("{h}h "));
        }
        if h > 0 || m > 0 {
            text.push_str(&format!("{m}m "));
        }
        text.push_str(&format!("{s}s"));
        text
    } else if secs >= 1 {
        format!("{:.1}s", duration.as_secs_f64())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_millis(250)), "250ms");
        assert_eq!(human(Duration::from_millis(4500)), "4.5s");
        assert_eq!(human(Duration::from_secs(3599)), "59m 59s");
        assert_eq!(human(Duration::from_secs(3600 + 5)), "1h 0m 5s");
    }
}
