//! The headless workspace mirror, end to end: `weft share DIR` in one
//! process, `weft join LINK DIR` in another, a real hub between them.
//! Trees end identical (contents and executable bits), ignored paths stay
//! home, binary files and symlinks are not synced, and plain file writes
//! on either side reach the other.

use std::path::Path;
use std::time::Duration;

use weft_tests::{HubProcess, WeftProcess, wait_until};

const T: Duration = Duration::from_secs(60);

fn put(root: &Path, rel: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let path = root.join(rel);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, bytes)?;
    Ok(())
}

fn read(root: &Path, rel: &str) -> Option<String> {
    std::fs::read_to_string(root.join(rel)).ok()
}

/// Every regular file under `root` (relative paths), skipping `.weft/`.
fn files(root: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            if meta.is_dir() {
                if e.file_name() != ".weft" {
                    walk(base, &path, out);
                }
            } else if meta.is_file()
                && let Ok(rel) = path.strip_prefix(base)
            {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// The files of `root` the test's share syncs: all but the ignored ones
/// and the binary file.
fn shared_files(root: &Path) -> Vec<String> {
    files(root)
        .into_iter()
        .filter(|f| {
            !f.ends_with(".log")
                && !f.starts_with("build/")
                && !f.starts_with("target/")
                && !f.starts_with("node_modules/")
                && f != "logo.png"
        })
        .collect()
}

#[test]
fn share_and_join_a_directory_both_ways() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (host, guest) = (dir.path().join("host"), dir.path().join("guest"));
    // A few hundred files, nested, with awkward names and every kind.
    for i in 0..300 {
        let rel = format!("src/m{}/file {i} ü.rs", i % 17);
        put(&host, &rel, format!("// file {i} 🦀\nfn f{i}() {{}}\r\n").as_bytes())?;
    }
    put(&host, "README 日本.md", b"# hi\n")?;
    put(&host, "empty.txt", b"")?;
    put(&host, "run.sh", b"#!/bin/sh\necho hi\n")?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(host.join("run.sh"), std::fs::Permissions::from_mode(0o755))?;
    }
    put(&host, ".gitignore", b"*.log\nbuild/\n")?;
    put(&host, "debug.log", b"noise\n")?;
    put(&host, "build/out.txt", b"generated\n")?;
    put(&host, "target/debug/app", b"binary-ish\n")?;
    put(&host, "node_modules/dep/index.js", b"x\n")?;
    put(&host, "logo.png", &[0x89, b'P', b'N', b'G', 0, 0, 1])?;
    let outside = dir.path().join("outside");
    put(&outside, "secret.txt", b"secret\n")?;
    #[cfg(unix)]
    std::os::unix::fs::symlink(&outside, host.join("escape"))?;

    let hub = HubProcess::start(&dir.path().join("hub"))?;
    let mut share = WeftProcess::spawn(
        &["share", &host.to_string_lossy(), "--hub", &hub.ws_base()],
        &[("WEFT_HUB_TOKEN", &hub.admin)],
        &dir.path().join("share.stderr"),
    )?;
    let editor = share.next_line(T)?;
    let viewer = share.next_line(T)?;
    let link = editor.strip_prefix("editor: ").unwrap_or_default().to_owned();
    assert!(link.starts_with("weft://"), "{editor}");
    assert!(viewer.starts_with("viewer: weft://"), "{viewer}");

    let mut join =
        WeftProcess::spawn(&["join", &link, &guest.to_string_lossy()], &[], &dir.path().join("join.stderr"))?;
    let joined = join.next_line(T)?;
    assert!(joined.starts_with("joined ") && joined.ends_with(" as editor"), "{joined}");

    // The tree is in place when `joined` is printed.
    let mut expected = shared_files(&host);
    expected.sort();
    assert_eq!(files(&guest), expected);
    for f in &expected {
        assert_eq!(read(&guest, f), read(&host, f), "{f}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(guest.join("run.sh"))?.permissions().mode() & 0o111,
            0o111,
            "run.sh stays executable"
        );
    }
    assert!(!guest.join("escape").exists() && !guest.join("secret.txt").exists(), "nothing outside the root is shared");

    // Plain file writes, as any tool does, travel both ways.
    put(&host, "src/m0/file 0 ü.rs", "// file 0 🦀 edited on the host\nfn f0() {}\r\n".as_bytes())?;
    wait_until("the host's write on the guest", T, || {
        read(&guest, "src/m0/file 0 ü.rs").is_some_and(|t| t.contains("edited on the host"))
    })?;
    put(&guest, "README 日本.md", "# hi\nfrom the guest 日本\n".as_bytes())?;
    wait_until("the guest's write on the host", T, || {
        read(&host, "README 日本.md").is_some_and(|t| t.contains("from the guest"))
    })?;
    // Both sides edit the same file at once: both edits survive.
    put(&host, "empty.txt", b"host line\n")?;
    put(&guest, "empty.txt", b"guest line\n")?;
    wait_until("both edits merged on both sides", T, || {
        let (h, g) = (read(&host, "empty.txt").unwrap_or_default(), read(&guest, "empty.txt").unwrap_or_default());
        h == g && h.contains("host line") && h.contains("guest line")
    })?;

    // Create, delete and rename propagate.
    put(&guest, "new dir/créé.txt", "made on the guest\n".as_bytes())?;
    wait_until("the guest's new file on the host", T, || {
        read(&host, "new dir/créé.txt").as_deref() == Some("made on the guest\n")
    })?;
    std::fs::remove_file(host.join("src/m1/file 1 ü.rs"))?;
    wait_until("the host's delete on the guest", T, || !guest.join("src/m1/file 1 ü.rs").exists())?;
    std::fs::rename(guest.join("src/m2/file 2 ü.rs"), guest.join("src/m2/renamed.rs"))?;
    wait_until("the guest's rename on the host", T, || {
        !host.join("src/m2/file 2 ü.rs").exists()
            && read(&host, "src/m2/renamed.rs").is_some_and(|t| t.contains("fn f2()"))
    })?;

    // A rename on one side while the other edits the same file: the edit
    // the renaming side had not seen wins over the delete half of the
    // rename, so the file stays (with the edit) next to the renamed copy.
    let original = "src/m3/file 3 ü.rs";
    let before = read(&host, original).unwrap_or_default();
    std::fs::rename(host.join(original), host.join("src/m3/moved.rs"))?;
    put(&guest, original, format!("{before}// guest edit\n").as_bytes())?;
    wait_until("the rename and the edit settled on both sides", T, || {
        read(&host, "src/m3/moved.rs").as_deref() == Some(before.as_str())
            && read(&guest, "src/m3/moved.rs").as_deref() == Some(before.as_str())
            && read(&host, original).is_some_and(|t| t.ends_with("// guest edit\n"))
            && read(&guest, original) == read(&host, original)
    })?;

    // Both trees end identical.
    let synced = |root: &Path| shared_files(root).into_iter().map(|f| (read(root, &f), f)).collect::<Vec<_>>();
    wait_until("identical trees", T, || synced(&host) == synced(&guest))?;

    share.kill();
    join.kill();
    Ok(())
}

