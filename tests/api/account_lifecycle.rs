//! Accounts that go away lose their power at once: deactivation by an admin, deletion by the
//! owner, and rows deleted out of band, on every replica, raced against sign-ins and refreshes.

use std::time::Duration;

use sea_orm::{ConnectionTrait, EntityTrait, Statement};
use serde_json::{Value, json};
use storefront::{accounts::INVALID_CREDENTIALS, entities::account};

use crate::helpers::*;

const ACCOUNT: &str = "{ account { id username } }";
const LOGIN: &str = "mutation($u:String!,$p:String!){ login(input:{username:$u,password:$p}){ accessToken refreshToken account { id } } }";
const REFRESH: &str =
    "mutation($t:String!){ refreshToken(refreshToken:$t){ accessToken refreshToken } }";
const DEACTIVATE: &str =
    "mutation($id:ID!){ deactivateAccount(userId:$id){ id username deactivatedAt } }";
const REACTIVATE: &str = "mutation($id:ID!){ reactivateAccount(userId:$id){ id deactivatedAt } }";
const DELETE: &str = "mutation($p:String!){ deleteAccount(currentPassword:$p) }";
const CHANGE_PASSWORD: &str = "mutation($c:String!,$n:String!){ changePassword(currentPassword:$c, newPassword:$n){ accessToken refreshToken account { id } } }";
const SET_ROLE: &str = "mutation($id:ID!,$r:Role!){ setUserRole(userId:$id, role:$r){ role } }";

/// An access token, its refresh token and the account's id.
#[derive(Clone)]
struct SignedIn {
    access: String,
    refresh: String,
    id: String,
}

