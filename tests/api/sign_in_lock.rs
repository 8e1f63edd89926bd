//! The sign-in lock under attack: concurrent guesses, distributed guessing, strangers trying
//! to lock a victim out, and hashing floods meant to starve other users.

use std::{net::IpAddr, time::Duration, time::Instant};

use crate::kit::*;

/// A server that takes the client address from `X-Forwarded-For`, as behind a proxy.
async fn behind_proxy() -> TestApp {
    TestApp::builder().behind_proxy().spawn().await
}

/// Signs in as a client at `ip`.
async fn login_from(
    app: &TestApp,
    ip: &str,
    username: &str,
    password: &str,
) -> Response<AuthPayload> {
    app.anonymous()
        .forwarded_for(ip)
        .login(username, password)
        .await
}

/// Whether the first error asks to wait `seconds` (a range).
fn waits<T>(r: &Response<T>, seconds: std::ops::RangeInclusive<i64>) -> bool {
    r.retry_after().is_some_and(|s| seconds.contains(&s))
}

/// How many answers carried each outcome: signed in, UNAUTHENTICATED, TOO_MANY_REQUESTS.
fn tally(answers: &[Response<AuthPayload>]) -> (usize, usize, usize) {
    let mut tally = (0, 0, 0);
    for r in answers {
        match r.codes().as_slice() {
            [] => tally.0 += 1,
            ["UNAUTHENTICATED"] => tally.1 += 1,
            ["TOO_MANY_REQUESTS"] => tally.2 += 1,
            other => panic!("unexpected answer {other:?}: {r}"),
        }
    }
    tally
}

#[tokio::test]
async fn concurrent_guesses_verify_at_most_the_allowed_number_and_the_lock_holds() {
    let app = TestApp::builder()
        .request_timeout(Duration::from_secs(120))
        .spawn()
        .await;
    let anonymous = app.anonymous();
    for round in 0..6 {
        let username = format!("racer{round}");
        let password = format!("racer {round} secret passphrase");
        app.user_with(&username, &password).await;
        // 39 wrong guesses and the right password, all at once.
        let right_at = (round * 13 + 7) % 40;
        let before = app.password_work().verifications;
        let guesses = (0..40).map(|i| {
            let guess = if i == right_at {
                password.clone()
            } else {
                format!("wrong guess {i}")
            };
            let (anonymous, username) = (&anonymous, &username);
            async move { anonymous.login(username, &guess).await }
        });
        let answers = join_all(guesses).await;
        let verified = app.password_work().verifications - before;
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
            let r = anonymous.login(&username, &password).await;
            assert_eq!(r.codes(), ["TOO_MANY_REQUESTS"], "round {round}: {r}");
            assert!(waits(&r, 25..=30), "{r}");
        } else {
            // The right password won a reservation before the lock: it cleared the failures
            // before it, so at most five more were verified after it.
            assert_eq!(signed_in, 1);
            assert!(wrong <= 9, "round {round}: {wrong} wrong guesses verified");
            assert!(answers[right_at].codes().is_empty(), "round {round}");
        }
    }
}

#[tokio::test]
async fn a_strangers_failures_lock_only_the_strangers_address() {
    let app = behind_proxy().await;
    app.user_with("victim", "victim's own passphrase").await;
    for attempt in 1..=5 {
        let r = login_from(&app, "198.51.100.66", "victim", "stranger's guess").await;
        assert_eq!(r.codes(), ["UNAUTHENTICATED"], "attempt {attempt}");
    }
    let r = login_from(&app, "198.51.100.66", "victim", "victim's own passphrase").await;
    assert_eq!(r.codes(), ["TOO_MANY_REQUESTS"], "{r}");
    // The same address written as IPv4-mapped IPv6 is the same client.
    let r = login_from(
        &app,
        "::ffff:198.51.100.66",
        "victim",
        "victim's own passphrase",
    )
    .await;
    assert_eq!(r.codes(), ["TOO_MANY_REQUESTS"], "{r}");
    // The victim, at their own address, signs in.
    let r = login_from(&app, "203.0.113.5", "victim", "victim's own passphrase").await;
    r.assert_ok();
}

