//! Several replicas on one PostgreSQL database hear each other through `LISTEN`/`NOTIFY`:
//! catalog events reach subscribers on every replica, in commit order; a logout or a policy
//! change made on one replica is in force on the others at once (their polls are set to a
//! minute here, so only the notification can do it in time); a replica whose listening
//! connection is cut closes its subscribers with 1012 and listens again. SQLite serves a
//! database file from one process: these tests run in the PostgreSQL pass.

use std::time::Duration;

use serde_json::json;

use crate::kit::*;

const PRODUCT_CHANGED: &str = "subscription {
    productChanged { kind id version product { name description stock version } } }";

/// Polls that would take a minute: what happens sooner came by notification.
fn slow_polls() -> TestAppBuilder {
    TestApp::builder().configure(|c| {
        c.auth.revocation_poll = Duration::from_secs(60);
        c.policy.poll = Duration::from_secs(60);
        c.caches.catalog_poll = Duration::from_secs(60);
    })
}

/// Well under the minute the polls take, and generous for a loaded machine.
const BY_NOTIFICATION: Duration = Duration::from_secs(10);

async fn until(what: &str, check: impl AsyncFnMut() -> bool) {
    let took = within(PATIENCE, check).await;
    assert!(took.is_some(), "{what}: not reached in time");
}

#[tokio::test]
async fn a_subscriber_on_one_replica_hears_every_change_made_through_another_in_order() {
    if !TestDb::on_postgres() {
        return; // PostgreSQL only: runs in the PostgreSQL pass.
    }
    let app = slow_polls().spawn().await;
    let other = app.replica_with(slow_polls()).await;
    let admin = app.admin().await;
    let user = app.user("ursula").await;

    let mut there = WsClient::signed_in(&other, &user).await;
    there.subscribe("s", PRODUCT_CHANGED, json!({})).await;
    let mut here = WsClient::signed_in(&app, &user).await;
    here.subscribe("s", PRODUCT_CHANGED, json!({})).await;
    until("both subscribed", async || {
        other.subscriber_count() == 1 && app.subscriber_count() == 1
    })
    .await;
    // Read there first, so that the other replica holds the list in its cache.
    let count_before = user.on(&other).product_count().await;

    // Created, renamed, restocked, deleted through the first replica; then a product whose
    // description is too long for a notification to carry (5000 four-byte characters).
    let kettle = admin.add_product("Kettle", "10.00").await;
    let renamed = ProductChanges {
        name: Some("Steel kettle".into()),
        ..ProductChanges::default()
    };
    admin.update_product(&kettle.id, &renamed).await.ok();
    admin.adjust_stock(&kettle.id, 5).await.ok();
    admin.delete_product(&kettle.id).await.ok();
    let long = "𝄞".repeat(5000);
    let mut score = NewProduct::new("Score", "30.00");
    score.description = long.clone();
    let score = admin.add(&score).await;

    for client in [&mut there, &mut here] {
        let mut seen = Vec::new();
        for _ in 0..5 {
            let event = client.next_of("s").await["data"]["productChanged"].clone();
            seen.push((
                event["kind"].as_str().unwrap().to_owned(),
                event["id"].as_str().unwrap().to_owned(),
                event["version"].as_i64().unwrap(),
                event["product"]["name"].clone(),
                event["product"]["stock"].clone(),
            ));
            if event["id"] == score.id.as_str() {
                assert_eq!(event["product"]["description"], long.as_str());
            }
        }
        let stock = kettle.stock;
        assert_eq!(
            seen,
            vec![
                (
                    "CREATED".into(),
                    kettle.id.clone(),
                    1,
                    json!("Kettle"),
                    json!(stock)
                ),
                (
                    "UPDATED".into(),
                    kettle.id.clone(),
                    2,
                    json!("Steel kettle"),
                    json!(stock)
                ),
                (
                    "UPDATED".into(),
                    kettle.id.clone(),
                    3,
                    json!("Steel kettle"),
                    json!(stock + 5)
                ),
                (
                    "DELETED".into(),
                    kettle.id.clone(),
                    3,
                    json!(null),
                    json!(null)
                ),
                (
                    "CREATED".into(),
                    score.id.clone(),
                    1,
                    json!("Score"),
                    json!(score.stock)
                ),
            ],
            "every change, once, in commit order"
        );
        client.assert_silent(Duration::from_millis(300)).await;
    }

    // The other replica's cached list follows at once, though its catalog poll is a minute:
    // one product more (the score; the kettle came and went).
    assert_eq!(user.on(&other).product_count().await, count_before + 1);
    // A change made in SQL, not by a replica, is seen there at once too (a trigger notifies
    // of every new catalog version).
    let score_id = sea_orm::Value::from(uuid::Uuid::parse_str(&score.id).unwrap());
    app.sql("DELETE FROM products WHERE id = $1", vec![score_id])
        .await;
    let seen = within(BY_NOTIFICATION, async || {
        user.on(&other).product_count().await == count_before
    })
    .await;
    assert!(
        seen.is_some(),
        "the other replica kept serving its cached count"
    );
}

