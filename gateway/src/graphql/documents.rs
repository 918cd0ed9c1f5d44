//! Parsed query documents, kept so that a portal sending the same query text again and again is not parsed, nor
//! validated, each time.
//!
//! Only a document whose argument values are all variables, enums, booleans or null is kept: such a text carries no
//! value a user typed, so keeping it keeps no child data. A query with a name, a date or an id written into its text
//! is parsed afresh every time and forgotten with its request.
//!
//! A kept document that has passed the schema's full validation once, for an operation, is not validated in full
//! again for that operation: every rule but one depends on the document alone. That one checks the values of the
//! variables against the types of the arguments they are given to; [`Prepared::validated`] checks them instead,
//! against the types the operation declares for them, and such a request runs on the schema in fast validation
//! mode, which keeps only the limits. A request whose variables this cannot vouch for is validated in full, so that
//! its errors are exactly those the schema gives.

use std::sync::{Arc, OnceLock};

use async_graphql::parser::types::{
    BaseType, Directive, DocumentOperations, ExecutableDocument, Field, OperationDefinition,
    Selection, SelectionSet, Type, VariableDefinition,
};
use async_graphql::registry::{MetaType, MetaTypeName, Registry};
use async_graphql::{OutputType, Positioned, Variables};
use async_graphql_value::{ConstValue, Value};

/// The most documents kept, and the most query text they may hold between them.
const MAX_DOCUMENTS: u64 = 512;
const MAX_TEXT_BYTES: u64 = 8 * 1024 * 1024;

/// A kept document, and the operation it first passed full validation for.
#[derive(Debug)]
struct Kept {
    document: ExecutableDocument,
    validated: OnceLock<Option<String>>,
}

/// Parsed documents by their exact query text, and the schema's input types, to check variables against.
#[derive(Clone)]
pub struct Documents {
    cache: moka::sync::Cache<String, Arc<Kept>>,
    registry: Arc<Registry>,
}

impl std::fmt::Debug for Documents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Documents")
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}

/// The types of a schema with these roots: what its variables are checked against.
pub fn registry<Query: OutputType, Mutation: OutputType>() -> Registry {
    let mut registry = Registry::default();
    Query::create_type_info(&mut registry);
    Mutation::create_type_info(&mut registry);
    registry
}

/// What [`Documents::prepare`] found for a request.
#[derive(Debug)]
pub struct Prepared {
    kept: Option<Arc<Kept>>,
    operation: Option<String>,
    validated: bool,
}

impl Prepared {
    /// Whether the request may run without full validation: its document is kept and has passed it for this
    /// operation, and its variables are certainly valid.
    pub fn validated(&self) -> bool {
        self.validated
    }

    /// Notes that the request's document passed full validation when its answer has data: a request refused in
    /// validation has none.
    pub fn answered(&self, response: &async_graphql::Response) {
        if let Some(kept) = &self.kept
            && !self.validated
            && response.data != ConstValue::Null
        {
            // The first operation to pass is kept; a document's other operations are validated in full each time.
            let _ = kept.validated.set(self.operation.clone());
        }
    }
}

impl Documents {
    /// Keeps the documents of a schema whose types `registry` holds (see [`registry`]).
    pub fn new(registry: Registry) -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(MAX_TEXT_BYTES)
                .weigher(|text: &String, _| {
                    u32::try_from(text.len().max((MAX_TEXT_BYTES / MAX_DOCUMENTS) as usize))
                        .unwrap_or(u32::MAX)
                })
                .build(),
            registry: Arc::new(registry),
        }
    }

    /// Gives the request its parsed document: the kept one for this text, or a fresh parse, kept if it may be.
    /// A text that does not parse is left for the executor, which reports the error as usual.
    pub fn prepare(&self, request: &mut async_graphql::Request) -> Prepared {
        let operation = request.operation_name.clone();
        let kept = match self.cache.get(&request.query) {
            Some(kept) => {
                request.set_parsed_query(kept.document.clone());
                kept
            }
            None => {
                let fresh = request
                    .parsed_query()
                    .ok()
                    .filter(|d| holds_no_literal(d))
                    .cloned();
                let Some(document) = fresh else {
                    return Prepared {
                        kept: None,
                        operation,
                        validated: false,
                    };
                };
                let kept = Arc::new(Kept {
                    document,
                    validated: OnceLock::new(),
                });
                self.cache.insert(request.query.clone(), kept.clone());
                kept
            }
        };
        let validated = kept.validated.get() == Some(&operation)
            && operation_of(&kept.document, operation.as_deref())
                .is_some_and(|o| variables_certainly_valid(&self.registry, o, &request.variables));
        Prepared {
            kept: Some(kept),
            operation,
            validated,
        }
    }
}

