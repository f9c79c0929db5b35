//! Tests of the client as a whole: a memory store, a fake network, and the
//! requests it sends.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::commands::Command;
use super::{Client, ConnState, Event, Settings, Source};
use crate::net::{NetCmd, NetEvent};
use crate::store::LocalStore;

/// A client on a memory store, logged in as `bob`, and what it sends.
pub(crate) async fn logged_in() -> (Client, mpsc::UnboundedReceiver<NetCmd>) {
    let store = LocalStore::on(nopi::open("memory:").await.unwrap())
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let settings = Settings {
        server: "tcp://127.0.0.1:7000".into(),
        user: "bob".into(),
        password: Some("pw".into()),
        register: false,
        ack_delay: Duration::from_millis(0),
        emoticons: true,
    };
    let mut c = Client::new(settings, store, tx).await.unwrap();
    c.on_net(NetEvent::Connected { epoch: 1 }).await;
    let login = sent(&mut rx);
    assert_eq!(login[0]["api"], "user.login");
    assert_eq!(
        login[0]["params"],
        json!({"name": "bob", "password": "pw", "device": "terminal"})
    );
    let reply = json!({"id": login[0]["id"], "status": 200, "content": {
        "token": "t", "name": "bob", "number": 2, "friends": [], "groups": [{"name": "lobby", "desc": "", "role": "member"}]}});
    c.on_net(NetEvent::Frame {
        epoch: 1,
        value: reply,
    })
    .await;
    assert_eq!(c.conn(), ConnState::Online);
    sent(&mut rx);
    c.take_events();
    (c, rx)
}

/// The requests sent so far.
pub(crate) fn sent(rx: &mut mpsc::UnboundedReceiver<NetCmd>) -> Vec<Value> {
    let mut out = Vec::new();
    while let Ok(cmd) = rx.try_recv() {
        if let NetCmd::Send { text, .. } = cmd {
            out.push(serde_json::from_str(&text).unwrap());
        }
    }
    out
}

pub(crate) fn push(id: &str, from: &str, to: Value, text: &str) -> NetEvent {
    NetEvent::Frame {
        epoch: 1,
        value: json!({"push": "message", "content": {"id": id, "from": from, "ip": "127.0.0.1", "to": to, "text": text, "ts": 5}}),
    }
}

#[tokio::test]
async fn a_redelivered_message_is_dropped_and_acked_again() {
    let (mut c, mut rx) = logged_in().await;
    c.on_net(push("m1", "alice", json!({"user": "bob"}), "hi :)"))
        .await;
    c.on_net(push("m1", "alice", json!({"user": "bob"}), "hi :)"))
        .await;
    let events = c.take_events();
    let shown: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, Event::Message { .. }))
        .collect();
    assert_eq!(shown.len(), 1, "{events:?}");
    match shown[0] {
        Event::Message {
            message, unread, ..
        } => {
            assert_eq!(
                (message.channel.as_str(), message.display.as_str(), *unread),
                ("@alice", "hi ☺", true)
            );
        }
        _ => unreachable!(),
    }
    assert!(events.contains(&Event::Duplicate {
        channel: "@alice".into(),
        id: "m1".into()
    }));
    c.on_tick().await;
    let acks = sent(&mut rx);
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0]["api"], "chat.ack");
    assert_eq!(acks[0]["params"]["ids"], json!(["m1", "m1"]));
    assert_eq!(c.channel_list(), [("#lobby", 0), ("@alice", 1)]);
}

#[tokio::test]
async fn switching_channel_clears_its_unread_count() {
    let (mut c, _rx) = logged_in().await;
    c.on_net(push("m1", "alice", json!({"group": "lobby"}), "in lobby"))
        .await;
    c.on_net(push(
        "m2",
        "alice",
        json!({"user": "bob", "group": "lobby"}),
        "private in lobby",
    ))
    .await;
    c.on_net(push("m3", "alice", json!({"user": "bob"}), "private"))
        .await;
    assert_eq!(
        c.channel_list(),
        [("#lobby", 0), ("@alice", 1)],
        "the current channel counts nothing"
    );
    c.on_command(Command::Join("@alice".into())).await;
    assert_eq!(c.channel_list(), [("#lobby", 0), ("@alice", 0)]);
    assert_eq!(c.current_messages().len(), 1);
    c.on_command(Command::Next).await;
    assert_eq!(c.current(), "#lobby");
    assert_eq!(c.current_messages().len(), 2);
}

