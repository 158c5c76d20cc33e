//! A local stand-in for the Entra ID v2 token endpoint (protocols.md §3.2):
//! `POST /{tenant}/oauth2/v2.0/token`, form-encoded client credentials.
//!
//! Checks `grant_type=client_credentials`, the client id and secret, and the scope
//! `https://monitor.azure.com//.default`, answering like Entra ID (`invalid_client` 401,
//! `invalid_scope` / `unsupported_grant_type` 400). Issues opaque tokens with a configurable
//! lifetime and remembers them, so the DCR receiver ([`crate::dcr`]) can tell valid,
//! expired and revoked tokens apart. Counts token requests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::request::Parts;
use http::Response;
use http_body_util::Full;

use crate::http_server::{json, serve, Reply, Task};

/// The scope a Logs Ingestion client must ask for.
pub const MONITOR_SCOPE: &str = "https://monitor.azure.com//.default";

#[derive(Debug)]
struct State {
    tenant: String,
    client_id: String,
    secret: String,
    lifetime: Duration,
    /// Issued tokens and when they expire.
    issued: HashMap<String, Instant>,
    requests: u64,
    refused: u64,
}

/// Issued-token registry shared with the DCR receiver.
#[derive(Debug, Clone)]
pub struct Tokens(Arc<Mutex<State>>);

impl Tokens {
    /// True when `token` was issued here, is not expired and was not revoked.
    pub fn is_valid(&self, token: &str) -> bool {
        let s = self.0.lock().unwrap();
        s.issued.get(token).is_some_and(|exp| Instant::now() < *exp)
    }
}

/// A running token endpoint. Dropping it stops accepting connections.
pub struct EntraReceiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    _task: Task,
}

impl EntraReceiver {
    /// Accepts `client_id` / `secret` for `tenant`; tokens live an hour.
    pub async fn start(tenant: &str, client_id: &str, secret: &str) -> EntraReceiver {
        let state = Arc::new(Mutex::new(State {
            tenant: tenant.into(),
            client_id: client_id.into(),
            secret: secret.into(),
            lifetime: Duration::from_secs(3599),
            issued: HashMap::new(),
            requests: 0,
            refused: 0,
        }));
        let (addr, _task) = serve("127.0.0.1:0", state.clone(), handle).await;
        EntraReceiver { addr, state, _task }
    }

    /// The token URL to configure (`--token-url`).
    pub fn token_url(&self) -> String {
        let tenant = self.state.lock().unwrap().tenant.clone();
        format!("http://{}/{tenant}/oauth2/v2.0/token", self.addr)
    }

    /// Lifetime (`expires_in`) of tokens issued from now on.
    pub fn set_lifetime(&self, lifetime: Duration) {
        self.state.lock().unwrap().lifetime = lifetime;
    }

    /// Invalidates every token issued so far (the next DCR call gets 401).
    pub fn revoke_all(&self) {
        self.state.lock().unwrap().issued.clear();
    }

    /// Token requests received (good and bad).
    pub fn requests(&self) -> u64 {
        self.state.lock().unwrap().requests
    }

    /// Token requests refused.
    pub fn refused(&self) -> u64 {
        self.state.lock().unwrap().refused
    }

    pub fn tokens(&self) -> Tokens {
        Tokens(self.state.clone())
    }
}

fn oauth_error(status: u16, error: &str, description: &str) -> Response<Full<Bytes>> {
    json(
        status,
        serde_json::json!({"error": error, "error_description": description}),
    )
}

/// Decodes `application/x-www-form-urlencoded` (`+` is a space; bad escapes kept as-is).
pub fn parse_form(body: &[u8]) -> HashMap<String, String> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz");
                    match u8::from_str_radix(hex, 16) {
                        Ok(v) => {
                            out.push(v);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

async fn handle(state: Arc<Mutex<State>>, parts: Parts, body: Bytes) -> Reply {
    let mut s = state.lock().unwrap();
    s.requests += 1;
    let path = format!("/{}/oauth2/v2.0/token", s.tenant);
    if parts.method != http::Method::POST || parts.uri.path() != path {
        s.refused += 1;
        return Ok(oauth_error(404, "not_found", "unknown tenant or path"));
    }
    let form_type = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !form_type.starts_with("application/x-www-form-urlencoded") {
        s.refused += 1;
        return Ok(oauth_error(
            400,
            "invalid_request",
            "AADSTS900144: form body required",
        ));
    }
    let form = parse_form(&body);
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    if get("grant_type") != "client_credentials" {
        s.refused += 1;
        return Ok(oauth_error(400, "unsupported_grant_type", "AADSTS70003"));
    }
    if get("client_id") != s.client_id || get("client_secret") != s.secret {
        s.refused += 1;
        return Ok(oauth_error(
            401,
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided.",
        ));
    }
    if get("scope") != MONITOR_SCOPE {
        s.refused += 1;
        return Ok(oauth_error(400, "invalid_scope", "AADSTS70011: bad scope"));
    }
    let token = format!("tok-{}-{}", s.requests, std::process::id());
    let lifetime = s.lifetime;
    // A lifetime past what the clock can hold (tests of absurd answers) never ends.
    let expires = Instant::now()
        .checked_add(lifetime)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(100 * 365 * 86_400));
    s.issued.insert(token.clone(), expires);
    Ok(json(
        200,
        serde_json::json!({
            "token_type": "Bearer",
            "expires_in": lifetime.as_secs(),
            "ext_expires_in": lifetime.as_secs(),
            "access_token": token,
        }),
    ))
}
