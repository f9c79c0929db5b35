//! Cluster load generator: cross-node delivery latency and throughput of the
//! chat server with 1, 2 and 3 nodes under the same client load.
//!
//! For each cluster size N it starts N real `chat-server` processes sharing a
//! fresh PostgreSQL schema and a fresh RabbitMQ namespace, logs in the same
//! number of users over the native TCP protocol (JSON lines), spread
//! round-robin over the nodes, and has every user send private messages at a
//! fixed offered rate to the next user — who is on another node whenever
//! N > 1, so every private message crosses nodes. Sends are open-loop (the
//! next one does not wait for the reply). Each message carries its send time
//! (this process's monotonic clock); the receiver computes the latency and
//! acks what it got every 50 ms, as a real client does. After the private
//! load, a group fan-out phase: one member sends to a group of every user.
//! The same runs on one embedded node (sled, in-process broker) give the
//! baseline without RabbitMQ. Results are printed as markdown tables; the
//! RabbitMQ namespace is deleted after each run.
//!
//! Run: `cargo bench -p chat --bench cluster_load` (run directly, the binary
//! needs the `--bench` flag cargo passes). Needs PostgreSQL at
//! `DATABASE_URL` and RabbitMQ at `AMQP_URL` (defaults: the local ones) and
//! fails without them. About 3 minutes after the build. Knobs (environment):
//!
//! - `CLUSTER_LOAD_NODES`: shapes to run, default `1,2,3,embedded`;
//! - `CLUSTER_LOAD_RATE`: offered private messages per second per user, one
//!   run of every shape per value, default `5,40`;
//! - `CLUSTER_LOAD_USERS` (60), `CLUSTER_LOAD_WARMUP` (seconds, 3),
//!   `CLUSTER_LOAD_SECS` (measured seconds, 12);
//! - `CLUSTER_LOAD_GROUP_MSGS`: group messages (one per 200 ms) after the
//!   first rate's private load, default 20; 0 skips the fan-out phase.
#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a load generator reports on stdout (the tables) and stderr (progress)"
)]

#[allow(dead_code, reason = "the benchmark uses part of the shared helpers")]
#[path = "../tests/support/process.rs"]
mod process;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::{amqp_url, lock};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot};

/// How long setup calls (register, login, join) may take.
const SETUP_WAIT: Duration = Duration::from_secs(60);
/// How often each client acks what it received.
const ACK_EVERY: Duration = Duration::from_millis(50);
/// How long after the last send the receivers may still get messages.
const DRAIN: Duration = Duration::from_secs(5);
/// Server log lines (warnings, errors) echoed per node, at most.
const ECHO_LINES: usize = 20;

fn env_or<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Microseconds since the start of this process (monotonic): senders and
/// receivers share this clock.
fn now_us() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let e = EPOCH.get_or_init(Instant::now);
    u64::try_from(e.elapsed().as_micros()).unwrap_or(u64::MAX)
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------- nodes --

/// One chat-server process, killed when dropped.
struct Node {
    child: Child,
    tcp: SocketAddr,
    /// Warning and error lines in its log.
    complaints: Arc<AtomicUsize>,
}

impl Node {
    /// Start a node; with `ns` a cluster node on RabbitMQ, without it the
    /// embedded shape (in-process broker).
    async fn start(id: &str, store: &str, ns: Option<&str>) -> Node {
        let mut cmd = process::command();
        cmd.args(["--node-id", id, "--store", store]);
        if let Some(ns) = ns {
            cmd.args(["--amqp", &amqp_url(), "--amqp-namespace", ns]);
        }
        cmd.args(["--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0"])
            .args([
                "--msgid-json",
                "off",
                "--type-data",
                "off",
                "--token-json",
                "off",
                "--thrift",
                "off",
            ])
            // The rate limiter is not what is measured.
            .args(["--send-rate", "100000", "--send-burst", "100000"])
            .args(["--log", "warn,chat_server=info"]);
        // Count and echo (a few of) its complaints.
        let complaints = Arc::new(AtomicUsize::new(0));
        let count = complaints.clone();
        let tag = id.to_owned();
        let (child, addrs) = process::start(cmd, move |line| {
            if (line.contains("WARN") || line.contains("ERROR"))
                && count.fetch_add(1, Ordering::Relaxed) < ECHO_LINES
            {
                eprintln!("[{tag}] {line}");
            }
        })
        .await;
        Node {
            child,
            tcp: addrs.tcp,
            complaints,
        }
    }

