//! The destinations under test: their receivers, configuration and what each accepted.

use super::*;

/// The destination types, in the priority order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DestKind {
    Splunk,
    Sentinel,
    Syslog,
    LogScale,
    CefHttp,
    /// Splunk HEC behind TLS with a certificate from a private CA.
    Tls,
    /// CEF over syslog/TLS (octet counting) to the TCP receiver behind the same kind of TLS
    /// front as `Tls`.
    SyslogTls,
    /// CEF over syslog/UDP, one message per datagram.
    SyslogUdp,
    /// Splunk HEC with indexer acknowledgement (`useACK`): events leave the queue only once
    /// a poll reports their request indexed, and count as delivered only then.
    SplunkAck,
}

impl DestKind {
    pub const ALL: [DestKind; 9] = [
        DestKind::Splunk,
        DestKind::Sentinel,
        DestKind::Syslog,
        DestKind::LogScale,
        DestKind::CefHttp,
        DestKind::Tls,
        DestKind::SyslogTls,
        DestKind::SyslogUdp,
        DestKind::SplunkAck,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DestKind::Splunk => "splunk",
            DestKind::Sentinel => "sentinel",
            DestKind::Syslog => "syslog",
            DestKind::LogScale => "logscale",
            DestKind::CefHttp => "cef",
            DestKind::Tls => "tls",
            DestKind::SyslogTls => "syslog-tls",
            DestKind::SyslogUdp => "syslog-udp",
            DestKind::SplunkAck => "splunk-ack",
        }
    }

    /// Whether the fault schedule rotates this destination's credential.
    pub(crate) fn rotates_credential(self) -> bool {
        matches!(
            self,
            DestKind::Splunk | DestKind::Sentinel | DestKind::SplunkAck
        )
    }

    pub(crate) fn customer(self) -> String {
        format!("c-{}", self.name())
    }

    pub(crate) fn destination_id(self) -> String {
        format!("customer/{MSSP}/{}", self.customer())
    }

    /// Whether the protocol can refuse one event (so poison events make sense).
    pub(crate) fn can_reject(self) -> bool {
        !matches!(
            self,
            DestKind::Syslog | DestKind::SyslogTls | DestKind::SyslogUdp
        )
    }
}

pub(crate) enum Rx {
    Hec(HecReceiver),
    HecAck(HecAckReceiver),
    Sink(HttpSink),
    Syslog(SyslogTcpReceiver),
    SyslogUdp(SyslogUdpReceiver),
}

impl Rx {
    /// Events accepted, duplicates included.
    pub(crate) fn count(&self) -> usize {
        match self {
            Rx::Hec(r) => r.accepted_count(),
            Rx::HecAck(r) => r.accepted_count(),
            Rx::Sink(r) => r.accepted_count(),
            Rx::Syslog(r) => r.accepted_count(),
            Rx::SyslogUdp(r) => r.accepted_count(),
        }
    }

    pub(crate) fn ids(&self) -> Vec<String> {
        match self {
            Rx::Hec(r) => r.accepted(),
            Rx::HecAck(r) => r.accepted(),
            Rx::Sink(r) => r.accepted(),
            Rx::Syslog(r) => r.accepted(),
            Rx::SyslogUdp(r) => r.accepted(),
        }
    }

    /// The ids that count as delivered: accepted, or with indexer acks reported indexed
    /// (a request accepted and never confirmed may be in the index, a duplicate, but
    /// raxe must not have let it go).
    pub(crate) fn delivered_ids(&self) -> Vec<String> {
        match self {
            Rx::HecAck(r) => r.indexed(),
            _ => self.ids(),
        }
    }

    /// Events a `raxe serve` that ran from `since` to `until` may send again once
    /// restarted: with indexer acks, those it had not acked in its queue (see
    /// `HecAckReceiver::at_risk_between`); otherwise the batch in flight.
    pub(crate) fn at_risk_between(&self, since: Instant, until: Instant, batch: usize) -> usize {
        match self {
            Rx::HecAck(r) => r.at_risk_between(since, until),
            _ => batch,
        }
    }

