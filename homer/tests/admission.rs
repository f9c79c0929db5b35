//! Admission by source address over real sockets: connections per address,
//! new connections per second per address, and trusted proxies whose PROXY
//! protocol header names the client.
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use homer::{ApiError, Context, Homer, Observer, Refusal};
use serde_json::{Value, json};
use support::within;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Refusals as the observer hears them.
#[derive(Default)]
struct Refusals(Mutex<Vec<(IpAddr, &'static str)>>);

impl Observer for Refusals {
    fn connection_refused(&self, peer: SocketAddr, why: Refusal) {
        self.0.lock().unwrap().push((peer.ip(), why.as_str()));
    }
}

async fn start(builder: homer::HomerBuilder) -> (Homer, SocketAddr, SocketAddr, Arc<Refusals>) {
    let refusals = Arc::new(Refusals::default());
    let homer = builder
        .observer(refusals.clone())
        .build()
        .expect("valid settings");
    homer.api("peer", |ctx: Context, _: Value| async move {
        Ok::<_, ApiError>(json!(ctx.peer_addr().to_string()))
    });
    let tcp = homer
        .listen_tcp("127.0.0.1:0", homer::json_lines())
        .await
        .unwrap();
    let http = homer.listen_http("127.0.0.1:0").await.unwrap();
    (homer, tcp, http, refusals)
}

/// A TCP connection from loopback address `from` (127.0.0.x).
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    testkit::connect_from(from, to).await.unwrap()
}

/// Send `first` (a PROXY header, or nothing) and a `peer` call; the reply
/// line, or `None` if the server closed the connection.
async fn peer_call(mut s: TcpStream, first: &[u8]) -> Option<Value> {
    let _ = s.write_all(first).await;
    let _ = s.write_all(b"{\"id\":1,\"api\":\"peer\"}\n").await;
    let mut line = String::new();
    let n = within(BufReader::new(s).read_line(&mut line))
        .await
        .unwrap_or(0);
    (n > 0).then(|| serde_json::from_str(&line).unwrap())
}

/// Whether the server closes `s` without a byte.
async fn closed_at_once(mut s: TcpStream) -> bool {
    let _ = s.write_all(b"{\"id\":1,\"api\":\"peer\"}\n").await;
    let mut buf = [0u8; 64];
    within(s.read(&mut buf)).await.unwrap_or(0) == 0
}

#[tokio::test]
async fn one_address_holds_at_most_its_limit_of_sockets() {
    let (_homer, tcp, http, refusals) = start(Homer::builder().max_connections_per_ip(2)).await;
    let a = connect_from("127.0.0.2", tcp).await;
    let b = connect_from("127.0.0.2", http).await; // every listener counts
    assert!(closed_at_once(connect_from("127.0.0.2", tcp).await).await);
    // Another address is served meanwhile.
    let other = peer_call(connect_from("127.0.0.3", tcp).await, b"")
        .await
        .unwrap();
    assert_eq!(
        other["content"].as_str().unwrap().split(':').next(),
        Some("127.0.0.3")
    );
    assert_eq!(
        *refusals.0.lock().unwrap(),
        [("127.0.0.2".parse().unwrap(), "per_ip_limit")]
    );
    // A closed socket gives its slot back.
    drop((a, b));
    let served = within(async {
        loop {
            if let Some(r) = peer_call(connect_from("127.0.0.2", tcp).await, b"").await {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(served["status"], 200);
}

#[tokio::test]
async fn one_address_opens_at_most_its_rate_of_sockets() {
    let (_homer, tcp, _http, refusals) = start(Homer::builder().connection_rate_per_ip(1, 3)).await;
    for _ in 0..3 {
        let r = peer_call(connect_from("127.0.0.4", tcp).await, b"").await;
        assert_eq!(r.unwrap()["status"], 200);
    }
    assert!(
        closed_at_once(connect_from("127.0.0.4", tcp).await).await,
        "the burst is spent though the sockets closed"
    );
    assert!(
        peer_call(connect_from("127.0.0.5", tcp).await, b"")
            .await
            .is_some()
    );
    assert_eq!(
        refusals.0.lock().unwrap().as_slice(),
        [("127.0.0.4".parse().unwrap(), "per_ip_rate")]
    );
}

#[tokio::test]
async fn a_trusted_proxy_names_the_client_and_the_client_is_limited() {
    let proxy: IpAddr = "127.0.0.6".parse().unwrap();
    let (_homer, tcp, _http, refusals) = start(
        Homer::builder()
            .trusted_proxies([proxy])
            .proxy_protocol(true)
            .max_connections_per_ip(1),
    )
    .await;
    let v1 = |client: &str| format!("PROXY TCP4 {client} 127.0.0.1 50000 7000\r\n").into_bytes();

    // The proxy's many connections are not limited by its own address; the
    // clients they carry are, by the address the header names.
    let mut held = connect_from("127.0.0.6", tcp).await;
    held.write_all(&v1("203.0.113.9")).await.unwrap();
    let reply = peer_call(connect_from("127.0.0.6", tcp).await, &v1("203.0.113.10")).await;
    assert_eq!(reply.unwrap()["content"], "203.0.113.10:50000");
    // Give the held connection's header time to be read and admitted.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let again = peer_call(connect_from("127.0.0.6", tcp).await, &v1("203.0.113.9")).await;
    assert!(again.is_none(), "a second socket of 203.0.113.9 is refused");

    // A v2 (binary) header works the same.
    let v2 = ppp_v2("198.51.100.1:40000");
    let reply = peer_call(connect_from("127.0.0.6", tcp).await, &v2).await;
    assert_eq!(reply.unwrap()["content"], "198.51.100.1:40000");

    // From the proxy, no header (or garbage) closes the connection.
    assert!(closed_at_once(connect_from("127.0.0.6", tcp).await).await);
    // From anyone else, a PROXY line is not believed: it is just a bad line.
    let mut s = connect_from("127.0.0.7", tcp).await;
    s.write_all(&v1("203.0.113.50")).await.unwrap();
    let mut lines = BufReader::new(s);
    let mut line = String::new();
    within(lines.read_line(&mut line)).await.unwrap();
    assert!(line.contains("\"status\":400"), "{line}");
    let refused: Vec<_> = refusals
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|(ip, why)| (ip.to_string(), *why))
        .collect();
    assert_eq!(
        refused,
        [
            ("203.0.113.9".to_owned(), "per_ip_limit"),
            ("127.0.0.6".to_owned(), "proxy_header"),
        ]
    );
    drop(held);
}

/// A PROXY protocol v2 header for a TCP client at `client`.
fn ppp_v2(client: &str) -> Vec<u8> {
    let client: SocketAddr = client.parse().unwrap();
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21); // version 2, PROXY
    h.push(0x11); // TCP over IPv4
    h.extend_from_slice(&12u16.to_be_bytes());
    let IpAddr::V4(ip) = client.ip() else {
        unreachable!()
    };
    h.extend_from_slice(&ip.octets());
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&client.port().to_be_bytes());
    h.extend_from_slice(&7000u16.to_be_bytes());
    h
}

/// One raw HTTP/1.1 request from loopback address `from`; the status and
/// the body.
async fn http_from(from: &str, to: SocketAddr, request: &str) -> (u16, String) {
    let mut s = connect_from(from, to).await;
    s.write_all(request.as_bytes()).await.unwrap();
    let mut text = String::new();
    within(s.read_to_string(&mut text)).await.unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

#[tokio::test]
async fn behind_a_trusted_http_proxy_the_forwarded_client_is_the_peer_and_is_limited() {
    let proxy: IpAddr = "127.0.0.8".parse().unwrap();
    let (_homer, _tcp, http, refusals) = start(
        Homer::builder()
            .trusted_proxies([proxy])
            .max_connections_per_ip(1),
    )
    .await;
    let call = |xff: &str| {
        format!(
            "POST /api/peer HTTP/1.1\r\nhost: x\r\nx-forwarded-for: {xff}\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
        )
    };
    // The right-most address that is not a trusted proxy: what the client
    // wrote on the left is not believed.
    let (status, body) =
        http_from("127.0.0.8", http, &call("6.6.6.6, 203.0.113.20, 127.0.0.8")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"203.0.113.20:0\""), "{body}");
    // From anyone else the header is ignored.
    let (_, body) = http_from("127.0.0.9", http, &call("203.0.113.20")).await;
    assert!(body.contains("\"127.0.0.9:"), "{body}");

    // WebSocket upgrades through the proxy hold the client's slot.
    let upgrade = |client: &str| {
        format!(
            "GET /ws HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nx-forwarded-for: {client}\r\n\r\n"
        )
    };
    let mut first = connect_from("127.0.0.8", http).await;
    first
        .write_all(upgrade("203.0.113.30").as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = within(first.read(&mut buf)).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    let mut second = connect_from("127.0.0.8", http).await;
    second
        .write_all(upgrade("203.0.113.30").as_bytes())
        .await
        .unwrap();
    let n = within(second.read(&mut buf)).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 429"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert_eq!(
        refusals.0.lock().unwrap().as_slice(),
        [("203.0.113.30".parse().unwrap(), "per_ip_limit")]
    );
    drop(first);
}
