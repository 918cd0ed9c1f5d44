//! Abuse limits and monitoring per user: searches per minute and distinct children viewed per hour (governor token
//! buckets in each gateway process), the store's count of distinct children behind the quota across replicas, and
//! the alert when a user views more distinct children than a threshold within a window.
//!
//! A child already shown to a user within the window costs nothing to show again: the quotas count distinct
//! children, not answers. What is kept is user ids and gateway child ids, never a name or a search term, and only
//! for the window.
//!
//! The quota of distinct children per hour holds across every gateway sharing a store: each answer that shows
//! children is charged against it in the transaction that writes the answer's audit record ([`Charge`],
//! [`decide`]), so N replicas never allow N times the quota. The governor buckets here are each replica's own: they
//! smooth bursts, and refuse before any source is asked what this replica alone already knows to be over.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock as _;

type Limiter = governor::DefaultKeyedRateLimiter<String>;
type OwnLimiter = governor::DefaultDirectRateLimiter;

/// The most (user, child) pairs kept per tracker: far above what the quotas let users view.
const MAX_PAIRS: u64 = 1_000_000;

/// The window of the quota of distinct children: an hour.
pub const VIEW_WINDOW: Duration = Duration::from_secs(3600);

/// An answer's charge against a principal's quota of distinct children within [`VIEW_WINDOW`], decided with the
/// children in the audit record that the charge travels with. The same views give the monitor its count, within the
/// window the audit writer was started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The user or API client charged.
    pub principal: String,
    /// The most distinct children the principal may be shown within [`VIEW_WINDOW`]; `None` counts them only.
    pub limit: Option<u32>,
}

/// What became of a charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Shown: the principal has now been shown this many distinct children within the monitor's window.
    Admitted { distinct: usize },
    /// Over the quota: nothing is shown, and the request is allowed again after this many seconds.
    Refused { retry_after: u64 },
}

impl Admission {
    pub fn is_admitted(self) -> bool {
        matches!(self, Admission::Admitted { .. })
    }
}

/// How long the store keeps a view: the quota's window, or the monitor's when it is longer.
pub fn retention(count_window: Duration) -> Duration {
    VIEW_WINDOW.max(count_window)
}

/// A duration in whole milliseconds, as the store keeps times.
pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// What the store holds of one principal's views, as much as a commit reads: counts, and the rows of the children
/// its answers show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrincipalViews {
    /// Distinct children shown within [`VIEW_WINDOW`].
    pub in_quota: usize,
    /// Distinct children shown within the monitor's window.
    pub in_count: usize,
    /// When each of the children asked about was first shown (milliseconds since the Unix epoch), if the store still
    /// holds it.
    pub known: HashMap<String, i64>,
}

/// The principals charged in a commit, by id.
pub type Viewed = HashMap<String, PrincipalViews>;

/// A charge decided: admitted, or refused with how far over the quota it would go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Admitted {
        distinct: usize,
    },
    /// `over` children too many; `at_once` when the answer alone holds more children than the whole quota.
    Refused {
        over: usize,
        at_once: bool,
    },
}

