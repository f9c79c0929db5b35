//! Shared helpers for the integration tests: brokers on every backend with
//! unique names and cleanup, and delivery assertions with timeouts.
#![allow(
    dead_code,
    reason = "included by several test files, each using a part; not `expect`, since the unused part differs per file"
)]
#![expect(
    unreachable_pub,
    reason = "a private test module; `pub` reads as \"shared with the test files\""
)]
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use rmq_core::{
    AmqpBroker, AmqpBrokerBuilder, Broker, Delivery, LocalBroker, RoomId, Subscription, UserId,
};
pub use testkit::{FaultProxy, amqp_url};

/// How long a delivery that must arrive may take.
pub const ARRIVE: Duration = Duration::from_secs(10);
/// How long to wait before concluding that nothing arrives.
pub const SILENCE: Duration = Duration::from_millis(400);

/// A namespace no other test run uses.
pub fn unique_namespace() -> String {
    format!("t-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// A broker on the real RabbitMQ in namespace `ns`. Panics (fails the test)
/// with instructions if RabbitMQ is unreachable: these tests never skip.
pub async fn amqp_broker_in(ns: &str) -> AmqpBroker {
    amqp_broker_with(ns, |b| b).await
}

/// Like [`amqp_broker_in`], with extra configuration.
pub async fn amqp_broker_with(
    ns: &str,
    configure: impl FnOnce(AmqpBrokerBuilder) -> AmqpBrokerBuilder,
) -> AmqpBroker {
    amqp_broker_at(&amqp_url(), ns, configure).await
}

/// A configured broker for the server at `url`, in namespace `ns`.
pub async fn amqp_broker_at(
    url: &str,
    ns: &str,
    configure: impl FnOnce(AmqpBrokerBuilder) -> AmqpBrokerBuilder,
) -> AmqpBroker {
    let builder = AmqpBroker::builder(url)
        .namespace(ns)
        .connection_name(format!("rmq_core-test {ns}"))
        .operation_timeout(Duration::from_secs(20))
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500));
    match configure(builder).connect().await {
        Ok(b) => b,
        Err(e) => panic!(
            "RabbitMQ is required by these tests and is unreachable: {e}\n\
             start it (`service rabbitmq-server start`, or install the `rabbitmq-server` package), \
             or point AMQP_URL at a running server"
        ),
    }
}

/// A conversation-log node on `store`, fanning out through a new broker
/// connection in namespace `ns` (several calls: several nodes).
pub async fn amqp_conversations(
    store: &nopi::testing::TempStore,
    ns: &str,
) -> (rmq_core::Conversations, AmqpBroker) {
    let broker = amqp_broker_in(ns).await;
    let log = rmq_core::Conversations::builder(&store.open().await.expect("open the store"))
        .fanout(Arc::new(broker.clone()))
        .build()
        .await
        .expect("conversation logs");
    (log, broker)
}

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Local,
    Amqp,
}

/// A broker under test plus what the test created on it, deleted at the end.
#[derive(Clone)]
pub struct Fixture {
    pub broker: Arc<dyn Broker>,
    pub amqp: Option<AmqpBroker>,
    pub local: Option<LocalBroker>,
    users: Arc<Mutex<Vec<UserId>>>,
    rooms: Arc<Mutex<Vec<RoomId>>>,
}

impl Fixture {
    pub async fn new(backend: Backend) -> Fixture {
        match backend {
            Backend::Local => {
                let b = LocalBroker::memory().await.expect("local broker");
                Fixture::from_parts(Arc::new(b.clone()), None, Some(b))
            }
            Backend::Amqp => Fixture::amqp_with(|b| b).await,
        }
    }

    /// A fixture on a configured `AmqpBroker` in a fresh namespace.
    pub async fn amqp_with(
        configure: impl FnOnce(AmqpBrokerBuilder) -> AmqpBrokerBuilder,
    ) -> Fixture {
        Fixture::amqp_at(&amqp_url(), configure).await
    }

    /// A fixture on a configured `AmqpBroker` for the server at `url`.
    pub async fn amqp_at(
        url: &str,
        configure: impl FnOnce(AmqpBrokerBuilder) -> AmqpBrokerBuilder,
    ) -> Fixture {
        let b = amqp_broker_at(url, &unique_namespace(), configure).await;
        Fixture::from_parts(Arc::new(b.clone()), Some(b), None)
    }

    fn from_parts(
        broker: Arc<dyn Broker>,
        amqp: Option<AmqpBroker>,
        local: Option<LocalBroker>,
    ) -> Fixture {
        Fixture {
            broker,
            amqp,
            local,
            users: Arc::default(),
            rooms: Arc::default(),
        }
    }

