//! Batches `child` fields: every `child(id:)` of one request is answered by one pass through the pipeline, so a
//! query with many aliased `child` fields costs each source the same few requests as a query with one.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, Loader};

use crate::pipeline::{ComposedChild, Pipeline, PipelineError, Purpose, RequestScope, Wanted};

/// One `child` field: the id, and what the client declared and selected.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChildKey {
    pub id: String,
    pub purpose: Purpose,
    pub wanted: Wanted,
}

/// Loads children for one request, with that request's principal and deadline.
#[derive(Debug)]
pub struct ChildLoader {
    pipeline: Pipeline,
    scope: Arc<RequestScope>,
}

/// The per-request loader, put in the request's data by the HTTP handler.
pub fn child_loader(pipeline: Pipeline, scope: Arc<RequestScope>) -> DataLoader<ChildLoader> {
    DataLoader::new(ChildLoader { pipeline, scope }, tokio::spawn)
}

impl Loader<ChildKey> for ChildLoader {
    type Value = Arc<ComposedChild>;
    type Error = Arc<PipelineError>;

    async fn load(&self, keys: &[ChildKey]) -> Result<HashMap<ChildKey, Self::Value>, Self::Error> {
        // Fields that declared the same purpose and selected the same parts go through the pipeline together.
        let mut groups: HashMap<(&Purpose, Wanted), Vec<String>> = HashMap::new();
        for key in keys {
            groups
                .entry((&key.purpose, key.wanted))
                .or_default()
                .push(key.id.clone());
        }
        let mut loaded = HashMap::new();
        for ((purpose, wanted), ids) in groups {
            let children = self
                .pipeline
                .children(&self.scope, &ids, purpose, wanted)
                .await
                .map_err(Arc::new)?;
            for child in children {
                let key = ChildKey {
                    id: child.id.clone(),
                    purpose: purpose.clone(),
                    wanted,
                };
                loaded.insert(key, Arc::new(child));
            }
        }
        Ok(loaded)
    }
}
