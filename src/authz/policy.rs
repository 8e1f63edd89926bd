use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

use casbin::{CoreApi, DefaultModel, Enforcer, StringAdapter};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter};

mod stored;

pub use stored::PolicyChange;

use super::adapter;
use crate::{
    auth::Viewer,
    db::{self, Db},
    entities::account,
    error::AppResult,
    role::{ANONYMOUS, Role},
};

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
    RoleList,
    AuditRead,
    PolicyRead,
    PolicyManage,
    ProductAdjustStock,
}

impl Permission {
    /// Every permission a guard can ask about.
    pub const ALL: [Permission; 18] = [
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
        Permission::RoleList,
        Permission::AuditRead,
        Permission::PolicyRead,
        Permission::PolicyManage,
        Permission::ProductAdjustStock,
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
            Permission::RoleList => ("role", "list"),
            Permission::AuditRead => ("audit", "read"),
            Permission::PolicyRead => ("policy", "read"),
            Permission::PolicyManage => ("policy", "manage"),
            Permission::ProductAdjustStock => ("product", "adjust_stock"),
        }
    }

    /// The permission with this object and action, if a guard asks for it.
    pub fn named(object: &str, action: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.object_action() == (object, action))
    }

    /// Whether the permission manages who may do what (accounts' roles and activation, the
    /// policy): never granted to callers without a token, nor to the role `register` gives.
    pub fn manages_access(self) -> bool {
        matches!(
            self,
            Permission::UserSetRole
                | Permission::UserDeactivate
                | Permission::UserReactivate
                | Permission::PolicyManage
        )
    }

    /// Whether the policy may grant this permission on owned rows only (`own`): the guarded
    /// operation acts on one row with an owner, which the code checks once the row is loaded.
    pub fn can_be_owned(self) -> bool {
        matches!(
            self,
            Permission::ProductUpdate | Permission::ProductDelete | Permission::ProductAdjustStock
        )
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How far a granted permission reaches: every row, or only the rows the caller owns (a
/// product they created).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reach {
    Own,
    Any,
}

impl Reach {
    /// The policy's word for this reach (the fourth field of a `p` line).
    pub fn as_str(self) -> &'static str {
        match self {
            Reach::Own => "own",
            Reach::Any => "any",
        }
    }
}

/// The rows a granted permission covers for one caller: every row, or those the account
/// owns. Checked against the row once it is loaded, so an ownership rule costs no query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rows {
    Any,
    OwnedBy(uuid::Uuid),
}

impl Rows {
    /// Whether a row owned by `owner` (none when its creator is gone) is covered.
    pub fn cover(self, owner: Option<uuid::Uuid>) -> bool {
        match self {
            Rows::Any => true,
            Rows::OwnedBy(account) => owner == Some(account),
        }
    }
}

/// What the policy grants one subject: for each permission, how far it reaches, if at all.
type Grants = [Option<Reach>; Permission::ALL.len()];

/// Who asks, as the policy names them: a role subject, never a user-chosen string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subject<'a> {
    Anonymous,
    Role(&'a Role),
}

impl<'a> Subject<'a> {
    /// The subject a caller is asked about as: their role, or anonymous (a bad token included).
    pub fn of(viewer: &'a Viewer) -> Self {
        match viewer {
            Viewer::Account { role, .. } => Subject::Role(role),
            Viewer::Anonymous | Viewer::InvalidToken(_) => Subject::Anonymous,
        }
    }

    /// The policy's name for this subject: `role:anonymous`, `role:<name>`.
    pub fn policy_name(self) -> String {
        match self {
            Subject::Anonymous => format!("role:{ANONYMOUS}"),
            Subject::Role(role) => format!("role:{role}"),
        }
    }
}

/// One line of a policy.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// `p, role:<subject>, <object>, <action>[, own|any]`: the subject (a role name, or
    /// `anonymous`) may do the action, on every row or only on rows it owns.
    Grant {
        subject: String,
        permission: (String, String),
        reach: ReachName,
    },
    /// `g, role:<member>, role:<parent>`: the member has every permission the parent has.
    Inherit { member: String, parent: String },
}

/// [`Reach`] as a policy line spells it (ordered, so rules sort).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReachName {
    Any,
    Own,
}

impl Rule {
    /// The rule as a line of `policy.csv`, in the short form when it reaches every row.
    pub fn to_line(&self) -> String {
        match self {
            Rule::Grant {
                subject,
                permission: (object, action),
                reach: ReachName::Any,
            } => format!("p, role:{subject}, {object}, {action}"),
            Rule::Grant {
                subject,
                permission: (object, action),
                reach: ReachName::Own,
            } => format!("p, role:{subject}, {object}, {action}, own"),
            Rule::Inherit { member, parent } => format!("g, role:{member}, role:{parent}"),
        }
    }

    /// The rule as Casbin's adapter reads it: every `p` line with its reach spelled out, so
    /// the model's four policy fields are always there.
    fn to_casbin_line(&self) -> String {
        match self {
            Rule::Grant {
                subject,
                permission: (object, action),
                reach,
            } => {
                let reach = match reach {
                    ReachName::Any => "any",
                    ReachName::Own => "own",
                };
                format!("p, role:{subject}, {object}, {action}, {reach}")
            }
            Rule::Inherit { member, parent } => format!("g, role:{member}, role:{parent}"),
        }
    }
}

