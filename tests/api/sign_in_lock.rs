//! The sign-in lock under attack: concurrent guesses, distributed guessing, strangers trying
//! to lock a victim out, and hashing floods meant to starve other users.

use std::{net::IpAddr, time::Instant};

use serde_json::{Value, json};

use crate::helpers::*;

const LOGIN: &str =
    "mutation($u:String!,$p:String!){ login(input:{username:$u,password:$p}){ accessToken } }";
const CHANGE: &str = "mutation($c:String!,$n:String!){ changePassword(currentPassword:$c, newPassword:$n){ accessToken } }";

/// A server that takes the client address from `X-Forwarded-For`, as behind a proxy.
async fn behind_proxy() -> TestApp {
    spawn_app_with(vec![("TRUST_PROXY_HEADERS", "true".to_owned())]).await
}

/// Signs in as a client at `ip`.
async fn login_from(app: &TestApp, ip: &str, username: &str, password: &str) -> Value {
    app.client
        .post(format!("{}/graphql", app.url))
        .header("X-Forwarded-For", ip)
        .json(&json!({"query": LOGIN, "variables": {"u": username, "p": password}}))
        .send()
        .await
        .expect("server answers")
        .json()
        .await
        .expect("a JSON body")
}

fn retry_after(r: &Value) -> i64 {
    r["errors"][0]["extensions"]["retryAfter"]
        .as_i64()
        .unwrap_or(-1)
}

/// How many answers carried each outcome: signed in, UNAUTHENTICATED, TOO_MANY_REQUESTS.
fn tally(answers: &[Value]) -> (usize, usize, usize) {
    let mut tally = (0, 0, 0);
    for r in answers {
        match codes(r).as_slice() {
            [] => tally.0 += 1,
            [code] if code == "UNAUTHENTICATED" => tally.1 += 1,
            [code] if code == "TOO_MANY_REQUESTS" => tally.2 += 1,
            other => panic!("unexpected answer {other:?}: {r}"),
        }
    }
    tally
}

#[tokio::test]
async fn concurrent_guesses_verify_at_most_the_allowed_number_and_the_lock_holds() {
    let app = spawn_app_with(vec![("REQUEST_TIMEOUT_MS", "120000".to_owned())]).await;
    let hasher = &app.state.passwords;
    for round in 0..6 {
        let username = format!("racer{round}");
        let password = format!("racer {round} secret passphrase");
        app.register(&username, &password).await;
        // 39 wrong guesses and the right password, all at once.
        let right_at = (round * 13 + 7) % 40;
        let before = hasher.verifications();
        let guesses = (0..40).map(|i| {
            let guess = if i == right_at {
                password.clone()
            } else {
                format!("wrong guess {i}")
            };
            let (app, username) = (&app, &username);
            async move { app.login(username, &guess).await }
        });
        let answers = futures_join_all(guesses).await;
        let verified = hasher.verifications() - before;
        let (signed_in, wrong, refused) = tally(&answers);
        assert_eq!(
            verified as usize,
            signed_in + wrong,
            "round {round}: every verified guess was answered as such"
        );
        eprintln!(
            "round {round}: {verified} verified, {signed_in} signed in, {wrong} wrong, {refused} refused"
        );
        if signed_in == 0 {
            // At most five guesses were ever verified, and the username is now locked here:
            // even the right password is refused.
            assert_eq!(wrong, 5, "round {round}: {answers:?}");
            let r = app.login(&username, &password).await;
            assert_eq!(codes(&r), ["TOO_MANY_REQUESTS"], "round {round}: {r}");
            assert!((25..=30).contains(&retry_after(&r)), "{r}");
        } else {
            // The right password won a reservation before the lock: it cleared the failures
            // before it, so at most five more were verified after it.
            assert_eq!(signed_in, 1);
            assert!(wrong <= 9, "round {round}: {wrong} wrong guesses verified");
            assert_eq!(
                codes(&answers[right_at]),
                Vec::<String>::new(),
                "round {round}"
            );
        }
    }
}

