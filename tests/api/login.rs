use crate::kit::*;

#[tokio::test]
async fn unknown_user_and_wrong_password_get_the_same_error() {
    let app = TestApp::spawn().await;
    app.user_with("known", "known passphrase").await;
    let anonymous = app.anonymous();

    let wrong_password = anonymous.login("known", "not the passphrase").await;
    let unknown_user = anonymous.login("nobody", "not the passphrase").await;
    let malformed_user = anonymous.login("x", "not the passphrase").await;
    for r in [&wrong_password, &unknown_user, &malformed_user] {
        assert_eq!(r.codes(), ["UNAUTHENTICATED"], "{r}");
        assert!(r.raw_data().is_null(), "{r}");
    }
    assert_eq!(wrong_password.errors, unknown_user.errors);
    assert_eq!(wrong_password.errors, malformed_user.errors);
    assert_eq!(
        wrong_password.error().message,
        "invalid username or password"
    );
}

#[tokio::test]
async fn login_matches_usernames_ignoring_case_and_passwords_exactly() {
    let app = TestApp::spawn().await;
    app.user_with("MixedCase", "Exact Passphrase ü").await;
    let signed_in = app
        .anonymous()
        .login("mixedcase", "Exact Passphrase ü")
        .await
        .ok();
    assert_eq!(signed_in.account.username, "MixedCase");
    assert_eq!(signed_in.token_type, "Bearer");
    assert_eq!(signed_in.expires_in, 3600);
    for wrong in [
        "exact passphrase ü",
        "Exact Passphrase ü ",
        " Exact Passphrase ü",
        "Exact Passphrase u",
    ] {
        let r = app.anonymous().login("MixedCase", wrong).await;
        assert_eq!(r.codes(), ["UNAUTHENTICATED"], "{wrong:?}");
    }
}

#[tokio::test]
async fn responses_never_contain_the_password_or_its_hash() {
    let app = TestApp::spawn().await;
    let password = "a secret nobody sees";
    let r = app.anonymous().register("secretive", password).await;
    r.assert_ok();
    assert!(!r.text.contains(password));
    assert!(!r.text.contains("$argon2"));
    let admin = app.admin().await;
    let r = admin.users(Page::first(100)).await;
    r.assert_ok();
    assert!(!r.text.contains("$argon2"));
}
