//! `--script`: the same command language read from stdin, one command per
//! line (plain text is sent to the current channel), and every [`Event`] of
//! the client written to stdout as one JSON object per line:
//!
//! ```text
//! $ printf '/join #rust\nhello :)\n' | chat-client --script --server tcp://127.0.0.1:7000 --user bob
//! {"event":"connection","state":"connecting","server":"tcp://127.0.0.1:7000"}
//! {"event":"connection","state":"logging_in","server":"tcp://127.0.0.1:7000"}
//! {"event":"channel","channel":"#rust"}
//! {"event":"queued","channel":"#rust","client_id":"…","text":"hello :)"}
//! {"event":"login","name":"bob","number":2,"resumed":true}
//! ...
//! {"event":"sent","channel":"#rust","client_id":"…","id":"0192…","ts":1732350000123}
//! ```
//!
//! Lines are taken one at a time: the next one is read once the login is
//! done (or has failed) and the previous command has its reply, so a script
//! runs in order. Text does not wait: it goes to the local outbox and is sent
//! as soon as the client is online.
//!
//! At the end of input (or `/quit`) the client acks what it stored, waits
//! for the replies still in flight (at most `--linger-ms`), and exits: 0, or
//! 1 if logging in failed for good. Text typed while the server is away stays
//! in the local outbox and is sent by the next run.

use std::io::{self, BufRead, Write};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::app::commands;
use crate::app::{Client, Event};
use crate::net::NetEvent;

/// Write events as JSON lines; `Err` when stdout is gone (a closed pipe).
fn emit(out: &mut impl Write, events: Vec<Event>) -> io::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    for event in events {
        let line = serde_json::to_string(&event).map_err(io::Error::other)?;
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Run until the input ends and nothing is in flight.
pub(crate) async fn run(
    client: &mut Client,
    net: &mut mpsc::UnboundedReceiver<NetEvent>,
    linger: Duration,
) -> io::Result<()> {
    // A thread, not tokio's stdin: a blocked read must not keep the runtime
    // from shutting down after /quit.
    let (line_tx, mut lines) = mpsc::channel::<String>(64);
    std::thread::spawn(move || {
        for line in io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if line_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let mut out = io::stdout().lock();
    let mut ended: Option<Instant> = None;
    loop {
        emit(&mut out, client.take_events())?;
        if client.quit_requested() && ended.is_none() {
            client.begin_close().await;
            ended = Some(Instant::now());
            continue;
        }
        if let Some(since) = ended
            && (client.settled() || since.elapsed() >= linger)
        {
            break;
        }
        let far = Instant::now() + Duration::from_secs(3600);
        let deadline = client.next_deadline().unwrap_or(far);
        let give_up = ended.map_or(far, |since| since + linger);
        tokio::select! {
            line = lines.recv(), if ended.is_none() && !client.busy() => match line {
                Some(line) => match commands::parse(&line) {
                    Ok(Some(cmd)) => client.on_command(cmd).await,
                    Ok(None) => {}
                    Err(e) => client.on_parse_error(e.0),
                },
                None => {
                    client.begin_close().await;
                    ended = Some(Instant::now());
                }
            },
            ev = net.recv() => match ev {
                Some(ev) => client.on_net(ev).await,
                None => break,
            },
            () = tokio::time::sleep_until(deadline.into()) => client.on_tick().await,
            () = tokio::time::sleep_until(give_up.into()) => {}
        }
    }
    emit(&mut out, client.take_events())
}
