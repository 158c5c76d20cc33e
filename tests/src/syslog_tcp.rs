//! A syslog receiver over TCP with octet counting (RFC 6587 §3.4.1, protocols.md §5.4):
//! `MSG-LEN SP SYSLOG-MSG`, RFC 5424 messages with a CEF payload. Records the event id of
//! every complete message (from `cs4=`, our EventId; empty when absent). A frame cut off by
//! a closed connection (a killed sender) is discarded, as a real collector would.
//!
//! Faults: `pause_for` stops reading for a while (back-pressure: the sender's writes block
//! once the socket buffers fill), `refuse_for` closes new connections immediately before
//! reading anything from them (the sender sees a reset on a later write or read).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use crate::http_server::Task;
use crate::sink::cef_event_id;

#[derive(Debug, Default)]
struct State {
    accepted: Vec<String>,
    paused_until: Option<Instant>,
    refuse_until: Option<Instant>,
    /// Frames whose header was not `LEN SP` or whose message was not RFC 5424 + CEF.
    malformed: u64,
    /// Partial frames dropped at end of connection.
    truncated: u64,
}

/// A running receiver. Dropping it stops accepting connections (open ones keep going
/// until their peer closes).
pub struct SyslogTcpReceiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    connections: Arc<AtomicU64>,
    _task: Task,
}

impl SyslogTcpReceiver {
    pub async fn start() -> SyslogTcpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind syslog receiver");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::default()));
        let connections = Arc::new(AtomicU64::new(0));
        let (shared, conns) = (state.clone(), connections.clone());
        let _task = Task::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                conns.fetch_add(1, Ordering::Relaxed);
                let refuse = shared
                    .lock()
                    .unwrap()
                    .refuse_until
                    .is_some_and(|t| Instant::now() < t);
                if refuse {
                    drop(stream);
                    continue;
                }
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        SyslogTcpReceiver {
            addr,
            state,
            connections,
            _task,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Stop reading from every connection for `d`.
    pub fn pause_for(&self, d: Duration) {
        self.state.lock().unwrap().paused_until = Some(Instant::now() + d);
    }

    /// Close new connections at once for `d`.
    pub fn refuse_for(&self, d: Duration) {
        self.state.lock().unwrap().refuse_until = Some(Instant::now() + d);
    }

    pub fn accepted(&self) -> Vec<String> {
        self.state.lock().unwrap().accepted.clone()
    }

    pub fn accepted_count(&self) -> usize {
        self.state.lock().unwrap().accepted.len()
    }

    pub fn malformed(&self) -> u64 {
        self.state.lock().unwrap().malformed
    }

    pub fn truncated(&self) -> u64 {
        self.state.lock().unwrap().truncated
    }

    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

async fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>) {
    let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let pause = state.lock().unwrap().paused_until;
        if let Some(until) = pause {
            let now = Instant::now();
            if now < until {
                tokio::time::sleep(until - now).await;
                continue;
            }
        }
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                if !buf.is_empty() {
                    state.lock().unwrap().truncated += 1;
                }
                return;
            }
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut used = 0;
        let mut ids = Vec::new();
        let mut malformed = 0;
        loop {
            let rest = &buf[used..];
            let Some(sp) = rest.iter().take(12).position(|&b| b == b' ') else {
                if rest.len() >= 12 {
                    // Not octet-counted: give up on this connection.
                    state.lock().unwrap().malformed += 1;
                    return;
                }
                break;
            };
            let Some(len) = std::str::from_utf8(&rest[..sp])
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
            else {
                state.lock().unwrap().malformed += 1;
                return;
            };
            if rest.len() < sp + 1 + len {
                break;
            }
            let msg = &rest[sp + 1..sp + 1 + len];
            used += sp + 1 + len;
            match parse_message(msg) {
                Some(id) => ids.push(id),
                None => malformed += 1,
            }
        }
        buf.drain(..used);
        let mut s = state.lock().unwrap();
        s.accepted.extend(ids);
        s.malformed += malformed;
    }
}

/// Checks `<PRI>1 ` and a CEF payload; returns the event id (empty when absent).
pub(crate) fn parse_message(msg: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(msg);
    let close = text.find('>')?;
    if !text.starts_with('<') || !text[close + 1..].starts_with("1 ") {
        return None;
    }
    let cef = text.find("CEF:0|")?;
    Some(cef_event_id(&text[cef..]).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::parse_message;

    #[test]
    fn rfc5424_cef() {
        let msg = b"<131>1 2026-01-30T10:30:00.123Z host raxe - - - CEF:0|RAXE|TD|0.1|pi|PI|7|rt=1 cs4=h-9 cs4Label=EventId";
        assert_eq!(parse_message(msg).as_deref(), Some("h-9"));
        assert_eq!(parse_message(b"hello"), None);
    }
}
