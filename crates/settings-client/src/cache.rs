//! The pure part of the cache: entries per shop with the time they were fetched, and a
//! generation per shop that every invalidation bumps, so that an answer fetched before an
//! invalidation is never stored. No I/O; the clock is passed in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::ShopSnapshot;

/// What the cache holds for a shop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cached<V> {
    /// Fetched less than the TTL ago.
    Fresh(V),
    /// Fetched longer ago than the TTL: fetch again, but usable when that fails.
    Expired(V),
    /// Never fetched, or invalidated since.
    Missing,
}

/// Taken before a fetch; the answer is stored only if no invalidation happened in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket(u64);

struct Entry<V> {
    fetched: Instant,
    value: V,
}

struct Inner<V> {
    entries: HashMap<String, Entry<V>>,
    /// Bumped by every invalidation of the shop.
    generations: HashMap<String, u64>,
}

pub(crate) struct ShopCache<V> {
    ttl: Duration,
    inner: Mutex<Inner<V>>,
}

impl<V: Clone> ShopCache<V> {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                generations: HashMap::new(),
            }),
        }
    }

    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    fn lock(&self) -> MutexGuard<'_, Inner<V>> {
        // The data stays consistent whatever panicked while holding the lock.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn lookup(&self, shop_id: &str, now: Instant) -> Cached<V> {
        match self.lock().entries.get(shop_id) {
            Some(entry) if now.saturating_duration_since(entry.fetched) < self.ttl => {
                Cached::Fresh(entry.value.clone())
            }
            Some(entry) => Cached::Expired(entry.value.clone()),
            None => Cached::Missing,
        }
    }

    /// Take before fetching `shop_id`.
    pub(crate) fn ticket(&self, shop_id: &str) -> Ticket {
        Ticket(self.lock().generations.get(shop_id).copied().unwrap_or(0))
    }

    /// Stores what was fetched with `ticket`, unless the shop was invalidated since the ticket
    /// was taken. Returns whether it was stored.
    pub(crate) fn store(&self, shop_id: &str, ticket: Ticket, value: V, fetched: Instant) -> bool {
        let mut inner = self.lock();
        if inner.generations.get(shop_id).copied().unwrap_or(0) != ticket.0 {
            return false;
        }
        inner
            .entries
            .insert(shop_id.to_owned(), Entry { fetched, value });
        true
    }

    /// Drops the entry and makes every fetch in flight for the shop unstorable.
    pub(crate) fn invalidate(&self, shop_id: &str) {
        let mut inner = self.lock();
        inner.entries.remove(shop_id);
        *inner.generations.entry(shop_id.to_owned()).or_insert(0) += 1;
    }
}

/// What a caller derived from a shop's [`ShopSnapshot`] (a view of its own, a WMS client),
/// kept as long as the settings client hands out the same snapshot: it is derived again exactly
/// when the settings were fetched again (after the TTL or an invalidation).
///
/// Keyed on the identity of the snapshot (`Arc::ptr_eq`), so a value derived from a snapshot
/// that was invalidated meanwhile is never handed out for a newer one.
pub struct SnapshotMemo<T> {
    built: Mutex<Built<T>>,
}

/// Per shop: the snapshot and what was derived from it.
type Built<T> = HashMap<String, (Arc<ShopSnapshot>, Arc<T>)>;

impl<T> Default for SnapshotMemo<T> {
    fn default() -> Self {
        Self {
            built: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> std::fmt::Debug for SnapshotMemo<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotMemo").finish_non_exhaustive()
    }
}

impl<T> SnapshotMemo<T> {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Built<T>> {
        self.built
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What was derived from exactly `snapshot`, if anything.
    pub fn get(&self, shop_id: &str, snapshot: &Arc<ShopSnapshot>) -> Option<Arc<T>> {
        self.lock()
            .get(shop_id)
            .filter(|(from, _)| Arc::ptr_eq(from, snapshot))
            .map(|(_, value)| value.clone())
    }

    /// Remembers `value` as derived from `snapshot` and returns it.
    pub fn insert(&self, shop_id: &str, snapshot: Arc<ShopSnapshot>, value: T) -> Arc<T> {
        let value = Arc::new(value);
        self.lock()
            .insert(shop_id.to_owned(), (snapshot, value.clone()));
        value
    }

    /// What was derived from `snapshot`, deriving it with `derive` the first time.
    pub fn get_or_insert_with(
        &self,
        shop_id: &str,
        snapshot: &Arc<ShopSnapshot>,
        derive: impl FnOnce(&ShopSnapshot) -> T,
    ) -> Arc<T> {
        match self.get(shop_id, snapshot) {
            Some(value) => value,
            None => self.insert(shop_id, snapshot.clone(), derive(snapshot)),
        }
    }

