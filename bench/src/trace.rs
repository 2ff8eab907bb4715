//! Editing traces from `../shared/traces` (the `josephg/editing-traces`
//! format): loading a gzip-compressed sequential trace, checking that it
//! replays to its `endContent`, and the replay arithmetic the benchmark
//! needs — the text after any prefix of patches (on a rope, so O(log n)
//! per patch) and each patch's position in UTF-16 units for yrs.
//!
//! A patch `[pos, del, ins]` deletes `del` code points at code point `pos`
//! and inserts `ins` there. Code points are Rust `char`s, which is also
//! what the test editor's char indexes count, so the editor needs no
//! conversion; yrs counts UTF-16 units and gets converted positions.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail, ensure};
use ropey::Rope;
use serde::Deserialize;

/// One patch: delete `del` chars at char `pos`, then insert `ins` there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    pub pos: usize,
    pub del: usize,
    pub ins: String,
}

/// A patch in UTF-16 units of the text it applies to (for yrs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf16Patch {
    pub pos: u32,
    pub del: u32,
}

/// A sequential trace, flattened to its patches in order.
#[derive(Debug, Clone)]
pub struct Trace {
    /// As named on the command line, e.g. `sequential/rustcode`.
    pub name: String,
    pub start: String,
    pub end: String,
    pub patches: Vec<Patch>,
}

#[derive(Deserialize)]
struct RawTrace {
    #[serde(default)]
    kind: Option<String>,
    #[serde(rename = "startContent", default)]
    start_content: String,
    #[serde(rename = "endContent")]
    end_content: String,
    txns: Vec<RawTxn>,
}

#[derive(Deserialize)]
struct RawTxn {
    patches: Vec<(usize, usize, String)>,
}

/// The file of trace `name` (`sequential/NAME`) under `dir`.
pub fn path_of(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.json.gz"))
}

/// Reads and parses the gzip-compressed JSON of trace `name` under `dir`.
fn read_json<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> anyhow::Result<T> {
    let path = path_of(dir, name);
    let file = std::fs::File::open(&path).with_context(|| format!("opening trace {}", path.display()))?;
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut json)
        .with_context(|| format!("decompressing {}", path.display()))?;
    serde_json::from_slice(&json).with_context(|| format!("{} is not an editing trace", path.display()))
}

impl Trace {
    /// Loads `dir/NAME.json.gz`. Concurrent traces are refused: their
    /// positions are relative to each agent's view, not to one document.
    pub fn load(dir: &Path, name: &str) -> anyhow::Result<Trace> {
        let raw: RawTrace = read_json(dir, name)?;
        if let Some(kind) = raw.kind.as_deref() {
            bail!("{name} is a {kind:?} trace; only sequential traces (one document, one history) can be replayed");
        }
        let patches =
            raw.txns.into_iter().flat_map(|t| t.patches).map(|(pos, del, ins)| Patch { pos, del, ins }).collect();
        Ok(Trace { name: name.to_owned(), start: raw.start_content, end: raw.end_content, patches })
    }

    /// The text after the first `n` patches (checked, O(n log len)).
    pub fn text_after(&self, n: usize) -> anyhow::Result<String> {
        let mut rope = Rope::from_str(&self.start);
        for (i, p) in self.patches.iter().take(n).enumerate() {
            apply(&mut rope, p).with_context(|| format!("{}: patch {i}", self.name))?;
        }
        Ok(rope.to_string())
    }

    /// Replays every patch, fails unless the result is `endContent`, and
    /// returns the patches' UTF-16 positions (index-aligned with
    /// `patches`).
    pub fn check_and_convert(&self) -> anyhow::Result<Vec<Utf16Patch>> {
        let mut rope = Rope::from_str(&self.start);
        let mut out = Vec::with_capacity(self.patches.len());
        for (i, p) in self.patches.iter().enumerate() {
            out.push(utf16_of(&rope, p).with_context(|| format!("{}: patch {i}", self.name))?);
            apply(&mut rope, p).with_context(|| format!("{}: patch {i}", self.name))?;
        }
        ensure!(rope == self.end.as_str(), "{}: replaying every patch does not give endContent", self.name);
        Ok(out)
    }
}

/// One transaction of a trace, with its time and (for concurrent traces)
/// its author and causal parents.
#[derive(Debug, Clone)]
pub struct Txn {
    /// Seconds since the trace's first transaction. Trace times have
    /// one-second resolution; the transactions sharing a second are spread
    /// evenly over it.
    pub at: f64,
    /// The agent (editor) that made it; 0 in a sequential trace.
    pub agent: usize,
    /// Indexes of the transactions it was made on top of (concurrent
    /// traces); in a sequential trace, the one before.
    pub parents: Vec<usize>,
    /// Applied in order to the text as its agent saw it.
    pub patches: Vec<Patch>,
}

