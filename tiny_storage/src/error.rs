//! Errors: [`ModelError`] when describing a model, [`Error`] when using it.

use std::fmt;

/// A convenience alias for results of [`Users`](crate::Users) operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A [`UserModel`](crate::UserModel), [`Attribute`](crate::Attribute),
/// [`Validator`](crate::Validator) or [`PasswordParams`](crate::PasswordParams)
/// that cannot be built as described.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// An attribute name is empty, too long or has characters outside `[A-Za-z0-9_-]`.
    #[error("invalid attribute name {name:?}: {reason}")]
    InvalidName {
        /// The name as given (shortened when very long).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two attributes share a name.
    #[error("attribute {attr:?} is declared twice")]
    DuplicateAttribute {
        /// The repeated name.
        attr: String,
    },
    /// The model has no user-name attribute, or more than one attribute of a
    /// kind that may appear once (name, password, number, created).
    #[error("model has {count} {kind} attributes, expected {expected}")]
    BuiltInCount {
        /// The attribute kind.
        kind: &'static str,
        /// How many the model has.
        count: usize,
        /// What is allowed.
        expected: &'static str,
    },
    /// More attributes than [`MAX_ATTRIBUTES`](crate::MAX_ATTRIBUTES).
    #[error("model has {count} attributes, exceeding the limit of {limit}")]
    TooManyAttributes {
        /// How many the model has.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A setting that makes no sense for the attribute's kind, for example a
    /// default for the password.
    #[error("attribute {attr:?} of kind {kind}: {reason}")]
    Unsupported {
        /// The attribute.
        attr: String,
        /// Its kind.
        kind: &'static str,
        /// What is not supported.
        reason: &'static str,
    },
    /// A default value of the wrong type or one that breaks the attribute's
    /// own validators.
    #[error("default of attribute {attr:?} is invalid: {reason}")]
    InvalidDefault {
        /// The attribute.
        attr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A [`Validator::pattern`](crate::Validator::pattern) that is not a valid
    /// regular expression (or compiles too large).
    #[error("invalid pattern {pattern:?}: {reason}")]
    InvalidPattern {
        /// The pattern as given (shortened when very long).
        pattern: String,
        /// The regex engine's complaint.
        reason: String,
    },
    /// A limit or range argument that cannot work, such as a length range
    /// whose minimum exceeds its maximum.
    #[error("invalid {what}: expected {expected}, got {actual}")]
    InvalidSetting {
        /// The setting.
        what: &'static str,
        /// What is accepted.
        expected: String,
        /// What was given.
        actual: String,
    },
}

/// Everything that can go wrong when creating, verifying, updating, deleting
/// or reading users.
///
/// Messages name the attribute and the rule, never an attribute's value: a
/// value may be a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An attribute value breaks one of the attribute's rules.
    #[error("attribute {attr:?} breaks rule {rule}: {reason}")]
    Invalid {
        /// The attribute.
        attr: String,
        /// The rule's name, such as `length`, `pattern`, `email` or the name
        /// given to a custom validator.
        rule: String,
        /// Expected versus actual, without the value itself.
        reason: String,
    },
    /// A value of the wrong type, such as text for an integer attribute.
    #[error("attribute {attr:?} expects {expected}, got {actual}")]
    WrongType {
        /// The attribute.
        attr: String,
        /// The type the attribute holds.
        expected: &'static str,
        /// The type of the value given.
        actual: &'static str,
    },
    /// A password was given as plain [`Value::Text`](crate::Value::Text) where a
    /// [`Secret`](crate::Secret) is required, so that it can never appear in
    /// `Debug` output of the input.
    #[error("attribute {attr:?} holds a password: pass it as a Secret, not as text")]
    NotSecret {
        /// The password attribute.
        attr: String,
    },
    /// A required attribute has neither a value nor a default.
    #[error("attribute {attr:?} is required but has no value and no default")]
    Missing {
        /// The attribute.
        attr: String,
    },
    /// The model has no attribute of this name.
    #[error("unknown attribute {attr:?}: the model has no attribute of that name")]
    UnknownAttribute {
        /// The name given (shortened when very long).
        attr: String,
    },
    /// The operation needs an attribute kind the model does not have, for
    /// example [`Users::get_by_number`](crate::Users::get_by_number) without a
    /// number attribute.
    #[error("the model has no {kind} attribute")]
    NoSuchKind {
        /// The missing kind.
        kind: &'static str,
    },
    /// The same attribute was given twice to [`NewUser`](crate::NewUser), for
    /// example through `password()` and through `set()` under its name.
    #[error("attribute {attr:?} is given twice")]
    GivenTwice {
        /// The attribute.
        attr: String,
    },
    /// The attribute is set by the store and cannot be changed (the user name
    /// and the creation time).
    #[error("attribute {attr:?} cannot be changed after creation")]
    ReadOnly {
        /// The attribute.
        attr: String,
    },
    /// Another user already has this name.
    #[error("user name {name:?} is already taken")]
    NameTaken {
        /// The name.
        name: String,
    },
    /// Another user already has this number.
    #[error("user number {number} is already taken")]
    NumberTaken {
        /// The number.
        number: u64,
    },
    /// Another user already has this value in a
    /// [`unique`](crate::Attribute::unique) attribute.
    #[error("attribute {attr:?}: another user already has this value")]
    ValueTaken {
        /// The unique attribute.
        attr: String,
    },
    /// [`Users::find_by`](crate::Users::find_by) on an attribute without an
    /// index (see [`Attribute::indexed`](crate::Attribute::indexed)).
    #[error(
        "attribute {attr:?} is not indexed: declare it with Attribute::indexed to find users by it"
    )]
    NotIndexed {
        /// The attribute.
        attr: String,
    },
    /// No user has this name (or number).
    #[error("no user {user}")]
    NotFound {
        /// The user asked for.
        user: UserRef,
    },
    /// Verification failed: the user does not exist, has no password, or the
    /// value is wrong. Deliberately the same error, in the same time, for all.
    #[error("unknown user or wrong credentials")]
    BadCredentials,
    /// Automatic numbering kept landing on numbers that callers had chosen.
    #[error("no free user number found after {attempts} attempts")]
    NumbersExhausted {
        /// How many numbers were tried.
        attempts: u32,
    },
    /// `list` was asked for more users than one page may hold.
    #[error("list limit of {limit} users exceeds the {max}-user page limit")]
    PageTooLarge {
        /// The limit asked for.
        limit: usize,
        /// The largest page.
        max: usize,
    },
    /// The model differs from the schema stored with the data in a way that
    /// existing users cannot follow.
    #[error(
        "user model does not match the schema stored in tree {tree}: {}",
        join(changes)
    )]
    SchemaMismatch {
        /// The tree holding the users.
        tree: String,
        /// Every incompatible difference.
        changes: Vec<SchemaChange>,
    },
    /// Stored data that the model cannot read.
    #[error("corrupt record for user {user}: {reason}")]
    Corrupt {
        /// The user (or `schema` for the stored schema).
        user: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Hashing or verifying failed for a reason other than a wrong password
    /// (the blocking task was cancelled or panicked, or argon2 refused its input).
    #[error("password hashing failed: {reason}")]
    Hashing {
        /// What went wrong.
        reason: String,
    },
    /// The storage engine failed.
    #[error(transparent)]
    Storage(#[from] nopi::Error),
}

impl Error {
    /// True when the storage engine could not be reached and retrying later
    /// may succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Storage(e) if e.is_unavailable())
    }
}

