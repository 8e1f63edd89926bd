//! Cursor pagination, never OFFSET: keyset on the primary key (UUIDv7, so creation order) for
//! [`PageRequest`], and on a list's own sort keys (ending in the id) for [`Window`] and
//! [`Cursor`].

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

/// Which end of the list a page is read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// `first`: the page starts right after `after` (or at the start of the list).
    Forward,
    /// `last`: the page ends right before `before` (or at the end of the list).
    Backward,
}

/// A validated Relay window: `first` or `last` rows, between the cursors `after` and
/// `before` (either may be absent), for lists paged on keys of their own (see [`Cursor`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    pub size: u64,
    pub direction: Direction,
    pub after: Option<Cursor>,
    pub before: Option<Cursor>,
}

impl Window {
    /// Validates `first`, `after`, `last` and `before`. Neither `first` nor `last` means the
    /// first [`DEFAULT_PAGE_SIZE`] rows.
    ///
    /// # Errors
    /// `BAD_USER_INPUT` on `last` when both `first` and `last` are given, on `first` or `last`
    /// outside 1..=100, and on `after` or `before` when it is not a cursor this API issued.
    pub fn new(
        first: Option<i32>,
        after: Option<&str>,
        last: Option<i32>,
        before: Option<&str>,
    ) -> AppResult<Self> {
        let (field, size, direction) = match (first, last) {
            (Some(_), Some(_)) => {
                return Err(AppError::bad_input("last", "give first or last, not both"));
            }
            (None, Some(last)) => ("last", last, Direction::Backward),
            (first, None) => (
                "first",
                first.unwrap_or(DEFAULT_PAGE_SIZE),
                Direction::Forward,
            ),
        };
        if !(1..=MAX_PAGE_SIZE).contains(&size) {
            return Err(AppError::bad_input(
                field,
                format!("{field} must be between 1 and {MAX_PAGE_SIZE}"),
            ));
        }
        Ok(Self {
            size: size as u64,
            direction,
            after: after.map(|c| Cursor::decode(c, "after")).transpose()?,
            before: before.map(|c| Cursor::decode(c, "before")).transpose()?,
        })
    }
}

/// One sort key's value in a [`Cursor`].
#[derive(Clone, Debug, PartialEq)]
pub enum KeyValue {
    Text(String),
    Int(i64),
    Float(f64),
}

/// A position in a list sorted on keys of its own: the sort keys' values of a row and its id,
/// with a fingerprint of the order and filter it was made for, so a cursor is never read
/// under another order or filter.
///
/// Encoded as URL-safe base64 of a versioned binary form: the version byte (2), the 8-byte
/// fingerprint, the key count, each key (a type tag and its value) and the 16-byte id. A
/// cursor of the first format (the 16 bytes of an id alone) decodes as [`Cursor::Id`].
#[derive(Clone, Debug)]
pub enum Cursor {
    Keyset {
        fingerprint: [u8; 8],
        keys: Vec<KeyValue>,
        id: Uuid,
    },
    /// A cursor of the first format: only the id of the row.
    Id(Uuid),
}

// Cursors are compared and hashed by their encoded form (a page cache key): the same bytes,
// the same position.
impl PartialEq for Cursor {
    fn eq(&self, other: &Self) -> bool {
        self.to_bytes() == other.to_bytes()
    }
}

impl Eq for Cursor {}

impl std::hash::Hash for Cursor {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.to_bytes().hash(state);
    }
}

const CURSOR_VERSION: u8 = 2;

