//! HTTP receivers for the destinations that are not HEC-shaped, recording every event id
//! they accept and misbehaving on request (the same [`Fault`]s as the HEC receiver):
//!
//! - Microsoft Sentinel Data Collector API (protocols.md §3.1): `POST /api/logs`, checks
//!   `Content-Type`, `Log-Type`, `x-ms-date` and recomputes the SharedKey HMAC over the body
//!   length in bytes like Azure ([`crate::azure_sig`]); a wrong signature gets 403
//!   `InvalidAuthorization`. The body must be a JSON array of records with `EventId`.
//!   Poison ids get 400 `InvalidDataFormat` (the whole post is refused, as Azure does).
//! - CEF over HTTP (protocols.md §7.7): `Authorization: Bearer <token>`, one CEF line per
//!   event; the event id is read from `cs4=` (cs4Label=EventId). Lines without it are
//!   recorded as an empty id. Poison ids get 400.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::Response;
use http_body_util::Full;

use crate::azure_sig;
use crate::hec::play_fault;
pub use crate::hec::Fault;
use crate::http_server::{json, json_text, serve, wait_until, Reply, Task};

#[derive(Debug, Clone)]
enum Kind {
    Sentinel { workspace_id: String, key: Vec<u8> },
    CefHttp { token: String },
}

#[derive(Debug)]
struct State {
    kind: Kind,
    faults: VecDeque<Fault>,
    poison: HashSet<String>,
    accepted: Vec<String>,
    requests: u64,
    auth_failures: u64,
}

/// A running receiver. Dropping it stops accepting connections.
pub struct HttpSink {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    _task: Task,
}

impl HttpSink {
    /// A Sentinel Data Collector receiver for `workspace_id`, verifying signatures made
    /// with the base64 shared key `key_b64`.
    pub async fn start_sentinel(workspace_id: &str, key_b64: &str) -> HttpSink {
        let key = azure_sig::b64_decode(key_b64).expect("base64 shared key");
        Self::start(Kind::Sentinel {
            workspace_id: workspace_id.to_string(),
            key,
        })
        .await
    }

    /// A CEF-over-HTTP receiver accepting `Authorization: Bearer <token>`.
    pub async fn start_cef(token: &str) -> HttpSink {
        Self::start(Kind::CefHttp {
            token: token.to_string(),
        })
        .await
    }

    async fn start(kind: Kind) -> HttpSink {
        let state = Arc::new(Mutex::new(State {
            kind,
            faults: VecDeque::new(),
            poison: HashSet::new(),
            accepted: Vec::new(),
            requests: 0,
            auth_failures: 0,
        }));
        let (addr, _task) = serve("127.0.0.1:0", state.clone(), handle).await;
        HttpSink { addr, state, _task }
    }

    /// The URL to configure the destination with.
    pub fn url(&self) -> String {
        match self.state.lock().unwrap().kind {
            Kind::Sentinel { .. } => format!("http://{}/api/logs", self.addr),
            Kind::CefHttp { .. } => format!("http://{}/cef", self.addr),
        }
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

    /// Rotates the credential the receiver accepts: the bearer token (CEF) or the base64
    /// shared key (Sentinel).
    pub fn set_token(&self, token: &str) {
        let mut s = self.state.lock().unwrap();
        match &mut s.kind {
            Kind::Sentinel { key, .. } => *key = azure_sig::b64_decode(token).expect("base64"),
            Kind::CefHttp { token: t } => *t = token.to_string(),
        }
    }

    /// Accepted event ids in arrival order (duplicates included).
    pub fn accepted(&self) -> Vec<String> {
        self.state.lock().unwrap().accepted.clone()
    }

    pub fn accepted_count(&self) -> usize {
        self.state.lock().unwrap().accepted.len()
    }

    pub fn requests(&self) -> u64 {
        self.state.lock().unwrap().requests
    }

    /// Requests refused for a wrong credential or signature.
    pub fn auth_failures(&self) -> u64 {
        self.state.lock().unwrap().auth_failures
    }

    /// Waits until at least `n` events were accepted, or `timeout`. True when reached.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.accepted_count() >= n).await
    }
}

fn azure_error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    json(
        status,
        serde_json::json!({"Error": code, "Message": message}),
    )
}

