use serde_json::{Value, json};

use crate::helpers::*;

fn login_body(username: &str, password: &str) -> Value {
    json!({
        "query": "mutation($u:String!,$p:String!){ login(input:{username:$u,password:$p}){ accessToken } }",
        "variables": {"u": username, "p": password}
    })
}

fn retry_after(r: &Value) -> i64 {
    r["errors"][0]["extensions"]["retryAfter"]
        .as_i64()
        .unwrap_or(-1)
}

#[tokio::test]
async fn five_failures_lock_a_username_known_or_not_and_the_lock_grows() {
    let app = spawn_app().await;
    app.register("target", "target passphrase").await;
    for username in ["target", "no-such-user"] {
        for attempt in 1..=5 {
            let r = app.login(username, "wrong guess here").await;
            assert_eq!(
                codes(&r),
                ["UNAUTHENTICATED"],
                "{username} attempt {attempt}"
            );
        }
        // Locked: even the right password is refused, and the answer is the same either way.
        let r = app.login(username, "target passphrase").await;
        assert_eq!(codes(&r), ["TOO_MANY_REQUESTS"], "{username}: {r}");
        let wait = retry_after(&r);
        assert!((25..=30).contains(&wait), "{username}: retryAfter {wait}");
    }
    // Case does not dodge the lock.
    let r = app.login("TARGET", "target passphrase").await;
    assert_eq!(codes(&r), ["TOO_MANY_REQUESTS"]);

    // When the lock runs out, one more failure locks for twice as long.
    expire_locks(&app).await;
    let r = app.login("target", "wrong guess here").await;
    assert_eq!(codes(&r), ["UNAUTHENTICATED"]);
    let r = app.login("target", "target passphrase").await;
    let wait = retry_after(&r);
    assert!((55..=60).contains(&wait), "second lock: retryAfter {wait}");
}

