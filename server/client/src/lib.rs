//! weft-client: what any weft participant needs to reach a hub, whatever
//! drives it (an editor through `weft lsp`, or a headless command).
//!
//! [`link`] parses share links and hub addresses; [`hub_api`] makes the few
//! REST calls sharing needs; [`hub_link`] is the reconnecting WebSocket
//! with its events. Nothing here knows LSP or holds document state.

pub mod hub_api;
pub mod hub_link;
pub mod link;
