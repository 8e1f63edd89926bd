//! Parsed documents, kept by query text, and the limits on what a document may cost, checked
//! before async-graphql validates or runs it.
//!
//! Clients send the same few documents again and again, and parsing (pest) is a visible share
//! of a small query's cost. This runs in the HTTP layer, before the schema, rather than as an
//! async-graphql extension: with any extension registered, async-graphql wraps every field
//! it resolves in the extension chain (a boxed future per field and extension), which cost more
//! than the parsing it saved on a page of products.

use std::sync::Arc;

use async_graphql::{
    ErrorExtensionValues, Name, Request, ServerError, Value as ConstValue,
    parser::{
        self, Pos, Positioned,
        types::{Directive, ExecutableDocument, OperationType, Selection, SelectionSet},
    },
};

use quick_cache::sync::Cache;

use super::cost::{Cost, CostError, CostModel, MAX_INTROSPECTION_NESTING, selected};

/// Documents kept at most; when full, those seldom used make room first.
const MAX_DOCUMENTS: usize = 512;
/// Longer documents are parsed every time rather than kept.
const MAX_QUERY_BYTES: usize = 8 * 1024;
/// The longest "expected …" text a syntax error repeats.
const MAX_EXPECTED_CHARS: usize = 120;
/// The longest name a document may use: operations, fragments, variables, aliases, fields,
/// arguments, directives, types and enum values. Error messages repeat names, so a long one
/// would be repeated in every error about it.
pub const MAX_NAME_CHARS: usize = 128;
/// Variable definitions of one operation at most.
pub const MAX_VARIABLES: usize = 50;
/// Arguments of one field or directive (and fields of one input object value) at most.
pub const MAX_ARGUMENTS: usize = 50;
/// The longest error message sent; longer ones are cut and end with `…`.
pub const MAX_MESSAGE_CHARS: usize = 300;
/// Errors in one response at most; the last one counts those left out.
pub const MAX_ERRORS: usize = 50;

/// The `extensions.code` of a document that does not parse.
pub const PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
/// The `extensions.code` of a document that breaks a rule of GraphQL.
pub const VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";
/// The `extensions.code` of a document over a cost, depth, alias or directive limit.
pub const TOO_COMPLEX: &str = "QUERY_TOO_COMPLEX";

/// What one request (a whole batch) may ask of the server.
#[derive(Clone, Copy, Debug)]
pub struct DocumentLimits {
    pub max_cost: u64,
    pub max_depth: u32,
    pub max_aliases: u64,
    pub max_directives: u32,
}

/// Parses documents (or finds them parsed before) and measures them against the limits.
pub struct Documents {
    model: CostModel,
    limits: DocumentLimits,
    /// Parsed documents by query text.
    parsed: Cache<Box<str>, Arc<ExecutableDocument>>,
}

impl Documents {
    pub fn new(model: CostModel, limits: DocumentLimits) -> Self {
        Self {
            model,
            limits,
            parsed: Cache::new(MAX_DOCUMENTS),
        }
    }

    /// The schema's shapes the documents are measured with.
    pub fn model(&self) -> &CostModel {
        &self.model
    }

    /// The parsed document of `query`, its names and argument lists checked.
    ///
    /// # Errors
    /// `GRAPHQL_PARSE_FAILED`, with the line, column and what was expected, never the text;
    /// `GRAPHQL_VALIDATION_FAILED` for a name longer than [`MAX_NAME_CHARS`];
    /// `QUERY_TOO_COMPLEX` for more than [`MAX_VARIABLES`] or [`MAX_ARGUMENTS`].
    pub fn parse(&self, query: &str) -> Result<Arc<ExecutableDocument>, ServerError> {
        if let Some(document) = self.parsed.get(query) {
            return Ok(document);
        }
        let document = parser::parse_query(query).map_err(parse_error)?;
        check_shape(&document)?;
        let document = Arc::new(document);
        if query.len() <= MAX_QUERY_BYTES {
            self.parsed.insert(query.into(), document.clone());
        }
        Ok(document)
    }

