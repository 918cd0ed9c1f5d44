//! One record per operation on child data: written durably to the audit log (`crate::audit`) before the answer
//! leaves, and to the log under the `childgraph::access` target.
//!
//! It names who asked, why, what operation, and which children by gateway id only: never a name, a date of birth or
//! a search term. It also names the categories shown and withheld, and the policy that decided, by its file's hash.

use crate::audit::{AuditEntry, Receipt};
use crate::pipeline::{ComposedChild, Purpose, RequestScope, Wanted};
use crate::quotas::{Admission, Charge};
use crate::store::{ClientScope, StoreError};

#[derive(Debug, Clone, Copy)]
pub enum Operation {
    Search,
    View,
    ShieldRequest,
    ShieldApprove,
    ShieldLift,
    ShieldOverride,
    /// Reading the shield officers' lists.
    ShieldReview,
    /// Reading a child's access log.
    AuditRead,
    FlagRaise,
    FlagWithdraw,
    Disclosure,
    AccountAuthorise,
    AccountRevoke,
    AccountRecertify,
    /// Reading an organisation's accounts.
    AccountList,
    /// The monitor's alert on a user who viewed many distinct children: recorded against that user's request.
    MonitorAlert,
    /// Reading the monitor's alerts and counters.
    MonitorRead,
    /// A request refused before any operation ran (an operation not on the trusted list).
    Request,
    /// A genuine token's user refused at sign-in: no MFA, no active authorisation, or the wrong kind of account.
    SignIn,
}

impl Operation {
    /// The scope an API client needs for the operation; `None` for an operation no client may perform.
    pub fn client_scope(self) -> Option<ClientScope> {
        match self {
            Operation::Search => Some(ClientScope::Search),
            Operation::View => Some(ClientScope::View),
            Operation::FlagRaise | Operation::FlagWithdraw => Some(ClientScope::Flag),
            Operation::Disclosure => Some(ClientScope::Disclosure),
            _ => None,
        }
    }

    /// Whether the principal may perform the operation as far as API-client scopes go: a person always may; a
    /// client only with the operation's scope. Why not, when not.
    pub fn allowed_for(self, principal: &crate::store::Account) -> Result<(), String> {
        let Some(client) = &principal.client else {
            return Ok(());
        };
        match self.client_scope() {
            Some(needed) if client.scopes.contains(&needed) => Ok(()),
            Some(needed) => Err(format!(
                "this API client's scopes do not include {}",
                needed.as_str()
            )),
            None => Err(format!("an API client may not perform {}", self.as_str())),
        }
    }

    /// The purpose recorded with an operation the user names no purpose for: every one but search and view.
    pub fn purpose(self) -> &'static str {
        match self {
            Operation::Search | Operation::View => "SAFEGUARDING",
            Operation::ShieldRequest
            | Operation::ShieldApprove
            | Operation::ShieldLift
            | Operation::ShieldOverride
            | Operation::ShieldReview => "SHIELDING",
            Operation::AuditRead => "AUDIT",
            Operation::FlagRaise | Operation::FlagWithdraw => "FLAG",
            Operation::Disclosure => "DISCLOSURE",
            Operation::AccountAuthorise
            | Operation::AccountRevoke
            | Operation::AccountRecertify
            | Operation::AccountList => "ACCOUNTS",
            Operation::MonitorAlert | Operation::MonitorRead => "MONITORING",
            Operation::Request | Operation::SignIn => "UNSTATED",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Search => "search",
            Operation::View => "view",
            Operation::ShieldRequest => "shield.request",
            Operation::ShieldApprove => "shield.approve",
            Operation::ShieldLift => "shield.lift",
            Operation::ShieldOverride => "shield.override",
            Operation::ShieldReview => "shield.review",
            Operation::AuditRead => "audit.read",
            Operation::FlagRaise => "flag.raise",
            Operation::FlagWithdraw => "flag.withdraw",
            Operation::Disclosure => "disclosure",
            Operation::AccountAuthorise => "account.authorise",
            Operation::AccountRevoke => "account.revoke",
            Operation::AccountRecertify => "account.recertify",
            Operation::AccountList => "account.list",
            Operation::MonitorAlert => "monitor.alert",
            Operation::MonitorRead => "monitor.read",
            Operation::Request => "request",
            Operation::SignIn => "sign_in",
        }
    }
}

