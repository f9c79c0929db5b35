#![no_main]

//! Any bytes where a tiny_q item is stored (a torn write, a bad disk, a
//! store edited by hand): reading the queue reports the item as corrupt (or
//! reads it, if the bytes happen to be a valid frame) and never panics; the
//! item can then be skipped and the queue goes on.

use std::sync::OnceLock;

use tiny_q::{QueueOptions, Queues};

fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rt().block_on(async {
        let store = nopi::Store::memory();
        let tree = store.tree("q").await.expect("tree");
        {
            let queues = Queues::builder(&store).tree("q").build().await.expect("queues");
            let q = queues
                .open_or_create("f", QueueOptions::default())
                .await
                .expect("queue");
            q.push(b"first").await.expect("push");
            q.push(b"second").await.expect("push");
        }
        // Overwrite the first item's stored bytes (item keys start with 'i').
        let items = tree
            .scan(nopi::Scan::prefix(b"i"))
            .await
            .expect("scan");
        let Some((key, _)) = items.first() else {
            panic!("no item stored");
        };
        tree.insert(key, data.to_vec()).await.expect("insert");

        // A fresh instance reads the store as it is now.
        let queues = Queues::builder(&store).tree("q").build().await.expect("queues");
        let q = queues.open("f").await.expect("open");
        match q.pop().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("a queue of two items looked empty"),
            Err(e) => {
                let position = e.position().expect("a bad item names its position");
                assert!(q.discard(position).await.expect("discard"));
            }
        }
        assert_eq!(q.pop().await.expect("the next item").as_deref(), Some(&b"second"[..]));
    });
});
