//! `raxe customer siem ...` and `raxe global siem ...`.

use std::io::IsTerminal;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use raxe_adapters::config::Secret;
use raxe_adapters::config::{
    ArcsightOptions, CefOptions, CefTransport, Compression, CrowdstrikeOptions, SentinelApi,
    SiemConfig, SiemOptions, SiemType, SplunkOptions,
};
use raxe_adapters::event::ScanEvent;
use raxe_adapters::outcome::Outcome;
use raxe_adapters::request::{Response, TransportError};
use raxe_adapters::transport::TlsOptions;
use serde_json::{json, Value};

use super::{describe_queue, live_stats};
use crate::args::{
    CompressionArg, ConfigureArgs, CustomerTarget, GlobalTarget, SentinelApiArg, SiemCommand,
    SiemTypeArg,
};
use crate::config_store::{ConfigStore, DestinationRecord, Scope};
use crate::control;
use crate::data_dir::DataDir;
use crate::host::{Host, OpenError};

pub trait Target {
    fn scope(&self) -> Scope;
}

impl Target for CustomerTarget {
    fn scope(&self) -> Scope {
        Scope::Customer {
            mssp_id: self.mssp.clone(),
            customer_id: self.customer.clone(),
        }
    }
}

impl Target for GlobalTarget {
    fn scope(&self) -> Scope {
        Scope::Global {
            name: self.name.clone(),
        }
    }
}

/// Runs one `siem` subcommand; returns the process exit code.
pub async fn run<T: Target + clap::Args>(data: &DataDir, command: SiemCommand<T>) -> Result<i32> {
    let configs = ConfigStore::new(data.config_dir());
    match command {
        SiemCommand::Configure { target, options } => configure(&configs, target.scope(), &options),
        SiemCommand::Test { target } => test(&configs, &target.scope()).await,
        SiemCommand::Show { target, json } => show(data, &configs, &target.scope(), json),
        SiemCommand::Disable { target } => set_enabled(&configs, &target.scope(), false),
        SiemCommand::Enable { target } => set_enabled(&configs, &target.scope(), true),
        SiemCommand::Remove { target, drop_queue } => {
            remove(data, &configs, &target.scope(), drop_queue)
        }
        SiemCommand::List { mssp, json } => list(data, &configs, mssp.as_deref(), json),
    }
}

fn existing(configs: &ConfigStore, scope: &Scope) -> Result<DestinationRecord> {
    configs.get(scope)?.with_context(|| {
        format!(
            "no SIEM is configured for {}; configure one with `raxe {} siem configure`",
            scope.describe(),
            match scope {
                Scope::Customer { .. } => "customer",
                Scope::Global { .. } => "global",
            }
        )
    })
}

fn configure(configs: &ConfigStore, scope: Scope, args: &ConfigureArgs) -> Result<i32> {
    let previous = configs.get(&scope).ok().flatten();
    let config = build_config(args, previous.as_ref().map(|r| &r.config))?;
    let updating = previous.is_some();
    let max_in_flight = match (args.max_in_flight, &previous) {
        (Some(n), _) => usize::from(n),
        (None, Some(previous)) => previous.max_in_flight,
        (None, None) => 1,
    };
    configs.put(&DestinationRecord {
        scope: scope.clone(),
        config: config.clone(),
        max_in_flight,
    })?;
    println!(
        "✓ {} SIEM for {}: {config}",
        if updating { "Updated" } else { "Configured" },
        scope.describe()
    );
    if config.tls.insecure_skip_verify {
        eprintln!(
            "⚠ TLS certificate verification is OFF for this destination (--insecure-skip-verify)"
        );
    }
    Ok(0)
}

