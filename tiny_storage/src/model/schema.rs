//! The model's schema: its description as stored next to the users (each
//! attribute's name, kind, whether it is required and has a default), and
//! the changes between a stored schema and the model that existing users
//! cannot follow.

use serde::{Deserialize, Serialize};

use super::UserModel;
use crate::error::SchemaChange;

/// The version of the stored schema's format.
const SCHEMA_FORMAT: u32 = 1;

impl UserModel {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Attribute;
    use crate::model::fixture::model;

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
