//! Broker throughput, each figure next to its baseline in the same run.
//!
//! `cargo bench -p rmq_core --bench broker` (needs RabbitMQ at `AMQP_URL`,
//! default `amqp://guest:guest@127.0.0.1:5672/%2f`; fails if it is absent).
//!
//! - `amqp_publish_confirm`: N direct envelopes published to one inbox with
//!   64 publishes awaiting their confirm at a time, through `AmqpBroker`
//!   versus raw lapin publishing the same bytes (encoded from the same
//!   envelopes in the timed region), to the same exchange, routing key and
//!   queue, with the same properties, mandatory flag and confirm window.
//! - `amqp_direct_publish_consume`: the same publishes, consumed and acked
//!   one by one (prefetch 64) until all arrived.
//! - `amqp_room_fanout`: publishes to a room of 10 members (plus its history
//!   stream), consumed and acked by the 10 members; throughput counts
//!   deliveries. The raw lapin baseline publishes along the same route
//!   (`<ns>.rooms` → `<ns>.room.<room>`) and consumes the same inbox queues;
//!   `raw_lapin_to_fanout` publishes straight to the room's fanout exchange,
//!   to show what the front-door exchange costs the server.
//! - `local_*`: `LocalBroker` on sled, direct and room fan-out deliveries per
//!   second, against raw `tiny_q` pushes/leases/acks on the same kind of store.
#![expect(
    clippy::unwrap_used,
    reason = "bench code: a failed unwrap stops the run, which is what it should do"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use rmq_core::{AmqpBroker, Broker, Envelope, LocalBroker, RoomId, Subscription, To, UserId};
use testkit::amqp_url;
use tokio::runtime::Runtime;
use tokio::sync::Mutex;

/// Messages per iteration.
const N: usize = 2000;
/// Publishes awaiting their confirm at a time, for both sides.
const WINDOW: usize = 64;
/// Members of the fan-out room.
const MEMBERS: usize = 10;
/// Messages per fan-out iteration.
const ROOM_N: usize = 200;
const BODY: usize = 200;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn envelope(from: &UserId, to: To) -> Envelope {
    Envelope::builder(from.clone(), to)
        .content_type("text/plain")
        .body(vec![b'x'; BODY])
        .build()
}

fn props(env: &Envelope) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/vnd.im.envelope".into())
        .with_message_id(env.id.to_string().into())
        .with_timestamp(env.ts / 1000)
}

async fn publish_all(broker: &AmqpBroker, envs: Vec<Envelope>) {
    futures_util::stream::iter(envs)
        .map(|env| async move { broker.publish(&env).await.expect("publish") })
        .buffer_unordered(WINDOW)
        .collect::<Vec<()>>()
        .await;
}

/// Raw lapin publishes of the same envelopes: encoded in the timed region,
/// as the broker does (an application on raw lapin serializes too).
async fn raw_publish_all(ch: &Channel, exchange: &str, key: &str, envs: Vec<Envelope>) {
    futures_util::stream::iter(envs)
        .map(|env| async move {
            let (frame, props) = (env.encode(), props(&env));
            let confirm = ch
                .basic_publish(
                    exchange.into(),
                    key.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &frame,
                    props,
                )
                .await
                .expect("publish")
                .await
                .expect("confirm");
            assert!(confirm.is_ack());
        })
        .buffer_unordered(WINDOW)
        .collect::<Vec<()>>()
        .await;
}

async fn drain(sub: &mut Subscription, n: usize) {
    for _ in 0..n {
        let d = sub
            .recv()
            .await
            .expect("subscription ended")
            .expect("delivery");
        d.ack().await.expect("ack");
    }
}

async fn raw_consumer(conn: &Connection, queue: &str) -> (Channel, lapin::Consumer) {
    let ch = conn.create_channel().await.unwrap();
    ch.basic_qos(WINDOW as u16, BasicQosOptions::default())
        .await
        .unwrap();
    let consumer = ch
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    (ch, consumer)
}

async fn raw_drain(consumer: &mut lapin::Consumer, n: usize) {
    for _ in 0..n {
        let d = consumer
            .next()
            .await
            .expect("consumer ended")
            .expect("delivery");
        // What the broker does for every delivery: parse it.
        let env = Envelope::decode(&d.data, 64 * 1024).expect("envelope");
        std::hint::black_box(env);
        d.acker.ack(BasicAckOptions::default()).await.expect("ack");
    }
}

struct Amqp {
    broker: AmqpBroker,
    conn: Connection,
    publish: Channel,
    ns: String,
    alice: UserId,
    bob: UserId,
    room: RoomId,
    members: Vec<UserId>,
}

