//! The Casbin policy kept in the database (`POLICY_SOURCE=database`): a [`casbin::Adapter`]
//! over sea-orm 2, and what a server needs around it: seeding from the policy files, the
//! version replicas poll, and export back to `policy.csv` text.
//!
//! Rules live in `casbin_rules`, one a row (`ptype`, `v0`…`v5`, unused values `''`); a unique
//! index makes a rule impossible to store twice. Every change runs in one [`db::write`]
//! transaction, in which database triggers bump `policy_version`, so a change and its new
//! version commit together whoever makes them, and a replica that sees the version change
//! reloads. A replica should read [`version`] before it loads the rules: a change committed in
//! between only makes its next poll load once more.
//!
//! Writers of the policy are serialized (SQLite's write lock; on PostgreSQL the version row,
//! locked first by every write here), so a check-then-write such as [`seed_if_empty`] or an
//! all-or-nothing batch cannot interleave with another replica's.
//!
//! Semantics, as Casbin's own model has them: adding a rule already stored is a no-op that
//! answers `false` (no error, no new version), as is removing one that is not stored; a batch
//! (`add_policies`, `remove_policies`) changes all its rules or, if any one is already there
//! (resp. missing), none.

use std::cmp::Ordering;

use casbin::{Adapter, Filter, Model, error::AdapterError};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, Statement,
};

use crate::{
    db::{self, Db},
    entities::casbin_rule::{self, Column},
    error::{AppError, AppResult},
};

/// The most values a stored rule can have (`v0`…`v5`).
pub const MAX_VALUES: usize = 6;

/// A [`casbin::Adapter`] that stores the policy in `casbin_rules`.
///
/// It holds the database's pools: reads go to the readers, every change through
/// [`db::write`] on the writer, committed before the adapter answers.
#[derive(Clone, Debug)]
pub struct DbAdapter {
    db: Db,
    /// Whether the last load was filtered (then Casbin refuses to save the partial policy).
    filtered: bool,
}

impl DbAdapter {
    /// An adapter over `db`, whose migrations have run.
    pub fn new(db: Db) -> Self {
        Self {
            db,
            filtered: false,
        }
    }
}

/// A failure of the policy storage, as a Casbin error carries it; [`app_error`] takes the
/// [`AppError`] back out. Its text (the database's own included) is for the log, never for a
/// client: answer with [`app_error`]'s result.
#[derive(Debug)]
pub struct StorageError(pub AppError);

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "policy storage failed: {:?}", self.0)
    }
}

impl std::error::Error for StorageError {}

/// The [`AppError`] behind a Casbin error: the storage's own when the adapter failed (an
/// unavailable database stays "unavailable"), internal otherwise.
pub fn app_error(err: casbin::Error) -> AppError {
    match err {
        casbin::Error::AdapterError(AdapterError(inner)) => {
            match inner.downcast::<StorageError>() {
                Ok(storage) => storage.0,
                Err(other) => AppError::internal(other),
            }
        }
        other => AppError::internal(other),
    }
}

fn storage_error(err: impl Into<AppError>) -> casbin::Error {
    AdapterError(Box::new(StorageError(err.into()))).into()
}

/// One rule: its type and its values, without trailing empty values.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Rule {
    ptype: String,
    values: Vec<String>,
}

impl Rule {
    /// A rule to store; refused when it cannot be stored or written back as `policy.csv`.
    fn new(ptype: &str, mut values: Vec<String>) -> AppResult<Self> {
        while values.last().is_some_and(String::is_empty) {
            values.pop();
        }
        let problem = if !(ptype.starts_with('p') || ptype.starts_with('g'))
            || !ptype.chars().all(|c| c.is_ascii_alphanumeric())
        {
            Some(format!("rule type {ptype:?} is neither p… nor g…"))
        } else if values.len() > MAX_VALUES {
            Some(format!("a rule has at most {MAX_VALUES} values"))
        } else if values.iter().any(|v| v.contains(['"', '\n', '\r'])) {
            Some("a rule value cannot contain a double quote or a line break".to_owned())
        } else {
            None
        };
        match problem {
            Some(message) => Err(AppError::BadUserInput {
                field: "rule",
                message,
            }),
            None => Ok(Self {
                ptype: ptype.to_owned(),
                values,
            }),
        }
    }

