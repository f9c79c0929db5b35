//! Guards: async functions that run only when the caller holds a permission,
//! one at a time ([`Guard`]) or by name ([`Registry`]).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::AuthManager;
use crate::error::{CallError, Error, NotAuthorized, Result, shorten};
use crate::names::{self, MAX_FUNCTIONS};

/// Who called a guarded function, handed to the function after the check.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Caller {
    /// The user whose permission was checked.
    pub user: String,
    /// The scope it was checked on, for scoped calls.
    pub scope: Option<String>,
}

/// An async function that runs only when the caller holds a permission.
/// Make one with [`AuthManager::guard`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use tiny_storage::{NewUser, PasswordParams};
/// # let store = nopi::open("memory:").await?;
/// # let auth = aucheck::AuthManager::builder(&store)
/// #     .permissions(["group.kick"])
/// #     .role("owner", ["group.kick"])
/// #     .password_params(PasswordParams::insecure_for_tests())
/// #     .build()
/// #     .await?;
/// # auth.by("root").create_user(NewUser::new("alice").password("pw"), None).await?;
/// # auth.by("root").create_user(NewUser::new("bob").password("pw"), None).await?;
/// # auth.by("root").set_role("alice", "group/rust", "owner").await?;
/// let kick = auth.guard("group.kick", |caller: aucheck::Caller, target: String| async move {
///     format!("{} kicked {target}", caller.user)
/// })?;
/// let done = kick.call_in("alice", "group/rust", "carol".to_owned()).await?;
/// assert_eq!(done, "alice kicked carol");
/// assert!(kick.call_in("bob", "group/rust", "carol".to_owned()).await.is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }
/// ```
pub struct Guard<F> {
    auth: AuthManager,
    permission: String,
    f: F,
}

impl<F> fmt::Debug for Guard<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("permission", &self.permission)
            .finish_non_exhaustive()
    }
}

impl<F> Guard<F> {
    /// The permission the caller needs.
    pub fn permission(&self) -> &str {
        &self.permission
    }

    /// Run the function with `args` if `user` holds the permission globally.
    pub async fn call<A, Fut>(&self, user: &str, args: A) -> Result<Fut::Output, NotAuthorized>
    where
        F: Fn(Caller, A) -> Fut,
        Fut: Future,
    {
        self.auth.check(user, &self.permission).await?;
        let caller = Caller {
            user: user.to_owned(),
            scope: None,
        };
        Ok((self.f)(caller, args).await)
    }

    /// Run the function with `args` if `user` holds the permission on `scope`
    /// (see [`AuthManager::check_in`]).
    pub async fn call_in<A, Fut>(
        &self,
        user: &str,
        scope: &str,
        args: A,
    ) -> Result<Fut::Output, NotAuthorized>
    where
        F: Fn(Caller, A) -> Fut,
        Fut: Future,
    {
        self.auth.check_in(user, &self.permission, scope).await?;
        let caller = Caller {
            user: user.to_owned(),
            scope: Some(scope.to_owned()),
        };
        Ok((self.f)(caller, args).await)
    }
}

impl AuthManager {
    /// Wrap `f` so that it runs only when the caller holds `permission`;
    /// [`Error::UnknownPermission`] if it was not declared.
    pub fn guard<F>(&self, permission: &str, f: F) -> Result<Guard<F>> {
        if !self.core.catalog.is_declared(permission) {
            return Err(Error::UnknownPermission(shorten(permission)));
        }
        Ok(Guard {
            auth: self.clone(),
            permission: permission.to_owned(),
            f,
        })
    }
}

type Handler<A, R> =
    Arc<dyn Fn(Caller, A) -> Pin<Box<dyn Future<Output = R> + Send>> + Send + Sync>;

struct Registered<A, R> {
    permission: String,
    handler: Handler<A, R>,
}

