//! Encryption at rest through the real `weft hub` binary: with
//! `--encrypt-at-rest`, no file in the data directory (database, WAL,
//! shared-memory index, logs) ever holds a document's text, through update
//! logs and compacted snapshots alike; the same key brings every document
//! back; a wrong key, no key, or a key for a plain database is refused at
//! start-up with a message that says what to do. A control run without
//! encryption shows the marker search does find plain text.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use weft_tests::{HubProcess, WeftPeer, YPeer, weft_bin, y_insert_message};

const T: Duration = Duration::from_secs(30);
/// Text that appears in documents and nowhere else.
const MARKER: &str = "ZEBRA-PLAINTEXT-MARKER-41c9";
/// Documents written through `/ws/`.
const DOCS: [&str; 2] = ["src/secret.rs", "notes/plan.md"];
/// A document written through plain y-websocket.
const Y_DOC: &str = "y-doc.txt";

/// Every file under `dir` (recursively) whose bytes contain the marker,
/// as UTF-8 or UTF-16LE.
fn files_with_marker(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let utf16: Vec<u8> = MARKER.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            files += 1;
            let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
            if has(MARKER.as_bytes()) || has(&utf16) {
                found.push(path);
            }
        }
    }
    anyhow::ensure!(files > 0, "no files under {}", dir.display());
    Ok(found)
}

/// Writes marked text into every doc: many small updates (so the hub
/// compacts them into snapshots) and one y-websocket client. Returns the
/// texts as the writer sees them.
async fn write_marked_docs(hub: &HubProcess, session: &str, owner: &str) -> anyhow::Result<Vec<String>> {
    let mut a = WeftPeer::join(&hub.ws_base(), session, owner, 71).await?;
    for doc in DOCS.iter().chain([&Y_DOC]) {
        a.subscribe(doc).await?;
    }
    for doc in DOCS {
        for n in 0..23 {
            let len = a.char_len(doc);
            a.insert(doc, len, &format!("{MARKER} line {n} 🦀\n")).await?;
        }
    }
    a.wait_acked().await?;

    let query = format!("token={owner}");
    let mut y = match YPeer::connect(&hub.ws_base(), session, Y_DOC, &query).await? {
        Ok(y) => y,
        Err(closed) => anyhow::bail!("y-websocket peer refused: {closed:?}"),
    };
    y.send(y_insert_message(72, &format!("from yjs: {MARKER}"))).await?;
    a.pump_until("the y-websocket edit", T, |p| p.text(Y_DOC).contains(MARKER)).await?;
    // Relays go out before the disk sync (decision 0010), so `a` holding
    // the edit does not mean it is on disk. One log writer commits in
    // order: once a later edit of `a` is acknowledged, the y-websocket
    // edit is durable too (the test kills the hub next).
    let len = a.char_len(DOCS[0]);
    a.insert(DOCS[0], len, "after the y-websocket edit\n").await?;
    a.wait_acked().await?;
    let texts = DOCS.iter().chain([&Y_DOC]).map(|d| a.text(d)).collect();
    a.close().await;
    Ok(texts)
}

/// Checks that a new peer gets exactly `texts` back.
async fn read_back(hub: &HubProcess, session: &str, owner: &str, texts: &[String]) -> anyhow::Result<()> {
    let mut b = WeftPeer::join(&hub.ws_base(), session, owner, 81).await?;
    for (doc, want) in DOCS.iter().chain([&Y_DOC]).zip(texts) {
        b.subscribe(doc).await?;
        b.pump_until(&format!("{doc} restored intact"), T, |p| &p.text(doc) == want).await?;
    }
    anyhow::ensure!(b.errors.is_empty(), "errors: {:?}", b.errors);
    b.close().await;
    Ok(())
}

