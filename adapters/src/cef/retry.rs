//! Classification for CEF over HTTP and ArcSight (protocols.md §7.7 and the brief):
//! 2xx delivered; 401/403 auth; 408/429/5xx retry; 400 reject; 413 too large;
//! 404/415/501 and 3xx misconfigured; other 4xx reject.

use crate::http_common::{describe, retry};
use crate::outcome::{Outcome, RejectedEvents};
use crate::request::HttpResponse;

pub fn classify_cef_http(resp: &HttpResponse) -> Outcome {
    let reason = describe(resp);
    match resp.status.as_u16() {
        200..=299 => Outcome::Delivered,
        401 | 403 => Outcome::AuthFailed { reason },
        408 | 429 => retry(resp),
        413 => Outcome::TooLarge { reason },
        404 | 415 | 501 => Outcome::Misconfigured { reason },
        300..=399 => Outcome::Misconfigured { reason },
        400..=499 => Outcome::Rejected {
            events: RejectedEvents::Unknown,
            reason,
        },
        500..=599 => retry(resp),
        _ => Outcome::Misconfigured { reason },
    }
}
