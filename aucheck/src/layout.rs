//! The key layout of aucheck's data tree and the records stored in it.
//!
//! Every change is one atomic [`nopi::Batch`] that expects the version key to
//! hold the version read at the start of the change and bumps it, so changes
//! from any number of managers on one store are serialized, and every other
//! manager learns what changed from the change log:
//!
//! ```text
//! v                           -> version: u64, 8 bytes big-endian; bumped by every change
//! c/ <version: u64 BE>        -> Change (JSON): the users and groups it touched;
//!                                the newest CHANGE_LOG_LEN entries are kept
//! g/ <group name>             -> GroupRecord (JSON), a shared group
//! p/ <uuid, hyphenated>       -> GroupRecord (JSON), a user's personal group
//! m/ <group name> \0 <user>   -> (empty)  member index of a shared group
//! u/ <user name>              -> MemberRecord (JSON): the user's uuid and group
//! s/ <user name> \0 <scope>   -> role name (UTF-8): the user's role on a scope
//! r/ <scope> \0 <user name>   -> role name (UTF-8): the same, indexed by scope
//! ```
//!
//! Names never contain NUL (see the naming rules), so `\0` separates them
//! unambiguously, and a shared group's name is never a UUID, so `g/` and `p/`
//! never collide.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Error;

/// How many change-log entries are kept. A manager that falls further behind
/// than this clears its whole cache instead of invalidating entry by entry.
pub(crate) const CHANGE_LOG_LEN: u64 = 1024;
/// More users than this in one change are recorded as "everything changed".
pub(crate) const MAX_CHANGE_USERS: usize = 1024;

pub(crate) const VERSION_KEY: &[u8] = b"v";
pub(crate) const CHANGE_PREFIX: &[u8] = b"c/";
pub(crate) const SHARED_PREFIX: &[u8] = b"g/";
pub(crate) const MEMBER_INDEX_PREFIX: &[u8] = b"m/";

pub(crate) fn change_key(version: u64) -> Vec<u8> {
    [CHANGE_PREFIX, &version.to_be_bytes()].concat()
}

/// The key of a group record: `p/` for personal groups (named by a uuid), `g/` otherwise.
pub(crate) fn group_key(name: &str) -> Vec<u8> {
    match personal_id(name) {
        Some(_) => [b"p/", name.as_bytes()].concat(),
        None => [SHARED_PREFIX, name.as_bytes()].concat(),
    }
}

/// The uuid of a personal group's name, `None` for a shared group's.
pub(crate) fn personal_id(name: &str) -> Option<Uuid> {
    Uuid::try_parse(name).ok()
}

pub(crate) fn personal_name(id: Uuid) -> String {
    id.hyphenated().to_string()
}

pub(crate) fn member_index_prefix(group: &str) -> Vec<u8> {
    [MEMBER_INDEX_PREFIX, group.as_bytes(), b"\0"].concat()
}

pub(crate) fn member_index_key(group: &str, user: &str) -> Vec<u8> {
    [member_index_prefix(group).as_slice(), user.as_bytes()].concat()
}

pub(crate) fn user_key(user: &str) -> Vec<u8> {
    [b"u/", user.as_bytes()].concat()
}

pub(crate) fn roles_prefix(user: &str) -> Vec<u8> {
    [b"s/", user.as_bytes(), b"\0"].concat()
}

pub(crate) fn role_key(user: &str, scope: &str) -> Vec<u8> {
    [roles_prefix(user).as_slice(), scope.as_bytes()].concat()
}

pub(crate) fn scope_prefix(scope: &str) -> Vec<u8> {
    [b"r/", scope.as_bytes(), b"\0"].concat()
}

pub(crate) fn scope_key(scope: &str, user: &str) -> Vec<u8> {
    [scope_prefix(scope).as_slice(), user.as_bytes()].concat()
}

/// The UTF-8 text after `prefix` in `key`.
pub(crate) fn suffix(key: &[u8], prefix_len: usize) -> Result<String, Error> {
    let rest = key
        .get(prefix_len..)
        .ok_or_else(|| Error::corrupt(key, "key shorter than its prefix"))?;
    String::from_utf8(rest.to_vec()).map_err(|_| Error::corrupt(key, "name is not UTF-8"))
}

