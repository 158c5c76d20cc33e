//! `siem configure`: command-line options to a validated [`SiemConfig`], keeping what a
//! reconfiguration does not mention, then saved. Nothing is saved unless everything checks.

use anyhow::{bail, Context, Result};
use raxe_adapters::config::Secret;
use raxe_adapters::config::{
    ArcsightOptions, CefMode, CefOptions, CefTransport, Compression, CrowdstrikeOptions,
    SentinelApi, SiemConfig, SiemOptions, SiemType, SplunkOptions,
};
use raxe_adapters::transport::{SyslogProtocol, TlsOptions};

use crate::args::{CompressionArg, ConfigureArgs, SentinelApiArg, SiemTypeArg};
use crate::config_store::{ConfigStore, DestinationRecord, OtherScope, Scope};

pub(super) fn configure(configs: &ConfigStore, scope: Scope, args: &ConfigureArgs) -> Result<i32> {
    let previous = configs.get(&scope);
    if let Err(invalid) = scope.validate() {
        // Ids with a `/` were accepted before: such a destination may still be updated (a
        // new token, say), as long as its file is its own.
        if !matches!(previous, Ok(Some(_))) {
            return Err(invalid);
        }
    }
    let previous = match previous {
        Ok(previous) => previous,
        Err(e) if e.is::<OtherScope>() => return Err(e),
        // A damaged file must not stop its own repair; but say what is lost with it.
        Err(e) => {
            eprintln!("⚠ the current configuration cannot be read ({e:#}); it is replaced, and settings not given again (enabled, token, options) start from their defaults");
            None
        }
    };
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
    if let SiemOptions::Sentinel(o) = &config.extra {
        let data_collector = o.api == SentinelApi::DataCollector;
        if data_collector && o.log_type.to_ascii_lowercase().ends_with("_cl") {
            eprintln!(
                "⚠ Azure adds _CL to the log type: the table is {}_CL (give the name without _CL)",
                o.log_type
            );
        }
    }
    if config.tls.insecure_skip_verify {
        eprintln!(
            "⚠ TLS certificate verification is OFF for this destination (--insecure-skip-verify)"
        );
    }
    if let Some((was, now)) = previous
        .as_ref()
        .and_then(|p| syslog_port_change(&p.config, &config))
    {
        eprintln!(
            "⚠ syslog port {was} → {now}: the port in --url replaces the --port given before"
        );
    }
    for what in cleartext_endpoints(&config) {
        eprintln!("⚠ {what} is plain http://: credentials and events cross the network unencrypted; use https:// unless the network is trusted");
    }
    Ok(0)
}

/// The syslog port used before and now, when a `--port` given before gave way to the URL's
/// and the port changed with it (a reconfigure that did not mean to move it, say).
fn syslog_port_change(before: &SiemConfig, after: &SiemConfig) -> Option<(u16, u16)> {
    let explicit = |c: &SiemConfig| matches!(&c.extra, SiemOptions::Cef(o) if o.port.is_some());
    if !explicit(before) || explicit(after) {
        return None;
    }
    let port = |c: &SiemConfig| match c.cef_mode() {
        Ok(CefMode::Syslog(protocol)) => Some(c.syslog_port(protocol)),
        _ => None,
    };
    let (was, now) = (port(before)?, port(after)?);
    (was != now).then_some((was, now))
}

/// The destination's URLs, named as the operator gave them: the URL, and Sentinel's token
/// URL when one is set.
fn endpoints(config: &SiemConfig) -> Vec<(&'static str, &str)> {
    let mut urls = vec![("the URL", config.endpoint_url.as_str())];
    if let SiemOptions::Sentinel(o) = &config.extra {
        urls.extend(o.token_url.as_deref().map(|url| ("the token URL", url)));
    }
    urls
}

