use sea_orm_migration::{
    prelude::*,
    schema::*,
    sea_orm::{ConnectionTrait, DbBackend},
};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Accounts can be deactivated (and reactivated) by an admin, and deleted by their owner.
///
/// A deleted account's access tokens must stop working on every replica, however it was
/// deleted: a trigger appends a revocation for every access token version whenever an account
/// row goes, so a row removed by hand in SQL is revoked like one removed by `deleteAccount`.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Accounts::Table)
                    .add_column(timestamp_with_time_zone_null(Accounts::DeactivatedAt))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                db.execute_unprepared(
                    "CREATE OR REPLACE FUNCTION storefront_revoke_deleted_account() \
                     RETURNS trigger AS $$ \
                     BEGIN \
                       INSERT INTO revocations (account_id, session_id, min_token_version, created_at_ms) \
                       VALUES (OLD.id, NULL, 2147483647, \
                               (extract(epoch FROM clock_timestamp()) * 1000)::bigint); \
                       RETURN OLD; \
                     END $$ LANGUAGE plpgsql",
                )
                .await?;
                // Deferred: the row is written as the deleting transaction commits, so its stamp
                // is the moment the deletion takes effect, however long it was left open.
                db.execute_unprepared(
                    "CREATE CONSTRAINT TRIGGER accounts_revoke_on_delete AFTER DELETE ON accounts \
                     DEFERRABLE INITIALLY DEFERRED \
                     FOR EACH ROW EXECUTE FUNCTION storefront_revoke_deleted_account()",
                )
                .await?;
            }
            _ => {
                db.execute_unprepared(
                    "CREATE TRIGGER accounts_revoke_on_delete AFTER DELETE ON accounts \
                     BEGIN \
                       INSERT INTO revocations (account_id, session_id, min_token_version, created_at_ms) \
                       VALUES (OLD.id, NULL, 2147483647, \
                               CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)); \
                     END",
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if manager.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared("DROP TRIGGER IF EXISTS accounts_revoke_on_delete ON accounts")
                .await?;
            db.execute_unprepared("DROP FUNCTION IF EXISTS storefront_revoke_deleted_account()")
                .await?;
        } else {
            db.execute_unprepared("DROP TRIGGER IF EXISTS accounts_revoke_on_delete")
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Accounts::Table)
                    .drop_column(Accounts::DeactivatedAt)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Accounts {
    Table,
    DeactivatedAt,
}
