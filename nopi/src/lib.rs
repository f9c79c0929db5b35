//! One async storage facade for the whole IM framework: ordered key-value
//! [`Tree`]s and typed JSON [`Collection`]s, over sled (the default), memory
//! and PostgreSQL.
//!
//! Every crate of the family that persists anything does it through nopi, so
//! moving an application from an embedded sled file to a PostgreSQL cluster is
//! one URL:
//!
//! | URL | backend | feature |
//! |---|---|---|
//! | `memory:` | in-process `BTreeMap`s; nothing survives the process | always |
//! | `sled:./data` | [sled] in a directory; crash-safe, durable at [`Store::flush`] | `sled` (default) |
//! | `postgres://user@host/db` | PostgreSQL through a connection pool; one table, durable at commit | `postgres` |
//!
//! A [`Tree`] is an ordered byte map: `get`, `insert`, `remove`,
//! `compare_and_swap`, forward and reverse range and prefix [`Scan`]s with a
//! limit, atomic multi-key [`Batch`]es with expectations, and `flush`. A
//! [`Collection`] stores serde documents with ids and secondary indexes kept in
//! the same atomic batch as the document.
//!
//! # Example
//!
//! ```
//! use nopi::{Batch, Scan};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = nopi::open("memory:").await?; // or "sled:./data", "postgres://..."
//! let inbox = store.tree("inbox:alice").await?;
//!
//! inbox.insert("0001", "hello").await?;
//! inbox.apply(Batch::new().put("0002", "how are you").put("0003", "bye")).await?;
//!
//! let newest = inbox.scan(Scan::all().rev().limit(2)).await?;
//! assert_eq!(newest[0].1, b"bye");
//! assert_eq!(newest[1].1, b"how are you");
//!
//! store.flush().await?; // the durability point
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }
//! ```
//!
//! A store URL may carry a password; [`redact_url`] gives the URL to show in
//! logs and errors (nopi's own errors already show it so).
//!
//! # Backends
//!
//! The engines implement the small [`backend::Backend`] and
//! [`backend::TreeBackend`] traits; [`Store`] and [`Tree`] check names and sizes
//! (see [`Limits`]) before delegating, so every engine refuses the same inputs
//! with the same errors. One conformance suite (`nopi/tests/`) runs unchanged
//! against each of them, PostgreSQL included. [`StoreBuilder::open`] refuses
//! a limit that cannot work (zero) with [`Error::InvalidSetting`], naming it
//! and its allowed range, before any engine is touched.
//!
//! # Crate features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `sled` | yes | the `sled:<path>` backend |
//! | `postgres` | no | the `postgres://` backend (tokio-postgres with a deadpool pool) |
//! | `testing` | no | [`testing::TempStore`]: throwaway memory, sled and PostgreSQL stores for tests; [`testing::FaultyBackend`]: any engine with failures and delays injected on command |
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod backend;
mod batch;
mod collection;
mod commit;
mod error;
mod redact;
mod scan;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod tree;

pub use batch::{Batch, Op};
pub use collection::{Collection, CollectionBuilder};
pub use commit::GroupCommit;
pub use error::{CasConflict, DisplayKey, Error, Result};
pub use redact::redact_url;
pub use scan::Scan;
pub use store::{Limits, MAX_TREE_NAME, Store, StoreBuilder};
pub use tree::Tree;

/// Open the store named by `url` with default [`Limits`].
///
/// See [`StoreBuilder::open`] for the URLs; use [`Store::builder`] to change limits.
pub async fn open(url: &str) -> Result<Store> {
    Store::builder(url).open().await
}
