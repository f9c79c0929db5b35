//! Throwaway and fault-injecting stores for tests (feature `testing`).
//!
//! - [`TempStore`]: a fresh, isolated store of any backend.
//! - [`FaultyBackend`]: any engine with failures and delays switched on and
//!   off by the test ([`Faults`], [`Ops`]).
//!
//! Each [`TempStore`] is a fresh, isolated store that cleans up after
//! itself: a new in-memory store, a sled directory removed on drop, or — with
//! the `postgres` feature — a schema of its own in a real PostgreSQL,
//! dropped on drop. Tests of any crate built on nopi can run one suite
//! against every backend:
//!
//! ```
//! use nopi::testing::TempStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! for fixture in [TempStore::memory(), TempStore::sled()?] {
//!     let store = fixture.open().await?;
//!     store.tree("t").await?.insert("k", "v").await?;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }
//! ```

use std::any::Any;

use crate::{Result, Store, StoreBuilder};

mod faulty;

pub use faulty::{Faults, FaultyBackend, Ops};

/// The PostgreSQL used by [`TempStore::postgres`] when `DATABASE_URL` is unset.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432/test";

/// A store location that stays valid and isolated while this value lives.
pub struct TempStore {
    url: String,
    _guard: Box<dyn Any + Send>,
}

impl std::fmt::Debug for TempStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TempStore")
            .field("url", &crate::redact_url(&self.url))
            .finish()
    }
}

impl TempStore {
    /// A new in-memory store. Every [`open`](Self::open) of it is a new,
    /// empty store: memory stores are not shared by URL.
    pub fn memory() -> Self {
        TempStore {
            url: "memory:".to_owned(),
            _guard: Box::new(()),
        }
    }

    /// A sled store in a temporary directory, removed on drop.
    pub fn sled() -> std::io::Result<Self> {
        let dir = tempfile::tempdir()?;
        Ok(TempStore {
            url: format!("sled:{}", dir.path().join("db").display()),
            _guard: Box::new(dir),
        })
    }

    /// A fresh schema in the PostgreSQL at `DATABASE_URL` (default
    /// [`DEFAULT_DATABASE_URL`]), dropped with everything in it on drop.
    #[cfg(feature = "postgres")]
    pub fn postgres() -> Self {
        let base =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
        Self::postgres_at(&base)
    }

    /// A fresh schema in the PostgreSQL at `base_url`, dropped on drop.
    #[cfg(feature = "postgres")]
    pub fn postgres_at(base_url: &str) -> Self {
        let schema = format!("nopi_temp_{}", uuid::Uuid::new_v4().simple());
        let sep = if base_url.contains('?') { '&' } else { '?' };
        TempStore {
            url: format!("{base_url}{sep}schema={schema}"),
            _guard: Box::new(DropSchema {
                base: base_url.to_owned(),
                schema,
            }),
        }
    }

    /// The store's URL, for [`crate::open`] or another process.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// True when two opens see the same data (not so for `memory:`).
    pub fn is_shared(&self) -> bool {
        self.url != "memory:"
    }

    /// A builder for a handle on this store (to set limits).
    pub fn builder(&self) -> StoreBuilder {
        Store::builder(self.url.clone())
    }

    /// A handle on this store with default limits.
    pub async fn open(&self) -> Result<Store> {
        self.builder().open().await
    }
}

#[cfg(feature = "postgres")]
struct DropSchema {
    base: String,
    schema: String,
}

#[cfg(feature = "postgres")]
impl Drop for DropSchema {
    fn drop(&mut self) {
        let (base, schema) = (self.base.clone(), self.schema.clone());
        // Drop may run inside a runtime: clean up from a thread of our own.
        let cleanup = std::thread::spawn(move || -> std::result::Result<(), String> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .await
                    .map_err(|e| e.to_string())
            })
        });
        if let Ok(Err(e)) = cleanup.join() {
            tracing_free_warning(&self.schema, &e);
        }
    }
}

/// A leftover schema is harmless (every name is unique); say so where a test
/// runner shows it.
#[cfg(feature = "postgres")]
#[expect(
    clippy::print_stderr,
    reason = "test support without a logger: the test runner shows stderr"
)]
fn tracing_free_warning(schema: &str, e: &str) {
    eprintln!("nopi::testing: could not drop test schema {schema}: {e}");
}
