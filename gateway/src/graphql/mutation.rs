//! The mutation root, and the shield officers' oversight queries: thin over [`crate::shields`], which holds the rules.

use std::sync::Arc;

use async_graphql::{Context, ID, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};

use super::errors::coded;
use super::types::Date;
use crate::pipeline::{Pipeline, RequestScope};
use crate::shields::{self, ActionError};
use crate::store;

fn parts<'a>(ctx: &'a Context<'_>) -> Result<(&'a Pipeline, &'a Arc<RequestScope>)> {
    Ok((ctx.data::<Pipeline>()?, ctx.data::<Arc<RequestScope>>()?))
}

fn shield_error(error: ActionError) -> async_graphql::Error {
    match error {
        ActionError::Forbidden(m) => coded("FORBIDDEN", m),
        ActionError::BadRequest(m) => coded("BAD_REQUEST", m),
        ActionError::Store(e) => {
            tracing::error!(error = %e, "store failure");
            coded("INTERNAL", "internal error")
        }
    }
}

/// A request that a child be shielded.
#[derive(SimpleObject, Debug)]
pub struct ShieldRequest {
    pub id: ID,
    pub child_id: ID,
    pub reason: String,
    /// The user who asked.
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    /// The shield officer who approved it; null while it waits.
    pub approved_by: Option<String>,
}

impl From<store::ShieldRequest> for ShieldRequest {
    fn from(r: store::ShieldRequest) -> Self {
        Self {
            id: ID(r.id),
            child_id: ID(r.child_id),
            reason: r.reason,
            requested_by: r.requested_by,
            requested_at: r.requested_at,
            approved_by: r.approved_by,
        }
    }
}

/// A shield in the register.
#[derive(SimpleObject, Debug)]
pub struct Shield {
    pub child_id: ID,
    pub reason: String,
    pub requested_by: String,
    pub approved_by: String,
    pub since: DateTime<Utc>,
    /// When a shield officer is next to review it.
    pub review_due: DateTime<Utc>,
}

impl From<store::ShieldEntry> for Shield {
    fn from(e: store::ShieldEntry) -> Self {
        Self {
            child_id: ID(e.child_id),
            reason: e.reason,
            requested_by: e.requested_by,
            approved_by: e.approved_by,
            since: e.created_at,
            review_due: e.review_due,
        }
    }
}

/// An override of a child's shield by one user: also the alert shield officers review.
#[derive(SimpleObject, Debug)]
pub struct ShieldOverride {
    pub id: ID,
    pub child_id: ID,
    pub user_id: String,
    pub justification: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl From<store::ShieldOverride> for ShieldOverride {
    fn from(o: store::ShieldOverride) -> Self {
        Self {
            id: ID(o.id),
            child_id: ID(o.child_id),
            user_id: o.user_id,
            justification: o.justification,
            created_at: o.created_at,
            expires_at: o.expires_at,
        }
    }
}

/// The lawful basis for sharing information (UK GDPR Article 6).
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LawfulBasis {
    Consent,
    Contract,
    LegalObligation,
    VitalInterests,
    PublicTask,
    LegitimateInterests,
}

impl LawfulBasis {
    fn as_str(self) -> &'static str {
        match self {
            LawfulBasis::Consent => "CONSENT",
            LawfulBasis::Contract => "CONTRACT",
            LawfulBasis::LegalObligation => "LEGAL_OBLIGATION",
            LawfulBasis::VitalInterests => "VITAL_INTERESTS",
            LawfulBasis::PublicTask => "PUBLIC_TASK",
            LawfulBasis::LegitimateInterests => "LEGITIMATE_INTERESTS",
        }
    }
}

/// A disclosure of information outside the system, as recorded.
#[derive(SimpleObject, Debug)]
pub struct Disclosure {
    pub id: ID,
    pub child_id: ID,
    pub recorded_by: String,
    pub recipient: String,
    pub purpose: String,
    pub lawful_basis: LawfulBasis,
    pub consent: bool,
    pub at: DateTime<Utc>,
}

/// Whether an account lets its user in now.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStanding {
    Active,
    /// An authoriser revoked it.
    Revoked,
    /// Lapsed: the clearance expired.
    ClearanceExpired,
    /// Lapsed: it was not recertified in time.
    RecertificationMissed,
}

