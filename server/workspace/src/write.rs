//! Writing a shared file under a root, safely.
//!
//! A remote peer chooses the path (a validated [`DocId`]), so every write
//! is checked twice: lexically (the doc id cannot contain `..` or be
//! absolute) and on disk (no existing component of the path may be a
//! symlink, so a link planted inside the root cannot redirect a write
//! outside it). The content goes to a temp file in the same directory, is
//! synced, and is renamed over the target, so readers see the old file or
//! the new one, never half of one.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use weft_protocol::DocId;

use crate::scan::path_of;

/// What marks the temp files [`write_atomic`] renames into place:
/// `.weft-PID-N.tmp`, short whatever the target's name (a name near the
/// 255-byte limit must still be writable).
const TEMP_MARK: &str = ".weft-";

/// Numbers the temp files of this process.
static TEMP_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Whether a file name is one of the temp files of [`write_atomic`] (in
/// flight, never shared, and no news to a watcher).
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with(TEMP_MARK) && name.ends_with(".tmp")
}

/// Why a write was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path} goes through a symlink; refusing to write through it")]
    ThroughSymlink { path: PathBuf },
    #[error("{path} exists and is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("writing {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WriteError + '_ {
    move |source| WriteError::Io { path: path.to_owned(), source }
}

/// Whether any existing component of `doc`'s path under `root` is a
/// symlink (then nothing may be written or created through it).
pub fn through_symlink(root: &Path, doc: &DocId) -> bool {
    let mut at = root.to_path_buf();
    for part in doc.as_str().split('/') {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

/// How far a write must reach before [`write_file`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The content and the rename are `fsync`ed (the file, then its
    /// directory): the file survives a crash as written. Shared files.
    Synced,
    /// Atomic for readers (temp file + rename), but left to the page cache:
    /// a crash may lose the write. For files that only help, such as the
    /// mirror's `.weft/base` copies, which are rewritten at the next sync.
    Cached,
}

/// Writes `bytes` to `doc` under `root` atomically and durably, creating
/// directories as needed, with the executable bit set as asked (unix).
pub fn write_atomic(root: &Path, doc: &DocId, bytes: &[u8], executable: bool) -> Result<Written, WriteError> {
    write_file(root, doc, bytes, executable, Durability::Synced)
}

/// [`write_atomic`] with the durability chosen by the caller: readers see
/// the old file or the new one either way.
pub fn write_file(
    root: &Path,
    doc: &DocId,
    bytes: &[u8],
    executable: bool,
    durability: Durability,
) -> Result<Written, WriteError> {
    let target = path_of(root, doc);
    // Refuse if any existing component below the root is a symlink.
    let mut at = root.to_path_buf();
    for part in doc.as_str().split('/') {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => return Err(WriteError::ThroughSymlink { path: at }),
            Ok(meta) if at == target && !meta.is_file() => return Err(WriteError::NotAFile { path: at }),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let dir = target.parent().unwrap_or(root);
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let seq = TEMP_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temp = dir.join(format!("{TEMP_MARK}{}-{seq}.tmp", std::process::id()));
    let written = (|| {
        let mut file = create_temp(&temp)?;
        file.write_all(bytes)?;
        set_executable(&file, executable)?;
        if durability == Durability::Synced {
            file.sync_all()?;
        }
        // Read before the rename, from the file itself: a write by anyone
        // else after the rename must not be mistaken for ours.
        let meta = file.metadata()?;
        std::fs::rename(&temp, &target)?;
        if durability == Durability::Synced {
            // The rename itself is durable once the directory is synced.
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok::<_, std::io::Error>(meta)
    })();
    match written {
        Ok(meta) => Ok(Written { stamp: meta.modified().ok().map(|m| (meta.len(), m)), path: target }),
        Err(source) => {
            let _ = std::fs::remove_file(&temp);
            Err(WriteError::Io { path: target, source })
        }
    }
}

/// Creates the temp file `temp` with `create_new`, so nothing planted at
/// that name is ever followed or reused. The name is unique to this
/// process and write, so it exists only if a crashed process with the same
/// id left it behind: then (and only then) it is removed and created again.
fn create_temp(temp: &Path) -> std::io::Result<std::fs::File> {
    let open = || std::fs::OpenOptions::new().write(true).create_new(true).open(temp);
    match open() {
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(temp)?;
            open()
        }
        other => other,
    }
}

/// What [`write_atomic`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    pub path: PathBuf,
    /// (size, mtime) of the file as written: a later stat that differs
    /// means someone else wrote it since.
    pub stamp: Option<(u64, std::time::SystemTime)>,
}

#[cfg(unix)]
fn set_executable(file: &std::fs::File, executable: bool) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = if executable { 0o755 } else { 0o644 };
    file.set_permissions(std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_executable(_file: &std::fs::File, _executable: bool) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_atomically_with_modes() {
        let dir = tempfile::tempdir().expect("tmp");
        let doc = DocId::new("deep/dir/ünï.sh").expect("id");
        let path = write_atomic(dir.path(), &doc, b"#!/bin/sh\n", true).expect("write").path;
        assert_eq!(std::fs::read(&path).expect("read"), b"#!/bin/sh\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o755);
        }
        write_atomic(dir.path(), &doc, b"v2", false).expect("overwrite");
        assert_eq!(std::fs::read(&path).expect("read"), b"v2");
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temp files left behind");
    }

    #[cfg(unix)]
    #[test]
    fn never_writes_through_a_symlink() {
        let dir = tempfile::tempdir().expect("tmp");
        let outside = tempfile::tempdir().expect("tmp");
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).expect("symlink");
        let doc = DocId::new("link/pwned.txt").expect("id");
        let err = write_atomic(dir.path(), &doc, b"x", false).expect_err("must refuse");
        assert!(matches!(err, WriteError::ThroughSymlink { .. }), "{err}");
        assert!(!outside.path().join("pwned.txt").exists());
        std::os::unix::fs::symlink(outside.path().join("f"), dir.path().join("file-link")).expect("symlink");
        let doc = DocId::new("file-link").expect("id");
        assert!(write_atomic(dir.path(), &doc, b"x", false).is_err());
        assert!(!outside.path().join("f").exists());
    }

    #[test]
    fn a_stale_temp_file_is_replaced_and_cached_writes_land() {
        let dir = tempfile::tempdir().expect("tmp");
        // Left behind by a crashed process that had this one's id.
        let stale = dir.path().join(format!("{TEMP_MARK}{}-0.tmp", std::process::id()));
        std::fs::write(&stale, b"stale").expect("plant");
        let mut file = create_temp(&stale).expect("create over a stale temp file");
        file.write_all(b"new").expect("write");
        drop(file);
        assert_eq!(std::fs::read(&stale).expect("read"), b"new");
        let doc = DocId::new("b/a.txt").expect("id");
        let path = write_file(dir.path(), &doc, b"one", false, Durability::Cached).expect("write").path;
        assert_eq!(std::fs::read(&path).expect("read"), b"one");
    }

    #[test]
    fn refuses_to_replace_a_directory() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(dir.path().join("d")).expect("mkdir");
        let doc = DocId::new("d").expect("id");
        assert!(matches!(write_atomic(dir.path(), &doc, b"x", false), Err(WriteError::NotAFile { .. })));
    }
}
