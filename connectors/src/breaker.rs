//! The circuit breaker: one per source, so that a source that keeps failing is answered for at once instead of waited on.
//!
//! After `failure_threshold` consecutive failures the breaker opens and every call fails at once with [`ConnectorError::CircuitOpen`](crate::ConnectorError::CircuitOpen).
//! After `open_for` it lets exactly one probe through (half-open): a success closes it, a failure opens it for another `open_for`.
//! The state sits behind a std mutex held only for a few instructions and never across an await.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When a source's breaker opens, and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Consecutive failures (timeouts, unreachable, 5xx, 429, malformed answers) that open the breaker. A 4xx refusal is not a failure: the source answered.
    pub failure_threshold: u32,
    /// How long an open breaker refuses calls before it lets one probe through.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(5),
        }
    }
}

/// A breaker's state, as reported in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls fail at once.
    Open,
    /// One probe is in flight; other calls fail at once until it settles.
    HalfOpen,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

#[derive(Debug)]
pub(crate) struct Breaker {
    config: BreakerConfig,
    phase: Mutex<Phase>,
}

/// Leave to send one request. Settle it with [`Permit::succeeded`] or [`Permit::failed`]; dropping it unsettled (a cancelled call) lets another probe through.
#[derive(Debug)]
pub(crate) struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    settled: bool,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            phase: Mutex::new(Phase::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Phase> {
        // The phase is a plain value that every writer leaves whole, so a panic elsewhere cannot leave it half-written.
        self.phase
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Leave to send a request, or `None` if the breaker is open or its one probe is already in flight.
    pub fn acquire(&self) -> Option<Permit<'_>> {
        let mut phase = self.lock();
        let probe = match *phase {
            Phase::Closed { .. } => false,
            Phase::Open { until } if Instant::now() >= until => {
                *phase = Phase::HalfOpen;
                true
            }
            Phase::Open { .. } | Phase::HalfOpen => return None,
        };
        Some(Permit {
            breaker: self,
            probe,
            settled: false,
        })
    }

    /// Whether a request would be let through now, without taking the leave.
    pub fn allows(&self) -> bool {
        match *self.lock() {
            Phase::Closed { .. } => true,
            Phase::Open { until } => Instant::now() >= until,
            Phase::HalfOpen => false,
        }
    }

    pub fn state(&self) -> BreakerState {
        match *self.lock() {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen => BreakerState::HalfOpen,
        }
    }

    /// Counts a failure found after the request settled, such as an answer that does not parse.
    pub fn record_failure(&self) {
        self.settle(false, false);
    }

    fn settle(&self, probe: bool, success: bool) {
        let mut phase = self.lock();
        let open = Phase::Open {
            until: Instant::now() + self.config.open_for,
        };
        *phase = match (*phase, success) {
            (Phase::Closed { .. }, true) => Phase::Closed { failures: 0 },
            (Phase::Closed { failures }, false) => {
                let failures = failures.saturating_add(1);
                if failures >= self.config.failure_threshold.max(1) {
                    open
                } else {
                    Phase::Closed { failures }
                }
            }
            (Phase::HalfOpen, true) if probe => Phase::Closed { failures: 0 },
            (Phase::HalfOpen, false) if probe => open,
            // Only the probe decides a half-open breaker, and an open one waits out its time: a late answer to a request sent before it opened changes nothing.
            (other, _) => other,
        };
    }
}

impl Permit<'_> {
    pub fn succeeded(mut self) {
        self.settled = true;
        self.breaker.settle(self.probe, true);
    }

    pub fn failed(mut self) {
        self.settled = true;
        self.breaker.settle(self.probe, false);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.probe && !self.settled {
            // A probe whose caller went away proved nothing: the next call may probe at once.
            let mut phase = self.breaker.lock();
            if matches!(*phase, Phase::HalfOpen) {
                *phase = Phase::Open {
                    until: Instant::now(),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32, open_for: Duration) -> Breaker {
        Breaker::new(BreakerConfig {
            failure_threshold: threshold,
            open_for,
        })
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let b = breaker(3, Duration::from_secs(60));
        b.acquire().unwrap().failed();
        b.acquire().unwrap().failed();
        b.acquire().unwrap().succeeded();
        b.acquire().unwrap().failed();
        b.acquire().unwrap().failed();
        assert_eq!(b.state(), BreakerState::Closed);
        b.acquire().unwrap().failed();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.acquire().is_none());
        assert!(!b.allows());
    }

    #[test]
    fn lets_one_probe_through_after_open_for() {
        let b = breaker(1, Duration::ZERO);
        b.acquire().unwrap().failed();
        let probe = b.acquire().unwrap();
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.acquire().is_none(), "only one probe at a time");
        probe.failed();
        assert_eq!(b.state(), BreakerState::Open);
        b.acquire().unwrap().succeeded();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_dropped_probe_lets_the_next_call_probe() {
        let b = breaker(1, Duration::ZERO);
        b.acquire().unwrap().failed();
        drop(b.acquire().unwrap());
        assert!(b.acquire().is_some());
    }

    #[test]
    fn a_late_success_does_not_close_an_open_breaker() {
        let b = breaker(1, Duration::from_secs(60));
        let late = b.acquire().unwrap();
        b.acquire().unwrap().failed();
        late.succeeded();
        assert_eq!(b.state(), BreakerState::Open);
    }
}
