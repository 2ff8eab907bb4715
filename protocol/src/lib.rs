//! weft-protocol: every type that crosses a wire in weft, and nothing else.
//!
//! The hub's WebSocket protocol (`/ws/{session}`), the REST API (`/api/...`)
//! and the plain y-websocket endpoint (`/y/{session}/{doc}`) are described
//! here as types, so that the hub, the bridge, the agent and the tests agree
//! by construction. `docs/protocol.md` is the prose companion of this crate
//! and changes together with it.
//!
//! This crate does no I/O and knows nothing of CRDTs beyond the framing of
//! y-protocols messages: payloads are opaque bytes here.

pub mod control;
pub mod doc_id;
pub mod frame;
pub mod ids;
pub mod lsp;
pub mod presence;
pub mod rest;

pub use control::{ClientControl, ErrorCode, ServerControl};
pub use doc_id::{DocId, DocIdError};
pub use ids::{ClientKind, LinkId, PeerId, Role, SessionId};

/// The version of the weft hub protocol. A client sends it in its `auth`
/// frame; the hub refuses a version it does not speak with
/// [`ErrorCode::VersionMismatch`]. Bump it on any incompatible change and
/// never reuse a wire number.
pub const PROTOCOL_VERSION: u32 = 1;
