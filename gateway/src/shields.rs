//! The shield lifecycle as the mutations and oversight queries run it: who may do what, what is checked, and what
//! is recorded. Two people are involved in every shield: one requests it, a shield officer who is someone else
//! approves it.

use childgraph_policies::Permission;
use chrono::{DateTime, Duration, Months, Utc};

use crate::access::{AccessRecord, Operation};
use crate::pipeline::{Pipeline, Purpose, RequestScope};
use crate::store::{ApprovalError, ShieldEntry, ShieldOverride, ShieldRequest, StoreError};

/// The longest reason or justification kept: enough to explain, too short for case notes.
pub const MAX_REASON_CHARS: usize = 1000;
/// How far back `shieldAlerts` looks.
pub const ALERT_WINDOW_DAYS: i64 = 30;

/// Why an action (a shield operation, a flag, a disclosure) was refused. Messages carry no child data.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ApprovalError> for ActionError {
    fn from(e: ApprovalError) -> Self {
        match e {
            ApprovalError::SamePerson => ActionError::Forbidden(e.to_string()),
            ApprovalError::NoSuchRequest | ApprovalError::AlreadyApproved => {
                ActionError::BadRequest(e.to_string())
            }
            ApprovalError::Store(e) => ActionError::Store(e),
        }
    }
}

const PURPOSE: &str = "SHIELDING";

fn purpose(justification: Option<&str>) -> Purpose {
    Purpose {
        purpose: PURPOSE,
        justification: justification.map(str::to_owned),
    }
}

/// Refuses, and records the refusal, unless one of the user's roles holds the permission.
pub(crate) async fn require(
    scope: &RequestScope,
    permission: Permission,
    operation: Operation,
) -> Result<(), ActionError> {
    let refusal = match operation.allowed_for(&scope.principal) {
        Err(why) => why,
        Ok(()) if scope.grant.may(permission) => return Ok(()),
        Ok(()) => format!(
            "none of your roles holds the {} permission",
            permission.name()
        ),
    };
    let purpose = Purpose {
        purpose: operation.purpose(),
        justification: None,
    };
    AccessRecord::new(scope, &purpose, operation)
        .denied()
        .record()
        .await?;
    Err(ActionError::Forbidden(refusal))
}

/// A reason in words: trimmed, not empty, not too long.
fn reason(text: &str, what: &str) -> Result<String, ActionError> {
    required_text(text, what, MAX_REASON_CHARS)
}

/// Text a user must give: trimmed, not empty, at most `max` characters.
pub(crate) fn required_text(text: &str, what: &str, max: usize) -> Result<String, ActionError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ActionError::BadRequest(format!("a {what} is required")));
    }
    if text.chars().count() > max {
        return Err(ActionError::BadRequest(format!(
            "a {what} has at most {max} characters"
        )));
    }
    Ok(text.to_owned())
}

/// Refuses an id the gateway has never given a child.
pub(crate) async fn known_child(pipeline: &Pipeline, child_id: &str) -> Result<(), ActionError> {
    if pipeline.store.child_exists(child_id).await? {
        Ok(())
    } else {
        Err(ActionError::BadRequest("no child has this id".to_owned()))
    }
}

/// `requestShield`: by a role with shield.request.
pub async fn request(
    pipeline: &Pipeline,
    scope: &RequestScope,
    child_id: &str,
    why: &str,
) -> Result<ShieldRequest, ActionError> {
    require(scope, Permission::ShieldRequest, Operation::ShieldRequest).await?;
    let why = reason(why, "reason")?;
    known_child(pipeline, child_id).await?;
    let request = AccessRecord::new(scope, &purpose(None), Operation::ShieldRequest)
        .child_ids(vec![child_id.to_owned()])
        .ahead_of(
            pipeline
                .store
                .request_shield(child_id, &why, &scope.principal.user_id, Utc::now()),
            |_| false,
        )
        .await??;
    Ok(request)
}

