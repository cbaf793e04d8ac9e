//! The file-name grammar: `<version>_<name>[.<phase>].sql`.

use crate::migration::Phase;

/// True for every name the loader reads: `.sql` in any case (`.SQL`, `.Sql`), so a name
/// that is almost right is an error instead of a file silently left out.
pub fn is_sql_like(file_name: &str) -> bool {
    let bytes = file_name.as_bytes();
    bytes.len() >= 4 && bytes[bytes.len() - 4..].eq_ignore_ascii_case(b".sql")
}

/// The help for a `.sql` extension in another case.
const LOWER_CASE_EXTENSION_HELP: &str = "rename the file to end in `.sql`. Other cases are refused rather than accepted: \
the runtime looks for `.sql` files exactly, and on a case-insensitive filesystem `0002_a.SQL` and \
`0002_a.sql` are one file, so the macro and the runtime would disagree about the set";

/// The help for a file name [`parse_file_name`] refuses.
pub(super) fn file_name_help(file_name: &str) -> &'static str {
    if is_sql_like(file_name) && !file_name.ends_with(".sql") {
        LOWER_CASE_EXTENSION_HELP
    } else {
        "name files `<version>_<name>[.<phase>].sql`, e.g. `0002_email_verified.expand.sql`; phase is expand (default), backfill or contract"
    }
}

/// `<version>_<name>[.<phase>].sql` → (version, name, phase).
pub fn parse_file_name(file_name: &str) -> Result<(u64, String, Phase), String> {
    let stem = match file_name.strip_suffix(".sql") {
        Some(stem) => stem,
        None if is_sql_like(file_name) => {
            return Err("migration files end in lower-case .sql".to_owned());
        }
        None => return Err("a migration file name ends in .sql".to_owned()),
    };
    let (stem, phase) = match stem.rsplit_once('.') {
        Some((stem, phase_text)) => match Phase::parse(phase_text) {
            Some(phase) => (stem, phase),
            None => {
                return Err(format!(
                    "unknown phase `{phase_text}` (expected expand, backfill or contract)"
                ));
            }
        },
        None => (stem, Phase::Expand),
    };
    let (version_text, name) = stem
        .split_once('_')
        .ok_or_else(|| "expected `<version>_<name>[.<phase>].sql`".to_owned())?;
    if version_text.is_empty() || !version_text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("version `{version_text}` is not a number"));
    }
    let version: u64 = version_text.parse().map_err(|_| {
        format!(
            "version `{version_text}` is too large (at most {})",
            i64::MAX
        )
    })?;
    if version > i64::MAX as u64 {
        return Err(format!(
            "version `{version_text}` is too large (at most {})",
            i64::MAX
        ));
    }
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(format!("name `{name}` must match [a-z0-9_]+"));
    }
    Ok((version, name.to_owned(), phase))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_name_grammar() {
        assert_eq!(
            parse_file_name("0002_email.expand.sql").unwrap(),
            (2, "email".into(), Phase::Expand)
        );
        assert_eq!(
            parse_file_name("20261124093000_x_1.sql").unwrap(),
            (20261124093000, "x_1".into(), Phase::Expand)
        );
        assert_eq!(
            parse_file_name("3_b.contract.sql").unwrap().2,
            Phase::Contract
        );
        for bad in [
            "x_name.sql",
            "0001.sql",
            "0001_Name.sql",
            "0001_a.shrink.sql",
            "0001_.sql",
            "99999999999999999999_a.sql",
            "1_a-b.sql",
        ] {
            assert!(parse_file_name(bad).is_err(), "{bad}");
        }
    }
}
