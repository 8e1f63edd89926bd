//! Catalog pages kept in memory until the catalog changes.
//!
//! Reading a page of products from SQLite through sqlx costs several times what the rest of a
//! request does (each row and value is copied across sqlx's worker thread), and a storefront's
//! catalog is read far more often than it is written. So each replica keeps the pages (and
//! the `totalCount`s) it has read, tagged with the catalog version they were read at.
//!
//! The version is a counter in the `catalog_version` table that database triggers bump inside
//! every transaction that changes `products`, whoever writes (the API, `storefront seed`,
//! another replica, a SQL prompt). A replica re-reads it right after each of its own writes,
//! so its own changes show at once, and every `CATALOG_POLL_MS` (250 ms by default), so other
//! writers' changes show within that. If the version cannot be read for a while (the database
//! is unreachable), cached pages are not trusted: reads go to the database and report its
//! errors, so staleness stays bounded.
//!
//! A page is keyed by every argument of its list (order, filter and window): sorted, filtered
//! and searched pages are kept like plain ones, under the same budget, since a storefront's
//! visitors ask for the same few sorts and filters again and again. Whether bypassing the
//! cache for them would be cheaper is not measured yet (issue 13's benchmark).
//!
//! Memory is bounded by `CATALOG_CACHE_MB` (16 by default; 0 turns the cache off), counted
//! from the text each cached page holds, so many distinct pages or searches cannot grow the
//! process: when an entry would not fit, those seldom read make room.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use quick_cache::{Weighter, sync::Cache};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Statement};

use super::query::{self, Filter, Listed, ProductQuery};
use crate::{
    db::{Db, Wake},
    error::AppResult,
    pagination::{Page, Window},
};

/// A page of products whose rows the cache shares: handing one out copies pointers, not rows.
pub type CatalogPage = Page<Listed>;

/// What an entry holds: a page (keyed by every argument of the list: order, filter and
/// window), or the `totalCount` of a filter, each read at one catalog version.
#[derive(Clone, PartialEq, Eq, Hash)]
enum EntryKey {
    Page(i64, Arc<ProductQuery>, Window),
    Count(i64, Filter),
}

#[derive(Clone)]
struct Entry {
    /// What the entry holds, as [`page_bytes`] and [`count_bytes`] count it.
    bytes: u64,
    value: Held,
}

#[derive(Clone)]
enum Held {
    Page(Arc<CatalogPage>),
    Count(u64),
}

/// Weighs entries by the bytes they hold, counted once when they are stored.
#[derive(Clone)]
struct EntryBytes;

impl Weighter<EntryKey, Entry> for EntryBytes {
    fn weight(&self, _key: &EntryKey, entry: &Entry) -> u64 {
        entry.bytes
    }
}

/// The cache splits its budget into shards of at least this much: no entry heavier than its
/// shard's share is kept.
const MIN_SHARD_BYTES: usize = 1024 * 1024;

/// The cache of one replica.
pub struct PageCache {
    /// The most bytes of entries kept (0: no cache).
    budget: usize,
    /// The newest catalog version this replica has read.
    version: AtomicI64,
    /// When the version was last read successfully, in ms since `started`.
    checked_at_ms: AtomicU64,
    /// Cached pages are trusted only while the version was checked within this long.
    max_unchecked: Duration,
    started: Instant,
    /// Entries are keyed by the version they were read at, so none is ever served at another.
    entries: Cache<EntryKey, Entry, EntryBytes>,
    /// The newest version entries were read at: when it grows, the older ones are dropped.
    entries_version: AtomicI64,
}

