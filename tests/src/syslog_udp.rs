//! A syslog receiver over UDP (RFC 5426, protocols.md §5.5): one RFC 5424 message with a
//! CEF payload per datagram. Records the event id of every datagram (from `cs4=`).
//!
//! UDP has no acknowledgement: a sender cannot know a datagram arrived. On loopback, with
//! a receiver that keeps up, none are dropped, which is what the harness relies on.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;

use crate::http_server::Task;
use crate::syslog_tcp::parse_message;

#[derive(Debug, Default)]
struct State {
    accepted: Vec<String>,
    datagrams: u64,
    malformed: u64,
}

/// A running receiver; dropping it stops it.
pub struct SyslogUdpReceiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    _task: Task,
}

impl SyslogUdpReceiver {
    pub async fn start() -> SyslogUdpReceiver {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind syslog udp receiver");
        let addr = socket.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let _task = Task::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok((n, _)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                let mut s = shared.lock().unwrap();
                s.datagrams += 1;
                match parse_message(&buf[..n]) {
                    Some(id) => s.accepted.push(id),
                    None => s.malformed += 1,
                }
            }
        });
        SyslogUdpReceiver { addr, state, _task }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Event ids received, in arrival order (duplicates included).
    pub fn accepted(&self) -> Vec<String> {
        self.state.lock().unwrap().accepted.clone()
    }

    pub fn accepted_count(&self) -> usize {
        self.state.lock().unwrap().accepted.len()
    }

    pub fn datagrams(&self) -> u64 {
        self.state.lock().unwrap().datagrams
    }

    /// Datagrams that were not RFC 5424 + CEF.
    pub fn malformed(&self) -> u64 {
        self.state.lock().unwrap().malformed
    }
}
