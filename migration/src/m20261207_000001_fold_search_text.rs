use sea_orm_migration::{
    prelude::*,
    sea_orm::{DbBackend, Statement, Value},
};

use crate::search_fold;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Search folds text the same way on both databases (issue 13): `name_folded` and
/// `description_folded` hold [`search_fold`] of the name and description (written by the server
/// with every change, filled here for the rows that exist), and the full-text indexes are built
/// over them instead of the raw text:
/// - SQLite: `products_fts` over the folded columns (`unicode61` alone removed Latin accents
///   only: Greek tonos, `ß`, `ø`, `ł`, `æ`, full-width letters and ligatures were not found), with
///   the tokenizer counting marks as part of a word (`categories 'L* N* Co M*'`), so Indic
///   vowel signs no longer split words;
/// - PostgreSQL: `search_vector` generated from the folded columns (the `storefront_search`
///   configuration stays as it was).
///
/// A change made at a SQL prompt must set the folded columns too (as it sets `name_search`);
/// the server's writes always do.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let postgres = manager.get_database_backend() == DbBackend::Postgres;
        if postgres {
            // Dropped first so the backfill does not compute every vector twice.
            db.execute_unprepared("ALTER TABLE products DROP COLUMN search_vector")
                .await?;
        } else {
            for trigger in ["insert", "delete", "update"] {
                db.execute_unprepared(&format!("DROP TRIGGER products_fts_{trigger}"))
                    .await?;
            }
            db.execute_unprepared("DROP TABLE products_fts").await?;
        }
        for column in ["name_folded", "description_folded"] {
            db.execute_unprepared(&format!(
                "ALTER TABLE products ADD COLUMN {column} TEXT NOT NULL DEFAULT ''"
            ))
            .await?;
        }
        fold_existing_rows(db, postgres).await?;
        if postgres {
            db.execute_unprepared(
                "ALTER TABLE products ADD COLUMN search_vector tsvector GENERATED ALWAYS AS \
                 (setweight(to_tsvector('storefront_search'::regconfig, name_folded), 'A') || \
                  setweight(to_tsvector('storefront_search'::regconfig, description_folded), \
                  'B')) STORED",
            )
            .await?;
            db.execute_unprepared(
                "CREATE INDEX ix_products_search ON products USING GIN (search_vector)",
            )
            .await?;
        } else {
            create_fts(db, "name_folded", "description_folded", FOLDED_TOKENIZER).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let postgres = manager.get_database_backend() == DbBackend::Postgres;
        if postgres {
            db.execute_unprepared("ALTER TABLE products DROP COLUMN search_vector")
                .await?;
            db.execute_unprepared(
                "ALTER TABLE products ADD COLUMN search_vector tsvector GENERATED ALWAYS AS \
                 (setweight(to_tsvector('storefront_search'::regconfig, name), 'A') || \
                  setweight(to_tsvector('storefront_search'::regconfig, description), 'B')) \
                 STORED",
            )
            .await?;
            db.execute_unprepared(
                "CREATE INDEX ix_products_search ON products USING GIN (search_vector)",
            )
            .await?;
        } else {
            for trigger in ["insert", "delete", "update"] {
                db.execute_unprepared(&format!("DROP TRIGGER products_fts_{trigger}"))
                    .await?;
            }
            db.execute_unprepared("DROP TABLE products_fts").await?;
            create_fts(db, "name", "description", "unicode61 remove_diacritics 2").await?;
        }
        for column in ["description_folded", "name_folded"] {
            db.execute_unprepared(&format!("ALTER TABLE products DROP COLUMN {column}"))
                .await?;
        }
        Ok(())
    }
}

/// Marks count as letters: the folded text keeps only the marks that belong to a letter.
const FOLDED_TOKENIZER: &str = "unicode61 remove_diacritics 2 categories ''L* N* Co M*''";

/// SQLite: the external-content FTS5 table over two columns of `products`, its triggers, and
/// its contents.
async fn create_fts(
    db: &SchemaManagerConnection<'_>,
    name: &str,
    description: &str,
    tokenizer: &str,
) -> Result<(), DbErr> {
    db.execute_unprepared(&format!(
        "CREATE VIRTUAL TABLE products_fts USING fts5({name}, {description}, \
         content='products', content_rowid='rowid', tokenize='{tokenizer}')"
    ))
    .await?;
    db.execute_unprepared(&format!(
        "CREATE TRIGGER products_fts_insert AFTER INSERT ON products BEGIN \
           INSERT INTO products_fts(rowid, {name}, {description}) \
           VALUES (new.rowid, new.{name}, new.{description}); \
         END"
    ))
    .await?;
    db.execute_unprepared(&format!(
        "CREATE TRIGGER products_fts_delete AFTER DELETE ON products BEGIN \
           INSERT INTO products_fts(products_fts, rowid, {name}, {description}) \
           VALUES ('delete', old.rowid, old.{name}, old.{description}); \
         END"
    ))
    .await?;
    db.execute_unprepared(&format!(
        "CREATE TRIGGER products_fts_update AFTER UPDATE OF {name}, {description} \
         ON products BEGIN \
           INSERT INTO products_fts(products_fts, rowid, {name}, {description}) \
           VALUES ('delete', old.rowid, old.{name}, old.{description}); \
           INSERT INTO products_fts(rowid, {name}, {description}) \
           VALUES (new.rowid, new.{name}, new.{description}); \
         END"
    ))
    .await?;
    db.execute_unprepared("INSERT INTO products_fts(products_fts) VALUES ('rebuild')")
        .await?;
    Ok(())
}

/// Fills the folded columns of every product, a thousand rows per read (in key order).
async fn fold_existing_rows(db: &SchemaManagerConnection<'_>, postgres: bool) -> Result<(), DbErr> {
    const BATCH: u64 = 1000;
    let backend = if postgres {
        DbBackend::Postgres
    } else {
        DbBackend::Sqlite
    };
    // The key as text: `id` on PostgreSQL, `rowid` on SQLite.
    let mut after: Option<String> = None;
    loop {
        let read = match (&after, postgres) {
            (None, true) => Statement::from_string(
                backend,
                format!(
                    "SELECT id::text AS k, name, description FROM products ORDER BY id LIMIT {BATCH}"
                ),
            ),
            (Some(key), true) => Statement::from_sql_and_values(
                backend,
                format!(
                    "SELECT id::text AS k, name, description FROM products WHERE id > $1::uuid ORDER BY id LIMIT {BATCH}"
                ),
                [Value::from(key.clone())],
            ),
            (key, false) => Statement::from_sql_and_values(
                backend,
                format!(
                    "SELECT CAST(rowid AS TEXT) AS k, name, description FROM products WHERE rowid > ? ORDER BY rowid LIMIT {BATCH}"
                ),
                [Value::from(
                    key.as_deref()
                        .map_or(0, |k| k.parse::<i64>().unwrap_or(i64::MAX)),
                )],
            ),
        };
        let rows = db.query_all_raw(read).await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = Some(last.try_get::<String>("", "k")?);
        for row in &rows {
            let key: String = row.try_get("", "k")?;
            let name: String = row.try_get("", "name")?;
            let description: String = row.try_get("", "description")?;
            let sql = if postgres {
                "UPDATE products SET name_folded = $1, description_folded = $2 WHERE id = $3::uuid"
            } else {
                "UPDATE products SET name_folded = ?, description_folded = ? \
                 WHERE rowid = CAST(? AS INTEGER)"
            };
            db.execute_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [
                    Value::from(search_fold(&name)),
                    Value::from(search_fold(&description)),
                    Value::from(key),
                ],
            ))
            .await?;
        }
    }
}
