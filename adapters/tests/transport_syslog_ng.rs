//! SyslogTransport against a real syslog-ng daemon (UDP, TCP octet-counting, TCP newline,
//! TLS). The test starts `syslog-ng -F` itself with a generated configuration in a temp
//! directory and reads what the daemon wrote (one JSON object per message).
//!
//! Skipped, with a note on stderr, when `syslog-ng` is not installed (Debian/Ubuntu:
//! `apt-get install -y syslog-ng-core`).

mod common_tls;

use std::net::{TcpListener as StdTcpListener, UdpSocket as StdUdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use raxe_adapters::transport::{
    SyslogFraming, SyslogProtocol, SyslogTarget, SyslogTransport, TlsOptions,
};
use serde_json::Value;

use common_tls::TestPki;

fn find_syslog_ng() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join("syslog-ng"))
        .find(|p| p.is_file())
}

fn free_tcp_port() -> u16 {
    StdTcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    StdUdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills and reaps the daemon when the test ends, however it ends.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Ports {
    udp: u16,
    tcp: u16,
    newline: u16,
    tls: u16,
}

fn write_config(dir: &Path, ports: &Ports, pki: &TestPki) -> PathBuf {
    let template =
        r#"$(format-json host=${HOST} program=${PROGRAM} pid=${PID} msgid=${MSGID} msg=${MSG})\n"#;
    let d = dir.display();
    let config = format!(
        r#"@version: 3.38
options {{ use-dns(no); use-fqdn(no); keep-hostname(yes); chain-hostnames(no); stats-freq(0); log-msg-size(65536); }};
source s_udp {{ syslog(transport("udp") ip("127.0.0.1") port({udp})); }};
source s_tcp {{ syslog(transport("tcp") ip("127.0.0.1") port({tcp})); }};
source s_nl {{ network(transport("tcp") ip("127.0.0.1") port({nl}) flags(syslog-protocol)); }};
source s_tls {{ syslog(transport("tls") ip("127.0.0.1") port({tls})
    tls(key-file("{key}") cert-file("{cert}") peer-verify(optional-untrusted))); }};
destination d_udp {{ file("{d}/udp.log" template("{template}")); }};
destination d_tcp {{ file("{d}/tcp.log" template("{template}")); }};
destination d_nl {{ file("{d}/nl.log" template("{template}")); }};
destination d_tls {{ file("{d}/tls.log" template("{template}")); }};
log {{ source(s_udp); destination(d_udp); }};
log {{ source(s_tcp); destination(d_tcp); }};
log {{ source(s_nl); destination(d_nl); }};
log {{ source(s_tls); destination(d_tls); }};
"#,
        udp = ports.udp,
        tcp = ports.tcp,
        nl = ports.newline,
        tls = ports.tls,
        key = pki.server_key_pem.display(),
        cert = pki.server_cert_pem.display(),
    );
    let path = dir.join("syslog-ng.conf");
    std::fs::write(&path, config).unwrap();
    path
}

fn start_daemon(bin: &Path, dir: &Path, config: &Path) -> Daemon {
    let stderr = std::fs::File::create(dir.join("stderr.log")).unwrap();
    let child = Command::new(bin)
        .arg("-F")
        .arg("-e")
        .arg("--no-caps")
        .arg("-f")
        .arg(config)
        .arg("-R")
        .arg(dir.join("syslog-ng.persist"))
        .arg("-p")
        .arg(dir.join("syslog-ng.pid"))
        .arg("-c")
        .arg(dir.join("syslog-ng.ctl"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn syslog-ng");
    let mut daemon = Daemon(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
        if log.contains("syslog-ng starting up") {
            return daemon;
        }
        if let Ok(Some(status)) = daemon.0.try_wait() {
            panic!("syslog-ng exited ({status}) during startup:\n{log}");
        }
        assert!(Instant::now() < deadline, "syslog-ng did not start:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `file` holds `n` lines, then parses them as JSON.
async fn read_records(file: &Path, n: usize, dir: &Path) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() >= n {
            assert_eq!(lines.len(), n, "{}:\n{text}", file.display());
            return lines
                .iter()
                .map(|l| serde_json::from_str(l).expect("json line"))
                .collect();
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
            panic!(
                "{}: {} of {n} records after 10 s:\n{text}\nsyslog-ng stderr:\n{log}",
                file.display(),
                lines.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn rfc5424(msgid: &str, msg: &str) -> Bytes {
    Bytes::from(format!(
        "<134>1 2025-07-01T12:00:00.123Z scanner01.example.com vulnscan 4242 {msgid} - {msg}"
    ))
}

fn target(port: u16, protocol: SyslogProtocol, framing: SyslogFraming) -> SyslogTarget {
    SyslogTarget {
        host: "127.0.0.1".into(),
        port,
        protocol,
        framing,
        max_datagram: 480,
        timeout: Duration::from_secs(3),
    }
}

fn check(records: &[Value], expected: &[(&str, &str)]) {
    for (record, (msgid, msg)) in records.iter().zip(expected) {
        assert_eq!(record["host"], "scanner01.example.com", "{record}");
        assert_eq!(record["program"], "vulnscan", "{record}");
        assert_eq!(record["pid"], "4242", "{record}");
        assert_eq!(record["msgid"], *msgid, "{record}");
        assert_eq!(record["msg"], *msg, "{record}");
    }
}

#[tokio::test]
async fn real_syslog_ng_receives_every_transport() {
    let Some(bin) = find_syslog_ng() else {
        eprintln!(
            "SKIPPED real_syslog_ng_receives_every_transport: syslog-ng not found on PATH \
             (apt-get install -y syslog-ng-core)"
        );
        return;
    };
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports {
        udp: free_udp_port(),
        tcp: free_tcp_port(),
        newline: free_tcp_port(),
        tls: free_tcp_port(),
    };
    let config = write_config(dir.path(), &ports, &pki);
    let _daemon = start_daemon(&bin, dir.path(), &config);

    // UDP: one datagram per message; a long one is truncated to 480 bytes on a char
    // boundary.
    // Header "<134>1 ... U2 - " is 73 bytes, so 407 bytes of MSG fit in 480: the cut falls
    // inside the first "€" (bytes 405..408 of MSG) and must happen before it.
    let long_msg = format!("{}€€€", "x".repeat(405));
    let udp = SyslogTransport::new(
        target(ports.udp, SyslogProtocol::Udp, SyslogFraming::OctetCounting),
        &TlsOptions::default(),
    )
    .unwrap();
    udp.send(&[rfc5424("U1", "over udp"), rfc5424("U2", &long_msg)])
        .await
        .unwrap();

    // TCP, octet counting: an embedded LF survives.
    let tcp = SyslogTransport::new(
        target(ports.tcp, SyslogProtocol::Tcp, SyslogFraming::OctetCounting),
        &TlsOptions::default(),
    )
    .unwrap();
    tcp.send(&[rfc5424("T1", "first"), rfc5424("T2", "two\nlines")])
        .await
        .unwrap();
    tcp.send(&[rfc5424("T3", "ünïcødé ✓")]).await.unwrap();

    // TCP, newline framing: the LF becomes a space.
    let nl = SyslogTransport::new(
        target(ports.newline, SyslogProtocol::Tcp, SyslogFraming::Newline),
        &TlsOptions::default(),
    )
    .unwrap();
    nl.send(&[rfc5424("N1", "first"), rfc5424("N2", "two\nlines")])
        .await
        .unwrap();

    // TLS (RFC 5425), verifying the daemon's certificate against the test CA.
    let mut tls_target = target(ports.tls, SyslogProtocol::Tls, SyslogFraming::OctetCounting);
    tls_target.host = "localhost".into();
    let tls = SyslogTransport::new(
        tls_target,
        &TlsOptions {
            ca_cert: Some(pki.ca_pem.clone()),
            ..TlsOptions::default()
        },
    )
    .unwrap();
    tls.send(&[rfc5424("S1", "over tls"), rfc5424("S2", "two\nlines")])
        .await
        .unwrap();
    tls.close().await;

    let d = dir.path();
    let udp_records = read_records(&d.join("udp.log"), 2, d).await;
    assert_eq!(rfc5424("U2", "").len(), 73);
    let truncated = "x".repeat(405);
    check(&udp_records, &[("U1", "over udp"), ("U2", &truncated)]);

    let tcp_records = read_records(&d.join("tcp.log"), 3, d).await;
    check(
        &tcp_records,
        &[("T1", "first"), ("T2", "two\nlines"), ("T3", "ünïcødé ✓")],
    );

    let nl_records = read_records(&d.join("nl.log"), 2, d).await;
    check(&nl_records, &[("N1", "first"), ("N2", "two lines")]);

    let tls_records = read_records(&d.join("tls.log"), 2, d).await;
    check(&tls_records, &[("S1", "over tls"), ("S2", "two\nlines")]);
}
