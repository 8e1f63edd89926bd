//! Product lists: an order and a filter ([`ProductQuery`]), paged by keyset on the order's keys
//! and the id ([`Window`], [`Cursor`]), as SQL for SQLite and PostgreSQL.
//!
//! Every statement here is one range of an index (see the migration
//! `m20261204_000010_index_product_reads`): each sort key has an index ending in `id`, and a
//! cursor's position is written as `k1 >= v1 AND (k1 > v1 OR (k1 = v1 AND id > id1))`, whose
//! first term bounds the index range. `search` goes through the full-text index of each
//! database (FTS5 on SQLite, a GIN-indexed `tsvector` on PostgreSQL).

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use sea_orm::{DbBackend, DbErr, Iterable, Statement, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::products::{self, escape_like, search_key};
use crate::{
    db::{Columns, Db},
    entities::product,
    error::{AppError, AppResult},
    pagination::{Cursor, Direction, KeyValue, Page, Window},
};

/// The most ids `filter.ids` may list.
pub const MAX_IDS: usize = 100;

/// What a list may be sorted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SortField {
    Name,
    Price,
    Stock,
    CreatedAt,
    UpdatedAt,
    /// How well a product matches `search` (only with `search`).
    Relevance,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SortDirection {
    Asc,
    Desc,
}

/// One key of an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SortKey {
    pub field: SortField,
    pub direction: SortDirection,
}

/// A full-text search: its words, lower-cased; the last one matches as a prefix.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Search {
    words: Vec<String>,
}

impl Search {
    /// The words of `text` folded as the index folds the products' text
    /// ([`migration::search_fold`]: case, accents, compatibility forms): runs of letters, digits
    /// and the marks that belong to a letter; `None` when the text is blank.
    pub fn parse(text: &str) -> Option<Self> {
        if text.trim().is_empty() {
            return None;
        }
        let words = migration::search_fold(text)
            .split(|c: char| !(c.is_alphanumeric() || migration::is_mark(c)))
            .filter(|word| !word.is_empty())
            .map(str::to_owned)
            .collect();
        Some(Self { words })
    }

    /// The FTS5 query: every word, quoted, the last as a prefix.
    fn fts5(&self) -> String {
        let mut query = String::new();
        for (i, word) in self.words.iter().enumerate() {
            if i > 0 {
                query.push(' ');
            }
            query.push('"');
            query.push_str(word);
            query.push('"');
            if i + 1 == self.words.len() {
                query.push('*');
            }
        }
        query
    }

    /// The PostgreSQL `to_tsquery` text: every word, the last as a prefix.
    fn tsquery(&self) -> String {
        let mut query = self.words.join(" & ");
        query.push_str(":*");
        query
    }
}

/// Which products a list keeps; every condition given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Filter {
    pub price_min_cents: Option<i64>,
    pub price_max_cents: Option<i64>,
    pub in_stock: Option<bool>,
    /// Sorted, without duplicates.
    pub ids: Option<Vec<Uuid>>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub search: Option<Search>,
    /// Lower-cased (as `name_search` is).
    pub name_contains: Option<String>,
}

impl Filter {
    /// Keeps only the ids listed (sorted and deduplicated here).
    ///
    /// # Errors
    /// `BAD_USER_INPUT` on `filter.ids` beyond [`MAX_IDS`].
    pub fn with_ids(mut self, mut ids: Vec<Uuid>) -> AppResult<Self> {
        if ids.len() > MAX_IDS {
            return Err(AppError::bad_input(
                "filter.ids",
                format!("filter.ids may list at most {MAX_IDS} ids"),
            ));
        }
        ids.sort_unstable();
        ids.dedup();
        self.ids = Some(ids);
        Ok(self)
    }

    /// A search without a word (only punctuation) matches nothing, and is not sent to the
    /// full-text index (whose query language has no empty query).
    fn matches_nothing(&self) -> bool {
        self.search.as_ref().is_some_and(|s| s.words.is_empty())
    }

    /// The search, when it is the filter's only condition.
    fn search_alone(&self) -> Option<&Search> {
        let search = self.search.as_ref()?;
        let alone = Filter {
            search: Some(search.clone()),
            ..Filter::default()
        };
        (*self == alone).then_some(search)
    }

    /// Keeps only names containing `text`, ignoring case (blank: no condition).
    pub fn with_name_containing(mut self, text: &str) -> Self {
        self.name_contains = products::search_term(Some(text)).map(search_key);
        self
    }
}

/// An order and a filter: what a cursor is made for.
#[derive(Clone, Debug)]
pub struct ProductQuery {
    order: Vec<SortKey>,
    filter: Filter,
    /// What a cursor carries of the order and filter it was made for: the first 8 bytes of
    /// their SHA-256, computed when a cursor is first made or read (most lists never need it).
    fingerprint: OnceLock<[u8; 8]>,
}

/// Lists are the same when their order and filter are (the fingerprint follows from them).
impl PartialEq for ProductQuery {
    fn eq(&self, other: &Self) -> bool {
        self.order == other.order && self.filter == other.filter
    }
}

impl Eq for ProductQuery {}

