//! Entra ID client-credentials tokens for the Logs Ingestion API (protocols.md §3.2).
//!
//! Promises: one token is shared by every request of the destination; it is fetched
//! through the destination's own [`HttpTransport`] (TLS verification as configured), kept
//! until shortly before it expires (5 min before, or half its lifetime when that is
//! shorter), and fetched by one caller at a time (callers wait on the lock instead of all
//! asking Entra ID at once). The client secret and the access token never appear in
//! `Debug` output, logs or errors: failures quote only the status and Entra ID's answer.

use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Uri};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::Secret;
use crate::request::{HttpResponse, TransportError};
use crate::transport::HttpTransport;

/// The Azure Monitor audience (public cloud); the double slash is what Microsoft's samples
/// send.
pub const SCOPE: &str = "https://monitor.azure.com//.default";

/// The Azure cloud an ingestion endpoint belongs to: its token audience and Entra ID host
/// differ (protocols.md §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    Public,
    /// US Government (`*.azure.us`).
    UsGov,
    /// Azure operated by 21Vianet (`*.azure.cn`).
    China,
}

impl Cloud {
    /// By the endpoint's host name.
    pub fn of_host(host: &str) -> Cloud {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if host.ends_with(".azure.us") {
            Cloud::UsGov
        } else if host.ends_with(".azure.cn") {
            Cloud::China
        } else {
            Cloud::Public
        }
    }

    pub fn scope(self) -> &'static str {
        match self {
            Cloud::Public => SCOPE,
            Cloud::UsGov => "https://monitor.azure.us//.default",
            Cloud::China => "https://monitor.azure.cn//.default",
        }
    }

    fn login_host(self) -> &'static str {
        match self {
            Cloud::Public => "login.microsoftonline.com",
            Cloud::UsGov => "login.microsoftonline.us",
            Cloud::China => "login.chinacloudapi.cn",
        }
    }
}

/// Refresh this long before expiry (Microsoft's guidance).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Longest lifetime believed from a token answer (Entra ID issues 1-24 h): a bigger
/// `expires_in` from a proxy or a mock would overflow the clock, or never refresh.
pub const MAX_TOKEN_LIFE: Duration = Duration::from_secs(24 * 3600);

/// The Entra ID v2 token endpoint of `tenant_id` in `cloud`.
pub fn default_token_url(tenant_id: &str, cloud: Cloud) -> String {
    format!(
        "https://{}/{tenant_id}/oauth2/v2.0/token",
        cloud.login_host()
    )
}

/// Why no token could be had.
#[derive(Debug, Clone)]
pub enum TokenError {
    /// The token endpoint did not answer (retry later).
    Transport(TransportError),
    /// The token endpoint answered with a non-2xx status (body quoted, never the secret).
    Refused(HttpResponse),
    /// A 2xx answer without a usable `access_token` (wrong `--token-url`?).
    BadAnswer(String),
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::Transport(e) => write!(f, "Entra ID token endpoint unreachable: {e}"),
            TokenError::Refused(r) => write!(
                f,
                "Entra ID token request refused: {}",
                crate::http_common::describe(r)
            ),
            TokenError::BadAnswer(why) => write!(f, "Entra ID token answer unusable: {why}"),
        }
    }
}

/// An access token and when to stop using it.
#[derive(Clone)]
struct Cached {
    token: Arc<Secret>,
    refresh_at: Instant,
}

/// Fetches and caches the destination's access token.
pub struct TokenSource {
    uri: Uri,
    /// The urlencoded form, secret included: only ever a request body.
    form: Secret,
    transport: HttpTransport,
    cached: Mutex<Option<Cached>>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// Tokens from `uri` for `scope` (see [`Cloud::scope`]).
    pub fn new(
        uri: Uri,
        scope: &str,
        client_id: &str,
        secret: &Secret,
        transport: HttpTransport,
    ) -> Self {
        let form = format!(
            "grant_type=client_credentials&client_id={}&client_secret={}&scope={}",
            form_encode(client_id),
            form_encode(secret.expose()),
            form_encode(scope)
        );
        TokenSource {
            uri,
            form: Secret::from(form),
            transport,
            cached: Mutex::new(None),
        }
    }

    /// The current token, fetching a new one when there is none or it is about to expire.
    pub async fn get(&self) -> Result<Arc<Secret>, TokenError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            if Instant::now() < c.refresh_at {
                return Ok(c.token.clone());
            }
        }
        let fresh = self.fetch().await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// Forgets `used` if it is still the cached token (a 401 said it is no good). A token
    /// another request already replaced is left alone, so one 401 burst costs one fetch.
    pub async fn invalidate(&self, used: &Arc<Secret>) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|c| Arc::ptr_eq(&c.token, used)) {
            *cached = None;
        }
    }

    /// Drops the cached token and fetches a new one (`siem test`).
    pub async fn refresh(&self) -> Result<(), TokenError> {
        let mut cached = self.cached.lock().await;
        *cached = Some(self.fetch().await?);
        Ok(())
    }

    async fn fetch(&self) -> Result<Cached, TokenError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let body = self.form.expose().as_bytes().to_vec();
        let req = crate::http_common::post(&self.uri, &headers, body, false);
        let started = Instant::now();
        let resp = self
            .transport
            .send(&req)
            .await
            .map_err(TokenError::Transport)?;
        if !resp.status.is_success() {
            return Err(TokenError::Refused(resp));
        }
        let answer: serde_json::Value = serde_json::from_slice(&resp.body)
            .map_err(|_| TokenError::BadAnswer("the body is not JSON".into()))?;
        let token = answer
            .get("access_token")
            .and_then(|v| v.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| TokenError::BadAnswer("no access_token in the answer".into()))?;
        // The token goes into a header: refuse one that could not (or could split it).
        if HeaderValue::from_str(token).is_err() {
            return Err(TokenError::BadAnswer(
                "access_token has characters not allowed in a header".into(),
            ));
        }
        // Entra ID sends a number; some proxies send it as a string.
        let expires_in = match answer.get("expires_in") {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        }
        .unwrap_or(3599);
        Ok(Cached {
            token: Arc::new(Secret::from(token.to_string())),
            refresh_at: started + refresh_after(Duration::from_secs(expires_in)),
        })
    }
}

/// How long a token with lifetime `life` (at most [`MAX_TOKEN_LIFE`]) is used: until
/// [`REFRESH_MARGIN`] before its end, but at least half its life (short-lived tokens would
/// otherwise never be reused).
pub fn refresh_after(life: Duration) -> Duration {
    let life = life.min(MAX_TOKEN_LIFE);
    life.saturating_sub(REFRESH_MARGIN).max(life / 2)
}

/// `application/x-www-form-urlencoded` value encoding (unreserved bytes kept).
pub fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
