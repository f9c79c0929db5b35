//! Random operation sequences against a `VecDeque` model, on memory and sled,
//! with restarts in between.

mod support;

use std::collections::VecDeque;

use proptest::prelude::*;
use support::options;
use tiny_q::{Error, Lease, Overflow, Queue, Queues};

#[derive(Debug, Clone)]
enum Op {
    Push(Vec<u8>),
    PushBatch(Vec<Vec<u8>>),
    Pop,
    Peek(usize),
    Len,
    Lease,
    /// Ack the outstanding lease with this index (modulo their number).
    Ack(usize),
    Release(usize),
    Flush,
    /// Drop every handle and open the queues again (sled: reopen the store).
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    let item = prop::collection::vec(any::<u8>(), 0..6);
    prop_oneof![
        4 => item.clone().prop_map(Op::Push),
        1 => prop::collection::vec(item, 0..4).prop_map(Op::PushBatch),
        3 => Just(Op::Pop),
        1 => (0usize..5).prop_map(Op::Peek),
        1 => Just(Op::Len),
        3 => Just(Op::Lease),
        2 => any::<usize>().prop_map(Op::Ack),
        1 => any::<usize>().prop_map(Op::Release),
        1 => Just(Op::Flush),
        1 => Just(Op::Restart),
    ]
}

/// One stored item of the model.
#[derive(Debug, Clone, PartialEq)]
struct Item {
    id: u64,
    value: Vec<u8>,
    /// The lease that holds it, if any.
    leased_by: Option<usize>,
}

/// The reference: items oldest first in a `VecDeque`.
#[derive(Debug, Default)]
struct Model {
    items: VecDeque<Item>,
    next_id: u64,
    capacity: usize,
    overflow: Option<Overflow>,
}

impl Model {
    fn ready(&self) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(|i| i.leased_by.is_none())
    }

    /// Push `values`; false if the model refuses (full).
    fn push(&mut self, values: &[Vec<u8>]) -> bool {
        let n = values.len();
        if self.items.len() + n > self.capacity {
            if self.overflow == Some(Overflow::Reject) || n > self.capacity {
                return false;
            }
            let excess = self.items.len() + n - self.capacity;
            self.items.drain(..excess);
        }
        for v in values {
            self.items.push_back(Item {
                id: self.next_id,
                value: v.clone(),
                leased_by: None,
            });
            self.next_id += 1;
        }
        true
    }

    fn take_ready(&mut self, lease: Option<usize>) -> Option<Item> {
        let at = self.items.iter().position(|i| i.leased_by.is_none())?;
        match lease {
            None => self.items.remove(at),
            Some(l) => {
                self.items[at].leased_by = Some(l);
                Some(self.items[at].clone())
            }
        }
    }
}

struct Real {
    queues: Queues,
    queue: Queue,
    _store: nopi::Store,
}

async fn open(url: &str, store: Option<nopi::Store>) -> Real {
    let store = match store {
        Some(s) => s,
        None => nopi::open(url).await.expect("open store"),
    };
    let queues = Queues::new(&store).await.expect("queues");
    let queue = queues.open("q").await.expect("open q");
    Real {
        queues,
        queue,
        _store: store,
    }
}

