//! The conformance suite: every case runs unchanged against every backend.
//!
//! A backend's test file calls `conformance_suite!(support::<fixture>)`, which
//! expands to one `#[tokio::test]` per case, plus
//! `conformance_case_list_is_complete`, which fails if an
//! `async fn <case>(fx: &Fixture)` of this file is missing from the list.
#![expect(
    clippy::unwrap_used,
    reason = "test code: the cases are plain functions called by `#[test]`s, a failed unwrap is a failed test"
)]

use std::collections::BTreeSet;

use nopi::{Batch, Error, Scan, Store, Tree};
use serde::{Deserialize, Serialize};

use crate::support::Fixture;

macro_rules! cases {
    ($fixture:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let fixture = $fixture().await;
                $crate::conformance::$case(&fixture).await;
            }
        )*

        /// Every case of the suite is in the list above: one left out fails here.
        #[test]
        fn conformance_case_list_is_complete() {
            testkit::cases::assert_all_listed(
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/conformance/mod.rs")),
                "&Fixture",
                &[$(stringify!($case)),*],
            );
        }
    };
}

macro_rules! conformance_suite {
    ($fixture:path) => {
        cases!($fixture;
            get_missing_is_none, insert_then_get, insert_overwrites, remove_returns_old_value,
            empty_key_and_empty_value, large_value_round_trips, value_over_limit_is_refused,
            key_at_and_over_limit, invalid_tree_names_are_refused, tree_names_are_listed_sorted,
            drop_tree_deletes_everything, trees_are_independent, cas_inserts_when_absent,
            cas_conflict_reports_current, cas_replaces_and_removes, cas_absent_to_absent,
            concurrent_cas_counter_loses_no_update, concurrent_cas_has_exactly_one_winner,
            scan_all_is_ordered_bytewise, scan_reverse_and_limit, scan_prefix_boundaries,
            scan_prefix_of_ff_bytes, scan_range_bounds, scan_empty_and_reversed_ranges,
            batch_applies_every_write, batch_failed_expectation_writes_nothing,
            batch_expect_absent_conflicts, batch_last_write_wins, batch_limits_are_checked,
            concurrent_batches_claim_once, concurrent_transfers_keep_the_total, len_and_is_empty,
            flush_and_reopen, concurrent_flushes_complete, collection_crud, collection_unique_index_refuses_duplicates,
            collection_index_follows_updates, collection_array_and_nested_indexes,
            collection_concurrent_update_with, collection_concurrent_unique_inserts,
            collection_corrupt_document_is_reported, collection_reindexes_on_changed_indexes,
            collection_pages_in_id_order,
        );
    };
}

async fn tree(fx: &Fixture, name: &str) -> Tree {
    fx.open()
        .await
        .expect("open the fixture store")
        .tree(name)
        .await
        .expect("open tree")
}

