//! CrowdStrike Falcon LogScale over its HEC endpoint (protocols.md §2, §7.3): the Splunk
//! encoder and request builder ([`crate::splunk::HecAdapter`]) with
//! `Authorization: Bearer`, `repository` → `index`, `parser` → `sourcetype`, and the
//! classification of §2.6 below.

use crate::http_common::{describe, retry};
use crate::outcome::{Outcome, RejectedEvents};
use crate::request::HttpResponse;

/// Default API path when the URL has none.
pub const LOGSCALE_PATH: &str = "/api/v1/ingest/hec";

/// LogScale answers (§2.6): 200 = committed; other 2xx/3xx are errors worth retrying;
/// 401/403 auth; 404 wrong URL; 408/429 and 5xx retry; 413 too large; other 4xx reject.
pub fn classify_logscale(resp: &HttpResponse) -> Outcome {
    let reason = describe(resp);
    match resp.status.as_u16() {
        200 => Outcome::Delivered,
        201..=399 => Outcome::Retry {
            after: crate::http_common::retry_after(&resp.headers),
            reason: format!("{reason} (only 200 means committed)"),
        },
        401 | 403 => Outcome::AuthFailed { reason },
        404 => Outcome::Misconfigured { reason },
        408 | 429 => retry(resp),
        413 => Outcome::TooLarge { reason },
        400..=499 => Outcome::Rejected {
            events: RejectedEvents::Unknown,
            reason,
        },
        _ => retry(resp),
    }
}
