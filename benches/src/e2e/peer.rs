//! A production log shipper measured on the same machine, in the same way: syslog-ng
//! (Debian's, with `syslog-ng-mod-http`) reads the same spool files, keeps what it read in
//! a reliable disk buffer (or in memory, see [`Buffer`]), and posts HEC batches of 100 to
//! the same counting receiver.
//! Issue 7's Fluent Bit and Vector figures come from another machine; this one is a ratio
//! that needs none.
//!
//! What it promises is weaker than raxe's: its reliable disk buffer survives a crash of
//! the process (it writes each message to its buffer file before taking the next), but it
//! does not fdatasync per message, so a power loss can lose what the page cache held.
//! syslog-ng 3.38's `http()` cannot gzip, so compare it with raxe at `--compression none`
//! (Fluent Bit's and Vector's Splunk outputs also default to no compression).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::raxe::{Res, Serve};
use super::receiver::HEC_TOKEN;

/// Where Debian installs it; `scripts/test.sh` installs syslog-ng-core for the test suite,
/// the HTTP module is `syslog-ng-mod-http`.
const SYSLOG_NG: &str = "/usr/sbin/syslog-ng";

/// Where syslog-ng keeps what it read and has not yet sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Buffer {
    /// A reliable disk buffer: each message is written to it before the next is read
    /// (not fdatasynced).
    Disk,
    /// Its default queue in memory (`log-fifo-size`). Not what Fluent Bit's memory
    /// buffering is in issue 7 (which lost events to a kill): with flow control the file
    /// source moves its saved position only past messages the destination took, so a
    /// kill -9 repeats them (`peer-syslog-ng-mem-kill`: none lost).
    Memory,
}

/// The configuration for a syslog-ng that reads `*.jsonl` files as agents drop them into
/// `spool` (a line is one message, not parsed as syslog) and posts each as a HEC
/// `{"event":LINE}` envelope, in batches of 100 or after `flush_secs`, through `buffer`
/// (a disk buffer lives in `buffer_dir`). Flow control holds the file reader back while
/// the buffer is full, so nothing is dropped.
pub fn syslog_ng_config(
    spool: &Path,
    buffer: Buffer,
    buffer_dir: &Path,
    hec_url: &str,
    flush_secs: u64,
) -> String {
    let buffer = match buffer {
        Buffer::Disk => format!(
            r#"
       disk-buffer(reliable(yes) disk-buf-size(2147483648) mem-buf-size(16777216)
                   dir("{}"))"#,
            buffer_dir.display()
        ),
        Buffer::Memory => String::new(),
    };
    format!(
        r#"@version: 3.38
options {{ stats-freq(0); threaded(yes); log-msg-size(65536); }};
source s_spool {{
  wildcard-file(base-dir("{spool}") filename-pattern("*.jsonl") flags(no-parse)
                recursive(no) max-files(100) follow-freq(0.1)
                log-fetch-limit(1000) log-iw-size(100000));
}};
destination d_hec {{
  http(url("{hec_url}") method("POST")
       headers("Authorization: Splunk {HEC_TOKEN}", "Content-Type: application/json")
       body("{{\"event\":${{MSG}}}}")
       batch-lines(100) batch-timeout({batch_ms}) workers(1) log-fifo-size(100000){buffer});
}};
log {{ source(s_spool); destination(d_hec); flags(flow-control); }};
"#,
        spool = spool.display(),
        batch_ms = flush_secs.max(1) * 1000,
    )
}