/// The operation a request names, or its only one.
fn operation_of<'a>(
    document: &'a ExecutableDocument,
    name: Option<&str>,
) -> Option<&'a OperationDefinition> {
    match (&document.operations, name) {
        (DocumentOperations::Single(operation), _) => Some(&operation.node),
        (DocumentOperations::Multiple(operations), Some(name)) => {
            operations.get(name).map(|o| &o.node)
        }
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
            operations.values().next().map(|o| &o.node)
        }
        (DocumentOperations::Multiple(_), None) => None,
    }
}

/// Whether every variable the request gives is certainly valid for the type the operation declares for it, names a
/// variable the operation declares, and every variable the operation needs is given.
///
/// Full validation checks each value against the type of the argument it is given to. The document has passed it
/// once, so each variable's declared type is that argument's type, or the same type with fewer nulls allowed
/// (the rule on variables' positions): a value with no null anywhere is valid for one exactly when it is valid
/// for the other. A null anywhere, or anything this check does not know, sends the request to full validation.
fn variables_certainly_valid(
    registry: &Registry,
    operation: &OperationDefinition,
    variables: &Variables,
) -> bool {
    let declared = &operation.variable_definitions;
    let all_declared = variables
        .keys()
        .all(|name| declared.iter().any(|d| d.node.name.node == *name));
    all_declared
        && declared.iter().all(|d| {
            let d = &d.node;
            match variables.get(&d.name.node) {
                Some(value) => declared_valid(registry, &d.var_type.node, value),
                None => d.var_type.node.nullable || d.default_value.is_some(),
            }
        })
}

/// Whether `value`, with no null in it, is valid for a variable's declared type.
fn declared_valid(registry: &Registry, ty: &Type, value: &ConstValue) -> bool {
    match (&ty.base, value) {
        (_, ConstValue::Null) => false,
        (BaseType::List(item), ConstValue::List(items)) => {
            items.iter().all(|v| declared_valid(registry, item, v))
        }
        // One value given for a list is a list of one.
        (BaseType::List(item), _) => declared_valid(registry, item, value),
        (BaseType::Named(name), _) => certainly_valid(registry, name, value, 0),
    }
}

/// Whether `value`, with no null in it, is valid for the input type named `type_name` (`[ID!]!` and the like), as
/// the registry writes the types of input objects' fields.
fn certainly_valid(registry: &Registry, type_name: &str, value: &ConstValue, depth: usize) -> bool {
    // Deeper than any input the schema takes: let full validation judge it.
    if depth > 16 {
        return false;
    }
    match (MetaTypeName::create(type_name), value) {
        (_, ConstValue::Null) => false,
        (MetaTypeName::NonNull(inner), _) => certainly_valid(registry, inner, value, depth + 1),
        (MetaTypeName::List(item), ConstValue::List(items)) => items
            .iter()
            .all(|v| certainly_valid(registry, item, v, depth + 1)),
        // One value given for a list is a list of one.
        (MetaTypeName::List(item), _) => certainly_valid(registry, item, value, depth + 1),
        (MetaTypeName::Named(name), _) => match registry.types.get(name) {
            Some(MetaType::Scalar { is_valid, .. }) => is_valid.as_ref().is_none_or(|f| f(value)),
            Some(MetaType::Enum { enum_values, .. }) => match value {
                ConstValue::Enum(v) => enum_values.contains_key(v.as_str()),
                ConstValue::String(v) => enum_values.contains_key(v.as_str()),
                _ => false,
            },
            Some(MetaType::InputObject {
                input_fields,
                oneof: false,
                ..
            }) => {
                let ConstValue::Object(given) = value else {
                    return false;
                };
                given.keys().all(|k| input_fields.contains_key(k.as_str()))
                    && input_fields
                        .values()
                        .all(|field| match given.get(field.name.as_str()) {
                            Some(v) => certainly_valid(registry, &field.ty, v, depth + 1),
                            None => {
                                !MetaTypeName::create(&field.ty).is_non_null()
                                    || field.default_value.is_some()
                            }
                        })
            }
            _ => false,
        },
    }
}

/// The most aliases a document may hold, and the most root fields an operation may select: enough for a portal's
/// 50 aliased `child` fields, too few to turn one request into a bulk download.
pub const MAX_ALIASES: usize = 60;
pub const MAX_ROOT_FIELDS: usize = 60;

