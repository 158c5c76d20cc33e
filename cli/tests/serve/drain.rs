//! `raxe drain` while the service runs: what the commands after it read.

use std::time::Duration;

use raxe_tests::hec::{Fault, HecReceiver};

use super::support::*;

/// Right after a drain through the service ends, `stats` shows what the drain did: the
/// queue empty and the destination ok. It showed the figures from before (up to half a
/// second old: "1000 queued … degraded: HTTP 503") after the drain said all was delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_right_after_a_drain_show_what_it_did() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let hec = HecReceiver::start(TOKEN).await;
    assert!(configure_splunk(data, &hec.url(), TOKEN).status.success());
    // Busy for a while: the destination turns degraded (2 s timeout, quick retries spent).
    for _ in 0..6 {
        hec.push_fault(Fault::Status {
            status: 503,
            code: 9,
            retry_after: None,
        });
    }
    let mut serve = spawn_serve(data);
    assert!(
        wait_for(Duration::from_secs(10), || data
            .join("control.sock")
            .exists())
        .await
    );
    let lines: Vec<String> = (0..200).map(|n| event_line(n, "acme")).collect();
    write_spool_file(&data.join("spool"), "a.jsonl", &lines);
    let out = raxe_async(data, &["drain", "--timeout", "60"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(hec.accepted_count(), 200);
    let out = raxe(data, &["stats", "--json"]);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stats --json");
    let dest = &stats["destinations"][0];
    assert_eq!(dest["queue"]["events"], 0, "{dest}");
    assert_eq!(dest["state"]["state"], "ok", "{dest}");
    assert!(terminate(&mut serve).success());
}
