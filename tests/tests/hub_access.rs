//! Access control through the real hub: every role × endpoint × operation,
//! expiry, revocation (which kicks connected peers) and passwords.

use std::time::Duration;

use serde_json::json;
use weft_tests::{Auth, HubProcess, WeftPeer, YPeer, http, y_insert_message};

const T: Duration = Duration::from_secs(30);

/// The callers every cell is checked for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Who {
    Admin,
    Owner,
    Editor,
    Viewer,
    Agent,
    NoToken,
    Unknown,
    OtherSession,
    Revoked,
}

const EVERYONE: [Who; 9] = [
    Who::Admin,
    Who::Owner,
    Who::Editor,
    Who::Viewer,
    Who::Agent,
    Who::NoToken,
    Who::Unknown,
    Who::OtherSession,
    Who::Revoked,
];

struct Fixture {
    hub: HubProcess,
    session: String,
    owner: String,
    tokens: Vec<(Who, Option<String>)>,
}

async fn fixture(dir: &std::path::Path) -> anyhow::Result<Fixture> {
    // The matrix sends unknown tokens on purpose, many times: the sign-in
    // back-off (tested in hub_limits.rs) must not get in its way.
    let hub = HubProcess::start_with(dir, &["--auth-free-failures", "100000"])?;
    let (session, owner) = hub.create_session("access").await?;
    let (_, other_owner) = hub.create_session("other").await?;
    let mut tokens = vec![(Who::Admin, Some(hub.admin.clone())), (Who::Owner, Some(owner.clone()))];
    for (who, role) in [(Who::Editor, "editor"), (Who::Viewer, "viewer"), (Who::Agent, "agent")] {
        let link = hub.create_link(&session, &owner, json!({"role": role})).await?;
        tokens.push((who, link["token"].as_str().map(str::to_owned)));
    }
    let revoked = hub.create_link(&session, &owner, json!({"role": "editor"})).await?;
    let path = format!("/api/sessions/{session}/links/{}", revoked["id"].as_str().unwrap_or_default());
    let (status, _) = http(hub.addr, "DELETE", &path, Some(&owner), &[], None).await?;
    assert_eq!(status, 204);
    tokens.push((Who::NoToken, None));
    tokens.push((Who::Unknown, Some("definitely-not-a-token".into())));
    tokens.push((Who::OtherSession, Some(other_owner)));
    tokens.push((Who::Revoked, revoked["token"].as_str().map(str::to_owned)));
    Ok(Fixture { hub, session, owner, tokens })
}

