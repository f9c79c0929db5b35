//! [`UserModelBuilder`]: a model described attribute by attribute, and the
//! checks of that description when it is built (names, counts of the
//! built-in kinds, settings each kind supports, valid fixed defaults).

use std::sync::Arc;

use super::{
    DEFAULT_MAX_TEXT_LEN, MAX_ATTRIBUTE_NAME, MAX_ATTRIBUTES, MAX_TEXT_LEN_LIMIT, ModelInner,
    UserModel,
};
use crate::attribute::{Attribute, DefaultValue, Index, Kind};
use crate::error::{ModelError, Result, shorten};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Validator;

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
}
