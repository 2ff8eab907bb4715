//! B7: real editing traces replayed through each server, as Yjs updates
//! from real writers to real readers, with the traces' own timing.
//!
//! A trace is prepared once per run ([`prepare`]): every transaction is
//! made on a yrs document of its agent (one per agent, with a fixed client
//! id; a concurrent trace's agent first integrates exactly the
//! transactions its `parents` name, so its positions mean what the trace
//! says) and its Yjs update is kept, with the time to send it: the trace's
//! gaps ten times faster, a pause longer than 100 ms (one second of the
//! original) cut to 100 ms. Sending precomputed bytes keeps the CRDT off
//! the generator's hot path, as [`crate::wire::KeystrokeEncoder`] does for
//! the synthetic scenarios.
//!
//! A whole trace replayed at that speed lasts up to 45 minutes, so it is
//! cut into consecutive segments, one per room, played at the same time:
//! each room is seeded with the document as it stood where its segment
//! begins (the whole history up to there), its writers (one per agent)
//! play the segment's transactions, and its verifier must end holding the
//! text where the segment ends; together the rooms replay the whole trace
//! and the last one ends at `endContent`. `--quick` plays a few short
//! segments spread over the trace.
//!
//! Receivers need no markers: each received update is decoded and a
//! writer's transaction counts as delivered when the update holds the last
//! item it inserted, or, for a transaction that only deleted, an item only
//! it deleted (a transaction whose deletions another agent also made
//! concurrently has no such witness and is not timed). Latency is measured
//! from the intended send time (open loop, as [`crate::load`]).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use ropey::Rope;
use tokio::sync::watch;
use tokio::time::Instant;
use yrs::block::{ClientID, ID};
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, OffsetKind, Options, ReadTxn, StateVector, Text, Transact, Update};

use crate::compare::text_of;
use crate::load::{Conn, Outcome, PhaseStats, join_peers, sleep_opt};
use crate::servers::{Dialect, Room};
use crate::trace::{History, apply};
use crate::wire::{self, Incoming};

/// The trace's gaps are divided by this.
const SPEEDUP: f64 = 10.0;
/// No replayed gap is longer (a pause is thinking, not typing).
const MAX_GAP_S: f64 = 0.1;
/// How far past a receiver's oldest undelivered transaction of a writer a
/// received update is checked (updates of one writer arrive in order; a
/// server may merge several into one).
const WINDOW: usize = 64;
/// A sent transaction's stamp before it is sent.
const UNSENT: u64 = u64::MAX;

/// How a receiver recognises a transaction in an update it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Witness {
    /// The last item the transaction inserted.
    Inserted(ID),
    /// An item this transaction deleted and no other did.
    Deleted(ID),
}

impl Witness {
    fn found_in(&self, inserted: &yrs::IdSet, update: &Update) -> bool {
        match self {
            Witness::Inserted(id) => inserted.contains(id),
            Witness::Deleted(id) => update.delete_set().contains(id),
        }
    }
}

/// One transaction, ready to send.
#[derive(Debug, Clone)]
pub struct Step {
    /// µs from the trace's start, as replayed.
    pub at_us: u64,
    pub agent: usize,
    /// The y-protocols sync update message.
    message: Vec<u8>,
    witness: Option<Witness>,
}

/// A contiguous run of steps one room plays.
#[derive(Debug, Clone)]
pub struct Segment {
    pub steps: Range<usize>,
    /// The document before the first step (its whole history), as one
    /// update; empty for the trace's start.
    pub seed: Vec<u8>,
    pub seed_text: String,
    /// The text after the last step.
    pub end_text: String,
}

/// A trace made ready to replay, cut into segments.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub agents: usize,
    pub steps: Vec<Step>,
    pub segments: Vec<Segment>,
}

impl Prepared {
    /// Replayed seconds of the longest segment.
    pub fn longest_s(&self) -> f64 {
        self.segments.iter().map(|s| self.span_us(s) as f64 / 1e6).fold(0.0, f64::max)
    }

