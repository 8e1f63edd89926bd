//! Cursor pagination: keyset on the primary key (UUIDv7, so creation order), never OFFSET.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, Order, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Select,
};
use uuid::Uuid;

use crate::error::{AppError, AppResult};

pub const DEFAULT_PAGE_SIZE: i32 = 20;
pub const MAX_PAGE_SIZE: i32 = 100;

/// A validated request for one page: up to `first` rows after the row `after`.
#[derive(Clone, Copy, Debug)]
pub struct PageRequest {
    pub first: u64,
    pub after: Option<Uuid>,
}

impl PageRequest {
    /// Validates the `first` and `after` arguments.
    ///
    /// # Errors
    /// `BAD_USER_INPUT` on `first` outside 1..=100, or on `after` when it is not a cursor this
    /// API issued.
    pub fn new(first: i32, after: Option<&str>) -> AppResult<Self> {
        if !(1..=MAX_PAGE_SIZE).contains(&first) {
            return Err(AppError::bad_input(
                "first",
                format!("first must be between 1 and {MAX_PAGE_SIZE}"),
            ));
        }
        let after = after.map(decode_cursor).transpose()?;
        Ok(Self {
            first: first as u64,
            after,
        })
    }
}

/// One page of rows, as read from the database.
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_next_page: bool,
    pub has_previous_page: bool,
    /// The number of rows matching the filter, when it was asked for.
    pub total_count: Option<u64>,
}

impl<T> Page<T> {
    /// The same page with each item converted.
    pub fn map<U>(self, convert: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(convert).collect(),
            has_next_page: self.has_next_page,
            has_previous_page: self.has_previous_page,
            total_count: self.total_count,
        }
    }
}

/// Reads one page of `rows` (already filtered) in the order of its `id` column, after the
/// request's cursor: one indexed query for the page, a one-row query for `hasPreviousPage`
/// when there is a cursor, and a count only when `with_total` is asked for.
///
/// # Errors
/// Internal, on a database failure.
pub async fn read_page<E>(
    db: &DatabaseConnection,
    rows: Select<E>,
    id: E::Column,
    request: PageRequest,
    with_total: bool,
) -> AppResult<Page<E::Model>>
where
    E: EntityTrait,
    E::Model: Send + Sync,
{
    read_page_in(db, rows, id, Order::Asc, request, with_total).await
}

/// [`read_page`], newest first: in descending order of the `id` column (UUIDv7).
///
/// # Errors
/// Internal, on a database failure.
pub async fn read_page_newest_first<E>(
    db: &DatabaseConnection,
    rows: Select<E>,
    id: E::Column,
    request: PageRequest,
    with_total: bool,
) -> AppResult<Page<E::Model>>
where
    E: EntityTrait,
    E::Model: Send + Sync,
{
    read_page_in(db, rows, id, Order::Desc, request, with_total).await
}

async fn read_page_in<E>(
    db: &DatabaseConnection,
    rows: Select<E>,
    id: E::Column,
    order: Order,
    request: PageRequest,
    with_total: bool,
) -> AppResult<Page<E::Model>>
where
    E: EntityTrait,
    E::Model: Send + Sync,
{
    let mut query = rows.clone().order_by(id, order.clone());
    if let Some(after) = request.after {
        query = query.filter(match order {
            Order::Desc => id.lt(after),
            _ => id.gt(after),
        });
    }
    let mut items = query.limit(request.first + 1).all(db).await?;
    let has_next_page = items.len() as u64 > request.first;
    items.truncate(request.first as usize);
    let has_previous_page = match request.after {
        Some(after) => rows
            .clone()
            .filter(match order {
                Order::Desc => id.gte(after),
                _ => id.lte(after),
            })
            .limit(1)
            .one(db)
            .await?
            .is_some(),
        None => false,
    };
    let total_count = if with_total {
        Some(rows.count(db).await?)
    } else {
        None
    };
    Ok(Page {
        items,
        has_next_page,
        has_previous_page,
        total_count,
    })
}

/// The opaque cursor of the row with this id.
pub fn encode_cursor(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

fn decode_cursor(cursor: &str) -> AppResult<Uuid> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| Uuid::from_slice(&bytes).ok())
        .ok_or_else(|| AppError::bad_input("after", "after must be a cursor returned by this API"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let id = Uuid::now_v7();
        let cursor = encode_cursor(id);
        assert_eq!(PageRequest::new(5, Some(&cursor)).unwrap().after, Some(id));
        assert!(PageRequest::new(5, Some("not a cursor")).is_err());
        assert!(PageRequest::new(0, None).is_err());
        assert!(PageRequest::new(101, None).is_err());
        assert!(PageRequest::new(100, None).is_ok());
    }
}
