//! The HTTP side of the hub: the router, the REST API, `/healthz` and
//! `/metrics`.
//!
//! Every REST answer is JSON; every failure is an [`ErrorBody`] with the
//! status of its [`ErrorCode`]. Bodies are parsed by hand (not by axum's
//! `Json` extractor) so that garbage gets our error shape, not a plain-text
//! rejection. Handlers run on the blocking pool: they call the store and,
//! for password links, argon2.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use weft_protocol::rest::ChangeRole;
use weft_protocol::rest::{
    CreateLink, CreateSession, ErrorBody, ErrorDetail, EventPage, LinkCreated, ParticipantList, SessionCreated,
    SessionList, SessionView,
};
use weft_protocol::{ErrorCode, LinkId, PeerId, Role, SessionId};

use crate::auth::{self, Access, Denied, Principal};
use crate::room::RoomMsg;
use crate::store::{LinkRecord, SessionRecord};
use crate::{Hub, now_s, ws};

/// Header carrying a link's password on REST calls.
pub const PASSWORD_HEADER: &str = "x-weft-password";
/// Longest link lifetime accepted: ten years.
const MAX_EXPIRY_S: u64 = 10 * 365 * 24 * 3600;

/// The hub's whole HTTP surface.
pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/sessions", get(list_sessions).post(create_session))
        .route("/api/sessions/{id}", get(get_session).delete(delete_session))
        .route("/api/sessions/{id}/links", axum::routing::post(create_link))
        .route("/api/sessions/{id}/links/{link}", delete(revoke_link).patch(change_link))
        .route("/api/sessions/{id}/participants", get(participants))
        .route("/api/sessions/{id}/participants/{peer}", delete(remove_participant).patch(change_participant))
        .route("/api/sessions/{id}/events", get(events))
        .route("/ws/{session}", get(ws::weft_endpoint))
        .route("/y/{session}/{*doc}", get(ws::y_endpoint))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(hub)
}

/// A REST failure.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
}

impl ApiError {
    fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into() }
    }
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> Self {
        ApiError { code: d.code, message: d.message }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody { error: ErrorDetail { code: self.code, message: self.message } };
        (status, axum::Json(body)).into_response()
    }
}

fn internal(err: impl std::fmt::Display) -> ApiError {
    tracing::error!(%err, "REST request failed");
    ApiError::new(ErrorCode::Internal, "the hub failed to complete the request; its log has details")
}

type ApiResult<T> = Result<T, ApiError>;

/// Runs `f` on the blocking pool and renders its result as JSON with `status`.
async fn blocking<T: Serialize + Send + 'static>(
    status: StatusCode,
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(value)) => (status, axum::Json(value)).into_response(),
        Ok(Err(err)) => err.into_response(),
        Err(err) => internal(err).into_response(),
    }
}

fn parse_body<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(ErrorCode::Malformed, format!("request body is not valid: {e}")))
}

/// The parts of a request the API reads: its headers and where it came
/// from (for the per-address limits and sign-in back-off).
pub struct Req {
    headers: HeaderMap,
    /// The peer's address (`None` when the server was not started with
    /// connection info, as in some tests).
    pub ip: Option<std::net::IpAddr>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Req {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Req, Self::Rejection> {
        let ip = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
        Ok(Req { headers: parts.headers.clone(), ip })
    }
}

struct Caller {
    token: Option<String>,
    password: Option<String>,
    ip: Option<std::net::IpAddr>,
}

fn caller(req: &Req) -> ApiResult<Caller> {
    let headers = &req.headers;
    let token = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => {
            let value = value
                .to_str()
                .map_err(|_| ApiError::new(ErrorCode::Unauthorized, "unreadable Authorization header"))?;
            let token = value
                .strip_prefix("Bearer ")
                .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "use 'Authorization: Bearer TOKEN'"))?;
            Some(token.trim().to_owned())
        }
    };
    // Passwords may be any UTF-8, which `HeaderValue::to_str` (visible
    // ASCII only) would refuse.
    let password = headers
        .get(PASSWORD_HEADER)
        .map(|v| std::str::from_utf8(v.as_bytes()).map(str::to_owned))
        .transpose()
        .map_err(|_| ApiError::new(ErrorCode::Malformed, "the X-Weft-Password header must be UTF-8"))?;
    Ok(Caller { token, password, ip: req.ip })
}