impl PageCache {
    /// Reads the current catalog version. `budget` is the most bytes of pages kept (0: no
    /// cache); `poll` is how often [`PageCache::spawn_poller`] re-reads the version.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn load(
        db: &DatabaseConnection,
        budget: usize,
        poll: Duration,
    ) -> Result<Arc<Self>, DbErr> {
        let catalog = Arc::new(Self {
            budget,
            version: AtomicI64::new(0),
            checked_at_ms: AtomicU64::new(0),
            // A few missed polls are tolerated; a database gone for longer is not papered over.
            max_unchecked: (poll * 4).max(Duration::from_secs(1)),
            started: Instant::now(),
            // The estimate caps the shard count (32 entries a shard at least): one shard per
            // `MIN_SHARD_BYTES` of budget.
            entries: Cache::with_weighter(
                (budget / (MIN_SHARD_BYTES / 32)).max(1),
                budget as u64,
                EntryBytes,
            ),
            entries_version: AtomicI64::new(0),
        });
        catalog.check_version(db).await?;
        Ok(catalog)
    }

    /// Re-reads the catalog version every `interval`, and when `wake` is woken (another
    /// replica's change was heard), for as long as the catalog is in use.
    pub fn spawn_poller(self: &Arc<Self>, db: DatabaseConnection, interval: Duration, wake: Wake) {
        if self.budget == 0 {
            return;
        }
        crate::db::poll_every(
            self,
            db,
            interval,
            wake,
            "the catalog version",
            async |catalog, db| catalog.check_version(&db).await,
        );
    }

    /// Takes note of a change this replica just committed, so its next reads see it.
    ///
    /// A failure is logged, not returned: the change itself was made, and cached pages stop
    /// being trusted soon after the version cannot be read.
    pub async fn note_change(&self, db: &DatabaseConnection) {
        if self.budget == 0 {
            return;
        }
        if let Err(err) = self.check_version(db).await {
            tracing::warn!(error = %err, "could not read the catalog version after a change");
        }
    }

    /// One page of `query`'s list, with the number of products its filter keeps when
    /// `with_total`.
    ///
    /// # Errors
    /// `BAD_USER_INPUT` on a cursor of another list; internal, on a database failure.
    pub async fn page(
        &self,
        db: &Db,
        query: &Arc<ProductQuery>,
        window: &Window,
        with_total: bool,
    ) -> AppResult<CatalogPage> {
        let (page, total) = if self.budget == 0 || !self.is_fresh() {
            read(db, query, window, with_total).await?
        } else {
            self.cached(db, query, window, with_total).await?
        };
        Ok(Page {
            items: page.items.clone(),
            has_next_page: page.has_next_page,
            has_previous_page: page.has_previous_page,
            total_count: total,
        })
    }

    /// [`PageCache::page`] through the cache: the shared page and the count.
    async fn cached(
        &self,
        db: &Db,
        query: &Arc<ProductQuery>,
        window: &Window,
        with_total: bool,
    ) -> AppResult<(Arc<CatalogPage>, Option<u64>)> {
        // Entries are looked up under the newest version this replica knows, and stored under
        // the version read in the same statement as what they hold (so an entry under a
        // version holds the catalog as it was at that version, never older). A read that
        // meets a newer version raises the replica's before it answers: no later lookup can
        // then find an entry older than what this answer showed.
        let known = self.version.load(Ordering::Acquire);
        self.drop_entries_before(known);
        let page_key = EntryKey::Page(known, query.clone(), window.clone());
        let page = match self.entries.get(&page_key) {
            Some(Entry {
                value: Held::Page(page),
                ..
            }) => page,
            _ => {
                let (page, read_at) = query::page(db, query, window).await?;
                let page = Arc::new(page);
                let read_at = self.saw(read_at.unwrap_or(known));
                let bytes = page_bytes(query, window, &page);
                let key = EntryKey::Page(read_at, query.clone(), window.clone());
                self.store(read_at, key, bytes, Held::Page(page.clone()));
                page
            }
        };
        if !with_total {
            return Ok((page, None));
        }
        let known = self.version.load(Ordering::Acquire);
        let count_key = EntryKey::Count(known, query.filter().clone());
        let total = match self.entries.get(&count_key) {
            Some(Entry {
                value: Held::Count(count),
                ..
            }) => count,
            _ => {
                let (count, read_at) = query::count(db, query.filter()).await?;
                let read_at = self.saw(read_at.unwrap_or(known));
                let bytes = count_bytes(query);
                let key = EntryKey::Count(read_at, query.filter().clone());
                self.store(read_at, key, bytes, Held::Count(count));
                count
            }
        };
        Ok((page, Some(total)))
    }

    /// Takes note of a version a read met; returns it.
    fn saw(&self, version: i64) -> i64 {
        self.version.fetch_max(version, Ordering::AcqRel);
        self.drop_entries_before(version);
        version
    }

    /// Drops every entry when `version` is newer than the entries' (none is read again).
    fn drop_entries_before(&self, version: i64) {
        if self.entries_version.fetch_max(version, Ordering::AcqRel) < version {
            self.entries.clear();
        }
    }

    /// Whether the version was read recently enough for cached pages to be trusted.
    fn is_fresh(&self) -> bool {
        let checked = Duration::from_millis(self.checked_at_ms.load(Ordering::Acquire));
        self.started.elapsed().saturating_sub(checked) <= self.max_unchecked
    }

    /// Stores what was read at `version`, unless the catalog has changed since (no reader
    /// would ask for it again). An entry heavier than the cache can hold is not stored.
    fn store(&self, version: i64, key: EntryKey, bytes: usize, value: Held) {
        if self.version.load(Ordering::Acquire) == version {
            let entry = Entry {
                bytes: bytes as u64,
                value,
            };
            self.entries.insert(key, entry);
        }
    }

    async fn check_version(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        let version = read_version(db).await?;
        // Versions only grow; of two reads racing, the newer one wins.
        self.saw(version);
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.checked_at_ms.fetch_max(now, Ordering::AcqRel);
        Ok(())
    }

    /// The bytes of entries held now, as the budget counts them.
    pub fn cached_bytes(&self) -> usize {
        usize::try_from(self.entries.weight()).unwrap_or(usize::MAX)
    }
}

