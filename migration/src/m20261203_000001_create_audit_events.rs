use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The audit trail: one row per change made with admin power, written in the transaction of the
/// change itself.
///
/// No foreign key to `accounts`: a record outlives its actor, and keeps the username the actor
/// had when it acted. Ids are UUIDv7, so the primary key serves the newest-first listing
/// (`WHERE id < ? ORDER BY id DESC`), and each filter has an index ending in `id` that serves
/// the same order.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(pk_uuid(AuditEvents::Id))
                    .col(timestamp_with_time_zone(AuditEvents::OccurredAt))
                    // Null for a change made from the command line (an operator, no account).
                    .col(uuid_null(AuditEvents::ActorId))
                    // The actor's username when it acted; null exactly when `actor_id` is.
                    .col(string_len_null(AuditEvents::ActorUsername, 64))
                    // `product.update`, `account.set_role`, …
                    .col(string_len(AuditEvents::Action, 64))
                    // `product`, `account`, …
                    .col(string_len(AuditEvents::Entity, 32))
                    .col(string_len(AuditEvents::EntityId, 128))
                    // The `x-request-id` of the request that made the change.
                    .col(string_len_null(AuditEvents::RequestId, 128))
                    // A JSON array of `{field, before, after}`.
                    .col(text(AuditEvents::Changes))
                    .to_owned(),
            )
            .await?;
        for (name, columns) in [
            (
                "ix_audit_events_entity",
                vec![AuditEvents::Entity, AuditEvents::EntityId, AuditEvents::Id],
            ),
            (
                "ix_audit_events_actor",
                vec![AuditEvents::ActorId, AuditEvents::Id],
            ),
            (
                "ix_audit_events_action",
                vec![AuditEvents::Action, AuditEvents::Id],
            ),
            // `since`/`until` filters, and the pruner.
            ("ix_audit_events_occurred_at", vec![AuditEvents::OccurredAt]),
        ] {
            let mut index = Index::create();
            index.name(name).table(AuditEvents::Table);
            for column in columns {
                index.col(column);
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditEvents::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum AuditEvents {
    Table,
    Id,
    OccurredAt,
    ActorId,
    ActorUsername,
    Action,
    Entity,
    EntityId,
    RequestId,
    Changes,
}