/// Builds and validates a configuration from the arguments, keeping the previous token and
/// settings of the same type when they are not given again.
pub fn build_config(args: &ConfigureArgs, previous: Option<&SiemConfig>) -> Result<SiemConfig> {
    let siem_type = match args.siem_type {
        SiemTypeArg::Splunk => SiemType::Splunk,
        SiemTypeArg::Crowdstrike => SiemType::Crowdstrike,
        SiemTypeArg::Sentinel => SiemType::Sentinel,
        SiemTypeArg::Arcsight => SiemType::Arcsight,
        SiemTypeArg::Cef => SiemType::Cef,
    };
    let previous = previous.filter(|p| p.siem_type == siem_type);
    check_options_fit(siem_type, args)?;
    let token = match read_token(args)? {
        Some(token) => token,
        None => previous.map(|p| p.auth_token.clone()).unwrap_or_default(),
    };
    let mut options = previous
        .map(|p| p.extra.clone())
        .unwrap_or_else(|| SiemOptions::default_for(siem_type));
    if let SiemOptions::Sentinel(o) = &mut options {
        o.api = sentinel_api(args, previous.is_some().then_some(o.api));
    }
    apply_options(&mut options, args)?;
    let mut config = SiemConfig::unvalidated(&args.url, token, options);
    if let Some(p) = previous {
        config.batch_size = p.batch_size;
        config.flush_interval_seconds = p.flush_interval_seconds;
        config.retry_count = p.retry_count;
        config.timeout_seconds = p.timeout_seconds;
        config.enabled = p.enabled;
        config.tls = p.tls.clone();
    }
    if let Some(v) = args.batch_size {
        config.batch_size = v;
    }
    if let Some(v) = args.flush_interval {
        config.flush_interval_seconds = v;
    }
    if let Some(v) = args.retry_count {
        config.retry_count = v;
    }
    if let Some(v) = args.timeout {
        config.timeout_seconds = v;
    }
    let tls = TlsOptions {
        ca_cert: args.ca_cert.clone().or(config.tls.ca_cert.take()),
        client_cert: args.client_cert.clone().or(config.tls.client_cert.take()),
        client_key: args.client_key.clone().or(config.tls.client_key.take()),
        insecure_skip_verify: args.insecure_skip_verify,
    };
    for path in [&tls.ca_cert, &tls.client_cert, &tls.client_key]
        .into_iter()
        .flatten()
    {
        if !path.is_file() {
            bail!("{} does not exist or is not a file", path.display());
        }
    }
    config.tls = tls;
    config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    // Building the adapter checks what validation cannot: certificates, keys, the syslog target.
    raxe_adapters::create_siem_adapter(config.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(config)
}

fn read_token(args: &ConfigureArgs) -> Result<Option<Secret>> {
    if let Some(token) = &args.token {
        return Ok(Some(Secret::new(token.clone())));
    }
    if let Some(path) = &args.token_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the token file {}", path.display()))?;
        let token = text.trim_end_matches(['\n', '\r']).to_string();
        if token.is_empty() {
            bail!("the token file {} is empty", path.display());
        }
        return Ok(Some(Secret::new(token)));
    }
    if let Some(var) = &args.token_env {
        let token = std::env::var(var)
            .with_context(|| format!("the environment variable {var} is not set"))?;
        if token.is_empty() {
            bail!("the environment variable {var} is empty");
        }
        return Ok(Some(Secret::new(token)));
    }
    Ok(None)
}

