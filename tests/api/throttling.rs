use serde_json::{Value, json};

use crate::kit::{
    documents::{LOGIN, login_variables},
    *,
};

#[tokio::test]
async fn five_failures_lock_a_username_known_or_not_and_the_lock_grows() {
    let app = TestApp::spawn().await;
    app.user_with("target", "target passphrase").await;
    let anonymous = app.anonymous();
    for username in ["target", "no-such-user"] {
        for attempt in 1..=5 {
            let r = anonymous.login(username, "wrong guess here").await;
            assert_eq!(
                r.codes(),
                ["UNAUTHENTICATED"],
                "{username} attempt {attempt}"
            );
        }
        // Locked: even the right password is refused, and the answer is the same either way.
        let r = anonymous.login(username, "target passphrase").await;
        assert_eq!(r.codes(), ["TOO_MANY_REQUESTS"], "{username}: {r}");
        let wait = r.retry_after();
        assert!(
            wait.is_some_and(|s| (25..=30).contains(&s)),
            "{username}: retryAfter {wait:?}"
        );
    }
    // Case does not dodge the lock.
    let r = anonymous.login("TARGET", "target passphrase").await;
    assert_eq!(r.codes(), ["TOO_MANY_REQUESTS"]);

    // When the lock runs out, one more failure locks for twice as long.
    app.sql("UPDATE login_throttles SET locked_until_ms = 0", vec![])
        .await;
    let r = anonymous.login("target", "wrong guess here").await;
    assert_eq!(r.codes(), ["UNAUTHENTICATED"]);
    let r = anonymous.login("target", "target passphrase").await;
    let wait = r.retry_after();
    assert!(
        wait.is_some_and(|s| (55..=60).contains(&s)),
        "second lock: retryAfter {wait:?}"
    );
}

#[tokio::test]
async fn a_success_resets_the_count() {
    let app = TestApp::spawn().await;
    app.user_with("forgetful", "forgetful passphrase").await;
    let anonymous = app.anonymous();
    // Four failures and a success, twice: the second four start from nothing.
    for _ in 0..2 {
        for _ in 0..4 {
            assert_eq!(
                anonymous.login("forgetful", "not it at all").await.codes(),
                ["UNAUTHENTICATED"]
            );
        }
        anonymous
            .login("forgetful", "forgetful passphrase")
            .await
            .assert_ok();
    }
}

#[tokio::test]
async fn aliased_and_batched_sign_ins_each_count() {
    let app = TestApp::spawn().await;
    app.user_with("aliased", "aliased passphrase").await;
    let attempts: Vec<String> = (0..6)
        .map(|i| format!(r#"a{i}: login(input:{{username:"aliased", password:"guess number {i}"}}){{ accessToken }}"#))
        .collect();
    let r = app
        .anonymous()
        .query(&format!("mutation {{ {} }}", attempts.join(" ")), json!({}))
        .await;
    let codes = r.codes();
    assert_eq!(codes.len(), 6, "{r}");
    assert_eq!(&codes[..5], ["UNAUTHENTICATED"; 5]);
    assert_eq!(codes[5], "TOO_MANY_REQUESTS");

    app.user_with("batched", "batched passphrase").await;
    let batch: Vec<Value> = (0..6)
        .map(|i| LOGIN.request(login_variables("batched", &format!("guess number {i}"))))
        .collect();
    let r = app.anonymous().post(&Value::Array(batch)).await;
    assert_eq!(r.status, 200);
    let answers = r.batch();
    assert_eq!(answers[5].codes(), ["TOO_MANY_REQUESTS"], "{r}");
}

#[tokio::test]
async fn unknown_users_cost_the_same_argon2_work_as_wrong_passwords() {
    let app = TestApp::spawn().await;
    app.user_with("existing", "existing passphrase").await;
    let anonymous = app.anonymous();
    for username in ["existing", "missing", "x"] {
        let before = app.password_work().verifications;
        let r = anonymous.login(username, "wrong passphrase").await;
        assert_eq!(r.codes(), ["UNAUTHENTICATED"]);
        assert_eq!(
            app.password_work().verifications - before,
            1,
            "{username}: one verification"
        );
    }
    // Registering a taken name hashes first, like a free one, then conflicts.
    let before = app.password_work().hashes;
    let r = anonymous.register("EXISTING", "another passphrase").await;
    assert_eq!(r.codes(), ["CONFLICT"]);
    assert_eq!(app.password_work().hashes - before, 1);
}

#[tokio::test]
async fn common_passwords_are_refused_at_registration() {
    let app = TestApp::spawn().await;
    for password in [
        "password",
        "12345678",
        "Password1",
        "iloveyou",
        "QWERTYUIOP",
    ] {
        let r = app.anonymous().register("common", password).await;
        assert_eq!(r.codes(), ["BAD_USER_INPUT"], "{password}");
        assert_eq!(r.error().field(), Some("password"));
    }
    app.user_with("common", "an uncommon passphrase").await;
}

#[tokio::test]
async fn the_per_ip_limit_counts_login_register_and_refresh() {
    let app = TestApp::builder()
        .auth_rate_limit_per_minute(4)
        .spawn()
        .await;
    let anonymous = app.anonymous();
    // 1: register, 2–3: logins, 4: refresh.
    let registered = anonymous
        .register("limited", "limited passphrase")
        .await
        .ok();
    assert!(
        anonymous
            .login("limited", "limited passphrase")
            .await
            .codes()
            .is_empty()
    );
    assert_eq!(
        anonymous.login("other", "wrong passphrase").await.codes(),
        ["UNAUTHENTICATED"]
    );
    anonymous
        .refresh(&registered.refresh_token)
        .await
        .assert_ok();
    let r = anonymous.login("limited", "limited passphrase").await;
    assert_eq!(r.codes(), ["TOO_MANY_REQUESTS"], "{r}");
    assert!(r.retry_after().is_some_and(|s| s >= 1), "{r}");
    // Forwarded-for headers are not trusted by default: spoofing one changes nothing.
    let r = anonymous
        .forwarded_for("198.51.100.9")
        .login("limited", "limited passphrase")
        .await;
    assert_eq!(r.codes(), ["TOO_MANY_REQUESTS"], "{r}");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_ip_is_limited() {
    let app = TestApp::builder()
        .auth_rate_limit_per_minute(1)
        .behind_proxy()
        .spawn()
        .await;
    app.user_with("proxied", "proxied passphrase").await;
    let login_from = async |ip: &str| {
        app.anonymous()
            .forwarded_for(&format!("10.0.0.1, {ip}"))
            .login("proxied", "wrong passphrase")
            .await
    };
    assert_eq!(
        login_from("198.51.100.1").await.codes(),
        ["UNAUTHENTICATED"]
    );
    assert_eq!(
        login_from("198.51.100.1").await.codes(),
        ["TOO_MANY_REQUESTS"]
    );
    assert_eq!(
        login_from("198.51.100.2").await.codes(),
        ["UNAUTHENTICATED"],
        "another client has its own budget"
    );
}