/// Guarded async functions callable by name, all taking `A` and returning
/// `R` (for an API: `serde_json::Value` in and out). Each function has the
/// permission its caller needs.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use tiny_storage::{NewUser, PasswordParams};
/// # let store = nopi::open("memory:").await?;
/// let auth = aucheck::AuthManager::builder(&store)
///     .permissions(["group.create", "user.ban"])
///     .group("members", ["group.create"])
/// #   .password_params(PasswordParams::insecure_for_tests())
///     .build()
///     .await?;
/// auth.by("root").create_user(NewUser::new("bob").password("pw"), Some("members")).await?;
///
/// let mut api = aucheck::Registry::<String, String>::new(&auth);
/// api.register("group.create", "group.create", |caller, name| async move {
///     format!("{} created {name}", caller.user)
/// })?;
/// api.register("user.ban", "user.ban", |_, name| async move { format!("banned {name}") })?;
///
/// assert_eq!(api.call("group.create", "bob", "rust".into()).await?, "bob created rust");
/// assert!(api.call("user.ban", "bob", "alice".into()).await.is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }
/// ```
pub struct Registry<A, R> {
    auth: AuthManager,
    functions: HashMap<String, Registered<A, R>>,
}

impl<A, R> fmt::Debug for Registry<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self
            .functions
            .iter()
            .map(|(n, r)| (n.as_str(), r.permission.as_str()))
            .collect();
        names.sort_unstable();
        f.debug_struct("Registry")
            .field("functions", &names)
            .finish_non_exhaustive()
    }
}

impl<A: Send + 'static, R: Send + 'static> Registry<A, R> {
    /// An empty registry checking permissions with `auth`.
    pub fn new(auth: &AuthManager) -> Self {
        Registry {
            auth: auth.clone(),
            functions: HashMap::new(),
        }
    }

    /// Register `f` under `name` (any text without control characters, at
    /// most 128 bytes), callable by users holding `permission`; replaces a
    /// function of the same name. At most [`MAX_FUNCTIONS`] functions.
    pub fn register<F, Fut>(&mut self, name: &str, permission: &str, f: F) -> Result<&mut Self>
    where
        F: Fn(Caller, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
    {
        names::function(name)?;
        if !self.auth.core.catalog.is_declared(permission) {
            return Err(Error::UnknownPermission(shorten(permission)));
        }
        if self.functions.len() >= MAX_FUNCTIONS && !self.functions.contains_key(name) {
            return Err(Error::TooMany {
                what: "functions in a registry",
                count: self.functions.len() + 1,
                limit: MAX_FUNCTIONS,
            });
        }
        let handler: Handler<A, R> = Arc::new(move |caller, args| Box::pin(f(caller, args)));
        self.functions.insert(
            name.to_owned(),
            Registered {
                permission: permission.to_owned(),
                handler,
            },
        );
        Ok(self)
    }

    /// Remove the function `name`; `false` if there was none.
    pub fn unregister(&mut self, name: &str) -> bool {
        self.functions.remove(name).is_some()
    }

    /// The permission the function `name` needs, if it is registered.
    pub fn permission_of(&self, name: &str) -> Option<&str> {
        self.functions.get(name).map(|r| r.permission.as_str())
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.functions.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Call the function `name` as `user`, if they hold its permission globally.
    pub async fn call(&self, name: &str, user: &str, args: A) -> Result<R, CallError> {
        let registered = self.get(name)?;
        self.auth.check(user, &registered.permission).await?;
        let caller = Caller {
            user: user.to_owned(),
            scope: None,
        };
        Ok((registered.handler)(caller, args).await)
    }

    /// Call the function `name` as `user`, if they hold its permission on `scope`.
    pub async fn call_in(
        &self,
        name: &str,
        user: &str,
        scope: &str,
        args: A,
    ) -> Result<R, CallError> {
        let registered = self.get(name)?;
        self.auth
            .check_in(user, &registered.permission, scope)
            .await?;
        let caller = Caller {
            user: user.to_owned(),
            scope: Some(scope.to_owned()),
        };
        Ok((registered.handler)(caller, args).await)
    }

    fn get(&self, name: &str) -> Result<&Registered<A, R>, CallError> {
        self.functions
            .get(name)
            .ok_or_else(|| CallError::NoSuchFunction(shorten(name)))
    }
}
