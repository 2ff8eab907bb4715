//! A trace replayed through the whole editing path: editor A → `weft lsp`
//! → `weft hub` → `weft lsp` → `workspace/applyEdit` in editor B, with
//! real processes on loopback and a fresh hub and bridges per replay.
//!
//! Both editors are [`weft_tests::lsp::LspEditor`]s, each on its own thread
//! with its own single-threaded tokio runtime, so that A's sending and B's
//! receiving never wait for each other and timestamps are taken where the
//! work happens. B answers applyEdit as VS Code does (version check,
//! answer, echo `didChange` worded as [`Echo`] says). A sends one
//! `didChange` per patch, its positions computed on a rope
//! ([`crate::typist`]), either open-loop at a fixed rate ([`Pacing::Rate`],
//! for latency: the clock starts at each patch's due time, so a late send
//! counts against the pipeline) or as fast as the pipeline takes it with at
//! most a window of patches not yet seen by B ([`Pacing::Window`], for
//! throughput; the window bounds the queues so memory is not inflated by a
//! backlog).
//!
//! B never knows which patch an applyEdit carries, and does not need to:
//! only A edits, so every state B's buffer reaches is the text after some
//! prefix of the patches. After each applyEdit B walks a rope copy of the
//! trace forward (from the last state it matched, no further than what A
//! has sent) to the first prefix whose text equals its buffer; every patch
//! up to there is stamped as arrived. If the same text recurs (type a char,
//! delete it) the earliest prefix is taken, which can only make a latency
//! longer, never shorter; a sentinel typed after the last patch stamps the
//! trace's tail. A buffer that matches no prefix is counted as `unmatched`
//! and dumped next to the logs (a bridge bug: B's text left the trace). At
//! the end A's buffer, B's buffer and the expected text must be equal, and
//! A must have received no applyEdit, or the run fails.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use ropey::Rope;
use weft_tests::HubProcess;
use weft_tests::lsp::{Echo, LspEditor, file_uri};

use crate::procfs;
use crate::trace::{Patch, Trace, apply};
use crate::typist::Typist;

/// How long B may go without reaching a new prefix before the run fails.
const STALL: Duration = Duration::from_secs(60);
/// The same once B's buffer has left the trace (a correct bridge never
/// lets that happen, so there is nothing to wait for).
const STALL_DIVERGED: Duration = Duration::from_secs(5);
/// Typed at the end of the document after the last patch. Patches whose
/// effects cancel out (type a char, delete it) never show in B's buffer;
/// the sentinel's arrival proves they went through (updates arrive in
/// order), so the trace's last patches always get an arrival time.
const SENTINEL: &str = "\u{E000}";
/// How long setup steps (join, first sync) may take.
const SETUP: Duration = Duration::from_secs(60);

/// How editor A paces its `didChange`s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// Open loop: patch `i` is due at `start + i / rate`.
    Rate(f64),
    /// Closed loop: as fast as possible, with at most this many patches
    /// sent but not yet seen in B's buffer.
    Window(usize),
}

/// Peak resident memory (VmHWM, KiB) and CPU time of each process, and
/// the CPU time of the two test editors' threads (in this process).
#[derive(Debug, Clone, Copy, Default)]
pub struct Resources {
    pub hub_kib: u64,
    pub bridge_a_kib: u64,
    pub bridge_b_kib: u64,
    pub hub_cpu: Duration,
    pub bridge_a_cpu: Duration,
    pub bridge_b_cpu: Duration,
    pub editor_a_cpu: Duration,
    pub editor_b_cpu: Duration,
}

