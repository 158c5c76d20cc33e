//! What every HTTP test receiver shares, so each receiver file keeps only its protocol: the
//! hyper HTTP/1.1 accept loop on a local port, the task guard that stops a receiver when it
//! is dropped (the syslog receivers use it too), JSON reply builders and the polling wait
//! behind every `wait_for`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A handler's answer. An `Err` makes hyper drop the connection without answering, which
/// is how a scripted connection reset is played.
pub(crate) type Reply = Result<Response<Full<Bytes>>, std::io::Error>;

/// A receiver's background task, aborted on drop: dropping a receiver stops it accepting
/// connections (connections already open keep their own tasks).
pub(crate) struct Task(JoinHandle<()>);

impl Task {
    pub(crate) fn spawn(future: impl Future<Output = ()> + Send + 'static) -> Task {
        Task(tokio::spawn(future))
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves HTTP/1.1 (keep-alive) on `addr` until the returned task is dropped. Every
/// request's body is read in full first (a body cut short reads as empty), then
/// `handle(state, parts, body)` answers it.
pub(crate) async fn serve<S, F, Fut>(addr: &str, state: Arc<S>, handle: F) -> (SocketAddr, Task)
where
    S: Send + Sync + 'static,
    F: Fn(Arc<S>, Parts, Bytes) -> Fut + Copy + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    let listener = TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("bind test receiver on {addr}: {e}"));
    let local = listener.local_addr().expect("local addr");
    let task = Task::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let state = state.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        handle(state, parts, body).await
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (local, task)
}

/// `status` with `body`, already JSON text, as `application/json`.
pub(crate) fn json_text(status: u16, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// `status` with a JSON `body`.
pub(crate) fn json(status: u16, body: serde_json::Value) -> Response<Full<Bytes>> {
    json_text(status, &body.to_string())
}

/// Adds `Retry-After: secs` when a scripted fault asks for it.
pub(crate) fn with_retry_after(
    mut resp: Response<Full<Bytes>>,
    secs: Option<u64>,
) -> Response<Full<Bytes>> {
    if let Some(secs) = secs {
        resp.headers_mut()
            .insert("retry-after", secs.to_string().parse().unwrap());
    }
    resp
}

/// Polls `reached` every 10 ms until it holds or `timeout` has passed (checking once more
/// at the end); true when it held.
pub(crate) async fn wait_until(timeout: Duration, mut reached: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if reached() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
