//! Prints the rule catalogue as Markdown (what the README embeds between its rules markers).

fn main() {
    print!("{}", migrate_core::lint::registry::catalogue_markdown());
}