/// A user's account, as their organisation's authorisers see it.
#[derive(SimpleObject, Debug)]
pub struct UserAccount {
    pub user_id: String,
    pub display_name: String,
    pub organisation_id: ID,
    pub roles: Vec<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub clearance_reference: String,
    /// The last day the clearance is good for.
    pub clearance_expires: Date,
    pub training_completed: Date,
    /// The authoriser who last authorised or recertified the user.
    pub authorised_by: String,
    /// Access lapses after this unless the user is recertified.
    pub recertify_by: DateTime<Utc>,
    pub standing: AccountStanding,
    /// For a partner agency's API client: its scopes and quotas; null for a person.
    pub client: Option<ClientAccess>,
}

/// An operation an API client may be allowed; a client-credentials token's `scope` claim names them in lower case.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientScope {
    /// `searchChildren`.
    Search,
    /// `child`.
    View,
    /// `raiseFlag` and `withdrawFlag`.
    Flag,
    /// `recordDisclosure`.
    Disclosure,
}

impl From<ClientScope> for store::ClientScope {
    fn from(s: ClientScope) -> Self {
        match s {
            ClientScope::Search => store::ClientScope::Search,
            ClientScope::View => store::ClientScope::View,
            ClientScope::Flag => store::ClientScope::Flag,
            ClientScope::Disclosure => store::ClientScope::Disclosure,
        }
    }
}

impl From<store::ClientScope> for ClientScope {
    fn from(s: store::ClientScope) -> Self {
        match s {
            store::ClientScope::Search => ClientScope::Search,
            store::ClientScope::View => ClientScope::View,
            store::ClientScope::Flag => ClientScope::Flag,
            store::ClientScope::Disclosure => ClientScope::Disclosure,
        }
    }
}

/// What an API client may do, and how much.
#[derive(SimpleObject, Debug)]
pub struct ClientAccess {
    pub scopes: Vec<ClientScope>,
    /// Its own quotas; null takes the gateway's.
    pub searches_per_minute: Option<u32>,
    pub children_per_hour: Option<u32>,
}

impl From<store::Account> for UserAccount {
    fn from(a: store::Account) -> Self {
        let standing = match a.standing(Utc::now()) {
            store::Standing::Active => AccountStanding::Active,
            store::Standing::Revoked => AccountStanding::Revoked,
            store::Standing::ClearanceExpired => AccountStanding::ClearanceExpired,
            store::Standing::RecertificationMissed => AccountStanding::RecertificationMissed,
        };
        Self {
            user_id: a.user_id,
            display_name: a.display_name,
            organisation_id: ID(a.organisation.id),
            roles: a.roles,
            phone: a.phone,
            email: a.email,
            clearance_reference: a.authorisation.clearance_reference,
            clearance_expires: Date(a.authorisation.clearance_expires),
            training_completed: Date(a.authorisation.training_completed),
            authorised_by: a.authorisation.authorised_by,
            recertify_by: a.authorisation.recertify_by,
            standing,
            client: a.client.map(|c| ClientAccess {
                scopes: c.scopes.into_iter().map(Into::into).collect(),
                searches_per_minute: c.searches_per_minute,
                children_per_hour: c.children_per_hour,
            }),
        }
    }
}

/// What an authoriser grants a user of their own organisation.
#[derive(async_graphql::InputObject, Debug)]
pub struct AuthoriseUserInput {
    /// The user's subject (`sub`) in their tokens.
    pub user_id: String,
    pub display_name: String,
    /// Your own organisation: an authoriser manages no other.
    pub organisation_id: ID,
    /// Roles as the policy names them.
    pub roles: Vec<String>,
    /// The reference of the user's clearance (a DBS check, say).
    pub clearance_reference: String,
    /// The last day the clearance is good for; after it, access lapses.
    pub clearance_expires: Date,
    pub training_completed: Date,
    /// Contact details other practitioners see with the user's flags.
    pub phone: Option<String>,
    pub email: Option<String>,
}

/// What an authoriser grants a partner agency's API client of their own organisation. Its tokens come from the
/// client-credentials grant, with `sub` (and `client_id`) the client's id.
#[derive(async_graphql::InputObject, Debug)]
pub struct AuthoriseClientInput {
    pub client_id: String,
    /// The partner system, as people will know it in the audit log.
    pub display_name: String,
    /// Your own organisation: an authoriser manages no other.
    pub organisation_id: ID,
    /// Roles as the policy names them: they decide which fields the client sees.
    pub roles: Vec<String>,
    pub scopes: Vec<ClientScope>,
    /// The data-sharing agreement the client works under.
    pub agreement_reference: String,
    /// The agreement's last day; after it, the client's access lapses.
    pub agreement_expires: Date,
    /// Its own quotas; left out, the gateway's apply.
    pub searches_per_minute: Option<u32>,
    pub children_per_hour: Option<u32>,
    /// Who to contact about the client.
    pub email: Option<String>,
}

