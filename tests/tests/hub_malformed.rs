//! Bad input on every endpoint gets a clear error, never a crash, and
//! never costs another peer its data.

use std::time::Duration;

use serde_json::json;
use weft_tests::{Auth, HubProcess, WeftPeer, YPeer, http, http_raw};

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_refuses_garbage_with_json_errors() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut hub = HubProcess::start(dir.path())?;
    let (session, owner) = hub.create_session("bad rest").await?;
    let admin = hub.admin.clone();
    let links = format!("/api/sessions/{session}/links");
    // (method, path, token, body, status, error code)
    type Case<'a> = (&'a str, String, Option<&'a str>, &'a [u8], u16, &'a str);
    let cases: Vec<Case> = vec![
        ("POST", "/api/sessions".into(), Some(&admin), b"{not json", 400, "malformed"),
        ("POST", "/api/sessions".into(), Some(&admin), b"", 400, "malformed"),
        ("POST", "/api/sessions".into(), Some(&admin), br#"{"name": 5}"#, 400, "malformed"),
        ("POST", "/api/sessions".into(), Some(&admin), br#"{"name": "x", "extra": 1}"#, 400, "malformed"),
        ("POST", "/api/sessions".into(), Some(&admin), br#"{"name": "   "}"#, 400, "malformed"),
        ("POST", "/api/sessions".into(), Some(&admin), b"\xff\xfe\x00garbage", 400, "malformed"),
        ("POST", links.clone(), Some(&owner), br#"{"role": "king"}"#, 400, "malformed"),
        ("POST", links.clone(), Some(&owner), br#"{"role": "viewer", "expires_in_s": 0}"#, 400, "malformed"),
        ("POST", links.clone(), Some(&owner), br#"{"role": "viewer", "expires_in_s": -5}"#, 400, "malformed"),
        ("POST", links.clone(), Some(&owner), br#"{"role": "viewer", "password": ""}"#, 400, "malformed"),
        ("GET", "/api/sessions/nosuchsession".into(), Some(&admin), b"", 404, "not_found"),
        ("GET", "/api/sessions/..%2F..%2Fetc".into(), Some(&admin), b"", 404, "not_found"),
        ("GET", "/api/sessions/%00".into(), Some(&admin), b"", 404, "not_found"),
        ("DELETE", "/api/sessions/nosuchsession".into(), Some(&admin), b"", 404, "not_found"),
        ("GET", format!("/api/sessions/{session}/events?after=abc"), Some(&owner), b"", 400, "malformed"),
        ("GET", format!("/api/sessions/{session}/events?limit=0"), Some(&owner), b"", 400, "malformed"),
        ("GET", format!("/api/sessions/{session}/events?limit=99999"), Some(&owner), b"", 400, "malformed"),
        ("GET", "/api/nope".into(), Some(&admin), b"", 404, "not_found"),
        ("PUT", "/api/sessions".into(), Some(&admin), b"{}", 405, "malformed"),
        ("GET", "/api/sessions".into(), Some("x y z"), b"", 401, "unauthorized"),
    ];
    for (method, path, token, body, status, code) in cases {
        let (got, raw) = http_raw(hub.addr, method, &path, token, &[], Some(body)).await?;
        let resp: serde_json::Value = serde_json::from_slice(&raw).unwrap_or(json!(String::from_utf8_lossy(&raw)));
        assert_eq!(got, status, "{method} {path} {:?}: {resp}", String::from_utf8_lossy(body));
        assert_eq!(resp["error"]["code"], code, "{method} {path}: {resp}");
        assert!(resp["error"]["message"].as_str().is_some_and(|m| m.len() > 5), "{resp}");
    }
    // A header that is not `Bearer ...`.
    let (status, _) =
        http(hub.addr, "GET", "/api/sessions", None, &[("Authorization", "Basic Zm9vOmJhcg==")], None).await?;
    assert_eq!(status, 401);
    // Still healthy, and metrics speak Prometheus.
    let (status, health) = http(hub.addr, "GET", "/healthz", None, &[], None).await?;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let (status, metrics) = http_raw(hub.addr, "GET", "/metrics", None, &[], None).await?;
    let metrics = String::from_utf8_lossy(&metrics);
    assert_eq!(status, 200);
    for name in [
        "weft_connections",
        "weft_sessions_loaded",
        "weft_docs_loaded",
        "weft_updates_total",
        "weft_bytes_in_total",
        "weft_bytes_out_total",
    ] {
        assert!(metrics.contains(&format!("# TYPE {name} ")), "{name} missing:\n{metrics}");
    }
    assert!(hub.is_running());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_garbage_is_refused_and_nobody_loses_anything() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut hub = HubProcess::start_with(dir.path(), &["--max-frame-bytes", "65536"])?;
    let (session, owner) = hub.create_session("bad ws").await?;
    let base = hub.ws_base();

    // A well-behaved peer with data, watching throughout.
    let mut good = WeftPeer::join(&base, &session, &owner, 1).await?;
    good.subscribe("a.rs").await?;
    good.insert("a.rs", 0, "fn main() {}").await?;
    good.wait_acked().await?;

    // Handshake failures: each gets an error frame and a close code.
    let raw = |first: tokio_tungstenite::tungstenite::Message| {
        let url = format!("{base}/ws/{session}");
        async move {
            use futures_util::{SinkExt, StreamExt};
            let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
            ws.send(first).await?;
            let mut error = None;
            while let Some(msg) = tokio::time::timeout(T, ws.next()).await? {
                match msg? {
                    tokio_tungstenite::tungstenite::Message::Text(t) => {
                        error = Some(serde_json::from_str::<serde_json::Value>(t.as_str())?)
                    }
                    tokio_tungstenite::tungstenite::Message::Close(f) => {
                        return anyhow::Ok((f.map(|f| u16::from(f.code)), error));
                    }
                    _ => {}
                }
            }
            anyhow::Ok((None, error))
        }
    };
    use tokio_tungstenite::tungstenite::Message as M;
    for (first, code, err) in [
        (M::Binary(vec![1, 2, 3].into()), 4400, "malformed"),
        (M::Text("{not json".into()), 4400, "malformed"),
        (M::Text(r#"{"type":"unsubscribe","doc":"a"}"#.into()), 4400, "malformed"),
        (M::Text(json!({"type":"auth","token":owner,"name":"","protocol":1}).to_string().into()), 4400, "malformed"),
        (
            M::Text(json!({"type":"auth","token":owner,"name":"x","protocol":999}).to_string().into()),
            4426,
            "version_mismatch",
        ),
    ] {
        let (got, error) = raw(first.clone()).await?;
        assert_eq!(got, Some(code), "{first:?}: {error:?}");
        assert_eq!(error.as_ref().map(|e| e["code"].clone()), Some(json!(err)), "{first:?}");
    }
    let res =
        WeftPeer::connect(&base, "no-such-session", Auth { token: &owner, name: "x", ..Auth::default() }, 5).await?;
    assert_eq!(res.err().and_then(|c| c.code), Some(4404));
    let res = WeftPeer::connect(&base, "..", Auth { token: &owner, name: "x", ..Auth::default() }, 5).await;
    assert!(res.map(|r| r.is_err()).unwrap_or(true), "a hostile session id never joins");

    // After auth: garbage frames get error frames and the connection lives on.
    let mut bad = WeftPeer::join(&base, &session, &owner, 2).await?;
    let mut hostile_prefix = vec![4];
    hostile_prefix.extend_from_slice(b"../x");
    hostile_prefix.extend_from_slice(&[0, 0, 0]);
    let mut bad_message = vec![4];
    bad_message.extend_from_slice(b"a.rs");
    bad_message.extend_from_slice(&[0, 2, 200, 1, 2]); // update claiming 200 bytes
    let mut bad_update = vec![4];
    bad_update.extend_from_slice(b"a.rs");
    bad_update.extend_from_slice(&[0, 2, 5, 0xff, 0xff, 0xff, 0xff, 0xff]);
    for frame in [vec![], vec![0xff], vec![200, 1], hostile_prefix, bad_message, bad_update] {
        bad.send_binary(frame).await?;
    }
    bad.send_text("{\"type\":\"dance\"}").await?;
    bad.send_text("not json at all").await?;
    let n_errors = 8;
    bad.pump_until("an error frame per bad frame", T, |p| p.errors.len() >= n_errors).await?;
    assert!(bad.errors.iter().all(|e| e["code"] == "malformed"), "{:?}", bad.errors);
    assert!(
        bad.errors.iter().any(|e| e["message"].as_str().is_some_and(|m| m.contains("segment"))),
        "{:?}",
        bad.errors
    );
    // ...and still works.
    bad.subscribe("a.rs").await?;
    bad.pump_until("still synced", T, |p| p.text("a.rs") == "fn main() {}").await?;
    bad.insert("a.rs", 0, "// ok\n").await?;
    bad.wait_acked().await?;

    // An oversized frame closes that connection with 1009, nobody else's.
    let mut big = WeftPeer::join(&base, &session, &owner, 3).await?;
    big.subscribe("a.rs").await?;
    big.pump_for(Duration::from_millis(50)).await?;
    big.insert("a.rs", 0, &"x".repeat(100_000)).await?;
    let closed = big.wait_closed(T).await?;
    // The kick frame names the reason; the 1009 close may be lost to a TCP
    // reset while the client is still sending the oversized frame.
    assert!(matches!(closed.code, Some(1009) | None), "{closed:?}");
    assert_eq!(closed.last_error.as_ref().map(|e| e["code"].clone()), Some(json!("too_large")), "{closed:?}");

    // Plain y-websocket: hostile doc paths and unknown sessions.
    let q = format!("token={owner}");
    assert_eq!(YPeer::connect(&base, &session, "..%2Fescape", &q).await?.err().and_then(|c| c.code), Some(4400));
    assert_eq!(YPeer::connect(&base, "nosuch", "a.rs", &q).await?.err().and_then(|c| c.code), Some(4404));
    let mut y = match YPeer::connect(&base, &session, "a.rs", &q).await? {
        Ok(y) => y,
        Err(c) => panic!("{c:?}"),
    };
    y.send(vec![0, 2, 9, 1]).await?;
    y.pump_until(T, |_| false).await.ok();
    assert_eq!(y.closed.and_then(|c| c.code), Some(4400), "a malformed y-websocket message closes with 4400");

    // The good peer kept everything and saw the one valid edit.
    good.pump_until("good peer sees the valid edit", T, |p| p.text("a.rs") == "// ok\nfn main() {}").await?;
    assert!(good.closed.is_none());
    assert!(good.errors.is_empty(), "{:?}", good.errors);
    assert!(hub.is_running(), "hub crashed:\n{}", hub.log());
    assert!(!hub.log().contains("panicked"), "hub log shows a panic:\n{}", hub.log());
    Ok(())
}
