//! Query cost is bounded before the work is done: documents are measured (fragments once,
//! list items by `first`, a batch against one budget) and refused before async-graphql
//! validates or runs them, and responses have a size ceiling.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::kit::*;

/// A generous bound for answers that take about a millisecond on an idle machine: it tells a
/// stalled server (seconds, before the cost check) from a working one. The 100 ms is
/// the benchmark's target (bench/bench.py, expensive documents), not a test's.
const ANSWERS_WITHIN: Duration = Duration::from_secs(2);

/// About 1 KB: 25 fragments, each spreading the next three times, so 3^25 (about 8.5 × 10^11)
/// fields once expanded.
fn exponential_document() -> String {
    let levels = 25;
    let mut query = String::from("query Bomb { ...F0 }\n");
    for i in 0..levels {
        let next = i + 1;
        query.push_str(&format!(
            "fragment F{i} on Query {{ ...F{next} ...F{next} ...F{next} }}\n"
        ));
    }
    query.push_str(&format!("fragment F{levels} on Query {{ __typename }}\n"));
    query
}

fn assert_too_complex(r: &Response, says: &str) {
    assert_eq!(r.codes(), ["QUERY_TOO_COMPLEX"], "{r:.400}");
    assert!(r.is_request_error(), "refused before it ran: {r:.400}");
    let message = &r.error().message;
    assert!(message.contains(says), "{message}");
}

/// Clients that keep sending one document, each answer asserted to be refused by cost, until
/// stopped.
struct Attackers {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<usize>>,
}

impl Attackers {
    fn send(app: &TestApp, query: &str, clients: usize) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients = (0..clients)
            .map(|_| {
                let (anonymous, query, stop) = (app.anonymous(), query.to_owned(), stop.clone());
                tokio::spawn(async move {
                    let mut sent = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let r = anonymous.post(&json!({ "query": query })).await;
                        assert_eq!(r.codes(), ["QUERY_TOO_COMPLEX"], "{r:.300}");
                        sent += 1;
                    }
                    sent
                })
            })
            .collect();
        Self { stop, clients }
    }

    /// Stops the clients; returns how many documents they sent.
    async fn stop(self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut sent = 0;
        for client in self.clients {
            sent += client.await.unwrap();
        }
        sent
    }
}

