//! End-to-end through two real `weft lsp` processes and a real hub: share
//! from one editor, join from the other, type concurrently (multi-byte
//! text included), kill and restart the hub mid-way, and check that both
//! editor buffers — as rebuilt from the LSP streams the clients saw — end
//! identical. One editor is driven by the npm `vscode-jsonrpc` client.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use weft_tests::lsp::{Echo, LspEditor, file_uri, normalize_line_breaks, normalizing_initialize_params};
use weft_tests::{HubProcess, Rng, SNIPPETS};

const T: Duration = Duration::from_secs(60);

async fn type_randomly(editor: &mut LspEditor, uri: &str, rng: &mut Rng, n: usize) -> anyhow::Result<()> {
    for _ in 0..n {
        let len = editor.char_len(uri).unwrap_or(0);
        let mut at = rng.below(len + 1);
        while !editor.is_edit_boundary(uri, at) {
            at -= 1;
        }
        if len > 20 && rng.below(4) == 0 {
            let mut end = (at + 1 + rng.below(3)).min(len);
            while !editor.is_edit_boundary(uri, end) {
                end -= 1;
            }
            if end > at {
                editor.delete(uri, at, end - at).await?;
            }
        } else {
            editor.type_at(uri, at, SNIPPETS[rng.below(SNIPPETS.len())]).await?;
        }
        editor.pump(Duration::from_millis(rng.below(3) as u64)).await?;
    }
    Ok(())
}

fn write(root: &Path, rel: &str, text: &str) -> anyhow::Result<String> {
    let path = root.join(rel);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, text)?;
    Ok(file_uri(&path))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bridges_converge_through_a_hub_that_restarts() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub_dir = dir.path().join("hub");
    let mut hub = HubProcess::start(&hub_dir)?;
    let port = hub.addr.port().to_string();
    let (root_a, root_b) = (dir.path().join("a"), dir.path().join("b"));
    let initial = "fn main() {\n    println!(\"héllo 🌍\");\r\n}\n";
    let uri_a = write(&root_a, "src/main.rs", initial)?;
    let uri_b = file_uri(&root_b.join("src/main.rs"));
    std::fs::create_dir_all(root_b.join("src"))?;

    let mut a = LspEditor::spawn_with(&dir.path().join("logs"), "alice", &[], &[("WEFT_HUB_TOKEN", &hub.admin)])?;
    a.initialize("utf-16", "Alice").await?;
    a.open(&uri_a, initial).await?;
    let shared = a.share(&file_uri(&root_a), Some(&hub.ws_base())).await?;
    let link = shared["links"]["editor"].as_str().unwrap_or_default().to_owned();
    assert!(link.starts_with("weft://"), "{shared}");

    let mut b = LspEditor::spawn(&dir.path().join("logs"), "bob")?;
    b.initialize_offering(&["utf-8", "utf-16"], "Bob").await?;
    let joined = b.join(&link, None, &file_uri(&root_b)).await?;
    assert_eq!(joined["role"], "editor", "{joined}");
    // Bob opens the file with nothing in it: the shared text wins.
    b.open(&uri_b, "").await?;
    b.wait_for("bob has the shared text", T, |e| e.text(&uri_b) == Some(initial)).await?;

    // Concurrent typing in both editors; the editors report applied edits
    // in different shapes (trimmed, merged into one change).
    a.set_echo(Echo::Trimmed);
    b.set_echo(Echo::Merged);
    let mut rng = Rng::from_env("lsp_e2e");
    for _ in 0..4 {
        type_randomly(&mut a, &uri_a, &mut rng, 25).await?;
        type_randomly(&mut b, &uri_b, &mut rng, 25).await?;
    }
    // Remote edits delivered late: B holds them while both keep typing, so
    // they go stale and are refused, then recomputed and resent.
    b.set_hold_apply_edits(true);
    type_randomly(&mut a, &uri_a, &mut rng, 15).await?;
    type_randomly(&mut b, &uri_b, &mut rng, 15).await?;
    b.release_apply_edits().await?;
    b.set_hold_apply_edits(false);
    let text = converge_two(&mut a, &uri_a, &mut b, &uri_b).await?;
    assert!(!text.is_empty());
    let (_, refused) = b.apply_edit_counts();
    assert!(refused > 0, "the held edits should have been refused as stale");

    // A second shared file, synced while the hub is up.
    let lib_a = write(&root_a, "src/lib.rs", "// lib\n")?;
    a.open(&lib_a, "// lib\n").await?;
    a.pump(Duration::from_millis(200)).await?;

    // Kill the hub, keep typing offline on both sides, restart it on the same port.
    hub.kill9();
    // Edited and closed while offline: the edit must still reach the hub.
    a.type_at(&lib_a, 7, "offline lib 🦀\n").await?;
    a.close(&lib_a).await?;
    type_randomly(&mut a, &uri_a, &mut rng, 20).await?;
    a.type_at(&uri_a, 0, "// offline A 🦀\n").await?;
    type_randomly(&mut b, &uri_b, &mut rng, 20).await?;
    b.type_at(&uri_b, 0, "// offline B 日本\n").await?;
    let status = a.status().await?;
    assert_eq!(status["state"], "connecting", "{status}");
    let _hub = HubProcess::start_with(&hub_dir, &["--listen", &format!("127.0.0.1:{port}")])?;
    let text = converge_two(&mut a, &uri_a, &mut b, &uri_b).await?;
    assert!(text.contains("// offline A 🦀\n") && text.contains("// offline B 日本\n"), "offline edits lost: {text:?}");
    let status = b.status().await?;
    assert_eq!(status["state"], "connected", "{status}");
    let lib_b = file_uri(&root_b.join("src/lib.rs"));
    b.open(&lib_b, "").await?;
    b.wait_for("the edit made offline in a closed file", T, |e| e.text(&lib_b) == Some("// lib\noffline lib 🦀\n"))
        .await?;
    assert!(a.violations.is_empty() && b.violations.is_empty());
    a.shutdown().await?;
    b.shutdown().await?;
    Ok(())
}

