//! `weft-bench join`: how long joining a large shared workspace takes, with
//! real processes only.
//!
//! One run generates a workspace once (by default 5,000 source-like UTF-8
//! text files, ~50 MB, in nested directories, with a few executable
//! scripts, CRLF files, empty files, non-ASCII names, a `.gitignore`d
//! directory and some binary files), then per round: starts a fresh
//! `weft hub`, shares the workspace on it with `weft share DIR --hub`
//! (publish time: spawn → `editor:`/`viewer:` links, printed once the
//! tree is durable on the hub), joins it into an empty directory with
//! `weft join LINK DIR2` (join time: spawn → `joined SESSION as ROLE`),
//! checks the joined copy byte for byte (executable bits too; ignored and
//! binary files must be absent), watches the idle processes for a few
//! seconds, and records peak/current RSS and CPU time of the hub, the
//! share and the join process, the hub's data size and its `/metrics`
//! counters. Every process it starts is killed on every path (the
//! harness's [`HubProcess`] and [`WeftProcess`] kill on drop) and the temp
//! directories are removed; the processes' stderr logs stay in
//! `$TMPDIR/weft-bench-join-PID/logs` when a round fails.
//!
//! It does not measure edits after the join (that is `trace-replay`), more
//! than one guest, a cold page cache (the workspace was just written, so
//! it is in memory), or whether `unsynced` entries are listed in the
//! session doc (it only checks they never reach the guest's disk; the
//! scanner's unit tests and `tests/tests/mirror_hostile.rs` check the
//! listing).

use std::collections::BTreeSet;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use weft_tests::{HubProcess, Rng, WeftProcess};

use crate::procfs;
use crate::report::{self, thousands};

/// Bytes in a MB, as the options and tables count them.
const MB: f64 = 1_000_000.0;
/// The generator's seed: every run writes the same workspace.
const SEED: u64 = 0x5EED_F11E;
/// How long the processes are left idle after the check, to measure what
/// polling costs on a tree this size.
const IDLE: Duration = Duration::from_secs(5);
/// The ignored directory (listed in the generated `.gitignore`).
const IGNORED_DIR: &str = "generated";
/// The directory holding the binary files.
const BINARY_DIR: &str = "assets";

/// Parsed `join` options.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinOptions {
    /// Synced text files in the workspace (the `.gitignore` included).
    pub files: usize,
    /// Their total size, in MB (10^6 bytes).
    pub mb: f64,
    pub rounds: usize,
    /// How long publishing, and then joining, may each take.
    pub timeout: Duration,
    /// Keep the processes' stderr logs even when every round passed.
    pub keep_logs: bool,
}

impl Default for JoinOptions {
    fn default() -> JoinOptions {
        JoinOptions { files: 5000, mb: 50.0, rounds: 3, timeout: Duration::from_secs(1800), keep_logs: false }
    }
}

/// Parses the options after `join`; `None` for `--help`.
pub fn parse_options<'a>(mut it: impl Iterator<Item = &'a String>, usage: &str) -> anyhow::Result<Option<JoinOptions>> {
    let mut opts = JoinOptions::default();
    while let Some(arg) = it.next() {
        let mut value = |what: &str| it.next().with_context(|| format!("{arg} needs {what}"));
        match arg.as_str() {
            "--files" => opts.files = value("a number")?.parse().context("--files")?,
            "--mb" => opts.mb = value("a size in MB")?.parse().context("--mb")?,
            "--rounds" => opts.rounds = value("a number")?.parse().context("--rounds")?,
            "--timeout" => {
                opts.timeout = Duration::from_secs(value("seconds")?.parse().context("--timeout")?);
            }
            "--keep-logs" => opts.keep_logs = true,
            "--quick" => {
                opts.files = 500;
                opts.mb = 5.0;
                opts.rounds = 1;
            }
            "-h" | "--help" => return Ok(None),
            other => bail!("unknown option {other:?}\n\n{usage}"),
        }
    }
    ensure!(opts.files >= 10, "--files must be at least 10");
    ensure!(opts.mb.is_finite() && opts.mb > 0.0, "--mb must be positive");
    ensure!(opts.rounds >= 1, "--rounds must be at least 1");
    ensure!(!opts.timeout.is_zero(), "--timeout must be at least 1 s");
    Ok(Some(opts))
}

// ---------------------------------------------------------------------------
// The generated workspace

/// A synced text file of the generated workspace.
#[derive(Debug, Clone)]
struct SyncedFile {
    rel: String,
    exec: bool,
}

