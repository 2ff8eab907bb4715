//! Live role changes and removal, with the real binary: an editor demoted
//! to viewer can no longer write from its very next frame (and is told),
//! promoted back it writes again; a link's role change applies to its
//! connected peers at once and to whoever joins with it later; an owner
//! can remove a participant; only owners may do any of it, and the audit
//! log records each change.

use std::time::Duration;

use serde_json::json;
use weft_tests::{HubProcess, WeftPeer, http};

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_change_roles_live_and_remove_participants() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = HubProcess::start(dir.path())?;
    let (session, owner) = hub.create_session("roles").await?;
    let link = hub.create_link(&session, &owner, json!({"role": "editor"})).await?;
    let (link_id, token) = (link["id"].as_str().unwrap_or_default(), link["token"].as_str().unwrap_or_default());
    let base = hub.ws_base();
    let mut watcher = WeftPeer::join(&base, &session, &owner, 1).await?;
    let mut editor = WeftPeer::join(&base, &session, token, 2).await?;
    watcher.subscribe("f.txt").await?;
    editor.subscribe("f.txt").await?;
    editor.insert("f.txt", 0, "one ").await?;
    watcher.pump_until("the editor's first edit", T, |w| w.text("f.txt") == "one ").await?;
    let peer = editor.welcome["peer"].as_u64().unwrap_or_default();
    let path = format!("/api/sessions/{session}/participants/{peer}");

    // Only owners; never to owner.
    let (status, body) = http(hub.addr, "PATCH", &path, Some(token), &[], Some(r#"{"role":"viewer"}"#)).await?;
    assert_eq!(status, 403, "{body}");
    let (status, body) = http(hub.addr, "PATCH", &path, Some(&owner), &[], Some(r#"{"role":"owner"}"#)).await?;
    assert_eq!(status, 400, "{body}");
    let (status, body) = http(hub.addr, "PATCH", &path, Some(&owner), &[], Some(r#"{"role":"boss"}"#)).await?;
    assert_eq!(status, 400, "{body}");

    // Demoted: told at once, and the next write is refused.
    let (status, body) = http(hub.addr, "PATCH", &path, Some(&owner), &[], Some(r#"{"role":"viewer"}"#)).await?;
    assert_eq!((status, body["role"].as_str()), (200, Some("viewer")), "{body}");
    editor
        .pump_until("the role frame", T, |e| e.controls.iter().any(|c| c["type"] == "role" && c["role"] == "viewer"))
        .await?;
    editor.insert("f.txt", 4, "two ").await?;
    editor.pump_until("the refusal", T, |e| e.errors.iter().any(|e| e["code"] == "forbidden")).await?;
    let (_, list) =
        http(hub.addr, "GET", &format!("/api/sessions/{session}/participants"), Some(&owner), &[], None).await?;
    let listed = list["participants"].as_array().and_then(|a| a.iter().find(|p| p["peer"] == peer).cloned());
    assert_eq!(listed.map(|p| p["role"].clone()), Some(json!("viewer")), "{list}");

    // Promoted back: writes again (the refused edit stays refused).
    http(hub.addr, "PATCH", &path, Some(&owner), &[], Some(r#"{"role":"editor"}"#)).await?;
    editor
        .pump_until("the role frame", T, |e| e.controls.iter().any(|c| c["type"] == "role" && c["role"] == "editor"))
        .await?;
    let mut fresh = WeftPeer::join(&base, &session, token, 3).await?;
    fresh.subscribe("f.txt").await?;
    fresh.pump_until("the shared text", T, |f| f.text("f.txt") == "one ").await?;
    fresh.insert("f.txt", 4, "three").await?;
    watcher.pump_until("the promoted write", T, |w| w.text("f.txt") == "one three").await?;
    assert!(!watcher.text("f.txt").contains("two"), "a viewer's write got through");

    // The link itself: its peers change at once, later joiners get it too.
    let link_path = format!("/api/sessions/{session}/links/{link_id}");
    let (status, body) = http(hub.addr, "PATCH", &link_path, Some(&owner), &[], Some(r#"{"role":"viewer"}"#)).await?;
    assert_eq!((status, body["peers"].as_u64()), (200, Some(2)), "{body}");
    fresh
        .pump_until("the link's new role", T, |f| {
            f.controls.iter().any(|c| c["type"] == "role" && c["role"] == "viewer")
        })
        .await?;
    let later = WeftPeer::join(&base, &session, token, 4).await?;
    assert_eq!(later.welcome["role"], "viewer");

    // Removal: kicked with forbidden.
    let (status, body) = http(hub.addr, "DELETE", &path, Some(&owner), &[], None).await?;
    assert_eq!(status, 200, "{body}");
    let closed = editor.wait_closed(T).await?;
    assert_eq!(closed.code, Some(4403), "{closed:?}");
    let (status, _) = http(hub.addr, "DELETE", &path, Some(&owner), &[], None).await?;
    assert_eq!(status, 404, "removing someone gone");

    // Audited.
    let (_, events) =
        http(hub.addr, "GET", &format!("/api/sessions/{session}/events"), Some(&owner), &[], None).await?;
    let kinds: Vec<String> = events["events"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["kind"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    for kind in ["participant.role_changed", "link.role_changed", "participant.removed"] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} not in {kinds:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_sums_up_edits_and_public_sessions_are_listed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = HubProcess::start(dir.path())?;
    let (session, owner) = hub.create_session("audited").await?;
    let base = hub.ws_base();
    let mut peer = WeftPeer::join(&base, &session, &owner, 1).await?;
    peer.subscribe("src/a.txt").await?;
    peer.insert("src/a.txt", 0, "secret words 🦀").await?;
    peer.delete("src/a.txt", 0, 7).await?;
    peer.wait_acked().await?;
    peer.close().await;

    // The summary of the departed peer: which file, how much, never what.
    let path = format!("/api/sessions/{session}/events");
    let mut summary = None;
    for _ in 0..100 {
        let (_, events) = http(hub.addr, "GET", &path, Some(&owner), &[], None).await?;
        summary = events["events"].as_array().and_then(|a| a.iter().find(|e| e["kind"] == "edits.summary").cloned());
        if summary.is_some() {
            assert!(!events.to_string().contains("secret"), "document text in the audit log: {events}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let summary = summary.ok_or_else(|| anyhow::anyhow!("no edits.summary event"))?;
    let files = &summary["detail"]["files"];
    // "secret words 🦀" is 15 UTF-16 units; 7 were deleted.
    assert_eq!(files, &json!([{"doc": "src/a.txt", "inserted": 15, "deleted": 7}]), "{summary}");
    assert!(summary["detail"]["to_ms"].as_i64() >= summary["detail"]["from_ms"].as_i64(), "{summary}");

    // Discovery: public sessions to anyone, private ones never.
    let (status, created) = http(
        hub.addr,
        "POST",
        "/api/sessions",
        Some(&hub.admin),
        &[],
        Some(&json!({"name": "open house", "public": true}).to_string()),
    )
    .await?;
    assert_eq!(status, 201, "{created}");
    let (status, list) = http(hub.addr, "GET", "/api/sessions?public=true", None, &[], None).await?;
    assert_eq!(status, 200, "{list}");
    let names: Vec<&str> =
        list["sessions"].as_array().map(|a| a.iter().filter_map(|s| s["name"].as_str()).collect()).unwrap_or_default();
    assert_eq!(names, ["open house"], "{list}");
    assert_eq!(list["sessions"][0]["role"], "viewer");
    let (status, _) = http(hub.addr, "GET", "/api/sessions?public=maybe", None, &[], None).await?;
    assert_eq!(status, 400);

    // The same from the command line: `weft sessions` and `weft audit`.
    let weft = |args: &[&str]| {
        let out = std::process::Command::new(weft_tests::weft_bin())
            .args(args)
            .env_remove("WEFT_HUB")
            .env_remove("WEFT_HUB_TOKEN")
            .output()?;
        anyhow::ensure!(out.status.success(), "weft {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        anyhow::Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let listed = weft(&["sessions", "--hub", &base])?;
    assert!(listed.contains("open house") && !listed.contains("audited"), "{listed}");
    let owner_link = format!("weft://{}/s/{session}#{owner}", hub.addr);
    let audit = weft(&["audit", &owner_link])?;
    assert!(audit.contains("session.created") && audit.contains("edits.summary"), "{audit}");
    assert!(!audit.contains("secret"), "{audit}");
    let after_first = weft(&["audit", &session, "--hub", &base, "--token", &owner, "--after", "1", "--limit", "1"])?;
    assert_eq!(after_first.lines().count(), 1, "{after_first}");
    Ok(())
}

/// Opens `/ws/SESSION`, sends `auth` as the first frame, and returns the
/// type and code of the hub's answer (`welcome`, or the error's code).
async fn sign_in(base: &str, session: &str, auth: serde_json::Value) -> anyhow::Result<String> {
    use futures_util::{SinkExt as _, StreamExt as _};
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{base}/ws/{session}")).await?;
    ws.send(tokio_tungstenite::tungstenite::Message::Text(auth.to_string().into())).await?;
    while let Some(msg) = tokio::time::timeout(T, ws.next()).await? {
        if let tokio_tungstenite::tungstenite::Message::Text(text) = msg? {
            let v: serde_json::Value = serde_json::from_str(text.as_str())?;
            let answer = if v["type"] == "welcome" {
                "welcome".to_owned()
            } else {
                v["code"].as_str().unwrap_or("?").to_owned()
            };
            let _ = ws.close(None).await;
            return Ok(answer);
        }
    }
    anyhow::bail!("the hub closed without answering")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_with_a_maximum_of_uses_and_invitations() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = HubProcess::start(dir.path())?;
    let (session, owner) = hub.create_session("invites").await?;
    let link =
        hub.create_link(&session, &owner, json!({"role": "editor", "max_uses": 2, "invitee": "Build Bot"})).await?;
    assert_eq!((link["max_uses"].as_u64(), link["invitee"].as_str()), (Some(2), Some("Build Bot")), "{link}");
    let token = link["token"].as_str().unwrap_or_default();
    let base = hub.ws_base();
    let auth = |client: &str| json!({"type": "auth", "token": token, "name": "bot", "protocol": 1, "client": client});

    // Two clients may join, again and again; a third may not.
    assert_eq!(sign_in(&base, &session, auth("client-a")).await?, "welcome");
    assert_eq!(sign_in(&base, &session, auth("client-b")).await?, "welcome");
    assert_eq!(sign_in(&base, &session, auth("client-a")).await?, "welcome", "a reconnect is not a new use");
    assert_eq!(sign_in(&base, &session, auth("client-c")).await?, "limit_reached");
    // Without a client id every connection is a new client.
    let anonymous = json!({"type": "auth", "token": token, "name": "bot", "protocol": 1});
    assert_eq!(sign_in(&base, &session, anonymous).await?, "limit_reached");
    let bad = json!({"type": "auth", "token": token, "name": "bot", "protocol": 1, "client": ""});
    assert_eq!(sign_in(&base, &session, bad).await?, "malformed");
    for body in [json!({"role": "editor", "max_uses": 0}), json!({"role": "viewer", "invitee": "bad\u{7}name"})] {
        let path = format!("/api/sessions/{session}/links");
        let (status, resp) = http(hub.addr, "POST", &path, Some(&owner), &[], Some(&body.to_string())).await?;
        assert_eq!(status, 400, "{body} → {resp}");
    }

    // The audit log names the invitee on every join with the invitation.
    let (_, events) =
        http(hub.addr, "GET", &format!("/api/sessions/{session}/events"), Some(&owner), &[], None).await?;
    let joins: Vec<&serde_json::Value> = events["events"]
        .as_array()
        .map(|a| a.iter().filter(|e| e["kind"] == "peer.joined").collect())
        .unwrap_or_default();
    assert_eq!(joins.len(), 3, "{events}");
    assert!(joins.iter().all(|e| e["detail"]["invitee"] == "Build Bot"), "{events}");
    let denied = events["events"].as_array().map(|a| a.iter().filter(|e| e["kind"] == "access.denied").count());
    assert_eq!(denied, Some(2), "refused joins are audited: {events}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_start_from_templates() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let templates = dir.path().join("templates.json");
    std::fs::write(
        &templates,
        json!({"templates": {"review": {
            "public": true,
            "links": [{"role": "viewer", "expires_in_s": 3600}, {"role": "editor", "max_uses": 3}],
            "ignore": ["*.secret", "private/"],
        }}})
        .to_string(),
    )?;
    let hub = HubProcess::start_with(
        &dir.path().join("hub"),
        &["--templates", &templates.to_string_lossy(), "--max-sessions-per-owner", "2"],
    )?;
    let body = json!({"name": "from a template", "template": "review"}).to_string();
    let (status, created) = http(hub.addr, "POST", "/api/sessions", Some(&hub.admin), &[], Some(&body)).await?;
    assert_eq!(status, 201, "{created}");
    let links = created["links"].as_array().cloned().unwrap_or_default();
    assert_eq!(links.len(), 2, "{created}");
    assert_eq!((links[0]["role"].as_str(), links[0]["expires_at"].is_i64()), (Some("viewer"), true), "{created}");
    assert_eq!((links[1]["role"].as_str(), links[1]["max_uses"].as_u64()), (Some("editor"), Some(3)), "{created}");
    assert_eq!(created["ignore"], json!(["*.secret", "private/"]));
    let (_, public) = http(hub.addr, "GET", "/api/sessions?public=true", None, &[], None).await?;
    assert_eq!(public["sessions"][0]["name"], "from a template", "{public}");
    let body = json!({"name": "x", "template": "nope"}).to_string();
    let (status, refused) = http(hub.addr, "POST", "/api/sessions", Some(&hub.admin), &[], Some(&body)).await?;
    assert_eq!(status, 404, "{refused}");
    assert!(refused["error"]["message"].as_str().is_some_and(|m| m.contains("review")), "{refused}");

    // `weft share --template`: the template's ignore patterns keep files home.
    let (host, guest) = (dir.path().join("host"), dir.path().join("guest"));
    std::fs::create_dir_all(host.join("private"))?;
    std::fs::write(host.join("a.txt"), "shared\n")?;
    std::fs::write(host.join("key.secret"), "hush\n")?;
    std::fs::write(host.join("private/notes.txt"), "mine\n")?;
    let mut share = weft_tests::WeftProcess::spawn(
        &["share", &host.to_string_lossy(), "--hub", &hub.ws_base(), "--template", "review"],
        &[("WEFT_HUB_TOKEN", &hub.admin)],
        &dir.path().join("share.stderr"),
    )?;
    let editor = share.next_line(T)?;
    let link = editor.strip_prefix("editor: ").unwrap_or_default().to_owned();
    let mut join = weft_tests::WeftProcess::spawn(
        &["join", &link, &guest.to_string_lossy()],
        &[],
        &dir.path().join("join.stderr"),
    )?;
    let joined = join.next_line(T)?;
    assert!(joined.starts_with("joined "), "{joined}");
    assert_eq!(std::fs::read_to_string(guest.join("a.txt"))?, "shared\n");
    assert!(!guest.join("key.secret").exists() && !guest.join("private").exists(), "ignored by the template");

    // Two sessions (the template's and the share's) are this hub's limit.
    let body = json!({"name": "one too many"}).to_string();
    let (status, refused) = http(hub.addr, "POST", "/api/sessions", Some(&hub.admin), &[], Some(&body)).await?;
    assert_eq!((status, refused["error"]["code"].as_str()), (429, Some("limit_reached")), "{refused}");

    // A broken templates file stops the hub with a clear message.
    std::fs::write(&templates, r#"{"templates": {"bad": {"links": [{"role": "editor", "max_uses": 0}]}}}"#)?;
    let out = std::process::Command::new(weft_tests::weft_bin())
        .args(["hub", "--listen", "127.0.0.1:0", "--data", &dir.path().join("hub2").to_string_lossy()])
        .args(["--templates", &templates.to_string_lossy()])
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("max_uses"), "{stderr}");
    Ok(())
}