#[tokio::test]
async fn text_typed_offline_is_sent_after_login_and_confirmed() {
    let store = LocalStore::on(nopi::open("memory:").await.unwrap())
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let settings = Settings {
        server: "x".into(),
        user: "bob".into(),
        password: Some("pw".into()),
        register: false,
        ack_delay: Duration::from_millis(0),
        emoticons: false,
    };
    let mut c = Client::new(settings, store, tx).await.unwrap();
    c.on_command(Command::Say("queued while offline".into()))
        .await;
    assert!(sent(&mut rx).is_empty(), "nothing goes out before login");
    c.on_net(NetEvent::Connected { epoch: 1 }).await;
    let login = sent(&mut rx);
    let reply = json!({"id": login[0]["id"], "status": 200, "content": {"token": "t", "name": "bob", "number": 2, "friends": [], "groups": []}});
    c.on_net(NetEvent::Frame {
        epoch: 1,
        value: reply,
    })
    .await;
    let out = sent(&mut rx);
    let send = out
        .iter()
        .find(|r| r["api"] == "chat.send")
        .expect("the queued text is sent");
    assert_eq!(send["params"]["text"], "queued while offline");
    assert_eq!(
        c.current_outgoing().count(),
        1,
        "shown as pending until confirmed"
    );
    let reply = json!({"id": send["id"], "status": 200, "content": {"id": "s1", "ts": 9}});
    c.on_net(NetEvent::Frame {
        epoch: 1,
        value: reply,
    })
    .await;
    assert_eq!(c.current_messages()[0].text, "queued while offline");
    assert_eq!(c.current_outgoing().count(), 0);
}

#[tokio::test]
async fn a_lost_connection_fails_commands_and_keeps_sends() {
    let (mut c, mut rx) = logged_in().await;
    c.on_command(Command::Say("keep me".into())).await;
    c.on_command(Command::GroupJoin("rust".into())).await;
    assert_eq!(sent(&mut rx).len(), 2);
    c.on_net(NetEvent::Closed {
        reason: "gone".into(),
        retry_in: Some(Duration::from_secs(1)),
    })
    .await;
    let events = c.take_events();
    assert!(events.iter().any(|e| matches!(e, Event::Error { command: Some(c), code, .. } if c == "group join" && code == "disconnected")));
    assert_eq!(c.conn(), ConnState::Offline);
    assert!(c.settled());
    c.on_net(NetEvent::Connected { epoch: 2 }).await;
    let resume = sent(&mut rx);
    assert_eq!(resume[0]["api"], "user.resume", "the saved token is used");
    let reply = json!({"id": resume[0]["id"], "status": 200, "content": {"token": "t", "name": "bob", "number": 2, "friends": [], "groups": []}});
    c.on_net(NetEvent::Frame {
        epoch: 2,
        value: reply,
    })
    .await;
    let again = sent(&mut rx);
    assert!(
        again
            .iter()
            .any(|r| r["api"] == "chat.send" && r["params"]["text"] == "keep me"),
        "{again:?}"
    );
}

#[tokio::test]
async fn a_replaced_session_stops_reconnecting_until_login() {
    let (mut c, mut rx) = logged_in().await;
    let replaced = NetEvent::Frame {
        epoch: 1,
        value: json!({"push": "session", "content": {"event": "replaced"}}),
    };
    c.on_net(replaced).await;
    // The server closes the connection before the network task stops.
    c.on_net(NetEvent::Closed {
        reason: "closed".into(),
        retry_in: Some(Duration::from_secs(1)),
    })
    .await;
    assert_eq!(c.conn(), ConnState::Replaced);
    assert!(std::iter::from_fn(|| rx.try_recv().ok()).any(|cmd| matches!(cmd, NetCmd::Stop)));
    assert!(c.settled(), "a script may end");
    c.on_command(Command::Login("pw".into())).await;
    assert!(std::iter::from_fn(|| rx.try_recv().ok()).any(|cmd| matches!(cmd, NetCmd::Reconnect)));
    c.on_net(NetEvent::Connected { epoch: 2 }).await;
    let login = sent(&mut rx);
    assert_eq!(
        login[0]["api"], "user.login",
        "taking over logs in with the password"
    );
}