    fn span_us(&self, s: &Segment) -> u64 {
        match (s.steps.clone().next(), s.steps.clone().next_back()) {
            (Some(a), Some(b)) => self.steps[b].at_us - self.steps[a].at_us,
            _ => 0,
        }
    }
}

/// The yrs client id of agent `a` (stable, so runs are comparable).
fn client_of(agent: usize) -> u64 {
    1_000 + agent as u64
}

/// How to cut a trace into segments.
#[derive(Debug, Clone, Copy)]
pub enum Cut {
    /// The whole trace, in this many consecutive segments.
    Whole { rooms: usize },
    /// `rooms` segments of about `seconds` each, starting at evenly spaced
    /// points of the trace.
    Samples { rooms: usize, seconds: f64 },
}

/// Makes every transaction of `history` on its agent's document, keeps
/// the updates and cuts them into segments. Fails unless the merged
/// result reads `endContent`.
pub fn prepare(history: &History, cut: Cut) -> anyhow::Result<Prepared> {
    let name = &history.name;
    let n = history.txns.len();
    ensure!(n > 0, "{name} has no transactions");
    // The replayed times.
    let mut times = Vec::with_capacity(n);
    let mut t = 0.0f64;
    for (i, txn) in history.txns.iter().enumerate() {
        if i > 0 {
            t += ((txn.at - history.txns[i - 1].at) / SPEEDUP).clamp(0.0, MAX_GAP_S);
        }
        times.push((t * 1e6) as u64);
    }
    let options = |agent: usize| Options {
        client_id: ClientID::new(client_of(agent)),
        offset_kind: OffsetKind::Utf16,
        ..Options::default()
    };
    let docs: Vec<Doc> = (0..history.agents).map(|a| Doc::with_options(options(a))).collect();
    let texts: Vec<yrs::TextRef> = docs.iter().map(|d| d.get_or_insert_text(wire::ROOT)).collect();
    let mut ropes: Vec<Rope> = vec![Rope::from_str(&history.start); history.agents];
    let mut seen: Vec<Vec<bool>> = vec![vec![false; n]; history.agents];
    if !history.start.is_empty() {
        // The start text, typed by agent 0 and known to everyone.
        let start = {
            let mut txn = docs[0].transact_mut();
            texts[0].insert(&mut txn, 0, &history.start);
            txn.encode_update_v1()
        };
        for (a, doc) in docs.iter().enumerate().skip(1) {
            doc.transact_mut().apply_update(Update::decode_v1(&start)?).with_context(|| format!("agent {a}"))?;
        }
    }
    // The merge of every transaction so far (for seeds and expected texts).
    let all = Doc::with_options(Options { client_id: ClientID::new(1), ..Options::default() });
    let all_text = all.get_or_insert_text(wire::ROOT);
    if !history.start.is_empty() {
        let start = docs[0].transact().encode_state_as_update_v1(&StateVector::default());
        all.transact_mut().apply_update(Update::decode_v1(&start)?)?;
    }
    let mut updates: Vec<Vec<u8>> = Vec::with_capacity(n);
    let mut inserted: Vec<Option<ID>> = Vec::with_capacity(n);
    let mut deleted: Vec<Vec<ID>> = Vec::with_capacity(n);
    let mut deletions: HashMap<ID, u32> = HashMap::new();
    let bounds = boundaries(&times, cut);
    let mut states: HashMap<usize, (Vec<u8>, String)> = HashMap::new();
    let mut missing = Vec::new();
    for (i, txn) in history.txns.iter().enumerate() {
        if bounds.contains(&i) {
            let t = all.transact();
            states.insert(i, (t.encode_state_as_update_v1(&StateVector::default()), all_text.get_string(&t)));
        }
        let a = txn.agent;
        // The agent sees exactly what its parents saw: integrate the
        // transactions of their history it has not seen, oldest first.
        missing.clear();
        let mut stack: Vec<usize> = txn.parents.clone();
        while let Some(p) = stack.pop() {
            if !seen[a][p] {
                seen[a][p] = true;
                missing.push(p);
                stack.extend_from_slice(&history.txns[p].parents);
            }
        }
        if !missing.is_empty() {
            missing.sort_unstable();
            let mut t = docs[a].transact_mut();
            for &p in &missing {
                if !updates[p].is_empty() {
                    t.apply_update(Update::decode_v1(&updates[p])?).with_context(|| format!("{name}: txn {p}"))?;
                }
            }
            ensure!(t.store().pending_update().is_none(), "{name}: txn {i}: its parents' history left updates pending");
            ropes[a] = Rope::from_str(&texts[a].get_string(&t));
        }
        seen[a][i] = true;
        let clock_before = docs[a].transact().state_vector().get(&ClientID::new(client_of(a)));
        let update = {
            let mut t = docs[a].transact_mut();
            for (k, p) in txn.patches.iter().enumerate() {
                let rope = &mut ropes[a];
                let end = p.pos.checked_add(p.del).context("patch range overflows")?;
                ensure!(end <= rope.len_chars(), "{name}: txn {i} patch {k} reaches past the end");
                let pos16 = u32::try_from(rope.char_to_utf16_cu(p.pos))?;
                let del16 = u32::try_from(rope.char_to_utf16_cu(end))? - pos16;
                if del16 > 0 {
                    texts[a].remove_range(&mut t, pos16, del16);
                }
                if !p.ins.is_empty() {
                    texts[a].insert(&mut t, pos16, &p.ins);
                }
                apply(rope, p).with_context(|| format!("{name}: txn {i} patch {k}"))?;
            }
            let mut ids = Vec::new();
            for (client, ranges) in t.delete_set().iter() {
                for r in ranges.iter() {
                    for clock in r.clone() {
                        ids.push(ID::new(*client, clock));
                    }
                }
            }
            for id in &ids {
                *deletions.entry(*id).or_default() += 1;
            }
            deleted.push(ids);
            if t.insert_set().is_empty() && t.delete_set().is_empty() { Vec::new() } else { t.encode_update_v1() }
        };
        let clock_after = docs[a].transact().state_vector().get(&ClientID::new(client_of(a)));
        inserted.push((clock_after > clock_before).then(|| ID::new(ClientID::new(client_of(a)), clock_after - 1)));
        if !update.is_empty() {
            all.transact_mut().apply_update(Update::decode_v1(&update)?).with_context(|| format!("{name}: txn {i}"))?;
        }
        updates.push(update);
    }
    {
        let t = all.transact();
        ensure!(t.store().pending_update().is_none(), "{name}: the merged replay left updates pending");
        let text = all_text.get_string(&t);
        ensure!(
            text == history.end,
            "{name}: replaying every transaction through yrs does not give endContent ({} chars, expected {})",
            text.chars().count(),
            history.end.chars().count()
        );
        states.insert(n, (t.encode_state_as_update_v1(&StateVector::default()), text));
    }
    // Steps: the transactions that changed something.
    let mut steps = Vec::new();
    let mut step_of = vec![0usize; n + 1];
    for i in 0..n {
        step_of[i] = steps.len();
        if updates[i].is_empty() {
            continue;
        }
        let witness = match inserted[i] {
            Some(id) => Some(Witness::Inserted(id)),
            None => deleted[i].iter().find(|id| deletions.get(id) == Some(&1)).map(|id| Witness::Deleted(*id)),
        };
        steps.push(Step {
            at_us: times[i],
            agent: history.txns[i].agent,
            message: wire::sync_message(wire::SYNC_UPDATE, &updates[i]),
            witness,
        });
    }
    step_of[n] = steps.len();
    let mut segments = Vec::new();
    for pair in bounds.windows(2).step_by(match cut {
        Cut::Whole { .. } => 1,
        Cut::Samples { .. } => 2,
    }) {
        let (a, b) = (pair[0], pair[1]);
        let (seed, seed_text) = states.get(&a).cloned().context("a segment start without a state")?;
        let end_text = states.get(&b).map(|s| s.1.clone()).context("a segment end without a state")?;
        let seed = if a == 0 && history.start.is_empty() { Vec::new() } else { seed };
        segments.push(Segment { steps: step_of[a]..step_of[b], seed, seed_text, end_text });
    }
    Ok(Prepared { agents: history.agents, steps, segments })
}