    /// Parses and measures `request`'s document and hands it the parsed document, so the
    /// schema does not parse it again. The cost is for the caller to add up over a batch.
    ///
    /// # Errors
    /// As [`Documents::parse`]; `GRAPHQL_VALIDATION_FAILED` on a fragment cycle;
    /// `QUERY_TOO_COMPLEX` when the document alone is over a limit.
    pub fn prepare(
        &self,
        request: &mut Request,
    ) -> Result<(Cost, Arc<ExecutableDocument>), ServerError> {
        let document = self.parse(&request.query)?;
        let cost = self
            .model
            .measure(
                &document,
                &request.variables,
                request.operation_name.as_deref(),
            )
            .map_err(|err| match err {
                CostError::FragmentCycle(_) => coded(err.to_string(), VALIDATION_FAILED),
                CostError::FragmentsTooDeep => coded(err.to_string(), TOO_COMPLEX),
            })?;
        self.check(&cost, "the query")?;
        request.set_parsed_query(ExecutableDocument::clone(&document));
        Ok((cost, document))
    }

    /// Refuses a cost over the limits; `what` names it in the message ("the query", "the
    /// batch").
    ///
    /// # Errors
    /// `QUERY_TOO_COMPLEX`, saying what it cost and the limit.
    pub fn check(&self, cost: &Cost, what: &str) -> Result<(), ServerError> {
        let limits = &self.limits;
        type Message = fn(&str, u64, u64) -> String;
        // Each measure, its limit and what the refusal says, in the order they are checked.
        let checks: [(u64, u64, Message); 7] = [
            (cost.cost, limits.max_cost, |what, value, limit| {
                format!(
                    "{what} costs {value}; the limit is {limit} (each field 1, list items \
                     multiplied by `first`)"
                )
            }),
            (cost.fields, limits.max_cost, |what, value, limit| {
                format!(
                    "{what} has {value} fields once its fragments are expanded; the limit is {limit}"
                )
            }),
            (
                cost.depth.into(),
                limits.max_depth.into(),
                |what, value, limit| {
                    format!("{what} nests fields {value} deep; the limit is {limit}")
                },
            ),
            (cost.aliases, limits.max_aliases, |what, value, limit| {
                format!("{what} uses {value} aliases; at most {limit} are allowed")
            }),
            (
                cost.directives_per_field.into(),
                limits.max_directives.into(),
                |what, value, limit| {
                    format!(
                        "{what} has {value} directives on one field; at most {limit} are allowed"
                    )
                },
            ),
            (cost.schema_fields, 1, |what, value, _| {
                format!("{what} asks for `__schema` {value} times; once per request is allowed")
            }),
            (
                cost.introspection_nesting.into(),
                MAX_INTROSPECTION_NESTING.into(),
                |what, value, limit| {
                    format!(
                        "{what} nests introspection lists {value} deep; at most {limit} are allowed"
                    )
                },
            ),
        ];
        for (value, limit, message) in checks {
            if value > limit {
                let mut error = coded(message(what, value, limit), TOO_COMPLEX);
                if let Some(extensions) = error.extensions.as_mut() {
                    extensions.set("cost", value);
                    extensions.set("limit", limit);
                }
                return Err(error);
            }
        }
        Ok(())
    }
}

/// Whether the argument named at `pos` in `document` takes its value from a variable (so an
/// error about its value is about the variables the client sent, not the document).
pub fn argument_uses_variable(document: &ExecutableDocument, pos: Pos) -> bool {
    fn in_set(set: &SelectionSet, pos: Pos) -> bool {
        set.items.iter().any(|item| match &item.node {
            Selection::Field(field) => {
                field.node.arguments.iter().any(|(name, value)| {
                    name.pos == pos && value.node.clone().into_const_with(|_| Err(())).is_err()
                }) || in_set(&field.node.selection_set.node, pos)
            }
            Selection::InlineFragment(fragment) => in_set(&fragment.node.selection_set.node, pos),
            Selection::FragmentSpread(_) => false,
        })
    }
    document
        .operations
        .iter()
        .any(|(_, op)| in_set(&op.node.selection_set.node, pos))
        || document
            .fragments
            .values()
            .any(|fragment| in_set(&fragment.node.selection_set.node, pos))
}

/// An error with an `extensions.code` and no location.
fn coded(message: String, code: &str) -> ServerError {
    let mut error = ServerError::new(message, None);
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", code);
    error.extensions = Some(extensions);
    error
}

