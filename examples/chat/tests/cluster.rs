//! The cluster shape end to end: three real `chat-server` nodes sharing one
//! PostgreSQL schema and one RabbitMQ namespace, behind a real nginx running
//! the shipped `deploy/nginx.conf`. Needs nginx (`sudo apt-get install -y
//! nginx libnginx-mod-stream`), RabbitMQ and PostgreSQL; fails, never skips,
//! without them.
// Test output: progress and the servers' logs go to stderr.
#![allow(clippy::print_stderr)]

mod support;

use support::process;
use testkit::{FaultProxy, amqp_url, free_port, lock};

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmq_core::Broker;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// The liveness bound documented in docs/cluster.md (STALE + BEAT), plus slack.
const LIVENESS_BOUND: Duration = Duration::from_secs(8 + 3);

/// The tests of this file share RabbitMQ's uptime: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn ensure_nginx() {
    let ok = std::process::Command::new("nginx")
        .arg("-v")
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the cluster tests need nginx. Install it: sudo apt-get install -y nginx libnginx-mod-stream"
    );
    assert!(
        std::path::Path::new("/usr/lib/nginx/modules/ngx_stream_module.so").exists(),
        "the cluster tests need nginx's stream module. Install it: sudo apt-get install -y libnginx-mod-stream"
    );
}

/// One chat-server node.
struct Node {
    child: Child,
    http: SocketAddr,
    tcp: SocketAddr,
    msgid_json: SocketAddr,
    type_data: SocketAddr,
}

impl Node {
    async fn start(id: &str, store: &str, ns: &str) -> Node {
        Self::start_via(id, store, &amqp_url(), ns).await
    }

    /// A node reaching RabbitMQ at `amqp`.
    async fn start_via(id: &str, store: &str, amqp: &str, ns: &str) -> Node {
        let mut cmd = process::command();
        cmd.args(["--node-id", id, "--store", store, "--amqp", amqp])
            .args(["--amqp-namespace", ns])
            .args(["--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0"])
            .args(["--msgid-json", "127.0.0.1:0", "--type-data", "127.0.0.1:0"])
            .args(["--send-rate", "1000", "--send-burst", "1000"])
            // nginx.conf connects from 127.0.0.2 with PROXY headers.
            .args(["--trusted-proxy", "127.0.0.2", "--proxy-protocol"])
            // Calls wait at most 2 s for a lost RabbitMQ, then answer 503.
            .args(["--broker-timeout-ms", "2000"])
            .args(["--log", "warn,chat=info,chat_server=info"]);
        let tag = id.to_owned();
        let (child, addrs) = process::start(cmd, move |line| eprintln!("[{tag}] {line}")).await;
        Node {
            child,
            http: addrs.http,
            tcp: addrs.tcp,
            msgid_json: addrs.msgid_json.expect("msgid-json address"),
            type_data: addrs.type_data.expect("type-data address"),
        }
    }
}

/// Three nodes behind nginx, reaching PostgreSQL through a proxy the test
/// can cut.
struct Cluster {
    nodes: Vec<Node>,
    _nginx: Child,
    _nginx_dir: tempfile::TempDir,
    http: SocketAddr,
    tcp: SocketAddr,
    msgid_json: SocketAddr,
    type_data: SocketAddr,
    postgres: FaultProxy,
    namespace: String,
    _store: nopi::testing::TempStore,
}

/// Whether a `user.online` reply lists `name`.
fn lists(online: &Value, name: &str) -> bool {
    online["users"]
        .as_array()
        .is_some_and(|a| a.iter().any(|u| u == name))
}

/// Where `host:port` is in a URL like `scheme://user:pass@host:port/path`.
fn authority(url: &str) -> std::ops::Range<usize> {
    let start = url
        .find('@')
        .map_or_else(|| url.find("://").map_or(0, |i| i + 3), |i| i + 1);
    let end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    start..end
}

/// `url` with its `host:port` replaced by `addr`.
fn through(url: &str, addr: SocketAddr) -> String {
    let at = authority(url);
    format!("{}{addr}{}", &url[..at.start], &url[at.end..])
}

