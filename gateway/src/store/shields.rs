//! The shield register's lifecycle: requests, approvals, lifts, overrides, and the lists shield officers work from.

use std::collections::HashSet;

use super::{IDS_PER_READ, Store, StoreError, StoreRow, on_pool, placeholders, select, timestamp};
use chrono::{DateTime, Utc};

/// Which of `count` children (from `$3`) the user (`$1`) holds an override for that is live at `$2`.
pub(crate) fn overridden_sql(count: usize) -> String {
    format!(
        "SELECT DISTINCT child_id FROM shield_overrides
         WHERE user_id = $1 AND expires_at > $2 AND child_id IN ({})",
        placeholders(3, count, 1)
    )
}

/// A request that a child be shielded, waiting for a shield officer or decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShieldRequest {
    pub id: String,
    pub child_id: String,
    pub reason: String,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub approved_by: Option<String>,
}

/// A shield in the register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShieldEntry {
    pub child_id: String,
    pub reason: String,
    pub requested_by: String,
    pub approved_by: String,
    pub created_at: DateTime<Utc>,
    pub review_due: DateTime<Utc>,
}

/// One user's override of one child's shield.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShieldOverride {
    pub id: String,
    pub child_id: String,
    pub user_id: String,
    pub justification: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Why an approval did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("no shield request has this id")]
    NoSuchRequest,
    #[error("this shield request has already been approved")]
    AlreadyApproved,
    #[error("a shield must be approved by someone other than the person who requested it")]
    SamePerson,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn request_from_row(row: &impl StoreRow) -> Result<ShieldRequest, StoreError> {
    Ok(ShieldRequest {
        id: row.try_get("id")?,
        child_id: row.try_get("child_id")?,
        reason: row.try_get("reason")?,
        requested_by: row.try_get("requested_by")?,
        requested_at: timestamp(row, "requested_at")?,
        approved_by: row.try_get("decided_by")?,
    })
}

fn entry_from_row(row: &impl StoreRow) -> Result<ShieldEntry, StoreError> {
    Ok(ShieldEntry {
        child_id: row.try_get("child_id")?,
        reason: row.try_get("reason")?,
        requested_by: row.try_get("requested_by")?,
        approved_by: row.try_get("approved_by")?,
        created_at: timestamp(row, "created_at")?,
        review_due: timestamp(row, "review_due")?,
    })
}

fn override_from_row(row: &impl StoreRow) -> Result<ShieldOverride, StoreError> {
    Ok(ShieldOverride {
        id: row.try_get("id")?,
        child_id: row.try_get("child_id")?,
        user_id: row.try_get("user_id")?,
        justification: row.try_get("justification")?,
        created_at: timestamp(row, "created_at")?,
        expires_at: timestamp(row, "expires_at")?,
    })
}

