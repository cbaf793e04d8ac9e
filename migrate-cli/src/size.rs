//! Sizes on the command line and in output, in PostgreSQL's units (`pg_size_pretty` and
//! memory settings: 1 kB = 1024 bytes, <https://www.postgresql.org/docs/15/config-setting.html>)
//! and their IEC names, which mean the same: `500MB`, `2GB`, `1GiB`, `8192` (bytes).

const UNITS: [(&str, u64); 5] = [
    ("TB", 1 << 40),
    ("GB", 1 << 30),
    ("MB", 1 << 20),
    ("kB", 1 << 10),
    ("bytes", 1),
];

pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let invalid = || {
        format!(
            "invalid size `{text}`: expected bytes or kB, MB, GB, TB (or KiB, MiB, GiB, TiB: all of 1024), e.g. 8192, 500MB, 1GiB"
        )
    };
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(invalid());
    }
    let number: u64 = text[..digits].parse().map_err(|_| invalid())?;
    let unit = text[digits..].trim();
    // `KiB`, `MiB`, ...: the IEC names of the same powers of 1024.
    let iec = match unit.len() {
        3 if unit[1..].eq_ignore_ascii_case("iB") => Some(&unit[..1]),
        _ => None,
    };
    let factor = match (unit, iec) {
        (_, Some(prefix)) => ["K", "M", "G", "T"]
            .iter()
            .position(|p| p.eq_ignore_ascii_case(prefix))
            .map(|power| 1u64 << (10 * (power + 1)))
            .ok_or_else(invalid)?,
        ("" | "B" | "bytes", None) => 1,
        (_, None) => UNITS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(unit))
            .map(|(_, factor)| *factor)
            .ok_or_else(invalid)?,
    };
    number.checked_mul(factor).ok_or_else(invalid)
}

/// `1.5 GB`, `12 MB`, `512 bytes`.
pub fn pretty(bytes: u64) -> String {
    for (name, factor) in UNITS {
        if bytes >= factor && factor > 1 {
            let value = bytes as f64 / factor as f64;
            return if value < 10.0 {
                format!("{value:.1} {name}")
            } else {
                format!("{value:.0} {name}")
            };
        }
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print_in_postgresql_units() {
        assert_eq!(parse_size("8192"), Ok(8192));
        assert_eq!(parse_size("500MB"), Ok(500 << 20));
        assert_eq!(parse_size("2 gb"), Ok(2 << 30));
        assert_eq!(parse_size("1kB"), Ok(1024));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1 GiB"), Ok(1 << 30));
        assert_eq!(parse_size("3KiB"), Ok(3 << 10));
        assert_eq!(parse_size("5MiB"), Ok(5 << 20));
        assert_eq!(parse_size("2TiB"), Ok(2 << 40));
        assert_eq!(parse_size("2TB"), Ok(2 << 40));
        assert!(parse_size("1G").is_err());
        assert!(parse_size("1XiB").is_err());
        assert!(parse_size("MB").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("99999999999TB").is_err());
        assert_eq!(pretty(512), "512 bytes");
        assert_eq!(pretty(1536), "1.5 kB");
        assert_eq!(pretty(3 << 30), "3.0 GB");
        assert_eq!(pretty(120 << 20), "120 MB");
    }
}
