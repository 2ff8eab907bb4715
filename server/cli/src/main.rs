//! The `weft` binary: parses the command line, sets up logging, and runs
//! one subcommand. All behaviour lives in the library crates; this file
//! only wires them to flags, environment variables, signals and stdout.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use weft_workspace::mirror::{MirrorCommand, MirrorEvent};

/// weft: edit the same code at the same time, each from your own editor.
#[derive(Debug, Parser)]
#[command(name = "weft", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a hub: the server that authenticates peers, relays and stores
    /// every edit (SQLite in --data), and serves the REST API, the weft
    /// WebSocket protocol (/ws/SESSION) and plain y-websocket (/y/SESSION/DOC).
    ///
    /// Its first line on stdout is `weft hub listening on http://HOST:PORT`
    /// (`https://` with --tls-cert/--tls-key). Without TLS it listens only
    /// on loopback addresses, unless --insecure is given.
    /// On first start it writes an admin token to DATA/admin.token (mode
    /// 0600) unless WEFT_ADMIN_TOKEN is set. Stop it with Ctrl-C or SIGTERM:
    /// peers are told, and every acknowledged edit is already on disk.
    Hub(HubArgs),
    /// Run the editor bridge: a language server on stdio that mirrors the
    /// editor's buffers into a shared session (weft/share, weft/join) and
    /// brings other people's edits back as workspace/applyEdit.
    ///
    /// Editors start it themselves. Nothing but JSON-RPC goes to stdout;
    /// logs go to --log-file (or stderr), filtered by WEFT_LOG.
    Lsp(LspArgs),
    /// Share a directory from a terminal: every text file under DIR (minus
    /// .gitignore/.weftignore'd ones, .git/, target/, node_modules/) becomes
    /// part of a new session, kept in sync both ways until Ctrl-C.
    ///
    /// Its first two lines on stdout are exactly `editor: LINK` and
    /// `viewer: LINK`. Without --hub (or WEFT_HUB) it starts an embedded hub
    /// on 127.0.0.1 with its data in DIR/.weft/hub.
    Share(ShareArgs),
    /// Join a session with a link and mirror it into DIR, both ways, until
    /// Ctrl-C. Prints `joined SESSION as ROLE` once the tree is in place.
    ///
    /// A local file that differs from the shared one is kept and not
    /// synced (you are told) unless --overwrite is given.
    Join(JoinArgs),
    /// List the public sessions of a hub (name, participants, id); joining
    /// one still needs the viewer link its owner publishes with it.
    Sessions(SessionsArgs),
    /// Print a session's audit log: joins and leaves, denied attempts (with
    /// the reason), role and link changes, and per-peer edit summaries.
    /// Needs an owner's token (or an owner link).
    Audit(AuditArgs),
}

#[derive(Debug, clap::Args)]
struct SessionsArgs {
    /// The hub (wss://HOST:PORT, or ws://HOST:PORT on this machine).
    #[arg(long, env = "WEFT_HUB", default_value = "ws://127.0.0.1:7420")]
    hub: String,
    #[command(flatten)]
    tls: ClientTlsArgs,
}

#[derive(Debug, clap::Args)]
struct AuditArgs {
    /// An owner link (weft://HOST:PORT/s/SESSION#TOKEN), or a session id
    /// with --hub and --token.
    session: String,
    /// The hub, when SESSION is an id.
    #[arg(long, env = "WEFT_HUB", default_value = "ws://127.0.0.1:7420")]
    hub: String,
    /// An owner's token (or the admin token), when SESSION is an id.
    #[arg(long, env = "WEFT_HUB_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print events after this cursor (the first column of a previous run).
    #[arg(long, default_value_t = 0)]
    after: i64,
    /// Print at most this many events.
    #[arg(long, default_value_t = 1000)]
    limit: usize,
    #[command(flatten)]
    tls: ClientTlsArgs,
}