fn keys(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<Vec<u8>> {
    entries.iter().map(|(k, _)| k.clone()).collect()
}

fn k(s: &[u8]) -> Vec<u8> {
    s.to_vec()
}

pub(crate) async fn get_missing_is_none(fx: &Fixture) {
    let t = tree(fx, "t").await;
    assert_eq!(t.get("nope").await.unwrap(), None);
    assert!(!t.contains_key("nope").await.unwrap());
}

pub(crate) async fn insert_then_get(fx: &Fixture) {
    let t = tree(fx, "t").await;
    t.insert("alice", "hello").await.unwrap();
    assert_eq!(t.get("alice").await.unwrap(), Some(k(b"hello")));
    assert!(t.contains_key("alice").await.unwrap());
}

pub(crate) async fn insert_overwrites(fx: &Fixture) {
    let t = tree(fx, "t").await;
    t.insert("k", "one").await.unwrap();
    t.insert("k", "two").await.unwrap();
    assert_eq!(t.get("k").await.unwrap(), Some(k(b"two")));
    assert_eq!(t.len().await.unwrap(), 1);
}

pub(crate) async fn remove_returns_old_value(fx: &Fixture) {
    let t = tree(fx, "t").await;
    t.insert("k", "v").await.unwrap();
    assert_eq!(t.remove("k").await.unwrap(), Some(k(b"v")));
    assert_eq!(t.remove("k").await.unwrap(), None);
    assert_eq!(t.get("k").await.unwrap(), None);
}

pub(crate) async fn empty_key_and_empty_value(fx: &Fixture) {
    let t = tree(fx, "t").await;
    t.insert(b"", b"empty key").await.unwrap();
    t.insert(b"x", b"").await.unwrap();
    assert_eq!(t.get(b"").await.unwrap(), Some(k(b"empty key")));
    assert_eq!(t.get(b"x").await.unwrap(), Some(Vec::new()));
    let all = t.scan(Scan::all()).await.unwrap();
    assert_eq!(
        keys(&all),
        vec![k(b""), k(b"x")],
        "the empty key sorts first"
    );
}

pub(crate) async fn large_value_round_trips(fx: &Fixture) {
    let t = tree(fx, "t").await;
    let big: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
    t.insert("big", &big).await.unwrap();
    assert_eq!(t.get("big").await.unwrap().as_deref(), Some(big.as_slice()));
}

pub(crate) async fn value_over_limit_is_refused(fx: &Fixture) {
    let store = fx.builder().max_value_size(1000).open().await.unwrap();
    let t = store.tree("t").await.unwrap();
    t.insert("ok", vec![1u8; 1000]).await.unwrap();
    let err = t.insert("big", vec![1u8; 1001]).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::ValueTooLarge {
                size: 1001,
                limit: 1000,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("\"big\""), "names the key: {err}");
    assert_eq!(t.get("big").await.unwrap(), None);
    let cas = t.compare_and_swap("ok", None, Some(&[0u8; 1001])).await;
    assert!(matches!(cas, Err(Error::ValueTooLarge { .. })));
}

pub(crate) async fn key_at_and_over_limit(fx: &Fixture) {
    let t = tree(fx, "t").await;
    let limit = t_limit(fx).await;
    let at = vec![b'k'; limit];
    t.insert(&at, "v").await.unwrap();
    assert_eq!(t.get(&at).await.unwrap(), Some(k(b"v")));
    let over = vec![b'k'; limit + 1];
    let err = t.insert(&over, "v").await.unwrap_err();
    assert!(matches!(err, Error::KeyTooLarge { .. }), "{err:?}");
    assert!(matches!(t.get(&over).await, Err(Error::KeyTooLarge { .. })));
}

async fn t_limit(fx: &Fixture) -> usize {
    fx.open().await.unwrap().limits().max_key_size
}

pub(crate) async fn invalid_tree_names_are_refused(fx: &Fixture) {
    let store = fx.open().await.unwrap();
    let long = "x".repeat(nopi::MAX_TREE_NAME + 1);
    for bad in [
        "",
        "__sled__default",
        "has space",
        "quote'",
        "semi;colon",
        "ideographic\u{3000}space",
        "c1\u{85}control",
        long.as_str(),
    ] {
        let err = store.tree(bad).await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidTreeName { .. }),
            "{bad:?}: {err:?}"
        );
    }
    for good in [
        "a",
        "inbox:alice",
        "users/by-name",
        "v1.2_x-y",
        "rooms/中文群",
        "ünï",
        &"y".repeat(nopi::MAX_TREE_NAME),
    ] {
        store
            .tree(good)
            .await
            .unwrap_or_else(|e| panic!("{good:?}: {e}"));
    }
}

pub(crate) async fn tree_names_are_listed_sorted(fx: &Fixture) {
    let store = fx.open().await.unwrap();
    for name in ["zeta", "alpha", "mid"] {
        store.tree(name).await.unwrap();
    }
    store
        .tree("alpha")
        .await
        .unwrap()
        .insert("k", "v")
        .await
        .unwrap();
    assert_eq!(store.tree_names().await.unwrap(), ["alpha", "mid", "zeta"]);
}

pub(crate) async fn drop_tree_deletes_everything(fx: &Fixture) {
    let store = fx.open().await.unwrap();
    let t = store.tree("gone").await.unwrap();
    t.insert("k", "v").await.unwrap();
    assert!(store.drop_tree("gone").await.unwrap());
    assert!(!store.drop_tree("gone").await.unwrap());
    assert!(store.tree_names().await.unwrap().is_empty());
    let again = store.tree("gone").await.unwrap();
    assert_eq!(again.get("k").await.unwrap(), None);
}