#[test]
fn a_restarted_joiner_merges_what_changed_on_both_sides_while_it_was_down() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (host, guest) = (dir.path().join("host"), dir.path().join("guest"));
    put(&host, "notes.md", "line one\nline two\nline three\n".as_bytes())?;
    put(&host, "other.txt", b"untouched\n")?;
    let hub = HubProcess::start(&dir.path().join("hub"))?;
    let mut share = WeftProcess::spawn(
        &["share", &host.to_string_lossy(), "--hub", &hub.ws_base()],
        &[("WEFT_HUB_TOKEN", &hub.admin)],
        &dir.path().join("share.stderr"),
    )?;
    let link = share.next_line(T)?.strip_prefix("editor: ").unwrap_or_default().to_owned();
    let guest_dir = guest.to_string_lossy().into_owned();
    let mut join = WeftProcess::spawn(&["join", &link, &guest_dir], &[], &dir.path().join("join1.stderr"))?;
    join.next_line(T)?;
    assert_eq!(read(&guest, "notes.md").as_deref(), Some("line one\nline two\nline three\n"));

    // The joiner dies; both sides edit the same file meanwhile.
    join.kill();
    put(&guest, "notes.md", "line one (guest)\nline two\nline three\n".as_bytes())?;
    put(&host, "notes.md", "line one\nline two\nline three (host 🦀)\n".as_bytes())?;

    let mut join = WeftProcess::spawn(&["join", &link, &guest_dir], &[], &dir.path().join("join2.stderr"))?;
    join.next_line(T)?;
    let merged = "line one (guest)\nline two\nline three (host 🦀)\n";
    wait_until("both sides merged", T, || {
        read(&guest, "notes.md").as_deref() == Some(merged) && read(&host, "notes.md").as_deref() == Some(merged)
    })?;
    assert_eq!(read(&guest, "other.txt").as_deref(), Some("untouched\n"));
    share.kill();
    join.kill();
    Ok(())
}
