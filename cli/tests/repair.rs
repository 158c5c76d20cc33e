//! `raxe repair` on real damaged data directories: a bit flip inside a stored chunk, and a
//! database file sled can no longer open. Every intact event must still be delivered.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use raxe_tests::hec::HecReceiver;
use support::*;

mod support;

const TOKEN: &str = "12345678-1234-1234-1234-1234567890AB";
const QUEUE_TREE: &str = "q/dest:customer/m1/acme";

/// A configured (disabled) destination with `n` events queued through `raxe ingest`.
async fn queued(data: &Path, hec: &HecReceiver, n: usize) {
    let out = raxe_async(
        data,
        &[
            "customer",
            "siem",
            "configure",
            "acme",
            "--mssp",
            "m1",
            "--type",
            "splunk",
            "--url",
            &hec.url(),
            "--token",
            TOKEN,
            "--flush-interval",
            "0",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let lines: String = (0..n)
        .map(|i| {
            format!(
                r#"{{"event_id":"evt-{i}","timestamp":1769769000123,"threat_detected":true,"severity":"HIGH","rule_ids":["pi-001"],"families":["PI"],"prompt_hash":"sha256:ab","prompt_length":42,"customer_id":"acme","mssp_id":"m1","agent_id":"a1"}}"#
            ) + "\n"
        })
        .collect();
    let input = data.join("events.jsonl");
    std::fs::write(&input, lines).unwrap();
    let out = raxe_async(data, &["ingest", input.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", text(&out));
}

/// The number of events `raxe repair` says it routed again.
fn recovered_count(said: &str) -> usize {
    said.split("✓ New queue database created; ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in: {said}"))
}

async fn drain_and_count(data: &Path, hec: &HecReceiver) -> HashSet<String> {
    let out = raxe_async(data, &["drain", "--timeout", "60"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let _ = hec.wait_for(1, Duration::from_secs(1)).await;
    hec.accepted().into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_byte_in_a_chunk_is_set_aside_and_every_event_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let hec = HecReceiver::start(TOKEN).await;
    queued(data, &hec, 300).await;
    {
        // Flip one byte of a stored chunk: in the last record's agent id, which a packed
        // chunk keeps as is too (an LZ4 block ends with literals). The record still decodes.
        let db = sled::Config::new()
            .path(data.join("queues"))
            .segment_size(2 << 20)
            .open()
            .unwrap();
        let tree = db.open_tree(QUEUE_TREE).unwrap();
        let (key, value) = tree
            .iter()
            .filter_map(Result::ok)
            .find(|(k, _)| k[0] == b'c')
            .expect("a chunk");
        let mut v = value.to_vec();
        assert_eq!(v[0], 0xC2, "chunks are packed by default");
        let at = v.len() - 3;
        assert_eq!(&v[at - 1..], b"a1\"}");
        v[at] ^= 0x01;
        tree.insert(key, v).unwrap();
        db.flush().unwrap();
    }
    let out = raxe_async(data, &["repair", "--dry-run"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("are damaged: checksum mismatch"),
        "{}",
        text(&out)
    );

    let out = raxe_async(data, &["repair"]).await;
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("decode as events and were queued again"),
        "{said}"
    );
    let raw_files = std::fs::read_dir(data.join("repair"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .count();
    assert_eq!(raw_files, 1, "raw bytes of the damaged chunk kept");
    let out = raxe_async(data, &["repair", "--dry-run"]).await;
    assert!(text(&out).contains("No damaged records."), "{}", text(&out));

    let ids = drain_and_count(data, &hec).await;
    for i in 0..300 {
        assert!(ids.contains(&format!("evt-{i}")), "evt-{i} lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_database_is_moved_aside_and_its_events_routed_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let hec = HecReceiver::start(TOKEN).await;
    let total = 2_000;
    queued(data, &hec, total).await;
    // Destroy the start of sled's file (its first segment header and some data).
    let db_file = data.join("queues/db");
    let mut bytes = std::fs::read(&db_file).unwrap();
    for b in &mut bytes[..4096] {
        *b = 0xEE;
    }
    std::fs::write(&db_file, &bytes).unwrap();

    let out = raxe_async(data, &["stats"]).await;
    assert!(!out.status.success(), "a damaged database is an error");
    assert!(
        text(&out).contains("queues/db"),
        "names the file: {}",
        text(&out)
    );

    let out = raxe_async(data, &["repair"]).await;
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("moved the damaged database"), "{said}");
    let recovered = recovered_count(&said);
    let kept = std::fs::read_dir(data)
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("queues.damaged-")
        });
    assert!(kept, "the damaged files are kept");

    let ids = drain_and_count(data, &hec).await;
    assert_eq!(ids.len(), recovered, "every recovered event delivered once");
    // Only records inside the destroyed 4 KiB may be gone.
    assert!(
        recovered >= total - 20,
        "{recovered} of {total} recovered: {said}"
    );
}

/// A data file cut short: sled would open it as an older store; the service refuses, names
/// the file, and `raxe repair` routes again every event still in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_database_is_refused_then_salvaged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let hec = HecReceiver::start(TOKEN).await;
    let total = 20_000;
    queued(data, &hec, total).await;
    let db_file = data.join("queues/db");
    let bytes = std::fs::read(&db_file).unwrap();
    std::fs::write(&db_file, &bytes[..bytes.len() * 9 / 10]).unwrap();

    let out = raxe_async(data, &["stats"]).await;
    let said = text(&out);
    assert!(
        !out.status.success(),
        "a cut data file must be an error: {said}"
    );
    assert!(
        said.contains("queues/db") && said.contains("raxe repair"),
        "{said}"
    );

    let out = raxe_async(data, &["repair"]).await;
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("moved the damaged database"), "{said}");
    let recovered = recovered_count(&said);
    assert!(recovered > total / 2, "{recovered} of {total}: {said}");
    let ids = drain_and_count(data, &hec).await;
    assert_eq!(ids.len(), recovered, "every recovered event delivered once");
}