/// Runs the futures concurrently and returns their outputs in order.
async fn futures_join_all<F: std::future::Future<Output = Value>>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<Value> {
    join_all(futures.into_iter().map(Box::pin).collect()).await
}

/// A minimal `join_all`: polls every future until all are done.
async fn join_all<F: std::future::Future<Output = Value> + Unpin>(
    mut futures: Vec<F>,
) -> Vec<Value> {
    let mut outputs: Vec<Option<Value>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match std::pin::Pin::new(&mut *future).poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}

#[tokio::test]
async fn a_strangers_failures_lock_only_the_strangers_address() {
    let app = behind_proxy().await;
    app.register("victim", "victim's own passphrase").await;
    for attempt in 1..=5 {
        let r = login_from(&app, "198.51.100.66", "victim", "stranger's guess").await;
        assert_eq!(codes(&r), ["UNAUTHENTICATED"], "attempt {attempt}");
    }
    let r = login_from(&app, "198.51.100.66", "victim", "victim's own passphrase").await;
    assert_eq!(codes(&r), ["TOO_MANY_REQUESTS"], "{r}");
    // The same address written as IPv4-mapped IPv6 is the same client.
    let r = login_from(
        &app,
        "::ffff:198.51.100.66",
        "victim",
        "victim's own passphrase",
    )
    .await;
    assert_eq!(codes(&r), ["TOO_MANY_REQUESTS"], "{r}");
    // The victim, at their own address, signs in.
    let r = login_from(&app, "203.0.113.5", "victim", "victim's own passphrase").await;
    assert_no_errors(&r);
}

#[tokio::test]
async fn an_ipv6_client_counts_by_its_64_for_the_lock_and_the_rate() {
    let app = spawn_app_with(vec![
        ("TRUST_PROXY_HEADERS", "true".to_owned()),
        ("AUTH_RATE_LIMIT_PER_MINUTE", "7".to_owned()),
    ])
    .await;
    app.register("six", "six's own passphrase").await;
    // Five failures from five addresses of one /64 lock that /64.
    for host in 1..=5 {
        let ip = format!("2001:db8:1:2::{host:x}");
        let r = login_from(&app, &ip, "six", "a guess from v6").await;
        assert_eq!(codes(&r), ["UNAUTHENTICATED"], "{ip}");
    }
    let r = login_from(&app, "2001:db8:1:2:ffff::99", "six", "six's own passphrase").await;
    assert_eq!(codes(&r), ["TOO_MANY_REQUESTS"], "{r}");
    // The neighbouring /64 is another client.
    let r = login_from(&app, "2001:db8:1:3::1", "six", "six's own passphrase").await;
    assert_no_errors(&r);
    // The per-address rate (7 a minute) counted the six attempts above against the first
    // /64: one more passes, the next is refused whatever its last 64 bits.
    let r = login_from(&app, "2001:db8:1:2::abc", "nobody-here", "a guess").await;
    assert_eq!(codes(&r), ["UNAUTHENTICATED"], "{r}");
    let r = login_from(&app, "2001:db8:1:2::def", "nobody-here", "a guess").await;
    assert_eq!(codes(&r), ["TOO_MANY_REQUESTS"], "{r}");
}

