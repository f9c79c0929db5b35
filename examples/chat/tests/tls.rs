//! chat-server with `--tls-cert` and `--tls-key`: a real rustls client that
//! checks the chain against the test CA registers, logs in and sends over
//! the native TCP protocol, and reads the web client over https; plain text
//! gets nothing.
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use support::Server;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

fn data(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../homer/tests/data/tls")
        .join(name);
    p.to_str().unwrap().to_owned()
}

fn connector() -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(data("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    #[expect(deprecated, reason = "the provider homer's server uses")]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

async fn tls(addr: std::net::SocketAddr) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(Duration::from_secs(10), connector().connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("the chain verifies against the test CA")
}

#[tokio::test]
async fn the_native_protocol_and_the_web_client_over_tls() {
    let server = Server::start_with(&[
        "--tls-cert",
        &data("chain.pem"),
        "--tls-key",
        &data("server.key"),
    ])
    .await;

    let mut native = BufReader::new(tls(server.tcp).await);
    let mut call = async |id: u64, api: &str, params: Value| -> Value {
        let line = json!({"id": id, "api": api, "params": params}).to_string() + "\n";
        native.get_mut().write_all(line.as_bytes()).await.unwrap();
        loop {
            let mut reply = String::new();
            native.read_line(&mut reply).await.unwrap();
            let v: Value = serde_json::from_str(&reply).unwrap();
            if v["id"] == json!(id) {
                return v;
            }
        }
    };
    let creds = json!({"name": "tess", "password": "pw-tess"});
    assert_eq!(call(1, "user.register", creds.clone()).await["status"], 200);
    let login = call(2, "user.login", creds).await;
    assert_eq!(login["status"], 200, "{login}");
    let sent = call(
        3,
        "chat.send",
        json!({"to": {"group": "lobby"}, "text": "over tls"}),
    )
    .await;
    assert_eq!(sent["status"], 200, "{sent}");

    let mut web = tls(server.http).await;
    web.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut page = String::new();
    web.read_to_string(&mut page).await.unwrap();
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("<html"), "the web client over https");

    let mut plain = TcpStream::connect(server.http).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(15), plain.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert!(
        !String::from_utf8_lossy(&buf[..n]).contains("200"),
        "no plain-text answer"
    );
}
