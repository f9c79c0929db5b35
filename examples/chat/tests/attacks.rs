//! The attacks a chat server on the open internet gets, at scale, against
//! the real `chat-server` with its default limits. Each test is a row of the
//! table in docs/security.md: the attack, what must happen, and (in the
//! assertion messages) what happened. Attackers and normal users come from
//! different loopback addresses (127.0.0.1 attacks, 127.0.0.2 and up are
//! everyone else). `cargo test -p chat --test attacks -- --nocapture`
//! prints what each test measured.
#![expect(
    clippy::print_stderr,
    reason = "each test prints what it measured, for the table in docs/security.md"
)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Client, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ATTACKER: &str = "127.0.0.1";

use testkit::connect_from;

async fn client_from(ip: &str, to: SocketAddr) -> Client {
    Client::over_tcp(connect_from(ip, to).await.expect("connect"))
}

fn creds(name: &str, password: &str) -> serde_json::Value {
    json!({"name": name, "password": password})
}

/// A user of `ip`, registered and logged in (registration costs one of the
/// address's accounts per hour).
async fn user_from(server: &Server, ip: &str, name: &str) -> Client {
    let mut c = client_from(ip, server.tcp).await;
    c.ok("user.register", creds(name, &format!("pw-{name}")))
        .await;
    c.ok("user.login", creds(name, &format!("pw-{name}"))).await;
    c
}

