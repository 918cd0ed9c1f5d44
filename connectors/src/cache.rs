//! The answer cache and the coalescing of identical reads: raw source answers kept for a short time, and identical GETs in flight sent once.
//!
//! Answers are kept as the bytes the source sent, with the body parsed once when it was fetched, keyed by the full request URL; each source has its own cache, so the key also names the source.
//! An answer weighs its body's bytes and the bytes its parsed form holds, so the byte bound holds both.
//! Invariant: the key holds no principal, because a source's answer to a URL does not depend on who asked.
//! Every call to a source is a GET under the gateway's own service credentials, and the gateway applies the policy to the answer after the fetch, per user.
//! A call that sent a user's own credentials, or that was not a read, must not come through here.
//!
//! Only `200` answers are kept: an error, or any other status, is passed on to the callers waiting for it and then forgotten.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use get_size2::GetSize;
use serde::de::DeserializeOwned;

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
    /// The most bytes kept: the answers' bodies and their parsed forms.
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
    /// The body parsed when it was fetched, for an answer the cache keeps: every caller given it from the cache takes
    /// a copy of this rather than parsing the body again. `None` for an answer not kept, or whose body did not parse.
    pub parsed: Option<Arc<Parsed>>,
    /// Set by the first caller that finds the body unusable, so that one bad answer shared by many callers counts once against the breaker.
    pub found_unusable: Arc<AtomicBool>,
}

/// A body parsed, and the bytes it holds.
pub(crate) struct Parsed {
    value: Box<dyn Any + Send + Sync>,
    bytes: usize,
}

impl std::fmt::Debug for Parsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The value is a source's answer, which can be child data.
        f.debug_struct("Parsed")
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl Parsed {
    /// The body parsed as `T`, if it parses.
    pub fn of<T>(body: &[u8]) -> Option<Self>
    where
        T: DeserializeOwned + GetSize + Send + Sync + 'static,
    {
        let value: T = crate::http::parse_json(body).ok()?;
        Some(Self {
            bytes: value.get_size(),
            value: Box::new(value),
        })
    }

    /// The parsed value, if it was parsed as `T`.
    pub fn get<T: 'static>(&self) -> Option<&T> {
        self.value.downcast_ref()
    }
}

/// The heap bytes a JSON value holds: its strings, arrays and objects, and the values in them.
pub(crate) fn json_heap_size(value: &Option<serde_json::Value>) -> usize {
    fn size(value: &serde_json::Value) -> usize {
        use serde_json::Value;
        const VALUE: usize = std::mem::size_of::<Value>();
        match value {
            Value::Null | Value::Bool(_) | Value::Number(_) => 0,
            Value::String(s) => s.capacity(),
            Value::Array(items) => items.capacity() * VALUE + items.iter().map(size).sum::<usize>(),
            // A map's entry holds its key, its value and the map's own links: counted as a key, a value and
            // a key's worth again.
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| k.capacity() + 2 * std::mem::size_of::<String>() + VALUE + size(v))
                .sum(),
        }
    }
    value.as_ref().map_or(0, size)
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
                    let parsed = answer.parsed.as_ref().map_or(0, |p| p.bytes);
                    let bytes = u64::try_from(answer.body.len() + parsed).unwrap_or(u64::MAX);
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

    /// Whether answers are kept: only then is a body parsed as it is fetched, for the callers the cache gives it to.
    pub fn keeps_answers(&self) -> bool {
        self.cache.is_some()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oneroster::objects::Users;

    /// A OneRoster answer of `n` users, each with a name and metadata.
    fn users(n: usize) -> Bytes {
        let users: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                serde_json::json!({
                    "sourcedId": format!("u{i}"), "status": "active", "givenName": "Amelia",
                    "familyName": "Hartley", "roles": [{"role": "student", "org": {"sourcedId": "s1"}}],
                    "metadata": {"upn": format!("A{i:012}"), "tags": ["x", "y"]}
                })
            })
            .collect();
        Bytes::from(serde_json::to_vec(&serde_json::json!({ "users": users })).unwrap())
    }

    fn kept(body: Bytes) -> Answer {
        Answer {
            status: 200,
            total_count: None,
            parsed: Parsed::of::<Users>(&body).map(Arc::new),
            body,
            found_unusable: Arc::default(),
        }
    }

    fn read(answer: Answer) -> Read {
        Box::pin(async move { Ok(answer) })
    }

    #[test]
    fn a_parsed_answer_weighs_what_it_holds() {
        let body = users(20);
        let parsed = Parsed::of::<Users>(&body).expect("parses");
        let value = parsed.get::<Users>().expect("a Users");
        assert_eq!(value.items.len(), 20);
        assert_eq!(parsed.bytes, value.get_size());
        // Every string it read is held, beside the vectors and structs that hold them.
        let strings: usize = value
            .items
            .iter()
            .map(|u| u.sourced_id.len() + u.given_name.as_deref().map_or(0, str::len))
            .sum();
        assert!(
            parsed.bytes > strings + 20 * std::mem::size_of::<crate::oneroster::objects::User>()
        );
        // Asked as another type, it is not there.
        assert!(parsed.get::<serde_json::Value>().is_none());
        assert!(Parsed::of::<Users>(b"not json").is_none());
    }

    #[test]
    fn json_values_weigh_their_strings_and_containers() {
        assert_eq!(json_heap_size(&None), 0);
        assert_eq!(json_heap_size(&Some(serde_json::json!(12))), 0);
        let text = json_heap_size(&Some(serde_json::json!("abcdef")));
        assert!(text >= 6, "{text}");
        let nested = json_heap_size(&Some(serde_json::json!({"k": ["abcdef", "abcdef"]})));
        assert!(nested > 2 * text + 1, "{nested}");
    }

    #[tokio::test]
    async fn the_byte_bound_counts_parsed_answers_too() {
        let body = users(50);
        let answer = kept(body.clone());
        let parsed = answer.parsed.as_ref().expect("parsed").bytes;
        let whole = u64::try_from(body.len() + parsed).unwrap();
        // Room for two bodies, but not for two bodies and their parsed forms.
        let config = CacheConfig {
            max_bytes: whole + whole / 2,
            max_entries: 100,
            ..CacheConfig::default()
        };
        assert!(2 * body.len() < usize::try_from(config.max_bytes).unwrap());
        let cache = AnswerCache::new(&config);
        for key in ["a", "b", "c"] {
            let got = cache
                .get(key.to_owned(), read(answer.clone()))
                .await
                .unwrap();
            assert!(got.parsed.is_some());
        }
        let moka = cache.cache.as_ref().unwrap();
        moka.run_pending_tasks().await;
        assert!(
            moka.weighted_size() <= config.max_bytes,
            "{}",
            moka.weighted_size()
        );
        assert_eq!(moka.entry_count(), 1);
        // One kept alone weighs its body and its parsed form.
        let alone = AnswerCache::new(&CacheConfig::default());
        alone.get("a".to_owned(), read(answer)).await.unwrap();
        let moka = alone.cache.as_ref().unwrap();
        moka.run_pending_tasks().await;
        assert_eq!(
            moka.weighted_size(),
            whole.max(CacheConfig::default().max_bytes / 10_000)
        );
    }
}
