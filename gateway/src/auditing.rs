//! What auditors read: a child's access log (subject access), and the monitor's alerts and counters. Each reading
//! needs audit.read and is itself recorded before it is answered.

use childgraph_policies::Permission;
use chrono::Utc;

use crate::access::{AccessRecord, Operation};
use crate::audit::AuditRecord;
use crate::pipeline::{Pipeline, Purpose, RequestScope};
use crate::shields::{ActionError, require};
use crate::store::on_pool;

/// A user's viewing within the monitor's window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserActivity {
    pub user_id: String,
    pub distinct_children: usize,
    pub alerted: bool,
}

/// How far back `accessAlerts` looks.
pub const ALERT_WINDOW_DAYS: i64 = 30;

/// Records a reading, before its answer leaves.
async fn recorded(
    scope: &RequestScope,
    operation: Operation,
    child_ids: Vec<String>,
) -> Result<(), ActionError> {
    let purpose = Purpose {
        purpose: operation.purpose(),
        justification: None,
    };
    AccessRecord::new(scope, &purpose, operation)
        .child_ids(child_ids)
        .record()
        .await?;
    Ok(())
}

/// `childAccessLog`: who saw what about a child, when and why.
pub async fn access_log(
    pipeline: &Pipeline,
    scope: &RequestScope,
    child_id: &str,
) -> Result<Vec<AuditRecord>, ActionError> {
    require(scope, Permission::AuditRead, Operation::AuditRead).await?;
    let records = crate::audit::for_child(&pipeline.store, child_id).await?;
    recorded(scope, Operation::AuditRead, vec![child_id.to_owned()]).await?;
    Ok(records)
}

/// `accessAlerts`: the monitor's alerts of the last 30 days, newest first, from the audit log (every replica's).
pub async fn alerts(
    pipeline: &Pipeline,
    scope: &RequestScope,
) -> Result<Vec<AuditRecord>, ActionError> {
    require(scope, Permission::AuditRead, Operation::MonitorRead).await?;
    let since = Utc::now() - chrono::Duration::days(ALERT_WINDOW_DAYS);
    let records =
        crate::audit::by_operation(&pipeline.store, Operation::MonitorAlert.as_str(), since)
            .await?;
    recorded(scope, Operation::MonitorRead, Vec::new()).await?;
    Ok(records)
}

/// `viewingActivity`: each user's count of distinct children within the monitor's window, from the views the store
/// keeps (every replica's), the most first, with whether an alert was raised for them within the window; with the
/// window and threshold; none when the monitor is off.
pub async fn activity(
    pipeline: &Pipeline,
    scope: &RequestScope,
) -> Result<Option<(u32, usize, Vec<UserActivity>)>, ActionError> {
    require(scope, Permission::AuditRead, Operation::MonitorRead).await?;
    let Some(monitor) = &pipeline.quotas.monitor else {
        recorded(scope, Operation::MonitorRead, Vec::new()).await?;
        return Ok(None);
    };
    let window = monitor.window();
    let since = Utc::now() - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    let counts: Vec<(String, i64)> = on_pool!(pipeline.store, |pool| {
        sqlx::query_as(
            "SELECT principal, COUNT(*) FROM child_views WHERE first_at > $1 GROUP BY principal",
        )
        .bind(since.timestamp_millis())
        .fetch_all(pool)
        .await
        .map_err(crate::store::StoreError::from)?
    });
    let alerted: std::collections::HashSet<String> =
        crate::audit::by_operation(&pipeline.store, Operation::MonitorAlert.as_str(), since)
            .await?
            .into_iter()
            .filter_map(|r| r.entry.subject)
            .collect();
    let mut users: Vec<UserActivity> = counts
        .into_iter()
        .map(|(user_id, n)| UserActivity {
            alerted: alerted.contains(&user_id),
            distinct_children: usize::try_from(n).unwrap_or(0),
            user_id,
        })
        .collect();
    users.sort_by(|a, b| {
        b.distinct_children
            .cmp(&a.distinct_children)
            .then_with(|| a.user_id.cmp(&b.user_id))
    });
    recorded(scope, Operation::MonitorRead, Vec::new()).await?;
    Ok(Some((
        u32::try_from(window.as_secs() / 60).unwrap_or(u32::MAX),
        monitor.threshold() as usize,
        users,
    )))
}
