//! Indexer acknowledgement: the channel header, ack ids, the poll request and answer,
//! validation, and the configuration hints for codes 10/11/14.

use std::time::Duration;

use super::ack::*;
use super::*;
use crate::config::{SiemConfig, SplunkOptions};
use crate::request::HttpRequest;
use crate::test_support::{event, resp};

const CHANNEL: &str = "FE0ECFAD-13D5-401B-847D-77833BD77131";

fn options(ack: bool) -> SplunkOptions {
    SplunkOptions {
        ack,
        channel: Some(CHANNEL.into()),
        ack_interval_seconds: 1,
        ack_timeout_seconds: 2,
        compression: Compression::None,
        host: Some("h".into()),
        ..Default::default()
    }
}

fn adapter(url: &str, o: SplunkOptions) -> HecAdapter {
    let config = SiemConfig::with_options(url, "tok-secret", SiemOptions::Splunk(o)).unwrap();
    HecAdapter::new(config).unwrap()
}

fn http(r: &EncodedRequest) -> &HttpRequest {
    match &r.payload {
        Payload::Http(h) => h,
        _ => panic!("not http"),
    }
}

#[test]
fn channel_is_a_fresh_guid() {
    let a = new_channel();
    let b = new_channel();
    assert!(is_guid(&a), "{a}");
    assert_ne!(a, b);
    assert!(is_guid(CHANNEL));
    for bad in [
        "",
        "FE0ECFAD13D5401B847D77833BD77131",
        "{FE0ECFAD-13D5-401B-847D-77833BD77131}",
        "FE0ECFAD-13D5-401B-847D-77833BD7713G",
        "FE0ECFAD-13D5-401B-847D-77833BD77131-1",
    ] {
        assert!(!is_guid(bad), "{bad}");
    }
}

