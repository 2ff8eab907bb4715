//! The comparative load generator: simulated peers on many sockets, in one
//! process and on one clock, speaking y-websocket (and Hocuspocus's
//! dialect, and nothing at all to the relay floor).
//!
//! Open loop: every writer's keystrokes have intended send times fixed in
//! advance (a per-writer phase offset spreads them); a late send is sent
//! at once and still timed from its intended time, so a stalled server
//! cannot hide its stall (no coordinated omission). Each keystroke inserts
//! a [`Marker`] carrying that time; receivers scan the bytes they get for
//! markers and record `now - intended`. One peer per room (the verifier)
//! integrates everything into a yrs document, which must end holding every
//! writer's keystrokes, in order, and nothing else.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, Transact, Update};

use crate::servers::{Dialect, Room};
use crate::wire::{self, Incoming, KeystrokeEncoder, Marker};

/// How late a timer may fire before the send counts as backlogged.
const TIMER_SLACK_US: u64 = 2_000;

/// A stretch of the run at one rate.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    /// Keystrokes (or cursor moves) per second per writer.
    pub rate: f64,
    pub duration: Duration,
}

/// What writers send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    /// Text updates (one keystroke each).
    Keystrokes,
    /// Awareness updates (a cursor move each); every peer is a writer.
    Cursors,
}

/// One run's shape.
#[derive(Debug, Clone)]
pub struct Plan {
    pub rooms: Vec<Room>,
    pub peers_per_room: usize,
    pub writers_per_room: usize,
    pub phases: Vec<Phase>,
    pub traffic: Traffic,
    /// A delivery later than this stops the writers (the server is past
    /// its capacity; later phases would only measure a backlog).
    pub abort_after: Duration,
    /// How long to wait for outstanding deliveries after the last send.
    pub drain: Duration,
}

/// Deliveries and latencies of one phase.
#[derive(Debug, Clone, Default)]
pub struct PhaseStats {
    pub rate: f64,
    pub duration: Duration,
    pub sent: u64,
    pub expected: u64,
    pub delivered: u64,
    /// Latencies in µs, sorted.
    pub latencies: Vec<u32>,
}

impl PhaseStats {
    pub fn percentile_ms(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        f64::from(self.latencies[i]) / 1000.0
    }

    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.delivered)
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub phases: Vec<PhaseStats>,
    /// The phase during which the writers were stopped for overload.
    pub aborted_in: Option<usize>,
    /// Time to connect and sync every peer.
    pub connect: Duration,
    /// Every verifier's document held exactly what was sent.
    pub converged: Result<(), String>,
}

struct Ctx {
    plan: Plan,
    /// Phase start offsets from the epoch, µs (one more than phases: the end).
    bounds: Vec<u64>,
    delivered: AtomicU64,
    expected: AtomicU64,
    abort: AtomicBool,
}

impl Ctx {
    fn phase_of(&self, at_us: u64) -> usize {
        let i = self.bounds.partition_point(|&b| b <= at_us);
        i.saturating_sub(1).min(self.plan.phases.len() - 1)
    }
}

/// A peer's part in its room.
#[derive(Debug, Clone, Copy)]
struct Part {
    room: usize,
    /// Writer number, unique in the run.
    writer: Option<u16>,
    verifier: bool,
}

