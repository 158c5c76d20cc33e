use std::time::Duration;

use super::*;
use crate::config::{ArcsightOptions, CefOptions, CefSrcField, CefTransport, SyslogFormat};
use crate::request::HttpRequest;
use crate::test_support::{clean_event, event, resp};

fn v() -> &'static str {
    DEVICE_VERSION
}

fn line_1() -> String {
    format!(
        "CEF:0|RAXE|ThreatDetection|{}|pi-001|Prompt Injection Detected|10|rt=1769769000123 src=inst_abc123 suser=agent_prod_001 cs1=sha256:abc123 cs1Label=PromptHash cs2=pi-001,pi-003 cs2Label=RuleIDs cs3=PI cs3Label=ThreatFamilies cs4=evt-1 cs4Label=EventId cs5=mssp_1 cs5Label=MsspId cs6=cust_acme cs6Label=CustomerId cn1=42 cn1Label=PromptLength cn2=2 cn2Label=DetectionCount cn3=5 cn3Label=ScanDurationMs",
        v()
    )
}

fn line_clean() -> String {
    format!(
        "CEF:0|RAXE|ThreatDetection|{}|scan|Scan Clean|0|rt=1751371200000 cs4=evt-clean cs4Label=EventId cs6=cust_acme cs6Label=CustomerId",
        v()
    )
}

fn http(r: &EncodedRequest) -> &HttpRequest {
    match &r.payload {
        Payload::Http(h) => h,
        _ => panic!(),
    }
}

#[test]
fn golden_lines() {
    let s = CefSettings::default();
    assert_eq!(cef_line(&s, &event(1)), line_1());
    assert_eq!(cef_line(&s, &clean_event()), line_clean());
    let s = CefSettings {
        src_field: CefSrcField::DeviceExternalId,
        ..Default::default()
    };
    assert!(cef_line(&s, &event(1)).contains(" deviceExternalId=inst_abc123 "));
}

#[test]
fn names_and_severities() {
    let mut e = event(1);
    e.families = vec!["jb".into()];
    assert_eq!(encoder::event_name(&e), "Jailbreak Detected");
    e.families = vec!["XYZ".into()];
    assert_eq!(encoder::event_name(&e), "Threat Detected");
    e.families.clear();
    assert_eq!(encoder::event_name(&e), "Threat Detected");
    e.threat_detected = false;
    assert_eq!(encoder::event_name(&e), "Scan Clean");
    for (sev, n) in [
        (crate::event::Severity::None, 0),
        (crate::event::Severity::Low, 3),
        (crate::event::Severity::Medium, 5),
        (crate::event::Severity::High, 7),
        (crate::event::Severity::Critical, 10),
    ] {
        e.severity = Some(sev);
        assert_eq!(encoder::cef_severity(&e), n);
    }
}

#[test]
fn forged_values_stay_inside_their_field() {
    let mut e = clean_event();
    e.agent_id = Some("x cs6=evil\nCEF:0|a|b|c|d|e|10|".into());
    e.rule_ids = vec!["r|1\r\n".into()];
    let line = cef_line(&CefSettings::default(), &e);
    assert!(!line.contains('\n') && !line.contains('\r'));
    assert!(line.contains("|r\\|1  |"), "{line}");
    assert!(
        line.contains("suser=x cs6\\=evil\\nCEF:0|a|b|c|d|e|10|"),
        "{line}"
    );
}

