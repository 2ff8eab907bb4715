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

impl Trace {
    /// Loads `dir/NAME.json.gz`. Concurrent traces are refused: their
    /// positions are relative to each agent's view, not to one document.
    pub fn load(dir: &Path, name: &str) -> anyhow::Result<Trace> {
        let path = path_of(dir, name);
        let file = std::fs::File::open(&path).with_context(|| format!("opening trace {}", path.display()))?;
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(file)
            .read_to_end(&mut json)
            .with_context(|| format!("decompressing {}", path.display()))?;
        let raw: RawTrace =
            serde_json::from_slice(&json).with_context(|| format!("{} is not an editing trace", path.display()))?;
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
    fn a_trace_that_does_not_reach_its_end_is_refused() {
        assert!(trace("", &[(0, 0, "x")], "y").check_and_convert().is_err());
        assert!(trace("", &[(1, 0, "x")], "x").check_and_convert().is_err());
        assert!(trace("ab", &[(1, 5, "")], "a").text_after(1).is_err());
    }
}
