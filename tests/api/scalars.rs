//! The API's own scalars as tools see them: every `DateTime` in an answer is written as
//! JavaScript's `Date.prototype.toISOString()` writes it (cut, not rounded, to the millisecond,
//! while sorting and cursors keep every digit, and filters compare times as answers show
//! them), `Decimal` is read as docs/money.md says, and each scalar's `@specifiedBy` URL leads
//! to its specification.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::kit::*;

/// Every field of type `DateTime` (or a list of it, or non-null), as `Type.field`.
async fn date_time_fields(admin: &Actor) -> Vec<String> {
    let answer = admin
        .query(
            "{ __schema { types { name fields { name type { name ofType { name ofType { name } } } } } } }",
            json!({}),
        )
        .await
        .ok();
    let mut found = Vec::new();
    for ty in answer["__schema"]["types"].as_array().unwrap() {
        for field in ty["fields"].as_array().into_iter().flatten() {
            let mut named = &field["type"];
            while named["name"].is_null() && !named["ofType"].is_null() {
                named = &named["ofType"];
            }
            if named["name"] == "DateTime" {
                found.push(format!(
                    "{}.{}",
                    ty["name"].as_str().unwrap(),
                    field["name"].as_str().unwrap()
                ));
            }
        }
    }
    found.sort();
    found
}

/// The names of the fields above: where [`date_times_in`] looks.
const DATE_TIME_NAMES: &[&str] = &["createdAt", "updatedAt", "deactivatedAt", "occurredAt"];

