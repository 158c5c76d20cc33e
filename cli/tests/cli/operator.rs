//! What an operator reads: ports, states without the service, what `siem test` can know.

use std::fs;

use raxe_tests::hec::HecReceiver;

use super::support::*;

/// CEF over syslog takes its port once: `--port`, or the URL's. Both, and different, is an
/// error (one of them was silently ignored); a URL with a port replaces an earlier `--port`.
#[test]
fn cef_syslog_takes_its_port_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let configure = |url: &str, port: Option<&str>| {
        let mut args = vec![
            "customer",
            "siem",
            "configure",
            "u",
            "--mssp",
            "m",
            "--type",
            "cef",
            "--transport",
            "udp",
            "--url",
            url,
        ];
        if let Some(port) = port {
            args.extend(["--port", port]);
        }
        raxe(data, &args)
    };
    let port = || {
        let out = raxe(
            data,
            &["customer", "siem", "show", "u", "--mssp", "m", "--json"],
        );
        let shown: serde_json::Value = serde_json::from_slice(&out.stdout).expect("show --json");
        shown["options"]["port"].clone()
    };
    let out = configure("syslog://127.0.0.1:17000", Some("18000"));
    assert!(!out.status.success());
    assert!(
        text(&out).contains("--port 18000 differs from the port in --url (17000)"),
        "{}",
        text(&out)
    );
    let out = configure("syslog://127.0.0.1:17000", Some("17000"));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !text(&out).contains("token"),
        "CEF has none: {}",
        text(&out)
    );
    let out = configure("syslog://127.0.0.1", Some("18000"));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(port(), 18000);
    let out = configure("syslog://127.0.0.1:17000", None);
    assert!(out.status.success(), "{}", text(&out));
    // Said: the port used moves with the URL.
    assert!(
        text(&out).contains("syslog port 18000 → 17000"),
        "{}",
        text(&out)
    );
    assert_eq!(
        port(),
        serde_json::Value::Null,
        "the URL's port is the one used"
    );
}

/// With no service running, `stats` and `show` read the queues in a process that has sent
/// nothing: the state they show is what the last run (here `drain`) found, not "ok".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_service_stats_and_show_keep_what_the_last_run_found() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let hec = HecReceiver::start(TOKEN).await;
    let out = configure_splunk(data, &hec.url(), "not-the-token");
    assert!(out.status.success(), "{}", text(&out));
    let input = data.join("events.jsonl");
    fs::write(&input, event_line(1, "acme") + "\n").unwrap();
    assert!(raxe(data, &["ingest", input.to_str().unwrap()])
        .status
        .success());
    // Nothing sent yet: no success rate to speak of (it said 100.0%).
    let said = text(&raxe(data, &["stats"]));
    let row = said
        .lines()
        .find(|l| l.starts_with("customer/m1/acme"))
        .unwrap();
    assert!(!row.contains('%'), "{said}");
    let out = raxe_async(data, &["drain", "--timeout", "10"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("auth_failed"), "{}", text(&out));
    // Its log (stderr, not a terminal here) is plain text: no colour escapes.
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("WARN") || log.contains("ERROR"), "{log}");
    assert!(!log.contains('\u{1b}'), "{log:?}");

    let out = raxe(data, &["stats", "--json"]);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let dest = &stats["destinations"][0];
    assert_eq!(dest["state"]["state"], "auth_failed", "{stats}");
    assert!(
        dest["marks"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("403")),
        "{stats}"
    );
    assert_eq!(dest["queue"]["events"], 1, "{stats}");
    assert!(
        dest["state_as_of_ms"].is_u64(),
        "marked as old news: {stats}"
    );
    let said = text(&raxe(data, &["stats"]));
    assert!(said.contains("a state marked (last run)"), "{said}");
    let row = said
        .lines()
        .find(|l| l.starts_with("customer/m1/acme"))
        .unwrap();
    assert!(
        row.contains("auth_failed") && row.ends_with("(last run)"),
        "{said}"
    );
    let said = text(&raxe(
        data,
        &["customer", "siem", "show", "acme", "--mssp", "m1"],
    ));
    assert!(said.contains("auth"), "{said}");
    assert!(said.contains("(as the last run left it"), "{said}");

    // What the configuration says now wins: disabled, then enabled again, then a new token.
    let state = || {
        let out = raxe(data, &["stats", "--json"]);
        let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        stats["destinations"][0]["state"]["state"].clone()
    };
    let toggle = |verb: &str| raxe(data, &["customer", "siem", verb, "acme", "--mssp", "m1"]);
    assert!(toggle("disable").status.success());
    assert_eq!(state(), "disabled");
    assert!(toggle("enable").status.success());
    assert_eq!(state(), "ok", "configured after the last run");
    assert!(configure_splunk(data, &hec.url(), TOKEN).status.success());
    assert_eq!(state(), "ok", "a new token is not the old one's failure");
}