/// What was generated, to check the joined copy against.
#[derive(Debug)]
struct Workspace {
    root: PathBuf,
    synced: Vec<SyncedFile>,
    /// Synced bytes.
    bytes: u64,
    /// Directories that are shared (the ignored one excluded).
    dirs: usize,
    scripts: usize,
    crlf: usize,
    empty: usize,
    /// Files under the ignored directory.
    ignored: Vec<String>,
    /// Binary files: listed by the host, never written on the guest.
    binary: Vec<String>,
}

const WORDS: &[&str] = &[
    "buffer", "cache", "client", "config", "cursor", "delta", "doc", "editor", "event", "frame", "hub", "index",
    "layout", "link", "merge", "model", "node", "offset", "parser", "patch", "peer", "range", "render", "replica",
    "room", "scan", "session", "state", "store", "sync", "text", "token", "tree", "update", "view", "writer",
];
const TYPES: &[&str] = &["Doc", "Range", "Frame", "Peer", "Session", "Buffer", "Update", "Cursor", "Store"];
/// Comment text with every UTF-8 width: 2-byte Latin, 3-byte CJK and
/// punctuation, 4-byte emoji and math letters, a combining accent.
const PROSE: &[&str] = &[
    "naïve café résumé — keep the cursor where it was",
    "日本語のコメント: 変更を保存する",
    "Ünïcödé ✓ survives the round trip",
    "ship it 🚀 (after the tests pass)",
    "𝕏 marks the spot where the offset is counted in UTF-16",
    "the e\u{301} here is two code points, one glyph",
    "Grüße aus Köln, ¿qué tal? — ça va",
    "TODO: measure this before optimising it",
    "this runs on every keystroke, keep it cheap",
    "Ω ≈ ∑ Δ → the usual suspects",
];
const TOP_DIRS: &[&str] = &["src", "lib", "tests", "docs", "tools", "web", "crates", "services"];
const EXTENSIONS: &[(&str, &str)] =
    &[("rs", "//"), ("py", "#"), ("ts", "//"), ("go", "//"), ("c", "//"), ("md", ""), ("toml", "#"), ("js", "//")];

fn word(rng: &mut Rng) -> &'static str {
    WORDS[rng.below(WORDS.len())]
}

/// One line of source-like text (without its line ending).
fn source_line(rng: &mut Rng, comment: &str) -> String {
    let (a, b, c, t) = (word(rng), word(rng), word(rng), rng.pick(TYPES));
    let n = rng.below(1000);
    if comment.is_empty() {
        // Markdown.
        return match rng.below(6) {
            0 => format!("## The {a} {b}"),
            1 => String::new(),
            2 => format!("- `{a}_{b}` {}", rng.pick(PROSE)),
            _ => format!("The {a} sends its {b} to the {c} after {n} ms; {}.", rng.pick(PROSE)),
        };
    }
    match rng.below(10) {
        0 => format!("{comment} {}", rng.pick(PROSE)),
        1 => String::new(),
        2 => format!("fn {a}_{b}({c}: &{t}, limit: usize) -> Result<{t}, Error> {{"),
        3 => format!("    let {a}_{b} = {c}.{a}({n}).map_err(|e| Error::{t}(e))?;"),
        4 => format!("    if {a}.len() > {n} {{ return Err(Error::TooLong(\"{b}\")); }}"),
        5 => format!("    {a}.{b}_{c}(&mut self.{c}, {n});"),
        6 => "}".to_owned(),
        7 => format!("    const {}: usize = {n}; {comment} {}", a.to_uppercase(), rng.pick(PROSE)),
        8 => format!("    log(\"{a} {b}: {{}}\", {c}); {comment} {n}"),
        _ => format!("    {a} = {b}({c}, \"{}\");", rng.pick(PROSE)),
    }
}

/// Text of about `size` bytes: whole lines, `\n` or `\r\n` endings.
fn source_text(rng: &mut Rng, comment: &str, size: usize, crlf: bool, header: &str) -> String {
    let eol = if crlf { "\r\n" } else { "\n" };
    let mut text = String::with_capacity(size + 200);
    text.push_str(header);
    while text.len() < size {
        text.push_str(&source_line(rng, comment));
        text.push_str(eol);
    }
    text
}

