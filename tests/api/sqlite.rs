//! SQLite as a server database: the WAL stays bounded, and `storefront backup` makes a
//! consistent copy of a live database.

use std::{
    collections::BTreeSet,
    process::Command,
    time::{Duration, Instant},
};

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};
use storefront::db::SQLITE_JOURNAL_SIZE_LIMIT;
use tokio::sync::watch;

use crate::helpers::*;

const WRITERS: usize = 8;

/// `WRITERS` tasks creating products as the admin until `stop` turns true; each returns the
/// ids whose create was acknowledged, with the moment the answer arrived.
fn spawn_writers(
    app: &TestApp,
    admin: &str,
    stop: &watch::Sender<bool>,
) -> Vec<tokio::task::JoinHandle<Vec<(String, Instant)>>> {
    (0..WRITERS)
        .map(|writer| {
            let url = format!("{}/graphql", app.url);
            let admin = admin.to_owned();
            let mut stop = stop.subscribe();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut acknowledged = Vec::new();
                let description = "A product with a description long enough to fill pages. "
                    .repeat(20);
                for n in 0.. {
                    if *stop.borrow_and_update() {
                        break;
                    }
                    let body = json!({
                        "query": "mutation($n:String!,$d:String!){ createProduct(input:{name:$n, description:$d, price:\"1.00\", stock:1}){ id } }",
                        "variables": {"n": format!("w{writer}-{n}"), "d": description},
                    });
                    let Ok(response) = client.post(&url).bearer_auth(&admin).json(&body).send().await
                    else {
                        continue;
                    };
                    let Ok(r) = response.json::<Value>().await else {
                        continue;
                    };
                    if let Some(id) = r["data"]["createProduct"]["id"].as_str() {
                        acknowledged.push((id.to_owned(), Instant::now()));
                    }
                }
                acknowledged
            })
        })
        .collect()
}

fn wal_size(db: &TestDb) -> u64 {
    let mut wal = db.sqlite_path().unwrap().into_os_string();
    wal.push("-wal");
    std::fs::metadata(wal).map_or(0, |m| m.len())
}

#[tokio::test]
async fn the_wal_is_truncated_below_its_limit_after_a_burst_of_writers() {
    if std::env::var("TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty()) {
        return; // SQLite only.
    }
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (stop, _) = watch::channel(false);
    let writers = spawn_writers(&app, &admin, &stop);
    let mut largest = 0;
    let burst = Instant::now();
    while burst.elapsed() < Duration::from_secs(4) {
        largest = largest.max(wal_size(&app.db));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send_replace(true);
    let mut created = 0;
    for writer in writers {
        created += writer.await.unwrap().len();
    }
    assert!(created > 0);

    // Within a few seconds of the burst, the WAL is at most the documented limit (in fact
    // truncated to nothing once the server is idle).
    let after = Instant::now();
    let mut size = wal_size(&app.db);
    while size > SQLITE_JOURNAL_SIZE_LIMIT && after.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        size = wal_size(&app.db);
    }
    eprintln!(
        "{created} products by {WRITERS} writers; WAL peaked at {largest} bytes, \
         {size} bytes {:?} after the burst",
        after.elapsed()
    );
    assert!(
        size <= SQLITE_JOURNAL_SIZE_LIMIT,
        "WAL still {size} bytes 10 s after the burst"
    );
    assert!(app.product_count(&admin).await >= created as i64);
}

fn backup(url: &str, file: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_storefront"))
        .arg("backup")
        .arg(file)
        .env("DATABASE_URL", url)
        .output()
        .unwrap()
}