/// Where the policy came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicySource {
    Folder(std::path::PathBuf),
    BuiltIn,
    /// The rules stored in the database (`POLICY_SOURCE=database`).
    Database,
}

impl fmt::Display for PolicySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicySource::Folder(dir) => write!(f, "folder {}", dir.display()),
            PolicySource::BuiltIn => f.write_str("built-in copy"),
            PolicySource::Database => f.write_str("database"),
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
    /// The accounts could not be read to check a new policy against them.
    #[error("cannot check the policy against the accounts: {0}")]
    Database(String),
}

const BUILT_IN_MODEL: &str = include_str!("../../policies/model.conf");
const BUILT_IN_POLICY: &str = include_str!("../../policies/policy.csv");

/// A role the policy defines: the roles it inherits from directly, and what it may do,
/// inherited permissions included.
#[derive(Debug)]
pub struct RoleDefinition {
    pub role: Role,
    pub inherits: Vec<Role>,
    grants: Grants,
}

impl RoleDefinition {
    /// Every permission the role has, and how far each reaches.
    pub fn permissions(&self) -> Vec<(Permission, Reach)> {
        granted_in(&self.grants)
    }
}

fn granted_in(grants: &Grants) -> Vec<(Permission, Reach)> {
    Permission::ALL
        .into_iter()
        .filter_map(|p| grants[p.index()].map(|reach| (p, reach)))
        .collect()
}

