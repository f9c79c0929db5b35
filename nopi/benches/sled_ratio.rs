//! nopi's sled backend against raw sled, interleaved so both see the same
//! machine load: each round times a block of raw operations, then the same
//! block through nopi (awaited inside one `block_on`, as an async caller
//! would); the printed figure is the median over rounds of nopi throughput /
//! raw throughput (1.0 = as fast as raw sled).
//!
//! `cargo bench -p nopi --bench sled_ratio`

use std::hint::black_box;
use std::time::{Duration, Instant};

use nopi::Batch;

const KEYS: u32 = 10_000;
const ROUNDS: usize = 41;
const BLOCK: u32 = 2_000;

fn key(i: u32) -> [u8; 8] {
    let mut k = *b"key-\0\0\0\0";
    k[4..].copy_from_slice(&i.to_be_bytes());
    k
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 10], v[v.len() / 2], v[v.len() * 9 / 10])
}

#[expect(clippy::print_stdout, reason = "a bench prints its results")]
fn report(name: &str, ratios: Vec<f64>, raw_ns: f64) {
    let (p10, p50, p90) = median(ratios);
    println!(
        "{name:<14} raw sled {raw_ns:>8.0} ns/op   nopi/raw throughput: median {p50:.2}x  (p10 {p10:.2}, p90 {p90:.2})"
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let raw = sled::open(dir.path().join("raw"))
        .expect("raw sled")
        .open_tree("bench")
        .expect("tree");
    let store = rt
        .block_on(nopi::open(&format!(
            "sled:{}",
            dir.path().join("nopi").display()
        )))
        .expect("nopi");
    let tree = rt.block_on(store.tree("bench")).expect("tree");
    let value = vec![7u8; 100];
    for i in 0..KEYS {
        raw.insert(key(i), value.as_slice()).expect("fill");
        rt.block_on(tree.insert(key(i), &value)).expect("fill");
    }

    let run = |name: &str,
               raw_op: &mut dyn FnMut(u32),
               nopi_block: &mut dyn FnMut(u32, u32),
               per_block: u32| {
        let mut ratios = Vec::with_capacity(ROUNDS);
        let mut raw_total = Duration::ZERO;
        for round in 0..ROUNDS {
            let base = round as u32 * 7919;
            let t = Instant::now();
            for i in 0..BLOCK / per_block {
                raw_op((base + i * 7919) % KEYS);
            }
            let raw_t = t.elapsed();
            let t = Instant::now();
            nopi_block(base, BLOCK / per_block);
            let nopi_t = t.elapsed();
            raw_total += raw_t;
            ratios.push(raw_t.as_secs_f64() / nopi_t.as_secs_f64());
        }
        let ops = f64::from(BLOCK / per_block) * ROUNDS as f64;
        report(name, ratios, raw_total.as_nanos() as f64 / ops);
    };

    run(
        "get",
        &mut |i| {
            black_box(raw.get(key(i)).expect("get"));
        },
        &mut |base, n| {
            rt.block_on(async {
                for i in 0..n {
                    black_box(tree.get(key((base + i * 7919) % KEYS)).await.expect("get"));
                }
            })
        },
        1,
    );
    run(
        "insert",
        &mut |i| {
            raw.insert(key(i), value.as_slice())
                .map(drop)
                .expect("insert")
        },
        &mut |base, n| {
            rt.block_on(async {
                for i in 0..n {
                    tree.insert(key((base + i * 7919) % KEYS), &value)
                        .await
                        .expect("insert");
                }
            })
        },
        1,
    );
    run(
        "batch of 100",
        &mut |i| {
            let mut b = sled::Batch::default();
            for j in 0..100 {
                b.insert(&key((i + j) % KEYS), value.as_slice());
            }
            raw.apply_batch(b).expect("batch");
        },
        &mut |base, n| {
            rt.block_on(async {
                for i in 0..n {
                    let i = (base + i * 7919) % KEYS;
                    let mut b = Batch::new();
                    for j in 0..100 {
                        b.push_put(key((i + j) % KEYS), &value);
                    }
                    tree.apply(b).await.expect("batch");
                }
            })
        },
        100,
    );
}
