//! Persisted queries over HTTP: automatic persisted queries (APQ) as Apollo Client's
//! `PersistedQueryLink` and urql's `persistedExchange` send them (a hash-only request, then the
//! document with its hash when the server does not know it), over POST and GET, in a bounded
//! store, never past the cost limits; and trusted documents (`TRUSTED_DOCUMENTS`), which run only
//! a manifest's operations.

use reqwest::Method;
use serde_json::{Value, json};

use crate::kit::{
    documents::{CREATE_PRODUCT, LOGIN},
    *,
};

const JSON: &str = "application/json";
const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// APQ's `extensions` naming `document` by its hash.
fn apq(document: &str) -> Value {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": sha256_hex(document) } })
}

/// The body of a hash-only request (what the clients send first).
fn hash_only(document: &str, variables: Value) -> Value {
    json!({ "variables": variables, "extensions": apq(document) })
}

/// The body that sends `document` with its hash (what the clients send after a miss).
fn with_hash(document: &str, variables: Value) -> Value {
    json!({ "query": document, "variables": variables, "extensions": apq(document) })
}

/// A GET of `/graphql` with these URL parameters, as the clients send hashed queries.
async fn get(caller: &TestApp, params: &[(&str, String)], accept: &str) -> Response {
    let request = caller
        .request(Method::GET, "/graphql")
        .query(params)
        .header("Accept", accept);
    Response::send(request).await
}

/// GET parameters of a hash-only request.
fn hash_only_params(document: &str, variables: Value) -> Vec<(&'static str, String)> {
    vec![
        ("variables", variables.to_string()),
        ("extensions", apq(document).to_string()),
    ]
}

fn assert_not_found(r: &Response) {
    assert_eq!(r.codes(), ["PERSISTED_QUERY_NOT_FOUND"], "{r:?}");
    // urql's persistedExchange recognises the miss by this message alone.
    assert_eq!(r.error().message, "PersistedQueryNotFound");
    assert!(r.is_request_error(), "nothing ran: {r:?}");
}

const COUNT: &str = "query Count { products { totalCount } }";

#[tokio::test]
async fn an_unknown_hash_is_not_found_until_the_document_is_sent_with_it() {
    let app = TestApp::spawn().await;
    let user = app.user("apq_user").await;

    // The answer both clients recognise, with the status each format calls for.
    for (accept, status) in [(GRAPHQL_RESPONSE, 400), (JSON, 200)] {
        let r = user
            .with_header("Accept", accept)
            .post(&hash_only(COUNT, json!({})))
            .await;
        assert_not_found(&r);
        assert_eq!(r.status, status, "{accept}: {r:?}");
    }
    let r = get(&app, &hash_only_params(COUNT, json!({})), GRAPHQL_RESPONSE).await;
    assert_not_found(&r);
    assert_eq!(r.status, 400);

    let sent = user.post(&with_hash(COUNT, json!({}))).await;
    sent.assert_ok();
    let by_hash = user.post(&hash_only(COUNT, json!({}))).await;
    assert_eq!(by_hash.body, sent.body, "the hash runs the document");
    assert_eq!(by_hash.status, 200);
}

#[tokio::test]
async fn get_with_extensions_runs_hashed_queries_and_refuses_hashed_mutations() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let bearer = format!("Bearer {}", admin.token());
    let get_as_admin = |params: Vec<(&'static str, String)>| {
        let request = app
            .request(Method::GET, "/graphql")
            .query(&params)
            .header("Accept", GRAPHQL_RESPONSE)
            .header("Authorization", bearer.clone());
        Response::send(request)
    };

    // A query registered over GET (the document and its hash in the URL), then run by hash.
    let mut params = hash_only_params(COUNT, json!({}));
    params.push(("query", COUNT.to_owned()));
    let registered = get_as_admin(params).await;
    registered.assert_ok();
    let r = get_as_admin(hash_only_params(COUNT, json!({}))).await;
    assert_eq!(r.body, registered.body);
    let r = admin.post(&hash_only(COUNT, json!({}))).await;
    assert_eq!(r.body, registered.body, "remembered for POST too");

    // A mutation is never run over GET, whether sent or named by its hash.
    let create = CREATE_PRODUCT.document;
    let variables = json!({ "input": NewProduct::new("Hashed", "1.00") });
    let mut params = hash_only_params(create, variables.clone());
    params.push(("query", create.to_owned()));
    let r = get_as_admin(params).await;
    assert_eq!(r.status, 405, "{r:?}");
    assert_eq!(r.header("allow"), Some("POST"));
    let r = admin.post(&hash_only(create, variables.clone())).await;
    assert_not_found(&r); // and the refused GET registered nothing
    admin
        .post(&with_hash(create, variables.clone()))
        .await
        .assert_ok();
    let r = get_as_admin(hash_only_params(create, variables.clone())).await;
    assert_eq!(r.status, 405, "a hashed mutation over GET: {r:?}");
    assert_eq!(r.codes(), ["METHOD_NOT_ALLOWED"]);
    assert_eq!(admin.product_count().await, 1, "created once, by the POST");
    let r = admin.post(&hash_only(create, variables)).await;
    r.assert_ok();
    assert_eq!(admin.product_count().await, 2, "POST runs it by hash");
}