/// Every decision of the policy, taken by Casbin once when the policy loads: a guard's check
/// is a table look-up.
///
/// The code asks about a fixed set of permissions, and the policy defines the roles, so the
/// table is complete: one row per role and one for anonymous callers. An ownership rule is
/// decided by Casbin twice, for a row the caller owns and for one they do not; which of the two
/// applies is known once the row is loaded. The table is rebuilt whenever a policy is loaded.
#[derive(Debug)]
pub struct Authorizer {
    anonymous: Grants,
    model: String,
    roles: BTreeMap<Role, RoleDefinition>,
    /// The roles in the order the policy first names them.
    order: Vec<Role>,
    rules: Vec<Rule>,
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
        let (model, policy, source) = read_files(dir, dir_is_default)?;
        Self::from_texts(&model, &policy, source).await
    }

    /// The policy stored in the database (`POLICY_SOURCE=database`) under `model`, with the
    /// stored version (read first: a change committed meanwhile only makes the next poll load
    /// again).
    ///
    /// # Errors
    /// `Database` when it could not be read; as [`Self::from_texts`] when the stored rules are
    /// not a valid policy.
    pub async fn from_store(model: &str, db: &impl ConnectionTrait) -> Result<Self, PolicyError> {
        let unreadable = |err: sea_orm::DbErr| PolicyError::Database(err.to_string());
        let version = adapter::version(db).await.map_err(unreadable)?;
        let text = adapter::export(db).await.map_err(unreadable)?;
        let file = "the stored policy";
        let rules = parse(&text, file).map_err(PolicyError::Rejected)?;
        Self::from_rules(
            model,
            rules,
            PolicySource::Database,
            stored_version(version),
            file,
        )
        .await
    }

    /// Builds the decision table from a model and a policy given as text.
    ///
    /// # Errors
    /// When the policy has a malformed line, names a permission no guard asks about, grants
    /// nothing or lets no role manage roles, or Casbin refuses the model or the policy.
    pub async fn from_texts(
        model: &str,
        policy: &str,
        source: PolicySource,
    ) -> Result<Self, PolicyError> {
        let file = match &source {
            PolicySource::Folder(dir) => dir.join("policy.csv").display().to_string(),
            PolicySource::BuiltIn => "built-in policy.csv".to_owned(),
            PolicySource::Database => "the stored policy".to_owned(),
        };
        let rules = parse(policy, &file).map_err(PolicyError::Rejected)?;
        Self::from_rules(model, rules, source, fingerprint(model, policy), &file).await
    }

    /// Builds the decision table from a model and the rules of a policy; `file` names the
    /// policy in problems.
    ///
    /// # Errors
    /// As [`Self::from_texts`].
    pub async fn from_rules(
        model: &str,
        rules: Vec<Rule>,
        source: PolicySource,
        version: String,
        file: &str,
    ) -> Result<Self, PolicyError> {
        if !rules.iter().any(|rule| matches!(rule, Rule::Grant { .. })) {
            return Err(PolicyError::Rejected(vec![format!(
                "{file}: grants no permission at all (every caller would be refused)"
            )]));
        }
        if let Some(role) = inheritance_cycle(&rules) {
            return Err(PolicyError::Rejected(vec![format!(
                "{file}: role:{role} inherits from itself through `g` lines"
            )]));
        }
        if let Some(role) = too_deep(&rules) {
            return Err(PolicyError::Rejected(vec![format!(
                "{file}: role:{role} inherits through more than {MAX_INHERITANCE_DEPTH} levels of \
                 `g` lines (Casbin follows no more)"
            )]));
        }
        // What signed-out callers may do is decided before anything else: never manage who
        // may do what.
        if let Some(rule) = rules.iter().find(|rule| {
            matches!(rule, Rule::Grant { subject, permission: (object, action), .. }
                if subject == ANONYMOUS
                    && Permission::named(object, action).is_some_and(Permission::manages_access))
        }) {
            return Err(PolicyError::Rejected(vec![format!(
                "{file}: `{}`: callers without a token cannot manage accounts, roles or the policy",
                rule.to_line()
            )]));
        }
        let model_text = model;
        let names = role_names(&rules);
        let subjects: Vec<String> = std::iter::once(ANONYMOUS)
            .chain(names.iter().copied())
            .map(|name| format!("role:{name}"))
            .collect();
        let table = decide_all(model, &rules, subjects).await?;
        let decide = |index: usize| table[index];
        let anonymous = decide(0);
        let mut roles = BTreeMap::new();
        let mut order = Vec::new();
        for (index, name) in names.iter().copied().enumerate() {
            let Some(role) = Role::parse(name) else {
                continue; // `parse` refused such names already.
            };
            let inherits = rules
                .iter()
                .filter_map(|rule| match rule {
                    Rule::Inherit { member, parent } if *member == name => Role::parse(parent),
                    _ => None,
                })
                .collect();
            let grants = decide(index + 1);
            order.push(role.clone());
            roles.insert(
                role.clone(),
                RoleDefinition {
                    role,
                    inherits,
                    grants,
                },
            );
        }
        let authorizer = Self {
            anonymous,
            model: model_text.to_owned(),
            roles,
            order,
            rules,
            source,
            version,
        };
        if authorizer.managers().is_empty() {
            return Err(PolicyError::Rejected(vec![format!(
                "{file}: no role may `user, set_role`, so nobody could manage roles again \
                 (grant it, e.g. `p, role:admin, user, set_role`)"
            )]));
        }
        Ok(authorizer)
    }

    fn grants(&self, subject: Subject<'_>) -> Option<&Grants> {
        match subject {
            Subject::Anonymous => Some(&self.anonymous),
            // A role the policy does not define grants nothing.
            Subject::Role(role) => self.roles.get(role).map(|d| &d.grants),
        }
    }

    /// How far the policy lets `subject` have `permission`, if at all.
    pub fn reach(&self, subject: Subject<'_>, permission: Permission) -> Option<Reach> {
        self.grants(subject)?[permission.index()]
    }

    /// Whether the policy lets `subject` have `permission` (on some rows at least).
    pub fn allows(&self, subject: Subject<'_>, permission: Permission) -> bool {
        self.reach(subject, permission).is_some()
    }

    /// Every permission the policy grants `subject`, and how far each reaches.
    pub fn granted(&self, subject: Subject<'_>) -> Vec<(Permission, Reach)> {
        self.grants(subject).map(granted_in).unwrap_or_default()
    }

    /// The roles the policy defines, in the order it first names them.
    pub fn roles(&self) -> impl Iterator<Item = &RoleDefinition> {
        self.order.iter().filter_map(|role| self.roles.get(role))
    }

    /// The role with this name, when the policy defines it.
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name).map(|d| &d.role)
    }

    /// The roles that may manage roles (`user, set_role` on any account): the last active
    /// account with one of them keeps it.
    pub fn managers(&self) -> Vec<Role> {
        self.roles()
            .filter(|d| d.grants[Permission::UserSetRole.index()] == Some(Reach::Any))
            .map(|d| d.role.clone())
            .collect()
    }

    /// The model the policy was decided under (`model.conf`'s text).
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The policy's rules, in the order it lists them.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Where this policy was loaded from.
    pub fn source(&self) -> &PolicySource {
        &self.source
    }

    /// A short fingerprint of the policy.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Problems Casbin itself lets pass: lines of an unknown kind or shape, subjects that are
    /// not `role:` names, and permissions no guard asks about (usually a typo).
    pub fn lint(policy: &str) -> Vec<String> {
        parse(policy, "policy.csv").err().unwrap_or_default()
    }

    /// The role × permission table this policy grants, as text: `yes`, `own` (rows the
    /// caller owns) or `-`.
    pub fn table(&self) -> String {
        let mut columns = vec![(format!("role:{ANONYMOUS}"), &self.anonymous)];
        columns.extend(
            self.roles()
                .map(|d| (format!("role:{}", d.role), &d.grants)),
        );
        let width = columns
            .iter()
            .map(|(name, _)| name.len() + 2)
            .max()
            .unwrap_or(16);
        let mut lines = Vec::new();
        let mut header = format!("{:<24}", "permission");
        for (name, _) in &columns {
            header.push_str(&format!("{name:<width$}"));
        }
        lines.push(header);
        for permission in Permission::ALL {
            let (object, action) = permission.object_action();
            let mut line = format!("{:<24}", format!("{object} {action}"));
            for (_, grants) in &columns {
                let mark = match grants[permission.index()] {
                    Some(Reach::Any) => "yes",
                    Some(Reach::Own) => "own",
                    None => "-",
                };
                line.push_str(&format!("{mark:<width$}"));
            }
            lines.push(line);
        }
        lines
            .iter()
            .map(|l| format!("{}\n", l.trim_end()))
            .collect()
    }
}