struct PeerResult {
    room: usize,
    writer: Option<u16>,
    sent: Vec<u64>,
    delivered: Vec<u64>,
    latencies: Vec<Vec<u32>>,
    /// The verifier's final text and whether yrs kept anything pending.
    verified: Option<(String, bool)>,
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A connected peer speaking one dialect.
pub struct Conn {
    ws: Ws,
    dialect: Dialect,
}

impl Conn {
    /// Connects and completes the handshake: the peer is subscribed and has
    /// the document when this returns (y-protocols: our step 1 answered).
    pub async fn open(room: &Room, doc: Option<&Doc>) -> anyhow::Result<(Conn, Vec<u8>)> {
        // TCP_NODELAY, as every editor's WebSocket library sets it.
        let (ws, _) = tokio_tungstenite::connect_async_with_config(room.url.as_str(), None, true)
            .await
            .with_context(|| format!("connecting to {}", room.url.split('?').next().unwrap_or_default()))?;
        let mut conn = Conn { ws, dialect: room.dialect.clone() };
        if conn.dialect == Dialect::Relay {
            return Ok((conn, Vec::new()));
        }
        if let Dialect::Hocuspocus { .. } = &conn.dialect {
            // Auth first, even without an auth extension (a token string).
            let mut auth = Vec::new();
            wire::write_var_uint(&mut auth, 2);
            wire::write_var_uint(&mut auth, 0);
            wire::write_var_bytes(&mut auth, b"bench");
            conn.send(auth).await?;
        }
        let step1 = match doc {
            Some(doc) => wire::sync_message(
                wire::SYNC_STEP1,
                &yrs::updates::encoder::Encode::encode_v1(&doc.transact().state_vector()),
            ),
            None => wire::empty_step1(),
        };
        conn.send(step1).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let msg = tokio::time::timeout_at(deadline, conn.recv()).await.context("no sync step 2 within 60 s")??;
            let Some(msg) = msg else { bail!("closed during the handshake") };
            match wire::classify(&msg) {
                Incoming::Step1 => conn.send(wire::empty_step2()).await?,
                Incoming::Step2(update) => return Ok((conn, update.to_vec())),
                _ => {}
            }
        }
    }

    pub async fn send(&mut self, msg: Vec<u8>) -> anyhow::Result<()> {
        let bytes = match &self.dialect {
            Dialect::Hocuspocus { name } => {
                let mut out = Vec::with_capacity(msg.len() + name.len() + 2);
                wire::write_var_bytes(&mut out, name.as_bytes());
                out.extend_from_slice(&msg);
                out
            }
            _ => msg,
        };
        self.ws.send(Message::Binary(bytes.into())).await.context("sending")
    }

    /// The next y-protocols message (dialect prefix removed); `None` when
    /// the socket closed.
    pub async fn recv(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        loop {
            let Some(msg) = self.ws.next().await else { return Ok(None) };
            match msg.context("reading")? {
                Message::Binary(bytes) => return Ok(Some(self.unframe(&bytes))),
                Message::Close(_) => return Ok(None),
                _ => {}
            }
        }
    }

    fn unframe(&self, bytes: &[u8]) -> Vec<u8> {
        match &self.dialect {
            Dialect::Hocuspocus { .. } => {
                let mut pos = 0;
                if wire::read_var_bytes(bytes, &mut pos).is_none() {
                    return Vec::new();
                }
                // Hocuspocus answers a step 1 with type 4 (sync reply):
                // the same sync message under another tag.
                let mut out = bytes[pos..].to_vec();
                if out.first() == Some(&4) {
                    out[0] = 0;
                }
                out
            }
            _ => bytes.to_vec(),
        }
    }

    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(None)).await;
    }
}