/// Records an approval or a lift in `shield_history`, in the transaction that makes it.
macro_rules! history {
    ($tx:expr, $child_id:expr, $action:expr, $by:expr, $reason:expr, $now:expr) => {
        sqlx::query(
            "INSERT INTO shield_history (child_id, action, by_user, reason, at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind($child_id)
        .bind($action)
        .bind($by)
        .bind($reason)
        .bind($now.to_rfc3339())
        .execute(&mut *$tx)
    };
}

impl Store {
    /// Whether the gateway knows a child by this id.
    pub async fn child_exists(&self, child_id: &str) -> Result<bool, StoreError> {
        on_pool!(self, |pool| {
            Ok(sqlx::query("SELECT 1 FROM children WHERE id = $1")
                .bind(child_id)
                .fetch_optional(pool)
                .await?
                .is_some())
        })
    }

    /// Records a pending request to shield a child.
    pub async fn request_shield(
        &self,
        child_id: &str,
        reason: &str,
        requested_by: &str,
        now: DateTime<Utc>,
    ) -> Result<ShieldRequest, StoreError> {
        let request = ShieldRequest {
            id: format!("shr_{}", uuid::Uuid::new_v4().simple()),
            child_id: child_id.to_owned(),
            reason: reason.to_owned(),
            requested_by: requested_by.to_owned(),
            requested_at: now,
            approved_by: None,
        };
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO shield_requests (id, child_id, reason, requested_by, requested_at, status)
                 VALUES ($1, $2, $3, $4, $5, 'pending')",
            )
            .bind(&request.id)
            .bind(&request.child_id)
            .bind(&request.reason)
            .bind(&request.requested_by)
            .bind(now.to_rfc3339())
            .execute(pool)
            .await?;
        });
        Ok(request)
    }

    /// Requests waiting for a shield officer, oldest first.
    pub async fn pending_shield_requests(&self) -> Result<Vec<ShieldRequest>, StoreError> {
        on_pool!(self, |pool| {
            sqlx::query(
                "SELECT id, child_id, reason, requested_by, requested_at, decided_by FROM shield_requests
                 WHERE status = 'pending' ORDER BY requested_at",
            )
            .fetch_all(pool)
            .await?
            .iter()
            .map(request_from_row)
            .collect()
        })
    }

    /// One shield request, pending or decided.
    pub async fn shield_request(
        &self,
        request_id: &str,
    ) -> Result<Option<ShieldRequest>, StoreError> {
        on_pool!(self, |pool| {
            sqlx::query(
                "SELECT id, child_id, reason, requested_by, requested_at, decided_by FROM shield_requests
                 WHERE id = $1",
            )
            .bind(request_id)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(request_from_row)
            .transpose()
        })
    }

    /// Approves a pending request: the child is shielded until lifted, due for review at `review_due`. In one
    /// transaction, so that two officers approving at once shield the child once.
    pub async fn approve_shield(
        &self,
        request_id: &str,
        approver: &str,
        review_due: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<ShieldEntry, ApprovalError> {
        on_pool!(self, |pool| {
            let mut tx = pool
                .begin_with(self.begin_read_write())
                .await
                .map_err(StoreError::from)?;
            let row = sqlx::query(
                "SELECT id, child_id, reason, requested_by, requested_at, decided_by, status FROM shield_requests
                 WHERE id = $1",
            )
            .bind(request_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::from)?
            .ok_or(ApprovalError::NoSuchRequest)?;
            let request = request_from_row(&row)?;
            let status: String = row.try_get("status")?;
            if status != "pending" {
                return Err(ApprovalError::AlreadyApproved);
            }
            if request.requested_by == approver {
                return Err(ApprovalError::SamePerson);
            }
            // The status is checked again in the statement that changes it: of two approvals at once, the second
            // changes nothing.
            let updated = sqlx::query(
                "UPDATE shield_requests SET status = 'approved', decided_by = $1, decided_at = $2
                 WHERE id = $3 AND status = 'pending'",
            )
            .bind(approver)
            .bind(now.to_rfc3339())
            .bind(request_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
            if updated.rows_affected() != 1 {
                return Err(ApprovalError::AlreadyApproved);
            }
            // A child already shielded (by another request, or as a possible match) keeps that entry, now reviewed
            // anew.
            sqlx::query(
                "INSERT INTO shields (child_id, reason, requested_by, approved_by, created_at, review_due)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (child_id) DO UPDATE SET reason = excluded.reason, requested_by = excluded.requested_by,
                     approved_by = excluded.approved_by, review_due = excluded.review_due",
            )
            .bind(&request.child_id)
            .bind(&request.reason)
            .bind(&request.requested_by)
            .bind(approver)
            .bind(now.to_rfc3339())
            .bind(review_due.to_rfc3339())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
            history!(
                tx,
                &request.child_id,
                "approved",
                approver,
                &request.reason,
                now
            )
            .await
            .map_err(StoreError::from)?;
            let entry = sqlx::query(
                "SELECT child_id, reason, requested_by, approved_by, created_at, review_due FROM shields
                 WHERE child_id = $1",
            )
            .bind(&request.child_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::from)?;
            let entry = entry_from_row(&entry)?;
            tx.commit().await.map_err(StoreError::from)?;
            Ok(entry)
        })
    }

    /// Lifts a child's shield; false if the register did not shield the child.
    pub async fn lift_shield(
        &self,
        child_id: &str,
        by: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let deleted = sqlx::query("DELETE FROM shields WHERE child_id = $1")
                .bind(child_id)
                .execute(&mut *tx)
                .await?;
            if deleted.rows_affected() == 0 {
                return Ok(false);
            }
            // Overrides of a shield that no longer stands end with it.
            sqlx::query(
                "UPDATE shield_overrides SET expires_at = $1 WHERE child_id = $2 AND expires_at > $1",
            )
            .bind(now.to_rfc3339())
            .bind(child_id)
            .execute(&mut *tx)
            .await?;
            history!(tx, child_id, "lifted", by, reason, now).await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Shields whose review is due by `now`, the most overdue first.
    pub async fn shields_due_for_review(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<ShieldEntry>, StoreError> {
        on_pool!(self, |pool| {
            sqlx::query(
                "SELECT child_id, reason, requested_by, approved_by, created_at, review_due FROM shields
                 WHERE review_due <= $1 ORDER BY review_due",
            )
            .bind(now.to_rfc3339())
            .fetch_all(pool)
            .await?
            .iter()
            .map(entry_from_row)
            .collect()
        })
    }

    pub async fn put_override(&self, o: &ShieldOverride) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO shield_overrides (id, child_id, user_id, justification, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&o.id)
            .bind(&o.child_id)
            .bind(&o.user_id)
            .bind(&o.justification)
            .bind(o.created_at.to_rfc3339())
            .bind(o.expires_at.to_rfc3339())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Which of these children this user holds a live override for.
    pub async fn overridden_for(
        &self,
        user_id: &str,
        child_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<HashSet<String>, StoreError> {
        let mut found = HashSet::new();
        let now = now.to_rfc3339();
        for chunk in child_ids.chunks(IDS_PER_READ) {
            let sql = overridden_sql(chunk.len());
            let params: Vec<&str> = [user_id, now.as_str()]
                .into_iter()
                .chain(chunk.iter().map(String::as_str))
                .collect();
            found.extend(select!(self, &sql, params, |row| row
                .try_get::<String>("child_id")?)?);
        }
        Ok(found)
    }

    /// Overrides made since `since`, newest first: the alerts shield officers review.
    pub async fn overrides_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<ShieldOverride>, StoreError> {
        on_pool!(self, |pool| {
            sqlx::query(
                "SELECT id, child_id, user_id, justification, created_at, expires_at FROM shield_overrides
                 WHERE created_at >= $1 ORDER BY created_at DESC",
            )
            .bind(since.to_rfc3339())
            .fetch_all(pool)
            .await?
            .iter()
            .map(override_from_row)
            .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use childgraph_schema::{RecordRef, SourceName};

    use super::*;
    use crate::store::testing::{Stores, on_each_backend};

    on_each_backend!(
        the_requester_cannot_approve_and_a_request_is_approved_once,
        an_override_is_one_users_and_ends_with_its_time_or_the_shield,
        the_register_answers_for_requests_reviews_and_lifts,
    );

    async fn the_register_answers_for_requests_reviews_and_lifts(stores: &Stores) {
        let (store, child) = store_with_child(stores).await;
        assert!(store.child_exists(&child).await.unwrap());
        assert!(!store.child_exists("ch_nobody").await.unwrap());
        let now = Utc::now();
        let request = store
            .request_shield(&child, "r", "alice", now)
            .await
            .unwrap();
        let pending = store.shield_request(&request.id).await.unwrap().unwrap();
        assert_eq!(
            (pending.child_id.as_str(), pending.approved_by),
            (child.as_str(), None)
        );
        assert!(store.shield_request("shr_none").await.unwrap().is_none());
        // Due in a month: not due now, due after it.
        store
            .approve_shield(&request.id, "bob", now + chrono::Duration::days(30), now)
            .await
            .unwrap();
        let decided = store.shield_request(&request.id).await.unwrap().unwrap();
        assert_eq!(decided.approved_by.as_deref(), Some("bob"));
        assert!(store.shields_due_for_review(now).await.unwrap().is_empty());
        let due = store
            .shields_due_for_review(now + chrono::Duration::days(31))
            .await
            .unwrap();
        assert_eq!(
            due.iter().map(|e| e.child_id.as_str()).collect::<Vec<_>>(),
            [child.as_str()]
        );
        assert!(
            store
                .lift_shield(&child, "carol", "order ended", now)
                .await
                .unwrap()
        );
        assert!(
            !store
                .lift_shield(&child, "carol", "again", now)
                .await
                .unwrap()
        );
        assert!(
            store
                .shielded(std::slice::from_ref(&child))
                .await
                .unwrap()
                .is_empty()
        );
    }

    async fn store_with_child(stores: &Stores) -> (Store, String) {
        let store = stores.fresh().await;
        let linked = store
            .link(
                &[vec![(RecordRef::new(SourceName::Health, "p1"), 1.0)]],
                "test",
            )
            .await
            .expect("link");
        let child = linked[0][0].0.clone();
        (store, child)
    }

    async fn the_requester_cannot_approve_and_a_request_is_approved_once(stores: &Stores) {
        let (store, child) = store_with_child(stores).await;
        let now = Utc::now();
        let due = now + chrono::Months::new(6);
        let request = store
            .request_shield(&child, "reason", "alice", now)
            .await
            .unwrap();
        assert!(matches!(
            store.approve_shield(&request.id, "alice", due, now).await,
            Err(ApprovalError::SamePerson)
        ));
        assert!(
            store
                .shielded(std::slice::from_ref(&child))
                .await
                .unwrap()
                .is_empty()
        );
        // Two officers at once: one approval shields the child, the other is told it is done.
        let (a, b) = tokio::join!(
            store.approve_shield(&request.id, "bob", due, now),
            store.approve_shield(&request.id, "carol", due, now)
        );
        assert!(a.is_ok() != b.is_ok(), "{a:?} {b:?}");
        assert!(
            store
                .shielded(std::slice::from_ref(&child))
                .await
                .unwrap()
                .contains(&child)
        );
        assert!(store.pending_shield_requests().await.unwrap().is_empty());
        assert!(matches!(
            store.approve_shield("shr_none", "bob", due, now).await,
            Err(ApprovalError::NoSuchRequest)
        ));
    }

    async fn an_override_is_one_users_and_ends_with_its_time_or_the_shield(stores: &Stores) {
        let (store, child) = store_with_child(stores).await;
        let now = Utc::now();
        let request = store
            .request_shield(&child, "r", "alice", now)
            .await
            .unwrap();
        store
            .approve_shield(&request.id, "bob", now + chrono::Months::new(6), now)
            .await
            .unwrap();
        store
            .put_override(&ShieldOverride {
                id: "ovr_1".to_owned(),
                child_id: child.clone(),
                user_id: "dana".to_owned(),
                justification: "j".to_owned(),
                created_at: now,
                expires_at: now + chrono::Duration::minutes(30),
            })
            .await
            .unwrap();
        let ids = std::slice::from_ref(&child);
        assert!(
            store
                .overridden_for("dana", ids, now)
                .await
                .unwrap()
                .contains(&child)
        );
        assert!(
            store
                .overridden_for("erin", ids, now)
                .await
                .unwrap()
                .is_empty()
        );
        let later = now + chrono::Duration::minutes(31);
        assert!(
            store
                .overridden_for("dana", ids, later)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .lift_shield(&child, "bob", "ended", now)
                .await
                .unwrap()
        );
        assert!(
            store
                .overridden_for("dana", ids, now + chrono::Duration::seconds(1))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            !store
                .lift_shield(&child, "bob", "again", now)
                .await
                .unwrap()
        );
        assert_eq!(
            store
                .overrides_since(now - chrono::Duration::days(1))
                .await
                .unwrap()
                .len(),
            1
        );
    }
}
