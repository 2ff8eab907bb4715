//! Presence: the awareness state every bridge publishes on the `_session`
//! doc (y-protocols awareness, relayed by the hub like any awareness), so
//! everyone sees who is in the session, where and what they are doing.
//!
//! The state is JSON (awareness states are JSON strings). Positions are
//! yrs/Yjs relative positions ("sticky indexes": `encodeRelativePosition`
//! bytes, base64) into the `content` text of the file doc named by `file`,
//! so a cursor stays on the same character while others type before it and
//! every reader converts it into its own editor's coordinates.

use serde::{Deserialize, Serialize};

use crate::ids::{ClientKind, Role};

/// Whether someone is at their editor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Input within the idle timeout (default 5 minutes).
    #[default]
    Active,
    /// No input for the idle timeout.
    Idle,
    /// The editor window is not focused, or no input for the away timeout.
    Away,
}

/// One selection as sticky indexes: `anchor` is where it started, `head`
/// where the cursor is (equal for a plain cursor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StickySelection {
    /// base64 of the relative position's v1 encoding.
    pub anchor: String,
    /// base64 of the relative position's v1 encoding.
    pub head: String,
}

/// The awareness state of one bridge on the `_session` doc.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceState {
    /// Display name.
    pub name: String,
    /// `#rrggbb`, the same for the same name everywhere.
    pub color: String,
    pub kind: ClientKind,
    /// The role of the link the peer joined with, as it says.
    pub role: Role,
    /// Doc id of the file the peer is in (its last cursor report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Selections in `file` (several: multi-cursor); the first is primary.
    #[serde(default)]
    pub selections: Vec<StickySelection>,
    /// Keys arrived within the last second.
    #[serde(default)]
    pub typing: bool,
    #[serde(default)]
    pub status: Status,
    /// What an agent says it is doing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doing: Option<String>,
    /// Set by an owner who asks everyone to follow them: a number that
    /// changes with every summons (milliseconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summon: Option<u64>,
}