/// Starts `weft hub` expecting it to refuse to start; returns its stderr.
fn refused_start(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> anyhow::Result<String> {
    let stderr_path = data.with_extension("refused.log");
    let stderr = std::fs::File::create(&stderr_path)?;
    let mut child = Command::new(weft_bin())
        .args(["hub", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(extra)
        .env_remove("WEFT_ENCRYPT_AT_REST")
        .envs(env.iter().copied())
        .env("WEFT_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .context("starting weft hub")?;
    let deadline = Instant::now() + T;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("weft hub {extra:?} did not refuse to start within {T:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = std::fs::read_to_string(&stderr_path)?;
    std::fs::remove_file(&stderr_path)?;
    anyhow::ensure!(!status.success(), "weft hub {extra:?} exited with success; stderr:\n{log}");
    Ok(log)
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str().context("a temp path that is not UTF-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_hub_stores_no_plaintext_and_needs_its_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys)?;
    let key = keys.join("hub.key");
    let key_arg = path_str(&key)?;
    let enc = ["--encrypt-at-rest", key_arg, "--compact-after", "5"];

    // First start: the key file is created, private, and the log says so.
    let mut hub = HubProcess::start_with(&data, &enc)?;
    let created = std::fs::read_to_string(&key)?;
    assert_eq!(created.trim().len(), 64, "a new key file holds 64 hex digits: {created:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&key)?.permissions().mode() & 0o777, 0o600);
    }
    assert!(hub.log().contains("created a new encryption-at-rest key file"), "{}", hub.log());

    let (session, owner) = hub.create_session("encrypted").await?;
    let texts = write_marked_docs(&hub, &session, &owner).await?;
    assert!(texts.iter().all(|t| t.contains(MARKER)));

    // While the hub runs (WAL and shared-memory files present), after a
    // SIGKILL (WAL not checkpointed) and after a clean stop: no marker.
    let found = files_with_marker(&data)?;
    assert!(found.is_empty(), "plain text on disk while running: {found:?}");
    assert!(data.join("hub.db-wal").exists(), "expected a WAL file while the hub runs");
    hub.kill9();
    let found = files_with_marker(&data)?;
    assert!(found.is_empty(), "plain text on disk after SIGKILL: {found:?}");

    // The same key brings every document back, and later writes stay sealed.
    let mut hub = HubProcess::start_with(&data, &enc)?;
    read_back(&hub, &session, &owner, &texts).await?;
    let status = hub.terminate()?;
    assert!(status.success(), "hub exited with {status}: {}", hub.log());
    let found = files_with_marker(&data)?;
    assert!(found.is_empty(), "plain text on disk after a clean stop: {found:?}");
    assert!(!hub.log().contains(MARKER), "document text in the hub's log");

    // A different key is refused, and so is the right key file's absence.
    let other = keys.join("other.key");
    std::fs::write(&other, format!("{}\n", "5a".repeat(32)))?;
    let log = refused_start(&data, &["--encrypt-at-rest", path_str(&other)?], &[])?;
    assert!(log.contains("does not open the database") && log.contains("another key"), "{log}");
    // ... also when the key comes from the environment.
    let log = refused_start(&data, &[], &[("WEFT_ENCRYPT_AT_REST", path_str(&other)?)])?;
    assert!(log.contains("does not open the database"), "{log}");
    let log = refused_start(&data, &[], &[])?;
    assert!(log.contains("is encrypted at rest") && log.contains("--encrypt-at-rest KEYFILE"), "{log}");
    // A mistyped key path: the key made for it is refused and removed.
    let typo = keys.join("typo.key");
    let log = refused_start(&data, &["--encrypt-at-rest", path_str(&typo)?], &[])?;
    assert!(log.contains("did not exist") && log.contains("removed again"), "{log}");
    assert!(!typo.exists(), "the refused new key file was left behind");
    // A key file of the wrong size.
    let short = keys.join("short.key");
    std::fs::write(&short, b"0123456789")?;
    let log = refused_start(&data, &["--encrypt-at-rest", path_str(&short)?], &[])?;
    assert!(log.contains("holds 10 bytes") && log.contains("32 random bytes"), "{log}");

    // After all that, the right key still opens everything.
    let hub = HubProcess::start_with(&data, &enc)?;
    read_back(&hub, &session, &owner, &texts).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_hub_shows_the_marker_and_refuses_a_key_later() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let mut hub = HubProcess::start_with(&data, &["--compact-after", "5"])?;
    let (session, owner) = hub.create_session("plain").await?;
    let texts = write_marked_docs(&hub, &session, &owner).await?;
    let status = hub.terminate()?;
    assert!(status.success(), "hub exited with {status}: {}", hub.log());
    // The control: without encryption the search finds the text, so the
    // empty result above means something.
    let found = files_with_marker(&data)?;
    assert!(found.iter().any(|p| p.ends_with("hub.db")), "the marker search found nothing: {found:?}");

    let key = dir.path().join("new.key");
    let log = refused_start(&data, &["--encrypt-at-rest", path_str(&key)?], &[])?;
    assert!(log.contains("written without encryption at rest") && log.contains("new --data directory"), "{log}");
    assert!(!key.exists(), "the refused new key file was left behind");

    let hub = HubProcess::start(&data)?;
    read_back(&hub, &session, &owner, &texts).await?;
    Ok(())
}
