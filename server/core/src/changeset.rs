//! Plain-text operational transformation over Unicode scalar values
//! (Rust `char`s): the "OT at the edge" that keeps an editor buffer and the
//! shared CRDT text in step (see docs/decisions/0005-ot-at-the-edge.md).
//!
//! A [`ChangeSet`] turns a text of `base_len` chars into one of
//! `target_len` chars with retain / delete / insert runs. [`compose`] chains
//! two, [`transform`] makes two concurrent ones applicable after each
//! other (`b'∘a == a'∘b`). Nothing here knows about LSP or yrs; positions
//! are char offsets. All operations are O(number of runs), not O(text).
//!
//! [`compose`]: ChangeSet::compose
//! [`transform`]: ChangeSet::transform

use ropey::Rope;

/// One run of a change set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Keep this many chars.
    Retain(usize),
    /// Remove this many chars.
    Delete(usize),
    /// Insert this text (its length in chars is cached).
    Insert(String, usize),
}

/// A change from a text of `base_len` chars to one of `target_len` chars.
/// Kept canonical: no empty runs, adjacent runs of one kind merged, an
/// insert always before a delete at the same place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeSet {
    ops: Vec<Op>,
    base_len: usize,
    target_len: usize,
}

/// A change set that does not fit the text it is applied to or combined with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("change set does not fit: {0}")]
pub struct Mismatch(pub &'static str);

impl ChangeSet {
    /// Where char offset `pos` of the base text is in the target text. A
    /// position inside deleted text lands where the deletion was; one at an
    /// insertion point stays before the inserted text.
    pub fn map_forward(&self, pos: usize) -> usize {
        let (mut base, mut target) = (0, 0);
        for op in &self.ops {
            match op {
                Op::Retain(n) => {
                    if pos < base + n {
                        return target + (pos - base);
                    }
                    base += n;
                    target += n;
                }
                Op::Insert(_, n) => {
                    if pos == base {
                        return target;
                    }
                    target += n;
                }
                Op::Delete(n) => {
                    if pos < base + n {
                        return target;
                    }
                    base += n;
                }
            }
        }
        (target + pos.saturating_sub(base)).min(self.target_len)
    }

    /// Where char offset `pos` of the target text is in the base text. A
    /// position inside inserted text (text the base does not have) lands
    /// where the insertion was.
    pub fn map_back(&self, pos: usize) -> usize {
        let (mut base, mut target) = (0, 0);
        for op in &self.ops {
            match op {
                Op::Retain(n) => {
                    if pos < target + n {
                        return base + (pos - target);
                    }
                    base += n;
                    target += n;
                }
                Op::Insert(_, n) => {
                    if pos < target + n {
                        return base;
                    }
                    target += n;
                }
                Op::Delete(n) => base += n,
            }
        }
        (base + pos.saturating_sub(target)).min(self.base_len)
    }

    /// The change that keeps a text of `len` chars as it is.
    pub fn identity(len: usize) -> ChangeSet {
        let mut cs = ChangeSet::empty();
        cs.retain(len);
        cs
    }

    fn empty() -> ChangeSet {
        ChangeSet { ops: Vec::new(), base_len: 0, target_len: 0 }
    }

    /// Replaces chars `start..start + delete` of a `base_len`-char text with
    /// `insert`. Out-of-range values are clamped.
    pub fn replace(base_len: usize, start: usize, delete: usize, insert: &str) -> ChangeSet {
        let start = start.min(base_len);
        let delete = delete.min(base_len - start);
        let mut cs = ChangeSet::empty();
        cs.retain(start);
        cs.insert(insert);
        cs.delete(delete);
        cs.retain(base_len - start - delete);
        cs
    }

    /// Length of the text this applies to, in chars.
    pub fn base_len(&self) -> usize {
        self.base_len
    }

    /// Length of the result, in chars.
    pub fn target_len(&self) -> usize {
        self.target_len
    }

    /// The runs.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Whether applying this changes nothing.
    pub fn is_identity(&self) -> bool {
        self.ops.iter().all(|op| matches!(op, Op::Retain(_)))
    }

    /// Appends a retain run.
    pub fn retain(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.base_len += n;
        self.target_len += n;
        if let Some(Op::Retain(last)) = self.ops.last_mut() {
            *last += n;
        } else {
            self.ops.push(Op::Retain(n));
        }
    }

    /// Appends an insert run.
    pub fn insert(&mut self, text: &str) {
        self.insert_counted(text, text.chars().count());
    }

    fn insert_counted(&mut self, text: &str, n: usize) {
        if n == 0 {
            return;
        }
        self.target_len += n;
        match self.ops.as_mut_slice() {
            [.., Op::Insert(s, len)] => {
                s.push_str(text);
                *len += n;
            }
            // Keep inserts before deletes so equal changes look equal.
            [.., Op::Insert(s, len), Op::Delete(_)] => {
                s.push_str(text);
                *len += n;
            }
            [.., Op::Delete(_)] => {
                let del = self.ops.pop();
                self.ops.push(Op::Insert(text.to_owned(), n));
                self.ops.extend(del);
            }
            _ => self.ops.push(Op::Insert(text.to_owned(), n)),
        }
    }

    /// Appends a delete run.
    pub fn delete(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.base_len += n;
        if let Some(Op::Delete(last)) = self.ops.last_mut() {
            *last += n;
        } else {
            self.ops.push(Op::Delete(n));
        }
    }

    /// Applies this to `rope` in place.
    pub fn apply(&self, rope: &mut Rope) -> Result<(), Mismatch> {
        if rope.len_chars() != self.base_len {
            return Err(Mismatch("base length differs from the text"));
        }
        let mut at = 0;
        for op in &self.ops {
            match op {
                Op::Retain(n) => at += n,
                Op::Delete(n) => rope.remove(at..at + n),
                Op::Insert(s, n) => {
                    rope.insert(at, s);
                    at += n;
                }
            }
        }
        Ok(())
    }

    /// Applies this to a string (tests and small texts).
    pub fn apply_str(&self, text: &str) -> Result<String, Mismatch> {
        let mut rope = Rope::from_str(text);
        self.apply(&mut rope)?;
        Ok(rope.to_string())
    }

    /// The edits as non-overlapping `(start, end, new_text)` ranges of the
    /// base text in ascending order (what an LSP `TextEdit[]` needs).
    pub fn edits(&self) -> Vec<(usize, usize, String)> {
        let mut out: Vec<(usize, usize, String)> = Vec::new();
        let mut at = 0;
        for op in &self.ops {
            match op {
                Op::Retain(n) => at += n,
                Op::Delete(n) => {
                    match out.last_mut() {
                        Some(last) if last.1 == at => last.1 += n,
                        _ => out.push((at, at + n, String::new())),
                    }
                    at += n;
                }
                Op::Insert(s, _) => match out.last_mut() {
                    Some(last) if last.1 == at => last.2.push_str(s),
                    _ => out.push((at, at, s.clone())),
                },
            }
        }
        out
    }

    /// `self` then `next`: one change with the effect of both.
    pub fn compose(&self, next: &ChangeSet) -> Result<ChangeSet, Mismatch> {
        if self.target_len != next.base_len {
            return Err(Mismatch("compose: lengths differ"));
        }
        let mut out = ChangeSet::empty();
        let mut a = Runs::new(&self.ops);
        let mut b = Runs::new(&next.ops);
        loop {
            match (a.peek(), b.peek()) {
                (None, None) => break,
                // Deletions of the first happen regardless of the second.
                (Some(Op::Delete(n)), _) => {
                    out.delete(n);
                    a.advance(n);
                }
                // Insertions of the second happen regardless of the first.
                (_, Some(Op::Insert(s, n))) => {
                    out.insert_counted(&s, n);
                    b.advance(n);
                }
                (Some(Op::Retain(x)), Some(Op::Retain(y))) => {
                    let n = x.min(y);
                    out.retain(n);
                    a.advance(n);
                    b.advance(n);
                }
                (Some(Op::Retain(x)), Some(Op::Delete(y))) => {
                    let n = x.min(y);
                    out.delete(n);
                    a.advance(n);
                    b.advance(n);
                }
                (Some(Op::Insert(s, x)), Some(Op::Retain(y))) => {
                    let n = x.min(y);
                    let part: String = s.chars().take(n).collect();
                    out.insert_counted(&part, n);
                    a.advance(n);
                    b.advance(n);
                }
                (Some(Op::Insert(_, x)), Some(Op::Delete(y))) => {
                    // Inserted by the first, deleted by the second: gone.
                    let n = x.min(y);
                    a.advance(n);
                    b.advance(n);
                }
                _ => return Err(Mismatch("compose: one side ended early")),
            }
        }
        Ok(out)
    }

    /// Transforms two changes of the same text so each applies after the
    /// other: returns `(a', b')` with `a' ∘ b == b' ∘ a`. At equal positions
    /// `a`'s insertions go first.
    pub fn transform(a: &ChangeSet, b: &ChangeSet) -> Result<(ChangeSet, ChangeSet), Mismatch> {
        if a.base_len != b.base_len {
            return Err(Mismatch("transform: base lengths differ"));
        }
        let mut a2 = ChangeSet::empty();
        let mut b2 = ChangeSet::empty();
        let mut x = Runs::new(&a.ops);
        let mut y = Runs::new(&b.ops);
        loop {
            match (x.peek(), y.peek()) {
                (None, None) => break,
                (Some(Op::Insert(s, n)), _) => {
                    a2.insert_counted(&s, n);
                    b2.retain(n);
                    x.advance(n);
                }
                (_, Some(Op::Insert(s, n))) => {
                    a2.retain(n);
                    b2.insert_counted(&s, n);
                    y.advance(n);
                }
                (Some(Op::Retain(p)), Some(Op::Retain(q))) => {
                    let n = p.min(q);
                    a2.retain(n);
                    b2.retain(n);
                    x.advance(n);
                    y.advance(n);
                }
                (Some(Op::Delete(p)), Some(Op::Delete(q))) => {
                    let n = p.min(q);
                    x.advance(n);
                    y.advance(n);
                }
                (Some(Op::Delete(p)), Some(Op::Retain(q))) => {
                    let n = p.min(q);
                    a2.delete(n);
                    x.advance(n);
                    y.advance(n);
                }
                (Some(Op::Retain(p)), Some(Op::Delete(q))) => {
                    let n = p.min(q);
                    b2.delete(n);
                    x.advance(n);
                    y.advance(n);
                }
                _ => return Err(Mismatch("transform: one side ended early")),
            }
        }
        Ok((a2, b2))
    }
}

/// A cursor over runs that can consume part of a run.
struct Runs<'a> {
    ops: &'a [Op],
    index: usize,
    /// Chars of `ops[index]` already consumed.
    offset: usize,
}

