//! Conversation logs under faults: a process SIGKILLed while it appends (sled),
//! and RabbitMQ connections cut while entries stream to another node.
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nopi::testing::TempStore;
use rmq_core::conversation::{Conversations, Event, FeedItem, ListQuery, LogQuery, Retention};
use rmq_core::{ConversationId, DeviceId, Envelope, RoomId, To, UserId};
use support::{ARRIVE, amqp_conversations, close_connections_matching, unique_namespace};

const CHILD_DIR: &str = "CONVERSATION_CRASH_CHILD_DIR";
const CHILD_ROUND: &str = "CONVERSATION_CRASH_CHILD_ROUND";

fn ids() -> (UserId, DeviceId, RoomId) {
    (
        UserId::new("writer").unwrap(),
        DeviceId::new("phone").unwrap(),
        RoomId::new("crash").unwrap(),
    )
}

async fn open(dir: &str) -> Conversations {
    let store = nopi::open(&format!("sled:{dir}"))
        .await
        .expect("open the store");
    Conversations::builder(&store)
        .build()
        .await
        .expect("open the log")
}

/// The child side: append until killed, printing every append that returned
/// Ok (`seq body`) and every read position that was stored (`read seq`).
#[test]
#[expect(
    clippy::print_stdout,
    reason = "the child reports to its parent on stdout"
)]
fn crash_child_appends_until_killed() {
    let (Ok(dir), Ok(round)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_ROUND)) else {
        return; // only runs when the parent test starts this binary as its child
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let log = open(&dir).await;
        let (writer, phone, room) = ids();
        log.create_room(&room, Retention::All).await.unwrap();
        log.join(&room, &writer).await.unwrap();
        let c = ConversationId::room(room.clone());
        let log = Arc::new(log);
        // Four concurrent writers, so group commit and the per-conversation
        // order are both exercised when the kill lands.
        let mut tasks = Vec::new();
        for w in 0..4 {
            let (log, writer, room, c, phone, round) = (
                log.clone(),
                writer.clone(),
                room.clone(),
                c.clone(),
                phone.clone(),
                round.clone(),
            );
            tasks.push(tokio::spawn(async move {
                for k in 0.. {
                    let body = format!("r{round}-w{w}-{k}");
                    let sent = log
                        .append(&Envelope::new(
                            writer.clone(),
                            To::Room(room.clone()),
                            body.clone(),
                        ))
                        .await
                        .unwrap();
                    println!("{} {body}", sent.seq);
                    if k % 5 == 0 {
                        let state = log.mark_read(&writer, &phone, &c, sent.seq).await.unwrap();
                        println!("read {}", state.read);
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_append_that_returned_survives_sigkill_once_in_order_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db").display().to_string();
    let exe = std::env::current_exe().unwrap();
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    let mut read_acked = 0u64;
    for round in 0..8u64 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_appends_until_killed",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, &path)
            .env(CHILD_ROUND, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Kill at a different point each round: after 20 to 160 appends.
        let kill_after = 20 + (round * 37) % 140;
        let lines = tokio::task::spawn_blocking(move || {
            let mut got = Vec::new();
            let mut appends = 0;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if parse_append(&line).is_some() {
                    appends += 1;
                }
                got.push(line);
                if appends >= kill_after {
                    break;
                }
            }
            got
        });
        let lines = tokio::time::timeout(Duration::from_secs(60), lines)
            .await
            .expect("the child appended")
            .unwrap();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for line in lines {
            // Other lines are the test harness's own.
            if let Some(seq) = line.strip_prefix("read ").and_then(|s| s.parse().ok()) {
                read_acked = read_acked.max(seq);
            } else if let Some((seq, body)) = parse_append(&line) {
                assert!(
                    acked.insert(seq, body.to_owned()).is_none(),
                    "seq {seq} was returned twice"
                );
            }
        }
    }
    assert!(
        acked.len() >= 8 * 20,
        "the children appended ({} acked)",
        acked.len()
    );

    let log = reopen(&path).await;
    let (writer, phone, room) = ids();
    let c = ConversationId::room(room);
    let mut stored = BTreeMap::new();
    let mut after = 0;
    loop {
        let page = log
            .read(&c, &writer, LogQuery::after(after, 1000))
            .await
            .unwrap();
        let Some(last) = page.entries.last() else {
            break;
        };
        after = last.seq;
        for e in page.entries {
            let Event::Message(env) = e.event else {
                panic!("only messages were appended")
            };
            stored.insert(e.seq, String::from_utf8(env.body).unwrap());
        }
    }
    let head = *stored.keys().last().unwrap();
    assert_eq!(
        stored.keys().copied().collect::<Vec<_>>(),
        (1..=head).collect::<Vec<_>>(),
        "gapless from 1"
    );
    for (seq, body) in &acked {
        assert_eq!(
            stored.get(seq),
            Some(body),
            "acked seq {seq} is stored as acked"
        );
    }
    let mut bodies: Vec<_> = stored.values().collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), stored.len(), "every message stored once");
    // The read position never went back behind what was acknowledged.
    let cursor = log.cursor(&writer, &phone, &c).await.unwrap();
    assert!(
        cursor.read >= read_acked,
        "cursor {} regressed below {read_acked}",
        cursor.read
    );
    let summary = &log.list(&writer, ListQuery::default()).await.unwrap()[0];
    assert!(summary.read >= read_acked);
    assert_eq!(summary.head, head);
}

/// `seq body` as the child prints an append that returned Ok.
fn parse_append(line: &str) -> Option<(u64, &str)> {
    let (seq, body) = line.split_once(' ')?;
    Some((seq.parse().ok()?, body)).filter(|(_, body)| body.starts_with('r'))
}

/// Reopen after the last child, retrying while the killed process's lock
/// on the directory is released.
async fn reopen(path: &str) -> Conversations {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match nopi::open(&format!("sled:{path}")).await {
            Ok(store) => return Conversations::builder(&store).build().await.unwrap(),
            Err(e) if Instant::now() > deadline => panic!("cannot reopen the store: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// How RabbitMQ goes away in [`stream_through`].
#[derive(Clone, Copy)]
enum Outage {
    /// The server closes the test's connections.
    CutConnections,
    /// `rabbitmqctl stop_app`, 3 s, `start_app`.
    Restart,
}

/// Starts RabbitMQ again when dropped, whatever happened.
struct RabbitGuard;

impl Drop for RabbitGuard {
    fn drop(&mut self) {
        let _ = rabbitmqctl("start_app");
    }
}

fn rabbitmqctl(cmd: &str) -> bool {
    Command::new("rabbitmqctl")
        .arg(cmd)
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn make_outage(outage: Outage, ns: &str) -> usize {
    match outage {
        Outage::CutConnections => close_connections_matching(ns),
        Outage::Restart => {
            let _guard = RabbitGuard;
            assert!(rabbitmqctl("stop_app"), "rabbitmqctl stop_app failed");
            std::thread::sleep(Duration::from_secs(3));
            assert!(rabbitmqctl("start_app"), "rabbitmqctl start_app failed");
            2
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_rabbitmq_connections_lose_no_entry_of_a_live_feed() {
    stream_through(Outage::CutConnections, &[50, 120]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rabbitmq_restart_mid_stream_loses_no_entry_of_a_live_feed() {
    stream_through(Outage::Restart, &[80]).await;
}

/// Stream 200 appends from node a to a feed on node b, with outages when the
/// feed has reached the seqs `at`: every entry reaches the feed once, in order.
async fn stream_through(outage: Outage, at: &[u64]) {
    // One outage at a time: a restart would fail the other test's rabbitmqctl.
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _serial = SERIAL.lock().await;
    let temp = TempStore::postgres();
    let ns = unique_namespace();
    let (a, ba) = amqp_conversations(&temp, &ns).await;
    let (b, bb) = amqp_conversations(&temp, &ns).await;
    let (alice, bob) = (UserId::new("alice").unwrap(), UserId::new("bob").unwrap());
    let room = RoomId::new("stream").unwrap();
    a.create_room(&room, Retention::All).await.unwrap();
    a.join(&room, &alice).await.unwrap();
    a.join(&room, &bob).await.unwrap();
    let c = ConversationId::room(room.clone());
    let mut feed = b.feed(&bob);
    feed.watch(&c, 0).await.unwrap();

    const N: u64 = 200;
    let writer = {
        let (a, alice, room) = (a.clone(), alice.clone(), room.clone());
        tokio::spawn(async move {
            for i in 1..=N {
                let sent = a
                    .append(&Envelope::new(
                        alice.clone(),
                        To::Room(room.clone()),
                        format!("m{i}"),
                    ))
                    .await
                    .unwrap();
                assert_eq!(sent.seq, i);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut cuts = 0;
    let mut next = 1;
    while next <= N {
        if at.contains(&next) {
            let ns = ns.clone();
            cuts += tokio::task::spawn_blocking(move || make_outage(outage, &ns))
                .await
                .unwrap();
        }
        let item = tokio::time::timeout(ARRIVE * 3, feed.next())
            .await
            .unwrap_or_else(|_| panic!("entry {next} never reached the feed"))
            .unwrap();
        let FeedItem::Entry(e) = item else {
            panic!("{item:?}")
        };
        assert_eq!(e.seq, next, "each seq once, in order");
        let Event::Message(env) = &e.event else {
            panic!()
        };
        assert_eq!(env.body, format!("m{next}").as_bytes());
        next += 1;
    }
    writer.await.unwrap();
    assert!(cuts >= 2, "connections were cut ({cuts})");
    assert!(
        ba.reconnections() + bb.reconnections() >= 2,
        "the brokers reconnected"
    );
    let _ = ba.delete_namespace().await;
    ba.close().await;
    bb.close().await;
}
