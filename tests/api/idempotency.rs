//! Retries are safe (issue 10, item 4): a request sent again with the same `Idempotency-Key`
//! gets the first answer and does not run again, on every replica; a different body with the
//! key is a conflict; concurrent duplicates run once; keys belong to accounts, expire after
//! 24 h, and are given back when the first attempt failed for a passing reason.

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};

use crate::helpers::*;

const CREATE: &str = "mutation($n:String!){ createProduct(input:{name:$n, description:\"d\", \
                      price:\"1.00\", stock:1}){ id name } }";

fn create(name: &str) -> Value {
    json!({ "query": CREATE, "variables": { "n": name } })
}

/// What a keyed request got back.
#[derive(Debug)]
struct Answer {
    status: u16,
    replayed: bool,
    retry_after: Option<String>,
    text: String,
    body: Value,
}

impl Answer {
    fn created_id(&self) -> &str {
        self.body["data"]["createProduct"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no product in {self:?}"))
    }

    fn is_conflict(&self) -> bool {
        codes(&self.body) == ["CONFLICT"]
            && error_field(&self.body).as_deref() == Some("Idempotency-Key")
    }
}

/// POSTs `body` (serialized once, so the test knows its exact bytes) to the GraphQL URL `url`
/// with the key and token given.
async fn send_at(url: &str, body: &Value, token: Option<&str>, key: Option<&str>) -> Answer {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap());
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("server answers");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let replayed = header("idempotent-replayed").as_deref() == Some("true");
    let retry_after = header("retry-after");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        replayed,
        retry_after,
        text,
        body,
    }
}

async fn send(app: &TestApp, body: &Value, token: &str, key: &str) -> Answer {
    send_at(
        &format!("{}/graphql", app.url),
        body,
        Some(token),
        Some(key),
    )
    .await
}

/// Another admin account, signed in.
async fn second_admin(app: &TestApp) -> String {
    app.state
        .accounts
        .create_or_promote_admin("admin2", ADMIN_PASSWORD.to_owned())
        .await
        .unwrap();
    let r = app.login("admin2", ADMIN_PASSWORD).await;
    assert_no_errors(&r);
    r["data"]["login"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Runs SQL on the test's database, `$1`… bound to `values`.
async fn sql(app: &TestApp, text: &str, values: Vec<sea_orm::Value>) {
    // Writes go to the writer: on SQLite the readers refuse them.
    let db = app.state.db.writer();
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        text,
        values,
    ))
    .await
    .unwrap();
}

/// (committed, answered) of the row for `key`, if there is one.
async fn key_row(app: &TestApp, key: &str) -> Option<(bool, bool)> {
    let db = &app.state.db;
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT committed, response_status FROM idempotency_keys WHERE key = $1",
            [key.into()],
        ))
        .await
        .unwrap()?;
    let committed: bool = row.try_get("", "committed").unwrap();
    let status: Option<i32> = row.try_get("", "response_status").unwrap();
    Some((committed, status.is_some()))
}

/// Products in the database.
async fn stored_products(app: &TestApp) -> i64 {
    let db = &app.state.db;
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM products",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "n").unwrap()
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
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let body = create("Once");
    let first = send(&app, &body, &admin, "create-once").await;
    assert_eq!(first.status, 200, "{first:?}");
    assert!(!first.replayed, "a first answer is not a replay");
    let id = first.created_id().to_owned();
    // The change and the record that it happened were committed together; the answer stored.
    assert_eq!(key_row(&app, "create-once").await, Some((true, true)));

    for _ in 0..3 {
        let again = send(&app, &body, &admin, "create-once").await;
        assert_eq!(again.status, 200);
        assert!(again.replayed, "a retry is marked as a replay: {again:?}");
        assert_eq!(
            again.text, first.text,
            "a retry gets the first answer, byte for byte"
        );
        assert_eq!(again.created_id(), id);
    }
    assert_eq!(stored_products(&app).await, 1);

    // The draft's quoted form names the same key.
    let quoted = send(&app, &body, &admin, "\"create-once\"").await;
    assert!(quoted.replayed && quoted.created_id() == id, "{quoted:?}");
    // Without a key, or with another, the request runs.
    let other = send(&app, &body, &admin, "create-twice").await;
    assert!(!other.replayed);
    assert_ne!(other.created_id(), id);
    assert_eq!(stored_products(&app).await, 2);
}

