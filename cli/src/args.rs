//! Command-line grammar. Names match the documentation our operators already use.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use raxe_adapters::config::limits;

#[derive(Debug, Parser)]
#[command(
    name = "raxe",
    version,
    about = "Durable delivery of RAXE scan events to SIEMs (Splunk, LogScale, Sentinel, ArcSight, CEF)",
    long_about = "Durable delivery of RAXE scan events to SIEMs.\n\n\
        Every event is written to an on-disk queue (fsynced) before it is accepted and removed \
        only after the SIEM accepted it. Configure destinations per customer with \
        `raxe customer siem configure`, run the service with `raxe serve`, and watch it with \
        `raxe stats`."
)]
pub struct Cli {
    /// Data directory: queues, configuration, audit log, spool.
    /// Default: $XDG_DATA_HOME/raxe or ~/.local/share/raxe.
    #[arg(long, global = true, env = "RAXE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Log format for messages on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Per-customer destinations.
    Customer {
        #[command(subcommand)]
        command: CustomerCommand,
    },
    /// Global destinations: they receive every event, whatever the customer.
    Global {
        #[command(subcommand)]
        command: GlobalCommand,
    },
    /// Read JSON-lines events from FILE (or stdin) and queue them durably.
    Ingest {
        /// A JSON-lines file, or `-` for standard input.
        #[arg(default_value = "-")]
        file: String,
    },
    /// Run the delivery service: watch the spool, deliver queued events, reload on change.
    Serve(ServeArgs),
    /// Take in the files waiting in the spool, then deliver everything queued; exit 0 when
    /// the spool and every queue are empty. With `raxe serve` running, the service does it.
    Drain {
        /// Give up after this many seconds (exit 1 with a per-destination summary).
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Delivery statistics per destination and in total.
    Stats {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check the queues for damaged data and set it aside, keeping every intact record.
    ///
    /// Run it with the service stopped when a command or the service reports damaged
    /// records or a database it cannot read. A damaged chunk of a queue is taken out of the
    /// queue (everything before and after it stays queued, in order); the records it still
    /// holds that decode as scan events are queued again and its raw bytes are kept under
    /// <data-dir>/repair/. If the queue database cannot be opened at all, it is moved to
    /// queues.damaged-<time>, a new one is created, and every scan event found in the old
    /// files is routed again (events already delivered may then be delivered twice; each
    /// carries its event_id so the SIEM can de-duplicate).
    Repair {
        /// Report what is damaged; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Dead-lettered events: events a SIEM refused for good.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Spool directory agents drop `*.jsonl` files into (default: <data-dir>/spool).
    #[arg(long, value_name = "DIR")]
    pub spool: Option<PathBuf>,
    /// How often to look at the spool and the configuration, in milliseconds.
    #[arg(long, default_value_t = 200, value_name = "MS")]
    pub poll_interval_ms: u64,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish. Requests that
    /// wait for a Splunk indexer ack are polled every 0.5 s for up to all but a fifth of
    /// it (at most 1 s less); what is not confirmed by then is sent again on the next
    /// start.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub shutdown_timeout: u64,
    /// Serve Prometheus metrics at http://ADDR/metrics and a health check at /health
    /// (e.g. 127.0.0.1:9464). Off by default.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Threads for storage work that waits for the disk (queue appends, spool intake, the
    /// flushes acks sometimes need); default 4 per CPU core, at least 8. Each costs memory;
    /// more than a few per core only take turns on the disk.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(2..))]
    pub storage_threads: Option<u16>,
}

#[derive(Debug, Subcommand)]
pub enum CustomerCommand {
    /// A customer's SIEM destination.
    Siem {
        #[command(subcommand)]
        command: SiemCommand<CustomerTarget>,
    },
}

#[derive(Debug, Subcommand)]
pub enum GlobalCommand {
    /// A global SIEM destination.
    Siem {
        #[command(subcommand)]
        command: SiemCommand<GlobalTarget>,
    },
}

/// Which customer.
#[derive(Debug, Clone, Args)]
pub struct CustomerTarget {
    /// Customer id (as agents send it in `customer_id`).
    pub customer: String,
    /// MSSP id (as agents send it in `mssp_id`).
    #[arg(long)]
    pub mssp: String,
}

/// Which global destination.
#[derive(Debug, Clone, Args)]
pub struct GlobalTarget {
    /// Name of the global destination.
    pub name: String,
}

#[derive(Debug, Subcommand)]
pub enum SiemCommand<T: Args> {
    /// Create or update the destination (validates everything before saving).
    Configure {
        #[command(flatten)]
        target: T,
        #[command(flatten)]
        options: Box<ConfigureArgs>,
    },
    /// Connect, authenticate and deliver one clearly marked test event.
    Test {
        #[command(flatten)]
        target: T,
    },
    /// Show the configuration (token masked), queue depth and last delivery.
    Show {
        #[command(flatten)]
        target: T,
        #[arg(long)]
        json: bool,
    },
    /// Stop delivering; events keep accumulating in the queue.
    Disable {
        #[command(flatten)]
        target: T,
    },
    /// Resume delivering.
    Enable {
        #[command(flatten)]
        target: T,
    },
    /// Delete the destination.
    Remove {
        #[command(flatten)]
        target: T,
        /// Also delete its undelivered events (otherwise they are kept for a later configure).
        #[arg(long)]
        drop_queue: bool,
    },
    /// List destinations: customer ones (`customer siem list`) or global ones (`global
    /// siem list`).
    List {
        /// Only this MSSP's customers (customer destinations).
        #[arg(long)]
        mssp: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SiemTypeArg {
    Splunk,
    Crowdstrike,
    Sentinel,
    Arcsight,
    Cef,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SentinelApiArg {
    LogsIngestion,
    DataCollector,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    Gzip,
    None,
}

#[derive(Debug, Clone, Args)]
pub struct ConfigureArgs {
    /// Destination type.
    #[arg(long = "type", value_enum)]
    pub siem_type: SiemTypeArg,
    /// Endpoint URL (https://... for HTTP destinations, syslog://host for CEF over syslog).
    #[arg(long)]
    pub url: String,

    /// The credential (HEC token, ingest token, shared key, client secret). Prefer
    /// --token-file or --token-env: a command line is visible to other users.
    #[arg(long, group = "token_source")]
    pub token: Option<String>,
    /// Read the credential from this file (spaces and line ends around it are ignored).
    #[arg(long, group = "token_source", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Read the credential from this environment variable.
    #[arg(long, group = "token_source", value_name = "VAR")]
    pub token_env: Option<String>,

    /// Splunk: index (default: the token's default index).
    #[arg(long, help_heading = "Splunk")]
    pub index: Option<String>,
    /// Splunk: source (default raxe).
    #[arg(long, help_heading = "Splunk")]
    pub source: Option<String>,
    /// Splunk: sourcetype (default _json).
    #[arg(long, help_heading = "Splunk")]
    pub sourcetype: Option<String>,
    /// Splunk: host field (default: this machine's hostname).
    #[arg(long, help_heading = "Splunk")]
    pub host: Option<String>,
    /// Splunk: indexer acknowledgement (the token needs useACK). Events leave the queue
    /// only once Splunk says they are indexed. Creates the channel GUID once and keeps it.
    #[arg(long, help_heading = "Splunk", conflicts_with = "no_ack")]
    pub ack: bool,
    /// Splunk: turn indexer acknowledgement off again.
    #[arg(long, help_heading = "Splunk")]
    pub no_ack: bool,
    /// Splunk: seconds between ack polls, 1 to 3600 (default 10). While --ack-max-pending
    /// requests wait for their acks, polls come sooner: 1, 2, 3 and 4 s into the wait, then
    /// a quarter of the wait apart; and when the requests left have waited as long as the
    /// youngest one the last confirming poll confirmed had.
    #[arg(long, help_heading = "Splunk", value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=limits::MAX_ACK_INTERVAL_SECONDS))]
    pub ack_interval: Option<u64>,
    /// Splunk: seconds an ack may stay pending before the events are resent, 1 to 86400
    /// (default 300).
    #[arg(long, help_heading = "Splunk", value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=limits::MAX_ACK_TIMEOUT_SECONDS))]
    pub ack_timeout: Option<u64>,
    /// Splunk: requests that may wait for their acks at once, 1 to 100000 (default 64).
    /// Throughput is at most this many batches per indexing delay (64 x 100 events per
    /// 2 s: 3,200 events/s); a crash sends them all again (duplicates).
    #[arg(long, help_heading = "Splunk", value_name = "N",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new()
              .range(1..=limits::MAX_ACK_MAX_PENDING as u64))]
    pub ack_max_pending: Option<usize>,

    /// CrowdStrike LogScale: repository (sent as the HEC index).
    #[arg(long, help_heading = "CrowdStrike")]
    pub repository: Option<String>,
    /// CrowdStrike LogScale: parser (sent as the HEC sourcetype).
    #[arg(long, help_heading = "CrowdStrike")]
    pub parser: Option<String>,

    /// Sentinel: Log Analytics workspace id.
    #[arg(long, help_heading = "Sentinel")]
    pub workspace_id: Option<String>,
    /// Sentinel: log type (table name without _CL).
    #[arg(long, help_heading = "Sentinel")]
    pub log_type: Option<String>,
    /// Sentinel: API. logs-ingestion (DCR + Entra ID; the token is the client secret) is
    /// the default unless the URL is an ods.opinsights.azure.com one (data-collector, which
    /// Microsoft retired on 14 September 2026).
    #[arg(long, help_heading = "Sentinel", value_enum)]
    pub api: Option<SentinelApiArg>,
    /// Sentinel Logs Ingestion: Entra ID tenant (directory) id.
    #[arg(long, help_heading = "Sentinel")]
    pub tenant_id: Option<String>,
    /// Sentinel Logs Ingestion: app registration (client) id.
    #[arg(long, help_heading = "Sentinel")]
    pub client_id: Option<String>,
    /// Sentinel Logs Ingestion: DCR immutable id (dcr-...).
    #[arg(long, help_heading = "Sentinel")]
    pub dcr_id: Option<String>,
    /// Sentinel Logs Ingestion: stream name (e.g. Custom-RaxeEvents_CL).
    #[arg(long, help_heading = "Sentinel")]
    pub stream: Option<String>,
    /// Sentinel Logs Ingestion: token endpoint (default: Entra ID v2 for the tenant; set it
    /// for sovereign clouds).
    #[arg(long, help_heading = "Sentinel", value_name = "URL")]
    pub token_url: Option<String>,

    /// HTTP destinations: request body compression (default gzip for Splunk, LogScale and
    /// Sentinel Logs Ingestion; the Data Collector API takes none).
    #[arg(long, value_enum)]
    pub compression: Option<CompressionArg>,

    /// ArcSight: SmartConnector id (sent with every request).
    #[arg(long, help_heading = "ArcSight")]
    pub smart_connector_id: Option<String>,
    /// ArcSight/CEF: device vendor (default RAXE).
    #[arg(long, help_heading = "ArcSight")]
    pub device_vendor: Option<String>,
    /// ArcSight/CEF: device product (default ThreatDetection).
    #[arg(long, help_heading = "ArcSight")]
    pub device_product: Option<String>,

    /// CEF: transport (http, udp or tcp; a syslog:// URL implies syslog).
    #[arg(long, help_heading = "CEF")]
    pub transport: Option<String>,
    /// CEF over syslog: port (default 514 for UDP, 6514 for TCP).
    #[arg(long, help_heading = "CEF")]
    pub port: Option<u16>,
    /// CEF over syslog: TLS (TCP only).
    #[arg(long, help_heading = "CEF")]
    pub tls: bool,
    /// CEF over syslog: facility number (default 16, local0).
    #[arg(long, help_heading = "CEF")]
    pub facility: Option<u8>,

    /// Events per request, 1 to 100000 (default 100).
    #[arg(long, help_heading = "Batching",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=limits::MAX_BATCH_SIZE as u64))]
    pub batch_size: Option<usize>,
    /// Seconds to wait for a full batch before sending a partial one, 0 to 3600 (default 10).
    #[arg(long, help_heading = "Batching",
          value_parser = clap::value_parser!(u64).range(0..=limits::MAX_FLUSH_INTERVAL_SECONDS))]
    pub flush_interval: Option<u64>,
    /// Quick retries before a destination is marked degraded, 0 to 100 (default 3).
    #[arg(long, help_heading = "Batching",
          value_parser = clap::value_parser!(u32).range(0..=limits::MAX_RETRY_COUNT as i64))]
    pub retry_count: Option<u32>,
    /// Seconds one request may take, end to end, 1 to 3600 (default 30).
    #[arg(long, help_heading = "Batching",
          value_parser = clap::value_parser!(u64).range(1..=limits::MAX_TIMEOUT_SECONDS))]
    pub timeout: Option<u64>,
    /// Requests in flight at once, 1 to 64 (default 1, which delivers events in order;
    /// more help against a distant or slow SIEM, at the cost of ordering).
    #[arg(long, help_heading = "Batching", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub max_in_flight: Option<u16>,

    /// PEM file of a private CA to trust.
    #[arg(long, help_heading = "TLS", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate for mutual TLS.
    #[arg(long, help_heading = "TLS", value_name = "FILE")]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[arg(long, help_heading = "TLS", value_name = "FILE")]
    pub client_key: Option<PathBuf>,
    /// Accept any server certificate. Dangerous: only for testing.
    #[arg(long, help_heading = "TLS")]
    pub insecure_skip_verify: bool,
}

