//! The audit trail: every change made with admin power (products, roles, account activation),
//! who made it (account id and username at the time), when, from which request, and what
//! changed, field by field.
//!
//! The services write each record with [`record`], in the transaction of the change itself:
//! if the record cannot be stored the change rolls back, so no change exists without its
//! record. The [`Audit`] service reads the records back, newest first, and the pruner deletes
//! those older than `AUDIT_RETENTION_DAYS` when it is set.

use std::{future::Future, sync::Arc, time::Duration};

use chrono::{DateTime, Datelike, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    Statement,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    db::Db,
    entities::audit_event,
    error::{AppError, AppResult},
    pagination::{Page, PageRequest, read_page_newest_first},
    timestamp::{self, within_four_digit_years},
};

/// What kind of thing a record is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntityKind {
    Product,
    Account,
    /// A role of the database-managed policy (its id is the role's name).
    Policy,
}

impl EntityKind {
    /// Every kind, in a fixed order.
    pub const ALL: [EntityKind; 3] = [EntityKind::Product, EntityKind::Account, EntityKind::Policy];

    /// The name stored and shown: `product`, `account`, `policy`.
    pub fn name(self) -> &'static str {
        match self {
            EntityKind::Product => "product",
            EntityKind::Account => "account",
            EntityKind::Policy => "policy",
        }
    }

    /// The kind with this name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// What was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    ProductCreate,
    ProductUpdate,
    ProductDelete,
    AccountSetRole,
    AccountDeactivate,
    AccountReactivate,
    AccountCreate,
    PolicyGrant,
    PolicyRevoke,
    PolicyInherit,
    PolicyUninherit,
    PolicyCreateRole,
    PolicyDeleteRole,
    ProductAdjustStock,
}

impl Action {
    /// Every action, in a fixed order.
    pub const ALL: [Action; 14] = [
        Action::ProductCreate,
        Action::ProductUpdate,
        Action::ProductDelete,
        Action::AccountSetRole,
        Action::AccountDeactivate,
        Action::AccountReactivate,
        Action::AccountCreate,
        Action::PolicyGrant,
        Action::PolicyRevoke,
        Action::PolicyInherit,
        Action::PolicyUninherit,
        Action::PolicyCreateRole,
        Action::PolicyDeleteRole,
        Action::ProductAdjustStock,
    ];

    /// The name stored and shown: `<entity>.<verb>`, e.g. `product.update`.
    pub fn name(self) -> &'static str {
        match self {
            Action::ProductCreate => "product.create",
            Action::ProductUpdate => "product.update",
            Action::ProductDelete => "product.delete",
            Action::AccountSetRole => "account.set_role",
            Action::AccountDeactivate => "account.deactivate",
            Action::AccountReactivate => "account.reactivate",
            Action::AccountCreate => "account.create",
            Action::PolicyGrant => "policy.grant",
            Action::PolicyRevoke => "policy.revoke",
            Action::PolicyInherit => "policy.inherit",
            Action::PolicyUninherit => "policy.uninherit",
            Action::PolicyCreateRole => "policy.create_role",
            Action::PolicyDeleteRole => "policy.delete_role",
            Action::ProductAdjustStock => "product.adjust_stock",
        }
    }

    /// What the action is done to.
    pub fn entity(self) -> EntityKind {
        match self {
            Action::ProductCreate
            | Action::ProductUpdate
            | Action::ProductDelete
            | Action::ProductAdjustStock => EntityKind::Product,
            Action::AccountSetRole
            | Action::AccountDeactivate
            | Action::AccountReactivate
            | Action::AccountCreate => EntityKind::Account,
            Action::PolicyGrant
            | Action::PolicyRevoke
            | Action::PolicyInherit
            | Action::PolicyUninherit
            | Action::PolicyCreateRole
            | Action::PolicyDeleteRole => EntityKind::Policy,
        }
    }

    /// The action with this name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|action| action.name() == name)
    }
}

/// One field's value before and after a change, as the API shows it (`"14.50"` for a price):
/// no `before` for a created thing, no `after` for a deleted one (or a cleared value).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub field: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

impl Change {
    /// A field that went from `before` to `after`.
    pub fn new(field: &str, before: Option<String>, after: Option<String>) -> Self {
        Self {
            field: field.to_owned(),
            before,
            after,
        }
    }

