//! The Casbin adapter over the database (issue 12, database-managed policy): rules stored
//! through a real `Enforcer`, on a database of the test's own (SQLite file, or PostgreSQL when
//! `TEST_DATABASE_URL` is set), and the version replicas poll.

use std::collections::BTreeSet;

use casbin::{CoreApi, DefaultModel, Enforcer, Filter, MgmtApi, StringAdapter};
use sea_orm::ConnectionTrait;

use crate::kit::{
    internals::{Db, DbAdapter, connect_and_migrate, policy_store},
    *,
};

/// A fresh database, migrated, and its pools.
async fn database() -> (TestDb, Db) {
    let test_db = TestDb::new().await;
    let db = connect_and_migrate(&test_db.url).await.unwrap();
    (test_db, db)
}

/// A plain RBAC model over `(sub, obj, act)`: the adapter stores whatever rules a model has,
/// and these tests are about the storing (the server's own model, with ownership, is tested
/// through the server).
const RBAC_MODEL: &str = "[request_definition]\nr = sub, obj, act\n\
    [policy_definition]\np = sub, obj, act\n[role_definition]\ng = _, _\n\
    [policy_effect]\ne = some(where (p.eft == allow))\n\
    [matchers]\nm = g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act\n";

async fn model() -> DefaultModel {
    DefaultModel::from_str(RBAC_MODEL).await.unwrap()
}

/// An enforcer over the rules stored in `db`, loaded now.
async fn stored_enforcer(db: &Db) -> Enforcer {
    Enforcer::new(model().await, DbAdapter::new(db.clone()))
        .await
        .unwrap()
}

/// An enforcer over `policy` text, as the policy files give it.
async fn text_enforcer(policy: &str) -> Enforcer {
    Enforcer::new(model().await, StringAdapter::new(policy))
        .await
        .unwrap()
}

async fn version(db: &Db) -> i64 {
    policy_store::version(db.reader()).await.unwrap()
}

async fn export(db: &Db) -> String {
    policy_store::export(db.reader()).await.unwrap()
}

