use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::kit::*;

/// The introspection query GraphiQL and most clients send (graphql-js `getIntrospectionQuery`).
const INTROSPECTION: &str = r#"
query IntrospectionQuery {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) {
    name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason
  }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name
    ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }
}
"#;

fn aliases(count: usize, field: &str) -> String {
    let fields: Vec<String> = (0..count).map(|i| format!("a{i}: {field}")).collect();
    format!("{{ {} }}", fields.join(" "))
}

#[tokio::test]
async fn the_standard_introspection_query_fits_within_the_limits() {
    let app = TestApp::spawn().await;
    app.anonymous()
        .query(INTROSPECTION, json!({}))
        .await
        .assert_ok();
}

#[tokio::test]
async fn deep_queries_are_refused() {
    let app = TestApp::spawn().await;
    let mut query = String::from("name");
    for _ in 0..16 {
        query = format!("ofType {{ {query} }}");
    }
    let query = format!("{{ __type(name: \"Product\") {{ {query} }} }}");
    let r = app.anonymous().query(&query, json!({})).await;
    assert_eq!(r.codes(), ["QUERY_TOO_COMPLEX"], "{r}");
    assert!(r.text.contains("18 deep; the limit is 15"), "{r}");
    assert!(
        r.is_request_error(),
        "a request error has no data entry: {r}"
    );
}

#[tokio::test]
async fn aliases_are_counted_and_101_of_one_field_are_refused() {
    let app = TestApp::spawn().await;
    let anonymous = app.anonymous();
    anonymous
        .query(&aliases(30, "__typename"), json!({}))
        .await
        .assert_ok();
    for count in [31, 101] {
        let r = anonymous
            .query(&aliases(count, "__typename"), json!({}))
            .await;
        assert_eq!(r.codes(), ["QUERY_TOO_COMPLEX"], "{count}: {r}");
        assert!(
            r.text.contains(&format!("{count} aliases; at most 30")),
            "{r}"
        );
    }
    // 101 aliased sign-ins in one document: refused before any runs.
    let login = r#"login(input:{username:"someone", password:"guess guess"}){ accessToken }"#;
    let r = anonymous
        .query(&format!("mutation {}", aliases(101, login)), json!({}))
        .await;
    assert_eq!(r.codes(), ["QUERY_TOO_COMPLEX"], "{r}");
    assert!(r.text.contains("101 aliases"), "{r}");
}

#[tokio::test]
async fn complexity_counts_every_field_including_aliases_in_fragments() {
    let app = TestApp::builder().max_aliases(2000).spawn().await;
    let anonymous = app.anonymous();
    // Each `product(id:) { id }` costs 2: 1000 of them fit in 2000, 1001 do not.
    let field = r#"product(id: "x") { id }"#;
    let r = anonymous.query(&aliases(1000, field), json!({})).await;
    assert!(
        r.body.get("data").is_some() && !r.codes().contains(&"QUERY_TOO_COMPLEX"),
        "{r:.300}"
    );
    let r = anonymous.query(&aliases(1001, field), json!({})).await;
    assert_eq!(r.codes(), ["QUERY_TOO_COMPLEX"], "{r:.300}");
    assert!(r.is_request_error());
    assert!(r.text.contains("costs 2002; the limit is 2000"), "{r:.300}");
    // A fragment spread many times counts each time: 251 × (1 + 7) = 2008.
    let fields: Vec<String> = (0..251)
        .map(|i| format!("f{i}: product(id: \"x\") {{ ...F }}"))
        .collect();
    let query = format!(
        "{{ {} }} fragment F on Product {{ id name description price stock createdAt updatedAt }}",
        fields.join(" ")
    );
    let r = anonymous.query(&query, json!({})).await;
    assert_eq!(r.codes(), ["QUERY_TOO_COMPLEX"], "{r:.300}");
    assert_eq!(r.error().extension("cost"), 2008, "{r:.300}");
}

