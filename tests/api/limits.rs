use serde_json::{Value, json};

use crate::helpers::*;

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

async fn raw_post(
    app: &TestApp,
    content_type: Option<&str>,
    accept: Option<&str>,
    body: &str,
) -> (u16, String, String) {
    let mut request = app
        .client
        .post(format!("{}/graphql", app.url))
        .body(body.to_owned());
    if let Some(content_type) = content_type {
        request = request.header("Content-Type", content_type);
    }
    if let Some(accept) = accept {
        request = request.header("Accept", accept);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let media = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, media, response.text().await.unwrap())
}

async fn get(app: &TestApp, query: &str, accept: &str) -> (u16, Value, reqwest::header::HeaderMap) {
    let response = app
        .client
        .get(format!("{}/graphql", app.url))
        .query(&[("query", query)])
        .header("Accept", accept)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (
        status,
        response.json().await.unwrap_or(Value::Null),
        headers,
    )
}

fn aliases(count: usize, field: &str) -> String {
    let fields: Vec<String> = (0..count).map(|i| format!("a{i}: {field}")).collect();
    format!("{{ {} }}", fields.join(" "))
}

#[tokio::test]
async fn the_standard_introspection_query_fits_within_the_limits() {
    let app = spawn_app().await;
    let r = app.gql(INTROSPECTION, json!({}), None).await;
    assert_no_errors(&r);
}

#[tokio::test]
async fn deep_queries_are_refused() {
    let app = spawn_app().await;
    let mut query = String::from("name");
    for _ in 0..16 {
        query = format!("ofType {{ {query} }}");
    }
    let query = format!("{{ __type(name: \"Product\") {{ {query} }} }}");
    let r = app.gql(&query, json!({}), None).await;
    assert_eq!(codes(&r), ["QUERY_TOO_COMPLEX"], "{r}");
    assert!(r.to_string().contains("18 deep; the limit is 15"), "{r}");
    assert!(
        r.get("data").is_none(),
        "a request error has no data entry: {r}"
    );
}

#[tokio::test]
async fn aliases_are_counted_and_101_of_one_field_are_refused() {
    let app = spawn_app().await;
    let r = app.gql(&aliases(30, "__typename"), json!({}), None).await;
    assert_no_errors(&r);
    for count in [31, 101] {
        let r = app
            .gql(&aliases(count, "__typename"), json!({}), None)
            .await;
        assert_eq!(codes(&r), ["QUERY_TOO_COMPLEX"], "{count}: {r}");
        assert!(
            r.to_string()
                .contains(&format!("{count} aliases; at most 30")),
            "{r}"
        );
    }
    // 101 aliased sign-ins in one document: refused before any runs.
    let login = r#"login(input:{username:"someone", password:"guess guess"}){ accessToken }"#;
    let r = app
        .gql(
            &format!("mutation {}", aliases(101, login)),
            json!({}),
            None,
        )
        .await;
    assert_eq!(codes(&r), ["QUERY_TOO_COMPLEX"], "{r}");
    assert!(r.to_string().contains("101 aliases"), "{r}");
}

#[tokio::test]
async fn complexity_counts_every_field_including_aliases_in_fragments() {
    let app = spawn_app_with(vec![("GRAPHQL_MAX_ALIASES", "2000".to_owned())]).await;
    // Each `product(id:) { id }` costs 2: 1000 of them fit in 2000, 1001 do not.
    let field = r#"product(id: "x") { id }"#;
    let r = app.gql(&aliases(1000, field), json!({}), None).await;
    assert!(
        r.get("data").is_some() && !codes(&r).contains(&"QUERY_TOO_COMPLEX".to_owned()),
        "{r:.300}"
    );
    let r = app.gql(&aliases(1001, field), json!({}), None).await;
    assert_eq!(codes(&r), ["QUERY_TOO_COMPLEX"], "{r:.300}");
    assert!(r.get("data").is_none());
    assert!(
        r.to_string().contains("costs 2002; the limit is 2000"),
        "{r:.300}"
    );
    // A fragment spread many times counts each time: 251 × (1 + 7) = 2008.
    let fields: Vec<String> = (0..251)
        .map(|i| format!("f{i}: product(id: \"x\") {{ ...F }}"))
        .collect();
    let query = format!(
        "{{ {} }} fragment F on Product {{ id name description price stock createdAt updatedAt }}",
        fields.join(" ")
    );
    let r = app.gql(&query, json!({}), None).await;
    assert_eq!(codes(&r), ["QUERY_TOO_COMPLEX"], "{r:.300}");
    assert_eq!(r["errors"][0]["extensions"]["cost"], 2008, "{r:.300}");
}

