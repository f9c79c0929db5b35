//! [`Users`]: accounts of one [`UserModel`] stored in a nopi store.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use nopi::{Collection, Store, Tree};
use serde_json::{Map, Value as Json};
use tokio::sync::Semaphore;

use crate::attribute::Kind;
use crate::error::{Error, Result, UserRef, shorten};
use crate::model::{FOLDED_NAME, StoredSchema, UserModel, number_value, value_to_json};
use crate::name::{fold, normalize};
use crate::password::{Hasher, PasswordParams, Verdict, cores, shared_permits};
use crate::user::{NewUser, User};
use crate::value::{Secret, Value};

/// Most users one [`Users::list`] call returns.
pub const MAX_PAGE: usize = 1000;

/// The tree users are stored in unless [`UsersBuilder::tree`] says otherwise.
pub const DEFAULT_TREE: &str = "users";

/// How many numbers automatic numbering tries before giving up.
const NUMBER_ATTEMPTS: u32 = 1000;
/// How many times opening retries after losing a race to store the schema.
const SCHEMA_ATTEMPTS: u32 = 16;
const SCHEMA_KEY: &str = "schema";
const COUNTER_KEY: &str = "next_number";
/// Set in the meta tree once every stored user has its folded name.
const FOLDED_KEY: &str = "names_folded";

type Doc = Map<String, Json>;

/// The users of one [`UserModel`], stored through [`nopi`].
///
/// Cheap to clone, `Send + Sync`: clones share the store, the model and the
/// hashing permits.
///
/// Layout: documents in the collection tree (default [`DEFAULT_TREE`]), keyed
/// by user name, with a unique index on the number attribute; the stored
/// schema and the number counter in the tree `<tree>.meta`.
///
/// Password work (argon2id) runs on tokio's blocking threads, at most one
/// hash per core at a time across every `Users` in the process (see
/// [`UsersBuilder::hash_concurrency`]), so a login storm queues instead of
/// starving the async runtime. Methods must be called within a tokio runtime.
#[derive(Clone)]
pub struct Users {
    inner: Arc<Inner>,
}

struct Inner {
    model: UserModel,
    docs: Collection<Doc>,
    meta: Tree,
    hasher: Hasher,
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Users")
            .field("tree", &self.inner.docs.name())
            .field("model", &self.inner.model)
            .field("password_params", &self.inner.hasher.params())
            .finish_non_exhaustive()
    }
}

/// Where and how to open [`Users`]. See [`Users::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `open` is called"]
pub struct UsersBuilder {
    store: Store,
    model: UserModel,
    tree: String,
    params: PasswordParams,
    permits: Option<usize>,
}

impl UsersBuilder {
    /// The tree to store users in (default [`DEFAULT_TREE`]); the schema and
    /// counters go to `<tree>.meta`. Separate trees hold separate user sets.
    pub fn tree(mut self, name: &str) -> Self {
        self.tree = name.to_owned();
        self
    }

    /// The argon2id parameters for new hashes (default
    /// [`PasswordParams::OWASP`]). Stored hashes with other parameters are
    /// re-hashed on their next successful verification.
    pub fn password_params(mut self, params: PasswordParams) -> Self {
        self.params = params;
        self
    }

    /// Run at most `n` hashes at once for this handle and its clones, instead
    /// of sharing the process-wide pool of one permit per core.
    pub fn hash_concurrency(mut self, n: usize) -> Self {
        self.permits = Some(n);
        self
    }

    /// Open the users, storing the model's schema on first use.
    ///
    /// Fails with [`Error::SchemaMismatch`] when the model differs from the
    /// stored schema in a way existing users cannot follow: an attribute
    /// removed or of another kind, or a new required attribute without a
    /// default. Compatible changes (new optional attributes, new defaults) are
    /// recorded, and existing users read the new defaults.
    pub async fn open(self) -> Result<Users> {
        let permits = match self.permits {
            Some(n) => Arc::new(Semaphore::new(n.clamp(1, Semaphore::MAX_PERMITS))),
            None => shared_permits(),
        };
        let hasher = Hasher::new(self.params, permits)?;
        let meta = self.store.tree(&format!("{}.meta", self.tree)).await?;
        store_schema(&meta, &self.tree, &self.model).await?;
        let mut docs = self.store.collection::<Doc>(&self.tree);
        for a in self.model.attributes() {
            // The name is the document id: unique without an index.
            if a.kind() == Kind::Name {
                continue;
            }
            if a.is_unique() {
                docs = docs.unique(a.name());
            } else if a.is_indexed() {
                docs = docs.index(a.name());
            }
        }
        let docs = docs.unique(FOLDED_NAME).open().await?;
        let users = Users {
            inner: Arc::new(Inner {
                model: self.model,
                docs,
                meta,
                hasher,
            }),
        };
        users.fold_old_names().await?;
        Ok(users)
    }
}

