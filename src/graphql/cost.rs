//! What a document may cost, measured on the parsed document before async-graphql validates or
//! runs it, in time linear in the document's size.
//!
//! async-graphql's own depth and complexity checks run inside validation and expand every
//! fragment spread as they go: fragments that each spread the next one twice cost 2^n before
//! they are refused (see PITFALLS.md). Here each fragment is measured once per page size it
//! is spread under, and its summary is reused (multiplied) wherever it is spread.
//!
//! The model (docs/api.md, "GraphQL and HTTP limits"): every field costs 1, plus 1 per directive on
//! it. A paginated field (one that takes `first`) passes its page size down to its list fields
//! (`edges`, `nodes`), which multiply their children's cost by it. Other lists are small and
//! fixed (`myPermissions`, introspection) and count once; introspection lists may nest at most
//! [`MAX_INTROSPECTION_NESTING`] deep, as the standard introspection query does.

use std::collections::HashMap;

use async_graphql::{
    Value as ConstValue, Variables,
    parser::{
        self,
        types::{
            BaseType, DocumentOperations, ExecutableDocument, Field, OperationDefinition,
            OperationType, Selection, SelectionSet, TypeKind, TypeSystemDefinition,
        },
    },
};

use crate::pagination::DEFAULT_PAGE_SIZE;

/// Introspection lists nested inside each other at most this deep: `types { fields { args } }`
/// in the standard introspection query.
pub const MAX_INTROSPECTION_NESTING: u32 = 3;
/// Fragments spread inside fragments at most this deep (the parser already stops selection
/// sets nested deeper than 64).
const MAX_FRAGMENT_NESTING: usize = 64;

/// What the cost model knows of one field of an object type.
#[derive(Clone, Debug)]
struct FieldShape {
    /// The named type it returns (lists and non-null unwrapped).
    ty: String,
    /// It returns a list.
    list: bool,
    /// It is paginated: it takes `first`, whose default (or the resolver's when the schema
    /// gives none) is this page size.
    page: Option<u64>,
    /// A list of what its `ids` argument names (`nodes`): as long as that list.
    by_ids: bool,
    /// A list of the introspection schema (counted once, but nesting is limited).
    introspection_list: bool,
    /// It may be null (its type is not `…!`).
    nullable: bool,
}

/// The shapes of the schema's fields, read from its SDL once at start.
#[derive(Clone, Debug)]
pub struct CostModel {
    types: HashMap<String, HashMap<String, FieldShape>>,
    query: String,
    mutation: Option<String>,
    subscription: Option<String>,
    max_page: u64,
}

/// The measure of an operation, a document or a batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// Fields the response can hold: each field 1 (plus its directives), list children
    /// multiplied by the page size. What the budget limits.
    pub cost: u64,
    /// Fields after expanding every fragment spread, in the operations and in each fragment
    /// definition (validation visits both), without list multipliers.
    pub fields: u64,
    /// The deepest nesting of fields.
    pub depth: u32,
    /// Aliased fields after expanding fragments.
    pub aliases: u64,
    /// The most directives on one field.
    pub directives_per_field: u32,
    /// `__schema` fields: each answers from the whole schema.
    pub schema_fields: u64,
    /// The deepest nesting of introspection lists.
    pub introspection_nesting: u32,
}

impl Cost {
    fn absorb(&mut self, other: Cost) {
        self.cost = self.cost.saturating_add(other.cost);
        self.fields = self.fields.saturating_add(other.fields);
        self.depth = self.depth.max(other.depth);
        self.aliases = self.aliases.saturating_add(other.aliases);
        self.directives_per_field = self.directives_per_field.max(other.directives_per_field);
        self.schema_fields = self.schema_fields.saturating_add(other.schema_fields);
        self.introspection_nesting = self.introspection_nesting.max(other.introspection_nesting);
    }

