//! The request pipeline for child data, in the order it runs: identify, shield status, decide, fetch, compose, record.
//!
//! The GraphQL resolvers call these functions and nothing else for child data, so this file is the one place that
//! says what happens, in what order, before an answer is composed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use childgraph_connectors::{Parts, RequestReads};
use childgraph_policies::{Grant, Policy, Relation, Situation};
use childgraph_schema::{
    CriteriaError, Field, PersonRecord, RecordDetails, RecordRef, SearchCriteria, SourceName,
};
use chrono::Utc;
use tokio::time::Instant;

use crate::access::{AccessRecord, Operation, Submitted};
use crate::federation::{Federation, Reports, SourceHealth};
use crate::quotas::{Admission, Charge, SearchQuota, ViewMonitor, ViewQuota};
use crate::store::{Account, FlagRecord, Linked, Shield, Store, StoreError};

/// Who the register names for shields the gateway itself sets.
const SYSTEM: &str = "childgraph";
/// When a shield set for a possible match is due for review by a shield officer.
const POSSIBLE_MATCH_REVIEW_DAYS: i64 = 30;

/// Why a request for child data failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{0}")]
    Forbidden(&'static str),
    /// Refused, with a reason made for this request.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Criteria(#[from] CriteriaError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A quota of the user's is spent; the request is allowed again after `retry_after` seconds.
    #[error("{what}: try again in {retry_after} s")]
    RateLimited {
        what: &'static str,
        retry_after: u64,
    },
}

/// Limits that apply to every request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_results: usize,
    pub deadline: Duration,
}

/// The abuse limits and the monitor every request shares.
#[derive(Debug, Clone)]
pub struct Quotas {
    /// Searches per user (and per API client at its own rate).
    pub searches: Arc<SearchQuota>,
    /// Distinct children shown per user per hour (and per API client at its own rate): smoothed in this replica
    /// here, and held across replicas by the store ([`Charge`]).
    pub views: Arc<ViewQuota>,
    /// The alert on users who view many distinct children, when on.
    pub monitor: Option<Arc<ViewMonitor>>,
}

/// Everything the pipeline needs, shared by all requests.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The policy in force; each request decides with the snapshot it took when it began.
    pub policy: Arc<crate::policy_reload::ActivePolicy>,
    pub store: Store,
    pub federation: Federation,
    pub limits: Limits,
    /// The linkage model and thresholds.
    pub linker: Arc<childgraph_linkage::Linker>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub audit: crate::audit::AuditLog,
    pub quotas: Quotas,
    pub accounts: crate::config::AccountsConfig,
}

/// An API client's own quota of distinct children per hour, if it has one.
fn own_children_per_hour(principal: &Account) -> Option<u32> {
    principal.client.as_ref().and_then(|c| c.children_per_hour)
}

/// Why the user is asking, as they declared it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Purpose {
    pub purpose: &'static str,
    pub justification: Option<String>,
}

/// One GraphQL request's view of the pipeline: who asks, until when, and how the sources fared.
#[derive(Debug)]
pub struct RequestScope {
    pub request_id: String,
    pub principal: Account,
    /// The policy as it stood when the request began: one answer is never decided by two policies.
    pub policy: Arc<Policy>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub audit: crate::audit::AuditLog,
    pub grant: Grant,
    pub deadline: Instant,
    pub reports: Reports,
    /// The source answers read so far in this request, so that a later phase asking the same URL is not sent again.
    pub reads: Arc<RequestReads>,
    /// Access records handed to the audit log whose commits the answer has not yet waited for: the answer is
    /// composed while they are written, and [`Pipeline::settle`] waits for them before any of it leaves.
    submitted: std::sync::Mutex<Vec<Submitted>>,
}

impl RequestScope {
    /// The deadline of a phase that others follow: half the time left, so that a source hanging in an early phase
    /// leaves the healthy sources time for the later ones. The last phase runs to the request's deadline.
    pub fn phase_deadline(&self) -> Instant {
        let now = Instant::now();
        now + self.deadline.saturating_duration_since(now) / 2
    }
}

/// How a source stands for one child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceStatus {
    Ok,
    Unavailable,
    Timeout,
    /// The source marks the child's record restricted.
    Restricted,
}

#[derive(Debug, Clone)]
pub struct SourceView {
    pub source: SourceName,
    pub status: SourceStatus,
    pub response_time: Duration,
    pub as_of: chrono::DateTime<Utc>,
}

/// A child, composed from its source records, before the policy is applied field by field.
#[derive(Debug, Clone)]
pub struct ComposedChild {
    pub id: String,
    pub shielded: bool,
    /// Its records, health first, then early years, then school: the order in which person fields are trusted.
    pub records: Vec<PersonRecord>,
    pub details: RecordDetails,
    pub flags: Vec<FlagRecord>,
    pub sources: Vec<SourceView>,
    /// The user holds a live override of the child's shield.
    pub overridden: bool,
    /// Whether an organisation of the user works with the child; decided with the details.
    pub relation: Relation,
    /// Past the policy's age limit.
    pub past_age: bool,
}

