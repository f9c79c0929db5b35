//! The `/commands`: their language ([`mod@parse`], shared by the input line and
//! `--script`) and running them on the client, one function per command or
//! group of commands.

mod parse;

pub(crate) use parse::{Command, HELP, parse};

use chat::LOBBY;
use chat::wire::{CreateGroup, FriendName, GroupName, NoParams, SearchGroups, api};
use serde::Serialize;
use serde_json::json;

use super::channels::{group_key, sort_key};
use super::{After, Client, ConnState, Event, PAGE, Pending, Source};
use crate::net::NetCmd;

impl Client {
    /// A command or text from the user.
    pub(crate) async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Say(text) => self.say(text).await,
            Command::Join(target) => self.join(target).await,
            Command::Msg { user, text } => self.msg(user, text).await,
            Command::GroupCreate { name, desc } => self.group_create(name, desc),
            Command::GroupJoin(name) => self.command(
                "group join",
                api::GROUP_JOIN,
                &GroupName { name: name.clone() },
                After::OpenGroup(name),
            ),
            Command::GroupLeave(name) => self.group_leave(name),
            Command::GroupSearch(query) => self.command(
                "group search",
                api::GROUP_SEARCH,
                &SearchGroups { query },
                After::Nothing,
            ),
            Command::GroupMembers(name) => self.group_members(name),
            Command::FriendAdd(name) => self.command(
                "friend add",
                api::FRIEND_ADD,
                &FriendName { name },
                After::RefreshFriends,
            ),
            Command::FriendRemove(name) => self.command(
                "friend remove",
                api::FRIEND_REMOVE,
                &FriendName { name },
                After::RefreshFriends,
            ),
            Command::Who => self.who(),
            Command::History(n) => self.history(n.unwrap_or(PAGE)).await,
            Command::Channels => self.report_channels().await,
            Command::Next => self.step_channel(true).await,
            Command::Prev => self.step_channel(false).await,
            Command::Emoticons(on) => self.set_emoticons(on),
            Command::Login(password) => self.login_again(password),
            Command::Help => self.events.push(Event::Help {
                lines: HELP.iter().map(|l| (*l).to_owned()).collect(),
            }),
            Command::Quit => self.quit = true,
        }
    }

    /// `/join #group|@user|group`: switch, joining the group if needed.
    async fn join(&mut self, target: String) {
        let key = if target.starts_with('#') || target.starts_with('@') {
            target
        } else {
            group_key(&target)
        };
        if key.len() < 2 {
            return self.error(
                Some("join"),
                None,
                "bad_command",
                "/join needs a name after # or @",
            );
        }
        if self.channels.contains_key(&key) || key.starts_with('@') {
            self.select(&key).await;
        } else {
            let name = key[1..].to_owned();
            self.command(
                "join",
                api::GROUP_JOIN,
                &GroupName { name: name.clone() },
                After::OpenGroup(name),
            );
        }
    }

    /// `/msg user [text]`.
    async fn msg(&mut self, user: String, text: Option<String>) {
        self.select(&format!("@{user}")).await;
        if let Some(text) = text {
            self.say(text).await;
        }
    }

    /// `/group create name [description]`.
    fn group_create(&mut self, name: String, desc: Option<String>) {
        let create = CreateGroup {
            name: name.clone(),
            desc,
        };
        self.command(
            "group create",
            api::GROUP_CREATE,
            &create,
            After::OpenGroup(name),
        );
    }

    /// `/group leave [name]`: the current group if none is named.
    fn group_leave(&mut self, name: Option<String>) {
        let name = match name {
            Some(n) => n,
            None => match self.current.strip_prefix('#') {
                Some(g) if g != LOBBY => g.to_owned(),
                _ => {
                    return self.error(
                        Some("group leave"),
                        None,
                        "bad_command",
                        "name the group to leave: /group leave <name>",
                    );
                }
            },
        };
        self.command(
            "group leave",
            api::GROUP_LEAVE,
            &GroupName { name: name.clone() },
            After::LeaveGroup(name),
        );
    }

    /// `/group members [name]`: the current group if none is named.
    fn group_members(&mut self, name: Option<String>) {
        let name = match name.or_else(|| self.current.strip_prefix('#').map(str::to_owned)) {
            Some(n) => n,
            None => {
                return self.error(
                    Some("group members"),
                    None,
                    "bad_command",
                    "name the group: /group members <name>",
                );
            }
        };
        self.command(
            "group members",
            api::GROUP_MEMBERS,
            &GroupName { name },
            After::Nothing,
        );
    }

    /// `/who`: who is online, then the friends (see the replies).
    fn who(&mut self) {
        if self.require_online("who") {
            self.request(api::ONLINE, &NoParams {}, Pending::Online { report: true });
        }
    }

    /// `/history`: the local history first, then older messages from the
    /// server for a group.
    async fn history(&mut self, n: usize) {
        let key = self.current.clone();
        let mut local = match self.store.history(&key).await {
            Ok(h) => h,
            Err(e) => return self.store_error(e),
        };
        local.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
        local.dedup_by(|a, b| a.id == b.id);
        let start = local.len().saturating_sub(n);
        let oldest = local.first().map(|m| m.seq).filter(|seq| *seq > 0);
        let messages = local[start..].iter().map(|m| self.view(&key, m)).collect();
        self.events.push(Event::History {
            channel: key.clone(),
            source: Source::Local,
            messages,
        });
        if key.starts_with('#') && self.conn == ConnState::Online {
            self.backfill(&key, oldest, n, true);
        }
    }

    /// `/next` (`forward`) and `/prev`: the neighbour in display order.
    async fn step_channel(&mut self, forward: bool) {
        let list: Vec<String> = self
            .channel_list()
            .into_iter()
            .map(|(k, _)| k.to_owned())
            .collect();
        let at = list.iter().position(|k| *k == self.current).unwrap_or(0);
        let len = list.len().max(1);
        let next = if forward {
            (at + 1) % len
        } else {
            (at + len - 1) % len
        };
        if let Some(key) = list.get(next) {
            self.select(&key.clone()).await;
        }
    }

    /// `/emoticons [on|off]`: `None` toggles.
    fn set_emoticons(&mut self, on: Option<bool>) {
        self.emoticons = on.unwrap_or(!self.emoticons);
        self.events.push(Event::Emoticons { on: self.emoticons });
    }

    /// `/login password`: start again after a stop or a takeover.
    fn login_again(&mut self, password: String) {
        self.password = Some(password);
        self.failed = false;
        match self.conn {
            ConnState::Stopped | ConnState::Replaced => {
                self.token = None;
                let _ = self.net.send(NetCmd::Reconnect);
            }
            ConnState::Online => self.ok("login", json!({ "detail": "already logged in" })),
            _ => {} // used at the next login
        }
    }

    fn require_online(&mut self, command: &str) -> bool {
        if self.conn == ConnState::Online {
            return true;
        }
        self.error(
            Some(command),
            None,
            "offline",
            format!(
                "not connected ({}); try again when online",
                self.conn.label()
            ),
        );
        false
    }

    /// A user command that is one request.
    fn command(&mut self, name: &str, api: &str, params: &impl Serialize, then: After) {
        if self.require_online(name) {
            self.request(
                api,
                params,
                Pending::Command {
                    name: name.to_owned(),
                    then,
                },
            );
        }
    }
}
