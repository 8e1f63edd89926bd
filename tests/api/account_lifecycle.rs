//! Accounts that go away lose their power at once: deactivation by an admin, deletion by the
//! owner, and rows deleted out of band, on every replica, raced against sign-ins and refreshes.

use std::time::Duration;

use sea_orm::{ConnectionTrait, Statement};

use crate::kit::{internals::INVALID_CREDENTIALS, *};

/// Registers an account and signs it in (a session of its own, not registration's).
async fn new_account(app: &TestApp, username: &str, password: &str) -> Actor {
    app.user_with(username, password).await;
    app.sign_in(username, password).await
}

/// Registers an account, has `admin` make it an admin, and signs it in again (the promotion
/// ended the tokens it had).
async fn new_admin(app: &TestApp, admin: &Actor, username: &str, password: &str) -> Actor {
    let account = new_account(app, username, password).await;
    admin
        .set_user_role(account.id(), Role::Admin)
        .await
        .assert_ok();
    account.sign_in_again().await
}

/// Asserts that a session is over everywhere: its token is refused here at once and on the
/// other replica within a second, and then its refresh token is refused.
async fn ended_everywhere(caller: &Actor, replica: &Replica, what: &str) {
    assert!(
        !caller.works().await,
        "{what}: the replica that made the change still accepts the token"
    );
    let took = within(Duration::from_secs(1), async || {
        !caller.on(replica).works().await
    })
    .await;
    assert!(
        took.is_some(),
        "{what}: the other replica still accepts the token after 1 s"
    );
    let r = caller.refresh_anonymously().await;
    assert_eq!(r.codes(), ["UNAUTHENTICATED"], "{what}: {r}");
}

/// Asserts that a token is refused on both replicas within a second (`what` says when).
async fn dead_on_both_within_a_second(caller: &Actor, replica: &Replica, what: &str) {
    for (server, caller) in [
        ("this replica", caller.clone()),
        ("the other", caller.on(replica)),
    ] {
        let took = within(Duration::from_secs(1), async || !caller.works().await).await;
        assert!(
            took.is_some(),
            "{server} still accepts the token 1 s after {what}"
        );
    }
}

async fn refresh(app: &TestApp, token: &str) -> Response<AuthPayload> {
    app.anonymous().refresh(token).await
}

/// The number of admins who may still sign in.
async fn active_admins(app: &TestApp) -> i64 {
    app.sql_count(
        "SELECT COUNT(*) AS n FROM accounts WHERE role = 'admin' AND deactivated_at IS NULL",
        vec![],
    )
    .await
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
    let deleted = txn
        .execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "DELETE FROM accounts WHERE id = $1",
            [uuid::Uuid::parse_str(id).unwrap().into()],
        ))
        .await
        .unwrap();
    assert_eq!(deleted.rows_affected(), 1);
    tokio::time::sleep(hold).await;
    during_hold().await;
    txn.commit().await.unwrap();
    db.close().await.unwrap();
}

