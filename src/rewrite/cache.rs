//! A bounded LRU of plans per SQL text.
//!
//! Parsing costs ~50 µs, and applications run few distinct statements many
//! times, so each distinct text is planned once. The cache is shared by the
//! shadow workers (and the relay, for `apply_to_primary`): lookups take a
//! short mutex; planning a miss happens outside the lock, so a slow parse
//! never blocks a hit. Two threads missing on the same text both plan it,
//! which is harmless.

use super::{plan, Plan, RewriteRules, Tiebreak};
use crate::capture::skip::SkipReason;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

/// A cached plan.
pub type CachedPlan = Arc<Result<Plan, SkipReason>>;

/// Plans per SQL text, least recently used evicted first.
pub struct PlanCache {
    rules: RewriteRules,
    lru: Mutex<Lru>,
}

impl PlanCache {
    /// A cache holding at most `capacity` texts (at least one).
    pub fn new(capacity: usize, rules: RewriteRules) -> Self {
        PlanCache {
            rules,
            lru: Mutex::new(Lru::new(capacity.max(1))),
        }
    }

    /// The plan for `sql` if it is cached; never parses. Lets async
    /// callers plan misses on a blocking thread.
    pub fn cached(&self, sql: &str) -> Option<CachedPlan> {
        self.lock().get(sql)
    }

    /// The plan for `sql`, computed on the first request for this text.
    pub fn plan(&self, sql: &str) -> CachedPlan {
        if let Some(hit) = self.lock().get(sql) {
            return hit;
        }
        let planned: CachedPlan = Arc::new(plan(sql, &self.rules));
        self.lock().insert(Arc::from(sql), planned.clone());
        planned
    }

    /// `tiebreak.apply_to_primary`: the text to send upstream instead of
    /// `sql` (the application's ORDER BY with the tiebreaker appended and
    /// nothing else changed), or `None` to forward `sql` as it is.
    pub fn primary_rewrite(&self, sql: &str) -> Option<Arc<str>> {
        match &*self.plan(sql) {
            Ok(plan) if plan.tiebreak == Tiebreak::Appended => Some(plan.old_sql.clone()),
            _ => None,
        }
    }

    /// Texts currently cached.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The lock; a panic elsewhere while holding it cannot leave the map
    /// inconsistent (every update is a few infallible steps), so poisoning
    /// is ignored.
    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.lru.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for PlanCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanCache")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// Map from text to entry plus a recency index: `order` maps a monotonic
/// use stamp to the text last used at that stamp, so the first entry of
/// `order` is the least recently used.
struct Lru {
    capacity: usize,
    clock: u64,
    map: HashMap<Arc<str>, (CachedPlan, u64)>,
    order: BTreeMap<u64, Arc<str>>,
}

impl Lru {
    fn new(capacity: usize) -> Self {
        Lru {
            capacity,
            clock: 0,
            map: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn get(&mut self, sql: &str) -> Option<CachedPlan> {
        let now = self.tick();
        let (key, plan) = {
            let (key, (plan, _)) = self.map.get_key_value(sql)?;
            (key.clone(), plan.clone())
        };
        let old = match self.map.get_mut(sql) {
            Some((_, stamp)) => std::mem::replace(stamp, now),
            None => return None,
        };
        self.order.remove(&old);
        self.order.insert(now, key);
        Some(plan)
    }

    fn insert(&mut self, sql: Arc<str>, plan: CachedPlan) {
        let now = self.tick();
        if let Some((_, old)) = self.map.insert(sql.clone(), (plan, now)) {
            self.order.remove(&old);
        }
        self.order.insert(now, sql);
        while self.map.len() > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.map.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> RewriteRules {
        RewriteRules {
            default_id_column: "id".into(),
            ..RewriteRules::default()
        }
    }

    #[test]
    fn a_hit_returns_the_same_plan_without_planning_again() {
        let cache = PlanCache::new(8, rules());
        let first = cache.plan("SELECT * FROM t ORDER BY a");
        let second = cache.plan("SELECT * FROM t ORDER BY a");
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn the_cache_is_bounded_and_evicts_the_least_recently_used() {
        let cache = PlanCache::new(2, rules());
        let a = cache.plan("SELECT 1");
        cache.plan("SELECT 2");
        // Touch "SELECT 1" so that "SELECT 2" is now the oldest.
        assert!(Arc::ptr_eq(&a, &cache.plan("SELECT 1")));
        cache.plan("SELECT 3");
        assert_eq!(cache.len(), 2);
        assert!(
            Arc::ptr_eq(&a, &cache.plan("SELECT 1")),
            "recently used kept"
        );
        let lru = cache.lock();
        assert!(
            !lru.map.contains_key("SELECT 2"),
            "least recently used evicted"
        );
        assert!(lru.map.contains_key("SELECT 3"));
        assert_eq!(lru.order.len(), lru.map.len());
    }

    #[test]
    fn skipped_statements_are_cached_too() {
        let cache = PlanCache::new(4, rules());
        let plan = cache.plan("DELETE FROM t");
        assert_eq!(plan.as_ref().as_ref().err(), Some(&SkipReason::NotRead));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_zero_capacity_still_holds_one_plan() {
        let cache = PlanCache::new(0, rules());
        cache.plan("SELECT 1");
        cache.plan("SELECT 2");
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn primary_rewrite_appends_only_the_tiebreaker() {
        let cache = PlanCache::new(4, rules());
        assert_eq!(
            cache
                .primary_rewrite("SELECT * FROM t ORDER BY a LIMIT 10")
                .as_deref(),
            Some("SELECT * FROM t ORDER BY a, t.id LIMIT 10")
        );
        assert_eq!(cache.primary_rewrite("SELECT * FROM t ORDER BY id"), None);
        assert_eq!(cache.primary_rewrite("UPDATE t SET a = 1"), None);
    }

    #[test]
    fn the_cache_is_shared_across_threads() {
        let cache = Arc::new(PlanCache::new(16, rules()));
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let cache = cache.clone();
                std::thread::spawn(move || {
                    for j in 0..50 {
                        let sql = format!("SELECT * FROM t WHERE a = {} ORDER BY a", (i + j) % 20);
                        assert!(cache.plan(&sql).is_ok());
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("worker");
        }
        assert!(cache.len() <= 16);
    }
}
