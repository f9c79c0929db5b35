//! One attribute of a user model: its kind, whether it is required, its
//! default and its validators.

use std::fmt;
use std::sync::Arc;

use crate::validator::Validator;
use crate::value::{Attrs, Value};

/// What an attribute holds, and what the store does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// The unique user name: text, required, the key users are found by.
    /// Exactly one per model.
    Name,
    /// The password: taken as a [`Secret`](crate::Secret), stored as an
    /// argon2id PHC hash, verified and never returned. At most one per model.
    Password,
    /// A unique positive number assigned in increasing order at creation
    /// unless the caller chooses a free one; legacy clients log in with it.
    /// At most one per model.
    Number,
    /// The creation time in milliseconds since the Unix epoch, set by the
    /// store. At most one per model.
    Created,
    /// Free text.
    Text,
    /// A signed 64-bit integer.
    Int,
    /// A boolean.
    Bool,
}

impl Kind {
    /// The kind's name in messages and in the stored schema.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Name => "name",
            Kind::Password => "password",
            Kind::Number => "number",
            Kind::Created => "created",
            Kind::Text => "text",
            Kind::Int => "int",
            Kind::Bool => "bool",
        }
    }

    /// The value type the kind holds, as [`Value::type_name`] spells it.
    pub(crate) fn value_type(self) -> &'static str {
        match self {
            Kind::Name | Kind::Text => "text",
            Kind::Password => "secret",
            Kind::Number | Kind::Created | Kind::Int => "int",
            Kind::Bool => "bool",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type Compute = dyn Fn(&Attrs) -> Option<Value> + Send + Sync;

/// How an attribute gets a value when none is given.
#[derive(Clone)]
pub(crate) enum DefaultValue {
    /// A fixed value.
    Value(Value),
    /// Computed from the other attributes.
    Computed(Arc<Compute>),
}

impl fmt::Debug for DefaultValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DefaultValue::Value(v) => f.debug_tuple("Value").field(v).finish(),
            DefaultValue::Computed(_) => f.write_str("Computed"),
        }
    }
}

/// One attribute of a [`UserModel`](crate::UserModel).
///
/// Start from a constructor naming the kind, then chain settings:
///
/// ```
/// use tiny_storage::{Attribute, Validator, Value};
/// let nickname = Attribute::text("nickname")
///     .default_with(|user| user.get("name").cloned())
///     .validate(Validator::length(1..=32));
/// let age = Attribute::int("age").validate(Validator::range(0..=150));
/// let email = Attribute::text("email").required().validate(Validator::email());
/// let verified = Attribute::bool("verified").default(false);
/// # let _ = (nickname, age, email, verified);
/// ```
///
/// Text, integer and boolean attributes are optional unless
/// [`required`](Self::required); the user name is always required; the
/// password is required unless [`optional`](Self::optional); numbers and
/// creation times are assigned by the store.
#[derive(Debug, Clone)]
#[must_use = "an attribute does nothing until added to a UserModel"]
pub struct Attribute {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) required: bool,
    pub(crate) explicit_required: Option<bool>,
    pub(crate) default: Option<DefaultValue>,
    pub(crate) validators: Vec<Validator>,
    pub(crate) first_number: u64,
    pub(crate) index: Index,
}

/// Whether users can be found by an attribute's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Index {
    None,
    Plain,
    Unique,
}

impl Attribute {
    fn new(name: &str, kind: Kind, required: bool) -> Self {
        Attribute {
            name: name.to_owned(),
            kind,
            required,
            explicit_required: None,
            default: None,
            validators: Vec::new(),
            first_number: 1,
            index: Index::None,
        }
    }

    /// The unique user name (kind [`Kind::Name`]). It is 1 to 128 bytes of
    /// text without control characters; add validators to narrow it.
    pub fn user_name(name: &str) -> Self {
        Self::new(name, Kind::Name, true)
    }

