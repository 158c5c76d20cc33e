//! `raxe serve` end to end: real processes, a real data directory, spool files, kill -9, a
//! real HEC receiver on 127.0.0.1, the control socket and `/metrics`.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

mod support;

#[path = "serve/drain.rs"]
mod drain;
#[path = "serve/indexer_ack.rs"]
mod indexer_ack;
#[path = "serve/reload.rs"]
mod reload;

use raxe_tests::hec::HecReceiver;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_takes_spool_files_and_rejects_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let hec = HecReceiver::start(TOKEN).await;
    assert!(configure_splunk(data, &hec.url(), TOKEN).status.success());
    let mut serve = spawn_serve(data);
    let spool = data.join("spool");
    let mut lines: Vec<String> = (0..300).map(|n| event_line(n, "acme")).collect();
    lines.insert(10, "{\"customer_id\":\"\"}".into());
    // Over 1 MiB, of which only blanks fit in what is kept of a line: still rejected.
    lines.insert(20, " ".repeat((1 << 20) + 10) + "{}");
    write_spool_file(&spool, "batch-1.jsonl", &lines);
    // A file still being written (.tmp) and a dot-file are left alone.
    fs::write(spool.join("partial.jsonl.tmp"), event_line(9999, "acme")).unwrap();
    fs::write(spool.join(".hidden.jsonl"), event_line(9998, "acme")).unwrap();
    assert!(
        hec.wait_for(300, Duration::from_secs(20)).await,
        "{}",
        hec.accepted_count()
    );
    assert!(
        wait_for(Duration::from_secs(5), || !spool
            .join("batch-1.jsonl")
            .exists())
        .await
    );
    let rejected = fs::read_to_string(spool.join("rejected/batch-1.jsonl.rejected")).unwrap();
    assert!(
        rejected.contains("\"line\":11") && rejected.contains("customer_id"),
        "{rejected}"
    );
    assert!(
        rejected.contains("\"line\":21") && rejected.contains("over 1 MiB"),
        "{rejected}"
    );
    assert_eq!(rejected.lines().count(), 2, "{rejected}");
    assert!(spool.join("partial.jsonl.tmp").exists());
    let ids: HashSet<String> = hec.accepted().into_iter().collect();
    assert!(!ids.contains("evt-9999") && !ids.contains("evt-9998"));
    // While serve holds the queues, ingest hands events over through the spool.
    let input = data.join("more.jsonl");
    fs::write(&input, event_line(5000, "acme") + "\n").unwrap();
    let out = raxe_async(data, &["ingest", input.to_str().unwrap()]).await;
    assert!(text(&out).contains("running service"), "{}", text(&out));
    assert!(hec.wait_for(301, Duration::from_secs(20)).await);
    let out = raxe_async(data, &["stats", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let status = terminate(&mut serve);
    assert!(status.success(), "SIGTERM is a clean stop: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_killed_mid_stream_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let hec = HecReceiver::start(TOKEN).await;
    assert!(configure_splunk(data, &hec.url(), TOKEN).status.success());
    let spool = data.join("spool");
    let total = 20 * 500;
    let mut serve = spawn_serve(data);
    for f in 0..20 {
        let lines: Vec<String> = (f * 500..(f + 1) * 500)
            .map(|n| event_line(n, "acme"))
            .collect();
        write_spool_file(&spool, &format!("f{f:02}.jsonl"), &lines);
        if f % 4 == 3 {
            tokio::time::sleep(Duration::from_millis(40 + 17 * f as u64)).await;
            serve.kill().unwrap(); // SIGKILL
            serve.wait().unwrap();
            serve = spawn_serve(data);
        }
    }
    let delivered = wait_for(Duration::from_secs(60), || {
        let ids: HashSet<String> = hec.accepted().into_iter().collect();
        ids.len() >= total
    })
    .await;
    serve.kill().unwrap();
    serve.wait().unwrap();
    let ids: HashSet<String> = hec.accepted().into_iter().collect();
    assert!(delivered, "{} of {total} delivered", ids.len());
    for n in 0..total {
        assert!(ids.contains(&format!("evt-{n}")), "evt-{n} lost");
    }
    let remaining: Vec<_> = fs::read_dir(&spool)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
        .collect();
    assert!(remaining.is_empty(), "spool files left behind");
    let duplicates = hec.accepted_count() - total;
    // Each kill can repeat at most the batches in flight (batch size 100, one in flight).
    assert!(duplicates <= 5 * 100, "{duplicates} duplicates");
}

/// The smallest storage pool still delivers everything: with 2 threads for 20 lanes, the
/// spool intake and the storage work of every lane take turns and none waits on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_two_storage_threads_delivers_to_twenty_destinations() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let hec = HecReceiver::start(TOKEN).await;
    let customers: Vec<String> = (0..20).map(|c| format!("cust-{c:02}")).collect();
    for customer in &customers {
        let out = configure_splunk_for(data, customer, &hec.url(), TOKEN);
        assert!(out.status.success(), "{}", text(&out));
    }
    let mut serve = spawn_serve_with(data, &["--storage-threads", "2"]);
    let spool = data.join("spool");
    let per_file = 1000;
    for f in 0..4 {
        // Customers interleaved line by line: every spool step appends to all 20 queues.
        let lines: Vec<String> = (f * per_file..(f + 1) * per_file)
            .map(|n| event_line(n, &customers[n % customers.len()]))
            .collect();
        write_spool_file(&spool, &format!("f{f}.jsonl"), &lines);
    }
    let total = 4 * per_file;
    let delivered = wait_for(Duration::from_secs(60), || {
        hec.accepted().into_iter().collect::<HashSet<_>>().len() >= total
    })
    .await;
    let status = terminate(&mut serve);
    let ids: HashSet<String> = hec.accepted().into_iter().collect();
    assert!(delivered, "{} of {total} delivered", ids.len());
    for n in 0..total {
        assert!(ids.contains(&format!("evt-{n}")), "evt-{n} lost");
    }
    assert!(status.success(), "SIGTERM is a clean stop: {status:?}");
}

/// Spool files spanning 100 customers are taken in steps of 5,000 events (50 per
/// customer); kill -9 during those steps loses nothing and repeats no intake: a step's
/// events and its progress marker are one durable write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_killed_during_many_customer_steps_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let hec = HecReceiver::start(TOKEN).await;
    configure_global_splunk(data, &hec.url());
    let spool = data.join("spool");
    fs::create_dir_all(&spool).unwrap();
    let (files, per_file) = (3, 12_000);
    let total = files * per_file;
    for f in 0..files {
        let lines: Vec<String> = (f * per_file..(f + 1) * per_file)
            .map(|n| event_line(n, &format!("cust-{:03}", n % 100)))
            .collect();
        write_spool_file(&spool, &format!("f{f}.jsonl"), &lines);
    }
    let mut serve = spawn_serve(data);
    let mut kills = 0;
    for pause_ms in [150, 400, 700, 900] {
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        serve.kill().unwrap(); // SIGKILL
        serve.wait().unwrap();
        kills += 1;
        serve = spawn_serve(data);
    }
    let delivered = wait_for(Duration::from_secs(120), || {
        hec.accepted().into_iter().collect::<HashSet<_>>().len() >= total
    })
    .await;
    serve.kill().unwrap();
    serve.wait().unwrap();
    let ids: HashSet<String> = hec.accepted().into_iter().collect();
    assert!(delivered, "{} of {total} delivered", ids.len());
    for n in 0..total {
        assert!(ids.contains(&format!("evt-{n}")), "evt-{n} lost");
    }
    // Only batches in flight repeat (one lane, batches of 100), never a step of intake.
    let duplicates = hec.accepted_count() - total;
    assert!(
        duplicates <= kills * 100,
        "{duplicates} duplicates after {kills} kills"
    );
}

