//! `siem show` and `siem list`: the configuration with the token masked, plus live queue
//! figures from the queues or the running service.

use std::io::IsTerminal;

use anyhow::Result;
use raxe_adapters::config::SentinelApi;
use serde_json::{json, Value};

use super::existing;
use crate::commands::{describe_queue, human_age, live_stats};
use crate::config_store::{ConfigStore, Scope};
use crate::data_dir::DataDir;

pub(super) fn show(
    data: &DataDir,
    configs: &ConfigStore,
    scope: &Scope,
    json_out: bool,
) -> Result<i32> {
    let record = existing(configs, scope)?;
    let id = record.id();
    let live = live_stats(data).ok();
    let report = live.as_ref().and_then(|(stats, _)| {
        stats["destinations"]
            .as_array()
            .and_then(|all| all.iter().find(|d| d["id"] == id.as_str()).cloned())
    });
    let config = &record.config;
    let options = config.extra.to_shown_json();
    if json_out {
        let out = json!({
            "id": id,
            "scope": record.scope,
            "type": config.siem_type.to_string(),
            "url": config.redacted_url(),
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
    println!("  URL:           {}", config.redacted_url());
    println!("  Token:         {}", mask(config.auth_token.expose()));
    if let Value::Object(map) = &options {
        // Indexer-ack settings say nothing while acks are off.
        let acks_off = map.get("ack") == Some(&Value::Bool(false));
        for (key, value) in map {
            if acks_off && key.starts_with("ack_") {
                continue;
            }
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
    if config.sentinel_api() == Some(SentinelApi::DataCollector) {
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
            let when = match report["state_as_of_ms"].as_u64() {
                Some(ms) => {
                    let age = raxe_engine::audit::now_ms().saturating_sub(ms);
                    format!(
                        " (as the last run left it, {} ago)",
                        human_age(age as f64 / 1000.0)
                    )
                }
                None => String::new(),
            };
            println!(
                "  State:         {}{when}",
                describe_state(&report["state"])
            );
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
                    format!("{} ago", human_age(age))
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

pub(super) fn list(
    data: &DataDir,
    configs: &ConfigStore,
    listed: impl Fn(&Scope) -> bool,
    json_out: bool,
) -> Result<i32> {
    let (records, problems) = configs.list()?;
    for problem in &problems {
        eprintln!("⚠ {problem}");
    }
    let records: Vec<_> = records.into_iter().filter(|r| listed(&r.scope)).collect();
    // Files that cannot be used still name a destination (which may run on the
    // configuration it last ran with): listed as such, never as "nothing configured".
    let broken: Vec<String> = problems
        .iter()
        .filter_map(|p| p.id.clone())
        .filter(|id| Scope::from_destination_id(id).is_some_and(|s| listed(&s)))
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
                    "url": r.config.redacted_url(),
                    "enabled": r.config.enabled,
                    "queued": queued(&r.id()),
                })
            })
            .chain(broken.iter().map(|id| {
                json!({
                    "id": id,
                    "queued": queued(id),
                    "error": "its configuration file cannot be used",
                })
            }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    if records.is_empty() && broken.is_empty() {
        println!("No SIEM destinations configured.");
        return Ok(0);
    }
    let tty = std::io::stdout().is_terminal();
    println!(
        "{:<36} {:<12} {:<8} {:>9}  URL",
        "DESTINATION", "TYPE", "ENABLED", "QUEUED"
    );
    for r in &records {
        let mut url = r.config.redacted_url();
        if tty && url.chars().count() > 60 {
            url = url.chars().take(57).collect();
            url.push_str("...");
        }
        println!(
            "{:<36} {:<12} {:<8} {:>9}  {url}",
            r.id(),
            r.config.siem_type.to_string(),
            if r.config.enabled { "yes" } else { "no" },
            cell(queued(&r.id())),
        );
    }
    for id in &broken {
        println!(
            "{:<36} {:<12} {:<8} {:>9}  (its configuration file cannot be used: see above)",
            id,
            "?",
            "?",
            cell(queued(id)),
        );
    }
    Ok(0)
}

/// A count for a table cell; "-" when not known.
fn cell(n: Option<u64>) -> String {
    n.map_or_else(|| "-".into(), |n| n.to_string())
}
