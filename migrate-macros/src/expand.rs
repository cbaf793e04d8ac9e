//! Token generation for `migrations!()`. No SQL logic lives here.

use std::path::PathBuf;

use migrate_core::build_cache::{BuildCache, Expansion};
use migrate_core::migration::{Removal, RemovedObject};
use migrate_core::source::Layout;
use migrate_core::{
    BatchSource, CheckedSet, Migration, Section, Statement, StatementAnalysis, TransactionMode,
    check_folder, read_folder,
};
use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::LitStr;

/// Test hook: trybuild compiles UI tests from a copy of the crate under `target/`, so the
/// tests point the macro back at the real manifest directory with this variable.
const MANIFEST_DIR_OVERRIDE: &str = "MIGRATE_MACROS_MANIFEST_DIR";

/// `"dir"` or `"dir", layout = "<name>"`: the layout is passed through to `check_dir_as`.
struct Input {
    literal: LitStr,
    layout: Option<Layout>,
}

impl syn::parse::Parse for Input {
    fn parse(input: syn::parse::ParseStream) -> syn::Result<Self> {
        let literal: LitStr = input.parse()?;
        let mut layout = None;
        if input.parse::<Option<syn::Token![,]>>()?.is_some() && !input.is_empty() {
            let key: syn::Ident = input.parse()?;
            if key != "layout" {
                return Err(syn::Error::new(key.span(), "the only option is `layout`"));
            }
            input.parse::<syn::Token![=]>()?;
            let value: LitStr = input.parse()?;
            layout = Some(Layout::parse(&value.value()).ok_or_else(|| {
                syn::Error::new(
                    value.span(),
                    format!("unknown layout (known: {})", Layout::names()),
                )
            })?);
            input.parse::<Option<syn::Token![,]>>()?;
        }
        Ok(Input { literal, layout })
    }
}

/// What `migrations!(input)` expands to.
pub enum Expanded {
    /// Checked now.
    Fresh(TokenStream),
    /// From the build cache: the warnings (spanned on the path literal, as when fresh) and
    /// the rest of the expansion as source text, which the caller hands to rustc's lexer (a
    /// proc-macro2 parse of megabytes is slow in an unoptimised macro).
    Cached { warnings: TokenStream, code: String },
}