/// An access about to be logged.
#[derive(Debug, Clone)]
pub struct AccessRecord<'a> {
    scope: &'a RequestScope,
    said: Said,
}

/// What a record says of the access, besides who asked (the request's scope).
#[derive(Debug, Clone)]
struct Said {
    purpose: Purpose,
    operation: Operation,
    children: Vec<String>,
    shown: Vec<String>,
    withheld: Vec<String>,
    outcome: &'static str,
    subject: Option<String>,
}

/// A record handed to the audit log and not yet known to be down. It borrows nothing, so the request can keep it
/// while its answer is composed; nothing of the answer may leave before [`Submitted::committed`] says it is down.
#[derive(Debug)]
pub struct Submitted {
    said: Said,
    receipt: Receipt,
}

impl<'a> AccessRecord<'a> {
    pub fn new(scope: &'a RequestScope, purpose: &Purpose, operation: Operation) -> Self {
        Self {
            scope,
            said: Said {
                purpose: purpose.clone(),
                operation,
                children: Vec::new(),
                shown: Vec::new(),
                withheld: Vec::new(),
                outcome: "ok",
                subject: None,
            },
        }
    }

    /// The children answered, and of the categories the client selected, those the answer returned (for some
    /// child) and those it withheld (from some child).
    pub fn children(mut self, children: &[ComposedChild], wanted: Wanted) -> Self {
        self.said.children = children.iter().map(|c| c.id.clone()).collect();
        let scope = self.scope;
        let policy = &scope.policy;
        scope.metrics.policy(|| {
            let selected = wanted.categories(policy);
            for (i, (name, _)) in policy.categories().enumerate() {
                let Ok(index) = u8::try_from(i) else { break };
                if selected & (1u64 << index) == 0 {
                    continue;
                }
                let visible = |c: &ComposedChild| {
                    policy
                        .decide_category(scope.grant, c.situation(), index)
                        .is_visible()
                };
                if children.iter().any(visible) {
                    self.said.shown.push(name.to_owned());
                }
                if !children.iter().all(visible) {
                    self.said.withheld.push(name.to_owned());
                }
            }
        });
        self
    }

    pub fn child_ids(mut self, ids: Vec<String>) -> Self {
        self.said.children = ids;
        self
    }

    /// The account an account action is about.
    pub fn subject(mut self, user_id: &str) -> Self {
        self.said.subject = Some(user_id.to_owned());
        self
    }

    pub fn too_many(mut self) -> Self {
        self.said.outcome = "too_many_results";
        self
    }

    pub fn not_found(mut self) -> Self {
        self.said.outcome = "not_found";
        self
    }

    pub fn rate_limited(mut self) -> Self {
        self.said.outcome = "rate_limited";
        self
    }

    pub fn alert(mut self) -> Self {
        self.said.outcome = "alert";
        self
    }

    pub fn denied(mut self) -> Self {
        self.said.outcome = "denied";
        self
    }

    /// An action recorded ahead of its change, which then failed.
    pub fn failed(mut self) -> Self {
        self.said.outcome = "failed";
        self
    }

