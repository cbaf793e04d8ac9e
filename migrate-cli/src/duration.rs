//! Durations on the command line: `500ms`, `5s`, `2m`, `1h`, combined as `1m30s`; `0`
//! alone means zero (e.g. to disable statement_timeout).

use std::time::Duration;

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let invalid = || format!("invalid duration `{text}`: expected e.g. 500ms, 5s, 2m, 1h30m");
    if text.is_empty() {
        return Err(invalid());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" | "min" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            _ => return Err(invalid()),
        };
        total = total.saturating_add(part);
    }
    Ok(total)
}

/// `--max-replica-lag`: a duration, or `off` to disable the replica gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaLagLimit(pub Option<Duration>);

pub fn parse_replica_lag_limit(text: &str) -> Result<ReplicaLagLimit, String> {
    if text.trim().eq_ignore_ascii_case("off") {
        return Ok(ReplicaLagLimit(None));
    }
    parse_duration(text)
        .map(|limit| ReplicaLagLimit(Some(limit)))
        .map_err(|error| format!("{error}, or `off`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "5", "s", "5x", "-1s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn replica_lag_limits_are_durations_or_off() {
        assert_eq!(
            parse_replica_lag_limit("200ms"),
            Ok(ReplicaLagLimit(Some(Duration::from_millis(200))))
        );
        assert_eq!(parse_replica_lag_limit("off"), Ok(ReplicaLagLimit(None)));
        assert_eq!(
            parse_replica_lag_limit("0"),
            Ok(ReplicaLagLimit(Some(Duration::ZERO)))
        );
        assert!(parse_replica_lag_limit("never").is_err());
    }
}