async fn expire_locks(app: &TestApp) {
    use sea_orm::ConnectionTrait;
    app.state
        .db
        .writer()
        .execute_unprepared("UPDATE login_throttles SET locked_until_ms = 0")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_success_resets_the_count() {
    let app = spawn_app().await;
    app.register("forgetful", "forgetful passphrase").await;
    for _ in 0..4 {
        assert_eq!(
            codes(&app.login("forgetful", "not it at all").await),
            ["UNAUTHENTICATED"]
        );
    }
    assert_no_errors(&app.login("forgetful", "forgetful passphrase").await);
    for _ in 0..4 {
        assert_eq!(
            codes(&app.login("forgetful", "not it at all").await),
            ["UNAUTHENTICATED"]
        );
    }
    assert_no_errors(&app.login("forgetful", "forgetful passphrase").await);
}

#[tokio::test]
async fn aliased_and_batched_sign_ins_each_count() {
    let app = spawn_app().await;
    app.register("aliased", "aliased passphrase").await;
    let attempts: Vec<String> = (0..6)
        .map(|i| format!(r#"a{i}: login(input:{{username:"aliased", password:"guess number {i}"}}){{ accessToken }}"#))
        .collect();
    let r = app
        .gql(
            &format!("mutation {{ {} }}", attempts.join(" ")),
            json!({}),
            None,
        )
        .await;
    let codes = codes(&r);
    assert_eq!(codes.len(), 6, "{r}");
    assert_eq!(&codes[..5], ["UNAUTHENTICATED"; 5]);
    assert_eq!(codes[5], "TOO_MANY_REQUESTS");

    app.register("batched", "batched passphrase").await;
    let batch: Vec<Value> = (0..6)
        .map(|i| login_body("batched", &format!("guess number {i}")))
        .collect();
    let (status, body) = app.post(Value::Array(batch), None).await;
    assert_eq!(status, 200);
    let last = &body.as_array().unwrap()[5];
    assert_eq!(crate::helpers::codes(last), ["TOO_MANY_REQUESTS"], "{body}");
}

#[tokio::test]
async fn unknown_users_cost_the_same_argon2_work_as_wrong_passwords() {
    let app = spawn_app().await;
    app.register("existing", "existing passphrase").await;
    let hasher = &app.state.passwords;
    for username in ["existing", "missing", "x"] {
        let before = hasher.verifications();
        let r = app.login(username, "wrong passphrase").await;
        assert_eq!(codes(&r), ["UNAUTHENTICATED"]);
        assert_eq!(
            hasher.verifications() - before,
            1,
            "{username}: one verification"
        );
    }
    // Registering a taken name hashes first, like a free one, then conflicts.
    let before = hasher.hashes();
    let r = app
        .gql(r#"mutation{ register(input:{username:"EXISTING", password:"another passphrase"}){ accessToken } }"#, json!({}), None)
        .await;
    assert_eq!(codes(&r), ["CONFLICT"]);
    assert_eq!(hasher.hashes() - before, 1);
}

#[tokio::test]
async fn common_passwords_are_refused_at_registration() {
    let app = spawn_app().await;
    for password in [
        "password",
        "12345678",
        "Password1",
        "iloveyou",
        "QWERTYUIOP",
    ] {
        let r = app
            .gql("mutation($p:String!){ register(input:{username:\"common\", password:$p}){ accessToken } }", json!({"p": password}), None)
            .await;
        assert_eq!(codes(&r), ["BAD_USER_INPUT"], "{password}");
        assert_eq!(error_field(&r).as_deref(), Some("password"));
    }
    app.register("common", "an uncommon passphrase").await;
}

#[tokio::test]
async fn the_per_ip_limit_counts_login_register_and_refresh() {
    let app = spawn_app_with(vec![("AUTH_RATE_LIMIT_PER_MINUTE", "4".to_owned())]).await;
    // 1: register, 2–3: logins, 4: refresh.
    let r = app
        .gql(r#"mutation{ register(input:{username:"limited", password:"limited passphrase"}){ refreshToken } }"#, json!({}), None)
        .await;
    assert_no_errors(&r);
    let refresh_token = r["data"]["register"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(codes(&app.login("limited", "limited passphrase").await).is_empty());
    assert_eq!(
        codes(&app.login("other", "wrong passphrase").await),
        ["UNAUTHENTICATED"]
    );
    let r = app
        .gql(
            "mutation($t:String!){ refreshToken(refreshToken:$t){ accessToken } }",
            json!({"t": refresh_token}),
            None,
        )
        .await;
    assert_no_errors(&r);
    let r = app.login("limited", "limited passphrase").await;
    assert_eq!(codes(&r), ["TOO_MANY_REQUESTS"], "{r}");
    assert!(retry_after(&r) >= 1);
    // Forwarded-for headers are not trusted by default: spoofing one changes nothing.
    let (_, r) = app
        .client
        .post(format!("{}/graphql", app.url))
        .header("X-Forwarded-For", "198.51.100.9")
        .json(&login_body("limited", "limited passphrase"))
        .send()
        .await
        .map(|r| (r.status(), r))
        .unwrap();
    let r: Value = r.json().await.unwrap();
    assert_eq!(codes(&r), ["TOO_MANY_REQUESTS"], "{r}");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_ip_is_limited() {
    let app = spawn_app_with(vec![
        ("AUTH_RATE_LIMIT_PER_MINUTE", "1".to_owned()),
        ("TRUST_PROXY_HEADERS", "true".to_owned()),
    ])
    .await;
    app.register("proxied", "proxied passphrase").await;
    let post = |ip: &'static str| {
        let app = &app;
        async move {
            app.client
                .post(format!("{}/graphql", app.url))
                .header("X-Forwarded-For", format!("10.0.0.1, {ip}"))
                .json(&login_body("proxied", "wrong passphrase"))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(codes(&post("198.51.100.1").await), ["UNAUTHENTICATED"]);
    assert_eq!(codes(&post("198.51.100.1").await), ["TOO_MANY_REQUESTS"]);
    assert_eq!(
        codes(&post("198.51.100.2").await),
        ["UNAUTHENTICATED"],
        "another client has its own budget"
    );
}
