//! The reads of one GraphQL request: a read answered earlier in the same request is answered again from here, whether
//! or not the cache is on.
//!
//! A request reads a source in phases (records, then details), and a later phase often asks the very URL an earlier
//! one did (a school's students, once to identify them and again for their carers). Answering it again from the
//! request's own reads saves the call, and gives the request one consistent view of each record.
//!
//! The reads live exactly as long as the request: the gateway opens a scope with [`RequestReads::scope`] around its
//! calls to the connectors, and everything inside that scope, on the same task, shares it. Outside a scope, nothing is
//! kept. Only successful answers are kept, keyed by the full URL, which also names the source.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use crate::cache::Answer;

tokio::task_local! {
    static READS: Arc<RequestReads>;
}

/// The successful answers read so far in one request.
#[derive(Default)]
pub struct RequestReads {
    answers: Mutex<HashMap<String, Answer>>,
}

impl std::fmt::Debug for RequestReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys are URLs with query values, which can be child data.
        f.debug_struct("RequestReads").finish_non_exhaustive()
    }
}

impl RequestReads {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Runs `work` with these reads shared by every source call it makes on its own task.
    pub async fn scope<F: Future>(self: &Arc<Self>, work: F) -> F::Output {
        READS.scope(self.clone(), work).await
    }

    /// The answer to `url` read earlier in the current request's scope, if any.
    pub(crate) fn recall(url: &str) -> Option<Answer> {
        READS
            .try_with(|reads| reads.lock().get(url).cloned())
            .ok()
            .flatten()
    }

    /// Keeps a successful answer for the rest of the current request's scope; outside a scope, does nothing.
    pub(crate) fn remember(url: &str, answer: &Answer) {
        if answer.status != 200 {
            return;
        }
        let _ = READS.try_with(|reads| {
            reads.lock().insert(url.to_owned(), answer.clone());
        });
    }

    /// Forgets an answer that turned out unusable.
    pub(crate) fn forget(url: &str) {
        let _ = READS.try_with(|reads| {
            reads.lock().remove(url);
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Answer>> {
        // Only whole answers are inserted, so a map left by a panic is still consistent.
        self.answers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn answer(status: u16) -> Answer {
        Answer {
            status,
            total_count: None,
            body: Bytes::from_static(b"{}"),
            parsed: None,
            found_unusable: Arc::default(),
        }
    }

    #[tokio::test]
    async fn answers_are_kept_within_a_scope_only() {
        let reads = RequestReads::new();
        reads
            .scope(async {
                RequestReads::remember("http://s/a", &answer(200));
                RequestReads::remember("http://s/b", &answer(500));
                assert!(RequestReads::recall("http://s/a").is_some());
                assert!(
                    RequestReads::recall("http://s/b").is_none(),
                    "errors are not kept"
                );
                RequestReads::forget("http://s/a");
                assert!(RequestReads::recall("http://s/a").is_none());
                RequestReads::remember("http://s/a", &answer(200));
            })
            .await;
        // Another request's scope starts empty, and outside any scope nothing is kept.
        RequestReads::new()
            .scope(async { assert!(RequestReads::recall("http://s/a").is_none()) })
            .await;
        RequestReads::remember("http://s/c", &answer(200));
        assert!(RequestReads::recall("http://s/c").is_none());
    }
}
