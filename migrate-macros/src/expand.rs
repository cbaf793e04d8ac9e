//! Token generation for `migrations!()`. No SQL logic lives here.

use std::path::PathBuf;

use migrate_core::source::Layout;
use migrate_core::{CheckedSet, Migration, Section, Statement, TransactionMode, check_dir_as};
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

/// The expansion of `migrations!(input)`: the `Migrations` literal, or every diagnostic of the
/// folder as compile errors (warnings as `#[deprecated]` uses) spanned on the path literal.
/// `Err` only when the input is not a path literal or the folder cannot be found or read.
pub fn expand(input: TokenStream) -> syn::Result<TokenStream> {
    let Input { literal, layout } = syn::parse2(input).map_err(|error| {
        syn::Error::new(
            error.span(),
            format!(
                "expected a folder path literal: migrations!(\"migrations\") or migrations!(\"migrations\", layout = \"sqlx\"): {error}"
            ),
        )
    })?;
    let relative = literal.value();
    let manifest_dir = std::env::var_os(MANIFEST_DIR_OVERRIDE)
        .or_else(|| std::env::var_os("CARGO_MANIFEST_DIR"))
        .map(PathBuf::from)
        .ok_or_else(|| {
            syn::Error::new(
                literal.span(),
                "CARGO_MANIFEST_DIR is not set: build with cargo",
            )
        })?;
    let dir = manifest_dir.join(&relative);
    let checked = check_dir_as(&dir, &relative, layout).map_err(|error| {
        syn::Error::new(
            literal.span(),
            format!("migrations!(\"{relative}\"): {error}"),
        )
    })?;

    let tracking = track_inputs(&checked);
    // Warnings are reported alongside errors, so one build shows everything.
    let warnings: Vec<TokenStream> = checked
        .warnings()
        .enumerate()
        .map(|(index, diagnostic)| {
            let name = format_ident!("MigrateWarning{}", index, span = literal.span());
            let note = diagnostic.to_string();
            quote! {
                #[deprecated(note = #note)]
                #[allow(non_camel_case_types, dead_code)]
                struct #name;
                let _ = #name;
            }
        })
        .collect();
    let mut errors = checked
        .errors()
        .map(|d| syn::Error::new(literal.span(), d.to_string()));
    if let Some(mut first) = errors.next() {
        first.extend(errors);
        let compile_errors = first.into_compile_error();
        return Ok(quote! {{ #tracking #(#warnings)* #compile_errors }});
    }

    let dir_text = dir
        .canonicalize()
        .unwrap_or(dir)
        .to_string_lossy()
        .into_owned();
    let migrations = checked
        .files
        .iter()
        .map(|file| migration_tokens(&file.migration));
    Ok(quote! {{
        #tracking
        #(#warnings)*
        ::migrate_core::Migrations {
            dir: ::std::borrow::Cow::Borrowed(#dir_text),
            migrations: ::std::borrow::Cow::Borrowed(&[#(#migrations),*]),
        }
    }})
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
    let version = migration.version;
    let name = migration.name.as_ref();
    let file_name = migration.file_name.as_ref();
    let phase = format_ident!("{}", format!("{:?}", migration.phase));
    let checksum = migration.checksum.0;
    let up = section_tokens(&migration.up);
    let down = match &migration.down {
        Some(section) => {
            let section = section_tokens(section);
            quote!(::std::option::Option::Some(#section))
        }
        None => quote!(::std::option::Option::None),
    };
    let requires = match migration.requires {
        Some(version) => quote!(::std::option::Option::Some(#version)),
        None => quote!(::std::option::Option::None),
    };
    let backfill = match &migration.backfill {
        Some(spec) => {
            let (table, key) = (spec.table.as_ref(), spec.key.as_ref());
            let pace = match spec.pace {
                ::migrate_core::BackfillPace::Adaptive { target_ms } => {
                    let target = match target_ms {
                        Some(ms) => quote!(::std::option::Option::Some(#ms)),
                        None => quote!(::std::option::Option::None),
                    };
                    quote!(::migrate_core::BackfillPace::Adaptive { target_ms: #target })
                }
                ::migrate_core::BackfillPace::Fixed {
                    batch_size,
                    delay_ms,
                } => quote!(::migrate_core::BackfillPace::Fixed {
                    batch_size: #batch_size,
                    delay_ms: #delay_ms,
                }),
            };
            let schema = match spec.schema.as_deref() {
                Some(schema) => {
                    quote!(::std::option::Option::Some(::std::borrow::Cow::Borrowed(#schema)))
                }
                None => quote!(::std::option::Option::None),
            };
            quote!(::std::option::Option::Some(::migrate_core::BackfillSpec {
                schema: #schema,
                table: ::std::borrow::Cow::Borrowed(#table),
                key: ::std::borrow::Cow::Borrowed(#key),
                pace: #pace,
            }))
        }
        None => quote!(::std::option::Option::None),
    };
    let compare = match migration.compare.as_deref() {
        Some(text) => quote!(::std::option::Option::Some(::std::borrow::Cow::Borrowed(#text))),
        None => quote!(::std::option::Option::None),
    };
    let requires_compare = migration.requires_compare;
    let replaces = migration.replaces.iter();
    quote! {
        ::migrate_core::Migration {
            version: #version,
            name: ::std::borrow::Cow::Borrowed(#name),
            phase: ::migrate_core::Phase::#phase,
            file_name: ::std::borrow::Cow::Borrowed(#file_name),
            checksum: ::migrate_core::Checksum([#(#checksum),*]),
            up: #up,
            down: #down,
            requires: #requires,
            backfill: #backfill,
            compare: #compare,
            requires_compare: #requires_compare,
            replaces: ::std::borrow::Cow::Borrowed(&[#(#replaces),*]),
        }
    }
}

fn section_tokens(section: &Section) -> TokenStream {
    let statements = section.statements.iter().map(statement_tokens);
    let mode = match section.mode {
        TransactionMode::Transactional => quote!(::migrate_core::TransactionMode::Transactional),
        TransactionMode::Autocommit => quote!(::migrate_core::TransactionMode::Autocommit),
    };
    quote! {
        ::migrate_core::Section {
            statements: ::std::borrow::Cow::Borrowed(&[#(#statements),*]),
            mode: #mode,
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
    quote! {
        ::migrate_core::Statement {
            sql: ::std::borrow::Cow::Borrowed(#sql),
            line: #line,
            column: #column,
            non_transactional: #non_transactional,
        }
    }
}