/// Fixed cost counted per entry and per product: the map slot, the key, the `Arc`s, the
/// row's other fields and the allocator's rounding.
const ENTRY_OVERHEAD: usize = 128;
const ROW_OVERHEAD: usize = 192;

/// What a cached page holds: its rows' text, its key's text (as its `Debug` form counts it,
/// an overstatement) and a fixed amount per row and per entry. A row shared by two pages
/// counts twice, so the count can only overstate.
fn page_bytes(query: &ProductQuery, window: &Window, page: &CatalogPage) -> usize {
    let rows: usize = page
        .items
        .iter()
        .map(|listed| {
            let row = &listed.product;
            ROW_OVERHEAD + row.name.len() + row.name_search.len() + row.description.len()
        })
        .sum();
    ENTRY_OVERHEAD + key_bytes(query) + format!("{window:?}").len() + rows
}

fn count_bytes(query: &ProductQuery) -> usize {
    ENTRY_OVERHEAD + key_bytes(query)
}

fn key_bytes(query: &ProductQuery) -> usize {
    format!("{query:?}").len()
}

async fn read(
    db: &Db,
    query: &ProductQuery,
    window: &Window,
    with_total: bool,
) -> AppResult<(Arc<CatalogPage>, Option<u64>)> {
    let page = Arc::new(query::page(db, query, window).await?.0);
    let total = if with_total {
        Some(query::count(db, query.filter()).await?.0)
    } else {
        None
    };
    Ok((page, total))
}

async fn read_version(db: &DatabaseConnection) -> Result<i64, DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT version FROM catalog_version WHERE id = 1",
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("catalog_version".to_owned()))?;
    row.try_get("", "version")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{NewProduct, products};

    #[tokio::test]
    async fn memory_stays_within_the_budget_and_pages_stay_right() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let db = crate::db::connect_and_migrate(&url).await.unwrap();
        let description = "x".repeat(1_000);
        for i in 0..30 {
            let new = NewProduct {
                name: &format!("Product {i:02}"),
                description: &description,
                price: "1.00",
                stock: 1,
            };
            products::create(&db, new, None, ()).await.unwrap();
        }
        // Room for a few one-product pages only.
        let budget = 8_000;
        let catalog = PageCache::load(&db, budget, Duration::from_millis(250))
            .await
            .unwrap();
        let list = Arc::new(ProductQuery::new(vec![], Filter::default()).unwrap());
        let mut after: Option<String> = None;
        for i in 0..30 {
            let window = Window::new(Some(1), after.as_deref(), None, None).unwrap();
            let page = catalog.page(&db, &list, &window, false).await.unwrap();
            assert_eq!(page.items[0].product.name, format!("Product {i:02}"));
            let held = catalog.cached_bytes();
            assert!(held > 0, "the page was kept");
            assert!(held <= budget, "{held} bytes held, budget {budget}");
            after = Some(list.cursor(&page.items[0]).encode());
        }
        // A page bigger than the whole budget is served, not kept.
        let all = Window::new(Some(30), None, None, None).unwrap();
        let page = catalog.page(&db, &list, &all, true).await.unwrap();
        assert_eq!((page.items.len(), page.total_count), (30, Some(30)));
        assert!(catalog.cached_bytes() <= budget);

        // The count is kept, and a change shows at once.
        let first = Window::new(Some(1), None, None, None).unwrap();
        let page = catalog.page(&db, &list, &first, true).await.unwrap();
        assert_eq!(page.total_count, Some(30));
        let new = NewProduct {
            name: "Product 30",
            description: "new",
            price: "1.00",
            stock: 1,
        };
        products::create(&db, new, None, ()).await.unwrap();
        catalog.note_change(&db).await;
        let page = catalog.page(&db, &list, &first, true).await.unwrap();
        assert_eq!(page.total_count, Some(31));
    }
}
