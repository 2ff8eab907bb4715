//! The workspace mirror (`weft share` / `weft join`) against hostile peers
//! and bad input, end to end with the real `weft` binary and a real hub.
//!
//! * A peer with an editor link writes hostile entries into the `files`
//!   map of `_session` (paths that escape the root, absolute paths, names
//!   with NUL or 300 bytes, paths into `.git`/`.weft`/`node_modules`/
//!   `target`, a path through a symlink planted in the root, a text entry
//!   where a directory is, unknown kinds, malformed values) while a host
//!   and a guest mirror the session: nothing may be written outside either
//!   root or into the protected directories, no local secret may leak, and
//!   both mirrors must keep working.
//! * A guest that joins after such entries are in the session must still
//!   join (print `joined`) and stay safe.
//! * A host sharing a directory with symlinks out of it, a FIFO, binary
//!   and invalid UTF-8 files and awkward names: no secret leaves, names
//!   arrive byte for byte.
//! * A file with a long name that the file system allows still reaches
//!   the guest.
//! * A viewer-link guest's local edits and new files never reach anyone.
//!
//! Absence is only asserted after a later legitimate change has arrived
//! (the mirror handles the session and files in order, so it has got past
//! the hostile input), plus a short settle wait.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use weft_tests::{HubProcess, WeftPeer, WeftProcess, YPeer, wait_until};
use yrs::encoding::read::Cursor;
use yrs::sync::{Message, MessageReader, SyncMessage};
use yrs::types::ToJson;
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::Encode;
use yrs::{Any, Doc, GetString, Map, MapRef, ReadTxn, TextRef, Transact, TransactionMut, Update};

/// Deadline for a legitimate change to show up: it normally takes under
/// 2 s (150 ms ticks, 1.5 s rescans); the rest is room for a loaded
/// 2-core machine running hub, host, guest and the test at once.
const T: Duration = Duration::from_secs(60);

/// Deadline for `weft join` to print `joined` on a tree of a handful of
/// files: normally well under a second. A join that has not printed it by
/// then is stuck, not slow.
const JOIN_T: Duration = Duration::from_secs(20);

/// After a later legitimate change proved the mirror got past the hostile
/// input: a few more 150 ms ticks for anything it could still cause.
const SETTLE: Duration = Duration::from_millis(1000);

/// More than two rescans (every 1.5 s): long enough for a viewer's rescan
/// to have seen a new local file, which has no observable effect to wait on.
const RESCAN_SETTLE: Duration = Duration::from_millis(3500);

/// Marks every text the hostile peer writes into a file doc: it must never
/// end up in any file on any side.
const PWNED: &str = "PWNED";