/// Casbin's decisions for every subject (a `role:` name) and permission, each permission asked of
/// an enforcer that holds only its own grants and every `g` line: each request then runs the
/// matcher over that permission's rules only, not over the whole policy (a policy of 500 roles
/// loads in a fraction of the time). The requests run on a blocking thread, so a big policy
/// never holds up the async workers.
///
/// # Errors
/// `Invalid` when Casbin refuses the model or a request (a broken model: a missing section, a
/// matcher naming an unknown field) — the policy is refused rather than a decision guessed.
async fn decide_all(
    model: &str,
    rules: &[Rule],
    subjects: Vec<String>,
) -> Result<Vec<Grants>, PolicyError> {
    let invalid = |e: casbin::Error| PolicyError::Invalid(e.to_string());
    let subjects = Arc::new(subjects);
    let mut table = vec![[None; Permission::ALL.len()]; subjects.len()];
    for permission in Permission::ALL {
        let (object, action) = permission.object_action();
        let grants_it = |rule: &Rule| matches!(rule, Rule::Grant { permission: (o, a), .. } if o == object && a == action);
        if !rules.iter().any(grants_it) {
            continue;
        }
        let text = rules
            .iter()
            .filter(|rule| grants_it(rule) || matches!(rule, Rule::Inherit { .. }))
            .map(Rule::to_casbin_line)
            .collect::<Vec<_>>()
            .join("\n");
        let model = DefaultModel::from_str(model).await.map_err(invalid)?;
        let enforcer = Enforcer::new(model, StringAdapter::new(text))
            .await
            .map_err(invalid)?;
        let subjects = subjects.clone();
        let column = tokio::task::spawn_blocking(move || {
            subjects
                .iter()
                .map(|subject| {
                    let on_others = (subject.as_str(), object, action, "caller", "someone else");
                    let on_own = (subject.as_str(), object, action, "caller", "caller");
                    Ok(if enforcer.enforce(on_others)? {
                        Some(Reach::Any)
                    } else if enforcer.enforce(on_own)? {
                        Some(Reach::Own)
                    } else {
                        None
                    })
                })
                .collect::<Result<Vec<_>, casbin::Error>>()
        })
        .await
        .map_err(|e| PolicyError::Invalid(e.to_string()))?
        .map_err(invalid)?;
        for (grants, reach) in table.iter_mut().zip(column) {
            grants[permission.index()] = reach;
        }
    }
    Ok(table)
}

/// The longest chain of `g` lines Casbin's role manager follows (measured: a role ten links
/// away is not reached).
const MAX_INHERITANCE_DEPTH: usize = 9;

/// A role whose chain of parents is longer than [`MAX_INHERITANCE_DEPTH`], if any (the rules
/// have no cycle).
fn too_deep(rules: &[Rule]) -> Option<&str> {
    fn depth(rules: &[Rule], role: &str, below: usize) -> usize {
        if below > MAX_INHERITANCE_DEPTH {
            return below;
        }
        rules
            .iter()
            .filter_map(|rule| match rule {
                Rule::Inherit { member, parent } if member == role => {
                    Some(depth(rules, parent, below + 1))
                }
                _ => None,
            })
            .max()
            .unwrap_or(below)
    }
    role_names(rules)
        .into_iter()
        .find(|role| depth(rules, role, 0) > MAX_INHERITANCE_DEPTH)
}

/// A role that inherits from itself, directly or through others, if any.
fn inheritance_cycle(rules: &[Rule]) -> Option<&str> {
    let parents = |role: &str| -> Vec<&str> {
        rules
            .iter()
            .filter_map(|rule| match rule {
                Rule::Inherit { member, parent } if member == role => Some(parent.as_str()),
                _ => None,
            })
            .collect()
    };
    role_names(rules).into_iter().find(|start| {
        let mut seen = BTreeSet::new();
        let mut next = parents(start);
        while let Some(role) = next.pop() {
            if role == *start {
                return true;
            }
            if seen.insert(role) {
                next.extend(parents(role));
            }
        }
        false
    })
}

/// Every role the rules name, `anonymous` aside, in the order the policy first names them.
fn role_names(rules: &[Rule]) -> Vec<&str> {
    let mut seen = BTreeSet::new();
    rules
        .iter()
        .flat_map(|rule| match rule {
            Rule::Grant { subject, .. } => [Some(subject.as_str()), None],
            Rule::Inherit { member, parent } => [Some(member.as_str()), Some(parent.as_str())],
        })
        .flatten()
        .filter(|name| *name != ANONYMOUS && seen.insert(*name))
        .collect()
}

