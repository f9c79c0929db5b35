//! The `postgres://` backend: every tree in one table, through a connection pool.
//!
//! ```text
//! nopi_trees (name TEXT PRIMARY KEY)                       -- every tree, even empty ones
//! nopi_kv    (tree TEXT, k BYTEA, v BYTEA, PRIMARY KEY (tree, k))
//! ```
//!
//! One table with a tree column (rather than a table per tree) keeps opening a
//! tree a single insert, lets a batch span any keys of a tree in one statement
//! pair, and needs no DDL after start. `BYTEA` compares bytewise, so
//! `ORDER BY k` is the same order as sled and memory. Writes are durable at
//! commit, so `flush` has nothing to do.
//!
//! Concurrency: compare-and-swap is one conditional statement. A batch is one
//! transaction that first locks every key it has an expectation on (`SELECT ...
//! FOR UPDATE` for keys expected present, a placeholder insert for keys expected
//! absent, so a concurrent writer of the same key waits), then writes the
//! batch's final state with one upsert and one delete. Deadlocks and
//! serialization failures are retried.
//!
//! An optional `schema=<name>` query parameter in the URL keeps the tables in
//! that schema (created if missing), so several stores can share a database.
//!
//! Outages: an operation whose connection is lost, or that cannot get one,
//! fails with [`Error::Unavailable`]; the store needs no reopening, as the pool
//! drops closed connections at checkout and connects anew. Bounds: connecting
//! (TCP, startup, authentication) gives up after 5 s, waiting for a busy pool
//! after 10 s; on Linux, data the server leaves unacknowledged for 30 s (dead
//! host, dropped packets) closes the connection (`tcp_user_timeout`, unless the
//! URL sets one). A server that stops answering on an established connection
//! while its host stays up is not bounded by the client.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime, TimeoutType,
};
use tokio_postgres::error::SqlState;

use super::{Backend, TreeBackend};
use crate::batch::Op;
use crate::error::DisplayKey;
use crate::{Batch, CasConflict, Error, Result, Scan};

const NAME: &str = "postgres";
const RETRIES: usize = 8;
/// How long a new connection (TCP, startup, authentication) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an operation waits for a connection when all are busy.
const WAIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long checking a pooled connection may take.
const RECYCLE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long sent data may stay unacknowledged before the connection is
/// closed, unless the URL sets `tcp_user_timeout` (Linux only).
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// Table names, qualified by the store's schema.
#[derive(Debug)]
struct Tables {
    trees: String,
    kv: String,
}

/// The PostgreSQL backend.
#[derive(Clone)]
pub struct PostgresBackend {
    pool: Pool,
    tables: Arc<Tables>,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("tables", &self.tables)
            .field("pool", &self.pool.status())
            .finish()
    }
}

/// True when `e` means the connection is gone (or going), not that a
/// statement failed.
fn is_lost(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        // Class 08: connection exception; 57P0x: the server is shutting
        // down; class 53: insufficient resources (too many connections,
        // disk full, out of memory) — all worth retrying later.
        Some(c) => ["08", "57P0", "53"].iter().any(|p| c.code().starts_with(p)),
        // No SQL state: the connection closed, or an I/O error on its socket
        // (not, say, a value that does not convert).
        None => {
            e.is_closed() || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
        }
    }
}

fn fail(e: tokio_postgres::Error) -> Error {
    if is_lost(&e) {
        Error::Unavailable {
            backend: NAME,
            source: e.into(),
        }
    } else {
        Error::backend(NAME, e)
    }
}

/// [`fail`], for an error on a connection of `pool`. When that connection was
/// lost, the pool's idle connections most likely went with it (the server
/// restarted, the network dropped), even if they have not noticed yet: drop
/// them, so that the next operations connect anew instead of each failing on
/// one of them.
fn fail_on(pool: &Pool) -> impl Fn(tokio_postgres::Error) -> Error + '_ {
    move |e| {
        if is_lost(&e) {
            drop(pool.retain(|_, _| false));
        }
        fail(e)
    }
}

