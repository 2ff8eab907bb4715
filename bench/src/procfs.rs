//! What Linux's `/proc` says about the processes of a run: peak and
//! current resident memory (`VmHWM`, `VmRSS`), CPU time of a process (all
//! its threads) or of the calling thread, the pid of a `weft hub` by its
//! data directory, and the pid of a child process by its arguments.
//!
//! CPU times come from `/proc/*/stat` in clock ticks, taken as 1/100 s
//! (`USER_HZ` is 100 on every Linux architecture Rust supports): 10 ms
//! resolution, plenty for runs of seconds.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};

/// `USER_HZ`: the unit of `utime`/`stime` in `/proc/*/stat`.
const TICKS_PER_SECOND: u64 = 100;

/// A `kB` field (`VmHWM`, `VmRSS`, ...) of `/proc/PID/status`.
fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("process {pid}"))?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|rest| rest.starts_with(':')))
        .with_context(|| format!("no {field} line"))?;
    let kib = line[field.len() + 1..].trim().trim_end_matches("kB").trim();
    kib.parse().with_context(|| format!("unreadable {line:?}"))
}

/// Peak resident set (`VmHWM`) of process `pid`, in KiB.
pub fn vm_hwm_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmHWM")
}

/// Current resident set (`VmRSS`) of process `pid`, in KiB.
pub fn vm_rss_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmRSS")
}

/// User + system CPU time from a `stat` file's text.
fn cpu_of_stat(stat: &str) -> anyhow::Result<Duration> {
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses,
    // so count fields after the last `)`. utime and stime are fields 14
    // and 15, i.e. the 12th and 13th after the comm.
    let rest = stat.rsplit_once(')').context("no ')' in stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields.get(i).context("short stat line")?.parse::<u64>().context("unreadable CPU ticks")
    };
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_millis(total * 1000 / TICKS_PER_SECOND))
}

/// CPU time used so far by process `pid` (all threads).
pub fn process_cpu(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("process {pid}"))?;
    cpu_of_stat(&stat)
}

/// CPU time used so far by the calling thread.
pub fn thread_cpu() -> anyhow::Result<Duration> {
    cpu_of_stat(&std::fs::read_to_string("/proc/thread-self/stat").context("/proc/thread-self/stat")?)
}

/// The pid of the `weft hub` whose `--data` is `data` (the harness keeps
/// its child process private).
pub fn hub_pid(data: &Path) -> anyhow::Result<u32> {
    let want = data.as_os_str().as_encoded_bytes();
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        if args.contains(&&b"hub"[..]) && args.windows(2).any(|w| w[0] == b"--data" && w[1] == want) {
            return Ok(pid);
        }
    }
    bail!("no running weft hub with --data {}", data.display())
}

/// The parent pid from a `stat` file's text.
fn parent_of_stat(stat: &str) -> Option<u32> {
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// The pid of a child of this process whose arguments contain `args` in a
/// row (the harness's `WeftProcess` keeps its child private).
pub fn child_pid(args: &[&str]) -> anyhow::Result<u32> {
    let me = std::process::id();
    let want: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    for entry in std::fs::read_dir("/proc").context("listing /proc")? {
        let entry = entry.context("listing /proc")?;
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        if parent_of_stat(&stat) != Some(me) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let argv: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        if argv.windows(want.len()).any(|w| w == want.as_slice()) {
            return Ok(pid);
        }
    }
    bail!("no child process with arguments {args:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_measured() -> anyhow::Result<()> {
        assert!(vm_hwm_kib(std::process::id())? > 0);
        assert!(vm_rss_kib(std::process::id())? > 0);
        process_cpu(std::process::id())?;
        thread_cpu()?;
        Ok(())
    }

    #[test]
    fn stat_lines_with_odd_names_parse() -> anyhow::Result<()> {
        let line = "42 (we ft) x) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 1 1 1";
        assert_eq!(cpu_of_stat(line)?, Duration::from_secs(3));
        assert!(cpu_of_stat("42 (x) S 1").is_err());
        assert_eq!(parent_of_stat(line), Some(1));
        Ok(())
    }

    #[test]
    fn a_child_is_found_by_its_arguments() -> anyhow::Result<()> {
        let mut child = std::process::Command::new("sleep").arg("7.25").spawn()?;
        // Right after the fork, the child still shows this test's command
        // line until it has exec'd `sleep`.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut found = child_pid(&["sleep", "7.25"]);
        while found.is_err() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            found = child_pid(&["sleep", "7.25"]);
        }
        child.kill()?;
        child.wait()?;
        assert_eq!(found?, child.id());
        assert!(child_pid(&["sleep", "7.5"]).is_err());
        Ok(())
    }
}
