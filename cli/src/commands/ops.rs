//! `raxe ingest`, `stats` and `dlq`.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{bail, Context, Result};
use raxe_adapters::event::{JsonEvent, ScanEvent};
use raxe_engine::dead_letter::{ops as dlq_ops, DeadLetter};
use raxe_storage::QueueStore;
use serde_json::Value;

use super::siem::describe_state;
use super::{live_stats, Source};
use crate::args::DlqCommand;
use crate::config_store::{ConfigStore, Scope};
use crate::control;
use crate::data_dir::DataDir;
use crate::host::{Host, OpenError};
use crate::spool::{line_text, read_line_bounded, Step};

/// Reads JSON lines, queues the good ones durably (or hands them to the running service
/// through its spool) and reports bad lines on stderr. Exit 1 when any line was rejected.
pub fn ingest(data: &DataDir, file: &str) -> Result<i32> {
    let input: Box<dyn BufRead> = if file == "-" {
        Box::new(BufReader::new(io::stdin().lock()))
    } else {
        Box::new(BufReader::new(
            File::open(file).with_context(|| format!("cannot open {file}"))?,
        ))
    };
    match Host::open(data.clone()) {
        Ok(host) => ingest_direct(&host, input),
        Err(OpenError::InUse(_)) => ingest_via_spool(data, input),
        Err(OpenError::Other(e)) => Err(e),
    }
}

fn for_each_line(
    mut input: Box<dyn BufRead>,
    mut good: impl FnMut(ScanEvent, &[u8]) -> Result<()>,
) -> Result<usize> {
    let mut line = Vec::new();
    let mut line_no = 0;
    let mut rejected = 0;
    loop {
        line.clear();
        let (n, too_long) =
            read_line_bounded(&mut input, &mut line, raxe_adapters::event::MAX_EVENT_BYTES)?;
        if n == 0 {
            return Ok(rejected);
        }
        line_no += 1;
        let text = line_text(&line, line_no);
        // A line over the limit is rejected even if all that was kept of it is blanks.
        if text.is_empty() && !too_long {
            continue;
        }
        let parsed = if too_long {
            Err("event is over 1 MiB".to_string())
        } else {
            ScanEvent::parse_line(text, line_no).map_err(|e| e.to_string())
        };
        match parsed {
            Ok(mut event) => {
                event.fill_blank_id();
                good(event, text)?
            }
            Err(reason) => {
                rejected += 1;
                // A parse error names its line already.
                let prefix = format!("line {line_no}: ");
                let reason = reason.strip_prefix(&prefix).unwrap_or(&reason);
                eprintln!("line {line_no}: rejected: {reason}");
            }
        }
    }
}

fn ingest_direct(host: &Host, input: Box<dyn BufRead>) -> Result<i32> {
    let mut batch = Vec::new();
    let mut step = Step::default();
    let (mut accepted, mut unrouted) = (0, 0);
    let mut flush = |batch: &mut Vec<ScanEvent>| -> Result<()> {
        let report = host.dispatcher.dispatch_batch(batch)?;
        accepted += report.accepted;
        unrouted += report.unrouted;
        batch.clear();
        Ok(())
    };
    let mut without_mssp = 0;
    let rejected = for_each_line(input, |event, raw| {
        without_mssp += usize::from(event.mssp_id.is_none());
        step.add(&event.customer_id, event.mssp_id.as_deref(), raw.len());
        batch.push(event);
        if step.complete() {
            step.reset();
            flush(&mut batch)?;
        }
        Ok(())
    })?;
    flush(&mut batch)?;
    println!("accepted {accepted}, rejected {rejected}");
    if unrouted > 0 {
        println!("{unrouted} of the accepted events have no destination yet: they are kept and delivered once their customer's SIEM is configured");
        let without_mssp = without_mssp.min(unrouted);
        if without_mssp > 0 {
            println!("  {without_mssp} of them have no mssp_id: customer SIEMs belong to an MSSP, so only a global SIEM (`raxe global siem configure`) receives those");
        }
    }
    Ok(if rejected > 0 { 1 } else { 0 })
}

