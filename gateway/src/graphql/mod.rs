//! The GraphQL schema: query root, types, and the mapping of pipeline errors to `extensions.code`.

pub mod documents;
mod errors;
mod loader;
mod mutation;
mod query;
pub mod trusted;
mod types;

use async_graphql::{EmptySubscription, MergedObject, Schema, ValidationMode};

pub use documents::Documents;
pub use errors::coded;
pub use loader::child_loader;

/// The error for a source that failed during a request.
pub fn source_error(report: crate::federation::SourceReport) -> async_graphql::ServerError {
    errors::source_unavailable(
        report.source,
        report.health == crate::federation::SourceHealth::Timeout,
    )
}

/// The whole answer to a request whose access record was refused or failed after its answer was composed: the
/// record's error, and no data.
pub fn unrecorded(error: &crate::pipeline::PipelineError) -> async_graphql::Response {
    async_graphql::Response::from_errors(vec![
        errors::pipeline_error(error).into_server_error(async_graphql::Pos::default()),
    ])
}
pub use mutation::Mutation;

/// The query root: child data, and the shield officers' lists.
#[derive(MergedObject, Debug, Default)]
pub struct Query(query::ChildQueries, mutation::ShieldQueries);

use crate::pipeline::Pipeline;

pub type ChildgraphSchema = Schema<Query, Mutation, EmptySubscription>;

/// The most deeply nested selection accepted.
const MAX_DEPTH: usize = 12;
/// The most expensive selection accepted, counting one per field: enough for 50 children with every field, the most
/// a search may be configured to return.
const MAX_COMPLEXITY: usize = 2000;

/// The schema, twice: in full validation mode, and in fast mode for requests whose document has passed full
/// validation before (see [`documents`]).
#[derive(Clone)]
pub struct Schemas {
    strict: ChildgraphSchema,
    fast: ChildgraphSchema,
}

impl std::fmt::Debug for Schemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Schemas")
    }
}

impl Schemas {
    /// The schema a request runs on.
    pub fn for_request(&self, prepared: &documents::Prepared) -> &ChildgraphSchema {
        if prepared.validated() {
            &self.fast
        } else {
            &self.strict
        }
    }
}

/// Builds the schema over a pipeline, answering introspection only if asked to.
pub fn build(pipeline: Pipeline, introspection: bool) -> Schemas {
    let build = |mode| {
        let builder = Schema::build(Query::default(), Mutation, EmptySubscription)
            .data(pipeline.clone())
            .validation_mode(mode)
            .limit_depth(MAX_DEPTH)
            .limit_complexity(MAX_COMPLEXITY);
        if introspection {
            builder.finish()
        } else {
            builder.disable_introspection().finish()
        }
    };
    Schemas {
        strict: build(ValidationMode::Strict),
        fast: build(ValidationMode::Fast),
    }
}

/// The kept documents of this schema.
pub fn documents() -> Documents {
    Documents::new(documents::registry::<Query, Mutation>())
}

/// The schema's SDL, as committed at `schema/childgraph.graphql`.
pub fn sdl() -> String {
    Schema::build(Query::default(), Mutation, EmptySubscription)
        .finish()
        .sdl()
}

#[cfg(test)]
mod tests {
    /// The committed SDL is what front-end teams build on: it must be exactly what the code serves.
    #[test]
    fn committed_schema_matches_the_code() {
        let committed = include_str!("../../../schema/childgraph.graphql");
        assert!(
            committed == super::sdl(),
            "schema/childgraph.graphql differs from the code's schema: run `cargo run -- schema print > schema/childgraph.graphql` and review the diff"
        );
    }

    /// The gateway's kept documents check variables against the gateway's own input types: a search's criteria
    /// and access, as a portal sends them, skip full validation once validated, unless a value is wrong.
    #[test]
    fn the_gateways_variables_are_checked_against_its_input_types() {
        use serde_json::json;
        let documents = super::documents();
        let query = "query($c: ChildSearchInput!, $a: AccessInput!) { searchChildren(criteria: $c, access: $a) { tooManyResults } }";
        let prepare = |variables: serde_json::Value| {
            let mut request = async_graphql::Request::new(query)
                .variables(async_graphql::Variables::from_json(variables));
            documents.prepare(&mut request)
        };
        let good = json!({
            "c": {"familyName": "Hartley", "dateOfBirth": "2019-06-14", "gender": "FEMALE"},
            "a": {"purpose": "SAFEGUARDING", "justification": "seen at A&E"}
        });
        let first = prepare(good.clone());
        assert!(!first.validated(), "a new document is validated in full");
        first.answered(&async_graphql::Response::new(
            async_graphql::Value::from_json(json!({"searchChildren": {"tooManyResults": false}}))
                .unwrap(),
        ));
        assert!(prepare(good).validated());
        for wrong in [
            json!({"c": {"familyName": "Hartley", "gender": "ROBOT"}, "a": {"purpose": "SAFEGUARDING"}}),
            json!({"c": {"surname": "Hartley"}, "a": {"purpose": "SAFEGUARDING"}}),
            json!({"c": {"familyName": "Hartley"}, "a": {"purpose": "CURIOSITY"}}),
            json!({"c": {"familyName": "Hartley"}, "a": {}}),
            json!({"c": {"familyName": ["Hartley"]}, "a": {"purpose": "SAFEGUARDING"}}),
        ] {
            assert!(!prepare(wrong.clone()).validated(), "{wrong}");
        }
    }

    /// Every field the policy classifies carries its category in the SDL, and no other field does.
    #[test]
    fn the_sdl_shows_each_child_data_fields_category() {
        use childgraph_schema::Field;
        let sdl = super::sdl();
        let policy = childgraph_policies::Policy::default_policy();
        let mut current_type = "";
        let mut seen = Vec::new();
        for line in sdl.lines() {
            if let Some(rest) = line.strip_prefix("type ") {
                current_type = rest.split_whitespace().next().unwrap_or("");
            }
            let is_field =
                line.starts_with('\t') && line.trim_start().starts_with(char::is_alphabetic);
            let Some((_, category)) = line.split_once("@category(name: \"").filter(|_| is_field)
            else {
                continue;
            };
            let category = category.trim_end_matches("\")");
            let name = line.trim().split(':').next().unwrap();
            let path = format!("{current_type}.{name}");
            let field = Field::from_path(&path).unwrap_or_else(|| {
                panic!("{path} has a category but is not in the field catalogue")
            });
            assert_eq!(policy.category(field), category, "{path}");
            seen.push(field);
        }
        seen.sort();
        assert_eq!(
            seen,
            Field::ALL,
            "every catalogued field carries @category once"
        );
    }
}
