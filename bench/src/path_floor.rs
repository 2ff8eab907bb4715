//! The floor of the keystroke path: the latency replay's shape with
//! nothing of weft in it. Editor A writes one 256-byte record per keystroke
//! (about a `didChange`'s size) to `weft-floor pipe-in`'s stdin, which
//! sends it over a WebSocket to `weft-floor relay`, which relays it to
//! `weft-floor pipe-out`, which writes it to its stdout, where editor B
//! reads it: the same three processes, two pipes and two loopback
//! WebSockets as editor A → `weft lsp` → `weft hub` → `weft lsp` → editor
//! B, with no JSON, no CRDT, no storage and no thread hand-off inside a
//! process. Run at the same rate, for as many keystrokes, right before
//! weft's latency replay, it shows how much of weft's latency this machine
//! charges for the hops alone.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

use crate::replay::sleep_until;

/// Bytes per keystroke record: a sequence number, then padding.
const RECORD: usize = 256;
/// Marks a warm-up record (sent until B sees one: the relay has no join
/// handshake, so A waits until B is in the room).
const WARM_UP: u64 = u64::MAX;

/// The floor processes; killed when dropped, also on failure.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn record(seq: u64) -> [u8; RECORD] {
    let mut r = [b'.'; RECORD];
    r[..8].copy_from_slice(&seq.to_le_bytes());
    r
}

/// `n` keystrokes at `rate`/s through the floor path; per keystroke, µs
/// from its due time to editor B reading it.
pub fn run(floor_bin: &Path, n: usize, rate: f64) -> anyhow::Result<Vec<f64>> {
    ensure!(
        floor_bin.exists(),
        "{} is missing: build it with cargo build --release -p weft-bench --bin weft-floor",
        floor_bin.display()
    );
    let mut procs = Procs(Vec::new());
    let mut relay =
        Command::new(floor_bin).arg("relay").stdout(Stdio::piped()).spawn().context("starting weft-floor relay")?;
    let relay_out = relay.stdout.take().context("relay stdout")?;
    procs.0.push(relay);
    let mut line = String::new();
    BufReader::new(relay_out).read_line(&mut line).context("reading the relay's ready line")?;
    let port: u16 = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("the relay said {line:?}, not \"listening on PORT\""))?;
    let url = format!("ws://127.0.0.1:{port}/keystrokes");
    let mut out = Command::new(floor_bin)
        .args(["pipe-out", &url])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting weft-floor pipe-out")?;
    let b_in: ChildStdout = out.stdout.take().context("pipe-out stdout")?;
    procs.0.push(out);
    let mut inp = Command::new(floor_bin)
        .args(["pipe-in", &url])
        .stdin(Stdio::piped())
        .spawn()
        .context("starting weft-floor pipe-in")?;
    let a_out: ChildStdin = inp.stdin.take().context("pipe-in stdin")?;
    procs.0.push(inp);

    let start = std::sync::Arc::new(std::sync::OnceLock::<Instant>::new());
    let a = {
        let start = start.clone();
        // Returns when keystroke 0 was due.
        std::thread::Builder::new().name("floor-editor-a".into()).spawn(move || -> anyhow::Result<Instant> {
            let mut a_out = a_out;
            // Warm up until B has seen a record (bounded: B fails first).
            let deadline = Instant::now() + Duration::from_secs(30);
            while start.get().is_none() {
                ensure!(Instant::now() < deadline, "editor B never received a warm-up record");
                a_out.write_all(&record(WARM_UP)).context("writing to pipe-in")?;
                std::thread::sleep(Duration::from_millis(20));
            }
            let t0 = *start.get().context("no start")? + Duration::from_millis(50);
            for i in 0..n {
                sleep_until(t0 + Duration::from_secs_f64(i as f64 / rate));
                a_out.write_all(&record(i as u64)).context("writing to pipe-in")?;
            }
            Ok(t0)
        })?
    };
    // Editor B reads on its own thread, so a stall can be cut short by
    // killing the processes (which ends its read).
    let b = {
        let start = start.clone();
        std::thread::Builder::new().name("floor-editor-b".into()).spawn(
            move || -> anyhow::Result<Vec<Option<Instant>>> {
                let mut b_in = b_in;
                let mut buf = [0u8; RECORD];
                let mut arrived: Vec<Option<Instant>> = vec![None; n];
                let mut seen = 0;
                while seen < n {
                    if let Err(err) = b_in.read_exact(&mut buf) {
                        bail!("reading pipe-out after {seen} of {n} keystrokes: {err}");
                    }
                    let now = Instant::now();
                    let seq = u64::from_le_bytes(buf[..8].try_into().context("record")?);
                    if seq == WARM_UP {
                        let _ = start.set(now);
                        continue;
                    }
                    let slot =
                        usize::try_from(seq).ok().and_then(|s| arrived.get_mut(s)).context("a record out of range")?;
                    ensure!(slot.is_none(), "record {seq} arrived twice");
                    *slot = Some(now);
                    seen += 1;
                }
                Ok(arrived)
            },
        )?
    };
    let sent = a.join().map_err(|_| anyhow::anyhow!("editor A's thread panicked"))?;
    // After A's last keystroke B has a few seconds more; then the
    // processes go, which ends B's read.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.is_finished() && sent.is_ok() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(procs);
    let arrived = b.join().map_err(|_| anyhow::anyhow!("editor B's thread panicked"))?;
    let t0 = sent?;
    let arrived = arrived?;
    Ok(arrived
        .iter()
        .enumerate()
        .map(|(i, at)| {
            let due = t0 + Duration::from_secs_f64(i as f64 / rate);
            at.map_or(f64::NAN, |at| at.saturating_duration_since(due).as_secs_f64() * 1e6)
        })
        .collect())
}
