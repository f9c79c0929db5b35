//! The user model: the attributes every user has, checked once when built.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::attribute::{Attribute, DefaultValue, Index, Kind};
use crate::error::{Error, ModelError, Result, SchemaChange, shorten};
use crate::password::MAX_PASSWORD_LEN;
use crate::user::{NewUser, User};
use crate::value::{Attrs, Secret, Value};

/// Most attributes a model may have.
pub const MAX_ATTRIBUTES: usize = 64;
/// Longest attribute name, in bytes.
pub const MAX_ATTRIBUTE_NAME: usize = 64;
/// Longest user name, in bytes.
pub const MAX_USER_NAME: usize = 128;
/// Default limit on a text attribute's value, in bytes
/// (see [`UserModelBuilder::max_text_len`]).
pub const DEFAULT_MAX_TEXT_LEN: usize = 4096;
/// Largest value [`UserModelBuilder::max_text_len`] accepts, in bytes.
pub const MAX_TEXT_LEN_LIMIT: usize = 64 * 1024;

/// The version of the stored schema's format.
const SCHEMA_FORMAT: u32 = 1;

/// The attributes every user has: their kinds, defaults and validators.
///
/// Build one with [`UserModel::builder`]; it is checked once, then cheap to
/// clone and shared by every [`Users`](crate::Users) handle opened with it.
///
/// ```
/// use tiny_storage::{Attribute, UserModel, Validator};
/// let model = UserModel::builder()
///     .user_name("name")
///     .password("password")
///     .number("number")
///     .created("created")
///     .attribute(Attribute::text("nickname").default_with(|u| u.get("name").cloned()))
///     .attribute(Attribute::text("email").validate(Validator::email()))
///     .build()?;
/// assert_eq!(model.number_attr(), Some("number"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct UserModel {
    inner: Arc<ModelInner>,
}

#[derive(Debug)]
struct ModelInner {
    attrs: Vec<Attribute>,
    name: usize,
    password: Option<usize>,
    number: Option<usize>,
    created: Option<usize>,
    max_text_len: usize,
}

/// Describes a [`UserModel`] attribute by attribute. See [`UserModel::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct UserModelBuilder {
    attrs: Vec<Attribute>,
    max_text_len: usize,
}

impl Default for UserModelBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl UserModelBuilder {
    /// A model with no attributes yet. It needs a [`user_name`](Self::user_name).
    pub fn new() -> Self {
        UserModelBuilder {
            attrs: Vec::new(),
            max_text_len: DEFAULT_MAX_TEXT_LEN,
        }
    }

    /// Add an attribute.
    pub fn attribute(mut self, attribute: Attribute) -> Self {
        self.attrs.push(attribute);
        self
    }

    /// Add the unique user name, [`Attribute::user_name`].
    pub fn user_name(self, attr: &str) -> Self {
        self.attribute(Attribute::user_name(attr))
    }

    /// Add a required password, [`Attribute::password`].
    pub fn password(self, attr: &str) -> Self {
        self.attribute(Attribute::password(attr))
    }

    /// Add the auto-increment user number, [`Attribute::number`].
    pub fn number(self, attr: &str) -> Self {
        self.attribute(Attribute::number(attr))
    }

    /// Add the creation time, [`Attribute::created`].
    pub fn created(self, attr: &str) -> Self {
        self.attribute(Attribute::created(attr))
    }

    /// Longest text value in bytes (default [`DEFAULT_MAX_TEXT_LEN`], at most
    /// [`MAX_TEXT_LEN_LIMIT`]). Longer values are refused with rule `size`.
    pub fn max_text_len(mut self, bytes: usize) -> Self {
        self.max_text_len = bytes;
        self
    }