    fn cpu(&self) -> Option<Duration> {
        proc_cpu(&self.child.id()?.to_string()).map(|(_, t)| t)
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// The command name and CPU time (user + system) used so far of process
/// `pid` (a number or `self`), from /proc.
fn proc_cpu(pid: &str) -> Option<(String, Duration)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let comm = &stat[stat.find('(')? + 1..stat.rfind(')')?];
    // Fields after the command name: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some((comm.to_owned(), Duration::from_millis(ticks * 10)))
}

/// CPU used so far by every process named `comm` (all users' processes:
/// RabbitMQ and PostgreSQL are shared with whatever else runs).
fn cpu_of(comm: &str) -> Duration {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|p| proc_cpu(&p))
        .filter(|(c, _)| c == comm)
        .map(|(_, t)| t)
        .sum()
}

/// CPU used so far by the parts of the system under test.
#[derive(Clone, Copy, Default)]
struct Cpu {
    nodes: Duration,
    rabbitmq: Duration,
    postgres: Duration,
    clients: Duration,
    /// Busy and total jiffies of the machine.
    machine: Option<(u64, u64)>,
}

impl Cpu {
    fn now(nodes: &[Node]) -> Cpu {
        Cpu {
            nodes: nodes.iter().filter_map(Node::cpu).sum(),
            rabbitmq: cpu_of("beam.smp"),
            postgres: cpu_of("postgres"),
            clients: proc_cpu("self").map_or(Duration::ZERO, |(_, t)| t),
            machine: machine_cpu(),
        }
    }

    /// What was used between `before` and `self`.
    fn since(self, before: Cpu) -> Cpu {
        Cpu {
            nodes: self.nodes.saturating_sub(before.nodes),
            rabbitmq: self.rabbitmq.saturating_sub(before.rabbitmq),
            postgres: self.postgres.saturating_sub(before.postgres),
            clients: self.clients.saturating_sub(before.clients),
            machine: match (before.machine, self.machine) {
                (Some((b0, t0)), Some((b1, t1))) => Some((b1 - b0, t1 - t0)),
                _ => None,
            },
        }
    }

    fn busy(&self) -> f64 {
        match self.machine {
            Some((b, t)) if t > 0 => b as f64 / t as f64,
            _ => f64::NAN,
        }
    }
}

/// Busy and total jiffies of the whole machine, from /proc/stat.
fn machine_cpu() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4)?; // idle + iowait
    Some((total - idle, total))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// Remove what the run left in RabbitMQ: the users' inboxes (durable
/// queues), the rooms and the namespace's exchanges.
async fn delete_namespace(ns: &str, users: &[String], rooms: &[&str]) {
    use rmq_core::{AmqpBroker, Broker, RoomId, UserId};
    let result = async {
        let broker = AmqpBroker::builder(amqp_url())
            .namespace(ns)
            .connect()
            .await?;
        for u in users {
            broker.delete_inbox(&UserId::new(u.as_str())?).await?;
        }
        for r in rooms {
            broker.delete_room(&RoomId::new(*r)?).await?;
        }
        broker.delete_namespace().await?;
        broker.close().await;
        Ok::<(), rmq_core::Error>(())
    }
    .await;
    if let Err(e) = result {
        eprintln!("   could not delete RabbitMQ namespace {ns}: {e}");
    }
}

// -------------------------------------------------------------- clients --

/// What the whole run observed, shared by every client.
#[derive(Default)]
struct Stats {
    /// Measured window, in `now_us` time: [from, to).
    window: (u64, u64),
    /// Private sends answered 200: message id -> (recipient, send time).
    sent: HashMap<String, (String, u64)>,
    /// Private messages received: (recipient, message id) -> latency (µs).
    got: HashMap<(String, String), u64>,
    /// Private messages received inside the window (by receive time).
    got_in_window: usize,
    /// Round trips of `chat.send` (µs), for sends inside the window.
    send_rtt: Vec<u64>,
    /// Non-200 replies to `chat.send`, by status.
    failed: BTreeMap<i64, usize>,
    /// A sample of the failure replies.
    failure_sample: Vec<String>,
    /// Non-200 replies to `chat.ack`.
    ack_failed: usize,
    /// Same message pushed twice to the same recipient.
    duplicates: usize,
    /// Group messages answered 200: id -> send time.
    group_sent: HashMap<String, u64>,
    /// Group deliveries: (recipient, id) -> latency (µs).
    group_got: HashMap<(String, String), u64>,
    /// Pushes that end or replace a session, and closed connections.
    odd: Vec<String>,
}

