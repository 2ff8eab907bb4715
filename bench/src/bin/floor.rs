//! `weft-floor`: the two "floor" servers weft's hub is compared with in
//! `weft-bench compare` (see bench/peers/README.md).
//!
//! * `weft-floor relay --listen ADDR`: a WebSocket broadcast relay. A client
//!   joins the room named by its URL path (`/ROOM`); every binary message it
//!   sends goes, unchanged, to every *other* client of that room. It knows
//!   nothing of Yjs: no CRDT, no history, no handshake, no storage. It is
//!   what any collaboration server costs at least.
//! * `weft-floor tcp-echo --listen ADDR`: raw TCP echo, for the round-trip
//!   floor of the loopback interface itself.
//! * `weft-floor pipe-in URL` and `weft-floor pipe-out URL`: the bridge
//!   floor of `weft-bench trace-replay`'s keystroke path. `pipe-in` sends
//!   what it reads on stdin, each read as one binary message, to a relay
//!   room (`ws://HOST:PORT/ROOM`); `pipe-out` writes every binary message
//!   of that room to stdout. One thread each, blocking I/O, no parsing: an
//!   editor → pipe → WebSocket → relay → WebSocket → pipe → editor path with
//!   the same process and socket hops as weft's, and nothing else.
//!
//! Both print `listening on PORT` (the bound port, also for port 0) on stdout
//! once ready, print nothing per connection, and exit 0 on SIGTERM or SIGINT.
//! Deliberately not here: limits, authentication, logging, metrics.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Bytes, Message};

/// Messages a relay client may have waiting to be written. A client whose
/// queue is full when a message for it arrives is disconnected (close 1008)
/// rather than holding up the sender or the rest of its room.
const QUEUE: usize = 1024;

const USAGE: &str = "usage: weft-floor relay|tcp-echo [--listen ADDR]   (ADDR defaults to 127.0.0.1:0)
       weft-floor pipe-in|pipe-out ws://HOST:PORT/ROOM";

/// What to run, from the command line.
struct Args {
    mode: Mode,
    listen: SocketAddr,
}

enum Mode {
    Relay,
    TcpEcho,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = std::env::args().skip(1);
    let mode = match args.next().as_deref() {
        Some("relay") => Mode::Relay,
        Some("tcp-echo") => Mode::TcpEcho,
        Some(other) => bail!("unknown mode {other:?}\n{USAGE}"),
        None => bail!("{USAGE}"),
    };
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 0));
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                let value = args.next().context("--listen needs an address")?;
                listen =
                    value.parse().with_context(|| format!("--listen {value:?}: not an address like 127.0.0.1:7000"))?;
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(Args { mode, listen })
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let result = match (args.next().as_deref(), args.next()) {
        (Some("pipe-in"), Some(url)) => pipe(&url, true),
        (Some("pipe-out"), Some(url)) => pipe(&url, false),
        _ => run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("weft-floor: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run() -> anyhow::Result<()> {
    let args = parse_args()?;
    let listener = TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let port = listener.local_addr().context("reading the bound address")?.port();
    // The ready line the load generator and smoke.mjs wait for.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {port}").context("writing the ready line")?;
    stdout.flush().context("flushing the ready line")?;
    drop(stdout);

    let shutdown = shutdown_signal()?;
    match args.mode {
        Mode::Relay => serve(listener, shutdown, relay_connection, Rooms::default()).await,
        Mode::TcpEcho => serve(listener, shutdown, echo_connection, ()).await,
    }
}

/// `pipe-in` (`inbound`: stdin → room) or `pipe-out` (room → stdout);
/// returns when its input ends.
fn pipe(url: &str, inbound: bool) -> anyhow::Result<()> {
    use std::io::Read as _;
    use tokio_tungstenite::tungstenite::{self, Error};
    let addr = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .with_context(|| format!("{url:?} is not a ws://HOST:PORT/ROOM URL"))?;
    let stream = std::net::TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true).context("TCP_NODELAY")?;
    let (mut ws, _) =
        tungstenite::client::client(url, stream).map_err(|e| anyhow::anyhow!("handshake with {url}: {e}"))?;
    if inbound {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = stdin.read(&mut buf).context("reading stdin")?;
            if n == 0 {
                let _ = ws.close(None);
                return Ok(());
            }
            ws.send(Message::Binary(Bytes::copy_from_slice(&buf[..n]))).context("sending")?;
        }
    }
    let mut stdout = std::io::stdout().lock();
    loop {
        match ws.read() {
            Ok(Message::Binary(bytes)) => {
                stdout.write_all(&bytes).and_then(|()| stdout.flush()).context("writing stdout")?;
            }
            Ok(Message::Close(_)) | Err(Error::ConnectionClosed | Error::AlreadyClosed) => return Ok(()),
            Ok(_) => {}
            Err(e) => bail!("reading from {url}: {e}"),
        }
    }
}

