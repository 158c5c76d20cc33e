//! sled's IO thread pool, patched in `vendor/sled` to wake one idle thread per job: every
//! durable append hands a log buffer write to the pool, so waking all seven idle threads
//! per job costs ~16 context switches per 1,000 events end to end (`vendor/README.md`).
//!
//! Its own test binary: the pool is a process-wide static, and other tests would add
//! their own jobs to the count.

use std::fs;

use raxe_storage::{Queue, SledStore};

/// Voluntary context switches of sled's IO threads so far, and how many there are.
fn sled_io_switches() -> (u64, usize) {
    let mut switches = 0;
    let mut threads = 0;
    for task in fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        let Ok(name) = fs::read_to_string(dir.join("comm")) else {
            continue; // the thread ended
        };
        if !name.starts_with("sled-io-") {
            continue;
        }
        let Ok(status) = fs::read_to_string(dir.join("status")) else {
            continue;
        };
        threads += 1;
        switches += status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .map(|v| v.trim().parse::<u64>().unwrap())
            .unwrap();
    }
    (switches, threads)
}

#[test]
fn a_durable_append_wakes_one_sled_io_thread_not_all() {
    // On tmpfs no write waits for a disk, so an IO thread switches only when it sleeps.
    let dir = tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap());
    let store = SledStore::open(dir.path()).unwrap();
    let q = store.queue("io").unwrap();
    let record = vec![b'x'; 300];
    q.append(&[&record[..]]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));

    let (before, threads) = sled_io_switches();
    assert!(
        threads >= 7,
        "sled keeps seven idle IO threads; saw {threads}"
    );
    const APPENDS: u64 = 200;
    for _ in 0..APPENDS {
        q.append(&[&record[..]]).unwrap();
    }
    let (after, _) = sled_io_switches();

    // Measured here: 2.0 switches per append with the patch, 7.7 without (all seven idle
    // threads wake for each log buffer write).
    let per_append = (after - before) as f64 / APPENDS as f64;
    assert!(
        per_append < 4.5,
        "{per_append:.1} IO thread switches per durable append ({threads} IO threads): \
         is the vendored sled's notify_one patch (vendor/README.md) in place?"
    );
}
