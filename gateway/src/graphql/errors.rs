//! GraphQL errors with a stable `extensions.code`. Messages are plain and carry no internals and no child data.

use async_graphql::{Error, ErrorExtensions, ServerError};
use childgraph_policies::{Decision, Reason};
use childgraph_schema::{CriteriaError, Field, SourceName};

use crate::pipeline::PipelineError;

pub fn coded(code: &'static str, message: impl Into<String>) -> Error {
    Error::new(message).extend_with(|_, e| e.set("code", code))
}

/// The error for a withheld field: REDACTED, with why and the category.
pub fn redacted(field: Field, decision: &Decision<'_>) -> Error {
    let Decision::Withheld { reason, category } = decision else {
        return coded("INTERNAL", "internal error");
    };
    let why = match reason {
        Reason::Role => "none of your roles sees",
        Reason::Shielded => "the child is shielded, and a shielded record does not show",
        Reason::NotRelevant => "the child is outside your scope, which does not show",
    };
    let (reason, category) = (reason.as_str(), (*category).to_owned());
    Error::new(format!(
        "{field} is withheld: {why} the {category} category"
    ))
    .extend_with(move |_, e| {
        e.set("code", "REDACTED");
        e.set("reason", reason);
        e.set("category", category.clone());
    })
}

/// The error added to a partial answer for each source that failed.
pub fn source_unavailable(source: SourceName, timed_out: bool) -> ServerError {
    let message = if timed_out {
        format!("the {source} source did not answer in time: its data is missing from this answer")
    } else {
        format!("the {source} source is unavailable: its data is missing from this answer")
    };
    let mut error = ServerError::new(message, None);
    let mut extensions = async_graphql::ErrorExtensionValues::default();
    extensions.set("code", "SOURCE_UNAVAILABLE");
    extensions.set("source", source.as_str());
    error.extensions = Some(extensions);
    error
}

/// The GraphQL error for a pipeline failure.
pub fn pipeline_error(error: &PipelineError) -> Error {
    match error {
        PipelineError::Forbidden(message) => coded("FORBIDDEN", *message),
        PipelineError::Refused(message) => coded("FORBIDDEN", message.clone()),
        PipelineError::Criteria(CriteriaError::Insufficient) => coded(
            "INSUFFICIENT_CRITERIA",
            CriteriaError::Insufficient.to_string(),
        ),
        PipelineError::Criteria(e) => coded("BAD_REQUEST", e.to_string()),
        PipelineError::RateLimited { what, retry_after } => {
            let seconds = *retry_after;
            Error::new(format!("{what}: try again in {seconds} s")).extend_with(move |_, e| {
                e.set("code", "RATE_LIMITED");
                e.set("retryAfterSeconds", seconds);
            })
        }
        PipelineError::Store(e) => {
            tracing::error!(error = %e, "store failure");
            coded("INTERNAL", "internal error")
        }
    }
}
