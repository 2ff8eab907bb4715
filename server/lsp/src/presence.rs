//! Presence in the bridge: this user's awareness state on the `_session`
//! doc, everyone else's as the hub relays them, and the `weft/peers` list
//! built from them in this editor's coordinates.
//!
//! It owns a yrs `Awareness` (on a private empty doc: only its client id
//! and the states matter) and no documents: the bridge hands it the
//! sticky indexes of the user's cursors and a way to resolve other
//! people's into editor positions (the replicas do both, see
//! `Replica::sticky_at` / `resolve_sticky`). Timing rules (idle, away,
//! typing, throttles) are `weft_core::presence`; this file only feeds them
//! the clock. Follow mode's decisions live here too; the bridge sends the
//! `window/showDocument` requests.

use std::collections::{HashMap, HashSet};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use weft_core::positions::Pos;
use weft_core::presence::{Activity, Throttle};
use weft_protocol::lsp::{ActivityEntry, PeerInfo, Position, Range, Selection};
use weft_protocol::presence::{PresenceState, Status, StickySelection};
use weft_protocol::{ClientKind, DocId, Role};
use yrs::Doc;
use yrs::encoding::read::Cursor;
use yrs::sync::{Awareness, Message, MessageReader};
use yrs::updates::decoder::DecoderV1;
use yrs::updates::encoder::Encode;

/// Outgoing awareness updates: at most one per this many ms.
const PUBLISH_EVERY_MS: u64 = 30;
/// `weft/peers`: at most one per this many ms (about 30 a second).
const PEERS_EVERY_MS: u64 = 33;
/// Our state is re-sent this often so others do not time it out.
const RENEW_EVERY_MS: u64 = 15_000;
/// Others' states not renewed for this long are dropped (y-protocols' 30 s).
const OUTDATED_MS: u64 = 30_000;
/// Without the editor's visible range, follow mode reveals the leader again
/// when their cursor moved this many lines from the last reveal.
const FOLLOW_SLACK_LINES: u32 = 10;

/// Who this user is, from the editor's settings.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub color: String,
    pub kind: ClientKind,
    pub idle_ms: u64,
    pub away_ms: u64,
    /// Announce joins and leaves with `window/showMessage` too.
    pub announce: bool,
}

/// What changed in the session's presence, for the bridge to tell the editor.
#[derive(Debug, Default)]
pub struct Changes {
    pub activity: Vec<ActivityEntry>,
    /// An owner asked everyone to follow them.
    pub summoned_by: Option<(u64, String)>,
}

/// A `window/showDocument` follow mode wants sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Reveal {
    pub uri: String,
    pub selection: Option<Range>,
}

/// What follow mode wants after a new peers list.
#[derive(Debug, Clone, PartialEq)]
pub enum FollowStep {
    Nothing,
    /// Show this file and selection.
    Reveal(Reveal),
    /// The leader left the session: following stopped.
    LeaderGone,
}

/// See the module doc.
pub struct Presence {
    identity: Identity,
    awareness: Awareness,
    state: PresenceState,
    epoch: Instant,
    activity: Activity,
    publish: Throttle,
    peers: Throttle,
    last_published: u64,
    last_flags: (Status, bool),
    show_selections: bool,
    /// Peers seen so far (client id → name), to announce joins and leaves.
    known: HashMap<u64, String>,
    /// Last positions that resolved, per peer (file, selections): kept
    /// while a newer index waits for its text to arrive.
    resolved: HashMap<u64, (String, Vec<Selection>)>,
    summons: HashMap<u64, u64>,
    following: Option<u64>,
    revealed: Option<(String, Option<u32>)>,
    visible: Option<Range>,
}

fn to_lsp(p: Pos) -> Position {
    Position { line: p.line, character: p.character }
}

fn epoch_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default()
}