/// `siem test` says what it can know and no more: a refused token once (status, body), a
/// plain-HTTP server behind an https:// URL, and for syslog no authentication and (UDP) no
/// sign of delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn siem_test_says_what_it_can_know() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let hec = HecReceiver::start(TOKEN).await;

    assert!(
        configure_splunk_for(data, "bad", &hec.url(), "not-the-token")
            .status
            .success()
    );
    let out = siem_test(data, "bad").await;
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("✗ Authentication failed (HTTP 403)"),
        "{said}"
    );
    // The reason once: not "HTTP 403: HTTP 403: <body>", then the body again.
    assert!(!said.contains("HTTP 403: HTTP 403"), "{said}");
    assert_eq!(said.matches("Invalid token").count(), 1, "{said}");

    let https = hec.url().replacen("http://", "https://", 1);
    assert!(configure_splunk_for(data, "tls", &https, TOKEN)
        .status
        .success());
    let said = text(&siem_test(data, "tls").await);
    assert!(said.contains("does not speak TLS on this port"), "{said}");

    let syslog = raxe_tests::syslog_tcp::SyslogTcpReceiver::start().await;
    for (customer, transport, port) in [("udp", "udp", 9), ("tcp", "tcp", syslog.port())] {
        let url = format!("syslog://127.0.0.1:{port}");
        let out = raxe(
            data,
            &[
                "customer",
                "siem",
                "configure",
                customer,
                "--mssp",
                "m1",
                "--type",
                "cef",
                "--url",
                &url,
                "--transport",
                transport,
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
    }
    let out = siem_test(data, "udp").await;
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("✓ Test event sent over UDP"), "{said}");
    assert!(said.contains("UDP confirms nothing"), "{said}");
    assert!(!said.contains("Authentication"), "{said}");
    let out = siem_test(data, "tcp").await;
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("✓ Test event written"), "{said}");
    assert!(said.contains("no authentication"), "{said}");
    assert!(!said.contains("Authentication valid"), "{said}");
}

pub(crate) async fn siem_test(data: &std::path::Path, customer: &str) -> std::process::Output {
    raxe_async(
        data,
        &["customer", "siem", "test", customer, "--mssp", "m1"],
    )
    .await
}

/// `dlq replay` and `purge` for a destination with no dead-letter queue (a mistyped
/// customer, say) fail and say so instead of printing nothing.
#[test]
fn dlq_commands_for_no_destination_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    for command in ["replay", "purge"] {
        let out = raxe(
            data,
            &["dlq", command, "--mssp", "m1", "--customer", "nonexistent"],
        );
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            text(&out).contains("no dead-letter queue matches --mssp/--customer"),
            "{command}: {}",
            text(&out)
        );
    }
    // With nothing named and nothing there, there is just nothing to do.
    let out = raxe(data, &["dlq", "replay"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("nothing to do"), "{}", text(&out));
}

/// An event without `mssp_id` can only reach a global SIEM (customer SIEMs belong to an
/// MSSP): `ingest` says so rather than promise "once their customer's SIEM is configured".
#[test]
fn ingest_says_where_events_without_an_mssp_can_go() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let input = data.join("events.jsonl");
    fs::write(
        &input,
        "{\"customer_id\":\"a\"}\n{\"customer_id\":\"b\",\"mssp_id\":\"m\"}\n",
    )
    .unwrap();
    let out = raxe(data, &["ingest", input.to_str().unwrap()]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("2 of the accepted events have no destination yet"),
        "{said}"
    );
    assert!(said.contains("1 of them have no mssp_id"), "{said}");
    assert!(said.contains("raxe global siem configure"), "{said}");
}

