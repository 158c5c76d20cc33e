//! Splunk HEC indexer acknowledgement (protocols.md §1.6).
//!
//! Promises: with `ack` on, every request carries the destination's channel GUID; the
//! `ackId` of each accepted request is read from its answer; pending ids are polled with
//! `POST /services/collector/ack?channel=<GUID>` and only ids Splunk reported `true` come
//! back as acked. Anything the poll cannot read is "not acked yet", never "acked": a
//! wrong guess here would remove events from the queue that Splunk never indexed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use http::header::{HeaderName, HeaderValue, COOKIE, SET_COOKIE};
use http::{HeaderMap, Uri};

use crate::adapter::BoxFuture;
use crate::config::{ConfigError, SplunkOptions};
use crate::http_common::{classify_transport_error, describe, post};
use crate::outcome::Outcome;
use crate::request::{HttpRequest, Response, TransportError};

/// The header that names the channel on every request of an ack-enabled token.
pub const CHANNEL_HEADER: HeaderName = HeaderName::from_static("x-splunk-request-channel");

/// The ack-poll path under `/services/collector`.
pub const ACK_PATH: &str = "/services/collector/ack";

/// What the engine needs from a destination whose "accepted" is not final.
///
/// A request accepted with an ack id is settled only when [`IndexerAck::poll`] reports
/// that id; until then its events stay in the queue.
pub trait IndexerAck: Send + Sync {
    /// The ack id of an accepted answer; `None` when the answer carried none.
    fn ack_id(&self, answer: &Result<Response, TransportError>) -> Option<u64>;

    /// Asks which of `ids` are indexed. `Ok` holds the ids reported `true` (others are
    /// still pending); `Err` is what to do when the poll itself failed (retry later, or
    /// stop for bad credentials or configuration).
    fn poll<'a>(&'a self, ids: &'a [u64]) -> BoxFuture<'a, Result<BTreeSet<u64>, Outcome>>;

    /// Which id space the ids belong to (server and channel). Ids from adapters with the
    /// same target are the same ids: a reload that rebuilds an unchanged adapter keeps
    /// them valid. Holds no secret.
    fn ack_target(&self) -> String;

    /// How often pending ids are polled.
    fn interval(&self) -> Duration;

    /// How long an id may stay `false` before its request is sent again.
    fn timeout(&self) -> Duration;

    /// How many requests may wait for their ack at once.
    fn max_pending(&self) -> usize;
}

/// A fresh channel id (a random GUID), made once per destination at configure time.
pub fn new_channel() -> String {
    uuid::Uuid::new_v4().hyphenated().to_string().to_uppercase()
}

/// The 8-4-4-4-12 hex form Splunk requires (code 11 otherwise).
pub fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    groups.len() == lens.len()
        && groups
            .iter()
            .zip(lens)
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Checks the ack options of a Splunk destination (part of `SiemConfig::validate`).
pub fn validate_ack(o: &SplunkOptions) -> Result<(), ConfigError> {
    use crate::config::invalid;
    if let Some(channel) = &o.channel {
        if !is_guid(channel) {
            return Err(invalid(
                "channel",
                "must be a GUID such as FE0ECFAD-13D5-401B-847D-77833BD77131",
            ));
        }
    }
    if !o.ack {
        return Ok(());
    }
    if o.channel.is_none() {
        return Err(ConfigError::MissingOption {
            siem_type: crate::config::SiemType::Splunk,
            option: "channel (needed with ack; `raxe ... siem configure --ack` makes one)",
        });
    }
    let limits = crate::config::limits::MAX_ACK_INTERVAL_SECONDS;
    if !(1..=limits).contains(&o.ack_interval_seconds) {
        return Err(invalid(
            "ack_interval_seconds",
            format!("must be 1 to {limits}"),
        ));
    }
    if o.ack_timeout_seconds > crate::config::limits::MAX_ACK_TIMEOUT_SECONDS {
        return Err(invalid(
            "ack_timeout_seconds",
            format!(
                "must be at most {}",
                crate::config::limits::MAX_ACK_TIMEOUT_SECONDS
            ),
        ));
    }
    let most = crate::config::limits::MAX_ACK_MAX_PENDING;
    if !(1..=most).contains(&o.ack_max_pending) {
        return Err(invalid("ack_max_pending", format!("must be 1 to {most}")));
    }
    if o.ack_timeout_seconds <= o.ack_interval_seconds {
        return Err(invalid(
            "ack_timeout_seconds",
            "must be longer than ack_interval_seconds",
        ));
    }
    Ok(())
}

/// `{"text":"Success","code":0,"ackId":7}` → 7.
pub fn parse_ack_id(body: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Accepted {
        #[serde(rename = "ackId")]
        ack_id: Option<u64>,
    }
    serde_json::from_slice::<Accepted>(body).ok()?.ack_id
}

/// The poll body: `{"acks":[0,1,2]}`.
pub fn ack_poll_body(ids: &[u64]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "acks": ids })).unwrap_or_default()
}

