//! `weft-bench`: benchmarks that run the real `weft` binary.
//!
//! `weft-bench trace-replay` replays real editing traces
//! (`../shared/traces/sequential/*.json.gz`) through the whole editing path
//! — editor A → `weft lsp` → `weft hub` → `weft lsp` → `workspace/applyEdit`
//! in editor B — and reports, next to raw yrs applying the same patches in
//! the same run: throughput (ops/s), keystroke-to-applyEdit latency (p50,
//! p99, max) at a steady typing rate, and the peak memory of the hub and
//! both bridges. A run whose editors do not end with identical text fails.
//!
//! `weft-bench join` generates a large workspace (5,000 files, 50 MB by
//! default), shares it on a `weft hub` with `weft share`, joins it with
//! `weft join` into an empty directory, checks the copy, and reports the
//! publish and join times, peak memory and CPU time of every process
//! ([`join`]). See docs/benchmarks.md for the method and the recorded
//! numbers of both.
//!
//! Without `WEFT_BIN`, it first builds `target/release/weft` (`cargo build
//! --release --bin weft`) and re-runs itself with `WEFT_BIN` pointing at
//! it, so one `cargo run --release -p weft-bench -- COMMAND` does all.

mod baseline;
mod compare;
mod join;
mod load;
mod path_floor;
mod procfs;
mod replay;
mod report;
mod servers;
mod trace;
mod trace_load;
mod typist;
mod wire;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context as _, bail, ensure};
use weft_tests::lsp::Echo;

use crate::replay::{Pacing, ReplaySpec};
use crate::report::TraceReport;
use crate::trace::Trace;

const USAGE: &str = "usage: weft-bench trace-replay [options]
       weft-bench join [options]
       weft-bench compare [options]

trace-replay: replays editing traces through editor A -> weft lsp -> weft hub -> weft lsp ->
applyEdit in editor B, next to raw yrs, and prints markdown tables.

options:
  --trace NAME    a trace under the traces dir, e.g. sequential/rustcode
                  (repeatable; default: sequential/seph-blog1,
                  sequential/rustcode, sequential/automerge-paper)
  --limit N       replay only the first N patches of each trace
  --quick         --limit 2000
  --rate R        patches/s in the latency phase (default 200)
  --paced N       patches in the latency phase: the last N replayed
                  (default 2000)
  --window W      patches in flight in the throughput phase (default 256)
  --echo HOW      how editor B reports an applied edit in its didChange:
                  exact (default: the edits as given, end to start, as
                  VS Code does), trimmed, merged or full
  --traces DIR    where the traces are (default: ../shared/traces)

join: generates a workspace, shares it on a weft hub (weft share --hub),
joins it into an empty directory (weft join), checks the copy byte for byte,
and prints the publish and join times, memory and CPU time as markdown.

options:
  --files N       synced text files in the workspace (default 5000)
  --mb M          their total size in MB (default 50)
  --rounds R      fresh hub, share and join per round (default 3)
  --quick         --files 500 --mb 5 --rounds 1
  --timeout S     seconds publishing, and joining, may each take (default 1800)
  --keep-logs     keep the processes' logs (kept anyway when a round fails)

compare: weft's hub against y-sweet 0.9.1, @y/websocket-server 0.1.1,
@hocuspocus/server 4.7.0 and a no-CRDT relay floor, one load generator,
servers interleaved per round, generator and server on different cores
(scenarios B1-B8, B10K and a TCP ping-pong floor; docs/benchmarks.md; B7 replays
seph-blog1, rustcode and the concurrent clownschool from the traces dir).
Install the peers first: bash scripts/bench-peers.

options:
  --quick         one round, short phases
  --rounds N      rounds (default 5)
  --scenario IDS  comma-separated, e.g. B1,B3 (default: all)
  --servers LIST  comma-separated of weft, y-sweet, y-websocket,
                  hocuspocus, relay (default: all), and weft-baseline:
                  the weft binary WEFT_BASELINE_BIN (before/after numbers)
  --traces DIR    where the traces are (default: ../shared/traces)

WEFT_BIN selects the weft binary; without it target/release/weft is built
and used. WEFT_TEST_LOG sets the processes' log filter (default info).";

const DEFAULT_TRACES: [&str; 3] = ["sequential/seph-blog1", "sequential/rustcode", "sequential/automerge-paper"];

/// A parsed command line.
#[derive(Debug, Clone)]
enum Bench {
    TraceReplay(Options),
    Join(join::JoinOptions),
    Compare(compare::CompareOptions),
}

