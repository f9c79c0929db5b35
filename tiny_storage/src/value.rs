//! Attribute values, secrets, and the attribute maps users are made of.

use std::collections::BTreeMap;
use std::fmt;

use serde::ser::{Error as _, Serialize, SerializeMap, Serializer};
use zeroize::Zeroize;

/// A password or other secret: printed as `REDACTED`, wiped from memory when
/// dropped, and refused by `serde` serialization.
///
/// ```
/// use tiny_storage::Secret;
/// let pw = Secret::new("hunter2");
/// assert_eq!(format!("{pw:?}"), "Secret(REDACTED)");
/// assert_eq!(pw.expose(), "hunter2");
/// ```
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    /// Wrap `secret`.
    pub fn new(secret: impl Into<String>) -> Self {
        Secret(secret.into())
    }

    /// The secret itself. Do not log it.
    #[must_use = "exposing a secret has no effect unless it is used"]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length of the secret in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(REDACTED)")
    }
}

/// Compares in time that depends only on the lengths.
impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl Eq for Secret {}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret::new(s)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

/// The value of one attribute.
///
/// Conversions exist from `&str`, `String`, integers, `bool`, [`Secret`] and
/// `Option` of those (`None` is [`Value::Null`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Value {
    /// No value: clears an optional attribute in an update.
    #[default]
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer (also user numbers and creation times).
    Int(i64),
    /// UTF-8 text.
    Text(String),
    /// A password, never stored or returned as such.
    Secret(Secret),
}

impl Value {
    /// The type name used in error messages: `null`, `bool`, `int`, `text`, `secret`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Text(_) => "text",
            Value::Secret(_) => "secret",
        }
    }

    /// The text, if this is [`Value::Text`].
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is [`Value::Int`].
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The boolean, if this is [`Value::Bool`].
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// True for [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Text or secret as a string, for validators that check either.
    pub(crate) fn text_like(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            Value::Secret(s) => Some(s.expose()),
            _ => None,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}

impl From<&String> for Value {
    fn from(s: &String) -> Self {
        Value::Text(s.clone())
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<Secret> for Value {
    fn from(s: Secret) -> Self {
        Value::Secret(s)
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(n: $t) -> Self {
                Value::Int(i64::from(n))
            }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32);

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// Serializes as the JSON value it holds; a [`Value::Secret`] refuses to serialize.
impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(n) => s.serialize_i64(*n),
            Value::Text(t) => s.serialize_str(t),
            Value::Secret(_) => Err(S::Error::custom("a secret cannot be serialized")),
        }
    }
}

/// A set of attribute values by name, in name order.
///
/// Computed defaults ([`Attribute::default_with`](crate::Attribute::default_with))
/// read the other attributes through it; a [`User`](crate::User) exposes its
/// attributes as one. It never holds the password.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attrs(pub(crate) BTreeMap<String, Value>);

impl Attrs {
    /// The value of `attr`, if set (never [`Value::Null`]).
    pub fn get(&self, attr: &str) -> Option<&Value> {
        self.0.get(attr).filter(|v| !v.is_null())
    }

    /// The text of `attr`, if it is set to text.
    pub fn text(&self, attr: &str) -> Option<&str> {
        self.get(attr).and_then(Value::as_text)
    }

    /// The integer of `attr`, if it is set to an integer.
    pub fn int(&self, attr: &str) -> Option<i64> {
        self.get(attr).and_then(Value::as_int)
    }

    /// The boolean of `attr`, if it is set to a boolean.
    pub fn bool(&self, attr: &str) -> Option<bool> {
        self.get(attr).and_then(Value::as_bool)
    }

    /// Every set attribute and its value, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.as_str(), v))
    }

    /// Number of set attributes.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// True when no attribute is set.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Serializes as a JSON object of the set attributes.
impl Serialize for Attrs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_everywhere_debug_reaches() {
        let v = Value::from(Secret::new("hunter2"));
        assert_eq!(format!("{v:?}"), "Secret(Secret(REDACTED))");
        assert!(!format!("{v:#?}").contains("hunter2"));
        assert!(serde_json::to_string(&v).is_err());
    }

    #[test]
    fn secret_equality() {
        assert_eq!(Secret::new("a"), Secret::new("a"));
        assert_ne!(Secret::new("a"), Secret::new("b"));
        assert_ne!(Secret::new("a"), Secret::new("ab"));
    }

    #[test]
    fn conversions() {
        assert_eq!(Value::from("x"), Value::Text("x".into()));
        assert_eq!(Value::from(7u32), Value::Int(7));
        assert_eq!(Value::from(None::<i64>), Value::Null);
        assert_eq!(Value::from(Some(true)), Value::Bool(true));
    }

    #[test]
    fn attrs_hide_nulls_and_serialize_as_an_object() {
        let mut a = Attrs::default();
        a.0.insert("name".into(), "alice".into());
        a.0.insert("gone".into(), Value::Null);
        a.0.insert("age".into(), 30.into());
        assert_eq!(a.len(), 2);
        assert_eq!(a.get("gone"), None);
        assert_eq!(a.text("name"), Some("alice"));
        assert_eq!(a.int("age"), Some(30));
        assert_eq!(
            serde_json::to_string(&a).ok().as_deref(),
            Some(r#"{"age":30,"name":"alice"}"#)
        );
    }
}
