//! Accounts as authorisers manage them: each change is bound to the authoriser's own organisation in the statement
//! that makes it, so an account of another organisation is never touched.

use chrono::{DateTime, NaiveDate, Utc};

use super::{ACCOUNT_COLUMNS, Account, Replace, Store, StoreError, account_from_row, on_pool};

/// Why an account change was not made.
#[derive(Debug, thiserror::Error)]
pub enum AccountChangeError {
    #[error("no account of your organisation has this user id")]
    NotInOrganisation,
    #[error("your organisation cannot authorise this user id: choose another")]
    OtherOrganisation,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for AccountChangeError {
    fn from(e: sqlx::Error) -> Self {
        AccountChangeError::Store(e.into())
    }
}

/// A recertification: the new deadline, and the clearance expiry and training date if they changed.
#[derive(Debug, Clone)]
pub struct Recertification {
    pub recertify_by: DateTime<Utc>,
    pub clearance_expires: Option<NaiveDate>,
    pub training_completed: Option<NaiveDate>,
}

impl Store {
    /// Grants (or grants again) the account to its user in `account.organisation`, which must be the authoriser's
    /// own. An account of another organisation with the same user id is refused, not taken over: the statement that
    /// writes the account checks whose it is. A revoked account authorised again is active again.
    pub async fn authorise(&self, account: &Account) -> Result<Account, AccountChangeError> {
        let mut account = account.clone();
        account.active = true;
        if !self
            .write_account(&account, Replace::SameOrganisation)
            .await?
        {
            return Err(AccountChangeError::OtherOrganisation);
        }
        self.account(&account.user_id)
            .await?
            .ok_or(AccountChangeError::NotInOrganisation)
    }