fn auth<'a>(ctx: &'a Context<'_>) -> Result<&'a Arc<crate::auth::Authenticator>> {
    ctx.data::<Arc<crate::auth::Authenticator>>()
}

#[derive(Debug, Default)]
pub struct Mutation;

#[Object]
impl Mutation {
    /// Grants a user of your organisation access, or grants it again: roles, clearance and training. Needs
    /// accounts.manage; never your own account. Recertification falls due after the configured months.
    async fn authorise_user(
        &self,
        ctx: &Context<'_>,
        input: AuthoriseUserInput,
    ) -> Result<UserAccount> {
        let (pipeline, scope) = parts(ctx)?;
        let grant = crate::accounts::NewAuthorisation {
            user_id: input.user_id,
            display_name: input.display_name,
            organisation_id: input.organisation_id.0,
            roles: input.roles,
            clearance_reference: input.clearance_reference,
            clearance_expires: input.clearance_expires.0,
            training_completed: input.training_completed.0,
            phone: input.phone,
            email: input.email,
            client: None,
        };
        crate::accounts::authorise(pipeline, scope, auth(ctx)?, grant)
            .await
            .map(Into::into)
            .map_err(shield_error)
    }

    /// Grants a partner agency's API client of your organisation access, or grants it again: roles, scopes, quotas and
    /// the data-sharing agreement it works under. Needs accounts.manage. `revokeUser` and `recertifyUser` apply to
    /// clients too.
    async fn authorise_client(
        &self,
        ctx: &Context<'_>,
        input: AuthoriseClientInput,
    ) -> Result<UserAccount> {
        let (pipeline, scope) = parts(ctx)?;
        let grant = crate::accounts::NewAuthorisation {
            user_id: input.client_id,
            display_name: input.display_name,
            organisation_id: input.organisation_id.0,
            roles: input.roles,
            clearance_reference: input.agreement_reference,
            clearance_expires: input.agreement_expires.0,
            training_completed: Utc::now().date_naive(),
            phone: None,
            email: input.email,
            client: Some(store::ClientTerms {
                scopes: input.scopes.into_iter().map(Into::into).collect(),
                searches_per_minute: input.searches_per_minute,
                children_per_hour: input.children_per_hour,
            }),
        };
        crate::accounts::authorise(pipeline, scope, auth(ctx)?, grant)
            .await
            .map(Into::into)
            .map_err(shield_error)
    }

    /// Ends a user's access at once. Needs accounts.manage, for a user of your organisation.
    async fn revoke_user(
        &self,
        ctx: &Context<'_>,
        user_id: String,
        reason: String,
    ) -> Result<UserAccount> {
        let (pipeline, scope) = parts(ctx)?;
        crate::accounts::revoke(pipeline, scope, auth(ctx)?, &user_id, &reason)
            .await
            .map(Into::into)
            .map_err(shield_error)
    }

    /// Keeps a user's access for another period, with a renewed clearance expiry or training date where given.
    /// Needs accounts.manage, for an active user of your organisation.
    async fn recertify_user(
        &self,
        ctx: &Context<'_>,
        user_id: String,
        clearance_expires: Option<Date>,
        training_completed: Option<Date>,
    ) -> Result<UserAccount> {
        let (pipeline, scope) = parts(ctx)?;
        crate::accounts::recertify(
            pipeline,
            scope,
            auth(ctx)?,
            &user_id,
            clearance_expires.map(|d| d.0),
            training_completed.map(|d| d.0),
        )
        .await
        .map(Into::into)
        .map_err(shield_error)
    }

    /// Flags a child for other practitioners. Needs flag.raise. The note is contact guidance only, never case notes,
    /// and short; the flag lapses after the policy's period.
    async fn raise_flag(
        &self,
        ctx: &Context<'_>,
        child_id: ID,
        kind: super::types::FlagKind,
        note: String,
    ) -> Result<super::types::Flag> {
        let (pipeline, scope) = parts(ctx)?;
        crate::practice::raise_flag(pipeline, scope, &child_id, kind.as_str(), &note)
            .await
            .map(super::types::Flag::new)
            .map_err(shield_error)
    }

