//! The `migrations!()` macro's cache between builds: what it made of a folder, kept under the
//! build's target directory and used again while nothing it depends on has changed.
//!
//! Cargo reruns the macro on every build of the crate that calls it (a touched `main.rs` is
//! enough), and in a debug build the macro is not optimised: reading, parsing and linting
//! 1,000 files takes seconds. The result only depends on the folder's bytes and on the code
//! that judged them, so it is stored once per call site (one slot, overwritten) and keyed by
//! a SHA-256 over:
//!
//! - the macro's build identity ([`BuildCache::in_rustc`]): the size, modification time and
//!   path of the compiled macro library (rebuilt whenever its code, migrate-core's or a
//!   dependency's such as sqlparser changes), migrate-core's version, the checksum
//!   definition version and every rule's declaration;
//! - the call: the manifest directory, the path literal, the layout;
//! - the folder as read once ([`FolderSnapshot::hash_into`]): every file's name and bytes,
//!   every problem met reading it, `migrate.toml`.
//!
//! Without a build identity or a safe place the macro runs uncached. An entry whose header,
//! lengths or content check do not match is a miss, never an error: the macro then checks the
//! folder as if there were no cache. Entries are written to a temporary file and renamed, so
//! concurrent rustc processes never read a half-written one.

use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use crate::checked_set::FolderSnapshot;
use crate::checksum::CHECKSUM_VERSION;
use crate::lint::RULES;

/// First line of every entry; bump the number when the format or the meaning of the
/// stored text changes.
const MAGIC: &str = "migrate build cache 1";

/// The folder, under the profile directory (`target/debug/`), that holds the entries.
const CACHE_DIR_NAME: &str = "migrate-build-cache";

/// What the macro made of a folder with no error: the texts of its warnings (re-emitted on
/// the path literal on every build) and the rest of its expansion as Rust source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expansion {
    /// Each warning diagnostic, rendered.
    pub warnings: Vec<String>,
    /// The expansion without the warnings, as `TokenStream::to_string` printed it.
    pub code: String,
}

/// Where one call site's entry lives, and what it must have been made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    /// The call site: one entry file per slot, replaced when its inputs change.
    slot: String,
    /// SHA-256 over the build identity, the call and the folder's bytes.
    digest: String,
}

/// A cache directory and the identity of the macro build that uses it.
#[derive(Debug, Clone)]
pub struct BuildCache {
    dir: PathBuf,
    identity: Vec<u8>,
}

impl BuildCache {
    /// The cache of a proc macro running inside rustc, found from rustc's own arguments:
    /// the directory is `migrate-build-cache` beside the `deps` folder of `--out-dir` (the
    /// target directory cargo chose, whether `CARGO_TARGET_DIR`, `build.target-dir` or the
    /// workspace's `target/`), and the identity includes the compiled library of
    /// `macro_crate` that `--extern` names. `None` (run uncached) when either is missing or
    /// the directory is not safe ([`BuildCache::at`]).
    pub fn in_rustc(macro_crate: &str) -> Option<BuildCache> {
        let args: Vec<String> = std::env::args_os()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        let (dir, library) = locate(&args, macro_crate)?;
        let metadata = std::fs::metadata(&library).ok()?;
        let modified = metadata
            .modified()
            .ok()?
            .duration_since(UNIX_EPOCH)
            .ok()?
            .as_nanos();
        let identity = format!(
            "library {} {} {modified}\n",
            library.display(),
            metadata.len()
        );
        BuildCache::at(dir, identity.into_bytes())
    }

    /// A cache in `dir` (created if missing, with only the owner allowed in) for a build
    /// whose identity is `identity`; migrate-core's version, the checksum definition and the
    /// rules are added to it. `None` when `dir` cannot be created or is writable by others.
    pub fn at(dir: PathBuf, identity: Vec<u8>) -> Option<BuildCache> {
        create_private_dir(&dir)?;
        let mut full = format!(
            "migrate-core {} checksum {CHECKSUM_VERSION}\n",
            env!("CARGO_PKG_VERSION")
        )
        .into_bytes();
        full.extend(identity);
        full.extend(rules_fingerprint());
        Some(BuildCache {
            dir,
            identity: full,
        })
    }