#[tokio::test]
async fn a_deactivated_account_loses_every_token_on_every_replica_and_cannot_sign_in() {
    let app = TestApp::spawn().await;
    let replica = app.replica().await;
    let admin = app.admin().await;
    let user = new_account(&app, "drifter", "drifter passphrase 1").await;
    let other_device = user.sign_in_again().await;
    assert!(user.on(&replica).works().await);

    let deactivated = admin.deactivate_account(user.id()).await.ok();
    assert_eq!(deactivated.username, "drifter");
    assert!(deactivated.deactivated_at.is_some());

    for (what, caller) in [("this device", &user), ("another device", &other_device)] {
        ended_everywhere(caller, &replica, what).await;
    }

    // The right password gets exactly the answer a wrong one gets.
    let right = app
        .anonymous()
        .login("drifter", "drifter passphrase 1")
        .await;
    let wrong = app.anonymous().login("drifter", "not the passphrase").await;
    assert_eq!(right.codes(), ["UNAUTHENTICATED"], "{right}");
    assert_eq!(right.error().message, INVALID_CREDENTIALS);
    assert_eq!(right.errors, wrong.errors);
    assert!(right.raw_data().is_null() || right.raw_data()["login"].is_null());

    // Admins see who is deactivated; deactivating twice changes nothing.
    let listed = admin.users(Page::first(100)).await.ok();
    let drifter = listed
        .nodes
        .iter()
        .find(|n| n.username == "drifter")
        .unwrap();
    assert!(drifter.deactivated_at.is_some(), "{listed:?}");
    let again = admin.deactivate_account(user.id()).await.ok();
    assert_eq!(again.deactivated_at, deactivated.deactivated_at);

    // Reactivated, it signs in anew; what it held before stays dead.
    let reactivated = admin.reactivate_account(user.id()).await.ok();
    assert!(reactivated.deactivated_at.is_none());
    let back = app.sign_in("drifter", "drifter passphrase 1").await;
    assert!(back.on(&replica).works().await);
    user.assert_ended("a deactivation").await;

    let r = admin
        .deactivate_account("01890000-0000-7000-8000-000000000000")
        .await;
    assert_eq!(r.codes(), ["NOT_FOUND"], "{r}");
}

#[tokio::test]
async fn the_last_active_admin_can_be_neither_deactivated_nor_demoted_nor_deleted() {
    let app = TestApp::spawn().await;
    let first = app.admin().await;
    let r = first.deactivate_account(first.id()).await;
    assert_eq!(r.codes(), ["CONFLICT"], "{r}");
    assert_eq!(r.error().field(), Some("userId"));
    let r = first.delete_account(ADMIN_PASSWORD).await;
    assert_eq!(r.codes(), ["CONFLICT"], "{r}");
    assert!(
        first.works().await,
        "a refused change took the admin's token"
    );

    // A deactivated admin does not count: the active one is still the last.
    let second = new_account(&app, "deputy", "deputy passphrase 77").await;
    first
        .set_user_role(second.id(), Role::Admin)
        .await
        .assert_ok();
    first.deactivate_account(second.id()).await.assert_ok();
    let r = first.set_user_role(first.id(), Role::User).await;
    assert_eq!(r.codes(), ["CONFLICT"], "{r}");
    let r = first.deactivate_account(first.id()).await;
    assert_eq!(r.codes(), ["CONFLICT"], "{r}");
    assert_eq!(active_admins(&app).await, 1);

    // With the deputy back, the first admin may go.
    first.reactivate_account(second.id()).await.assert_ok();
    first.deactivate_account(first.id()).await.assert_ok();
    assert_eq!(active_admins(&app).await, 1);
    assert!(!first.works().await);

    // `create-admin` on a deactivated account is the operator's way back in.
    let back = app.admin().await;
    assert_eq!(back.id(), first.id());
    assert_eq!(active_admins(&app).await, 2);
}

/// Two admins removing each other at once (deactivation, demotion, deletion, in every
/// pairing): one of them stays an active admin, every round, on both databases.
#[tokio::test]
async fn admins_removing_each_other_at_once_always_leave_one() {
    let app = TestApp::spawn().await;
    let mut main = app.admin().await;
    let ops = ["deactivate", "demote", "delete"];
    for round in 0..12 {
        let name = format!("rival{round}");
        let password = format!("rival passphrase {round} x");
        let rival = new_account(&app, &name, &password).await;
        main.set_user_role(rival.id(), Role::Admin)
            .await
            .assert_ok();
        // Only the two of them are active admins now.
        assert_eq!(active_admins(&app).await, 2);
        let main_op = ops[round % 3];
        let rival_op = ops[(round / 3) % 3];
        let remove = async |actor: &Actor, target: &Actor, op: &str, password: &str| match op {
            "deactivate" => actor.deactivate_account(target.id()).await.into_untyped(),
            "demote" => actor
                .set_user_role(target.id(), Role::User)
                .await
                .into_untyped(),
            // Deleting removes the actor itself.
            _ => actor.delete_account(password).await.into_untyped(),
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
            for code in r.codes() {
                assert!(
                    ["CONFLICT", "UNAUTHENTICATED", "FORBIDDEN"].contains(&code),
                    "round {round}: {r}"
                );
            }
        }
        // Put things back: "admin" the only active admin again, the rival a plain user.
        let is_active_admin = async |id: &str| {
            app.stored_account(id)
                .await
                .map(|(role, deactivated)| role == "admin" && !deactivated)
        };
        if is_active_admin(main.id()).await != Some(true) {
            // The rival won, so it is the active admin now.
            let rival_now = app.sign_in(&name, &password).await;
            if is_active_admin(main.id()).await == Some(false) {
                rival_now.reactivate_account(main.id()).await.assert_ok();
            }
            // Promotes "admin" again, or creates it if it deleted itself.
            main = app.admin().await;
        }
        if is_active_admin(rival.id()).await.is_some() {
            main.set_user_role(rival.id(), Role::User).await.assert_ok();
        }
    }
}