#[tokio::test]
async fn a_logout_on_one_replica_ends_a_subscription_on_another_at_once() {
    if !TestDb::on_postgres() {
        return;
    }
    let app = slow_polls().spawn().await;
    let other = app.replica_with(slow_polls()).await;
    let user = app.user("ursula").await;
    let mut there = subscribed_on(&other, &user).await;

    user.logout().await.ok();
    let (closed, took) = there
        .closed_within(BY_NOTIFICATION)
        .await
        .expect("the subscription on the other replica did not end");
    eprintln!("ended on the other replica after {took:?}");
    assert_eq!(closed, (4403, "session ended".to_owned()));
    // And a query there with the ended token is refused as well.
    let r = user.on(&other).account().await;
    assert_eq!(r.codes(), ["UNAUTHENTICATED"], "{r}");
}

#[tokio::test]
async fn a_policy_change_on_one_replica_is_in_force_on_another_at_once() {
    if !TestDb::on_postgres() {
        return;
    }
    let stored = || slow_polls().env("POLICY_SOURCE", "database");
    let app = stored().spawn().await;
    let other = app.replica_with(stored()).await;
    let admin = app.admin().await;
    let user = app.user("ursula").await;
    let mut there = subscribed_on(&other, &user).await;

    let revoke = "mutation($role:String!,$p:PermissionInput!){
        revokePermission(role:$role, permission:$p){ version } }";
    let r = admin
        .query(
            revoke,
            json!({"role": "user", "p": {"object": "product", "action": "read"}}),
        )
        .await;
    assert!(r.codes().is_empty(), "{r}");
    let (closed, took) = there
        .closed_within(BY_NOTIFICATION)
        .await
        .expect("the subscription on the other replica did not end");
    eprintln!("ended on the other replica after {took:?}");
    assert_eq!(closed.0, 4403);
    let r = user.on(&other).products(Page::first(1)).await;
    assert_eq!(r.codes(), ["FORBIDDEN"], "{r}");
}

#[tokio::test]
async fn a_replica_that_loses_its_listening_connection_closes_subscribers_and_listens_again() {
    if !TestDb::on_postgres() {
        return;
    }
    let app = slow_polls().spawn().await;
    let other = app.replica_with(slow_polls()).await;
    let admin = app.admin().await;
    let user = app.user("ursula").await;
    let mut there = subscribed_on(&other, &user).await;

    // Both replicas' listening connections to this test's database are cut.
    let cut = app
        .sql_count(
            "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'storefront-listener'",
            vec![],
        )
        .await;
    assert_eq!(cut, 2, "one listening connection per replica");
    // Events sent while it was cut are lost: its subscribers are told to start over.
    assert_eq!(
        there.closed().await,
        (
            1012,
            "events may have been missed: subscribe again".to_owned()
        )
    );

    // It listens again: a new subscriber there hears the next change made here.
    until("the old subscription gone", async || {
        other.subscriber_count() == 0
    })
    .await;
    let mut again = subscribed_once_listening(&other, &user).await;
    let lamp = admin.add_product("Lamp", "20.00").await;
    let event = again.next_of("s").await["data"]["productChanged"].clone();
    assert_eq!(
        (event["kind"].clone(), event["id"].clone()),
        (json!("CREATED"), json!(lamp.id))
    );
}