/// Decides a group of charges in order, each over `children`, against what the principals were shown (`viewed`,
/// updated as charges are admitted). A child shown within [`VIEW_WINDOW`] is free; the others take one each, all of
/// them or none. Returns each charge's verdict, and the (principal, child) pairs first shown now, for the store to
/// keep.
pub fn decide<'a>(
    charges: impl IntoIterator<Item = (&'a Charge, &'a [String])>,
    viewed: &mut Viewed,
    now_ms: i64,
    count_window: Duration,
) -> (Vec<Verdict>, Vec<(String, String)>) {
    let quota_since = now_ms - millis(VIEW_WINDOW);
    let count_since = now_ms - millis(count_window);
    let mut verdicts = Vec::new();
    let mut shown = Vec::new();
    for (charge, children) in charges {
        let views = viewed.entry(charge.principal.clone()).or_default();
        let new: Vec<&String> = children
            .iter()
            .filter(|c| {
                views
                    .known
                    .get(*c)
                    .is_none_or(|first| *first <= quota_since)
            })
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let limit = charge.limit.map_or(usize::MAX, |l| l as usize);
        let over = (views.in_quota + new.len()).saturating_sub(limit);
        if over > 0 {
            verdicts.push(Verdict::Refused {
                over,
                at_once: new.len() > limit,
            });
            continue;
        }
        for child in new {
            let counted = views
                .known
                .get(child)
                .is_some_and(|first| *first > count_since);
            views.in_quota += 1;
            if !counted {
                views.in_count += 1;
            }
            views.known.insert(child.clone(), now_ms);
            shown.push((charge.principal.clone(), child.clone()));
        }
        verdicts.push(Verdict::Admitted {
            distinct: views.in_count,
        });
    }
    (verdicts, shown)
}

/// The wait, in whole seconds, until a refused charge would fit: until the `over`-th oldest child shown within
/// [`VIEW_WINDOW`] (first shown at `first`, or now when only this commit's views are that old) leaves it.
pub fn view_retry_after(first: Option<i64>, now_ms: i64) -> u64 {
    let leaves = first.unwrap_or(now_ms) + millis(VIEW_WINDOW);
    u64::try_from((leaves - now_ms).max(0) / 1000).unwrap_or(0) + 1
}

/// Forgets, every minute, the users whose bucket has refilled, so that the limiter holds only recent users; the
/// task ends with the last handle on the limiter.
fn keep_recent(limiter: &Arc<Limiter>) {
    let weak = Arc::downgrade(limiter);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            let Some(limiter) = weak.upgrade() else {
                return;
            };
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    });
}

/// The wait until a refused request would be let in, in whole seconds, at least one.
fn retry_after(not_until: &governor::NotUntil<governor::clock::QuantaInstant>) -> u64 {
    not_until
        .wait_time_from(governor::clock::DefaultClock::default().now())
        .as_secs()
        + 1
}

/// The buckets of one quota: one per user at the gateway's rate, and one for each API client with a rate of its own.
#[derive(Debug)]
struct Buckets {
    shared: Option<Arc<Limiter>>,
    /// By client id and its rate, so that a changed rate starts a bucket of its own.
    own: moka::sync::Cache<(String, u32), Arc<OwnLimiter>>,
    quota: fn(NonZeroU32) -> governor::Quota,
}

impl Buckets {
    fn new(shared: u32, quota: fn(NonZeroU32) -> governor::Quota, idle: Duration) -> Self {
        let shared = NonZeroU32::new(shared).map(|n| {
            let limiter = Arc::new(governor::RateLimiter::keyed(quota(n)));
            keep_recent(&limiter);
            limiter
        });
        Self {
            shared,
            own: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_idle(idle)
                .build(),
            quota,
        }
    }

    /// Takes `n` from the key's bucket: its own rate if it has one, else the gateway's; none is free.
    fn take(&self, key: &str, own: Option<u32>, n: NonZeroU32) -> Result<(), u64> {
        let outcome = match own.and_then(NonZeroU32::new) {
            Some(rate) => self
                .own
                .get_with((key.to_owned(), rate.get()), || {
                    Arc::new(governor::RateLimiter::direct((self.quota)(rate)))
                })
                .check_n(n),
            None => match &self.shared {
                Some(limiter) => limiter.check_key_n(&key.to_owned(), n),
                None => return Ok(()),
            },
        };
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(retry_after(&not_until)),
            // More at once than the bucket holds: not before it has refilled whole.
            Err(_) => Err(self.period()),
        }
    }

    fn period(&self) -> u64 {
        (self.quota)(NonZeroU32::MIN)
            .replenish_interval()
            .as_secs()
            .max(1)
    }
}

