//! SyslogTransport against real UDP / TCP / TLS receivers on 127.0.0.1.

mod common_tls;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use raxe_adapters::request::TransportError;
use raxe_adapters::transport::{
    SyslogFraming, SyslogProtocol, SyslogTarget, SyslogTransport, TlsOptions, TransportSetupError,
};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio_rustls::TlsAcceptor;

use common_tls::TestPki;

const TIMEOUT: Duration = Duration::from_secs(3);

fn target(host: &str, port: u16, protocol: SyslogProtocol, framing: SyslogFraming) -> SyslogTarget {
    SyslogTarget {
        host: host.to_string(),
        port,
        protocol,
        framing,
        max_datagram: 2048,
        timeout: TIMEOUT,
    }
}

fn msgs(list: &[&[u8]]) -> Vec<Bytes> {
    list.iter().map(|m| Bytes::copy_from_slice(m)).collect()
}

const EX1: &[u8] = b"<134>1 2025-07-01T12:00:00.123Z scanner01.example.com vulnscan 4242 SCAN_DONE - Scan s-1 finished: 3 findings";

/// Parses `LEN SP MSG` frames; returns the messages and the unparsed rest.
fn parse_octet_frames(mut buf: &[u8]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut out = Vec::new();
    while let Some(sp) = buf.iter().position(|&b| b == b' ') {
        let digits = &buf[..sp];
        assert!(
            !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) && digits[0] != b'0',
            "bad frame length {:?}",
            String::from_utf8_lossy(digits)
        );
        let len: usize = std::str::from_utf8(digits).unwrap().parse().unwrap();
        if buf.len() < sp + 1 + len {
            break;
        }
        out.push(buf[sp + 1..sp + 1 + len].to_vec());
        buf = &buf[sp + 1 + len..];
    }
    (out, buf.to_vec())
}

/// Reads octet-counted frames from `stream` until `n` messages have arrived.
async fn read_octet_frames<S: AsyncRead + Unpin>(stream: &mut S, n: usize) -> Vec<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let (frames, _) = parse_octet_frames(&buf);
        if frames.len() >= n {
            assert_eq!(frames.len(), n, "more frames than expected");
            return frames;
        }
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("receiver timed out")
            .unwrap();
        assert!(read > 0, "sender closed before {n} frames arrived");
        buf.extend_from_slice(&chunk[..read]);
    }
}

// ---------------------------------------------------------------- UDP

#[tokio::test]
async fn udp_one_datagram_per_message_and_truncation() {
    let rx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = rx.local_addr().unwrap().port();
    let mut t = target(
        "127.0.0.1",
        port,
        SyslogProtocol::Udp,
        SyslogFraming::OctetCounting,
    );
    t.max_datagram = 480;
    let tx = SyslogTransport::new(t, &TlsOptions::default()).unwrap();

    // 479 ASCII bytes then "€" (3 bytes, at 479..482): a cut at 480 would split it.
    let mut oversized = vec![b'a'; 479];
    oversized.extend_from_slice("€tail".as_bytes());
    let with_lf = b"line1\nline2".to_vec();
    let batch = vec![
        Bytes::from_static(EX1),
        Bytes::from(oversized.clone()),
        Bytes::from(with_lf.clone()),
        Bytes::from(vec![b'z'; 480]),
    ];
    tx.send(&batch).await.unwrap();
    tx.send(&msgs(&[b"second batch"])).await.unwrap();

    let mut got = Vec::new();
    let mut buf = vec![0u8; 70_000];
    for _ in 0..5 {
        let n = tokio::time::timeout(Duration::from_secs(2), rx.recv(&mut buf))
            .await
            .expect("datagram")
            .unwrap();
        got.push(buf[..n].to_vec());
    }
    assert_eq!(got[0], EX1);
    // "€" starts at byte 479 and would end at 482 > 480: cut before it.
    assert_eq!(got[1], vec![b'a'; 479]);
    assert!(std::str::from_utf8(&got[1]).is_ok());
    assert_eq!(got[2], with_lf);
    assert_eq!(got[3], vec![b'z'; 480]);
    assert_eq!(got[4], b"second batch");
    // Nothing else arrives.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), rx.recv(&mut buf))
            .await
            .is_err()
    );
}

