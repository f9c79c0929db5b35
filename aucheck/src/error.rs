//! Errors: [`BuildError`] when building an [`AuthManager`](crate::AuthManager),
//! [`Error`] when changing or reading its data, [`NotAuthorized`] when a check
//! refuses, [`CallError`] when a [`Registry`](crate::Registry) call fails.

use std::fmt;

/// A convenience alias for results of [`AuthManager`](crate::AuthManager) operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Longest input echoed back in an error message, in characters.
const SHOWN: usize = 160;

/// `s` shortened for an error message.
pub(crate) fn shorten(s: &str) -> String {
    if s.chars().count() <= SHOWN {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(SHOWN).collect();
        out.push_str("...");
        out
    }
}

/// What kind of name an [`Error::InvalidName`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NameKind {
    /// A permission name.
    Permission,
    /// A permission group name.
    Group,
    /// A scoped role name.
    Role,
    /// A scope (resource) name.
    Scope,
    /// The actor of a change.
    Actor,
    /// A user name.
    User,
    /// A guarded function's name in a [`Registry`](crate::Registry).
    Function,
}

impl NameKind {
    /// The kind as a lower-case word, as used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            NameKind::Permission => "permission",
            NameKind::Group => "group",
            NameKind::Role => "role",
            NameKind::Scope => "scope",
            NameKind::Actor => "actor",
            NameKind::User => "user",
            NameKind::Function => "function",
        }
    }
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An [`AuthManager`](crate::AuthManager) that cannot be built as described.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A permission, role or group name breaks the naming rules.
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        /// Which kind of name.
        kind: NameKind,
        /// The name as given (shortened when very long).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A permission or role is declared twice.
    #[error("{kind} {name:?} is declared twice")]
    Duplicate {
        /// Which kind of name.
        kind: NameKind,
        /// The repeated name.
        name: String,
    },
    /// More permissions or roles than the crate's limit.
    #[error("{count} {kind}s declared, exceeding the limit of {limit}")]
    TooMany {
        /// Permissions or roles.
        kind: NameKind,
        /// How many were declared.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A role or initial group lists a permission that was not declared.
    #[error("{kind} {name:?} lists undeclared permission {permission:?}")]
    UndeclaredPermission {
        /// A role or a group.
        kind: NameKind,
        /// The role or group.
        name: String,
        /// The permission it lists.
        permission: String,
    },
    /// A setting that cannot work, such as a zero staleness bound.
    #[error("invalid {what}: expected {expected}, got {actual}")]
    InvalidSetting {
        /// The setting.
        what: &'static str,
        /// What is accepted.
        expected: &'static str,
        /// What was given.
        actual: String,
    },
    /// Both a complete user model and extra attributes were given.
    #[error(
        "user model given together with {attributes} separate attributes: expected one or the other"
    )]
    ModelAndAttributes {
        /// How many separate attributes were given.
        attributes: usize,
    },
    /// The user model cannot be built.
    #[error("user model: {0}")]
    Model(#[from] tiny_storage::ModelError),
    /// `build` was called outside a tokio runtime; the manager needs one for
    /// its background refresh task.
    #[error("building an auth manager needs a tokio runtime, none is running")]
    NoRuntime,
    /// Opening the users, or creating an initial group, failed.
    #[error(transparent)]
    Setup(#[from] Error),
}

impl From<nopi::Error> for BuildError {
    fn from(e: nopi::Error) -> Self {
        BuildError::Setup(Error::Store(e))
    }
}

impl From<tiny_storage::Error> for BuildError {
    fn from(e: tiny_storage::Error) -> Self {
        BuildError::Setup(Error::Users(e))
    }
}

/// Everything that can go wrong when changing or reading permissions, groups,
/// roles, users or the audit log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A name breaks the naming rules.
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        /// Which kind of name.
        kind: NameKind,
        /// The name as given (shortened when very long).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A permission that the manager was not built with.
    #[error("unknown permission {0:?}: not declared when the auth manager was built")]
    UnknownPermission(String),
    /// A role that the manager was not built with.
    #[error("unknown role {0:?}: not declared when the auth manager was built")]
    UnknownRole(String),
    /// No such permission group.
    #[error("no permission group named {0:?}")]
    UnknownGroup(String),
    /// No such user (neither in aucheck nor in the user store).
    #[error("no user named {0:?}")]
    UnknownUser(String),
    /// A permission group with this name already exists.
    #[error("permission group {0:?} already exists")]
    GroupExists(String),
    /// The operation is not allowed on a personal group (a user's own copy,
    /// named by the user's uuid): it lives and dies with its user.
    #[error("group {group:?} is the personal group of user {user:?}: {reason}")]
    PersonalGroup {
        /// The personal group.
        group: String,
        /// Its user.
        user: String,
        /// Why the operation is refused.
        reason: &'static str,
    },
    /// The group is being deleted (a deletion was started and has not
    /// finished); call [`Admin::delete_group`](crate::Admin::delete_group)
    /// again to finish it.
    #[error("permission group {0:?} is being deleted")]
    GroupDeleting(String),
    /// A group cannot move its users to itself when deleted.
    #[error("cannot delete group {0:?} by moving its users to the same group")]
    MoveToSelf(String),
    /// More items than a limit allows.
    #[error("{what}: {count} exceeds the limit of {limit}")]
    TooMany {
        /// What was counted.
        what: &'static str,
        /// How many there would be.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// Other managers changed the data so often that this change gave up.
    #[error("gave up after {attempts} attempts: the data kept changing concurrently")]
    Contended {
        /// How many attempts were made.
        attempts: u32,
    },
    /// Stored data that aucheck cannot read.
    #[error("corrupt aucheck record {key}: {reason}")]
    Corrupt {
        /// The key, printed with non-printable bytes escaped.
        key: nopi::DisplayKey,
        /// What is wrong with it.
        reason: String,
    },
    /// The store's limits are too small for aucheck's batches.
    #[error("store batch limit of {limit} operations is below aucheck's minimum of {minimum}")]
    BatchLimitTooSmall {
        /// The store's limit.
        limit: usize,
        /// What aucheck needs.
        minimum: usize,
    },
    /// The change was applied, but writing its audit entry failed.
    #[error("change applied, but its audit entry could not be written: {0}")]
    AuditWrite(#[source] nopi::Error),
    /// The user store failed (or refused the user).
    #[error(transparent)]
    Users(#[from] tiny_storage::Error),
    /// The storage engine failed.
    #[error(transparent)]
    Store(#[from] nopi::Error),
}

impl Error {
    /// True when the storage engine could not be reached and retrying later
    /// may succeed.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Store(e) | Error::AuditWrite(e) => e.is_unavailable(),
            Error::Users(e) => e.is_unavailable(),
            _ => false,
        }
    }

    pub(crate) fn invalid(kind: NameKind, name: &str, reason: &'static str) -> Self {
        Error::InvalidName {
            kind,
            name: shorten(name),
            reason,
        }
    }

    pub(crate) fn corrupt(key: &[u8], reason: impl fmt::Display) -> Self {
        Error::Corrupt {
            key: nopi::DisplayKey(key.to_vec()),
            reason: reason.to_string(),
        }
    }
}

/// Why a check refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DenyReason {
    /// The user has no aucheck record (never created through aucheck, or
    /// deleted), or the name is not a valid user name.
    UnknownUser,
    /// The permission was not declared when the manager was built.
    UnknownPermission,
    /// The user exists and does not hold the permission (on that scope).
    NotGranted,
    /// The store could not be read, so the answer could not be trusted: checks
    /// fail closed.
    Unavailable(String),
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DenyReason::UnknownUser => f.write_str("unknown user"),
            DenyReason::UnknownPermission => f.write_str("unknown permission"),
            DenyReason::NotGranted => f.write_str("not granted"),
            DenyReason::Unavailable(why) => write!(f, "permissions unavailable ({why})"),
        }
    }
}