pub(crate) async fn trees_are_independent(fx: &Fixture) {
    let store = fx.open().await.unwrap();
    let (a, b) = (
        store.tree("a").await.unwrap(),
        store.tree("b").await.unwrap(),
    );
    a.insert("k", "in a").await.unwrap();
    b.insert("k", "in b").await.unwrap();
    assert_eq!(a.get("k").await.unwrap(), Some(k(b"in a")));
    assert_eq!(b.scan(Scan::all()).await.unwrap().len(), 1);
    a.remove("k").await.unwrap();
    assert_eq!(b.get("k").await.unwrap(), Some(k(b"in b")));
}

pub(crate) async fn cas_inserts_when_absent(fx: &Fixture) {
    let t = tree(fx, "t").await;
    t.compare_and_swap("k", None, Some(b"v1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.get("k").await.unwrap(), Some(k(b"v1")));
}

pub(crate) async fn cas_conflict_reports_current(fx: &Fixture) {
    let t = tree(fx, "t").await;
    t.insert("k", "actual").await.unwrap();
    let c = t
        .compare_and_swap("k", Some(b"guess"), Some(b"new"))
        .await
        .unwrap();
    assert_eq!(c.unwrap_err().current, Some(k(b"actual")));
    let c = t.compare_and_swap("k", None, Some(b"new")).await.unwrap();
    assert_eq!(c.unwrap_err().current, Some(k(b"actual")));
    let c = t
        .compare_and_swap("absent", Some(b"x"), Some(b"new"))
        .await
        .unwrap();
    assert_eq!(c.unwrap_err().current, None);
    assert_eq!(
        t.get("k").await.unwrap(),
        Some(k(b"actual")),
        "nothing written"
    );
    assert_eq!(t.get("absent").await.unwrap(), None);
}

pub(crate) async fn cas_replaces_and_removes(fx: &Fixture) {
    let t = tree(fx, "t").await;
    t.insert("k", "v1").await.unwrap();
    t.compare_and_swap("k", Some(b"v1"), Some(b"v2"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.get("k").await.unwrap(), Some(k(b"v2")));
    t.compare_and_swap("k", Some(b"v2"), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.get("k").await.unwrap(), None);
}

pub(crate) async fn cas_absent_to_absent(fx: &Fixture) {
    let t = tree(fx, "t").await;
    t.compare_and_swap("k", None, None).await.unwrap().unwrap();
    t.insert("k", "v").await.unwrap();
    let c = t.compare_and_swap("k", None, None).await.unwrap();
    assert_eq!(c.unwrap_err().current, Some(k(b"v")));
}

fn bump(old: Option<&[u8]>) -> Option<Vec<u8>> {
    let n = old.map_or(0, |b| u64::from_be_bytes(b.try_into().expect("8 bytes")));
    Some((n + 1).to_be_bytes().to_vec())
}

pub(crate) async fn concurrent_cas_counter_loses_no_update(fx: &Fixture) {
    let t = tree(fx, "t").await;
    let (tasks, each) = (16u64, 25u64);
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let t = t.clone();
        handles.push(tokio::spawn(async move {
            for _ in 0..each {
                t.fetch_update("counter", bump).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let total = t.get("counter").await.unwrap().unwrap();
    assert_eq!(u64::from_be_bytes(total.try_into().unwrap()), tasks * each);
}

pub(crate) async fn concurrent_cas_has_exactly_one_winner(fx: &Fixture) {
    let t = tree(fx, "t").await;
    let mut handles = Vec::new();
    for i in 0..32u8 {
        let t = t.clone();
        handles.push(tokio::spawn(async move {
            t.compare_and_swap("leader", None, Some(&[i]))
                .await
                .unwrap()
                .is_ok()
        }));
    }
    let mut winners = 0;
    for h in handles {
        winners += usize::from(h.await.unwrap());
    }
    assert_eq!(winners, 1);
}

pub(crate) async fn scan_all_is_ordered_bytewise(fx: &Fixture) {
    let t = tree(fx, "t").await;
    // Every single-byte key, inserted out of order, plus a few longer ones.
    let mut all: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    all.extend([k(b"a\x00"), k(b"a\xff"), k(b"\xff\xff")]);
    for (i, key) in all.iter().enumerate().rev() {
        if i % 2 == 0 {
            t.insert(key, "v").await.unwrap();
        }
    }
    for (i, key) in all.iter().enumerate() {
        if i % 2 == 1 {
            t.insert(key, "v").await.unwrap();
        }
    }
    all.sort();
    assert_eq!(keys(&t.scan(Scan::all()).await.unwrap()), all);
}

pub(crate) async fn scan_reverse_and_limit(fx: &Fixture) {
    let t = tree(fx, "t").await;
    for i in 0..10u8 {
        t.insert([b'k', i], [i]).await.unwrap();
    }
    let rev = t.scan(Scan::all().rev()).await.unwrap();
    assert_eq!(rev.first().unwrap().1, vec![9]);
    assert_eq!(rev.last().unwrap().1, vec![0]);
    let first3 = t.scan(Scan::all().limit(3)).await.unwrap();
    assert_eq!(first3.iter().map(|e| e.1[0]).collect::<Vec<_>>(), [0, 1, 2]);
    let last3 = t.scan(Scan::all().rev().limit(3)).await.unwrap();
    assert_eq!(last3.iter().map(|e| e.1[0]).collect::<Vec<_>>(), [9, 8, 7]);
    assert!(t.scan(Scan::all().limit(0)).await.unwrap().is_empty());
    assert_eq!(t.scan(Scan::all().limit(100)).await.unwrap().len(), 10);
}

pub(crate) async fn scan_prefix_boundaries(fx: &Fixture) {
    let t = tree(fx, "t").await;
    for key in [
        &b"a"[..],
        b"aa",
        b"ab",
        b"ab\x00",
        b"ab\xff",
        b"ab\xff\xff",
        b"ac",
        b"b",
    ] {
        t.insert(key, "v").await.unwrap();
    }
    let got = keys(&t.scan(Scan::prefix(b"ab")).await.unwrap());
    assert_eq!(
        got,
        [k(b"ab"), k(b"ab\x00"), k(b"ab\xff"), k(b"ab\xff\xff")]
    );
    let got = keys(&t.scan(Scan::prefix(b"ab").rev().limit(2)).await.unwrap());
    assert_eq!(got, [k(b"ab\xff\xff"), k(b"ab\xff")]);
    assert_eq!(t.scan(Scan::prefix(b"")).await.unwrap().len(), 8);
    assert!(t.scan(Scan::prefix(b"zz")).await.unwrap().is_empty());
}

pub(crate) async fn scan_prefix_of_ff_bytes(fx: &Fixture) {
    let t = tree(fx, "t").await;
    for key in [&b"\xfe"[..], b"\xfe\xff", b"\xff", b"\xff\x00", b"\xff\xff"] {
        t.insert(key, "v").await.unwrap();
    }
    let got = keys(&t.scan(Scan::prefix(b"\xff")).await.unwrap());
    assert_eq!(got, [k(b"\xff"), k(b"\xff\x00"), k(b"\xff\xff")]);
    let got = keys(&t.scan(Scan::prefix(b"\xfe")).await.unwrap());
    assert_eq!(got, [k(b"\xfe"), k(b"\xfe\xff")]);
}

pub(crate) async fn scan_range_bounds(fx: &Fixture) {
    let t = tree(fx, "t").await;
    for c in b'a'..=b'f' {
        t.insert([c], "v").await.unwrap();
    }
    let r = |s: Scan| {
        let t = t.clone();
        async move { keys(&t.scan(s).await.unwrap()).concat() }
    };
    assert_eq!(r(Scan::range(k(b"b")..k(b"e"))).await, b"bcd");
    assert_eq!(r(Scan::range(k(b"b")..=k(b"e"))).await, b"bcde");
    assert_eq!(r(Scan::range(k(b"c")..)).await, b"cdef");
    assert_eq!(r(Scan::range(..k(b"c"))).await, b"ab");
    assert_eq!(r(Scan::range(..=k(b"c")).rev()).await, b"cba");
    assert_eq!(r(Scan::range(k(b"bb")..k(b"dd"))).await, b"cd");
    use std::ops::Bound::{Excluded, Included};
    assert_eq!(
        r(Scan::range::<Vec<u8>>((
            Excluded(k(b"b")),
            Included(k(b"d"))
        )))
        .await,
        b"cd"
    );
    assert_eq!(r(Scan::range(k(b"b")..k(b"f")).rev().limit(2)).await, b"ed");
}

pub(crate) async fn scan_empty_and_reversed_ranges(fx: &Fixture) {
    let t = tree(fx, "t").await;
    for c in b'a'..=b'f' {
        t.insert([c], "v").await.unwrap();
    }
    assert!(
        t.scan(Scan::range(k(b"e")..k(b"b")))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        t.scan(Scan::range(k(b"c")..k(b"c")))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        t.scan(Scan::range(k(b"c")..=k(b"c"))).await.unwrap().len(),
        1
    );
    let empty = tree(fx, "empty").await;
    assert!(empty.scan(Scan::all().rev()).await.unwrap().is_empty());
}

pub(crate) async fn batch_applies_every_write(fx: &Fixture) {
    let t = tree(fx, "t").await;
    t.insert("old", "x").await.unwrap();
    let mut b = Batch::new();
    for i in 0..100u8 {
        b.push_put([b'n', i], [i]);
    }
    b.push_remove("old");
    t.apply(b).await.unwrap();
    assert_eq!(t.scan(Scan::prefix(b"n")).await.unwrap().len(), 100);
    assert_eq!(t.get("old").await.unwrap(), None);
}

pub(crate) async fn batch_failed_expectation_writes_nothing(fx: &Fixture) {
    let t = tree(fx, "t").await;
    t.insert("guard", "v1").await.unwrap();
    t.insert("victim", "keep").await.unwrap();
    let b = Batch::new()
        .put("a", "1")
        .remove("victim")
        .expect("guard", Some("v0"))
        .put("b", "2");
    let err = t.apply(b).await.unwrap_err();
    match &err {
        Error::Conflict { key } => assert_eq!(key.0, b"guard"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(err.to_string().contains("guard"));
    assert_eq!(t.get("a").await.unwrap(), None);
    assert_eq!(t.get("b").await.unwrap(), None);
    assert_eq!(t.get("victim").await.unwrap(), Some(k(b"keep")));
    let ok = Batch::new().expect("guard", Some("v1")).put("a", "1");
    t.apply(ok).await.unwrap();
    assert_eq!(t.get("a").await.unwrap(), Some(k(b"1")));
}

pub(crate) async fn batch_expect_absent_conflicts(fx: &Fixture) {
    let t = tree(fx, "t").await;
    t.apply(
        Batch::new()
            .expect_absent("name:alice")
            .put("name:alice", "1"),
    )
    .await
    .unwrap();
    let again = t
        .apply(
            Batch::new()
                .expect_absent("name:alice")
                .put("name:alice", "2"),
        )
        .await;
    assert!(matches!(again, Err(Error::Conflict { .. })));
    assert_eq!(t.get("name:alice").await.unwrap(), Some(k(b"1")));
    // An expectation on an absent key with no write leaves it absent.
    t.apply(Batch::new().expect_absent("free").put("other", "x"))
        .await
        .unwrap();
    assert_eq!(t.get("free").await.unwrap(), None);
    // Contradictory expectations on one key never both hold.
    let both = Batch::new()
        .expect_absent("other")
        .expect("other", Some("x"))
        .put("z", "z");
    assert!(matches!(t.apply(both).await, Err(Error::Conflict { .. })));
    assert_eq!(t.get("z").await.unwrap(), None);
}

pub(crate) async fn batch_last_write_wins(fx: &Fixture) {
    let t = tree(fx, "t").await;
    t.apply(
        Batch::new()
            .put("k", "1")
            .put("k", "2")
            .put("r", "x")
            .remove("r"),
    )
    .await
    .unwrap();
    assert_eq!(t.get("k").await.unwrap(), Some(k(b"2")));
    assert_eq!(t.get("r").await.unwrap(), None);
    t.apply(Batch::new().remove("k").put("k", "3"))
        .await
        .unwrap();
    assert_eq!(t.get("k").await.unwrap(), Some(k(b"3")));
}

pub(crate) async fn batch_limits_are_checked(fx: &Fixture) {
    let store = fx
        .builder()
        .max_batch_ops(10)
        .max_value_size(100)
        .open()
        .await
        .unwrap();
    let t = store.tree("t").await.unwrap();
    let mut b = Batch::new();
    for i in 0..11u8 {
        b.push_put([i], "v");
    }
    let err = t.apply(b).await.unwrap_err();
    assert!(
        matches!(err, Error::BatchTooLarge { ops: 11, limit: 10 }),
        "{err:?}"
    );
    let err = t
        .apply(Batch::new().put("a", "v").put("b", [0u8; 101]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ValueTooLarge { .. }), "{err:?}");
    assert!(
        t.is_empty().await.unwrap(),
        "nothing of a refused batch is written"
    );
    t.apply(Batch::new()).await.unwrap();
}

pub(crate) async fn concurrent_batches_claim_once(fx: &Fixture) {
    let t = tree(fx, "t").await;
    let mut handles = Vec::new();
    for i in 0..24u8 {
        let t = t.clone();
        handles.push(tokio::spawn(async move {
            let b = Batch::new()
                .expect_absent("claim")
                .put("claim", [i])
                .put([b'w', i], "won");
            match t.apply(b).await {
                Ok(()) => true,
                Err(Error::Conflict { .. }) => false,
                Err(e) => panic!("unexpected error: {e}"),
            }
        }));
    }
    let mut winners = Vec::new();
    for (i, h) in handles.into_iter().enumerate() {
        if h.await.unwrap() {
            winners.push(i as u8);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one claim wins");
    assert_eq!(t.get("claim").await.unwrap(), Some(vec![winners[0]]));
    assert_eq!(t.scan(Scan::prefix(b"w")).await.unwrap().len(), 1);
}

pub(crate) async fn concurrent_transfers_keep_the_total(fx: &Fixture) {
    let t = tree(fx, "t").await;
    let acct = |i: u8| vec![b'a', i];
    for i in 0..4u8 {
        t.insert(acct(i), 100u64.to_be_bytes()).await.unwrap();
    }
    let mut handles = Vec::new();
    for task in 0..8u8 {
        let t = t.clone();
        handles.push(tokio::spawn(async move {
            let mut done = 0;
            let mut n = task as usize;
            while done < 10 {
                n += 1;
                let (from, to) = (acct((n % 4) as u8), acct(((n + 1) % 4) as u8));
                let f = t.get(&from).await.unwrap().unwrap();
                let g = t.get(&to).await.unwrap().unwrap();
                let (fv, gv) = (
                    u64::from_be_bytes(f.clone().try_into().unwrap()),
                    u64::from_be_bytes(g.clone().try_into().unwrap()),
                );
                if fv == 0 {
                    continue;
                }
                let b = Batch::new()
                    .expect(&from, Some(&f))
                    .expect(&to, Some(&g))
                    .put(&from, (fv - 1).to_be_bytes())
                    .put(&to, (gv + 1).to_be_bytes());
                match t.apply(b).await {
                    Ok(()) => done += 1,
                    Err(Error::Conflict { .. }) => tokio::task::yield_now().await,
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let mut total = 0;
    for (_, v) in t.scan(Scan::prefix(b"a")).await.unwrap() {
        total += u64::from_be_bytes(v.try_into().unwrap());
    }
    assert_eq!(total, 400, "no transfer was half applied");
}

pub(crate) async fn len_and_is_empty(fx: &Fixture) {
    let t = tree(fx, "t").await;
    assert!(t.is_empty().await.unwrap());
    assert_eq!(t.len().await.unwrap(), 0);
    for i in 0..7u8 {
        t.insert([i], "v").await.unwrap();
    }
    assert_eq!(t.len().await.unwrap(), 7);
    assert!(!t.is_empty().await.unwrap());
}

pub(crate) async fn flush_and_reopen(fx: &Fixture) {
    let store = fx.open().await.unwrap();
    let t = store.tree("durable").await.unwrap();
    t.insert("k", "v").await.unwrap();
    t.flush().await.unwrap();
    store.flush().await.unwrap();
    if fx.is_shared() {
        drop((t, store));
        let again = fx.open().await.unwrap().tree("durable").await.unwrap();
        assert_eq!(again.get("k").await.unwrap(), Some(k(b"v")));
    }
}

pub(crate) async fn concurrent_flushes_complete(fx: &Fixture) {
    // sled 0.34 can deadlock on concurrent flushes (spacejam/sled#1308);
    // nopi must make this safe.
    let store = fx.open().await.unwrap();
    let t = store.tree("t").await.unwrap();
    let mut handles = Vec::new();
    for task in 0..16u8 {
        let (t, store) = (t.clone(), store.clone());
        handles.push(tokio::spawn(async move {
            for i in 0..10u8 {
                t.insert([task, i], [i]).await.unwrap();
                if i % 2 == 0 {
                    t.flush().await.unwrap();
                } else {
                    store.flush().await.unwrap();
                }
            }
        }));
    }
    let all = async {
        for h in handles {
            h.await.unwrap();
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), all)
        .await
        .expect("concurrent flushes finish");
    assert_eq!(t.len().await.unwrap(), 160);
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    name: String,
    city: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    profile: Option<Profile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    lang: String,
}

fn user(name: &str, city: &str) -> User {
    User {
        name: name.into(),
        city: city.into(),
        tags: Vec::new(),
        profile: None,
    }
}

async fn users(store: &Store) -> nopi::Collection<User> {
    store
        .collection::<User>("users")
        .unique("name")
        .index("city")
        .index("tags")
        .index("profile.lang")
        .open()
        .await
        .unwrap()
}

pub(crate) async fn collection_crud(fx: &Fixture) {
    let c = users(&fx.open().await.unwrap()).await;
    let id = c.insert(&user("alice", "paris")).await.unwrap();
    assert_eq!(c.get(&id).await.unwrap(), Some(user("alice", "paris")));
    c.update(&id, &user("alice", "rome")).await.unwrap();
    assert_eq!(c.get(&id).await.unwrap().unwrap().city, "rome");
    assert!(matches!(
        c.update("nope", &user("x", "y")).await,
        Err(Error::NotFound { .. })
    ));
    c.insert_with_id("bob", &user("bob", "oslo")).await.unwrap();
    let dup = c.insert_with_id("bob", &user("bobby", "oslo")).await;
    assert!(matches!(dup, Err(Error::AlreadyExists { .. })), "{dup:?}");
    assert_eq!(c.delete(&id).await.unwrap(), Some(user("alice", "rome")));
    assert_eq!(c.delete(&id).await.unwrap(), None);
    assert_eq!(c.get(&id).await.unwrap(), None);
    assert!(
        c.find_by("name", "alice").await.unwrap().is_empty(),
        "index entry removed"
    );
    assert!(matches!(c.get("").await, Err(Error::InvalidId { .. })));
    assert!(matches!(
        c.find_by("nofield", 1).await,
        Err(Error::NoSuchIndex { .. })
    ));
}

pub(crate) async fn collection_unique_index_refuses_duplicates(fx: &Fixture) {
    let c = users(&fx.open().await.unwrap()).await;
    let id = c.insert(&user("alice", "paris")).await.unwrap();
    let err = c.insert(&user("alice", "rome")).await.unwrap_err();
    match &err {
        Error::Duplicate { field, value, .. } => {
            assert_eq!(field, "name");
            assert_eq!(value, "\"alice\"");
        }
        other => panic!("expected Duplicate, got {other:?}"),
    }
    let bob = c.insert(&user("bob", "rome")).await.unwrap();
    let err = c.update(&bob, &user("alice", "rome")).await.unwrap_err();
    assert!(matches!(err, Error::Duplicate { .. }), "{err:?}");
    assert_eq!(
        c.get(&bob).await.unwrap().unwrap().name,
        "bob",
        "refused update wrote nothing"
    );
    // Renaming frees the old value.
    c.update(&id, &user("alicia", "paris")).await.unwrap();
    c.update(&bob, &user("alice", "rome")).await.unwrap();
    assert_eq!(
        c.find_one_by("name", "alice").await.unwrap().unwrap().0,
        bob
    );
}

pub(crate) async fn collection_index_follows_updates(fx: &Fixture) {
    let c = users(&fx.open().await.unwrap()).await;
    let a = c.insert(&user("a", "paris")).await.unwrap();
    let b = c.insert(&user("b", "paris")).await.unwrap();
    c.insert(&user("c", "rome")).await.unwrap();
    let in_paris = c.find_by("city", "paris").await.unwrap();
    assert_eq!(
        in_paris
            .iter()
            .map(|(id, _)| id.clone())
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([a.clone(), b.clone()])
    );
    c.update(&a, &user("a", "rome")).await.unwrap();
    assert_eq!(c.find_by("city", "paris").await.unwrap().len(), 1);
    assert_eq!(c.find_by("city", "rome").await.unwrap().len(), 2);
    c.delete(&b).await.unwrap();
    assert!(c.find_by("city", "paris").await.unwrap().is_empty());
}

pub(crate) async fn collection_array_and_nested_indexes(fx: &Fixture) {
    let c = users(&fx.open().await.unwrap()).await;
    let mut u = user("a", "x");
    u.tags = vec!["rust".into(), "go".into()];
    u.profile = Some(Profile { lang: "fr".into() });
    let id = c.insert(&u).await.unwrap();
    assert_eq!(c.find_by("tags", "rust").await.unwrap()[0].0, id);
    assert_eq!(c.find_by("tags", "go").await.unwrap()[0].0, id);
    assert_eq!(c.find_by("profile.lang", "fr").await.unwrap()[0].0, id);
    u.tags.retain(|t| t != "go");
    c.update(&id, &u).await.unwrap();
    assert!(c.find_by("tags", "go").await.unwrap().is_empty());
    assert_eq!(c.find_by("tags", "rust").await.unwrap().len(), 1);
}

pub(crate) async fn collection_concurrent_update_with(fx: &Fixture) {
    let c = users(&fx.open().await.unwrap()).await;
    let id = c.insert(&user("group", "x")).await.unwrap();
    let mut handles = Vec::new();
    for i in 0..16 {
        let (c, id) = (c.clone(), id.clone());
        handles.push(tokio::spawn(async move {
            c.update_with(&id, |u| u.tags.push(format!("m{i}")))
                .await
                .unwrap();
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let doc = c.get(&id).await.unwrap().unwrap();
    assert_eq!(
        doc.tags.iter().collect::<BTreeSet<_>>().len(),
        16,
        "no lost update"
    );
    assert_eq!(
        c.find_by("tags", "m7").await.unwrap().len(),
        1,
        "indexes follow update_with"
    );
}

pub(crate) async fn collection_concurrent_unique_inserts(fx: &Fixture) {
    let c = users(&fx.open().await.unwrap()).await;
    let mut handles = Vec::new();
    for i in 0..24 {
        let c = c.clone();
        handles.push(tokio::spawn(async move {
            c.insert(&user("same", &format!("city{i}"))).await
        }));
    }
    let mut ok = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(_) => ok += 1,
            Err(Error::Duplicate { .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(
        c.list(None, 100).await.unwrap().len(),
        1,
        "losers left no document"
    );
}

pub(crate) async fn collection_corrupt_document_is_reported(fx: &Fixture) {
    let store = fx.open().await.unwrap();
    let c = users(&store).await;
    c.insert_with_id("good", &user("good", "x")).await.unwrap();
    let raw = store.tree("users").await.unwrap();
    raw.insert(b"d\0broken", b"{not json").await.unwrap();
    let err = c.get("broken").await.unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { id, .. } if id == "broken"),
        "{err:?}"
    );
    assert!(err.to_string().contains("broken"));
    raw.insert(b"d\0wrongtype", br#"{"name": 5}"#)
        .await
        .unwrap();
    assert!(matches!(
        c.get("wrongtype").await,
        Err(Error::Corrupt { .. })
    ));
    assert_eq!(
        c.get("good").await.unwrap().unwrap().name,
        "good",
        "others still readable"
    );
}

pub(crate) async fn collection_reindexes_on_changed_indexes(fx: &Fixture) {
    let store = fx.open().await.unwrap();
    let plain = store.collection::<User>("people").open().await.unwrap();
    plain
        .insert_with_id("1", &user("a", "paris"))
        .await
        .unwrap();
    plain
        .insert_with_id("2", &user("b", "paris"))
        .await
        .unwrap();
    let indexed = store
        .collection::<User>("people")
        .index("city")
        .open()
        .await
        .unwrap();
    assert_eq!(indexed.find_by("city", "paris").await.unwrap().len(), 2);
    let dup = store
        .collection::<User>("people")
        .unique("city")
        .open()
        .await;
    assert!(matches!(dup, Err(Error::Duplicate { .. })), "{dup:?}");
}

pub(crate) async fn collection_pages_in_id_order(fx: &Fixture) {
    let c = users(&fx.open().await.unwrap()).await;
    for i in 0..25 {
        c.insert_with_id(&format!("id{i:02}"), &user(&format!("u{i}"), "x"))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = c.list(after.as_deref(), 10).await.unwrap();
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        seen.extend(page.into_iter().map(|(id, _)| id));
    }
    assert_eq!(seen.len(), 25);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
}