#[test]
fn utf8_truncation_boundaries() {
    use raxe_adapters::transport::syslog::truncate_utf8;
    let s = "aé€😀".as_bytes(); // 1 + 2 + 3 + 4 = 10 bytes
    assert_eq!(truncate_utf8(s, 100), s);
    assert_eq!(truncate_utf8(s, 10), s);
    assert_eq!(truncate_utf8(s, 9), "aé€".as_bytes());
    assert_eq!(truncate_utf8(s, 7), "aé€".as_bytes());
    assert_eq!(truncate_utf8(s, 6), "aé€".as_bytes());
    assert_eq!(truncate_utf8(s, 5), "aé".as_bytes());
    assert_eq!(truncate_utf8(s, 4), "aé".as_bytes());
    assert_eq!(truncate_utf8(s, 3), "aé".as_bytes());
    assert_eq!(truncate_utf8(s, 2), "a".as_bytes());
    assert_eq!(truncate_utf8(s, 1), "a".as_bytes());
    assert_eq!(truncate_utf8(s, 0), b"");
    // Arbitrary bytes: still never longer than max.
    let junk = [0x80u8; 20];
    assert_eq!(truncate_utf8(&junk, 10).len(), 10);
}

#[test]
fn invalid_targets_are_rejected() {
    let tls = TlsOptions::default();
    let mut t = target(
        "127.0.0.1",
        514,
        SyslogProtocol::Udp,
        SyslogFraming::OctetCounting,
    );
    t.max_datagram = 0;
    assert!(matches!(
        SyslogTransport::new(t, &tls),
        Err(TransportSetupError::InvalidTarget(_))
    ));
    let t = target("", 514, SyslogProtocol::Tcp, SyslogFraming::OctetCounting);
    assert!(SyslogTransport::new(t, &tls).is_err());
    let t = target(
        "localhost",
        0,
        SyslogProtocol::Tcp,
        SyslogFraming::OctetCounting,
    );
    assert!(SyslogTransport::new(t, &tls).is_err());
    // RFC 5425: TLS needs octet counting.
    let t = target(
        "localhost",
        6514,
        SyslogProtocol::Tls,
        SyslogFraming::Newline,
    );
    assert!(matches!(
        SyslogTransport::new(t, &tls),
        Err(TransportSetupError::InvalidTarget(_))
    ));
    // Building never connects and needs no runtime.
    let t = target(
        "localhost",
        6514,
        SyslogProtocol::Tls,
        SyslogFraming::OctetCounting,
    );
    SyslogTransport::new(t, &tls).unwrap();
}

// ---------------------------------------------------------------- TCP

#[tokio::test]
async fn tcp_octet_counting_round_trip() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let tx = SyslogTransport::new(
        target(
            "127.0.0.1",
            port,
            SyslogProtocol::Tcp,
            SyslogFraming::OctetCounting,
        ),
        &TlsOptions::default(),
    )
    .unwrap();
    let batch1 = msgs(&[EX1, b"multi\nline\nmessage", "ünïcødé ✓".as_bytes(), b"x"]);
    let batch2 = msgs(&[b"batch two", &[b'y'; 10_000]]);
    tx.send(&batch1).await.unwrap();
    tx.send(&batch2).await.unwrap();

    let (mut s, _) = listener.accept().await.unwrap();
    let frames = read_octet_frames(&mut s, 6).await;
    let expected: Vec<Vec<u8>> = batch1.iter().chain(&batch2).map(|b| b.to_vec()).collect();
    assert_eq!(frames, expected);
}