#[tokio::test]
async fn a_stopped_replica_lets_go_of_its_listening_connection() {
    if !TestDb::on_postgres() {
        return;
    }
    let app = TestApp::spawn().await;
    let listeners = async || {
        app.sql_count(
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'storefront-listener'",
            vec![],
        )
        .await
    };
    let other = app.replica().await;
    assert_eq!(listeners().await, 2, "one listening connection per replica");
    drop(other);
    // It notices at its next heartbeat (every 5 s) and closes its connection.
    let gone = within(Duration::from_secs(20), async || listeners().await == 1).await;
    assert!(gone.is_some(), "the stopped replica still listens");
}

/// Long products (sent in several notifications) changed on one replica while their stock is
/// adjusted on another: every subscriber, on either replica, receives every committed version
/// once and in order, and every stock change (an outside attack found a long product's event
/// read back at a later version, which swallowed the stock change's own event).
#[tokio::test]
async fn long_products_changed_beside_stock_adjustments_reach_every_subscriber_exactly() {
    if !TestDb::on_postgres() {
        return;
    }
    let app = slow_polls().spawn().await;
    let other = app.replica_with(slow_polls()).await;
    let admin = app.admin().await;
    let user = app.user("ursula").await;
    let kettle = admin.add_product("Kettle", "10.00").await;
    const STOCK: &str =
        "subscription($ids: [ID!]!) { stockChanged(productIds: $ids) { stock version } }";
    const CHANGES: &str = "subscription($ids: [ID!]) { productChanged(ids: $ids) {
        version product { description stock version } } }";
    let ids = json!({"ids": [kettle.id]});
    let mut clients = Vec::new();
    for server in [&app as &dyn std::any::Any, &other as &dyn std::any::Any] {
        let (mut stock, mut changes) = match server.downcast_ref::<TestApp>() {
            Some(app) => (
                WsClient::signed_in(app, &user).await,
                WsClient::signed_in(app, &user).await,
            ),
            None => (
                WsClient::signed_in(&other, &user).await,
                WsClient::signed_in(&other, &user).await,
            ),
        };
        stock.subscribe("s", STOCK, ids.clone()).await;
        changes.subscribe("c", CHANGES, ids.clone()).await;
        clients.push((stock, changes));
    }
    until("all subscribed", async || {
        app.subscriber_count() == 2 && other.subscriber_count() == 2
    })
    .await;

    let admin_there = admin.on(&other);
    let mut adjusted = Vec::new();
    for round in 0..6 {
        let changes = ProductChanges {
            description: Some(format!("{round}{}", "𝄞".repeat(4999))),
            ..ProductChanges::default()
        };
        let (updated, stocked) = tokio::join!(
            admin.update_product(&kettle.id, &changes),
            admin_there.adjust_stock(&kettle.id, 1)
        );
        assert!(updated.codes().is_empty(), "{updated}");
        let stocked = stocked.ok();
        adjusted.push((stocked.stock, stocked.version));
    }
    adjusted.sort_by_key(|(_, version)| *version);
    let last = kettle.version + 12;

    for (stock, changes) in &mut clients {
        let mut versions = Vec::new();
        while versions.len() < 12 {
            let event = changes.next_of("c").await["data"]["productChanged"].clone();
            let version = event["version"].as_i64().unwrap();
            assert_eq!(event["product"]["version"], version);
            versions.push(version);
        }
        let expected: Vec<i64> = (kettle.version + 1..=last).collect();
        assert_eq!(versions, expected, "every version, once, in commit order");
        let mut stocks = Vec::new();
        while stocks.len() < adjusted.len() {
            let event = stock.next_of("s").await["data"]["stockChanged"].clone();
            stocks.push((
                event["stock"].as_i64().unwrap(),
                event["version"].as_i64().unwrap(),
            ));
        }
        assert_eq!(stocks, adjusted, "every stock change");
        changes.assert_silent(Duration::from_millis(200)).await;
        stock.assert_silent(Duration::from_millis(200)).await;
    }
}