impl ComposedChild {
    pub fn situation(&self) -> Situation {
        Situation {
            shielded: self.shielded,
            overridden: self.overridden,
            relation: self.relation,
            past_age: self.past_age,
        }
    }
}

/// The answer to a search.
#[derive(Debug)]
pub enum SearchOutcome {
    /// More children matched than a search may return: no list, so that nobody can page through the index.
    TooMany,
    Matches(Vec<(f64, ComposedChild)>),
}

/// The parts of the answer the client asked for; the pipeline fetches no more than these.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Wanted {
    pub carers: bool,
    pub services: bool,
    pub participation: bool,
    pub flags: bool,
    /// Every child-data field selected, one bit per [`Field`] (`1 << field as u32`): what the audit record names
    /// as the categories returned and withheld.
    pub fields: u32,
}

impl Wanted {
    /// The parts alone, for grouping fields that fetch the same.
    pub fn parts(self) -> Self {
        Self { fields: 0, ..self }
    }

    pub fn selects(self, field: Field) -> bool {
        self.fields & (1 << field as u32) != 0
    }

    /// The policy's categories of the fields selected, one bit per category: a service or participation of a sensitive
    /// kind is of the sensitive category, so selecting either selects it too.
    pub fn categories(self, policy: &Policy) -> u64 {
        let mut selected: u64 = 0;
        for &field in Field::ALL {
            if self.selects(field) {
                selected |= 1 << policy.category_of(field);
            }
        }
        if let Some(sensitive) = policy.sensitive_category()
            && (self.selects(Field::ChildServices) || self.selects(Field::ChildParticipation))
        {
            selected |= 1 << sensitive;
        }
        selected
    }
}

impl Pipeline {
    /// Opens a request scope for an authenticated principal.
    pub fn scope(&self, request_id: String, principal: Account) -> RequestScope {
        let (policy, grant) = self.metrics.policy(|| {
            let policy = self.policy.snapshot();
            let grant = policy.grant(principal.roles.iter().map(String::as_str));
            (policy, grant)
        });
        RequestScope {
            request_id,
            principal,
            policy,
            metrics: self.metrics.clone(),
            audit: self.audit.clone(),
            grant,
            deadline: Instant::now() + self.limits.deadline,
            reports: Reports::default(),
            reads: RequestReads::new(),
            submitted: std::sync::Mutex::default(),
        }
    }

