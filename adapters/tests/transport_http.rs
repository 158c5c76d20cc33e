//! HttpTransport against real hyper servers (plain and TLS) on 127.0.0.1.

mod common_tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use raxe_adapters::request::{HttpRequest, TransportError};
use raxe_adapters::transport::{HttpTransport, TlsOptions, TransportSetupError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use common_tls::TestPki;

const TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug)]
struct Captured {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

struct TestServer {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: mpsc::UnboundedReceiver<Captured>,
}

type Responder = fn(&Captured) -> http::Response<Full<Bytes>>;

fn ok_responder(_: &Captured) -> http::Response<Full<Bytes>> {
    http::Response::builder()
        .status(StatusCode::OK)
        .header("x-test", "yes")
        .body(Full::new(Bytes::from_static(
            br#"{"text":"Success","code":0}"#,
        )))
        .unwrap()
}

/// A hyper HTTP/1 server (TLS if `tls` is set) that records every request.
async fn start_server(tls: Option<TlsAcceptor>, respond: Responder) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let (tx, requests) = mpsc::unbounded_channel();
    let counter = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let tx = tx.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|c| c.to_bytes())
                            .unwrap_or_default();
                        let captured = Captured {
                            method: parts.method,
                            uri: parts.uri,
                            headers: parts.headers,
                            body,
                        };
                        let resp = respond(&captured);
                        let _ = tx.send(captured);
                        Ok::<_, Infallible>(resp)
                    }
                });
                let builder = hyper::server::conn::http1::Builder::new();
                match tls {
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                    }
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                }
            });
        }
    });
    TestServer {
        addr,
        connections,
        requests,
    }
}

fn request(uri: &str, body: &'static [u8]) -> HttpRequest {
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_static("Splunk 00000000-secret-token"),
    );
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("x-custom", HeaderValue::from_static("abc"));
    HttpRequest {
        method: Method::POST,
        uri: uri.parse().unwrap(),
        headers,
        body: Bytes::from_static(body),
        uncompressed_len: body.len(),
    }
}

fn plain() -> HttpTransport {
    HttpTransport::new(&TlsOptions::default(), TIMEOUT).unwrap()
}

/// Reads one HTTP/1 request (head + Content-Length body) from a raw socket.
async fn read_raw_request(stream: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.unwrap();
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..pos]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            if buf.len() >= pos + 4 + len {
                return;
            }
        }
    }
}

#[tokio::test]
async fn post_delivers_exact_request_and_returns_response() {
    let mut server = start_server(None, ok_responder).await;
    let t = plain();
    let body: &'static [u8] = b"{\"event\":\"a\"}\n{\"event\":\"\xc3\xbc\"}";
    let uri = format!(
        "http://{}/services/collector/event?channel=abc&x=1",
        server.addr
    );
    let resp = t.send(&request(&uri, body)).await.unwrap();

    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.headers.get("x-test").unwrap(), "yes");
    assert_eq!(&resp.body[..], br#"{"text":"Success","code":0}"#);

    let got = server.requests.recv().await.unwrap();
    assert_eq!(got.method, Method::POST);
    assert_eq!(
        got.uri.path_and_query().unwrap().as_str(),
        "/services/collector/event?channel=abc&x=1"
    );
    assert_eq!(
        got.headers.get("authorization").unwrap(),
        "Splunk 00000000-secret-token"
    );
    assert_eq!(got.headers.get("content-type").unwrap(), "application/json");
    assert_eq!(got.headers.get("x-custom").unwrap(), "abc");
    assert_eq!(
        got.headers.get("content-length").unwrap(),
        &body.len().to_string()
    );
    assert!(got.headers.get("transfer-encoding").is_none());
    assert_eq!(&got.body[..], body);
}

#[tokio::test]
async fn connections_are_reused() {
    let mut server = start_server(None, ok_responder).await;
    let t = plain();
    let uri = format!("http://{}/ingest", server.addr);
    for i in 0..10 {
        let resp = t.send(&request(&uri, b"x")).await.unwrap();
        assert_eq!(resp.status, StatusCode::OK, "request {i}");
    }
    // A clone shares the pool.
    let clone = t.clone();
    clone.send(&request(&uri, b"y")).await.unwrap();
    for _ in 0..11 {
        server.requests.recv().await.unwrap();
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn non_2xx_status_is_a_response_not_an_error() {
    fn unavailable(_: &Captured) -> http::Response<Full<Bytes>> {
        http::Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .header("retry-after", "7")
            .body(Full::new(Bytes::from_static(b"busy")))
            .unwrap()
    }
    let server = start_server(None, unavailable).await;
    let resp = plain()
        .send(&request(&format!("http://{}/", server.addr), b"x"))
        .await
        .unwrap();
    assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers.get("retry-after").unwrap(), "7");
    assert_eq!(&resp.body[..], b"busy");
}

#[tokio::test]
async fn server_that_never_answers_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = listener.accept().await {
            read_raw_request(&mut s).await;
            held.push(s); // never answer, never close
        }
    });
    let timeout = Duration::from_millis(300);
    let t = HttpTransport::new(&TlsOptions::default(), timeout).unwrap();
    let start = Instant::now();
    let err = t
        .send(&request(&format!("http://{addr}/"), b"x"))
        .await
        .unwrap_err();
    let elapsed = start.elapsed();
    assert!(
        matches!(err, TransportError::Timeout(d) if d == timeout),
        "{err:?}"
    );
    assert!(elapsed >= timeout, "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
}

