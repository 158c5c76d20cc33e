//! Syslog transport: UDP (RFC 5426), TCP (RFC 6587) and TLS (RFC 5425).
//!
//! Messages arrive *unframed*, one per event. What goes on the wire:
//!
//! * **UDP**: one message per datagram, no framing, no trailer, over a connected UDP socket
//!   (created on the first send) to the first of the host's addresses it can connect to
//!   (one of a family with no route is skipped). A send that fails (an ICMP "port
//!   unreachable" for an earlier datagram, say: a receiver listening on the other address
//!   family) drops the socket, and the next one goes to the host's next address, in turn.
//!   A message longer than `max_datagram` (capped at
//!   [`MAX_UDP_PAYLOAD`]) is **truncated** to at most `max_datagram` bytes, cut before the
//!   first byte of a UTF-8 sequence so no character is split (for non-UTF-8 bytes the
//!   length bound still holds). UDP offers no delivery guarantee: `Ok` means every
//!   datagram was handed to the kernel.
//! * **TCP / TLS**: one persistent connection, opened lazily on the first send and reused.
//!   The whole batch is framed into one buffer and written with `write_all` + `flush`.
//!   - Octet counting (default; the only framing allowed with TLS): `LEN SP MSG`, `LEN` the
//!     decimal byte length of MSG. Messages may contain LF.
//!   - Newline: `MSG LF`. Every LF inside a message is replaced by a space so it cannot
//!     split the message in two.
//!
//!   Before a batch is written on a reused connection, the transport checks (without
//!   blocking) whether the peer has closed it; if so it reconnects first. Any failure while
//!   connecting or writing drops the connection and returns a retryable error, so the batch
//!   stays queued and the next send reconnects. `Ok` means the bytes were flushed to the
//!   socket, nothing more (syslog has no acknowledgement).
//!
//!   Resend window (protocols.md §5.4): the last batch written is kept. If the connection
//!   that carried it is then found reset, or the next write fails, the peer may have dropped
//!   it unread, so the next connection sends it again before the new batch (duplicates, never
//!   a loss). A clean close (end of stream) needs no resend: a socket closed with unread data
//!   sends a reset instead. The window is one batch and lives in memory: a peer that fails
//!   holding more, or together with a crash of this process, can still lose events.
//! * **TLS**: tokio-rustls with [`super::tls::client_config`]; SNI / certificate name from
//!   `host` (an IP address is verified against the certificate's IP SANs). A TLS alert
//!   received on an idle connection (e.g. the server rejected the client certificate after
//!   the handshake, TLS 1.3) is reported as [`TransportError::Tls`] on the next send.
//!   On a new TLS 1.3 connection the transport waits for such an alert before writing (twice
//!   the handshake's time, at least [`TLS13_PROBE`]), so a rejected client certificate fails
//!   the batch instead of losing it.
//!   [`SyslogTransport::close`] (or dropping the transport inside a tokio runtime) sends a
//!   TLS close_notify.
//!
//! `target.timeout` bounds one `send`: connect, TLS handshake and writing the batch.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Mutex;
use tokio_rustls::TlsConnector;

use super::tls::{client_config, find_rustls_error};
use super::{SyslogFraming, SyslogProtocol, SyslogTarget, TlsOptions, TransportSetupError};
use crate::request::TransportError;

/// Shortest wait of a new TLS 1.3 connection for a post-handshake rejection alert (it
/// waits twice the handshake's time when longer, and at most a quarter of the timeout).
pub const TLS13_PROBE: Duration = Duration::from_millis(100);

/// Largest UDP payload over IPv4 (65,535 − 20 − 8); `max_datagram` is capped to it.
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// Sends syslog messages to one receiver. Safe to share (`&self` methods; sends are
/// serialized internally so batches never interleave on a stream).
pub struct SyslogTransport {
    target: SyslogTarget,
    kind: Kind,
}

