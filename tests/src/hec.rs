//! A Splunk HEC receiver: `POST /services/collector/event` with concatenated envelopes
//! (optionally gzip), `Authorization: Splunk <token>`. Answers like Splunk does.

use std::collections::{HashSet, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::Response;
use http_body_util::Full;

use crate::http_server::{json, serve, wait_until, with_retry_after, Reply, Task};

/// A scripted misbehaviour, consumed one per request before normal handling.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status and HEC code (and optional `Retry-After` seconds).
    Status {
        status: u16,
        code: u32,
        retry_after: Option<u64>,
    },
    /// Accept the connection, read the request, never answer.
    Hang,
    /// Close the connection without answering.
    Reset,
    /// Answer normally after a delay.
    Slow(Duration),
}

#[derive(Debug, Default)]
struct State {
    token: String,
    faults: VecDeque<Fault>,
    /// Event ids answered with HEC 400 code 6 (`invalid-event-number`).
    poison: HashSet<String>,
    /// Accepted event ids, in arrival order (duplicates included).
    accepted: Vec<String>,
    /// Accepted envelopes, raw JSON.
    envelopes: Vec<serde_json::Value>,
    requests: u64,
    always_hang: bool,
    /// Count only (benchmarks): no parsing beyond counting envelopes, nothing stored.
    count_only: bool,
    counted: usize,
    /// LogScale's HEC endpoint: `/api/v1/ingest/hec` with `Authorization: Bearer`.
    logscale: bool,
    /// Requests refused for a missing or wrong token.
    auth_failures: u64,
}

/// A running receiver. Dropping it stops accepting connections.
pub struct HecReceiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    _task: Task,
}

impl HecReceiver {
    /// Starts on 127.0.0.1 with an OS-chosen port; accepts `Splunk <token>`.
    pub async fn start(token: &str) -> HecReceiver {
        Self::start_on("127.0.0.1:0", token).await
    }

    /// A receiver for benchmarks: checks the token, counts newline-terminated envelopes,
    /// stores nothing, so its own cost stays small and flat.
    pub async fn start_counting(token: &str) -> HecReceiver {
        let receiver = Self::start_on("127.0.0.1:0", token).await;
        receiver.state.lock().unwrap().count_only = true;
        receiver
    }

    /// A CrowdStrike Falcon LogScale receiver (protocols.md §2): the HEC body at
    /// `/api/v1/ingest/hec` (and the `/services/collector` aliases) with
    /// `Authorization: Bearer <token>`.
    pub async fn start_logscale(token: &str) -> HecReceiver {
        let receiver = Self::start_on("127.0.0.1:0", token).await;
        receiver.state.lock().unwrap().logscale = true;
        receiver
    }

    /// The URL for a LogScale destination.
    pub fn logscale_url(&self) -> String {
        format!("http://{}/api/v1/ingest/hec", self.addr)
    }

    /// Starts on a given address (to come back on the same port after a restart).
    pub async fn start_on(addr: &str, token: &str) -> HecReceiver {
        let state = Arc::new(Mutex::new(State {
            token: token.to_string(),
            ..State::default()
        }));
        let (addr, _task) = serve(addr, state.clone(), handle).await;
        HecReceiver { addr, state, _task }
    }

    /// The URL to configure a destination with.
    pub fn url(&self) -> String {
        format!("http://{}/services/collector/event", self.addr)
    }

    pub fn push_fault(&self, fault: Fault) {
        self.state.lock().unwrap().faults.push_back(fault);
    }

    pub fn poison(&self, event_id: &str) {
        self.state
            .lock()
            .unwrap()
            .poison
            .insert(event_id.to_string());
    }

    /// Accept a poisoned event again (the SIEM was fixed).
    pub fn cure(&self, event_id: &str) {
        self.state.lock().unwrap().poison.remove(event_id);
    }

    pub fn set_token(&self, token: &str) {
        self.state.lock().unwrap().token = token.to_string();
    }

    /// Hang on every request until turned off.
    pub fn set_always_hang(&self, hang: bool) {
        self.state.lock().unwrap().always_hang = hang;
    }

    /// Accepted event ids in arrival order (duplicates included).
    pub fn accepted(&self) -> Vec<String> {
        self.state.lock().unwrap().accepted.clone()
    }

    pub fn accepted_count(&self) -> usize {
        let s = self.state.lock().unwrap();
        s.accepted.len() + s.counted
    }

    pub fn envelopes(&self) -> Vec<serde_json::Value> {
        self.state.lock().unwrap().envelopes.clone()
    }

    pub fn requests(&self) -> u64 {
        self.state.lock().unwrap().requests
    }

    /// Requests refused for a missing or wrong token (401/403).
    pub fn auth_failures(&self) -> u64 {
        self.state.lock().unwrap().auth_failures
    }

