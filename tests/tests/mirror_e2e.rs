//! The headless workspace mirror, end to end: `weft share DIR` in one
//! process, `weft join LINK DIR` in another, a real hub between them.
//! Trees end identical (contents and executable bits), ignored paths stay
//! home, binary files and symlinks are not synced, and plain file writes
//! on either side reach the other.

use std::collections::HashSet;
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

/// A hub that answers subscriptions only in batches, so the test sees how
/// many a joiner leaves unanswered at once: never more than the mirror's
/// window (256), however many files the tree has. An error about a file
/// answers its subscription too (the window does not shrink). Before the
/// window, a joiner sent a step 1 for every file at once, and a real hub
/// disconnected it as overloaded when its answers filled the peer's queue.
#[tokio::test(flavor = "multi_thread")]
async fn a_joiner_never_leaves_more_than_a_window_of_subscriptions_unanswered() -> anyhow::Result<()> {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message as Ws;
    use weft_protocol::control::SessionInfo;
    use weft_protocol::{DocId, ErrorCode, PeerId, Role, ServerControl, SessionId, frame};
    use yrs::updates::encoder::Encode as _;
    use yrs::{Any, Doc, Map as _, ReadTxn as _, StateVector, Text as _, Transact as _};

    const FILES: usize = 1_024;
    const WINDOW: usize = 256;
    let sync = |msg: yrs::sync::SyncMessage| yrs::sync::Message::Sync(msg).encode_v1();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let dir = tempfile::tempdir()?;
    let guest = dir.path().join("guest");
    let link = format!("weft://{}/s/fake#token", listener.local_addr()?);
    let _join = WeftProcess::spawn(&["join", &link, &guest.to_string_lossy()], &[], &dir.path().join("join.stderr"))?;
    let (tcp, _) = tokio::time::timeout(T, listener.accept()).await??;
    let mut ws = tokio_tungstenite::accept_async(tcp).await?;
    let auth = tokio::time::timeout(T, ws.next()).await?;
    anyhow::ensure!(matches!(auth, Some(Ok(Ws::Text(_)))), "expected the auth frame, got {auth:?}");
    let welcome = ServerControl::Welcome {
        peer: PeerId(1),
        role: Role::Editor,
        session: SessionInfo { id: SessionId("fake".into()), name: "fake".into() },
        protocol: weft_protocol::PROTOCOL_VERSION,
        max_frame_bytes: 16 * 1024 * 1024,
    };
    ws.send(Ws::Text(serde_json::to_string(&welcome)?.into())).await?;

    let session = Doc::new();
    {
        let files = session.get_or_insert_map("files");
        let mut txn = session.transact_mut();
        for i in 0..FILES {
            let entry = std::collections::HashMap::from([
                ("kind".to_owned(), Any::from("text")),
                ("size".to_owned(), Any::from(8.0)),
                ("exec".to_owned(), Any::from(false)),
            ]);
            files.insert(&mut txn, format!("f{i}.txt"), Any::from(entry));
        }
    }
    // Our step 1 for `_session` after a batch of frames is a marker: the
    // mirror handles frames in order, so when its step 2 for `_session`
    // arrives, it has handled the batch and sent every step 1 it would.
    let marker = |session: &Doc| {
        let step1 = sync(yrs::sync::SyncMessage::SyncStep1(session.transact().state_vector()));
        Ws::Binary(frame::join(&DocId::session(), &step1).into())
    };
    let (mut requested, mut unanswered, mut refused) = (HashSet::new(), Vec::<DocId>::new(), None);
    loop {
        // Every answer frees a place in the window, an error included.
        let expected = WINDOW.min(FILES - (requested.len() - unanswered.len()));
        let what = format!("{} of {FILES} subscriptions, {} unanswered", requested.len(), unanswered.len());
        let next = tokio::time::timeout(T, ws.next()).await.map_err(|_| anyhow::anyhow!("stalled at {what}"))?;
        let Some(Ok(Ws::Binary(bytes))) = next else { continue };
        let (doc, message) = frame::split(&bytes)?;
        match (doc.is_session_doc(), frame::message_kind(message)) {
            (true, Some(frame::MessageKind::SyncStep1)) => {
                let update = session.transact().encode_state_as_update_v1(&StateVector::default());
                let step2 = sync(yrs::sync::SyncMessage::SyncStep2(update));
                ws.feed(Ws::Binary(frame::join(&doc, &step2).into())).await?;
                ws.send(marker(&session)).await?;
                continue;
            }
            (true, Some(frame::MessageKind::SyncStep2)) => {}
            (false, Some(frame::MessageKind::SyncStep1)) => {
                anyhow::ensure!(requested.insert(doc.clone()), "{doc} was subscribed to twice");
                unanswered.push(doc);
                continue;
            }
            _ => continue,
        }
        // The marker's answer: the window is as full as it can be.
        anyhow::ensure!(
            unanswered.len() == expected,
            "the joiner left {} subscriptions unanswered at once, expected {expected} ({what})",
            unanswered.len()
        );
        if unanswered.is_empty() {
            break;
        }
        // Answer the whole window, one file with an error, then mark.
        for doc in unanswered.drain(..) {
            if refused.is_none() {
                let error = ServerControl::Error {
                    code: ErrorCode::Internal,
                    message: "the stored document is damaged".into(),
                    doc: Some(doc.clone()),
                };
                ws.feed(Ws::Text(serde_json::to_string(&error)?.into())).await?;
                refused = Some(doc);
                continue;
            }
            let file = Doc::new();
            file.get_or_insert_text("content").insert(&mut file.transact_mut(), 0, &format!("{doc}\n"));
            let update = file.transact().encode_state_as_update_v1(&StateVector::default());
            ws.feed(Ws::Binary(frame::join(&doc, &sync(yrs::sync::SyncMessage::SyncStep2(update))).into())).await?;
            let step1 = sync(yrs::sync::SyncMessage::SyncStep1(file.transact().state_vector()));
            ws.feed(Ws::Binary(frame::join(&doc, &step1).into())).await?;
        }
        ws.send(marker(&session)).await?;
    }
    anyhow::ensure!(requested.len() == FILES, "only {} of {FILES} files were subscribed to", requested.len());
    let refused = refused.map(|d| d.to_string()).unwrap_or_default();
    wait_until("every answered file on disk", T, || {
        (0..FILES).all(|i| {
            let name = format!("f{i}.txt");
            name == refused || read(&guest, &name).as_deref() == Some(format!("{name}\n").as_str())
        })
    })?;
    Ok(())
}