/// Many duplicates at once, on two replicas, in repeated rounds: one runs, each of the others
/// gets its answer or `CONFLICT` (in progress).
#[tokio::test]
async fn concurrent_duplicates_run_once() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    // Half the duplicates go to a second replica on the same database.
    let (replica, _stop) = spawn_replica(&app).await;
    let urls = [format!("{}/graphql", app.url), replica];
    const ROUNDS: usize = 3;
    const DUPLICATES: usize = 30;
    for round in 0..ROUNDS {
        let key = format!("burst-{round}");
        let body = create(&format!("Burst {round}"));
        let answers = futures_join(
            (0..DUPLICATES)
                .map(|i| {
                    let (url, admin, body, key) = (
                        urls[i % 2].clone(),
                        admin.clone(),
                        body.clone(),
                        key.clone(),
                    );
                    tokio::spawn(
                        async move { send_at(&url, &body, Some(&admin), Some(&key)).await },
                    )
                })
                .collect(),
        )
        .await;
        let mut ids = std::collections::HashSet::new();
        for answer in &answers {
            match answer.status {
                200 => {
                    ids.insert(answer.created_id().to_owned());
                }
                409 => {
                    assert!(answer.is_conflict(), "{answer:?}");
                    assert!(
                        answer.body["errors"][0]["message"]
                            .as_str()
                            .unwrap()
                            .contains("in progress"),
                        "{answer:?}"
                    );
                    assert_eq!(answer.retry_after.as_deref(), Some("1"));
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
        let after = send(&app, &body, &admin, &key).await;
        assert!(after.replayed);
        assert!(ids.contains(after.created_id()));
    }
}

/// Awaits every task, in order.
async fn futures_join<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

#[tokio::test]
async fn the_same_key_with_another_body_is_a_conflict_and_runs_nothing() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let first = send(&app, &create("First"), &admin, "reused").await;
    first.created_id();
    let other = send(&app, &create("Second"), &admin, "reused").await;
    assert_eq!(other.status, 422, "{other:?}");
    assert!(other.is_conflict(), "{other:?}");
    assert!(!other.replayed);
    assert_eq!(
        stored_products(&app).await,
        1,
        "the second body did not run"
    );
    // The key still answers the first body.
    assert!(
        send(&app, &create("First"), &admin, "reused")
            .await
            .replayed
    );
}

#[tokio::test]
async fn keys_belong_to_accounts() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let other_admin = second_admin(&app).await;
    let body = create("Shared key");
    let mine = send(&app, &body, &admin, "shared").await;
    let theirs = send(&app, &body, &other_admin, "shared").await;
    assert!(!mine.replayed && !theirs.replayed);
    assert_ne!(mine.created_id(), theirs.created_id());
    assert_eq!(stored_products(&app).await, 2);
}

#[tokio::test]
async fn malformed_keys_and_anonymous_keys_are_refused() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let url = format!("{}/graphql", app.url);
    let long = "k".repeat(256);
    for key in ["", long.as_str(), "tab\there", "\"a\"b\""] {
        let r = send_at(&url, &create("Bad key"), Some(&admin), Some(key)).await;
        assert_eq!(r.status, 400, "{key:?}: {r:?}");
        assert_eq!(codes(&r.body), ["BAD_USER_INPUT"], "{key:?}");
        assert_eq!(error_field(&r.body).as_deref(), Some("Idempotency-Key"));
    }
    let longest = "k".repeat(255);
    send_at(&url, &create("Long key"), Some(&admin), Some(&longest))
        .await
        .created_id();
    assert_eq!(stored_products(&app).await, 1);

    // Keys belong to accounts: an anonymous request with one is refused, not run unprotected.
    let register = json!({
        "query": "mutation { register(input:{username:\"keyed\", password:\"keyed passphrase 1\"}){ accessToken } }"
    });
    let r = send_at(&url, &register, None, Some("anon")).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(error_field(&r.body).as_deref(), Some("Idempotency-Key"));
    assert!(
        !codes(&app.login("keyed", "keyed passphrase 1").await).is_empty(),
        "the refused registration did not run"
    );
    // A token that no longer works is told so.
    let r = send_at(&url, &create("Stale"), Some("not-a-token"), Some("stale")).await;
    assert_eq!(
        (r.status, codes(&r.body)),
        (401, vec!["UNAUTHENTICATED".to_owned()])
    );
}

