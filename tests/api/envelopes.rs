//! What a client sees when a request fails: one snapshot (tests/api/snapshots/) per
//! `extensions.code` a request can produce, and per HTTP refusal, with the status and the
//! headers a client acts on. The parts that vary from run to run are redacted: the request id,
//! `retryAfter` (checked to be a positive whole number) and the ids and times in partial data.
//!
//! A change to any of them fails `cargo test` until the snapshot is reviewed: run
//! `cargo insta review` (or `INSTA_UPDATE=always cargo test --test api envelopes`) and commit
//! the new `.snap` files with the change that made them.

use std::{collections::BTreeMap, time::Duration};

use insta::internals::Content;
use reqwest::Method;
use serde::Serialize;
use serde_json::{Value, json};

use crate::kit::*;

/// The part of an answer the snapshots keep.
#[derive(Serialize)]
struct Envelope {
    status: u16,
    headers: BTreeMap<&'static str, String>,
    body: Value,
}

/// The headers a client acts on.
const HEADERS: [&str; 8] = [
    "content-type",
    "allow",
    "retry-after",
    "ratelimit",
    "ratelimit-policy",
    "www-authenticate",
    "idempotent-replayed",
    "x-request-id",
];

fn envelope<T>(r: &Response<T>) -> Envelope {
    // A rate limit's wait, in the headers, in `retryAfter`'s words (the lock's wait varies).
    let wait = r.retry_after();
    let headers = HEADERS
        .into_iter()
        .filter_map(|name| {
            let value = r.header(name)?.to_owned();
            let value = match (name, wait) {
                ("retry-after", Some(s)) if value == s.to_string() => "[seconds]".to_owned(),
                ("ratelimit", Some(s)) => value.replace(&format!("t={s}"), "t=[seconds]"),
                _ => value,
            };
            Some((name, value))
        })
        .collect();
    let mut body = if r.body.is_null() {
        Value::String(r.text.clone())
    } else {
        r.body.clone()
    };
    // A message that says how long to wait says it in `retryAfter`'s words.
    let errors = body.get_mut("errors").and_then(Value::as_array_mut);
    for error in errors.into_iter().flatten() {
        if let (Some(seconds), Some(message)) = (
            error["extensions"]["retryAfter"].as_u64(),
            error["message"].as_str(),
        ) {
            error["message"] = message
                .replace(&format!("in {seconds} s"), "in [seconds] s")
                .into();
        }
    }
    Envelope {
        status: r.status,
        headers,
        body,
    }
}

/// Replaces a positive whole number of seconds, and fails on anything else.
fn seconds(value: Content, _: insta::internals::ContentPath<'_>) -> Content {
    assert!(
        value.as_u64().is_some_and(|s| s >= 1),
        "retryAfter {value:?}"
    );
    Content::from("[seconds]")
}

/// Asserts that the answer matches the snapshot `name`.
fn assert_envelope<T>(name: &str, r: &Response<T>) {
    insta::assert_json_snapshot!(name, envelope(r), {
        r#".headers["x-request-id"]"# => "[request id]",
        ".body.errors[].extensions.retryAfter" => insta::dynamic_redaction(seconds),
        ".body.data.*.id" => "[id]",
        ".body.data.*.createdAt" => "[time]",
        ".body.data.*.updatedAt" => "[time]",
    });
}

const MISSING_ID: &str = "0190a0a0-0000-7000-8000-000000000000";

