//! What can go wrong talking to a source. Messages carry no child data: never a query value, never a body.

use childgraph_schema::SourceName;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectorError {
    /// The source did not answer in time.
    #[error("{source_name} did not answer in time")]
    Timeout { source_name: SourceName },
    /// The source could not be reached, or answered with a server error.
    #[error("{source_name} is unavailable: {detail}")]
    Unavailable {
        source_name: SourceName,
        detail: String,
    },
    /// The source answered with something its protocol does not allow.
    #[error("{source_name} sent a malformed answer: {detail}")]
    Malformed {
        source_name: SourceName,
        detail: String,
    },
    /// The source refused the request as invalid: a defect on our side, or input the source cannot search for.
    #[error("{source_name} refused the request: {detail}")]
    Rejected {
        source_name: SourceName,
        detail: String,
    },
    /// The source failed repeatedly, so it is not called until its circuit breaker lets a probe through.
    #[error("{source_name} is failing: its circuit breaker is open")]
    CircuitOpen { source_name: SourceName },
}

impl ConnectorError {
    pub fn source_name(&self) -> SourceName {
        match self {
            ConnectorError::Timeout { source_name }
            | ConnectorError::Unavailable { source_name, .. }
            | ConnectorError::Malformed { source_name, .. }
            | ConnectorError::Rejected { source_name, .. }
            | ConnectorError::CircuitOpen { source_name } => *source_name,
        }
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self, ConnectorError::Timeout { .. })
    }
}
