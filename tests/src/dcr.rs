//! A local stand-in for an Azure Monitor Logs Ingestion endpoint (DCE or DCR, protocols.md
//! §3.2): `POST /dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01`.
//!
//! Checks, in Azure's order: path and api-version (404), the bearer token against the
//! paired [`crate::entra::EntraReceiver`] (401), `Content-Type: application/json` and, when
//! required, `Content-Encoding: gzip` (400), the body ≤ the limit (1,000,000 bytes)
//! compressed *and* decompressed (413; decompression stops at the limit), then the shape:
//! a JSON array of objects, each with string `EventId` and `TimeGenerated` (400). Records
//! accepted event ids and the largest bodies seen. Scripted faults (401 once, 403, 429 with
//! `Retry-After`, 413, 5xx) are consumed one per request before normal handling.

use std::collections::VecDeque;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::Response;
use http_body_util::Full;

use crate::entra::{EntraReceiver, Tokens};
use crate::http_server::{json, serve, wait_until, with_retry_after, Reply, Task};

/// The service limit per call.
pub const LIMIT: usize = 1_000_000;

/// One scripted answer.
#[derive(Debug, Clone, Copy)]
pub struct DcrFault {
    pub status: u16,
    pub retry_after: Option<u64>,
}

impl DcrFault {
    pub fn status(status: u16) -> DcrFault {
        DcrFault {
            status,
            retry_after: None,
        }
    }
}

#[derive(Debug)]
struct State {
    dcr: String,
    stream: String,
    tokens: Tokens,
    require_gzip: bool,
    /// The stream declaration no longer fits anything we send (changed by an admin).
    refuse_all: bool,
    limit: usize,
    faults: VecDeque<DcrFault>,
    accepted: Vec<String>,
    records: Vec<serde_json::Value>,
    requests: u64,
    empty_posts: u64,
    auth_failures: u64,
    too_large: u64,
    bad_requests: Vec<String>,
    max_compressed: usize,
    max_uncompressed: usize,
}

/// A running receiver. Dropping it stops accepting connections.
pub struct DcrReceiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    _task: Task,
}

impl DcrReceiver {
    /// Accepts `dcr` / `stream` with tokens issued by `entra`; gzip required.
    pub async fn start(entra: &EntraReceiver, dcr: &str, stream: &str) -> DcrReceiver {
        let state = Arc::new(Mutex::new(State {
            dcr: dcr.into(),
            stream: stream.into(),
            tokens: entra.tokens(),
            require_gzip: true,
            refuse_all: false,
            limit: LIMIT,
            faults: VecDeque::new(),
            accepted: Vec::new(),
            records: Vec::new(),
            requests: 0,
            empty_posts: 0,
            auth_failures: 0,
            too_large: 0,
            bad_requests: Vec::new(),
            max_compressed: 0,
            max_uncompressed: 0,
        }));
        let (addr, _task) = serve("127.0.0.1:0", state.clone(), handle).await;
        DcrReceiver { addr, state, _task }
    }

    /// The endpoint URL to configure (`--url`; the adapter adds the DCR path).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn push_fault(&self, fault: DcrFault) {
        self.state.lock().unwrap().faults.push_back(fault);
    }

    /// Answers 413 above `limit` bytes (default 1,000,000).
    pub fn set_limit(&self, limit: usize) {
        self.state.lock().unwrap().limit = limit;
    }

    /// Answers every request after the token check with 400 `InvalidStream`, an empty
    /// array too (a stream renamed or redeclared under the sender).
    pub fn set_refuse_all(&self, on: bool) {
        self.state.lock().unwrap().refuse_all = on;
    }

    pub fn set_require_gzip(&self, on: bool) {
        self.state.lock().unwrap().require_gzip = on;
    }

    /// Accepted event ids in arrival order (duplicates included).
    pub fn accepted(&self) -> Vec<String> {
        self.state.lock().unwrap().accepted.clone()
    }

    pub fn accepted_count(&self) -> usize {
        self.state.lock().unwrap().accepted.len()
    }

    /// Accepted records, as sent.
    pub fn records(&self) -> Vec<serde_json::Value> {
        self.state.lock().unwrap().records.clone()
    }

    pub fn requests(&self) -> u64 {
        self.state.lock().unwrap().requests
    }

    /// Accepted posts of `[]` (`siem test`).
    pub fn empty_posts(&self) -> u64 {
        self.state.lock().unwrap().empty_posts
    }

    /// Requests refused for a missing, unknown or expired token (faults excluded).
    pub fn auth_failures(&self) -> u64 {
        self.state.lock().unwrap().auth_failures
    }

    /// Requests answered 413 because of their size (faults excluded).
    pub fn too_large(&self) -> u64 {
        self.state.lock().unwrap().too_large
    }

    /// Reasons of 400 answers.
    pub fn bad_requests(&self) -> Vec<String> {
        self.state.lock().unwrap().bad_requests.clone()
    }

    /// Largest accepted body (as sent, decompressed).
    pub fn max_sizes(&self) -> (usize, usize) {
        let s = self.state.lock().unwrap();
        (s.max_compressed, s.max_uncompressed)
    }

    /// Waits until at least `n` events were accepted, or `timeout`. True when reached.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.accepted_count() >= n).await
    }
}