#[tokio::test]
async fn field_errors_have_one_envelope_per_code() {
    let app = TestApp::spawn().await;
    let anonymous = app.anonymous();
    let admin = app.admin().await;
    let user = app.user("plain").await;
    let product = admin.add_product("Teapot", "19.99").await;

    let account = "{ account { id username } }";
    let login = "mutation($u: String!, $p: String!) { \
                 login(input: {username: $u, password: $p}) { accessToken } }";
    let register = "mutation($u: String!, $p: String!) { \
                    register(input: {username: $u, password: $p}) { accessToken } }";
    let cases = [
        ("unauthenticated", &anonymous, account, json!({})),
        (
            "unauthenticated_token",
            &app.bearer("not-a-token"),
            account,
            json!({}),
        ),
        (
            "unauthenticated_login",
            &anonymous,
            login,
            json!({"u": "nobody", "p": "not a passphrase"}),
        ),
        (
            "forbidden",
            &user,
            r#"mutation { createProduct(input: {name: "N", price: "1"}) { id } }"#,
            json!({}),
        ),
        (
            "forbidden_field",
            &user,
            "query($id: ID!) { product(id: $id) { id name createdBy { username } } }",
            json!({"id": product.id}),
        ),
        (
            "bad_user_input",
            &anonymous,
            register,
            json!({"u": "ab", "p": "good passphrase"}),
        ),
        (
            "bad_user_input_variable",
            &user,
            "query($n: Int) { products(first: $n) { totalCount } }",
            json!({"n": "ten"}),
        ),
        (
            "not_found",
            &admin,
            "mutation($id: ID!) { updateProduct(id: $id, input: {stock: 1}) { id } }",
            json!({"id": MISSING_ID}),
        ),
        (
            "conflict",
            &anonymous,
            register,
            json!({"u": "PLAIN", "p": "another passphrase"}),
        ),
    ];
    for (name, caller, document, variables) in cases {
        assert_envelope(name, &caller.query(document, variables).await);
    }
    for _ in 0..5 {
        let r = anonymous
            .query(login, json!({"u": "plain", "p": "a wrong guess"}))
            .await;
        assert_eq!(r.codes(), ["UNAUTHENTICATED"], "{r}");
    }
    assert_envelope(
        "too_many_requests",
        &anonymous
            .query(login, json!({"u": "plain", "p": password_of("plain")}))
            .await,
    );
}

#[tokio::test]
async fn request_errors_have_one_envelope_per_code() {
    let app = TestApp::spawn().await;
    let anonymous = app.anonymous();
    assert_envelope(
        "graphql_parse_failed",
        &anonymous.query("{ products { ", json!({})).await,
    );
    assert_envelope(
        "graphql_validation_failed",
        &anonymous.query("{ nosuchfield }", json!({})).await,
    );
    let mut deep = String::from("name");
    for _ in 0..16 {
        deep = format!("ofType {{ {deep} }}");
    }
    assert_envelope(
        "query_too_complex",
        &anonymous
            .query(
                &format!("{{ __type(name: \"Product\") {{ {deep} }} }}"),
                json!({}),
            )
            .await,
    );
    // The same refusal in the GraphQL-over-HTTP media type is a 400.
    assert_envelope(
        "query_too_complex_graphql_response",
        &anonymous
            .with_header("Accept", "application/graphql-response+json")
            .query(
                &format!("{{ __type(name: \"Product\") {{ {deep} }} }}"),
                json!({}),
            )
            .await,
    );

    // A response over MAX_RESPONSE_BYTES: the schema's types and their descriptions.
    let capped = TestApp::builder().max_response_bytes(1024).spawn().await;
    assert_envelope(
        "response_too_large",
        &capped
            .anonymous()
            .query("{ __schema { types { name description } } }", json!({}))
            .await,
    );
    let hurried = TestApp::builder()
        .request_timeout(Duration::from_millis(1))
        .spawn()
        .await;
    let register = r#"mutation { register(input: {username: "slowpoke", password: "slow passphrase"}) { accessToken } }"#;
    assert_envelope(
        "timeout",
        &hurried.anonymous().query(register, json!({})).await,
    );
}

/// Persisted queries: an id the server does not know (what APQ clients answer by sending the
/// document), APQ turned off, a document a trusted-documents manifest does not list, and a hash
/// that is not the document's.
#[tokio::test]
async fn persisted_query_errors_have_one_envelope_per_code() {
    let hash_only = json!({ "extensions": { "persistedQuery": {
        "version": 1,
        "sha256Hash": "ecf4edb46db40b5132295c0291d62fb65d6759a9eedfa4d5d612dd5ec54a6b38",
    } } });
    let app = TestApp::spawn().await;
    let anonymous = app.anonymous();
    assert_envelope(
        "persisted_query_not_found",
        &anonymous
            .with_header("Accept", "application/graphql-response+json")
            .post(&hash_only)
            .await,
    );
    let mut lying = hash_only.clone();
    lying["query"] = json!("{ __typename }");
    assert_envelope(
        "bad_user_input_persisted_query_hash",
        &anonymous.post(&lying).await,
    );
    let off = TestApp::builder().apq_max_documents(0).spawn().await;
    assert_envelope(
        "persisted_query_not_supported",
        &off.anonymous().post(&hash_only).await,
    );
    let manifest = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        manifest.path(),
        r#"{ "sha256:x": "query Listed { __typename }" }"#,
    )
    .unwrap();
    let trusted = TestApp::builder()
        .trusted_documents(manifest.path())
        .spawn()
        .await;
    assert_envelope(
        "persisted_query_not_in_list",
        &trusted.anonymous().query("{ __typename }", json!({})).await,
    );
}

