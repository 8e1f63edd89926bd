//! GraphQL subscriptions over a real WebSocket (graphql-transport-ws at `/graphql`): the
//! handshake and `connection_init`, the events of changes made over HTTP, the guards on each
//! event, the connection closed when its token or policy stops allowing it, the limits, and
//! the drain.

use std::time::Duration;

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, http::HeaderValue};

use crate::kit::*;

const PRODUCT_CHANGED: &str = "subscription($ids: [ID!]) {
    productChanged(ids: $ids) { kind id product { id name stock version } } }";
const WITH_CREATOR: &str = "subscription {
    productChanged { kind id product { name createdBy { id } } } }";
const STOCK_CHANGED: &str = "subscription($ids: [ID!]!) {
    stockChanged(productIds: $ids) { id stock version updatedAt } }";

/// The most a test waits for a subscription to end after what ends it. The design target is
/// 1 s (each connection checks every 250 ms, and revocations are polled every 250 ms); tests
/// only assert that it ends, with this generous bound, and print the time it took.
const ENDS_WITHIN: Duration = Duration::from_secs(5);

/// Waits until the server holds `n` live subscriptions (they listen from then on).
async fn until_subscribers(app: &TestApp, n: usize) {
    let reached = within(PATIENCE, async || app.subscriber_count() == n).await;
    assert!(
        reached.is_some(),
        "expected {n} live subscriptions, the server holds {}",
        app.subscriber_count()
    );
}