/// A subscriber to every product change on `replica`, listening.
async fn subscribed_on(replica: &Replica, user: &Actor) -> WsClient {
    let before = replica.subscriber_count();
    let mut client = WsClient::signed_in(replica, user).await;
    client.subscribe("s", PRODUCT_CHANGED, json!({})).await;
    until("subscribed", async || {
        replica.subscriber_count() == before + 1
    })
    .await;
    client
}

/// A subscriber to every product change on `replica` (which has no other), once it takes
/// subscriptions again (it refuses them while it cannot listen).
async fn subscribed_once_listening(replica: &Replica, user: &Actor) -> WsClient {
    let mut subscribed = None;
    let listening = within(PATIENCE, async || {
        let mut client = WsClient::signed_in(replica, user).await;
        client.subscribe("s", PRODUCT_CHANGED, json!({})).await;
        let took = within(Duration::from_millis(500), async || {
            replica.subscriber_count() == 1
        })
        .await
        .is_some();
        if took {
            subscribed = Some(client);
        }
        took
    })
    .await;
    assert!(listening.is_some(), "it never listened again");
    subscribed.unwrap()
}

/// A TCP proxy to PostgreSQL that a test can cut: cut, it drops every connection it carries
/// and every new one.
struct Cuttable {
    addr: String,
    cut: tokio::sync::watch::Sender<bool>,
}

impl Cuttable {
    async fn to(target: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (cut, watching) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut watching = watching.clone();
                if *watching.borrow() {
                    continue;
                }
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watching.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Self { addr, cut }
    }
}

#[tokio::test]
async fn a_replica_that_cannot_listen_sends_its_subscribers_elsewhere_and_takes_none_until_it_can()
{
    if !TestDb::on_postgres() {
        return;
    }
    let app = slow_polls().spawn().await;
    // The other replica listens through a proxy the test cuts.
    let url = app.database_url().to_owned();
    let host = url
        .split('@')
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let proxy = Cuttable::to(host.clone()).await;
    let listen_url = url.replacen(&host, &proxy.addr, 1);
    let other = app
        .replica_with(slow_polls().env("DATABASE_LISTEN_URL", &listen_url))
        .await;
    let admin = app.admin().await;
    let user = app.user("ursula").await;
    let mut there = subscribed_on(&other, &user).await;

    // Cut: it closes its subscribers at once (1012), not when it listens again.
    proxy.cut.send_replace(true);
    assert_eq!(
        there.closed().await,
        (
            1012,
            "events may have been missed: subscribe again".to_owned()
        )
    );
    // While it cannot listen, it starts no subscription: a client goes to another replica.
    let mut refused = WsClient::signed_in(&other, &user).await;
    refused.subscribe("r", PRODUCT_CHANGED, json!({})).await;
    let answer = refused.message().await;
    let errors = match answer["type"].as_str() {
        Some("error") => answer["payload"].clone(),
        _ => answer["payload"]["errors"].clone(),
    };
    assert_eq!(
        errors[0]["extensions"]["code"], "SERVICE_UNAVAILABLE",
        "{answer}"
    );

    // Back: it listens again and its subscribers hear the next change.
    proxy.cut.send_replace(false);
    let mut again = subscribed_once_listening(&other, &user).await;
    let lamp = admin.add_product("Lamp", "20.00").await;
    let event = again.next_of("s").await["data"]["productChanged"].clone();
    assert_eq!(
        (event["kind"].clone(), event["id"].clone()),
        (json!("CREATED"), json!(lamp.id))
    );
}
