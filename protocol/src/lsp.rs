//! The `weft/*` methods an editor speaks with `weft lsp`, next to standard
//! LSP on the same stdio connection. Each method is a type with its
//! `METHOD` name and its params/result; `docs/protocol.md` describes them
//! for extension authors.
//!
//! Positions inside these messages follow the negotiated LSP
//! `positionEncoding`, like every other LSP position.

use serde::{Deserialize, Serialize};

use crate::ids::Role;

/// A request: a method name with its params and result types.
pub trait WeftRequest {
    const METHOD: &'static str;
    type Params: serde::de::DeserializeOwned + Serialize;
    type Result: serde::de::DeserializeOwned + Serialize;
}

/// A notification: a method name with its params type.
pub trait WeftNotification {
    const METHOD: &'static str;
    type Params: serde::de::DeserializeOwned + Serialize;
}

/// `weft/share`: share the workspace at `root`.
pub enum Share {}

/// Params of [`Share`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareParams {
    /// The workspace root, a `file://` URI. Open documents under it are shared.
    pub root: String,
    /// The hub, e.g. `ws://127.0.0.1:7420`. Absent: `WEFT_HUB`, else an
    /// embedded hub started in the bridge on a free loopback port.
    #[serde(default)]
    pub hub: Option<String>,
    /// The session's display name (default: the root folder's name).
    #[serde(default)]
    pub name: Option<String>,
}

/// Links of a shared session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShareLinks {
    /// Joins as an editor.
    pub editor: String,
    /// Joins read-only.
    pub viewer: String,
}

/// Result of [`Share`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShareResult {
    pub session: String,
    pub links: ShareLinks,
}

impl WeftRequest for Share {
    const METHOD: &'static str = "weft/share";
    type Params = ShareParams;
    type Result = ShareResult;
}

/// `weft/join`: join a shared session with a link.
pub enum Join {}

/// Params of [`Join`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinParams {
    /// A link URL: `weft://HOST:PORT/s/SESSION#TOKEN`.
    pub link: String,
    #[serde(default)]
    pub password: Option<String>,
    /// The local workspace root (`file://` URI) the session maps onto.
    pub root: String,
}

/// Result of [`Join`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinResult {
    pub session: String,
    pub role: Role,
}

impl WeftRequest for Join {
    const METHOD: &'static str = "weft/join";
    type Params = JoinParams;
    type Result = JoinResult;
}

/// `weft/leave`: leave the session; buffers stay as they are.
pub enum Leave {}

impl WeftRequest for Leave {
    const METHOD: &'static str = "weft/leave";
    type Params = Option<serde_json::Value>;
    type Result = serde_json::Value;
}

/// Connection state of the bridge to its hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionState {
    /// Not in a session.
    Idle,
    /// In a session, (re)connecting to the hub; edits are kept and merged later.
    Connecting,
    /// In a session and connected.
    Connected,
}

/// `weft/status`.
pub enum Status {}

/// Result of [`Status`]; also the params of [`Connection`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusResult {
    pub state: ConnectionState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Peers connected to the session (this one included), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<usize>,
    /// Documents shared from this editor.
    pub documents: usize,
}

impl WeftRequest for Status {
    const METHOD: &'static str = "weft/status";
    type Params = Option<serde_json::Value>;
    type Result = StatusResult;
}

/// `weft/connection` (server → client): the connection state changed.
pub enum Connection {}

impl WeftNotification for Connection {
    const METHOD: &'static str = "weft/connection";
    type Params = StatusResult;
}

/// `weft/verify` (client → server, when idle): the hash of a buffer.
pub enum Verify {}

/// Params of [`Verify`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyParams {
    pub uri: String,
    /// The LSP version of the buffer that was hashed.
    pub version: i32,
    /// Lower-case hex SHA-256 of the buffer's UTF-8 text.
    pub sha256: String,
}

impl WeftNotification for Verify {
    const METHOD: &'static str = "weft/verify";
    type Params = VerifyParams;
}

/// Every `weft/*` method the bridge serves, for the `experimental`
/// capability it advertises.
pub const METHODS: &[&str] =
    &[Share::METHOD, Join::METHOD, Leave::METHOD, Status::METHOD, Connection::METHOD, Verify::METHOD];