/// Every non-null `DateTime` in an answer, with where it was, and every time-valued audit
/// change (`deactivatedAt`'s `before` and `after`).
fn date_times_in(value: &Value, at: &str, found: &mut Vec<(String, String)>) {
    match value {
        Value::Object(object) => {
            let audited_time = object
                .get("field")
                .and_then(Value::as_str)
                .is_some_and(|field| DATE_TIME_NAMES.contains(&field));
            for (key, inner) in object {
                let here = format!("{at}.{key}");
                let is_time = DATE_TIME_NAMES.contains(&key.as_str())
                    || (audited_time && matches!(key.as_str(), "before" | "after"));
                match inner {
                    Value::String(text) if is_time => found.push((here, text.clone())),
                    _ => date_times_in(inner, &here, found),
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                date_times_in(item, &format!("{at}[{i}]"), found);
            }
        }
        _ => {}
    }
}

/// `YYYY-MM-DDTHH:mm:ss.sssZ`, character by character.
fn is_iso_string(text: &str) -> bool {
    const SHAPE: &str = "dddd-dd-ddTdd:dd:dd.dddZ";
    text.len() == SHAPE.len()
        && text.chars().zip(SHAPE.chars()).all(|(c, s)| match s {
            'd' => c.is_ascii_digit(),
            other => c == other,
        })
}

/// A stored time as `toISOString()` writes it, by chrono (not by the server's own code):
/// milliseconds, truncated, and `Z`.
fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn stored_time(app: &TestApp, sql: &str, column: &str, id: &str) -> DateTime<Utc> {
    let id = uuid::Uuid::parse_str(id).unwrap();
    let rows = app.sql_rows(sql, vec![id.into()]).await;
    rows[0].try_get::<DateTime<Utc>>("", column).unwrap()
}

#[tokio::test]
async fn every_date_time_in_an_answer_is_written_as_to_iso_string_writes_it() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    // The documents below read each of these; a new one must be added to them.
    assert_eq!(
        date_time_fields(&admin).await,
        [
            "Account.createdAt",
            "Account.deactivatedAt",
            "AuditEvent.occurredAt",
            "Product.createdAt",
            "Product.updatedAt",
            "StockChange.updatedAt"
        ]
    );

    let mut answers = Vec::new();
    let registered = app
        .anonymous()
        .query(
            r#"mutation { register(input: {username: "clockwatcher", password: "correct horse battery staple"}) {
                 account { id createdAt deactivatedAt } } }"#,
            json!({}),
        )
        .await
        .ok();
    let user_id = registered["register"]["account"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    answers.push(registered);
    let created = admin
        .query(
            r#"mutation { createProduct(input: {name: "Clock", price: "9.99"}) { id createdAt updatedAt } }"#,
            json!({}),
        )
        .await
        .ok();
    let product_id = created["createProduct"]["id"].as_str().unwrap().to_owned();
    answers.push(created);
    let vars = json!({ "product": product_id, "user": user_id });
    // The stock events of the two changes below, over a WebSocket.
    let mut stock = WsClient::signed_in(&app, &admin).await;
    stock
        .subscribe(
            "stock",
            "subscription($product: ID!) { stockChanged(productIds: [$product]) { updatedAt } }",
            vars.clone(),
        )
        .await;
    let listening = within(PATIENCE, async || app.subscriber_count() == 1).await;
    assert!(listening.is_some(), "the subscription did not start");
    for mutation in [
        "mutation($product: ID!) { updateProduct(id: $product, input: {stock: 3}) { createdAt updatedAt } }",
        "mutation($product: ID!) { adjustStock(id: $product, delta: 2) { createdAt updatedAt } }",
        "mutation($user: ID!) { deactivateAccount(userId: $user) { createdAt deactivatedAt } }",
    ] {
        answers.push(admin.query(mutation, vars.clone()).await.ok());
    }
    let read = admin
        .query(
            "query($product: ID!, $user: ID!) {
               account { createdAt deactivatedAt }
               product(id: $product) {
                 createdAt updatedAt createdBy { createdAt }
                 history { nodes { occurredAt changes { field before after } } }
               }
               node(id: $product) { ... on Product { createdAt updatedAt } }
               nodes(ids: [$product, $user]) {
                 ... on Product { createdAt updatedAt }
                 ... on Account { createdAt deactivatedAt }
               }
               products(first: 100) { edges { node { createdAt updatedAt } } nodes { createdAt } }
               users(first: 100) { edges { node { createdAt deactivatedAt } } nodes { createdAt deactivatedAt } }
               auditEvents(first: 100) { edges { node { occurredAt } } nodes { id occurredAt changes { field before after } } }
             }",
            vars.clone(),
        )
        .await
        .ok();
    answers.push(read.clone());
    let stock_events = [
        stock.next_of("stock").await["data"].clone(),
        stock.next_of("stock").await["data"].clone(),
    ];
    answers.extend(stock_events.iter().cloned());

    let mut found = Vec::new();
    for (i, answer) in answers.iter().enumerate() {
        date_times_in(answer, &format!("answer {i}"), &mut found);
    }
    for name in DATE_TIME_NAMES {
        assert!(
            found
                .iter()
                .any(|(at, _)| at.ends_with(&format!(".{name}"))),
            "no {name} was read: {found:?}"
        );
    }
    assert!(
        found.iter().any(|(at, _)| at.ends_with(".after")),
        "no time-valued audit change was read"
    );
    for (at, text) in &found {
        assert!(is_iso_string(text), "{at} is {text:?}");
    }

    // Each is the stored time, cut to the millisecond: the same in every answer, whether made
    // from the value the server just wrote or from the row read back.
    let product_created = stored_time(
        &app,
        "SELECT created_at FROM products WHERE id = $1",
        "created_at",
        &product_id,
    )
    .await;
    let product_updated = stored_time(
        &app,
        "SELECT updated_at FROM products WHERE id = $1",
        "updated_at",
        &product_id,
    )
    .await;
    let user_created = stored_time(
        &app,
        "SELECT created_at FROM accounts WHERE id = $1",
        "created_at",
        &user_id,
    )
    .await;
    let user_deactivated = stored_time(
        &app,
        "SELECT deactivated_at FROM accounts WHERE id = $1",
        "deactivated_at",
        &user_id,
    )
    .await;
    let product = &read["product"];
    assert_eq!(product["createdAt"], iso(product_created));
    assert_eq!(product["updatedAt"], iso(product_updated));
    assert_eq!(
        answers[1]["createProduct"]["createdAt"],
        iso(product_created)
    );
    assert_eq!(answers[3]["adjustStock"]["updatedAt"], iso(product_updated));
    assert_eq!(
        stock_events[0]["stockChanged"]["updatedAt"],
        answers[2]["updateProduct"]["updatedAt"]
    );
    assert_eq!(
        stock_events[1]["stockChanged"]["updatedAt"],
        iso(product_updated)
    );
    assert_eq!(
        answers[0]["register"]["account"]["createdAt"],
        iso(user_created)
    );
    let deactivated = &answers[4]["deactivateAccount"];
    assert_eq!(deactivated["createdAt"], iso(user_created));
    assert_eq!(deactivated["deactivatedAt"], iso(user_deactivated));
    let events = read["auditEvents"]["nodes"].as_array().unwrap();
    let deactivation = events
        .iter()
        .find(|event| event["changes"][0]["field"] == "deactivatedAt")
        .expect("the deactivation's record");
    assert_eq!(deactivation["changes"][0]["after"], iso(user_deactivated));
    for event in events {
        let id = event["id"].as_str().unwrap();
        let occurred = stored_time(
            &app,
            "SELECT occurred_at FROM audit_events WHERE id = $1",
            "occurred_at",
            id,
        )
        .await;
        assert_eq!(event["occurredAt"], iso(occurred));
    }
}

