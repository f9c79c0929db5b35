//! The in-memory permission cache that makes checks fast.
//!
//! One entry per user: their group's permissions resolved to a bitset and
//! their scoped roles by scope. A check is one hash lookup under a read lock
//! plus a bit test (and one more lookup for a scope); nothing is allocated.
//!
//! **Invariant:** an entry never outlives a change it does not reflect. Every
//! invalidation bumps a generation number under the write lock; a loader
//! remembers the generation from before it read the store and inserts only if
//! it is unchanged, so a load that raced with a change is used once and not
//! cached.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};

use crate::catalog::{Catalog, PermSet};
use crate::layout::Change;

/// What a user's cache entry says.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The user's group (shared name or personal uuid).
    pub(crate) group: Box<str>,
    /// The group's permissions.
    pub(crate) perms: PermSet,
    /// Role index by scope.
    pub(crate) roles: HashMap<Box<str>, usize>,
}

impl Entry {
    #[inline]
    pub(crate) fn allows(&self, perm: usize, scope: Option<&str>, catalog: &Catalog) -> bool {
        // A permission held globally holds on every scope.
        self.perms.contains(perm)
            || scope
                .and_then(|s| self.roles.get(s))
                .is_some_and(|&role| catalog.role_grants(role, perm))
    }
}

/// The cached answer to a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    Allowed,
    Denied,
    /// The user is known not to exist.
    UnknownUser,
    /// Nothing cached: load from the store.
    Miss,
}

#[derive(Debug, Default)]
struct State {
    users: HashMap<Box<str>, Arc<Entry>>,
    missing: HashSet<Box<str>>,
    generation: u64,
}

/// Users' permissions, bounded in size.
#[derive(Debug)]
pub(crate) struct Cache {
    state: RwLock<State>,
    capacity: usize,
}

impl Cache {
    /// A cache of at most `capacity` users (and as many unknown names).
    pub(crate) fn new(capacity: usize) -> Self {
        Cache {
            state: RwLock::new(State::default()),
            capacity: capacity.max(1),
        }
    }

    // A panic while holding the lock cannot leave the maps half-updated in a
    // way that grants anything (every update is a single insert or removal),
    // so a poisoned lock is still usable.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    #[inline]
    pub(crate) fn lookup(
        &self,
        user: &str,
        perm: usize,
        scope: Option<&str>,
        catalog: &Catalog,
    ) -> Lookup {
        let state = self.read();
        match state.users.get(user) {
            Some(entry) if entry.allows(perm, scope, catalog) => Lookup::Allowed,
            Some(_) => Lookup::Denied,
            None if state.missing.contains(user) => Lookup::UnknownUser,
            None => Lookup::Miss,
        }
    }

    /// The current generation, to pass to [`Cache::insert`] after loading.
    pub(crate) fn generation(&self) -> u64 {
        self.read().generation
    }

    /// Cache what was loaded for `user` (`None`: no such user), unless an
    /// invalidation happened since `generation` was read.
    pub(crate) fn insert(&self, generation: u64, user: &str, entry: Option<Arc<Entry>>) {
        let mut state = self.write();
        if state.generation != generation {
            return;
        }
        match entry {
            Some(entry) => {
                if state.users.len() >= self.capacity && !state.users.contains_key(user) {
                    // Evict an arbitrary entry: cheap, and good enough for a
                    // cache sized to hold the active users.
                    if let Some(victim) = state.users.keys().next().cloned() {
                        state.users.remove(&victim);
                    }
                }
                state.missing.remove(user);
                state.users.insert(user.into(), entry);
            }
            None => {
                if state.missing.len() >= self.capacity {
                    state.missing.clear();
                }
                state.missing.insert(user.into());
            }
        }
    }

    /// Drop whatever `change` may have made stale.
    pub(crate) fn invalidate(&self, change: &Change) {
        let mut state = self.write();
        state.generation = state.generation.wrapping_add(1);
        if change.all {
            state.users.clear();
            state.missing.clear();
            return;
        }
        for user in &change.users {
            state.users.remove(user.as_str());
            state.missing.remove(user.as_str());
        }
        if !change.groups.is_empty() {
            state
                .users
                .retain(|_, e| !change.groups.iter().any(|g| **g == *e.group));
        }
    }

    /// Drop everything.
    pub(crate) fn clear(&self) {
        self.invalidate(&Change {
            all: true,
            ..Change::default()
        });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.read().users.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::new(
            vec!["read".into(), "kick".into()],
            vec![("admin".into(), vec!["kick".into()])],
        )
    }

    fn entry(group: &str, perms: &[usize], roles: &[(&str, usize)]) -> Arc<Entry> {
        let mut set = PermSet::empty(2);
        for &p in perms {
            set.insert(p);
        }
        Arc::new(Entry {
            group: group.into(),
            perms: set,
            roles: roles.iter().map(|&(s, r)| (s.into(), r)).collect(),
        })
    }

    #[test]
    fn lookups_answer_from_entries() {
        let c = catalog();
        let cache = Cache::new(10);
        assert_eq!(cache.lookup("bob", 0, None, &c), Lookup::Miss);
        let g = cache.generation();
        cache.insert(g, "bob", Some(entry("members", &[0], &[("rust", 0)])));
        cache.insert(g, "ghost", None);
        assert_eq!(cache.lookup("bob", 0, None, &c), Lookup::Allowed);
        assert_eq!(cache.lookup("bob", 1, None, &c), Lookup::Denied);
        assert_eq!(cache.lookup("bob", 1, Some("rust"), &c), Lookup::Allowed);
        assert_eq!(cache.lookup("bob", 1, Some("go"), &c), Lookup::Denied);
        assert_eq!(cache.lookup("ghost", 0, None, &c), Lookup::UnknownUser);
    }

    #[test]
    fn a_load_that_raced_an_invalidation_is_not_cached() {
        let c = catalog();
        let cache = Cache::new(10);
        let before = cache.generation();
        cache.invalidate(&Change {
            users: vec!["bob".into()],
            ..Change::default()
        });
        cache.insert(before, "bob", Some(entry("members", &[0], &[])));
        assert_eq!(cache.lookup("bob", 0, None, &c), Lookup::Miss);
    }

    #[test]
    fn group_changes_drop_their_members() {
        let c = catalog();
        let cache = Cache::new(10);
        let g = cache.generation();
        cache.insert(g, "a", Some(entry("members", &[0], &[])));
        cache.insert(g, "b", Some(entry("admins", &[0], &[])));
        cache.insert(g, "new", None);
        cache.invalidate(&Change {
            users: vec!["new".into()],
            groups: vec!["members".into()],
            ..Change::default()
        });
        assert_eq!(cache.lookup("a", 0, None, &c), Lookup::Miss);
        assert_eq!(cache.lookup("b", 0, None, &c), Lookup::Allowed);
        assert_eq!(cache.lookup("new", 0, None, &c), Lookup::Miss);
        cache.clear();
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn capacity_is_bounded() {
        let cache = Cache::new(3);
        for i in 0..10 {
            let g = cache.generation();
            cache.insert(g, &format!("u{i}"), Some(entry("g", &[], &[])));
            cache.insert(g, &format!("x{i}"), None);
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.read().missing.len() <= 3);
    }
}
