//! A scripted editor that drives a real `weft lsp` over stdio, as VS Code
//! would.
//!
//! [`LspEditor`] speaks the LSP base protocol (`Content-Length` framing,
//! JSON-RPC 2.0), keeps one buffer (text + version) per open document,
//! sends incremental `didChange`s whose ranges are computed in the
//! negotiated position encoding, and answers the server's requests:
//! `workspace/applyEdit` is applied only when its version is the buffer's
//! current one (then echoed back as a `didChange`, like a real editor), and
//! refused with `"stale version"` otherwise. Tests can hold applyEdits to
//! make them arrive late and stale, choose how the echo is worded
//! ([`Echo`]), and send raw bytes. Anything the server does that a real
//! editor would choke on (bad framing, a position inside a character,
//! overlapping edits, an unversioned edit) is recorded in
//! [`LspEditor::violations`], and [`LspEditor::wait_for`] fails on it.
//!
//! The position conversion here is deliberately a separate, naive
//! implementation (a scan per call): it is the oracle the bridge's rope
//! based conversion is tested against, not a copy of it. Nothing here
//! sleeps to wait for a condition; every wait is on messages, with a
//! deadline whose error says what was awaited.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long [`LspEditor::request`] waits for an answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest frame the client accepts from the server.
const MAX_FRAME: usize = 64 << 20;

// ------------------------------------------------------------------ positions

/// A position encoding (LSP `PositionEncodingKind`): what the `character`
/// of a [`Position`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// UTF-8 bytes.
    Utf8,
    /// UTF-16 code units (the LSP default).
    Utf16,
    /// Unicode code points.
    Utf32,
}

impl Encoding {
    /// The LSP name (`"utf-8"`, `"utf-16"`, `"utf-32"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Utf16 => "utf-16",
            Encoding::Utf32 => "utf-32",
        }
    }

    /// Parses an LSP name.
    pub fn parse(name: &str) -> Option<Encoding> {
        match name {
            "utf-8" => Some(Encoding::Utf8),
            "utf-16" => Some(Encoding::Utf16),
            "utf-32" => Some(Encoding::Utf32),
            _ => None,
        }
    }

    /// How many units `c` takes.
    pub fn units(self, c: char) -> usize {
        match self {
            Encoding::Utf8 => c.len_utf8(),
            Encoding::Utf16 => c.len_utf16(),
            Encoding::Utf32 => 1,
        }
    }

    /// How many units `s` takes.
    pub fn len(self, s: &str) -> usize {
        match self {
            Encoding::Utf8 => s.len(),
            Encoding::Utf16 => s.encode_utf16().count(),
            Encoding::Utf32 => s.chars().count(),
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An LSP position: zero-based line, and `character` in some [`Encoding`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position {
    pub line: u32,
    pub character: u32,
}

impl Position {
    pub fn new(line: u32, character: u32) -> Position {
        Position { line, character }
    }
}

/// An LSP range (end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Range {
    pub start: Position,
    pub end: Position,
}

impl Range {
    pub fn new(start: Position, end: Position) -> Range {
        Range { start, end }
    }
}

/// An LSP `TextEdit`: its range refers to the document before the edit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextEdit {
    pub range: Range,
    #[serde(rename = "newText")]
    pub new_text: String,
}

/// One entry of a `didChange`'s `contentChanges`: a range (valid at its
/// point in the sequence) and its replacement, or (no range) the whole text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentChange {
    pub range: Option<Range>,
    pub text: String,
}

impl ContentChange {
    /// The JSON form (`{"range", "text"}` or `{"text"}`).
    pub fn to_json(&self) -> Value {
        match &self.range {
            Some(range) => json!({"range": range, "text": self.text}),
            None => json!({"text": self.text}),
        }
    }

    /// Parses the JSON form.
    pub fn from_json(v: &Value) -> Result<ContentChange, String> {
        let text = v.get("text").and_then(Value::as_str).ok_or_else(|| format!("content change without text: {v}"))?;
        let range = match v.get("range") {
            None | Some(Value::Null) => None,
            Some(r) => Some(serde_json::from_value(r.clone()).map_err(|e| format!("bad range {r}: {e}"))?),
        };
        Ok(ContentChange { range, text: text.to_owned() })
    }
}

/// Byte offsets at which lines start. Lines end at `\n`, `\r\n` or `\r`, as
/// LSP says; a trailing line break opens an empty last line.
pub fn line_starts(text: &str) -> Vec<usize> {
    let b = text.as_bytes();
    let mut starts = vec![0];
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\n' => starts.push(i + 1),
            b'\r' => {
                if b.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                starts.push(i + 1);
            }
            _ => {}
        }
        i += 1;
    }
    starts
}

/// Number of lines as LSP counts them.
pub fn line_count(text: &str) -> usize {
    line_starts(text).len()
}

/// Byte offset of the end of `line`'s content (before its line break).
fn line_content_end(text: &str, starts: &[usize], line: usize) -> usize {
    let b = text.as_bytes();
    match starts.get(line + 1) {
        None => text.len(),
        Some(&next) => {
            if next >= 2 && b[next - 1] == b'\n' && b[next - 2] == b'\r' {
                next - 2
            } else {
                next - 1
            }
        }
    }
}

/// Whether byte offset `byte` falls between the `\r` and the `\n` of a
/// `\r\n` (a place no LSP position can name).
pub fn splits_crlf(text: &str, byte: usize) -> bool {
    let b = text.as_bytes();
    byte > 0 && byte < b.len() && b[byte - 1] == b'\r' && b[byte] == b'\n'
}

/// Byte offset of the `char_index`-th char of `text` (clamped to its end).
pub fn char_to_byte(text: &str, char_index: usize) -> usize {
    text.char_indices().nth(char_index).map_or(text.len(), |(i, _)| i)
}

/// Char index of byte offset `byte` (which must be a char boundary).
pub fn byte_to_char(text: &str, byte: usize) -> usize {
    text.get(..byte).map_or_else(|| text.chars().count(), |s| s.chars().count())
}

/// The LSP position of byte offset `byte` in `text`. Errors if `byte` is
/// past the end, inside a UTF-8 sequence, or inside a `\r\n`.
pub fn position_of(text: &str, byte: usize, enc: Encoding) -> Result<Position, String> {
    if byte > text.len() || !text.is_char_boundary(byte) {
        return Err(format!("byte {byte} is not a char boundary of a {}-byte text", text.len()));
    }
    if splits_crlf(text, byte) {
        return Err(format!("byte {byte} is inside a \\r\\n: no LSP position names it"));
    }
    let starts = line_starts(text);
    let line = starts.partition_point(|&s| s <= byte) - 1;
    let character = enc.len(&text[starts[line]..byte]);
    Ok(Position::new(line as u32, character as u32))
}

/// The byte offset of `pos` in `text`. Strict (`lenient == false`): a line
/// past the end, a `character` past its line's end (line breaks are not
/// part of a line) or inside a character is an error. Lenient: clamped as
/// VS Code does (to the document's end, the line's end, the start of the
/// character).
pub fn offset_of(text: &str, pos: Position, enc: Encoding, lenient: bool) -> Result<usize, String> {
    let starts = line_starts(text);
    let line = pos.line as usize;
    if line >= starts.len() {
        return if lenient {
            Ok(text.len())
        } else {
            Err(format!("line {} is past the last line {}", pos.line, starts.len() - 1))
        };
    }
    let start = starts[line];
    let end = line_content_end(text, &starts, line);
    let want = pos.character as usize;
    let mut units = 0;
    for (i, c) in text[start..end].char_indices() {
        if units == want {
            return Ok(start + i);
        }
        units += enc.units(c);
        if units > want {
            return if lenient {
                Ok(start + i)
            } else {
                Err(format!(
                    "{}:{} is inside the character {c:?} ({} {enc} units)",
                    pos.line,
                    pos.character,
                    enc.units(c)
                ))
            };
        }
    }
    if units == want || lenient {
        Ok(end)
    } else {
        Err(format!("{}:{} is past the end of the line ({units} {enc} units long)", pos.line, pos.character))
    }
}

/// A replacement of bytes `start..end` of some text by `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
    text: String,
}

/// Resolves LSP text edits (all relative to `text`) to byte spans, sorted
/// as VS Code sorts them: by start, then end, then array order (so inserts
/// at one position keep their array order and go before a replacement
/// starting there). Overlapping ranges are an error, as in VS Code.
fn resolve_edits(text: &str, edits: &[TextEdit], enc: Encoding, lenient: bool) -> Result<Vec<Span>, String> {
    let mut spans = Vec::with_capacity(edits.len());
    for (i, e) in edits.iter().enumerate() {
        let start = offset_of(text, e.range.start, enc, lenient).map_err(|err| format!("edit {i}: {err}"))?;
        let end = offset_of(text, e.range.end, enc, lenient).map_err(|err| format!("edit {i}: {err}"))?;
        if end < start {
            return Err(format!("edit {i}: range ends before it starts: {:?}", e.range));
        }
        spans.push((start, end, i, e.new_text.clone()));
    }
    spans.sort_by_key(|&(start, end, i, _)| (start, end, i));
    for w in spans.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(format!("edits {} and {} overlap", w[0].2, w[1].2));
        }
    }
    Ok(spans.into_iter().map(|(start, end, _, text)| Span { start, end, text }).collect())
}

/// Applies sorted, non-overlapping spans (all relative to `text`).
fn apply_spans(text: &str, spans: &[Span]) -> String {
    let mut out = String::with_capacity(text.len() + spans.iter().map(|s| s.text.len()).sum::<usize>());
    let mut at = 0;
    for s in spans {
        out.push_str(&text[at..s.start]);
        out.push_str(&s.text);
        at = s.end;
    }
    out.push_str(&text[at..]);
    out
}

/// The `contentChanges` that report `spans` (sorted, relative to `text`) as
/// one sequence: from the end of the document to its start, so every range
/// is valid at its point in the sequence. `None` if some range cannot be
/// named at its point (an earlier change put a `\n` right after a `\r` at
/// its boundary).
fn sequential_changes(text: &str, spans: &[Span], enc: Encoding) -> Option<Vec<ContentChange>> {
    let mut working = text.to_owned();
    let mut changes = Vec::with_capacity(spans.len());
    for s in spans.iter().rev() {
        // Changes applied so far all lie at or after `s.end`, so the
        // offsets of `s` still hold in `working`.
        let start = position_of(&working, s.start, enc).ok()?;
        let end = position_of(&working, s.end, enc).ok()?;
        working.replace_range(s.start..s.end, &s.text);
        changes.push(ContentChange { range: Some(Range::new(start, end)), text: s.text.clone() });
    }
    Some(changes)
}