#[tokio::test]
async fn a_backup_under_write_load_holds_every_write_acknowledged_before_it_started() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    if app.db.sqlite_path().is_none() {
        // PostgreSQL: the command points to pg_dump and writes nothing.
        let out = backup(&app.db.url, &copy);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("pg_dump") && stderr.contains("pg_restore"),
            "{stderr}"
        );
        assert!(!copy.exists());
        // The message names the database without its password.
        let out = backup("postgres://app:hunter2@127.0.0.1:1/store", &copy);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("pg_dump") && !stderr.contains("hunter2"),
            "{stderr}"
        );
        return;
    }
    let admin = app.admin_token().await;
    let (stop, _) = watch::channel(false);
    let writers = spawn_writers(&app, &admin, &stop);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let started = Instant::now();
    let url = app.db.url.clone();
    let target = copy.clone();
    let out = tokio::task::spawn_blocking(move || backup(&url, &target))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.send_replace(true);
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    let before: BTreeSet<String> = acknowledged
        .iter()
        .filter(|(_, at)| *at < started)
        .map(|(id, _)| id.clone())
        .collect();
    assert!(!before.is_empty());

    // Never overwrites.
    let size = std::fs::metadata(&copy).unwrap().len();
    let out = backup(&app.db.url, &copy);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    assert_eq!(std::fs::metadata(&copy).unwrap().len(), size);

    // Restore: a server started on the copy has every product acknowledged before the backup.
    drop(app);
    let restored = spawn_on(TestDb::sqlite_file(&copy), Vec::new()).await;
    let rows = restored
        .state
        .db
        .query_all_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT id FROM products",
        ))
        .await
        .unwrap();
    let stored: BTreeSet<String> = rows
        .iter()
        .map(|row| {
            let id: uuid::Uuid = row.try_get("", "id").unwrap();
            id.to_string()
        })
        .collect();
    let missing: Vec<&String> = before.difference(&stored).collect();
    eprintln!(
        "{} acknowledged before the backup, {} in the copy",
        before.len(),
        stored.len()
    );
    assert!(missing.is_empty(), "missing from the backup: {missing:?}");
    let r = restored
        .gql("{ products { totalCount } }", json!({}), Some(&admin))
        .await;
    assert_no_errors(&r);
    assert_eq!(
        r["data"]["products"]["totalCount"].as_i64().unwrap(),
        stored.len() as i64
    );
}

const READS: usize = 40;
const HELD_WRITES: usize = 6;
/// However quickly the reads answer, the lock is held at least this long, so the writes
/// queued behind it are seen waiting.
const MIN_HOLD: Duration = Duration::from_millis(1500);
/// The reads must all have answered by then; well inside the writers' 5 s timeouts.
const READS_WITHIN: Duration = Duration::from_millis(3500);

/// One GraphQL request's answer and the moment it arrived.
async fn timed(url: &str, query: &str, variables: Value, token: Option<&str>) -> (Value, Instant) {
    let r = gql_at(
        url,
        json!({ "query": query, "variables": variables }),
        token,
    )
    .await;
    (r, Instant::now())
}