/// A short syntax error: where, and what was expected. pest's own message repeats the
/// offending line, which may be the whole document.
fn parse_error(err: parser::Error) -> ServerError {
    let position = err.positions().next();
    let what = match &err {
        parser::Error::Syntax { message, .. } => {
            let expected = message
                .lines()
                .find_map(|line| line.trim_start().strip_prefix("= "))
                .or_else(|| message.lines().next())
                .unwrap_or("invalid syntax");
            truncated(expected.to_owned(), MAX_EXPECTED_CHARS)
        }
        other => truncated(other.to_string(), MAX_EXPECTED_CHARS),
    };
    let message = match position {
        Some(pos) => format!(
            "syntax error at line {}, column {}: {what}",
            pos.line, pos.column
        ),
        None => format!("syntax error: {what}"),
    };
    let mut error = coded(message, PARSE_FAILED);
    if let Some(pos) = position {
        error.locations = vec![pos];
    }
    error
}

/// `text` cut to at most `max` characters, ending with `…` when it was cut.
pub fn truncated(mut text: String, max: usize) -> String {
    if let Some((end, _)) = text.char_indices().nth(max) {
        text.truncate(end);
        text.push('…');
    }
    text
}

/// Refuses, in one pass over `document` and before validation, names longer than
/// [`MAX_NAME_CHARS`] and lists of variables or arguments longer than [`MAX_VARIABLES`] or
/// [`MAX_ARGUMENTS`]: validation repeats names in its errors and compares arguments and
/// variables pairwise.
fn check_shape(document: &ExecutableDocument) -> Result<(), ServerError> {
    for (name, operation) in document.operations.iter() {
        let pos = operation.pos;
        if let Some(name) = name {
            check_name("an operation", name, pos)?;
        }
        let operation = &operation.node;
        if operation.variable_definitions.len() > MAX_VARIABLES {
            let mut error = coded(
                format!(
                    "an operation declares {} variables; at most {MAX_VARIABLES} are allowed",
                    operation.variable_definitions.len()
                ),
                TOO_COMPLEX,
            );
            error.locations = vec![pos];
            return Err(error);
        }
        for definition in &operation.variable_definitions {
            let pos = definition.pos;
            let definition = &definition.node;
            check_name("a variable", &definition.name.node, pos)?;
            check_type(&definition.var_type.node.base, pos)?;
            check_directives(&definition.directives)?;
            if let Some(value) = &definition.default_value {
                check_const_value(&value.node, value.pos)?;
            }
        }
        check_directives(&operation.directives)?;
        check_set(&operation.selection_set.node)?;
    }
    for (name, fragment) in &document.fragments {
        check_name("a fragment", name, fragment.pos)?;
        let fragment = &fragment.node;
        check_name(
            "a type",
            &fragment.type_condition.node.on.node,
            fragment.type_condition.pos,
        )?;
        check_directives(&fragment.directives)?;
        check_set(&fragment.selection_set.node)?;
    }
    Ok(())
}

fn check_name(what: &str, name: &str, pos: Pos) -> Result<(), ServerError> {
    if name.len() <= MAX_NAME_CHARS {
        return Ok(());
    }
    let mut error = coded(
        format!(
            "{what} name is {} characters long; names are at most {MAX_NAME_CHARS}",
            name.len()
        ),
        VALIDATION_FAILED,
    );
    error.locations = vec![pos];
    Err(error)
}

fn check_type(base: &parser::types::BaseType, pos: Pos) -> Result<(), ServerError> {
    match base {
        parser::types::BaseType::Named(name) => check_name("a type", name, pos),
        parser::types::BaseType::List(inner) => check_type(&inner.base, pos),
    }
}

/// An argument of a field or directive, its value a copy with each variable null (checked
/// by `variable`): the parser's non-constant value type is not exported.
fn check_argument(
    name: &Positioned<Name>,
    value: Result<ConstValue, ServerError>,
    pos: Pos,
) -> Result<(), ServerError> {
    check_name("an argument", &name.node, name.pos)?;
    check_const_value(&value?, pos)
}

/// A variable used as a value, checked and taken as null.
fn variable(name: &Name, pos: Pos) -> Result<ConstValue, ServerError> {
    check_name("a variable", name, pos).map(|()| ConstValue::Null)
}