/// A failure of the database's own: the server is unavailable (the write lock held past the
/// busy timeout on SQLite; a full disk on PostgreSQL) or fails internally (a trigger that
/// refuses every insert); neither says anything of the database.
#[tokio::test]
async fn database_failures_have_one_envelope_per_code() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let create = r#"mutation { createProduct(input: {name: "Never", price: "1.00"}) { id } }"#;

    let unavailable = if app.on_postgres() {
        app.refuse_product_inserts("53100").await;
        let r = admin.query(create, json!({})).await;
        app.allow_product_inserts().await;
        r
    } else {
        let lock = app.db.hold_write_lock().await;
        let r = admin.query(create, json!({})).await;
        lock.release().await;
        r
    };
    assert_envelope("service_unavailable", &unavailable);
    ready(&app).await;
    app.refuse_product_inserts("P0001").await;
    assert_envelope(
        "internal_server_error",
        &admin.query(create, json!({})).await,
    );
}

/// Waits until `/readyz` is green again after a failed write.
async fn ready(app: &TestApp) {
    let green = within(Duration::from_secs(10), async || {
        app.get("/readyz").await.status() == 200
    })
    .await;
    assert!(green.is_some(), "/readyz stayed red");
}

/// Requests refused at the HTTP level, before any GraphQL runs.
#[tokio::test]
async fn http_refusals_have_one_envelope_each() {
    let app = TestApp::spawn().await;
    let anonymous = app.anonymous();
    let admin = app.admin().await;
    let raw = async |content_type: &str, accept: &str, body: &str| {
        anonymous
            .post_raw(Some(content_type), Some(accept), body)
            .await
    };

    assert_envelope(
        "bad_request_json",
        &raw("application/json", "application/json", "{").await,
    );
    let batch: Vec<Value> = (0..11)
        .map(|_| json!({"query": "{ __typename }"}))
        .collect();
    assert_envelope("bad_request_batch", &anonymous.post(&json!(batch)).await);
    assert_envelope(
        "method_not_allowed_mutation_over_get",
        &app.get_query("mutation { logout }", "application/json")
            .await,
    );
    assert_envelope(
        "method_not_allowed",
        &Response::send(app.request(Method::PUT, "/graphql")).await,
    );
    assert_envelope(
        "not_found_route",
        &Response::send(app.request(Method::GET, "/nowhere")).await,
    );
    assert_envelope(
        "not_acceptable",
        &raw(
            "application/json",
            "text/html",
            r#"{"query":"{ __typename }"}"#,
        )
        .await,
    );
    let big = json!({ "query": format!("{{ __typename }} # {}", "x".repeat(64 * 1024)) });
    assert_envelope("payload_too_large", &anonymous.post(&big).await);
    assert_envelope(
        "unsupported_media_type",
        &raw(
            "text/plain",
            "application/json",
            r#"{"query":"{ __typename }"}"#,
        )
        .await,
    );

    // Idempotency-Key: malformed, without an account, with a token that does not work, and
    // reused for another request.
    let create = |name: &str| {
        json!({
            "query": "mutation($n: String!) { createProduct(input: {name: $n, price: \"1.00\"}) { id } }",
            "variables": {"n": name},
        })
    };
    for (name, caller, key, product) in [
        ("idempotency_key_malformed", &admin, "tab\there", "Bad key"),
        ("idempotency_key_anonymous", &anonymous, "anon", "Anonymous"),
        (
            "idempotency_key_unauthenticated",
            &app.bearer("not-a-token"),
            "stale",
            "Stale",
        ),
    ] {
        let keyed = caller.with_header("Idempotency-Key", key);
        assert_envelope(name, &keyed.post(&create(product)).await);
    }
    let keyed = admin.with_header("Idempotency-Key", "reused");
    keyed.post(&create("First")).await.assert_ok();
    assert_envelope(
        "idempotency_key_reused",
        &keyed.post(&create("Second")).await,
    );
}