#[tokio::test]
async fn too_many_directives_on_a_field_are_refused() {
    let app = spawn_app().await;
    let ok = format!("{{ __typename {} }}", "@skip(if: false) ".repeat(10));
    let r = app.gql(&ok, json!({}), None).await;
    assert_no_errors(&r);
    let too_many = format!("{{ __typename {} }}", "@skip(if: false) ".repeat(11));
    let r = app.gql(&too_many, json!({}), None).await;
    assert_eq!(codes(&r), ["QUERY_TOO_COMPLEX"], "{r}");
}

#[tokio::test]
async fn batches_are_capped_at_ten_operations() {
    let app = spawn_app().await;
    let batch =
        |n: usize| Value::Array((0..n).map(|_| json!({"query": "{ __typename }"})).collect());
    let (status, body) = app.post(batch(10), None).await;
    assert_eq!(status, 200);
    assert_eq!(body.as_array().unwrap().len(), 10);
    assert_eq!(body[9]["data"]["__typename"], "Query");
    for n in [11, 1000] {
        let (status, body) = app.post(batch(n), None).await;
        assert_eq!(status, 400, "{n}");
        assert_eq!(codes(&body), ["BAD_REQUEST"]);
    }
    let (status, _) = app.post(json!([]), None).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn batching_can_be_turned_off() {
    let app = spawn_app_with(vec![("GRAPHQL_MAX_BATCH", "0".to_owned())]).await;
    let (status, _) = app.post(json!([{"query": "{ __typename }"}]), None).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn requests_running_past_the_timeout_are_cancelled() {
    let app = spawn_app_with(vec![("REQUEST_TIMEOUT_MS", "1".to_owned())]).await;
    let (status, body) = app
        .post(json!({"query": r#"mutation{ register(input:{username:"slowpoke", password:"slow passphrase"}){ accessToken } }"#}), None)
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(codes(&body), ["TIMEOUT"]);
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_and_the_limit_is_configurable() {
    let app = spawn_app().await;
    let big = format!("{{ __typename }} # {}", "x".repeat(64 * 1024));
    let (status, body) = app.post(json!({ "query": big }), None).await;
    assert_eq!(status, 413);
    assert_eq!(codes(&body), ["PAYLOAD_TOO_LARGE"]);

    let app = spawn_app_with(vec![("MAX_BODY_BYTES", "2048".to_owned())]).await;
    let (status, _) = app
        .post(
            json!({ "query": format!("{{ __typename }} # {}", "x".repeat(2048)) }),
            None,
        )
        .await;
    assert_eq!(status, 413);
    let (status, _) = app.post(json!({ "query": "{ __typename }" }), None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn mutations_only_over_post_and_queries_over_get() {
    let app = spawn_app().await;
    let (status, body, headers) = get(&app, "{ __typename }", "application/json").await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["__typename"], "Query");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );

    let register = r#"mutation { register(input:{username:"viaget", password:"via get passphrase"}){ accessToken } }"#;
    let (status, body, headers) = get(&app, register, "application/json").await;
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "POST");
    assert_eq!(codes(&body), ["METHOD_NOT_ALLOWED"]);
    // Nothing ran: the username is still free.
    app.register("viaget", "via get passphrase").await;

    let response = app
        .client
        .put(format!("{}/graphql", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
}

#[tokio::test]
async fn post_bodies_must_be_json_so_forms_cannot_forge_requests() {
    let app = spawn_app().await;
    let register = r#"{"query":"mutation { register(input:{username:\"csrf\", password:\"csrf passphrase\"}){ accessToken } }"}"#;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
        Some("application/json; charset=iso-8859-1"),
    ] {
        let (status, _, body) = raw_post(&app, content_type, None, register).await;
        assert_eq!(status, 415, "{content_type:?}: {body}");
    }
    // Nothing ran: the username is still free.
    app.register("csrf", "csrf passphrase").await;
}

#[tokio::test]
async fn responses_follow_the_accept_header() {
    let app = spawn_app().await;
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
        let (status, media, _) = raw_post(&app, Some("application/json"), accept, query).await;
        assert_eq!(status, 200);
        assert!(media.starts_with(expected), "{accept:?} → {media}");
    }
    let (status, _, _) = raw_post(&app, Some("application/json"), Some("text/html"), query).await;
    assert_eq!(status, 406);
}

#[tokio::test]
async fn request_errors_get_400_in_the_graphql_response_format_and_200_in_plain_json() {
    let app = spawn_app().await;
    for (query, code) in [
        ("{", "GRAPHQL_PARSE_FAILED"),
        ("{ nosuchfield }", "GRAPHQL_VALIDATION_FAILED"),
    ] {
        let body = json!({"query": query}).to_string();
        let (status, _, text) = raw_post(
            &app,
            Some("application/json"),
            Some("application/graphql-response+json"),
            &body,
        )
        .await;
        assert_eq!(status, 400, "{query}");
        let r: Value = serde_json::from_str(&text).unwrap();
        assert!(r.get("data").is_none(), "{r}");
        assert_eq!(codes(&r), [code]);
        let (status, _, text) = raw_post(
            &app,
            Some("application/json"),
            Some("application/json"),
            &body,
        )
        .await;
        assert_eq!(status, 200, "{query}");
        let r: Value = serde_json::from_str(&text).unwrap();
        assert!(r.get("data").is_none(), "{r}");
    }
    // A field error is still a 200 with data in either format.
    let (status, _, text) = raw_post(
        &app,
        Some("application/json"),
        Some("application/graphql-response+json"),
        r#"{"query":"{ account { id } }"}"#,
    )
    .await;
    assert_eq!(status, 200);
    let r: Value = serde_json::from_str(&text).unwrap();
    assert!(r["data"].is_null() && r.get("data").is_some(), "{r}");
    // Malformed JSON and ill-typed parameters are 400.
    for body in [
        "{",
        r#"{"query": 1}"#,
        r#"{"query":"{ __typename }","variables":"x"}"#,
        "[1]",
        "7",
    ] {
        let (status, _, _) = raw_post(&app, Some("application/json"), None, body).await;
        assert_eq!(status, 400, "{body}");
    }
}

async fn production_app(extra: Env) -> TestApp {
    let mut env = vec![("APP_ENV", "production".to_owned())];
    env.extend(extra);
    spawn_app_with(env).await
}

#[tokio::test]
async fn production_turns_off_introspection_suggestions_and_the_playground() {
    let app = production_app(Vec::new()).await;
    let r = app
        .gql("{ __schema { types { name } } }", json!({}), None)
        .await;
    assert!(r["data"]["__schema"].is_null(), "introspection is off: {r}");
    let r = app
        .gql("{ __type(name: \"Product\") { name } }", json!({}), None)
        .await;
    assert!(r["data"]["__type"].is_null(), "{r}");
    let r = app.gql("{ produts { totalCount } }", json!({}), None).await;
    assert!(
        !r.to_string().contains("Did you mean"),
        "no suggestions: {r}"
    );
    for path in ["/", "/graphql"] {
        let response = app
            .client
            .get(format!("{}{path}", app.url))
            .header("Accept", "text/html")
            .send()
            .await
            .unwrap();
        assert_ne!(response.status(), 200, "{path}");
        assert!(!response.text().await.unwrap().contains("GraphiQL"));
    }

    let dev = spawn_app().await;
    let r = dev.gql("{ produts { totalCount } }", json!({}), None).await;
    assert!(
        r.to_string().contains("Did you mean"),
        "suggestions in development: {r}"
    );
}

#[tokio::test]
async fn each_production_default_can_be_switched_back_on() {
    let app = production_app(vec![
        ("INTROSPECTION", "true".to_owned()),
        ("FIELD_SUGGESTIONS", "true".to_owned()),
        ("GRAPHIQL", "true".to_owned()),
    ])
    .await;
    let r = app
        .gql("{ __schema { queryType { name } } }", json!({}), None)
        .await;
    assert_no_errors(&r);
    let r = app.gql("{ produts { totalCount } }", json!({}), None).await;
    assert!(r.to_string().contains("Did you mean"), "{r}");
    let response = app
        .client
        .get(format!("{}/", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