impl Caller {
    fn principal(&self, hub: &Hub) -> ApiResult<Principal> {
        Ok(hub.authority.principal(self.token.as_deref(), now_s(), self.ip)?)
    }

    /// The caller's access to session `id`, which must exist.
    fn session_access(&self, hub: &Hub, id: &str) -> ApiResult<(SessionRecord, Access)> {
        let principal = self.principal(hub)?;
        let record = SessionId::is_well_formed(id)
            .then(|| hub.store.session(&SessionId(id.to_owned())))
            .transpose()
            .map_err(internal)?
            .flatten();
        let Some(record) = record else {
            return Err(match principal {
                Principal::Anonymous => ApiError::new(ErrorCode::Unauthorized, "send 'Authorization: Bearer TOKEN'"),
                _ => ApiError::new(ErrorCode::NotFound, "no such session"),
            });
        };
        match hub.authority.access(&principal, &record, self.password.as_deref(), self.ip) {
            Ok(access) => Ok((record, access)),
            Err(denied) => {
                hub.audit_denied(&record.id, "rest", denied.code, &denied.message);
                Err(denied.into())
            }
        }
    }

    /// Like `session_access`, but only owners (and the admin) pass.
    fn owner_access(&self, hub: &Hub, id: &str, what: &str) -> ApiResult<(SessionRecord, Access)> {
        let (record, access) = self.session_access(hub, id)?;
        if self.token.as_deref().is_none_or(str::is_empty) {
            // Anonymous readers of a public session: no token is a 401.
            return Err(ApiError::new(ErrorCode::Unauthorized, format!("send an owner's token to {what}")));
        }
        if !access.role.is_owner() {
            hub.audit_denied(&record.id, "rest", ErrorCode::Forbidden, what);
            return Err(ApiError::new(ErrorCode::Forbidden, format!("only the session's owners may {what}")));
        }
        Ok((record, access))
    }
}

async fn healthz() -> Response {
    (StatusCode::OK, axum::Json(serde_json::json!({"status": "ok"}))).into_response()
}

