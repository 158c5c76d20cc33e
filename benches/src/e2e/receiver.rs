//! Lean counting receivers on 127.0.0.1: Splunk HEC and Sentinel Data Collector over hyper,
//! CEF over TCP syslog (octet counting). They read the real bytes `raxe serve` sends
//! (gunzip when asked), find each event's sequence number in its id and record, per event,
//! the latency from its spool file's arrival. Nothing else is parsed or stored, so their own
//! cost stays small; `limits::receiver_ceiling` measures it.

use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

/// The id prefix every generated event carries: `ev-<seq>`.
pub use raxe_benches::scan_event::ID_PREFIX;
pub const HEC_TOKEN: &str = "12345678-1234-1234-1234-1234567890AB";
pub const WORKSPACE: &str = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
pub const SHARED_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// Per-event receipt bookkeeping for events `0..n`, shared by receivers and the feeder.
pub struct Tally {
    base: Instant,
    per_file: usize,
    /// Arrival of each spool file, ns since `base` (set by the feeder before the rename).
    arrivals: Vec<AtomicU64>,
    /// First-receipt latency per event in µs, +1 so 0 means "not yet".
    latency_us: Vec<AtomicU32>,
    distinct: AtomicUsize,
    received: AtomicUsize,
    /// ns since `base` of the first receipt since the last `arm` (0 = none yet).
    first_ns: AtomicU64,
    /// Answer 503 instead of accepting (the SIEM is down).
    refuse: AtomicBool,
    pub requests: AtomicU64,
}

impl Tally {
    pub fn new(n: usize, per_file: usize) -> Arc<Tally> {
        let files = n.div_ceil(per_file.max(1)).max(1);
        Arc::new(Tally {
            base: Instant::now(),
            per_file: per_file.max(1),
            arrivals: (0..files).map(|_| AtomicU64::new(0)).collect(),
            latency_us: (0..n).map(|_| AtomicU32::new(0)).collect(),
            distinct: AtomicUsize::new(0),
            received: AtomicUsize::new(0),
            first_ns: AtomicU64::new(0),
            refuse: AtomicBool::new(false),
            requests: AtomicU64::new(0),
        })
    }

    pub fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    pub fn set_arrival(&self, file: usize) {
        if let Some(a) = self.arrivals.get(file) {
            a.store(self.now_ns(), Ordering::Release);
        }
    }

    pub fn set_refuse(&self, refuse: bool) {
        self.refuse.store(refuse, Ordering::SeqCst);
    }

    fn refusing(&self) -> bool {
        self.refuse.load(Ordering::Relaxed)
    }

    /// Forget the first-receipt time, so the next receipt is timed (after a restart).
    pub fn arm(&self) {
        self.first_ns.store(0, Ordering::SeqCst);
    }

    /// When the first event since the last `arm` arrived.
    pub fn first_receipt(&self) -> Option<Instant> {
        match self.first_ns.load(Ordering::SeqCst) {
            0 => None,
            ns => Some(self.base + std::time::Duration::from_nanos(ns)),
        }
    }