/// Every `Vary` the answer names, lower-cased, across all its `Vary` headers.
fn varies_with(r: &Response) -> Vec<String> {
    r.headers
        .get_all("vary")
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect()
}

#[tokio::test]
async fn a_signed_in_answer_to_a_get_is_kept_by_no_cache_and_every_get_varies_with_the_caller() {
    let app = TestApp::spawn().await;
    let user = app.user("apq_cache").await;
    user.post(&with_hash(COUNT, json!({}))).await.assert_ok();
    let url_of_the_hash = hash_only_params(COUNT, json!({}));

    // The same URL for a signed-in caller and an anonymous one: a cache keyed on the URL alone
    // would give the first caller's answer to the second.
    let signed_in = Response::send(
        app.request(Method::GET, "/graphql")
            .query(&url_of_the_hash)
            .header("Accept", GRAPHQL_RESPONSE)
            .header("Authorization", format!("Bearer {}", user.token())),
    )
    .await;
    signed_in.assert_ok();
    assert_eq!(
        signed_in.header("cache-control"),
        Some("private, no-store"),
        "{signed_in:?}"
    );
    let anonymous = get(&app, &url_of_the_hash, GRAPHQL_RESPONSE).await;
    assert_eq!(anonymous.codes(), ["UNAUTHENTICATED"], "{anonymous:?}");
    for r in [&signed_in, &anonymous] {
        let vary = varies_with(r);
        assert!(
            vary.contains(&"authorization".to_owned()) && vary.contains(&"accept".to_owned()),
            "{vary:?}"
        );
    }

    // Refusals and documents sent in full vary the same way.
    let mut with_document = url_of_the_hash.clone();
    with_document.push(("query", COUNT.to_owned()));
    let sent_in_full = get(&app, &with_document, JSON).await;
    let not_acceptable = get(&app, &url_of_the_hash, "text/csv").await;
    assert_eq!(not_acceptable.status, 406);
    for r in [&sent_in_full, &not_acceptable] {
        assert!(
            varies_with(r).contains(&"authorization".to_owned()),
            "{r:?}"
        );
    }
}

#[tokio::test]
async fn a_hash_that_is_not_the_documents_or_a_bad_version_is_refused_and_registers_nothing() {
    let app = TestApp::spawn().await;
    let user = app.user("apq_mismatch").await;
    let other = "query Other { products { totalCount } __typename }";
    let lying = json!({ "query": other, "extensions": apq(COUNT) });
    let r = user.post(&lying).await;
    assert_eq!(r.codes(), ["BAD_USER_INPUT"], "{r:?}");
    assert_eq!(
        r.error().field(),
        Some("extensions.persistedQuery.sha256Hash")
    );
    assert!(r.is_request_error(), "nothing ran: {r:?}");
    assert_not_found(&user.post(&hash_only(COUNT, json!({}))).await);
    assert_not_found(&user.post(&hash_only(other, json!({}))).await);

    let r = user
        .post(&json!({ "extensions": { "persistedQuery": { "version": 1, "sha256Hash": "abc" } } }))
        .await;
    assert_eq!(r.codes(), ["BAD_USER_INPUT"], "{r:?}");
    assert!(r.error().message.contains("64 hexadecimal digits"), "{r:?}");

    let mut v2 = with_hash(COUNT, json!({}));
    v2["extensions"]["persistedQuery"]["version"] = json!(2);
    let r = user.post(&v2).await;
    assert_eq!(r.codes(), ["BAD_USER_INPUT"], "{r:?}");
    assert_eq!(r.error().field(), Some("extensions.persistedQuery.version"));
    assert_eq!(
        r.error().message,
        "persisted query version 2 is not supported; use version 1"
    );
    assert_not_found(&user.post(&hash_only(COUNT, json!({}))).await);

    // Malformed parameters are a 400 before any operation, as for `query`.
    let r = user
        .post(&json!({ "extensions": { "persistedQuery": "yes" } }))
        .await;
    assert_eq!((r.status, r.codes()), (400, vec!["BAD_REQUEST"]), "{r:?}");
    let r = user
        .post(&json!({ "query": COUNT, "documentId": sha256_hex(COUNT) }))
        .await;
    assert_eq!((r.status, r.codes()), (400, vec!["BAD_REQUEST"]), "{r:?}");
}