pub(crate) fn decode_version(bytes: Option<&[u8]>) -> Result<u64, Error> {
    match bytes {
        None => Ok(0),
        Some(b) => b
            .try_into()
            .map(u64::from_be_bytes)
            .map_err(|_| Error::corrupt(VERSION_KEY, format!("expected 8 bytes, got {}", b.len()))),
    }
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::corrupt(key, e))
}

pub(crate) fn encode<T: Serialize>(key: &[u8], value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|e| Error::corrupt(key, e))
}

/// A permission group as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GroupRecord {
    /// Holds every declared permission (the `*` wildcard).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) all: bool,
    /// Permission names. Names no longer declared are kept and grant nothing.
    #[serde(default)]
    pub(crate) permissions: BTreeSet<String>,
    /// For a personal group: its user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) personal: Option<String>,
    /// A deletion has started: no new members are accepted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) deleting: bool,
}

/// A user's aucheck record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MemberRecord {
    /// The user's uuid, which names their personal group.
    pub(crate) id: Uuid,
    /// The name of the user's group (shared, or personal: the uuid).
    pub(crate) group: String,
}

/// What one change touched, for other managers' caches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Change {
    /// Users whose permissions may have changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) users: Vec<String>,
    /// Groups whose permissions changed (every member is affected).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) groups: Vec<String>,
    /// Too much changed to list: drop every cached entry.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) all: bool,
}

impl Change {
    pub(crate) fn user(&mut self, name: &str) {
        if self.all {
            return;
        }
        if self.users.len() >= MAX_CHANGE_USERS {
            self.all = true;
            self.users.clear();
            self.groups.clear();
            return;
        }
        if !self.users.iter().any(|u| u == name) {
            self.users.push(name.to_owned());
        }
    }

    pub(crate) fn group(&mut self, name: &str) {
        if !self.all && !self.groups.iter().any(|g| g == name) {
            self.groups.push(name.to_owned());
        }
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        !self.all && self.users.is_empty() && self.groups.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_and_separated() {
        assert_eq!(change_key(1), b"c/\0\0\0\0\0\0\0\x01".to_vec());
        assert!(change_key(255) < change_key(256));
        assert_eq!(group_key("members"), b"g/members".to_vec());
        let id = Uuid::new_v4();
        assert!(group_key(&personal_name(id)).starts_with(b"p/"));
        assert_eq!(personal_id(&personal_name(id)), Some(id));
        assert_eq!(member_index_key("g", "bob"), b"m/g\0bob".to_vec());
        assert_eq!(role_key("bob", "rust"), b"s/bob\0rust".to_vec());
        assert_eq!(scope_key("rust", "bob"), b"r/rust\0bob".to_vec());
        assert_eq!(suffix(b"m/g\0bob", 4).unwrap(), "bob");
        assert!(suffix(b"m/", 4).is_err());
        assert!(suffix(b"m/g\0\xff", 4).is_err());
    }

    #[test]
    fn versions_decode_without_panicking() {
        assert_eq!(decode_version(None).unwrap(), 0);
        assert_eq!(decode_version(Some(&7u64.to_be_bytes())).unwrap(), 7);
        assert!(decode_version(Some(b"short")).is_err());
    }

    #[test]
    fn records_round_trip_and_tolerate_missing_fields() {
        let g: GroupRecord = decode(b"g/x", br#"{"permissions":["a"]}"#).unwrap();
        assert!(!g.all && g.personal.is_none() && g.permissions.contains("a"));
        let bytes = encode(b"g/x", &g).unwrap();
        assert_eq!(bytes, br#"{"permissions":["a"]}"#);
        assert!(decode::<GroupRecord>(b"g/x", b"not json").is_err());
    }

    #[test]
    fn large_changes_collapse_to_all() {
        let mut c = Change::default();
        assert!(c.is_empty());
        c.user("a");
        c.user("a");
        assert_eq!(c.users.len(), 1);
        for i in 0..MAX_CHANGE_USERS + 1 {
            c.user(&format!("u{i}"));
        }
        assert!(c.all && c.users.is_empty());
    }
}