    /// Waits for every access record the request handed to the audit log, and settles each: the error of the first
    /// refused or failed one, after which the answer must show no child data. The request's answer is sent only
    /// after this, and only if it succeeded.
    pub async fn settle(&self, scope: &RequestScope) -> Result<(), PipelineError> {
        let submitted = std::mem::take(
            &mut *scope
                .submitted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let mut outcome = Ok(());
        for record in submitted {
            let settled = self.settle_views(scope, record).await;
            if outcome.is_ok() {
                outcome = settled;
            }
        }
        outcome
    }

    /// `searchChildren`: find the children matching the criteria, ranked by score.
    pub async fn search(
        &self,
        scope: &RequestScope,
        criteria: SearchCriteria,
        purpose: &Purpose,
        wanted: Wanted,
    ) -> Result<SearchOutcome, PipelineError> {
        let reads = scope.reads.clone();
        reads
            .scope(self.search_in_scope(scope, criteria, purpose, wanted))
            .await
    }

    async fn search_in_scope(
        &self,
        scope: &RequestScope,
        criteria: SearchCriteria,
        purpose: &Purpose,
        wanted: Wanted,
    ) -> Result<SearchOutcome, PipelineError> {
        self.require_child_data(scope, purpose, Operation::Search)
            .await?;
        let own = scope
            .principal
            .client
            .as_ref()
            .and_then(|c| c.searches_per_minute);
        if let Err(retry_after) = self.quotas.searches.admit(&scope.principal.user_id, own) {
            self.metrics.rate_limited("searches");
            AccessRecord::new(scope, purpose, Operation::Search)
                .rate_limited()
                .record()
                .await?;
            return Err(PipelineError::RateLimited {
                what: "too many searches",
                retry_after,
            });
        }

        // Identify: blocking queries to every source, then link the candidates into children.
        let candidates = self
            .federation
            .search(&criteria, scope.phase_deadline(), &scope.reports)
            .await;
        // Each cluster is scored once; clusters that do not match the criteria are neither linked nor shown, but are
        // kept aside: one of them may be a shielded child whose shield covers a child found.
        let mut others = Vec::new();
        let (clusters, groups): (Vec<_>, Vec<Vec<(RecordRef, f64)>>) = self
            .linker
            .cluster(candidates)
            .into_iter()
            .filter_map(|c| match self.linker.score(&criteria, &c) {
                Some(score) => {
                    let group = c.records.iter().map(|r| (r.record_ref(), score)).collect();
                    Some((c, group))
                }
                None => {
                    others.push(c.records);
                    None
                }
            })
            .unzip();
        let linked = self.store.link(&groups, "fellegi-sunter-v1").await?;
        let mut found: HashMap<RecordRef, PersonRecord> = clusters
            .into_iter()
            .flat_map(|c| c.records)
            .map(|r| (r.record_ref(), r))
            .collect();
        // A child whose records fell into different clusters is still one child (the store has proposed a split): its
        // records are shown together, once.
        let mut children: Vec<(String, Vec<PersonRecord>)> = Vec::new();
        for (child_id, refs) in linked.into_iter().flatten() {
            let records = refs.iter().filter_map(|r| found.remove(r));
            match children.iter_mut().find(|(id, _)| *id == child_id) {
                Some((_, known)) => known.extend(records),
                None => children.push((child_id, records.collect())),
            }
        }
        let register = self.complete_records(scope, &mut children).await?;

        // Decide shield status: the register, a source's restriction, and then every possible match of a shielded
        // child among those found, so that a noisy duplicate of a shielded child is no way round the shield.
        let mut shielded: Vec<bool> = children
            .iter()
            .map(|(id, records)| register.contains(id) || records.iter().any(|r| r.restricted))
            .collect();
        let before = shielded.clone();
        let mut found: Vec<&[PersonRecord]> = children.iter().map(|(_, r)| r.as_slice()).collect();
        // The candidates that did not match the criteria but are a possible match of a child found take part too,
        // shielded when a source restricts them or the register shields the child they are linked to: a search on a
        // duplicate's misspelt name must not show it unshielded because the shielded child itself did not match.
        let near: Vec<&[PersonRecord]> = others
            .iter()
            .map(Vec::as_slice)
            .filter(|o| found.iter().any(|f| self.linker.possible_match(o, f)))
            .collect();
        if !near.is_empty() {
            let refs: Vec<RecordRef> = near
                .iter()
                .flat_map(|o| o.iter())
                .map(PersonRecord::record_ref)
                .collect();
            let in_register = self.store.shielded_records(&refs).await?;
            shielded.extend(near.iter().map(|o| {
                o.iter()
                    .any(|r| r.restricted || in_register.contains(&r.record_ref()))
            }));
            found.extend(near);
        }
        self.linker.spread_shields(&found, &mut shielded);
        shielded.truncate(children.len());
        // A shield spread this way is kept in the register, so that the child stays shielded when viewed by its id,
        // and a shield officer can review it.
        let spread = children
            .iter()
            .enumerate()
            .filter(|(i, _)| shielded[*i] && !before[*i])
            .map(|(_, (id, _))| id);
        self.shield_as_possible_matches(spread).await?;

        // Score each child as linked.
        let mut scored = Vec::new();
        for ((id, records), shielded) in children.into_iter().zip(shielded) {
            let cluster = childgraph_linkage::Cluster { records };
            if let Some(score) = self.linker.score(&criteria, &cluster) {
                scored.push((score, id, cluster.records, shielded));
            }
        }
        let mut matches = Vec::new();
        for (score, id, records, shielded) in scored {
            // A search that uses a field a shielded record hides must not find it, nor reveal that it exists.
            let situation = Situation {
                shielded,
                ..Situation::default()
            };
            if shielded
                && scope
                    .metrics
                    .policy(|| uses_hidden_field(&scope.policy, scope.grant, situation, &criteria))
            {
                continue;
            }
            matches.push((score, skeleton(id, shielded, records)));
        }
        matches.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));

        if matches.len() > self.limits.max_results {
            AccessRecord::new(scope, purpose, Operation::Search)
                .too_many()
                .record()
                .await?;
            return Ok(SearchOutcome::TooMany);
        }

