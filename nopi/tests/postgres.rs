//! The conformance suite on the real PostgreSQL (`DATABASE_URL`, by default
//! postgres://postgres:postgres@127.0.0.1:5432/test). Each case runs in a fresh schema.
#![cfg(feature = "postgres")]
#[macro_use]
mod conformance;
mod support;

conformance_suite!(support::postgres);

#[tokio::test]
async fn unreachable_server_is_unavailable() {
    let err = nopi::open("postgres://postgres@127.0.0.1:1/test")
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
}

#[tokio::test]
async fn bad_schema_parameter_is_refused() {
    let url = format!("{}?schema=Robert');DROP", support::database_url());
    assert!(matches!(
        nopi::open(&url).await,
        Err(nopi::Error::BadUrl { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temp_store_schema_is_dropped_with_it() {
    let temp = nopi::testing::TempStore::postgres();
    let schema = temp.url().rsplit("schema=").next().unwrap().to_owned();
    let exists = || async {
        let (client, conn) =
            tokio_postgres::connect(&support::database_url(), tokio_postgres::NoTls)
                .await
                .expect("PostgreSQL at DATABASE_URL is reachable");
        tokio::spawn(conn);
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
                &[&schema],
            )
            .await
            .unwrap()
            .get(0);
        n == 1
    };
    let store = temp.open().await.unwrap();
    store
        .tree("t")
        .await
        .unwrap()
        .insert("k", "v")
        .await
        .unwrap();
    assert!(exists().await, "the store lives in its own schema");
    drop(store);
    drop(temp);
    assert!(!exists().await, "the schema is gone with the TempStore");
}
