//! SIGKILL crash test: a child process (this test binary, re-executed) pushes
//! durable items from several tasks and reports each push that returned
//! `Ok`; the parent kills it at a random moment, many rounds over the same
//! sled directory. At the start of every round the next child lists the
//! queue, and the parent checks that every confirmed item is there exactly
//! once, in push order, and that nothing seen durable before was lost.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tiny_q::{QueueOptions, Queues};

const CHILD_DIR: &str = "TINY_Q_CRASH_DIR";
const CHILD_ROUND: &str = "TINY_Q_CRASH_ROUND";
const CHILD_PUSH: &str = "TINY_Q_CRASH_PUSH";
const ROUNDS: u32 = 20;
const PRODUCERS: u32 = 8;

#[test]
fn durable_pushes_survive_sigkill() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        return child(&dir);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut rng = XorShift(seed);
    let started = std::time::Instant::now();
    let mut confirmed: HashSet<String> = HashSet::new();
    let mut previous: Vec<String> = Vec::new();
    let mut kills_with_pushes = 0;
    for round in 0..=ROUNDS {
        let last = round == ROUNDS;
        let mut child = Killer(spawn(
            dir.path().to_str().expect("utf-8 path"),
            round,
            !last,
        ));
        let lines = read_lines(&mut child.0);
        let spawned = std::time::Instant::now();
        let mut dump = Vec::new();
        loop {
            match lines.recv_timeout(Duration::from_secs(30)) {
                Ok(line) if line == "ready" => break,
                Ok(line) => {
                    if let Some(item) = line.strip_prefix("have ") {
                        dump.push(item.to_owned());
                    }
                }
                Err(e) => panic!("seed {seed} round {round}: child never got ready: {e}"),
            }
        }
        if std::env::var_os("TINY_Q_CRASH_VERBOSE").is_some() {
            let _ = writeln!(
                std::io::stderr(),
                "round {round}: ready after {:?}, {} items",
                spawned.elapsed(),
                dump.len()
            );
        }
        check(&dump, &previous, &confirmed, seed, round);
        previous = dump;
        if last {
            break;
        }
        std::thread::sleep(Duration::from_millis(20 + rng.next() % 250));
        child.0.kill().expect("SIGKILL the child");
        child.0.wait().expect("reap the child");
        let mut this_round = 0;
        for line in lines.iter() {
            if let Some(item) = line.strip_prefix("ok ") {
                confirmed.insert(item.to_owned());
                this_round += 1;
            }
        }
        if this_round > 0 {
            kills_with_pushes += 1;
        }
    }
    assert!(
        kills_with_pushes >= ROUNDS / 2,
        "seed {seed}: only {kills_with_pushes} of {ROUNDS} rounds confirmed a push before the kill"
    );
    assert!(
        confirmed.len() > 100,
        "seed {seed}: only {} pushes confirmed",
        confirmed.len()
    );
    let _ = writeln!(
        std::io::stderr(),
        "crash test: seed {seed}, {ROUNDS} kills ({kills_with_pushes} mid-push), {} confirmed pushes, \
         {} items stored, {:?}",
        confirmed.len(),
        previous.len(),
        started.elapsed()
    );
}

/// Every confirmed item present once; the last dump a prefix of this one;
/// per producer, items in order with no gap.
fn check(dump: &[String], previous: &[String], confirmed: &HashSet<String>, seed: u64, round: u32) {
    let ctx = format!("seed {seed} round {round}");
    let mut seen = HashSet::new();
    for item in dump {
        assert!(seen.insert(item), "{ctx}: {item} is stored twice");
    }
    for item in confirmed {
        assert!(seen.contains(item), "{ctx}: confirmed push {item} was lost");
    }
    assert!(
        dump.starts_with(previous),
        "{ctx}: what was stored before the kill is no longer a prefix of the queue"
    );
    // Items are "round-producer-index"; each producer pushes in sequence, so
    // its items appear as 0, 1, 2, ... (a later push only starts once the
    // previous one returned Ok, i.e. was durable).
    let mut next: HashMap<(u32, u32), u32> = HashMap::new();
    let mut last_round = 0;
    for item in dump {
        let parts: Vec<u32> = item
            .split('-')
            .map(|p| p.parse().expect("number"))
            .collect();
        let [r, p, i] = parts[..] else {
            panic!("{ctx}: malformed item {item}")
        };
        assert!(
            r >= last_round,
            "{ctx}: {item} stored after an item of round {last_round}"
        );
        last_round = r;
        let expected = next.entry((r, p)).or_insert(0);
        assert_eq!(
            i, *expected,
            "{ctx}: producer {r}-{p} out of order or with a gap at {item}"
        );
        *expected += 1;
    }
}

fn spawn(dir: &str, round: u32, push: bool) -> Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "durable_pushes_survive_sigkill",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .env(CHILD_ROUND, round.to_string())
        .env(CHILD_PUSH, if push { "1" } else { "0" })
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the child")
}

fn read_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Kills the child if the parent panics, so no process outlives the test.
struct Killer(Child);

impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The child: list the queue, then push until killed.
fn child(dir: &str) {
    let round: u32 = std::env::var(CHILD_ROUND)
        .expect("round")
        .parse()
        .expect("round number");
    let push = std::env::var(CHILD_PUSH).as_deref() == Ok("1");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let store = nopi::open(&format!("sled:{dir}")).await.expect("open sled");
        let queues = Queues::new(&store).await.expect("queues");
        let queue = queues
            .open_or_create("crash", QueueOptions::default())
            .await
            .expect("queue");
        let items = queue.peek(usize::MAX).await.expect("list");
        {
            let mut out = std::io::stdout().lock();
            // The harness has printed "test <name> ... " without a newline.
            writeln!(out).expect("write");
            for item in items {
                writeln!(out, "have {}", String::from_utf8(item).expect("utf-8")).expect("write");
            }
            writeln!(out, "ready").expect("write");
            out.flush().expect("flush");
        }
        if !push {
            return;
        }
        let mut tasks = Vec::new();
        for p in 0..PRODUCERS {
            let queue = queue.clone();
            tasks.push(tokio::spawn(async move {
                // Bounded so that an orphaned child stops on its own.
                for i in 0..20_000 {
                    let item = format!("{round}-{p}-{i}");
                    queue.push(&item).await.expect("durable push");
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ok {item}").expect("write");
                    out.flush().expect("flush");
                }
            }));
        }
        for t in tasks {
            t.await.expect("producer");
        }
    });
}