/// Sets a product's creation time in the database (a time the server never wrote).
async fn set_created_at(app: &TestApp, id: &str, at: &str) {
    let at: DateTime<Utc> = at.parse().unwrap();
    let id = uuid::Uuid::parse_str(id).unwrap();
    let changed = app
        .sql(
            "UPDATE products SET created_at = $1 WHERE id = $2",
            vec![at.into(), id.into()],
        )
        .await;
    assert_eq!(changed, 1);
}

#[tokio::test]
async fn answers_cut_times_to_the_millisecond_while_order_and_cursors_keep_every_digit() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    // Created first, so first by id; but created later, by less than a millisecond.
    let later = admin.add_product("Tick later", "1.00").await;
    let earlier = admin.add_product("Tick earlier", "1.00").await;
    set_created_at(&app, &later.id, "2026-01-05T09:12:44.123700Z").await;
    set_created_at(&app, &earlier.id, "2026-01-05T09:12:44.123300Z").await;

    // Cut, never rounded (.1237 would round to .124).
    let read = admin.product(&later.id).await.ok().expect("the product");
    assert_eq!(read.created_at, "2026-01-05T09:12:44.123Z");
    let read = admin.product(&earlier.id).await.ok().expect("the product");
    assert_eq!(read.created_at, "2026-01-05T09:12:44.123Z");

    let list = |order: &str| {
        ListArgs::sorted("CREATED_AT", order).filter(json!({ "nameContains": "Tick" }))
    };
    let names = |page: &types::Connection<Product>| page.map(|p| p.name.clone());
    // Sorted on the stored times, not on the text (equal) and then the id (the other way).
    let ascending = admin.product_list(&list("ASC").first(10)).await.ok();
    assert_eq!(names(&ascending), ["Tick earlier", "Tick later"]);
    let descending = admin.product_list(&list("DESC").first(10)).await.ok();
    assert_eq!(names(&descending), ["Tick later", "Tick earlier"]);

    // A cursor carries the stored time: paging one at a time gives the same order.
    let first = admin.product_list(&list("ASC").first(1)).await.ok();
    assert_eq!(names(&first), ["Tick earlier"]);
    let cursor = first.page_info.end_cursor.clone().expect("a cursor");
    let second = admin
        .product_list(&list("ASC").first(1).after(Some(&cursor)))
        .await
        .ok();
    assert_eq!(names(&second), ["Tick later"]);
    assert!(!second.page_info.has_next_page);

    // Filters compare times as answers show them: both products are shown at .123, so that
    // millisecond is not after nor before them, whatever digits the bound has.
    let filtered = async |filter: Value| {
        let mut filter = filter;
        filter["nameContains"] = json!("Tick");
        let args = ListArgs::sorted("CREATED_AT", "ASC")
            .filter(filter)
            .first(10);
        names(&admin.product_list(&args).await.ok())
    };
    let both = ["Tick earlier", "Tick later"];
    let none: [&str; 0] = [];
    for (filter, kept) in [
        (
            json!({ "createdAfter": "2026-01-05T09:12:44.122Z" }),
            &both[..],
        ),
        (
            json!({ "createdAfter": "2026-01-05T09:12:44.123Z" }),
            &none[..],
        ),
        (
            json!({ "createdAfter": "2026-01-05T09:12:44.1229Z" }),
            &both[..],
        ),
        (
            json!({ "createdAfter": "2026-01-05T09:12:44.1235Z" }),
            &none[..],
        ),
        (
            json!({ "createdBefore": "2026-01-05T09:12:44.124Z" }),
            &both[..],
        ),
        (
            json!({ "createdBefore": "2026-01-05T09:12:44.123Z" }),
            &none[..],
        ),
        (
            json!({ "createdBefore": "2026-01-05T09:12:44.1231Z" }),
            &both[..],
        ),
        // An offset is read as the instant it names.
        (
            json!({ "createdAfter": "2026-01-05T10:12:44.122+01:00" }),
            &both[..],
        ),
        (
            json!({ "createdBefore": "2026-01-05T10:12:44.123+01:00" }),
            &none[..],
        ),
    ] {
        assert_eq!(filtered(filter.clone()).await, kept, "{filter}");
    }
}