#[derive(Debug, clap::Args)]
struct ShareArgs {
    /// The directory to share.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Hub to share on (wss://HOST:PORT, or ws://HOST:PORT on this machine);
    /// without it an embedded hub is started.
    #[arg(long, env = "WEFT_HUB")]
    hub: Option<String>,
    /// Token allowed to create sessions on --hub (its admin token).
    #[arg(long = "hub-token", env = "WEFT_HUB_TOKEN", hide_env_values = true)]
    hub_token: Option<String>,
    /// Start the session from one of the hub's templates (its links, and its
    /// ignore patterns on top of .gitignore/.weftignore).
    #[arg(long, env = "WEFT_TEMPLATE")]
    template: Option<String>,
    #[command(flatten)]
    tls: ClientTlsArgs,
    /// Display name shown to others.
    #[arg(long, env = "WEFT_NAME", default_value = "weft share")]
    name: String,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "WEFT_LOG", default_value = "warn")]
    log: String,
}

#[derive(Debug, clap::Args)]
struct JoinArgs {
    /// A link: weft://HOST:PORT/s/SESSION#TOKEN (weft+tls:// for a TLS hub).
    link: String,
    /// Where to mirror the session (created if missing).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// The link's password, if it has one.
    #[arg(long, env = "WEFT_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Replace local files that differ from the shared ones.
    #[arg(long)]
    overwrite: bool,
    #[command(flatten)]
    tls: ClientTlsArgs,
    /// Display name shown to others.
    #[arg(long, env = "WEFT_NAME", default_value = "weft join")]
    name: String,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "WEFT_LOG", default_value = "warn")]
    log: String,
}

#[derive(Debug, clap::Args)]
struct LspArgs {
    /// Write logs to this file instead of stderr.
    #[arg(long)]
    log_file: Option<PathBuf>,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "WEFT_LOG", default_value = "info")]
    log: String,
    /// Display name shown to others when the editor sends none in
    /// initializationOptions.name (default: git's user.name, else the OS user).
    #[arg(long, env = "WEFT_NAME")]
    name: Option<String>,
    /// Hub to share on (wss://HOST:PORT, or ws://HOST:PORT on this machine);
    /// without it, sharing starts an embedded hub.
    #[arg(long, env = "WEFT_HUB")]
    hub: Option<String>,
    /// Token allowed to create sessions on --hub (its admin token).
    #[arg(long = "hub-token", env = "WEFT_HUB_TOKEN", hide_env_values = true)]
    hub_token: Option<String>,
    #[command(flatten)]
    tls: ClientTlsArgs,
}

/// How a client reaches hubs (`weft share`, `weft join`, `weft lsp`).
#[derive(Debug, clap::Args)]
struct ClientTlsArgs {
    /// PEM file of CA certificates to trust besides the system's, for a hub
    /// with a self-signed certificate or a private CA.
    #[arg(long, env = "WEFT_CA", value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Allow plain ws:// and http:// to a hub that is not on this machine
    /// (tokens and edits then cross the network unencrypted).
    #[arg(long, env = "WEFT_INSECURE", value_parser = clap::builder::BoolishValueParser::new())]
    insecure: bool,
}

impl ClientTlsArgs {
    /// The trust settings, with the CA file loaded (a bad file stops here).
    fn client_tls(&self) -> anyhow::Result<weft_client::tls::ClientTls> {
        weft_client::tls::ClientTls::new(&self.options())
    }

    fn options(&self) -> weft_client::tls::TlsOptions {
        weft_client::tls::TlsOptions { ca: self.ca.clone(), insecure: self.insecure }
    }
}