/// The codes of a payload's (or an `error` message's) errors.
fn codes(errors: &Value) -> Vec<String> {
    errors
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["extensions"]["code"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn expect_error(client: &mut WsClient, id: &str) -> Value {
    let message = client.message().await;
    assert_eq!(message["type"], "error", "{message}");
    assert_eq!(message["id"], id, "{message}");
    message["payload"].clone()
}

#[tokio::test]
async fn connection_init_takes_the_token_from_its_payload_and_refuses_a_bad_one() {
    let app = TestApp::spawn().await;
    let user = app.user("ursula").await;

    // With a token (either spelling), and without one: acknowledged.
    WsClient::signed_in(&app, &user).await;
    WsClient::initialised(
        &app,
        json!({"authorization": format!("Bearer {}", user.token())}),
    )
    .await;
    WsClient::anonymous(&app).await;
    // An empty one is none, as for the HTTP header (clients send "" when signed out).
    WsClient::initialised(&app, json!({"Authorization": ""})).await;

    // A malformed token, one signed with another key, one that is not a string, an expired
    // one, and one revoked by logout: closed with 4403, as graphql-ws does.
    let claims = claims_of(user.token());
    let header = header_of(user.token());
    let mut expired = claims.clone();
    expired["exp"] = json!(chrono::Utc::now().timestamp() - 3600);
    expired["iat"] = json!(chrono::Utc::now().timestamp() - 7200);
    expired["nbf"] = json!(chrono::Utc::now().timestamp() - 7200);
    let expired = forge_jwt(&header, &expired, JWT_SECRET.as_bytes());
    let foreign = forge_jwt(&header, &claims, b"another secret, 32 bytes or more!!");
    let session = app.user("sven").await;
    session.logout().await.ok();
    for payload in [
        json!({"Authorization": "Bearer not-a-token"}),
        json!({"Authorization": format!("Bearer {foreign}")}),
        json!({"Authorization": 42}),
        json!({"Authorization": format!("Bearer {expired}")}),
        json!({"Authorization": format!("Bearer {}", session.token())}),
        json!({"Authorization": user.token()}),
    ] {
        let mut client = WsClient::connect(&app).await;
        client.init(payload.clone()).await;
        assert_eq!(
            client.closed().await,
            (4403, "Forbidden".to_owned()),
            "{payload}"
        );
    }

    // The key in any case is the key, as a header's name is.
    let mut shouting = WsClient::initialised(
        &app,
        json!({"AUTHORIZATION": format!("Bearer {}", user.token())}),
    )
    .await;
    shouting
        .subscribe(
            "mine",
            "subscription { productChanged { kind } }",
            json!({}),
        )
        .await;
    until_subscribers(&app, 1).await;
    drop(shouting);
    // A payload that is not an object (nor null), or that names Authorization twice in any
    // case (which one counts?): 4400, which graphql-ws does not retry. Before, these made an
    // anonymous caller.
    for payload in [
        json!("Bearer x"),
        json!([format!("Bearer {}", user.token())]),
        json!({"Authorization": null, "authorization": format!("Bearer {}", user.token())}),
        json!({"authorization": format!("Bearer {}", user.token()), "AUTHORIZATION": ""}),
    ] {
        let mut client = WsClient::connect(&app).await;
        client.init(payload.clone()).await;
        assert_eq!(client.closed().await.0, 4400, "{payload}");
    }
    // A null payload, or none, is anonymous.
    WsClient::initialised(&app, Value::Null).await;
    let mut bare = WsClient::connect(&app).await;
    bare.send(json!({"type": "connection_init"})).await;
    assert_eq!(bare.message().await, json!({"type": "connection_ack"}));

    // A token past its `exp` but within the verification leeway: refused at init (before, it
    // was acknowledged, then closed at the first check).
    let mut just_expired = claims.clone();
    just_expired["exp"] = json!(chrono::Utc::now().timestamp() - 2);
    let just_expired = forge_jwt(&header, &just_expired, JWT_SECRET.as_bytes());
    let mut late = WsClient::connect(&app).await;
    late.init(json!({"Authorization": format!("Bearer {just_expired}")}))
        .await;
    assert_eq!(
        late.receive().await,
        Received::Closed(4403, "Forbidden".to_owned())
    );

    // A subscribe before connection_init: 4401, as the protocol says.
    let mut early = WsClient::connect(&app).await;
    early.subscribe("1", PRODUCT_CHANGED, json!({})).await;
    assert_eq!(early.closed().await.0, 4401);
}

#[tokio::test]
async fn a_socket_that_does_not_initialise_in_time_is_closed_with_4408() {
    let app = TestApp::builder()
        .ws_init_timeout(Duration::from_secs(1))
        .spawn()
        .await;
    let mut idle = WsClient::connect(&app).await;
    let started = std::time::Instant::now();
    assert_eq!(
        idle.closed().await,
        (4408, "Connection initialisation timeout".to_owned())
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "not before the timeout: {:?}",
        started.elapsed()
    );
    // One that initialises in time stays open past it.
    let mut on_time = WsClient::anonymous(&app).await;
    on_time.assert_silent(Duration::from_millis(1500)).await;
}

#[tokio::test]
async fn only_graphql_transport_ws_from_allowed_origins_is_served() {
    let app = TestApp::builder()
        .cors_origins(&["https://shop.example"])
        .spawn()
        .await;
    let refused_with = async |request| match WsClient::connect_request(request).await {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected a refusal, the socket opened"),
    };

    // The legacy protocol alone (subscriptions-transport-ws's `graphql-ws`): refused.
    let mut legacy = WsClient::request(&app);
    legacy.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-ws"),
    );
    assert_eq!(refused_with(legacy).await, 400);
    // The name in another case: refused, not served without the header (the name is
    // case-sensitive, and the answer must name what was offered).
    let mut shouted = WsClient::request(&app);
    shouted.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("GRAPHQL-TRANSPORT-WS"),
    );
    assert_eq!(refused_with(shouted).await, 400);
    // No subprotocol: refused.
    let mut none = WsClient::request(&app);
    none.headers_mut().remove("Sec-WebSocket-Protocol");
    assert_eq!(refused_with(none).await, 400);
    // Both offered, legacy first: graphql-transport-ws is picked (asserted by the kit).
    let mut both = WsClient::request(&app);
    both.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-ws, graphql-transport-ws"),
    );
    WsClient::connect_request(both).await.unwrap();

    // A page on another site: refused (cross-site WebSocket hijacking).
    let mut evil = WsClient::request(&app);
    evil.headers_mut()
        .insert("Origin", HeaderValue::from_static("https://evil.example"));
    assert_eq!(refused_with(evil).await, 403);
    // An allowed origin, and the server's own: served.
    for origin in [
        "https://shop.example".to_owned(),
        format!("http://{}", app.addr()),
    ] {
        let mut request = WsClient::request(&app);
        request
            .headers_mut()
            .insert("Origin", HeaderValue::from_str(&origin).unwrap());
        WsClient::connect_request(request).await.unwrap();
    }

    // Plain GETs of /graphql keep their behaviour.
    let r = app.get_query("{ __typename }", "application/json").await;
    assert!(r.codes().is_empty(), "{r}");
    // A subscription sent over HTTP is refused, naming the WebSocket.
    let user = app.user("ursula").await;
    let r = user.query(PRODUCT_CHANGED, json!({})).await;
    assert_eq!(r.codes(), ["BAD_REQUEST"], "{r}");
    assert!(r.error().message.contains("WebSocket"), "{r}");
}

#[tokio::test]
async fn product_changed_receives_creates_updates_and_deletes_made_over_http() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let user = app.user("ursula").await;
    let kettle = admin.add_product("Kettle", "10.00").await;

    let mut everything = WsClient::signed_in(&app, &user).await;
    everything
        .subscribe("all", PRODUCT_CHANGED, json!({}))
        .await;
    let mut kettle_only = WsClient::signed_in(&app, &user).await;
    kettle_only
        .subscribe("kettle", PRODUCT_CHANGED, json!({"ids": [kettle.id]}))
        .await;
    until_subscribers(&app, 2).await;

    let lamp = admin.add_product("Lamp", "20.00").await;
    let changes = ProductChanges {
        name: Some("Steel kettle".into()),
        ..ProductChanges::default()
    };
    admin.update_product(&kettle.id, &changes).await.ok();
    admin.delete_product(&kettle.id).await.ok();

    let created = everything.next_of("all").await;
    assert_eq!(
        created["data"]["productChanged"],
        json!({"kind": "CREATED", "id": lamp.id, "product": {
            "id": lamp.id, "name": "Lamp", "stock": lamp.stock, "version": 1}})
    );
    let updated = everything.next_of("all").await;
    assert_eq!(updated["data"]["productChanged"]["kind"], "UPDATED");
    assert_eq!(
        updated["data"]["productChanged"]["product"]["name"],
        "Steel kettle"
    );
    assert_eq!(updated["data"]["productChanged"]["product"]["version"], 2);
    let deleted = everything.next_of("all").await;
    assert_eq!(
        deleted["data"]["productChanged"],
        json!({"kind": "DELETED", "id": kettle.id, "product": null})
    );

    // Filtered by ids: the kettle's update and deletion, not the lamp's creation.
    let first = kettle_only.next_of("kettle").await;
    assert_eq!(
        first["data"]["productChanged"]["kind"], "UPDATED",
        "{first}"
    );
    let second = kettle_only.next_of("kettle").await;
    assert_eq!(second["data"]["productChanged"]["kind"], "DELETED");
    kettle_only.assert_silent(Duration::from_millis(300)).await;

    // An update that changes nothing commits nothing and publishes nothing.
    let same = ProductChanges {
        name: Some("Lamp".into()),
        ..ProductChanges::default()
    };
    admin.update_product(&lamp.id, &same).await.ok();
    everything.assert_silent(Duration::from_millis(300)).await;

    // `complete` ends the subscription on the server.
    everything.complete("all").await;
    until_subscribers(&app, 1).await;
}

