//! A hub inside another process (the editor bridge or a headless `weft
//! share`), so sharing works with zero set-up: loopback only, a random
//! admin token held in memory, data under the shared root's `.weft/hub`.

use std::path::Path;

use anyhow::Context as _;

use crate::HubConfig;

/// A running embedded hub; dropping it stops the hub.
pub struct EmbeddedHub {
    /// `127.0.0.1:PORT`.
    pub authority: String,
    /// The admin token (never written to disk).
    pub admin: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for EmbeddedHub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts a hub on a free loopback port on `runtime`, storing its data in
/// `data_dir`.
pub fn start(runtime: &tokio::runtime::Handle, data_dir: &Path) -> anyhow::Result<EmbeddedHub> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot open a local port for the hub")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let admin = crate::auth::new_token()?;
    let mut config = HubConfig::new(data_dir);
    config.admin_token = Some(admin.clone());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let listener = {
        let _guard = runtime.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    runtime.spawn(async move {
        let stop = async {
            let _ = stop_rx.await;
        };
        if let Err(err) = crate::run(config, listener, |_| Ok(()), stop).await {
            tracing::error!("embedded hub failed: {err:#}");
        }
    });
    tracing::info!(%addr, "started an embedded hub");
    Ok(EmbeddedHub { authority: addr.to_string(), admin, stop: Some(stop_tx) })
}
