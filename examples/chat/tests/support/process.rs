//! Starting a real `chat-server` process and learning where it listens.
//!
//! Shared by the integration tests (through `support`) and the load
//! benchmark (`benches/cluster_load.rs` includes this file by path). The
//! addresses come from the server's `READY {json}` line (docs/chat.md,
//! "Readiness"), read by `testkit::ready`; no log text is parsed.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// Where a started chat-server listens, from its READY line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Addrs {
    pub(crate) http: SocketAddr,
    pub(crate) tcp: SocketAddr,
    pub(crate) msgid_json: Option<SocketAddr>,
    pub(crate) type_data: Option<SocketAddr>,
    pub(crate) token_json: Option<SocketAddr>,
    pub(crate) thrift: Option<SocketAddr>,
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

/// Start `cmd` and wait (up to 60 s) until the server is ready. Every line
/// of its standard output goes to `each_line`, before and after it is ready:
/// the output keeps being drained so the server never blocks on a full pipe.
/// The child is killed when dropped.
pub(crate) async fn start(
    cmd: Command,
    each_line: impl FnMut(&str) + Send + 'static,
) -> (Child, Addrs) {
    let (child, ready) = testkit::ready::start(cmd, Duration::from_secs(60), each_line).await;
    let addrs = Addrs {
        http: ready.addr("http"),
        tcp: ready.addr("tcp"),
        msgid_json: ready.get("msgid_json"),
        type_data: ready.get("type_data"),
        token_json: ready.get("token_json"),
        thrift: ready.get("thrift"),
    };
    (child, addrs)
}

/// Ask the server to shut down (SIGINT, like Ctrl-C), wait up to 15 s for
/// it, then kill it.
pub(crate) async fn interrupt(child: &mut Child) {
    testkit::ready::interrupt(child, Duration::from_secs(15)).await;
}