impl Presence {
    pub fn new(identity: Identity) -> Presence {
        let epoch = Instant::now();
        let state = PresenceState {
            name: identity.name.clone(),
            color: identity.color.clone(),
            kind: identity.kind,
            role: Role::Editor,
            file: None,
            selections: Vec::new(),
            typing: false,
            status: Status::Active,
            doing: None,
            summon: None,
        };
        Presence {
            activity: Activity::new(0, identity.idle_ms, identity.away_ms),
            awareness: Awareness::new(Doc::with_client_id(weft_client::fresh_client_id())),
            identity,
            state,
            epoch,
            publish: Throttle::new(PUBLISH_EVERY_MS),
            peers: Throttle::new(PEERS_EVERY_MS),
            last_published: 0,
            last_flags: (Status::Active, false),
            show_selections: true,
            known: HashMap::new(),
            resolved: HashMap::new(),
            summons: HashMap::new(),
            following: None,
            revealed: None,
            visible: None,
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A new session: a new awareness identity (client id), nobody known.
    pub fn reset(&mut self) {
        let show_selections = self.show_selections;
        *self = Presence { state: self.state.clone(), show_selections, ..Presence::new(self.identity.clone()) };
        self.state.file = None;
        self.state.selections.clear();
        self.state.summon = None;
    }

    /// Our awareness client id.
    pub fn client_id(&self) -> u64 {
        self.awareness.client_id().get()
    }

    pub fn set_role(&mut self, role: Role) {
        self.state.role = role;
        self.publish.mark();
    }

    /// The user's cursors in `file` (as sticky indexes), or no file.
    pub fn set_cursor(
        &mut self,
        file: Option<&DocId>,
        selections: Vec<(Vec<u8>, Vec<u8>)>,
        visible: Option<Range>,
        input: bool,
    ) {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        self.state.file = file.map(|d| d.as_str().to_owned());
        self.state.selections =
            selections.iter().map(|(a, h)| StickySelection { anchor: b64(a), head: b64(h) }).collect();
        self.visible = visible;
        if input {
            self.activity.input(self.now());
        }
        self.publish.mark();
    }

    /// The user typed; returns whether that stopped follow mode.
    pub fn typed(&mut self) -> bool {
        self.activity.key(self.now());
        self.publish.mark();
        self.following.take().is_some()
    }

    pub fn set_focus(&mut self, focused: bool) {
        self.activity.set_focused(focused, self.now());
        self.publish.mark();
    }

    pub fn set_doing(&mut self, doing: Option<String>) {
        self.state.doing = doing.filter(|d| !d.trim().is_empty()).map(|d| d.chars().take(200).collect());
        self.publish.mark();
    }

    pub fn set_show_selections(&mut self, show: bool) {
        self.show_selections = show;
        self.peers.mark();
    }

    /// Asks everyone to follow us.
    pub fn summon(&mut self) {
        self.state.summon = Some(epoch_ms());
        self.publish.mark();
    }

    pub fn following(&self) -> Option<u64> {
        self.following
    }

    /// Follows `peer` (or stops); `false` if there is no such peer.
    pub fn follow(&mut self, peer: Option<u64>) -> bool {
        if let Some(id) = peer
            && !self.known.contains_key(&id)
        {
            return false;
        }
        self.following = peer;
        self.revealed = None;
        self.peers.mark();
        true
    }

    /// Something that moves positions changed (a document's text): the
    /// peers list is due again.
    pub fn positions_changed(&mut self) {
        if !self.known.is_empty() {
            self.peers.mark();
        }
    }

    /// Timers: status and typing transitions, renewal, outdated peers (whose
    /// leaving is returned, as for a message).
    pub fn tick(&mut self) -> Changes {
        let now = self.now();
        let flags = (self.activity.status(now), self.activity.typing(now));
        if flags != self.last_flags || now.saturating_sub(self.last_published) >= RENEW_EVERY_MS {
            self.publish.mark();
        }
        let wall = epoch_ms();
        let own = self.awareness.client_id();
        let outdated: Vec<_> = self
            .awareness
            .iter()
            .filter(|(id, state)| *id != own && wall.saturating_sub(state.last_updated) >= OUTDATED_MS)
            .map(|(id, _)| id)
            .collect();
        if outdated.is_empty() {
            return Changes::default();
        }
        for id in outdated {
            self.awareness.remove_state(id);
        }
        self.peers.mark();
        self.changes()
    }

    /// The awareness message to send on `_session`, when one is due.
    pub fn outgoing(&mut self) -> Option<Vec<u8>> {
        let now = self.now();
        if !self.publish.due(now) {
            return None;
        }
        self.state.status = self.activity.status(now);
        self.state.typing = self.activity.typing(now);
        self.last_flags = (self.state.status, self.state.typing);
        self.last_published = now;
        if let Err(err) = self.awareness.set_local_state(&self.state) {
            tracing::error!(%err, "cannot encode our presence");
            return None;
        }
        let own = self.awareness.client_id();
        let update = self.awareness.update_with_clients([own]).ok()?;
        Some(Message::Awareness(update).encode_v1())
    }

    /// What subscribes us to `_session` on the hub (a sync step 1: the
    /// weft protocol subscribes on it): then others' awareness reaches us.
    /// The session doc's content that comes back is not kept.
    pub fn subscribe_message() -> Vec<u8> {
        Message::Sync(yrs::sync::SyncMessage::SyncStep1(yrs::StateVector::default())).encode_v1()
    }

    /// The message telling others we left (on leave).
    pub fn goodbye(&mut self) -> Option<Vec<u8>> {
        self.awareness.clean_local_state();
        let own = self.awareness.client_id();
        let update = self.awareness.update_with_clients([own]).ok()?;
        Some(Message::Awareness(update).encode_v1())
    }

    /// A y-protocols message on `_session` from the hub: awareness is
    /// applied (sync messages are not ours to answer: the bridge does not
    /// hold the session doc).
    pub fn on_session_message(&mut self, message: &[u8]) -> Changes {
        let mut decoder = DecoderV1::new(Cursor::new(message));
        for msg in MessageReader::new(&mut decoder) {
            match msg {
                Ok(Message::Awareness(update)) => {
                    if let Err(err) = self.awareness.apply_update(update) {
                        tracing::debug!(%err, "ignored a malformed awareness update");
                    }
                    self.peers.mark();
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::debug!(%err, "ignored a malformed message on the session doc");
                    break;
                }
            }
        }
        self.changes()
    }

    /// Everyone else's parsed state (clients whose state is not ours to read
    /// — a stock Yjs client's, say — are left out).
    fn states(&self) -> Vec<(u64, PresenceState)> {
        let own = self.awareness.client_id();
        let mut out: Vec<(u64, PresenceState)> = self
            .awareness
            .iter()
            .filter(|(id, _)| *id != own)
            .filter_map(|(id, state)| {
                let json = state.data.as_deref()?;
                serde_json::from_str::<PresenceState>(json).ok().map(|s| (id.get(), s))
            })
            .collect();
        out.sort_by_key(|(id, _)| *id);
        out
    }

    /// Joins, leaves and summonses since the last look.
    fn changes(&mut self) -> Changes {
        let mut changes = Changes::default();
        let states = self.states();
        let at = epoch_ms();
        let present: HashSet<u64> = states.iter().map(|(id, _)| *id).collect();
        for (id, state) in &states {
            let met_before = self.known.insert(*id, state.name.clone()).is_some();
            if !met_before {
                changes.activity.push(ActivityEntry { kind: "joined".into(), peer: *id, name: state.name.clone(), at });
            }
            let Some(summon) = state.summon else { continue };
            // A summons already there when we met the peer is old news;
            // one that appears or changes afterwards is meant for us.
            let previous = self.summons.insert(*id, summon);
            if met_before && previous != Some(summon) && state.role == Role::Owner {
                self.following = Some(*id);
                self.revealed = None;
                changes.summoned_by = Some((*id, state.name.clone()));
            }
        }
        let gone: Vec<u64> = self.known.keys().filter(|id| !present.contains(id)).copied().collect();
        for id in gone {
            let name = self.known.remove(&id).unwrap_or_default();
            self.resolved.remove(&id);
            self.summons.remove(&id);
            changes.activity.push(ActivityEntry { kind: "left".into(), peer: id, name, at });
        }
        changes
    }

    /// The `weft/peers` list, when one is due: `uri_of` turns a doc id into
    /// this editor's URI (if it is under the root), `resolve` a sticky index
    /// into a position in the editor's text of that URI (if it is open and
    /// the index's text has arrived).
    pub fn peers_due(
        &mut self,
        uri_of: impl Fn(&DocId) -> Option<String>,
        is_open: impl Fn(&str) -> bool,
        resolve: impl Fn(&str, &[u8]) -> Option<Pos>,
    ) -> Option<Vec<PeerInfo>> {
        if !self.peers.due(self.now()) {
            return None;
        }
        let decode = |s: &str| base64::engine::general_purpose::STANDARD.decode(s).ok();
        let mut list = Vec::new();
        for (id, state) in self.states() {
            let uri = state.file.as_deref().and_then(|f| DocId::new(f).ok()).and_then(|d| uri_of(&d));
            let mut selections = Vec::new();
            if uri.as_deref().is_none_or(|u| !is_open(u)) {
                // Positions need the file's text, which this editor does
                // not have open: none, and none remembered.
                self.resolved.remove(&id);
            } else if let Some(uri) = &uri {
                let fresh: Option<Vec<Selection>> = state
                    .selections
                    .iter()
                    .map(|s| {
                        let anchor = resolve(uri, &decode(&s.anchor)?)?;
                        let head = resolve(uri, &decode(&s.head)?)?;
                        Some(Selection { anchor: to_lsp(anchor), head: to_lsp(head) })
                    })
                    .collect();
                match fresh {
                    Some(fresh) => {
                        self.resolved.insert(id, (uri.clone(), fresh.clone()));
                        selections = fresh;
                    }
                    // The text under a new index has not arrived yet: the
                    // last positions stand (never ones into unknown text).
                    None => {
                        if let Some((last_uri, last)) = self.resolved.get(&id)
                            && last_uri == uri
                        {
                            selections = last.clone();
                        }
                    }
                }
            }
            list.push(PeerInfo {
                id,
                name: state.name,
                color: state.color,
                kind: state.kind,
                role: state.role,
                status: state.status,
                typing: state.typing,
                doing: state.doing,
                uri,
                selections,
            });
        }
        Some(list)
    }

    /// Follow mode: what to do given the list just built.
    pub fn follow_step(&mut self, peers: &[PeerInfo]) -> FollowStep {
        let Some(leader) = self.following else { return FollowStep::Nothing };
        let Some(peer) = peers.iter().find(|p| p.id == leader) else {
            self.following = None;
            return FollowStep::LeaderGone;
        };
        let Some(uri) = &peer.uri else { return FollowStep::Nothing };
        let head = peer.selections.first().map(|s| s.head);
        let selection = peer.selections.first().map(|s| Range { start: s.anchor, end: s.head });
        let reveal = match &self.revealed {
            Some((shown, _)) if shown != uri => true,
            None => true,
            Some((_, None)) => head.is_some(),
            Some((_, Some(line))) => head.is_some_and(|h| match &self.visible {
                Some(v) => h.line < v.start.line || h.line > v.end.line,
                None => h.line.abs_diff(*line) > FOLLOW_SLACK_LINES,
            }),
        };
        if !reveal {
            return FollowStep::Nothing;
        }
        self.revealed = Some((uri.clone(), head.map(|h| h.line)));
        FollowStep::Reveal(Reveal { uri: uri.clone(), selection })
    }

    pub fn show_selections(&self) -> bool {
        self.show_selections
    }

    pub fn announce(&self) -> bool {
        self.identity.announce
    }
}