/// A spool file of mostly bad lines (its rejects are written out over several steps; see
/// `Step` in `spool.rs`): every bad line is in the rejects file once, the good ones are
/// delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_file_of_bad_lines_is_rejected_in_steps() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let hec = HecReceiver::start(TOKEN).await;
    assert!(configure_splunk(data, &hec.url(), TOKEN).status.success());
    let spool = data.join("spool");
    fs::create_dir_all(&spool).unwrap();
    let bad = 2_500;
    let mut lines: Vec<String> = (0..bad).map(|n| format!("not json {n}")).collect();
    for n in 0..10 {
        lines.insert(n * 250, event_line(n, "acme"));
    }
    write_spool_file(&spool, "bad.jsonl", &lines);
    let mut serve = spawn_serve(data);
    assert!(hec.wait_for(10, Duration::from_secs(30)).await);
    assert!(
        wait_for(Duration::from_secs(10), || !spool
            .join("bad.jsonl")
            .exists())
        .await
    );
    assert!(terminate(&mut serve).success());
    let rejected = fs::read_to_string(spool.join("rejected/bad.jsonl.rejected")).unwrap();
    let mut raws: Vec<String> = rejected
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["raw"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    raws.sort();
    let mut expected: Vec<String> = (0..bad).map(|n| format!("not json {n}")).collect();
    expected.sort();
    assert_eq!(raws, expected);
    assert_eq!(hec.accepted_count(), 10);
}