    /// Several operations (a batch) against one budget: costs add up, depths do not.
    pub fn sum(costs: impl IntoIterator<Item = Cost>) -> Cost {
        let mut total = Cost::default();
        for cost in costs {
            total.absorb(cost);
        }
        total
    }
}

/// Why a document cannot be measured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CostError {
    /// A fragment spreads itself, directly or through others (the names, in order).
    FragmentCycle(Vec<String>),
    /// Fragments spread inside fragments deeper than [`MAX_FRAGMENT_NESTING`].
    FragmentsTooDeep,
}

impl std::fmt::Display for CostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::FragmentCycle(path) => {
                write!(
                    f,
                    "fragments must not spread themselves: {}",
                    path.join(" → ")
                )
            }
            Self::FragmentsTooDeep => write!(
                f,
                "fragments are spread inside each other more than {MAX_FRAGMENT_NESTING} deep"
            ),
        }
    }
}

impl CostModel {
    /// The model of the schema whose SDL this is; `max_page` is what a `first` given as a
    /// variable without a value may ask for.
    ///
    /// # Errors
    /// When the SDL does not parse.
    pub fn from_sdl(sdl: &str, max_page: u64) -> Result<Self, parser::Error> {
        let document = parser::parse_schema(sdl)?;
        let mut model = Self {
            types: HashMap::new(),
            query: "Query".to_owned(),
            mutation: None,
            subscription: None,
            max_page,
        };
        let mut mutation = None;
        let mut subscription = None;
        for definition in document.definitions {
            match definition {
                TypeSystemDefinition::Schema(schema) => {
                    let schema = schema.node;
                    if let Some(query) = schema.query {
                        model.query = query.node.to_string();
                    }
                    mutation = schema.mutation.map(|n| n.node.to_string());
                    subscription = schema.subscription.map(|n| n.node.to_string());
                }
                TypeSystemDefinition::Type(ty) => {
                    let ty = ty.node;
                    let fields = match ty.kind {
                        TypeKind::Object(object) => object.fields,
                        TypeKind::Interface(interface) => interface.fields,
                        _ => continue,
                    };
                    let shapes = fields
                        .into_iter()
                        .map(|field| {
                            let field = field.node;
                            let page = field
                                .arguments
                                .iter()
                                .find(|arg| arg.node.name.node == "first")
                                .map(|arg| match &arg.node.default_value {
                                    Some(value) => page_number(&value.node).unwrap_or(max_page),
                                    // No default in the schema (so `last` can be given
                                    // alone): the resolver's default page.
                                    None => max_page.min(DEFAULT_PAGE_SIZE as u64),
                                });
                            let (ty, list) = named_type(&field.ty.node.base);
                            let by_ids = list
                                && page.is_none()
                                && field.arguments.iter().any(|arg| {
                                    arg.node.name.node == "ids"
                                        && named_type(&arg.node.ty.node.base).1
                                });
                            let shape = FieldShape {
                                ty,
                                list,
                                page,
                                by_ids,
                                introspection_list: false,
                                nullable: field.ty.node.nullable,
                            };
                            (field.name.node.to_string(), shape)
                        })
                        .collect();
                    model.types.insert(ty.name.node.to_string(), shapes);
                }
                TypeSystemDefinition::Directive(_) => {}
            }
        }
        model.mutation = mutation.or_else(|| {
            model
                .types
                .contains_key("Mutation")
                .then(|| "Mutation".to_owned())
        });
        model.subscription = subscription.or_else(|| {
            model
                .types
                .contains_key("Subscription")
                .then(|| "Subscription".to_owned())
        });
        model.add_introspection();
        Ok(model)
    }

    /// Whether the schema lets the field at `pos` in `document` (where an error's location
    /// points) be null; `None` when no field of the schema is there.
    pub fn nullable_at(&self, document: &ExecutableDocument, pos: parser::Pos) -> Option<bool> {
        document.operations.iter().find_map(|(_, operation)| {
            let root = match operation.node.ty {
                OperationType::Query => Some(&self.query),
                OperationType::Mutation => self.mutation.as_ref(),
                OperationType::Subscription => self.subscription.as_ref(),
            }?;
            self.nullable_in(document, &operation.node.selection_set.node, root, pos, 0)
        })
    }

