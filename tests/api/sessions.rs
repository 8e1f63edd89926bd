use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

const ACCOUNT: &str = "{ account { username role } }";
const REFRESH: &str = "mutation($t:String!){ refreshToken(refreshToken:$t){ accessToken refreshToken expiresIn refreshTokenExpiresIn account { role } } }";

struct Pair {
    access: String,
    refresh: String,
}

impl Pair {
    /// The tokens of an `AuthPayload` in a response.
    fn of(payload: &Value) -> Self {
        let token = |name: &str| payload[name].as_str().unwrap().to_owned();
        Pair {
            access: token("accessToken"),
            refresh: token("refreshToken"),
        }
    }
}

async fn login_pair(app: &TestApp, username: &str, password: &str) -> Pair {
    let r = app
        .gql(
            "mutation($u:String!,$p:String!){ login(input:{username:$u,password:$p}){ accessToken refreshToken refreshTokenExpiresIn } }",
            json!({"u": username, "p": password}),
            None,
        )
        .await;
    assert_no_errors(&r);
    assert_eq!(r["data"]["login"]["refreshTokenExpiresIn"], 30 * 86_400);
    Pair::of(&r["data"]["login"])
}

async fn refresh(app: &TestApp, token: &str) -> Value {
    app.gql(REFRESH, json!({"t": token}), None).await
}

fn pair_of(r: &Value) -> Pair {
    assert_no_errors(r);
    Pair::of(&r["data"]["refreshToken"])
}

async fn works(app: &TestApp, access: &str) -> bool {
    let r = app.gql(ACCOUNT, json!({}), Some(access)).await;
    match codes(&r).as_slice() {
        [] => true,
        [code] if code == "UNAUTHENTICATED" => false,
        other => panic!("unexpected {other:?}: {r}"),
    }
}

#[tokio::test]
async fn refresh_tokens_are_opaque_and_rotate() {
    let app = spawn_app().await;
    app.register("rotating", "rotating passphrase").await;
    let first = login_pair(&app, "rotating", "rotating passphrase").await;
    assert_eq!(first.refresh.len(), 43, "256 bits, base64url");
    assert_eq!(first.refresh.split('.').count(), 1, "not a JWT");

    let r = refresh(&app, &first.refresh).await;
    assert_eq!(r["data"]["refreshToken"]["expiresIn"], 3600);
    let second = pair_of(&r);
    assert_ne!(second.refresh, first.refresh);
    assert!(works(&app, &second.access).await);
    let third = pair_of(&refresh(&app, &second.refresh).await);
    assert!(works(&app, &third.access).await);
}

#[tokio::test]
async fn reusing_a_spent_refresh_token_ends_the_whole_session() {
    let app = spawn_app().await;
    app.register("victim", "victim passphrase").await;
    let stolen = login_pair(&app, "victim", "victim passphrase").await;
    let other_device = login_pair(&app, "victim", "victim passphrase").await;

    // The victim refreshes; later the thief replays the stolen (now spent) token.
    let victim = pair_of(&refresh(&app, &stolen.refresh).await);
    let r = refresh(&app, &stolen.refresh).await;
    assert_eq!(codes(&r), ["UNAUTHENTICATED"], "{r}");

    // The whole family is gone: the victim's newer tokens too.
    assert!(
        !works(&app, &victim.access).await,
        "access token of the family revoked at once"
    );
    let r = refresh(&app, &victim.refresh).await;
    assert_eq!(codes(&r), ["UNAUTHENTICATED"]);
    // Another session of the same account is untouched.
    assert!(works(&app, &other_device.access).await);
    assert!(codes(&refresh(&app, &other_device.refresh).await).is_empty());
}

#[tokio::test]
async fn refresh_and_access_tokens_are_not_interchangeable() {
    let app = spawn_app().await;
    app.register("mixer", "mixer passphrase").await;
    let pair = login_pair(&app, "mixer", "mixer passphrase").await;
    let r = app.gql(ACCOUNT, json!({}), Some(&pair.refresh)).await;
    assert_eq!(
        codes(&r),
        ["UNAUTHENTICATED"],
        "refresh token as access token: {r}"
    );
    let r = refresh(&app, &pair.access).await;
    assert_eq!(
        codes(&r),
        ["UNAUTHENTICATED"],
        "access token as refresh token: {r}"
    );
    for junk in ["", "x", &"A".repeat(43), &"A".repeat(5000)] {
        let r = refresh(&app, junk).await;
        assert_eq!(codes(&r), ["UNAUTHENTICATED"], "{junk:.10}");
    }
    // The pair still works after those attempts.
    assert!(works(&app, &pair.access).await);
    assert!(codes(&refresh(&app, &pair.refresh).await).is_empty());
}

