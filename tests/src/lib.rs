//! weft-tests: the harness for end-to-end tests that run the real `weft`
//! binary.
//!
//! [`HubProcess`] starts `weft hub` on a free loopback port in a temp
//! directory and kills it on drop (so a failing test leaves no process).
//! [`http`] is a tiny HTTP/1.1 client for the REST API. [`WeftPeer`] is a
//! real weft-protocol client: a yrs document per doc id, sync steps,
//! awareness, acks. The harness never sleeps to wait for a condition: it
//! waits on frames, with deadlines whose failure message says what was
//! expected.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use weft_protocol::frame;
use weft_protocol::{DocId, PROTOCOL_VERSION};
use yrs::encoding::read::Cursor;
use yrs::sync::{Message as YMessage, MessageReader, SyncMessage};
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, OffsetKind, Options, ReadTxn, Text, Transact, Update};

pub mod lsp;

/// The `weft` binary under test: `$WEFT_BIN`, else `target/debug/weft` of
/// this workspace (built by `scripts/test` before the tests run).
pub fn weft_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("WEFT_BIN") {
        return PathBuf::from(bin);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target"));
    target.join("debug").join("weft")
}

/// A running `weft hub` process. Killed (and reaped) on drop.
pub struct HubProcess {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// It serves TLS (its first line said `https://`).
    pub tls: bool,
    pub admin: String,
    pub data: PathBuf,
}

impl HubProcess {
    /// Starts a hub on a free port with its data in `data`.
    pub fn start(data: &Path) -> anyhow::Result<HubProcess> {
        HubProcess::start_with(data, &[])
    }

    /// Starts a hub with extra command-line arguments.
    pub fn start_with(data: &Path, extra: &[&str]) -> anyhow::Result<HubProcess> {
        let bin = weft_bin();
        anyhow::ensure!(
            bin.exists(),
            "{} is missing: run `cargo build --bin weft` first (scripts/test does)",
            bin.display()
        );
        std::fs::create_dir_all(data)?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(data.join("hub.stderr.log"))?;
        let listen: &[&str] = if extra.contains(&"--listen") { &[] } else { &["--listen", "127.0.0.1:0"] };
        let mut child = Command::new(&bin)
            .arg("hub")
            .args(listen)
            .arg("--data")
            .arg(data)
            .args(extra)
            .env("WEFT_LOG", std::env::var("WEFT_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .env_remove("WEFT_ADMIN_TOKEN")
            .env_remove("WEFT_TLS_CERT")
            .env_remove("WEFT_TLS_KEY")
            .env_remove("WEFT_INSECURE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("hub stdout")?;
        // Read the first line on a thread so a hub that never prints cannot
        // hang the test past the deadline.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let mut reader = BufReader::new(stdout);
            let res = reader.read_line(&mut line).map(|_| line);
            let _ = tx.send(res);
            // Keep draining so the hub never blocks on a full pipe.
            let mut sink = String::new();
            while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        let mut hub = HubProcess {
            child: Some(child),
            addr: "127.0.0.1:1".parse()?,
            tls: false,
            admin: String::new(),
            data: data.to_owned(),
        };
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(line)) => line,
            other => bail!("hub printed no first line ({other:?}); its log:\n{}", hub.log()),
        };
        let rest = line.trim().strip_prefix("weft hub listening on ");
        let (tls, addr) = match rest.and_then(|r| r.split_once("://")) {
            Some(("https", addr)) => (true, addr),
            Some(("http", addr)) => (false, addr),
            _ => bail!("unexpected first line {line:?}; hub log:\n{}", hub.log()),
        };
        hub.tls = tls;
        hub.addr = addr.parse().with_context(|| format!("bad address in {line:?}"))?;
        hub.admin = std::fs::read_to_string(data.join("admin.token")).context("reading admin.token")?.trim().to_owned();
        Ok(hub)
    }

    /// The hub's stderr so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.join("hub.stderr.log")).unwrap_or_default()
    }

    /// `ws://ADDR` (`wss://` for a TLS hub).
    pub fn ws_base(&self) -> String {
        format!("{}://{}", if self.tls { "wss" } else { "ws" }, self.addr)
    }