#[test]
fn ack_id_parsing() {
    assert_eq!(
        parse_ack_id(br#"{"text":"Success","code":0,"ackId":42}"#),
        Some(42)
    );
    assert_eq!(parse_ack_id(br#"{"text":"Success","code":0}"#), None);
    assert_eq!(parse_ack_id(br#"{"ackId":-1}"#), None);
    assert_eq!(parse_ack_id(b"not json"), None);
}

#[test]
fn poll_body_and_status() {
    assert_eq!(ack_poll_body(&[0, 1, 7]), br#"{"acks":[0,1,7]}"#);
    let done = parse_ack_status(br#"{"acks":{"0":true,"1":false,"7":true,"x":true}}"#).unwrap();
    assert_eq!(done.into_iter().collect::<Vec<_>>(), vec![0, 7]);
    assert!(parse_ack_status(br#"{"acks":{}}"#).unwrap().is_empty());
    assert_eq!(parse_ack_status(br#"{"text":"Success"}"#), None);
    assert_eq!(parse_ack_status(br#"{"acks":[0,1]}"#), None);
    assert_eq!(parse_ack_status(b""), None);
}

#[test]
fn ack_uri_keeps_host_and_proxy_prefix() {
    let u = |s: &str| s.parse::<http::Uri>().unwrap();
    assert_eq!(
        ack_uri(&u("https://s:8088/services/collector/event"), CHANNEL)
            .unwrap()
            .to_string(),
        format!("https://s:8088/services/collector/ack?channel={CHANNEL}")
    );
    assert_eq!(
        ack_uri(
            &u("https://lb/splunk/services/collector/event/1.0"),
            CHANNEL
        )
        .unwrap()
        .to_string(),
        format!("https://lb/splunk/services/collector/ack?channel={CHANNEL}")
    );
}

#[test]
fn requests_carry_the_channel_only_with_ack() {
    let on = adapter("https://s:8088", options(true));
    let batch = on.encode(&[event(1)]);
    assert_eq!(
        http(&batch.requests[0]).headers["x-splunk-request-channel"],
        CHANNEL
    );
    assert!(on.indexer_ack().is_some());
    let ack = on.indexer_ack().unwrap();
    assert_eq!(ack.interval(), Duration::from_secs(1));
    assert_eq!(ack.timeout(), Duration::from_secs(2));

    let off = adapter("https://s:8088", options(false));
    let batch = off.encode(&[event(1)]);
    assert!(http(&batch.requests[0])
        .headers
        .get("x-splunk-request-channel")
        .is_none());
    assert!(off.indexer_ack().is_none());
}

#[test]
fn accepted_without_ack_id_is_a_configuration_error_with_ack_on() {
    let on = adapter("https://s:8088", options(true));
    let req = on.encode(&[event(1)]).requests.remove(0);
    let with_id: Result<Response, TransportError> = Ok(Response::Http(resp(
        200,
        r#"{"text":"Success","code":0,"ackId":3}"#,
    )));
    assert_eq!(on.classify(&req, &with_id), Outcome::Delivered);
    assert_eq!(on.indexer_ack().unwrap().ack_id(&with_id), Some(3));
    let without: Result<Response, TransportError> =
        Ok(Response::Http(resp(200, r#"{"text":"Success","code":0}"#)));
    match on.classify(&req, &without) {
        Outcome::Misconfigured { reason } => assert!(reason.contains("useACK"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // Without ack a plain 200 stays final.
    let off = adapter("https://s:8088", options(false));
    assert_eq!(off.classify(&req, &without), Outcome::Delivered);
}

#[test]
fn channel_and_ack_codes_carry_hints() {
    for (code, hint) in [(10, "--ack"), (11, "GUID"), (14, "useACK")] {
        let body = format!(r#"{{"text":"x","code":{code}}}"#);
        match classify_hec(&resp(400, &body)) {
            Outcome::Misconfigured { reason } => {
                assert!(reason.contains(hint), "{code}: {reason}");
                assert!(!reason.contains("tok-secret"));
            }
            other => panic!("{code}: {other:?}"),
        }
    }
}

#[test]
fn poll_answers() {
    let ok = classify_poll(&Ok(resp(200, r#"{"acks":{"1":true,"2":false}}"#))).unwrap();
    assert_eq!(ok.into_iter().collect::<Vec<_>>(), vec![1]);
    assert!(matches!(
        classify_poll(&Ok(resp(200, "<html>"))),
        Err(Outcome::Retry { .. })
    ));
    assert!(matches!(
        classify_poll(&Ok(resp(400, r#"{"text":"ACK is disabled","code":14}"#))),
        Err(Outcome::Misconfigured { .. })
    ));
    assert!(matches!(
        classify_poll(&Ok(resp(403, r#"{"text":"Invalid token","code":4}"#))),
        Err(Outcome::AuthFailed { .. })
    ));
    assert!(matches!(
        classify_poll(&Ok(resp(503, r#"{"text":"Server is busy","code":9}"#))),
        Err(Outcome::Retry { .. })
    ));
    assert!(matches!(
        classify_poll(&Ok(resp(400, "bad"))),
        Err(Outcome::Misconfigured { .. })
    ));
    assert!(matches!(
        classify_poll(&Err(TransportError::Io("refused".into()))),
        Err(Outcome::Retry { .. })
    ));
}

#[test]
fn validation() {
    let check = |o: SplunkOptions| {
        SiemConfig::with_options("https://s:8088", "t", SiemOptions::Splunk(o)).map(|_| ())
    };
    assert!(check(options(true)).is_ok());
    assert!(check(SplunkOptions {
        channel: None,
        ..options(true)
    })
    .is_err());
    assert!(check(SplunkOptions {
        channel: Some("not-a-guid".into()),
        ..options(false)
    })
    .is_err());
    assert!(check(SplunkOptions {
        ack_interval_seconds: 0,
        ..options(true)
    })
    .is_err());
    assert!(check(SplunkOptions {
        ack_timeout_seconds: 1,
        ..options(true)
    })
    .is_err());
    // Without ack the intervals are not used, so they are not checked.
    assert!(check(SplunkOptions {
        ack_timeout_seconds: 0,
        ..options(false)
    })
    .is_ok());
}

#[test]
fn configs_written_before_ack_still_load() {
    let old = r#"{"siem_type":"splunk","endpoint_url":"https://s:8088","auth_token":"t","extra":{"index":"main","compression":"gzip"}}"#;
    let config: SiemConfig = serde_json::from_str(old).unwrap();
    match &config.extra {
        SiemOptions::Splunk(o) => {
            assert!(!o.ack);
            assert_eq!(o.channel, None);
            assert_eq!(o.ack_interval_seconds, 10);
            assert_eq!(o.ack_timeout_seconds, 300);
        }
        other => panic!("{other:?}"),
    }
    let back: SiemConfig = serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
    assert_eq!(back, config);
}