/// `customer siem list` lists customer destinations (`--mssp` narrows them), `global siem
/// list` global ones; `--mssp` under `global` is an error, not ignored.
#[test]
fn each_list_lists_its_own_destinations() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let url = "https://siem.example.com:8088/services/collector/event";
    assert!(configure_splunk_for(data, "acme", url, TOKEN)
        .status
        .success());
    configure_global_splunk(data, url);
    let ids = |args: &[&str]| -> Vec<String> {
        let out = raxe(data, args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        listed
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ids(&["customer", "siem", "list", "--json"]),
        ["customer/m1/acme"]
    );
    assert_eq!(
        ids(&["customer", "siem", "list", "--mssp", "m1", "--json"]),
        ["customer/m1/acme"]
    );
    assert!(ids(&["customer", "siem", "list", "--mssp", "m2", "--json"]).is_empty());
    assert_eq!(ids(&["global", "siem", "list", "--json"]), ["global/all"]);
    let out = raxe(data, &["global", "siem", "list", "--mssp", "m1"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("--mssp picks customer destinations"),
        "{}",
        text(&out)
    );
}

/// A mistyped `--data-dir` is an error for commands that only look (it was created, empty,
/// and `stats` showed nothing wrong); commands that set things up create it.
#[test]
fn a_missing_data_directory_is_created_only_by_commands_that_set_up() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("typo");
    for args in [
        &["stats"][..],
        &["customer", "siem", "list"],
        &["dlq", "list"],
        &["drain", "--timeout", "1"],
    ] {
        let out = raxe(&data, args);
        assert!(!out.status.success(), "{args:?}: {}", text(&out));
        assert!(
            text(&out).contains("no data directory at"),
            "{}",
            text(&out)
        );
        assert!(!data.exists(), "{args:?} created it");
    }
    let input = dir.path().join("e.jsonl");
    fs::write(&input, event_line(1, "acme") + "\n").unwrap();
    assert!(raxe(&data, &["ingest", input.to_str().unwrap()])
        .status
        .success());
    assert!(data.exists());
}

/// Events left in the queue of a removed destination (its queue kept) are shown by `stats`
/// and `drain` (which said "every queue is empty"), until it is configured again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_queue_of_a_removed_destination_is_shown() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    // Nothing listens on port 9: the events stay queued.
    let url = "http://127.0.0.1:9/services/collector/event";
    assert!(configure_splunk(data, url, TOKEN).status.success());
    let input = data.join("events.jsonl");
    let lines: Vec<String> = (0..5).map(|n| event_line(n, "acme")).collect();
    fs::write(&input, lines.join("\n") + "\n").unwrap();
    assert!(raxe(data, &["ingest", input.to_str().unwrap()])
        .status
        .success());
    let out = raxe(
        data,
        &["customer", "siem", "remove", "acme", "--mssp", "m1"],
    );
    assert!(out.status.success(), "{}", text(&out));

    let out = raxe_async(data, &["drain", "--timeout", "2"]).await;
    let said = text(&out);
    assert!(!said.contains("every queue is empty"), "{said}");
    assert!(
        said.contains("5 events") && said.contains("kept queue of customer/m1/acme"),
        "{said}"
    );
    let said = text(&raxe(data, &["stats"]));
    assert!(said.contains("kept queue of customer/m1/acme"), "{said}");
    let out = raxe(data, &["stats", "--json"]);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["kept_queues"][0]["id"], "customer/m1/acme", "{stats}");
    assert_eq!(stats["kept_queues"][0]["queue"]["events"], 5, "{stats}");

    // Configured again, it is a destination's queue again.
    assert!(configure_splunk(data, url, TOKEN).status.success());
    let out = raxe(data, &["stats", "--json"]);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["kept_queues"], serde_json::json!([]), "{stats}");
    assert_eq!(stats["destinations"][0]["queue"]["events"], 5, "{stats}");
}

/// sled's page cache is sized for the destinations configured when the queues open: many
/// busy queues each keep a leaf or two in it (`StoreOptions::cache_for_queues`).
#[test]
fn the_queues_cache_is_sized_for_the_configured_destinations() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let opened = |data: &std::path::Path| {
        let out = raxe_env(
            data,
            &["--log-format", "json", "customer", "siem", "list"],
            &[("RAXE_LOG", "raxe=debug")],
        );
        assert!(out.status.success(), "{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["fields"]["message"] == "event queues open")
            .map(|v| v["fields"].clone())
            .unwrap_or_else(|| panic!("no 'event queues open' line in:\n{stderr}"))
    };
    let mib = |queues: usize| {
        let bytes = raxe_storage::StoreOptions::cache_for_queues(queues) as f64;
        (bytes / f64::from(1 << 20) * 10.0).round() / 10.0
    };
    for customer in ["c1", "c2", "c3"] {
        let out = configure_splunk_for(data, customer, "https://splunk.example.com:8088", TOKEN);
        assert!(out.status.success(), "{}", text(&out));
    }
    let fields = opened(data);
    assert_eq!(fields["destinations"], 3, "{fields}");
    assert_eq!(fields["cache_mib"].as_f64(), Some(mib(3)), "{fields}");
    assert!(mib(3) > mib(0), "each destination adds to the cache");
}
