use serde_json::{Value, json};

use crate::helpers::*;

const REGISTER: &str = "mutation($u:String!,$p:String!,$e:String){ register(input:{username:$u,password:$p,email:$e}){ accessToken } }";

async fn account_count(app: &TestApp, admin: &str) -> i64 {
    let r = app
        .gql("{ users { totalCount } }", json!({}), Some(admin))
        .await;
    assert_no_errors(&r);
    r["data"]["users"]["totalCount"].as_i64().unwrap()
}

fn assert_bad_input(r: &Value, field: &str, case: &str) {
    assert_eq!(codes(r), ["BAD_USER_INPUT"], "{case}: {r}");
    assert_eq!(error_field(r).as_deref(), Some(field), "{case}: {r}");
    assert!(r["data"].is_null(), "{case}: {r}");
}

#[tokio::test]
async fn registration_rules_are_enforced_and_nothing_is_stored_on_violation() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let before = account_count(&app, &admin).await;
    let long_password = "p".repeat(129);
    let long_name = "n".repeat(33);
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        ("ab", "good passphrase", Value::Null, "username"),
        (&long_name, "good passphrase", Value::Null, "username"),
        ("bad name", "good passphrase", Value::Null, "username"),
        ("bad!name", "good passphrase", Value::Null, "username"),
        ("okname", "short", Value::Null, "password"),
        ("okname", &long_password, Value::Null, "password"),
        ("okname", "good passphrase", json!("not-an-email"), "email"),
        ("okname", "good passphrase", json!("a@b"), "email"),
        ("okname", "good passphrase", json!(""), "email"),
    ];
    for (username, password, email, field) in cases {
        let r = app
            .gql(
                REGISTER,
                json!({"u": username, "p": password, "e": email}),
                None,
            )
            .await;
        assert_bad_input(&r, field, &format!("{username:.10}/{password:.10}/{email}"));
    }
    assert_eq!(account_count(&app, &admin).await, before);

    // Boundaries are accepted: 3 and 32 characters, 8 and 128 characters of any script.
    app.register("abc", &"é".repeat(8)).await;
    app.register(&"z".repeat(32), &"密".repeat(128)).await;
    assert_eq!(account_count(&app, &admin).await, before + 2);
}

#[tokio::test]
async fn taken_usernames_and_emails_conflict_ignoring_case() {
    let app = spawn_app().await;
    let r = app
        .gql(
            REGISTER,
            json!({"u": "Taken", "p": "first passphrase", "e": "Owner@Example.com"}),
            None,
        )
        .await;
    assert_no_errors(&r);

    let r = app
        .gql(
            REGISTER,
            json!({"u": "tAKEN", "p": "second passphrase", "e": Value::Null}),
            None,
        )
        .await;
    assert_eq!(codes(&r), ["CONFLICT"], "{r}");
    assert_eq!(error_field(&r).as_deref(), Some("username"));

    let r = app
        .gql(
            REGISTER,
            json!({"u": "other", "p": "second passphrase", "e": "owner@example.COM"}),
            None,
        )
        .await;
    assert_eq!(codes(&r), ["CONFLICT"], "{r}");
    assert_eq!(error_field(&r).as_deref(), Some("email"));
    // The database's own words never reach the client.
    let text = r.to_string().to_lowercase();
    assert!(
        !text.contains("unique") && !text.contains("constraint") && !text.contains("accounts"),
        "{r}"
    );
}

#[tokio::test]
async fn twenty_concurrent_registrations_of_one_username_create_exactly_one_account() {
    let app = spawn_app().await;
    let attempts = (0..20).map(|i| {
        let app = &app;
        async move {
            app.gql(
                REGISTER,
                json!({"u": "racer", "p": format!("racer passphrase {i}"), "e": Value::Null}),
                None,
            )
            .await
        }
    });
    let results = futures_join_all(attempts).await;
    let winners = results.iter().filter(|r| codes(r).is_empty()).count();
    let conflicts = results.iter().filter(|r| codes(r) == ["CONFLICT"]).count();
    assert_eq!(winners, 1, "{results:?}");
    assert_eq!(conflicts, 19, "{results:?}");
    let admin = app.admin_token().await;
    let r = app
        .gql(
            "{ users(first: 100) { nodes { username } } }",
            json!({}),
            Some(&admin),
        )
        .await;
    let racers = r["data"]["users"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["username"] == "racer")
        .count();
    assert_eq!(racers, 1);
}