    /// Forgets what was derived for the shop (memory only: a newer snapshot is never matched
    /// by an older one anyway).
    pub fn invalidate(&self, shop_id: &str) {
        self.lock().remove(shop_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    #[test]
    fn an_entry_is_fresh_for_the_ttl_then_expired_but_kept() {
        let cache = ShopCache::new(TTL);
        let t0 = Instant::now();
        assert_eq!(cache.lookup("s1", t0), Cached::Missing);
        let ticket = cache.ticket("s1");
        assert!(cache.store("s1", ticket, 1, t0));
        assert_eq!(cache.lookup("s1", t0), Cached::Fresh(1));
        assert_eq!(
            cache.lookup("s1", t0 + TTL - Duration::from_millis(1)),
            Cached::Fresh(1)
        );
        assert_eq!(cache.lookup("s1", t0 + TTL), Cached::Expired(1));
        assert_eq!(cache.lookup("s2", t0), Cached::Missing, "per shop");
    }

    #[test]
    fn a_clock_earlier_than_the_fetch_still_counts_as_fresh() {
        let cache = ShopCache::new(TTL);
        let t0 = Instant::now() + Duration::from_secs(5);
        let ticket = cache.ticket("s1");
        assert!(cache.store("s1", ticket, 1, t0));
        assert_eq!(cache.lookup("s1", Instant::now()), Cached::Fresh(1));
    }

    #[test]
    fn a_zero_ttl_never_serves_fresh_entries() {
        let cache = ShopCache::new(Duration::ZERO);
        let t0 = Instant::now();
        let ticket = cache.ticket("s1");
        assert!(cache.store("s1", ticket, 1, t0));
        assert_eq!(cache.lookup("s1", t0), Cached::Expired(1));
    }

    #[test]
    fn a_fetch_started_before_an_invalidation_is_not_stored() {
        let cache = ShopCache::new(TTL);
        let now = Instant::now();
        let before = cache.ticket("s1");
        cache.invalidate("s1");
        assert!(!cache.store("s1", before, 1, now), "stale answer refused");
        assert_eq!(cache.lookup("s1", now), Cached::Missing);

        let after = cache.ticket("s1");
        assert_ne!(before, after);
        assert!(cache.store("s1", after, 2, now));
        assert_eq!(cache.lookup("s1", now), Cached::Fresh(2));
    }

    #[test]
    fn an_invalidation_drops_the_entry_so_it_is_not_even_used_stale() {
        let cache = ShopCache::new(TTL);
        let t0 = Instant::now();
        let ticket = cache.ticket("s1");
        assert!(cache.store("s1", ticket, 1, t0));
        cache.invalidate("s1");
        assert_eq!(cache.lookup("s1", t0), Cached::Missing);
        assert_eq!(cache.lookup("s1", t0 + TTL * 2), Cached::Missing);
    }

    #[test]
    fn invalidating_one_shop_leaves_the_others_and_their_fetches_alone() {
        let cache = ShopCache::new(TTL);
        let now = Instant::now();
        let ticket_s2 = cache.ticket("s2");
        let ticket_s1 = cache.ticket("s1");
        assert!(cache.store("s1", ticket_s1, 1, now));
        cache.invalidate("s1");
        assert!(cache.store("s2", ticket_s2, 2, now));
        assert_eq!(cache.lookup("s2", now), Cached::Fresh(2));
    }

    #[test]
    fn two_fetches_without_an_invalidation_both_store_the_later_wins() {
        let cache = ShopCache::new(TTL);
        let now = Instant::now();
        let first = cache.ticket("s1");
        let second = cache.ticket("s1");
        assert!(cache.store("s1", second, 2, now));
        assert!(cache.store("s1", first, 1, now));
        assert_eq!(cache.lookup("s1", now), Cached::Fresh(1));
    }

    fn snapshot(version: i64) -> Arc<ShopSnapshot> {
        Arc::new(ShopSnapshot {
            shop_id: "s1".into(),
            version,
            enabled: true,
            detail: Default::default(),
            order_statuses: None,
        })
    }

    #[test]
    fn a_memo_derives_once_per_snapshot_and_again_for_a_new_one() {
        let memo = SnapshotMemo::new();
        let first = snapshot(1);
        let mut derived = 0;
        let a = memo.get_or_insert_with("s1", &first, |s| {
            derived += 1;
            s.version * 10
        });
        let b = memo.get_or_insert_with("s1", &first, |s| {
            derived += 1;
            s.version * 10
        });
        assert_eq!((*a, *b, derived), (10, 10, 1));
        assert!(Arc::ptr_eq(&a, &b));

        // An equal snapshot fetched again is a new one: derived again.
        let refetched = snapshot(1);
        assert!(memo.get("s1", &refetched).is_none());
        let c = memo.get_or_insert_with("s1", &refetched, |s| s.version * 100);
        assert_eq!(*c, 100);
        assert!(memo.get("s1", &first).is_none(), "only the latest is kept");
        assert!(memo.get("s2", &refetched).is_none(), "per shop");

        memo.invalidate("s1");
        assert!(memo.get("s1", &refetched).is_none());
    }
}
