//! LSP base protocol on stdio: `Content-Length` framing, one reader and
//! one writer thread, and nothing but JSON-RPC on stdout (architecture
//! invariant 7: logs go to stderr or a file, never here).
//!
//! Unlike `lsp_server::Connection::stdio`, a body that is not valid
//! JSON-RPC does not end the connection: it is answered with a JSON-RPC
//! parse error (id `null`) and reading goes on. Broken framing (no or bad
//! `Content-Length`) cannot be resynchronised and ends the session.

use std::io::{BufRead, BufReader, Read, Write};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use lsp_server::Message;
use tokio::sync::mpsc;

/// Largest message accepted from the editor (a whole file in a didOpen fits).
const MAX_BODY: usize = 256 * 1024 * 1024;

/// What the reader produced.
#[derive(Debug)]
pub enum Incoming {
    Message(Message),
    /// A `textDocument/didChange` notification, its parameters already
    /// deserialised here on the reader thread: it is the message a typing
    /// editor sends most, and parsing it off the main loop lets the two
    /// threads overlap (a `Value` step on the main loop was 9 % of it).
    DidChange(lsp_types::DidChangeTextDocumentParams),
    /// A body that was not a JSON-RPC message; answered already.
    Garbage(String),
}

/// Channels to and from the editor, and the threads behind them. Sending
/// `None` on `outgoing` makes the writer flush and stop. `incoming` is a
/// tokio channel so the bridge's loop can await it beside its hub link on
/// one thread.
pub struct Transport {
    pub incoming: mpsc::UnboundedReceiver<Incoming>,
    pub outgoing: Sender<Option<String>>,
    pub reader: JoinHandle<()>,
    pub writer: JoinHandle<()>,
}

/// Serialises a message for [`Transport::outgoing`], with the
/// `"jsonrpc": "2.0"` member every JSON-RPC message must carry. Written
/// straight to the string (no `Value` tree on the way: an applyEdit per
/// remote keystroke is the bridge's most frequent output).
pub fn encode(msg: &Message) -> Option<String> {
    #[derive(serde::Serialize)]
    struct Wire<'a> {
        jsonrpc: &'static str,
        #[serde(flatten)]
        msg: &'a Message,
    }
    match serde_json::to_string(&Wire { jsonrpc: "2.0", msg }) {
        Ok(text) => Some(text),
        Err(e) => {
            tracing::error!(%e, "could not encode a message");
            None
        }
    }
}

/// Serialises a request whose parameters are any serialisable value,
/// without building a `Value` of them first.
pub fn encode_request<P: serde::Serialize>(id: &lsp_server::RequestId, method: &str, params: &P) -> Option<String> {
    #[derive(serde::Serialize)]
    struct Wire<'a, P> {
        jsonrpc: &'static str,
        id: &'a lsp_server::RequestId,
        method: &'a str,
        params: &'a P,
    }
    match serde_json::to_string(&Wire { jsonrpc: "2.0", id, method, params }) {
        Ok(text) => Some(text),
        Err(e) => {
            tracing::error!(%e, method, "could not encode a request");
            None
        }
    }
}

/// Starts the threads over stdin/stdout.
pub fn stdio() -> std::io::Result<Transport> {
    over(std::io::stdin(), std::io::stdout())
}

/// Starts the threads over any pair of streams (tests use pipes).
pub fn over(input: impl Read + Send + 'static, output: impl Write + Send + 'static) -> std::io::Result<Transport> {
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let (out_tx, out_rx) = crossbeam_channel::unbounded::<Option<String>>();
    let writer = std::thread::Builder::new().name("lsp-writer".into()).spawn(move || write_loop(output, out_rx))?;
    let answers = out_tx.clone();
    let reader =
        std::thread::Builder::new().name("lsp-reader".into()).spawn(move || read_loop(input, in_tx, answers))?;
    Ok(Transport { incoming: in_rx, outgoing: out_tx, reader, writer })
}

fn write_loop(output: impl Write, rx: Receiver<Option<String>>) {
    let mut output = std::io::BufWriter::new(output);
    for body in rx {
        let Some(body) = body else { return };
        let written = write!(output, "Content-Length: {}\r\n\r\n{}", body.len(), body).and_then(|()| output.flush());
        if let Err(err) = written {
            tracing::warn!(%err, "editor closed its end of stdout");
            return;
        }
    }
}

fn read_loop(input: impl Read, tx: mpsc::UnboundedSender<Incoming>, answers: Sender<Option<String>>) {
    let mut input = BufReader::new(input);
    loop {
        let body = match read_frame(&mut input) {
            Ok(Some(body)) => body,
            Ok(None) => return,
            Err(err) => {
                tracing::error!(%err, "unreadable LSP framing from the editor; stopping");
                return;
            }
        };
        if let Some(params) = did_change(&body) {
            if tx.send(Incoming::DidChange(params)).is_err() {
                return;
            }
            continue;
        }
        let incoming = match serde_json::from_slice::<Message>(&body) {
            Ok(msg) => Incoming::Message(msg),
            Err(err) => {
                let (code, what) = if serde_json::from_slice::<serde_json::Value>(&body).is_ok() {
                    (-32600, "invalid request")
                } else {
                    (-32700, "parse error")
                };
                let answer = serde_json::json!({
                    "jsonrpc": "2.0", "id": null,
                    "error": {"code": code, "message": format!("{what}: {err}")},
                });
                let _ = answers.send(Some(answer.to_string()));
                Incoming::Garbage(format!("{what}: {err}"))
            }
        };
        if tx.send(incoming).is_err() {
            return;
        }
    }
}