    /// Check the description and build the model.
    pub fn build(self) -> Result<UserModel, ModelError> {
        if self.attrs.len() > MAX_ATTRIBUTES {
            return Err(ModelError::TooManyAttributes {
                count: self.attrs.len(),
                limit: MAX_ATTRIBUTES,
            });
        }
        if !(1..=MAX_TEXT_LEN_LIMIT).contains(&self.max_text_len) {
            return Err(ModelError::InvalidSetting {
                what: "max_text_len",
                expected: format!("1 to {MAX_TEXT_LEN_LIMIT} bytes"),
                actual: self.max_text_len.to_string(),
            });
        }
        for (i, a) in self.attrs.iter().enumerate() {
            validate_attr_name(&a.name)?;
            if self.attrs[..i].iter().any(|b| b.name == a.name) {
                return Err(ModelError::DuplicateAttribute {
                    attr: a.name.clone(),
                });
            }
            check_settings(a)?;
        }
        let find = |kind: Kind, expected: &'static str, at_least_one: bool| {
            let found: Vec<usize> = (0..self.attrs.len())
                .filter(|&i| self.attrs[i].kind == kind)
                .collect();
            if found.len() > 1 || (at_least_one && found.is_empty()) {
                return Err(ModelError::BuiltInCount {
                    kind: kind.as_str(),
                    count: found.len(),
                    expected,
                });
            }
            Ok(found.first().copied())
        };
        let name = find(Kind::Name, "exactly 1", true)?.unwrap_or_default();
        let password = find(Kind::Password, "at most 1", false)?;
        let number = find(Kind::Number, "at most 1", false)?;
        let created = find(Kind::Created, "at most 1", false)?;
        let model = UserModel {
            inner: Arc::new(ModelInner {
                attrs: self.attrs,
                name,
                password,
                number,
                created,
                max_text_len: self.max_text_len,
            }),
        };
        // Fixed defaults must be valid values of their attribute.
        for a in model.attributes() {
            if let Some(DefaultValue::Value(v)) = &a.default
                && let Err(e) = model.check_value(a, v)
            {
                return Err(ModelError::InvalidDefault {
                    attr: a.name.clone(),
                    reason: e.to_string(),
                });
            }
        }
        Ok(model)
    }
}

fn validate_attr_name(name: &str) -> Result<(), ModelError> {
    let bad = |reason| {
        Err(ModelError::InvalidName {
            name: shorten(name),
            reason,
        })
    };
    if name.is_empty() {
        return bad("an attribute name cannot be empty");
    }
    if name.len() > MAX_ATTRIBUTE_NAME {
        return bad("an attribute name is at most 64 bytes");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return bad("an attribute name may only contain A-Z, a-z, 0-9, `_` and `-`");
    }
    Ok(())
}

fn check_settings(a: &Attribute) -> Result<(), ModelError> {
    let unsupported = |reason| {
        Err(ModelError::Unsupported {
            attr: a.name.clone(),
            kind: a.kind.as_str(),
            reason,
        })
    };
    match a.kind {
        Kind::Name if a.explicit_required == Some(false) => {
            return unsupported("the user name is always required");
        }
        Kind::Name | Kind::Password if a.default.is_some() => {
            return unsupported("it cannot have a default");
        }
        Kind::Number | Kind::Created if a.explicit_required == Some(true) => {
            return unsupported("it is assigned by the store and cannot be required");
        }
        Kind::Number | Kind::Created if a.default.is_some() => {
            return unsupported("it is assigned by the store and cannot have a default");
        }
        _ => {}
    }
    match (a.kind, a.index) {
        (_, Index::None) => {}
        (Kind::Name | Kind::Number, _) => {
            return unsupported("it is always indexed and unique");
        }
        (Kind::Password, _) => return unsupported("it cannot be indexed"),
        (Kind::Bool | Kind::Created, Index::Unique) => {
            return unsupported("it cannot be unique");
        }
        _ => {}
    }
    if a.kind == Kind::Number {
        let max = i64::MAX.unsigned_abs();
        if !(1..=max).contains(&a.first_number) {
            return Err(ModelError::InvalidSetting {
                what: "first number",
                expected: format!("1 to {max}"),
                actual: a.first_number.to_string(),
            });
        }
    } else if a.first_number != 1 {
        return unsupported("only a number attribute has a first number");
    }
    Ok(())
}

