//! Products in the database: validated writes and reads (lists are in `query.rs`).

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QuerySelect, Statement,
    sea_query::{Alias, Expr, ExprTrait},
};
use uuid::Uuid;

use crate::{
    audit::{self, Action, Change, Entry},
    authz::Rows,
    db::{self, Db},
    entities::product,
    error::{AppError, AppResult},
    subscriptions::{CatalogEvent, ChangeKind},
    validation,
};

/// What a change tells others of itself: [`Announce::stage`] in its transaction (an error
/// rolls the change back), then [`Announce::announce`] once it has committed, in the task that
/// commits (see [`db::write_then`]), so a request cancelled once its commit began still
/// announces its change. `()` announces nothing.
pub trait Announce: Clone + Send + Sync + 'static {
    fn stage(
        &self,
        txn: &DatabaseTransaction,
        event: &CatalogEvent,
    ) -> impl Future<Output = AppResult<()>> + Send;

    fn announce(self, event: CatalogEvent) -> impl Future<Output = ()> + Send;
}

impl Announce for () {
    async fn stage(&self, _: &DatabaseTransaction, _: &CatalogEvent) -> AppResult<()> {
        Ok(())
    }

    async fn announce(self, _: CatalogEvent) {}
}

/// Announces `event`, if there is one, once committed.
async fn announce_committed<A: Announce>(announcer: A, event: Option<CatalogEvent>) {
    if let Some(event) = event {
        announcer.announce(event).await;
    }
}

/// A new product, as the client sent it.
pub struct NewProduct<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub price: &'a str,
    pub stock: i32,
}

/// Changes to a product; `None` leaves a field as it is.
#[derive(Default)]
pub struct ProductChanges<'a> {
    pub name: Option<&'a str>,
    pub description: Option<&'a str>,
    pub price: Option<&'a str>,
    pub stock: Option<i32>,
}

/// Validates and stores a new product, with its audit record; returns it as committed.
///
/// # Errors
/// `BAD_USER_INPUT` on the first field that breaks a rule; `SERVICE_UNAVAILABLE` when it could
/// not be stored.
pub async fn create(
    db: &Db,
    new: NewProduct<'_>,
    created_by: Option<Uuid>,
    announcer: impl Announce,
) -> AppResult<product::Model> {
    let name = validation::product_name(new.name)?;
    validation::description(new.description)?;
    let price_cents = validation::price_cents(new.price)?;
    let stock = validation::stock(new.stock)?;
    let now = Utc::now();
    let id = Uuid::now_v7();
    let staging = announcer.clone();
    let product = product::ActiveModel {
        id: Set(id),
        name_search: Set(search_key(&name)),
        name: Set(name),
        description: Set(new.description.to_owned()),
        price_cents: Set(price_cents),
        stock: Set(stock),
        created_by: Set(created_by),
        created_at: Set(now),
        updated_at: Set(now),
        version: Set(1),
    };
    db::write_then(
        db,
        async |txn| {
            product::Entity::insert(product)
                .exec_without_returning(txn)
                .await
                .map_err(|err| match err.sql_err() {
                    // The only foreign key is the creator: its account went while its token was
                    // still being honoured (deleted, on another replica, a moment ago).
                    Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_)) => {
                        AppError::Unauthenticated(
                            crate::error::AuthFailure::SessionEnded,
                            crate::accounts::GONE,
                        )
                    }
                    _ => err.into(),
                })?;
            let product = find(txn, id)
                .await?
                .ok_or_else(|| AppError::internal("an inserted product was not found"))?;
            store_folded(txn, product.id, &product.name, &product.description).await?;
            let entry = Entry {
                actor: created_by,
                action: Action::ProductCreate,
                entity_id: id.to_string(),
                changes: Change::created(audited_fields(&product)),
            };
            audit::record(txn, entry).await?;
            let event = CatalogEvent::of(ChangeKind::Created, &product, true);
            staging.stage(txn, &event).await?;
            Ok((product, Some(event)))
        },
        move |(_, event)| announce_committed(announcer, event),
    )
    .await
    .map(|(product, _)| product)
}

