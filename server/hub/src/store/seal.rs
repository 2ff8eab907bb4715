//! Encryption at rest: sealing document records before they reach the
//! database, and the key file that holds the key.
//!
//! Every stored document update and snapshot is sealed with
//! XChaCha20-Poly1305 (an AEAD) under one 32-byte key. A sealed record is
//! `[FORMAT][24-byte random nonce][ciphertext][16-byte tag]`; the nonce is
//! random per record (192 bits, so random nonces never collide in
//! practice). The associated data binds a record to its session id, doc id
//! and kind (update or snapshot), so a record moved to another row, another
//! document or another kind fails to open. The store also keeps one sealed
//! known constant (the key check) so that a wrong or missing key is found at
//! start-up, before any document is served.
//!
//! This module knows nothing of SQL or of rooms: [`super::sqlite`] decides
//! which columns are sealed. It does not rotate keys (one key per
//! database), and it does not protect against rolling a document back to an
//! older copy of its own rows or deleting rows: it guarantees
//! confidentiality and the authenticity of each record, not the
//! completeness of a log.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use chacha20poly1305::aead::AeadInOut as _;
use chacha20poly1305::{Key, KeyInit as _, Tag, XChaCha20Poly1305, XNonce};

/// Length of a key, in bytes.
pub const KEY_LEN: usize = 32;
/// Length of the random nonce stored with each record, in bytes.
pub const NONCE_LEN: usize = 24;
/// Length of the authentication tag, in bytes.
pub const TAG_LEN: usize = 16;
/// First byte of every sealed record: the record format (XChaCha20-Poly1305
/// under the database's one key). A key id would go with a new format.
const FORMAT_V1: u8 = 1;
/// Bytes a sealed record adds to its plaintext.
pub const OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

/// Domain separation for record associated data.
const RECORD_DOMAIN: &[u8] = b"weft-hub record v1\0";
/// Associated data of the key check.
const KEY_CHECK_AD: &[u8] = b"weft-hub key check v1\0";
/// The known constant sealed as the key check.
const KEY_CHECK_PLAIN: &[u8] = b"weft encryption at rest: this key opens this database";

/// A failure to seal or open a record.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The record is too short, has an unknown format byte, or fails
    /// authentication: changed, damaged, sealed with another key, or sealed
    /// for another document or kind.
    #[error("a sealed record does not open: it was changed or damaged, or sealed with another key or for another row")]
    Unopenable,
    /// No randomness for a nonce.
    #[error("no randomness available for a nonce: {0}")]
    Randomness(String),
    /// The AEAD refused to seal (a record longer than the cipher allows).
    #[error("a record could not be sealed (too long?)")]
    Seal,
}

/// A failure to read or create the key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read the key file {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot create the key file {path} (its directory must exist and be writable)")]
    Create { path: PathBuf, source: std::io::Error },
    #[error(
        "the key file {path} holds {len} bytes, which is not a key: it must hold exactly 32 random bytes, \
         raw, or as 64 hex digits, or as base64 (a new key file is created when the path does not exist)"
    )]
    NotAKey { path: PathBuf, len: usize },
    #[error("no randomness available to create a key: {0}")]
    Randomness(String),
}

/// The key that seals a database. Its bytes are never printed.
#[derive(Clone)]
pub struct SealKey([u8; KEY_LEN]);

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey(..)")
    }
}

impl Drop for SealKey {
    fn drop(&mut self) {
        // Best effort: the cipher itself zeroizes its copy on drop.
        self.0 = [0; KEY_LEN];
    }
}

