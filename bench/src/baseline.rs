//! The raw yrs baseline: the same patches applied to a `Y.Text` in one
//! process, with no editor, bridge, hub or network — the floor the bridge
//! path is compared with.
//!
//! Doc 1 applies each patch as a local edit in its own transaction (as the
//! bridge commits one per `didChange`) and encodes that transaction as a
//! v1 update; doc 2 decodes and integrates the update in its own
//! transaction. Both documents use UTF-16 offsets; the positions were
//! converted from code points before the clock starts
//! ([`crate::trace::Trace::check_and_convert`]). The initial text is
//! inserted and synced untimed.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use yrs::updates::decoder::Decode as _;
use yrs::{Doc, GetString as _, OffsetKind, Options, Text as _, Transact as _, Update};

use crate::trace::{Patch, Utf16Patch};

/// What the baseline measured.
#[derive(Debug, Clone)]
pub struct BaselineResult {
    pub patches: usize,
    /// Local edit + encode + remote integrate, all patches.
    pub total: Duration,
    /// Per patch: local edit + encode + remote integrate, in µs.
    pub per_patch_us: Vec<f64>,
}

fn doc(client_id: u64) -> Doc {
    Doc::with_options(Options {
        client_id: yrs::ClientID::new(client_id),
        offset_kind: OffsetKind::Utf16,
        ..Options::default()
    })
}

/// Replays `patches` (with their UTF-16 forms) onto `start` and checks that
/// both documents end at `expected`.
pub fn run(start: &str, patches: &[Patch], utf16: &[Utf16Patch], expected: &str) -> anyhow::Result<BaselineResult> {
    ensure!(patches.len() == utf16.len(), "patches and their UTF-16 forms differ in number");
    let (local_doc, remote_doc) = (doc(1), doc(2));
    let local_text = local_doc.get_or_insert_text("content");
    let remote_text = remote_doc.get_or_insert_text("content");
    if !start.is_empty() {
        let update = {
            let mut txn = local_doc.transact_mut();
            local_text.insert(&mut txn, 0, start);
            txn.encode_update_v1()
        };
        remote_doc.transact_mut().apply_update(Update::decode_v1(&update)?)?;
    }
    let mut per_patch_us = Vec::with_capacity(patches.len());
    let began = Instant::now();
    for (p, u) in patches.iter().zip(utf16) {
        let t0 = Instant::now();
        let update = {
            let mut txn = local_doc.transact_mut();
            if u.del > 0 {
                local_text.remove_range(&mut txn, u.pos, u.del);
            }
            if !p.ins.is_empty() {
                local_text.insert(&mut txn, u.pos, &p.ins);
            }
            txn.encode_update_v1()
        };
        let update = Update::decode_v1(&update).context("decoding our own update")?;
        remote_doc.transact_mut().apply_update(update).context("integrating an update")?;
        per_patch_us.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    let total = began.elapsed();
    let (a, b) = (local_text.get_string(&local_doc.transact()), remote_text.get_string(&remote_doc.transact()));
    ensure!(a == expected, "raw yrs: the editing doc does not read the trace's text");
    ensure!(b == expected, "raw yrs: the receiving doc does not read the trace's text");
    Ok(BaselineResult { patches: patches.len(), total, per_patch_us })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Trace;

    #[test]
    fn both_docs_reach_the_text_with_multibyte_positions() -> anyhow::Result<()> {
        let t = Trace {
            name: "t".into(),
            start: "x🦀y".into(),
            end: "日🦀!".into(),
            patches: vec![
                Patch { pos: 0, del: 1, ins: "日".into() },
                Patch { pos: 2, del: 1, ins: "".into() },
                Patch { pos: 2, del: 0, ins: "!".into() },
            ],
        };
        let u = t.check_and_convert()?;
        let r = run(&t.start, &t.patches, &u, &t.end)?;
        assert_eq!((r.patches, r.per_patch_us.len()), (3, 3));
        assert!(run(&t.start, &t.patches, &u, "other").is_err());
        Ok(())
    }
}
