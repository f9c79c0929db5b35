//! A user-defined translating protocol on a TCP listener: NUL-terminated
//! `{"msgid":..}` objects (in the style of the legacy chat protocols) mapped
//! to the application's APIs, with replies and pushes rewritten.
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use bytes::{BufMut, BytesMut};
use homer::{Call, Decoded, Limits, Protocol, ProtocolError, Push, Reply};
use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// msgid 1 = login (reply msgid 2), msgid 7 = join a topic (no reply);
/// `message` pushes become msgid 6; other pushes are dropped.
struct MsgId {
    max: usize,
    next_id: u64,
    pending: std::collections::HashMap<u64, u64>,
}

impl Protocol for MsgId {
    fn name(&self) -> &'static str {
        "msgid-json"
    }

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Decoded>, ProtocolError> {
        let Some(end) = src.iter().position(|b| *b == 0) else {
            if src.len() > self.max {
                return Err(ProtocolError::FrameTooLarge {
                    len: src.len(),
                    limit: self.max,
                });
            }
            return Ok(None);
        };
        let frame = src.split_to(end + 1);
        let Ok(v) = serde_json::from_slice::<Value>(&frame[..end]) else {
            return Ok(Some(Decoded::Reply(Reply::error(
                Value::Null,
                None,
                homer::ApiError::malformed_json("not json"),
            ))));
        };
        self.next_id += 1;
        let id = self.next_id;
        let msgid = v["msgid"].as_u64().unwrap_or(0);
        self.pending.insert(id, msgid);
        let (api, params) = match msgid {
            1 => ("login", json!({"user": v["name"]})),
            7 => ("join", json!({"topic": v["topic"]})),
            _ => ("no.such", Value::Null),
        };
        Ok(Some(Decoded::Call(Call::new(id, api, params))))
    }

    fn encode_reply(&mut self, reply: &Reply, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        let msgid = reply.id.as_u64().and_then(|id| self.pending.remove(&id));
        let out = match (msgid, &reply.result) {
            (Some(1), Ok(_)) => json!({"msgid": 2, "errno": 0}),
            (Some(1), Err(_)) => json!({"msgid": 2, "errno": 1}),
            (Some(7), _) => return Ok(()), // no reply in this protocol
            _ => json!({"msgid": 0, "errno": reply.status()}),
        };
        serde_json::to_writer(dst.writer(), &out).map_err(|source| ProtocolError::Encode {
            what: "reply",
            source,
        })?;
        dst.put_u8(0);
        Ok(())
    }

    fn encode_push(&mut self, push: &Push, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        if push.kind() != "message" {
            return Ok(());
        }
        let out = json!({"msgid": 6, "msg": push.content()["text"], "topic": push.topic()});
        serde_json::to_writer(dst.writer(), &out).map_err(|source| ProtocolError::Encode {
            what: "push",
            source,
        })?;
        dst.put_u8(0);
        Ok(())
    }
}

async fn read_object(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<Value> {
    within(async {
        loop {
            if let Some(end) = buf.iter().position(|b| *b == 0) {
                let obj: Vec<u8> = buf.drain(..=end).collect();
                return Some(serde_json::from_slice(&obj[..end]).unwrap());
            }
            let mut chunk = [0u8; 1024];
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
}

#[tokio::test]
async fn a_translating_protocol_reaches_the_same_apis_and_pushes() {
    let s = Server::default().await;
    let addr = s
        .homer
        .listen_tcp("127.0.0.1:0", |l: &Limits| MsgId {
            max: l.max_frame_size(),
            next_id: 0,
            pending: Default::default(),
        })
        .await
        .unwrap();
    let mut legacy = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    // Two messages in one write, the second split across writes.
    legacy
        .write_all(b"{\"msgid\":1,\"name\":\"gus\"}\0{\"msgid\":7,")
        .await
        .unwrap();
    assert_eq!(
        read_object(&mut legacy, &mut buf).await,
        Some(json!({"msgid": 2, "errno": 0}))
    );
    legacy.write_all(b"\"topic\":\"lobby\"}\0").await.unwrap();
    s.wait_subscribers("lobby", 1).await;
    let conn = s
        .homer
        .hub()
        .connection(s.homer.hub().subscribers("lobby")[0])
        .unwrap();
    assert_eq!(conn.protocol(), "msgid-json");
    assert_eq!(conn.session().get::<User>(), Some(User("gus".into())));

    // A native client in the same room; one publish reaches both shapes.
    let mut native = s.ws().await;
    native.call(1, "join", json!({"topic": "lobby"})).await;
    s.homer
        .publish("lobby", Push::new("presence", json!({"user": "x"})));
    s.homer
        .publish("lobby", Push::new("message", json!({"text": "hi all"})));
    assert_eq!(
        read_object(&mut legacy, &mut buf).await,
        Some(json!({"msgid": 6, "msg": "hi all", "topic": "lobby"}))
    );
    assert_eq!(native.recv().await.unwrap()["push"], "presence");
    assert_eq!(native.recv().await.unwrap()["content"]["text"], "hi all");
    // Unknown message and bad JSON get the protocol's own error shape.
    legacy
        .write_all(b"{\"msgid\":99}\0garbage\0")
        .await
        .unwrap();
    assert_eq!(
        read_object(&mut legacy, &mut buf).await,
        Some(json!({"msgid": 0, "errno": 404}))
    );
    assert_eq!(
        read_object(&mut legacy, &mut buf).await,
        Some(json!({"msgid": 0, "errno": 400}))
    );
}