impl SealKey {
    /// A key made of raw bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> SealKey {
        SealKey(bytes)
    }

    /// A new random key.
    pub fn generate() -> Result<SealKey, KeyFileError> {
        let mut bytes = [0u8; KEY_LEN];
        getrandom::fill(&mut bytes).map_err(|e| KeyFileError::Randomness(e.to_string()))?;
        Ok(SealKey(bytes))
    }

    /// Parses a key file's contents: exactly 32 raw bytes, or (surrounding
    /// whitespace ignored) 64 hex digits, or base64 (standard alphabet,
    /// padded or not) of 32 bytes. `None` if it is none of these.
    pub fn parse(contents: &[u8]) -> Option<SealKey> {
        if let Ok(raw) = <[u8; KEY_LEN]>::try_from(contents) {
            return Some(SealKey(raw));
        }
        let text = std::str::from_utf8(contents).ok()?.trim();
        if text.len() == 2 * KEY_LEN
            && let Some(bytes) = decode_hex(text)
        {
            return Some(SealKey(bytes));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
            .ok()?;
        <[u8; KEY_LEN]>::try_from(decoded.as_slice()).ok().map(SealKey)
    }

    /// The key as 64 lowercase hex digits (the format of created key files).
    fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn decode_hex(text: &str) -> Option<[u8; KEY_LEN]> {
    let digits = text.as_bytes();
    let mut out = [0u8; KEY_LEN];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        *out.get_mut(i)? = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Where a key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    /// Read from an existing file.
    Read,
    /// The file did not exist: a new random key was written to it.
    Created,
}

/// Reads the key file at `path`, or, if there is no file there, creates it
/// (mode 0600, 64 hex digits and a newline, synced) with a new random key.
/// A file that holds no key of the right size is an error, never replaced.
pub fn load_or_create_key(path: &Path) -> Result<(SealKey, KeyOrigin), KeyFileError> {
    match std::fs::read(path) {
        Ok(contents) => {
            let key = SealKey::parse(&contents)
                .ok_or_else(|| KeyFileError::NotAKey { path: path.to_owned(), len: contents.len() })?;
            warn_if_readable_by_others(path);
            Ok((key, KeyOrigin::Read))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let key = SealKey::generate()?;
            write_new_key_file(path, &key).map_err(|source| KeyFileError::Create { path: path.to_owned(), source })?;
            Ok((key, KeyOrigin::Created))
        }
        Err(source) => Err(KeyFileError::Read { path: path.to_owned(), source }),
    }
}

fn write_new_key_file(path: &Path, key: &SealKey) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    // create_new: never overwrite a key file that appeared meanwhile.
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(format!("{}\n", key.to_hex()).as_bytes())?;
    file.sync_all()?;
    // Make the new directory entry durable too: a database sealed with a
    // key whose file vanished in a crash could never be opened again.
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "the encryption key file is accessible to other users; chmod 600 it");
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// What a sealed record holds; part of its associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// One row of a document's update log.
    Update,
    /// A document's snapshot.
    Snapshot,
}

impl RecordKind {
    fn tag(self) -> u8 {
        match self {
            RecordKind::Update => b'u',
            RecordKind::Snapshot => b's',
        }
    }
}

/// Seals and opens records under one key.
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer(..)")
    }
}

/// Associated data of a record: domain, kind, then the session and doc ids
/// each with its length, so that no two (session, doc) pairs share one.
fn record_ad(session: &str, doc: &str, kind: RecordKind) -> Vec<u8> {
    let mut ad = Vec::with_capacity(RECORD_DOMAIN.len() + 1 + 16 + session.len() + doc.len());
    ad.extend_from_slice(RECORD_DOMAIN);
    ad.push(kind.tag());
    for part in [session, doc] {
        ad.extend_from_slice(&(part.len() as u64).to_be_bytes());
        ad.extend_from_slice(part.as_bytes());
    }
    ad
}

impl Sealer {
    /// A sealer for `key`.
    pub fn new(key: &SealKey) -> Sealer {
        Sealer { cipher: XChaCha20Poly1305::new(&Key::from(key.0)) }
    }

    /// Seals a document record of `session`/`doc`.
    pub fn seal_record(&self, session: &str, doc: &str, kind: RecordKind, plain: &[u8]) -> Result<Vec<u8>, SealError> {
        self.seal(&record_ad(session, doc, kind), plain)
    }

    /// Opens a record sealed by [`Sealer::seal_record`] for the same
    /// session, doc and kind.
    pub fn open_record(&self, session: &str, doc: &str, kind: RecordKind, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        self.open(&record_ad(session, doc, kind), sealed)
    }

    /// The key check to store with a new database.
    pub fn key_check(&self) -> Result<Vec<u8>, SealError> {
        self.seal(KEY_CHECK_AD, KEY_CHECK_PLAIN)
    }

    /// Whether `stored` is a key check sealed with this key.
    pub fn verify_key_check(&self, stored: &[u8]) -> bool {
        self.open(KEY_CHECK_AD, stored).is_ok_and(|plain| plain == KEY_CHECK_PLAIN)
    }

