//! Accounts on the Child Link model. An organisation's authorisers (roles with accounts.manage) grant its users
//! access: roles, a clearance reference and its expiry, and the date training was completed. Access lapses by itself
//! when the clearance expires or recertification is missed, and an authoriser may revoke it at once. Authorisers
//! manage their own organisation's accounts only, never their own account, and every change is audited with the
//! account it was about.

use childgraph_policies::Permission;
use chrono::{Months, NaiveDate, Utc};

use crate::access::{AccessRecord, Operation};
use crate::auth::Authenticator;
use crate::pipeline::{Pipeline, Purpose, RequestScope};
use crate::shields::{ActionError, require, required_text as text};
use crate::store::{Account, AccountChangeError, Authorisation, ClientTerms, Recertification};

/// The longest user id, name, clearance reference, phone or email kept.
const MAX_FIELD_CHARS: usize = 200;
/// The longest reason for a revocation.
const MAX_REASON_CHARS: usize = 1000;

/// What an authoriser grants with `authoriseUser`.
#[derive(Debug, Clone)]
pub struct NewAuthorisation {
    pub user_id: String,
    pub display_name: String,
    pub organisation_id: String,
    pub roles: Vec<String>,
    pub clearance_reference: String,
    pub clearance_expires: NaiveDate,
    pub training_completed: NaiveDate,
    pub phone: Option<String>,
    pub email: Option<String>,
    /// For a partner agency's API client: its scopes and quotas.
    pub client: Option<ClientTerms>,
}

/// The most a client's own quotas may be set to: a partner system, not a bulk export.
pub const MAX_CLIENT_SEARCHES_PER_MINUTE: u32 = 600;
pub const MAX_CLIENT_CHILDREN_PER_HOUR: u32 = 10_000;

fn check_terms(terms: &mut ClientTerms) -> Result<(), ActionError> {
    terms.scopes.sort();
    terms.scopes.dedup();
    if terms.scopes.is_empty() {
        return Err(ActionError::BadRequest(
            "a client needs at least one scope".to_owned(),
        ));
    }
    for (value, max, what) in [
        (
            terms.searches_per_minute,
            MAX_CLIENT_SEARCHES_PER_MINUTE,
            "searchesPerMinute",
        ),
        (
            terms.children_per_hour,
            MAX_CLIENT_CHILDREN_PER_HOUR,
            "childrenPerHour",
        ),
    ] {
        if value.is_some_and(|v| v == 0 || v > max) {
            return Err(ActionError::BadRequest(format!(
                "{what} is from 1 to {max}, or left out for the gateway's own quota"
            )));
        }
    }
    Ok(())
}

fn purpose() -> Purpose {
    Purpose {
        purpose: Operation::AccountAuthorise.purpose(),
        justification: None,
    }
}

/// Records a refused account action, naming the account it was about, and returns the refusal (or the store's
/// failure, if the record could not be written).
async fn refusal(
    scope: &RequestScope,
    operation: Operation,
    subject: &str,
    message: &str,
) -> ActionError {
    match AccessRecord::new(scope, &purpose(), operation)
        .subject(subject)
        .denied()
        .record()
        .await
    {
        Ok(()) => ActionError::Forbidden(message.to_owned()),
        Err(e) => e.into(),
    }
}

/// Refuses a change to the authoriser's own account: access is always granted by someone else.
async fn not_yourself(
    scope: &RequestScope,
    operation: Operation,
    user_id: &str,
) -> Result<(), ActionError> {
    if user_id == scope.principal.user_id {
        return Err(refusal(
            scope,
            operation,
            user_id,
            "an authoriser cannot change their own account: another authoriser of your organisation must",
        )
        .await);
    }
    Ok(())
}

/// An optional text: trimmed, absent when empty, at most `MAX_FIELD_CHARS`.
fn optional(value: Option<&str>, what: &str) -> Result<Option<String>, ActionError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) => text(v, what, MAX_FIELD_CHARS).map(Some),
        None => Ok(None),
    }
}

fn check_dates(
    clearance_expires: Option<NaiveDate>,
    training_completed: Option<NaiveDate>,
) -> Result<(), ActionError> {
    let today = Utc::now().date_naive();
    if clearance_expires.is_some_and(|d| d <= today) {
        return Err(ActionError::BadRequest(
            "the clearance must expire after today: an expired clearance authorises nobody"
                .to_owned(),
        ));
    }
    if training_completed.is_some_and(|d| d > today) {
        return Err(ActionError::BadRequest(
            "the training completion date cannot be in the future".to_owned(),
        ));
    }
    Ok(())
}