impl Fixture {
    fn token(&self, who: Who) -> Option<&str> {
        self.tokens.iter().find(|(w, _)| *w == who).and_then(|(_, t)| t.as_deref())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_rights_for_every_role() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let f = fixture(dir.path()).await?;
    let s = &f.session;
    use Who::*;
    // (method, path, body, expected status per caller in EVERYONE order)
    let cells: Vec<(&str, String, Option<String>, [u16; 9])> = vec![
        (
            "POST",
            "/api/sessions".into(),
            Some(json!({"name": "n"}).to_string()),
            [201, 403, 403, 403, 403, 401, 401, 403, 401],
        ),
        ("GET", "/api/sessions".into(), None, [200, 200, 200, 200, 200, 401, 401, 200, 401]),
        ("GET", format!("/api/sessions/{s}"), None, [200, 200, 200, 200, 200, 401, 401, 403, 401]),
        ("GET", format!("/api/sessions/{s}/participants"), None, [200, 200, 200, 200, 200, 401, 401, 403, 401]),
        ("GET", format!("/api/sessions/{s}/events"), None, [200, 200, 403, 403, 403, 401, 401, 403, 401]),
        (
            "POST",
            format!("/api/sessions/{s}/links"),
            Some(json!({"role": "viewer"}).to_string()),
            [201, 201, 403, 403, 403, 401, 401, 403, 401],
        ),
        ("DELETE", format!("/api/sessions/{s}/links/nosuchlink"), None, [404, 404, 403, 403, 403, 401, 401, 403, 401]),
    ];
    for (method, path, body, expected) in &cells {
        for (who, want) in EVERYONE.iter().zip(expected) {
            let (status, resp) = http(f.hub.addr, method, path, f.token(*who), &[], body.as_deref()).await?;
            assert_eq!(status, *want, "{method} {path} as {who:?}: {resp}");
            if status >= 400 {
                assert!(resp["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "error body: {resp}");
            }
        }
    }
    // The role the session view reports.
    for (who, role) in [(Admin, "owner"), (Owner, "owner"), (Editor, "editor"), (Viewer, "viewer"), (Agent, "agent")] {
        let (_, view) = http(f.hub.addr, "GET", &format!("/api/sessions/{s}"), f.token(who), &[], None).await?;
        assert_eq!(view["role"], role, "{who:?}");
    }
    // A link token lists only its own session; the admin sees all three.
    let (_, list) = http(f.hub.addr, "GET", "/api/sessions", f.token(Editor), &[], None).await?;
    assert_eq!(list["sessions"].as_array().map(Vec::len), Some(1));
    let (_, list) = http(f.hub.addr, "GET", "/api/sessions", f.token(Admin), &[], None).await?;
    assert_eq!(list["sessions"].as_array().map(Vec::len), Some(3));

    // Deleting: refused for non-owners, allowed for the owner; then gone.
    for who in [Editor, Viewer, Agent, OtherSession] {
        let (status, _) = http(f.hub.addr, "DELETE", &format!("/api/sessions/{s}"), f.token(who), &[], None).await?;
        assert_eq!(status, 403, "{who:?}");
    }
    let (status, _) = http(f.hub.addr, "DELETE", &format!("/api/sessions/{s}"), f.token(Owner), &[], None).await?;
    assert_eq!(status, 204);
    let (status, _) = http(f.hub.addr, "GET", &format!("/api/sessions/{s}"), f.token(Admin), &[], None).await?;
    assert_eq!(status, 404);
    let (status, _) = http(f.hub.addr, "GET", &format!("/api/sessions/{s}"), f.token(Editor), &[], None).await?;
    assert_eq!(status, 401, "links of a deleted session stop working");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_rights_for_every_role_on_both_endpoints() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let f = fixture(dir.path()).await?;
    let base = f.hub.ws_base();
    use Who::*;
    let mut watcher = WeftPeer::join(&base, &f.session, &f.owner, 1).await?;
    watcher.subscribe("doc.txt").await?;
    for (n, who) in EVERYONE.iter().enumerate() {
        let token = f.token(*who).unwrap_or("");
        let marker = format!("[ws-{who:?}]");
        let client = 100 + n as u64;
        let result = WeftPeer::connect(&base, &f.session, Auth { token, name: "x", ..Auth::default() }, client).await?;
        let expect_close = match who {
            NoToken | Unknown | Revoked => Some(4401),
            OtherSession => Some(4403),
            _ => None,
        };
        match (result, expect_close) {
            (Err(closed), Some(code)) => {
                assert_eq!(closed.code, Some(code), "{who:?}: {closed:?}");
                assert!(closed.last_error.is_some(), "{who:?}: an error frame precedes the close");
            }
            (Ok(mut peer), None) => {
                let role = peer.welcome["role"].as_str().unwrap_or_default().to_owned();
                let want = match who {
                    Admin | Owner => "owner",
                    Editor => "editor",
                    Viewer => "viewer",
                    _ => "agent",
                };
                assert_eq!(role, want);
                peer.subscribe("doc.txt").await?;
                peer.insert("doc.txt", 0, &marker).await?;
                peer.wait_acked().await?;
                if *who == Viewer {
                    assert!(peer.errors.iter().any(|e| e["code"] == "forbidden"), "viewer told: {:?}", peer.errors);
                } else {
                    watcher
                        .pump_until(&format!("{marker} relayed"), T, |w| w.text("doc.txt").contains(&marker))
                        .await?;
                }
                peer.close().await;
            }
            (other, _) => panic!("{who:?}: unexpected {:?}", other.map(|p| p.welcome.clone())),
        }
    }

    // The same on plain y-websocket.
    for (n, who) in EVERYONE.iter().enumerate() {
        let query = f.token(*who).map(|t| format!("token={t}")).unwrap_or_default();
        let marker = format!("[y-{who:?}]");
        match (YPeer::connect(&base, &f.session, "doc.txt", &query).await?, who) {
            (Err(closed), NoToken | Unknown | Revoked) => assert_eq!(closed.code, Some(4401), "{who:?}"),
            (Err(closed), OtherSession) => assert_eq!(closed.code, Some(4403), "{who:?}"),
            (Ok(mut y), Admin | Owner | Editor | Viewer | Agent) => {
                y.send(y_insert_message(500 + n as u64, &marker)).await?;
                if *who == Viewer {
                    // The refusal comes as a y-protocols auth message (tag 2).
                    y.pump_until(T, |p| p.received.iter().any(|m| m.first() == Some(&2))).await?;
                } else {
                    watcher
                        .pump_until(&format!("{marker} relayed"), T, |w| w.text("doc.txt").contains(&marker))
                        .await?;
                }
            }
            (other, _) => panic!("{who:?}: unexpected {:?}", other.map(|p| p.received.len())),
        }
    }
    // Nothing any viewer sent was applied, and the watcher saw every writer.
    watcher.pump_for(Duration::from_millis(200)).await?;
    let text = watcher.text("doc.txt");
    assert!(!text.contains("Viewer"), "a viewer's write got through: {text}");
    for who in ["Admin", "Owner", "Editor", "Agent"] {
        assert!(
            text.contains(&format!("[ws-{who}]")) && text.contains(&format!("[y-{who}]")),
            "{who} missing in {text}"
        );
    }
    // A fresh peer (after the hub relayed and stored everything) agrees.
    let mut fresh = WeftPeer::join(&base, &f.session, &f.owner, 2).await?;
    fresh.subscribe("doc.txt").await?;
    fresh.pump_until("fresh peer synced", T, |p| p.text("doc.txt") == text).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_kicks_connected_peers_and_expiry_and_passwords_hold() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = HubProcess::start(dir.path())?;
    let (session, owner) = hub.create_session("revoke").await?;
    let base = hub.ws_base();

    // Revocation disconnects both kinds of peers that joined with the link.
    let link = hub.create_link(&session, &owner, json!({"role": "editor"})).await?;
    let token = link["token"].as_str().unwrap_or_default();
    let mut ws_peer = WeftPeer::join(&base, &session, token, 7).await?;
    let mut y_peer = match YPeer::connect(&base, &session, "a.txt", &format!("token={token}")).await? {
        Ok(y) => y,
        Err(c) => panic!("y connect refused: {c:?}"),
    };
    let mut bystander = WeftPeer::join(&base, &session, &owner, 8).await?;
    let path = format!("/api/sessions/{session}/links/{}", link["id"].as_str().unwrap_or_default());
    let (status, _) = http(hub.addr, "DELETE", &path, Some(&owner), &[], None).await?;
    assert_eq!(status, 204);
    let closed = ws_peer.wait_closed(T).await?;
    assert_eq!(closed.code, Some(4401));
    assert!(ws_peer.errors.iter().any(|e| e["type"] == "kick"), "{:?}", ws_peer.errors);
    y_peer.pump_until(T, |_| false).await.ok();
    assert_eq!(y_peer.closed.as_ref().and_then(|c| c.code), Some(4401));
    bystander.pump_for(Duration::from_millis(100)).await?;
    assert!(bystander.closed.is_none(), "the owner's connection is untouched");
    let (status, _) = http(hub.addr, "DELETE", &path, Some(&owner), &[], None).await?;
    assert_eq!(status, 404, "revoking twice");

    // Passwords: none, wrong and right, on both endpoints and REST.
    let link = hub.create_link(&session, &owner, json!({"role": "editor", "password": "s3cret ✓"})).await?;
    assert_eq!(link["password"], true);
    let token = link["token"].as_str().unwrap_or_default();
    for (password, ok) in [(None, false), (Some("wrong"), false), (Some("s3cret ✓"), true)] {
        let res = WeftPeer::connect(&base, &session, Auth { token, password, name: "p", ..Auth::default() }, 9).await?;
        match res {
            Ok(peer) => {
                assert!(ok, "{password:?} accepted");
                peer.close().await;
            }
            Err(closed) => {
                assert!(!ok, "{password:?} refused: {closed:?}");
                assert_eq!(closed.code, Some(4401));
                assert_eq!(closed.last_error.as_ref().map(|e| e["code"].clone()), Some(json!("bad_password")));
            }
        }
    }
    let q = format!("token={token}&password=wrong");
    assert_eq!(YPeer::connect(&base, &session, "a.txt", &q).await?.err().and_then(|c| c.code), Some(4401));
    let q = format!("token={token}&password=s3cret%20%E2%9C%93");
    assert!(YPeer::connect(&base, &session, "a.txt", &q).await?.is_ok());
    let get = format!("/api/sessions/{session}");
    assert_eq!(http(hub.addr, "GET", &get, Some(token), &[], None).await?.0, 401);
    assert_eq!(http(hub.addr, "GET", &get, Some(token), &[("X-Weft-Password", "s3cret ✓")], None).await?.0, 200);

    // Expiry: a link that expires in 1 s works now and not after.
    let link = hub.create_link(&session, &owner, json!({"role": "viewer", "expires_in_s": 1})).await?;
    let token = link["token"].as_str().unwrap_or_default();
    assert_eq!(http(hub.addr, "GET", &get, Some(token), &[], None).await?.0, 200);
    let mut expiring = WeftPeer::join(&base, &session, token, 11).await?;
    // Waiting for wall-clock time itself, not for a condition.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let closed = expiring.wait_closed(T).await?;
    assert_eq!(closed.code, Some(4401), "a connected peer is cut off when its link expires: {closed:?}");
    assert_eq!(http(hub.addr, "GET", &get, Some(token), &[], None).await?.0, 401);
    let res = WeftPeer::connect(&base, &session, Auth { token, name: "late", ..Auth::default() }, 10).await?;
    assert_eq!(res.err().and_then(|c| c.code), Some(4401));

    // Every one of these is in the audit log.
    let (status, page) =
        http(hub.addr, "GET", &format!("/api/sessions/{session}/events?limit=1000"), Some(&owner), &[], None).await?;
    assert_eq!(status, 200);
    let kinds: Vec<&str> =
        page["events"].as_array().map(|a| a.iter().filter_map(|e| e["kind"].as_str()).collect()).unwrap_or_default();
    for kind in ["session.created", "link.created", "link.revoked", "peer.joined", "peer.left", "access.denied"] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    // Paging with the cursor returns the rest, in order, without repeats.
    let first = page["events"][0]["id"].as_i64().unwrap_or_default();
    let (_, rest) = http(
        hub.addr,
        "GET",
        &format!("/api/sessions/{session}/events?after={first}&limit=2"),
        Some(&owner),
        &[],
        None,
    )
    .await?;
    assert_eq!(rest["events"].as_array().map(Vec::len), Some(2));
    assert!(rest["events"][0]["id"].as_i64() > Some(first));
    assert_eq!(rest["next"], rest["events"][1]["id"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_sessions_are_readable_without_a_token_but_never_writable() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = HubProcess::start(dir.path())?;
    let body = json!({"name": "open house", "public": true}).to_string();
    let (status, created) = http(hub.addr, "POST", "/api/sessions", Some(&hub.admin), &[], Some(&body)).await?;
    assert_eq!(status, 201);
    let session = created["id"].as_str().unwrap_or_default().to_owned();
    let owner = created["owner"]["token"].as_str().unwrap_or_default().to_owned();
    assert!(created["owner"]["url"].as_str().is_some_and(|u| u.starts_with("weft://") && u.ends_with(&owner)));

    let (status, view) = http(hub.addr, "GET", &format!("/api/sessions/{session}"), None, &[], None).await?;
    assert_eq!((status, view["role"].as_str()), (200, Some("viewer")));
    let (status, _) = http(hub.addr, "GET", &format!("/api/sessions/{session}/events"), None, &[], None).await?;
    assert_eq!(status, 401, "the audit log is not public");

    let base = hub.ws_base();
    let mut writer = WeftPeer::join(&base, &session, &owner, 1).await?;
    writer.subscribe("r.md").await?;
    writer.insert("r.md", 0, "# hello").await?;
    writer.wait_acked().await?;
    let mut anon =
        match WeftPeer::connect(&base, &session, Auth { token: "", name: "guest", ..Auth::default() }, 2).await? {
            Ok(p) => p,
            Err(c) => panic!("anonymous viewer refused: {c:?}"),
        };
    assert_eq!(anon.welcome["role"], "viewer");
    anon.subscribe("r.md").await?;
    anon.pump_until("anonymous viewer synced", T, |p| p.text("r.md") == "# hello").await?;
    anon.insert("r.md", 0, "defaced ").await?;
    anon.pump_until("refusal", T, |p| p.errors.iter().any(|e| e["code"] == "forbidden")).await?;

    // The participants list shows both, with names and roles.
    let (status, list) =
        http(hub.addr, "GET", &format!("/api/sessions/{session}/participants"), Some(&owner), &[], None).await?;
    assert_eq!(status, 200);
    let names: Vec<(String, String)> = list["participants"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| (p["name"].as_str().unwrap_or("").into(), p["role"].as_str().unwrap_or("").into()))
                .collect()
        })
        .unwrap_or_default();
    assert!(names.contains(&("guest".into(), "viewer".into())), "{names:?}");
    assert!(names.contains(&("peer".into(), "owner".into())), "{names:?}");

    writer.pump_for(Duration::from_millis(100)).await?;
    assert_eq!(writer.text("r.md"), "# hello");
    Ok(())
}
