//! Starting a real `chat-server` process and learning where it listens.
//!
//! Shared by the integration tests (through `support`) and the load
//! benchmark (`benches/cluster_load.rs` includes this file by path).

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Where a started chat-server listens, as it printed at start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Addrs {
    pub(crate) http: SocketAddr,
    pub(crate) tcp: SocketAddr,
    pub(crate) msgid_json: Option<SocketAddr>,
    pub(crate) type_data: Option<SocketAddr>,
}

/// A `chat-server` command: add its flags, then [`start`] it.
pub(crate) fn command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chat-server"));
    cmd.env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    cmd
}

/// The address printed after `marker` in a log line.
fn addr_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let end = rest
        .find(|c: char| c == '/' || c.is_whitespace())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Start `cmd` and wait (up to 60 s) until the server is ready. Every line
/// of its standard output goes to `each_line`, before and after it is ready:
/// the output keeps being drained so the server never blocks on a full pipe.
/// The child is killed when dropped.
pub(crate) async fn start(
    mut cmd: Command,
    mut each_line: impl FnMut(&str) + Send + 'static,
) -> (Child, Addrs) {
    let mut child = cmd.spawn().expect("start chat-server");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout piped")).lines();
    let (mut tcp, mut msgid_json, mut type_data) = (None, None, None);
    let http = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("read server output") {
            each_line(&line);
            tcp = tcp.or(addr_after(&line, "native TCP (JSON lines) on "));
            msgid_json = msgid_json.or(addr_after(&line, "legacy msgid-json clients on "));
            type_data = type_data.or(addr_after(&line, "legacy type-data clients on "));
            if let Some(http) = addr_after(&line, "point a browser at http://") {
                return (http, each_line);
            }
        }
        panic!("chat-server exited before it was ready");
    })
    .await
    .expect("chat-server ready within 60 s");
    let (http, mut each_line) = http;
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            each_line(&line);
        }
    });
    let addrs = Addrs {
        http,
        tcp: tcp.expect("the server printed its TCP address"),
        msgid_json,
        type_data,
    };
    (child, addrs)
}

/// Ask the server to shut down (SIGINT, like Ctrl-C), wait up to 15 s for
/// it, then kill it.
pub(crate) async fn interrupt(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status();
    }
    let _ = tokio::time::timeout(Duration::from_secs(15), child.wait()).await;
    let _ = child.kill().await;
}

/// A loopback address with a free port (free when asked; a test binds it soon after).
pub(crate) fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local address")
}
