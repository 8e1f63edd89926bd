use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

use casbin::{CoreApi, DefaultModel, Enforcer, StringAdapter};

use crate::role::Role;

/// A permission the code asks about: an (object, action) pair of the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Permission {
    AccountRead,
    AccountUpdate,
    SessionManage,
    ProductRead,
    ProductCreate,
    ProductUpdate,
    ProductDelete,
    ProductReadCreator,
    UserList,
    UserSetRole,
    UserDeactivate,
    UserReactivate,
    AccountDelete,
    AuditRead,
}

impl Permission {
    /// Every permission a guard can ask about.
    pub const ALL: [Permission; 14] = [
        Permission::AccountRead,
        Permission::AccountUpdate,
        Permission::SessionManage,
        Permission::ProductRead,
        Permission::ProductCreate,
        Permission::ProductUpdate,
        Permission::ProductDelete,
        Permission::ProductReadCreator,
        Permission::UserList,
        Permission::UserSetRole,
        Permission::UserDeactivate,
        Permission::UserReactivate,
        Permission::AccountDelete,
        Permission::AuditRead,
    ];

    /// The policy's object and action for this permission.
    pub fn object_action(self) -> (&'static str, &'static str) {
        match self {
            Permission::AccountRead => ("account", "read"),
            Permission::AccountUpdate => ("account", "update"),
            Permission::SessionManage => ("session", "manage"),
            Permission::ProductRead => ("product", "read"),
            Permission::ProductCreate => ("product", "create"),
            Permission::ProductUpdate => ("product", "update"),
            Permission::ProductDelete => ("product", "delete"),
            Permission::ProductReadCreator => ("product", "read_creator"),
            Permission::UserList => ("user", "list"),
            Permission::UserSetRole => ("user", "set_role"),
            Permission::UserDeactivate => ("user", "deactivate"),
            Permission::UserReactivate => ("user", "reactivate"),
            Permission::AccountDelete => ("account", "delete"),
            Permission::AuditRead => ("audit", "read"),
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Who asks, as the policy names them: a role subject, never a user-chosen string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    Anonymous,
    Role(Role),
}

impl Subject {
    /// The subject a caller is asked about as: their role, or anonymous (a bad token included).
    pub fn of(viewer: &crate::auth::Viewer) -> Self {
        match *viewer {
            crate::auth::Viewer::Account { role, .. } => Subject::Role(role),
            crate::auth::Viewer::Anonymous | crate::auth::Viewer::InvalidToken => {
                Subject::Anonymous
            }
        }
    }

    const ALL: [Subject; 3] = [
        Subject::Anonymous,
        Subject::Role(Role::User),
        Subject::Role(Role::Admin),
    ];

    /// The policy's name for this subject: `role:anonymous`, `role:user`, `role:admin`.
    pub fn policy_name(self) -> &'static str {
        match self {
            Subject::Anonymous => "role:anonymous",
            Subject::Role(Role::User) => "role:user",
            Subject::Role(Role::Admin) => "role:admin",
        }
    }

    fn index(self) -> usize {
        match self {
            Subject::Anonymous => 0,
            Subject::Role(Role::User) => 1,
            Subject::Role(Role::Admin) => 2,
        }
    }
}

/// Where the policy came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicySource {
    Folder(std::path::PathBuf),
    BuiltIn,
}

impl fmt::Display for PolicySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicySource::Folder(dir) => write!(f, "folder {}", dir.display()),
            PolicySource::BuiltIn => f.write_str("built-in copy"),
        }
    }
}

/// A policy that could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid policy: {0}")]
    Invalid(String),
    /// Casbin accepts the files, but they are not what the code can enforce; each problem
    /// names the file and, where there is one, the line.
    #[error("{} problem(s):\n  {}", .0.len(), .0.join("\n  "))]
    Rejected(Vec<String>),
}

const BUILT_IN_MODEL: &str = include_str!("../../policies/model.conf");
const BUILT_IN_POLICY: &str = include_str!("../../policies/policy.csv");

