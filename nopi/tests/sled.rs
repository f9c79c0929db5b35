//! The conformance suite on the sled backend, and what only sled has.
#[macro_use]
mod conformance;
mod support;

conformance_suite!(support::sled);

#[tokio::test]
async fn data_survives_reopen_after_flush() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sled:{}", dir.path().display());
    {
        let store = nopi::open(&url).await.unwrap();
        store
            .tree("t")
            .await
            .unwrap()
            .insert("k", "v")
            .await
            .unwrap();
        store.flush().await.unwrap();
    }
    let store = nopi::open(&url).await.unwrap();
    assert_eq!(store.tree_names().await.unwrap(), ["t"]);
    assert_eq!(
        store
            .tree("t")
            .await
            .unwrap()
            .get("k")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"v"[..])
    );
}

#[tokio::test]
async fn bad_urls_are_refused_clearly() {
    for url in ["sled:", "mysql://x", "", "memory"] {
        let err = nopi::open(url).await.unwrap_err();
        assert!(matches!(err, nopi::Error::BadUrl { .. }), "{url}: {err:?}");
        assert!(err.to_string().contains("unsupported store url"), "{err}");
    }
}
