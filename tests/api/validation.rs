use serde_json::{Value, json};

use crate::kit::{
    documents::{CREATE_PRODUCT, UPDATE_PRODUCT},
    *,
};

fn assert_bad_input<T>(r: &Response<T>, field: &str, case: &str) {
    assert_eq!(r.codes(), ["BAD_USER_INPUT"], "{case}: {r}");
    assert_eq!(r.error().field(), Some(field), "{case}: {r}");
    assert!(r.raw_data().is_null(), "{case}: {r}");
}

fn account<'a>(username: &'a str, password: &'a str, email: Option<&'a str>) -> NewAccount<'a> {
    NewAccount {
        username,
        password,
        email,
    }
}

#[tokio::test]
async fn registration_rules_are_enforced_and_nothing_is_stored_on_violation() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let before = admin.user_count().await;
    let long_password = "p".repeat(129);
    let long_name = "n".repeat(33);
    let cases: Vec<(&str, &str, Option<&str>, &str)> = vec![
        ("ab", "good passphrase", None, "username"),
        (&long_name, "good passphrase", None, "username"),
        ("bad name", "good passphrase", None, "username"),
        ("bad!name", "good passphrase", None, "username"),
        ("okname", "short", None, "password"),
        ("okname", &long_password, None, "password"),
        ("okname", "good passphrase", Some("not-an-email"), "email"),
        ("okname", "good passphrase", Some("a@b"), "email"),
        ("okname", "good passphrase", Some(""), "email"),
    ];
    for (username, password, email, field) in cases {
        let r = app
            .anonymous()
            .register_account(&account(username, password, email))
            .await;
        assert_bad_input(
            &r,
            field,
            &format!("{username:.10}/{password:.10}/{email:?}"),
        );
    }
    assert_eq!(admin.user_count().await, before);

    // Boundaries are accepted: 3 and 32 characters; 128 characters of any script (8 are
    // long enough for the length rule, never for the strength estimate).
    app.user_with("abc", "ébène, sûreté, çà et là").await;
    let long_cjk: String = (0..128)
        .filter_map(|i| char::from_u32(0x4E00 + i * 37))
        .collect();
    app.user_with(&"z".repeat(32), &long_cjk).await;
    assert_eq!(admin.user_count().await, before + 2);
}

#[tokio::test]
async fn taken_usernames_and_emails_conflict_ignoring_case() {
    let app = TestApp::spawn().await;
    let anonymous = app.anonymous();
    anonymous
        .register_account(&account(
            "Taken",
            "first passphrase",
            Some("Owner@Example.com"),
        ))
        .await
        .assert_ok();

    let r = anonymous
        .register_account(&account("tAKEN", "second passphrase", None))
        .await;
    assert_eq!(r.codes(), ["CONFLICT"], "{r}");
    assert_eq!(r.error().field(), Some("username"));

    let r = anonymous
        .register_account(&account(
            "other",
            "second passphrase",
            Some("owner@example.COM"),
        ))
        .await;
    assert_eq!(r.codes(), ["CONFLICT"], "{r}");
    assert_eq!(r.error().field(), Some("email"));
    // The database's own words never reach the client.
    let text = r.body.to_string().to_lowercase();
    assert!(
        !text.contains("unique") && !text.contains("constraint") && !text.contains("accounts"),
        "{r}"
    );
}

#[tokio::test]
async fn twenty_concurrent_registrations_of_one_username_create_exactly_one_account() {
    // A hashing queue that takes all twenty at once: the unique index decides, not the queue.
    let app = TestApp::builder().password_hash_queue(100).spawn().await;
    let anonymous = app.anonymous();
    let passwords: Vec<String> = (0..20).map(|i| format!("racer passphrase {i}")).collect();
    let attempts = passwords
        .iter()
        .map(|password| anonymous.register("racer", password));
    let results = join_all(attempts).await;
    let winners = results.iter().filter(|r| r.codes().is_empty()).count();
    let conflicts = results.iter().filter(|r| r.codes() == ["CONFLICT"]).count();
    assert_eq!(winners, 1, "{results:?}");
    assert_eq!(conflicts, 19, "{results:?}");
    let admin = app.admin().await;
    let users = admin.users(Page::first(100)).await.ok();
    let racers = users.nodes.iter().filter(|n| n.username == "racer").count();
    assert_eq!(racers, 1);
}