/// Parsed `trace-replay` options.
#[derive(Debug, Clone)]
pub struct Options {
    pub traces: Vec<String>,
    pub limit: Option<usize>,
    pub rate: f64,
    pub paced: usize,
    pub window: usize,
    pub echo: Echo,
    pub traces_dir: PathBuf,
}

fn parse_echo(s: &str) -> anyhow::Result<Echo> {
    Ok(match s {
        "exact" => Echo::Exact,
        "trimmed" => Echo::Trimmed,
        "merged" => Echo::Merged,
        "full" => Echo::Full,
        other => bail!("--echo {other:?}: expected exact, trimmed, merged or full"),
    })
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn parse_args(args: &[String]) -> anyhow::Result<Option<Bench>> {
    let mut it = args.iter();
    match it.next().map(String::as_str) {
        Some("trace-replay") => Ok(parse_trace_replay(it)?.map(Bench::TraceReplay)),
        Some("join") => Ok(join::parse_options(it, USAGE)?.map(Bench::Join)),
        Some("compare") => {
            let traces = workspace_root().join("..").join("shared").join("traces");
            Ok(compare::parse_options(it, USAGE, traces)?.map(Bench::Compare))
        }
        Some("-h" | "--help" | "help") | None => Ok(None),
        Some(other) => bail!("unknown command {other:?}\n\n{USAGE}"),
    }
}

fn parse_trace_replay<'a>(mut it: impl Iterator<Item = &'a String>) -> anyhow::Result<Option<Options>> {
    let mut opts = Options {
        traces: Vec::new(),
        limit: None,
        rate: 200.0,
        paced: 2000,
        window: 256,
        echo: Echo::Exact,
        traces_dir: workspace_root().join("..").join("shared").join("traces"),
    };
    while let Some(arg) = it.next() {
        let mut value = |what: &str| it.next().with_context(|| format!("{arg} needs {what}"));
        match arg.as_str() {
            "--trace" => opts.traces.push(value("a trace name")?.clone()),
            "--limit" => opts.limit = Some(value("a number")?.parse().context("--limit")?),
            "--quick" => opts.limit = Some(2000),
            "--rate" => opts.rate = value("patches per second")?.parse().context("--rate")?,
            "--paced" => opts.paced = value("a number")?.parse().context("--paced")?,
            "--window" => opts.window = value("a number")?.parse().context("--window")?,
            "--echo" => opts.echo = parse_echo(value("exact, trimmed, merged or full")?)?,
            "--traces" => opts.traces_dir = PathBuf::from(value("a directory")?),
            "-h" | "--help" => return Ok(None),
            other => bail!("unknown option {other:?}\n\n{USAGE}"),
        }
    }
    ensure!(opts.rate.is_finite() && opts.rate > 0.0, "--rate must be positive");
    ensure!(opts.window > 0, "--window must be at least 1");
    if opts.traces.is_empty() {
        opts.traces = DEFAULT_TRACES.iter().map(|s| (*s).to_owned()).collect();
    }
    Ok(Some(opts))
}

/// Builds the release `weft` and re-runs this binary with `WEFT_BIN` set.
fn reexec_with_release_weft(args: &[String]) -> anyhow::Result<ExitCode> {
    let root = workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("weft-bench: building the release weft binaries (cargo build --release --bin weft --bin weft-floor)");
    let status = Command::new(&cargo)
        .args(["build", "--release", "--bin", "weft", "--bin", "weft-floor"])
        .current_dir(&root)
        .status()
        .context("running cargo")?;
    ensure!(status.success(), "cargo build --release --bin weft --bin weft-floor failed");
    reexec(args, &target.join("release").join("weft"))
}

/// Re-runs this binary with `WEFT_BIN=bin`.
fn reexec(args: &[String], bin: &Path) -> anyhow::Result<ExitCode> {
    let me = std::env::current_exe().context("locating weft-bench")?;
    let status = Command::new(me).args(args).env("WEFT_BIN", bin).status().context("re-running weft-bench")?;
    Ok(match status.code().and_then(|c| u8::try_from(c).ok()) {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(code),
        None => ExitCode::FAILURE,
    })
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("weft-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(bench) = parse_args(&args)? else {
        println!("{USAGE}");
        return Ok(ExitCode::SUCCESS);
    };
    if std::env::var_os("WEFT_BIN").is_none() {
        return reexec_with_release_weft(&args);
    }
    let bin = weft_tests::weft_bin();
    ensure!(bin.exists(), "WEFT_BIN={} does not exist", bin.display());
    if bin.is_relative() {
        // The editors start `weft lsp` in their own directories.
        let abs = bin.canonicalize().with_context(|| format!("resolving {}", bin.display()))?;
        return reexec(&args, &abs);
    }
    match bench {
        Bench::TraceReplay(opts) => trace_replay(&opts, &bin)?,
        Bench::Join(opts) => join::run(&opts, &bin)?,
        Bench::Compare(opts) => compare::run(&opts, &servers::default_paths(&workspace_root(), &bin))?,
    }
    Ok(ExitCode::SUCCESS)
}