/// A token bucket of searches per user, and per API client at its own rate where it has one.
#[derive(Debug)]
pub struct SearchQuota(Buckets);

impl SearchQuota {
    /// `per_minute` searches per user; 0 leaves users unlimited (a client's own rate still holds).
    pub fn new(per_minute: u32) -> Arc<Self> {
        Arc::new(Self(Buckets::new(
            per_minute,
            governor::Quota::per_minute,
            Duration::from_secs(60),
        )))
    }

    /// Takes one search from the user's bucket, or says in how many seconds to retry. `own` is an API client's own
    /// rate.
    pub fn admit(&self, user: &str, own: Option<u32>) -> Result<(), u64> {
        self.0.take(user, own, NonZeroU32::MIN)
    }
}

/// Distinct children a user may be shown per hour: each child not shown to them within the hour takes one from a
/// token bucket of `per_hour`, refilled evenly over the hour.
#[derive(Debug)]
pub struct ViewQuota {
    per_hour: Option<NonZeroU32>,
    buckets: Buckets,
    seen: moka::sync::Cache<(String, String), ()>,
}

impl ViewQuota {
    /// `per_hour` distinct children per user; 0 leaves users unlimited (a client's own rate still holds).
    pub fn new(per_hour: u32) -> Arc<Self> {
        Arc::new(Self {
            per_hour: NonZeroU32::new(per_hour),
            buckets: Buckets::new(
                per_hour,
                governor::Quota::per_hour,
                Duration::from_secs(3600),
            ),
            seen: moka::sync::Cache::builder()
                .max_capacity(MAX_PAIRS)
                .time_to_live(Duration::from_secs(3600))
                .build(),
        })
    }

    /// The most distinct children per hour for a principal: an API client's own rate, or the gateway's; `None` when
    /// neither is set.
    pub fn limit(&self, own: Option<u32>) -> Option<u32> {
        own.or(self.per_hour.map(NonZeroU32::get))
    }

    /// Admits an answer showing these children to the user, all of them or none: those shown to them within the
    /// hour are free, the others take one each. Refused, it says in how many seconds to retry. `own` is an API
    /// client's own rate.
    pub fn admit(&self, user: &str, children: &[String], own: Option<u32>) -> Result<(), u64> {
        if self.buckets.shared.is_none() && own.is_none() {
            return Ok(());
        }
        let new: Vec<(String, String)> = children
            .iter()
            .map(|c| (user.to_owned(), c.clone()))
            .filter(|pair| !self.seen.contains_key(pair))
            .collect();
        let Some(n) = NonZeroU32::new(u32::try_from(new.len()).unwrap_or(u32::MAX)) else {
            return Ok(());
        };
        self.buckets.take(user, own, n)?;
        for pair in new {
            self.seen.insert(pair, ());
        }
        Ok(())
    }
}

/// The alert on users shown more distinct children than a threshold within a window. The count is the store's, of
/// every replica's answers (the [`Charge`] each answer's audit record carries), so spreading views over replicas
/// hides none of them. Each process raises an alert for a user at most once per window; the caller also looks for
/// another replica's alert in the audit log before raising one.
#[derive(Debug)]
pub struct ViewMonitor {
    window: Duration,
    threshold: u32,
    alerted: moka::sync::Cache<String, ()>,
}

impl ViewMonitor {
    /// An alert past `threshold` distinct children within `window`, or no monitor for a threshold of 0.
    pub fn new(threshold: u32, window: Duration) -> Option<Arc<Self>> {
        if threshold == 0 || window.is_zero() {
            return None;
        }
        Some(Arc::new(Self {
            window,
            threshold,
            alerted: moka::sync::Cache::builder()
                .max_capacity(MAX_PAIRS)
                .time_to_live(window)
                .build(),
        }))
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// Whether a user's count of distinct children within the window calls for an alert: past the threshold, and
    /// the first time in the window this process has seen it so.
    pub fn observe(&self, user: &str, distinct: usize) -> bool {
        if distinct <= self.threshold as usize || self.alerted.contains_key(user) {
            return false;
        }
        self.alerted.insert(user.to_owned(), ());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| format!("ch_{i}")).collect()
    }

