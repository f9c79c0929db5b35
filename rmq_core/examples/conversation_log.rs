//! Conversations as logs in a sled directory: every message stored once, a
//! live feed for a reader, edits and reactions folded into history, unread
//! counts and per-device cursors.
//!
//! ```sh
//! cargo run -p rmq_core --example conversation_log
//! ```
#![expect(clippy::print_stdout, reason = "an example shows its results")]

use rmq_core::conversation::{Conversations, FeedItem, LogQuery, Retention};
use rmq_core::{ConversationId, DeviceId, Envelope, RoomId, To, UserId};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = nopi::open(&format!("sled:{}", dir.path().display())).await?;
    let log = Conversations::builder(&store).build().await?;

    let (alice, bob) = (UserId::new("alice")?, UserId::new("bob")?);
    let phone = DeviceId::new("phone")?;
    let rust = RoomId::new("rust")?;
    log.create_room(&rust, Retention::Last(10_000)).await?;
    log.join(&rust, &alice).await?;
    log.join(&rust, &bob).await?;
    let room = ConversationId::room(rust.clone());

    // bob's phone follows the room live, from the start.
    let mut feed = log.feed(&bob);
    feed.watch(&room, 0).await?;

    for text in ["hello", "anyone here?", "see you"] {
        let sent = log
            .append(&Envelope::new(alice.clone(), To::Room(rust.clone()), text))
            .await?;
        println!("alice appended seq {}: {text}", sent.seq);
    }
    for _ in 0..3 {
        let FeedItem::Entry(entry) = feed.next().await? else {
            return Err("the log was trimmed".into());
        };
        println!("bob's feed: seq {}", entry.seq);
        log.mark_delivered(&bob, &phone, &room, entry.seq).await?;
    }

    // Edits and reactions are entries too; history folds them in.
    log.edit(&room, &alice, 1, b"hello, rust".to_vec()).await?;
    log.react(&room, &bob, 1, "+1").await?;
    let history = log.messages(&room, &bob, LogQuery::last(50)).await?;
    let first = &history[0];
    println!(
        "history: {} messages; the first now reads {:?} with reactions {:?}",
        history.len(),
        String::from_utf8_lossy(first.body()),
        first.reactions
    );
    assert_eq!((history.len(), first.body()), (3, &b"hello, rust"[..]));

    // Unread counts count messages, not edits or reactions.
    let unread = log.list(&bob, Default::default()).await?[0].unread;
    println!("bob has {unread} unread");
    assert_eq!(unread, 3);
    log.mark_read(&bob, &phone, &room, 3).await?;
    let unread = log.list(&bob, Default::default()).await?[0].unread;
    println!("after reading on his phone: {unread} unread");
    assert_eq!(unread, 0);

    // A direct conversation is a log of two members.
    log.append(&Envelope::new(alice.clone(), To::User(bob.clone()), "psst"))
        .await?;
    let chats: Vec<String> = log
        .list(&bob, Default::default())
        .await?
        .iter()
        .map(|s| s.conversation.to_string())
        .collect();
    println!("bob's conversations: {chats:?}");
    assert_eq!(chats.len(), 2);
    Ok(())
}

#[test]
fn runs() {
    main().expect("the example runs");
}
