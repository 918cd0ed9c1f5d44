//! The answer cache and the coalescing of identical reads: raw source answers kept for a short time, and identical GETs in flight sent once.
//!
//! Answers are kept as the bytes the source sent, before parsing, keyed by the full request URL; each source has its own cache, so the key also names the source.
//! Invariant: the key holds no principal, because a source's answer to a URL does not depend on who asked.
//! Every call to a source is a GET under the gateway's own service credentials, and the gateway applies the policy to the answer after the fetch, per user.
//! A call that sent a user's own credentials, or that was not a read, must not come through here.
//!
//! Only `200` answers are kept: an error, or any other status, is passed on to the callers waiting for it and then forgotten.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use crate::error::ConnectorError;

/// How long and how much a source's answers are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// Off, every read goes to the source; identical reads in flight are still sent once.
    pub enabled: bool,
    /// How long an answer is kept after it arrived.
    pub ttl: Duration,
    /// The most answers kept.
    pub max_entries: u64,
    /// The most body bytes kept.
    pub max_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ttl: Duration::from_secs(10),
            max_entries: 10_000,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A source's answer as it came: status, paging header and body.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub status: u16,
    /// `X-Total-Count`, as OneRoster reports it.
    pub total_count: Option<usize>,
    pub body: Bytes,
    /// Set by the first caller that finds the body unusable, so that one bad answer shared by many callers counts once against the breaker.
    pub found_unusable: Arc<AtomicBool>,
}

/// Why a fetch put nothing in the cache. Moka keeps only an `Ok`, so an answer that must not be kept travels as an error.
#[derive(Debug)]
enum NotKept {
    Failed(ConnectorError),
    Uncacheable(Answer),
}

/// One read of a source.
pub(crate) type Read = BoxFuture<'static, Result<Answer, ConnectorError>>;
type InFlight = Shared<Read>;

/// The cache, if on, and the reads in flight.
pub(crate) struct AnswerCache {
    cache: Option<moka::future::Cache<String, Answer>>,
    /// Reads in flight when the cache is off; with it on, moka coalesces them itself.
    in_flight: Mutex<HashMap<String, InFlight>>,
    hits: AtomicU64,
    misses: AtomicU64,
    deduplicated: AtomicU64,
}

impl std::fmt::Debug for AnswerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys are URLs with query values, which can be child data.
        f.debug_struct("AnswerCache")
            .field("enabled", &self.cache.is_some())
            .finish_non_exhaustive()
    }
}

impl AnswerCache {
    pub fn new(config: &CacheConfig) -> Self {
        let cache = config.enabled.then(|| {
            // Each entry weighs at least its share of the byte bound, so that the byte bound also holds the number of entries under `max_entries`.
            let floor = config.max_bytes / config.max_entries.max(1);
            moka::future::Cache::builder()
                .max_capacity(config.max_bytes)
                .weigher(move |_key: &String, answer: &Answer| {
                    let bytes = u64::try_from(answer.body.len()).unwrap_or(u64::MAX);
                    u32::try_from(bytes.max(floor)).unwrap_or(u32::MAX)
                })
                .time_to_live(config.ttl)
                .build()
        });
        Self {
            cache,
            in_flight: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            deduplicated: AtomicU64::new(0),
        }
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    pub fn deduplicated(&self) -> u64 {
        self.deduplicated.load(Ordering::Relaxed)
    }

    /// The answer for `key`: from the cache, from an identical read already in flight, or from `fetch`. The read
    /// comes boxed, so that the futures holding it, up to the resolver's, stay small to move.
    pub async fn get(&self, key: String, fetch: Read) -> Result<Answer, ConnectorError> {
        match &self.cache {
            Some(cache) => self.get_cached(cache, key, fetch).await,
            None => self.get_coalesced(key, fetch).await,
        }
    }

    async fn get_cached(
        &self,
        cache: &moka::future::Cache<String, Answer>,
        key: String,
        fetch: Read,
    ) -> Result<Answer, ConnectorError> {
        if let Some(answer) = cache.get(&key).await {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(answer);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let sent = Arc::new(AtomicBool::new(false));
        let mark = sent.clone();
        let outcome = cache
            .try_get_with(key, async move {
                mark.store(true, Ordering::Relaxed);
                match fetch.await {
                    Ok(answer) if answer.status == 200 => Ok(answer),
                    Ok(answer) => Err(NotKept::Uncacheable(answer)),
                    Err(error) => Err(NotKept::Failed(error)),
                }
            })
            .await;
        if !sent.load(Ordering::Relaxed) {
            self.deduplicated.fetch_add(1, Ordering::Relaxed);
        }
        outcome.or_else(|not_kept| match &*not_kept {
            NotKept::Uncacheable(answer) => Ok(answer.clone()),
            NotKept::Failed(error) => Err(error.clone()),
        })
    }

    async fn get_coalesced(&self, key: String, fetch: Read) -> Result<Answer, ConnectorError> {
        let (shared, leader) = {
            let mut in_flight = self.lock_in_flight();
            match in_flight.get(&key) {
                Some(shared) => (shared.clone(), false),
                None => {
                    let shared = fetch.shared();
                    in_flight.insert(key.clone(), shared.clone());
                    (shared, true)
                }
            }
        };
        self.misses.fetch_add(1, Ordering::Relaxed);
        if !leader {
            self.deduplicated.fetch_add(1, Ordering::Relaxed);
        }
        // Whoever finishes the read first, or gives up on it, takes it out of the map, so that a later read is sent afresh.
        let _done = Departure {
            cache: self,
            key,
            shared: shared.clone(),
        };
        shared.await
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<String, InFlight>> {
        // The map holds only handles to reads in flight: one left behind by a panic is harmless, as a caller of it still drives it to an end.
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets a kept answer that turned out unusable, so that the next read fetches it again.
    pub async fn forget(&self, key: &str) {
        if let Some(cache) = &self.cache {
            cache.invalidate(key).await;
        }
    }
}

/// Takes a read out of the in-flight map when a caller of it finishes or gives up.
struct Departure<'a> {
    cache: &'a AnswerCache,
    key: String,
    shared: InFlight,
}

impl Drop for Departure<'_> {
    fn drop(&mut self) {
        let mut in_flight = self.cache.lock_in_flight();
        // Only this read's entry: a later identical read may have started one of its own.
        if in_flight
            .get(&self.key)
            .is_some_and(|current| current.ptr_eq(&self.shared))
        {
            in_flight.remove(&self.key);
        }
    }
}