#[tokio::test]
async fn stock_changed_follows_adjust_stock_and_stock_updates() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let user = app.user("ursula").await;
    let kettle = admin.add_product("Kettle", "10.00").await;
    let lamp = admin.add_product("Lamp", "20.00").await;
    let mut client = WsClient::signed_in(&app, &user).await;
    client
        .subscribe("stock", STOCK_CHANGED, json!({"ids": [kettle.id]}))
        .await;
    until_subscribers(&app, 1).await;

    admin.adjust_stock(&lamp.id, 5).await.ok();
    let after = admin.adjust_stock(&kettle.id, 3).await.ok();
    let renamed = ProductChanges {
        name: Some("Steel kettle".into()),
        ..ProductChanges::default()
    };
    admin.update_product(&kettle.id, &renamed).await.ok();
    let restocked = ProductChanges {
        stock: Some(40),
        ..ProductChanges::default()
    };
    let set = admin.update_product(&kettle.id, &restocked).await.ok();

    let first = client.next_of("stock").await;
    assert_eq!(
        first["data"]["stockChanged"],
        json!({"id": kettle.id, "stock": after.stock, "version": after.version,
               "updatedAt": after.updated_at})
    );
    // The rename changed no stock: the next event is the update that set it.
    let second = client.next_of("stock").await;
    assert_eq!(second["data"]["stockChanged"]["stock"], 40);
    assert_eq!(second["data"]["stockChanged"]["version"], set.version);
    client.assert_silent(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn each_event_goes_through_the_guards_of_a_query() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let user = app.user("ursula").await;
    let mut as_user = WsClient::signed_in(&app, &user).await;
    as_user.subscribe("u", WITH_CREATOR, json!({})).await;
    let mut as_admin = WsClient::signed_in(&app, &admin).await;
    as_admin.subscribe("a", WITH_CREATOR, json!({})).await;
    let mut only_creator = WsClient::signed_in(&app, &user).await;
    only_creator
        .subscribe(
            "o",
            "subscription { productChanged { product { createdBy { id } } } }",
            json!({}),
        )
        .await;
    until_subscribers(&app, 3).await;

    let kettle = admin.add_product("Kettle", "10.00").await;

    let for_user = as_user.next_of("u").await;
    assert_eq!(codes(&for_user["errors"]), ["FORBIDDEN"], "{for_user}");
    assert_eq!(
        for_user["errors"][0]["path"],
        json!(["productChanged", "product", "createdBy"])
    );
    // The field is there, null, as a query answers it (async-graphql leaves a failed field
    // out; a missing key read as `null` hid that here before).
    let product = &for_user["data"]["productChanged"]["product"];
    assert_eq!(
        product,
        &json!({"name": "Kettle", "createdBy": null}),
        "{for_user}"
    );
    let queried = user
        .query(
            "query($id: ID!) { product(id: $id) { name createdBy { id } } }",
            json!({"id": kettle.id}),
        )
        .await;
    assert_eq!(&queried.raw_data()["product"], product, "{queried}");
    // With only that field selected, the product is there (async-graphql turns an object
    // whose every field failed into null, which looked like a deletion), over HTTP as well.
    let only = only_creator.next_of("o").await;
    assert_eq!(codes(&only["errors"]), ["FORBIDDEN"], "{only}");
    let product = &only["data"]["productChanged"]["product"];
    assert_eq!(product, &json!({"createdBy": null}), "{only}");
    let queried = user
        .query(
            "query($id: ID!) { product(id: $id) { createdBy { id } } }",
            json!({"id": kettle.id}),
        )
        .await;
    assert_eq!(&queried.raw_data()["product"], product, "{queried}");
    // A non-null field that fails (`history`) still makes its parent null, as the spec says.
    let both = user
        .query(
            "query($id: ID!) { product(id: $id) { createdBy { id } history { totalCount } } }",
            json!({"id": kettle.id}),
        )
        .await;
    assert!(both.raw_data()["product"].is_null(), "{both}");
    let for_admin = as_admin.next_of("a").await;
    assert!(for_admin.get("errors").is_none(), "{for_admin}");
    assert_eq!(
        for_admin["data"]["productChanged"]["product"]["createdBy"]["id"],
        admin.id()
    );

    // Anonymous callers may not read products under the shipped policy: refused, as a query
    // would be, and the operation completes.
    let mut anonymous = WsClient::anonymous(&app).await;
    anonymous.subscribe("x", PRODUCT_CHANGED, json!({})).await;
    let refused = anonymous.next_of("x").await;
    assert_eq!(codes(&refused["errors"]), ["UNAUTHENTICATED"], "{refused}");
    assert_eq!(
        anonymous.message().await,
        json!({"type": "complete", "id": "x"})
    );
}

