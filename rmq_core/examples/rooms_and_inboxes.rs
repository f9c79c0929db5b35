//! Routing with the embedded broker in a sled directory: a room, a direct
//! message, an offline user whose inbox keeps everything across a restart,
//! acked delivery, and the room's history for a late joiner.
//!
//! ```sh
//! cargo run -p rmq_core --example rooms_and_inboxes
//! ```
#![expect(clippy::print_stdout, reason = "an example shows its results")]

use rmq_core::{Broker, Envelope, HistoryQuery, LocalBroker, RoomId, To, UserId};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let url = format!("sled:{}", dir.path().display());
    let broker = LocalBroker::open(&url).await?;

    let (alice, bob, carol) = (
        UserId::new("alice")?,
        UserId::new("bob")?,
        UserId::new("carol")?,
    );
    let rust = RoomId::new("rust")?;
    for user in [&alice, &bob, &carol] {
        broker.ensure_inbox(user).await?;
    }
    broker.create_room(&rust).await?;
    broker.join(&rust, &alice).await?;
    broker.join(&rust, &bob).await?;

    // bob is offline: a room message and a direct message wait in his inbox.
    let hello = Envelope::builder(alice.clone(), To::Room(rust.clone()))
        .from_ip("192.0.2.7".parse()?) // set by the server, never by the client
        .content_type("text/plain")
        .body("hello rust")
        .build();
    broker.publish(&hello).await?;
    broker
        .publish(&Envelope::new(
            alice.clone(),
            To::User(bob.clone()),
            "psst, bob",
        ))
        .await?;
    println!(
        "bob's inbox holds {} messages while he is away",
        broker.inbox_len(&bob).await?
    );

    // The node restarts: the inbox is on disk.
    drop(broker);
    let broker = LocalBroker::open(&url).await?;
    assert_eq!(broker.inbox_len(&bob).await?, 2);

    // bob connects: waiting messages first, in order; each is acked once
    // his client has it.
    let mut inbox = broker.subscribe(&bob).await?;
    for _ in 0..2 {
        let delivery = inbox.recv().await.expect("a delivery")?;
        let envelope = delivery.envelope();
        let to = match &envelope.to {
            To::Room(room) => format!("room {}", room.as_str()),
            _ => "bob".to_owned(),
        };
        println!(
            "bob got from {} to {to}: {}",
            envelope.from.as_str(),
            String::from_utf8_lossy(&envelope.body)
        );
        delivery.ack().await?;
    }
    drop(inbox);
    assert_eq!(broker.inbox_len(&bob).await?, 0);

    // carol joins late and reads the room's history instead.
    broker.join(&rust, &carol).await?;
    let history = broker.history(&rust, HistoryQuery::last(50)).await?;
    println!(
        "carol reads {} message of history: {}",
        history.len(),
        String::from_utf8_lossy(&history[0].body)
    );
    assert_eq!(history, [hello]);
    Ok(())
}

#[test]
fn runs() {
    main().expect("the example runs");
}
