//! nopi's sled backend against raw sled, in the same run.
//!
//! `cargo bench -p nopi --bench sled_vs_nopi` prints, for each operation, the
//! time of raw sled and of nopi; docs/benchmarks.md records the ratios.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use nopi::{Batch, Store};

const KEYS: u32 = 10_000;
const BATCH: u32 = 100;

fn key(i: u32) -> [u8; 8] {
    let mut k = *b"key-\0\0\0\0";
    k[4..].copy_from_slice(&i.to_be_bytes());
    k
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let raw_db = sled::open(dir.path().join("raw")).expect("open raw sled");
    let raw = raw_db.open_tree("bench").expect("raw tree");
    let store: Store = rt
        .block_on(nopi::open(&format!(
            "sled:{}",
            dir.path().join("nopi").display()
        )))
        .expect("open nopi");
    let tree = rt.block_on(store.tree("bench")).expect("nopi tree");
    let value = vec![7u8; 100];
    for i in 0..KEYS {
        raw.insert(key(i), value.as_slice()).expect("fill raw");
        rt.block_on(tree.insert(key(i), &value)).expect("fill nopi");
    }

    let mut g = c.benchmark_group("get");
    let mut i = 0u32;
    g.bench_function(BenchmarkId::new("raw_sled", "100B"), |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            black_box(raw.get(key(i)).expect("get"))
        })
    });
    g.bench_function(BenchmarkId::new("nopi_sled", "100B"), |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 7919) % KEYS;
            let tree = &tree;
            async move { black_box(tree.get(key(i)).await.expect("get")) }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("insert");
    g.bench_function(BenchmarkId::new("raw_sled", "100B"), |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            raw.insert(key(i), value.as_slice()).expect("insert")
        })
    });
    g.bench_function(BenchmarkId::new("nopi_sled", "100B"), |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 7919) % KEYS;
            let (tree, value) = (&tree, &value);
            async move { tree.insert(key(i), value).await.expect("insert") }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("batch_insert");
    g.bench_function(BenchmarkId::new("raw_sled", BATCH), |b| {
        b.iter(|| {
            let mut batch = sled::Batch::default();
            for _ in 0..BATCH {
                i = (i + 7919) % KEYS;
                batch.insert(&key(i), value.as_slice());
            }
            raw.apply_batch(batch).expect("batch")
        })
    });
    g.bench_function(BenchmarkId::new("nopi_sled", BATCH), |b| {
        b.to_async(&rt).iter(|| {
            let mut batch = Batch::new();
            for _ in 0..BATCH {
                i = (i + 7919) % KEYS;
                batch.push_put(key(i), &value);
            }
            let tree = &tree;
            async move { tree.apply(batch).await.expect("batch") }
        })
    });
    g.finish();
}

criterion_group! {
    name = sled_vs_nopi;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = benches
}
criterion_main!(sled_vs_nopi);