/// The running service owns the queues: write the good lines to a spool file and publish
/// it by rename. The service makes them durable on its next poll.
fn ingest_via_spool(data: &DataDir, input: Box<dyn BufRead>) -> Result<i32> {
    let stamp = raxe_engine::audit::now_ms();
    let name = format!("raxe-ingest-{}-{stamp}.jsonl", std::process::id());
    // The spool the service reads (`serve --spool`), not necessarily the default one.
    let spool = crate::status::spool_dir(data);
    let tmp = spool.join(format!("{name}.tmp"));
    let mut out = io::BufWriter::new(
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?,
    );
    let mut accepted = 0;
    let rejected = for_each_line(input, |_, raw| {
        out.write_all(raw)?;
        out.write_all(b"\n")?;
        accepted += 1;
        Ok(())
    })?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    if accepted == 0 {
        fs::remove_file(&tmp)?;
    } else {
        fs::rename(&tmp, spool.join(&name))?;
        File::open(&spool)?.sync_all()?;
    }
    let holder = match crate::status::drain_holds(data) {
        true => "the running `raxe drain`",
        false => "the running service",
    };
    println!("accepted {accepted}, rejected {rejected} (handed to {holder} through its spool)");
    Ok(if rejected > 0 { 1 } else { 0 })
}

/// `raxe stats`.
pub fn stats(data: &DataDir, json_out: bool) -> Result<i32> {
    let (stats, source) = live_stats(data)?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&stats)?);
        return Ok(0);
    }
    println!("Delivery statistics ({})", source.describe());
    let row = |name: &str, c: &Value, queue: Option<&Value>, state: Option<String>| {
        let total = c["total_deliveries"].as_u64().unwrap_or(0);
        let ok = c["successful"].as_u64().unwrap_or(0);
        // No request yet: no rate to show (100% would claim a success).
        let rate = match total {
            0 => "-".to_string(),
            _ => format!("{:.1}%", ok as f64 * 100.0 / total as f64),
        };
        println!(
            "{:<36} {:>9} {:>9} {:>7} {:>8} {:>8} {:>10} {:>10}  {}",
            name,
            total,
            ok,
            c["failed"].as_u64().unwrap_or(0),
            c["dead_lettered"].as_u64().unwrap_or(0),
            rate,
            queue
                .map(|q| q["events"].as_u64().unwrap_or(0).to_string())
                .unwrap_or_default(),
            queue
                .and_then(|q| q["oldest_age_seconds"].as_f64())
                .map(super::human_age)
                .unwrap_or_else(|| "-".into()),
            state.unwrap_or_default(),
        );
    };
    // A state read from the last run's figures says so.
    let state_of = |dest: &Value| {
        let state = describe_state(&dest["state"]);
        match dest["state_as_of_ms"].is_u64() {
            true => format!("{state} (last run)"),
            false => state,
        }
    };
    println!(
        "{:<36} {:>9} {:>9} {:>7} {:>8} {:>8} {:>10} {:>10}  STATE",
        "DESTINATION", "REQUESTS", "OK", "FAILED", "DEAD", "SUCCESS", "QUEUED", "OLDEST"
    );
    for dest in stats["destinations"].as_array().into_iter().flatten() {
        row(
            dest["id"].as_str().unwrap_or("?"),
            &dest["counters"],
            Some(&dest["queue"]),
            Some(state_of(dest)),
        );
    }
    row("TOTAL", &stats["total"], None, None);
    super::drain::print_kept_queues(
        stats["kept_queues"]
            .as_array()
            .map_or(&[][..], Vec::as_slice),
    );
    let unrouted = stats["unrouted"]["events"].as_u64().unwrap_or(0);
    // A broken file's destination runs as it last ran, or not at all: say which files.
    let (_, broken) = ConfigStore::new(data.config_dir()).list()?;
    if unrouted > 0 {
        println!(
            "{unrouted} events wait for a destination (their customer has no SIEM configured)"
        );
    }
    for problem in &broken {
        println!("⚠ {problem}; its destination runs with the configuration it last ran with, if `raxe serve` kept one, or not at all");
    }
    if matches!(source, Source::Service { age_ms, running: true, .. } if age_ms > 10_000) {
        println!("⚠ these figures are stale: is raxe serve still running?");
    }
    Ok(0)
}