#[tokio::test]
async fn tcp_octet_counting_exact_bytes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let tx = SyslogTransport::new(
        target(
            "127.0.0.1",
            port,
            SyslogProtocol::Tcp,
            SyslogFraming::OctetCounting,
        ),
        &TlsOptions::default(),
    )
    .unwrap();
    tx.send(&msgs(&[EX1])).await.unwrap();
    tx.close().await;
    let (mut s, _) = listener.accept().await.unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).await.unwrap();
    let mut expected = b"109 ".to_vec();
    expected.extend_from_slice(EX1);
    assert_eq!(all, expected); // protocols.md §5.6 example 1
}

#[tokio::test]
async fn tcp_newline_framing_replaces_embedded_lf() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let tx = SyslogTransport::new(
        target(
            "localhost",
            port,
            SyslogProtocol::Tcp,
            SyslogFraming::Newline,
        ),
        &TlsOptions::default(),
    )
    .unwrap();
    tx.send(&msgs(&[b"first", b"two\nlines", "ü".as_bytes()]))
        .await
        .unwrap();
    tx.close().await;
    let (mut s, _) = listener.accept().await.unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).await.unwrap();
    assert_eq!(all, "first\ntwo lines\nü\n".as_bytes());
}

#[tokio::test]
async fn tcp_reconnects_after_receiver_drops_and_returns() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let tx = SyslogTransport::new(
        target(
            "127.0.0.1",
            addr.port(),
            SyslogProtocol::Tcp,
            SyslogFraming::OctetCounting,
        ),
        &TlsOptions::default(),
    )
    .unwrap();

    // 1. First connection receives batch 1, then the receiver hangs up.
    tx.send(&msgs(&[b"one"])).await.unwrap();
    let (mut s, _) = listener.accept().await.unwrap();
    assert_eq!(read_octet_frames(&mut s, 1).await, vec![b"one".to_vec()]);
    drop(s);
    tokio::time::sleep(Duration::from_millis(50)).await;

    // 2. The next send notices the dead connection and reconnects (no batch lost).
    tx.send(&msgs(&[b"two"])).await.unwrap();
    let (mut s, _) = listener.accept().await.unwrap();
    assert_eq!(read_octet_frames(&mut s, 1).await, vec![b"two".to_vec()]);

    // 3. Receiver gone entirely: sends fail with a retryable error.
    drop(s);
    drop(listener);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let err = tx.send(&msgs(&[b"three"])).await.unwrap_err();
    eprintln!("after receiver shutdown: {err:?}");
    assert!(
        matches!(err, TransportError::Connect(_) | TransportError::Io(_)),
        "{err:?}"
    );
    let err = tx.send(&msgs(&[b"three"])).await.unwrap_err();
    assert!(matches!(err, TransportError::Connect(_)), "{err:?}");

    // 4. Receiver back on the same port: the (re)sent batch goes through.
    let listener = TcpListener::bind(addr).await.unwrap();
    tx.send(&msgs(&[b"three", b"four"])).await.unwrap();
    let (mut s, _) = listener.accept().await.unwrap();
    assert_eq!(
        read_octet_frames(&mut s, 2).await,
        vec![b"three".to_vec(), b"four".to_vec()]
    );
}

#[tokio::test]
async fn tcp_write_timeout_when_receiver_does_not_read() {
    // A receiver that accepts but never reads: the socket buffers fill and the write
    // times out; the error is retryable and the connection is dropped.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
        drop(s);
    });
    let mut t = target(
        "127.0.0.1",
        port,
        SyslogProtocol::Tcp,
        SyslogFraming::OctetCounting,
    );
    t.timeout = Duration::from_millis(300);
    let tx = SyslogTransport::new(t, &TlsOptions::default()).unwrap();
    let big = Bytes::from(vec![b'q'; 64 * 1024 * 1024]);
    let start = std::time::Instant::now();
    let err = tx.send(&[big]).await.unwrap_err();
    assert!(matches!(err, TransportError::Timeout(_)), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(3));
    hold.abort();
}

// ---------------------------------------------------------------- TLS