#[tokio::test]
async fn slow_body_times_out_too() {
    // Head arrives at once, the body never completes: the deadline covers the body.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = listener.accept().await {
            read_raw_request(&mut s).await;
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
                .await
                .unwrap();
            held.push(s);
        }
    });
    let timeout = Duration::from_millis(300);
    let t = HttpTransport::new(&TlsOptions::default(), timeout).unwrap();
    let start = Instant::now();
    let err = t
        .send(&request(&format!("http://{addr}/"), b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Timeout(_)), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn connection_refused_is_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = plain()
        .send(&request(&format!("http://{addr}/"), b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Connect(_)), "{err:?}");
}

#[tokio::test]
async fn large_response_body_is_capped_at_64k() {
    fn big(c: &Captured) -> http::Response<Full<Bytes>> {
        // The request body says how large the response is.
        let n: usize = std::str::from_utf8(&c.body).unwrap().parse().unwrap();
        let body: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        http::Response::new(Full::new(Bytes::from(body)))
    }
    let mut server = start_server(None, big).await;
    let t = plain();
    let uri = format!("http://{}/", server.addr);

    // 200 KiB: kept 64 KiB, the rest drained, connection reused.
    let start = Instant::now();
    let resp = t.send(&request(&uri, b"204800")).await.unwrap();
    assert_eq!(resp.body.len(), 64 * 1024);
    let expected: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    assert_eq!(&resp.body[..], &expected[..]);
    let resp = t.send(&request(&uri, b"10")).await.unwrap();
    assert_eq!(resp.body.len(), 10);
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);

    // 8 MiB: kept 64 KiB, the connection is dropped rather than drained; no hang.
    let resp = t.send(&request(&uri, b"8388608")).await.unwrap();
    assert_eq!(resp.body.len(), 64 * 1024);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    for _ in 0..3 {
        server.requests.recv().await.unwrap();
    }
}

async fn broken_body_server(rst: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            read_raw_request(&mut s).await;
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789")
                .await
                .unwrap();
            s.flush().await.unwrap();
            if rst {
                // SO_LINGER 0: dropping the socket sends RST instead of FIN.
                s.set_zero_linger().unwrap();
            }
            drop(s);
        }
    });
    addr
}

#[tokio::test]
async fn connection_reset_mid_body_is_retryable_error() {
    let addr = broken_body_server(true).await;
    let err = plain()
        .send(&request(&format!("http://{addr}/"), b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Io(_)), "{err:?}");
}

#[tokio::test]
async fn connection_closed_mid_body_is_retryable_error() {
    let addr = broken_body_server(false).await;
    let err = plain()
        .send(&request(&format!("http://{addr}/"), b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Io(_)), "{err:?}");
}

#[tokio::test]
async fn errors_never_contain_header_values() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = plain()
        .send(&request(&format!("http://{addr}/"), b"x"))
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("secret-token"));
}

// ---------------------------------------------------------------- HTTPS

fn tls_opts(pki: &TestPki) -> TlsOptions {
    TlsOptions {
        ca_cert: Some(pki.ca_pem.clone()),
        ..TlsOptions::default()
    }
}

#[tokio::test]
async fn https_with_private_ca_succeeds() {
    let pki = TestPki::new();
    let mut server = start_server(Some(TlsAcceptor::from(pki.server_config())), ok_responder).await;
    let t = HttpTransport::new(&tls_opts(&pki), TIMEOUT).unwrap();
    let port = server.addr.port();
    for host in ["127.0.0.1", "localhost"] {
        let uri = format!("https://{host}:{port}/services/collector?x=y");
        let resp = t.send(&request(&uri, b"hello tls")).await.unwrap();
        assert_eq!(resp.status, StatusCode::OK);
        let got = server.requests.recv().await.unwrap();
        assert_eq!(
            got.uri.path_and_query().unwrap().as_str(),
            "/services/collector?x=y"
        );
        assert_eq!(&got.body[..], b"hello tls");
    }
}

#[tokio::test]
async fn https_without_ca_fails_with_certificate_error() {
    let pki = TestPki::new();
    let server = start_server(Some(TlsAcceptor::from(pki.server_config())), ok_responder).await;
    let t = HttpTransport::new(&TlsOptions::default(), TIMEOUT).unwrap();
    let err = t
        .send(&request(
            &format!("https://127.0.0.1:{}/", server.addr.port()),
            b"x",
        ))
        .await
        .unwrap_err();
    match &err {
        TransportError::Tls(msg) => assert!(
            msg.contains("certificate") && msg.contains("UnknownIssuer"),
            "{msg}"
        ),
        other => panic!("expected Tls, got {other:?}"),
    }
}

