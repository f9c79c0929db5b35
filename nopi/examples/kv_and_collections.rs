//! Key-value trees and JSON collections in a sled directory, reopened to show
//! that what was written survives.
//!
//! ```sh
//! cargo run -p nopi --example kv_and_collections
//! ```
#![expect(clippy::print_stdout, reason = "an example shows its results")]

use nopi::{Batch, Error, Scan};
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Contact {
    name: String,
    email: String,
    city: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let url = format!("sled:{}", dir.path().display());
    let store = nopi::open(&url).await?;

    // An ordered tree of bytes: keys sort, so a reverse scan is "newest first".
    let inbox = store.tree("inbox:alice").await?;
    inbox.insert("0001", "hello").await?;
    inbox
        .apply(Batch::new().put("0002", "how are you").put("0003", "bye"))
        .await?;
    for (key, value) in inbox.scan(Scan::all().rev().limit(2)).await? {
        println!(
            "inbox {} = {}",
            String::from_utf8_lossy(&key),
            String::from_utf8_lossy(&value)
        );
    }

    // A batch with an expectation writes nothing when the expectation fails.
    let refused = inbox
        .apply(
            Batch::new()
                .expect_absent("0001")
                .put("0001", "overwritten"),
        )
        .await;
    assert!(matches!(refused, Err(Error::Conflict { .. })));
    println!("conditional write refused: key 0001 already exists");

    // Typed documents with a unique and a plain index.
    let contacts = store
        .collection::<Contact>("contacts")
        .unique("email")
        .index("city")
        .open()
        .await?;
    for (name, email, city) in [
        ("alice", "alice@example.com", "Lyon"),
        ("bob", "bob@example.com", "Lyon"),
        ("carol", "carol@example.com", "Oslo"),
    ] {
        let contact = Contact {
            name: name.into(),
            email: email.into(),
            city: city.into(),
        };
        contacts.insert_with_id(name, &contact).await?;
    }
    let dup = Contact {
        name: "eve".into(),
        email: "bob@example.com".into(),
        city: "Rome".into(),
    };
    assert!(contacts.insert_with_id("eve", &dup).await.is_err());
    println!("duplicate email refused");
    let in_lyon: Vec<String> = contacts
        .find_by("city", "Lyon")
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    println!("in Lyon: {in_lyon:?}");
    assert_eq!(in_lyon, ["alice", "bob"]);

    // flush is the durability point; reopen and read back.
    store.flush().await?;
    drop((inbox, contacts, store));
    let store = nopi::open(&url).await?;
    let inbox = store.tree("inbox:alice").await?;
    let contacts = store
        .collection::<Contact>("contacts")
        .unique("email")
        .index("city")
        .open()
        .await?;
    let carol = contacts.get("carol").await?.expect("carol was stored");
    println!(
        "after reopening: {} messages, carol lives in {}",
        inbox.len().await?,
        carol.city
    );
    assert_eq!((inbox.len().await?, carol.city.as_str()), (3, "Oslo"));
    Ok(())
}

#[test]
fn runs() {
    main().expect("the example runs");
}
