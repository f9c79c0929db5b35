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
    let url = format!("{}?schema=Robert');DROP", testkit::database_url());
    assert!(matches!(
        nopi::open(&url).await,
        Err(nopi::Error::BadUrl { .. })
    ));
}

#[tokio::test]
async fn errors_never_show_the_url_password() {
    // Refused URLs (nopi's own parameter, then one tokio-postgres refuses),
    // and an unreachable server.
    for url in [
        "postgres://chat:hunter2@127.0.0.1:5432/test?schema=Bad",
        "postgres://chat:hunter2@127.0.0.1:notaport/test",
        "postgresql://127.0.0.1:5432/test?user=chat&password=hunter2&schema=Bad",
        "postgres://chat:hunter2@127.0.0.1:1/test",
    ] {
        let err = nopi::open(url).await.unwrap_err();
        for shown in [err.to_string(), format!("{err:?}")] {
            assert!(
                !shown.contains("hunter2"),
                "{url} shows its password: {shown}"
            );
        }
        if let nopi::Error::BadUrl { url: named, .. } = &err {
            assert!(named.contains("***"), "{url}: the error names {named}");
            assert!(named.contains("chat"), "{url}: the user is kept in {named}");
        }
    }
}

#[test]
fn temp_store_debug_hides_the_password() {
    let temp = nopi::testing::TempStore::postgres_at("postgres://u:hunter2@127.0.0.1:1/db");
    let shown = format!("{temp:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("postgres://u:***@127.0.0.1:1/db"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temp_store_schema_is_dropped_with_it() {
    let temp = nopi::testing::TempStore::postgres();
    let schema = temp.url().rsplit("schema=").next().unwrap().to_owned();
    let exists = || async {
        let (client, conn) =
            tokio_postgres::connect(&testkit::database_url(), tokio_postgres::NoTls)
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
