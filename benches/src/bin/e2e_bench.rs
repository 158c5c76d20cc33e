//! End-to-end benchmark of the real `raxe serve` (issue #7): spool → durable queues →
//! delivery to counting receivers on 127.0.0.1, with the machine's limits measured in the
//! same run. Build raxe first, then:
//!
//! `cargo build --release -p raxe-cli && cargo run --release -p raxe-benches --bin e2e_bench -- [--quick]`
//!
//! See `e2e/mod.rs` for the options and what each figure means.

#[path = "../e2e/mod.rs"]
mod e2e;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match e2e::parse(&args).and_then(e2e::main_with) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("e2e_bench: {e}");
            2
        }
    };
    std::process::exit(code);
}