impl Cursor {
    /// The opaque text of this cursor.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.to_bytes())
    }

    fn to_bytes(&self) -> Vec<u8> {
        match self {
            Cursor::Id(id) => id.as_bytes().to_vec(),
            Cursor::Keyset {
                fingerprint,
                keys,
                id,
            } => {
                let mut out = Vec::with_capacity(32);
                out.push(CURSOR_VERSION);
                out.extend_from_slice(fingerprint);
                out.push(u8::try_from(keys.len()).unwrap_or(u8::MAX));
                for key in keys {
                    match key {
                        KeyValue::Text(text) => {
                            out.push(b's');
                            let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
                            out.extend_from_slice(&len.to_be_bytes());
                            out.extend_from_slice(text.as_bytes());
                        }
                        KeyValue::Int(n) => {
                            out.push(b'i');
                            out.extend_from_slice(&n.to_be_bytes());
                        }
                        KeyValue::Float(x) => {
                            out.push(b'f');
                            out.extend_from_slice(&x.to_bits().to_be_bytes());
                        }
                    }
                }
                out.extend_from_slice(id.as_bytes());
                out
            }
        }
    }

    /// Reads a cursor given as the argument `field`.
    ///
    /// # Errors
    /// `BAD_USER_INPUT` on `field` when it is not a cursor this API issued.
    pub fn decode(text: &str, field: &'static str) -> AppResult<Self> {
        let refused = || {
            AppError::bad_input(
                field,
                format!("{field} must be a cursor returned by this API"),
            )
        };
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| refused())?;
        if bytes.len() == 16 {
            return Ok(Cursor::Id(Uuid::from_slice(&bytes).map_err(|_| refused())?));
        }
        Self::from_bytes(&bytes).ok_or_else(refused)
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (&version, rest) = bytes.split_first()?;
        if version != CURSOR_VERSION {
            return None;
        }
        let (fingerprint, rest) = rest.split_first_chunk::<8>()?;
        let (&count, mut rest) = rest.split_first()?;
        let mut keys = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let (&tag, after_tag) = rest.split_first()?;
            rest = after_tag;
            let key = match tag {
                b's' => {
                    let (len, after_len) = rest.split_first_chunk::<4>()?;
                    let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
                    if after_len.len() < len {
                        return None;
                    }
                    let (text, after_text) = after_len.split_at(len);
                    rest = after_text;
                    KeyValue::Text(String::from_utf8(text.to_vec()).ok()?)
                }
                b'i' => {
                    let (n, after_n) = rest.split_first_chunk::<8>()?;
                    rest = after_n;
                    KeyValue::Int(i64::from_be_bytes(*n))
                }
                b'f' => {
                    let (x, after_x) = rest.split_first_chunk::<8>()?;
                    rest = after_x;
                    KeyValue::Float(f64::from_bits(u64::from_be_bytes(*x)))
                }
                _ => return None,
            };
            keys.push(key);
        }
        let id = Uuid::from_slice(rest).ok()?;
        Some(Cursor::Keyset {
            fingerprint: *fingerprint,
            keys,
            id,
        })
    }
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

    #[test]
    fn keyset_cursors_round_trip_and_truncations_are_refused() {
        let cursor = Cursor::Keyset {
            fingerprint: *b"abcdefgh",
            keys: vec![
                KeyValue::Text("crème brûlée".to_owned()),
                KeyValue::Int(-5),
                KeyValue::Float(-1.25e-7),
            ],
            id: Uuid::now_v7(),
        };
        let text = cursor.encode();
        assert_eq!(Cursor::decode(&text, "after").unwrap(), cursor);
        let bytes = URL_SAFE_NO_PAD.decode(&text).unwrap();
        for len in 0..bytes.len() {
            let cut = URL_SAFE_NO_PAD.encode(&bytes[..len]);
            if len != 16 {
                assert!(Cursor::decode(&cut, "before").is_err(), "{len} bytes");
            }
        }
        let id = Uuid::now_v7();
        assert_eq!(
            Cursor::decode(&encode_cursor(id), "after").unwrap(),
            Cursor::Id(id)
        );
    }

    #[test]
    fn windows_take_first_or_last() {
        let w = Window::new(None, None, None, None).unwrap();
        assert_eq!((w.size, w.direction), (20, Direction::Forward));
        let w = Window::new(None, None, Some(5), None).unwrap();
        assert_eq!((w.size, w.direction), (5, Direction::Backward));
        let both = Window::new(Some(5), None, Some(5), None).unwrap_err();
        assert!(matches!(both, AppError::BadUserInput { field: "last", .. }));
        assert!(Window::new(None, None, Some(101), None).is_err());
        assert!(Window::new(None, None, None, Some("x")).is_err());
    }
}