fn put(root: &Path, rel: &str, bytes: impl AsRef<[u8]>) -> anyhow::Result<()> {
    let path = root.join(rel);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn read(root: &Path, rel: &str) -> Option<String> {
    std::fs::read_to_string(root.join(rel)).ok()
}

/// Whether anything (even a dangling symlink) exists at `path`.
fn present(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// A string unique to this run, for paths outside the test's temp dir.
fn unique() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

/// Every path under `root` (relative), never following symlinks.
fn walk(root: &Path) -> anyhow::Result<Vec<(PathBuf, std::fs::FileType)>> {
    fn go(base: &Path, dir: &Path, out: &mut Vec<(PathBuf, std::fs::FileType)>) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let entry = entry?;
            let path = entry.path();
            let kind =
                std::fs::symlink_metadata(&path).with_context(|| format!("stat {}", path.display()))?.file_type();
            out.push((path.strip_prefix(base)?.to_owned(), kind));
            if kind.is_dir() {
                go(base, &path, out)?;
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    go(root, root, &mut out)?;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Regular files under `root` whose bytes contain `needle`.
fn files_containing(root: &Path, needle: &[u8]) -> anyhow::Result<Vec<PathBuf>> {
    let mut hits = Vec::new();
    for (rel, kind) in walk(root)? {
        if kind.is_file() {
            let bytes = std::fs::read(root.join(&rel)).with_context(|| format!("reading {}", rel.display()))?;
            if bytes.windows(needle.len()).any(|w| w == needle) {
                hits.push(rel);
            }
        }
    }
    Ok(hits)
}

fn stderr_of(process: &WeftProcess) -> String {
    std::fs::read_to_string(&process.stderr_path).unwrap_or_default()
}

/// The last `n` distinct lines of a log, without colour codes and cut to
/// a readable width, for failure messages.
fn tail(log: &str, n: usize) -> String {
    let mut lines: Vec<String> = Vec::new();
    for line in log.lines() {
        let mut plain = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // Skip an ANSI sequence: ESC [ ... letter.
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                plain.push(c);
            }
        }
        if plain.chars().count() > 300 {
            plain = plain.chars().take(300).chain("…".chars()).collect();
        }
        if lines.last() != Some(&plain) {
            lines.push(plain);
        }
    }
    lines[lines.len().saturating_sub(n)..].iter().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

/// Removes a path outside the temp dir when the test ends, should a bug
/// have written it.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A hub, `weft share HOST_DIR` on it, and the links it printed.
struct Shared {
    share: WeftProcess,
    hub: HubProcess,
    editor: String,
    viewer: String,
    session: String,
    editor_token: String,
}

impl Shared {
    fn start(dir: &Path, host: &Path) -> anyhow::Result<Shared> {
        let hub = HubProcess::start(&dir.join("hub"))?;
        let mut share = WeftProcess::spawn(
            &["share", &host.to_string_lossy(), "--hub", &hub.ws_base()],
            &[("WEFT_HUB_TOKEN", &hub.admin)],
            &dir.join("share.stderr"),
        )?;
        let editor = share.next_line(T)?.strip_prefix("editor: ").context("first line is the editor link")?.to_owned();
        let viewer = share.next_line(T)?.strip_prefix("viewer: ").context("second line is the viewer link")?.to_owned();
        let link = weft_client::link::Link::parse(&editor)?;
        Ok(Shared { share, hub, editor, viewer, session: link.session, editor_token: link.token })
    }

    /// `weft join LINK DIR`, once it printed `joined ... as ROLE`.
    fn join(&self, link: &str, dir: &Path, stderr: &Path, role: &str) -> anyhow::Result<WeftProcess> {
        let mut join = WeftProcess::spawn(&["join", link, &dir.to_string_lossy()], &[], stderr)?;
        let Ok(joined) = join.next_line(JOIN_T) else {
            bail!(
                "`weft join` printed nothing within {JOIN_T:?}; its stderr ends with:\n{}",
                tail(&stderr_of(&join), 4)
            );
        };
        ensure!(joined.starts_with("joined ") && joined.ends_with(&format!(" as {role}")), "{joined}");
        Ok(join)
    }

    /// Whether any file the hub stores (database, logs) holds `needle`.
    fn hub_holds(&self, needle: &[u8]) -> anyhow::Result<Vec<PathBuf>> {
        files_containing(&self.hub.data, needle)
    }
}

/// One document over plain y-websocket (`/y/SESSION/DOC`), mirrored in a
/// local yrs doc: how the hostile peer reads and writes the `files` map.
struct YDoc {
    peer: YPeer,
    doc: Doc,
    files: MapRef,
    content: TextRef,
    seen: usize,
}

impl YDoc {
    async fn open(shared: &Shared, doc: &str, token: &str, client_id: u64) -> anyhow::Result<YDoc> {
        let query = format!("token={token}&name=hostile");
        let peer = match YPeer::connect(&shared.hub.ws_base(), &shared.session, doc, &query).await? {
            Ok(peer) => peer,
            Err(closed) => bail!("the hub refused /y/{}/{doc}: {closed:?}", shared.session),
        };
        let ydoc = Doc::with_client_id(client_id);
        let files = ydoc.get_or_insert_map("files");
        let content = ydoc.get_or_insert_text("content");
        let mut this = YDoc { peer, doc: ydoc, files, content, seen: 0 };
        this.refresh().await?;
        Ok(this)
    }

    /// Asks the hub for what this copy lacks and applies it. The answer
    /// also proves the hub has handled (stored) everything sent before.
    async fn refresh(&mut self) -> anyhow::Result<()> {
        let sv = self.doc.transact().state_vector();
        self.peer.send(Message::Sync(SyncMessage::SyncStep1(sv)).encode_v1()).await?;
        loop {
            let seen = self.seen;
            self.peer.pump_until(T, |p| p.received.len() > seen).await.context("waiting for the hub's step 2")?;
            ensure!(self.peer.closed.is_none(), "the hub closed the y-websocket: {:?}", self.peer.closed);
            let new: Vec<Vec<u8>> = self.peer.received[seen..].to_vec();
            self.seen = self.peer.received.len();
            let mut answered = false;
            for message in new {
                answered |= self.apply(&message)?;
            }
            if answered {
                return Ok(());
            }
        }
    }

    /// Applies one message from the hub; `true` for a sync step 2.
    fn apply(&mut self, message: &[u8]) -> anyhow::Result<bool> {
        let mut step2 = false;
        let mut decoder = DecoderV1::new(Cursor::new(message));
        for msg in MessageReader::new(&mut decoder) {
            match msg? {
                Message::Sync(SyncMessage::SyncStep2(u)) => {
                    self.doc.transact_mut().apply_update(Update::decode_v1(&u)?)?;
                    step2 = true;
                }
                Message::Sync(SyncMessage::Update(u)) => {
                    self.doc.transact_mut().apply_update(Update::decode_v1(&u)?)?
                }
                Message::Auth(Some(reason)) => bail!("the hub refused a write: {reason}"),
                _ => {}
            }
        }
        Ok(step2)
    }

    /// Makes a change on top of the hub's latest state and sends it.
    async fn change(&mut self, f: impl FnOnce(&MapRef, &mut TransactionMut)) -> anyhow::Result<()> {
        self.refresh().await?;
        let before = self.doc.transact().state_vector();
        {
            let mut txn = self.doc.transact_mut();
            f(&self.files, &mut txn);
        }
        let update = self.doc.transact().encode_state_as_update_v1(&before);
        self.peer.send(Message::Sync(SyncMessage::Update(update)).encode_v1()).await?;
        self.refresh().await
    }

    async fn set_entries(&mut self, entries: &[(String, Any)]) -> anyhow::Result<()> {
        self.change(|files, txn| {
            for (path, value) in entries {
                files.insert(txn, path.as_str(), value.clone());
            }
        })
        .await
    }

    async fn remove_entries(&mut self, paths: &[String]) -> anyhow::Result<()> {
        self.change(|files, txn| {
            for path in paths {
                files.remove(txn, path);
            }
        })
        .await
    }

    /// The `files` map as the hub has it now.
    async fn tree(&mut self) -> anyhow::Result<HashMap<String, Any>> {
        self.refresh().await?;
        let txn = self.doc.transact();
        Ok(self.files.iter(&txn).map(|(k, v)| (k.to_owned(), v.to_json(&txn))).collect())
    }

    /// The doc's `Y.Text` `content` as the hub has it now.
    async fn text(&mut self) -> anyhow::Result<String> {
        self.refresh().await?;
        Ok(self.content.get_string(&self.doc.transact()))
    }
}

/// A `files` entry: `{kind, size, exec}`.
fn entry(kind: &str, exec: bool) -> Any {
    Any::from(HashMap::from([
        ("kind".to_owned(), Any::from(kind)),
        ("size".to_owned(), Any::from(5.0)),
        ("exec".to_owned(), Any::from(exec)),
    ]))
}

fn kind_of(tree: &HashMap<String, Any>, path: &str) -> Option<String> {
    match tree.get(path)? {
        Any::Map(m) => match m.get("kind") {
            Some(Any::String(k)) => Some(k.to_string()),
            _ => None,
        },
        _ => None,
    }
}

/// The host's and guests' layout shared by the hostile-peer tests.
struct Layout {
    host: PathBuf,
    /// A directory outside every root; `link` in each root points here.
    outside: PathBuf,
    secret: String,
    tag: String,
}

impl Layout {
    fn create(dir: &Path) -> anyhow::Result<Layout> {
        let tag = unique();
        let (host, outside) = (dir.join("host"), dir.join("outside-dir"));
        let secret = format!("HOST-SECRET-{tag}");
        put(&host, "src/main.rs", "fn main() {}\n")?;
        put(&host, "docs/readme.md", "# docs\n")?;
        put(&host, ".gitignore", "*.env\n")?;
        // Ignored, so not shared; a hostile entry for it must not pull it out.
        put(&host, "secret.env", &secret)?;
        put(&host, ".git/HEAD", "ref: refs/heads/main\n")?;
        std::fs::create_dir_all(&outside)?;
        std::os::unix::fs::symlink(&outside, host.join("link")).context("symlink in the host root")?;
        Ok(Layout { host, outside, secret, tag })
    }

    /// A guest root with a symlink to the outside directory planted in it.
    fn guest_root(&self, dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
        let guest = dir.join(name);
        std::fs::create_dir_all(&guest)?;
        std::os::unix::fs::symlink(&self.outside, guest.join("link")).context("symlink in a guest root")?;
        Ok(guest)
    }

    /// `/tmp/weft-abs-TAG.txt`: the target of the absolute-path entry.
    fn absolute_target(&self) -> PathBuf {
        PathBuf::from(format!("/tmp/weft-abs-{}.txt", self.tag))
    }
}

/// Entries every mirror must refuse before touching the disk: doc ids that
/// are not valid (escapes, absolute, NUL, ...), paths into default-ignored
/// directories or through the planted symlink, unknown kinds and malformed
/// values. Each comes with whether its key is a valid doc id (then the
/// hostile peer also fills its file doc).
fn refused_entries(layout: &Layout) -> Vec<(String, Any, bool)> {
    let text = |exec| entry("text", exec);
    let invalid = [
        "../escape.txt",
        "a/../../escape2.txt",
        "nul\0name.txt",
        "line\nbreak.txt",
        "",
        "./dot.txt",
        "a//b.txt",
        "trail/",
        "..\\..\\backslash.txt",
    ];
    let mut out: Vec<(String, Any, bool)> = invalid.iter().map(|p| (p.to_string(), text(false), false)).collect();
    out.push((layout.absolute_target().to_string_lossy().into_owned(), text(false), false));
    out.push(("../outside-dir".to_owned(), entry("dir", false), false));
    out.push(("../outside-dir/sub".to_owned(), entry("dir", false), false));
    for (path, value) in [
        (".git/hooks/pre-commit", text(true)),
        (".git/hooks", entry("dir", false)),
        (".weft/base/x", text(false)),
        // A forged base would turn a restarted joiner's merge against it.
        (".weft/base/src/main.rs", text(false)),
        ("node_modules/evil.js", text(false)),
        ("node_modules", entry("dir", false)),
        ("target/x", text(false)),
        ("target", entry("dir", false)),
        ("src/node_modules/deep.js", text(false)),
        ("src/.git/config", text(false)),
        ("link/pwned.txt", text(false)),
        ("link", text(false)),
        ("link/sub", entry("dir", false)),
        ("weird.fifo", entry("fifo", false)),
        ("up.txt", entry("TEXT", false)),
        (
            "sym",
            Any::from(HashMap::from([
                ("kind".to_owned(), Any::from("symlink")),
                ("target".to_owned(), Any::from("/etc/passwd")),
            ])),
        ),
        ("num.txt", Any::from(7.0)),
        ("str.txt", Any::from("text")),
        ("null.txt", Any::Null),
        ("arr.txt", Any::Array(vec![Any::from("text")].into())),
        ("nokind.txt", Any::from(HashMap::from([("size".to_owned(), Any::from(1.0))]))),
        ("kindnum.txt", Any::from(HashMap::from([("kind".to_owned(), Any::from(1.0))]))),
    ] {
        out.push((path.to_owned(), value, true));
    }
    out
}

/// Fills the file doc of every valid hostile path with marked text, so a
/// mirror that wrongly accepted the entry would write it.
async fn fill_docs(peer: &mut WeftPeer, paths: &[&str]) -> anyhow::Result<()> {
    for path in paths {
        peer.insert(path, 0, &format!("{PWNED} {path}\n")).await?;
    }
    peer.wait_acked().await
}

/// What must hold in a root after the refused entries: nothing outside,
/// nothing in the protected places, nothing hostile written anywhere.
fn violations(layout: &Layout, root: &Path, dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut bad = Vec::new();
    for escaped in [dir.join("escape.txt"), dir.join("escape2.txt"), layout.absolute_target()] {
        if present(&escaped) {
            bad.push(format!("{} was written outside the root", escaped.display()));
        }
    }
    let outside: Vec<_> = std::fs::read_dir(&layout.outside)?.flatten().map(|e| e.path()).collect();
    if !outside.is_empty() {
        bad.push(format!("the symlink's target dir outside the root got {outside:?}"));
    }
    match std::fs::read_link(root.join("link")) {
        Ok(target) if target == layout.outside => {}
        other => bad.push(format!("the planted symlink `link` changed: {other:?}")),
    }
    for rel in [
        ".git/hooks",
        ".weft/base/x",
        "node_modules",
        "target",
        "src/node_modules",
        "src/.git",
        "weird.fifo",
        "up.txt",
        "sym",
        "num.txt",
        "str.txt",
        "null.txt",
        "arr.txt",
        "nokind.txt",
        "kindnum.txt",
        "nul",
        "line",
        "dot.txt",
        "a",
        "trail",
    ] {
        if present(&root.join(rel)) {
            bad.push(format!("{rel} was created in {}", root.display()));
        }
    }
    for hit in files_containing(root, PWNED.as_bytes())? {
        bad.push(format!("hostile text was written to {} in {}", hit.display(), root.display()));
    }
    Ok(bad)
}

/// A peer with an editor link publishes hostile entries while a host and a
/// guest mirror the session: both refuse them, leak nothing, and keep
/// syncing legitimate files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_editor_cannot_make_the_mirrors_write_outside_or_leak() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let layout = Layout::create(dir)?;
    let _abs = RemoveOnDrop(layout.absolute_target());
    let guest = layout.guest_root(dir, "guest")?;
    let shared = Shared::start(dir, &layout.host)?;
    let join = shared.join(&shared.editor, &guest, &dir.join("join.stderr"), "editor")?;
    assert_eq!(read(&guest, "docs/readme.md").as_deref(), Some("# docs\n"));

    let mut session = YDoc::open(&shared, "_session", &shared.editor_token, 0x5EED_0001).await?;
    let mut peer = WeftPeer::join(&shared.hub.ws_base(), &shared.session, &shared.editor_token, 0x5EED_0002).await?;
    let mut entries: Vec<(String, Any)> = Vec::new();
    let mut fill: Vec<String> = Vec::new();
    for (path, value, valid) in refused_entries(&layout) {
        if valid {
            fill.push(path.clone());
        }
        entries.push((path, value));
    }
    // A 300-byte name: a valid doc id, but no file system takes it.
    let long = "a".repeat(300);
    fill.push(long.clone());
    entries.push((long.clone(), entry("text", false)));
    // A text entry where both sides have a (shared) directory.
    peer.insert("docs", 0, "RETYPED as a file\n").await?;
    entries.push(("docs".to_owned(), entry("text", false)));
    // The session doc named as a file of the tree.
    entries.push(("_session".to_owned(), entry("text", false)));
    // The host's ignored secret, listed as if it were shared (empty doc):
    // the host must not upload it because someone named it.
    entries.push(("secret.env".to_owned(), entry("text", false)));
    let fill: Vec<&str> = fill.iter().map(String::as_str).collect();
    fill_docs(&mut peer, &fill).await?;
    session.set_entries(&entries).await?;

    // The same peer then shares a legitimate file: once it is on both
    // sides, both mirrors have handled everything published before it.
    let fine = format!("fine {}\n", layout.tag);
    peer.insert("ok/fine.txt", 0, &fine).await?;
    peer.wait_acked().await?;
    session.set_entries(&[("ok/fine.txt".to_owned(), entry("text", false))]).await?;
    wait_until("the hostile peer's legitimate file on the guest and the host", T, || {
        read(&guest, "ok/fine.txt").as_deref() == Some(fine.as_str())
            && read(&layout.host, "ok/fine.txt").as_deref() == Some(fine.as_str())
    })?;
    std::thread::sleep(SETTLE);

    let mut bad = violations(&layout, &guest, dir)?;
    bad.extend(violations(&layout, &layout.host, dir)?);
    for root in [&guest, &layout.host] {
        if present(&root.join(&long)) {
            bad.push(format!("the 300-byte name exists in {}", root.display()));
        }
        if present(&root.join("_session")) {
            bad.push(format!("a file `_session` was created in {}", root.display()));
        }
        if !std::fs::symlink_metadata(root.join("docs")).is_ok_and(|m| m.is_dir()) {
            bad.push(format!("docs/ in {} is no longer a directory", root.display()));
        }
        if read(root, "docs/readme.md").as_deref() != Some("# docs\n") {
            bad.push(format!("docs/readme.md in {} changed: {:?}", root.display(), read(root, "docs/readme.md")));
        }
        for hit in files_containing(root, b"RETYPED")? {
            bad.push(format!("the retyped `docs` text was written to {} in {}", hit.display(), root.display()));
        }
    }
    let git: Vec<_> = walk(&layout.host.join(".git"))?.into_iter().map(|(p, _)| p).collect();
    if git != [PathBuf::from("HEAD")] {
        bad.push(format!("the host's .git changed: {git:?}"));
    }
    if present(&guest.join(".git")) {
        bad.push("the guest got a .git directory".to_owned());
    }
    // The host's secret: still there, on no other side, not on the hub.
    if read(&layout.host, "secret.env").as_deref() != Some(layout.secret.as_str()) {
        bad.push(format!("the host's secret.env changed: {:?}", read(&layout.host, "secret.env")));
    }
    if !files_containing(&guest, layout.secret.as_bytes())?.is_empty() {
        bad.push("the host's ignored secret reached the guest".to_owned());
    }
    let mut secret_doc = YDoc::open(&shared, "secret.env", &shared.editor_token, 0x5EED_0003).await?;
    let on_hub = secret_doc.text().await?;
    if on_hub.contains(&layout.secret) {
        bad.push(format!("the host uploaded its ignored secret.env: the hub's doc holds {on_hub:?}"));
    }
    let stored = shared.hub_holds(layout.secret.as_bytes())?;
    if !stored.is_empty() {
        bad.push(format!("the hub stored the host's secret in {stored:?}"));
    }
    for (name, log) in [("weft join", stderr_of(&join)), ("weft share", stderr_of(&shared.share))] {
        if log.contains("panicked") {
            bad.push(format!("{name} panicked:\n{}", tail(&log, 20)));
        }
    }
    ensure!(bad.is_empty(), "the hostile entries got through:\n{}", bad.join("\n"));

    // Both mirrors still work both ways (a dead or stuck process fails here).
    put(&guest, "ok/fine.txt", format!("{fine}edited on the guest\n"))?;
    wait_until("the guest's edit on the host after the hostile entries", T, || {
        read(&layout.host, "ok/fine.txt").is_some_and(|t| t.contains("edited on the guest"))
    })?;
    put(&layout.host, "docs/readme.md", "# docs\nedited on the host\n")?;
    wait_until("the host's edit on the guest after the hostile entries", T, || {
        read(&guest, "docs/readme.md").as_deref() == Some("# docs\nedited on the host\n")
    })?;
    let late = violations(&layout, &guest, dir)?;
    ensure!(late.is_empty(), "after more syncing:\n{}", late.join("\n"));
    Ok(())
}

/// A guest joining a session that already holds hostile entries must
/// still join (print `joined`), and write nothing it must not. Each entry
/// that a mirror cannot write is tried on its own, with a fresh joiner,
/// so a stuck join names the entry that caused it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_joining_after_hostile_entries_still_joins_safely() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let layout = Layout::create(dir)?;
    let _abs = RemoveOnDrop(layout.absolute_target());
    let shared = Shared::start(dir, &layout.host)?;
    let mut session = YDoc::open(&shared, "_session", &shared.editor_token, 0x5EED_0011).await?;
    let mut peer = WeftPeer::join(&shared.hub.ws_base(), &shared.session, &shared.editor_token, 0x5EED_0012).await?;
    let mut failures = Vec::new();
    let mut round = 0;
    let mut fresh_join = |what: &str| -> anyhow::Result<Option<(WeftProcess, PathBuf)>> {
        round += 1;
        let guest = layout.guest_root(dir, &format!("guest{round}"))?;
        let stderr = dir.join(format!("join{round}.stderr"));
        match shared.join(&shared.editor, &guest, &stderr, "editor") {
            Ok(join) => Ok(Some((join, guest))),
            Err(err) => {
                failures.push(format!("{what}: {err:#}"));
                Ok(None)
            }
        }
    };

    // Baseline: this session and machine join well within the deadline.
    let (join, _) = fresh_join("baseline, no hostile entry")?.context("the baseline join must work")?;
    drop(join);

    // Everything a mirror refuses up front, all at once.
    let refused = refused_entries(&layout);
    let fill: Vec<&str> = refused.iter().filter(|(_, _, valid)| *valid).map(|(p, _, _)| p.as_str()).collect();
    fill_docs(&mut peer, &fill).await?;
    let entries: Vec<(String, Any)> = refused.iter().map(|(p, v, _)| (p.clone(), v.clone())).collect();
    session.set_entries(&entries).await?;
    if let Some((join, guest)) = fresh_join("the refused entries")? {
        let bad = violations(&layout, &guest, dir)?;
        ensure!(bad.is_empty(), "a fresh joiner took refused entries:\n{}", bad.join("\n"));
        ensure!(read(&guest, "src/main.rs").as_deref() == Some("fn main() {}\n"), "the real tree is in place");
        drop(join);
    }
    session.remove_entries(&entries.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>()).await?;

    // Entries a mirror accepts but cannot write, one at a time; each is
    // taken back (or restored) before the next.
    let long = "a".repeat(300);
    let cases: Vec<(&str, String, Option<&str>, Option<Any>)> = vec![
        ("a text entry with a 300-byte name (and content)", long.clone(), Some("PWNED long\n"), None),
        ("a text entry named `_session`", "_session".to_owned(), None, None),
        (
            "`docs` (a shared directory) retyped as text (with content)",
            "docs".to_owned(),
            Some("RETYPED\n"),
            Some(entry("dir", false)),
        ),
        (
            "a text entry under a shared file, `src/main.rs/inner.txt`",
            "src/main.rs/inner.txt".to_owned(),
            Some("inner\n"),
            None,
        ),
    ];
    for (what, path, content, restore) in cases {
        if let Some(content) = content {
            peer.insert(&path, 0, content).await?;
            peer.wait_acked().await?;
        }
        session.set_entries(&[(path.clone(), entry("text", false))]).await?;
        if let Some((join, guest)) = fresh_join(what)? {
            ensure!(
                read(&guest, "src/main.rs").as_deref() == Some("fn main() {}\n"),
                "{what}: the real tree is in place"
            );
            let bad = violations(&layout, &guest, dir)?;
            ensure!(bad.is_empty(), "{what}:\n{}", bad.join("\n"));
            drop(join);
        }
        match restore {
            Some(value) => session.set_entries(&[(path, value)]).await?,
            None => session.remove_entries(&[path]).await?,
        }
    }
    let outside: Vec<_> = std::fs::read_dir(&layout.outside)?.flatten().map(|e| e.path()).collect();
    ensure!(outside.is_empty(), "the symlink's target dir outside the roots got {outside:?}");
    ensure!(failures.is_empty(), "joining got stuck on hostile entries:\n{}", failures.join("\n"));
    Ok(())
}

/// The host's directory holds symlinks out of it, a FIFO, binary and
/// invalid UTF-8 files and awkward names. The guest gets exactly the text
/// files, byte for byte under the same names, and the secret behind the
/// symlinks reaches neither the guest nor the hub, even after a synced
/// file is replaced by a symlink.
///
/// Not covered: an unreadable file (chmod 000). These tests run as root,
/// which reads it anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_directory_with_bad_input_shares_only_its_text_files() -> anyhow::Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let (host, guest, outside) = (dir.join("host"), dir.join("guest"), dir.join("outside"));
    let secret = format!("TOP-SECRET-{}", unique());
    put(&outside, "secret.txt", &secret)?;
    put(&outside, "inner/secret2.txt", &secret)?;
    let texts: &[(&str, &str)] = &[
        ("notes.txt", "notes\n"),
        ("other.txt", "other\n"),
        ("empty.txt", ""),
        ("with space.txt", "space\n"),
        ("dir with space/inner file.txt", "inner\n"),
        ("trailing space .txt", "trailing\n"),
        ("é.txt", "é\n"),
        ("e\u{301} nfd.txt", "nfd\n"),
        ("日本/語 テキスト.txt", "日本語\n"),
        ("🦀 crab.md", "🦀\n"),
        ("-rf.txt", "dash\n"),
        ("--help", "help\n"),
        (".hidden", "hidden\n"),
    ];
    for (rel, text) in texts {
        put(&host, rel, text)?;
    }
    put(&host, "bin.dat", [0u8, 1, 2, 0xff, b'x'])?;
    put(&host, "latin1.txt", [b'c', b'a', b'f', 0xe9, b'\n'])?;
    // Names that cannot be doc ids, and the reserved `_session`.
    put(&host, "tab\tname.txt", "tab\n")?;
    put(&host, "_session", "not the session doc\n")?;
    let non_utf8 = std::ffi::OsStr::from_bytes(b"bad\xffname.txt");
    std::fs::write(host.join(non_utf8), "not utf-8 name\n").context("writing the non-UTF-8 name")?;
    std::os::unix::fs::symlink(outside.join("secret.txt"), host.join("link-file"))?;
    std::os::unix::fs::symlink(outside.join("inner"), host.join("link-dir"))?;
    std::os::unix::fs::symlink(dir.join("nowhere").join(unique()), host.join("dangling"))?;
    let status = std::process::Command::new("mkfifo").arg(host.join("pipe")).status().context("running mkfifo")?;
    ensure!(status.success(), "mkfifo failed: {status}");

    // A FIFO read by the scan would block `weft share` before the links.
    let shared = Shared::start(dir, &host)?;
    let join = shared.join(&shared.editor, &guest, &dir.join("join.stderr"), "editor")?;

    let mut bad = Vec::new();
    // The guest holds exactly the text files (and their directories).
    let mut expected: BTreeSet<Vec<u8>> = texts.iter().map(|(rel, _)| rel.as_bytes().to_vec()).collect();
    expected.insert(b"dir with space".to_vec());
    expected.insert("日本".as_bytes().to_vec());
    let got: BTreeSet<Vec<u8>> = walk(&guest)?
        .into_iter()
        .map(|(rel, _)| rel.as_os_str().as_bytes().to_vec())
        .filter(|rel| !rel.starts_with(b".weft"))
        .collect();
    if got != expected {
        let show =
            |s: &BTreeSet<Vec<u8>>| s.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect::<Vec<_>>();
        bad.push(format!(
            "the guest's tree differs\n  missing: {:?}\n  extra: {:?}",
            show(&expected.difference(&got).cloned().collect()),
            show(&got.difference(&expected).cloned().collect()),
        ));
    }
    for (rel, text) in texts {
        let bytes = std::fs::read(guest.join(rel)).ok();
        if bytes.as_deref() != Some(text.as_bytes()) {
            bad.push(format!("{rel:?} on the guest is {bytes:?}, not {text:?}"));
        }
    }
    for (rel, kind) in walk(&guest)? {
        if !kind.is_file() && !kind.is_dir() {
            bad.push(format!("{} on the guest is neither a file nor a directory: {kind:?}", rel.display()));
        }
    }
    // Binary files and symlinks are listed, the rest not at all.
    let mut tree = YDoc::open(&shared, "_session", &shared.editor_token, 0x5EED_0021).await?;
    let files = tree.tree().await?;
    for (rel, want) in [
        ("bin.dat", Some("unsynced")),
        ("latin1.txt", Some("unsynced")),
        ("link-file", Some("symlink")),
        ("link-dir", Some("symlink")),
        ("dangling", Some("symlink")),
        ("notes.txt", Some("text")),
        ("pipe", None),
        ("_session", None),
        ("tab\tname.txt", None),
        ("link-dir/secret2.txt", None),
    ] {
        let kind = kind_of(&files, rel);
        if kind.as_deref() != want {
            bad.push(format!("{rel:?} is listed as {kind:?}, expected {want:?}"));
        }
    }
    if files.keys().any(|k| k.starts_with("bad")) {
        bad.push("the non-UTF-8 name was listed".to_owned());
    }
    ensure!(bad.is_empty(), "{}", bad.join("\n"));

    // A synced file replaced by a symlink to the secret stops syncing: its
    // target is never read, and a remote edit never goes through it.
    std::fs::remove_file(host.join("notes.txt"))?;
    std::os::unix::fs::symlink(outside.join("secret.txt"), host.join("notes.txt"))?;
    std::thread::sleep(SETTLE);
    put(&guest, "notes.txt", "notes\nedited on the guest\n")?;
    put(&host, "other.txt", "other\nedited on the host\n")?;
    wait_until("the host's later edit on the guest", T, || {
        read(&guest, "other.txt").as_deref() == Some("other\nedited on the host\n")
    })?;
    put(&guest, "other.txt", "other\nedited on the host\nand on the guest\n")?;
    wait_until("the guest's later edit on the host", T, || {
        read(&host, "other.txt").is_some_and(|t| t.contains("and on the guest"))
    })?;
    std::thread::sleep(SETTLE);
    let mut bad = Vec::new();
    let leaked = files_containing(&guest, secret.as_bytes())?;
    if !leaked.is_empty() {
        bad.push(format!("the secret behind a symlink reached the guest in {leaked:?}"));
    }
    let stored = shared.hub_holds(secret.as_bytes())?;
    if !stored.is_empty() {
        bad.push(format!("the secret behind a symlink reached the hub: {stored:?}"));
    }
    if std::fs::read_to_string(outside.join("secret.txt")).ok().as_deref() != Some(secret.as_str()) {
        bad.push("the file behind the symlink was written through".to_owned());
    }
    if !std::fs::symlink_metadata(host.join("notes.txt")).is_ok_and(|m| m.file_type().is_symlink()) {
        bad.push("the host's notes.txt symlink was replaced".to_owned());
    }
    let log = stderr_of(&shared.share) + &stderr_of(&join);
    if log.contains("panicked") {
        bad.push(format!("a mirror panicked:\n{}", tail(&log, 20)));
    }
    ensure!(bad.is_empty(), "{}", bad.join("\n"));
    Ok(())
}

