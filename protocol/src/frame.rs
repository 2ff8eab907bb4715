//! Binary frames of the `/ws/{session}` protocol: a doc id, then one
//! unchanged y-protocols message.
//!
//! ```text
//! frame   = varString(doc_id) message
//! message = varUint(0) sync | varUint(1) awareness | varUint(3) query-awareness
//! ```
//!
//! `varUint` and `varString` are lib0's encodings (7 bits per byte, low
//! first; a string is its UTF-8 length as varUint, then the bytes), so a
//! client that already speaks y-protocols needs nothing new but the prefix.
//! The message is left as bytes: decoding it is the CRDT layer's job.

use crate::doc_id::{DocId, DocIdError};

/// y-protocols message type: sync (step 1, step 2, update).
pub const MSG_SYNC: u64 = 0;
/// y-protocols message type: awareness update.
pub const MSG_AWARENESS: u64 = 1;
/// y-protocols message type: auth (only ever sent by the hub, on `/y/`).
pub const MSG_AUTH: u64 = 2;
/// y-protocols message type: query awareness.
pub const MSG_QUERY_AWARENESS: u64 = 3;

/// Sync sub-type: step 1 (a state vector).
pub const SYNC_STEP1: u64 = 0;
/// Sync sub-type: step 2 (the update the other side lacks).
pub const SYNC_STEP2: u64 = 1;
/// Sync sub-type: an incremental update.
pub const SYNC_UPDATE: u64 = 2;

/// A frame that could not be split into doc id and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame ends inside the doc id prefix")]
    Truncated,
    #[error("doc id prefix is not UTF-8")]
    NotUtf8,
    #[error("bad doc id: {0}")]
    BadDocId(#[from] DocIdError),
    #[error("frame has a doc id but no message")]
    EmptyMessage,
}

/// Splits a binary frame into its doc id and its y-protocols message.
pub fn split(frame: &[u8]) -> Result<(DocId, &[u8]), FrameError> {
    let (len, rest) = read_var_uint(frame).ok_or(FrameError::Truncated)?;
    let len = usize::try_from(len).map_err(|_| FrameError::Truncated)?;
    if rest.len() < len {
        return Err(FrameError::Truncated);
    }
    let (name, message) = rest.split_at(len);
    let name = std::str::from_utf8(name).map_err(|_| FrameError::NotUtf8)?;
    let doc = DocId::new(name)?;
    if message.is_empty() {
        return Err(FrameError::EmptyMessage);
    }
    Ok((doc, message))
}

/// Builds a binary frame from a doc id and a y-protocols message.
pub fn join(doc: &DocId, message: &[u8]) -> Vec<u8> {
    let name = doc.as_str().as_bytes();
    let mut out = Vec::with_capacity(name.len() + message.len() + 4);
    write_var_uint(&mut out, name.len() as u64);
    out.extend_from_slice(name);
    out.extend_from_slice(message);
    out
}

/// Reads a lib0 varUint; `None` if the input ends first or it overflows 64 bits.
pub fn read_var_uint(buf: &[u8]) -> Option<(u64, &[u8])> {
    let mut value: u64 = 0;
    for (i, byte) in buf.iter().enumerate().take(10) {
        let bits = u64::from(byte & 0x7f);
        let shift = 7 * i as u32;
        if shift == 63 && bits > 1 {
            return None;
        }
        value |= bits << shift;
        if byte & 0x80 == 0 {
            return Some((value, &buf[i + 1..]));
        }
    }
    None
}

/// Appends a lib0 varUint.
pub fn write_var_uint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The kind of y-protocols message at the start of `message`, for routing
/// and permission checks without a full decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    Awareness,
    QueryAwareness,
    Auth,
    /// A tag this protocol version does not know.
    Other(u64),
}

impl MessageKind {
    /// Whether the message carries document content (and so needs write access).
    pub fn carries_update(self) -> bool {
        matches!(self, MessageKind::SyncStep2 | MessageKind::SyncUpdate)
    }
}

/// Peeks at the message type; `None` if the message is truncated or has an
/// unknown sync sub-type.
pub fn message_kind(message: &[u8]) -> Option<MessageKind> {
    let (tag, rest) = read_var_uint(message)?;
    Some(match tag {
        MSG_SYNC => match read_var_uint(rest)?.0 {
            SYNC_STEP1 => MessageKind::SyncStep1,
            SYNC_STEP2 => MessageKind::SyncStep2,
            SYNC_UPDATE => MessageKind::SyncUpdate,
            _ => return None,
        },
        MSG_AWARENESS => MessageKind::Awareness,
        MSG_QUERY_AWARENESS => MessageKind::QueryAwareness,
        MSG_AUTH => MessageKind::Auth,
        other => MessageKind::Other(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let doc = DocId::new("src/ünï.rs").expect("valid");
        let frame = join(&doc, &[0, 2, 1, 7]);
        let (got, msg) = split(&frame).expect("split");
        assert_eq!(got, doc);
        assert_eq!(msg, &[0, 2, 1, 7]);
        assert_eq!(message_kind(msg), Some(MessageKind::SyncUpdate));
    }

    #[test]
    fn var_uint_matches_lib0() {
        for (value, bytes) in [(0u64, vec![0u8]), (127, vec![127]), (128, vec![0x80, 1]), (300, vec![0xac, 2])] {
            let mut out = Vec::new();
            write_var_uint(&mut out, value);
            assert_eq!(out, bytes);
            assert_eq!(read_var_uint(&bytes), Some((value, &[][..])));
        }
        let mut max = Vec::new();
        write_var_uint(&mut max, u64::MAX);
        assert_eq!(read_var_uint(&max).map(|v| v.0), Some(u64::MAX));
        assert_eq!(read_var_uint(&[0xff; 11]), None);
    }

    #[test]
    fn malformed_frames_are_errors() {
        assert_eq!(split(&[]), Err(FrameError::Truncated));
        assert_eq!(split(&[5, b'a']), Err(FrameError::Truncated));
        assert_eq!(split(&[2, 0xff, 0xfe, 0]), Err(FrameError::NotUtf8));
        assert_eq!(split(&[1, b'a']), Err(FrameError::EmptyMessage));
        assert!(matches!(split(&[2, b'.', b'.', 0]), Err(FrameError::BadDocId(_))));
    }
}