#[tokio::test]
async fn tls_octet_counting_round_trip() {
    let pki = TestPki::new();
    let acceptor = TlsAcceptor::from(pki.server_config());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let opts = TlsOptions {
        ca_cert: Some(pki.ca_pem.clone()),
        ..TlsOptions::default()
    };
    let batch = msgs(&[EX1, b"with\nnewline", "ünïcødé".as_bytes()]);
    for host in ["127.0.0.1", "localhost"] {
        let tx = SyslogTransport::new(
            target(
                host,
                port,
                SyslogProtocol::Tls,
                SyslogFraming::OctetCounting,
            ),
            &opts,
        )
        .unwrap();
        let (sent, accepted) = tokio::join!(tx.send(&batch), async {
            let (tcp, _) = listener.accept().await.unwrap();
            acceptor.accept(tcp).await.unwrap()
        });
        sent.unwrap();
        let mut stream = accepted;
        tx.send(&msgs(&[b"again"])).await.unwrap();
        let frames = read_octet_frames(&mut stream, 4).await;
        let mut expected: Vec<Vec<u8>> = batch.iter().map(|b| b.to_vec()).collect();
        expected.push(b"again".to_vec());
        assert_eq!(frames, expected, "host {host}");
        // close() sends close_notify: the receiver sees a clean EOF.
        tx.close().await;
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }
}

#[tokio::test]
async fn tls_untrusted_certificate_is_tls_error() {
    let pki = TestPki::new();
    let acceptor = TlsAcceptor::from(pki.server_config());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut stream) = acceptor.accept(tcp).await {
                    let mut sink = Vec::new();
                    let _ = stream.read_to_end(&mut sink).await;
                }
            });
        }
    });
    let tx = SyslogTransport::new(
        target(
            "127.0.0.1",
            port,
            SyslogProtocol::Tls,
            SyslogFraming::OctetCounting,
        ),
        &TlsOptions::default(),
    )
    .unwrap();
    let err = tx.send(&msgs(&[b"never"])).await.unwrap_err();
    match err {
        TransportError::Tls(msg) => assert!(msg.contains("UnknownIssuer"), "{msg}"),
        other => panic!("expected Tls, got {other:?}"),
    }

    // insecure_skip_verify accepts it.
    let tx = SyslogTransport::new(
        target(
            "127.0.0.1",
            port,
            SyslogProtocol::Tls,
            SyslogFraming::OctetCounting,
        ),
        &TlsOptions {
            insecure_skip_verify: true,
            ..TlsOptions::default()
        },
    )
    .unwrap();
    tx.send(&msgs(&[b"accepted"])).await.unwrap();
}

#[tokio::test]
async fn tls_mutual_auth() {
    let pki = TestPki::new();
    let acceptor = TlsAcceptor::from(pki.mtls_server_config());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let opts = TlsOptions {
        ca_cert: Some(pki.ca_pem.clone()),
        client_cert: Some(pki.client_cert_pem.clone()),
        client_key: Some(pki.client_key_pem.clone()),
        insecure_skip_verify: false,
    };
    let tx = SyslogTransport::new(
        target(
            "localhost",
            port,
            SyslogProtocol::Tls,
            SyslogFraming::OctetCounting,
        ),
        &opts,
    )
    .unwrap();
    let one = msgs(&[b"mtls"]);
    let (sent, accepted) = tokio::join!(tx.send(&one), async {
        let (tcp, _) = listener.accept().await.unwrap();
        acceptor.accept(tcp).await
    });
    sent.unwrap();
    let mut stream = accepted.unwrap();
    assert_eq!(
        read_octet_frames(&mut stream, 1).await,
        vec![b"mtls".to_vec()]
    );

    // Without a client certificate the server refuses (TLS 1.3: after the client's side of
    // the handshake is done); the batch must fail, not be reported as sent.
    let tx = SyslogTransport::new(
        target(
            "localhost",
            port,
            SyslogProtocol::Tls,
            SyslogFraming::OctetCounting,
        ),
        &TlsOptions {
            ca_cert: Some(pki.ca_pem.clone()),
            ..TlsOptions::default()
        },
    )
    .unwrap();
    let server = tokio::spawn(async move {
        for _ in 0..3 {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            assert!(acceptor.accept(tcp).await.is_err());
        }
    });
    let err = tx.send(&msgs(&[b"rejected"])).await.unwrap_err();
    match err {
        TransportError::Tls(msg) => assert!(msg.contains("CertificateRequired"), "{msg}"),
        other => panic!("expected Tls, got {other:?}"),
    }
    server.abort();
}