#[tokio::test]
async fn product_rules_are_enforced_and_nothing_is_stored_on_violation() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let input = |name: &str, description: &str, price: &str, stock: i64| json!({"name": name, "description": description, "price": price, "stock": stock});
    let long_name = "n".repeat(201);
    let long_description = "d".repeat(5001);
    let cases: Vec<(Value, &str)> = vec![
        (input("   ", "", "1.00", 0), "name"),
        (input(&long_name, "", "1.00", 0), "name"),
        (input("ok", &long_description, "1.00", 0), "description"),
        (input("ok", "nul \u{0} byte", "1.00", 0), "description"),
        (input("ok", "", "-1.00", 0), "price"),
        (input("ok", "", "1.999", 0), "price"),
        (input("ok", "", "1000000000.01", 0), "price"),
        (input("ok", "", "ten", 0), "price"),
        (input("ok", "", "1e3", 0), "price"),
        (input("ok", "", "1.00", -1), "stock"),
    ];
    for (input, field) in cases {
        let r = admin
            .run(CREATE_PRODUCT, json!({ "input": input.clone() }))
            .await;
        assert_bad_input(&r, field, &format!("{input:.60}"));
    }
    assert_eq!(admin.product_count().await, 0);

    // Boundaries, and a name stored trimmed.
    let widest = input(
        &format!("  {}  ", "n".repeat(200)),
        &"d".repeat(5000),
        "1000000000",
        0,
    );
    admin
        .run(CREATE_PRODUCT, json!({ "input": widest }))
        .await
        .assert_ok();
    let r = admin
        .query(r#"mutation{ createProduct(input:{name:" Trimmed ", price: 0}){ name price stock description } }"#, json!({}))
        .await;
    r.assert_ok();
    assert_eq!(
        r.raw_data()["createProduct"],
        json!({"name": "Trimmed", "price": "0.00", "stock": 0, "description": ""})
    );
}

#[tokio::test]
async fn updates_validate_every_field_and_change_nothing_on_violation() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let id = admin.add_product("Original", "10.00").await.id;
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
        let r = admin
            .run(UPDATE_PRODUCT, json!({"id": id, "input": input}))
            .await;
        assert_bad_input(&r, field, &input.to_string());
    }
    let product = admin.product(&id).await.ok().unwrap();
    assert_eq!(
        (product.name.as_str(), product.price.as_str(), product.stock),
        ("Original", "10.00", 1)
    );
}

#[tokio::test]
async fn ids_that_name_nothing_are_not_found_in_mutations_and_null_in_queries() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let restock = ProductChanges {
        stock: Some(1),
        ..ProductChanges::default()
    };
    for id in [
        "0190a0a0-0000-7000-8000-000000000000",
        "not-a-uuid",
        "",
        "'; DROP TABLE products; --",
    ] {
        assert!(admin.product(id).await.ok().is_none(), "{id}");
        for (mutation, r) in [
            (
                "updateProduct",
                admin.update_product(id, &restock).await.into_untyped(),
            ),
            (
                "deleteProduct",
                admin.delete_product(id).await.into_untyped(),
            ),
            (
                "setUserRole",
                admin.set_user_role(id, Role::Admin).await.into_untyped(),
            ),
        ] {
            assert_eq!(r.codes(), ["NOT_FOUND"], "{mutation} {id}: {r}");
        }
    }
}

#[tokio::test]
async fn page_sizes_and_cursors_are_checked() {
    let app = TestApp::spawn().await;
    let user = app.user_with("pager", "pager passphrase").await;
    for first in [0, -1, 101] {
        let r = user.products(Page::first(first)).await;
        assert_bad_input(&r, "first", &first.to_string());
    }
    user.products(Page::first(100)).await.assert_ok();
    let r = user.products(Page::default().after(Some("garbage!"))).await;
    assert_bad_input(&r, "after", "bad cursor");
}

#[tokio::test]
async fn search_treats_wildcards_literally() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    admin.add_product("100% cotton", "5").await;
    admin.add_product("Cotton_blend", "5").await;
    admin.add_product("Wool", "5").await;
    let count = async |search: &str| admin.products(Page::search(search)).await.ok().total_count;
    assert_eq!(count("%").await, 1);
    assert_eq!(count("_").await, 1);
    assert_eq!(count("COTTON").await, 2);
    assert_eq!(count("").await, 3);
}