#[tokio::test]
async fn https_insecure_skip_verify_succeeds() {
    let pki = TestPki::new();
    let server = start_server(Some(TlsAcceptor::from(pki.server_config())), ok_responder).await;
    let opts = TlsOptions {
        insecure_skip_verify: true,
        ..TlsOptions::default()
    };
    let t = HttpTransport::new(&opts, TIMEOUT).unwrap();
    let resp = t
        .send(&request(
            &format!("https://127.0.0.1:{}/", server.addr.port()),
            b"x",
        ))
        .await
        .unwrap();
    assert_eq!(resp.status, StatusCode::OK);
}

#[tokio::test]
async fn https_mutual_tls() {
    let pki = TestPki::new();
    let mut server = start_server(
        Some(TlsAcceptor::from(pki.mtls_server_config())),
        ok_responder,
    )
    .await;
    let uri = format!("https://localhost:{}/mtls", server.addr.port());

    let with_cert = TlsOptions {
        ca_cert: Some(pki.ca_pem.clone()),
        client_cert: Some(pki.client_cert_pem.clone()),
        client_key: Some(pki.client_key_pem.clone()),
        insecure_skip_verify: false,
    };
    let t = HttpTransport::new(&with_cert, TIMEOUT).unwrap();
    let resp = t.send(&request(&uri, b"mtls body")).await.unwrap();
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(
        &server.requests.recv().await.unwrap().body[..],
        b"mtls body"
    );

    let without = HttpTransport::new(&tls_opts(&pki), TIMEOUT).unwrap();
    let err = without.send(&request(&uri, b"x")).await.unwrap_err();
    assert!(
        matches!(err, TransportError::Tls(_) | TransportError::Io(_)),
        "expected a prompt TLS failure, got {err:?}"
    );
}

// ---------------------------------------------------------------- setup errors

#[test]
fn setup_errors_are_clear() {
    let pki = TestPki::new();
    let missing = pki.dir.path().join("nope.pem");
    let err = HttpTransport::new(
        &TlsOptions {
            ca_cert: Some(missing.clone()),
            ..TlsOptions::default()
        },
        TIMEOUT,
    )
    .unwrap_err();
    assert!(
        matches!(err, TransportSetupError::CaCertRead { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("nope.pem"), "{err}");

    let empty = pki.dir.path().join("empty.pem");
    std::fs::write(&empty, "not a pem file\n").unwrap();
    let err = HttpTransport::new(
        &TlsOptions {
            ca_cert: Some(empty.clone()),
            ..TlsOptions::default()
        },
        TIMEOUT,
    )
    .unwrap_err();
    assert!(
        matches!(err, TransportSetupError::NoCaCertificates { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("empty.pem"), "{err}");

    let err = HttpTransport::new(
        &TlsOptions {
            client_cert: Some(pki.client_cert_pem.clone()),
            ..TlsOptions::default()
        },
        TIMEOUT,
    )
    .unwrap_err();
    assert!(
        matches!(err, TransportSetupError::ClientCertWithoutKey),
        "{err:?}"
    );

    let err = HttpTransport::new(
        &TlsOptions {
            client_key: Some(pki.client_key_pem.clone()),
            ..TlsOptions::default()
        },
        TIMEOUT,
    )
    .unwrap_err();
    assert!(
        matches!(err, TransportSetupError::ClientKeyWithoutCert),
        "{err:?}"
    );

    // A certificate file given as the key.
    let err = HttpTransport::new(
        &TlsOptions {
            client_cert: Some(pki.client_cert_pem.clone()),
            client_key: Some(pki.client_cert_pem.clone()),
            ..TlsOptions::default()
        },
        TIMEOUT,
    )
    .unwrap_err();
    assert!(
        matches!(err, TransportSetupError::ClientKeyRead { .. }),
        "{err:?}"
    );

    // A key that does not match the certificate.
    let err = HttpTransport::new(
        &TlsOptions {
            client_cert: Some(pki.client_cert_pem.clone()),
            client_key: Some(pki.server_key_pem.clone()),
            ..TlsOptions::default()
        },
        TIMEOUT,
    )
    .unwrap_err();
    assert!(
        matches!(err, TransportSetupError::InvalidClientAuth(_)),
        "{err:?}"
    );

    // Building does not need a runtime and accepts a valid mTLS configuration.
    HttpTransport::new(
        &TlsOptions {
            ca_cert: Some(pki.ca_pem.clone()),
            client_cert: Some(pki.client_cert_pem.clone()),
            client_key: Some(pki.client_key_pem.clone()),
            insecure_skip_verify: false,
        },
        TIMEOUT,
    )
    .unwrap();
}

#[test]
fn transport_and_its_futures_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    fn assert_send<T: Send>(_: &T) {}
    assert_send_sync::<HttpTransport>();
    let t = plain();
    let req = request("http://127.0.0.1:1/", b"x");
    let fut = t.send(&req);
    assert_send(&fut);
}
