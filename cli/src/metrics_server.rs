//! `raxe serve --metrics-addr`: Prometheus text at `/metrics`, and `/health`.
//!
//! `/health` answers 200 while the service runs and no destination needs attention, else
//! 503 with a JSON body naming the destinations that are degraded, refused their
//! credentials or are misconfigured (a disabled destination is the operator's choice, not
//! a fault), or saying that the queues are being reopened after a storage failure.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use raxe_engine::metrics::state_label;
use raxe_engine::DestinationState;
use serde_json::json;
use tokio::net::TcpListener;

use crate::control::{self, HostSlot};

/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 32;
/// How long a client may take to send a request's head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest life of one connection (keep-alive included).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);

/// The listening server; stops when dropped.
pub struct MetricsServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MetricsServer {
    pub async fn start(addr: SocketAddr, slot: HostSlot) -> Result<MetricsServer> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for metrics on {addr}"))?;
        let addr = listener.local_addr()?;
        let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        let task = tokio::spawn(async move {
            loop {
                // A scraper that holds connections open waits here, not in our file table.
                let Ok(permit) = connections.clone().acquire_owned().await else {
                    return;
                };
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors, say: do not spin on it.
                        tracing::warn!(error = %e, "metrics: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let slot = slot.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let service = service_fn(move |req| answer(req, slot.clone()));
                    let serving = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT)
                        .serve_connection(TokioIo::new(stream), service);
                    // Scrapes are quick: an idle keep-alive connection goes after a while.
                    let _ = tokio::time::timeout(CONNECTION_LIFETIME, serving).await;
                });
            }
        });
        Ok(MetricsServer { addr, task })
    }
}

async fn answer(
    req: Request<Incoming>,
    slot: HostSlot,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let host = control::current(&slot);
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => match host {
            Some(host) => {
                let stats = host.dispatcher.stats();
                let text = host.dispatcher.audit().metrics().render(&stats);
                reply(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    text,
                )
            }
            None => unavailable("the queues are being reopened after a storage failure"),
        },
        (&Method::GET, "/health") => match host {
            Some(host) => {
                let stats = host.dispatcher.stats();
                let failing: Vec<_> = stats
                    .destinations
                    .iter()
                    .filter(|d| {
                        // Retrying is delivering late, not failing: health does not flap
                        // with every 429; spent retries turn it degraded.
                        !(d.state.is_delivering() || d.state == DestinationState::Disabled)
                    })
                    .map(|d| {
                        json!({
                            "destination": d.id,
                            "state": state_label(&d.state),
                            "reason": reason(&d.state),
                        })
                    })
                    .collect();
                if failing.is_empty() {
                    let body = json!({"status": "ok", "destinations": stats.destinations.len()});
                    reply(StatusCode::OK, "application/json", body.to_string())
                } else {
                    let body = json!({"status": "unhealthy", "destinations": failing});
                    reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "application/json",
                        body.to_string(),
                    )
                }
            }
            None => unavailable("the queues are being reopened after a storage failure"),
        },
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /metrics or /health\n".into(),
        ),
    };
    Ok(response)
}

fn unavailable(reason: &str) -> Response<Full<Bytes>> {
    let body = json!({"status": "unhealthy", "reason": reason});
    reply(
        StatusCode::SERVICE_UNAVAILABLE,
        "application/json",
        body.to_string(),
    )
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

fn reason(state: &DestinationState) -> &str {
    match state {
        DestinationState::Degraded(why)
        | DestinationState::Retrying(why)
        | DestinationState::AuthFailed(why)
        | DestinationState::Misconfigured(why) => why,
        DestinationState::Ok | DestinationState::Disabled => "",
    }
}