enum Kind {
    Udp {
        max_datagram: usize,
        socket: Mutex<UdpState>,
    },
    Stream {
        tls: Option<(TlsConnector, ServerName<'static>)>,
        state: Mutex<StreamState>,
    },
}

/// The UDP socket, and which of the host's addresses to try first when it is made again.
#[derive(Default)]
struct UdpState {
    socket: Option<UdpSocket>,
    /// The index, in resolution order, of the address the socket is connected to, or of
    /// the next to try: a send that fails moves on to the address after it.
    address: usize,
    /// Test hook: these addresses instead of resolving the host.
    #[cfg(test)]
    resolved: Option<Vec<std::net::SocketAddr>>,
}

/// A stream's connection and its resend window (see the module docs).
#[derive(Default)]
struct StreamState {
    conn: Option<Conn>,
    /// The framed bytes of the last batch written, while they are all the peer may have
    /// lost: until a later batch is written over a connection found alive.
    last_batch: Option<Bytes>,
    /// The connection that carried `last_batch` failed (reset, write error): the peer may
    /// have dropped it unread, so the next connection sends it again first.
    resend: bool,
}

impl StreamState {
    /// The connection failed: drop it, and send the last batch again on the next one.
    fn lose_connection(&mut self) {
        self.conn = None;
        self.resend = self.last_batch.is_some();
    }
}

impl std::fmt::Debug for SyslogTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyslogTransport")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl SyslogTransport {
    /// The largest message sent whole (UDP: the datagram limit); `None` over a stream.
    pub fn max_datagram(&self) -> Option<usize> {
        match &self.kind {
            Kind::Udp { max_datagram, .. } => Some(*max_datagram),
            Kind::Stream { .. } => None,
        }
    }

    /// Validates the target and builds the TLS configuration (for `Tls`). Does not connect
    /// and does not need a running tokio runtime.
    pub fn new(
        target: SyslogTarget,
        tls: &TlsOptions,
    ) -> Result<SyslogTransport, TransportSetupError> {
        let host = bare_host(&target.host);
        if host.is_empty() {
            return Err(TransportSetupError::InvalidTarget(
                "syslog host is empty".into(),
            ));
        }
        if target.port == 0 {
            return Err(TransportSetupError::InvalidTarget(
                "syslog port is 0".into(),
            ));
        }
        if target.timeout.is_zero() {
            return Err(TransportSetupError::InvalidTarget(
                "syslog timeout must be greater than zero".into(),
            ));
        }
        let kind = match target.protocol {
            SyslogProtocol::Udp => {
                if target.max_datagram == 0 {
                    return Err(TransportSetupError::InvalidTarget(
                        "syslog max_datagram must be greater than zero".into(),
                    ));
                }
                Kind::Udp {
                    max_datagram: target.max_datagram.min(MAX_UDP_PAYLOAD),
                    socket: Mutex::default(),
                }
            }
            SyslogProtocol::Tcp => Kind::Stream {
                tls: None,
                state: Mutex::default(),
            },
            SyslogProtocol::Tls => {
                if target.framing != SyslogFraming::OctetCounting {
                    return Err(TransportSetupError::InvalidTarget(
                        "syslog over TLS requires octet-counting framing (RFC 5425)".into(),
                    ));
                }
                let config = client_config(tls)?;
                let name = ServerName::try_from(host.to_string()).map_err(|_| {
                    TransportSetupError::InvalidTarget(format!(
                        "{host:?} is neither a DNS name nor an IP address usable for TLS"
                    ))
                })?;
                Kind::Stream {
                    tls: Some((TlsConnector::from(Arc::new(config)), name)),
                    state: Mutex::default(),
                }
            }
        };
        Ok(SyslogTransport { target, kind })
    }

    /// The target this transport sends to.
    pub fn target(&self) -> &SyslogTarget {
        &self.target
    }

    /// Sends a batch. See the module docs for framing and what `Ok` means.
    pub async fn send(&self, messages: &[Bytes]) -> Result<(), TransportError> {
        if messages.is_empty() {
            return Ok(());
        }
        match &self.kind {
            Kind::Udp {
                max_datagram,
                socket,
            } => self.send_udp(*max_datagram, socket, messages).await,
            Kind::Stream { tls, state } => self.send_stream(tls.as_ref(), state, messages).await,
        }
    }

