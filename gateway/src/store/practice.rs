//! What practitioners record: withdrawing flags, and disclosures made outside the system.

use chrono::{DateTime, Utc};

use super::{Store, StoreError, StoreRow, on_pool};

/// A flag's raiser and their organisation, to decide who may withdraw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagOwner {
    pub child_id: String,
    pub raised_by: String,
    pub organisation_id: String,
}

/// A disclosure of information outside the system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disclosure {
    pub id: String,
    pub child_id: String,
    pub recorded_by: String,
    pub organisation_id: String,
    pub recipient: String,
    pub purpose: String,
    pub lawful_basis: String,
    pub consent: bool,
    pub at: DateTime<Utc>,
}

impl Store {
    pub async fn flag_owner(&self, flag_id: &str) -> Result<Option<FlagOwner>, StoreError> {
        on_pool!(self, |pool| {
            sqlx::query(
                "SELECT f.child_id, f.raised_by, a.organisation_id FROM flags f
                 JOIN accounts a ON a.user_id = f.raised_by WHERE f.id = $1",
            )
            .bind(flag_id)
            .fetch_optional(pool)
            .await?
            .map(|r| {
                Ok(FlagOwner {
                    child_id: r.try_get("child_id")?,
                    raised_by: r.try_get("raised_by")?,
                    organisation_id: r.try_get("organisation_id")?,
                })
            })
            .transpose()
        })
    }

    /// Withdraws a flag; false if it was already withdrawn.
    pub async fn withdraw_flag(
        &self,
        flag_id: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let rows = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE flags SET withdrawn_at = $1, withdrawn_by = $2 WHERE id = $3 AND withdrawn_at IS NULL",
            )
            .bind(now.to_rfc3339())
            .bind(by)
            .bind(flag_id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(rows == 1)
    }

    pub async fn put_disclosure(&self, d: &Disclosure) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO disclosures (id, child_id, recorded_by, organisation_id, recipient, purpose, lawful_basis,
                     consent, at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&d.id)
            .bind(&d.child_id)
            .bind(&d.recorded_by)
            .bind(&d.organisation_id)
            .bind(&d.recipient)
            .bind(&d.purpose)
            .bind(&d.lawful_basis)
            .bind(d.consent)
            .bind(d.at.to_rfc3339())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// A child's recorded disclosures, oldest first.
    pub async fn disclosures(&self, child_id: &str) -> Result<Vec<Disclosure>, StoreError> {
        on_pool!(self, |pool| {
            sqlx::query(
                "SELECT id, child_id, recorded_by, organisation_id, recipient, purpose, lawful_basis, consent, at
                 FROM disclosures WHERE child_id = $1 ORDER BY at",
            )
            .bind(child_id)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| {
                Ok(Disclosure {
                    id: r.try_get("id")?,
                    child_id: r.try_get("child_id")?,
                    recorded_by: r.try_get("recorded_by")?,
                    organisation_id: r.try_get("organisation_id")?,
                    recipient: r.try_get("recipient")?,
                    purpose: r.try_get("purpose")?,
                    lawful_basis: r.try_get("lawful_basis")?,
                    consent: r.try_get("consent")?,
                    at: super::timestamp(r, "at")?,
                })
            })
            .collect()
        })
    }
}
