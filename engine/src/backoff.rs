//! Retry pacing: exponential growth (backon's schedule) with full jitter, honouring the
//! peer's `Retry-After`, in two phases. First `retry_count` quick retries of the same
//! request; then the destination is degraded and retried on a capped schedule, forever:
//! events are never dropped for being slow.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// Pacing knobs. The defaults suit a SIEM across the internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// First quick-retry delay (before jitter).
    pub initial: Duration,
    /// Ceiling of a quick-retry delay.
    pub quick_max: Duration,
    /// Ceiling of the degraded schedule.
    pub degraded_max: Duration,
    /// Longest `Retry-After` we obey; a larger one is clamped so a bad header cannot park a
    /// destination for days.
    pub retry_after_max: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_millis(200),
            quick_max: Duration::from_secs(5),
            degraded_max: Duration::from_secs(60),
            retry_after_max: Duration::from_secs(600),
        }
    }
}

/// One destination's retry state.
#[derive(Debug)]
pub struct Backoff {
    policy: BackoffPolicy,
    quick: ExponentialBackoff,
    degraded: ExponentialBackoff,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Self {
        Backoff {
            policy,
            quick: schedule(policy.initial, policy.quick_max),
            degraded: schedule(
                policy.initial.max(Duration::from_secs(1)),
                policy.degraded_max,
            ),
        }
    }

    /// Delay before the next quick retry of the same request.
    pub fn next_quick(&mut self, retry_after: Option<Duration>) -> Duration {
        let base = self.quick.next().unwrap_or(self.policy.quick_max);
        self.pick(base, retry_after)
    }

    /// Delay before the next attempt while degraded.
    pub fn next_degraded(&mut self, retry_after: Option<Duration>) -> Duration {
        let base = self.degraded.next().unwrap_or(self.policy.degraded_max);
        self.pick(base, retry_after)
    }

    /// Starts a new quick-retry series (a new request is being sent).
    pub fn reset_quick(&mut self) {
        self.quick = schedule(self.policy.initial, self.policy.quick_max);
    }

    /// Forget everything: the destination delivered again.
    pub fn reset(&mut self) {
        *self = Backoff::new(self.policy);
    }

    fn pick(&self, base: Duration, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            // The peer named its price: wait exactly that (bounded), no jitter below it.
            Some(after) if after >= self.policy.initial => after.min(self.policy.retry_after_max),
            // `Retry-After: 0`, or a date already past (clocks apart): our own schedule, or a
            // peer that says so would be retried at once, forever.
            _ => full_jitter(base),
        }
    }
}

fn schedule(min: Duration, max: Duration) -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_factor(2.0)
        .without_max_times()
        .build()
}

/// Uniform in [0, base]: spreads a fleet of workers so they do not retry in lockstep.
fn full_jitter(base: Duration) -> Duration {
    let nanos = base.as_nanos().min(u64::MAX as u128) as u64;
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_delays_stay_within_the_exponential_envelope() {
        let policy = BackoffPolicy::default();
        let mut backoff = Backoff::new(policy);
        let mut ceiling = policy.initial;
        for _ in 0..10 {
            let delay = backoff.next_quick(None);
            assert!(delay <= ceiling, "{delay:?} above {ceiling:?}");
            ceiling = (ceiling * 2).min(policy.quick_max);
        }
    }

    #[test]
    fn retry_after_is_obeyed_and_clamped() {
        let mut backoff = Backoff::new(BackoffPolicy::default());
        assert_eq!(
            backoff.next_quick(Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            backoff.next_degraded(Some(Duration::from_secs(86_400))),
            Duration::from_secs(600)
        );
    }

    #[test]
    fn a_zero_retry_after_falls_back_to_the_schedule() {
        let policy = BackoffPolicy::default();
        let mut backoff = Backoff::new(policy);
        let waited: Duration = (0..20)
            .map(|_| backoff.next_degraded(Some(Duration::ZERO)))
            .sum();
        // 20 degraded delays: each jittered in [0, 1 s .. 60 s]; all zero has odds ~0.
        assert!(waited >= Duration::from_secs(1), "{waited:?}");
        assert!(waited <= 20 * policy.degraded_max);
    }

    #[test]
    fn degraded_schedule_is_capped_forever() {
        let policy = BackoffPolicy::default();
        let mut backoff = Backoff::new(policy);
        for _ in 0..1_000 {
            assert!(backoff.next_degraded(None) <= policy.degraded_max);
        }
    }
}