fn pool_fail(e: PoolError) -> Error {
    let source = match e {
        PoolError::Backend(e) => return fail(e),
        PoolError::Timeout(TimeoutType::Create) => {
            format!("could not connect within {CONNECT_TIMEOUT:?}: the server does not answer")
                .into()
        }
        PoolError::Timeout(TimeoutType::Wait) => {
            format!("every pooled connection stayed busy for {WAIT_TIMEOUT:?}").into()
        }
        PoolError::Timeout(TimeoutType::Recycle) => {
            format!("checking a pooled connection took over {RECYCLE_TIMEOUT:?}").into()
        }
        other => other.into(),
    };
    Error::Unavailable {
        backend: NAME,
        source,
    }
}

fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    )
}

/// Split nopi's own `schema=` parameter off a PostgreSQL URL.
fn split_schema(url: &str) -> Result<(String, Option<String>)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None));
    };
    let mut schema = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.strip_prefix("schema=") {
            Some(s) => {
                schema = Some(s.to_owned());
                false
            }
            None => !kv.is_empty(),
        })
        .collect();
    if let Some(s) = &schema {
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !s.as_bytes()[0].is_ascii_digit();
        if !ok {
            return Err(Error::BadUrl {
                url: crate::redact_url(url),
                reason: format!(
                    "schema {s:?} must be 1 to 63 of [a-z0-9_], not starting with a digit"
                ),
            });
        }
    }
    let base = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((base, schema))
}

/// The connection settings of `pg_url` (`url` without nopi's parameters),
/// with nopi's defaults for what the URL leaves unset.
fn pg_config(url: &str, pg_url: &str) -> Result<tokio_postgres::Config> {
    let mut config: tokio_postgres::Config =
        pg_url
            .parse()
            .map_err(|e: tokio_postgres::Error| Error::BadUrl {
                url: crate::redact_url(url),
                reason: e.to_string(),
            })?;
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    Ok(config)
}

impl PostgresBackend {
    /// Connect to `url` with a pool of `pool_size` connections and create the
    /// tables if needed.
    pub async fn open(url: &str, pool_size: usize) -> Result<Self> {
        let (pg_url, schema) = split_schema(url)?;
        let config = pg_config(url, &pg_url)?;
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(WAIT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(RECYCLE_TIMEOUT))
            .build()
            .map_err(|e| Error::backend(NAME, e))?;
        let prefix = schema.as_ref().map(|s| format!("{s}.")).unwrap_or_default();
        let tables = Arc::new(Tables {
            trees: format!("{prefix}nopi_trees"),
            kv: format!("{prefix}nopi_kv"),
        });
        let backend = PostgresBackend { pool, tables };
        backend.create_tables(schema.as_deref()).await?;
        Ok(backend)
    }

    async fn client(&self) -> Result<Object> {
        self.pool.get().await.map_err(pool_fail)
    }

    fn fail(&self) -> impl Fn(tokio_postgres::Error) -> Error + '_ {
        fail_on(&self.pool)
    }

    async fn create_tables(&self, schema: Option<&str>) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.fail())?;
        // Concurrent `CREATE ... IF NOT EXISTS` can collide in the catalog;
        // serialize the DDL of every process opening a store.
        tx.execute("SELECT pg_advisory_xact_lock(7391662090125541)", &[])
            .await
            .map_err(self.fail())?;
        if let Some(schema) = schema {
            tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .await
                .map_err(self.fail())?;
        }
        let Tables { trees, kv } = &*self.tables;
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {trees} (name TEXT COLLATE \"C\" PRIMARY KEY);
             CREATE TABLE IF NOT EXISTS {kv} (
                 tree TEXT COLLATE \"C\" NOT NULL,
                 k BYTEA NOT NULL,
                 v BYTEA NOT NULL,
                 PRIMARY KEY (tree, k)
             );"
        ))
        .await
        .map_err(self.fail())?;
        tx.commit().await.map_err(self.fail())
    }
}