#[tokio::test]
async fn a_first_attempt_that_failed_for_a_passing_reason_runs_again() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    // Every insert into products fails: as the database being unavailable on PostgreSQL, as
    // an internal error on SQLite.
    let postgres = app.state.db.get_database_backend() == DbBackend::Postgres;
    if postgres {
        sql(
            &app,
            "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN \
             RAISE EXCEPTION 'injected' USING ERRCODE = '53100'; END $$ LANGUAGE plpgsql",
            vec![],
        )
        .await;
        sql(
            &app,
            "CREATE TRIGGER refuse BEFORE INSERT ON products FOR EACH ROW EXECUTE FUNCTION refuse()",
            vec![],
        )
        .await;
    } else {
        sql(
            &app,
            "CREATE TRIGGER refuse BEFORE INSERT ON products BEGIN SELECT RAISE(ABORT, 'injected'); END",
            vec![],
        )
        .await;
    }
    let body = create("Eventually");
    let failed = send(&app, &body, &admin, "flaky").await;
    let expected = if postgres {
        "SERVICE_UNAVAILABLE"
    } else {
        "INTERNAL_SERVER_ERROR"
    };
    assert_eq!(codes(&failed.body), [expected], "{failed:?}");
    assert_eq!(key_row(&app, "flaky").await, None, "the key was given back");

    let drop = if postgres {
        "DROP TRIGGER refuse ON products"
    } else {
        "DROP TRIGGER refuse"
    };
    sql(&app, drop, vec![]).await;
    let retried = send(&app, &body, &admin, "flaky").await;
    assert!(!retried.replayed, "the retry ran: {retried:?}");
    let id = retried.created_id().to_owned();
    let again = send(&app, &body, &admin, "flaky").await;
    assert!(again.replayed && again.created_id() == id);
    assert_eq!(stored_products(&app).await, 1);
}

#[tokio::test]
async fn expired_keys_run_again_and_are_pruned() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let body = create("Daily");
    let first = send(&app, &body, &admin, "daily").await;
    let day_ago = chrono::Utc::now().timestamp_millis() - 24 * 3600 * 1000 - 1000;
    sql(
        &app,
        "UPDATE idempotency_keys SET created_at_ms = $1",
        vec![day_ago.into()],
    )
    .await;
    let later = send(&app, &body, &admin, "daily").await;
    assert!(!later.replayed, "an expired key runs again: {later:?}");
    assert_ne!(later.created_id(), first.created_id());
    assert_eq!(stored_products(&app).await, 2);
    assert!(
        send(&app, &body, &admin, "daily").await.replayed,
        "and counts from now"
    );

    send(&app, &create("Old"), &admin, "old").await.created_id();
    sql(
        &app,
        "UPDATE idempotency_keys SET created_at_ms = $1 WHERE key = 'old'",
        vec![day_ago.into()],
    )
    .await;
    let pruned = storefront::pruning::prune(&app.state.db).await.unwrap();
    assert_eq!(pruned.idempotency_keys, 1, "{pruned:?}");
    assert_eq!(key_row(&app, "old").await, None);
    assert!(key_row(&app, "daily").await.is_some(), "a live key is kept");
}

#[tokio::test]
async fn a_second_replica_honours_the_key() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (replica, _stop) = spawn_replica(&app).await;
    let body = create("Everywhere");
    let first = send(&app, &body, &admin, "everywhere").await;
    let on_b = send_at(&replica, &body, Some(&admin), Some("everywhere")).await;
    assert!(on_b.replayed, "{on_b:?}");
    assert_eq!(on_b.text, first.text);
    // And the other way round.
    let from_b = send_at(&replica, &create("From B"), Some(&admin), Some("from-b")).await;
    let on_a = send(&app, &create("From B"), &admin, "from-b").await;
    assert!(on_a.replayed && on_a.created_id() == from_b.created_id());
    assert_eq!(stored_products(&app).await, 2);
}

