//! What `configure` takes and refuses: tokens, the indexer-ack window, TLS options, the
//! names Azure reads.

use std::fs;

use raxe_tests::hec::HecReceiver;

use super::operator::siem_test;
use super::support::*;

/// A token file as editors and `echo` write it (spaces, a line end) gives the token itself:
/// the SIEM accepts it. A file holding two lines is refused, without showing them.
#[tokio::test]
async fn a_token_file_gives_the_token_without_the_spaces_around_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let hec = HecReceiver::start(TOKEN).await;
    let file = data.join("token");
    let configure = |token_file: &std::path::Path| {
        configure_acme(
            data,
            &[
                "--type",
                "splunk",
                "--url",
                &hec.url(),
                "--token-file",
                token_file.to_str().unwrap(),
            ],
        )
    };
    fs::write(&file, format!("  {TOKEN} \r\n")).unwrap();
    let out = configure(&file);
    assert!(out.status.success(), "{}", text(&out));
    let out = siem_test(data, "acme").await;
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("✓ Authentication valid"), "{said}");
    assert_eq!(hec.accepted_count(), 1);

    fs::write(&file, format!("{TOKEN}\nsecond-secret\n")).unwrap();
    let out = configure(&file);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("spaces or control characters inside"),
        "{said}"
    );
    assert!(
        !said.contains(TOKEN) && !said.contains("second-secret"),
        "{said}"
    );
    fs::write(&file, " \n").unwrap();
    let out = configure(&file);
    assert!(!out.status.success());
    assert!(text(&out).contains("is empty"), "{}", text(&out));
}

/// `--ack-max-pending` sets how many Splunk requests may wait for their indexer ack: kept
/// across reconfigurations, shown, bounded, and refused for other types.
#[test]
fn the_ack_window_is_configured_shown_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let configure = |extra: &[&str]| {
        let mut args = vec![
            "customer",
            "siem",
            "configure",
            "acme",
            "--mssp",
            "m1",
            "--type",
            "splunk",
            "--url",
            "https://splunk.example:8088",
            "--token",
            TOKEN,
        ];
        args.extend_from_slice(extra);
        raxe(data, &args)
    };
    let shown = || {
        let out = raxe(
            data,
            &["customer", "siem", "show", "acme", "--mssp", "m1", "--json"],
        );
        let shown: serde_json::Value = serde_json::from_slice(&out.stdout).expect("show --json");
        shown["options"]["ack_max_pending"].clone()
    };
    assert!(configure(&["--ack"]).status.success());
    assert_eq!(shown(), 64);
    // At its default the file leaves it out: an older version (which refuses unknown
    // fields) still reads the file after a downgrade.
    let file = data.join("config/destinations/customer%2Fm1%2Facme.json");
    assert!(!fs::read_to_string(&file)
        .unwrap()
        .contains("ack_max_pending"));
    assert!(configure(&["--ack-max-pending", "512"]).status.success());
    assert_eq!(shown(), 512);
    // Kept when not given again.
    assert!(configure(&["--ack-interval", "5"]).status.success());
    assert_eq!(shown(), 512);
    for bad in ["0", "100001"] {
        let out = configure(&["--ack-max-pending", bad]);
        assert!(!out.status.success(), "{bad}");
    }
    assert_eq!(shown(), 512);
    // With acks off, their settings are not shown (the switch is).
    assert!(configure(&["--no-ack"]).status.success());
    let out = raxe(data, &["customer", "siem", "show", "acme", "--mssp", "m1"]);
    assert!(text(&out).contains("Ack:"), "{}", text(&out));
    assert!(!text(&out).contains("Ack Max Pending"), "{}", text(&out));
    let out = raxe(
        data,
        &[
            "global",
            "siem",
            "configure",
            "ls",
            "--type",
            "crowdstrike",
            "--url",
            "https://logscale.example",
            "--token",
            TOKEN,
            "--ack-max-pending",
            "8",
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("--ack-max-pending does not apply"),
        "{}",
        text(&out)
    );
}

