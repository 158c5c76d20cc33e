//! The processes a `--wrap` command (perf, valgrind, a shell) started, so that a run leaves
//! none of them behind. A wrapper that exits on SIGTERM or SIGKILL without stopping its
//! child (`perf trace` does) leaves `raxe serve` running, reparented away from us, and a
//! stray service skews every figure measured after it.

/// One process, told apart from a later one that reuses its pid by its start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    start: u64,
}

/// The fields of `/proc/<pid>/stat` from the state on: index `i` is proc(5)'s field `i + 3`.
/// They are counted after the command name's last ')', since the name may contain spaces.
pub fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Parent pid (field 4), start time (22, clock ticks since boot) and state (3).
fn stat(pid: u32) -> Option<(u32, u64, char)> {
    let f = stat_fields(pid)?;
    let state = f.first()?.chars().next()?;
    Some((f.get(1)?.parse().ok()?, f.get(19)?.parse().ok()?, state))
}

/// Every live descendant of `root` now: its children, theirs, and so on.
pub fn descendants(root: u32) -> Vec<Proc> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let all: Vec<(u32, u32, u64)> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| stat(pid).map(|(ppid, start, _)| (pid, ppid, start)))
        .collect();
    let mut found = Vec::new();
    let mut parents = vec![root];
    while let Some(parent) = parents.pop() {
        for &(pid, ppid, start) in &all {
            // Each process has one parent, and each parent is visited once.
            if ppid == parent {
                found.push(Proc { pid, start });
                parents.push(pid);
            }
        }
    }
    found
}

impl Proc {
    /// Still this process (not a later one with its pid), and not a zombie.
    pub fn running(&self) -> bool {
        matches!(stat(self.pid), Some((_, start, state)) if start == self.start && state != 'Z')
    }

    /// Sends `signal` if it is still running.
    pub fn signal(&self, signal: i32) {
        if self.running() {
            // SAFETY: kill(2) on a process we just saw running with its recorded start time.
            unsafe { libc::kill(self.pid as i32, signal) };
        }
    }
}

/// Sends `signal` to whatever of `procs` still runs, and waits until none does or
/// `deadline` passes.
pub fn signal_all(procs: &[Proc], signal: i32, deadline: std::time::Instant) {
    for p in procs {
        p.signal(signal);
    }
    while procs.iter().any(Proc::running) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// SIGKILLs whatever of `procs` still runs and waits (up to 5 s) until none does.
pub fn kill_all(procs: &[Proc]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    signal_all(procs, libc::SIGKILL, deadline);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A shell that backgrounds a child: the child is found as a descendant, and once the
    /// shell is killed (the child reparented away) `kill_all` still stops it.
    #[test]
    fn an_orphaned_grandchild_is_found_and_stopped() {
        let mut shell = Command::new("sh")
            .args(["-c", "sleep 600 & wait"])
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut below = descendants(shell.id());
        while below.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
            below = descendants(shell.id());
        }
        assert_eq!(below.len(), 1, "{below:?}");
        assert!(below[0].running());

        shell.kill().unwrap();
        shell.wait().unwrap();
        assert!(
            below[0].running(),
            "sleep outlives the shell that started it"
        );
        kill_all(&below);
        assert!(!below[0].running());
    }

    #[test]
    fn a_process_without_children_has_no_descendants() {
        let mut sleeper = Command::new("sleep").arg("600").spawn().unwrap();
        assert!(descendants(sleeper.id()).is_empty());
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
    }
}
