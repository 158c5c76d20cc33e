//! `create_siem_adapter`: the right adapter and transport for a configuration.

use crate::adapter::SiemAdapter;
use crate::arcsight::ArcsightAdapter;
use crate::cef::CefAdapter;
use crate::config::{ConfigError, SiemConfig, SiemType};
use crate::sentinel::SentinelAdapter;
use crate::sentinel_ingestion::LogsIngestionAdapter;
use crate::splunk::HecAdapter;

/// Validates `config` and builds its adapter (with its HTTP or syslog transport; no
/// connection is opened yet). `tls.insecure_skip_verify` logs a warning.
pub fn create_siem_adapter(config: SiemConfig) -> Result<Box<dyn SiemAdapter>, ConfigError> {
    config.validate()?;
    if config.tls.insecure_skip_verify {
        tracing::warn!(
            siem_type = %config.siem_type,
            "TLS certificate verification is DISABLED for this destination (insecure_skip_verify)"
        );
    }
    Ok(match config.siem_type {
        SiemType::Splunk | SiemType::Crowdstrike => Box::new(HecAdapter::new(config)?),
        SiemType::Sentinel
            if config.sentinel_api() == Some(crate::config::SentinelApi::LogsIngestion) =>
        {
            Box::new(LogsIngestionAdapter::new(config)?)
        }
        SiemType::Sentinel => Box::new(SentinelAdapter::new(config)?),
        SiemType::Arcsight => Box::new(ArcsightAdapter::new(config)?),
        SiemType::Cef => Box::new(CefAdapter::new(config)?),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Level, Metadata, Subscriber};

    use super::*;
    use crate::config::{CefOptions, SiemOptions};

    /// Collects WARN messages.
    struct Warnings(Arc<Mutex<Vec<String>>>);

    struct Message(String);
    impl Visit for Message {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                self.0 = format!("{value:?}");
            }
        }
    }

    impl Subscriber for Warnings {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            if *event.metadata().level() == Level::WARN {
                let mut m = Message(String::new());
                event.record(&mut m);
                self.0.lock().unwrap().push(m.0);
            }
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    fn warnings_while(f: impl FnOnce()) -> Vec<String> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        tracing::subscriber::with_default(Warnings(seen.clone()), f);
        let out = seen.lock().unwrap().clone();
        out
    }

    #[test]
    fn builds_every_type() {
        let configs = [
            SiemConfig::splunk("https://h:8088", "t").unwrap(),
            SiemConfig::crowdstrike("https://h", "t").unwrap(),
            SiemConfig::sentinel("https://h", "ws", "Raxe", "AAAA").unwrap(),
            SiemConfig::sentinel_logs_ingestion(
                "https://h",
                "t",
                "c",
                "dcr-00112233445566778899aabbccddeeff",
                "Custom-X_CL",
                "s",
            )
            .unwrap(),
            SiemConfig::arcsight("https://h", "c", "t").unwrap(),
            SiemConfig::cef("https://h", "", CefOptions::default()).unwrap(),
            SiemConfig::cef("syslog://h", "", CefOptions::default()).unwrap(),
        ];
        for c in configs {
            let t = c.siem_type;
            let a = create_siem_adapter(c).unwrap();
            assert_eq!(a.config().siem_type, t);
        }
        let mut bad = SiemConfig::splunk("https://h", "t").unwrap();
        bad.extra = SiemOptions::default_for(SiemType::Cef);
        assert!(create_siem_adapter(bad).is_err());
    }

    #[test]
    fn insecure_mode_warns_on_construction() {
        let mut c = SiemConfig::splunk("https://h:8088", "t").unwrap();
        assert!(warnings_while(|| {
            create_siem_adapter(c.clone()).unwrap();
        })
        .iter()
        .all(|w| !w.contains("DISABLED")));
        c.tls.insecure_skip_verify = true;
        let warnings = warnings_while(|| {
            create_siem_adapter(c).unwrap();
        });
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("verification is DISABLED")),
            "{warnings:?}"
        );
    }
}
