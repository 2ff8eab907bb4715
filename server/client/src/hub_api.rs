//! The few REST calls the bridge makes to a hub (create a session, create
//! its links, count participants), over HTTP/1.1 (HTTPS for a TLS hub, see
//! [`crate::tls`]) on one short-lived connection each. Small on purpose:
//! the hub's API is JSON with a bearer token, and pulling a full HTTP
//! client stack in for three calls is not worth it.

use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_protocol::Role;
use weft_protocol::rest::{CreateLink, CreateSession, LinkCreated, SessionCreated};

use crate::link::HubAddr;
use crate::tls::ClientTls;

/// How long one REST call may take.
const TIMEOUT: Duration = Duration::from_secs(15);

/// Calls `METHOD path` on `hub` and parses the JSON answer.
pub async fn call<T: DeserializeOwned>(
    hub: &HubAddr,
    tls: &ClientTls,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&impl Serialize>,
) -> anyhow::Result<T> {
    let body = match body {
        Some(b) => serde_json::to_vec(b)?,
        None => Vec::new(),
    };
    let authority = &hub.authority;
    let exchange = async {
        let mut stream = tls.connect(hub).await?;
        // No token (public discovery): no Authorization header at all.
        let auth = if token.is_empty() { String::new() } else { format!("Authorization: Bearer {token}\r\n") };
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {authority}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        let mut raw = Vec::new();
        // A TLS hub may close without close_notify after `Connection:
        // close`; what arrived is checked below (the status line, the body).
        match stream.read_to_end(&mut raw).await {
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
            other => {
                other.with_context(|| format!("reading the hub's answer to {method} {path}"))?;
            }
        }
        anyhow::Ok(raw)
    };
    let raw = tokio::time::timeout(TIMEOUT, exchange).await.context("the hub did not answer in time")??;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").context("the hub sent a broken HTTP answer")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("no HTTP status")?;
    let mut payload = raw[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        payload = dechunk(&payload)?;
    }
    if !(200..300).contains(&status) {
        let detail: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
        let message = detail["error"]["message"].as_str().unwrap_or("no details");
        bail!("the hub refused {method} {path} ({status}): {message}");
    }
    serde_json::from_slice(&payload)
        .with_context(|| format!("the hub's answer to {method} {path} is not the expected JSON"))
}

/// Decodes an HTTP/1.1 chunked body.
pub fn dechunk(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let end = data.windows(2).position(|w| w == b"\r\n").context("bad chunk")?;
        let size = usize::from_str_radix(std::str::from_utf8(&data[..end])?.trim(), 16)?;
        data = &data[end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(data.get(..size).context("short chunk")?);
        data = data.get(size + 2..).context("short chunk")?;
    }
}

/// A new session with its owner token and an editor and a viewer link.
#[derive(Debug, Clone)]
pub struct SharedSession {
    pub created: SessionCreated,
    pub editor: LinkCreated,
    pub viewer: LinkCreated,
}

/// Creates a session named `name` on `hub` with `admin` (a token allowed to
/// create sessions), then its editor and viewer links.
pub async fn create_shared_session(
    hub: &HubAddr,
    tls: &ClientTls,
    admin: &str,
    name: String,
    template: Option<String>,
) -> anyhow::Result<SharedSession> {
    let body = CreateSession { name, public: false, template };
    let created: SessionCreated = call(hub, tls, "POST", "/api/sessions", admin, Some(&body)).await?;
    let path = format!("/api/sessions/{}/links", created.id);
    let owner = created.owner.token.clone();
    // A template's first editor and viewer links are the ones handed out;
    // whichever it lacks is made here, without expiry.
    let made = |role: Role| {
        let from_template = created.links.iter().find(|l| l.role == role).cloned();
        let (path, owner) = (path.clone(), owner.clone());
        async move {
            if let Some(link) = from_template {
                return anyhow::Ok(link);
            }
            let link = CreateLink { role, expires_in_s: None, password: None, max_uses: None, invitee: None };
            call(hub, tls, "POST", &path, &owner, Some(&link)).await
        }
    };
    let editor = made(Role::Editor).await?;
    let viewer = made(Role::Viewer).await?;
    Ok(SharedSession { created, editor, viewer })
}
