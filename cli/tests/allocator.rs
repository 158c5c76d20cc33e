//! The shipped binary runs on jemalloc with the options compiled into `src/allocator.rs`.
//! `background_thread:true` is one of them: jemalloc then runs purge threads named
//! `jemalloc_bg_thd`, which is how a test outside the process can tell the options took.
#![cfg(all(target_os = "linux", feature = "jemalloc"))]

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::RAXE;

fn thread_names(pid: u32) -> Vec<String> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect()
}

#[test]
fn serve_runs_on_jemalloc_with_compiled_in_options() {
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Command::new(RAXE)
        .arg("--data-dir")
        .arg(dir.path())
        .arg("serve")
        .env("RAXE_LOG", "warn")
        .env_remove("_RJEM_MALLOC_CONF")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn raxe serve");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut names = Vec::new();
    while Instant::now() < deadline {
        names = thread_names(serve.id());
        if names.iter().any(|n| n == "jemalloc_bg_thd") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(
        names.iter().any(|n| n == "jemalloc_bg_thd"),
        "no jemalloc background thread; threads: {names:?}"
    );
}