        // Decide, then fetch only what the policy allows and the client asked for.
        let mut children: Vec<ComposedChild> = matches.iter().map(|(_, c)| c.clone()).collect();
        let ids: Vec<String> = children.iter().map(|c| c.id.clone()).collect();
        self.admit_views(scope, purpose, Operation::Search, &ids)
            .await?;
        // Recorded before the answer leaves: no record, no child data.
        self.fetch_and_record(scope, purpose, Operation::Search, &mut children, wanted)
            .await?;
        let scores = matches.into_iter().map(|(s, _)| s);
        Ok(SearchOutcome::Matches(scores.zip(children).collect()))
    }

    /// `child`: children by their gateway ids, in one batch however many `child` fields asked for them.
    /// Ids with no linked record are left out.
    pub async fn children(
        &self,
        scope: &RequestScope,
        ids: &[String],
        purpose: &Purpose,
        wanted: Wanted,
    ) -> Result<Vec<ComposedChild>, PipelineError> {
        let reads = scope.reads.clone();
        reads
            .scope(self.children_in_scope(scope, ids, purpose, wanted))
            .await
    }

    async fn children_in_scope(
        &self,
        scope: &RequestScope,
        ids: &[String],
        purpose: &Purpose,
        wanted: Wanted,
    ) -> Result<Vec<ComposedChild>, PipelineError> {
        self.require_child_data(scope, purpose, Operation::View)
            .await?;
        let Linked {
            records: links,
            shielded: register,
        } = self.store.linked(ids).await?;
        let refs: Vec<RecordRef> = links.values().flatten().cloned().collect();
        let mut records: HashMap<RecordRef, PersonRecord> = self
            .federation
            .records(&refs, scope.phase_deadline(), &scope.reports)
            .await
            .into_iter()
            .map(|r| (r.record_ref(), r))
            .collect();
        let linked: Vec<String> = ids
            .iter()
            .filter(|id| links.contains_key(*id))
            .cloned()
            .collect();
        self.admit_views(scope, purpose, Operation::View, &linked)
            .await?;
        let mut children: Vec<ComposedChild> = linked
            .into_iter()
            .map(|id| {
                let mine: Vec<PersonRecord> = links[&id]
                    .iter()
                    .filter_map(|r| records.remove(r))
                    .collect();
                let shielded = register.contains(&id) || mine.iter().any(|r| r.restricted);
                skeleton(id, shielded, mine)
            })
            .collect();
        if children.is_empty() {
            AccessRecord::new(scope, purpose, Operation::View)
                .not_found()
                .record()
                .await?;
        } else {
            self.fetch_and_record(scope, purpose, Operation::View, &mut children, wanted)
                .await?;
        }
        Ok(children)
    }

    /// Refuses, and records the refusal, when showing these children would spend more of the user's quota of
    /// distinct children per hour than is left.
    async fn admit_views(
        &self,
        scope: &RequestScope,
        purpose: &Purpose,
        operation: Operation,
        ids: &[String],
    ) -> Result<(), PipelineError> {
        let own = own_children_per_hour(&scope.principal);
        let Err(retry_after) = self.quotas.views.admit(&scope.principal.user_id, ids, own) else {
            return Ok(());
        };
        self.metrics.rate_limited("children");
        AccessRecord::new(scope, purpose, operation)
            .child_ids(ids.to_vec())
            .rate_limited()
            .record()
            .await?;
        Err(PipelineError::RateLimited {
            what: "too many distinct children viewed this hour",
            retry_after,
        })
    }

    /// Writes the record of an answer showing children, charged against the principal's quota of distinct children
    /// in the same transaction: the quota every gateway sharing the store holds together. Refused there, the record
    /// says so and nothing is shown. Admitted, the principal's count of distinct children within the monitor's
    /// window (every replica's answers) goes to the monitor.
    ///
    /// Handing the record over and waiting for its commit are apart (`submit_views`, then `settle_views`), so that
    /// an answer can be composed while its record is written.
    async fn submit_views(
        &self,
        scope: &RequestScope,
        record: AccessRecord<'_>,
    ) -> Result<Submitted, PipelineError> {
        let principal = &scope.principal;
        let limit = self.quotas.views.limit(own_children_per_hour(principal));
        let monitor = self.quotas.monitor.as_ref();
        let charge = (limit.is_some() || monitor.is_some()).then(|| Charge {
            principal: principal.user_id.clone(),
            limit,
        });
        Ok(record.submit_charged(charge).await?)
    }

    /// Waits for a record `submit_views` handed over. Refused, the answer shows nothing; admitted, the monitor
    /// counts the principal's distinct children.
    async fn settle_views(
        &self,
        scope: &RequestScope,
        submitted: Submitted,
    ) -> Result<(), PipelineError> {
        match submitted.committed(scope).await? {
            Admission::Admitted { distinct } => self.monitor(scope, distinct).await,
            Admission::Refused { retry_after } => {
                self.metrics.rate_limited("children");
                Err(PipelineError::RateLimited {
                    what: "too many distinct children viewed this hour",
                    retry_after,
                })
            }
        }
    }

    /// Raises the monitor's alert when the user's count of distinct children within its window passes the
    /// threshold, once per window: a log event, a metric, and an audit record auditors list with `accessAlerts`.
    async fn monitor(&self, scope: &RequestScope, distinct: usize) -> Result<(), PipelineError> {
        let Some(monitor) = &self.quotas.monitor else {
            return Ok(());
        };
        let user = &scope.principal.user_id;
        if !monitor.observe(user, distinct) {
            return Ok(());
        }
        // Another replica may have raised it within the window already.
        let window = chrono::Duration::from_std(monitor.window()).unwrap_or(chrono::Duration::MAX);
        let since = Utc::now() - window;
        let raised =
            crate::audit::by_operation(&self.store, Operation::MonitorAlert.as_str(), since)
                .await?
                .iter()
                .any(|r| r.entry.subject.as_deref() == Some(user.as_str()));
        if raised {
            return Ok(());
        }
        tracing::warn!(
            target: "childgraph::monitor",
            alert = "distinct_children",
            user = %user,
            organisation = %scope.principal.organisation.id,
            distinct_children = distinct,
            threshold = monitor.threshold(),
            window_minutes = monitor.window().as_secs() / 60,
            "a user viewed more distinct children than the monitoring threshold"
        );
        self.metrics.access_alert();
        let purpose = Purpose {
            purpose: Operation::MonitorAlert.purpose(),
            justification: None,
        };
        AccessRecord::new(scope, &purpose, Operation::MonitorAlert)
            .subject(user)
            .alert()
            .record()
            .await?;
        Ok(())
    }

    async fn require_child_data(
        &self,
        scope: &RequestScope,
        purpose: &Purpose,
        operation: Operation,
    ) -> Result<(), PipelineError> {
        if let Err(why) = operation.allowed_for(&scope.principal) {
            AccessRecord::new(scope, purpose, operation)
                .denied()
                .record()
                .await?;
            return Err(PipelineError::Refused(why));
        }
        if scope
            .metrics
            .policy(|| scope.policy.sees_child_data(scope.grant))
        {
            return Ok(());
        }
        AccessRecord::new(scope, purpose, operation)
            .denied()
            .record()
            .await?;
        Err(PipelineError::Forbidden(
            "none of your roles sees child data",
        ))
    }

    /// Adds the records already linked to each child that this search did not return, so that a child is shown whole.
    /// Answers which of the children the gateway's register shields.
    /// Puts these children in the register as possible matches of a shielded child, due for review by a shield
    /// officer after [`POSSIBLE_MATCH_REVIEW_DAYS`].
    async fn shield_as_possible_matches(
        &self,
        ids: impl Iterator<Item = &String>,
    ) -> Result<(), PipelineError> {
        let review_due = Utc::now() + chrono::Duration::days(POSSIBLE_MATCH_REVIEW_DAYS);
        for id in ids {
            self.store
                .put_shield(&Shield {
                    child_id: id.clone(),
                    reason: "a possible match of a shielded child".to_owned(),
                    requested_by: SYSTEM.to_owned(),
                    approved_by: SYSTEM.to_owned(),
                    review_due,
                })
                .await?;
            tracing::info!(child = %id, "shielded as a possible match of a shielded child");
        }
        Ok(())
    }

    /// After a shield is approved: every child already linked in the store that is a possible match of the shielded
    /// child is shielded at once, as a search that found them both would shield it, so that a duplicate viewed by its
    /// id is no way round the shield. Blocking queries on each of the child's records (family name, date of birth
    /// and given name) find the candidates. The ids of the children newly shielded.
    pub async fn spread_shield(
        &self,
        scope: &RequestScope,
        child_id: &str,
    ) -> Result<Vec<String>, PipelineError> {
        let reads = scope.reads.clone();
        reads
            .scope(async {
                let refs = self.store.records_of(child_id).await?;
                let records = self
                    .federation
                    .records(&refs, scope.phase_deadline(), &scope.reports)
                    .await;
                let mut asked = HashSet::new();
                let mut candidates = Vec::new();
                for record in &records {
                    let (Some(family), Some(born)) = (&record.family_name, record.date_of_birth)
                    else {
                        continue;
                    };
                    let given = record.given_names.first().cloned();
                    if !asked.insert((family.clone(), born, given.clone())) {
                        continue;
                    }
                    let criteria = SearchCriteria {
                        given_name: given,
                        family_name: Some(family.clone()),
                        date_of_birth: Some(born),
                        ..SearchCriteria::default()
                    };
                    candidates.extend(
                        self.federation
                            .search(&criteria, scope.phase_deadline(), &scope.reports)
                            .await,
                    );
                }
                let own: HashSet<RecordRef> = refs.iter().cloned().collect();
                let near: Vec<RecordRef> = candidates
                    .iter()
                    .filter(|c| !own.contains(&c.record_ref()))
                    .filter(|c| {
                        self.linker
                            .possible_match(std::slice::from_ref(*c), &records)
                    })
                    .map(PersonRecord::record_ref)
                    .collect();
                let mut ids: Vec<String> = self
                    .store
                    .children_of(&near)
                    .await?
                    .into_values()
                    .filter(|id| id != child_id)
                    .collect();
                ids.sort();
                ids.dedup();
                let already = self.store.shielded(&ids).await?;
                ids.retain(|id| !already.contains(id));
                self.shield_as_possible_matches(ids.iter()).await?;
                Ok(ids)
            })
            .await
    }

    async fn complete_records(
        &self,
        scope: &RequestScope,
        children: &mut [(String, Vec<PersonRecord>)],
    ) -> Result<HashSet<String>, PipelineError> {
        let ids: Vec<String> = children.iter().map(|(id, _)| id.clone()).collect();
        let mut linked = self.store.linked(&ids).await?;
        let mut missing: Vec<(usize, RecordRef)> = Vec::new();
        for (i, (id, records)) in children.iter().enumerate() {
            let have: HashSet<RecordRef> = records.iter().map(PersonRecord::record_ref).collect();
            for r in linked.records.remove(id).unwrap_or_default() {
                if !have.contains(&r) {
                    missing.push((i, r));
                }
            }
        }
        if missing.is_empty() {
            return Ok(linked.shielded);
        }
        let refs: Vec<RecordRef> = missing.iter().map(|(_, r)| r.clone()).collect();
        let mut fetched: HashMap<RecordRef, PersonRecord> = self
            .federation
            .records(&refs, scope.phase_deadline(), &scope.reports)
            .await
            .into_iter()
            .map(|r| (r.record_ref(), r))
            .collect();
        for (i, r) in missing {
            if let Some(record) = fetched.remove(&r) {
                children[i].1.push(record);
            }
        }
        for (_, records) in children.iter_mut() {
            records.sort_by_key(|r| source_rank(r.source));
        }
        Ok(linked.shielded)
    }

    /// Fetches and composes the children's details, and writes the answer's access record, charged against the
    /// principal's quota. The record is handed over as soon as the policy's decisions on each child are known, and the
    /// details are fetched while it is written: at once for a role that sees as much of any child as of one its
    /// organisation works with; for a role whose scope is its own organisation, once the first round of details has
    /// told which children the organisation works with (`relate`), before the rest are fetched. Either way the
    /// record's commit is not waited for here: the request keeps it, the answer is composed while it is written, and
    /// [`Pipeline::settle`] waits for it before the answer leaves. A refused or failed record leaves no data.
    async fn fetch_and_record(
        &self,
        scope: &RequestScope,
        purpose: &Purpose,
        operation: Operation,
        children: &mut [ComposedChild],
        wanted: Wanted,
    ) -> Result<(), PipelineError> {
        self.situate(scope, children).await?;
        let done = if !scope.grant.depends_on_relation() {
            None
        } else if scope
            .metrics
            .policy(|| relation_decides(&scope.policy, scope.grant, children, wanted))
        {
            Some(self.relate(scope, children, wanted).await)
        } else {
            // Nothing selected is decided by whether the organisation works with the child, so nothing is read to
            // learn it; the child is taken as not the organisation's, the narrower view, which here shows the same.
            for child in children.iter_mut() {
                child.relation = Relation::Other;
            }
            None
        };
        let record = AccessRecord::new(scope, purpose, operation).children(children, wanted);
        let submitted = self.submit_views(scope, record).await?;
        if let Err(e) = self.fetch_and_compose(scope, children, wanted, done).await {
            // The record went in: its refusal or failure is the answer's, before the fetch's.
            self.settle_views(scope, submitted).await?;
            return Err(e);
        }
        scope
            .submitted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(submitted);
        Ok(())
    }

    /// Sets what the policy's decisions on each child depend on, before any detail is fetched: whether the user
    /// holds an override of its shield, and whether it is past the age limit.
    async fn situate(
        &self,
        scope: &RequestScope,
        children: &mut [ComposedChild],
    ) -> Result<(), PipelineError> {
        let shielded: Vec<String> = children
            .iter()
            .filter(|c| c.shielded)
            .map(|c| c.id.clone())
            .collect();
        if !shielded.is_empty() {
            let overridden = self
                .store
                .overridden_for(&scope.principal.user_id, &shielded, Utc::now())
                .await?;
            for child in children.iter_mut() {
                child.overridden = overridden.contains(&child.id);
            }
        }
        let today = Utc::now().date_naive();
        let age = scope.policy.age_limit();
        scope.metrics.policy(|| {
            for child in children.iter_mut() {
                let at_school = child.records.iter().any(|r| r.source == SourceName::School);
                child.past_age = child
                    .records
                    .iter()
                    .find_map(|r| r.date_of_birth)
                    .is_some_and(|born| age.is_past(born, today, at_school));
            }
        });
        Ok(())
    }

    /// For a role whose scope is its own organisation: learns which children the organisation works with, from their
    /// services and participation, and sets each child's relation. Read first are the services and participation the
    /// role would see of a child of its own, whether or not the client asked, and the carers if the client asked and
    /// the role sees them of any child; the rest wait for the relation (`fetch_and_compose`). Returns the parts read.
    /// The children are situated (`situate`).
    async fn relate(
        &self,
        scope: &RequestScope,
        children: &mut [ComposedChild],
        wanted: Wanted,
    ) -> Vec<Parts> {
        let (policy, grant) = (&*scope.policy, scope.grant);
        let first_round = |child: &ComposedChild| {
            let mut parts = parts_for(policy, grant, child, wanted);
            // What tells whether the user's organisation works with the child, whether or not the client asked.
            let probe = parts_for(
                policy,
                grant,
                child,
                Wanted {
                    services: true,
                    participation: true,
                    ..Wanted::default()
                },
            );
            let other = Situation {
                relation: Relation::Other,
                ..child.situation()
            };
            parts.carers &= policy.decide(grant, other, Field::ChildCarers).is_visible();
            parts.involvements |= probe.involvements;
            parts.participation |= probe.participation;
            parts
        };
        let plan: Vec<Parts> = scope
            .metrics
            .policy(|| children.iter().map(first_round).collect());
        let details = self.details_by_parts(scope, children, &plan).await;
        compose(children, details);
        let org = scope.principal.organisation.source.as_ref();
        scope.metrics.policy(|| {
            for child in children.iter_mut() {
                if !org.is_some_and(|org| works_with(org, &child.details)) {
                    child.relation = Relation::Other;
                }
            }
        });
        plan
    }

    /// Fetches the details the policy allows and the client asked for, less the parts `relate` read already (`done`),
    /// and composes them into each child, with its flags and its sources' status. The children are situated
    /// (`situate`), and related (`relate`) when the role's scope is its own organisation.
    async fn fetch_and_compose(
        &self,
        scope: &RequestScope,
        children: &mut [ComposedChild],
        wanted: Wanted,
        done: Option<Vec<Parts>>,
    ) -> Result<(), PipelineError> {
        let (policy, grant) = (&*scope.policy, scope.grant);
        let plan: Vec<Parts> = scope.metrics.policy(|| {
            children
                .iter()
                .enumerate()
                .map(|(i, child)| {
                    let all = parts_for(policy, grant, child, wanted);
                    match done.as_ref().and_then(|done| done.get(i)) {
                        Some(done) => Parts {
                            carers: all.carers && !done.carers,
                            involvements: all.involvements && !done.involvements,
                            participation: all.participation && !done.participation,
                        },
                        None => all,
                    }
                })
                .collect()
        });
        let (details, flags) = tokio::join!(
            self.details_by_parts(scope, children, &plan),
            self.flags_for(scope, children, wanted)
        );
        let mut flags = flags?;
        compose(children, details);
        for child in children.iter_mut() {
            child.flags = flags.remove(&child.id).unwrap_or_default();
            child.sources = self.source_views(scope, child);
        }
        Ok(())
    }

    /// The details of each child's records, one call to the sources per distinct set of parts.
    async fn details_by_parts(
        &self,
        scope: &RequestScope,
        children: &[ComposedChild],
        plan: &[Parts],
    ) -> HashMap<RecordRef, RecordDetails> {
        let mut groups: HashMap<Parts, Vec<RecordRef>> = HashMap::new();
        for (child, parts) in children.iter().zip(plan) {
            if !parts.is_empty() {
                groups
                    .entry(*parts)
                    .or_default()
                    .extend(child.records.iter().map(PersonRecord::record_ref));
            }
        }
        let calls = groups.into_iter().map(|(parts, refs)| async move {
            self.federation
                .details(&refs, parts, scope.deadline, &scope.reports)
                .await
        });
        futures::future::join_all(calls)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// The live flags of the children whose answer may show them.
    async fn flags_for(
        &self,
        scope: &RequestScope,
        children: &[ComposedChild],
        wanted: Wanted,
    ) -> Result<HashMap<String, Vec<FlagRecord>>, PipelineError> {
        if !wanted.flags {
            return Ok(HashMap::new());
        }
        let ids: Vec<String> = children
            .iter()
            .filter(|c| {
                scope.metrics.policy(|| {
                    scope
                        .policy
                        .decide(scope.grant, c.situation(), Field::ChildFlags)
                        .is_visible()
                })
            })
            .map(|c| c.id.clone())
            .collect();
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        Ok(self.store.flags(&ids, Utc::now()).await?)
    }

    fn source_views(&self, scope: &RequestScope, child: &ComposedChild) -> Vec<SourceView> {
        self.federation
            .sources()
            .map(|source| {
                let report = scope.reports.get(source);
                let restricted = child
                    .records
                    .iter()
                    .any(|r| r.source == source && r.restricted);
                let status = match report.map(|r| r.health) {
                    Some(SourceHealth::Unavailable) => SourceStatus::Unavailable,
                    Some(SourceHealth::Timeout) => SourceStatus::Timeout,
                    _ if restricted => SourceStatus::Restricted,
                    _ => SourceStatus::Ok,
                };
                SourceView {
                    source,
                    status,
                    response_time: report.map(|r| r.elapsed).unwrap_or_default(),
                    as_of: report.map(|r| r.as_of).unwrap_or_else(Utc::now),
                }
            })
            .collect()
    }
}