    fn from_row(row: casbin_rule::Model) -> Self {
        let mut values = vec![row.v0, row.v1, row.v2, row.v3, row.v4, row.v5];
        while values.last().is_some_and(String::is_empty) {
            values.pop();
        }
        Self {
            ptype: row.ptype,
            values,
        }
    }

    /// `p` or `g`: the model section of the rule's type.
    fn section(&self) -> &str {
        &self.ptype[..1]
    }

    fn value(&self, index: usize) -> &str {
        self.values.get(index).map_or("", String::as_str)
    }

    /// The rule as a `policy.csv` line.
    fn to_csv(&self) -> String {
        let mut line = self.ptype.clone();
        for value in &self.values {
            line.push_str(", ");
            if value.contains(',') || value.trim() != value {
                line.push('"');
                line.push_str(value);
                line.push('"');
            } else {
                line.push_str(value);
            }
        }
        line
    }

    /// The condition matching exactly this rule.
    fn condition(&self) -> Condition {
        (0..MAX_VALUES).fold(
            Condition::all().add(Column::Ptype.eq(self.ptype.as_str())),
            |all, i| all.add(value_column(i).eq(self.value(i))),
        )
    }
}

fn value_column(index: usize) -> Column {
    [
        Column::V0,
        Column::V1,
        Column::V2,
        Column::V3,
        Column::V4,
        Column::V5,
    ][index]
}

/// Parses `policy.csv` text as Casbin's file adapter does: one rule a line, values separated
/// by commas and trimmed, a value in double quotes kept as is; blank lines and lines starting
/// with `#` skipped.
fn parse_policy(text: &str) -> AppResult<Vec<Rule>> {
    let mut rules = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        for c in line.chars() {
            match c {
                '"' => {
                    quoted = !quoted;
                    field.push(c);
                }
                ',' if !quoted => fields.push(unquote(&std::mem::take(&mut field))),
                c => field.push(c),
            }
        }
        fields.push(unquote(&field));
        let ptype = fields.remove(0);
        let rule = Rule::new(&ptype, fields).map_err(|err| match err {
            AppError::BadUserInput { field, message } => AppError::BadUserInput {
                field,
                message: format!("line {}: {message}", number + 1),
            },
            other => other,
        })?;
        rules.push(rule);
    }
    Ok(rules)
}

fn unquote(field: &str) -> String {
    let field = field.trim();
    match field.strip_prefix('"').and_then(|f| f.strip_suffix('"')) {
        Some(inner) => inner.to_owned(),
        None => field.to_owned(),
    }
}

/// The stored rules, in the order they were stored.
async fn load_rules(db: &impl ConnectionTrait, filter: Condition) -> Result<Vec<Rule>, DbErr> {
    Ok(casbin_rule::Entity::find()
        .filter(filter)
        .order_by_asc(Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(Rule::from_row)
        .collect())
}

/// Puts `rules` into Casbin's model, each with as many values as its definition has (a rule
/// stored with fewer gets `""` for the rest); a rule whose type the model does not define is
/// skipped, as Casbin's file adapter does.
fn add_to_model(m: &mut dyn Model, rules: Vec<Rule>) {
    for rule in rules {
        let Some(ast) = m
            .get_mut_model()
            .get_mut(rule.section())
            .and_then(|section| section.get_mut(&rule.ptype))
        else {
            tracing::warn!(
                ptype = %rule.ptype,
                "a stored policy rule has a type the model does not define; skipped"
            );
            continue;
        };
        let arity = if ast.tokens.is_empty() {
            ast.value.matches('_').count()
        } else {
            ast.tokens.len()
        };
        let mut values = rule.values;
        if values.len() < arity {
            values.resize(arity, String::new());
        }
        ast.get_mut_policy().insert(values);
    }
}

/// Every rule of Casbin's model, `p` sections first.
fn model_rules(m: &dyn Model) -> AppResult<Vec<Rule>> {
    let mut rules = Vec::new();
    for section in ["p", "g"] {
        let Some(assertions) = m.get_model().get(section) else {
            continue;
        };
        for (ptype, ast) in assertions {
            for values in ast.get_policy() {
                rules.push(Rule::new(ptype, values.clone())?);
            }
        }
    }
    Ok(rules)
}

/// Serializes this transaction with every other writer of the policy. SQLite's
/// `BEGIN IMMEDIATE` (see [`db::write`]) already holds the database's write lock; on PostgreSQL
/// the version row is locked until the transaction ends.
async fn lock(txn: &DatabaseTransaction) -> Result<(), DbErr> {
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared("SELECT version FROM policy_version WHERE id = 1 FOR UPDATE")
            .await?;
    }
    Ok(())
}

