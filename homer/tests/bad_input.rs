//! Bad input on every transport gets the reply PROTOCOL.md gives or a clean
//! close, and the server stays up.

mod support;

use bytes::Bytes;
use futures_util::SinkExt;
use serde_json::{Value, json};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

/// (input frame, expected status, expected id, expected error code)
fn table() -> Vec<(&'static [u8], u16, Value, &'static str)> {
    vec![
        (b"{nope", 400, Value::Null, "malformed_json"),
        (b"\xff\xfe\xfd", 400, Value::Null, "malformed_json"),
        (b"[1,2,3]", 400, Value::Null, "bad_request"),
        (b"\"just a string\"", 400, Value::Null, "bad_request"),
        (br#"{"id":5}"#, 400, json!(5), "bad_request"),
        (br#"{"id":6,"api":7}"#, 400, json!(6), "bad_request"),
        (
            br#"{"id":7,"api":"no.such.api"}"#,
            404,
            json!(7),
            "unknown_api",
        ),
        (
            br#"{"id":8,"api":"add","params":{"a":"x","b":1}}"#,
            400,
            json!(8),
            "bad_params",
        ),
        (br#"{"id":9,"api":"add"}"#, 400, json!(9), "bad_params"),
        (
            br#"{"id":10,"api":"whoami"}"#,
            401,
            json!(10),
            "not_logged_in",
        ),
        (br#"{"id":11,"api":"panic"}"#, 500, json!(11), "internal"),
    ]
}

fn check(reply: Option<Value>, status: u16, id: &Value, code: &str, input: &[u8]) {
    let reply = reply.unwrap_or_else(|| panic!("no reply to {:?}", String::from_utf8_lossy(input)));
    assert_eq!(
        reply["status"],
        status,
        "{reply} for {:?}",
        String::from_utf8_lossy(input)
    );
    assert_eq!(&reply["id"], id, "{reply}");
    assert_eq!(reply["error"]["code"], code, "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
}

#[tokio::test]
async fn json_lines_bad_input_table() {
    let s = Server::default().await;
    let mut c = s.lines().await;
    for (input, status, id, code) in table() {
        let mut line = input.to_vec();
        line.push(b'\n');
        c.send_raw(&line).await;
        check(c.recv().await, status, &id, code, input);
    }
    // An oversized line: 413 with id null, then the connection still works.
    let mut big = vec![b'x'; 70 * 1024];
    big.push(b'\n');
    c.send_raw(&big).await;
    check(
        c.recv().await,
        413,
        &Value::Null,
        "too_large",
        b"70 KiB line",
    );
    assert_eq!(c.call(12, "echo", json!(1)).await["status"], 200);
}

#[tokio::test]
async fn length_prefixed_bad_input_table() {
    let s = Server::default().await;
    let mut c = s.prefixed().await;
    for (input, status, id, code) in table() {
        c.framed.send(Bytes::from_static(input)).await.unwrap();
        check(c.recv().await, status, &id, code, input);
    }
    // A frame announcing 1 MiB: refused unread, skipped as it arrives.
    let stream = c.framed.get_mut();
    stream.write_all(&(1u32 << 20).to_be_bytes()).await.unwrap();
    check(
        c.recv().await,
        413,
        &Value::Null,
        "too_large",
        b"1 MiB frame",
    );
    c.framed
        .get_mut()
        .write_all(&vec![b' '; 1 << 20])
        .await
        .unwrap();
    assert_eq!(c.call(12, "echo", json!(1)).await["status"], 200);
}

#[tokio::test]
async fn truncated_frames_and_half_lines_close_cleanly_and_the_server_stays_up() {
    let s = Server::default().await;
    for addr in [s.prefixed, s.lines] {
        let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
        raw.write_all(&[0, 0, 0, 50, b'{']).await.unwrap();
        raw.shutdown().await.unwrap();
        drop(raw);
    }
    s.wait_connections(0).await;
    let mut c = s.prefixed().await;
    assert_eq!(c.call(1, "echo", json!("alive")).await["content"], "alive");
}

#[tokio::test]
async fn websocket_bad_input() {
    let s = Server::default().await;
    let mut ws = s.ws().await;
    for (input, status, id, code) in table() {
        ws.ws.send(Message::binary(input.to_vec())).await.unwrap();
        check(ws.recv().await, status, &id, code, input);
    }
    assert_eq!(ws.call(1, "echo", json!("still open")).await["status"], 200);
    // An oversized message: a clean close with 1009 (message too big).
    ws.ws
        .send(Message::text("x".repeat(70 * 1024)))
        .await
        .unwrap();
    let (code, reason) = ws.recv_close().await.expect("close frame");
    assert_eq!(code, 1009, "{reason}");
    assert!(reason.contains("65536"), "{reason}");
    let mut ws = s.ws().await;
    assert_eq!(ws.call(2, "echo", json!(2)).await["status"], 200);
}

#[tokio::test]
async fn http_bad_input() {
    let s = Server::default().await;
    let mut http = s.http().await;
    for (body, status, code) in [
        (&b"{nope"[..], 400, "malformed_json"),
        (b"\xff\xfe", 400, "malformed_json"),
        (br#"{"a":"x","b":1}"#, 400, "bad_params"),
    ] {
        let r = http.fetch("POST", "/api/add", &[], body).await;
        assert_eq!(
            (r.status, r.json()["error"]["code"].clone()),
            (status, json!(code))
        );
        assert_eq!(r.json()["id"], Value::Null);
    }
    let r = http.post("no.such.api", &[], &json!({})).await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].clone()),
        (404, json!("unknown_api"))
    );
    let r = http.fetch("GET", "/api/echo", &[], "").await;
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    let r = http.fetch("GET", "/ws", &[], "").await;
    assert_eq!(r.status, 426);
    let r = http.fetch("GET", "/nothing/here", &[], "").await;
    assert_eq!(r.status, 404);
    let r = http.post("panic", &[], &json!(null)).await;
    assert_eq!(r.status, 500);
    assert_eq!(http.post("echo", &[], &json!(1)).await.status, 200);

    // An oversized body: 413 whether announced or streamed.
    let mut http = s.http().await;
    let r = http
        .fetch("POST", "/api/echo", &[], vec![b' '; 70 * 1024])
        .await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].clone()),
        (413, json!("too_large"))
    );
    let mut raw = tokio::net::TcpStream::connect(s.http).await.unwrap();
    raw.write_all(b"POST /api/echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let chunk = vec![b' '; 8192];
    let mut status_line = String::new();
    for _ in 0..10 {
        if raw
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .is_err()
            || raw.write_all(&chunk).await.is_err()
            || raw.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let mut buf = vec![0u8; 4096];
    use tokio::io::AsyncReadExt;
    if let Ok(Ok(n)) = tokio::time::timeout(WAIT, raw.read(&mut buf)).await {
        status_line = String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or("")
            .to_owned();
    }
    assert_eq!(status_line, "HTTP/1.1 413 Payload Too Large");
    // The server is still up.
    assert_eq!(
        s.http().await.post("echo", &[], &json!(2)).await.status,
        200
    );
}