    fn nullable_in(
        &self,
        document: &ExecutableDocument,
        set: &SelectionSet,
        ty: &str,
        pos: parser::Pos,
        nesting: usize,
    ) -> Option<bool> {
        if nesting > MAX_FRAGMENT_NESTING {
            return None;
        }
        set.items.iter().find_map(|item| match &item.node {
            Selection::Field(field) => {
                let shape = self.types.get(ty)?.get(field.node.name.node.as_str())?;
                if field.pos == pos {
                    return Some(shape.nullable);
                }
                let inner = &field.node.selection_set.node;
                self.nullable_in(document, inner, &shape.ty, pos, nesting)
            }
            Selection::InlineFragment(fragment) => {
                let on = fragment.node.type_condition.as_ref();
                let ty = on.map_or(ty, |condition| condition.node.on.node.as_str());
                let inner = &fragment.node.selection_set.node;
                self.nullable_in(document, inner, ty, pos, nesting + 1)
            }
            Selection::FragmentSpread(spread) => {
                let fragment = document.fragments.get(&spread.node.fragment_name.node)?;
                let ty = fragment.node.type_condition.node.on.node.as_str();
                let inner = &fragment.node.selection_set.node;
                self.nullable_in(document, inner, ty, pos, nesting + 1)
            }
        })
    }

    /// The introspection types, which the SDL leaves out: their object and list fields.
    fn add_introspection(&mut self) {
        const FIELDS: [(&str, &str, &str, bool); 16] = [
            ("__Schema", "types", "__Type", true),
            ("__Schema", "queryType", "__Type", false),
            ("__Schema", "mutationType", "__Type", false),
            ("__Schema", "subscriptionType", "__Type", false),
            ("__Schema", "directives", "__Directive", true),
            ("__Type", "fields", "__Field", true),
            ("__Type", "interfaces", "__Type", true),
            ("__Type", "possibleTypes", "__Type", true),
            ("__Type", "enumValues", "__EnumValue", true),
            ("__Type", "inputFields", "__InputValue", true),
            ("__Type", "ofType", "__Type", false),
            ("__Field", "args", "__InputValue", true),
            ("__Field", "type", "__Type", false),
            ("__InputValue", "type", "__Type", false),
            ("__Directive", "args", "__InputValue", true),
            ("__EnumValue", "name", "String", false),
        ];
        for (parent, field, ty, list) in FIELDS {
            let shape = FieldShape {
                ty: ty.to_owned(),
                list,
                page: None,
                by_ids: false,
                introspection_list: list,
                nullable: false,
            };
            self.types
                .entry(parent.to_owned())
                .or_default()
                .insert(field.to_owned(), shape);
        }
        let root = self.types.entry(self.query.clone()).or_default();
        for (field, ty) in [("__schema", "__Schema"), ("__type", "__Type")] {
            root.insert(
                field.to_owned(),
                FieldShape {
                    ty: ty.to_owned(),
                    list: false,
                    page: None,
                    by_ids: false,
                    introspection_list: false,
                    nullable: false,
                },
            );
        }
    }

