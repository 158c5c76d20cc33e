use super::*;
use crate::transport::{SyslogFraming, SyslogProtocol};

const TOKEN: &str = "12345678-1234-1234-1234-1234567890AB";
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn err(r: Result<SiemConfig, ConfigError>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn defaults() {
    let c = SiemConfig::splunk("https://splunk.example.com:8088", TOKEN).unwrap();
    assert_eq!(c.siem_type, SiemType::Splunk);
    assert_eq!(c.batch_size, 100);
    assert_eq!(c.flush_interval_seconds, 10);
    assert_eq!(c.retry_count, 3);
    assert_eq!(c.timeout_seconds, 30);
    assert!(c.enabled);
    let SiemOptions::Splunk(o) = &c.extra else {
        panic!()
    };
    assert_eq!(o.source, "raxe");
    assert_eq!(o.sourcetype, "_json");
    assert_eq!(o.compression, Compression::Gzip);
    assert_eq!(o.max_request_bytes, 1_000_000);
    let SiemOptions::Crowdstrike(o) = SiemOptions::default_for(SiemType::Crowdstrike) else {
        panic!()
    };
    assert_eq!(o.compression, Compression::Gzip);
    let SiemOptions::Cef(o) = SiemOptions::default_for(SiemType::Cef) else {
        panic!()
    };
    assert_eq!(o.facility, 16);
    assert_eq!(o.max_datagram, 2048);
    assert_eq!(o.framing.0, SyslogFraming::OctetCounting);
    assert_eq!(o.syslog_format, SyslogFormat::Rfc5424);
    assert_eq!(o.device_vendor, "RAXE");
    assert_eq!(o.device_product, "ThreatDetection");
    assert_eq!(o.src_field, CefSrcField::Src);
}

#[test]
fn validation_errors() {
    assert_eq!(
        err(SiemConfig::splunk("not a url", TOKEN)),
        "endpoint_url \"not a url\" is not a valid URL: invalid uri character"
    );
    assert_eq!(
        err(SiemConfig::splunk("/just/a/path", TOKEN)),
        "endpoint_url \"/just/a/path\" is not a valid URL: missing scheme (https://, http:// or syslog://)"
    );
    assert_eq!(
        err(SiemConfig::splunk("syslog://host", TOKEN)),
        "endpoint_url scheme \"syslog\" does not fit a splunk destination (expected https:// or http://)"
    );
    assert_eq!(
        err(SiemConfig::splunk("https://h", "")),
        "splunk destination needs an auth token"
    );
    assert_eq!(
        err(SiemConfig::crowdstrike("https://h", " ")),
        "crowdstrike destination needs an auth token"
    );
    assert_eq!(
        err(SiemConfig::new(SiemType::Sentinel, "https://h", KEY)),
        "sentinel destination needs the option `workspace_id`"
    );
    assert_eq!(
        err(SiemConfig::sentinel("https://h", "ws", "", KEY)),
        "sentinel destination needs the option `log_type`"
    );
    assert_eq!(
        err(SiemConfig::sentinel("https://h", "ws", "Bad-Name", KEY)),
        "option `log_type` is invalid: must be 1 to 100 letters, digits or '_'"
    );
    assert!(SiemConfig::sentinel("https://h", "ws", &"a".repeat(101), KEY).is_err());
    assert!(SiemConfig::sentinel("https://h", "ws", &"a".repeat(100), KEY).is_ok());
    assert_eq!(
        err(SiemConfig::sentinel(
            "https://h",
            "ws",
            "Raxe",
            "not base64!"
        )),
        "the auth token is invalid: the Sentinel shared key must be valid base64"
    );
    assert_eq!(
        err(SiemConfig::arcsight("https://h", "", "t")),
        "arcsight destination needs the option `smart_connector_id`"
    );
    assert_eq!(
        err(SiemConfig::cef(
            "ftp://h",
            "",
            CefOptions::default()
        )),
        "endpoint_url scheme \"ftp\" does not fit a cef destination (expected https://, http:// or syslog://)"
    );
    assert_eq!(
        err(SiemConfig::cef(
            "https://h",
            "",
            CefOptions {
                transport: Some(CefTransport::Udp),
                ..Default::default()
            }
        )),
        "endpoint_url scheme \"https\" does not fit a cef destination (expected syslog:// for the udp and tcp transports)"
    );
    assert_eq!(
        err(SiemConfig::cef(
            "syslog://h",
            "",
            CefOptions {
                transport: Some(CefTransport::Udp),
                tls: true,
                ..Default::default()
            }
        )),
        "option `tls` is invalid: is only available with the tcp transport"
    );
    assert_eq!(
        err(SiemConfig::cef(
            "syslog://h",
            "",
            CefOptions {
                tls: true,
                framing: SyslogFramingOption(SyslogFraming::Newline),
                ..Default::default()
            }
        )),
        "option `framing` is invalid: syslog over TLS requires octet-counting (RFC 5425)"
    );
    assert_eq!(
        err(SiemConfig::cef(
            "syslog://h",
            "",
            CefOptions {
                facility: 24,
                ..Default::default()
            }
        )),
        "option `facility` is invalid: must be 0 to 23 (16 = local0)"
    );
    let mut c = SiemConfig::splunk("https://h", TOKEN).unwrap();
    c.batch_size = 0;
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "option `batch_size` is invalid: must be 1 to 100000"
    );
    c.batch_size = 1;
    c.siem_type = SiemType::Cef;
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "options are for splunk but siem_type is cef"
    );
}

