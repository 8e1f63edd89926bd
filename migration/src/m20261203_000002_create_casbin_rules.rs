use sea_orm_migration::{prelude::*, schema::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The Casbin policy kept in the database (`POLICY_SOURCE=database`), one rule a row in the
/// layout casbin-rs adapters share: `ptype` (`p`, `g`, …) and up to six values `v0`…`v5`, unused
/// ones `''` rather than NULL so that the unique index (NULLs are distinct in it) refuses a rule
/// stored twice.
///
/// `policy_version` is a one-row counter, as `catalog_version` is for products: database
/// triggers bump it inside every transaction that changes a rule, whoever makes the change (the
/// API, another replica, someone with a SQL prompt). Replicas poll it to learn that the policy
/// changed.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CasbinRules::Table)
                    .col(big_pk_auto(CasbinRules::Id))
                    .col(text(CasbinRules::Ptype).default(""))
                    .col(text(CasbinRules::V0).default(""))
                    .col(text(CasbinRules::V1).default(""))
                    .col(text(CasbinRules::V2).default(""))
                    .col(text(CasbinRules::V3).default(""))
                    .col(text(CasbinRules::V4).default(""))
                    .col(text(CasbinRules::V5).default(""))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_casbin_rules_rule")
                    .table(CasbinRules::Table)
                    .col(CasbinRules::Ptype)
                    .col(CasbinRules::V0)
                    .col(CasbinRules::V1)
                    .col(CasbinRules::V2)
                    .col(CasbinRules::V3)
                    .col(CasbinRules::V4)
                    .col(CasbinRules::V5)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PolicyVersion::Table)
                    .col(integer(PolicyVersion::Id).primary_key())
                    .col(big_integer(PolicyVersion::Version))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        db.execute_unprepared("INSERT INTO policy_version (id, version) VALUES (1, 0)")
            .await?;
        const BUMP: &str = "UPDATE policy_version SET version = version + 1 WHERE id = 1;";
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                db.execute_unprepared(&format!(
                    "CREATE FUNCTION storefront_bump_policy_version() RETURNS trigger \
                     LANGUAGE plpgsql AS $$ BEGIN {BUMP} RETURN NULL; END $$"
                ))
                .await?;
                // Per row, so that an `INSERT … ON CONFLICT DO NOTHING` that stored nothing, or
                // a DELETE that matched nothing, leaves the version alone.
                db.execute_unprepared(
                    "CREATE TRIGGER casbin_rules_bump_policy_version \
                     AFTER INSERT OR UPDATE OR DELETE ON casbin_rules \
                     FOR EACH ROW EXECUTE FUNCTION storefront_bump_policy_version()",
                )
                .await?;
                db.execute_unprepared(
                    "CREATE TRIGGER casbin_rules_truncate_bumps_policy_version \
                     AFTER TRUNCATE ON casbin_rules \
                     FOR EACH STATEMENT EXECUTE FUNCTION storefront_bump_policy_version()",
                )
                .await?;
            }
            _ => {
                for event in ["INSERT", "UPDATE", "DELETE"] {
                    db.execute_unprepared(&format!(
                        "CREATE TRIGGER casbin_rules_bump_policy_version_{} \
                         AFTER {event} ON casbin_rules BEGIN {BUMP} END",
                        event.to_lowercase()
                    ))
                    .await?;
                }
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Dropping the table drops its triggers; PostgreSQL keeps the function.
        manager
            .drop_table(Table::drop().table(CasbinRules::Table).to_owned())
            .await?;
        if manager.get_database_backend() == DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared("DROP FUNCTION IF EXISTS storefront_bump_policy_version()")
                .await?;
        }
        manager
            .drop_table(Table::drop().table(PolicyVersion::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum CasbinRules {
    Table,
    Id,
    Ptype,
    V0,
    V1,
    V2,
    V3,
    V4,
    V5,
}

#[derive(DeriveIden)]
enum PolicyVersion {
    Table,
    Id,
    Version,
}
