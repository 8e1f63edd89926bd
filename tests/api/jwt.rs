use chrono::Utc;
use serde_json::{Value, json};

use crate::kit::*;

/// The header and claims exactly as the server issues them, for an existing account.
async fn valid_token(app: &TestApp) -> (Value, Value) {
    let user = app.user_with("jwtuser", "jwt passphrase").await;
    (header_of(user.token()), claims_of(user.token()))
}

/// `claims` with the entries of `changes` set, signed with the test secret under `header`.
fn forge_with(header: &Value, claims: &Value, changes: Value) -> String {
    let mut changed = claims.clone();
    for (name, value) in changes.as_object().unwrap() {
        changed[name] = value.clone();
    }
    forge_jwt(header, &changed, JWT_SECRET.as_bytes())
}

/// `header` with its entry `name` set to `value`.
fn header_with(header: &Value, name: &str, value: Value) -> Value {
    let mut changed = header.clone();
    changed[name] = value;
    changed
}

async fn assert_rejected(app: &TestApp, token: &str, why: &str) {
    let r = app.bearer(token).account().await;
    assert_eq!(r.codes(), ["UNAUTHENTICATED"], "{why}: {r}");
    assert!(r.raw_data().is_null(), "{why}: {r}");
}

#[tokio::test]
async fn issued_tokens_carry_every_claim_and_live_exactly_one_hour() {
    let app = TestApp::spawn().await;
    let (header, claims) = valid_token(&app).await;
    for claim in [
        "sub", "role", "sid", "ver", "iat", "nbf", "exp", "iss", "aud", "jti",
    ] {
        assert!(!claims[claim].is_null(), "missing {claim}: {claims}");
    }
    assert_eq!(header["alg"], "HS256");
    assert_eq!(header["typ"], "at+jwt");
    assert!(header["kid"].is_string());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    assert_eq!(claims["iss"], "storefront");
    assert_eq!(claims["aud"], "storefront");
    assert_eq!(claims["role"], "user");
    // The forged copy of a valid token is accepted: the attacks below differ in one thing only.
    let token = forge_jwt(&header, &claims, JWT_SECRET.as_bytes());
    let r = app.bearer(&token).account().await;
    assert_eq!(r.ok().username, "jwtuser", "{r}");
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens_are_rejected_beyond_five_seconds_of_skew() {
    let app = TestApp::spawn().await;
    let (header, claims) = valid_token(&app).await;
    let now = Utc::now().timestamp();
    let with = |changes: Value| forge_with(&header, &claims, changes);

    assert_rejected(
        &app,
        &with(json!({"iat": now - 3700, "nbf": now - 3700, "exp": now - 30})),
        "expired 30 s ago",
    )
    .await;
    assert_rejected(&app, &with(json!({"nbf": now + 60})), "nbf in the future").await;
    assert_rejected(
        &app,
        &with(json!({"iat": now + 60, "nbf": now})),
        "iat in the future",
    )
    .await;

    // Within the allowed skew it is still accepted.
    app.bearer(&with(json!({"exp": now - 2})))
        .account()
        .await
        .assert_ok();
}

#[tokio::test]
async fn tampered_wrongly_signed_and_mis_addressed_tokens_are_rejected() {
    let app = TestApp::spawn().await;
    let (header, claims) = valid_token(&app).await;
    let good = forge_jwt(&header, &claims, JWT_SECRET.as_bytes());

    // Tampered payload: role raised to admin, signature kept.
    let forged = forge_with(&header, &claims, json!({"role": "admin"}));
    let parts: Vec<&str> = good.split('.').collect();
    let forged_parts: Vec<&str> = forged.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], forged_parts[1], parts[2]);
    assert_rejected(&app, &tampered, "tampered payload").await;

    assert_rejected(
        &app,
        &forge_jwt(&header, &claims, b"another-secret-that-is-32-bytes-long!!"),
        "wrong secret",
    )
    .await;

    for (changes, why) in [
        (json!({"iss": "someone-else"}), "wrong issuer"),
        (json!({"aud": "another-api"}), "wrong audience"),
        (json!({"exp": claims["exp"].to_string()}), "exp as a string"),
        (json!({"role": "role:admin"}), "malformed role"),
        (json!({"role": "ADMIN"}), "malformed role"),
    ] {
        assert_rejected(&app, &forge_with(&header, &claims, changes), why).await;
    }

    // A well-formed role the policy does not define grants nothing (and is never taken for
    // `user`).
    let token = forge_with(&header, &claims, json!({"role": "superuser"}));
    let r = app.bearer(&token).account().await;
    assert_eq!(r.codes(), ["FORBIDDEN"], "{r}");
    let r = app.bearer(&token).my_permissions().await;
    assert_eq!(r.data().map(|p| p.len()), Some(0), "{r}");

    for claim in [
        "sub", "role", "sid", "ver", "iat", "nbf", "exp", "iss", "aud", "jti",
    ] {
        let mut missing = claims.clone();
        missing.as_object_mut().unwrap().remove(claim);
        assert_rejected(
            &app,
            &forge_jwt(&header, &missing, JWT_SECRET.as_bytes()),
            &format!("missing {claim}"),
        )
        .await;
    }
}

