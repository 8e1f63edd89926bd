//! Revocation is atomic with the change that causes it (issue 9, item 3): each pair that raced
//! before is run many times, and no credential issued from the old state works once the
//! mutation has returned.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use serde_json::{Value, json};

use crate::helpers::*;

const ROUNDS: usize = 30;
const LOGIN: &str = "mutation($u:String!,$p:String!){ login(input:{username:$u,password:$p}){ accessToken refreshToken } }";
const REFRESH: &str =
    "mutation($t:String!){ refreshToken(refreshToken:$t){ accessToken refreshToken } }";

/// An access token and its refresh token.
#[derive(Clone)]
struct Pair {
    access: String,
    refresh: String,
}

impl Pair {
    fn of(payload: &Value) -> Self {
        let token = |name: &str| payload[name].as_str().unwrap().to_owned();
        Pair {
            access: token("accessToken"),
            refresh: token("refreshToken"),
        }
    }
}

async fn login(app: &TestApp, username: &str, password: &str) -> Option<Pair> {
    let r = app
        .gql(LOGIN, json!({"u": username, "p": password}), None)
        .await;
    match codes(&r).as_slice() {
        [] => Some(Pair::of(&r["data"]["login"])),
        [code] if code == "UNAUTHENTICATED" => None,
        other => panic!("unexpected {other:?}: {r}"),
    }
}

async fn refresh(app: &TestApp, token: &str) -> Option<Pair> {
    let r = app.gql(REFRESH, json!({"t": token}), None).await;
    match codes(&r).as_slice() {
        [] => Some(Pair::of(&r["data"]["refreshToken"])),
        [code] if code == "UNAUTHENTICATED" => None,
        other => panic!("unexpected {other:?}: {r}"),
    }
}

/// Whether an access token is accepted.
async fn works(app: &TestApp, access: &str) -> bool {
    let r = app
        .gql("{ account { username } }", json!({}), Some(access))
        .await;
    match codes(&r).as_slice() {
        [] => true,
        [code] if code == "UNAUTHENTICATED" => false,
        other => panic!("unexpected {other:?}: {r}"),
    }
}

async fn set_role(app: &TestApp, admin: &str, user_id: &str, role: &str) {
    let r = app
        .gql(
            "mutation($id:ID!,$r:Role!){ setUserRole(userId:$id, role:$r){ role } }",
            json!({"id": user_id, "r": role}),
            Some(admin),
        )
        .await;
    assert_no_errors(&r);
}

async fn register(app: &TestApp, username: &str, password: &str) -> String {
    let r = app
        .gql(
            "mutation($u:String!,$p:String!){ register(input:{username:$u,password:$p}){ account { id } } }",
            json!({"u": username, "p": password}),
            None,
        )
        .await;
    assert_no_errors(&r);
    r["data"]["register"]["account"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A demoted admin who keeps refreshing while the demotion runs keeps no working admin token.
#[tokio::test]
async fn a_demotion_racing_refreshes_leaves_no_working_admin_token() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let deputy_id = register(&app, "deputy", "deputy passphrase").await;
    for round in 0..ROUNDS {
        set_role(&app, &admin, &deputy_id, "ADMIN").await;
        let first = login(&app, "deputy", "deputy passphrase").await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let refresher = {
            let (app, stop) = (&app, stop.clone());
            async move {
                let mut issued = vec![first.access.clone()];
                let mut current = first;
                // Until the demotion has returned, and a few refreshes after.
                let mut after_stop = 0;
                while after_stop < 3 {
                    if stop.load(Ordering::Acquire) {
                        after_stop += 1;
                    }
                    match refresh(app, &current.refresh).await {
                        Some(next) => {
                            issued.push(next.access.clone());
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
            set_role(&app, &admin, &deputy_id, "USER").await;
            stop.store(true, Ordering::Release);
        };
        let (issued, ()) = tokio::join!(refresher, demotion);
        for token in issued {
            if claims_of(&token)["role"] == "admin" {
                assert!(
                    !works(&app, &token).await,
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
    let app = spawn_app().await;
    for round in 0..ROUNDS {
        // An account per round: the sign-ins that lose the race are failures, and from one
        // address five of them in a row would lock the username (tests/api/sign_in_lock.rs).
        let username = format!("changer{round}");
        let (old, new) = ("changer passphrase 0", "changer passphrase 1");
        register(&app, &username, old).await;
        let session = login(&app, &username, old).await.unwrap();
        let change = app.gql(
            "mutation($c:String!,$n:String!){ changePassword(currentPassword:$c, newPassword:$n){ accessToken refreshToken } }",
            json!({"c": old, "n": new}),
            Some(&session.access),
        );
        let sign_ins = async {
            let mut sessions = Vec::new();
            for _ in 0..3 {
                if let Some(pair) = login(&app, &username, old).await {
                    sessions.push(pair);
                }
            }
            sessions
        };
        let (changed, old_sessions) = tokio::join!(change, sign_ins);
        assert_no_errors(&changed);
        let session = Pair::of(&changed["data"]["changePassword"]);
        for pair in old_sessions {
            assert!(
                !works(&app, &pair.access).await,
                "round {round}: an old-password session's access token outlived the change"
            );
            assert!(
                refresh(&app, &pair.refresh).await.is_none(),
                "round {round}: an old-password session outlived the change"
            );
        }
        assert!(works(&app, &session.access).await);
    }
}

/// A refresh racing `logoutAll` gets nothing that works once `logoutAll` has returned.
#[tokio::test]
async fn refreshes_racing_logout_all_get_nothing_that_works() {
    let app = spawn_app().await;
    register(&app, "leaver", "leaver passphrase").await;
    for round in 0..ROUNDS {
        let ending = login(&app, "leaver", "leaver passphrase").await.unwrap();
        let refreshing = login(&app, "leaver", "leaver passphrase").await.unwrap();
        let logout_all = app.gql("mutation { logoutAll }", json!({}), Some(&ending.access));
        let refreshes = async {
            let mut issued = Vec::new();
            let mut current = refreshing;
            for _ in 0..3 {
                match refresh(&app, &current.refresh).await {
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
        assert_no_errors(&ended);
        for pair in issued {
            assert!(
                !works(&app, &pair.access).await,
                "round {round}: a refreshed access token outlived logoutAll"
            );
            assert!(
                refresh(&app, &pair.refresh).await.is_none(),
                "round {round}: a refreshed session outlived logoutAll"
            );
        }
    }
}