/// A deterministic phase offset in [0, 1) for writer `w`.
fn offset(w: u16) -> f64 {
    let mut x = u64::from(w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 29;
    (x % 10_000) as f64 / 10_000.0
}

/// Runs `plan`: connects every peer, calls `on_connected` (to sample the
/// server), runs the phases, drains, verifies.
pub async fn run_with<T>(plan: Plan, on_connected: impl FnOnce() -> T) -> anyhow::Result<(Outcome, T)> {
    ensure!(!plan.phases.is_empty() && plan.peers_per_room >= 2, "a plan needs phases and two peers per room");
    let mut bounds = vec![0u64];
    for p in &plan.phases {
        bounds.push(bounds.last().copied().unwrap_or(0) + p.duration.as_micros() as u64);
    }
    let ctx = Arc::new(Ctx {
        plan: plan.clone(),
        bounds,
        delivered: AtomicU64::new(0),
        expected: AtomicU64::new(0),
        abort: AtomicBool::new(false),
    });
    let (start_tx, start_rx) = watch::channel::<Option<Instant>>(None);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<anyhow::Result<()>>();
    let mut tasks = Vec::new();
    let began = Instant::now();
    let total = plan.rooms.len() * plan.peers_per_room;
    // Connect in waves so thousands of handshakes do not all time out.
    let wave = 64usize;
    let mut writer_no: u16 = 0;
    let mut ready = 0usize;
    for (r, room) in plan.rooms.iter().enumerate() {
        for p in 0..plan.peers_per_room {
            let writes = match plan.traffic {
                Traffic::Keystrokes => p < plan.writers_per_room,
                Traffic::Cursors => true,
            };
            let part = Part {
                room: r,
                writer: writes.then(|| {
                    writer_no += 1;
                    writer_no
                }),
                verifier: plan.traffic == Traffic::Keystrokes && p == plan.peers_per_room - 1,
            };
            let (ctx, room, start_rx, stop_rx, ready_tx) =
                (Arc::clone(&ctx), room.clone(), start_rx.clone(), stop_rx.clone(), ready_tx.clone());
            tasks.push(tokio::spawn(peer(ctx, part, room, start_rx, stop_rx, ready_tx)));
            if tasks.len() - ready >= wave {
                match ready_rx.recv().await {
                    Some(Ok(())) => ready += 1,
                    Some(Err(err)) => return fail(tasks, &stop_tx, err).await,
                    None => bail!("peers vanished"),
                }
            }
        }
    }
    while ready < total {
        match tokio::time::timeout(Duration::from_secs(120), ready_rx.recv()).await {
            Ok(Some(Ok(()))) => ready += 1,
            Ok(Some(Err(err))) => return fail(tasks, &stop_tx, err).await,
            Ok(None) => bail!("peers vanished"),
            Err(_) => {
                return fail(tasks, &stop_tx, anyhow::anyhow!("{} of {total} peers synced in 120 s", ready)).await;
            }
        }
    }
    let connect = began.elapsed();
    let sample = on_connected();
    // Let the servers settle (joins, awareness) before the clock starts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let epoch = Instant::now() + Duration::from_millis(50);
    let _ = start_tx.send(Some(epoch));
    let end = epoch + Duration::from_micros(*ctx.bounds.last().unwrap_or(&0));
    tokio::time::sleep_until(end).await;
    // Drain: wait until every expected delivery arrived, or give up.
    let deadline = Instant::now() + plan.drain;
    while Instant::now() < deadline {
        if ctx.delivered.load(Ordering::Relaxed) >= ctx.expected.load(Ordering::Relaxed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(true);
    let results = join_peers(tasks).await?;
    Ok((summarise(&ctx, results, connect), sample))
}

/// Waits for every peer task (told to stop already) and collects their
/// results; the first failure ends the wait.
pub(crate) async fn join_peers<R>(tasks: Vec<tokio::task::JoinHandle<anyhow::Result<R>>>) -> anyhow::Result<Vec<R>> {
    let mut results = Vec::new();
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(30), task).await {
            Ok(Ok(Ok(r))) => results.push(r),
            Ok(Ok(Err(err))) => return Err(err.context("a peer failed")),
            Ok(Err(err)) => bail!("a peer task panicked: {err}"),
            Err(_) => bail!("a peer did not stop within 30 s"),
        }
    }
    Ok(results)
}

async fn fail<T>(
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<PeerResult>>>,
    stop: &watch::Sender<bool>,
    err: anyhow::Error,
) -> anyhow::Result<T> {
    let _ = stop.send(true);
    for t in &tasks {
        t.abort();
    }
    Err(err)
}

fn summarise(ctx: &Ctx, results: Vec<PeerResult>, connect: Duration) -> Outcome {
    let plan = &ctx.plan;
    let n = plan.phases.len();
    let mut phases: Vec<PhaseStats> = plan
        .phases
        .iter()
        .map(|p| PhaseStats { rate: p.rate, duration: p.duration, ..PhaseStats::default() })
        .collect();
    let receivers = (plan.peers_per_room - 1) as u64;
    let mut sent_per_room: HashMap<usize, Vec<(u16, u64)>> = HashMap::new();
    for r in &results {
        for (k, phase) in phases.iter_mut().enumerate() {
            phase.delivered += r.delivered[k];
            phase.latencies.extend_from_slice(&r.latencies[k]);
            phase.sent += r.sent[k];
            phase.expected += r.sent[k] * receivers;
        }
        if let Some(w) = r.writer {
            sent_per_room.entry(r.room).or_default().push((w, r.sent.iter().sum()));
        }
    }
    for p in &mut phases {
        p.latencies.sort_unstable();
    }
    let aborted_in = ctx.abort.load(Ordering::Relaxed).then(|| {
        // The first phase in which some keystroke was not delivered in time.
        phases.iter().position(|p| p.lost() > 0).unwrap_or(n - 1)
    });
    let mut converged = Ok(());
    for r in results.iter().filter(|r| r.verified.is_some()) {
        let Some((text, pending)) = &r.verified else { continue };
        if let Err(err) = check_text(text, *pending, sent_per_room.get(&r.room).map(Vec::as_slice).unwrap_or_default())
        {
            converged = Err(format!("room {}: {err}", r.room));
            break;
        }
    }
    Outcome { phases, aborted_in, connect, converged }
}

/// The verifier's text must be every writer's markers, each writer's in
/// sequence, and nothing else.
fn check_text(text: &str, pending: bool, writers: &[(u16, u64)]) -> Result<(), String> {
    if pending {
        return Err("updates left pending (missing or undecodable)".into());
    }
    let mut next: HashMap<u16, u64> = HashMap::new();
    let mut count = 0usize;
    let mut bad = None;
    wire::scan_markers(text.as_bytes(), |m| {
        count += 1;
        let n = next.entry(m.writer).or_insert(0);
        if u64::from(m.seq) != *n && bad.is_none() {
            bad = Some(format!("writer {} keystroke {} came where {} was due", m.writer, m.seq, n));
        }
        *n += 1;
    });
    if let Some(bad) = bad {
        return Err(bad);
    }
    if text.len() != count * wire::MARKER_LEN {
        return Err(format!("{} bytes of text hold {count} markers", text.len()));
    }
    for (w, sent) in writers {
        let got = next.get(w).copied().unwrap_or(0);
        if got != *sent {
            return Err(format!("writer {w} sent {sent} keystrokes, the document holds {got}"));
        }
    }
    Ok(())
}

async fn peer(
    ctx: Arc<Ctx>,
    part: Part,
    room: Room,
    mut start_rx: watch::Receiver<Option<Instant>>,
    mut stop_rx: watch::Receiver<bool>,
    ready: mpsc::UnboundedSender<anyhow::Result<()>>,
) -> anyhow::Result<PeerResult> {
    let n = ctx.plan.phases.len();
    let doc = part.verifier.then(Doc::new);
    let opened = Conn::open(&room, doc.as_ref()).await;
    let (mut conn, _initial) = match opened {
        Ok(ok) => ok,
        Err(err) => {
            let _ = ready.send(Err(anyhow::anyhow!("{err:#}")));
            return Err(err);
        }
    };
    let _ = ready.send(Ok(()));
    let epoch = loop {
        if let Some(epoch) = *start_rx.borrow_and_update() {
            break epoch;
        }
        tokio::select! {
            changed = start_rx.changed() => changed.context("run abandoned")?,
            _ = stop_rx.changed() => return Ok(empty_result(part, n)),
        }
    };
    let mut result = empty_result(part, n);
    let receivers = (ctx.plan.peers_per_room - 1) as u64;
    let client_id = u64::from(part.writer.unwrap_or(0)) * 7919 + 1_000_003;
    let mut encoder = KeystrokeEncoder::new(client_id);
    // The writer's schedule: (phase, index in phase).
    let mut phase = 0usize;
    let mut index = 0u64;
    let mut next_at = part.writer.and_then(|w| next_time(&ctx, &mut phase, &mut index, offset(w)));
    let mut seq = 0u32;
    let mut clock = 0u64;
    loop {
        let wake = next_at.map(|us| epoch + Duration::from_micros(us));
        tokio::select! {
            biased;
            _ = stop_rx.changed() => break,
            msg = conn.recv() => {
                let Some(msg) = msg? else {
                    if *stop_rx.borrow() { break }
                    bail!("the server closed a connection during the run (room {})", part.room);
                };
                on_message(&ctx, &part, &mut result, doc.as_ref(), &msg, epoch);
            }
            () = sleep_opt(wake) => {
                let Some(at_us) = next_at else { continue };
                if ctx.abort.load(Ordering::Relaxed) {
                    next_at = None;
                    continue;
                }
                let Some(w) = part.writer else { continue };
                // tokio's timer fires on millisecond ticks: a send up to
                // TIMER_SLACK late is stamped with its real time, so the
                // timer's granularity is not charged to the server; a later
                // send (a backlogged generator or socket) keeps its
                // intended time.
                let now_us = epoch.elapsed().as_micros() as u64;
                let late = now_us.saturating_sub(at_us) <= TIMER_SLACK_US;
                // (Never into the next phase: deliveries are counted per
                // phase by their stamp.)
                let stamp = if late && ctx.phase_of(now_us) == phase { now_us.max(at_us) } else { at_us };
                let marker = Marker { writer: w, seq, at_us: stamp }.encode();
                let msg = match ctx.plan.traffic {
                    Traffic::Keystrokes => wire::sync_message(wire::SYNC_UPDATE, &encoder.update(&marker)),
                    Traffic::Cursors => {
                        clock += 1;
                        let state = format!(
                            "{{\"user\":{{\"name\":\"peer {w}\",\"color\":\"#3b82f6\"}},\"cursor\":{{\"anchor\":{seq},\"head\":{seq}}},\"m\":\"{marker}\"}}"
                        );
                        wire::awareness_message(client_id, clock, &state)
                    }
                };
                seq += 1;
                result.sent[phase] += 1;
                ctx.expected.fetch_add(receivers, Ordering::Relaxed);
                conn.send(msg).await?;
                next_at = next_time(&ctx, &mut phase, &mut index, offset(w));
            }
        }
    }
    if let Some(doc) = &doc {
        let txn = doc.transact();
        let text = txn.get_text(wire::ROOT).map(|t| t.get_string(&txn)).unwrap_or_default();
        result.verified = Some((text, txn.store().pending_update().is_some()));
    }
    conn.close().await;
    Ok(result)
}

fn empty_result(part: Part, n: usize) -> PeerResult {
    PeerResult {
        room: part.room,
        writer: part.writer,
        sent: vec![0; n],
        delivered: vec![0; n],
        latencies: vec![Vec::new(); n],
        verified: None,
    }
}

/// Sleeps until `at`, or forever without one (a `select!` arm that never fires).
pub(crate) async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The intended time (µs from the epoch) of the writer's next send,
/// advancing through the phases; `None` after the last.
fn next_time(ctx: &Ctx, phase: &mut usize, index: &mut u64, offset: f64) -> Option<u64> {
    while *phase < ctx.plan.phases.len() {
        let p = ctx.plan.phases[*phase];
        let at = ctx.bounds[*phase] + ((*index as f64 + offset) / p.rate * 1e6) as u64;
        if at < ctx.bounds[*phase + 1] {
            *index += 1;
            return Some(at);
        }
        *phase += 1;
        *index = 0;
    }
    None
}

fn on_message(ctx: &Ctx, part: &Part, result: &mut PeerResult, doc: Option<&Doc>, msg: &[u8], epoch: Instant) {
    let payload = match wire::classify(msg) {
        Incoming::Update(u) | Incoming::Step2(u) => {
            if let (Some(doc), Ok(update)) = (doc, Update::decode_v1(u)) {
                let _ = doc.transact_mut().apply_update(update);
            }
            u
        }
        Incoming::Awareness(a) if ctx.plan.traffic == Traffic::Cursors => a,
        _ => return,
    };
    let now = epoch.elapsed().as_micros() as u64;
    let mut got = 0u64;
    wire::scan_markers(payload, |m| {
        if Some(m.writer) == part.writer {
            return;
        }
        let k = ctx.phase_of(m.at_us);
        let lat = now.saturating_sub(m.at_us);
        result.delivered[k] += 1;
        result.latencies[k].push(u32::try_from(lat).unwrap_or(u32::MAX));
        got += 1;
        if lat > ctx.plan.abort_after.as_micros() as u64 {
            ctx.abort.store(true, Ordering::Relaxed);
        }
    });
    ctx.delivered.fetch_add(got, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_catches_loss_reordering_and_garbage() {
        let mk = |w: u16, seqs: &[u32]| -> String {
            seqs.iter().map(|&s| Marker { writer: w, seq: s, at_us: 0 }.encode()).collect()
        };
        let good = format!("{}{}", mk(1, &[0, 1, 2]), mk(2, &[0, 1]));
        assert!(check_text(&good, false, &[(1, 3), (2, 2)]).is_ok());
        assert!(check_text(&good, true, &[(1, 3), (2, 2)]).is_err());
        assert!(check_text(&good, false, &[(1, 4), (2, 2)]).is_err());
        assert!(check_text(&mk(1, &[0, 2, 1]), false, &[(1, 3)]).is_err());
        assert!(check_text(&format!("{good}x"), false, &[(1, 3), (2, 2)]).is_err());
    }
}

/// The generator against a real `weft hub` (the debug binary `scripts/test`
/// builds): every keystroke and cursor move is delivered and counted, and
/// every verifier's document holds exactly what was typed.
#[cfg(test)]
mod against_a_hub {
    use super::*;

    async fn rooms(hub: &weft_tests::HubProcess, n: usize) -> anyhow::Result<Vec<Room>> {
        let mut rooms = Vec::new();
        for i in 0..n {
            let (id, owner) = hub.create_session(&format!("load-{i}")).await?;
            rooms.push(Room { url: format!("{}/y/{id}/doc?token={owner}", hub.ws_base()), dialect: Dialect::Plain });
        }
        Ok(rooms)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_delivery_is_counted_and_the_documents_converge() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("weft-load-test-{}", std::process::id()));
        let hub = weft_tests::HubProcess::start(&dir)?;
        let phases = vec![Phase { rate: 40.0, duration: Duration::from_millis(500) }; 2];
        let plan = Plan {
            rooms: rooms(&hub, 3).await?,
            peers_per_room: 4,
            writers_per_room: 2,
            phases: phases.clone(),
            traffic: Traffic::Keystrokes,
            abort_after: Duration::from_secs(10),
            drain: Duration::from_secs(20),
        };
        let (typed, ()) = run_with(plan, || ()).await?;
        let plan = Plan {
            rooms: rooms(&hub, 1).await?,
            peers_per_room: 3,
            writers_per_room: 3,
            phases,
            traffic: Traffic::Cursors,
            abort_after: Duration::from_secs(10),
            drain: Duration::from_secs(20),
        };
        let (cursors, ()) = run_with(plan, || ()).await?;
        drop(hub);
        let _ = std::fs::remove_dir_all(&dir);
        for (what, o) in [("keystrokes", &typed), ("cursors", &cursors)] {
            assert_eq!(o.converged, Ok(()), "{what}");
            for p in &o.phases {
                // 3 rooms x 2 writers x 20 per phase, to 3 others each; the
                // cursor room: 3 writers x 20 to 2 others each.
                assert!(p.sent >= 55, "{what}: {} sent in a phase", p.sent);
                assert_eq!(p.delivered, p.expected, "{what}: every sent item reaches every other peer");
                assert_eq!(p.latencies.len() as u64, p.delivered);
            }
        }
        Ok(())
    }
}
