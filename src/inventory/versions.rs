//! Per-object resourceVersion bookkeeping for the watch cache: drops watch events that repeat
//! or go back in time, so a replayed or reordered event can never undo a newer state.
//!
//! The API server promises in-order delivery within one watch, but a resumed watch can replay
//! what the cache already applied, and proxies, HA API servers and bugs have delivered events
//! out of order. Since Kubernetes 1.35 (KEP-5504, stable) clients may compare the
//! resourceVersions of two objects of the same resource: both are positive integers without
//! leading zeros, and the larger is newer. We rely on exactly that, and only for objects of the
//! same resource. A resourceVersion that is not such an integer (an aggregated API server may
//! use its own format) is treated as opaque: events carrying it are applied in arrival order,
//! as every cache did before KEP-5504.

use std::collections::{HashMap, VecDeque};

/// How many deletions are remembered, so that a late event for a deleted object is recognised.
/// Older tombstones are forgotten first; the cost of forgetting is only that a very late,
/// out-of-order ADDED could bring a deleted object back until the next event or relist.
pub const TOMBSTONE_CAPACITY: usize = 10_000;

/// A resourceVersion as KEP-5504 defines a comparable one; anything else is opaque (`None`).
/// etcd revisions are int64, so every comparable value the API server hands out fits a u64.
pub fn comparable(resource_version: Option<&str>) -> Option<u64> {
    let rv = resource_version?;
    if rv.is_empty() || rv.starts_with('0') || !rv.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rv.parse().ok()
}

/// What to do with one watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Newer than anything seen for this object (or not comparable): apply it.
    Apply,
    /// The same resourceVersion as what the cache holds: a replay, nothing to do.
    Duplicate,
    /// Older than what the cache holds (or than the object's deletion): applying it would
    /// undo a newer state.
    OutOfOrder,
}

/// The last resourceVersion applied per object of one resource, and recent deletions.
#[derive(Debug, Default)]
pub struct Versions {
    /// Keyed by "namespace/name" (namespaces cannot contain '/'); `None` = opaque version.
    live: HashMap<Box<str>, Option<u64>>,
    /// Deleted objects and the resourceVersion of their deletion, with an insertion number
    /// so that the eviction queue can tell a current tombstone from a replaced one.
    tombstones: HashMap<Box<str>, (u64, u64)>,
    order: VecDeque<(Box<str>, u64)>,
    sequence: u64,
}

fn key(namespace: &str, name: &str) -> Box<str> {
    format!("{namespace}/{name}").into_boxed_str()
}