    /// Closes the stream connection, if any (TLS: sends close_notify). The next send
    /// reconnects.
    pub async fn close(&self) {
        match &self.kind {
            Kind::Udp { socket, .. } => {
                socket.lock().await.socket.take();
            }
            Kind::Stream { state, .. } => {
                if let Some(mut c) = state.lock().await.conn.take() {
                    let _ = tokio::time::timeout(self.target.timeout, c.shutdown()).await;
                }
            }
        }
    }

    async fn send_udp(
        &self,
        max_datagram: usize,
        socket: &Mutex<UdpState>,
        messages: &[Bytes],
    ) -> Result<(), TransportError> {
        let mut guard = socket.lock().await;
        let state = &mut *guard;
        let result = tokio::time::timeout(self.target.timeout, async {
            if state.socket.is_none() {
                let (sock, used) = self.connect_udp(state).await?;
                state.socket = Some(sock);
                state.address = used;
            }
            let sock = state.socket.as_ref().expect("socket set above");
            for message in messages {
                let datagram = truncate_utf8(message, max_datagram);
                let sent = sock
                    .send(datagram)
                    .await
                    .map_err(|e| self.io_error("send", &e))?;
                if sent != datagram.len() {
                    return Err(TransportError::Io(format!(
                        "short UDP send to {}: {sent} of {} bytes",
                        self.addr(),
                        datagram.len()
                    )));
                }
            }
            Ok(())
        })
        .await
        .unwrap_or(Err(TransportError::Timeout(self.target.timeout)));
        if result.is_err() && state.socket.take().is_some() {
            // A fresh socket next time (clears a pending ICMP error, re-resolves the host),
            // to the host's next address: an ICMP "port unreachable" from this one (a
            // receiver listening on the other address family, say) refuses every datagram.
            state.address = state.address.wrapping_add(1);
        }
        result
    }

    /// A UDP socket connected to the first usable of the host's addresses, starting at
    /// `state.address` (in resolution order, wrapping): its index and the socket. An
    /// address that cannot be bound or connected to (no route for its family, say) is
    /// skipped.
    async fn connect_udp(&self, state: &UdpState) -> Result<(UdpSocket, usize), TransportError> {
        let addrs = self.resolve_udp(state).await?;
        let mut failed = None;
        for i in 0..addrs.len() {
            let index = state.address.wrapping_add(i) % addrs.len();
            match connect_udp_to(addrs[index]).await {
                Ok(sock) => return Ok((sock, index)),
                Err(e) => failed = Some(e),
            }
        }
        Err(TransportError::Connect(match failed {
            Some(e) => format!("connect UDP {}: {e}", self.addr()),
            None => format!("resolve {}: no address", self.addr()),
        }))
    }

    /// The host's addresses, in resolution order.
    async fn resolve_udp(
        &self,
        #[cfg_attr(not(test), allow(unused_variables))] state: &UdpState,
    ) -> Result<Vec<std::net::SocketAddr>, TransportError> {
        #[cfg(test)]
        if let Some(addrs) = &state.resolved {
            return Ok(addrs.clone());
        }
        Ok(
            tokio::net::lookup_host((bare_host(&self.target.host), self.target.port))
                .await
                .map_err(|e| TransportError::Connect(format!("resolve {}: {e}", self.addr())))?
                .collect(),
        )
    }

