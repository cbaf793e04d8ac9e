//! The packed form of an embedded set: what `migrations!()` writes instead of one struct
//! literal per statement.
//!
//! A set of 1,000 files holds some 11,000 statements; as struct literals rustc spent seconds
//! type-checking them. Packed, the expansion is each file's text once (`include_str!`), one
//! string of the texts that are no file's slice (names, a backfill's pieces, ...), and one
//! byte string that says where every text is and holds the rest: numbers as LEB128 varints,
//! each text as (which text, start, length). The runtime decodes it once, on first use
//! ([`super::Migrations::try_as_slice`]); the decoded statements borrow the embedded texts.
//!
//! Checksums are baked in at build time like every other field: the runtime compares them
//! with the history table as it does for any set.
//!
//! The decoder never trusts the bytes: every read is bounds-checked and a text must fall on
//! character boundaries, so a damaged blob is a [`PackError`], never a panic. A macro and a
//! core of different versions do not meet at run time: the expansion calls
//! [`expect_format`] in a `const`, a compile error when the formats differ.

use std::borrow::Cow;
use std::collections::HashMap;

use super::{
    BackfillPace, BackfillSpec, BatchSource, Migration, Phase, Removal, RemovedObject, Section,
    Statement, StatementAnalysis, TransactionMode,
};
use crate::checksum::Checksum;

/// The version of the layout below; bumped whenever it changes.
pub const FORMAT: u8 = 1;

/// The blob's first bytes: "migrate pack", then [`FORMAT`].
const MAGIC: &[u8; 3] = b"MGP";

/// `RemovedObject::kind` is a `&'static str`: these are the kinds the analysis writes.
const REMOVED_KINDS: [&str; 6] = ["table", "view", "sequence", "function", "type", "column"];

/// Called by the expansion in a `const`: a compile error when the macro that wrote the set
/// writes another format than this crate reads (migrate-macros and migrate-core of different
/// versions).
pub const fn expect_format(written: u8) {
    if written != FORMAT {
        panic!(
            "migrations!() was expanded by a migrate-macros that writes another packed format than this migrate-core reads: depend on the same version of both crates"
        );
    }
}

/// Why a packed set could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PackError {
    /// The blob says it was written in another format than this crate reads.
    #[error(
        "the embedded migration set is in packed format {found}, this migrate-core reads format {FORMAT}: build with the same version of migrate-macros and migrate-core"
    )]
    Format {
        /// The format the blob names (0 when it does not start like a packed set at all).
        found: u8,
    },
    /// The blob does not decode: it was not written by `migrations!()` or was damaged.
    #[error("the embedded migration set is damaged: {what} at byte {offset} of its packed data")]
    Damaged {
        /// Where decoding stopped.
        offset: usize,
        /// What was wrong there.
        what: &'static str,
    },
    /// A value the format cannot hold (the macro reports it as a compile error).
    #[error("{file}: cannot embed {what}")]
    Unpackable {
        /// The migration's file.
        file: String,
        /// What could not be written.
        what: String,
    },
}

/// A set as the macro embeds it: `blob` and the string `pool`, to be emitted after the
/// files' texts (the pool is the text after the last file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedSet {
    /// The structure: see the module docs.
    pub blob: Vec<u8>,
    /// Every text that is no slice of its migration's files, each once.
    pub pool: String,
}

/// The texts a migration's statements are slices of: indexes into the `files` given to
/// [`pack`] (the up file, and the down file of a layout that keeps it apart).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileTexts {
    /// The migration's own file.
    pub up: Option<usize>,
    /// The down part's own file, when the layout has one.
    pub down: Option<usize>,
}

/// Packs `migrations` (in set order) whose statements are found in `files` where
/// [`FileTexts`] says; any text not found there goes to the pool. Decoding the result with
/// the same `files` and the pool after them gives `migrations` back.
pub fn pack<'m>(
    files: &[&str],
    migrations: impl IntoIterator<Item = (&'m Migration, FileTexts)>,
) -> Result<PackedSet, PackError> {
    let migrations: Vec<_> = migrations.into_iter().collect();
    let mut writer = Writer {
        out: Vec::new(),
        files,
        pool: String::new(),
        pooled: HashMap::new(),
    };
    writer.out.extend_from_slice(MAGIC);
    writer.out.push(FORMAT);
    writer.count(migrations.len());
    for (migration, texts) in migrations {
        writer.migration(migration, texts)?;
    }
    Ok(PackedSet {
        blob: writer.out,
        pool: writer.pool,
    })
}

