use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261123_000001_create_accounts::Accounts;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Products::Table)
                    // Product pages are read in primary-key order (UUIDv7, time-ordered), so the
                    // primary-key index serves the keyset pagination: `WHERE id > ? ORDER BY id`.
                    .col(pk_uuid(Products::Id))
                    .col(string_len(Products::Name, 200))
                    // Lower-cased name (folded in Rust, so both databases agree) for search.
                    .col(string_len(Products::NameSearch, 800))
                    .col(text(Products::Description))
                    // Money is stored exactly, as integer cents.
                    .col(big_integer(Products::PriceCents))
                    .col(integer(Products::Stock))
                    .col(uuid_null(Products::CreatedBy))
                    .col(timestamp_with_time_zone(Products::CreatedAt))
                    .col(timestamp_with_time_zone(Products::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_products_created_by")
                            .from(Products::Table, Products::CreatedBy)
                            .to(Accounts::Table, Accounts::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_products_created_by")
                    .table(Products::Table)
                    .col(Products::CreatedBy)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Products::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Products {
    Table,
    Id,
    Name,
    NameSearch,
    Description,
    PriceCents,
    Stock,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}
