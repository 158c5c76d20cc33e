//! `raxe`: the command-line front end and service of raxe-siem. Thin: configuration files,
//! commands, the service loop and spool intake; the work happens in raxe-engine.

mod allocator;
mod args;
mod commands;
mod config_store;
mod control;
mod data_dir;
mod host;
mod metrics_server;
mod service;
mod spool;
mod status;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::args::{Cli, Command, CustomerCommand, GlobalCommand, LogFormat};
use crate::data_dir::DataDir;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let storage_threads = match &cli.command {
        Command::Serve(args) => args.storage_threads.map(usize::from),
        _ => None,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(storage_threads.unwrap_or_else(default_storage_threads))
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    let data = DataDir::open(DataDir::resolve(cli.data_dir)?)?;
    match cli.command {
        Command::Customer {
            command: CustomerCommand::Siem { command },
        } => commands::siem::run(&data, command).await,
        Command::Global {
            command: GlobalCommand::Siem { command },
        } => commands::siem::run(&data, command).await,
        Command::Ingest { file } => {
            tokio::task::spawn_blocking(move || commands::ops::ingest(&data, &file)).await?
        }
        Command::Serve(args) => service::serve(data, args).await.map(|()| 0),
        Command::Drain { timeout } => {
            commands::ops::drain(&data, Duration::from_secs(timeout)).await
        }
        Command::Stats { json } => commands::ops::stats(&data, json),
        Command::Dlq { command } => commands::ops::dlq(&data, command),
        Command::Repair { dry_run } => {
            tokio::task::spawn_blocking(move || commands::repair::repair(&data, dry_run)).await?
        }
    }
}

/// Cap of tokio's blocking pool, where every storage call runs (appends, leases, acks, the
/// spool intake): 4 per CPU core, at least 8. tokio's own cap (512) let 100 delivery lanes
/// grow the pool to ~120 threads, each keeping ~0.4 MiB resident: `e2e_bench`'s hec100
/// peaked at 89-95 MiB with it and 51-55 MiB with 8, at less CPU (more threads than cores
/// only take turns on sled's locks and the disk). No blocking task waits on another, so a
/// smaller pool queues work but cannot deadlock.
fn default_storage_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    (4 * cores).max(8)
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("RAXE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
