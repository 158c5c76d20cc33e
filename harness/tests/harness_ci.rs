//! The short crash/fault run of issue #6, as part of `cargo test --workspace`: the real
//! `raxe serve` (debug build) is stopped 12 times (9 SIGKILLs, 3 SIGTERMs) while 8,000
//! events flow to nine local receivers that misbehave on a schedule (every fault kind the
//! harness has). The long runs are documented in harness/README.md.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime};

const HARNESS: &str = env!("CARGO_BIN_EXE_raxe-harness");

/// Newest modification time of the sources the `raxe` binary is built from.
fn newest_source(root: &Path) -> SystemTime {
    fn walk(dir: &Path, newest: &mut SystemTime) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, newest);
            } else if path
                .extension()
                .is_some_and(|e| e == "rs" || e == "toml" || e == "lock")
            {
                if let Ok(m) = entry.metadata().and_then(|m| m.modified()) {
                    *newest = (*newest).max(m);
                }
            }
        }
    }
    let mut newest = SystemTime::UNIX_EPOCH;
    for dir in ["cli/src", "engine/src", "adapters/src", "storage/src"] {
        walk(&root.join(dir), &mut newest);
    }
    for file in [
        "Cargo.lock",
        "cli/Cargo.toml",
        "engine/Cargo.toml",
        "adapters/Cargo.toml",
        "storage/Cargo.toml",
    ] {
        if let Ok(m) = std::fs::metadata(root.join(file)).and_then(|m| m.modified()) {
            newest = newest.max(m);
        }
    }
    newest
}

/// The `raxe` binary of this build (`cargo test --workspace` builds it next to the harness);
/// if it is missing or older than its sources, build a fresh one in a separate target dir
/// (so this does not wait on the outer cargo's lock).
fn raxe_binary() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let beside = Path::new(HARNESS).with_file_name("raxe");
    let fresh = std::fs::metadata(&beside)
        .and_then(|m| m.modified())
        .is_ok_and(|built| built >= newest_source(root));
    if fresh {
        return beside;
    }
    let target = Path::new(HARNESS)
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("harness-ci");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!(
        "{} is missing or stale: building raxe into {}",
        beside.display(),
        target.display()
    );
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["build", "-p", "raxe-cli", "--bin", "raxe", "--target-dir"])
        .arg(&target)
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build -p raxe-cli failed");
    target.join("debug/raxe")
}

#[test]
fn short_crash_and_fault_run_loses_nothing() {
    let raxe = raxe_binary();
    let started = Instant::now();
    let out = Command::new(HARNESS)
        .args([
            "crash",
            "--events",
            "8000",
            "--kills",
            "12",
            "--seed",
            "20260128",
            "--kill-min-ms",
            "300",
            "--kill-max-ms",
            "1200",
            "--drain-timeout",
            "90",
            "--raxe",
        ])
        .arg(&raxe)
        .output()
        .expect("run raxe-harness");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}{stderr}");
    println!("harness took {:.1}s", started.elapsed().as_secs_f64());
    assert!(
        out.status.success(),
        "harness failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("PASS"), "{stdout}");
    for dest in [
        "splunk",
        "sentinel",
        "syslog",
        "logscale",
        "cef",
        "tls",
        "syslog-tls",
        "syslog-udp",
        "splunk-ack",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().next() == Some(dest)),
            "{dest} missing:\n{stdout}"
        );
    }
}

/// The data directory on a 48 MB tmpfs that fills up (needs root for `mount`; skips itself
/// otherwise, saying so): the service refuses intake, keeps everything, and resumes by itself
/// once space returns.
#[test]
fn disk_full_refuses_then_resumes() {
    let raxe = raxe_binary();
    let out = Command::new(HARNESS)
        .args(["disk-full", "--drain-timeout", "60", "--raxe"])
        .arg(&raxe)
        .output()
        .expect("run raxe-harness");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}");
}