    /// The key of checking `snapshot` for the call described by `call` (the manifest
    /// directory, the path literal, the layout: whatever else the expansion depends on).
    pub fn key(&self, call: &[&str], snapshot: &FolderSnapshot) -> CacheKey {
        let mut call_hash = Sha256::new();
        for part in call {
            call_hash.update((part.len() as u64).to_le_bytes());
            call_hash.update(part.as_bytes());
        }
        let call_hash = call_hash.finalize();
        let mut digest = Sha256::new();
        digest.update((self.identity.len() as u64).to_le_bytes());
        digest.update(&self.identity);
        digest.update(call_hash);
        snapshot.hash_into(&mut |bytes| digest.update(bytes));
        CacheKey {
            slot: hex(&call_hash[..16]),
            digest: hex(&digest.finalize()),
        }
    }

    /// The expansion stored for `key`, if one is there and intact.
    pub fn load(&self, key: &CacheKey) -> Option<Expansion> {
        let bytes = std::fs::read(self.entry_path(key)).ok()?;
        decode(&bytes, &key.digest)
    }

    /// Stores `expansion` for `key`, replacing the slot's previous entry. Best effort: a
    /// failure leaves the cache as it was (the next build checks the folder again).
    pub fn store(&self, key: &CacheKey, expansion: &Expansion) {
        let entry = encode(&key.digest, expansion);
        let unique = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let temporary = self
            .dir
            .join(format!("{}.{}.{unique}.tmp", key.slot, std::process::id()));
        let written = std::fs::write(&temporary, entry)
            .and_then(|()| std::fs::rename(&temporary, self.entry_path(key)));
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
    }

    fn entry_path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}.entry", key.slot))
    }
}

/// The cache directory and the macro library, from rustc's arguments.
fn locate(args: &[String], macro_crate: &str) -> Option<(PathBuf, PathBuf)> {
    let value_of = |flag: &str| -> Vec<&str> {
        let prefix = format!("{flag}=");
        let mut values = Vec::new();
        for (index, arg) in args.iter().enumerate() {
            if arg == flag {
                values.extend(args.get(index + 1).map(String::as_str));
            } else if let Some(value) = arg.strip_prefix(&prefix) {
                values.push(value);
            }
        }
        values
    };
    let out_dir = Path::new(*value_of("--out-dir").first()?);
    if out_dir.file_name()? != "deps" {
        return None;
    }
    let dir = out_dir.parent()?.join(CACHE_DIR_NAME);
    // `--extern name=path`: the name may be a rename, the file keeps the crate's name.
    let library = value_of("--extern").into_iter().find_map(|value| {
        let path = Path::new(value.split_once('=')?.1);
        let file_name = path.file_name()?.to_str()?;
        let stem = file_name.strip_prefix("lib").unwrap_or(file_name);
        let is_library = [".so", ".dylib", ".dll"]
            .iter()
            .any(|extension| file_name.ends_with(extension));
        (is_library && stem.starts_with(&format!("{macro_crate}-"))).then(|| path.to_path_buf())
    })?;
    Some((dir, library))
}

/// Every rule's declaration: a rule added, removed or re-documented changes the key even
/// where the library's identity would not show it.
fn rules_fingerprint() -> Vec<u8> {
    let mut text = String::new();
    for rule in RULES {
        text.push_str(&format!(
            "{} {:?} {} {} {}\n",
            rule.id, rule.default_level, rule.summary, rule.explanation, rule.rewrite
        ));
        for example in rule.bad.iter().chain(rule.good) {
            text.push_str(example.file_name);
            text.push_str(example.sql);
        }
    }
    text.into_bytes()
}

/// Creates `dir` for the owner alone when it is missing; `None` when it cannot be made or is
/// not a plain directory that only its owner may write to (a directory others can write is a
/// way to inject SQL into someone's binary).
fn create_private_dir(dir: &Path) -> Option<()> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    match builder.create(dir) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(_) => return None,
    }
    let metadata = std::fs::symlink_metadata(dir).ok()?;
    if !metadata.is_dir() {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if metadata.mode() & 0o022 != 0 {
            return None;
        }
    }
    Some(())
}

/// `MAGIC`, the key, a check of the rest, the warning count and the code's length, one per
/// line; then each warning as its length, a newline and its text; then the code.
fn encode(digest: &str, expansion: &Expansion) -> Vec<u8> {
    let mut body = Vec::new();
    for warning in &expansion.warnings {
        body.extend(format!("{}\n", warning.len()).into_bytes());
        body.extend(warning.as_bytes());
    }
    body.extend(expansion.code.as_bytes());
    let mut entry = format!(
        "{MAGIC}\n{digest}\n{:016x}\n{}\n{}\n",
        content_check(&body),
        expansion.warnings.len(),
        expansion.code.len()
    )
    .into_bytes();
    entry.extend(body);
    entry
}

