//! A small server that serves a few calls and exits by itself: two APIs, an
//! HTTP listener and a JSON-lines TCP listener on ephemeral ports, a client
//! in the same process that calls over both and receives a push, then a
//! graceful shutdown.
//!
//! ```sh
//! cargo run -p homer --example echo_server
//! ```
#![expect(clippy::print_stdout, reason = "an example shows its results")]

use std::time::Duration;

use homer::{ApiError, Context, Homer, Push};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Deserialize)]
struct Join {
    topic: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let homer = Homer::builder().build()?;
    // Typed params in, a serialisable value out; homer does the JSON.
    homer.api("echo", |_ctx: Context, params: Value| async move {
        Ok::<_, ApiError>(params)
    });
    homer.api("join", |ctx: Context, p: Join| async move {
        if p.topic.is_empty() {
            return Err(ApiError::bad_request(
                "empty_topic",
                "the topic must not be empty",
            ));
        }
        ctx.subscribe(&p.topic);
        Ok(json!({ "joined": p.topic }))
    });
    let http = homer.listen_http("127.0.0.1:0").await?;
    let tcp = homer.listen_tcp("127.0.0.1:0", homer::json_lines()).await?;
    println!("listening: http://{http}/api/<name>, tcp {tcp} (JSON lines)");

    // A TCP client: one JSON object per line each way.
    let (r, mut w) = TcpStream::connect(tcp).await?.into_split();
    let mut lines = BufReader::new(r).lines();
    for call in [
        json!({"id": 1, "api": "echo", "params": {"hello": "world"}}),
        json!({"id": 2, "api": "join", "params": {"topic": "news"}}),
        json!({"id": 3, "api": "join", "params": {"topic": ""}}),
        json!({"id": 4, "api": "nope", "params": null}),
    ] {
        w.write_all(format!("{call}\n").as_bytes()).await?;
        let reply = lines.next_line().await?.ok_or("the server closed")?;
        println!("tcp {} -> {reply}", call["api"]);
    }

    // A push to the topic reaches the TCP client.
    let delivered = homer.publish(
        "news",
        Push::new("headline", json!({"text": "homer ships"})),
    );
    let push = lines.next_line().await?.ok_or("the server closed")?;
    println!("published to {delivered} connection(s); tcp got {push}");
    assert_eq!(
        push,
        r#"{"push":"headline","content":{"text":"homer ships"}}"#
    );

    // The same API over HTTP: the body is the params.
    let mut s = TcpStream::connect(http).await?;
    let body = r#"{"via":"http"}"#;
    let request = format!(
        "POST /api/echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    s.read_to_string(&mut response).await?;
    let status = response.lines().next().unwrap_or_default();
    let reply = response.rsplit("\r\n\r\n").next().unwrap_or_default();
    println!("http echo -> {status}: {reply}");
    assert_eq!(
        reply,
        r#"{"id":null,"status":200,"content":{"via":"http"}}"#
    );

    // Graceful shutdown: listeners close, connections get up to 1 s.
    // Connections are told why they close, then the socket ends.
    homer.shutdown(Duration::from_secs(1)).await;
    let goodbye = lines.next_line().await?.ok_or("no close notice")?;
    println!("shut down; tcp got {goodbye}");
    assert!(goodbye.starts_with(r#"{"push":"close""#));
    assert_eq!(lines.next_line().await?, None);
    Ok(())
}

#[test]
fn runs() {
    main().expect("the example runs");
}
