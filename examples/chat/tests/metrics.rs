//! `GET /metrics` after real traffic on the real server, checked value by
//! value (and by `promtool check metrics` when it is installed: scripts/test
//! makes sure it is and sets `PROMTOOL`); `/readyz` during graceful
//! shutdown.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Client, Server, WAIT};

/// The scraped text of `/metrics`, after checking the response's head.
async fn scrape(server: &Server) -> String {
    let (status, head, body) = support::http(server.http, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    body
}

/// The value of the sample `series` (name and labels exactly as encoded),
/// if the text has it.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        Some(value.parse().expect("a sample value is a number"))
    })
}

/// Assert each `(series, value)` of `expected` in `text`.
fn check(text: &str, expected: &[(&str, f64)]) {
    for (series, value) in expected {
        assert_eq!(sample(text, series), Some(*value), "{series} in:\n{text}");
    }
}

/// Scrape until `series` has `value` (within [`WAIT`]); the last scrape.
async fn wait_for(server: &Server, series: &str, value: f64) -> String {
    tokio::time::timeout(WAIT, async {
        loop {
            let text = scrape(server).await;
            if sample(&text, series) == Some(value) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{series} did not reach {value}"))
}

/// Run promtool's linter on `text`, when promtool is there.
#[expect(
    clippy::print_stderr,
    reason = "a skipped check says so on stderr, where the runner shows it"
)]
fn promtool_check(text: &str) {
    use std::io::Write;
    let promtool = match std::env::var("PROMTOOL") {
        Ok(p) => p,
        Err(_) => {
            let on_path = std::process::Command::new("promtool")
                .arg("--version")
                .output()
                .is_ok();
            if !on_path {
                eprintln!(
                    "promtool is not installed: `promtool check metrics` skipped (scripts/test installs it)"
                );
                return;
            }
            "promtool".to_owned()
        }
    };
    let mut child = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {promtool}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin piped")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool ran");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\non:\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn login(name: &str, password: &str) -> Value {
    json!({"name": name, "password": password})
}

#[tokio::test]
async fn metrics_count_connections_calls_messages_limits_and_failed_logins() {
    // A burst of 2 sends, refilled at 1 per second: the third send in a row
    // is refused.
    let server = Server::start_with(&["--send-rate", "1", "--send-burst", "2"]).await;
    let before = scrape(&server).await;
    check(
        &before,
        &[
            ("chat_messages_sent_total", 0.0),
            ("chat_messages_delivered_total", 0.0),
            ("chat_failed_logins_total", 0.0),
            ("chat_service_up{service=\"store\"}", 1.0),
            ("chat_service_up{service=\"broker\"}", 1.0),
            ("chat_shutting_down", 0.0),
        ],
    );

    let mut alice = server.user(Client::ws(server.http).await, "alice").await;
    let mut bob = server.user(Client::tcp(server.tcp).await, "bob").await;
    let mut delivered = Vec::new();
    for text in ["one", "two"] {
        alice
            .ok("chat.send", json!({"to": {"user": "bob"}, "text": text}))
            .await;
        delivered.push(bob.message(text).await["id"].clone());
    }
    let refused = alice
        .err(
            "chat.send",
            json!({"to": {"user": "bob"}, "text": "three"}),
            429,
        )
        .await;
    assert_eq!(refused["code"], "rate_limited");

    // Five wrong passwords, then the login backoff refuses the sixth try.
    let mut mallory = Client::tcp(server.tcp).await;
    for _ in 0..5 {
        let e = mallory
            .err("user.login", login("alice", "not-her-password"), 401)
            .await;
        assert_eq!(e["code"], "bad_credentials");
    }
    let e = mallory
        .err("user.login", login("alice", "not-her-password"), 429)
        .await;
    assert_eq!(e["code"], "too_many_attempts");
    mallory.err("no.such.api", json!({}), 404).await;
    // Connections of the legacy protocols count under their own names.
    let msgid = tokio::net::TcpStream::connect(server.msgid_json.expect("msgid-json listens"))
        .await
        .expect("connect msgid-json");
    let type_data = tokio::net::TcpStream::connect(server.type_data.expect("type-data listens"))
        .await
        .expect("connect type-data");
    wait_for(
        &server,
        r#"chat_connections{transport="tcp",protocol="msgid-json"}"#,
        1.0,
    )
    .await;
    wait_for(
        &server,
        r#"chat_connections{transport="tcp",protocol="type-data"}"#,
        1.0,
    )
    .await;
    mallory
        .err("guess.the.password.hunter2", json!({}), 404)
        .await;

    let text = scrape(&server).await;
    check(
        &text,
        &[
            (
                "chat_connections{transport=\"websocket\",protocol=\"websocket\"}",
                1.0,
            ),
            (
                "chat_connections{transport=\"tcp\",protocol=\"json-lines\"}",
                2.0,
            ),
            (
                "chat_calls_total{api=\"user.register\",status=\"200\"}",
                2.0,
            ),
            ("chat_calls_total{api=\"user.login\",status=\"200\"}", 2.0),
            ("chat_calls_total{api=\"user.login\",status=\"401\"}", 5.0),
            ("chat_calls_total{api=\"user.login\",status=\"429\"}", 1.0),
            ("chat_calls_total{api=\"chat.send\",status=\"200\"}", 2.0),
            ("chat_calls_total{api=\"chat.send\",status=\"429\"}", 1.0),
            // Names of no API are counted under one label, never as given.
            ("chat_calls_total{api=\"unknown\",status=\"404\"}", 2.0),
            ("chat_messages_sent_total", 2.0),
            ("chat_messages_delivered_total", 2.0),
            ("chat_delivery_latency_seconds_count", 2.0),
            ("chat_delivery_latency_seconds_bucket{le=\"+Inf\"}", 2.0),
            ("chat_rate_limited_total{limit=\"send\"}", 1.0),
            ("chat_rate_limited_total{limit=\"login\"}", 1.0),
            ("chat_rate_limited_total{limit=\"connection\"}", 0.0),
            ("chat_failed_logins_total", 5.0),
            ("chat_unavailable_total{service=\"store\"}", 0.0),
            ("chat_unavailable_total{service=\"broker\"}", 0.0),
            ("chat_service_up{service=\"store\"}", 1.0),
            ("chat_users_online", 2.0),
            // bob holds both messages unacked.
            ("chat_unacked_deliveries", 2.0),
            ("chat_outbound_queued", 0.0),
        ],
    );
    // The latency is a real measurement on loopback: well under 10 s.
    let sum = sample(&text, "chat_delivery_latency_seconds_sum").expect("latency sum");
    assert!((0.0..20.0).contains(&sum), "latency sum {sum}");
    // No secret and nothing a client chose reaches the metrics.
    for secret in [
        "pw-alice",
        "pw-bob",
        "not-her-password",
        "hunter2",
        "alice",
        "bob",
        bob.token.as_deref().expect("bob has a token"),
    ] {
        assert!(!text.contains(secret), "{secret:?} in:\n{text}");
    }

    // An ack settles the unacked deliveries; a closed connection leaves
    // the gauge.
    bob.ok("chat.ack", json!({ "ids": delivered })).await;
    drop(alice);
    drop((msgid, type_data));
    wait_for(
        &server,
        r#"chat_connections{transport="tcp",protocol="type-data"}"#,
        0.0,
    )
    .await;
    let closed = wait_for(
        &server,
        r#"chat_connections{transport="websocket",protocol="websocket"}"#,
        0.0,
    )
    .await;
    check(
        &closed,
        &[
            ("chat_users_online", 1.0),
            ("chat_unacked_deliveries", 0.0),
            (r#"chat_calls_total{api="chat.ack",status="200"}"#, 1.0),
        ],
    );
    promtool_check(&closed);
}

#[tokio::test]
async fn readyz_answers_503_once_graceful_shutdown_begins() {
    let mut server = Server::start_with(&["--shutdown-drain-ms", "3000"]).await;
    let (status, _, body) = support::http(server.http, "GET", "/readyz", &[], "").await;
    assert_eq!(status, 200, "{body}");
    let mut carol = server.user(Client::ws(server.http).await, "carol").await;

    server.signal("TERM");
    let (status, body) = tokio::time::timeout(WAIT, async {
        loop {
            let (status, _, body) = support::http(server.http, "GET", "/readyz", &[], "").await;
            if status != 200 {
                return (status, body);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("/readyz turns 503 after SIGTERM");
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"ready": false, "store": "ok", "broker": "ok", "shutting_down": true})
    );
    // While draining the node still serves: the process is healthy, open
    // connections keep working, and the metrics say why it is not ready.
    let (status, _, _) = support::http(server.http, "GET", "/healthz", &[], "").await;
    assert_eq!(status, 200);
    carol.ok("user.online", json!({})).await;
    check(&scrape(&server).await, &[("chat_shutting_down", 1.0)]);

    // Then it closes connections and exits cleanly.
    assert!(carol.closed().await, "the connection is closed at shutdown");
    let exit = server
        .exited(Duration::from_secs(15))
        .await
        .expect("the server exits after the drain");
    assert!(exit.success(), "{exit:?}");
}
