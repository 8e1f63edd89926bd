//! Changes to the policy kept in the database (`POLICY_SOURCE=database`): each is checked as a
//! whole policy, stored through the adapter and recorded in the audit trail, in one
//! transaction that holds the locks every writer of the policy and every role change take.

use std::sync::Arc;

use uuid::Uuid;

use super::{
    ANONYMOUS, Authorizer, Permission, PolicyError, PolicySource, Reach, ReachName, Role, Rule,
    SharedAuthorizer, active_accounts_in, adapter, parse,
};
use crate::{
    audit::{self, Action, Change, Entry},
    db,
    error::{AppError, AppResult},
};

/// One change to the stored policy.
#[derive(Clone, Debug)]
pub enum PolicyChange {
    /// Grants `permission` to `role` (a defined role, or `anonymous`), on `reach`.
    Grant {
        role: String,
        permission: Permission,
        reach: Reach,
    },
    /// Takes that grant away.
    Revoke {
        role: String,
        permission: Permission,
        reach: Reach,
    },
    /// Lets `role` inherit every permission of `parent`.
    Inherit { role: String, parent: String },
    /// Ends that inheritance.
    Uninherit { role: String, parent: String },
    /// Defines a new role, with the roles it inherits from and its own grants (at least one of
    /// the two: a role is what the policy says about it).
    CreateRole {
        role: String,
        inherits: Vec<String>,
        grants: Vec<(Permission, Reach)>,
    },
    /// Removes every rule naming `role`; refused while an account has it.
    DeleteRole { role: String },
}

impl PolicyChange {
    fn action(&self) -> Action {
        match self {
            PolicyChange::Grant { .. } => Action::PolicyGrant,
            PolicyChange::Revoke { .. } => Action::PolicyRevoke,
            PolicyChange::Inherit { .. } => Action::PolicyInherit,
            PolicyChange::Uninherit { .. } => Action::PolicyUninherit,
            PolicyChange::CreateRole { .. } => Action::PolicyCreateRole,
            PolicyChange::DeleteRole { .. } => Action::PolicyDeleteRole,
        }
    }

    /// The role the change is about: the audit record's entity id.
    fn role(&self) -> &str {
        match self {
            PolicyChange::Grant { role, .. }
            | PolicyChange::Revoke { role, .. }
            | PolicyChange::Inherit { role, .. }
            | PolicyChange::Uninherit { role, .. }
            | PolicyChange::CreateRole { role, .. }
            | PolicyChange::DeleteRole { role } => role,
        }
    }

