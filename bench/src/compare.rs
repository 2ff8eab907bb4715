//! `weft-bench compare`: weft's hub against y-sweet, `@y/websocket-server`,
//! Hocuspocus and a no-CRDT relay floor, driven by one load generator
//! ([`crate::load`]) in one run, interleaved server by server over several
//! rounds, with the generator and the server pinned to different cores.
//!
//! Scenarios (the ids of docs/benchmarks.md): B1 typical co-editing, B2
//! many sessions, B3 the B2 shape ramped ×1.5 per step until p99 passes
//! 10 ms or a delivery is lost (the highest sustained step is the
//! headline), B4 one session of 200 peers, B5 memory of idle documents and
//! connections (then a writer per session), B10K 10,000 connections (2,500
//! sessions of 4, a writer each at 1 keystroke/s), B6 100 peers joining a large
//! document at once, B7 real editing traces replayed as Yjs updates
//! ([`crate::trace_load`]), B8 cursor (awareness) traffic, and the TCP ping-pong
//! floor. A run that loses a delivery or does not converge is reported as
//! a failure, however fast.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, OffsetKind, Options, ReadTxn, StateVector, Text, Transact, Update};

use crate::load::{self, Conn, Outcome, Phase, Plan, Traffic};
use crate::servers::{self, Kind, Paths, Server};
use crate::trace::{self, Trace};
use crate::trace_load::{self, Cut};
use crate::wire;

/// B7: peers per room that only read, beside one writer per agent.
const B7_READERS: usize = 4;

/// The generator's core; servers run on the other.
const GENERATOR_CORE: usize = 0;
const SERVER_CORE: usize = 1;

/// Parsed `compare` options.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub scenarios: Vec<String>,
    pub servers: Vec<Kind>,
    pub rounds: usize,
    pub quick: bool,
    pub traces_dir: std::path::PathBuf,
}

pub const SCENARIOS: [&str; 10] = ["B1", "B2", "B3", "B4", "B5", "B10K", "B6", "B7", "B8", "TCP"];

/// B7's traces: two sequential, one concurrent (one writer per agent).
pub const B7_TRACES: [&str; 3] = ["sequential/seph-blog1", "sequential/rustcode", "concurrent/clownschool"];

pub fn parse_options<'a>(
    mut it: impl Iterator<Item = &'a String>,
    usage: &str,
    traces_dir: std::path::PathBuf,
) -> anyhow::Result<Option<CompareOptions>> {
    let mut o = CompareOptions {
        scenarios: SCENARIOS.iter().map(|s| (*s).to_owned()).collect(),
        servers: Kind::ALL.to_vec(),
        rounds: 5,
        quick: false,
        traces_dir,
    };
    while let Some(arg) = it.next() {
        let mut value = |what: &str| it.next().with_context(|| format!("{arg} needs {what}"));
        match arg.as_str() {
            "--quick" => {
                o.quick = true;
                o.rounds = 1;
            }
            "--rounds" => o.rounds = value("a number")?.parse().context("--rounds")?,
            "--scenario" | "--scenarios" => {
                o.scenarios = value("scenario ids")?.split(',').map(|s| s.trim().to_uppercase()).collect();
                for s in &o.scenarios {
                    ensure!(SCENARIOS.contains(&s.as_str()), "unknown scenario {s:?}: expected one of {SCENARIOS:?}");
                }
            }
            "--servers" => {
                o.servers =
                    value("server names")?.split(',').map(|s| Kind::parse(s.trim())).collect::<Result<_, _>>()?;
            }
            "--traces" => o.traces_dir = value("a directory")?.into(),
            "-h" | "--help" => return Ok(None),
            other => bail!("unknown option {other:?}\n\n{usage}"),
        }
    }
    ensure!(o.rounds >= 1, "--rounds must be at least 1");
    Ok(Some(o))
}

/// One server's result in one round of one scenario.
#[derive(Debug, Clone)]
struct Measured {
    outcome: Option<Outcome>,
    /// Server CPU time over the measured phases.
    cpu: Duration,
    peak_kib: u64,
    /// Resident memory growth while the scenario's peers connected.
    connect_kib: i64,
    /// B6: times to synced, ms, sorted.
    joins_ms: Vec<f64>,
    /// Deliveries while `cpu` was counted (warm-up included).
    all_delivered: u64,
    /// Peers connected (for memory per connection).
    connections: usize,
    error: Option<String>,
}

