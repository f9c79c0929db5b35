//! What goes in ([`NewUser`]) and what comes out ([`User`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

use crate::value::{Attrs, Secret, Value};

/// A user to create with [`Users::create`](crate::Users::create).
///
/// The password is held as a [`Secret`], so `Debug` shows it as `REDACTED`:
///
/// ```
/// use tiny_storage::NewUser;
/// let alice = NewUser::new("alice").password("hunter2").set("email", "a@example.com");
/// let shown = format!("{alice:?}");
/// assert!(shown.contains("REDACTED"));
/// assert!(!shown.contains("hunter2"));
/// ```
#[derive(Debug, Clone)]
#[must_use = "a new user does nothing until passed to Users::create"]
pub struct NewUser {
    pub(crate) name: String,
    pub(crate) password: Option<Secret>,
    pub(crate) number: Option<u64>,
    pub(crate) attrs: Vec<(String, Value)>,
}

impl NewUser {
    /// A user named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        NewUser {
            name: name.into(),
            password: None,
            number: None,
            attrs: Vec::new(),
        }
    }

    /// Set the password (the model's password attribute).
    pub fn password(mut self, password: impl Into<Secret>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Ask for this user number instead of the next free one; creation fails
    /// with [`Error::NumberTaken`](crate::Error::NumberTaken) if another user
    /// has it.
    pub fn number(mut self, number: u64) -> Self {
        self.number = Some(number);
        self
    }

    /// Set the attribute `attr`. A password given this way must be a
    /// [`Secret`] (plain text is refused, so it cannot leak through `Debug`).
    pub fn set(mut self, attr: &str, value: impl Into<Value>) -> Self {
        self.attrs.push((attr.to_owned(), value.into()));
        self
    }
}

/// A stored user: every attribute but the password, with defaults applied.
///
/// Serializes as a JSON object of its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub(crate) name: String,
    pub(crate) number: Option<u64>,
    pub(crate) created: Option<i64>,
    pub(crate) attrs: Attrs,
}

impl User {
    /// The user name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The user number, when the model has a number attribute.
    pub fn number(&self) -> Option<u64> {
        self.number
    }

    /// The creation time, when the model has a creation-time attribute.
    pub fn created_at(&self) -> Option<SystemTime> {
        let ms = u64::try_from(self.created?).ok()?;
        UNIX_EPOCH.checked_add(Duration::from_millis(ms))
    }

    /// The value of `attr`, if set.
    pub fn get(&self, attr: &str) -> Option<&Value> {
        self.attrs.get(attr)
    }

    /// The text of `attr`, if it is set to text.
    pub fn text(&self, attr: &str) -> Option<&str> {
        self.attrs.text(attr)
    }

    /// The integer of `attr`, if it is set to an integer.
    pub fn int(&self, attr: &str) -> Option<i64> {
        self.attrs.int(attr)
    }

    /// The boolean of `attr`, if it is set to a boolean.
    pub fn bool(&self, attr: &str) -> Option<bool> {
        self.attrs.bool(attr)
    }

    /// Every attribute (including the name, number and creation time).
    pub fn attrs(&self) -> &Attrs {
        &self.attrs
    }

    /// The attributes, by value.
    pub fn into_attrs(self) -> Attrs {
        self.attrs
    }
}

impl Serialize for User {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.attrs.serialize(s)
    }
}
