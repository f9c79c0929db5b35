//! Checking against the model: one value against its attribute (type,
//! the kind's limits, validators), a new user as a whole (given twice,
//! unknown, missing), the defaults applied at creation, and the shape of a
//! user name.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::codec::millis;
use super::{MAX_USER_NAME, UserModel};
use crate::attribute::{Attribute, DefaultValue, Kind};
use crate::error::{Error, Result};
use crate::password::MAX_PASSWORD_LEN;
use crate::user::NewUser;
use crate::value::{Attrs, Secret, Value};

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
        // Stored, compared and looked up in NFC (`name::normalize`).
        let name = match crate::name::normalize(&name) {
            std::borrow::Cow::Borrowed(_) => name,
            std::borrow::Cow::Owned(nfc) => nfc,
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
    pub(super) fn fill_defaults(&self, attrs: &mut Attrs, check: bool) -> Result<()> {
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
}

/// `n` as the value of a number attribute: 1 to `i64::MAX`.
pub(crate) fn number_value(n: u64) -> Result<Value, String> {
    match i64::try_from(n) {
        Ok(i) if i >= 1 => Ok(Value::Int(i)),
        _ => Err(format!("expected 1 to {}, got {n}", i64::MAX)),
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::model::fixture::model;

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
}
