//! The declared permissions and roles, and permission sets as bitsets.

use std::collections::{BTreeSet, HashMap};

use crate::names::ALL_PERMISSIONS;

/// A set of declared permissions: one bit per permission index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PermSet {
    words: Box<[u64]>,
}

impl PermSet {
    /// The empty set over `n` permissions.
    pub(crate) fn empty(n: usize) -> Self {
        PermSet {
            words: vec![0; n.div_ceil(64)].into_boxed_slice(),
        }
    }

    /// Every one of `n` permissions.
    pub(crate) fn full(n: usize) -> Self {
        let mut set = Self::empty(n);
        for i in 0..n {
            set.insert(i);
        }
        set
    }

    #[inline]
    pub(crate) fn contains(&self, i: usize) -> bool {
        self.words
            .get(i / 64)
            .is_some_and(|w| w & (1u64 << (i % 64)) != 0)
    }

    pub(crate) fn insert(&mut self, i: usize) {
        if let Some(w) = self.words.get_mut(i / 64) {
            *w |= 1u64 << (i % 64);
        }
    }
}

/// The permission and role declarations a manager was built with.
#[derive(Debug)]
pub(crate) struct Catalog {
    names: Vec<Box<str>>,
    index: HashMap<Box<str>, usize>,
    roles: Vec<(Box<str>, PermSet)>,
    role_index: HashMap<Box<str>, usize>,
}

impl Catalog {
    /// A catalog of already validated, distinct names; roles list declared
    /// permissions only.
    pub(crate) fn new(names: Vec<String>, roles: Vec<(String, Vec<String>)>) -> Self {
        let names: Vec<Box<str>> = names.into_iter().map(String::into_boxed_str).collect();
        let index = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect::<HashMap<_, _>>();
        let n = names.len();
        let roles: Vec<(Box<str>, PermSet)> = roles
            .into_iter()
            .map(|(role, perms)| {
                let mut set = PermSet::empty(n);
                for p in perms {
                    if let Some(&i) = index.get(p.as_str()) {
                        set.insert(i);
                    }
                }
                (role.into_boxed_str(), set)
            })
            .collect();
        let role_index = roles
            .iter()
            .enumerate()
            .map(|(i, (r, _))| (r.clone(), i))
            .collect();
        Catalog {
            names,
            index,
            roles,
            role_index,
        }
    }

    /// The index of a declared permission.
    #[inline]
    pub(crate) fn permission(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    pub(crate) fn is_declared(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// Every declared permission, in declaration order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|n| &**n)
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    /// The index of a declared role.
    #[inline]
    pub(crate) fn role(&self, name: &str) -> Option<usize> {
        self.role_index.get(name).copied()
    }

    #[inline]
    pub(crate) fn role_grants(&self, role: usize, permission: usize) -> bool {
        self.roles
            .get(role)
            .is_some_and(|(_, set)| set.contains(permission))
    }

    /// The declared roles with their permissions, in declaration order.
    pub(crate) fn roles(&self) -> impl Iterator<Item = (&str, Vec<&str>)> {
        self.roles.iter().map(|(r, set)| {
            let perms = self
                .names
                .iter()
                .enumerate()
                .filter(|(i, _)| set.contains(*i))
                .map(|(_, n)| &**n)
                .collect();
            (&**r, perms)
        })
    }

    /// The set that a stored permission list stands for: `all`, or the
    /// declared names among `names` (names no longer declared grant nothing).
    pub(crate) fn resolve(&self, all: bool, names: &BTreeSet<String>) -> PermSet {
        if all {
            return PermSet::full(self.len());
        }
        let mut set = PermSet::empty(self.len());
        for name in names {
            if let Some(i) = self.permission(name) {
                set.insert(i);
            }
        }
        set
    }

    /// True when a stored permission list grants `name`.
    pub(crate) fn holds(&self, all: bool, names: &BTreeSet<String>, name: &str) -> bool {
        self.is_declared(name) && (all || names.contains(name))
    }

    /// The declared permissions a stored list grants, in declaration order.
    pub(crate) fn granted(&self, all: bool, names: &BTreeSet<String>) -> Vec<String> {
        self.names()
            .filter(|n| all || names.contains(*n))
            .map(str::to_owned)
            .collect()
    }

    /// True when `name` is the wildcard.
    pub(crate) fn is_wildcard(name: &str) -> bool {
        name == ALL_PERMISSIONS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        let names = (0..130).map(|i| format!("p{i}")).collect();
        Catalog::new(
            names,
            vec![
                ("owner".into(), vec!["p1".into(), "p129".into()]),
                ("member".into(), vec!["p2".into()]),
            ],
        )
    }

    #[test]
    fn bitsets_across_words() {
        let mut s = PermSet::empty(130);
        assert!(!s.contains(129));
        s.insert(129);
        s.insert(0);
        assert!(s.contains(129) && s.contains(0) && !s.contains(64));
        assert!(!s.contains(10_000));
        s.insert(10_000); // out of range: ignored, no panic
        let full = PermSet::full(130);
        assert!((0..130).all(|i| full.contains(i)));
        assert!(!full.contains(130));
    }

    #[test]
    fn roles_and_resolution() {
        let c = catalog();
        let owner = c.role("owner").unwrap();
        assert!(c.role_grants(owner, c.permission("p129").unwrap()));
        assert!(!c.role_grants(owner, c.permission("p2").unwrap()));
        assert_eq!(c.role("admin"), None);
        let stored = BTreeSet::from(["p3".to_owned(), "gone".to_owned()]);
        let set = c.resolve(false, &stored);
        assert!(set.contains(3));
        assert_eq!(c.granted(false, &stored), vec!["p3".to_owned()]);
        assert!(!c.holds(false, &stored, "gone"));
        assert_eq!(c.granted(true, &BTreeSet::new()).len(), 130);
        let roles: Vec<_> = c.roles().collect();
        assert_eq!(roles[0], ("owner", vec!["p1", "p129"]));
    }
}