/// `{"acks":{"0":true,"1":false}}` → the ids that are `true`. `None` when the body is not
/// an ack answer at all (the caller retries rather than guess).
pub fn parse_ack_status(body: &[u8]) -> Option<BTreeSet<u64>> {
    #[derive(serde::Deserialize)]
    struct Status {
        acks: std::collections::BTreeMap<String, bool>,
    }
    let status: Status = serde_json::from_slice(body).ok()?;
    Some(
        status
            .acks
            .into_iter()
            // A key that is not a number was never an id of ours: ignore it.
            .filter_map(|(id, done)| if done { id.parse().ok() } else { None })
            .collect(),
    )
}

/// The ack endpoint for an event URL: the same `.../services/collector` prefix (a proxy
/// may mount HEC under a path), then `/ack?channel=<GUID>`.
pub fn ack_uri(event_uri: &Uri, channel: &str) -> Option<Uri> {
    let path = event_uri.path();
    let prefix = match path.find("/services/collector") {
        Some(at) => &path[..at],
        None => "",
    };
    let mut parts = event_uri.clone().into_parts();
    parts.path_and_query = Some(
        format!("{prefix}{ACK_PATH}?channel={channel}")
            .parse()
            .ok()?,
    );
    Uri::from_parts(parts).ok()
}

/// Reads the answer to an ack poll.
pub fn classify_poll(
    answer: &Result<crate::request::HttpResponse, TransportError>,
) -> Result<BTreeSet<u64>, Outcome> {
    let resp = match answer {
        Ok(resp) => resp,
        Err(e) => return Err(classify_transport_error(e)),
    };
    if resp.status.is_success() {
        return parse_ack_status(&resp.body).ok_or_else(|| Outcome::Retry {
            after: None,
            reason: format!("unreadable ack answer: {}", describe(resp)),
        });
    }
    match super::classify_hec(resp) {
        outcome @ (Outcome::Retry { .. }
        | Outcome::AuthFailed { .. }
        | Outcome::Misconfigured { .. }) => Err(outcome),
        // The ack endpoint takes no events, so "rejected" or "too large" means the
        // endpoint itself is wrong (a proxy path, an old Splunk): an operator must look.
        _ => Err(Outcome::Misconfigured {
            reason: format!("the ack endpoint refused the poll: {}", describe(resp)),
        }),
    }
}

/// A load balancer's session cookies for one channel (protocols.md §1.6, point 7): kept
/// from every answer and sent back on every request, events and ack polls alike, so a
/// poll reaches the indexer that issued its ids. Only the `name=value` of each
/// `Set-Cookie` is kept (no expiry or path: one channel, one endpoint).
#[derive(Default)]
pub(crate) struct StickyCookies(std::sync::Mutex<BTreeMap<String, String>>);

impl std::fmt::Debug for StickyCookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().map_or(0, |m| m.len());
        write!(f, "StickyCookies({n} kept)")
    }
}

impl StickyCookies {
    /// Keeps the cookies an answer sets.
    pub fn remember(&self, headers: &HeaderMap) {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for value in headers.get_all(SET_COOKIE) {
            let Ok(text) = value.to_str() else { continue };
            let pair = text.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                let name = name.trim();
                if !name.is_empty() {
                    kept.insert(name.to_string(), value.trim().to_string());
                }
            }
        }
    }

    /// `request` with the kept cookies, when there are any.
    pub fn apply(&self, request: &HttpRequest) -> Option<HttpRequest> {
        let kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if kept.is_empty() {
            return None;
        }
        let line: Vec<String> = kept.iter().map(|(n, v)| format!("{n}={v}")).collect();
        let mut value = HeaderValue::from_str(&line.join("; ")).ok()?;
        value.set_sensitive(true);
        let mut request = request.clone();
        request.headers.insert(COOKIE, value);
        Some(request)
    }
}

/// The ack half of an [`super::HecAdapter`].
#[derive(Debug, Clone)]
pub(crate) struct AckSettings {
    pub uri: Uri,
    pub interval: Duration,
    pub timeout: Duration,
    pub max_pending: usize,
}

impl IndexerAck for super::HecAdapter {
    fn ack_id(&self, answer: &Result<Response, TransportError>) -> Option<u64> {
        match answer {
            Ok(Response::Http(resp)) if resp.status.is_success() => parse_ack_id(&resp.body),
            _ => None,
        }
    }

    fn poll<'a>(&'a self, ids: &'a [u64]) -> BoxFuture<'a, Result<BTreeSet<u64>, Outcome>> {
        Box::pin(async move {
            let Some(settings) = &self.ack else {
                return Err(Outcome::Misconfigured {
                    reason: "indexer acknowledgement is off for this destination".into(),
                });
            };
            let request = post(
                &settings.uri,
                &self.builder.headers,
                ack_poll_body(ids),
                false,
            );
            classify_poll(&self.send_sticky(&request).await)
        })
    }

    fn ack_target(&self) -> String {
        self.ack
            .as_ref()
            .map_or_else(String::new, |s| s.uri.to_string())
    }

    fn interval(&self) -> Duration {
        self.ack.as_ref().map_or(Duration::ZERO, |s| s.interval)
    }

    fn timeout(&self) -> Duration {
        self.ack.as_ref().map_or(Duration::ZERO, |s| s.timeout)
    }

    fn max_pending(&self) -> usize {
        self.ack
            .as_ref()
            .map_or(crate::config::DEFAULT_ACK_MAX_PENDING, |s| s.max_pending)
    }
}