fn write_file(root: &Path, rel: &str, bytes: &[u8], exec: bool) -> anyhow::Result<()> {
    let path = root.join(rel);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes).with_context(|| format!("writing {}", path.display()))?;
    let mode = if exec { 0o755 } else { 0o644 };
    file.set_permissions(std::fs::Permissions::from_mode(mode)).with_context(|| format!("chmod {}", path.display()))?;
    Ok(())
}

/// Writes the workspace under `root` (which must not exist yet).
fn generate(root: &Path, files: usize, mb: f64) -> anyhow::Result<Workspace> {
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let mut rng = Rng::new(SEED);
    // Nested directories: a random tree under a few top-level ones, about
    // 20 files per directory, at most 5 levels deep.
    let mut dirs: Vec<(String, usize)> = TOP_DIRS.iter().map(|d| ((*d).to_owned(), 1)).collect();
    let want_dirs = (files / 20).max(TOP_DIRS.len());
    while dirs.len() < want_dirs {
        let (parent, depth) = dirs[rng.below(dirs.len())].clone();
        if depth >= 5 {
            continue;
        }
        let name = if dirs.len() % 50 == 7 {
            format!("ünï-{}", dirs.len())
        } else {
            format!("{}{}", word(&mut rng), dirs.len())
        };
        dirs.push((format!("{parent}/{name}"), depth + 1));
    }
    let gitignore = format!("# written by weft-bench join\n/{IGNORED_DIR}/\n*.swp\n");
    let mut ws = Workspace {
        root: root.to_owned(),
        synced: Vec::with_capacity(files),
        bytes: 0,
        dirs: dirs.len() + 1, // + assets/
        scripts: 0,
        crlf: 0,
        empty: 0,
        ignored: Vec::new(),
        binary: Vec::new(),
    };
    write_file(root, ".gitignore", gitignore.as_bytes(), false)?;
    ws.synced.push(SyncedFile { rel: ".gitignore".to_owned(), exec: false });
    ws.bytes += gitignore.len() as u64;
    let n = files - 1;
    let average = (mb * MB - gitignore.len() as f64).max(0.0) / n as f64;
    let scripts = (n / 50).max(1); // ~2 %
    let crlf = (n / 100).max(1); // ~1 %
    let empty = 1 + n / 2500;
    for i in 0..n {
        let dir = &dirs[rng.below(dirs.len())].0;
        // Between a quarter and 1.75 times the average: the mean is the average.
        let size = (average * (0.25 + 1.5 * rng.below(1001) as f64 / 1000.0)) as usize;
        let (rel, text, exec) = if i < scripts {
            let header = "#!/bin/sh\nset -eu\n";
            (format!("{dir}/run-{}-{i}.sh", word(&mut rng)), source_text(&mut rng, "#", size, false, header), true)
        } else if i < scripts + crlf {
            (format!("{dir}/notes-{i}.txt"), source_text(&mut rng, "", size, true, ""), false)
        } else if i < scripts + crlf + empty {
            (format!("{dir}/__init__{i}.py"), String::new(), false)
        } else {
            let (ext, comment) = *rng.pick(EXTENSIONS);
            let name = if i % 500 == 3 {
                format!("résumé-日本-{i}")
            } else {
                format!("{}_{}{i}", word(&mut rng), word(&mut rng))
            };
            (format!("{dir}/{name}.{ext}"), source_text(&mut rng, comment, size, false, ""), false)
        };
        write_file(root, &rel, text.as_bytes(), exec)?;
        ws.bytes += text.len() as u64;
        ws.synced.push(SyncedFile { rel, exec });
    }
    (ws.scripts, ws.crlf, ws.empty) = (scripts, crlf, empty);
    // Ignored by .gitignore: a directory of a few text files.
    for i in 0..5 {
        let rel = format!("{IGNORED_DIR}/cache-{i}.rs");
        let text = source_text(&mut rng, "//", 8000, false, "// generated, ignored\n");
        write_file(root, &rel, text.as_bytes(), false)?;
        ws.ignored.push(rel);
    }
    // Binary: NUL bytes and invalid UTF-8, listed but never synced.
    for i in 0..5 {
        let rel = format!("{BINARY_DIR}/image-{i}.png");
        let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        bytes.extend((0..4000 + 3000 * i).map(|_| (rng.next_u64() >> 56) as u8));
        write_file(root, &rel, &bytes, false)?;
        ws.binary.push(rel);
    }
    // Directories that got no file are still shared (listed as `dir`), so
    // the count above holds for them too.
    Ok(ws)
}

// ---------------------------------------------------------------------------
// Checking the joined copy

