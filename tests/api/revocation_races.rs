//! Revocation is atomic with the change that causes it (issue 9, item 3): each pair that raced
//! before is run many times, and no credential issued from the old state works once the
//! mutation has returned.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use crate::kit::*;

const ROUNDS: usize = 30;

/// The session an answer carrying an `AuthPayload` started, or `None` when it was refused as
/// UNAUTHENTICATED.
fn session_of(app: &TestApp, r: &Response<AuthPayload>) -> Option<Actor> {
    match r.codes().as_slice() {
        [] => Some(app.anonymous().with_session(r.ok())),
        ["UNAUTHENTICATED"] => None,
        other => panic!("unexpected {other:?}: {r}"),
    }
}

async fn login(app: &TestApp, username: &str, password: &str) -> Option<Actor> {
    session_of(app, &app.anonymous().login(username, password).await)
}

async fn refresh(app: &TestApp, token: &str) -> Option<Actor> {
    session_of(app, &app.anonymous().refresh(token).await)
}

/// A demoted admin who keeps refreshing while the demotion runs keeps no working admin token.
#[tokio::test]
async fn a_demotion_racing_refreshes_leaves_no_working_admin_token() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let deputy = app.user_with("deputy", "deputy passphrase").await;
    for round in 0..ROUNDS {
        admin
            .set_user_role(deputy.id(), Role::Admin)
            .await
            .assert_ok();
        let first = login(&app, "deputy", "deputy passphrase").await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let refresher = {
            let (app, stop) = (&app, stop.clone());
            async move {
                let mut issued = vec![first.token().to_owned()];
                let mut current = first;
                // Until the demotion has returned, and a few refreshes after.
                let mut after_stop = 0;
                while after_stop < 3 {
                    if stop.load(Ordering::Acquire) {
                        after_stop += 1;
                    }
                    match refresh(app, current.refresh_token()).await {
                        Some(next) => {
                            issued.push(next.token().to_owned());
                            current = next;
                        }
                        None => panic!("the session must survive a role change"),
                    }
                }
                issued
            }
        };
        let demotion = async {
            tokio::time::sleep(std::time::Duration::from_millis((round % 5) as u64 * 3)).await;
            admin
                .set_user_role(deputy.id(), Role::User)
                .await
                .assert_ok();
            stop.store(true, Ordering::Release);
        };
        let (issued, ()) = tokio::join!(refresher, demotion);
        for token in issued {
            if claims_of(&token)["role"] == "admin" {
                assert!(
                    !app.bearer(&token).works().await,
                    "round {round}: an admin token outlived the demotion"
                );
            }
        }
    }
}

/// A sign-in with the old password that is in flight while the password changes keeps no
/// session: refused, or ended by the change.
#[tokio::test]
async fn sign_ins_racing_a_password_change_keep_no_session() {
    let app = TestApp::spawn().await;
    for round in 0..ROUNDS {
        // An account per round: the sign-ins that lose the race are failures, and from one
        // address five of them in a row would lock the username (tests/api/sign_in_lock.rs).
        let username = format!("changer{round}");
        let (old, new) = ("changer passphrase 0", "changer passphrase 1");
        app.user_with(&username, old).await;
        let session = login(&app, &username, old).await.unwrap();
        let change = session.change_password(old, new);
        let sign_ins = async {
            let mut sessions = Vec::new();
            for _ in 0..3 {
                if let Some(signed_in) = login(&app, &username, old).await {
                    sessions.push(signed_in);
                }
            }
            sessions
        };
        let (changed, old_sessions) = tokio::join!(change, sign_ins);
        let session = session.with_session(changed.ok());
        for old_session in old_sessions {
            let what = format!("round {round}: an old-password session after the change");
            old_session.assert_ended(&what).await;
        }
        assert!(session.works().await);
    }
}

/// A refresh racing `logoutAll` gets nothing that works once `logoutAll` has returned.
#[tokio::test]
async fn refreshes_racing_logout_all_get_nothing_that_works() {
    let app = TestApp::spawn().await;
    app.user_with("leaver", "leaver passphrase").await;
    for round in 0..ROUNDS {
        let ending = login(&app, "leaver", "leaver passphrase").await.unwrap();
        let refreshing = login(&app, "leaver", "leaver passphrase").await.unwrap();
        let logout_all = ending.logout_all();
        let refreshes = async {
            let mut issued = Vec::new();
            let mut current = refreshing;
            for _ in 0..3 {
                match refresh(&app, current.refresh_token()).await {
                    Some(next) => {
                        issued.push(next.clone());
                        current = next;
                    }
                    None => break,
                }
            }
            issued
        };
        let (ended, issued) = tokio::join!(logout_all, refreshes);
        ended.assert_ok();
        for session in issued {
            let what = format!("round {round}: a refreshed session after logoutAll");
            session.assert_ended(&what).await;
        }
    }
}