    /// Kills the hub with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits for a clean exit; returns its exit status.
    pub fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("hub already stopped")?;
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("hub did not exit within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Creates a session with the admin token; returns (id, owner token).
    pub async fn create_session(&self, name: &str) -> anyhow::Result<(String, String)> {
        let (status, body) = http(
            self.addr,
            "POST",
            "/api/sessions",
            Some(&self.admin),
            &[],
            Some(&serde_json::json!({"name": name}).to_string()),
        )
        .await?;
        anyhow::ensure!(status == 201, "create session: {status} {body}");
        let id = body["id"].as_str().context("id")?.to_owned();
        let token = body["owner"]["token"].as_str().context("owner token")?.to_owned();
        Ok((id, token))
    }

    /// Creates a link; returns the whole `201` body.
    pub async fn create_link(
        &self,
        session: &str,
        owner: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let path = format!("/api/sessions/{session}/links");
        let (status, body) = http(self.addr, "POST", &path, Some(owner), &[], Some(&body.to_string())).await?;
        anyhow::ensure!(status == 201, "create link: {status} {body}");
        Ok(body)
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One HTTP/1.1 request (`Connection: close`); returns status and the body
/// parsed as JSON (or as a JSON string if it is not JSON).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let (status, raw) = http_raw(addr, method, path, token, headers, body.map(str::as_bytes)).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    Ok((status, json))
}

/// Like [`http`] with raw bytes in and out.
pub async fn http_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr).await?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        req.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or_default();
    req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len()));
    stream.write_all(req.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut resp)).await.context("HTTP timeout")??;
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").context("no header end")?;
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    let status: u16 = head.split_whitespace().nth(1).context("no status")?.parse()?;
    let mut body = resp[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = weft_client::hub_api::dechunk(&body)?;
    }
    Ok((status, body))
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How a connection attempt or a connection ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Closed {
    /// The close code, if the hub sent a close frame.
    pub code: Option<u16>,
    /// The last `error` or `kick` control frame before the close.
    pub last_error: Option<serde_json::Value>,
}

/// Local updates (doc id, v1 update) waiting to be sent.
type Outbox = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A weft-protocol client with one yrs document per doc id.
pub struct WeftPeer {
    ws: Ws,
    pub welcome: serde_json::Value,
    docs: HashMap<String, Doc>,
    outbox: Outbox,
    client_id: u64,
    /// Update-carrying frames sent.
    pub sent: u64,
    /// Highest `ack` received.
    pub acked: u64,
    /// Every `error` control frame received.
    pub errors: Vec<serde_json::Value>,
    /// Other control frames received (e.g. `role`), in order.
    pub controls: Vec<serde_json::Value>,
    /// Set once the connection ended.
    pub closed: Option<Closed>,
    /// Awareness messages received (raw y-protocols bytes), per doc.
    pub awareness: Vec<(String, Vec<u8>)>,
}

/// Auth fields for [`WeftPeer::connect`].
#[derive(Debug, Clone, Default)]
pub struct Auth<'a> {
    pub token: &'a str,
    pub password: Option<&'a str>,
    pub name: &'a str,
    pub protocol: Option<u32>,
}