/// Whether `url` starts with `scheme` (as `http://`), whatever its case.
fn has_scheme(url: &str, scheme: &str) -> bool {
    url.trim()
        .get(..scheme.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
}

/// The destination's HTTP endpoints that are not encrypted (`http://`).
fn cleartext_endpoints(config: &SiemConfig) -> Vec<&'static str> {
    endpoints(config)
        .into_iter()
        .filter(|(_, url)| has_scheme(url, "http://"))
        .map(|(name, _)| name)
        .collect()
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
    // Enabled or disabled is the operator's choice for the customer, whatever its SIEM:
    // staging a new SIEM for a disabled customer must not start delivering its backlog.
    let enabled = previous.is_none_or(|p| p.enabled);
    let previous = previous.filter(|p| p.siem_type == siem_type);
    check_options_fit(siem_type, args)?;
    let given_token = read_token(args)?;
    let token_given = given_token.is_some();
    let token = match given_token {
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
    settle_cef_port(&mut config, args.port)?;
    if let Some(p) = previous {
        config.batch_size = p.batch_size;
        config.flush_interval_seconds = p.flush_interval_seconds;
        config.retry_count = p.retry_count;
        config.timeout_seconds = p.timeout_seconds;
        config.tls = p.tls.clone();
    }
    config.enabled = enabled;
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
    check_what_is_given_has_a_use(&config, args, token_given)?;
    // Building the adapter checks what validation cannot: certificates, keys, the syslog target.
    raxe_adapters::create_siem_adapter(config.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(config)
}

/// What `configure` refuses though the file would load: names Azure answers 404 for, a
/// token CEF over syslog never sends, TLS options without TLS.
fn check_what_is_given_has_a_use(
    config: &SiemConfig,
    args: &ConfigureArgs,
    token_given: bool,
) -> Result<()> {
    // The names given now (a file with other forms keeps them: see check_azure_names),
    // unless the URL names the DCR and stream itself.
    if let SiemOptions::Sentinel(o) = &config.extra {
        let named_by_url = config.endpoint_url.contains("/dataCollectionRules/");
        let given = args.dcr_id.is_some() || args.stream.is_some();
        if o.api == SentinelApi::LogsIngestion && given && !named_by_url {
            raxe_adapters::sentinel_ingestion::check_azure_names(o)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    let uri = config.uri().ok();
    // "host:" with no port means the scheme's default, which is rarely what was meant.
    let authority = uri.as_ref().and_then(|u| u.authority());
    if authority.is_some_and(|a| a.as_str().ends_with(':')) {
        bail!("the URL has a ':' but no port after it; give the port, or leave out the ':'");
    }
    // Azure's Data Collector host is the workspace's own: another one's would refuse the
    // signature (403) for good.
    if let SiemOptions::Sentinel(o) = &config.extra {
        let host = authority.map(|a| a.host().to_ascii_lowercase());
        let workspace_of_host = host
            .as_deref()
            .and_then(|h| h.strip_suffix(".ods.opinsights.azure.com"));
        if o.api == SentinelApi::DataCollector
            && workspace_of_host.is_some_and(|w| !w.eq_ignore_ascii_case(&o.workspace_id))
        {
            bail!(
                "the URL's host is workspace {}'s, not --workspace-id {}'s",
                workspace_of_host.unwrap_or_default(),
                o.workspace_id
            );
        }
    }
    if token_given && matches!(config.cef_mode(), Ok(CefMode::Syslog(_))) {
        bail!(
            "CEF over syslog has no credential: --token, --token-file and --token-env are not used"
        );
    }
    let tls_given = args.insecure_skip_verify
        || args.ca_cert.is_some()
        || args.client_cert.is_some()
        || args.client_key.is_some();
    if tls_given && !speaks_tls(config) {
        bail!(
            "--insecure-skip-verify, --ca-cert, --client-cert and --client-key apply to TLS, \
             which this destination does not use: give an https:// URL, or --tls for CEF over \
             syslog"
        );
    }
    Ok(())
}

/// Whether the destination talks TLS anywhere: CEF over syslog with `tls`, or an https://
/// URL (Sentinel's token URL counts).
fn speaks_tls(config: &SiemConfig) -> bool {
    match config.cef_mode() {
        Ok(CefMode::Syslog(protocol)) => protocol == SyslogProtocol::Tls,
        _ => endpoints(config)
            .iter()
            .any(|(_, url)| has_scheme(url, "https://")),
    }
}

fn read_token(args: &ConfigureArgs) -> Result<Option<Secret>> {
    let (text, from) = if let Some(token) = &args.token {
        (token.clone(), "--token".to_string())
    } else if let Some(path) = &args.token_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the token file {}", path.display()))?;
        (text, format!("the token file {}", path.display()))
    } else if let Some(var) = &args.token_env {
        let text = std::env::var(var)
            .with_context(|| format!("the environment variable {var} is not set"))?;
        (text, format!("the environment variable {var}"))
    } else {
        return Ok(None);
    };
    Ok(Some(Secret::new(clean_token(&text, &from)?)))
}

/// A token as a SIEM issues it: without the spaces and line ends around it (a file saved by
/// an editor, `echo "$T " >`), refused if empty or with spaces or control characters inside:
/// no SIEM issues such a token, and it would be refused as a wrong one. The error never
/// shows the token.
fn clean_token(text: &str, from: &str) -> Result<String> {
    let token = text.trim();
    if token.is_empty() {
        bail!("{from} is empty");
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!(
            "{from} holds spaces or control characters inside the token (two lines, or more \
             than the token?)"
        );
    }
    Ok(token.to_string())
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
                given("--ack-max-pending", args.ack_max_pending.is_some()),
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
            ack_max_pending,
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
            set(ack_max_pending, &args.ack_max_pending);
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

/// CEF takes its port once: `--port`, or the URL's. A URL with a port replaces a `--port`
/// given before.
fn settle_cef_port(config: &mut SiemConfig, port: Option<u16>) -> Result<()> {
    let in_url = config.uri().ok().and_then(|uri| uri.port_u16());
    let SiemOptions::Cef(cef) = &mut config.extra else {
        return Ok(());
    };
    match (port, in_url) {
        (Some(port), Some(in_url)) if port != in_url => {
            bail!("--port {port} differs from the port in --url ({in_url}): give the port once")
        }
        (Some(port), _) => cef.port = Some(port),
        (None, Some(_)) => cef.port = None,
        (None, None) => {}
    }
    Ok(())
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