    /// Every field of a created thing.
    pub fn created(fields: impl IntoIterator<Item = (&'static str, String)>) -> Vec<Self> {
        fields
            .into_iter()
            .map(|(field, value)| Self::new(field, None, Some(value)))
            .collect()
    }

    /// Every field of a deleted thing.
    pub fn deleted(fields: impl IntoIterator<Item = (&'static str, String)>) -> Vec<Self> {
        fields
            .into_iter()
            .map(|(field, value)| Self::new(field, Some(value), None))
            .collect()
    }

    /// The fields whose values differ between `before` and `after` (the same fields, in the
    /// same order).
    pub fn between<const N: usize>(
        before: [(&'static str, String); N],
        after: [(&'static str, String); N],
    ) -> Vec<Self> {
        before
            .into_iter()
            .zip(after)
            .filter(|((_, old), (_, new))| old != new)
            .map(|((field, old), (_, new))| Self::new(field, Some(old), Some(new)))
            .collect()
    }
}

/// A time as the API shows it, as the `DateTime` scalar writes it.
pub fn timestamp(at: DateTime<Utc>) -> String {
    timestamp::format(at)
}

/// The fields whose values are times (written with [`timestamp`]).
const TIME_FIELDS: &[&str] = &["deactivatedAt"];

impl Change {
    /// The change as the API shows it now: a time recorded before times were written as the
    /// `DateTime` scalar writes them (RFC 3339 with every digit) is written that way.
    fn shown_now(mut self) -> Self {
        if TIME_FIELDS.contains(&self.field.as_str()) {
            for value in [&mut self.before, &mut self.after].into_iter().flatten() {
                if let Some(text) = timestamp::reformat(value) {
                    *value = text;
                }
            }
        }
        self
    }
}

/// A change to record.
pub struct Entry {
    /// The signed-in account that made it; `None` for the command line.
    pub actor: Option<Uuid>,
    pub action: Action,
    /// The id of the thing changed (its kind is the action's): a product's or an account's
    /// id, a policy role's name.
    pub entity_id: String,
    pub changes: Vec<Change>,
}

tokio::task_local! {
    static REQUEST_ID: Option<Arc<str>>;
}

/// Runs `work` (a request) with `request_id` as the request id its records carry.
pub async fn in_request<F: Future>(request_id: Option<String>, work: F) -> F::Output {
    REQUEST_ID.scope(request_id.map(Arc::from), work).await
}

/// The id of the request running in this task, if any.
fn current_request_id() -> Option<String> {
    REQUEST_ID
        .try_with(|id| id.as_deref().map(str::to_owned))
        .ok()
        .flatten()
}

/// Records `entry` in the caller's transaction (see the module's documentation), with the
/// actor's username as it is now and the id of the request running in this task.
///
/// # Errors
/// `UNAUTHENTICATED` when the actor's account no longer exists (deleted a moment ago, while its
/// token was still honoured); as the database fails otherwise. Either way the caller's
/// transaction must roll back, and [`crate::db::write`] does.
pub async fn record(txn: &DatabaseTransaction, entry: Entry) -> AppResult<()> {
    let changes = serde_json::to_string(&entry.changes).map_err(AppError::internal)?;
    let backend = txn.get_database_backend();
    let values = [
        Uuid::now_v7().into(),
        Utc::now().into(),
        entry.actor.into(),
        entry.action.name().into(),
        entry.action.entity().name().into(),
        entry.entity_id.into(),
        current_request_id().into(),
        changes.into(),
    ];
    let statement = match entry.actor {
        // The username is read by the insert itself: no round trip, and no record without it.
        Some(_) => Statement::from_sql_and_values(
            backend,
            "INSERT INTO audit_events (id, occurred_at, actor_id, actor_username, action, entity, \
             entity_id, request_id, changes) \
             SELECT $1, $2, $3, username, $4, $5, $6, $7, $8 FROM accounts WHERE id = $3",
            values,
        ),
        None => Statement::from_sql_and_values(
            backend,
            "INSERT INTO audit_events (id, occurred_at, actor_id, actor_username, action, entity, \
             entity_id, request_id, changes) \
             VALUES ($1, $2, $3, NULL, $4, $5, $6, $7, $8)",
            values,
        ),
    };
    let inserted = txn.execute_raw(statement).await?;
    if inserted.rows_affected() != 1 {
        return Err(AppError::Unauthenticated(
            crate::error::AuthFailure::SessionEnded,
            crate::error::ACCOUNT_GONE,
        ));
    }
    Ok(())
}

/// A stored record, its changes decoded.
#[derive(Clone, Debug)]
pub struct Event {
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    /// The actor's account id and username at the time; `None` for the command line.
    pub actor: Option<(Uuid, String)>,
    pub action: String,
    pub entity: String,
    pub entity_id: String,
    pub request_id: Option<String>,
    pub changes: Vec<Change>,
}

impl TryFrom<audit_event::Model> for Event {
    type Error = AppError;

    fn try_from(row: audit_event::Model) -> AppResult<Self> {
        let changes: Vec<Change> = serde_json::from_str(&row.changes)
            .map_err(|err| AppError::internal(format_args!("audit event {}: {err}", row.id)))?;
        let changes = changes.into_iter().map(Change::shown_now).collect();
        Ok(Self {
            id: row.id,
            occurred_at: row.occurred_at,
            actor: row
                .actor_id
                .map(|id| (id, row.actor_username.unwrap_or_default())),
            action: row.action,
            entity: row.entity,
            entity_id: row.entity_id,
            request_id: row.request_id,
            changes,
        })
    }
}

/// Which records to read; every condition given must hold.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub actor: Option<Uuid>,
    pub entity: Option<EntityKind>,
    /// A product's or an account's id (lower case), or a role's name.
    pub entity_id: Option<String>,
    pub action: Option<Action>,
    /// From this time on, included.
    pub since: Option<DateTime<Utc>>,
    /// Up to this time, included.
    pub until: Option<DateTime<Utc>>,
}

/// A filter as a client sends it, not yet validated.
#[derive(Default)]
pub struct FilterInput<'a> {
    pub actor: Option<&'a str>,
    pub entity: Option<&'a str>,
    pub entity_id: Option<&'a str>,
    pub action: Option<&'a str>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

impl Filter {
    /// Validates a client's filter.
    ///
    /// # Errors
    /// `BAD_USER_INPUT` naming the first field at fault: an `actor` or `entityId` that is no
    /// id, an unknown `entity` or `action`, an `action` on another entity than `entity`, or
    /// `since` after `until`.
    pub fn parse(input: FilterInput<'_>) -> AppResult<Self> {
        let actor = input
            .actor
            .map(|id| parse_uuid(id, "actor", "an account id"))
            .transpose()?;
        let entity = input
            .entity
            .map(|name| {
                EntityKind::from_name(name).ok_or_else(|| {
                    AppError::bad_input(
                        "entity",
                        format!(
                            "entity must be one of: {}",
                            names(EntityKind::ALL.map(EntityKind::name))
                        ),
                    )
                })
            })
            .transpose()?;
        let entity_id = input
            .entity_id
            .map(|id| match Uuid::parse_str(id) {
                Ok(id) => Ok(id.to_string()),
                Err(_) => crate::role::Role::parse(id)
                    .map(|role| role.to_string())
                    .ok_or_else(|| {
                        AppError::bad_input(
                            "entityId",
                            "entityId must be the id of a product or an account, or a role's name",
                        )
                    }),
            })
            .transpose()?;
        let action = input
            .action
            .map(|name| {
                Action::from_name(name).ok_or_else(|| {
                    AppError::bad_input(
                        "action",
                        format!(
                            "action must be one of: {}",
                            names(Action::ALL.map(Action::name))
                        ),
                    )
                })
            })
            .transpose()?;
        if let (Some(action), Some(entity)) = (action, entity)
            && action.entity() != entity
        {
            return Err(AppError::bad_input(
                "action",
                format!(
                    "action {} is done to a {}, not to a {}",
                    action.name(),
                    action.entity().name(),
                    entity.name()
                ),
            ));
        }
        // Both databases compare times alike only within four-digit years.
        for (field, at) in [("since", input.since), ("until", input.until)] {
            if at.is_some_and(|at| !(1..=9999).contains(&at.year())) {
                return Err(AppError::bad_input(
                    field,
                    format!("{field} must be a time in the years 0001 to 9999"),
                ));
            }
        }
        if let (Some(since), Some(until)) = (input.since, input.until)
            && since > until
        {
            return Err(AppError::bad_input(
                "until",
                "until must not be before since",
            ));
        }
        Ok(Self {
            actor,
            entity,
            entity_id,
            action,
            // Compared as answers show times: both ends take in every instant shown as them.
            since: input
                .since
                .map(|at| within_four_digit_years(timestamp::earliest_shown_at_or_after(at))),
            until: input
                .until
                .map(|at| within_four_digit_years(timestamp::latest_shown_at_or_before(at))),
        })
    }

    /// The records about one thing.
    pub fn about(entity: EntityKind, id: Uuid) -> Self {
        Self {
            entity: Some(entity),
            entity_id: Some(id.to_string()),
            ..Self::default()
        }
    }

    fn condition(&self) -> Condition {
        let mut condition = Condition::all();
        if let Some(actor) = self.actor {
            condition = condition.add(audit_event::Column::ActorId.eq(actor));
        }
        if let Some(entity) = self.entity {
            condition = condition.add(audit_event::Column::Entity.eq(entity.name()));
        }
        if let Some(id) = &self.entity_id {
            condition = condition.add(audit_event::Column::EntityId.eq(id.as_str()));
        }
        if let Some(action) = self.action {
            condition = condition.add(audit_event::Column::Action.eq(action.name()));
        }
        if let Some(since) = self.since {
            condition = condition.add(audit_event::Column::OccurredAt.gte(since));
        }
        if let Some(until) = self.until {
            condition = condition.add(audit_event::Column::OccurredAt.lte(until));
        }
        condition
    }
}

fn parse_uuid(id: &str, field: &'static str, what: &str) -> AppResult<Uuid> {
    Uuid::parse_str(id).map_err(|_| AppError::bad_input(field, format!("{field} must be {what}")))
}

fn names<const N: usize>(names: [&str; N]) -> String {
    names.join(", ")
}

/// The audit trail's reads, and how long records are kept.
pub struct Audit {
    db: Db,
    retention: Option<Duration>,
}

impl Audit {
    /// Reads from `db`; records older than `retention` are pruned (never, when `None`).
    pub fn new(db: Db, retention: Option<Duration>) -> Self {
        Self { db, retention }
    }

    /// How long records are kept; `None`: for ever.
    pub fn retention(&self) -> Option<Duration> {
        self.retention
    }

    /// One page of the records `filter` keeps, newest first, with their number when
    /// `with_total`.
    ///
    /// # Errors
    /// Internal, on a database failure or a record that cannot be decoded.
    pub async fn page(
        &self,
        filter: &Filter,
        request: PageRequest,
        with_total: bool,
    ) -> AppResult<Page<Event>> {
        let rows = audit_event::Entity::find().filter(filter.condition());
        let page = read_page_newest_first(
            self.db.reader(),
            rows,
            audit_event::Column::Id,
            request,
            with_total,
        )
        .await?;
        let items = page
            .items
            .into_iter()
            .map(Event::try_from)
            .collect::<AppResult<Vec<_>>>()?;
        Ok(Page {
            items,
            has_next_page: page.has_next_page,
            has_previous_page: page.has_previous_page,
            total_count: page.total_count,
        })
    }
}

/// Deletes, in the caller's transaction, the records that occurred more than `retention`
/// before `now`; returns how many.
///
/// # Errors
/// On a database failure.
pub async fn prune(
    txn: &DatabaseTransaction,
    now: DateTime<Utc>,
    retention: Duration,
) -> AppResult<u64> {
    let retention = chrono::Duration::from_std(retention).map_err(AppError::internal)?;
    let Some(cutoff) = now.checked_sub_signed(retention) else {
        return Ok(0);
    };
    Ok(audit_event::Entity::delete_many()
        .filter(audit_event::Column::OccurredAt.lt(cutoff))
        .exec(txn)
        .await?
        .rows_affected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_each_action_names_its_entity() {
        for action in Action::ALL {
            assert_eq!(Action::from_name(action.name()), Some(action));
            let (entity, _) = action.name().split_once('.').unwrap();
            assert_eq!(entity, action.entity().name());
        }
        for kind in EntityKind::ALL {
            assert_eq!(EntityKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(Action::from_name("product.launch"), None);
    }

    #[test]
    fn only_changed_fields_are_changes() {
        let before = [("name", "Cup".to_owned()), ("stock", "3".to_owned())];
        let after = [("name", "Cup".to_owned()), ("stock", "4".to_owned())];
        assert_eq!(
            Change::between(before, after),
            [Change::new("stock", Some("3".into()), Some("4".into()))]
        );
    }

    #[test]
    fn a_filter_is_validated_field_by_field() {
        let field = |input: FilterInput<'_>| match Filter::parse(input) {
            Err(AppError::BadUserInput { field, .. }) => field,
            other => panic!("expected BAD_USER_INPUT, got {other:?}"),
        };
        let bad = [
            (
                FilterInput {
                    actor: Some("nope"),
                    ..Default::default()
                },
                "actor",
            ),
            (
                FilterInput {
                    entity: Some("order"),
                    ..Default::default()
                },
                "entity",
            ),
            (
                FilterInput {
                    entity_id: Some("1"),
                    ..Default::default()
                },
                "entityId",
            ),
            (
                FilterInput {
                    action: Some("product.launch"),
                    ..Default::default()
                },
                "action",
            ),
            (
                FilterInput {
                    entity: Some("account"),
                    action: Some("product.create"),
                    ..Default::default()
                },
                "action",
            ),
            (
                FilterInput {
                    since: Some(Utc::now()),
                    until: Some(Utc::now() - chrono::Duration::seconds(1)),
                    ..Default::default()
                },
                "until",
            ),
        ];
        for (input, expected) in bad {
            assert_eq!(field(input), expected);
        }
        let id = Uuid::now_v7();
        let filter = Filter::parse(FilterInput {
            entity: Some("product"),
            entity_id: Some(&id.to_string().to_uppercase()),
            action: Some("product.update"),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            filter.entity_id,
            Some(id.to_string()),
            "ids are read in any case"
        );
    }
}
