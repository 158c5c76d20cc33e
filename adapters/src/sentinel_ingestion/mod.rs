//! Microsoft Sentinel through the Logs Ingestion API (protocols.md §3.2, §7.4): the
//! replacement of the Data Collector API, which stopped working on 14 September 2026.
//!
//! Stages: [`token`] (Entra ID client-credentials token, cached), [`encoder`] (JSON arrays
//! of the PascalCase records of [`crate::sentinel::records`], with `TimeGenerated`, each
//! request ≤ 1,000,000 bytes compressed *and* uncompressed), this module (the POST to
//! `{url}/dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01`, gzip by
//! default), [`classify`] (answers).
//!
//! `send` adds the bearer token at send time, so a retried request always carries the
//! current token; a 401 from the DCR drops that token, fetches a new one and resends once.
//! A token failure is handed to `classify` as the token endpoint's own answer marked with
//! [`TOKEN_STEP_HEADER`], so it is classified as the token step, never as the DCR's. A DCR
//! 400 is followed by an empty array (see [`STREAM_CHECK_HEADER`]): refused too, the stream
//! is at fault (misconfigured, events stay queued); accepted, the records are (narrowed
//! down and dead-lettered by the engine).
//! [`check`] is `siem test`: token, empty array, test event.

pub mod check;
pub mod classify;
pub mod encoder;
#[cfg(test)]
mod tests;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, StatusCode, Uri};

use crate::adapter::{BoxFuture, EncodedBatch, SiemAdapter};
use crate::config::{
    Compression, ConfigError, Secret, SentinelApi, SentinelOptions, SiemConfig, SiemOptions,
    SiemType,
};
use crate::event::ScanEvent;
use crate::http_common::{classify_transport_error, post, secret_header};
use crate::outcome::Outcome;
use crate::request::{
    EncodedRequest, HttpRequest, HttpResponse, Payload, Response, TransportError,
};
use crate::transport::HttpTransport;

pub use self::classify::{classify_ingestion, classify_token_error};
pub use self::token::{default_token_url, Cloud, TokenError, TokenSource, SCOPE};

/// The service refuses calls over 1 MB, counted before and after decompression.
pub const MAX_REQUEST_BYTES: usize = 1_000_000;
/// The API version of the ingestion call.
pub const API_VERSION: &str = "2023-01-01";
/// Column names the Logs Ingestion API reserves (plus `TimeGenerated`, which is ours).
pub const RESERVED: [&str; 8] = [
    "TimeGenerated",
    "_ResourceId",
    "id",
    "_SubscriptionId",
    "TenantId",
    "Type",
    "UniqueId",
    "Title",
];
/// Logs Ingestion truncates field values beyond 64 KB (the Data Collector API: 32 KB).
pub const MAX_FIELD_BYTES: usize = 64 * 1024;
/// Marks a response that came from the token endpoint, not the DCR (never sent).
pub const TOKEN_STEP_HEADER: HeaderName = HeaderName::from_static("x-raxe-token-step");
/// Marks a DCR 400 with what an empty array got right after: `refused` (the stream itself
/// is wrong) or `unknown` (no clear answer). Absent: the empty array went through, so the
/// records were at fault. Never sent.
pub const STREAM_CHECK_HEADER: HeaderName = HeaderName::from_static("x-raxe-stream-check");

/// (option, value, allowed byte, what is allowed).
type FieldCheck<'a> = (&'static str, &'a str, fn(u8) -> bool, &'static str);

