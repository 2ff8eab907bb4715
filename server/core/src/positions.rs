//! The one module that converts positions (architecture invariant 6).
//!
//! Editors speak LSP positions: a zero-based line and a `character` counted
//! in the negotiated encoding (UTF-8 bytes, UTF-16 code units, or UTF-32
//! code points). weft's texts are [`Rope`]s indexed by `char`, and yrs
//! texts count UTF-16 units. Everything goes through a rope, so a
//! conversion is O(log n), never a scan of the file. Lines end at `\n`,
//! `\r\n` or `\r`, as LSP says (ropey is built without Unicode line breaks).
//!
//! Bad positions are clamped, as the LSP specification asks: a `character`
//! past the end of its line means the line's end, a line past the end of
//! the document means its end. The caller learns that it was clamped.
//!
//! The place between the `\r` and the `\n` of a line break has no position:
//! `\r\n` is one line break, and a position past a line's content is
//! clamped to its end, before the `\r` (VS Code's `validatePosition` does
//! the same, and its cursor cannot stand inside the pair). So [`to_pos`]
//! names a char index there by the position before the `\r`, and a caller
//! that must address that place exactly (an edit that changes the `\n` but
//! not the `\r`) widens its range over the pair instead: see
//! [`splits_crlf`]. A lone `\r` is a line break of its own, so typing one
//! right before a `\n`, or a `\n` right after one, turns two line breaks
//! into one.

use ropey::Rope;

/// A position encoding an editor and the bridge agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Utf8,
    Utf16,
    Utf32,
}

impl Encoding {
    /// The LSP name (`"utf-8"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Utf16 => "utf-16",
            Encoding::Utf32 => "utf-32",
        }
    }

    /// Parses an LSP name.
    pub fn parse(s: &str) -> Option<Encoding> {
        match s {
            "utf-8" => Some(Encoding::Utf8),
            "utf-16" => Some(Encoding::Utf16),
            "utf-32" => Some(Encoding::Utf32),
            _ => None,
        }
    }
}

/// A line and a character offset in some [`Encoding`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: u32,
    pub character: u32,
}

/// Where a [`Pos`] landed in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    /// Char index into the rope.
    pub char_index: usize,
    /// Whether the position was outside the text (or inside a character or
    /// a `\r\n`) and had to be moved.
    pub clamped: bool,
}

/// Number of lines as LSP counts them (a trailing newline opens an empty last line).
fn line_count(rope: &Rope) -> usize {
    rope.len_lines()
}

/// Char index of the end of `line`'s content (before its line break).
fn line_content_end(rope: &Rope, line: usize) -> usize {
    let start = rope.line_to_char(line);
    let slice = rope.line(line);
    let mut len = slice.len_chars();
    if len > 0 && slice.char(len - 1) == '\n' {
        len -= 1;
        if len > 0 && slice.char(len - 1) == '\r' {
            len -= 1;
        }
    } else if len > 0 && slice.char(len - 1) == '\r' {
        len -= 1;
    }
    start + len
}

/// Converts an LSP position to a char index of `rope`.
pub fn to_char(rope: &Rope, pos: Pos, enc: Encoding) -> Resolved {
    let line = pos.line as usize;
    if line >= line_count(rope) {
        return Resolved { char_index: rope.len_chars(), clamped: true };
    }
    let start = rope.line_to_char(line);
    let end = line_content_end(rope, line);
    let want = pos.character as usize;
    let (index, exact) = match enc {
        Encoding::Utf32 => (start + want, true),
        Encoding::Utf16 => {
            let base = rope.char_to_utf16_cu(start);
            let target = base + want;
            let index = rope.utf16_cu_to_char(target.min(rope.len_utf16_cu()));
            (index, rope.char_to_utf16_cu(index) == target)
        }
        Encoding::Utf8 => {
            let base = rope.char_to_byte(start);
            let target = base + want;
            let index = rope.byte_to_char(target.min(rope.len_bytes()));
            (index, rope.char_to_byte(index) == target)
        }
    };
    if index > end {
        return Resolved { char_index: end, clamped: true };
    }
    Resolved { char_index: index, clamped: !exact }
}

