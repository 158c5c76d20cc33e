//! `raxe serve --metrics-addr`: Prometheus text at `/metrics`, and `/health`.
//!
//! `/health` answers 200 while the service runs and no destination needs attention, else
//! 503 with a JSON body naming the destinations that are degraded, refused their
//! credentials or are misconfigured (a disabled destination is the operator's choice, not
//! a fault), or saying that the queues are being reopened after a storage failure.

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use raxe_engine::metrics::state_label;
use raxe_engine::DestinationState;
use serde_json::json;
use tokio::net::TcpListener;

use crate::control::{self, HostSlot};

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
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let slot = slot.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(req, slot.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
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
        (&Method::GET, "/metrics") => match host {
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
                        !matches!(d.state, DestinationState::Ok | DestinationState::Disabled)
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
        | DestinationState::AuthFailed(why)
        | DestinationState::Misconfigured(why) => why,
        DestinationState::Ok | DestinationState::Disabled => "",
    }
}
