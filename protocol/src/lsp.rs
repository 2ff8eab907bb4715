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
    /// One of the hub's session templates to start from (its links, and its
    /// ignore patterns for the shared tree).
    #[serde(default)]
    pub template: Option<String>,
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
pub const METHODS: &[&str] = &[
    Share::METHOD,
    Join::METHOD,
    Leave::METHOD,
    Status::METHOD,
    Connection::METHOD,
    Verify::METHOD,
    Cursor::METHOD,
    Peers::METHOD,
    PeersOptions::METHOD,
    Focus::METHOD,
    Doing::METHOD,
    Follow::METHOD,
    Following::METHOD,
    Summon::METHOD,
    Activity::METHOD,
];

/// A position in the negotiated encoding (LSP `Position`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Zero-based line.
    pub line: u32,
    /// Zero-based column, in units of the negotiated position encoding.
    pub character: u32,
}

/// A selection: `anchor` where it started, `head` where the cursor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    pub anchor: Position,
    pub head: Position,
}

/// A range of lines and columns (LSP `Range`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    pub start: Position,
    pub end: Position,
}

/// `weft/cursor` (editor → bridge): the user's cursors and selections in
/// `uri` (which becomes their active file). Send on every move; the bridge
/// coalesces.
pub enum Cursor {}

/// Params of [`Cursor`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CursorParams {
    pub uri: String,
    /// The first is the primary selection. Empty: no cursor in this file.
    pub selections: Vec<Selection>,
    /// The lines the editor shows (optional; follow mode reveals a leader's
    /// selection only when it leaves them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visible: Option<Range>,
}

impl WeftNotification for Cursor {
    const METHOD: &'static str = "weft/cursor";
    type Params = CursorParams;
}

/// One other participant, as `weft/peers` lists them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerInfo {
    /// The peer's awareness client id (stable while it is connected).
    pub id: u64,
    pub name: String,
    /// `#rrggbb`.
    pub color: String,
    pub kind: crate::ids::ClientKind,
    pub role: Role,
    pub status: crate::presence::Status,
    pub typing: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doing: Option<String>,
    /// The peer's active file under this editor's root, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// In this editor's encoding and text; empty when the file is not open
    /// here (the positions need its text) or cursors are hidden.
    pub selections: Vec<Selection>,
}

/// `weft/peers` (bridge → editor): everyone else in the session, whole
/// list each time, at most about 30 times a second.
pub enum Peers {}

/// Params of [`Peers`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeersParams {
    pub peers: Vec<PeerInfo>,
}

impl WeftNotification for Peers {
    const METHOD: &'static str = "weft/peers";
    type Params = PeersParams;
}

/// `weft/peersOptions` (editor → bridge): what `weft/peers` carries.
pub enum PeersOptions {}

/// Params of [`PeersOptions`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeersOptionsParams {
    /// `false` hides others' cursors: `selections` stay empty.
    pub selections: bool,
}

impl WeftNotification for PeersOptions {
    const METHOD: &'static str = "weft/peersOptions";
    type Params = PeersOptionsParams;
}

/// `weft/focus` (editor → bridge): the editor window gained or lost focus
/// (unfocused peers show as away).
pub enum Focus {}

/// Params of [`Focus`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FocusParams {
    pub focused: bool,
}

impl WeftNotification for Focus {
    const METHOD: &'static str = "weft/focus";
    type Params = FocusParams;
}

/// `weft/doing` (editor or agent → bridge): what this participant says it
/// is doing, shown to others (`null` clears it).
pub enum Doing {}

/// Params of [`Doing`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoingParams {
    pub text: Option<String>,
}

impl WeftNotification for Doing {
    const METHOD: &'static str = "weft/doing";
    type Params = DoingParams;
}

/// `weft/follow` (request): follow a peer (`peer` from `weft/peers`), or
/// stop (`null`). While following, the bridge opens the peer's file and
/// reveals their selection with `window/showDocument`; typing stops it.
pub enum Follow {}

/// Params of [`Follow`] and of [`Following`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FollowParams {
    pub peer: Option<u64>,
}

impl WeftRequest for Follow {
    const METHOD: &'static str = "weft/follow";
    type Params = FollowParams;
    type Result = FollowParams;
}

/// `weft/following` (bridge → editor): whom the editor follows now (after
/// a summons, or `null` when following stopped: typing, the leader left).
pub enum Following {}

impl WeftNotification for Following {
    const METHOD: &'static str = "weft/following";
    type Params = FollowParams;
}

/// `weft/summon` (request, session owners): ask everyone to follow you.
pub enum Summon {}

impl WeftRequest for Summon {
    const METHOD: &'static str = "weft/summon";
    type Params = serde_json::Value;
    type Result = serde_json::Value;
}

/// One entry of the activity feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivityEntry {
    /// `joined` or `left`.
    pub kind: String,
    pub peer: u64,
    pub name: String,
    /// Milliseconds since the epoch.
    pub at: u64,
}

/// `weft/activity` (bridge → editor): new activity-feed entries.
pub enum Activity {}

/// Params of [`Activity`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivityParams {
    pub entries: Vec<ActivityEntry>,
}

impl WeftNotification for Activity {
    const METHOD: &'static str = "weft/activity";
    type Params = ActivityParams;
}