/// Every decision of the policy, taken once when it loads: a guard's check is a table look-up.
///
/// The code asks about a fixed set of subjects and permissions, so the table is complete; it is
/// rebuilt whenever a policy is loaded.
#[derive(Debug)]
pub struct Authorizer {
    decisions: [[bool; Permission::ALL.len()]; Subject::ALL.len()],
    source: PolicySource,
    version: String,
}

impl Authorizer {
    /// Loads `model.conf` and `policy.csv` from `dir`. When the folder does not exist and was
    /// not named explicitly, falls back to the copy built into the binary.
    ///
    /// # Errors
    /// When the files cannot be read or do not form a valid policy, or an explicitly named
    /// folder does not exist.
    pub async fn load(dir: &Path, dir_is_default: bool) -> Result<Self, PolicyError> {
        if !dir.exists() && dir_is_default {
            return Self::from_texts(BUILT_IN_MODEL, BUILT_IN_POLICY, PolicySource::BuiltIn).await;
        }
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| PolicyError::Read {
                path: path.display().to_string(),
                source,
            })
        };
        let model = read("model.conf")?;
        let policy = read("policy.csv")?;
        Self::from_texts(&model, &policy, PolicySource::Folder(dir.to_owned())).await
    }

    /// Builds the decision table from a model and a policy given as text.
    ///
    /// # Errors
    /// When Casbin refuses the model or the policy.
    pub async fn from_texts(
        model: &str,
        policy: &str,
        source: PolicySource,
    ) -> Result<Self, PolicyError> {
        let invalid = |e: casbin::Error| PolicyError::Invalid(e.to_string());
        let file = match &source {
            PolicySource::Folder(dir) => dir.join("policy.csv").display().to_string(),
            PolicySource::BuiltIn => "built-in policy.csv".to_owned(),
        };
        let mut problems = lint_file(policy, &file);
        if !policy
            .lines()
            .any(|line| line.split(',').next().map(str::trim) == Some("p"))
        {
            problems.push(format!(
                "{file}: grants no permission at all (every caller would be refused)"
            ));
        }
        if !problems.is_empty() {
            return Err(PolicyError::Rejected(problems));
        }
        let model_text = model;
        let model = DefaultModel::from_str(model).await.map_err(invalid)?;
        let adapter = StringAdapter::new(strip_comments(policy));
        let enforcer = Enforcer::new(model, adapter).await.map_err(invalid)?;
        let mut decisions = [[false; Permission::ALL.len()]; Subject::ALL.len()];
        for subject in Subject::ALL {
            for permission in Permission::ALL {
                let (object, action) = permission.object_action();
                // Every request here is well-formed, so an error means the model is broken
                // (a missing section, a matcher naming an unknown field): refuse to start
                // rather than guess a decision.
                decisions[subject.index()][permission.index()] = enforcer
                    .enforce((subject.policy_name(), object, action))
                    .map_err(invalid)?;
            }
        }
        let can_manage_roles = [Role::User, Role::Admin]
            .into_iter()
            .any(|role| decisions[Subject::Role(role).index()][Permission::UserSetRole.index()]);
        if !can_manage_roles {
            return Err(PolicyError::Rejected(vec![format!(
                "{file}: no role may `user, set_role`, so nobody could manage roles again \
                 (grant it, e.g. `p, role:admin, user, set_role`)"
            )]));
        }
        let version = fingerprint(model_text, policy);
        Ok(Self {
            decisions,
            source,
            version,
        })
    }

    /// Whether the policy lets `subject` have `permission`.
    pub fn allows(&self, subject: Subject, permission: Permission) -> bool {
        self.decisions[subject.index()][permission.index()]
    }

    /// Where this policy was loaded from.
    pub fn source(&self) -> &PolicySource {
        &self.source
    }

    /// A short fingerprint of the policy's files.
    pub fn version(&self) -> &str {
        &self.version
    }
}

/// The policy in force, which SIGHUP can replace while requests run: each check reads one
/// whole [`Authorizer`], never a mix of the old policy and the new.
#[derive(Debug)]
pub struct SharedAuthorizer {
    current: RwLock<Arc<Authorizer>>,
    dir: PathBuf,
    dir_is_default: bool,
}