fn azure_error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    json(
        status,
        serde_json::json!({"error": {"code": code, "message": message}}),
    )
}

async fn handle(state: Arc<Mutex<State>>, parts: Parts, body: Bytes) -> Reply {
    let mut s = state.lock().unwrap();
    s.requests += 1;
    if let Some(f) = s.faults.pop_front() {
        let scripted = azure_error(f.status, "Scripted", "scripted fault");
        return Ok(with_retry_after(scripted, f.retry_after));
    }
    let path = format!("/dataCollectionRules/{}/streams/{}", s.dcr, s.stream);
    if parts.method != http::Method::POST
        || parts.uri.path() != path
        || parts.uri.query() != Some("api-version=2023-01-01")
    {
        return Ok(azure_error(
            404,
            "NotFound",
            "unknown DCR, stream or api-version",
        ));
    }
    let bearer = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !bearer.is_some_and(|t| s.tokens.is_valid(t)) {
        s.auth_failures += 1;
        return Ok(azure_error(
            401,
            "InvalidToken",
            "token missing, unknown or expired",
        ));
    }
    if s.refuse_all {
        s.bad_requests.push("stream refuses all".into());
        return Ok(azure_error(
            400,
            "InvalidStream",
            "the stream declaration does not match",
        ));
    }
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    if header("content-type") != "application/json" {
        s.bad_requests.push("content-type".into());
        return Ok(azure_error(
            400,
            "UnsupportedContentType",
            "need application/json",
        ));
    }
    let gzip = header("content-encoding") == "gzip";
    if s.require_gzip && !gzip {
        s.bad_requests.push("not gzip".into());
        return Ok(azure_error(400, "InvalidContentEncoding", "gzip expected"));
    }
    let limit = s.limit;
    if body.len() > limit {
        s.too_large += 1;
        return Ok(azure_error(
            413,
            "ContentLengthLimitExceeded",
            "over 1 MB compressed",
        ));
    }
    let plain = if gzip {
        let mut out = Vec::new();
        let read = flate2::read::GzDecoder::new(&body[..])
            .take(limit as u64 + 1)
            .read_to_end(&mut out);
        if read.is_err() {
            s.bad_requests.push("bad gzip".into());
            return Ok(azure_error(400, "InvalidContentEncoding", "bad gzip"));
        }
        out
    } else {
        body.to_vec()
    };
    if plain.len() > limit {
        s.too_large += 1;
        return Ok(azure_error(
            413,
            "ContentLengthLimitExceeded",
            "over 1 MB uncompressed",
        ));
    }
    let Ok(serde_json::Value::Array(rows)) = serde_json::from_slice::<serde_json::Value>(&plain)
    else {
        s.bad_requests.push("not a JSON array".into());
        return Ok(azure_error(
            400,
            "InvalidPayload",
            "body must be a JSON array",
        ));
    };
    let mut ids = Vec::with_capacity(rows.len());
    for row in &rows {
        let id = row.get("EventId").and_then(|v| v.as_str());
        let time = row.get("TimeGenerated").and_then(|v| v.as_str());
        match (row.is_object(), id, time) {
            (true, Some(id), Some(_)) => ids.push(id.to_string()),
            _ => {
                s.bad_requests.push("record shape".into());
                return Ok(azure_error(
                    400,
                    "InvalidPayload",
                    "records need EventId and TimeGenerated",
                ));
            }
        }
    }
    if rows.is_empty() {
        s.empty_posts += 1;
    }
    s.max_compressed = s.max_compressed.max(body.len());
    s.max_uncompressed = s.max_uncompressed.max(plain.len());
    s.accepted.extend(ids);
    s.records.extend(rows);
    Ok(Response::builder()
        .status(204)
        .body(Full::new(Bytes::new()))
        .unwrap())
}