enum Waiting {
    Call(oneshot::Sender<Value>),
    Send { at: u64, to: Option<String> },
    Ack,
}

/// One user on one native TCP connection: a writer task, a reader task
/// (replies by id, pushes to the stats) and an acker task.
struct Client {
    name: String,
    out: mpsc::UnboundedSender<String>,
    next: Arc<AtomicU64>,
    waiting: Arc<Mutex<HashMap<u64, Waiting>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Set when this side closes: what the reader sees after is not news.
    closing: Arc<AtomicBool>,
}

impl Drop for Client {
    /// Close the connection: stop its writer, reader and acker.
    fn drop(&mut self) {
        self.closing.store(true, Ordering::SeqCst);
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Client {
    async fn connect(addr: SocketAddr, name: &str, stats: Arc<Mutex<Stats>>) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect to a node");
        stream.set_nodelay(true).expect("nodelay");
        let (r, mut w) = stream.into_split();
        let (out, mut lines_out) = mpsc::unbounded_channel::<String>();
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(async move {
            while let Some(line) = lines_out.recv().await {
                if w.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
            }
        }));
        let waiting: Arc<Mutex<HashMap<u64, Waiting>>> = Arc::default();
        let unacked: Arc<Mutex<Vec<String>>> = Arc::default();
        let closing = Arc::new(AtomicBool::new(false));
        {
            let (waiting, unacked, name) = (waiting.clone(), unacked.clone(), name.to_owned());
            let closing = closing.clone();
            tasks.push(tokio::spawn(async move {
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if closing.load(Ordering::SeqCst) {
                        return;
                    }
                    let at = now_us();
                    let Ok(v) = serde_json::from_str::<Value>(&line) else {
                        lock(&stats).odd.push(format!("{name}: not JSON: {line}"));
                        continue;
                    };
                    match v["push"].as_str() {
                        Some("message") => {
                            received(&stats, &name, &v["content"], at);
                            if let Some(id) = v["content"]["id"].as_str() {
                                lock(&unacked).push(id.to_owned());
                            }
                        }
                        Some("presence" | "group") => {}
                        Some(other) => {
                            lock(&stats).odd.push(format!("{name}: {other} push {v}"));
                        }
                        None => replied(&stats, &waiting, v, at),
                    }
                }
                if !closing.load(Ordering::SeqCst) {
                    lock(&stats)
                        .odd
                        .push(format!("{name}: connection closed by the server"));
                }
            }));
        }
        let next = Arc::new(AtomicU64::new(1));
        // The acker: what arrived since the last tick, in one `chat.ack`.
        let (out2, waiting2, next2) = (out.clone(), waiting.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(ACK_EVERY);
            loop {
                tick.tick().await;
                let ids = std::mem::take(&mut *lock(&unacked));
                if ids.is_empty() {
                    continue;
                }
                let id = next2.fetch_add(1, Ordering::Relaxed);
                lock(&waiting2).insert(id, Waiting::Ack);
                let line = json!({"id": id, "api": "chat.ack", "params": {"ids": ids}});
                if out2.send(format!("{line}\n")).is_err() {
                    break;
                }
            }
        }));
        let mut c = Client {
            name: name.to_owned(),
            out,
            next,
            waiting,
            tasks,
            closing,
        };
        let pw = format!("pw-{name}-secret");
        let r = c
            .call("user.register", json!({"name": name, "password": pw}))
            .await;
        assert_eq!(r["status"], 200, "register {name}: {r}");
        let r = c
            .call("user.login", json!({"name": name, "password": pw}))
            .await;
        assert_eq!(r["status"], 200, "login {name}: {r}");
        c
    }

    fn line(&mut self, api: &str, params: Value, wait: Waiting) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.waiting).insert(id, wait);
        let line = json!({"id": id, "api": api, "params": params});
        let _ = self.out.send(format!("{line}\n"));
    }

    async fn call(&mut self, api: &str, params: Value) -> Value {
        let (tx, rx) = oneshot::channel();
        self.line(api, params.clone(), Waiting::Call(tx));
        let name = &self.name;
        tokio::time::timeout(SETUP_WAIT, rx)
            .await
            .unwrap_or_else(|_| panic!("{name}: no reply to {api} {params} within {SETUP_WAIT:?}"))
            .unwrap_or_else(|_| panic!("{name}: connection lost during {api}"))
    }

    async fn ok(&mut self, api: &str, params: Value) {
        let r = self.call(api, params.clone()).await;
        assert_eq!(r["status"], 200, "{}: {api} {params} -> {r}", self.name);
    }

    /// Send without waiting for the reply (the reader records it).
    fn send(&mut self, to: Value, recipient: Option<&str>, text: String) {
        let at = now_us();
        let text = format!("{at} {text}");
        self.line(
            "chat.send",
            json!({"to": to, "text": text}),
            Waiting::Send {
                at,
                to: recipient.map(str::to_owned),
            },
        );
    }

    /// Sends still without a reply.
    fn unanswered(&self) -> usize {
        lock(&self.waiting)
            .values()
            .filter(|w| matches!(w, Waiting::Send { .. }))
            .count()
    }
}