/// A server killed mid-request leaves its claim unanswered. While the claim's lease lasts a
/// retry is told to wait; after it, the request runs again only if it had committed nothing.
#[tokio::test]
async fn an_abandoned_attempt_runs_again_only_if_it_changed_nothing() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let account_id = uuid::Uuid::parse_str(claims_of(&admin)["sub"].as_str().unwrap()).unwrap();
    let body = create("Crashed");
    let fingerprint = sha256_hex(&serde_json::to_vec(&body).unwrap());
    let now = chrono::Utc::now().timestamp_millis();
    // REQUEST_TIMEOUT_MS (10 s) plus the 30 s margin.
    let lease_over = now - 41_000;
    let left = |key: &str, created: i64, committed: bool| {
        let values: Vec<sea_orm::Value> = vec![
            account_id.into(),
            key.into(),
            fingerprint.clone().into(),
            uuid::Uuid::new_v4().into(),
            created.into(),
            committed.into(),
        ];
        (
            "INSERT INTO idempotency_keys (account_id, key, fingerprint, claim_id, created_at_ms, committed) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            values,
        )
    };
    for (key, created, committed) in [
        ("running", now, true),
        ("crashed-clean", lease_over, false),
        ("crashed-dirty", lease_over, true),
    ] {
        let (text, values) = left(key, created, committed);
        sql(&app, text, values).await;
    }

    let running = send(&app, &body, &admin, "running").await;
    assert_eq!(running.status, 409, "{running:?}");
    assert!(running.is_conflict());

    let dirty = send(&app, &body, &admin, "crashed-dirty").await;
    assert_eq!(dirty.status, 409, "{dirty:?}");
    assert!(dirty.is_conflict());
    assert!(dirty.text.contains("answer was lost"), "{dirty:?}");
    assert_eq!(
        stored_products(&app).await,
        0,
        "a committed attempt is not run twice"
    );

    let clean = send(&app, &body, &admin, "crashed-clean").await;
    assert!(!clean.replayed);
    let id = clean.created_id().to_owned();
    assert_eq!(stored_products(&app).await, 1);
    let again = send(&app, &body, &admin, "crashed-clean").await;
    assert!(again.replayed && again.created_id() == id);
}

/// A request that times out gives its key back when it changed nothing, and otherwise answers
/// from then on that its answer was lost. PostgreSQL only: the test holds a row lock the
/// request waits on; on SQLite any lock it could hold would stop the claim too (the SQLite
/// release path is covered by the test above).
#[tokio::test]
async fn a_timed_out_attempt_runs_again_only_if_it_changed_nothing() {
    use sea_orm::TransactionTrait;
    let app = spawn_app_with(vec![("REQUEST_TIMEOUT_MS", "1500".to_owned())]).await;
    if app.state.db.get_database_backend() != DbBackend::Postgres {
        eprintln!("SKIPPED on SQLite: needs a row lock held beside the server's writes");
        return;
    }
    let admin = app.admin_token().await;
    let held = app.create_product(&admin, "Held", "1.00").await;
    let update = json!({
        "query": "mutation($id:ID!){ updateProduct(id:$id, input:{stock:5}){ id stock } }",
        "variables": { "id": held },
    });
    let locker = sea_orm::Database::connect(app.db.url.as_str())
        .await
        .unwrap();
    let lock = locker.begin().await.unwrap();
    lock.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT id FROM products WHERE id = $1 FOR UPDATE",
        [uuid::Uuid::parse_str(&held).unwrap().into()],
    ))
    .await
    .unwrap();

    // Nothing committed before the timeout: the key is given back.
    let timed_out = send(&app, &update, &admin, "slow-update").await;
    assert_eq!(codes(&timed_out.body), ["TIMEOUT"], "{timed_out:?}");
    assert_eq!(
        key_row(&app, "slow-update").await,
        None,
        "the key was given back"
    );

    // A batch whose first operation committed before the second timed out.
    let batch = json!([create("Committed first"), update]);
    let timed_out = send(&app, &batch, &admin, "half-done").await;
    assert_eq!(codes(&timed_out.body), ["TIMEOUT"], "{timed_out:?}");
    lock.rollback().await.unwrap();
    assert_eq!(
        stored_products(&app).await,
        2,
        "the first operation was stored"
    );
    let retried = send(&app, &batch, &admin, "half-done").await;
    assert_eq!(retried.status, 409, "{retried:?}");
    assert!(
        retried.is_conflict() && retried.text.contains("answer was lost"),
        "{retried:?}"
    );
    assert!(
        retried.replayed,
        "the stored answer to this key: {retried:?}"
    );
    assert_eq!(
        stored_products(&app).await,
        2,
        "the batch did not run twice"
    );

    let retried = send(&app, &update, &admin, "slow-update").await;
    assert!(!retried.replayed, "{retried:?}");
    assert_eq!(retried.body["data"]["updateProduct"]["stock"], 5);
}

