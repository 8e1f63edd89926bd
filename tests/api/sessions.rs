use std::time::Duration;

use crate::kit::{internals::Pruned, *};

/// A new session of `username`, whose refresh token lives 30 days.
async fn login_pair(app: &TestApp, username: &str, password: &str) -> Actor {
    let session = app.sign_in(username, password).await;
    assert_eq!(session.session().refresh_token_expires_in, 30 * 86_400);
    session
}

/// Registers `username`, then signs it in `N` times: `N` sessions (devices) of one account.
async fn sessions<const N: usize>(app: &TestApp, username: &str, password: &str) -> [Actor; N] {
    app.user_with(username, password).await;
    let mut sessions = Vec::new();
    for _ in 0..N {
        sessions.push(login_pair(app, username, password).await);
    }
    sessions.try_into().unwrap_or_else(|_| unreachable!())
}

/// Trades a refresh token for a new pair, as an anonymous caller.
async fn refresh(app: &TestApp, token: &str) -> Response<AuthPayload> {
    app.anonymous().refresh(token).await
}

#[tokio::test]
async fn refresh_tokens_are_opaque_and_rotate() {
    let app = TestApp::spawn().await;
    let [first] = sessions(&app, "rotating", "rotating passphrase").await;
    assert_eq!(first.refresh_token().len(), 43, "256 bits, base64url");
    assert_eq!(first.refresh_token().split('.').count(), 1, "not a JWT");

    let r = refresh(&app, first.refresh_token()).await;
    assert_eq!(r.ok().expires_in, 3600);
    let second = first.with_session(r.ok());
    assert_ne!(second.refresh_token(), first.refresh_token());
    assert!(second.works().await);
    let third = second.with_session(refresh(&app, second.refresh_token()).await.ok());
    assert!(third.works().await);
}

#[tokio::test]
async fn reusing_a_spent_refresh_token_ends_the_whole_session() {
    // Without the reuse interval, the replay below comes "later" at once (the interval has
    // tests of its own, in browser_sessions.rs).
    let app = TestApp::builder()
        .refresh_reuse_interval(Duration::ZERO)
        .spawn()
        .await;
    let [stolen, other_device] = sessions(&app, "victim", "victim passphrase").await;

    // The victim refreshes; later the thief replays the stolen (now spent) token.
    let victim = stolen.with_session(refresh(&app, stolen.refresh_token()).await.ok());
    let r = refresh(&app, stolen.refresh_token()).await;
    assert_eq!(r.codes(), ["UNAUTHENTICATED"], "{r}");

    // The whole family is gone at once: the victim's newer tokens too.
    victim.assert_ended("a replayed refresh token").await;
    // Another session of the same account is untouched.
    assert!(other_device.works().await);
    assert!(
        refresh(&app, other_device.refresh_token())
            .await
            .codes()
            .is_empty()
    );
}

#[tokio::test]
async fn refresh_and_access_tokens_are_not_interchangeable() {
    let app = TestApp::spawn().await;
    let [pair] = sessions(&app, "mixer", "mixer passphrase").await;
    let r = app.bearer(pair.refresh_token()).account().await;
    assert_eq!(
        r.codes(),
        ["UNAUTHENTICATED"],
        "refresh token as access token: {r}"
    );
    let r = refresh(&app, pair.token()).await;
    assert_eq!(
        r.codes(),
        ["UNAUTHENTICATED"],
        "access token as refresh token: {r}"
    );
    for junk in ["", "x", &"A".repeat(43), &"A".repeat(5000)] {
        let r = refresh(&app, junk).await;
        assert_eq!(r.codes(), ["UNAUTHENTICATED"], "{junk:.10}");
    }
    // The pair still works after those attempts.
    assert!(pair.works().await);
    assert!(refresh(&app, pair.refresh_token()).await.codes().is_empty());
}

#[tokio::test]
async fn an_expired_refresh_token_is_refused() {
    let app = TestApp::spawn().await;
    let [pair] = sessions(&app, "expiring", "expiring passphrase").await;
    app.sql(
        "UPDATE refresh_tokens SET expires_at = $1",
        vec![(chrono::Utc::now() - chrono::Duration::seconds(1)).into()],
    )
    .await;
    let r = refresh(&app, pair.refresh_token()).await;
    assert_eq!(r.codes(), ["UNAUTHENTICATED"], "{r}");
}

#[tokio::test]
async fn logout_ends_this_session_at_once_and_leaves_others() {
    let app = TestApp::spawn().await;
    let [here, there] = sessions(&app, "leaver", "leaver passphrase").await;

    let r = here.logout().await;
    assert!(r.ok(), "{r}");
    here.assert_ended("logout").await;
    assert!(there.works().await);

    let r = app.anonymous().logout().await;
    assert_eq!(r.codes(), ["UNAUTHENTICATED"]);
}

