//! Users to and from their stored documents: a prepared user as JSON (the
//! password as its hash, never in clear), a stored document back as a
//! [`User`] (with defaults for what it lacks, refusing corrupt values), and
//! the stored forms of values and times.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value as Json};

use super::checks::Prepared;
use super::{FOLDED_NAME, UserModel, number_value};
use crate::attribute::Kind;
use crate::error::{Error, Result, shorten};
use crate::user::User;
use crate::value::{Attrs, Value};

impl UserModel {
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
        doc.insert(
            FOLDED_NAME.to_owned(),
            Json::String(crate::name::fold(&p.name)),
        );
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
pub(super) fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixture::model;

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
}