#[tokio::test]
async fn a_hash_is_read_as_hexadecimal_digits_only() {
    let app = TestApp::spawn().await;
    let user = app.user("apq_hex").await;
    // A document whose hash has a byte below 0x10, written `0x` in hex: a lenient number parser
    // reads `+x` as the same byte.
    let (document, hash, zero) = (0..)
        .map(|n| {
            let document = format!("query Hex{n} {{ __typename }}");
            let hash = sha256_hex(&document);
            (document, hash)
        })
        .find_map(|(document, hash)| {
            let zero = (0..64).step_by(2).find(|&i| hash.as_bytes()[i] == b'0')?;
            Some((document, hash, zero))
        })
        .unwrap();
    user.post(&with_hash(&document, json!({})))
        .await
        .assert_ok();
    user.post(&hash_only(&document, json!({})))
        .await
        .assert_ok();

    // Strings of the right length that are not 64 hexadecimal digits name nothing.
    let mut signed = hash.clone();
    signed.replace_range(zero..zero + 1, "+");
    let cases = [
        signed,
        format!("{} ", &hash[..63]),
        format!("g{}", &hash[1..]),
        format!("-{}", &hash[1..]),
        format!("0x{}", &hash[2..]),
    ];
    for fake in cases {
        assert_eq!(fake.len(), 64);
        let body =
            json!({ "extensions": { "persistedQuery": { "version": 1, "sha256Hash": fake } } });
        let r = user.post(&body).await;
        assert_eq!(r.codes(), ["BAD_USER_INPUT"], "{fake:?}: {r:?}");
        assert_eq!(
            r.error().field(),
            Some("extensions.persistedQuery.sha256Hash"),
            "{fake:?}"
        );
        assert!(r.is_request_error(), "nothing ran for {fake:?}: {r:?}");
    }
}

/// Two product lists under aliases, each `$first` long: cheap with `first: 1`, over a budget of
/// 100 with `first: 100`.
const PAGES: &str = "query Pages($first: Int) { a: products(first: $first) { nodes { id name } } \
                     b: products(first: $first) { nodes { id name } } }";

#[tokio::test]
async fn a_hash_never_runs_past_the_limits_the_document_would_meet() {
    let app = TestApp::builder().max_complexity(100).spawn().await;
    let user = app.user("apq_limits").await;

    // A document over the limits is refused with its hash, and not remembered.
    let too_deep = "query Deep { account { id } products(first: 100) { nodes { id name price } } }";
    let r = user.post(&with_hash(too_deep, json!({}))).await;
    assert_eq!(r.codes(), ["QUERY_TOO_COMPLEX"], "{r:?}");
    assert_not_found(&user.post(&hash_only(too_deep, json!({}))).await);

    // A document whose cost depends on its variables: remembered when cheap, and measured
    // again, with the variables sent, each time its hash is used.
    user.post(&with_hash(PAGES, json!({ "first": 1 })))
        .await
        .assert_ok();
    user.post(&hash_only(PAGES, json!({ "first": 1 })))
        .await
        .assert_ok();
    let sent = user
        .post(&json!({ "query": PAGES, "variables": { "first": 100 } }))
        .await;
    let by_hash = user.post(&hash_only(PAGES, json!({ "first": 100 }))).await;
    assert_eq!(sent.codes(), ["QUERY_TOO_COMPLEX"], "{sent:?}");
    assert_eq!(by_hash.status, sent.status);
    assert_eq!(
        by_hash.body, sent.body,
        "refused the same as the document itself"
    );
    let over_get = get(
        &app,
        &hash_only_params(PAGES, json!({ "first": 100 })),
        GRAPHQL_RESPONSE,
    )
    .await;
    assert_eq!(over_get.codes(), ["QUERY_TOO_COMPLEX"], "{over_get:?}");

    // In a batch, hashes share the batch's one budget like documents.
    let batch = json!([
        hash_only(PAGES, json!({ "first": 20 })),
        hash_only(PAGES, json!({ "first": 20 })),
        hash_only(PAGES, json!({ "first": 20 })),
    ]);
    let r = user.post(&batch).await;
    let answers = r.batch();
    assert_eq!(answers.len(), 3);
    for answer in answers {
        assert_eq!(answer.codes(), ["QUERY_TOO_COMPLEX"], "{answer:?}");
        assert!(
            answer.error().message.starts_with("the batch costs"),
            "{answer:?}"
        );
    }
}

