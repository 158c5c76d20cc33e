//! Crash test with real processes: a child appends, leases and acks in a loop and reports
//! every append that returned Ok and every ack on stdout; the parent SIGKILLs it at random
//! moments, reopens the store and checks that every reported record is still there (unless
//! an ack was attempted), in order, intact, and that every completed ack stuck.
//!
//! The child is this same test binary re-executed with `RAXE_STORAGE_CRASH_CHILD` set.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use raxe_storage::{Queue, SledStore, StoreOptions};

const CHILD_ENV: &str = "RAXE_STORAGE_CRASH_CHILD";
const SEED_ENV: &str = "RAXE_STORAGE_CRASH_SEED";
const KILLS: usize = 40;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Self-describing record content: "c<counter>:" then filler derived from the counter.
fn content(counter: u64) -> Vec<u8> {
    let mut v = format!("c{counter}:").into_bytes();
    let len = (counter * 37 % 300) as usize;
    v.extend((0..len).map(|i| b'a' + ((counter as usize + i) % 26) as u8));
    v
}

fn parse_counter(data: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(data).ok()?;
    let rest = s.strip_prefix('c')?;
    let counter: u64 = rest.split(':').next()?.parse().ok()?;
    (content(counter) == data).then_some(counter)
}

fn opts() -> StoreOptions {
    StoreOptions {
        chunk_bytes: 2000,
        ..StoreOptions::default()
    }
}

fn fmt_ranges(seqs: &[u64]) -> String {
    seqs.iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The child: runs until killed.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let seed: u64 = std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut rng = Rng(seed | 1);
    // Half the children rotate the ack journal every ~80 acks, so kills land mid-rotation.
    let child_opts = if seed & 1 == 0 {
        StoreOptions {
            ack_journal_bytes: 4096,
            ..opts()
        }
    } else {
        opts()
    };
    let store = SledStore::open_with(&dir, child_opts).expect("child open");
    let q = store.queue("q").expect("queue");
    // Counters must never repeat across children: start from the time in microseconds.
    let mut counter = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
        * 8;
    println!("READY");
    let mut lease_id = 0u64;
    loop {
        let len = q.stats().len;
        let r = rng.below(100);
        if r < 50 && len < 3000 {
            let n = 1 + rng.below(40);
            let recs: Vec<Vec<u8>> = (counter..counter + n).map(content).collect();
            let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
            let range = q.append(&refs).expect("append");
            println!("A {} {} {}", range.start, range.end, counter);
            counter += n;
        } else if r < 60 {
            // Atomic group: records in q and q2 plus a marker naming the counter.
            let n = 1 + rng.below(5);
            let recs: Vec<Vec<u8>> = (counter..counter + n).map(content).collect();
            let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
            let marker = format!("m{counter}");
            let ranges = store
                .append_group(
                    &[("q", &refs), ("q2", &refs)],
                    Some((marker.as_bytes(), b"1")),
                )
                .expect("append_group");
            println!("A {} {} {}", ranges[0].start, ranges[0].end, counter);
            println!(
                "G {} {} {} {}",
                ranges[1].start, ranges[1].end, counter, marker
            );
            counter += n;
        } else if let Some(l) = q
            .lease(1 + rng.below(80) as usize, usize::MAX)
            .expect("lease")
        {
            if rng.below(10) < 8 {
                lease_id += 1;
                let seqs: Vec<u64> = l.records.iter().map(|r| r.seq).collect();
                println!("L {lease_id} {}", fmt_ranges(&seqs));
                q.ack(l).expect("ack");
                println!("K {lease_id}");
            } else {
                q.release(l);
            }
        }
    }
}

#[derive(Default)]
struct Expect {
    /// Reported appended seq -> counter.
    appended: BTreeMap<u64, u64>,
    /// Seqs of acks that were attempted (may or may not have completed).
    ack_tried: HashSet<u64>,
    /// Seqs whose ack returned Ok: must be gone.
    acked: HashSet<u64>,
    /// q2 groups: counter -> (seq range, marker)
    groups: BTreeMap<u64, (u64, u64)>,
    max_end: u64,
}

fn apply_lines(e: &mut Expect, lines: &[String]) {
    let mut pending: HashMap<u64, Vec<u64>> = HashMap::new();
    for line in lines {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.first().copied() {
            Some("A") => {
                let (s, end, c): (u64, u64, u64) = (
                    f[1].parse().unwrap(),
                    f[2].parse().unwrap(),
                    f[3].parse().unwrap(),
                );
                assert!(
                    s >= e.max_end,
                    "seq reused: append {s}..{end} after {}",
                    e.max_end
                );
                e.max_end = end;
                for (i, seq) in (s..end).enumerate() {
                    e.appended.insert(seq, c + i as u64);
                }
            }
            Some("G") => {
                let (s, end, c): (u64, u64, u64) = (
                    f[1].parse().unwrap(),
                    f[2].parse().unwrap(),
                    f[3].parse().unwrap(),
                );
                e.groups.insert(c, (s, end));
            }
            Some("L") => {
                let seqs: Vec<u64> = f[2].split(',').map(|s| s.parse().unwrap()).collect();
                e.ack_tried.extend(&seqs);
                pending.insert(f[1].parse().unwrap(), seqs);
            }
            Some("K") => {
                if let Some(seqs) = pending.remove(&f[1].parse().unwrap()) {
                    e.acked.extend(seqs);
                }
            }
            _ => {}
        }
    }
}

