use sea_orm_migration::{
    prelude::*,
    sea_orm::{DbBackend, Statement},
};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// What `products(orderBy, filter)` reads through (issue 13).
///
/// Each sort key has an index ending in `id`, the tie-breaker, so a keyset page in either
/// direction is a range of one index: `created_at`, `updated_at`, `price_cents`, `stock` and
/// `name_search` (on PostgreSQL with the `"C"` collation, so both databases order names by
/// code point and the index serves `ORDER BY name_search COLLATE "C"`). The same indexes serve
/// the filters (`createdAfter`/`createdBefore`, `priceMin`/`priceMax`, `inStock`); `ids` uses
/// the primary key.
///
/// `search` has a full-text index kept in step by the database itself:
/// - SQLite: `products_fts`, an external-content FTS5 table over `name` and `description`
///   (tokenizer `unicode61 remove_diacritics 2`: case- and accent-insensitive) keyed by the
///   products' rowid, with triggers for every insert, update and delete. `VACUUM` keeps the
///   rowids of this table (checked on SQLite 3.40+); should they ever change, `INSERT INTO
///   products_fts(products_fts) VALUES('rebuild')` rebuilds the index.
/// - PostgreSQL: a stored generated `search_vector` column (the text search configuration
///   `storefront_search`: `simple` words, accents removed by the `unaccent` extension when the
///   server has it; the name weighs more than the description in `ts_rank`) with a GIN
///   index.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let postgres = manager.get_database_backend() == DbBackend::Postgres;
        let name_key = if postgres {
            "name_search COLLATE \"C\""
        } else {
            "name_search"
        };
        for (index, key) in [
            ("ix_products_created_at", "created_at"),
            ("ix_products_updated_at", "updated_at"),
            ("ix_products_price", "price_cents"),
            ("ix_products_stock", "stock"),
            ("ix_products_name", name_key),
        ] {
            db.execute_unprepared(&format!("CREATE INDEX {index} ON products ({key}, id)"))
                .await?;
        }
        if postgres {
            let unaccent = db
                .query_one_raw(Statement::from_string(
                    DbBackend::Postgres,
                    "SELECT 1 AS n FROM pg_available_extensions WHERE name = 'unaccent'",
                ))
                .await?
                .is_some();
            db.execute_unprepared(
                "CREATE TEXT SEARCH CONFIGURATION storefront_search (COPY = simple)",
            )
            .await?;
            if unaccent {
                db.execute_unprepared("CREATE EXTENSION IF NOT EXISTS unaccent")
                    .await?;
                db.execute_unprepared(
                    "ALTER TEXT SEARCH CONFIGURATION storefront_search \
                     ALTER MAPPING FOR asciiword, asciihword, hword_asciipart, word, hword, \
                     hword_part WITH unaccent, simple",
                )
                .await?;
            }
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
            db.execute_unprepared(
                "CREATE VIRTUAL TABLE products_fts USING fts5(name, description, \
                 content='products', content_rowid='rowid', \
                 tokenize='unicode61 remove_diacritics 2')",
            )
            .await?;
            db.execute_unprepared(
                "CREATE TRIGGER products_fts_insert AFTER INSERT ON products BEGIN \
                   INSERT INTO products_fts(rowid, name, description) \
                   VALUES (new.rowid, new.name, new.description); \
                 END",
            )
            .await?;
            db.execute_unprepared(
                "CREATE TRIGGER products_fts_delete AFTER DELETE ON products BEGIN \
                   INSERT INTO products_fts(products_fts, rowid, name, description) \
                   VALUES ('delete', old.rowid, old.name, old.description); \
                 END",
            )
            .await?;
            db.execute_unprepared(
                "CREATE TRIGGER products_fts_update AFTER UPDATE OF name, description \
                 ON products BEGIN \
                   INSERT INTO products_fts(products_fts, rowid, name, description) \
                   VALUES ('delete', old.rowid, old.name, old.description); \
                   INSERT INTO products_fts(rowid, name, description) \
                   VALUES (new.rowid, new.name, new.description); \
                 END",
            )
            .await?;
            db.execute_unprepared("INSERT INTO products_fts(products_fts) VALUES ('rebuild')")
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if manager.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared("DROP INDEX IF EXISTS ix_products_search")
                .await?;
            db.execute_unprepared("ALTER TABLE products DROP COLUMN IF EXISTS search_vector")
                .await?;
            db.execute_unprepared("DROP TEXT SEARCH CONFIGURATION IF EXISTS storefront_search")
                .await?;
        } else {
            for trigger in ["insert", "delete", "update"] {
                db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS products_fts_{trigger}"))
                    .await?;
            }
            db.execute_unprepared("DROP TABLE IF EXISTS products_fts")
                .await?;
        }
        for index in [
            "ix_products_created_at",
            "ix_products_updated_at",
            "ix_products_price",
            "ix_products_stock",
            "ix_products_name",
        ] {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {index}"))
                .await?;
        }
        Ok(())
    }
}
