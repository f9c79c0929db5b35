//! Live fan-out of a conversation log to 10,000 WebSocket connections on one
//! node, against homer's own `publish` to the same connections, in one run.
//!
//! Every connection is one member of a room of 10,000 and joins homer topic
//! `all`. Then, measured in turn, `MESSAGES` messages go out:
//!
//! - **baseline**: `Hub::publish` to topic `all` (one push, queued for every
//!   subscriber);
//! - **ours**: `Conversations::append` to the room; each connection has its
//!   own `rmq_core` `PushFeed`, fed once per node by the in-process fan-out,
//!   whose sink queues each entry on its connection (one push per entry,
//!   built once and shared by the connections, as an application would).
//!
//! A phase ends when every client has read every message. The figure is
//! deliveries per second (WebSocket frames read by the clients), best of
//! `ROUNDS` rounds, and the ratio ours / baseline. The clients run in a
//! child process (this binary again, so that neither side needs more than
//! 10,000 sockets) on the same two cores as the server, and say on their
//! stdout each time they have read one phase's frames.
//!
//! Each process raises its own open-file limit (`RLIMIT_NOFILE`) to what it
//! needs and stops with a message if it cannot.
//!
//! `cargo bench -p homer --bench conversation_fanout`
#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    reason = "bench code: it prints its results and progress, and a failed unwrap stops the run"
)]

mod common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use homer::{ApiError, Context, Push};
use rmq_core::conversation::{Conversations, FeedItem, FeedSink, LogEntry, PushFeed, Retention};
use rmq_core::{ConversationId, Envelope, RoomId, To, UserId};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::ChildStdout;
use tokio_tungstenite::tungstenite::Message;

const CONNECTIONS: usize = 10_000;
const MESSAGES: u64 = 20;
const ROUNDS: usize = 3;

/// The pushes of the newest entries, each built once and shared by every
/// feed (a burst delivers several entries to each feed in a row).
type SharedPush = Arc<Mutex<VecDeque<(Arc<LogEntry>, Arc<Push>)>>>;

/// How many recent pushes [`SharedPush`] keeps.
const RECENT: usize = 64;

/// A push feed's sink: the connection's outgoing queue.
struct ToConnection {
    conn: homer::Connection,
    cache: SharedPush,
}

impl FeedSink for ToConnection {
    fn deliver(&self, item: FeedItem) -> bool {
        match item {
            FeedItem::Entry(entry) => self.conn.push_shared(push_of(&self.cache, &entry)).is_ok(),
            _ => true,
        }
    }
}

fn push_of(cache: &SharedPush, entry: &Arc<LogEntry>) -> Arc<Push> {
    let mut recent = cache.lock().unwrap();
    if let Some((_, push)) = recent.iter().rev().find(|(e, _)| Arc::ptr_eq(e, entry)) {
        return push.clone();
    }
    let body = match &entry.event {
        rmq_core::conversation::Event::Message(env) => {
            String::from_utf8_lossy(&env.body).into_owned()
        }
        _ => String::new(),
    };
    let push = Arc::new(Push::new(
        "entry",
        json!({"conversation": entry.conversation.to_string(), "seq": entry.seq, "text": body}),
    ));
    if recent.len() == RECENT {
        recent.pop_front();
    }
    recent.push_back((entry.clone(), push.clone()));
    push
}

/// Set in the child process: the server's address.
const CLIENTS_OF: &str = "FANOUT_BENCH_SERVER";