/// One change covering every span (from the first start to the last end).
fn merged_change(text: &str, spans: &[Span], result: &str, enc: Encoding) -> Result<ContentChange, String> {
    let (Some(first), Some(last)) = (spans.first(), spans.last()) else {
        return Err("no edits to merge".into());
    };
    let new_end = result.len() - (text.len() - last.end);
    Ok(ContentChange {
        range: Some(Range::new(position_of(text, first.start, enc)?, position_of(text, last.end, enc)?)),
        text: result[first.start..new_end].to_owned(),
    })
}

/// Shrinks each span by the prefix and suffix its old and new text share
/// (never splitting a `\r\n`); drops spans that change nothing.
fn trim_spans(text: &str, spans: &[Span]) -> Vec<Span> {
    let mut out = Vec::new();
    for s in spans {
        let old = &text[s.start..s.end];
        let new = s.text.as_str();
        let mut prefix: usize =
            old.chars().zip(new.chars()).take_while(|(a, b)| a == b).map(|(a, _)| a.len_utf8()).sum();
        let mut suffix: usize = old[prefix..]
            .chars()
            .rev()
            .zip(new[prefix..].chars().rev())
            .take_while(|(a, b)| a == b)
            .map(|(a, _)| a.len_utf8())
            .sum();
        if splits_crlf(text, s.start + prefix) {
            prefix -= 1;
        }
        if splits_crlf(text, s.end - suffix) {
            suffix -= 1;
        }
        let span =
            Span { start: s.start + prefix, end: s.end - suffix, text: new[prefix..new.len() - suffix].to_owned() };
        if span.start < span.end || !span.text.is_empty() {
            out.push(span);
        }
    }
    out
}

/// How the editor reports an applied `workspace/applyEdit` back in its
/// `didChange` (VS Code may split, merge or trim what it applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Echo {
    /// The edits as given, from the end of the document to its start.
    #[default]
    Exact,
    /// Each edit trimmed of the text it would replace by itself; edits that
    /// change nothing are left out (possibly leaving `contentChanges` empty).
    Trimmed,
    /// One change from the first edit's start to the last edit's end.
    Merged,
    /// The whole new text, without a range.
    Full,
}

/// The outcome of applying a multi-edit `TextDocumentEdit` to a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedEdit {
    /// The buffer after the edit.
    pub text: String,
    /// The `contentChanges` reporting it.
    pub changes: Vec<ContentChange>,
}

/// Applies LSP `edits` (ranges relative to `text`, non-overlapping) the way
/// VS Code does, and words the report as `echo` asks. With `lenient`,
/// positions are clamped instead of refused.
pub fn apply_text_edits(
    text: &str,
    edits: &[TextEdit],
    enc: Encoding,
    echo: Echo,
    lenient: bool,
) -> Result<AppliedEdit, String> {
    let spans = resolve_edits(text, edits, enc, lenient)?;
    let result = apply_spans(text, &spans);
    let changes = match echo {
        Echo::Full => vec![ContentChange { range: None, text: result.clone() }],
        Echo::Merged if spans.is_empty() => Vec::new(),
        Echo::Merged => vec![merged_change(text, &spans, &result, enc)?],
        Echo::Exact | Echo::Trimmed => {
            let spans = if echo == Echo::Trimmed { trim_spans(text, &spans) } else { spans };
            match sequential_changes(text, &spans, enc) {
                Some(changes) => changes,
                None => vec![merged_change(text, &spans, &result, enc)?],
            }
        }
    };
    Ok(AppliedEdit { text: result, changes })
}

/// Applies `didChange` content changes in order, as a server must (each
/// range relative to the text left by the previous change). Strict.
pub fn apply_content_changes(text: &str, changes: &[ContentChange], enc: Encoding) -> Result<String, String> {
    let mut out = text.to_owned();
    for (i, c) in changes.iter().enumerate() {
        match &c.range {
            None => out = c.text.clone(),
            Some(r) => {
                let start = offset_of(&out, r.start, enc, false).map_err(|e| format!("change {i}: {e}"))?;
                let end = offset_of(&out, r.end, enc, false).map_err(|e| format!("change {i}: {e}"))?;
                if end < start {
                    return Err(format!("change {i}: range ends before it starts: {r:?}"));
                }
                out.replace_range(start..end, &c.text);
            }
        }
    }
    Ok(out)
}

// ------------------------------------------------------------------ framing

/// One message in LSP base-protocol framing.
pub fn frame(message: &Value) -> Vec<u8> {
    let body = message.to_string();
    let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// Reads one framed message body. `Ok(None)` at a clean end of stream
/// (before any header byte). Strict: header lines must end in `\r\n`, must
/// be `Name: value`, and `Content-Length` is required; anything else on the
/// stream (a stray `println!`) is an error.
pub async fn read_frame<R: AsyncBufRead + Unpin>(reader: &mut R) -> anyhow::Result<Option<Vec<u8>>> {
    let mut length = None;
    let mut first = true;
    loop {
        let mut line = Vec::new();
        let n = reader.read_until(b'\n', &mut line).await?;
        if n == 0 {
            if first {
                return Ok(None);
            }
            bail!("stream ended inside a header");
        }
        first = false;
        let Some(line) = line.strip_suffix(b"\r\n") else {
            bail!("header line not terminated by \\r\\n: {:?}", String::from_utf8_lossy(&line));
        };
        if line.is_empty() {
            break;
        }
        let line = std::str::from_utf8(line).with_context(|| format!("header is not UTF-8: {line:?}"))?;
        let (name, value) =
            line.split_once(':').with_context(|| format!("not an LSP header (stray output on stdout?): {line:?}"))?;
        if name.trim().eq_ignore_ascii_case("content-length") {
            let n: usize = value.trim().parse().with_context(|| format!("bad Content-Length: {line:?}"))?;
            ensure!(n <= MAX_FRAME, "Content-Length {n} is larger than {MAX_FRAME}");
            length = Some(n);
        }
    }
    let length = length.context("header without Content-Length")?;
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.context("stream ended inside a message body")?;
    Ok(Some(body))
}

/// What the reader task hands to the editor.
#[derive(Debug)]
enum Incoming {
    /// A message, and when its frame was read off the stream.
    Message(Value, Instant),
    /// A frame whose body is not a JSON object.
    Malformed(String),
    /// The stream ended (cleanly or on a framing error).
    Closed(String),
}

async fn read_loop<R: AsyncRead + Unpin>(reader: R, tx: mpsc::UnboundedSender<Incoming>) {
    let mut reader = BufReader::new(reader);
    loop {
        match read_frame(&mut reader).await {
            Ok(None) => {
                let _ = tx.send(Incoming::Closed("end of stream".into()));
                return;
            }
            Err(e) => {
                let _ = tx.send(Incoming::Malformed(format!("framing: {e:#}")));
                let _ = tx.send(Incoming::Closed(format!("framing error: {e:#}")));
                return;
            }
            Ok(Some(body)) => {
                let read_at = Instant::now();
                let msg = match serde_json::from_slice::<Value>(&body) {
                    Ok(v) if v.is_object() => Incoming::Message(v, read_at),
                    Ok(v) => Incoming::Malformed(format!("message is not an object: {v}")),
                    Err(e) => {
                        Incoming::Malformed(format!("body is not JSON ({e}): {:?}", String::from_utf8_lossy(&body)))
                    }
                };
                if tx.send(msg).is_err() {
                    return;
                }
            }
        }
    }
}

// ------------------------------------------------------------------ the editor

/// A JSON-RPC error object the server answered with.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JSON-RPC error {}: {}", self.code, self.message)?;
        if let Some(data) = &self.data {
            write!(f, " (data: {data})")?;
        }
        Ok(())
    }
}

impl std::error::Error for RpcError {}

impl RpcError {
    fn from_json(v: &Value) -> RpcError {
        RpcError {
            code: v.get("code").and_then(Value::as_i64).unwrap_or(i64::MIN),
            message: v.get("message").and_then(Value::as_str).unwrap_or("<no message>").to_owned(),
            data: v.get("data").cloned(),
        }
    }
}

/// A notification the server sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub method: String,
    pub params: Value,
}

/// A request the server sent (every one, whatever it was).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerRequest {
    pub id: Value,
    pub method: String,
    pub params: Value,
}

/// What became of one `workspace/applyEdit`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyEditRecord {
    pub params: Value,
    pub applied: bool,
    /// The `failureReason` answered when refused.
    pub failure_reason: Option<String>,
    /// Whether it was held back by [`LspEditor::set_hold_apply_edits`].
    pub was_held: bool,
    /// The version of every buffer it named, when it was handled.
    pub versions_then: Vec<(String, Option<i32>)>,
    /// When its frame was read off the bridge's stdout (before this
    /// editor parsed, checked and applied it).
    pub received: Instant,
}

/// One local change for [`LspEditor::edit`]: replace `len_chars` chars at
/// `char_index` (in the text left by the previous change) with `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEdit {
    pub char_index: usize,
    pub len_chars: usize,
    pub text: String,
}

impl LocalEdit {
    pub fn insert(char_index: usize, text: &str) -> LocalEdit {
        LocalEdit { char_index, len_chars: 0, text: text.to_owned() }
    }

    pub fn delete(char_index: usize, len_chars: usize) -> LocalEdit {
        LocalEdit { char_index, len_chars, text: String::new() }
    }

    pub fn replace(char_index: usize, len_chars: usize, text: &str) -> LocalEdit {
        LocalEdit { char_index, len_chars, text: text.to_owned() }
    }
}

#[derive(Debug, Clone)]
struct Buffer {
    text: String,
    version: i32,
}

type Writer = Box<dyn AsyncWrite + Unpin + Send>;