fn check_count(arguments: usize, pos: Pos) -> Result<(), ServerError> {
    if arguments <= MAX_ARGUMENTS {
        return Ok(());
    }
    let mut error = coded(
        format!("{arguments} arguments in one place; at most {MAX_ARGUMENTS} are allowed"),
        TOO_COMPLEX,
    );
    error.locations = vec![pos];
    Err(error)
}

fn check_directives(directives: &[Positioned<Directive>]) -> Result<(), ServerError> {
    for directive in directives {
        check_name("a directive", &directive.node.name.node, directive.pos)?;
        check_count(directive.node.arguments.len(), directive.pos)?;
        for (name, value) in &directive.node.arguments {
            let constant = value
                .node
                .clone()
                .into_const_with(|v| variable(&v, value.pos));
            check_argument(name, constant, value.pos)?;
        }
    }
    Ok(())
}

fn check_const_value(value: &ConstValue, pos: Pos) -> Result<(), ServerError> {
    match value {
        ConstValue::Enum(name) => check_name("an enum value", name, pos),
        ConstValue::List(items) => items
            .iter()
            .try_for_each(|item| check_const_value(item, pos)),
        ConstValue::Object(fields) => {
            check_count(fields.len(), pos)?;
            fields.iter().try_for_each(|(name, value)| {
                check_name("an input field", name, pos)?;
                check_const_value(value, pos)
            })
        }
        _ => Ok(()),
    }
}

fn check_set(set: &SelectionSet) -> Result<(), ServerError> {
    for item in &set.items {
        match &item.node {
            Selection::Field(field) => {
                let field = &field.node;
                if let Some(alias) = &field.alias {
                    check_name("an alias", &alias.node, alias.pos)?;
                }
                check_name("a field", &field.name.node, field.name.pos)?;
                check_count(field.arguments.len(), field.name.pos)?;
                for (name, value) in &field.arguments {
                    let constant = value
                        .node
                        .clone()
                        .into_const_with(|v| variable(&v, value.pos));
                    check_argument(name, constant, value.pos)?;
                }
                check_directives(&field.directives)?;
                check_set(&field.selection_set.node)?;
            }
            Selection::InlineFragment(fragment) => {
                let fragment = &fragment.node;
                if let Some(condition) = &fragment.type_condition {
                    check_name("a type", &condition.node.on.node, condition.pos)?;
                }
                check_directives(&fragment.directives)?;
                check_set(&fragment.selection_set.node)?;
            }
            Selection::FragmentSpread(spread) => {
                let spread = &spread.node;
                check_name(
                    "a fragment",
                    &spread.fragment_name.node,
                    spread.fragment_name.pos,
                )?;
                check_directives(&spread.directives)?;
            }
        }
    }
    Ok(())
}

/// Whether the operation a request selects from `document` is a mutation (none selected, as
/// with an unknown name, is not: the executor reports that).
pub fn is_mutation(document: &ExecutableDocument, operation_name: Option<&str>) -> bool {
    selected(document, operation_name).is_some_and(|op| op.ty == OperationType::Mutation)
}

/// Whether the operation that would run is a subscription.
pub fn is_subscription(document: &ExecutableDocument, operation_name: Option<&str>) -> bool {
    selected(document, operation_name).is_some_and(|op| op.ty == OperationType::Subscription)
}