fn verify(dir: &std::path::Path, e: &mut Expect, round: usize) {
    let store = SledStore::open_with(dir, opts()).expect("parent reopen");
    let q = store.queue("q").expect("queue");
    let mut present = BTreeMap::new();
    let mut last = None;
    while let Some(l) = q.lease(10_000, usize::MAX).expect("lease") {
        for r in &l.records {
            assert!(
                !matches!(last, Some(p) if r.seq <= p),
                "round {round}: out of order at {}",
                r.seq
            );
            last = Some(r.seq);
            let c = parse_counter(&r.data)
                .unwrap_or_else(|| panic!("round {round}: seq {} has damaged content", r.seq));
            if let Some(&want) = e.appended.get(&r.seq) {
                assert_eq!(
                    c, want,
                    "round {round}: seq {} holds the wrong record",
                    r.seq
                );
            }
            assert!(
                !e.acked.contains(&r.seq),
                "round {round}: acked seq {} came back after kill -9",
                r.seq
            );
            present.insert(r.seq, c);
        }
        std::mem::forget(l); // leases die with the store
    }
    for (&seq, &c) in &e.appended {
        if !e.ack_tried.contains(&seq) {
            assert_eq!(
                present.get(&seq),
                Some(&c),
                "round {round}: appended seq {seq} (counter {c}) lost"
            );
        }
    }
    // Group atomicity: q2 holds a group's records iff its marker exists (q2 is never acked).
    let q2 = store.queue("q2").expect("q2");
    let mut q2_counters = HashSet::new();
    while let Some(l) = q2.lease(10_000, usize::MAX).expect("lease") {
        for r in &l.records {
            q2_counters.insert(parse_counter(&r.data).expect("q2 content"));
        }
        std::mem::forget(l);
    }
    for &c in e.groups.keys() {
        assert!(
            store.marker(format!("m{c}").as_bytes()).unwrap().is_some(),
            "round {round}: marker m{c} lost"
        );
        assert!(
            q2_counters.contains(&c),
            "round {round}: group {c} lost from q2"
        );
    }
    // And no q2 records without their marker: each either starts a group (marker named
    // after its counter) or continues the previous record's group.
    for &c in &q2_counters {
        let has_marker = store.marker(format!("m{c}").as_bytes()).unwrap().is_some();
        assert!(
            has_marker || q2_counters.contains(&(c - 1)),
            "round {round}: q2 record {c} present without its group's marker"
        );
    }
    // Forget what is settled so the maps stay small.
    e.appended.retain(|s, _| present.contains_key(s));
}

#[test]
fn kill_9_loses_nothing() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let start = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("crash test seed {seed}");
    let mut rng = Rng(seed | 1);
    let mut e = Expect::default();
    let exe = std::env::current_exe().expect("current exe");
    let mut total_lines = 0;
    for round in 0..KILLS {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .env(SEED_ENV, rng.next().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut lines = Vec::new();
            loop {
                let mut buf = Vec::new();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    // A line cut by the kill has no newline: ignore it.
                    Ok(_) if buf.last() == Some(&b'\n') => {
                        let s = String::from_utf8_lossy(&buf).trim_end().to_string();
                        if s.ends_with("READY") {
                            let _ = tx.send(s.clone());
                        }
                        lines.push(s);
                    }
                    Ok(_) => break,
                }
            }
            lines
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("child did not start");
        std::thread::sleep(Duration::from_millis(10 + rng.below(150)));
        child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
        child.wait().expect("wait");
        let lines = reader.join().expect("reader");
        total_lines += lines.len();
        apply_lines(&mut e, &lines);
        // A crash is no damage: the scan run before sled opens finds none, so no copy of
        // the data file is taken (see `log_scan.rs`).
        let damage =
            raxe_storage::find_log_damage(dir.path(), opts().segment_size).expect("scan the log");
        assert_eq!(damage, None, "round {round}: a kill -9 taken for damage");
        verify(dir.path(), &mut e, round);
    }
    eprintln!(
        "{KILLS} kills, {total_lines} reported events, {:?}",
        start.elapsed()
    );
    assert!(
        total_lines > KILLS * 5,
        "children did too little work: {total_lines} lines"
    );
}
