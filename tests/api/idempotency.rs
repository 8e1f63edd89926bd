//! Retries are safe (issue 10, item 4): a request sent again with the same `Idempotency-Key`
//! gets the first answer and does not run again, on every replica; a different body with the
//! key is a conflict; concurrent duplicates run once; keys belong to accounts, expire after
//! 24 h, and are given back when the first attempt failed for a passing reason.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};

use crate::kit::{
    documents::{
        ACCOUNT, CHANGE_PASSWORD, CREATE_PRODUCT, DELETE_ACCOUNT, REGISTER, UPDATE_PRODUCT,
    },
    *,
};

/// The body of a create of `name` (1.00, described `"d"`, 1 in stock).
fn create(name: &str) -> Value {
    CREATE_PRODUCT.request(json!({ "input": NewProduct::new(name, "1.00") }))
}

/// POSTs `body` with the key.
async fn send(caller: &Actor, body: &Value, key: &str) -> Response {
    caller.with_header("Idempotency-Key", key).post(body).await
}

/// Whether the answer is a stored one sent again.
fn replayed(r: &Response) -> bool {
    r.header("idempotent-replayed") == Some("true")
}

/// The id of the product a create's answer names.
fn created_id(r: &Response) -> String {
    r.field::<Product>("createProduct")
        .unwrap_or_else(|| panic!("no product in {r:?}"))
        .id
}

/// A `CONFLICT` about the key.
fn is_conflict(r: &Response) -> bool {
    r.codes() == ["CONFLICT"] && r.error().field() == Some("Idempotency-Key")
}

/// (committed, answered) of the row for `key`, if there is one.
async fn key_row(app: &TestApp, key: &str) -> Option<(bool, bool)> {
    let rows = app
        .sql_rows(
            "SELECT committed, response_status FROM idempotency_keys WHERE key = $1",
            vec![key.into()],
        )
        .await;
    let row = rows.first()?;
    let committed: bool = row.try_get("", "committed").unwrap();
    let status: Option<i32> = row.try_get("", "response_status").unwrap();
    Some((committed, status.is_some()))
}

/// Products in the database.
async fn stored_products(app: &TestApp) -> i64 {
    app.sql_count("SELECT COUNT(*) AS n FROM products", vec![])
        .await
}

/// The fingerprint the server keeps for `body`, as docs/api.md ("What counts as the same
/// request") defines it: the SHA-256 of the JSON, the document replaced by its SHA-256.
fn fingerprint_of(body: &Value) -> String {
    let mut canonical = body.clone();
    let query = canonical.as_object_mut().unwrap().remove("query").unwrap();
    canonical["document"] = json!(sha256_hex(query.as_str().unwrap().as_bytes()));
    sha256_hex(&serde_json::to_vec(&canonical).unwrap())
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn a_retried_create_runs_once_and_gets_the_first_answer() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let body = create("Once");
    let first = send(&admin, &body, "create-once").await;
    assert_eq!(first.status, 200, "{first:?}");
    assert!(!replayed(&first), "a first answer is not a replay");
    let id = created_id(&first);
    // The change and the record that it happened were committed together; the answer stored.
    assert_eq!(key_row(&app, "create-once").await, Some((true, true)));

    for _ in 0..3 {
        let again = send(&admin, &body, "create-once").await;
        assert_eq!(again.status, 200);
        assert!(replayed(&again), "a retry is marked as a replay: {again:?}");
        assert_eq!(
            again.text, first.text,
            "a retry gets the first answer, byte for byte"
        );
        assert_eq!(created_id(&again), id);
    }
    assert_eq!(stored_products(&app).await, 1);

    // The draft's quoted form names the same key.
    let quoted = send(&admin, &body, "\"create-once\"").await;
    assert!(replayed(&quoted) && created_id(&quoted) == id, "{quoted:?}");
    // Without a key, or with another, the request runs.
    let other = send(&admin, &body, "create-twice").await;
    assert!(!replayed(&other));
    assert_ne!(created_id(&other), id);
    assert_eq!(stored_products(&app).await, 2);
}