/// `approveShield`: by a role with shield.approve, who did not request it. The review falls due after the policy's
/// review period.
pub async fn approve(
    pipeline: &Pipeline,
    scope: &RequestScope,
    request_id: &str,
) -> Result<ShieldEntry, ActionError> {
    require(scope, Permission::ShieldApprove, Operation::ShieldApprove).await?;
    let now = Utc::now();
    let review_due = now + Months::new(scope.policy.review_months());
    let Some(asked) = pipeline.store.shield_request(request_id).await? else {
        return Err(ApprovalError::NoSuchRequest.into());
    };
    if asked.approved_by.is_some() {
        return Err(ApprovalError::AlreadyApproved.into());
    }
    if asked.requested_by == scope.principal.user_id {
        AccessRecord::new(scope, &purpose(None), Operation::ShieldApprove)
            .child_ids(vec![asked.child_id.clone()])
            .denied()
            .record()
            .await?;
        return Err(ApprovalError::SamePerson.into());
    }
    // The store checks both again in the approval's transaction: a request approved meanwhile is refused there.
    let entry = AccessRecord::new(scope, &purpose(None), Operation::ShieldApprove)
        .child_ids(vec![asked.child_id.clone()])
        .ahead_of(
            pipeline
                .store
                .approve_shield(request_id, &scope.principal.user_id, review_due, now),
            |e| !matches!(e, ApprovalError::Store(_)),
        )
        .await??;
    tracing::info!(child = %entry.child_id, "shield approved");
    // The shield covers the child's possible matches at once. One a source could not be asked about now is shielded
    // by the next search that finds both.
    if let Err(e) = pipeline.spread_shield(scope, &entry.child_id).await {
        tracing::warn!(child = %entry.child_id, error = %e, "the shield could not be spread to possible matches yet");
    }
    Ok(entry)
}

/// `liftShield`: by a role with shield.approve. False when the register did not shield the child.
pub async fn lift(
    pipeline: &Pipeline,
    scope: &RequestScope,
    child_id: &str,
    why: &str,
) -> Result<bool, ActionError> {
    require(scope, Permission::ShieldApprove, Operation::ShieldLift).await?;
    let why = reason(why, "reason")?;
    known_child(pipeline, child_id).await?;
    let lifted = AccessRecord::new(scope, &purpose(None), Operation::ShieldLift)
        .child_ids(vec![child_id.to_owned()])
        .ahead_of(
            pipeline
                .store
                .lift_shield(child_id, &scope.principal.user_id, &why, Utc::now()),
            |_| false,
        )
        .await??;
    if lifted {
        tracing::info!(child = %child_id, "shield lifted");
    }
    Ok(lifted)
}

/// `overrideShield`: by a role with shield.override, with a justification of at least the policy's length. It opens
/// the shielded child to this user only, for the policy's duration, and alerts shield officers at once.
pub async fn override_shield(
    pipeline: &Pipeline,
    scope: &RequestScope,
    child_id: &str,
    justification: &str,
) -> Result<ShieldOverride, ActionError> {
    require(scope, Permission::ShieldOverride, Operation::ShieldOverride).await?;
    let rules = scope.policy.override_rules();
    let justification = reason(justification, "justification")?;
    if justification.chars().count() < rules.min_justification {
        return Err(ActionError::BadRequest(format!(
            "an override needs a justification of at least {} characters",
            rules.min_justification
        )));
    }
    known_child(pipeline, child_id).await?;
    // A child shielded by the register or by a source's restriction label alike; for a child no one shields the
    // override changes nothing, and is still recorded and alerted.
    let now = Utc::now();
    let record = ShieldOverride {
        id: format!("ovr_{}", uuid::Uuid::new_v4().simple()),
        child_id: child_id.to_owned(),
        user_id: scope.principal.user_id.clone(),
        justification: justification.clone(),
        created_at: now,
        expires_at: now + Duration::minutes(i64::from(rules.minutes)),
    };
    AccessRecord::new(
        scope,
        &purpose(Some(&justification)),
        Operation::ShieldOverride,
    )
    .child_ids(vec![child_id.to_owned()])
    .ahead_of(pipeline.store.put_override(&record), |_| false)
    .await??;
    scope.metrics.shield_override();
    alert(&record, &rules.alert);
    Ok(record)
}