/// A file whose name is legal on the file system (under 255 bytes) but
/// long must reach the guest like any other.
#[test]
fn a_file_with_a_long_legal_name_is_mirrored() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let (host, guest) = (dir.join("host"), dir.join("guest"));
    // 244 bytes: fine for every Linux file system (limit 255).
    let name = format!("{}.txt", "l".repeat(240));
    put(&host, &name, "long name\n")?;
    put(&host, "short.txt", "short\n")?;
    let shared = Shared::start(dir, &host)?;
    let _join = shared
        .join(&shared.editor, &guest, &dir.join("join.stderr"), "editor")
        .with_context(|| format!("joining a tree with a {}-byte file name", name.len()))?;
    assert_eq!(read(&guest, &name).as_deref(), Some("long name\n"));
    Ok(())
}

/// A guest on a viewer link edits a synced file, creates one and deletes
/// one: the host never sees any of it, and the edit is undone on the
/// guest's disk (the file goes back to the shared text).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_guest_changes_nothing_for_anyone() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let (host, guest) = (dir.join("host"), dir.join("guest"));
    put(&host, "notes.md", "shared text\n")?;
    put(&host, "keep.md", "keep me\n")?;
    put(&host, "other.md", "other\n")?;
    let shared = Shared::start(dir, &host)?;
    let join = shared.join(&shared.viewer, &guest, &dir.join("join.stderr"), "viewer")?;
    assert_eq!(read(&guest, "notes.md").as_deref(), Some("shared text\n"));

    put(&guest, "notes.md", "shared text\nviewer edit\n")?;
    wait_until("the viewer's edit undone on its disk", T, || {
        read(&guest, "notes.md").as_deref() == Some("shared text\n")
    })?;
    put(&guest, "from-viewer.txt", "viewer file\n")?;
    std::fs::remove_file(guest.join("keep.md"))?;
    // The viewer still follows the host (its loop is alive)...
    put(&host, "other.md", "other\nedited on the host\n")?;
    wait_until("the host's edit on the viewer", T, || {
        read(&guest, "other.md").as_deref() == Some("other\nedited on the host\n")
    })?;
    // ...and has rescanned (where a new file would be published) since.
    std::thread::sleep(RESCAN_SETTLE);

    let mut bad = Vec::new();
    if read(&host, "notes.md").as_deref() != Some("shared text\n") {
        bad.push(format!("the host's notes.md changed: {:?}", read(&host, "notes.md")));
    }
    if present(&host.join("from-viewer.txt")) {
        bad.push("the viewer's new file reached the host".to_owned());
    }
    if read(&host, "keep.md").as_deref() != Some("keep me\n") {
        bad.push("the viewer's delete reached the host".to_owned());
    }
    if read(&guest, "notes.md").as_deref() != Some("shared text\n") {
        bad.push(format!("the viewer's notes.md is {:?}", read(&guest, "notes.md")));
    }
    let mut tree = YDoc::open(&shared, "_session", &shared.editor_token, 0x5EED_0031).await?;
    let files = tree.tree().await?;
    if files.contains_key("from-viewer.txt") || !files.contains_key("keep.md") {
        bad.push(format!("the viewer changed the tree: {:?}", files.keys().collect::<BTreeSet<_>>()));
    }
    let mut notes = YDoc::open(&shared, "notes.md", &shared.editor_token, 0x5EED_0032).await?;
    let text = notes.text().await?;
    if text != "shared text\n" {
        bad.push(format!("the hub's notes.md is {text:?}"));
    }
    // A viewer that tried to write would have been refused by the hub.
    let log = stderr_of(&join);
    if log.contains("read-only") || log.contains("panicked") {
        bad.push(format!("the viewer tried to write (or crashed):\n{}", tail(&log, 10)));
    }
    ensure!(bad.is_empty(), "{}", bad.join("\n"));
    Ok(())
}
