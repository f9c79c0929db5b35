//! [`Session`]: per-connection state the application attaches.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Per-connection state the application attaches, one value per type (an
/// extensions map): the logged-in user, a role, a legacy protocol's numbers.
///
/// Values are never printed: `Debug` shows only how many there are, so a
/// token kept here does not leak into logs.
///
/// ```
/// #[derive(Clone, PartialEq, Debug)]
/// struct User(String);
///
/// let session = homer::Session::default();
/// assert_eq!(session.get::<User>(), None);
/// session.insert(User("alice".into()));
/// assert_eq!(session.get::<User>(), Some(User("alice".into())));
/// session.clear();
/// assert!(!session.contains::<User>());
/// ```
#[derive(Default)]
pub struct Session {
    map: Mutex<HashMap<TypeId, Box<dyn Any + Send + Sync>>>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("values", &self.lock().len())
            .finish()
    }
}

impl Session {
    fn lock(&self) -> MutexGuard<'_, HashMap<TypeId, Box<dyn Any + Send + Sync>>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores `value`, returning the value of the same type it replaces.
    pub fn insert<T: Any + Send + Sync>(&self, value: T) -> Option<T> {
        self.lock()
            .insert(TypeId::of::<T>(), Box::new(value))
            .and_then(|old| old.downcast::<T>().ok().map(|b| *b))
    }

    /// A clone of the stored value of type `T`.
    pub fn get<T: Any + Send + Sync + Clone>(&self) -> Option<T> {
        self.with(|v: Option<&T>| v.cloned())
    }

    /// Runs `f` on the stored value of type `T` without cloning it.
    pub fn with<T: Any + Send + Sync, R>(&self, f: impl FnOnce(Option<&T>) -> R) -> R {
        let map = self.lock();
        f(map
            .get(&TypeId::of::<T>())
            .and_then(|b| b.downcast_ref::<T>()))
    }

    /// Whether a value of type `T` is stored.
    pub fn contains<T: Any + Send + Sync>(&self) -> bool {
        self.lock().contains_key(&TypeId::of::<T>())
    }

    /// Removes and returns the value of type `T`.
    pub fn remove<T: Any + Send + Sync>(&self) -> Option<T> {
        self.lock()
            .remove(&TypeId::of::<T>())
            .and_then(|old| old.downcast::<T>().ok().map(|b| *b))
    }

    /// Removes every value (a logout).
    pub fn clear(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_per_type() {
        let s = Session::default();
        assert_eq!(s.insert(1u32), None);
        assert_eq!(s.insert(2u32), Some(1));
        s.insert(String::from("x"));
        assert_eq!(s.get::<u32>(), Some(2));
        assert_eq!(s.with(|v: Option<&String>| v.map(String::len)), Some(1));
        assert_eq!(s.remove::<u32>(), Some(2));
        assert!(!s.contains::<u32>());
        assert!(s.contains::<String>());
        assert_eq!(format!("{s:?}"), "Session { values: 1 }");
    }
}