#[tokio::test]
async fn logout_all_ends_every_session() {
    let app = TestApp::spawn().await;
    let [a, b] = sessions(&app, "everywhere", "everywhere passphrase").await;
    let r = a.logout_all().await;
    assert!(r.ok(), "{r}");
    for pair in [&a, &b] {
        pair.assert_ended("logoutAll").await;
    }
    // Signing in again works.
    let fresh = login_pair(&app, "everywhere", "everywhere passphrase").await;
    assert!(fresh.works().await);
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one_and_ends_every_other_session() {
    let app = TestApp::spawn().await;
    let [here, there] = sessions(&app, "changer", "original passphrase").await;

    let r = here
        .change_password("wrong passphrase", "brand new passphrase")
        .await;
    assert_eq!(r.codes(), ["BAD_USER_INPUT"], "{r}");
    assert_eq!(r.error().field(), Some("currentPassword"));
    let r = here
        .change_password("original passphrase", "password1")
        .await;
    assert_eq!(r.codes(), ["BAD_USER_INPUT"], "{r}");
    assert_eq!(r.error().field(), Some("newPassword"));
    assert!(here.works().await, "refused changes change nothing");

    let r = here
        .change_password("original passphrase", "brand new passphrase")
        .await;
    let changed = here.with_session(r.ok());
    assert!(changed.works().await);
    for old in [&here, &there] {
        old.assert_ended("a password change").await;
    }
    let anonymous = app.anonymous();
    assert_eq!(
        anonymous
            .login("changer", "original passphrase")
            .await
            .codes(),
        ["UNAUTHENTICATED"]
    );
    anonymous
        .login("changer", "brand new passphrase")
        .await
        .assert_ok();
}

#[tokio::test]
async fn a_demoted_admin_cannot_use_an_old_token_and_a_refresh_brings_the_new_role() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let deputy_id = app
        .user_with("deputy", "deputy passphrase")
        .await
        .id()
        .to_owned();
    admin
        .set_user_role(&deputy_id, Role::Admin)
        .await
        .assert_ok();

    let deputy = login_pair(&app, "deputy", "deputy passphrase").await;
    deputy.add_product("Made while admin", "1").await;

    admin
        .set_user_role(&deputy_id, Role::User)
        .await
        .assert_ok();
    let r = deputy
        .create_product(&NewProduct::new("Too late", "1"))
        .await;
    assert_eq!(
        r.codes(),
        ["UNAUTHENTICATED"],
        "the old admin token is revoked: {r}"
    );

    let r = refresh(&app, deputy.refresh_token()).await;
    let demoted = deputy.with_session(r.ok());
    assert_eq!(demoted.session().account.role, Role::User, "{r}");
    let r = demoted
        .create_product(&NewProduct::new("Too late", "1"))
        .await;
    assert_eq!(r.codes(), ["FORBIDDEN"], "{r}");
}

#[tokio::test]
async fn revocation_reaches_every_replica_within_a_second() {
    let replica_a = TestApp::spawn().await;
    let replica_b = replica_a.replica().await;
    let on_b = async |actor: &Actor| actor.on(&replica_b).account().await.codes().is_empty();

    let [pair] = sessions(&replica_a, "roaming", "roaming passphrase").await;
    assert!(on_b(&pair).await, "replica B accepts the token");
    pair.logout().await.assert_ok();
    let took = within(Duration::from_secs(1), async || !on_b(&pair).await).await;
    assert!(
        took.is_some(),
        "replica B still accepts a logged-out token after 1 s"
    );

    // A role change made on A also reaches B.
    let admin = replica_a.admin().await;
    let second = replica_a
        .user_with("second-admin", "second admin passphrase")
        .await;
    admin
        .set_user_role(second.id(), Role::Admin)
        .await
        .assert_ok();
    assert!(on_b(&admin).await);
    admin
        .set_user_role(admin.id(), Role::User)
        .await
        .assert_ok();
    let took = within(Duration::from_secs(1), async || !on_b(&admin).await).await;
    assert!(
        took.is_some(),
        "replica B still accepts a demoted admin's token after 1 s"
    );
}

#[tokio::test]
async fn rows_that_can_no_longer_matter_are_pruned() {
    let app = TestApp::spawn().await;
    let [keep, ended] = sessions(&app, "pruned", "pruned passphrase").await;
    ended.logout().await.assert_ok();
    for _ in 0..5 {
        app.anonymous()
            .login("nobody-at-all", "wrong passphrase")
            .await;
    }
    let first = app.prune().await;
    assert_eq!(first, Pruned::default(), "nothing is old enough yet");

    // Age everything: the logout's session and revocation, the throttle row (its lock over),
    // and every refresh token.
    let long_ago = chrono::Utc::now() - chrono::Duration::days(40);
    for (sql, value) in [
        (
            "UPDATE sessions SET revoked_at = $1 WHERE revoked_at IS NOT NULL",
            sea_orm::Value::from(long_ago),
        ),
        (
            "UPDATE revocations SET created_at_ms = $1",
            sea_orm::Value::from(long_ago.timestamp_millis()),
        ),
        (
            "UPDATE login_throttles SET updated_at_ms = $1, locked_until_ms = $1",
            sea_orm::Value::from(long_ago.timestamp_millis()),
        ),
    ] {
        app.sql(sql, vec![value]).await;
    }
    let pruned = app.prune().await;
    assert_eq!(pruned.sessions, 1, "{pruned:?}");
    assert!(pruned.revocations >= 1, "{pruned:?}");
    // Per (username, address) and per username, for both names signed in with.
    assert_eq!(pruned.login_throttles, 4, "{pruned:?}");
    // The live session is untouched.
    assert!(keep.works().await);
    assert!(refresh(&app, keep.refresh_token()).await.codes().is_empty());

    app.sql(
        "UPDATE refresh_tokens SET expires_at = $1",
        vec![long_ago.into()],
    )
    .await;
    assert!(app.prune().await.refresh_tokens >= 1);
}