/// Decodes a blob [`pack`] wrote; `texts` are its files' texts then its pool.
pub fn unpack(
    blob: &'static [u8],
    texts: &'static [&'static str],
) -> Result<Vec<Migration>, PackError> {
    let mut reader = Reader { blob, at: 0, texts };
    if blob.get(..MAGIC.len()) != Some(MAGIC.as_slice()) {
        return Err(PackError::Format { found: 0 });
    }
    reader.at = MAGIC.len();
    let format = reader.byte()?;
    if format != FORMAT {
        return Err(PackError::Format { found: format });
    }
    let count = reader.count()?;
    let mut migrations = Vec::with_capacity(count);
    for _ in 0..count {
        migrations.push(reader.migration()?);
    }
    if reader.at != blob.len() {
        return reader.damaged("bytes after the last migration");
    }
    if migrations
        .windows(2)
        .any(|pair| pair[0].version >= pair[1].version)
    {
        return Err(PackError::Damaged {
            offset: reader.at,
            what: "migrations out of version order",
        });
    }
    Ok(migrations)
}

struct Writer<'f> {
    out: Vec<u8>,
    files: &'f [&'f str],
    pool: String,
    /// Pool texts already written, by text: a table name locked by many migrations is
    /// stored once.
    pooled: HashMap<String, usize>,
}

impl Writer<'_> {
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.out.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.out.push(value as u8);
    }

    fn count(&mut self, count: usize) {
        self.varint(count as u64);
    }

    fn flag(&mut self, value: bool) {
        self.out.push(u8::from(value));
    }

    fn text_ref(&mut self, text: usize, start: usize, len: usize) {
        self.count(text);
        self.count(start);
        self.count(len);
    }

    /// A text kept in the pool.
    fn pooled(&mut self, text: &str) {
        let start = match self.pooled.get(text) {
            Some(&start) => start,
            None => {
                let start = self.pool.len();
                self.pool.push_str(text);
                self.pooled.insert(text.to_owned(), start);
                start
            }
        };
        self.text_ref(self.files.len(), start, text.len());
    }

    fn optional_text(&mut self, text: Option<&str>) {
        self.flag(text.is_some());
        if let Some(text) = text {
            self.pooled(text);
        }
    }

    fn migration(&mut self, migration: &Migration, texts: FileTexts) -> Result<(), PackError> {
        self.varint(migration.version);
        self.pooled(&migration.name);
        self.out.push(match migration.phase {
            Phase::Expand => 0,
            Phase::Backfill => 1,
            Phase::Contract => 2,
        });
        self.pooled(&migration.file_name);
        self.out.extend_from_slice(&migration.checksum.0);
        self.section(&migration.up, texts.up);
        self.flag(migration.down.is_some());
        if let Some(down) = &migration.down {
            self.section(down, texts.down.or(texts.up));
        }
        self.flag(migration.requires.is_some());
        if let Some(requires) = migration.requires {
            self.varint(requires);
        }
        self.flag(migration.backfill.is_some());
        if let Some(spec) = &migration.backfill {
            self.optional_text(spec.schema.as_deref());
            self.pooled(&spec.table);
            self.pooled(&spec.key);
            match spec.pace {
                BackfillPace::Adaptive { target_ms } => {
                    self.out.push(0);
                    self.flag(target_ms.is_some());
                    if let Some(target) = target_ms {
                        self.varint(target.into());
                    }
                }
                BackfillPace::Fixed {
                    batch_size,
                    delay_ms,
                } => {
                    self.out.push(1);
                    self.varint(batch_size.into());
                    self.varint(delay_ms.into());
                }
            }
        }
        self.optional_text(migration.compare.as_deref());
        self.flag(migration.compare_line.is_some());
        if let Some(line) = migration.compare_line {
            self.varint(line.into());
        }
        self.flag(migration.requires_compare);
        self.count(migration.replaces.len());
        for &version in migration.replaces.iter() {
            self.varint(version);
        }
        self.flag(migration.analysis.is_some());
        if let Some(analysis) = &migration.analysis {
            self.analysis(analysis, &migration.file_name)?;
        }
        Ok(())
    }

    /// Statements are found in `file` in order, from where the previous one ended.
    fn section(&mut self, section: &Section, file: Option<usize>) {
        self.out.push(match section.mode {
            TransactionMode::Transactional => 0,
            TransactionMode::Autocommit => 1,
        });
        self.optional_text(section.file_name.as_deref());
        self.count(section.statements.len());
        let text = file.and_then(|index| Some((index, *self.files.get(index)?)));
        let mut cursor = 0;
        for statement in section.statements.iter() {
            let found = text.and_then(|(index, text)| {
                let start = cursor + text.get(cursor..)?.find(statement.sql.as_ref())?;
                Some((index, start))
            });
            match found {
                Some((index, start)) => {
                    cursor = start + statement.sql.len();
                    self.text_ref(index, start, statement.sql.len());
                }
                None => self.pooled(&statement.sql),
            }
            self.varint(statement.line.into());
            self.varint(statement.column.into());
            self.flag(statement.non_transactional);
        }
    }

    fn analysis(&mut self, analysis: &StatementAnalysis, file: &str) -> Result<(), PackError> {
        self.count(analysis.batches.len());
        for batch in analysis.batches.iter() {
            match batch {
                BatchSource::Update {
                    assignments,
                    pending,
                } => {
                    self.out.push(0);
                    self.pooled(assignments);
                    self.pooled(pending);
                }
                BatchSource::Delete { pending } => {
                    self.out.push(1);
                    self.pooled(pending);
                }
                BatchSource::Refused(problem) => {
                    self.out.push(2);
                    self.pooled(problem);
                }
            }
        }
        self.count(analysis.removes.len());
        for removed in analysis.removes.iter() {
            let kind = REMOVED_KINDS
                .iter()
                .position(|kind| *kind == removed.kind)
                .ok_or_else(|| PackError::Unpackable {
                    file: file.to_owned(),
                    what: format!("a removed object of kind `{}`", removed.kind),
                })?;
            self.count(kind);
            self.pooled(&removed.name);
            self.optional_text(removed.column.as_deref());
            match &removed.removal {
                Removal::Dropped => self.out.push(0),
                Removal::Renamed { to } => {
                    self.out.push(1);
                    self.pooled(to);
                }
                Removal::Retyped => self.out.push(2),
                Removal::Dependent { on } => {
                    self.out.push(3);
                    self.pooled(on);
                }
            }
            self.varint(removed.line.into());
        }
        self.count(analysis.locked_tables.len());
        for table in analysis.locked_tables.iter() {
            self.pooled(table);
        }
        Ok(())
    }
}

