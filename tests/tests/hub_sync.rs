//! End-to-end sync through the real `weft hub` binary: concurrent typing
//! converges, late joiners get everything, state survives restarts, and a
//! SIGKILL loses no acknowledged update.

use std::time::Duration;

use weft_tests::{HubProcess, Rng, SNIPPETS, WeftPeer, converge};

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_typing_converges_for_every_peer_and_late_joiners() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = HubProcess::start(dir.path())?;
    let (session, owner) = hub.create_session("converge").await?;
    let editor = hub.create_link(&session, &owner, serde_json::json!({"role": "editor"})).await?;
    let editor = editor["token"].as_str().unwrap_or_default().to_owned();
    let base = hub.ws_base();
    let doc = "src/main.rs";

    let mut a = WeftPeer::join(&base, &session, &owner, 101).await?;
    let mut b = WeftPeer::join(&base, &session, &editor, 202).await?;
    let mut c = WeftPeer::join(&base, &session, &editor, 303).await?;
    for p in [&mut a, &mut b, &mut c] {
        p.subscribe(doc).await?;
    }
    let mut rng = Rng::from_env("concurrent_typing");
    for round in 0..300 {
        for p in [&mut a, &mut b, &mut c] {
            let len = p.char_len(doc);
            if len > 10 && rng.below(4) == 0 {
                let at = rng.below(len);
                p.delete(doc, at, 1 + rng.below(3)).await?;
            } else {
                let at = rng.below(len + 1);
                let snippet = SNIPPETS[rng.below(SNIPPETS.len())];
                p.insert(doc, at, snippet).await?;
            }
        }
        // Let frames cross only sometimes, so edits really are concurrent.
        if round % 7 == 0 {
            for p in [&mut a, &mut b, &mut c] {
                p.pump_for(Duration::from_millis(1)).await?;
            }
        }
    }
    let text = converge(&mut [&mut a, &mut b, &mut c], doc, T).await?;
    assert!(!text.is_empty());

    // A peer joining afterwards gets exactly the converged text.
    let mut late = WeftPeer::join(&base, &session, &editor, 404).await?;
    late.subscribe(doc).await?;
    late.pump_until("late joiner has the full text", T, |p| p.text(doc) == text).await?;
    for p in [&mut a, &mut b, &mut c] {
        assert!(p.errors.is_empty(), "unexpected errors: {:?}", p.errors);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_are_independent_and_survive_a_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut hub = HubProcess::start(dir.path())?;
    let (session, owner) = hub.create_session("restart").await?;
    let mut a = WeftPeer::join(&hub.ws_base(), &session, &owner, 1).await?;
    // More updates than the compaction threshold, so both a snapshot and a
    // log tail must be replayed.
    for (i, doc) in ["a.txt", "dir/b 日本.rs", "_session"].iter().enumerate() {
        a.subscribe(doc).await?;
        for n in 0..(40 * (i + 1)) {
            a.insert(doc, n, if n % 5 == 0 { "🦀" } else { "x" }).await?;
        }
    }
    a.wait_acked().await?;
    let before: Vec<String> = ["a.txt", "dir/b 日本.rs", "_session"].iter().map(|d| a.text(d)).collect();
    a.close().await;
    let status = hub.terminate()?;
    assert!(status.success(), "hub exited with {status}: {}", hub.log());

    let hub = HubProcess::start_with(dir.path(), &["--compact-after", "50"])?;
    let mut b = WeftPeer::join(&hub.ws_base(), &session, &owner, 2).await?;
    for (doc, want) in ["a.txt", "dir/b 日本.rs", "_session"].iter().zip(&before) {
        b.subscribe(doc).await?;
        b.pump_until(&format!("{doc} restored"), T, |p| &p.text(doc) == want).await?;
    }
    // Compaction happened on the second hub; a third start must still see everything.
    for n in 0..120 {
        b.insert("a.txt", n, "y").await?;
    }
    b.wait_acked().await?;
    let after = b.text("a.txt");
    drop(hub);
    let hub = HubProcess::start(dir.path())?;
    let mut c = WeftPeer::join(&hub.ws_base(), &session, &owner, 3).await?;
    c.subscribe("a.txt").await?;
    c.pump_until("a.txt after compaction", T, |p| p.text("a.txt") == after).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_update() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut hub = HubProcess::start(dir.path())?;
    let (session, owner) = hub.create_session("kill").await?;
    let mut a = WeftPeer::join(&hub.ws_base(), &session, &owner, 11).await?;
    a.subscribe("log.txt").await?;
    a.pump_for(Duration::from_millis(50)).await?;
    let synced = a.sent; // the step 2 answer, if any
    // Stream numbered lines without waiting for acks; kill the hub mid-stream.
    let mut written = 0u64;
    for n in 0..2000u64 {
        let len = a.char_len("log.txt");
        a.insert("log.txt", len, &format!("<{n}>")).await?;
        written += 1;
        a.pump_for(Duration::ZERO).await?;
        if n == 1200 {
            hub.kill9();
            break;
        }
    }
    // Collect acks that were already on the wire.
    a.pump_for(Duration::from_millis(200)).await?;
    let acked_updates = a.acked.saturating_sub(synced);
    assert!(acked_updates > 0, "no ack arrived before the kill");
    assert!(acked_updates <= written);

    let hub = HubProcess::start(dir.path())?;
    let mut b = WeftPeer::join(&hub.ws_base(), &session, &owner, 12).await?;
    b.subscribe("log.txt").await?;
    b.pump_for(Duration::from_millis(300)).await?;
    b.pump_until("restored text", T, |p| !p.text("log.txt").is_empty()).await?;
    let text = b.text("log.txt");
    for n in 0..acked_updates {
        assert!(
            text.contains(&format!("<{n}>")),
            "acknowledged update <{n}> was lost (acked {acked_updates}); text ends {:?}",
            &text[text.len().saturating_sub(80)..]
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awareness_is_relayed_and_cleared_when_a_peer_leaves() -> anyhow::Result<()> {
    use weft_tests::awareness_message;
    let dir = tempfile::tempdir()?;
    let hub = HubProcess::start(dir.path())?;
    let (session, owner) = hub.create_session("presence").await?;
    let base = hub.ws_base();
    let mut a = WeftPeer::join(&base, &session, &owner, 1).await?;
    let mut b = WeftPeer::join(&base, &session, &owner, 2).await?;
    a.subscribe("x.rs").await?;
    b.subscribe("x.rs").await?;
    a.pump_for(Duration::from_millis(50)).await?;
    b.pump_for(Duration::from_millis(50)).await?;
    a.send_doc("x.rs", &awareness_message(1, 1, r#"{"user":{"name":"Ada"}}"#)).await?;
    b.pump_until("Ada's presence", T, |p| p.awareness.iter().any(|(_, m)| String::from_utf8_lossy(m).contains("Ada")))
        .await?;

    // A late subscriber gets the current presence with its sync.
    let mut c = WeftPeer::join(&base, &session, &owner, 3).await?;
    c.subscribe("x.rs").await?;
    c.pump_until("presence on join", T, |p| {
        p.awareness.iter().any(|(_, m)| String::from_utf8_lossy(m).contains("Ada"))
    })
    .await?;

    // Unsubscribing stops the flow to that peer; leaving clears the state.
    c.send_text(r#"{"type":"unsubscribe","doc":"x.rs"}"#).await?;
    c.pump_for(Duration::from_millis(100)).await?;
    let seen_by_c = c.awareness.len();
    b.awareness.clear();
    a.close().await;
    b.pump_until("Ada's presence removed", T, |p| {
        p.awareness.iter().any(|(_, m)| String::from_utf8_lossy(m).contains("null"))
    })
    .await?;
    // b saw the removal, so the hub has processed a's leave; c, unsubscribed, got nothing.
    c.pump_for(Duration::from_millis(100)).await?;
    assert_eq!(c.awareness.len(), seen_by_c, "an unsubscribed peer still receives presence");
    Ok(())
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Decision 0010: the hub relays before the disk sync. If it then loses an
/// update (here: its data is rolled back to before the update, as a crash
/// between relay and sync would leave it), a peer that received the update
/// gives it back at its next sync — even with the author gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_update_the_hub_lost_comes_back_from_a_receiver() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (data, before) = (dir.path().join("data"), dir.path().join("before"));
    let mut hub = HubProcess::start(&data)?;
    let (session, owner) = hub.create_session("lost").await?;
    hub.terminate()?;
    copy_dir(&data, &before)?;

    let mut hub = HubProcess::start(&data)?;
    let mut author = WeftPeer::join(&hub.ws_base(), &session, &owner, 31).await?;
    let mut receiver = WeftPeer::join(&hub.ws_base(), &session, &owner, 32).await?;
    author.subscribe("doc.txt").await?;
    receiver.subscribe("doc.txt").await?;
    author.pump_for(Duration::from_millis(100)).await?;
    author.insert("doc.txt", 0, "relayed, then lost by the hub").await?;
    receiver.pump_until("the relayed update", T, |p| p.text("doc.txt") == "relayed, then lost by the hub").await?;

    // The hub dies and comes back without the update; the author is gone.
    hub.kill9();
    drop(author);
    std::fs::remove_dir_all(&data)?;
    copy_dir(&before, &data)?;
    let hub = HubProcess::start(&data)?;
    let mut fresh = WeftPeer::join(&hub.ws_base(), &session, &owner, 33).await?;
    fresh.subscribe("doc.txt").await?;
    fresh.pump_for(Duration::from_millis(300)).await?;
    assert_eq!(fresh.text("doc.txt"), "", "the rolled-back hub does not have the update");

    receiver.reconnect(&hub.ws_base(), &session, &owner).await?;
    receiver.pump_for(Duration::from_millis(300)).await?;
    fresh
        .pump_until("the update, given back by the receiver", T, |p| {
            p.text("doc.txt") == "relayed, then lost by the hub"
        })
        .await?;
    Ok(())
}