/// The same against a real hub whose per-peer queue (`--peer-queue`)
/// holds the answers of the mirror's window (256 files, two frames each,
/// and the acks of the replies) but not those of a tree of 1,200 files:
/// share and join end with no peer disconnected as overloaded. (How close
/// an unpaced burst comes to the limit depends on timing; the test above
/// checks the window itself.)
#[test]
fn a_tree_larger_than_the_hubs_peer_queue_is_shared_and_joined_without_overload() -> anyhow::Result<()> {
    const FILES: usize = 1_200;
    let dir = tempfile::tempdir()?;
    let (host, guest) = (dir.path().join("host"), dir.path().join("guest"));
    for i in 0..FILES {
        put(&host, &format!("d{}/f{i}.txt", i % 23), format!("file {i:>5}\n").repeat(100).as_bytes())?;
    }
    let hub = HubProcess::start_with(&dir.path().join("hub"), &["--peer-queue", "1024"])?;
    let mut share = WeftProcess::spawn(
        &["share", &host.to_string_lossy(), "--hub", &hub.ws_base()],
        &[("WEFT_HUB_TOKEN", &hub.admin)],
        &dir.path().join("share.stderr"),
    )?;
    let link = share.next_line(T)?.strip_prefix("editor: ").unwrap_or_default().to_owned();
    let mut join =
        WeftProcess::spawn(&["join", &link, &guest.to_string_lossy()], &[], &dir.path().join("join.stderr"))?;
    let joined = join.next_line(T)?;
    assert!(joined.starts_with("joined "), "{joined}");
    assert_eq!(files(&guest), files(&host));
    for i in [0, FILES / 2, FILES - 1] {
        let rel = format!("d{}/f{i}.txt", i % 23);
        assert_eq!(read(&guest, &rel), read(&host, &rel), "{rel}");
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (_, metrics) = runtime.block_on(weft_tests::http(hub.addr, "GET", "/metrics", None, &[], None))?;
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    let overloaded = metrics.lines().find_map(|l| l.strip_prefix("weft_peers_overloaded_total "));
    assert_eq!(overloaded.map(str::trim), Some("0"), "peers were disconnected as overloaded:\n{metrics}");
    for (who, process) in [("share", &share), ("join", &join)] {
        let stderr = process.stderr();
        assert!(!stderr.contains("offline"), "{who} lost its connection:\n{stderr}");
    }
    share.kill();
    join.kill();
    Ok(())
}
