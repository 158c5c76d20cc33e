//! Shared set-up for the engine integration tests.
#![allow(dead_code)]

pub mod hooked_store;

use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use raxe_adapters::config::SiemConfig;
use raxe_adapters::event::ScanEvent;
use raxe_engine::{
    AuditLog, BackoffPolicy, CustomerKey, DestinationOptions, DispatchReport, SiemDispatcher,
};
use raxe_storage::{QueueStore, SledStore, StoreOptions};
use raxe_tests::hec::HecReceiver;

pub struct Engine {
    pub dispatcher: Arc<SiemDispatcher>,
    /// The dispatcher's store, as its concrete type (for queue internals such as reads).
    pub sled: Arc<SledStore>,
    _dir: Option<tempfile::TempDir>,
}

/// Fast retries so fault tests finish in seconds.
pub fn fast_policy() -> BackoffPolicy {
    BackoffPolicy {
        initial: Duration::from_millis(20),
        quick_max: Duration::from_millis(200),
        degraded_max: Duration::from_millis(500),
        retry_after_max: Duration::from_secs(2),
    }
}

impl Engine {
    pub fn new() -> Engine {
        let dir = tempfile::tempdir().unwrap();
        let mut engine = Engine::open(dir.path());
        engine._dir = Some(dir);
        engine
    }

    /// Opens a store in `dir`, waiting for a previous engine in this process to let go.
    pub fn open(dir: &Path) -> Engine {
        Engine::open_with(dir, StoreOptions::default())
    }

    /// A fresh engine with its own retry pacing.
    pub fn with_policy(policy: BackoffPolicy) -> Engine {
        let dir = tempfile::tempdir().unwrap();
        let mut engine = Engine::open_inner(dir.path(), StoreOptions::default(), policy);
        engine._dir = Some(dir);
        engine
    }

    /// [`Engine::open`] with store options (a queue byte cap, say).
    pub fn open_with(dir: &Path, options: StoreOptions) -> Engine {
        Engine::open_inner(dir, options, fast_policy())
    }

    fn open_inner(dir: &Path, options: StoreOptions, policy: BackoffPolicy) -> Engine {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let store = loop {
            match SledStore::open_with(dir.join("queues"), options.clone()) {
                Ok(store) => break store,
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("open store: {e}"),
            }
        };
        let sled = Arc::new(store);
        let store: Arc<dyn QueueStore> = sled.clone();
        let audit = Arc::new(AuditLog::in_memory());
        Engine {
            sled,
            dispatcher: Arc::new(SiemDispatcher::with_policy(store, audit, policy).unwrap()),
            _dir: None,
        }
    }

    pub fn store(&self) -> &dyn QueueStore {
        self.dispatcher.store().as_ref()
    }

    /// Registers (or re-registers) a Splunk destination pointed at `hec`.
    pub fn add(&self, id: &str, hec: &HecReceiver, token: &str, customer: Option<CustomerKey>) {
        self.add_with(id, hec, token, customer, |_| {});
    }

    pub fn add_with(
        &self,
        id: &str,
        hec: &HecReceiver,
        token: &str,
        customer: Option<CustomerKey>,
        tweak: impl FnOnce(&mut SiemConfig),
    ) {
        let mut config = splunk_config(&hec.url(), token);
        tweak(&mut config);
        self.register(id, config, customer).unwrap();
    }

    /// Registers `config` under `id` with default options: the dispatcher's answer.
    pub fn register(
        &self,
        id: &str,
        config: SiemConfig,
        customer: Option<CustomerKey>,
    ) -> Result<(), raxe_engine::EngineError> {
        let adapter = raxe_adapters::create_siem_adapter(config).unwrap();
        self.dispatcher.register_destination(
            id,
            adapter.into(),
            customer,
            DestinationOptions::default(),
        )
    }

    pub async fn dispatch(&self, events: Vec<ScanEvent>) -> DispatchReport {
        self.dispatcher.dispatch_batch_async(events).await.unwrap()
    }
}

/// A Splunk HEC destination with test-friendly timings: 1 s timeout, 100 ms flush.
pub fn splunk_config(url: &str, token: &str) -> SiemConfig {
    let mut config = SiemConfig::splunk(url, token).unwrap();
    config.flush_interval_seconds = 0;
    config.timeout_seconds = 1;
    config
}

/// Realistic scan events with ids `evt-<n>`.
pub fn events(mssp: &str, customer: &str, range: Range<usize>) -> Vec<ScanEvent> {
    range
        .map(|n| {
            let line = format!(
                r#"{{"event_id":"evt-{n}","timestamp":"2026-01-30T10:30:00Z","event_type":"scan","threat_detected":true,"severity":"critical","rule_ids":["pi-001","pi-003"],"families":["PI"],"prompt_hash":"sha256:{n:064x}","prompt_length":{len},"detection_count":2,"scan_duration_ms":4.5,"customer_id":"{customer}","mssp_id":"{mssp}","agent_id":"agent_prod_001","installation_id":"inst_abc123"}}"#,
                len = 100 + n % 50
            );
            ScanEvent::parse_line(line.as_bytes(), n + 1).unwrap()
        })
        .collect()
}

pub fn ids(events: &[ScanEvent]) -> HashSet<String> {
    events.iter().map(|e| e.event_id.clone()).collect()
}

pub fn as_set(ids: &[String]) -> HashSet<String> {
    ids.iter().cloned().collect()
}

pub async fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}