/// `authoriseUser`: grants a user of the authoriser's own organisation access, or grants it again (after a
/// revocation, or with new roles). Recertification falls due after the configured months.
pub async fn authorise(
    pipeline: &Pipeline,
    scope: &RequestScope,
    auth: &Authenticator,
    grant: NewAuthorisation,
) -> Result<Account, ActionError> {
    let operation = Operation::AccountAuthorise;
    require(scope, Permission::AccountsManage, operation).await?;
    let user_id = text(&grant.user_id, "user id", MAX_FIELD_CHARS)?;
    let principal = &scope.principal;
    if grant.organisation_id != principal.organisation.id {
        return Err(refusal(
            scope,
            operation,
            &user_id,
            "an authoriser manages the accounts of their own organisation only",
        )
        .await);
    }
    not_yourself(scope, operation, &user_id).await?;
    let display_name = text(&grant.display_name, "display name", MAX_FIELD_CHARS)?;
    let clearance_reference = text(
        &grant.clearance_reference,
        "clearance reference",
        MAX_FIELD_CHARS,
    )?;
    let mut roles: Vec<String> = grant.roles.iter().map(|r| r.trim().to_owned()).collect();
    roles.sort();
    roles.dedup();
    if roles.is_empty() {
        return Err(ActionError::BadRequest(
            "at least one role is required".to_owned(),
        ));
    }
    if let Some(unknown) = roles.iter().find(|r| !scope.policy.has_role(r)) {
        let known: Vec<&str> = scope.policy.roles().keys().map(String::as_str).collect();
        return Err(ActionError::BadRequest(format!(
            "the policy has no role {unknown:?}; its roles are {}",
            known.join(", ")
        )));
    }
    check_dates(
        Some(grant.clearance_expires),
        Some(grant.training_completed),
    )?;
    let mut client = grant.client;
    if let Some(terms) = &mut client {
        check_terms(terms)?;
    }
    let now = Utc::now();
    let account = Account {
        user_id: user_id.clone(),
        display_name,
        organisation: principal.organisation.clone(),
        roles,
        phone: optional(grant.phone.as_deref(), "phone")?,
        email: optional(grant.email.as_deref(), "email")?,
        active: true,
        authorisation: Authorisation {
            clearance_reference,
            clearance_expires: grant.clearance_expires,
            training_completed: grant.training_completed,
            authorised_by: principal.user_id.clone(),
            authorised_at: now,
            recertify_by: now + Months::new(pipeline.accounts.recertify_months),
        },
        client,
    };
    change(
        scope,
        auth,
        operation,
        &user_id,
        pipeline.store.authorise(&account),
    )
    .await
}

/// Makes an account change, recorded ahead of it with the account it is about (and, when the store refuses it or
/// fails, recorded again with that outcome), then drops the gateway's kept copy of the account, so that the change
/// holds from the user's next request.
async fn change(
    scope: &RequestScope,
    auth: &Authenticator,
    operation: Operation,
    user_id: &str,
    change: impl std::future::Future<Output = Result<Account, AccountChangeError>>,
) -> Result<Account, ActionError> {
    let account = AccessRecord::new(scope, &purpose(), operation)
        .subject(user_id)
        .ahead_of(change, |e| !matches!(e, AccountChangeError::Store(_)))
        .await?
        .map_err(change_error)?;
    auth.forget(&account.user_id).await;
    Ok(account)
}

/// The account of one of the authoriser's own organisation, or a refusal that does not tell whether the user id
/// belongs to another organisation.
async fn own_account(
    pipeline: &Pipeline,
    scope: &RequestScope,
    operation: Operation,
    user_id: &str,
) -> Result<Account, ActionError> {
    require(scope, Permission::AccountsManage, operation).await?;
    not_yourself(scope, operation, user_id).await?;
    match pipeline.store.account(user_id).await? {
        Some(account) if account.organisation.id == scope.principal.organisation.id => Ok(account),
        _ => Err(refusal(
            scope,
            operation,
            user_id,
            &AccountChangeError::NotInOrganisation.to_string(),
        )
        .await),
    }
}

/// `revokeUser`: ends a user's access at once. The account stays, inactive, with who revoked it and why.
pub async fn revoke(
    pipeline: &Pipeline,
    scope: &RequestScope,
    auth: &Authenticator,
    user_id: &str,
    reason: &str,
) -> Result<Account, ActionError> {
    let operation = Operation::AccountRevoke;
    own_account(pipeline, scope, operation, user_id).await?;
    let reason = text(reason, "reason", MAX_REASON_CHARS)?;
    let revoked = pipeline.store.revoke(
        user_id,
        &scope.principal.organisation.id,
        &scope.principal.user_id,
        &reason,
        Utc::now(),
    );
    change(scope, auth, operation, user_id, revoked).await
}

/// `recertifyUser`: keeps an active user's access for another period, with a renewed clearance expiry or training
/// date where given. A revoked user is authorised again instead.
pub async fn recertify(
    pipeline: &Pipeline,
    scope: &RequestScope,
    auth: &Authenticator,
    user_id: &str,
    clearance_expires: Option<NaiveDate>,
    training_completed: Option<NaiveDate>,
) -> Result<Account, ActionError> {
    let operation = Operation::AccountRecertify;
    let account = own_account(pipeline, scope, operation, user_id).await?;
    if !account.active {
        return Err(ActionError::BadRequest(
            "this account is revoked: authorise the user again with authoriseUser".to_owned(),
        ));
    }
    check_dates(clearance_expires, training_completed)?;
    let now = Utc::now();
    if clearance_expires.is_none() && account.authorisation.clearance_expires < now.date_naive() {
        return Err(ActionError::BadRequest(
            "the user's clearance has expired: give its new expiry".to_owned(),
        ));
    }
    let renewal = Recertification {
        recertify_by: now + Months::new(pipeline.accounts.recertify_months),
        clearance_expires,
        training_completed,
    };
    let recertified = pipeline.store.recertify(
        user_id,
        &scope.principal.organisation.id,
        &scope.principal.user_id,
        &renewal,
    );
    change(scope, auth, operation, user_id, recertified).await
}

/// `organisationAccounts`: the authoriser's own organisation's accounts, with their standing.
pub async fn list(pipeline: &Pipeline, scope: &RequestScope) -> Result<Vec<Account>, ActionError> {
    let operation = Operation::AccountList;
    require(scope, Permission::AccountsManage, operation).await?;
    let accounts = pipeline
        .store
        .organisation_accounts(&scope.principal.organisation.id)
        .await?;
    AccessRecord::new(scope, &purpose(), operation)
        .record()
        .await?;
    Ok(accounts)
}

fn change_error(e: AccountChangeError) -> ActionError {
    match e {
        AccountChangeError::Store(e) => ActionError::Store(e),
        e => ActionError::Forbidden(e.to_string()),
    }
}