/// Starts syslog-ng in the foreground under `dir` (its configuration, persist file,
/// control socket, disk buffer and spool all in there), its output to `log`. Returns once
/// its control socket is up, with the spool directory it reads.
pub fn start_syslog_ng(
    dir: &Path,
    buffer: Buffer,
    hec_url: &str,
    flush_secs: u64,
    log: &Path,
) -> Res<(Serve, PathBuf)> {
    if !syslog_ng_installed() {
        return Err(format!(
            "{SYSLOG_NG} or its HTTP module not found: apt-get install syslog-ng-core syslog-ng-mod-http"
        ));
    }
    let (spool, buffer_dir) = (dir.join("spool"), dir.join("buffer"));
    for d in [&spool, &buffer_dir] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let conf = dir.join("syslog-ng.conf");
    std::fs::write(
        &conf,
        syslog_ng_config(&spool, buffer, &buffer_dir, hec_url, flush_secs),
    )
    .map_err(|e| format!("{}: {e}", conf.display()))?;
    let control = dir.join("syslog-ng.ctl");
    let out = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let child = Command::new(SYSLOG_NG)
        .arg("--foreground")
        .arg("--no-caps")
        .arg("--cfgfile")
        .arg(&conf)
        .arg("--persist-file")
        .arg(dir.join("syslog-ng.persist"))
        .arg("--pidfile")
        .arg(dir.join("syslog-ng.pid"))
        .arg("--control")
        .arg(&control)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("spawn {SYSLOG_NG}: {e}"))?;
    let mut serve = Serve::direct(child, started);
    while !control.exists() {
        if let Ok(Some(status)) = serve.child.try_wait() {
            return Err(format!(
                "syslog-ng exited at start ({status}); is syslog-ng-mod-http installed? see {}",
                log.display()
            ));
        }
        if started.elapsed() > Duration::from_secs(30) {
            serve.kill9();
            return Err("syslog-ng did not come up in 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok((serve, spool))
}

/// Whether syslog-ng and its `http()` destination (Debian's `syslog-ng-mod-http`) are
/// installed.
pub fn syslog_ng_installed() -> bool {
    Path::new(SYSLOG_NG).is_file() && http_module_installed()
}

fn http_module_installed() -> bool {
    std::fs::read_dir("/usr/lib/syslog-ng")
        .map(|versions| {
            versions
                .flatten()
                .any(|v| v.path().join("libhttp.so").is_file())
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration is valid for the syslog-ng on this machine (where there is one)
    /// and sends what the receiver counts: the agent's line as the HEC event, untouched.
    #[test]
    fn the_syslog_ng_configuration_parses_and_wraps_each_line_as_a_hec_event() {
        let dir = tempfile::tempdir().unwrap();
        let conf = syslog_ng_config(
            &dir.path().join("spool"),
            Buffer::Disk,
            &dir.path().join("buffer"),
            "http://127.0.0.1:9/services/collector/event",
            1,
        );
        assert!(conf.contains(r#"body("{\"event\":${MSG}}")"#), "{conf}");
        assert!(
            conf.contains("batch-lines(100) batch-timeout(1000)"),
            "{conf}"
        );
        assert!(conf.contains(&format!("Splunk {HEC_TOKEN}")), "{conf}");
        assert!(conf.contains("disk-buffer(reliable(yes)"), "{conf}");
        let in_memory = syslog_ng_config(
            &dir.path().join("spool"),
            Buffer::Memory,
            &dir.path().join("buffer"),
            "http://127.0.0.1:9/services/collector/event",
            1,
        );
        assert!(!in_memory.contains("disk-buffer"), "{in_memory}");
        if !syslog_ng_installed() {
            eprintln!("no {SYSLOG_NG} with its HTTP module here: syntax not checked");
            return;
        }
        for conf in [conf, in_memory] {
            let path = dir.path().join("syslog-ng.conf");
            std::fs::write(&path, &conf).unwrap();
            let out = Command::new(SYSLOG_NG)
                .arg("--syntax-only")
                .arg("--cfgfile")
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "syslog-ng refused the configuration: {}\n{conf}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// The whole scenario on a small feed: syslog-ng takes the spool files in and the
    /// receiver counts every event once (the scenario fails on a stall or a missing event).
    #[test]
    fn syslog_ng_delivers_every_event_of_a_small_feed() {
        if !syslog_ng_installed() {
            eprintln!("no {SYSLOG_NG} with its HTTP module here: not run");
            return;
        }
        let rt = super::super::scenario::test_runtime();
        let ctx = super::super::scenario::Ctx::for_peer(&rt, 500);
        let run = super::super::scenario::peer_syslog_ng(&ctx, Buffer::Disk, 2_000).unwrap();
        assert_eq!(run.duplicates, 0, "{run:?}");
    }
}