    /// Waits until at least `n` events were accepted, or `timeout`. True when reached.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.accepted_count() >= n).await
    }
}

/// A HEC answer: `{"text": text, "code": code}` (also used by [`crate::hec_ack`]).
pub(crate) fn reply(status: u16, code: u32, text: &str) -> Response<Full<Bytes>> {
    json(status, serde_json::json!({"text": text, "code": code}))
}

/// Plays a scripted fault before normal handling: `Some` is the whole answer, `None` goes
/// on (no fault, or a delay already served). `status_reply` shapes a `Fault::Status`
/// answer the way the receiver's protocol does. Shared with [`crate::sink`].
pub(crate) async fn play_fault(
    fault: Option<Fault>,
    status_reply: impl FnOnce(u16, u32) -> Response<Full<Bytes>>,
) -> Option<Reply> {
    match fault {
        Some(Fault::Hang) => std::future::pending().await,
        // An error from the service makes hyper drop the connection without answering.
        Some(Fault::Reset) => Some(Err(std::io::Error::other("scripted connection reset"))),
        Some(Fault::Slow(delay)) => {
            tokio::time::sleep(delay).await;
            None
        }
        Some(Fault::Status {
            status,
            code,
            retry_after,
        }) => Some(Ok(with_retry_after(
            status_reply(status, code),
            retry_after,
        ))),
        None => None,
    }
}

/// The request body, gunzipped when `Content-Encoding: gzip` (an error for bad gzip,
/// which Splunk answers 400 code 6). Shared with [`crate::hec_ack`].
pub(crate) fn plain_body(parts: &Parts, body: &[u8]) -> std::io::Result<Vec<u8>> {
    let gzip = parts
        .headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes() == b"gzip");
    if !gzip {
        return Ok(body.to_vec());
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body).read_to_end(&mut out)?;
    Ok(out)
}

async fn handle(state: Arc<Mutex<State>>, parts: Parts, body: Bytes) -> Reply {
    let (fault, hang_all) = {
        let mut s = state.lock().unwrap();
        s.requests += 1;
        (s.faults.pop_front(), s.always_hang)
    };
    if hang_all {
        std::future::pending::<()>().await;
    }
    let scripted = play_fault(fault, |status, code| reply(status, code, "scripted fault"));
    if let Some(answer) = scripted.await {
        return answer;
    }
    let (scheme, expected) = {
        let s = state.lock().unwrap();
        let scheme = if s.logscale { "Bearer " } else { "Splunk " };
        (scheme, format!("{scheme}{}", s.token))
    };
    let logscale = scheme == "Bearer ";
    let path = parts.uri.path();
    if path != "/services/collector/event"
        && path != "/services/collector"
        && !(logscale && path == "/api/v1/ingest/hec")
    {
        return Ok(reply(404, 404, "Not Found"));
    }
    let auth = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if auth != Some(expected.as_str()) {
        state.lock().unwrap().auth_failures += 1;
    }
    match auth {
        None => return Ok(reply(401, 2, "Token is required")),
        Some(auth) if !auth.starts_with(scheme) => {
            return Ok(reply(401, 3, "Invalid authorization"))
        }
        Some(auth) if auth != expected => return Ok(reply(403, 4, "Invalid token")),
        _ => {}
    }
    let Ok(body) = plain_body(&parts, &body) else {
        return Ok(reply(400, 6, "Invalid data format"));
    };
    if body.is_empty() {
        return Ok(reply(400, 5, "No data"));
    }
    if state.lock().unwrap().count_only {
        let n = body.iter().filter(|&&b| b == b'\n').count();
        state.lock().unwrap().counted += n;
        return Ok(reply(200, 0, "Success"));
    }
    let mut envelopes = Vec::new();
    for value in serde_json::Deserializer::from_slice(&body).into_iter::<serde_json::Value>() {
        match value {
            Ok(v) => envelopes.push(v),
            Err(_) => return Ok(reply(400, 6, "Invalid data format")),
        }
    }
    let mut s = state.lock().unwrap();
    for (i, envelope) in envelopes.iter().enumerate() {
        let Some(event) = envelope.get("event") else {
            return Ok(json(
                400,
                serde_json::json!({"text":"Event field is required","code":12,"invalid-event-number":i}),
            ));
        };
        let id = event
            .get("event_id")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        if s.poison.contains(id) {
            return Ok(json(
                400,
                serde_json::json!({"text":"Invalid data format","code":6,"invalid-event-number":i}),
            ));
        }
    }
    // Splunk indexes the whole request or (on a 400) none of it as far as we rely on.
    for envelope in envelopes {
        let id = envelope["event"]["event_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        s.accepted.push(id);
        s.envelopes.push(envelope);
    }
    Ok(reply(200, 0, "Success"))
}