#[tokio::test]
async fn an_ipv6_client_counts_by_its_64_for_the_lock_and_the_rate() {
    let app = TestApp::builder()
        .behind_proxy()
        .auth_rate_limit_per_minute(7)
        .spawn()
        .await;
    app.user_with("six", "six's own passphrase").await;
    // Five failures from five addresses of one /64 lock that /64.
    for host in 1..=5 {
        let ip = format!("2001:db8:1:2::{host:x}");
        let r = login_from(&app, &ip, "six", "a guess from v6").await;
        assert_eq!(r.codes(), ["UNAUTHENTICATED"], "{ip}");
    }
    let r = login_from(&app, "2001:db8:1:2:ffff::99", "six", "six's own passphrase").await;
    assert_eq!(r.codes(), ["TOO_MANY_REQUESTS"], "{r}");
    // The neighbouring /64 is another client.
    let r = login_from(&app, "2001:db8:1:3::1", "six", "six's own passphrase").await;
    r.assert_ok();
    // The per-address rate (7 a minute) counted the six attempts above against the first
    // /64: one more passes, the next is refused whatever its last 64 bits.
    let r = login_from(&app, "2001:db8:1:2::abc", "nobody-here", "a guess").await;
    assert_eq!(r.codes(), ["UNAUTHENTICATED"], "{r}");
    let r = login_from(&app, "2001:db8:1:2::def", "nobody-here", "a guess").await;
    assert_eq!(r.codes(), ["TOO_MANY_REQUESTS"], "{r}");
}

#[tokio::test]
async fn distributed_guessing_hits_the_username_ceiling_yet_the_signed_in_victim_changes_the_password()
 {
    // A hashing queue long enough for all 50 guesses at once, and no request timeout: this
    // test counts guesses; a loaded test machine must not turn some into timeouts.
    let app = TestApp::builder()
        .behind_proxy()
        .password_hash_queue(1000)
        .request_timeout(Duration::from_secs(120))
        .spawn()
        .await;
    let victim = app.user_with("ceiling", "ceiling's own passphrase").await;
    let before = app.password_work().verifications;
    // 60 guesses at once, each from its own address: the per-address locks never trigger.
    let guesses = (0..60).map(|i| {
        let app = &app;
        async move {
            let ip = IpAddr::from([198, 18, (i / 200) as u8, (i % 200 + 1) as u8]).to_string();
            login_from(app, &ip, "ceiling", &format!("distributed guess {i}")).await
        }
    });
    let answers = join_all(guesses).await;
    let (signed_in, wrong, refused) = tally(&answers);
    assert_eq!((signed_in, wrong, refused), (0, 50, 10));
    assert_eq!(
        app.password_work().verifications - before,
        50,
        "the ceiling is 50"
    );
    // From a fresh address, even the right password now waits for the ceiling's lock.
    let r = login_from(&app, "192.0.2.200", "ceiling", "ceiling's own passphrase").await;
    assert_eq!(r.codes(), ["TOO_MANY_REQUESTS"], "{r}");
    assert!(waits(&r, 25..=30), "{r}");

    // The victim, signed in, still changes the password: sign-in failures do not count here.
    victim
        .change_password("ceiling's own passphrase", "a brand new ceiling phrase")
        .await
        .assert_ok();
}

#[tokio::test]
async fn a_reservation_whose_request_died_lapses() {
    let app = TestApp::spawn().await;
    app.user_with("lapsed", "lapsed passphrase here").await;
    let anonymous = app.anonymous();
    assert_eq!(
        anonymous.login("lapsed", "one wrong guess").await.codes(),
        ["UNAUTHENTICATED"]
    );
    // As if five attempts had been reserved and their requests then killed mid-flight.
    let set_in_flight = async |since_ms: i64| {
        app.sql(
            "UPDATE login_throttles SET in_flight = 5, in_flight_since_ms = $1",
            vec![since_ms.into()],
        )
        .await
    };
    let now = chrono::Utc::now().timestamp_millis();
    set_in_flight(now).await;
    let r = anonymous.login("lapsed", "lapsed passphrase here").await;
    assert_eq!(r.codes(), ["TOO_MANY_REQUESTS"], "{r}");
    assert_eq!(r.retry_after(), Some(1), "{r}");
    // Two minutes later they no longer count.
    set_in_flight(now - 121_000).await;
    anonymous
        .login("lapsed", "lapsed passphrase here")
        .await
        .assert_ok();
}

#[tokio::test]
async fn one_account_runs_one_password_change_at_a_time() {
    let app = TestApp::spawn().await;
    let changer = app.user_with("changer", "changer's first phrase").await;
    let hashes = app.password_work().hashes;
    let changes = (0..40).map(|i| {
        let changer = &changer;
        async move {
            changer
                .change_password(
                    "changer's first phrase",
                    &format!("changer's new phrase {i}"),
                )
                .await
        }
    });
    let answers = join_all(changes).await;
    let ok = answers.iter().filter(|r| r.codes().is_empty()).count();
    let refused = answers
        .iter()
        .filter(|r| r.codes() == ["TOO_MANY_REQUESTS"])
        .count();
    // The others came too late: the token was revoked or the current password changed.
    for r in &answers {
        let codes = r.codes();
        assert!(
            codes.is_empty()
                || (codes.len() == 1
                    && ["TOO_MANY_REQUESTS", "UNAUTHENTICATED", "BAD_USER_INPUT"]
                        .contains(&codes[0])),
            "{r}"
        );
    }
    assert_eq!(ok, 1, "{answers:?}");
    assert!(refused >= 1, "{answers:?}");
    assert_eq!(
        app.password_work().hashes - hashes,
        1,
        "one new password hashed"
    );
}