#[tokio::test]
async fn deleting_ones_account_needs_the_password_and_ends_everything_everywhere() {
    let app = TestApp::spawn().await;
    let replica = app.replica().await;
    let main = app.admin().await;
    let leaving = new_account(&app, "leaving", "leaving passphrase 9").await;
    let other_device = leaving.sign_in_again().await;

    let r = leaving.delete_account("not my passphrase").await;
    assert_eq!(r.codes(), ["BAD_USER_INPUT"], "{r}");
    assert_eq!(r.error().field(), Some("currentPassword"));
    assert!(
        leaving.on(&replica).works().await,
        "a refused deletion ended the account"
    );

    let r = leaving.delete_account("leaving passphrase 9").await;
    assert!(r.ok(), "{r}");
    for (what, caller) in [("this device", &leaving), ("another device", &other_device)] {
        ended_everywhere(caller, &replica, what).await;
    }
    let r = app
        .anonymous()
        .login("leaving", "leaving passphrase 9")
        .await;
    assert_eq!(r.error().message, INVALID_CREDENTIALS, "{r}");
    assert!(app.stored_account(leaving.id()).await.is_none());

    // The name is free again, and the new account is a different one.
    let newcomer = new_account(&app, "leaving", "another passphrase 10").await;
    assert_ne!(newcomer.id(), leaving.id());
    assert!(!leaving.works().await);

    // An admin who leaves takes nothing with it: its products stay, without a creator.
    let deputy = new_admin(&app, &main, "deputy", "deputy passphrase 77").await;
    let product = deputy.add_product("Orphan", "3.50").await.id;
    deputy
        .delete_account("deputy passphrase 77")
        .await
        .assert_ok();
    let orphan = main.product_with_creator(&product).await.ok().unwrap();
    assert_eq!(orphan.product.name, "Orphan");
    assert!(orphan.created_by.is_none(), "{orphan:?}");
}

/// A row deleted by hand in SQL (no mutation, no revocation written by the server): its
/// tokens stop working on every replica within a second all the same.
#[tokio::test]
async fn a_token_whose_account_was_deleted_out_of_band_is_revoked() {
    let app = TestApp::spawn().await;
    let replica = app.replica().await;
    let gone = new_account(&app, "vanishing", "vanishing passphrase 3").await;
    assert!(gone.on(&replica).works().await);
    delete_by_hand(&app, gone.id(), Duration::ZERO, async || {}).await;
    dead_on_both_within_a_second(&gone, &replica, "its account was deleted").await;
    assert_eq!(
        refresh(&app, gone.refresh_token()).await.codes(),
        ["UNAUTHENTICATED"]
    );
}

