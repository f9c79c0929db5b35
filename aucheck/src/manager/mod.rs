//! [`AuthManager`]: the manager itself, its checks and reads, the state its
//! clones share (the cache and how it is kept fresh, the background task).
//! Its builder is in [`builder`], the write path every change goes through
//! in [`transaction`].

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use nopi::{Scan, Store, Tree};
use tiny_storage::Users;
use tokio::task::JoinHandle;

use crate::audit::{AuditLog, Pending};
use crate::cache::{Cache, Entry, Lookup};
use crate::catalog::{Catalog, PermSet};
use crate::error::{DenyReason, Error, NotAuthorized, Result, shorten};
use crate::layout::{
    self, CHANGE_LOG_LEN, Change, GroupRecord, MemberRecord, VERSION_KEY, change_key, decode,
    decode_version, group_key,
};
use crate::names::{
    self, ALL_PERMISSIONS, MAX_PAGE, MAX_PERMISSION_NAME, MAX_PERMISSIONS, MAX_ROLES_PER_USER,
    MAX_SCOPE, MAX_USER_NAME,
};
use crate::{Admin, GroupInfo, Member};

mod builder;
mod transaction;

pub use builder::{
    AuthManagerBuilder, DEFAULT_CACHE_CAPACITY, DEFAULT_MAX_STALENESS, DEFAULT_TREE_PREFIX,
};
pub(crate) use transaction::{MAX_TX_ATTEMPTS, Tx, transact};

/// How often a cache load retries when the data changed while it read.
const MAX_LOAD_ATTEMPTS: u32 = 8;
/// How long the background task gathers denials before writing them.
const DENIAL_BATCH_DELAY: Duration = Duration::from_millis(10);

/// Who may do what: permission groups, per-user overrides (copy on write),
/// scoped roles, checks with an in-memory cache, guards and an audit log, over
/// one [`nopi::Store`]; users are stored through [`tiny_storage`].
///
/// Cheap to clone: clones share the cache and the background task. Build one
/// with [`AuthManager::builder`]; change data through [`AuthManager::by`].
///
/// # Checks and the cache
///
/// [`check`](Self::check) and [`check_in`](Self::check_in) answer from an
/// in-memory cache (one hash lookup and a bit test), loading a user from the
/// store on first use. Changes made through this manager invalidate it before
/// they return. Changes made through another manager on the same store are
/// seen within the staleness bound (default [`DEFAULT_MAX_STALENESS`], 1 s):
///
/// **Bound:** a check that starts more than `max_staleness` after a change
/// committed (through any manager sharing the store) reflects the change.
///
/// Every change bumps a version key and appends to a change log in the same
/// atomic batch. A background task reads the version key every
/// `max_staleness / 2` and drops the cache entries the new changes touched. A
/// check first makes sure the last successful read of the version key started
/// less than `max_staleness` ago; if not (the task is late, or the store is
/// unreachable), it reads the version key itself before answering, and if
/// that fails the check is refused with [`DenyReason::Unavailable`]: checks
/// fail closed instead of trusting a cache that may be stale.
#[derive(Clone)]
pub struct AuthManager {
    pub(crate) core: Arc<Core>,
}

impl fmt::Debug for AuthManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthManager")
            .field("tree", &self.core.tree.name())
            .field("permissions", &self.core.catalog.len())
            .field("max_staleness", &self.core.sync.max_staleness)
            .finish_non_exhaustive()
    }
}

