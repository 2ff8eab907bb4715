//! Document ids: a file's path relative to the workspace root, or `_session`.
//!
//! A doc id arrives from the network (in a frame prefix or a URL) and is
//! later joined to a directory on disk by the bridge, so it is validated
//! here, once, against every path trick we know: absolute paths, `..`,
//! empty or `.` segments, backslashes, control characters, over-long names.
//! A `DocId` that exists is safe to join under a root.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// The id of the session's own document (file tree, chat, activity, ...).
pub const SESSION_DOC: &str = "_session";

/// Longest accepted doc id, in bytes of UTF-8.
pub const MAX_DOC_ID_BYTES: usize = 1024;

/// A validated document id. `src/main.rs` (forward slashes, relative, no
/// `.`/`..` segments) or [`SESSION_DOC`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct DocId(String);

/// Why a string is not a doc id. The message is shown to users as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocIdError {
    #[error("doc id is empty")]
    Empty,
    #[error("doc id is longer than {MAX_DOC_ID_BYTES} bytes")]
    TooLong,
    #[error("doc id must be a relative path without a leading or trailing '/'")]
    NotRelative,
    #[error("doc id has an empty, '.' or '..' path segment")]
    BadSegment,
    #[error("doc id contains a backslash or a control character")]
    BadCharacter,
}

impl DocId {
    /// Validates `s` as a doc id.
    pub fn new(s: impl Into<String>) -> Result<DocId, DocIdError> {
        let s = s.into();
        if s.is_empty() {
            return Err(DocIdError::Empty);
        }
        if s.len() > MAX_DOC_ID_BYTES {
            return Err(DocIdError::TooLong);
        }
        if s.starts_with('/') || s.ends_with('/') {
            return Err(DocIdError::NotRelative);
        }
        if s.chars().any(|c| c == '\\' || c.is_control()) {
            return Err(DocIdError::BadCharacter);
        }
        if s.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") {
            return Err(DocIdError::BadSegment);
        }
        Ok(DocId(s))
    }

    /// The session document's id.
    pub fn session() -> DocId {
        DocId(SESSION_DOC.to_owned())
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the session document.
    pub fn is_session_doc(&self) -> bool {
        self.0 == SESSION_DOC
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DocId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        DocId::new(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_workspace_paths() {
        for ok in ["src/main.rs", "_session", "a b/ünïcødé 日本.txt", "x", ".github/ci.yml", "a/..b"] {
            assert_eq!(DocId::new(ok).map(|d| d.to_string()), Ok(ok.to_owned()));
        }
    }

    #[test]
    fn refuses_hostile_paths() {
        let long = "a".repeat(MAX_DOC_ID_BYTES + 1);
        let cases = [
            ("", DocIdError::Empty),
            ("/etc/passwd", DocIdError::NotRelative),
            ("src/", DocIdError::NotRelative),
            ("../x", DocIdError::BadSegment),
            ("a/../../x", DocIdError::BadSegment),
            ("a//b", DocIdError::BadSegment),
            ("./a", DocIdError::BadSegment),
            ("a\\..\\b", DocIdError::BadCharacter),
            ("a\0b", DocIdError::BadCharacter),
            ("a\nb", DocIdError::BadCharacter),
            (long.as_str(), DocIdError::TooLong),
        ];
        for (input, want) in cases {
            assert_eq!(DocId::new(input), Err(want), "{input:?}");
        }
    }

    #[test]
    fn deserializing_validates() {
        let err = serde_json::from_str::<DocId>("\"../etc\"").expect_err("must refuse");
        assert!(err.to_string().contains("segment"), "{err}");
    }
}
