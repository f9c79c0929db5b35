//! [`AuthManager`]: the builder, checks, reads, and the machinery every change
//! goes through (transactions on the version key, cache refresh).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use nopi::{Batch, Scan, Store, Tree};
use tiny_storage::{Attribute, PasswordParams, UserModel, Users};
use tokio::task::JoinHandle;

use crate::audit::{AuditEntry, AuditLog, Pending};
use crate::cache::{Cache, Entry, Lookup};
use crate::catalog::{Catalog, PermSet};
use crate::error::{BuildError, DenyReason, Error, NameKind, NotAuthorized, Result, shorten};
use crate::layout::{
    self, CHANGE_LOG_LEN, Change, GroupRecord, MemberRecord, VERSION_KEY, change_key, decode,
    decode_version, encode, group_key,
};
use crate::names::{
    self, ALL_PERMISSIONS, MAX_PAGE, MAX_PERMISSION_NAME, MAX_PERMISSIONS, MAX_ROLES,
    MAX_ROLES_PER_USER, MAX_SCOPE, MAX_USER_NAME,
};
use crate::{Admin, GroupInfo, Member};

/// How often a change retries after another manager changed the data first.
pub(crate) const MAX_TX_ATTEMPTS: u32 = 64;
/// How often a cache load retries when the data changed while it read.
const MAX_LOAD_ATTEMPTS: u32 = 8;
/// How long the background task gathers denials before writing them.
const DENIAL_BATCH_DELAY: Duration = Duration::from_millis(10);
/// The default bound on how stale a check's answer may be.
pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(1);
/// The default number of users whose permissions are cached.
pub const DEFAULT_CACHE_CAPACITY: usize = 100_000;
/// The default tree prefix: data in `aucheck`, the audit log in `aucheck.audit`.
pub const DEFAULT_TREE_PREFIX: &str = "aucheck";
/// The actor recorded for changes the manager makes itself (initial groups).
const SYSTEM_ACTOR: &str = "aucheck";
/// Most users moved (or roles removed) in one atomic batch of a paged change.
const MAX_PAGE_USERS: usize = 256;
/// Batch operations beyond the per-user ones: version expect and put, change
/// log put and trim, the group record.
const BATCH_OVERHEAD: usize = 8;
/// Batch operations per moved user: old index, new index, record, personal group.
const OPS_PER_USER: usize = 4;

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

/// Describes an [`AuthManager`] before building it. See [`AuthManager::builder`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct AuthManagerBuilder {
    store: Store,
    permissions: Vec<String>,
    roles: Vec<(String, Vec<String>)>,
    groups: Vec<(String, Vec<String>)>,
    model: Option<UserModel>,
    attributes: Vec<Attribute>,
    users: Option<Users>,
    password_params: Option<PasswordParams>,
    users_tree: Option<String>,
    prefix: String,
    max_staleness: Duration,
    cache_capacity: usize,
    audit_denials: bool,
}

impl fmt::Debug for AuthManagerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthManagerBuilder")
            .field("permissions", &self.permissions)
            .field("roles", &self.roles)
            .field("groups", &self.groups)
            .field("prefix", &self.prefix)
            .field("max_staleness", &self.max_staleness)
            .field("cache_capacity", &self.cache_capacity)
            .field("audit_denials", &self.audit_denials)
            .finish_non_exhaustive()
    }
}

