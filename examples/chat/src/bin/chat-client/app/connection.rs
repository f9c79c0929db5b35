//! The connection and the login: what the client does when the network
//! task connects or loses the server, and the register / login / resume
//! flow that brings a new connection online (or stops until `/login`).

use std::time::Duration;

use chat::wire::{self, NoParams, Target, api};
use serde_json::Value;

use super::channels::group_key;
use super::{Client, ConnState, Event, PAGE, Pending};
use crate::net::NetCmd;

/// The device id the terminal client logs in as.
const TERMINAL_DEVICE: &str = "terminal";

impl Client {
    /// A new connection: remember what is newest locally, then log in.
    pub(super) fn on_connected(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.pending.clear();
        // What is newest locally now, before this connection delivers
        // anything: the sync keeps what is newer.
        self.sync_marks = self
            .channels
            .iter()
            .filter(|(k, _)| k.starts_with('#'))
            .map(|(k, c)| (k.clone(), c.messages.iter().map(|m| m.id.clone()).max()))
            .collect();
        self.set_conn(ConnState::LoggingIn, None, None);
        self.authenticate();
    }

    pub(super) fn set_conn(
        &mut self,
        state: ConnState,
        detail: Option<String>,
        retry_in: Option<Duration>,
    ) {
        self.conn = state;
        self.conn_detail.clone_from(&detail);
        self.events.push(Event::Connection {
            state,
            server: self.settings.server.clone(),
            detail,
            retry_in_ms: retry_in.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        });
    }

    fn authenticate(&mut self) {
        if let Some(token) = self.token.clone() {
            self.request(api::RESUME, &wire::Resume { token }, Pending::Resume);
        } else if self.settings.register && !self.registered {
            match self.password.clone() {
                Some(pw) => {
                    let register = wire::Register {
                        name: self.settings.user.clone(),
                        password: pw,
                        number: None,
                    };
                    self.request(api::REGISTER, &register, Pending::Register);
                }
                None => self.fatal(
                    "no_password",
                    "registering needs a password: --password or CHAT_PASSWORD",
                ),
            }
        } else {
            self.login();
        }
    }

    fn login(&mut self) {
        let Some(password) = self.password.clone() else {
            return self.fatal(
                "no_password",
                "no saved session and no password: type /login <password>, or run with --password",
            );
        };
        let user = &self.settings.user;
        let params = match user.parse::<u64>() {
            Ok(number) if user.bytes().all(|b| b.is_ascii_digit()) => {
                wire::Login::by_number(number, password)
            }
            _ => wire::Login::by_name(user.clone(), password),
        }
        // The terminal is a device of its own: a browser or a phone of the
        // same user stays logged in beside it.
        .device(TERMINAL_DEVICE);
        self.request(api::LOGIN, &params, Pending::Login);
    }

    /// Give up until the user does something (`/login`).
    fn fatal(&mut self, code: &str, message: &str) {
        self.failed = true;
        self.error(Some("login"), None, code, message);
        let _ = self.net.send(NetCmd::Stop);
        self.set_conn(ConnState::Stopped, Some(message.to_owned()), None);
    }

    pub(super) async fn on_login(&mut self, content: Value, resumed: bool) {
        let reply: wire::LoggedIn = match serde_json::from_value(content) {
            Ok(r) => r,
            Err(e) => {
                return self.fatal(
                    "bad_reply",
                    &format!("the login reply is not what PROTOCOL.md §1 says: {e}"),
                );
            }
        };
        self.me = reply.name.clone();
        self.token = Some(reply.token.clone());
        if let Err(e) = self.store.set_token(Some(&reply.token)).await {
            self.store_error(e);
        }
        self.friends = reply
            .friends
            .into_iter()
            .map(|f| (f.name, f.online))
            .collect();
        let _ = self.net.send(NetCmd::Online);
        self.events.push(Event::Login {
            name: reply.name,
            number: reply.number,
            resumed,
        });
        self.set_conn(ConnState::Online, None, None);
        self.request(api::ONLINE, &NoParams {}, Pending::Online { report: false });
        for g in reply.groups {
            let key = group_key(&g.name);
            if let Err(e) = self.ensure_channel(&key).await {
                self.store_error(e);
                continue;
            }
            let mark = self.sync_marks.get(&key).cloned().flatten();
            let history = wire::History {
                to: Target::group(g.name),
                before: None,
                after: None,
                limit: Some(PAGE),
            };
            self.request(
                api::HISTORY,
                &history,
                Pending::Sync {
                    channel: key,
                    mark,
                    page: 0,
                },
            );
        }
        self.pump_outbox().await;
    }

    pub(super) async fn on_closed(&mut self, reason: String, retry_in: Option<Duration>) {
        for (_, (_, p)) in self.pending.drain() {
            let name = match p {
                Pending::Command { name, .. } => name,
                Pending::Online { report: true } | Pending::Friends { report: true } => {
                    "who".into()
                }
                Pending::Backfill { report: true, .. } => "history".into(),
                _ => continue,
            };
            self.events.push(Event::Error {
                command: Some(name),
                status: None,
                code: "disconnected".into(),
                message: "the connection was lost before the server answered".into(),
            });
        }
        for (_, lease) in self.in_flight.drain() {
            let _ = lease.release().await;
        }
        self.to_ack.clear();
        self.ack_due = None;
        self.retry_due = None;
        // Replaced or stopped stays so, even if the server closed the
        // connection before the network task took the order to stop.
        let state = match (retry_in, self.conn) {
            (_, ConnState::Replaced) => ConnState::Replaced,
            (None, _) | (_, ConnState::Stopped) => ConnState::Stopped,
            (Some(_), _) => ConnState::Offline,
        };
        let detail = match state {
            ConnState::Offline => Some(reason),
            _ => self.conn_detail.clone().or(Some(reason)),
        };
        self.set_conn(
            state,
            detail,
            retry_in.filter(|_| state == ConnState::Offline),
        );
    }

    /// `user.register` succeeded: log in.
    pub(super) fn on_registered(&mut self) {
        self.registered = true;
        self.login();
    }

    /// `user.register` answered 409.
    pub(super) fn on_name_taken(&mut self, status: u16, code: String, message: String) {
        // Taken: by us on an earlier run, or by someone else (then
        // the login fails and says so).
        self.registered = true;
        self.error(Some("register"), Some(status), &code, message);
        self.login();
    }

    /// `user.register` or `user.login` failed (not a taken name).
    pub(super) fn on_login_refused(&mut self, status: u16, code: String, message: String) {
        if status >= 500 {
            self.error(Some("login"), Some(status), &code, message);
            let _ = self.net.send(NetCmd::Stop);
            let _ = self.net.send(NetCmd::Reconnect);
        } else {
            self.failed = true;
            self.error(Some("login"), Some(status), &code, message.clone());
            let _ = self.net.send(NetCmd::Stop);
            self.set_conn(ConnState::Stopped, Some(message), None);
        }
    }

    /// `user.resume` failed.
    pub(super) async fn on_resume_refused(&mut self, status: u16, code: String, message: String) {
        if status == 401 {
            self.token = None;
            if let Err(e) = self.store.set_token(None).await {
                self.store_error(e);
            }
            self.error(Some("resume"), Some(status), &code, message);
            self.login();
        } else {
            self.error(Some("resume"), Some(status), &code, message);
            let _ = self.net.send(NetCmd::Stop);
            let _ = self.net.send(NetCmd::Reconnect);
        }
    }
}