/// Whether the answer's decisions on any child's selected fields depend on whether the user's organisation works with
/// the child: only then is it worth learning, from the child's services and participation (`Pipeline::relate`).
fn relation_decides(
    policy: &Policy,
    grant: Grant,
    children: &[ComposedChild],
    wanted: Wanted,
) -> bool {
    let selected = wanted.categories(policy);
    children.iter().any(|child| {
        let own = Situation {
            relation: Relation::Own,
            ..child.situation()
        };
        let other = Situation {
            relation: Relation::Other,
            ..own
        };
        (0..u64::BITS as u8)
            .filter(|&category| selected & (1u64 << category) != 0)
            .any(|category| {
                policy.decide_category(grant, own, category)
                    != policy.decide_category(grant, other, category)
            })
    })
}

/// The parts of a child's details its answer may show the user, given its situation, of those the client asked for.
fn parts_for(policy: &Policy, grant: Grant, child: &ComposedChild, wanted: Wanted) -> Parts {
    let situation = child.situation();
    let allowed = |category| {
        policy
            .decide_category(grant, situation, category)
            .is_visible()
    };
    let sensitive = policy.sensitive_category().is_some_and(&allowed);
    Parts {
        carers: wanted.carers && allowed(policy.category_of(Field::ChildCarers)),
        involvements: wanted.services
            && (allowed(policy.category_of(Field::ChildServices)) || sensitive),
        participation: wanted.participation
            && (allowed(policy.category_of(Field::ChildParticipation)) || sensitive),
    }
}

