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

pub use faulty::{FaultyBackend, Faults, Ops};

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
#[allow(clippy::print_stderr)]
fn tracing_free_warning(schema: &str, e: &str) {
    eprintln!("nopi::testing: could not drop test schema {schema}: {e}");
}

/// A TCP proxy in front of a server (PostgreSQL, RabbitMQ, ...) that a test
/// can cut and restore: on [`cut`](Self::cut) every connection through it dies
/// and new ones are closed at once, which is what a client sees when the
/// server goes away — without touching the server other tests share.
///
/// ```no_run
/// use nopi::testing::FaultProxy;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let proxy = FaultProxy::start("127.0.0.1:5432").await?;
/// let url = format!("postgres://postgres@{}/test", proxy.addr());
/// // ... open a store at `url`, then:
/// proxy.cut(); // the store is unreachable
/// proxy.restore(); // and back
/// # let _ = url;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct FaultProxy {
    addr: std::net::SocketAddr,
    state: std::sync::Arc<ProxyState>,
    accept: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct ProxyState {
    up: std::sync::atomic::AtomicBool,
    conns: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl ProxyState {
    fn kill_all(&self) {
        let conns = std::mem::take(&mut *self.conns.lock().unwrap_or_else(|e| e.into_inner()));
        for conn in conns {
            conn.abort();
        }
    }
}

impl FaultProxy {
    /// Listen on a free loopback port and forward every connection to `target`
    /// (`host:port`).
    pub async fn start(target: &str) -> std::io::Result<FaultProxy> {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = std::sync::Arc::new(ProxyState::default());
        state.up.store(true, Ordering::SeqCst);
        let target = target.to_owned();
        let accept = {
            let state = state.clone();
            tokio::spawn(async move {
                loop {
                    let mut client = match listener.accept().await {
                        Ok((client, _)) => client,
                        Err(_) => {
                            // Out of descriptors, say: try again shortly.
                            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                    let _ = client.set_nodelay(true);
                    // Checked under the lock that `cut` takes after clearing
                    // `up`: a connection accepted while cutting is either
                    // killed by the cut or refused here, never left alive.
                    let mut conns = state.conns.lock().unwrap_or_else(|e| e.into_inner());
                    if !state.up.load(Ordering::SeqCst) {
                        continue; // dropped: closed at once
                    }
                    let target = target.clone();
                    let conn = tokio::spawn(async move {
                        if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                            let _ = server.set_nodelay(true);
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    conns.retain(|c| !c.is_finished());
                    conns.push(conn);
                }
            })
        };
        Ok(FaultProxy {
            addr,
            state,
            accept,
        })
    }

    /// The address clients connect to instead of the target.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Kill every connection through the proxy and refuse new ones.
    pub fn cut(&self) {
        self.state
            .up
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.state.kill_all();
    }

    /// Accept connections again.
    pub fn restore(&self) {
        self.state
            .up
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// True while connections are forwarded.
    pub fn is_up(&self) -> bool {
        self.state.up.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