/// Runs a command until its output contains `wanted` (10 s at most); returns the last output.
async fn until_output(data: &Path, args: &[&str], wanted: &str) -> String {
    let mut said = String::new();
    for _ in 0..100 {
        let out = raxe_async(data, args).await;
        said = text(&out);
        assert!(out.status.success(), "{args:?}: {said}");
        if said.contains(wanted) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    said
}

/// `dlq` and `remove --drop-queue` reach a running service through its control socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_and_drop_queue_while_serve_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let hec = HecReceiver::start(TOKEN).await;
    hec.poison("evt-3");
    assert!(configure_splunk(data, &hec.url(), TOKEN).status.success());
    let mut serve = spawn_serve(data);
    let spool = data.join("spool");
    let lines: Vec<String> = (0..10).map(|n| event_line(n, "acme")).collect();
    write_spool_file(&spool, "f.jsonl", &lines);
    assert!(hec.wait_for(9, Duration::from_secs(20)).await);

    // The poison event shows up in the dead letters, read live from the service.
    let listed = until_output(data, &["dlq", "list"], "evt-3").await;
    assert!(
        listed.contains("customer/m1/acme\tevt-3\t"),
        "dead letter not listed: {listed}"
    );
    assert!(!listed.contains("evt-4"), "{listed}");
    // Destination, id, reason, and the event as JSON: one tab-separated line of text.
    let line = listed.lines().find(|l| l.contains("evt-3")).unwrap();
    let columns: Vec<&str> = line.split('\t').collect();
    assert_eq!(columns.len(), 4, "{line:?}");
    let event: serde_json::Value = serde_json::from_str(columns[3]).expect(line);
    assert_eq!(event["event_id"], "evt-3");
    assert_eq!(event["customer_id"], "acme");

    // The SIEM is fixed: replay delivers it.
    hec.cure("evt-3");
    let out = raxe_async(
        data,
        &["dlq", "replay", "--mssp", "m1", "--customer", "acme"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("1 events re-queued"), "{}", text(&out));
    assert!(
        wait_for(Duration::from_secs(20), || hec
            .accepted()
            .contains(&"evt-3".to_string()))
        .await,
        "replayed event not delivered"
    );
    let out = raxe_async(data, &["dlq", "list"]).await;
    assert!(text(&out).contains("No dead letters."), "{}", text(&out));

    // Another poison event, then purged live.
    hec.poison("evt-20");
    write_spool_file(&spool, "g.jsonl", &[event_line(20, "acme")]);
    // Deleting every destination's dead letters takes --all; --limit is for list only.
    for args in [
        &["dlq", "purge"][..],
        &["dlq", "purge", "--mssp", "m1", "--limit", "1"],
    ] {
        let out = raxe_async(data, args).await;
        assert!(!out.status.success(), "{args:?}: {}", text(&out));
    }
    let listed = until_output(data, &["dlq", "list"], "evt-20").await;
    assert!(listed.contains("evt-20"), "nothing purged: {listed}");
    let purged = until_output(data, &["dlq", "purge", "--all"], ": 1 dead letters deleted").await;
    assert!(purged.contains(": 1 dead letters deleted"), "{purged}");

    // Events queued for a disabled destination are deleted by remove --drop-queue.
    let out = raxe_async(
        data,
        &["customer", "siem", "disable", "acme", "--mssp", "m1"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held: Vec<String> = (100..150).map(|n| event_line(n, "acme")).collect();
    write_spool_file(&spool, "h.jsonl", &held);
    assert!(wait_for(Duration::from_secs(10), || !spool.join("h.jsonl").exists()).await);
    let out = raxe_async(
        data,
        &[
            "customer",
            "siem",
            "remove",
            "acme",
            "--mssp",
            "m1",
            "--drop-queue",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("deleted its queued events"),
        "{}",
        text(&out)
    );
    assert!(terminate(&mut serve).success());
    assert!(!data.join("control.sock").exists(), "socket left behind");

    // Configured again, the destination starts from an empty queue: nothing was kept.
    assert!(configure_splunk(data, &hec.url(), TOKEN).status.success());
    let out = raxe(
        data,
        &["customer", "siem", "show", "acme", "--mssp", "m1", "--json"],
    );
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).expect("show --json");
    assert_eq!(shown["live"]["queue"]["events"], 0, "{shown}");
    assert!(!hec.accepted().iter().any(|id| id == "evt-100"));
}

fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to metrics");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The value of the first sample whose line starts with `name{` and holds every label.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `/metrics` agrees with what the receiver counted; `/health` turns 503 on a bad token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_match_the_receiver_and_health_reports_auth_failure() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let hec = HecReceiver::start(TOKEN).await;
    hec.poison("evt-5");
    hec.push_fault(raxe_tests::hec::Fault::Status {
        status: 503,
        code: 9,
        retry_after: None,
    });
    assert!(configure_splunk(data, &hec.url(), TOKEN).status.success());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut serve = Command::new(RAXE)
        .arg("--data-dir")
        .arg(data)
        .args(["serve", "--poll-interval-ms", "50", "--metrics-addr", &addr])
        .env("RAXE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines: Vec<String> = (0..250).map(|n| event_line(n, "acme")).collect();
    write_spool_file(&data.join("spool"), "m.jsonl", &lines);
    assert!(hec.wait_for(249, Duration::from_secs(30)).await);
    let dest = r#"destination="customer/m1/acme""#;
    let mut text = String::new();
    let settled = wait_for(Duration::from_secs(20), || {
        text = http_get(&addr, "/metrics").1;
        sample(&text, "raxe_events_dead_lettered_total", &[dest]) == Some(1.0)
            && sample(&text, "raxe_queue_events", &[dest]) == Some(0.0)
    })
    .await;
    assert!(settled, "{text}");
    let delivered = hec.accepted().into_iter().collect::<HashSet<_>>().len();
    assert_eq!(delivered, 249);
    assert_eq!(
        sample(&text, "raxe_events_delivered_total", &[dest]),
        Some(hec.accepted_count() as f64),
        "{text}"
    );
    assert_eq!(
        sample(&text, "raxe_events_queued_total", &[dest]),
        Some(250.0)
    );
    assert_eq!(
        sample(
            &text,
            "raxe_events_received_total",
            &[r#"result="accepted""#]
        ),
        Some(250.0)
    );
    let attempts = |outcome: &str| {
        sample(
            &text,
            "raxe_delivery_attempts_total",
            &[dest, &format!(r#"outcome="{outcome}""#)],
        )
        .unwrap_or(0.0)
    };
    assert!(attempts("retry") >= 1.0, "the 503 was counted: {text}");
    assert!(
        attempts("rejected") >= 1.0,
        "the poison 400 was counted: {text}"
    );
    let all_attempts = attempts("delivered") + attempts("retry") + attempts("rejected");
    assert_eq!(
        sample(&text, "raxe_request_duration_seconds_count", &[dest]),
        Some(all_attempts),
        "one latency sample per request: {text}"
    );
    assert_eq!(hec.requests() as f64, all_attempts, "{text}");
    assert!(
        text.contains(&format!(r#"raxe_destination_state{{{dest},state="ok"}} 1"#)),
        "{text}"
    );
    let (status, body) = http_get(&addr, "/health");
    assert_eq!(status, 200, "{body}");

    // The SIEM rotates its token: the destination stops and /health says why.
    hec.set_token("ffffffff-1234-1234-1234-1234567890AB");
    write_spool_file(&data.join("spool"), "n.jsonl", &[event_line(900, "acme")]);
    let mut health = (0, String::new());
    let unhealthy = wait_for(Duration::from_secs(20), || {
        health = http_get(&addr, "/health");
        health.0 == 503
    })
    .await;
    assert!(unhealthy, "{health:?}");
    let body: serde_json::Value = serde_json::from_str(&health.1).unwrap();
    assert_eq!(body["destinations"][0]["state"], "auth_failed", "{body}");
    assert!(!health.1.contains(TOKEN), "no secret in /health");
    let (_, text) = http_get(&addr, "/metrics");
    assert_eq!(
        sample(&text, "raxe_queue_events", &[dest]),
        Some(1.0),
        "{text}"
    );
    assert!(!text.contains(TOKEN));
    // A client that connects and says nothing is let go (header timeout, 10 s), so idle
    // connections cannot pile up in the service's file table.
    let mut idle = std::net::TcpStream::connect(&addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = [0u8; 256];
    let closed = std::io::Read::read(&mut idle, &mut buf);
    assert!(closed.is_ok(), "still open after 30 s: {closed:?}");
    assert!(terminate(&mut serve).success());
}

/// A spool file that cannot be ingested (here its rejects file cannot be written) waits in
/// `spool/ingesting/` and is tried again, without holding up the files after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_keeps_failing_does_not_hold_up_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let hec = HecReceiver::start(TOKEN).await;
    assert!(configure_splunk(data, &hec.url(), TOKEN).status.success());
    let spool = data.join("spool");
    // A directory where the first file's rejects would go.
    let blocker = spool.join("rejected/a-bad.jsonl.rejected");
    fs::create_dir_all(&blocker).unwrap();
    let mut bad: Vec<String> = (0..5).map(|n| event_line(n, "acme")).collect();
    bad.push("not json".into());
    write_spool_file(&spool, "a-bad.jsonl", &bad);
    std::thread::sleep(Duration::from_millis(20));
    let good: Vec<String> = (100..110).map(|n| event_line(n, "acme")).collect();
    write_spool_file(&spool, "b-good.jsonl", &good);
    let mut serve = spawn_serve(data);
    assert!(hec.wait_for(10, Duration::from_secs(20)).await);
    let ids: HashSet<String> = hec.accepted().into_iter().collect();
    assert!(ids.contains("evt-100") && !ids.contains("evt-0"), "{ids:?}");
    let waiting = spool.join("ingesting/a-bad.jsonl");
    assert!(waiting.exists(), "the failing file waits in ingesting/");
    // Once its rejects can be written, it goes through.
    fs::remove_dir(&blocker).unwrap();
    assert!(hec.wait_for(15, Duration::from_secs(20)).await);
    assert!(wait_for(Duration::from_secs(5), || !waiting.exists()).await);
    let rejected = fs::read_to_string(&blocker).unwrap();
    assert!(rejected.contains("\"line\":6"), "{rejected}");
    assert_eq!(hec.accepted_count(), 15);
    assert!(terminate(&mut serve).success());
}

/// A file a crash left in `spool/ingesting/` is taken first; a new file of the same name
/// in the spool waits until it is done (a claim never replaces a file), then follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_file_is_finished_before_a_new_one_of_the_same_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let hec = HecReceiver::start(TOKEN).await;
    assert!(configure_splunk(data, &hec.url(), TOKEN).status.success());
    let spool = data.join("spool");
    fs::create_dir_all(spool.join("ingesting")).unwrap();
    let first: Vec<String> = (0..10).map(|n| event_line(n, "acme")).collect();
    let second: Vec<String> = (10..20).map(|n| event_line(n, "acme")).collect();
    fs::write(spool.join("ingesting/x.jsonl"), first.join("\n") + "\n").unwrap();
    write_spool_file(&spool, "x.jsonl", &second);
    let mut serve = spawn_serve(data);
    assert!(hec.wait_for(20, Duration::from_secs(20)).await);
    let expected: Vec<String> = (0..20).map(|n| format!("evt-{n}")).collect();
    assert_eq!(hec.accepted(), expected);
    assert!(
        wait_for(Duration::from_secs(5), || {
            !spool.join("x.jsonl").exists() && !spool.join("ingesting/x.jsonl").exists()
        })
        .await
    );
    assert!(terminate(&mut serve).success());
}

/// `raxe drain` while the service runs waits for events still in spool files, and for the
/// service's own drain (not for figures it published earlier); `raxe ingest` hands events
/// to the spool the service reads, also when it is not the default one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_waits_for_spooled_events_and_ingest_finds_the_service_spool() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let hec = HecReceiver::start(TOKEN).await;
    assert!(configure_splunk(data, &hec.url(), TOKEN).status.success());
    let spool = dir.path().join("elsewhere");
    fs::create_dir(&spool).unwrap();
    let mut serve = spawn_serve_with(data, &["--spool", spool.to_str().unwrap()]);
    // The service has published where its spool is.
    assert!(
        wait_for(Duration::from_secs(10), || {
            fs::read_to_string(data.join("status.json")).is_ok_and(|s| s.contains("elsewhere"))
        })
        .await
    );
    let lines: Vec<String> = (0..250).map(|n| event_line(n, "acme")).collect();
    write_spool_file(&spool, "a.jsonl", &lines);
    let out = raxe_async(data, &["drain", "--timeout", "30"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(hec.accepted_count(), 250, "drain returned before delivery");

    let input = data.join("more.jsonl");
    fs::write(&input, event_line(5000, "acme") + "\n").unwrap();
    let out = raxe_async(data, &["ingest", input.to_str().unwrap()]).await;
    assert!(text(&out).contains("running service"), "{}", text(&out));
    let out = raxe_async(data, &["drain", "--timeout", "30"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(hec.accepted_count(), 251);
    assert!(terminate(&mut serve).success());
}

/// A spool directory whose name is not UTF-8 works (its name is published lossily).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_path_that_is_not_utf8_is_served() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let hec = HecReceiver::start(TOKEN).await;
    assert!(configure_splunk(data, &hec.url(), TOKEN).status.success());
    let spool = dir
        .path()
        .join(std::ffi::OsStr::from_bytes(b"spool-caf\xe9"));
    fs::create_dir(&spool).unwrap();
    let mut serve = Command::new(RAXE)
        .arg("--data-dir")
        .arg(data)
        .args(["serve", "--poll-interval-ms", "50", "--spool"])
        .arg(&spool)
        .env("RAXE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines: Vec<String> = (0..20).map(|n| event_line(n, "acme")).collect();
    write_spool_file(&spool, "a.jsonl", &lines);
    assert!(
        hec.wait_for(20, Duration::from_secs(20)).await,
        "got {}",
        hec.accepted_count()
    );
    assert!(terminate(&mut serve).success());
}