/// Whether `char_index` falls between the `\r` and the `\n` of a line
/// break, the one place in a text that no LSP position names.
pub fn splits_crlf(rope: &Rope, char_index: usize) -> bool {
    char_index > 0
        && char_index < rope.len_chars()
        && rope.char(char_index - 1) == '\r'
        && rope.char(char_index) == '\n'
}

/// Converts a char index of `rope` (clamped to its length) to an LSP
/// position. An index between `\r` and `\n` has no position of its own: it
/// is named by the one before the `\r` (see the module docs), so
/// `to_char(to_pos(i))` is `i` everywhere else and `i - 1` there.
pub fn to_pos(rope: &Rope, char_index: usize, enc: Encoding) -> Pos {
    let mut index = char_index.min(rope.len_chars());
    if splits_crlf(rope, index) {
        index -= 1;
    }
    let line = rope.char_to_line(index);
    let start = rope.line_to_char(line);
    let character = match enc {
        Encoding::Utf32 => index - start,
        Encoding::Utf16 => rope.char_to_utf16_cu(index) - rope.char_to_utf16_cu(start),
        Encoding::Utf8 => rope.char_to_byte(index) - rope.char_to_byte(start),
    };
    Pos { line: line as u32, character: character as u32 }
}

/// UTF-16 offset (what yrs counts with `OffsetKind::Utf16`) of a char index.
pub fn char_to_utf16(rope: &Rope, char_index: usize) -> u32 {
    rope.char_to_utf16_cu(char_index.min(rope.len_chars())) as u32
}

/// Char index of a UTF-16 offset (rounded down inside a surrogate pair).
pub fn utf16_to_char(rope: &Rope, utf16: usize) -> usize {
    rope.utf16_cu_to_char(utf16.min(rope.len_utf16_cu()))
}

/// The end of the text as an LSP position.
pub fn end_pos(rope: &Rope, enc: Encoding) -> Pos {
    to_pos(rope, rope.len_chars(), enc)
}

/// The one line ending an editor keeps in a buffer, for editors that
/// rewrite every line break they are given (VS Code: LSP's
/// `workspaceEdit.normalizesLineEndings`). Such an editor sees the shared
/// text *translated*: every `\r\n`, `\r` and `\n` shown as this one. The
/// translated text has the same lines as the shared one, so offsets map
/// line by line ([`translated_offset`], [`shared_offset`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnding {
    Lf,
    CrLf,
}

impl LineEnding {
    pub fn as_str(self) -> &'static str {
        match self {
            LineEnding::Lf => "\n",
            LineEnding::CrLf => "\r\n",
        }
    }

    /// The line ending of the first line break in `text`, if it has one
    /// (`\r\n` or `\n`; a lone `\r` tells nothing an editor would keep).
    pub fn first_in(text: &str) -> Option<LineEnding> {
        let at = text.find('\n')?;
        Some(if text[..at].ends_with('\r') { LineEnding::CrLf } else { LineEnding::Lf })
    }

    /// `text` with every line break (`\r\n`, `\r`, `\n`) written as this
    /// ending.
    pub fn normalize(self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\r' => {
                    if chars.peek() == Some(&'\n') {
                        chars.next();
                    }
                    out.push_str(self.as_str());
                }
                '\n' => out.push_str(self.as_str()),
                c => out.push(c),
            }
        }
        out
    }
}

/// The line ending (`\r\n` or `\n`) of the line break that ends the line
/// holding `char_index` in `rope`, or of the line before for the last
/// line: how the text writes line breaks at that place. `None` where
/// neither has one (or it is a lone `\r`).
pub fn line_ending_at(rope: &Rope, char_index: usize) -> Option<LineEnding> {
    let line = rope.char_to_line(char_index.min(rope.len_chars()));
    [line, line.saturating_sub(1)].into_iter().find_map(|l| {
        let (end, next) = (line_content_end(rope, l), rope.line_to_char((l + 1).min(rope.len_lines())));
        match next.saturating_sub(end) {
            2 => Some(LineEnding::CrLf),
            1 if rope.char(end) == '\n' => Some(LineEnding::Lf),
            _ => None,
        }
    })
}