    /// With indexer acks, events of requests accepted from `since` to `until` and never
    /// confirmed: the client sent them again (no answer in time, or given back).
    pub(crate) fn resent_between(&self, since: Instant, until: Instant) -> usize {
        match self {
            Rx::HecAck(r) => r.unconfirmed_between(since, until),
            _ => 0,
        }
    }

    pub(crate) fn requests(&self) -> u64 {
        match self {
            Rx::Hec(r) => r.requests(),
            Rx::HecAck(r) => r.requests(),
            Rx::Sink(r) => r.requests(),
            Rx::Syslog(r) => r.connections(),
            Rx::SyslogUdp(r) => r.datagrams(),
        }
    }

    pub(crate) fn auth_failures(&self) -> u64 {
        match self {
            Rx::Hec(r) => r.auth_failures(),
            Rx::HecAck(r) => r.auth_failures(),
            Rx::Sink(r) => r.auth_failures(),
            Rx::Syslog(_) | Rx::SyslogUdp(_) => 0,
        }
    }

    pub(crate) fn poison(&self, id: &str) {
        match self {
            Rx::Hec(r) => r.poison(id),
            Rx::HecAck(r) => r.poison(id),
            Rx::Sink(r) => r.poison(id),
            Rx::Syslog(_) | Rx::SyslogUdp(_) => {}
        }
    }

    pub(crate) fn set_token(&self, token: &str) {
        match self {
            Rx::Hec(r) => r.set_token(token),
            Rx::HecAck(r) => r.set_token(token),
            Rx::Sink(r) => r.set_token(token),
            Rx::Syslog(_) | Rx::SyslogUdp(_) => {}
        }
    }

    /// Applies a scripted fault; syslog over TCP maps hang/slow to a read stall; UDP has no
    /// way to push back, so it gets none.
    pub(crate) fn fault(&self, fault: Fault) {
        match self {
            Rx::Hec(r) => r.push_fault(fault),
            // Event requests and polls alike, except a slow answer to a poll: one that
            // came after the client's timeout would have confirmed ids (the receiver
            // forgets them) that the client never saw, a resend the duplicate bound cannot
            // see.
            Rx::HecAck(r) => {
                if !matches!(fault, Fault::Slow(_)) {
                    r.push_poll_fault(fault.clone());
                }
                r.push_fault(fault);
            }
            Rx::Sink(r) => r.push_fault(fault),
            Rx::Syslog(r) => match fault {
                Fault::Hang | Fault::Slow(_) => r.pause_for(Duration::from_millis(1000)),
                _ => {}
            },
            Rx::SyslogUdp(_) => {}
        }
    }
}

pub(crate) struct Dest {
    pub(crate) kind: DestKind,
    pub(crate) rx: Rx,
    pub(crate) url: String,
    pub(crate) tls: Option<TlsProxy>,
}

