//! Interoperability with stock Yjs clients: the npm packages `yjs` and
//! `y-websocket` (pinned in tests/js/package-lock.json, installed by
//! `scripts/test`) edit through `/y/`, converge, and a Rust weft-protocol
//! peer on `/ws/` sees the same text.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use weft_tests::{HubProcess, WeftPeer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_yjs_clients_converge_and_a_weft_peer_agrees() -> anyhow::Result<()> {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("js");
    assert!(
        js.join("node_modules/yjs").exists(),
        "the npm packages are missing: run `npm ci --prefix tests/js` (scripts/test does)"
    );
    let dir = tempfile::tempdir()?;
    let hub = HubProcess::start(dir.path())?;
    let (session, owner) = hub.create_session("interop").await?;
    let viewer = hub.create_link(&session, &owner, json!({"role": "viewer"})).await?;
    let viewer = viewer["token"].as_str().unwrap_or_default().to_owned();
    let doc = "src/main.rs";

    let run = tokio::process::Command::new("node")
        .arg(js.join("interop.mjs"))
        .args(["--base", &hub.ws_base(), "--session", &session, "--doc", doc])
        .args(["--token", &owner, "--viewer-token", &viewer, "--timeout-ms", "40000"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run).await??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "interop.mjs failed: {stdout}\n{stderr}\nhub log:\n{}", hub.log());
    let result: serde_json::Value = serde_json::from_str(stdout.trim())?;
    assert_eq!(result["ok"], true, "{result}");
    let text = result["text"].as_str().unwrap_or_default().to_owned();
    assert!(text.contains("🦀") && text.contains("日本"), "multi-byte text made it through: {text}");
    assert_eq!(result["length"].as_u64(), Some(text.encode_utf16().count() as u64));

    let mut rust = WeftPeer::join(&hub.ws_base(), &session, &owner, 77).await?;
    rust.subscribe(doc).await?;
    rust.pump_until("the weft peer sees the Yjs clients' text", Duration::from_secs(30), |p| p.text(doc) == text)
        .await?;
    Ok(())
}
