//! Batches `child` fields: every `child(id:)` of one request is answered by one pass through the pipeline, so a
//! query with many aliased `child` fields costs each source the same few requests as a query with one.
//!
//! The batch is gathered by yielding, not by a timer: the first `child` resolver to ask yields to the executor a few
//! times, which polls its sibling fields and lets them add their keys, then loads them all in the same task. So a
//! batch costs no fixed delay and no hop to another thread.

use std::collections::HashMap;
use std::sync::Arc;

use dataloader::BatchFn;
use dataloader::non_cached::Loader;

use crate::pipeline::{ComposedChild, Pipeline, PipelineError, Purpose, RequestScope, Wanted};

/// How many times the first resolver of a batch yields before loading. Sibling root fields are polled in the first
/// pass already; the spare yields cover fields reached through fragments.
const YIELDS: usize = 3;

/// The most `child` fields in one batch. The query's complexity limit keeps requests far below it.
const MAX_BATCH: usize = 200;

/// One `child` field: the id, and what the client declared and selected.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChildKey {
    pub id: String,
    pub purpose: Purpose,
    pub wanted: Wanted,
}

/// What a `child` field gets: the child, `None` for an id with no linked record, or the error that failed its batch.
pub type Loaded = Result<Option<Arc<ComposedChild>>, Arc<PipelineError>>;

/// Loads children for one request, with that request's principal and deadline.
#[derive(Debug)]
pub struct ChildBatch {
    pipeline: Pipeline,
    scope: Arc<RequestScope>,
}

/// The per-request loader, put in the request's data by the HTTP handler.
pub type ChildLoader = Loader<ChildKey, Loaded, ChildBatch>;

pub fn child_loader(pipeline: Pipeline, scope: Arc<RequestScope>) -> ChildLoader {
    Loader::new(ChildBatch { pipeline, scope })
        .with_yield_count(YIELDS)
        .with_max_batch_size(MAX_BATCH)
}

impl BatchFn<ChildKey, Loaded> for ChildBatch {
    async fn load(&mut self, keys: &[ChildKey]) -> HashMap<ChildKey, Loaded> {
        // Fields that declared the same purpose and selected the same parts go through the pipeline together, with
        // every field any of them selected.
        let mut groups: HashMap<(&Purpose, Wanted), (u32, Vec<&ChildKey>)> = HashMap::new();
        for key in keys {
            let (fields, members) = groups
                .entry((&key.purpose, key.wanted.parts()))
                .or_default();
            *fields |= key.wanted.fields;
            members.push(key);
        }
        let mut loaded: HashMap<ChildKey, Loaded> = HashMap::with_capacity(keys.len());
        for ((purpose, parts), (fields, members)) in groups {
            let wanted = Wanted { fields, ..parts };
            let mut ids: Vec<String> = members.iter().map(|k| k.id.clone()).collect();
            ids.sort();
            ids.dedup();
            match self
                .pipeline
                .children(&self.scope, &ids, purpose, wanted)
                .await
            {
                Ok(children) => {
                    let found: HashMap<String, Arc<ComposedChild>> = children
                        .into_iter()
                        .map(|c| (c.id.clone(), Arc::new(c)))
                        .collect();
                    for key in members {
                        loaded.insert(key.clone(), Ok(found.get(&key.id).cloned()));
                    }
                }
                Err(error) => {
                    let error = Arc::new(error);
                    for key in members {
                        loaded.insert(key.clone(), Err(error.clone()));
                    }
                }
            }
        }
        loaded
    }
}