/// Refresh tokens are stored only as hashes, so an answer holding tokens is not kept: a retry
/// is told the request ran, and it does not run again.
#[tokio::test]
async fn answers_holding_tokens_are_not_stored_and_not_run_again() {
    let app = spawn_app().await;
    let token = app.register("rotating", "rotating passphrase 1").await;
    let change = json!({
        "query": "mutation($c:String!,$n:String!){ changePassword(currentPassword:$c, newPassword:$n){ accessToken refreshToken } }",
        "variables": { "c": "rotating passphrase 1", "n": "rotating passphrase 2" },
    });
    let first = send(&app, &change, &token, "rotate").await;
    assert_eq!(codes(&first.body), Vec::<String>::new(), "{first:?}");
    let refresh = first.body["data"]["changePassword"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let new_access = first.body["data"]["changePassword"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();

    let db = &app.state.db;
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT response_body FROM idempotency_keys",
        ))
        .await
        .unwrap()
        .unwrap();
    let stored: String = row.try_get("", "response_body").unwrap();
    assert!(
        !stored.contains(&refresh),
        "a refresh token was stored: {stored}"
    );

    // The retry comes with the new token (the old one ended with every session).
    let again = send(&app, &change, &new_access, "rotate").await;
    assert_eq!(again.status, 409, "{again:?}");
    assert!(again.is_conflict() && again.replayed, "{again:?}");
    assert!(again.text.contains("tokens"), "{again:?}");
    // Not run again: the new password still works, and the first answer's tokens too.
    assert_no_errors(&app.login("rotating", "rotating passphrase 2").await);
    let r = app
        .gql("{ account { username } }", json!({}), Some(&new_access))
        .await;
    assert_no_errors(&r);
}

/// An attempt whose key was taken over (a retry found it abandoned) cannot commit anything
/// afterwards: its write is refused in the same transaction. PostgreSQL only, for the row lock
/// that holds the attempt still while its claim changes hands.
#[tokio::test]
async fn an_attempt_that_lost_its_key_commits_nothing() {
    use sea_orm::TransactionTrait;
    let app = spawn_app().await;
    if app.state.db.get_database_backend() != DbBackend::Postgres {
        eprintln!("SKIPPED on SQLite: needs a row lock held beside the server's writes");
        return;
    }
    let admin = app.admin_token().await;
    let held = app.create_product(&admin, "Contested", "1.00").await;
    let locker = sea_orm::Database::connect(app.db.url.as_str())
        .await
        .unwrap();
    let lock = locker.begin().await.unwrap();
    lock.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT id FROM products WHERE id = $1 FOR UPDATE",
        [uuid::Uuid::parse_str(&held).unwrap().into()],
    ))
    .await
    .unwrap();
    let update = json!({
        "query": "mutation($id:ID!){ updateProduct(id:$id, input:{stock:7}){ stock } }",
        "variables": { "id": held },
    });
    let url = format!("{}/graphql", app.url);
    let token = admin.clone();
    let attempt =
        tokio::spawn(async move { send_at(&url, &update, Some(&token), Some("contested")).await });
    while key_row(&app, "contested").await.is_none() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // What a takeover does to the row: another attempt holds the key now.
    sql(
        &app,
        "UPDATE idempotency_keys SET claim_id = $1",
        vec![uuid::Uuid::new_v4().into()],
    )
    .await;
    lock.rollback().await.unwrap();
    let answer = attempt.await.unwrap();
    assert!(answer.is_conflict(), "{answer:?}");
    let r = app
        .gql(
            "query($id:ID!){ product(id:$id){ stock } }",
            json!({ "id": held }),
            Some(&admin),
        )
        .await;
    assert_eq!(
        r["data"]["product"]["stock"], 1,
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
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    app.create_product(&admin, "Teapot", "9.00").await;
    let read = json!({ "query": "{ products(first: 5) { nodes { name } } }" });
    let first = send(&app, &read, &admin, "just-reading").await;
    assert_eq!(first.body["data"]["products"]["nodes"][0]["name"], "Teapot");
    assert_eq!(
        key_row(&app, "just-reading").await,
        None,
        "a read kept its key"
    );
    app.create_product(&admin, "Kettle", "12.00").await;
    let again = send(&app, &read, &admin, "just-reading").await;
    assert!(!again.replayed, "{again:?}");
    assert_eq!(again.body["data"]["products"]["nodes"][1]["name"], "Kettle");

    let refused = json!({ "query": CREATE, "variables": { "n": "" } });
    for _ in 0..2 {
        let answer = send(&app, &refused, &admin, "refused").await;
        assert_eq!(codes(&answer.body), ["BAD_USER_INPUT"], "{answer:?}");
        assert!(!answer.replayed);
        assert_eq!(key_row(&app, "refused").await, None);
    }
    assert_eq!(stored_products(&app).await, 2);
}

