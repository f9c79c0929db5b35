//! A durable work queue in a sled directory: a producer pushes jobs, two
//! workers lease them, one job is left unacked and comes back after a
//! restart.
//!
//! ```sh
//! cargo run -p tiny_q --example work_queue
//! ```
#![expect(clippy::print_stdout, reason = "an example shows its results")]

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tiny_q::{QueueOptions, Queues};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Job {
    id: u32,
    task: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let url = format!("sled:{}", dir.path().display());
    let store = nopi::open(&url).await?;
    let queues = Queues::new(&store).await?;
    let options = QueueOptions::builder()
        .capacity(100)
        .lease_timeout(Duration::from_secs(30))
        .build()?;
    let jobs = queues.create("jobs", options).await?.typed::<Job>();

    // Producer: every push is durable once it returns.
    for (id, task) in [
        (1, "resize photo"),
        (2, "send welcome mail"),
        (3, "rebuild index"),
    ] {
        jobs.push(&Job {
            id,
            task: task.into(),
        })
        .await?;
    }
    println!("queued {} jobs", jobs.len().await?);

    // Two workers take jobs under leases; a job is done only once acked.
    let mut done = Vec::new();
    for worker in ["worker-1", "worker-2"] {
        let lease = jobs.lease().await?.expect("a job is waiting");
        let job = lease.item();
        println!("{worker} did job {}: {}", job.id, job.task);
        done.push(job.id);
        lease.ack().await?;
    }
    assert_eq!(done, [1, 2]);

    // A third worker takes job 3 and dies before acking it.
    let lease = jobs.lease().await?.expect("a job is waiting");
    println!("worker-3 took job {} and crashed", lease.item().id);
    drop(lease);
    store.flush().await?;
    drop((jobs, queues, store));

    // After a restart the unacked job is there again, first in line.
    let store = nopi::open(&url).await?;
    let jobs = Queues::new(&store)
        .await?
        .open("jobs")
        .await?
        .typed::<Job>();
    let again = jobs
        .pop_wait(Duration::from_secs(5))
        .await?
        .expect("job 3 came back");
    println!(
        "after the restart job {} is handed out again: {}",
        again.id, again.task
    );
    assert_eq!(again.id, 3);
    assert_eq!(jobs.len().await?, 0);
    Ok(())
}

#[test]
fn runs() {
    main().expect("the example runs");
}