/// Options of another destination type are a mistake worth saying, not ignoring.
fn check_options_fit(siem_type: SiemType, args: &ConfigureArgs) -> Result<()> {
    let given = |name: &'static str, present: bool| present.then_some(name);
    let groups: [(&[SiemType], Vec<Option<&'static str>>); 5] = [
        (
            &[SiemType::Splunk],
            vec![
                given("--index", args.index.is_some()),
                given("--sourcetype", args.sourcetype.is_some()),
                given("--ack", args.ack),
                given("--no-ack", args.no_ack),
                given("--ack-interval", args.ack_interval.is_some()),
                given("--ack-timeout", args.ack_timeout.is_some()),
            ],
        ),
        (
            &[SiemType::Splunk, SiemType::Crowdstrike],
            vec![
                given("--source", args.source.is_some()),
                given("--host", args.host.is_some()),
            ],
        ),
        (
            &[SiemType::Crowdstrike],
            vec![
                given("--repository", args.repository.is_some()),
                given("--parser", args.parser.is_some()),
            ],
        ),
        (
            &[SiemType::Sentinel],
            vec![
                given("--workspace-id", args.workspace_id.is_some()),
                given("--log-type", args.log_type.is_some()),
                given("--api", args.api.is_some()),
                given("--tenant-id", args.tenant_id.is_some()),
                given("--client-id", args.client_id.is_some()),
                given("--dcr-id", args.dcr_id.is_some()),
                given("--stream", args.stream.is_some()),
                given("--token-url", args.token_url.is_some()),
            ],
        ),
        (
            &[SiemType::Cef],
            vec![
                given("--transport", args.transport.is_some()),
                given("--port", args.port.is_some()),
                given("--tls", args.tls),
                given("--facility", args.facility.is_some()),
            ],
        ),
    ];
    for (types, flags) in groups {
        if types.contains(&siem_type) {
            continue;
        }
        if let Some(flag) = flags.into_iter().flatten().next() {
            bail!("{flag} does not apply to --type {siem_type}");
        }
    }
    if matches!(siem_type, SiemType::Arcsight | SiemType::Cef) && args.compression.is_some() {
        bail!("--compression applies to --type splunk, crowdstrike and sentinel");
    }
    let arcsight_only = given("--smart-connector-id", args.smart_connector_id.is_some());
    if siem_type != SiemType::Arcsight {
        if let Some(flag) = arcsight_only {
            bail!("{flag} does not apply to --type {siem_type}");
        }
    }
    if !matches!(siem_type, SiemType::Arcsight | SiemType::Cef)
        && (args.device_vendor.is_some() || args.device_product.is_some())
    {
        bail!("--device-vendor/--device-product apply to --type arcsight and cef only");
    }
    Ok(())
}

fn apply_options(options: &mut SiemOptions, args: &ConfigureArgs) -> Result<()> {
    fn set<T: Clone>(slot: &mut T, value: &Option<T>) {
        if let Some(v) = value {
            *slot = v.clone();
        }
    }
    match options {
        SiemOptions::Splunk(SplunkOptions {
            index,
            source,
            sourcetype,
            host,
            ack,
            ack_interval_seconds,
            ack_timeout_seconds,
            channel,
            compression,
            ..
        }) => {
            if args.index.is_some() {
                *index = args.index.clone();
            }
            set(source, &args.source);
            set(sourcetype, &args.sourcetype);
            if args.host.is_some() {
                *host = args.host.clone();
            }
            if args.ack || args.no_ack {
                *ack = args.ack;
            }
            set(ack_interval_seconds, &args.ack_interval);
            set(compression, &compression_arg(args));
            set(ack_timeout_seconds, &args.ack_timeout);
            // The channel is made once and kept across reconfigurations and restarts:
            // Splunk ties ack ids (and load-balancer stickiness) to it.
            if *ack && channel.is_none() {
                *channel = Some(raxe_adapters::splunk::ack::new_channel());
            }
        }
        SiemOptions::Crowdstrike(CrowdstrikeOptions {
            repository,
            parser,
            source,
            host,
            compression,
            ..
        }) => {
            set(compression, &compression_arg(args));
            if args.repository.is_some() {
                *repository = args.repository.clone();
            }
            if args.parser.is_some() {
                *parser = args.parser.clone();
            }
            set(source, &args.source);
            if args.host.is_some() {
                *host = args.host.clone();
            }
        }
        SiemOptions::Sentinel(o) => {
            set(&mut o.workspace_id, &args.workspace_id);
            set(&mut o.log_type, &args.log_type);
            set(&mut o.tenant_id, &args.tenant_id);
            set(&mut o.client_id, &args.client_id);
            set(&mut o.dcr_id, &args.dcr_id);
            set(&mut o.stream, &args.stream);
            if args.token_url.is_some() {
                o.token_url = args.token_url.clone();
            }
            if args.compression.is_some() {
                o.compression = compression_arg(args);
            }
        }
        SiemOptions::Arcsight(ArcsightOptions {
            smart_connector_id,
            device_vendor,
            device_product,
            ..
        }) => {
            set(smart_connector_id, &args.smart_connector_id);
            set(device_vendor, &args.device_vendor);
            set(device_product, &args.device_product);
        }
        SiemOptions::Cef(cef) => apply_cef(cef, args)?,
    }
    Ok(())
}

fn compression_arg(args: &ConfigureArgs) -> Option<Compression> {
    args.compression.map(|c| match c {
        CompressionArg::Gzip => Compression::Gzip,
        CompressionArg::None => Compression::None,
    })
}

/// `--api`, else what the destination used before, else Logs Ingestion: the Data
/// Collector API only for its own `*.ods.opinsights.azure.*` URLs without Logs Ingestion
/// options (it stopped working on 14 September 2026).
fn sentinel_api(args: &ConfigureArgs, previous: Option<SentinelApi>) -> SentinelApi {
    let ingestion_options = args.tenant_id.is_some() || args.dcr_id.is_some();
    match (args.api, previous) {
        (Some(SentinelApiArg::LogsIngestion), _) => SentinelApi::LogsIngestion,
        (Some(SentinelApiArg::DataCollector), _) => SentinelApi::DataCollector,
        (None, _) if ingestion_options => SentinelApi::LogsIngestion,
        (None, Some(api)) => api,
        (None, None) if args.url.contains(".ods.opinsights.azure.") => SentinelApi::DataCollector,
        (None, None) => SentinelApi::LogsIngestion,
    }
}

fn apply_cef(cef: &mut CefOptions, args: &ConfigureArgs) -> Result<()> {
    if let Some(transport) = &args.transport {
        cef.transport = Some(match transport.to_ascii_lowercase().as_str() {
            "http" | "https" => CefTransport::Http,
            "udp" => CefTransport::Udp,
            "tcp" => CefTransport::Tcp,
            other => bail!("--transport {other:?}: expected http, udp or tcp"),
        });
    }
    if args.port.is_some() {
        cef.port = args.port;
    }
    if args.tls {
        cef.tls = true;
        if cef.transport.is_none() {
            cef.transport = Some(CefTransport::Tcp);
        }
    }
    if let Some(facility) = args.facility {
        cef.facility = facility;
    }
    if let Some(v) = &args.device_vendor {
        cef.device_vendor = v.clone();
    }
    if let Some(v) = &args.device_product {
        cef.device_product = v.clone();
    }
    Ok(())
}

async fn test(configs: &ConfigStore, scope: &Scope) -> Result<i32> {
    let record = existing(configs, scope)?;
    let adapter = raxe_adapters::create_siem_adapter(record.config.clone())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut event = ScanEvent::new(match scope {
        Scope::Customer { customer_id, .. } => customer_id.clone(),
        Scope::Global { name } => format!("global:{name}"),
    });
    event.event_type = "test".into();
    event.event_id = format!("raxe-test-{}", event.event_id);
    if let Scope::Customer { mssp_id, .. } = scope {
        event.mssp_id = Some(mssp_id.clone());
    }
    event.extra.insert("raxe_test".into(), json!(true));
    event.extra.insert(
        "message".into(),
        json!("RAXE SIEM connectivity test event: safe to ignore"),
    );
    if is_logs_ingestion(&record.config) {
        return test_logs_ingestion(&record.config, &event).await;
    }
    let batch = adapter.encode(std::slice::from_ref(&event));
    let Some(request) = batch.requests.first() else {
        println!("✗ The test event cannot be encoded for this destination");
        return Ok(1);
    };
    let started = Instant::now();
    let answer = adapter.send(request).await;
    let outcome = adapter.classify(request, &answer);
    let elapsed = started.elapsed();
    let (connected, detail) = match &answer {
        Ok(Response::Http(r)) => (format!("HTTP {}", r.status.as_u16()), excerpt(&r.body)),
        Ok(Response::SyslogWritten) => ("syslog".to_string(), String::new()),
        Err(e) => {
            println!("✗ Connection failed: {e}");
            println!("  hint: {}", connection_hint(e, &record.config));
            return Ok(1);
        }
    };
    println!(
        "✓ Connection successful ({connected}, {} ms)",
        elapsed.as_millis()
    );
    match outcome {
        Outcome::Delivered => {
            println!("✓ Authentication valid");
            println!("✓ Test event delivered (event_id {})", event.event_id);
            Ok(0)
        }
        Outcome::AuthFailed { reason } => {
            println!("✗ Authentication failed ({connected}): {reason}");
            print_body(&detail);
            println!("  hint: check the token (--token, --token-file or --token-env) and that it is enabled");
            Ok(1)
        }
        Outcome::Misconfigured { reason } => {
            println!("✓ Authentication valid");
            println!("✗ Test event not accepted ({connected}): {reason}");
            print_body(&detail);
            println!("  hint: check the URL path (Splunk: /services/collector/event, LogScale: /api/v1/ingest/hec) and the per-type options");
            Ok(1)
        }
        Outcome::Retry { reason, .. } => {
            println!("? Authentication not confirmed: the SIEM is busy or failing ({reason})");
            print_body(&detail);
            println!("  hint: try again later; events stay queued and are retried");
            Ok(1)
        }
        Outcome::Rejected { reason, .. } | Outcome::TooLarge { reason } => {
            println!("✓ Authentication valid");
            println!("✗ Test event rejected ({connected}): {reason}");
            print_body(&detail);
            Ok(1)
        }
    }
}

fn is_logs_ingestion(config: &SiemConfig) -> bool {
    matches!(&config.extra, SiemOptions::Sentinel(o) if o.api == SentinelApi::LogsIngestion)
}

/// Sentinel Logs Ingestion: token, empty array, test event, one line per step.
async fn test_logs_ingestion(config: &SiemConfig, event: &ScanEvent) -> Result<i32> {
    let adapter = raxe_adapters::sentinel_ingestion::LogsIngestionAdapter::new(config.clone())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let steps = adapter.connection_test(event).await;
    for s in &steps {
        println!("{} {}", if s.ok { "✓" } else { "✗" }, s.line);
    }
    Ok(if steps.iter().all(|s| s.ok) { 0 } else { 1 })
}

fn connection_hint(error: &TransportError, config: &SiemConfig) -> &'static str {
    match error {
        TransportError::Tls(_) if config.tls.ca_cert.is_none() => {
            "the server's certificate is not trusted: pass its CA with --ca-cert (or fix the certificate)"
        }
        TransportError::Tls(_) => "check the certificate files and that the server's name matches its certificate",
        TransportError::Timeout(_) => "the SIEM did not answer in time: check the URL, a proxy or firewall, or raise --timeout",
        TransportError::Connect(_) => "nothing accepted the connection: check the host, the port and the firewall",
        TransportError::Io(_) => "the connection broke: check for a proxy or a TLS/plain-HTTP mismatch in the URL",
    }
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut cut: String = text.chars().take(300).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut
}

