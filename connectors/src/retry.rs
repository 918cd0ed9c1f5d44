//! Retries of failed reads: how often, how long apart, and the budget that stops retries from multiplying load on a struggling source.
//!
//! Every call to a source is a GET, so a retry cannot do anything twice.
//! Only failures that may pass are retried: a timeout, a connection failure, a 5xx or a 429.
//! The budget is a token bucket per source: each first attempt deposits `budget_ratio` tokens, up to `budget_max`, and each retry spends one, so that retries never exceed `budget_ratio` × requests + `budget_max`.

use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;

use crate::error::ConnectorError;

/// How a source's failed reads are retried.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryConfig {
    /// Retries after the first attempt, at most. Zero turns retries off.
    pub max_retries: u32,
    /// The backoff before the first retry is drawn from zero up to this, doubling for each further retry.
    pub base_backoff: Duration,
    /// The most any one backoff may be drawn up to.
    pub max_backoff: Duration,
    /// Tokens each first attempt deposits in the retry budget.
    pub budget_ratio: f64,
    /// The most tokens the budget holds, and what it starts with.
    pub budget_max: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: 2,
            base_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(200),
            budget_ratio: 0.2,
            budget_max: 10.0,
        }
    }
}

impl RetryConfig {
    /// The wait before retry number `retry` (0 for the first): full jitter, drawn uniformly from zero up to `min(max_backoff, base_backoff × 2^retry)`.
    /// Drawing from the whole range spreads the retries of many callers that failed together.
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .base_backoff
            .saturating_mul(2u32.saturating_pow(retry.min(31)))
            .min(self.max_backoff);
        let micros = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(rand::thread_rng().gen_range(0..=micros))
    }
}

/// Whether a failure may pass if the same read is sent again.
pub(crate) fn is_retryable(error: &ConnectorError) -> bool {
    matches!(
        error,
        ConnectorError::Timeout { .. } | ConnectorError::Unavailable { .. }
    )
}

/// The token bucket that bounds retries per source.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    ratio: f64,
    max: f64,
    tokens: Mutex<f64>,
}

impl RetryBudget {
    pub fn new(config: &RetryConfig) -> Self {
        let max = config.budget_max.max(0.0);
        Self {
            ratio: config.budget_ratio.max(0.0),
            max,
            tokens: Mutex::new(max),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, f64> {
        // A float is never left half-written, so a poisoned lock still holds a usable count.
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Called once for each first attempt.
    pub fn deposit(&self) {
        let mut tokens = self.lock();
        *tokens = (*tokens + self.ratio).min(self.max);
    }

    /// Spends one token for a retry, or refuses if fewer than one is left.
    pub fn try_spend(&self) -> bool {
        let mut tokens = self.lock();
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_its_ceiling() {
        let config = RetryConfig::default();
        for retry in 0..40 {
            let ceiling =
                (config.base_backoff * 2u32.saturating_pow(retry.min(31))).min(config.max_backoff);
            assert!(config.backoff(retry) <= ceiling);
        }
    }

    #[test]
    fn the_budget_bounds_retries_by_ratio_and_max() {
        let budget = RetryBudget::new(&RetryConfig {
            budget_ratio: 0.5,
            budget_max: 2.0,
            ..RetryConfig::default()
        });
        let mut spent = 0;
        for _ in 0..10 {
            budget.deposit();
            while budget.try_spend() {
                spent += 1;
            }
        }
        // Starts full at 2 (capped, so the first deposits are lost), then 0.5 per request.
        assert!(spent <= 2 + 5, "spent {spent}");
        assert!(spent >= 5);
    }

    #[test]
    fn only_transient_failures_are_retried() {
        use childgraph_schema::SourceName::Health;
        assert!(is_retryable(&ConnectorError::Timeout {
            source_name: Health
        }));
        assert!(!is_retryable(&ConnectorError::Rejected {
            source_name: Health,
            detail: "status 400".into()
        }));
        assert!(!is_retryable(&ConnectorError::CircuitOpen {
            source_name: Health
        }));
    }
}