#[test]
fn cef_modes_and_ports() {
    let mode = |url: &str, o: CefOptions| {
        let c = SiemConfig::cef(url, "", o).unwrap();
        (c.cef_mode().unwrap(), c)
    };
    let (m, c) = mode("syslog://h", CefOptions::default());
    assert_eq!(m, CefMode::Syslog(SyslogProtocol::Udp));
    assert_eq!(c.syslog_port(SyslogProtocol::Udp), 514);
    let (m, c) = mode(
        "syslog://h",
        CefOptions {
            transport: Some(CefTransport::Tcp),
            ..Default::default()
        },
    );
    assert_eq!(m, CefMode::Syslog(SyslogProtocol::Tcp));
    assert_eq!(c.syslog_port(SyslogProtocol::Tcp), 6514);
    let (m, _) = mode(
        "syslog://h",
        CefOptions {
            tls: true,
            ..Default::default()
        },
    );
    assert_eq!(m, CefMode::Syslog(SyslogProtocol::Tls));
    let (_, c) = mode("syslog://h:1514", CefOptions::default());
    assert_eq!(c.syslog_port(SyslogProtocol::Udp), 1514);
    let (_, c) = mode(
        "syslog://h:1514",
        CefOptions {
            port: Some(9),
            ..Default::default()
        },
    );
    assert_eq!(c.syslog_port(SyslogProtocol::Udp), 9);
    let (m, _) = mode("https://h/cef", CefOptions::default());
    assert_eq!(m, CefMode::Http);
}

#[test]
fn serde_round_trip_every_type() {
    let mut configs = vec![
        SiemConfig::splunk("https://splunk:8088", TOKEN).unwrap(),
        SiemConfig::crowdstrike("https://cloud.humio.com", TOKEN).unwrap(),
        SiemConfig::sentinel(
            "https://ws.ods.opinsights.azure.com",
            "ws-1",
            "RaxeEvents",
            KEY,
        )
        .unwrap(),
        SiemConfig::arcsight("https://arc:8443/cef", "conn-7", TOKEN).unwrap(),
        SiemConfig::cef(
            "syslog://collector:6514",
            "",
            CefOptions {
                tls: true,
                syslog_format: SyslogFormat::Rfc3164,
                src_field: CefSrcField::DeviceExternalId,
                ..Default::default()
            },
        )
        .unwrap(),
    ];
    configs[0].batch_size = 7;
    configs[0].enabled = false;
    configs[0].tls.insecure_skip_verify = true;
    if let SiemOptions::Splunk(o) = &mut configs[0].extra {
        o.index = Some("security".into());
        o.compression = Compression::None;
    }
    for c in configs {
        let json = serde_json::to_string(&c).unwrap();
        let back: SiemConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c, "{json}");
        back.validate().unwrap();
    }
}

#[test]
fn serde_defaults_and_unknown_options() {
    let c: SiemConfig = serde_json::from_str(
        r#"{"siem_type":"splunk","endpoint_url":"https://h","auth_token":"t"}"#,
    )
    .unwrap();
    assert_eq!(c.extra, SiemOptions::default_for(SiemType::Splunk));
    assert_eq!(c.batch_size, 100);
    let e = serde_json::from_str::<SiemConfig>(
        r#"{"siem_type":"splunk","endpoint_url":"https://h","auth_token":"t","extra":{"indx":"x"}}"#,
    )
    .unwrap_err();
    assert!(e.to_string().contains("invalid splunk options"), "{e}");
}

#[test]
fn token_never_in_debug_display_or_errors() {
    let secret = "SUPER-SECRET-TOKEN-VALUE";
    let s = Secret::new(secret);
    assert_eq!(format!("{s}"), "***");
    assert_eq!(format!("{s:?}"), "***");
    assert_eq!(s.expose(), secret);
    let c = SiemConfig::splunk("https://h:8088/services/collector?x=1", secret).unwrap();
    let shown = format!("{c} {c:?} {c:#?}");
    assert!(!shown.contains(secret), "{shown}");
    assert!(shown.contains("***"));
    // The query is hidden, and marked as such.
    assert_eq!(
        c.to_string(),
        "splunk https://h:8088/services/collector?… (token ***)"
    );
    let e = SiemConfig::sentinel("https://h", "ws", "T", "%%SECRET%%").unwrap_err();
    assert!(!format!("{e} {e:?}").contains("SECRET"));
    // Adapters built from it do not leak it either.
    let adapter = crate::splunk::HecAdapter::new(c).unwrap();
    assert!(!format!("{adapter:?}").contains(secret));
}

