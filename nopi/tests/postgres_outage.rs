//! A real PostgreSQL outage: the store reaches the server through a
//! [`FaultProxy`] that the test cuts (every connection dies, new ones are
//! closed at once) and later restores, while the server itself, shared with
//! other tests, stays up.
//!
//! What holds, and why:
//!
//! - During the outage every operation (get, insert, batch, scan, collection
//!   insert, opening a tree) fails at once with [`nopi::Error::Unavailable`]
//!   ("postgres store unavailable: ..."): the pool's connections died with the
//!   cut, and each new connection is closed by the proxy during the handshake.
//!   Nothing waits for the pool's 10 s wait timeout.
//! - Nothing committed before the cut is lost, and a write that failed is not
//!   half applied: a batch is one transaction, and a transaction whose
//!   connection dies before `COMMIT` is rolled back by the server — even when
//!   the cut hits it mid-statement, with some of its rows already written.
//! - After `restore()` the same `Store` works again by itself, and the very
//!   first operation succeeds: the pool recycles with
//!   `RecyclingMethod::Fast`, which does no round trip but does check
//!   `Client::is_closed`, and a pooled connection is closed as soon as its
//!   connection task has read the end of its (killed) socket, right after the
//!   cut. Such connections are dropped at checkout and replaced by new ones.
//! - Only when the restore comes before the idle connections could notice
//!   (cut and restore back to back) can the first operation get a dead one and
//!   fail, with `Unavailable`. The backend then drops every idle connection of
//!   the pool (they most likely died together), so that is the only failure,
//!   not one per pooled connection.
//! - A server that accepts connections but never answers is bounded when
//!   connecting: opening the store (and any new pooled connection) gives up
//!   with `Unavailable` after the pool's 5 s create timeout. A server that
//!   stops answering on an already established connection is not bounded by
//!   the client (no per-operation timeout); a dead host or a network that
//!   drops packets is, on Linux, by the 30 s TCP user timeout the backend sets
//!   (not exercised here: that takes dropping packets, not closing sockets).
#![cfg(feature = "postgres")]
use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

use nopi::testing::TempStore;
use nopi::{Batch, Scan, Store};
use serde::{Deserialize, Serialize};
use testkit::{DEFAULT_DATABASE_URL, FaultProxy, database_url};

/// How long a failure during the outage may take: "at once" on a quiet
/// machine; generous here, and still well under the pool's wait timeout (10 s).
const PROMPT: Duration = Duration::from_secs(8);
/// A bound on every operation, so that a hang fails the test instead of
/// stalling it.
const HANG: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Note {
    text: String,
}

fn note(text: &str) -> Note {
    Note {
        text: text.to_owned(),
    }
}

/// `url` split around its `host:port` (port 5432 if absent).
fn split_authority(url: &str) -> (&str, String, &str) {
    let (scheme, rest) = url
        .split_once("://")
        .unwrap_or_else(|| panic!("DATABASE_URL must be a postgres:// URL, not {url:?}"));
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let head = &url[..scheme.len() + 3 + authority.len() - host_port.len()];
    assert!(
        !host_port.is_empty(),
        "DATABASE_URL needs a TCP host for the proxy: {url:?}"
    );
    let has_port = host_port
        .rsplit_once(':')
        .is_some_and(|(h, p)| p.parse::<u16>().is_ok() && (!h.contains(':') || h.ends_with(']')));
    let host_port = if has_port {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    (head, host_port, tail)
}

/// A fresh store location (its own schema, dropped at the end) and a proxy in
/// front of its server.
async fn setup() -> (TempStore, FaultProxy, String) {
    let temp = TempStore::postgres();
    let (head, target, tail) = split_authority(temp.url());
    let proxy = FaultProxy::start(&target).await.expect("start the proxy");
    let url = format!("{head}{}{tail}", proxy.addr());
    (temp, proxy, url)
}

async fn open(url: &str) -> Store {
    match tokio::time::timeout(HANG, nopi::open(url)).await {
        Ok(Ok(store)) => store,
        Ok(Err(e)) => panic!(
            "PostgreSQL (DATABASE_URL, default {}) is required by these tests: {e}",
            DEFAULT_DATABASE_URL
        ),
        Err(_) => panic!("opening {url} hung"),
    }
}

/// `op` succeeds (within [`HANG`]).
async fn ok<T, F: Future<Output = nopi::Result<T>>>(what: &str, op: F) -> T {
    match tokio::time::timeout(HANG, op).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("{what} failed: {e} ({e:?})"),
        Err(_) => panic!("{what} hung for {HANG:?}"),
    }
}

/// `op` fails promptly, with an error that says the store is unavailable.
async fn unavailable<T: Debug>(what: &str, op: impl Future<Output = nopi::Result<T>>) {
    unavailable_within(PROMPT, what, op).await;
}

