//! `raxe customer siem configure → show → test` for Sentinel's Logs Ingestion API, against
//! a local Entra ID token endpoint and DCR endpoint on 127.0.0.1 (tests/src/entra.rs,
//! tests/src/dcr.rs). Also: the Data Collector API default, its retirement warning, and
//! `--compression` validation.

use std::path::Path;
use std::process::Output;

use raxe_tests::dcr::DcrReceiver;
use raxe_tests::entra::EntraReceiver;
use support::{raxe_env_async, text};

mod support;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "0f0e0d0c-0b0a-0908-0706-050403020100";
const SECRET: &str = "Xy8Q~cli-s3cr3t+/&=";
const DCR: &str = "dcr-00112233445566778899aabbccddeeff";
const STREAM: &str = "Custom-RaxeEvents_CL";

async fn raxe(data: &Path, args: &[&str], secret: &str) -> Output {
    raxe_env_async(data, args, &[("RAXE_TEST_SECRET", secret)]).await
}

async fn configure(data: &Path, dcr: &DcrReceiver, entra: &EntraReceiver, secret: &str) -> Output {
    let url = dcr.url();
    let token_url = entra.token_url();
    raxe(
        data,
        &[
            "customer",
            "siem",
            "configure",
            "acme",
            "--mssp",
            "m1",
            "--type",
            "sentinel",
            "--url",
            &url,
            "--tenant-id",
            TENANT,
            "--client-id",
            CLIENT,
            "--dcr-id",
            DCR,
            "--stream",
            STREAM,
            "--token-url",
            &token_url,
            "--token-env",
            "RAXE_TEST_SECRET",
            "--timeout",
            "2",
        ],
        secret,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configure_show_test_against_local_entra_and_dcr() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let entra = EntraReceiver::start(TENANT, CLIENT, SECRET).await;
    let dcr = DcrReceiver::start(&entra, DCR, STREAM).await;

    let out = configure(data, &dcr, &entra, SECRET).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(SECRET));

    let out = raxe(
        data,
        &["customer", "siem", "show", "acme", "--mssp", "m1"],
        "",
    )
    .await;
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("logs-ingestion"), "{shown}");
    assert!(shown.contains(DCR) && shown.contains(STREAM), "{shown}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(!shown.contains("retired"), "{shown}");

    let out = raxe(
        data,
        &["customer", "siem", "test", "acme", "--mssp", "m1"],
        "",
    )
    .await;
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    let lines: Vec<&str> = said.lines().collect();
    assert!(lines[0].starts_with("✓ Token acquired (Entra ID"), "{said}");
    assert!(
        lines[1].starts_with("✓ Connection successful (HTTP 204"),
        "{said}"
    );
    assert!(lines[2].starts_with("✓ Test event delivered"), "{said}");
    assert!(!said.contains(SECRET));
    assert_eq!(dcr.empty_posts(), 1, "the empty array was posted");
    assert_eq!(dcr.accepted_count(), 1, "and then the test event");
    assert!(dcr.accepted()[0].starts_with("raxe-test-"));
    assert_eq!(entra.requests(), 1, "one token for the three steps");
    assert_eq!(entra.refused(), 0);

    // A wrong secret: the token step fails, named as such, without the secret.
    let out = configure(data, &dcr, &entra, "wrong-secret-value").await;
    assert!(out.status.success(), "{}", text(&out));
    let out = raxe(
        data,
        &["customer", "siem", "test", "acme", "--mssp", "m1"],
        "",
    )
    .await;
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.starts_with("✗ Token request failed (Entra ID)"),
        "{said}"
    );
    assert!(said.contains("invalid_client"), "{said}");
    assert!(!said.contains("wrong-secret-value") && !said.contains(SECRET));
    assert_eq!(dcr.empty_posts(), 1, "nothing posted without a token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_collector_stays_the_default_for_its_urls_and_warns() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let dc = [
        "customer",
        "siem",
        "configure",
        "acme",
        "--mssp",
        "m1",
        "--type",
        "sentinel",
        "--url",
        "https://3f2504e0-4f89-41d3-9a0c-0305e82c3301.ods.opinsights.azure.com",
        "--workspace-id",
        "3f2504e0-4f89-41d3-9a0c-0305e82c3301",
        "--log-type",
        "Raxe",
        "--token",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    ];
    let mut with_gzip = dc.to_vec();
    with_gzip.extend(["--compression", "gzip"]);
    let out = raxe(data, &with_gzip, "").await;
    assert!(!out.status.success());
    assert!(text(&out).contains("does not take gzip"), "{}", text(&out));

    let out = raxe(data, &dc, "").await;
    assert!(out.status.success(), "{}", text(&out));
    let out = raxe(
        data,
        &["customer", "siem", "show", "acme", "--mssp", "m1"],
        "",
    )
    .await;
    let shown = text(&out);
    assert!(shown.contains("data-collector"), "{shown}");
    assert!(shown.contains("retired on 14 September 2026"), "{shown}");

    // A DCE URL without --api means Logs Ingestion, whose options are then required.
    let out = raxe(
        data,
        &[
            "global",
            "siem",
            "configure",
            "soc",
            "--type",
            "sentinel",
            "--url",
            "https://my-dce.eastus-1.ingest.monitor.azure.com",
            "--token",
            "s",
        ],
        "",
    )
    .await;
    assert!(!out.status.success());
    assert!(text(&out).contains("tenant_id"), "{}", text(&out));
}