/// Which user an operation was about: by name or by number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UserRef {
    /// A user name.
    Name(String),
    /// A user number.
    Number(u64),
}

impl fmt::Display for UserRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserRef::Name(n) => write!(f, "named {n:?}"),
            UserRef::Number(n) => write!(f, "with number {n}"),
        }
    }
}

impl From<&str> for UserRef {
    fn from(name: &str) -> Self {
        UserRef::Name(name.to_owned())
    }
}

impl From<String> for UserRef {
    fn from(name: String) -> Self {
        UserRef::Name(name)
    }
}

impl From<&String> for UserRef {
    fn from(name: &String) -> Self {
        UserRef::Name(name.clone())
    }
}

impl From<u64> for UserRef {
    fn from(number: u64) -> Self {
        UserRef::Number(number)
    }
}

/// One incompatible difference between a model and the schema stored with the
/// data. See [`Error::SchemaMismatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchemaChange {
    /// A stored attribute is missing from the model.
    Removed {
        /// The attribute.
        attr: String,
    },
    /// An attribute changed kind.
    KindChanged {
        /// The attribute.
        attr: String,
        /// The stored kind.
        stored: String,
        /// The model's kind.
        model: String,
    },
    /// A new attribute is required and has no default, so existing users lack it.
    AddedRequired {
        /// The attribute.
        attr: String,
    },
    /// An optional attribute became required without a default.
    BecameRequired {
        /// The attribute.
        attr: String,
    },
    /// The stored schema is of a newer format than this crate understands.
    Format {
        /// The stored format version.
        stored: u32,
        /// The newest version this crate reads.
        supported: u32,
    },
}

impl fmt::Display for SchemaChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchemaChange::Removed { attr } => write!(f, "attribute {attr:?} was removed"),
            SchemaChange::KindChanged {
                attr,
                stored,
                model,
            } => write!(f, "attribute {attr:?} changed from {stored} to {model}"),
            SchemaChange::AddedRequired { attr } => write!(
                f,
                "attribute {attr:?} was added as required without a default"
            ),
            SchemaChange::BecameRequired { attr } => {
                write!(f, "attribute {attr:?} became required without a default")
            }
            SchemaChange::Format { stored, supported } => write!(
                f,
                "stored schema format {stored} is newer than the supported {supported}"
            ),
        }
    }
}

fn join(changes: &[SchemaChange]) -> String {
    changes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Shorten a user-supplied string for an error message.
pub(crate) fn shorten(s: &str) -> String {
    const SHOWN: usize = 64;
    if s.chars().count() <= SHOWN {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(SHOWN).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_input_and_the_rule() {
        let e = Error::Invalid {
            attr: "nickname".into(),
            rule: "length".into(),
            reason: "expected 1 to 32 characters, got 40".into(),
        };
        assert_eq!(
            e.to_string(),
            "attribute \"nickname\" breaks rule length: expected 1 to 32 characters, got 40"
        );
        let e = Error::SchemaMismatch {
            tree: "users".into(),
            changes: vec![
                SchemaChange::Removed { attr: "age".into() },
                SchemaChange::KindChanged {
                    attr: "nick".into(),
                    stored: "text".into(),
                    model: "int".into(),
                },
            ],
        };
        assert_eq!(
            e.to_string(),
            "user model does not match the schema stored in tree users: attribute \"age\" was \
             removed; attribute \"nick\" changed from text to int"
        );
        assert_eq!(
            Error::NotFound {
                user: UserRef::Number(7)
            }
            .to_string(),
            "no user with number 7"
        );
    }

    #[test]
    fn long_inputs_are_shortened() {
        let long = "x".repeat(500);
        assert_eq!(shorten(&long).chars().count(), 65);
        assert_eq!(shorten("short"), "short");
    }
}
