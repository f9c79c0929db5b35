//! tiny_q against raw sled (and raw nopi) in the same run.
//!
//! `cargo bench -p tiny_q --bench queue` prints, per group, the time of each
//! baseline and of tiny_q; docs/benchmarks.md records the ratios.
//!
//! - `push_pop_100B`: one non-durable push and one pop on a queue holding
//!   1000 items, against one sled `insert` + `remove` of the same shape (and
//!   the same through nopi). Before criterion's timings, the same three are
//!   run interleaved in blocks and the median throughput ratios printed
//!   (`interleaved throughput ratio, ...`): robust to load drifting on a
//!   shared machine.
//! - `durable_push_100B`: durable pushes from 64 concurrent producers (group
//!   commit), against one raw sled `insert` + `flush` per item, and against
//!   64 concurrent producers doing nopi `insert` + `flush` per item (no group
//!   commit). That baseline runs its flushes one at a time behind a mutex:
//!   concurrent `flush_async` calls deadlock sled 0.34 (spacejam/sled#1308),
//!   which nopi's sled backend uses.

use std::hint::black_box;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tiny_q::{Durability, QueueOptions, Queues};

const VALUE: [u8; 100] = [7; 100];
const BACKLOG: u64 = 1000;
const PRODUCERS: usize = 64;
const PER_PRODUCER: usize = 8;