/// Transaction indexes where segments start and end: for `Whole`, the
/// consecutive bounds (first 0, last n); for `Samples`, start/end pairs.
fn boundaries(times: &[u64], cut: Cut) -> Vec<usize> {
    let n = times.len();
    match cut {
        Cut::Whole { rooms } => {
            // Equal replayed time per segment, so the rooms finish together.
            let total = times.last().copied().unwrap_or(0).max(1);
            let rooms = rooms.max(1);
            let mut out = vec![0];
            for r in 1..rooms {
                let at = total * r as u64 / rooms as u64;
                let i = times.partition_point(|&t| t < at);
                if i > *out.last().unwrap_or(&0) && i < n {
                    out.push(i);
                }
            }
            out.push(n);
            out
        }
        Cut::Samples { rooms, seconds } => {
            let mut out = Vec::new();
            let rooms = rooms.max(1);
            let mut last_end = 0;
            for r in 0..rooms {
                let start = (n * r / rooms).max(last_end);
                let until = times.get(start).copied().unwrap_or(0) + (seconds * 1e6) as u64;
                let end = start + times[start..].partition_point(|&t| t < until);
                if end > start {
                    out.extend([start, end]);
                    last_end = end;
                }
            }
            out
        }
    }
}

/// One replay's shape.
#[derive(Debug, Clone)]
pub struct Plan {
    /// One room per segment, in order.
    pub rooms: Vec<Room>,
    /// Peers per room that only read (at least one: the verifier).
    pub readers: usize,
    /// How long to wait for outstanding deliveries after the last send.
    pub drain: Duration,
}