/// Audit records kept from before times were written this way show them this way too.
#[tokio::test]
async fn times_in_older_audit_records_are_shown_as_date_times_are_now() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let user = app.user("sleeper").await;
    admin.deactivate_account(user.id()).await.ok();
    let old = r#"[{"field":"deactivatedAt","before":null,"after":"2026-01-05T09:12:44.127361902+00:00"}]"#;
    let changed = app
        .sql(
            "UPDATE audit_events SET changes = $1 WHERE action = 'account.deactivate'",
            vec![old.into()],
        )
        .await;
    assert_eq!(changed, 1);
    let events = admin
        .audit_events(Page::first(10), json!({ "action": "account.deactivate" }))
        .await
        .ok();
    assert_eq!(
        events.nodes[0].changes,
        [AuditChange::new(
            "deactivatedAt",
            None,
            Some("2026-01-05T09:12:44.127Z")
        )]
    );
}

/// The examples of docs/money.md: `(sent, read as)`, `None` for a refusal.
fn money_examples() -> Vec<(String, Option<String>)> {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/money.md"))
        .expect("docs/money.md exists");
    let (_, examples) = page
        .split_once("\n## Examples\n")
        .expect("an Examples section");
    examples
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<_> = line.split('|').map(str::trim).collect();
            let code = |cell: &str| cell.trim_matches('`').to_owned();
            let read_as = match cells[2] {
                "refused" => None,
                cell => Some(serde_json::from_str::<String>(&code(cell)).expect("a JSON string")),
            };
            (code(cells[1]), read_as)
        })
        .collect()
}

/// docs/money.md's table, row by row: each value sent exactly as written (a JSON number is
/// not read and written again by the test) as a new product's price.
#[tokio::test]
async fn decimal_inputs_are_read_as_docs_money_says() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let examples = money_examples();
    assert!(examples.len() >= 20, "the table was not read: {examples:?}");
    assert!(examples.iter().any(|(_, read)| read.is_none()));
    for (sent, read_as) in examples {
        let body = format!(
            r#"{{"query": "mutation($price: Decimal!) {{ createProduct(input: {{name: \"Money\", price: $price}}) {{ price }} }}", "variables": {{"price": {sent}}}}}"#
        );
        let answer = admin.post_raw(Some("application/json"), None, &body).await;
        match read_as {
            Some(price) => {
                assert_eq!(
                    answer.raw_data()["createProduct"]["price"],
                    price,
                    "{sent}: {answer}"
                );
            }
            None => {
                assert_eq!(answer.raw_data(), &Value::Null, "{sent}: {answer}");
                assert_eq!(answer.error().code(), "BAD_USER_INPUT", "{sent}: {answer}");
                assert_eq!(answer.error().field(), Some("price"), "{sent}: {answer}");
            }
        }
    }
}

/// Each scalar's `specifiedByURL` leads to its specification: RFC 3339 for `DateTime`, and for
/// `Decimal` docs/money.md, which the relative URL finds both beside `schema.graphql` and on
/// the server, resolved against the API's URL.
#[tokio::test]
async fn specified_by_urls_lead_to_the_specifications() {
    let app = TestApp::spawn().await;
    let answer = app
        .anonymous()
        .query(
            r#"{ dateTime: __type(name: "DateTime") { specifiedByURL }
                 decimal: __type(name: "Decimal") { specifiedByURL } }"#,
            json!({}),
        )
        .await
        .ok();
    assert_eq!(
        answer["dateTime"]["specifiedByURL"],
        "https://datatracker.ietf.org/doc/html/rfc3339"
    );
    let url = answer["decimal"]["specifiedByURL"].as_str().unwrap();
    let page = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(url))
        .unwrap_or_else(|e| panic!("{url} beside schema.graphql: {e}"));
    assert!(page.starts_with("# Money: the `Decimal` scalar"));

    let endpoint = reqwest::Url::parse(&format!("http://{}/graphql", app.addr())).unwrap();
    let served = endpoint.join(url).unwrap();
    assert_eq!(served.path(), "/docs/money.md");
    let response = reqwest::get(served).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(response.text().await.unwrap(), page);
}
