//! Sessions as browsers use them: tabs and retries refreshing with one token at once, signing
//! out without a working access token, errors that say whether to refresh or sign in again,
//! rate limits a generic HTTP client understands, and the headers a page may send.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::kit::*;

/// Trades a refresh token for a new pair, as an anonymous caller.
async fn refresh(app: &TestApp, token: &str) -> Response<AuthPayload> {
    app.anonymous().refresh(token).await
}

/// The same pair: both tokens equal.
fn same_pair(a: &AuthPayload, b: &AuthPayload) -> bool {
    a.access_token == b.access_token && a.refresh_token == b.refresh_token
}

#[tokio::test]
async fn the_token_just_spent_answers_the_same_pair_within_the_interval() {
    // The default interval (10 s): the retries below come within milliseconds.
    let app = TestApp::spawn().await;
    let user = app.user("two-tabs").await;
    let spent = user.refresh_token().to_owned();

    let first = refresh(&app, &spent).await.ok();
    let again = refresh(&app, &spent).await.ok();
    assert!(same_pair(&first, &again), "{first:?} / {again:?}");
    assert!(again.expires_in > 0 && again.expires_in <= 3600);
    assert!(again.refresh_token_expires_in > 0);
    let tab = user.with_session(again);
    assert!(tab.works().await, "the answered pair works");

    // The successor goes on rotating as usual.
    let next = refresh(&app, tab.refresh_token()).await.ok();
    assert_ne!(next.refresh_token, first.refresh_token);
    let next = tab.with_session(next);
    assert!(next.works().await);

    // The first token is now two generations old: presenting it is reuse, which ends the
    // session, newest tokens included.
    let r = refresh(&app, &spent).await;
    assert_eq!(r.codes(), ["UNAUTHENTICATED"], "{r}");
    assert_eq!(r.reasons(), ["SESSION_ENDED"], "{r}");
    next.assert_ended("a token two generations old").await;
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_all_get_the_same_pair_and_the_session_lives() {
    let app = TestApp::spawn().await;
    let mut session = app.user("many-tabs").await;
    for round in 0..10 {
        let token = session.refresh_token().to_owned();
        let answers = join_all((0..6).map(|_| refresh(&app, &token))).await;
        let pairs: Vec<AuthPayload> = answers
            .iter()
            .map(|r| {
                assert!(r.codes().is_empty(), "round {round}: {r}");
                r.ok()
            })
            .collect();
        assert!(
            pairs.iter().all(|pair| same_pair(pair, &pairs[0])),
            "round {round}: different pairs {pairs:?}"
        );
        session = session.with_session(pairs[0].clone());
        assert!(session.works().await, "round {round}: the session lives");
    }
    // And the refresh token answered goes on working.
    refresh(&app, session.refresh_token()).await.assert_ok();
}

#[tokio::test]
async fn after_the_interval_reuse_ends_the_session_and_its_successor() {
    let interval = Duration::from_millis(300);
    let app = TestApp::builder()
        .refresh_reuse_interval(interval)
        .spawn()
        .await;
    let user = app.user("late-retry").await;
    let spent = user.refresh_token().to_owned();
    let successor = user.with_session(refresh(&app, &spent).await.ok());
    assert!(successor.works().await);

    // Past the interval (the wait is no assertion: only "after" matters).
    tokio::time::sleep(interval * 2).await;
    let r = refresh(&app, &spent).await;
    assert_eq!(r.codes(), ["UNAUTHENTICATED"], "{r}");
    assert_eq!(r.reasons(), ["SESSION_ENDED"], "{r}");
    successor.assert_ended("reuse after the interval").await;
    let r = successor.account().await;
    assert_eq!(r.reasons(), ["SESSION_ENDED"], "{r}");
}

#[tokio::test]
async fn an_interval_of_zero_makes_every_reuse_end_the_session() {
    let app = TestApp::builder()
        .refresh_reuse_interval(Duration::ZERO)
        .spawn()
        .await;
    let user = app.user("strict").await;
    let spent = user.refresh_token().to_owned();
    let successor = user.with_session(refresh(&app, &spent).await.ok());
    let r = refresh(&app, &spent).await;
    assert_eq!(r.reasons(), ["SESSION_ENDED"], "{r}");
    successor.assert_ended("reuse with the interval off").await;
}

#[tokio::test]
async fn the_interval_does_not_outlive_the_session() {
    let app = TestApp::spawn().await;
    let user = app.user("ended-between").await;
    let spent = user.refresh_token().to_owned();
    let successor = user.with_session(refresh(&app, &spent).await.ok());
    successor.logout().await.assert_ok();
    let r = refresh(&app, &spent).await;
    assert_eq!(r.reasons(), ["SESSION_ENDED"], "{r}");
    successor.assert_ended("logout").await;
}

#[tokio::test]
async fn logout_with_the_refresh_token_alone_ends_the_session() {
    let app = TestApp::spawn().await;
    let [here, there] = [
        app.user("leaving").await,
        app.sign_in("leaving", &password_of("leaving")).await,
    ];

    // No access token, or a broken one: the refresh token is enough.
    for caller in [app.anonymous(), app.bearer("expired.or.broken")] {
        let session = here.sign_in_again().await;
        let r = caller
            .logout_with_refresh_token(session.refresh_token())
            .await;
        assert!(r.ok(), "{r}");
        session.assert_ended("logout(refreshToken)").await;
        let r = session.account().await;
        assert_eq!(r.reasons(), ["SESSION_ENDED"], "{r}");
    }

    // A token the session already spent names it too; ending it again is no error.
    let spent = here.refresh_token().to_owned();
    let newer = here.with_session(refresh(&app, &spent).await.ok());
    assert!(app.anonymous().logout_with_refresh_token(&spent).await.ok());
    newer.assert_ended("logout with a spent token").await;
    assert!(app.anonymous().logout_with_refresh_token(&spent).await.ok());

    // Other sessions go on.
    assert!(there.works().await);

    let r = app
        .anonymous()
        .logout_with_refresh_token(&"A".repeat(43))
        .await;
    assert_eq!(r.codes(), ["UNAUTHENTICATED"], "{r}");
    assert_eq!(r.reasons(), ["TOKEN_INVALID"], "{r}");

    // Without the argument, as before: the access token's session, and none without one.
    there.logout().await.assert_ok();
    there.assert_ended("logout").await;
    let r = app.anonymous().logout().await;
    assert_eq!(r.reasons(), ["MISSING"], "{r}");
}

/// `token` with its times moved `by_secs` into the past, signed again with the test secret: a
/// genuine token that has expired.
fn expired(token: &str, by_secs: i64) -> String {
    let mut claims = claims_of(token);
    for claim in ["iat", "nbf", "exp"] {
        claims[claim] = json!(claims[claim].as_i64().unwrap() - by_secs);
    }
    forge_jwt(&header_of(token), &claims, JWT_SECRET.as_bytes())
}

#[tokio::test]
async fn unauthenticated_errors_say_why() {
    let app = TestApp::spawn().await;
    let user = app.user("reasons").await;
    let reason = async |actor: &Actor| {
        let r = actor.account().await;
        assert_eq!(r.codes(), ["UNAUTHENTICATED"], "{r}");
        for internal in ["Signature", "jsonwebtoken", "sql", "Error("] {
            assert!(!r.error().message.contains(internal), "{r}");
        }
        r.error().reason().unwrap().to_owned()
    };

    assert_eq!(reason(&app.anonymous()).await, "MISSING");
    // The empty header that clients send for a visitor who is not signed in (Apollo Client's
    // authentication example) is no header: the visitor is anonymous, not holding a bad token.
    for empty in ["", " ", "\t"] {
        let visitor = app.anonymous().with_header("Authorization", empty);
        assert_eq!(reason(&visitor).await, "MISSING", "{empty:?}");
        let r = visitor.my_permissions().await;
        assert_eq!(r.codes(), Vec::<&str>::new(), "anonymous, not refused: {r}");
    }
    assert_eq!(reason(&app.bearer("not a jwt")).await, "TOKEN_INVALID");
    let no_token = app.anonymous().with_header("Authorization", "Bearer ");
    assert_eq!(reason(&no_token).await, "TOKEN_INVALID");
    let wrong_key = forge_jwt(
        &header_of(user.token()),
        &claims_of(user.token()),
        b"some-other-secret-of-at-least-32-bytes!!",
    );
    assert_eq!(reason(&app.bearer(&wrong_key)).await, "TOKEN_INVALID");
    assert_eq!(
        reason(&app.bearer(&expired(user.token(), 7200))).await,
        "TOKEN_EXPIRED"
    );
    assert!(user.works().await, "the unexpired original still works");

    // Refresh tokens: unknown, or its session ended.
    let r = refresh(&app, &"A".repeat(43)).await;
    assert_eq!(r.reasons(), ["TOKEN_INVALID"], "{r}");
    let session = user.sign_in_again().await;
    session.logout().await.assert_ok();
    assert_eq!(reason(&session).await, "SESSION_ENDED");
    let r = refresh(&app, session.refresh_token()).await;
    assert_eq!(r.reasons(), ["SESSION_ENDED"], "{r}");

    // A deactivated account's tokens.
    let admin = app.admin().await;
    admin.deactivate_account(user.id()).await.assert_ok();
    assert_eq!(reason(&user).await, "SESSION_ENDED");
    let r = refresh(&app, user.refresh_token()).await;
    assert_eq!(r.reasons(), ["SESSION_ENDED"], "{r}");

    // Signing in with the wrong password.
    let r = app.anonymous().login("reasons", "not the passphrase").await;
    assert_eq!(r.codes(), ["UNAUTHENTICATED"], "{r}");
    assert_eq!(r.reasons(), ["INVALID_CREDENTIALS"], "{r}");
}

#[tokio::test]
async fn rate_limited_answers_carry_retry_after_and_the_ratelimit_headers() {
    let app = TestApp::builder()
        .auth_rate_limit_per_minute(2)
        .spawn()
        .await;
    let anonymous = app.anonymous();
    for _ in 0..2 {
        let r = anonymous.login("nobody", "wrong passphrase").await;
        assert_eq!(r.codes(), ["UNAUTHENTICATED"], "{r}");
        for header in ["retry-after", "ratelimit", "ratelimit-policy"] {
            assert!(
                r.header(header).is_none(),
                "{header} on an answer not limited"
            );
        }
    }
    let r = anonymous.login("nobody", "wrong passphrase").await;
    assert_eq!(r.codes(), ["TOO_MANY_REQUESTS"], "{r}");
    let wait = r.retry_after().unwrap();
    assert!((1..=60).contains(&wait), "{r}");
    assert_eq!(r.error().extension("policy"), "auth-per-address");
    assert_eq!(r.header("retry-after"), Some(wait.to_string().as_str()));
    assert_eq!(
        r.header("ratelimit-policy"),
        Some(r#""auth-per-address";q=2;w=60"#)
    );
    assert_eq!(
        r.header("ratelimit"),
        Some(format!(r#""auth-per-address";r=0;t={wait}"#).as_str())
    );
}

#[tokio::test]
async fn a_locked_sign_in_names_its_policy_in_the_headers() {
    let app = TestApp::spawn().await;
    app.user_with("locked", "locked passphrase").await;
    let anonymous = app.anonymous();
    for _ in 0..5 {
        anonymous.login("locked", "wrong guess here").await;
    }
    // In a batch: the headers speak for the operation that was limited.
    let batch = json!([
        { "query": "{ __typename }" },
        documents::LOGIN.request(documents::login_variables("locked", "locked passphrase")),
    ]);
    let r = anonymous.post(&batch).await;
    let answers = r.batch();
    assert_eq!(answers[1].codes(), ["TOO_MANY_REQUESTS"], "{r}");
    let wait = answers[1].retry_after().unwrap();
    assert_eq!(r.header("retry-after"), Some(wait.to_string().as_str()));
    assert_eq!(
        r.header("ratelimit-policy"),
        Some(r#""sign-in-failures";q=5;w=3600"#)
    );
    assert_eq!(
        r.header("ratelimit"),
        Some(format!(r#""sign-in-failures";r=0;t={wait}"#).as_str())
    );
}

/// A CORS preflight from `origin` asking to send `headers`; the `Access-Control-Allow-Headers`
/// answered, lower case, split.
async fn allowed_headers(app: &TestApp, origin: &str, headers: &str) -> Vec<String> {
    let response = app
        .request(Method::OPTIONS, "/graphql")
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", headers)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{response:?}");
    let allowed = response.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    allowed.split(',').map(|h| h.trim().to_owned()).collect()
}

/// What browsers' common GraphQL clients and tracing libraries add to a request.
const CLIENT_HEADERS: [&str; 8] = [
    "authorization",
    "content-type",
    "traceparent",
    "tracestate",
    "baggage",
    "sentry-trace",
    "apollographql-client-name",
    "apollographql-client-version",
];

#[tokio::test]
async fn a_preflight_allows_what_clients_and_tracing_send_and_the_list_is_configurable() {
    let origin = "https://shop.example";
    let app = TestApp::builder().cors_origins(&[origin]).spawn().await;
    let allowed = allowed_headers(&app, origin, &CLIENT_HEADERS.join(", ")).await;
    for header in CLIENT_HEADERS
        .iter()
        .chain(&["x-request-id", "idempotency-key"])
    {
        assert!(allowed.iter().any(|h| h == header), "{header}: {allowed:?}");
    }
    // A page can read the rate-limit headers.
    let response = app
        .request(Method::POST, "/graphql")
        .header("Origin", origin)
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .unwrap();
    let exposed = response.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for header in [
        "retry-after",
        "ratelimit",
        "ratelimit-policy",
        "x-request-id",
    ] {
        assert!(exposed.contains(header), "{header}: {exposed}");
    }

    // The variable's own syntax, end to end: it replaces the list.
    let app = TestApp::builder()
        .cors_origins(&[origin])
        .env(
            "CORS_ALLOWED_HEADERS",
            "Authorization, content-type, X-Shop-Tenant",
        )
        .spawn()
        .await;
    let allowed = allowed_headers(&app, origin, "x-shop-tenant").await;
    assert_eq!(allowed, ["authorization", "content-type", "x-shop-tenant"]);
}
