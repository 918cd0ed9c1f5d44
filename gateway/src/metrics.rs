//! Prometheus metrics on `/metrics`. Labels carry no child data: a policy hash, a reason, an outcome.
//!
//! Each gateway has its own registry, so that several in one process (the tests) do not mix their figures.

use prometheus::{
    Counter, Encoder, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// 1 for the policy in force, by the SHA-256 of its file.
    policy_info: IntGaugeVec,
    policy_reloads: IntCounterVec,
    shield_overrides: IntCounter,
    access_alerts: IntCounter,
    /// Withheld fields by reason, resolved once: a redaction is counted on the answer's hot path.
    redactions: [IntCounter; 3],
    /// Time spent on policy work, read from the CPU's cycle counter: cheap enough to wrap every field's decision.
    policy_seconds: Counter,
    clock: quanta::Clock,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let policy_info = IntGaugeVec::new(
            Opts::new(
                "childgraph_policy_info",
                "The policy in force, by the SHA-256 of its file",
            ),
            &["hash"],
        )
        .expect("a valid metric");
        let policy_reloads = IntCounterVec::new(
        Opts::new(
            "childgraph_policy_reloads_total",
            "Policy reloads, by outcome: replaced, or refused (the last good policy stays in force)",
        ),
        &["outcome"],
    )
    .expect("a valid metric");
        let shield_overrides = IntCounter::new(
            "childgraph_shield_overrides_total",
            "Shield overrides made; each alerts shield officers",
        )
        .expect("a valid metric");
        let access_alerts = IntCounter::new(
            "childgraph_access_alerts_total",
            "Users who viewed more distinct children than the monitoring threshold within its window",
        )
        .expect("a valid metric");
        let redactions = IntCounterVec::new(
            Opts::new("childgraph_redactions_total", "Fields withheld, by reason"),
            &["reason"],
        )
        .expect("a valid metric");
        let policy_seconds = Counter::new(
            "childgraph_policy_seconds_total",
            "Time spent on policy work: grants, field decisions, redaction errors and the audit's categories",
        )
        .expect("a valid metric");
        for metric in [
            Box::new(policy_info.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(policy_reloads.clone()),
            Box::new(shield_overrides.clone()),
            Box::new(access_alerts.clone()),
            Box::new(redactions.clone()),
            Box::new(policy_seconds.clone()),
        ] {
            registry.register(metric).expect("a metric registered once");
        }
        Metrics {
            registry,
            policy_info,
            policy_reloads,
            shield_overrides,
            access_alerts,
            redactions: ["ROLE", "SHIELDED", "NOT_RELEVANT"]
                .map(|r| redactions.with_label_values(&[r])),
            policy_seconds,
            clock: quanta::Clock::new(),
        }
    }

    /// Records the policy now in force.
    pub fn policy_in_force(&self, hash: &str) {
        self.policy_info.reset();
        self.policy_info.with_label_values(&[hash]).set(1);
    }

    /// Records a reload: `replaced` or `refused`.
    pub fn policy_reload(&self, outcome: &str) {
        self.policy_reloads.with_label_values(&[outcome]).inc();
    }

    pub fn shield_override(&self) {
        self.shield_overrides.inc();
    }

    pub fn access_alert(&self) {
        self.access_alerts.inc();
    }

    /// Records a withheld field.
    pub fn redaction(&self, reason: childgraph_policies::Reason) {
        let i = match reason {
            childgraph_policies::Reason::Role => 0,
            childgraph_policies::Reason::Shielded => 1,
            childgraph_policies::Reason::NotRelevant => 2,
        };
        self.redactions[i].inc();
    }

    /// Runs policy work and adds its time to `childgraph_policy_seconds_total`, from which the load benchmark
    /// reports the policy's share of the gateway's CPU time. The work must not await: the time is wall time.
    pub fn policy<T>(&self, work: impl FnOnce() -> T) -> T {
        let start = self.clock.raw();
        let out = work();
        let nanos = self.clock.delta_as_nanos(start, self.clock.raw());
        self.policy_seconds.inc_by(nanos as f64 * 1e-9);
        out
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}