async fn amqp_setup() -> Amqp {
    let ns = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let broker = AmqpBroker::builder(amqp_url())
        .namespace(&ns)
        .prefetch(WINDOW as u16)
        .confirm_window(WINDOW)
        .inbox_max_len(None)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("the benchmark needs RabbitMQ at {}: {e}", amqp_url()));
    let conn = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("raw lapin connection");
    let publish = conn.create_channel().await.unwrap();
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let alice = UserId::new("alice").unwrap();
    let bob = UserId::new("bob").unwrap();
    let room = RoomId::new("bench").unwrap();
    broker.ensure_inbox(&bob).await.unwrap();
    broker.create_room(&room).await.unwrap();
    let mut members = Vec::new();
    for i in 0..MEMBERS {
        let m = UserId::new(format!("m{i}")).unwrap();
        broker.ensure_inbox(&m).await.unwrap();
        broker.join(&room, &m).await.unwrap();
        members.push(m);
    }
    Amqp {
        broker,
        conn,
        publish,
        ns,
        alice,
        bob,
        room,
        members,
    }
}

impl Amqp {
    async fn purge(&self) {
        let ch = self.conn.create_channel().await.unwrap();
        for user in std::iter::once(&self.bob).chain(&self.members) {
            ch.queue_purge(
                format!("{}.inbox.{user}", self.ns).into(),
                QueuePurgeOptions::default(),
            )
            .await
            .unwrap();
        }
        let _ = ch.close(200, "done".into()).await;
    }

    async fn teardown(&self) {
        for user in std::iter::once(&self.bob).chain(&self.members) {
            self.broker.delete_inbox(user).await.unwrap();
        }
        self.broker.delete_room(&self.room).await.unwrap();
        self.broker.delete_namespace().await.unwrap();
        self.broker.close().await;
        let _ = self.conn.close(200, "done".into()).await;
    }

    fn direct(&self, n: usize) -> Vec<Envelope> {
        (0..n)
            .map(|_| envelope(&self.alice, To::User(self.bob.clone())))
            .collect()
    }

    fn room_msgs(&self, n: usize) -> Vec<Envelope> {
        (0..n)
            .map(|_| envelope(&self.alice, To::Room(self.room.clone())))
            .collect()
    }
}