    /// Withdraws a flag: by the practitioner who raised it or by their organisation. False if already withdrawn.
    async fn withdraw_flag(&self, ctx: &Context<'_>, flag_id: ID) -> Result<bool> {
        let (pipeline, scope) = parts(ctx)?;
        crate::practice::withdraw_flag(pipeline, scope, &flag_id)
            .await
            .map_err(shield_error)
    }

    /// Records that information about a child was shared outside the system: with whom, why, on what lawful basis,
    /// and whether with consent.
    async fn record_disclosure(
        &self,
        ctx: &Context<'_>,
        child_id: ID,
        recipient: String,
        purpose: String,
        lawful_basis: LawfulBasis,
        consent: bool,
    ) -> Result<Disclosure> {
        let (pipeline, scope) = parts(ctx)?;
        crate::practice::record_disclosure(
            pipeline,
            scope,
            &child_id,
            &recipient,
            &purpose,
            lawful_basis.as_str(),
            consent,
        )
        .await
        .map(|d| Disclosure {
            id: ID(d.id),
            child_id: ID(d.child_id),
            recorded_by: d.recorded_by,
            recipient: d.recipient,
            purpose: d.purpose,
            lawful_basis,
            consent: d.consent,
            at: d.at,
        })
        .map_err(shield_error)
    }

    /// Asks that a child be shielded. Needs shield.request; a shield officer other than you approves it.
    async fn request_shield(
        &self,
        ctx: &Context<'_>,
        child_id: ID,
        reason: String,
    ) -> Result<ShieldRequest> {
        let (pipeline, scope) = parts(ctx)?;
        shields::request(pipeline, scope, &child_id, &reason)
            .await
            .map(Into::into)
            .map_err(shield_error)
    }

    /// Approves a shield request: the child is shielded from now, due for review after the policy's period. Needs
    /// shield.approve, and someone other than the requester.
    async fn approve_shield(&self, ctx: &Context<'_>, request_id: ID) -> Result<Shield> {
        let (pipeline, scope) = parts(ctx)?;
        shields::approve(pipeline, scope, &request_id)
            .await
            .map(Into::into)
            .map_err(shield_error)
    }

    /// Lifts a child's shield. Needs shield.approve. False when the register did not shield the child.
    async fn lift_shield(&self, ctx: &Context<'_>, child_id: ID, reason: String) -> Result<bool> {
        let (pipeline, scope) = parts(ctx)?;
        shields::lift(pipeline, scope, &child_id, &reason)
            .await
            .map_err(shield_error)
    }

    /// Opens a shielded child's record to you alone, for the policy's override period. Needs shield.override and a
    /// justification of the policy's least length; shield officers are alerted at once.
    async fn override_shield(
        &self,
        ctx: &Context<'_>,
        child_id: ID,
        justification: String,
    ) -> Result<ShieldOverride> {
        let (pipeline, scope) = parts(ctx)?;
        shields::override_shield(pipeline, scope, &child_id, &justification)
            .await
            .map(Into::into)
            .map_err(shield_error)
    }
}

/// One record of a child's access log.
#[derive(SimpleObject, Debug)]
pub struct AccessLogEntry {
    pub at: DateTime<Utc>,
    pub request_id: String,
    pub user_id: String,
    pub organisation_id: String,
    pub roles: Vec<String>,
    /// The partner agency's API client the access was made through, if any.
    pub client: Option<String>,
    pub purpose: String,
    pub justification: Option<String>,
    /// `search`, `view`, `shield.override`…
    pub operation: String,
    /// Categories the answer could show, and those it withheld.
    pub shown: Vec<String>,
    pub withheld: Vec<String>,
    pub outcome: String,
    pub policy_hash: String,
}

/// A user who viewed more distinct children than the monitoring threshold within its window.
#[derive(SimpleObject, Debug)]
pub struct AccessAlert {
    pub at: DateTime<Utc>,
    pub user_id: String,
    pub organisation_id: String,
    pub roles: Vec<String>,
    /// The request that took the user past the threshold.
    pub request_id: String,
}

/// The monitor's counters.
#[derive(SimpleObject, Debug)]
pub struct ViewingActivity {
    pub window_minutes: u32,
    /// An alert is raised past this many distinct children within the window.
    pub threshold: u32,
    pub users: Vec<UserViewing>,
}

/// One user's viewing within the monitor's window.
#[derive(SimpleObject, Debug)]
pub struct UserViewing {
    pub user_id: String,
    pub distinct_children: u32,
    /// Whether the user passed the threshold within the window.
    pub alerted: bool,
}

/// The oversight queries of shield officers, auditors and authorisers, merged into the query root.
#[derive(Debug, Default)]
pub struct ShieldQueries;

