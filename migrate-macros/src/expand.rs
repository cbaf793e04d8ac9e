//! Token generation for `migrations!()`. No SQL logic lives here.

use std::path::{Path, PathBuf};

use migrate_core::build_cache::{BuildCache, Expansion};
use migrate_core::checked_set::EmbeddedSet;
use migrate_core::migration::packed::{FORMAT, PackError, PackedSet};
use migrate_core::source::Layout;
use migrate_core::{CheckedSet, check_folder, read_folder};
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
    // Warnings are reported alongside errors, so one build shows everything.
    let warnings: Vec<String> = checked.warnings().map(ToString::to_string).collect();
    let warning_uses = warning_tokens(&warnings, &literal);
    let mut errors = checked
        .errors()
        .map(|d| syn::Error::new(literal.span(), d.to_string()));
    if let Some(mut first) = errors.next() {
        first.extend(errors);
        let compile_errors = first.into_compile_error();
        let tracking = track_inputs(&checked, &[]);
        return Ok(Expanded::Fresh(
            quote! {{ #tracking #warning_uses #compile_errors }},
        ));
    }

    let (set, included) = packed_set_tokens(&checked, &dir, &dir_text)
        .map_err(|error| syn::Error::new(literal.span(), error.to_string()))?;
    let tracking = track_inputs(&checked, &included);
    let code = quote! {
        #tracking
        #set
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

/// `include_bytes!` of every input makes cargo rebuild the crate when one changes; those the
/// set already takes with `include_str!` (`included`) are left out.
fn track_inputs(checked: &CheckedSet, included: &[PathBuf]) -> TokenStream {
    let paths = checked
        .inputs
        .iter()
        .filter(|path| !included.contains(path))
        .map(|path| path.to_string_lossy().into_owned());
    quote! { #(const _: &[u8] = include_bytes!(#paths);)* }
}

/// The set as `Migrations::from_packed`: each file's text once (`include_str!`, which also
/// makes cargo rebuild when it changes), the pool, and the packed structure in one byte
/// string, so rustc's work follows the number of files, not of statements. The `const` makes
/// a migrate-core that reads another format a compile error. Also returns the files taken.
fn packed_set_tokens(
    checked: &CheckedSet,
    dir: &Path,
    dir_text: &str,
) -> Result<(TokenStream, Vec<PathBuf>), PackError> {
    let EmbeddedSet {
        files,
        packed: PackedSet { blob, pool },
    } = checked.pack(dir)?;
    let paths: Vec<PathBuf> = files.into_iter().map(|(path, _)| path).collect();
    let blob = proc_macro2::Literal::byte_string(&blob);
    let format = proc_macro2::Literal::u8_unsuffixed(FORMAT);
    let path_texts = paths.iter().map(|path| path.to_string_lossy().into_owned());
    let set = quote! {
        const _: () = ::migrate_core::migration::packed::expect_format(#format);
        ::migrate_core::Migrations::from_packed(
            #dir_text,
            &[#(include_str!(#path_texts),)* #pool],
            #blob,
        )
    };
    Ok((set, paths))
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

    /// The expansion's size follows the files: each file's text once, one byte string, and
    /// no item per statement.
    #[test]
    fn the_expansion_is_packed_each_file_once() {
        let root = crate_dir();
        let expanded = text(expand(root.path(), None));
        assert_eq!(expanded.matches("include_str !").count(), 2, "{expanded}");
        assert!(expanded.contains("from_packed"), "{expanded}");
        assert!(expanded.contains("expect_format"), "{expanded}");
        // No statement's text outside the included files.
        assert!(!expanded.contains("CREATE TABLE"), "{expanded}");
        assert!(!expanded.contains("Statement"), "{expanded}");
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