#[tokio::test]
async fn other_algorithms_are_rejected() {
    let app = TestApp::spawn().await;
    let (header, claims) = valid_token(&app).await;
    let b64 = |v: &Value| {
        use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
        URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let payload = b64(&claims);
    let with = |name: &str, value: Value| header_with(&header, name, value);
    for alg in ["none", "None", "NONE", "nOnE"] {
        let token = format!("{}.{payload}.", b64(&with("alg", json!(alg))));
        assert_rejected(&app, &token, &format!("alg {alg}")).await;
        let signed = format!("{}.{payload}.c2lnbmF0dXJl", b64(&with("alg", json!(alg))));
        assert_rejected(&app, &signed, &format!("alg {alg} with a signature")).await;
    }
    // Signed with the right secret under another algorithm: the algorithm is pinned to HS256.
    for alg in ["HS384", "HS512", "RS256", "ES256", "PS256", "EdDSA"] {
        let token = forge_jwt(&with("alg", json!(alg)), &claims, JWT_SECRET.as_bytes());
        assert_rejected(&app, &token, &format!("alg {alg}")).await;
    }
}

#[tokio::test]
async fn tokens_of_another_type_or_key_are_rejected() {
    let app = TestApp::spawn().await;
    let (header, claims) = valid_token(&app).await;
    let with = |name: &str, value: Value| header_with(&header, name, value);
    for (name, value, why) in [
        ("typ", json!("JWT"), "typ JWT, not at+jwt"),
        ("typ", Value::Null, "no typ"),
        ("kid", json!("someone-elses-key"), "unknown kid"),
        ("kid", Value::Null, "no kid"),
        ("crit", json!(["exp"]), "unknown critical header"),
    ] {
        let token = forge_jwt(&with(name, value), &claims, JWT_SECRET.as_bytes());
        assert_rejected(&app, &token, why).await;
    }
    // Oversized and malformed headers.
    let huge = forge_jwt(
        &with("x", json!("a".repeat(5000))),
        &claims,
        JWT_SECRET.as_bytes(),
    );
    assert_rejected(&app, &huge, "oversized header").await;
    for garbage in ["a.b.c", "....", "eyJhbGciOiJIUzI1NiJ9..", "e30.e30.e30"] {
        assert_rejected(&app, garbage, garbage).await;
    }
}

#[tokio::test]
async fn a_rotated_secret_keeps_old_tokens_valid_and_new_ones_are_signed_with_the_new_key() {
    let old_app = TestApp::spawn().await;
    let old_token = old_app
        .user_with("rotator", "rotator passphrase")
        .await
        .token()
        .to_owned();
    let old_kid = header_of(&old_token)["kid"].clone();
    let db = old_app.into_db();

    let new_secret = "the-new-secret-after-rotation-0123456789";
    let rotated = TestApp::builder()
        .on(db)
        .jwt_secrets(new_secret, &[JWT_SECRET])
        .spawn()
        .await;
    let r = rotated.bearer(&old_token).account().await;
    assert_eq!(r.ok().username, "rotator", "old token still valid: {r}");
    let new_token = rotated
        .anonymous()
        .login("rotator", "rotator passphrase")
        .await
        .ok()
        .access_token;
    assert_ne!(header_of(&new_token)["kid"], old_kid);
    // A previous secret verifies; it never signs: a token naming the new kid but signed
    // with the old secret is refused.
    let forged = forge_jwt(
        &header_of(&new_token),
        &claims_of(&new_token),
        JWT_SECRET.as_bytes(),
    );
    assert_rejected(&rotated, &forged, "new kid, old secret").await;
    let db = rotated.into_db();

    // Once the old secret is dropped from the list, its tokens stop working.
    let dropped = TestApp::builder()
        .on(db)
        .jwt_secrets(new_secret, &[])
        .spawn()
        .await;
    assert_rejected(&dropped, &old_token, "old key retired").await;
    dropped.bearer(&new_token).account().await.assert_ok();
}

#[tokio::test]
async fn malformed_authorization_headers_are_unauthenticated_but_public_fields_still_work() {
    let app = TestApp::spawn().await;
    let user = app.user_with("header", "header passphrase").await;
    let token = user.token();
    for value in [
        "Bearer".to_owned(),
        "Bearer not.a.jwt".to_owned(),
        format!("Basic {token}"),
        token.to_owned(),
        format!("Bearer {}", "a".repeat(5000)),
    ] {
        let r = app
            .anonymous()
            .with_header("Authorization", &value)
            .account()
            .await;
        assert_eq!(r.codes(), ["UNAUTHENTICATED"], "{value:.40}: {r}");
    }
    app.anonymous()
        .with_header("Authorization", "Bearer expired.or.garbage")
        .login("header", "header passphrase")
        .await
        .assert_ok();
}