impl std::hash::Hash for ProductQuery {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.order.hash(state);
        self.filter.hash(state);
    }
}

/// Today's order, and the one a list without `orderBy` has.
pub const DEFAULT_ORDER: SortKey = SortKey {
    field: SortField::CreatedAt,
    direction: SortDirection::Asc,
};

impl ProductQuery {
    /// Checks an order (empty: [`DEFAULT_ORDER`]) against a filter.
    ///
    /// # Errors
    /// `BAD_USER_INPUT` on `orderBy` when a field comes twice or `RELEVANCE` comes without
    /// `filter.search`; on `filter.priceMax` / `filter.createdBefore` below their minimum.
    pub fn new(order: Vec<SortKey>, filter: Filter) -> AppResult<Self> {
        let order = if order.is_empty() {
            vec![DEFAULT_ORDER]
        } else {
            order
        };
        for (i, key) in order.iter().enumerate() {
            if order[..i].iter().any(|k| k.field == key.field) {
                return Err(AppError::bad_input(
                    "orderBy",
                    "orderBy names each field at most once",
                ));
            }
            if key.field == SortField::Relevance && filter.search.is_none() {
                return Err(AppError::bad_input(
                    "orderBy",
                    "RELEVANCE orders only a list with filter.search",
                ));
            }
        }
        if let (Some(min), Some(max)) = (filter.price_min_cents, filter.price_max_cents)
            && max < min
        {
            return Err(AppError::bad_input(
                "filter.priceMax",
                "filter.priceMax must be at least filter.priceMin",
            ));
        }
        if let (Some(after), Some(before)) = (filter.created_after, filter.created_before)
            && before <= after
        {
            return Err(AppError::bad_input(
                "filter.createdBefore",
                "filter.createdBefore must be later than filter.createdAfter",
            ));
        }
        Ok(Self {
            order,
            filter,
            fingerprint: OnceLock::new(),
        })
    }

    fn fingerprint(&self) -> [u8; 8] {
        *self.fingerprint.get_or_init(|| {
            let digest = Sha256::digest(format!("{:?}|{:?}", self.order, self.filter).as_bytes());
            let mut fingerprint = [0; 8];
            fingerprint.copy_from_slice(&digest[..8]);
            fingerprint
        })
    }

    /// The filter of this list.
    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// Whether the list has the default order (a cursor of the first format is read under it).
    fn is_default_order(&self) -> bool {
        self.order == [DEFAULT_ORDER]
    }

    /// The cursor of a listed product.
    pub fn cursor(&self, listed: &Listed) -> Cursor {
        let row = &listed.product;
        let keys = self
            .order
            .iter()
            .map(|key| match key.field {
                SortField::Name => KeyValue::Text(row.name_search.clone()),
                SortField::Price => KeyValue::Int(row.price_cents),
                SortField::Stock => KeyValue::Int(i64::from(row.stock)),
                SortField::CreatedAt => KeyValue::Int(nanos(row.created_at)),
                SortField::UpdatedAt => KeyValue::Int(nanos(row.updated_at)),
                SortField::Relevance => KeyValue::Float(listed.relevance.unwrap_or(0.0)),
            })
            .collect();
        Cursor::Keyset {
            fingerprint: self.fingerprint(),
            keys,
            id: row.id,
        }
    }
}