/// Every rule an enforcer holds, `p` and `g` alike.
fn rules_of(e: &Enforcer) -> BTreeSet<Vec<String>> {
    let mut rules = BTreeSet::new();
    for rule in e.get_policy() {
        rules.insert([vec!["p".to_owned()], rule].concat());
    }
    for rule in e.get_grouping_policy() {
        rules.insert([vec!["g".to_owned()], rule].concat());
    }
    rules
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

/// Every decision over the subjects, objects and actions `e` names (and some it does not)
/// that differs from `expected`'s.
fn differing_decisions(e: &Enforcer, expected: &Enforcer) -> Vec<(String, String, String)> {
    let mut subjects = BTreeSet::from(["role:anonymous".to_owned(), "role:nobody".to_owned()]);
    let mut objects = BTreeSet::from(["nothing".to_owned()]);
    let mut actions = BTreeSet::from(["nothing".to_owned()]);
    for rule in expected.get_policy().into_iter().chain(e.get_policy()) {
        subjects.insert(rule[0].clone());
        objects.insert(rule[1].clone());
        actions.insert(rule[2].clone());
    }
    for rule in expected.get_grouping_policy() {
        subjects.extend(rule);
    }
    let mut differing = Vec::new();
    for sub in &subjects {
        for obj in &objects {
            for act in &actions {
                let request = (sub.as_str(), obj.as_str(), act.as_str());
                if e.enforce(request).unwrap() != expected.enforce(request).unwrap() {
                    differing.push((sub.clone(), obj.clone(), act.clone()));
                }
            }
        }
    }
    differing
}

async fn count_rules(db: &Db) -> i64 {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT count(*) AS n FROM casbin_rules",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "n").unwrap()
}

#[tokio::test]
async fn the_seeded_policy_decides_as_the_files_do() {
    let (_test_db, db) = database().await;
    let before = version(&db).await;
    assert!(
        policy_store::seed_if_empty(&db, &shipped_policy())
            .await
            .unwrap()
    );
    assert!(version(&db).await > before, "seeding is a change");

    let stored = stored_enforcer(&db).await;
    let files = text_enforcer(&shipped_policy()).await;
    assert_eq!(rules_of(&stored), rules_of(&files));
    assert_eq!(differing_decisions(&stored, &files), []);
    assert!(stored.enforce(("role:admin", "product", "read")).unwrap());
    assert!(!stored.enforce(("role:user", "product", "create")).unwrap());

    // Once rules are stored, seeding stores nothing more, even from another text.
    let seeded = version(&db).await;
    assert!(
        !policy_store::seed_if_empty(&db, "p, role:user, product, create")
            .await
            .unwrap()
    );
    assert_eq!(version(&db).await, seeded);
    assert!(
        !stored_enforcer(&db)
            .await
            .enforce(("role:user", "product", "create"))
            .unwrap()
    );
}

#[tokio::test]
async fn rules_added_and_removed_through_the_enforcer_are_stored_with_a_new_version() {
    let (_test_db, db) = database().await;
    policy_store::seed_if_empty(&db, &shipped_policy())
        .await
        .unwrap();
    let mut e = stored_enforcer(&db).await;

    let before = version(&db).await;
    let editor = strings(&["role:editor", "product", "update"]);
    assert!(e.add_policy(editor.clone()).await.unwrap());
    assert!(
        e.add_grouping_policy(strings(&["role:editor", "role:user"]))
            .await
            .unwrap()
    );
    let added = version(&db).await;
    assert!(added > before);
    assert!(
        export(&db)
            .await
            .contains("p, role:editor, product, update\n")
    );
    assert!(export(&db).await.contains("g, role:editor, role:user\n"));
    // Another replica loading now decides with the new rules.
    let replica = stored_enforcer(&db).await;
    assert!(
        replica
            .enforce(("role:editor", "product", "update"))
            .unwrap()
    );
    assert!(replica.enforce(("role:editor", "product", "read")).unwrap());
    assert!(
        !replica
            .enforce(("role:editor", "product", "delete"))
            .unwrap()
    );

    // Adding a stored rule again is a no-op: `false`, nothing stored, no new version; also
    // from a replica whose model does not have the rule (the database decides).
    let count = count_rules(&db).await;
    assert!(!e.add_policy(editor.clone()).await.unwrap());
    let mut stale = stored_enforcer(&db).await;
    stale.enable_auto_save(false);
    assert!(stale.remove_policy(editor.clone()).await.unwrap());
    stale.enable_auto_save(true);
    assert!(!stale.add_policy(editor.clone()).await.unwrap());
    assert_eq!(count_rules(&db).await, count);
    assert_eq!(version(&db).await, added);
    // A batch with one stored rule stores none of its rules.
    let batch = vec![
        strings(&["role:editor", "product", "create"]),
        editor.clone(),
    ];
    assert!(!e.add_policies(batch).await.unwrap());
    assert_eq!(count_rules(&db).await, count);
    assert_eq!(version(&db).await, added);

    // Removing.
    let mut replica_before_removal = stored_enforcer(&db).await;
    assert!(e.remove_policy(editor.clone()).await.unwrap());
    let removed = version(&db).await;
    assert!(removed > added);
    assert!(!export(&db).await.contains("role:editor, product, update"));
    assert!(
        !stored_enforcer(&db)
            .await
            .enforce(("role:editor", "product", "update"))
            .unwrap()
    );
    // Removing a rule that is not stored (any more) is a no-op too, also from a replica whose
    // model still has it.
    assert!(!replica_before_removal.remove_policy(editor).await.unwrap());
    assert_eq!(version(&db).await, removed);
    // A batch with one missing rule removes none of its rules.
    let batch = vec![
        strings(&["role:user", "product", "read"]),
        strings(&["role:user", "product", "fly"]),
    ];
    assert!(!e.remove_policies(batch).await.unwrap());
    assert!(export(&db).await.contains("p, role:user, product, read\n"));
    assert_eq!(version(&db).await, removed);
}

#[tokio::test]
async fn remove_filtered_policy_removes_the_matching_rules_only() {
    let (_test_db, db) = database().await;
    policy_store::seed_if_empty(&db, &shipped_policy())
        .await
        .unwrap();
    let mut e = stored_enforcer(&db).await;

    // Nothing matches: no change, no new version.
    let before = version(&db).await;
    assert!(
        !e.remove_filtered_policy(0, strings(&["role:nobody"]))
            .await
            .unwrap()
    );
    assert_eq!(version(&db).await, before);

    // Every admin permission, by subject; the inheritance stays.
    assert!(
        e.remove_filtered_policy(0, strings(&["role:admin"]))
            .await
            .unwrap()
    );
    assert!(version(&db).await > before);
    let text = export(&db).await;
    assert!(!text.contains("p, role:admin"), "{text}");
    assert!(text.contains("g, role:admin, role:user\n"), "{text}");
    // From a later field, with an empty value matching anything: every `… account, …`.
    assert!(
        e.remove_filtered_policy(1, strings(&["account", ""]))
            .await
            .unwrap()
    );
    let replica = stored_enforcer(&db).await;
    assert_eq!(rules_of(&replica), rules_of(&e));
    assert_eq!(
        rules_of(&replica),
        BTreeSet::from([
            strings(&["p", "role:user", "session", "manage"]),
            strings(&["p", "role:user", "product", "read"]),
            strings(&["g", "role:admin", "role:user"]),
        ])
    );
    assert!(replica.enforce(("role:admin", "product", "read")).unwrap());
    assert!(
        !replica
            .enforce(("role:admin", "product", "create"))
            .unwrap()
    );
}

#[tokio::test]
async fn save_policy_replaces_every_stored_rule_and_clear_policy_removes_them() {
    let (_test_db, db) = database().await;
    policy_store::seed_if_empty(&db, &shipped_policy())
        .await
        .unwrap();
    let mut e = stored_enforcer(&db).await;
    // Changes to the model alone, then saved at once.
    e.enable_auto_save(false);
    e.remove_filtered_policy(0, strings(&["role:user"]))
        .await
        .unwrap();
    e.add_policy(strings(&["role:seller", "product", "create"]))
        .await
        .unwrap();
    e.add_grouping_policy(strings(&["role:seller", "role:user"]))
        .await
        .unwrap();
    let before = version(&db).await;
    assert_ne!(rules_of(&stored_enforcer(&db).await), rules_of(&e));
    e.save_policy().await.unwrap();
    assert!(version(&db).await > before);
    let replica = stored_enforcer(&db).await;
    assert_eq!(rules_of(&replica), rules_of(&e));
    assert_eq!(differing_decisions(&replica, &e), []);

    e.enable_auto_save(true);
    let saved = version(&db).await;
    e.clear_policy().await.unwrap();
    assert!(version(&db).await > saved);
    assert_eq!(export(&db).await, "");
    assert_eq!(count_rules(&db).await, 0);
    // An empty table can be seeded again.
    assert!(
        policy_store::seed_if_empty(&db, &shipped_policy())
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_filtered_load_holds_the_matching_rules_only() {
    let (_test_db, db) = database().await;
    policy_store::seed_if_empty(&db, &shipped_policy())
        .await
        .unwrap();
    let mut e = stored_enforcer(&db).await;
    assert!(!e.is_filtered());
    e.load_filtered_policy(Filter {
        p: vec!["role:admin", "", "delete"],
        g: vec![],
    })
    .await
    .unwrap();
    assert!(e.is_filtered());
    assert_eq!(
        rules_of(&e),
        BTreeSet::from([
            strings(&["p", "role:admin", "product", "delete"]),
            strings(&["g", "role:admin", "role:user"]),
        ])
    );
    e.load_policy().await.unwrap();
    assert!(!e.is_filtered());
    assert_eq!(
        rules_of(&e),
        rules_of(&text_enforcer(&shipped_policy()).await)
    );
}

/// Ten replicas starting at once on an empty table: one seeds, each rule is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_seeding_stores_each_rule_once() {
    let (test_db, db) = database().await;
    let policy = shipped_policy();
    let mut replicas = Vec::new();
    for _ in 0..10 {
        // Pools of their own, as separate processes have.
        replicas.push(connect_and_migrate(&test_db.url).await.unwrap());
    }
    let tasks = replicas
        .into_iter()
        .map(|replica| {
            let policy = policy.clone();
            tokio::spawn(async move { policy_store::seed_if_empty(&replica, &policy).await })
        })
        .collect();
    let seeded: Vec<bool> = join_tasks(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(seeded.iter().filter(|s| **s).count(), 1, "{seeded:?}");
    let files = text_enforcer(&policy).await;
    assert_eq!(count_rules(&db).await as usize, rules_of(&files).len());
    assert_eq!(rules_of(&stored_enforcer(&db).await), rules_of(&files));
}

#[tokio::test]
async fn a_rule_cannot_be_stored_twice_even_by_hand_and_any_change_bumps_the_version() {
    let (_test_db, db) = database().await;
    policy_store::seed_if_empty(&db, &shipped_policy())
        .await
        .unwrap();
    let insert = |ptype: &str, v2: &str| {
        format!(
            "INSERT INTO casbin_rules (ptype, v0, v1, v2) VALUES ('{ptype}', 'role:user', 'product', '{v2}')"
        )
    };
    let before = version(&db).await;
    let duplicate = db.writer().execute_unprepared(&insert("p", "read")).await;
    assert!(duplicate.is_err(), "the unique index refuses a stored rule");
    assert_eq!(version(&db).await, before);
    // A change made with a SQL prompt is a new version too: the triggers bump it.
    db.writer()
        .execute_unprepared(&insert("p", "review"))
        .await
        .unwrap();
    assert!(version(&db).await > before);
    assert!(
        stored_enforcer(&db)
            .await
            .enforce(("role:admin", "product", "review"))
            .unwrap()
    );
}

#[tokio::test]
async fn export_reads_back_as_the_same_policy() {
    let (_test_db, db) = database().await;
    policy_store::seed_if_empty(&db, &shipped_policy())
        .await
        .unwrap();
    let mut e = stored_enforcer(&db).await;
    // Values that need quoting in CSV survive too.
    e.add_policy(strings(&["role:odd, one", "product", " spaced "]))
        .await
        .unwrap();
    let text = export(&db).await;
    assert!(
        text.contains("p, \"role:odd, one\", product, \" spaced \"\n"),
        "{text}"
    );
    assert_eq!(export(&db).await, text, "the order is stable");
    // `p` lines before `g` lines.
    let first_g = text.find("\ng, ").unwrap();
    assert!(!text[first_g..].contains("\np, "), "{text}");

    let (_other_test_db, other) = database().await;
    assert!(policy_store::seed_if_empty(&other, &text).await.unwrap());
    assert_eq!(export(&other).await, text);
    assert_eq!(rules_of(&stored_enforcer(&other).await), rules_of(&e));
    // Casbin reads the export as a policy file, with the same rules.
    assert_eq!(rules_of(&text_enforcer(&text).await), rules_of(&e));
}
