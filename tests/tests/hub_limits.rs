//! The hub under abuse, with the real binary: a peer flooding updates is
//! slowed down (told so, nothing lost) while the others' edits still get
//! through promptly; a thousand wrong passwords in a row are mostly refused
//! without being tried, and the right one works once the back-off is over;
//! unknown tokens back an address off; connections per address are capped.

use std::time::{Duration, Instant};

use serde_json::json;
use weft_tests::{Auth, HubProcess, WeftPeer};

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_peer_is_slowed_while_the_others_keep_editing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = HubProcess::start_with(dir.path(), &["--rate-frames", "400", "--burst-frames", "100"])?;
    let (session, owner) = hub.create_session("flood").await?;
    let base = hub.ws_base();
    let mut flooder = WeftPeer::join(&base, &session, &owner, 1).await?;
    let mut a = WeftPeer::join(&base, &session, &owner, 2).await?;
    let mut b = WeftPeer::join(&base, &session, &owner, 3).await?;
    let mut reader = WeftPeer::join(&base, &session, &owner, 4).await?;
    for p in [&mut a, &mut b] {
        p.subscribe("calm.txt").await?;
    }
    reader.subscribe("flood.txt").await?;
    flooder.subscribe("flood.txt").await?;

    // 2,000 single-character updates as fast as the socket takes them:
    // five seconds' worth at 400 frames/s.
    const FLOOD: usize = 2000;
    let flooding = tokio::spawn(async move {
        for i in 0..FLOOD {
            flooder.insert("flood.txt", i, "x").await?;
        }
        anyhow::Ok(flooder)
    });
    // Meanwhile A's edits reach B promptly, one after another.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut slowest = Duration::ZERO;
    for i in 0..10 {
        let started = Instant::now();
        a.insert("calm.txt", i, "a").await?;
        b.pump_until("A's edit", T, |b| b.char_len("calm.txt") == i + 1).await?;
        slowest = slowest.max(started.elapsed());
    }
    // "Promptly": far below the seconds the flood is held back.
    assert!(slowest < Duration::from_secs(2), "an edit took {slowest:?} to cross a hub under flood");

    let mut flooder = flooding.await??;
    flooder.pump_until("the rate_limited notice", T, |f| f.errors.iter().any(|e| e["code"] == "rate_limited")).await?;
    // Nothing was lost: every flooded character arrives, and is durable.
    reader.pump_until("the whole flood", T, |r| r.char_len("flood.txt") == FLOOD).await?;
    flooder.wait_acked().await?;
    let (_, metrics) = weft_tests::http(hub.addr, "GET", "/metrics", None, &[], None).await?;
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    let throttled = metrics
        .lines()
        .find_map(|l| l.strip_prefix("weft_peers_throttled_total "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(throttled > 0, "the hub never slowed the flooder:\n{metrics}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_back_off_and_the_right_one_works_after() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = HubProcess::start_with(dir.path(), &["--auth-backoff-max", "2"])?;
    let (session, owner) = hub.create_session("guarded").await?;
    let link = hub.create_link(&session, &owner, json!({"role": "editor", "password": "open sesame"})).await?;
    let token = link["token"].as_str().unwrap_or_default().to_owned();
    let path = format!("/api/sessions/{session}");

    let started = Instant::now();
    let (mut tried, mut refused) = (0, 0);
    for i in 0..1000 {
        let guess = format!("guess {i}");
        let (status, body) =
            weft_tests::http(hub.addr, "GET", &path, Some(&token), &[("X-Weft-Password", &guess)], None).await?;
        match (status, body["error"]["code"].as_str()) {
            (401, Some("bad_password")) => tried += 1,
            (429, Some("rate_limited")) => refused += 1,
            other => anyhow::bail!("unexpected answer to a wrong password: {other:?} {body}"),
        }
    }
    let elapsed = started.elapsed();
    // Each real try doubles the wait (from 250 ms, at most 2 s here): in
    // the time the loop took, only a handful could be looked at at all.
    let budget = 5 + 1 + (elapsed.as_secs_f64() / 0.25) as usize;
    assert!(tried <= budget.min(60), "{tried} of 1000 guesses were checked in {elapsed:?} ({refused} refused)");
    assert!(refused >= 900, "only {refused} of 1000 guesses were refused outright");

    // The right password during the back-off is refused too (nothing is
    // looked at), then works once it is over.
    let right = [("X-Weft-Password", "open sesame")];
    let (status, body) = weft_tests::http(hub.addr, "GET", &path, Some(&token), &right, None).await?;
    assert_eq!((status, body["error"]["code"].as_str()), (429, Some("rate_limited")), "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("try again in"), "{message}");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = weft_tests::http(hub.addr, "GET", &path, Some(&token), &right, None).await?;
    assert_eq!(status, 200, "{body}");
    // The same over the WebSocket, which shares the back-off.
    let ok = WeftPeer::connect(
        &hub.ws_base(),
        &session,
        Auth { token: &token, password: Some("open sesame"), name: "p", ..Auth::default() },
        7,
    )
    .await?;
    assert!(ok.is_ok(), "{:?}", ok.err());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tokens_back_an_address_off_and_connections_are_capped() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = HubProcess::start_with(dir.path(), &["--auth-backoff-max", "1", "--max-connections-per-ip", "3"])?;
    let (session, owner) = hub.create_session("capped").await?;
    let base = hub.ws_base();

    // Guessing tokens: after a few, the address waits before any is looked at.
    let mut codes = Vec::new();
    for i in 0..12 {
        let token = format!("guessed-token-{i:020}");
        let res = WeftPeer::connect(&base, &session, Auth { token: &token, name: "g", ..Auth::default() }, 1).await?;
        let closed = res.err().ok_or_else(|| anyhow::anyhow!("a guessed token was accepted"))?;
        codes.push(closed.last_error.map(|e| e["code"].as_str().unwrap_or_default().to_owned()).unwrap_or_default());
    }
    assert_eq!(codes.iter().filter(|c| *c == "unauthorized").count(), 6, "{codes:?}");
    assert!(codes[6..].iter().all(|c| c == "rate_limited"), "{codes:?}");
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Three connections from one address, not a fourth; one closes, one more fits.
    let mut peers = Vec::new();
    for i in 0..3 {
        peers.push(WeftPeer::join(&base, &session, &owner, 10 + i).await?);
    }
    let fourth = WeftPeer::connect(&base, &session, Auth { token: &owner, name: "4", ..Auth::default() }, 20).await?;
    let closed = fourth.err().ok_or_else(|| anyhow::anyhow!("a fourth connection was accepted"))?;
    assert_eq!(closed.code, Some(4429), "{closed:?}");
    assert_eq!(closed.last_error.as_ref().map(|e| e["code"].clone()), Some(json!("limit_reached")), "{closed:?}");
    let message = closed.last_error.as_ref().and_then(|e| e["message"].as_str()).unwrap_or_default().to_owned();
    assert!(message.contains("--max-connections-per-ip"), "{message}");
    if let Some(p) = peers.pop() {
        p.close().await;
    }
    let again = async {
        loop {
            match WeftPeer::connect(&base, &session, Auth { token: &owner, name: "5", ..Auth::default() }, 21).await? {
                Ok(peer) => return anyhow::Ok(peer),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), again).await??;
    Ok(())
}

/// A peer that stops reading is disconnected as `overloaded` once its queue
/// at the hub is full, without holding the writer back or losing anything:
/// it reconnects and resyncs to the same text as a peer that joins fresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_is_cut_off_and_resyncs_everything() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = HubProcess::start_with(dir.path(), &["--peer-queue", "64"])?;
    let (session, owner) = hub.create_session("stall").await?;
    let base = hub.ws_base();
    let mut writer = WeftPeer::join(&base, &session, &owner, 1).await?;
    let mut stalled = WeftPeer::join(&base, &session, &owner, 2).await?;
    writer.subscribe("big.txt").await?;
    stalled.subscribe("big.txt").await?;
    writer.pump_for(Duration::from_millis(200)).await?;
    stalled.pump_for(Duration::from_millis(200)).await?;

    // 8 MB in 16 KiB updates: more than the loopback socket buffers hold
    // between the hub and a peer that does not read (~4 MB send buffer,
    // a receive buffer that does not grow without reads).
    const CHUNKS: usize = 512;
    const CHUNK: usize = 16 * 1024;
    for i in 0..CHUNKS {
        let text = format!("{i:08}").repeat(CHUNK / 8);
        writer.send_doc("big.txt", &weft_tests::y_insert_message(1000 + i as u64, &text)).await?;
    }
    writer.pump_for(Duration::from_millis(100)).await?;

    let closed = stalled.wait_closed(T).await?;
    assert_eq!(closed.code, Some(4429), "{closed:?}");
    assert_eq!(closed.last_error.as_ref().map(|e| e["code"].clone()), Some(json!("overloaded")), "{closed:?}");
    let message = closed.last_error.as_ref().and_then(|e| e["message"].as_str()).unwrap_or_default().to_owned();
    assert!(message.contains("reconnect"), "{message}");

    stalled.reconnect(&base, &session, &owner).await?;
    stalled.pump_until("the whole text", T, |p| p.char_len("big.txt") == CHUNKS * CHUNK).await?;
    let mut fresh = WeftPeer::join(&base, &session, &owner, 3).await?;
    fresh.subscribe("big.txt").await?;
    fresh.pump_until("the whole text", T, |p| p.char_len("big.txt") == CHUNKS * CHUNK).await?;
    assert!(stalled.text("big.txt") == fresh.text("big.txt"), "the resynced peer's text differs from a fresh peer's");
    // The writer did not read either while it sent, but its acks are merged
    // (one per group commit), so its queue never filled.
    writer.pump_for(Duration::from_millis(200)).await?;
    assert!(writer.closed.is_none(), "the writer was disconnected: {:?}", writer.closed);

    let (_, metrics) = weft_tests::http(hub.addr, "GET", "/metrics", None, &[], None).await?;
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    let overloaded = metrics.lines().find_map(|l| l.strip_prefix("weft_peers_overloaded_total "));
    assert_eq!(overloaded.map(str::trim), Some("1"), "{metrics}");
    Ok(())
}
