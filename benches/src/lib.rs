//! Benchmark programs live in benches/src/bin/.
