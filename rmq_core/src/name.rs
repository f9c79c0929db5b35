//! Validated user and room ids.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::NameError;

/// The longest user or room id, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// The longest broker namespace, in bytes.
pub const MAX_NAMESPACE_LEN: usize = 32;

/// Whether `c` may be in an id: an ASCII letter, digit, `_`, `-` or `.`, or
/// (ids only, not namespaces) any non-ASCII character that is neither a
/// control character nor white space. AMQP's wildcards and separators are
/// all ASCII, so no non-ASCII character can change what a name matches;
/// which non-ASCII characters make good names is the application's rule.
fn allowed(c: char, non_ascii: bool) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(c, '_' | '-' | '.')
        || (non_ascii && !c.is_ascii() && !c.is_control() && !c.is_whitespace())
}

fn validate(kind: &'static str, name: &str, limit: usize) -> Result<(), NameError> {
    check(kind, name, limit, true)
}

fn check(kind: &'static str, name: &str, limit: usize, non_ascii: bool) -> Result<(), NameError> {
    let short = || name.chars().take(80).collect::<String>();
    if name.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if name.len() > limit {
        return Err(NameError::TooLong {
            kind,
            name: short(),
            len: name.len(),
            limit,
        });
    }
    if let Some(ch) = name.chars().find(|&c| !allowed(c, non_ascii)) {
        return Err(NameError::BadChar {
            kind,
            name: short(),
            ch,
        });
    }
    Ok(())
}

#[cfg(feature = "amqp")]
pub(crate) fn validate_namespace(ns: &str) -> Result<(), NameError> {
    check("namespace", ns, MAX_NAMESPACE_LEN, false)
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validate `id`: 1 to 64 bytes of UTF-8, of `[A-Za-z0-9_.-]` and
            /// non-ASCII characters other than controls and white space.
            pub fn new(id: impl Into<String>) -> Result<Self, NameError> {
                let id = id.into();
                validate($kind, &id, MAX_ID_LEN)?;
                Ok(Self(id))
            }

            /// The id as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(id: String) -> Result<Self, NameError> {
                Self::new(id)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = NameError;
            fn try_from(id: &str) -> Result<Self, NameError> {
                Self::new(id)
            }
        }

        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(id: &str) -> Result<Self, NameError> {
                Self::new(id)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

id_type!(
    /// A user id: the name of a user's inbox.
    ///
    /// 1 to 64 bytes of UTF-8: ASCII letters, digits, `_`, `-` and `.`, and
    /// non-ASCII characters other than controls and white space, so that it
    /// can be part of a queue name and a routing key without injecting AMQP
    /// wildcards (`*`, `#`) or separators. Which non-ASCII characters make
    /// good names (no invisible ones, no look-alikes) is the application's
    /// rule, such as `tiny_storage::name`.
    ///
    /// ```
    /// use rmq_core::UserId;
    /// assert!(UserId::new("alice").is_ok());
    /// assert!(UserId::new("张三").is_ok());
    /// assert!(UserId::new("user.*").is_err());
    /// assert!(UserId::new("a b").is_err());
    /// ```
    UserId,
    "user id"
);

id_type!(
    /// A room (group) id: the name of a room's fan-out and history.
    ///
    /// Same rules as [`UserId`]: 1 to 64 bytes of `[A-Za-z0-9_.-]` and
    /// non-ASCII characters other than controls and white space.
    ///
    /// ```
    /// use rmq_core::RoomId;
    /// assert!(RoomId::new("lobby").is_ok());
    /// assert!(RoomId::new("#all").is_err());
    /// ```
    RoomId,
    "room id"
);

id_type!(
    /// A device id: one of a user's clients (a phone, a browser profile), with
    /// its own cursors in each conversation.
    ///
    /// Same rules as [`UserId`]: 1 to 64 bytes of `[A-Za-z0-9_.-]` and
    /// non-ASCII characters other than controls and white space.
    ///
    /// ```
    /// use rmq_core::DeviceId;
    /// assert!(DeviceId::new("phone-1").is_ok());
    /// assert!(DeviceId::new("a/b").is_err());
    /// ```
    DeviceId,
    "device id"
);

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, ok: bool) {
        assert_eq!(UserId::new(name).is_ok(), ok, "user {name:?}");
        assert_eq!(RoomId::new(name).is_ok(), ok, "room {name:?}");
        assert_eq!(DeviceId::new(name).is_ok(), ok, "device {name:?}");
    }

    #[test]
    fn ids_are_validated() {
        check("alice", true);
        check("Bob_42", true);
        check("a.b-c", true);
        check(&"x".repeat(64), true);
        check("", false);
        check(&"x".repeat(65), false);
        check("user.*", false);
        check("#", false);
        check("a b", false);
        check("é", true);
        check("张三", true);
        check(&"界".repeat(21), true);
        check(&"界".repeat(22), false); // 66 bytes
        check("a\u{3000}b", false); // an ideographic space
        check("a\u{85}", false); // a C1 control
        check("a\u{2028}", false); // a line separator
        check("a/b", false);
        check("a\0", false);
    }

    #[test]
    fn errors_name_the_input() {
        let err = UserId::new("bad*name").unwrap_err();
        assert_eq!(
            err.to_string(),
            "user id \"bad*name\" contains '*'; expected letters, digits, '_', '-' and '.' \
             (ASCII only in a namespace)"
        );
        let err = RoomId::new("x".repeat(70)).unwrap_err();
        assert!(
            err.to_string()
                .contains("70 bytes long, more than the 64-byte limit")
        );
    }

    #[test]
    fn serde_validates() {
        let ok: UserId = serde_json::from_str("\"alice\"").unwrap();
        assert_eq!(ok.as_str(), "alice");
        assert!(serde_json::from_str::<UserId>("\"a#\"").is_err());
        assert_eq!(serde_json::to_string(&ok).unwrap(), "\"alice\"");
    }
}
