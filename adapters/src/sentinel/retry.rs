//! Data Collector API answers (protocols.md §3.1).

use crate::http_common::{describe, retry};
use crate::outcome::{Outcome, RejectedEvents};
use crate::request::HttpResponse;

/// Posts larger than this are refused (the service answers 404 for them).
pub const MAX_POST_BYTES: usize = 30 * 1000 * 1000;

/// 2xx delivered; 403/401 auth; 404 misconfigured (too large when the body was over
/// 30 MB); 429/500/503 (and other 5xx, 408) retry; 400 `InvalidDataFormat` rejects the
/// records, other 400s (workspace, api-version, log type, headers) are misconfiguration;
/// 413 too large; anything else misconfigured.
pub fn classify_data_collector(resp: &HttpResponse, body_len: usize) -> Outcome {
    let reason = describe(resp);
    match resp.status.as_u16() {
        200..=299 => Outcome::Delivered,
        401 | 403 => Outcome::AuthFailed { reason },
        404 if body_len > MAX_POST_BYTES => Outcome::TooLarge { reason },
        404 => Outcome::Misconfigured { reason },
        413 => Outcome::TooLarge { reason },
        400 if contains(&resp.body, b"InvalidDataFormat") => Outcome::Rejected {
            events: RejectedEvents::Unknown,
            reason,
        },
        400 => Outcome::Misconfigured { reason },
        408 | 429 => retry(resp),
        500..=599 => retry(resp),
        _ => Outcome::Misconfigured { reason },
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
