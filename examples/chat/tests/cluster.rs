//! The cluster shape end to end: three real `chat-server` nodes sharing one
//! PostgreSQL schema and one RabbitMQ namespace, behind a real nginx running
//! the shipped `deploy/nginx.conf`. Needs nginx (`sudo apt-get install -y
//! nginx libnginx-mod-stream`), RabbitMQ and PostgreSQL; fails, never skips,
//! without them.
#![expect(
    clippy::print_stderr,
    reason = "progress and the servers' logs go to stderr, where the runner shows them"
)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::cluster::{
    Cluster, Node, RabbitGuard, Traffic, User, assert_delivered, authority, clean_up_namespace,
    get, lists, metric, native, rabbitmqctl, readyz, through, users,
};
use testkit::{FaultProxy, amqp_url, lock};

/// The liveness bound documented in docs/cluster.md (STALE + BEAT), plus slack.
const LIVENESS_BOUND: Duration = Duration::from_secs(8 + 3);

/// The tests of this file share RabbitMQ's uptime: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_behind_nginx_survive_a_sigkill() {
    let _serial = SERIAL.lock().await;
    let mut c = Cluster::start().await;

    // HTTP + SSE (hashed on the token, unbuffered) and WebSocket (upgrade)
    // through nginx, across whatever nodes they land on.
    // nginx may still be starting its workers: retry the upgrade a few times.
    let mut ws = {
        let mut attempt = 0;
        loop {
            let url = format!("ws://{}/ws", c.http);
            match tokio_tungstenite::connect_async(url).await {
                Ok(_) => break support::Client::ws(c.http).await,
                Err(e) if attempt < 20 => {
                    attempt += 1;
                    eprintln!("websocket through nginx not ready ({e}); retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("websocket through nginx: {e}"),
            }
        }
    };
    ws.ok(
        "user.register",
        json!({"name": "wsu", "password": "pw-wsu-secret"}),
    )
    .await;
    ws.ok(
        "user.login",
        json!({"name": "wsu", "password": "pw-wsu-secret"}),
    )
    .await;
    let (s, _, _) = support::http_call(
        c.http,
        "user.register",
        json!({"name": "httpu", "password": "pw-httpu-secret"}),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, login, _) = support::http_call(
        c.http,
        "user.login",
        json!({"name": "httpu", "password": "pw-httpu-secret"}),
        None,
    )
    .await;
    assert_eq!(s, 200, "{login}");
    let token = login["content"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let mut sse = support::Sse::open(c.http, &token).await;
    ws.ok(
        "chat.send",
        json!({"to": {"user": "httpu"}, "text": "to http"}),
    )
    .await;
    assert_eq!(sse.push("message").await["text"], "to http");
    let (s, r, _) = support::http_call(
        c.http,
        "chat.send",
        json!({"to": {"user": "wsu"}, "text": "to ws"}),
        Some(&token),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    ws.message("to ws").await;
    drop((ws, sse));

    // Presence across nodes: `watch` on node 1 follows `zed` on node 3.
    let mut watch = User::login(c.nodes[0].tcp, "watch").await;
    let zed = User::login(c.nodes[2].tcp, "zed").await;
    watch.ok("friend.add", json!({"name": "zed"})).await;
    drop(zed);
    let mut zed = User::login(c.nodes[2].tcp, "zed").await;
    zed.ack().await;
    let deadline = Instant::now() + support::WAIT;
    while !lock(&watch.inbox)
        .presence
        .iter()
        .any(|p| p["user"] == "zed" && p["online"] == true)
    {
        assert!(
            Instant::now() < deadline,
            "no cross-node presence push for zed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let users = users(&c, "k").await;
    let online = watch.ok("user.online", json!({})).await;
    for n in ["zed", "k0", "k3", "k5", "watch"] {
        assert!(lists(&online, n), "{n} not in {online}");
    }

    let traffic = Traffic::start(users, c.tcp);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = traffic.sent();
    eprintln!("SIGKILL node3 after {before} messages");
    c.nodes[2].child.start_kill().expect("SIGKILL node3");
    let killed = Instant::now();
    let _ = c.nodes[2].child.wait().await;

    // zed's node is dead: zed leaves who-is-online and `watch` is told, within the bound.
    let mut gone = None;
    while gone.is_none() {
        let online = watch.ok("user.online", json!({})).await;
        if !lists(&online, "zed") {
            gone = Some(killed.elapsed());
        } else {
            assert!(
                killed.elapsed() < LIVENESS_BOUND,
                "zed still online {:?} after node3 died",
                killed.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    while !lock(&watch.inbox)
        .presence
        .iter()
        .any(|p| p["user"] == "zed" && p["online"] == false)
    {
        assert!(
            killed.elapsed() < LIVENESS_BOUND,
            "no offline presence for zed {:?} after node3 died",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "zed shown offline {gone:?} after SIGKILL; presence pushed by {:?}",
        killed.elapsed()
    );
    drop(zed);

    let mut f = traffic.finish().await;
    assert!(
        lock(&f.sent).len() > before,
        "traffic went on after the kill"
    );
    assert!(
        f.reconnects > 0,
        "some clients were on node3 and reconnected"
    );
    assert_delivered(&mut f.users, &f.sent).await;
    c.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rabbitmq_restart_loses_nothing_and_keeps_connections() {
    let _serial = SERIAL.lock().await;
    let c = Cluster::start().await;
    let traffic = Traffic::start(users(&c, "r").await, c.tcp);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    {
        let _guard = RabbitGuard;
        eprintln!("rabbitmqctl stop_app after {} messages", traffic.sent());
        rabbitmqctl("stop_app").await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        rabbitmqctl("start_app").await;
        eprintln!("rabbitmqctl start_app");
    }
    let mut f = traffic.finish().await;
    assert_eq!(f.reconnects, 0, "connections survive a RabbitMQ restart");
    // Messages are stored in the conversation logs (PostgreSQL): sends go
    // on while RabbitMQ is away, and what its live fan-out missed is read
    // from the logs when it is back.
    assert_eq!(
        f.unavailable, 0,
        "sends during a RabbitMQ outage are stored and answered, not refused"
    );
    assert_delivered(&mut f.users, &f.sent).await;
    c.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_outage_answers_503_and_recovers_by_itself() {
    let _serial = SERIAL.lock().await;
    let c = Cluster::start().await;
    let mut watch = User::login(c.nodes[0].tcp, "pgwatch").await;
    let zed = User::login(c.nodes[2].tcp, "pgzed").await;
    watch.ok("friend.add", json!({"name": "pgzed"})).await;
    let traffic = Traffic::start(users(&c, "p").await, c.tcp);
    tokio::time::sleep(Duration::from_millis(1000)).await;

    for n in &c.nodes {
        assert_eq!(readyz(n.http).await.0, 200, "ready before the outage");
    }
    // Metrics are scraped per node; the balanced address refuses them.
    assert_eq!(get(c.http, "/metrics").await.0, 404);

    // Longer than the liveness bound's STALE (6 s): every node's heartbeat
    // stops, and none may take the others for dead when the store is back.
    eprintln!("PostgreSQL cut after {} messages", traffic.sent());
    c.postgres.cut();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = watch.call("user.online", json!({})).await;
    assert_eq!(
        during.as_ref().map(|r| r["status"].clone()),
        Some(json!(503)),
        "a call that needs the store answers 503 while it is away: {during:?}"
    );
    for n in &c.nodes {
        let (status, body) = readyz(n.http).await;
        assert_eq!(status, 503, "not ready while the store is away: {body}");
        assert_eq!(body["store"], "unavailable", "{body}");
        assert_eq!(body["broker"], "ok", "{body}");
        let (status, _) = get(n.http, "/healthz").await;
        assert_eq!(status, 200, "alive while the store is away");
        assert_eq!(
            metric(n.http, r#"chat_service_up{service="store"}"#).await,
            Some(0.0)
        );
    }
    let refused = metric(
        c.nodes[0].http,
        r#"chat_unavailable_total{service="store"}"#,
    )
    .await;
    assert!(
        refused.is_some_and(|n| n >= 1.0),
        "the 503 of user.online is counted: {refused:?}"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    c.postgres.restore();
    eprintln!("PostgreSQL restored");
    for n in &c.nodes {
        let deadline = Instant::now() + Duration::from_secs(10);
        while readyz(n.http).await.0 != 200 {
            assert!(
                Instant::now() < deadline,
                "ready again within 10 s of the store's return"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    let mut f = traffic.finish().await;
    assert!(
        f.unavailable > 0,
        "sends during the outage are answered 503"
    );
    assert_eq!(f.reconnects, 0, "connections survive a PostgreSQL outage");
    assert_delivered(&mut f.users, &f.sent).await;

    // Nobody was taken for dead: pgzed stayed online throughout.
    let online = watch.ok("user.online", json!({})).await;
    assert!(
        lists(&online, "pgzed"),
        "pgzed online after the outage: {online}"
    );
    let offline: Vec<Value> = lock(&watch.inbox)
        .presence
        .iter()
        .filter(|p| p["user"] == "pgzed" && p["online"] == false)
        .cloned()
        .collect();
    assert!(
        offline.is_empty(),
        "a store outage made a live user look offline: {offline:?}"
    );
    drop(zed);
    c.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_rabbitmq_connection() {
    // One node reaching RabbitMQ through a proxy this test cuts: the shared
    // RabbitMQ itself stays up for everyone else.
    let _serial = SERIAL.lock().await;
    let amqp = amqp_url();
    let target = match &amqp[authority(&amqp)] {
        hp if hp.contains(':') => hp.to_owned(),
        host => format!("{host}:5672"),
    };
    let proxy = FaultProxy::start(&target)
        .await
        .expect("start the RabbitMQ proxy");
    let store = nopi::testing::TempStore::postgres();
    let ns = format!("ct{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let node = Node::start_via("ready1", store.url(), &through(&amqp, proxy.addr()), &ns).await;
    let (status, body) = readyz(node.http).await;
    assert_eq!(status, 200, "{body}");

    proxy.cut();
    let deadline = Instant::now() + Duration::from_secs(5);
    let body = loop {
        let (status, body) = readyz(node.http).await;
        if status == 503 {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "not ready within 5 s of losing RabbitMQ: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(body["broker"], "unavailable", "{body}");
    assert_eq!(body["store"], "ok", "{body}");
    assert_eq!(get(node.http, "/healthz").await.0, 200);
    assert_eq!(
        metric(node.http, r#"chat_service_up{service="broker"}"#).await,
        Some(0.0)
    );

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(10);
    while readyz(node.http).await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "ready again within 10 s of RabbitMQ's return"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        metric(node.http, r#"chat_service_up{service="broker"}"#).await,
        Some(1.0)
    );
    drop(node);
    clean_up_namespace(ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_delivery_history_idempotency_and_redelivery_across_nodes() {
    let _serial = SERIAL.lock().await;
    let c = Cluster::start().await;
    let [n1, n2, n3] = [c.nodes[0].tcp, c.nodes[1].tcp, c.nodes[2].tcp];

    // bob exists but is offline; alice (node 1) writes to him.
    drop(native(n2, "bob", None).await);
    let mut alice = native(n1, "alice", None).await;
    let send = json!({"to": {"user": "bob"}, "text": "while you were away", "client_id": "c-1"});
    let first = alice.ok("chat.send", send.clone()).await;
    // alice's reply was "lost": she retries from node 3 with the same client_id.
    drop(alice);
    let mut alice = native(n3, "alice", None).await;
    let again = alice.ok("chat.send", send).await;
    assert_eq!(first, again, "a retry on another node gets the first reply");

    // bob logs in on node 3: the offline message, once; he does not ack.
    let mut bob = native(n3, "bob", None).await;
    let got = bob.message("while you were away").await;
    assert_eq!(got["id"], first["id"]);
    bob.no_push("message", Duration::from_millis(500)).await;
    let token = bob.token.clone().expect("token");
    drop(bob);
    // ... resumes on node 1: it comes back, and he acks it.
    let mut bob = support::Client::tcp(n1).await;
    bob.ok("user.resume", json!({"token": token})).await;
    let again = bob.message("while you were away").await;
    assert_eq!(again["id"], first["id"], "redelivered with the same id");
    bob.ok("chat.ack", json!({"ids": [again["id"]]})).await;
    drop(bob);
    // ... and on node 2 it is gone.
    let mut bob = support::Client::tcp(n2).await;
    bob.ok("user.resume", json!({"token": token})).await;
    bob.no_push("message", Duration::from_millis(800)).await;

    // Group history written through node 3, read by a late joiner on node 2.
    alice.ok("group.create", json!({"name": "hist"})).await;
    for text in ["h1", "h2", "h3"] {
        alice
            .ok("chat.send", json!({"to": {"group": "hist"}, "text": text}))
            .await;
    }
    let mut carol = native(n2, "carol", None).await;
    carol.ok("group.join", json!({"name": "hist"})).await;
    assert_eq!(
        carol.history_texts("hist").await,
        ["h1", "h2", "h3"],
        "history across nodes"
    );
    // Live group messages now reach carol on node 2 and bob's group-less
    // inbox does not get them.
    alice
        .ok("chat.send", json!({"to": {"group": "hist"}, "text": "h4"}))
        .await;
    carol.message("h4").await;
    bob.no_push("message", Duration::from_millis(300)).await;
    c.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_nginx_the_stamped_ip_is_the_clients() {
    let _serial = SERIAL.lock().await;
    let c = Cluster::start().await;
    // nginx reaches the nodes from 127.0.0.2; the clients connect to it from
    // 127.0.0.3 (TCP, with a PROXY header on the way in) and 127.0.0.1.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.3:0".parse().unwrap()).unwrap();
    let stream = socket.connect(c.tcp).await.unwrap();
    let mut ann = support::Client::over_tcp(stream);
    ann.ok(
        "user.register",
        json!({"name": "ann", "password": "pw-ann"}),
    )
    .await;
    ann.ok("user.login", json!({"name": "ann", "password": "pw-ann"}))
        .await;
    let mut ben = native(c.nodes[1].tcp, "ben", None).await;
    ann.ok(
        "chat.send",
        json!({"to": {"user": "ben"}, "text": "from .3"}),
    )
    .await;
    assert_eq!(
        ben.message("from .3").await["ip"],
        "127.0.0.3",
        "through the PROXY header"
    );

    // Over WebSocket through nginx's HTTP side: X-Forwarded-For.
    let mut cid = support::Client::ws(c.http).await;
    cid.ok(
        "user.register",
        json!({"name": "cid", "password": "pw-cid"}),
    )
    .await;
    cid.ok("user.login", json!({"name": "cid", "password": "pw-cid"}))
        .await;
    cid.ok(
        "chat.send",
        json!({"to": {"user": "ben"}, "text": "from ws"}),
    )
    .await;
    assert_eq!(
        ben.message("from ws").await["ip"],
        "127.0.0.1",
        "through X-Forwarded-For"
    );
    c.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_clients_through_nginx_and_the_newer_login_on_another_node() {
    let _serial = SERIAL.lock().await;
    let c = Cluster::start().await;
    // Native users directly on node 1 and node 3; legacy clients through
    // nginx's stream ports, wherever it puts them.
    let mut ann = native(c.nodes[0].tcp, "ann", Some(701)).await;
    let mut cid = native(c.nodes[2].tcp, "cid", Some(703)).await;

    let mut mia = support::legacy::MsgidClient::connect(c.msgid_json).await;
    let m = mia.register("mia", "pw-mia").await;
    assert_eq!(mia.login(m, "pw-mia").await["errno"], 0);
    let mut tom = support::legacy::TypeDataClient::connect(c.type_data).await;
    assert_eq!(
        tom.register(600, "tom", "pw-tom").await["code"],
        200,
        "type-data registration through nginx"
    );
    assert_eq!(tom.login(600, "pw-tom").await["code"], 200);

    for (to, text) in [(701, "mia to ann"), (703, "mia to cid")] {
        mia.send(json!({"msgid": 6, "id": m, "name": "mia", "toid": to, "msg": text, "time": "t"}))
            .await;
    }
    ann.message("mia to ann").await;
    cid.message("mia to cid").await;
    for u in [&mut ann, &mut cid] {
        u.ok(
            "chat.send",
            json!({"to": {"user": "mia"}, "text": "native to mia"}),
        )
        .await;
    }
    for _ in 0..2 {
        mia.chat(6, "native to mia").await;
    }
    tom.send(
        "SmsMes",
        json!({"content": "tom to all", "userId": 600, "userPwd": "", "userName": "tom", "userStatus": 0, "sex": ""}),
    )
    .await;
    ann.message("tom to all").await;
    cid.message("tom to all").await;
    mia.chat(10, "tom to all").await;
    cid.ok(
        "chat.send",
        json!({"to": {"user": "tom"}, "text": "cid to tom"}),
    )
    .await;
    tom.sms("(private) cid to tom").await;

    // One session per user across the cluster: ann logs in again on node 2;
    // her session on node 1 is replaced and closed, and the new one gets her
    // messages.
    let mut ann2 = support::Client::tcp(c.nodes[1].tcp).await;
    ann2.ok(
        "user.login",
        json!({"name": "ann", "password": "pw-ann-secret"}),
    )
    .await;
    assert_eq!(ann.push("session").await, json!({"event": "replaced"}));
    assert!(
        ann.closed().await,
        "the older session's connection is closed"
    );
    cid.ok(
        "chat.send",
        json!({"to": {"user": "ann"}, "text": "to the newer ann"}),
    )
    .await;
    ann2.message("to the newer ann").await;
    let online = cid.ok("user.online", json!({})).await;
    assert!(
        lists(&online, "ann"),
        "ann is still online, on node 2: {online}"
    );
    // A legacy login on another node replaces a native one the same way.
    let mut mia2 = support::legacy::MsgidClient::connect(c.nodes[2].msgid_json).await;
    assert_eq!(mia2.login(m, "pw-mia").await["errno"], 0);
    assert!(mia.closed().await, "the older legacy connection is closed");
    ann2.ok(
        "chat.send",
        json!({"to": {"user": "mia"}, "text": "to the newer mia"}),
    )
    .await;
    mia2.chat(6, "to the newer mia").await;

    // Another device of ann on node 3 stays live beside the one on node 2:
    // both get her messages, and reading on one clears the other's badge.
    let mut phone = support::Client::tcp(c.nodes[2].tcp).await;
    phone
        .ok(
            "user.login",
            json!({"name": "ann", "password": "pw-ann-secret", "device": "phone"}),
        )
        .await;
    let sent = cid
        .ok(
            "chat.send",
            json!({"to": {"user": "ann"}, "text": "to both of ann's devices"}),
        )
        .await;
    ann2.message("to both of ann's devices").await;
    phone.message("to both of ann's devices").await;
    phone
        .ok(
            "chat.read",
            json!({"to": {"user": "cid"}, "seq": sent["seq"]}),
        )
        .await;
    let read = ann2.push("read").await;
    assert_eq!(read["unread"], 0, "{read}");
    assert_eq!(read["to"], json!({"user": "cid"}));
    c.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thrift_clients_through_nginx_with_native_users_on_other_nodes() {
    let _serial = SERIAL.lock().await;
    let c = Cluster::start().await;
    let mut ann = native(c.nodes[0].tcp, "ann", None).await;
    // Through nginx's Thrift port, from 127.0.0.4: the PROXY header names it.
    let mut gus = support::legacy::ThriftClient::connect_from("127.0.0.4", c.thrift).await;
    let pw = json!({"password": "pw-gus"});
    assert_eq!(
        gus.call("regist", "gus", pw.clone()).await,
        r#"{"status":200,"content":"注册成功！"}"#
    );
    assert_eq!(
        gus.call("login", "gus", pw).await,
        r#"{"status":200,"content":"登录成功！"}"#
    );
    let msg = json!({"msg": "10.9.8.7:gus == 2026-01-01 00:00:00.00  ->  hi ann"});
    assert_eq!(
        gus.call("chat_default_group", "gus", msg).await,
        r#"{"status":200,"content":"消息发送成功"}"#
    );
    let m = ann.message("hi ann").await;
    assert_eq!((&m["from"], &m["ip"]), (&json!("gus"), &json!("127.0.0.4")));
    ann.ok(
        "chat.send",
        json!({"to": {"user": "gus"}, "text": "hi gus"}),
    )
    .await;
    // Its own lobby message first, then ann's.
    assert!(gus.poll("gus").await.starts_with("127.0.0.4:gus == "));
    let line = gus.poll("gus").await;
    assert!(
        line.starts_with("127.0.0.1:ann == ") && line.ends_with("  ->  hi gus"),
        "{line}"
    );
    c.clean_up().await;
}