/// `op` fails within `bound`, with an error that says the store is
/// unavailable; that error.
async fn unavailable_within<T: Debug>(
    bound: Duration,
    what: &str,
    op: impl Future<Output = nopi::Result<T>>,
) -> nopi::Error {
    let start = Instant::now();
    let err = match tokio::time::timeout(HANG, op).await {
        Ok(Ok(v)) => panic!("{what} succeeded: {v:?}"),
        Ok(Err(e)) => e,
        Err(_) => panic!("{what} hung for {HANG:?}"),
    };
    let took = start.elapsed();
    assert!(err.is_unavailable(), "{what}: not Unavailable: {err:?}");
    let msg = err.to_string();
    let reason = msg.strip_prefix("postgres store unavailable: ");
    assert!(
        reason.is_some_and(|r| !r.is_empty()),
        "{what}: unclear message {msg:?}"
    );
    assert!(took < bound, "{what} took {took:?} to fail ({msg})");
    err
}

/// Run futures concurrently and collect their outputs in order.
async fn spawn_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_fail_unavailable_during_an_outage_and_the_same_store_recovers() {
    let (temp, proxy, url) = setup().await;
    let store = open(&url).await;
    let tree = ok("tree", store.tree("t")).await;
    let notes = ok("collection", store.collection::<Note>("notes").open()).await;

    // Before: writes go through, on several pooled connections at once.
    let writes = (0..8).map(|i| {
        let tree = tree.clone();
        async move { tree.insert(format!("k{i}"), format!("v{i}")).await }
    });
    for r in spawn_all(writes).await {
        r.expect("insert before the outage");
    }
    ok(
        "batch",
        tree.apply(Batch::new().put("b1", "1").put("b2", "2").remove("k7")),
    )
    .await;
    let before_id = ok("collection insert", notes.insert(&note("before"))).await;

    proxy.cut();
    assert!(!proxy.is_up());
    unavailable("get", tree.get("k0")).await;
    unavailable("insert", tree.insert("during", "x")).await;
    unavailable(
        "batch",
        tree.apply(Batch::new().put("b3", "3").remove("b1").expect_absent("b4")),
    )
    .await;
    unavailable("scan", tree.scan(Scan::all())).await;
    unavailable("collection insert", notes.insert(&note("during"))).await;
    unavailable("open tree", store.tree("other")).await;
    unavailable("len", tree.len()).await;

    // Nothing committed is lost: the server, reached directly, has it all.
    {
        let direct = open(temp.url()).await;
        let t = ok("direct tree", direct.tree("t")).await;
        let keys: Vec<Vec<u8>> = ok("direct scan", t.scan(Scan::all()))
            .await
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let expected: Vec<Vec<u8>> = ["b1", "b2", "k0", "k1", "k2", "k3", "k4", "k5", "k6"]
            .iter()
            .map(|k| k.as_bytes().to_vec())
            .collect();
        assert_eq!(keys, expected);
    }

    proxy.restore();
    // The same handle, not reopened: the very first operation succeeds.
    assert_eq!(
        ok("first get after restore", tree.get("k0"))
            .await
            .as_deref(),
        Some(&b"v0"[..])
    );
    let all = ok("scan after restore", tree.scan(Scan::all())).await;
    let expected: Vec<(Vec<u8>, Vec<u8>)> = [
        ("b1", "1"),
        ("b2", "2"),
        ("k0", "v0"),
        ("k1", "v1"),
        ("k2", "v2"),
        ("k3", "v3"),
        ("k4", "v4"),
        ("k5", "v5"),
        ("k6", "v6"),
    ]
    .iter()
    .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
    .collect();
    assert_eq!(
        all, expected,
        "everything before the cut, nothing from the outage"
    );
    let docs = ok("list", notes.list(None, 10)).await;
    assert_eq!(docs, vec![(before_id, note("before"))]);
    assert_eq!(
        ok("tree names", store.tree_names()).await,
        vec!["notes".to_owned(), "t".to_owned()]
    );

    // And writes work again, on as many connections as before.
    let writes = (0..8).map(|i| {
        let tree = tree.clone();
        async move { tree.insert(format!("after{i}"), "y").await }
    });
    for r in spawn_all(writes).await {
        r.expect("insert after the outage");
    }
    ok("collection insert after", notes.insert(&note("after"))).await;
    assert_eq!(ok("len", tree.len()).await, 17);
    assert_eq!(ok("list", notes.list(None, 10)).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_pooled_connections_killed_by_an_outage_are_replaced_on_the_first_use() {
    let (_temp, proxy, url) = setup().await;
    let store = open(&url).await;
    let tree = ok("tree", store.tree("t")).await;
    // Several connections in the pool, all idle when the outage comes.
    let writes = (0..8).map(|i| {
        let tree = tree.clone();
        async move { tree.insert(format!("k{i}"), "v").await }
    });
    for r in spawn_all(writes).await {
        r.expect("insert before the outage");
    }

    proxy.cut();
    // No request at all during the outage; give the (local) end of stream
    // time to reach the idle connections.
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.restore();

    // The first operation checks out a dead connection, sees it closed and
    // takes a new one; so does every one of many concurrent operations.
    assert_eq!(
        ok("first get after restore", tree.get("k0"))
            .await
            .as_deref(),
        Some(&b"v"[..])
    );
    let reads = (0..8).map(|i| {
        let tree = tree.clone();
        async move { tree.get(format!("k{i}")).await }
    });
    for r in spawn_all(reads).await {
        assert_eq!(r.expect("get after the outage").as_deref(), Some(&b"v"[..]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_cut_mid_transaction_is_rolled_back() {
    let (temp, proxy, url) = setup().await;
    let store = open(&url).await;
    let tree = ok("tree", store.tree("t")).await;
    ok("insert", tree.insert("z", "old")).await;
    let schema = temp.url().rsplit("schema=").next().unwrap().to_owned();

    // Another session holds the row lock on `z`, so that the batch's upsert
    // writes `a1` and `a2` (keys in order) and then waits on `z`, mid-statement.
    let (locker, conn) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL directly");
    tokio::spawn(conn);
    locker.batch_execute("BEGIN").await.unwrap();
    let locked = locker
        .query(
            &format!("SELECT v FROM {schema}.nopi_kv WHERE tree = 't' AND k = 'z' FOR UPDATE"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(locked.len(), 1);

    let batch = {
        let tree = tree.clone();
        tokio::spawn(async move {
            tree.apply(Batch::new().put("a1", "1").put("a2", "2").put("z", "new"))
                .await
        })
    };
    // Wait until the batch's statement is blocked on the lock.
    let waiting = format!("%{schema}.nopi_kv%");
    let deadline = Instant::now() + HANG;
    loop {
        let n: i64 = locker
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE wait_event_type = 'Lock' AND query LIKE $1",
                &[&waiting],
            )
            .await
            .unwrap()
            .get(0);
        if n == 1 {
            break;
        }
        assert!(!batch.is_finished(), "the batch did not wait for the lock");
        assert!(
            Instant::now() < deadline,
            "the batch never reached the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    proxy.cut();
    unavailable("batch cut mid-transaction", async {
        batch.await.expect("batch task")
    })
    .await;
    // Let the orphaned transaction proceed: it must still roll back.
    locker.batch_execute("ROLLBACK").await.unwrap();
    proxy.restore();

    let all = ok("scan after restore", tree.scan(Scan::all())).await;
    assert_eq!(
        all,
        vec![(b"z".to_vec(), b"old".to_vec())],
        "the cut batch was not half applied"
    );
    // And the keys it touched are free again for the same handle.
    ok(
        "the same batch again",
        tree.apply(Batch::new().put("a1", "1").put("a2", "2").put("z", "new")),
    )
    .await;
    assert_eq!(ok("len", tree.len()).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_fails_the_open_within_the_create_timeout() {
    // Accepts connections and holds them, answering nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let base = database_url();
    let (head, _, tail) = split_authority(&base);
    let url = format!("{head}{addr}{tail}");
    let err = unavailable_within(Duration::from_secs(30), "open", nopi::open(&url)).await;
    assert!(
        err.to_string().contains("does not answer"),
        "unclear message: {err}"
    );
    hold.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_restored_at_once_costs_at_most_one_failed_operation() {
    let (_temp, proxy, url) = setup().await;
    let store = open(&url).await;
    let tree = ok("tree", store.tree("t")).await;
    for round in 0..10 {
        // Several connections in the pool, idle when the cut comes.
        let writes = (0..4).map(|i| {
            let tree = tree.clone();
            async move { tree.insert(format!("k{i}"), format!("{round}")).await }
        });
        for r in spawn_all(writes).await {
            r.expect("insert before the cut");
        }
        // Restored before the idle connections can notice that they died:
        // the first operation may get one of them and fail, which drops
        // the others; every later one succeeds.
        proxy.cut();
        proxy.restore();
        let mut failures = Vec::new();
        for i in 0..6 {
            match tokio::time::timeout(HANG, tree.get(format!("k{}", i % 4))).await {
                Ok(Ok(v)) => assert_eq!(v, Some(format!("{round}").into_bytes())),
                Ok(Err(e)) => {
                    assert!(e.is_unavailable(), "round {round}: {e:?}");
                    failures.push(e.to_string());
                }
                Err(_) => panic!("round {round}: get {i} hung"),
            }
        }
        assert!(
            failures.len() <= 1,
            "round {round}: {} operations failed after the restore: {failures:?}",
            failures.len()
        );
    }
}
