//! Other tools' folder layouts: which one a folder uses, and each migration's files turned
//! into one [`MigrationSource`] the file parser reads like one of ours.
//!
//! A migration whose up and down parts are two files (sqlx's and golang-migrate's
//! `.up.sql`/`.down.sql`, diesel's `up.sql`/`down.sql`, Flyway's `V<n>__`/`U<n>__`) becomes one
//! text: the up file, then `-- migrate:down`, then the down file. Diagnostics in the down part
//! are shown against the down file and its own lines ([`DownFile`]); the checksum covers that
//! text.

use std::collections::BTreeMap;
use std::fmt;

use super::file::{DirectiveComment, read_directive_comment};
use super::file_name::{file_name_help, parse_file_name};
use super::folder::SourceFile;
use crate::diagnostic::{Diagnostic, codes};
use crate::migration::Phase;
use crate::splitter::{self, TokenKind};

/// A folder layout: ours, or another tool's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// `<version>_<name>[.<phase>].sql`, `-- migrate:` directives.
    Migrate,
    /// `<version>_<description>.sql`, or `.up.sql` + `.down.sql`; `-- no-transaction`.
    Sqlx,
    /// `<version>_<title>.up.sql` + `.down.sql`.
    GolangMigrate,
    /// `<version>_<name>.sql` with `-- migrate:up` and `-- migrate:down` parts.
    Dbmate,
    /// `V<version>__<name>.sql`; `U<version>__` is unversioned.
    Refinery,
    /// `V<version>__<description>.sql`; `U<version>__` undoes the `V` of its version.
    Flyway,
    /// `<version>_<name>/up.sql` + `down.sql`, optional `metadata.toml`.
    Diesel,
}

impl Layout {
    /// Every layout, ours first.
    pub const ALL: [Layout; 7] = [
        Layout::Migrate,
        Layout::Sqlx,
        Layout::GolangMigrate,
        Layout::Dbmate,
        Layout::Refinery,
        Layout::Flyway,
        Layout::Diesel,
    ];

    /// The name `--layout`, `migrate.toml` and `migrate import --from` use.
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Migrate => "migrate",
            Layout::Sqlx => "sqlx",
            Layout::GolangMigrate => "golang-migrate",
            Layout::Dbmate => "dbmate",
            Layout::Refinery => "refinery",
            Layout::Flyway => "flyway",
            Layout::Diesel => "diesel",
        }
    }

    /// The layout [`Layout::as_str`] names.
    pub fn parse(text: &str) -> Option<Layout> {
        Layout::ALL
            .into_iter()
            .find(|layout| layout.as_str() == text)
    }

    /// Every name, for help texts and errors.
    pub fn names() -> String {
        Layout::ALL.map(Layout::as_str).join(", ")
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the down part of a combined text comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownFile {
    /// The down file's path as diagnostics show it.
    pub display_path: String,
    /// Its name as the runtime's messages show it (`2024-01-31-120000_users/down.sql`).
    pub file_name: String,
    /// The line of the combined text where the down file's first line is.
    pub first_line: u32,
}

impl DownFile {
    /// `(file, line)` of a combined text's line as the user sees it.
    pub fn locate<'a>(this: Option<&'a Self>, up_path: &'a str, line: u32) -> (&'a str, u32) {
        match this {
            Some(down) if line >= down.first_line => {
                (&down.display_path, line - down.first_line + 1)
            }
            _ => (up_path, line),
        }
    }
}

/// One migration's input, in our format, whatever layout it came from.
#[derive(Debug, Clone)]
pub struct MigrationSource {
    /// The layout it was read in.
    pub layout: Layout,
    /// The up file (display path, the migration's file name) and the text to parse.
    pub file: SourceFile,
    /// The version, from the name.
    pub version: u64,
    /// The name part (another tool's description as written).
    pub name: String,
    /// The phase: from our file name, else `migrate.toml`'s `[phases]`, else expand; a
    /// `-- migrate:phase` line may set it in another tool's file.
    pub phase: Phase,
    /// Our file names say the phase: a `-- migrate:phase` line is refused there.
    pub phase_from_name: bool,
    /// Set when `[phases]` of `migrate.toml` named this version.
    pub phase_from_config: bool,
    /// The down file, when the layout keeps the down part in a file of its own.
    pub down_file: Option<DownFile>,
    /// The other tool's own switch said to run the part without a transaction: `[up, down]`.
    pub no_transaction: [bool; 2],
}

impl MigrationSource {
    /// A file of our own layout, or why its name is not one.
    pub fn ours(file: &SourceFile) -> Result<MigrationSource, Diagnostic> {
        let (version, name, phase) = parse_file_name(&file.file_name).map_err(|problem| {
            let help = if has_foreign_name(&file.file_name) {
                FOREIGN_NAME_HELP
            } else {
                file_name_help(&file.file_name)
            };
            bad_name(
                file,
                format!(
                    "`{}` is not a migration file name: {problem}",
                    file.file_name
                ),
                help,
            )
        })?;
        Ok(MigrationSource {
            layout: Layout::Migrate,
            file: file.clone(),
            version,
            name,
            phase,
            phase_from_name: true,
            phase_from_config: false,
            down_file: None,
            no_transaction: [false; 2],
        })
    }
}

const FOREIGN_NAME_HELP: &str = "name files `<version>_<name>[.<phase>].sql` with a name of [a-z0-9_]; \
if this folder is sqlx's or dbmate's, read it as such with --layout sqlx or --layout dbmate \
(`layout = \"...\"` in migrate.toml)";