#[tokio::test]
async fn a_batch_answers_each_hash_on_its_own() {
    let app = TestApp::spawn().await;
    let user = app.user("apq_batch").await;
    user.post(&with_hash(COUNT, json!({}))).await.assert_ok();
    let unknown = "query Unknown { __typename }";
    let r = user
        .post(&json!([
            hash_only(COUNT, json!({})),
            hash_only(unknown, json!({}))
        ]))
        .await;
    let answers = r.batch();
    answers[0].assert_ok();
    assert_not_found(&answers[1]);
}

/// `/metrics`' value of the gauge `name`.
async fn gauge(app: &TestApp, name: &str) -> u64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}

/// How many of `documents` the server still runs by hash alone.
async fn remembered(caller: &Actor, documents: &[String]) -> usize {
    let mut found = 0;
    for document in documents {
        let r = caller.post(&hash_only(document, json!({}))).await;
        if r.is_ok() {
            found += 1;
        } else {
            assert_not_found(&r);
        }
    }
    found
}

#[tokio::test]
async fn a_flood_of_distinct_documents_stays_within_the_documents_bound_and_keeps_those_in_use() {
    const MAX: usize = 50;
    let app = TestApp::builder().apq_max_documents(MAX).spawn().await;
    let caller = app.anonymous();
    let hot = "query Hot { __typename }";
    caller.post(&with_hash(hot, json!({}))).await.assert_ok();
    let flood: Vec<String> = (0..10 * MAX)
        .map(|i| format!("query Flood{i} {{ __typename }}"))
        .collect();
    for (i, document) in flood.iter().enumerate() {
        caller
            .post(&with_hash(document, json!({})))
            .await
            .assert_ok();
        if i % 10 == 0 {
            caller.post(&hash_only(hot, json!({}))).await.assert_ok();
        }
        assert!(gauge(&app, "storefront_apq_documents").await <= MAX as u64);
    }
    caller.post(&hash_only(hot, json!({}))).await.assert_ok();
    let kept = remembered(&caller, &flood).await;
    assert!(kept > 0, "the store still keeps documents");
    assert!(
        kept < MAX,
        "{kept} of the flood kept, beside the document in use"
    );
    assert_eq!(
        gauge(&app, "storefront_apq_documents").await,
        kept as u64 + 1,
        "the gauge counts what is answered by hash"
    );
}

#[tokio::test]
async fn a_flood_of_long_documents_stays_within_the_bytes_bound() {
    const MAX_BYTES: usize = 65_536;
    let app = TestApp::builder()
        .apq_max_documents(10_000)
        .apq_max_bytes(MAX_BYTES)
        .spawn()
        .await;
    let caller = app.anonymous();
    // About 4 KB each: a comment makes a document long without making it cost more.
    let padding = format!("# {}\n", "padding ".repeat(500));
    let flood: Vec<String> = (0..100)
        .map(|i| format!("{padding}query Long{i} {{ __typename }}"))
        .collect();
    for document in &flood {
        caller
            .post(&with_hash(document, json!({})))
            .await
            .assert_ok();
    }
    let bytes = gauge(&app, "storefront_apq_bytes").await;
    assert!(bytes <= MAX_BYTES as u64, "{bytes} bytes kept");
    let kept = remembered(&caller, &flood).await;
    assert!(kept * flood[0].len() <= MAX_BYTES, "{kept} documents kept");
    assert!(kept >= 4, "{kept} documents kept");
    assert_eq!(gauge(&app, "storefront_apq_documents").await, kept as u64);
}

