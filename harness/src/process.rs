//! Finding and running the `raxe` binary.

use super::*;

/// Finds the `raxe` binary: `--raxe`, else next to this executable (target/<profile>/),
/// else one directory up (test executables live in target/<profile>/deps/).
pub fn locate_raxe(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        bail!("--raxe {}: no such file", p.display());
    }
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().map(Path::to_path_buf);
    for _ in 0..2 {
        let Some(d) = dir else { break };
        let candidate = d.join("raxe");
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d.parent().map(Path::to_path_buf);
    }
    bail!(
        "cannot find the raxe binary next to {}; build it first (`cargo build [--release] -p raxe-cli`) or pass --raxe PATH",
        exe.display()
    )
}

pub(crate) struct Raxe {
    pub(crate) bin: PathBuf,
    pub(crate) data: PathBuf,
}

impl Raxe {
    pub(crate) fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--data-dir")
            .arg(&self.data)
            .env("RAXE_LOG", "warn")
            .env("NO_COLOR", "1");
        c
    }

    pub(crate) fn run(&self, args: &[String]) -> Result<Output> {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("run {}", self.bin.display()))
    }

    pub(crate) fn run_ok(&self, args: &[String]) -> Result<String> {
        let out = self.run(args)?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            bail!("raxe {} failed: {text}", args.join(" "));
        }
        Ok(text)
    }

    /// Spawns `raxe serve`, retrying while the data directory is locked by a direct
    /// `raxe ingest`. Returns the child, how many attempts were refused, and when the
    /// successful one was started.
    pub(crate) fn spawn_serve(&self, log: &Path) -> Result<(Child, usize, Instant)> {
        let mut refused = 0;
        loop {
            let log_file = OpenOptions::new().create(true).append(true).open(log)?;
            let spawned = Instant::now();
            let mut child = self
                .command()
                .args([
                    "serve",
                    "--poll-interval-ms",
                    "50",
                    "--shutdown-timeout",
                    "5",
                ])
                .stdin(Stdio::null())
                .stdout(log_file.try_clone()?)
                .stderr(log_file)
                .spawn()
                .context("spawn raxe serve")?;
            // An "already running" refusal exits at once; anything else keeps running.
            let deadline = Instant::now() + Duration::from_millis(150);
            let mut exited = None;
            while Instant::now() < deadline {
                if let Some(status) = child.try_wait()? {
                    exited = Some(status);
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            match exited {
                None => return Ok((child, refused, spawned)),
                Some(status) => {
                    refused += 1;
                    if refused > 200 {
                        bail!(
                            "raxe serve keeps exiting at start ({status}); see {}",
                            log.display()
                        );
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}
