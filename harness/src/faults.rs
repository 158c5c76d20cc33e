//! The receiver fault schedule.

use super::*;

/// Breaks the receivers at fixed fractions of the kill phase.
pub(crate) async fn fault_schedule(
    dests: Arc<Vec<Dest>>,
    raxe: Arc<Raxe>,
    log: Arc<Mutex<Vec<String>>>,
    reconfigures: Arc<Mutex<usize>>,
    batch: usize,
    phase: Duration,
) -> Result<Vec<String>> {
    let mut failures = Vec::new();
    let start = tokio::time::Instant::now();
    let at = |f: f64| start + phase.mul_f64(f);
    let note = |s: String| log.lock().unwrap().push(s);
    let http = |d: &Dest| d.kind.can_reject();

    tokio::time::sleep_until(at(0.10)).await;
    for d in dests.iter().filter(|d| http(d)) {
        for _ in 0..4 {
            d.rx.fault(Fault::Status {
                status: 503,
                code: 9,
                retry_after: None,
            });
        }
    }
    note("503 burst ×4 (http)".into());

    tokio::time::sleep_until(at(0.20)).await;
    for d in dests.iter().filter(|d| http(d)) {
        d.rx.fault(Fault::Status {
            status: 429,
            code: 9,
            retry_after: Some(1),
        });
    }
    note("429 + Retry-After: 1 (http)".into());

    // A rotated credential, fixed by reconfiguring while serve runs.
    tokio::time::sleep_until(at(0.30)).await;
    let rotate: Vec<&Dest> = dests
        .iter()
        .filter(|d| d.kind.rotates_credential())
        .collect();
    for d in &rotate {
        let new = if d.kind == DestKind::Sentinel {
            ROTATED_KEY
        } else {
            ROTATED_TOKEN
        };
        d.rx.set_token(new);
    }
    if !rotate.is_empty() {
        note(format!(
            "credential rotated at the SIEM ({}) then fixed with `raxe customer siem configure` 2 s later",
            rotate.iter().map(|d| d.kind.name()).collect::<Vec<_>>().join("+")
        ));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for d in &rotate {
        let new = if d.kind == DestKind::Sentinel {
            ROTATED_KEY
        } else {
            ROTATED_TOKEN
        };
        let args = d.configure_args(batch, Some(new), None);
        let r = raxe.clone();
        tokio::task::spawn_blocking(move || r.run_ok(&args)).await??;
        *reconfigures.lock().unwrap() += 1;
    }

    tokio::time::sleep_until(at(0.45)).await;
    for d in dests.iter() {
        d.rx.fault(Fault::Hang);
    }
    note(format!(
        "hang past the {TIMEOUT_SECS} s timeout (http) / 1 s read stall (syslog)"
    ));

    // The untrusted certificate: nothing may have got through; then trust the CA.
    tokio::time::sleep_until(at(0.50)).await;
    for d in dests.iter() {
        let Some(proxy) = &d.tls else { continue };
        let (through, refused) = (d.rx.count(), proxy.handshake_failures());
        note(format!(
            "TLS certificate from an unknown CA ({}): {refused} handshakes refused by the client, {through} events got through, then fixed with --ca-cert",
            d.kind.name()
        ));
        if through > 0 {
            failures.push(format!(
                "{}: {through} events delivered to a server whose certificate the client should have rejected",
                d.kind.name()
            ));
        }
        if refused == 0 {
            failures.push(format!(
                "{}: the client never tried (and refused) the untrusted server",
                d.kind.name()
            ));
        }
        let args = d.configure_args(batch, None, Some(&proxy.ca_pem));
        let r = raxe.clone();
        tokio::task::spawn_blocking(move || r.run_ok(&args)).await??;
        *reconfigures.lock().unwrap() += 1;
    }

    tokio::time::sleep_until(at(0.60)).await;
    for d in dests.iter().filter(|d| http(d)) {
        d.rx.fault(Fault::Reset);
        d.rx.fault(Fault::Reset);
    }
    note("connection reset ×2 (http)".into());

    tokio::time::sleep_until(at(0.75)).await;
    for d in dests.iter() {
        d.rx.fault(Fault::Slow(Duration::from_millis(1200)));
        d.rx.fault(Fault::Status {
            status: 500,
            code: 8,
            retry_after: None,
        });
    }
    note("slow answer 1.2 s + 500 (http) / read stall (syslog)".into());
    note("poison events answered 400 (http)".into());
    Ok(failures)
}
