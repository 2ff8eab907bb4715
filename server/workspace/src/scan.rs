//! Listing the files of a workspace, with the rules that decide what is shared.
//!
//! Ignored: whatever `.gitignore` (also outside a git repository),
//! `.git/info/exclude` and `.weftignore` files exclude, plus a default set
//! (`.git/`, `.weft/`, `target/`, `node_modules/`). Listed but not synced:
//! binary files (a NUL byte or invalid UTF-8 in their content) and files
//! over the size limit; each carries a note saying why. Symlinks are listed
//! as such and never followed, so nothing outside the root is ever read.

use std::path::{Path, PathBuf};

use weft_protocol::DocId;

/// Directories never shared, whatever the ignore files say.
pub const DEFAULT_IGNORES: &[&str] = &[".git", ".weft", "target", "node_modules"];

/// What a listed path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A text file that is synced.
    Text,
    /// A file that is listed but not synced (binary or too large).
    Unsynced { note: String },
    /// A directory (listed so empty ones survive).
    Dir,
    /// A symbolic link (never followed; its target is not shared).
    Symlink,
}

/// One listed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The path relative to the root, as a doc id.
    pub path: DocId,
    pub kind: EntryKind,
    /// Bytes (0 for directories and symlinks).
    pub size: u64,
    /// Whether the file is executable (unix mode bits).
    pub executable: bool,
}

/// Knobs of [`scan`].
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Files larger than this are listed but not synced.
    pub max_text_bytes: u64,
    /// More ignore patterns (gitignore syntax, e.g. from a session
    /// template), on top of the ignore files.
    pub ignore: Vec<String>,
}

impl Default for ScanOptions {
    fn default() -> ScanOptions {
        ScanOptions { max_text_bytes: 4 * 1024 * 1024, ignore: Vec::new() }
    }
}

/// Lists the shared paths under `root`, sorted. Unreadable entries are
/// skipped with a warning, never fatal.
pub fn scan(root: &Path, options: &ScanOptions) -> std::io::Result<Vec<Entry>> {
    scan_new(root, options, &|_| false)
}