/// What one replay measured.
#[derive(Debug, Clone)]
pub struct ReplayResult {
    pub patches: usize,
    /// Chars in the document when the replay started.
    pub start_chars: usize,
    /// From the first patch's due time to B holding the last patch.
    pub elapsed: Duration,
    /// Per patch: from its due time to editor B reading the applyEdit
    /// that carried it off bridge B's stdout, µs (the pipeline's latency).
    pub latency_us: Vec<f64>,
    /// The same to test editor B having checked and applied that applyEdit
    /// and matched its buffer against the trace (adds the test editor's own
    /// O(document) work, which a real editor's line index avoids).
    pub applied_us: Vec<f64>,
    /// Per patch: how late A started sending it against its due time, µs
    /// (part of the latency: the clock runs from the due time).
    pub send_lag_us: Vec<f64>,
    /// applyEdits B received, and how many of them it refused as stale.
    pub apply_edits: usize,
    pub refused: usize,
    /// applyEdits after which B's buffer matched no prefix of the trace.
    pub unmatched: usize,
    pub resources: Resources,
}

/// Where and what to replay.
pub struct ReplaySpec<'a> {
    pub trace: &'a Trace,
    /// The patches to replay; the document starts as the text after
    /// `range.start` patches.
    pub range: Range<usize>,
    pub pacing: Pacing,
    /// How editor B words the `didChange` reporting an applied edit.
    pub echo: Echo,
    /// A fresh directory for the hub's data and the processes' logs.
    pub work: PathBuf,
}

/// Why an editor thread stopped when the other one failed first (its own
/// error says nothing new, so only the other one's is reported).
#[derive(Debug)]
struct Aborted;

impl std::fmt::Display for Aborted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped because the other editor failed")
    }
}

impl std::error::Error for Aborted {}

fn aborted(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Aborted>().is_some()
}

/// Progress shared by the two editor threads.
struct Progress {
    /// Patches A has started to send.
    sent: AtomicUsize,
    /// Patches B holds.
    reached: Mutex<usize>,
    changed: Condvar,
    failed: AtomicBool,
}

impl Progress {
    fn set_reached(&self, n: usize) {
        if let Ok(mut r) = self.reached.lock() {
            *r = n;
        }
        self.changed.notify_all();
    }

    fn fail(&self) {
        self.failed.store(true, Ordering::SeqCst);
        self.changed.notify_all();
    }

    /// Blocks until fewer than `window` of the first `sent` patches are
    /// missing in B.
    fn wait_window(&self, sent: usize, window: usize) -> anyhow::Result<()> {
        let mut reached = self.reached.lock().map_err(|_| anyhow::anyhow!("progress lock poisoned"))?;
        while sent.saturating_sub(*reached) >= window {
            if self.failed.load(Ordering::SeqCst) {
                return Err(Aborted.into());
            }
            reached = self
                .changed
                .wait_timeout(reached, Duration::from_millis(100))
                .map_err(|_| anyhow::anyhow!("progress lock poisoned"))?
                .0;
        }
        Ok(())
    }
}

/// Everything both editor threads read.
struct Ctx {
    /// The patches to send, the sentinel last.
    patches: Vec<Patch>,
    initial: String,
    expected: String,
    pacing: Pacing,
    echo: Echo,
    logs: PathBuf,
    admin: String,
    hub_ws: String,
    root_a: String,
    root_b: String,
    uri_a: String,
    uri_b: String,
    progress: Progress,
}

struct AOut {
    due: Vec<Instant>,
    lag_us: Vec<f64>,
    memory_kib: u64,
    cpu: Duration,
    editor_cpu: Duration,
    text: String,
}

struct BOut {
    /// When B read the applyEdit that brought each patch.
    reached: Vec<Instant>,
    /// When B had applied it and matched its buffer.
    applied: Vec<Instant>,
    apply_edits: usize,
    refused: usize,
    unmatched: usize,
    memory_kib: u64,
    cpu: Duration,
    editor_cpu: Duration,
    text: String,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting a tokio runtime")
}

/// How long before a due time [`sleep_until`] stops sleeping and spins: a
/// thread sleep overshoots by ~50–150 µs here, which would be counted
/// against the pipeline as latency.
const SPIN: Duration = Duration::from_micros(300);