/// Checks the Logs Ingestion options (called by `SiemConfig::validate`).
pub fn validate_options(o: &SentinelOptions) -> Result<(), ConfigError> {
    let missing = |option| ConfigError::MissingOption {
        siem_type: SiemType::Sentinel,
        option,
    };
    use crate::config::invalid;
    let fields: [FieldCheck; 4] = [
        (
            "tenant_id",
            &o.tenant_id,
            |b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.',
            "letters, digits, '-' and '.' only (a GUID or a domain)",
        ),
        (
            "client_id",
            &o.client_id,
            |b| b.is_ascii_alphanumeric() || b == b'-',
            "letters, digits and '-' only (a GUID)",
        ),
        (
            "dcr_id",
            &o.dcr_id,
            |b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_',
            "letters, digits, '-' and '_' only (the DCR immutable id, dcr-<32 hex>)",
        ),
        (
            "stream",
            &o.stream,
            |b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_',
            "letters, digits, '-' and '_' only (e.g. Custom-RaxeEvents_CL)",
        ),
    ];
    for (option, value, ok, why) in fields {
        if value.trim().is_empty() {
            return Err(missing(option));
        }
        if !value.bytes().all(ok) {
            return Err(invalid(option, why));
        }
    }
    if let Some(url) = &o.token_url {
        token_uri(url).map_err(|why| invalid("token_url", &why))?;
    }
    Ok(())
}

fn token_uri(url: &str) -> Result<Uri, String> {
    let uri: Uri = url.trim().parse().map_err(|e| format!("not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("https" | "http") if uri.host().is_some_and(|h| !h.is_empty()) => Ok(uri),
        _ => Err("must be an https:// (or http://) URL with a host".into()),
    }
}

/// `{endpoint}/dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01`. An
/// endpoint that already names the stream path is used as given (query added if none).
pub fn ingestion_uri(endpoint: &str, dcr_id: &str, stream: &str) -> Result<Uri, String> {
    let base = endpoint.trim();
    let text = if base.contains("/dataCollectionRules/") {
        if base.contains('?') {
            base.to_string()
        } else {
            format!("{base}?api-version={API_VERSION}")
        }
    } else {
        let base = base
            .split('?')
            .next()
            .unwrap_or_default()
            .trim_end_matches('/');
        format!("{base}/dataCollectionRules/{dcr_id}/streams/{stream}?api-version={API_VERSION}")
    };
    text.parse().map_err(|e| format!("{e}"))
}

pub struct LogsIngestionAdapter {
    config: SiemConfig,
    uri: Uri,
    headers: HeaderMap,
    compress: bool,
    max_bytes: usize,
    token: TokenSource,
    transport: HttpTransport,
}

impl std::fmt::Debug for LogsIngestionAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogsIngestionAdapter")
            .field("config", &self.config)
            .field("uri", &self.uri)
            .field("compress", &self.compress)
            .finish_non_exhaustive()
    }
}

impl LogsIngestionAdapter {
    pub fn new(config: SiemConfig) -> Result<LogsIngestionAdapter, ConfigError> {
        config.validate()?;
        let o = match &config.extra {
            SiemOptions::Sentinel(o) if o.api == SentinelApi::LogsIngestion => o.clone(),
            _ => {
                return Err(ConfigError::InvalidOption {
                    option: "api",
                    reason: "the Logs Ingestion adapter needs a sentinel logs-ingestion config"
                        .into(),
                })
            }
        };
        let bad_url = |reason: String| ConfigError::InvalidUrl {
            url: crate::config::redact_url(&config.endpoint_url),
            reason,
        };
        let uri = ingestion_uri(&config.endpoint_url, &o.dcr_id, &o.stream).map_err(bad_url)?;
        let cloud = Cloud::of_host(uri.host().unwrap_or_default());
        let token_url = o
            .token_url
            .clone()
            .unwrap_or_else(|| default_token_url(&o.tenant_id, cloud));
        let token_uri = token_uri(&token_url).map_err(|reason| ConfigError::InvalidOption {
            option: "token_url",
            reason,
        })?;
        let transport =
            HttpTransport::new(&config.tls, Duration::from_secs(config.timeout_seconds))?;
        let token = TokenSource::new(
            token_uri,
            cloud.scope(),
            &o.client_id,
            &config.auth_token,
            transport.clone(),
        );
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(LogsIngestionAdapter {
            compress: o.compression.unwrap_or(Compression::Gzip) == Compression::Gzip,
            config,
            uri,
            headers,
            max_bytes: MAX_REQUEST_BYTES,
            token,
            transport,
        })
    }

