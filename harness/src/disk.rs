//! `raxe-harness disk-full`: the data directory on a small tmpfs that fills up.
//!
//! The destination is disabled (events keep queueing), a ballast file leaves only a few MB
//! free, and spool files (kept outside the tmpfs with `serve --spool`) are fed until the
//! service stops taking them. Expected: the service stays up, says why in its log, leaves
//! the refused spool files in place, keeps what it queued; after the ballast is removed and
//! the destination enabled, everything handed over is delivered exactly as fed.
//! Needs root for `mount -t tmpfs`; skipped with a note otherwise.

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use raxe_tests::hec::HecReceiver;

use crate::{locate_raxe, Options, Raxe};

const TOKEN: &str = "12345678-1234-1234-1234-1234567890AB";

fn free_bytes(path: &Path) -> Result<u64> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    // SAFETY: a valid C string and a zeroed out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// An event with 200 hex digits of noise: queued chunks are LZ4-packed, and a repeated pad
/// would pack so well that the disk never filled.
fn line(seq: usize) -> String {
    let mut x = seq as u64 ^ 0x9E37_79B9_7F4A_7C15;
    let pad: String = (0..25)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            format!("{:08x}", (x >> 32) as u32)
        })
        .collect();
    format!(
        r#"{{"event_id":"d-{seq}","timestamp":1769769000123,"threat_detected":true,"severity":"high","rule_ids":["pi-001"],"families":["PI"],"prompt_hash":"sha256:ab","prompt_length":42,"customer_id":"c-disk","mssp_id":"harness","agent_id":"harness","pad":"{pad}"}}"#
    )
}

/// Runs the scenario; returns the printed report and whether it passed.
pub fn run_disk_full(o: &Options) -> Result<(String, bool)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async_run(o))
}

async fn async_run(o: &Options) -> Result<(String, bool)> {
    let mut out = String::new();
    let mut failures: Vec<String> = Vec::new();
    let work = o.work_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("raxe-harness-disk-{}", std::process::id()))
    });
    let mnt = work.join("tmpfs");
    let spool = work.join("spool");
    fs::create_dir_all(&mnt)?;
    fs::create_dir_all(&spool)?;
    let size_mb = 48;
    let mount = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
        .arg(&mnt)
        .output();
    match mount {
        Ok(m) if m.status.success() => {}
        other => {
            let why = match other {
                Ok(m) => String::from_utf8_lossy(&m.stderr).trim().to_string(),
                Err(e) => e.to_string(),
            };
            let _ = fs::remove_dir_all(&work);
            return Ok((
                format!("disk-full: SKIPPED: cannot mount a tmpfs ({why}); needs root"),
                true,
            ));
        }
    }
    let result = scenario(o, &work, &mnt, &spool, &mut out, &mut failures).await;
    let umount = Command::new("umount").arg(&mnt).status();
    if let Err(e) = result {
        failures.push(format!("scenario error: {e:#}"));
    }
    if !matches!(umount, Ok(s) if s.success()) {
        failures.push(format!("cannot unmount {}", mnt.display()));
    }
    let passed = failures.is_empty();
    if passed {
        out.push_str("\nPASS: refused intake while full, kept everything, resumed, lost nothing\n");
        if !o.keep {
            let _ = fs::remove_dir_all(&work);
        }
    } else {
        out.push_str("\nFAIL:\n");
        for f in &failures {
            out.push_str(&format!("  - {f}\n"));
        }
        out.push_str(&format!("work directory kept: {}\n", work.display()));
    }
    Ok((out, passed))
}