#[tokio::test]
async fn with_apq_off_a_hash_only_request_is_not_supported_and_documents_still_run() {
    let app = TestApp::builder().apq_max_documents(0).spawn().await;
    let user = app.user("apq_off").await;
    let r = user.post(&hash_only(COUNT, json!({}))).await;
    assert_eq!(r.codes(), ["PERSISTED_QUERY_NOT_SUPPORTED"], "{r:?}");
    // What makes Apollo Client and urql stop sending hashes.
    assert_eq!(r.error().message, "PersistedQueryNotSupported");
    user.post(&with_hash(COUNT, json!({}))).await.assert_ok();
    let r = user.post(&hash_only(COUNT, json!({}))).await;
    assert_eq!(r.codes(), ["PERSISTED_QUERY_NOT_SUPPORTED"]);
}

#[tokio::test]
async fn an_idempotency_key_covers_a_mutation_sent_by_hash_and_by_document_alike() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let keyed = admin.with_header("Idempotency-Key", "apq-create");
    let create = CREATE_PRODUCT.document;
    let variables = json!({ "input": NewProduct::new("Once", "1.00") });
    // The first attempt misses (nothing ran, the key is given back), the client sends the
    // document, and then retries by hash, as APQ clients do.
    assert_not_found(&keyed.post(&hash_only(create, variables.clone())).await);
    let first = keyed.post(&with_hash(create, variables.clone())).await;
    first.assert_ok();
    assert_eq!(first.header("idempotent-replayed"), None);
    // The same operation however it is named and written: by hash, with the hash, without it
    // (a client that turned APQ off after a failure), keys in another order, white space, a
    // null operation name or empty extensions.
    let plain = json!({ "query": create, "variables": variables });
    let by_hand = format!(
        "{{ \"variables\" : {variables} ,\n \"extensions\": {{}}, \"operationName\": null, \"query\": {} }}",
        json!(create)
    );
    for retry in [
        hash_only(create, variables.clone()).to_string(),
        with_hash(create, variables.clone()).to_string(),
        plain.to_string(),
        by_hand,
    ] {
        let again = keyed.post_raw(Some(JSON), None, &retry).await;
        assert_eq!(
            again.header("idempotent-replayed"),
            Some("true"),
            "{retry}: {again:?}"
        );
        assert_eq!(again.body, first.body);
    }
    assert_eq!(admin.product_count().await, 1, "created once");
    // Another operation under the same key is still another request, however it is sent.
    let other = json!({ "input": NewProduct::new("Twice", "1.00") });
    for retry in [
        hash_only(create, other.clone()),
        json!({ "query": create, "variables": other }),
        json!({ "query": format!("{create} "), "variables": variables }),
    ] {
        let r = keyed.post(&retry).await;
        assert_eq!(r.status, 422, "{retry}: {r:?}");
        assert_eq!(r.codes(), ["CONFLICT"], "{r:?}");
    }
    assert_eq!(
        admin.product_count().await,
        1,
        "nothing ran under the reused key"
    );
}

#[tokio::test]
async fn a_keyed_retry_by_a_hash_the_replica_does_not_know_gets_the_stored_answer() {
    let app = TestApp::spawn().await;
    // Another replica, which never saw the document, and one with APQ off.
    let knows_nothing = app.replica().await;
    let apq_off = app
        .replica_with(TestApp::builder().apq_max_documents(0))
        .await;
    let admin = app.admin().await;
    let create = CREATE_PRODUCT.document;
    let variables = json!({ "input": NewProduct::new("Retried", "1.00") });
    for (i, replica) in [&knows_nothing, &apq_off].into_iter().enumerate() {
        let key = format!("apq-retry-{i}");
        let keyed = admin.with_header("Idempotency-Key", &key);
        let first = keyed.post(&with_hash(create, variables.clone())).await;
        first.assert_ok();
        // The answer was lost; the client retries by hash alone, and a load balancer sends the
        // retry to a replica that does not know the hash: the key still names the request that
        // ran, and its answer comes back instead of a conflict.
        let again = keyed
            .on(replica)
            .post(&hash_only(create, variables.clone()))
            .await;
        assert_eq!(again.status, 200, "replica {i}: {again:?}");
        assert_eq!(
            again.header("idempotent-replayed"),
            Some("true"),
            "{again:?}"
        );
        assert_eq!(again.body, first.body);
    }
    // Read from the database: the replicas' catalog caches catch up only at their poll.
    assert_eq!(stored_products(&app).await, 2, "each created once");

    // A hash the replica does not know under a fresh key: nothing ran, the key is given back,
    // and the document sent next runs under it.
    let keyed = admin
        .with_header("Idempotency-Key", "apq-fresh")
        .on(&knows_nothing);
    let other = json!({ "input": NewProduct::new("Fresh", "1.00") });
    let miss = keyed.post(&hash_only(create, other.clone())).await;
    assert_eq!(miss.codes(), ["PERSISTED_QUERY_NOT_FOUND"], "{miss:?}");
    let ran = keyed.post(&with_hash(create, other)).await;
    ran.assert_ok();
    assert_eq!(ran.header("idempotent-replayed"), None);
    assert_eq!(stored_products(&app).await, 3);
}