#[tokio::test]
async fn too_many_directives_on_a_field_are_refused() {
    let app = TestApp::spawn().await;
    let anonymous = app.anonymous();
    let ok = format!("{{ __typename {} }}", "@skip(if: false) ".repeat(10));
    anonymous.query(&ok, json!({})).await.assert_ok();
    let too_many = format!("{{ __typename {} }}", "@skip(if: false) ".repeat(11));
    let r = anonymous.query(&too_many, json!({})).await;
    assert_eq!(r.codes(), ["QUERY_TOO_COMPLEX"], "{r}");
}

#[tokio::test]
async fn batches_are_capped_at_ten_operations() {
    let app = TestApp::spawn().await;
    let anonymous = app.anonymous();
    let batch =
        |n: usize| Value::Array((0..n).map(|_| json!({"query": "{ __typename }"})).collect());
    let r = anonymous.post(&batch(10)).await;
    assert_eq!(r.status, 200);
    let answers = r.batch();
    assert_eq!(answers.len(), 10);
    assert_eq!(answers[9].raw_data()["__typename"], "Query");
    for n in [11, 1000] {
        let r = anonymous.post(&batch(n)).await;
        assert_eq!(r.status, 400, "{n}");
        assert_eq!(r.codes(), ["BAD_REQUEST"]);
    }
    assert_eq!(anonymous.post(&json!([])).await.status, 400);
}

#[tokio::test]
async fn batching_can_be_turned_off() {
    let app = TestApp::builder().max_batch(0).spawn().await;
    let r = app
        .anonymous()
        .post(&json!([{"query": "{ __typename }"}]))
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn requests_running_past_the_timeout_are_cancelled() {
    let app = TestApp::builder()
        .request_timeout(Duration::from_millis(1))
        .spawn()
        .await;
    let r = app
        .anonymous()
        .register("slowpoke", "slow passphrase")
        .await;
    assert_eq!(r.status, 503, "{r}");
    assert_eq!(r.codes(), ["TIMEOUT"]);
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_and_the_limit_is_configurable() {
    let app = TestApp::spawn().await;
    let big = format!("{{ __typename }} # {}", "x".repeat(64 * 1024));
    let r = app.anonymous().post(&json!({ "query": big })).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.codes(), ["PAYLOAD_TOO_LARGE"]);

    let app = TestApp::builder().max_body_bytes(2048).spawn().await;
    let anonymous = app.anonymous();
    let r = anonymous
        .post(&json!({ "query": format!("{{ __typename }} # {}", "x".repeat(2048)) }))
        .await;
    assert_eq!(r.status, 413);
    let r = anonymous.post(&json!({ "query": "{ __typename }" })).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn mutations_only_over_post_and_queries_over_get() {
    let app = TestApp::spawn().await;
    let r = app.get_query("{ __typename }", "application/json").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.raw_data()["__typename"], "Query");
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );

    let register = r#"mutation { register(input:{username:"viaget", password:"via get passphrase"}){ accessToken } }"#;
    let r = app.get_query(register, "application/json").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    assert_eq!(r.codes(), ["METHOD_NOT_ALLOWED"]);
    // Nothing ran: the username is still free.
    app.user_with("viaget", "via get passphrase").await;

    let response = app.request(Method::PUT, "/graphql").send().await.unwrap();
    assert_eq!(response.status(), 405);
}

#[tokio::test]
async fn post_bodies_must_be_json_so_forms_cannot_forge_requests() {
    let app = TestApp::spawn().await;
    let register = r#"{"query":"mutation { register(input:{username:\"csrf\", password:\"csrf passphrase\"}){ accessToken } }"}"#;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
        Some("application/json; charset=iso-8859-1"),
    ] {
        let r = app.anonymous().post_raw(content_type, None, register).await;
        assert_eq!(r.status, 415, "{content_type:?}: {}", r.text);
    }
    // Nothing ran: the username is still free.
    app.user_with("csrf", "csrf passphrase").await;
}