    #[tokio::test]
    async fn a_view_quota_counts_distinct_children_all_or_none() {
        let quota = ViewQuota::new(5);
        assert_eq!(quota.admit("u", &ids(0..3), None), Ok(()));
        // Children already shown are free, however often.
        for _ in 0..10 {
            assert_eq!(quota.admit("u", &ids(0..3), None), Ok(()));
        }
        // Three new children do not fit in the two left: none is admitted, and the retry is within the hour.
        let wait = quota
            .admit("u", &ids(3..6), None)
            .expect_err("over the quota");
        assert!((1..=3600).contains(&wait), "{wait}");
        assert_eq!(quota.admit("u", &ids(3..5), None), Ok(()));
        assert!(quota.admit("u", &ids(5..6), None).is_err());
        // Another user has a bucket of their own; more than a whole hour's quota at once is refused for the hour.
        assert_eq!(quota.admit("v", &ids(5..6), None), Ok(()));
        assert_eq!(quota.admit("w", &ids(0..6), None), Err(3600));
        // A client with a rate of its own is held to it, not to the gateway's.
        assert_eq!(quota.admit("client", &ids(0..8), Some(8)), Ok(()));
        assert!(quota.admit("client", &ids(8..9), Some(8)).is_err());
        // With the gateway's quota off, users are free and a client's own rate still holds.
        let off = ViewQuota::new(0);
        assert_eq!(off.admit("u", &ids(0..500), None), Ok(()));
        assert_eq!(off.admit("client", &ids(0..2), Some(2)), Ok(()));
        assert!(off.admit("client", &ids(2..3), Some(2)).is_err());
    }

    fn charge(principal: &str, limit: Option<u32>) -> Charge {
        Charge {
            principal: principal.to_owned(),
            limit,
        }
    }

    #[test]
    fn charges_count_distinct_children_in_order_all_or_none() {
        let (u, v) = (charge("u", Some(5)), charge("v", Some(5)));
        let now = 100_000_000;
        let hour = Duration::from_secs(3600);
        // What the store holds: u was shown two children this hour, ch_0 and ch_1 among them.
        let mut viewed = Viewed::new();
        viewed.insert(
            "u".to_owned(),
            PrincipalViews {
                in_quota: 2,
                in_count: 2,
                known: HashMap::from([
                    ("ch_0".to_owned(), now - 600_000),
                    ("ch_1".to_owned(), now - 1_200_000),
                ]),
            },
        );
        let (a, b, c, d, e) = (ids(0..3), ids(3..5), ids(5..6), ids(0..6), ids(4..5));
        let (verdicts, shown) = decide(
            [
                (&u, a.as_slice()),
                (&u, b.as_slice()),
                (&u, c.as_slice()),
                (&v, d.as_slice()),
                (&u, e.as_slice()),
            ],
            &mut viewed,
            now,
            hour,
        );
        // ch_2 is new (3 of 5), then ch_3 and ch_4 (5 of 5); ch_5 is one too many. Six children at once is more
        // than v's whole quota. ch_4 again is free.
        assert_eq!(
            verdicts,
            [
                Verdict::Admitted { distinct: 3 },
                Verdict::Admitted { distinct: 5 },
                Verdict::Refused {
                    over: 1,
                    at_once: false
                },
                Verdict::Refused {
                    over: 1,
                    at_once: true
                },
                Verdict::Admitted { distinct: 5 },
            ]
        );
        let pairs = |list: &[(&str, usize)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(p, i)| ((*p).to_owned(), format!("ch_{i}")))
                .collect()
        };
        let mut shown = shown;
        shown.sort();
        assert_eq!(shown, pairs(&[("u", 2), ("u", 3), ("u", 4)]));
        assert_eq!(viewed["u"].in_quota, 5);
        assert_eq!(viewed["v"], PrincipalViews::default());
        // A child named twice in one answer is one child.
        let twice = ["ch_9".to_owned(), "ch_9".to_owned()];
        let (verdicts, shown) = decide(
            [(&charge("w", Some(1)), twice.as_slice())],
            &mut viewed,
            now,
            hour,
        );
        assert_eq!(verdicts, [Verdict::Admitted { distinct: 1 }]);
        assert_eq!(shown, pairs(&[("w", 9)]));

