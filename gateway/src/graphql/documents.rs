//! Parsed query documents, kept so that a portal sending the same query text again and again is not parsed each time.
//!
//! Only a document whose argument values are all variables, enums, booleans or null is kept: such a text carries no
//! value a user typed, so keeping it keeps no child data. A query with a name, a date or an id written into its text
//! is parsed afresh every time and forgotten with its request.

use async_graphql::Positioned;
use async_graphql::parser::types::{
    Directive, ExecutableDocument, Field, Selection, SelectionSet, VariableDefinition,
};
use async_graphql_value::{ConstValue, Value};

/// The most documents kept, and the most query text they may hold between them.
const MAX_DOCUMENTS: u64 = 512;
const MAX_TEXT_BYTES: u64 = 8 * 1024 * 1024;

/// Parsed documents by their exact query text.
#[derive(Clone)]
pub struct Documents {
    cache: moka::sync::Cache<String, ExecutableDocument>,
}

impl std::fmt::Debug for Documents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Documents")
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}

impl Default for Documents {
    fn default() -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(MAX_TEXT_BYTES)
                .weigher(|text: &String, _| {
                    u32::try_from(text.len().max((MAX_TEXT_BYTES / MAX_DOCUMENTS) as usize))
                        .unwrap_or(u32::MAX)
                })
                .build(),
        }
    }
}

impl Documents {
    /// Gives the request its parsed document: the kept one for this text, or a fresh parse, kept if it may be.
    /// A text that does not parse is left for the executor, which reports the error as usual.
    pub fn prepare(&self, request: &mut async_graphql::Request) {
        if let Some(document) = self.cache.get(&request.query) {
            request.set_parsed_query(document);
            return;
        }
        let Ok(document) = request.parsed_query() else {
            return;
        };
        if holds_no_literal(document) {
            let document = document.clone();
            self.cache.insert(request.query.clone(), document);
        }
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

    #[test]
    fn a_kept_document_is_given_to_the_next_request_with_the_same_text() {
        let documents = Documents::default();
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
