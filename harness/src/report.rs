//! The per-destination report and the promises it checks.

use super::*;

/// What the run measured, per destination.
#[derive(Debug, Clone, Default)]
pub struct DestReport {
    pub name: String,
    pub handed: usize,
    pub delivered_unique: usize,
    pub accepted_total: usize,
    pub lost: usize,
    pub lost_sample: Vec<String>,
    pub duplicates: usize,
    pub duplicate_bound: usize,
    pub poison: BTreeMap<String, ()>,
    /// Unique dead-lettered ids.
    pub dead_lettered: Vec<String>,
    /// Dead letters repeated (a kill between the dead-letter write and the ack).
    pub dead_letter_repeats: usize,
    pub poison_delivered: usize,
    pub foreign: usize,
    pub requests: u64,
    /// Requests the receiver refused for a wrong credential (the rotation window).
    pub auth_refused: u64,
    /// Per restart: time from restart to the next accepted event (None: none before the
    /// next kill / end of run).
    pub recovery: Vec<Option<Duration>>,
}

/// The whole run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub options_line: String,
    pub dests: Vec<DestReport>,
    pub kills: usize,
    pub restarts_refused: usize,
    pub reconfigures: usize,
    pub faults_injected: Vec<String>,
    pub drained: bool,
    pub drain_time: Duration,
    pub total_time: Duration,
    pub failures: Vec<String>,
    pub notes: Vec<String>,
    pub work_dir: PathBuf,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "raxe-harness crash {}", self.options_line);
        let _ = writeln!(
            s,
            "kills {} (restarts refused while `raxe ingest` held the lock: {}), live reconfigurations {}, drained {} in {:.1}s, total {:.1}s",
            self.kills,
            self.restarts_refused,
            self.reconfigures,
            if self.drained { "yes" } else { "NO" },
            self.drain_time.as_secs_f64(),
            self.total_time.as_secs_f64()
        );
        let _ = writeln!(s, "faults: {}", self.faults_injected.join(", "));
        let _ = writeln!(
            s,
            "\n{:<10} {:>8} {:>9} {:>5} {:>6} {:>6} {:>9} {:>8} {:>8} {:>9} {:>13} {:>13}",
            "dest",
            "handed",
            "delivered",
            "lost",
            "dups",
            "bound",
            "dlq/exp",
            "foreign",
            "requests",
            "auth401/3",
            "recov p50 ms",
            "recov max ms"
        );
        for d in &self.dests {
            let mut rec: Vec<u128> = d.recovery.iter().flatten().map(|r| r.as_millis()).collect();
            rec.sort_unstable();
            let p50 = rec.get(rec.len() / 2).map_or("-".into(), |v| v.to_string());
            let max = rec.last().map_or("-".into(), |v| v.to_string());
            let _ = writeln!(
                s,
                "{:<10} {:>8} {:>9} {:>5} {:>6} {:>6} {:>9} {:>8} {:>8} {:>9} {:>13} {:>13}",
                d.name,
                d.handed,
                d.delivered_unique,
                d.lost,
                d.duplicates,
                d.duplicate_bound,
                if d.dead_letter_repeats > 0 {
                    format!(
                        "{}/{}+{}r",
                        d.dead_lettered.len(),
                        d.poison.len(),
                        d.dead_letter_repeats
                    )
                } else {
                    format!("{}/{}", d.dead_lettered.len(), d.poison.len())
                },
                d.foreign,
                d.requests,
                d.auth_refused,
                format!("{p50} ({}/{})", rec.len(), d.recovery.len()),
                max
            );
        }
        let _ = writeln!(
            s,
            "(dups: accepted more than once; bound: events at risk summed over kills (the batch in flight; with indexer acks, those not yet acked in the queue, and after the drain those the last process sent again); dlq/exp: unique dead letters / poison events, +Nr: dead letters written again after a kill; recov: restart → next accepted event, (restarts with one / restarts))"
        );
        let _ = writeln!(
            s,
            "\nrecovery after each restart (ms to the first accepted event, any destination):"
        );
        let n = self.dests.first().map_or(0, |d| d.recovery.len());
        let mut line = String::new();
        for i in 0..n {
            let first = self
                .dests
                .iter()
                .filter_map(|d| d.recovery.get(i).copied().flatten())
                .min();
            let _ = write!(
                line,
                "{} ",
                first.map_or("-".into(), |d| d.as_millis().to_string())
            );
        }
        let _ = writeln!(s, "  {}", line.trim_end());
        for note in &self.notes {
            let _ = writeln!(s, "note: {note}");
        }
        if self.failures.is_empty() {
            let _ = writeln!(
                s,
                "\nPASS: nothing lost, duplicates within bounds, dead letters = poison events"
            );
        } else {
            let _ = writeln!(s, "\nFAIL:");
            for f in &self.failures {
                let _ = writeln!(s, "  - {f}");
            }
            let _ = writeln!(s, "work directory kept: {}", self.work_dir.display());
        }
        s
    }
}

pub(crate) fn check(d: &DestReport, failures: &mut Vec<String>) {
    let expected_handed = d.handed - d.poison.len();
    if d.lost > 0 {
        failures.push(format!(
            "{}: {} events lost (of {expected_handed}), e.g. {:?}",
            d.name, d.lost, d.lost_sample
        ));
    }
    if d.duplicates > d.duplicate_bound {
        failures.push(format!(
            "{}: {} duplicates, over the bound {} (events at risk at the kills)",
            d.name, d.duplicates, d.duplicate_bound
        ));
    }
    let poison: Vec<&String> = d.poison.keys().collect();
    let dead: Vec<&String> = d.dead_lettered.iter().collect();
    if poison != dead {
        failures.push(format!(
            "{}: dead letters {:?} differ from the poison events {:?}",
            d.name, d.dead_lettered, poison
        ));
    }
    if d.dead_letter_repeats > d.duplicate_bound {
        failures.push(format!(
            "{}: {} repeated dead letters, over the bound {}",
            d.name, d.dead_letter_repeats, d.duplicate_bound
        ));
    }
    if d.poison_delivered > 0 {
        failures.push(format!(
            "{}: {} poison events were accepted (the receiver must refuse them)",
            d.name, d.poison_delivered
        ));
    }
    if d.foreign > 0 {
        failures.push(format!(
            "{}: {} ids the harness never sent (or without an event id)",
            d.name, d.foreign
        ));
    }
}