impl WeftPeer {
    /// Connects and authenticates; `Err(Closed)` if the hub refused.
    pub async fn connect(
        base: &str,
        session: &str,
        auth: Auth<'_>,
        client_id: u64,
    ) -> anyhow::Result<Result<WeftPeer, Closed>> {
        let url = format!("{base}/ws/{session}");
        let (mut ws, _) =
            tokio_tungstenite::connect_async(url.as_str()).await.with_context(|| format!("connecting {url}"))?;
        let mut frame = serde_json::json!({
            "type": "auth", "token": auth.token, "name": if auth.name.is_empty() { "test" } else { auth.name },
            "protocol": auth.protocol.unwrap_or(PROTOCOL_VERSION),
        });
        if let Some(pw) = auth.password {
            frame["password"] = pw.into();
        }
        ws.send(Message::Text(frame.to_string().into())).await?;
        let mut last_error = None;
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(20), ws.next()).await.context("no answer to auth")?;
            match msg {
                Some(Ok(Message::Text(text))) => {
                    let v: serde_json::Value = serde_json::from_str(text.as_str())?;
                    if v["type"] == "welcome" {
                        return Ok(Ok(WeftPeer::new(ws, v, client_id)));
                    }
                    last_error = Some(v);
                }
                Some(Ok(Message::Close(frame))) => {
                    return Ok(Err(Closed { code: frame.map(|f| u16::from(f.code)), last_error }));
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => return Ok(Err(Closed { code: None, last_error })),
            }
        }
    }

    /// Connects and expects success.
    pub async fn join(base: &str, session: &str, token: &str, client_id: u64) -> anyhow::Result<WeftPeer> {
        match WeftPeer::connect(base, session, Auth { token, name: "peer", ..Auth::default() }, client_id).await? {
            Ok(peer) => Ok(peer),
            Err(closed) => bail!("hub refused the peer: {closed:?}"),
        }
    }

    fn new(ws: Ws, welcome: serde_json::Value, client_id: u64) -> WeftPeer {
        WeftPeer {
            ws,
            welcome,
            docs: HashMap::new(),
            outbox: Arc::new(Mutex::new(Vec::new())),
            client_id,
            sent: 0,
            acked: 0,
            errors: Vec::new(),
            controls: Vec::new(),
            closed: None,
            awareness: Vec::new(),
        }
    }

    fn doc(&mut self, name: &str) -> &Doc {
        let client_id = self.client_id;
        let outbox = Arc::clone(&self.outbox);
        self.docs.entry(name.to_owned()).or_insert_with(|| {
            let doc = Doc::with_options(Options {
                client_id: yrs::ClientID::new(client_id),
                offset_kind: OffsetKind::Utf16,
                ..Options::default()
            });
            let doc_name = name.to_owned();
            doc.observe_update_v1("harness", move |txn, e| {
                // Only local edits go out; remote ones arrive tagged.
                if txn.origin().is_none() {
                    outbox.lock().expect("outbox").push((doc_name.clone(), e.update.clone()));
                }
            })
            .expect("observe");
            doc
        })
    }

    /// Opens a new connection for this peer, keeping its documents (as a
    /// real client does after the hub went away), and subscribes to every
    /// document again.
    pub async fn reconnect(&mut self, base: &str, session: &str, token: &str) -> anyhow::Result<()> {
        let fresh = WeftPeer::join(base, session, token, self.client_id).await?;
        self.ws = fresh.ws;
        self.welcome = fresh.welcome;
        self.closed = None;
        let names: Vec<String> = self.docs.keys().cloned().collect();
        for name in names {
            self.subscribe(&name).await?;
        }
        Ok(())
    }

    /// Sends sync step 1 for `doc` (subscribing to it).
    pub async fn subscribe(&mut self, doc: &str) -> anyhow::Result<()> {
        let sv = self.doc(doc).transact().state_vector();
        let msg = YMessage::Sync(SyncMessage::SyncStep1(sv)).encode_v1();
        self.send_doc(doc, &msg).await
    }

    /// Sends a raw y-protocols message about `doc`.
    pub async fn send_doc(&mut self, doc: &str, message: &[u8]) -> anyhow::Result<()> {
        let id = DocId::new(doc)?;
        self.ws.send(Message::Binary(frame::join(&id, message).into())).await?;
        Ok(())
    }

    /// Sends raw bytes as a binary frame.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.ws.send(Message::Binary(bytes.into())).await?;
        Ok(())
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.ws.send(Message::Text(text.to_owned().into())).await?;
        Ok(())
    }

    /// Inserts `text` at `char_index` (clamped) of `doc`'s content and sends it.
    pub async fn insert(&mut self, doc: &str, char_index: usize, text: &str) -> anyhow::Result<()> {
        {
            let d = self.doc(doc);
            let t = d.get_or_insert_text("content");
            let mut txn = d.transact_mut();
            let current = t.get_string(&txn);
            let at = utf16_offset(&current, char_index);
            t.insert(&mut txn, at, text);
        }
        self.flush().await
    }

    /// Deletes `len` chars at `char_index` (clamped) and sends it.
    pub async fn delete(&mut self, doc: &str, char_index: usize, len: usize) -> anyhow::Result<()> {
        {
            let d = self.doc(doc);
            let t = d.get_or_insert_text("content");
            let mut txn = d.transact_mut();
            let current = t.get_string(&txn);
            let start = utf16_offset(&current, char_index);
            let end = utf16_offset(&current, char_index.saturating_add(len));
            if end > start {
                t.remove_range(&mut txn, start, end - start);
            }
        }
        self.flush().await
    }

    /// Sends every local update not yet sent.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        let pending: Vec<_> = std::mem::take(&mut *self.outbox.lock().expect("outbox"));
        for (doc, update) in pending {
            let msg = YMessage::Sync(SyncMessage::Update(update)).encode_v1();
            self.send_doc(&doc, &msg).await?;
            self.sent += 1;
        }
        Ok(())
    }

    /// The content of `doc` as this peer sees it.
    pub fn text(&mut self, doc: &str) -> String {
        let d = self.doc(doc);
        let t = d.get_or_insert_text("content");
        t.get_string(&d.transact())
    }

    /// Content length of `doc` in chars.
    pub fn char_len(&mut self, doc: &str) -> usize {
        self.text(doc).chars().count()
    }

    /// Handles frames until `cond` holds or `timeout` passes (then the
    /// error says `what` was awaited).
    pub async fn pump_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut(&mut WeftPeer) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(self) {
                return Ok(());
            }
            if self.closed.is_some() {
                bail!("connection closed ({:?}) while waiting for {what}", self.closed);
            }
            let now = Instant::now();
            if now >= deadline {
                bail!("timed out after {timeout:?} waiting for {what}; errors: {:?}", self.errors);
            }
            self.pump_once(deadline - now).await?;
        }
    }

    /// Handles frames already waiting (none if nothing arrives within `wait`).
    pub async fn pump_for(&mut self, wait: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + wait;
        while self.closed.is_none() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if !self.pump_once(deadline - now).await? {
                break;
            }
        }
        Ok(())
    }

    /// Waits for every update sent so far to be acknowledged as durable.
    pub async fn wait_acked(&mut self) -> anyhow::Result<()> {
        let want = self.sent;
        self.pump_until(&format!("ack {want}"), Duration::from_secs(30), |p| p.acked >= want).await
    }

    /// Waits until the connection is closed; returns how.
    pub async fn wait_closed(&mut self, timeout: Duration) -> anyhow::Result<Closed> {
        let deadline = Instant::now() + timeout;
        while self.closed.is_none() {
            let now = Instant::now();
            anyhow::ensure!(now < deadline, "connection not closed within {timeout:?}");
            self.pump_once(deadline - now).await?;
        }
        Ok(self.closed.clone().unwrap_or(Closed { code: None, last_error: None }))
    }

    /// Reads and handles one frame; `false` if none arrived in `wait`.
    async fn pump_once(&mut self, wait: Duration) -> anyhow::Result<bool> {
        let msg = match tokio::time::timeout(wait, self.ws.next()).await {
            Err(_) => return Ok(false),
            Ok(msg) => msg,
        };
        match msg {
            None | Some(Err(_)) => {
                self.closed.get_or_insert(Closed { code: None, last_error: self.errors.last().cloned() });
            }
            Some(Ok(Message::Close(frame))) => {
                self.closed =
                    Some(Closed { code: frame.map(|f| u16::from(f.code)), last_error: self.errors.last().cloned() });
            }
            Some(Ok(Message::Text(text))) => {
                let v: serde_json::Value = serde_json::from_str(text.as_str())?;
                match v["type"].as_str() {
                    Some("ack") => self.acked = self.acked.max(v["seq"].as_u64().unwrap_or(0)),
                    Some("error") | Some("kick") => self.errors.push(v),
                    _ => self.controls.push(v),
                }
            }
            Some(Ok(Message::Binary(bytes))) => self.on_binary(&bytes).await?,
            Some(Ok(_)) => {}
        }
        Ok(true)
    }

    async fn on_binary(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let (doc, message) = frame::split(bytes)?;
        let name = doc.as_str().to_owned();
        let mut replies = Vec::new();
        {
            let d = self.doc(&name).clone();
            let mut decoder = DecoderV1::new(Cursor::new(message));
            for msg in MessageReader::new(&mut decoder) {
                match msg? {
                    YMessage::Sync(SyncMessage::SyncStep1(sv)) => {
                        let diff = d.transact().encode_state_as_update_v1(&sv);
                        replies.push(YMessage::Sync(SyncMessage::SyncStep2(diff)).encode_v1());
                    }
                    YMessage::Sync(SyncMessage::SyncStep2(u) | SyncMessage::Update(u)) => {
                        let mut txn = d.transact_mut_with("remote");
                        txn.apply_update(Update::decode_v1(&u)?)?;
                    }
                    YMessage::Awareness(_) => self.awareness.push((name.clone(), message.to_vec())),
                    _ => {}
                }
            }
        }
        for reply in replies {
            self.send_doc(&name, &reply).await?;
            self.sent += 1;
        }
        Ok(())
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        let _ = self
            .ws
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            }))
            .await;
    }
}

