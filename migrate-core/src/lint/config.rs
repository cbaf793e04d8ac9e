//! `migrate.toml`, the one configuration file beside the migrations, read by both the
//! `migrations!()` macro and the `migrate` CLI so `cargo build` and `migrate lint` agree.
//!
//! ```toml
//! [rules]
//! volatile-default = "warn"    # error (default) | warn | off
//! blocking-statement = "off"
//! ```
//!
//! and, for a folder in another tool's layout:
//!
//! ```toml
//! layout = "sqlx"              # read the folder as sqlx's (detected when absent)
//! [phases]                     # the phase of a version whose file name cannot say it
//! 20240102000000 = "backfill"
//! ```

use std::collections::BTreeMap;

use crate::diagnostic::{Diagnostic, codes};
use crate::migration::Phase;
use crate::source::Layout;

/// The configuration file's name, looked for inside the migrations folder (not beside it: the
/// macro and the CLI both know the folder, so neither needs a second path).
pub const CONFIG_FILE_NAME: &str = "migrate.toml";

/// What a rule's findings become: `error | warn | off` in `migrate.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Findings are errors: the build and `migrate lint` fail.
    Error,
    /// Findings are warnings (compiler warnings from the macro); nothing fails.
    Warn,
    /// The rule does not run; its allows are accepted and suppress nothing.
    Off,
}

/// The level of each rule: `migrate.toml`'s `[rules]` table over each rule's default level.
/// `Config::default()` is every rule at its default level, as without a file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    levels: BTreeMap<String, Level>,
    /// `layout = "..."`: the folder's layout, instead of detecting it.
    pub layout: Option<Layout>,
    /// `[phases]`: version -> phase, for files of another tool's layout.
    pub phases: BTreeMap<u64, Phase>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    rules: BTreeMap<String, Level>,
    layout: Option<String>,
    #[serde(default)]
    phases: BTreeMap<String, String>,
    /// `[fleet]`: read by the CLI's `fleet` commands (targets file, schemas, parallelism),
    /// accepted and ignored here.
    #[serde(default, rename = "fleet")]
    _fleet: Option<toml::Table>,
}

impl Config {
    /// The rule's level: the file's setting, else the rule's default (`error` for an id that
    /// is not a rule).
    pub fn level(&self, rule_id: &str) -> Level {
        self.levels
            .get(rule_id)
            .copied()
            .unwrap_or_else(|| super::rule(rule_id).map_or(Level::Error, |rule| rule.default_level))
    }

    /// The same configuration with `rule_id` set to `level`, as a `[rules]` line would.
    pub fn with_level(mut self, rule_id: &str, level: Level) -> Config {
        self.levels.insert(rule_id.to_owned(), level);
        self
    }

    /// Parses the file's text; unknown keys, unknown rule ids and unknown levels are errors.
    pub fn parse(text: &str, display_path: &str) -> Result<Config, Vec<Diagnostic>> {
        let file: ConfigFile = toml::from_str(text).map_err(|error| {
            let (line, column) = error
                .span()
                .map(|span| line_column(text, span.start))
                .unwrap_or((1, 1));
            vec![
                Diagnostic::error(
                    display_path,
                    line,
                    column,
                    codes::CONFIG,
                    error.message().to_owned(),
                )
                .with_help("expected `[rules]` with `rule-id = \"error\" | \"warn\" | \"off\"`"),
            ]
        })?;
        let unknown: Vec<Diagnostic> = file
            .rules
            .keys()
            .filter(|id| super::rule(id).is_none())
            .map(|id| {
                let offset = text.find(id.as_str()).unwrap_or(0);
                let (line, column) = line_column(text, offset);
                Diagnostic::error(
                    display_path,
                    line,
                    column,
                    codes::UNKNOWN_RULE,
                    format!("`{id}` is not a rule id"),
                )
                .with_help("`migrate explain` lists the rules")
            })
            .collect();
        if !unknown.is_empty() {
            return Err(unknown);
        }
        let problem = |what: String, needle: &str| {
            let (line, column) = line_column(text, text.find(needle).unwrap_or(0));
            vec![Diagnostic::error(display_path, line, column, codes::CONFIG, what).with_help(
                "`layout = \"<name>\"` and `[phases]` with `<version> = \"expand\" | \"backfill\" | \"contract\"`",
            )]
        };
        let layout = match file.layout.as_deref() {
            None => None,
            Some(name) => Some(Layout::parse(name).ok_or_else(|| {
                problem(
                    format!("unknown layout `{name}` (known: {})", Layout::names()),
                    name,
                )
            })?),
        };
        let mut phases = BTreeMap::new();
        for (version, phase) in &file.phases {
            let number = version
                .parse::<u64>()
                .ok()
                .filter(|_| version.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| {
                    problem(format!("[phases]: `{version}` is not a version"), version)
                })?;
            let phase = Phase::parse(phase)
                .ok_or_else(|| problem(format!("[phases]: `{phase}` is not a phase"), phase))?;
            phases.insert(number, phase);
        }
        Ok(Config {
            levels: file.rules,
            layout,
            phases,
        })
    }
}

fn line_column(text: &str, offset: usize) -> (u32, u32) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() as u32 + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u32 + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_and_default_to_error() {
        let config = Config::parse(
            "[rules]\nvolatile-default = \"warn\"\nblocking-statement = \"off\"\n",
            "m/migrate.toml",
        )
        .unwrap();
        assert_eq!(config.level("volatile-default"), Level::Warn);
        assert_eq!(config.level("blocking-statement"), Level::Off);
        assert_eq!(config.level("unbounded-update"), Level::Error);
    }

    #[test]
    fn unknown_rules_levels_and_keys_are_errors() {
        let error =
            Config::parse("[rules]\nno-such-rule = \"warn\"\n", "m/migrate.toml").unwrap_err();
        assert_eq!((error[0].code, error[0].line), (codes::UNKNOWN_RULE, 2));
        assert_eq!(
            Config::parse("[rules]\nvolatile-default = \"loud\"\n", "x").unwrap_err()[0].code,
            codes::CONFIG
        );
        assert_eq!(
            Config::parse("[rulez]\n", "x").unwrap_err()[0].code,
            codes::CONFIG
        );
    }
}