fn key(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

fn push_pop(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let raw = sled::open(dir.path().join("raw")).expect("raw sled");
    let raw = raw.open_tree("bench").expect("raw tree");
    let store = rt
        .block_on(nopi::open(&format!(
            "sled:{}",
            dir.path().join("tq").display()
        )))
        .expect("nopi sled");
    let tree = rt.block_on(store.tree("raw_nopi")).expect("nopi tree");
    let queues = rt.block_on(Queues::new(&store)).expect("queues");
    let options = QueueOptions::builder()
        .durability(Durability::Buffered)
        .build()
        .expect("options");
    let queue = rt.block_on(queues.create("bench", options)).expect("queue");
    for i in 0..BACKLOG {
        raw.insert(key(i), &VALUE[..]).expect("fill raw");
        rt.block_on(tree.insert(key(i), VALUE)).expect("fill nopi");
        rt.block_on(queue.push(VALUE)).expect("fill queue");
    }

    rt.block_on(interleaved(&raw, &tree, &queue));

    let mut g = c.benchmark_group("push_pop_100B");
    g.throughput(Throughput::Elements(1));
    let mut head = 0u64;
    g.bench_function(BenchmarkId::new("raw_sled_insert_remove", BACKLOG), |b| {
        b.iter(|| {
            raw.insert(key(head + BACKLOG), &VALUE[..]).expect("insert");
            black_box(raw.remove(key(head)).expect("remove"));
            head += 1;
        })
    });
    let mut head = 0u64;
    g.bench_function(BenchmarkId::new("nopi_sled_insert_remove", BACKLOG), |b| {
        b.to_async(&rt).iter(|| {
            let (tree, h) = (&tree, head);
            head += 1;
            async move {
                tree.insert(key(h + BACKLOG), VALUE).await.expect("insert");
                black_box(tree.remove(key(h)).await.expect("remove"))
            }
        })
    });
    g.bench_function(BenchmarkId::new("tiny_q_sled_push_pop", BACKLOG), |b| {
        b.to_async(&rt).iter(|| async {
            queue.push(VALUE).await.expect("push");
            black_box(queue.pop().await.expect("pop"))
        })
    });
    g.finish();
}

/// Rounds of the interleaved comparison, and operations per block.
const ROUNDS: usize = 42;
const BLOCK: u64 = 5000;

/// The machine these figures come from is shared and its load drifts within
/// seconds, which skews criterion's one-function-after-another timings. This
/// alternates blocks of raw sled, nopi and tiny_q push+pop and reports the
/// median of the per-round throughput ratios, so drift cancels out.
async fn interleaved(raw: &sled::Tree, tree: &nopi::Tree, queue: &tiny_q::Queue) {
    let (mut raw_head, mut nopi_head) = (1u64 << 40, 1u64 << 40);
    for i in 0..BACKLOG {
        raw.insert(key(raw_head + i), &VALUE[..]).expect("fill raw");
        tree.insert(key(nopi_head + i), VALUE)
            .await
            .expect("fill nopi");
    }
    let mut tiny_q_vs_raw = Vec::new();
    let mut nopi_vs_raw = Vec::new();
    let mut tiny_q_vs_nopi = Vec::new();
    for round in 0..ROUNDS {
        // Rotate which block runs first, so no subject always follows another.
        let mut times = [0f64; 3];
        for k in 0..3 {
            let subject = (round + k) % 3;
            let start = Instant::now();
            match subject {
                0 => {
                    for _ in 0..BLOCK {
                        raw.insert(key(raw_head + BACKLOG), &VALUE[..])
                            .expect("insert");
                        black_box(raw.remove(key(raw_head)).expect("remove"));
                        raw_head += 1;
                    }
                }
                1 => {
                    for _ in 0..BLOCK {
                        tree.insert(key(nopi_head + BACKLOG), VALUE)
                            .await
                            .expect("insert");
                        black_box(tree.remove(key(nopi_head)).await.expect("remove"));
                        nopi_head += 1;
                    }
                }
                _ => {
                    for _ in 0..BLOCK {
                        queue.push(VALUE).await.expect("push");
                        black_box(queue.pop().await.expect("pop"));
                    }
                }
            }
            times[subject] = start.elapsed().as_secs_f64();
        }
        let [raw_time, nopi_time, tiny_q_time] = times;
        // Throughput ratios: time of the baseline over time of the subject.
        tiny_q_vs_raw.push(raw_time / tiny_q_time);
        nopi_vs_raw.push(raw_time / nopi_time);
        tiny_q_vs_nopi.push(nopi_time / tiny_q_time);
    }
    let mut out = std::io::stdout().lock();
    for (name, mut ratios) in [
        ("tiny_q push+pop / raw sled insert+remove", tiny_q_vs_raw),
        ("nopi insert+remove / raw sled insert+remove", nopi_vs_raw),
        ("tiny_q push+pop / nopi insert+remove", tiny_q_vs_nopi),
    ] {
        ratios.sort_by(f64::total_cmp);
        let q = |f: f64| ratios[((ratios.len() - 1) as f64 * f).round() as usize];
        let _ = writeln!(
            out,
            "interleaved throughput ratio, {name}: median {:.2} (quartiles {:.2}..{:.2}, {ROUNDS} rounds of {BLOCK})",
            q(0.5),
            q(0.25),
            q(0.75)
        );
    }
}

fn durable(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let raw = sled::open(dir.path().join("raw")).expect("raw sled");
    let raw_tree = raw.open_tree("bench").expect("raw tree");
    let store = rt
        .block_on(nopi::open(&format!(
            "sled:{}",
            dir.path().join("tq").display()
        )))
        .expect("nopi sled");
    let tree = rt.block_on(store.tree("raw_nopi")).expect("nopi tree");
    let queues = rt.block_on(Queues::new(&store)).expect("queues");
    let options = QueueOptions::builder()
        .capacity(tiny_q::MAX_CAPACITY)
        .build()
        .expect("options");
    let queue = rt.block_on(queues.create("bench", options)).expect("queue");

    let mut g = c.benchmark_group("durable_push_100B");
    g.throughput(Throughput::Elements(1));
    let mut n = 0u64;
    g.bench_function("raw_sled_insert_flush_per_item", |b| {
        b.iter(|| {
            n += 1;
            raw_tree.insert(key(n), &VALUE[..]).expect("insert");
            raw_tree.flush().expect("flush")
        })
    });
    g.bench_function("tiny_q_1_producer", |b| {
        b.to_async(&rt)
            .iter(|| async { queue.push(VALUE).await.expect("push") })
    });
    let items = (PRODUCERS * PER_PRODUCER) as u64;
    g.throughput(Throughput::Elements(items));
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let one_flush_at_a_time = Arc::new(tokio::sync::Mutex::new(()));
    g.bench_function(
        BenchmarkId::new(
            "nopi_insert_flush_per_item",
            format!("{PRODUCERS}_producers"),
        ),
        |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (tree, counter, serial) =
                    (tree.clone(), counter.clone(), one_flush_at_a_time.clone());
                async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let tasks: Vec<_> = (0..PRODUCERS)
                            .map(|_| {
                                let (tree, counter, serial) =
                                    (tree.clone(), counter.clone(), serial.clone());
                                tokio::spawn(async move {
                                    for _ in 0..PER_PRODUCER {
                                        let k = counter
                                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                        tree.insert(key(k), VALUE).await.expect("insert");
                                        let _one_at_a_time = serial.lock().await;
                                        tree.flush().await.expect("flush");
                                    }
                                })
                            })
                            .collect();
                        for t in tasks {
                            t.await.expect("producer");
                        }
                    }
                    start.elapsed()
                }
            })
        },
    );
    g.bench_function(
        BenchmarkId::new("tiny_q_group_commit", format!("{PRODUCERS}_producers")),
        |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let queue = queue.clone();
                async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let tasks: Vec<_> = (0..PRODUCERS)
                            .map(|_| {
                                let queue = queue.clone();
                                tokio::spawn(async move {
                                    for _ in 0..PER_PRODUCER {
                                        queue.push(VALUE).await.expect("push");
                                    }
                                })
                            })
                            .collect();
                        for t in tasks {
                            t.await.expect("producer");
                        }
                    }
                    start.elapsed()
                }
            })
        },
    );
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = push_pop, durable
}
criterion_main!(benches);