/// Every problem of the joined copy `dir2` against the workspace.
fn check_copy(ws: &Workspace, dir2: &Path) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    for f in &ws.synced {
        let want = std::fs::read(ws.root.join(&f.rel)).with_context(|| format!("reading the original {}", f.rel))?;
        let path = dir2.join(&f.rel);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(err) => {
                problems.push(format!("{}: missing ({err})", f.rel));
                continue;
            }
        };
        if !meta.is_file() {
            problems.push(format!("{}: not a regular file", f.rel));
            continue;
        }
        let got = std::fs::read(&path).with_context(|| format!("reading the joined {}", f.rel))?;
        if got != want {
            let at = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
            problems.push(format!(
                "{}: {} bytes, want {} (first difference at byte {at})",
                f.rel,
                got.len(),
                want.len()
            ));
        }
        let exec = meta.permissions().mode() & 0o111 != 0;
        if exec != f.exec {
            problems.push(format!("{}: executable {exec}, want {}", f.rel, f.exec));
        }
    }
    for rel in ws.ignored.iter().chain(&ws.binary) {
        if std::fs::symlink_metadata(dir2.join(rel)).is_ok() {
            problems.push(format!("{rel}: present, but it is ignored or binary and must not be synced"));
        }
    }
    if std::fs::symlink_metadata(dir2.join(IGNORED_DIR)).is_ok() {
        problems.push(format!("{IGNORED_DIR}/: present, but .gitignore ignores it"));
    }
    // Nothing else: no temp files, no strays (the mirror's own `.weft/` aside).
    let expected: BTreeSet<&str> = ws.synced.iter().map(|f| f.rel.as_str()).collect();
    for rel in files_under(dir2)? {
        if !rel.starts_with(".weft/") && !expected.contains(rel.as_str()) {
            problems.push(format!("{rel}: unexpected file in the joined copy"));
        }
    }
    Ok(problems)
}

/// Every non-directory under `root`, as `/`-separated relative paths.
fn files_under(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_owned(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            let kind = entry.file_type().with_context(|| format!("stat {rel}"))?;
            if kind.is_dir() {
                stack.push((entry.path(), rel));
            } else {
                out.push(rel);
            }
        }
    }
    Ok(out)
}

/// Total size of the files under `root` (apparent sizes), skipping names
/// for which `skip` holds; 0 if `root` does not exist.
fn size_under(root: &Path, skip: impl Fn(&str) -> bool) -> anyhow::Result<u64> {
    let mut total = 0;
    if !root.exists() {
        return Ok(0);
    }
    for rel in files_under(root)? {
        if skip(&rel) {
            continue;
        }
        let path = root.join(&rel);
        // SQLite may remove its -shm/-wal files while we look.
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            total += meta.len();
        }
    }
    Ok(total)
}

// ---------------------------------------------------------------------------
// One round

/// What `/proc` says about one process.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    /// VmHWM and VmRSS at the end of the round, KiB.
    peak_kib: u64,
    rss_kib: u64,
    /// CPU time used when the links were printed, and when the join
    /// printed `joined` (the join process: 0 and its own total).
    cpu_at_links: Duration,
    cpu_at_joined: Duration,
    /// CPU time used during the idle window after the check.
    idle_cpu: Duration,
    /// Times the process lost its hub connection (`offline (...)` lines
    /// on its stderr).
    reconnects: usize,
}

/// Counters from the hub's `/metrics` at the end of a round.
#[derive(Debug, Clone, Copy, Default)]
struct HubCounters {
    updates: u64,
    commits: u64,
    ops: u64,
    bytes_in: u64,
    bytes_out: u64,
    overloaded: u64,
}

/// What one round measured.
#[derive(Debug, Clone, Default)]
struct RoundResult {
    /// The 1-minute load average when the round started (other work on
    /// the 2 cores shows up directly in the times).
    load: f64,
    publish: Duration,
    join: Duration,
    hub: Usage,
    share: Usage,
    joiner: Usage,
    hub_data_bytes: u64,
    base_bytes: u64,
    counters: HubCounters,
}

/// Removes directories when dropped, after copying the hub's log out of
/// its data directory. Declared before the processes of a round, so it
/// runs after they were killed.
struct Cleanup {
    dirs: Vec<PathBuf>,
    hub_log: Option<(PathBuf, PathBuf)>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some((from, to)) = &self.hub_log
            && from.exists()
            && let Err(err) = std::fs::copy(from, to)
        {
            eprintln!("weft-bench: could not keep {}: {err}", from.display());
        }
        for dir in &self.dirs {
            match std::fs::remove_dir_all(dir) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => eprintln!("weft-bench: could not remove {}: {err}", dir.display()),
            }
        }
    }
}