fn trace_replay(opts: &Options, bin: &Path) -> anyhow::Result<()> {
    let work = std::env::temp_dir().join(format!("weft-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let load_before = report::load_average();
    let mut reports = Vec::new();
    for (i, name) in opts.traces.iter().enumerate() {
        let report = bench_trace(opts, name, &work.join(format!("{i}")))
            .with_context(|| format!("trace {name} (processes' logs kept in {})", work.display()))?;
        reports.push(report);
    }
    println!("{}", report::markdown(opts, bin, &reports, load_before));
    if let Err(err) = std::fs::remove_dir_all(&work) {
        eprintln!("weft-bench: could not remove {}: {err}", work.display());
    }
    Ok(())
}

fn bench_trace(opts: &Options, name: &str, work: &Path) -> anyhow::Result<TraceReport> {
    let trace = Trace::load(&opts.traces_dir, name)?;
    let utf16 = trace.check_and_convert()?;
    let n = opts.limit.map_or(trace.patches.len(), |l| l.min(trace.patches.len()));
    eprintln!("weft-bench: {name}: {n} of {} patches", trace.patches.len());
    let expected = if n == trace.patches.len() { trace.end.clone() } else { trace.text_after(n)? };
    let yrs = baseline::run(&trace.start, &trace.patches[..n], &utf16[..n], &expected)?;
    eprintln!("weft-bench: {name}: raw yrs done; throughput replay (window {})", opts.window);
    let throughput = replay::run(&ReplaySpec {
        trace: &trace,
        range: 0..n,
        pacing: Pacing::Window(opts.window),
        echo: opts.echo,
        work: work.join("throughput"),
    })?;
    let paced = opts.paced.min(n);
    eprintln!("weft-bench: {name}: the path's floor ({paced} keystrokes at {}/s)", opts.rate);
    let floor_bin = std::env::current_exe().context("locating weft-bench")?.with_file_name("weft-floor");
    let floor_us = path_floor::run(&floor_bin, paced, opts.rate).context("the keystroke path's floor")?;
    eprintln!("weft-bench: {name}: latency replay ({paced} patches at {}/s)", opts.rate);
    let latency = replay::run(&ReplaySpec {
        trace: &trace,
        range: n - paced..n,
        pacing: Pacing::Rate(opts.rate),
        echo: opts.echo,
        work: work.join("latency"),
    })?;
    Ok(TraceReport {
        name: name.to_owned(),
        total_patches: trace.patches.len(),
        final_chars: expected.chars().count(),
        yrs,
        throughput,
        latency,
        floor_us,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn trace_opts(s: &str) -> anyhow::Result<Options> {
        match parse_args(&args(s))? {
            Some(Bench::TraceReplay(o)) => Ok(o),
            other => bail!("not trace-replay options: {other:?}"),
        }
    }

    #[test]
    fn options_parse() -> anyhow::Result<()> {
        let o = trace_opts("trace-replay --quick --trace sequential/rustcode --rate 100")?;
        assert_eq!(
            (o.limit, o.rate, o.traces.as_slice()),
            (Some(2000), 100.0, &["sequential/rustcode".to_owned()][..])
        );
        let o = trace_opts("trace-replay")?;
        assert_eq!(o.traces.len(), 3);
        assert!(parse_args(&args("--help"))?.is_none());
        assert!(parse_args(&args("trace-replay --limit")).is_err());
        assert!(parse_args(&args("trace-replay --window 0")).is_err());
        assert!(parse_args(&args("replay")).is_err());
        let o = trace_opts("trace-replay --echo trimmed")?;
        assert_eq!(o.echo, Echo::Trimmed);
        assert!(parse_args(&args("trace-replay --echo sideways")).is_err());
        assert!(matches!(parse_args(&args("join --quick"))?, Some(Bench::Join(o)) if o.files == 500));
        assert!(parse_args(&args("join --help"))?.is_none());
        assert!(parse_args(&args("join --limit 5")).is_err());
        Ok(())
    }

    #[test]
    fn the_default_traces_exist() {
        let dir = workspace_root().join("..").join("shared").join("traces");
        if !dir.exists() {
            return; // not checked out beside the traces
        }
        for name in DEFAULT_TRACES {
            assert!(trace::path_of(&dir, name).exists(), "{name}");
        }
    }
}