/// Waits until `due`: a thread sleep to within [`SPIN`] of it, then a spin,
/// so a patch is sent at its due time (a typist's keystroke is not late).
pub(crate) fn sleep_until(due: Instant) {
    loop {
        let now = Instant::now();
        if now >= due {
            return;
        }
        let left = due - now;
        if left > SPIN {
            std::thread::sleep(left - SPIN);
        } else {
            std::hint::spin_loop();
        }
    }
}

/// The first prefix of `ahead` (applied to `from`) whose text is `text`:
/// how many patches it takes, and the rope there.
fn advance(from: &Rope, ahead: &[Patch], text: &str) -> Option<(usize, Rope)> {
    let mut rope = from.clone();
    for m in 0..=ahead.len() {
        if rope.len_bytes() == text.len() && rope == text {
            return Some((m, rope));
        }
        apply(&mut rope, ahead.get(m)?).ok()?;
    }
    None
}

/// Writes what B holds, what it should hold and the last applyEdits next
/// to the logs, for a buffer that matched no prefix or a stall (best
/// effort: this is a diagnostic).
fn dump(
    ctx: &Ctx,
    label: &str,
    sim: &Rope,
    k: usize,
    sent: usize,
    text: &str,
    records: &[weft_tests::lsp::ApplyEditRecord],
) {
    let base = ctx.logs.join(label);
    let params: Vec<&serde_json::Value> = records.iter().map(|r| &r.params).collect();
    let ahead = &ctx.patches[k..sent.max(k)];
    let files = [
        ("b.txt", text.to_owned()),
        (&*format!("expected-after-{k}.txt"), sim.to_string()),
        ("apply-edit.json", serde_json::to_string_pretty(&params).unwrap_or_default()),
        ("patches-ahead.txt", ahead.iter().map(|p| format!("{p:?}\n")).collect()),
    ];
    for (name, body) in files {
        let path = base.with_extension(name);
        if let Err(err) = std::fs::write(&path, body) {
            eprintln!("weft-bench: could not write {}: {err}", path.display());
        }
    }
    eprintln!("weft-bench: {label}: B holds {k} patches, A sent {sent}; see {}.*", base.display());
}

