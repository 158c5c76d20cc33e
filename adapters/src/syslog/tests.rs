use bytes::Bytes;
use time::macros::datetime;

use super::*;
use crate::transport::syslog::frame_batch;
use crate::transport::SyslogFraming;

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn pri_examples() {
    assert_eq!(pri(16, 6), 134);
    assert_eq!(pri(16, 4), 132);
    assert_eq!(pri(16, 5), 133);
    assert_eq!(pri(20, 6), 166);
    assert_eq!(pri(1, 3), 11);
    assert_eq!(pri(0, 0), 0);
}

#[test]
fn example_1_rfc5424_octet_counted() {
    let msg = format_rfc5424(&Rfc5424 {
        pri: pri(16, 6),
        timestamp: &rfc5424_timestamp(1_751_371_200_123),
        hostname: "scanner01.example.com",
        app_name: "vulnscan",
        procid: "4242",
        msgid: "SCAN_DONE",
        structured_data: &[],
        msg: b"Scan s-1 finished: 3 findings",
        bom: false,
    });
    assert_eq!(
        msg,
        b"<134>1 2025-07-01T12:00:00.123Z scanner01.example.com vulnscan 4242 SCAN_DONE - Scan s-1 finished: 3 findings"
    );
    assert_eq!(msg.len(), 109);
    let frame = frame_batch(&[Bytes::from(msg)], SyslogFraming::OctetCounting);
    assert_eq!(frame.len(), 113);
    assert_eq!(hex(&frame), "313039203c3133343e3120323032352d30372d30315431323a30303a30302e3132335a207363616e6e657230312e6578616d706c652e636f6d2076756c6e7363616e2034323432205343414e5f444f4e45202d205363616e20732d312066696e69736865643a20332066696e64696e6773");
}

#[test]
fn example_2_structured_data_bom_newline() {
    let sd = [SdElement {
        id: "finding@32473".into(),
        params: vec![
            ("id".into(), "F-17".into()),
            ("sev".into(), "high".into()),
            ("path".into(), "C:\\a]b".into()),
        ],
    }];
    let msg = format_rfc5424(&Rfc5424 {
        pri: pri(16, 4),
        timestamp: "2025-07-01T12:00:01.5+02:00",
        hostname: "scanner01",
        app_name: "vulnscan",
        procid: "-",
        msgid: "FINDING",
        structured_data: &sd,
        msg: "Ünsafe config found".as_bytes(),
        bom: true,
    });
    assert_eq!(msg.len(), 140);
    let frame = frame_batch(&[Bytes::from(msg)], SyslogFraming::Newline);
    assert_eq!(hex(&frame), "3c3133323e3120323032352d30372d30315431323a30303a30312e352b30323a3030207363616e6e657230312076756c6e7363616e202d2046494e44494e47205b66696e64696e674033323437332069643d22462d313722207365763d22686967682220706174683d22433a5c5c615c5d62225d20efbbbfc39c6e7361666520636f6e66696720666f756e640a");
}

#[test]
fn example_3_rfc3164_with_cef() {
    let cef = "CEF:0|Acme\\|Labs|Vuln Scanner|2.1|SCAN-1001|Critical finding: C:\\\\tmp|10|rt=1751371200000 suser=alice cs1Label=query cs1=a\\=b c\\\\d\\nnext cn1Label=cvss_x10 cn1=98 msg=Path C:\\\\x|y";
    let msg = format_rfc3164(&Rfc3164 {
        pri: pri(16, 4),
        time: datetime!(2025-07-01 12:00:02 UTC),
        hostname: "scanner01",
        tag: "vulnscan",
        pid: None,
        msg: cef.as_bytes(),
    });
    assert_eq!(msg.len(), 219);
    assert_eq!(
        String::from_utf8(msg).unwrap(),
        format!("<132>Jul  1 12:00:02 scanner01 vulnscan: {cef}")
    );
    // The CEF part is also what our escaper produces for the §4.2 full example.
    let c = crate::cef::escape::header;
    let v = crate::cef::escape::value;
    let built = format!(
        "CEF:0|{}|Vuln Scanner|2.1|SCAN-1001|{}|10|rt=1751371200000 suser=alice cs1Label=query cs1={} cn1Label=cvss_x10 cn1=98 msg={}",
        c("Acme|Labs"),
        c("Critical finding: C:\\tmp"),
        v("a=b c\\d\nnext"),
        v("Path C:\\x|y")
    );
    assert_eq!(built, cef);
    assert_eq!(built.len(), 178);
}

#[test]
fn header_fields_are_sanitized() {
    let msg = format_rfc5424(&Rfc5424 {
        pri: 134,
        timestamp: "-",
        hostname: "bad host",
        app_name: "",
        procid: "-",
        msgid: "-",
        structured_data: &[],
        msg: b"",
        bom: false,
    });
    assert_eq!(msg, b"<134>1 - bad_host - - - -");
}

#[test]
fn rfc3164_keeps_an_ip_address_whole_and_cuts_a_domain() {
    let at = datetime!(2025-07-01 12:00:02 UTC);
    for (host, shown) in [
        ("10.20.30.40", "10.20.30.40"),
        ("2001:db8::1", "2001:db8::1"),
        ("scanner01.corp.example", "scanner01"),
    ] {
        let msg = format_rfc3164(&Rfc3164 {
            pri: pri(16, 4),
            time: at,
            hostname: host,
            tag: "raxe",
            pid: None,
            msg: b"x",
        });
        let text = String::from_utf8(msg).unwrap();
        assert_eq!(
            text,
            format!("<132>Jul  1 12:00:02 {shown} raxe: x"),
            "{host}"
        );
    }
}

#[test]
fn every_pri_and_time_is_written_as_format_would() {
    for pri in 0..=191u8 {
        let mut out = Vec::new();
        write_pri(pri, &mut out);
        assert_eq!(out, pri.to_string().as_bytes());
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let start = datetime!(2025-01-01 00:00:00 UTC);
    // Every month, days 1-31 of them and both halves of the clock.
    for step in 0..800 {
        let t = start + time::Duration::seconds(step * 40_000 + step % 60);
        let expected = format!(
            "{} {:>2} {:02}:{:02}:{:02}",
            MONTHS[u8::from(t.month()) as usize - 1],
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        assert_eq!(rfc3164_timestamp(t), expected);
    }
}

#[test]
fn rfc3164_tags_keep_alphanumerics_only() {
    let at = datetime!(2025-12-31 23:59:59 UTC);
    let cases = [
        ("raxe-siem", "raxesiem"),
        ("-_-", "raxe"),
        ("", "raxe"),
        ("é1", "1"),
        (
            "abcdefghijklmnopqrstuvwxyz0123456789",
            "abcdefghijklmnopqrstuvwxyz012345",
        ),
    ];
    for (tag, shown) in cases {
        let msg = format_rfc3164(&Rfc3164 {
            pri: pri(23, 7),
            time: at,
            hostname: "h",
            tag,
            pid: Some("42"),
            msg: b"m",
        });
        assert_eq!(
            String::from_utf8(msg).unwrap(),
            format!("<191>Dec 31 23:59:59 h {shown}[42]: m"),
            "{tag}"
        );
    }
}
