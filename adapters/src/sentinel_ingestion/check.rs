//! `siem test` for the Logs Ingestion API: the token exchange, an empty array to the DCR
//! (proves endpoint, DCR id, stream and role without writing a record), then one test
//! event, one line per step, stopping at the first failure. Lines never carry a secret.

use std::time::Instant;

use super::{classify_answer, classify_token_error, LogsIngestionAdapter};
use crate::adapter::SiemAdapter;
use crate::event::ScanEvent;
use crate::outcome::Outcome;
use crate::request::Response;

/// One reported step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub ok: bool,
    pub line: String,
}

fn step(ok: bool, line: String) -> Step {
    Step { ok, line }
}

fn reason(outcome: Outcome) -> String {
    match outcome {
        Outcome::Delivered => "accepted".into(),
        Outcome::Retry { reason, .. }
        | Outcome::Rejected { reason, .. }
        | Outcome::TooLarge { reason }
        | Outcome::AuthFailed { reason }
        | Outcome::Misconfigured { reason } => reason,
    }
}

impl LogsIngestionAdapter {
    /// Runs the steps; the last one failed when `!ok`.
    pub async fn connection_test(&self, event: &ScanEvent) -> Vec<Step> {
        let mut steps = Vec::new();
        let started = Instant::now();
        if let Err(e) = self.acquire_token().await {
            let why = reason(classify_token_error(&e));
            steps.push(step(
                false,
                format!("Token request failed (Entra ID): {why}"),
            ));
            return steps;
        }
        let ms = started.elapsed().as_millis();
        steps.push(step(true, format!("Token acquired (Entra ID, {ms} ms)")));
        let started = Instant::now();
        match self.post_empty().await {
            Ok(Response::Http(resp)) => {
                let status = resp.status.as_u16();
                match classify_answer(&resp) {
                    Outcome::Delivered => steps.push(step(
                        true,
                        format!(
                            "Connection successful (HTTP {status}, {} ms): the DCR stream \
                             accepts an empty array",
                            started.elapsed().as_millis()
                        ),
                    )),
                    other => {
                        let why = reason(other);
                        steps.push(step(
                            false,
                            format!("Logs Ingestion refused an empty array (HTTP {status}): {why}"),
                        ));
                        return steps;
                    }
                }
            }
            Ok(Response::SyslogWritten) => {
                steps.push(step(false, "unexpected syslog answer".into()));
                return steps;
            }
            Err(e) => {
                steps.push(step(false, format!("Connection failed: {e}")));
                return steps;
            }
        }
        let batch = self.encode(std::slice::from_ref(event));
        let Some(request) = batch.requests.first() else {
            let why = batch
                .oversized
                .first()
                .map(|(_, r)| r.clone())
                .unwrap_or_default();
            steps.push(step(
                false,
                format!("The test event cannot be encoded: {why}"),
            ));
            return steps;
        };
        let answer = self.send(request).await;
        steps.push(match self.classify(request, &answer) {
            Outcome::Delivered => step(
                true,
                format!("Test event delivered (event_id {})", event.event_id),
            ),
            other => step(false, format!("Test event not accepted: {}", reason(other))),
        });
        steps
    }
}
