//! Errors returned by every nopi operation.

use std::fmt;

/// A convenience alias for results of nopi operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a store, a tree or a collection.
///
/// Every variant names the offending input. Backend failures keep their source
/// error; [`Error::is_unavailable`] tells a caller whether retrying later can help
/// (the engine is unreachable) or not.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL given to [`open`](crate::open) names no known backend, or a backend
    /// that was not compiled in.
    #[error("unsupported store url {url:?}: {reason}")]
    BadUrl {
        /// The URL as given, its password replaced by `***`
        /// ([`redact_url`](crate::redact_url)).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A [`StoreBuilder`](crate::StoreBuilder) setting that cannot work, such
    /// as a zero key size limit, refused by
    /// [`open`](crate::StoreBuilder::open).
    #[error("invalid {setting}: expected {expected}, got {actual}")]
    InvalidSetting {
        /// The setting, named as the builder method that sets it.
        setting: &'static str,
        /// What is accepted.
        expected: &'static str,
        /// What was given.
        actual: String,
    },
    /// A tree name is empty, too long, reserved, or has an ASCII character outside
    /// `[A-Za-z0-9_.:/-]`, a control character or white space.
    #[error("invalid tree name {name:?}: {reason}")]
    InvalidTreeName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A key is longer than the store's limit.
    #[error("key of {size} bytes exceeds the {limit}-byte limit")]
    KeyTooLarge {
        /// Size of the key in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A value is longer than the store's limit.
    #[error("value of {size} bytes for key {key} exceeds the {limit}-byte limit")]
    ValueTooLarge {
        /// The key, printed with non-printable bytes escaped.
        key: DisplayKey,
        /// Size of the value in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A batch has more operations than the store's limit.
    #[error("batch of {ops} operations exceeds the {limit}-operation limit")]
    BatchTooLarge {
        /// Number of operations (puts, removes and expectations) in the batch.
        ops: usize,
        /// The configured limit.
        limit: usize,
    },
    /// An expectation of a [`Batch`](crate::Batch) did not hold; nothing was written.
    #[error("batch expectation on key {key} failed: nothing was written")]
    Conflict {
        /// The first key whose expectation failed.
        key: DisplayKey,
    },
    /// A read-modify-write loop ([`Tree::fetch_update`](crate::Tree::fetch_update),
    /// [`Collection::update_with`](crate::Collection::update_with)) lost the race
    /// too many times in a row.
    #[error("gave up on key {key} after {attempts} conflicting concurrent updates")]
    Contended {
        /// The contended key.
        key: DisplayKey,
        /// How many attempts were made.
        attempts: u32,
    },
    /// A document id is empty, too long or contains a NUL byte.
    #[error("invalid document id {id:?}: {reason}")]
    InvalidId {
        /// The id as given.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An index field name is empty, too long or contains a NUL byte.
    #[error("invalid index field {field:?}: {reason}")]
    InvalidField {
        /// The field as given.
        field: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `find_by` was called with a field that has no index.
    #[error("collection {collection} has no index on field {field:?}")]
    NoSuchIndex {
        /// The collection.
        collection: String,
        /// The field asked for.
        field: String,
    },
    /// A document with this id does not exist.
    #[error("no document {id:?} in collection {collection}")]
    NotFound {
        /// The collection.
        collection: String,
        /// The id asked for.
        id: String,
    },
    /// A document with this id already exists.
    #[error("document {id:?} already exists in collection {collection}")]
    AlreadyExists {
        /// The collection.
        collection: String,
        /// The id that is taken.
        id: String,
    },
    /// A unique index already holds this value for another document.
    #[error("collection {collection} already has a document with {field} = {value}")]
    Duplicate {
        /// The collection.
        collection: String,
        /// The uniquely indexed field.
        field: String,
        /// The duplicated value, as JSON.
        value: String,
    },
    /// A document could not be turned into JSON.
    #[error("document for collection {collection} cannot be serialized: {source}")]
    Serialize {
        /// The collection.
        collection: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// A stored document (or index entry) is not what the collection expects.
    #[error("corrupt document {id:?} in collection {collection}: {reason}")]
    Corrupt {
        /// The collection.
        collection: String,
        /// The id of the document (or the raw key for an index entry).
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The storage engine cannot be reached right now (connection refused or
    /// lost, pool exhausted); the operation may succeed later.
    #[error("{backend} store unavailable: {source}")]
    Unavailable {
        /// The backend name: `memory`, `sled` or `postgres`.
        backend: &'static str,
        /// The engine's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The storage engine failed.
    #[error("{backend} store failed: {source}")]
    Backend {
        /// The backend name: `memory`, `sled` or `postgres`.
        backend: &'static str,
        /// The engine's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// True when the engine could not be reached and retrying later may succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }

    // Only the sled and PostgreSQL engines have errors of their own.
    #[cfg(any(feature = "sled", feature = "postgres"))]
    pub(crate) fn backend(
        backend: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Backend {
            backend,
            source: source.into(),
        }
    }
}

/// A key as it appears in error messages: UTF-8 text as is, other bytes escaped,
/// long keys shortened.
#[derive(Clone, PartialEq, Eq)]
pub struct DisplayKey(pub Vec<u8>);

impl DisplayKey {
    pub(crate) fn new(key: &[u8]) -> Self {
        DisplayKey(key.to_vec())
    }
}

impl fmt::Display for DisplayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 64;
        let shown = &self.0[..self.0.len().min(SHOWN)];
        write!(f, "\"{}\"", shown.escape_ascii())?;
        if self.0.len() > SHOWN {
            write!(f, "... ({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

impl fmt::Debug for DisplayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The current value of a key when [`Tree::compare_and_swap`](crate::Tree::compare_and_swap)
/// found something other than what was expected. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a failed compare-and-swap wrote nothing"]
pub struct CasConflict {
    /// What the key holds now (`None`: absent).
    pub current: Option<Vec<u8>>,
}

impl fmt::Display for CasConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.current {
            Some(v) => write!(f, "compare-and-swap conflict: key holds {} bytes", v.len()),
            None => f.write_str("compare-and-swap conflict: key is absent"),
        }
    }
}

impl std::error::Error for CasConflict {}