fn bad_name(file: &SourceFile, message: String, help: &str) -> Diagnostic {
    Diagnostic::error(&file.display_path, 1, 1, codes::BAD_FILE_NAME, message).with_help(help)
}

/// What a folder is made of, before the layout is known.
#[derive(Debug, Clone, Default)]
pub struct Entries {
    /// The `.sql` files at the top of the folder.
    pub files: Vec<SourceFile>,
    /// Diesel's migrations: `<dir>/up.sql`, `<dir>/down.sql`, `<dir>/metadata.toml`, with
    /// `file_name` the path under the folder.
    pub nested: Vec<SourceFile>,
    /// Flyway's per-script configuration, `<script>.sql.conf`.
    pub script_configs: Vec<SourceFile>,
}

/// The shape of one top-level file name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Shape {
    /// `V<version>__<description>.sql`.
    Versioned {
        version: String,
        description: String,
    },
    /// `U<version>__<description>.sql`.
    Undo {
        version: String,
        description: String,
    },
    /// `R__<description>.sql`.
    Repeatable,
    /// `<digits>_<rest>.up.sql` / `.down.sql`.
    Paired {
        version: String,
        title: String,
        up: bool,
    },
    /// `<digits>_<rest>.sql`.
    Single {
        version: String,
        rest: String,
    },
    Unknown,
}

fn shape(file_name: &str) -> Shape {
    let Some(stem) = file_name.strip_suffix(".sql") else {
        return Shape::Unknown;
    };
    let prefixed = |prefix: char| {
        let rest = stem.strip_prefix(prefix)?;
        let (version, description) = rest.split_once("__")?;
        Some((version.to_owned(), description.to_owned()))
    };
    if let Some((version, description)) = prefixed('V') {
        return Shape::Versioned {
            version,
            description,
        };
    }
    if let Some((version, description)) = prefixed('U') {
        return Shape::Undo {
            version,
            description,
        };
    }
    if stem.starts_with("R__") {
        return Shape::Repeatable;
    }
    let digits = stem.bytes().take_while(u8::is_ascii_digit).count();
    let Some(rest) = stem[digits..].strip_prefix('_').filter(|_| digits > 0) else {
        return Shape::Unknown;
    };
    let version = stem[..digits].to_owned();
    for (suffix, up) in [(".up", true), (".down", false)] {
        if let Some(title) = rest.strip_suffix(suffix) {
            return Shape::Paired {
                version,
                title: title.to_owned(),
                up,
            };
        }
    }
    Shape::Single {
        version,
        rest: rest.to_owned(),
    }
}

/// The families auto-detection tells apart by file names alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Family {
    Single,
    Paired,
    Prefixed,
    Directories,
}

impl Family {
    fn describe(self) -> &'static str {
        match self {
            Family::Single => {
                "one file per migration, `<version>_<name>.sql` (migrate, sqlx, dbmate)"
            }
            Family::Paired => "`<version>_<name>.up.sql` + `.down.sql` (sqlx, golang-migrate)",
            Family::Prefixed => "`V<version>__<name>.sql` (Flyway, refinery)",
            Family::Directories => "`<version>_<name>/up.sql` directories (diesel)",
        }
    }
}

/// The folder's layout: `forced` when given, else detected. A folder that mixes layouts, or
/// whose files fit two layouts that would read them differently, is an error naming the files.
pub fn detect(entries: &Entries, forced: Option<Layout>) -> Result<Layout, Vec<Diagnostic>> {
    if let Some(layout) = forced {
        return Ok(layout);
    }
    let mut families: BTreeMap<Family, Vec<&SourceFile>> = BTreeMap::new();
    for file in &entries.files {
        let family = match shape(&file.file_name) {
            Shape::Versioned { .. } | Shape::Undo { .. } | Shape::Repeatable => Family::Prefixed,
            Shape::Paired { .. } => Family::Paired,
            Shape::Single { .. } => Family::Single,
            Shape::Unknown => continue,
        };
        families.entry(family).or_default().push(file);
    }
    for file in entries
        .nested
        .iter()
        .filter(|f| f.file_name.ends_with("/up.sql"))
    {
        families.entry(Family::Directories).or_default().push(file);
    }
    if families.len() > 1 {
        let summary: Vec<String> = families
            .iter()
            .map(|(family, files)| format!("{}: {}", family.describe(), names(files)))
            .collect();
        let message = format!("the folder mixes layouts: {}", summary.join("; "));
        return Err(families
            .values()
            .flatten()
            .map(|file| {
                Diagnostic::error(&file.display_path, 1, 1, codes::LAYOUT, message.clone())
                    .with_help("keep one layout per folder, or pass --layout (`layout = \"...\"` in migrate.toml) to read it as one")
            })
            .collect());
    }
    match families.into_keys().next() {
        None | Some(Family::Single) => detect_single(&entries.files),
        Some(Family::Paired) => Ok(Layout::Sqlx),
        Some(Family::Directories) => Ok(Layout::Diesel),
        Some(Family::Prefixed) => detect_prefixed(&entries.files),
    }
}

fn names(files: &[&SourceFile]) -> String {
    const SHOWN: usize = 5;
    let mut list: Vec<&str> = files
        .iter()
        .take(SHOWN)
        .map(|f| f.file_name.as_str())
        .collect();
    let more = files.len().saturating_sub(SHOWN);
    let more_text = format!("and {more} more");
    if more > 0 {
        list.push(&more_text);
    }
    list.join(", ")
}