fn main() {
    raise_open_files(CONNECTIONS as u64 + 200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    match std::env::var(CLIENTS_OF) {
        Ok(addr) => rt.block_on(clients(addr.parse().unwrap())),
        Err(_) => rt.block_on(run()),
    }
}

fn raise_open_files(need: u64) {
    match rlimit::increase_nofile_limit(need) {
        Ok(n) if n >= need => {}
        Ok(n) => {
            eprintln!(
                "error: this bench needs {need} open files per process and the limit is {n}; raise the hard limit (`ulimit -Hn {need}` as root, or `LimitNOFILE=` for a service) and run it again"
            );
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("error: cannot raise the open-file limit: {e}");
            std::process::exit(1);
        }
    }
}

/// The child: `CONNECTIONS` clients, each joined to topic `all` and with a
/// feed; prints `ready`, then a line each time `CONNECTIONS` more frames
/// have arrived (one message delivered to every client).
async fn clients(addr: std::net::SocketAddr) {
    let frames = Arc::new(AtomicU64::new(0));
    let (phase, mut phases) = tokio::sync::mpsc::unbounded_channel();
    let every = CONNECTIONS as u64;
    for i in 0..CONNECTIONS {
        let mut ws = common::ws_connect(addr).await;
        common::homer_join(&mut ws).await;
        ws.send(Message::text(format!(
            r#"{{"id":2,"api":"feed","params":"u{i}"}}"#
        )))
        .await
        .unwrap();
        loop {
            if let Some(Ok(Message::Text(t))) = ws.next().await {
                assert!(t.contains("\"status\":200"), "{t}");
                break;
            }
        }
        let (frames, phase) = (frames.clone(), phase.clone());
        tokio::spawn(async move {
            while let Some(Ok(m)) = ws.next().await {
                if m.is_text() && (frames.fetch_add(1, Ordering::AcqRel) + 1) % every == 0 {
                    let _ = phase.send(());
                }
            }
        });
    }
    drop(phase);
    println!("ready");
    let mut n = 0;
    while phases.recv().await.is_some() {
        n += 1;
        println!("delivered {n}");
    }
}

async fn run() {
    let store = nopi::open("memory:").await.unwrap();
    let log = Conversations::builder(&store).build().await.unwrap();
    let room = RoomId::new("lobby").unwrap();
    let conversation = ConversationId::room(room.clone());
    log.create_room(&room, Retention::All).await.unwrap();
    for i in 0..CONNECTIONS {
        log.join(&room, &UserId::new(format!("u{i}")).unwrap())
            .await
            .unwrap();
    }

    let homer = common::homer();
    let cache = SharedPush::default();
    let feeds: Arc<Mutex<Vec<PushFeed>>> = Arc::default();
    {
        let (log, conversation) = (log.clone(), conversation.clone());
        homer.api("feed", move |ctx: Context, user: String| {
            let (log, c, cache) = (log.clone(), conversation.clone(), cache.clone());
            let feeds = feeds.clone();
            async move {
                let user = UserId::new(user)
                    .map_err(|e| ApiError::bad_request("bad_user", e.to_string()))?;
                let sink = Arc::new(ToConnection {
                    conn: ctx.connection().clone(),
                    cache,
                });
                let feed = log.push_feed(&user, sink);
                feed.watch(&c, 0)
                    .await
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                // Kept for the run (the sink stops it if its connection closes).
                feeds.lock().unwrap().push(feed);
                Ok::<_, ApiError>(())
            }
        });
    }
    let addr = homer.listen_http("127.0.0.1:0").await.unwrap();

    let t = Instant::now();
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .env(CLIENTS_OF, addr.to_string())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("ready"));
    println!(
        "{CONNECTIONS} connections, each subscribed and with a feed, in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let sender = UserId::new("u0").unwrap();
    let total = CONNECTIONS as u64 * MESSAGES;
    // [burst, paced] × [baseline, ours]
    let mut best = [[Duration::MAX; 2]; 2];
    let mut k = 0u64;
    for _ in 0..ROUNDS {
        for (pattern, paced) in [(0, false), (1, true)] {
            // Baseline: homer's publish to the topic every connection joined.
            let t = Instant::now();
            for _ in 0..MESSAGES {
                k += 1;
                homer.publish(
                    "all",
                    Push::new("message", json!({"text": format!("raw {k}")})),
                );
                if paced {
                    wait(&mut lines, 1).await;
                }
            }
            if !paced {
                wait(&mut lines, MESSAGES).await;
            }
            best[pattern][0] = best[pattern][0].min(t.elapsed());

            // Ours: appends to the room, fanned out once, one feed per connection.
            let t = Instant::now();
            for _ in 0..MESSAGES {
                k += 1;
                let env = Envelope::new(sender.clone(), To::Room(room.clone()), format!("log {k}"));
                log.append(&env).await.unwrap();
                if paced {
                    wait(&mut lines, 1).await;
                }
            }
            if !paced {
                wait(&mut lines, MESSAGES).await;
            }
            best[pattern][1] = best[pattern][1].min(t.elapsed());
        }
    }
    let rate = |d: Duration| total as f64 / d.as_secs_f64();
    for (pattern, name) in [
        (0, "burst (all sent at once)"),
        (1, "paced (each message reaches everyone before the next)"),
    ] {
        let [base, ours] = best[pattern];
        println!(
            "deliveries/s to {CONNECTIONS} connections, {MESSAGES} messages, {name}, best of {ROUNDS}: homer publish {:.0}, conversation feeds {:.0}, ratio {:.2} (target >= 0.8)",
            rate(base),
            rate(ours),
            rate(ours) / rate(base)
        );
    }
}

/// Until the clients say `messages` more messages reached every one of them.
async fn wait(lines: &mut Lines<BufReader<ChildStdout>>, messages: u64) {
    for _ in 0..messages {
        match tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await {
            Ok(Ok(Some(line))) if line.starts_with("delivered") => {}
            other => panic!("the clients did not read every message within 60 s: {other:?}"),
        }
    }
}