impl Measured {
    fn failed(err: String) -> Measured {
        Measured {
            outcome: None,
            cpu: Duration::ZERO,
            peak_kib: 0,
            connect_kib: 0,
            joins_ms: Vec::new(),
            all_delivered: 0,
            connections: 0,
            error: Some(err),
        }
    }
}

fn ladder(quick: bool) -> Vec<Phase> {
    let (steps, secs) = if quick { (6, 2) } else { (8, 3) };
    (0..steps).map(|i| Phase { rate: 10.0 * 1.5f64.powi(i), duration: Duration::from_secs(secs) }).collect()
}

/// The plan of a fan-out scenario on `rooms`.
fn plan_for(id: &str, quick: bool, rooms: Vec<servers::Room>) -> Plan {
    let secs = if quick { 3 } else { 5 };
    let steady = |rate: f64| vec![Phase { rate, duration: Duration::from_secs(secs) }];
    let (peers, writers, phases, traffic) = match id {
        "B1" | "B2" => (10, 1, steady(10.0), Traffic::Keystrokes),
        "B3" => (10, 1, ladder(quick), Traffic::Keystrokes),
        "B4" => (200, 5, steady(20.0), Traffic::Keystrokes),
        "B5" => (3, 1, steady(2.0), Traffic::Keystrokes),
        "B10K" => (4, 1, steady(1.0), Traffic::Keystrokes),
        _ => (20, 20, steady(30.0), Traffic::Cursors), // B8
    };
    // A first second at the first rate warms connections and caches up; it
    // is dropped from the results (see `fan_out`).
    let mut phases = phases;
    phases.insert(0, Phase { rate: phases[0].rate, duration: Duration::from_secs(1) });
    Plan {
        rooms,
        peers_per_room: peers,
        writers_per_room: writers,
        phases,
        traffic,
        abort_after: Duration::from_secs(2),
        drain: Duration::from_secs(if id == "B3" { 3 } else { 10 }),
    }
}

fn rooms_for(id: &str) -> usize {
    match id {
        "B1" => 50,
        "B2" | "B3" => 200,
        "B5" => 1000,
        "B10K" => 2500,
        _ => 1,
    }
}

/// Runs the comparison and prints a markdown report.
pub fn run(opts: &CompareOptions, paths: &Paths) -> anyhow::Result<()> {
    paths.check(&opts.servers)?;
    std::fs::create_dir_all(&paths.work)?;
    let mut report = String::new();
    let _ = writeln!(report, "{}", header(opts));
    servers::pin_self(GENERATOR_CORE)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    for id in &opts.scenarios {
        if id == "TCP" {
            let line = rt.block_on(tcp_floor(paths, opts.quick))?;
            let _ = writeln!(report, "### TCP ping-pong floor\n\n{line}\n");
            eprintln!("{line}");
            continue;
        }
        if id == "B7" {
            for name in B7_TRACES {
                let results = replay_trace(&rt, opts, paths, name)?;
                let _ = writeln!(report, "{}", table(&format!("B7 {name}"), &results));
            }
            continue;
        }
        let seed = if id == "B6" { Some(seed_document(&opts.traces_dir)?) } else { None };
        let mut results: BTreeMap<Kind, Vec<Measured>> = BTreeMap::new();
        for round in 0..opts.rounds {
            for &kind in &opts.servers {
                if id == "B6" && kind == Kind::Relay {
                    continue; // a relay holds no document to join
                }
                eprintln!("weft-bench compare: {id} round {} of {}: {}", round + 1, opts.rounds, kind.name());
                let measured = rt.block_on(one(id, kind, round, paths, opts.quick, seed.as_ref()));
                let measured = measured.unwrap_or_else(|err| Measured::failed(format!("{err:#}")));
                if let Some(err) = &measured.error {
                    eprintln!("  failed: {err}");
                } else {
                    eprintln!("  {}", brief(id, &measured));
                }
                results.entry(kind).or_default().push(measured);
            }
        }
        let _ = writeln!(report, "{}", table(id, &results));
    }
    println!("{report}");
    Ok(())
}