/// UTF-16 offset of the `char_index`-th char of `s` (clamped to its end).
pub fn utf16_offset(s: &str, char_index: usize) -> u32 {
    s.chars().take(char_index).map(char::len_utf16).sum::<usize>() as u32
}

/// Waits until every peer's `doc` has the same content, pumping them in
/// turn; returns that content.
pub async fn converge(peers: &mut [&mut WeftPeer], doc: &str, timeout: Duration) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        for p in peers.iter_mut() {
            p.flush().await?;
            p.pump_for(Duration::from_millis(5)).await?;
        }
        let texts: Vec<String> = peers.iter_mut().map(|p| p.text(doc)).collect();
        let acked = peers.iter().all(|p| p.acked >= p.sent);
        if acked && texts.windows(2).all(|w| w[0] == w[1]) {
            return Ok(texts.into_iter().next().unwrap_or_default());
        }
        if Instant::now() >= deadline {
            bail!(
                "peers did not converge within {timeout:?}: {:?}",
                texts.iter().map(|t| t.chars().count()).collect::<Vec<_>>()
            );
        }
    }
}

/// A small seeded PRNG (xorshift64*) so randomized tests can print and
/// replay their seed without a dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is remapped).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// A seed from `$WEFT_SEED`, else from the clock; printed so a failure can be replayed.
    pub fn from_env(test: &str) -> Rng {
        let seed = std::env::var("WEFT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(7)
        });
        eprintln!("{test}: WEFT_SEED={seed}");
        Rng::new(seed)
    }

    /// Next raw value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (0 if n is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Snippets of text that exercise every width of UTF-8 and UTF-16.