struct Ctx {
    prepared: Arc<Prepared>,
    /// When each step was sent (µs from the epoch), per room; UNSENT before.
    stamps: Vec<Vec<AtomicU64>>,
    /// Each room's start, µs from the epoch.
    room_start: Vec<u64>,
    delivered: AtomicU64,
    expected: AtomicU64,
}

struct PeerResult {
    room: usize,
    sent: u64,
    delivered: u64,
    latencies: Vec<u32>,
    verified: Option<(String, bool)>,
}

/// A deterministic start offset in [0, 1 s) for room `r`, so segments do
/// not burst in step.
fn stagger_us(r: usize) -> u64 {
    let mut x = (r as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 31;
    x % 1_000_000
}

/// Replays `prepared` on `plan.rooms` (one per segment): seeds each room,
/// connects its writers and readers, plays, drains and verifies. Calls
/// `on_connected` once every peer is synced.
pub async fn run<T>(
    prepared: Arc<Prepared>,
    plan: Plan,
    on_connected: impl FnOnce() -> T,
) -> anyhow::Result<(Outcome, T)> {
    ensure!(plan.rooms.len() == prepared.segments.len(), "one room per segment");
    ensure!(plan.readers >= 1, "a room needs a verifier");
    let began = Instant::now();
    // Seed and connect every room at once (each room's peers in turn).
    let mut opening = Vec::new();
    for (r, room) in plan.rooms.iter().enumerate() {
        let (room, prepared, peers) = (room.clone(), Arc::clone(&prepared), prepared.agents + plan.readers);
        opening.push(tokio::spawn(async move { open_room(r, &room, &prepared.segments[r], peers).await }));
    }
    let mut conns = Vec::new();
    for task in opening {
        match tokio::time::timeout(Duration::from_secs(180), task).await {
            Ok(Ok(Ok(c))) => conns.push(c),
            Ok(Ok(Err(err))) => return Err(err),
            Ok(Err(err)) => bail!("a room's setup panicked: {err}"),
            Err(_) => bail!("a room was not seeded and connected within 180 s"),
        }
    }
    let connect = began.elapsed();
    let sample = on_connected();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ctx = Arc::new(Ctx {
        stamps: prepared.segments.iter().map(|s| s.steps.clone().map(|_| AtomicU64::new(UNSENT)).collect()).collect(),
        room_start: (0..plan.rooms.len()).map(stagger_us).collect(),
        prepared: Arc::clone(&prepared),
        delivered: AtomicU64::new(0),
        expected: AtomicU64::new(0),
    });
    let epoch = Instant::now() + Duration::from_millis(50);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for (r, room_conns) in conns.into_iter().enumerate() {
        let peers = room_conns.len();
        for (p, (conn, initial)) in room_conns.into_iter().enumerate() {
            let role = if p < prepared.agents {
                Role::Writer(p)
            } else if p == peers - 1 {
                Role::Verifier(initial)
            } else {
                Role::Reader
            };
            tasks.push(tokio::spawn(peer(Arc::clone(&ctx), r, role, conn, peers, epoch, stop_rx.clone())));
        }
    }
    let span = prepared.segments.iter().map(|s| prepared.span_us(s)).max().unwrap_or(0) + 1_000_000;
    tokio::time::sleep_until(epoch + Duration::from_micros(span)).await;
    let deadline = Instant::now() + plan.drain;
    while Instant::now() < deadline {
        let sent_all = ctx.stamps.iter().flatten().all(|s| s.load(Ordering::Relaxed) != UNSENT);
        if sent_all && ctx.delivered.load(Ordering::Relaxed) >= ctx.expected.load(Ordering::Relaxed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(true);
    let results = join_peers(tasks).await?;
    let mut phase = PhaseStats {
        rate: prepared.steps.len() as f64 / (span as f64 / 1e6),
        duration: Duration::from_micros(span),
        expected: ctx.expected.load(Ordering::Relaxed),
        ..PhaseStats::default()
    };
    let mut converged = Ok(());
    for r in &results {
        phase.sent += r.sent;
        phase.delivered += r.delivered;
        phase.latencies.extend_from_slice(&r.latencies);
        if let (Some((text, pending)), Ok(())) = (&r.verified, &converged) {
            let want = &prepared.segments[r.room].end_text;
            if *pending {
                converged = Err(format!("room {}: updates left pending (missing or undecodable)", r.room));
            } else if text != want {
                converged = Err(format!(
                    "room {}: the verifier holds {} chars, the trace {} at the segment's end",
                    r.room,
                    text.chars().count(),
                    want.chars().count()
                ));
            }
        }
    }
    phase.latencies.sort_unstable();
    let expected_steps: u64 = prepared.segments.iter().map(|s| s.steps.len() as u64).sum();
    if converged.is_ok() && phase.sent != expected_steps {
        converged = Err(format!("{} of {expected_steps} transactions were sent", phase.sent));
    }
    Ok((Outcome { phases: vec![phase], aborted_in: None, connect, converged }, sample))
}

/// Seeds room `r` through its first peer (which stays: some servers drop a
/// document when its last peer leaves), then connects the others. Every
/// peer must start from the seed.
async fn open_room(r: usize, room: &Room, seg: &Segment, peers: usize) -> anyhow::Result<Vec<(Conn, Vec<u8>)>> {
    let mut conns = Vec::with_capacity(peers);
    let (mut first, initial) = Conn::open(room, None).await.with_context(|| format!("room {r}"))?;
    if !seg.seed.is_empty() && room.dialect != Dialect::Relay {
        first.send(wire::sync_message(wire::SYNC_UPDATE, &seg.seed)).await?;
        // Messages of one connection are handled in order: the answer to
        // this step 1 holds the seed once the server has it.
        first.send(wire::empty_step1()).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let msg = tokio::time::timeout_at(deadline, first.recv())
                .await
                .with_context(|| format!("room {r}: the seed was not acknowledged within 60 s"))??
                .with_context(|| format!("room {r}: closed while seeding"))?;
            match wire::classify(&msg) {
                Incoming::Step1 => first.send(wire::empty_step2()).await?,
                Incoming::Step2(state) => {
                    let text = text_of(state)?;
                    ensure!(text == seg.seed_text, "room {r}: the server's document does not read the seed");
                    break;
                }
                _ => {}
            }
        }
    }
    conns.push((first, initial));
    for _ in 1..peers {
        conns.push(Conn::open(room, None).await.with_context(|| format!("room {r}"))?);
    }
    Ok(conns)
}

enum Role {
    Writer(usize),
    Reader,
    /// A reader that integrates everything, starting from the state the
    /// server sent when it connected.
    Verifier(Vec<u8>),
}

/// What a receiver has seen of each writer's steps.
struct Seen {
    /// Per agent: the room's step indexes (into the segment) of its steps.
    steps: Vec<Vec<usize>>,
    /// Per agent: its steps delivered here (untimed ones count as done).
    done: Vec<Vec<bool>>,
    /// Per agent: the first not yet delivered.
    next: Vec<usize>,
}

async fn peer(
    ctx: Arc<Ctx>,
    room: usize,
    role: Role,
    mut conn: Conn,
    peers: usize,
    epoch: Instant,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<PeerResult> {
    let prepared = &ctx.prepared;
    let seg = &prepared.segments[room];
    let own = match role {
        Role::Writer(a) => Some(a),
        _ => None,
    };
    let doc = match &role {
        Role::Verifier(initial) => {
            let doc = Doc::new();
            let text = doc.get_or_insert_text(wire::ROOT);
            // A relay keeps no state: the verifier starts from the seed itself.
            let start = if initial.is_empty() { &seg.seed } else { initial };
            if !start.is_empty() {
                doc.transact_mut().apply_update(Update::decode_v1(start)?)?;
            }
            let got = text.get_string(&doc.transact());
            ensure!(got == seg.seed_text, "room {room}: the verifier did not start from the seed");
            Some(doc)
        }
        _ => None,
    };
    let mut seen = Seen { steps: vec![Vec::new(); prepared.agents], done: Vec::new(), next: vec![0; prepared.agents] };
    for (k, i) in seg.steps.clone().enumerate() {
        seen.steps[prepared.steps[i].agent].push(k);
    }
    seen.done = seen
        .steps
        .iter()
        .map(|ks| ks.iter().map(|&k| prepared.steps[seg.steps.start + k].witness.is_none()).collect())
        .collect();
    let mut result = PeerResult { room, sent: 0, delivered: 0, latencies: Vec::new(), verified: None };
    // The writer's own steps, in order.
    let mine: Vec<usize> = own.map(|a| seen.steps[a].clone()).unwrap_or_default();
    let mut cursor = 0usize;
    let base = seg.steps.start;
    let first_at = seg.steps.clone().next().map_or(0, |i| prepared.steps[i].at_us);
    let due = |k: usize| ctx.room_start[room] + prepared.steps[base + k].at_us - first_at;
    let receivers = (peers - 1) as u64;
    loop {
        let wake = mine.get(cursor).map(|&k| epoch + Duration::from_micros(due(k)));
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            msg = conn.recv() => {
                let Some(msg) = msg? else {
                    if *stop.borrow() { break }
                    bail!("the server closed a connection during the replay (room {room})");
                };
                on_message(&ctx, room, own, &mut seen, &mut result, doc.as_ref(), &msg, epoch)?;
            }
            () = sleep_opt(wake) => {
                let Some(&k) = mine.get(cursor) else { continue };
                let step = &prepared.steps[base + k];
                let at = due(k);
                // Timer ticks are a millisecond: a send up to 2 ms late is
                // stamped with its real time, a later one keeps its due time.
                let now = epoch.elapsed().as_micros() as u64;
                let stamp = if now.saturating_sub(at) <= 2_000 { now.max(at) } else { at };
                ctx.stamps[room][k].store(stamp, Ordering::Relaxed);
                if step.witness.is_some() {
                    ctx.expected.fetch_add(receivers, Ordering::Relaxed);
                }
                conn.send(step.message.clone()).await?;
                result.sent += 1;
                cursor += 1;
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

#[expect(clippy::too_many_arguments, reason = "one receiver's whole state, passed by reference")]
fn on_message(
    ctx: &Ctx,
    room: usize,
    own: Option<usize>,
    seen: &mut Seen,
    result: &mut PeerResult,
    doc: Option<&Doc>,
    msg: &[u8],
    epoch: Instant,
) -> anyhow::Result<()> {
    let bytes = match wire::classify(msg) {
        Incoming::Update(u) | Incoming::Step2(u) => u,
        _ => return Ok(()),
    };
    let now = epoch.elapsed().as_micros() as u64;
    let update = Update::decode_v1(bytes).with_context(|| format!("room {room}: an undecodable update"))?;
    let inserted = update.insertions(true);
    let base = ctx.prepared.segments[room].steps.start;
    let mut got = 0u64;
    for a in 0..seen.steps.len() {
        if Some(a) == own {
            continue;
        }
        let ks = &seen.steps[a];
        let start = seen.next[a];
        let end = (start + WINDOW).min(ks.len());
        for (done, &k) in seen.done[a][start..end].iter_mut().zip(&ks[start..end]) {
            if *done {
                continue;
            }
            let step = &ctx.prepared.steps[base + k];
            if step.witness.is_some_and(|w| w.found_in(&inserted, &update)) {
                *done = true;
                let sent = ctx.stamps[room][k].load(Ordering::Relaxed);
                if sent != UNSENT {
                    result.latencies.push(u32::try_from(now.saturating_sub(sent)).unwrap_or(u32::MAX));
                }
                result.delivered += 1;
                got += 1;
            }
        }
        while seen.next[a] < ks.len() && seen.done[a][seen.next[a]] {
            seen.next[a] += 1;
        }
    }
    ctx.delivered.fetch_add(got, Ordering::Relaxed);
    if let Some(doc) = doc {
        doc.transact_mut().apply_update(update).with_context(|| format!("room {room}: the verifier's update"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Patch, Txn};

    fn txn(at: f64, agent: usize, parents: &[usize], patches: &[(usize, usize, &str)]) -> Txn {
        Txn {
            at,
            agent,
            parents: parents.to_vec(),
            patches: patches.iter().map(|&(pos, del, ins)| Patch { pos, del, ins: ins.into() }).collect(),
        }
    }

    /// Two agents editing concurrently: a replace beside an insert, a
    /// merge, deletions each agent made without seeing the other's, the same
    /// character deleted by both, then a long stretch of alternate typing.
    pub(super) fn concurrent_history() -> History {
        let mut txns = vec![
            txn(0.0, 0, &[], &[(0, 0, "hello world")]),
            txn(0.1, 1, &[0], &[(5, 0, ", dear")]),
            txn(0.1, 0, &[0], &[(0, 5, "HELLO")]),
            txn(0.2, 1, &[1, 2], &[(5, 6, "")]),
            txn(0.2, 0, &[2], &[(6, 5, "")]),
            txn(0.3, 1, &[3], &[(11, 0, "!")]),
            txn(0.4, 0, &[4, 5], &[(6, 0, "there")]),
            txn(0.5, 0, &[6], &[(0, 1, "")]),
            txn(0.5, 1, &[6], &[(0, 1, "")]),
            txn(0.6, 1, &[7, 8], &[(0, 0, "h")]),
        ];
        let mut text = String::from("hELLO there!");
        for k in 0..60 {
            let i = txns.len();
            let ch = if k % 7 == 6 { "\n" } else { "é" };
            // Every fifth keystroke deletes the one before instead.
            let patch = if k % 5 == 4 {
                text.pop();
                (text.chars().count(), 1, "")
            } else {
                let at = text.chars().count();
                text.push_str(ch);
                (at, 0, ch)
            };
            txns.push(txn(0.6 + f64::from(k) * 0.05, k as usize % 2, &[i - 1], &[patch]));
        }
        History { name: "test".into(), agents: 2, start: String::new(), end: text, txns }
    }

    #[test]
    fn a_concurrent_history_prepares_to_its_end_text_and_cuts_into_contiguous_segments() -> anyhow::Result<()> {
        let history = concurrent_history();
        let prepared = prepare(&history, Cut::Whole { rooms: 3 })?;
        assert_eq!(prepared.segments.len(), 3);
        assert_eq!(prepared.segments[0].steps.start, 0);
        assert!(prepared.segments[0].seed.is_empty());
        for pair in prepared.segments.windows(2) {
            assert_eq!(pair[0].steps.end, pair[1].steps.start);
            assert_eq!(pair[0].end_text, pair[1].seed_text);
            assert_eq!(text_of(&pair[1].seed)?, pair[1].seed_text);
        }
        let last = prepared.segments.last().context("segments")?;
        assert_eq!(last.steps.end, prepared.steps.len());
        assert_eq!(last.end_text, history.end);
        // The double deletion of 'H' has no witness; every other step has.
        let untimed = prepared.steps.iter().filter(|s| s.witness.is_none()).count();
        assert_eq!(untimed, 2);
        // A wrong end text is refused.
        let mut wrong = history.clone();
        wrong.end.push('x');
        assert!(prepare(&wrong, Cut::Whole { rooms: 1 }).is_err());
        // A position past what the agent saw is refused.
        let mut past = history;
        past.txns[1].patches[0].pos = 50;
        assert!(prepare(&past, Cut::Whole { rooms: 1 }).is_err());
        Ok(())
    }

    #[test]
    fn samples_are_short_disjoint_segments() -> anyhow::Result<()> {
        let prepared = prepare(&concurrent_history(), Cut::Samples { rooms: 3, seconds: 0.01 })?;
        assert_eq!(prepared.segments.len(), 3);
        for pair in prepared.segments.windows(2) {
            assert!(pair[0].steps.end <= pair[1].steps.start);
        }
        assert!(prepared.longest_s() <= 0.01);
        Ok(())
    }
}

/// The replay against a real `weft hub` (the debug binary `scripts/test`
/// builds): every timed transaction reaches every other peer and each
/// room's verifier ends at its segment's text.
#[cfg(test)]
mod against_a_hub {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_concurrent_trace_replays_through_a_hub_and_converges() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("weft-trace-load-test-{}", std::process::id()));
        let hub = weft_tests::HubProcess::start(&dir)?;
        let prepared = Arc::new(prepare(&tests::concurrent_history(), Cut::Whole { rooms: 2 })?);
        let mut rooms = Vec::new();
        for i in 0..2 {
            let (id, owner) = hub.create_session(&format!("trace-{i}")).await?;
            rooms.push(Room { url: format!("{}/y/{id}/doc?token={owner}", hub.ws_base()), dialect: Dialect::Plain });
        }
        let plan = Plan { rooms, readers: 2, drain: Duration::from_secs(20) };
        let result = run(Arc::clone(&prepared), plan, || ()).await;
        drop(hub);
        let _ = std::fs::remove_dir_all(&dir);
        let (outcome, ()) = result?;
        assert_eq!(outcome.converged, Ok(()));
        let phase = &outcome.phases[0];
        assert_eq!(phase.sent, prepared.steps.len() as u64);
        // Each timed step reaches the other writer and both readers.
        let timed = prepared.steps.iter().filter(|s| s.witness.is_some()).count() as u64;
        assert_eq!(phase.expected, timed * 3);
        assert_eq!(phase.delivered, phase.expected);
        assert_eq!(phase.latencies.len() as u64, phase.delivered);
        Ok(())
    }
}
