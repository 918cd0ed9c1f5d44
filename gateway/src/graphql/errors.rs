//! GraphQL errors with a stable `extensions.code`. Messages are plain and carry no internals and no child data.

use async_graphql::{Error, ErrorExtensions, Name, PathSegment, ServerError, Value};
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

/// Puts back, as null, each withheld field that async-graphql left out of the data.
///
/// GraphQL answers a nullable field whose resolver failed with null beside its error, and every field a policy can
/// withhold is nullable. async-graphql 7 instead leaves such a field out of its object, and answers null for an object
/// all of whose selected fields failed. For each REDACTED error, the object on its path is made an object again where
/// it was answered null, and the withheld field is set to null in it. Nothing is added that the error does not name.
pub fn null_withheld_fields(data: &mut Value, errors: &[ServerError]) {
    'errors: for error in errors {
        let withheld = error
            .extensions
            .as_ref()
            .and_then(|e| e.get("code"))
            .is_some_and(|code| *code == Value::from("REDACTED"));
        let Some((PathSegment::Field(field), parents)) = error.path.split_last() else {
            continue;
        };
        if !withheld {
            continue;
        }
        let mut at = &mut *data;
        for segment in parents {
            at = match (segment, at) {
                (PathSegment::Field(name), Value::Object(object)) => {
                    match object.get_mut(name.as_str()) {
                        Some(value) => value,
                        None => continue 'errors,
                    }
                }
                (PathSegment::Index(i), Value::List(items)) => match items.get_mut(*i) {
                    Some(value) => value,
                    None => continue 'errors,
                },
                _ => continue 'errors,
            };
            if matches!(at, Value::Null) {
                // An object whose every selected field was withheld: it is there, with nulls.
                *at = Value::Object(Default::default());
            }
        }
        if let Value::Object(object) = at {
            object.entry(Name::new(field)).or_insert(Value::Null);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn error(code: &str, path: &[PathSegment]) -> ServerError {
        let mut error = ServerError::new("withheld", None);
        error.path = path.to_vec();
        let mut extensions = async_graphql::ErrorExtensionValues::default();
        extensions.set("code", code);
        error.extensions = Some(extensions);
        error
    }

    fn field(name: &str) -> PathSegment {
        PathSegment::Field(name.to_owned())
    }

    #[test]
    fn only_the_withheld_fields_an_error_names_come_back_as_null() {
        let mut data = async_graphql::value!({
            "child": { "name": "Amelia", "services": [{ "organisation": null }, { "organisation": { "name": "Elm" } }] }
        });
        let errors = [
            error("REDACTED", &[field("child"), field("address")]),
            error(
                "REDACTED",
                &[
                    field("child"),
                    field("services"),
                    PathSegment::Index(0),
                    field("organisation"),
                    field("address"),
                ],
            ),
            // Not a withholding: left as async-graphql answered it.
            error("INTERNAL", &[field("child"), field("carers")]),
            // A path through nothing in the data: nothing is made up for it.
            error("REDACTED", &[field("child"), field("flags"), field("note")]),
            error(
                "REDACTED",
                &[
                    field("child"),
                    field("services"),
                    PathSegment::Index(5),
                    field("kind"),
                ],
            ),
        ];
        null_withheld_fields(&mut data, &errors);
        assert_eq!(
            data,
            async_graphql::value!({
                "child": {
                    "name": "Amelia",
                    "services": [{ "organisation": { "address": null } }, { "organisation": { "name": "Elm" } }],
                    "address": null
                }
            })
        );
    }
}