        // With the monitor's window of two hours, the store keeps views that long. A child shown ninety minutes ago
        // is new to the hour's quota and shown anew, and the monitor counts it once.
        viewed.insert(
            "m".to_owned(),
            PrincipalViews {
                in_quota: 0,
                in_count: 1,
                known: HashMap::from([("ch_0".to_owned(), now - 90 * 60_000)]),
            },
        );
        let (first, second) = (ids(1..2), ids(0..1));
        let one = charge("m", Some(1));
        let (verdicts, shown) = decide(
            [(&one, first.as_slice()), (&one, second.as_slice())],
            &mut viewed,
            now,
            Duration::from_secs(7200),
        );
        assert_eq!(
            verdicts,
            [
                Verdict::Admitted { distinct: 2 },
                Verdict::Refused {
                    over: 1,
                    at_once: false
                }
            ]
        );
        assert_eq!(shown, pairs(&[("m", 1)]));
        // Counted only, with no quota: every child is admitted, and counted.
        let many = ids(0..500);
        let (verdicts, shown) = decide(
            [(&charge("n", None), many.as_slice())],
            &mut viewed,
            now,
            hour,
        );
        assert_eq!(verdicts, [Verdict::Admitted { distinct: 500 }]);
        assert_eq!(shown.len(), 500);
        // The wait: until the oldest child counted leaves the hour.
        assert_eq!(view_retry_after(Some(now - 1_200_000), now), 40 * 60 + 1);
        assert_eq!(view_retry_after(None, now), 3601);
    }

    #[tokio::test]
    async fn a_search_quota_is_per_user_or_the_clients_own() {
        let quota = SearchQuota::new(2);
        assert_eq!(quota.admit("u", None), Ok(()));
        assert_eq!(quota.admit("u", None), Ok(()));
        let wait = quota.admit("u", None).expect_err("spent");
        assert!((1..=30).contains(&wait), "{wait}");
        assert_eq!(quota.admit("client", Some(3)), Ok(()));
        assert_eq!(quota.admit("client", Some(3)), Ok(()));
        assert_eq!(quota.admit("client", Some(3)), Ok(()));
        assert!(quota.admit("client", Some(3)).is_err());
        let off = SearchQuota::new(0);
        for _ in 0..100 {
            assert_eq!(off.admit("u", None), Ok(()));
        }
    }

    #[test]
    fn the_monitor_alerts_once_per_window_past_the_threshold() {
        let monitor = ViewMonitor::new(3, Duration::from_secs(3600)).expect("a monitor");
        assert!(!monitor.observe("u", 3), "at the threshold");
        assert!(monitor.observe("u", 4));
        assert!(!monitor.observe("u", 9), "alerted already");
        assert!(monitor.observe("v", 5));
        assert!(ViewMonitor::new(0, Duration::from_secs(3600)).is_none());
    }

    #[tokio::test]
    async fn the_monitor_may_alert_again_in_a_new_window() {
        let monitor = ViewMonitor::new(1, Duration::from_millis(200)).expect("a monitor");
        assert!(monitor.observe("u", 2));
        assert!(!monitor.observe("u", 2));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(monitor.observe("u", 2));
    }
}