/// The fields at the root of the operation that would run, fragments (spread or inline)
/// counted by what they select, each fragment at most once (as [`super::cost`] bounds them,
/// a fragment cycle is refused before this runs). A subscription must select exactly one (the
/// GraphQL spec's "Single root field" rule): one `subscribe` is one stream of events.
pub fn root_fields(document: &ExecutableDocument, operation_name: Option<&str>) -> usize {
    fn count<'a>(
        document: &'a ExecutableDocument,
        set: &'a SelectionSet,
        seen: &mut Vec<&'a str>,
    ) -> usize {
        set.items
            .iter()
            .map(|item| match &item.node {
                Selection::Field(_) => 1,
                Selection::InlineFragment(inline) => {
                    count(document, &inline.node.selection_set.node, seen)
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    match document.fragments.get(name) {
                        Some(fragment) if !seen.contains(&name) => {
                            seen.push(name);
                            count(document, &fragment.node.selection_set.node, seen)
                        }
                        _ => 0,
                    }
                }
            })
            .sum()
    }
    selected(document, operation_name).map_or(0, |op| {
        count(document, &op.selection_set.node, &mut Vec::new())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_budget(max_cost: u64) -> Documents {
        let model = CostModel::from_sdl(&crate::graphql::sdl(), 100).unwrap();
        Documents::new(
            model,
            DocumentLimits {
                max_cost,
                max_depth: 15,
                max_aliases: 3,
                max_directives: 2,
            },
        )
    }

    fn prepare(documents: &Documents, query: &str) -> Result<Cost, ServerError> {
        documents
            .prepare(&mut Request::new(query))
            .map(|(cost, _)| cost)
    }

    fn code(err: &ServerError) -> String {
        let value = err
            .extensions
            .as_ref()
            .and_then(|e| e.get("code"))
            .cloned()
            .unwrap_or_default();
        value.to_string().trim_matches('"').to_owned()
    }

    #[test]
    fn mutations_are_recognised_by_the_selected_operation() {
        let documents = with_budget(1000);
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
    fn every_limit_is_checked_and_named_in_the_error() {
        let documents = with_budget(10);
        let ok = "{ a: __typename ...F } fragment F on Query { b: __typename c: __typename }";
        assert_eq!(prepare(&documents, ok).unwrap().aliases, 3);
        for (query, says) in [
            (
                "{ a: __typename b: __typename c: __typename d: __typename }",
                "4 aliases",
            ),
            (
                "{ products(first: 10) { nodes { id } } }",
                "costs 12; the limit is 10",
            ),
            (
                "{ __typename @skip(if: false) @skip(if: false) @skip(if: false) }",
                "3 directives",
            ),
        ] {
            let err = prepare(&documents, query).unwrap_err();
            assert!(err.message.contains(says), "{query}: {}", err.message);
            assert_eq!(code(&err), TOO_COMPLEX);
        }
        let mut deep = String::from("name");
        for _ in 0..15 {
            deep = format!("ofType {{ {deep} }}");
        }
        let deep = format!("{{ __type(name: \"Product\") {{ {deep} }} }}");
        let err = prepare(&with_budget(1000), &deep).unwrap_err();
        assert!(
            err.message.contains("17 deep; the limit is 15"),
            "{}",
            err.message
        );
        let err = prepare(&documents, "{ ...A } fragment A on Query { ...A }").unwrap_err();
        assert_eq!(code(&err), VALIDATION_FAILED);
    }

    #[test]
    fn truncated_cuts_at_a_character_and_says_so() {
        assert_eq!(truncated("short".to_owned(), 5), "short");
        assert_eq!(truncated("ééééé!".to_owned(), 5), "ééééé…");
        assert_eq!(truncated("x".repeat(1000), 300).chars().count(), 301);
    }

    #[test]
    fn the_cache_stays_bounded_and_keeps_the_documents_in_use_through_a_flood() {
        let documents = with_budget(1000);
        let hot = documents.parse("{ __typename }").unwrap();
        for i in 0..4 * MAX_DOCUMENTS {
            documents.parse(&format!("{{ a{i}: __typename }}")).unwrap();
            if i % 8 == 0 {
                documents.parse("{ __typename }").unwrap();
            }
        }
        assert!(documents.parsed.len() <= MAX_DOCUMENTS);
        let again = documents.parse("{ __typename }").unwrap();
        assert!(
            Arc::ptr_eq(&hot, &again),
            "one-off documents did not push it out"
        );
    }

    #[test]
    fn cached_documents_are_shared_and_syntax_errors_are_short() {
        let documents = with_budget(1000);
        let first = documents.parse("{ __typename }").unwrap();
        let second = documents.parse("{ __typename }").unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        let err = documents.parse("{ __typename").unwrap_err();
        assert_eq!(err.locations.len(), 1, "syntax errors carry a location");
        assert_eq!(code(&err), PARSE_FAILED);
        // A 20 KB line that breaks at its end is not repeated back.
        let long = format!("{{ {} !!! }}", "__typename ".repeat(2000));
        let err = documents.parse(&long).unwrap_err();
        assert!(err.message.len() < 200, "{}", err.message);
        assert!(
            err.message
                .starts_with("syntax error at line 1, column 2200"),
            "{}",
            err.message
        );
    }
}
