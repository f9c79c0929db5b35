#![no_main]

//! Any bytes on an HTTP connection to homer (request line, headers, bodies,
//! chunked encoding, a WebSocket upgrade followed by frames): homer's glue
//! around hyper and tungstenite (routing, `/api/<name>` calls, cookies,
//! `X-Forwarded-For`, the upgrade, WebSocket messages as calls) never
//! panics, and the connection ends once the client stops writing.

use std::sync::OnceLock;
use std::time::Duration;

use homer::testing::{TEST_PEER, connect_http};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Server {
    rt: tokio::runtime::Runtime,
    homer: homer::Homer,
}

fn server() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let homer = rt.block_on(async {
            let homer = homer::Homer::builder()
                .no_connection_rate_per_ip()
                .trusted_proxies(["127.0.0.1".parse().expect("ip")])
                .handshake_timeout(Duration::from_millis(200))
                .build()
                .expect("homer");
            homer.api("echo", |_ctx, p: serde_json::Value| async move {
                Ok::<_, homer::ApiError>(p)
            });
            homer.http_get("/healthz", |_| async { homer::HttpResponse::text(200, "ok") });
            homer
        });
        Server { rt, homer }
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let s = server();
    s.rt.block_on(async {
        let Ok(mut io) = connect_http(&s.homer, TEST_PEER) else {
            return;
        };
        let _ = io.write_all(data).await;
        let _ = io.shutdown().await;
        let mut sink = Vec::new();
        // Ends by itself: the client wrote everything and closed its side.
        let read = tokio::time::timeout(Duration::from_secs(5), io.read_to_end(&mut sink)).await;
        assert!(read.is_ok(), "the connection did not end after the client closed");
    });
});
