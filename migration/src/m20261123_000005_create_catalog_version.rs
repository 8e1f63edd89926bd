use sea_orm_migration::{prelude::*, schema::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// A counter that changes with every change to `products`, whoever makes it (the API, the
/// CLI, another replica, or someone with a SQL prompt): database triggers bump it inside the
/// writing transaction. Each replica reads it to know when its cached catalog pages are stale.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CatalogVersion::Table)
                    .col(integer(CatalogVersion::Id).primary_key())
                    .col(big_integer(CatalogVersion::Version))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        db.execute_unprepared("INSERT INTO catalog_version (id, version) VALUES (1, 0)")
            .await?;
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                db.execute_unprepared(
                    "CREATE FUNCTION storefront_bump_catalog_version() RETURNS trigger \
                     LANGUAGE plpgsql AS $$ BEGIN \
                       UPDATE catalog_version SET version = version + 1 WHERE id = 1; \
                       RETURN NULL; \
                     END $$",
                )
                .await?;
                db.execute_unprepared(
                    "CREATE TRIGGER products_bump_catalog_version \
                     AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON products \
                     FOR EACH STATEMENT EXECUTE FUNCTION storefront_bump_catalog_version()",
                )
                .await?;
            }
            _ => {
                // SQLite has row triggers only; one per kind of change.
                for event in ["INSERT", "UPDATE", "DELETE"] {
                    db.execute_unprepared(&format!(
                        "CREATE TRIGGER products_bump_catalog_version_{} \
                         AFTER {event} ON products BEGIN \
                           UPDATE catalog_version SET version = version + 1 WHERE id = 1; \
                         END",
                        event.to_lowercase()
                    ))
                    .await?;
                }
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                db.execute_unprepared(
                    "DROP TRIGGER IF EXISTS products_bump_catalog_version ON products",
                )
                .await?;
                db.execute_unprepared("DROP FUNCTION IF EXISTS storefront_bump_catalog_version()")
                    .await?;
            }
            _ => {
                for event in ["insert", "update", "delete"] {
                    db.execute_unprepared(&format!(
                        "DROP TRIGGER IF EXISTS products_bump_catalog_version_{event}"
                    ))
                    .await?;
                }
            }
        }
        manager
            .drop_table(Table::drop().table(CatalogVersion::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum CatalogVersion {
    Table,
    Id,
    Version,
}