/// TLS options on a destination that does not use TLS are a mistake worth saying: CEF over
/// plain TCP with --insecure-skip-verify was accepted with a warning about a verification
/// that never happens.
#[test]
fn tls_options_and_a_token_need_a_use() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let configure = |extra: &[&str]| {
        let mut args = vec![
            "global",
            "siem",
            "configure",
            "c",
            "--type",
            "cef",
            "--url",
            "syslog://127.0.0.1:6514",
            "--transport",
            "tcp",
        ];
        args.extend_from_slice(extra);
        raxe(data, &args)
    };
    let out = configure(&["--insecure-skip-verify"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("apply to TLS"), "{}", text(&out));
    // A ':' with no port (it would mean the scheme's default) is refused.
    let out = raxe(
        data,
        &[
            "global",
            "siem",
            "configure",
            "h",
            "--type",
            "splunk",
            "--url",
            "http://127.0.0.1:/services/collector/event",
            "--token",
            "t",
        ],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("no port after it"), "{}", text(&out));
    let out = configure(&["--tls", "--insecure-skip-verify"]);
    assert!(out.status.success(), "{}", text(&out));
    // Nor does syslog take a credential (it was kept and shown as ****).
    let out = configure(&["--tls", "--token", "unused-secret"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("no credential"), "{}", text(&out));
    assert!(!text(&out).contains("unused-secret"), "{}", text(&out));
}

/// Forms Azure would not take, or not as meant: a log type ending in _CL gets a second
/// _CL (said), a DCR id or stream in another form is refused (Azure answers 404).
#[test]
fn sentinel_names_are_checked_as_azure_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let out = raxe(
        data,
        &[
            "global",
            "siem",
            "configure",
            "dc",
            "--type",
            "sentinel",
            "--api",
            "data-collector",
            "--url",
            "https://3f2504e0-4f89-41d3-9a0c-0305e82c3301.ods.opinsights.azure.com",
            "--workspace-id",
            "3f2504e0-4f89-41d3-9a0c-0305e82c3301",
            "--log-type",
            "Raxe_CL",
            "--token",
            "AAAA",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("the table is Raxe_CL_CL"),
        "{}",
        text(&out)
    );
    // Another workspace's host would refuse the signature for good.
    let out = raxe(
        data,
        &[
            "global",
            "siem",
            "configure",
            "dc",
            "--type",
            "sentinel",
            "--url",
            "https://ws9.ods.opinsights.azure.com",
        ],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("workspace ws9's"), "{}", text(&out));
    let logs_ingestion = |dcr: &str, stream: &str| {
        raxe(
            data,
            &[
                "global",
                "siem",
                "configure",
                "li",
                "--type",
                "sentinel",
                "--api",
                "logs-ingestion",
                "--url",
                "https://dce.example",
                "--tenant-id",
                "t",
                "--client-id",
                "c",
                "--dcr-id",
                dcr,
                "--stream",
                stream,
                "--token",
                "s",
            ],
        )
    };
    let good = "dcr-00112233445566778899aabbccddeeff";
    assert!(logs_ingestion(good, "Custom-Raxe_CL").status.success());
    let out = logs_ingestion("abc", "Custom-Raxe_CL");
    assert!(!out.status.success());
    assert!(text(&out).contains("dcr_id"), "{}", text(&out));
    let out = logs_ingestion(good, "Raxe_CL");
    assert!(!out.status.success());
    assert!(text(&out).contains("Custom-"), "{}", text(&out));
    // Only names given now are checked, and not when the URL names DCR and stream itself:
    // a destination stored with other forms can still be updated.
    let full_url = format!("https://dce.example/dataCollectionRules/{good}/streams/Custom-R_CL");
    let out = raxe(
        data,
        &[
            "global",
            "siem",
            "configure",
            "url",
            "--type",
            "sentinel",
            "--api",
            "logs-ingestion",
            "--url",
            &full_url,
            "--tenant-id",
            "t",
            "--client-id",
            "c",
            "--dcr-id",
            "x",
            "--stream",
            "y",
            "--token",
            "s",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = raxe(
        data,
        &[
            "global",
            "siem",
            "configure",
            "url",
            "--type",
            "sentinel",
            "--url",
            &full_url,
            "--batch-size",
            "200",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
}
