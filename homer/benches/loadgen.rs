//! homer's own load generator: each server under test runs in a child
//! process (this binary re-run with `--serve <kind>`), the clients run here.
//!
//! Measures, for homer and its baseline in the same run (alternating short
//! rounds between the two, so both see the same machine load):
//! - HTTP calls per second: 32 keep-alive connections posting the same JSON
//!   to homer's `POST /api/echo` and to a bare hyper server answering the
//!   same reply; the median of 7 rounds of 0.5 s each;
//! - memory per idle WebSocket connection: the server process's resident
//!   memory with `HOMER_LOADGEN_CONNS` (default 1,000) idle connections,
//!   minus before, divided by their number;
//! - WebSocket fan-out to those connections subscribed to one topic: 40
//!   rounds of a burst of 10 messages from a publisher connection, each
//!   round waiting until every connection has every message; deliveries per
//!   second and p50/p99 latency from send to receipt, against a minimal
//!   tokio-tungstenite + `tokio::sync::broadcast` server (with the same
//!   WebSocket buffer sizes as homer).
//!
//! Run: `cargo bench -p homer --bench loadgen`. Prints a markdown table.
#![expect(
    clippy::unwrap_used,
    reason = "bench code: a failed unwrap stops the run, which is what it should do"
)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

const HTTP_CLIENTS: usize = 32;
const HTTP_SECONDS: f64 = 0.5;
const HTTP_ROUNDS: usize = 7;
const ROUNDS: u64 = 40;
const BURST: u64 = 10;