    /// Measures `document` as a request that selects `operation_name` will run it.
    ///
    /// `cost` is the selected operation's, measured with its own variable definitions and the
    /// request's `variables`; when no single operation is selected (async-graphql then refuses
    /// to run any), it is every operation's with each variable page at the largest page. The
    /// rest (fields, depth, aliases, directives, introspection nesting) covers every operation
    /// and fragment definition, since validation visits them all.
    ///
    /// # Errors
    /// A fragment cycle, or fragments nested too deep.
    pub fn measure(
        &self,
        document: &ExecutableDocument,
        variables: &Variables,
        operation_name: Option<&str>,
    ) -> Result<Cost, CostError> {
        // Every operation, every variable page at the largest page: one memo serves all.
        let mut walker = Walker::new(self, document, variables, None);
        let mut total = Cost::default();
        for (_, operation) in document.operations.iter() {
            total.absorb(walker.operation(&operation.node)?);
        }
        // Validation also walks each fragment definition on its own, expanding its spreads:
        // that work is counted (as fields), though it adds nothing to the response.
        for name in document.fragments.keys() {
            let fragment = walker.fragment(name.as_str(), None)?;
            total.fields = total.fields.saturating_add(fragment.fields);
        }
        if let Some(operation) = selected(document, operation_name) {
            // Its own variables only: another operation's defaults say nothing about it.
            let own: HashMap<&str, Option<&ConstValue>> = operation
                .variable_definitions
                .iter()
                .map(|definition| {
                    let definition = &definition.node;
                    (
                        definition.name.node.as_str(),
                        definition.default_value.as_ref().map(|value| &value.node),
                    )
                })
                .collect();
            let mut walker = Walker::new(self, document, variables, Some(own));
            let cost = walker.operation(operation)?;
            total.cost = cost.cost;
            total.schema_fields = cost.schema_fields;
        }
        Ok(total)
    }
}

/// The operation a request naming `operation_name` runs, if it names one that exists or the
/// document has only one.
pub fn selected<'a>(
    document: &'a ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<&'a OperationDefinition> {
    match (&document.operations, operation_name) {
        (DocumentOperations::Single(op), _) => Some(&op.node),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name).map(|op| &op.node),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().map(|op| &op.node)
        }
        _ => None,
    }
}

/// The named type under lists and non-nulls, and whether there was a list.
fn named_type(base: &BaseType) -> (String, bool) {
    match base {
        BaseType::Named(name) => (name.to_string(), false),
        BaseType::List(inner) => (named_type(&inner.base).0, true),
    }
}

fn page_number(value: &ConstValue) -> Option<u64> {
    match value {
        ConstValue::Number(n) => Some(n.as_i64().map_or(0, |n| n.max(0) as u64)),
        _ => None,
    }
}

struct Walker<'a> {
    model: &'a CostModel,
    document: &'a ExecutableDocument,
    variables: &'a Variables,
    /// The variables the measured operation declares, with their defaults; `None` measures
    /// every variable page at the largest page.
    declared: Option<HashMap<&'a str, Option<&'a ConstValue>>>,
    /// Each fragment's cost, per page size of the field it is spread directly under.
    memo: HashMap<(&'a str, Option<u64>), Cost>,
    /// The fragments being measured, outermost first.
    active: Vec<&'a str>,
}

impl<'a> Walker<'a> {
    fn new(
        model: &'a CostModel,
        document: &'a ExecutableDocument,
        variables: &'a Variables,
        declared: Option<HashMap<&'a str, Option<&'a ConstValue>>>,
    ) -> Self {
        Self {
            model,
            document,
            variables,
            declared,
            memo: HashMap::new(),
            active: Vec::new(),
        }
    }

    fn operation(&mut self, operation: &'a OperationDefinition) -> Result<Cost, CostError> {
        let root = match operation.ty {
            OperationType::Query => Some(self.model.query.as_str()),
            OperationType::Mutation => self.model.mutation.as_deref(),
            OperationType::Subscription => self.model.subscription.as_deref(),
        };
        let mut cost = self.selection_set(&operation.selection_set.node, root, None)?;
        cost.cost = cost.cost.saturating_add(operation.directives.len() as u64);
        Ok(cost)
    }