/// A trace kept as its transactions, sequential or concurrent.
#[derive(Debug, Clone)]
pub struct History {
    pub name: String,
    pub agents: usize,
    pub start: String,
    pub end: String,
    pub txns: Vec<Txn>,
}

#[derive(Deserialize)]
struct RawHistory {
    #[serde(default)]
    kind: Option<String>,
    #[serde(rename = "numAgents", default)]
    num_agents: Option<usize>,
    #[serde(rename = "startContent", default)]
    start_content: String,
    #[serde(rename = "endContent")]
    end_content: String,
    txns: Vec<RawTimedTxn>,
}

#[derive(Deserialize)]
struct RawTimedTxn {
    time: String,
    #[serde(default)]
    agent: Option<usize>,
    #[serde(default)]
    parents: Option<Vec<usize>>,
    patches: Vec<(usize, usize, String)>,
}

impl History {
    /// Loads `dir/NAME.json.gz`, sequential or concurrent. Fails on a
    /// transaction whose parents do not come before it, or whose agent is
    /// out of range.
    pub fn load(dir: &Path, name: &str) -> anyhow::Result<History> {
        let raw: RawHistory = read_json(dir, name)?;
        let concurrent = match raw.kind.as_deref() {
            None => false,
            Some("concurrent") => true,
            Some(other) => bail!("{name}: unknown trace kind {other:?}"),
        };
        let agents = if concurrent { raw.num_agents.context("a concurrent trace without numAgents")? } else { 1 };
        let mut seconds = Vec::with_capacity(raw.txns.len());
        for (i, t) in raw.txns.iter().enumerate() {
            seconds.push(parse_time(&t.time).with_context(|| format!("{name}: txn {i}: time {:?}", t.time))?);
        }
        let at = spread_within_seconds(&seconds);
        let mut txns = Vec::with_capacity(raw.txns.len());
        for (i, (t, at)) in raw.txns.into_iter().zip(at).enumerate() {
            let parents = if concurrent {
                t.parents.with_context(|| format!("{name}: txn {i} has no parents"))?
            } else {
                i.checked_sub(1).into_iter().collect()
            };
            ensure!(parents.iter().all(|&p| p < i), "{name}: txn {i} names a parent that does not come before it");
            let agent = if concurrent { t.agent.with_context(|| format!("{name}: txn {i} has no agent"))? } else { 0 };
            ensure!(agent < agents, "{name}: txn {i} is by agent {agent} of {agents}");
            let patches = t.patches.into_iter().map(|(pos, del, ins)| Patch { pos, del, ins }).collect();
            txns.push(Txn { at, agent, parents, patches });
        }
        Ok(History { name: name.to_owned(), agents, start: raw.start_content, end: raw.end_content, txns })
    }
}

/// Seconds since the first time, with the times that share a second
/// spread evenly over it (trace times have one-second resolution: a burst
/// of equal stamps was typed over that second, not in one instant).
fn spread_within_seconds(seconds: &[f64]) -> Vec<f64> {
    let first = seconds.first().copied().unwrap_or(0.0);
    let mut out = Vec::with_capacity(seconds.len());
    let mut i = 0;
    while i < seconds.len() {
        let run = seconds[i..].iter().take_while(|&&s| s == seconds[i]).count();
        for j in 0..run {
            out.push(seconds[i] - first + j as f64 / run as f64);
        }
        i += run;
    }
    out
}

/// The decimal number written in `s[r]`, digits only.
fn digits(s: &str, r: std::ops::Range<usize>) -> anyhow::Result<i64> {
    let part = s.get(r).context("not an ISO-8601 time")?;
    ensure!(part.bytes().all(|c| c.is_ascii_digit()), "not an ISO-8601 time");
    Ok(part.parse()?)
}

