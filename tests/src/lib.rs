//! Test support shared by integration tests, benchmarks and the crash harness: local SIEM
//! receivers on 127.0.0.1 that parse what they get, record every event id they accept, and
//! misbehave on request (status codes, Retry-After, hangs, resets, poison events).
//! The integration tests themselves live in `tests/tests/`.

pub mod azure_sig;
pub mod dcr;
pub mod entra;
pub mod hec;
pub mod hec_ack;
mod http_server;
pub mod sink;
pub mod syslog_tcp;
pub mod syslog_udp;
