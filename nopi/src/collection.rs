//! Typed JSON documents with secondary indexes.
//!
//! A collection lives in one tree. Documents and their index entries are
//! written in one atomic [`Batch`], so an index never points at a missing
//! document and a unique index never holds two documents:
//!
//! ```text
//! d \0 <id>                          -> the document, JSON
//! i \0 <field> \0 <value> \0 <id>    -> (empty)   non-unique index entry
//! u \0 <field> \0 <value>            -> <id>      unique index entry
//! m \0                               -> the index definitions, JSON
//! ```
//!
//! `<value>` is the field's value as compact JSON, which never contains a NUL
//! byte, so the layout is unambiguous. An array field indexes each element;
//! a missing or `null` field is not indexed (a unique index allows many).

use std::collections::BTreeSet;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::error::DisplayKey;
use crate::{Batch, Error, Result, Scan, Store, Tree};

const MAX_ID: usize = 256;
const MAX_FIELD: usize = 128;
const MAX_ATTEMPTS: u32 = 100;
const REINDEX_PAGE: usize = 256;
const META_KEY: &[u8] = b"m\0";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct IndexDef {
    field: String,
    unique: bool,
}

/// A named set of JSON documents of type `T`, with ids and secondary indexes.
///
/// Open one with [`Store::collection`]. Cheap to clone.
///
/// ```
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Group { name: String, owner: String }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), nopi::Error> {
/// let store = nopi::open("memory:").await?;
/// let groups = store
///     .collection::<Group>("groups")
///     .unique("name")
///     .index("owner")
///     .open()
///     .await?;
/// groups.insert(&Group { name: "rust".into(), owner: "alice".into() }).await?;
/// let taken = groups.insert(&Group { name: "rust".into(), owner: "bob".into() }).await;
/// assert!(matches!(taken, Err(nopi::Error::Duplicate { .. })));
/// let (_, g) = groups.find_one_by("name", "rust").await?.expect("indexed");
/// assert_eq!(g.owner, "alice");
/// assert_eq!(groups.find_by("owner", "alice").await?.len(), 1);
/// # Ok(())
/// # }
/// ```
pub struct Collection<T> {
    tree: Tree,
    indexes: Arc<[IndexDef]>,
    _doc: PhantomData<fn() -> T>,
}

impl<T> Clone for Collection<T> {
    fn clone(&self) -> Self {
        Collection {
            tree: self.tree.clone(),
            indexes: self.indexes.clone(),
            _doc: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Collection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collection")
            .field("name", &self.tree.name())
            .field("indexes", &self.indexes)
            .finish()
    }
}

/// Declares a collection's indexes before opening it. See [`Store::collection`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `open` is called"]
pub struct CollectionBuilder<T> {
    store: Store,
    name: String,
    indexes: Vec<IndexDef>,
    _doc: PhantomData<fn() -> T>,
}

impl Store {
    /// A builder for the collection `name` (stored in the tree of that name).
    pub fn collection<T>(&self, name: &str) -> CollectionBuilder<T> {
        CollectionBuilder {
            store: self.clone(),
            name: name.to_owned(),
            indexes: Vec::new(),
            _doc: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> CollectionBuilder<T> {
    /// Index `field` (a top-level field, or a dotted path such as `profile.city`).
    pub fn index(mut self, field: &str) -> Self {
        self.indexes.push(IndexDef {
            field: field.to_owned(),
            unique: false,
        });
        self
    }

    /// Index `field` and refuse two documents with the same value in it.
    pub fn unique(mut self, field: &str) -> Self {
        self.indexes.push(IndexDef {
            field: field.to_owned(),
            unique: true,
        });
        self
    }

    /// Open the collection. If its indexes differ from those it was last opened
    /// with, every index is rebuilt first (open such a collection before serving
    /// writes to it).
    pub async fn open(self) -> Result<Collection<T>> {
        for def in &self.indexes {
            validate_field(&def.field)?;
        }
        let tree = self.store.tree(&self.name).await?;
        let collection = Collection {
            tree,
            indexes: self.indexes.into(),
            _doc: PhantomData,
        };
        collection.reindex_if_changed().await?;
        Ok(collection)
    }
}

enum Mode {
    Insert,
    Replace,
    Upsert,
}

impl<T: Serialize + DeserializeOwned> Collection<T> {
    /// The collection's name.
    pub fn name(&self) -> &str {
        self.tree.name()
    }

    /// Store `doc` under a new time-ordered id (a UUID v7) and return the id.
    pub async fn insert(&self, doc: &T) -> Result<String> {
        let id = uuid::Uuid::now_v7().to_string();
        self.write(&id, Some(doc), Mode::Insert).await?;
        Ok(id)
    }

    /// Store `doc` under `id`; [`Error::AlreadyExists`] if the id is taken.
    pub async fn insert_with_id(&self, id: &str, doc: &T) -> Result<()> {
        self.write(id, Some(doc), Mode::Insert).await.map(drop)
    }

    /// Replace the document `id`; [`Error::NotFound`] if there is none.
    pub async fn update(&self, id: &str, doc: &T) -> Result<()> {
        self.write(id, Some(doc), Mode::Replace).await.map(drop)
    }

    /// Store `doc` under `id`, replacing any document there.
    pub async fn put(&self, id: &str, doc: &T) -> Result<()> {
        self.write(id, Some(doc), Mode::Upsert).await.map(drop)
    }

    /// Delete the document `id`, returning it; `None` if there was none.
    pub async fn delete(&self, id: &str) -> Result<Option<T>> {
        let old = self.write(id, None, Mode::Upsert).await?;
        old.map(|v| self.decode_value(id, v)).transpose()
    }

    /// The document `id`.
    pub async fn get(&self, id: &str) -> Result<Option<T>> {
        validate_id(id)?;
        match self.tree.get(doc_key(id)).await? {
            Some(bytes) => self.decode(id, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Atomically change the document `id` with `f` and return the result.
    ///
    /// `f` may run more than once when other writers race; keep it a pure
    /// function of the document. [`Error::NotFound`] if there is no document.
    pub async fn update_with<F>(&self, id: &str, mut f: F) -> Result<T>
    where
        F: FnMut(&mut T) + Send,
    {
        validate_id(id)?;
        let key = doc_key(id);
        for _ in 0..MAX_ATTEMPTS {
            let Some(old_bytes) = self.tree.get(&key).await? else {
                return Err(self.not_found(id));
            };
            let old = self.parse(id, &old_bytes)?;
            let mut doc: T = self.decode_value(id, old.clone())?;
            f(&mut doc);
            let new = self.encode(&doc)?;
            let batch = self.plan(id, Some(&old_bytes), Some(&old), Some(&new))?;
            match self.commit(id, batch).await {
                Ok(()) => return Ok(doc),
                Err(Retry::Again) => tokio::task::yield_now().await,
                Err(Retry::Fail(e)) => return Err(e),
            }
        }
        Err(Error::Contended {
            key: DisplayKey::new(&key),
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Every document whose `field` equals `value` (or, for an array field,
    /// contains it), as `(id, document)` in id order.
    pub async fn find_by(&self, field: &str, value: impl Serialize) -> Result<Vec<(String, T)>> {
        let def = self.index_def(field)?;
        let value = self.index_value(&value)?;
        let ids: Vec<String> = if def.unique {
            match self.tree.get(unique_key(field, &value)).await? {
                Some(id) => vec![self.id_from_entry(&id)?],
                None => Vec::new(),
            }
        } else {
            let prefix = index_prefix(field, &value);
            let entries = self.tree.scan(Scan::prefix(&prefix)).await?;
            entries
                .into_iter()
                .map(|(k, _)| self.id_from_entry(&k[prefix.len()..]))
                .collect::<Result<_>>()?
        };
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            match self.get(&id).await? {
                Some(doc) => found.push((id, doc)),
                None => {
                    return Err(Error::Corrupt {
                        collection: self.name().to_owned(),
                        id,
                        reason: format!("index {field} points at a missing document"),
                    });
                }
            }
        }
        Ok(found)
    }

    /// The first document whose `field` equals `value`, if any.
    pub async fn find_one_by(
        &self,
        field: &str,
        value: impl Serialize,
    ) -> Result<Option<(String, T)>> {
        Ok(self.find_by(field, value).await?.into_iter().next())
    }

    /// Up to `limit` documents in id order, starting after `after` (for paging).
    pub async fn list(&self, after: Option<&str>, limit: usize) -> Result<Vec<(String, T)>> {
        let entries = self.doc_page(after, limit).await?;
        entries
            .into_iter()
            .map(|(id, bytes)| Ok((id.clone(), self.decode(&id, &bytes)?)))
            .collect()
    }

    async fn write(&self, id: &str, doc: Option<&T>, mode: Mode) -> Result<Option<Value>> {
        validate_id(id)?;
        let new = doc.map(|d| self.encode(d)).transpose()?;
        let key = doc_key(id);
        for _ in 0..MAX_ATTEMPTS {
            let old_bytes = self.tree.get(&key).await?;
            match (&mode, &old_bytes) {
                (Mode::Insert, Some(_)) => {
                    return Err(Error::AlreadyExists {
                        collection: self.name().to_owned(),
                        id: id.to_owned(),
                    });
                }
                (Mode::Replace, None) => return Err(self.not_found(id)),
                _ => {}
            }
            if old_bytes.is_none() && new.is_none() {
                return Ok(None);
            }
            let old = old_bytes
                .as_deref()
                .map(|b| self.parse(id, b))
                .transpose()?;
            let batch = self.plan(id, old_bytes.as_deref(), old.as_ref(), new.as_ref())?;
            match self.commit(id, batch).await {
                Ok(()) => return Ok(old),
                Err(Retry::Again) => tokio::task::yield_now().await,
                Err(Retry::Fail(e)) => return Err(e),
            }
        }
        Err(Error::Contended {
            key: DisplayKey::new(&key),
            attempts: MAX_ATTEMPTS,
        })
    }

    /// The batch that turns document `old` (stored as `old_bytes`) into `new`.
    fn plan(
        &self,
        id: &str,
        old_bytes: Option<&[u8]>,
        old: Option<&Value>,
        new: Option<&Value>,
    ) -> Result<Batch> {
        let key = doc_key(id);
        let mut batch = Batch::new();
        batch.push_expect(&key, old_bytes);
        match new {
            Some(doc) => batch.push_put(&key, serde_json::to_vec(doc).map_err(|e| self.ser(e))?),
            None => batch.push_remove(&key),
        }
        for def in self.indexes.iter() {
            let before = old.map(|d| index_values(d, &def.field)).unwrap_or_default();
            let after = new.map(|d| index_values(d, &def.field)).unwrap_or_default();
            for gone in before.difference(&after) {
                match def.unique {
                    true => batch.push_remove(unique_key(&def.field, gone)),
                    false => batch.push_remove(index_key(&def.field, gone, id)),
                }
            }
            for added in after.difference(&before) {
                if def.unique {
                    let k = unique_key(&def.field, added);
                    batch.push_expect(&k, None::<&[u8]>);
                    batch.push_put(&k, id);
                } else {
                    batch.push_put(index_key(&def.field, added, id), b"");
                }
            }
        }
        Ok(batch)
    }

    async fn commit(&self, id: &str, batch: Batch) -> Result<(), Retry> {
        match self.tree.apply(batch).await {
            Ok(()) => Ok(()),
            Err(Error::Conflict { key }) if key.0 == doc_key(id) => Err(Retry::Again),
            Err(Error::Conflict { key }) => Err(Retry::Fail(self.duplicate(&key.0))),
            Err(e) => Err(Retry::Fail(e)),
        }
    }

    async fn reindex_if_changed(&self) -> Result<()> {
        let wanted = serde_json::to_vec(&*self.indexes).map_err(|e| self.ser(e))?;
        if self.tree.get(META_KEY).await?.as_deref() == Some(&wanted[..]) {
            return Ok(());
        }
        // Drop every index entry, then rebuild from the documents page by page.
        for prefix in [&b"i\0"[..], b"u\0"] {
            loop {
                let stale = self
                    .tree
                    .scan(Scan::prefix(prefix).limit(REINDEX_PAGE))
                    .await?;
                if stale.is_empty() {
                    break;
                }
                let mut batch = Batch::new();
                for (k, _) in stale {
                    batch.push_remove(k);
                }
                self.tree.apply(batch).await?;
            }
        }
        let mut after: Option<String> = None;
        loop {
            let page = self.doc_page(after.as_deref(), REINDEX_PAGE).await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (id, bytes) in page {
                let doc = self.parse(&id, &bytes)?;
                let mut batch = self.plan(&id, Some(&bytes), None, Some(&doc))?;
                // The document itself is unchanged: keep only the index writes.
                batch.ops.retain(|op| op.key() != doc_key(&id).as_slice());
                if let Err(Retry::Fail(e)) = self.commit(&id, batch).await {
                    return Err(e);
                }
            }
        }
        self.tree.insert(META_KEY, wanted).await
    }

    async fn doc_page(&self, after: Option<&str>, limit: usize) -> Result<Vec<(String, Vec<u8>)>> {
        let scan = match after {
            Some(id) => {
                validate_id(id)?;
                let start = doc_key(id);
                let end = crate::scan::prefix_successor(b"d\0").unwrap_or_default();
                Scan::range::<Vec<u8>>((
                    std::ops::Bound::Excluded(start),
                    std::ops::Bound::Excluded(end),
                ))
            }
            None => Scan::prefix(b"d\0"),
        };
        let entries = self.tree.scan(scan.limit(limit)).await?;
        entries
            .into_iter()
            .map(|(k, v)| Ok((self.id_from_entry(&k[2..])?, v)))
            .collect()
    }

    fn index_def(&self, field: &str) -> Result<&IndexDef> {
        self.indexes
            .iter()
            .find(|d| d.field == field)
            .ok_or_else(|| Error::NoSuchIndex {
                collection: self.name().to_owned(),
                field: field.to_owned(),
            })
    }

    fn index_value(&self, value: &impl Serialize) -> Result<String> {
        serde_json::to_string(value).map_err(|e| self.ser(e))
    }

    fn encode(&self, doc: &T) -> Result<Value> {
        serde_json::to_value(doc).map_err(|e| self.ser(e))
    }

    fn parse(&self, id: &str, bytes: &[u8]) -> Result<Value> {
        serde_json::from_slice(bytes).map_err(|e| self.corrupt(id, e))
    }

    fn decode(&self, id: &str, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| self.corrupt(id, e))
    }

    fn decode_value(&self, id: &str, value: Value) -> Result<T> {
        serde_json::from_value(value).map_err(|e| self.corrupt(id, e))
    }

    fn id_from_entry(&self, bytes: &[u8]) -> Result<String> {
        String::from_utf8(bytes.to_vec()).map_err(|_| Error::Corrupt {
            collection: self.name().to_owned(),
            id: bytes.escape_ascii().to_string(),
            reason: "stored id is not UTF-8".to_owned(),
        })
    }

    fn duplicate(&self, key: &[u8]) -> Error {
        // A unique key is `u\0<field>\0<value>`.
        let mut parts = key.splitn(3, |&b| b == 0).skip(1);
        let field = parts.next().unwrap_or_default();
        let value = parts.next().unwrap_or_default();
        Error::Duplicate {
            collection: self.name().to_owned(),
            field: String::from_utf8_lossy(field).into_owned(),
            value: String::from_utf8_lossy(value).into_owned(),
        }
    }

    fn not_found(&self, id: &str) -> Error {
        Error::NotFound {
            collection: self.name().to_owned(),
            id: id.to_owned(),
        }
    }

    fn ser(&self, source: serde_json::Error) -> Error {
        Error::Serialize {
            collection: self.name().to_owned(),
            source,
        }
    }

    fn corrupt(&self, id: &str, e: serde_json::Error) -> Error {
        Error::Corrupt {
            collection: self.name().to_owned(),
            id: id.to_owned(),
            reason: e.to_string(),
        }
    }
}

enum Retry {
    Again,
    Fail(Error),
}

fn doc_key(id: &str) -> Vec<u8> {
    [b"d\0", id.as_bytes()].concat()
}

fn unique_key(field: &str, value: &str) -> Vec<u8> {
    [b"u\0", field.as_bytes(), b"\0", value.as_bytes()].concat()
}

fn index_prefix(field: &str, value: &str) -> Vec<u8> {
    [b"i\0", field.as_bytes(), b"\0", value.as_bytes(), b"\0"].concat()
}

fn index_key(field: &str, value: &str, id: &str) -> Vec<u8> {
    [index_prefix(field, value), id.as_bytes().to_vec()].concat()
}

/// The values of `field` (a dotted path) in `doc` to index, as compact JSON.
fn index_values(doc: &Value, field: &str) -> BTreeSet<String> {
    let mut node = doc;
    for part in field.split('.') {
        match node.get(part) {
            Some(next) => node = next,
            None => return BTreeSet::new(),
        }
    }
    let one = |v: &Value| (!v.is_null()).then(|| v.to_string());
    match node {
        Value::Array(items) => items.iter().filter_map(one).collect(),
        v => one(v).into_iter().collect(),
    }
}

fn validate_id(id: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidId {
            id: id.chars().take(MAX_ID + 8).collect(),
            reason,
        })
    };
    if id.is_empty() {
        return bad("a document id cannot be empty");
    }
    if id.len() > MAX_ID {
        return bad("a document id is at most 256 bytes");
    }
    if id.contains('\0') {
        return bad("a document id cannot contain NUL");
    }
    Ok(())
}

fn validate_field(field: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidField {
            field: field.chars().take(MAX_FIELD + 8).collect(),
            reason,
        })
    };
    if field.is_empty() || field.split('.').any(str::is_empty) {
        return bad("a field path cannot be empty or have empty parts");
    }
    if field.len() > MAX_FIELD {
        return bad("a field path is at most 128 bytes");
    }
    if field.contains('\0') {
        return bad("a field path cannot contain NUL");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn index_values_of_paths_arrays_and_nulls() {
        let doc = json!({"a": {"b": "x"}, "tags": ["t1", "t2", null], "n": null, "k": 3});
        assert_eq!(
            index_values(&doc, "a.b"),
            BTreeSet::from(["\"x\"".to_owned()])
        );
        assert_eq!(index_values(&doc, "tags").len(), 2);
        assert!(index_values(&doc, "n").is_empty());
        assert!(index_values(&doc, "missing.path").is_empty());
        assert_eq!(index_values(&doc, "k"), BTreeSet::from(["3".to_owned()]));
    }

    #[test]
    fn json_values_never_contain_nul() {
        let doc = json!({"s": "a\u{0}b"});
        assert!(!index_values(&doc, "s").iter().any(|v| v.contains('\0')));
    }
}
