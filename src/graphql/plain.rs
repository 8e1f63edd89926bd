//! A shorter way through async-graphql for an object whose selected fields are all plain: for
//! a product in a list, async-graphql boxes a future per field, runs them in a
//! `FuturesUnordered` and merges each result into the object; that was about 11,000
//! instructions per product of four fields, a third of a cache-off `products(first: 20)`
//! request (callgrind, docs/benchmarks.md). A field is plain when its value needs nothing but
//! the object: no arguments, no guard, no context, no failure. When every selection of an
//! object is such a field (or `__typename`), with no directive left on it and each response
//! key once, the object is built here, in the order of the selections, as async-graphql
//! builds it; otherwise (a fragment, a guarded field, a directive, a key twice) async-graphql
//! resolves it as before. No extension is registered on the schema (`build_schema` says so),
//! so no hook is skipped; an extension's `resolve` hook expects every field, so adding one
//! means removing this path.

use async_graphql::{
    ContextSelectionSet, Name, Positioned, Value,
    indexmap::{IndexMap, map::Entry},
    parser::types::{Field, Selection},
};

/// The object `ctx` selects, when every selection is a field that `field` answers (or
/// `__typename`, answered with `type_name`); `None` when one is not, and the caller resolves
/// the object the usual way. `field` is called once per selected field, in their order.
pub fn object<F>(ctx: &ContextSelectionSet<'_>, type_name: &str, mut field: F) -> Option<Value>
where
    F: FnMut(&ContextSelectionSet<'_>, &Positioned<Field>) -> Option<Value>,
{
    if !enabled() {
        return None;
    }
    let items = &ctx.item.node.items;
    let mut object: IndexMap<Name, Value> = IndexMap::with_capacity(items.len());
    for selection in items {
        let Selection::Field(selected) = &selection.node else {
            return None;
        };
        if !selected.node.directives.is_empty() {
            return None;
        }
        // async-graphql merges a key selected twice; that is left to it.
        let Entry::Vacant(slot) = object.entry(selected.node.response_key().node.clone()) else {
            return None;
        };
        slot.insert(if selected.node.name.node == "__typename" {
            Value::String(type_name.to_owned())
        } else {
            field(ctx, selected)?
        });
    }
    #[cfg(test)]
    HITS.with(|hits| hits.set(hits.get() + 1));
    // As async-graphql answers an object with nothing selected (every field skipped).
    Some(if object.is_empty() {
        Value::Null
    } else {
        Value::Object(object)
    })
}

/// An object that [`object`] may build: an edge builds its node through it.
pub trait Plain {
    /// This object as `ctx` selects it, when [`object`] can build it; `None` otherwise.
    fn plain(&self, ctx: &ContextSelectionSet<'_>) -> Option<Value>;
}

#[cfg(not(test))]
const fn enabled() -> bool {
    true
}

#[cfg(test)]
thread_local! {
    static DISABLED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// The objects built here on this thread (a test checks the path was taken).
    static HITS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
fn enabled() -> bool {
    !DISABLED.with(std::cell::Cell::get)
}

/// Runs `f` with this path off on this thread (async-graphql resolves every object), so a
/// test can compare the two answers.
#[cfg(test)]
pub fn without<T>(f: impl FnOnce() -> T) -> T {
    DISABLED.with(|disabled| disabled.set(true));
    let result = f();
    DISABLED.with(|disabled| disabled.set(false));
    result
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_graphql::{EmptyMutation, EmptySubscription, Object, Request, Schema, Variables};
    use chrono::{TimeZone, Utc};
    use uuid::Uuid;

    use super::{HITS, without};
    use crate::{
        catalog::{Filter, Listed, ProductQuery},
        entities::product,
        graphql::{
            node::Node,
            types::{Product, ProductConnection},
        },
        pagination::Page,
    };

    struct TestQuery(Vec<Arc<product::Model>>);

    #[Object]
    impl TestQuery {
        async fn product(&self) -> Product {
            self.0[0].clone().into()
        }

        async fn products(&self) -> ProductConnection {
            let list = Arc::new(ProductQuery::new(Vec::new(), Filter::default()).unwrap());
            let page = Page {
                items: self
                    .0
                    .iter()
                    .map(|product| Listed {
                        product: product.clone(),
                        relevance: None,
                    })
                    .collect(),
                has_next_page: true,
                has_previous_page: false,
                total_count: Some(3),
            };
            ProductConnection::of_list(page, &list)
        }

        async fn node(&self) -> Node {
            Node::Product(self.0[1].clone().into())
        }

        async fn nodes(&self) -> Vec<Node> {
            self.0
                .iter()
                .map(|p| Node::Product(p.clone().into()))
                .collect()
        }
    }

    fn products() -> Vec<Arc<product::Model>> {
        let at = |s| Utc.timestamp_opt(1_780_000_000 + s, 123_456_000).unwrap();
        [
            ("Plain mug", "A mug.", 1_250, 5, 1),
            (
                "Café \"crème\" ☕",
                "Line one\nline two\t\\ \u{1F600}",
                100_000_000_000,
                0,
                7,
            ),
            ("", "", 0, 2_147_483_647, 2_147_483_647),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, (name, description, price_cents, stock, version))| {
            Arc::new(product::Model {
                id: Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0000 + i as u128),
                name: name.to_owned(),
                name_search: name.to_lowercase(),
                description: description.to_owned(),
                price_cents,
                stock,
                created_by: None,
                created_at: at(i as i64),
                updated_at: at(1000 + i as i64),
                version,
            })
        })
        .collect()
    }

    /// The response's JSON (keys in order) and how many objects the short path built.
    fn run(
        schema: &Schema<TestQuery, EmptyMutation, EmptySubscription>,
        request: Request,
    ) -> (String, usize) {
        HITS.with(|hits| hits.set(0));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let response = runtime.block_on(schema.execute(request));
        assert!(response.errors.is_empty(), "{:?}", response.errors);
        (
            serde_json::to_string(&response.data).unwrap(),
            HITS.with(std::cell::Cell::get),
        )
    }

    /// Every document answered with the short path on and off gives the same JSON, byte for
    /// byte (key order included); `built` is how many objects it should build itself.
    #[test]
    fn products_answer_as_async_graphql_answers_them() {
        let schema =
            Schema::build(TestQuery(products()), EmptyMutation, EmptySubscription).finish();
        let fields = "id name description price stock createdAt updatedAt version __typename";
        let cases: Vec<(String, serde_json::Value, usize)> = vec![
            // Edges and their nodes: 3 + 3 objects.
            (
                format!("{{ products {{ edges {{ cursor node {{ {fields} }} }} }} }}"),
                serde_json::json!({}),
                6,
            ),
            (
                "{ products { edges { __typename cursor } } }".into(),
                serde_json::json!({}),
                3,
            ),
            (
                format!("{{ products {{ nodes {{ {fields} }} totalCount }} }}"),
                serde_json::json!({}),
                3,
            ),
            (
                "{ product { version stock id } }".into(),
                serde_json::json!({}),
                1,
            ),
            (
                "{ products { edges { node { a: id b: name id n: stock price: version } } } }"
                    .into(),
                serde_json::json!({}),
                6,
            ),
            // An edge whose node async-graphql must resolve, or with `node` twice (merged):
            // async-graphql resolves the edge, and the nodes where they can be built here.
            (
                "{ products { edges { cursor node { ... on Product { id } } } } }".into(),
                serde_json::json!({}),
                0,
            ),
            // (3 nodes built before the second `node`, then 6 by async-graphql's edges.)
            (
                "{ products { edges { node { id } node { name } } } }".into(),
                serde_json::json!({}),
                9,
            ),
            // A key twice, a fragment: async-graphql's own way.
            (
                "{ product { id id name } }".into(),
                serde_json::json!({}),
                0,
            ),
            (
                "{ product { ...F name } } fragment F on Product { id price }".into(),
                serde_json::json!({}),
                0,
            ),
            (
                "{ product { ... on Product { id } ... on Node { id } ... { stock } } }".into(),
                serde_json::json!({}),
                0,
            ),
            // @skip and @include are gone before execution (kept or not).
            (
                "{ product { id name @include(if: true) } }".into(),
                serde_json::json!({}),
                1,
            ),
            (
                "query($s: Boolean!) { product { id @skip(if: $s) name @include(if: $s) } }".into(),
                serde_json::json!({"s": true}),
                1,
            ),
            (
                "query($s: Boolean!) { product { id @skip(if: $s) name @include(if: $s) } }".into(),
                serde_json::json!({"s": false}),
                1,
            ),
            (
                "{ product { id @skip(if: true) } }".into(),
                serde_json::json!({}),
                1,
            ),
            // Through the Node interface, async-graphql resolves the object.
            (
                "{ node { id ... on Product { name } } nodes { __typename id } }".into(),
                serde_json::json!({}),
                0,
            ),
        ];
        for (query, variables, built) in cases {
            let request =
                || Request::new(&query).variables(Variables::from_json(variables.clone()));
            let (short, hits) = run(&schema, request());
            let (derived, none) = without(|| run(&schema, request()));
            assert_eq!(short, derived, "{query}");
            assert_eq!(hits, built, "objects built by the short path for {query}");
            assert_eq!(none, 0, "{query}");
        }
        // Ids and prices as the rest of the API writes them.
        let (json, _) = run(&schema, Request::new("{ products { nodes { id price } } }"));
        let expected: Vec<_> = products()
            .iter()
            .map(|p| {
                let price = format!("{}.{:02}", p.price_cents / 100, p.price_cents % 100);
                serde_json::json!({"id": p.id.to_string(), "price": price})
            })
            .collect();
        assert_eq!(
            json,
            serde_json::json!({"products": {"nodes": expected}}).to_string()
        );
    }
}