/// An editor driving one `weft lsp` process (or any LSP server on a pair
/// of streams, see [`LspEditor::connect`]).
pub struct LspEditor {
    name: String,
    child: Option<Child>,
    writer: Writer,
    rx: mpsc::UnboundedReceiver<Incoming>,
    reader: JoinHandle<()>,
    log_path: Option<PathBuf>,
    next_id: i64,
    outstanding: HashSet<i64>,
    responses: HashMap<i64, Result<Value, RpcError>>,
    encoding: Encoding,
    docs: HashMap<String, Buffer>,
    hold: bool,
    held: VecDeque<(Value, Value, Instant)>,
    /// When the message being handled was read (see [`ApplyEditRecord::received`]).
    read_at: Instant,
    echo: Echo,
    echo_before_answer: bool,
    lenient_positions: bool,
    /// The line ending this editor writes every line break of an applied
    /// edit as (VS Code's `normalizesLineEndings`), if it does.
    eol: Option<&'static str>,
    /// Out-of-range edit positions that were clamped (lenient mode only).
    pub clamped: Vec<String>,
    closed: Option<String>,
    /// Every notification the server sent, in order.
    pub notifications: Vec<Notification>,
    /// Every request the server sent, in order.
    pub server_requests: Vec<ServerRequest>,
    /// Every `workspace/applyEdit` handled (held ones once answered).
    pub apply_edits: Vec<ApplyEditRecord>,
    /// Things the server did that a real editor would reject or choke on.
    pub violations: Vec<String>,
    /// Error answers with `"id": null` (to messages the server could not
    /// parse or identify).
    pub errors_without_id: Vec<RpcError>,
    /// The server's answer to `initialize`.
    pub initialize_result: Option<Value>,
}

