//! A normal user's send-to-delivery latency on the real `chat-server`, idle
//! and while one address attacks it (docs/security.md, "Latency under
//! attack"). Both phases run in the same process against the same server,
//! and the figure is the ratio of the two p99s (target: at most 2×).
//!
//! The attack, all from 127.0.0.1 and bounded in count and time: a
//! connection flood (up to 5,000 connections held open), slowloris (500
//! HTTP connections sending one header byte per second), a registration
//! flood and password spraying (a login loop over many names), and garbage
//! lines on native connections. The users are alice (127.0.0.2), who sends
//! to the lobby at 20 messages a second, and bob (127.0.0.3), who receives.
//!
//! ```text
//! cargo bench -p chat --bench under_attack
//! ```
#![expect(clippy::print_stdout, reason = "a benchmark reports on the terminal")]

#[path = "../tests/support/process.rs"]
#[allow(dead_code, reason = "the benchmark uses part of the shared helpers")]
mod process;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::connect_from;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Messages measured per phase, one every [`PACE`].
const MESSAGES: usize = 300;
const PACE: Duration = Duration::from_millis(50);
/// The attack's bounds.
const FLOOD_CONNECTIONS: usize = 5_000;
const SLOW_CONNECTIONS: usize = 500;

/// A native JSON-lines client.
struct Native {
    lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
    next: u64,
}

impl Native {
    async fn from(ip: &str, to: SocketAddr) -> Native {
        let s = connect_from(ip, to).await.expect("connect");
        let (r, write) = s.into_split();
        Native {
            lines: BufReader::new(r).lines(),
            write,
            next: 1,
        }
    }

    async fn send(&mut self, api: &str, params: Value) -> u64 {
        let id = self.next;
        self.next += 1;
        let line = format!("{}\n", json!({"id": id, "api": api, "params": params}));
        self.write
            .write_all(line.as_bytes())
            .await
            .expect("write a call");
        id
    }

    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(30), self.lines.next_line())
            .await
            .expect("the server answers within 30 s")
            .expect("read")
            .expect("the server keeps the connection");
        serde_json::from_str(&line).expect("a JSON line")
    }

    async fn call(&mut self, api: &str, params: Value) -> Value {
        let id = self.send(api, params).await;
        loop {
            let v = self.next().await;
            if v["id"] == json!(id) {
                return v;
            }
        }
    }
}