/// A check refused: the user may not do this. Deny by default: unknown users
/// and unknown permissions are refused too, and so is every check while the
/// store cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("user {user:?} may not {permission:?}{}: {reason}", ScopeSuffix(scope))]
#[non_exhaustive]
pub struct NotAuthorized {
    /// The user asked about (shortened when very long).
    pub user: String,
    /// The permission asked for (shortened when very long).
    pub permission: String,
    /// The scope asked about, for [`check_in`](crate::AuthManager::check_in).
    pub scope: Option<String>,
    /// Why the check refused.
    pub reason: DenyReason,
}

impl NotAuthorized {
    pub(crate) fn new(
        user: &str,
        permission: &str,
        scope: Option<&str>,
        reason: DenyReason,
    ) -> Self {
        NotAuthorized {
            user: shorten(user),
            permission: shorten(permission),
            scope: scope.map(shorten),
            reason,
        }
    }
}

struct ScopeSuffix<'a>(&'a Option<String>);

impl fmt::Display for ScopeSuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(scope) => write!(f, " on scope {scope:?}"),
            None => Ok(()),
        }
    }
}

/// A [`Registry`](crate::Registry) call that did not run the function.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No function is registered under this name.
    #[error("no guarded function named {0:?}")]
    NoSuchFunction(String),
    /// The caller does not hold the function's permission.
    #[error(transparent)]
    NotAuthorized(#[from] NotAuthorized),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_input() {
        let e = NotAuthorized::new("bob", "group.kick", Some("rust"), DenyReason::NotGranted);
        assert_eq!(
            e.to_string(),
            r#"user "bob" may not "group.kick" on scope "rust": not granted"#
        );
        let e = NotAuthorized::new("bob", "x", None, DenyReason::UnknownPermission);
        assert_eq!(
            e.to_string(),
            r#"user "bob" may not "x": unknown permission"#
        );
        let e = Error::TooMany {
            what: "scoped roles of user \"bob\"",
            count: 1001,
            limit: 1000,
        };
        assert_eq!(
            e.to_string(),
            "scoped roles of user \"bob\": 1001 exceeds the limit of 1000"
        );
    }

    #[test]
    fn long_inputs_are_shortened() {
        let long = "x".repeat(10_000);
        let e = NotAuthorized::new(&long, &long, Some(&long), DenyReason::UnknownUser);
        assert!(e.to_string().len() < 1000);
        assert!(shorten(&long).ends_with("..."));
        assert_eq!(shorten("short"), "short");
    }
}