pub const SNIPPETS: &[&str] = &["a", "fn ", "\n", "🦀", "日本語", "e\u{301}", "👩‍💻", "ü", " ", "{}", "𝕏"];

/// A plain y-websocket connection (`/y/{session}/{doc}`), as stock Yjs
/// clients make it.
pub struct YPeer {
    ws: Ws,
    /// Binary messages received, in order.
    pub received: Vec<Vec<u8>>,
    pub closed: Option<Closed>,
}

impl YPeer {
    /// Connects with `query` (e.g. `token=...`); `Err` carries the close if
    /// the hub refused before sending anything.
    pub async fn connect(base: &str, session: &str, doc: &str, query: &str) -> anyhow::Result<Result<YPeer, Closed>> {
        let url = format!("{base}/y/{session}/{doc}?{query}");
        let (ws, _) =
            tokio_tungstenite::connect_async(url.as_str()).await.with_context(|| format!("connecting {url}"))?;
        let mut peer = YPeer { ws, received: Vec::new(), closed: None };
        // The hub opens with its sync step 1, or closes.
        peer.pump_until(Duration::from_secs(20), |p| !p.received.is_empty()).await?;
        match peer.closed.take() {
            Some(closed) if peer.received.is_empty() => Ok(Err(closed)),
            other => {
                peer.closed = other;
                Ok(Ok(peer))
            }
        }
    }

