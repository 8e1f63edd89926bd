use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `Idempotency-Key` headers: one row per (account, key), claimed before the request runs and
/// holding its answer once it has one. The primary key decides which of several concurrent
/// duplicates (on any replica) runs.
///
/// No foreign key to `accounts`: a keyed `deleteAccount` must still find its own claim in the
/// transaction that deletes the account, and a claim raced by its account's deletion must not
/// fail. Keys of deleted accounts match nothing and are pruned after 24 h like the rest.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKeys::Table)
                    .col(uuid(IdempotencyKeys::AccountId))
                    .col(string_len(IdempotencyKeys::Key, 255))
                    // SHA-256 of the request body, hex.
                    .col(string_len(IdempotencyKeys::Fingerprint, 64))
                    // Which attempt holds the key; a write or an answer from any other is refused.
                    .col(uuid(IdempotencyKeys::ClaimId))
                    .col(big_integer(IdempotencyKeys::CreatedAtMs))
                    // Set in the same transaction as any change the attempt committed.
                    .col(boolean(IdempotencyKeys::Committed).default(false))
                    .col(integer_null(IdempotencyKeys::ResponseStatus))
                    .col(string_len_null(IdempotencyKeys::ResponseContentType, 128))
                    .col(text_null(IdempotencyKeys::ResponseBody))
                    .primary_key(
                        Index::create()
                            .col(IdempotencyKeys::AccountId)
                            .col(IdempotencyKeys::Key),
                    )
                    .to_owned(),
            )
            .await?;
        // For the pruner.
        manager
            .create_index(
                Index::create()
                    .name("ix_idempotency_keys_created_at_ms")
                    .table(IdempotencyKeys::Table)
                    .col(IdempotencyKeys::CreatedAtMs)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(IdempotencyKeys::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    AccountId,
    Key,
    Fingerprint,
    ClaimId,
    CreatedAtMs,
    Committed,
    ResponseStatus,
    ResponseContentType,
    ResponseBody,
}