/// Runs one replay: starts a hub and two bridges, replays, checks, stops.
pub fn run(spec: &ReplaySpec<'_>) -> anyhow::Result<ReplayResult> {
    let trace = spec.trace;
    ensure!(spec.range.start <= spec.range.end && spec.range.end <= trace.patches.len(), "bad patch range");
    let n = spec.range.len();
    let initial = trace.text_after(spec.range.start)?;
    let mut expected =
        if spec.range.end == trace.patches.len() { trace.end.clone() } else { trace.text_after(spec.range.end)? };
    let mut patches = trace.patches[spec.range.clone()].to_vec();
    patches.push(Patch { pos: expected.chars().count(), del: 0, ins: SENTINEL.to_owned() });
    expected.push_str(SENTINEL);
    let hub_dir = spec.work.join("hub");
    let hub = HubProcess::start(&hub_dir).context("starting weft hub")?;
    let (dir_a, dir_b) = (spec.work.join("a"), spec.work.join("b"));
    std::fs::create_dir_all(&dir_b)?;
    std::fs::create_dir_all(&dir_a)?;
    std::fs::write(dir_a.join("trace.txt"), &initial)?;
    let ctx = Ctx {
        patches,
        initial,
        expected,
        pacing: spec.pacing,
        echo: spec.echo,
        logs: spec.work.join("logs"),
        admin: hub.admin.clone(),
        hub_ws: hub.ws_base(),
        root_a: file_uri(&dir_a),
        root_b: file_uri(&dir_b),
        uri_a: file_uri(&dir_a.join("trace.txt")),
        uri_b: file_uri(&dir_b.join("trace.txt")),
        progress: Progress {
            sent: AtomicUsize::new(0),
            reached: Mutex::new(0),
            changed: Condvar::new(),
            failed: AtomicBool::new(false),
        },
    };
    let start_chars = ctx.initial.chars().count();
    let (a, b) = drive(&ctx)?;
    let hub_pid = procfs::hub_pid(&hub_dir)?;
    let resources = Resources {
        hub_kib: procfs::vm_hwm_kib(hub_pid).context("reading the hub's peak memory")?,
        bridge_a_kib: a.memory_kib,
        bridge_b_kib: b.memory_kib,
        hub_cpu: procfs::process_cpu(hub_pid)?,
        bridge_a_cpu: a.cpu,
        bridge_b_cpu: b.cpu,
        editor_a_cpu: a.editor_cpu,
        editor_b_cpu: b.editor_cpu,
    };
    drop(hub);
    ensure!(
        a.text == ctx.expected,
        "{}: editor A's buffer is not the trace's text after {} patches (+ the sentinel)",
        trace.name,
        spec.range.end
    );
    if b.text != ctx.expected {
        let at = b.text.chars().zip(ctx.expected.chars()).take_while(|(x, y)| x == y).count();
        bail!(
            "{}: DIVERGED: editor B's buffer ({} chars) differs from A's ({} chars) from char {at}; logs in {}",
            trace.name,
            b.text.chars().count(),
            ctx.expected.chars().count(),
            spec.work.display()
        );
    }
    ensure!(
        a.due.len() == n + 1 && a.lag_us.len() == n + 1 && b.reached.len() == n + 1 && b.applied.len() == n + 1,
        "incomplete timings"
    );
    let (due, reached) = (&a.due[..n], &b.reached[..n]);
    let since_due = |at: &[Instant]| -> Vec<f64> {
        due.iter().zip(at).map(|(d, r)| r.saturating_duration_since(*d).as_secs_f64() * 1e6).collect()
    };
    let (latency_us, applied_us) = (since_due(reached), since_due(&b.applied[..n]));
    let elapsed = match (due.first(), reached.last()) {
        (Some(first), Some(last)) => last.saturating_duration_since(*first),
        _ => Duration::ZERO,
    };
    Ok(ReplayResult {
        patches: n,
        start_chars,
        elapsed,
        latency_us,
        applied_us,
        send_lag_us: a.lag_us[..n].to_vec(),
        apply_edits: b.apply_edits,
        refused: b.refused,
        unmatched: b.unmatched,
        resources,
    })
}