/// One file per migration: ours, sqlx's simple files and dbmate's read the same way, except
/// for sqlx's `-- no-transaction` first line and dbmate's `-- migrate:up transaction:false`,
/// which decide the layout when present. Without them a folder is ours, and a name ours
/// refuses is reported as such (with a hint at `--layout`), except that a folder where every
/// file starts with `-- migrate:up` (which dbmate requires) and some name is not ours is
/// dbmate's.
fn detect_single(files: &[SourceFile]) -> Result<Layout, Vec<Diagnostic>> {
    let sqlx: Vec<&SourceFile> = files
        .iter()
        .filter(|f| has_sqlx_no_transaction(&f.bytes))
        .collect();
    let dbmate: Vec<&SourceFile> = files
        .iter()
        .filter(|f| has_dbmate_options(&f.bytes))
        .collect();
    match (sqlx.is_empty(), dbmate.is_empty()) {
        (false, false) => {
            let message = format!(
                "the folder fits two layouts that read it differently: sqlx's `-- no-transaction` in {} and dbmate's `-- migrate:up transaction:false` in {}",
                names(&sqlx),
                names(&dbmate)
            );
            Err(sqlx
                .iter()
                .chain(&dbmate)
                .map(|file| {
                    Diagnostic::error(&file.display_path, 1, 1, codes::LAYOUT, message.clone())
                        .with_help("pass --layout sqlx or --layout dbmate (or `layout = \"...\"` in migrate.toml)")
                })
                .collect())
        }
        (false, true) => Ok(Layout::Sqlx),
        (true, false) => Ok(Layout::Dbmate),
        (true, true)
            if files.iter().any(|f| has_foreign_name(&f.file_name))
                && files.iter().all(|f| starts_with_up_marker(&f.bytes)) =>
        {
            Ok(Layout::Dbmate)
        }
        (true, true) => Ok(Layout::Migrate),
    }
}

/// `V` files alone read the same as Flyway's and refinery's; a `U` file is Flyway's undo of
/// the `V` of its version, or refinery's unversioned migration: without a `V` of its version it
/// can only be refinery's, and that is said rather than guessed.
fn detect_prefixed(files: &[SourceFile]) -> Result<Layout, Vec<Diagnostic>> {
    let versioned: Vec<String> = files
        .iter()
        .filter_map(|f| match shape(&f.file_name) {
            Shape::Versioned { version, .. } => Some(version),
            _ => None,
        })
        .collect();
    let orphans: Vec<&SourceFile> = files
        .iter()
        .filter(|f| matches!(shape(&f.file_name), Shape::Undo { version, .. } if !versioned.contains(&version)))
        .collect();
    if orphans.is_empty() {
        return Ok(Layout::Flyway);
    }
    let message = format!(
        "{} undo nothing as Flyway undo migrations (no `V` file of their version), so they may be refinery's unversioned migrations",
        names(&orphans)
    );
    Err(orphans
        .iter()
        .map(|file| {
            Diagnostic::error(&file.display_path, 1, 1, codes::LAYOUT, message.clone())
                .with_help("pass --layout refinery (or `layout = \"refinery\"` in migrate.toml) to read `U` files as refinery's, or add the `V` file each Flyway undo belongs to")
        })
        .collect())
}

/// A name our grammar refuses for its characters (capitals, dashes, spaces), not for a
/// mistake ours would report (a version past `bigint`, an unknown phase after a dot): the
/// kind of name sqlx and dbmate accept.
fn has_foreign_name(file_name: &str) -> bool {
    let Some(stem) = file_name.strip_suffix(".sql") else {
        return false;
    };
    let rest = stem.trim_start_matches(|c: char| c.is_ascii_digit());
    rest.strip_prefix('_').is_some_and(|name| {
        !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
    })
}

/// sqlx runs a file without a transaction when its text starts with `-- no-transaction`.
pub(crate) fn has_sqlx_no_transaction(bytes: &[u8]) -> bool {
    bytes.starts_with(b"-- no-transaction")
}

fn lines(bytes: &[u8]) -> impl Iterator<Item = &str> {
    std::str::from_utf8(bytes)
        .unwrap_or("")
        .lines()
        .map(str::trim)
}

fn has_dbmate_options(bytes: &[u8]) -> bool {
    // One search of the bytes first: the line walk is what costs, and few files have options.
    if !std::str::from_utf8(bytes).is_ok_and(|text| text.contains("transaction:")) {
        return false;
    }
    lines(bytes).any(|line| {
        ["-- migrate:up ", "-- migrate:down "]
            .iter()
            .any(|marker| line.starts_with(marker) && line.contains("transaction:"))
    })
}

/// The first line is `-- migrate:up`, or a misspelling of it, which the file parser then
/// reports at its line rather than the whole file being refused for a missing marker.
fn starts_with_up_marker(bytes: &[u8]) -> bool {
    lines(bytes)
        .find(|line| !line.is_empty())
        .is_some_and(|line| match read_directive_comment(line) {
            DirectiveComment::Directive(text) => text.split_whitespace().next() == Some("up"),
            DirectiveComment::NearMiss { written } => written.starts_with("up"),
            DirectiveComment::NotADirective => false,
        })
}