    /// The password (kind [`Kind::Password`]), 1 to
    /// [`MAX_PASSWORD_LEN`](crate::MAX_PASSWORD_LEN) bytes; add validators
    /// (for example [`Validator::length`]) for a stricter policy.
    pub fn password(name: &str) -> Self {
        Self::new(name, Kind::Password, true)
    }

    /// The auto-increment user number (kind [`Kind::Number`]).
    pub fn number(name: &str) -> Self {
        Self::new(name, Kind::Number, false)
    }

    /// The creation time (kind [`Kind::Created`]).
    pub fn created(name: &str) -> Self {
        Self::new(name, Kind::Created, false)
    }

    /// A text attribute.
    pub fn text(name: &str) -> Self {
        Self::new(name, Kind::Text, false)
    }

    /// An integer attribute.
    pub fn int(name: &str) -> Self {
        Self::new(name, Kind::Int, false)
    }

    /// A boolean attribute.
    pub fn bool(name: &str) -> Self {
        Self::new(name, Kind::Bool, false)
    }

    /// Require a value (given or from the default) at creation.
    pub fn required(mut self) -> Self {
        self.required = true;
        self.explicit_required = Some(true);
        self
    }

    /// Allow users without a value.
    pub fn optional(mut self) -> Self {
        self.required = false;
        self.explicit_required = Some(false);
        self
    }

    /// Use `value` when none is given at creation (and for users stored
    /// before the attribute existed).
    pub fn default(mut self, value: impl Into<Value>) -> Self {
        self.default = Some(DefaultValue::Value(value.into()));
        self
    }

    /// Compute the value from the user's other attributes when none is given
    /// at creation (and for users stored before the attribute existed).
    ///
    /// `compute` sees every attribute given or defaulted so far (the
    /// password never); computed defaults run in declaration order, after
    /// fixed defaults. Returning `None` leaves the attribute unset.
    ///
    /// For users stored before the attribute existed, the default is computed
    /// on every read and not stored: keep `compute` a pure function of the
    /// other attributes (no clock, no random ids), or the value will change
    /// from read to read.
    pub fn default_with<F>(mut self, compute: F) -> Self
    where
        F: Fn(&Attrs) -> Option<Value> + Send + Sync + 'static,
    {
        self.default = Some(DefaultValue::Computed(Arc::new(compute)));
        self
    }

    /// Add a rule every value must follow.
    pub fn validate(mut self, validator: Validator) -> Self {
        self.validators.push(validator);
        self
    }

    /// Keep an index on the attribute, so that
    /// [`Users::find_by`](crate::Users::find_by) can find users by its value.
    /// For text, integer, boolean and creation-time attributes.
    pub fn indexed(mut self) -> Self {
        self.index = Index::Plain;
        self
    }

    /// Refuse two users with the same value
    /// ([`Error::ValueTaken`](crate::Error::ValueTaken)), atomically like user
    /// names; users without a value do not count. Implies
    /// [`indexed`](Self::indexed). For text and integer attributes, for
    /// example an e-mail address.
    pub fn unique(mut self) -> Self {
        self.index = Index::Unique;
        self
    }

    /// True when users can be found by this attribute's value (always for the
    /// name and the number).
    pub fn is_indexed(&self) -> bool {
        matches!(self.kind, Kind::Name | Kind::Number) || self.index != Index::None
    }

    /// True when no two users may share a value (always for the name and the
    /// number).
    pub fn is_unique(&self) -> bool {
        matches!(self.kind, Kind::Name | Kind::Number) || self.index == Index::Unique
    }

    /// For a number attribute: the first number handed out (default 1).
    pub fn first_number(mut self, first: u64) -> Self {
        self.first_number = first;
        self
    }

    /// The attribute's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The attribute's kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// True when users must have a value.
    pub fn is_required(&self) -> bool {
        self.required
    }

    /// True when the attribute has a default (fixed or computed).
    pub fn has_default(&self) -> bool {
        self.default.is_some()
    }

    /// The attribute's validators, in the order they run.
    pub fn validators(&self) -> &[Validator] {
        &self.validators
    }
}