#[derive(Debug, clap::Args)]
struct HubArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "WEFT_LISTEN", default_value = "127.0.0.1:7420")]
    listen: SocketAddr,
    /// Directory for the database (hub.db) and the admin token.
    #[arg(long, env = "WEFT_DATA", default_value = "./.weft-hub")]
    data: PathBuf,
    /// Admin token (instead of DATA/admin.token).
    #[arg(long = "admin-token", env = "WEFT_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Base of share-link URLs, e.g. weft+tls://hub.example.com:7420
    /// (default: the bound address, weft+tls:// with TLS, else weft://).
    #[arg(long, env = "WEFT_PUBLIC_URL")]
    public_url: Option<String>,
    /// Serve HTTPS and WSS with this PEM certificate chain (needs --tls-key).
    #[arg(long = "tls-cert", env = "WEFT_TLS_CERT", value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long = "tls-key", env = "WEFT_TLS_KEY", value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve plain HTTP on an address that is not loopback (behind a
    /// TLS-terminating proxy, or on a trusted network).
    #[arg(long, env = "WEFT_INSECURE", value_parser = clap::builder::BoolishValueParser::new())]
    insecure: bool,
    /// Largest WebSocket message accepted, in bytes.
    #[arg(long, env = "WEFT_MAX_FRAME_BYTES", default_value_t = weft_hub::config::DEFAULT_MAX_FRAME_BYTES)]
    max_frame_bytes: usize,
    /// Most documents one session may hold.
    #[arg(long, env = "WEFT_MAX_DOCS_PER_SESSION", default_value_t = weft_hub::config::DEFAULT_MAX_DOCS_PER_SESSION)]
    max_docs_per_session: usize,
    /// Logged updates per document before a snapshot replaces the log.
    #[arg(long, env = "WEFT_COMPACT_AFTER", default_value_t = weft_hub::config::DEFAULT_COMPACT_AFTER)]
    compact_after: usize,
    /// Frames queued for one peer before it is disconnected as overloaded.
    #[arg(long, env = "WEFT_PEER_QUEUE", default_value_t = weft_hub::config::DEFAULT_PEER_QUEUE)]
    peer_queue: usize,
    /// Sustained frames a second one peer may send (it is slowed above it, never cut off).
    #[arg(long, env = "WEFT_RATE_FRAMES", default_value_t = weft_hub::config::DEFAULT_RATE_FRAMES)]
    rate_frames: f64,
    /// Frames one peer may send in a burst above the sustained rate.
    #[arg(long, env = "WEFT_BURST_FRAMES", default_value_t = weft_hub::config::DEFAULT_BURST_FRAMES)]
    burst_frames: f64,
    /// Sustained bytes a second one peer may send.
    #[arg(long, env = "WEFT_RATE_BYTES", default_value_t = weft_hub::config::DEFAULT_RATE_BYTES)]
    rate_bytes: f64,
    /// Bytes one peer may send in a burst above the sustained rate.
    #[arg(long, env = "WEFT_BURST_BYTES", default_value_t = weft_hub::config::DEFAULT_BURST_BYTES)]
    burst_bytes: f64,
    /// Session templates: a JSON file {"templates": {NAME: {"public", "links":
    /// [{"role", "expires_in_s", "max_uses"}], "ignore": [PATTERN]}}} that
    /// POST /api/sessions (and weft share --template) can start from.
    #[arg(long, env = "WEFT_TEMPLATES", value_name = "FILE")]
    templates: Option<PathBuf>,
    /// Live sessions one owner may hold (sessions are created with the admin
    /// token, so this caps the hub's sessions).
    #[arg(long, env = "WEFT_MAX_SESSIONS_PER_OWNER", default_value_t = weft_hub::config::DEFAULT_MAX_SESSIONS_PER_OWNER)]
    max_sessions_per_owner: usize,
    /// Open WebSocket connections allowed from one IP address.
    #[arg(long, env = "WEFT_MAX_CONNECTIONS_PER_IP", default_value_t = weft_hub::config::DEFAULT_MAX_CONNECTIONS_PER_IP)]
    max_connections_per_ip: usize,
    /// Failed sign-ins an address or a link may make before the back-off starts.
    #[arg(long, env = "WEFT_AUTH_FREE_FAILURES", default_value_t = weft_hub::config::DEFAULT_AUTH_FREE_FAILURES)]
    auth_free_failures: u32,
    /// Longest wait, in seconds, imposed after repeated failed sign-ins from
    /// one address or for one link (the wait doubles with each failure).
    #[arg(long, env = "WEFT_AUTH_BACKOFF_MAX", default_value_t = weft_hub::config::DEFAULT_AUTH_BACKOFF_MAX.as_secs_f64())]
    auth_backoff_max: f64,
    /// Encrypt stored documents with the 32-byte key in KEYFILE (raw, hex or
    /// base64); the file is created (mode 0600) with a random key if missing.
    #[arg(long = "encrypt-at-rest", env = "WEFT_ENCRYPT_AT_REST", value_name = "KEYFILE")]
    encrypt_at_rest: Option<PathBuf>,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `weft_hub=debug`.
    #[arg(long, env = "WEFT_LOG", default_value = "info")]
    log: String,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // weft's own TLS code names the ring provider itself; installing it as
    // the process default too covers any library path that asks for the
    // default. It fails only if one is installed already, which is as good.
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Hub(args) => run_hub(args),
        Command::Lsp(args) => run_lsp(args),
        Command::Share(args) => run_share(args),
        Command::Join(args) => run_join(args),
        Command::Sessions(args) => run_sessions(args),
        Command::Audit(args) => run_audit(args),
    }
}