/// A page of `first` products with every scalar field, under `count` aliases.
fn aliased_pages(count: usize, first: usize) -> String {
    let pages: Vec<String> = (0..count)
        .map(|i| {
            format!(
                "p{i}: products(first: {first}) {{ nodes {{ id name description price stock }} }}"
            )
        })
        .collect();
    format!("{{ {} }}", pages.join(" "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exponential_fragment_document_is_refused_and_the_server_keeps_answering() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    admin.add_product("Kettle", "10.00").await;
    let user = app.user_with("ordinary", "ordinary passphrase").await;
    let bomb = exponential_document();
    assert!(bomb.len() < 1300, "{} bytes", bomb.len());

    // Alone, anonymously: refused with what it costs and the limit.
    let started = Instant::now();
    let r = app.anonymous().query(&bomb, json!({})).await;
    let refused_in = started.elapsed();
    assert_too_complex(&r, "the limit is 2000");
    assert!(refused_in < ANSWERS_WITHIN, "{refused_in:?}");
    assert_eq!(r.error().extension("limit"), 2000, "{r}");
    assert!(r.error().extension("cost").as_u64().unwrap() > 1 << 30);

    // Two clients keep sending it while /healthz and an ordinary page are read.
    let attackers = Attackers::send(&app, &bomb, 2);
    let (mut health, mut pages) = (Vec::new(), Vec::new());
    for _ in 0..40 {
        let started = Instant::now();
        let response = app.get("/healthz").await;
        assert_eq!(response.status(), 200);
        health.push(started.elapsed());

        let started = Instant::now();
        let r = user.products(Page::first(20)).await;
        pages.push(started.elapsed());
        assert_eq!(r.ok().nodes[0].name, "Kettle");
    }
    let sent = attackers.stop().await;
    assert!(sent >= 2, "the attackers ran ({sent} documents)");
    health.sort();
    pages.sort();
    eprintln!(
        "while {sent} exponential documents were refused: /healthz median {:?} max {:?}; \
         products median {:?} max {:?}; one refusal alone {refused_in:?}",
        health[health.len() / 2],
        health[health.len() - 1],
        pages[pages.len() / 2],
        pages[pages.len() - 1],
    );
    assert!(health[health.len() - 1] < ANSWERS_WITHIN, "{health:?}");
    assert!(pages[pages.len() - 1] < ANSWERS_WITHIN, "{pages:?}");
}

#[tokio::test]
async fn aliases_times_full_pages_times_a_batch_is_refused_by_cost() {
    let app = TestApp::spawn().await;
    let user = app.user_with("greedy", "greedy passphrase").await;
    // One full page with every field fits: 1 + 1 + 100 × 5 = 502.
    user.query(&aliased_pages(1, 100), json!({}))
        .await
        .assert_ok();
    // 30 aliases of it (the alias limit) cost 30 × 502.
    let r = user.query(&aliased_pages(30, 100), json!({})).await;
    assert_too_complex(&r, "costs 15060; the limit is 2000");
    // Three aliases each is 1506, under the limit alone; a batch of ten is 15060.
    let one = aliased_pages(3, 100);
    user.query(&one, json!({})).await.assert_ok();
    let batch: Vec<Value> = (0..10).map(|_| json!({ "query": one })).collect();
    let r = user.post(&Value::Array(batch)).await;
    assert_eq!(r.status, 200);
    let answers = r.batch();
    assert_eq!(answers.len(), 10);
    for answer in &answers {
        assert_too_complex(answer, "the batch costs 15060; the limit is 2000");
    }
}

#[tokio::test]
async fn a_batchs_operations_add_up_against_one_budget() {
    let app = TestApp::builder().max_complexity(100).spawn().await;
    let user = app.user_with("batcher", "batcher passphrase").await;
    // 1 + 1 + 10 × 2 = 22 each: four fit in 100 (88), five do not (110).
    let page = json!({ "query": "{ products(first: 10) { nodes { id name } } }" });
    let r = user.post(&json!([page, page, page, page])).await;
    assert_eq!(r.status, 200);
    for answer in r.batch() {
        answer.assert_ok();
    }
    let answers = user
        .post(&json!([page, page, page, page, page]))
        .await
        .batch();
    assert_eq!(answers.len(), 5);
    for answer in &answers {
        assert_too_complex(answer, "the batch costs 110; the limit is 100");
    }
    // A mutation in an over-budget batch does not run either.
    let register = json!({ "query": "mutation { register(input: {username: \"sneaky\", \
        password: \"sneaky passphrase\"}) { accessToken } }" });
    let answers = app
        .anonymous()
        .post(&json!([register, page, page, page, page, page]))
        .await
        .batch();
    assert_too_complex(&answers[0], "the batch costs");
    app.user_with("sneaky", "sneaky passphrase").await;
    // The page size can come from a variable: it counts with its value.
    let by_variable = json!({
        "query": "query($n: Int) { products(first: $n) { nodes { id name } } }",
        "variables": { "n": 50 },
    });
    let r = user.post(&by_variable).await;
    assert_too_complex(&r, "costs 102; the limit is 100");
}

#[tokio::test]
async fn fragment_cycles_are_refused_used_or_not() {
    let app = TestApp::spawn().await;
    let anonymous = app.anonymous();
    for query in [
        "{ ...A } fragment A on Query { __typename ...B } fragment B on Query { ...A }",
        "{ __typename } fragment C on Query { __typename ...C }",
    ] {
        let r = anonymous.query(query, json!({})).await;
        assert_eq!(r.codes(), ["GRAPHQL_VALIDATION_FAILED"], "{query}: {r}");
        assert!(r.is_request_error());
        let message = &r.error().message;
        assert!(message.contains("must not spread themselves"), "{message}");
    }
    let r = anonymous
        .query(
            "{ ...A } fragment A on Query { __typename ...B } fragment B on Query { ...A }",
            json!({}),
        )
        .await;
    assert!(r.text.contains("A → B → A"), "{r}");
}

#[tokio::test]
async fn introspection_lists_nested_deeper_than_the_standard_query_are_refused() {
    let app = TestApp::spawn().await;
    let anonymous = app.anonymous();
    let ok = "{ __schema { types { fields { type { fields { name } } } } } }";
    anonymous.query(ok, json!({})).await.assert_ok();
    let deeper =
        "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }";
    let r = anonymous.query(deeper, json!({})).await;
    assert_too_complex(
        &r,
        "nests introspection lists 4 deep; at most 3 are allowed",
    );
}

#[tokio::test]
async fn a_response_over_max_response_bytes_gets_a_clear_error() {
    let app = TestApp::builder().max_response_bytes(4096).spawn().await;
    let admin = app.admin().await;
    let long = "x".repeat(1500);
    for i in 0..4 {
        let product = NewProduct::new(&format!("long {i}"), "1.00").description(&long);
        admin.add(&product).await;
    }
    let query = "{ products { nodes { name description } } }";
    for accept in ["application/json", "application/graphql-response+json"] {
        let r = admin
            .with_header("Accept", accept)
            .query(query, json!({}))
            .await;
        assert!(r.text.len() < 300, "{:.400}", r.text);
        assert_eq!(r.codes(), ["RESPONSE_TOO_LARGE"], "{r}");
        assert_eq!(r.error().extension("limit"), 4096);
        assert!(r.error().message.contains("4096 bytes"));
        let expected = if accept == "application/json" {
            200
        } else {
            400
        };
        assert_eq!(r.status, expected, "{accept}");
    }
    // A batch whose parts fit but whose whole does not is refused as a whole.
    let small = json!({ "query": "{ products(first: 1) { nodes { description } } }" });
    let r = admin.post(&json!([small, small])).await;
    assert!(r.body.is_array(), "two fit: {r:.200}");
    let r = admin.post(&json!([small, small, small])).await;
    assert_eq!(r.codes(), ["RESPONSE_TOO_LARGE"], "{r:.300}");
    // Smaller answers still come through.
    let r = admin
        .query("{ products { totalCount nodes { name } } }", json!({}))
        .await;
    r.assert_ok();
    assert_eq!(r.raw_data()["products"]["totalCount"], 4);
}

#[tokio::test]
async fn the_readme_examples_cost_what_the_readme_says() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let page = "query ProductsPage { products(first: 20) { totalCount \
                edges { cursor node { id name price } } pageInfo { hasNextPage endCursor } } }";
    admin.post(&json!({ "query": page })).await.assert_ok();
    let op = |search: &str| {
        json!({ "query": format!("{{ a: products(first: 100) {{ nodes {{ id name description price stock }} }} \
            b: products(first: 100, search: \"{search}\") {{ nodes {{ id name description price stock }} }} }}") })
    };
    admin.post(&op("tea")).await.assert_ok();
    let r = admin.post(&json!([op("tea"), op("pot")])).await;
    let expected = json!({"errors": [{
        "message": "the batch costs 2008; the limit is 2000 (each field 1, list items multiplied by `first`)",
        "extensions": {"code": "QUERY_TOO_COMPLEX", "cost": 2008, "limit": 2000},
    }]});
    assert_eq!(r.body, json!([expected, expected]));
}

#[tokio::test]
async fn another_operations_variable_defaults_do_not_lower_the_cost() {
    let app = TestApp::spawn().await;
    let user = app.user_with("borrower", "borrower passphrase").await;
    let pages = (0..30)
        .map(|i| format!("a{i}: products(first: $n) {{ nodes {{ id }} }}"))
        .collect::<Vec<_>>()
        .join(" ");
    let decoy = "query D($n: Int = 1) { products(first: $n) { totalCount } }";
    // B alone is refused: 30 × (2 + 100).
    let alone = format!("query B($n: Int = 100) {{ {pages} }}");
    let r = user
        .post(&json!({ "query": alone, "operationName": "B" }))
        .await;
    assert_too_complex(&r, "costs 3060; the limit is 2000");
    // After D, whose $n defaults to 1, it costs the same and is refused the same.
    let body = json!({ "query": format!("{decoy} {alone}"), "operationName": "B" });
    let r = user.post(&body).await;
    assert_too_complex(&r, "costs 3060; the limit is 2000");
    // Without a default, B runs with the field's 20, not D's 1: 30 × (2 + 20) = 660 fits,
    // and with 80 aliases' worth in a batch of four it does not.
    let no_default = format!("{decoy} query B($n: Int) {{ {pages} }}");
    let body = json!({ "query": no_default, "operationName": "B" });
    let answers = user.post(&json!([body, body, body, body])).await.batch();
    for answer in &answers {
        assert_too_complex(answer, "the batch costs 2640; the limit is 2000");
    }
    // Through a fragment spread under D's and B's pages, alone and in a batch.
    let fragment = "fragment P on ProductConnection { nodes { id } }";
    let spread = (0..30)
        .map(|i| format!("a{i}: products(first: $n) {{ ...P }}"))
        .collect::<Vec<_>>()
        .join(" ");
    let query = format!(
        "query D($n: Int = 1) {{ products(first: $n) {{ ...P }} }} \
         query B($n: Int = 100) {{ {spread} }} {fragment}"
    );
    let d = json!({ "query": query, "operationName": "D" });
    let b = json!({ "query": query, "operationName": "B" });
    user.post(&d).await.assert_ok();
    let r = user.post(&b).await;
    assert_too_complex(&r, "costs 3060; the limit is 2000");
    let answers = user.post(&json!([d, b])).await.batch();
    answers[0].assert_ok();
    assert_too_complex(&answers[1], "costs 3060; the limit is 2000");
}

/// Posts `query` and returns the answer and its length in bytes.
async fn answer(app: &TestApp, query: &str) -> (Response, usize) {
    let r = app.anonymous().post(&json!({ "query": query })).await;
    let bytes = r.text.len();
    (r, bytes)
}

#[tokio::test]
async fn long_names_are_refused_before_validation_and_never_repeated() {
    let app = TestApp::spawn().await;
    let long = "x".repeat(129);
    let documents = [
        format!("query {long} {{ __typename }}"),
        format!("{{ ...{long} }} fragment {long} on Query {{ __typename }}"),
        format!("{{ ...F }} fragment F on {long} {{ __typename }}"),
        format!("query(${long}: Int) {{ __typename }}"),
        format!("query($n: {long}) {{ __typename }}"),
        format!("{{ {long}: __typename }}"),
        format!("{{ {long} }}"),
        format!("{{ products({long}: 1) {{ totalCount }} }}"),
        format!("{{ products(first: ${long}) {{ totalCount }} }}"),
        format!("{{ __typename @{long} }}"),
        format!("{{ __typename @skip(if: true, {long}: 1) }}"),
        format!("{{ product(id: {long}) {{ id }} }}"),
        format!("{{ product(id: {{ {long}: 1 }}) {{ id }} }}"),
        format!("query($n: Int = {long}) {{ __typename }}"),
        format!("{{ ... on {long} {{ __typename }} }}"),
    ];
    for query in &documents {
        let (r, bytes) = answer(&app, query).await;
        assert_eq!(r.codes(), ["GRAPHQL_VALIDATION_FAILED"], "{query}: {r}");
        let message = &r.error().message;
        assert!(message.contains("129 characters long"), "{message}");
        assert!(!r.text.contains(&long), "{r}");
        assert!(bytes < 300, "{bytes}");
    }
    // 128 is still a name.
    let ok = format!("query {} {{ __typename }}", "x".repeat(128));
    answer(&app, &ok).await.0.assert_ok();

    // The attacker's document: a 32 000-character operation name and 4 500 variables.
    let variables = "$a:Int ".repeat(4500);
    let attack = format!("query O{}({variables}) {{ __typename }}", "x".repeat(32000));
    let started = Instant::now();
    let (r, bytes) = answer(&app, &attack).await;
    eprintln!(
        "{} byte document with a 32 000-character name refused in {:?}, {bytes} bytes",
        attack.len(),
        started.elapsed()
    );
    assert_eq!(r.codes(), ["GRAPHQL_VALIDATION_FAILED"], "{r:.300}");
    assert!(bytes < 300, "{bytes}");
}

#[tokio::test]
async fn too_many_variables_or_arguments_are_refused_before_validation() {
    let app = TestApp::spawn().await;
    // 4 500 definitions of one variable: one error, not 4 500 duplicates.
    let variables = "$a:Int ".repeat(4500);
    let (r, bytes) = answer(&app, &format!("query O({variables}) {{ __typename }}")).await;
    assert_too_complex(&r, "declares 4500 variables; at most 50 are allowed");
    assert!(bytes < 300, "{bytes}");
    // 50 different ones are fine (validation reports them unused).
    let fifty: String = (0..50).map(|i| format!("$v{i}: Int ")).collect();
    let (r, _) = answer(&app, &format!("query O({fifty}) {{ __typename }}")).await;
    assert_eq!(
        r.codes().first(),
        Some(&"GRAPHQL_VALIDATION_FAILED"),
        "{r:.300}"
    );
    // 7 000 repeated arguments on one field, on a directive, in an input object.
    let arguments = "first: 1 ".repeat(7000);
    let (r, bytes) = answer(
        &app,
        &format!("{{ products({arguments}) {{ totalCount }} }}"),
    )
    .await;
    assert_too_complex(&r, "7000 arguments in one place; at most 50 are allowed");
    assert!(bytes < 300, "{bytes}");
    let (r, _) = answer(
        &app,
        &format!("{{ __typename @skip({}) }}", "if: true ".repeat(60)),
    )
    .await;
    assert_too_complex(&r, "60 arguments in one place");
    let fields: Vec<String> = (0..60).map(|i| format!("f{i}: 1")).collect();
    let object = format!("{{ product(id: {{ {} }}) {{ id }} }}", fields.join(" "));
    let (r, _) = answer(&app, &object).await;
    assert_too_complex(&r, "60 arguments in one place");
}

#[tokio::test]
async fn parse_errors_and_every_message_are_short_and_errors_are_capped() {
    let app = TestApp::spawn().await;
    // The parser's own message names the operation defined twice: cut short.
    let name = "x".repeat(30000);
    let twice = format!("query {name} {{ __typename }} query {name} {{ __typename }}");
    let (r, bytes) = answer(&app, &twice).await;
    assert_eq!(r.codes(), ["GRAPHQL_PARSE_FAILED"], "{r:.300}");
    assert!(bytes < 400, "{bytes}: {r:.400}");
    // 200 unknown fields: 49 errors and one counting the 151 others.
    let unknown: Vec<String> = (0..200).map(|i| format!("f{i}")).collect();
    let (r, bytes) = answer(&app, &format!("{{ {} }}", unknown.join(" "))).await;
    assert_eq!(r.errors.len(), 50, "{bytes} bytes");
    assert_eq!(r.errors[49].message, "151 more errors left out");
    for error in &r.errors {
        assert_eq!(error.code(), "GRAPHQL_VALIDATION_FAILED", "{error:?}");
        assert!(error.message.chars().count() <= 301);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_schema_per_request_and_aliased_schemas_are_refused_while_healthz_answers() {
    let app = TestApp::spawn().await;
    let anonymous = app.anonymous();
    let selection = "__schema { types { name kind description fields { name description \
                     args { name type { name } } type { name kind ofType { name kind } } } } }";
    // One is fine; 29 under aliases, or two operations of one batch, are refused.
    anonymous
        .query(&format!("{{ {selection} }}"), json!({}))
        .await
        .assert_ok();
    let aliased: Vec<String> = (0..29).map(|i| format!("s{i}: {selection}")).collect();
    let aliased = format!("{{ {} }}", aliased.join(" "));
    let r = anonymous.query(&aliased, json!({})).await;
    assert_too_complex(
        &r,
        "asks for `__schema` 29 times; once per request is allowed",
    );
    let one = json!({ "query": format!("{{ {selection} }}") });
    let answers = anonymous.post(&json!([one, one])).await.batch();
    for answer in &answers {
        assert_too_complex(answer, "the batch asks for `__schema` 2 times");
    }

    // Eight clients send the aliased document at once, again and again, while /healthz is read.
    let attackers = Attackers::send(&app, &aliased, 8);
    let mut health = Vec::new();
    for _ in 0..30 {
        let started = Instant::now();
        let response = app.get("/healthz").await;
        assert_eq!(response.status(), 200);
        health.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent = attackers.stop().await;
    assert!(sent >= 8, "the attackers ran ({sent} documents)");
    health.sort();
    eprintln!(
        "while {sent} documents of 29 aliased __schema were refused: /healthz median {:?} \
         max {:?}",
        health[health.len() / 2],
        health[health.len() - 1],
    );
    assert!(health[health.len() - 1] < ANSWERS_WITHIN, "{health:?}");
}
