//! The cluster harness of `tests/cluster.rs`: chat-server nodes sharing a
//! PostgreSQL schema and a RabbitMQ namespace, the nginx in front of them
//! (running the shipped `deploy/nginx.conf`), native clients that keep what
//! they received across reconnections, and the background traffic the tests
//! check for losses.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmq_core::Broker;
use serde_json::{Value, json};
use testkit::{FaultProxy, amqp_url, free_port, lock};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::process;

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
pub(crate) struct Node {
    pub(crate) child: Child,
    pub(crate) http: SocketAddr,
    pub(crate) tcp: SocketAddr,
    pub(crate) msgid_json: SocketAddr,
    pub(crate) type_data: SocketAddr,
    pub(crate) token_json: SocketAddr,
    pub(crate) thrift: SocketAddr,
}

impl Node {
    pub(crate) async fn start(id: &str, store: &str, ns: &str) -> Node {
        Self::start_via(id, store, &amqp_url(), ns).await
    }

    /// A node reaching RabbitMQ at `amqp`.
    pub(crate) async fn start_via(id: &str, store: &str, amqp: &str, ns: &str) -> Node {
        let mut cmd = process::command();
        cmd.args(["--node-id", id, "--store", store, "--amqp", amqp])
            .args(["--amqp-namespace", ns])
            .args(["--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0"])
            .args(["--msgid-json", "127.0.0.1:0", "--type-data", "127.0.0.1:0"])
            .args(["--token-json", "127.0.0.1:0"])
            .args(["--thrift", "127.0.0.1:0"])
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
            token_json: addrs.token_json.expect("token-json address"),
            thrift: addrs.thrift.expect("thrift address"),
        }
    }
}

/// Three nodes behind nginx, reaching PostgreSQL through a proxy the test
/// can cut.
pub(crate) struct Cluster {
    pub(crate) nodes: Vec<Node>,
    _nginx: Child,
    _nginx_dir: tempfile::TempDir,
    pub(crate) http: SocketAddr,
    pub(crate) tcp: SocketAddr,
    pub(crate) msgid_json: SocketAddr,
    pub(crate) type_data: SocketAddr,
    pub(crate) token_json: SocketAddr,
    pub(crate) thrift: SocketAddr,
    pub(crate) postgres: FaultProxy,
    namespace: String,
    _store: nopi::testing::TempStore,
}

/// Whether a `user.online` reply lists `name`.
pub(crate) fn lists(online: &Value, name: &str) -> bool {
    online["users"]
        .as_array()
        .is_some_and(|a| a.iter().any(|u| u == name))
}

/// Where `host:port` is in a URL like `scheme://user:pass@host:port/path`.
pub(crate) fn authority(url: &str) -> std::ops::Range<usize> {
    let start = url
        .find('@')
        .map_or_else(|| url.find("://").map_or(0, |i| i + 3), |i| i + 1);
    let end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    start..end
}

/// `url` with its `host:port` replaced by `addr`.
pub(crate) fn through(url: &str, addr: SocketAddr) -> String {
    let at = authority(url);
    format!("{}{addr}{}", &url[..at.start], &url[at.end..])
}

impl Cluster {
    pub(crate) async fn start() -> Cluster {
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
                (10010 + k, n.token_json),
                (10000 + k, n.thrift),
            ] {
                let from = format!("server 127.0.0.1:{port} ");
                assert!(conf.contains(&from), "nginx.conf has no `{from}`");
                conf = conf.replace(&from, &format!("server {addr} "));
            }
        }
        let (http, tcp) = (free_port(), free_port());
        let (msgid_json, type_data) = (free_port(), free_port());
        let token_json = free_port();
        let thrift = free_port();
        for (port, addr) in [
            (8080, http),
            (7000, tcp),
            (6000, msgid_json),
            (8889, type_data),
            (9998, token_json),
            (9999, thrift),
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
            && listening(type_data).await
            && listening(token_json).await
            && listening(thrift).await)
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
            token_json,
            thrift,
            postgres,
            namespace: ns,
            _store: store,
        }
    }
}

/// What a user's connections have received, kept across reconnections.
#[derive(Default)]
pub(crate) struct Inbox {
    got: HashSet<String>,
    unacked: Vec<String>,
    pub(crate) presence: Vec<Value>,
}

impl Cluster {
    /// Delete what this run left in RabbitMQ — its inbox queues, its rooms'
    /// exchanges and history streams, its shared exchanges — so repeated
    /// runs do not pile up durable queues. Best effort: it never fails a
    /// test (a failed test skips it; the namespace is unique anyway).
    pub(crate) async fn clean_up(self) {
        let ns = self.namespace.clone();
        drop(self);
        clean_up_namespace(ns).await;
    }
}