/// Serializable: the CLI forwards it to a running service over its control socket.
#[derive(Debug, Clone, Subcommand, serde::Serialize, serde::Deserialize)]
pub enum DlqCommand {
    /// List dead-lettered events with the reason.
    List(DlqListArgs),
    /// Move dead-lettered events back to their queue for another try.
    Replay(DlqFilter),
    /// Delete dead-lettered events for good: name a customer or MSSP, or pass --all.
    Purge(DlqPurgeArgs),
}

/// Which destinations' dead letters; all of them when no option is given.
#[derive(Debug, Clone, Args, serde::Serialize, serde::Deserialize)]
pub struct DlqFilter {
    /// Only this customer's destination.
    #[arg(long, requires = "mssp")]
    pub customer: Option<String>,
    /// Only this MSSP's destinations.
    #[arg(long)]
    pub mssp: Option<String>,
}

#[derive(Debug, Clone, Args, serde::Serialize, serde::Deserialize)]
pub struct DlqListArgs {
    #[command(flatten)]
    pub filter: DlqFilter,
    /// At most this many events per destination.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

#[derive(Debug, Clone, Args, serde::Serialize, serde::Deserialize)]
pub struct DlqPurgeArgs {
    #[command(flatten)]
    pub filter: DlqFilter,
    /// Every destination's dead letters (customers and global ones).
    #[arg(long, conflicts_with = "mssp")]
    pub all: bool,
}