fn nanos(at: DateTime<Utc>) -> i64 {
    at.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// A product in a list, with its relevance when the list has a search.
#[derive(Clone, Debug)]
pub struct Listed {
    pub product: Arc<product::Model>,
    pub relevance: Option<f64>,
}

/// A cursor's position, checked against the list it is used with.
struct Position {
    keys: Vec<Value>,
    id: Uuid,
}

/// The position `cursor` (given as `field`) stands for in `query`'s list. A cursor of the
/// first format (an id alone) is read under the default order, at its product's creation time.
async fn position(
    db: &Db,
    query: &ProductQuery,
    cursor: &Cursor,
    field: &'static str,
) -> AppResult<Position> {
    let foreign = || {
        AppError::bad_input(
            field,
            format!("{field} is a cursor of a list with another order or filter"),
        )
    };
    match cursor {
        Cursor::Id(id) => {
            if !query.is_default_order() {
                return Err(foreign());
            }
            let row = products::find(db.reader(), *id).await?.ok_or_else(|| {
                AppError::bad_input(field, format!("{field} points at a product that is gone"))
            })?;
            Ok(Position {
                keys: vec![row.created_at.into()],
                id: *id,
            })
        }
        Cursor::Keyset {
            fingerprint,
            keys,
            id,
        } => {
            if *fingerprint != query.fingerprint() || keys.len() != query.order.len() {
                return Err(foreign());
            }
            let values = query
                .order
                .iter()
                .zip(keys)
                .map(|(key, value)| match (key.field, value) {
                    (SortField::Name, KeyValue::Text(text)) => Some(text.clone().into()),
                    (SortField::Price, KeyValue::Int(n)) => Some((*n).into()),
                    (SortField::Stock, KeyValue::Int(n)) => i32::try_from(*n).ok().map(Value::from),
                    (SortField::CreatedAt | SortField::UpdatedAt, KeyValue::Int(n)) => {
                        Some(DateTime::<Utc>::from_timestamp_nanos(*n).into())
                    }
                    (SortField::Relevance, KeyValue::Float(x)) => Some((*x).into()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(foreign)?;
            Ok(Position {
                keys: values,
                id: *id,
            })
        }
    }
}

/// A statement under construction: SQL text and its values, bound as `$1`, `$2`… in the
/// order they appear (SQLite numbers `$N` parameters by first appearance).
struct Sql {
    backend: DbBackend,
    text: String,
    values: Vec<Value>,
    /// The column a relevance is read from, where it was computed once beforehand (see
    /// [`search_top_statement`]); `None`: computed in place.
    relevance_column: Option<&'static str>,
}

impl Sql {
    fn new(backend: DbBackend) -> Self {
        Self {
            backend,
            text: String::with_capacity(512),
            values: Vec::new(),
            relevance_column: None,
        }
    }

    fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    fn bind(&mut self, value: impl Into<Value>) -> &mut Self {
        self.values.push(value.into());
        self.text.push('$');
        self.text.push_str(&self.values.len().to_string());
        self
    }

    /// ` LIMIT <limit>`: written into the statement on PostgreSQL, bound on SQLite.
    ///
    /// PostgreSQL plans a prepared statement with parameters anew at each execution until a
    /// generic plan (one for any value) looks as cheap; with the limit a parameter, the generic
    /// plan assumes a tenth of the table and never does, so every page read was planned again
    /// (pgbench, the first page's statement: 35,100 reads a second with the limit written in,
    /// 23,400 with it bound). The limit is a number of ours (a page size, 1 to 101), so the
    /// statement cache holds a statement per page size in use. SQLite prepares a statement
    /// once whatever its values, and its readers keep few statements, so there it stays bound.
    fn limit(&mut self, limit: u64) -> &mut Self {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.push(" LIMIT ");
        if self.postgres() {
            self.push(&limit.to_string())
        } else {
            self.bind(limit)
        }
    }

    fn postgres(&self) -> bool {
        self.backend == DbBackend::Postgres
    }

    fn statement(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.text, self.values)
    }

    /// The SQL expression of a sort key.
    fn key(&mut self, field: SortField, search: Option<&Search>) -> &mut Self {
        match field {
            SortField::Name if self.postgres() => self.push("p.name_search COLLATE \"C\""),
            SortField::Name => self.push("p.name_search"),
            SortField::Price => self.push("p.price_cents"),
            SortField::Stock => self.push("p.stock"),
            SortField::CreatedAt => self.push("p.created_at"),
            SortField::UpdatedAt => self.push("p.updated_at"),
            // Higher is more relevant on both databases (bm25 is lower for better matches);
            // a name match weighs more than a description match.
            SortField::Relevance if let Some(column) = self.relevance_column => self.push(column),
            SortField::Relevance if self.postgres() => {
                let terms = search.map(Search::tsquery).unwrap_or_default();
                self.push("ts_rank(p.search_vector, to_tsquery('storefront_search', ")
                    .bind(terms)
                    .push("))::float8")
            }
            SortField::Relevance => self.push("(-bm25(products_fts, 4.0, 1.0))"),
        }
    }

    /// `FROM … WHERE <filter>` (without the keyset conditions).
    fn tables_and_filter(&mut self, filter: &Filter) -> &mut Self {
        match &filter.search {
            Some(search) if !self.postgres() => {
                self.push(" FROM products_fts JOIN products p ON p.rowid = products_fts.rowid")
                    .push(" WHERE products_fts MATCH ")
                    .bind(search.fts5());
            }
            Some(search) => {
                self.push(
                    " FROM products p WHERE p.search_vector @@ to_tsquery('storefront_search', ",
                )
                .bind(search.tsquery())
                .push(")");
            }
            None => {
                self.push(" FROM products p WHERE 1 = 1");
            }
        }
        if let Some(min) = filter.price_min_cents {
            self.push(" AND p.price_cents >= ").bind(min);
        }
        if let Some(max) = filter.price_max_cents {
            self.push(" AND p.price_cents <= ").bind(max);
        }
        match filter.in_stock {
            Some(true) => self.push(" AND p.stock > 0"),
            Some(false) => self.push(" AND p.stock <= 0"),
            None => self,
        };
        if let Some(ids) = &filter.ids {
            if ids.is_empty() {
                self.push(" AND 1 = 0");
            } else {
                self.push(" AND p.id IN (");
                for (i, id) in ids.iter().enumerate() {
                    if i > 0 {
                        self.push(", ");
                    }
                    self.bind(*id);
                }
                self.push(")");
            }
        }
        if let Some(after) = filter.created_after {
            self.push(" AND p.created_at > ").bind(after);
        }
        if let Some(before) = filter.created_before {
            self.push(" AND p.created_at < ").bind(before);
        }
        if let Some(term) = &filter.name_contains {
            self.push(" AND p.name_search LIKE ")
                .bind(format!("%{}%", escape_like(term)))
                .push(" ESCAPE '\\'");
        }
        self
    }

    /// ` AND <the rows past `position`>`: after it in `query`'s order when `forward`, before it
    /// otherwise; the row at the position itself too when `inclusive`.
    fn past(
        &mut self,
        query: &ProductQuery,
        position: &Position,
        forward: bool,
        inclusive: bool,
    ) -> &mut Self {
        let search = query.filter.search.as_ref();
        let op = |direction: SortDirection, or_equal: bool| {
            let ascending = (direction == SortDirection::Asc) == forward;
            match (ascending, or_equal) {
                (true, false) => " > ",
                (true, true) => " >= ",
                (false, false) => " < ",
                (false, true) => " <= ",
            }
        };
        let last_direction = query
            .order
            .last()
            .map_or(SortDirection::Asc, |k| k.direction);
        // Every key in one direction (the id follows the last key's): one row comparison,
        // which both databases take as the index range itself. Key by key (below), the rows
        // tied with the position on the first key are each read and filtered out: a page deep
        // in the 100,000 products out of stock (orderBy STOCK) read 90,000 of them first, 226
        // ms on PostgreSQL against 0.2 ms as a row comparison.
        if query
            .order
            .iter()
            .all(|key| key.direction == last_direction)
        {
            self.push(" AND (");
            for key in &query.order {
                self.key(key.field, search).push(", ");
            }
            self.push("p.id)")
                .push(op(last_direction, inclusive))
                .push("(");
            for value in &position.keys {
                self.bind(value.clone()).push(", ");
            }
            return self.bind(position.id).push(")");
        }
        // The first key's bound alone, so the index range starts there.
        let first = query.order[0];
        self.push(" AND ")
            .key(first.field, search)
            .push(op(first.direction, true))
            .bind(position.keys[0].clone());
        self.push(" AND (");
        for i in 0..=query.order.len() {
            if i > 0 {
                self.push(" OR ");
            }
            self.push("(");
            for (key, value) in query.order[..i].iter().zip(&position.keys) {
                self.key(key.field, search)
                    .push(" = ")
                    .bind(value.clone())
                    .push(" AND ");
            }
            match query.order.get(i) {
                Some(key) => self
                    .key(key.field, search)
                    .push(op(key.direction, false))
                    .bind(position.keys[i].clone()),
                None => self
                    .push("p.id")
                    .push(op(last_direction, inclusive))
                    .bind(position.id),
            };
            self.push(")");
        }
        self.push(")")
    }

    /// ` ORDER BY …` in `query`'s order, or the reverse.
    fn order_by(&mut self, query: &ProductQuery, forward: bool) -> &mut Self {
        let search = query.filter.search.as_ref();
        let word = |direction: SortDirection| {
            if (direction == SortDirection::Asc) == forward {
                " ASC"
            } else {
                " DESC"
            }
        };
        self.push(" ORDER BY ");
        for key in &query.order {
            self.key(key.field, search)
                .push(word(key.direction))
                .push(", ");
        }
        let last = query
            .order
            .last()
            .map_or(SortDirection::Asc, |k| k.direction);
        self.push("p.id").push(word(last))
    }
}

/// What one read of a page asks for: the rows past `after` and before `before`, in the list's
/// order (`forward`) or its reverse, at most `limit` of them.
#[derive(Clone, Copy)]
struct Read<'a> {
    after: Option<&'a Position>,
    before: Option<&'a Position>,
    forward: bool,
    limit: u64,
}

/// `p.<every column of the entity>`, comma-separated.
fn columns(sql: &mut Sql) {
    for (i, column) in product::Column::iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.push("p.").push(sea_orm::IdenStatic::as_str(&column));
    }
}

/// The index of `catalog_version` in a page's row: after the entity's columns ([`columns`]);
/// `relevance`, when there is a search, follows it.
const VERSION_COLUMN: usize = 10;

/// A product from a page's row, read by position: the columns are [`columns`]' (the entity's,
/// in its order). Reading by name looked each name up in each row (a hash per value).
fn listed_product(row: &dyn Columns) -> Result<product::Model, DbErr> {
    Ok(product::Model {
        id: row.uuid(0)?,
        name: row.text(1)?,
        name_search: row.text(2)?,
        description: row.text(3)?,
        price_cents: row.i64(4)?,
        stock: row.i32(5)?,
        created_by: row.optional_uuid(6)?,
        created_at: row.time(7)?,
        updated_at: row.time(8)?,
        version: row.i32(9)?,
    })
}

/// A page's row: the product, the catalog version it was read at and, with a search, its
/// relevance.
fn page_row(searched: bool) -> impl Fn(&dyn Columns) -> Result<(Listed, i64), DbErr> {
    move |row| {
        let relevance = if searched {
            Some(row.f64(VERSION_COLUMN + 1)?)
        } else {
            None
        };
        let listed = Listed {
            product: Arc::new(listed_product(row)?),
            relevance,
        };
        Ok((listed, row.i64(VERSION_COLUMN)?))
    }
}

/// `SELECT p.<every column of the entity>, catalog_version[, relevance]`.
fn select(sql: &mut Sql, query: &ProductQuery) {
    sql.push("SELECT ");
    columns(sql);
    sql.push(", ").push(CATALOG_VERSION);
    if query.filter.search.is_some() {
        sql.push(", ");
        sql.key(SortField::Relevance, query.filter.search.as_ref())
            .push(" AS relevance");
    }
}

/// The statement of one page: `limit` rows past the window's cursors, read in the list's
/// order (`forward`) or its reverse.
fn page_statement(backend: DbBackend, query: &ProductQuery, read: Read<'_>) -> Statement {
    let mut sql = Sql::new(backend);
    select(&mut sql, query);
    sql.tables_and_filter(&query.filter);
    if let Some(after) = read.after {
        sql.past(query, after, true, false);
    }
    if let Some(before) = read.before {
        sql.past(query, before, false, false);
    }
    sql.order_by(query, read.forward);
    sql.limit(read.limit);
    sql.statement()
}

/// A page of a search ordered by relevance alone, on SQLite: [`page_statement`]'s rows, read
/// without joining every match to `products`.
///
/// The general statement joins each match to its product (for the id that breaks ties, and
/// for other filters) before sorting: at 1,000,000 products a common word's 6,500 matches
/// cost 20 ms, most of it reading their rows. Here the relevance of every match is computed
/// once, from the full-text index alone; the `limit`-th best relevance among the matches past
/// the cursor's relevance is the threshold, and only matches at least that relevant (and
/// those tied with the cursor) are joined, sorted by relevance and id and cut to `limit`.
/// Every row of the page is among them: the rows tied with the cursor come first, then the
/// best of the rest, which are at least as relevant as the threshold.
///
/// `None` (use [`page_statement`]) on PostgreSQL, with any filter besides `search`, with
/// another order, or between two cursors.
fn search_top_statement(
    backend: DbBackend,
    query: &ProductQuery,
    read: Read<'_>,
) -> Option<Statement> {
    let search = query.filter.search_alone()?;
    let [key] = query.order.as_slice() else {
        return None;
    };
    if backend == DbBackend::Postgres
        || key.field != SortField::Relevance
        || (read.after.is_some() && read.before.is_some())
    {
        return None;
    }
    let Read {
        after,
        before,
        forward,
        limit,
    } = read;
    let position = if forward { after } else { before };
    if position.is_none() && (after.is_some() || before.is_some()) {
        // A cursor on the far side of the read (`last` with `after`): the general statement.
        return None;
    }
    // Whether this read goes from the most relevant down.
    let descending = (key.direction == SortDirection::Desc) == forward;
    let (beyond, best, unbounded) = if descending {
        (" < ", " DESC", "-1e308")
    } else {
        (" > ", " ASC", "1e308")
    };
    let mut sql = Sql::new(backend);
    sql.relevance_column = Some("s.relevance");
    sql.push(
        "WITH s AS MATERIALIZED (SELECT rowid AS rid, (-bm25(products_fts, 4.0, 1.0)) AS \
         relevance FROM products_fts WHERE products_fts MATCH ",
    )
    .bind(search.fts5())
    .push(") SELECT ");
    columns(&mut sql);
    sql.push(", ").push(CATALOG_VERSION);
    sql.push(
        ", s.relevance AS relevance FROM s JOIN products p ON p.rowid = s.rid WHERE s.relevance",
    )
    .push(if descending { " >= " } else { " <= " })
    .push("coalesce((SELECT relevance FROM s");
    if let Some(position) = position {
        sql.push(" WHERE relevance")
            .push(beyond)
            .bind(position.keys[0].clone());
    }
    sql.push(" ORDER BY relevance")
        .push(best)
        .push(" LIMIT 1 OFFSET ")
        .bind(i64::try_from(limit.saturating_sub(1)).unwrap_or(i64::MAX))
        .push("), ")
        .push(unbounded)
        .push(")");
    if let Some(position) = position {
        sql.past(query, position, forward, false);
    }
    sql.order_by(query, forward);
    sql.limit(limit);
    Some(sql.statement())
}

/// The catalog version as a column (`catalog_version`), read in the same statement as what
/// it is the version of (one snapshot on both databases): what the page cache keys it by.
const CATALOG_VERSION: &str =
    "(SELECT version FROM catalog_version WHERE id = 1) AS catalog_version";

/// The statement of one page: [`search_top_statement`] where it applies, else
/// [`page_statement`].
fn read_statement(backend: DbBackend, query: &ProductQuery, read: Read<'_>) -> Statement {
    search_top_statement(backend, query, read)
        .unwrap_or_else(|| page_statement(backend, query, read))
}

/// Whether any row of the list lies past `position` (after it when `forward`), or at it.
fn exists_statement(
    backend: DbBackend,
    query: &ProductQuery,
    position: &Position,
    forward: bool,
) -> Statement {
    let mut sql = Sql::new(backend);
    sql.push("SELECT p.id");
    sql.tables_and_filter(&query.filter);
    sql.past(query, position, forward, true);
    sql.push(" LIMIT 1");
    sql.statement()
}

/// The statement counting the products `filter` keeps.
fn count_statement(backend: DbBackend, filter: &Filter) -> Statement {
    let mut sql = Sql::new(backend);
    if let Some(search) = filter.search_alone()
        && backend == DbBackend::Sqlite
    {
        // The full-text index holds one row per product (its triggers keep it so): a search
        // alone is counted there, without reading every match's product.
        sql.push("SELECT COUNT(*) AS n, ")
            .push(CATALOG_VERSION)
            .push(" FROM products_fts WHERE products_fts MATCH ")
            .bind(search.fts5());
        return sql.statement();
    }
    sql.push("SELECT COUNT(*) AS n, ").push(CATALOG_VERSION);
    sql.tables_and_filter(filter);
    sql.statement()
}

/// Every statement a page of `query` may run (the page both ways, from and to a cursor, the
/// checks for rows beyond it and the count), with the cursor's keys of a made-up row: what a
/// test reads the query plans of.
pub fn statements(backend: DbBackend, query: &ProductQuery) -> Vec<Statement> {
    let position = Position {
        keys: query
            .order
            .iter()
            .map(|key| match key.field {
                SortField::Name => Value::from("m".to_owned()),
                SortField::Price | SortField::Stock => Value::from(1_i64),
                SortField::CreatedAt | SortField::UpdatedAt => Value::from(Utc::now()),
                SortField::Relevance => Value::from(1.0_f64),
            })
            .collect(),
        id: Uuid::now_v7(),
    };
    vec![
        read_statement(
            backend,
            query,
            Read {
                after: None,
                before: None,
                forward: true,
                limit: 21,
            },
        ),
        read_statement(
            backend,
            query,
            Read {
                after: Some(&position),
                before: None,
                forward: true,
                limit: 21,
            },
        ),
        read_statement(
            backend,
            query,
            Read {
                after: None,
                before: Some(&position),
                forward: false,
                limit: 21,
            },
        ),
        exists_statement(backend, query, &position, false),
        count_statement(backend, &query.filter),
    ]
}

/// One page of `query`'s list in `window`, and the catalog version its products were read at
/// (in the same statement; `None` when no product was read, as for an empty page).
///
/// # Errors
/// `BAD_USER_INPUT` on `after` or `before` when the cursor was made for another list;
/// internal, on a database failure.
pub async fn page(
    db: &Db,
    query: &ProductQuery,
    window: &Window,
) -> AppResult<(Page<Listed>, Option<i64>)> {
    let backend = db.get_database_backend();
    if query.filter.matches_nothing() {
        let page = Page {
            items: vec![],
            has_next_page: false,
            has_previous_page: false,
            total_count: None,
        };
        return Ok((page, None));
    }
    let after = match &window.after {
        Some(cursor) => Some(position(db, query, cursor, "after").await?),
        None => None,
    };
    let before = match &window.before {
        Some(cursor) => Some(position(db, query, cursor, "before").await?),
        None => None,
    };
    let forward = window.direction == Direction::Forward;
    let read = Read {
        after: after.as_ref(),
        before: before.as_ref(),
        forward,
        limit: window.size + 1,
    };
    let statement = read_statement(backend, query, read);
    let rows = db
        .rows(statement, page_row(query.filter.search.is_some()))
        .await?;
    let version = rows.first().map(|(_, version)| *version);
    let mut items: Vec<Listed> = rows.into_iter().map(|(listed, _)| listed).collect();
    let more = items.len() as u64 > window.size;
    items.truncate(window.size as usize);
    if !forward {
        items.reverse();
    }
    // Rows beyond the cursors, when the spec asks whether there are any.
    let beyond = async |position: Option<&Position>, forward: bool| -> AppResult<bool> {
        match position {
            Some(position) => {
                let statement = exists_statement(backend, query, position, forward);
                Ok(!db.rows(statement, |_| Ok(())).await?.is_empty())
            }
            None => Ok(false),
        }
    };
    let (has_next_page, has_previous_page) = if forward {
        (
            more || beyond(before.as_ref(), true).await?,
            beyond(after.as_ref(), false).await?,
        )
    } else {
        (
            beyond(before.as_ref(), true).await?,
            more || beyond(after.as_ref(), false).await?,
        )
    };
    let page = Page {
        items,
        has_next_page,
        has_previous_page,
        total_count: None,
    };
    Ok((page, version))
}

/// How many products `filter` keeps, and the catalog version they were counted at (`None`:
/// at any version).
///
/// # Errors
/// Internal, on a database failure.
pub async fn count(db: &Db, filter: &Filter) -> AppResult<(u64, Option<i64>)> {
    if filter.matches_nothing() {
        return Ok((0, None));
    }
    // `n`, then `catalog_version` (see [`count_statement`]).
    let statement = count_statement(db.get_database_backend(), filter);
    let (n, version) = db
        .rows(statement, |row| Ok((row.i64(0)?, row.i64(1)?)))
        .await?
        .pop()
        .ok_or_else(|| AppError::internal("COUNT returned no row"))?;
    Ok((u64::try_from(n).unwrap_or(0), Some(version)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every page of `query` walked forward by `size` and back again, read by `db`: the ids,
    /// the `hasNextPage`/`hasPreviousPage` of each page and the count.
    async fn walk(db: &Db, query: &ProductQuery, size: i32) -> Vec<(Vec<Uuid>, bool, bool, u64)> {
        let mut pages = Vec::new();
        let count = count(db, query.filter()).await.unwrap().0;
        let mut after: Option<String> = None;
        loop {
            let window = Window::new(Some(size), after.as_deref(), None, None).unwrap();
            let (page, _) = page(db, query, &window).await.unwrap();
            let ids = page.items.iter().map(|l| l.product.id).collect();
            pages.push((ids, page.has_next_page, page.has_previous_page, count));
            match page.items.last() {
                Some(last) if page.has_next_page => after = Some(query.cursor(last).encode()),
                _ => break,
            }
        }
        let mut before: Option<String> = None;
        loop {
            let window = Window::new(None, None, Some(size), before.as_deref()).unwrap();
            let (page, _) = page(db, query, &window).await.unwrap();
            let ids = page.items.iter().map(|l| l.product.id).collect();
            pages.push((ids, page.has_next_page, page.has_previous_page, count));
            match page.items.first() {
                Some(first) if page.has_previous_page => {
                    before = Some(query.cursor(first).encode());
                }
                _ => break,
            }
        }
        pages
    }

    /// Times written at a SQL prompt, in every form sqlx reads, are read the same both ways.
    /// (Found by an outside attack: the reader refused `2026-01-01 10:00+01:00`.)
    #[tokio::test]
    async fn sqlite_reads_read_every_time_the_pool_reads() {
        use sea_orm::ConnectionTrait;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let db = crate::db::connect_and_migrate(&url).await.unwrap();
        // (`created_at` has text affinity: SQLite stores a number written to it as text, which
        // neither way reads as a time.)
        let times: [sea_orm::Value; 14] = [
            "2026-01-01T10:00:00.123456789+00:00".into(),
            "2026-01-01T11:00:00+01:00".into(),
            "2026-01-01 10:00:00.5".into(),
            "2026-01-01 10:00".into(),
            "2026-01-01 10:00Z".into(),
            "2026-01-01 10:00+01:00".into(),
            "2026-01-01 10:00:00.25Z".into(),
            "2026-01-01 10:00:00.25-02:30".into(),
            "2026-01-01T10:00".into(),
            "2026-01-01T10:00Z".into(),
            "2026-01-01T10:00-05:00".into(),
            "2026-01-01T10:00:00.75".into(),
            "2026-01-01T10:00:00.75Z".into(),
            "2026-01-01T10:00:00.1+14:00".into(),
        ];
        for (i, time) in times.iter().enumerate() {
            let new = crate::catalog::NewProduct {
                name: &format!("Item {i:02}"),
                description: "d",
                price: "1.00",
                stock: 1,
            };
            let product = products::create(&db, new, None, ()).await.unwrap();
            let statement = Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "UPDATE products SET created_at = $1, updated_at = $1 WHERE id = $2",
                [time.clone(), product.id.into()],
            );
            assert_eq!(
                db.writer()
                    .execute_raw(statement)
                    .await
                    .unwrap()
                    .rows_affected(),
                1
            );
        }
        let query = ProductQuery::new(
            vec![SortKey {
                field: SortField::Price,
                direction: SortDirection::Asc,
            }],
            Filter::default(),
        )
        .unwrap();
        let window = Window::new(Some(50), None, None, None).unwrap();
        let (read, _) = page(&db, &query, &window).await.unwrap();
        let pool = db.reading_through_the_pool();
        let (pooled, _) = page(&pool, &query, &window).await.unwrap();
        assert_eq!(read.items.len(), times.len());
        for (a, b) in read.items.iter().zip(&pooled.items) {
            assert_eq!(a.product, b.product);
        }
    }

    #[tokio::test]
    async fn sqlite_reads_give_what_the_pool_gives_for_every_order_and_filter() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let db = crate::db::connect_and_migrate(&url).await.unwrap();
        assert!(db.reads_apart(), "a SQLite file is read by the reader");
        let pool = db.reading_through_the_pool();
        assert!(!pool.reads_apart());
        // Ties on every key but the id: 4 prices, 3 stocks, 5 names, shared words.
        let words = ["Lamp", "Chair", "Désk", "lamp shade", "Chair cushion"];
        let mut ids = Vec::new();
        for i in 0..37_i32 {
            let price = format!("{}.{:02}", 5 + (i % 4) * 10, (i * 7) % 100 % 4);
            let new = crate::catalog::NewProduct {
                name: words[(i % 5) as usize],
                description: if i % 3 == 0 { "oak wood" } else { "steel" },
                price: &price,
                stock: (i % 3) * 4,
            };
            let product = products::create(&db, new, None, ()).await.unwrap();
            ids.push(product.id);
        }
        let mid = products::find(db.reader(), ids[18]).await.unwrap().unwrap();
        let key = |field, direction| SortKey { field, direction };
        let (asc, desc) = (SortDirection::Asc, SortDirection::Desc);
        let orders = [
            vec![],
            vec![key(SortField::Price, desc)],
            vec![key(SortField::Name, asc), key(SortField::Stock, desc)],
            vec![key(SortField::UpdatedAt, desc)],
            vec![key(SortField::Stock, asc), key(SortField::CreatedAt, desc)],
        ];
        let filters = [
            Filter::default(),
            Filter {
                price_min_cents: Some(1_500),
                in_stock: Some(true),
                ..Filter::default()
            },
            Filter {
                created_after: Some(mid.created_at),
                price_max_cents: Some(2_600),
                ..Filter::default()
            },
            Filter {
                created_before: Some(mid.created_at),
                ..Filter::default()
            },
            Filter::default().with_ids(ids[3..30].to_vec()).unwrap(),
            Filter {
                name_contains: Some("chair".to_owned()),
                ..Filter::default()
            },
            Filter {
                search: Search::parse("desk"),
                ..Filter::default()
            },
            Filter {
                search: Search::parse("la"),
                in_stock: Some(false),
                ..Filter::default()
            },
        ];
        let mut compared = 0;
        for filter in &filters {
            let mut lists: Vec<Vec<SortKey>> = orders.to_vec();
            if filter.search.is_some() {
                lists.push(vec![key(SortField::Relevance, desc)]);
                lists.push(vec![
                    key(SortField::Relevance, asc),
                    key(SortField::Price, asc),
                ]);
            }
            for order in lists {
                let query = ProductQuery::new(order.clone(), filter.clone()).unwrap();
                for size in [1, 4, 50] {
                    let read = walk(&db, &query, size).await;
                    let pooled = walk(&pool, &query, size).await;
                    assert_eq!(read, pooled, "{order:?} {filter:?} by {size}");
                    compared += read.iter().map(|(ids, ..)| ids.len()).sum::<usize>();
                }
            }
        }
        assert!(compared > 2_000, "{compared} products compared");

        // The product itself, field by field, and its relevance.
        let query = ProductQuery::new(
            vec![key(SortField::Relevance, desc)],
            Filter {
                search: Search::parse("lamp"),
                ..Filter::default()
            },
        )
        .unwrap();
        let window = Window::new(Some(50), None, None, None).unwrap();
        let (read, read_at) = page(&db, &query, &window).await.unwrap();
        let (pooled, pooled_at) = page(&pool, &query, &window).await.unwrap();
        assert_eq!(read_at, pooled_at);
        assert!(!read.items.is_empty());
        for (a, b) in read.items.iter().zip(&pooled.items) {
            assert_eq!(a.product, b.product);
            assert_eq!(a.relevance, b.relevance);
        }
    }

    #[test]
    fn pages_are_read_by_position_in_the_entity_s_column_order() {
        // listed_product reads by position: a column added to, or moved in, the entity must
        // be read there too.
        let names: Vec<&str> = product::Column::iter()
            .map(|c| sea_orm::IdenStatic::as_str(&c))
            .collect();
        assert_eq!(
            names,
            [
                "id",
                "name",
                "name_search",
                "description",
                "price_cents",
                "stock",
                "created_by",
                "created_at",
                "updated_at",
                "version"
            ]
        );
        assert_eq!(VERSION_COLUMN, names.len());
    }

    #[test]
    fn search_words_are_split_and_the_last_is_a_prefix() {
        // Folded as the index folds the products' text.
        let search = Search::parse("  Crème  BRÛLÉE, ＴＥＡ").unwrap();
        assert_eq!(search.fts5(), r#""creme" "brulee" "tea"*"#);
        assert_eq!(search.tsquery(), "creme & brulee & tea:*");
        assert_eq!(Search::parse("Straße").unwrap().words, ["strasse"]);
        assert_eq!(Search::parse("मसाला चाय").unwrap().words, ["मसाला", "चाय"]);
        assert!(Search::parse("   ").is_none());
        assert!(Search::parse("%%'\"").unwrap().words.is_empty());
    }

    #[test]
    fn relevance_needs_a_search_and_fields_come_once() {
        let relevance = SortKey {
            field: SortField::Relevance,
            direction: SortDirection::Desc,
        };
        assert!(ProductQuery::new(vec![relevance], Filter::default()).is_err());
        let filter = Filter {
            search: Search::parse("tea"),
            ..Filter::default()
        };
        assert!(ProductQuery::new(vec![relevance], filter).is_ok());
        assert!(ProductQuery::new(vec![DEFAULT_ORDER, DEFAULT_ORDER], Filter::default()).is_err());
    }

    #[test]
    fn parameters_are_numbered_in_the_order_they_appear() {
        let filter = Filter {
            search: Search::parse("tea"),
            price_min_cents: Some(1),
            ..Filter::default()
        };
        let order = vec![
            SortKey {
                field: SortField::Relevance,
                direction: SortDirection::Desc,
            },
            SortKey {
                field: SortField::Price,
                direction: SortDirection::Asc,
            },
        ];
        let query = ProductQuery::new(order, filter).unwrap();
        for backend in [DbBackend::Sqlite, DbBackend::Postgres] {
            for statement in statements(backend, &query) {
                let mut next = 1;
                let sql = &statement.sql;
                let mut rest = sql.as_str();
                while let Some(at) = rest.find('$') {
                    rest = &rest[at + 1..];
                    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    assert_eq!(digits, next.to_string(), "{sql}");
                    next += 1;
                }
                assert_eq!(next - 1, statement.values.map_or(0, |v| v.0.len()), "{sql}");
            }
        }
    }
}