#[Object]
impl ShieldQueries {
    /// Shields whose review is due, the most overdue first. Needs shield.view or shield.approve.
    async fn shields_due_for_review(&self, ctx: &Context<'_>) -> Result<Vec<Shield>> {
        let (pipeline, scope) = parts(ctx)?;
        shields::due_for_review(pipeline, scope)
            .await
            .map(|v| v.into_iter().map(Into::into).collect())
            .map_err(shield_error)
    }

    /// Overrides of the last 30 days, newest first. Needs shield.view or shield.approve.
    async fn shield_alerts(&self, ctx: &Context<'_>) -> Result<Vec<ShieldOverride>> {
        let (pipeline, scope) = parts(ctx)?;
        shields::alerts(pipeline, scope)
            .await
            .map(|v| v.into_iter().map(Into::into).collect())
            .map_err(shield_error)
    }

    /// Who saw what about a child, when and why: every audit record that names the child, oldest first. Needs
    /// audit.read; the reading is itself recorded.
    async fn child_access_log(
        &self,
        ctx: &Context<'_>,
        child_id: ID,
    ) -> Result<Vec<AccessLogEntry>> {
        let (pipeline, scope) = parts(ctx)?;
        crate::auditing::access_log(pipeline, scope, &child_id)
            .await
            .map(|records| {
                records
                    .into_iter()
                    .map(|r| AccessLogEntry {
                        at: r.entry.at,
                        request_id: r.entry.request_id,
                        user_id: r.entry.user_id,
                        organisation_id: r.entry.organisation_id,
                        roles: r.entry.roles,
                        client: r.entry.client,
                        purpose: r.entry.purpose,
                        justification: r.entry.justification,
                        operation: r.entry.operation,
                        shown: r.entry.shown,
                        withheld: r.entry.withheld,
                        outcome: r.entry.outcome,
                        policy_hash: r.entry.policy_hash,
                    })
                    .collect()
            })
            .map_err(shield_error)
    }

    /// The monitor's alerts of the last 30 days, newest first: users who viewed more distinct children than the
    /// threshold within the window. Needs audit.read.
    async fn access_alerts(&self, ctx: &Context<'_>) -> Result<Vec<AccessAlert>> {
        let (pipeline, scope) = parts(ctx)?;
        crate::auditing::alerts(pipeline, scope)
            .await
            .map(|records| {
                records
                    .into_iter()
                    .map(|r| AccessAlert {
                        at: r.entry.at,
                        user_id: r.entry.user_id,
                        organisation_id: r.entry.organisation_id,
                        roles: r.entry.roles,
                        request_id: r.entry.request_id,
                    })
                    .collect()
            })
            .map_err(shield_error)
    }

    /// Each user's count of distinct children viewed within the monitor's window, over every gateway sharing the
    /// store, the most first; null when the monitor is off. Needs audit.read.
    async fn viewing_activity(&self, ctx: &Context<'_>) -> Result<Option<ViewingActivity>> {
        let (pipeline, scope) = parts(ctx)?;
        crate::auditing::activity(pipeline, scope)
            .await
            .map(|found| {
                found.map(|(window_minutes, threshold, users)| ViewingActivity {
                    window_minutes,
                    threshold: u32::try_from(threshold).unwrap_or(u32::MAX),
                    users: users
                        .into_iter()
                        .map(|u| UserViewing {
                            user_id: u.user_id,
                            distinct_children: u32::try_from(u.distinct_children)
                                .unwrap_or(u32::MAX),
                            alerted: u.alerted,
                        })
                        .collect(),
                })
            })
            .map_err(shield_error)
    }

    /// Your organisation's accounts, with their standing and when each is due for recertification. Needs
    /// accounts.manage.
    async fn organisation_accounts(&self, ctx: &Context<'_>) -> Result<Vec<UserAccount>> {
        let (pipeline, scope) = parts(ctx)?;
        crate::accounts::list(pipeline, scope)
            .await
            .map(|v| v.into_iter().map(Into::into).collect())
            .map_err(shield_error)
    }

    /// Shield requests waiting for approval, oldest first. Needs shield.approve.
    async fn pending_shield_requests(&self, ctx: &Context<'_>) -> Result<Vec<ShieldRequest>> {
        let (pipeline, scope) = parts(ctx)?;
        shields::pending(pipeline, scope)
            .await
            .map(|v| v.into_iter().map(Into::into).collect())
            .map_err(shield_error)
    }
}
