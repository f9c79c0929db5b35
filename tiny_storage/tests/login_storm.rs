//! A login storm runs on blocking threads: the async runtime keeps serving
//! other tasks meanwhile. (That hashing waits for a permit is checked by a
//! unit test in `src/password.rs`, without timing.)

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::chat_model;
use tiny_storage::{NewUser, Users};

#[tokio::test(flavor = "current_thread")]
async fn logins_do_not_starve_the_runtime_and_respect_the_permit_count() {
    let store = nopi::open("memory:").await.expect("store");
    // Real OWASP parameters, one hash at a time.
    let users = Users::builder(&store, chat_model())
        .hash_concurrency(1)
        .open()
        .await
        .expect("open");
    users
        .create(NewUser::new("alice").password("correct horse"))
        .await
        .expect("create");
    let start = Instant::now();
    users
        .verify("alice", "password", "correct horse")
        .await
        .expect("login");
    let one = start.elapsed();

    // A ticker on the same single-threaded runtime measures its worst delay.
    let done = Arc::new(AtomicBool::new(false));
    let ticker = tokio::spawn({
        let done = done.clone();
        async move {
            let mut worst = Duration::ZERO;
            while !done.load(Ordering::Relaxed) {
                let t = Instant::now();
                tokio::time::sleep(Duration::from_millis(5)).await;
                worst = worst.max(t.elapsed());
            }
            worst
        }
    });
    const STORM: u32 = 3;
    let start = Instant::now();
    let logins: Vec<_> = (0..STORM)
        .map(|_| {
            let users = users.clone();
            tokio::spawn(async move { users.verify("alice", "password", "correct horse").await })
        })
        .collect();
    for l in logins {
        l.await.expect("task").expect("login");
    }
    let storm = start.elapsed();
    done.store(true, Ordering::Relaxed);
    let worst_tick = ticker.await.expect("ticker");

    assert!(
        worst_tick < one / 2,
        "the runtime stalled for {worst_tick:?} (one hash takes {one:?}, {STORM} took {storm:?})"
    );
}