fn print_body(body: &str) {
    if !body.is_empty() {
        println!("  server said: {body}");
    }
}

fn show(data: &DataDir, configs: &ConfigStore, scope: &Scope, json_out: bool) -> Result<i32> {
    let record = existing(configs, scope)?;
    let id = record.id();
    let live = live_stats(data).ok();
    let report = live.as_ref().and_then(|(stats, _)| {
        stats["destinations"]
            .as_array()
            .and_then(|all| all.iter().find(|d| d["id"] == id.as_str()).cloned())
    });
    let config = &record.config;
    let options = config.extra.to_json();
    if json_out {
        let out = json!({
            "id": id,
            "scope": record.scope,
            "type": config.siem_type.to_string(),
            "url": config.endpoint_url,
            "token": mask(config.auth_token.expose()),
            "options": options,
            "batch_size": config.batch_size,
            "flush_interval_seconds": config.flush_interval_seconds,
            "retry_count": config.retry_count,
            "timeout_seconds": config.timeout_seconds,
            "max_in_flight": record.max_in_flight,
            "enabled": config.enabled,
            "tls": config.tls,
            "live": report,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    println!("SIEM configuration for {}", record.scope.describe());
    println!("  Type:          {}", config.siem_type);
    println!("  URL:           {}", config.endpoint_url);
    println!("  Token:         {}", mask(config.auth_token.expose()));
    if let Value::Object(map) = &options {
        for (key, value) in map {
            let shown = match value {
                Value::String(s) => s.clone(),
                // Splunk indexer acknowledgement reads better as a switch.
                Value::Bool(on) if key == "ack" => if *on { "on" } else { "off" }.into(),
                Value::Null if key == "channel" => "(none)".into(),
                Value::Null => "(default)".into(),
                other => other.to_string(),
            };
            println!("  {:<14} {shown}", format!("{}:", title(key)));
        }
    }
    if matches!(&config.extra, SiemOptions::Sentinel(o) if o.api == SentinelApi::DataCollector) {
        println!("  ⚠ The Azure HTTP Data Collector API was retired on 14 September 2026: reconfigure with --api logs-ingestion");
    }
    println!(
        "  Batching:      {} events / {} s, {} retries, {} s timeout, {} in flight",
        config.batch_size,
        config.flush_interval_seconds,
        config.retry_count,
        config.timeout_seconds,
        record.max_in_flight
    );
    if config.tls.insecure_skip_verify {
        println!("  TLS:           verification OFF (--insecure-skip-verify)");
    } else if let Some(ca) = &config.tls.ca_cert {
        println!("  TLS:           verified, extra CA {}", ca.display());
    }
    println!(
        "  Enabled:       {}",
        if config.enabled { "yes" } else { "no" }
    );
    match report {
        Some(report) => {
            println!("  State:         {}", describe_state(&report["state"]));
            println!("  Queue:         {}", describe_queue(&report["queue"]));
            println!(
                "  Dead letters:  {}",
                describe_queue(&report["dead_letters"])
            );
            let last = report["marks"]["last_delivery_ms"].as_u64();
            println!(
                "  Last delivery: {}",
                last.map(|ms| {
                    let age = raxe_engine::audit::now_ms().saturating_sub(ms) as f64 / 1000.0;
                    format!("{} ago", super::human_age(age))
                })
                .unwrap_or_else(|| "never".into())
            );
        }
        None => println!("  Queue:         (not available)"),
    }
    Ok(0)
}

pub fn describe_state(state: &Value) -> String {
    match (state["state"].as_str(), state["reason"].as_str()) {
        (Some(s), Some(reason)) => format!("{s}: {reason}"),
        (Some(s), None) => s.to_string(),
        _ => "unknown".into(),
    }
}

fn title(key: &str) -> String {
    key.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Enough to recognise which token is configured, never enough to use it.
pub fn mask(token: &str) -> String {
    let chars: Vec<char> = token.chars().collect();
    match chars.len() {
        0 => "(none)".into(),
        n if n >= 16 => format!("****{}", chars[n - 4..].iter().collect::<String>()),
        _ => "****".into(),
    }
}

fn set_enabled(configs: &ConfigStore, scope: &Scope, enabled: bool) -> Result<i32> {
    let mut record = existing(configs, scope)?;
    record.config.enabled = enabled;
    configs.put(&record)?;
    println!(
        "✓ SIEM for {} {}",
        scope.describe(),
        if enabled {
            "enabled"
        } else {
            "disabled (events keep accumulating in its queue)"
        }
    );
    Ok(0)
}

fn remove(data: &DataDir, configs: &ConfigStore, scope: &Scope, drop_queue: bool) -> Result<i32> {
    let record = existing(configs, scope)?;
    if drop_queue {
        // Dropping needs the queues: open them, or ask the service that holds them.
        let id = record.id();
        match Host::open(data.clone()) {
            Ok(host) => {
                configs.remove(scope)?;
                control::drop_queue(&host, &id)?;
            }
            Err(OpenError::InUse(_)) => {
                // The service stops the destination and deletes its queue first: should that
                // fail, nothing changed.
                control::call(data, &control::Request::DropQueue { destination: id })
                    .context("nothing was removed")?;
                configs.remove(scope)?;
            }
            Err(OpenError::Other(e)) => return Err(e),
        }
        println!(
            "✓ Removed the SIEM for {} and deleted its queued events",
            scope.describe()
        );
    } else {
        configs.remove(scope)?;
        println!(
            "✓ Removed the SIEM for {}; its undelivered events are kept and delivered if it is configured again",
            scope.describe()
        );
    }
    Ok(0)
}

fn list(data: &DataDir, configs: &ConfigStore, mssp: Option<&str>, json_out: bool) -> Result<i32> {
    let (records, problems) = configs.list()?;
    for problem in &problems {
        eprintln!("⚠ {problem}");
    }
    let records: Vec<_> = records
        .into_iter()
        .filter(|r| match (&r.scope, mssp) {
            (Scope::Customer { mssp_id, .. }, Some(m)) => mssp_id == m,
            (Scope::Global { .. }, Some(_)) => false,
            _ => true,
        })
        .collect();
    let live = live_stats(data).ok().map(|(stats, _)| stats);
    let queued = |id: &str| -> Option<u64> {
        live.as_ref()?["destinations"]
            .as_array()?
            .iter()
            .find(|d| d["id"] == id)?["queue"]["events"]
            .as_u64()
    };
    if json_out {
        let out: Vec<Value> = records
            .iter()
            .map(|r| {
                json!({
                    "id": r.id(),
                    "scope": r.scope,
                    "type": r.config.siem_type.to_string(),
                    "url": r.config.endpoint_url,
                    "enabled": r.config.enabled,
                    "queued": queued(&r.id()),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    if records.is_empty() {
        println!("No SIEM destinations configured.");
        return Ok(0);
    }
    let tty = std::io::stdout().is_terminal();
    println!(
        "{:<36} {:<12} {:<8} {:>9}  URL",
        "DESTINATION", "TYPE", "ENABLED", "QUEUED"
    );
    for r in &records {
        let mut url = r.config.endpoint_url.clone();
        if tty && url.len() > 60 {
            url.truncate(57);
            url.push_str("...");
        }
        println!(
            "{:<36} {:<12} {:<8} {:>9}  {url}",
            r.id(),
            r.config.siem_type.to_string(),
            if r.config.enabled { "yes" } else { "no" },
            queued(&r.id())
                .map(|q| q.to_string())
                .unwrap_or_else(|| "-".into()),
        );
    }
    Ok(0)
}