#[async_trait]
impl Backend for PostgresBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn open_tree(&self, name: &str) -> Result<Arc<dyn TreeBackend>> {
        let client = self.client().await?;
        let sql = format!(
            "INSERT INTO {} (name) VALUES ($1) ON CONFLICT DO NOTHING",
            self.tables.trees
        );
        let stmt = client.prepare_cached(&sql).await.map_err(self.fail())?;
        client.execute(&stmt, &[&name]).await.map_err(self.fail())?;
        Ok(Arc::new(PostgresTree {
            pool: self.pool.clone(),
            tables: self.tables.clone(),
            tree: name.to_owned(),
        }))
    }

    async fn tree_names(&self) -> Result<Vec<String>> {
        let client = self.client().await?;
        let sql = format!("SELECT name FROM {} ORDER BY name", self.tables.trees);
        let rows = client.query(&sql, &[]).await.map_err(self.fail())?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn drop_tree(&self, name: &str) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.fail())?;
        let Tables { trees, kv } = &*self.tables;
        let existed = tx
            .execute(&format!("DELETE FROM {trees} WHERE name = $1"), &[&name])
            .await
            .map_err(self.fail())?;
        tx.execute(&format!("DELETE FROM {kv} WHERE tree = $1"), &[&name])
            .await
            .map_err(self.fail())?;
        tx.commit().await.map_err(self.fail())?;
        Ok(existed > 0)
    }

    async fn flush(&self) -> Result<()> {
        Ok(())
    }
}

/// One tree of the PostgreSQL backend.
pub struct PostgresTree {
    pool: Pool,
    tables: Arc<Tables>,
    tree: String,
}

impl std::fmt::Debug for PostgresTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresTree")
            .field("tree", &self.tree)
            .finish()
    }
}

impl PostgresTree {
    async fn client(&self) -> Result<Object> {
        self.pool.get().await.map_err(pool_fail)
    }

