//! The `raxe` binary end to end: real processes, a real data directory, a real HEC
//! receiver on 127.0.0.1.

use std::collections::HashSet;
use std::fs;
use std::io::Write;

mod support;

#[path = "cli/configure.rs"]
mod configure;
#[path = "cli/operator.rs"]
mod operator;
#[path = "cli/runs.rs"]
mod runs;

use raxe_tests::hec::HecReceiver;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configure_show_test_ingest_drain_stats() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let hec = HecReceiver::start(TOKEN).await;

    let out = configure_splunk(data, &hec.url(), TOKEN);
    assert!(out.status.success(), "{}", text(&out));
    // The test receiver is http://: the token would cross the network in clear.
    assert!(
        text(&out).contains("⚠ the URL is plain http://"),
        "{}",
        text(&out)
    );

    let out = raxe(data, &["customer", "siem", "show", "acme", "--mssp", "m1"]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(shown.contains("Type:          splunk"), "{shown}");
    assert!(shown.contains("****90AB"), "token masked: {shown}");
    assert!(!shown.contains(TOKEN), "token leaked: {shown}");

    let out = raxe_async(data, &["customer", "siem", "test", "acme", "--mssp", "m1"]).await;
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("✓ Connection successful (HTTP 200"), "{said}");
    assert!(said.contains("✓ Authentication valid"), "{said}");
    assert!(said.contains("✓ Test event delivered"), "{said}");
    assert_eq!(hec.accepted_count(), 1);
    assert_eq!(hec.envelopes()[0]["event"]["event_type"], "test");

    // Four requests in flight; configure again updates only what it is given.
    let out = configure_acme(
        data,
        &[
            "--type",
            "splunk",
            "--url",
            &hec.url(),
            "--max-in-flight",
            "4",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = raxe(
        data,
        &["customer", "siem", "show", "acme", "--mssp", "m1", "--json"],
    );
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["max_in_flight"], 4, "{shown}");
    assert_eq!(shown["token"], "****90AB", "token kept: {shown}");
    assert_eq!(shown["flush_interval_seconds"], 0, "{shown}");

    let input = dir.path().join("events.jsonl");
    let mut file = fs::File::create(&input).unwrap();
    for n in 0..500 {
        writeln!(file, "{}", event_line(n, "acme")).unwrap();
    }
    writeln!(file, "not json").unwrap();
    writeln!(
        file,
        r#"{{"event_id":"x","severity":"apocalyptic","customer_id":"acme"}}"#
    )
    .unwrap();
    drop(file);
    let out = raxe(data, &["ingest", input.to_str().unwrap()]);
    let said = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "rejected lines make exit 1: {said}"
    );
    assert!(said.contains("accepted 500, rejected 2"), "{said}");
    assert!(said.contains("line 501: rejected: "), "{said}");
    assert!(
        !said.contains("rejected: line 501"),
        "the line named once: {said}"
    );
    assert!(
        said.contains("line 502") && said.contains("severity"),
        "{said}"
    );

    let out = raxe_async(data, &["drain", "--timeout", "30"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let ids: HashSet<String> = hec.accepted().into_iter().collect();
    for n in 0..500 {
        assert!(ids.contains(&format!("evt-{n}")), "evt-{n} not delivered");
    }

    let out = raxe(data, &["stats", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["total"]["events_delivered"], 500);
    assert_eq!(stats["destinations"][0]["queue"]["events"], 0);
    let out = raxe(data, &["stats"]);
    assert!(text(&out).contains("customer/m1/acme"), "{}", text(&out));
}

#[test]
fn invalid_configurations_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let out = configure_splunk(
        data,
        "https://splunk.example.com:8088/services/collector/event",
        TOKEN,
    );
    assert!(out.status.success(), "{}", text(&out));
    let config_dir = data.join("config/destinations");
    let snapshot = || -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = fs::read_dir(&config_dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                (p.display().to_string(), fs::read(&p).unwrap())
            })
            .collect();
        files.sort();
        files
    };
    let before = snapshot();
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "--type",
                "sentinel",
                "--url",
                "https://x.ods.opinsights.azure.com/api/logs",
                "--token",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                "--log-type",
                "Raxe",
            ],
            "workspace",
        ),
        (
            &["--type", "splunk", "--url", "not a url", "--token", "t"],
            "url",
        ),
        (
            &[
                "--type",
                "sentinel",
                "--url",
                "https://x.ods.opinsights.azure.com/api/logs",
                "--workspace-id",
                "3f2504e0-4f89-41d3-9a0c-0305e82c3301",
                "--log-type",
                "Raxe",
                "--token",
                "not-base64!!",
            ],
            "base64",
        ),
        (
            &["--type", "nosuchsiem", "--url", "https://x", "--token", "t"],
            "nosuchsiem",
        ),
        (
            &[
                "--type",
                "splunk",
                "--url",
                "https://x/services/collector/event",
                "--token",
                "t",
                "--workspace-id",
                "w",
            ],
            "--workspace-id",
        ),
        (
            &[
                "--type",
                "splunk",
                "--url",
                "https://x/services/collector/event",
                "--token",
                "t",
                "--max-in-flight",
                "0",
            ],
            "max-in-flight",
        ),
        // Values that would stall a destination or never time out.
        (
            &[
                "--type",
                "splunk",
                "--url",
                "https://x/services/collector/event",
                "--token",
                "t",
                "--flush-interval",
                "18446744073709551615",
            ],
            "flush-interval",
        ),
        (
            &[
                "--type",
                "splunk",
                "--url",
                "https://x/services/collector/event",
                "--token",
                "t",
                "--batch-size",
                "100000000",
            ],
            "batch-size",
        ),
        (
            &[
                "--type",
                "splunk",
                "--url",
                "https://x/services/collector/event",
                "--token",
                "t",
                "--timeout",
                "99999999999",
            ],
            "timeout",
        ),
        (
            &[
                "--type",
                "splunk",
                "--url",
                "https://x/services/collector/event",
                "--token",
                "t",
                "--ack",
                "--ack-timeout",
                "0",
            ],
            "ack-timeout",
        ),
    ];
    for (args, expect) in cases {
        let mut full = vec!["customer", "siem", "configure", "acme", "--mssp", "m1"];
        full.extend_from_slice(args);
        let out = raxe(data, &full);
        let said = text(&out).to_lowercase();
        assert!(!out.status.success(), "{args:?} should fail: {said}");
        assert!(said.contains(&expect.to_lowercase()), "{args:?}: {said}");
        assert!(
            !said.contains("aaecawqfbgcicqolda0odxaref"),
            "secret echoed: {said}"
        );
        assert_eq!(snapshot(), before, "{args:?} changed the configuration");
    }
}

