use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Sign-in attempts are reserved before the password is verified: the throttle counts the
/// attempts in flight per key (and when the latest was reserved, so a reservation whose request
/// died lapses). Keys now name (username, address), username or password-change throttles;
/// the old per-username rows mean nothing any more and are removed.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .exec_stmt(Query::delete().from_table(LoginThrottles::Table).to_owned())
            .await?;
        // One column per statement: SQLite alters a table one change at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(LoginThrottles::Table)
                    .add_column(integer(LoginThrottles::InFlight).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(LoginThrottles::Table)
                    .add_column(big_integer(LoginThrottles::InFlightSinceMs).default(0))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [LoginThrottles::InFlightSinceMs, LoginThrottles::InFlight] {
            manager
                .alter_table(
                    Table::alter()
                        .table(LoginThrottles::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum LoginThrottles {
    Table,
    InFlight,
    InFlightSinceMs,
}