#[test]
fn siem_type_parse_and_display() {
    for t in ["splunk", "crowdstrike", "sentinel", "arcsight", "cef"] {
        assert_eq!(t.parse::<SiemType>().unwrap().to_string(), t);
    }
    assert_eq!("SPLUNK".parse::<SiemType>().unwrap(), SiemType::Splunk);
    assert!("qradar".parse::<SiemType>().is_err());
}

#[test]
fn shown_urls_carry_no_user_info_and_no_query() {
    use super::redact_url;
    assert_eq!(
        redact_url("https://u:p@splunk.example.com:8088/services/collector?token=abc#x"),
        "https://splunk.example.com:8088/services/collector?…"
    );
    assert_eq!(
        redact_url("syslog://10.0.0.1:6514"),
        "syslog://10.0.0.1:6514"
    );
    assert_eq!(redact_url("https://a@b@host/p"), "https://host/p");
    assert_eq!(redact_url("not a url?x"), "not a url?…");
    // A raw '/', '?' or '#' in a password: nothing of it is shown.
    for url in [
        "https://user:pa/ss@host:8088/x",
        "https://user:p?w@host/x",
        "https://user:p#w@host",
    ] {
        assert_eq!(redact_url(url), "https://…", "{url}");
    }
    // An '@' in a path cannot be told apart from one: hidden as well.
    assert_eq!(redact_url("https://host/a@b"), "https://…");
    let config = SiemConfig::new(
        SiemType::Splunk,
        "https://user:hunter2@splunk.example.com:8088/services/collector/event?token=sekrit",
        "12345678-1234-1234-1234-1234567890AB",
    )
    .unwrap();
    for shown in [config.to_string(), format!("{config:?}")] {
        assert!(
            !shown.contains("hunter2") && !shown.contains("sekrit"),
            "{shown}"
        );
    }
}

#[test]
fn batching_and_timing_settings_are_bounded() {
    let base = SiemConfig::splunk("https://h:8088", TOKEN).unwrap();
    let check = |change: &dyn Fn(&mut SiemConfig), option: &str| {
        let mut c = base.clone();
        change(&mut c);
        let said = c.validate().unwrap_err().to_string();
        assert!(said.contains(option), "{option}: {said}");
    };
    check(
        &|c| c.flush_interval_seconds = u64::MAX,
        "flush_interval_seconds",
    );
    check(&|c| c.batch_size = limits::MAX_BATCH_SIZE + 1, "batch_size");
    check(
        &|c| c.timeout_seconds = limits::MAX_TIMEOUT_SECONDS + 1,
        "timeout_seconds",
    );
    check(
        &|c| c.retry_count = limits::MAX_RETRY_COUNT + 1,
        "retry_count",
    );
    let with_ack = |interval: u64, timeout: u64| {
        move |c: &mut SiemConfig| {
            if let SiemOptions::Splunk(o) = &mut c.extra {
                o.ack = true;
                o.channel = Some("FE0ECFAD-13D5-401B-847D-77833BD77131".into());
                o.ack_interval_seconds = interval;
                o.ack_timeout_seconds = timeout;
            }
        }
    };
    check(
        &with_ack(limits::MAX_ACK_INTERVAL_SECONDS + 1, 86_400),
        "ack_interval_seconds",
    );
    check(
        &with_ack(10, limits::MAX_ACK_TIMEOUT_SECONDS + 1),
        "ack_timeout_seconds",
    );
    let with_window = |window: usize| {
        move |c: &mut SiemConfig| {
            with_ack(10, 300)(c);
            if let SiemOptions::Splunk(o) = &mut c.extra {
                o.ack_max_pending = window;
            }
        }
    };
    check(&with_window(0), "ack_max_pending");
    check(
        &with_window(limits::MAX_ACK_MAX_PENDING + 1),
        "ack_max_pending",
    );
    // The bounds themselves are fine.
    let mut c = base.clone();
    c.batch_size = limits::MAX_BATCH_SIZE;
    c.flush_interval_seconds = limits::MAX_FLUSH_INTERVAL_SECONDS;
    c.timeout_seconds = limits::MAX_TIMEOUT_SECONDS;
    c.retry_count = limits::MAX_RETRY_COUNT;
    with_ack(
        limits::MAX_ACK_INTERVAL_SECONDS,
        limits::MAX_ACK_TIMEOUT_SECONDS,
    )(&mut c);
    c.validate().unwrap();
    with_window(limits::MAX_ACK_MAX_PENDING)(&mut c);
    c.validate().unwrap();
}
