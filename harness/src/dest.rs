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
}

impl DestKind {
    pub const ALL: [DestKind; 6] = [
        DestKind::Splunk,
        DestKind::Sentinel,
        DestKind::Syslog,
        DestKind::LogScale,
        DestKind::CefHttp,
        DestKind::Tls,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DestKind::Splunk => "splunk",
            DestKind::Sentinel => "sentinel",
            DestKind::Syslog => "syslog",
            DestKind::LogScale => "logscale",
            DestKind::CefHttp => "cef",
            DestKind::Tls => "tls",
        }
    }

    pub(crate) fn customer(self) -> String {
        format!("c-{}", self.name())
    }

    pub(crate) fn destination_id(self) -> String {
        format!("customer/{MSSP}/{}", self.customer())
    }

    /// Whether the protocol can refuse one event (so poison events make sense).
    pub(crate) fn can_reject(self) -> bool {
        self != DestKind::Syslog
    }
}

pub(crate) enum Rx {
    Hec(HecReceiver),
    Sink(HttpSink),
    Syslog(SyslogTcpReceiver),
}

impl Rx {
    pub(crate) fn count(&self) -> usize {
        match self {
            Rx::Hec(r) => r.accepted_count(),
            Rx::Sink(r) => r.accepted_count(),
            Rx::Syslog(r) => r.accepted_count(),
        }
    }

    pub(crate) fn ids(&self) -> Vec<String> {
        match self {
            Rx::Hec(r) => r.accepted(),
            Rx::Sink(r) => r.accepted(),
            Rx::Syslog(r) => r.accepted(),
        }
    }

    pub(crate) fn requests(&self) -> u64 {
        match self {
            Rx::Hec(r) => r.requests(),
            Rx::Sink(r) => r.requests(),
            Rx::Syslog(r) => r.connections(),
        }
    }

    pub(crate) fn auth_failures(&self) -> u64 {
        match self {
            Rx::Hec(r) => r.auth_failures(),
            Rx::Sink(r) => r.auth_failures(),
            Rx::Syslog(_) => 0,
        }
    }

    pub(crate) fn poison(&self, id: &str) {
        match self {
            Rx::Hec(r) => r.poison(id),
            Rx::Sink(r) => r.poison(id),
            Rx::Syslog(_) => {}
        }
    }

    pub(crate) fn set_token(&self, token: &str) {
        match self {
            Rx::Hec(r) => r.set_token(token),
            Rx::Sink(r) => r.set_token(token),
            Rx::Syslog(_) => {}
        }
    }

    /// Applies a scripted fault; syslog maps hang/slow to a read stall.
    pub(crate) fn fault(&self, fault: Fault) {
        match self {
            Rx::Hec(r) => r.push_fault(fault),
            Rx::Sink(r) => r.push_fault(fault),
            Rx::Syslog(r) => match fault {
                Fault::Hang | Fault::Slow(_) => r.pause_for(Duration::from_millis(1000)),
                _ => {}
            },
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
            DestKind::Syslog => {
                let Rx::Syslog(r) = &self.rx else {
                    unreachable!()
                };
                let port = r.port().to_string();
                push(&[
                    "--type",
                    "cef",
                    "--url",
                    "syslog://127.0.0.1",
                    "--transport",
                    "tcp",
                    "--port",
                    &port,
                ])
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