fn replied(stats: &Mutex<Stats>, waiting: &Mutex<HashMap<u64, Waiting>>, v: Value, at: u64) {
    let Some(id) = v["id"].as_u64() else {
        lock(stats).odd.push(format!("reply without an id: {v}"));
        return;
    };
    let Some(w) = lock(waiting).remove(&id) else {
        return;
    };
    let ok = v["status"] == 200;
    match w {
        Waiting::Call(tx) => {
            let _ = tx.send(v);
        }
        Waiting::Ack => {
            if !ok {
                let mut s = lock(stats);
                s.ack_failed += 1;
                if s.failure_sample.len() < 5 {
                    s.failure_sample.push(format!("chat.ack -> {v}"));
                }
            }
        }
        Waiting::Send { at: sent_at, to } => {
            let mut s = lock(stats);
            if !ok {
                *s.failed
                    .entry(v["status"].as_i64().unwrap_or(0))
                    .or_default() += 1;
                if s.failure_sample.len() < 5 {
                    s.failure_sample.push(format!("chat.send -> {v}"));
                }
                return;
            }
            let mid = v["content"]["id"].as_str().unwrap_or_default().to_owned();
            match to {
                Some(to) => {
                    if (s.window.0..s.window.1).contains(&sent_at) {
                        s.send_rtt.push(at - sent_at);
                    }
                    s.sent.insert(mid, (to, sent_at));
                }
                None => {
                    s.group_sent.insert(mid, sent_at);
                }
            }
        }
    }
}

fn received(stats: &Mutex<Stats>, me: &str, m: &Value, at: u64) {
    let (Some(id), Some(text)) = (m["id"].as_str(), m["text"].as_str()) else {
        lock(stats)
            .odd
            .push(format!("{me}: message without id/text: {m}"));
        return;
    };
    let Some(sent_at) = text.split(' ').next().and_then(|t| t.parse::<u64>().ok()) else {
        return; // not one of ours
    };
    let latency = at.saturating_sub(sent_at);
    let key = (me.to_owned(), id.to_owned());
    let mut s = lock(stats);
    let group = m["to"]["group"].is_string();
    let seen = if group {
        s.group_got.insert(key, latency).is_some()
    } else {
        s.got.insert(key, latency).is_some()
    };
    if seen {
        s.duplicates += 1;
    } else if !group && (s.window.0..s.window.1).contains(&at) {
        s.got_in_window += 1;
    }
}

// ------------------------------------------------------------ one run --

struct Outcome {
    shape: Shape,
    cross: f64,
    offered: f64,
    sent_in_window: usize,
    /// Private sends answered 200 over warm-up and window (the CPU span).
    sent_all: usize,
    delivered_in_window: usize,
    throughput: f64,
    latency: Vec<u64>,
    send_rtt: Vec<u64>,
    failed: BTreeMap<i64, usize>,
    unanswered: usize,
    lost: usize,
    duplicates: usize,
    ack_failed: usize,
    group: Option<(usize, usize, Vec<u64>)>,
    /// CPU used over warm-up and window.
    cpu: Cpu,
    /// The 1-minute load average at the end of the measured window.
    load_average: String,
    complaints: usize,
    odd: Vec<String>,
    failure_sample: Vec<String>,
}