impl Cluster {
    async fn start() -> Cluster {
        ensure_nginx();
        let store = nopi::testing::TempStore::postgres();
        let target = match &store.url()[authority(store.url())] {
            hp if hp.contains(':') => hp.to_owned(),
            host => format!("{host}:5432"),
        };
        let postgres = FaultProxy::start(&target)
            .await
            .expect("start the PostgreSQL proxy");
        let store_url = through(store.url(), postgres.addr());
        let ns = format!("ct{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let mut nodes = Vec::new();
        // The first node creates the schema's tables; the others follow.
        nodes.push(Node::start("node1", &store_url, &ns).await);
        let (b, c) = tokio::join!(
            Node::start("node2", &store_url, &ns),
            Node::start("node3", &store_url, &ns)
        );
        nodes.push(b);
        nodes.push(c);

        // The shipped config, pointed at these nodes and free ports.
        let mut conf =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx.conf"))
                .expect("read deploy/nginx.conf");
        for (i, n) in nodes.iter().enumerate() {
            let k = i as u16 + 1;
            for (port, addr) in [
                (8080 + k, n.http),
                (7000 + k, n.tcp),
                (6000 + k, n.msgid_json),
                (8890 + k, n.type_data),
            ] {
                let from = format!("server 127.0.0.1:{port} ");
                assert!(conf.contains(&from), "nginx.conf has no `{from}`");
                conf = conf.replace(&from, &format!("server {addr} "));
            }
        }
        let (http, tcp) = (free_port(), free_port());
        let (msgid_json, type_data) = (free_port(), free_port());
        for (port, addr) in [
            (8080, http),
            (7000, tcp),
            (6000, msgid_json),
            (8889, type_data),
        ] {
            let from = format!("listen 127.0.0.1:{port};");
            assert!(conf.contains(&from), "nginx.conf has no `{from}`");
            conf = conf.replace(&from, &format!("listen {addr};"));
        }
        // One process, so killing it (kill_on_drop) leaves no orphaned worker.
        let conf = format!("master_process off;\n{conf}");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("logs")).expect("logs dir");
        std::fs::create_dir_all(dir.path().join("temp")).expect("temp dir");
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).expect("write nginx.conf");
        let nginx = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&path)
            .args(["-g", "daemon off;"])
            .kill_on_drop(true)
            .spawn()
            .expect("start nginx");
        let deadline = Instant::now() + Duration::from_secs(10);
        let listening = |a| async move { TcpStream::connect(a).await.is_ok() };
        while !(listening(tcp).await
            && listening(http).await
            && listening(msgid_json).await
            && listening(type_data).await)
        {
            assert!(
                Instant::now() < deadline,
                "nginx did not listen within 10 s; see {}",
                dir.path().join("logs/error.log").display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("cluster up: nginx http {http} tcp {tcp}, namespace {ns}");
        Cluster {
            nodes,
            _nginx: nginx,
            _nginx_dir: dir,
            http,
            tcp,
            msgid_json,
            type_data,
            postgres,
            namespace: ns,
            _store: store,
        }
    }
}

/// What a user's connections have received, kept across reconnections.
#[derive(Default)]
struct Inbox {
    got: HashSet<String>,
    unacked: Vec<String>,
    presence: Vec<Value>,
}

impl Cluster {
    /// Delete what this run left in RabbitMQ — its inbox queues, its rooms'
    /// exchanges and history streams, its shared exchanges — so repeated
    /// runs do not pile up durable queues. Best effort: it never fails a
    /// test (a failed test skips it; the namespace is unique anyway).
    async fn clean_up(self) {
        let ns = self.namespace.clone();
        drop(self);
        clean_up_namespace(ns).await;
    }
}

/// Delete what a run left in RabbitMQ namespace `ns` (see [`Cluster::clean_up`]).
async fn clean_up_namespace(ns: String) {
    let out = Command::new("rabbitmqctl")
        .args(["list_queues", "name", "--no-table-headers", "-q"])
        .output()
        .await;
    let Ok(out) = out else { return };
    let names = String::from_utf8_lossy(&out.stdout).into_owned();
    let broker = match rmq_core::AmqpBroker::builder(amqp_url())
        .namespace(ns.clone())
        .connect()
        .await
    {
        Ok(b) => b,
        Err(e) => return eprintln!("cleaning up RabbitMQ namespace {ns}: {e}"),
    };
    let (inbox, history) = (format!("{ns}.inbox."), format!("{ns}.history."));
    for name in names.lines().map(str::trim) {
        let done = if let Some(user) = name.strip_prefix(&inbox) {
            match rmq_core::UserId::new(user) {
                Ok(u) => broker.delete_inbox(&u).await,
                Err(_) => continue,
            }
        } else if let Some(room) = name.strip_prefix(&history) {
            match rmq_core::RoomId::new(room) {
                Ok(r) => broker.delete_room(&r).await,
                Err(_) => continue,
            }
        } else {
            continue;
        };
        if let Err(e) = done {
            eprintln!("cleaning up {name}: {e}");
        }
    }
    if let Err(e) = broker.delete_namespace().await {
        eprintln!("cleaning up RabbitMQ namespace {ns}: {e}");
    }
    broker.close().await;
}