fn cpu(pid: u32) -> anyhow::Result<Duration> {
    procfs::process_cpu(pid)
}

/// Writes dirty pages back, so one phase's writeback does not land in the next.
fn sync_disks() {
    match Command::new("sync").status() {
        Ok(status) if status.success() => {}
        other => eprintln!("weft-bench: `sync` failed ({other:?}); timings may include writeback"),
    }
}

fn hub_counters(hub: &HubProcess) -> anyhow::Result<HubCounters> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("tokio runtime")?;
    let (status, body) =
        runtime.block_on(weft_tests::http_raw(hub.addr, "GET", "/metrics", None, &[], None)).context("GET /metrics")?;
    ensure!(status == 200, "GET /metrics answered {status}");
    let text = String::from_utf8_lossy(&body);
    let get = |name: &str| -> u64 {
        text.lines()
            .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .find_map(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    Ok(HubCounters {
        updates: get("weft_updates_total"),
        commits: get("weft_store_commits_total"),
        ops: get("weft_store_ops_total"),
        bytes_in: get("weft_bytes_in_total"),
        bytes_out: get("weft_bytes_out_total"),
        overloaded: get("weft_peers_overloaded_total"),
    })
}

/// How often `weft share`/`weft join` said it lost the hub connection.
fn offline_lines(stderr: &Path) -> anyhow::Result<usize> {
    let log = std::fs::read_to_string(stderr).with_context(|| format!("reading {}", stderr.display()))?;
    Ok(log.lines().filter(|l| l.starts_with("offline (")).count())
}

/// The processes' log filter (`WEFT_TEST_LOG`, default `info`), as trace-replay.
fn log_filter() -> String {
    std::env::var("WEFT_TEST_LOG").unwrap_or_else(|_| "info".into())
}

fn round(ws: &Workspace, opts: &JoinOptions, work: &Path, logs: &Path, i: usize) -> anyhow::Result<RoundResult> {
    let hub_data = work.join(format!("hub-{i}"));
    let dir2 = work.join(format!("joined-{i}"));
    let _cleanup = Cleanup {
        dirs: vec![hub_data.clone(), dir2.clone()],
        hub_log: Some((hub_data.join("hub.stderr.log"), logs.join(format!("hub-{i}.stderr.log")))),
    };
    let load = report::load_average().unwrap_or(f64::NAN);
    let log = log_filter();
    let env_log = ("WEFT_LOG", log.as_str());
    let hub = HubProcess::start(&hub_data)?;
    let hub_pid = procfs::hub_pid(&hub_data)?;
    let root = ws.root.to_str().context("the workspace path is not UTF-8")?;
    let hub_ws = hub.ws_base();

    // Publish: spawn → both links (printed once the tree is durable).
    let started = Instant::now();
    let mut share = WeftProcess::spawn(
        &["share", root, "--hub", &hub_ws],
        &[("WEFT_HUB_TOKEN", hub.admin.as_str()), env_log],
        &logs.join(format!("share-{i}.stderr.log")),
    )?;
    let share_pid = procfs::child_pid(&["share", root])?;
    let editor = share.next_line(opts.timeout).context("waiting for the share's editor link")?;
    let viewer = share.next_line(opts.timeout).context("waiting for the share's viewer link")?;
    let publish = started.elapsed();
    let link = editor.strip_prefix("editor: ").with_context(|| format!("unexpected first line {editor:?}"))?.to_owned();
    ensure!(viewer.starts_with("viewer: "), "unexpected second line {viewer:?}");
    let mut r = RoundResult { load, publish, ..RoundResult::default() };
    r.hub.cpu_at_links = cpu(hub_pid)?;
    r.share.cpu_at_links = cpu(share_pid)?;
    eprintln!("weft-bench: round {i}: published in {:.2} s; joining", publish.as_secs_f64());

    // Join: spawn → `joined SESSION as ROLE` (printed once every file is on disk).
    let dir2_str = dir2.to_str().context("the temp path is not UTF-8")?;
    let started = Instant::now();
    let mut join =
        WeftProcess::spawn(&["join", &link, dir2_str], &[env_log], &logs.join(format!("join-{i}.stderr.log")))?;
    let join_pid = procfs::child_pid(&["join", &link])?;
    let joined = join.next_line(opts.timeout).context("waiting for `joined`")?;
    r.join = started.elapsed();
    r.hub.cpu_at_joined = cpu(hub_pid)?;
    r.share.cpu_at_joined = cpu(share_pid)?;
    r.joiner.cpu_at_joined = cpu(join_pid)?;
    ensure!(joined.starts_with("joined ") && joined.ends_with(" as editor"), "unexpected line {joined:?}");
    eprintln!("weft-bench: round {i}: joined in {:.2} s; checking the copy", r.join.as_secs_f64());

    let problems = check_copy(ws, &dir2)?;
    if !problems.is_empty() {
        let shown: Vec<&str> = problems.iter().take(20).map(String::as_str).collect();
        bail!(
            "the joined copy differs from the shared workspace in {} places, e.g.:\n  {}",
            problems.len(),
            shown.join("\n  ")
        );
    }

    // Idle: what the polling costs once nothing changes.
    let before = [cpu(hub_pid)?, cpu(share_pid)?, cpu(join_pid)?];
    std::thread::sleep(IDLE);
    let after = [cpu(hub_pid)?, cpu(share_pid)?, cpu(join_pid)?];
    r.hub.idle_cpu = after[0].saturating_sub(before[0]);
    r.share.idle_cpu = after[1].saturating_sub(before[1]);
    r.joiner.idle_cpu = after[2].saturating_sub(before[2]);

    for (usage, pid) in [(&mut r.hub, hub_pid), (&mut r.share, share_pid), (&mut r.joiner, join_pid)] {
        usage.peak_kib = procfs::vm_hwm_kib(pid)?;
        usage.rss_kib = procfs::vm_rss_kib(pid)?;
    }
    r.counters = hub_counters(&hub)?;
    r.share.reconnects = offline_lines(&share.stderr_path)?;
    r.joiner.reconnects = offline_lines(&join.stderr_path)?;
    r.hub_data_bytes = size_under(&hub_data, |rel| rel.ends_with(".log"))?;
    r.base_bytes = size_under(&dir2.join(".weft"), |_| false)?;
    // Stop the guest first, then the host, then the hub (drop would do
    // the same on an error path).
    join.kill();
    share.kill();
    drop(hub);
    Ok(r)
}

// ---------------------------------------------------------------------------
// The run and its report

/// Runs the benchmark with the `weft` binary `bin`; prints markdown.
pub fn run(opts: &JoinOptions, bin: &Path) -> anyhow::Result<()> {
    let work = std::env::temp_dir().join(format!("weft-bench-join-{}", std::process::id()));
    let logs = work.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let load_before = report::load_average();
    let result = (|| {
        let source = work.join("workspace");
        let _cleanup = Cleanup { dirs: vec![source.clone()], hub_log: None };
        let started = Instant::now();
        let ws = generate(&source, opts.files, opts.mb)?;
        eprintln!(
            "weft-bench: generated {} files ({:.1} MB) in {:.1} s",
            ws.synced.len(),
            ws.bytes as f64 / MB,
            started.elapsed().as_secs_f64()
        );
        let mut rounds = Vec::new();
        for i in 1..=opts.rounds {
            sync_disks();
            rounds.push(round(&ws, opts, &work, &logs, i).with_context(|| format!("round {i}"))?);
        }
        Ok::<_, anyhow::Error>((ws, rounds))
    })();
    let (ws, rounds) = result.with_context(|| format!("the processes' logs are kept in {}", logs.display()))?;
    println!("{}", markdown(opts, bin, &ws, &rounds, load_before));
    if opts.keep_logs {
        eprintln!("weft-bench: the processes' logs are in {}", logs.display());
    } else if let Err(err) = std::fs::remove_dir_all(&work) {
        eprintln!("weft-bench: could not remove {}: {err}", work.display());
    }
    Ok(())
}

/// The median (mean of the middle two for an even count); 0 for none.
fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// One table row: a label and the values, formatted by `formats`.
fn row(label: &str, values: &[f64], formats: &[fn(f64) -> String]) -> String {
    let cells: Vec<String> = values.iter().zip(formats).map(|(v, f)| f(*v)).collect();
    format!("| {label} | {} |", cells.join(" | "))
}

/// Per round rows and a median row, for columns computed by `columns`.
fn table(
    header: &str,
    rounds: &[RoundResult],
    formats: &[fn(f64) -> String],
    columns: impl Fn(&RoundResult) -> Vec<f64>,
) -> String {
    let mut s = String::new();
    s.push_str(header);
    s.push('\n');
    s.push_str(&format!("|---|{}\n", "--:|".repeat(formats.len())));
    let all: Vec<Vec<f64>> = rounds.iter().map(&columns).collect();
    for (i, values) in all.iter().enumerate() {
        s.push_str(&row(&format!("{}", i + 1), values, formats));
        s.push('\n');
    }
    if rounds.len() > 1 {
        let medians: Vec<f64> = (0..formats.len()).map(|c| median(all.iter().map(|v| v[c]).collect())).collect();
        s.push_str(&row("**median**", &medians, formats));
        s.push('\n');
    }
    s
}

fn f0(v: f64) -> String {
    thousands(v)
}
fn f1(v: f64) -> String {
    format!("{v:.1}")
}
fn f2(v: f64) -> String {
    format!("{v:.2}")
}
fn pct(v: f64) -> String {
    format!("{v:.0} %")
}

fn markdown(
    opts: &JoinOptions,
    bin: &Path,
    ws: &Workspace,
    rounds: &[RoundResult],
    load_before: Option<f64>,
) -> String {
    let mut s = String::new();
    let load = |l: Option<f64>| l.map_or("?".to_owned(), |l| format!("{l:.2}"));
    s.push_str(&format!("Machine: {}; weft binary {}.\n", report::machine(), bin.display()));
    s.push_str(&format!(
        "Load average (1 min) before the run: {}, after: {}.\n",
        load(load_before),
        load(report::load_average())
    ));
    s.push_str(&format!(
        "Workspace: {} synced text files ({} executable scripts, {} with CRLF, {} empty), {:.1} MB, in {} directories; \
         plus {} files in a .gitignored directory and {} binary files (listed, not synced). {} round(s), timeout {} s.\n\n",
        thousands(ws.synced.len() as f64),
        ws.scripts,
        ws.crlf,
        ws.empty,
        ws.bytes as f64 / MB,
        ws.dirs,
        ws.ignored.len(),
        ws.binary.len(),
        opts.rounds,
        opts.timeout.as_secs(),
    ));
    let files = ws.synced.len() as f64;
    let mb = ws.bytes as f64 / MB;
    s.push_str(
        "Publish = `weft share` spawn → links printed (tree durable on the hub); join = `weft join` spawn → `joined`. \
         Peak RSS (VmHWM) in MiB at the end of the round; CPU = user + system seconds when `joined` was printed \
         (hub and share: since they started).\n\n",
    );
    s.push_str(&table(
        "| round | files | MB | publish s | join s | join MB/s | hub peak RSS | share peak RSS | join peak RSS | hub CPU s | share CPU s | join CPU s |",
        rounds,
        &[f0, f1, f2, f2, f1, f1, f1, f1, f1, f1, f1],
        |r| {
            vec![
                files,
                mb,
                secs(r.publish),
                secs(r.join),
                if r.join.is_zero() { 0.0 } else { mb / secs(r.join) },
                mib(r.hub.peak_kib),
                mib(r.share.peak_kib),
                mib(r.joiner.peak_kib),
                secs(r.hub.cpu_at_joined),
                secs(r.share.cpu_at_joined),
                secs(r.joiner.cpu_at_joined),
            ]
        },
    ));
    s.push_str(&format!(
        "\nDetails: the 1-minute load average when the round started; CPU seconds at the links (publish phase); CPU share of one core while join was running \
         (CPU ÷ join wall time); current RSS (VmRSS, MiB) at the end; CPU share of one core over {} s idle after the \
         check; the hub's data (SQLite files, logs excluded) and the guest's `.weft/`, in MB; the hub's `/metrics` (peers overloaded: connections the hub closed because their queue was full); how often \
         share and join printed `offline (...)`.\n\n",
        IDLE.as_secs()
    ));
    s.push_str(&table(
        "| round | load at start | hub CPU s at links | share CPU s at links | hub CPU during join | share CPU during join | join CPU during join | hub RSS | share RSS | join RSS | hub idle CPU | share idle CPU | join idle CPU | hub data MB | guest .weft MB | updates | store commits | store ops | MB in | MB out | peers overloaded | share reconnects | join reconnects |",
        rounds,
        &[f2, f2, f2, pct, pct, pct, f1, f1, f1, pct, pct, pct, f1, f1, f0, f0, f0, f1, f1, f0, f0, f0],
        |r| {
            let during = |u: &Usage| {
                let used = u.cpu_at_joined.saturating_sub(u.cpu_at_links);
                if r.join.is_zero() { 0.0 } else { 100.0 * secs(used) / secs(r.join) }
            };
            let idle = |u: &Usage| 100.0 * secs(u.idle_cpu) / secs(IDLE);
            vec![
                r.load,
                secs(r.hub.cpu_at_links),
                secs(r.share.cpu_at_links),
                during(&r.hub),
                during(&r.share),
                during(&r.joiner),
                mib(r.hub.rss_kib),
                mib(r.share.rss_kib),
                mib(r.joiner.rss_kib),
                idle(&r.hub),
                idle(&r.share),
                idle(&r.joiner),
                r.hub_data_bytes as f64 / MB,
                r.base_bytes as f64 / MB,
                r.counters.updates as f64,
                r.counters.commits as f64,
                r.counters.ops as f64,
                r.counters.bytes_in as f64 / MB,
                r.counters.bytes_out as f64 / MB,
                r.counters.overloaded as f64,
                r.share.reconnects as f64,
                r.joiner.reconnects as f64,
            ]
        },
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn parse(s: &str) -> anyhow::Result<Option<JoinOptions>> {
        parse_options(args(s).iter(), "usage")
    }

    #[test]
    fn options_parse() -> anyhow::Result<()> {
        assert_eq!(parse("")?, Some(JoinOptions::default()));
        let o = parse("--quick")?.context("opts")?;
        assert_eq!((o.files, o.mb, o.rounds), (500, 5.0, 1));
        let o = parse("--quick --files 50 --mb 0.5 --rounds 2 --timeout 60 --keep-logs")?.context("opts")?;
        assert_eq!((o.files, o.mb, o.rounds, o.timeout, o.keep_logs), (50, 0.5, 2, Duration::from_secs(60), true));
        assert!(parse("--help")?.is_none());
        assert!(parse("--files").is_err());
        assert!(parse("--files 3").is_err());
        assert!(parse("--mb 0").is_err());
        assert!(parse("--rounds 0").is_err());
        assert!(parse("--sideways").is_err());
        Ok(())
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0]), 2.5);
        assert_eq!(median(Vec::new()), 0.0);
    }

    /// The generator writes what it says, and a faithful copy passes the
    /// check while a damaged one fails it.
    #[test]
    fn generated_workspace_and_check() -> anyhow::Result<()> {
        let tmp = std::env::temp_dir().join(format!("weft-bench-join-test-{}", std::process::id()));
        let _cleanup = Cleanup { dirs: vec![tmp.clone()], hub_log: None };
        let ws = generate(&tmp.join("a"), 200, 0.4)?;
        assert_eq!(ws.synced.len(), 200);
        assert!((ws.bytes as f64 - 0.4 * MB).abs() < 0.05 * MB, "{} bytes", ws.bytes);
        assert!(ws.synced.iter().filter(|f| f.exec).count() >= 1);
        let multibyte = ws
            .synced
            .iter()
            .any(|f| std::fs::read_to_string(ws.root.join(&f.rel)).is_ok_and(|t| t.chars().any(|c| c.len_utf8() == 4)));
        assert!(multibyte, "no 4-byte characters generated");
        // A faithful copy: synced files only, modes kept.
        let copy = tmp.join("b");
        for f in &ws.synced {
            let bytes = std::fs::read(ws.root.join(&f.rel))?;
            write_file(&copy, &f.rel, &bytes, f.exec)?;
        }
        std::fs::create_dir_all(copy.join(".weft/base"))?;
        std::fs::write(copy.join(".weft/base/x"), "base")?;
        assert_eq!(check_copy(&ws, &copy)?, Vec::<String>::new());
        // Damage it four ways.
        let (script, plain) = (
            ws.synced.iter().find(|f| f.exec).context("a script")?,
            ws.synced.iter().find(|f| !f.exec && f.rel != ".gitignore").context("a file")?,
        );
        std::fs::set_permissions(copy.join(&script.rel), std::fs::Permissions::from_mode(0o644))?;
        std::fs::write(copy.join(&plain.rel), "changed")?;
        write_file(&copy, &ws.binary[0], b"\0", false)?;
        write_file(&copy, "stray.tmp", b"x", false)?;
        let problems = check_copy(&ws, &copy)?;
        assert_eq!(problems.len(), 5, "{problems:#?}"); // the binary is also unexpected
        Ok(())
    }
}