/// Prints one line to stdout and flushes it (scripts parse these lines).
fn say(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").context("writing to stdout")?;
    out.flush().context("writing to stdout")
}

/// The mirror's command channel, told to stop by Ctrl-C or SIGTERM.
fn stop_on_signal(runtime: &tokio::runtime::Runtime) -> crossbeam_channel::Receiver<MirrorCommand> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    runtime.spawn(async move {
        shutdown_signal().await;
        let _ = tx.send(MirrorCommand::Stop);
    });
    rx
}

/// A one-line progress bar on stderr while a tree is first transferred;
/// only on a terminal (logs and pipes get the final line alone).
struct ProgressBar {
    verb: &'static str,
    shown: std::cell::Cell<bool>,
}

impl ProgressBar {
    fn new(verb: &'static str) -> ProgressBar {
        ProgressBar { verb, shown: std::cell::Cell::new(false) }
    }

    fn update(&self, done: usize, total: usize) {
        use std::io::IsTerminal as _;
        let mut err = std::io::stderr().lock();
        if !err.is_terminal() || total == 0 {
            return;
        }
        const WIDTH: usize = 30;
        let filled = (done * WIDTH).checked_div(total).unwrap_or(0).min(WIDTH);
        let bar = format!("{}{}", "#".repeat(filled), ".".repeat(WIDTH - filled));
        let _ = write!(err, "\r{} [{bar}] {done}/{total} files", self.verb);
        let _ = err.flush();
        self.shown.set(true);
    }

    /// Ends the bar's line so the next message starts on its own.
    fn finish(&self) {
        if self.shown.replace(false) {
            eprintln!();
        }
    }
}

fn mirror_report(event: MirrorEvent, bar: &ProgressBar, on_ready: &dyn Fn(usize)) {
    match event {
        MirrorEvent::Progress { done, total } => bar.update(done, total),
        MirrorEvent::Ready { files } => {
            bar.finish();
            on_ready(files);
        }
        MirrorEvent::Kept { path } => {
            bar.finish();
            eprintln!("kept your {path}: it differs from the shared one and is not synced (--overwrite replaces it)");
        }
        MirrorEvent::Unwritable { path, reason } => {
            bar.finish();
            eprintln!("cannot write the shared file {path} here ({reason}); it is not synced on this side");
        }
        MirrorEvent::Offline(reason) => {
            bar.finish();
            eprintln!("offline ({reason}); reconnecting, your edits are kept");
        }
        MirrorEvent::Refused(reason) => {
            bar.finish();
            eprintln!("the hub refused this session: {reason}");
        }
        MirrorEvent::Connected(_) => {}
    }
}

