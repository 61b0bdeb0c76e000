//! A bounded LRU of plans per SQL text.
//!
//! Parsing costs ~50 µs, and applications run few distinct statements many
//! times, so each distinct text is planned once per set of keys: an entry
//! holds the relation names the text asks keys of and a plan for each of
//! the last few key sets it was planned with (keys change only when DDL
//! changes a relation, so a text has one plan almost always). A statement
//! is parsed again only when its keys change, or, once, when it is the
//! first to name a relation whose key the shadow had not looked up yet.
//!
//! The cache is shared by the shadow workers (and the relay, for
//! `apply_to_primary`): lookups take a short mutex; planning a miss happens
//! outside the lock, so a slow parse never blocks a hit. Two threads
//! missing on the same text both plan it, which is harmless. No parse tree
//! is kept: a deep one may only be walked (and dropped) on a thread with a
//! large stack (see `parse`).

use super::keys::{choose, Catalog, Key};
use super::order_by::Tiebreak;
use super::plan::{plan_with_keys, Plan};
use super::rules::RewriteRules;
use crate::capture::skip::SkipReason;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

/// A cached plan.
pub type CachedPlan = Arc<Result<Plan, SkipReason>>;

/// The relation names a text asks keys of, or why it is not replayed.
pub type CachedRelations = Result<Arc<[Vec<String>]>, SkipReason>;

/// Plans kept per text, one per key set: the oldest goes first.
const VARIANTS_PER_TEXT: usize = 4;

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

    /// The rules plans are made with.
    pub fn rules(&self) -> &RewriteRules {
        &self.rules
    }

    /// The relation names `sql` asks keys of, if the text is cached; never
    /// parses.
    pub fn relations(&self, sql: &str) -> Option<CachedRelations> {
        self.lock().get(sql).map(|entry| entry.relations.clone())
    }

    /// The plan of `sql` for these key choices (one per relation name, in
    /// the order of [`relations`](Self::relations)) if it is cached; never
    /// parses. A skipped text's skip is returned whatever the keys.
    pub fn cached(&self, sql: &str, choices: &[Option<Key>]) -> Option<CachedPlan> {
        let mut lru = self.lock();
        let entry = lru.get(sql)?;
        if let Err(reason) = &entry.relations {
            return Some(Arc::new(Err(*reason)));
        }
        entry
            .variants
            .iter()
            .find(|(keys, _)| keys.as_slice() == choices)
            .map(|(_, plan)| plan.clone())
    }

    /// Plans `sql`, asking `keys` for each relation's key, and caches the
    /// plan under the answers.
    pub fn plan_with_keys(
        &self,
        sql: &str,
        keys: &mut (dyn FnMut(&[String]) -> Option<Key> + Send),
    ) -> CachedPlan {
        let planned = plan_with_keys(sql, &self.rules, keys);
        let (relations, choices) = match &planned {
            Ok(plan) => (Ok(plan.relations.clone()), plan.key_choices.clone()),
            Err(reason) => (Err(*reason), Vec::new()),
        };
        let planned: CachedPlan = Arc::new(planned);
        self.lock()
            .insert(Arc::from(sql), relations, choices, planned.clone());
        planned
    }

    /// The plan for `sql` with the configuration's keys alone, computed on
    /// the first request for this text.
    pub fn plan(&self, sql: &str) -> CachedPlan {
        let rules = &self.rules;
        let config_only = |parts: &[String]| choose(parts, rules, Catalog::NotConsulted);
        if let Some(relations) = self.relations(sql) {
            let choices: Vec<Option<Key>> = match &relations {
                Ok(names) => names.iter().map(|p| config_only(p)).collect(),
                Err(_) => Vec::new(),
            };
            if let Some(hit) = self.cached(sql, &choices) {
                return hit;
            }
        }
        self.plan_with_keys(sql, &mut |parts| config_only(parts))
    }

    /// `tiebreak.apply_to_primary`: the text to send upstream instead of
    /// `sql` (the application's ORDER BY with the configured keys appended
    /// and nothing else changed), or `None` to forward `sql` as it is.
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

/// What is cached for one text.
struct Entry {
    relations: CachedRelations,
    /// Plans by the key choices they were made with, oldest first.
    variants: Vec<(Vec<Option<Key>>, CachedPlan)>,
}

/// Map from text to entry plus a recency index: `order` maps a monotonic
/// use stamp to the text last used at that stamp, so the first entry of
/// `order` is the least recently used.
struct Lru {
    capacity: usize,
    clock: u64,
    map: HashMap<Arc<str>, (Entry, u64)>,
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

    fn get(&mut self, sql: &str) -> Option<&Entry> {
        let now = self.tick();
        let (key, old) = {
            let (key, (_, stamp)) = self.map.get_key_value(sql)?;
            (key.clone(), *stamp)
        };
        self.order.remove(&old);
        self.order.insert(now, key);
        let (entry, stamp) = self.map.get_mut(sql)?;
        *stamp = now;
        Some(entry)
    }

    fn insert(
        &mut self,
        sql: Arc<str>,
        relations: CachedRelations,
        choices: Vec<Option<Key>>,
        plan: CachedPlan,
    ) {
        let now = self.tick();
        let fresh = || Entry {
            relations: relations.clone(),
            variants: Vec::new(),
        };
        let (entry, stamp) = self
            .map
            .entry(sql.clone())
            .or_insert_with(|| (fresh(), now));
        let old = std::mem::replace(stamp, now);
        if entry.relations != relations {
            *entry = fresh();
        }
        if relations.is_ok() {
            entry.variants.retain(|(keys, _)| *keys != choices);
            if entry.variants.len() >= VARIANTS_PER_TEXT {
                entry.variants.remove(0);
            }
            entry.variants.push((choices, plan));
        }
        self.order.remove(&old);
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
    fn a_text_is_planned_once_per_key_set_and_again_when_its_keys_change() {
        use crate::rewrite::{Key, KeySource};
        let cache = PlanCache::new(4, RewriteRules::default());
        let sql = "SELECT * FROM entries ORDER BY title";
        let key = |columns: &[&str]| Key {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            source: KeySource::PrimaryKey,
        };
        assert!(cache.relations(sql).is_none(), "not parsed yet");
        let first = cache.plan_with_keys(sql, &mut |_| Some(key(&["id"])));
        let relations = cache.relations(sql).expect("cached").expect("a read");
        assert_eq!(&*relations, [vec!["entries".to_string()]]);
        let hit = cache
            .cached(sql, &[Some(key(&["id"]))])
            .expect("the plan for these keys");
        assert!(Arc::ptr_eq(&first, &hit));
        assert!(
            cache.cached(sql, &[Some(key(&["env_id", "id"]))]).is_none(),
            "other keys: planned again"
        );
        let second = cache.plan_with_keys(sql, &mut |_| Some(key(&["env_id", "id"])));
        let text = |p: &CachedPlan| p.as_ref().as_ref().map(|p| p.old_sql.to_string()).unwrap();
        assert_eq!(
            text(&second),
            "SELECT * FROM entries ORDER BY title, entries.env_id, entries.id"
        );
        // Both key sets stay cached for the one text.
        assert!(cache.cached(sql, &[Some(key(&["id"]))]).is_some());
        assert_eq!(cache.len(), 1);
        // A skipped text is skipped whatever the keys.
        cache.plan_with_keys("DELETE FROM entries", &mut |_| None);
        let skipped = cache.cached("DELETE FROM entries", &[]).expect("cached");
        assert_eq!(skipped.as_ref().as_ref().err(), Some(&SkipReason::NotRead));
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