impl SharedAuthorizer {
    /// Loads the policy as [`Authorizer::load`] does, remembering where for [`Self::reload`].
    ///
    /// # Errors
    /// As [`Authorizer::load`].
    pub async fn load(dir: &Path, dir_is_default: bool) -> Result<Self, PolicyError> {
        let authorizer = Authorizer::load(dir, dir_is_default).await?;
        Ok(Self {
            current: RwLock::new(Arc::new(authorizer)),
            dir: dir.to_owned(),
            dir_is_default,
        })
    }

    /// Reads the policy files again and puts the new policy in force; a policy that does not
    /// load or validate is refused and the one in force stays.
    ///
    /// # Errors
    /// As [`Authorizer::load`].
    pub async fn reload(&self) -> Result<Arc<Authorizer>, PolicyError> {
        let authorizer = Arc::new(Authorizer::load(&self.dir, self.dir_is_default).await?);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = authorizer.clone();
        Ok(authorizer)
    }

    /// Reads the policy files every `every` and, when they hold another policy than the one
    /// in force, puts it in force as [`Self::reload`] does: a policy that is refused is logged
    /// once and the one in force stays (until the files change again). Does nothing for the
    /// built-in copy, or when `every` is zero. The task ends once the authorizer is dropped.
    pub fn spawn_watcher(self: &Arc<Self>, every: Duration) {
        if every.is_zero() || matches!(self.current().source(), PolicySource::BuiltIn) {
            return;
        }
        let watched = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The version of the files last refused, so a broken edit is logged once.
            let mut refused: Option<String> = None;
            loop {
                ticker.tick().await;
                let Some(authz) = watched.upgrade() else {
                    return;
                };
                // A file being replaced may be missing for a moment: wait for it.
                let Some(on_disk) = authz.files_version() else {
                    continue;
                };
                let before = authz.version();
                if on_disk == before || refused.as_ref() == Some(&on_disk) {
                    continue;
                }
                match authz.reload().await {
                    Ok(policy) => tracing::info!(
                        source = %policy.source(),
                        version = policy.version(),
                        previous_version = before,
                        "policy files changed: authorization policy reloaded"
                    ),
                    Err(err) => {
                        tracing::error!(
                            error = %err,
                            version = before,
                            "policy files changed, but the new policy was refused; the previous one stays in force"
                        );
                        // A file missing for a moment is tried again; a refused text is not.
                        if !matches!(err, PolicyError::Read { .. }) {
                            refused = Some(on_disk);
                        }
                    }
                }
            }
        });
    }

    /// The version the policy files would have, when both can be read.
    fn files_version(&self) -> Option<String> {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).ok();
        Some(fingerprint(&read("model.conf")?, &read("policy.csv")?))
    }

    /// The policy in force now.
    pub fn current(&self) -> Arc<Authorizer> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether the policy in force lets `subject` have `permission`.
    pub fn allows(&self, subject: Subject, permission: Permission) -> bool {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .allows(subject, permission)
    }

    /// Every permission the policy in force grants `subject`.
    pub fn granted(&self, subject: Subject) -> Vec<Permission> {
        let policy = self.current();
        Permission::ALL
            .into_iter()
            .filter(|permission| policy.allows(subject, *permission))
            .collect()
    }

    /// Where the policy in force was loaded from.
    pub fn source(&self) -> PolicySource {
        self.current().source().clone()
    }

    /// The fingerprint of the policy in force.
    pub fn version(&self) -> String {
        self.current().version().to_owned()
    }
}

/// A policy's version: a fingerprint of its model and its policy text.
fn fingerprint(model: &str, policy: &str) -> String {
    crate::auth::sha256_hex(format!("{model}\0{policy}").as_bytes())[..12].to_owned()
}

impl Authorizer {
    /// Problems Casbin itself lets pass: lines of an unknown kind or shape, subjects that are
    /// not `role:` names, and permissions no guard asks about (usually a typo).
    pub fn lint(policy: &str) -> Vec<String> {
        lint_file(policy, "policy.csv")
    }