    /// Lowers the request size limit (tests of splitting).
    pub fn with_max_request_bytes(mut self, max: usize) -> LogsIngestionAdapter {
        self.max_bytes = max;
        self
    }

    /// Fetches a fresh token now (`siem test`, step 1).
    pub async fn acquire_token(&self) -> Result<(), TokenError> {
        self.token.refresh().await
    }

    /// Posts an empty array (`siem test`, step 2): proves the endpoint, DCR, stream and
    /// role without writing a record.
    pub async fn post_empty(&self) -> Result<Response, TransportError> {
        let req = post(&self.uri, &self.headers, b"[]".to_vec(), self.compress);
        self.send_http(&req).await
    }

    /// A DCR 400 means bad records, or a stream that no longer fits anything we send (a
    /// renamed or redeclared stream): then every batch would be narrowed down and
    /// dead-lettered record by record. An empty array has no record to refuse, so its
    /// answer tells which (see [`STREAM_CHECK_HEADER`]).
    async fn check_stream(&self, mut resp: HttpResponse) -> HttpResponse {
        let verdict = match self.post_empty().await {
            Ok(Response::Http(probe)) if probe.status.is_success() => return resp,
            Ok(Response::Http(probe)) if is_dcr_400(&probe) => "refused",
            _ => "unknown",
        };
        resp.headers
            .insert(STREAM_CHECK_HEADER, HeaderValue::from_static(verdict));
        resp
    }

    async fn send_http(&self, req: &HttpRequest) -> Result<Response, TransportError> {
        let mut req = req.clone();
        let mut refreshed = false;
        loop {
            let token = match self.token.get().await {
                Ok(t) => t,
                Err(e) => return token_failure(e),
            };
            req.headers.insert(AUTHORIZATION, bearer(&token)?);
            let resp = self.transport.send(&req).await?;
            if resp.status == StatusCode::UNAUTHORIZED && !refreshed {
                // Expired or revoked early: one fresh token, one more try.
                tracing::info!("Logs Ingestion answered 401; refreshing the Entra ID token once");
                self.token.invalidate(&token).await;
                refreshed = true;
                continue;
            }
            return Ok(Response::Http(resp));
        }
    }
}

fn bearer(token: &Arc<Secret>) -> Result<HeaderValue, TransportError> {
    // Checked when the token was fetched; a failure here is a bug, not a secret to print.
    secret_header(&format!("Bearer {}", token.expose()))
        .map_err(|_| TransportError::Io("access token not usable as a header".into()))
}

/// A token failure as an answer `classify` can tell apart from the DCR's.
fn token_failure(err: TokenError) -> Result<Response, TransportError> {
    let (status, headers, body) = match err {
        TokenError::Transport(e) => {
            let m = |s: String| format!("Entra ID token endpoint: {s}");
            return Err(match e {
                TransportError::Connect(s) => TransportError::Connect(m(s)),
                TransportError::Tls(s) => TransportError::Tls(m(s)),
                TransportError::Io(s) => TransportError::Io(m(s)),
                t @ TransportError::Timeout(_) => t,
            });
        }
        TokenError::Refused(r) => (r.status, r.headers, r.body),
        TokenError::BadAnswer(why) => (StatusCode::OK, HeaderMap::new(), why.into()),
    };
    let mut headers = headers;
    headers.insert(TOKEN_STEP_HEADER, HeaderValue::from_static("1"));
    Ok(Response::Http(HttpResponse {
        status,
        headers,
        body,
    }))
}

fn is_dcr_400(resp: &HttpResponse) -> bool {
    resp.status == StatusCode::BAD_REQUEST && !resp.headers.contains_key(TOKEN_STEP_HEADER)
}