    fn fail(&self) -> impl Fn(tokio_postgres::Error) -> Error + '_ {
        fail_on(&self.pool)
    }

    /// Run one statement (cached) and return the first column of each row.
    async fn query_values(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Vec<u8>>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(self.fail())?;
        let rows = client.query(&stmt, params).await.map_err(self.fail())?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(self.fail())?;
        client.execute(&stmt, params).await.map_err(self.fail())
    }

    async fn try_apply(&self, batch: &Batch) -> Result<Result<(), tokio_postgres::Error>> {
        let kv = &self.tables.kv;
        let tree = &self.tree;
        let mut client = self.client().await?;
        let tx = match client.transaction().await {
            Ok(tx) => tx,
            Err(e) => return Ok(Err(e)),
        };
        macro_rules! q {
            ($e:expr) => {
                match $e.await {
                    Ok(v) => v,
                    Err(e) => return Ok(Err(e)),
                }
            };
        }

        // Expectations, one per key; two different expectations on one key
        // cannot both hold.
        let mut expects: BTreeMap<&[u8], Option<&[u8]>> = BTreeMap::new();
        for (k, v) in &batch.expects {
            if let Some(prev) = expects.insert(k, v.as_deref())
                && prev != v.as_deref()
            {
                return Err(Error::Conflict {
                    key: DisplayKey::new(k),
                });
            }
        }
        let present: Vec<&[u8]> = expects
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| *k)
            .collect();
        let absent: Vec<&[u8]> = expects
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| *k)
            .collect();
        if !present.is_empty() {
            let sql = format!(
                "SELECT k, v FROM {kv} WHERE tree = $1 AND k = ANY($2) ORDER BY k FOR UPDATE"
            );
            let stmt = q!(tx.prepare_cached(&sql));
            let rows = q!(tx.query(&stmt, &[tree, &present]));
            let found: BTreeMap<Vec<u8>, Vec<u8>> =
                rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            for k in &present {
                if found.get(*k).map(Vec::as_slice) != expects[k] {
                    return Err(Error::Conflict {
                        key: DisplayKey::new(k),
                    });
                }
            }
        }
        if !absent.is_empty() {
            // Placeholders lock the absent keys until commit; the batch's final
            // state below overwrites or deletes each of them.
            let sql = format!(
                "INSERT INTO {kv} (tree, k, v) SELECT $1, k, '' FROM unnest($2::bytea[]) AS t(k)
                 ON CONFLICT DO NOTHING RETURNING k"
            );
            let stmt = q!(tx.prepare_cached(&sql));
            let rows = q!(tx.query(&stmt, &[tree, &absent]));
            if rows.len() != absent.len() {
                let locked: std::collections::BTreeSet<Vec<u8>> =
                    rows.iter().map(|r| r.get(0)).collect();
                let taken = absent
                    .iter()
                    .find(|k| !locked.contains(**k))
                    .copied()
                    .unwrap_or_default();
                return Err(Error::Conflict {
                    key: DisplayKey::new(taken),
                });
            }
        }

        // The batch's final state: the last write to each key wins.
        let mut last: BTreeMap<&[u8], Option<&[u8]>> = BTreeMap::new();
        for op in &batch.ops {
            match op {
                Op::Put(k, v) => last.insert(k, Some(v)),
                Op::Remove(k) => last.insert(k, None),
            };
        }
        for k in &absent {
            last.entry(k).or_insert(None);
        }
        let (put_keys, put_values): (Vec<&[u8]>, Vec<&[u8]>) =
            last.iter().filter_map(|(k, v)| v.map(|v| (*k, v))).unzip();
        let removes: Vec<&[u8]> = last
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| *k)
            .collect();
        if !put_keys.is_empty() {
            let sql = format!(
                "INSERT INTO {kv} (tree, k, v) SELECT $1, k, v FROM unnest($2::bytea[], $3::bytea[]) AS t(k, v)
                 ON CONFLICT (tree, k) DO UPDATE SET v = EXCLUDED.v"
            );
            let stmt = q!(tx.prepare_cached(&sql));
            q!(tx.execute(&stmt, &[tree, &put_keys, &put_values]));
        }
        if !removes.is_empty() {
            let sql = format!("DELETE FROM {kv} WHERE tree = $1 AND k = ANY($2)");
            let stmt = q!(tx.prepare_cached(&sql));
            q!(tx.execute(&stmt, &[tree, &removes]));
        }
        Ok(tx.commit().await)
    }
}