/// The parameters of a well-formed `textDocument/didChange` notification
/// in `body`; `None` for anything else (including a didChange with bad
/// parameters, which the generic path parses and the bridge reports).
fn did_change(body: &[u8]) -> Option<lsp_types::DidChangeTextDocumentParams> {
    const METHOD: &[u8] = b"textDocument/didChange";
    if !body.windows(METHOD.len()).any(|w| w == METHOD) {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct Note {
        method: String,
        id: Option<serde_json::Value>,
        params: lsp_types::DidChangeTextDocumentParams,
    }
    let note: Note = serde_json::from_slice(body).ok()?;
    (note.method == "textDocument/didChange" && note.id.is_none()).then_some(note.params)
}

/// Reads one framed body; `None` at a clean end of input.
fn read_frame(input: &mut impl BufRead) -> std::io::Result<Option<Vec<u8>>> {
    let mut length: Option<usize> = None;
    let mut line = String::new();
    let mut first = true;
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return if first { Ok(None) } else { Err(std::io::Error::other("input ended inside a header")) };
        }
        first = false;
        let header = line.trim_end_matches(['\r', '\n']);
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok();
        }
    }
    let length = length.ok_or_else(|| std::io::Error::other("a message without a valid Content-Length header"))?;
    if length > MAX_BODY {
        return Err(std::io::Error::other(format!("a message of {length} bytes is over the {MAX_BODY} limit")));
    }
    let mut body = vec![0; length];
    input.read_exact(&mut body)?;
    Ok(Some(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_change_is_parsed_on_the_reader_and_only_when_well_formed() {
        let change = r#"{"jsonrpc":"2.0","method":"textDocument/didChange","params":{"textDocument":{"uri":"file:///a","version":2},"contentChanges":[{"text":"x"}]}}"#;
        let request = r#"{"jsonrpc":"2.0","id":1,"method":"textDocument/didChange","params":{"textDocument":{"uri":"file:///a","version":2},"contentChanges":[]}}"#;
        let bad =
            r#"{"jsonrpc":"2.0","method":"textDocument/didChange","params":{"textDocument":{"uri":"file:///a"}}}"#;
        let other = r#"{"jsonrpc":"2.0","method":"weft/cursor","params":{"text":"textDocument/didChange"}}"#;
        let mut input = Vec::new();
        for body in [change, request, bad, other] {
            input.extend_from_slice(format!("Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
        }
        let (out_tx, _out_rx) = crossbeam_channel::unbounded();
        let (tx, mut rx) = mpsc::unbounded_channel();
        read_loop(&input[..], tx, out_tx);
        let got: Vec<Incoming> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert!(
            matches!(&got[0], Incoming::DidChange(p) if p.text_document.version == 2 && p.content_changes[0].text == "x")
        );
        assert!(matches!(&got[1], Incoming::Message(Message::Request(_))));
        assert!(matches!(&got[2], Incoming::Message(Message::Notification(n)) if n.method == "textDocument/didChange"));
        assert!(matches!(&got[3], Incoming::Message(Message::Notification(n)) if n.method == "weft/cursor"));
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn encoded_messages_carry_jsonrpc_and_their_fields() {
        use lsp_server::{Notification, RequestId, Response};
        let value = |text: Option<String>| -> serde_json::Value {
            serde_json::from_str(&text.expect("encodes")).expect("valid JSON")
        };
        let note = Message::Notification(Notification::new("weft/peers".into(), serde_json::json!({"peers": []})));
        assert_eq!(
            value(encode(&note)),
            serde_json::json!({"jsonrpc": "2.0", "method": "weft/peers", "params": {"peers": []}})
        );
        let ok = Message::Response(Response::new_ok(RequestId::from(7), serde_json::json!({"applied": true})));
        assert_eq!(value(encode(&ok)), serde_json::json!({"jsonrpc": "2.0", "id": 7, "result": {"applied": true}}));
        let params = serde_json::json!({"edit": {"documentChanges": []}, "label": "weft"});
        let request = encode_request(&RequestId::from("r1".to_owned()), "workspace/applyEdit", &params);
        assert_eq!(
            value(request),
            serde_json::json!({"jsonrpc": "2.0", "id": "r1", "method": "workspace/applyEdit", "params": params})
        );
    }

    #[test]
    fn frames_and_garbage() {
        let mut input = Vec::new();
        for body in [r#"{"jsonrpc":"2.0","method":"initialized","params":{}}"#, "{not json", r#"{"hello":1}"#] {
            input.extend_from_slice(format!("Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
        }
        let (out_tx, out_rx) = crossbeam_channel::unbounded();
        let (tx, mut rx) = mpsc::unbounded_channel();
        read_loop(&input[..], tx, out_tx);
        let got: Vec<Incoming> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert!(matches!(got[0], Incoming::Message(Message::Notification(_))));
        assert!(matches!(&got[1], Incoming::Garbage(m) if m.starts_with("parse error")));
        assert!(matches!(&got[2], Incoming::Garbage(m) if m.starts_with("invalid request")));
        let answers: Vec<String> = out_rx.try_iter().flatten().collect();
        assert_eq!(answers.len(), 2);
        assert!(answers[0].contains("-32700") && answers[1].contains("-32600"));
    }
}
