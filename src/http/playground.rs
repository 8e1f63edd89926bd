//! The GraphiQL playground page.

use async_graphql::http::GraphiQLSource;
use axum::response::Html;

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
pub fn page() -> Html<String> {
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
