//! Secrets and who may do what: token generation and hashing, link
//! passwords (argon2id), and resolving a bearer token to an [`Access`].
//!
//! Tokens are 192 random bits, base64url; the hub stores only their
//! SHA-256 (a hash of a high-entropy secret needs no salt or stretching).
//! Passwords are low-entropy, so they get argon2id. This module decides
//! rights; it performs no I/O except through the [`Store`] it is given.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use weft_protocol::{ErrorCode, LinkId, Role, SessionId};

use crate::store::{LinkRecord, SessionRecord, Store};

/// A fresh random token (192 bits, base64url, 32 characters).
pub fn new_token() -> anyhow::Result<String> {
    random_id(24)
}

/// A fresh random id for sessions and links (96 bits, 16 characters).
pub fn new_id() -> anyhow::Result<String> {
    random_id(12)
}

fn random_id(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no randomness available: {e}"))?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

/// SHA-256 of a token, as stored.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// argon2id PHC string of a password.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    use argon2::password_hash::PasswordHasher;
    let hash = argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| anyhow::anyhow!("hashing the link password failed: {e}"))?;
    Ok(hash.to_string())
}

/// Whether `password` matches the stored PHC string.
pub fn verify_password(password: &str, phc: &str) -> bool {
    use argon2::password_hash::PasswordVerifier;
    use argon2::password_hash::phc::PasswordHash;
    match PasswordHash::new(phc) {
        Ok(parsed) => argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(err) => {
            tracing::error!(%err, "stored password hash is unreadable");
            false
        }
    }
}

/// Who a bearer token says the caller is, before any session is considered.
#[derive(Debug, Clone)]
pub enum Principal {
    /// The hub's admin token: every right everywhere.
    Admin,
    /// A valid (not expired, not revoked) link.
    Link(LinkRecord),
    /// No token at all.
    Anonymous,
}

/// What a caller may do in one session.
#[derive(Debug, Clone)]
pub struct Access {
    pub role: Role,
    /// The link used, if any (revoking it disconnects this caller).
    pub link: Option<LinkId>,
    /// Unix seconds when the link expires (connected peers are then cut off).
    pub expires_at: Option<i64>,
}

/// A refusal with its wire code and a message for humans.
#[derive(Debug, Clone)]
pub struct Denied {
    pub code: ErrorCode,
    pub message: String,
}

impl Denied {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Denied {
        Denied { code, message: message.into() }
    }
}

/// Resolves tokens against the admin token and the store.
#[derive(Clone)]
pub struct Authority {
    admin_hash: Vec<u8>,
    store: Arc<dyn Store>,
}

impl Authority {
    pub fn new(admin_token: &str, store: Arc<dyn Store>) -> Authority {
        Authority { admin_hash: token_hash(admin_token), store }
    }

    /// Resolves a bearer token. Unknown, expired and revoked tokens are
    /// all `unauthorized` (the message says which, the code does not leak more).
    pub fn principal(&self, token: Option<&str>, now: i64) -> Result<Principal, Denied> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Ok(Principal::Anonymous);
        };
        let hash = token_hash(token);
        if constant_time_eq(&hash, &self.admin_hash) {
            return Ok(Principal::Admin);
        }
        let link = self
            .store
            .link_by_token_hash(&hash)
            .map_err(|e| {
                tracing::error!(%e, "link lookup failed");
                Denied::new(ErrorCode::Internal, "the hub could not read its link table; try again")
            })?
            .ok_or_else(|| {
                Denied::new(ErrorCode::Unauthorized, "unknown token: ask the session owner for a new link")
            })?;
        if link.revoked_at.is_some() {
            return Err(Denied::new(
                ErrorCode::Unauthorized,
                "this link was revoked: ask the session owner for a new one",
            ));
        }
        if link.expires_at.is_some_and(|at| at <= now) {
            return Err(Denied::new(
                ErrorCode::Unauthorized,
                "this link has expired: ask the session owner for a new one",
            ));
        }
        Ok(Principal::Link(link))
    }

    /// What `principal` may do in `session`. `password` is checked for
    /// links that have one (argon2: call this off the async threads).
    pub fn access(
        &self,
        principal: &Principal,
        session: &SessionRecord,
        password: Option<&str>,
    ) -> Result<Access, Denied> {
        match principal {
            Principal::Admin => Ok(Access { role: Role::Owner, link: None, expires_at: None }),
            Principal::Anonymous if session.public => Ok(Access { role: Role::Viewer, link: None, expires_at: None }),
            Principal::Anonymous => {
                Err(Denied::new(ErrorCode::Unauthorized, "this session needs a token: use a share link"))
            }
            Principal::Link(link) if link.session != session.id => {
                Err(Denied::new(ErrorCode::Forbidden, "this link belongs to another session"))
            }
            Principal::Link(link) => {
                if let Some(phc) = &link.password_hash {
                    match password {
                        Some(pw) if verify_password(pw, phc) => {}
                        Some(_) => return Err(Denied::new(ErrorCode::BadPassword, "wrong password for this link")),
                        None => {
                            return Err(Denied::new(
                                ErrorCode::BadPassword,
                                "this link needs a password: send it with the token",
                            ));
                        }
                    }
                }
                Ok(Access { role: link.role, link: Some(link.id.clone()), expires_at: link.expires_at })
            }
        }
    }

    /// The session a principal is tied to, if it is a link.
    pub fn link_session(principal: &Principal) -> Option<&SessionId> {
        match principal {
            Principal::Link(link) => Some(&link.session),
            _ => None,
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_distinct() {
        let a = new_token().expect("token");
        let b = new_token().expect("token");
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert_eq!(token_hash(&a).len(), 32);
    }

    #[test]
    fn passwords_verify() {
        let phc = hash_password("correct horse").expect("hash");
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("wrong", &phc));
        assert!(!verify_password("x", "not a phc string"));
    }
}
