//! [`AuthManagerBuilder`]: the declarations and settings of an
//! [`AuthManager`], their validation, and building the manager from them
//! (opening the users and trees, creating the initial groups, starting the
//! background task).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nopi::Store;
use tiny_storage::{Attribute, PasswordParams, UserModel, Users};

use super::{AuthManager, Core, SyncState, background};
use crate::audit::{AuditLog, Pending};
use crate::cache::Cache;
use crate::catalog::Catalog;
use crate::error::{BuildError, Error, NameKind, Result, shorten};
use crate::layout::{VERSION_KEY, decode_version};
use crate::names::{self, MAX_PERMISSIONS, MAX_ROLES};

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
    /// A builder for a manager over `store`, with the defaults; see
    /// [`AuthManager::builder`].
    pub(super) fn new(store: &Store) -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;

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