struct Load {
    users: usize,
    rate: f64,
    warmup: Duration,
    measure: Duration,
    group_msgs: usize,
}

/// What to start: `nodes` cluster nodes on PostgreSQL + RabbitMQ, or one
/// embedded node (sled, in-process broker).
#[derive(Clone, Copy)]
enum Shape {
    Cluster(usize),
    Embedded,
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shape::Cluster(n) => write!(f, "{n}"),
            Shape::Embedded => write!(f, "1, embedded (sled, no RabbitMQ)"),
        }
    }
}

async fn run(shape: Shape, load: &Load) -> Outcome {
    // Declared first, so dropped last (also on a panic): the nodes die
    // before their store does.
    let (store, ns, n) = match shape {
        Shape::Cluster(n) => {
            let ns = format!(
                "chatload{}",
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            );
            eprintln!(
                "== {n} node(s), {} msgs/s per user: namespace {ns}",
                load.rate
            );
            (nopi::testing::TempStore::postgres(), Some(ns), n)
        }
        Shape::Embedded => {
            eprintln!("== embedded node, {} msgs/s per user", load.rate);
            let store = nopi::testing::TempStore::sled().expect("temp sled store");
            (store, None, 1)
        }
    };
    // The first node creates the store's tables; the others follow.
    let mut nodes = vec![Node::start("node1", store.url(), ns.as_deref()).await];
    let rest = futures_util::future::join_all((2..=n).map(|k| {
        let (url, ns) = (store.url().to_owned(), ns.clone());
        async move { Node::start(&format!("node{k}"), &url, ns.as_deref()).await }
    }))
    .await;
    nodes.extend(rest);

    let stats: Arc<Mutex<Stats>> = Arc::default();
    lock(&stats).window = (u64::MAX, u64::MAX);
    let names: Vec<String> = (0..load.users).map(|i| format!("u{i}")).collect();
    let node_of = |i: usize| i % n;
    let clients = futures_util::future::join_all(names.iter().enumerate().map(|(i, name)| {
        let (addr, stats) = (nodes[node_of(i)].tcp, stats.clone());
        async move { Client::connect(addr, name, stats).await }
    }))
    .await;
    let cross = (0..load.users)
        .filter(|&i| node_of(i) != node_of((i + 1) % load.users))
        .count() as f64
        / load.users as f64;
    eprintln!("   {} users logged in; private sends start", load.users);

    // Private messages: user i -> user i+1, `rate` per second each, start
    // times staggered over one period so the sends are spread evenly.
    let period = Duration::from_secs_f64(1.0 / load.rate);
    let t0 = tokio::time::Instant::now() + Duration::from_millis(100);
    let t0_us = now_us() + 100_000;
    lock(&stats).window = (
        t0_us + us(load.warmup),
        t0_us + us(load.warmup + load.measure),
    );
    let end = t0 + load.warmup + load.measure;
    let cpu_before = Cpu::now(&nodes);
    let senders: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            let peer = names[(i + 1) % names.len()].clone();
            let start = t0 + period.mul_f64(i as f64 / load.users as f64);
            tokio::spawn(async move {
                let mut k = 0u32;
                loop {
                    let at = start + period * k;
                    if at >= end {
                        break;
                    }
                    tokio::time::sleep_until(at).await;
                    c.send(
                        json!({"user": peer}),
                        Some(&peer),
                        format!("{} #{k}", c.name),
                    );
                    k += 1;
                }
                c
            })
        })
        .collect();
    let mut clients = Vec::new();
    for s in senders {
        clients.push(s.await.expect("sender task"));
    }
    let cpu = Cpu::now(&nodes).since(cpu_before);
    let load_average = load_average();
    eprintln!("   sends done; draining for up to {DRAIN:?}");
    let drain_until = Instant::now() + DRAIN;
    loop {
        let done = {
            let s = lock(&stats);
            s.sent
                .iter()
                .all(|(id, (to, _))| s.got.contains_key(&(to.clone(), id.clone())))
        };
        let pending: usize = clients.iter().map(Client::unanswered).sum();
        if (done && pending == 0) || Instant::now() >= drain_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let unanswered: usize = clients.iter().map(Client::unanswered).sum();

    // Group fan-out: one sender, every user a member.
    let group = if load.group_msgs > 0 {
        eprintln!(
            "   group fan-out: {} messages to {} members",
            load.group_msgs, load.users
        );
        clients[0].ok("group.create", json!({"name": "fan"})).await;
        futures_util::future::join_all(
            clients[1..]
                .iter_mut()
                .map(|c| c.ok("group.join", json!({"name": "fan"}))),
        )
        .await;
        let gap = Duration::from_millis(200);
        for k in 0..load.group_msgs {
            let c = &mut clients[0];
            c.send(json!({"group": "fan"}), None, format!("{} g{k}", c.name));
            tokio::time::sleep(gap).await;
        }
        let expected_each = load.users - 1;
        let until = Instant::now() + DRAIN;
        loop {
            let (sent, got) = {
                let s = lock(&stats);
                let got = s.group_got.keys().filter(|(to, _)| to != "u0").count();
                (s.group_sent.len(), got)
            };
            if (sent == load.group_msgs && got >= sent * expected_each) || Instant::now() >= until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let s = lock(&stats);
        let lat: Vec<u64> = s
            .group_got
            .iter()
            .filter(|((to, _), _)| to != "u0")
            .map(|(_, l)| *l)
            .collect();
        Some((lat.len(), s.group_sent.len() * expected_each, lat))
    } else {
        None
    };

    let complaints = nodes
        .iter()
        .map(|n| n.complaints.load(Ordering::Relaxed))
        .sum();
    drop(clients);
    for node in nodes {
        node.stop().await;
    }
    drop(store);
    if let Some(ns) = &ns {
        delete_namespace(ns, &names, &["lobby", "fan"]).await;
    }

    let s = lock(&stats);
    let (w0, w1) = s.window;
    let mut latency = Vec::new();
    let mut sent_in_window = 0;
    let mut lost = 0;
    for (id, (to, at)) in &s.sent {
        let got = s.got.get(&(to.clone(), id.clone()));
        if got.is_none() {
            lost += 1;
        }
        if (w0..w1).contains(at) {
            sent_in_window += 1;
            if let Some(l) = got {
                latency.push(*l);
            }
        }
    }
    let delivered_in_window = s.got_in_window;
    let secs = load.measure.as_secs_f64();
    Outcome {
        shape,
        cross,
        offered: load.users as f64 * load.rate,
        sent_in_window,
        sent_all: s.sent.len(),
        delivered_in_window,
        throughput: delivered_in_window as f64 / secs,
        latency,
        send_rtt: s.send_rtt.clone(),
        failed: s.failed.clone(),
        unanswered,
        lost,
        duplicates: s.duplicates,
        ack_failed: s.ack_failed,
        group,
        cpu,
        load_average,
        complaints,
        odd: s.odd.clone(),
        failure_sample: s.failure_sample.clone(),
    }
}

// ------------------------------------------------------------- report --

fn pct(v: &mut [u64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i] as f64 / 1000.0
}

fn max_ms(v: &[u64]) -> f64 {
    v.iter().max().map_or(f64::NAN, |m| *m as f64 / 1000.0)
}

fn report(loads: &[Load], outcomes: &mut [Outcome]) {
    let Some(load) = loads.first() else { return };
    let rates: Vec<String> = loads
        .iter()
        .map(|l| format!("{} ({} msgs/s offered)", l.rate, l.users as f64 * l.rate))
        .collect();
    println!();
    println!(
        "{} users, each sending private messages to the next user at {} msgs/s; \
         {:?} warm-up + {:?} measured per row; machine: {} cores",
        load.users,
        rates.join(" or "),
        load.warmup,
        load.measure,
        std::thread::available_parallelism().map_or(0, |p| p.get()),
    );
    println!();
    println!(
        "| nodes | cross-node | offered msg/s | sent (200) in window | delivered in window | \
         throughput msg/s | latency p50 | p99 | max | `chat.send` RTT p50 / p99 | \
         failed sends | unanswered | lost | duplicates | \
         CPU ms per msg: nodes / RabbitMQ / PostgreSQL / clients | machine CPU busy | load avg |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for o in outcomes.iter_mut() {
        let failed = if o.failed.is_empty() {
            "0".to_owned()
        } else {
            o.failed
                .iter()
                .map(|(s, n)| format!("{n}× {s}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let per_msg = |d: Duration| d.as_secs_f64() * 1000.0 / o.sent_all.max(1) as f64;
        let cpu = format!(
            "{:.2} / {:.2} / {:.2} / {:.2}",
            per_msg(o.cpu.nodes),
            per_msg(o.cpu.rabbitmq),
            per_msg(o.cpu.postgres),
            per_msg(o.cpu.clients)
        );
        println!(
            "| {} | {:.0} % | {:.0} | {} | {} | {:.1} | {:.2} ms | {:.2} ms | {:.1} ms | {:.2} / {:.2} ms | {} | {} | {} | {} | {} | {:.0} % | {} |",
            o.shape,
            o.cross * 100.0,
            o.offered,
            o.sent_in_window,
            o.delivered_in_window,
            o.throughput,
            pct(&mut o.latency, 0.50),
            pct(&mut o.latency, 0.99),
            max_ms(&o.latency),
            pct(&mut o.send_rtt, 0.50),
            pct(&mut o.send_rtt, 0.99),
            failed,
            o.unanswered,
            o.lost,
            o.duplicates,
            cpu,
            o.cpu.busy() * 100.0,
            o.load_average,
        );
    }
    if outcomes.iter().any(|o| o.group.is_some()) {
        println!();
        println!(
            "Group fan-out: one member sends {} messages (one per 200 ms) to a group of all {} users.",
            load.group_msgs, load.users
        );
        println!();
        println!("| nodes | deliveries / expected | latency p50 | p99 | max |");
        println!("|---|---|---|---|---|");
        for o in outcomes.iter_mut() {
            if let Some((got, want, lat)) = &mut o.group {
                println!(
                    "| {} | {} / {} | {:.2} ms | {:.2} ms | {:.1} ms |",
                    o.shape,
                    got,
                    want,
                    pct(lat, 0.50),
                    pct(lat, 0.99),
                    max_ms(lat),
                );
            }
        }
    }
    println!();
    for o in outcomes.iter() {
        let mut notes = Vec::new();
        if o.ack_failed > 0 {
            notes.push(format!("{} failed acks", o.ack_failed));
        }
        if o.complaints > 0 {
            notes.push(format!(
                "{} WARN/ERROR lines in the nodes' logs",
                o.complaints
            ));
        }
        notes.extend(o.failure_sample.iter().cloned());
        notes.extend(o.odd.iter().take(5).cloned());
        if o.odd.len() > 5 {
            notes.push(format!("... and {} more odd events", o.odd.len() - 5));
        }
        if !notes.is_empty() {
            println!(
                "nodes {} at {:.0} msgs/s: {}",
                o.shape,
                o.offered,
                notes.join("; ")
            );
        }
    }
}

fn list<T: FromStr>(name: &str, default: &str) -> Vec<T> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` (or
    // `--all-targets`) runs this without it: a load run of minutes has no
    // place in a test run.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!(
            "cluster_load: a load generator; run it with `cargo bench -p chat --bench cluster_load`"
        );
        return;
    }
    let _ = now_us();
    let rates: Vec<f64> = list::<f64>("CLUSTER_LOAD_RATE", "5,40")
        .into_iter()
        .filter(|r| *r > 0.0)
        .collect();
    let shapes: Vec<Shape> = std::env::var("CLUSTER_LOAD_NODES")
        .unwrap_or_else(|_| "1,2,3,embedded".into())
        .split(',')
        .filter_map(|s| match s.trim() {
            "embedded" | "e" => Some(Shape::Embedded),
            n => n.parse().ok().filter(|&n| n > 0).map(Shape::Cluster),
        })
        .collect();
    let group_msgs = env_or("CLUSTER_LOAD_GROUP_MSGS", 20usize);
    let mut loads = Vec::new();
    for (i, rate) in rates.into_iter().enumerate() {
        loads.push(Load {
            users: env_or("CLUSTER_LOAD_USERS", 60usize).max(2),
            rate,
            warmup: Duration::from_secs_f64(env_or("CLUSTER_LOAD_WARMUP", 3.0f64)),
            measure: Duration::from_secs_f64(env_or("CLUSTER_LOAD_SECS", 12.0f64).max(1.0)),
            // The fan-out phase runs once per shape, after the first load.
            group_msgs: if i == 0 { group_msgs } else { 0 },
        });
    }
    let started = Instant::now();
    let mut outcomes = Vec::new();
    for load in &loads {
        for &shape in &shapes {
            outcomes.push(run(shape, load).await);
        }
    }
    report(&loads, &mut outcomes);
    eprintln!("total {:.0} s", started.elapsed().as_secs_f64());
}