    /// The rules to remove from `rules` and those to add, or why the change cannot be made.
    fn plan(&self, rules: &[Rule]) -> AppResult<(Vec<Rule>, Vec<Rule>)> {
        let defined = |name: &str| {
            rules.iter().any(|rule| match rule {
                Rule::Grant { subject, .. } => subject == name,
                Rule::Inherit { member, parent } => member == name || parent == name,
            })
        };
        let existing = |field: &'static str,
                        name: &str,
                        anonymous_too: bool|
         -> AppResult<String> {
            if (anonymous_too && name == ANONYMOUS) || (name != ANONYMOUS && defined(name)) {
                Ok(name.to_owned())
            } else {
                Err(AppError::bad_input(
                    field,
                    format!(
                        "no role `{}` is defined (the `roles` query lists them; `createRole` adds one)",
                        shortened(name)
                    ),
                ))
            }
        };
        let grant = |role: &str, permission: &Permission, reach: &Reach| {
            let (object, action) = permission.object_action();
            Rule::Grant {
                subject: role.to_owned(),
                permission: (object.to_owned(), action.to_owned()),
                reach: match reach {
                    Reach::Any => ReachName::Any,
                    Reach::Own => ReachName::Own,
                },
            }
        };
        let owned = |permission: &Permission, reach: &Reach| -> AppResult<()> {
            if *reach == Reach::Own && !permission.can_be_owned() {
                let (object, action) = permission.object_action();
                return Err(AppError::bad_input(
                    "scope",
                    format!("`{object}, {action}` cannot be limited to OWN rows"),
                ));
            }
            Ok(())
        };
        let present = |rule: &Rule| rules.contains(rule);
        Ok(match self {
            PolicyChange::Grant {
                role,
                permission,
                reach,
            } => {
                let role = existing("role", role, true)?;
                owned(permission, reach)?;
                let rule = grant(&role, permission, reach);
                if present(&rule) {
                    (vec![], vec![])
                } else {
                    (vec![], vec![rule])
                }
            }
            PolicyChange::Revoke {
                role,
                permission,
                reach,
            } => {
                let rule = grant(role, permission, reach);
                if !present(&rule) {
                    return Err(AppError::NotFound("permission grant"));
                }
                (vec![rule], vec![])
            }
            PolicyChange::Inherit { role, parent } => {
                let role = existing("role", role, false)?;
                let parent = existing("inherits", parent, true)?;
                let rule = Rule::Inherit {
                    member: role,
                    parent,
                };
                if present(&rule) {
                    (vec![], vec![])
                } else {
                    (vec![], vec![rule])
                }
            }
            PolicyChange::Uninherit { role, parent } => {
                let rule = Rule::Inherit {
                    member: role.clone(),
                    parent: parent.clone(),
                };
                if !present(&rule) {
                    return Err(AppError::NotFound("role inheritance"));
                }
                (vec![rule], vec![])
            }
            PolicyChange::CreateRole {
                role,
                inherits,
                grants,
            } => {
                if Role::parse(role).is_none() || role == ANONYMOUS {
                    return Err(AppError::bad_input(
                        "name",
                        "a role name is 1–32 characters of a–z, 0–9, `_` and `-`, starting with a \
                         letter (and not `anonymous`)",
                    ));
                }
                if defined(role) {
                    return Err(AppError::Conflict {
                        field: "name",
                        message: "a role with this name is defined already",
                    });
                }
                if inherits.is_empty() && grants.is_empty() {
                    return Err(AppError::bad_input(
                        "permissions",
                        "a role needs a permission or a role to inherit from",
                    ));
                }
                let mut added = Vec::new();
                for parent in inherits {
                    let parent = existing("inherits", parent, true)?;
                    added.push(Rule::Inherit {
                        member: role.clone(),
                        parent,
                    });
                }
                for (permission, reach) in grants {
                    owned(permission, reach)?;
                    added.push(grant(role, permission, reach));
                }
                added.dedup();
                (vec![], added)
            }
            PolicyChange::DeleteRole { role } => {
                let role = existing("name", role, false)?;
                let removed = rules
                    .iter()
                    .filter(|rule| match rule {
                        Rule::Grant { subject, .. } => *subject == role,
                        Rule::Inherit { member, parent } => *member == role || *parent == role,
                    })
                    .cloned()
                    .collect();
                (removed, vec![])
            }
        })
    }
}

/// At most 40 characters of a name, for a message.
fn shortened(name: &str) -> String {
    name.chars().take(40).collect()
}

impl SharedAuthorizer {
    /// Whether the policy is kept in the database, so it can be changed through the API.
    pub fn is_stored(&self) -> bool {
        self.stored_model.is_some()
    }

