//! A real outage: the broker reaches RabbitMQ through a TCP proxy that the
//! test cuts (connections die, new ones are refused) and later restores.
//! The broker keeps retrying with backoff; operations wait for it, up to
//! their deadline.
mod support;

use std::time::Duration;

use rmq_core::{AmqpBroker, Broker, Envelope, Error, To, UserId};
use support::{Fixture, amqp_proxy, amqp_url_via, recv_text, run_on};

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

async fn wait_down(broker: &AmqpBroker) {
    wait_until("the broker notices the outage", || !broker.is_connected()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_during_an_outage_is_delivered_when_the_server_is_back() {
    let proxy = amqp_proxy().await;
    let fixture = Fixture::amqp_at(&amqp_url_via(&proxy), |b| b).await;
    // Borrowed, so that the proxy outlives the test body and the cleanup
    // (which goes through it) still reaches the server.
    let proxy = &proxy;
    run_on(fixture, |f| async move {
        let broker = f.amqp();
        let alice = UserId::new("alice").unwrap();
        let bob = f.user("bob").await;
        let mut sb = broker.subscribe(&bob).await.unwrap();

        proxy.cut();
        wait_down(&broker).await;
        let publish = {
            let broker = broker.clone();
            let env = Envelope::new(alice.clone(), To::User(bob.clone()), "during the outage");
            tokio::spawn(async move { broker.publish(&env).await })
        };
        // The server is unreachable: the publish cannot have been confirmed.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !publish.is_finished(),
            "a publish confirmed with the server away"
        );
        assert!(!broker.is_connected());

        proxy.restore();
        publish
            .await
            .unwrap()
            .expect("the publish is confirmed after the outage");
        assert!(broker.reconnections() >= 1);
        // The subscription made before the outage resumed by itself.
        assert_eq!(recv_text(&mut sb).await, "during the outage");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_fail_with_timeout_when_the_outage_outlasts_their_deadline() {
    let proxy = amqp_proxy().await;
    let fixture = Fixture::amqp_at(&amqp_url_via(&proxy), |b| {
        b.operation_timeout(Duration::from_millis(800))
    })
    .await;
    let proxy = &proxy;
    run_on(fixture, |f| async move {
        let broker = f.amqp();
        let bob = f.user("bob").await;
        proxy.cut();
        wait_down(&broker).await;
        let env = Envelope::new(bob.clone(), To::User(bob.clone()), "x");
        assert!(matches!(
            broker.publish(&env).await,
            Err(Error::Timeout { op: "publish", .. })
        ));
        assert!(matches!(
            broker.subscribe(&bob).await,
            Err(Error::Timeout { .. })
        ));
        assert!(matches!(
            broker.ensure_inbox(&bob).await,
            Err(Error::Timeout { .. })
        ));

        proxy.restore();
        wait_until("the broker reconnects", || broker.is_connected()).await;
        broker.publish(&env).await.unwrap();
        let mut sb = broker.subscribe(&bob).await.unwrap();
        assert_eq!(recv_text(&mut sb).await, "x");
    })
    .await;
}