/// Why a document is refused for its shape, if it is: too many aliases, or too many root fields in one operation
/// (fragments spread at the root counted with it).
pub fn too_large(document: &ExecutableDocument) -> Option<String> {
    let mut aliases = 0;
    for (_, operation) in document.operations.iter() {
        aliases += count_aliases(&operation.node.selection_set);
    }
    for fragment in document.fragments.values() {
        aliases += count_aliases(&fragment.node.selection_set);
    }
    if aliases > MAX_ALIASES {
        return Some(format!(
            "the query uses {aliases} aliases; at most {MAX_ALIASES} are accepted"
        ));
    }
    for (_, operation) in document.operations.iter() {
        let roots = count_roots(document, &operation.node.selection_set, 0);
        if roots > MAX_ROOT_FIELDS {
            return Some(format!(
                "an operation selects {roots} root fields; at most {MAX_ROOT_FIELDS} are accepted"
            ));
        }
    }
    None
}

fn count_aliases(selection_set: &Positioned<SelectionSet>) -> usize {
    selection_set
        .node
        .items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(field) => {
                usize::from(field.node.alias.is_some()) + count_aliases(&field.node.selection_set)
            }
            Selection::FragmentSpread(_) => 0,
            Selection::InlineFragment(inline) => count_aliases(&inline.node.selection_set),
        })
        .sum()
}

fn count_roots(
    document: &ExecutableDocument,
    selection_set: &Positioned<SelectionSet>,
    depth: usize,
) -> usize {
    // Fragments spreading each other in a cycle are the validator's to refuse; the count stops going deeper.
    if depth > 8 {
        return 0;
    }
    selection_set
        .node
        .items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(_) => 1,
            Selection::InlineFragment(inline) => {
                count_roots(document, &inline.node.selection_set, depth + 1)
            }
            Selection::FragmentSpread(spread) => document
                .fragments
                .get(&spread.node.fragment_name.node)
                .map_or(0, |f| {
                    count_roots(document, &f.node.selection_set, depth + 1)
                }),
        })
        .sum()
}

/// Whether every value written in the document is a variable, an enum, a boolean or null (or a list or object of them).
pub fn holds_no_literal(document: &ExecutableDocument) -> bool {
    document.operations.iter().all(|(_, operation)| {
        let operation = &operation.node;
        operation.variable_definitions.iter().all(variable_is_clean)
            && directives_are_clean(&operation.directives)
            && selection_is_clean(&operation.selection_set)
    }) && document.fragments.values().all(|fragment| {
        directives_are_clean(&fragment.node.directives)
            && selection_is_clean(&fragment.node.selection_set)
    })
}

fn variable_is_clean(variable: &Positioned<VariableDefinition>) -> bool {
    let variable = &variable.node;
    variable
        .default_value
        .as_ref()
        .is_none_or(|v| const_is_clean(&v.node))
        && directives_are_clean(&variable.directives)
}

fn selection_is_clean(selection_set: &Positioned<SelectionSet>) -> bool {
    selection_set
        .node
        .items
        .iter()
        .all(|item| match &item.node {
            Selection::Field(field) => field_is_clean(&field.node),
            Selection::FragmentSpread(spread) => directives_are_clean(&spread.node.directives),
            Selection::InlineFragment(inline) => {
                directives_are_clean(&inline.node.directives)
                    && selection_is_clean(&inline.node.selection_set)
            }
        })
}

fn field_is_clean(field: &Field) -> bool {
    field.arguments.iter().all(|(_, v)| value_is_clean(&v.node))
        && directives_are_clean(&field.directives)
        && selection_is_clean(&field.selection_set)
}

fn directives_are_clean(directives: &[Positioned<Directive>]) -> bool {
    directives.iter().all(|d| {
        d.node
            .arguments
            .iter()
            .all(|(_, v)| value_is_clean(&v.node))
    })
}

fn value_is_clean(value: &Value) -> bool {
    match value {
        Value::Variable(_) | Value::Null | Value::Boolean(_) | Value::Enum(_) => true,
        Value::Number(_) | Value::String(_) | Value::Binary(_) => false,
        Value::List(items) => items.iter().all(value_is_clean),
        Value::Object(fields) => fields.values().all(value_is_clean),
    }
}