/// `raxe ingest` (no service running) cuts input spanning 100 customers into steps of
/// 5,000 like the spool does; every event is queued once and delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_of_many_customers_queues_every_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let hec = HecReceiver::start(TOKEN).await;
    configure_global_splunk(data, &hec.url());
    let total = 12_000;
    let input = dir.path().join("mixed.jsonl");
    let lines: Vec<String> = (0..total)
        .map(|n| event_line(n, &format!("cust-{:03}", n % 100)))
        .collect();
    fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = raxe_async(data, &["ingest", input.to_str().unwrap()]).await;
    assert!(
        text(&out).contains(&format!("accepted {total}, rejected 0")),
        "{}",
        text(&out)
    );
    let out = raxe_async(data, &["drain", "--timeout", "60"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let ids: HashSet<String> = hec.accepted().into_iter().collect();
    assert_eq!(ids.len(), total);
    assert_eq!(hec.accepted_count(), total, "no event delivered twice");
}

/// An id that cannot name one destination is refused before anything is saved; a disabled
/// customer stays disabled when it is given another SIEM.
#[test]
fn bad_ids_are_refused_and_a_new_siem_keeps_the_customer_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let url = "https://splunk.example.com:8088/services/collector/event";
    for (customer, mssp, why) in [
        ("Acme Corp", "m1", "whitespace"),
        ("b/c", "a", "contains '/'"),
        ("c", "a/b", "contains '/'"),
    ] {
        let out = raxe(
            data,
            &[
                "customer",
                "siem",
                "configure",
                customer,
                "--mssp",
                mssp,
                "--type",
                "splunk",
                "--url",
                url,
                "--token",
                TOKEN,
            ],
        );
        assert!(!out.status.success(), "{customer:?}: {}", text(&out));
        assert!(text(&out).contains(why), "{}", text(&out));
    }
    let saved = fs::read_dir(data.join("config/destinations"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(saved, 0, "nothing saved");

    assert!(configure_splunk(data, url, TOKEN).status.success());
    let out = raxe(
        data,
        &["customer", "siem", "disable", "acme", "--mssp", "m1"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = configure_acme(data, &["--type", "cef", "--url", "syslog://127.0.0.1:6514"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = raxe(
        data,
        &["customer", "siem", "show", "acme", "--mssp", "m1", "--json"],
    );
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).expect("show --json");
    assert_eq!(shown["type"], "cef", "{shown}");
    assert_eq!(shown["enabled"], false, "{shown}");

    // Credentials in the URL (user info, Splunk's ?token=) are never shown.
    let secret_url =
        "https://svc:hunter2@splunk.example.com:8088/services/collector/event?token=sekrit";
    let out = configure_splunk_for(data, "globex", secret_url, TOKEN);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !text(&out).contains("http://"),
        "https: no warning: {}",
        text(&out)
    );
    for args in [
        &["customer", "siem", "show", "globex", "--mssp", "m1"][..],
        &[
            "customer", "siem", "show", "globex", "--mssp", "m1", "--json",
        ],
        &["customer", "siem", "list"],
        &["customer", "siem", "list", "--json"],
    ] {
        let said = text(&raxe(data, args));
        assert!(said.contains("splunk.example.com"), "{args:?}: {said}");
        assert!(
            !said.contains("hunter2") && !said.contains("sekrit"),
            "{args:?}: {said}"
        );
    }
}

/// A destination saved before '/' was refused in ids can still be updated (a new token);
/// a new one with such an id cannot be made.
#[test]
fn a_destination_saved_with_a_slash_in_its_id_can_still_be_updated() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let url = "https://splunk.example.com:8088/services/collector/event";
    assert!(configure_splunk(data, url, TOKEN).status.success());
    let configs = data.join("config/destinations");
    let file = fs::read_dir(&configs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .unwrap();
    let mut record: serde_json::Value = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
    record["scope"]["mssp_id"] = "a/b".into();
    record["scope"]["customer_id"] = "c".into();
    fs::remove_file(&file).unwrap();
    fs::write(
        configs.join("customer%2Fa%2Fb%2Fc.json"),
        serde_json::to_vec(&record).unwrap(),
    )
    .unwrap();
    let new_token = "87654321-4321-4321-4321-BA0987654321";
    let out = raxe(
        data,
        &[
            "customer",
            "siem",
            "configure",
            "c",
            "--mssp",
            "a/b",
            "--type",
            "splunk",
            "--url",
            url,
            "--token",
            new_token,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let saved = fs::read_to_string(configs.join("customer%2Fa%2Fb%2Fc.json")).unwrap();
    assert!(
        saved.contains(new_token) && saved.contains("a/b"),
        "{saved}"
    );
    let out = raxe(
        data,
        &[
            "customer",
            "siem",
            "configure",
            "d",
            "--mssp",
            "x/y",
            "--type",
            "splunk",
            "--url",
            url,
            "--token",
            TOKEN,
        ],
    );
    assert!(!out.status.success(), "{}", text(&out));
}
