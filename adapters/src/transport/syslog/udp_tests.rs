//! UDP over hosts with several addresses: an address that cannot be used is skipped, and a
//! receiver that refuses datagrams (ICMP port unreachable) sends the next socket to the
//! host's next address. Real sockets on 127.0.0.1; the host's addresses come from the test
//! hook instead of DNS (here `localhost` resolves to one address only).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UdpSocket;

use super::{Kind, SyslogTransport};
use crate::transport::{SyslogFraming, SyslogProtocol, SyslogTarget, TlsOptions};

fn transport(addrs: Vec<SocketAddr>) -> SyslogTransport {
    let t = SyslogTransport::new(
        SyslogTarget {
            host: "127.0.0.1".into(),
            port: addrs[0].port(),
            protocol: SyslogProtocol::Udp,
            framing: SyslogFraming::OctetCounting,
            max_datagram: 2048,
            timeout: Duration::from_secs(2),
        },
        &TlsOptions::default(),
    )
    .unwrap();
    match &t.kind {
        Kind::Udp { socket, .. } => socket.try_lock().unwrap().resolved = Some(addrs),
        Kind::Stream { .. } => unreachable!("a UDP target"),
    }
    t
}

/// A port nothing listens on: bound, then closed.
async fn closed_port() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.local_addr().unwrap()
}

async fn received(receiver: &UdpSocket) -> Vec<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(200), receiver.recv(&mut buf)).await
    {
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    got
}

#[tokio::test]
async fn an_address_that_cannot_be_connected_to_is_skipped() {
    let receiver = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // Connecting a UDP socket to the broadcast address without SO_BROADCAST is refused.
    let broadcast: SocketAddr = "255.255.255.255:514".parse().unwrap();
    let t = transport(vec![broadcast, receiver.local_addr().unwrap()]);
    t.send(&[Bytes::from_static(b"one"), Bytes::from_static(b"two")])
        .await
        .unwrap();
    assert_eq!(received(&receiver).await, ["one", "two"]);
}

#[tokio::test]
async fn a_refusing_address_sends_the_next_socket_to_the_next_address() {
    let receiver = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let t = transport(vec![closed_port().await, receiver.local_addr().unwrap()]);
    // The first datagrams go to the closed port; its ICMP answer fails a later send, and
    // the socket after that goes to the receiver.
    let mut failed = 0;
    for i in 0..10 {
        let message = Bytes::from(format!("batch-{i}"));
        if t.send(&[message]).await.is_err() {
            failed += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = received(&receiver).await;
    assert!(failed >= 1, "the closed port never refused");
    assert!(
        got.len() >= 10 - 2 * failed && got.last().map(String::as_str) == Some("batch-9"),
        "{failed} failed sends, received {got:?}"
    );
}
