//! Driving the real `raxe` binary: finding it, configuring destinations through its CLI,
//! running `raxe serve` (optionally under a wrapper such as valgrind), and reading its
//! peak RSS and CPU time from /proc while it runs.

use std::cell::OnceCell;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::feed::MSSP;
use super::process_tree;
use super::receiver::{HEC_TOKEN, SHARED_KEY, WORKSPACE};

pub type Res<T> = Result<T, String>;

/// `--raxe PATH`, else `raxe` next to this executable (target/<profile>/), as the harness
/// finds it.
pub fn locate(explicit: Option<&Path>) -> Res<PathBuf> {
    if let Some(p) = explicit {
        return p
            .is_file()
            .then(|| p.to_path_buf())
            .ok_or_else(|| format!("--raxe {}: no such file", p.display()));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut dir = exe.parent().map(Path::to_path_buf);
    for _ in 0..2 {
        let Some(d) = dir else { break };
        if d.join("raxe").is_file() {
            return Ok(d.join("raxe"));
        }
        dir = d.parent().map(Path::to_path_buf);
    }
    Err(format!(
        "no raxe binary next to {}: run `cargo build --release -p raxe-cli` first, or pass --raxe PATH",
        exe.display()
    ))
}

/// Where a destination points.
#[derive(Clone, Debug)]
pub enum Target {
    Hec(String),
    Sentinel(String),
    CefTcp(u16),
}

pub struct Raxe {
    pub bin: PathBuf,
    pub data: PathBuf,
    pub wrap: Option<String>,
}

impl Raxe {
    fn command(&self) -> Command {
        self.args(Command::new(&self.bin))
    }

    /// The data directory, quiet logs, no stdin.
    fn args(&self, mut c: Command) -> Command {
        c.arg("--data-dir")
            .arg(&self.data)
            .env("RAXE_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        c
    }

    /// `raxe customer siem configure c<i> --mssp bench ...` for destination `i`.
    pub fn configure(&self, i: usize, target: &Target, ctx: &super::scenario::Ctx<'_>) -> Res<()> {
        let customer = format!("c{i}");
        let mut args: Vec<String> = ["customer", "siem", "configure", &customer, "--mssp", MSSP]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut push = |xs: &[&str]| args.extend(xs.iter().map(|s| s.to_string()));
        match target {
            Target::Hec(url) => {
                push(&["--type", "splunk", "--url", url, "--token", HEC_TOKEN]);
                if let Some(c) = &ctx.compression {
                    push(&["--compression", c]);
                }
            }
            Target::Sentinel(url) => push(&[
                "--type",
                "sentinel",
                "--api",
                "data-collector",
                "--url",
                url,
                "--workspace-id",
                WORKSPACE,
                "--log-type",
                "RaxeBench",
                "--token",
                SHARED_KEY,
            ]),
            Target::CefTcp(port) => push(&[
                "--type",
                "cef",
                "--url",
                "syslog://127.0.0.1",
                "--transport",
                "tcp",
                "--port",
                &port.to_string(),
            ]),
        }
        let flush = ctx.flush_secs.to_string();
        push(&["--batch-size", "100", "--flush-interval", &flush]);
        if let Some(m) = ctx.max_in_flight {
            push(&["--max-in-flight", &m.to_string()]);
        }
        let out = self
            .command()
            .args(&args)
            .output()
            .map_err(|e| format!("run {}: {e}", self.bin.display()))?;
        if !out.status.success() {
            // The command line holds a token: name only the customer.
            return Err(format!(
                "raxe customer siem configure {customer} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    }

    /// Starts `raxe serve` (under `wrap` when set), its output to `log`.
    pub fn spawn_serve(&self, log: &Path) -> Res<Serve> {
        let log_file = std::fs::File::create(log).map_err(|e| e.to_string())?;
        let err_file = log_file.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = match &self.wrap {
            Some(w) => {
                let mut words = w.split_whitespace();
                let mut c = Command::new(words.next().ok_or("empty --wrap")?);
                c.args(words).arg(&self.bin);
                self.args(c)
            }
            None => self.command(),
        };
        cmd.arg("serve").stdout(log_file).stderr(err_file);
        let started = Instant::now();
        let child = cmd.spawn().map_err(|e| format!("spawn raxe serve: {e}"))?;
        Ok(Serve {
            child,
            started,
            wrapped_bin: self
                .wrap
                .as_ref()
                .map(|_| std::fs::canonicalize(&self.bin).unwrap_or_else(|_| self.bin.clone())),
            service: OnceCell::new(),
            under_wrapper: Vec::new(),
        })
    }

    /// Waits until a fresh service has its control socket (it is up and delivering).
    pub fn wait_ready(&self, serve: &mut Serve, timeout: Duration) -> Res<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.data.join("control.sock").exists() {
                return Ok(());
            }
            if let Ok(Some(status)) = serve.child.try_wait() {
                return Err(format!("raxe serve exited at start: {status}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err("raxe serve did not come up".into())
    }
}

pub struct Serve {
    pub child: Child,
    pub started: Instant,
    /// Started under `--wrap`: `child` is the wrapper, and this the raxe binary that one of
    /// its descendants runs (or the wrapper itself, as valgrind does).
    wrapped_bin: Option<PathBuf>,
    /// The wrapped service's pid, once seen.
    service: OnceCell<u32>,
    /// The wrapper's descendants, taken while it still ran (after it exits they are no
    /// longer found through it).
    under_wrapper: Vec<process_tree::Proc>,
}

/// Killed (SIGKILL) and reaped: a run that ends early (an error) leaves no process behind,
/// nor anything a wrapper started. A child already reaped (after `stop`) gets no signal.
impl Drop for Serve {
    fn drop(&mut self) {
        self.note_under_wrapper();
        let _ = self.child.kill();
        let _ = self.child.wait();
        process_tree::kill_all(&self.under_wrapper);
    }
}

impl Serve {
    /// A process run directly (no wrapper), started at `started`.
    pub fn direct(child: Child, started: Instant) -> Self {
        Serve {
            child,
            started,
            wrapped_bin: None,
            service: OnceCell::new(),
            under_wrapper: Vec::new(),
        }
    }

    /// The process whose memory and CPU are measured: the service's own, also under a
    /// wrapper that runs it as a child process (perf). The wrapper's when it runs the service
    /// inside itself (valgrind), or has not started it yet.
    pub fn pid(&self) -> u32 {
        let Some(bin) = &self.wrapped_bin else {
            return self.child.id();
        };
        if let Some(&pid) = self.service.get() {
            return pid;
        }
        let runs_bin =
            |pid: u32| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == *bin);
        match process_tree::descendants(self.child.id())
            .into_iter()
            .find(|p| runs_bin(p.pid))
        {
            Some(p) => *self.service.get_or_init(|| p.pid),
            None => self.child.id(),
        }
    }

    /// SIGTERM and wait (a wrapper such as callgrind writes its output then). What a wrapper
    /// leaves running when it exits gets SIGTERM too, and the rest of the wait.
    pub fn stop(mut self, timeout: Duration) {
        self.note_under_wrapper();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        process_tree::signal_all(&self.under_wrapper, libc::SIGTERM, deadline);
        // Anything still running: dropped, so killed and reaped.
    }

    /// Records the wrapper's descendants while it is alive and unreaped (so its pid is
    /// still its own).
    fn note_under_wrapper(&mut self) {
        if self.wrapped_bin.is_some() && self.under_wrapper.is_empty() {
            if let Ok(None) = self.child.try_wait() {
                self.under_wrapper = process_tree::descendants(self.child.id());
            }
        }
    }

    /// kill -9, and reap (what dropping it does).
    pub fn kill9(self) {
        drop(self);
    }
}

/// Peak resident set (VmHWM) of a live process, MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmHWM:")
}

/// Resident set now (VmRSS) of a live process, MiB.
pub fn rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmRSS:")
}

fn status_mib(pid: u32, key: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status_field::<f64>(&status, key).map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The number after `key` in a `/proc/.../status` text.
fn status_field<T: std::str::FromStr>(status: &str, key: &str) -> Option<T> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// CPU seconds (user + system, including reaped children) of a live process.
pub fn cpu_seconds(pid: u32) -> f64 {
    let (user, sys) = cpu_times(pid);
    user + sys
}

/// (user, system) CPU seconds of a live process, reaped children included.
pub fn cpu_times(pid: u32) -> (f64, f64) {
    let Some(f) = process_tree::stat_fields(pid) else {
        return (f64::NAN, f64::NAN);
    };
    // utime (field 14), stime (15), cutime (16) and cstime (17).
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (
        (tick(11) + tick(13)) as f64 / hz,
        (tick(12) + tick(14)) as f64 / hz,
    )
}

/// Context switches (voluntary, involuntary) of a live process's threads now alive: each
/// thread counts its own (`/proc/<pid>/task/*/status`). A thread that exited took its count.
pub fn context_switches(pid: u32) -> (u64, u64) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return (0, 0);
    };
    let mut total = (0, 0);
    for task in tasks.flatten() {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        total.0 += status_field::<u64>(&status, "voluntary_ctxt_switches:").unwrap_or(0);
        total.1 += status_field::<u64>(&status, "nonvoluntary_ctxt_switches:").unwrap_or(0);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in service (`sleep`) under a wrapper that backgrounds it and dies on a
    /// signal without passing it on, as `perf trace` leaves its workload.
    fn wrapped_sleeper(dir: &Path) -> (Raxe, Serve, process_tree::Proc) {
        // The wrapper is read by `sh`, not exec'd: a file just written can be busy (ETXTBSY)
        // while a parallel test's fork still holds its descriptor. It runs the "service"
        // (`sleep`, in place of raxe) without the service's arguments.
        let wrapper = dir.join("wrapper");
        std::fs::write(&wrapper, "\"$1\" 600 &\nwait\n").unwrap();
        let raxe = Raxe {
            bin: PathBuf::from("/bin/sleep"),
            data: dir.join("data"),
            wrap: Some(format!("sh {}", wrapper.display())),
        };
        let serve = raxe.spawn_serve(&dir.join("serve.log")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let service = loop {
            if let [only] = process_tree::descendants(serve.child.id())[..] {
                break only;
            }
            assert!(Instant::now() < deadline, "the wrapper started nothing");
            std::thread::sleep(Duration::from_millis(10));
        };
        (raxe, serve, service)
    }

    /// Dropping (what `kill9` and an early error do) stops what the wrapper started too.
    #[test]
    fn a_dropped_wrapped_service_leaves_no_process() {
        let dir = tempfile::tempdir().unwrap();
        let (_raxe, serve, service) = wrapped_sleeper(dir.path());
        assert!(service.running());
        // Measured is the service, not the wrapper, once it runs the service's binary.
        let deadline = Instant::now() + Duration::from_secs(10);
        while serve.pid() != service.pid {
            assert_eq!(serve.pid(), serve.child.id(), "neither wrapper nor service");
            assert!(
                Instant::now() < deadline,
                "the service's pid was never found"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        serve.kill9();
        assert!(!service.running(), "the wrapped service outlived the run");
    }

    /// `stop` sends SIGTERM to the wrapper, then to what it left running.
    #[test]
    fn a_stopped_wrapped_service_leaves_no_process() {
        let dir = tempfile::tempdir().unwrap();
        let (_raxe, serve, service) = wrapped_sleeper(dir.path());
        serve.stop(Duration::from_secs(10));
        assert!(!service.running(), "the wrapped service outlived the run");
    }

    /// A thread that sleeps switches out voluntarily, and the sum over this process's
    /// threads sees it.
    #[test]
    fn context_switches_count_every_thread() {
        let pid = std::process::id();
        let (before, _) = context_switches(pid);
        let sleeper = std::thread::spawn(move || {
            for _ in 0..20 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            context_switches(pid).0
        });
        let during = sleeper.join().unwrap();
        assert!(during >= before + 20, "{before} then {during}");
    }
}