/// Many duplicates at once, on two replicas, in repeated rounds: one runs, each of the others
/// gets its answer or `CONFLICT` (in progress).
#[tokio::test]
async fn concurrent_duplicates_run_once() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    // Half the duplicates go to a second replica on the same database.
    let replica = app.replica().await;
    let callers = [admin.clone(), admin.on(&replica)];
    const ROUNDS: usize = 3;
    const DUPLICATES: usize = 30;
    for round in 0..ROUNDS {
        let key = format!("burst-{round}");
        let body = create(&format!("Burst {round}"));
        let answers = join_tasks(
            (0..DUPLICATES)
                .map(|i| {
                    let (caller, body, key) = (callers[i % 2].clone(), body.clone(), key.clone());
                    tokio::spawn(async move { send(&caller, &body, &key).await })
                })
                .collect(),
        )
        .await;
        let mut ids = std::collections::HashSet::new();
        for answer in &answers {
            match answer.status {
                200 => {
                    ids.insert(created_id(answer));
                }
                409 => {
                    assert!(is_conflict(answer), "{answer:?}");
                    assert!(answer.error().message.contains("in progress"), "{answer:?}");
                    assert_eq!(answer.header("retry-after"), Some("1"));
                }
                _ => panic!("round {round}: unexpected answer {answer:?}"),
            }
        }
        assert_eq!(
            ids.len(),
            1,
            "round {round}: every success names one product: {ids:?}"
        );
        let refused = answers.iter().filter(|a| a.status == 409).count();
        eprintln!(
            "round {round}: {} answered, {refused} in progress",
            DUPLICATES - refused
        );
        // Read from the database: the replicas' catalog caches catch up only at their poll.
        assert_eq!(
            stored_products(&app).await,
            round as i64 + 1,
            "round {round}: {DUPLICATES} duplicates created exactly one product"
        );
        // Once answered, every retry gets that answer.
        let after = send(&admin, &body, &key).await;
        assert!(replayed(&after));
        assert!(ids.contains(&created_id(&after)));
    }
}

#[tokio::test]
async fn the_same_key_with_another_body_is_a_conflict_and_runs_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let first = send(&admin, &create("First"), "reused").await;
    created_id(&first);
    let other = send(&admin, &create("Second"), "reused").await;
    assert_eq!(other.status, 422, "{other:?}");
    assert!(is_conflict(&other), "{other:?}");
    assert!(!replayed(&other));
    assert_eq!(
        stored_products(&app).await,
        1,
        "the second body did not run"
    );
    // The key still answers the first body.
    assert!(replayed(&send(&admin, &create("First"), "reused").await));
}

#[tokio::test]
async fn keys_belong_to_accounts() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let other_admin = app.admin_named("admin2").await;
    let body = create("Shared key");
    let mine = send(&admin, &body, "shared").await;
    let theirs = send(&other_admin, &body, "shared").await;
    assert!(!replayed(&mine) && !replayed(&theirs));
    assert_ne!(created_id(&mine), created_id(&theirs));
    assert_eq!(stored_products(&app).await, 2);
}

#[tokio::test]
async fn malformed_keys_and_anonymous_keys_are_refused() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let long = "k".repeat(256);
    for key in ["", long.as_str(), "tab\there", "\"a\"b\""] {
        let r = send(&admin, &create("Bad key"), key).await;
        assert_eq!(r.status, 400, "{key:?}: {r:?}");
        assert_eq!(r.codes(), ["BAD_USER_INPUT"], "{key:?}");
        assert_eq!(r.error().field(), Some("Idempotency-Key"));
    }
    let longest = "k".repeat(255);
    created_id(&send(&admin, &create("Long key"), &longest).await);
    assert_eq!(stored_products(&app).await, 1);

    // Keys belong to accounts: an anonymous request with one is refused, not run unprotected.
    let anonymous = app.anonymous();
    let register = REGISTER.request(json!({
        "input": {"username": "keyed", "password": "keyed passphrase 1"},
    }));
    let r = send(&anonymous, &register, "anon").await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.error().field(), Some("Idempotency-Key"));
    assert!(
        !anonymous
            .login("keyed", "keyed passphrase 1")
            .await
            .codes()
            .is_empty(),
        "the refused registration did not run"
    );
    // A token that no longer works is told so.
    let r = send(&app.bearer("not-a-token"), &create("Stale"), "stale").await;
    assert_eq!((r.status, r.codes()), (401, vec!["UNAUTHENTICATED"]));
}

