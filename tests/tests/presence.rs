//! Presence end to end, through real `weft lsp` processes and a real hub:
//! cursors and selections reach the others at the right positions in each
//! editor's own encoding while someone types above them (sticky indexes),
//! `weft/peers` is throttled whatever the cursor traffic, idle / away /
//! typing, a killed peer disappears and comes back with its colour, and
//! follow mode (with summons) drives `window/showDocument`.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft_tests::HubProcess;
use weft_tests::lsp::{Encoding, LspEditor, file_uri, initialize_params, position_of};

const T: Duration = Duration::from_secs(60);

fn write(root: &Path, rel: &str, text: &str) -> anyhow::Result<String> {
    let path = root.join(rel);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, text)?;
    Ok(file_uri(&path))
}

/// Starts an editor named `name` offering `encoding`, with extra
/// initialization options.
async fn editor(
    logs: &Path,
    name: &str,
    encoding: &str,
    options: Value,
    env: &[(&str, &str)],
) -> anyhow::Result<LspEditor> {
    let mut e = LspEditor::spawn_with(logs, name, &[], env)?;
    let mut params = initialize_params(&[encoding], name);
    if let (Some(init), Some(extra)) = (params["initializationOptions"].as_object_mut(), options.as_object()) {
        init.extend(extra.clone());
    }
    e.initialize_with(params).await?;
    Ok(e)
}

/// The LSP position of byte `byte` of `text` in `enc`, as JSON.
fn pos(text: &str, byte: usize, enc: Encoding) -> Value {
    let p = position_of(text, byte, enc).expect("a valid position");
    json!({"line": p.line, "character": p.character})
}

/// Byte offset of the end of the first `needle` in `text`.
fn after(text: &str, needle: &str) -> usize {
    text.find(needle).map(|i| i + needle.len()).expect("needle in text")
}

async fn cursor(e: &mut LspEditor, uri: &str, selections: Value) -> anyhow::Result<()> {
    e.notify("weft/cursor", json!({"uri": uri, "selections": selections})).await
}

/// The peers of the last `weft/peers` the editor received.
fn last_peers(e: &LspEditor) -> Vec<Value> {
    e.notifications
        .iter()
        .rev()
        .find(|n| n.method == "weft/peers")
        .and_then(|n| n.params["peers"].as_array().cloned())
        .unwrap_or_default()
}

fn peer_named(peers: &[Value], name: &str) -> Option<Value> {
    peers.iter().find(|p| p["name"] == name).cloned()
}

/// Waits until the last `weft/peers` has a peer named `name` satisfying `pred`.
async fn wait_peer(e: &mut LspEditor, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
    let label = format!("{what} ({name} in weft/peers)");
    e.wait_for(&label, T, |e| peer_named(&last_peers(e), name).is_some_and(|p| pred(&p))).await.map_err(|err| {
        anyhow::anyhow!("{err:#}\nlast peers: {}", serde_json::to_string_pretty(&last_peers(e)).unwrap_or_default())
    })?;
    peer_named(&last_peers(e), name).ok_or_else(|| anyhow::anyhow!("peer vanished"))
}