    fn record(&self, seq: u64) {
        self.received.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ns().max(1);
        let _ = self
            .first_ns
            .compare_exchange(0, now, Ordering::SeqCst, Ordering::Relaxed);
        let Some(slot) = self.latency_us.get(seq as usize) else {
            return; // not one of ours: counted as received, never as distinct
        };
        let arrival = self.arrivals[seq as usize / self.per_file].load(Ordering::Acquire);
        let us = (now.saturating_sub(arrival) / 1000).min(u32::MAX as u64 - 1) as u32 + 1;
        if slot
            .compare_exchange(0, us, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.distinct.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn distinct(&self) -> usize {
        self.distinct.load(Ordering::Relaxed)
    }

    pub fn received(&self) -> usize {
        self.received.load(Ordering::Relaxed)
    }

    /// (p50, p99) first-receipt latency in seconds over the events seen so far.
    pub fn latency_p50_p99(&self) -> (f64, f64) {
        let mut v: Vec<u32> = self
            .latency_us
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .filter(|&u| u > 0)
            .collect();
        if v.is_empty() {
            return (f64::NAN, f64::NAN);
        }
        v.sort_unstable();
        let at = |q: f64| (v[((v.len() - 1) as f64 * q).round() as usize] - 1) as f64 / 1e6;
        (at(0.50), at(0.99))
    }
}

/// Calls `f` with the number after every occurrence of `marker` in `hay`.
pub fn scan_ids(hay: &[u8], marker: &[u8], mut f: impl FnMut(u64)) {
    let mut i = 0;
    while let Some(p) = find(&hay[i..], marker) {
        let mut j = i + p + marker.len();
        let start = j;
        let mut v = 0u64;
        while j < hay.len() && hay[j].is_ascii_digit() && j - start < 19 {
            v = v * 10 + (hay[j] - b'0') as u64;
            j += 1;
        }
        if j > start {
            f(v);
        }
        i = j;
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    if n.is_empty() || h.len() < n.len() {
        return None;
    }
    let last = h.len() - n.len();
    let mut k = 0;
    while k <= last {
        let p = h[k..=last].iter().position(|&b| b == n[0])?;
        k += p;
        if &h[k..k + n.len()] == n {
            return Some(k);
        }
        k += 1;
    }
    None
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum HttpKind {
    Hec,
    Sentinel,
}

impl HttpKind {
    fn marker(self) -> String {
        match self {
            HttpKind::Hec => format!("\"event_id\":\"{ID_PREFIX}"),
            HttpKind::Sentinel => format!("\"EventId\":\"{ID_PREFIX}"),
        }
    }
}

/// A running HTTP receiver; dropping it stops accepting connections.
pub struct HttpReceiver {
    pub addr: SocketAddr,
    pub kind: HttpKind,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpReceiver {
    pub async fn start(kind: HttpKind, tally: Arc<Tally>) -> std::io::Result<HttpReceiver> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let marker: Arc<[u8]> = kind.marker().into_bytes().into();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (tally, marker) = (tally.clone(), marker.clone());
                tokio::spawn(async move {
                    let service =
                        service_fn(move |req| handle(kind, tally.clone(), marker.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(HttpReceiver { addr, kind, task })
    }

    pub fn url(&self) -> String {
        match self.kind {
            HttpKind::Hec => format!("http://{}/services/collector/event", self.addr),
            HttpKind::Sentinel => format!("http://{}/api/logs", self.addr),
        }
    }
}

fn reply(status: u16, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

async fn handle(
    kind: HttpKind,
    tally: Arc<Tally>,
    marker: Arc<[u8]>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    tally.requests.fetch_add(1, Ordering::Relaxed);
    let auth_ok = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| match kind {
            HttpKind::Hec => v.strip_prefix("Splunk ") == Some(HEC_TOKEN),
            // Signature verification is the test suite's job (tests/src/sink.rs); here only
            // the shape, so the receiver's own cost stays out of the figures.
            HttpKind::Sentinel => v.starts_with(&format!("SharedKey {WORKSPACE}:")),
        });
    let gzip = req
        .headers()
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return Ok(reply(400, r#"{"text":"No data","code":5}"#));
    };
    if tally.refusing() {
        return Ok(reply(503, r#"{"text":"Server is busy","code":9}"#));
    }
    if !auth_ok {
        return Ok(reply(401, r#"{"text":"Invalid authorization","code":3}"#));
    }
    let plain: Vec<u8>;
    let text: &[u8] = if gzip {
        let mut out = Vec::with_capacity(body.len() * 8);
        if flate2::read::MultiGzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .is_err()
        {
            return Ok(reply(400, r#"{"text":"Invalid data format","code":6}"#));
        }
        plain = out;
        &plain
    } else {
        &body
    };
    scan_ids(text, &marker, |seq| tally.record(seq));
    Ok(match kind {
        HttpKind::Hec => reply(200, r#"{"text":"Success","code":0}"#),
        HttpKind::Sentinel => reply(200, ""),
    })
}

/// A CEF-over-TCP syslog receiver (octet counting). While refusing, it closes new
/// connections at once.
pub struct SyslogReceiver {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SyslogReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SyslogReceiver {
    pub async fn start(tally: Arc<Tally>) -> std::io::Result<SyslogReceiver> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tally.requests.fetch_add(1, Ordering::Relaxed);
                if tally.refusing() {
                    continue; // dropped: closed before reading
                }
                tokio::spawn(read_frames(stream, tally.clone()));
            }
        });
        Ok(SyslogReceiver { addr, task })
    }
}

async fn read_frames(mut stream: TcpStream, tally: Arc<Tally>) {
    let marker = format!("cs4={ID_PREFIX}").into_bytes();
    let mut buf: Vec<u8> = Vec::with_capacity(256 * 1024);
    let mut chunk = vec![0u8; 128 * 1024];
    loop {
        let Ok(n) = stream.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return; // a partial frame at the end is dropped, as a collector would
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        // Frames: `LEN SP MSG`.
        while let Some(sp) = buf[at..].iter().take(12).position(|&b| b == b' ') {
            let Some(len) = std::str::from_utf8(&buf[at..at + sp])
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
            else {
                return; // malformed framing: a real collector would drop the connection
            };
            let start = at + sp + 1;
            if buf.len() < start + len {
                break;
            }
            scan_ids(&buf[start..start + len], &marker, |seq| tally.record(seq));
            at = start + len;
        }
        buf.drain(..at);
    }
}