/// Another connection holds SQLite's write lock (`BEGIN IMMEDIATE` and an uncommitted insert)
/// while creates and then 40 reads arrive at once: `products` (with searches that miss the
/// catalog cache), `product(id:)` and `account`. The reads all answer, and before the lock is
/// released; the creates are what waits: none answers before the release, each is stored once
/// it is, and the other connection's uncommitted row never appears. Two rounds.
#[tokio::test]
async fn reads_never_wait_behind_a_held_write_lock_sqlite() {
    use sea_orm::sqlx::{self, Connection};
    let app = spawn_app().await;
    if app.db.sqlite_path().is_none() {
        return; // SQLite only: on PostgreSQL readers and writers share one pool.
    }
    let admin = app.admin_token().await;
    let user = app.register("reader", "reader passphrase here").await;
    let known = app.create_product(&admin, "Known", "1.00").await;
    let graphql = format!("{}/graphql", app.url);
    let mut stored = 1;
    let mut slowest_read = Duration::ZERO;
    for round in 0..2 {
        let mut holder = sqlx::SqliteConnection::connect(&app.db.url).await.unwrap();
        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut holder)
            .await
            .unwrap();
        sqlx::query("INSERT INTO app_meta (key, value) VALUES ($1, 'uncommitted')")
            .bind(format!("held-{round}"))
            .execute(&mut holder)
            .await
            .unwrap();
        let locked_at = Instant::now();

        let writes = spawn_creates(&graphql, &admin, &format!("held-{round}"));
        // The creates reach the writer first (and, were the pool shared, would hold
        // connections while they wait for the lock).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let reads_sent = Instant::now();
        let reads: Vec<_> = (0..READS)
            .map(|n| {
                let (url, user, known) = (graphql.clone(), user.clone(), known.clone());
                tokio::spawn(async move {
                    let (query, variables) = match n % 3 {
                        0 => (
                            "query($s:String!){ products(search:$s){ totalCount nodes { id } } }",
                            json!({ "s": format!("no-such-{round}-{n}") }),
                        ),
                        1 => (
                            "query($id:ID!){ product(id:$id){ name } }",
                            json!({ "id": known }),
                        ),
                        _ => ("{ account { username } }", json!({})),
                    };
                    let (r, at) = timed(&url, query, variables, Some(&user)).await;
                    (n, r, at)
                })
            })
            .collect();
        let answered = tokio::time::timeout(READS_WITHIN, async {
            let mut answered = Vec::new();
            for read in reads {
                answered.push(read.await.unwrap());
            }
            answered
        })
        .await
        .unwrap_or_else(|_| {
            panic!("round {round}: reads still unanswered {READS_WITHIN:?} into the held lock")
        });
        tokio::time::sleep(MIN_HOLD.saturating_sub(locked_at.elapsed())).await;
        let waiting = writes.iter().filter(|w| !w.is_finished()).count();
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut holder)
            .await
            .unwrap();
        let released_at = Instant::now();
        holder.close().await.unwrap();

        for (n, r, at) in &answered {
            assert_no_errors(r);
            let expected = match n % 3 {
                0 => json!({ "products": { "totalCount": 0, "nodes": [] } }),
                1 => json!({ "product": { "name": "Known" } }),
                _ => json!({ "account": { "username": "reader" } }),
            };
            assert_eq!(r["data"], expected, "round {round}, read {n}");
            assert!(*at < released_at);
            slowest_read = slowest_read.max(at.duration_since(reads_sent));
        }
        assert_eq!(
            waiting, HELD_WRITES,
            "round {round}: a create answered while another connection held the write lock"
        );
        let mut acknowledged = Vec::new();
        for write in writes {
            let (r, at) = write.await.unwrap();
            assert!(at > released_at);
            // Released well within the busy and pool timeouts: every create goes through.
            assert_no_errors(&r);
            acknowledged.push(
                r["data"]["createProduct"]["id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        for id in &acknowledged {
            let r = app
                .gql(
                    "query($id:ID!){ product(id:$id){ id } }",
                    json!({ "id": id }),
                    Some(&user),
                )
                .await;
            assert_eq!(r["data"]["product"]["id"], json!(id), "round {round}: {r}");
        }
        stored += acknowledged.len() as i64;
        assert_eq!(app.product_count(&admin).await, stored, "round {round}");
        let uncommitted = app
            .state
            .db
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "SELECT count(*) AS n FROM app_meta WHERE key LIKE 'held-%'",
                [],
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(uncommitted.try_get::<i64>("", "n").unwrap(), 0);
    }
    eprintln!(
        "{READS} reads per round while the write lock was held: the slowest answered \
         {slowest_read:?} after the reads were sent; {HELD_WRITES} creates per round waited and \
         were stored after the release"
    );
}