/// The alert of an override: shield officers see it at once in `shieldAlerts`; monitoring sees this log event,
/// which names the child by id only, and the metric.
fn alert(record: &ShieldOverride, notify: &[String]) {
    tracing::warn!(
        target: "childgraph::alert",
        alert = "shield-override",
        child = %record.child_id,
        user = %record.user_id,
        expires_at = %record.expires_at.to_rfc3339(),
        notify = %notify.join(","),
        "a shield was overridden"
    );
}

/// `shieldsDueForReview`: for roles with shield.view or shield.approve.
pub async fn due_for_review(
    pipeline: &Pipeline,
    scope: &RequestScope,
) -> Result<Vec<ShieldEntry>, ActionError> {
    oversight(scope).await?;
    Ok(pipeline.store.shields_due_for_review(Utc::now()).await?)
}

/// `shieldAlerts`: overrides of the last [`ALERT_WINDOW_DAYS`] days, newest first, for the roles the policy alerts.
pub async fn alerts(
    pipeline: &Pipeline,
    scope: &RequestScope,
) -> Result<Vec<ShieldOverride>, ActionError> {
    // The policy names who is alerted to an override (`shielding.override.alert`); they, and no one else, read it.
    let alerted = &scope.policy.override_rules().alert;
    if !scope.principal.roles.iter().any(|r| alerted.contains(r)) {
        AccessRecord::new(scope, &purpose(None), Operation::ShieldReview)
            .denied()
            .record()
            .await?;
        return Err(ActionError::Forbidden(format!(
            "shield alerts go to the roles the policy alerts to an override: {}",
            alerted.join(", ")
        )));
    }
    let since: DateTime<Utc> = Utc::now() - Duration::days(ALERT_WINDOW_DAYS);
    Ok(pipeline.store.overrides_since(since).await?)
}

/// `pendingShieldRequests`: for roles with shield.approve.
pub async fn pending(
    pipeline: &Pipeline,
    scope: &RequestScope,
) -> Result<Vec<ShieldRequest>, ActionError> {
    require(scope, Permission::ShieldApprove, Operation::ShieldReview).await?;
    Ok(pipeline.store.pending_shield_requests().await?)
}

async fn oversight(scope: &RequestScope) -> Result<(), ActionError> {
    if scope.grant.may(Permission::ShieldView) || scope.grant.may(Permission::ShieldApprove) {
        return Ok(());
    }
    require(scope, Permission::ShieldView, Operation::ShieldReview).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captures what a subscriber is given to write.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_override_raises_a_log_alert_naming_the_child_by_id_only() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(move || writer.clone())
            .finish();
        let now = Utc::now();
        let record = ShieldOverride {
            id: "ovr_1".to_owned(),
            child_id: "ch_1".to_owned(),
            user_id: "social-worker".to_owned(),
            justification: "Seen at A&E; the justification stays in the store".to_owned(),
            created_at: now,
            expires_at: now + Duration::minutes(30),
        };
        tracing::subscriber::with_default(subscriber, || {
            alert(&record, &["shield-officer".to_owned()]);
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let event: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON line");
        assert_eq!(event["level"], "WARN");
        assert_eq!(event["target"], "childgraph::alert");
        assert_eq!(event["fields"]["alert"], "shield-override");
        assert_eq!(event["fields"]["child"], "ch_1");
        assert_eq!(event["fields"]["notify"], "shield-officer");
        assert!(
            !text.contains("A&E"),
            "the justification is not logged: {text}"
        );
    }
}