/// Whether the server closes `s` within `wait` (a read returns end of
/// stream or an error), rather than keeping it open.
async fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(wait, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// Two users of other addresses still talk: a lobby message arrives.
async fn others_still_chat(server: &Server, text: &str) {
    let mut a = client_from("127.0.0.2", server.tcp).await;
    a.ok("user.login", creds("alice", "pw-alice")).await;
    let mut b = client_from("127.0.0.3", server.tcp).await;
    b.ok("user.login", creds("bob", "pw-bob")).await;
    a.ok("chat.send", json!({"to": {"group": "lobby"}, "text": text}))
        .await;
    let m = b.message(text).await;
    assert_eq!(m["from"], "alice");
}

/// A server with two normal users, alice (127.0.0.2) and bob (127.0.0.3).
async fn server_with_users(args: &[&str]) -> Server {
    let server = Server::start_with(args).await;
    drop(user_from(&server, "127.0.0.2", "alice").await);
    drop(user_from(&server, "127.0.0.3", "bob").await);
    server
}

#[tokio::test]
async fn a_registration_flood_from_one_address_is_cut_at_the_limit() {
    let server = Server::start().await;
    let mut flood = client_from(ATTACKER, server.tcp).await;
    let (mut made, mut refused) = (0, 0);
    for i in 0..40 {
        let reply = flood
            .call("user.register", creds(&format!("bot{i}"), "pw"))
            .await;
        match reply["status"].as_u64() {
            Some(200) => made += 1,
            Some(429) => {
                assert_eq!(reply["error"]["code"], "too_many_registrations");
                refused += 1;
            }
            _ => panic!("bot{i}: {reply}"),
        }
    }
    eprintln!("registration flood: {made} of 40 made, {refused} refused with 429");
    assert_eq!(
        (made, refused),
        (20, 20),
        "the default is 20 accounts an hour per address"
    );
    // Another address registers at once.
    let mut other = client_from("127.0.0.2", server.tcp).await;
    other.ok("user.register", creds("carol", "pw-carol")).await;
}

#[tokio::test]
async fn password_spraying_across_200_accounts_from_one_address_is_cut() {
    let server = server_with_users(&[]).await;
    let mut spray = client_from(ATTACKER, server.tcp).await;
    // One common password against 200 names, alice and bob among them. The
    // limit counts every failure of the address, whether the account
    // exists or not, so it says nothing about which names are real.
    let mut names: Vec<String> = (0..198).map(|i| format!("user{i}")).collect();
    names.extend(["alice".to_owned(), "bob".to_owned()]);
    let (mut tried, mut cut) = (0usize, 0usize);
    let started = Instant::now();
    for name in &names {
        let reply = spray.call("user.login", creds(name, "123456")).await;
        match reply["status"].as_u64() {
            Some(401) => tried += 1,
            Some(429) => {
                assert_eq!(reply["error"]["code"], "too_many_attempts", "{reply}");
                cut += 1;
            }
            _ => panic!("{name}: {reply}"),
        }
    }
    // The default: 30 failed logins a minute per address, as a bucket of 30
    // that refills one every 2 s while the spray runs.
    let took = started.elapsed();
    let allowed = 30 + (took.as_secs_f64() / 2.0).ceil() as usize;
    eprintln!("spraying: {tried} of 200 tried, {cut} cut with 429, in {took:?}");
    assert!(
        (30..=allowed).contains(&tried) && tried + cut == 200,
        "{tried} of 200 tried, {cut} cut with 429, in {took:?} (at most {allowed} may be tried)"
    );
    // Past the limit even a right password from that address waits...
    let e = spray
        .err("user.login", creds("alice", "pw-alice"), 429)
        .await;
    assert_eq!(e["code"], "too_many_attempts");
    // ...and alice, from her own address, logs in as usual.
    others_still_chat(&server, "sprayed, still here").await;
}

#[tokio::test]
async fn five_thousand_connections_from_one_address_hit_the_limit_and_others_chat() {
    let server = server_with_users(&[]).await;
    let start = Instant::now();
    let mut held = Vec::new();
    let mut refused_at_connect = 0;
    for _ in 0..5000 {
        match connect_from(ATTACKER, server.tcp).await {
            Ok(s) => held.push(s),
            Err(_) => refused_at_connect += 1,
        }
    }
    let opened = start.elapsed();
    // Every connection the server refused is closed at once; the others
    // stay open (they are idle, within the first-message timeout).
    let mut open = 0;
    for s in &mut held {
        if !closed_within(s, Duration::from_millis(2)).await {
            open += 1;
        }
    }
    // Give the last closes a moment, then count again those still open.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut still_open = 0;
    for s in &mut held {
        if !closed_within(s, Duration::from_millis(1)).await {
            still_open += 1;
        }
    }
    eprintln!(
        "connection flood: 5,000 opened in {opened:?}, {refused_at_connect} refused at connect, \
         {still_open} held open"
    );
    assert!(
        still_open <= 1000,
        "at most 1,000 connections per address (the default): {still_open} open \
         ({open} at first, {refused_at_connect} refused at connect, 5,000 opened in {opened:?})"
    );
    assert!(
        still_open >= 500,
        "a burst of 500 is admitted (the default): {still_open} open"
    );
    others_still_chat(&server, "flooded, still here").await;
    drop(held);
}

#[tokio::test]
async fn slowloris_with_500_connections_is_closed_by_the_header_timeout() {
    let server = server_with_users(&[]).await;
    let mut slow = Vec::new();
    for _ in 0..500 {
        slow.push(connect_from(ATTACKER, server.http).await.expect("connect"));
    }
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let started = Instant::now();
    let mut sent = 0;
    // One header byte per second on every connection, for up to 15 s (the
    // header timeout is 10 s).
    while started.elapsed() < Duration::from_secs(15) && !slow.is_empty() {
        let byte = request.get(sent).copied().unwrap_or(b'a');
        let mut alive = Vec::with_capacity(slow.len());
        for mut s in slow {
            if s.write_all(&[byte]).await.is_ok() && !closed_within(&mut s, Duration::ZERO).await {
                alive.push(s);
            }
        }
        slow = alive;
        sent += 1;
        // Meanwhile the server answers others.
        let (status, _, body) = support::http(server.http, "GET", "/healthz", &[], "").await;
        assert_eq!(status, 200, "{body}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let took = started.elapsed();
    eprintln!("slowloris: 500 connections, all closed after {took:?}");
    // Writes may still succeed into a closed socket's buffer once; make sure.
    let mut open = 0;
    for s in &mut slow {
        if !closed_within(s, Duration::from_millis(200)).await {
            open += 1;
        }
    }
    assert_eq!(
        open, 0,
        "every slow connection is closed by the 10 s header timeout ({open} of 500 open after {took:?})"
    );
    others_still_chat(&server, "slow-lorised, still here").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_flood_from_many_addresses_waits_for_hashing_and_logins_go_on() {
    let server = server_with_users(&[]).await;
    // 250 addresses register at once: more hashing than the one slot
    // registrations share (the default) can do in the 2 s a registration
    // waits for it.
    const FLOOD: usize = 250;
    let mut flood = Vec::new();
    for a in 0..FLOOD {
        let tcp = server.tcp;
        flood.push(tokio::spawn(async move {
            let ip = format!("127.0.{}.{}", 1 + a / 200, 1 + a % 200);
            let mut c = client_from(&ip, tcp).await;
            let reply = c
                .call("user.register", creds(&format!("farm{a}"), "pw"))
                .await;
            (
                reply["status"].as_u64().unwrap_or(0),
                reply["error"]["code"].as_str().unwrap_or("").to_owned(),
            )
        }));
    }
    // Meanwhile alice logs in, from her own address.
    let mut alice = client_from("127.0.0.2", server.tcp).await;
    let login = alice.call("user.login", creds("alice", "pw-alice")).await;
    let (mut made, mut busy) = (0, 0);
    for f in flood {
        let (status, code) = f.await.expect("a flood task");
        match (status, code.as_str()) {
            (200, _) => made += 1,
            (429, "busy") => busy += 1,
            other => panic!("a registration answered {other:?}"),
        }
    }
    eprintln!("hashing cap: {made} of {FLOOD} registrations made, {busy} answered 429 busy");
    assert_eq!(
        login["status"], 200,
        "alice logs in during the flood: {login}"
    );
    assert!(
        busy > 0,
        "the hashing slot was the limit: {made} made, {busy} busy"
    );
    assert_eq!(made + busy, FLOOD);
}
