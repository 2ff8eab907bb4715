//! Editor A's keystrokes as `textDocument/didChange` params, with positions
//! computed on a rope in O(log n) as a real editor's buffer does.
//!
//! `LspEditor::edit` would do the same job, but its position conversion is
//! deliberately naive (it is the test oracle): several whole-buffer scans
//! per change, ~250 µs per keystroke in a 100 KB document — as much as the
//! whole bridge path, which would make the benchmark measure the test
//! editor. So A's `LspEditor` sets up the session and carries these params
//! with `notify`; its own copy of the buffer stays at the opened text and
//! is not used (any applyEdit sent to A is an anomaly the replay reports).

use anyhow::{Context as _, ensure};
use ropey::Rope;
use serde_json::{Value, json};

use crate::trace::{Patch, apply};

/// The typing editor's buffer: text (as a rope) and LSP version.
pub struct Typist {
    uri: String,
    rope: Rope,
    version: i32,
}

impl Typist {
    /// A buffer opened with `text` at `version`.
    pub fn new(uri: &str, text: &str, version: i32) -> Typist {
        Typist { uri: uri.to_owned(), rope: Rope::from_str(text), version }
    }

    /// The LSP position (line, UTF-16 column) of char `index`.
    fn position(&self, index: usize) -> anyhow::Result<Value> {
        let line = self.rope.char_to_line(index);
        let line_start = self.rope.line_to_char(line);
        // A position between the `\r` and `\n` of a `\r\n` cannot be named.
        ensure!(
            !(index > line_start
                && self.rope.get_char(index - 1) == Some('\r')
                && self.rope.get_char(index) == Some('\n')),
            "char {index} is inside a \\r\\n"
        );
        let character = self.rope.char_to_utf16_cu(index) - self.rope.char_to_utf16_cu(line_start);
        Ok(json!({"line": line, "character": character}))
    }

    /// Applies `p` and returns the `didChange` params reporting it.
    pub fn type_patch(&mut self, p: &Patch) -> anyhow::Result<Value> {
        let end = p.pos.checked_add(p.del).context("patch range overflows")?;
        ensure!(end <= self.rope.len_chars(), "patch {}+{} reaches past the end", p.pos, p.del);
        let range = json!({"start": self.position(p.pos)?, "end": self.position(end)?});
        apply(&mut self.rope, p)?;
        self.version += 1;
        Ok(json!({
            "textDocument": {"uri": self.uri, "version": self.version},
            "contentChanges": [{"range": range, "text": p.ins}],
        }))
    }

    /// The buffer's text.
    pub fn text(&self) -> String {
        self.rope.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_tests::lsp::{ContentChange, Encoding, apply_content_changes};

    #[test]
    fn changes_match_the_oracle_in_utf16() -> anyhow::Result<()> {
        let start = "a🦀\nb日\r\nc";
        let mut t = Typist::new("file:///x", start, 1);
        let mut oracle = start.to_owned();
        for p in [(2, 0, "x"), (3, 1, "é\n"), (0, 1, ""), (8, 0, "🦀")] {
            let patch = Patch { pos: p.0, del: p.1, ins: p.2.into() };
            let params = t.type_patch(&patch)?;
            let change = ContentChange::from_json(&params["contentChanges"][0]).map_err(anyhow::Error::msg)?;
            oracle = apply_content_changes(&oracle, &[change], Encoding::Utf16).map_err(anyhow::Error::msg)?;
            assert_eq!(t.text(), oracle, "{p:?}");
        }
        assert_eq!(t.version, 5);
        assert!(t.type_patch(&Patch { pos: 7, del: 0, ins: "y".into() }).is_err(), "inside a \\r\\n");
        Ok(())
    }
}