/// The entry's expansion when it is intact and was made for `digest`; `None` otherwise.
fn decode(entry: &[u8], digest: &str) -> Option<Expansion> {
    let mut rest = entry;
    if take_line(&mut rest)? != MAGIC || take_line(&mut rest)? != digest {
        return None;
    }
    let check = u64::from_str_radix(take_line(&mut rest)?, 16).ok()?;
    let warning_count: usize = take_line(&mut rest)?.parse().ok()?;
    let code_len: usize = take_line(&mut rest)?.parse().ok()?;
    if content_check(rest) != check {
        return None;
    }
    let mut warnings = Vec::new();
    for _ in 0..warning_count {
        let len: usize = take_line(&mut rest)?.parse().ok()?;
        let text = rest.get(..len)?;
        warnings.push(String::from_utf8(text.to_vec()).ok()?);
        rest = &rest[len..];
    }
    if rest.len() != code_len {
        return None;
    }
    let code = String::from_utf8(rest.to_vec()).ok()?;
    Some(Expansion { warnings, code })
}

/// The text before the next newline, which `rest` then skips; `None` without a newline or
/// when the line is not UTF-8.
fn take_line<'a>(rest: &mut &'a [u8]) -> Option<&'a str> {
    let end = rest.iter().position(|&b| b == b'\n')?;
    let text = std::str::from_utf8(&rest[..end]).ok()?;
    *rest = &rest[end + 1..];
    Some(text)
}