/// A request that changed data but whose answer is too big to keep keeps a conflict instead,
/// and still never runs twice.
#[tokio::test]
async fn a_big_answer_is_not_kept_and_the_request_does_not_run_twice() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let long = "x".repeat(4000);
    for i in 0..20 {
        let r = app
            .gql(
                "mutation($n:String!,$d:String!){ createProduct(input:{name:$n, description:$d, price:\"1.00\"}){ id } }",
                json!({ "n": format!("Long {i}"), "d": long }),
                Some(&admin),
            )
            .await;
        assert_no_errors(&r);
    }
    let batch = json!([
        create("Fresh"),
        { "query": "{ products(first: 100) { nodes { description } } }" },
    ]);
    let first = send(&app, &batch, &admin, "big").await;
    assert_eq!(first.status, 200);
    assert!(first.text.len() > 16 * 1024, "{} bytes", first.text.len());
    assert!(
        first.body[0]["data"]["createProduct"]["id"].is_string(),
        "{:.300}",
        first.text
    );
    let again = send(&app, &batch, &admin, "big").await;
    assert!(again.is_conflict() && again.replayed, "{again:?}");
    assert_eq!(again.status, 409);
    assert!(again.text.contains("16 KiB"), "{}", again.text);
    assert_eq!(stored_products(&app).await, 21);
}

/// `deleteAccount` with a key: the claim outlives the account it belongs to, so the deletion
/// runs (once); and keyed requests racing their account's deletion are refused cleanly.
#[tokio::test]
async fn keyed_requests_and_the_deletion_of_their_account() {
    let app = spawn_app().await;
    app.register("leaver", "leaver passphrase 11").await;
    let r = app.login("leaver", "leaver passphrase 11").await;
    let token = r["data"]["login"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let reads: Vec<_> = (0..20)
        .map(|i| {
            let (url, token) = (format!("{}/graphql", app.url), token.clone());
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(i * 3)).await;
                send_at(
                    &url,
                    &json!({ "query": "{ account { username } }" }),
                    Some(&token),
                    Some(&format!("read-{i}")),
                )
                .await
            })
        })
        .collect();
    let delete =
        json!({ "query": "mutation { deleteAccount(currentPassword: \"leaver passphrase 11\") }" });
    let deleted = send(&app, &delete, &token, "leave").await;
    assert_eq!(deleted.body["data"]["deleteAccount"], true, "{deleted:?}");
    for read in reads {
        let answer = read.await.unwrap();
        assert!(answer.status < 500, "{answer:?}");
        let codes = codes(&answer.body);
        assert!(
            codes.is_empty() || codes == ["UNAUTHENTICATED"],
            "{answer:?}"
        );
    }
    let r = app.login("leaver", "leaver passphrase 11").await;
    assert_eq!(codes(&r), ["UNAUTHENTICATED"]);
}