/// Products in the database (read past the API, which runs only listed documents here).
async fn stored_products(app: &TestApp) -> i64 {
    app.sql_count("SELECT COUNT(*) AS n FROM products", vec![])
        .await
}

/// A GraphQL Code Generator `persisted-documents.json` listing `documents` under
/// `sha256:<hash>` ids, as the client preset writes it.
fn codegen_manifest(documents: &[&str]) -> tempfile::NamedTempFile {
    let manifest: serde_json::Map<String, Value> = documents
        .iter()
        .map(|d| (format!("sha256:{}", sha256_hex(d)), json!(d)))
        .collect();
    manifest_file(&Value::Object(manifest))
}

fn manifest_file(manifest: &Value) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), manifest.to_string()).unwrap();
    file
}

#[tokio::test]
async fn trusted_documents_run_only_the_manifests_operations_by_id_or_in_full() {
    let manifest = codegen_manifest(&[COUNT, LOGIN.document, CREATE_PRODUCT.document]);
    let app = TestApp::builder()
        .trusted_documents(manifest.path())
        .spawn()
        .await;
    let admin = app.admin().await; // signs in with LOGIN, a listed document
    let hash = sha256_hex(COUNT);
    let expected = admin.post(&json!({ "query": COUNT })).await;
    expected.assert_ok();
    for body in [
        json!({ "documentId": format!("sha256:{hash}") }),
        json!({ "documentId": hash }),
        hash_only(COUNT, json!({})),
        with_hash(COUNT, json!({})),
    ] {
        let r = admin.post(&body).await;
        assert_eq!(r.body, expected.body, "{body}");
    }
    let r = get(
        &app,
        &[("documentId", format!("sha256:{hash}"))],
        GRAPHQL_RESPONSE,
    )
    .await;
    assert_eq!(r.codes(), ["UNAUTHENTICATED"], "ran, anonymously: {r:?}");

    // Anything else is refused, and says why.
    for unlisted in [
        "query Count { products { totalCount } }\n", // the same operation, other bytes
        "{ __typename }",
        "{ __schema { queryType { name } } }", // introspection is a document like any other
    ] {
        for body in [json!({ "query": unlisted }), with_hash(unlisted, json!({}))] {
            let r = admin.post(&body).await;
            assert_eq!(
                r.codes(),
                ["PERSISTED_QUERY_NOT_IN_LIST"],
                "{unlisted}: {r:?}"
            );
            assert!(r.is_request_error());
        }
        assert_not_found(&admin.post(&hash_only(unlisted, json!({}))).await);
    }
    assert_not_found(&admin.post(&json!({ "documentId": "sha256:unknown" })).await);
    let r = get(&app, &[("query", "{ __typename }".to_owned())], JSON).await;
    assert_eq!(r.codes(), ["PERSISTED_QUERY_NOT_IN_LIST"], "{r:?}");

    // A listed mutation runs by id over POST, never over GET.
    let create = CREATE_PRODUCT.document;
    let variables = json!({ "input": NewProduct::new("Trusted", "2.00") });
    let id = format!("sha256:{}", sha256_hex(create));
    admin
        .post(&json!({ "documentId": id, "variables": variables }))
        .await
        .assert_ok();
    let r = get(
        &app,
        &[("documentId", id), ("variables", variables.to_string())],
        GRAPHQL_RESPONSE,
    )
    .await;
    assert_eq!(r.status, 405, "{r:?}");
    assert_eq!(stored_products(&app).await, 1, "created once, by the POST");

    // Nothing is remembered, and the playground is off: no document typed there could run.
    assert_eq!(gauge(&app, "storefront_apq_documents").await, 0);
    assert_eq!(app.get_accepting("/", "text/html").await.status(), 404);
    assert_eq!(
        app.get_accepting("/graphql", "text/html").await.status(),
        400
    );
}