/// Catches a truncated or damaged entry. The standard library's SipHash, not SHA-256: it is
/// compiled optimised even in a debug build, and the entry's content is megabytes.
fn content_check(bytes: &[u8]) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write(bytes);
    hasher.finish()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checked_set::read_folder;

    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).expect("write file");
        }
        dir
    }

    fn new_cache(identity: &str) -> (tempfile::TempDir, BuildCache) {
        let target = tempfile::tempdir().expect("temp dir");
        let cache = BuildCache::at(target.path().join(CACHE_DIR_NAME), identity.into())
            .expect("a private cache dir");
        (target, cache)
    }

    fn expansion() -> Expansion {
        Expansion {
            warnings: vec!["w1\nhelp: two lines".into(), String::new(), "é".into()],
            code: "{ Migrations { dir: Borrowed(\"x\\n\") } }".into(),
        }
    }

    const CALL: [&str; 2] = ["/crate", "migrations"];

    #[test]
    fn an_entry_reads_back_as_written_and_only_under_its_digest() {
        let entry = encode("abc", &expansion());
        assert_eq!(decode(&entry, "abc"), Some(expansion()));
        assert_eq!(decode(&entry, "abd"), None);
        let empty = Expansion {
            warnings: Vec::new(),
            code: String::new(),
        };
        assert_eq!(decode(&encode("k", &empty), "k"), Some(empty));
    }

    #[test]
    fn a_truncated_or_damaged_entry_is_a_miss() {
        let entry = encode("abc", &expansion());
        for len in 0..entry.len() {
            assert_eq!(decode(&entry[..len], "abc"), None, "truncated to {len}");
        }
        for index in 0..entry.len() {
            let mut damaged = entry.clone();
            damaged[index] ^= 0x01;
            assert_eq!(decode(&damaged, "abc"), None, "byte {index} flipped");
        }
        let mut longer = entry.clone();
        longer.push(b' ');
        assert_eq!(decode(&longer, "abc"), None);
        assert_eq!(decode(b"\xff\xfe garbage", "abc"), None);
    }

    #[test]
    fn the_key_changes_with_every_input_and_the_slot_only_with_the_call() {
        let files = folder(&[("0001_a.sql", "SELECT 1;"), ("0002_b.sql", "SELECT 2;")]);
        let (_target, cache) = new_cache("build 1");
        let key = |cache: &BuildCache, call: &[&str], dir: &Path| {
            cache.key(call, &read_folder(dir, "migrations").expect("readable"))
        };
        let base = key(&cache, &CALL, files.path());
        assert_eq!(key(&cache, &CALL, files.path()), base, "deterministic");

        std::fs::write(files.path().join("0002_b.sql"), "SELECT 3;").expect("write");
        let edited = key(&cache, &CALL, files.path());
        assert_eq!(edited.slot, base.slot);
        assert_ne!(edited.digest, base.digest, "a file's bytes");

        std::fs::write(files.path().join("migrate.toml"), "").expect("write");
        let configured = key(&cache, &CALL, files.path());
        assert_ne!(configured.digest, edited.digest, "migrate.toml");

        std::fs::write(files.path().join("0003_c.sql"), "SELECT 4;").expect("write");
        let added = key(&cache, &CALL, files.path());
        assert_ne!(added.digest, configured.digest, "a file added");

        let (_other_target, other_build) = new_cache("build 2");
        assert_ne!(
            key(&other_build, &CALL, files.path()).digest,
            added.digest,
            "the build identity"
        );
        let elsewhere = key(&cache, &["/crate", "db/migrations"], files.path());
        assert_ne!(elsewhere.slot, added.slot, "the call");
        assert_ne!(elsewhere.digest, added.digest);
    }

    #[test]
    fn a_slot_holds_the_latest_entry_and_a_damaged_file_is_a_miss() {
        let files = folder(&[("0001_a.sql", "SELECT 1;")]);
        let (_target, cache) = new_cache("build");
        let snapshot = read_folder(files.path(), "migrations").expect("readable");
        let first = cache.key(&CALL, &snapshot);
        assert_eq!(cache.load(&first), None, "cold");
        cache.store(&first, &expansion());
        assert_eq!(cache.load(&first), Some(expansion()), "warm");

        std::fs::write(files.path().join("0001_a.sql"), "SELECT 2;").expect("write");
        let second = cache.key(
            &CALL,
            &read_folder(files.path(), "migrations").expect("readable"),
        );
        assert_eq!(cache.load(&second), None, "a changed file misses");
        let other = Expansion {
            warnings: Vec::new(),
            code: "other".into(),
        };
        cache.store(&second, &other);
        assert_eq!(cache.load(&second), Some(other));
        assert_eq!(cache.load(&first), None, "the slot was replaced");

        let entry = cache.entry_path(&second);
        let bytes = std::fs::read(&entry).expect("entry written");
        std::fs::write(&entry, &bytes[..bytes.len() - 1]).expect("truncate");
        assert_eq!(cache.load(&second), None, "truncated on disk");
        let leftovers: Vec<_> = std::fs::read_dir(&cache.dir)
            .expect("cache dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left: {leftovers:?}");
    }

    #[test]
    fn rustc_arguments_give_the_directory_and_the_macro_library() {
        let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let found = locate(
            &args(&[
                "rustc",
                "--crate-name",
                "app",
                "--out-dir",
                "/t/debug/deps",
                "--extern",
                "migrate_core=/t/debug/deps/libmigrate_core-1.rlib",
                "--extern",
                "mm=/t/debug/deps/libmigrate_macros-2.so",
            ]),
            "migrate_macros",
        );
        assert_eq!(
            found,
            Some((
                PathBuf::from("/t/debug/migrate-build-cache"),
                PathBuf::from("/t/debug/deps/libmigrate_macros-2.so")
            ))
        );
        let equals_form = locate(
            &args(&[
                "--out-dir=/t/debug/deps",
                "--extern=migrate_macros=/t/debug/deps/migrate_macros-2.dll",
            ]),
            "migrate_macros",
        );
        assert!(equals_form.is_some());
        // No library of the macro (only an rlib of a similar name), no deps folder, no
        // --out-dir: uncached.
        for missing in [
            &[
                "--out-dir",
                "/t/debug/deps",
                "--extern",
                "m=/t/libmigrate_macros_x-2.so",
            ][..],
            &[
                "--out-dir",
                "/t/debug/deps",
                "--extern",
                "m=/t/libmigrate_macros-2.rlib",
            ],
            &[
                "--out-dir",
                "/t/out",
                "--extern",
                "m=/t/libmigrate_macros-2.so",
            ],
            &["--extern", "m=/t/libmigrate_macros-2.so"],
        ] {
            assert_eq!(
                locate(&args(missing), "migrate_macros"),
                None,
                "{missing:?}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_directory_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let target = tempfile::tempdir().expect("temp dir");
        let shared = target.path().join("shared");
        std::fs::create_dir(&shared).expect("create");
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(BuildCache::at(shared.clone(), Vec::new()).is_none());
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        assert!(BuildCache::at(shared, Vec::new()).is_some());
        let fresh = target.path().join("fresh");
        assert!(BuildCache::at(fresh.clone(), Vec::new()).is_some());
        let mode = std::fs::metadata(fresh).expect("made").permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }
}