#[tokio::test]
async fn a_first_attempt_that_failed_for_a_passing_reason_runs_again() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    // Every insert into products fails: as the database being unavailable on PostgreSQL, as
    // an internal error on SQLite.
    let postgres = app.on_postgres();
    app.refuse_product_inserts("53100").await;
    let body = create("Eventually");
    let failed = send(&admin, &body, "flaky").await;
    let expected = if postgres {
        "SERVICE_UNAVAILABLE"
    } else {
        "INTERNAL_SERVER_ERROR"
    };
    assert_eq!(failed.codes(), [expected], "{failed:?}");
    assert_eq!(key_row(&app, "flaky").await, None, "the key was given back");

    app.allow_product_inserts().await;
    let retried = send(&admin, &body, "flaky").await;
    assert!(!replayed(&retried), "the retry ran: {retried:?}");
    let id = created_id(&retried);
    let again = send(&admin, &body, "flaky").await;
    assert!(replayed(&again) && created_id(&again) == id);
    assert_eq!(stored_products(&app).await, 1);
}

#[tokio::test]
async fn expired_keys_run_again_and_are_pruned() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let body = create("Daily");
    let first = send(&admin, &body, "daily").await;
    let day_ago = chrono::Utc::now().timestamp_millis() - 24 * 3600 * 1000 - 1000;
    app.sql(
        "UPDATE idempotency_keys SET created_at_ms = $1",
        vec![day_ago.into()],
    )
    .await;
    let later = send(&admin, &body, "daily").await;
    assert!(!replayed(&later), "an expired key runs again: {later:?}");
    assert_ne!(created_id(&later), created_id(&first));
    assert_eq!(stored_products(&app).await, 2);
    assert!(
        replayed(&send(&admin, &body, "daily").await),
        "and counts from now"
    );

    created_id(&send(&admin, &create("Old"), "old").await);
    app.sql(
        "UPDATE idempotency_keys SET created_at_ms = $1 WHERE key = 'old'",
        vec![day_ago.into()],
    )
    .await;
    let pruned = app.prune().await;
    assert_eq!(pruned.idempotency_keys, 1, "{pruned:?}");
    assert_eq!(key_row(&app, "old").await, None);
    assert!(key_row(&app, "daily").await.is_some(), "a live key is kept");
}

#[tokio::test]
async fn a_second_replica_honours_the_key() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let replica = app.replica().await;
    let admin_on_b = admin.on(&replica);
    let body = create("Everywhere");
    let first = send(&admin, &body, "everywhere").await;
    let on_b = send(&admin_on_b, &body, "everywhere").await;
    assert!(replayed(&on_b), "{on_b:?}");
    assert_eq!(on_b.text, first.text);
    // And the other way round.
    let from_b = send(&admin_on_b, &create("From B"), "from-b").await;
    let on_a = send(&admin, &create("From B"), "from-b").await;
    assert!(replayed(&on_a) && created_id(&on_a) == created_id(&from_b));
    assert_eq!(stored_products(&app).await, 2);
}