impl Drop for LspEditor {
    fn drop(&mut self) {
        self.reader.abort();
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// The LSP `languageId` for a URI, by extension.
pub fn language_id(uri: &str) -> &'static str {
    match uri.rsplit('.').next().unwrap_or_default() {
        "rs" => "rust",
        "py" => "python",
        "js" | "mjs" | "cjs" => "javascript",
        "ts" => "typescript",
        "tsx" => "typescriptreact",
        "go" => "go",
        "md" => "markdown",
        "json" => "json",
        "toml" => "toml",
        _ => "plaintext",
    }
}

/// A `file://` URI for an absolute path (percent-encoding what must be).
pub fn file_uri(path: &Path) -> String {
    let mut out = String::from("file://");
    for b in path.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `initialize` params a VS Code-like editor sends, offering
/// `encodings` and naming itself `name` (`initializationOptions.name`).
pub fn initialize_params(encodings: &[&str], name: &str) -> Value {
    json!({
        "processId": std::process::id(),
        "clientInfo": {"name": "weft-tests", "version": env!("CARGO_PKG_VERSION")},
        "locale": "en",
        "rootUri": null,
        "workspaceFolders": null,
        "capabilities": {
            "general": {"positionEncodings": encodings},
            "workspace": {
                "applyEdit": true,
                "workspaceEdit": {
                    "documentChanges": true,
                    "failureHandling": "transactional",
                    "normalizesLineEndings": false,
                },
                "configuration": true,
                "workspaceFolders": true,
            },
            "textDocument": {
                "synchronization": {"dynamicRegistration": false, "willSave": false, "didSave": false},
            },
            "window": {"workDoneProgress": true, "showMessage": {}, "showDocument": {"support": true}},
        },
        "initializationOptions": {"name": name},
        "trace": "off",
    })
}

/// [`initialize_params`] for an editor that rewrites the line breaks of
/// every edit it applies to its buffer's line ending (VS Code).
pub fn normalizing_initialize_params(encodings: &[&str], name: &str) -> Value {
    let mut params = initialize_params(encodings, name);
    params["capabilities"]["workspace"]["workspaceEdit"]["normalizesLineEndings"] = json!(true);
    params
}

/// `text` with every line break (`\r\n`, `\r`, `\n`) written as `eol`.
pub fn normalize_line_breaks(text: &str, eol: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n").replace('\n', eol)
}

impl LspEditor {
    /// Starts `weft lsp` (the binary of [`crate::weft_bin`]) with its
    /// stderr in `dir/lsp-NAME.stderr.log` and `WEFT_NAME=name`. Must be
    /// called inside a tokio runtime. The process is killed on drop.
    pub fn spawn(dir: &Path, name: &str) -> anyhow::Result<LspEditor> {
        LspEditor::spawn_with(dir, name, &[], &[])
    }

    /// Like [`LspEditor::spawn`] with extra arguments after `lsp` and extra
    /// environment variables.
    pub fn spawn_with(dir: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<LspEditor> {
        let bin = crate::weft_bin();
        ensure!(bin.exists(), "{} is missing: run `cargo build --bin weft` first (scripts/test does)", bin.display());
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let safe: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        let log_path = dir.join(format!("lsp-{safe}.stderr.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let mut cmd = Command::new(&bin);
        cmd.arg("lsp")
            .args(args)
            .current_dir(dir)
            .env("WEFT_LOG", std::env::var("WEFT_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .env("WEFT_NAME", name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().with_context(|| format!("starting {} lsp", bin.display()))?;
        let stdin = child.stdin.take().context("weft lsp stdin")?;
        let stdout = child.stdout.take().context("weft lsp stdout")?;
        let mut editor = LspEditor::connect(stdout, stdin, name);
        editor.child = Some(child);
        editor.log_path = Some(log_path);
        Ok(editor)
    }

    /// An editor talking to a server over `reader` (server → editor) and
    /// `writer` (editor → server), e.g. halves of `tokio::io::duplex`.
    pub fn connect<R, W>(reader: R, writer: W, name: &str) -> LspEditor
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_loop(reader, tx));
        LspEditor {
            name: name.to_owned(),
            child: None,
            writer: Box::new(writer),
            rx,
            reader,
            log_path: None,
            next_id: 1,
            outstanding: HashSet::new(),
            responses: HashMap::new(),
            encoding: Encoding::Utf16,
            docs: HashMap::new(),
            hold: false,
            held: VecDeque::new(),
            read_at: Instant::now(),
            echo: Echo::Exact,
            echo_before_answer: false,
            lenient_positions: false,
            eol: None,
            clamped: Vec::new(),
            closed: None,
            notifications: Vec::new(),
            server_requests: Vec::new(),
            apply_edits: Vec::new(),
            violations: Vec::new(),
            errors_without_id: Vec::new(),
            initialize_result: None,
        }
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The negotiated position encoding (UTF-16 until `initialize`).
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// The server's stderr so far (empty without a process).
    pub fn log(&self) -> String {
        self.log_path.as_ref().and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default()
    }

    /// The last few KB of [`LspEditor::log`], for error messages.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let mut start = log.len().saturating_sub(6000);
        while !log.is_char_boundary(start) {
            start += 1;
        }
        if log.is_empty() { String::new() } else { format!("\n--- {} stderr (tail) ---\n{}", self.name, &log[start..]) }
    }

    /// Why the server's output ended, if it did.
    pub fn closed(&self) -> Option<&str> {
        self.closed.as_deref()
    }

    /// The server process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    // -------------------------------------------------------------- settings

    /// While set, incoming `workspace/applyEdit`s are queued unanswered.
    pub fn set_hold_apply_edits(&mut self, hold: bool) {
        self.hold = hold;
    }

    /// How many applyEdits are held.
    pub fn held_apply_edits(&self) -> usize {
        self.held.len()
    }

    /// How applied edits are reported back (default [`Echo::Exact`]).
    pub fn set_echo(&mut self, echo: Echo) {
        self.echo = echo;
    }

    /// Send the `didChange` echo before the `applied: true` answer (what
    /// VS Code's client may do) instead of after it.
    pub fn set_echo_before_answer(&mut self, before: bool) {
        self.echo_before_answer = before;
    }

    /// Clamp bad positions in server edits like VS Code instead of refusing
    /// them (each clamp is recorded in `clamped`, not as a violation).
    pub fn set_lenient_positions(&mut self, lenient: bool) {
        self.lenient_positions = lenient;
    }

    /// Write every line break (`\r\n`, `\r`, `\n`) of the edits the server
    /// asks for as `eol`, as VS Code does (it announces this with
    /// `workspace.workspaceEdit.normalizesLineEndings`, which
    /// [`normalizing_initialize_params`] sets).
    pub fn set_normalizes_line_endings(&mut self, eol: &'static str) {
        self.eol = Some(eol);
    }

    // -------------------------------------------------------------- wire

    /// Writes raw bytes to the server (for malformed-input tests).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.writer.write_all(bytes).await.context("writing to the server")?;
        self.writer.flush().await.context("flushing to the server")?;
        Ok(())
    }

    /// Writes one framed JSON-RPC message.
    pub async fn send_message(&mut self, message: &Value) -> anyhow::Result<()> {
        let bytes = frame(message);
        self.send_raw(&bytes).await
    }

    /// Sends a notification (`params` omitted when null).
    pub async fn notify(&mut self, method: &str, params: Value) -> anyhow::Result<()> {
        let mut msg = json!({"jsonrpc": "2.0", "method": method});
        if !params.is_null() {
            msg["params"] = params;
        }
        self.send_message(&msg).await
    }

    /// Sends a request and waits (handling everything else that arrives)
    /// for its answer, at most [`REQUEST_TIMEOUT`]. A JSON-RPC error answer
    /// is an error that downcasts to [`RpcError`].
    pub async fn request(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.request_timeout(method, params, REQUEST_TIMEOUT).await
    }

    /// [`LspEditor::request`] with a chosen timeout.
    pub async fn request_timeout(&mut self, method: &str, params: Value, timeout: Duration) -> anyhow::Result<Value> {
        let id = self.start_request(method, params).await?;
        self.wait_response(id, method, timeout).await
    }

    /// Sends a request without waiting; returns its id for
    /// [`LspEditor::wait_response`].
    pub async fn start_request(&mut self, method: &str, params: Value) -> anyhow::Result<i64> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({"jsonrpc": "2.0", "id": id, "method": method});
        if !params.is_null() {
            msg["params"] = params;
        }
        self.outstanding.insert(id);
        self.send_message(&msg).await.with_context(|| format!("sending {method}"))?;
        Ok(id)
    }

    /// Waits for the answer to request `id` (named `method` in errors).
    pub async fn wait_response(&mut self, id: i64, method: &str, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(res) = self.responses.remove(&id) {
                return res.map_err(|e| anyhow::Error::new(e).context(format!("{method} (request {id}) failed")));
            }
            if let Some(why) = &self.closed {
                bail!("{} closed ({why}) before answering {method}{}", self.name, self.log_tail());
            }
            let now = Instant::now();
            if now >= deadline {
                bail!("{} did not answer {method} within {timeout:?}{}", self.name, self.log_tail());
            }
            self.pump_once(deadline - now).await?;
        }
    }

    // -------------------------------------------------------------- lifecycle

    /// `initialize` offering `encoding` only, then `initialized`; returns
    /// the server's `InitializeResult`.
    pub async fn initialize(&mut self, encoding: &str, name: &str) -> anyhow::Result<Value> {
        self.initialize_with(initialize_params(&[encoding], name)).await
    }

    /// `initialize` offering several encodings (in order of preference),
    /// then `initialized`.
    pub async fn initialize_offering(&mut self, encodings: &[&str], name: &str) -> anyhow::Result<Value> {
        self.initialize_with(initialize_params(encodings, name)).await
    }

    /// `initialize` with hand-made params, then `initialized`. Takes the
    /// negotiated encoding from the answer (UTF-16 if it names none) and
    /// fails if the server picked one the client did not offer (UTF-16 is
    /// always allowed).
    pub async fn initialize_with(&mut self, params: Value) -> anyhow::Result<Value> {
        let offered: Vec<String> = params
            .pointer("/capabilities/general/positionEncodings")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default();
        let result = self.request("initialize", params).await?;
        let chosen = result.pointer("/capabilities/positionEncoding").and_then(Value::as_str).unwrap_or("utf-16");
        ensure!(
            chosen == "utf-16" || offered.iter().any(|o| o == chosen),
            "server chose position encoding {chosen:?}; offered {offered:?}"
        );
        self.encoding = Encoding::parse(chosen).with_context(|| format!("unknown position encoding {chosen:?}"))?;
        self.initialize_result = Some(result.clone());
        self.notify("initialized", json!({})).await?;
        Ok(result)
    }

    /// `shutdown`, then `exit`; waits for the process to end (10 s) and
    /// returns its status (`None` without a process).
    pub async fn shutdown(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        self.request("shutdown", Value::Null).await?;
        self.notify("exit", Value::Null).await?;
        self.wait_exit(Duration::from_secs(10)).await
    }

    /// Waits for the process to end, handling messages meanwhile.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            let Some(child) = self.child.as_mut() else { return Ok(None) };
            if let Some(status) = child.try_wait()? {
                // Handle what it wrote before it went.
                self.pump_ready().await?;
                return Ok(Some(status));
            }
            let now = Instant::now();
            if now >= deadline {
                bail!("{} did not exit within {timeout:?}{}", self.name, self.log_tail());
            }
            if self.closed.is_some() {
                // Its output has ended; only the exit remains to be seen.
                if let Ok(status) = tokio::time::timeout(deadline - now, child.wait()).await {
                    return Ok(Some(status?));
                }
            } else {
                // Wake up now and then: the process may exit with its
                // stdout still held open by a child of its own.
                self.pump_once((deadline - now).min(Duration::from_millis(50))).await?;
            }
        }
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
            child.wait().await?;
        }
        Ok(())
    }

    // -------------------------------------------------------------- weft/*

    /// `weft/share` of `root` (a `file://` URI) through `hub`.
    pub async fn share(&mut self, root: &str, hub: Option<&str>) -> anyhow::Result<Value> {
        let mut params = json!({"root": root});
        if let Some(hub) = hub {
            params["hub"] = hub.into();
        }
        self.request("weft/share", params).await
    }

    /// `weft/join` of `link` into `root`.
    pub async fn join(&mut self, link: &str, password: Option<&str>, root: &str) -> anyhow::Result<Value> {
        let mut params = json!({"link": link, "root": root});
        if let Some(pw) = password {
            params["password"] = pw.into();
        }
        self.request("weft/join", params).await
    }

    /// `weft/status`.
    pub async fn status(&mut self) -> anyhow::Result<Value> {
        self.request("weft/status", Value::Null).await
    }

    /// `weft/leave`.
    pub async fn leave(&mut self) -> anyhow::Result<Value> {
        self.request("weft/leave", Value::Null).await
    }

    /// `weft/verify` with the SHA-256 of `uri`'s buffer.
    pub async fn verify(&mut self, uri: &str) -> anyhow::Result<()> {
        let buf = self.docs.get(uri).with_context(|| format!("{uri} is not open"))?;
        let params = json!({"uri": uri, "version": buf.version, "sha256": sha256_hex(buf.text.as_bytes())});
        self.notify("weft/verify", params).await
    }

    // -------------------------------------------------------------- buffers

    /// Opens `uri` with `text` (version 1, language from the extension).
    pub async fn open(&mut self, uri: &str, text: &str) -> anyhow::Result<()> {
        self.open_with(uri, language_id(uri), 1, text).await
    }

    /// Opens `uri` with a chosen language id and version.
    pub async fn open_with(&mut self, uri: &str, language_id: &str, version: i32, text: &str) -> anyhow::Result<()> {
        ensure!(!self.docs.contains_key(uri), "{uri} is already open");
        self.docs.insert(uri.to_owned(), Buffer { text: text.to_owned(), version });
        let params = json!({"textDocument": {"uri": uri, "languageId": language_id, "version": version, "text": text}});
        self.notify("textDocument/didOpen", params).await
    }

    /// Closes `uri`.
    pub async fn close(&mut self, uri: &str) -> anyhow::Result<()> {
        self.docs.remove(uri).with_context(|| format!("{uri} is not open"))?;
        self.notify("textDocument/didClose", json!({"textDocument": {"uri": uri}})).await
    }

    /// The buffer of `uri`, if open.
    pub fn text(&self, uri: &str) -> Option<&str> {
        self.docs.get(uri).map(|b| b.text.as_str())
    }

    /// The version of `uri`'s buffer, if open.
    pub fn version(&self, uri: &str) -> Option<i32> {
        self.docs.get(uri).map(|b| b.version)
    }

    /// Length of `uri`'s buffer in chars, if open.
    pub fn char_len(&self, uri: &str) -> Option<usize> {
        self.text(uri).map(|t| t.chars().count())
    }

    /// The URIs of the open buffers.
    pub fn open_uris(&self) -> Vec<String> {
        self.docs.keys().cloned().collect()
    }

    /// Whether an edit may start or end at `char_index` of `uri` (not past
    /// the end, not between the `\r` and `\n` of a `\r\n`).
    pub fn is_edit_boundary(&self, uri: &str, char_index: usize) -> bool {
        self.text(uri).is_some_and(|t| char_index <= t.chars().count() && !splits_crlf(t, char_to_byte(t, char_index)))
    }

    /// Types `text` at `char_index`.
    pub async fn type_at(&mut self, uri: &str, char_index: usize, text: &str) -> anyhow::Result<()> {
        self.edit(uri, &[LocalEdit::insert(char_index, text)]).await
    }

    /// Deletes `len_chars` chars at `char_index` (clamped to the end).
    pub async fn delete(&mut self, uri: &str, char_index: usize, len_chars: usize) -> anyhow::Result<()> {
        self.edit(uri, &[LocalEdit::delete(char_index, len_chars)]).await
    }

    /// Replaces `len_chars` chars at `char_index` (clamped) with `text`.
    pub async fn replace(&mut self, uri: &str, char_index: usize, len_chars: usize, text: &str) -> anyhow::Result<()> {
        self.edit(uri, &[LocalEdit::replace(char_index, len_chars, text)]).await
    }

    /// Applies `edits` in order and reports them in ONE `didChange` (one
    /// content change each, ranges in the negotiated encoding), bumping the
    /// version by one. Fails (changing nothing) if an edit starts past the
    /// end or has a boundary inside a `\r\n`.
    pub async fn edit(&mut self, uri: &str, edits: &[LocalEdit]) -> anyhow::Result<()> {
        let enc = self.encoding;
        let buf = self.docs.get(uri).with_context(|| format!("{uri} is not open"))?;
        let mut working = buf.text.clone();
        let mut changes = Vec::with_capacity(edits.len());
        for e in edits {
            let len = working.chars().count();
            ensure!(e.char_index <= len, "{uri}: edit at char {} past the end ({len} chars)", e.char_index);
            let start = char_to_byte(&working, e.char_index);
            let end = char_to_byte(&working, e.char_index.saturating_add(e.len_chars));
            let range = Range::new(
                position_of(&working, start, enc)
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("{uri}: {e:?}"))?,
                position_of(&working, end, enc).map_err(anyhow::Error::msg).with_context(|| format!("{uri}: {e:?}"))?,
            );
            working.replace_range(start..end, &e.text);
            changes.push(ContentChange { range: Some(range), text: e.text.clone() });
        }
        self.commit_local(uri, working, changes).await
    }

    /// Replaces the whole buffer, reported as a full-text change (no range).
    pub async fn set_text(&mut self, uri: &str, text: &str) -> anyhow::Result<()> {
        ensure!(self.docs.contains_key(uri), "{uri} is not open");
        self.commit_local(uri, text.to_owned(), vec![ContentChange { range: None, text: text.to_owned() }]).await
    }

    async fn commit_local(&mut self, uri: &str, text: String, changes: Vec<ContentChange>) -> anyhow::Result<()> {
        let buf = self.docs.get_mut(uri).with_context(|| format!("{uri} is not open"))?;
        buf.text = text;
        buf.version += 1;
        let version = buf.version;
        self.send_did_change(uri, version, &changes).await
    }

    async fn send_did_change(&mut self, uri: &str, version: i32, changes: &[ContentChange]) -> anyhow::Result<()> {
        let params = json!({
            "textDocument": {"uri": uri, "version": version},
            "contentChanges": changes.iter().map(ContentChange::to_json).collect::<Vec<_>>(),
        });
        self.notify("textDocument/didChange", params).await
    }

    // -------------------------------------------------------------- pumping

    /// Handles one incoming message; `false` if none came within `wait` or
    /// the stream has ended.
    pub async fn pump_once(&mut self, wait: Duration) -> anyhow::Result<bool> {
        let incoming = match tokio::time::timeout(wait, self.rx.recv()).await {
            Err(_) => return Ok(false),
            Ok(None) => {
                self.closed.get_or_insert_with(|| "reader stopped".into());
                return Ok(false);
            }
            Ok(Some(incoming)) => incoming,
        };
        match incoming {
            Incoming::Closed(why) => {
                self.closed = Some(why);
            }
            Incoming::Malformed(why) => self.violations.push(why),
            Incoming::Message(msg, read_at) => {
                self.read_at = read_at;
                self.handle(msg).await?;
            }
        }
        Ok(true)
    }

    /// Handles the messages that have already arrived, without waiting.
    pub async fn pump_ready(&mut self) -> anyhow::Result<usize> {
        let mut n = 0;
        while self.pump_once(Duration::ZERO).await? {
            n += 1;
        }
        Ok(n)
    }

    /// Handles messages for `wait` (less if the stream ends); returns how
    /// many.
    pub async fn pump(&mut self, wait: Duration) -> anyhow::Result<usize> {
        let deadline = Instant::now() + wait;
        let mut n = 0;
        loop {
            if self.closed.is_some() {
                return Ok(n + self.pump_ready().await?);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(n + self.pump_ready().await?);
            }
            if self.pump_once(deadline - now).await? {
                n += 1;
            }
        }
    }

    /// Handles messages until `cond` holds. Fails after `timeout` (saying
    /// it waited for `what`), when the stream ends, or when the server
    /// commits a new violation.
    pub async fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut(&LspEditor) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let violations = self.violations.len();
        loop {
            if self.violations.len() > violations {
                bail!(
                    "{}: server violated the protocol while waiting for {what}: {:?}{}",
                    self.name,
                    &self.violations[violations..],
                    self.log_tail()
                );
            }
            if cond(self) {
                return Ok(());
            }
            if let Some(why) = &self.closed {
                bail!("{}: server output ended ({why}) while waiting for {what}{}", self.name, self.log_tail());
            }
            let now = Instant::now();
            if now >= deadline {
                bail!("{}: timed out after {timeout:?} waiting for {what}{}", self.name, self.log_tail());
            }
            self.pump_once(deadline - now).await?;
        }
    }

    /// Waits until `uri`'s buffer is `expected`.
    pub async fn wait_text(&mut self, uri: &str, expected: &str, timeout: Duration) -> anyhow::Result<()> {
        let what = format!("{uri} to read {expected:?}");
        self.wait_for(&what, timeout, |e| e.text(uri) == Some(expected)).await.with_context(|| {
            format!("{uri} reads {:?}", self.text(uri).map(|t| t.chars().take(200).collect::<String>()))
        })
    }

    /// Waits for a notification `method` (already recorded or new) whose
    /// params satisfy `pred`; returns its params.
    pub async fn wait_notification(
        &mut self,
        method: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let find = |e: &LspEditor| e.notifications.iter().find(|n| n.method == method && pred(&n.params)).cloned();
        let what = format!("a {method} notification");
        self.wait_for(&what, timeout, |e| find(e).is_some()).await?;
        find(self).map(|n| n.params).context("notification vanished")
    }

    /// Removes and returns the recorded notifications named `method`.
    pub fn take_notifications(&mut self, method: &str) -> Vec<Value> {
        let (taken, kept): (Vec<Notification>, Vec<Notification>) =
            std::mem::take(&mut self.notifications).into_iter().partition(|n| n.method == method);
        self.notifications = kept;
        taken.into_iter().map(|n| n.params).collect()
    }

    /// Handles messages until none that matters (anything but
    /// `window/logMessage` and `$/progress`) has come for `quiet`; fails
    /// after `timeout`.
    pub async fn wait_quiet(&mut self, quiet: Duration, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = Instant::now();
        loop {
            let now = Instant::now();
            if now >= last + quiet {
                return Ok(());
            }
            if self.closed.is_some() {
                self.pump_ready().await?;
                return Ok(());
            }
            ensure!(now < deadline, "{}: still busy after {timeout:?}{}", self.name, self.log_tail());
            let before = self.activity();
            self.pump_once((last + quiet).min(deadline) - now).await?;
            if self.activity() != before {
                last = Instant::now();
            }
        }
    }

    /// A counter of messages that matter for [`LspEditor::wait_quiet`].
    fn activity(&self) -> usize {
        self.server_requests.len()
            + self.apply_edits.len()
            + self.violations.len()
            + self.responses.len()
            + self.notifications.iter().filter(|n| n.method != "window/logMessage" && n.method != "$/progress").count()
    }

    /// How many applyEdits were applied / refused so far.
    pub fn apply_edit_counts(&self) -> (usize, usize) {
        let applied = self.apply_edits.iter().filter(|r| r.applied).count();
        (applied, self.apply_edits.len() - applied)
    }

    // -------------------------------------------------------------- handling

    async fn handle(&mut self, msg: Value) -> anyhow::Result<()> {
        if msg.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            self.violations.push(format!("message without \"jsonrpc\": \"2.0\": {msg}"));
        }
        let method = msg.get("method").and_then(Value::as_str).map(str::to_owned);
        let id = msg.get("id").cloned();
        match (method, id) {
            (Some(method), Some(id)) => {
                let params = msg.get("params").cloned().unwrap_or(Value::Null);
                self.server_requests.push(ServerRequest {
                    id: id.clone(),
                    method: method.clone(),
                    params: params.clone(),
                });
                self.on_server_request(id, &method, params).await
            }
            (Some(method), None) => {
                let params = msg.get("params").cloned().unwrap_or(Value::Null);
                self.notifications.push(Notification { method, params });
                Ok(())
            }
            (None, Some(Value::Null)) if msg.get("error").is_some_and(Value::is_object) => {
                // The answer to a message the server could not read (JSON-RPC
                // says: id null). Malformed-input tests look for these.
                self.errors_without_id.push(RpcError::from_json(&msg["error"]));
                Ok(())
            }
            (None, Some(id)) => {
                let Some(n) = id.as_i64().filter(|n| self.outstanding.remove(n)) else {
                    self.violations.push(format!("response to no request of ours: {msg}"));
                    return Ok(());
                };
                let res = match (msg.get("result"), msg.get("error")) {
                    (_, Some(err)) if !err.is_null() => Err(RpcError::from_json(err)),
                    (Some(result), _) => Ok(result.clone()),
                    (None, _) => {
                        self.violations.push(format!("response with neither result nor error: {msg}"));
                        Ok(Value::Null)
                    }
                };
                self.responses.insert(n, res);
                Ok(())
            }
            (None, None) => {
                self.violations.push(format!("neither request, notification nor response: {msg}"));
                Ok(())
            }
        }
    }

    async fn respond(&mut self, id: Value, result: Value) -> anyhow::Result<()> {
        self.send_message(&json!({"jsonrpc": "2.0", "id": id, "result": result})).await
    }

    async fn on_server_request(&mut self, id: Value, method: &str, params: Value) -> anyhow::Result<()> {
        match method {
            "workspace/applyEdit" if self.hold => {
                self.held.push_back((id, params, self.read_at));
                Ok(())
            }
            "workspace/applyEdit" => self.answer_apply_edit(id, params, false, self.read_at).await,
            "workspace/configuration" => {
                let n = params.get("items").and_then(Value::as_array).map_or(0, Vec::len);
                self.respond(id, Value::Array(vec![Value::Null; n])).await
            }
            "window/showDocument" => self.respond(id, json!({"success": true})).await,
            "window/workDoneProgress/create"
            | "client/registerCapability"
            | "client/unregisterCapability"
            | "window/showMessageRequest"
            | "workspace/workspaceFolders"
            | "workspace/codeLens/refresh"
            | "workspace/semanticTokens/refresh"
            | "workspace/inlayHint/refresh"
            | "workspace/diagnostic/refresh" => self.respond(id, Value::Null).await,
            _ => {
                let error = json!({"code": -32601, "message": format!("unhandled method {method}")});
                self.send_message(&json!({"jsonrpc": "2.0", "id": id, "error": error})).await
            }
        }
    }

    /// Answers the held applyEdits in arrival order (each checked against
    /// the buffers as they are now); returns how many. Holding goes on if
    /// it is still set.
    pub async fn release_apply_edits(&mut self) -> anyhow::Result<usize> {
        let mut n = 0;
        while let Some((id, params, received)) = self.held.pop_front() {
            self.answer_apply_edit(id, params, true, received).await?;
            n += 1;
        }
        Ok(n)
    }

    async fn answer_apply_edit(
        &mut self,
        id: Value,
        params: Value,
        was_held: bool,
        received: Instant,
    ) -> anyhow::Result<()> {
        let uris: Vec<String> = params
            .pointer("/edit/documentChanges")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|c| c.pointer("/textDocument/uri")?.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let versions_then = uris.iter().map(|u| (u.clone(), self.version(u))).collect();
        let outcome = self.try_apply(&params);
        let (applied, failure_reason) = match &outcome {
            Ok(_) => (true, None),
            Err(reason) => (false, Some(reason.clone())),
        };
        self.apply_edits.push(ApplyEditRecord {
            params,
            applied,
            failure_reason: failure_reason.clone(),
            was_held,
            versions_then,
            received,
        });
        match outcome {
            Err(reason) => self.respond(id, json!({"applied": false, "failureReason": reason})).await,
            Ok(echoes) => {
                if !self.echo_before_answer {
                    self.respond(id.clone(), json!({"applied": true})).await?;
                }
                for (uri, version, changes) in echoes {
                    self.send_did_change(&uri, version, &changes).await?;
                }
                if self.echo_before_answer {
                    self.respond(id, json!({"applied": true})).await?;
                }
                Ok(())
            }
        }
    }

    /// Checks and applies a `workspace/applyEdit` all-or-nothing; returns
    /// the `didChange`s to send, or the failure reason. Protocol mistakes
    /// are also recorded as violations.
    fn try_apply(&mut self, params: &Value) -> Result<Vec<(String, i32, Vec<ContentChange>)>, String> {
        let enc = self.encoding;
        let Some(edit) = params.get("edit") else {
            return Err(self.violation(format!("applyEdit without an edit: {params}")));
        };
        let Some(changes) = edit.get("documentChanges").and_then(Value::as_array) else {
            return Err(self.violation(format!("applyEdit without documentChanges (unversioned): {edit}")));
        };
        // Pass 1: check every entry, versions first (a stale edit's
        // positions may well be invalid now, and that is no violation).
        let mut plan = Vec::new();
        for change in changes {
            if change.get("kind").is_some() {
                return Err(self.violation(format!("resource operation (not offered): {change}")));
            }
            let Some(uri) = change.pointer("/textDocument/uri").and_then(Value::as_str) else {
                return Err(self.violation(format!("TextDocumentEdit without a uri: {change}")));
            };
            let version = change.pointer("/textDocument/version").cloned().unwrap_or(Value::Null);
            let Some(version) = version.as_i64() else {
                return Err(self.violation(format!("unversioned edit of {uri} (version {version})")));
            };
            if plan.iter().any(|(u, _, _)| u == uri) {
                return Err(self.violation(format!("two TextDocumentEdits for {uri} in one applyEdit")));
            }
            let edits: Vec<TextEdit> = match change.get("edits").map(|e| serde_json::from_value(e.clone())) {
                Some(Ok(edits)) => edits,
                _ => return Err(self.violation(format!("malformed edits: {change}"))),
            };
            let Some(buf) = self.docs.get(uri) else {
                return Err(format!("document not open: {uri}"));
            };
            if i64::from(buf.version) != version {
                return Err("stale version".into());
            }
            plan.push((uri.to_owned(), buf.version, edits));
        }
        // Pass 2: compute every new text.
        let mut results = Vec::new();
        for (uri, version, mut edits) in plan {
            if let Some(eol) = self.eol {
                for edit in &mut edits {
                    edit.new_text = normalize_line_breaks(&edit.new_text, eol);
                }
            }
            let text = self.docs.get(&uri).map(|b| b.text.clone()).unwrap_or_default();
            match apply_text_edits(&text, &edits, enc, self.echo, false) {
                Ok(applied) => results.push((uri, version, edits.is_empty(), applied)),
                Err(err) if self.lenient_positions => {
                    // VS Code clamps such ranges too: recorded, not a violation.
                    self.clamped.push(format!("edit of {uri} v{version}: {err}"));
                    match apply_text_edits(&text, &edits, enc, self.echo, true) {
                        Ok(applied) => results.push((uri, version, edits.is_empty(), applied)),
                        Err(err) => return Err(self.violation(format!("edit of {uri} v{version}: {err}"))),
                    }
                }
                Err(err) => return Err(self.violation(format!("edit of {uri} v{version}: {err}"))),
            }
        }
        // Pass 3: commit. An empty edit list changes nothing, and a real
        // editor then neither bumps the version nor sends a didChange.
        let mut echoes = Vec::new();
        for (uri, version, empty, applied) in results {
            if empty {
                continue;
            }
            if let Some(buf) = self.docs.get_mut(&uri) {
                buf.text = applied.text;
                buf.version = version + 1;
                echoes.push((uri, version + 1, applied.changes));
            }
        }
        Ok(echoes)
    }

    fn violation(&mut self, what: String) -> String {
        self.violations.push(what.clone());
        what
    }
}