fn skeleton(id: String, shielded: bool, mut records: Vec<PersonRecord>) -> ComposedChild {
    records.sort_by_key(|r| source_rank(r.source));
    ComposedChild {
        id,
        shielded,
        records,
        details: RecordDetails::default(),
        flags: Vec::new(),
        sources: Vec::new(),
        overridden: false,
        relation: Relation::Own,
        past_age: false,
    }
}

/// The order in which sources' person fields are trusted: health registration first.
fn source_rank(source: SourceName) -> u8 {
    match source {
        SourceName::Health => 0,
        SourceName::EarlyYears => 1,
        SourceName::School => 2,
    }
}

/// Adds the details fetched to each child's.
fn compose(children: &mut [ComposedChild], mut details: HashMap<RecordRef, RecordDetails>) {
    for child in children.iter_mut() {
        for record in &child.records {
            if let Some(d) = details.remove(&record.record_ref()) {
                merge(&mut child.details, d);
            }
        }
    }
}

/// Whether an organisation, as a source knows it, works with the child: a service it runs, or a setting the child
/// takes part in.
fn works_with(org: &RecordRef, details: &RecordDetails) -> bool {
    let is_org = |source: SourceName, o: Option<&childgraph_schema::Organisation>| {
        source == org.source && o.is_some_and(|o| o.id == org.id)
    };
    details
        .involvements
        .iter()
        .any(|i| is_org(i.source, i.organisation.as_deref()))
        || details
            .participation
            .iter()
            .any(|p| is_org(p.source, p.organisation.as_deref()))
}

fn merge(into: &mut RecordDetails, from: RecordDetails) {
    into.carers.extend(from.carers);
    into.involvements.extend(from.involvements);
    into.participation.extend(from.participation);
}

/// Whether the criteria use a field that this principal may not see on a record in this situation.
fn uses_hidden_field(
    policy: &Policy,
    grant: Grant,
    situation: Situation,
    criteria: &SearchCriteria,
) -> bool {
    let used = [
        (criteria.postcode.is_some(), Field::ChildAddress),
        (
            criteria.nhs_number.is_some() || criteria.upn.is_some(),
            Field::ChildIdentifiers,
        ),
        (
            criteria.given_name.is_some() || criteria.family_name.is_some(),
            Field::ChildName,
        ),
        (criteria.date_of_birth.is_some(), Field::ChildDateOfBirth),
        (criteria.sex.is_some(), Field::ChildGender),
    ];
    used.iter()
        .any(|&(is_used, field)| is_used && !policy.decide(grant, situation, field).is_visible())
}
