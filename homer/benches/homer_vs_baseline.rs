//! homer against its baselines, measured in the same run:
//!
//! - `http_echo_call`: one JSON API call over keep-alive HTTP/1.1 (4 client
//!   connections in parallel) — homer's `POST /api/echo` against a bare
//!   hyper server answering the same reply JSON;
//! - `ws_broadcast_100`: one push delivered to 100 WebSocket clients —
//!   homer's `publish` against a minimal tokio-tungstenite +
//!   `tokio::sync::broadcast` server.
//!
//! Run: `cargo bench -p homer --bench homer_vs_baseline`. The load generator
//! with 1,000 connections, p99 latency and memory is `--bench loadgen`.
#![expect(
    clippy::unwrap_used,
    reason = "bench code: a failed unwrap stops the run, which is what it should do"
)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::StreamExt;
use homer::Push;
use serde_json::json;
use tokio::runtime::Runtime;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

const HTTP_CLIENTS: u64 = 4;
const WS_CLIENTS: u64 = 100;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn http_echo(c: &mut Criterion) {
    let rt = runtime();
    let (_homer, homer_addr) = rt.block_on(common::start_homer());
    let hyper_addr = rt.block_on(common::start_bare_hyper());
    let mut g = c.benchmark_group("http_echo_call");
    g.throughput(Throughput::Elements(1));
    let cases: [(&str, SocketAddr, &'static str); 2] = [
        ("homer", homer_addr, "/api/echo"),
        ("bare_hyper", hyper_addr, "/echo"),
    ];
    for (name, addr, path) in cases {
        let clients: Vec<_> = rt.block_on(async {
            let mut v = Vec::new();
            for _ in 0..HTTP_CLIENTS {
                v.push(Arc::new(tokio::sync::Mutex::new(
                    common::HttpClient::connect(addr).await,
                )));
            }
            v
        });
        g.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let clients = clients.clone();
                async move {
                    let start = Instant::now();
                    let tasks: Vec<_> = clients
                        .iter()
                        .enumerate()
                        .map(|(i, c)| {
                            let c = c.clone();
                            let n =
                                iters / HTTP_CLIENTS + u64::from((i as u64) < iters % HTTP_CLIENTS);
                            tokio::spawn(async move {
                                let mut c = c.lock().await;
                                for _ in 0..n {
                                    c.post(path, common::HTTP_BODY).await;
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                    start.elapsed()
                }
            })
        });
    }
    g.finish();
}

/// Counts deliveries; wakes the waiter when the target is reached.
#[derive(Default)]
struct Counter {
    delivered: AtomicU64,
    target: AtomicU64,
    done: Notify,
}

impl Counter {
    fn hit(&self) {
        let n = self.delivered.fetch_add(1, Ordering::AcqRel) + 1;
        if n >= self.target.load(Ordering::Acquire) {
            self.done.notify_one();
        }
    }

    async fn wait_for(&self, more: u64) {
        let target = self.target.fetch_add(more, Ordering::AcqRel) + more;
        while self.delivered.load(Ordering::Acquire) < target {
            let notified = self.done.notified();
            if self.delivered.load(Ordering::Acquire) >= target {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
        }
    }
}

fn spawn_receivers(rt: &Runtime, addr: SocketAddr, join: bool, counter: &Arc<Counter>) {
    rt.block_on(async {
        for _ in 0..WS_CLIENTS {
            let mut ws = common::ws_connect(addr).await;
            if join {
                common::homer_join(&mut ws).await;
            }
            let counter = counter.clone();
            tokio::spawn(async move {
                while let Some(Ok(m)) = ws.next().await {
                    if matches!(m, Message::Text(_)) {
                        counter.hit();
                    }
                }
            });
        }
    });
}

fn ws_broadcast(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("ws_broadcast_100");
    g.throughput(Throughput::Elements(WS_CLIENTS));

    let (homer, homer_addr) = rt.block_on(common::start_homer());
    let counter = Arc::new(Counter::default());
    spawn_receivers(&rt, homer_addr, true, &counter);
    g.bench_function("homer", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let homer = homer.clone();
            let counter = counter.clone();
            async move {
                let start = Instant::now();
                for i in 0..iters {
                    homer.publish(
                        "all",
                        Push::new("message", json!({"n": i, "text": "hello, world"})),
                    );
                    counter.wait_for(WS_CLIENTS).await;
                }
                start.elapsed()
            }
        })
    });

    let (base_addr, tx) = rt.block_on(common::start_baseline_ws());
    let counter = Arc::new(Counter::default());
    spawn_receivers(&rt, base_addr, false, &counter);
    g.bench_function("tungstenite_broadcast", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let tx = tx.clone();
            let counter = counter.clone();
            async move {
                let start = Instant::now();
                for i in 0..iters {
                    let text = serde_json::to_string(
                        &json!({"push": "message", "content": {"n": i, "text": "hello, world"}}),
                    )
                    .unwrap();
                    let _ = tx.send(Utf8Bytes::from(text));
                    counter.wait_for(WS_CLIENTS).await;
                }
                start.elapsed()
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = http_echo, ws_broadcast
}
criterion_main!(benches);