/// Waits until every editor's `uri` holds the same text and none has had
/// anything that matters happen for `quiet` (pumping them in turn);
/// returns that text.
pub async fn converge_editors(
    editors: &mut [&mut LspEditor],
    uri: &str,
    quiet: Duration,
    timeout: Duration,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    let mut last = Instant::now();
    loop {
        for e in editors.iter_mut() {
            let before = e.activity();
            e.pump(Duration::from_millis(5)).await?;
            if e.activity() != before {
                last = Instant::now();
            }
            ensure!(e.violations.is_empty(), "{}: protocol violations: {:?}", e.name, e.violations);
        }
        let texts: Vec<Option<&str>> = editors.iter().map(|e| e.text(uri)).collect();
        let same = texts.windows(2).all(|w| w[0] == w[1]) && texts.first().is_some_and(Option::is_some);
        if same && last.elapsed() >= quiet {
            return Ok(texts.first().copied().flatten().unwrap_or_default().to_owned());
        }
        if Instant::now() >= deadline {
            let lens: Vec<_> = texts.iter().map(|t| t.map(|t| t.chars().count())).collect();
            let mut logs = String::new();
            for e in editors.iter() {
                logs.push_str(&e.log_tail());
            }
            bail!("editors did not converge on {uri} within {timeout:?}: lengths {lens:?}{logs}");
        }
    }
}

