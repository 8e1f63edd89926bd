use std::{fs, time::Duration};

use crate::kit::{internals::PolicySource, *};

#[tokio::test]
async fn behaviour_follows_the_policy_file_not_the_code() {
    let dir = policy_folder_with("p, role:user, product, create");
    let app = TestApp::builder().policy_dir(dir.path()).spawn().await;
    assert_eq!(
        app.policy_source(),
        PolicySource::Folder(dir.path().to_owned())
    );

    let user = app.user_with("maker", "maker passphrase").await;
    let product = user.add_product("User-made", "3.00").await;
    assert_eq!(product.name, "User-made");
    // What the file does not grant is still refused.
    let r = user.users(Page::default()).await;
    assert_eq!(r.codes(), ["FORBIDDEN"]);
}

#[tokio::test]
async fn a_policy_can_open_a_field_to_anonymous_callers() {
    let dir = policy_folder_with("p, role:anonymous, product, read");
    let app = TestApp::builder().policy_dir(dir.path()).spawn().await;
    let anonymous = app.anonymous();
    anonymous.product_count().await;
    let r = anonymous.account().await;
    assert_eq!(r.codes(), ["UNAUTHENTICATED"]);
}

#[tokio::test]
async fn revoking_a_grant_in_the_file_takes_it_away_from_admins() {
    let policy = shipped_policy()
        .lines()
        .filter(|line| !line.contains("product, delete"))
        .collect::<Vec<_>>()
        .join("\n");
    let dir = policy_folder(&policy);
    let app = TestApp::builder().policy_dir(dir.path()).spawn().await;
    let admin = app.admin().await;
    let id = admin.add_product("Permanent", "1").await.id;
    let r = admin.delete_product(&id).await;
    assert_eq!(r.codes(), ["FORBIDDEN"]);
    assert_eq!(admin.product_count().await, 1);
}

/// Whether the policy in force lets `actor` create products, as `myPermissions` says.
async fn may_create_products(actor: &Actor) -> bool {
    let granted = actor.my_permissions().await.ok();
    granted
        .iter()
        .any(|p| p.object == "product" && p.action == "create")
}

/// Editing the policy files of a running server puts the new policy in force without a signal
/// or a restart; a broken edit is refused, the policy in force stays, and the next good edit
/// is taken again.
#[tokio::test]
async fn edited_policy_files_take_effect_while_the_server_runs_and_broken_ones_do_not() {
    let dir = policy_folder(&shipped_policy());
    let every = Duration::from_millis(50);
    let app = TestApp::builder()
        .policy_dir(dir.path())
        .policy_poll(every)
        .spawn()
        .await;
    let user = app.user_with("maker", "maker passphrase").await;
    let shipped_version = app.policy_version();
    assert!(!may_create_products(&user).await);
    let refused = user.create_product(&NewProduct::new("Early", "1.00")).await;
    assert_eq!(refused.codes(), ["FORBIDDEN"]);

    let granting = format!("{}\np, role:user, product, create\n", shipped_policy());
    fs::write(dir.path().join("policy.csv"), &granting).unwrap();
    let waited = within(Duration::from_secs(10), async || {
        may_create_products(&user).await
    })
    .await;
    assert!(waited.is_some(), "the edited policy never took effect");
    assert_eq!(
        user.add_product("User-made", "3.00").await.name,
        "User-made"
    );
    let granting_version = app.policy_version();
    assert_ne!(granting_version, shipped_version);
    let ready = app.get("/readyz").await.text().await.unwrap();
    assert_eq!(ready, format!("ready\npolicy {granting_version}\n"));

    // A typo the code cannot enforce: refused, and the policy in force stays for many polls.
    fs::write(
        dir.path().join("policy.csv"),
        format!("{granting}p, role:user, prodcut, delete\n"),
    )
    .unwrap();
    tokio::time::sleep(every * 20).await;
    assert_eq!(app.policy_version(), granting_version);
    assert!(may_create_products(&user).await);

    // The next good edit is taken: the grant goes away again.
    fs::write(dir.path().join("policy.csv"), shipped_policy()).unwrap();
    let waited = within(Duration::from_secs(10), async || {
        !may_create_products(&user).await
    })
    .await;
    assert!(
        waited.is_some(),
        "the policy after the refused one never took effect"
    );
    assert_eq!(app.policy_version(), shipped_version);
}

#[tokio::test]
async fn a_missing_or_broken_policy_folder_stops_start_up() {
    let db = TestDb::new().await;
    let err = TestApp::builder()
        .policy_dir(std::path::Path::new("/nonexistent/policies"))
        .start_error(&db)
        .await
        .expect("refused");
    assert!(err.contains("policy"), "{err}");

    let broken = tempfile::tempdir().unwrap();
    fs::write(
        broken.path().join("model.conf"),
        "[request_definition]\nr = sub, obj, act\n",
    )
    .unwrap();
    fs::write(
        broken.path().join("policy.csv"),
        "p, role:user, product, read\n",
    )
    .unwrap();
    let err = TestApp::builder()
        .policy_dir(broken.path())
        .start_error(&db)
        .await
        .expect("refused");
    assert!(err.contains("policy"), "{err}");
}

/// Policies Casbin would accept but the code cannot enforce as meant, each with the line the
/// refusal must name (0: the problem is the file as a whole).
fn refused_policies() -> Vec<(&'static str, String, usize)> {
    let shipped = shipped_policy();
    let without_set_role = shipped
        .lines()
        .filter(|line| !line.contains("user, set_role"))
        .collect::<Vec<_>>()
        .join("\n");
    let lines = shipped.lines().count();
    vec![
        ("empty", String::new(), 0),
        ("only comments", "# nothing granted\n\n".to_owned(), 0),
        (
            "unknown object",
            format!("{shipped}\np, role:user, prodcut, read\n"),
            lines + 2,
        ),
        (
            "unknown action",
            format!("{shipped}\np, role:user, product, destroy\n"),
            lines + 2,
        ),
        (
            "subject without role:",
            format!("{shipped}\np, alice, product, read\n"),
            lines + 2,
        ),
        (
            "inheritance from a non-role",
            format!("{shipped}\ng, alice, role:admin\n"),
            lines + 2,
        ),
        ("no role may manage roles", without_set_role, 0),
    ]
}

fn assert_names_file_and_line(message: &str, dir: &std::path::Path, line: usize, case: &str) {
    let file = dir.join("policy.csv").display().to_string();
    assert!(
        message.contains(&file),
        "{case}: no file named in {message}"
    );
    if line > 0 {
        assert!(
            message.contains(&format!("{file} line {line}")),
            "{case}: line {line} not named in {message}"
        );
    }
}

#[tokio::test]
async fn a_policy_the_code_cannot_enforce_is_refused_at_start_naming_file_and_line() {
    let db = TestDb::new().await;
    for (case, policy, line) in refused_policies() {
        let dir = policy_folder(&policy);
        let err = TestApp::builder()
            .policy_dir(dir.path())
            .start_error(&db)
            .await
            .expect(case);
        assert_names_file_and_line(&err, dir.path(), line, case);
    }
}

#[test]
fn policy_check_refuses_the_same_policies_naming_file_and_line() {
    for (case, policy, line) in refused_policies() {
        let dir = policy_folder(&policy);
        let folder = dir.path().display().to_string();
        let out = storefront(&["policy", "check", "--dir", &folder])
            .env_remove("POLICY_DIR")
            .run();
        assert!(!out.status.success(), "{case}: accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_names_file_and_line(&stderr, dir.path(), line, case);
    }
}
