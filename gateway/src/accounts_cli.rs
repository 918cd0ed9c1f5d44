//! `childgraph accounts authorise`: the operator's way to set up an organisation and the first authoriser of its
//! accounts, from the store a config names. From then on the organisation's authorisers grant access themselves,
//! with `authoriseUser`.
//!
//! The grant goes through the same rules as an authoriser's (an account held by another organisation is never taken
//! over), and is written to the audit log as `account.authorise`, naming the operator who made it.

use chrono::{Months, NaiveDate, Utc};

use crate::audit::{AuditEntry, AuditLog};
use crate::store::{Account, Authorisation, OrganisationRecord, Store};

/// What the operator grants: the command line of `childgraph accounts authorise`, less `--config`.
#[derive(Debug, Clone, clap::Args)]
pub struct Grant {
    #[arg(long = "user")]
    pub user_id: String,
    /// The user's name, as other practitioners see it.
    #[arg(long = "name")]
    pub display_name: String,
    #[arg(long = "organisation")]
    pub organisation_id: String,
    #[arg(long)]
    pub organisation_name: String,
    /// A role of the policy in force; repeat for several.
    #[arg(long = "role", required = true)]
    pub roles: Vec<String>,
    #[arg(long)]
    pub clearance_reference: String,
    /// The last day the clearance is good for (YYYY-MM-DD).
    #[arg(long)]
    pub clearance_expires: NaiveDate,
    /// When the user completed the training (YYYY-MM-DD).
    #[arg(long)]
    pub training_completed: NaiveDate,
    #[arg(long)]
    pub email: Option<String>,
    #[arg(long)]
    pub phone: Option<String>,
    /// Who makes the grant, as the audit log will name them.
    #[arg(long = "by")]
    pub operator: String,
}

/// Creates or renames the organisation, then authorises the user in it, and records the grant. Returns a line for
/// the operator.
pub async fn authorise(
    store: &Store,
    policy: &childgraph_policies::Policy,
    grant: Grant,
    recertify_months: u32,
) -> anyhow::Result<String> {
    for (value, what) in [
        (&grant.user_id, "--user"),
        (&grant.display_name, "--name"),
        (&grant.organisation_id, "--organisation"),
        (&grant.organisation_name, "--organisation-name"),
        (&grant.clearance_reference, "--clearance-reference"),
        (&grant.operator, "--by"),
    ] {
        if value.trim().is_empty() {
            anyhow::bail!("{what} is empty");
        }
    }
    if grant.roles.is_empty() {
        anyhow::bail!("give at least one --role");
    }
    if let Some(unknown) = grant.roles.iter().find(|r| !policy.has_role(r)) {
        anyhow::bail!("--role {unknown}: the policy in force has no such role");
    }
    let today = Utc::now().date_naive();
    if grant.clearance_expires < today {
        anyhow::bail!("--clearance-expires is in the past: the account would be lapsed at once");
    }
    if grant.training_completed > today {
        anyhow::bail!("--training-completed is in the future");
    }
    let now = Utc::now();
    let account = Account {
        user_id: grant.user_id.clone(),
        display_name: grant.display_name.clone(),
        organisation: OrganisationRecord {
            id: grant.organisation_id.clone(),
            name: grant.organisation_name.clone(),
            source: None,
        },
        roles: grant.roles.clone(),
        phone: grant.phone.clone(),
        email: grant.email.clone(),
        active: true,
        authorisation: Authorisation {
            clearance_reference: grant.clearance_reference.clone(),
            clearance_expires: grant.clearance_expires,
            training_completed: grant.training_completed,
            authorised_by: grant.operator.clone(),
            authorised_at: now,
            recertify_by: now + Months::new(recertify_months),
        },
        client: None,
    };
    store.upsert_organisation(&account.organisation).await?;
    let granted = store.authorise(&account).await.map_err(|e| {
        anyhow::anyhow!("{}: {e}", grant.user_id).context("the account was not authorised")
    })?;
    let log = AuditLog::start(store.clone());
    log.append(AuditEntry {
        organisation_id: grant.organisation_id.clone(),
        subject: Some(grant.user_id.clone()),
        ..AuditEntry::outside_a_request(
            format!("cli-{}", uuid::Uuid::new_v4()),
            grant.operator.clone(),
            "ACCOUNTS",
            "account.authorise",
            "ok",
            policy.hash(),
        )
    })
    .await?;
    Ok(format!(
        "{} is authorised in {} as {}, until the clearance expires on {} or recertification is missed on {}\n",
        granted.user_id,
        granted.organisation.id,
        granted.roles.join(", "),
        granted.authorisation.clearance_expires,
        granted.authorisation.recertify_by.date_naive(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Standing;

    fn grant(user: &str, organisation: &str) -> Grant {
        let today = Utc::now().date_naive();
        Grant {
            user_id: user.to_owned(),
            display_name: "Alex Lead".to_owned(),
            organisation_id: organisation.to_owned(),
            organisation_name: "Riverside Council".to_owned(),
            roles: vec!["authoriser".to_owned()],
            clearance_reference: "DBS-001".to_owned(),
            clearance_expires: today + chrono::Duration::days(365),
            training_completed: today,
            email: None,
            phone: None,
            operator: "ops-jo".to_owned(),
        }
    }

    #[tokio::test]
    async fn the_first_authoriser_of_an_organisation_is_set_up_and_audited() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("s.db")).await.unwrap();
        let policy = childgraph_policies::Policy::default_policy();
        let out = authorise(&store, &policy, grant("alex", "org-council"), 4)
            .await
            .unwrap();
        assert!(
            out.starts_with("alex is authorised in org-council as authoriser"),
            "{out}"
        );
        let account = store.account("alex").await.unwrap().expect("the account");
        assert_eq!(account.standing(Utc::now()), Standing::Active);
        assert_eq!(account.organisation.name, "Riverside Council");
        assert_eq!(account.authorisation.authorised_by, "ops-jo");
        let records = crate::audit::by_operation(
            &store,
            "account.authorise",
            Utc::now() - chrono::Duration::hours(1),
        )
        .await
        .unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].entry.user_id, "ops-jo");
        assert_eq!(records[0].entry.subject.as_deref(), Some("alex"));

        // Another organisation cannot take the account over; unknown roles and lapsed clearances are refused.
        let taken = authorise(&store, &policy, grant("alex", "org-other"), 4).await;
        assert!(taken.is_err());
        assert_eq!(
            store
                .account("alex")
                .await
                .unwrap()
                .unwrap()
                .organisation
                .id,
            "org-council"
        );
        let mut unknown = grant("sam", "org-council");
        unknown.roles = vec!["superuser".to_owned()];
        let refused = authorise(&store, &policy, unknown, 4).await.unwrap_err();
        assert!(refused.to_string().contains("no such role"), "{refused}");
        let mut lapsed = grant("sam", "org-council");
        lapsed.clearance_expires = Utc::now().date_naive() - chrono::Duration::days(1);
        assert!(authorise(&store, &policy, lapsed, 4).await.is_err());
        assert!(store.account("sam").await.unwrap().is_none());
    }
}
