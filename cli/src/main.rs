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

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::args::{Cli, Command, CustomerCommand, GlobalCommand, LogFormat, SiemCommand};
use crate::data_dir::DataDir;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
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
    let root = DataDir::resolve(cli.data_dir)?;
    if !creates_data_dir(&cli.command) && !root.exists() {
        // A mistyped --data-dir must not become an empty, healthy-looking one.
        anyhow::bail!(
            "no data directory at {}: check --data-dir (or RAXE_DATA_DIR); `raxe customer siem configure`, `raxe global siem configure`, `raxe ingest` and `raxe serve` create it",
            root.display()
        );
    }
    let data = DataDir::open(root)?;
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
            commands::drain::drain(&data, Duration::from_secs(timeout)).await
        }
        Command::Stats { json } => commands::ops::stats(&data, json),
        Command::Dlq { command } => commands::ops::dlq(&data, command),
        Command::Repair { dry_run } => {
            tokio::task::spawn_blocking(move || commands::repair::repair(&data, dry_run)).await?
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("RAXE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: a log file or journal gets plain text (NO_COLOR too).
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Whether the command sets something up, and so may create the data directory; the rest
/// only look at or act on what is there.
fn creates_data_dir(command: &Command) -> bool {
    match command {
        Command::Customer {
            command: CustomerCommand::Siem { command },
        } => matches!(command, SiemCommand::Configure { .. }),
        Command::Global {
            command: GlobalCommand::Siem { command },
        } => matches!(command, SiemCommand::Configure { .. }),
        Command::Ingest { .. } | Command::Serve(_) => true,
        _ => false,
    }
}