    async fn send_stream(
        &self,
        tls: Option<&(TlsConnector, ServerName<'static>)>,
        state: &Mutex<StreamState>,
        messages: &[Bytes],
    ) -> Result<(), TransportError> {
        let buf = Bytes::from(frame_batch(messages, self.target.framing));
        let mut guard = state.lock().await;
        let st = &mut *guard;

        if let Some(c) = st.conn.as_mut() {
            match check_peer(c).await {
                Liveness::Alive => {}
                Liveness::Closed => {
                    // A clean close: a socket closed with unread data sends a reset
                    // instead, so the peer read what we wrote.
                    tracing::debug!(peer = %self.addr(), "syslog peer closed the connection; reconnecting");
                    st.conn = None;
                    st.last_batch = None;
                }
                Liveness::Reset => st.lose_connection(),
                Liveness::TlsAlert(reason) => {
                    st.lose_connection();
                    return Err(TransportError::Tls(reason));
                }
            }
        }
        let resend = st.resend.then(|| st.last_batch.clone()).flatten();
        if let Some(lost) = &resend {
            tracing::warn!(peer = %self.addr(), bytes = lost.len(), "the syslog connection failed after the last batch was written; sending that batch again (the SIEM may see its events twice)");
        }

        let result = tokio::time::timeout(self.target.timeout, async {
            if st.conn.is_none() {
                st.conn = Some(self.connect_stream(tls).await?);
            }
            let c = st.conn.as_mut().expect("connection set above");
            if let Some(lost) = &resend {
                c.write_all(lost)
                    .await
                    .map_err(|e| self.io_error("write", &e))?;
            }
            c.write_all(&buf)
                .await
                .map_err(|e| self.io_error("write", &e))?;
            c.flush().await.map_err(|e| self.io_error("flush", &e))?;
            Ok(())
        })
        .await
        .unwrap_or(Err(TransportError::Timeout(self.target.timeout)));

        match &result {
            Ok(()) => {
                st.last_batch = Some(buf);
                st.resend = false;
            }
            Err(_) => {
                // The stream may hold a partial frame: never reuse it. This batch stays
                // queued (the error says so); the one before may not have been read.
                st.lose_connection();
            }
        }
        result
    }

    async fn connect_stream(
        &self,
        tls: Option<&(TlsConnector, ServerName<'static>)>,
    ) -> Result<Conn, TransportError> {
        let started = tokio::time::Instant::now();
        let tcp = TcpStream::connect((bare_host(&self.target.host), self.target.port))
            .await
            .map_err(|e| TransportError::Connect(format!("connect to {}: {e}", self.addr())))?;
        let _ = tcp.set_nodelay(true);
        match tls {
            None => Ok(Conn::Tcp(tcp)),
            Some((connector, name)) => {
                let stream =
                    connector.connect(name.clone(), tcp).await.map_err(
                        |e| match find_rustls_error(&e) {
                            Some(r) => TransportError::Tls(r.to_string()),
                            None => TransportError::Connect(format!(
                                "TLS handshake with {}: {e}",
                                self.addr()
                            )),
                        },
                    )?;
                let mut stream = Box::new(stream);
                if stream.get_ref().1.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) {
                    self.probe_tls13_rejection(&mut stream, started.elapsed())
                        .await?;
                }
                Ok(Conn::Tls(stream))
            }
        }
    }

    /// In TLS 1.3 the client finishes its handshake before the server has judged the client
    /// certificate; a rejection (e.g. `certificate_required`) arrives as an alert a round
    /// trip later. Writing a batch straight away would report it as sent and lose it, so on
    /// a new TLS 1.3 connection wait for such an alert before writing: twice as long as the
    /// connect and handshake took (several round trips), at least [`TLS13_PROBE`], at most a
    /// quarter of the timeout. Silence means accepted. Best effort: a slower alert is caught
    /// by the liveness check of the next send, which stops the destination; the batch sent
    /// before it is in this transport's resend window only, and a new configuration (a new
    /// transport) does not send it again.
    async fn probe_tls13_rejection(
        &self,
        stream: &mut tokio_rustls::client::TlsStream<TcpStream>,
        handshake: Duration,
    ) -> Result<(), TransportError> {
        let mut scratch = [0u8; 512];
        let probe = (handshake * 2)
            .max(TLS13_PROBE)
            .min(self.target.timeout / 4);
        match tokio::time::timeout(probe, stream.read(&mut scratch)).await {
            Err(_) | Ok(Ok(1..)) => Ok(()),
            Ok(Ok(0)) => Err(TransportError::Connect(format!(
                "{} closed the TLS connection right after the handshake",
                self.addr()
            ))),
            Ok(Err(e)) => Err(match find_rustls_error(&e) {
                Some(r) => TransportError::Tls(r.to_string()),
                None => TransportError::Connect(format!(
                    "TLS connection to {} failed after the handshake: {e}",
                    self.addr()
                )),
            }),
        }
    }

    fn io_error(&self, what: &str, e: &io::Error) -> TransportError {
        if let Some(r) = find_rustls_error(e) {
            return TransportError::Tls(r.to_string());
        }
        if e.kind() == io::ErrorKind::ConnectionRefused {
            return TransportError::Connect(format!("{what} to {}: {e}", self.addr()));
        }
        TransportError::Io(format!("{what} to {}: {e}", self.addr()))
    }

    fn addr(&self) -> String {
        let host = bare_host(&self.target.host);
        if host.contains(':') {
            format!("[{host}]:{}", self.target.port)
        } else {
            format!("{host}:{}", self.target.port)
        }
    }
}

/// A UDP socket of `addr`'s family, connected to it.
async fn connect_udp_to(addr: std::net::SocketAddr) -> io::Result<UdpSocket> {
    let local: std::net::SocketAddr = if addr.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local).await?;
    sock.connect(addr).await?;
    Ok(sock)
}