fn run_share(args: ShareArgs) -> anyhow::Result<()> {
    init_logging(&args.log)?;
    let root =
        args.dir.canonicalize().with_context(|| format!("cannot share {}: no such directory", args.dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    let tls = args.tls.client_tls()?;
    let (hub, admin, _embedded) = match &args.hub {
        Some(hub) => {
            let token = args
                .hub_token
                .clone()
                .context("sharing on a hub needs its token: set WEFT_HUB_TOKEN (or omit --hub)")?;
            let hub = weft_client::link::HubAddr::parse(hub)?;
            tls.check(&hub)?;
            (hub, token, None)
        }
        None => {
            let hub = weft_hub::embedded::start(runtime.handle(), &root.join(".weft").join("hub"))?;
            (weft_client::link::HubAddr::plain(hub.authority.clone()), hub.admin.clone(), Some(hub))
        }
    };
    let name = root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "weft session".into());
    let shared =
        runtime.block_on(weft_client::hub_api::create_shared_session(&hub, &tls, &admin, name, args.template))?;
    let config = weft_workspace::mirror::MirrorConfig {
        root,
        side: weft_workspace::mirror::Side::Host,
        url: hub.ws_url(&shared.created.id.0),
        tls,
        token: shared.created.owner.token.clone(),
        password: None,
        name: args.name,
        overwrite: false,
        ignore: shared.created.ignore.clone(),
    };
    let stop = stop_on_signal(&runtime);
    let mirror = weft_workspace::mirror::Mirror::start(config, runtime.handle())?;
    // The links are printed once the whole tree is durable on the hub, so
    // whoever uses them at once finds everything.
    let (editor, viewer) = (shared.editor.url, shared.viewer.url);
    let bar = ProgressBar::new("sharing");
    mirror.run(&stop, |e| {
        mirror_report(e, &bar, &|files| {
            let printed = say(&format!("editor: {editor}")).and_then(|()| say(&format!("viewer: {viewer}")));
            if let Err(err) = printed {
                tracing::error!("{err:#}");
            }
            eprintln!("sharing {files} files");
        })
    })
}

fn run_join(args: JoinArgs) -> anyhow::Result<()> {
    init_logging(&args.log)?;
    let link = weft_client::link::Link::parse(&args.link)?;
    let tls = args.tls.client_tls()?;
    tls.check(&link.hub)?;
    std::fs::create_dir_all(&args.dir).with_context(|| format!("cannot create {}", args.dir.display()))?;
    let root = args.dir.canonicalize()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    let config = weft_workspace::mirror::MirrorConfig {
        root,
        side: weft_workspace::mirror::Side::Guest,
        url: link.ws_url(),
        tls,
        token: link.token.clone(),
        password: args.password,
        name: args.name,
        overwrite: args.overwrite,
        ignore: Vec::new(),
    };
    let stop = stop_on_signal(&runtime);
    let mirror = weft_workspace::mirror::Mirror::start(config, runtime.handle())?;
    let role = std::sync::Mutex::new(None);
    let session = link.session.clone();
    let bar = ProgressBar::new("joining");
    mirror.run(&stop, |event| {
        if let weft_workspace::mirror::MirrorEvent::Connected(r) = &event
            && let Ok(mut role) = role.lock()
        {
            *role = Some(*r);
        }
        mirror_report(event, &bar, &|_files| {
            let role = role.lock().ok().and_then(|r| *r).map(|r| r.to_string()).unwrap_or_default();
            let _ = say(&format!("joined {session} as {role}"));
        });
    })
}

fn run_sessions(args: SessionsArgs) -> anyhow::Result<()> {
    let hub = weft_client::link::HubAddr::parse(&args.hub)?;
    let tls = args.tls.client_tls()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    let list: weft_protocol::rest::SessionList = runtime.block_on(weft_client::hub_api::call(
        &hub,
        &tls,
        "GET",
        "/api/sessions?public=true",
        "",
        None::<&()>,
    ))?;
    if list.sessions.is_empty() {
        eprintln!("no public sessions on {}", args.hub);
    }
    for s in list.sessions {
        say(&format!(
            "{}\t{}\t{} participants\t{} files",
            s.id,
            s.name,
            s.participants,
            s.docs.len().saturating_sub(1)
        ))?;
    }
    Ok(())
}

fn run_audit(args: AuditArgs) -> anyhow::Result<()> {
    let (hub, session, token) = if args.session.contains("://") {
        let link = weft_client::link::Link::parse(&args.session)?;
        (link.hub.clone(), link.session.clone(), link.token.clone())
    } else {
        let token = args.token.clone().context("an owner's token is needed: pass --token (or give an owner link)")?;
        (weft_client::link::HubAddr::parse(&args.hub)?, args.session.clone(), token)
    };
    let tls = args.tls.client_tls()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    let (mut after, mut left) = (args.after, args.limit);
    while left > 0 {
        let path = format!("/api/sessions/{session}/events?after={after}&limit={}", left.min(1000));
        let page: weft_protocol::rest::EventPage =
            runtime.block_on(weft_client::hub_api::call(&hub, &tls, "GET", &path, &token, None::<&()>))?;
        if page.events.is_empty() {
            break;
        }
        for e in &page.events {
            let secs = e.at_ms.div_euclid(1000);
            say(&format!("{}\t{}.{:03}\t{}\t{}", e.id, secs, e.at_ms.rem_euclid(1000), e.kind, e.detail))?;
        }
        left = left.saturating_sub(page.events.len());
        after = page.next;
    }
    Ok(())
}

fn run_lsp(args: LspArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&args.log).with_context(|| format!("invalid log filter {:?}", args.log))?;
    // stdout belongs to JSON-RPC: logs go to the file or to stderr.
    match &args.log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open the log file {}", path.display()))?;
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
        }
        // Editors capture stderr into log panes: no colour codes.
        None => tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_writer(std::io::stderr).init(),
    }
    let config =
        weft_lsp::BridgeConfig { name: args.name, hub: args.hub, hub_token: args.hub_token, tls: args.tls.options() };
    // LSP: exit code 0 only if `shutdown` came before `exit`.
    if !weft_lsp::run_stdio(config)? {
        std::process::exit(1);
    }
    Ok(())
}