async fn store_schema(meta: &Tree, tree: &str, model: &UserModel) -> Result<()> {
    let wanted = model.schema();
    let wanted_bytes = serde_json::to_vec(&wanted).map_err(|e| Error::Corrupt {
        user: "schema".to_owned(),
        reason: e.to_string(),
    })?;
    for _ in 0..SCHEMA_ATTEMPTS {
        let current = meta.get(SCHEMA_KEY).await?;
        if let Some(bytes) = &current {
            let stored: StoredSchema =
                serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
                    user: "schema".to_owned(),
                    reason: format!("stored schema of tree {tree} is unreadable: {e}"),
                })?;
            let changes = model.incompatibilities(&stored);
            if !changes.is_empty() {
                return Err(Error::SchemaMismatch {
                    tree: tree.to_owned(),
                    changes,
                });
            }
            if stored == wanted {
                return Ok(());
            }
        }
        let swapped = meta
            .compare_and_swap(SCHEMA_KEY, current.as_deref(), Some(&wanted_bytes))
            .await?;
        if swapped.is_ok() {
            return Ok(());
        }
    }
    Err(Error::Storage(nopi::Error::Contended {
        key: nopi::DisplayKey(SCHEMA_KEY.as_bytes().to_vec()),
        attempts: SCHEMA_ATTEMPTS,
    }))
}

impl Users {
    /// A builder for users of `model` in `store`.
    pub fn builder(store: &Store, model: UserModel) -> UsersBuilder {
        UsersBuilder {
            store: store.clone(),
            model,
            tree: DEFAULT_TREE.to_owned(),
            params: PasswordParams::default(),
            permits: None,
        }
    }

    /// Open users of `model` in the tree [`DEFAULT_TREE`] of `store`, with the
    /// default settings. See [`UsersBuilder::open`].
    pub async fn open(store: &Store, model: UserModel) -> Result<Self> {
        Self::builder(store, model).open().await
    }

    /// The model.
    pub fn model(&self) -> &UserModel {
        &self.inner.model
    }

    /// The default hashing concurrency: the number of cores.
    pub fn default_hash_concurrency() -> usize {
        cores()
    }