/// Stores `rule` unless it is stored already; whether it was stored.
async fn insert(txn: &DatabaseTransaction, rule: &Rule) -> Result<bool, DbErr> {
    let mut values = vec![rule.ptype.clone().into()];
    values.extend((0..MAX_VALUES).map(|i| rule.value(i).into()));
    let stored = txn
        .execute_raw(Statement::from_sql_and_values(
            txn.get_database_backend(),
            "INSERT INTO casbin_rules (ptype, v0, v1, v2, v3, v4, v5) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            values,
        ))
        .await?;
    Ok(stored.rows_affected() == 1)
}

async fn delete(txn: &DatabaseTransaction, filter: Condition) -> Result<u64, DbErr> {
    Ok(casbin_rule::Entity::delete_many()
        .filter(filter)
        .exec(txn)
        .await?
        .rows_affected)
}

async fn is_stored(txn: &DatabaseTransaction, rule: &Rule) -> Result<bool, DbErr> {
    Ok(casbin_rule::Entity::find()
        .filter(rule.condition())
        .count(txn)
        .await?
        > 0)
}

/// Replaces every stored rule with `rules`.
async fn replace_all(db: &Db, rules: Vec<Rule>) -> AppResult<()> {
    db::write(db, async |txn| {
        lock(txn).await?;
        delete(txn, Condition::all()).await?;
        for rule in &rules {
            insert(txn, rule).await?;
        }
        Ok(())
    })
    .await
}

/// Stores all of `rules`, or none when one of them is stored already; whether they were.
async fn add_all(db: &Db, rules: Vec<Rule>) -> AppResult<bool> {
    db::write(db, async |txn| {
        lock(txn).await?;
        for rule in &rules {
            if is_stored(txn, rule).await? {
                return Ok(false);
            }
        }
        for rule in &rules {
            insert(txn, rule).await?;
        }
        Ok(true)
    })
    .await
}

/// Removes all of `rules`, or none when one of them is not stored; whether they were removed.
async fn remove_all(db: &Db, rules: Vec<Rule>) -> AppResult<bool> {
    db::write(db, async |txn| {
        lock(txn).await?;
        for rule in &rules {
            if !is_stored(txn, rule).await? {
                return Ok(false);
            }
        }
        for rule in &rules {
            delete(txn, rule.condition()).await?;
        }
        Ok(true)
    })
    .await
}

fn rules_of(ptype: &str, rules: Vec<Vec<String>>) -> AppResult<Vec<Rule>> {
    rules
        .into_iter()
        .map(|values| Rule::new(ptype, values))
        .collect()
}

#[async_trait::async_trait]
impl Adapter for DbAdapter {
    async fn load_policy(&mut self, m: &mut dyn Model) -> casbin::Result<()> {
        let rules = load_rules(self.db.reader(), Condition::all())
            .await
            .map_err(storage_error)?;
        add_to_model(m, rules);
        self.filtered = false;
        Ok(())
    }

