//! Readiness as one machine-readable line.
//!
//! A server of this workspace (today `chat-server`) prints, on its standard
//! output and once every listener is bound, exactly one line
//!
//! ```text
//! READY {"http":"127.0.0.1:8080","tcp":"127.0.0.1:7000",...}
//! ```
//!
//! `READY`, one space, then a JSON object from listener names to the
//! addresses they are bound to (the real port when `:0` was asked for). Only
//! bound listeners appear. Other lines (logs) may come before and after it.
//! [`start`] runs a process until it prints that line; nothing scrapes log
//! text.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// What starts a READY line: the word and one space.
pub const PREFIX: &str = "READY ";

/// The listeners a process announced in its READY line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    listeners: BTreeMap<String, SocketAddr>,
}

/// A line that starts with [`PREFIX`] but is not a READY line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyError {
    line: String,
    reason: String,
}

impl fmt::Display for ReadyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed READY line {:?}: {}", self.line, self.reason)
    }
}

impl std::error::Error for ReadyError {}

impl Ready {
    /// `None` if `line` is not a READY line (a log line, say); otherwise the
    /// listeners, or why the line is malformed.
    pub fn parse(line: &str) -> Option<Result<Ready, ReadyError>> {
        let json = line.trim_end().strip_prefix(PREFIX)?;
        let bad = |reason: String| ReadyError {
            line: line.to_owned(),
            reason,
        };
        let parsed = serde_json::from_str::<serde_json::Value>(json)
            .map_err(|e| bad(format!("expected a JSON object: {e}")))
            .and_then(|value| {
                let serde_json::Value::Object(map) = value else {
                    return Err(bad("expected a JSON object".to_owned()));
                };
                let mut listeners = BTreeMap::new();
                for (name, addr) in map {
                    let addr = addr
                        .as_str()
                        .and_then(|a| a.parse::<SocketAddr>().ok())
                        .ok_or_else(|| {
                            bad(format!(
                                "listener {name:?}: expected \"ip:port\", got {addr}"
                            ))
                        })?;
                    listeners.insert(name, addr);
                }
                Ok(Ready { listeners })
            });
        Some(parsed)
    }

    /// The address of listener `name`, if it is bound.
    pub fn get(&self, name: &str) -> Option<SocketAddr> {
        self.listeners.get(name).copied()
    }

    /// The address of listener `name`.
    ///
    /// # Panics
    ///
    /// If the process did not announce it.
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.get(name)
            .unwrap_or_else(|| panic!("the READY line has no listener {name:?}: {self:?}"))
    }

    /// Every announced listener, by name.
    pub fn listeners(&self) -> &BTreeMap<String, SocketAddr> {
        &self.listeners
    }
}

/// Start `cmd` (its standard output must be piped) and wait up to `limit`
/// until it prints its READY line.
///
/// Every line of its standard output goes to `each_line`, before and after
/// the READY line: the output keeps being drained, so the process never
/// blocks on a full pipe. Set `kill_on_drop` on `cmd` to have the child
/// killed when dropped.
///
/// # Panics
///
/// If the process cannot start, exits or prints a malformed READY line
/// before it is ready, or is not ready within `limit`.
pub async fn start(
    mut cmd: Command,
    limit: Duration,
    mut each_line: impl FnMut(&str) + Send + 'static,
) -> (Child, Ready) {
    let program = format!("{:?}", cmd.as_std().get_program());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    let stdout = child
        .stdout
        .take()
        .unwrap_or_else(|| panic!("the standard output of {program} must be piped"));
    let mut lines = BufReader::new(stdout).lines();
    let waited = tokio::time::timeout(limit, async {
        while let Some(line) = lines.next_line().await.expect("read the process's output") {
            each_line(&line);
            if let Some(ready) = Ready::parse(&line) {
                return ready.unwrap_or_else(|e| panic!("{program}: {e}"));
            }
        }
        panic!("{program} exited before it printed its READY line");
    })
    .await;
    let ready = waited.unwrap_or_else(|_| panic!("{program} not ready within {limit:?}"));
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            each_line(&line);
        }
    });
    (child, ready)
}

/// Ask `child` to shut down (SIGINT, like Ctrl-C), wait up to `grace` for
/// it, then kill it.
pub async fn interrupt(child: &mut Child, grace: Duration) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status();
    }
    let _ = tokio::time::timeout(grace, child.wait()).await;
    let _ = child.kill().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(line: &str, expected: Option<Result<&[(&str, &str)], &str>>) {
        let got = Ready::parse(line).map(|r| {
            r.map(|ready| {
                ready
                    .listeners()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_string()))
                    .collect::<Vec<_>>()
            })
            .map_err(|e| e.to_string())
        });
        let expected = expected.map(|r| {
            r.map(|pairs| {
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<Vec<_>>()
            })
            .map_err(str::to_owned)
        });
        assert_eq!(got, expected, "{line}");
    }

    #[test]
    fn ready_lines_parse_and_other_lines_are_not_ready_lines() {
        check(
            r#"READY {"http":"127.0.0.1:8080","tcp":"[::1]:7000"}"#,
            Some(Ok(&[("http", "127.0.0.1:8080"), ("tcp", "[::1]:7000")])),
        );
        check("READY {}\r\n", Some(Ok(&[])));
        check("INFO chat_server: chat server ready", None);
        check(r#" READY {"http":"127.0.0.1:1"}"#, None);
        check("READY", None);
        check(
            "READY [1]",
            Some(Err(
                r#"malformed READY line "READY [1]": expected a JSON object"#,
            )),
        );
        check(
            r#"READY {"http":8080}"#,
            Some(Err(
                r#"malformed READY line "READY {\"http\":8080}": listener "http": expected "ip:port", got 8080"#,
            )),
        );
        assert!(
            Ready::parse("READY {").unwrap().is_err(),
            "truncated JSON is malformed"
        );
    }

    #[test]
    #[should_panic(expected = r#"the READY line has no listener "tcp""#)]
    fn a_missing_listener_is_named() {
        let ready = Ready::parse(r#"READY {"http":"127.0.0.1:1"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(ready.get("tcp"), None);
        ready.addr("tcp");
    }

    #[tokio::test]
    async fn start_waits_for_the_ready_line_and_keeps_draining() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            r#"echo starting; echo 'READY {"http":"127.0.0.1:1234"}'; echo after; exec sleep 30"#,
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (mut child, ready) = start(cmd, Duration::from_secs(10), move |line| {
            let _ = tx.send(line.to_owned());
        })
        .await;
        assert_eq!(ready.addr("http"), "127.0.0.1:1234".parse().unwrap());
        for expected in ["starting", r#"READY {"http":"127.0.0.1:1234"}"#, "after"] {
            assert_eq!(rx.recv().await.as_deref(), Some(expected));
        }
        interrupt(&mut child, Duration::from_secs(5)).await;
        assert!(child.try_wait().unwrap().is_some(), "the child is gone");
    }

    #[tokio::test]
    #[should_panic(expected = "exited before it printed its READY line")]
    async fn a_process_that_exits_first_fails_the_start() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo 'READY-ish'"])
            .stdout(std::process::Stdio::piped());
        start(cmd, Duration::from_secs(10), |_| {}).await;
    }
}