/// The folder's migrations in `layout`, each with its phase from `phases` (`migrate.toml`)
/// unless our file name gives one; every file that is not a migration of that layout is a
/// diagnostic naming it.
pub fn assemble(
    entries: &Entries,
    layout: Layout,
    phases: &BTreeMap<u64, Phase>,
) -> (Vec<MigrationSource>, Vec<Diagnostic>) {
    let mut assembly = Assembly {
        layout,
        sources: Vec::new(),
        diagnostics: Vec::new(),
    };
    match layout {
        Layout::Migrate => {
            for file in &entries.files {
                match MigrationSource::ours(file) {
                    Ok(source) => assembly.sources.push(source),
                    Err(diagnostic) => assembly.diagnostics.push(diagnostic),
                }
            }
        }
        Layout::Sqlx | Layout::GolangMigrate | Layout::Dbmate => assembly.digits_first(entries),
        Layout::Flyway | Layout::Refinery => assembly.prefixed(entries),
        Layout::Diesel => assembly.directories(entries),
    }
    if layout != Layout::Diesel {
        assembly.refuse_all(
            &entries.nested,
            "a folder with `up.sql` is a diesel migration",
        );
    }
    if layout != Layout::Flyway {
        assembly.refuse_all(
            &entries.script_configs,
            "`.sql.conf` files configure Flyway scripts",
        );
    }
    for source in &mut assembly.sources {
        if let Some(&phase) = phases
            .get(&source.version)
            .filter(|_| !source.phase_from_name)
        {
            source.phase = phase;
            source.phase_from_config = true;
        }
    }
    (assembly.sources, assembly.diagnostics)
}

struct Assembly {
    layout: Layout,
    sources: Vec<MigrationSource>,
    diagnostics: Vec<Diagnostic>,
}