/// Seconds since the Unix epoch of an ISO-8601 time as the traces write
/// it: `YYYY-MM-DDTHH:MM:SS`, optional fraction, then `Z` or `±HH:MM`.
pub fn parse_time(s: &str) -> anyhow::Result<f64> {
    let b = s.as_bytes();
    ensure!(
        b.len() >= 19 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' && b[16] == b':',
        "not an ISO-8601 time"
    );
    let num = |r: std::ops::Range<usize>| digits(s, r);
    let (y, mo, d, h, mi, sec) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    ensure!((1..=12).contains(&mo) && (1..=31).contains(&d) && h < 24 && mi < 60 && sec < 61, "not an ISO-8601 time");
    let mut rest = s.get(19..).context("not an ISO-8601 time")?;
    let mut frac = 0.0;
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.bytes().take_while(u8::is_ascii_digit).count();
        ensure!(digits > 0, "not an ISO-8601 time");
        frac = format!("0.{}", &r[..digits]).parse()?;
        rest = &r[digits..];
    }
    let offset = match rest {
        "Z" | "" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => bail!("not an ISO-8601 time"),
            };
            ensure!(rest.len() == 6 && rest.as_bytes()[3] == b':', "not an ISO-8601 time");
            sign * (digits(rest, 1..3)? * 3600 + digits(rest, 4..6)? * 60)
        }
    };
    // Days from 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
    // days_from_civil).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok((days * 86_400 + h * 3600 + mi * 60 + sec - offset) as f64 + frac)
}

/// Applies `p` to `rope`; fails (changing nothing) if it reaches past the end.
pub fn apply(rope: &mut Rope, p: &Patch) -> anyhow::Result<()> {
    let len = rope.len_chars();
    let end = p.pos.checked_add(p.del).context("patch range overflows")?;
    ensure!(end <= len, "patch {}+{} reaches past the end ({len} chars)", p.pos, p.del);
    if p.del > 0 {
        rope.remove(p.pos..end);
    }
    if !p.ins.is_empty() {
        rope.insert(p.pos, &p.ins);
    }
    Ok(())
}

/// `p`'s position and deleted length in UTF-16 units of `rope`.
fn utf16_of(rope: &Rope, p: &Patch) -> anyhow::Result<Utf16Patch> {
    let end = p.pos.checked_add(p.del).context("patch range overflows")?;
    ensure!(end <= rope.len_chars(), "patch {}+{} reaches past the end", p.pos, p.del);
    let start16 = rope.char_to_utf16_cu(p.pos);
    let end16 = rope.char_to_utf16_cu(end);
    Ok(Utf16Patch { pos: u32::try_from(start16)?, del: u32::try_from(end16 - start16)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(start: &str, patches: &[(usize, usize, &str)], end: &str) -> Trace {
        Trace {
            name: "t".into(),
            start: start.into(),
            end: end.into(),
            patches: patches.iter().map(|&(pos, del, ins)| Patch { pos, del, ins: ins.into() }).collect(),
        }
    }

    #[test]
    fn positions_count_code_points_and_convert_to_utf16() -> anyhow::Result<()> {
        let t = trace("a🦀b", &[(2, 1, "日本"), (0, 2, ""), (2, 0, "!")], "日本!");
        let u = t.check_and_convert()?;
        assert_eq!(
            u,
            vec![Utf16Patch { pos: 3, del: 1 }, Utf16Patch { pos: 0, del: 3 }, Utf16Patch { pos: 2, del: 0 }]
        );
        assert_eq!(t.text_after(1)?, "a🦀日本");
        assert_eq!(t.text_after(0)?, "a🦀b");
        Ok(())
    }

    #[test]
    fn times_parse_and_spread_within_their_second() -> anyhow::Result<()> {
        assert_eq!(parse_time("1970-01-01T00:00:00Z")?, 0.0);
        assert_eq!(parse_time("2021-05-19T07:22:46.000Z")?, 1_621_408_966.0);
        assert_eq!(parse_time("2023-11-22T03:57:32+00:00")?, 1_700_625_452.0);
        assert_eq!(parse_time("2023-11-22T05:57:32.5+02:00")?, 1_700_625_452.5);
        for bad in [
            "",
            "2023-11-22",
            "2023-13-22T03:57:32Z",
            "2023-11-22T03:57:32+0200",
            "2023-11-22T03:57:3é",
            "2023-11-22T03:57:32.Z",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
        assert_eq!(
            spread_within_seconds(&[10.0, 10.0, 10.0, 10.0, 11.0, 13.0, 13.0]),
            vec![0.0, 0.25, 0.5, 0.75, 1.0, 3.0, 3.5]
        );
        Ok(())
    }

    #[test]
    fn a_trace_that_does_not_reach_its_end_is_refused() {
        assert!(trace("", &[(0, 0, "x")], "y").check_and_convert().is_err());
        assert!(trace("", &[(1, 0, "x")], "x").check_and_convert().is_err());
        assert!(trace("ab", &[(1, 5, "")], "a").text_after(1).is_err());
    }
}