fn amqp_benches(c: &mut Criterion) {
    let rt = runtime();
    let a = Arc::new(rt.block_on(amqp_setup()));

    let mut g = c.benchmark_group("amqp_publish_confirm");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("rmq_core", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let a = a.clone();
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let envs = a.direct(N);
                    let start = Instant::now();
                    publish_all(&a.broker, envs).await;
                    total += start.elapsed();
                    a.purge().await;
                }
                total
            }
        })
    });
    g.bench_function("raw_lapin", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let a = a.clone();
            async move {
                let mut total = Duration::ZERO;
                let exchange = format!("{}.direct", a.ns);
                let key = format!("user.{}", a.bob);
                for _ in 0..iters {
                    let envs = a.direct(N);
                    let start = Instant::now();
                    raw_publish_all(&a.publish, &exchange, &key, envs).await;
                    total += start.elapsed();
                    a.purge().await;
                }
                total
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("amqp_direct_publish_consume");
    g.throughput(Throughput::Elements(N as u64));
    {
        let sub = Arc::new(Mutex::new(rt.block_on(a.broker.subscribe(&a.bob)).unwrap()));
        g.bench_function("rmq_core", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (a, sub) = (a.clone(), sub.clone());
                async move {
                    let mut sub = sub.lock().await;
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let envs = a.direct(N);
                        let start = Instant::now();
                        tokio::join!(publish_all(&a.broker, envs), drain(&mut sub, N));
                        total += start.elapsed();
                    }
                    total
                }
            })
        });
    }
    {
        let queue = format!("{}.inbox.{}", a.ns, a.bob);
        let consumer = rt.block_on(raw_consumer(&a.conn, &queue));
        let consumer = Arc::new(Mutex::new(consumer));
        g.bench_function("raw_lapin", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (a, consumer) = (a.clone(), consumer.clone());
                async move {
                    let mut guard = consumer.lock().await;
                    let exchange = format!("{}.direct", a.ns);
                    let key = format!("user.{}", a.bob);
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let envs = a.direct(N);
                        let start = Instant::now();
                        tokio::join!(
                            raw_publish_all(&a.publish, &exchange, &key, envs),
                            raw_drain(&mut guard.1, N)
                        );
                        total += start.elapsed();
                    }
                    total
                }
            })
        });
        rt.block_on(async { consumer.lock().await.0.close(200, "done".into()).await.ok() });
    }
    g.finish();

    let mut g = c.benchmark_group("amqp_room_fanout");
    g.throughput(Throughput::Elements((ROOM_N * MEMBERS) as u64));
    {
        let subs: Vec<_> = a
            .members
            .iter()
            .map(|m| Arc::new(Mutex::new(rt.block_on(a.broker.subscribe(m)).unwrap())))
            .collect();
        g.bench_function("rmq_core", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (a, subs) = (a.clone(), subs.clone());
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let envs = a.room_msgs(ROOM_N);
                        let start = Instant::now();
                        let consumers = subs.iter().map(|s| {
                            let s = s.clone();
                            tokio::spawn(async move { drain(&mut *s.lock().await, ROOM_N).await })
                        });
                        let consumers: Vec<_> = consumers.collect();
                        publish_all(&a.broker, envs).await;
                        for c in consumers {
                            c.await.unwrap();
                        }
                        total += start.elapsed();
                    }
                    total
                }
            })
        });
    }
    {
        let consumers: Vec<_> = a
            .members
            .iter()
            .map(|m| {
                let queue = format!("{}.inbox.{m}", a.ns);
                Arc::new(Mutex::new(rt.block_on(raw_consumer(&a.conn, &queue))))
            })
            .collect();
        for (name, via_front_door) in [("raw_lapin", true), ("raw_lapin_to_fanout", false)] {
            g.bench_function(name, |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    let (a, consumers) = (a.clone(), consumers.clone());
                    async move {
                        let (exchange, key) = if via_front_door {
                            (format!("{}.rooms", a.ns), a.room.to_string())
                        } else {
                            (format!("{}.room.{}", a.ns, a.room), String::new())
                        };
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let envs = a.room_msgs(ROOM_N);
                            let start = Instant::now();
                            let tasks: Vec<_> = consumers
                                .iter()
                                .map(|c| {
                                    let c = c.clone();
                                    tokio::spawn(async move {
                                        raw_drain(&mut c.lock().await.1, ROOM_N).await
                                    })
                                })
                                .collect();
                            raw_publish_all(&a.publish, &exchange, &key, envs).await;
                            for t in tasks {
                                t.await.unwrap();
                            }
                            total += start.elapsed();
                        }
                        total
                    }
                })
            });
        }
        for c in consumers {
            rt.block_on(async { c.lock().await.0.close(200, "done".into()).await.ok() });
        }
    }
    g.finish();

    rt.block_on(a.teardown());
}