impl AuthManagerBuilder {
    /// Declare permissions (names of `[A-Za-z0-9_.:-]`, at most 128 bytes,
    /// at most [`MAX_PERMISSIONS`] in all). Checks of any other name are refused.
    pub fn permissions<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.permissions.extend(names.into_iter().map(Into::into));
        self
    }

    /// Declare one permission.
    pub fn permission(mut self, name: impl Into<String>) -> Self {
        self.permissions.push(name.into());
        self
    }

    /// Declare a scoped role and the permissions it grants on the scopes it
    /// is given on (`*` for all), such as `owner` of a chat group. At most
    /// [`MAX_ROLES`] roles.
    pub fn role<I, S>(mut self, name: impl Into<String>, permissions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let perms = permissions.into_iter().map(Into::into).collect();
        self.roles.push((name.into(), perms));
        self
    }

    /// A shared group to create when building, unless the store has it
    /// already (an existing group keeps its stored permissions). `*` stands
    /// for every permission.
    pub fn group<I, S>(mut self, name: impl Into<String>, permissions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let perms = permissions.into_iter().map(Into::into).collect();
        self.groups.push((name.into(), perms));
        self
    }

    /// The complete user model. Without one, the model is a user name
    /// attribute `name`, a password attribute `password`, and the
    /// [`attribute`](Self::attribute)s given.
    pub fn user_model(mut self, model: UserModel) -> Self {
        self.model = Some(model);
        self
    }

    /// A user attribute (with its validators) for the default model.
    pub fn attribute(mut self, attribute: Attribute) -> Self {
        self.attributes.push(attribute);
        self
    }

    /// Use these already opened users instead of opening them from a model
    /// (then [`password_params`](Self::password_params) and
    /// [`users_tree`](Self::users_tree) are not used: `users` has its own).
    pub fn users(mut self, users: Users) -> Self {
        self.users = Some(users);
        self
    }

    /// The argon2id parameters for the users' passwords (default OWASP's).
    pub fn password_params(mut self, params: PasswordParams) -> Self {
        self.password_params = Some(params);
        self
    }

    /// The tree holding the users (default tiny_storage's `users`).
    pub fn users_tree(mut self, name: impl Into<String>) -> Self {
        self.users_tree = Some(name.into());
        self
    }

    /// The prefix of aucheck's trees (default [`DEFAULT_TREE_PREFIX`]): the
    /// data tree is named by the prefix, the audit log is `<prefix>.audit`.
    pub fn tree_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The staleness bound (default [`DEFAULT_MAX_STALENESS`], 1 s; between
    /// 2 ms and 1 hour): a check starting later than this after a change made
    /// through another manager reflects it. The store's version key is read
    /// every half of it.
    pub fn max_staleness(mut self, bound: Duration) -> Self {
        self.max_staleness = bound;
        self
    }

    /// How many users' permissions to keep in memory (default
    /// [`DEFAULT_CACHE_CAPACITY`]); as many unknown names are remembered too.
    pub fn cache_capacity(mut self, users: usize) -> Self {
        self.cache_capacity = users;
        self
    }

    /// Log refused checks in the audit log (default `true`).
    pub fn audit_denials(mut self, on: bool) -> Self {
        self.audit_denials = on;
        self
    }

    /// Check the declarations, open the users and aucheck's trees, create the
    /// initial groups, and start the background refresh task. Must be called
    /// within a tokio runtime.
    pub async fn build(self) -> Result<AuthManager, BuildError> {
        let catalog = self.catalog()?;
        let groups = self.initial_groups(&catalog)?;
        if self.max_staleness < Duration::from_millis(2)
            || self.max_staleness > Duration::from_secs(3600)
        {
            return Err(BuildError::InvalidSetting {
                what: "max_staleness",
                expected: "between 2 ms and 1 hour",
                actual: format!("{:?}", self.max_staleness),
            });
        }
        if self.cache_capacity == 0 {
            return Err(BuildError::InvalidSetting {
                what: "cache_capacity",
                expected: "at least 1 user",
                actual: "0".to_owned(),
            });
        }
        let batch_limit = self.store.limits().max_batch_ops;
        let minimum = BATCH_OVERHEAD + OPS_PER_USER * 2;
        if batch_limit < minimum {
            return Err(BuildError::Setup(Error::BatchLimitTooSmall {
                limit: batch_limit,
                minimum,
            }));
        }
        let page = ((batch_limit - BATCH_OVERHEAD) / OPS_PER_USER).min(MAX_PAGE_USERS);
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let users = match self.users {
            Some(users) => {
                if self.model.is_some() || !self.attributes.is_empty() {
                    return Err(BuildError::ModelAndAttributes {
                        attributes: self.attributes.len(),
                    });
                }
                users
            }
            None => {
                let model = match self.model {
                    Some(_) if !self.attributes.is_empty() => {
                        return Err(BuildError::ModelAndAttributes {
                            attributes: self.attributes.len(),
                        });
                    }
                    Some(model) => model,
                    None => self
                        .attributes
                        .into_iter()
                        .fold(
                            UserModel::builder().user_name("name").password("password"),
                            |b, a| b.attribute(a),
                        )
                        .build()?,
                };
                let mut builder = Users::builder(&self.store, model);
                if let Some(tree) = &self.users_tree {
                    builder = builder.tree(tree);
                }
                if let Some(params) = self.password_params {
                    builder = builder.password_params(params);
                }
                builder.open().await?
            }
        };
        let tree = self.store.tree(&self.prefix).await?;
        let audit_tree = self.store.tree(&format!("{}.audit", self.prefix)).await?;
        let pending = Arc::new(Pending::default());
        let base = Instant::now();
        let version = decode_version(tree.get(VERSION_KEY).await?.as_deref())?;
        let core = Arc::new(Core {
            audit: AuditLog::new(audit_tree, pending.clone(), batch_limit),
            tree,
            pending: pending.clone(),
            users,
            catalog,
            cache: Cache::new(self.cache_capacity),
            audit_denials: self.audit_denials,
            page,
            sync: SyncState {
                base,
                max_staleness: self.max_staleness,
                last_sync: AtomicU64::new(0),
                applied: AtomicU64::new(version),
                lock: tokio::sync::Mutex::new(()),
            },
            task: Mutex::new(None),
        });
        let interval = self.max_staleness / 2;
        let task = runtime.spawn(background(Arc::downgrade(&core), pending, interval));
        *core.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
        let manager = AuthManager { core };
        for (name, perms) in groups {
            manager.by(SYSTEM_ACTOR).ensure_group(&name, perms).await?;
        }
        Ok(manager)
    }

    fn catalog(&self) -> Result<Catalog, BuildError> {
        if self.permissions.len() > MAX_PERMISSIONS {
            return Err(BuildError::TooMany {
                kind: NameKind::Permission,
                count: self.permissions.len(),
                limit: MAX_PERMISSIONS,
            });
        }
        let mut seen = BTreeSet::new();
        for p in &self.permissions {
            names::permission(p).map_err(build_name)?;
            if !seen.insert(p.as_str()) {
                return Err(BuildError::Duplicate {
                    kind: NameKind::Permission,
                    name: p.clone(),
                });
            }
        }
        if self.roles.len() > MAX_ROLES {
            return Err(BuildError::TooMany {
                kind: NameKind::Role,
                count: self.roles.len(),
                limit: MAX_ROLES,
            });
        }
        let mut role_names = BTreeSet::new();
        let mut roles = Vec::with_capacity(self.roles.len());
        for (role, perms) in &self.roles {
            names::role(role).map_err(build_name)?;
            if !role_names.insert(role.as_str()) {
                return Err(BuildError::Duplicate {
                    kind: NameKind::Role,
                    name: role.clone(),
                });
            }
            let mut resolved = Vec::new();
            for p in perms {
                if Catalog::is_wildcard(p) {
                    resolved.extend(self.permissions.iter().cloned());
                } else if seen.contains(p.as_str()) {
                    resolved.push(p.clone());
                } else {
                    return Err(BuildError::UndeclaredPermission {
                        kind: NameKind::Role,
                        name: role.clone(),
                        permission: shorten(p),
                    });
                }
            }
            roles.push((role.clone(), resolved));
        }
        Ok(Catalog::new(self.permissions.clone(), roles))
    }

    fn initial_groups(&self, catalog: &Catalog) -> Result<Vec<(String, Vec<String>)>, BuildError> {
        for (name, perms) in &self.groups {
            names::group(name).map_err(build_name)?;
            if let Some(p) = perms
                .iter()
                .find(|p| !Catalog::is_wildcard(p) && !catalog.is_declared(p))
            {
                return Err(BuildError::UndeclaredPermission {
                    kind: NameKind::Group,
                    name: name.clone(),
                    permission: shorten(p),
                });
            }
        }
        Ok(self.groups.clone())
    }
}