#[tokio::test]
async fn an_expired_refresh_token_is_refused() {
    use sea_orm::{ConnectionTrait, Statement};
    let app = spawn_app().await;
    app.register("expiring", "expiring passphrase").await;
    let pair = login_pair(&app, "expiring", "expiring passphrase").await;
    let backend = app.state.db.get_database_backend();
    // Test fixtures write on the writer: the readers refuse writes.
    app.state
        .db
        .writer()
        .execute_raw(Statement::from_sql_and_values(
            backend,
            "UPDATE refresh_tokens SET expires_at = $1",
            [(chrono::Utc::now() - chrono::Duration::seconds(1)).into()],
        ))
        .await
        .unwrap();
    let r = refresh(&app, &pair.refresh).await;
    assert_eq!(codes(&r), ["UNAUTHENTICATED"], "{r}");
}

#[tokio::test]
async fn logout_ends_this_session_at_once_and_leaves_others() {
    let app = spawn_app().await;
    app.register("leaver", "leaver passphrase").await;
    let here = login_pair(&app, "leaver", "leaver passphrase").await;
    let there = login_pair(&app, "leaver", "leaver passphrase").await;

    let r = app
        .gql("mutation { logout }", json!({}), Some(&here.access))
        .await;
    assert_eq!(r["data"]["logout"], true, "{r}");
    assert!(!works(&app, &here.access).await);
    assert_eq!(
        codes(&refresh(&app, &here.refresh).await),
        ["UNAUTHENTICATED"]
    );
    assert!(works(&app, &there.access).await);

    let r = app.gql("mutation { logout }", json!({}), None).await;
    assert_eq!(codes(&r), ["UNAUTHENTICATED"]);
}

#[tokio::test]
async fn logout_all_ends_every_session() {
    let app = spawn_app().await;
    app.register("everywhere", "everywhere passphrase").await;
    let a = login_pair(&app, "everywhere", "everywhere passphrase").await;
    let b = login_pair(&app, "everywhere", "everywhere passphrase").await;
    let r = app
        .gql("mutation { logoutAll }", json!({}), Some(&a.access))
        .await;
    assert_eq!(r["data"]["logoutAll"], true, "{r}");
    for pair in [&a, &b] {
        assert!(!works(&app, &pair.access).await);
        assert_eq!(
            codes(&refresh(&app, &pair.refresh).await),
            ["UNAUTHENTICATED"]
        );
    }
    // Signing in again works.
    let fresh = login_pair(&app, "everywhere", "everywhere passphrase").await;
    assert!(works(&app, &fresh.access).await);
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one_and_ends_every_other_session() {
    let app = spawn_app().await;
    app.register("changer", "original passphrase").await;
    let here = login_pair(&app, "changer", "original passphrase").await;
    let there = login_pair(&app, "changer", "original passphrase").await;
    let change = "mutation($c:String!,$n:String!){ changePassword(currentPassword:$c, newPassword:$n){ accessToken refreshToken } }";

    let r = app
        .gql(
            change,
            json!({"c": "wrong passphrase", "n": "brand new passphrase"}),
            Some(&here.access),
        )
        .await;
    assert_eq!(codes(&r), ["BAD_USER_INPUT"], "{r}");
    assert_eq!(error_field(&r).as_deref(), Some("currentPassword"));
    let r = app
        .gql(
            change,
            json!({"c": "original passphrase", "n": "password1"}),
            Some(&here.access),
        )
        .await;
    assert_eq!(codes(&r), ["BAD_USER_INPUT"], "{r}");
    assert_eq!(error_field(&r).as_deref(), Some("newPassword"));
    assert!(
        works(&app, &here.access).await,
        "refused changes change nothing"
    );

    let r = app
        .gql(
            change,
            json!({"c": "original passphrase", "n": "brand new passphrase"}),
            Some(&here.access),
        )
        .await;
    assert_no_errors(&r);
    let new_access = r["data"]["changePassword"]["accessToken"].as_str().unwrap();
    assert!(works(&app, new_access).await);
    for old in [&here, &there] {
        assert!(!works(&app, &old.access).await);
        assert_eq!(
            codes(&refresh(&app, &old.refresh).await),
            ["UNAUTHENTICATED"]
        );
    }
    assert_eq!(
        codes(&app.login("changer", "original passphrase").await),
        ["UNAUTHENTICATED"]
    );
    assert_no_errors(&app.login("changer", "brand new passphrase").await);
}

#[tokio::test]
async fn a_demoted_admin_cannot_use_an_old_token_and_a_refresh_brings_the_new_role() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    app.register("deputy", "deputy passphrase").await;
    let deputy_id =
        app.login("deputy", "deputy passphrase").await["data"]["login"]["account"]["id"].clone();
    let set_role = "mutation($id:ID!,$r:Role!){ setUserRole(userId:$id, role:$r){ role } }";
    assert_no_errors(
        &app.gql(
            set_role,
            json!({"id": deputy_id, "r": "ADMIN"}),
            Some(&admin),
        )
        .await,
    );

    let deputy = login_pair(&app, "deputy", "deputy passphrase").await;
    app.create_product(&deputy.access, "Made while admin", "1")
        .await;

    assert_no_errors(
        &app.gql(
            set_role,
            json!({"id": deputy_id, "r": "USER"}),
            Some(&admin),
        )
        .await,
    );
    let r = app
        .gql(
            r#"mutation{ createProduct(input:{name:"Too late", price:"1"}){ id } }"#,
            json!({}),
            Some(&deputy.access),
        )
        .await;
    assert_eq!(
        codes(&r),
        ["UNAUTHENTICATED"],
        "the old admin token is revoked: {r}"
    );

    let r = refresh(&app, &deputy.refresh).await;
    assert_eq!(r["data"]["refreshToken"]["account"]["role"], "USER", "{r}");
    let demoted = pair_of(&r);
    let r = app
        .gql(
            r#"mutation{ createProduct(input:{name:"Too late", price:"1"}){ id } }"#,
            json!({}),
            Some(&demoted.access),
        )
        .await;
    assert_eq!(codes(&r), ["FORBIDDEN"], "{r}");
}