    /// Loads the rules whose values start with the filter's (`p` values for `p…` rules, `g`
    /// values for `g…` rules; an empty filter value matches anything).
    async fn load_filtered_policy<'a>(
        &mut self,
        m: &mut dyn Model,
        f: Filter<'a>,
    ) -> casbin::Result<()> {
        let section = |prefix: &str, values: &[&str]| {
            values
                .iter()
                .take(MAX_VALUES)
                .enumerate()
                .filter(|(_, value)| !value.is_empty())
                .fold(
                    Condition::all().add(Column::Ptype.starts_with(prefix)),
                    |all, (i, value)| all.add(value_column(i).eq(*value)),
                )
        };
        let filter = Condition::any()
            .add(section("p", &f.p))
            .add(section("g", &f.g));
        let rules = load_rules(self.db.reader(), filter)
            .await
            .map_err(storage_error)?;
        add_to_model(m, rules);
        self.filtered = f.p.iter().chain(&f.g).any(|value| !value.is_empty());
        Ok(())
    }

    async fn save_policy(&mut self, m: &mut dyn Model) -> casbin::Result<()> {
        let rules = model_rules(m).map_err(storage_error)?;
        replace_all(&self.db, rules).await.map_err(storage_error)
    }

    async fn clear_policy(&mut self) -> casbin::Result<()> {
        replace_all(&self.db, Vec::new())
            .await
            .map_err(storage_error)?;
        self.filtered = false;
        Ok(())
    }

    fn is_filtered(&self) -> bool {
        self.filtered
    }

    async fn add_policy(
        &mut self,
        sec: &str,
        ptype: &str,
        rule: Vec<String>,
    ) -> casbin::Result<bool> {
        self.add_policies(sec, ptype, vec![rule]).await
    }

    async fn add_policies(
        &mut self,
        _sec: &str,
        ptype: &str,
        rules: Vec<Vec<String>>,
    ) -> casbin::Result<bool> {
        let rules = rules_of(ptype, rules).map_err(storage_error)?;
        add_all(&self.db, rules).await.map_err(storage_error)
    }

    async fn remove_policy(
        &mut self,
        sec: &str,
        ptype: &str,
        rule: Vec<String>,
    ) -> casbin::Result<bool> {
        self.remove_policies(sec, ptype, vec![rule]).await
    }

    async fn remove_policies(
        &mut self,
        _sec: &str,
        ptype: &str,
        rules: Vec<Vec<String>>,
    ) -> casbin::Result<bool> {
        let rules = rules_of(ptype, rules).map_err(storage_error)?;
        remove_all(&self.db, rules).await.map_err(storage_error)
    }

    /// Removes the rules of type `ptype` whose values from `field_index` on equal
    /// `field_values` (an empty value matches anything); whether any was removed.
    async fn remove_filtered_policy(
        &mut self,
        _sec: &str,
        ptype: &str,
        field_index: usize,
        field_values: Vec<String>,
    ) -> casbin::Result<bool> {
        if field_values.is_empty() || field_index + field_values.len() > MAX_VALUES {
            return Ok(false);
        }
        let filter = field_values
            .iter()
            .enumerate()
            .filter(|(_, value)| !value.is_empty())
            .fold(
                Condition::all().add(Column::Ptype.eq(ptype)),
                |all, (i, value)| all.add(value_column(field_index + i).eq(value.as_str())),
            );
        let removed = db::write(&self.db, async |txn| {
            lock(txn).await?;
            Ok(delete(txn, filter).await?)
        })
        .await
        .map_err(storage_error)?;
        Ok(removed > 0)
    }
}

/// Stores the rules of `policy_text` (`policy.csv`: `p` and `g` lines; comments and blank lines
/// skipped) when no rule is stored yet; whether it did. Replicas starting together store the
/// rules once: the first to take the lock seeds, the others then find rules and store none.
///
/// # Errors
/// `BadUserInput` (field `rule`) for a line that cannot be stored, naming it; the database's
/// failure to store.
pub async fn seed_if_empty(db: &Db, policy_text: &str) -> AppResult<bool> {
    let rules = parse_policy(policy_text)?;
    db::write(db, async |txn| {
        lock(txn).await?;
        if casbin_rule::Entity::find().count(txn).await? > 0 {
            return Ok(false);
        }
        for rule in &rules {
            insert(txn, rule).await?;
        }
        Ok(true)
    })
    .await
}