    /// The role × permission table this policy grants, as text.
    pub fn table(&self) -> String {
        let subjects = Subject::ALL;
        let mut lines = Vec::new();
        let mut header = format!("{:<24}", "permission");
        for subject in subjects {
            header.push_str(&format!("{:<16}", subject.policy_name()));
        }
        lines.push(header);
        for permission in Permission::ALL {
            let (object, action) = permission.object_action();
            let mut line = format!("{:<24}", format!("{object} {action}"));
            for subject in subjects {
                let mark = if self.allows(subject, permission) {
                    "yes"
                } else {
                    "-"
                };
                line.push_str(&format!("{mark:<16}"));
            }
            lines.push(line);
        }
        lines
            .iter()
            .map(|l| format!("{}\n", l.trim_end()))
            .collect()
    }
}

/// [`Authorizer::lint`], naming `file` in each problem.
fn lint_file(policy: &str, file: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (number, line) in policy.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let at = format!("{file} line {}", number + 1);
        match fields.as_slice() {
            ["p", subject, object, action] => {
                if !subject.starts_with("role:") {
                    problems.push(format!("{at}: subject `{subject}` is not a `role:` name"));
                }
                if !Permission::ALL
                    .iter()
                    .any(|p| p.object_action() == (*object, *action))
                {
                    problems.push(format!(
                        "{at}: no guard asks for `{object}, {action}` (known: {})",
                        Permission::ALL
                            .iter()
                            .map(|p| format!("{} {}", p.object_action().0, p.object_action().1))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
            ["g", member, role] => {
                for name in [member, role] {
                    if !name.starts_with("role:") {
                        problems.push(format!("{at}: `{name}` is not a `role:` name"));
                    }
                }
            }
            _ => problems.push(format!(
                "{at}: expected `p, role:<name>, <object>, <action>` or `g, role:<a>, role:<b>`"
            )),
        }
    }
    problems
}

/// The policy text without comment lines and blank lines, which Casbin's string adapter does
/// not skip.
fn strip_comments(policy: &str) -> String {
    policy
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn built_in() -> Authorizer {
        Authorizer::from_texts(BUILT_IN_MODEL, BUILT_IN_POLICY, PolicySource::BuiltIn)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn admin_inherits_everything_a_user_may_do() {
        let authz = built_in().await;
        for permission in Permission::ALL {
            if authz.allows(Subject::Role(Role::User), permission) {
                assert!(authz.allows(Subject::Role(Role::Admin), permission));
            }
        }
        assert!(authz.allows(Subject::Role(Role::Admin), Permission::ProductRead));
    }

    #[tokio::test]
    async fn built_in_policy_grants_what_the_product_promises() {
        let authz = built_in().await;
        let user = Subject::Role(Role::User);
        let admin = Subject::Role(Role::Admin);
        assert!(authz.allows(user, Permission::AccountRead));
        assert!(authz.allows(user, Permission::ProductRead));
        assert!(!authz.allows(user, Permission::ProductCreate));
        assert!(!authz.allows(user, Permission::ProductReadCreator));
        assert!(!authz.allows(user, Permission::UserSetRole));
        for permission in Permission::ALL {
            assert!(authz.allows(admin, permission), "{permission:?}");
            assert!(
                !authz.allows(Subject::Anonymous, permission),
                "{permission:?}"
            );
        }
    }

    #[test]
    fn lint_finds_typos_and_user_chosen_subjects() {
        assert!(Authorizer::lint(BUILT_IN_POLICY).is_empty());
        let problems = Authorizer::lint(
            "p, role:user, prodcut, read\np, alice, product, read\ng, role:admin\nx, y",
        );
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("prodcut"));
    }

    #[tokio::test]
    async fn the_table_shows_each_role_and_permission() {
        let table = built_in().await.table();
        assert!(table.contains("role:admin"));
        let create = table
            .lines()
            .find(|l| l.starts_with("product create"))
            .unwrap();
        assert_eq!(
            create.split_whitespace().collect::<Vec<_>>(),
            ["product", "create", "-", "-", "yes"]
        );
    }

    #[tokio::test]
    async fn a_broken_model_is_refused() {
        let err = Authorizer::from_texts("[nonsense", BUILT_IN_POLICY, PolicySource::BuiltIn)
            .await
            .unwrap_err();
        assert!(matches!(err, PolicyError::Invalid(_)));
    }
}