#[tokio::test]
async fn bad_credentials_stop_and_fail() {
    let store = LocalStore::on(nopi::open("memory:").await.unwrap())
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let settings = Settings {
        server: "x".into(),
        user: "4242".into(),
        password: Some("nope".into()),
        register: false,
        ack_delay: Duration::from_millis(0),
        emoticons: true,
    };
    let mut c = Client::new(settings, store, tx).await.unwrap();
    c.on_net(NetEvent::Connected { epoch: 1 }).await;
    let login = sent(&mut rx);
    assert_eq!(
        login[0]["params"],
        json!({"number": 4242, "password": "nope", "device": "terminal"}),
        "a number logs in by number"
    );
    let reply = json!({"id": login[0]["id"], "status": 401, "error": {"code": "bad_credentials", "message": "wrong name or password"}});
    c.on_net(NetEvent::Frame {
        epoch: 1,
        value: reply,
    })
    .await;
    assert_eq!(c.conn(), ConnState::Stopped);
    assert!(c.failed());
    let events = c.take_events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Error { code, .. } if code == "bad_credentials")),
        "{events:?}"
    );
}

#[tokio::test]
async fn garbage_from_the_server_is_reported_not_fatal() {
    let (mut c, _rx) = logged_in().await;
    for value in [
        json!({"push": "message", "content": {"id": 1}}),
        json!({"push": "presence", "content": "x"}),
        json!({"push": "group", "content": null}),
        json!({"push": "from-the-future", "content": {}}),
        json!({"id": 999_999, "status": 200}),
        json!({"id": null, "status": 400, "error": {"code": "bad_json", "message": "?"}}),
        json!({"status": "weird"}),
    ] {
        c.on_net(NetEvent::Frame { epoch: 1, value }).await;
    }
    c.on_net(NetEvent::Garbage {
        epoch: 1,
        reason: "not json".into(),
    })
    .await;
    assert_eq!(c.conn(), ConnState::Online);
    assert!(c.current_messages().is_empty());
}

#[tokio::test]
async fn sync_keeps_only_what_is_newer_than_the_newest_stored() {
    let (mut c, mut rx) = logged_in().await;
    c.on_net(push("0001", "alice", json!({"group": "lobby"}), "old"))
        .await;
    c.on_net(NetEvent::Closed {
        reason: "x".into(),
        retry_in: Some(Duration::from_secs(1)),
    })
    .await;
    c.on_net(NetEvent::Connected { epoch: 2 }).await;
    c.on_command(Command::Join("@carol".into())).await; // lobby is no longer current
    let resume = sent(&mut rx);
    let reply = json!({"id": resume[0]["id"], "status": 200, "content": {"token": "t", "name": "bob", "number": 2,
        "friends": [], "groups": [{"name": "lobby", "desc": "everyone", "role": "member"}]}});
    c.on_net(NetEvent::Frame {
        epoch: 2,
        value: reply,
    })
    .await;
    c.take_events();
    let history = sent(&mut rx)
        .into_iter()
        .find(|r| r["api"] == "chat.history")
        .expect("a sync");
    let older = json!({"id": "0000", "from": "alice", "ip": "", "to": {"group": "lobby"}, "text": "older", "ts": 1});
    let known = json!({"id": "0001", "from": "alice", "ip": "", "to": {"group": "lobby"}, "text": "old", "ts": 5});
    let newer = json!({"id": "0002", "from": "alice", "ip": "", "to": {"group": "lobby"}, "text": "new", "ts": 6});
    let reply =
        json!({"id": history["id"], "status": 200, "content": {"messages": [older, known, newer]}});
    c.on_net(NetEvent::Frame {
        epoch: 2,
        value: reply,
    })
    .await;
    let events = c.take_events();
    let added: Vec<(String, Source, bool)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Message {
                message,
                source,
                unread,
            } => Some((message.text.clone(), *source, *unread)),
            _ => None,
        })
        .collect();
    assert_eq!(
        added,
        [
            ("older".into(), Source::Server, false),
            ("new".into(), Source::Sync, true)
        ]
    );
    assert_eq!(c.channel_list()[0], ("#lobby", 1));
}
