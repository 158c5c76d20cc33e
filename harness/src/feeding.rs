//! Generating events and feeding them through the spool and `raxe ingest`.

use super::*;

pub(crate) fn event_line(seq: usize, dest: DestKind) -> String {
    format!(
        r#"{{"event_id":"h-{seq}","timestamp":1769769000123,"event_type":"scan","threat_detected":true,"severity":"high","rule_ids":["pi-001"],"families":["PI"],"prompt_hash":"sha256:ab","prompt_length":42,"customer_id":"{}","mssp_id":"{MSSP}","agent_id":"harness"}}"#,
        dest.customer()
    )
}

/// Feeds every event in chunks: most as spool files (`.tmp` + rename), every fourth chunk
/// through `raxe ingest FILE`. Returns events handed over per destination index.
#[allow(clippy::too_many_arguments)]
pub(crate) fn feed(
    raxe: &Raxe,
    work: &Path,
    kinds: &[DestKind],
    events: usize,
    pace: Duration,
    seed: u64,
    notes: &Mutex<Vec<String>>,
    fed: &AtomicUsize,
) -> Result<Vec<usize>> {
    let mut rng = fastrand::Rng::with_seed(seed ^ 0xfeed);
    let spool = raxe.data.join("spool");
    let mut handed = vec![0usize; kinds.len()];
    let mut seq = 0;
    let mut chunk_no = 0;
    while seq < events {
        let n = rng.usize(20..=500).min(events - seq);
        let mut body = String::with_capacity(n * 300);
        let mut per = vec![0usize; kinds.len()];
        for s in seq..seq + n {
            let i = s % kinds.len();
            per[i] += 1;
            body.push_str(&event_line(s, kinds[i]));
            body.push('\n');
        }
        if chunk_no % 4 == 3 {
            let file = work.join(format!("ingest-{chunk_no:06}.jsonl"));
            fs::write(&file, &body)?;
            let args = vec!["ingest".to_string(), file.display().to_string()];
            let mut attempts = 0;
            loop {
                attempts += 1;
                let out = raxe.run(&args)?;
                let said = String::from_utf8_lossy(&out.stdout).to_string();
                let accepted = said
                    .split_whitespace()
                    .skip_while(|w| *w != "accepted")
                    .nth(1)
                    .and_then(|w| w.trim_end_matches(',').parse::<usize>().ok());
                if out.status.success() && accepted == Some(n) {
                    break;
                }
                let msg = format!(
                    "raxe ingest {} (attempt {attempts}) said: {} {}",
                    file.display(),
                    said.trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                if accepted.is_some() || attempts >= 20 {
                    bail!("{msg}");
                }
                // E.g. the spool handover raced a restart; nothing was accepted: try again.
                notes.lock().unwrap().push(msg);
                std::thread::sleep(Duration::from_millis(100));
            }
            fs::remove_file(&file)?;
        } else {
            let name = format!("feed-{chunk_no:06}.jsonl");
            let tmp = spool.join(format!("{name}.tmp"));
            let mut f = File::create(&tmp)?;
            f.write_all(body.as_bytes())?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, spool.join(&name))?;
        }
        for (h, p) in handed.iter_mut().zip(per) {
            *h += p;
        }
        seq += n;
        chunk_no += 1;
        fed.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(pace);
    }
    Ok(handed)
}
