use std::{collections::HashMap, sync::Arc};

use async_graphql::dataloader::Loader;
use sea_orm::{DatabaseConnection, DbErr};
use uuid::Uuid;

use super::types::Account;
use crate::accounts;

/// Batches the account look-ups of a page of products into one query.
pub struct AccountLoader {
    db: DatabaseConnection,
}

impl AccountLoader {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

impl Loader<Uuid> for AccountLoader {
    type Value = Account;
    type Error = Arc<DbErr>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Account>, Self::Error> {
        let rows = accounts::find_many(&self.db, keys)
            .await
            .map_err(Arc::new)?;
        Ok(rows
            .into_iter()
            .map(|row| (row.id, Account::from(row)))
            .collect())
    }
}