/// The rules of a policy text, or every problem with it, each naming `file` and the line:
/// lines of an unknown kind or shape, subjects that are not well-formed `role:` names,
/// permissions no guard asks about (usually a typo), and `own` on a permission that has no row
/// to own. Comment lines (`#`) and blank lines are skipped.
///
/// # Errors
/// The problems, when there is any.
pub fn parse(policy: &str, file: &str) -> Result<Vec<Rule>, Vec<String>> {
    let mut problems = Vec::new();
    let mut rules = Vec::new();
    for (number, line) in policy.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let at = format!("{file} line {}", number + 1);
        match fields.as_slice() {
            ["p", subject, object, action, reach @ ..] if reach.len() <= 1 => {
                let subject = role_name(subject, &at, &mut problems);
                let permission = Permission::named(object, action);
                if permission.is_none() {
                    problems.push(format!(
                        "{at}: no guard asks for `{object}, {action}` (known: {})",
                        Permission::ALL
                            .iter()
                            .map(|p| format!("{} {}", p.object_action().0, p.object_action().1))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                let reach = match reach.first().copied() {
                    None | Some("any") => Some(ReachName::Any),
                    Some("own") if permission.is_some_and(|p| !p.can_be_owned()) => {
                        problems.push(format!(
                            "{at}: `{object}, {action}` cannot be limited to `own` rows \
                             (only {} can)",
                            Permission::ALL
                                .iter()
                                .filter(|p| p.can_be_owned())
                                .map(|p| format!(
                                    "`{}, {}`",
                                    p.object_action().0,
                                    p.object_action().1
                                ))
                                .collect::<Vec<_>>()
                                .join(" and ")
                        ));
                        None
                    }
                    Some("own") => Some(ReachName::Own),
                    Some(other) => {
                        problems.push(format!(
                            "{at}: the fourth field is `own` or `any`, not `{other}`"
                        ));
                        None
                    }
                };
                if let (Some(subject), Some(_), Some(reach)) = (subject, permission, reach) {
                    rules.push(Rule::Grant {
                        subject,
                        permission: ((*object).to_owned(), (*action).to_owned()),
                        reach,
                    });
                }
            }
            ["g", member, parent] => {
                let member = role_name(member, &at, &mut problems);
                let parent = role_name(parent, &at, &mut problems);
                if let (Some(member), Some(parent)) = (member, parent) {
                    rules.push(Rule::Inherit { member, parent });
                }
            }
            _ => problems.push(format!(
                "{at}: expected `p, role:<name>, <object>, <action>[, own]` or \
                 `g, role:<a>, role:<b>`"
            )),
        }
    }
    if problems.is_empty() {
        Ok(rules)
    } else {
        Err(problems)
    }
}

/// The role name after `role:` in `subject` (`anonymous` included), or a problem.
fn role_name(subject: &str, at: &str, problems: &mut Vec<String>) -> Option<String> {
    let Some(name) = subject.strip_prefix("role:") else {
        problems.push(format!("{at}: `{subject}` is not a `role:` name"));
        return None;
    };
    if name != ANONYMOUS && Role::parse(name).is_none() {
        problems.push(format!(
            "{at}: `{subject}`: a role name is 1–32 characters of a–z, 0–9, `_` and `-`, \
             starting with a letter"
        ));
        return None;
    }
    Some(name.to_owned())
}

/// The policy in force, which SIGHUP can replace while requests run: each check reads one
/// whole [`Authorizer`], never a mix of the old policy and the new.
#[derive(Debug)]
pub struct SharedAuthorizer {
    current: RwLock<Arc<Authorizer>>,
    dir: PathBuf,
    dir_is_default: bool,
    /// The accounts a new policy is checked against; none for the CLI's checks.
    db: Option<Db>,
    /// The model, when the rules live in the database (`POLICY_SOURCE=database`).
    stored_model: Option<String>,
    /// The role `register` gives, once checked: every later policy must define it.
    default_role: std::sync::OnceLock<Role>,
}

impl SharedAuthorizer {
    /// Loads the policy as [`Authorizer::load`] does, remembering where for [`Self::reload`].
    ///
    /// # Errors
    /// As [`Authorizer::load`].
    /// With `db`, a new policy is put in force only if it leaves an active account able to
    /// manage roles when one is now (see [`Self::reload`]).
    pub async fn load(
        dir: &Path,
        dir_is_default: bool,
        db: Option<Db>,
    ) -> Result<Self, PolicyError> {
        let authorizer = Authorizer::load(dir, dir_is_default).await?;
        Ok(Self {
            current: RwLock::new(Arc::new(authorizer)),
            dir: dir.to_owned(),
            dir_is_default,
            db,
            stored_model: None,
            default_role: std::sync::OnceLock::new(),
        })
    }

    /// The policy kept in the database (`POLICY_SOURCE=database`), with the model of `dir`
    /// (or the built-in one, as [`Authorizer::load`] picks it). On the first start, when no
    /// rule is stored yet, stores the rules of `dir`'s `policy.csv` (checked first); replicas
    /// starting together store them once.
    ///
    /// # Errors
    /// As [`Authorizer::load`] for the files; `Database` when the rules could not be read or
    /// stored; `Rejected` when the stored rules are not a valid policy.
    pub async fn load_stored(
        dir: &Path,
        dir_is_default: bool,
        db: Db,
    ) -> Result<Self, PolicyError> {
        let (model, policy, source) = read_files(dir, dir_is_default)?;
        let file = Authorizer::from_texts(&model, &policy, source).await?;
        let seed: String = file
            .rules()
            .iter()
            .map(|rule| rule.to_line() + "\n")
            .collect();
        let seeded = adapter::seed_if_empty(&db, &seed)
            .await
            .map_err(|err| PolicyError::Database(format!("{err:?}")))?;
        if seeded {
            tracing::info!(
                rules = file.rules().len(),
                "no policy was stored: stored the policy files' rules"
            );
        }
        let authorizer = Authorizer::from_store(&model, db.reader()).await?;
        Ok(Self {
            current: RwLock::new(Arc::new(authorizer)),
            dir: dir.to_owned(),
            dir_is_default,
            db: Some(db),
            stored_model: Some(model),
            default_role: std::sync::OnceLock::new(),
        })
    }

    /// Reads the policy files again and puts the new policy in force; a policy that does not
    /// load or validate is refused and the one in force stays. So is one under which no
    /// active account could manage roles any more while one can now: the check and the switch
    /// hold the lock that role changes, deactivations and deletions take, so none of them can
    /// slip in between.
    ///
    /// # Errors
    /// As [`Authorizer::load`]; `Rejected` for a policy that would leave nobody able to manage
    /// roles; `Database` when the accounts could not be read.
    pub async fn reload(&self) -> Result<Arc<Authorizer>, PolicyError> {
        if let (Some(model), Some(db)) = (&self.stored_model, &self.db) {
            // Stored changes were checked before they were stored.
            let authorizer = Arc::new(Authorizer::from_store(model, db.reader()).await?);
            return Ok(self.set_current(authorizer));
        }
        let authorizer = Arc::new(Authorizer::load(&self.dir, self.dir_is_default).await?);
        self.put_in_force(authorizer.clone()).await?;
        Ok(authorizer)
    }

    /// Whether `policy` defines the role `register` gives (when it was checked).
    fn keeps_default_role(&self, policy: &Authorizer) -> Result<(), String> {
        match self.default_role.get() {
            Some(role) => default_role_problem(policy, role).map_or(Ok(()), Err),
            None => Ok(()),
        }
    }

    async fn put_in_force(&self, new: Arc<Authorizer>) -> Result<(), PolicyError> {
        self.keeps_default_role(&new)
            .map_err(|problem| PolicyError::Rejected(vec![problem]))?;
        let swap = || {
            self.set_current(new.clone());
        };
        let Some(db) = &self.db else {
            swap();
            return Ok(());
        };
        let checked = db::write(db, async |txn| {
            db::lock_role_changes(txn).await?;
            let managing_now = active_accounts_in(txn, &self.current().managers()).await?;
            let managing_then = active_accounts_in(txn, &new.managers()).await?;
            if managing_now > 0 && managing_then == 0 {
                return Ok(Err(PolicyError::Rejected(vec![format!(
                    "no active account could manage roles (`user, set_role`) under this policy: \
                     it grants that only to {}, which no active account has",
                    new.managers()
                        .iter()
                        .map(|role| format!("role:{role}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )])));
            }
            swap();
            if managing_then == 0 {
                warn_nobody_manages(txn).await?;
            }
            Ok(Ok(()))
        })
        .await;
        checked.map_err(|err| PolicyError::Database(format!("{err:?}")))?
    }

    /// Logs an error when accounts exist but none that is active may manage roles (as after
    /// replicas ran different policies while managers were removed): only `create-admin`
    /// mends that.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn check_someone_manages(&self) -> AppResult<()> {
        let Some(db) = &self.db else {
            return Ok(());
        };
        if active_accounts_in(db.reader(), &self.current().managers()).await? == 0 {
            warn_nobody_manages(db.reader()).await?;
        }
        Ok(())
    }

    /// Reads the policy files (or the stored policy) every `every`, and at once when `wake` is
    /// woken (a change to the stored policy was heard of), and, when they hold another policy
    /// than the one in force, puts it in force as [`Self::reload`] does: a policy that is
    /// refused is logged once and the one in force stays (until the files change again). Does
    /// nothing for the built-in copy, or when `every` is zero. The task ends once the
    /// authorizer is dropped.
    pub fn spawn_watcher(self: &Arc<Self>, every: Duration, wake: crate::db::Wake) {
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
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = wake.woken() => {}
                }
                let Some(authz) = watched.upgrade() else {
                    return;
                };
                // A file being replaced may be missing for a moment, a database may not answer:
                // wait for it.
                let Some(on_disk) = authz.source_version().await else {
                    continue;
                };
                let before = authz.version();
                if on_disk == before {
                    // Back to the policy in force: a text refused before is tried again if it
                    // comes back (what refused it may have changed).
                    refused = None;
                    continue;
                }
                if refused.as_ref() == Some(&on_disk) {
                    continue;
                }
                match authz.reload().await {
                    Ok(policy) => tracing::info!(
                        source = %policy.source(),
                        version = policy.version(),
                        previous_version = before,
                        "the policy changed: authorization policy reloaded"
                    ),
                    Err(err) => {
                        tracing::error!(
                            error = %err,
                            version = before,
                            "the policy changed, but the new policy was refused; the previous one stays in force"
                        );
                        // A file missing for a moment, or a database that did not answer, is
                        // tried again; a refused text is not.
                        if !matches!(err, PolicyError::Read { .. } | PolicyError::Database(_)) {
                            refused = Some(on_disk);
                        }
                    }
                }
            }
        });
    }

    /// The version of the policy where it is kept, when it can be read: the stored policy's,
    /// or the one the files would have.
    async fn source_version(&self) -> Option<String> {
        match (&self.stored_model, &self.db) {
            (Some(_), Some(db)) => adapter::version(db.reader()).await.ok().map(stored_version),
            _ => self.files_version(),
        }
    }

    /// The version the policy files would have, when both can be read.
    fn files_version(&self) -> Option<String> {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).ok();
        Some(fingerprint(&read("model.conf")?, &read("policy.csv")?))
    }

    /// Checks that the policy in force defines `role`, the role `register` gives.
    ///
    /// # Errors
    /// `Rejected`, naming the roles it defines, when it does not.
    /// Every policy put in force later must define it too (a new policy file or a stored
    /// change that drops it is refused).
    pub fn check_default_role(&self, role: &Role) -> Result<(), PolicyError> {
        let policy = self.current();
        if let Some(problem) = default_role_problem(&policy, role) {
            return Err(PolicyError::Rejected(vec![problem]));
        }
        let _ = self.default_role.set(role.clone());
        Ok(())
    }

    /// The policy in force, as `txn` sees it: with the policy in the database, the stored one
    /// is read (and put in force) when its version is not the one in force yet, so a decision
    /// made under the role-change lock never rests on a policy another replica replaced.
    ///
    /// # Errors
    /// On a database failure; a stored policy that does not load leaves the one in force.
    pub async fn current_in(&self, txn: &impl ConnectionTrait) -> AppResult<Arc<Authorizer>> {
        let current = self.current();
        let Some(model) = &self.stored_model else {
            return Ok(current);
        };
        let stored = stored_version(adapter::version(txn).await?);
        if stored == current.version() {
            return Ok(current);
        }
        match Authorizer::from_store(model, txn).await {
            Ok(policy) => Ok(self.set_current(Arc::new(policy))),
            Err(err) => {
                tracing::error!(error = %err, "the stored policy does not load; the one in force stays");
                Ok(current)
            }
        }
    }

    /// Puts `policy` in force, unless it is a stored policy older than the one in force (two
    /// loads racing: the one that finishes last may have read the earlier version, and the
    /// change it missed would be undone here until the next poll); returns the one in force.
    fn set_current(&self, policy: Arc<Authorizer>) -> Arc<Authorizer> {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        match (
            stored_number(policy.version()),
            stored_number(current.version()),
        ) {
            (Some(new), Some(now)) if new < now => current.clone(),
            _ => {
                *current = policy.clone();
                policy
            }
        }
    }

    /// The policy in force now.
    pub fn current(&self) -> Arc<Authorizer> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How far the policy in force lets `subject` have `permission`, if at all.
    pub fn reach(&self, subject: Subject<'_>, permission: Permission) -> Option<Reach> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .reach(subject, permission)
    }

    /// Whether the policy in force lets `subject` have `permission` (on some rows at least).
    pub fn allows(&self, subject: Subject<'_>, permission: Permission) -> bool {
        self.reach(subject, permission).is_some()
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

/// Logs, when there are active accounts, that none of them may manage roles.
async fn warn_nobody_manages(db: &impl ConnectionTrait) -> AppResult<()> {
    let active = account::Entity::find()
        .filter(account::Column::DeactivatedAt.is_null())
        .count(db)
        .await?;
    if active > 0 {
        tracing::error!(
            active_accounts = active,
            "no active account may manage roles (`user, set_role`) under the policy in force: \
             run `storefront create-admin --username <name>` to give one the managing role"
        );
    }
    Ok(())
}

/// How many active accounts have one of `roles`.
async fn active_accounts_in(txn: &impl ConnectionTrait, roles: &[Role]) -> AppResult<u64> {
    Ok(account::Entity::find()
        .filter(account::Column::Role.is_in(roles.iter().map(Role::to_string)))
        .filter(account::Column::DeactivatedAt.is_null())
        .count(txn)
        .await?)
}

/// Why `policy` cannot go with `role` as the role `register` gives, if it cannot: it must
/// define it, and the role must not manage who may do what (anyone could sign up for it).
fn default_role_problem(policy: &Authorizer, role: &Role) -> Option<String> {
    if policy.role(role.as_str()).is_none() {
        let defined: Vec<&str> = policy.roles().map(|d| d.role.as_str()).collect();
        return Some(format!(
            "DEFAULT_ROLE `{role}` is not a role the policy ({}) defines; it defines: {}",
            policy.source(),
            defined.join(", ")
        ));
    }
    let managing = Permission::ALL.into_iter().find(|permission| {
        permission.manages_access() && policy.allows(Subject::Role(role), *permission)
    })?;
    let (object, action) = managing.object_action();
    Some(format!(
        "DEFAULT_ROLE `{role}` may `{object}, {action}` under the policy ({}): everyone who \
         registers would; give `register` a role that manages nothing",
        policy.source()
    ))
}

/// The version of the policy stored in the database, as `/metrics` and `/readyz` show it.
fn stored_version(number: i64) -> String {
    format!("db-{number}")
}

/// The number of a stored policy's version (see [`stored_version`]); `None` for files.
fn stored_number(version: &str) -> Option<i64> {
    version.strip_prefix("db-")?.parse().ok()
}

/// The texts of `model.conf` and `policy.csv` in `dir`, or the built-in copies when `dir` does
/// not exist and was not named, and where they came from.
fn read_files(
    dir: &Path,
    dir_is_default: bool,
) -> Result<(String, String, PolicySource), PolicyError> {
    if !dir.exists() && dir_is_default {
        return Ok((
            BUILT_IN_MODEL.to_owned(),
            BUILT_IN_POLICY.to_owned(),
            PolicySource::BuiltIn,
        ));
    }
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })
    };
    Ok((
        read("model.conf")?,
        read("policy.csv")?,
        PolicySource::Folder(dir.to_owned()),
    ))
}

/// A policy's version: a fingerprint of its model and its policy text.
fn fingerprint(model: &str, policy: &str) -> String {
    crate::auth::sha256_hex(format!("{model}\0{policy}").as_bytes())[..12].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn built_in() -> Authorizer {
        Authorizer::from_texts(BUILT_IN_MODEL, BUILT_IN_POLICY, PolicySource::BuiltIn)
            .await
            .unwrap()
    }

    fn role(name: &str) -> Role {
        Role::parse(name).unwrap()
    }

    #[tokio::test]
    async fn admin_inherits_everything_a_user_may_do() {
        let authz = built_in().await;
        let (user, admin) = (role("user"), role("admin"));
        for permission in Permission::ALL {
            if authz.allows(Subject::Role(&user), permission) {
                assert!(authz.allows(Subject::Role(&admin), permission));
            }
        }
        assert!(authz.allows(Subject::Role(&admin), Permission::ProductRead));
    }

    #[tokio::test]
    async fn built_in_policy_grants_what_the_product_promises() {
        let authz = built_in().await;
        let (user, admin) = (role("user"), role("admin"));
        let user = Subject::Role(&user);
        let admin = Subject::Role(&admin);
        assert!(authz.allows(user, Permission::AccountRead));
        assert!(authz.allows(user, Permission::ProductRead));
        assert!(!authz.allows(user, Permission::ProductCreate));
        assert!(!authz.allows(user, Permission::ProductReadCreator));
        assert!(!authz.allows(user, Permission::UserSetRole));
        for permission in Permission::ALL {
            assert_eq!(
                authz.reach(admin, permission),
                Some(Reach::Any),
                "{permission:?}"
            );
            assert!(
                !authz.allows(Subject::Anonymous, permission),
                "{permission:?}"
            );
        }
        let names: Vec<&str> = authz.roles().map(|d| d.role.as_str()).collect();
        assert_eq!(names, ["user", "admin"]);
        assert_eq!(authz.managers(), [role("admin")]);
    }

    #[tokio::test]
    async fn roles_come_from_the_policy_and_an_undefined_one_grants_nothing() {
        let policy = "p, role:admin, user, set_role\n\
                      p, role:editor, product, update\n\
                      p, role:seller, product, update, own\n\
                      p, role:seller, product, delete, own\n\
                      g, role:seller, role:shopper\n\
                      p, role:shopper, product, read";
        let authz = Authorizer::from_texts(BUILT_IN_MODEL, policy, PolicySource::BuiltIn)
            .await
            .unwrap();
        let names: Vec<&str> = authz.roles().map(|d| d.role.as_str()).collect();
        assert_eq!(names, ["admin", "editor", "seller", "shopper"]);
        let (editor, seller) = (role("editor"), role("seller"));
        assert_eq!(
            authz.reach(Subject::Role(&editor), Permission::ProductUpdate),
            Some(Reach::Any)
        );
        assert_eq!(
            authz.reach(Subject::Role(&seller), Permission::ProductUpdate),
            Some(Reach::Own)
        );
        assert!(authz.allows(Subject::Role(&seller), Permission::ProductRead));
        assert!(!authz.allows(Subject::Role(&editor), Permission::ProductDelete));
        let gone = role("user");
        assert!(authz.granted(Subject::Role(&gone)).is_empty());
        assert!(authz.role("user").is_none());
        let seller = authz.roles().find(|d| d.role.as_str() == "seller").unwrap();
        assert_eq!(seller.inherits, [role("shopper")]);
    }

    #[test]
    fn lint_finds_typos_user_chosen_subjects_and_misplaced_ownership() {
        assert!(Authorizer::lint(BUILT_IN_POLICY).is_empty());
        let problems = Authorizer::lint(
            "p, role:user, prodcut, read\np, alice, product, read\ng, role:admin\nx, y\n\
             p, role:user, product, read, own\np, role:user, product, update, mine\n\
             p, role:Bad Name, product, read",
        );
        assert_eq!(problems.len(), 7, "{problems:?}");
        assert!(problems[0].contains("prodcut"));
        assert!(problems[4].contains("cannot be limited to `own`"));
        assert!(problems[5].contains("`own` or `any`"));
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

    #[tokio::test]
    async fn inheritance_deeper_than_casbin_follows_is_refused() {
        let mut policy =
            String::from("p, role:admin, user, set_role\np, role:r10, product, read\n");
        for level in 0..10 {
            policy.push_str(&format!("g, role:r{level}, role:r{}\n", level + 1));
        }
        let err = Authorizer::from_texts(BUILT_IN_MODEL, &policy, PolicySource::BuiltIn)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("more than 9 levels"), "{err}");
        // Nine levels are followed, and granted.
        let nine = policy.replace("g, role:r9, role:r10\n", "p, role:r9, product, read\n");
        let authz = Authorizer::from_texts(BUILT_IN_MODEL, &nine, PolicySource::BuiltIn)
            .await
            .unwrap();
        assert!(authz.allows(Subject::Role(&role("r0")), Permission::ProductRead));
    }

    #[tokio::test]
    async fn callers_without_a_token_cannot_be_given_access_management() {
        for grant in [
            "user, set_role",
            "user, deactivate",
            "user, reactivate",
            "policy, manage",
        ] {
            let policy = format!("p, role:admin, user, set_role\np, role:anonymous, {grant}");
            let err = Authorizer::from_texts(BUILT_IN_MODEL, &policy, PolicySource::BuiltIn)
                .await
                .unwrap_err();
            assert!(
                err.to_string().contains("without a token"),
                "{grant}: {err}"
            );
        }
        let browsing = "p, role:admin, user, set_role\np, role:anonymous, product, read";
        Authorizer::from_texts(BUILT_IN_MODEL, browsing, PolicySource::BuiltIn)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_cycle_of_inheritance_is_refused() {
        let policy = "p, role:admin, user, set_role\ng, role:a, role:b\ng, role:b, role:a";
        let err = Authorizer::from_texts(BUILT_IN_MODEL, policy, PolicySource::BuiltIn)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("inherits from itself"), "{err}");
    }

    #[tokio::test]
    async fn a_policy_where_nobody_may_manage_roles_is_refused() {
        let err = Authorizer::from_texts(
            BUILT_IN_MODEL,
            "p, role:user, product, read",
            PolicySource::BuiltIn,
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("set_role"), "{err}");
    }
}