async fn converge_two(a: &mut LspEditor, uri_a: &str, b: &mut LspEditor, uri_b: &str) -> anyhow::Result<String> {
    // The two buffers have different URIs (different roots), so compare
    // texts directly while pumping both.
    let deadline = tokio::time::Instant::now() + T;
    let mut stable = 0;
    loop {
        a.pump(Duration::from_millis(20)).await?;
        b.pump(Duration::from_millis(20)).await?;
        let (ta, tb) = (a.text(uri_a).unwrap_or_default().to_owned(), b.text(uri_b).unwrap_or_default().to_owned());
        stable = if ta == tb { stable + 1 } else { 0 };
        if stable >= 10 {
            return Ok(ta);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "editors did not converge: {} vs {} chars\nA: {:?}\nB: {:?}\n{}{}",
            ta.chars().count(),
            tb.chars().count(),
            ta,
            tb,
            a.log_tail(),
            b.log_tail()
        );
    }
}

/// A second editor (UTF-16) named `name` joins `link` into `root` and
/// opens `file` there, empty; returns it and the file's URI.
async fn join_and_open(
    logs: &Path,
    name: &str,
    link: &str,
    root: &Path,
    file: &str,
) -> anyhow::Result<(LspEditor, String)> {
    let mut b = LspEditor::spawn(logs, &name.to_lowercase())?;
    b.initialize("utf-16", name).await?;
    std::fs::create_dir_all(root)?;
    b.join(link, None, &file_uri(root)).await?;
    let uri = file_uri(&root.join(file));
    b.open(&uri, "").await?;
    Ok((b, uri))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_a_thousand_changes_arrives_in_order() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("w");
    let uri = write(&root, "burst.txt", "")?;
    let mut a = LspEditor::spawn(&dir.path().join("logs"), "burst")?;
    a.initialize("utf-32", "Burst").await?;
    a.open(&uri, "").await?;
    // No hub given: the bridge starts an embedded one.
    let shared = a.share(&file_uri(&root), None).await?;
    let link = shared["links"]["editor"].as_str().unwrap_or_default().to_owned();
    // 1,000 back-to-back didChange notifications without reading anything.
    let mut expected = String::new();
    for n in 0..1000 {
        let piece = format!("{}{}", n % 10, if n % 50 == 49 { "\n" } else { "" });
        a.type_at(&uri, expected.chars().count(), &piece).await?;
        expected.push_str(&piece);
    }
    let status = a.status().await?;
    assert_eq!((status["state"].as_str(), status["documents"].as_u64()), (Some("connected"), Some(1)), "{status}");
    // A second bridge joining sees exactly that text: nothing reordered.
    let (mut b, uri_b) =
        join_and_open(&dir.path().join("logs"), "Reader", &link, &dir.path().join("r"), "burst.txt").await?;
    b.wait_for("reader has the burst in order", T, |e| e.text(&uri_b) == Some(expected.as_str())).await?;
    assert_eq!(a.text(&uri), Some(expected.as_str()));
    a.shutdown().await?;
    b.shutdown().await?;
    Ok(())
}