/// Delete what a run left in RabbitMQ namespace `ns` (see [`Cluster::clean_up`]).
pub(crate) async fn clean_up_namespace(ns: String) {
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
pub(crate) struct User {
    pub(crate) name: String,
    pub(crate) token: String,
    w: Option<OwnedWriteHalf>,
    replies: mpsc::UnboundedReceiver<Value>,
    next: u64,
    pub(crate) inbox: Arc<Mutex<Inbox>>,
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
    pub(crate) async fn login(addr: SocketAddr, name: &str) -> User {
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
    pub(crate) async fn call(&mut self, api: &str, params: Value) -> Option<Value> {
        let id = self.next;
        self.next += 1;
        let line = format!("{}\n", json!({"id": id, "api": api, "params": params}));
        let w = self.w.as_mut()?;
        if w.write_all(line.as_bytes()).await.is_err() {
            self.w = None;
            return None;
        }
        let got = tokio::time::timeout(super::WAIT, async {
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
                eprintln!("{}: {api} got no reply within {:?}", self.name, super::WAIT);
                self.w = None;
                None
            }
        }
    }

    pub(crate) async fn ok(&mut self, api: &str, params: Value) -> Value {
        let r = self.call(api, params.clone()).await;
        let r = r.unwrap_or_else(|| panic!("{}: {api} {params}: connection lost", self.name));
        assert_eq!(r["status"], 200, "{}: {api} {params} -> {r}", self.name);
        r["content"].clone()
    }

    /// Reconnect through `addr` and resume the session with the token.
    pub(crate) async fn resume(&mut self, addr: SocketAddr) {
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
    pub(crate) async fn ack(&mut self) {
        let ids = std::mem::take(&mut lock(&self.inbox).unacked);
        if !ids.is_empty() && self.call("chat.ack", json!({"ids": ids})).await.is_none() {
            lock(&self.inbox).unacked.extend(ids);
        }
    }

    pub(crate) fn got(&self) -> HashSet<String> {
        lock(&self.inbox).got.clone()
    }
}

/// Every message a sender got a 200 for, with who must receive it.
pub(crate) type Sent = Arc<Mutex<Vec<(String, Vec<String>)>>>;

/// `rounds` rounds of a lobby, a group and a private message from `u`,
/// reconnecting through nginx when its node goes away and retrying with the
/// same `client_id` after a lost reply or a 503.
pub(crate) async fn traffic(
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
pub(crate) async fn assert_delivered(users: &mut [User], sent: &Sent) {
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
pub(crate) async fn users(c: &Cluster, prefix: &str) -> Vec<User> {
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
pub(crate) struct Traffic {
    tasks: Vec<tokio::task::JoinHandle<User>>,
    sent: Sent,
    reconnects: Arc<AtomicUsize>,
    unavailable: Arc<AtomicUsize>,
}

/// What a [`Traffic`] run ended with.
pub(crate) struct Finished {
    pub(crate) users: Vec<User>,
    pub(crate) sent: Sent,
    /// Connections lost and resumed.
    pub(crate) reconnects: usize,
    /// Sends answered 503 or 429 (and retried).
    pub(crate) unavailable: usize,
}

impl Traffic {
    /// 40 rounds of [`traffic`] from every user, through `via`.
    pub(crate) fn start(users: Vec<User>, via: SocketAddr) -> Traffic {
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
    pub(crate) fn sent(&self) -> usize {
        lock(&self.sent).len()
    }

    /// Wait for every user to finish.
    pub(crate) async fn finish(self) -> Finished {
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

/// Starts RabbitMQ again when dropped, whatever happened.
pub(crate) struct RabbitGuard;

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
pub(crate) async fn rabbitmqctl(cmd: &str) {
    let s = Command::new("rabbitmqctl")
        .arg(cmd)
        .stdout(Stdio::null())
        .status()
        .await
        .expect("run rabbitmqctl");
    assert!(s.success(), "rabbitmqctl {cmd} failed");
}

/// `GET path` of a node: status and JSON body (`null` if not JSON).
pub(crate) async fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (status, _, body) = super::http(addr, "GET", path, &[], "").await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// A node's `/readyz`.
pub(crate) async fn readyz(addr: SocketAddr) -> (u16, Value) {
    get(addr, "/readyz").await
}

/// The value of `series` (name and labels as encoded) in a node's `/metrics`.
pub(crate) async fn metric(addr: SocketAddr, series: &str) -> Option<f64> {
    let (status, _, body) = super::http(addr, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200, "{body}");
    body.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.parse().ok()
    })
}

/// A native user on `addr` (registered if new, with `number` if given), logged in.
pub(crate) async fn native(addr: SocketAddr, name: &str, number: Option<u64>) -> super::Client {
    let mut u = super::Client::tcp(addr).await;
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