impl Assembly {
    fn help(&self) -> &'static str {
        match self.layout {
            Layout::Migrate => "name files `<version>_<name>[.<phase>].sql`",
            Layout::Sqlx => {
                "sqlx names files `<version>_<description>.sql`, or `.up.sql` and `.down.sql`"
            }
            Layout::GolangMigrate => {
                "golang-migrate names files `<version>_<title>.up.sql` and `.down.sql`"
            }
            Layout::Dbmate => "dbmate names files `<version>_<name>.sql`",
            Layout::Refinery => {
                "refinery names files `V<version>__<name>.sql` (or `U` for unversioned)"
            }
            Layout::Flyway => {
                "Flyway names files `V<version>__<description>.sql`, undo files `U<version>__<description>.sql`"
            }
            Layout::Diesel => {
                "diesel keeps each migration in a folder `<version>_<name>` with `up.sql` and `down.sql`"
            }
        }
    }

    fn refuse(&mut self, file: &SourceFile, problem: impl fmt::Display) {
        let message = format!(
            "`{}` is not a {} migration: {problem}",
            file.file_name, self.layout
        );
        let help = self.help();
        self.diagnostics.push(bad_name(file, message, help));
    }

    /// A problem with what a file of the other tool says (not with its name), at its place.
    fn refuse_at(&mut self, file: &SourceFile, (line, column): (u32, u32), problem: String) {
        let message = format!(
            "`{}` cannot be read as a {} migration: {problem}",
            file.file_name, self.layout
        );
        self.diagnostics.push(
            Diagnostic::error(&file.display_path, line, column, codes::LAYOUT, message)
                .with_help("migrate reads the other tool's scripts as plain SQL, and its per-script settings only where migrate has the same switch (Flyway's `executeInTransaction`, diesel's `run_in_transaction`)"),
        );
    }

    fn refuse_all(&mut self, files: &[SourceFile], why: &str) {
        for file in files {
            self.refuse(file, why);
        }
    }

    fn version(&mut self, file: &SourceFile, text: &str) -> Option<u64> {
        let parsed = text.parse::<u64>().ok().filter(|&v| {
            v <= i64::MAX as u64 && !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
        });
        if parsed.is_none() {
            self.refuse(
                file,
                format!(
                    "version `{text}` is not a whole number of at most {} (the history's bigint)",
                    i64::MAX
                ),
            );
        }
        parsed
    }

    fn push(
        &mut self,
        file: &SourceFile,
        version: u64,
        name: String,
        bytes: std::sync::Arc<[u8]>,
        down: Option<(&SourceFile, bool)>,
    ) {
        let mut combined = bytes;
        let mut down_file = None;
        if let Some((down, _)) = down {
            let mut joined = combined.to_vec();
            close_last_statement(&mut joined);
            if !joined.is_empty() && !joined.ends_with(b"\n") {
                joined.push(b'\n');
            }
            joined.extend_from_slice(b"-- migrate:down\n");
            let first_line = joined.iter().filter(|&&b| b == b'\n').count() as u32 + 1;
            let body = down
                .bytes
                .strip_prefix("\u{feff}".as_bytes())
                .unwrap_or(&down.bytes);
            joined.extend_from_slice(body);
            down_file = Some(DownFile {
                display_path: down.display_path.clone(),
                file_name: down.file_name.clone(),
                first_line,
            });
            combined = joined.into();
        }
        let no_transaction = [
            self.layout == Layout::Sqlx && has_sqlx_no_transaction(&file.bytes),
            down.is_some_and(|(_, no_transaction)| no_transaction),
        ];
        self.sources.push(MigrationSource {
            layout: self.layout,
            file: SourceFile {
                display_path: file.display_path.clone(),
                file_name: file.file_name.clone(),
                bytes: combined,
            },
            version,
            name,
            phase: Phase::Expand,
            phase_from_name: false,
            phase_from_config: false,
            down_file,
            no_transaction,
        });
    }

    /// sqlx, golang-migrate and dbmate: `<version>_<name>.sql`, or paired `.up.sql`/`.down.sql`.
    fn digits_first(&mut self, entries: &Entries) {
        let paired_allowed = matches!(self.layout, Layout::Sqlx | Layout::GolangMigrate);
        let single_allowed = matches!(self.layout, Layout::Sqlx | Layout::Dbmate);
        let mut downs: BTreeMap<String, &SourceFile> = BTreeMap::new();
        for file in &entries.files {
            if let Shape::Paired { up: false, .. } = shape(&file.file_name) {
                downs.insert(file.file_name.clone(), file);
            }
        }
        for file in &entries.files {
            match shape(&file.file_name) {
                Shape::Paired {
                    version,
                    title,
                    up: true,
                } if paired_allowed => {
                    let Some(number) = self.version(file, &version) else {
                        continue;
                    };
                    let down_name = format!("{version}_{title}.down.sql");
                    let down = downs.remove(&down_name);
                    if self.layout == Layout::Sqlx && down.is_none() {
                        self.refuse(file, format!("sqlx reverts a `.up.sql` file with its `.down.sql`, and `{down_name}` is missing"));
                        continue;
                    }
                    // sqlx reads `-- no-transaction` at the start of each part on its own.
                    let down_no_transaction = self.layout == Layout::Sqlx
                        && down.is_some_and(|d| has_sqlx_no_transaction(&d.bytes));
                    self.push(
                        file,
                        number,
                        title,
                        file.bytes.clone(),
                        down.map(|d| (d, down_no_transaction)),
                    );
                }
                Shape::Paired { up: false, .. } if paired_allowed => {}
                Shape::Single { version, rest } if single_allowed => {
                    let Some(number) = self.version(file, &version) else {
                        continue;
                    };
                    if self.layout == Layout::Dbmate && !starts_with_up_marker(&file.bytes) {
                        self.refuse(
                            file,
                            "dbmate requires the file to start its up part with `-- migrate:up`",
                        );
                        continue;
                    }
                    self.push(file, number, rest, file.bytes.clone(), None);
                }
                _ => self.refuse(file, "the name does not fit the layout"),
            }
        }
        for file in downs.into_values() {
            self.refuse(
                file,
                "a `.down.sql` file without the `.up.sql` file of its name",
            );
        }
    }

    /// Flyway and refinery: `V<version>__<name>.sql`; Flyway's `U` undoes the `V` of its
    /// version, refinery's `U` is a migration of its own.
    fn prefixed(&mut self, entries: &Entries) {
        let flyway = self.layout == Layout::Flyway;
        let mut undos: BTreeMap<String, &SourceFile> = BTreeMap::new();
        if flyway {
            for file in &entries.files {
                if let Shape::Undo { version, .. } = shape(&file.file_name) {
                    undos.insert(version, file);
                }
            }
        }
        let configs: BTreeMap<&str, &SourceFile> = entries
            .script_configs
            .iter()
            .map(|f| (f.file_name.trim_end_matches(".conf"), f))
            .collect();
        let mut used_configs = Vec::new();
        for file in &entries.files {
            let (version, description) = match shape(&file.file_name) {
                Shape::Versioned {
                    version,
                    description,
                } => (version, description),
                Shape::Undo {
                    version,
                    description,
                } if !flyway => (version, description),
                Shape::Undo { .. } => continue,
                Shape::Repeatable if flyway => {
                    self.refuse(file, "a repeatable migration runs again whenever its checksum changes, which migrate has no equivalent for: move its statements into a versioned migration");
                    continue;
                }
                _ if flyway && is_flyway_callback(&file.file_name) => {
                    self.refuse(file, "it is a Flyway callback (SQL Flyway runs around its own commands), which migrate does not support: move its statements into a versioned migration, or run them outside migrate");
                    continue;
                }
                _ => {
                    self.refuse(file, "the name does not fit the layout");
                    continue;
                }
            };
            // The undo and the configurations belong to this `V` file whatever else is wrong
            // with it: each problem is reported once, at its cause, never again as an orphan.
            let undo = undos.remove(&version);
            let mut no_transaction = [false; 2];
            let mut refused = false;
            for (part, script) in [Some(file), undo].into_iter().enumerate() {
                let Some(script) = script else {
                    continue;
                };
                if let Some(config) = configs.get(script.file_name.as_str()) {
                    used_configs.push(config.file_name.clone());
                    match flyway_script_config(&config.bytes) {
                        Ok(value) => no_transaction[part] = value,
                        Err((line, problem)) => {
                            self.refuse_at(config, (line, 1), problem);
                            refused = true;
                        }
                    }
                }
                if flyway && let Some((position, placeholder)) = flyway_placeholder(&script.bytes) {
                    self.refuse_at(
                        script,
                        position,
                        format!(
                            "`{placeholder}` is a Flyway placeholder, which Flyway replaces before running and migrate would not: write the value in"
                        ),
                    );
                    refused = true;
                }
            }
            if version.contains(['.', '_']) {
                self.refuse(file, format!("version `{version}` has parts; migrate versions are one whole number: rename it, e.g. `V{}__`", version.replace(['.', '_'], "")));
                continue;
            }
            let Some(number) = self.version(file, &version) else {
                continue;
            };
            if refused {
                continue;
            }
            self.push(
                file,
                number,
                description,
                file.bytes.clone(),
                undo.map(|u| (u, no_transaction[1])),
            );
            self.sources.last_mut().expect("just pushed").no_transaction[0] = no_transaction[0];
        }
        for file in undos.into_values() {
            self.refuse(
                file,
                "an undo migration without the `V` file of its version",
            );
        }
        for config in &entries.script_configs {
            if !used_configs.contains(&config.file_name) {
                self.refuse(
                    config,
                    "a script configuration without the script of its name",
                );
            }
        }
    }

    /// diesel: `<version>_<name>/up.sql` + `down.sql`; the version is the part before the
    /// first `_` without its dashes (`2024-01-31-120000` is 20240131120000), as diesel
    /// records it.
    fn directories(&mut self, entries: &Entries) {
        self.refuse_all(
            &entries.files,
            "diesel keeps each migration in a folder of its own",
        );
        let mut by_dir: BTreeMap<&str, BTreeMap<&str, &SourceFile>> = BTreeMap::new();
        for file in &entries.nested {
            if let Some((dir, name)) = file.file_name.split_once('/') {
                by_dir.entry(dir).or_default().insert(name, file);
            }
        }
        for (dir, files) in by_dir {
            let Some(up) = files.get("up.sql").copied() else {
                for file in files.values() {
                    self.refuse(file, format!("`{dir}` has no `up.sql`"));
                }
                continue;
            };
            let Some((version_text, name)) = dir.split_once('_') else {
                self.refuse(
                    up,
                    format!("the folder `{dir}` is not named `<version>_<name>`"),
                );
                continue;
            };
            let digits = version_text.replace('-', "");
            let Some(version) = self.version(up, &digits) else {
                continue;
            };
            let mut no_transaction = false;
            if let Some(metadata) = files.get("metadata.toml") {
                match diesel_metadata(&metadata.bytes) {
                    Ok(value) => no_transaction = value,
                    Err(problem) => {
                        self.refuse(metadata, problem);
                        continue;
                    }
                }
            }
            let Some(down) = files.get("down.sql").copied() else {
                self.refuse(up, format!("diesel needs `{dir}/down.sql` beside `up.sql`"));
                continue;
            };
            self.push(
                up,
                version,
                name.to_owned(),
                up.bytes.clone(),
                Some((down, no_transaction)),
            );
            self.sources.last_mut().expect("just pushed").no_transaction[0] = no_transaction;
        }
    }
}