/// A server killed mid-request leaves its claim unanswered. While the claim's lease lasts a
/// retry is told to wait; after it, the request runs again only if it had committed nothing.
#[tokio::test]
async fn an_abandoned_attempt_runs_again_only_if_it_changed_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let account_id =
        uuid::Uuid::parse_str(claims_of(admin.token())["sub"].as_str().unwrap()).unwrap();
    let body = create("Crashed");
    let fingerprint = fingerprint_of(&body);
    let now = chrono::Utc::now().timestamp_millis();
    // REQUEST_TIMEOUT_MS (10 s) plus the 30 s margin.
    let lease_over = now - 41_000;
    for (key, created, committed) in [
        ("running", now, true),
        ("crashed-clean", lease_over, false),
        ("crashed-dirty", lease_over, true),
    ] {
        let values: Vec<sea_orm::Value> = vec![
            account_id.into(),
            key.into(),
            fingerprint.clone().into(),
            uuid::Uuid::new_v4().into(),
            created.into(),
            committed.into(),
        ];
        app.sql(
            "INSERT INTO idempotency_keys (account_id, key, fingerprint, claim_id, created_at_ms, committed) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            values,
        )
        .await;
    }

    let running = send(&admin, &body, "running").await;
    assert_eq!(running.status, 409, "{running:?}");
    assert!(is_conflict(&running));

    let dirty = send(&admin, &body, "crashed-dirty").await;
    assert_eq!(dirty.status, 409, "{dirty:?}");
    assert!(is_conflict(&dirty));
    assert!(dirty.text.contains("answer was lost"), "{dirty:?}");
    assert_eq!(
        stored_products(&app).await,
        0,
        "a committed attempt is not run twice"
    );

    let clean = send(&admin, &body, "crashed-clean").await;
    assert!(!replayed(&clean));
    let id = created_id(&clean);
    assert_eq!(stored_products(&app).await, 1);
    let again = send(&admin, &body, "crashed-clean").await;
    assert!(replayed(&again) && created_id(&again) == id);
}

/// Holds a row lock on the product `id` on a connection of the test's own (PostgreSQL), as a
/// long transaction elsewhere would.
async fn lock_product(
    app: &TestApp,
    id: &str,
) -> (sea_orm::DatabaseConnection, sea_orm::DatabaseTransaction) {
    use sea_orm::TransactionTrait;
    let locker = sea_orm::Database::connect(app.db.url.as_str())
        .await
        .unwrap();
    let lock = locker.begin().await.unwrap();
    lock.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT id FROM products WHERE id = $1 FOR UPDATE",
        [uuid::Uuid::parse_str(id).unwrap().into()],
    ))
    .await
    .unwrap();
    (locker, lock)
}

/// The body of an update setting the product `id`'s stock.
fn restock(id: &str, stock: i64) -> Value {
    UPDATE_PRODUCT.request(json!({ "id": id, "input": { "stock": stock } }))
}

/// A request that times out gives its key back when it changed nothing, and otherwise answers
/// from then on that its answer was lost. PostgreSQL only: the test holds a row lock the
/// request waits on; on SQLite any lock it could hold would stop the claim too (the SQLite
/// release path is covered by the test above).
#[tokio::test]
async fn a_timed_out_attempt_runs_again_only_if_it_changed_nothing() {
    let app = TestApp::builder()
        .request_timeout(Duration::from_millis(1500))
        .spawn()
        .await;
    if !app.on_postgres() {
        eprintln!("SKIPPED on SQLite: needs a row lock held beside the server's writes");
        return;
    }
    let admin = app.admin().await;
    let held = admin.add_product("Held", "1.00").await.id;
    let update = restock(&held, 5);
    let (_locker, lock) = lock_product(&app, &held).await;

    // Nothing committed before the timeout: the key is given back.
    let timed_out = send(&admin, &update, "slow-update").await;
    assert_eq!(timed_out.codes(), ["TIMEOUT"], "{timed_out:?}");
    assert_eq!(
        key_row(&app, "slow-update").await,
        None,
        "the key was given back"
    );

    // A batch whose first operation committed before the second timed out.
    let batch = json!([create("Committed first"), update]);
    let timed_out = send(&admin, &batch, "half-done").await;
    assert_eq!(timed_out.codes(), ["TIMEOUT"], "{timed_out:?}");
    lock.rollback().await.unwrap();
    assert_eq!(
        stored_products(&app).await,
        2,
        "the first operation was stored"
    );
    let retried = send(&admin, &batch, "half-done").await;
    assert_eq!(retried.status, 409, "{retried:?}");
    assert!(
        is_conflict(&retried) && retried.text.contains("answer was lost"),
        "{retried:?}"
    );
    assert!(
        replayed(&retried),
        "the stored answer to this key: {retried:?}"
    );
    assert_eq!(
        stored_products(&app).await,
        2,
        "the batch did not run twice"
    );

    let retried = send(&admin, &update, "slow-update").await;
    assert!(!replayed(&retried), "{retried:?}");
    assert_eq!(
        retried.field::<Product>("updateProduct").map(|p| p.stock),
        Some(5)
    );
}