/// Resolves on the first SIGTERM or SIGINT.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

/// Accepts connections until `shutdown`, one task each. Open connections
/// are not drained: the process exits, which closes their sockets.
async fn serve<S, F>(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    handle: fn(TcpStream, S) -> F,
    state: S,
) -> anyhow::Result<()>
where
    S: Clone + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Small frames are the point of the benchmark: never wait
                    // for Nagle. Failing to set it only costs latency.
                    if let Err(error) = stream.set_nodelay(true) {
                        eprintln!("weft-floor: TCP_NODELAY: {error}");
                    }
                    tokio::spawn(handle(stream, state.clone()));
                }
                // Out of file descriptors and the like: keep serving the
                // connections we have; the next accept may succeed.
                Err(error) => eprintln!("weft-floor: accept: {error}"),
            },
        }
    }
}

// ---------------------------------------------------------------- tcp-echo

async fn echo_connection(mut stream: TcpStream, (): ()) {
    let (mut reader, mut writer) = stream.split();
    // Ends when the peer closes (Ok) or the connection breaks (Err): either
    // way there is nothing left to do.
    if let Err(error) = tokio::io::copy(&mut reader, &mut writer).await
        && !matches!(error.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe)
    {
        eprintln!("weft-floor: echo: {error}");
    }
}

// ---------------------------------------------------------------- relay

/// Room name → client id → that client's queue.
type RoomMap = HashMap<String, HashMap<u64, mpsc::Sender<Bytes>>>;

/// Every room's clients. The lock is held only to look up or change the map
/// and to `try_send`, never across an `.await`.
#[derive(Clone, Default)]
struct Rooms {
    map: Arc<Mutex<RoomMap>>,
    next_id: Arc<AtomicU64>,
}

impl Rooms {
    fn lock(&self) -> std::sync::MutexGuard<'_, RoomMap> {
        // A panic elsewhere cannot leave the map half-changed (every change
        // is one insert or remove), so a poisoned lock is still usable.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn join(&self, room: &str, queue: mpsc::Sender<Bytes>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().entry(room.to_owned()).or_default().insert(id, queue);
        id
    }

    fn leave(&self, room: &str, id: u64) {
        let mut rooms = self.lock();
        if let Some(clients) = rooms.get_mut(room) {
            clients.remove(&id);
            if clients.is_empty() {
                rooms.remove(room);
            }
        }
    }

    /// Queues `bytes` for every client of `room` but `from`. A client whose
    /// queue is full (or whose writer is gone) leaves the room: dropping its
    /// queue's last sender makes its writer close the socket.
    fn forward(&self, room: &str, from: u64, bytes: &Bytes) {
        let mut rooms = self.lock();
        let Some(clients) = rooms.get_mut(room) else { return };
        clients.retain(|&id, queue| id == from || queue.try_send(bytes.clone()).is_ok());
    }
}

/// The room a request names: its path without the leading `/` and without
/// the query.
fn room_of(request: &Request) -> String {
    request.uri().path().trim_start_matches('/').to_owned()
}

async fn relay_connection(stream: TcpStream, rooms: Rooms) {
    let mut room = String::new();
    #[expect(
        clippy::result_large_err,
        reason = "the error type is tungstenite's Callback signature; this callback never fails"
    )]
    let callback = |request: &Request, response: Response| {
        room = room_of(request);
        Ok(response)
    };
    let socket = match tokio_tungstenite::accept_hdr_async(stream, callback).await {
        Ok(socket) => socket,
        // Not a WebSocket client (a port probe, a plain HTTP request).
        Err(_) => return,
    };
    let (mut sink, mut stream) = socket.split();
    let (queue, mut outbox) = mpsc::channel::<Bytes>(QUEUE);
    let id = rooms.join(&room, queue);

    // The writer: everything queued for this client, flushed once per batch.
    // Its queue ends when the client left the room, by disconnecting (below)
    // or by falling QUEUE messages behind (`Rooms::forward`).
    let writer = tokio::spawn(async move {
        while let Some(first) = outbox.recv().await {
            let mut batch = Some(first);
            while let Some(bytes) = batch.take().or_else(|| outbox.try_recv().ok()) {
                if sink.feed(Message::Binary(bytes)).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
        // Evicted as too slow, or the reader is done: say so if the socket
        // still takes it; if it does not, the client is gone anyway.
        let frame = CloseFrame { code: CloseCode::Policy, reason: "too slow or gone".into() };
        if sink.send(Message::Close(Some(frame))).await.is_ok() {
            sink.close().await.ok();
        }
    });

    // The reader: binary messages are forwarded; pings are answered by
    // tungstenite itself; text frames are ignored.
    while let Some(Ok(message)) = stream.next().await {
        match message {
            Message::Binary(bytes) => rooms.forward(&room, id, &bytes),
            Message::Close(_) => break,
            Message::Text(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
    rooms.leave(&room, id);
    writer.await.ok();
}