/// Applies changes to a product, for `actor`, with the audit record of the fields whose values
/// changed, and raises its version by 1. Fields given with the value they already have are no
/// change: when nothing differs, nothing is written (`updatedAt` and `version` included) and
/// nothing is recorded.
///
/// With `expected_version`, the change is made only if the product is still at that version:
/// the version is part of the `UPDATE`'s condition, so no concurrent change can slip in between
/// the check and the write.
///
/// # Errors
/// `BAD_USER_INPUT` when a change breaks a rule (nothing is changed then); `NOT_FOUND` when there
/// is no such product; `CONFLICT` (`StaleVersion`) when it is not at `expected_version`;
/// `SERVICE_UNAVAILABLE` when it could not be stored.
///
/// Returns the product as it was before, and as committed (the same when nothing changed).
pub async fn update(
    db: &Db,
    actor: Option<Uuid>,
    rows: Rows,
    id: Uuid,
    changes: ProductChanges<'_>,
    expected_version: Option<i32>,
    announcer: impl Announce,
) -> AppResult<(product::Model, product::Model)> {
    let name = changes.name.map(validation::product_name).transpose()?;
    if let Some(description) = changes.description {
        validation::description(description)?;
    }
    let price_cents = changes.price.map(validation::price_cents).transpose()?;
    let stock = changes.stock.map(validation::stock).transpose()?;

    let staging = announcer.clone();
    db::write_then(
        db,
        async |txn| {
            let existing = find_for_update(txn, id)
                .await?
                .ok_or(AppError::NotFound("product"))?;
            if !rows.cover(existing.created_by) {
                return Err(not_theirs("update"));
            }
            check_version(expected_version, existing.version)?;
            let mut active: product::ActiveModel = existing.clone().into();
            if let Some(name) = name.filter(|name| *name != existing.name) {
                active.name_search = Set(search_key(&name));
                active.name = Set(name);
            }
            if let Some(description) = changes
                .description
                .filter(|description| *description != existing.description)
            {
                active.description = Set(description.to_owned());
            }
            if let Some(price_cents) = price_cents.filter(|price| *price != existing.price_cents) {
                active.price_cents = Set(price_cents);
            }
            if let Some(stock) = stock.filter(|stock| *stock != existing.stock) {
                active.stock = Set(stock);
            }
            // Nothing differs: nothing is written, and there is nothing to announce.
            if !active.is_changed() {
                return Ok(((existing.clone(), existing), None));
            }
            active.updated_at = Set(Utc::now());
            let updated = product::Entity::update_many()
                .set(active)
                .col_expr(product::Column::Version, bumped_version())
                .filter(product::Column::Id.eq(id))
                .filter(at_version(expected_version))
                .exec(txn)
                .await?;
            if updated.rows_affected != 1 {
                return Err(missing_or_stale(txn, id).await);
            }
            let product = find(txn, id).await?.ok_or(AppError::NotFound("product"))?;
            if (&product.name, &product.description) != (&existing.name, &existing.description) {
                store_folded(txn, id, &product.name, &product.description).await?;
            }
            let entry = Entry {
                actor,
                action: Action::ProductUpdate,
                entity_id: id.to_string(),
                changes: Change::between(audited_fields(&existing), audited_fields(&product)),
            };
            audit::record(txn, entry).await?;
            let stock_changed = existing.stock != product.stock;
            let event = CatalogEvent::of(ChangeKind::Updated, &product, stock_changed);
            staging.stage(txn, &event).await?;
            Ok(((existing, product), Some(event)))
        },
        move |(_, event)| announce_committed(announcer, event),
    )
    .await
    .map(|(changed, _)| changed)
}