/// Refresh tokens are stored only as hashes, so an answer holding tokens is not kept: a retry
/// is told the request ran, and it does not run again.
#[tokio::test]
async fn answers_holding_tokens_are_not_stored_and_not_run_again() {
    let app = TestApp::spawn().await;
    let user = app.user_with("rotating", "rotating passphrase 1").await;
    let change = CHANGE_PASSWORD.request(json!({
        "currentPassword": "rotating passphrase 1",
        "newPassword": "rotating passphrase 2",
    }));
    let first = send(&user, &change, "rotate").await;
    assert!(first.codes().is_empty(), "{first:?}");
    let session = first.field::<AuthPayload>("changePassword").unwrap();

    let rows = app
        .sql_rows("SELECT response_body FROM idempotency_keys", vec![])
        .await;
    let stored: String = rows[0].try_get("", "response_body").unwrap();
    assert!(
        !stored.contains(&session.refresh_token),
        "a refresh token was stored: {stored}"
    );

    // The retry comes with the new token (the old one ended with every session).
    let renewed = user.with_session(session);
    let again = send(&renewed, &change, "rotate").await;
    assert_eq!(again.status, 409, "{again:?}");
    assert!(is_conflict(&again) && replayed(&again), "{again:?}");
    assert!(again.text.contains("tokens"), "{again:?}");
    // Not run again: the new password still works, and the first answer's tokens too.
    app.anonymous()
        .login("rotating", "rotating passphrase 2")
        .await
        .assert_ok();
    renewed.account().await.assert_ok();
}

/// An attempt whose key was taken over (a retry found it abandoned) cannot commit anything
/// afterwards: its write is refused in the same transaction. PostgreSQL only, for the row lock
/// that holds the attempt still while its claim changes hands.
#[tokio::test]
async fn an_attempt_that_lost_its_key_commits_nothing() {
    let app = TestApp::spawn().await;
    if !app.on_postgres() {
        eprintln!("SKIPPED on SQLite: needs a row lock held beside the server's writes");
        return;
    }
    let admin = app.admin().await;
    let held = admin.add_product("Contested", "1.00").await.id;
    let (_locker, lock) = lock_product(&app, &held).await;
    let update = restock(&held, 7);
    let attempt = {
        let admin = admin.clone();
        tokio::spawn(async move { send(&admin, &update, "contested").await })
    };
    while key_row(&app, "contested").await.is_none() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // What a takeover does to the row: another attempt holds the key now.
    app.sql(
        "UPDATE idempotency_keys SET claim_id = $1",
        vec![uuid::Uuid::new_v4().into()],
    )
    .await;
    lock.rollback().await.unwrap();
    let answer = attempt.await.unwrap();
    assert!(is_conflict(&answer), "{answer:?}");
    let r = admin.product(&held).await;
    assert_eq!(
        r.data().flatten().map(|p| p.stock),
        Some(1),
        "the refused write did not commit: {r}"
    );
    assert_eq!(
        key_row(&app, "contested").await,
        Some((false, false)),
        "and the attempt neither marked nor answered the key it lost"
    );
}

