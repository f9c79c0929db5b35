//! Group commit: concurrent durable pushes share one flush.
//!
//! A leader/follower scheme with generation counters, no background task.
//! Flushes are numbered; a writer whose write has returned needs a flush that
//! *started* after that, so it waits for generation `started + 1`:
//!
//! ```text
//!  writer A ──write──┐ leads flush 1 ───────────────┐ Ok
//!  writer B ───write───┐ waits (1 began before B)   │ leads flush 2 ──┐ Ok
//!  writer C ────write────┐ waits ───────────────────┴─ covered by 2 ──┘ Ok
//! ```
//!
//! While one flush runs, every writer that arrives queues for the next one;
//! the first of them to see the flush end leads it, and it covers them all. A
//! lone writer pays one flush and no added delay.

use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// Flushes something on behalf of many writers: each caller of
/// [`sync`](GroupCommit::sync) returns once a flush that started after its
/// call has ended.
#[derive(Debug, Default)]
pub struct GroupCommit {
    state: Mutex<Generations>,
    finished: Notify,
}

#[derive(Debug, Default)]
struct Generations {
    /// Flushes started (the number of the latest one).
    started: u64,
    /// The latest flush that ended, successfully or not.
    finished: u64,
    /// The latest flush that succeeded.
    succeeded: u64,
    /// The latest failure, with its generation.
    failed: Option<(u64, Arc<crate::Error>)>,
    /// A flush is running.
    flushing: bool,
}

impl GroupCommit {
    fn lock(&self) -> MutexGuard<'_, Generations> {
        // Every critical section leaves the counters consistent, so a poisoned
        // lock (a panic elsewhere while holding it) still guards valid data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Flushes started so far.
    pub fn flushes(&self) -> u64 {
        self.lock().started
    }

    /// Return once a flush that started after this call has ended, running
    /// it (`flush`) if no other caller is; its error if it failed.
    pub async fn sync<F, Fut>(&self, flush: F) -> Result<(), Arc<crate::Error>>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = crate::Result<()>>,
    {
        let target = self.lock().started + 1;
        loop {
            let mut notified = pin!(self.finished.notified());
            notified.as_mut().enable();
            let generation = {
                let mut g = self.lock();
                if g.succeeded >= target {
                    return Ok(());
                }
                if g.finished >= target {
                    // Every flush since `target` began failed; report the latest.
                    return match &g.failed {
                        Some((_, e)) => Err(e.clone()),
                        None => Ok(()),
                    };
                }
                if g.flushing {
                    None
                } else {
                    g.flushing = true;
                    g.started += 1;
                    Some(g.started)
                }
            };
            let Some(generation) = generation else {
                notified.await;
                continue;
            };
            let leader = Leader {
                commit: self,
                generation,
                done: false,
            };
            let outcome = flush().await.map_err(Arc::new);
            leader.finish(outcome.clone());
            return outcome;
        }
    }
}

/// The running flush; if the leader is dropped mid-flush (its future was
/// cancelled) the flush counts as not done and another writer takes over.
struct Leader<'a> {
    commit: &'a GroupCommit,
    generation: u64,
    done: bool,
}

impl Leader<'_> {
    fn finish(mut self, outcome: Result<(), Arc<crate::Error>>) {
        {
            let mut g = self.commit.lock();
            g.flushing = false;
            g.finished = g.finished.max(self.generation);
            match outcome {
                Ok(()) => g.succeeded = g.succeeded.max(self.generation),
                Err(e) => g.failed = Some((self.generation, e)),
            }
        }
        self.done = true;
        self.commit.finished.notify_waiters();
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.commit.lock().flushing = false;
            self.commit.finished.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn concurrent_writers_share_flushes() {
        let commit = Arc::new(GroupCommit::default());
        let calls = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (commit, calls) = (commit.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                commit
                    .sync(|| async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        Ok(())
                    })
                    .await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        // The first writer flushes alone; the 63 that arrived meanwhile share one.
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(commit.flushes(), 2);
    }

    #[tokio::test]
    async fn a_lone_writer_flushes_every_time() {
        let commit = GroupCommit::default();
        for _ in 0..3 {
            commit.sync(|| async { Ok(()) }).await.unwrap();
        }
        assert_eq!(commit.flushes(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_flush_fails_every_writer_it_covered() {
        let commit = Arc::new(GroupCommit::default());
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let (commit, fail) = (commit.clone(), fail.clone());
            tasks.push(tokio::spawn(async move {
                commit
                    .sync(|| async {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        if fail.load(Ordering::SeqCst) {
                            Err(crate::Error::Conflict {
                                key: crate::DisplayKey(b"disk".to_vec()),
                            })
                        } else {
                            Ok(())
                        }
                    })
                    .await
            }));
        }
        for t in tasks {
            assert!(t.await.unwrap().is_err());
        }
        fail.store(false, Ordering::SeqCst);
        commit.sync(|| async { Ok(()) }).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_leader_hands_over() {
        let commit = Arc::new(GroupCommit::default());
        let slow = {
            let commit = commit.clone();
            tokio::spawn(async move {
                commit
                    .sync(|| async {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        Ok(())
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        let follower = {
            let commit = commit.clone();
            tokio::spawn(async move { commit.sync(|| async { Ok(()) }).await })
        };
        tokio::task::yield_now().await;
        slow.abort();
        tokio::time::timeout(Duration::from_secs(60), follower)
            .await
            .expect("the follower took over")
            .unwrap()
            .unwrap();
    }
}
