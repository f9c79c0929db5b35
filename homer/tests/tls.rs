//! TLS on homer's listeners, checked by a real rustls client that verifies
//! the certificate chain against the test CA (`tests/data/tls`): https,
//! wss, and TLS over a TCP protocol; a client that trusts another CA, a
//! plain-text client and bad key files are refused.
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use homer::{ApiError, Context, Homer, Tls, TlsError};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/tls")
        .join(name)
}

fn tls() -> Tls {
    Tls::from_pem_files(data("chain.pem"), data("server.key")).unwrap()
}

async fn server() -> (Homer, SocketAddr, SocketAddr) {
    let homer = Homer::builder().build().unwrap();
    homer.api("echo", |_ctx: Context, p: Value| async move {
        Ok::<_, ApiError>(p)
    });
    let https = homer.listen_https("127.0.0.1:0", tls()).await.unwrap();
    let tcp = homer
        .listen_tcp_tls("127.0.0.1:0", homer::json_lines(), tls())
        .await
        .unwrap();
    (homer, https, tcp)
}

/// A client that trusts only the CA in `ca`.
fn connector(ca: &str) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(data(ca)).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    #[expect(deprecated, reason = "the same provider as the server's")]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

async fn handshake(ca: &str, addr: SocketAddr) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(Duration::from_secs(10), connector(ca).connect(name, tcp))
        .await
        .expect("the handshake ends in time")
}

#[tokio::test]
async fn https_wss_and_tls_tcp_serve_a_client_that_checks_the_chain() {
    let (_homer, https, tcp) = server().await;

    // The chain the server presents is the one in the PEM file, and the
    // client accepted it against the CA.
    let mut s = handshake("ca.pem", https).await.unwrap();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(data("chain.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let presented = s.get_ref().1.peer_certificates().unwrap().to_vec();
    assert_eq!(presented, chain, "leaf then CA");
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));

    let body = r#"{"over":"https"}"#;
    let req = format!(
        "POST /api/echo HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains(r#""content":{"over":"https"}"#), "{text}");

    // wss: a WebSocket over the same TLS listener.
    let s = handshake("ca.pem", https).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async("wss://localhost/ws", s)
        .await
        .unwrap();
    ws.send(Message::text(r#"{"id":1,"api":"echo","params":"wss"}"#))
        .await
        .unwrap();
    let reply = loop {
        if let Some(Ok(Message::Text(t))) = ws.next().await {
            break serde_json::from_str::<Value>(&t).unwrap();
        }
    };
    assert_eq!(reply["content"], "wss");

    // A TCP protocol over TLS.
    let s = handshake("ca.pem", tcp).await.unwrap();
    let mut lines = BufReader::new(s);
    lines
        .get_mut()
        .write_all(b"{\"id\":7,\"api\":\"echo\",\"params\":[1,2]}\n")
        .await
        .unwrap();
    let mut line = String::new();
    lines.read_line(&mut line).await.unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&line).unwrap(),
        json!({"id": 7, "status": 200, "content": [1, 2]})
    );
}

#[tokio::test]
async fn untrusted_and_plain_clients_are_refused() {
    let (_homer, https, tcp) = server().await;
    for addr in [https, tcp] {
        let err = handshake("other-ca.pem", addr).await.unwrap_err();
        assert!(err.to_string().contains("UnknownIssuer"), "{err}");

        // Plain text on a TLS port: no answer but a closed connection.
        let mut plain = TcpStream::connect(addr).await.unwrap();
        let _ = plain
            .write_all(b"{\"id\":1,\"api\":\"echo\"}\n\n\n\n\n\n\n\n")
            .await;
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(10), plain.read(&mut buf))
            .await
            .expect("closed in time")
            .unwrap_or(0);
        assert!(
            !String::from_utf8_lossy(&buf[..n]).contains("status"),
            "no reply in plain text"
        );
    }
}

#[test]
fn bad_key_files_are_clear_errors_without_the_key() {
    let missing = Tls::from_pem_files(data("chain.pem"), data("nope.key")).unwrap_err();
    assert!(
        matches!(&missing, TlsError::Pem { what: "private key", path, .. } if path.ends_with("nope.key")),
        "{missing}"
    );
    // The CA's certificate with the server's key: they do not match.
    let mismatch = Tls::from_pem_files(data("ca.pem"), data("server.key")).unwrap_err();
    assert!(matches!(mismatch, TlsError::Config(_)), "{mismatch}");
    // A certificate file given as the key.
    let not_a_key = Tls::from_pem_files(data("chain.pem"), data("ca.pem")).unwrap_err();
    assert!(matches!(not_a_key, TlsError::Pem { .. }), "{not_a_key}");
    let key = std::fs::read_to_string(data("server.key")).unwrap();
    let secret = key.lines().nth(1).unwrap();
    for shown in [
        format!("{mismatch}"),
        format!("{mismatch:?}"),
        format!("{:?}", tls()),
    ] {
        assert!(!shown.contains(secret), "{shown}");
    }
}