/// B7 for one trace: prepares it once, then replays it on every server in
/// every round.
fn replay_trace(
    rt: &tokio::runtime::Runtime,
    opts: &CompareOptions,
    paths: &Paths,
    name: &str,
) -> anyhow::Result<BTreeMap<Kind, Vec<Measured>>> {
    let began = std::time::Instant::now();
    let history = trace::History::load(&opts.traces_dir, name)?;
    let cut = if opts.quick { Cut::Samples { rooms: 4, seconds: 3.0 } } else { Cut::Whole { rooms: 60 } };
    let prepared = Arc::new(trace_load::prepare(&history, cut)?);
    eprintln!(
        "weft-bench compare: B7 {name}: {} updates from {} agent(s) in {} segments of up to {:.0} s, prepared in {:.1} s",
        prepared.steps.len(),
        prepared.agents,
        prepared.segments.len(),
        prepared.longest_s(),
        began.elapsed().as_secs_f64()
    );
    let mut results: BTreeMap<Kind, Vec<Measured>> = BTreeMap::new();
    for round in 0..opts.rounds {
        for &kind in &opts.servers {
            eprintln!("weft-bench compare: B7 {name} round {} of {}: {}", round + 1, opts.rounds, kind.name());
            let measured = rt.block_on(async {
                let mut server = Server::start(kind, SERVER_CORE, paths, round)?;
                let result = replay_on(&server, &prepared).await;
                if !server.alive() {
                    bail!("{} died during the run; its log:\n{}", kind.name(), server.log());
                }
                result
            });
            let measured = measured.unwrap_or_else(|err| Measured::failed(format!("{err:#}")));
            match &measured.error {
                Some(err) => eprintln!("  failed: {err}"),
                None => eprintln!("  {}", brief("B7", &measured)),
            }
            results.entry(kind).or_default().push(measured);
        }
    }
    Ok(results)
}

async fn replay_on(server: &Server, prepared: &Arc<trace_load::Prepared>) -> anyhow::Result<Measured> {
    let rooms = server.rooms(prepared.segments.len(), "trace").await?;
    let (rss_before, _) = server.rss_kib();
    let plan = trace_load::Plan { rooms, readers: B7_READERS, drain: Duration::from_secs(20) };
    let (outcome, (connected_rss, connected_cpu)) = trace_load::run(Arc::clone(prepared), plan, || {
        let (rss, _) = server.rss_kib();
        (rss, server.cpu())
    })
    .await?;
    let cpu = server.cpu().saturating_sub(connected_cpu);
    let (_, peak) = server.rss_kib();
    Ok(Measured {
        all_delivered: total_delivered(&outcome),
        outcome: Some(outcome),
        cpu,
        peak_kib: peak,
        connect_kib: connected_rss as i64 - rss_before as i64,
        joins_ms: Vec::new(),
        connections: prepared.segments.len() * (prepared.agents + B7_READERS),
        error: None,
    })
}

fn header(opts: &CompareOptions) -> String {
    format!(
        "## Comparative run\n\nMachine: {}; load average before: {}. Rounds: {} (servers interleaved per round); generator on core {GENERATOR_CORE}, servers on core {SERVER_CORE}.{}\n",
        crate::report::machine(),
        crate::report::load_average().map_or("?".into(), |l| format!("{l:.2}")),
        opts.rounds,
        if opts.quick { " `--quick`: short phases, indicative only." } else { "" }
    )
}

async fn one(
    id: &str,
    kind: Kind,
    round: usize,
    paths: &Paths,
    quick: bool,
    seed: Option<&Seed>,
) -> anyhow::Result<Measured> {
    let mut server = Server::start(kind, SERVER_CORE, paths, round)?;
    let result = match seed {
        Some(seed) => joins(&server, seed, quick).await,
        None => fan_out(id, &server, quick).await,
    };
    if !server.alive() {
        bail!("{} died during the run; its log:\n{}", kind.name(), server.log());
    }
    result
}

