//! SQLite as a server database: the WAL stays bounded, and `storefront backup` makes a
//! consistent copy of a live database.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::kit::{documents::CREATE_PRODUCT, internals::SQLITE_JOURNAL_SIZE_LIMIT, *};

const WRITERS: usize = 8;

/// `WRITERS` tasks creating products as the admin until `stop` turns true; each returns the
/// ids whose create was acknowledged, with the moment the answer arrived.
///
/// The writers send by hand, without the kit's assertions: under this load a request may fail
/// in any way, and only what was acknowledged counts.
fn spawn_writers(
    app: &TestApp,
    admin: &Actor,
    stop: &watch::Sender<bool>,
) -> Vec<tokio::task::JoinHandle<Vec<(String, Instant)>>> {
    (0..WRITERS)
        .map(|writer| {
            let url = app.graphql_url();
            let admin = admin.token().to_owned();
            let mut stop = stop.subscribe();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut acknowledged = Vec::new();
                let description =
                    "A product with a description long enough to fill pages. ".repeat(20);
                for n in 0.. {
                    if *stop.borrow_and_update() {
                        break;
                    }
                    let product = NewProduct::new(&format!("w{writer}-{n}"), "1.00")
                        .description(&description);
                    let body = CREATE_PRODUCT.request(json!({ "input": product }));
                    let Ok(response) = client
                        .post(&url)
                        .bearer_auth(&admin)
                        .json(&body)
                        .send()
                        .await
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
    if TestDb::on_postgres() {
        return; // SQLite only.
    }
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
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
    assert!(admin.product_count().await >= created as i64);
}

fn backup(url: &str, file: &std::path::Path) -> std::process::Output {
    let file = file.to_str().expect("a UTF-8 temp path");
    storefront(&["backup", file]).env("DATABASE_URL", url).run()
}

#[tokio::test]
async fn a_backup_under_write_load_holds_every_write_acknowledged_before_it_started() {
    let app = TestApp::spawn().await;
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
    let admin = app.admin().await;
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
    let restored = TestApp::builder()
        .on(TestDb::sqlite_file(&copy))
        .spawn()
        .await;
    let rows = restored.sql_rows("SELECT id FROM products", vec![]).await;
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
    assert_eq!(
        restored.bearer(admin.token()).product_count().await,
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
async fn timed(caller: &Actor, query: &str, variables: Value) -> (Response, Instant) {
    let r = caller.query(query, variables).await;
    (r, Instant::now())
}

/// Another connection holds SQLite's write lock (`BEGIN IMMEDIATE` and an uncommitted insert)
/// while creates and then 40 reads arrive at once: `products` (with searches that miss the
/// catalog cache), `product(id:)` and `account`. The reads all answer, and before the lock is
/// released; the creates are what waits: none answers before the release, each is stored once
/// it is, and the other connection's uncommitted row never appears. Two rounds.
#[tokio::test]
async fn reads_never_wait_behind_a_held_write_lock_sqlite() {
    let app = TestApp::spawn().await;
    if app.db.sqlite_path().is_none() {
        return; // SQLite only: on PostgreSQL readers and writers share one pool.
    }
    let admin = app.admin().await;
    let user = app.user_with("reader", "reader passphrase here").await;
    let known = admin.add_product("Known", "1.00").await.id;
    let mut stored = 1;
    let mut slowest_read = Duration::ZERO;
    for round in 0..2 {
        let mut lock = app.db.hold_write_lock().await;
        lock.execute(&format!(
            "INSERT INTO app_meta (key, value) VALUES ('held-{round}', 'uncommitted')"
        ))
        .await;
        let locked_at = Instant::now();

        let writes = spawn_creates(&admin, &format!("held-{round}"));
        // The creates reach the writer first (and, were the pool shared, would hold
        // connections while they wait for the lock).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let reads_sent = Instant::now();
        let reads: Vec<_> = (0..READS)
            .map(|n| {
                let (user, known) = (user.clone(), known.clone());
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
                    let (r, at) = timed(&user, query, variables).await;
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
        let released_at = lock.release().await;

        for (n, r, at) in &answered {
            r.assert_ok();
            let expected = match n % 3 {
                0 => json!({ "products": { "totalCount": 0, "nodes": [] } }),
                1 => json!({ "product": { "name": "Known" } }),
                _ => json!({ "account": { "username": "reader" } }),
            };
            assert_eq!(r.raw_data(), &expected, "round {round}, read {n}");
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
            acknowledged.push(r.ok().id);
        }
        for id in &acknowledged {
            let r = user.product(id).await;
            assert_eq!(
                r.data().flatten().map(|p| p.id).as_ref(),
                Some(id),
                "round {round}: {r}"
            );
        }
        stored += acknowledged.len() as i64;
        assert_eq!(admin.product_count().await, stored, "round {round}");
        let uncommitted = app
            .sql_count(
                "SELECT count(*) AS n FROM app_meta WHERE key LIKE 'held-%'",
                vec![],
            )
            .await;
        assert_eq!(uncommitted, 0);
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
    admin: &Actor,
    prefix: &str,
) -> Vec<tokio::task::JoinHandle<(Response<Product>, Instant)>> {
    (0..HELD_WRITES)
        .map(|n| {
            let (admin, product) = (
                admin.clone(),
                NewProduct::new(&format!("{prefix}-{n}"), "1.00"),
            );
            tokio::spawn(async move {
                let r = admin.create_product(&product).await;
                (r, Instant::now())
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
    let app = TestApp::spawn().await;
    if app.db.sqlite_path().is_none() {
        return; // SQLite only.
    }
    let admin = app.admin().await;
    let user = app.user_with("reader", "reader passphrase here").await;
    admin.add_product("Known", "1.00").await;
    let mut lock = app.db.hold_write_lock().await;
    lock.execute("INSERT INTO app_meta (key, value) VALUES ('held', 'x')")
        .await;
    let locked_at = Instant::now();
    let writes = spawn_creates(&admin, "refused");
    let mut slowest_refusal = Duration::ZERO;
    for write in writes {
        let (r, at) = tokio::time::timeout(Duration::from_secs(30), write)
            .await
            .expect("a write waited past every timeout")
            .unwrap();
        // A create queued for the writer can get it just as the one before gives up, and then
        // wait out the busy timeout itself: past REQUEST_TIMEOUT_MS on a loaded machine, which
        // answers TIMEOUT (also HTTP 503, also nothing acknowledged).
        let code = r.codes();
        assert!(
            code == ["SERVICE_UNAVAILABLE"] || code == ["TIMEOUT"],
            "{r}"
        );
        assert!(
            r.raw_data().is_null() || r.raw_data()["createProduct"].is_null(),
            "{r}"
        );
        slowest_refusal = slowest_refusal.max(at.duration_since(locked_at));
    }
    // Still held: every query answers.
    let reads: Vec<_> = (0..READS)
        .map(|n| {
            let user = user.clone();
            tokio::spawn(async move {
                let query = if n % 2 == 0 {
                    "{ products { totalCount } }"
                } else {
                    "{ account { username } }"
                };
                timed(&user, query, json!({})).await
            })
        })
        .collect();
    for read in reads {
        let (r, _) = read.await.unwrap();
        r.assert_ok();
        let data = r.raw_data();
        assert!(
            data["products"]["totalCount"] == json!(1)
                || data["account"]["username"] == json!("reader"),
            "{r}"
        );
    }
    lock.release().await;
    eprintln!(
        "{HELD_WRITES} creates behind a held lock: all refused, the last {slowest_refusal:?} \
         after the lock was taken; {READS} queries then answered with the lock still held"
    );
    assert_eq!(
        admin.product_count().await,
        1,
        "no refused create was stored"
    );
    admin.add_product("After", "1.00").await;
    assert_eq!(admin.product_count().await, 2);
}
