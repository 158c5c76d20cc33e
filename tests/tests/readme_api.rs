//! The Rust API exactly as the README shows it, against a local HEC receiver.

use std::sync::Arc;
use std::time::Duration;

use raxe_adapters::{create_siem_adapter, ScanEvent, SiemConfig};
use raxe_engine::{AuditLog, CustomerKey, SiemDispatcher};
use raxe_storage::SledStore;
use raxe_tests::hec::HecReceiver;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_example_delivers() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let hec = HecReceiver::start("token").await;
    let token = "token";

    let store = Arc::new(SledStore::open(dir.path().join("queues"))?);
    let dispatcher = SiemDispatcher::new(store, Arc::new(AuditLog::in_memory()))?;
    let mut config = SiemConfig::splunk(&hec.url(), token)?;
    config.flush_interval_seconds = 0;
    let splunk = create_siem_adapter(config)?;
    dispatcher.register_adapter(splunk, Some(CustomerKey::new("m1", "acme")))?;
    dispatcher.start()?;
    let event = ScanEvent::parse_line(
        br#"{"customer_id":"acme","mssp_id":"m1","severity":"high"}"#,
        1,
    )?;
    let dispatched = tokio::task::block_in_place(|| dispatcher.dispatch(&event))?;
    assert_eq!(dispatched.queued, 1);
    assert!(hec.wait_for(1, Duration::from_secs(10)).await);
    assert!(dispatcher.drain(Duration::from_secs(5)).await);
    let stats = dispatcher.stats().total;
    assert_eq!(stats.successful as f64 / stats.total_deliveries as f64, 1.0);
    assert_eq!(hec.accepted(), vec![event.event_id.clone()]);
    dispatcher.shutdown(Duration::from_secs(1)).await;
    Ok(())
}