/// Deletes a product, for `actor`, with the audit record of what it was; with
/// `expected_version`, only if it is still at that version (checked in the `DELETE`'s
/// condition, as [`update`] does).
///
/// # Errors
/// `NOT_FOUND` when there is no such product; `CONFLICT` (`StaleVersion`) when it is not at
/// `expected_version`; `SERVICE_UNAVAILABLE` when the deletion could not be stored.
pub async fn delete(
    db: &Db,
    actor: Option<Uuid>,
    rows: Rows,
    id: Uuid,
    expected_version: Option<i32>,
    announcer: impl Announce,
) -> AppResult<()> {
    let staging = announcer.clone();
    db::write_then(
        db,
        async |txn| {
            let existing = find_for_update(txn, id)
                .await?
                .ok_or(AppError::NotFound("product"))?;
            if !rows.cover(existing.created_by) {
                return Err(not_theirs("delete"));
            }
            check_version(expected_version, existing.version)?;
            let result = product::Entity::delete_many()
                .filter(product::Column::Id.eq(id))
                .filter(at_version(expected_version))
                .exec(txn)
                .await?;
            if result.rows_affected == 0 {
                return Err(missing_or_stale(txn, id).await);
            }
            let entry = Entry {
                actor,
                action: Action::ProductDelete,
                entity_id: id.to_string(),
                changes: Change::deleted(audited_fields(&existing)),
            };
            audit::record(txn, entry).await?;
            let event = CatalogEvent::deleted(&existing);
            staging.stage(txn, &event).await?;
            Ok(Some(event))
        },
        move |event| announce_committed(announcer, event),
    )
    .await
    .map(|_| ())
}

/// Adds `delta` to a product's stock, for `actor`, in one statement that also checks that the
/// stock stays 0 or more (and within an `Int`) and that the caller may change this product, and
/// raises its version: concurrent adjustments add up, none is lost, and none takes the stock
/// below zero. Recorded in the audit trail (the stock before and after) in the same transaction.
///
/// # Errors
/// `BAD_USER_INPUT` on `delta` when it is 0 or would take the stock below zero or beyond
/// 2147483647 (nothing is changed then); `NOT_FOUND` when there is no such product; `FORBIDDEN`
/// when `rows` does not cover it; `CONFLICT` on `delta` when other changes kept making a refusal
/// wrong five times over; `SERVICE_UNAVAILABLE` when it could not be stored.
pub async fn adjust_stock(
    db: &Db,
    actor: Option<Uuid>,
    rows: Rows,
    id: Uuid,
    delta: i32,
    announcer: impl Announce,
) -> AppResult<product::Model> {
    if delta == 0 {
        return Err(AppError::bad_input("delta", "delta must not be 0"));
    }
    // A refusal is explained from the row as read after it; on PostgreSQL another transaction
    // may commit in between (a restock making room), so the change is tried again, in a
    // transaction of its own (the refused statement's trigger holds the catalog version's row
    // lock, and waiting for the product's row while holding it could deadlock), until the row
    // read agrees with the refusal.
    for _ in 0..5 {
        if let Some(product) =
            adjust_stock_once(db, actor, rows, id, delta, announcer.clone()).await?
        {
            return Ok(product);
        }
    }
    Err(AppError::Conflict {
        field: "delta",
        message: "the stock kept changing: try again",
    })
}

/// One attempt of [`adjust_stock`]: the product changed, or `None` when a change committed in
/// between made the refusal wrong.
async fn adjust_stock_once(
    db: &Db,
    actor: Option<Uuid>,
    rows: Rows,
    id: Uuid,
    delta: i32,
    announcer: impl Announce,
) -> AppResult<Option<product::Model>> {
    let staging = announcer.clone();
    db::write_then(
        db,
        async |txn| {
            if !try_adjust_stock(txn, rows, id, delta).await? {
                let existing = find(txn, id).await?.ok_or(AppError::NotFound("product"))?;
                if !rows.cover(existing.created_by) {
                    return Err(not_theirs("adjust_stock"));
                }
                let after = i64::from(existing.stock) + i64::from(delta);
                // An attempt that found its refusal wrong committed nothing: nothing to announce.
                if (0..=i64::from(i32::MAX)).contains(&after) {
                    return Ok((None, None));
                }
                let message = if delta < 0 {
                    format!(
                        "only {} in stock: the stock cannot go below 0",
                        existing.stock
                    )
                } else {
                    "the stock cannot go beyond 2147483647".to_owned()
                };
                return Err(AppError::bad_input("delta", message));
            }
            let product = find(txn, id).await?.ok_or(AppError::NotFound("product"))?;
            let before = i64::from(product.stock) - i64::from(delta);
            let entry = Entry {
                actor,
                action: Action::ProductAdjustStock,
                entity_id: id.to_string(),
                changes: vec![Change::new(
                    "stock",
                    Some(before.to_string()),
                    Some(product.stock.to_string()),
                )],
            };
            audit::record(txn, entry).await?;
            let event = CatalogEvent::of(ChangeKind::Updated, &product, true);
            staging.stage(txn, &event).await?;
            Ok((Some(product), Some(event)))
        },
        move |(_, event)| announce_committed(announcer, event),
    )
    .await
    .map(|(product, _)| product)
}

