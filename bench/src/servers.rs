//! The servers the comparison measures, started as real processes pinned
//! to their own core: `weft hub` (its plain y-websocket endpoint `/y/`),
//! y-sweet 0.9.1, `@y/websocket-server` 0.1.1, `@hocuspocus/server` 4.7.0,
//! and the no-CRDT relay floor (`weft-floor relay`). How to reach each is
//! documented in bench/peers/README.md; `scripts/bench-peers` installs the
//! peers.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};

use crate::procfs;

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Weft,
    /// Another `weft` binary (`WEFT_BASELINE_BIN`), e.g. an older commit,
    /// for before/after numbers in the same run.
    WeftBaseline,
    YSweet,
    YWebsocket,
    Hocuspocus,
    Relay,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Weft, Kind::YSweet, Kind::YWebsocket, Kind::Hocuspocus, Kind::Relay];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Weft => "weft",
            Kind::WeftBaseline => "weft (baseline)",
            Kind::YSweet => "y-sweet",
            Kind::YWebsocket => "y-websocket",
            Kind::Hocuspocus => "hocuspocus",
            Kind::Relay => "relay floor",
        }
    }

    pub fn parse(s: &str) -> anyhow::Result<Kind> {
        Ok(match s {
            "weft" => Kind::Weft,
            "weft-baseline" => Kind::WeftBaseline,
            "y-sweet" | "ysweet" => Kind::YSweet,
            "y-websocket" | "ywebsocket" => Kind::YWebsocket,
            "hocuspocus" => Kind::Hocuspocus,
            "relay" => Kind::Relay,
            other => bail!("unknown server {other:?}: expected weft, y-sweet, y-websocket, hocuspocus or relay"),
        })
    }
}

/// How a client talks to a document of a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dialect {
    /// y-websocket: one document per socket, y-protocols messages as is.
    Plain,
    /// Hocuspocus: every message prefixed with the document name; an auth
    /// message first.
    Hocuspocus { name: String },
    /// The relay floor: bytes are forwarded, nothing is answered.
    Relay,
}

/// Where one document (a "session" of a scenario) lives.
#[derive(Debug, Clone)]
pub struct Room {
    pub url: String,
    pub dialect: Dialect,
}

/// Paths the servers are started from.
#[derive(Debug, Clone)]
pub struct Paths {
    pub weft: PathBuf,
    pub weft_baseline: Option<PathBuf>,
    pub floor: PathBuf,
    pub peers: PathBuf,
    pub y_sweet: PathBuf,
    pub work: PathBuf,
}

impl Paths {
    /// Checks every server can be started; names the install step if not.
    pub fn check(&self, kinds: &[Kind]) -> anyhow::Result<()> {
        for kind in kinds {
            let (path, how) = match kind {
                Kind::Weft => (self.weft.clone(), "cargo build --release --bin weft"),
                Kind::WeftBaseline => match &self.weft_baseline {
                    Some(path) => (path.clone(), "point WEFT_BASELINE_BIN at a weft binary"),
                    None => bail!("--servers weft-baseline needs WEFT_BASELINE_BIN (another weft binary)"),
                },
                Kind::Relay => (self.floor.clone(), "cargo build --release -p weft-bench --bin weft-floor"),
                Kind::YSweet => (self.y_sweet.clone(), "bash scripts/bench-peers"),
                Kind::YWebsocket | Kind::Hocuspocus => (self.peers.join("node_modules"), "bash scripts/bench-peers"),
            };
            ensure!(path.exists(), "{} is missing for {}: run `{how}`", path.display(), kind.name());
        }
        Ok(())
    }
}

