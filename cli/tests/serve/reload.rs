//! Live reload with a destination file that cannot be used for a while (a configuration
//! tool writing it in place, a wrong hand edit): the destination keeps its last good
//! configuration, so its customer's events are not routed past it meanwhile.

use std::fs;
use std::time::Duration;

use raxe_tests::hec::HecReceiver;

use super::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_configuration_file_keeps_the_destination_it_was_for() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let customer = HecReceiver::start(TOKEN).await;
    let global = HecReceiver::start(TOKEN).await;
    assert!(configure_splunk(data, &customer.url(), TOKEN)
        .status
        .success());
    configure_global_splunk(data, &global.url());
    let file = data.join("config/destinations/customer%2Fm1%2Facme.json");
    let good = fs::read(&file).expect("acme's configuration file");
    let mut serve = spawn_serve(data);
    // Running, with acme's destination registered.
    write_spool_file(
        &data.join("spool"),
        "first.jsonl",
        &[event_line(1000, "acme")],
    );
    assert!(customer.wait_for(1, Duration::from_secs(20)).await);

    fs::write(&file, "{\"scope\": broken").unwrap();
    // serve polls the configuration every 50 ms: it has seen the broken file by now.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let lines: Vec<String> = (0..100).map(|n| event_line(n, "acme")).collect();
    write_spool_file(&data.join("spool"), "while-broken.jsonl", &lines);
    assert!(global.wait_for(101, Duration::from_secs(20)).await);
    fs::write(&file, &good).unwrap();
    assert!(
        customer.wait_for(101, Duration::from_secs(20)).await,
        "acme's SIEM got {} of the 100 events sent while its file was broken",
        customer.accepted_count() - 1
    );
    let status = terminate(&mut serve);
    assert!(status.success(), "{status:?}");
}

/// The same at a start: a destination whose file cannot be used when `raxe serve` starts
/// runs with the configuration it last ran with (kept beside the files, private, as they
/// are). Before, it was not started, and its customer's events went to the global SIEM
/// only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_file_broken_before_a_start_runs_as_it_last_did() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let customer = HecReceiver::start(TOKEN).await;
    let global = HecReceiver::start(TOKEN).await;
    assert!(configure_splunk(data, &customer.url(), TOKEN)
        .status
        .success());
    configure_global_splunk(data, &global.url());
    let kept_dir = data.join("config/destinations/.last-good");
    // Commands that do not deliver keep nothing.
    assert!(raxe(data, &["stats"]).status.success());
    assert!(!kept_dir.exists());
    let mut serve = spawn_serve(data);
    write_spool_file(
        &data.join("spool"),
        "first.jsonl",
        &[event_line(1000, "acme")],
    );
    assert!(customer.wait_for(1, Duration::from_secs(20)).await);
    assert!(terminate(&mut serve).success());
    let kept = kept_dir.join("customer%2Fm1%2Facme.json");
    let mode = fs::metadata(&kept).expect("kept").permissions().mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}: it holds the token");

    let file = data.join("config/destinations/customer%2Fm1%2Facme.json");
    fs::write(&file, "{\"scope\": broken").unwrap();
    let mut serve = spawn_serve(data);
    let lines: Vec<String> = (0..100).map(|n| event_line(n, "acme")).collect();
    write_spool_file(&data.join("spool"), "while-broken.jsonl", &lines);
    assert!(global.wait_for(101, Duration::from_secs(20)).await);
    assert!(
        customer.wait_for(101, Duration::from_secs(20)).await,
        "acme's SIEM got {} of the 100 events sent while its file was broken",
        customer.accepted_count() - 1
    );
    // The operator sees the broken file: `list` names its destination (it said "No SIEM
    // destinations configured" when it was the only customer one), `stats` warns.
    let out = raxe(data, &["customer", "siem", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        listed.contains("customer/m1/acme") && listed.contains("cannot be used"),
        "{listed}"
    );
    let out = raxe(data, &["stats"]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        said.contains("customer%2Fm1%2Facme.json") && said.contains("last ran with"),
        "{said}"
    );
    assert!(terminate(&mut serve).success());

    // A file deleted by hand: the next run that delivers forgets its copy, token and all.
    fs::remove_file(&file).unwrap();
    let out = raxe(data, &["drain", "--timeout", "20"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!kept.exists());
    // `remove` takes a broken file, and the copy with it.
    let global_kept = kept_dir.join("global%2Fall.json");
    assert!(global_kept.exists());
    fs::write(data.join("config/destinations/global%2Fall.json"), "{").unwrap();
    let out = raxe(data, &["global", "siem", "remove", "all"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("cannot be read"), "{}", text(&out));
    assert!(!global_kept.exists());
}

/// `drain` right after `enable` drains with the destination enabled: the service applies
/// the configuration its client sees before it drains. Before, the drain ran on the old
/// state ("not drained … disabled", 3 times in 3) until the service's next poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_right_after_enable_drains_with_it_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let hec = HecReceiver::start(TOKEN).await;
    assert!(configure_splunk(data, &hec.url(), TOKEN).status.success());
    let toggle = |what: &str| raxe(data, &["customer", "siem", what, "acme", "--mssp", "m1"]);
    assert!(toggle("disable").status.success());
    // Polls a second apart: the change is seen late unless the drain asks for it.
    let mut serve = std::process::Command::new(RAXE)
        .arg("--data-dir")
        .arg(data)
        .args(["serve", "--poll-interval-ms", "1000"])
        .env("RAXE_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Up (answering on its socket): the drains below go through it.
    assert!(
        wait_for(Duration::from_secs(10), || data
            .join("control.sock")
            .exists())
        .await
    );
    let lines: Vec<String> = (0..50).map(|n| event_line(n, "acme")).collect();
    write_spool_file(&data.join("spool"), "a.jsonl", &lines);
    let out = raxe_async(data, &["drain", "--timeout", "3"]).await;
    assert!(!out.status.success(), "disabled: {}", text(&out));
    assert!(toggle("enable").status.success());
    let out = raxe_async(data, &["drain", "--timeout", "20"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(hec.accepted_count(), 50);
    assert!(terminate(&mut serve).success());
}

/// A drain that names a configuration the service never applies (another change landed
/// meanwhile, or a reload failed) waits for it a few seconds, not its whole timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_waits_a_little_for_a_configuration_it_never_sees() {
    use std::io::{BufRead, Write};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let hec = HecReceiver::start(TOKEN).await;
    assert!(configure_splunk(data, &hec.url(), TOKEN).status.success());
    let mut serve = spawn_serve(data);
    let socket = data.join("control.sock");
    assert!(wait_for(Duration::from_secs(10), || socket.exists()).await);
    let started = std::time::Instant::now();
    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
        stream
            .write_all(b"{\"op\":\"drain\",\"timeout_ms\":30000,\"config\":1}\n")
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(stream)
            .read_line(&mut line)
            .unwrap();
        line
    })
    .await
    .unwrap();
    assert!(answer.contains("drained"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "answered after {:?} of the drain's 30 s",
        started.elapsed()
    );
    assert!(terminate(&mut serve).success());
}