/// alice sends [`MESSAGES`] to the lobby, bob receives them; the latencies
/// (send to delivery, both measured here), sorted.
async fn measure(alice: &mut Native, bob: &mut Native, phase: &str) -> Vec<Duration> {
    let mut sent_at = std::collections::HashMap::new();
    let mut latencies = Vec::with_capacity(MESSAGES);
    let mut tick = tokio::time::interval(PACE);
    for i in 0..MESSAGES {
        tick.tick().await;
        let text = format!("{phase}-{i}");
        sent_at.insert(text.clone(), Instant::now());
        alice
            .send("chat.send", json!({"to": {"group": "lobby"}, "text": text}))
            .await;
        // Read what has arrived for bob so far, without waiting for more.
        while latencies.len() < i + 1 {
            let v = bob.next().await;
            if v["push"] == "message"
                && let Some(t) = v["content"]["text"].as_str()
                && let Some(at) = sent_at.remove(t)
            {
                latencies.push(at.elapsed());
                let id = v["content"]["id"].clone();
                bob.send("chat.ack", json!({"ids": [id]})).await;
            }
        }
    }
    latencies.sort();
    latencies
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Run every attack until `stop`; returns counters of what was done.
fn attack(http: SocketAddr, tcp: SocketAddr, stop: Arc<AtomicBool>) -> Arc<AtomicUsize> {
    let done = Arc::new(AtomicUsize::new(0));
    // Connection flood: open and hold up to FLOOD_CONNECTIONS.
    {
        let (stop, done) = (stop.clone(), done.clone());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while !stop.load(Ordering::Relaxed) && held.len() < FLOOD_CONNECTIONS {
                if let Ok(s) = connect_from("127.0.0.1", tcp).await {
                    held.push(s);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
    // Slowloris: one header byte per second on each connection, reopened
    // when the server closes it.
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut slow = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                while slow.len() < SLOW_CONNECTIONS {
                    match connect_from("127.0.0.1", http).await {
                        Ok(mut s) => {
                            let _ = s.write_all(b"GET / HTTP/1.1\r\nX-Slow: ").await;
                            slow.push(s);
                        }
                        Err(_) => break,
                    }
                }
                let mut alive = Vec::with_capacity(slow.len());
                for mut s in slow {
                    if s.write_all(b"a").await.is_ok() {
                        alive.push(s);
                    }
                }
                slow = alive;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
    // Registrations and password spraying on one connection each.
    for job in ["register", "spray", "garbage"] {
        let (stop, done) = (stop.clone(), done.clone());
        tokio::spawn(async move {
            let Ok(s) = connect_from("127.0.0.1", tcp).await else {
                return;
            };
            let (r, mut w) = s.into_split();
            // Drain the replies.
            tokio::spawn(async move {
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(_)) = lines.next_line().await {}
            });
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let line = match job {
                    "register" => json!({"id": i, "api": "user.register",
                        "params": {"name": format!("bot{i}"), "password": "pw"}})
                    .to_string(),
                    "spray" => json!({"id": i, "api": "user.login",
                        "params": {"name": format!("user{}", i % 1000), "password": "123456"}})
                    .to_string(),
                    _ => "{\"id\": not json".to_owned(),
                };
                if w.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                    return;
                }
                done.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    }
    done
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = format!("sled:{}", dir.path().join("data").display());
    let mut cmd = process::command();
    cmd.args([
        "--store",
        &store,
        "--http",
        "127.0.0.1:0",
        "--tcp",
        "127.0.0.1:0",
    ])
    .args([
        "--msgid-json",
        "off",
        "--type-data",
        "off",
        "--token-json",
        "off",
        "--thrift",
        "off",
        "--log",
        "error",
    ]);
    let (mut child, addrs) = process::start(cmd, |_| {}).await;

    let mut alice = Native::from("127.0.0.2", addrs.tcp).await;
    let mut bob = Native::from("127.0.0.3", addrs.tcp).await;
    for (c, name) in [(&mut alice, "alice"), (&mut bob, "bob")] {
        let creds = json!({"name": name, "password": format!("pw-{name}")});
        assert_eq!(c.call("user.register", creds.clone()).await["status"], 200);
        assert_eq!(c.call("user.login", creds).await["status"], 200);
    }
    // Warm up, then the idle phase.
    measure(&mut alice, &mut bob, "warm").await;
    let idle = measure(&mut alice, &mut bob, "idle").await;

    let stop = Arc::new(AtomicBool::new(false));
    let done = attack(addrs.http, addrs.tcp, stop.clone());
    // Let the flood reach its size before measuring.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let attacked = measure(&mut alice, &mut bob, "attack").await;
    stop.store(true, Ordering::Relaxed);
    let attacks = done.load(Ordering::Relaxed);

    println!("send-to-delivery latency of a normal user, {MESSAGES} messages per phase");
    println!("| phase | p50 | p99 | max |");
    println!("|---|---|---|---|");
    for (name, l) in [("idle", &idle), ("under attack", &attacked)] {
        println!(
            "| {name} | {:.2} ms | {:.2} ms | {:.2} ms |",
            pct(l, 0.5).as_secs_f64() * 1e3,
            pct(l, 0.99).as_secs_f64() * 1e3,
            l.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        );
    }
    let ratio = pct(&attacked, 0.99).as_secs_f64() / pct(&idle, 0.99).as_secs_f64();
    println!(
        "p99 under attack / idle: {ratio:.2}x (target <= 2x); {attacks} attack connections and calls"
    );
    process::interrupt(&mut child).await;
}
