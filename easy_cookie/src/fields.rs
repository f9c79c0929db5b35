//! Field selection: serialise only the chosen top-level fields of a struct
//! or map, straight into the output, without an intermediate value tree.

use serde::ser::{
    self, Error as _, Impossible, Serialize, SerializeMap, SerializeStruct, Serializer,
};

/// The most fields a selection may name.
pub(crate) const MAX_FIELDS: usize = 64;

/// The top-level fields a cookie carries.
#[derive(Debug, Clone)]
pub(crate) struct Fields {
    names: Box<[Box<str>]>,
}

impl Fields {
    pub(crate) fn new(names: Vec<String>) -> Self {
        Self {
            names: names.into_iter().map(String::into_boxed_str).collect(),
        }
    }

    fn contains(&self, name: &str) -> bool {
        self.names.iter().any(|n| &**n == name)
    }

    /// Serialises the selected fields of `value` with `ser`.
    pub(crate) fn serialize<T, S>(&self, value: &T, ser: S) -> Result<S::Ok, S::Error>
    where
        T: Serialize + ?Sized,
        S: Serializer,
    {
        value.serialize(Filter {
            inner: ser,
            fields: self,
        })
    }
}

/// A serializer that passes a struct or map through with only the selected
/// fields, and refuses everything else.
struct Filter<'f, S> {
    inner: S,
    fields: &'f Fields,
}

fn refuse<E: ser::Error>(what: &str) -> E {
    E::custom(format_args!(
        "info must serialise as a struct or map to select fields, got {what}"
    ))
}

macro_rules! refuse {
    ($($method:ident($($arg:ty),*) => $what:literal;)*) => {
        $(
            fn $method(self, $(_: $arg),*) -> Result<Self::Ok, Self::Error> {
                Err(refuse($what))
            }
        )*
    };
}

impl<'f, S: Serializer> Serializer for Filter<'f, S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Impossible<S::Ok, S::Error>;
    type SerializeTuple = Impossible<S::Ok, S::Error>;
    type SerializeTupleStruct = Impossible<S::Ok, S::Error>;
    type SerializeTupleVariant = Impossible<S::Ok, S::Error>;
    type SerializeMap = FilterMap<'f, S::SerializeMap>;
    type SerializeStruct = FilterStruct<'f, S::SerializeMap>;
    type SerializeStructVariant = Impossible<S::Ok, S::Error>;

    refuse! {
        serialize_bool(bool) => "a bool";
        serialize_i8(i8) => "an integer";
        serialize_i16(i16) => "an integer";
        serialize_i32(i32) => "an integer";
        serialize_i64(i64) => "an integer";
        serialize_i128(i128) => "an integer";
        serialize_u8(u8) => "an integer";
        serialize_u16(u16) => "an integer";
        serialize_u32(u32) => "an integer";
        serialize_u64(u64) => "an integer";
        serialize_u128(u128) => "an integer";
        serialize_f32(f32) => "a float";
        serialize_f64(f64) => "a float";
        serialize_char(char) => "a char";
        serialize_str(&str) => "a string";
        serialize_bytes(&[u8]) => "bytes";
        serialize_none() => "none";
        serialize_unit() => "unit";
        serialize_unit_struct(&'static str) => "a unit struct";
        serialize_unit_variant(&'static str, u32, &'static str) => "an enum variant";
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        value.serialize(self)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<S::Ok, S::Error> {
        Err(refuse("an enum variant"))
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        Err(refuse("a sequence"))
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, S::Error> {
        Err(refuse("a tuple"))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        Err(refuse("a tuple struct"))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        Err(refuse("an enum variant"))
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        Ok(FilterMap {
            map: self.inner.serialize_map(None)?,
            fields: self.fields,
            keep: false,
        })
    }

    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        // The number of fields kept is unknown until the end, so the inner
        // map is opened without a length.
        Ok(FilterStruct {
            map: self.inner.serialize_map(None)?,
            fields: self.fields,
        })
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        Err(refuse("an enum variant"))
    }
}

/// Passes through the selected fields of a struct.
struct FilterStruct<'f, M> {
    map: M,
    fields: &'f Fields,
}

impl<M: SerializeMap> SerializeStruct for FilterStruct<'_, M> {
    type Ok = M::Ok;
    type Error = M::Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), M::Error> {
        if self.fields.contains(key) {
            self.map.serialize_entry(key, value)?;
        }
        Ok(())
    }

    fn end(self) -> Result<M::Ok, M::Error> {
        self.map.end()
    }
}

/// Passes through the entries of a map whose string keys are selected.
struct FilterMap<'f, M> {
    map: M,
    fields: &'f Fields,
    keep: bool,
}

impl<M: SerializeMap> SerializeMap for FilterMap<'_, M> {
    type Ok = M::Ok;
    type Error = M::Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), M::Error> {
        self.keep = match serde_json::to_value(key) {
            Ok(serde_json::Value::String(name)) => self.fields.contains(&name),
            Ok(_) => false,
            Err(err) => return Err(M::Error::custom(err)),
        };
        if self.keep {
            self.map.serialize_key(key)?;
        }
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), M::Error> {
        if self.keep {
            self.map.serialize_value(value)?;
        }
        Ok(())
    }

    fn end(self) -> Result<M::Ok, M::Error> {
        self.map.end()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;

    use super::*;

    fn select<T: Serialize>(value: &T, names: &[&str]) -> Result<String, serde_json::Error> {
        let fields = Fields::new(names.iter().map(|s| (*s).to_owned()).collect());
        let mut out = Vec::new();
        fields.serialize(value, &mut serde_json::Serializer::new(&mut out))?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[derive(Serialize)]
    struct User {
        name: String,
        id: u64,
        password_hash: String,
        nested: BTreeMap<String, u8>,
    }

    #[derive(Serialize)]
    struct Wrapper(User);

    fn user() -> User {
        User {
            name: "alice".into(),
            id: 7,
            password_hash: "secret".into(),
            nested: BTreeMap::from([("password_hash".into(), 1)]),
        }
    }

    #[test]
    fn keeps_only_selected_struct_fields() {
        assert_eq!(
            select(&user(), &["name", "id"]).unwrap(),
            r#"{"name":"alice","id":7}"#
        );
        // Selection is top-level only: nested values pass whole.
        assert_eq!(
            select(&user(), &["nested"]).unwrap(),
            r#"{"nested":{"password_hash":1}}"#
        );
        assert_eq!(select(&user(), &["absent"]).unwrap(), "{}");
        assert_eq!(
            select(&Some(Wrapper(user())), &["id"]).unwrap(),
            r#"{"id":7}"#
        );
    }

    #[test]
    fn keeps_only_selected_map_entries() {
        let map = BTreeMap::from([("a", 1), ("b", 2), ("c", 3)]);
        assert_eq!(select(&map, &["c", "a"]).unwrap(), r#"{"a":1,"c":3}"#);
        let numeric = BTreeMap::from([(1, 1)]);
        assert_eq!(select(&numeric, &["1"]).unwrap(), "{}");
    }

    #[test]
    fn refuses_non_maps() {
        for err in [
            select(&"text", &["a"]).unwrap_err(),
            select(&5u8, &["a"]).unwrap_err(),
            select(&vec![1], &["a"]).unwrap_err(),
            select(&(), &["a"]).unwrap_err(),
        ] {
            assert!(err.to_string().contains("struct or map"), "{err}");
        }
    }
}