fn signed_in(payload: &Value) -> SignedIn {
    SignedIn {
        access: payload["accessToken"].as_str().unwrap().to_owned(),
        refresh: payload["refreshToken"].as_str().unwrap().to_owned(),
        id: payload["account"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    }
}

async fn login(app: &TestApp, username: &str, password: &str) -> Value {
    app.gql(LOGIN, json!({"u": username, "p": password}), None)
        .await
}

async fn sign_in(app: &TestApp, username: &str, password: &str) -> SignedIn {
    let r = login(app, username, password).await;
    assert_no_errors(&r);
    signed_in(&r["data"]["login"])
}

/// Registers an account and signs it in.
async fn new_account(app: &TestApp, username: &str, password: &str) -> SignedIn {
    app.register(username, password).await;
    sign_in(app, username, password).await
}

/// Whether an access token still works on the server at `url`.
async fn works_at(url: &str, access: &str) -> bool {
    let r = gql_at(url, json!({"query": ACCOUNT}), Some(access)).await;
    match codes(&r).as_slice() {
        [] => true,
        [code] if code == "UNAUTHENTICATED" => false,
        other => panic!("unexpected errors {other:?}: {r}"),
    }
}

fn graphql_url(app: &TestApp) -> String {
    format!("{}/graphql", app.url)
}

/// Asserts that a token is refused here at once and on the other replica within a second.
async fn dead_everywhere(app: &TestApp, replica: &str, access: &str, what: &str) {
    assert!(
        !works_at(&graphql_url(app), access).await,
        "{what}: the replica that made the change still accepts the token"
    );
    let took = within(Duration::from_secs(1), async || {
        !works_at(replica, access).await
    })
    .await;
    assert!(
        took.is_some(),
        "{what}: the other replica still accepts the token after 1 s"
    );
}

async fn refresh(app: &TestApp, token: &str) -> Value {
    app.gql(REFRESH, json!({"t": token}), None).await
}

/// The number of admins who may still sign in.
async fn active_admins(app: &TestApp) -> i64 {
    let db = app.state.db.reader();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM accounts WHERE role = 'admin' AND deactivated_at IS NULL",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "n").unwrap()
}

/// `actor` gives the account `id` the role `role` (`ADMIN` or `USER`), which must succeed.
async fn set_role(app: &TestApp, actor: &SignedIn, id: &str, role: &str) {
    assert_no_errors(
        &app.gql(SET_ROLE, json!({"id": id, "r": role}), Some(&actor.access))
            .await,
    );
}

/// Deletes an account by hand, as an operator would in SQL: on a connection of its own, in a
/// transaction held open for `hold` (`during_hold` runs meanwhile), with no revocation written
/// by the server.
async fn delete_by_hand(app: &TestApp, id: &str, hold: Duration, during_hold: impl AsyncFnOnce()) {
    use sea_orm::TransactionTrait;
    let db = sea_orm::Database::connect(app.db.url.as_str())
        .await
        .unwrap();
    let txn = db.begin().await.unwrap();
    let deleted = account::Entity::delete_by_id(uuid::Uuid::parse_str(id).unwrap())
        .exec(&txn)
        .await
        .unwrap();
    assert_eq!(deleted.rows_affected, 1);
    tokio::time::sleep(hold).await;
    during_hold().await;
    txn.commit().await.unwrap();
    db.close().await.unwrap();
}

/// The admin's token and id.
async fn admin(app: &TestApp) -> SignedIn {
    let access = app.admin_token().await;
    let id = app.gql(ACCOUNT, json!({}), Some(&access)).await["data"]["account"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    SignedIn {
        access,
        refresh: String::new(),
        id,
    }
}

#[tokio::test]
async fn a_deactivated_account_loses_every_token_on_every_replica_and_cannot_sign_in() {
    let app = spawn_app().await;
    let (replica, _stop) = spawn_replica(&app).await;
    let admin = admin(&app).await;
    let user = new_account(&app, "drifter", "drifter passphrase 1").await;
    let other_device = sign_in(&app, "drifter", "drifter passphrase 1").await;
    assert!(works_at(&replica, &user.access).await);

    let r = app
        .gql(DEACTIVATE, json!({"id": user.id}), Some(&admin.access))
        .await;
    assert_no_errors(&r);
    assert_eq!(r["data"]["deactivateAccount"]["username"], "drifter");
    assert!(r["data"]["deactivateAccount"]["deactivatedAt"].is_string());

    for (what, token) in [("this device", &user), ("another device", &other_device)] {
        dead_everywhere(&app, &replica, &token.access, what).await;
        let r = refresh(&app, &token.refresh).await;
        assert_eq!(codes(&r), ["UNAUTHENTICATED"], "{what}: {r}");
    }

    // The right password gets exactly the answer a wrong one gets.
    let right = login(&app, "drifter", "drifter passphrase 1").await;
    let wrong = login(&app, "drifter", "not the passphrase").await;
    assert_eq!(codes(&right), ["UNAUTHENTICATED"], "{right}");
    assert_eq!(right["errors"][0]["message"], INVALID_CREDENTIALS);
    assert_eq!(right["errors"], wrong["errors"]);
    assert!(right["data"].is_null() || right["data"]["login"].is_null());

    // Admins see who is deactivated; deactivating twice changes nothing.
    let listed = app
        .gql(
            "{ users(first: 100) { nodes { username deactivatedAt } } }",
            json!({}),
            Some(&admin.access),
        )
        .await;
    let nodes = listed["data"]["users"]["nodes"].as_array().unwrap().clone();
    let drifter = nodes.iter().find(|n| n["username"] == "drifter").unwrap();
    assert!(drifter["deactivatedAt"].is_string(), "{listed}");
    let again = app
        .gql(DEACTIVATE, json!({"id": user.id}), Some(&admin.access))
        .await;
    assert_no_errors(&again);
    assert_eq!(
        again["data"]["deactivateAccount"]["deactivatedAt"],
        r["data"]["deactivateAccount"]["deactivatedAt"]
    );

    // Reactivated, it signs in anew; what it held before stays dead.
    let r = app
        .gql(REACTIVATE, json!({"id": user.id}), Some(&admin.access))
        .await;
    assert_no_errors(&r);
    assert!(r["data"]["reactivateAccount"]["deactivatedAt"].is_null());
    let back = sign_in(&app, "drifter", "drifter passphrase 1").await;
    assert!(works_at(&replica, &back.access).await);
    assert!(!works_at(&graphql_url(&app), &user.access).await);
    assert_eq!(
        codes(&refresh(&app, &user.refresh).await),
        ["UNAUTHENTICATED"]
    );

    let r = app
        .gql(
            DEACTIVATE,
            json!({"id": "01890000-0000-7000-8000-000000000000"}),
            Some(&admin.access),
        )
        .await;
    assert_eq!(codes(&r), ["NOT_FOUND"], "{r}");
}

#[tokio::test]
async fn the_last_active_admin_can_be_neither_deactivated_nor_demoted_nor_deleted() {
    let app = spawn_app().await;
    let first = admin(&app).await;
    let r = app
        .gql(DEACTIVATE, json!({"id": first.id}), Some(&first.access))
        .await;
    assert_eq!(codes(&r), ["CONFLICT"], "{r}");
    assert_eq!(error_field(&r).as_deref(), Some("userId"));
    let r = app
        .gql(DELETE, json!({"p": ADMIN_PASSWORD}), Some(&first.access))
        .await;
    assert_eq!(codes(&r), ["CONFLICT"], "{r}");
    assert!(
        works_at(&graphql_url(&app), &first.access).await,
        "a refused change took the admin's token"
    );

    // A deactivated admin does not count: the active one is still the last.
    let second = new_account(&app, "deputy", "deputy passphrase 77").await;
    set_role(&app, &first, &second.id, "ADMIN").await;
    assert_no_errors(
        &app.gql(DEACTIVATE, json!({"id": second.id}), Some(&first.access))
            .await,
    );
    let r = app
        .gql(
            SET_ROLE,
            json!({"id": first.id, "r": "USER"}),
            Some(&first.access),
        )
        .await;
    assert_eq!(codes(&r), ["CONFLICT"], "{r}");
    let r = app
        .gql(DEACTIVATE, json!({"id": first.id}), Some(&first.access))
        .await;
    assert_eq!(codes(&r), ["CONFLICT"], "{r}");
    assert_eq!(active_admins(&app).await, 1);

    // With the deputy back, the first admin may go.
    assert_no_errors(
        &app.gql(REACTIVATE, json!({"id": second.id}), Some(&first.access))
            .await,
    );
    assert_no_errors(
        &app.gql(DEACTIVATE, json!({"id": first.id}), Some(&first.access))
            .await,
    );
    assert_eq!(active_admins(&app).await, 1);
    assert!(!works_at(&graphql_url(&app), &first.access).await);

    // `create-admin` on a deactivated account is the operator's way back in.
    let back = admin(&app).await;
    assert_eq!(back.id, first.id);
    assert_eq!(active_admins(&app).await, 2);
}

/// Two admins removing each other at once (deactivation, demotion, deletion, in every
/// pairing): one of them stays an active admin, every round, on both databases.
#[tokio::test]
async fn admins_removing_each_other_at_once_always_leave_one() {
    let app = spawn_app().await;
    let mut main = admin(&app).await;
    let ops = ["deactivate", "demote", "delete"];
    for round in 0..12 {
        let name = format!("rival{round}");
        let password = format!("rival passphrase {round} x");
        let rival = new_account(&app, &name, &password).await;
        set_role(&app, &main, &rival.id, "ADMIN").await;
        // Only the two of them are active admins now.
        assert_eq!(active_admins(&app).await, 2);
        let main_op = ops[round % 3];
        let rival_op = ops[(round / 3) % 3];
        let remove = async |actor: &SignedIn, target: &SignedIn, op: &str, password: &str| {
            match op {
                "deactivate" => {
                    app.gql(DEACTIVATE, json!({"id": target.id}), Some(&actor.access))
                        .await
                }
                "demote" => {
                    app.gql(
                        SET_ROLE,
                        json!({"id": target.id, "r": "USER"}),
                        Some(&actor.access),
                    )
                    .await
                }
                // Deleting removes the actor itself.
                _ => {
                    app.gql(DELETE, json!({"p": password}), Some(&actor.access))
                        .await
                }
            }
        };
        let (a, b) = tokio::join!(
            remove(&main, &rival, main_op, ADMIN_PASSWORD),
            remove(&rival, &main, rival_op, &password),
        );
        let admins = active_admins(&app).await;
        assert!(
            admins >= 1,
            "round {round} ({main_op} vs {rival_op}) left no active admin: {a} {b}"
        );
        for r in [&a, &b] {
            for code in codes(r) {
                assert!(
                    ["CONFLICT", "UNAUTHENTICATED", "FORBIDDEN"].contains(&code.as_str()),
                    "round {round}: {r}"
                );
            }
        }
        // Put things back: "admin" the only active admin again, the rival a plain user.
        let is_active_admin = async |id: &str| {
            account::Entity::find_by_id(uuid::Uuid::parse_str(id).unwrap())
                .one(app.state.db.reader())
                .await
                .unwrap()
                .map(|a| a.role == "admin" && a.deactivated_at.is_none())
        };
        if is_active_admin(&main.id).await != Some(true) {
            // The rival won, so it is the active admin now.
            let rival_now = sign_in(&app, &name, &password).await;
            if is_active_admin(&main.id).await == Some(false) {
                assert_no_errors(
                    &app.gql(REACTIVATE, json!({"id": main.id}), Some(&rival_now.access))
                        .await,
                );
            }
            // Promotes "admin" again, or creates it if it deleted itself.
            main = admin(&app).await;
        }
        if is_active_admin(&rival.id).await.is_some() {
            set_role(&app, &main, &rival.id, "USER").await;
        }
    }
}

#[tokio::test]
async fn deleting_ones_account_needs_the_password_and_ends_everything_everywhere() {
    let app = spawn_app().await;
    let (replica, _stop) = spawn_replica(&app).await;
    let main = admin(&app).await;
    let leaving = new_account(&app, "leaving", "leaving passphrase 9").await;
    let other_device = sign_in(&app, "leaving", "leaving passphrase 9").await;

    let r = app
        .gql(
            DELETE,
            json!({"p": "not my passphrase"}),
            Some(&leaving.access),
        )
        .await;
    assert_eq!(codes(&r), ["BAD_USER_INPUT"], "{r}");
    assert_eq!(error_field(&r).as_deref(), Some("currentPassword"));
    assert!(
        works_at(&replica, &leaving.access).await,
        "a refused deletion ended the account"
    );

    let r = app
        .gql(
            DELETE,
            json!({"p": "leaving passphrase 9"}),
            Some(&leaving.access),
        )
        .await;
    assert_no_errors(&r);
    assert_eq!(r["data"]["deleteAccount"], true);
    for (what, token) in [("this device", &leaving), ("another device", &other_device)] {
        dead_everywhere(&app, &replica, &token.access, what).await;
        assert_eq!(
            codes(&refresh(&app, &token.refresh).await),
            ["UNAUTHENTICATED"]
        );
    }
    let r = login(&app, "leaving", "leaving passphrase 9").await;
    assert_eq!(r["errors"][0]["message"], INVALID_CREDENTIALS, "{r}");
    assert!(
        account::Entity::find_by_id(uuid::Uuid::parse_str(&leaving.id).unwrap())
            .one(app.state.db.reader())
            .await
            .unwrap()
            .is_none()
    );

    // The name is free again, and the new account is a different one.
    let newcomer = new_account(&app, "leaving", "another passphrase 10").await;
    assert_ne!(newcomer.id, leaving.id);
    assert!(!works_at(&graphql_url(&app), &leaving.access).await);

    // An admin who leaves takes nothing with it: its products stay, without a creator.
    let deputy = new_account(&app, "deputy", "deputy passphrase 77").await;
    set_role(&app, &main, &deputy.id, "ADMIN").await;
    let deputy = sign_in(&app, "deputy", "deputy passphrase 77").await;
    let product = app.create_product(&deputy.access, "Orphan", "3.50").await;
    assert_no_errors(
        &app.gql(
            DELETE,
            json!({"p": "deputy passphrase 77"}),
            Some(&deputy.access),
        )
        .await,
    );
    let r = app
        .gql(
            "query($id:ID!){ product(id:$id){ name createdBy { id } } }",
            json!({"id": product}),
            Some(&main.access),
        )
        .await;
    assert_no_errors(&r);
    assert_eq!(r["data"]["product"]["name"], "Orphan");
    assert!(r["data"]["product"]["createdBy"].is_null(), "{r}");
}

/// A row deleted by hand in SQL (no mutation, no revocation written by the server): its
/// tokens stop working on every replica within a second all the same.
#[tokio::test]
async fn a_token_whose_account_was_deleted_out_of_band_is_revoked() {
    let app = spawn_app().await;
    let (replica, _stop) = spawn_replica(&app).await;
    let gone = new_account(&app, "vanishing", "vanishing passphrase 3").await;
    assert!(works_at(&replica, &gone.access).await);
    delete_by_hand(&app, &gone.id, Duration::ZERO, async || {}).await;
    for url in [graphql_url(&app), replica.clone()] {
        let took = within(Duration::from_secs(1), async || {
            !works_at(&url, &gone.access).await
        })
        .await;
        assert!(
            took.is_some(),
            "{url} still accepts a deleted account's token after 1 s"
        );
    }
    assert_eq!(
        codes(&refresh(&app, &gone.refresh).await),
        ["UNAUTHENTICATED"]
    );
}

/// Deactivation and deletion raced against the same account's refreshes, sign-ins and password
/// changes, many times: once the change has returned, nothing issued in the race works a
/// second later.
#[tokio::test]
async fn nothing_issued_while_an_account_goes_away_survives_it() {
    let app = spawn_app().await;
    let (replica, _stop) = spawn_replica(&app).await;
    let main = admin(&app).await;
    for round in 0..16 {
        let name = format!("racer{round}");
        let password = format!("racer passphrase {round} y");
        let racer = new_account(&app, &name, &password).await;
        let deleting = round % 2 == 1;
        let change = async || {
            let r = if deleting {
                app.gql(DELETE, json!({"p": password}), Some(&racer.access))
                    .await
            } else {
                app.gql(DEACTIVATE, json!({"id": racer.id}), Some(&main.access))
                    .await
            };
            assert_no_errors(&r);
        };
        // The change lands at different points of the sign-in (before its password check, during
        // the hashing, as its session is stored) and of the refresh.
        let delay = Duration::from_millis((round % 8) as u64 * 8);
        let new_password = format!("{password} changed");
        let (_, refreshed, signed, changed) = tokio::join!(
            async {
                tokio::time::sleep(delay).await;
                change().await
            },
            async {
                tokio::time::sleep(delay / 2).await;
                refresh(&app, &racer.refresh).await
            },
            login(&app, &name, &password),
            // Verifying the current password takes a hash's time: the deactivation lands inside
            // it. (Deletion shares the password change's one-at-a-time lock: not raced.)
            async {
                if deleting {
                    return json!({"errors": [{"extensions": {"code": "NOT_SENT"}}]});
                }
                app.gql(
                    CHANGE_PASSWORD,
                    json!({"c": password, "n": new_password}),
                    Some(&racer.access),
                )
                .await
            },
        );
        let mut issued = vec![racer.clone()];
        if codes(&refreshed).is_empty() {
            issued.push(signed_in(&refreshed["data"]["refreshToken"]));
        }
        if codes(&signed).is_empty() {
            issued.push(signed_in(&signed["data"]["login"]));
        }
        if codes(&changed).is_empty() {
            issued.push(signed_in(&changed["data"]["changePassword"]));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        for token in &issued {
            for url in [graphql_url(&app), replica.clone()] {
                assert!(
                    !works_at(&url, &token.access).await,
                    "round {round} ({}): a token issued in the race works on {url}",
                    if deleting { "delete" } else { "deactivate" }
                );
            }
            let r = refresh(&app, &token.refresh).await;
            assert_eq!(codes(&r), ["UNAUTHENTICATED"], "round {round}: {r}");
        }
    }
}

/// An account deleted by hand in a transaction left open for longer than the replicas' poll
/// overlap (5 s): its revocation is stamped before the commit, yet read all the same.
#[tokio::test]
async fn an_account_deleted_in_a_long_transaction_loses_its_tokens_at_the_commit() {
    let app = spawn_app().await;
    let (replica, _stop) = spawn_replica(&app).await;
    let admin = admin(&app).await;
    let gone = new_account(&app, "lingering", "lingering passphrase 4").await;
    delete_by_hand(&app, &gone.id, Duration::from_secs(7), async || {
        assert!(
            works_at(&replica, &gone.access).await,
            "revoked before the commit"
        );
    })
    .await;
    for url in [graphql_url(&app), replica.clone()] {
        let took = within(Duration::from_secs(1), async || {
            !works_at(&url, &gone.access).await
        })
        .await;
        assert!(
            took.is_some(),
            "{url} still accepts the token 1 s after the commit"
        );
    }
    // An admin's token is no different.
    let deputy = new_account(&app, "deputy", "deputy passphrase 77").await;
    set_role(&app, &admin, &deputy.id, "ADMIN").await;
    let deputy = sign_in(&app, "deputy", "deputy passphrase 77").await;
    delete_by_hand(&app, &deputy.id, Duration::from_secs(6), async || {}).await;
    let took = within(Duration::from_secs(1), async || {
        !works_at(&replica, &deputy.access).await
    })
    .await;
    assert!(took.is_some(), "a deleted admin's token still works");
}

/// An admin deleting itself while its own creates are in flight on two replicas: each create
/// is stored, or refused as UNAUTHENTICATED, never an internal error.
#[tokio::test]
async fn creates_racing_their_admins_deletion_are_stored_or_refused_cleanly() {
    let app = spawn_app().await;
    let (replica, _stop) = spawn_replica(&app).await;
    let main = admin(&app).await;
    for round in 0..6 {
        let name = format!("fleeting{round}");
        let password = format!("fleeting passphrase {round} z");
        let fleeting = new_account(&app, &name, &password).await;
        set_role(&app, &main, &fleeting.id, "ADMIN").await;
        let fleeting = sign_in(&app, &name, &password).await;
        let create =
            r#"mutation($n:String!){ createProduct(input:{name:$n, price:"1.00"}){ id } }"#;
        let creates = (0..12).map(|i| {
            let url = if i % 2 == 0 {
                graphql_url(&app)
            } else {
                replica.clone()
            };
            let token = fleeting.access.clone();
            let body = json!({"query": create, "variables": {"n": format!("r{round}-{i}")}});
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(i * 5)).await;
                gql_at(&url, body, Some(&token)).await
            })
        });
        let creates: Vec<_> = creates.collect();
        let deleted = app
            .gql(DELETE, json!({"p": password}), Some(&fleeting.access))
            .await;
        assert_no_errors(&deleted);
        for create in creates {
            let r = create.await.unwrap();
            let codes = codes(&r);
            assert!(
                codes.is_empty() || codes == ["UNAUTHENTICATED"],
                "round {round}: {r}"
            );
        }
    }
}