#[tokio::test]
async fn hundreds_of_password_changes_do_not_starve_another_users_sign_in() {
    let app = TestApp::spawn().await;
    let flooder = app.user_with("flooder", "flooder's first phrase").await;
    app.user_with("bystander", "bystander's own phrase").await;
    let anonymous = app.anonymous();
    let started = Instant::now();
    anonymous
        .login("bystander", "bystander's own phrase")
        .await
        .assert_ok();
    let alone = started.elapsed();
    let flood = (0..300).map(|i| {
        let flooder = &flooder;
        async move {
            let current = if i % 2 == 0 {
                "flooder's first phrase"
            } else {
                "a wrong phrase"
            };
            flooder
                .change_password(current, &format!("flooder's new phrase {i}"))
                .await
        }
    });
    let sign_in = async {
        // Let the flood start first.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        let r = anonymous.login("bystander", "bystander's own phrase").await;
        (r, started.elapsed())
    };
    let (answers, (r, took)) = tokio::join!(join_all(flood), sign_in);
    r.assert_ok();
    eprintln!(
        "bystander's sign-in took {alone:?} alone, {took:?} during 300 concurrent changePassword calls"
    );
    // How long it may take is a target of the benchmark (bench/bench.py, password-change
    // flood: within 2 s), not of a test on a shared machine; here, that it completes.
    let refused = answers
        .iter()
        .filter(|r| r.codes() == ["TOO_MANY_REQUESTS"])
        .count();
    eprintln!("{refused} of 300 password changes refused at once");
    assert!(refused >= 1);
    assert!(
        app.password_work().hashes <= 3,
        "two registrations and at most one new password hashed"
    );
}

#[tokio::test]
async fn a_full_hashing_queue_refuses_sign_ins_at_once_unknown_users_included() {
    let app = TestApp::builder().password_hash_queue(2).spawn().await;
    let anonymous = app.anonymous();
    let before = app.password_work().verifications;
    // Unknown usernames: each takes the dummy-hash path, each under its own throttle keys.
    let logins = (0..100).map(|i| {
        let anonymous = &anonymous;
        async move {
            anonymous
                .login(&format!("ghost{i}"), "a ghost's guess")
                .await
        }
    });
    let answers = join_all(logins).await;
    let (signed_in, wrong, refused) = tally(&answers);
    assert_eq!(signed_in, 0);
    assert!(refused >= 1, "{wrong} wrong, {refused} refused");
    let work = app.password_work();
    assert_eq!(work.refused, refused as u64);
    assert_eq!(
        (work.verifications - before) as usize,
        wrong,
        "refused before any argon2 work"
    );
    for r in answers
        .iter()
        .filter(|r| r.codes() == ["TOO_MANY_REQUESTS"])
    {
        assert_eq!(r.retry_after(), Some(1), "{r}");
    }
    // Once the queue drains, sign-ins are verified again.
    assert_eq!(
        anonymous.login("ghost0", "a ghost's guess").await.codes(),
        ["UNAUTHENTICATED"]
    );
}

#[tokio::test]
async fn two_replicas_share_one_count_of_concurrent_guesses() {
    let app = TestApp::builder()
        .request_timeout(Duration::from_secs(120))
        .spawn()
        .await;
    let replica = app.replica().await;
    let (on_a, on_b) = (app.anonymous(), app.anonymous().on(&replica));
    for round in 0..3 {
        let username = format!("shared{round}");
        app.user_with(&username, "shared secret passphrase").await;
        // 40 wrong guesses at once, alternating between the two replicas.
        let guesses = (0..40).map(|i| {
            let (caller, username) = (if i % 2 == 0 { &on_a } else { &on_b }, &username);
            async move { caller.login(username, &format!("guess {i}")).await }
        });
        let answers = join_all(guesses).await;
        let (signed_in, wrong, refused) = tally(&answers);
        assert_eq!(
            (signed_in, wrong, refused),
            (0, 5, 35),
            "round {round}: five guesses verified in all"
        );
        // Locked on both replicas, for the right password too.
        for caller in [&on_a, &on_b] {
            let r = caller.login(&username, "shared secret passphrase").await;
            assert_eq!(r.codes(), ["TOO_MANY_REQUESTS"], "round {round}: {r}");
        }
    }
}