/// Maps a char index of `from` to `to`, where one of the two is the other
/// with translated line endings (same lines, same line contents): the same
/// line and column. An index inside a line break maps to the break's start.
fn same_place(from: &Rope, to: &Rope, char_index: usize) -> usize {
    let index = char_index.min(from.len_chars());
    let line = from.char_to_line(index);
    let column = index - from.line_to_char(line);
    let content = line_content_end(from, line) - from.line_to_char(line);
    let line = line.min(to.len_lines().saturating_sub(1));
    (to.line_to_char(line) + column.min(content)).min(to.len_chars())
}

/// The index in `translated` (the text an editor sees) of `shared`'s char
/// `char_index`.
pub fn translated_offset(shared: &Rope, translated: &Rope, char_index: usize) -> usize {
    same_place(shared, translated, char_index)
}

/// The index in `shared` of `translated`'s char `char_index`.
pub fn shared_offset(translated: &Rope, shared: &Rope, char_index: usize) -> usize {
    same_place(translated, shared, char_index)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Encoding; 3] = [Encoding::Utf8, Encoding::Utf16, Encoding::Utf32];

    #[test]
    fn line_endings_are_read_and_written() {
        assert_eq!(LineEnding::first_in("a\r\nb\n"), Some(LineEnding::CrLf));
        assert_eq!(LineEnding::first_in("a\nb\r\n"), Some(LineEnding::Lf));
        assert_eq!(LineEnding::first_in("a\rb"), None);
        assert_eq!(LineEnding::first_in(""), None);
        assert_eq!(LineEnding::Lf.normalize("a\r\nb\rc\nd\r\r\n"), "a\nb\nc\nd\n\n");
        assert_eq!(LineEnding::CrLf.normalize("a\r\nb\rc\nd"), "a\r\nb\r\nc\r\nd");
        assert_eq!(LineEnding::CrLf.normalize("🦀\n日"), "🦀\r\n日");
    }

    #[test]
    fn the_line_ending_at_a_place_is_its_line_s_or_the_one_before() {
        let rope = Rope::from_str("a\r\nb\nc\rd");
        assert_eq!(line_ending_at(&rope, 0), Some(LineEnding::CrLf));
        assert_eq!(line_ending_at(&rope, 2), Some(LineEnding::CrLf));
        assert_eq!(line_ending_at(&rope, 3), Some(LineEnding::Lf));
        // "c\r" ends in a lone \r; the line before ends in \n.
        assert_eq!(line_ending_at(&rope, 5), Some(LineEnding::Lf));
        // The last line ("d") has no break; the one before is a lone \r.
        assert_eq!(line_ending_at(&rope, 7), None);
        assert_eq!(line_ending_at(&Rope::from_str("abc"), 1), None);
        assert_eq!(line_ending_at(&Rope::from_str("x\r\nlast"), 6), Some(LineEnding::CrLf));
    }

    #[test]
    fn offsets_map_by_line_and_column_between_a_text_and_its_translation() {
        let shared = Rope::from_str("ab\r\nc\rd\n🦀\r\n");
        for eol in [LineEnding::Lf, LineEnding::CrLf] {
            let translated = Rope::from_str(&eol.normalize(&shared.to_string()));
            for i in 0..=shared.len_chars() {
                let t = translated_offset(&shared, &translated, i);
                let line = shared.char_to_line(i);
                assert_eq!(translated.char_to_line(t), line, "{eol:?} {i}");
                let back = shared_offset(&translated, &shared, t);
                // Inside a line break both land on the break's start.
                let start = line_content_end(&shared, line).min(i);
                assert_eq!(back, start, "{eol:?} {i}");
            }
            assert_eq!(translated_offset(&shared, &translated, shared.len_chars()), translated.len_chars());
        }
        // "ab\r\n" to "ab\n": the \n (index 3) is inside the break.
        let translated = Rope::from_str("ab\nc\nd\n🦀\n");
        assert_eq!(translated_offset(&shared, &translated, 3), 2);
        assert_eq!(translated_offset(&shared, &translated, 4), 3);
        assert_eq!(shared_offset(&translated, &shared, 3), 4);
    }

    #[test]
    fn multibyte_positions_round_trip_in_every_encoding() {
        let text = "a🦀b\r\n日本語\ne\u{301}x\r\rlast";
        let rope = Rope::from_str(text);
        for enc in ALL {
            for i in 0..=rope.len_chars() {
                let pos = to_pos(&rope, i, enc);
                let back = to_char(&rope, pos, enc);
                // A char index between \r and \n has no LSP position of its
                // own: it is named by the valid position before the \r.
                let expected = if splits_crlf(&rope, i) { i - 1 } else { i };
                assert_eq!(back, Resolved { char_index: expected, clamped: false }, "{enc:?} {i} {pos:?}");
            }
        }
    }

    #[test]
    fn known_positions() {
        let rope = Rope::from_str("a🦀b\r\n日本");
        assert_eq!(to_pos(&rope, 2, Encoding::Utf16), Pos { line: 0, character: 3 });
        assert_eq!(to_pos(&rope, 2, Encoding::Utf8), Pos { line: 0, character: 5 });
        assert_eq!(to_pos(&rope, 2, Encoding::Utf32), Pos { line: 0, character: 2 });
        assert_eq!(to_pos(&rope, 6, Encoding::Utf16), Pos { line: 1, character: 1 });
        assert_eq!(end_pos(&rope, Encoding::Utf8), Pos { line: 1, character: 6 });
    }

    #[test]
    fn the_inside_of_a_crlf_is_named_by_the_place_before_it() {
        // "a\r\nb\r\r\nc": a lone \r right before a \r\n.
        let rope = Rope::from_str("a\r\nb\r\r\nc");
        let inside: Vec<usize> = (0..=rope.len_chars()).filter(|&i| splits_crlf(&rope, i)).collect();
        assert_eq!(inside, [2, 6]);
        for enc in ALL {
            assert_eq!(to_pos(&rope, 2, enc), Pos { line: 0, character: 1 });
            assert_eq!(to_pos(&rope, 6, enc), Pos { line: 2, character: 0 });
            assert_eq!(to_pos(&rope, 5, enc), Pos { line: 2, character: 0 });
            // One past the line's content is the line's end, before the \r.
            let past = to_char(&rope, Pos { line: 0, character: 2 }, enc);
            assert_eq!(past, Resolved { char_index: 1, clamped: true });
        }
        assert!(!splits_crlf(&Rope::from_str("\r"), 1));
        assert!(!splits_crlf(&Rope::from_str("\n\r"), 1));
    }

    #[test]
    fn bad_positions_clamp() {
        let rope = Rope::from_str("ab\r\ncd");
        let past_line = to_char(&rope, Pos { line: 0, character: 99 }, Encoding::Utf16);
        assert_eq!(past_line, Resolved { char_index: 2, clamped: true });
        let past_doc = to_char(&rope, Pos { line: 9, character: 0 }, Encoding::Utf8);
        assert_eq!(past_doc, Resolved { char_index: 6, clamped: true });
        let crab = Rope::from_str("🦀");
        let mid_pair = to_char(&crab, Pos { line: 0, character: 1 }, Encoding::Utf16);
        assert_eq!(mid_pair, Resolved { char_index: 0, clamped: true });
        let mid_bytes = to_char(&crab, Pos { line: 0, character: 2 }, Encoding::Utf8);
        assert_eq!(mid_bytes, Resolved { char_index: 0, clamped: true });
        let empty = Rope::new();
        assert_eq!(to_char(&empty, Pos { line: 0, character: 0 }, Encoding::Utf16).char_index, 0);
    }
}