#[test]
fn transport_and_its_futures_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>(_: &T) {}
    assert_send_sync::<SyslogTransport>();
    let tx = SyslogTransport::new(
        target(
            "127.0.0.1",
            514,
            SyslogProtocol::Tcp,
            SyslogFraming::OctetCounting,
        ),
        &TlsOptions::default(),
    )
    .unwrap();
    let batch = msgs(&[b"x"]);
    let fut = tx.send(&batch);
    assert_send(&fut);
    let close = tx.close();
    assert_send(&close);
}

/// A receiver that dies with our last batch unread (its socket sends a reset): the next
/// connection gets that batch again, then the new one. One that read everything and closed
/// cleanly gets no resend.
#[tokio::test]
async fn tcp_resends_the_last_batch_after_a_reset() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let tx = SyslogTransport::new(
        target(
            "127.0.0.1",
            addr.port(),
            SyslogProtocol::Tcp,
            SyslogFraming::OctetCounting,
        ),
        &TlsOptions::default(),
    )
    .unwrap();

    tx.send(&msgs(&[b"one"])).await.unwrap();
    let (s, _) = listener.accept().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(s); // unread data: the kernel answers with a reset
    tokio::time::sleep(Duration::from_millis(50)).await;

    tx.send(&msgs(&[b"two"])).await.unwrap();
    let (mut s, _) = listener.accept().await.unwrap();
    assert_eq!(
        read_octet_frames(&mut s, 2).await,
        vec![b"one".to_vec(), b"two".to_vec()]
    );
    drop(s); // everything read: a clean close
    tokio::time::sleep(Duration::from_millis(50)).await;

    tx.send(&msgs(&[b"three"])).await.unwrap();
    let (mut s, _) = listener.accept().await.unwrap();
    assert_eq!(read_octet_frames(&mut s, 1).await, vec![b"three".to_vec()]);
    // Nothing more than "three" arrived.
    tokio::time::sleep(Duration::from_millis(50)).await;
    tx.close().await;
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
}

/// Forwards one connection to `server`, holding every chunk from the server back `delay`:
/// a receiver one long round trip away.
async fn slow_return_proxy(server: SocketAddr, delay: Duration) -> SocketAddr {
    use tokio::io::AsyncWriteExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let Ok(upstream) = tokio::net::TcpStream::connect(server).await else {
                return;
            };
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = upstream.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                let _ = server_write.shutdown().await;
            });
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match server_read.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            tokio::time::sleep(delay).await;
                            if client_write.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = client_write.shutdown().await;
            });
        }
    });
    addr
}

/// A receiver whose answers take longer than the shortest probe: a rejected client
/// certificate still fails the batch (the wait grows with the handshake's time).
#[tokio::test]
async fn tls13_rejection_from_a_distant_receiver_fails_the_batch() {
    let pki = TestPki::new();
    let acceptor = TlsAcceptor::from(pki.mtls_server_config());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(tcp).await;
            });
        }
    });
    let proxy = slow_return_proxy(server_addr, Duration::from_millis(150)).await;
    let tx = SyslogTransport::new(
        target(
            "localhost",
            proxy.port(),
            SyslogProtocol::Tls,
            SyslogFraming::OctetCounting,
        ),
        &TlsOptions {
            ca_cert: Some(pki.ca_pem.clone()),
            ..TlsOptions::default()
        },
    )
    .unwrap();
    let err = tx.send(&msgs(&[b"rejected"])).await.unwrap_err();
    match err {
        TransportError::Tls(msg) => assert!(msg.contains("CertificateRequired"), "{msg}"),
        other => panic!("expected Tls, got {other:?}"),
    }
    server.abort();
}