impl Dest {
    pub(crate) fn configure_args(
        &self,
        batch_size: usize,
        token: Option<&str>,
        ca_cert: Option<&Path>,
    ) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "customer".into(),
            "siem".into(),
            "configure".into(),
            self.kind.customer(),
            "--mssp".into(),
            MSSP.into(),
        ];
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
        match self.kind {
            DestKind::Splunk | DestKind::Tls => push(&[
                "--type",
                "splunk",
                "--url",
                &self.url,
                "--token",
                token.unwrap_or(TOKEN),
            ]),
            // Polls every second; an ack timeout no fault reaches (resends on timeout
            // would be duplicates no kill caused).
            DestKind::SplunkAck => push(&[
                "--type",
                "splunk",
                "--url",
                &self.url,
                "--token",
                token.unwrap_or(TOKEN),
                "--ack",
                "--ack-interval",
                "1",
                "--ack-timeout",
                "120",
            ]),
            DestKind::LogScale => push(&[
                "--type",
                "crowdstrike",
                "--url",
                &self.url,
                "--token",
                token.unwrap_or(TOKEN),
            ]),
            DestKind::Sentinel => push(&[
                "--type",
                "sentinel",
                "--api",
                "data-collector",
                "--url",
                &self.url,
                "--workspace-id",
                WORKSPACE,
                "--log-type",
                "RaxeHarness",
                "--token",
                token.unwrap_or(KEY),
            ]),
            DestKind::CefHttp => push(&[
                "--type",
                "cef",
                "--url",
                &self.url,
                "--token",
                token.unwrap_or(TOKEN),
            ]),
            DestKind::Syslog | DestKind::SyslogTls | DestKind::SyslogUdp => {
                let (transport, port) = match (&self.rx, &self.tls) {
                    (_, Some(proxy)) => ("tcp", proxy.addr.port()),
                    (Rx::SyslogUdp(r), None) => ("udp", r.port()),
                    (Rx::Syslog(r), None) => ("tcp", r.port()),
                    _ => unreachable!("syslog destinations have syslog receivers"),
                };
                let port = port.to_string();
                push(&[
                    "--type",
                    "cef",
                    "--url",
                    "syslog://127.0.0.1",
                    "--transport",
                    transport,
                    "--port",
                    &port,
                ]);
                if self.tls.is_some() {
                    push(&["--tls"]);
                }
            }
        }
        if let Some(ca) = ca_cert {
            push(&["--ca-cert", &ca.display().to_string()]);
        }
        let batch = batch_size.to_string();
        let timeout = TIMEOUT_SECS.to_string();
        push(&[
            "--batch-size",
            &batch,
            "--flush-interval",
            "0",
            "--retry-count",
            "3",
            "--timeout",
            &timeout,
        ]);
        a
    }
}

/// What each destination's duplicate bound adds up: the events at risk of a resend each
/// time a `raxe serve` forgot what it had in flight (a kill), and with indexer acks what
/// the last one sent again itself (requests it got no answer to in time, or gave back when
/// a poll was refused): those stay unconfirmed for good and are counted at the next kill
/// or after the drain.
pub(crate) struct AtRisk {
    /// When the running `raxe serve` started.
    life_started: Mutex<Instant>,
    /// Per destination, the events at risk so far.
    events: Mutex<Vec<usize>>,
    batch: usize,
}

impl AtRisk {
    pub(crate) fn new(dests: usize, started: Instant, batch: usize) -> AtRisk {
        AtRisk {
            life_started: Mutex::new(started),
            events: Mutex::new(vec![0; dests]),
            batch,
        }
    }

    /// Adds `count(dest, since)` for each destination, `since` being the running
    /// process's start.
    fn add(&self, dests: &[Dest], count: impl Fn(&Dest, Instant) -> usize) {
        let since = *self.life_started.lock().unwrap();
        let mut events = self.events.lock().unwrap();
        for (i, d) in dests.iter().enumerate() {
            events[i] += count(d, since);
        }
    }

    /// A `raxe serve` started at `at` after the last one was killed: what the killed one
    /// had in flight is at risk (counted now that its last requests have surely been
    /// handled, up to its successor's start).
    pub(crate) fn restarted(&self, dests: &[Dest], at: Instant) {
        self.add(dests, |d, since| {
            d.rx.at_risk_between(since, at, self.batch)
        });
        *self.life_started.lock().unwrap() = at;
    }

    /// All delivered and the running `raxe serve` not killed: only what it sent again
    /// itself.
    pub(crate) fn drained(&self, dests: &[Dest], at: Instant) {
        self.add(dests, |d, since| d.rx.resent_between(since, at));
    }

    pub(crate) fn events(&self, dest: usize) -> usize {
        self.events.lock().unwrap()[dest]
    }
}
