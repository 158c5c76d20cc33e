//! Runs seen across restarts: what a drain takes in, what a removed destination leaves,
//! what a run that delivers nothing keeps of the last one.

use std::fs;

use raxe_tests::hec::HecReceiver;

use super::support::*;

/// `drain` without the service takes in the spool first: a file waiting there, and one a
/// killed service had half taken in (`spool/ingesting/`). Before, it said "every queue is
/// empty" and left their events unread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_drain_takes_in_the_spool_first() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let hec = HecReceiver::start(TOKEN).await;
    assert!(configure_splunk(data, &hec.url(), TOKEN).status.success());
    let spool = data.join("spool");
    fs::create_dir_all(spool.join("ingesting")).unwrap();
    let lines = |range: std::ops::Range<usize>| -> Vec<String> {
        range.map(|n| event_line(n, "acme")).collect()
    };
    write_spool_file(&spool, "waiting.jsonl", &lines(0..30));
    fs::write(
        spool.join("ingesting/claimed.jsonl"),
        lines(30..50).join("\n") + "\n",
    )
    .unwrap();
    let out = raxe_async(data, &["drain", "--timeout", "20"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("every queue is empty"),
        "{}",
        text(&out)
    );
    assert_eq!(hec.accepted_count(), 50);
    assert!(spool_is_empty(&spool));
}

fn spool_is_empty(spool: &std::path::Path) -> bool {
    let jsonl = |dir: std::path::PathBuf| {
        fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".jsonl")
            })
            .count()
    };
    jsonl(spool.to_path_buf()) == 0 && jsonl(spool.join("ingesting")) == 0
}

/// The queue kept when a destination was removed can be deleted as `stats` and `drain`
/// say (`remove --drop-queue`); before, that failed with "no SIEM is configured".
#[test]
fn remove_drop_queue_deletes_a_kept_queue() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    assert!(configure_splunk(data, "https://splunk.invalid:8088", TOKEN)
        .status
        .success());
    let input = data.join("events.jsonl");
    let lines: Vec<String> = (0..5).map(|n| event_line(n, "acme")).collect();
    fs::write(&input, lines.join("\n") + "\n").unwrap();
    assert!(raxe(data, &["ingest", input.to_str().unwrap()])
        .status
        .success());
    let remove = |extra: &[&str]| {
        let mut args = vec!["customer", "siem", "remove", "acme", "--mssp", "m1"];
        args.extend_from_slice(extra);
        raxe(data, &args)
    };
    assert!(remove(&[]).status.success());
    let kept = || {
        let out = raxe(data, &["stats", "--json"]);
        let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stats --json");
        stats["kept_queues"].as_array().cloned().unwrap_or_default()
    };
    assert_eq!(kept().len(), 1, "{:?}", kept());
    let out = remove(&["--drop-queue"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Deleted the kept queue"),
        "{}",
        text(&out)
    );
    assert!(kept().is_empty(), "{:?}", kept());
    // Nothing configured and nothing kept: still an error.
    let out = remove(&["--drop-queue"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no SIEM is configured"),
        "{}",
        text(&out)
    );
}

/// When a destination last delivered survives a restart: a run that delivers nothing (its
/// SIEM down) said "Last delivery: never" for a destination that had delivered 35,000
/// events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_delivery_survives_a_run_that_delivers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let hec = HecReceiver::start(TOKEN).await;
    assert!(configure_splunk(data, &hec.url(), TOKEN).status.success());
    let ingest = |from: usize| {
        let input = data.join("events.jsonl");
        let lines: Vec<String> = (from..from + 5).map(|n| event_line(n, "acme")).collect();
        fs::write(&input, lines.join("\n") + "\n").unwrap();
        assert!(raxe(data, &["ingest", input.to_str().unwrap()])
            .status
            .success());
    };
    let last_delivery = || {
        let status: serde_json::Value =
            serde_json::from_slice(&fs::read(data.join("status.json")).unwrap()).unwrap();
        status["stats"]["destinations"][0]["marks"]["last_delivery_ms"].as_u64()
    };
    ingest(0);
    assert!(raxe_async(data, &["drain", "--timeout", "20"])
        .await
        .status
        .success());
    assert_eq!(hec.accepted_count(), 5);
    let delivered_at = last_delivery().expect("a delivery time");
    // The SIEM refuses the token now: the next run delivers nothing.
    hec.set_token("another");
    ingest(5);
    assert!(!raxe_async(data, &["drain", "--timeout", "2"])
        .await
        .status
        .success());
    assert_eq!(last_delivery(), Some(delivered_at));
    let out = raxe(data, &["customer", "siem", "show", "acme", "--mssp", "m1"]);
    assert!(!text(&out).contains("never"), "{}", text(&out));
    // Configured since (another SIEM, perhaps): its history is not this one's.
    assert!(configure_splunk(data, "http://127.0.0.1:1", TOKEN)
        .status
        .success());
    assert!(!raxe_async(data, &["drain", "--timeout", "2"])
        .await
        .status
        .success());
    assert_eq!(last_delivery(), None);
}

