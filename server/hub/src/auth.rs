//! Secrets and who may do what: token generation and hashing, link
//! passwords (argon2id), and resolving a bearer token to an [`Access`].
//!
//! Tokens are 192 random bits, base64url; the hub stores only their
//! SHA-256 (a hash of a high-entropy secret needs no salt or stretching).
//! Passwords are low-entropy, so they get argon2id. This module decides
//! rights; it performs no I/O except through the [`Store`] it is given.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use weft_protocol::{ErrorCode, LinkId, Role, SessionId};

use crate::limits::AuthBackoff;
use crate::store::{LinkRecord, SessionRecord, Store};

/// A fresh random token (192 bits, base64url, 32 characters).
pub fn new_token() -> anyhow::Result<String> {
    random_id(24)
}

/// A fresh random id for sessions and links (96 bits, 16 characters).
pub fn new_id() -> anyhow::Result<String> {
    random_id(12)
}

/// Never starts with `-`: ids and tokens are command-line arguments
/// (`weft audit SESSION`, `--token TOKEN`), where a leading `-` reads as
/// an option (one id in 64 did, and a test failed on it).
fn random_id(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    loop {
        getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no randomness available: {e}"))?;
        let id = URL_SAFE_NO_PAD.encode(&buf);
        if !id.starts_with('-') {
            return Ok(id);
        }
    }
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
    /// The link's limit of distinct clients, if it has one.
    pub max_uses: Option<u32>,
    /// Whom the link was made for, if it is an invitation.
    pub invitee: Option<String>,
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
    /// Guessing defence: failed sign-ins per IP address and per link.
    backoff: Arc<AuthBackoff>,
}

/// The back-off key of an address.
fn ip_key(ip: IpAddr) -> String {
    format!("ip:{ip}")
}

/// The back-off key of a link (its password).
fn link_key(link: &LinkRecord) -> String {
    format!("link:{}", link.id)
}

fn rate_limited(what: &str, wait: Duration) -> Denied {
    let secs = wait.as_secs_f64().ceil().max(1.0);
    Denied::new(ErrorCode::RateLimited, format!("too many failed attempts {what}; try again in {secs:.0} s"))
}

impl Authority {
    pub fn new(admin_token: &str, store: Arc<dyn Store>, backoff: AuthBackoff) -> Authority {
        Authority { admin_hash: token_hash(admin_token), store, backoff: Arc::new(backoff) }
    }

    /// Resolves a bearer token. Unknown, expired and revoked tokens are
    /// all `unauthorized` (the message says which, the code does not leak
    /// more). Unknown tokens count as failures of `ip`; after a few, the
    /// address must wait (exponentially longer) before a token is looked at.
    pub fn principal(&self, token: Option<&str>, now: i64, ip: Option<IpAddr>) -> Result<Principal, Denied> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Ok(Principal::Anonymous);
        };
        if let Some(wait) = ip.and_then(|ip| self.backoff.wait(&ip_key(ip), Instant::now())) {
            return Err(rate_limited("from your address", wait));
        }
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
                if let Some(ip) = ip {
                    self.backoff.failed(&ip_key(ip), Instant::now());
                }
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
    /// links that have one (argon2: call this off the async threads); wrong
    /// passwords count as failures of the link and of `ip`, and after a
    /// few the link must wait (exponentially longer) before a password is
    /// looked at.
    pub fn access(
        &self,
        principal: &Principal,
        session: &SessionRecord,
        password: Option<&str>,
        ip: Option<IpAddr>,
    ) -> Result<Access, Denied> {
        match principal {
            Principal::Admin => {
                Ok(Access { role: Role::Owner, link: None, expires_at: None, max_uses: None, invitee: None })
            }
            Principal::Anonymous if session.public => {
                Ok(Access { role: Role::Viewer, link: None, expires_at: None, max_uses: None, invitee: None })
            }
            Principal::Anonymous => {
                Err(Denied::new(ErrorCode::Unauthorized, "this session needs a token: use a share link"))
            }
            Principal::Link(link) if link.session != session.id => {
                Err(Denied::new(ErrorCode::Forbidden, "this link belongs to another session"))
            }
            Principal::Link(link) => {
                if let Some(phc) = &link.password_hash {
                    let key = link_key(link);
                    if password.is_some()
                        && let Some(wait) = self.backoff.wait(&key, Instant::now())
                    {
                        return Err(rate_limited("for this link's password", wait));
                    }
                    match password {
                        Some(pw) if verify_password(pw, phc) => self.backoff.succeeded(&key),
                        Some(_) => {
                            let now = Instant::now();
                            self.backoff.failed(&key, now);
                            if let Some(ip) = ip {
                                self.backoff.failed(&ip_key(ip), now);
                            }
                            return Err(Denied::new(ErrorCode::BadPassword, "wrong password for this link"));
                        }
                        None => {
                            return Err(Denied::new(
                                ErrorCode::BadPassword,
                                "this link needs a password: send it with the token",
                            ));
                        }
                    }
                }
                Ok(Access {
                    role: link.role,
                    link: Some(link.id.clone()),
                    expires_at: link.expires_at,
                    max_uses: link.max_uses,
                    invitee: link.invitee.clone(),
                })
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
    fn ids_and_tokens_never_read_as_command_line_options() {
        // One in 64 would start with '-' if nothing prevented it.
        for _ in 0..2_000 {
            assert!(!new_id().expect("id").starts_with('-'));
            assert!(!new_token().expect("token").starts_with('-'));
        }
    }

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
