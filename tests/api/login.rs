use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn unknown_user_and_wrong_password_get_the_same_error() {
    let app = spawn_app().await;
    app.register("known", "known passphrase").await;

    let wrong_password = app.login("known", "not the passphrase").await;
    let unknown_user = app.login("nobody", "not the passphrase").await;
    let malformed_user = app.login("x", "not the passphrase").await;
    for r in [&wrong_password, &unknown_user, &malformed_user] {
        assert_eq!(codes(r), ["UNAUTHENTICATED"], "{r}");
        assert!(r["data"].is_null(), "{r}");
    }
    assert_eq!(wrong_password["errors"], unknown_user["errors"]);
    assert_eq!(wrong_password["errors"], malformed_user["errors"]);
    assert_eq!(
        wrong_password["errors"][0]["message"],
        "invalid username or password"
    );
}

#[tokio::test]
async fn login_matches_usernames_ignoring_case_and_passwords_exactly() {
    let app = spawn_app().await;
    app.register("MixedCase", "Exact Passphrase ü").await;
    let r = app.login("mixedcase", "Exact Passphrase ü").await;
    assert_no_errors(&r);
    assert_eq!(r["data"]["login"]["account"]["username"], "MixedCase");
    assert_eq!(r["data"]["login"]["tokenType"], "Bearer");
    assert_eq!(r["data"]["login"]["expiresIn"], 3600);
    for wrong in [
        "exact passphrase ü",
        "Exact Passphrase ü ",
        " Exact Passphrase ü",
        "Exact Passphrase u",
    ] {
        let r = app.login("MixedCase", wrong).await;
        assert_eq!(codes(&r), ["UNAUTHENTICATED"], "{wrong:?}");
    }
}

#[tokio::test]
async fn responses_never_contain_the_password_or_its_hash() {
    let app = spawn_app().await;
    let password = "a secret nobody sees";
    let r = app
        .gql(
            "mutation($p:String!){ register(input:{username:\"secretive\", password:$p}){ accessToken account { id username email role createdAt } } }",
            json!({"p": password}),
            None,
        )
        .await;
    assert_no_errors(&r);
    let text = r.to_string();
    assert!(!text.contains(password));
    assert!(!text.contains("$argon2"));
    let admin = app.admin_token().await;
    let r = app
        .gql(
            "{ users(first: 100) { nodes { id username email role createdAt } } }",
            json!({}),
            Some(&admin),
        )
        .await;
    assert_no_errors(&r);
    assert!(!r.to_string().contains("$argon2"));
}
