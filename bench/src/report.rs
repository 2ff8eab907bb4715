//! Turning measurements into the markdown tables `weft-bench` prints (and
//! docs/benchmarks.md records): percentiles, rates, sizes, and the machine
//! the numbers came from.

use std::path::Path;
use std::time::Duration;

use crate::Options;
use crate::baseline::BaselineResult;
use crate::replay::ReplayResult;

/// Everything measured for one trace.
#[derive(Debug, Clone)]
pub struct TraceReport {
    pub name: String,
    pub total_patches: usize,
    pub final_chars: usize,
    pub yrs: BaselineResult,
    pub throughput: ReplayResult,
    pub latency: ReplayResult,
    /// Per keystroke of the latency replay's size and rate, through the
    /// path's floor ([`crate::path_floor`]), µs.
    pub floor_us: Vec<f64>,
}

/// Appends one formatted line to a `String`.
macro_rules! push_line {
    ($s:ident, $($fmt:tt)*) => {{
        $s.push_str(&format!($($fmt)*));
        $s.push('\n');
    }};
}

/// The `q`-quantile (0..=1) by nearest rank; 0 for no samples.
pub fn percentile(samples: &[f64], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn rate(n: usize, d: Duration) -> f64 {
    if d.is_zero() { 0.0 } else { n as f64 / d.as_secs_f64() }
}

/// Microseconds as `8.5 µs`, `850 µs` or `2.31 ms`.
fn us(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.1} µs")
    } else if v < 1000.0 {
        format!("{v:.0} µs")
    } else {
        format!("{:.2} ms", v / 1000.0)
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// `1234567.4` as `1,234,567`.
pub fn thousands(n: f64) -> String {
    let s = format!("{:.0}", n);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// CPU model, core count and build profile.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.to_owned()))
        .and_then(|l| l.split_once(':').map(|(_, m)| m.trim().to_owned()))
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    format!("{cores} cores ({cpu}), weft-bench built in {profile}")
}

/// The 1-minute load average (`/proc/loadavg`), if readable: other work
/// on the machine shows up in the latencies.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// The whole report; `load_before` is the load average when the run began.
pub fn markdown(opts: &Options, bin: &Path, reports: &[TraceReport], load_before: Option<f64>) -> String {
    let mut s = String::new();
    push_line!(s, "Machine: {}; weft binary {}.", machine(), bin.display());
    let load = |l: Option<f64>| l.map_or("?".to_owned(), |l| format!("{l:.2}"));
    push_line!(s, "Load average (1 min) before the run: {}, after: {}.", load(load_before), load(load_average()));
    let limit = opts.limit.map_or("whole traces".to_owned(), |l| format!("first {l} patches of each trace"));
    push_line!(
        s,
        "Settings: {limit}; throughput with at most {} patches in flight; latency over the last {} patches at {}/s; \
         editor echo {:?}.\n",
        opts.window,
        opts.paced,
        opts.rate,
        opts.echo
    );
    push_line!(s, "Throughput (one `didChange` per patch; B's buffer checked against the trace):\n");
    push_line!(s, "| trace | patches | final chars | weft lsp path | raw yrs | yrs ÷ weft | applyEdits in B |");
    push_line!(s, "|---|--:|--:|--:|--:|--:|--:|");
    for r in reports {
        let weft = rate(r.throughput.patches, r.throughput.elapsed);
        let yrs = rate(r.yrs.patches, r.yrs.total);
        let of = if r.throughput.patches < r.total_patches {
            format!(" of {}", thousands(r.total_patches as f64))
        } else {
            String::new()
        };
        push_line!(
            s,
            "| {} | {}{of} | {} | {} ops/s | {} ops/s | {:.1}× | {} |",
            r.name,
            thousands(r.throughput.patches as f64),
            thousands(r.final_chars as f64),
            thousands(weft),
            thousands(yrs),
            if weft > 0.0 { yrs / weft } else { 0.0 },
            thousands(r.throughput.apply_edits as f64),
        );
    }
    push_line!(
        s,
        "\nKeystroke → applyEdit latency at a steady {}/s (from each patch's due time to editor B reading the \
         applyEdit; \"applied\": to the test editor having applied it):\n",
        opts.rate
    );
    push_line!(
        s,
        "| trace | patches | doc chars at start | p50 | p99 | max | applied p50 | applied p99 | send lag p50 | send lag p99 | raw yrs p50 | raw yrs p99 |"
    );
    push_line!(s, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for r in reports {
        let l = &r.latency;
        push_line!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            thousands(l.patches as f64),
            thousands(l.start_chars as f64),
            us(percentile(&l.latency_us, 0.5)),
            us(percentile(&l.latency_us, 0.99)),
            us(percentile(&l.latency_us, 1.0)),
            us(percentile(&l.applied_us, 0.5)),
            us(percentile(&l.applied_us, 0.99)),
            us(percentile(&l.send_lag_us, 0.5)),
            us(percentile(&l.send_lag_us, 0.99)),
            us(percentile(&r.yrs.per_patch_us, 0.5)),
            us(percentile(&r.yrs.per_patch_us, 0.99)),
        );
    }
    push_line!(
        s,
        "\nThe same keystrokes through the path's floor (editor → pipe → WebSocket → no-CRDT relay → WebSocket → \
         pipe → editor; `weft-floor`), run just before:\n"
    );
    push_line!(s, "| trace | floor p50 | floor p99 | floor max | weft p50 ÷ floor | weft p99 ÷ floor |");
    push_line!(s, "|---|--:|--:|--:|--:|--:|");
    for r in reports {
        let (f50, f99) = (percentile(&r.floor_us, 0.5), percentile(&r.floor_us, 0.99));
        let ratio = |w: f64, f: f64| if f > 0.0 { format!("{:.1}×", w / f) } else { "–".to_owned() };
        push_line!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            r.name,
            us(f50),
            us(f99),
            us(percentile(&r.floor_us, 1.0)),
            ratio(percentile(&r.latency.latency_us, 0.5), f50),
            ratio(percentile(&r.latency.latency_us, 0.99), f99),
        );
    }
    push_line!(s, "\nResources in the throughput replay: CPU time per patch (user + system) and peak RSS (VmHWM):\n");
    push_line!(
        s,
        "| trace | hub CPU | bridge A CPU | bridge B CPU | test editor A CPU | test editor B CPU | hub RSS | bridge A RSS | bridge B RSS |"
    );
    push_line!(s, "|---|--:|--:|--:|--:|--:|--:|--:|--:|");
    for r in reports {
        let m = &r.throughput.resources;
        let per = |d: Duration| us(d.as_secs_f64() * 1e6 / r.throughput.patches.max(1) as f64);
        push_line!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            per(m.hub_cpu),
            per(m.bridge_a_cpu),
            per(m.bridge_b_cpu),
            per(m.editor_a_cpu),
            per(m.editor_b_cpu),
            mib(m.hub_kib),
            mib(m.bridge_a_kib),
            mib(m.bridge_b_kib)
        );
    }
    let odd: Vec<String> = reports
        .iter()
        .flat_map(|r| [("throughput", &r.throughput), ("latency", &r.latency)].map(|(what, x)| (r, what, x)))
        .filter(|(_, _, x)| x.refused > 0 || x.unmatched > 0)
        .map(|(r, what, x)| {
            format!("{} ({what}): {} applyEdits refused as stale, {} unmatched", r.name, x.refused, x.unmatched)
        })
        .collect();
    if !odd.is_empty() {
        push_line!(s, "\nAnomalies: {}", odd.join("; "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!((percentile(&v, 0.5), percentile(&v, 0.99), percentile(&v, 1.0)), (50.0, 99.0, 100.0));
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn numbers_are_formatted() {
        assert_eq!(
            (thousands(1234567.4), thousands(999.0), thousands(0.0)),
            ("1,234,567".into(), "999".into(), "0".into())
        );
        assert_eq!((us(8.54), us(850.2), us(2310.0)), ("8.5 µs".to_owned(), "850 µs".to_owned(), "2.31 ms".to_owned()));
    }
}