#[cfg(test)]
mod udp_tests;

impl Drop for SyslogTransport {
    fn drop(&mut self) {
        // Best effort close_notify for TLS when a runtime is around to run it.
        if let Kind::Stream { state, .. } = &mut self.kind {
            if let Some(Conn::Tls(mut stream)) = state.get_mut().conn.take() {
                if let Ok(handle) = tokio::runtime::Handle::try_current() {
                    handle.spawn(async move {
                        let _ =
                            tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
                    });
                }
            }
        }
    }
}

/// `[::1]` → `::1`; anything else unchanged.
fn bare_host(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// At most `max` bytes of `msg`, cut before a UTF-8 continuation byte never inside a
/// character. `msg` itself if it fits.
pub fn truncate_utf8(msg: &[u8], max: usize) -> &[u8] {
    if msg.len() <= max {
        return msg;
    }
    let mut end = max;
    // Back up over continuation bytes (10xxxxxx) so the cut falls before a lead byte.
    // At most 3 steps for valid UTF-8; bounded by 3 so arbitrary bytes still cut near `max`.
    let mut steps = 0;
    while end > 0 && steps < 4 && (msg[end] & 0xC0) == 0x80 {
        end -= 1;
        steps += 1;
    }
    if steps == 4 {
        // Not UTF-8 here: a plain byte cut.
        end = max;
    }
    &msg[..end]
}

/// Frames a batch for a TCP/TLS stream into one buffer.
pub fn frame_batch(messages: &[Bytes], framing: SyslogFraming) -> Vec<u8> {
    let total: usize = messages.iter().map(|m| m.len() + 12).sum();
    let mut buf = Vec::with_capacity(total);
    for m in messages {
        match framing {
            SyslogFraming::OctetCounting => {
                buf.extend_from_slice(m.len().to_string().as_bytes());
                buf.push(b' ');
                buf.extend_from_slice(m);
            }
            SyslogFraming::Newline => {
                buf.extend(m.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
                buf.push(b'\n');
            }
        }
    }
    buf
}

enum Liveness {
    Alive,
    /// End of stream: the peer closed after reading everything.
    Closed,
    /// Reset or another error: what the peer had not read yet is gone.
    Reset,
    TlsAlert(String),
}

/// Without blocking: has the peer closed (EOF, reset, TLS alert) this connection?
/// Syslog receivers never send application data; anything received is discarded.
async fn check_peer(conn: &mut Conn) -> Liveness {
    let mut scratch = [0u8; 1024];
    std::future::poll_fn(|cx| {
        for _ in 0..64 {
            let mut rb = ReadBuf::new(&mut scratch);
            match Pin::new(&mut *conn).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Ready(Liveness::Alive),
                Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                    return Poll::Ready(Liveness::Closed)
                }
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(match find_rustls_error(&e) {
                        Some(
                            r @ (rustls::Error::AlertReceived(_)
                            | rustls::Error::InvalidCertificate(_)),
                        ) => Liveness::TlsAlert(r.to_string()),
                        _ => Liveness::Reset,
                    })
                }
            }
        }
        // A peer that keeps talking: still alive.
        Poll::Ready(Liveness::Alive)
    })
    .await
}

/// A syslog stream connection.
enum Conn {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