fn init_logging(filter: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(filter).with_context(|| format!("invalid log filter {filter:?}"))?;
    // Logs go to stderr: stdout carries the machine-readable first line.
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    Ok(())
}

fn run_hub(args: HubArgs) -> anyhow::Result<()> {
    init_logging(&args.log)?;
    let mut config = weft_hub::HubConfig::new(&args.data);
    config.admin_token = args.admin_token;
    config.public_url = args.public_url;
    config.tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(weft_hub::tls::TlsFiles { cert, key }),
        _ => None,
    };
    config.insecure = args.insecure;
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    config.max_frame_bytes = args.max_frame_bytes;
    config.max_docs_per_session = args.max_docs_per_session;
    config.compact_after = args.compact_after;
    config.peer_queue = args.peer_queue;
    config.rate = weft_hub::limits::RateLimit {
        frames_per_s: args.rate_frames,
        burst_frames: args.burst_frames,
        bytes_per_s: args.rate_bytes,
        burst_bytes: args.burst_bytes,
    };
    config.max_connections_per_ip = args.max_connections_per_ip;
    config.max_sessions_per_owner = args.max_sessions_per_owner;
    if let Some(path) = &args.templates {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the session templates {}", path.display()))?;
        let file: weft_hub::config::TemplateFile = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a valid templates file: {{\"templates\": {{NAME: {{\"links\": [...], ...}}}}}}",
                path.display()
            )
        })?;
        config.templates = file.templates;
    }
    config.auth_free_failures = args.auth_free_failures;
    config.auth_backoff_max = std::time::Duration::try_from_secs_f64(args.auth_backoff_max)
        .map_err(|_| anyhow::anyhow!("--auth-backoff-max must be a number of seconds, 0 or more"))?;
    config.encrypt_at_rest = args.encrypt_at_rest.filter(|path| !path.as_os_str().is_empty());
    config.validate().map_err(anyhow::Error::msg).context("invalid hub configuration")?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen).await.with_context(|| {
            format!("cannot listen on {}: is another hub running there? try --listen 127.0.0.1:0", args.listen)
        })?;
        let data = args.data.clone();
        let on_ready = move |addr: SocketAddr| -> anyhow::Result<()> {
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "weft hub listening on {scheme}://{addr}").context("writing to stdout")?;
            stdout.flush().context("writing to stdout")?;
            tracing::info!(%addr, data = %data.display(), "hub started");
            Ok(())
        };
        weft_hub::run(config, listener, on_ready, shutdown_signal()).await
    })
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