fn build_name(e: Error) -> BuildError {
    match e {
        Error::InvalidName { kind, name, reason } => BuildError::InvalidName { kind, name, reason },
        other => BuildError::Setup(other),
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

/// The writes of one change, applied atomically by [`Core::commit`].
pub(crate) struct Tx {
    version: u64,
    version_bytes: Option<Vec<u8>>,
    batch: Batch,
    change: Change,
    audit: Vec<AuditEntry>,
}

impl Tx {
    pub(crate) fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.batch.push_put(key, value);
    }

    pub(crate) fn remove(&mut self, key: impl AsRef<[u8]>) {
        self.batch.push_remove(key);
    }

    pub(crate) fn touch_user(&mut self, user: &str) {
        self.change.user(user);
    }

    pub(crate) fn touch_group(&mut self, group: &str) {
        self.change.group(group);
    }

    pub(crate) fn audit(&mut self, entry: AuditEntry) {
        self.audit.push(entry);
    }

    pub(crate) fn put_group(&mut self, name: &str, group: &GroupRecord) -> Result<()> {
        let key = group_key(name);
        let bytes = encode(&key, group)?;
        self.put(key, bytes);
        Ok(())
    }

    pub(crate) fn put_member(&mut self, user: &str, member: &MemberRecord) -> Result<()> {
        let key = layout::user_key(user);
        let bytes = encode(&key, member)?;
        self.put(key, bytes);
        Ok(())
    }
}

/// Run `$body` as one change: begin a [`Tx`] (bound to `$tx`), evaluate the
/// body (which reads through the core and writes through the tx; `?` and
/// `return` leave without writing), commit, and start over if another change
/// committed in between. Evaluates to the body's value.
macro_rules! transact {
    ($core:expr, |$tx:ident| $body:block) => {{
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            #[allow(unused_mut)]
            let mut $tx = $core.begin().await?;
            let out = $body;
            if $core.commit($tx).await? {
                break out;
            }
            if attempt >= $crate::manager::MAX_TX_ATTEMPTS {
                return Err($crate::error::Error::Contended { attempts: attempt });
            }
            tokio::task::yield_now().await;
        }
    }};
}
pub(crate) use transact;

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

    // ----- transactions -----

    pub(crate) async fn begin(&self) -> Result<Tx> {
        let version_bytes = self.tree.get(VERSION_KEY).await?;
        Ok(Tx {
            version: decode_version(version_bytes.as_deref())?,
            version_bytes,
            batch: Batch::new(),
            change: Change::default(),
            audit: Vec::new(),
        })
    }

    /// Apply `tx` if no other change committed since it began: `Ok(false)`
    /// means start over.
    pub(crate) async fn commit(&self, tx: Tx) -> Result<bool> {
        let Tx {
            version,
            version_bytes,
            mut batch,
            change,
            audit,
        } = tx;
        if batch.ops().is_empty() {
            return Ok(true);
        }
        let next = version
            .checked_add(1)
            .ok_or_else(|| Error::corrupt(VERSION_KEY, "the version counter is exhausted"))?;
        batch.push_expect(VERSION_KEY, version_bytes.as_deref());
        batch.push_put(VERSION_KEY, next.to_be_bytes());
        let key = change_key(next);
        batch.push_put(&key, encode(&key, &change)?);
        if next > CHANGE_LOG_LEN {
            batch.push_remove(change_key(next - CHANGE_LOG_LEN));
        }
        match self.tree.apply(batch).await {
            Ok(()) => {}
            Err(nopi::Error::Conflict { .. }) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        self.cache.invalidate(&change);
        // Mark our own change as applied when nothing else is pending, so the
        // next refresh does not invalidate the same entries again.
        let _ =
            self.sync
                .applied
                .compare_exchange(version, next, Ordering::AcqRel, Ordering::Acquire);
        self.audit.write(&audit).await.map_err(|e| match e {
            Error::Store(e) => Error::AuditWrite(e),
            other => other,
        })?;
        Ok(true)
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
        AuthManagerBuilder {
            store: store.clone(),
            permissions: Vec::new(),
            roles: Vec::new(),
            groups: Vec::new(),
            model: None,
            attributes: Vec::new(),
            users: None,
            password_params: None,
            users_tree: None,
            prefix: DEFAULT_TREE_PREFIX.to_owned(),
            max_staleness: DEFAULT_MAX_STALENESS,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            audit_denials: true,
        }
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

    #[tokio::test]
    async fn build_refuses_bad_declarations() {
        let store = Store::memory();
        let dup = AuthManager::builder(&store)
            .permissions(["a", "a"])
            .build()
            .await;
        assert!(matches!(dup, Err(BuildError::Duplicate { .. })), "{dup:?}");
        let bad = AuthManager::builder(&store).permission("a b").build().await;
        assert!(
            matches!(bad, Err(BuildError::InvalidName { .. })),
            "{bad:?}"
        );
        let role = AuthManager::builder(&store)
            .permission("a")
            .role("owner", ["b"])
            .build()
            .await;
        assert!(
            matches!(role, Err(BuildError::UndeclaredPermission { .. })),
            "{role:?}"
        );
        let group = AuthManager::builder(&store)
            .permission("a")
            .group("g", ["zz"])
            .build()
            .await;
        assert!(
            matches!(group, Err(BuildError::UndeclaredPermission { .. })),
            "{group:?}"
        );
        let stale = AuthManager::builder(&store)
            .max_staleness(Duration::ZERO)
            .build()
            .await;
        assert!(
            matches!(stale, Err(BuildError::InvalidSetting { .. })),
            "{stale:?}"
        );
        let too_many = AuthManager::builder(&store)
            .permissions((0..=MAX_PERMISSIONS).map(|i| format!("p{i}")))
            .build()
            .await;
        assert!(
            matches!(too_many, Err(BuildError::TooMany { .. })),
            "{too_many:?}"
        );
    }
}