/// Deactivation and deletion raced against the same account's refreshes, sign-ins and password
/// changes, many times: once the change has returned, nothing issued in the race works a
/// second later.
#[tokio::test]
async fn nothing_issued_while_an_account_goes_away_survives_it() {
    let app = TestApp::spawn().await;
    let replica = app.replica().await;
    let main = app.admin().await;
    for round in 0..16 {
        let name = format!("racer{round}");
        let password = format!("racer passphrase {round} y");
        let racer = new_account(&app, &name, &password).await;
        let deleting = round % 2 == 1;
        let change = async || {
            if deleting {
                racer.delete_account(&password).await.assert_ok();
            } else {
                main.deactivate_account(racer.id()).await.assert_ok();
            }
        };
        // The change lands at different points of the sign-in (before its password check, during
        // the hashing, as its session is stored) and of the refresh.
        let delay = Duration::from_millis((round % 8) as u64 * 8);
        let new_password = format!("{password} changed");
        let anonymous = app.anonymous();
        let (_, refreshed, signed, changed) = tokio::join!(
            async {
                tokio::time::sleep(delay).await;
                change().await
            },
            async {
                tokio::time::sleep(delay / 2).await;
                refresh(&app, racer.refresh_token()).await
            },
            anonymous.login(&name, &password),
            // Verifying the current password takes a hash's time: the deactivation lands inside
            // it. (Deletion shares the password change's one-at-a-time lock: not raced.)
            async {
                if deleting {
                    return None;
                }
                Some(racer.change_password(&password, &new_password).await)
            },
        );
        let mut issued = vec![racer.clone()];
        for r in [Some(refreshed), Some(signed), changed]
            .into_iter()
            .flatten()
        {
            if r.codes().is_empty() {
                issued.push(racer.with_session(r.ok()));
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        for caller in &issued {
            for (server, caller) in [
                ("this replica", caller.clone()),
                ("the other", caller.on(&replica)),
            ] {
                assert!(
                    !caller.works().await,
                    "round {round} ({}): a token issued in the race works on {server}",
                    if deleting { "delete" } else { "deactivate" }
                );
            }
            let r = refresh(&app, caller.refresh_token()).await;
            assert_eq!(r.codes(), ["UNAUTHENTICATED"], "round {round}: {r}");
        }
    }
}

/// An account deleted by hand in a transaction left open for longer than the replicas' poll
/// overlap (5 s): its revocation is stamped before the commit, yet read all the same.
#[tokio::test]
async fn an_account_deleted_in_a_long_transaction_loses_its_tokens_at_the_commit() {
    let app = TestApp::spawn().await;
    let replica = app.replica().await;
    let admin = app.admin().await;
    let gone = new_account(&app, "lingering", "lingering passphrase 4").await;
    delete_by_hand(&app, gone.id(), Duration::from_secs(7), async || {
        assert!(gone.on(&replica).works().await, "revoked before the commit");
    })
    .await;
    dead_on_both_within_a_second(&gone, &replica, "the commit").await;
    // An admin's token is no different.
    let deputy = new_admin(&app, &admin, "deputy", "deputy passphrase 77").await;
    delete_by_hand(&app, deputy.id(), Duration::from_secs(6), async || {}).await;
    let took = within(Duration::from_secs(1), async || {
        !deputy.on(&replica).works().await
    })
    .await;
    assert!(took.is_some(), "a deleted admin's token still works");
}

/// An admin deleting itself while its own creates are in flight on two replicas: each create
/// is stored, or refused as UNAUTHENTICATED, never an internal error.
#[tokio::test]
async fn creates_racing_their_admins_deletion_are_stored_or_refused_cleanly() {
    let app = TestApp::spawn().await;
    let replica = app.replica().await;
    let main = app.admin().await;
    for round in 0..6 {
        let name = format!("fleeting{round}");
        let password = format!("fleeting passphrase {round} z");
        let fleeting = new_admin(&app, &main, &name, &password).await;
        let creates: Vec<_> = (0..12)
            .map(|i| {
                let caller = if i % 2 == 0 {
                    fleeting.clone()
                } else {
                    fleeting.on(&replica)
                };
                let product = NewProduct::new(&format!("r{round}-{i}"), "1.00");
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(i * 5)).await;
                    caller.create_product(&product).await
                })
            })
            .collect();
        fleeting.delete_account(&password).await.assert_ok();
        for create in creates {
            let r = create.await.unwrap();
            let codes = r.codes();
            assert!(
                codes.is_empty() || codes == ["UNAUTHENTICATED"],
                "round {round}: {r}"
            );
        }
    }
}