/// Changes the stored rules in the caller's transaction, after serializing it with every
/// other writer of the policy: removes the rules of `removed` and stores those of `added`
/// (`policy.csv` lines). The caller reads the rules ([`export`]) and validates the result in
/// the same transaction, so no other change can slip in between.
///
/// # Errors
/// `BAD_USER_INPUT` on `rule` for a line that cannot be stored; the database's failure.
pub(crate) async fn change_in(
    txn: &DatabaseTransaction,
    removed: &[String],
    added: &[String],
) -> AppResult<()> {
    let (removed, added) = (
        parse_policy(&removed.join("\n"))?,
        parse_policy(&added.join("\n"))?,
    );
    lock(txn).await?;
    for rule in &removed {
        delete(txn, rule.condition()).await?;
    }
    for rule in &added {
        insert(txn, rule).await?;
    }
    Ok(())
}

/// Serializes the caller's transaction with every other writer of the policy, as each change
/// here does, before it reads the rules it will change.
///
/// # Errors
/// The database's failure.
pub(crate) async fn lock_in(txn: &DatabaseTransaction) -> AppResult<()> {
    Ok(lock(txn).await?)
}

/// The policy's version: it changes in the transaction of every change to the stored rules.
///
/// # Errors
/// The database's failure to read it.
pub async fn version(db: &impl ConnectionTrait) -> Result<i64, DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT version FROM policy_version WHERE id = 1",
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("policy_version".to_owned()))?;
    row.try_get("", "version")
}

/// The stored rules as `policy.csv` text, one rule a line, in a stable order: `p…` rules before
/// `g…` rules, each sorted by type and values. [`seed_if_empty`] reads it back as it was.
///
/// # Errors
/// The database's failure to read the rules.
pub async fn export(db: &impl ConnectionTrait) -> Result<String, DbErr> {
    let mut rules = load_rules(db, Condition::all()).await?;
    rules.sort_by(|a, b| match (a.section(), b.section()) {
        (x, y) if x == y => a.cmp(b),
        ("p", _) => Ordering::Less,
        _ => Ordering::Greater,
    });
    Ok(rules
        .iter()
        .map(|rule| rule.to_csv() + "\n")
        .collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_text_is_parsed_as_casbin_reads_it() {
        let rules = parse_policy(
            "# a comment\n\n  p, role:user ,account, read  \r\ng, role:admin, role:user\n\
             p, \"role:a, b\", product, \" spaced \"\np, x, , y\n",
        )
        .unwrap();
        let pairs: Vec<_> = rules
            .iter()
            .map(|r| (r.ptype.as_str(), r.values.clone()))
            .collect();
        assert_eq!(
            pairs,
            [
                (
                    "p",
                    vec!["role:user".into(), "account".into(), "read".into()]
                ),
                ("g", vec!["role:admin".into(), "role:user".into()]),
                (
                    "p",
                    vec!["role:a, b".into(), "product".into(), " spaced ".into()]
                ),
                ("p", vec!["x".into(), String::new(), "y".into()]),
            ]
        );
        // Written back, each line reads as the same rule.
        for rule in &rules {
            assert_eq!(
                parse_policy(&rule.to_csv()).unwrap(),
                std::slice::from_ref(rule)
            );
        }
    }

    #[test]
    fn rules_that_cannot_be_stored_are_refused_with_their_line() {
        for (text, expected) in [
            ("p, a, b\nx, a, b", "line 2: rule type \"x\""),
            (
                "p, 1, 2, 3, 4, 5, 6, 7",
                "line 1: a rule has at most 6 values",
            ),
            ("p, a\"b, c", "line 1: a rule value cannot contain"),
        ] {
            match parse_policy(text) {
                Err(AppError::BadUserInput { field, message }) => {
                    assert_eq!(field, "rule");
                    assert!(message.starts_with(expected), "{message}");
                }
                other => panic!("{text:?} gave {other:?}"),
            }
        }
    }
}