/// Runs futures concurrently on this task.
async fn futures_join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    let mut pending = futures;
    std::future::poll_fn(move |cx| {
        let mut done = true;
        for (i, fut) in pending.iter_mut().enumerate() {
            if outputs[i].is_none() {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => outputs[i] = Some(v),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(outputs.iter_mut().map(|o| o.take().unwrap()).collect())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

#[tokio::test]
async fn product_rules_are_enforced_and_nothing_is_stored_on_violation() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let create = "mutation($n:String!,$d:String!,$p:Decimal!,$s:Int!){ createProduct(input:{name:$n, description:$d, price:$p, stock:$s}){ id } }";
    let long_name = "n".repeat(201);
    let long_description = "d".repeat(5001);
    let cases: Vec<(Value, &str)> = vec![
        (json!({"n": "   ", "d": "", "p": "1.00", "s": 0}), "name"),
        (
            json!({"n": long_name, "d": "", "p": "1.00", "s": 0}),
            "name",
        ),
        (
            json!({"n": "ok", "d": long_description, "p": "1.00", "s": 0}),
            "description",
        ),
        (
            json!({"n": "ok", "d": "nul \u{0} byte", "p": "1.00", "s": 0}),
            "description",
        ),
        (json!({"n": "ok", "d": "", "p": "-1.00", "s": 0}), "price"),
        (json!({"n": "ok", "d": "", "p": "1.999", "s": 0}), "price"),
        (
            json!({"n": "ok", "d": "", "p": "1000000000.01", "s": 0}),
            "price",
        ),
        (json!({"n": "ok", "d": "", "p": "ten", "s": 0}), "price"),
        (json!({"n": "ok", "d": "", "p": "1e3", "s": 0}), "price"),
        (json!({"n": "ok", "d": "", "p": "1.00", "s": -1}), "stock"),
    ];
    for (variables, field) in cases {
        let r = app.gql(create, variables.clone(), Some(&admin)).await;
        assert_bad_input(&r, field, &format!("{variables:.60}"));
    }
    assert_eq!(app.product_count(&admin).await, 0);

    // Boundaries, and a name stored trimmed.
    let r = app
        .gql(create, json!({"n": format!("  {}  ", "n".repeat(200)), "d": "d".repeat(5000), "p": "1000000000", "s": 0}), Some(&admin))
        .await;
    assert_no_errors(&r);
    let r = app
        .gql(r#"mutation{ createProduct(input:{name:" Trimmed ", price: 0}){ name price stock description } }"#, json!({}), Some(&admin))
        .await;
    assert_no_errors(&r);
    assert_eq!(
        r["data"]["createProduct"],
        json!({"name": "Trimmed", "price": "0.00", "stock": 0, "description": ""})
    );
}

#[tokio::test]
async fn updates_validate_every_field_and_change_nothing_on_violation() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let id = app.create_product(&admin, "Original", "10.00").await;
    let update = "mutation($id:ID!,$input:UpdateProductInput!){ updateProduct(id:$id, input:$input){ name price stock } }";
    for (input, field) in [
        (json!({"name": ""}), "name"),
        (json!({"name": null}), "name"),
        (json!({"price": "0.001"}), "price"),
        (json!({"price": null}), "price"),
        (json!({"stock": -5}), "stock"),
        (json!({"description": "x".repeat(5001)}), "description"),
        // One bad field spoils the whole update.
        (json!({"name": "Renamed", "stock": -1}), "stock"),
    ] {
        let r = app
            .gql(update, json!({"id": id, "input": input}), Some(&admin))
            .await;
        assert_bad_input(&r, field, &input.to_string());
    }
    let r = app
        .gql(
            "query($id:ID!){ product(id:$id){ name price stock } }",
            json!({"id": id}),
            Some(&admin),
        )
        .await;
    assert_eq!(
        r["data"]["product"],
        json!({"name": "Original", "price": "10.00", "stock": 1})
    );
}

#[tokio::test]
async fn ids_that_name_nothing_are_not_found_in_mutations_and_null_in_queries() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    for id in [
        "0190a0a0-0000-7000-8000-000000000000",
        "not-a-uuid",
        "",
        "'; DROP TABLE products; --",
    ] {
        let r = app
            .gql(
                "query($id:ID!){ product(id:$id){ id } }",
                json!({"id": id}),
                Some(&admin),
            )
            .await;
        assert_no_errors(&r);
        assert!(r["data"]["product"].is_null(), "{id}");
        for mutation in [
            "mutation($id:ID!){ updateProduct(id:$id, input:{stock:1}){ id } }",
            "mutation($id:ID!){ deleteProduct(id:$id) }",
            "mutation($id:ID!){ setUserRole(userId:$id, role:ADMIN){ id } }",
        ] {
            let r = app.gql(mutation, json!({"id": id}), Some(&admin)).await;
            assert_eq!(codes(&r), ["NOT_FOUND"], "{mutation} {id}: {r}");
        }
    }
}

#[tokio::test]
async fn page_sizes_and_cursors_are_checked() {
    let app = spawn_app().await;
    let user = app.register("pager", "pager passphrase").await;
    for first in [0, -1, 101] {
        let r = app
            .gql(
                "query($f:Int){ products(first:$f){ totalCount } }",
                json!({"f": first}),
                Some(&user),
            )
            .await;
        assert_bad_input(&r, "first", &first.to_string());
    }
    let r = app
        .gql(
            "{ products(first: 100){ totalCount } }",
            json!({}),
            Some(&user),
        )
        .await;
    assert_no_errors(&r);
    let r = app
        .gql(
            r#"{ products(after: "garbage!"){ totalCount } }"#,
            json!({}),
            Some(&user),
        )
        .await;
    assert_bad_input(&r, "after", "bad cursor");
}

#[tokio::test]
async fn search_treats_wildcards_literally() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    app.create_product(&admin, "100% cotton", "5").await;
    app.create_product(&admin, "Cotton_blend", "5").await;
    app.create_product(&admin, "Wool", "5").await;
    let count = |search: &'static str| {
        let app = &app;
        let admin = admin.clone();
        async move {
            let r = app
                .gql(
                    "query($s:String){ products(search:$s){ totalCount } }",
                    json!({"s": search}),
                    Some(&admin),
                )
                .await;
            assert_no_errors(&r);
            r["data"]["products"]["totalCount"].as_i64().unwrap()
        }
    };
    assert_eq!(count("%").await, 1);
    assert_eq!(count("_").await, 1);
    assert_eq!(count("COTTON").await, 2);
    assert_eq!(count("").await, 3);
}