impl<'a> Runs<'a> {
    fn new(ops: &'a [Op]) -> Runs<'a> {
        Runs { ops, index: 0, offset: 0 }
    }

    /// The rest of the current run.
    fn peek(&self) -> Option<Op> {
        let op = self.ops.get(self.index)?;
        Some(match op {
            Op::Retain(n) => Op::Retain(n - self.offset),
            Op::Delete(n) => Op::Delete(n - self.offset),
            Op::Insert(s, n) => {
                if self.offset == 0 {
                    Op::Insert(s.clone(), *n)
                } else {
                    Op::Insert(s.chars().skip(self.offset).collect(), n - self.offset)
                }
            }
        })
    }

    fn advance(&mut self, n: usize) {
        self.offset += n;
        let len = match self.ops.get(self.index) {
            Some(Op::Retain(n) | Op::Delete(n) | Op::Insert(_, n)) => *n,
            None => return,
        };
        if self.offset >= len {
            self.index += 1;
            self.offset = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![Just("a"), Just("🦀"), Just("日"), Just("e\u{301}"), Just("\n"), Just("\r\n")],
            0..12,
        )
        .prop_map(|v| v.concat())
    }

    /// A random change set of a text of `len` chars.
    fn arb_change(len: usize) -> impl Strategy<Value = ChangeSet> {
        proptest::collection::vec((0..4u8, 0..4usize, arb_text()), 0..6).prop_map(move |steps| {
            let mut cs = ChangeSet::empty();
            let mut left = len;
            for (kind, n, text) in steps {
                let n = n.min(left);
                match kind {
                    0 => cs.retain(n),
                    1 => cs.delete(n),
                    _ => {
                        cs.insert(&text);
                        continue;
                    }
                }
                left -= n;
            }
            cs.retain(left);
            cs
        })
    }

    fn text_and_two_changes() -> impl Strategy<Value = (String, ChangeSet, ChangeSet)> {
        arb_text().prop_flat_map(|t| {
            let n = t.chars().count();
            (Just(t), arb_change(n), arb_change(n))
        })
    }

    /// A text, a change of it, and a change of the result.
    fn text_then_two_changes() -> impl Strategy<Value = (String, ChangeSet, ChangeSet)> {
        arb_text()
            .prop_flat_map(|t| {
                let n = t.chars().count();
                (Just(t), arb_change(n))
            })
            .prop_flat_map(|(t, a)| {
                let n = a.target_len();
                (Just(t), Just(a), arb_change(n))
            })
    }

    #[test]
    fn replace_and_edits() {
        let cs = ChangeSet::replace(5, 1, 2, "🦀x");
        assert_eq!(cs.apply_str("héllo").expect("fits"), "h🦀xlo");
        assert_eq!(cs.edits(), vec![(1, 3, "🦀x".to_owned())]);
        assert_eq!(ChangeSet::replace(3, 9, 9, "z").apply_str("abc").expect("clamped"), "abcz");
        assert!(ChangeSet::identity(3).is_identity());
        assert!(ChangeSet::identity(2).apply_str("abc").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn compose_is_sequential_application((text, a, b) in text_then_two_changes()) {
            let mid = a.apply_str(&text).expect("a fits");
            let both = a.compose(&b).expect("compose");
            prop_assert_eq!(both.apply_str(&text).expect("fits"), b.apply_str(&mid).expect("fits"));
        }

        #[test]
        fn transform_converges((text, a, b) in text_and_two_changes()) {
            let (a2, b2) = ChangeSet::transform(&a, &b).expect("transform");
            let via_a = b2.apply_str(&a.apply_str(&text).expect("a")).expect("b'");
            let via_b = a2.apply_str(&b.apply_str(&text).expect("b")).expect("a'");
            prop_assert_eq!(via_a, via_b);
        }

        #[test]
        fn edits_rebuild_the_result((text, a, _b) in text_and_two_changes()) {
            let mut chars: Vec<char> = text.chars().collect();
            for (start, end, new) in a.edits().into_iter().rev() {
                chars.splice(start..end, new.chars());
            }
            prop_assert_eq!(chars.into_iter().collect::<String>(), a.apply_str(&text).expect("a"));
        }
    }
}
