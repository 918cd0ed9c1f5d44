//! What auditors read: a child's access log (subject access), and the monitor's alerts and counters. Each reading
//! needs audit.read and is itself recorded before it is answered.

use childgraph_policies::Permission;
use chrono::Utc;

use crate::access::{AccessRecord, Operation};
use crate::audit::AuditRecord;
use crate::pipeline::{Pipeline, Purpose, RequestScope};
use crate::quotas::UserActivity;
use crate::shields::{ActionError, require};

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

/// `viewingActivity`: each user's count of distinct children within the monitor's window, as this gateway process
/// counted them, with the window and threshold; none when the monitor is off.
pub async fn activity(
    pipeline: &Pipeline,
    scope: &RequestScope,
) -> Result<Option<(u32, usize, Vec<UserActivity>)>, ActionError> {
    require(scope, Permission::AuditRead, Operation::MonitorRead).await?;
    recorded(scope, Operation::MonitorRead, Vec::new()).await?;
    Ok(pipeline.quotas.monitor.as_ref().map(|m| {
        (
            u32::try_from(m.window().as_secs() / 60).unwrap_or(u32::MAX),
            m.threshold(),
            m.activity(),
        )
    }))
}