/// While a `drain` holds the queues (no service), `stats` shows the drain's own figures and
/// says so, and `dlq` says a drain holds the directory. Before, `stats` showed the last
/// run's figures as "from the running service" (0 queued while 500 were), and `dlq` said
/// that `raxe serve` did not answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_beside_a_drain_say_it_is_a_drain() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    // Nothing listens there: the drain keeps trying until its timeout.
    assert!(configure_splunk(data, "http://127.0.0.1:1", TOKEN)
        .status
        .success());
    let input = data.join("events.jsonl");
    let lines: Vec<String> = (0..40).map(|n| event_line(n, "acme")).collect();
    fs::write(&input, lines.join("\n") + "\n").unwrap();
    assert!(raxe(data, &["ingest", input.to_str().unwrap()])
        .status
        .success());
    let mut drain = std::process::Command::new(RAXE)
        .arg("--data-dir")
        .arg(data)
        .args(["drain", "--timeout", "60"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let published = wait_for(std::time::Duration::from_secs(20), || {
        fs::read_to_string(data.join("status.json"))
            .is_ok_and(|s| s.contains(r#""role":"drain""#) && s.contains(r#""running":true"#))
    })
    .await;
    assert!(published);
    let out = raxe(data, &["stats"]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains("from the running `raxe drain`"), "{said}");
    assert!(said.contains(" 40 "), "the 40 queued events: {said}");
    let out = raxe(data, &["dlq", "list"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("a `raxe drain` holds"),
        "{}",
        text(&out)
    );
    // Its deadline is far off: stop it.
    drain.kill().unwrap();
    drain.wait().unwrap();
}

/// `raxe ingest` without the service gives a blank `event_id` a fresh one, as the spool
/// intake does (it kept "" and sent it as is).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_ingest_fills_a_blank_event_id() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let hec = HecReceiver::start(TOKEN).await;
    assert!(configure_splunk(data, &hec.url(), TOKEN).status.success());
    let input = data.join("events.jsonl");
    fs::write(
        &input,
        "{\"customer_id\":\"acme\",\"mssp_id\":\"m1\",\"event_id\":\"\"}\n\
         {\"customer_id\":\"acme\",\"mssp_id\":\"m1\",\"event_id\":\"  \"}\n",
    )
    .unwrap();
    let out = raxe(data, &["ingest", input.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(raxe_async(data, &["drain", "--timeout", "20"])
        .await
        .status
        .success());
    let ids = hec.accepted();
    assert_eq!(ids.len(), 2);
    // Fresh ids: 36-character UUIDs, one per event.
    assert!(ids.iter().all(|id| id.len() == 36), "{ids:?}");
    assert_ne!(ids[0], ids[1]);
}

/// Spool files that arrive while an offline drain runs (`raxe ingest` hands them to the
/// spool then) are taken in and delivered by it too; it said they "could not be taken in".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_drain_takes_in_files_that_arrive_meanwhile() {
    use raxe_tests::hec::Fault;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let hec = HecReceiver::start(TOKEN).await;
    assert!(configure_splunk(data, &hec.url(), TOKEN).status.success());
    // Slow answers keep the drain busy for a few seconds.
    for _ in 0..3 {
        hec.push_fault(Fault::Slow(std::time::Duration::from_millis(800)));
    }
    let spool = data.join("spool");
    fs::create_dir_all(&spool).unwrap();
    let lines = |range: std::ops::Range<usize>| -> Vec<String> {
        range.map(|n| event_line(n, "acme")).collect()
    };
    write_spool_file(&spool, "first.jsonl", &lines(0..300));
    let drain = tokio::spawn({
        let data = data.to_path_buf();
        async move { raxe_async(&data, &["drain", "--timeout", "30"]).await }
    });
    // Once the drain holds the queues, a file arrives (as `raxe ingest` would hand it).
    let holds = wait_for(std::time::Duration::from_secs(10), || {
        fs::read_to_string(data.join("status.json")).is_ok_and(|s| s.contains(r#""role":"drain""#))
    })
    .await;
    assert!(holds);
    write_spool_file(&spool, "later.jsonl", &lines(300..350));
    let out = drain.await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(hec.accepted_count(), 350);
}

/// A file that starts with a UTF-8 byte order mark (PowerShell 5.1 writes one by default),
/// with CRLF line ends: every event is taken, by `ingest` and by the spool. The first one
/// was rejected as "invalid JSON … column 1".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_order_mark_does_not_cost_the_first_event() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let hec = HecReceiver::start(TOKEN).await;
    assert!(configure_splunk(data, &hec.url(), TOKEN).status.success());
    let with_bom = |from: usize| {
        let lines: Vec<String> = (from..from + 3).map(|n| event_line(n, "acme")).collect();
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend_from_slice((lines.join("\r\n") + "\r\n").as_bytes());
        bytes
    };
    let input = data.join("windows.jsonl");
    fs::write(&input, with_bom(0)).unwrap();
    let out = raxe(data, &["ingest", input.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("accepted 3, rejected 0"),
        "{}",
        text(&out)
    );
    let spool = data.join("spool");
    fs::create_dir_all(&spool).unwrap();
    fs::write(spool.join("windows.jsonl.tmp"), with_bom(3)).unwrap();
    fs::rename(spool.join("windows.jsonl.tmp"), spool.join("windows.jsonl")).unwrap();
    let out = raxe_async(data, &["drain", "--timeout", "20"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(hec.accepted_count(), 6);
    assert!(!spool.join("rejected/windows.jsonl.rejected").exists());
}