/// Everything a manager and its clones share.
pub(crate) struct Core {
    pub(crate) tree: Tree,
    pub(crate) audit: AuditLog,
    pending: Arc<Pending>,
    pub(crate) users: Users,
    pub(crate) catalog: Catalog,
    cache: Cache,
    audit_denials: bool,
    /// Users per atomic batch in paged changes.
    pub(crate) page: usize,
    sync: SyncState,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Core {
    fn drop(&mut self) {
        if let Some(task) = self
            .task
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

struct SyncState {
    base: Instant,
    max_staleness: Duration,
    /// When the last successful read of the version key started, in
    /// nanoseconds since `base`.
    last_sync: AtomicU64,
    /// The newest version whose changes the cache reflects.
    applied: AtomicU64,
    /// One refresh at a time.
    lock: tokio::sync::Mutex<()>,
}

impl SyncState {
    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn age(&self) -> Duration {
        Duration::from_nanos(
            self.now()
                .saturating_sub(self.last_sync.load(Ordering::Acquire)),
        )
    }

    #[inline]
    fn is_stale(&self) -> bool {
        self.age() > self.max_staleness
    }
}

/// Refresh the cache every `interval` and write queued denials, until the
/// manager is dropped.
async fn background(core: Weak<Core>, pending: Arc<Pending>, interval: Duration) {
    loop {
        // Woken early when a denial is queued; then wait a little so that a
        // burst of denials is written in one batch.
        if tokio::time::timeout(interval, pending.notify.notified())
            .await
            .is_ok()
        {
            tokio::time::sleep(DENIAL_BATCH_DELAY.min(interval)).await;
        }
        let Some(core) = core.upgrade() else { return };
        if core.sync.age() >= interval {
            // A failure is retried at the next tick; checks fail closed meanwhile.
            let _ = core.refresh_if_older(interval).await;
        }
        if core.audit_denials {
            let _ = core.audit.flush().await;
        }
    }
}

impl Core {
    // ----- checks -----

    #[inline]
    pub(crate) async fn check(
        &self,
        user: &str,
        permission: &str,
        scope: Option<&str>,
    ) -> Result<(), NotAuthorized> {
        // Length checks first: hashing a huge name would cost more than the check.
        let perm = if permission.len() <= MAX_PERMISSION_NAME {
            self.catalog.permission(permission)
        } else {
            None
        };
        let Some(perm) = perm else {
            return self.deny(user, permission, scope, DenyReason::UnknownPermission);
        };
        if user.len() > MAX_USER_NAME {
            return self.deny(user, permission, scope, DenyReason::UnknownUser);
        }
        // No role is ever given on a longer scope.
        let lookup_scope = scope.filter(|s| s.len() <= MAX_SCOPE);
        if self.sync.is_stale()
            && let Err(e) = self.refresh_if_stale().await
        {
            return self.deny(user, permission, scope, unavailable(&e));
        }
        let allowed = match self.cache.lookup(user, perm, lookup_scope, &self.catalog) {
            Lookup::Allowed => return Ok(()),
            Lookup::Denied => false,
            Lookup::UnknownUser => {
                return self.deny(user, permission, scope, DenyReason::UnknownUser);
            }
            Lookup::Miss => {
                if !names::is_user(user) {
                    return self.deny(user, permission, scope, DenyReason::UnknownUser);
                }
                match self.load(user).await {
                    Ok(Some(entry)) => entry.allows(perm, lookup_scope, &self.catalog),
                    Ok(None) => {
                        return self.deny(user, permission, scope, DenyReason::UnknownUser);
                    }
                    Err(e) => return self.deny(user, permission, scope, unavailable(&e)),
                }
            }
        };
        if allowed {
            Ok(())
        } else {
            self.deny(user, permission, scope, DenyReason::NotGranted)
        }
    }

    fn deny(
        &self,
        user: &str,
        permission: &str,
        scope: Option<&str>,
        reason: DenyReason,
    ) -> Result<(), NotAuthorized> {
        let refused = NotAuthorized::new(user, permission, scope, reason);
        if self.audit_denials {
            self.pending.push(&refused);
        }
        Err(refused)
    }

    /// Load `user`'s entry from the store (a consistent read: retried while
    /// the version key moves) and cache it.
    async fn load(&self, user: &str) -> Result<Option<Arc<Entry>>> {
        for _ in 0..MAX_LOAD_ATTEMPTS {
            let generation = self.cache.generation();
            let before = self.version().await?;
            let entry = self.read_entry(user).await?.map(Arc::new);
            if self.version().await? == before {
                self.cache.insert(generation, user, entry.clone());
                return Ok(entry);
            }
        }
        Err(Error::Contended {
            attempts: MAX_LOAD_ATTEMPTS,
        })
    }

    async fn read_entry(&self, user: &str) -> Result<Option<Entry>> {
        let Some(member) = self.read_member(user).await? else {
            return Ok(None);
        };
        let perms = match self.read_group(&member.group).await? {
            Some(g) => self.catalog.resolve(g.all, &g.permissions),
            None => PermSet::empty(self.catalog.len()),
        };
        let mut roles = HashMap::new();
        for (scope, role) in self.read_roles(user, MAX_ROLES_PER_USER).await? {
            if let Some(i) = self.catalog.role(&role) {
                roles.insert(scope.into_boxed_str(), i);
            }
        }
        Ok(Some(Entry {
            group: member.group.into_boxed_str(),
            perms,
            roles,
        }))
    }

    // ----- refresh -----

    async fn refresh_if_stale(&self) -> Result<()> {
        let _one = self.sync.lock.lock().await;
        if !self.sync.is_stale() {
            return Ok(());
        }
        self.refresh_locked().await
    }

    async fn refresh_if_older(&self, age: Duration) -> Result<()> {
        let _one = self.sync.lock.lock().await;
        if self.sync.age() < age {
            return Ok(());
        }
        self.refresh_locked().await
    }

    pub(crate) async fn refresh(&self) -> Result<()> {
        let _one = self.sync.lock.lock().await;
        self.refresh_locked().await
    }

    async fn refresh_locked(&self) -> Result<()> {
        let started = self.sync.now();
        let current = self.version().await?;
        let applied = self.sync.applied.load(Ordering::Acquire);
        if current < applied {
            // The data was replaced under us (restored, or the tree dropped).
            self.cache.clear();
            self.sync.applied.store(current, Ordering::Release);
        } else if current > applied {
            if current - applied > CHANGE_LOG_LEN {
                self.cache.clear();
            } else {
                let changes = self
                    .tree
                    .scan(Scan::range(change_key(applied + 1)..=change_key(current)))
                    .await?;
                let expected = usize::try_from(current - applied).unwrap_or(usize::MAX);
                if changes.len() != expected {
                    self.cache.clear();
                } else {
                    for (key, value) in &changes {
                        match decode::<Change>(key, value) {
                            Ok(change) => self.cache.invalidate(&change),
                            Err(_) => self.cache.clear(),
                        }
                    }
                }
            }
            self.sync.applied.fetch_max(current, Ordering::AcqRel);
        }
        self.sync.last_sync.fetch_max(started, Ordering::AcqRel);
        Ok(())
    }

    // ----- reads -----

    pub(crate) async fn version(&self) -> Result<u64> {
        decode_version(self.tree.get(VERSION_KEY).await?.as_deref())
    }

    pub(crate) async fn read_member(&self, user: &str) -> Result<Option<MemberRecord>> {
        let key = layout::user_key(user);
        match self.tree.get(&key).await? {
            Some(bytes) => decode(&key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    pub(crate) async fn read_group(&self, name: &str) -> Result<Option<GroupRecord>> {
        let key = group_key(name);
        match self.tree.get(&key).await? {
            Some(bytes) => decode(&key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Up to `limit` (scope, role) pairs of `user`, by scope.
    pub(crate) async fn read_roles(
        &self,
        user: &str,
        limit: usize,
    ) -> Result<Vec<(String, String)>> {
        let prefix = layout::roles_prefix(user);
        let entries = self.tree.scan(Scan::prefix(&prefix).limit(limit)).await?;
        entries
            .iter()
            .map(|(k, v)| {
                let scope = layout::suffix(k, prefix.len())?;
                let role = String::from_utf8(v.clone())
                    .map_err(|_| Error::corrupt(k, "role is not UTF-8"))?;
                Ok((scope, role))
            })
            .collect()
    }

    /// A stored permission list from names given by a caller: `*` means all.
    pub(crate) fn parse_permissions<I, S>(&self, permissions: I) -> Result<(bool, BTreeSet<String>)>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut all = false;
        let mut names = BTreeSet::new();
        for p in permissions {
            let p = p.as_ref();
            if Catalog::is_wildcard(p) {
                all = true;
            } else if self.catalog.is_declared(p) {
                if names.len() >= MAX_PERMISSIONS {
                    return Err(Error::TooMany {
                        what: "permissions of a group",
                        count: names.len() + 1,
                        limit: MAX_PERMISSIONS,
                    });
                }
                names.insert(p.to_owned());
            } else {
                return Err(Error::UnknownPermission(shorten(p)));
            }
        }
        if all {
            names.clear();
        }
        Ok((all, names))
    }

    pub(crate) fn group_info(&self, name: String, g: GroupRecord) -> GroupInfo {
        let permissions = if g.all {
            vec![ALL_PERMISSIONS.to_owned()]
        } else {
            self.catalog.granted(false, &g.permissions)
        };
        GroupInfo {
            name,
            all: g.all,
            permissions,
            personal_of: g.personal,
            deleting: g.deleting,
        }
    }
}

fn unavailable(e: &Error) -> DenyReason {
    DenyReason::Unavailable(e.to_string())
}

fn page_limit(limit: usize) -> usize {
    limit.min(MAX_PAGE)
}

/// The scan of keys under `prefix` strictly after `prefix + after`.
pub(crate) fn scan_after(prefix: &[u8], after: Option<&str>) -> Scan {
    match after {
        None => Scan::prefix(prefix),
        Some(after) => {
            let start = [prefix, after.as_bytes()].concat();
            let mut end = prefix.to_vec();
            // Prefixes end in `/` or NUL, never 0xff, so this is their successor.
            if let Some(last) = end.last_mut() {
                *last = last.saturating_add(1);
            }
            Scan::range::<Vec<u8>>((
                std::ops::Bound::Excluded(start),
                std::ops::Bound::Excluded(end),
            ))
        }
    }
}

impl AuthManager {
    /// A builder for a manager over `store`.
    pub fn builder(store: &Store) -> AuthManagerBuilder {
        AuthManagerBuilder::new(store)
    }

    /// Refuse unless `user` holds `permission` (through their group).
    ///
    /// Deny by default: an unknown user, an undeclared permission, and any
    /// check while the store cannot be read are refused. Every refusal is
    /// audited (unless [`audit_denials`](AuthManagerBuilder::audit_denials)
    /// is off).
    pub async fn check(&self, user: &str, permission: &str) -> Result<(), NotAuthorized> {
        self.core.check(user, permission, None).await
    }

    /// Refuse unless `user` holds `permission` on `scope`: through a role on
    /// that scope ([`Admin::set_role`]), or globally through their group (a
    /// permission held globally holds on every scope, which is how a global
    /// admin group works).
    pub async fn check_in(
        &self,
        user: &str,
        permission: &str,
        scope: &str,
    ) -> Result<(), NotAuthorized> {
        self.core.check(user, permission, Some(scope)).await
    }

    /// Change data, recording `actor` as who did it in the audit log. The
    /// actor is any text without control characters, at most 128 bytes.
    pub fn by<'a>(&'a self, actor: &str) -> Admin<'a> {
        Admin::new(&self.core, actor)
    }

    /// Read the store's version key now and drop every cache entry that
    /// changes made through other managers touched.
    pub async fn refresh(&self) -> Result<()> {
        self.core.refresh().await
    }

    /// The audit log.
    pub fn audit(&self) -> AuditLog {
        self.core.audit.clone()
    }

    /// The users (tiny_storage): log in with [`Users::verify`], read and update
    /// attributes. Create and delete users through [`AuthManager::by`] so that
    /// their permissions follow.
    pub fn users(&self) -> &Users {
        &self.core.users
    }

    /// The staleness bound; see the [type docs](Self).
    pub fn max_staleness(&self) -> Duration {
        self.core.sync.max_staleness
    }

    /// The declared permissions, in declaration order.
    pub fn permissions(&self) -> Vec<&str> {
        self.core.catalog.names().collect()
    }

    /// The declared roles with the permissions each grants on its scopes.
    pub fn roles(&self) -> Vec<(&str, Vec<&str>)> {
        self.core.catalog.roles().collect()
    }

    /// The group `name`: a shared group, or a personal group by its uuid.
    pub async fn group(&self, name: &str) -> Result<Option<GroupInfo>> {
        if layout::personal_id(name).is_none() {
            names::group(name)?;
        }
        Ok(self
            .core
            .read_group(name)
            .await?
            .map(|g| self.core.group_info(name.to_owned(), g)))
    }

    /// Up to `limit` (at most [`MAX_PAGE`]) shared groups by name, after
    /// `after` (for paging). Personal groups are not listed.
    pub async fn groups(&self, after: Option<&str>, limit: usize) -> Result<Vec<GroupInfo>> {
        let scan = scan_after(layout::SHARED_PREFIX, after).limit(page_limit(limit));
        let entries = self.core.tree.scan(scan).await?;
        entries
            .iter()
            .map(|(k, v)| {
                let name = layout::suffix(k, layout::SHARED_PREFIX.len())?;
                Ok(self.core.group_info(name, decode(k, v)?))
            })
            .collect()
    }

    /// Up to `limit` (at most [`MAX_PAGE`]) members of the shared group
    /// `group` by name, after `after`. For a personal group: its user.
    pub async fn group_members(
        &self,
        group: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        if layout::personal_id(group).is_some() {
            let owner = self.core.read_group(group).await?.and_then(|g| g.personal);
            return Ok(owner
                .into_iter()
                .filter(|o| after.is_none_or(|a| o.as_str() > a) && limit > 0)
                .collect());
        }
        names::group(group)?;
        let prefix = layout::member_index_prefix(group);
        let scan = scan_after(&prefix, after).limit(page_limit(limit));
        let entries = self.core.tree.scan(scan).await?;
        entries
            .iter()
            .map(|(k, _)| layout::suffix(k, prefix.len()))
            .collect()
    }

    /// The aucheck record of `user`: their uuid and group.
    pub async fn member(&self, user: &str) -> Result<Option<Member>> {
        names::user(user)?;
        Ok(self.core.read_member(user).await?.map(|m| Member {
            name: user.to_owned(),
            personal: layout::personal_id(&m.group) == Some(m.id),
            id: m.id,
            group: m.group,
        }))
    }

    /// The permissions `user` holds globally (through their group), in
    /// declaration order, read from the store.
    pub async fn permissions_of(&self, user: &str) -> Result<Vec<String>> {
        names::user(user)?;
        let member = self
            .core
            .read_member(user)
            .await?
            .ok_or_else(|| Error::UnknownUser(user.to_owned()))?;
        Ok(match self.core.read_group(&member.group).await? {
            Some(g) => self.core.catalog.granted(g.all, &g.permissions),
            None => Vec::new(),
        })
    }

    /// The role of `user` on `scope`, if any.
    pub async fn role_of(&self, user: &str, scope: &str) -> Result<Option<String>> {
        names::user(user)?;
        names::scope(scope)?;
        let key = layout::role_key(user, scope);
        match self.core.tree.get(&key).await? {
            Some(v) => String::from_utf8(v)
                .map(Some)
                .map_err(|_| Error::corrupt(&key, "role is not UTF-8")),
            None => Ok(None),
        }
    }

    /// Every (scope, role) of `user`, by scope (at most [`MAX_ROLES_PER_USER`]).
    pub async fn roles_of(&self, user: &str) -> Result<Vec<(String, String)>> {
        names::user(user)?;
        self.core.read_roles(user, MAX_ROLES_PER_USER).await
    }

    /// Up to `limit` (at most [`MAX_PAGE`]) (user, role) pairs on `scope`, by
    /// user name, after the user `after`: who owns and administers a chat group.
    pub async fn scope_members(
        &self,
        scope: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, String)>> {
        names::scope(scope)?;
        let prefix = layout::scope_prefix(scope);
        let scan = scan_after(&prefix, after).limit(page_limit(limit));
        let entries = self.core.tree.scan(scan).await?;
        entries
            .iter()
            .map(|(k, v)| {
                let user = layout::suffix(k, prefix.len())?;
                let role = String::from_utf8(v.clone())
                    .map_err(|_| Error::corrupt(k, "role is not UTF-8"))?;
                Ok((user, role))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_after_a_name_stay_in_the_prefix() {
        let s = scan_after(b"m/g\0", Some("bob"));
        assert!(!s.contains(b"m/g\0bob"));
        assert!(s.contains(b"m/g\0bobby"));
        assert!(s.contains(b"m/g\0carol"));
        assert!(!s.contains(b"m/h\0a"));
        assert!(!s.contains(b"m/g\x01"));
        assert!(scan_after(b"g/", None).contains(b"g/x"));
    }
}