/// Ends the up file's last statement with a `;` when it has none (diesel runs `up.sql` whole,
/// so a final `DO $$ ... $$` needs none there): the file is joined to its down part by us, and
/// without it the down marker would land inside that statement. The `;` goes right after the
/// statement's last token, on its line, so every line keeps its number. A text that does not
/// lex is left as it is, for the parser to report.
fn close_last_statement(text: &mut Vec<u8>) {
    let Ok(source) = std::str::from_utf8(text) else {
        return;
    };
    let Ok(tokens) = splitter::tokenize(source) else {
        return;
    };
    let last = tokens
        .iter()
        .rev()
        .find(|token| !matches!(token.kind, TokenKind::LineComment | TokenKind::BlockComment));
    if let Some(last) = last.filter(|token| token.kind != TokenKind::Semicolon) {
        let end = last.range.end;
        text.insert(end, b';');
    }
}

/// The first `${name}` placeholder of a script, which Flyway replaces in every script by
/// default: its `(line, column)` and its text.
fn flyway_placeholder(bytes: &[u8]) -> Option<((u32, u32), String)> {
    let start = bytes.windows(2).position(|w| w == b"${")?;
    let before = &bytes[..start];
    let line = before.iter().filter(|&&b| b == b'\n').count() as u32 + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count() as u32
        + 1;
    let rest = &bytes[start..];
    let end = rest
        .iter()
        .position(|&b| b == b'}' || b == b'\n')
        .filter(|&i| rest[i] == b'}')
        .map_or(2, |i| i + 1);
    Some((
        (line, column),
        String::from_utf8_lossy(&rest[..end]).into_owned(),
    ))
}

/// Flyway's callback scripts: `beforeMigrate.sql`, `afterEachMigrate__audit.sql`, ...
/// (<https://documentation.red-gate.com/flyway/flyway-concepts/callbacks>).
fn is_flyway_callback(file_name: &str) -> bool {
    let Some(stem) = file_name.strip_suffix(".sql") else {
        return false;
    };
    let event = stem.split("__").next().unwrap_or(stem);
    let after_prefix = event
        .strip_prefix("before")
        .or_else(|| event.strip_prefix("after"));
    event == "createSchema"
        || after_prefix.is_some_and(|rest| {
            rest.starts_with(|c: char| c.is_ascii_uppercase())
                && rest.bytes().all(|b| b.is_ascii_alphabetic())
        })
}

/// A Flyway `.sql.conf`: `executeInTransaction=false` is our `no-transaction`; any other
/// setting is refused rather than ignored, with its line.
fn flyway_script_config(bytes: &[u8]) -> Result<bool, (u32, String)> {
    let text = std::str::from_utf8(bytes).map_err(|_| (1, "the file is not UTF-8".to_owned()))?;
    let mut no_transaction = false;
    for (index, line) in text.lines().map(str::trim).enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
            Some(("executeInTransaction", "false")) => no_transaction = true,
            Some(("executeInTransaction", "true")) => no_transaction = false,
            _ => {
                return Err((
                    index as u32 + 1,
                    format!(
                        "`{line}` is a Flyway setting migrate cannot honour (only `executeInTransaction=true|false` is read)"
                    ),
                ));
            }
        }
    }
    Ok(no_transaction)
}