fn local_benches(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");

    // LocalBroker on sled.
    let broker = rt
        .block_on(LocalBroker::open(&format!(
            "sled:{}",
            dir.path().join("broker").display()
        )))
        .expect("local broker");
    let alice = UserId::new("alice").unwrap();
    let bob = UserId::new("bob").unwrap();
    let room = RoomId::new("bench").unwrap();
    let members: Vec<UserId> = (0..MEMBERS)
        .map(|i| UserId::new(format!("m{i}")).unwrap())
        .collect();
    rt.block_on(async {
        broker.ensure_inbox(&bob).await.unwrap();
        broker.create_room(&room).await.unwrap();
        for m in &members {
            broker.ensure_inbox(m).await.unwrap();
            broker.join(&room, m).await.unwrap();
        }
    });

    // Raw tiny_q on another sled store: one queue, same options.
    let raw_store = rt
        .block_on(nopi::open(&format!(
            "sled:{}",
            dir.path().join("raw").display()
        )))
        .expect("raw store");
    let (raw_queue, raw_members) = rt.block_on(async {
        let queues = tiny_q::Queues::new(&raw_store).await.unwrap();
        let options = tiny_q::QueueOptions::builder()
            .capacity(10_000)
            .overflow(tiny_q::Overflow::DropOldest)
            .lease_timeout(tiny_q::MAX_LEASE_TIMEOUT)
            .build()
            .unwrap();
        let mut members = Vec::new();
        for i in 0..MEMBERS {
            members.push(queues.create(&format!("m{i}"), options).await.unwrap());
        }
        (queues.create("bench", options).await.unwrap(), members)
    });

    let mut g = c.benchmark_group("local_direct_publish_consume");
    g.throughput(Throughput::Elements(N as u64));
    {
        let sub = Arc::new(Mutex::new(rt.block_on(broker.subscribe(&bob)).unwrap()));
        let broker = Arc::new(broker.clone());
        g.bench_function("rmq_core", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (broker, sub) = (broker.clone(), sub.clone());
                let (alice, bob) = (alice.clone(), bob.clone());
                async move {
                    let mut sub = sub.lock().await;
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let envs: Vec<Envelope> = (0..N)
                            .map(|_| envelope(&alice, To::User(bob.clone())))
                            .collect();
                        let start = Instant::now();
                        let publish = futures_util::stream::iter(envs)
                            .map(|env| {
                                let broker = broker.clone();
                                async move { broker.publish(&env).await.expect("publish") }
                            })
                            .buffer_unordered(WINDOW)
                            .collect::<Vec<()>>();
                        tokio::join!(publish, drain(&mut sub, N));
                        total += start.elapsed();
                    }
                    total
                }
            })
        });
    }
    g.bench_function("raw_tiny_q", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (q, alice, bob) = (raw_queue.clone(), alice.clone(), bob.clone());
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let envs: Vec<Envelope> = (0..N)
                        .map(|_| envelope(&alice, To::User(bob.clone())))
                        .collect();
                    let start = Instant::now();
                    let publish = futures_util::stream::iter(envs)
                        .map(|env| {
                            let q = q.clone();
                            async move { q.push(env.encode()).await.expect("push") }
                        })
                        .buffer_unordered(WINDOW)
                        .collect::<Vec<_>>();
                    let consume = async {
                        for _ in 0..N {
                            let lease = q
                                .lease_wait(Duration::from_secs(10))
                                .await
                                .expect("lease")
                                .expect("an item");
                            std::hint::black_box(Envelope::decode(lease.item(), 1 << 16).unwrap());
                            lease.ack().await.expect("ack");
                        }
                    };
                    tokio::join!(publish, consume);
                    total += start.elapsed();
                }
                total
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("local_room_fanout");
    g.throughput(Throughput::Elements((ROOM_N * MEMBERS) as u64));
    {
        let subs: Vec<_> = members
            .iter()
            .map(|m| Arc::new(Mutex::new(rt.block_on(broker.subscribe(m)).unwrap())))
            .collect();
        let broker = Arc::new(broker.clone());
        g.bench_function("rmq_core", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (broker, subs) = (broker.clone(), subs.clone());
                let (alice, room) = (alice.clone(), room.clone());
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let envs: Vec<Envelope> = (0..ROOM_N)
                            .map(|_| envelope(&alice, To::Room(room.clone())))
                            .collect();
                        let start = Instant::now();
                        let consumers: Vec<_> = subs
                            .iter()
                            .map(|s| {
                                let s = s.clone();
                                tokio::spawn(
                                    async move { drain(&mut *s.lock().await, ROOM_N).await },
                                )
                            })
                            .collect();
                        futures_util::stream::iter(envs)
                            .map(|env| {
                                let broker = broker.clone();
                                async move { broker.publish(&env).await.expect("publish") }
                            })
                            .buffer_unordered(WINDOW)
                            .collect::<Vec<()>>()
                            .await;
                        for c in consumers {
                            c.await.unwrap();
                        }
                        total += start.elapsed();
                    }
                    total
                }
            })
        });
    }
    g.bench_function("raw_tiny_q", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (queues, alice, room) = (raw_members.clone(), alice.clone(), room.clone());
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let envs: Vec<Envelope> = (0..ROOM_N)
                        .map(|_| envelope(&alice, To::Room(room.clone())))
                        .collect();
                    let start = Instant::now();
                    let consumers: Vec<_> = queues
                        .iter()
                        .map(|q| {
                            let q = q.clone();
                            tokio::spawn(async move {
                                for _ in 0..ROOM_N {
                                    let lease = q
                                        .lease_wait(Duration::from_secs(10))
                                        .await
                                        .expect("lease")
                                        .expect("an item");
                                    let env = Envelope::decode(lease.item(), 1 << 16).unwrap();
                                    std::hint::black_box(env);
                                    lease.ack().await.expect("ack");
                                }
                            })
                        })
                        .collect();
                    futures_util::stream::iter(envs)
                        .map(|env| {
                            let queues = &queues;
                            async move {
                                let f = env.encode();
                                let pushes = queues.iter().map(|q| q.push(&f));
                                for r in futures_util::future::join_all(pushes).await {
                                    r.expect("push");
                                }
                            }
                        })
                        .buffer_unordered(WINDOW)
                        .collect::<Vec<()>>()
                        .await;
                    for c in consumers {
                        c.await.unwrap();
                    }
                    total += start.elapsed();
                }
                total
            }
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8))
}

criterion_group! {
    name = benches;
    config = config();
    targets = amqp_benches, local_benches
}
criterion_main!(benches);
