//! Products in the database: validated writes and reads (lists are in `query.rs`).

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QuerySelect, Statement,
};
use uuid::Uuid;

use crate::{
    audit::{self, Action, Change, Entry},
    authz::Rows,
    db::{self, Db},
    entities::product,
    error::{AppError, AppResult},
    validation,
};

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
) -> AppResult<product::Model> {
    let name = validation::product_name(new.name)?;
    validation::description(new.description)?;
    let price_cents = validation::price_cents(new.price)?;
    let stock = validation::stock(new.stock)?;
    let now = Utc::now();
    let id = Uuid::now_v7();
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
    };
    db::write(db, async |txn| {
        product::Entity::insert(product)
            .exec_without_returning(txn)
            .await
            .map_err(|err| match err.sql_err() {
                // The only foreign key is the creator: its account went while its token was
                // still being honoured (deleted, on another replica, a moment ago).
                Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_)) => {
                    AppError::Unauthenticated(crate::accounts::GONE)
                }
                _ => err.into(),
            })?;
        let product = find(txn, id)
            .await?
            .ok_or_else(|| AppError::internal("an inserted product was not found"))?;
        let entry = Entry {
            actor: created_by,
            action: Action::ProductCreate,
            entity_id: id.to_string(),
            changes: Change::created(audited_fields(&product)),
        };
        audit::record(txn, entry).await?;
        Ok(product)
    })
    .await
}

/// Applies changes to a product, for `actor`, with the audit record of the fields whose values
/// changed. Fields given with the value they already have are no change: when nothing differs,
/// nothing is written (`updatedAt` included) and nothing is recorded.
///
/// # Errors
/// `BAD_USER_INPUT` when a change breaks a rule (nothing is changed then); `NOT_FOUND` when there
/// is no such product; `SERVICE_UNAVAILABLE` when it could not be stored.
pub async fn update(
    db: &Db,
    actor: Option<Uuid>,
    rows: Rows,
    id: Uuid,
    changes: ProductChanges<'_>,
) -> AppResult<product::Model> {
    let name = changes.name.map(validation::product_name).transpose()?;
    if let Some(description) = changes.description {
        validation::description(description)?;
    }
    let price_cents = changes.price.map(validation::price_cents).transpose()?;
    let stock = changes.stock.map(validation::stock).transpose()?;

    db::write(db, async |txn| {
        let existing = find_for_update(txn, id)
            .await?
            .ok_or(AppError::NotFound("product"))?;
        if !rows.cover(existing.created_by) {
            return Err(not_theirs("update"));
        }
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
        if !active.is_changed() {
            return Ok(existing);
        }
        active.updated_at = Set(Utc::now());
        let updated = product::Entity::update_many()
            .set(active)
            .filter(product::Column::Id.eq(id))
            .exec(txn)
            .await?;
        if updated.rows_affected != 1 {
            return Err(AppError::NotFound("product"));
        }
        let product = find(txn, id).await?.ok_or(AppError::NotFound("product"))?;
        let entry = Entry {
            actor,
            action: Action::ProductUpdate,
            entity_id: id.to_string(),
            changes: Change::between(audited_fields(&existing), audited_fields(&product)),
        };
        audit::record(txn, entry).await?;
        Ok(product)
    })
    .await
}

/// Deletes a product, for `actor`, with the audit record of what it was.
///
/// # Errors
/// `NOT_FOUND` when there is no such product; `SERVICE_UNAVAILABLE` when the deletion could not
/// be stored.
pub async fn delete(db: &Db, actor: Option<Uuid>, rows: Rows, id: Uuid) -> AppResult<()> {
    db::write(db, async |txn| {
        let existing = find_for_update(txn, id)
            .await?
            .ok_or(AppError::NotFound("product"))?;
        if !rows.cover(existing.created_by) {
            return Err(not_theirs("delete"));
        }
        let result = product::Entity::delete_by_id(id).exec(txn).await?;
        if result.rows_affected == 0 {
            return Err(AppError::NotFound("product"));
        }
        let entry = Entry {
            actor,
            action: Action::ProductDelete,
            entity_id: id.to_string(),
            changes: Change::deleted(audited_fields(&existing)),
        };
        audit::record(txn, entry).await
    })
    .await
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
        };
        let inserted = product::Entity::insert(product)
            .on_conflict_do_nothing()
            .exec_without_returning(db)
            .await?;
        if let sea_orm::TryInsertResult::Inserted(rows) = inserted {
            added += rows;
        }
    }
    Ok(added)
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
