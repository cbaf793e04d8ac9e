//! Migration checksums.
//!
//! Definition (version [`CHECKSUM_VERSION`], pinned: a release must never change the checksum
//! of an unchanged file): SHA-256 over the file's bytes after every `\r\n` and every lone `\r`
//! is replaced by `\n`; rendered as 64 lowercase hex characters. Nothing else is normalised
//! (no trimming, no BOM removal), so every visible edit changes the checksum, while a CRLF and
//! an LF checkout of the same file agree.

use std::fmt;

use sha2::{Digest, Sha256};

/// Bumped only together with a migration path for stored checksums.
pub const CHECKSUM_VERSION: u32 = 1;

/// The SHA-256 of a migration file as defined above: recorded in the history table when the
/// migration is applied and compared on every later run, so an edited applied file is drift.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Checksum(pub [u8; 32]);

impl Checksum {
    /// Checksum of a migration file's content, see the module docs.
    pub fn of_file(content: &[u8]) -> Checksum {
        let mut hasher = Sha256::new();
        let mut start = 0;
        let mut index = 0;
        while index < content.len() {
            if content[index] == b'\r' {
                hasher.update(&content[start..index]);
                hasher.update(b"\n");
                if content.get(index + 1) == Some(&b'\n') {
                    index += 1;
                }
                start = index + 1;
            }
            index += 1;
        }
        hasher.update(&content[start..]);
        Checksum(hasher.finalize().into())
    }

    /// The 64 lowercase hex characters stored in the history table (also the `Display` form).
    pub fn to_hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            out.push(HEX[(byte >> 4) as usize] as char);
            out.push(HEX[(byte & 0xf) as usize] as char);
        }
        out
    }

    /// Parses the 64-character hex form stored in the history table.
    pub fn from_hex(text: &str) -> Option<Checksum> {
        let text = text.trim();
        if text.len() != 64 || !text.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[index * 2..index * 2 + 2], 16).ok()?;
        }
        Some(Checksum(bytes))
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checksum({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_lf_and_cr_checkouts_agree() {
        let lf = Checksum::of_file(b"CREATE TABLE a ();\nSELECT 1;\n");
        assert_eq!(
            lf,
            Checksum::of_file(b"CREATE TABLE a ();\r\nSELECT 1;\r\n")
        );
        assert_eq!(lf, Checksum::of_file(b"CREATE TABLE a ();\rSELECT 1;\r"));
        assert_ne!(lf, Checksum::of_file(b"CREATE TABLE a ();\nSELECT 2;\n"));
    }

    #[test]
    fn pinned_value_never_changes() {
        // sha256("SELECT 1;\n"): if this fails, every applied migration would be reported as drifted.
        assert_eq!(
            Checksum::of_file(b"SELECT 1;\r\n").to_hex(),
            "b4e0497804e46e0a0b0b8c31975b062152d551bac49c3c2e80932567b4085dcd"
        );
    }

    #[test]
    fn hex_round_trip() {
        let sum = Checksum::of_file(b"x");
        assert_eq!(Checksum::from_hex(&sum.to_hex()), Some(sum));
        assert_eq!(Checksum::from_hex("zz"), None);
    }
}