/// Pumps every editor for `wait`.
async fn pump_all(editors: &mut [&mut LspEditor], wait: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        for e in editors.iter_mut() {
            e.pump(Duration::from_millis(5)).await?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_stay_on_their_characters_in_every_encoding() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let logs = dir.path().join("logs");
    let hub = HubProcess::start(&dir.path().join("hub"))?;
    let (root_a, root_b, root_c) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
    let text = "// héllo 🌍 world\nfn main() { let x = \"日本語\"; }\nend\n";
    let uri_a = write(&root_a, "src/main.rs", text)?;

    let mut a = editor(&logs, "Alice", "utf-16", json!({}), &[("WEFT_HUB_TOKEN", &hub.admin)]).await?;
    a.open(&uri_a, text).await?;
    let shared = a.share(&file_uri(&root_a), Some(&hub.ws_base())).await?;
    let link = shared["links"]["editor"].as_str().unwrap_or_default().to_owned();
    let mut b = editor(&logs, "Bob", "utf-8", json!({"color": "#123ABC"}), &[]).await?;
    b.join(&link, None, &file_uri(&root_b)).await?;
    let mut c = editor(&logs, "Carol", "utf-16", json!({}), &[]).await?;
    c.join(&link, None, &file_uri(&root_c)).await?;
    let uri_b = file_uri(&root_b.join("src/main.rs"));
    let uri_c = file_uri(&root_c.join("src/main.rs"));
    b.open(&uri_b, "").await?;
    c.open(&uri_c, "").await?;
    b.wait_text(&uri_b, text, T).await?;
    c.wait_text(&uri_c, text, T).await?;

    // Bob selects "本語" (anchor after 日, head after 語), in UTF-8 units.
    let sel =
        |t: &str, enc| json!([{ "anchor": pos(t, after(t, "\"日"), enc), "head": pos(t, after(t, "日本語"), enc) }]);
    cursor(&mut b, &uri_b, sel(text, Encoding::Utf8)).await?;
    // Alice's cursor sits after the globe, in UTF-16 units.
    let at_globe =
        |t: &str, enc| json!([{ "anchor": pos(t, after(t, "🌍"), enc), "head": pos(t, after(t, "🌍"), enc) }]);
    cursor(&mut a, &uri_a, at_globe(text, Encoding::Utf16)).await?;

    let seen = wait_peer(&mut a, "Bob", "Bob's selection in UTF-16", |p| p["selections"] == sel(text, Encoding::Utf16))
        .await?;
    assert_eq!(seen["color"], "#123abc", "a colour from the editor's settings: {seen}");
    assert_eq!(seen["uri"], uri_a.as_str());
    assert_eq!(seen["kind"], "user");
    assert_eq!(seen["role"], "editor");
    wait_peer(&mut c, "Bob", "Bob's selection in Carol's buffer", |p| p["selections"] == sel(text, Encoding::Utf16))
        .await?;
    let alice =
        wait_peer(&mut b, "Alice", "Alice's cursor in UTF-8", |p| p["selections"] == at_globe(text, Encoding::Utf8))
            .await?;
    assert_eq!(alice["role"], "owner");
    assert!(alice["color"].as_str().is_some_and(|c| c.len() == 7 && c.starts_with('#')), "{alice}");
    assert!(peer_named(&last_peers(&a), "Alice").is_none(), "an editor is not listed to itself");

    // Carol types above both cursors: they stay on their characters.
    c.type_at(&uri_c, 0, "// Carol 🦀 was here\n").await?;
    c.type_at(&uri_c, 3, "Ü").await?;
    let now = "// Ü";
    let moved = c.text(&uri_c).unwrap_or_default().to_owned();
    assert!(moved.starts_with(now), "{moved:?}");
    a.wait_text(&uri_a, &moved, T).await?;
    b.wait_text(&uri_b, &moved, T).await?;
    wait_peer(&mut a, "Bob", "Bob's selection after Carol's typing", |p| {
        p["selections"] == sel(&moved, Encoding::Utf16)
    })
    .await?;
    wait_peer(&mut b, "Alice", "Alice's cursor after Carol's typing", |p| {
        p["selections"] == at_globe(&moved, Encoding::Utf8)
    })
    .await?;
    wait_peer(&mut a, "Carol", "Carol listed", |_| true).await?;
    assert!(a.violations.is_empty() && b.violations.is_empty() && c.violations.is_empty());
    for e in [&mut a, &mut b, &mut c] {
        e.shutdown().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_lists_are_throttled_and_end_exact() -> anyhow::Result<()> {
    const MOVERS: usize = 10;
    let dir = tempfile::tempdir()?;
    let logs = dir.path().join("logs");
    let hub = HubProcess::start(&dir.path().join("hub"))?;
    let root = dir.path().join("a");
    let text: String = (0..50).map(|i| format!("line {i} ✓ some text here\n")).collect();
    let uri = write(&root, "f.txt", &text)?;
    let mut a = editor(&logs, "Observer", "utf-16", json!({}), &[("WEFT_HUB_TOKEN", &hub.admin)]).await?;
    a.open(&uri, &text).await?;
    let shared = a.share(&file_uri(&root), Some(&hub.ws_base())).await?;
    let link = shared["links"]["editor"].as_str().unwrap_or_default().to_owned();
    let mut movers = Vec::new();
    for i in 0..MOVERS {
        let name = format!("Mover {i}");
        let mut e = editor(&logs, &name, "utf-16", json!({}), &[]).await?;
        let r = dir.path().join(format!("m{i}"));
        e.join(&link, None, &file_uri(&r)).await?;
        let u = file_uri(&r.join("f.txt"));
        e.open(&u, "").await?;
        e.wait_text(&u, &text, T).await?;
        movers.push((e, u));
    }
    // Everyone moves their cursor at 200 Hz for 2 s, each from its own task.
    let start = Instant::now();
    let before = a.notifications.iter().filter(|n| n.method == "weft/peers").count();
    let mut tasks = Vec::new();
    for (i, (mut e, u)) in movers.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            let mut sent = 0u32;
            while start.elapsed() < Duration::from_secs(2) {
                tick.tick().await;
                let p = json!({"line": (sent as usize + i) % 50, "character": sent % 10});
                cursor(&mut e, &u, json!([{ "anchor": p, "head": p }])).await?;
                e.pump_ready().await?;
                sent += 1;
            }
            anyhow::Ok((e, u, sent))
        }));
    }
    a.pump(Duration::from_secs(2)).await?;
    let mut movers = Vec::new();
    let mut sent = 0;
    for task in tasks {
        let (e, u, n) = task.await??;
        sent += n;
        movers.push((e, u));
    }
    let elapsed = start.elapsed();
    let during = a.notifications.iter().filter(|n| n.method == "weft/peers").count() - before;
    // Final positions: each mover parks on its own line.
    for (i, (e, u)) in movers.iter_mut().enumerate() {
        let p = json!({"line": i, "character": 7});
        cursor(e, u, json!([{ "anchor": p, "head": p }])).await?;
    }
    let rate = during as f64 / elapsed.as_secs_f64();
    eprintln!(
        "{MOVERS} peers sent {sent} cursor moves in {elapsed:?}; the observer got {during} weft/peers ({rate:.1}/s)"
    );
    assert!(sent as f64 >= MOVERS as f64 * 50.0 * 2.0, "the movers only managed {sent} moves");
    assert!(rate <= 35.0, "{during} weft/peers in {elapsed:?}: {rate:.1}/s, over the ~30/s cap");
    assert!(during > 0, "no weft/peers at all while ten peers moved");
    a.wait_for("every mover's final cursor", T, |a| {
        let peers = last_peers(a);
        (0..MOVERS).all(|i| {
            peer_named(&peers, &format!("Mover {i}")).is_some_and(|p| {
                p["selections"]
                    == json!([{ "anchor": {"line": i, "character": 7}, "head": {"line": i, "character": 7} }])
            })
        })
    })
    .await?;
    a.shutdown().await?;
    for (mut e, _) in movers {
        e.shutdown().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_away_typing_leaving_and_coming_back() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let logs = dir.path().join("logs");
    let hub = HubProcess::start(&dir.path().join("hub"))?;
    let (root_a, root_b, root_c) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
    let uri_a = write(&root_a, "x.rs", "fn x() {}\n")?;
    let mut a = editor(&logs, "Alice", "utf-16", json!({}), &[("WEFT_HUB_TOKEN", &hub.admin)]).await?;
    a.open(&uri_a, "fn x() {}\n").await?;
    let shared = a.share(&file_uri(&root_a), Some(&hub.ws_base())).await?;
    let link = shared["links"]["editor"].as_str().unwrap_or_default().to_owned();
    let quick = json!({"idleTimeoutMs": 700, "awayTimeoutMs": 600_000});
    let mut b = editor(&logs, "Bob", "utf-16", quick, &[]).await?;
    b.join(&link, None, &file_uri(&root_b)).await?;
    let uri_b = file_uri(&root_b.join("x.rs"));
    b.open(&uri_b, "").await?;
    b.wait_text(&uri_b, "fn x() {}\n", T).await?;

    // Typing shows, then stops showing after a pause; no input → idle.
    b.type_at(&uri_b, 0, "// b\n").await?;
    wait_peer(&mut a, "Bob", "Bob typing", |p| p["typing"] == true && p["status"] == "active").await?;
    wait_peer(&mut a, "Bob", "Bob done typing", |p| p["typing"] == false).await?;
    wait_peer(&mut a, "Bob", "Bob idle", |p| p["status"] == "idle").await?;
    // Input makes him active again; an unfocused editor is away.
    cursor(&mut b, &uri_b, json!([{ "anchor": {"line": 0, "character": 1}, "head": {"line": 0, "character": 1} }]))
        .await?;
    wait_peer(&mut a, "Bob", "Bob active again", |p| p["status"] == "active").await?;
    b.notify("weft/focus", json!({"focused": false})).await?;
    wait_peer(&mut a, "Bob", "Bob away", |p| p["status"] == "away").await?;
    b.notify("weft/doing", json!({"text": "reviewing x.rs"})).await?;
    wait_peer(&mut a, "Bob", "what Bob says he is doing", |p| p["doing"] == "reviewing x.rs").await?;

    // Carol joins (announced), is killed (gone within seconds), and comes
    // back with the same colour.
    let mut c = editor(&logs, "Carol", "utf-16", json!({}), &[]).await?;
    c.join(&link, None, &file_uri(&root_c)).await?;
    let carol = wait_peer(&mut a, "Carol", "Carol joined", |_| true).await?;
    let joined = a
        .wait_notification("weft/activity", T, |p| {
            p["entries"].as_array().is_some_and(|e| e.iter().any(|e| e["kind"] == "joined" && e["name"] == "Carol"))
        })
        .await?;
    assert!(joined["entries"][0]["at"].as_u64().is_some(), "{joined}");
    c.kill().await?;
    a.wait_for("Carol gone after her bridge was killed", Duration::from_secs(10), |a| {
        peer_named(&last_peers(a), "Carol").is_none()
    })
    .await?;
    a.wait_notification("weft/activity", T, |p| {
        p["entries"].as_array().is_some_and(|e| e.iter().any(|e| e["kind"] == "left" && e["name"] == "Carol"))
    })
    .await?;
    let mut c = editor(&logs, "Carol", "utf-16", json!({}), &[]).await?;
    c.join(&link, None, &file_uri(&root_c)).await?;
    let back = wait_peer(&mut a, "Carol", "Carol back", |_| true).await?;
    assert_eq!(back["color"], carol["color"], "a returning peer keeps her colour");
    pump_all(&mut [&mut b, &mut c], Duration::from_millis(10)).await?;
    for e in [&mut a, &mut b, &mut c] {
        e.shutdown().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_mode_and_summons_reveal_the_leader() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let logs = dir.path().join("logs");
    let hub = HubProcess::start(&dir.path().join("hub"))?;
    let (root_a, root_b) = (dir.path().join("a"), dir.path().join("b"));
    let one: String = (0..80).map(|i| format!("one {i}\n")).collect();
    let uri_one_a = write(&root_a, "one.txt", &one)?;
    write(&root_a, "two.txt", "two\n")?;
    let mut a = editor(&logs, "Alice", "utf-16", json!({}), &[("WEFT_HUB_TOKEN", &hub.admin)]).await?;
    a.open(&uri_one_a, &one).await?;
    let shared = a.share(&file_uri(&root_a), Some(&hub.ws_base())).await?;
    let link = shared["links"]["editor"].as_str().unwrap_or_default().to_owned();
    let mut b = editor(&logs, "Bob", "utf-16", json!({}), &[]).await?;
    b.join(&link, None, &file_uri(&root_b)).await?;
    let uri_one_b = file_uri(&root_b.join("one.txt"));
    let uri_two_b = file_uri(&root_b.join("two.txt"));
    b.open(&uri_one_b, "").await?;
    b.wait_text(&uri_one_b, &one, T).await?;

    // Bob follows Alice: he is shown her file and her selection.
    let sel = |line: u32| json!([{ "anchor": {"line": line, "character": 0}, "head": {"line": line, "character": 3} }]);
    cursor(&mut a, &uri_one_a, sel(5)).await?;
    let alice = wait_peer(&mut b, "Alice", "Alice's cursor", |p| p["selections"] == sel(5)).await?;
    let answer = b.request("weft/follow", json!({"peer": alice["id"]})).await?;
    assert_eq!(answer["peer"], alice["id"]);
    let shown = |e: &LspEditor| e.server_requests.iter().filter(|r| r.method == "window/showDocument").count();
    b.wait_for("a showDocument for Alice's file", T, |b| shown(b) >= 1).await?;
    let first = b.server_requests.iter().find(|r| r.method == "window/showDocument").map(|r| r.params.clone());
    let first = first.unwrap_or_default();
    assert_eq!(first["uri"], uri_one_b.as_str(), "{first}");
    assert_eq!(first["takeFocus"], false);
    assert_eq!(first["selection"], json!({"start": {"line": 5, "character": 0}, "end": {"line": 5, "character": 3}}));

    // She jumps far down: revealed again.
    cursor(&mut a, &uri_one_a, sel(70)).await?;
    b.wait_for("a showDocument for Alice's new place", T, |b| {
        b.server_requests
            .iter()
            .any(|r| r.method == "window/showDocument" && r.params["selection"]["start"]["line"] == 70)
    })
    .await?;
    // She moves to another file: Bob is shown it.
    let uri_two_a = file_uri(&root_a.join("two.txt"));
    a.open(&uri_two_a, "two\n").await?;
    cursor(&mut a, &uri_two_a, sel(0)).await?;
    b.wait_for("a showDocument for two.txt", T, |b| {
        b.server_requests.iter().any(|r| r.method == "window/showDocument" && r.params["uri"] == uri_two_b.as_str())
    })
    .await?;

    // Bob types: following stops, and Alice's moves no longer move him.
    b.type_at(&uri_one_b, 0, "b").await?;
    b.wait_notification("weft/following", T, |p| p["peer"].is_null()).await?;
    let count = shown(&b);
    cursor(&mut a, &uri_one_a, sel(30)).await?;
    wait_peer(&mut b, "Alice", "Alice back in one.txt", |p| p["uri"] == uri_one_b.as_str()).await?;
    pump_all(&mut [&mut a, &mut b], Duration::from_millis(300)).await?;
    assert_eq!(shown(&b), count, "a showDocument after following stopped");

    // Only the owner may summon; Alice (owner) summons and Bob follows her.
    let refused = b.request("weft/summon", json!({})).await;
    assert!(refused.is_err(), "a non-owner summoned: {refused:?}");
    a.request("weft/summon", json!({})).await?;
    b.wait_notification("weft/following", T, |p| p["peer"] == alice["id"]).await?;
    b.wait_for("a showDocument after the summons", T, |b| shown(b) > count).await?;
    assert!(a.violations.is_empty() && b.violations.is_empty(), "{:?} {:?}", a.violations, b.violations);
    a.shutdown().await?;
    b.shutdown().await?;
    Ok(())
}