#[tokio::test]
async fn arguments_are_checked_as_a_query_checks_them() {
    let app = TestApp::spawn().await;
    let user = app.user("ursula").await;
    let mut client = WsClient::signed_in(&app, &user).await;
    let too_many: Vec<String> = (0..101).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    for (i, (query, variables, field)) in [
        (PRODUCT_CHANGED, json!({"ids": too_many}), "ids"),
        (PRODUCT_CHANGED, json!({"ids": ["not an id"]}), "ids"),
        (STOCK_CHANGED, json!({"ids": []}), "productIds"),
    ]
    .into_iter()
    .enumerate()
    {
        let id = i.to_string();
        client.subscribe(&id, query, variables).await;
        let payload = client.next_of(&id).await;
        assert_eq!(codes(&payload["errors"]), ["BAD_USER_INPUT"], "{payload}");
        assert_eq!(payload["errors"][0]["extensions"]["field"], field);
        assert_eq!(client.message().await["type"], "complete");
    }
}

#[tokio::test]
async fn documents_over_the_socket_meet_the_http_limits_and_only_subscriptions_run() {
    let app = TestApp::spawn().await;
    let user = app.user("ursula").await;
    let mut client = WsClient::signed_in(&app, &user).await;

    // The fragment bomb of tests/api/cost.rs, as a subscription: refused before it runs.
    let levels = 25;
    let mut bomb = String::from("subscription Bomb { ...F0 }\n");
    for i in 0..levels {
        let next = i + 1;
        bomb.push_str(&format!(
            "fragment F{i} on Subscription {{ ...F{next} ...F{next} ...F{next} }}\n"
        ));
    }
    bomb.push_str(&format!(
        "fragment F{levels} on Subscription {{ productChanged {{ id }} }}\n"
    ));
    let started = std::time::Instant::now();
    client.subscribe("bomb", &bomb, json!({})).await;
    let refused = expect_error(&mut client, "bomb").await;
    println!("the bomb was refused in {:?}", started.elapsed());
    assert_eq!(codes(&refused), ["QUERY_TOO_COMPLEX"], "{refused}");

    // Too deep, too many aliases: refused the same way.
    let aliases: String = (0..31)
        .map(|i| format!("a{i}: productChanged {{ id }} "))
        .collect();
    client
        .subscribe(
            "aliases",
            &format!("subscription {{ {aliases} }}"),
            json!({}),
        )
        .await;
    assert_eq!(
        codes(&expect_error(&mut client, "aliases").await),
        ["QUERY_TOO_COMPLEX"]
    );

    // One root field per subscription (the spec's rule): several, directly, through aliases
    // within the alias limit or through fragments, would be several streams counted as one
    // against WS_MAX_SUBSCRIPTIONS_*.
    for (id, document) in [
        (
            "two",
            "subscription { a: productChanged { id } b: productChanged { id } }",
        ),
        (
            "spread",
            "subscription { productChanged { id } ...Both } \
             fragment Both on Subscription { b: productChanged { id } }",
        ),
        (
            "inline",
            "subscription { ... on Subscription { a: productChanged { id } b: productChanged { id } } }",
        ),
    ] {
        client.subscribe(id, document, json!({})).await;
        let refused = expect_error(&mut client, id).await;
        assert_eq!(codes(&refused), ["BAD_REQUEST"], "{id}: {refused}");
    }

    // Queries and mutations go over HTTP.
    client
        .subscribe("query", "{ products { totalCount } }", json!({}))
        .await;
    assert_eq!(
        codes(&expect_error(&mut client, "query").await),
        ["BAD_REQUEST"]
    );

    // A document that does not parse.
    client
        .subscribe("broken", "subscription {", json!({}))
        .await;
    let broken = expect_error(&mut client, "broken").await;
    assert_eq!(broken.as_array().unwrap().len(), 1, "{broken}");

    // The socket still works.
    client.subscribe("ok", PRODUCT_CHANGED, json!({})).await;
    until_subscribers(&app, 1).await;
}

