//! `raxe serve` stopped by SIGTERM while Splunk indexer acks are pending: the service waits
//! (within `--shutdown-timeout`) for the indexer to confirm them instead of leaving them to
//! be sent again, which Splunk would index twice.

use std::time::Duration;

use raxe_tests::hec_ack::{AckMode, HecAckReceiver};

use super::support::*;

const TOKEN: &str = "tok-ack";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_waits_for_pending_indexer_acks() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let hec = HecAckReceiver::start(TOKEN, AckMode::After(Duration::from_millis(300))).await;
    let url = hec.url();
    let out = configure_acme(
        data,
        &[
            "--type",
            "splunk",
            "--url",
            &url,
            "--token",
            TOKEN,
            "--flush-interval",
            "0",
            "--ack",
            // The first poll would come 30 s after a request: at the SIGTERM below none
            // has been polled yet.
            "--ack-interval",
            "30",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let mut serve = spawn_serve_with(data, &["--shutdown-timeout", "20"]);
    let lines: Vec<String> = (0..300).map(|n| event_line(n, "acme")).collect();
    write_spool_file(&data.join("spool"), "batch-1.jsonl", &lines);
    assert!(
        hec.wait_for(300, Duration::from_secs(20)).await,
        "{}",
        hec.accepted_count()
    );
    assert_eq!(hec.polls(), 0);
    let started = std::time::Instant::now();
    let status = terminate(&mut serve);
    let took = started.elapsed();
    assert!(status.success(), "SIGTERM is a clean stop: {status:?}");
    assert!(hec.polls() >= 1, "the stop polled");
    // Once all is confirmed the stop ends; it does not sit out `--shutdown-timeout` (20 s).
    assert!(took < Duration::from_secs(10), "the stop took {took:?}");
    assert_eq!(hec.indexed().len(), 300);
    let out = raxe(data, &["stats", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        stats["destinations"][0]["queue"]["events"], 0,
        "confirmed requests left the queue: nothing is sent again on the next start"
    );
    assert_eq!(hec.accepted_count(), 300);
}
