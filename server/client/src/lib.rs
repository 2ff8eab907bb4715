//! weft-client: what any weft participant needs to reach a hub, whatever
//! drives it (an editor through `weft lsp`, or a headless command).
//!
//! [`link`] parses share links and hub addresses; [`hub_api`] makes the few
//! REST calls sharing needs; [`hub_link`] is the reconnecting WebSocket
//! with its events, which merges queued updates before writing them
//! (`coalesce`); [`tls`] decides whom to trust and when plain
//! connections are allowed. Nothing here knows LSP or holds document state.

mod coalesce;
pub mod hub_api;
pub mod hub_link;
pub mod link;
pub mod tls;

/// A fresh random CRDT client id (32 bits, like Yjs). Every replica gets
/// its own, so a re-created document never restarts an old id's clock.
pub fn fresh_client_id() -> u64 {
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        return u64::from(std::process::id());
    }
    u64::from(u32::from_le_bytes(bytes))
}