async fn metrics(State(hub): State<Arc<Hub>>) -> Response {
    let stats = hub.writer.stats();
    let body = hub.metrics.render(
        stats.commits.load(std::sync::atomic::Ordering::Relaxed),
        stats.ops.load(std::sync::atomic::Ordering::Relaxed),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

async fn method_not_allowed() -> Response {
    let err = ApiError::new(ErrorCode::Malformed, "this route does not take that HTTP method; see docs/protocol.md");
    let mut resp = err.into_response();
    *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    resp
}

async fn not_found() -> Response {
    ApiError::new(ErrorCode::NotFound, "no such route; see docs/hub.md").into_response()
}

fn new_link(
    hub: &Hub,
    session: &SessionId,
    role: Role,
    expires_in_s: Option<u64>,
    password: Option<&str>,
    max_uses: Option<u32>,
    invitee: Option<String>,
) -> ApiResult<(LinkRecord, LinkCreated)> {
    let token = auth::new_token().map_err(internal)?;
    let id = LinkId(auth::new_id().map_err(internal)?);
    let now = now_s();
    let expires_at = expires_in_s.map(|s| now + s as i64);
    let password_hash = password.map(auth::hash_password).transpose().map_err(internal)?;
    let record = LinkRecord {
        id: id.clone(),
        session: session.clone(),
        role,
        token_hash: auth::token_hash(&token),
        password_hash,
        expires_at,
        revoked_at: None,
        created_at: now,
        max_uses,
        invitee: invitee.clone(),
    };
    let created = LinkCreated {
        id,
        url: hub.link_url(session, &token),
        token,
        role,
        expires_at,
        password: password.is_some(),
        max_uses,
        invitee,
    };
    Ok((record, created))
}

async fn create_session(State(hub): State<Arc<Hub>>, req: Req, body: Bytes) -> Response {
    blocking(StatusCode::CREATED, move || {
        let caller = caller(&req)?;
        match caller.principal(&hub)? {
            Principal::Admin => {}
            Principal::Anonymous => {
                return Err(ApiError::new(ErrorCode::Unauthorized, "creating a session needs the hub's admin token"));
            }
            Principal::Link(_) => {
                return Err(ApiError::new(ErrorCode::Forbidden, "creating a session needs the hub's admin token"));
            }
        }
        let req: CreateSession = parse_body(&body)?;
        let live = hub.store.sessions().map_err(internal)?.len();
        if live >= hub.config.max_sessions_per_owner {
            tracing::warn!(live, "refused a new session over --max-sessions-per-owner");
            return Err(ApiError::new(
                ErrorCode::LimitReached,
                format!(
                    "this owner already holds {live} sessions, the hub's limit: delete some, or ask the hub operator to raise --max-sessions-per-owner"
                ),
            ));
        }
        let template = match &req.template {
            None => None,
            Some(t) => Some(hub.config.templates.get(t).cloned().ok_or_else(|| {
                let known: Vec<&str> = hub.config.templates.keys().map(String::as_str).collect();
                ApiError::new(
                    ErrorCode::NotFound,
                    format!("no session template {t:?} on this hub (it has: {})", known.join(", ")),
                )
            })?),
        };
        let name = req.name.trim();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(ApiError::new(ErrorCode::Malformed, "name must have 1 to 200 printable characters"));
        }
        let record = SessionRecord {
            id: SessionId(auth::new_id().map_err(internal)?),
            name: name.to_owned(),
            public: req.public || template.as_ref().is_some_and(|t| t.public),
            created_at: now_s(),
        };
        let (link, owner) = new_link(&hub, &record.id, Role::Owner, None, None, None, None)?;
        hub.store.create_session(&record, &link).map_err(internal)?;
        hub.audit(
            Some(&record.id),
            "session.created",
            serde_json::json!({"name": record.name, "public": record.public, "template": req.template}),
        );
        hub.audit(Some(&record.id), "link.created", serde_json::json!({"link": link.id, "role": Role::Owner}));
        let mut links = Vec::new();
        for t in template.iter().flat_map(|t| &t.links) {
            let (link, created) = new_link(&hub, &record.id, t.role, t.expires_in_s, None, t.max_uses, None)?;
            hub.store.create_link(&link).map_err(internal)?;
            let detail = serde_json::json!({
                "link": link.id, "role": link.role, "expires_at": link.expires_at, "max_uses": link.max_uses,
                "template": req.template,
            });
            hub.audit(Some(&record.id), "link.created", detail);
            links.push(created);
        }
        tracing::info!(session = %record.id, template = ?req.template, "session created");
        let ignore = template.map(|t| t.ignore).unwrap_or_default();
        Ok(SessionCreated { id: record.id, name: record.name, owner, links, ignore })
    })
    .await
}

fn view(hub: &Hub, record: SessionRecord, role: Role) -> ApiResult<SessionView> {
    let docs = hub.store.doc_ids(&record.id).map_err(internal)?;
    let participants = hub.peers().values().filter(|p| p.session == record.id).count();
    Ok(SessionView {
        id: record.id,
        name: record.name,
        public: record.public,
        created_at: record.created_at,
        participants,
        docs,
        role,
    })
}

async fn list_sessions(
    State(hub): State<Arc<Hub>>,
    Query(query): Query<HashMap<String, String>>,
    req: Req,
) -> Response {
    blocking(StatusCode::OK, move || {
        let caller = caller(&req)?;
        let principal = caller.principal(&hub)?;
        match query.get("public").map(String::as_str) {
            None | Some("false") => {}
            // Discovery: every public session, to anyone (joining still
            // needs the viewer link its owner publishes with it).
            Some("true") => {
                let role = if matches!(principal, Principal::Admin) { Role::Owner } else { Role::Viewer };
                let sessions = hub
                    .store
                    .sessions()
                    .map_err(internal)?
                    .into_iter()
                    .filter(|s| s.public)
                    .map(|s| view(&hub, s, role))
                    .collect::<ApiResult<Vec<_>>>()?;
                return Ok(SessionList { sessions });
            }
            Some(_) => return Err(ApiError::new(ErrorCode::Malformed, "public must be true or false")),
        }
        let sessions = match principal {
            Principal::Admin => hub
                .store
                .sessions()
                .map_err(internal)?
                .into_iter()
                .map(|s| view(&hub, s, Role::Owner))
                .collect::<ApiResult<Vec<_>>>()?,
            Principal::Link(ref link) => match hub.store.session(&link.session).map_err(internal)? {
                Some(s) => {
                    // A password link lists its session only with the password.
                    let access = hub.authority.access(&principal, &s, caller.password.as_deref(), caller.ip)?;
                    vec![view(&hub, s, access.role)?]
                }
                None => Vec::new(),
            },
            Principal::Anonymous => {
                return Err(ApiError::new(ErrorCode::Unauthorized, "send 'Authorization: Bearer TOKEN'"));
            }
        };
        Ok(SessionList { sessions })
    })
    .await
}

async fn get_session(State(hub): State<Arc<Hub>>, Path(id): Path<String>, req: Req) -> Response {
    blocking(StatusCode::OK, move || {
        let (record, access) = caller(&req)?.session_access(&hub, &id)?;
        view(&hub, record, access.role)
    })
    .await
}

async fn delete_session(State(hub): State<Arc<Hub>>, Path(id): Path<String>, req: Req) -> Response {
    let result = {
        let hub = Arc::clone(&hub);
        tokio::task::spawn_blocking(move || -> ApiResult<SessionId> {
            let (record, _) = caller(&req)?.owner_access(&hub, &id, "delete the session")?;
            if !hub.store.delete_session(&record.id, now_s()).map_err(internal)? {
                return Err(ApiError::new(ErrorCode::NotFound, "no such session"));
            }
            hub.audit(Some(&record.id), "session.deleted", serde_json::json!({"name": record.name}));
            tracing::info!(session = %record.id, "session deleted");
            Ok(record.id)
        })
        .await
    };
    match result {
        Ok(Ok(session)) => {
            let msg = "this session was deleted by its owner";
            let room = hub.rooms().get(&session).cloned();
            if let Some(room) = room
                && room.tx.send(RoomMsg::Close { code: ErrorCode::Gone, message: msg.into() }).await.is_err()
            {
                tracing::debug!(%session, "room already stopped");
            }
            hub.kick_peers(&session, |_| true, ErrorCode::Gone, msg);
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(Err(err)) => err.into_response(),
        Err(err) => internal(err).into_response(),
    }
}

async fn create_link(State(hub): State<Arc<Hub>>, Path(id): Path<String>, req: Req, body: Bytes) -> Response {
    blocking(StatusCode::CREATED, move || {
        let (record, access) = caller(&req)?.owner_access(&hub, &id, "create links")?;
        let req: CreateLink = parse_body(&body)?;
        if req.expires_in_s.is_some_and(|s| s == 0 || s > MAX_EXPIRY_S) {
            return Err(ApiError::new(
                ErrorCode::Malformed,
                format!("expires_in_s must be between 1 and {MAX_EXPIRY_S}"),
            ));
        }
        if req.password.as_ref().is_some_and(|p| p.is_empty() || p.chars().count() > 1024) {
            return Err(ApiError::new(ErrorCode::Malformed, "password must have 1 to 1024 characters"));
        }
        if req.max_uses.is_some_and(|n| n == 0 || n > 1_000_000) {
            return Err(ApiError::new(ErrorCode::Malformed, "max_uses must be between 1 and 1000000"));
        }
        let invitee = match &req.invitee {
            None => None,
            Some(name) => Some(weft_protocol::control::clean_name(name).ok_or_else(|| {
                ApiError::new(ErrorCode::Malformed, "invitee must have 1 to 100 printable characters")
            })?),
        };
        let (link, created) =
            new_link(&hub, &record.id, req.role, req.expires_in_s, req.password.as_deref(), req.max_uses, invitee)?;
        hub.store.create_link(&link).map_err(internal)?;
        hub.audit(
            Some(&record.id),
            "link.created",
            serde_json::json!({
                "link": link.id, "role": link.role, "expires_at": link.expires_at,
                "password": link.password_hash.is_some(), "max_uses": link.max_uses, "invitee": link.invitee,
                "by": access.link,
            }),
        );
        Ok(created)
    })
    .await
}

async fn revoke_link(State(hub): State<Arc<Hub>>, Path((id, link)): Path<(String, String)>, req: Req) -> Response {
    let result = {
        let hub = Arc::clone(&hub);
        tokio::task::spawn_blocking(move || -> ApiResult<(SessionId, LinkId)> {
            let (record, access) = caller(&req)?.owner_access(&hub, &id, "revoke links")?;
            let link = LinkId(link);
            let revoked = LinkId::is_well_formed(&link.0)
                && hub.store.revoke_link(&record.id, &link, now_s()).map_err(internal)?;
            if !revoked {
                return Err(ApiError::new(ErrorCode::NotFound, "no such link, or it was already revoked"));
            }
            hub.audit(Some(&record.id), "link.revoked", serde_json::json!({"link": link, "by": access.link}));
            Ok((record.id, link))
        })
        .await
    };
    match result {
        Ok(Ok((session, link))) => {
            let kicked = hub.kick_peers(
                &session,
                |p| p.link.as_ref() == Some(&link),
                ErrorCode::Unauthorized,
                "your link was revoked by the session owner",
            );
            tracing::info!(%session, %link, kicked, "link revoked");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(Err(err)) => err.into_response(),
        Err(err) => internal(err).into_response(),
    }
}

/// The new role of a [`ChangeRole`] body; `owner` is not given this way.
fn new_role(body: &[u8]) -> ApiResult<Role> {
    let ChangeRole { role } = parse_body(body)?;
    if role.is_owner() {
        return Err(ApiError::new(
            ErrorCode::Malformed,
            "a role can be changed to viewer, editor or agent; owners join with an owner link",
        ));
    }
    Ok(role)
}

fn peer_id(peer: &str) -> ApiResult<PeerId> {
    peer.parse::<u64>()
        .map(PeerId)
        .map_err(|_| ApiError::new(ErrorCode::NotFound, "no such participant (peer ids are numbers)"))
}

/// `PATCH /api/sessions/{id}/participants/{peer}`: changes one connected
/// participant's role at once (for this connection; change or revoke the
/// link to change what a reconnect gets).
async fn change_participant(
    State(hub): State<Arc<Hub>>,
    Path((id, peer)): Path<(String, String)>,
    req: Req,
    body: Bytes,
) -> Response {
    blocking(StatusCode::OK, move || {
        let (record, access) = caller(&req)?.owner_access(&hub, &id, "change roles")?;
        let peer = peer_id(&peer)?;
        let role = new_role(&body)?;
        let before = hub.peers().get(&peer).filter(|e| e.session == record.id).map(|e| e.info.role);
        let Some(before) = before else {
            return Err(ApiError::new(ErrorCode::NotFound, "no such participant in this session"));
        };
        hub.set_peer_roles(&record.id, |e| e.info.peer == peer, role);
        hub.audit(
            Some(&record.id),
            "participant.role_changed",
            serde_json::json!({"peer": peer, "from": before, "to": role, "by": access.link}),
        );
        tracing::info!(session = %record.id, %peer, %role, "participant role changed");
        Ok(serde_json::json!({"peer": peer, "role": role}))
    })
    .await
}

/// `DELETE /api/sessions/{id}/participants/{peer}`: disconnects one
/// participant (revoke their link to keep them out).
async fn remove_participant(
    State(hub): State<Arc<Hub>>,
    Path((id, peer)): Path<(String, String)>,
    req: Req,
) -> Response {
    blocking(StatusCode::OK, move || {
        let (record, access) = caller(&req)?.owner_access(&hub, &id, "remove participants")?;
        let peer = peer_id(&peer)?;
        let kicked = hub.kick_peers(
            &record.id,
            |e| e.info.peer == peer && !e.outbox.is_kicked(),
            ErrorCode::Forbidden,
            "the session owner removed you from the session",
        );
        if kicked == 0 {
            return Err(ApiError::new(ErrorCode::NotFound, "no such participant in this session"));
        }
        hub.audit(Some(&record.id), "participant.removed", serde_json::json!({"peer": peer, "by": access.link}));
        Ok(serde_json::json!({"peer": peer, "removed": true}))
    })
    .await
}

/// `PATCH /api/sessions/{id}/links/{link}`: gives a link another role, for
/// whoever joins with it from now on and, at once, for its connected peers.
async fn change_link(
    State(hub): State<Arc<Hub>>,
    Path((id, link)): Path<(String, String)>,
    req: Req,
    body: Bytes,
) -> Response {
    blocking(StatusCode::OK, move || {
        let (record, access) = caller(&req)?.owner_access(&hub, &id, "change links")?;
        let role = new_role(&body)?;
        let link = LinkId(link);
        let changed =
            LinkId::is_well_formed(&link.0) && hub.store.set_link_role(&record.id, &link, role).map_err(internal)?;
        if !changed {
            return Err(ApiError::new(ErrorCode::NotFound, "no such live link"));
        }
        let peers = hub.set_peer_roles(&record.id, |e| e.link.as_ref() == Some(&link), role);
        hub.audit(
            Some(&record.id),
            "link.role_changed",
            serde_json::json!({"link": link, "to": role, "by": access.link, "peers": peers}),
        );
        Ok(serde_json::json!({"link": link, "role": role, "peers": peers.len()}))
    })
    .await
}

async fn participants(State(hub): State<Arc<Hub>>, Path(id): Path<String>, req: Req) -> Response {
    blocking(StatusCode::OK, move || {
        let (record, _) = caller(&req)?.session_access(&hub, &id)?;
        let mut participants: Vec<_> =
            hub.peers().values().filter(|p| p.session == record.id).map(|p| p.info.clone()).collect();
        participants.sort_by_key(|p| p.peer);
        Ok(ParticipantList { participants })
    })
    .await
}

async fn events(
    State(hub): State<Arc<Hub>>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    req: Req,
) -> Response {
    blocking(StatusCode::OK, move || {
        let (record, _) = caller(&req)?.owner_access(&hub, &id, "read the audit log")?;
        let after = match query.get("after") {
            None => 0,
            Some(v) => {
                v.parse::<i64>().map_err(|_| ApiError::new(ErrorCode::Malformed, "after must be an integer cursor"))?
            }
        };
        let limit = match query.get("limit") {
            None => 100,
            Some(v) => match v.parse::<usize>() {
                Ok(n @ 1..=1000) => n,
                _ => return Err(ApiError::new(ErrorCode::Malformed, "limit must be between 1 and 1000")),
            },
        };
        let events = hub.store.events(&record.id, after, limit).map_err(internal)?;
        let next = events.last().map_or(after, |e| e.id);
        Ok(EventPage { events, next })
    })
    .await
}
