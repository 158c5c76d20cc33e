//! What Logs Ingestion answers mean (protocols.md §3.2, §6), and Entra ID token failures.
//!
//! Promises: total and pure. A refused token request (400/401/403: bad tenant, client or
//! secret) is an auth failure naming the token step; 403 from the DCR (role not granted
//! yet, which takes up to ~30 min to apply) retries slowly with the reason spelled out so
//! that `stats` shows it; 401 from the DCR arrives here only after the adapter already
//! refreshed the token once, so it is an auth failure.

use std::time::Duration;

use super::token::TokenError;
use crate::http_common::{describe, retry, retry_after};
use crate::outcome::{Outcome, RejectedEvents};
use crate::request::HttpResponse;

/// How long to wait after a DCR 403 before asking again (role propagation is slow).
pub const FORBIDDEN_RETRY: Duration = Duration::from_secs(60);

/// 2xx delivered; 400 rejects (the engine narrows down to the bad records); 401 auth;
/// 403 slow retry; 404 misconfigured; 413 split; 408/429/5xx retry (Retry-After honoured).
pub fn classify_ingestion(resp: &HttpResponse) -> Outcome {
    let reason = describe(resp);
    match resp.status.as_u16() {
        200..=299 => Outcome::Delivered,
        400 => Outcome::Rejected {
            events: RejectedEvents::Unknown,
            reason: format!("{reason} (records do not match the DCR stream declaration?)"),
        },
        401 => Outcome::AuthFailed {
            reason: format!("DCR endpoint refused a fresh Entra ID token: {reason}"),
        },
        403 => Outcome::Retry {
            after: Some(retry_after(&resp.headers).unwrap_or(FORBIDDEN_RETRY)),
            reason: format!(
                "{reason}: the app is not allowed to write to the DCR yet: grant it the \
                 Monitoring Metrics Publisher role on the DCR (role assignments can take \
                 ~30 min to apply); retrying slowly"
            ),
        },
        404 => Outcome::Misconfigured {
            reason: format!("{reason} (check the endpoint URL, --dcr-id and --stream)"),
        },
        413 => Outcome::TooLarge { reason },
        408 | 429 | 500..=599 => retry(resp),
        _ => Outcome::Misconfigured { reason },
    }
}

/// The token step failed: what now for the events that were waiting for it.
pub fn classify_token_error(err: &TokenError) -> Outcome {
    match err {
        TokenError::Transport(e) => Outcome::Retry {
            after: None,
            reason: format!("Entra ID token endpoint unreachable: {e}"),
        },
        TokenError::Refused(resp) => {
            let reason = format!(
                "Entra ID token request failed ({}): check --tenant-id, --client-id and the \
                 client secret (it may have expired)",
                describe(resp)
            );
            match resp.status.as_u16() {
                400 | 401 | 403 => Outcome::AuthFailed { reason },
                408 | 429 | 500..=599 => Outcome::Retry {
                    after: retry_after(&resp.headers),
                    reason,
                },
                _ => Outcome::Misconfigured {
                    reason: format!(
                        "Entra ID token request failed ({}): check --token-url / --tenant-id",
                        describe(resp)
                    ),
                },
            }
        }
        TokenError::BadAnswer(why) => Outcome::Misconfigured {
            reason: format!("Entra ID token answer unusable ({why}): check --token-url"),
        },
    }
}