#[async_trait]
impl TreeBackend for PostgresTree {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let sql = format!(
            "SELECT v FROM {} WHERE tree = $1 AND k = $2",
            self.tables.kv
        );
        Ok(self.query_values(&sql, &[&self.tree, &key]).await?.pop())
    }

    async fn insert(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let sql = format!(
            "INSERT INTO {} (tree, k, v) VALUES ($1, $2, $3)
             ON CONFLICT (tree, k) DO UPDATE SET v = EXCLUDED.v",
            self.tables.kv
        );
        self.execute(&sql, &[&self.tree, &key, &value])
            .await
            .map(drop)
    }

    async fn remove(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let sql = format!(
            "DELETE FROM {} WHERE tree = $1 AND k = $2 RETURNING v",
            self.tables.kv
        );
        Ok(self.query_values(&sql, &[&self.tree, &key]).await?.pop())
    }

    async fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Result<(), CasConflict>> {
        let kv = &self.tables.kv;
        let t = &self.tree;
        let swapped = match (expected, new) {
            (None, Some(new)) => {
                let sql = format!(
                    "INSERT INTO {kv} (tree, k, v) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
                );
                self.execute(&sql, &[t, &key, &new]).await? == 1
            }
            (Some(old), Some(new)) => {
                let sql = format!("UPDATE {kv} SET v = $3 WHERE tree = $1 AND k = $2 AND v = $4");
                self.execute(&sql, &[t, &key, &new, &old]).await? == 1
            }
            (Some(old), None) => {
                let sql = format!("DELETE FROM {kv} WHERE tree = $1 AND k = $2 AND v = $3");
                self.execute(&sql, &[t, &key, &old]).await? == 1
            }
            (None, None) => self.get(key).await?.is_none(),
        };
        if swapped {
            Ok(Ok(()))
        } else {
            Ok(Err(CasConflict {
                current: self.get(key).await?,
            }))
        }
    }

    async fn scan(&self, scan: &Scan) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if scan.is_empty_range() {
            return Ok(Vec::new());
        }
        let mut sql = format!("SELECT k, v FROM {} WHERE tree = $1", self.tables.kv);
        let mut bounds: Vec<&[u8]> = Vec::new();
        for (bound, incl, excl) in [(scan.lower(), ">=", ">"), (scan.upper(), "<=", "<")] {
            let (op, key) = match bound {
                Bound::Included(k) => (incl, k),
                Bound::Excluded(k) => (excl, k),
                Bound::Unbounded => continue,
            };
            bounds.push(key);
            sql.push_str(&format!(" AND k {op} ${}", bounds.len() + 1));
        }
        let order = if scan.is_reverse() { "DESC" } else { "ASC" };
        sql.push_str(&format!(" ORDER BY k {order} LIMIT ${}", bounds.len() + 2));
        let limit: Option<i64> = scan
            .max_entries()
            .map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&self.tree];
        for b in &bounds {
            params.push(b);
        }
        params.push(&limit);
        let client = self.client().await?;
        let stmt = client.prepare_cached(&sql).await.map_err(self.fail())?;
        let rows = client.query(&stmt, &params).await.map_err(self.fail())?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn apply(&self, batch: Batch) -> Result<()> {
        for _ in 0..RETRIES {
            match self.try_apply(&batch).await? {
                Ok(()) => return Ok(()),
                Err(e) if retryable(&e) => tokio::task::yield_now().await,
                Err(e) => return Err(self.fail()(e)),
            }
        }
        Err(Error::Contended {
            key: DisplayKey::new(batch.ops.first().map(Op::key).unwrap_or_default()),
            attempts: RETRIES as u32,
        })
    }

    async fn len(&self) -> Result<usize> {
        let sql = format!("SELECT count(*) FROM {} WHERE tree = $1", self.tables.kv);
        let client = self.client().await?;
        let stmt = client.prepare_cached(&sql).await.map_err(self.fail())?;
        let row = client
            .query_one(&stmt, &[&self.tree])
            .await
            .map_err(self.fail())?;
        let n: i64 = row.get(0);
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    async fn flush(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{TCP_USER_TIMEOUT, pg_config, split_schema};
    use std::time::Duration;

    #[test]
    fn tcp_user_timeout_defaults_unless_the_url_sets_it() {
        let url = "postgres://u@h/db";
        let config = pg_config(url, url).unwrap();
        assert_eq!(config.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));
        let url = "postgres://u@h/db?tcp_user_timeout=7";
        let config = pg_config(url, url).unwrap();
        assert_eq!(config.get_tcp_user_timeout(), Some(&Duration::from_secs(7)));
    }

    #[test]
    fn schema_parameter_is_split_off() {
        let (url, schema) = split_schema("postgres://u@h/db?schema=t1&connect_timeout=5").unwrap();
        assert_eq!(url, "postgres://u@h/db?connect_timeout=5");
        assert_eq!(schema.as_deref(), Some("t1"));
        let (url, schema) = split_schema("postgres://u@h/db").unwrap();
        assert_eq!((url.as_str(), schema), ("postgres://u@h/db", None));
        assert!(split_schema("postgres://u@h/db?schema=x;drop").is_err());
    }
}
