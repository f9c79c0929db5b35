//! What one client address may do to a real chat-server: accounts per hour,
//! failed logins per minute over all accounts, connections at once; each
//! refusal a clear error, counted in the metrics, and no other address
//! affected.

mod support;

use serde_json::json;
use support::{Client, Server};
use tokio::io::AsyncReadExt;

fn creds(name: &str, password: &str) -> serde_json::Value {
    json!({"name": name, "password": password})
}

/// `/metrics`, or `None` when the connection is refused.
async fn try_metrics(server: &Server) -> Option<String> {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(server.http).await.ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.ok()?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

#[tokio::test]
async fn one_address_is_limited_in_accounts_failed_logins_and_connections() {
    let server = Server::start_with(&[
        "--registrations-per-ip-per-hour",
        "2",
        "--failed-logins-per-ip-per-minute",
        "3",
        "--max-connections-per-ip",
        "4",
    ])
    .await;
    let mut c = Client::tcp(server.tcp).await;

    // Accounts: two, then a 429 that says when to come back.
    c.ok("user.register", creds("ann", "pw-ann")).await;
    c.ok("user.register", creds("ben", "pw-ben")).await;
    let e = c.err("user.register", creds("cid", "pw-cid"), 429).await;
    assert_eq!(e["code"], "too_many_registrations", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("retry_after="),
        "{e}"
    );
    // A bad name is refused for what it is, and spends nothing.
    let e = c.err("user.register", creds("", "x"), 400).await;
    assert_eq!(e["code"], "bad_name");

    // Failed logins over several accounts: password spraying. After three,
    // even the right password of a real account waits.
    for name in ["ann", "ben", "nobody"] {
        let e = c.err("user.login", creds(name, "wrong"), 401).await;
        assert_eq!(e["code"], "bad_credentials");
    }
    let e = c.err("user.login", creds("ann", "pw-ann"), 429).await;
    assert_eq!(e["code"], "too_many_attempts", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("this address"),
        "{e}"
    );

    // Connections at once: this one and three more; a fifth is closed
    // before it is served.
    let held = [
        Client::tcp(server.tcp).await,
        Client::ws(server.http).await,
        Client::tcp(server.tcp).await,
    ];
    let mut extra = tokio::net::TcpStream::connect(server.tcp).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), extra.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "the fifth connection is closed at once");
    drop((held, extra));

    // Slots come back as connections close (the scrape needs one). Until
    // they do, a scrape is refused: closed at once, or reset when the
    // request was already sent.
    let text = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            if let Some(text) = try_metrics(&server).await {
                return text;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a scrape once slots are free");
    for series in [
        "chat_rate_limited_total{limit=\"register\"} 1",
        "chat_rate_limited_total{limit=\"login_address\"} 1",
        "chat_connections_refused_total{reason=\"per_ip_limit\"} 1",
        "chat_failed_logins_total 3",
    ] {
        assert!(text.lines().any(|l| l == series), "{series} in:\n{text}");
    }
}
