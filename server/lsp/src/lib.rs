//! weft-lsp: `weft lsp`, the bridge between one editor and a weft hub —
//! and the only crate that knows LSP (architecture invariant 1).
//!
//! The editor starts it as a language server on stdio. [`transport`] frames
//! JSON-RPC; [`bridge`] is the single-threaded main loop that owns every
//! document (ordering guaranteed by construction, see
//! docs/decisions/0006-sequential-lsp-loop.md). The hub connection, REST
//! calls and link parsing are `weft_client`; the CRDT and OT logic is
//! `weft_core::replica`.

pub mod bridge;
pub mod presence;
pub mod transport;

pub use bridge::BridgeConfig;

/// Runs the bridge on stdin/stdout until the editor exits. Returns whether
/// the editor asked for `shutdown` before `exit` (LSP's clean exit).
pub fn run_stdio(config: BridgeConfig) -> anyhow::Result<bool> {
    let transport = transport::stdio()?;
    let mut transport = transport;
    let Some(bridge) = bridge::Bridge::initialize(&mut transport.incoming, transport.outgoing.clone(), config)? else {
        return Ok(false);
    };
    let clean = bridge.run(transport.incoming)?;
    // The bridge queued a stop after its last message: wait for the writer
    // to flush. The reader thread stays blocked on stdin and ends with the
    // process.
    if transport.writer.join().is_err() {
        tracing::error!("the LSP writer thread panicked");
    }
    Ok(clean)
}