/// A running server. Killed (and reaped) on drop.
pub struct Server {
    pub kind: Kind,
    child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
    /// The weft hub's admin token.
    admin: String,
    dir: PathBuf,
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

impl Server {
    /// Starts `kind` pinned to `core`, waits until it is ready.
    pub fn start(kind: Kind, core: usize, paths: &Paths, round: usize) -> anyhow::Result<Server> {
        let dir = paths.work.join(format!("{}-{round}-{}", kind.name().replace(' ', "-"), std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let port = free_port()?;
        let mut cmd = Command::new("taskset");
        cmd.arg("-c").arg(core.to_string());
        match kind {
            Kind::Weft | Kind::WeftBaseline => {
                let bin =
                    if kind == Kind::Weft { &paths.weft } else { paths.weft_baseline.as_ref().unwrap_or(&paths.weft) };
                cmd.arg(bin).args(["hub", "--listen", &format!("127.0.0.1:{port}"), "--data"]).arg(dir.join("data"));
                // Scenarios open thousands of sockets from one address.
                cmd.args(["--max-connections-per-ip", "100000"]);
                cmd.env("WEFT_LOG", "warn").env_remove("WEFT_ADMIN_TOKEN");
            }
            Kind::Relay => {
                cmd.arg(&paths.floor).args(["relay", "--listen", &format!("127.0.0.1:{port}")]);
            }
            Kind::YSweet => {
                cmd.arg(&paths.y_sweet).args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()]);
            }
            Kind::YWebsocket => {
                cmd.arg("node").arg(paths.peers.join("y-websocket.mjs"));
                cmd.env("HOST", "127.0.0.1").env("PORT", port.to_string());
            }
            Kind::Hocuspocus => {
                cmd.arg("node").arg(paths.peers.join("hocuspocus.mjs"));
                cmd.env("HOST", "127.0.0.1").env("PORT", port.to_string());
            }
        }
        let log = std::fs::File::create(dir.join("stderr.log"))?;
        let mut child = cmd
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {}", kind.name()))?;
        let pid = child.id();
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                let _ = tx.send(std::mem::take(&mut line));
            }
        });
        let mut server =
            Server { kind, child, pid, addr: SocketAddr::from(([127, 0, 0, 1], port)), admin: String::new(), dir };
        // Ready: weft and the floor print a line; the others are polled.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut printed = false;
        loop {
            while let Ok(line) = rx.try_recv() {
                if let Some(addr) = line.trim().strip_prefix("weft hub listening on http://") {
                    server.addr = addr.parse().with_context(|| format!("address in {line:?}"))?;
                    printed = true;
                }
            }
            // A weft hub binds its port before it writes its admin token:
            // it is ready once it printed its address line.
            let weft = matches!(kind, Kind::Weft | Kind::WeftBaseline);
            let token_ready = !weft || server.dir.join("data").join("admin.token").exists() && printed;
            if token_ready && std::net::TcpStream::connect(server.addr).is_ok() {
                break;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                bail!("{} exited at start ({status}); its log:\n{}", kind.name(), server.log());
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "{} did not listen within 30 s:\n{}",
                kind.name(),
                server.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(kind, Kind::Weft | Kind::WeftBaseline) {
            let token = server.dir.join("data").join("admin.token");
            server.admin = std::fs::read_to_string(&token).context("reading admin.token")?.trim().to_owned();
        }
        Ok(server)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// Creates `n` documents (each a session of its own where the server
    /// has sessions) and returns where each is reached.
    pub async fn rooms(&self, n: usize, tag: &str) -> anyhow::Result<Vec<Room>> {
        let mut rooms = Vec::with_capacity(n);
        for i in 0..n {
            let name = format!("{tag}-{i}");
            let room = match self.kind {
                Kind::Weft | Kind::WeftBaseline => {
                    let body = serde_json::json!({ "name": name }).to_string();
                    let (status, created) =
                        weft_tests::http(self.addr, "POST", "/api/sessions", Some(&self.admin), &[], Some(&body))
                            .await?;
                    ensure!(status == 201, "creating a weft session: {status} {created}");
                    let id = created["id"].as_str().context("session id")?;
                    Room { url: format!("ws://{}/y/{id}/doc?token={}", self.addr, self.admin), dialect: Dialect::Plain }
                }
                Kind::YSweet => {
                    let body = serde_json::json!({ "docId": name }).to_string();
                    let (status, created) =
                        weft_tests::http(self.addr, "POST", "/doc/new", None, &[], Some(&body)).await?;
                    ensure!((200..300).contains(&status), "creating a y-sweet doc: {status} {created}");
                    Room { url: format!("ws://{}/d/{name}/ws/{name}", self.addr), dialect: Dialect::Plain }
                }
                Kind::YWebsocket => Room { url: format!("ws://{}/{name}", self.addr), dialect: Dialect::Plain },
                Kind::Hocuspocus => Room { url: format!("ws://{}/", self.addr), dialect: Dialect::Hocuspocus { name } },
                Kind::Relay => Room { url: format!("ws://{}/{name}", self.addr), dialect: Dialect::Relay },
            };
            rooms.push(room);
        }
        Ok(rooms)
    }

    /// CPU time the server has used so far.
    pub fn cpu(&self) -> Duration {
        procfs::process_cpu(self.pid).unwrap_or_default()
    }

    /// Current and peak resident memory, KiB.
    pub fn rss_kib(&self) -> (u64, u64) {
        (procfs::vm_rss_kib(self.pid).unwrap_or(0), procfs::vm_hwm_kib(self.pid).unwrap_or(0))
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Pins this process (every thread it has and will have) to `core`.
pub fn pin_self(core: usize) -> anyhow::Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", &core.to_string(), &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status()
        .context("running taskset")?;
    ensure!(status.success(), "taskset failed");
    Ok(())
}

/// `bench/peers` and the y-sweet binary relative to the workspace root.
pub fn default_paths(root: &Path, weft: &Path) -> Paths {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    Paths {
        weft: weft.to_owned(),
        weft_baseline: std::env::var_os("WEFT_BASELINE_BIN").map(PathBuf::from),
        floor: target.join("release").join("weft-floor"),
        peers: root.join("bench").join("peers"),
        y_sweet: target.join("peers").join("bin").join("y-sweet"),
        work: std::env::temp_dir().join("weft-compare"),
    }
}