/// A native-protocol client over TCP whose reader runs in the background.
struct User {
    name: String,
    token: String,
    w: Option<OwnedWriteHalf>,
    replies: mpsc::UnboundedReceiver<Value>,
    next: u64,
    inbox: Arc<Mutex<Inbox>>,
}

impl User {
    async fn link(
        addr: SocketAddr,
        inbox: &Arc<Mutex<Inbox>>,
    ) -> Option<(OwnedWriteHalf, mpsc::UnboundedReceiver<Value>)> {
        let s = TcpStream::connect(addr).await.ok()?;
        let (r, w) = s.into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        let inbox = inbox.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(r).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                match v["push"].as_str() {
                    Some("message") => {
                        let id = v["content"]["id"].as_str().unwrap_or_default().to_owned();
                        let mut i = lock(&inbox);
                        i.got.insert(id.clone());
                        i.unacked.push(id);
                    }
                    Some("presence") => lock(&inbox).presence.push(v["content"].clone()),
                    Some(_) => {}
                    None => {
                        let _ = tx.send(v);
                    }
                }
            }
        });
        Some((w, rx))
    }

    /// Register (if new) and log in through `addr`.
    async fn login(addr: SocketAddr, name: &str) -> User {
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let (w, replies) = Self::link(addr, &inbox).await.expect("connect");
        let mut u = User {
            name: name.to_owned(),
            token: String::new(),
            w: Some(w),
            replies,
            next: 1,
            inbox,
        };
        let pw = format!("pw-{name}-secret");
        let r = u
            .call("user.register", json!({"name": name, "password": pw}))
            .await
            .expect("register reply");
        assert!(
            r["status"] == 200 || r["status"] == 409,
            "register {name}: {r}"
        );
        let r = u
            .call("user.login", json!({"name": name, "password": pw}))
            .await
            .expect("login reply");
        assert_eq!(r["status"], 200, "login {name}: {r}");
        u.token = r["content"]["token"].as_str().expect("token").to_owned();
        u
    }

    /// One call; `None` when the connection is gone (or silent for 10 s).
    async fn call(&mut self, api: &str, params: Value) -> Option<Value> {
        let id = self.next;
        self.next += 1;
        let line = format!("{}\n", json!({"id": id, "api": api, "params": params}));
        let w = self.w.as_mut()?;
        if w.write_all(line.as_bytes()).await.is_err() {
            self.w = None;
            return None;
        }
        let got = tokio::time::timeout(support::WAIT, async {
            while let Some(r) = self.replies.recv().await {
                if r["id"] == id {
                    return Some(r);
                }
            }
            None
        })
        .await;
        match got {
            Ok(Some(r)) => Some(r),
            Ok(None) => {
                self.w = None;
                None
            }
            Err(_) => {
                eprintln!(
                    "{}: {api} got no reply within {:?}",
                    self.name,
                    support::WAIT
                );
                self.w = None;
                None
            }
        }
    }

    async fn ok(&mut self, api: &str, params: Value) -> Value {
        let r = self.call(api, params.clone()).await;
        let r = r.unwrap_or_else(|| panic!("{}: {api} {params}: connection lost", self.name));
        assert_eq!(r["status"], 200, "{}: {api} {params} -> {r}", self.name);
        r["content"].clone()
    }

    /// Reconnect through `addr` and resume the session with the token.
    async fn resume(&mut self, addr: SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(
                Instant::now() < deadline,
                "{} could not resume within 30 s",
                self.name
            );
            if let Some((w, rx)) = Self::link(addr, &self.inbox).await {
                self.w = Some(w);
                self.replies = rx;
                if let Some(r) = self.call("user.resume", json!({"token": self.token})).await {
                    if r["status"] == 200 {
                        return;
                    }
                    eprintln!("{}: resume -> {r}", self.name);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Ack what arrived since the last ack (failures are left for later).
    async fn ack(&mut self) {
        let ids = std::mem::take(&mut lock(&self.inbox).unacked);
        if !ids.is_empty() && self.call("chat.ack", json!({"ids": ids})).await.is_none() {
            lock(&self.inbox).unacked.extend(ids);
        }
    }

    fn got(&self) -> HashSet<String> {
        lock(&self.inbox).got.clone()
    }
}

/// Every message a sender got a 200 for, with who must receive it.
type Sent = Arc<Mutex<Vec<(String, Vec<String>)>>>;

/// `rounds` rounds of a lobby, a group and a private message from `u`,
/// reconnecting through nginx when its node goes away and retrying with the
/// same `client_id` after a lost reply or a 503.
async fn traffic(
    mut u: User,
    via: SocketAddr,
    everyone: Vec<String>,
    rounds: usize,
    sent: Sent,
    reconnects: Arc<AtomicUsize>,
    unavailable: Arc<AtomicUsize>,
) -> User {
    let me = everyone
        .iter()
        .position(|n| *n == u.name)
        .expect("in everyone");
    let peer = everyone[(me + 1) % everyone.len()].clone();
    let others: Vec<String> = everyone.iter().filter(|n| **n != u.name).cloned().collect();
    for r in 0..rounds {
        for (k, to, recipients) in [
            (0, json!({"group": "lobby"}), others.clone()),
            (1, json!({"group": "team"}), others.clone()),
            (2, json!({"user": peer}), vec![peer.clone()]),
        ] {
            let client_id = format!("{}-{r}-{k}", u.name);
            let params =
                json!({"to": to, "text": format!("{client_id} text"), "client_id": client_id});
            let mut tries = 0;
            loop {
                tries += 1;
                assert!(tries < 300, "{}: {client_id} never got a 200", u.name);
                match u.call("chat.send", params.clone()).await {
                    Some(rep) if rep["status"] == 200 => {
                        let id = rep["content"]["id"].as_str().expect("id").to_owned();
                        lock(&sent).push((id, recipients));
                        break;
                    }
                    Some(rep) if rep["status"] == 503 || rep["status"] == 429 => {
                        unavailable.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Some(rep) => panic!("{}: chat.send {params} -> {rep}", u.name),
                    None => {
                        reconnects.fetch_add(1, Ordering::Relaxed);
                        eprintln!("{}: connection lost; reconnecting through nginx", u.name);
                        u.resume(via).await;
                    }
                }
            }
        }
        u.ack().await;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    u
}

/// Wait until every recipient has every message sent to them; fail with
/// what is missing.
async fn assert_delivered(users: &mut [User], sent: &Sent) {
    let sent = lock(sent).clone();
    let mut want: HashMap<&str, HashSet<&str>> = HashMap::new();
    for (id, to) in &sent {
        for r in to {
            want.entry(r.as_str()).or_default().insert(id.as_str());
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Keep acking, as a real client does: a client that stops acking
        // stops receiving once its unacked messages fill the prefetch window.
        for u in users.iter_mut() {
            u.ack().await;
        }
        let mut missing = Vec::new();
        for u in users.iter() {
            let got = u.got();
            let want = want.get(u.name.as_str()).cloned().unwrap_or_default();
            let lack: Vec<&str> = want
                .iter()
                .filter(|id| !got.contains(**id))
                .copied()
                .collect();
            if !lack.is_empty() {
                missing.push(format!(
                    "{} lacks {} of {} (e.g. {})",
                    u.name,
                    lack.len(),
                    want.len(),
                    lack[0]
                ));
            }
        }
        if missing.is_empty() {
            eprintln!(
                "{} messages sent with a 200, every one delivered",
                sent.len()
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "messages sent with a 200 were not delivered within 20 s: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Six users through nginx's TCP port (least_conn spreads them over the
/// nodes), all in group `team`.
async fn users(c: &Cluster, prefix: &str) -> Vec<User> {
    let mut users = Vec::new();
    for i in 0..6 {
        users.push(User::login(c.tcp, &format!("{prefix}{i}")).await);
    }
    users[0].ok("group.create", json!({"name": "team"})).await;
    for u in &mut users[1..] {
        u.ok("group.join", json!({"name": "team"})).await;
    }
    users
}

/// Every user running [`traffic`] in the background.
struct Traffic {
    tasks: Vec<tokio::task::JoinHandle<User>>,
    sent: Sent,
    reconnects: Arc<AtomicUsize>,
    unavailable: Arc<AtomicUsize>,
}

/// What a [`Traffic`] run ended with.
struct Finished {
    users: Vec<User>,
    sent: Sent,
    /// Connections lost and resumed.
    reconnects: usize,
    /// Sends answered 503 or 429 (and retried).
    unavailable: usize,
}

impl Traffic {
    /// 40 rounds of [`traffic`] from every user, through `via`.
    fn start(users: Vec<User>, via: SocketAddr) -> Traffic {
        let everyone: Vec<String> = users.iter().map(|u| u.name.clone()).collect();
        let t = Traffic {
            tasks: Vec::new(),
            sent: Sent::default(),
            reconnects: Arc::default(),
            unavailable: Arc::default(),
        };
        let tasks = users
            .into_iter()
            .map(|u| {
                tokio::spawn(traffic(
                    u,
                    via,
                    everyone.clone(),
                    40,
                    t.sent.clone(),
                    t.reconnects.clone(),
                    t.unavailable.clone(),
                ))
            })
            .collect();
        Traffic { tasks, ..t }
    }

    /// Messages answered 200 so far.
    fn sent(&self) -> usize {
        lock(&self.sent).len()
    }

    /// Wait for every user to finish.
    async fn finish(self) -> Finished {
        let mut users = Vec::new();
        for t in self.tasks {
            users.push(t.await.expect("traffic task"));
        }
        let f = Finished {
            users,
            sent: self.sent,
            reconnects: self.reconnects.load(Ordering::Relaxed),
            unavailable: self.unavailable.load(Ordering::Relaxed),
        };
        eprintln!(
            "{} messages answered 200, {} answered 503/429 and retried, {} reconnections",
            lock(&f.sent).len(),
            f.unavailable,
            f.reconnects
        );
        f
    }
}

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

/// Starts RabbitMQ again when dropped, whatever happened.
struct RabbitGuard;

impl Drop for RabbitGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .arg("start_app")
            .stdout(Stdio::null())
            .status();
    }
}

/// Run `rabbitmqctl <cmd>` without blocking the test's runtime (which also
/// runs the traffic).
async fn rabbitmqctl(cmd: &str) {
    let s = Command::new("rabbitmqctl")
        .arg(cmd)
        .stdout(Stdio::null())
        .status()
        .await
        .expect("run rabbitmqctl");
    assert!(s.success(), "rabbitmqctl {cmd} failed");
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
    assert!(
        f.unavailable > 0,
        "sends during an outage longer than --broker-timeout-ms are answered 503, not held"
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

/// `GET path` of a node: status and JSON body (`null` if not JSON).
async fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (status, _, body) = support::http(addr, "GET", path, &[], "").await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// A node's `/readyz`.
async fn readyz(addr: SocketAddr) -> (u16, Value) {
    get(addr, "/readyz").await
}

/// The value of `series` (name and labels as encoded) in a node's `/metrics`.
async fn metric(addr: SocketAddr, series: &str) -> Option<f64> {
    let (status, _, body) = support::http(addr, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200, "{body}");
    body.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.parse().ok()
    })
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

/// A native user on `addr` (registered if new, with `number` if given), logged in.
async fn native(addr: SocketAddr, name: &str, number: Option<u64>) -> support::Client {
    let mut u = support::Client::tcp(addr).await;
    let pw = format!("pw-{name}-secret");
    let mut register = json!({"name": name, "password": pw});
    if let Some(n) = number {
        register["number"] = json!(n);
    }
    let r = u.call("user.register", register).await;
    assert!(
        r["status"] == 200 || r["status"] == 409,
        "register {name}: {r}"
    );
    let login = u
        .ok("user.login", json!({"name": name, "password": pw}))
        .await;
    u.token = login["token"].as_str().map(str::to_owned);
    u
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
    let history = carol
        .ok("chat.history", json!({"to": {"group": "hist"}}))
        .await;
    let texts: Vec<&str> = history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert_eq!(texts, ["h1", "h2", "h3"], "history across nodes: {history}");
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
    c.clean_up().await;
}
