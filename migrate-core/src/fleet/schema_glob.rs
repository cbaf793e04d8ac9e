//! `--schemas GLOB`: which schemas of a database are targets of their own.
//!
//! `*` matches any run of characters, `?` one character, everything else itself (so the `_`
//! of `tenant_*` is a plain underscore, unlike in SQL's LIKE). PostgreSQL's own schemas
//! (`pg_*`, `information_schema`) are never matched, whatever the glob.

use super::error::FleetError;

/// A validated schema glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaGlob {
    pattern: Vec<char>,
    text: String,
}

impl SchemaGlob {
    /// Refuses an empty glob: it would match nothing anywhere.
    pub fn parse(text: &str) -> Result<SchemaGlob, FleetError> {
        if text.trim().is_empty() {
            return Err(FleetError::InvalidSchemaGlob {
                glob: text.to_owned(),
                reason: "it is empty",
            });
        }
        Ok(SchemaGlob {
            pattern: text.chars().collect(),
            text: text.to_owned(),
        })
    }

    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `schema` is a target: it matches and is not one of PostgreSQL's own.
    pub fn matches(&self, schema: &str) -> bool {
        !is_system_schema(schema) && glob_match(&self.pattern, &schema.chars().collect::<Vec<_>>())
    }
}

impl std::fmt::Display for SchemaGlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

fn is_system_schema(schema: &str) -> bool {
    schema.starts_with("pg_") || schema == "information_schema"
}

/// Iterative wildcard matching with one backtrack point (the last `*`): linear in practice,
/// never exponential.
fn glob_match(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some('?') => {
                p += 1;
                t += 1;
            }
            Some(c) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(glob: &str, schema: &str) -> bool {
        SchemaGlob::parse(glob).unwrap().matches(schema)
    }

    #[test]
    fn star_and_question_mark() {
        assert!(matches("tenant_*", "tenant_a"));
        assert!(matches("tenant_*", "tenant_"));
        assert!(!matches("tenant_*", "tenantx"));
        assert!(!matches("tenant_*", "other_tenant_a"));
        assert!(matches("t?_*_x", "t1_abc_x"));
        assert!(!matches("t?_*_x", "t12_abc_x"));
        assert!(matches("*a*b*", "xxaxxbxx"));
        assert!(!matches("*a*b*", "xxbxxaxx"));
        assert!(matches("Tenant", "Tenant"));
        assert!(!matches("Tenant", "tenant"));
    }

    #[test]
    fn underscore_is_literal_unlike_like() {
        assert!(!matches("tenant_a", "tenantXa"));
    }

    #[test]
    fn system_schemas_never_match() {
        assert!(!matches("*", "pg_catalog"));
        assert!(!matches("pg_*", "pg_toast"));
        assert!(!matches("*", "information_schema"));
        assert!(matches("*", "public"));
    }

    #[test]
    fn empty_glob_is_refused() {
        assert!(matches!(
            SchemaGlob::parse("  "),
            Err(FleetError::InvalidSchemaGlob { .. })
        ));
    }
}