fn now_us() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_micros() as u64
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Child mode: serve `kind` and report the port on stdout; exit when stdin
/// closes.
fn serve(kind: &str) {
    let rt = runtime();
    let addr = rt.block_on(async {
        match kind {
            "homer" => {
                let (homer, addr) = common::start_homer().await;
                std::mem::forget(homer);
                addr
            }
            "hyper" => common::start_bare_hyper().await,
            "ws" => {
                let (addr, tx) = common::start_baseline_ws().await;
                std::mem::forget(tx);
                addr
            }
            other => panic!("unknown server kind {other}"),
        }
    });
    let mut out = std::io::stdout();
    writeln!(out, "{}", addr.port()).unwrap();
    out.flush().unwrap();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(kind: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--serve", kind])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().unwrap();
        Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// Resident memory of the server process, KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Clients = Vec<common::HttpClient>;

async fn http_clients(addr: SocketAddr) -> Clients {
    let mut clients = Vec::new();
    for _ in 0..HTTP_CLIENTS {
        clients.push(common::HttpClient::connect(addr).await);
    }
    clients
}

/// Calls per second of `clients` posting to `path` for `secs`.
async fn http_round(clients: Clients, path: &'static str, secs: f64) -> (Clients, f64) {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    c.post(path, common::HTTP_BODY).await;
                    n += 1;
                }
                (c, n)
            })
        })
        .collect();
    let mut clients = Vec::new();
    let mut total = 0;
    for t in tasks {
        let (c, n) = t.await.unwrap();
        clients.push(c);
        total += n;
    }
    (clients, total as f64 / start.elapsed().as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[derive(Default)]
struct Counter {
    delivered: AtomicU64,
    done: Notify,
}

/// One server under fan-out load: its receivers, its publisher, and the time
/// spent in its rounds.
struct Rig {
    homer: bool,
    conns: usize,
    kib_per_conn: f64,
    counter: Arc<Counter>,
    receivers: Vec<tokio::task::JoinHandle<Vec<u64>>>,
    publisher: WebSocketStream<TcpStream>,
    busy: Duration,
    rounds: u64,
}

struct FanOut {
    kib_per_conn: f64,
    deliveries_per_s: f64,
    p50_us: u64,
    p99_us: u64,
}

impl Rig {
    /// Connects `conns` idle clients (measuring the server's memory for
    /// them), then subscribes them.
    async fn setup(server: &Server, homer: bool, conns: usize) -> Self {
        let addr = server.addr;
        let mut warm = common::ws_connect(addr).await;
        if homer {
            common::homer_join(&mut warm).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = server.rss_kib();
        let mut sockets = Vec::with_capacity(conns);
        for chunk in 0..conns.div_ceil(100) {
            let n = 100.min(conns - chunk * 100);
            let batch: Vec<_> = (0..n)
                .map(|_| tokio::spawn(common::ws_connect(addr)))
                .collect();
            for b in batch {
                sockets.push(b.await.unwrap());
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = server.rss_kib();
        let kib_per_conn = after.saturating_sub(before) as f64 / conns as f64;

        let expected = ROUNDS * BURST;
        let counter = Arc::new(Counter::default());
        let mut receivers = Vec::new();
        for mut ws in sockets {
            if homer {
                common::homer_join(&mut ws).await;
            }
            let counter = counter.clone();
            receivers.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(expected as usize);
                while (lat.len() as u64) < expected {
                    let Some(Ok(m)) = ws.next().await else { break };
                    let Message::Text(t) = m else { continue };
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if let Some(sent) = v["content"]["t"].as_u64() {
                        lat.push(now_us().saturating_sub(sent));
                        counter.delivered.fetch_add(1, Ordering::AcqRel);
                        counter.done.notify_one();
                    }
                }
                lat
            }));
        }
        drop(warm);
        let publisher = common::ws_connect(addr).await;
        Self {
            homer,
            conns,
            kib_per_conn,
            counter,
            receivers,
            publisher,
            busy: Duration::ZERO,
            rounds: 0,
        }
    }

    /// Publishes a burst and waits until every receiver has it.
    async fn round(&mut self) {
        let start = Instant::now();
        for i in 0..BURST {
            let content = json!({"t": now_us(), "text": "hello, world"});
            let text = if self.homer {
                json!({"id": self.rounds * BURST + i, "api": "say", "params": content}).to_string()
            } else {
                json!({"push": "message", "content": content}).to_string()
            };
            self.publisher.send(Message::text(text)).await.unwrap();
        }
        self.rounds += 1;
        let target = self.rounds * BURST * self.conns as u64;
        let counter = self.counter.clone();
        let publisher = &mut self.publisher;
        let wait = async {
            while counter.delivered.load(Ordering::Acquire) < target {
                let notified = counter.done.notified();
                if counter.delivered.load(Ordering::Acquire) >= target {
                    break;
                }
                // Drain what the publisher itself receives meanwhile.
                tokio::select! {
                    _ = notified => {}
                    _ = publisher.next() => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .expect("fan-out stalled");
        self.busy += start.elapsed();
    }

    async fn finish(self) -> FanOut {
        let mut lat = Vec::new();
        for r in self.receivers {
            lat.extend(r.await.unwrap());
        }
        lat.sort_unstable();
        let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
        FanOut {
            kib_per_conn: self.kib_per_conn,
            deliveries_per_s: lat.len() as f64 / self.busy.as_secs_f64(),
            p50_us: pct(0.50),
            p99_us: pct(0.99),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        serve(&args[i + 1]);
        return;
    }
    let conns: usize = std::env::var("HOMER_LOADGEN_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let rt = runtime();
    let mut out = std::io::stdout();

    // HTTP: alternate short rounds so both servers see the same machine
    // load; report medians.
    let homer = Server::start("homer");
    let hyper = Server::start("hyper");
    let (h, b, ratio) = rt.block_on(async {
        let mut hc = http_clients(homer.addr).await;
        let mut bc = http_clients(hyper.addr).await;
        (hc, _) = http_round(hc, "/api/echo", 0.3).await;
        (bc, _) = http_round(bc, "/echo", 0.3).await;
        let (mut hs, mut bs, mut rs) = (vec![], vec![], vec![]);
        for _ in 0..HTTP_ROUNDS {
            let (c, h) = http_round(hc, "/api/echo", HTTP_SECONDS).await;
            hc = c;
            let (c, b) = http_round(bc, "/echo", HTTP_SECONDS).await;
            bc = c;
            hs.push(h);
            bs.push(b);
            rs.push(h / b);
        }
        (median(hs), median(bs), median(rs))
    });
    drop(hyper);
    drop(homer);

    // WebSocket: both servers loaded at once, rounds alternating.
    let homer = Server::start("homer");
    let base = Server::start("ws");
    let (hw, bw) = rt.block_on(async {
        let mut hr = Rig::setup(&homer, true, conns).await;
        let mut br = Rig::setup(&base, false, conns).await;
        for _ in 0..ROUNDS {
            hr.round().await;
            br.round().await;
        }
        (hr.finish().await, br.finish().await)
    });
    drop(homer);
    drop(base);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    writeln!(out, "| measure | homer | baseline | ratio |").unwrap();
    writeln!(out, "|---|---|---|---|").unwrap();
    writeln!(
        out,
        "| HTTP calls/s ({HTTP_CLIENTS} connections) | {h:.0} | {b:.0} (bare hyper) | {ratio:.2}× |"
    )
    .unwrap();
    writeln!(
        out,
        "| WS fan-out deliveries/s ({conns} connections) | {:.0} | {:.0} (tungstenite + broadcast) | {:.2}× |",
        hw.deliveries_per_s,
        bw.deliveries_per_s,
        hw.deliveries_per_s / bw.deliveries_per_s
    )
    .unwrap();
    writeln!(
        out,
        "| WS fan-out p50 latency | {} µs | {} µs | {:.2}× |",
        hw.p50_us,
        bw.p50_us,
        hw.p50_us as f64 / bw.p50_us as f64
    )
    .unwrap();
    writeln!(
        out,
        "| WS fan-out p99 latency | {} µs | {} µs | {:.2}× |",
        hw.p99_us,
        bw.p99_us,
        hw.p99_us as f64 / bw.p99_us as f64
    )
    .unwrap();
    writeln!(
        out,
        "| memory per idle WS connection | {:.1} KiB | {:.1} KiB | {:.2}× |",
        hw.kib_per_conn,
        bw.kib_per_conn,
        hw.kib_per_conn / bw.kib_per_conn
    )
    .unwrap();
    writeln!(out, "\nload average during the run: {}", load.trim()).unwrap();
}