    /// Revokes a user's account in `organisation_id`; the account stays, inactive, with who revoked it and why.
    pub async fn revoke(
        &self,
        user_id: &str,
        organisation_id: &str,
        by: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Account, AccountChangeError> {
        let rows = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE accounts SET active = FALSE, revoked_by = $1, revoked_at = $2, revoke_reason = $3
                 WHERE user_id = $4 AND organisation_id = $5",
            )
            .bind(by)
            .bind(now.to_rfc3339())
            .bind(reason)
            .bind(user_id)
            .bind(organisation_id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        self.changed(rows, user_id).await
    }

    /// Recertifies an active account of `organisation_id`: a new deadline, and the clearance expiry and training
    /// date where given.
    pub async fn recertify(
        &self,
        user_id: &str,
        organisation_id: &str,
        by: &str,
        recertification: &Recertification,
    ) -> Result<Account, AccountChangeError> {
        let rows = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE accounts SET recertify_by = $1, authorised_by = $2,
                     clearance_expires = COALESCE($3, clearance_expires),
                     training_completed = COALESCE($4, training_completed)
                 WHERE user_id = $5 AND organisation_id = $6 AND active",
            )
            .bind(recertification.recertify_by.to_rfc3339())
            .bind(by)
            .bind(recertification.clearance_expires.map(|d| d.to_string()))
            .bind(recertification.training_completed.map(|d| d.to_string()))
            .bind(user_id)
            .bind(organisation_id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        self.changed(rows, user_id).await
    }

    async fn changed(&self, rows: u64, user_id: &str) -> Result<Account, AccountChangeError> {
        if rows == 0 {
            return Err(AccountChangeError::NotInOrganisation);
        }
        self.account(user_id)
            .await?
            .ok_or(AccountChangeError::NotInOrganisation)
    }

    /// Every account of an organisation, by user id.
    pub async fn organisation_accounts(
        &self,
        organisation_id: &str,
    ) -> Result<Vec<Account>, StoreError> {
        let query = format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts a JOIN organisations o ON o.id = a.organisation_id
             WHERE a.organisation_id = $1 ORDER BY a.user_id"
        );
        on_pool!(self, |pool| {
            sqlx::query(&query)
                .bind(organisation_id)
                .fetch_all(pool)
                .await?
                .iter()
                .map(account_from_row)
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{Stores, on_each_backend};
    use crate::store::{Authorisation, OrganisationRecord, Standing};

    fn account(user: &str, org: &str) -> Account {
        Account {
            user_id: user.into(),
            display_name: user.into(),
            organisation: OrganisationRecord {
                id: org.into(),
                name: org.into(),
                source: None,
            },
            roles: vec!["teacher".into()],
            phone: None,
            email: None,
            active: true,
            authorisation: Authorisation::seeded("authoriser"),
            client: None,
        }
    }

    #[test]
    fn standing_follows_revocation_clearance_and_recertification() {
        let now = Utc::now();
        let mut a = account("u", "org");
        assert_eq!(a.standing(now), Standing::Active);
        a.authorisation.recertify_by = now - chrono::Duration::seconds(1);
        assert_eq!(a.standing(now), Standing::RecertificationMissed);
        // The clearance's last day still counts; the day after does not.
        a.authorisation.clearance_expires = now.date_naive();
        assert_eq!(a.standing(now), Standing::RecertificationMissed);
        a.authorisation.clearance_expires = now.date_naive() - chrono::Duration::days(1);
        assert_eq!(a.standing(now), Standing::ClearanceExpired);
        a.active = false;
        assert_eq!(a.standing(now), Standing::Revoked);
    }

    on_each_backend!(
        changes_are_bound_to_the_authorisers_organisation,
        two_organisations_granting_one_user_id_at_once_never_share_it,
    );

    async fn changes_are_bound_to_the_authorisers_organisation(stores: &Stores) {
        let store = stores.fresh().await;
        let school = account("priya", "org-school");
        store
            .upsert_organisation(&school.organisation)
            .await
            .unwrap();
        store.authorise(&school).await.unwrap();
        // Another organisation cannot take the user id over, revoke it or recertify it.
        let mut takeover = account("priya", "org-clinic");
        store
            .upsert_organisation(&takeover.organisation)
            .await
            .unwrap();
        takeover.roles = vec!["gp".into()];
        assert!(matches!(
            store.authorise(&takeover).await,
            Err(AccountChangeError::OtherOrganisation)
        ));
        let now = Utc::now();
        assert!(matches!(
            store.revoke("priya", "org-clinic", "x", "r", now).await,
            Err(AccountChangeError::NotInOrganisation)
        ));
        let again = Recertification {
            recertify_by: now + chrono::Months::new(4),
            clearance_expires: None,
            training_completed: None,
        };
        assert!(matches!(
            store.recertify("priya", "org-clinic", "x", &again).await,
            Err(AccountChangeError::NotInOrganisation)
        ));
        assert_eq!(store.account("priya").await.unwrap(), Some(school.clone()));
        // Its own organisation revokes it; a revoked account is not recertified, and is authorised again.
        let revoked = store
            .revoke("priya", "org-school", "boss", "left", now)
            .await
            .unwrap();
        assert_eq!(revoked.standing(now), Standing::Revoked);
        assert!(matches!(
            store.recertify("priya", "org-school", "boss", &again).await,
            Err(AccountChangeError::NotInOrganisation)
        ));
        let back = store.authorise(&school).await.unwrap();
        assert_eq!(back.standing(Utc::now()), Standing::Active);
        assert_eq!(
            store.organisation_accounts("org-school").await.unwrap(),
            vec![back]
        );
        assert!(
            store
                .organisation_accounts("org-clinic")
                .await
                .unwrap()
                .is_empty()
        );
    }

    async fn two_organisations_granting_one_user_id_at_once_never_share_it(stores: &Stores) {
        let store = stores.fresh().await;
        let (school, clinic) = (account("sam", "org-school"), account("sam", "org-clinic"));
        for a in [&school, &clinic] {
            store.upsert_organisation(&a.organisation).await.unwrap();
        }
        let (a, b) = tokio::join!(store.authorise(&school), store.authorise(&clinic));
        let winner = match (a, b) {
            (Ok(won), Err(AccountChangeError::OtherOrganisation))
            | (Err(AccountChangeError::OtherOrganisation), Ok(won)) => won,
            other => panic!("one grant, and the other refused: {other:?}"),
        };
        assert_eq!(store.account("sam").await.unwrap(), Some(winner));
    }
}