#[test]
fn golden_cef_over_http() {
    let c = SiemConfig::cef(
        "https://collector.example.com/cef",
        "tok",
        CefOptions::default(),
    )
    .unwrap();
    let a = CefAdapter::new(c).unwrap();
    let batch = a.encode(&[event(1), clean_event()]);
    assert_eq!(batch.requests.len(), 1);
    let h = http(&batch.requests[0]);
    assert_eq!(h.uri.to_string(), "https://collector.example.com/cef");
    assert_eq!(h.headers["authorization"], "Bearer tok");
    assert_eq!(h.headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(h.headers.len(), 2);
    assert_eq!(
        std::str::from_utf8(&h.body).unwrap(),
        format!("{}\n{}\n", line_1(), line_clean())
    );
    // No token: no Authorization header.
    let c = SiemConfig::cef("http://c/", "", CefOptions::default()).unwrap();
    let a = CefAdapter::new(c).unwrap();
    assert!(http(&a.encode(&[clean_event()]).requests[0])
        .headers
        .get("authorization")
        .is_none());
}

#[test]
fn golden_arcsight() {
    let c = SiemConfig::with_options(
        "https://arcsight.example.com:8443/receiver",
        "tok",
        crate::config::SiemOptions::Arcsight(ArcsightOptions {
            smart_connector_id: "conn-42".into(),
            device_vendor: "Acme|Sec".into(),
            ..Default::default()
        }),
    )
    .unwrap();
    let a = crate::arcsight::ArcsightAdapter::new(c).unwrap();
    let batch = a.encode(&[clean_event()]);
    let h = http(&batch.requests[0]);
    assert_eq!(h.headers["authorization"], "Bearer tok");
    assert_eq!(h.headers[crate::arcsight::CONNECTOR_HEADER], "conn-42");
    assert_eq!(h.headers.len(), 3);
    assert_eq!(
        std::str::from_utf8(&h.body).unwrap(),
        format!(
            "CEF:0|Acme\\|Sec|ThreatDetection|{}|scan|Scan Clean|0|rt=1751371200000 cs4=evt-clean cs4Label=EventId cs6=cust_acme cs6Label=CustomerId\n",
            v()
        )
    );
}

fn syslog_adapter(format: SyslogFormat) -> CefAdapter {
    let c = SiemConfig::cef(
        "syslog://127.0.0.1",
        "",
        CefOptions {
            transport: Some(CefTransport::Tcp),
            syslog_format: format,
            hostname: Some("raxe-agent-01".into()),
            ..Default::default()
        },
    )
    .unwrap();
    CefAdapter::new(c).unwrap()
}

#[test]
fn golden_cef_over_syslog_5424_and_3164() {
    let a = syslog_adapter(SyslogFormat::Rfc5424);
    let batch = a.encode(&[event(1), clean_event()]);
    assert_eq!(batch.requests.len(), 1);
    assert_eq!(batch.requests[0].events, 0..2);
    let Payload::Syslog(msgs) = &batch.requests[0].payload else {
        panic!()
    };
    // local0 (16) * 8 + critical (2) = 130; clean: informational 6 → 134.
    assert_eq!(
        std::str::from_utf8(&msgs[0]).unwrap(),
        format!(
            "<130>1 2026-01-30T10:30:00.123Z raxe-agent-01 raxe - - - {}",
            line_1()
        )
    );
    assert_eq!(
        std::str::from_utf8(&msgs[1]).unwrap(),
        format!(
            "<134>1 2025-07-01T12:00:00.000Z raxe-agent-01 raxe - - - {}",
            line_clean()
        )
    );
    let a = syslog_adapter(SyslogFormat::Rfc3164);
    assert_eq!(
        String::from_utf8(a.transform_event(&clean_event())).unwrap(),
        format!("<134>Jul  1 12:00:00 raxe-agent-01 raxe: {}", line_clean())
    );
    // A batch's messages share one buffer: each is still its event's own message.
    let batch = a.encode(&[event(1), clean_event(), event(1)]);
    let Payload::Syslog(msgs) = &batch.requests[0].payload else {
        panic!()
    };
    let one = a.transform_event(&event(1));
    assert_eq!(msgs.len(), 3);
    assert_eq!(&msgs[0][..], &one[..]);
    assert_eq!(&msgs[1][..], &a.transform_event(&clean_event())[..]);
    assert_eq!(&msgs[2][..], &one[..]);
}

fn kind(o: &Outcome) -> &'static str {
    match o {
        Outcome::Delivered => "delivered",
        Outcome::Retry { .. } => "retry",
        Outcome::Rejected { .. } => "rejected",
        Outcome::TooLarge { .. } => "too_large",
        Outcome::AuthFailed { .. } => "auth",
        Outcome::Misconfigured { .. } => "config",
    }
}

#[test]
fn cef_http_statuses() {
    let k = |s: u16| kind(&classify_cef_http(&resp(s, "")));
    for s in [200, 201, 202, 204] {
        assert_eq!(k(s), "delivered");
    }
    assert_eq!(k(401), "auth");
    assert_eq!(k(403), "auth");
    for s in [408, 429, 500, 502, 503, 504] {
        assert_eq!(k(s), "retry", "{s}");
    }
    assert_eq!(k(400), "rejected");
    assert_eq!(k(422), "rejected");
    assert_eq!(k(413), "too_large");
    assert_eq!(k(404), "config");
    assert_eq!(k(301), "config");
}

#[test]
fn syslog_answers() {
    let a = syslog_adapter(SyslogFormat::Rfc5424);
    let req = &a.encode(&[clean_event()]).requests[0];
    assert_eq!(
        a.classify(req, &Ok(Response::SyslogWritten)),
        Outcome::Delivered
    );
    for e in [
        TransportError::Connect("refused".into()),
        TransportError::Timeout(Duration::from_secs(1)),
        TransportError::Io("broken pipe".into()),
        TransportError::Tls("received fatal alert: HandshakeFailure".into()),
    ] {
        assert_eq!(kind(&a.classify(req, &Err(e))), "retry");
    }
    for e in [
        TransportError::Tls("invalid peer certificate: UnknownIssuer".into()),
        TransportError::Tls("received fatal alert: BadCertificate".into()),
    ] {
        assert_eq!(kind(&a.classify(req, &Err(e))), "config");
    }
}