/// Runs both editor threads and coordinates their setup.
fn drive(ctx: &Ctx) -> anyhow::Result<(AOut, BOut)> {
    let (link_tx, link_rx) = channel::<String>();
    let (link_b_tx, link_b_rx) = channel::<String>();
    let (ready_tx, ready_rx) = channel::<()>();
    let (go_tx, go_rx) = channel::<Instant>();
    let (finish_tx, finish_rx) = channel::<()>();
    std::thread::scope(|s| {
        let a = s.spawn(move || {
            let out = editor_a(ctx, link_tx, go_rx, finish_rx);
            if out.is_err() {
                ctx.progress.fail();
            }
            out
        });
        let b = s.spawn(move || {
            let out = editor_b(ctx, link_b_rx, ready_tx);
            if out.is_err() {
                ctx.progress.fail();
            }
            out
        });
        // Setup: A shares, B joins with A's link, then A starts typing.
        // A dropped channel means that side failed; its error is reported
        // when it is joined below.
        if let Ok(link) = link_rx.recv()
            && link_b_tx.send(link).is_ok()
            && ready_rx.recv().is_ok()
        {
            // A short head start so A's first due time is not already past.
            // If A is gone, joining it below reports why.
            let _ = go_tx.send(Instant::now() + Duration::from_millis(20));
        }
        drop((link_b_tx, go_tx));
        let b = b.join().map_err(|_| anyhow::anyhow!("editor B's thread panicked"));
        drop(finish_tx);
        let a = a.join().map_err(|_| anyhow::anyhow!("editor A's thread panicked"));
        let a = a.and_then(|r| r.context("editor A"));
        let b = b.and_then(|r| r.context("editor B"));
        match (a, b) {
            (Ok(a), Ok(b)) => Ok((a, b)),
            (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(e),
            (Err(ea), Err(eb)) if aborted(&ea) => Err(eb),
            (Err(ea), Err(eb)) if aborted(&eb) => Err(ea),
            (Err(ea), Err(eb)) => Err(eb.context(format!("editor A failed too: {ea:#}"))),
        }
    })
}

fn editor_a(
    ctx: &Ctx,
    link_tx: Sender<String>,
    go_rx: Receiver<Instant>,
    finish_rx: Receiver<()>,
) -> anyhow::Result<AOut> {
    runtime()?.block_on(async {
        let mut a = LspEditor::spawn_with(&ctx.logs, "bench-a", &[], &[("WEFT_HUB_TOKEN", &ctx.admin)])?;
        a.set_echo(ctx.echo);
        a.initialize("utf-16", "bench A").await?;
        a.open(&ctx.uri_a, &ctx.initial).await?;
        let shared = a.share(&ctx.root_a, Some(&ctx.hub_ws)).await?;
        let link = shared["links"]["editor"].as_str().with_context(|| format!("no editor link in {shared}"))?;
        link_tx.send(link.to_owned()).context("the coordinator went away")?;
        let start = go_rx.recv().map_err(|_| Aborted)?;
        a.pump_ready().await?;
        let mut typist = Typist::new(&ctx.uri_a, &ctx.initial, a.version(&ctx.uri_a).context("A's buffer")?);
        let n = ctx.patches.len();
        let (mut due, mut lag_us) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for (i, p) in ctx.patches.iter().enumerate() {
            let at = match ctx.pacing {
                Pacing::Rate(rate) => {
                    let at = start + Duration::from_secs_f64(i as f64 / rate);
                    sleep_until(at);
                    at
                }
                Pacing::Window(window) => {
                    ctx.progress.wait_window(i, window)?;
                    Instant::now()
                }
            };
            ctx.progress.sent.store(i + 1, Ordering::SeqCst);
            lag_us.push(at.elapsed().as_secs_f64() * 1e6);
            let params = typist.type_patch(p).with_context(|| format!("patch {i}"))?;
            a.notify("textDocument/didChange", params).await.with_context(|| format!("patch {i}"))?;
            due.push(at);
            if i % 256 == 255 {
                a.pump_ready().await?;
            }
        }
        // Stay alive (the bridge must keep running) until B is done.
        // Err is the normal end: the coordinator drops the sender.
        let _ = finish_rx.recv();
        a.pump_ready().await?;
        ensure!(a.violations.is_empty(), "the bridge violated the protocol: {:?}", a.violations);
        ensure!(
            a.apply_edits.is_empty(),
            "bridge A sent {} applyEdits to the typing editor: something else wrote to the shared text",
            a.apply_edits.len()
        );
        let pid = a.pid().context("bridge A has no pid")?;
        let (memory_kib, cpu) = (procfs::vm_hwm_kib(pid)?, procfs::process_cpu(pid)?);
        let editor_cpu = procfs::thread_cpu()?;
        a.shutdown().await?;
        Ok(AOut { due, lag_us, memory_kib, cpu, editor_cpu, text: typist.text() })
    })
}

fn editor_b(ctx: &Ctx, link_rx: Receiver<String>, ready_tx: Sender<()>) -> anyhow::Result<BOut> {
    runtime()?.block_on(async {
        let mut b = LspEditor::spawn(&ctx.logs, "bench-b")?;
        b.set_echo(ctx.echo);
        b.initialize("utf-16", "bench B").await?;
        let link = link_rx.recv().map_err(|_| Aborted)?;
        b.join(&link, None, &ctx.root_b).await?;
        b.open(&ctx.uri_b, "").await?;
        b.wait_text(&ctx.uri_b, &ctx.initial, SETUP).await.context("B's first sync")?;
        ready_tx.send(()).context("the coordinator went away")?;
        let n = ctx.patches.len();
        let mut sim = Rope::from_str(&ctx.initial);
        let mut reached = Vec::with_capacity(n);
        let mut applied = Vec::with_capacity(n);
        let (mut apply_edits, mut refused, mut unmatched) = (0, 0, 0);
        let mut last_progress = Instant::now();
        let violations = b.violations.len();
        while reached.len() < n {
            let before = b.apply_edits.len();
            b.pump_once(Duration::from_millis(100)).await?;
            let now = Instant::now();
            if b.apply_edits.len() > before {
                apply_edits += b.apply_edits.len() - before;
                refused += b.apply_edits[before..].iter().filter(|r| !r.applied).count();
                let text = b.text(&ctx.uri_b).context("B's buffer vanished")?;
                let k = reached.len();
                let sent = ctx.progress.sent.load(Ordering::SeqCst).min(n);
                match advance(&sim, &ctx.patches[k..sent.max(k)], text) {
                    Some((m, rope)) => {
                        // Stamped when the applyEdit that brought B's buffer
                        // here was read (the last one handled).
                        let read = b.apply_edits.last().map_or(now, |r| r.received.into_std());
                        reached.resize(k + m, read);
                        applied.resize(k + m, now);
                        sim = rope;
                        if m > 0 {
                            ctx.progress.set_reached(k + m);
                            last_progress = now;
                        }
                    }
                    None => {
                        unmatched += 1;
                        if unmatched <= 3 {
                            let label = format!("unmatched-{unmatched}");
                            dump(ctx, &label, &sim, k, sent, text, &b.apply_edits[before..]);
                        }
                    }
                }
            }
            ensure!(b.violations.len() == violations, "the bridge violated the protocol: {:?}", b.violations);
            if let Some(why) = b.closed() {
                bail!("bridge B's output ended ({why}) at patch {} of {}{}", reached.len(), n - 1, b.log_tail());
            }
            if ctx.progress.failed.load(Ordering::SeqCst) {
                return Err(Aborted.into());
            }
            let limit = if unmatched > 0 { STALL_DIVERGED } else { STALL };
            if now - last_progress > limit {
                let text = b.text(&ctx.uri_b).unwrap_or_default();
                let sent = ctx.progress.sent.load(Ordering::SeqCst).min(n);
                let last = b.apply_edits.len().saturating_sub(2);
                dump(ctx, "stall", &sim, reached.len(), sent, text, &b.apply_edits[last..]);
                bail!(
                    "{}: for {limit:?}, B's buffer has been at most the text after {} of the {} patches (A sent {}; \
                     {apply_edits} applyEdits, {refused} refused, {unmatched} matching no prefix of the trace){}",
                    if unmatched > 0 {
                        "DIVERGED (B's buffer left the trace; see unmatched-* next to the logs)"
                    } else {
                        "STALLED"
                    },
                    reached.len(),
                    n - 1,
                    sent,
                    b.log_tail()
                );
            }
        }
        let pid = b.pid().context("bridge B has no pid")?;
        let (memory_kib, cpu) = (procfs::vm_hwm_kib(pid)?, procfs::process_cpu(pid)?);
        let editor_cpu = procfs::thread_cpu()?;
        let text = b.text(&ctx.uri_b).context("B's buffer vanished")?.to_owned();
        b.shutdown().await?;
        Ok(BOut { reached, applied, apply_edits, refused, unmatched, memory_kib, cpu, editor_cpu, text })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pos: usize, del: usize, ins: &str) -> Patch {
        Patch { pos, del, ins: ins.into() }
    }

    #[test]
    fn advance_finds_the_first_matching_prefix() {
        let from = Rope::from_str("ab");
        let ahead = [p(2, 0, "c"), p(2, 1, ""), p(2, 0, "d")];
        assert_eq!(advance(&from, &ahead, "ab").map(|(m, _)| m), Some(0));
        assert_eq!(advance(&from, &ahead, "abc").map(|(m, _)| m), Some(1));
        assert_eq!(advance(&from, &ahead, "abd").map(|(m, _)| m), Some(3));
        assert_eq!(advance(&from, &ahead, "xyz").map(|(m, _)| m), None);
        assert_eq!(advance(&from, &ahead[..1], "abd").map(|(m, _)| m), None);
    }
}