fn const_is_clean(value: &ConstValue) -> bool {
    match value {
        ConstValue::Null | ConstValue::Boolean(_) | ConstValue::Enum(_) => true,
        ConstValue::Number(_) | ConstValue::String(_) | ConstValue::Binary(_) => false,
        ConstValue::List(items) => items.iter().all(const_is_clean),
        ConstValue::Object(fields) => fields.values().all(const_is_clean),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_and_root_fields_are_bounded() {
        let parse = |q: &str| async_graphql::parser::parse_query(q).expect("parses");
        let roots = |n: usize| {
            (0..n)
                .map(|i| {
                    format!("c{i}: child(id: $id, access: {{purpose: SAFEGUARDING}}) {{ id }}")
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            too_large(&parse(&format!("query($id: ID!) {{ {} }}", roots(50)))),
            None
        );
        let many = parse(&format!("query($id: ID!) {{ {} }}", roots(61)));
        assert!(too_large(&many).unwrap().contains("61 aliases"));
        // Root fields without aliases, spread from a fragment.
        let spread = parse(&format!(
            "query {{ ...F }} fragment F on Query {{ {} }}",
            (0..61).map(|_| "me { name }").collect::<Vec<_>>().join(" ")
        ));
        assert!(too_large(&spread).unwrap().contains("61 root fields"));
    }

    fn clean(query: &str) -> bool {
        holds_no_literal(&async_graphql::parser::parse_query(query).expect("parses"))
    }

    #[test]
    fn only_texts_without_typed_values_are_kept() {
        assert!(clean(
            "query($id: ID!) { child(id: $id, access: {purpose: SAFEGUARDING}) { id name { given } } }"
        ));
        assert!(clean(
            "query($c: ChildSearchInput!, $x: Boolean = true) { searchChildren(criteria: $c, access: {purpose: SAFEGUARDING}) { matches @include(if: $x) { score } } }"
        ));
        assert!(clean("{ me { userId } }"));
        // A value typed into the text, anywhere, is child data or may be.
        assert!(!clean(
            r#"{ child(id: "c-1", access: {purpose: SAFEGUARDING}) { id } }"#
        ));
        assert!(!clean(
            r#"{ searchChildren(criteria: {familyName: "Hartley", dateOfBirth: "2019-06-14"}, access: {purpose: SAFEGUARDING}) { tooManyResults } }"#
        ));
        assert!(!clean(
            r#"query($c: ChildSearchInput = {familyName: "Hartley"}) { searchChildren(criteria: $c, access: {purpose: SAFEGUARDING}) { tooManyResults } }"#
        ));
        assert!(!clean(
            r#"query($id: ID!) { ...F } fragment F on Query { child(id: $id, access: {purpose: SAFEGUARDING, justification: "seen at A&E"}) { id } }"#
        ));
        assert!(!clean(
            "query($id: ID!) { child(id: $id, access: {purpose: SAFEGUARDING}) { ... on Child { flags @skip(if: $id) { note } } id } a: child(id: 42, access: {purpose: SAFEGUARDING}) { id } }"
        ));
    }

    mod validation {
        use super::super::Documents;
        use async_graphql::{
            EmptyMutation, EmptySubscription, Enum, ID, InputObject, Object, Schema, ValidationMode,
        };
        use serde_json::{Value, json};

        #[derive(Enum, Clone, Copy, PartialEq, Eq)]
        enum Kind {
            Health,
            School,
        }

        #[derive(InputObject)]
        struct Criteria {
            family: String,
            born: Option<i32>,
            #[graphql(default_with = "Kind::Health")]
            kind: Kind,
        }

        struct Root;

        #[Object]
        impl Root {
            async fn find(
                &self,
                id: ID,
                ids: Option<Vec<ID>>,
                kind: Kind,
                criteria: Criteria,
            ) -> String {
                format!(
                    "{}:{}:{}:{}:{:?}:{}",
                    id.as_str(),
                    ids.map_or(0, |i| i.len()),
                    kind == Kind::School,
                    criteria.family,
                    criteria.born,
                    criteria.kind == Kind::School
                )
            }
        }

        const QUERY: &str = "query($id: ID!, $ids: [ID!], $kind: Kind!, $c: Criteria!) { find(id: $id, ids: $ids, kind: $kind, criteria: $c) }";

        fn good() -> Value {
            json!({"id": "c-1", "ids": ["a", "b"], "kind": "SCHOOL", "c": {"family": "Hartley", "born": 2019}})
        }

        /// Runs the request as the gateway does, on the schema in fast validation mode when the request may skip
        /// full validation, and on the schema in full validation mode; says what the first answered, having checked
        /// that the second answered the same, and whether it skipped full validation.
        async fn both(documents: &Documents, variables: Value) -> (Value, bool) {
            let strict = Schema::build(Root, EmptyMutation, EmptySubscription).finish();
            let fast = Schema::build(Root, EmptyMutation, EmptySubscription)
                .validation_mode(ValidationMode::Fast)
                .finish();
            let request = || {
                async_graphql::Request::new(QUERY)
                    .variables(async_graphql::Variables::from_json(variables.clone()))
            };
            let mut first = request();
            let prepared = documents.prepare(&mut first);
            let schema = if prepared.validated() { &fast } else { &strict };
            let response = schema.execute(first).await;
            prepared.answered(&response);
            let answered = serde_json::to_value(response).unwrap();
            let expected = serde_json::to_value(strict.execute(request()).await).unwrap();
            assert_eq!(answered, expected, "variables {variables}");
            (answered, prepared.validated())
        }

        #[tokio::test]
        async fn a_kept_document_is_validated_in_full_once_and_bad_variables_still_are() {
            let documents = Documents::new(super::super::registry::<Root, EmptyMutation>());
            let (answer, skipped) = both(&documents, good()).await;
            assert_eq!(
                answer["data"]["find"],
                "c-1:2:true:Hartley:Some(2019):false"
            );
            assert!(!skipped, "the first request is validated in full");
            assert!(both(&documents, good()).await.1);

            // Valid variables in other shapes: one id for a list, an omitted nullable list, a field's default.
            let valid = [
                json!({"id": 7, "ids": "a", "kind": "HEALTH", "c": {"family": "O'Brien", "kind": "SCHOOL"}}),
                json!({"id": "c-2", "kind": "SCHOOL", "c": {"family": "\u{202e}"}}),
            ];
            for variables in valid {
                let (answer, skipped) = both(&documents, variables).await;
                assert!(answer["errors"].is_null(), "{answer}");
                assert!(skipped, "{answer}");
            }

            // Each of these is refused by full validation, with the schema's own error and no data.
            let invalid = [
                json!({"id": {"a": 1}, "kind": "SCHOOL", "c": {"family": "x"}}),
                json!({"id": true, "kind": "SCHOOL", "c": {"family": "x"}}),
                json!({"id": "c-1", "ids": [{"a": 1}], "kind": "SCHOOL", "c": {"family": "x"}}),
                json!({"id": "c-1", "kind": "NURSERY", "c": {"family": "x"}}),
                json!({"id": "c-1", "kind": 3, "c": {"family": "x"}}),
                json!({"id": "c-1", "kind": "SCHOOL", "c": {"born": 2019}}),
                json!({"id": "c-1", "kind": "SCHOOL", "c": {"family": "x", "postcode": "N1"}}),
                json!({"id": "c-1", "kind": "SCHOOL", "c": {"family": 5}}),
                json!({"id": "c-1", "kind": "SCHOOL", "c": {"family": "x", "born": "2019"}}),
                json!({"id": "c-1", "kind": "SCHOOL", "c": "Hartley"}),
                json!({"id": "c-1", "kind": "SCHOOL", "c": {"family": "x", "kind": "NURSERY"}}),
            ];
            for variables in invalid {
                let (answer, skipped) = both(&documents, variables).await;
                assert!(!skipped, "{answer}");
                assert!(answer["data"].is_null(), "{answer}");
                assert!(!answer["errors"].as_array().unwrap().is_empty());
            }
            // Nulls, missing and undeclared variables: judged in full too, with whatever the schema says of them.
            let in_full = [
                json!({"id": null, "kind": "SCHOOL", "c": {"family": "x"}}),
                json!({"id": "c-1", "ids": ["a", null], "kind": "SCHOOL", "c": {"family": "x"}}),
                json!({"id": "c-1", "kind": "SCHOOL", "c": {"family": "x", "born": null}}),
                json!({"kind": "SCHOOL", "c": {"family": "x"}}),
                json!({"id": "c-1", "kind": "SCHOOL", "c": {"family": "x"}, "extra": 1}),
            ];
            for variables in in_full {
                let (answer, skipped) = both(&documents, variables).await;
                assert!(
                    !skipped,
                    "none of these takes the kept validation: {answer}"
                );
            }
        }
    }

    #[test]
    fn a_kept_document_is_given_to_the_next_request_with_the_same_text() {
        let documents = Documents::new(async_graphql::registry::Registry::default());
        let query = "query($id: ID!) { child(id: $id, access: {purpose: SAFEGUARDING}) { id } }";
        let mut first = async_graphql::Request::new(query);
        documents.prepare(&mut first);
        assert!(documents.cache.get(query).is_some());
        let literal = r#"{ child(id: "c-1", access: {purpose: SAFEGUARDING}) { id } }"#;
        documents.prepare(&mut async_graphql::Request::new(literal));
        assert!(documents.cache.get(literal).is_none());
        // A text that does not parse is left alone, for the executor to report.
        documents.prepare(&mut async_graphql::Request::new("{ child("));
        documents.cache.run_pending_tasks();
        assert_eq!(documents.cache.entry_count(), 1);
    }
}