    /// Makes `change` to the stored policy, for `actor`, and puts the result in force on this
    /// replica at once (the others read it within `POLICY_POLL_MS`). The changed policy is
    /// checked as a whole, as a policy file is, before anything is stored; the rules, the new
    /// version and the audit record commit together. A change that changes nothing (a grant
    /// already there) stores and records nothing. Returns the policy in force.
    ///
    /// # Errors
    /// `CONFLICT` on `policy` when the policy is read from files, or when no active account
    /// could manage roles under the changed policy; `CONFLICT` on `name` for a role that exists
    /// already or that accounts still have; `BAD_USER_INPUT` for a role the policy does not
    /// define, `own` on a permission without an owned row, or a changed policy that would be
    /// refused (naming why); `NOT_FOUND` when revoking what is not granted; `SERVICE_UNAVAILABLE`
    /// when it could not be stored.
    pub async fn change(
        &self,
        actor: Option<Uuid>,
        change: PolicyChange,
    ) -> AppResult<Arc<Authorizer>> {
        let (Some(model), Some(db)) = (&self.stored_model, &self.db) else {
            return Err(AppError::Conflict {
                field: "policy",
                message: "the policy is read from files (POLICY_SOURCE=files): edit policy.csv",
            });
        };
        let changed = db::write(db, async |txn| {
            // The lock role changes take (so the check below holds until the commit), then the
            // policy writers' lock, then the rules as they are now.
            db::lock_role_changes(txn).await?;
            adapter::lock_in(txn).await?;
            let file = "the stored policy";
            let text = adapter::export(txn).await?;
            let rules = parse(&text, file).map_err(|problems| {
                AppError::internal(format!("the stored policy is invalid: {problems:?}"))
            })?;
            let (removed, added) = change.plan(&rules)?;
            if removed.is_empty() && added.is_empty() {
                return Ok(false);
            }
            if let PolicyChange::DeleteRole { role } = &change
                && let Some(role) = Role::parse(role)
                && active_accounts_in(txn, std::slice::from_ref(&role)).await? > 0
            {
                return Err(AppError::Conflict {
                    field: "name",
                    message: "accounts have this role: give them another role first",
                });
            }
            let mut candidate: Vec<Rule> = rules
                .iter()
                .filter(|r| !removed.contains(r))
                .cloned()
                .collect();
            candidate.extend(added.iter().cloned());
            let checked = Authorizer::from_rules(
                model,
                candidate,
                PolicySource::Database,
                String::new(),
                file,
            )
            .await
            .map_err(|err| match err {
                PolicyError::Rejected(problems) => AppError::bad_input(
                    "policy",
                    format!(
                        "the changed policy would be refused: {}",
                        problems.join("; ")
                    ),
                ),
                other => AppError::internal(other),
            })?;
            self.keeps_default_role(&checked)
                .map_err(|problem| AppError::bad_input("policy", problem))?;
            let current = self.current();
            if active_accounts_in(txn, &current.managers()).await? > 0
                && active_accounts_in(txn, &checked.managers()).await? == 0
            {
                return Err(AppError::Conflict {
                    field: "policy",
                    message: "no active account could manage roles under the changed policy",
                });
            }
            let lines = |rules: &[Rule]| rules.iter().map(Rule::to_line).collect::<Vec<_>>();
            let (removed, added) = (lines(&removed), lines(&added));
            // A grant on every row may be stored with its scope spelled out (`, any`).
            let spelled_out = removed
                .iter()
                .filter(|line| line.starts_with("p,") && !line.ends_with(", own"))
                .map(|line| format!("{line}, any"));
            let to_remove: Vec<String> = removed.iter().cloned().chain(spelled_out).collect();
            adapter::change_in(txn, &to_remove, &added).await?;
            let mut changes: Vec<Change> = removed
                .iter()
                .map(|line| Change::new("rule", Some(line.clone()), None))
                .collect();
            changes.extend(
                added
                    .iter()
                    .map(|line| Change::new("rule", None, Some(line.clone()))),
            );
            let entry = Entry {
                actor,
                action: change.action(),
                entity_id: change.role().to_owned(),
                changes,
            };
            audit::record(txn, entry).await?;
            Ok(true)
        })
        .await?;
        if !changed {
            // Nothing to store: the policy as stored now (another replica may have changed it).
            return self.current_in(db.reader()).await;
        }
        // In force here at once; a failure to read it back is repaired by the next poll.
        match Authorizer::from_store(model, db.writer()).await {
            Ok(policy) => {
                let policy = self.set_current(Arc::new(policy));
                tracing::info!(version = policy.version(), actor = ?actor, "policy changed through the API");
                Ok(policy)
            }
            Err(err) => {
                tracing::warn!(error = %err, "a stored policy change could not be read back yet");
                Ok(self.current())
            }
        }
    }
}
