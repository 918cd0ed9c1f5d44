//! What practitioners record about a child besides looking: flags for each other, and disclosures made outside
//! the system. Each is checked, stored and audited here; the GraphQL mutations are thin over it.

use childgraph_policies::Permission;
use chrono::{Duration, Utc};

use crate::access::{AccessRecord, Operation};
use crate::pipeline::{Pipeline, Purpose, RequestScope};
use crate::shields::{ActionError, known_child, require, required_text as text};
use crate::store::{Disclosure, FlagRecord};

/// The longest recipient or purpose of a disclosure.
const MAX_TEXT_CHARS: usize = 500;

fn purpose(p: &'static str) -> Purpose {
    Purpose {
        purpose: p,
        justification: None,
    }
}

/// `raiseFlag`: by a role with flag.raise. The note is contact guidance, kept short; the flag lapses after the
/// policy's period.
pub async fn raise_flag(
    pipeline: &Pipeline,
    scope: &RequestScope,
    child_id: &str,
    kind: &'static str,
    note: &str,
) -> Result<FlagRecord, ActionError> {
    require(scope, Permission::FlagRaise, Operation::FlagRaise).await?;
    let access = purpose("FLAG");
    let rules = scope.policy.flag_rules();
    let note = text(note, "note", rules.note_max_chars)?;
    known_child(pipeline, child_id).await?;
    let now = Utc::now();
    let flag = FlagRecord {
        id: format!("flg_{}", uuid::Uuid::new_v4().simple()),
        child_id: child_id.to_owned(),
        kind: kind.to_owned(),
        note,
        raised_by: scope.principal.clone(),
        raised_at: now,
        expires_at: now + Duration::days(i64::from(rules.expire_days)),
    };
    AccessRecord::new(scope, &access, Operation::FlagRaise)
        .child_ids(vec![child_id.to_owned()])
        .ahead_of(pipeline.store.put_flag(&flag), |_| false)
        .await??;
    Ok(flag)
}

/// `withdrawFlag`: by the practitioner who raised it, or by someone of their organisation.
pub async fn withdraw_flag(
    pipeline: &Pipeline,
    scope: &RequestScope,
    flag_id: &str,
) -> Result<bool, ActionError> {
    let access = purpose("FLAG");
    if let Err(why) = Operation::FlagWithdraw.allowed_for(&scope.principal) {
        AccessRecord::new(scope, &access, Operation::FlagWithdraw)
            .denied()
            .record()
            .await?;
        return Err(ActionError::Forbidden(why));
    }
    let Some(owner) = pipeline.store.flag_owner(flag_id).await? else {
        return Err(ActionError::BadRequest("no flag has this id".to_owned()));
    };
    let principal = &scope.principal;
    if owner.raised_by != principal.user_id && owner.organisation_id != principal.organisation.id {
        AccessRecord::new(scope, &access, Operation::FlagWithdraw)
            .child_ids(vec![owner.child_id])
            .denied()
            .record()
            .await?;
        return Err(ActionError::Forbidden(
            "a flag is withdrawn by the practitioner who raised it or by their organisation"
                .to_owned(),
        ));
    }
    let withdrawn = AccessRecord::new(scope, &access, Operation::FlagWithdraw)
        .child_ids(vec![owner.child_id])
        .ahead_of(
            pipeline
                .store
                .withdraw_flag(flag_id, &principal.user_id, Utc::now()),
            |_| false,
        )
        .await??;
    Ok(withdrawn)
}

/// `recordDisclosure`: by anyone whose roles see child data. It records that information was shared outside the
/// system, with whom, why, on what lawful basis and whether with consent.
pub async fn record_disclosure(
    pipeline: &Pipeline,
    scope: &RequestScope,
    child_id: &str,
    recipient: &str,
    why: &str,
    lawful_basis: &'static str,
    consent: bool,
) -> Result<Disclosure, ActionError> {
    let access = purpose("DISCLOSURE");
    let refusal = match Operation::Disclosure.allowed_for(&scope.principal) {
        Err(why) => Some(why),
        Ok(()) if !scope.policy.sees_child_data(scope.grant) => {
            Some("none of your roles sees child data".to_owned())
        }
        Ok(()) => None,
    };
    if let Some(why) = refusal {
        AccessRecord::new(scope, &access, Operation::Disclosure)
            .denied()
            .record()
            .await?;
        return Err(ActionError::Forbidden(why));
    }
    let recipient = text(recipient, "recipient", MAX_TEXT_CHARS)?;
    let why = text(why, "purpose", MAX_TEXT_CHARS)?;
    known_child(pipeline, child_id).await?;
    let disclosure = Disclosure {
        id: format!("dsc_{}", uuid::Uuid::new_v4().simple()),
        child_id: child_id.to_owned(),
        recorded_by: scope.principal.user_id.clone(),
        organisation_id: scope.principal.organisation.id.clone(),
        recipient,
        purpose: why,
        lawful_basis: lawful_basis.to_owned(),
        consent,
        at: Utc::now(),
    };
    AccessRecord::new(scope, &access, Operation::Disclosure)
        .child_ids(vec![child_id.to_owned()])
        .ahead_of(pipeline.store.put_disclosure(&disclosure), |_| false)
        .await??;
    Ok(disclosure)
}