#[tokio::test]
async fn an_apollo_manifest_names_operations_by_its_own_ids_and_limits_still_hold() {
    let manifest = json!({
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": [
            { "id": "login-v1", "name": "Login", "type": "mutation", "body": LOGIN.document },
            { "id": sha256_hex(COUNT), "name": "Count", "type": "query", "body": COUNT },
            { "id": "pages-v1", "name": "Pages", "type": "query", "body": PAGES },
        ],
    });
    let manifest = manifest_file(&manifest);
    let app = TestApp::builder()
        .trusted_documents(manifest.path())
        .max_complexity(100)
        .spawn()
        .await;
    app.create_admin("admin", ADMIN_PASSWORD).await.unwrap();
    // Apollo Client sends a manifest's id as `sha256Hash`, whatever the id is.
    let login = json!({
        "variables": { "input": { "username": "admin", "password": ADMIN_PASSWORD } },
        "extensions": { "persistedQuery": { "version": 1, "sha256Hash": "login-v1" } },
    });
    let r = app.anonymous().post(&login).await;
    let token = r.body["data"]["login"]["accessToken"]
        .as_str()
        .unwrap_or_else(|| panic!("{r:?}"));
    let user = app.bearer(token);
    user.post(&json!({ "documentId": sha256_hex(COUNT) }))
        .await
        .assert_ok();
    user.post(&json!({ "documentId": "pages-v1", "variables": { "first": 1 } }))
        .await
        .assert_ok();
    // A listed document is measured like any other.
    let r = user
        .post(&json!({ "documentId": "pages-v1", "variables": { "first": 100 } }))
        .await;
    assert_eq!(r.codes(), ["QUERY_TOO_COMPLEX"], "{r:?}");
    let r = user.post(&json!({ "query": "{ __typename }" })).await;
    assert_eq!(r.codes(), ["PERSISTED_QUERY_NOT_IN_LIST"], "{r:?}");
}

#[tokio::test]
async fn a_bad_manifest_stops_start_up_and_says_why() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let error = TestApp::builder()
        .trusted_documents(&missing)
        .start_error(&db)
        .await
        .expect("refused");
    assert!(
        error.starts_with(&format!(
            "TRUSTED_DOCUMENTS {}: cannot read",
            missing.display()
        )),
        "{error}"
    );
    for (manifest, says) in [
        ("not json", "not valid JSON"),
        ("{}", "it lists no operations"),
        (
            r#"{ "sha256:abc": "query { nope" }"#,
            "the document of `sha256:abc` does not parse",
        ),
        (
            r#"{ "format": "apollo-persisted-query-manifest", "version": 1, "operations": [{ "id": "a" }] }"#,
            "operation 0 of `operations` needs a string `id` and `body`",
        ),
    ] {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), manifest).unwrap();
        let error = TestApp::builder()
            .trusted_documents(file.path())
            .start_error(&db)
            .await
            .expect("refused");
        assert!(error.contains(says), "{manifest}: {error}");
    }

    // The binary says so and exits.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "[]").unwrap();
    let stderr = storefront(&["serve"])
        .on(&db)
        .env("JWT_SECRET", JWT_SECRET)
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("POLICY_DIR", policy_dir())
        .env("TRUSTED_DOCUMENTS", file.path())
        .fails();
    assert!(stderr.contains("a manifest is a JSON object"), "{stderr}");
    // GraphiQL asked for by name cannot be on beside it.
    let stderr = storefront(&["serve"])
        .on(&db)
        .env("JWT_SECRET", JWT_SECRET)
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("POLICY_DIR", policy_dir())
        .env("TRUSTED_DOCUMENTS", file.path())
        .env("GRAPHIQL", "true")
        .fails();
    assert!(
        stderr.contains("GRAPHIQL cannot be on with TRUSTED_DOCUMENTS"),
        "{stderr}"
    );
}