    /// Sends a raw y-protocols message.
    pub async fn send(&mut self, message: Vec<u8>) -> anyhow::Result<()> {
        self.ws.send(Message::Binary(message.into())).await?;
        Ok(())
    }

    /// Reads frames until `cond` holds, the connection closes, or `timeout` passes.
    pub async fn pump_until(&mut self, timeout: Duration, mut cond: impl FnMut(&YPeer) -> bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while !cond(self) && self.closed.is_none() {
            let now = Instant::now();
            anyhow::ensure!(now < deadline, "y-websocket peer: condition not met within {timeout:?}");
            match tokio::time::timeout(deadline - now, self.ws.next()).await {
                Err(_) => {}
                Ok(Some(Ok(Message::Binary(b)))) => self.received.push(b.to_vec()),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    self.closed = Some(Closed { code: frame.map(|f| u16::from(f.code)), last_error: None });
                }
                Ok(Some(Ok(_))) => {}
                Ok(None | Some(Err(_))) => self.closed = Some(Closed { code: None, last_error: None }),
            }
        }
        Ok(())
    }
}

/// A y-protocols `update` message inserting `text` at the start of
/// `content`, authored by `client_id`.
pub fn y_insert_message(client_id: u64, text: &str) -> Vec<u8> {
    let doc = Doc::with_client_id(client_id);
    let t = doc.get_or_insert_text("content");
    t.insert(&mut doc.transact_mut(), 0, text);
    let update = doc.transact().encode_state_as_update_v1(&yrs::StateVector::default());
    YMessage::Sync(SyncMessage::Update(update)).encode_v1()
}

/// A y-protocols awareness message setting `client_id`'s state to `json`
/// (or removing it with `"null"`) at logical clock `clock`.
pub fn awareness_message(client_id: u64, clock: u32, json: &str) -> Vec<u8> {
    let mut entry = Vec::new();
    frame::write_var_uint(&mut entry, 1);
    frame::write_var_uint(&mut entry, client_id);
    frame::write_var_uint(&mut entry, u64::from(clock));
    frame::write_var_uint(&mut entry, json.len() as u64);
    entry.extend_from_slice(json.as_bytes());
    let mut msg = Vec::new();
    frame::write_var_uint(&mut msg, frame::MSG_AWARENESS);
    frame::write_var_uint(&mut msg, entry.len() as u64);
    msg.extend_from_slice(&entry);
    msg
}

/// A running `weft` subcommand (share, join, ...) whose stdout lines are
/// collected; killed and reaped on drop.
pub struct WeftProcess {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    pub stderr_path: PathBuf,
}

impl WeftProcess {
    /// Starts `weft ARGS...` with extra environment; stderr goes to `stderr_path`.
    pub fn spawn(args: &[&str], env: &[(&str, &str)], stderr_path: &Path) -> anyhow::Result<WeftProcess> {
        let log = std::fs::File::create(stderr_path)?;
        let mut cmd = Command::new(weft_bin());
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::from(log));
        cmd.env_remove("WEFT_HUB").env_remove("WEFT_HUB_TOKEN").env("WEFT_LOG", "info");
        for tls in ["WEFT_CA", "WEFT_INSECURE", "WEFT_TLS_CERT", "WEFT_TLS_KEY"] {
            cmd.env_remove(tls);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().with_context(|| format!("starting weft {args:?}"))?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(WeftProcess { child, lines, stderr_path: stderr_path.to_owned() })
    }

    /// The next stdout line, within `timeout`.
    pub fn next_line(&mut self, timeout: Duration) -> anyhow::Result<String> {
        self.lines.recv_timeout(timeout).map_err(|_| {
            anyhow::anyhow!(
                "no stdout line within {timeout:?}; stderr:\n{}",
                std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
            )
        })
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit by itself; its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "still running after {timeout:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for WeftProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes (for state
/// that lives on disk, where there is no event to wait on).
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    while !cond() {
        anyhow::ensure!(std::time::Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
