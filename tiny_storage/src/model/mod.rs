//! The user model: the attributes every user has, checked once when built.
//! This module holds [`UserModel`] itself, its limits and accessors; the
//! parts are [`builder`] (describing and checking a model), [`checks`]
//! (checking values and new users against it, applying defaults), [`codec`]
//! (users to and from their stored documents) and [`schema`] (the model's
//! description as stored with the data, and whether a stored one is
//! compatible).

use std::sync::Arc;

use crate::attribute::Attribute;
use crate::error::{Error, Result, shorten};

mod builder;
mod checks;
mod codec;
mod schema;

pub use builder::UserModelBuilder;
pub(crate) use checks::number_value;
pub(crate) use codec::value_to_json;
pub(crate) use schema::StoredSchema;

/// Most attributes a model may have.
pub const MAX_ATTRIBUTES: usize = 64;
/// Longest attribute name, in bytes.
pub const MAX_ATTRIBUTE_NAME: usize = 64;
/// Longest user name, in bytes.
pub const MAX_USER_NAME: usize = 128;
/// The stored document's field holding [`name::fold`](crate::name::fold) of
/// the user name, under a unique index: names are unique without regard to
/// case. (Attribute names cannot contain `~`, so no attribute collides.)
pub(crate) const FOLDED_NAME: &str = "~name";
/// Default limit on a text attribute's value, in bytes
/// (see [`UserModelBuilder::max_text_len`]).
pub const DEFAULT_MAX_TEXT_LEN: usize = 4096;
/// Largest value [`UserModelBuilder::max_text_len`] accepts, in bytes.
pub const MAX_TEXT_LEN_LIMIT: usize = 64 * 1024;

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
}

/// The model the tests of the parts share.
#[cfg(test)]
mod fixture {
    use super::*;
    use crate::Validator;

    pub(super) fn model() -> UserModel {
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
}