    fn seal(&self, ad: &[u8], plain: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| SealError::Randomness(e.to_string()))?;
        let mut out = Vec::with_capacity(plain.len() + OVERHEAD);
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = self
            .cipher
            .encrypt_inout_detached(&XNonce::from(nonce), ad, (&mut out[1 + NONCE_LEN..]).into())
            .map_err(|_| SealError::Seal)?;
        out.extend_from_slice(tag.as_slice());
        Ok(out)
    }

    fn open(&self, ad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < OVERHEAD || sealed[0] != FORMAT_V1 {
            return Err(SealError::Unopenable);
        }
        let (nonce, rest) = sealed[1..].split_at(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| SealError::Unopenable)?;
        let tag = Tag::try_from(tag).map_err(|_| SealError::Unopenable)?;
        let mut plain = ciphertext.to_vec();
        self.cipher
            .decrypt_inout_detached(&nonce, ad, plain.as_mut_slice().into(), &tag)
            .map_err(|_| SealError::Unopenable)?;
        Ok(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(byte: u8) -> Sealer {
        Sealer::new(&SealKey::from_bytes([byte; KEY_LEN]))
    }

    #[test]
    fn a_record_opens_only_with_its_key_session_doc_and_kind() -> Result<(), SealError> {
        let s = sealer(7);
        let plain = b"fn main() { println!(\"secret\"); }";
        let sealed = s.seal_record("sess", "src/main.rs", RecordKind::Update, plain)?;
        assert_eq!(sealed.len(), plain.len() + OVERHEAD);
        assert!(!sealed.windows(6).any(|w| w == b"secret"), "plaintext visible in the sealed record");
        assert_eq!(s.open_record("sess", "src/main.rs", RecordKind::Update, &sealed)?, plain);

        // Wrong associated data: another session, doc or kind.
        assert!(s.open_record("sess2", "src/main.rs", RecordKind::Update, &sealed).is_err());
        assert!(s.open_record("sess", "src/lib.rs", RecordKind::Update, &sealed).is_err());
        assert!(s.open_record("sess", "src/main.rs", RecordKind::Snapshot, &sealed).is_err());
        // Ids that concatenate to the same bytes are still different.
        let joined = s.seal_record("ab", "c", RecordKind::Update, plain)?;
        assert!(s.open_record("a", "bc", RecordKind::Update, &joined).is_err());
        // Wrong key.
        assert!(sealer(8).open_record("sess", "src/main.rs", RecordKind::Update, &sealed).is_err());
        Ok(())
    }

    #[test]
    fn tampered_records_fail_to_open() -> Result<(), SealError> {
        let s = sealer(1);
        let sealed = s.seal_record("s", "d", RecordKind::Snapshot, b"hello world")?;
        // Flip each byte in turn: format, nonce, ciphertext, tag.
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(s.open_record("s", "d", RecordKind::Snapshot, &bad).is_err(), "flipped byte {i} still opens");
        }
        // Truncated, extended, empty.
        assert!(s.open_record("s", "d", RecordKind::Snapshot, &sealed[..sealed.len() - 1]).is_err());
        let mut longer = sealed.clone();
        longer.push(0);
        assert!(s.open_record("s", "d", RecordKind::Snapshot, &longer).is_err());
        assert!(s.open_record("s", "d", RecordKind::Snapshot, &[]).is_err());
        // An empty plaintext still seals and opens.
        let empty = s.seal_record("s", "d", RecordKind::Update, b"")?;
        assert_eq!(s.open_record("s", "d", RecordKind::Update, &empty)?, b"");
        Ok(())
    }

    #[test]
    fn nonces_are_fresh_per_record() -> Result<(), SealError> {
        let s = sealer(2);
        let a = s.seal_record("s", "d", RecordKind::Update, b"same")?;
        let b = s.seal_record("s", "d", RecordKind::Update, b"same")?;
        assert_ne!(a, b);
        assert_ne!(a[1..1 + NONCE_LEN], b[1..1 + NONCE_LEN]);
        Ok(())
    }

    #[test]
    fn the_key_check_tells_keys_apart() -> Result<(), SealError> {
        let check = sealer(3).key_check()?;
        assert!(sealer(3).verify_key_check(&check));
        assert!(!sealer(4).verify_key_check(&check));
        assert!(!sealer(3).verify_key_check(b"garbage"));
        Ok(())
    }

    #[test]
    fn key_files_are_raw_hex_or_base64_of_32_bytes() {
        let raw = [0xabu8; KEY_LEN];
        let hex = "ab".repeat(KEY_LEN);
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        for contents in [raw.to_vec(), hex.clone().into_bytes(), format!("  {hex}\n").into_bytes(), b64.into_bytes()] {
            let key = SealKey::parse(&contents).map(|k| k.0);
            assert_eq!(key, Some(raw), "{:?}", String::from_utf8_lossy(&contents));
        }
        for bad in [&b""[..], &[1u8; 31], &[1u8; 33], "zz".repeat(KEY_LEN).as_bytes(), "ab".repeat(20).as_bytes()] {
            assert!(SealKey::parse(bad).is_none(), "{bad:?} parsed as a key");
        }
    }

    #[test]
    fn a_missing_key_file_is_created_private_and_read_back() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("hub.key");
        let (created, origin) = load_or_create_key(&path)?;
        assert_eq!(origin, KeyOrigin::Created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
        }
        let (read, origin) = load_or_create_key(&path)?;
        assert_eq!(origin, KeyOrigin::Read);
        assert_eq!(read.0, created.0);

        std::fs::write(&path, b"too short")?;
        let err = load_or_create_key(&path).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("holds 9 bytes") && err.contains("32 random bytes"), "{err}");
        let err = load_or_create_key(&dir.path().join("no/such/dir/hub.key")).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("cannot create the key file")));
        Ok(())
    }
}