async fn fan_out(id: &str, server: &Server, quick: bool) -> anyhow::Result<Measured> {
    let rooms = server.rooms(rooms_for(id), "bench").await?;
    let (rss_before, _) = server.rss_kib();
    let cpu_before = server.cpu();
    let plan = plan_for(id, quick, rooms);
    // Connection and measurement share one call; split the CPU account by
    // reading it again once connected would need a hook, so B5 reports
    // memory after connecting (taken by the ready callback below).
    let outcome = load::run_with(plan, || {
        let (rss, _) = server.rss_kib();
        (rss, server.cpu())
    })
    .await?;
    let (connected_rss, connected_cpu) = outcome.1;
    let mut outcome = outcome.0;
    let all_delivered = total_delivered(&outcome);
    // The warm-up phase is not reported.
    outcome.phases.remove(0);
    outcome.aborted_in = outcome.aborted_in.map(|a| a.saturating_sub(1));
    let cpu = server.cpu().saturating_sub(connected_cpu.max(cpu_before));
    let (_, peak) = server.rss_kib();
    Ok(Measured {
        outcome: Some(outcome),
        cpu,
        peak_kib: peak,
        connect_kib: connected_rss as i64 - rss_before as i64,
        joins_ms: Vec::new(),
        all_delivered,
        connections: rooms_for(id) * plan_peers(id),
        error: None,
    })
}

/// The automerge-paper trace's final document, with its whole history.
struct Seed {
    update: Vec<u8>,
    text: String,
}

fn seed_document(traces: &Path) -> anyhow::Result<Seed> {
    let trace = Trace::load(traces, "sequential/automerge-paper")?;
    let utf16 = trace.check_and_convert()?;
    let doc = Doc::with_options(Options { offset_kind: OffsetKind::Utf16, ..Options::default() });
    let text = doc.get_or_insert_text(wire::ROOT);
    for (p, u) in trace.patches.iter().zip(&utf16) {
        let mut txn = doc.transact_mut();
        if u.del > 0 {
            text.remove_range(&mut txn, u.pos, u.del);
        }
        if !p.ins.is_empty() {
            text.insert(&mut txn, u.pos, &p.ins);
        }
    }
    let txn = doc.transact();
    let s = text.get_string(&txn);
    ensure!(s == trace.end, "the seed document does not read the trace's final text");
    Ok(Seed { update: txn.encode_state_as_update_v1(&StateVector::default()), text: s })
}

/// Applies `update` to a fresh document and returns its text.
pub(crate) fn text_of(update: &[u8]) -> anyhow::Result<String> {
    let doc = Doc::new();
    let text = doc.get_or_insert_text(wire::ROOT);
    doc.transact_mut().apply_update(Update::decode_v1(update)?)?;
    let txn = doc.transact();
    ensure!(txn.store().pending_update().is_none(), "the update left pending structs");
    Ok(text.get_string(&txn))
}

