//! Who may do what, declared once and denied by default: permission groups,
//! per-user overrides by copy on write, scoped roles (a permission on a
//! resource, such as `group.kick` on the chat group `rust`), checks answered
//! from memory, guards around async functions, and an audit log of every
//! change and every denial — over one [`nopi`] store (memory, sled,
//! PostgreSQL), with users stored through [`tiny_storage`].
//!
//! # Example
//!
//! ```
//! use aucheck::{AuthManager, DeleteRule};
//! use tiny_storage::{NewUser, PasswordParams};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = nopi::open("memory:").await?; // or "sled:./data", "postgres://..."
//! let auth = AuthManager::builder(&store)
//!     .permissions(["group.create", "group.post", "group.kick", "group.delete", "user.ban"])
//!     // Roles hold permissions on one scope each (a chat group here).
//!     .role("owner", ["group.post", "group.kick", "group.delete"])
//!     .role("admin", ["group.post", "group.kick"])
//!     .role("member", ["group.post"])
//!     // Shared groups hold permissions everywhere; created unless present.
//!     .group("users", ["group.create"])
//!     .group("admins", ["*"])
//! #   .password_params(PasswordParams::insecure_for_tests())
//!     .build()
//!     .await?;
//!
//! // Changes name their actor, for the audit log.
//! let root = auth.by("root");
//! root.create_user(NewUser::new("alice").password("correct horse"), Some("users")).await?;
//! root.create_user(NewUser::new("bob").password("battery staple"), Some("users")).await?;
//! root.create_user(NewUser::new("carol").password("staple horse"), Some("admins")).await?;
//!
//! // Global permissions come from the group; deny by default.
//! auth.check("alice", "group.create").await?;
//! assert!(auth.check("alice", "user.ban").await.is_err());
//! assert!(auth.check("alice", "no.such.permission").await.is_err());
//! assert!(auth.check("mallory", "group.create").await.is_err());
//!
//! // Scoped roles: alice owns the chat group `rust`, bob is a member.
//! root.set_role("alice", "group/rust", "owner").await?;
//! root.set_role("bob", "group/rust", "member").await?;
//! auth.check_in("alice", "group.kick", "group/rust").await?;
//! assert!(auth.check_in("bob", "group.kick", "group/rust").await.is_err());
//! assert!(auth.check_in("alice", "group.kick", "group/go").await.is_err());
//! // A permission held globally holds on every scope: carol is a global admin.
//! auth.check_in("carol", "group.kick", "group/rust").await?;
//!
//! // Grant bob one extra permission: he gets a personal copy of his group,
//! // and alice, still in `users`, is not affected.
//! root.grant("bob", "user.ban").await?;
//! auth.check("bob", "user.ban").await?;
//! assert!(auth.check("alice", "user.ban").await.is_err());
//! assert!(auth.member("bob").await?.expect("bob exists").personal);
//!
//! // Deleting a group moves its users by a stated rule.
//! root.create_group("readers", ["group.post"]).await?;
//! root.assign("alice", "readers").await?;
//! assert_eq!(root.delete_group("readers", DeleteRule::move_to("users")).await?, 1);
//! auth.check("alice", "group.create").await?;
//!
//! // Everything is in the audit log, newest first (denials included).
//! let log = auth.audit().newest(50).await?;
//! assert_eq!(log[0].subject, "readers");
//! assert!(log.iter().any(|e| matches!(e.action, aucheck::AuditAction::Denied { .. })));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }
//! ```
//!
//! # Concepts
//!
//! - **Permissions** are declared names ([`AuthManagerBuilder::permissions`]);
//!   checking any other name is refused.
//! - **Groups** hold permissions; every user is in exactly one. A *shared*
//!   group has a name ([`Admin::create_group`]); a *personal* group is named
//!   by its user's uuid and holds that user's own permissions: a user created
//!   without a group gets an empty one, and [`Admin::grant`] /
//!   [`Admin::revoke`] copy the user's shared group into one first (copy on
//!   write), so the other members are not affected.
//!   [`Admin::delete_group`] moves the users by a [`DeleteRule`]. `*` in a
//!   group's list means every permission, present and future.
//! - **Roles** are declared with the permissions they grant
//!   ([`AuthManagerBuilder::role`]) and given to a user on a *scope*, any
//!   resource name such as `group/rust` ([`Admin::set_role`]).
//!   [`AuthManager::check_in`] passes when the user holds the permission
//!   globally or through their role on that scope.
//! - **Checks** ([`AuthManager::check`], [`AuthManager::check_in`]) answer from
//!   an in-memory cache, invalidated by every change; see [`AuthManager`] for
//!   the bound on how late another manager's change is seen (default 1 s).
//! - **Guards** ([`AuthManager::guard`], [`Registry`]) run an async function
//!   only for callers holding its permission.
//! - **Audit**: every change and denial, with time, actor and subject
//!   ([`AuthManager::audit`]).
//!
//! # Storage layout
//!
//! Users live in tiny_storage's tree (default `users`). aucheck uses two
//! trees, `aucheck` and `aucheck.audit` (the prefix is configurable with
//! [`AuthManagerBuilder::tree_prefix`]):
//!
//! ```text
//! tree "aucheck"
//!   v                           -> version: u64, 8 bytes big-endian, bumped by every change
//!   c/ <version: u64 BE>        -> JSON {users, groups, all}: what the change touched (newest 1024 kept)
//!   g/ <group name>             -> JSON {permissions, all?, deleting?}: a shared group
//!   p/ <uuid, hyphenated>       -> JSON {permissions, all?, personal: user}: a personal group
//!   m/ <group name> \0 <user>   -> (empty): member index of shared groups
//!   u/ <user name>              -> JSON {id: uuid, group}: the user's record
//!   s/ <user name> \0 <scope>   -> role name (UTF-8)
//!   r/ <scope> \0 <user name>   -> role name (UTF-8), the same indexed by scope
//! tree "aucheck.audit"
//!   <UUID v7, 16 bytes>         -> JSON {at_ms, actor, subject, action}
//! ```
//!
//! Every change is one atomic batch that expects `v` to be unchanged since the
//! change read its data, and bumps it; changes from many managers on one
//! store are serialized that way. Changes that touch an unbounded number of
//! users (deleting a group, removing a scope) run in atomic pages.
//!
//! # Limits
//!
//! Permission names: `[A-Za-z0-9_.:-]`, at most [`MAX_PERMISSION_NAME`]
//! bytes, at most [`MAX_PERMISSIONS`] of them. Group and role names:
//! `[A-Za-z0-9_.-]`, at most [`MAX_GROUP_NAME`] bytes (group names may not
//! be uuids), at most [`MAX_ROLES`] roles. Scopes: at most [`MAX_SCOPE`]
//! bytes without control characters; a user holds roles on at most
//! [`MAX_ROLES_PER_USER`] scopes. Listings return at most [`MAX_PAGE`]
//! entries. The cache holds at most
//! [`cache_capacity`](AuthManagerBuilder::cache_capacity) users, and at most
//! [`MAX_PENDING_DENIALS`] distinct denials wait in memory for the audit
//! log (repeats are counted, not queued).
//!
//! # Crate features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `sled` | no | nopi's `sled:<path>` backend (the same as enabling `nopi/sled`) |
//! | `postgres` | no | nopi's `postgres://` backend (the same as enabling `nopi/postgres`) |

mod admin;
mod audit;
mod cache;
mod catalog;
mod error;
mod guard;
mod info;
mod layout;
mod manager;
mod names;

pub use admin::{Admin, DeleteRule};
pub use audit::{AuditAction, AuditEntry, AuditLog, MAX_PENDING_DENIALS};
pub use error::{BuildError, CallError, DenyReason, Error, NameKind, NotAuthorized, Result};
pub use guard::{Caller, Guard, Registry};
pub use info::{GroupInfo, Member};
pub use manager::{
    AuthManager, AuthManagerBuilder, DEFAULT_CACHE_CAPACITY, DEFAULT_MAX_STALENESS,
    DEFAULT_TREE_PREFIX,
};
pub use names::{
    ALL_PERMISSIONS, MAX_ACTOR, MAX_FUNCTION_NAME, MAX_FUNCTIONS, MAX_GROUP_NAME, MAX_PAGE,
    MAX_PERMISSION_NAME, MAX_PERMISSIONS, MAX_ROLES, MAX_ROLES_PER_USER, MAX_SCOPE, MAX_USER_NAME,
};