/// A hub that slows a peer to 2 frames a second after a burst of 20: a
/// bridge typing 400 changes without pause must still get them all across
/// in far less than the 190 s they would take one frame each. Its hub link
/// keeps at most a small window of updates unacknowledged and merges what
/// queues up behind it, so the throttled peer spends its frames on merged
/// updates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_burst_arrives_merged() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = HubProcess::start_with(&dir.path().join("hub"), &["--rate-frames", "2", "--burst-frames", "20"])?;
    let root = dir.path().join("w");
    let uri = write(&root, "fast.txt", "")?;
    let logs = dir.path().join("logs");
    let mut a = LspEditor::spawn_with(&logs, "agent", &[], &[("WEFT_HUB_TOKEN", &hub.admin)])?;
    a.initialize("utf-16", "Agent").await?;
    a.open(&uri, "").await?;
    let shared = a.share(&file_uri(&root), Some(&hub.ws_base())).await?;
    let link = shared["links"]["editor"].as_str().unwrap_or_default().to_owned();
    let (mut b, uri_b) = join_and_open(&logs, "Watcher", &link, &dir.path().join("r"), "fast.txt").await?;
    let mut expected = String::new();
    for n in 0..400 {
        let piece = format!("{}{}", n % 10, if n % 40 == 39 { "\n" } else { "" });
        a.type_at(&uri, expected.chars().count(), &piece).await?;
        expected.push_str(&piece);
    }
    b.wait_for("the watcher has the whole burst", T, |e| e.text(&uri_b) == Some(expected.as_str())).await?;
    a.shutdown().await?;
    b.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_errors_not_crashes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("w");
    let uri = write(&root, "x.txt", "abc")?;
    let mut a = LspEditor::spawn(&dir.path().join("logs"), "bad")?;
    a.initialize("utf-16", "Bad").await?;
    // Unknown method → MethodNotFound.
    let err = a.request("weft/nope", json!({})).await.expect_err("must fail");
    assert!(format!("{err:#}").contains("-32601"), "{err:#}");
    // Bad params → InvalidParams.
    let err = a.request("weft/join", json!({"link": 5})).await.expect_err("must fail");
    assert!(format!("{err:#}").contains("-32602"), "{err:#}");
    // A link to nowhere → a clear failure, not a hang.
    let err = a.request("weft/join", json!({"link": "weft://127.0.0.1:1/s/abc#t", "root": file_uri(&root)})).await;
    assert!(err.is_err());
    // Malformed JSON → parse error with id null; the server keeps going.
    a.send_raw(b"Content-Length: 9\r\n\r\n{not json").await?;
    // didChange for a document never opened, ranges past the end, stale versions.
    a.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": "file:///nowhere.txt", "version": 3}, "contentChanges": [{"text": "x"}]}),
    )
    .await?;
    a.open(&uri, "abc").await?;
    a.share(&file_uri(&root), None).await?;
    a.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{"range": {"start": {"line": 9, "character": 0}, "end": {"line": 99, "character": 5}}, "text": "!"}]}),
    )
    .await?;
    a.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 1}, "contentChanges": [{"range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}}, "text": ">"}]}),
    )
    .await?;
    a.notify("weft/verify", json!({"uri": "not a uri", "version": 1, "sha256": "00"})).await?;
    let status = a.status().await?;
    assert_eq!(status["state"], "connected", "the bridge is alive: {status}");
    assert!(!a.errors_without_id.is_empty(), "the parse error was answered");
    assert!(a.is_running());
    a.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vscode_jsonrpc_client_and_rust_client_converge() -> anyhow::Result<()> {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("js");
    assert!(js.join("node_modules/vscode-jsonrpc").exists(), "run `npm ci --prefix tests/js` (scripts/test does)");
    let dir = tempfile::tempdir()?;
    let hub = HubProcess::start(&dir.path().join("hub"))?;
    let root_a = dir.path().join("a");
    let uri_a = write(&root_a, "lib/mod.rs", "// shared\n")?;
    let mut a = LspEditor::spawn_with(&dir.path().join("logs"), "rust", &[], &[("WEFT_HUB_TOKEN", &hub.admin)])?;
    a.initialize("utf-8", "Rust").await?;
    a.open(&uri_a, "// shared\n").await?;
    let shared = a.share(&file_uri(&root_a), Some(&hub.ws_base())).await?;
    let link = shared["links"]["editor"].as_str().unwrap_or_default().to_owned();

    let root_b = dir.path().join("b");
    std::fs::create_dir_all(&root_b)?;
    let node = tokio::process::Command::new("node")
        .arg(js.join("lsp-editor.mjs"))
        .args(["--weft", &weft_tests::weft_bin().to_string_lossy(), "--root", &file_uri(&root_b), "--join", &link])
        .args([
            "--file",
            "lib/mod.rs",
            "--edits",
            "60",
            "--seed",
            "11",
            "--encoding",
            "utf-16",
            "--timeout-ms",
            "50000",
        ])
        .kill_on_drop(true)
        .output();
    let node = tokio::spawn(node);
    // Type concurrently while the node editor types.
    let mut rng = Rng::from_env("vscode_jsonrpc");
    type_randomly(&mut a, &uri_a, &mut rng, 60).await?;
    let out = tokio::time::timeout(T, node).await???;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "lsp-editor.mjs failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let result: serde_json::Value = serde_json::from_str(stdout.trim())?;
    let text = result["text"].as_str().unwrap_or_default().to_owned();
    a.wait_for("the Rust editor matches the vscode-jsonrpc editor", T, |e| e.text(&uri_a) == Some(text.as_str()))
        .await?;
    assert!(result["violations"].as_array().is_some_and(Vec::is_empty), "{result}");
    a.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_cannot_edit_and_divergence_is_repaired() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let root_a = dir.path().join("a");
    let uri_a = write(&root_a, "notes.md", "# notes\n")?;
    let mut a = LspEditor::spawn(&dir.path().join("logs"), "owner")?;
    a.initialize("utf-16", "Owner").await?;
    a.open(&uri_a, "# notes\n").await?;
    let shared = a.share(&file_uri(&root_a), None).await?;
    let viewer_link = shared["links"]["viewer"].as_str().unwrap_or_default().to_owned();

    let root_b = dir.path().join("b");
    std::fs::create_dir_all(&root_b)?;
    let uri_b = file_uri(&root_b.join("notes.md"));
    let mut b = LspEditor::spawn(&dir.path().join("logs"), "viewer")?;
    b.initialize("utf-16", "Viewer").await?;
    let joined = b.join(&viewer_link, None, &file_uri(&root_b)).await?;
    assert_eq!(joined["role"], "viewer");
    b.open(&uri_b, "").await?;
    b.wait_for("viewer synced", T, |e| e.text(&uri_b) == Some("# notes\n")).await?;
    // The viewer types: it is told, and its buffer is brought back.
    b.type_at(&uri_b, 0, "vandal ").await?;
    b.wait_notification("window/showMessage", T, |p| p["message"].as_str().is_some_and(|m| m.contains("read-only")))
        .await?;
    b.wait_for("viewer buffer restored", T, |e| e.text(&uri_b) == Some("# notes\n")).await?;
    // The owner's edits still reach the viewer; the vandalism never reached the owner.
    a.type_at(&uri_a, 8, "- one 🦀\n").await?;
    b.wait_for("viewer sees the owner's edit", T, |e| e.text(&uri_b) == Some("# notes\n- one 🦀\n")).await?;
    a.pump(Duration::from_millis(100)).await?;
    assert_eq!(a.text(&uri_a), Some("# notes\n- one 🦀\n"));

    // weft/verify with a hash that does not match: the bridge repairs the
    // buffer with the shared text (a whole-buffer edit whose range ends at
    // LSP's largest line, which editors clamp) and says so.
    a.set_lenient_positions(true);
    let before = a.apply_edits.len();
    let version = a.version(&uri_a).unwrap_or_default();
    a.notify("weft/verify", json!({"uri": uri_a, "version": version, "sha256": "0".repeat(64)})).await?;
    a.wait_for("a repair edit", T, |e| e.apply_edits.len() > before).await?;
    a.wait_notification("window/logMessage", T, |p| p["message"].as_str().is_some_and(|m| m.contains("diverged")))
        .await?;
    a.pump(Duration::from_millis(100)).await?;
    assert_eq!(a.text(&uri_a), Some("# notes\n- one 🦀\n"));
    // A matching hash changes nothing.
    let before = a.apply_edits.len();
    a.verify(&uri_a).await?;
    a.pump(Duration::from_millis(200)).await?;
    assert_eq!(a.apply_edits.len(), before, "a correct hash must not trigger a repair");
    a.shutdown().await?;
    b.shutdown().await?;
    Ok(())
}

/// VS Code writes every line break of an edit it applies as its buffer's
/// one line ending (it announces `normalizesLineEndings`). Beside an editor
/// that keeps a file's mixed line breaks it is shown its own; what each
/// types reaches the other, the file keeps what its writers wrote, and the
/// two never rewrite each other's line breaks back and forth (decision 0005).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_editor_that_normalises_line_endings_and_one_that_keeps_them_converge() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = HubProcess::start(&dir.path().join("hub"))?;
    let (root_a, root_b) = (dir.path().join("a"), dir.path().join("b"));
    let initial = "fn main() {\r\n    one();\n}\r\n";
    let uri_a = write(&root_a, "src/main.rs", initial)?;
    std::fs::create_dir_all(root_b.join("src"))?;
    let uri_b = file_uri(&root_b.join("src/main.rs"));

    let mut a = LspEditor::spawn_with(&dir.path().join("logs"), "keeper", &[], &[("WEFT_HUB_TOKEN", &hub.admin)])?;
    a.initialize("utf-16", "Keeper").await?;
    a.open(&uri_a, initial).await?;
    let shared = a.share(&file_uri(&root_a), Some(&hub.ws_base())).await?;
    let link = shared["links"]["editor"].as_str().unwrap_or_default().to_owned();

    let mut b = LspEditor::spawn(&dir.path().join("logs"), "normaliser")?;
    b.set_normalizes_line_endings("\n");
    b.initialize_with(normalizing_initialize_params(&["utf-16"], "Normaliser")).await?;
    b.join(&link, None, &file_uri(&root_b)).await?;
    b.open(&uri_b, "").await?;
    let shown = |text: &str| normalize_line_breaks(text, "\n");
    b.wait_for("the normaliser is shown its line ending", T, |e| e.text(&uri_b) == Some(&shown(initial))).await?;

    // The keeper types a CRLF line, the normaliser presses Enter on a CRLF
    // line and on an LF line.
    a.type_at(&uri_a, "fn main() {\r\n    one();".chars().count(), "\r\n    two();").await?;
    let expected = "fn main() {\r\n    one();\r\n    two();\n}\r\n";
    b.wait_for("the keeper's line", T, |e| e.text(&uri_b) == Some(&shown(expected))).await?;
    b.type_at(&uri_b, "fn main() {".chars().count(), "\n    zero();").await?;
    let at = "fn main() {\n    zero();\n    one();\n    two();".chars().count();
    b.type_at(&uri_b, at, "\n    three();").await?;
    let expected = "fn main() {\r\n    zero();\r\n    one();\r\n    two();\n    three();\n}\r\n";
    a.wait_for("the normaliser's lines, written as their lines write them", T, |e| e.text(&uri_a) == Some(expected))
        .await?;

    // Quiet: no edit bounces between the two.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    let before = (a.apply_edit_counts(), b.apply_edit_counts());
    while tokio::time::Instant::now() < deadline {
        a.pump(Duration::from_millis(20)).await?;
        b.pump(Duration::from_millis(20)).await?;
    }
    let late: Vec<_> = b.apply_edits.iter().skip(before.1.0 + before.1.1).map(|r| &r.params).collect();
    assert_eq!(
        (a.apply_edit_counts(), b.apply_edit_counts()),
        before,
        "edits went on after both had the text: {late:?}"
    );
    assert_eq!(a.text(&uri_a), Some(expected));
    assert_eq!(b.text(&uri_b), Some(shown(expected).as_str()));
    assert!(a.violations.is_empty() && b.violations.is_empty(), "{:?} {:?}", a.violations, b.violations);
    a.shutdown().await?;
    b.shutdown().await?;
    Ok(())
}