/// A [`NewUser`] checked against the model, with defaults applied.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) name: String,
    pub(crate) password: Option<Secret>,
    pub(crate) number: Option<u64>,
    /// Every attribute but the password and the number.
    pub(crate) attrs: BTreeMap<String, Value>,
}

impl UserModel {
    /// A builder with no attributes yet.
    pub fn builder() -> UserModelBuilder {
        UserModelBuilder::new()
    }

    /// Every attribute, in declaration order.
    pub fn attributes(&self) -> &[Attribute] {
        &self.inner.attrs
    }

    /// The attribute named `name`.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.inner.attrs.iter().find(|a| a.name == name)
    }

    /// The user-name attribute's name.
    pub fn name_attr(&self) -> &str {
        &self.inner.attrs[self.inner.name].name
    }

    /// The password attribute's name, if the model has one.
    pub fn password_attr(&self) -> Option<&str> {
        self.inner
            .password
            .map(|i| self.inner.attrs[i].name.as_str())
    }

    /// The number attribute's name, if the model has one.
    pub fn number_attr(&self) -> Option<&str> {
        self.inner.number.map(|i| self.inner.attrs[i].name.as_str())
    }

    /// The creation-time attribute's name, if the model has one.
    pub fn created_attr(&self) -> Option<&str> {
        self.inner
            .created
            .map(|i| self.inner.attrs[i].name.as_str())
    }

    /// The first number handed out automatically (1 without a number attribute).
    pub(crate) fn first_number(&self) -> u64 {
        self.inner
            .number
            .map_or(1, |i| self.inner.attrs[i].first_number)
    }

    /// Longest text value, in bytes.
    pub fn max_text_len(&self) -> usize {
        self.inner.max_text_len
    }

    fn known(&self, attr: &str) -> Result<&Attribute> {
        self.attribute(attr).ok_or_else(|| Error::UnknownAttribute {
            attr: shorten(attr),
        })
    }

    /// Look up `attr` for verification or update.
    pub(crate) fn lookup(&self, attr: &str) -> Result<&Attribute> {
        self.known(attr)
    }

    /// True when `name` has the shape of a user name (without validators).
    pub(crate) fn plausible_name(name: &str) -> bool {
        !name.is_empty() && name.len() <= MAX_USER_NAME && !name.chars().any(char::is_control)
    }

    /// Check one non-null value for `attr`: its type, the kind's own limits,
    /// then the attribute's validators.
    pub(crate) fn check_value(&self, attr: &Attribute, value: &Value) -> Result<()> {
        let invalid = |rule: &str, reason: String| Error::Invalid {
            attr: attr.name.clone(),
            rule: rule.to_owned(),
            reason,
        };
        let wrong_type = || Error::WrongType {
            attr: attr.name.clone(),
            expected: attr.kind.value_type(),
            actual: value.type_name(),
        };
        match (attr.kind, value) {
            (Kind::Name, Value::Text(s)) => {
                if s.is_empty() || s.len() > MAX_USER_NAME {
                    return Err(invalid(
                        "name",
                        format!("expected 1 to {MAX_USER_NAME} bytes, got {}", s.len()),
                    ));
                }
                if s.chars().any(char::is_control) {
                    return Err(invalid("name", "expected no control characters".to_owned()));
                }
            }
            (Kind::Password, Value::Secret(s)) => {
                if s.is_empty() || s.len() > MAX_PASSWORD_LEN {
                    return Err(invalid(
                        "length",
                        format!("expected 1 to {MAX_PASSWORD_LEN} bytes, got {}", s.len()),
                    ));
                }
            }
            (Kind::Password, Value::Text(_)) => {
                return Err(Error::NotSecret {
                    attr: attr.name.clone(),
                });
            }
            (Kind::Number, Value::Int(n)) => {
                if *n < 1 {
                    return Err(invalid("range", format!("expected at least 1, got {n}")));
                }
            }
            (Kind::Created, Value::Int(n)) => {
                if *n < 0 {
                    return Err(invalid("range", format!("expected at least 0, got {n}")));
                }
            }
            (Kind::Text, Value::Text(s)) => {
                let max = self.inner.max_text_len;
                if s.len() > max {
                    return Err(invalid(
                        "size",
                        format!("expected at most {max} bytes, got {}", s.len()),
                    ));
                }
            }
            (Kind::Int, Value::Int(_)) | (Kind::Bool, Value::Bool(_)) => {}
            _ => return Err(wrong_type()),
        }
        for v in &attr.validators {
            v.check(value).map_err(|reason| invalid(v.rule(), reason))?;
        }
        Ok(())
    }

    /// Check a new user against the model and apply defaults.
    pub(crate) fn prepare(&self, input: NewUser, now: SystemTime) -> Result<Prepared> {
        let NewUser {
            name,
            password,
            number,
            attrs,
        } = input;
        let mut given: BTreeMap<String, Value> = BTreeMap::new();
        let mut give = |attr: &str, value: Value| -> Result<()> {
            if given.insert(attr.to_owned(), value).is_some() {
                return Err(Error::GivenTwice {
                    attr: attr.to_owned(),
                });
            }
            Ok(())
        };
        give(self.name_attr(), Value::Text(name))?;
        if let Some(pw) = password {
            let attr = self
                .password_attr()
                .ok_or(Error::NoSuchKind { kind: "password" })?;
            give(attr, Value::Secret(pw))?;
        }
        if let Some(n) = number {
            let attr = self
                .number_attr()
                .ok_or(Error::NoSuchKind { kind: "number" })?;
            give(
                attr,
                number_value(n).map_err(|reason| Error::Invalid {
                    attr: attr.to_owned(),
                    rule: "range".to_owned(),
                    reason,
                })?,
            )?;
        }
        for (attr, value) in attrs {
            let attr = self.known(&attr)?.name.as_str();
            give(attr, value)?;
        }
        given.retain(|_, v| !v.is_null());
        for (attr, value) in &given {
            self.check_value(self.known(attr)?, value)?;
        }

        let mut password = None;
        if let Some(attr) = self.password_attr() {
            match given.remove(attr) {
                Some(Value::Secret(s)) => password = Some(s),
                Some(_) => {
                    return Err(Error::NotSecret {
                        attr: attr.to_owned(),
                    });
                }
                None => {}
            }
        }
        let mut attrs = Attrs(given);
        self.fill_defaults(&mut attrs, true)?;
        if let Some(i) = self.inner.created {
            let attr = &self.inner.attrs[i].name;
            if attrs.get(attr).is_none() {
                attrs.0.insert(attr.clone(), Value::Int(millis(now)));
            }
        }
        for a in self.attributes() {
            let present = match a.kind {
                Kind::Password => password.is_some(),
                _ => attrs.get(&a.name).is_some(),
            };
            if a.required && !present {
                return Err(Error::Missing {
                    attr: a.name.clone(),
                });
            }
        }
        let number = match self.number_attr() {
            Some(attr) => attrs
                .0
                .remove(attr)
                .and_then(|v| v.as_int())
                .map(i64::unsigned_abs),
            None => None,
        };
        let name = match attrs.0.get(self.name_attr()) {
            Some(Value::Text(n)) => n.clone(),
            _ => {
                return Err(Error::Missing {
                    attr: self.name_attr().to_owned(),
                });
            }
        };
        Ok(Prepared {
            name,
            password,
            number,
            attrs: attrs.0,
        })
    }

    /// Give every unset attribute with a default its value: fixed defaults
    /// first, then computed ones in declaration order. With `check`, computed
    /// values are checked like given ones (at creation); on read they are
    /// taken as computed.
    fn fill_defaults(&self, attrs: &mut Attrs, check: bool) -> Result<()> {
        for a in self.attributes() {
            if let Some(DefaultValue::Value(v)) = &a.default
                && attrs.get(&a.name).is_none()
            {
                attrs.0.insert(a.name.clone(), v.clone());
            }
        }
        for a in self.attributes() {
            if let Some(DefaultValue::Computed(f)) = &a.default {
                if attrs.get(&a.name).is_some() {
                    continue;
                }
                match f(attrs) {
                    Some(v) if !v.is_null() => {
                        if check {
                            self.check_value(a, &v)?;
                        }
                        attrs.0.insert(a.name.clone(), v);
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The stored document of a prepared user.
    pub(crate) fn encode(
        &self,
        p: &Prepared,
        hash: Option<String>,
        number: Option<u64>,
    ) -> Map<String, Json> {
        let mut doc: Map<String, Json> = p
            .attrs
            .iter()
            .filter_map(|(k, v)| value_to_json(v).map(|j| (k.clone(), j)))
            .collect();
        if let (Some(attr), Some(hash)) = (self.password_attr(), hash) {
            doc.insert(attr.to_owned(), Json::String(hash));
        }
        if let (Some(attr), Some(n)) = (self.number_attr(), number) {
            doc.insert(attr.to_owned(), Json::from(n));
        }
        doc
    }

    /// A stored document as a [`User`], with defaults for attributes it lacks.
    pub(crate) fn decode(&self, id: &str, doc: &Map<String, Json>) -> Result<User> {
        let corrupt = |reason: String| Error::Corrupt {
            user: shorten(id),
            reason,
        };
        let mut attrs = Attrs::default();
        for a in self.attributes() {
            let Some(j) = doc.get(&a.name).filter(|j| !j.is_null()) else {
                continue;
            };
            let v = match (a.kind, j) {
                (Kind::Password, _) => continue,
                (Kind::Name | Kind::Text, Json::String(s)) => Value::Text(s.clone()),
                (Kind::Number, Json::Number(n)) => match n.as_u64() {
                    Some(n) if number_value(n).is_ok() => Value::Int(n.cast_signed()),
                    _ => {
                        return Err(corrupt(format!(
                            "attribute {:?} holds {n}, not a user number",
                            a.name
                        )));
                    }
                },
                (Kind::Created | Kind::Int, Json::Number(n)) => match n.as_i64() {
                    Some(n) => Value::Int(n),
                    None => {
                        return Err(corrupt(format!(
                            "attribute {:?} holds {n}, not a 64-bit integer",
                            a.name
                        )));
                    }
                },
                (Kind::Bool, Json::Bool(b)) => Value::Bool(*b),
                (kind, j) => {
                    return Err(corrupt(format!(
                        "attribute {:?} holds {}, expected {}",
                        a.name,
                        json_type(j),
                        kind.value_type()
                    )));
                }
            };
            attrs.0.insert(a.name.clone(), v);
        }
        let name = attrs.text(self.name_attr()).map(str::to_owned);
        if name.as_deref() != Some(id) {
            return Err(corrupt(format!(
                "attribute {:?} does not hold the user's name",
                self.name_attr()
            )));
        }
        self.fill_defaults(&mut attrs, false)?;
        let number = self
            .number_attr()
            .and_then(|a| attrs.int(a))
            .map(i64::unsigned_abs);
        let created = self.created_attr().and_then(|a| attrs.int(a));
        Ok(User {
            name: id.to_owned(),
            number,
            created,
            attrs,
        })
    }

    /// The stored password hash in `doc`, if any.
    pub(crate) fn stored_hash<'d>(&self, doc: &'d Map<String, Json>) -> Option<&'d str> {
        doc.get(self.password_attr()?)?.as_str()
    }

    /// This model's schema, as stored with the data.
    pub(crate) fn schema(&self) -> StoredSchema {
        StoredSchema {
            format: SCHEMA_FORMAT,
            attributes: self
                .attributes()
                .iter()
                .map(|a| StoredAttr {
                    name: a.name.clone(),
                    kind: a.kind.as_str().to_owned(),
                    required: a.required,
                    default: a.default.is_some(),
                })
                .collect(),
        }
    }

    /// The differences between `stored` and this model that existing users
    /// cannot follow (empty: compatible).
    pub(crate) fn incompatibilities(&self, stored: &StoredSchema) -> Vec<SchemaChange> {
        if stored.format > SCHEMA_FORMAT {
            return vec![SchemaChange::Format {
                stored: stored.format,
                supported: SCHEMA_FORMAT,
            }];
        }
        let mut changes = Vec::new();
        for old in &stored.attributes {
            match self.attribute(&old.name) {
                None => changes.push(SchemaChange::Removed {
                    attr: old.name.clone(),
                }),
                Some(new) if new.kind.as_str() != old.kind => {
                    changes.push(SchemaChange::KindChanged {
                        attr: old.name.clone(),
                        stored: old.kind.clone(),
                        model: new.kind.as_str().to_owned(),
                    });
                }
                Some(new) if new.required && !old.required && new.default.is_none() => {
                    changes.push(SchemaChange::BecameRequired {
                        attr: old.name.clone(),
                    });
                }
                Some(_) => {}
            }
        }
        for new in self.attributes() {
            let added = !stored.attributes.iter().any(|a| a.name == new.name);
            if added && new.required && new.default.is_none() {
                changes.push(SchemaChange::AddedRequired {
                    attr: new.name.clone(),
                });
            }
        }
        changes
    }
}

/// The model's description as stored next to the users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredSchema {
    pub(crate) format: u32,
    pub(crate) attributes: Vec<StoredAttr>,
}

/// One attribute of a [`StoredSchema`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredAttr {
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) required: bool,
    pub(crate) default: bool,
}