#[tokio::test]
async fn a_change_that_rolled_back_publishes_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let kettle = admin.add_product("Kettle", "10.00").await;
    let mut client = WsClient::signed_in(&app, &admin).await;
    client.subscribe("all", PRODUCT_CHANGED, json!({})).await;
    until_subscribers(&app, 1).await;

    // Refused by a stale version, by validation, by the stock rule, and by the database
    // itself (an insert that fails inside it): nothing committed, nothing published.
    let renamed = ProductChanges {
        name: Some("Steel kettle".into()),
        ..ProductChanges::default()
    };
    let stale = admin.update_product_at(&kettle.id, &renamed, 7).await;
    assert_eq!(stale.codes(), ["CONFLICT"], "{stale}");
    let invalid = admin.create_product(&NewProduct::new("", "10.00")).await;
    assert_eq!(invalid.codes(), ["BAD_USER_INPUT"], "{invalid}");
    let below_zero = admin.adjust_stock(&kettle.id, -1_000_000).await;
    assert_eq!(below_zero.codes(), ["BAD_USER_INPUT"], "{below_zero}");
    app.refuse_product_inserts("P0001").await;
    let failed = admin.create_product(&NewProduct::new("Lamp", "2.00")).await;
    assert!(!failed.codes().is_empty(), "{failed}");
    app.allow_product_inserts().await;

    // The next event is the next committed change.
    let mug = admin.add_product("Mug", "3.00").await;
    let next = client.next_of("all").await;
    assert_eq!(next["data"]["productChanged"]["kind"], "CREATED");
    assert_eq!(next["data"]["productChanged"]["id"], mug.id.as_str());
    client.assert_silent(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn concurrent_changes_reach_every_subscriber_once() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let user = app.user("ursula").await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        let mut client = WsClient::signed_in(&app, &user).await;
        client.subscribe("all", PRODUCT_CHANGED, json!({})).await;
        clients.push(client);
    }
    until_subscribers(&app, 4).await;

    for round in 0..3 {
        let created = join_all((0..15).map(|i| {
            let admin = admin.clone();
            async move {
                admin
                    .add_product(&format!("Item {round}-{i}"), "1.00")
                    .await
                    .id
            }
        }))
        .await;
        let mut expected = created.clone();
        expected.sort();
        for client in &mut clients {
            let mut received = Vec::new();
            for _ in 0..created.len() {
                let event = client.next_of("all").await;
                assert_eq!(event["data"]["productChanged"]["kind"], "CREATED");
                received.push(
                    event["data"]["productChanged"]["id"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                );
            }
            received.sort();
            assert_eq!(received, expected, "round {round}");
        }
    }
    for client in &mut clients {
        client.assert_silent(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_http_timeouts_leave_an_open_socket_alone_and_sockets_count_as_connections() {
    let app = TestApp::builder()
        .idle_timeout(Duration::from_secs(1))
        .header_read_timeout(Duration::from_secs(1))
        .max_connections(3)
        .spawn()
        .await;
    let admin = app.admin().await;
    let user = app.user("ursula").await;
    let mut client = listening(&app, &user).await;

    // Well past the idle and header-read timeouts, the socket still gets events.
    client.assert_silent(Duration::from_millis(2500)).await;
    admin.add_product("Kettle", "10.00").await;
    assert_eq!(
        client.next_of("live").await["data"]["productChanged"]["kind"],
        "CREATED"
    );

    // With three connections at most, two sockets leave room for one more connection: a
    // third socket waits in the backlog until one of them closes.
    let _second = WsClient::anonymous(&app).await;
    let third = tokio::spawn({
        let request = WsClient::request(&app);
        async move { WsClient::connect_request(request).await.unwrap() }
    });
    // Room for the third: the HTTP connections of the calls above have gone idle and closed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let waiting = tokio::spawn({
        let request = WsClient::request(&app);
        async move { WsClient::connect_request(request).await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "a fourth connection was served");
    drop(client);
    let _fourth = tokio::time::timeout(PATIENCE, waiting)
        .await
        .expect("the waiting socket was never served once one closed")
        .unwrap();
    let _third = third.await.unwrap();
}

#[tokio::test]
async fn a_message_over_the_size_limit_closes_with_1009() {
    let app = TestApp::builder().max_body_bytes(4096).spawn().await;
    let user = app.user("ursula").await;
    let mut client = WsClient::signed_in(&app, &user).await;
    let long = format!(
        "subscription {{ productChanged {{ kind }} }} #{}",
        "x".repeat(5000)
    );
    client.subscribe("big", &long, json!({})).await;
    assert_eq!(
        client.closed().await,
        (1009, "message too big (MAX_BODY_BYTES)".to_owned())
    );
}

#[tokio::test]
async fn a_client_that_stops_answering_pings_is_closed() {
    let app = TestApp::builder()
        .ws_ping_interval(Duration::from_secs(1))
        .spawn()
        .await;
    let user = app.user("ursula").await;
    // Clients that read answer each ping (tungstenite queues the pong as it reads one): they
    // stay, subscribed or not, well past two intervals. One that reads nothing (a peer gone
    // without closing, as the server sees it) sends no pong.
    let mut reading = listening(&app, &user).await;
    let mut initialised = WsClient::anonymous(&app).await;
    let mut deaf = listening(&app, &user).await;
    tokio::join!(
        reading.assert_silent(Duration::from_millis(3500)),
        initialised.assert_silent(Duration::from_millis(3500)),
        tokio::time::sleep(Duration::from_millis(3500)),
    );

    // Within two intervals of the first ping, the server closed the deaf one.
    let ((code, reason), _) = deaf
        .closed_within(Duration::from_millis(500))
        .await
        .expect("the socket that answered no ping is still open");
    assert_eq!(
        (code, reason.as_str()),
        (1001, "no answer to pings (WS_PING_INTERVAL_SECS)")
    );
    // Its subscription is gone; the reading client's is not.
    until_subscribers(&app, 1).await;
    reading.assert_silent(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_socket_without_a_subscription_is_closed_after_the_idle_timeout() {
    let app = TestApp::builder()
        .ws_idle_timeout(Duration::from_secs(1))
        .spawn()
        .await;
    let user = app.user("ursula").await;
    let mut idle = WsClient::anonymous(&app).await;
    let mut busy = listening(&app, &user).await;
    // One whose subscription ended: idle from then on.
    let mut done = listening(&app, &user).await;
    done.complete("live").await;
    until_subscribers(&app, 1).await;
    let completed = std::time::Instant::now();

    let ((code, reason), took) = idle
        .closed_within(PATIENCE)
        .await
        .expect("the idle socket stayed open");
    println!("the idle socket was closed after {took:?}");
    assert_eq!(
        (code, reason.as_str()),
        (1000, "idle: no subscription open for WS_IDLE_TIMEOUT_SECS")
    );
    assert!(
        took >= Duration::from_millis(900),
        "before the timeout: {took:?}"
    );
    assert_eq!(done.closed().await.0, 1000);
    assert!(completed.elapsed() >= Duration::from_millis(900));
    // The socket with a live subscription stays, and still gets events.
    busy.assert_silent(Duration::from_millis(1500)).await;
    app.admin().await.add_product("Kettle", "10.00").await;
    assert_eq!(
        busy.next_of("live").await["data"]["productChanged"]["kind"],
        "CREATED"
    );
}

#[tokio::test]
async fn sockets_are_limited_per_client_address() {
    let app = TestApp::builder()
        .ws_max_per_address(2)
        .behind_proxy()
        .spawn()
        .await;
    let from = |ip: &'static str| {
        let mut request = WsClient::request(&app);
        request
            .headers_mut()
            .insert("X-Forwarded-For", HeaderValue::from_static(ip));
        request
    };
    let first = WsClient::connect_request(from("203.0.113.1"))
        .await
        .unwrap();
    let _second = WsClient::connect_request(from("203.0.113.1"))
        .await
        .unwrap();

    // The third from that address: 429 before the upgrade, with the usual error body.
    match WsClient::connect_request(from("203.0.113.1")).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 429);
            assert_eq!(
                response
                    .headers()
                    .get("Retry-After")
                    .map(|v| v.to_str().unwrap()),
                Some("5")
            );
            let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
            assert_eq!(codes(&body["errors"]), ["TOO_MANY_REQUESTS"], "{body}");
        }
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("a third socket from one address opened"),
    }
    // Another address (the proxy's last hop) has places of its own.
    let _other = WsClient::connect_request(from("203.0.113.2"))
        .await
        .unwrap();

    // Once one closes, the address is admitted again.
    drop(first);
    let admitted = within(PATIENCE, async || {
        WsClient::connect_request(from("203.0.113.1")).await.is_ok()
    })
    .await;
    assert!(
        admitted.is_some(),
        "the address was not admitted once a socket closed"
    );
}

/// Subscribes `actor` on a socket of its own and returns it, listening.
async fn listening(app: &TestApp, actor: &Actor) -> WsClient {
    let before = app.subscriber_count();
    let mut client = WsClient::signed_in(app, actor).await;
    client.subscribe("live", PRODUCT_CHANGED, json!({})).await;
    until_subscribers(app, before + 1).await;
    client
}

#[tokio::test]
async fn logout_ends_the_subscription_and_other_sessions_keep_theirs() {
    let app = TestApp::spawn().await;
    let user = app.user("ursula").await;
    let other_session = app.sign_in("ursula", &password_of("ursula")).await;
    let mut ending = listening(&app, &user).await;
    let mut staying = listening(&app, &other_session).await;

    user.logout().await.ok();
    let ((code, reason), took) = ending
        .closed_within(ENDS_WITHIN)
        .await
        .expect("the subscription did not end");
    println!("logout ended the subscription in {took:?}");
    assert_eq!((code, reason.as_str()), (4403, "session ended"));
    until_subscribers(&app, 1).await;

    // The other session still gets events.
    app.admin().await.add_product("Kettle", "10.00").await;
    assert_eq!(
        staying.next_of("live").await["data"]["productChanged"]["kind"],
        "CREATED"
    );
}

#[tokio::test]
async fn a_role_change_ends_the_subscription() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let demoted = app.user_in_role("dora", Role::Admin).await;
    let mut client = listening(&app, &demoted).await;

    admin.set_user_role(demoted.id(), Role::User).await.ok();
    let ((code, reason), took) = client
        .closed_within(ENDS_WITHIN)
        .await
        .expect("the subscription did not end");
    println!("a role change ended the subscription in {took:?}");
    // A role change revokes the account's tokens (its session lives on): a refreshed token,
    // with the new role, reconnects.
    assert_eq!((code, reason.as_str()), (4403, "session ended"));
}