    /// Check `user` against the model (every attribute's kind, size and
    /// validators) without creating it or hashing anything: what
    /// [`create`](Self::create) would refuse with [`Error::Invalid`] (and
    /// the like) before its costly hash. The name's availability is not
    /// checked.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tiny_storage::{Attribute, Error, NewUser, UserModel, Users, Validator};
    ///
    /// let model = UserModel::builder()
    ///     .attribute(Attribute::user_name("name").validate(Validator::length(1..=8)))
    ///     .password("password")
    ///     .build()?;
    /// let users = Users::open(&nopi::open("memory:").await?, model).await?;
    /// assert!(users.check(&NewUser::new("ann").password("pw")).is_ok());
    /// let long = users.check(&NewUser::new("annabelle").password("pw"));
    /// assert!(matches!(long, Err(Error::Invalid { attr, .. }) if attr == "name"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn check(&self, user: &NewUser) -> Result<()> {
        self.inner
            .model
            .prepare(user.clone(), SystemTime::now())
            .map(drop)
    }

    /// Create a user, returning it as stored (defaults applied, number
    /// assigned).
    ///
    /// Fails with [`Error::NameTaken`] or [`Error::NumberTaken`] when another
    /// user has the name or the chosen number, also when many tasks or
    /// processes create at once: the document and its number are written in
    /// one atomic batch that expects both to be free.
    ///
    /// Automatic numbers increase but may have gaps: a number drawn by a
    /// creation that then fails (name taken) is not handed out again.
    pub async fn create(&self, user: NewUser) -> Result<User> {
        let model = &self.inner.model;
        let prepared = model.prepare(user, SystemTime::now())?;
        let name = prepared.name.clone();
        // Cheap early refusal before the costly hash; the batch below decides.
        let docs = &self.inner.docs;
        if docs.get(&name).await?.is_some()
            || !docs.find_by(FOLDED_NAME, fold(&name)).await?.is_empty()
        {
            return Err(Error::NameTaken { name });
        }
        let hash = match &prepared.password {
            Some(pw) => Some(self.inner.hasher.hash(pw).await?),
            None => None,
        };
        if let Some(n) = prepared.number {
            let doc = model.encode(&prepared, hash, Some(n));
            self.insert(&name, &doc, Some(n)).await?;
            return model.decode(&name, &doc);
        }
        if model.number_attr().is_none() {
            let doc = model.encode(&prepared, hash, None);
            self.insert(&name, &doc, None).await?;
            return model.decode(&name, &doc);
        }
        for _ in 0..NUMBER_ATTEMPTS {
            let n = self.next_number().await?;
            let doc = model.encode(&prepared, hash.clone(), Some(n));
            match self.insert(&name, &doc, Some(n)).await {
                Ok(()) => return model.decode(&name, &doc),
                // A caller chose this number earlier: take the next one.
                Err(Error::NumberTaken { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::NumbersExhausted {
            attempts: NUMBER_ATTEMPTS,
        })
    }

    async fn insert(&self, name: &str, doc: &Doc, number: Option<u64>) -> Result<()> {
        match self.inner.docs.insert_with_id(name, doc).await {
            Ok(()) => Ok(()),
            Err(nopi::Error::AlreadyExists { .. }) => Err(Error::NameTaken {
                name: name.to_owned(),
            }),
            Err(nopi::Error::Duplicate { field, .. }) if field == FOLDED_NAME => {
                Err(Error::NameTaken {
                    name: name.to_owned(),
                })
            }
            Err(e) => Err(self.taken(e, number)),
        }
    }

    /// A unique-index violation as the error naming the attribute.
    fn taken(&self, e: nopi::Error, number: Option<u64>) -> Error {
        match e {
            nopi::Error::Duplicate { field, .. }
                if Some(field.as_str()) == self.inner.model.number_attr() =>
            {
                Error::NumberTaken {
                    number: number.unwrap_or_default(),
                }
            }
            nopi::Error::Duplicate { field, .. } => Error::ValueTaken { attr: field },
            e => e.into(),
        }
    }

    /// Give the users stored before names were folded (by an older version)
    /// their folded name, once: from then on a new name that differs from
    /// theirs only in case is refused too. Two old users whose names fold
    /// alike both keep working; the second is logged and left unfolded.
    async fn fold_old_names(&self) -> Result<()> {
        if self.inner.meta.get(FOLDED_KEY).await?.is_some() {
            return Ok(());
        }
        let docs = &self.inner.docs;
        let mut after: Option<String> = None;
        loop {
            let page = docs.list(after.as_deref(), MAX_PAGE).await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (name, _) in page.iter().filter(|(_, d)| !d.contains_key(FOLDED_NAME)) {
                let folded = Json::String(fold(name));
                let r = docs
                    .update_with(name, |d| {
                        d.insert(FOLDED_NAME.to_owned(), folded.clone());
                    })
                    .await;
                match r {
                    Ok(_) | Err(nopi::Error::NotFound { .. }) => {}
                    Err(nopi::Error::Duplicate { .. }) => {
                        tracing::warn!(user = %name, "an older user's name differs from another's only in case; both are kept");
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        self.inner.meta.insert(FOLDED_KEY, b"1".to_vec()).await?;
        Ok(())
    }

    /// Hand out the next number from the counter.
    async fn next_number(&self) -> Result<u64> {
        let first = self.inner.model.first_number();
        let read = |b: Option<&[u8]>| {
            b.and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(first, u64::from_be_bytes)
                .max(first)
        };
        let new = self
            .inner
            .meta
            .fetch_update(COUNTER_KEY, |old| {
                Some(read(old).saturating_add(1).to_be_bytes().to_vec())
            })
            .await?;
        let n = read(new.as_deref()).saturating_sub(1);
        match number_value(n) {
            Ok(_) => Ok(n),
            Err(_) => Err(Error::NumbersExhausted { attempts: 1 }),
        }
    }

    /// The user named `name`, if any.
    pub async fn get(&self, name: &str) -> Result<Option<User>> {
        match self.find(UserRef::Name(name.to_owned())).await? {
            Some((id, doc)) => self.inner.model.decode(&id, &doc).map(Some),
            None => Ok(None),
        }
    }

    /// The user with number `number`, if any. [`Error::NoSuchKind`] when the
    /// model has no number attribute.
    pub async fn get_by_number(&self, number: u64) -> Result<Option<User>> {
        match self.find(UserRef::Number(number)).await? {
            Some((id, doc)) => self.inner.model.decode(&id, &doc).map(Some),
            None => Ok(None),
        }
    }

    /// Every user whose `attr` equals `value`, in name order.
    ///
    /// Works on the name, the number, and attributes declared
    /// [`indexed`](crate::Attribute::indexed) or
    /// [`unique`](crate::Attribute::unique); [`Error::NotIndexed`] otherwise.
    /// The value must have the attribute's type. Users without a value are
    /// not indexed, so [`Value::Null`] finds nobody. Every match is returned:
    /// keep indexes to attributes with few users per value.
    pub async fn find_by(&self, attr: &str, value: impl Into<Value>) -> Result<Vec<User>> {
        let model = &self.inner.model;
        let a = model.lookup(attr)?;
        let value = value.into();
        if value.is_null() {
            return Ok(Vec::new());
        }
        if value.type_name() != a.kind().value_type() {
            return Err(Error::WrongType {
                attr: attr.to_owned(),
                expected: a.kind().value_type(),
                actual: value.type_name(),
            });
        }
        let found = match (a.kind(), &value) {
            (Kind::Name, Value::Text(name)) => self.get(name).await?.into_iter().collect(),
            (Kind::Number, Value::Int(n)) => match u64::try_from(*n) {
                Ok(n) => self.get_by_number(n).await?.into_iter().collect(),
                Err(_) => Vec::new(),
            },
            _ if !a.is_indexed() => {
                return Err(Error::NotIndexed {
                    attr: attr.to_owned(),
                });
            }
            _ => {
                let docs = self.inner.docs.find_by(attr, &value).await?;
                docs.iter()
                    .map(|(id, doc)| model.decode(id, doc))
                    .collect::<Result<_>>()?
            }
        };
        Ok(found)
    }

    async fn find(&self, who: UserRef) -> Result<Option<(String, Doc)>> {
        match who {
            UserRef::Name(name) => {
                if !UserModel::plausible_name(&name) {
                    return Ok(None);
                }
                let name = normalize(&name).into_owned();
                Ok(self.inner.docs.get(&name).await?.map(|d| (name, d)))
            }
            UserRef::Number(n) => {
                let attr = self
                    .inner
                    .model
                    .number_attr()
                    .ok_or(Error::NoSuchKind { kind: "number" })?;
                if number_value(n).is_err() {
                    return Ok(None);
                }
                Ok(self.inner.docs.find_one_by(attr, n).await?)
            }
        }
    }

    /// Check that the user `who` (a name, or a number as `u64`) has `value`
    /// in `attr`, and return the user.
    ///
    /// For the password attribute the value (a [`Secret`] or text) is checked
    /// against the stored argon2 hash, never compared; other attributes are
    /// compared for equality. An unknown user, a user without a password and
    /// a wrong value all give [`Error::BadCredentials`], and for passwords
    /// take the time of one hash: an unknown user is checked against a dummy
    /// hash with the same parameters.
    ///
    /// A right password whose stored hash has other parameters than the
    /// configured ones is re-hashed and stored (the upgrade costs one more
    /// hash, once; if storing it fails the login still succeeds).
    pub async fn verify(
        &self,
        who: impl Into<UserRef>,
        attr: &str,
        value: impl Into<Value>,
    ) -> Result<User> {
        let model = &self.inner.model;
        let a = model.lookup(attr)?;
        let value = value.into();
        if a.kind() != Kind::Password {
            let Some((id, doc)) = self.find(who.into()).await? else {
                return Err(Error::BadCredentials);
            };
            let user = model.decode(&id, &doc)?;
            return match user.get(attr) {
                Some(v) if *v == value => Ok(user),
                _ => Err(Error::BadCredentials),
            };
        }
        let password = match value {
            Value::Secret(s) => s,
            Value::Text(t) => Secret::new(t),
            other => {
                return Err(Error::WrongType {
                    attr: attr.to_owned(),
                    expected: "secret",
                    actual: other.type_name(),
                });
            }
        };
        if password.is_empty() || password.len() > crate::MAX_PASSWORD_LEN {
            // No stored password can match; refusing without hashing reveals
            // nothing about the user.
            return Err(Error::BadCredentials);
        }
        let found = self.find(who.into()).await?;
        let stored = found.as_ref().and_then(|(_, doc)| model.stored_hash(doc));
        let verdict = self.inner.hasher.verify(&password, stored).await?;
        let (id, doc) = match (verdict, found) {
            (Err(reason), found) => {
                return Err(Error::Corrupt {
                    user: found.map(|(id, _)| shorten(&id)).unwrap_or_default(),
                    reason,
                });
            }
            (Ok(Verdict::Right { rehash }), Some((id, doc))) => {
                if rehash && let Some(old) = model.stored_hash(&doc) {
                    self.upgrade(&id, attr, old, &password).await;
                }
                (id, doc)
            }
            _ => return Err(Error::BadCredentials),
        };
        model.decode(&id, &doc)
    }

    /// Store a new hash of `password` for `name` if its hash is still `old`.
    async fn upgrade(&self, name: &str, attr: &str, old: &str, password: &Secret) {
        let new = match self.inner.hasher.hash(password).await {
            Ok(h) => Json::String(h),
            Err(e) => {
                tracing::warn!(user = name, error = %e, "password hash upgrade failed");
                return;
            }
        };
        let result = self
            .inner
            .docs
            .update_with(name, |doc| {
                if doc.get(attr).and_then(Json::as_str) == Some(old) {
                    doc.insert(attr.to_owned(), new.clone());
                }
            })
            .await;
        match result {
            Ok(_) => tracing::debug!(user = name, "password hash upgraded"),
            Err(e) => tracing::warn!(user = name, error = %e, "password hash upgrade failed"),
        }
    }

    /// Set `attr` of the user `name` to `value` and return the user.
    ///
    /// The value is checked like at creation; [`Value::Null`] clears an
    /// optional attribute. A password must be a [`Secret`] and is re-hashed.
    /// The name and the creation time cannot change ([`Error::ReadOnly`]); a
    /// number can, if no other user has it ([`Error::NumberTaken`]).
    pub async fn update(&self, name: &str, attr: &str, value: impl Into<Value>) -> Result<User> {
        let model = &self.inner.model;
        let a = model.lookup(attr)?;
        if matches!(a.kind(), Kind::Name | Kind::Created) {
            return Err(Error::ReadOnly {
                attr: attr.to_owned(),
            });
        }
        let not_found = || Error::NotFound {
            user: UserRef::Name(shorten(name)),
        };
        if !UserModel::plausible_name(name) {
            return Err(not_found());
        }
        let name = &*normalize(name);
        let value = value.into();
        let new = if value.is_null() {
            if a.is_required() {
                return Err(Error::Missing {
                    attr: attr.to_owned(),
                });
            }
            None
        } else {
            model.check_value(a, &value)?;
            match &value {
                Value::Secret(pw) => Some(Json::String(self.inner.hasher.hash(pw).await?)),
                v => value_to_json(v),
            }
        };
        let result = self
            .inner
            .docs
            .update_with(name, |doc| match &new {
                Some(j) => {
                    doc.insert(attr.to_owned(), j.clone());
                }
                None => {
                    doc.remove(attr);
                }
            })
            .await;
        match result {
            Ok(doc) => model.decode(name, &doc),
            Err(nopi::Error::NotFound { .. }) => Err(not_found()),
            Err(e) => Err(self.taken(e, value.as_int().map(i64::unsigned_abs))),
        }
    }

    /// Delete the user `name`; `false` if there was none. Their number is
    /// freed (automatic numbering never hands it out again; a caller may
    /// choose it).
    pub async fn delete(&self, name: &str) -> Result<bool> {
        if !UserModel::plausible_name(name) {
            return Ok(false);
        }
        Ok(self.inner.docs.delete(&normalize(name)).await?.is_some())
    }

    /// Up to `limit` users in name order (byte order), starting after the
    /// user named `after`: pass the last name of a page to get the next one.
    /// [`Error::PageTooLarge`] above [`MAX_PAGE`].
    pub async fn list(&self, after: Option<&str>, limit: usize) -> Result<Vec<User>> {
        if limit > MAX_PAGE {
            return Err(Error::PageTooLarge {
                limit,
                max: MAX_PAGE,
            });
        }
        if let Some(cursor) = after.filter(|c| !UserModel::plausible_name(c)) {
            return Err(Error::Invalid {
                attr: self.inner.model.name_attr().to_owned(),
                rule: "name".to_owned(),
                reason: format!(
                    "list cursor of {} bytes is not a user name: expected 1 to {} bytes without \
                     control characters",
                    cursor.len(),
                    crate::MAX_USER_NAME
                ),
            });
        }
        let page = self.inner.docs.list(after, limit).await?;
        page.iter()
            .map(|(id, doc)| self.inner.model.decode(id, doc))
            .collect()
    }
}