/// Adds `delta` to the stock of product `id` (if `rows` covers it) in one statement, unless
/// the stock would leave `0..=i32::MAX`; whether it did.
async fn try_adjust_stock(
    txn: &DatabaseTransaction,
    rows: Rows,
    id: Uuid,
    delta: i32,
) -> AppResult<bool> {
    let new_stock = Expr::col(product::Column::Stock)
        .cast_as(Alias::new("BIGINT"))
        .add(i64::from(delta));
    let mut adjust = product::Entity::update_many()
        .col_expr(
            product::Column::Stock,
            Expr::col(product::Column::Stock).add(delta),
        )
        .col_expr(product::Column::Version, bumped_version())
        .col_expr(product::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(product::Column::Id.eq(id))
        .filter(new_stock.between(0, i64::from(i32::MAX)));
    if let Rows::OwnedBy(owner) = rows {
        adjust = adjust.filter(product::Column::CreatedBy.eq(owner));
    }
    Ok(adjust.exec(txn).await?.rows_affected == 1)
}

/// `version + 1`: what every change sets a product's version to.
fn bumped_version() -> sea_orm::sea_query::SimpleExpr {
    Expr::col(product::Column::Version).add(1)
}

/// The condition that a product is at `expected` (always true when none is expected).
fn at_version(expected: Option<i32>) -> Condition {
    match expected {
        Some(version) => Condition::all().add(product::Column::Version.eq(version)),
        None => Condition::all(),
    }
}

/// `CONFLICT` when the caller expects another version than the stored one.
fn check_version(expected: Option<i32>, current: i32) -> AppResult<()> {
    match expected {
        Some(expected) if expected != current => Err(AppError::StaleVersion {
            current_version: current,
        }),
        _ => Ok(()),
    }
}

/// Why a write conditioned on a product's id and version touched no row: it is gone, or at
/// another version.
async fn missing_or_stale(txn: &impl ConnectionTrait, id: Uuid) -> AppError {
    match find(txn, id).await {
        Ok(Some(product)) => AppError::StaleVersion {
            current_version: product.version,
        },
        Ok(None) => AppError::NotFound("product"),
        Err(err) => err,
    }
}

/// The refusal of `action` on a product the caller may only act on when they own it.
fn not_theirs(action: &'static str) -> AppError {
    AppError::Forbidden {
        object: "product",
        action,
    }
}

/// A product's fields as its audit records show them (as the API does: the price as
/// `"14.50"`).
fn audited_fields(product: &product::Model) -> [(&'static str, String); 4] {
    [
        ("name", product.name.clone()),
        ("description", product.description.clone()),
        ("price", validation::format_cents(product.price_cents)),
        ("stock", product.stock.to_string()),
    ]
}

/// The product with this id, locked until the caller's transaction ends (`FOR UPDATE` on
/// PostgreSQL; SQLite's write transaction already excludes other writers), so what its audit
/// record says it was is what the change replaced.
async fn find_for_update(
    txn: &impl ConnectionTrait,
    id: Uuid,
) -> AppResult<Option<product::Model>> {
    Ok(product::Entity::find_by_id(id)
        .lock_exclusive()
        .one(txn)
        .await?)
}

/// The product with this id, if any.
///
/// # Errors
/// Internal, on a database failure.
pub async fn find(db: &impl ConnectionTrait, id: Uuid) -> AppResult<Option<product::Model>> {
    Ok(product::Entity::find_by_id(id).one(db).await?)
}

/// The products with these ids (those that exist, in no particular order), in one query.
///
/// # Errors
/// Internal, on a database failure.
pub async fn find_many(db: &impl ConnectionTrait, ids: &[Uuid]) -> AppResult<Vec<product::Model>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(product::Entity::find()
        .filter(product::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?)
}

/// The search term a `search` argument means: trimmed, and none when blank.
pub fn search_term(search: Option<&str>) -> Option<&str> {
    search.map(str::trim).filter(|s| !s.is_empty())
}

/// The three demo products `storefront seed` stores, with fixed ids so seeding is idempotent.
const DEMO_PRODUCTS: [(u128, &str, &str, i64, i32); 3] = [
    (
        0x0190_0000_0000_7000_8000_0000_0000_0001,
        "Espresso cup",
        "A 90 ml porcelain cup that keeps crema where it belongs.",
        1250,
        40,
    ),
    (
        0x0190_0000_0000_7000_8000_0000_0000_0002,
        "Pour-over kettle",
        "Gooseneck kettle, 1 litre, for a steady, slow pour.",
        4999,
        12,
    ),
    (
        0x0190_0000_0000_7000_8000_0000_0000_0003,
        "Coffee beans, 1 kg",
        "Medium roast, washed Ethiopian beans.",
        2890,
        100,
    ),
];

/// Seeds the demo products unless this database has been seeded before; returns how many were
/// added. What `serve` does on the embedded default database, so `cargo run` shows products
/// at once without bringing back products an admin deleted.
///
/// # Errors
/// Internal, on a database failure.
pub async fn seed_demo_once(db: &Db) -> AppResult<u64> {
    db::write(db, async |txn| {
        let marker = Statement::from_sql_and_values(
            txn.get_database_backend(),
            // `$N` placeholders mean the same on SQLite and PostgreSQL.
            "INSERT INTO app_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            [DEMO_SEEDED_KEY.into(), Utc::now().to_rfc3339().into()],
        );
        if txn.execute_raw(marker).await?.rows_affected() == 0 {
            return Ok(0);
        }
        insert_demo(txn).await
    })
    .await
}

const DEMO_SEEDED_KEY: &str = "demo_products_seeded_at";

/// Stores the demo products that are missing. Returns how many were added.
///
/// # Errors
/// Internal, on a database failure.
pub async fn seed_demo(db: &Db) -> AppResult<u64> {
    db::write(db, async |txn| insert_demo(txn).await).await
}

async fn insert_demo(db: &impl ConnectionTrait) -> AppResult<u64> {
    let mut added = 0;
    let now = Utc::now();
    for (id, name, description, price_cents, stock) in DEMO_PRODUCTS {
        let product = product::ActiveModel {
            id: Set(Uuid::from_u128(id)),
            name: Set(name.to_owned()),
            name_search: Set(search_key(name)),
            description: Set(description.to_owned()),
            price_cents: Set(price_cents),
            stock: Set(stock),
            created_by: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            version: Set(1),
        };
        let inserted = product::Entity::insert(product)
            .on_conflict_do_nothing()
            .exec_without_returning(db)
            .await?;
        if let sea_orm::TryInsertResult::Inserted(rows) = inserted {
            added += rows;
            store_folded(db, Uuid::from_u128(id), name, description).await?;
        }
    }
    Ok(added)
}

/// Stores what full-text search indexes of `product` (`name_folded`, `description_folded`:
/// [`migration::search_fold`] of its name and description), in the transaction that stored
/// the product. The columns are not in the entity, so reading a product never copies them.
async fn store_folded(
    db: &impl ConnectionTrait,
    id: Uuid,
    name: &str,
    description: &str,
) -> AppResult<()> {
    let stored = product::Entity::update_many()
        .col_expr(
            Alias::new("name_folded"),
            Expr::value(migration::search_fold(name)),
        )
        .col_expr(
            Alias::new("description_folded"),
            Expr::value(migration::search_fold(description)),
        )
        .filter(product::Column::Id.eq(id))
        .exec(db)
        .await?;
    if stored.rows_affected == 1 {
        Ok(())
    } else {
        Err(AppError::internal(
            "the product's search text was not stored",
        ))
    }
}

/// The form of a name that search compares: lower-cased in Rust, so SQLite and PostgreSQL
/// agree on every script, not only ASCII.
pub(super) fn search_key(name: &str) -> String {
    name.to_lowercase()
}

/// Escapes `%`, `_` and `\` so a search term matches literally.
pub(super) fn escape_like(term: &str) -> String {
    let mut escaped = String::with_capacity(term.len());
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}
