use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// What a refresh needs to answer the same pair again within `REFRESH_REUSE_INTERVAL_SECS`:
/// a spent refresh token names the token that replaced it (`replaced_by`), and each refresh
/// token keeps the claims of the access token issued with it (`access_claims`), so that token
/// can be signed again, identical. Neither is a usable secret: the successor's value is derived
/// from the spent token (which the database does not hold) under a server key, and claims need
/// the signing key to become a token.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(RefreshTokens::Table)
                    .add_column(uuid_null(RefreshTokens::ReplacedBy))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(RefreshTokens::Table)
                    .add_column(text_null(RefreshTokens::AccessClaims))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [RefreshTokens::AccessClaims, RefreshTokens::ReplacedBy] {
            manager
                .alter_table(
                    Table::alter()
                        .table(RefreshTokens::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    ReplacedBy,
    AccessClaims,
}
