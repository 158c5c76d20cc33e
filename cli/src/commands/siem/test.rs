//! `siem test`: delivers one marked test event and tells connection, authentication and
//! acceptance apart, with a hint for each failure.

use std::time::Instant;

use anyhow::Result;
use raxe_adapters::config::{CefMode, SentinelApi, SiemConfig};
use raxe_adapters::event::ScanEvent;
use raxe_adapters::outcome::Outcome;
use raxe_adapters::request::{Response, TransportError};
use raxe_adapters::transport::SyslogProtocol;
use serde_json::json;

use super::existing;
use crate::config_store::{ConfigStore, Scope};

pub(super) async fn test(configs: &ConfigStore, scope: &Scope) -> Result<i32> {
    let record = existing(configs, scope)?;
    let mut event = ScanEvent::new(match scope {
        Scope::Customer { customer_id, .. } => customer_id.clone(),
        Scope::Global { name } => format!("global:{name}"),
    });
    event.event_type = "test".into();
    event.event_id = format!("raxe-test-{}", event.event_id);
    if let Scope::Customer { mssp_id, .. } = scope {
        event.mssp_id = Some(mssp_id.clone());
    }
    event.extra.insert("raxe_test".into(), json!(true));
    event.extra.insert(
        "message".into(),
        json!("RAXE SIEM connectivity test event: safe to ignore"),
    );
    if record.config.sentinel_api() == Some(SentinelApi::LogsIngestion) {
        return test_logs_ingestion(&record.config, &event).await;
    }
    let adapter = raxe_adapters::create_siem_adapter(record.config.clone())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let batch = adapter.encode(std::slice::from_ref(&event));
    let Some(request) = batch.requests.first() else {
        println!("✗ The test event cannot be encoded for this destination");
        return Ok(1);
    };
    let started = Instant::now();
    let answer = adapter.send(request).await;
    let outcome = adapter.classify(request, &answer);
    let elapsed = started.elapsed();
    let (connected, detail) = match &answer {
        Ok(Response::Http(r)) => (format!("HTTP {}", r.status.as_u16()), excerpt(&r.body)),
        Ok(Response::SyslogWritten) => return Ok(syslog_written(&record.config, &event)),
        Err(e) => {
            println!("✗ Connection failed: {e}");
            println!("  hint: {}", connection_hint(e, &record.config));
            return Ok(1);
        }
    };
    println!(
        "✓ Connection successful ({connected}, {} ms)",
        elapsed.as_millis()
    );
    // An outcome's reason starts with the status and quotes the body: said once each.
    let reason_of = |reason: &str| {
        let reason = reason
            .strip_prefix(&format!("{connected}: "))
            .unwrap_or(reason)
            .to_string();
        if detail.is_empty() || reason.contains(detail.trim_end_matches('…')) {
            (reason, String::new())
        } else {
            (reason, detail.clone())
        }
    };
    match outcome {
        Outcome::Delivered => {
            println!("✓ Authentication valid");
            println!("✓ Test event delivered (event_id {})", event.event_id);
            Ok(0)
        }
        Outcome::AuthFailed { reason } => {
            let (reason, detail) = reason_of(&reason);
            println!("✗ Authentication failed ({connected}): {reason}");
            print_body(&detail);
            println!("  hint: check the token (--token, --token-file or --token-env) and that it is enabled");
            Ok(1)
        }
        Outcome::Misconfigured { reason } => {
            let (reason, detail) = reason_of(&reason);
            println!("✓ Authentication valid");
            println!("✗ Test event not accepted ({connected}): {reason}");
            print_body(&detail);
            println!("  hint: check the URL path (Splunk: /services/collector/event, LogScale: /api/v1/ingest/hec) and the per-type options");
            Ok(1)
        }
        Outcome::Retry { reason, .. } => {
            let (reason, detail) = reason_of(&reason);
            let said = if reason.starts_with("HTTP ") {
                reason
            } else {
                format!("{connected}: {reason}")
            };
            println!("? Authentication not confirmed: the SIEM is busy or failing ({said})");
            print_body(&detail);
            println!("  hint: try again later; events stay queued and are retried");
            Ok(1)
        }
        Outcome::Rejected { reason, .. } | Outcome::TooLarge { reason } => {
            let (reason, detail) = reason_of(&reason);
            println!("✓ Authentication valid");
            println!("✗ Test event rejected ({connected}): {reason}");
            print_body(&detail);
            Ok(1)
        }
    }
}

/// Syslog has no authentication and no receipt: say what was done, and no more. Over UDP
/// not even a listener is known.
fn syslog_written(config: &SiemConfig, event: &ScanEvent) -> i32 {
    match config.cef_mode() {
        Ok(CefMode::Syslog(SyslogProtocol::Udp)) => {
            println!("✓ Test event sent over UDP (event_id {})", event.event_id);
            println!("  note: UDP confirms nothing, not even that anything listens: check that the event arrived in the SIEM");
        }
        _ => {
            println!("✓ Connection successful (syslog)");
            println!("✓ Test event written (event_id {})", event.event_id);
            println!("  note: syslog has no authentication and no receipt: check that the event arrived in the SIEM");
        }
    }
    0
}

/// Sentinel Logs Ingestion: token, empty array, test event, one line per step.
async fn test_logs_ingestion(config: &SiemConfig, event: &ScanEvent) -> Result<i32> {
    let adapter = raxe_adapters::sentinel_ingestion::LogsIngestionAdapter::new(config.clone())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let steps = adapter.connection_test(event).await;
    for s in &steps {
        println!("{} {}", if s.ok { "✓" } else { "✗" }, s.line);
    }
    Ok(if steps.iter().all(|s| s.ok) { 0 } else { 1 })
}

fn connection_hint(error: &TransportError, config: &SiemConfig) -> &'static str {
    match error {
        // rustls reading a plain-HTTP answer as a TLS record.
        TransportError::Tls(why) if why.contains("InvalidContentType") || why.contains("corrupt message") => {
            "the server does not speak TLS on this port: use an http:// URL, or the port that serves https"
        }
        TransportError::Tls(_) if config.tls.ca_cert.is_none() => {
            "the server's certificate is not trusted: pass its CA with --ca-cert (or fix the certificate)"
        }
        TransportError::Tls(_) => "check the certificate files and that the server's name matches its certificate",
        TransportError::Timeout(_) => "the SIEM did not answer in time: check the URL, a proxy or firewall, or raise --timeout",
        TransportError::Connect(_) => "nothing accepted the connection: check the host, the port and the firewall",
        TransportError::Io(_) => "the connection broke: check for a proxy or a TLS/plain-HTTP mismatch in the URL",
    }
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut cut: String = text.chars().take(300).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut
}

fn print_body(body: &str) {
    if !body.is_empty() {
        println!("  server said: {body}");
    }
}