/// B6: 100 peers join a document holding the automerge-paper state at once.
async fn joins(server: &Server, seed: &Seed, quick: bool) -> anyhow::Result<Measured> {
    let rooms = server.rooms(1, "paper").await?;
    let room = rooms.into_iter().next().context("no room")?;
    let (mut seeder, _) = Conn::open(&room, None).await?;
    seeder.send(wire::sync_message(wire::SYNC_UPDATE, &seed.update)).await?;
    // Wait until a fresh peer gets the whole document.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (probe, state) = Conn::open(&room, None).await?;
        probe.close().await;
        if text_of(&state).is_ok_and(|t| t == seed.text) {
            break;
        }
        ensure!(Instant::now() < deadline, "the server did not hold the seeded document within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (rss_before, _) = server.rss_kib();
    let cpu_before = server.cpu();
    let n = if quick { 50 } else { 100 };
    let began = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..n {
        let room = room.clone();
        tasks.push(tokio::spawn(async move {
            let (conn, state) = Conn::open(&room, None).await?;
            let took = began.elapsed();
            anyhow::Ok((conn, state, took))
        }));
    }
    let mut joined = Vec::new();
    for t in tasks {
        joined.push(t.await.context("join task")??);
    }
    let cpu = server.cpu().saturating_sub(cpu_before);
    let (rss, peak) = server.rss_kib();
    let mut joins_ms: Vec<f64> = joined.iter().map(|(_, _, took)| took.as_secs_f64() * 1000.0).collect();
    joins_ms.sort_by(f64::total_cmp);
    // Every joiner must have received the whole document.
    for (i, (_, state, _)) in joined.iter().enumerate() {
        if i % 10 == 0 {
            ensure!(text_of(state)? == seed.text, "joiner {i} did not receive the whole document");
        } else {
            ensure!(state.len() * 2 >= seed.update.len(), "joiner {i} received {} bytes", state.len());
        }
    }
    for (conn, _, _) in joined {
        conn.close().await;
    }
    seeder.close().await;
    Ok(Measured {
        outcome: None,
        cpu,
        peak_kib: peak,
        connect_kib: rss as i64 - rss_before as i64,
        joins_ms,
        all_delivered: 0,
        connections: n,
        error: None,
    })
}

/// Round trips of 64 bytes over loopback TCP to `weft-floor tcp-echo`.
async fn tcp_floor(paths: &Paths, quick: bool) -> anyhow::Result<String> {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let mut child = std::process::Command::new("taskset")
        .args(["-c", &SERVER_CORE.to_string()])
        .arg(&paths.floor)
        .args(["tcp-echo", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("starting weft-floor tcp-echo")?;
    let result = async {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut stream = loop {
            match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                Ok(s) => break s,
                Err(err) if Instant::now() > deadline => return Err(err.into()),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        stream.set_nodelay(true)?;
        let n = if quick { 5_000 } else { 50_000 };
        let mut buf = [7u8; 64];
        let mut rtts = Vec::with_capacity(n);
        for _ in 0..n {
            let t0 = Instant::now();
            stream.write_all(&buf).await?;
            stream.read_exact(&mut buf).await?;
            rtts.push(t0.elapsed().as_secs_f64() * 1e6);
        }
        rtts.sort_by(f64::total_cmp);
        let p = |q: f64| rtts[((rtts.len() - 1) as f64 * q).round() as usize];
        anyhow::Ok(format!(
            "{n} round trips of 64 bytes: p50 {:.1} µs, p99 {:.1} µs, max {:.0} µs",
            p(0.5),
            p(0.99),
            rtts[rtts.len() - 1]
        ))
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn spread(v: &[f64]) -> String {
    let finite: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if finite.is_empty() {
        return "–".into();
    }
    let med = median(finite.clone());
    let (lo, hi) = finite.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    if finite.len() == 1 { fmt_num(med) } else { format!("{} ({}–{})", fmt_num(med), fmt_num(lo), fmt_num(hi)) }
}

fn fmt_num(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// Highest phase of a ladder that delivered everything with p99 ≤ 10 ms:
/// its deliveries per second.
fn sustained(o: &Outcome) -> f64 {
    let mut best = 0.0f64;
    for (k, p) in o.phases.iter().enumerate() {
        if o.aborted_in.is_some_and(|a| k >= a) || p.lost() > 0 || p.percentile_ms(0.99) > 10.0 {
            break;
        }
        best = p.expected as f64 / p.duration.as_secs_f64();
    }
    best
}

fn total_delivered(o: &Outcome) -> u64 {
    o.phases.iter().map(|p| p.delivered).sum()
}

fn brief(id: &str, m: &Measured) -> String {
    if id == "B6" {
        let p = |q: f64| m.joins_ms.get(((m.joins_ms.len().saturating_sub(1)) as f64 * q).round() as usize).copied();
        return format!("joins p50 {:?} ms p99 {:?} ms", p(0.5), p(0.99));
    }
    let Some(o) = &m.outcome else { return "no outcome".into() };
    if id == "B3" {
        let steps: Vec<String> = o
            .phases
            .iter()
            .map(|p| {
                format!(
                    "{:.0}/s: {}/{} p50 {:.2} p99 {:.2}",
                    p.expected as f64 / p.duration.as_secs_f64(),
                    p.delivered,
                    p.expected,
                    p.percentile_ms(0.5),
                    p.percentile_ms(0.99)
                )
            })
            .collect();
        return format!("sustained {:.0}/s; aborted in {:?}; steps: {}", sustained(o), o.aborted_in, steps.join(" | "));
    }
    let last = o.phases.iter().rfind(|p| p.delivered > 0);
    format!(
        "connected in {:.1} s; delivered {}/{} p50 {:.2} ms p99 {:.2} ms sustained {:.0}/s cpu {:.2} s converged {:?}",
        o.connect.as_secs_f64(),
        total_delivered(o),
        o.phases.iter().map(|p| p.expected).sum::<u64>(),
        last.map_or(f64::NAN, |p| p.percentile_ms(0.5)),
        last.map_or(f64::NAN, |p| p.percentile_ms(0.99)),
        sustained(o),
        m.cpu.as_secs_f64(),
        o.converged
    )
}

fn table(id: &str, results: &BTreeMap<Kind, Vec<Measured>>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### {id}\n");
    if id == "B6" {
        let _ = writeln!(
            out,
            "| server | time to synced p50 ms | p99 ms | server CPU s | RSS growth MiB | peak RSS MiB | failures |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for (kind, runs) in results {
            let ok: Vec<&Measured> = runs.iter().filter(|m| m.error.is_none()).collect();
            let pct = |q: f64| -> Vec<f64> {
                ok.iter()
                    .map(|m| {
                        m.joins_ms
                            .get(((m.joins_ms.len().saturating_sub(1)) as f64 * q).round() as usize)
                            .copied()
                            .unwrap_or(f64::NAN)
                    })
                    .collect()
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                kind.name(),
                spread(&pct(0.5)),
                spread(&pct(0.99)),
                spread(&ok.iter().map(|m| m.cpu.as_secs_f64()).collect::<Vec<_>>()),
                spread(&ok.iter().map(|m| m.connect_kib as f64 / 1024.0).collect::<Vec<_>>()),
                spread(&ok.iter().map(|m| m.peak_kib as f64 / 1024.0).collect::<Vec<_>>()),
                failures(runs)
            );
        }
        return out;
    }
    let _ = writeln!(
        out,
        "| server | p50 ms | p99 ms | deliveries/s | sustained/s (p99 ≤ 10 ms) | server µs CPU per delivery | memory per connection KiB | peak RSS MiB | lost | failures |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for (kind, runs) in results {
        let ok: Vec<(&Measured, &Outcome)> =
            runs.iter().filter_map(|m| m.outcome.as_ref().filter(|_| m.error.is_none()).map(|o| (m, o))).collect();
        // Steady scenarios have one phase; the ladder reports its last
        // sustained phase's latencies.
        let phase_of = |o: &Outcome| -> usize {
            if id == "B3" {
                let s = o.phases.iter().take_while(|p| p.lost() == 0 && p.percentile_ms(0.99) <= 10.0).count();
                s.saturating_sub(1)
            } else {
                0
            }
        };
        let p = |q: f64| ok.iter().map(|(_, o)| o.phases[phase_of(o)].percentile_ms(q)).collect::<Vec<_>>();
        let rate: Vec<f64> = ok
            .iter()
            .map(|(_, o)| {
                let ph = &o.phases[phase_of(o)];
                ph.delivered as f64 / ph.duration.as_secs_f64()
            })
            .collect();
        let cpu: Vec<f64> = ok.iter().map(|(m, _)| m.cpu.as_secs_f64() * 1e6 / m.all_delivered.max(1) as f64).collect();
        let mem: Vec<f64> = ok.iter().map(|(m, _)| m.connect_kib as f64 / m.connections.max(1) as f64).collect();
        let lost: u64 =
            ok.iter().map(|(_, o)| o.phases.iter().map(|p| if id == "B3" { 0 } else { p.lost() }).sum::<u64>()).sum();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            kind.name(),
            spread(&p(0.5)),
            spread(&p(0.99)),
            spread(&rate),
            if id == "B3" {
                let best = ok.iter().map(|(_, o)| o.phases[phase_of(o)].rate).fold(0.0, f64::max);
                format!(
                    "{} (best step: {best:.1} keystrokes/s per writer)",
                    spread(&ok.iter().map(|(_, o)| sustained(o)).collect::<Vec<_>>())
                )
            } else {
                "–".into()
            },
            spread(&cpu),
            spread(&mem),
            spread(&ok.iter().map(|(m, _)| m.peak_kib as f64 / 1024.0).collect::<Vec<_>>()),
            lost,
            failures(runs)
        );
    }
    out
}

fn plan_peers(id: &str) -> usize {
    match id {
        "B4" => 200,
        "B5" => 3,
        "B10K" => 4,
        "B8" => 20,
        _ => 10,
    }
}

fn failures(runs: &[Measured]) -> String {
    let mut out = Vec::new();
    for m in runs {
        if let Some(e) = &m.error {
            out.push(e.lines().next().unwrap_or_default().chars().take(80).collect::<String>());
        } else if let Some(Err(e)) = m.outcome.as_ref().map(|o| &o.converged) {
            out.push(format!("diverged: {e}"));
        }
    }
    if out.is_empty() { "none".into() } else { out.join("; ") }
}