    /// The cost of `set` selected on the type `ty` (unknown: every field counts 1 and
    /// validation will refuse it), whose list fields hold `page` items each.
    fn selection_set(
        &mut self,
        set: &'a SelectionSet,
        ty: Option<&'a str>,
        page: Option<u64>,
    ) -> Result<Cost, CostError> {
        let mut total = Cost::default();
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => total.absorb(self.field(&field.node, ty, page)?),
                Selection::InlineFragment(fragment) => {
                    let fragment = &fragment.node;
                    let ty = fragment
                        .type_condition
                        .as_ref()
                        .map_or(ty, |condition| Some(condition.node.on.node.as_str()));
                    let mut cost = self.selection_set(&fragment.selection_set.node, ty, page)?;
                    cost.cost = cost.cost.saturating_add(fragment.directives.len() as u64);
                    total.absorb(cost);
                }
                Selection::FragmentSpread(spread) => {
                    let spread = &spread.node;
                    let mut cost = self.fragment(spread.fragment_name.node.as_str(), page)?;
                    cost.cost = cost.cost.saturating_add(spread.directives.len() as u64);
                    total.absorb(cost);
                }
            }
        }
        Ok(total)
    }

    fn fragment(&mut self, name: &'a str, page: Option<u64>) -> Result<Cost, CostError> {
        if let Some(cost) = self.memo.get(&(name, page)) {
            return Ok(*cost);
        }
        // An unknown fragment costs nothing here; validation refuses it.
        let Some(definition) = self.document.fragments.get(name) else {
            return Ok(Cost::default());
        };
        if let Some(start) = self.active.iter().position(|active| *active == name) {
            let mut path: Vec<String> =
                self.active[start..].iter().map(|n| n.to_string()).collect();
            path.push(name.to_owned());
            return Err(CostError::FragmentCycle(path));
        }
        if self.active.len() >= MAX_FRAGMENT_NESTING {
            return Err(CostError::FragmentsTooDeep);
        }
        self.active.push(name);
        let ty = definition.node.type_condition.node.on.node.as_str();
        let cost = self.selection_set(&definition.node.selection_set.node, Some(ty), page);
        self.active.pop();
        let cost = cost?;
        self.memo.insert((name, page), cost);
        Ok(cost)
    }

    fn field(
        &mut self,
        field: &'a Field,
        parent: Option<&'a str>,
        page: Option<u64>,
    ) -> Result<Cost, CostError> {
        let shape = parent
            .and_then(|parent| self.model.types.get(parent))
            .and_then(|fields| fields.get(field.name.node.as_str()));
        let own_page =
            shape.and_then(|shape| shape.page.map(|default| self.page_size(field, default)));
        let multiplier = match shape {
            Some(shape) if shape.by_ids => self.id_count(field),
            Some(shape) if shape.list => own_page.or(page).unwrap_or(1),
            _ => 1,
        };
        let children = if field.selection_set.node.items.is_empty() {
            Cost::default()
        } else {
            let ty = shape.map(|shape| shape.ty.as_str());
            self.selection_set(&field.selection_set.node, ty, own_page)?
        };
        let directives = field.directives.len() as u64;
        Ok(Cost {
            cost: (1 + directives).saturating_add(multiplier.saturating_mul(children.cost)),
            fields: 1 + children.fields,
            depth: 1 + children.depth,
            aliases: u64::from(field.alias.is_some()) + children.aliases,
            schema_fields: children.schema_fields
                + u64::from(shape.is_some_and(|shape| shape.ty == "__Schema")),
            directives_per_field: children
                .directives_per_field
                .max(u32::try_from(directives).unwrap_or(u32::MAX)),
            introspection_nesting: children.introspection_nesting
                + u32::from(shape.is_some_and(|shape| shape.introspection_list)),
        })
    }

    /// The page size a paginated field asks for: its `first` (or `last`), the variable's
    /// value (or default) when it is one, the field's default when absent or null, and the
    /// largest page when it cannot be known. Never more than the largest page (the resolver
    /// refuses more).
    fn page_size(&self, field: &Field, default: u64) -> u64 {
        let max = self.model.max_page;
        let size = match self.argument(field, &["first", "last"]) {
            // A null: the field's default.
            None | Some(Ok(ConstValue::Null)) => default,
            Some(Ok(value)) => page_number(&value).unwrap_or(max),
            Some(Err(())) => max,
        };
        size.min(max)
    }

    /// How many ids a field that lists what its `ids` name (`nodes`) is given: the list's
    /// length, or the largest page when it cannot be known. Never more than the largest page
    /// (the resolver refuses more).
    fn id_count(&self, field: &Field) -> u64 {
        let max = self.model.max_page;
        match self.argument(field, &["ids"]) {
            Some(Ok(ConstValue::List(ids))) => (ids.len() as u64).min(max),
            // A single id is coerced to a list of one.
            Some(Ok(ConstValue::String(_))) => 1,
            None | Some(Ok(ConstValue::Null)) => 0,
            Some(_) => max,
        }
    }

    /// The value of the first of `names` that `field` is given: the variable's value (or
    /// default) when it is one, null for a declared variable without either, and `Err` when it
    /// cannot be known (a variable the operation does not declare, which validation refuses).
    fn argument(&self, field: &Field, names: &[&str]) -> Option<Result<ConstValue, ()>> {
        let value = field
            .arguments
            .iter()
            .find(|(name, _)| names.contains(&name.node.as_str()))
            .map(|(_, value)| &value.node)?;
        Some(value.clone().into_const_with(|name| {
            let declared = self.declared.as_ref().ok_or(())?;
            let default = *declared.get(name.as_str()).ok_or(())?;
            Ok(self
                .variables
                .get(&name)
                .or(default)
                .cloned()
                .unwrap_or(ConstValue::Null))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> CostModel {
        CostModel::from_sdl(&crate::graphql::sdl(), 100).expect("our SDL parses")
    }

    fn measure(query: &str, variables: serde_json::Value) -> Result<Cost, CostError> {
        let document = parser::parse_query(query).expect("the test document parses");
        model().measure(&document, &Variables::from_json(variables), None)
    }

    fn cost(query: &str) -> u64 {
        measure(query, serde_json::json!({})).unwrap().cost
    }

    #[test]
    fn nodes_cost_as_many_times_as_ids_are_given() {
        // nodes 1 + 3 × (id 1 + name 1).
        assert_eq!(
            cost(r#"{ nodes(ids: ["a", "b", "c"]) { id ... on Product { name } } }"#),
            7
        );
        assert_eq!(cost(r#"{ nodes(ids: "a") { id } }"#), 2);
        let q = "query($ids: [ID!]!) { nodes(ids: $ids) { id } }";
        let cost_with = |ids| measure(q, serde_json::json!({ "ids": ids })).unwrap().cost;
        assert_eq!(cost_with(serde_json::json!(["a", "b"])), 1 + 2);
        // More ids than the resolver takes cost the most it takes.
        let many: Vec<String> = (0..500).map(|i| i.to_string()).collect();
        assert_eq!(cost_with(serde_json::json!(many)), 1 + 100);
        // A page inside each node multiplies in.
        assert_eq!(
            cost(
                r#"{ nodes(ids: ["a", "b"]) { ... on Product { history(first: 10) { nodes { id } } } } }"#
            ),
            1 + 2 * (1 + (1 + 10))
        );
    }

    #[test]
    fn fields_cost_one_and_list_children_are_multiplied_by_the_page_size() {
        assert_eq!(cost("{ __typename }"), 1);
        assert_eq!(cost(r#"{ product(id: "x") { id name } }"#), 3);
        // products 1 + totalCount 1 + nodes (1 + 20 × name 1) + pageInfo (1 + 1).
        assert_eq!(
            cost("{ products { totalCount nodes { name } pageInfo { hasNextPage } } }"),
            1 + 1 + (1 + 20) + (1 + 1)
        );
        // edges × 100: (cursor + node (1 + 2)) per edge.
        assert_eq!(
            cost("{ products(first: 100) { edges { cursor node { id name } } } }"),
            1 + 1 + 100 * (1 + 1 + 2)
        );
        // The page size from a variable, from its default, or (none) the field's default.
        let q = "query($n: Int) { products(first: $n) { nodes { id } } }";
        assert_eq!(measure(q, serde_json::json!({"n": 5})).unwrap().cost, 2 + 5);
        assert_eq!(measure(q, serde_json::json!({})).unwrap().cost, 2 + 20);
        assert_eq!(
            measure(q, serde_json::json!({"n": null})).unwrap().cost,
            2 + 20
        );
        // A variable the operation does not declare: the largest page.
        let undeclared = "{ products(first: $n) { nodes { id } } }";
        assert_eq!(
            measure(undeclared, serde_json::json!({"n": 5}))
                .unwrap()
                .cost,
            2 + 100
        );
        let q = "query($n: Int = 7) { users(first: $n) { nodes { id } } }";
        assert_eq!(measure(q, serde_json::json!({})).unwrap().cost, 2 + 7);
        // More than the largest page is refused by the resolver; it costs the largest page.
        assert_eq!(
            cost("{ products(first: 100000) { nodes { id } } }"),
            2 + 100
        );
    }

    #[test]
    fn each_operation_is_measured_with_its_own_variables_and_the_selected_one_counts() {
        let pages = |n: &str| {
            (0..30)
                .map(|i| format!("a{i}: products(first: {n}) {{ nodes {{ id ...P }} }}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let both = format!(
            "query D($n: Int = 1) {{ products(first: $n) {{ totalCount ...C }} }}
             query B($n: Int = 100) {{ {} }}
             query N($n: Int) {{ {} }}
             fragment C on ProductConnection {{ nodes {{ id }} }}
             fragment P on Product {{ name }}",
            pages("$n"),
            pages("$n")
        );
        let document = parser::parse_query(&both).unwrap();
        let model = model();
        let cost = |name: Option<&str>, variables: serde_json::Value| {
            model
                .measure(
                    &document,
                    &Variables::from_json(variables),
                    Some(name).flatten(),
                )
                .unwrap()
                .cost
        };
        // B with its own default, 100, not D's 1: 30 × (2 + 100 × 2).
        assert_eq!(cost(Some("B"), serde_json::json!({})), 30 * (2 + 100 * 2));
        // N declares no default: the field's default, 20, not D's 1.
        assert_eq!(cost(Some("N"), serde_json::json!({})), 30 * (2 + 20 * 2));
        assert_eq!(
            cost(Some("N"), serde_json::json!({"n": 3})),
            30 * (2 + 3 * 2)
        );
        // D with its own: products + totalCount + nodes (1 + 1 × id).
        assert_eq!(cost(Some("D"), serde_json::json!({})), 4);
        // None selected (async-graphql runs none): every operation at the largest page.
        let all = cost(None, serde_json::json!({}));
        assert_eq!(all, (3 + 100) + 2 * 30 * (2 + 100 * 2));
    }

    #[test]
    fn the_readme_products_page_costs_106() {
        let page = "query ProductsPage { products(first: 20) { totalCount
            edges { cursor node { id name price } } pageInfo { hasNextPage endCursor } } }";
        assert_eq!(cost(page), 106);
    }

    #[test]
    fn fragments_aliases_and_directives_count_where_they_are_used() {
        let q = "{ a: products(first: 10) { ...Page } b: products(first: 2) { ...Page } }
                 fragment Page on ProductConnection { nodes { ...P @include(if: true) } }
                 fragment P on Product { id name @skip(if: false) }";
        let c = measure(q, serde_json::json!({})).unwrap();
        // Each use: products 1 + nodes (1 + n × (spread directive 1 + id 1 + name 2)).
        assert_eq!(c.cost, (2 + 10 * 4) + (2 + 2 * 4));
        assert_eq!(c.aliases, 2);
        assert_eq!(c.depth, 3);
        assert_eq!(c.directives_per_field, 1);
    }

    /// `{ ...F0 }` where each of `levels` fragments spreads the next `spreads` times, the last
    /// one holding `__typename`: `spreads^levels` fields once expanded.
    fn spreading_chain(levels: usize, spreads: usize) -> String {
        let mut query = String::from("{ ...F0 }\n");
        for i in 0..levels {
            let spread = format!(" ...F{}", i + 1).repeat(spreads);
            query.push_str(&format!("fragment F{i} on Query {{{spread} }}\n"));
        }
        query.push_str(&format!("fragment F{levels} on Query {{ __typename }}\n"));
        query
    }

    #[test]
    fn nested_double_spreading_fragments_are_measured_in_linear_time() {
        // F0 spreads F1 twice, F1 spreads F2 twice, …: 2^30 `__typename`s once expanded.
        let document = parser::parse_query(spreading_chain(30, 2)).unwrap();
        let model = model();
        let started = std::time::Instant::now();
        let c = model
            .measure(&document, &Variables::default(), None)
            .unwrap();
        // Printed for the record (`--nocapture`), never asserted.
        eprintln!(
            "30 double-spreading fragments measured in {:?}",
            started.elapsed()
        );
        assert_eq!(c.cost, 1 << 30);
        // The operation's fields plus each fragment's own expansion (2^30 + 2^29 + … + 1).
        assert_eq!(c.fields, (1 << 30) + ((1u64 << 31) - 1));
        assert_eq!(c.depth, 1);
        // Tripling 60 times saturates instead of overflowing.
        assert_eq!(
            measure(&spreading_chain(60, 3), serde_json::json!({}))
                .unwrap()
                .cost,
            u64::MAX
        );
        // A chain of fragments deeper than 64 is refused.
        assert_eq!(
            measure(&spreading_chain(200, 3), serde_json::json!({})),
            Err(CostError::FragmentsTooDeep)
        );
    }

    #[test]
    fn fragment_cycles_are_refused_even_when_unused() {
        let q = "{ ...A } fragment A on Query { ...B } fragment B on Query { __typename ...A }";
        assert_eq!(
            measure(q, serde_json::json!({})),
            Err(CostError::FragmentCycle(vec![
                "A".into(),
                "B".into(),
                "A".into()
            ]))
        );
        let unused = "{ __typename } fragment C on Query { ...C }";
        assert!(matches!(
            measure(unused, serde_json::json!({})),
            Err(CostError::FragmentCycle(_))
        ));
    }

    #[test]
    fn introspection_lists_count_once_and_their_nesting_is_measured() {
        let c = measure(
            "{ __schema { types { fields { args { name } } } } }",
            serde_json::json!({}),
        )
        .unwrap();
        assert_eq!(c.cost, 5);
        assert_eq!(c.introspection_nesting, 3);
        let c = measure(
            "{ __schema { types { fields { type { fields { name } } } } } }",
            serde_json::json!({}),
        )
        .unwrap();
        assert_eq!(c.introspection_nesting, 3);
        let c = measure(
            "{ __schema { types { fields { type { fields { args { name } } } } } } }",
            serde_json::json!({}),
        )
        .unwrap();
        assert_eq!(c.introspection_nesting, 4);
        // `__schema` fields are counted, through fragments too.
        let c = measure(
            "{ a: __schema { queryType { name } } ...S } fragment S on Query { __schema { types { name } } }",
            serde_json::json!({}),
        )
        .unwrap();
        assert_eq!(c.schema_fields, 2);
    }

    #[test]
    fn batches_add_up_and_keep_the_deepest_depth() {
        let one = measure("{ products { nodes { id } } }", serde_json::json!({})).unwrap();
        let two = measure("{ __typename }", serde_json::json!({})).unwrap();
        let total = Cost::sum([one, two]);
        assert_eq!(total.cost, one.cost + two.cost);
        assert_eq!(total.depth, 3);
    }
}
