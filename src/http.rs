//! The HTTP surface: GraphQL at `POST /graphql`, the GraphiQL playground at `GET /graphql`
//! and `GET /`.

use std::sync::Arc;

use async_graphql::{Name, PathSegment, Value, http::GraphiQLSource};
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::{
    Router,
    extract::State,
    http::HeaderMap,
    response::{Html, IntoResponse},
    routing::get,
};
use tower_http::{catch_panic::CatchPanicLayer, limit::RequestBodyLimitLayer, trace::TraceLayer};

use crate::{app::AppState, auth::Viewer, graphql::AppSchema};

/// The largest request body accepted; larger ones get HTTP 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
struct HttpState {
    schema: AppSchema,
    app: Arc<AppState>,
}

/// The router with every route and layer.
pub fn router(schema: AppSchema, app: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(playground))
        .route("/graphql", get(playground).post(graphql))
        .with_state(HttpState { schema, app })
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(CatchPanicLayer::new())
        .layer(TraceLayer::new_for_http())
}

/// Executes one GraphQL request as the caller its `Authorization` header names.
async fn graphql(
    State(state): State<HttpState>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> GraphQLResponse {
    let viewer = Viewer::from_headers(&headers, &state.app.tokens);
    let mut response = state
        .schema
        .execute(request.into_inner().data(viewer))
        .await;
    for error in &mut response.errors {
        // Errors raised by the engine itself (syntax, validation, argument types) carry no code;
        // they are all faults in the request, so a client can branch on one code.
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            extensions.set("code", "BAD_USER_INPUT");
        }
        null_at_error_path(&mut response.data, &error.path);
    }
    response.into()
}

/// Puts the `null` that the GraphQL spec requires where a field failed.
///
/// async-graphql 7 leaves a failed nullable field out of its parent object instead of setting
/// it to null; the first missing key along the error's path is where the null belongs (the
/// nearest nullable ancestor, since non-null failures remove their parents too).
fn null_at_error_path(data: &mut Value, path: &[PathSegment]) {
    let mut current = data;
    for segment in path {
        current = match (current, segment) {
            (Value::Object(fields), PathSegment::Field(name)) => {
                let key = Name::new(name);
                if !fields.contains_key(&key) {
                    fields.insert(key, Value::Null);
                    return;
                }
                match fields.get_mut(&key) {
                    Some(next) => next,
                    None => return,
                }
            }
            (Value::List(items), PathSegment::Index(index)) => match items.get_mut(*index) {
                Some(next) => next,
                None => return,
            },
            _ => return,
        };
    }
}

const EXAMPLE_QUERY: &str = r#"# Welcome to Storefront.
#
# 1. Run the login mutation below (or register) and copy `accessToken`.
# 2. Open the Headers pane (bottom) and paste:
#      {"Authorization": "Bearer <accessToken>"}
# 3. Run the products query.

mutation Login {
  login(input: { username: "admin", password: "your password" }) {
    accessToken
    account { username role }
  }
}

query Products {
  products(first: 10) {
    totalCount
    edges { cursor node { id name price stock } }
    pageInfo { hasNextPage endCursor }
  }
}
"#;

/// The GraphiQL page, opening on an example session and an explanation of the header pane.
async fn playground() -> impl IntoResponse {
    Html(playground_html())
}

fn playground_html() -> String {
    let example = serde_json::to_string(EXAMPLE_QUERY).unwrap_or_default();
    GraphiQLSource::build()
        .endpoint("/graphql")
        .title("Storefront GraphiQL")
        .finish()
        .replace(
            "defaultEditorToolsVisibility: true,",
            &format!("defaultEditorToolsVisibility: true,\n          defaultQuery: {example},"),
        )
}

#[cfg(test)]
mod tests {
    #[test]
    fn playground_opens_with_the_example_session() {
        let html = super::playground_html();
        assert!(
            html.contains("defaultQuery: \"# Welcome to Storefront."),
            "{html}"
        );
        assert!(html.contains("'/graphql'"));
    }
}