#[tokio::test]
async fn responses_follow_the_accept_header() {
    let app = TestApp::spawn().await;
    let query = r#"{"query":"{ __typename }"}"#;
    for (accept, expected) in [
        (None, "application/json"),
        (Some("*/*"), "application/json"),
        (Some("application/json"), "application/json"),
        (
            Some("application/graphql-response+json"),
            "application/graphql-response+json",
        ),
        (
            Some("application/graphql-response+json, application/json;q=0.9"),
            "application/graphql-response+json",
        ),
    ] {
        let r = app
            .anonymous()
            .post_raw(Some("application/json"), accept, query)
            .await;
        assert_eq!(r.status, 200);
        let media = r.header("content-type").unwrap_or_default();
        assert!(media.starts_with(expected), "{accept:?} → {media}");
    }
    let r = app
        .anonymous()
        .post_raw(Some("application/json"), Some("text/html"), query)
        .await;
    assert_eq!(r.status, 406);
}

#[tokio::test]
async fn request_errors_get_400_in_the_graphql_response_format_and_200_in_plain_json() {
    let app = TestApp::spawn().await;
    let anonymous = app.anonymous();
    let json = Some("application/json");
    for (query, code) in [
        ("{", "GRAPHQL_PARSE_FAILED"),
        ("{ nosuchfield }", "GRAPHQL_VALIDATION_FAILED"),
    ] {
        let body = json!({"query": query}).to_string();
        for (accept, status) in [
            ("application/graphql-response+json", 400),
            ("application/json", 200),
        ] {
            let r = anonymous.post_raw(json, Some(accept), &body).await;
            assert_eq!(r.status, status, "{query} accepting {accept}");
            assert!(r.is_request_error(), "{r}");
            assert_eq!(r.codes(), [code], "{r}");
        }
    }
    // A field error is still a 200 with data in either format.
    let r = anonymous
        .post_raw(
            json,
            Some("application/graphql-response+json"),
            r#"{"query":"{ account { id } }"}"#,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.get("data"), Some(&Value::Null), "{r}");
    // Malformed JSON and ill-typed parameters are 400.
    for body in [
        "{",
        r#"{"query": 1}"#,
        r#"{"query":"{ __typename }","variables":"x"}"#,
        "[1]",
        "7",
    ] {
        let r = app
            .anonymous()
            .post_raw(Some("application/json"), None, body)
            .await;
        assert_eq!(r.status, 400, "{body}");
    }
}

/// A server with `APP_ENV=production` and `extra` variables: these tests are about what the
/// variables (and production's defaults) do.
async fn production_app(extra: &[(&'static str, &str)]) -> TestApp {
    let mut builder = TestApp::builder().env("APP_ENV", "production");
    for (name, value) in extra {
        builder = builder.env(name, value);
    }
    builder.spawn().await
}

#[tokio::test]
async fn production_turns_off_introspection_suggestions_and_the_playground() {
    let app = production_app(&[]).await;
    let anonymous = app.anonymous();
    let r = anonymous
        .query("{ __schema { types { name } } }", json!({}))
        .await;
    assert!(
        r.raw_data()["__schema"].is_null(),
        "introspection is off: {r}"
    );
    let r = anonymous
        .query("{ __type(name: \"Product\") { name } }", json!({}))
        .await;
    assert!(r.raw_data()["__type"].is_null(), "{r}");
    let r = anonymous
        .query("{ produts { totalCount } }", json!({}))
        .await;
    assert!(!r.text.contains("Did you mean"), "no suggestions: {r}");
    for path in ["/", "/graphql"] {
        let response = app.get_accepting(path, "text/html").await;
        assert_ne!(response.status(), 200, "{path}");
        assert!(!response.text().await.unwrap().contains("GraphiQL"));
    }

    let dev = TestApp::spawn().await;
    let r = dev
        .anonymous()
        .query("{ produts { totalCount } }", json!({}))
        .await;
    assert!(
        r.text.contains("Did you mean"),
        "suggestions in development: {r}"
    );
}

#[tokio::test]
async fn each_production_default_can_be_switched_back_on() {
    let app = production_app(&[
        ("INTROSPECTION", "true"),
        ("FIELD_SUGGESTIONS", "true"),
        ("GRAPHIQL", "true"),
    ])
    .await;
    let anonymous = app.anonymous();
    anonymous
        .query("{ __schema { queryType { name } } }", json!({}))
        .await
        .assert_ok();
    let r = anonymous
        .query("{ produts { totalCount } }", json!({}))
        .await;
    assert!(r.text.contains("Did you mean"), "{r}");
    assert_eq!(app.get("/").await.status(), 200);
}