fn run(
    url: &str,
    keep_store: bool,
    capacity: u64,
    overflow: Overflow,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let store = nopi::open(url).await.expect("open store");
        Queues::new(&store)
            .await
            .expect("queues")
            .create("q", options(capacity, overflow))
            .await
            .expect("create");
        // The memory backend lives only as long as the store value.
        let mut real = open(url, Some(store)).await;
        let mut model = Model {
            capacity: capacity as usize,
            overflow: Some(overflow),
            ..Model::default()
        };
        // (model item id, lease number, the real lease)
        let mut leases: Vec<(u64, usize, Lease)> = Vec::new();
        for (step, op) in ops.into_iter().enumerate() {
            let q = &real.queue;
            match op {
                Op::Push(v) => {
                    let accepted = model.push(std::slice::from_ref(&v));
                    match q.push(&v).await {
                        Ok(_) => prop_assert!(accepted, "step {step}: push accepted, model full"),
                        Err(Error::Full { .. }) => {
                            prop_assert!(!accepted, "step {step}: push refused")
                        }
                        Err(e) => return Err(TestCaseError::fail(format!("step {step}: {e}"))),
                    }
                }
                Op::PushBatch(vs) => {
                    let accepted = model.push(&vs);
                    match q.push_batch(&vs).await {
                        Ok(p) => {
                            prop_assert!(accepted, "step {step}: batch accepted, model full");
                            prop_assert_eq!(p.len(), vs.len());
                        }
                        Err(Error::Full { .. }) => {
                            prop_assert!(!accepted, "step {step}: batch refused")
                        }
                        Err(e) => return Err(TestCaseError::fail(format!("step {step}: {e}"))),
                    }
                }
                Op::Pop => {
                    let expected = model.take_ready(None).map(|i| i.value);
                    prop_assert_eq!(q.pop().await.expect("pop"), expected, "step {}", step);
                }
                Op::Peek(n) => {
                    let expected: Vec<Vec<u8>> =
                        model.ready().take(n).map(|i| i.value.clone()).collect();
                    prop_assert_eq!(q.peek(n).await.expect("peek"), expected, "step {}", step);
                }
                Op::Len => {
                    prop_assert_eq!(
                        q.len().await.expect("len"),
                        model.items.len() as u64,
                        "step {}",
                        step
                    );
                    let in_flight = model.items.iter().filter(|i| i.leased_by.is_some()).count();
                    prop_assert_eq!(
                        q.in_flight().await.expect("in flight"),
                        in_flight,
                        "step {}",
                        step
                    );
                }
                Op::Lease => {
                    let number = leases.len();
                    let expected = model.take_ready(Some(number));
                    let got = q.lease().await.expect("lease");
                    match (expected, got) {
                        (None, None) => {}
                        (Some(item), Some(lease)) => {
                            prop_assert_eq!(lease.item(), &item.value, "step {}", step);
                            leases.push((item.id, number, lease));
                        }
                        (e, g) => {
                            return Err(TestCaseError::fail(format!(
                                "step {step}: lease: model {e:?}, real {:?}",
                                g.map(|l| l.into_item())
                            )));
                        }
                    }
                }
                Op::Ack(i) if !leases.is_empty() => {
                    let (id, _, lease) = &leases[i % leases.len()];
                    let held = model.items.iter().position(|it| it.id == *id);
                    if let Some(at) = held {
                        model.items.remove(at);
                    }
                    prop_assert_eq!(
                        lease.ack().await.expect("ack"),
                        held.is_some(),
                        "step {}",
                        step
                    );
                }
                Op::Release(i) if !leases.is_empty() => {
                    let (id, number, lease) = &leases[i % leases.len()];
                    let held = model
                        .items
                        .iter_mut()
                        .find(|it| it.id == *id && it.leased_by == Some(*number));
                    let expected = held.is_some();
                    if let Some(it) = held {
                        it.leased_by = None;
                    }
                    prop_assert_eq!(
                        lease.release().await.expect("release"),
                        expected,
                        "step {}",
                        step
                    );
                }
                Op::Ack(_) | Op::Release(_) => {}
                Op::Flush => real.queues.flush().await.expect("flush"),
                Op::Restart => {
                    leases.clear();
                    for it in &mut model.items {
                        it.leased_by = None;
                    }
                    let store = keep_store.then(|| real._store.clone());
                    drop(real);
                    real = open(url, store).await;
                }
            }
        }
        // Whatever happened, a final drain returns the model's items in order.
        leases.clear();
        let expected: Vec<Vec<u8>> = model.ready().map(|i| i.value.clone()).collect();
        let mut drained = Vec::new();
        while let Some(v) = real.queue.pop().await.expect("drain") {
            drained.push(v);
        }
        prop_assert_eq!(drained, expected);
        Ok(())
    })
}

fn overflow() -> impl Strategy<Value = Overflow> {
    prop_oneof![Just(Overflow::Reject), Just(Overflow::DropOldest)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn memory_matches_the_model(
        capacity in 1u64..6,
        overflow in overflow(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run("memory:", true, capacity, overflow, ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn sled_matches_the_model(
        capacity in 1u64..6,
        overflow in overflow(),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sled:{}", dir.path().display());
        run(&url, false, capacity, overflow, ops)?;
    }
}
