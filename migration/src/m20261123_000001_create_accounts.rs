use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Accounts::Table)
                    .col(pk_uuid(Accounts::Id))
                    .col(string_len(Accounts::Username, 32))
                    .col(string_len(Accounts::UsernameNormalized, 32))
                    .col(string_len_null(Accounts::Email, 254))
                    .col(string_len_null(Accounts::EmailNormalized, 254))
                    .col(text(Accounts::PasswordHash))
                    .col(string_len(Accounts::Role, 16))
                    .col(timestamp_with_time_zone(Accounts::CreatedAt))
                    .col(timestamp_with_time_zone(Accounts::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        // Uniqueness is decided here, by the database, so racing registrations cannot both win.
        manager
            .create_index(
                Index::create()
                    .name("ux_accounts_username_normalized")
                    .table(Accounts::Table)
                    .col(Accounts::UsernameNormalized)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // NULLs are distinct in a unique index on both SQLite and PostgreSQL: many accounts may
        // have no email.
        manager
            .create_index(
                Index::create()
                    .name("ux_accounts_email_normalized")
                    .table(Accounts::Table)
                    .col(Accounts::EmailNormalized)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Accounts::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
pub(crate) enum Accounts {
    Table,
    Id,
    Username,
    UsernameNormalized,
    Email,
    EmailNormalized,
    PasswordHash,
    Role,
    CreatedAt,
    UpdatedAt,
}