#[tokio::test]
async fn search_terms_over_200_characters_are_bad_input_not_a_server_error() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    app.create_product(&admin, "Kettle", "10.00").await;
    let user = app.register("searcher", "searcher passphrase").await;
    let query = "query($s: String) { products(search: $s) { totalCount nodes { name } } }";
    // The longest allowed term runs (and matches nothing); counted in characters, not bytes.
    for ok in ["k".repeat(200), "é".repeat(200)] {
        let r = app.gql(query, json!({ "s": ok }), Some(&user)).await;
        assert_no_errors(&r);
        assert_eq!(r["data"]["products"]["totalCount"], 0);
    }
    // One more character, and terms long enough to break SQLite's LIKE (50,000 bytes), are
    // refused as input errors on `search`, with no database text.
    for long in ["k".repeat(201), "%".repeat(60_000), "é".repeat(30_000)] {
        let r = app.gql(query, json!({ "s": long }), Some(&user)).await;
        assert_eq!(codes(&r), ["BAD_USER_INPUT"], "{:.200}", r.to_string());
        assert_eq!(error_field(&r).as_deref(), Some("search"));
        assert!(r["errors"][0]["message"].as_str().unwrap().contains("200"));
    }
    // The catalog is unchanged and ordinary searches still work.
    let r = app.gql(query, json!({ "s": "kett" }), Some(&user)).await;
    assert_eq!(r["data"]["products"]["totalCount"], 1, "{r}");
}

#[tokio::test]
async fn malformed_documents_get_a_coded_error() {
    let app = spawn_app().await;
    let user = app.register("syntax", "syntax passphrase").await;
    for (query, variables, code) in [
        ("{ products { ", json!({}), "GRAPHQL_PARSE_FAILED"),
        ("{ nosuchfield }", json!({}), "GRAPHQL_VALIDATION_FAILED"),
        (
            "{ products(first: \"ten\") { totalCount } }",
            json!({}),
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            "query($n: Int) { products(first: $n) { totalCount } }",
            json!({"n": "ten"}),
            "BAD_USER_INPUT",
        ),
        (
            "query($n: Int!) { products(first: $n) { totalCount } }",
            json!({}),
            "BAD_USER_INPUT",
        ),
    ] {
        let r = app.gql(query, variables, Some(&user)).await;
        assert_eq!(codes(&r), [code], "{query}: {r}");
        if code.starts_with("GRAPHQL_") {
            assert!(
                r.get("data").is_none(),
                "a request error has no data: {query}: {r}"
            );
        }
    }
}

#[tokio::test]
async fn a_20_kb_broken_document_gets_a_short_parse_error_with_its_position() {
    let app = spawn_app().await;
    // 20 KB on one line, broken at the end, then on many lines, broken in the middle.
    let one_line = format!("{{ {} ]", "__typename ".repeat(1900));
    let many_lines = format!(
        "{{\n{}  !oops\n{}}}",
        "  __typename\n".repeat(800),
        "  __typename\n".repeat(800)
    );
    for (query, line) in [(&one_line, 1), (&many_lines, 802)] {
        assert!(query.len() > 20_000);
        let (status, r) = app.post(json!({ "query": query }), None).await;
        assert_eq!(status, 200);
        assert_eq!(codes(&r), ["GRAPHQL_PARSE_FAILED"], "{r:.300}");
        let text = r.to_string();
        assert!(text.len() < 300, "{} bytes: {text:.400}", text.len());
        assert!(
            !text.contains("__typename"),
            "the document is not echoed: {text}"
        );
        let message = r["errors"][0]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("syntax error at line {line}, column ")),
            "{message}"
        );
        assert!(message.contains("expected"), "{message}");
        assert_eq!(r["errors"][0]["locations"][0]["line"], line, "{r}");
    }
}