#[tokio::test]
async fn distributed_guessing_hits_the_username_ceiling_yet_the_signed_in_victim_changes_the_password()
 {
    // A hashing queue long enough for all 50 guesses at once, and no request timeout: this
    // test counts guesses; a loaded test machine must not turn some into timeouts.
    let app = spawn_app_with(vec![
        ("TRUST_PROXY_HEADERS", "true".to_owned()),
        ("PASSWORD_HASH_QUEUE", "1000".to_owned()),
        ("REQUEST_TIMEOUT_MS", "120000".to_owned()),
    ])
    .await;
    let victim = app.register("ceiling", "ceiling's own passphrase").await;
    let hasher = &app.state.passwords;
    let before = hasher.verifications();
    // 60 guesses at once, each from its own address: the per-address locks never trigger.
    let guesses = (0..60).map(|i| {
        let app = &app;
        async move {
            let ip = IpAddr::from([198, 18, (i / 200) as u8, (i % 200 + 1) as u8]).to_string();
            login_from(app, &ip, "ceiling", &format!("distributed guess {i}")).await
        }
    });
    let answers = futures_join_all(guesses).await;
    let (signed_in, wrong, refused) = tally(&answers);
    assert_eq!((signed_in, wrong, refused), (0, 50, 10));
    assert_eq!(hasher.verifications() - before, 50, "the ceiling is 50");
    // From a fresh address, even the right password now waits for the ceiling's lock.
    let r = login_from(&app, "192.0.2.200", "ceiling", "ceiling's own passphrase").await;
    assert_eq!(codes(&r), ["TOO_MANY_REQUESTS"], "{r}");
    assert!((25..=30).contains(&retry_after(&r)), "{r}");

    // The victim, signed in, still changes the password: sign-in failures do not count here.
    let r = app
        .gql(
            CHANGE,
            json!({"c": "ceiling's own passphrase", "n": "a brand new ceiling phrase"}),
            Some(&victim),
        )
        .await;
    assert_no_errors(&r);
}

#[tokio::test]
async fn a_reservation_whose_request_died_lapses() {
    use sea_orm::{ConnectionTrait, Statement};
    let app = spawn_app().await;
    app.register("lapsed", "lapsed passphrase here").await;
    assert_eq!(
        codes(&app.login("lapsed", "one wrong guess").await),
        ["UNAUTHENTICATED"]
    );
    // As if five attempts had been reserved and their requests then killed mid-flight.
    let db = &app.state.db;
    let set_in_flight = |since_ms: i64| {
        Statement::from_sql_and_values(
            db.get_database_backend(),
            "UPDATE login_throttles SET in_flight = 5, in_flight_since_ms = $1",
            [since_ms.into()],
        )
    };
    let now = chrono::Utc::now().timestamp_millis();
    db.writer().execute_raw(set_in_flight(now)).await.unwrap();
    let r = app.login("lapsed", "lapsed passphrase here").await;
    assert_eq!(codes(&r), ["TOO_MANY_REQUESTS"], "{r}");
    assert_eq!(retry_after(&r), 1, "{r}");
    // Two minutes later they no longer count.
    db.writer()
        .execute_raw(set_in_flight(now - 121_000))
        .await
        .unwrap();
    assert_no_errors(&app.login("lapsed", "lapsed passphrase here").await);
}

#[tokio::test]
async fn one_account_runs_one_password_change_at_a_time() {
    let app = spawn_app().await;
    let token = app.register("changer", "changer's first phrase").await;
    let hasher = &app.state.passwords;
    let hashes = hasher.hashes();
    let changes = (0..40).map(|i| {
        let (app, token) = (&app, &token);
        async move {
            app.gql(
                CHANGE,
                json!({"c": "changer's first phrase", "n": format!("changer's new phrase {i}")}),
                Some(token),
            )
            .await
        }
    });
    let answers = futures_join_all(changes).await;
    let ok = answers.iter().filter(|r| codes(r).is_empty()).count();
    let refused = answers
        .iter()
        .filter(|r| codes(r) == ["TOO_MANY_REQUESTS"])
        .count();
    // The others came too late: the token was revoked or the current password changed.
    for r in &answers {
        let codes = codes(r);
        assert!(
            codes.is_empty()
                || (codes.len() == 1
                    && ["TOO_MANY_REQUESTS", "UNAUTHENTICATED", "BAD_USER_INPUT"]
                        .contains(&codes[0].as_str())),
            "{r}"
        );
    }
    assert_eq!(ok, 1, "{answers:?}");
    assert!(refused >= 1, "{answers:?}");
    assert_eq!(hasher.hashes() - hashes, 1, "one new password hashed");
}