// ------------------------------------------------------------------ sha-256

/// Lower-case hex SHA-256 of `data` (for `weft/verify`).
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

// ------------------------------------------------------------------ tests

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{DuplexStream, ReadHalf, WriteHalf};

    const ENCODINGS: [Encoding; 3] = [Encoding::Utf8, Encoding::Utf16, Encoding::Utf32];

    fn p(line: u32, character: u32) -> Position {
        Position::new(line, character)
    }

    fn te(sl: u32, sc: u32, el: u32, ec: u32, text: &str) -> TextEdit {
        TextEdit { range: Range::new(p(sl, sc), p(el, ec)), new_text: text.to_owned() }
    }

    #[test]
    fn positions_in_every_encoding() {
        // "a🦀b" : 🦀 is 4 UTF-8 bytes, 2 UTF-16 units, 1 code point.
        let text = "a🦀b\n日本e\u{301}x";
        let b_byte = text.find('b').unwrap_or_default();
        assert_eq!(position_of(text, b_byte, Encoding::Utf8), Ok(p(0, 5)));
        assert_eq!(position_of(text, b_byte, Encoding::Utf16), Ok(p(0, 3)));
        assert_eq!(position_of(text, b_byte, Encoding::Utf32), Ok(p(0, 2)));
        // The combining mark is its own code point (2 UTF-8 bytes, 1 unit).
        let x_byte = text.find('x').unwrap_or_default();
        assert_eq!(position_of(text, x_byte, Encoding::Utf8), Ok(p(1, 6 + 1 + 2)));
        assert_eq!(position_of(text, x_byte, Encoding::Utf16), Ok(p(1, 4)));
        assert_eq!(position_of(text, x_byte, Encoding::Utf32), Ok(p(1, 4)));
        // Inside the crab.
        assert!(position_of(text, 2, Encoding::Utf16).is_err());
        assert!(offset_of(text, p(0, 2), Encoding::Utf16, false).is_err());
        assert_eq!(offset_of(text, p(0, 2), Encoding::Utf16, true), Ok(1));
        assert!(offset_of(text, p(0, 3), Encoding::Utf8, false).is_err());
        assert_eq!(offset_of(text, p(0, 5), Encoding::Utf8, false), Ok(b_byte));
        // Past the line's end (the \n is not part of the line) or the last line.
        assert_eq!(offset_of(text, p(0, 4), Encoding::Utf16, false), Ok(b_byte + 1));
        assert!(offset_of(text, p(0, 5), Encoding::Utf16, false).is_err());
        assert_eq!(offset_of(text, p(0, 5), Encoding::Utf16, true), Ok(b_byte + 1));
        assert!(offset_of(text, p(2, 0), Encoding::Utf16, false).is_err());
        assert_eq!(offset_of(text, p(2, 0), Encoding::Utf16, true), Ok(text.len()));
        // A zero-width-joiner sequence is several code points.
        let dev = "👩‍💻!";
        assert_eq!(position_of(dev, dev.len() - 1, Encoding::Utf16), Ok(p(0, 5)));
        assert_eq!(position_of(dev, dev.len() - 1, Encoding::Utf32), Ok(p(0, 3)));
        assert_eq!(position_of(dev, dev.len() - 1, Encoding::Utf8), Ok(p(0, 11)));
    }

    #[test]
    fn line_breaks_are_lf_crlf_and_cr() {
        let text = "a\r\nb\rc\nd\r\n";
        assert_eq!(line_starts(text), vec![0, 3, 5, 7, 10]);
        assert_eq!(line_count(text), 5);
        assert_eq!(position_of(text, 3, Encoding::Utf16), Ok(p(1, 0)));
        assert_eq!(position_of(text, 5, Encoding::Utf16), Ok(p(2, 0)));
        assert_eq!(position_of(text, 1, Encoding::Utf16), Ok(p(0, 1)));
        assert_eq!(position_of(text, text.len(), Encoding::Utf16), Ok(p(4, 0)));
        // Between \r and \n there is no position.
        assert!(splits_crlf(text, 2));
        assert!(position_of(text, 2, Encoding::Utf16).is_err());
        // Line ends exclude the break.
        assert_eq!(offset_of(text, p(0, 1), Encoding::Utf8, false), Ok(1));
        assert!(offset_of(text, p(0, 2), Encoding::Utf8, false).is_err());
        assert_eq!(offset_of(text, p(1, 1), Encoding::Utf8, false), Ok(4));
        assert_eq!(offset_of(text, p(4, 0), Encoding::Utf8, false), Ok(text.len()));
        assert_eq!(line_count(""), 1);
        assert_eq!(line_count("\r"), 2);
    }

    #[test]
    fn every_boundary_round_trips() {
        let text = "fn 🦀() {\r\n\t日本語 e\u{301}\r👩‍💻\n𝕏ü\n";
        for enc in ENCODINGS {
            for (byte, _) in text.char_indices().chain([(text.len(), ' ')]) {
                match position_of(text, byte, enc) {
                    Ok(pos) => assert_eq!(offset_of(text, pos, enc, false), Ok(byte), "{enc} byte {byte}"),
                    Err(_) => assert!(splits_crlf(text, byte), "{enc} byte {byte}"),
                }
            }
        }
    }

    #[test]
    fn multi_edit_apply_uses_pre_edit_ranges() -> anyhow::Result<()> {
        // Three edits given out of order, all relative to the original text.
        let text = "let 🦀 = 1;\nlet b = 2;\n";
        let edits = [te(1, 4, 1, 5, "日本"), te(0, 4, 0, 6, "crab"), te(0, 11, 1, 0, " // 🦀\n")];
        let out = apply_text_edits(text, &edits, Encoding::Utf16, Echo::Exact, false).map_err(anyhow::Error::msg)?;
        assert_eq!(out.text, "let crab = 1; // 🦀\nlet 日本 = 2;\n");
        // Reported from the end to the start, each valid in sequence.
        let starts: Vec<_> = out.changes.iter().filter_map(|c| c.range.map(|r| r.start)).collect();
        assert_eq!(starts, vec![p(1, 4), p(0, 11), p(0, 4)]);
        assert_eq!(apply_content_changes(text, &out.changes, Encoding::Utf16).map_err(anyhow::Error::msg)?, out.text);
        // Overlapping edits are refused, like VS Code does.
        assert!(
            apply_text_edits(text, &[te(0, 0, 0, 3, "x"), te(0, 2, 0, 4, "y")], Encoding::Utf16, Echo::Exact, false)
                .is_err()
        );
        Ok(())
    }

    #[test]
    fn inserts_at_one_position_keep_array_order() -> anyhow::Result<()> {
        let text = "abcd";
        // Array order: insert "1", replace "bc" by "X", insert "2", all at 1.
        let edits = [te(0, 1, 0, 1, "1"), te(0, 1, 0, 3, "X"), te(0, 1, 0, 1, "2")];
        for echo in [Echo::Exact, Echo::Trimmed, Echo::Merged, Echo::Full] {
            let out = apply_text_edits(text, &edits, Encoding::Utf8, echo, false).map_err(anyhow::Error::msg)?;
            assert_eq!(out.text, "a12Xd", "{echo:?}");
            assert_eq!(apply_content_changes(text, &out.changes, Encoding::Utf8), Ok(out.text.clone()), "{echo:?}");
        }
        Ok(())
    }

    #[test]
    fn echo_styles_report_the_same_result() -> anyhow::Result<()> {
        let text = "hello wörld\r\nsecond 🦀 line\rthird";
        let edits = [te(0, 0, 0, 5, "help"), te(1, 7, 1, 9, "🦀🦀"), te(2, 0, 2, 5, "third"), te(0, 11, 1, 0, "\n")];
        for echo in [Echo::Exact, Echo::Trimmed, Echo::Merged, Echo::Full] {
            let out = apply_text_edits(text, &edits, Encoding::Utf16, echo, false).map_err(anyhow::Error::msg)?;
            assert_eq!(out.text, "help wörld\nsecond 🦀🦀 line\rthird", "{echo:?}");
            assert_eq!(apply_content_changes(text, &out.changes, Encoding::Utf16), Ok(out.text.clone()), "{echo:?}");
            if echo == Echo::Trimmed {
                // "hello"→"help" trims to "lo"→"p"; "third"→"third" vanishes;
                // "\r\n"→"\n" must not split the \r\n, so it stays whole.
                assert_eq!(out.changes.len(), 3, "{:?}", out.changes);
                assert!(out.changes.iter().any(|c| c.text == "p" && c.range == Some(Range::new(p(0, 3), p(0, 5)))));
            }
        }
        Ok(())
    }

    #[test]
    fn a_newline_after_a_lone_cr_falls_back_to_a_merged_report() -> anyhow::Result<()> {
        // Edit 2 puts "\n" right after the "\r" that ends edit 1's range, so
        // edit 1's end could not be named after edit 2 was applied.
        let text = "x\ry";
        let edits = [te(0, 0, 1, 0, "z\r"), te(1, 0, 1, 0, "\n")];
        let out = apply_text_edits(text, &edits, Encoding::Utf16, Echo::Exact, false).map_err(anyhow::Error::msg)?;
        assert_eq!(out.text, "z\r\ny");
        assert_eq!(out.changes.len(), 1);
        assert_eq!(apply_content_changes(text, &out.changes, Encoding::Utf16), Ok(out.text.clone()));
        Ok(())
    }

    /// Random text with every kind of line break and character width.
    fn random_text(rng: &mut crate::Rng, pieces: usize) -> String {
        const EXTRA: &[&str] = &["\r\n", "\r", "\n", "🦀", "e\u{301}"];
        (0..pieces).map(|_| if rng.below(3) == 0 { *rng.pick(EXTRA) } else { *rng.pick(crate::SNIPPETS) }).collect()
    }

    /// A random byte offset of `text` that an LSP position can name.
    fn random_boundary(rng: &mut crate::Rng, text: &str) -> usize {
        let ok: Vec<usize> =
            text.char_indices().map(|(i, _)| i).chain([text.len()]).filter(|&i| !splits_crlf(text, i)).collect();
        *rng.pick(&ok)
    }

    proptest::proptest! {
        #[test]
        fn random_multi_edits_report_what_they_did(seed in proptest::prelude::any::<u64>()) {
            let mut rng = crate::Rng::new(seed);
            let text = random_text(&mut rng, 12);
            let enc = *rng.pick(&ENCODINGS);
            // Non-overlapping spans from sorted boundaries, given in random order.
            let mut cuts: Vec<usize> = (0..rng.below(7) * 2).map(|_| random_boundary(&mut rng, &text)).collect();
            cuts.sort_unstable();
            let mut spans: Vec<(usize, usize, String)> =
                cuts.chunks(2).map(|c| {
                    let n = rng.below(3);
                    (c[0], c[1], random_text(&mut rng, n))
                }).collect();
            // Reference: apply from the last span to the first, by bytes.
            let mut want = text.clone();
            for (start, end, new) in spans.iter().rev() {
                want.replace_range(*start..*end, new);
            }
            // Equal empty spans at one offset would depend on array order; keep the order then.
            if spans.windows(2).all(|w| (w[0].0, w[0].1) != (w[1].0, w[1].1)) {
                for i in (1..spans.len()).rev() {
                    spans.swap(i, rng.below(i + 1));
                }
            }
            let edits: Vec<TextEdit> = spans
                .iter()
                .map(|(start, end, new)| TextEdit {
                    range: Range::new(
                        position_of(&text, *start, enc).unwrap_or(p(u32::MAX, 0)),
                        position_of(&text, *end, enc).unwrap_or(p(u32::MAX, 0)),
                    ),
                    new_text: new.clone(),
                })
                .collect();
            for echo in [Echo::Exact, Echo::Trimmed, Echo::Merged, Echo::Full] {
                let out = apply_text_edits(&text, &edits, enc, echo, false);
                proptest::prop_assert_eq!(out.as_ref().map(|o| o.text.as_str()), Ok(want.as_str()), "{:?}", echo);
                let changes = out.map(|o| o.changes).unwrap_or_default();
                proptest::prop_assert_eq!(apply_content_changes(&text, &changes, enc), Ok(want.clone()), "{:?} {:?}", echo, changes);
            }
        }

        #[test]
        fn positions_round_trip(seed in proptest::prelude::any::<u64>()) {
            let mut rng = crate::Rng::new(seed);
            let text = random_text(&mut rng, 20);
            for enc in ENCODINGS {
                let at = random_boundary(&mut rng, &text);
                let pos = position_of(&text, at, enc);
                proptest::prop_assert!(pos.is_ok(), "{:?}", pos);
                let pos = pos.unwrap_or(p(0, 0));
                proptest::prop_assert_eq!(offset_of(&text, pos, enc, false), Ok(at));
                // The line is the number of line breaks before the offset.
                proptest::prop_assert_eq!(pos.line as usize, line_starts(&text[..at]).len() - 1);
            }
        }
    }

    #[test]
    fn sha256_matches_known_digests() {
        let cases: [(Vec<u8>, &str); 6] = [
            (b"".to_vec(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            (b"abc".to_vec(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            (vec![b'a'; 55], "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"),
            (vec![b'a'; 56], "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"),
            (vec![b'a'; 64], "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"),
            ("héllo 🦀 日本語".as_bytes().to_vec(), "bd8d23a69852c8ae1afb7b98b7e26752c419455d7f8f925d04bf58f7282cac1a"),
        ];
        for (data, want) in cases {
            assert_eq!(sha256_hex(&data), want, "{} bytes", data.len());
        }
        let kb: Vec<u8> = (0..4).flat_map(|_| 0..=255u8).collect();
        assert_eq!(sha256_hex(&kb), "785b0751fc2c53dc14a4ce3d800e69ef9ce1009eb327ccf458afe09c242c26c9");
    }

    #[test]
    fn file_uris_are_percent_encoded() {
        assert_eq!(file_uri(Path::new("/tmp/a b/ü.rs")), "file:///tmp/a%20b/%C3%BC.rs");
    }

    #[tokio::test]
    async fn frames_are_read_strictly() -> anyhow::Result<()> {
        let one = frame(&json!({"jsonrpc": "2.0", "method": "x"}));
        let mut two = one.clone();
        two.extend_from_slice(
            b"content-length: 2\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n{}",
        );
        let mut r = BufReader::new(two.as_slice());
        assert_eq!(read_frame(&mut r).await?.as_deref(), Some(&one[one.len() - 30..]));
        assert_eq!(read_frame(&mut r).await?.as_deref(), Some(&b"{}"[..]));
        assert_eq!(read_frame(&mut r).await?, None);
        for bad in [
            &b"hello from println!\n"[..],
            b"Content-Length: 5\n\n{}",
            b"Content-Type: x\r\n\r\n{}",
            b"Content-Length: 10\r\n\r\n{}",
            b"Content-Length: 2\r\n",
            b"Content-Length: two\r\n\r\n{}",
        ] {
            let mut r = BufReader::new(bad);
            assert!(read_frame(&mut r).await.is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        Ok(())
    }

    #[tokio::test]
    async fn frames_split_across_reads() -> anyhow::Result<()> {
        let (mut tx, rx) = tokio::io::duplex(7);
        let msgs: Vec<Value> =
            (0..20).map(|i| json!({"jsonrpc": "2.0", "method": "m", "params": {"i": i, "s": "🦀"}})).collect();
        let bytes: Vec<u8> = msgs.iter().flat_map(frame).collect();
        let writer = tokio::spawn(async move {
            for chunk in bytes.chunks(5) {
                tx.write_all(chunk).await?;
            }
            anyhow::Ok(())
        });
        let mut r = BufReader::new(rx);
        for m in &msgs {
            let body = read_frame(&mut r).await?.context("frame")?;
            assert_eq!(&serde_json::from_slice::<Value>(&body)?, m);
        }
        writer.await??;
        assert_eq!(read_frame(&mut r).await?, None);
        Ok(())
    }

    /// The server side of an in-process pair: reads the editor's messages
    /// and writes what a test scripts.
    struct FakeServer {
        reader: BufReader<ReadHalf<DuplexStream>>,
        writer: WriteHalf<DuplexStream>,
    }

    impl FakeServer {
        async fn recv(&mut self) -> anyhow::Result<Value> {
            let body = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut self.reader))
                .await
                .context("fake server: nothing from the editor")??
                .context("fake server: editor closed")?;
            Ok(serde_json::from_slice(&body)?)
        }

        async fn send(&mut self, msg: Value) -> anyhow::Result<()> {
            self.writer.write_all(&frame(&msg)).await?;
            Ok(())
        }
    }

    fn pair() -> (LspEditor, FakeServer) {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (ar, aw) = tokio::io::split(a);
        let (br, bw) = tokio::io::split(b);
        (LspEditor::connect(ar, aw, "test"), FakeServer { reader: BufReader::new(br), writer: bw })
    }

    #[tokio::test]
    async fn initialize_and_error_answers() -> anyhow::Result<()> {
        let (mut ed, mut srv) = pair();
        let server = tokio::spawn(async move {
            let init = srv.recv().await?;
            assert_eq!(init["method"], "initialize");
            assert_eq!(init["params"]["capabilities"]["general"]["positionEncodings"], json!(["utf-8"]));
            assert_eq!(init["params"]["initializationOptions"]["name"], "ada");
            // A server request arrives before the answer; the editor must answer it.
            srv.send(json!({"jsonrpc": "2.0", "id": "p1", "method": "window/workDoneProgress/create", "params": {"token": "t"}})).await?;
            let answer = srv.recv().await?;
            assert_eq!(answer, json!({"jsonrpc": "2.0", "id": "p1", "result": null}));
            srv.send(json!({"jsonrpc": "2.0", "id": init["id"], "result": {"capabilities": {"positionEncoding": "utf-8", "textDocumentSync": {"openClose": true, "change": 2}}}})).await?;
            assert_eq!(srv.recv().await?["method"], "initialized");
            let join = srv.recv().await?;
            assert_eq!(join["method"], "weft/join");
            srv.send(json!({"jsonrpc": "2.0", "id": join["id"], "error": {"code": -32001, "message": "bad link"}}))
                .await?;
            let conf = srv.recv().await;
            anyhow::Ok((srv, conf))
        });
        ed.initialize("utf-8", "ada").await?;
        assert_eq!(ed.encoding(), Encoding::Utf8);
        let err = ed.join("weft://nope", None, "file:///tmp/x").await.err().context("join should fail")?;
        let rpc = err.downcast_ref::<RpcError>().context("an RpcError")?;
        assert_eq!((rpc.code, rpc.message.as_str()), (-32001, "bad link"));
        assert!(format!("{err:#}").contains("-32001"), "{err:#}");
        drop(ed);
        let (_srv, after) = server.await??;
        assert!(after.is_err(), "the editor sent more: {after:?}");
        Ok(())
    }

    #[tokio::test]
    async fn local_typing_sends_ranges_in_the_negotiated_encoding() -> anyhow::Result<()> {
        for (enc, want) in [("utf-8", 5), ("utf-16", 3), ("utf-32", 2)] {
            let (mut ed, mut srv) = pair();
            ed.encoding = Encoding::parse(enc).context("enc")?;
            ed.open("file:///w/a.rs", "a🦀b").await?;
            let open = srv.recv().await?;
            assert_eq!(open["params"]["textDocument"]["languageId"], "rust");
            assert_eq!(open["params"]["textDocument"]["version"], 1);
            ed.type_at("file:///w/a.rs", 2, "日").await?;
            let change = srv.recv().await?;
            assert_eq!(change["method"], "textDocument/didChange");
            assert_eq!(change["params"]["textDocument"]["version"], 2);
            let c = &change["params"]["contentChanges"][0];
            assert_eq!(c["range"]["start"], json!({"line": 0, "character": want}), "{enc}");
            assert_eq!(c["text"], "日");
            ed.edit("file:///w/a.rs", &[LocalEdit::delete(0, 1), LocalEdit::insert(3, "\n")]).await?;
            let change = srv.recv().await?;
            let changes: Vec<ContentChange> = change["params"]["contentChanges"]
                .as_array()
                .context("changes")?
                .iter()
                .map(ContentChange::from_json)
                .collect::<Result<_, _>>()
                .map_err(anyhow::Error::msg)?;
            assert_eq!(apply_content_changes("a🦀日b", &changes, ed.encoding()), Ok("🦀日b\n".to_owned()));
            assert_eq!(ed.text("file:///w/a.rs"), Some("🦀日b\n"));
            assert_eq!(ed.version("file:///w/a.rs"), Some(3));
            ed.verify("file:///w/a.rs").await?;
            let verify = srv.recv().await?;
            assert_eq!(verify["params"]["sha256"], sha256_hex("🦀日b\n".as_bytes()));
            assert_eq!(verify["params"]["version"], 3);
        }
        let (mut ed, _srv) = pair();
        ed.open("file:///w/c.txt", "a\r\nb").await?;
        assert!(!ed.is_edit_boundary("file:///w/c.txt", 2));
        assert!(ed.type_at("file:///w/c.txt", 2, "x").await.is_err());
        assert_eq!(ed.version("file:///w/c.txt"), Some(1));
        Ok(())
    }

    fn apply_edit(id: i64, uri: &str, version: i32, edits: &[TextEdit]) -> Value {
        json!({"jsonrpc": "2.0", "id": id, "method": "workspace/applyEdit", "params": {"edit": {"documentChanges": [
            {"textDocument": {"uri": uri, "version": version}, "edits": edits}
        ]}}})
    }

    #[tokio::test]
    async fn apply_edit_checks_the_version_and_echoes() -> anyhow::Result<()> {
        let uri = "file:///w/a.txt";
        let (mut ed, mut srv) = pair();
        ed.open(uri, "one\ntwo\n").await?;
        srv.recv().await?;
        // Current version: applied, answered, then echoed (end to start).
        srv.send(apply_edit(7, uri, 1, &[te(0, 0, 0, 0, "🦀"), te(1, 0, 1, 3, "2")])).await?;
        ed.wait_for("the edit", Duration::from_secs(5), |e| e.apply_edits.len() == 1).await?;
        assert_eq!(ed.text(uri), Some("🦀one\n2\n"));
        assert_eq!(ed.version(uri), Some(2));
        assert_eq!(srv.recv().await?, json!({"jsonrpc": "2.0", "id": 7, "result": {"applied": true}}));
        let echo = srv.recv().await?;
        assert_eq!(echo["params"]["textDocument"]["version"], 2);
        let starts: Vec<_> = echo["params"]["contentChanges"]
            .as_array()
            .context("changes")?
            .iter()
            .map(|c| c["range"]["start"]["line"].clone())
            .collect();
        assert_eq!(starts, vec![json!(1), json!(0)]);
        // Stale version: refused, nothing changes.
        srv.send(apply_edit(8, uri, 1, &[te(0, 0, 0, 0, "x")])).await?;
        ed.wait_for("the stale edit", Duration::from_secs(5), |e| e.apply_edits.len() == 2).await?;
        assert_eq!(
            srv.recv().await?,
            json!({"jsonrpc": "2.0", "id": 8, "result": {"applied": false, "failureReason": "stale version"}})
        );
        assert_eq!(ed.text(uri), Some("🦀one\n2\n"));
        assert_eq!(ed.apply_edit_counts(), (1, 1));
        // Held, then overtaken by local typing: refused when released.
        ed.set_hold_apply_edits(true);
        srv.send(apply_edit(9, uri, 2, &[te(0, 0, 0, 0, "late")])).await?;
        ed.wait_for("a held edit", Duration::from_secs(5), |e| e.held_apply_edits() == 1).await?;
        ed.type_at(uri, 0, "a").await?;
        assert_eq!(srv.recv().await?["params"]["textDocument"]["version"], 3);
        ed.set_hold_apply_edits(false);
        assert_eq!(ed.release_apply_edits().await?, 1);
        assert_eq!(srv.recv().await?["result"]["applied"], false);
        let last = ed.apply_edits.last().context("record")?;
        assert!(last.was_held && !last.applied);
        assert_eq!(last.versions_then, vec![(uri.to_owned(), Some(3))]);
        assert!(ed.violations.is_empty(), "{:?}", ed.violations);
        // A position inside the crab is a violation and is refused.
        srv.send(apply_edit(10, uri, 3, &[te(0, 2, 0, 2, "x")])).await?;
        let res = ed.wait_for("never", Duration::from_secs(5), |_| false).await;
        assert!(format!("{res:?}").contains("inside the character"), "{res:?}");
        assert_eq!(srv.recv().await?["result"]["applied"], false);
        // Unknown requests get MethodNotFound; configuration gets one null per item.
        srv.send(json!({"jsonrpc": "2.0", "id": 11, "method": "weft/unknown"})).await?;
        srv.send(
            json!({"jsonrpc": "2.0", "id": 12, "method": "workspace/configuration", "params": {"items": [{}, {}]}}),
        )
        .await?;
        srv.send(json!({"jsonrpc": "2.0", "method": "weft/connection", "params": {"state": "connected"}})).await?;
        let n = ed.wait_notification("weft/connection", Duration::from_secs(5), |p| p["state"] == "connected").await?;
        assert_eq!(n["state"], "connected");
        assert_eq!(srv.recv().await?["error"]["code"], -32601);
        assert_eq!(srv.recv().await?["result"], json!([null, null]));
        Ok(())
    }

    #[tokio::test]
    async fn echo_before_answer_and_empty_edits() -> anyhow::Result<()> {
        let uri = "file:///w/b.txt";
        let (mut ed, mut srv) = pair();
        ed.set_echo_before_answer(true);
        ed.set_echo(Echo::Full);
        ed.open(uri, "abc").await?;
        srv.recv().await?;
        srv.send(apply_edit(1, uri, 1, &[te(0, 3, 0, 3, "d")])).await?;
        ed.wait_for("edit", Duration::from_secs(5), |e| e.apply_edits.len() == 1).await?;
        let echo = srv.recv().await?;
        assert_eq!(echo["params"]["contentChanges"], json!([{"text": "abcd"}]));
        assert_eq!(srv.recv().await?["result"]["applied"], true);
        // No edits: applied, but no version bump and no didChange.
        srv.send(apply_edit(2, uri, 2, &[])).await?;
        ed.wait_for("empty edit", Duration::from_secs(5), |e| e.apply_edits.len() == 2).await?;
        assert_eq!(srv.recv().await?["id"], 2);
        assert_eq!(ed.version(uri), Some(2));
        // An error answer with id null is recorded, not a violation.
        srv.send(json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "Parse error"}})).await?;
        ed.wait_for("the parse error", Duration::from_secs(5), |e| !e.errors_without_id.is_empty()).await?;
        assert_eq!(ed.errors_without_id[0].code, -32700);
        // Garbage from the server is a violation, and so is an unversioned edit.
        srv.writer.write_all(b"Content-Length: 3\r\n\r\n{x}").await?;
        srv.send(
            json!({"jsonrpc": "2.0", "id": 3, "method": "workspace/applyEdit", "params": {"edit": {"changes": {}}}}),
        )
        .await?;
        while ed.apply_edits.len() < 3 {
            ensure!(ed.pump_once(Duration::from_secs(5)).await?, "no applyEdit came");
        }
        assert_eq!(ed.violations.len(), 2, "{:?}", ed.violations);
        Ok(())
    }
}