/// `n` as the value of a number attribute: 1 to `i64::MAX`.
pub(crate) fn number_value(n: u64) -> Result<Value, String> {
    match i64::try_from(n) {
        Ok(i) if i >= 1 => Ok(Value::Int(i)),
        _ => Err(format!("expected 1 to {}, got {n}", i64::MAX)),
    }
}

/// `v` as stored JSON (`None` for null and secrets, which are never stored).
pub(crate) fn value_to_json(v: &Value) -> Option<Json> {
    match v {
        Value::Null | Value::Secret(_) => None,
        Value::Bool(b) => Some(Json::Bool(*b)),
        Value::Int(n) => Some(Json::from(*n)),
        Value::Text(s) => Some(Json::String(s.clone())),
    }
}

fn json_type(j: &Json) -> &'static str {
    match j {
        Json::Null => "null",
        Json::Bool(_) => "bool",
        Json::Number(_) => "a number",
        Json::String(_) => "text",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// Milliseconds since the Unix epoch (0 before it, saturating far after).
pub(crate) fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Validator;

    fn model() -> UserModel {
        UserModel::builder()
            .user_name("name")
            .password("password")
            .number("number")
            .created("created")
            .attribute(
                Attribute::text("nickname")
                    .default_with(|u| u.get("name").cloned())
                    .validate(Validator::length(1..=8)),
            )
            .attribute(Attribute::int("level").default(1))
            .attribute(Attribute::text("email").validate(Validator::email()))
            .build()
            .expect("valid model")
    }

    fn err(r: Result<impl std::fmt::Debug, ModelError>) -> String {
        r.expect_err("must be refused").to_string()
    }

    #[test]
    fn models_are_checked_when_built() {
        let check = |b: UserModelBuilder, expected: &str| assert_eq!(err(b.build()), expected);
        check(
            UserModel::builder().password("pw"),
            "model has 0 name attributes, expected exactly 1",
        );
        check(
            UserModel::builder().user_name("a").user_name("b"),
            "model has 2 name attributes, expected exactly 1",
        );
        check(
            UserModel::builder()
                .user_name("a")
                .attribute(Attribute::int("a")),
            "attribute \"a\" is declared twice",
        );
        check(
            UserModel::builder().user_name("a b"),
            "invalid attribute name \"a b\": an attribute name may only contain A-Z, a-z, 0-9, \
             `_` and `-`",
        );
        check(
            UserModel::builder().attribute(Attribute::user_name("n").optional()),
            "attribute \"n\" of kind name: the user name is always required",
        );
        check(
            UserModel::builder()
                .user_name("n")
                .attribute(Attribute::password("p").default("x")),
            "attribute \"p\" of kind password: it cannot have a default",
        );
        check(
            UserModel::builder()
                .user_name("n")
                .attribute(Attribute::int("level").default("high")),
            "default of attribute \"level\" is invalid: attribute \"level\" expects int, got text",
        );
        check(
            UserModel::builder().user_name("n").attribute(
                Attribute::text("nick")
                    .default("")
                    .validate(Validator::non_empty()),
            ),
            "default of attribute \"nick\" is invalid: attribute \"nick\" breaks rule non-empty: \
             expected at least one non-whitespace character",
        );
        check(
            UserModel::builder()
                .user_name("n")
                .attribute(Attribute::number("no").first_number(0)),
            "invalid first number: expected 1 to 9223372036854775807, got 0",
        );
        check(
            UserModel::builder().attribute(Attribute::user_name("n").unique()),
            "attribute \"n\" of kind name: it is always indexed and unique",
        );
        check(
            UserModel::builder()
                .user_name("n")
                .attribute(Attribute::password("p").indexed()),
            "attribute \"p\" of kind password: it cannot be indexed",
        );
        check(
            UserModel::builder()
                .user_name("n")
                .attribute(Attribute::bool("b").unique()),
            "attribute \"b\" of kind bool: it cannot be unique",
        );
        let many = (0..=MAX_ATTRIBUTES).fold(UserModel::builder().user_name("n"), |b, i| {
            b.attribute(Attribute::int(&format!("a{i}")))
        });
        check(many, "model has 66 attributes, exceeding the limit of 64");
    }

    #[test]
    fn defaults_fixed_and_computed() {
        let m = model();
        let p = m
            .prepare(NewUser::new("alice").password("pw"), UNIX_EPOCH)
            .expect("valid");
        assert_eq!(p.attrs.get("nickname"), Some(&Value::from("alice")));
        assert_eq!(p.attrs.get("level"), Some(&Value::Int(1)));
        assert_eq!(p.attrs.get("created"), Some(&Value::Int(0)));
        assert_eq!(p.attrs.get("email"), None);
        assert!(!p.attrs.contains_key("password"));
        assert_eq!(p.password, Some(Secret::new("pw")));

        // A given value wins over the default.
        let p = m
            .prepare(
                NewUser::new("bob")
                    .password("pw")
                    .set("nickname", "B")
                    .set("level", 3),
                UNIX_EPOCH,
            )
            .expect("valid");
        assert_eq!(p.attrs.get("nickname"), Some(&Value::from("B")));
        assert_eq!(p.attrs.get("level"), Some(&Value::Int(3)));

        // A computed default is validated: a 9-character name makes a too long nickname.
        let e = m
            .prepare(NewUser::new("alexandra").password("pw"), UNIX_EPOCH)
            .expect_err("nickname too long");
        assert_eq!(
            e.to_string(),
            "attribute \"nickname\" breaks rule length: expected 1 to 8 characters, got more than 8"
        );
    }

    #[test]
    fn inputs_are_checked() {
        let m = model();
        let e = |u: NewUser| m.prepare(u, UNIX_EPOCH).expect_err("refused").to_string();
        assert_eq!(
            e(NewUser::new("a")),
            "attribute \"password\" is required but has no value and no default"
        );
        assert_eq!(
            e(NewUser::new("a").set("password", "plain")),
            "attribute \"password\" holds a password: pass it as a Secret, not as text"
        );
        assert_eq!(
            e(NewUser::new("a")
                .password("x")
                .set("password", Secret::new("y"))),
            "attribute \"password\" is given twice"
        );
        assert_eq!(
            e(NewUser::new("a").password("x").set("shoe", 42)),
            "unknown attribute \"shoe\": the model has no attribute of that name"
        );
        assert_eq!(
            e(NewUser::new("a").password("x").set("level", "high")),
            "attribute \"level\" expects int, got text"
        );
        assert_eq!(
            e(NewUser::new("a").password("x").set("email", "nope")),
            "attribute \"email\" breaks rule email: expected an e-mail address like name@example.com"
        );
        assert_eq!(
            e(NewUser::new("").password("x")),
            "attribute \"name\" breaks rule name: expected 1 to 128 bytes, got 0"
        );
        assert_eq!(
            e(NewUser::new("a\nb").password("x")),
            "attribute \"name\" breaks rule name: expected no control characters"
        );
        assert_eq!(
            e(NewUser::new("a").password("")),
            "attribute \"password\" breaks rule length: expected 1 to 1024 bytes, got 0"
        );
        assert_eq!(
            e(NewUser::new("a").password("x".repeat(1025))),
            "attribute \"password\" breaks rule length: expected 1 to 1024 bytes, got 1025"
        );
        assert_eq!(
            e(NewUser::new("a").password("x").number(0)),
            "attribute \"number\" breaks rule range: expected 1 to 9223372036854775807, got 0"
        );
        assert_eq!(
            e(NewUser::new("a")
                .password("x")
                .set("email", "a".repeat(5000))),
            "attribute \"email\" breaks rule size: expected at most 4096 bytes, got 5000"
        );
    }

    #[test]
    fn decode_fills_defaults_and_rejects_wrong_types() {
        let m = model();
        let mut doc = Map::new();
        doc.insert("name".into(), Json::from("carol"));
        doc.insert("password".into(), Json::from("$argon2id$..."));
        doc.insert("number".into(), Json::from(7));
        let u = m.decode("carol", &doc).expect("readable");
        assert_eq!(u.name(), "carol");
        assert_eq!(u.number(), Some(7));
        assert_eq!(u.text("nickname"), Some("carol"));
        assert_eq!(u.int("level"), Some(1));
        assert_eq!(u.get("password"), None);
        assert_eq!(m.stored_hash(&doc), Some("$argon2id$..."));

        doc.insert("level".into(), Json::from("high"));
        let e = m.decode("carol", &doc).expect_err("corrupt");
        assert_eq!(
            e.to_string(),
            "corrupt record for user carol: attribute \"level\" holds text, expected int"
        );
        let e = m.decode("dave", &Map::new()).expect_err("corrupt");
        assert!(
            e.to_string().contains("does not hold the user's name"),
            "{e}"
        );
    }

    #[test]
    fn schema_compatibility() {
        let old = model().schema();
        assert!(model().incompatibilities(&old).is_empty());

        let added_optional = UserModel::builder()
            .user_name("name")
            .password("password")
            .number("number")
            .created("created")
            .attribute(Attribute::text("nickname"))
            .attribute(Attribute::int("level"))
            .attribute(Attribute::text("email"))
            .attribute(Attribute::bool("verified").required().default(false))
            .attribute(Attribute::text("bio"))
            .build()
            .expect("valid");
        assert!(added_optional.incompatibilities(&old).is_empty());

        let broken = UserModel::builder()
            .user_name("name")
            .password("password")
            .created("created")
            .attribute(Attribute::int("nickname"))
            .attribute(Attribute::int("level").required())
            .attribute(Attribute::text("email"))
            .attribute(Attribute::text("phone").required())
            .build()
            .expect("valid");
        let changes: Vec<String> = broken
            .incompatibilities(&old)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            changes,
            [
                "attribute \"number\" was removed",
                "attribute \"nickname\" changed from text to int",
                "attribute \"level\" became required without a default",
                "attribute \"phone\" was added as required without a default",
            ]
        );
        let future = StoredSchema {
            format: 99,
            attributes: vec![],
        };
        assert_eq!(model().incompatibilities(&future).len(), 1);
    }
}
