//! raxe-adapters: the SIEM vocabulary and one module per destination.
//!
//! **Job.** Turn scan events ([`event::ScanEvent`]) into the bytes a SIEM expects, send
//! them over a reused connection, and tell the engine what the answer means
//! ([`outcome::Outcome`]). The engine owns queues, retries and dead letters.
//!
//! **Invariants.**
//! * Encoding is pure: `SiemAdapter::encode` does no I/O and holds no queue; every event of
//!   a batch lands in exactly one request or in `oversized`.
//! * Classification is pure and total: every status / error maps to one outcome.
//! * Secrets (tokens, shared keys) never appear in `Debug`, `Display` or error messages
//!   ([`config::Secret`] prints `***`; auth headers are marked sensitive).
//! * An agent value cannot forge a CEF field, a CEF/syslog line, or a JSON field.
//! * A queue record (the bytes the engine stores per event) is `0x02 ‖ time ms i64 LE ‖ the
//!   event's JSON object`, written once at intake ([`event::ScanEvent::encode_line`],
//!   `to_queue_bytes`). Destinations that embed the object verbatim (HEC) encode straight
//!   from it ([`adapter::SiemAdapter::encode_json`]); the rest decode it. Records of the
//!   earlier format (compact JSON, `{` first) are still read.
//!
//! **Modules.** [`event`] (scan event, parsing, queue encoding), [`config`] (destination
//! configuration and validation), [`adapter`] / [`request`] / [`outcome`] (the engine
//! contract), [`splunk`] (HEC) and [`logscale`] (HEC flavour), [`sentinel`] (Data
//! Collector API), [`sentinel_ingestion`] (Logs Ingestion API), [`cef`] (CEF over HTTP
//! or syslog), [`arcsight`] (CEF over HTTP with a connector id), [`syslog`] (RFC 5424/3164 formatting), [`transport`] (HTTP and syslog
//! senders), [`factory`] ([`create_siem_adapter`]).

pub mod adapter;
pub mod arcsight;
pub mod cef;
pub mod config;
pub mod event;
pub mod factory;
pub mod hostname;
pub mod http_common;
pub mod logscale;
pub mod outcome;
pub mod request;
pub mod sentinel;
pub mod sentinel_ingestion;
pub mod splunk;
pub mod syslog;
#[cfg(test)]
pub(crate) mod test_support;
pub mod transport;

pub use config::{ConfigError, Secret, SiemConfig, SiemOptions, SiemType};
pub use event::{EventError, ScanEvent, Severity};
pub use factory::create_siem_adapter;