#[tokio::test]
async fn revocation_reaches_every_replica_within_a_second() {
    let replica_a = spawn_app().await;
    let (url_b, _stop_b) = spawn_replica(&replica_a).await;
    let on_b = async |token: String| {
        let r = gql_at(&url_b, json!({"query": ACCOUNT}), Some(&token)).await;
        codes(&r).is_empty()
    };

    replica_a.register("roaming", "roaming passphrase").await;
    let pair = login_pair(&replica_a, "roaming", "roaming passphrase").await;
    assert!(
        on_b(pair.access.clone()).await,
        "replica B accepts the token"
    );
    let r = replica_a
        .gql("mutation { logout }", json!({}), Some(&pair.access))
        .await;
    assert_no_errors(&r);
    let took = within(Duration::from_secs(1), async || {
        !on_b(pair.access.clone()).await
    })
    .await;
    assert!(
        took.is_some(),
        "replica B still accepts a logged-out token after 1 s"
    );

    // A role change made on A also reaches B.
    let admin = replica_a.admin_token().await;
    let admin_id = replica_a
        .gql("{ account { id } }", json!({}), Some(&admin))
        .await["data"]["account"]["id"]
        .clone();
    let second = replica_a
        .register("second-admin", "second admin passphrase")
        .await;
    let second_id = replica_a
        .gql("{ account { id } }", json!({}), Some(&second))
        .await["data"]["account"]["id"]
        .clone();
    let set_role = "mutation($id:ID!,$r:Role!){ setUserRole(userId:$id, role:$r){ role } }";
    assert_no_errors(
        &replica_a
            .gql(
                set_role,
                json!({"id": second_id, "r": "ADMIN"}),
                Some(&admin),
            )
            .await,
    );
    assert!(on_b(admin.clone()).await);
    assert_no_errors(
        &replica_a
            .gql(set_role, json!({"id": admin_id, "r": "USER"}), Some(&admin))
            .await,
    );
    let took = within(Duration::from_secs(1), async || !on_b(admin.clone()).await).await;
    assert!(
        took.is_some(),
        "replica B still accepts a demoted admin's token after 1 s"
    );
}

#[tokio::test]
async fn rows_that_can_no_longer_matter_are_pruned() {
    use sea_orm::{ConnectionTrait, Statement};
    use storefront::pruning::{Pruned, prune};
    let app = spawn_app().await;
    app.register("pruned", "pruned passphrase").await;
    let keep = login_pair(&app, "pruned", "pruned passphrase").await;
    let ended = login_pair(&app, "pruned", "pruned passphrase").await;
    assert_no_errors(
        &app.gql("mutation { logout }", json!({}), Some(&ended.access))
            .await,
    );
    for _ in 0..5 {
        app.login("nobody-at-all", "wrong passphrase").await;
    }
    let first = prune(&app.state.db).await.unwrap();
    assert_eq!(first, Pruned::default(), "nothing is old enough yet");

    // Age everything: the logout's session and revocation, the throttle row (its lock over),
    // and every refresh token.
    let db = &app.state.db;
    let backend = db.get_database_backend();
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
        db.writer()
            .execute_raw(Statement::from_sql_and_values(backend, sql, [value]))
            .await
            .unwrap();
    }
    let pruned = prune(db).await.unwrap();
    assert_eq!(pruned.sessions, 1, "{pruned:?}");
    assert!(pruned.revocations >= 1, "{pruned:?}");
    // Per (username, address) and per username, for both names signed in with.
    assert_eq!(pruned.login_throttles, 4, "{pruned:?}");
    // The live session is untouched.
    assert!(works(&app, &keep.access).await);
    assert!(codes(&refresh(&app, &keep.refresh).await).is_empty());

    db.writer()
        .execute_raw(Statement::from_sql_and_values(
            backend,
            "UPDATE refresh_tokens SET expires_at = $1",
            [long_ago.into()],
        ))
        .await
        .unwrap();
    assert!(prune(db).await.unwrap().refresh_tokens >= 1);
}