/// Sends `HELD_WRITES` creates at once, named `{prefix}-{n}`; each task answers with the
/// response and when it came.
fn spawn_creates(
    graphql: &str,
    admin: &str,
    prefix: &str,
) -> Vec<tokio::task::JoinHandle<(Value, Instant)>> {
    (0..HELD_WRITES)
        .map(|n| {
            let (url, admin, name) = (graphql.to_owned(), admin.to_owned(), format!("{prefix}-{n}"));
            tokio::spawn(async move {
                timed(
                    &url,
                    "mutation($n:String!){ createProduct(input:{name:$n, description:\"d\", price:\"1.00\", stock:1}){ id } }",
                    json!({ "n": name }),
                    Some(&admin),
                )
                .await
            })
        })
        .collect()
}

/// Another connection holds SQLite's write lock past every timeout while 6 creates arrive at
/// once: each is refused with `SERVICE_UNAVAILABLE` (the first after the busy timeout, those
/// queued behind it for the one writer after the pool's acquire timeout) and none is stored.
/// Queries sent after the refusals, the lock still held, all answer: refused writes do not
/// close the database to reads. Once the lock is released, a create goes through.
#[tokio::test]
async fn writes_queued_behind_a_lock_held_too_long_are_refused_and_reads_go_on_sqlite() {
    use sea_orm::sqlx::{self, Connection};
    let app = spawn_app().await;
    if app.db.sqlite_path().is_none() {
        return; // SQLite only.
    }
    let admin = app.admin_token().await;
    let user = app.register("reader", "reader passphrase here").await;
    app.create_product(&admin, "Known", "1.00").await;
    let graphql = format!("{}/graphql", app.url);
    let mut holder = sqlx::SqliteConnection::connect(&app.db.url).await.unwrap();
    sqlx::raw_sql("BEGIN IMMEDIATE; INSERT INTO app_meta (key, value) VALUES ('held', 'x')")
        .execute(&mut holder)
        .await
        .unwrap();
    let locked_at = Instant::now();
    let writes = spawn_creates(&graphql, &admin, "refused");
    let mut slowest_refusal = Duration::ZERO;
    for write in writes {
        let (r, at) = tokio::time::timeout(Duration::from_secs(30), write)
            .await
            .expect("a write waited past every timeout")
            .unwrap();
        // A create queued for the writer can get it just as the one before gives up, and then
        // wait out the busy timeout itself: past REQUEST_TIMEOUT_MS on a loaded machine, which
        // answers TIMEOUT (also HTTP 503, also nothing acknowledged).
        let code = codes(&r);
        assert!(
            code == ["SERVICE_UNAVAILABLE"] || code == ["TIMEOUT"],
            "{r}"
        );
        assert!(
            r["data"].is_null() || r["data"]["createProduct"].is_null(),
            "{r}"
        );
        slowest_refusal = slowest_refusal.max(at.duration_since(locked_at));
    }
    // Still held: every query answers.
    let reads: Vec<_> = (0..READS)
        .map(|n| {
            let (url, user) = (graphql.clone(), user.clone());
            tokio::spawn(async move {
                let query = if n % 2 == 0 {
                    "{ products { totalCount } }"
                } else {
                    "{ account { username } }"
                };
                timed(&url, query, json!({}), Some(&user)).await
            })
        })
        .collect();
    for read in reads {
        let (r, _) = read.await.unwrap();
        assert_no_errors(&r);
        assert!(
            r["data"]["products"]["totalCount"] == json!(1)
                || r["data"]["account"]["username"] == json!("reader"),
            "{r}"
        );
    }
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .unwrap();
    holder.close().await.unwrap();
    eprintln!(
        "{HELD_WRITES} creates behind a held lock: all refused, the last {slowest_refusal:?} \
         after the lock was taken; {READS} queries then answered with the lock still held"
    );
    assert_eq!(
        app.product_count(&admin).await,
        1,
        "no refused create was stored"
    );
    app.create_product(&admin, "After", "1.00").await;
    assert_eq!(app.product_count(&admin).await, 2);
}