#[tokio::test]
async fn hundreds_of_password_changes_do_not_starve_another_users_sign_in() {
    let app = spawn_app().await;
    let flooder = app.register("flooder", "flooder's first phrase").await;
    app.register("bystander", "bystander's own phrase").await;
    let started = Instant::now();
    assert_no_errors(&app.login("bystander", "bystander's own phrase").await);
    let alone = started.elapsed();
    let flood = (0..300).map(|i| {
        let (app, token) = (&app, &flooder);
        async move {
            app.gql(
                CHANGE,
                json!({"c": if i % 2 == 0 { "flooder's first phrase" } else { "a wrong phrase" },
                       "n": format!("flooder's new phrase {i}")}),
                Some(token),
            )
            .await
        }
    });
    let sign_in = async {
        // Let the flood start first.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let started = Instant::now();
        let r = app.login("bystander", "bystander's own phrase").await;
        (r, started.elapsed())
    };
    let (answers, (r, took)) = tokio::join!(futures_join_all(flood), sign_in);
    assert_no_errors(&r);
    eprintln!(
        "bystander's sign-in took {alone:?} alone, {took:?} during 300 concurrent changePassword calls"
    );
    // How long it may take is a target of the benchmark (bench/bench.py, password-change
    // flood: within 2 s), not of a test on a shared machine; here, that it completes.
    let refused = answers
        .iter()
        .filter(|r| codes(r) == ["TOO_MANY_REQUESTS"])
        .count();
    eprintln!("{refused} of 300 password changes refused at once");
    assert!(refused >= 1);
    assert!(
        app.state.passwords.hashes() <= 3,
        "two registrations and at most one new password hashed"
    );
}

#[tokio::test]
async fn a_full_hashing_queue_refuses_sign_ins_at_once_unknown_users_included() {
    let app = spawn_app_with(vec![("PASSWORD_HASH_QUEUE", "2".to_owned())]).await;
    let hasher = &app.state.passwords;
    let before = hasher.verifications();
    // Unknown usernames: each takes the dummy-hash path, each under its own throttle keys.
    let logins = (0..100).map(|i| {
        let app = &app;
        async move { app.login(&format!("ghost{i}"), "a ghost's guess").await }
    });
    let answers = futures_join_all(logins).await;
    let (signed_in, wrong, refused) = tally(&answers);
    assert_eq!(signed_in, 0);
    assert!(refused >= 1, "{wrong} wrong, {refused} refused");
    assert_eq!(hasher.refused(), refused as u64);
    assert_eq!(
        (hasher.verifications() - before) as usize,
        wrong,
        "refused before any argon2 work"
    );
    for r in answers.iter().filter(|r| codes(r) == ["TOO_MANY_REQUESTS"]) {
        assert_eq!(retry_after(r), 1, "{r}");
    }
    // Once the queue drains, sign-ins are verified again.
    assert_eq!(
        codes(&app.login("ghost0", "a ghost's guess").await),
        ["UNAUTHENTICATED"]
    );
}

#[tokio::test]
async fn two_replicas_share_one_count_of_concurrent_guesses() {
    let app = spawn_app_with(vec![("REQUEST_TIMEOUT_MS", "120000".to_owned())]).await;
    let (replica, _stop) = spawn_replica(&app).await;
    for round in 0..3 {
        let username = format!("shared{round}");
        app.register(&username, "shared secret passphrase").await;
        // 40 wrong guesses at once, alternating between the two replicas.
        let guesses = (0..40).map(|i| {
            let (app, replica, username) = (&app, &replica, &username);
            async move {
                let body = json!({"query": LOGIN, "variables": {"u": username, "p": format!("guess {i}")}});
                if i % 2 == 0 {
                    app.post(body, None).await.1
                } else {
                    gql_at(replica, body, None).await
                }
            }
        });
        let answers = futures_join_all(guesses).await;
        let (signed_in, wrong, refused) = tally(&answers);
        assert_eq!(
            (signed_in, wrong, refused),
            (0, 5, 35),
            "round {round}: five guesses verified in all"
        );
        // Locked on both replicas, for the right password too.
        for r in [
            app.login(&username, "shared secret passphrase").await,
            gql_at(
                &replica,
                json!({"query": LOGIN, "variables": {"u": username, "p": "shared secret passphrase"}}),
                None,
            )
            .await,
        ] {
            assert_eq!(codes(&r), ["TOO_MANY_REQUESTS"], "round {round}: {r}");
        }
    }
}
