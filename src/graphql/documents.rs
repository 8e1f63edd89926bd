//! Parsed documents, kept by query text, with the one limit async-graphql lacks (aliases per
//! document) checked once per text.
//!
//! Clients send the same few documents again and again, and parsing (pest) is a visible share
//! of a small query's cost. This runs in the HTTP layer, before the schema, rather than as an
//! async-graphql extension: with any extension registered, async-graphql wraps every field
//! it resolves in the extension chain (a boxed future per field and extension), which cost more
//! than the parsing it saved on a page of products.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use async_graphql::{
    Request, ServerError,
    parser::{
        self,
        types::{DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet},
    },
};

/// Documents kept at most; when full, the cache starts over (no LRU bookkeeping on the hot path).
const MAX_DOCUMENTS: usize = 512;
/// Longer documents are parsed every time rather than kept.
const MAX_QUERY_BYTES: usize = 8 * 1024;

/// Parses documents (or finds them parsed before) and refuses those with too many aliases.
pub struct Documents {
    max_aliases: usize,
    parsed: Mutex<HashMap<Box<str>, Arc<ExecutableDocument>>>,
}

impl Documents {
    pub fn new(max_aliases: usize) -> Self {
        Self {
            max_aliases,
            parsed: Mutex::default(),
        }
    }

    /// The parsed document of `query`.
    ///
    /// # Errors
    /// The syntax error, as async-graphql reports it, or a document with more than the allowed
    /// aliased fields (so one request cannot repeat a field, a `login` say, under many names).
    pub fn parse(&self, query: &str) -> Result<Arc<ExecutableDocument>, ServerError> {
        if let Some(document) = self.lock().get(query) {
            return Ok(document.clone());
        }
        let document = Arc::new(parser::parse_query(query)?);
        let aliases = count_document_aliases(&document);
        if aliases > self.max_aliases {
            return Err(ServerError::new(
                format!(
                    "the query uses {aliases} aliases; at most {} are allowed",
                    self.max_aliases
                ),
                None,
            ));
        }
        if query.len() <= MAX_QUERY_BYTES {
            let mut parsed = self.lock();
            if parsed.len() >= MAX_DOCUMENTS {
                parsed.clear();
            }
            parsed.insert(query.into(), document.clone());
        }
        Ok(document)
    }

    /// Hands `request` its parsed document, so the schema does not parse it again.
    ///
    /// # Errors
    /// As [`Documents::parse`].
    pub fn attach(&self, request: &mut Request) -> Result<(), ServerError> {
        let document = self.parse(&request.query)?;
        request.set_parsed_query(ExecutableDocument::clone(&document));
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Arc<ExecutableDocument>>> {
        self.parsed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether the operation a request selects from `document` is a mutation (none selected, as
/// with an unknown name, is not: the executor reports that).
pub fn is_mutation(document: &ExecutableDocument, operation_name: Option<&str>) -> bool {
    let operation = match (&document.operations, operation_name) {
        (DocumentOperations::Single(op), _) => Some(&op.node),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name).map(|op| &op.node),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().map(|op| &op.node)
        }
        _ => None,
    };
    operation.is_some_and(|op| op.ty == OperationType::Mutation)
}

fn count_document_aliases(document: &ExecutableDocument) -> usize {
    document
        .operations
        .iter()
        .map(|(_, op)| count_aliases(&op.node.selection_set.node))
        .chain(
            document
                .fragments
                .values()
                .map(|fragment| count_aliases(&fragment.node.selection_set.node)),
        )
        .sum()
}

fn count_aliases(selection_set: &SelectionSet) -> usize {
    selection_set
        .items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(field) => {
                usize::from(field.node.alias.is_some())
                    + count_aliases(&field.node.selection_set.node)
            }
            Selection::InlineFragment(fragment) => count_aliases(&fragment.node.selection_set.node),
            Selection::FragmentSpread(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_recognised_by_the_selected_operation() {
        let documents = Documents::new(30);
        let check = |q: &str, name: Option<&str>| is_mutation(&documents.parse(q).unwrap(), name);
        assert!(check("mutation { logout }", None));
        assert!(!check("{ __typename }", None));
        assert!(!check("query Q { __typename }", None));
        let both = "query Q { __typename } mutation M { logout }";
        assert!(check(both, Some("M")));
        assert!(!check(both, Some("Q")));
        assert!(!check(both, None));
    }

    #[test]
    fn aliases_in_operations_and_fragments_count_and_the_limit_holds() {
        let documents = Documents::new(3);
        let query = "{ a: __typename ...F } fragment F on Query { b: __typename c: __typename }";
        assert_eq!(count_document_aliases(&documents.parse(query).unwrap()), 3);
        let over = "{ a: __typename b: __typename c: __typename d: __typename }";
        let err = documents.parse(over).unwrap_err();
        assert!(err.message.contains("4 aliases"), "{}", err.message);
        // A refused document is not cached as if it were fine.
        assert!(documents.parse(over).is_err());
    }

    #[test]
    fn cached_documents_are_shared_and_syntax_errors_reported() {
        let documents = Documents::new(30);
        let first = documents.parse("{ __typename }").unwrap();
        let second = documents.parse("{ __typename }").unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        let err = documents.parse("{ __typename").unwrap_err();
        assert!(!err.locations.is_empty(), "syntax errors carry a location");
    }
}
