//! Benchmark programs live in benches/src/bin/.

pub mod scan_event;
