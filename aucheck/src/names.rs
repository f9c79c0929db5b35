//! Naming rules and limits.

use crate::error::{Error, NameKind};

/// Most permissions one manager declares.
pub const MAX_PERMISSIONS: usize = 4096;
/// Longest permission name, in bytes.
pub const MAX_PERMISSION_NAME: usize = 128;
/// Most scoped roles one manager declares.
pub const MAX_ROLES: usize = 64;
/// Longest group or role name, in bytes.
pub const MAX_GROUP_NAME: usize = 64;
/// Longest scope (resource) name, in bytes.
pub const MAX_SCOPE: usize = 256;
/// Longest actor name, in bytes.
pub const MAX_ACTOR: usize = 128;
/// Longest user name, in bytes (tiny_storage's limit).
pub const MAX_USER_NAME: usize = tiny_storage::MAX_USER_NAME;
/// Most scopes one user holds a role on.
pub const MAX_ROLES_PER_USER: usize = 1000;
/// Most entries one page of a listing (audit log, members, groups) returns.
pub const MAX_PAGE: usize = 1000;
/// Longest guarded function name in a [`Registry`](crate::Registry), in bytes.
pub const MAX_FUNCTION_NAME: usize = 128;
/// Most functions one [`Registry`](crate::Registry) holds.
pub const MAX_FUNCTIONS: usize = 10_000;

/// The group wildcard: a group listing `*` holds every declared permission,
/// including permissions declared later.
pub const ALL_PERMISSIONS: &str = "*";

fn check(
    kind: NameKind,
    name: &str,
    max: usize,
    allowed: impl Fn(u8) -> bool,
    chars: &'static str,
) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::invalid(kind, name, "a name cannot be empty"));
    }
    if name.len() > max {
        return Err(Error::invalid(kind, name, too_long(kind)));
    }
    if !name.bytes().all(allowed) {
        return Err(Error::invalid(kind, name, chars));
    }
    Ok(())
}

fn too_long(kind: NameKind) -> &'static str {
    match kind {
        NameKind::Permission => "a permission name is at most 128 bytes",
        NameKind::Group | NameKind::Role => "a group or role name is at most 64 bytes",
        NameKind::Scope => "a scope is at most 256 bytes",
        NameKind::Actor => "an actor name is at most 128 bytes",
        NameKind::User => "a user name is at most 128 bytes",
        NameKind::Function => "a function name is at most 128 bytes",
    }
}

/// `[A-Za-z0-9_.:-]`, 1 to 128 bytes.
pub(crate) fn permission(name: &str) -> Result<(), Error> {
    check(
        NameKind::Permission,
        name,
        MAX_PERMISSION_NAME,
        |b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b),
        "a permission name may only contain A-Z, a-z, 0-9 and `_.:-`",
    )
}

/// `[A-Za-z0-9_.-]`, 1 to 64 bytes, and not a UUID (those name personal groups).
pub(crate) fn group(name: &str) -> Result<(), Error> {
    check(
        NameKind::Group,
        name,
        MAX_GROUP_NAME,
        |b| b.is_ascii_alphanumeric() || b"_.-".contains(&b),
        "a group name may only contain A-Z, a-z, 0-9 and `_.-`",
    )?;
    if uuid::Uuid::try_parse(name).is_ok() {
        return Err(Error::invalid(
            NameKind::Group,
            name,
            "a uuid names a personal group and cannot name a shared one",
        ));
    }
    Ok(())
}

/// `[A-Za-z0-9_.-]`, 1 to 64 bytes.
pub(crate) fn role(name: &str) -> Result<(), Error> {
    check(
        NameKind::Role,
        name,
        MAX_GROUP_NAME,
        |b| b.is_ascii_alphanumeric() || b"_.-".contains(&b),
        "a role name may only contain A-Z, a-z, 0-9 and `_.-`",
    )
}

fn printable(kind: NameKind, name: &str, max: usize) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::invalid(kind, name, "a name cannot be empty"));
    }
    if name.len() > max {
        return Err(Error::invalid(kind, name, too_long(kind)));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid(
            kind,
            name,
            "a name cannot contain control characters",
        ));
    }
    Ok(())
}

/// Any text without control characters, 1 to 256 bytes.
pub(crate) fn scope(name: &str) -> Result<(), Error> {
    printable(NameKind::Scope, name, MAX_SCOPE)
}

/// Any text without control characters, 1 to 128 bytes.
pub(crate) fn actor(name: &str) -> Result<(), Error> {
    printable(NameKind::Actor, name, MAX_ACTOR)
}

/// tiny_storage's rule: any text without control characters, 1 to 128 bytes.
pub(crate) fn user(name: &str) -> Result<(), Error> {
    printable(NameKind::User, name, MAX_USER_NAME)
}

/// Any text without control characters, 1 to 128 bytes.
pub(crate) fn function(name: &str) -> Result<(), Error> {
    printable(NameKind::Function, name, MAX_FUNCTION_NAME)
}

/// True when `name` is a valid user name (for checks, which refuse instead of erring).
pub(crate) fn is_user(name: &str) -> bool {
    user(name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_names() {
        for ok in ["group.kick", "a", "user:admin", "x-y_z.1"] {
            assert!(permission(ok).is_ok(), "{ok}");
        }
        for bad in ["", "group kick", "*", "é", &"p".repeat(129)] {
            assert!(permission(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn group_names_exclude_uuids() {
        assert!(group("members").is_ok());
        assert!(group("0a").is_ok());
        let id = uuid::Uuid::new_v4();
        assert!(group(&id.hyphenated().to_string()).is_err());
        assert!(group(&id.simple().to_string()).is_err());
        assert!(group("a/b").is_err());
        assert!(group(&"g".repeat(65)).is_err());
    }

    #[test]
    fn scopes_users_and_actors() {
        assert!(scope("group/rust").is_ok());
        assert!(scope("chat group ü").is_ok());
        assert!(scope("a\0b").is_err());
        assert!(scope("").is_err());
        assert!(scope(&"s".repeat(257)).is_err());
        assert!(user("alice").is_ok());
        assert!(user("al\nice").is_err());
        assert!(actor("system").is_ok());
        assert!(actor("").is_err());
    }

    #[test]
    fn messages_say_what_is_wrong() {
        let e = group("a b").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid group name \"a b\": a group name may only contain A-Z, a-z, 0-9 and `_.-`"
        );
    }
}