    /// The `AmqpBroker` of an AMQP fixture.
    pub fn amqp(&self) -> AmqpBroker {
        self.amqp.clone().expect("an AMQP fixture")
    }

    /// A user with an inbox.
    pub async fn user(&self, name: &str) -> UserId {
        let user = UserId::new(name).unwrap();
        self.broker.ensure_inbox(&user).await.expect("ensure_inbox");
        self.users.lock().unwrap().push(user.clone());
        user
    }

    /// A room.
    pub async fn room(&self, name: &str) -> RoomId {
        let room = RoomId::new(name).unwrap();
        self.broker.create_room(&room).await.expect("create_room");
        self.rooms.lock().unwrap().push(room.clone());
        room
    }

    pub async fn cleanup(&self) {
        let users = std::mem::take(&mut *self.users.lock().unwrap());
        let rooms = std::mem::take(&mut *self.rooms.lock().unwrap());
        for user in users {
            let _ = self.broker.delete_inbox(&user).await;
        }
        for room in rooms {
            let _ = self.broker.delete_room(&room).await;
        }
        if let Some(amqp) = &self.amqp {
            let _ = amqp.delete_namespace().await;
            amqp.close().await;
        }
    }
}

/// Run `test` on a fresh fixture, then clean up, whether the test passed or not.
pub async fn run<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = ()>,
{
    run_on(Fixture::new(backend).await, test).await;
}

/// Run `test` on `fixture`, then clean up, whether the test passed or not.
pub async fn run_on<F, Fut>(fixture: Fixture, test: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = ()>,
{
    let outcome = AssertUnwindSafe(test(fixture.clone())).catch_unwind().await;
    fixture.cleanup().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// The next delivery, which must arrive within [`ARRIVE`].
pub async fn recv(sub: &mut Subscription) -> Delivery {
    match tokio::time::timeout(ARRIVE, sub.recv()).await {
        Ok(Some(Ok(d))) => d,
        Ok(Some(Err(e))) => panic!("subscription of {} failed: {e}", sub.user()),
        Ok(None) => panic!("subscription of {} ended", sub.user()),
        Err(_) => panic!("nothing reached {} within {ARRIVE:?}", sub.user()),
    }
}

/// Receive and ack the next delivery; its body as text.
pub async fn recv_text(sub: &mut Subscription) -> String {
    let d = recv(sub).await;
    let text = String::from_utf8(d.envelope().body.clone()).unwrap();
    d.ack().await.expect("ack");
    text
}

/// Nothing reaches `sub` within [`SILENCE`].
pub async fn assert_silent(sub: &mut Subscription) {
    if let Ok(Some(item)) = tokio::time::timeout(SILENCE, sub.recv()).await {
        match item {
            Ok(d) => panic!(
                "{} unexpectedly received {:?}",
                sub.user(),
                String::from_utf8_lossy(&d.envelope().body)
            ),
            Err(e) => panic!("{} unexpectedly failed: {e}", sub.user()),
        }
    }
}

/// Close, from the server side, every connection whose client properties
/// mention `needle` (e.g. a test's namespace). Returns how many were closed.
pub fn close_connections_matching(needle: &str) -> usize {
    let out = Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "-q",
            "--no-table-headers",
            "pid",
            "client_properties",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run rabbitmqctl (needed to cut connections): {e}"));
    assert!(
        out.status.success(),
        "rabbitmqctl list_connections failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    let mut closed = 0;
    for line in listing.lines().filter(|l| l.contains(needle)) {
        let Some(pid) = line.split_whitespace().next() else {
            continue;
        };
        let out = Command::new("rabbitmqctl")
            .args(["close_connection", pid, "rmq_core fault test"])
            .output()
            .expect("rabbitmqctl close_connection");
        assert!(
            out.status.success(),
            "rabbitmqctl close_connection {pid} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        closed += 1;
    }
    closed
}

/// A [`FaultProxy`] in front of the RabbitMQ at `AMQP_URL`: cutting it is a
/// real outage of the server as far as a broker connected through it can tell
/// (see [`amqp_url_via`]), without touching the server other tests share.
pub async fn amqp_proxy() -> FaultProxy {
    let uri = amqp_uri();
    FaultProxy::start(&format!("{}:{}", uri.authority.host, uri.authority.port))
        .await
        .expect("start a TCP proxy on the loopback")
}

/// `AMQP_URL` with the proxy's address instead of the server's.
pub fn amqp_url_via(proxy: &FaultProxy) -> String {
    let mut uri = amqp_uri();
    uri.authority.host = proxy.addr().ip().to_string();
    uri.authority.port = proxy.addr().port();
    uri.to_string()
}

fn amqp_uri() -> lapin::uri::AMQPUri {
    amqp_url().parse().expect("AMQP_URL is a valid AMQP URL")
}