/// diesel's `metadata.toml`: `run_in_transaction = false` is our `no-transaction`; any other
/// key is refused rather than ignored.
fn diesel_metadata(bytes: &[u8]) -> Result<bool, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Metadata {
        run_in_transaction: Option<bool>,
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "the file is not UTF-8".to_owned())?;
    let metadata: Metadata = toml::from_str(text).map_err(|error| {
        format!(
            "{} (migrate reads only `run_in_transaction = true|false`)",
            error.message()
        )
    })?;
    Ok(metadata.run_in_transaction == Some(false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::testing::file;

    fn entries(names: &[(&str, &str)]) -> Entries {
        Entries {
            files: names.iter().map(|(n, b)| file(n, b)).collect(),
            ..Entries::default()
        }
    }

    #[test]
    fn detection_by_names_and_switches() {
        let detected = |files: &[(&str, &str)]| {
            detect(&entries(files), None).map_err(|d| d[0].message.clone())
        };
        assert_eq!(
            detected(&[("0001_a.sql", "SELECT 1;")]),
            Ok(Layout::Migrate)
        );
        assert_eq!(
            detected(&[("0001_a.sql", "-- no-transaction\nSELECT 1;")]),
            Ok(Layout::Sqlx)
        );
        assert_eq!(
            detected(&[("1_Add-Users.sql", "SELECT 1;")]),
            Ok(Layout::Migrate)
        );
        assert_eq!(
            detected(&[("1_Add-Users.sql", "-- migrate:up\nSELECT 1;")]),
            Ok(Layout::Dbmate)
        );
        assert_eq!(
            detected(&[("1_a.sql", "-- migrate:up transaction:false\nSELECT 1;")]),
            Ok(Layout::Dbmate)
        );
        assert_eq!(
            detected(&[("1_a.up.sql", ""), ("1_a.down.sql", "")]),
            Ok(Layout::Sqlx)
        );
        assert_eq!(
            detected(&[("V1__a.sql", ""), ("U1__a.sql", "")]),
            Ok(Layout::Flyway)
        );
        let mixed = detected(&[("V1__a.sql", ""), ("2_b.up.sql", "")]).unwrap_err();
        assert!(
            mixed.contains("V1__a.sql") && mixed.contains("2_b.up.sql"),
            "{mixed}"
        );
        let orphan = detected(&[("V1__a.sql", ""), ("U2__b.sql", "")]).unwrap_err();
        assert!(
            orphan.contains("U2__b.sql") && orphan.contains("refinery"),
            "{orphan}"
        );
        let both = detected(&[
            ("1_a.sql", "-- no-transaction\nSELECT 1;"),
            ("2_b.sql", "-- migrate:up transaction:false\nSELECT 1;"),
        ])
        .unwrap_err();
        assert!(
            both.contains("1_a.sql") && both.contains("2_b.sql"),
            "{both}"
        );
    }

    #[test]
    fn paired_files_become_one_text_with_the_down_file_located() {
        let (sources, diagnostics) = assemble(
            &entries(&[
                ("7_t.up.sql", "SELECT 1;\nSELECT 2;"),
                ("7_t.down.sql", "\nSELECT 3;\n"),
            ]),
            Layout::GolangMigrate,
            &BTreeMap::new(),
        );
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let source = &sources[0];
        assert_eq!(
            std::str::from_utf8(&source.file.bytes).unwrap(),
            "SELECT 1;\nSELECT 2;\n-- migrate:down\n\nSELECT 3;\n"
        );
        let down = source.down_file.as_ref().unwrap();
        assert_eq!(
            DownFile::locate(Some(down), "up", 5),
            ("migrations/7_t.down.sql", 2)
        );
        assert_eq!(DownFile::locate(Some(down), "up", 2), ("up", 2));
    }

    #[test]
    fn foreign_switches_are_mapped_or_refused() {
        assert_eq!(
            flyway_script_config(b"# c\nexecuteInTransaction=false\n"),
            Ok(true)
        );
        assert!(flyway_script_config(b"encoding=ISO-8859-1\n").is_err());
        assert_eq!(diesel_metadata(b"run_in_transaction = false\n"), Ok(true));
        assert!(diesel_metadata(b"other = 1\n").is_err());
        let (_, diagnostics) = assemble(
            &entries(&[
                ("V1__a.sql", "SELECT '${x}';"),
                ("V2.1__b.sql", "SELECT 1;"),
                ("R__v.sql", "SELECT 1;"),
            ]),
            Layout::Flyway,
            &BTreeMap::new(),
        );
        assert_eq!(diagnostics.len(), 3, "{diagnostics:?}");
    }

    #[test]
    fn a_foreign_files_phase_comes_from_a_directive_or_migrate_toml() {
        use crate::source::load_sources;
        let backfill = "-- migrate:phase backfill\n-- migrate:backfill table=t key=id\nUPDATE t SET a = 1 WHERE a IS NULL;\n";
        let load = |files: &[(&str, &str)], layout, phases: &[(u64, Phase)]| {
            let (sources, mut diagnostics) =
                assemble(&entries(files), layout, &phases.iter().copied().collect());
            let set = load_sources(&sources, &|_| true);
            diagnostics.extend(set.diagnostics);
            let phases: Vec<Phase> = set.files.iter().map(|f| f.migration.phase).collect();
            (
                phases,
                diagnostics
                    .iter()
                    .map(|d| d.message.clone())
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            load(&[("1_a.sql", backfill)], Layout::Sqlx, &[]),
            (vec![Phase::Backfill], vec![])
        );
        assert_eq!(
            load(
                &[("1_a.sql", "SELECT 1;")],
                Layout::Sqlx,
                &[(1, Phase::Contract)]
            )
            .0,
            [Phase::Contract]
        );
        let (_, conflict) = load(
            &[("1_a.sql", backfill)],
            Layout::Sqlx,
            &[(1, Phase::Expand)],
        );
        assert!(conflict[0].contains("[phases]"), "{conflict:?}");
        let (_, ours) = load(&[("0001_a.sql", backfill)], Layout::Migrate, &[]);
        assert!(ours[0].contains("comes from its name"), "{ours:?}");
        let (_, late) = load(
            &[("1_a.sql", "SELECT 1;\n-- migrate:phase contract\n")],
            Layout::Sqlx,
            &[],
        );
        assert!(late[0].contains("must come before"), "{late:?}");
    }

    #[test]
    fn an_up_file_without_a_final_semicolon_is_closed_and_down_lines_are_the_down_files() {
        use crate::source::load_sources;
        let nested = |files: &[(&str, &str)]| Entries {
            nested: files.iter().map(|(n, b)| file(n, b)).collect(),
            ..Entries::default()
        };
        for (up, down) in [
            ("DO $$ BEGIN PERFORM 1; END $$", "DROP TABLE IF EXISTS t"),
            (
                "CREATE TABLE IF NOT EXISTS t (id int);\nDO $$ BEGIN PERFORM 1; END $$ -- done\n\n",
                "\nSELECT 1;\nDROP TABLE IF EXISTS t\n",
            ),
        ] {
            let (sources, diagnostics) = assemble(
                &nested(&[
                    ("2024-01-01-000001_a/up.sql", up),
                    ("2024-01-01-000001_a/down.sql", down),
                ]),
                Layout::Diesel,
                &BTreeMap::new(),
            );
            assert!(diagnostics.is_empty(), "{diagnostics:?}");
            let set = load_sources(&sources, &|_| true);
            assert!(set.diagnostics.is_empty(), "{up:?}: {:?}", set.diagnostics);
            let migration = &set.files[0].migration;
            assert_eq!(
                migration.up.statements.last().unwrap().sql,
                "DO $$ BEGIN PERFORM 1; END $$"
            );
            let down_part = migration.down.as_ref().unwrap();
            assert_eq!(
                down_part.file_name.as_deref(),
                Some("2024-01-01-000001_a/down.sql")
            );
            let last = down_part.statements.last().unwrap();
            assert_eq!(
                (last.sql.as_ref(), last.line),
                ("DROP TABLE IF EXISTS t", down.lines().count() as u32)
            );
        }
    }

    /// Each Flyway problem is reported once, at its cause: a refused `V` file does not also
    /// orphan its undo or its configuration, a placeholder is named at its line and column, a
    /// callback is called one.
    #[test]
    fn flyway_problems_are_reported_once_at_their_cause() {
        let report = |files: &[(&str, &str)], configs: &[(&str, &str)]| {
            let mut entries = entries(files);
            entries.script_configs = configs.iter().map(|(n, b)| file(n, b)).collect();
            let (_, diagnostics) = assemble(&entries, Layout::Flyway, &BTreeMap::new());
            diagnostics
                .into_iter()
                .map(|d| (d.file, d.line, d.column, d.code, d.message))
                .collect::<Vec<_>>()
        };
        let found = report(
            &[("V1__a.sql", "SELECT 1;"), ("U1__a.sql", "SELECT 2;")],
            &[(
                "V1__a.sql.conf",
                "# settings\nexecuteInTransaction=false\nencoding=UTF-16\n",
            )],
        );
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(
            (found[0].0.as_str(), found[0].1, found[0].3),
            ("migrations/V1__a.sql.conf", 3, "layout")
        );
        assert!(found[0].4.contains("`encoding=UTF-16`"), "{found:#?}");

        let found = report(
            &[
                (
                    "V2__b.sql",
                    "SELECT 1;\nCREATE TABLE t (id int) TABLESPACE ${space};\n",
                ),
                ("U2__b.sql", "DROP TABLE t;\n"),
                ("V3__c.sql", "SELECT 1;"),
                ("U3__c.sql", "-- undo\n  SELECT '${flyway:user}';\n"),
            ],
            &[("V2__b.sql.conf", "executeInTransaction=true\n")],
        );
        let places: Vec<_> = found
            .iter()
            .map(|(file, line, column, code, _)| (file.as_str(), *line, *column, *code))
            .collect();
        assert_eq!(
            places,
            [
                ("migrations/V2__b.sql", 2, 36, "layout"),
                ("migrations/U3__c.sql", 2, 11, "layout")
            ],
            "{found:#?}"
        );
        assert!(
            found[0].4.contains("`${space}` is a Flyway placeholder"),
            "{found:#?}"
        );
        assert!(found[1].4.contains("`${flyway:user}`"), "{found:#?}");

        for callback in [
            "beforeMigrate.sql",
            "afterEachMigrate__audit.sql",
            "afterMigrateError.sql",
        ] {
            let found = report(&[("V1__a.sql", "SELECT 1;"), (callback, "SELECT 1;")], &[]);
            assert_eq!(found.len(), 1, "{found:#?}");
            assert!(
                found[0].4.contains("is a Flyway callback"),
                "{callback}: {found:#?}"
            );
        }
        let found = report(
            &[("V1__a.sql", "SELECT 1;"), ("notes.sql", "SELECT 1;")],
            &[],
        );
        assert!(found[0].4.contains("does not fit the layout"), "{found:#?}");
    }
}
