//! Data Collector API SharedKey signature (protocols.md §3.1).

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use time::OffsetDateTime;

/// `x-ms-date` value: RFC 1123, e.g. `Tue, 01 Jul 2025 12:00:00 GMT` (UTC).
pub fn rfc1123(t: OffsetDateTime) -> String {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[t.weekday().number_days_from_monday() as usize],
        t.day(),
        MONTHS[u8::from(t.month()) as usize - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `POST\n<len>\napplication/json\nx-ms-date:<date>\n/api/logs`; `content_length` in
/// bytes of the body as sent.
pub fn string_to_sign(content_length: usize, x_ms_date: &str) -> String {
    format!("POST\n{content_length}\napplication/json\nx-ms-date:{x_ms_date}\n/api/logs")
}

/// Base64(HMAC-SHA256(decoded key, string_to_sign)).
pub fn signature(key: &[u8], content_length: usize, x_ms_date: &str) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(string_to_sign(content_length, x_ms_date).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// `SharedKey <workspace_id>:<signature>`.
pub fn authorization(
    workspace_id: &str,
    key: &[u8],
    content_length: usize,
    x_ms_date: &str,
) -> String {
    format!(
        "SharedKey {workspace_id}:{}",
        signature(key, content_length, x_ms_date)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const WS: &str = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
    const DATE: &str = "Tue, 01 Jul 2025 12:00:00 GMT";

    fn key() -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
            .unwrap()
    }

    #[test]
    fn date_format() {
        assert_eq!(rfc1123(datetime!(2025-07-01 12:00:00 UTC)), DATE);
        assert_eq!(
            rfc1123(datetime!(2026-01-04 03:04:05 +02:00)),
            "Sun, 04 Jan 2026 01:04:05 GMT"
        );
    }

    #[test]
    fn test_vector_1() {
        let body = br#"[{"scan_id":"s-1","severity":"high"}]"#;
        assert_eq!(body.len(), 37);
        let sts = string_to_sign(body.len(), DATE);
        let hex: String = sts.bytes().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "504f53540a33370a6170706c69636174696f6e2f6a736f6e0a782d6d732d646174653a5475652c203031204a756c20323032352031323a30303a303020474d540a2f6170692f6c6f6773");
        assert_eq!(
            signature(&key(), body.len(), DATE),
            "JQCSsrTy2s3qmCIu9O730FWbASailCAdOk5NKbbG9Ac="
        );
        assert_eq!(
            authorization(WS, &key(), body.len(), DATE),
            "SharedKey 3f2504e0-4f89-41d3-9a0c-0305e82c3301:JQCSsrTy2s3qmCIu9O730FWbASailCAdOk5NKbbG9Ac="
        );
    }

    #[test]
    fn test_vector_2_bytes_not_chars() {
        let body = r#"[{"user":"José"}]"#;
        assert_eq!(body.chars().count(), 17);
        assert_eq!(body.len(), 18);
        assert_eq!(
            signature(&key(), body.len(), DATE),
            "oEOD71L2oDCYaNmyYHeQUMGOiuYkb18FsOV7rlrnXXs="
        );
        assert_eq!(
            signature(&key(), 17, DATE),
            "SdWpbBHIOvGoKJqyAh0CXxAJDPuK7ojmFXjNcsK0pNg="
        );
    }
}
