//! `chat-client`: the terminal chat client.
//!
//! ```text
//! chat-client --server ws://127.0.0.1:8080/ws --user alice --register   # first time
//! chat-client --server ws://127.0.0.1:8080/ws --user alice              # resumes the saved session
//! printf 'hello\n' | chat-client --script --server tcp://127.0.0.1:7000 --user alice
//! ```
//!
//! Interactive mode draws the screen of `ui`; `--script` reads commands from
//! stdin and writes events as JSON lines (see `script`). Both drive the same
//! client (`app`), which keeps history, unread counts, an outbox and the
//! session token in tiny_q queues under the data directory (`store`) and
//! talks to the server over WebSocket or TCP (`net`). `docs/terminal-client.md`
//! is the guide.

mod app;
mod emoticons;
mod net;
mod script;
mod store;
mod ui;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::app::{Client, Settings};
use crate::net::Endpoint;
use crate::store::LocalStore;

/// The terminal client of the chat server.
#[derive(Debug, Parser)]
#[command(
    name = "chat-client",
    version,
    about = "Terminal client of the chat server: channels, unread counts, local history"
)]
struct Args {
    /// The server: ws://host:port/ws (WebSocket) or tcp://host:port (native TCP, JSON lines).
    #[arg(
        long,
        short,
        env = "CHAT_SERVER",
        default_value = "ws://127.0.0.1:8080/ws"
    )]
    server: String,

    /// Your user name (or number). Asked for when missing in interactive mode.
    #[arg(long, short, env = "CHAT_USER")]
    user: Option<String>,

    /// Your password. Not needed while a saved session is valid; asked for
    /// when needed in interactive mode.
    #[arg(long, env = "CHAT_PASSWORD", hide_env_values = true)]
    password: Option<String>,

    /// Create the account before logging in (a name already taken is
    /// reported, then the login is tried).
    #[arg(long)]
    register: bool,

    /// Where history, unread counts, the outbox and the session are kept.
    /// Default: $XDG_DATA_HOME/chat-client/SERVER/USER (or ~/.local/share/chat-client/...).
    #[arg(long, env = "CHAT_CLIENT_DATA")]
    data_dir: Option<PathBuf>,

    /// Read commands from stdin and print events as JSON lines on stdout.
    #[arg(long)]
    script: bool,

    /// With --script: how long to wait at the end of input for replies in flight.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    linger_ms: u64,

    /// How long received messages are gathered before one ack is sent.
    #[arg(long, default_value_t = 200, value_name = "MS")]
    ack_delay_ms: u64,

    /// The longest wait between reconnection attempts (the wait doubles from 0.5 s).
    #[arg(long, default_value_t = 15_000, value_name = "MS")]
    max_backoff_ms: u64,

    /// Show emoticons as typed (F2 or /emoticons toggles them).
    #[arg(long)]
    no_emoticons: bool,
}

/// `$XDG_DATA_HOME/chat-client/<server>/<user>`, or under `~/.local/share`.
fn default_data_dir(endpoint: &Endpoint, user: &str) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local/share"))
        })?;
    let user: String = user
        .chars()
        .map(|c| {
            // Names are letters, digits and `.-_` (any script): keep them.
            if c.is_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Some(
        base.join("chat-client")
            .join(endpoint.dir_name())
            .join(user),
    )
}

/// Ask on the terminal; `secret` turns echo off.
fn prompt(question: &str, secret: bool) -> io::Result<String> {
    let mut err = io::stderr();
    write!(err, "{question}")?;
    err.flush()?;
    if !secret {
        let mut line = String::new();
        io::stdin().read_line(&mut line)?;
        return Ok(line.trim().to_owned());
    }
    use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
    ratatui::crossterm::terminal::enable_raw_mode()?;
    let mut secret = String::new();
    let outcome = loop {
        match event::read() {
            Ok(Event::Key(k)) if k.kind != KeyEventKind::Release => match k.code {
                KeyCode::Enter => break Ok(()),
                KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                    break Err(io::Error::new(io::ErrorKind::Interrupted, "cancelled"));
                }
                KeyCode::Char(c) => secret.push(c),
                KeyCode::Backspace => {
                    secret.pop();
                }
                _ => {}
            },
            Ok(_) => {}
            Err(e) => break Err(e),
        }
    };
    let _ = ratatui::crossterm::terminal::disable_raw_mode();
    writeln!(err)?;
    outcome.map(|()| secret)
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    let _ = writeln!(io::stderr(), "chat-client: {message}");
    ExitCode::from(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let endpoint: Endpoint = match args.server.parse() {
        Ok(e) => e,
        Err(e) => return fail(e),
    };
    let user = match args.user.clone().filter(|u| !u.trim().is_empty()) {
        Some(u) => u,
        None if args.script => return fail("--script needs --user (or CHAT_USER)"),
        None => match prompt("user name: ", false) {
            Ok(u) if !u.is_empty() => u,
            Ok(_) => return fail("a user name is needed"),
            Err(e) => return fail(e),
        },
    };
    let Some(data_dir) = args
        .data_dir
        .clone()
        .or_else(|| default_data_dir(&endpoint, &user))
    else {
        return fail("no data directory: set --data-dir, XDG_DATA_HOME or HOME");
    };
    let store = match LocalStore::open(&data_dir).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let mut password = args.password.clone();
    if password.is_none() && !args.script {
        let saved = matches!(store.token().await, Ok(Some(_)));
        if args.register || !saved {
            match prompt(&format!("password for {user}: "), true) {
                Ok(p) => password = Some(p),
                Err(e) => return fail(e),
            }
        }
    }
    let settings = Settings {
        server: endpoint.to_string(),
        user,
        password,
        register: args.register,
        ack_delay: Duration::from_millis(args.ack_delay_ms),
        emoticons: !args.no_emoticons,
    };
    let (net_tx, mut net_rx) = net::spawn(endpoint, Duration::from_millis(args.max_backoff_ms));
    let mut client = match Client::new(settings, store, net_tx).await {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let outcome = if args.script {
        script::run(
            &mut client,
            &mut net_rx,
            Duration::from_millis(args.linger_ms),
        )
        .await
    } else {
        ui::run(&mut client, &mut net_rx).await
    };
    client.finish().await;
    if let Err(e) = outcome
        && e.kind() != io::ErrorKind::BrokenPipe
    {
        return fail(e);
    }
    if client.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