#[tokio::test]
async fn a_policy_that_stops_granting_product_read_ends_the_subscription() {
    let app = TestApp::builder()
        .env("POLICY_SOURCE", "database")
        .policy_poll(Duration::from_millis(100))
        .spawn()
        .await;
    let admin = app.admin().await;
    let user = app.user("ursula").await;
    // Admins get product read of their own (they have it through `user` otherwise).
    let grant = "mutation($role: String!, $p: PermissionInput!) {
        grantPermission(role: $role, permission: $p) { version } }";
    let read = json!({"object": "product", "action": "read"});
    let r = admin
        .query(grant, json!({"role": "admin", "p": read}))
        .await;
    assert!(r.codes().is_empty(), "{r}");
    let mut client = listening(&app, &user).await;
    let mut admins = listening(&app, &admin).await;

    let revoke = "mutation($role: String!, $p: PermissionInput!) {
        revokePermission(role: $role, permission: $p) { version } }";
    let r = admin
        .query(
            revoke,
            json!({"role": "user", "p": {"object": "product", "action": "read"}}),
        )
        .await;
    assert!(r.codes().is_empty(), "{r}");
    let ((code, reason), took) = client
        .closed_within(ENDS_WITHIN)
        .await
        .expect("the subscription did not end");
    println!("the policy change ended the subscription in {took:?}");
    assert_eq!((code, reason.as_str()), (4403, "Forbidden"));

    // Admins are still granted product read: theirs goes on.
    admin.add_product("Kettle", "10.00").await;
    assert_eq!(
        admins.next_of("live").await["data"]["productChanged"]["kind"],
        "CREATED"
    );
}