async fn handle(state: Arc<Mutex<State>>, parts: Parts, body: Bytes) -> Reply {
    let (fault, kind) = {
        let mut s = state.lock().unwrap();
        s.requests += 1;
        (s.faults.pop_front(), s.kind.clone())
    };
    // The HEC code of a `Fault::Status` has no meaning here.
    let scripted = play_fault(fault, |status, _| {
        json_text(status, "{\"Error\":\"ScriptedFault\"}")
    });
    if let Some(answer) = scripted.await {
        return answer;
    }
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let ids: Vec<String> = match kind {
        Kind::Sentinel { workspace_id, key } => {
            if parts.method != http::Method::POST || parts.uri.path() != "/api/logs" {
                return Ok(azure_error(404, "NotFound", "wrong path"));
            }
            if parts.uri.query() != Some("api-version=2016-04-01") {
                return Ok(azure_error(400, "InvalidApiVersion", "api-version"));
            }
            if header("content-type").as_deref() != Some("application/json") {
                return Ok(azure_error(400, "UnsupportedContentType", "content type"));
            }
            match header("log-type") {
                Some(t)
                    if !t.is_empty()
                        && t.len() <= 100
                        && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {}
                _ => return Ok(azure_error(400, "InvalidLogType", "Log-Type")),
            }
            let Some(date) = header("x-ms-date") else {
                return Ok(azure_error(
                    403,
                    "InvalidAuthorization",
                    "x-ms-date missing",
                ));
            };
            let expected =
                azure_sig::expected_authorization(&workspace_id, &key, body.len(), &date);
            if header("authorization").as_deref() != Some(expected.as_str()) {
                state.lock().unwrap().auth_failures += 1;
                return Ok(azure_error(
                    403,
                    "InvalidAuthorization",
                    "An invalid scheme was specified in the Authorization header",
                ));
            }
            let Ok(serde_json::Value::Array(records)) =
                serde_json::from_slice::<serde_json::Value>(&body)
            else {
                return Ok(azure_error(400, "InvalidDataFormat", "not a JSON array"));
            };
            let mut ids = Vec::with_capacity(records.len());
            for record in &records {
                if ["TimeGenerated", "tenant", "RawData"]
                    .iter()
                    .any(|k| record.get(k).is_some())
                {
                    return Ok(azure_error(400, "InvalidDataFormat", "reserved field"));
                }
                ids.push(
                    record
                        .get("EventId")
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_string(),
                );
            }
            if ids.is_empty() {
                return Ok(azure_error(400, "InvalidDataFormat", "empty array"));
            }
            let s = state.lock().unwrap();
            if ids.iter().any(|id| s.poison.contains(id)) {
                return Ok(azure_error(400, "InvalidDataFormat", "poison record"));
            }
            ids
        }
        Kind::CefHttp { token } => {
            if parts.method != http::Method::POST || parts.uri.path() != "/cef" {
                return Ok(json_text(404, "{}"));
            }
            if header("authorization").as_deref() != Some(format!("Bearer {token}").as_str()) {
                state.lock().unwrap().auth_failures += 1;
                return Ok(json_text(401, "{\"error\":\"unauthorized\"}"));
            }
            let Ok(body) = std::str::from_utf8(&body) else {
                return Ok(json_text(400, "{\"error\":\"not UTF-8\"}"));
            };
            let mut ids = Vec::new();
            for line in body.lines().filter(|l| !l.trim().is_empty()) {
                if !line.starts_with("CEF:0|") {
                    return Ok(json_text(400, "{\"error\":\"not a CEF line\"}"));
                }
                ids.push(cef_event_id(line).unwrap_or_default());
            }
            if ids.is_empty() {
                return Ok(json_text(400, "{\"error\":\"empty\"}"));
            }
            let s = state.lock().unwrap();
            if ids.iter().any(|id| s.poison.contains(id)) {
                return Ok(json_text(400, "{\"error\":\"poison event\"}"));
            }
            ids
        }
    };
    state.lock().unwrap().accepted.extend(ids);
    Ok(json_text(200, "{}"))
}

/// The value of the `cs4` extension (our EventId) in a CEF line, if present.
pub fn cef_event_id(line: &str) -> Option<String> {
    // Extension keys follow a space (or the last header `|`); values end at the next
    // unescaped ` key=`. Event ids have no spaces, so the first space ends the value.
    let ext = line.splitn(8, '|').nth(7)?;
    let start = if let Some(rest) = ext.strip_prefix("cs4=") {
        rest
    } else {
        &ext[ext.find(" cs4=")? + 5..]
    };
    let end = start.find(' ').unwrap_or(start.len());
    Some(start[..end].replace("\\=", "=").replace("\\\\", "\\"))
}

#[cfg(test)]
mod tests {
    use super::cef_event_id;

    #[test]
    fn cef_ids() {
        let line = "CEF:0|RAXE|ThreatDetection|0.1.0|pi-001|PI|7|rt=1 cs4=h-17 cs4Label=EventId";
        assert_eq!(cef_event_id(line).as_deref(), Some("h-17"));
        let line = "CEF:0|RAXE|T|0.1.0|pi-001|PI|7|cs4=h-1";
        assert_eq!(cef_event_id(line).as_deref(), Some("h-1"));
        assert_eq!(cef_event_id("CEF:0|a|b|c|d|e|7|rt=1"), None);
    }
}