async fn scenario(
    o: &Options,
    work: &Path,
    mnt: &Path,
    spool: &Path,
    out: &mut String,
    failures: &mut Vec<String>,
) -> Result<()> {
    let raxe = Raxe {
        bin: locate_raxe(o.raxe.as_deref())?,
        data: mnt.join("data"),
    };
    let hec = HecReceiver::start(TOKEN).await;
    let configure: Vec<String> = [
        "customer",
        "siem",
        "configure",
        "c-disk",
        "--mssp",
        "harness",
        "--type",
        "splunk",
        "--url",
        &hec.url(),
        "--token",
        TOKEN,
        "--flush-interval",
        "0",
        "--timeout",
        "2",
    ]
    .map(String::from)
    .to_vec();
    raxe.run_ok(&configure)?;
    raxe.run_ok(&["customer", "siem", "disable", "c-disk", "--mssp", "harness"].map(String::from))?;
    let log = work.join("serve.log");
    let spawn = |raxe: &Raxe| -> Result<std::process::Child> {
        let f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        Ok(raxe
            .command()
            .args(["serve", "--poll-interval-ms", "50", "--spool"])
            .arg(spool)
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()?)
    };
    let mut serve = spawn(&raxe)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Leave ~6 MB free.
    let free = free_bytes(mnt)?;
    let ballast = mnt.join("ballast");
    let keep_free = 6 << 20;
    let ballast_len = free.saturating_sub(keep_free);
    let chunk = vec![0x55u8; 1 << 20];
    {
        use std::io::Write;
        let mut f = fs::File::create(&ballast)?;
        let mut left = ballast_len;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            if f.write_all(&chunk[..n]).is_err() {
                break;
            }
            left -= n as u64;
        }
        let _ = f.sync_all();
    }
    out.push_str(&format!(
        "disk-full: tmpfs 48 MB, ballast {} MB, {} MB free before feeding\n",
        ballast_len >> 20,
        free_bytes(mnt)? >> 20
    ));

    // Feed 1,000-event files until one is not taken for 3 s.
    let mut seq = 0;
    let mut files = 0;
    let started = Instant::now();
    let mut stuck = None;
    while seq < o.events.max(1000) * 10 && started.elapsed() < Duration::from_secs(120) {
        let name = format!("d-{files:05}.jsonl");
        let body: String = (seq..seq + 1000).map(|s| line(s) + "\n").collect();
        let tmp = spool.join(format!("{name}.tmp"));
        fs::write(&tmp, body)?;
        fs::rename(&tmp, spool.join(&name))?;
        seq += 1000;
        files += 1;
        let deadline = Instant::now() + Duration::from_secs(3);
        while spool.join(&name).exists() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if spool.join(&name).exists() {
            stuck = Some(name);
            break;
        }
        if let Some(status) = serve.try_wait()? {
            failures.push(format!(
                "raxe serve exited while filling the disk: {status}"
            ));
            break;
        }
    }
    let Some(stuck) = stuck else {
        failures.push(format!(
            "the disk never filled ({} events queued); nothing tested",
            seq
        ));
        let _ = serve.kill();
        return Ok(());
    };
    let log_text = fs::read_to_string(&log).unwrap_or_default();
    let reason = log_text
        .lines()
        .rfind(|l| l.contains(&stuck) || l.to_lowercase().contains("space"))
        .unwrap_or("(nothing in the log)")
        .to_string();
    out.push_str(&format!(
        "disk-full: {files} spool files fed ({seq} events); {stuck} refused; service says: {}\n",
        reason.chars().take(300).collect::<String>()
    ));
    if let Some(status) = serve.try_wait()? {
        failures.push(format!("raxe serve died when the disk filled: {status}"));
        serve = spawn(&raxe)?;
    }
    // Another second full: the service must stay up and keep the file.
    tokio::time::sleep(Duration::from_secs(1)).await;
    if let Some(status) = serve.try_wait()? {
        failures.push(format!("raxe serve died while the disk was full: {status}"));
    }
    // Space returns; delivery enabled again.
    fs::remove_file(&ballast)?;
    let t = Instant::now();
    raxe.run_ok(&["customer", "siem", "enable", "c-disk", "--mssp", "harness"].map(String::from))?;
    let total = seq;
    let resume_wait = Duration::from_secs(20).min(o.drain_timeout);
    let resumed = hec.wait_for(total, resume_wait).await && !spool.join(&stuck).exists();
    let ids: HashSet<String> = hec.accepted().into_iter().collect();
    out.push_str(&format!(
        "disk-full: {:.1}s after space returned (no restart): {} of {total} delivered, {} duplicates, refused spool file taken: {}\n",
        t.elapsed().as_secs_f64(),
        ids.len(),
        hec.accepted_count() - ids.len(),
        !spool.join(&stuck).exists()
    ));
    if !resumed {
        let log_now = fs::read_to_string(&log).unwrap_or_default();
        let sticky = log_now
            .lines()
            .rev()
            .find(|l| l.contains("No space left") || l.contains("reopen the store"))
            .unwrap_or("")
            .chars()
            .take(400)
            .collect::<String>();
        failures.push(format!(
            "the service did not resume within {resume_wait:?} after space returned (needs a restart); last storage error: {sticky}"
        ));
        // Restart (SIGTERM, then start again) and check that nothing was lost.
        // SAFETY: signalling our own child.
        unsafe { libc::kill(serve.id() as i32, libc::SIGTERM) };
        let status = tokio::task::spawn_blocking(move || serve.wait()).await??;
        out.push_str(&format!(
            "disk-full: restarted serve (SIGTERM exit: {status})\n"
        ));
        serve = spawn(&raxe)?;
        let t2 = Instant::now();
        let before = hec.accepted_count();
        let _ = hec.wait_for(before.max(total), o.drain_timeout).await;
        // Wait for every id, not just the count (duplicates inflate it).
        let deadline = Instant::now() + o.drain_timeout;
        loop {
            let got: HashSet<String> = hec.accepted().into_iter().collect();
            if (0..total).all(|s| got.contains(&format!("d-{s}"))) || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let ids: HashSet<String> = hec.accepted().into_iter().collect();
        out.push_str(&format!(
            "disk-full: {:.1}s after the restart: {} of {total} delivered, {} duplicates, refused spool file taken: {}\n",
            t2.elapsed().as_secs_f64(),
            ids.len(),
            hec.accepted_count() - ids.len(),
            !spool.join(&stuck).exists()
        ));
    }
    let ids: HashSet<String> = hec.accepted().into_iter().collect();
    let lost: Vec<usize> = (0..total)
        .filter(|s| !ids.contains(&format!("d-{s}")))
        .collect();
    if !lost.is_empty() {
        failures.push(format!(
            "{} events lost after the disk filled (first: {:?})",
            lost.len(),
            lost.iter().take(5).collect::<Vec<_>>()
        ));
    }
    if spool.join(&stuck).exists() {
        failures.push(format!("{stuck} never ingested"));
    }
    if fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("panicked")
    {
        failures.push("raxe serve panicked; see serve.log".into());
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(serve.id() as i32, libc::SIGTERM) };
    let status = tokio::task::spawn_blocking(move || serve.wait())
        .await?
        .context("wait serve")?;
    if !status.success() {
        failures.push(format!("raxe serve did not stop cleanly: {status}"));
    }
    Ok(())
}