    /// Records an action durably before its change is made, so that nothing changes without a record; then makes
    /// the change. When the change is refused (`refused` says which errors are refusals) or fails, a second record
    /// under the same request id says so, `denied` or `failed`. The outer error means the first record is not down,
    /// and nothing was changed.
    pub async fn ahead_of<T, E>(
        self,
        change: impl std::future::Future<Output = Result<T, E>>,
        refused: impl FnOnce(&E) -> bool,
    ) -> Result<Result<T, E>, StoreError> {
        self.clone().record().await?;
        let result = change.await;
        if let Err(e) = &result {
            let after = if refused(e) {
                self.denied()
            } else {
                self.failed()
            };
            // A failure here is logged by `record`; the caller answers with the change's own error.
            let _ = after.record().await;
        }
        Ok(result)
    }

    /// Writes the record to the audit log, durably, then to the log. An error means the record is not down: the
    /// caller must not answer with child data.
    pub async fn record(self) -> Result<(), StoreError> {
        self.record_charged(None).await.map(|_| ())
    }

    /// Writes the record as [`record`](Self::record) does, with the answer's charge against the principal's quota
    /// of distinct children decided in the same transaction. Refused, the record says so (`rate_limited`, nothing
    /// shown), and the caller must not show the children.
    pub async fn record_charged(self, charge: Option<Charge>) -> Result<Admission, StoreError> {
        let scope = self.scope;
        self.submit_charged(charge).await?.committed(scope).await
    }

    /// Hands the record, with its charge, to the audit log, and returns before it is committed: the caller may
    /// compose the answer meanwhile, and must learn from [`Submitted::committed`] that the record is down before any
    /// of it leaves.
    pub async fn submit_charged(self, charge: Option<Charge>) -> Result<Submitted, StoreError> {
        let scope = self.scope;
        let principal = &scope.principal;
        let said = self.said;
        let entry = AuditEntry {
            at: chrono::Utc::now(),
            request_id: scope.request_id.clone(),
            user_id: principal.user_id.clone(),
            organisation_id: principal.organisation.id.clone(),
            roles: principal.roles.clone(),
            client: principal.client.as_ref().map(|_| principal.user_id.clone()),
            purpose: said.purpose.purpose.to_owned(),
            justification: said.purpose.justification.clone(),
            operation: said.operation.as_str().to_owned(),
            child_ids: said.children.clone(),
            shown: said.shown.clone(),
            withheld: said.withheld.clone(),
            outcome: said.outcome.to_owned(),
            policy_hash: scope.policy.hash().to_owned(),
            subject: said.subject.clone(),
        };
        match scope.audit.submit_charged(entry, charge).await {
            Ok(receipt) => Ok(Submitted { said, receipt }),
            Err(e) => Err(not_written(said.operation, e)),
        }
    }
}

impl Submitted {
    /// Waits until the record is down, then writes it to the log. Refused, the record says so (`rate_limited`,
    /// nothing shown). An error means the record is not down: the answer must not show child data.
    pub async fn committed(self, scope: &RequestScope) -> Result<Admission, StoreError> {
        let Self { mut said, receipt } = self;
        let (appended, took) = receipt.committed().await;
        scope.metrics.audit_write(took);
        let admission = appended.map_err(|e| not_written(said.operation, e))?;
        if !admission.is_admitted() {
            said.outcome = "rate_limited";
            said.shown.clear();
            said.withheld.clear();
        }
        said.log(scope);
        Ok(admission)
    }
}

fn not_written(operation: Operation, e: StoreError) -> StoreError {
    tracing::error!(error = %e, operation = operation.as_str(), "the audit record could not be written");
    e
}

impl Said {
    fn log(&self, scope: &RequestScope) {
        let principal = &scope.principal;
        tracing::info!(
            target: "childgraph::access",
            request_id = %scope.request_id,
            user = %principal.user_id,
            organisation = %principal.organisation.id,
            roles = %principal.roles.join(","),
            purpose = self.purpose.purpose,
            justified = self.purpose.justification.is_some(),
            operation = self.operation.as_str(),
            children = %self.children.join(","),
            subject = self.subject.as_deref().unwrap_or(""),
            outcome = self.outcome,
            policy = %scope.policy.hash(),
            "access"
        );
    }
}