#[tokio::test]
async fn the_subscription_ends_when_its_token_expires() {
    let app = TestApp::spawn().await;
    let user = app.user("ursula").await;
    // The user's own token, signed again to expire in 2 seconds.
    let mut claims = claims_of(user.token());
    claims["exp"] = json!(chrono::Utc::now().timestamp() + 2);
    let short = forge_jwt(&header_of(user.token()), &claims, JWT_SECRET.as_bytes());
    let mut client = listening(&app, &app.bearer(&short)).await;

    let ((code, reason), took) = client
        .closed_within(Duration::from_secs(2) + ENDS_WITHIN)
        .await
        .expect("the subscription did not end");
    println!("the token expired; the subscription ended {took:?} after subscribing");
    assert_eq!((code, reason.as_str()), (4403, "token expired"));
    assert!(
        took >= Duration::from_millis(900),
        "not before exp: {took:?}"
    );
}

#[tokio::test]
async fn subscriptions_are_limited_per_connection_and_per_account() {
    let app = TestApp::builder()
        .ws_max_per_connection(3)
        .ws_max_per_account(5)
        .spawn()
        .await;
    let user = app.user("ursula").await;

    // Operations the server ends (refused arguments) give their places back at once.
    let mut first = WsClient::signed_in(&app, &user).await;
    for id in ["r1", "r2", "r3", "r4"] {
        first
            .subscribe(id, PRODUCT_CHANGED, json!({"ids": ["not an id"]}))
            .await;
        assert_eq!(
            codes(&first.next_of(id).await["errors"]),
            ["BAD_USER_INPUT"]
        );
        assert_eq!(first.message().await, json!({"type": "complete", "id": id}));
    }

    // Four at once on one connection: the fourth is refused.
    for id in ["1", "2", "3", "4"] {
        first.subscribe(id, PRODUCT_CHANGED, json!({})).await;
    }
    let refused = expect_error(&mut first, "4").await;
    assert_eq!(codes(&refused), ["TOO_MANY_REQUESTS"], "{refused}");
    until_subscribers(&app, 3).await;
    // One ends: its place is free again.
    first.complete("1").await;
    until_subscribers(&app, 2).await;
    first.subscribe("5", PRODUCT_CHANGED, json!({})).await;
    until_subscribers(&app, 3).await;

    // The account has 3 open; a second connection may open 2 more, not 3.
    let mut second = WsClient::signed_in(&app, &user).await;
    for id in ["a", "b", "c"] {
        second.subscribe(id, PRODUCT_CHANGED, json!({})).await;
    }
    let refused = expect_error(&mut second, "c").await;
    assert_eq!(codes(&refused), ["TOO_MANY_REQUESTS"], "{refused}");
    until_subscribers(&app, 5).await;
    // Another account is not counted with it.
    let other = app.user("otto").await;
    let _others = listening(&app, &other).await;

    // A closed connection gives its places back.
    drop(first);
    until_subscribers(&app, 3).await;
    let mut third = WsClient::signed_in(&app, &user).await;
    for id in ["x", "y", "z"] {
        third.subscribe(id, PRODUCT_CHANGED, json!({})).await;
    }
    until_subscribers(&app, 6).await;
    third.assert_silent(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_subscriber_that_does_not_read_is_dropped_and_the_others_keep_going() {
    let app = TestApp::builder().ws_max_queued_events(8).spawn().await;
    let admin = app.admin().await;
    let user = app.user("ursula").await;
    let kettle = admin.add_product("Kettle", "10.00").await;

    // A client that never reads, with a small receive window so the server's writes block.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(app.addr().parse().unwrap()).await.unwrap();
    let (mut slow, _) = tokio_tungstenite::client_async(WsClient::request(&app), stream)
        .await
        .unwrap();
    use futures_util::{SinkExt, StreamExt};
    let send = async |socket: &mut tokio_tungstenite::WebSocketStream<_>, message: Value| {
        socket
            .send(tungstenite::Message::Text(message.to_string().into()))
            .await
            .unwrap();
    };
    send(
        &mut slow,
        json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {}", user.token())}}),
    )
    .await;
    let ack = slow.next().await.unwrap().unwrap();
    assert!(ack.to_text().unwrap().contains("connection_ack"));
    // Each event repeats the description 20 times (aliases): about 100 KB.
    let copies: String = (0..20)
        .map(|i| format!("d{i}: product {{ description }} "))
        .collect();
    let query = format!("subscription {{ productChanged {{ {copies} }} }}");
    send(
        &mut slow,
        json!({"type": "subscribe", "id": "slow", "payload": {"query": query}}),
    )
    .await;
    until_subscribers(&app, 1).await;
    let mut reader = listening(&app, &user).await;
    until_subscribers(&app, 2).await;

    // Large events, many of them: the slow client's buffers fill, then its queue.
    let mut sent = 0;
    for i in 0..400 {
        let changes = ProductChanges {
            description: Some(format!("{i:04}{}", "x".repeat(4900))),
            ..ProductChanges::default()
        };
        admin.update_product(&kettle.id, &changes).await.ok();
        sent += 1;
        let _ = reader.next_of("live").await;
        if app.subscriber_count() == 1 {
            break;
        }
    }
    println!("the slow subscriber was dropped after {sent} events");
    assert_eq!(
        app.subscriber_count(),
        1,
        "the slow subscriber was not dropped"
    );

    // The server is healthy for the others: the reader gets the next event, queries run.
    admin.add_product("Lamp", "2.00").await;
    assert_eq!(
        reader.next_of("live").await["data"]["productChanged"]["kind"],
        "CREATED"
    );
    assert!(user.works().await);
    // Reading now, the slow client finds its connection closed (1008), or cut.
    let ended = within(PATIENCE, async || {
        matches!(
            tokio::time::timeout(Duration::from_secs(1), slow.next()).await,
            Ok(None | Some(Err(_)) | Some(Ok(tungstenite::Message::Close(_))))
        )
    })
    .await;
    assert!(ended.is_some(), "the slow client's socket stayed open");
}

#[tokio::test]
async fn the_drain_closes_sockets_with_going_away() {
    let mut app = TestApp::spawn().await;
    let user = app.user("ursula").await;
    let mut client = listening(&app, &user).await;
    let mut idle = WsClient::connect(&app).await;

    app.begin_shutdown();
    let ((code, _), took) = client
        .closed_within(ENDS_WITHIN)
        .await
        .expect("the drain did not close the socket");
    println!("the drain closed the socket in {took:?}");
    assert_eq!(code, 1001);
    assert_eq!(idle.closed().await.0, 1001);
}

/// A request cancelled once its commit has begun (its client went away, its deadline passed)
/// still announces its change: what follows a commit runs in the task that commits. Requests
/// whose clients give up after 1 to 600 ms are cut at every stage, before, during and after
/// their commit; every change that committed arrives, once.
#[tokio::test]
async fn a_change_whose_request_is_cancelled_after_it_committed_is_still_announced() {
    const REQUESTS: u64 = 150;
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let product = admin.add_product("Cancelled", "1.00").await;
    let mut client = WsClient::signed_in(&app, &admin).await;
    client
        .subscribe("stock", STOCK_CHANGED, json!({"ids": [product.id]}))
        .await;
    until_subscribers(&app, 1).await;

    let body = json!({
        "query": "mutation($id: ID!) { adjustStock(id: $id, delta: 1) { stock } }",
        "variables": {"id": product.id},
    });
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..REQUESTS {
        let request = admin
            .request()
            .json(&body)
            .timeout(Duration::from_millis(1 + i * 7 % 600));
        requests.spawn(async move {
            let _ = request.send().await;
        });
    }
    while requests.join_next().await.is_some() {}

    // The version stops moving once the commits under way are done.
    let mut version = 0;
    within(PATIENCE, async || {
        let now = admin.product(&product.id).await.ok().unwrap().version;
        let settled = now == version;
        version = now;
        tokio::time::sleep(Duration::from_millis(300)).await;
        settled
    })
    .await
    .expect("the version settled");
    let committed = version - product.version;
    println!("{committed} of {REQUESTS} cancelled adjustments committed");
    assert!(committed > 0, "some adjustments committed");

    let mut announced = Vec::new();
    while let Some(Received::Message(message)) = client.receive_within(PATIENCE).await {
        announced.push(
            message["payload"]["data"]["stockChanged"]["version"]
                .as_i64()
                .unwrap(),
        );
        if announced.len() as i64 == committed {
            break;
        }
    }
    announced.sort_unstable();
    let expected: Vec<i64> = (product.version + 1..=version).collect();
    assert_eq!(announced, expected, "each committed change announced once");
    client.assert_silent(Duration::from_millis(300)).await;
}