/// Classifies a DCR answer (a 400 with its stream check) or a marked token-endpoint answer.
pub fn classify_answer(resp: &HttpResponse) -> Outcome {
    if let Some(check) = resp.headers.get(STREAM_CHECK_HEADER) {
        let reason = crate::http_common::describe(resp);
        return if check == "refused" {
            Outcome::Misconfigured {
                reason: format!(
                    "{reason}; an empty array is refused too, so the stream itself does not fit: check --stream, --dcr-id and the stream's declaration in the DCR"
                ),
            }
        } else {
            Outcome::Retry {
                after: None,
                reason: format!(
                    "{reason}; could not tell whether the records or the stream are at fault (an empty array got no clear answer): retrying"
                ),
            }
        };
    }
    if !resp.headers.contains_key(TOKEN_STEP_HEADER) {
        return classify_ingestion(resp);
    }
    let err = if resp.status.is_success() {
        TokenError::BadAnswer(crate::http_common::snippet(&resp.body))
    } else {
        TokenError::Refused(resp.clone())
    };
    classify_token_error(&err)
}

impl SiemAdapter for LogsIngestionAdapter {
    fn config(&self) -> &SiemConfig {
        &self.config
    }

    fn transform_event(&self, event: &ScanEvent) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        crate::sentinel::records::write_record_as(
            event,
            "TimeGenerated",
            &RESERVED,
            MAX_FIELD_BYTES,
            &mut out,
        );
        out
    }

    fn encode(&self, batch: &[ScanEvent]) -> EncodedBatch {
        let items: Vec<Vec<u8>> = batch.iter().map(|e| self.transform_event(e)).collect();
        encoder::encode(&items, self.max_bytes, &|body| {
            post(&self.uri, &self.headers, body, self.compress)
        })
    }

    fn send<'a>(
        &'a self,
        request: &'a EncodedRequest,
    ) -> BoxFuture<'a, Result<Response, TransportError>> {
        Box::pin(async move {
            match &request.payload {
                Payload::Http(req) => {
                    let answer = self.send_http(req).await;
                    match answer {
                        Ok(Response::Http(resp)) if is_dcr_400(&resp) => {
                            Ok(Response::Http(self.check_stream(resp).await))
                        }
                        other => other,
                    }
                }
                Payload::Syslog(_) => Err(TransportError::Io(
                    "Logs Ingestion adapter cannot send a syslog payload".into(),
                )),
            }
        })
    }

    fn classify(
        &self,
        _request: &EncodedRequest,
        answer: &Result<Response, TransportError>,
    ) -> Outcome {
        match answer {
            Ok(Response::Http(resp)) => classify_answer(resp),
            Ok(Response::SyslogWritten) => Outcome::Misconfigured {
                reason: "Logs Ingestion adapter got a syslog answer".into(),
            },
            Err(e) => classify_transport_error(e),
        }
    }
}

/// Forms Azure answers 404 for: a DCR immutable id that is not `dcr-` and 32 hex digits, a
/// stream that is neither `Custom-…` nor `Microsoft-…`. `configure` refuses them; a file
/// that has them still loads (a destination that cannot deliver keeps its events queued
/// and says why, where one refused at load would not even take them).
pub fn check_azure_names(o: &SentinelOptions) -> Result<(), ConfigError> {
    use crate::config::invalid;
    let hex = o.dcr_id.strip_prefix("dcr-").unwrap_or_default();
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid(
            "dcr_id",
            "the DCR immutable id is dcr- and 32 hex digits (the DCR's JSON view, immutableId)",
        ));
    }
    if !(o.stream.starts_with("Custom-") || o.stream.starts_with("Microsoft-")) {
        return Err(invalid(
            "stream",
            "a DCR stream is Custom-<name> (a custom table) or Microsoft-<table>",
        ));
    }
    Ok(())
}