struct Reader {
    blob: &'static [u8],
    at: usize,
    texts: &'static [&'static str],
}

impl Reader {
    fn damaged<T>(&self, what: &'static str) -> Result<T, PackError> {
        Err(PackError::Damaged {
            offset: self.at,
            what,
        })
    }

    fn byte(&mut self) -> Result<u8, PackError> {
        let Some(&byte) = self.blob.get(self.at) else {
            return self.damaged("unexpected end");
        };
        self.at += 1;
        Ok(byte)
    }

    fn varint(&mut self) -> Result<u64, PackError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return self.damaged("a number too large");
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        self.damaged("a number too long")
    }

    fn u32(&mut self) -> Result<u32, PackError> {
        let value = self.varint()?;
        u32::try_from(value).or_else(|_| self.damaged("a number too large"))
    }

    fn usize(&mut self) -> Result<usize, PackError> {
        let value = self.varint()?;
        usize::try_from(value).or_else(|_| self.damaged("a number too large"))
    }

    /// A count of items that each take at least one byte: never more than the bytes left, so
    /// a damaged count cannot make a huge allocation.
    fn count(&mut self) -> Result<usize, PackError> {
        let count = self.usize()?;
        if count > self.blob.len() - self.at {
            return self.damaged("a count larger than the data");
        }
        Ok(count)
    }

    fn flag(&mut self) -> Result<bool, PackError> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => self.damaged("a flag that is neither 0 nor 1"),
        }
    }

    fn text(&mut self) -> Result<Cow<'static, str>, PackError> {
        let (index, start, len) = (self.usize()?, self.usize()?, self.usize()?);
        let text = self
            .texts
            .get(index)
            .and_then(|text| text.get(start..start.checked_add(len)?));
        match text {
            Some(text) => Ok(Cow::Borrowed(text)),
            None => self.damaged("a text outside the embedded texts"),
        }
    }

    fn optional_text(&mut self) -> Result<Option<Cow<'static, str>>, PackError> {
        Ok(if self.flag()? {
            Some(self.text()?)
        } else {
            None
        })
    }

    fn migration(&mut self) -> Result<Migration, PackError> {
        let version = self.varint()?;
        let name = self.text()?;
        let phase = match self.byte()? {
            0 => Phase::Expand,
            1 => Phase::Backfill,
            2 => Phase::Contract,
            _ => return self.damaged("an unknown phase"),
        };
        let file_name = self.text()?;
        let checksum = self
            .blob
            .get(self.at..)
            .and_then(|rest| rest.first_chunk::<32>());
        let Some(&checksum) = checksum else {
            return self.damaged("unexpected end");
        };
        self.at += checksum.len();
        let checksum = Checksum(checksum);
        let up = self.section()?;
        let down = if self.flag()? {
            Some(self.section()?)
        } else {
            None
        };
        let requires = if self.flag()? {
            Some(self.varint()?)
        } else {
            None
        };
        let backfill = if self.flag()? {
            let schema = self.optional_text()?;
            let table = self.text()?;
            let key = self.text()?;
            let pace = match self.byte()? {
                0 => BackfillPace::Adaptive {
                    target_ms: if self.flag()? {
                        Some(self.u32()?)
                    } else {
                        None
                    },
                },
                1 => BackfillPace::Fixed {
                    batch_size: self.u32()?,
                    delay_ms: self.u32()?,
                },
                _ => return self.damaged("an unknown backfill pace"),
            };
            Some(BackfillSpec {
                schema,
                table,
                key,
                pace,
            })
        } else {
            None
        };
        let compare = self.optional_text()?;
        let compare_line = if self.flag()? {
            Some(self.u32()?)
        } else {
            None
        };
        let requires_compare = self.flag()?;
        let replaces = (0..self.count()?)
            .map(|_| self.varint())
            .collect::<Result<Vec<_>, _>>()?;
        let analysis = if self.flag()? {
            Some(self.analysis()?)
        } else {
            None
        };
        Ok(Migration {
            version,
            name,
            phase,
            file_name,
            checksum,
            up,
            down,
            requires,
            backfill,
            compare,
            compare_line,
            requires_compare,
            replaces: Cow::Owned(replaces),
            analysis,
        })
    }

    fn section(&mut self) -> Result<Section, PackError> {
        let mode = match self.byte()? {
            0 => TransactionMode::Transactional,
            1 => TransactionMode::Autocommit,
            _ => return self.damaged("an unknown transaction mode"),
        };
        let file_name = self.optional_text()?;
        let count = self.count()?;
        let mut statements = Vec::with_capacity(count);
        for _ in 0..count {
            statements.push(Statement {
                sql: self.text()?,
                line: self.u32()?,
                column: self.u32()?,
                non_transactional: self.flag()?,
            });
        }
        Ok(Section {
            statements: Cow::Owned(statements),
            mode,
            file_name,
        })
    }

    fn analysis(&mut self) -> Result<StatementAnalysis, PackError> {
        let mut batches = Vec::new();
        for _ in 0..self.count()? {
            batches.push(match self.byte()? {
                0 => BatchSource::Update {
                    assignments: self.text()?,
                    pending: self.text()?,
                },
                1 => BatchSource::Delete {
                    pending: self.text()?,
                },
                2 => BatchSource::Refused(self.text()?),
                _ => return self.damaged("an unknown batch source"),
            });
        }
        let mut removes = Vec::new();
        for _ in 0..self.count()? {
            let Some(&kind) = REMOVED_KINDS.get(self.usize()?) else {
                return self.damaged("an unknown kind of removed object");
            };
            let name = self.text()?;
            let column = self.optional_text()?;
            let removal = match self.byte()? {
                0 => Removal::Dropped,
                1 => Removal::Renamed { to: self.text()? },
                2 => Removal::Retyped,
                3 => Removal::Dependent { on: self.text()? },
                _ => return self.damaged("an unknown removal"),
            };
            removes.push(RemovedObject {
                kind,
                name,
                column,
                removal,
                line: self.u32()?,
            });
        }
        let locked_tables = (0..self.count()?)
            .map(|_| self.text())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(StatementAnalysis {
            batches: Cow::Owned(batches),
            removes: Cow::Owned(removes),
            locked_tables: Cow::Owned(locked_tables),
        })
    }
}