#[tokio::test]
async fn search_terms_over_200_characters_are_bad_input_not_a_server_error() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    admin.add_product("Kettle", "10.00").await;
    let user = app.user_with("searcher", "searcher passphrase").await;
    // The longest allowed term runs (and matches nothing); counted in characters, not bytes.
    for ok in ["k".repeat(200), "é".repeat(200)] {
        let found = user.products(Page::search(&ok)).await.ok();
        assert_eq!(found.total_count, 0);
    }
    // One more character, and terms long enough to break SQLite's LIKE (50,000 bytes), are
    // refused as input errors on `search`, with no database text.
    for long in ["k".repeat(201), "%".repeat(60_000), "é".repeat(30_000)] {
        let r = user.products(Page::search(&long)).await;
        assert_eq!(r.codes(), ["BAD_USER_INPUT"], "{r:.200}");
        assert_eq!(r.error().field(), Some("search"));
        assert!(r.error().message.contains("200"));
    }
    // The catalog is unchanged and ordinary searches still work.
    let r = user.products(Page::search("kett")).await;
    assert_eq!(r.ok().total_count, 1, "{r}");
}

#[tokio::test]
async fn malformed_documents_get_a_coded_error() {
    let app = TestApp::spawn().await;
    let user = app.user_with("syntax", "syntax passphrase").await;
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
        let r = user.query(query, variables).await;
        assert_eq!(r.codes(), [code], "{query}: {r}");
        if code.starts_with("GRAPHQL_") {
            assert!(
                r.is_request_error(),
                "a request error has no data: {query}: {r}"
            );
        }
    }
}

#[tokio::test]
async fn a_20_kb_broken_document_gets_a_short_parse_error_with_its_position() {
    let app = TestApp::spawn().await;
    // 20 KB on one line, broken at the end, then on many lines, broken in the middle.
    let one_line = format!("{{ {} ]", "__typename ".repeat(1900));
    let many_lines = format!(
        "{{\n{}  !oops\n{}}}",
        "  __typename\n".repeat(800),
        "  __typename\n".repeat(800)
    );
    for (query, line) in [(&one_line, 1), (&many_lines, 802)] {
        assert!(query.len() > 20_000);
        let r = app.anonymous().post(&json!({ "query": query })).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.codes(), ["GRAPHQL_PARSE_FAILED"], "{r:.300}");
        let text = r.body.to_string();
        assert!(text.len() < 300, "{} bytes: {text:.400}", text.len());
        assert!(
            !text.contains("__typename"),
            "the document is not echoed: {text}"
        );
        let error = r.error();
        assert!(
            error
                .message
                .starts_with(&format!("syntax error at line {line}, column ")),
            "{}",
            error.message
        );
        assert!(error.message.contains("expected"), "{}", error.message);
        let locations = error.locations.as_deref().unwrap_or_default();
        assert_eq!(locations.first().map(|l| l.line), Some(line), "{r}");
    }
}

#[tokio::test]
async fn guessable_passwords_are_refused_with_advice_at_register_and_change() {
    let app = TestApp::spawn().await;
    let advice = "this password is too easy to guess.";
    for weak in [
        "password1234",
        "123456789012",
        "iloveyou123",
        "letmein12345",
        "DanaDanaDana1",
        // Built on the account's own username and email.
        "dana.b2024!",
        "dana.b@example.com",
    ] {
        let r = app
            .anonymous()
            .register_account(&account("dana.b", weak, Some("dana.b@example.com")))
            .await;
        assert_bad_input(&r, "password", weak);
        let message = &r.error().message;
        assert!(
            message.starts_with(advice) && message.len() > advice.len() + 10,
            "{weak}: zxcvbn's feedback in {message:?}"
        );
    }
    // Nothing was stored: the username is still free.
    let dana = app.user_with("dana.b", "orbit velvet cactus tundra").await;
    let r = dana
        .change_password("orbit velvet cactus tundra", "dana.b2024!")
        .await;
    assert_bad_input(&r, "newPassword", "changePassword");
    app.anonymous()
        .login("dana.b", "orbit velvet cactus tundra")
        .await
        .assert_ok();
}
