//! HTTP(S) transport: hyper 1 (`hyper_util` legacy client) over a hyper-rustls connector.
//!
//! * `https://` and `http://` URIs are both accepted; TLS settings come from
//!   [`super::tls::client_config`].
//! * Connections are pooled and reused (HTTP/1.1 keep-alive). [`HttpTransport`] is cheap to
//!   clone; clones share the pool.
//! * `timeout` bounds the whole exchange: connect, TLS handshake, sending the request, and
//!   reading the response head and body.
//! * The response body is kept up to [`MAX_RESPONSE_BODY`] bytes. Beyond that, up to
//!   [`MAX_DRAIN`] more bytes are read and discarded (still within the deadline) so the
//!   connection can go back to the pool; past that, or if the deadline passes while
//!   draining, the connection is closed instead and the kept prefix is returned. Memory use
//!   is bounded by the cap whatever the server sends.
//! * A body that fails *before* the kept prefix is complete (reset, truncated chunk) is an
//!   error ([`TransportError::Io`], retryable): the answer cannot be classified. A failure
//!   while draining the discarded part is ignored.
//! * Errors never contain header values (tokens) nor the request body.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderValue, CONTENT_LENGTH, TRANSFER_ENCODING};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;

use super::tls::{client_config, error_chain, find_io_error, find_rustls_error};
use super::{TlsOptions, TransportSetupError};
use crate::request::{HttpRequest, HttpResponse, TransportError};

/// Bytes of response body kept in [`HttpResponse::body`].
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;
/// Bytes of response body read and discarded past [`MAX_RESPONSE_BODY`] to keep the
/// connection reusable; past this the connection is dropped instead.
pub const MAX_DRAIN: usize = 1024 * 1024;

/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// An HTTP/1.1 client with a keep-alive pool. Clones share the pool.
#[derive(Clone)]
pub struct HttpTransport {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTransport")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HttpTransport {
    /// Builds the client. Fails only on unusable TLS settings (unreadable CA file, ...).
    /// Does not need a running tokio runtime.
    pub fn new(tls: &TlsOptions, timeout: Duration) -> Result<HttpTransport, TransportSetupError> {
        if timeout.is_zero() {
            return Err(TransportSetupError::InvalidTarget(
                "HTTP timeout must be greater than zero".into(),
            ));
        }
        let tls_config = client_config(tls)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls_config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
        Ok(HttpTransport { client, timeout })
    }

    /// The deadline applied to each request.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends one request and returns the answer (any status: classifying it is the
    /// adapter's job). `Content-Length` is set from `req.body`.
    pub async fn send(&self, req: &HttpRequest) -> Result<HttpResponse, TransportError> {
        let deadline = Instant::now() + self.timeout;

        let mut request = http::Request::new(Full::new(req.body.clone()));
        *request.method_mut() = req.method.clone();
        *request.uri_mut() = req.uri.clone();
        *request.headers_mut() = req.headers.clone();
        request.headers_mut().remove(TRANSFER_ENCODING);
        request
            .headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(req.body.len()));

        let response = tokio::time::timeout_at(deadline, self.client.request(request))
            .await
            .map_err(|_| TransportError::Timeout(self.timeout))?
            .map_err(map_client_error)?;

        let (parts, mut body) = response.into_parts();
        let mut kept = BytesMut::new();
        let mut complete = false;

        // Phase 1: the kept prefix. Errors here are errors; so is the deadline.
        while kept.len() < MAX_RESPONSE_BODY {
            let frame = tokio::time::timeout_at(deadline, body.frame())
                .await
                .map_err(|_| TransportError::Timeout(self.timeout))?;
            match frame {
                None => {
                    complete = true;
                    break;
                }
                Some(Err(e)) => return Err(map_body_error(&e)),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        let room = MAX_RESPONSE_BODY - kept.len();
                        kept.extend_from_slice(&data[..data.len().min(room)]);
                    }
                }
            }
        }

        // Phase 2: best-effort drain of the rest so the connection can be reused.
        if !complete {
            let mut drained = 0usize;
            while drained <= MAX_DRAIN {
                match tokio::time::timeout_at(deadline, body.frame()).await {
                    Ok(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data() {
                            drained += data.len();
                        }
                    }
                    // End of body, a body error, or the deadline: stop; dropping `body`
                    // closes the connection if it is not finished.
                    _ => break,
                }
            }
        }

        Ok(HttpResponse {
            status: parts.status,
            headers: parts.headers,
            body: kept.freeze(),
        })
    }
}

fn map_client_error(err: hyper_util::client::legacy::Error) -> TransportError {
    if let Some(tls) = find_rustls_error(&err) {
        return TransportError::Tls(tls.to_string());
    }
    let chain = error_chain(&err);
    if err.is_connect() || is_refused(&err) {
        TransportError::Connect(chain)
    } else {
        TransportError::Io(chain)
    }
}

fn is_refused(err: &(dyn std::error::Error + 'static)) -> bool {
    find_io_error(err).is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
}

fn map_body_error(err: &hyper::Error) -> TransportError {
    if let Some(tls) = find_rustls_error(err) {
        return TransportError::Tls(tls.to_string());
    }
    TransportError::Io(format!("reading response body: {}", error_chain(err)))
}