/// Reads and refused mutations change nothing: they keep no answer (the database does not fill
/// up with answers to reads), and a retry simply runs again.
#[tokio::test]
async fn requests_that_change_nothing_keep_no_answer_and_run_again() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    admin.add_product("Teapot", "9.00").await;
    let read = json!({ "query": "{ products(first: 5) { nodes { name } } }" });
    let names = |r: &Response| -> Vec<String> {
        r.raw_data()["products"]["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| n["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let first = send(&admin, &read, "just-reading").await;
    assert_eq!(names(&first).first().map(String::as_str), Some("Teapot"));
    assert_eq!(
        key_row(&app, "just-reading").await,
        None,
        "a read kept its key"
    );
    admin.add_product("Kettle", "12.00").await;
    let again = send(&admin, &read, "just-reading").await;
    assert!(!replayed(&again), "{again:?}");
    assert_eq!(names(&again).get(1).map(String::as_str), Some("Kettle"));

    let refused = create("");
    for _ in 0..2 {
        let answer = send(&admin, &refused, "refused").await;
        assert_eq!(answer.codes(), ["BAD_USER_INPUT"], "{answer:?}");
        assert!(!replayed(&answer));
        assert_eq!(key_row(&app, "refused").await, None);
    }
    assert_eq!(stored_products(&app).await, 2);
}

/// A request that changed data but whose answer is too big to keep keeps a conflict instead,
/// and still never runs twice.
#[tokio::test]
async fn a_big_answer_is_not_kept_and_the_request_does_not_run_twice() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let long = "x".repeat(4000);
    for i in 0..20 {
        let product = NewProduct::new(&format!("Long {i}"), "1.00").description(&long);
        admin.add(&product).await;
    }
    let batch = json!([
        create("Fresh"),
        { "query": "{ products(first: 100) { nodes { description } } }" },
    ]);
    let first = send(&admin, &batch, "big").await;
    assert_eq!(first.status, 200);
    assert!(first.text.len() > 16 * 1024, "{} bytes", first.text.len());
    assert!(
        first.batch()[0].field::<Product>("createProduct").is_some(),
        "{:.300}",
        first.text
    );
    let again = send(&admin, &batch, "big").await;
    assert!(is_conflict(&again) && replayed(&again), "{again:?}");
    assert_eq!(again.status, 409);
    assert!(again.text.contains("16 KiB"), "{}", again.text);
    assert_eq!(stored_products(&app).await, 21);
}

/// `deleteAccount` with a key: the claim outlives the account it belongs to, so the deletion
/// runs (once); and keyed requests racing their account's deletion are refused cleanly.
#[tokio::test]
async fn keyed_requests_and_the_deletion_of_their_account() {
    let app = TestApp::spawn().await;
    app.user_with("leaver", "leaver passphrase 11").await;
    let leaver = app.sign_in("leaver", "leaver passphrase 11").await;
    let reads: Vec<_> = (0..20)
        .map(|i| {
            let leaver = leaver.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(i * 3)).await;
                send(&leaver, &ACCOUNT.request(json!({})), &format!("read-{i}")).await
            })
        })
        .collect();
    let delete = DELETE_ACCOUNT.request(json!({ "currentPassword": "leaver passphrase 11" }));
    let deleted = send(&leaver, &delete, "leave").await;
    assert_eq!(
        deleted.field::<bool>("deleteAccount"),
        Some(true),
        "{deleted:?}"
    );
    for read in reads {
        let answer = read.await.unwrap();
        assert!(answer.status < 500, "{answer:?}");
        let codes = answer.codes();
        assert!(
            codes.is_empty() || codes == ["UNAUTHENTICATED"],
            "{answer:?}"
        );
    }
    let r = app
        .anonymous()
        .login("leaver", "leaver passphrase 11")
        .await;
    assert_eq!(r.codes(), ["UNAUTHENTICATED"]);
}
