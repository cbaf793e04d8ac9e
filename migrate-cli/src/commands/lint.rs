//! `migrate lint`: exactly the findings of `check_dir`, the function the macro calls.

use std::ffi::OsStr;
use std::path::Path;

use migrate_core::lint::config::CONFIG_FILE_NAME;
use migrate_core::lint::coverage::Coverage;
use migrate_core::{Diagnostic, Severity};

use crate::Context;
use crate::cli::Format;
use crate::error::Outcome;
use crate::output::{self, Style};

pub fn run(context: &Context, path: Option<&Path>) -> anyhow::Result<Outcome> {
    let (dir, display) = context.folder(path);
    let checked = context.check(&dir, &display)?;
    let errors = checked.errors().count();
    let warnings = checked.warnings().count();
    match context.config.format {
        Format::Json => output::print_json(&JsonReport {
            diagnostics: &checked.diagnostics,
            errors,
            warnings,
            statements: &checked.coverage,
        }),
        Format::Github => {
            for diagnostic in &checked.diagnostics {
                println!("{}", github_annotation(diagnostic));
            }
        }
        Format::Human => {
            for diagnostic in &checked.diagnostics {
                println!(
                    "{}",
                    context.name_commands(&human(diagnostic, context.config.color))
                );
            }
            // Every migration file read, also those left out of the set by a file-level error.
            let files = checked
                .inputs
                .iter()
                .filter(|path| path.file_name() != Some(OsStr::new(CONFIG_FILE_NAME)))
                .count();
            eprintln!("{display}: {files} file(s), {errors} error(s), {warnings} warning(s)");
        }
    }
    // The process ends after this command: freeing every file's tokens and thousands of
    // findings one by one would only delay the exit (a few ms on a large corpus).
    std::mem::forget(checked);
    Ok(if errors > 0 {
        Outcome::LintFindings
    } else {
        Outcome::Success
    })
}

/// `lint --format json`, borrowing the findings rather than copying them into a `Value`.
#[derive(serde::Serialize)]
struct JsonReport<'a> {
    diagnostics: &'a [Diagnostic],
    errors: usize,
    warnings: usize,
    statements: &'a Coverage,
}

/// The shared renderer, with the severity coloured on a terminal.
fn human(diagnostic: &Diagnostic, color: bool) -> String {
    let text = diagnostic.to_string();
    if !color {
        return text;
    }
    let (word, style) = match diagnostic.severity {
        Severity::Error => ("error[", Style::Red),
        Severity::Warning => ("warning[", Style::Yellow),
    };
    let label = format!("{word}{}]", diagnostic.code);
    text.replacen(&label, &output::paint(&label, style, true), 1)
}

/// `::error file=..,line=..,col=..,title=rule::message` (GitHub workflow command syntax:
/// properties escape `%`, CR, LF, `:` and `,`; the message escapes `%`, CR and LF).
pub fn github_annotation(diagnostic: &Diagnostic) -> String {
    let level = match diagnostic.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let mut message = diagnostic.message.clone();
    if let Some(help) = &diagnostic.help {
        message.push_str("\nhelp: ");
        message.push_str(help);
    }
    format!(
        "::{level} file={},line={},col={},title={}::{}",
        escape_property(&diagnostic.file),
        diagnostic.line,
        diagnostic.column,
        escape_property(diagnostic.code),
        escape_data(&message)
    )
}

fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_escape_their_syntax() {
        let diagnostic =
            Diagnostic::error("m/0001_a,b.sql", 3, 7, "unbounded-update", "100% bad: x")
                .with_help("line one\nline two");
        assert_eq!(
            github_annotation(&diagnostic),
            "::error file=m/0001_a%2Cb.sql,line=3,col=7,title=unbounded-update::100%25 bad: x%0Ahelp: line one%0Aline two"
        );
    }
}
