//! Splunk HEC response classification (protocols.md §1.5, §6).

use http::StatusCode;

use crate::http_common::{describe, retry};
use crate::outcome::{Outcome, RejectedEvents};
use crate::request::HttpResponse;

/// What an HEC error body says: `{"text":..,"code":N,"invalid-event-number":K}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct HecReply {
    pub text: Option<String>,
    pub code: Option<u32>,
    #[serde(rename = "invalid-event-number")]
    pub invalid_event_number: Option<usize>,
}

impl HecReply {
    pub fn parse(body: &[u8]) -> HecReply {
        serde_json::from_slice(body).unwrap_or_default()
    }
}

/// Classifies a Splunk HEC answer. 2xx is delivered; a known HEC code decides next; the
/// bare HTTP status last (proxies, load balancers, Splunk's web server).
pub fn classify_hec(resp: &HttpResponse) -> Outcome {
    let status = resp.status;
    if status.is_success() {
        return Outcome::Delivered;
    }
    let reply = HecReply::parse(&resp.body);
    let reason = describe(resp);
    if let Some(code) = reply.code {
        if let Some(outcome) = by_code(code, &reply, resp, &reason) {
            return outcome;
        }
    }
    by_status(status, resp, reason)
}

fn by_code(code: u32, reply: &HecReply, resp: &HttpResponse, reason: &str) -> Option<Outcome> {
    let reason = reason.to_string();
    Some(match code {
        // "Success" / "HEC is healthy" on an answer that is not 2xx (a relay or gateway in
        // front of Splunk): nothing says the events were taken, so the status decides.
        0 | 17 => return None,
        // Token disabled / required / malformed header / invalid; health-endpoint bad tokens.
        1 | 2 | 3 | 4 | 21 | 22 => Outcome::AuthFailed { reason },
        // No data: the whole request is wrong (a bug on our side).
        5 => Outcome::Rejected {
            events: RejectedEvents::All,
            reason,
        },
        // Bad event at `invalid-event-number`.
        6 | 12 | 13 | 15 => Outcome::Rejected {
            events: reply
                .invalid_event_number
                .map_or(RejectedEvents::Unknown, RejectedEvents::FirstBad),
            reason,
        },
        // Incorrect index: every event of a destination carries the same index.
        7 | 16 => Outcome::Misconfigured { reason },
        10 | 11 | 14 => {
            let hint = match code {
                10 => "the token has indexer acknowledgement on; configure the destination with --ack so that requests carry a channel",
                11 => "the channel must be a GUID; configure the destination again with --ack to make a new one",
                _ => "indexer acknowledgement is off for this token; turn on useACK for the token, or configure the destination without --ack",
            };
            Outcome::Misconfigured {
                reason: format!("{reason} (hint: {hint})"),
            }
        }
        8 | 9 | 18 | 19 | 20 => retry(resp),
        _ => return None,
    })
}

fn by_status(status: StatusCode, resp: &HttpResponse, reason: String) -> Outcome {
    match status.as_u16() {
        413 => Outcome::TooLarge { reason },
        408 | 429 => retry(resp),
        401 | 403 => Outcome::AuthFailed { reason },
        404 | 415 | 501 => Outcome::Misconfigured { reason },
        500..=599 => retry(resp),
        300..=399 => Outcome::Misconfigured {
            reason: format!("{reason} (redirects are not followed; fix endpoint_url)"),
        },
        _ => Outcome::Rejected {
            events: RejectedEvents::Unknown,
            reason,
        },
    }
}
