use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Replicas hear of each other's changes (issue 15), PostgreSQL only: a revocation stored, the
/// stored policy's version raised, or the catalog's version raised (any change to products,
/// `storefront seed` and SQL included), sends a notification (`NOTIFY`) on the channel each
/// replica listens to, from a trigger, so no way of making the change can forget it. It is sent
/// when, and only if, the transaction commits; one per statement, and PostgreSQL folds the
/// same notification sent twice in a transaction into one. The payload is empty: it wakes the
/// replica's poll of the table at once (the poll stays, as the fallback). The channel names
/// are `db::listen::channel`'s.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        for (table, event, channel) in TRIGGERS {
            db.execute_unprepared(&format!(
                "CREATE FUNCTION storefront_notify_{table}() RETURNS trigger LANGUAGE plpgsql \
                 AS $$ BEGIN PERFORM pg_notify('{channel}', ''); RETURN NULL; END $$"
            ))
            .await?;
            db.execute_unprepared(&format!(
                "CREATE TRIGGER {table}_notify AFTER {event} ON {table} \
                 FOR EACH STATEMENT EXECUTE FUNCTION storefront_notify_{table}()"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        for (table, _, _) in TRIGGERS {
            db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {table}_notify ON {table}"))
                .await?;
            db.execute_unprepared(&format!(
                "DROP FUNCTION IF EXISTS storefront_notify_{table}()"
            ))
            .await?;
        }
        Ok(())
    }
}

/// Table, the statement that notifies, channel.
const TRIGGERS: [(&str, &str, &str); 3] = [
    ("revocations", "INSERT", "storefront_revocations"),
    ("policy_version", "UPDATE", "storefront_policy"),
    ("catalog_version", "UPDATE", "storefront_catalog_version"),
];