#[test]
fn encoding_queued_json_decodes_and_dead_letters_what_does_not_decode() {
    use crate::event::JsonEvent;
    let c = SiemConfig::cef(
        "https://collector.example.com/cef",
        "",
        CefOptions::default(),
    )
    .unwrap();
    let a = CefAdapter::new(c).unwrap();
    assert!(!a.embeds_json());
    let json = |e: &ScanEvent| JsonEvent::from_record(e.to_queue_bytes().into()).unwrap();
    // A v2 record with the right shape whose object does not parse.
    let mut broken = event(2).to_queue_bytes();
    broken[12] = b'\x01';
    let broken = JsonEvent::from_record(broken.into()).unwrap();
    let batch = a.encode_json(&[json(&event(1)), broken, json(&clean_event())]);
    let ranges: Vec<_> = batch.requests.iter().map(|r| r.events.clone()).collect();
    assert_eq!(ranges, [0..1, 2..3]);
    assert_eq!(batch.oversized.len(), 1);
    assert_eq!(batch.oversized[0].0, 1);
    assert!(batch.oversized[0].1.contains("undecodable"));
    let body = |i: usize| {
        std::str::from_utf8(&http(&batch.requests[i]).body)
            .unwrap()
            .to_string()
    };
    assert_eq!(body(0), format!("{}\n", line_1()));
    assert_eq!(body(1), format!("{}\n", line_clean()));
}

/// An event whose rule ids and families fill kilobytes (with characters to escape).
fn long_event() -> ScanEvent {
    let mut e = event(7);
    e.rule_ids = (0..300).map(|i| format!("rule=\\{i:04}")).collect();
    e.families = (0..200).map(|i| format!("FAM{i}")).collect();
    e.agent_id = Some("a".repeat(900));
    e
}

#[test]
fn a_line_made_to_fit_keeps_time_ids_and_customer() {
    let settings = CefSettings::default();
    let e = long_event();
    let whole = cef_line(&settings, &e);
    assert!(whole.len() > 5000);
    for budget in [1500, 700, 400] {
        let mut line = String::new();
        assert!(
            encoder::write_cef_within(&settings, &e, budget, &mut line),
            "{budget}"
        );
        assert!(line.len() <= budget, "{budget}: {}", line.len());
        for kept in [
            "rt=1769769000123",
            "cs4=evt-7 cs4Label=EventId",
            "cs5=mssp_1 cs5Label=MsspId",
            "cs6=cust_acme cs6Label=CustomerId",
            "cn1=42",
        ] {
            assert!(line.contains(kept), "{budget}: {kept} missing from {line}");
        }
        // Values are cut before escaping: never half an escape, nor a dangling backslash.
        for value in line.split(' ') {
            let trailing = value.len() - value.trim_end_matches('\\').len();
            assert!(trailing % 2 == 0, "{budget}: {value}");
        }
    }
    // Short enough already: exactly the usual line.
    let mut line = String::new();
    assert!(encoder::write_cef_within(
        &settings,
        &event(1),
        4096,
        &mut line
    ));
    assert_eq!(line, line_1());
    // The kept values alone are longer than the budget: reported, not hidden.
    let mut line = String::new();
    assert!(!encoder::write_cef_within(&settings, &e, 100, &mut line));
}

#[test]
fn udp_messages_fit_the_datagram_and_keep_the_event_id() {
    let c = SiemConfig::cef(
        "syslog://127.0.0.1",
        "",
        CefOptions {
            transport: Some(CefTransport::Udp),
            max_datagram: 1024,
            hostname: Some("raxe-agent-01".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let a = CefAdapter::new(c).unwrap();
    let msg = String::from_utf8(a.transform_event(&long_event())).unwrap();
    assert!(msg.len() <= 1024, "{}", msg.len());
    assert!(msg.starts_with("<130>1 2026-01-30T10:30:00.123Z raxe-agent-01 raxe - - - CEF:0|"));
    assert!(
        msg.contains("cs4=evt-7") && msg.contains("cs6=cust_acme"),
        "{msg}"
    );
    // Shortened the same after other messages in a batch's buffer.
    let batch = a.encode(&[event(1), long_event(), event(1)]);
    let Payload::Syslog(msgs) = &batch.requests[0].payload else {
        panic!()
    };
    assert_eq!(msgs[1], msg.as_bytes());
    assert_eq!(msgs[0], msgs[2]);
    assert_eq!(msgs[0], a.transform_event(&event(1)));
    // Over TCP nothing is shortened.
    let whole =
        String::from_utf8(syslog_adapter(SyslogFormat::Rfc5424).transform_event(&long_event()))
            .unwrap();
    assert!(whole.len() > 5000);
}