/// `raxe dlq list|replay|purge`: on the queues directly, or through the running service.
pub fn dlq(data: &DataDir, command: DlqCommand) -> Result<i32> {
    match Host::open(data.clone()) {
        Ok(host) => dlq_on(&host, &command, &mut io::stdout().lock())?,
        Err(OpenError::InUse(_)) => {
            let output = control::call(data, &control::Request::Dlq { command })?;
            print!("{output}");
        }
        Err(OpenError::Other(e)) => return Err(e),
    }
    Ok(0)
}

/// Runs a dead-letter command against an open engine, printing to `out`.
pub fn dlq_on(host: &Host, command: &DlqCommand, out: &mut dyn Write) -> Result<()> {
    let filter = match command {
        DlqCommand::List(list) => &list.filter,
        DlqCommand::Replay(filter) => filter,
        DlqCommand::Purge(purge) => {
            // Deleting is for good: every destination only when asked for by name.
            if purge.filter.mssp.is_none() && !purge.all {
                bail!("purge needs --mssp (and --customer) or --all");
            }
            &purge.filter
        }
    };
    let store = host.dispatcher.store().clone();
    let ids: Vec<String> = host
        .store
        .list_queues()?
        .into_iter()
        .filter_map(|q| raxe_engine::queue_names::dead_letters_of(&q).map(str::to_string))
        .filter(|id| matches_filter(id, filter))
        .collect();
    if ids.is_empty() && !matches!(command, DlqCommand::List(_)) {
        // A named destination with no dead-letter queue is most likely a typo: an error.
        if filter.mssp.is_some() {
            bail!("no dead-letter queue matches --mssp/--customer: check the names (`raxe customer siem list`)");
        }
        writeln!(out, "No dead-letter queue; nothing to do.")?;
    }
    let mut total = 0;
    for id in ids {
        match command {
            DlqCommand::List(f) => {
                for letter in dlq_ops::list(store.as_ref(), &id, f.limit)? {
                    total += 1;
                    writeln!(out, "{id}\t{}", dead_letter_columns(&letter))?;
                }
            }
            DlqCommand::Replay(_) => {
                let n = dlq_ops::replay(store.as_ref(), &id)?;
                total += n;
                writeln!(out, "{id}: {n} events re-queued")?;
            }
            DlqCommand::Purge(_) => {
                let n = dlq_ops::purge(store.as_ref(), &id)?;
                total += n;
                writeln!(out, "{id}: {n} dead letters deleted")?;
            }
        }
    }
    if matches!(command, DlqCommand::List(_)) && total == 0 {
        writeln!(out, "No dead letters.")?;
    }
    Ok(())
}

/// A dead letter as `event id ⇥ reason ⇥ event`, on one line: the event as the JSON
/// object it was queued as; a record that does not decode (id `?`), as a JSON string of
/// its bytes. Control characters in the SIEM's reason (a multi-line body) become spaces.
fn dead_letter_columns(letter: &DeadLetter) -> String {
    let reason = one_column(&letter.header.reason);
    let decoded = JsonEvent::from_record(bytes::Bytes::copy_from_slice(&letter.event))
        .and_then(|json| Ok((json.event()?.event_id, json)));
    match decoded {
        Ok((event_id, json)) => format!(
            "{}\t{reason}\t{}",
            one_column(&event_id),
            String::from_utf8_lossy(json.json())
        ),
        Err(_) => {
            let raw =
                serde_json::to_string(&String::from_utf8_lossy(&letter.event)).unwrap_or_default();
            format!("?\t{reason}\t{raw}")
        }
    }
}

/// `text` with its control characters (tabs, newlines) as spaces: one column of one line.
fn one_column(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn matches_filter(id: &str, filter: &crate::args::DlqFilter) -> bool {
    match (&filter.mssp, &filter.customer) {
        (None, _) => true,
        (Some(mssp), customer) => {
            let scope = Scope::Customer {
                mssp_id: mssp.clone(),
                customer_id: customer.clone().unwrap_or_default(),
            };
            match customer {
                Some(_) => id == scope.destination_id(),
                None => id.starts_with(&format!("customer/{mssp}/")),
            }
        }
    }
}