impl Versions {
    /// Starts over from a complete list: the list is the truth as of its resourceVersion.
    pub fn reset<'a>(
        &mut self,
        objects: impl IntoIterator<Item = (&'a str, &'a str, Option<u64>)>,
    ) {
        self.live.clear();
        self.tombstones.clear();
        self.order.clear();
        for (namespace, name, rv) in objects {
            let slot = self.live.entry(key(namespace, name)).or_insert(rv);
            // The same object twice in one list (a pagination bug): keep the newer.
            if let (Some(old), Some(new)) = (*slot, rv) {
                *slot = Some(old.max(new));
            }
        }
    }

    /// An ADDED or MODIFIED event.
    pub fn apply(&mut self, namespace: &str, name: &str, rv: Option<u64>) -> Verdict {
        let key = key(namespace, name);
        let Some(rv) = rv else {
            self.tombstones.remove(&key);
            self.live.insert(key, None);
            return Verdict::Apply;
        };
        if let Some(Some(held)) = self.live.get(&key) {
            if rv == *held {
                return Verdict::Duplicate;
            }
            if rv < *held {
                return Verdict::OutOfOrder;
            }
        } else if let Some((deleted_at, _)) = self.tombstones.get(&key)
            && rv <= *deleted_at
        {
            return Verdict::OutOfOrder;
        }
        self.tombstones.remove(&key);
        self.live.insert(key, Some(rv));
        Verdict::Apply
    }

    /// A DELETED event; its object carries the resourceVersion of the deletion.
    pub fn delete(&mut self, namespace: &str, name: &str, rv: Option<u64>) -> Verdict {
        let key = key(namespace, name);
        match (self.live.get(&key), rv) {
            // Deleting a version older than the one held: the object was re-created since.
            (Some(Some(held)), Some(rv)) if rv < *held => return Verdict::OutOfOrder,
            (None, Some(rv)) => {
                if let Some((deleted_at, _)) = self.tombstones.get(&key) {
                    return if rv == *deleted_at {
                        Verdict::Duplicate
                    } else if rv < *deleted_at {
                        Verdict::OutOfOrder
                    } else {
                        self.remember_deletion(key, rv);
                        Verdict::Apply
                    };
                }
            }
            _ => {}
        }
        self.live.remove(&key);
        if let Some(rv) = rv {
            self.remember_deletion(key, rv);
        }
        Verdict::Apply
    }

    fn remember_deletion(&mut self, key: Box<str>, rv: u64) {
        self.sequence += 1;
        self.tombstones.insert(key.clone(), (rv, self.sequence));
        self.order.push_back((key, self.sequence));
        while self.tombstones.len() > TOMBSTONE_CAPACITY {
            let Some((oldest, sequence)) = self.order.pop_front() else {
                break;
            };
            if self
                .tombstones
                .get(&oldest)
                .is_some_and(|(_, s)| *s == sequence)
            {
                self.tombstones.remove(&oldest);
            }
        }
        // Entries for tombstones that were replaced or revived are dropped as they reach the
        // front; keep the queue from growing without bound when that happens a lot.
        if self.order.len() > 2 * TOMBSTONE_CAPACITY {
            let tombstones = &self.tombstones;
            self.order
                .retain(|(k, s)| tombstones.get(k).is_some_and(|(_, t)| t == s));
        }
    }

    /// Objects currently held (tests and debugging).
    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Deletions currently remembered.
    pub fn tombstones(&self) -> usize {
        self.tombstones.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kep_5504_integers_are_comparable() {
        assert_eq!(comparable(Some("12345")), Some(12345));
        for opaque in [
            "",
            "0",
            "007",
            "12a",
            "-1",
            " 1",
            "1.0",
            "99999999999999999999999",
        ] {
            assert_eq!(comparable(Some(opaque)), None, "{opaque:?}");
        }
        assert_eq!(comparable(None), None);
    }

    #[test]
    fn newer_events_apply_and_repeats_or_older_ones_do_not() {
        let mut v = Versions::default();
        v.reset([("shop", "db", Some(10))]);
        assert_eq!(v.apply("shop", "db", Some(10)), Verdict::Duplicate);
        assert_eq!(v.apply("shop", "db", Some(9)), Verdict::OutOfOrder);
        assert_eq!(v.apply("shop", "db", Some(12)), Verdict::Apply);
        assert_eq!(v.apply("shop", "db", Some(11)), Verdict::OutOfOrder);
        // Same name in another namespace is another object.
        assert_eq!(v.apply("other", "db", Some(1)), Verdict::Apply);
    }

    #[test]
    fn a_late_event_for_a_deleted_object_does_not_bring_it_back() {
        let mut v = Versions::default();
        assert_eq!(v.apply("shop", "db", Some(5)), Verdict::Apply);
        assert_eq!(v.delete("shop", "db", Some(6)), Verdict::Apply);
        assert_eq!(v.apply("shop", "db", Some(5)), Verdict::OutOfOrder);
        assert_eq!(v.delete("shop", "db", Some(6)), Verdict::Duplicate);
        assert_eq!(v.delete("shop", "db", Some(4)), Verdict::OutOfOrder);
        // Re-created later: applies, and the old deletion arriving late is ignored.
        assert_eq!(v.apply("shop", "db", Some(8)), Verdict::Apply);
        assert_eq!(v.delete("shop", "db", Some(6)), Verdict::OutOfOrder);
        assert_eq!(v.delete("shop", "db", Some(9)), Verdict::Apply);
        assert!(v.is_empty());
    }

    #[test]
    fn unseen_objects_and_opaque_versions_are_applied_in_arrival_order() {
        let mut v = Versions::default();
        assert_eq!(v.delete("shop", "never-seen", Some(3)), Verdict::Apply);
        assert_eq!(v.apply("shop", "agg", None), Verdict::Apply);
        assert_eq!(v.apply("shop", "agg", None), Verdict::Apply);
        assert_eq!(v.apply("shop", "agg", Some(2)), Verdict::Apply);
        assert_eq!(v.delete("shop", "agg", None), Verdict::Apply);
        assert_eq!(v.len(), 0);
    }

    #[test]
    fn a_relist_forgets_deletions_and_keeps_the_newer_of_duplicates() {
        let mut v = Versions::default();
        v.apply("shop", "a", Some(1));
        v.delete("shop", "a", Some(2));
        v.reset([("shop", "b", Some(7)), ("shop", "b", Some(3))]);
        assert_eq!(v.tombstones(), 0);
        assert_eq!(v.apply("shop", "a", Some(1)), Verdict::Apply);
        assert_eq!(v.apply("shop", "b", Some(5)), Verdict::OutOfOrder);
    }

    #[test]
    fn tombstones_are_bounded() {
        let mut v = Versions::default();
        for i in 0..(3 * TOMBSTONE_CAPACITY as u64) {
            let name = format!("s{}", i % (TOMBSTONE_CAPACITY as u64 + 7));
            v.apply("ns", &name, Some(2 * i + 1));
            v.delete("ns", &name, Some(2 * i + 2));
        }
        assert!(v.tombstones() <= TOMBSTONE_CAPACITY);
        assert!(v.order.len() <= 2 * TOMBSTONE_CAPACITY + 1);
    }
}