/// [`scan`], leaving out the paths `known` says are known already: they
/// are neither listed nor read (a rescan classifies only new files, so its
/// cost does not grow with the bytes already shared).
pub fn scan_new(root: &Path, options: &ScanOptions, known: &dyn Fn(&DocId) -> bool) -> std::io::Result<Vec<Entry>> {
    let root = root.canonicalize()?;
    let mut overrides = ignore::overrides::OverrideBuilder::new(&root);
    for pattern in &options.ignore {
        // In overrides a `!` glob excludes; a bad pattern is skipped, loudly.
        if let Err(err) = overrides.add(&format!("!{}", pattern.trim_start_matches('!'))) {
            tracing::warn!(%err, pattern, "ignored an unreadable ignore pattern");
        }
    }
    let overrides = overrides.build().map_err(std::io::Error::other)?;
    let walker = ignore::WalkBuilder::new(&root)
        .overrides(overrides)
        .hidden(false)
        .parents(false)
        .git_ignore(true)
        .git_exclude(true)
        .git_global(false)
        .require_git(false)
        .follow_links(false)
        .add_custom_ignore_filename(".weftignore")
        .filter_entry(|e| {
            !(e.depth() > 0 && e.file_type().is_some_and(|t| t.is_dir()) && is_default_ignored(e.file_name()))
        })
        .build();
    let mut entries = Vec::new();
    for item in walker {
        let item = match item {
            Ok(item) => item,
            Err(err) => {
                tracing::warn!(%err, "skipped an unreadable path");
                continue;
            }
        };
        if item.depth() == 0 {
            continue;
        }
        let Some(path) = doc_id(&root, item.path()) else {
            tracing::warn!(path = %item.path().display(), "skipped a path that cannot be a document id");
            continue;
        };
        if known(&path) || item.file_name().to_str().is_some_and(crate::write::is_temp_name) {
            continue;
        }
        let Some(file_type) = item.file_type() else { continue };
        let entry = if file_type.is_symlink() {
            Entry { path, kind: EntryKind::Symlink, size: 0, executable: false }
        } else if file_type.is_dir() {
            Entry { path, kind: EntryKind::Dir, size: 0, executable: false }
        } else if file_type.is_file() {
            match classify(item.path(), options) {
                Ok((kind, size, executable)) => Entry { path, kind, size, executable },
                Err(err) => {
                    tracing::warn!(%err, path = %item.path().display(), "skipped an unreadable file");
                    continue;
                }
            }
        } else {
            continue;
        };
        entries.push(entry);
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

fn is_default_ignored(name: &std::ffi::OsStr) -> bool {
    name.to_str().is_some_and(|n| DEFAULT_IGNORES.contains(&n))
}

/// The doc id of `path` under `root` (`None` for non-UTF-8 or odd names).
pub fn doc_id(root: &Path, path: &Path) -> Option<DocId> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Vec<&str> = rel
        .components()
        .map(|c| match c {
            std::path::Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect::<Option<_>>()?;
    DocId::new(parts.join("/")).ok().filter(|d| !d.is_session_doc())
}

/// The path of `doc` under `root` (doc ids are validated: no `..`, no
/// absolute paths, so this never leaves the root lexically).
pub fn path_of(root: &Path, doc: &DocId) -> PathBuf {
    doc.as_str().split('/').fold(root.to_path_buf(), |p, part| p.join(part))
}

fn classify(path: &Path, options: &ScanOptions) -> std::io::Result<(EntryKind, u64, bool)> {
    let meta = std::fs::metadata(path)?;
    let size = meta.len();
    let executable = is_executable(&meta);
    if size > options.max_text_bytes {
        let note = format!("not synced: {size} bytes is over the {} byte limit", options.max_text_bytes);
        return Ok((EntryKind::Unsynced { note }, size, executable));
    }
    let bytes = std::fs::read(path)?;
    let kind = if bytes.contains(&0) || std::str::from_utf8(&bytes).is_err() {
        EntryKind::Unsynced { note: "not synced: binary file".to_owned() }
    } else {
        EntryKind::Text
    };
    Ok((kind, size, executable))
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &std::fs::Metadata) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(root: &Path, rel: &str, bytes: &[u8]) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, bytes).expect("write");
    }

    fn listed(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn respects_ignore_files_and_defaults() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path();
        put(root, "src/main.rs", b"fn main() {}\n");
        put(root, "src/gen.rs", b"// generated\n");
        put(root, ".gitignore", b"*.log\nbuild/\n");
        put(root, "src/.weftignore", b"gen.rs\n");
        put(root, "app.log", b"noise");
        put(root, "build/out.txt", b"x");
        put(root, "target/debug/x", b"x");
        put(root, "node_modules/m/index.js", b"x");
        put(root, ".git/HEAD", b"ref");
        put(root, ".weft/state", b"x");
        put(root, ".github/ci.yml", b"on: push\n");
        put(root, "dir with space/ünï 日本.txt", b"hi\n");
        let entries = scan(root, &ScanOptions::default()).expect("scan");
        assert_eq!(
            listed(&entries),
            vec![
                ".github",
                ".github/ci.yml",
                ".gitignore",
                "dir with space",
                "dir with space/ünï 日本.txt",
                "src",
                "src/.weftignore",
                "src/main.rs"
            ]
        );
    }

    #[test]
    fn binary_large_and_executable_files() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path();
        put(root, "a.bin", &[0, 1, 2, 3]);
        put(root, "latin1.txt", &[0xe9, b'a']);
        put(root, "big.txt", &vec![b'a'; 2000]);
        put(root, "run.sh", b"#!/bin/sh\necho hi\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let entries = scan(root, &ScanOptions { max_text_bytes: 1000, ..ScanOptions::default() }).expect("scan");
        let kind = |p: &str| entries.iter().find(|e| e.path.as_str() == p).map(|e| e.kind.clone());
        assert!(matches!(kind("a.bin"), Some(EntryKind::Unsynced { note }) if note.contains("binary")));
        assert!(matches!(kind("latin1.txt"), Some(EntryKind::Unsynced { .. })));
        assert!(matches!(kind("big.txt"), Some(EntryKind::Unsynced { note }) if note.contains("limit")));
        assert_eq!(kind("run.sh"), Some(EntryKind::Text));
        #[cfg(unix)]
        assert!(entries.iter().any(|e| e.path.as_str() == "run.sh" && e.executable));
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_listed_never_followed() {
        let dir = tempfile::tempdir().expect("tmp");
        let outside = tempfile::tempdir().expect("tmp");
        put(outside.path(), "secret.txt", b"secret");
        let root = dir.path();
        put(root, "ok.txt", b"ok");
        std::os::unix::fs::symlink(outside.path(), root.join("escape")).expect("symlink");
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), root.join("secret-link")).expect("symlink");
        let entries = scan(root, &ScanOptions::default()).expect("scan");
        assert_eq!(listed(&entries), vec!["escape", "ok.txt", "secret-link"]);
        assert!(entries.iter().filter(|e| e.path.as_str() != "ok.txt").all(|e| e.kind == EntryKind::Symlink));
    }

    #[test]
    fn doc_ids_and_paths_round_trip() {
        let root = Path::new("/w");
        let id = doc_id(root, Path::new("/w/a b/ü.rs")).expect("id");
        assert_eq!(id.as_str(), "a b/ü.rs");
        assert_eq!(path_of(root, &id), PathBuf::from("/w/a b/ü.rs"));
        assert!(doc_id(root, Path::new("/elsewhere/x")).is_none());
        assert!(doc_id(root, Path::new("/w/_session")).is_none());
    }
}