impl Expanded {
    /// The whole expansion as tokens (a cached one parsed by proc-macro2).
    pub fn into_tokens(self) -> syn::Result<TokenStream> {
        match self {
            Expanded::Fresh(tokens) => Ok(tokens),
            Expanded::Cached { warnings, code } => {
                let code: TokenStream = code.parse().map_err(|error| {
                    syn::Error::new(
                        proc_macro2::Span::call_site(),
                        format!("the build cache entry does not lex: {error}"),
                    )
                })?;
                Ok(quote! {{ #warnings #code }})
            }
        }
    }
}

/// The expansion of `migrations!(input)`, using the build cache of the rustc running the
/// macro when `use_cache` and it has one ([`BuildCache::in_rustc`]).
pub fn expand(input: TokenStream, use_cache: bool) -> syn::Result<Expanded> {
    let manifest_dir = std::env::var_os(MANIFEST_DIR_OVERRIDE)
        .or_else(|| std::env::var_os("CARGO_MANIFEST_DIR"))
        .map(PathBuf::from);
    let cache = use_cache
        .then(|| BuildCache::in_rustc("migrate_macros"))
        .flatten();
    expand_in(input, manifest_dir, cache)
}

/// The expansion of `migrations!(input)` for the crate in `manifest_dir`: the `Migrations`
/// literal, or every diagnostic of the folder as compile errors (warnings as `#[deprecated]`
/// uses) spanned on the path literal. `Err` only when the input is not a path literal or the
/// folder cannot be found or read. A set without errors is stored in `cache`, and taken
/// from it while its inputs are unchanged.
pub fn expand_in(
    input: TokenStream,
    manifest_dir: Option<PathBuf>,
    cache: Option<BuildCache>,
) -> syn::Result<Expanded> {
    let Input { literal, layout } = syn::parse2(input).map_err(|error| {
        syn::Error::new(
            error.span(),
            format!(
                "expected a folder path literal: migrations!(\"migrations\") or migrations!(\"migrations\", layout = \"sqlx\"): {error}"
            ),
        )
    })?;
    let relative = literal.value();
    let manifest_dir = manifest_dir.ok_or_else(|| {
        syn::Error::new(
            literal.span(),
            "CARGO_MANIFEST_DIR is not set: build with cargo",
        )
    })?;
    let dir = manifest_dir.join(&relative);
    let snapshot = read_folder(&dir, &relative).map_err(|error| {
        syn::Error::new(
            literal.span(),
            format!("migrations!(\"{relative}\"): {error}"),
        )
    })?;
    let dir_text = dir
        .canonicalize()
        .unwrap_or_else(|_| dir.clone())
        .to_string_lossy()
        .into_owned();

    let layout_name = layout.map_or("detected", Layout::as_str);
    let call = [
        manifest_dir.to_string_lossy().into_owned(),
        relative.clone(),
        layout_name.to_owned(),
        dir_text.clone(),
    ];
    let call: Vec<&str> = call.iter().map(String::as_str).collect();
    let cached = cache.map(|cache| {
        let key = cache.key(&call, &snapshot);
        (cache, key)
    });
    if let Some((cache, key)) = &cached
        && let Some(Expansion { warnings, code }) = cache.load(key)
    {
        return Ok(Expanded::Cached {
            warnings: warning_tokens(&warnings, &literal),
            code,
        });
    }

    let checked = check_folder(snapshot, layout);
    let tracking = track_inputs(&checked);
    // Warnings are reported alongside errors, so one build shows everything.
    let warnings: Vec<String> = checked.warnings().map(ToString::to_string).collect();
    let warning_uses = warning_tokens(&warnings, &literal);
    let mut errors = checked
        .errors()
        .map(|d| syn::Error::new(literal.span(), d.to_string()));
    if let Some(mut first) = errors.next() {
        first.extend(errors);
        let compile_errors = first.into_compile_error();
        return Ok(Expanded::Fresh(
            quote! {{ #tracking #warning_uses #compile_errors }},
        ));
    }

    let migrations = checked
        .files
        .iter()
        .map(|file| migration_tokens(&file.migration));
    let imports = imports();
    let code = quote! {
        #tracking
        #imports
        Migrations::from_checked(#dir_text, &[#(#migrations),*])
    };
    if let Some((cache, key)) = cached {
        let code = code.to_string();
        cache.store(&key, &Expansion { warnings, code });
    }
    Ok(Expanded::Fresh(quote! {{ #warning_uses #code }}))
}

/// Each warning as the use of a `#[deprecated]` item whose note is the diagnostic: rustc
/// then prints it as a warning on the path literal.
fn warning_tokens(warnings: &[String], literal: &LitStr) -> TokenStream {
    let uses = warnings.iter().enumerate().map(|(index, note)| {
        let name = format_ident!("MigrateWarning{}", index, span = literal.span());
        quote! {
            #[deprecated(note = #note)]
            #[allow(non_camel_case_types, dead_code)]
            struct #name;
            let _ = #name;
        }
    });
    quote! { #(#uses)* }
}

/// Short names for the generated code: the same paths spelt out in full in each of
/// thousands of statements made rustc's parsing and name resolution of the expansion cost
/// more than the include_str!s of the same files.
fn imports() -> TokenStream {
    quote! {
        #[allow(unused_imports)]
        use ::migrate_core::{
            BackfillPace, BackfillSpec, BatchSource, Checksum, Migration, Migrations, Phase,
            Section, Statement, StatementAnalysis, TransactionMode,
        };
        #[allow(unused_imports)]
        use ::migrate_core::migration::{Removal, RemovedObject};
        #[allow(unused_imports)]
        use ::std::borrow::Cow::Borrowed;
        #[allow(unused_imports)]
        use ::std::option::Option::{None, Some};
    }
}

/// `include_bytes!` of every input makes cargo rebuild the crate when one changes.
fn track_inputs(checked: &CheckedSet) -> TokenStream {
    let paths = checked
        .inputs
        .iter()
        .map(|path| path.to_string_lossy().into_owned());
    quote! { #(const _: &[u8] = include_bytes!(#paths);)* }
}

fn migration_tokens(migration: &Migration) -> TokenStream {
    let version = proc_macro2::Literal::u64_unsuffixed(migration.version);
    let name = migration.name.as_ref();
    let file_name = migration.file_name.as_ref();
    let phase = format_ident!("{}", format!("{:?}", migration.phase));
    // An array, not `*b"..."`: a deref is not promoted to 'static in a `let`.
    let checksum = migration
        .checksum
        .0
        .map(proc_macro2::Literal::u8_unsuffixed);
    let up = section_tokens(&migration.up);
    let down = match &migration.down {
        Some(section) => {
            let section = section_tokens(section);
            quote!(Some(#section))
        }
        None => quote!(None),
    };
    let requires = match migration.requires {
        Some(version) => {
            let version = proc_macro2::Literal::u64_unsuffixed(version);
            quote!(Some(#version))
        }
        None => quote!(None),
    };
    let backfill = match &migration.backfill {
        Some(spec) => {
            let (table, key) = (spec.table.as_ref(), spec.key.as_ref());
            let pace = match spec.pace {
                ::migrate_core::BackfillPace::Adaptive { target_ms } => {
                    let target = match target_ms {
                        Some(ms) => quote!(Some(#ms)),
                        None => quote!(None),
                    };
                    quote!(BackfillPace::Adaptive { target_ms: #target })
                }
                ::migrate_core::BackfillPace::Fixed {
                    batch_size,
                    delay_ms,
                } => quote!(BackfillPace::Fixed {
                    batch_size: #batch_size,
                    delay_ms: #delay_ms,
                }),
            };
            let schema = match spec.schema.as_deref() {
                Some(schema) => {
                    quote!(Some(Borrowed(#schema)))
                }
                None => quote!(None),
            };
            quote!(Some(BackfillSpec {
                schema: #schema,
                table: Borrowed(#table),
                key: Borrowed(#key),
                pace: #pace,
            }))
        }
        None => quote!(None),
    };
    let compare = match migration.compare.as_deref() {
        Some(text) => quote!(Some(Borrowed(#text))),
        None => quote!(None),
    };
    let compare_line = match migration.compare_line {
        Some(line) => quote!(Some(#line)),
        None => quote!(None),
    };
    let requires_compare = migration.requires_compare;
    let replaces = migration.replaces.iter();
    let analysis = match &migration.analysis {
        Some(analysis) => {
            let analysis = analysis_tokens(analysis);
            quote!(Some(#analysis))
        }
        None => quote!(None),
    };
    quote! {
        Migration {
            version: #version,
            name: Borrowed(#name),
            phase: Phase::#phase,
            file_name: Borrowed(#file_name),
            checksum: Checksum([#(#checksum),*]),
            up: #up,
            down: #down,
            requires: #requires,
            backfill: #backfill,
            compare: #compare,
            compare_line: #compare_line,
            requires_compare: #requires_compare,
            replaces: Borrowed(&[#(#replaces),*]),
            analysis: #analysis,
        }
    }
}

fn section_tokens(section: &Section) -> TokenStream {
    let statements = section.statements.iter().map(statement_tokens);
    let mode = match section.mode {
        TransactionMode::Transactional => quote!(TransactionMode::Transactional),
        TransactionMode::Autocommit => quote!(TransactionMode::Autocommit),
    };
    let file_name = match section.file_name.as_deref() {
        Some(name) => quote!(Some(Borrowed(#name))),
        None => quote!(None),
    };
    quote! {
        Section {
            statements: Borrowed(&[#(#statements),*]),
            mode: #mode,
            file_name: #file_name,
        }
    }
}

fn statement_tokens(statement: &Statement) -> TokenStream {
    let Statement {
        sql,
        line,
        column,
        non_transactional,
    } = statement;
    let sql = sql.as_ref();
    // Unsuffixed: the field types say what they are, and thousands of statements are parsed.
    let (line, column) = (
        proc_macro2::Literal::u32_unsuffixed(*line),
        proc_macro2::Literal::u32_unsuffixed(*column),
    );
    quote! {
        Statement {
            sql: Borrowed(#sql),
            line: #line,
            column: #column,
            non_transactional: #non_transactional,
        }
    }
}

/// What the check read of the statements, so the runtime does not parse them again.
fn analysis_tokens(analysis: &StatementAnalysis) -> TokenStream {
    let batches = analysis.batches.iter().map(|source| match source {
        BatchSource::Update {
            assignments,
            pending,
        } => {
            let (assignments, pending) = (assignments.as_ref(), pending.as_ref());
            quote!(BatchSource::Update {
                assignments: Borrowed(#assignments),
                pending: Borrowed(#pending),
            })
        }
        BatchSource::Delete { pending } => {
            let pending = pending.as_ref();
            quote!(BatchSource::Delete {
                pending: Borrowed(#pending),
            })
        }
        BatchSource::Refused(problem) => {
            let problem = problem.as_ref();
            quote!(BatchSource::Refused(Borrowed(#problem)))
        }
    });
    let removes = analysis.removes.iter().map(removed_tokens);
    let locked_tables = analysis.locked_tables.iter().map(AsRef::<str>::as_ref);
    quote! {
        StatementAnalysis {
            batches: Borrowed(&[#(#batches),*]),
            removes: Borrowed(&[#(#removes),*]),
            locked_tables: Borrowed(&[#(Borrowed(#locked_tables)),*]),
        }
    }
}

fn removed_tokens(removed: &RemovedObject) -> TokenStream {
    let RemovedObject {
        kind,
        name,
        column,
        removal,
        line,
    } = removed;
    let name = name.as_ref();
    let column = match column.as_deref() {
        Some(column) => quote!(Some(Borrowed(#column))),
        None => quote!(None),
    };
    let removal = match removal {
        Removal::Dropped => quote!(Removal::Dropped),
        Removal::Renamed { to } => {
            let to = to.as_ref();
            quote!(Removal::Renamed { to: Borrowed(#to) })
        }
        Removal::Retyped => quote!(Removal::Retyped),
        Removal::Dependent { on } => {
            let on = on.as_ref();
            quote!(Removal::Dependent { on: Borrowed(#on) })
        }
    };
    quote! {
        RemovedObject {
            kind: #kind,
            name: Borrowed(#name),
            column: #column,
            removal: #removal,
            line: #line,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use migrate_core::build_cache::BuildCache;
    use quote::quote;

    use super::{Expanded, expand_in};

    /// A crate folder whose `migrations/` lints with a warning (a `timestamp` column) and
    /// no error.
    fn crate_dir() -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("temp dir");
        let migrations = root.path().join("migrations");
        std::fs::create_dir(&migrations).expect("mkdir");
        let files = [
            (
                "0001_users.expand.sql",
                "CREATE TABLE IF NOT EXISTS users (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, seen timestamp);\n-- migrate:down\nDROP TABLE IF EXISTS users;\n",
            ),
            (
                "0002_email.expand.sql",
                "ALTER TABLE users ADD COLUMN IF NOT EXISTS email text;\n",
            ),
        ];
        for (name, sql) in files {
            std::fs::write(migrations.join(name), sql).expect("write");
        }
        root
    }

    fn expand(root: &Path, cache: Option<BuildCache>) -> Expanded {
        expand_in(quote!("migrations"), Some(root.to_path_buf()), cache).expect("expands")
    }

    fn text(expanded: Expanded) -> String {
        expanded.into_tokens().expect("lexes").to_string()
    }

    fn is_cached(expanded: &Expanded) -> bool {
        matches!(expanded, Expanded::Cached { .. })
    }

    #[test]
    fn a_cold_a_warm_and_a_refreshed_cache_expand_exactly_as_no_cache() {
        let root = crate_dir();
        let target = tempfile::tempdir().expect("temp dir");
        let cache = || BuildCache::at(target.path().join("cache"), b"test build".to_vec());
        let uncached = text(expand(root.path(), None));
        assert!(
            uncached.contains("deprecated"),
            "the fixture has a warning: {uncached}"
        );

        let cold = expand(root.path(), cache());
        assert!(!is_cached(&cold));
        assert_eq!(text(cold), uncached, "cold");
        let warm = expand(root.path(), cache());
        assert!(
            is_cached(&warm),
            "the second expansion comes from the cache"
        );
        assert_eq!(text(warm), uncached, "warm");

        // One file changed: checked again, and the result is that of the new content.
        std::fs::write(
            root.path().join("migrations/0002_email.expand.sql"),
            "ALTER TABLE users ADD COLUMN IF NOT EXISTS email_address text;\n",
        )
        .expect("edit");
        let changed_uncached = text(expand(root.path(), None));
        assert_ne!(changed_uncached, uncached);
        let changed = expand(root.path(), cache());
        assert!(!is_cached(&changed), "a changed file misses");
        assert_eq!(text(changed), changed_uncached, "after a change");
        let changed_warm = expand(root.path(), cache());
        assert!(is_cached(&changed_warm));
        assert_eq!(text(changed_warm), changed_uncached, "warm after a change");
    }

    #[test]
    fn a_damaged_entry_is_checked_again() {
        let root = crate_dir();
        let target = tempfile::tempdir().expect("temp dir");
        let dir = target.path().join("cache");
        let cache = || BuildCache::at(dir.clone(), b"test build".to_vec());
        let uncached = text(expand(root.path(), None));
        assert!(!is_cached(&expand(root.path(), cache())));
        for entry in std::fs::read_dir(&dir).expect("cache dir") {
            let path = entry.expect("entry").path();
            let bytes = std::fs::read(&path).expect("read entry");
            std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("truncate");
        }
        let after = expand(root.path(), cache());
        assert!(!is_cached(&after), "a truncated entry is a miss");
        assert_eq!(text(after), uncached);
    }

    #[test]
    fn a_set_with_errors_is_never_cached() {
        let root = crate_dir();
        std::fs::write(
            root.path().join("migrations/0003_index.expand.sql"),
            "CREATE INDEX IF NOT EXISTS users_email ON users (email);\n",
        )
        .expect("write");
        let target = tempfile::tempdir().expect("temp dir");
        let cache = || BuildCache::at(target.path().join("cache"), b"test build".to_vec());
        let uncached = text(expand(root.path(), None));
        assert!(uncached.contains("require-concurrent-index"), "{uncached}");
        for _ in 0..2 {
            let expanded = expand(root.path(), cache());
            assert!(!is_cached(&expanded));
            assert_eq!(text(expanded), uncached);
        }
    }
}
