//! Fuzz target `auth`: the strings a client controls before it is
//! authenticated, and the ones that name documents and sessions.
//!
//! The input, as UTF-8 (a WebSocket text frame always is), goes to:
//! * `weft_protocol::control::parse_auth`, the hub's parser and validator
//!   of the first frame (JSON `ClientControl::Auth`, protocol version,
//!   display name, client id): an accepted frame has a clean name and a
//!   valid client id, and re-encodes to a frame that parses the same; a
//!   refusal is `malformed` or `version_mismatch` with a message;
//! * `serde_json` into `ClientControl` (every later text frame): what
//!   parses re-encodes and parses back equal;
//! * `DocId::new`: an accepted id has none of the path tricks, agrees with
//!   the JSON form, and survives a binary frame's prefix;
//! * `weft_client::link::Link::parse` (its source, see [`link`]): an
//!   accepted link has a well-formed session and a token, and the link
//!   rebuilt from its WebSocket URL and token parses the same.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_protocol::control::{self, AuthRequest};
use weft_protocol::doc_id::MAX_DOC_ID_BYTES;
use weft_protocol::{ClientControl, DocId, ErrorCode, PROTOCOL_VERSION, SessionId, frame};

/// `weft_client::link`, compiled here from its source: the weft-client
/// crate also brings a TLS stack and tokio, which would more than double
/// the fuzz build, and the parser needs none of it (only `url`, `anyhow`
/// and weft-protocol).
#[path = "../../server/client/src/link.rs"]
#[allow(dead_code)]
mod link;

use link::Link;

fuzz_target!(|data: &[u8]| weft_fuzz::run(|| check(data)));

fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    first_frame(text);
    control_frame(text);
    doc_id(text);
    link(text);
}

fn first_frame(text: &str) {
    match control::parse_auth(text) {
        Ok(auth) => {
            let name = &auth.name;
            assert_eq!(control::clean_name(name).as_ref(), Some(name), "an accepted name is not clean");
            assert_eq!(name.trim(), name);
            assert!((1..=100).contains(&name.chars().count()) && !name.chars().any(char::is_control));
            if let Some(client) = &auth.client {
                assert!((1..=64).contains(&client.len()) && !client.chars().any(char::is_control), "{client:?}");
            }
            let AuthRequest { token, password, name, kind, client } = auth.clone();
            let again = ClientControl::Auth { token, password, name, kind, protocol: PROTOCOL_VERSION, client };
            let json = serde_json::to_string(&again).expect("an auth frame encodes");
            assert_eq!(control::parse_auth(&json), Ok(auth), "a re-encoded auth frame parses differently");
        }
        Err((code, message)) => {
            assert!(matches!(code, ErrorCode::Malformed | ErrorCode::VersionMismatch), "{code:?}");
            assert!(!message.is_empty());
        }
    }
}

fn control_frame(text: &str) {
    if let Ok(parsed) = serde_json::from_str::<ClientControl>(text) {
        let json = serde_json::to_string(&parsed).expect("a control frame encodes");
        let again: ClientControl = serde_json::from_str(&json).expect("a re-encoded control frame parses");
        assert_eq!(again, parsed);
    }
}

fn doc_id(text: &str) {
    let id = DocId::new(text);
    let from_json = serde_json::from_value::<DocId>(serde_json::Value::String(text.to_owned()));
    assert_eq!(id.as_ref().ok(), from_json.as_ref().ok(), "DocId::new and the JSON form disagree");
    let Ok(id) = id else { return };
    let s = id.as_str();
    assert_eq!(s, text);
    assert!(!s.is_empty() && s.len() <= MAX_DOC_ID_BYTES);
    assert!(!s.starts_with('/') && !s.ends_with('/'));
    assert!(!s.chars().any(|c| c == '\\' || c.is_control()));
    assert!(s.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != ".."));
    assert_eq!(frame::split(&frame::join(&id, &[0, 0, 0])), Ok((id.clone(), &[0u8, 0, 0][..])));
}

fn link(text: &str) {
    let Ok(parsed) = Link::parse(text) else { return };
    assert!(SessionId::is_well_formed(&parsed.session), "{parsed:?}");
    assert!(!parsed.token.is_empty(), "{parsed:?}");
    // The link again, from the WebSocket URL it leads to and its token.
    let ws = parsed.ws_url();
    let rebuilt = match (ws.strip_prefix("ws://"), ws.strip_prefix("wss://")) {
        (Some(rest), _) => format!("weft://{rest}"),
        (None, Some(rest)) => format!("weft+tls://{rest}"),
        (None, None) => panic!("{ws} (from {parsed:?}) is not a WebSocket URL"),
    };
    let rebuilt = format!("{}#{}", rebuilt.replacen("/ws/", "/s/", 1), parsed.token);
    match Link::parse(&rebuilt) {
        Ok(again) => assert_eq!(again, parsed, "{rebuilt}"),
        Err(err) => panic!("{rebuilt} (from {parsed:?}) does not parse: {err:#}"),
    }
}
