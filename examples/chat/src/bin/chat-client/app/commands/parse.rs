//! The command language shared by the input line and `--script`: one line
//! is either a `/command` or text to send to the current channel (`//text`
//! sends `/text`).

use std::fmt;

/// One parsed input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// Send text to the current channel.
    Say(String),
    /// Switch to a channel (`#group`, `@user`, or a group name), joining the
    /// group if it is not one of ours yet.
    Join(String),
    /// Open the private chat with `user`, and send `text` there if given.
    Msg { user: String, text: Option<String> },
    /// Create a group (and switch to it).
    GroupCreate { name: String, desc: Option<String> },
    /// Join a group (and switch to it).
    GroupJoin(String),
    /// Leave a group (the current one if none is named).
    GroupLeave(Option<String>),
    /// Search groups by name.
    GroupSearch(String),
    /// The members of a group (the current one if none is named).
    GroupMembers(Option<String>),
    /// Add a friend (their presence is then reported).
    FriendAdd(String),
    /// Remove a friend.
    FriendRemove(String),
    /// Who is online, and which friends.
    Who,
    /// The current channel's history: local first, then older from the
    /// server (for groups). At most this many messages.
    History(Option<usize>),
    /// The channels with their unread counts.
    Channels,
    /// Switch to the next / previous channel.
    Next,
    /// See [`Command::Next`].
    Prev,
    /// Expand emoticons on display: on, off, or toggle.
    Emoticons(Option<bool>),
    /// Log in again with this password (after the session expired).
    Login(String),
    /// The command list.
    Help,
    /// Leave the client.
    Quit,
}

/// Why a line is not a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseError(pub(crate) String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One line per command, for `/help`.
pub(crate) const HELP: &[&str] = &[
    "text                      send text to the current channel (//text sends /text)",
    "/join #group|@user|group  switch channel; joins the group if needed",
    "/msg <user> [text]        open the private chat with user (and send text)",
    "/group create <name> [description]",
    "/group join <name>        join a group and switch to it",
    "/group leave [name]       leave a group (default: the current one)",
    "/group search <text>      find groups by name",
    "/group members [name]     list a group's members",
    "/friend add|remove <user> friends' presence is reported",
    "/who                      who is online, and your friends",
    "/history [n]              local history, then older messages from the server",
    "/channels                 channels with unread counts",
    "/next, /prev              switch channel (keys: Tab, Shift-Tab, Alt-1..9)",
    "/emoticons [on|off]       expand :) :( <3 :shrug: ... on display (key: F2)",
    "/login <password>         log in again after the session expired",
    "/quit                     leave (key: Ctrl-C)",
];

/// Parse one input line; `Ok(None)` for a blank line.
pub(crate) fn parse(line: &str) -> Result<Option<Command>, ParseError> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Ok(None);
    }
    if let Some(literal) = line.strip_prefix("//") {
        return Ok(Some(Command::Say(format!("/{literal}"))));
    }
    let Some(body) = line.strip_prefix('/') else {
        return Ok(Some(Command::Say(line.to_owned())));
    };
    let (name, rest) = split_word(body);
    let cmd = match name {
        "join" | "j" | "open" => Command::Join(one_name(
            rest,
            "/join",
            "a channel: #group, @user or a group name",
        )?),
        "msg" | "query" | "m" => {
            let (user, text) = split_word(rest);
            if user.is_empty() {
                return Err(usage("/msg", "a user name"));
            }
            let user = user.trim_start_matches('@').to_owned();
            let text = (!text.trim().is_empty()).then(|| text.to_owned());
            Command::Msg { user, text }
        }
        "group" | "g" => {
            let (sub, rest) = split_word(rest);
            match sub {
                "create" | "new" => {
                    let (name, desc) = split_word(rest);
                    if name.is_empty() {
                        return Err(usage("/group create", "a group name"));
                    }
                    Command::GroupCreate {
                        name: name.trim_start_matches('#').to_owned(),
                        desc: (!desc.trim().is_empty()).then(|| desc.trim().to_owned()),
                    }
                }
                "join" => {
                    Command::GroupJoin(group_name(one_name(rest, "/group join", "a group name")?))
                }
                "leave" | "part" => {
                    Command::GroupLeave(optional_name(rest, "/group leave")?.map(group_name))
                }
                "search" | "find" => {
                    if rest.trim().is_empty() {
                        return Err(usage("/group search", "some text"));
                    }
                    Command::GroupSearch(rest.trim().to_owned())
                }
                "members" | "who" => {
                    Command::GroupMembers(optional_name(rest, "/group members")?.map(group_name))
                }
                "" => return Err(usage("/group", "create, join, leave, search or members")),
                other => {
                    return Err(ParseError(format!(
                        "unknown /group command `{other}`: use create, join, leave, search or members"
                    )));
                }
            }
        }
        "friend" | "f" => {
            let (sub, rest) = split_word(rest);
            match sub {
                "add" => {
                    Command::FriendAdd(user_name(one_name(rest, "/friend add", "a user name")?))
                }
                "remove" | "rm" | "del" => Command::FriendRemove(user_name(one_name(
                    rest,
                    "/friend remove",
                    "a user name",
                )?)),
                "" => return Err(usage("/friend", "add or remove and a user name")),
                other => {
                    return Err(ParseError(format!(
                        "unknown /friend command `{other}`: use add or remove"
                    )));
                }
            }
        }
        "who" | "online" => no_args(rest, "/who", Command::Who)?,
        "history" | "h" => match rest.trim() {
            "" => Command::History(None),
            n => match n.parse::<usize>() {
                Ok(n) if n > 0 => Command::History(Some(n)),
                _ => {
                    return Err(ParseError(format!(
                        "/history takes a count of messages, not `{n}`"
                    )));
                }
            },
        },
        "channels" | "list" | "ls" => no_args(rest, "/channels", Command::Channels)?,
        "next" => no_args(rest, "/next", Command::Next)?,
        "prev" => no_args(rest, "/prev", Command::Prev)?,
        "emoticons" | "emoji" => match rest.trim() {
            "" | "toggle" => Command::Emoticons(None),
            "on" => Command::Emoticons(Some(true)),
            "off" => Command::Emoticons(Some(false)),
            other => {
                return Err(ParseError(format!(
                    "/emoticons takes on, off or nothing, not `{other}`"
                )));
            }
        },
        "login" => {
            if rest.is_empty() {
                return Err(usage("/login", "your password"));
            }
            Command::Login(rest.to_owned())
        }
        "help" | "?" => Command::Help,
        "quit" | "exit" | "q" => Command::Quit,
        "" => {
            return Err(ParseError(
                "an empty command: type /help for the list, or //text to send /text".into(),
            ));
        }
        other => {
            return Err(ParseError(format!(
                "unknown command /{other}: type /help for the list"
            )));
        }
    };
    Ok(Some(cmd))
}

/// The first word of `s` and the rest (with the separating whitespace gone).
fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

fn usage(cmd: &str, what: &str) -> ParseError {
    ParseError(format!("{cmd} needs {what}"))
}

/// Exactly one word.
fn one_name(rest: &str, cmd: &str, what: &str) -> Result<String, ParseError> {
    match optional_name(rest, cmd)? {
        Some(name) => Ok(name),
        None => Err(usage(cmd, what)),
    }
}

/// At most one word.
fn optional_name(rest: &str, cmd: &str) -> Result<Option<String>, ParseError> {
    let (name, extra) = split_word(rest);
    if !extra.is_empty() {
        return Err(ParseError(format!(
            "{cmd} takes one name, not `{}`",
            rest.trim()
        )));
    }
    Ok((!name.is_empty()).then(|| name.to_owned()))
}

fn no_args(rest: &str, cmd: &str, c: Command) -> Result<Command, ParseError> {
    if rest.trim().is_empty() {
        Ok(c)
    } else {
        Err(ParseError(format!(
            "{cmd} takes no arguments, not `{}`",
            rest.trim()
        )))
    }
}

fn group_name(s: String) -> String {
    s.trim_start_matches('#').to_owned()
}

fn user_name(s: String) -> String {
    s.trim_start_matches('@').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(line: &str, expected: Command) {
        assert_eq!(parse(line), Ok(Some(expected)), "parsing {line:?}");
    }

    fn check_err(line: &str, contains: &str) {
        match parse(line) {
            Err(ParseError(msg)) => assert!(
                msg.contains(contains),
                "{line:?}: {msg:?} lacks {contains:?}"
            ),
            other => panic!("{line:?} should be an error, got {other:?}"),
        }
    }

    #[test]
    fn text_is_sent_as_typed() {
        check("hello there", Command::Say("hello there".into()));
        check("  indented :) ", Command::Say("  indented :) ".into()));
        check("//not a command", Command::Say("/not a command".into()));
        check("hi\r\n", Command::Say("hi".into()));
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("   \n"), Ok(None));
    }

    #[test]
    fn channel_commands() {
        check("/join #rust", Command::Join("#rust".into()));
        check("/join rust", Command::Join("rust".into()));
        check("/j @bob", Command::Join("@bob".into()));
        check(
            "/msg bob",
            Command::Msg {
                user: "bob".into(),
                text: None,
            },
        );
        check(
            "/msg @bob  hi there ",
            Command::Msg {
                user: "bob".into(),
                text: Some("hi there ".into()),
            },
        );
        check("/next", Command::Next);
        check("/prev", Command::Prev);
        check("/channels", Command::Channels);
        check_err("/join", "/join needs a channel");
        check_err("/join a b", "takes one name");
        check_err("/msg", "/msg needs a user name");
        check_err("/channels now", "takes no arguments");
    }

    #[test]
    fn group_and_friend_commands() {
        check(
            "/group create rust",
            Command::GroupCreate {
                name: "rust".into(),
                desc: None,
            },
        );
        check(
            "/group create #rust  Rustaceans welcome ",
            Command::GroupCreate {
                name: "rust".into(),
                desc: Some("Rustaceans welcome".into()),
            },
        );
        check("/group join #rust", Command::GroupJoin("rust".into()));
        check("/group leave", Command::GroupLeave(None));
        check(
            "/group leave rust",
            Command::GroupLeave(Some("rust".into())),
        );
        check("/group search ru st", Command::GroupSearch("ru st".into()));
        check("/group members", Command::GroupMembers(None));
        check("/friend add @alice", Command::FriendAdd("alice".into()));
        check(
            "/friend remove alice",
            Command::FriendRemove("alice".into()),
        );
        check_err("/group", "create, join, leave");
        check_err("/group dance", "unknown /group command `dance`");
        check_err("/group create", "a group name");
        check_err("/group join", "a group name");
        check_err("/friend add", "a user name");
        check_err("/friend hug bob", "unknown /friend command `hug`");
    }

    #[test]
    fn other_commands() {
        check("/who", Command::Who);
        check("/history", Command::History(None));
        check("/history 20", Command::History(Some(20)));
        check("/emoticons", Command::Emoticons(None));
        check("/emoticons on", Command::Emoticons(Some(true)));
        check("/emoticons off", Command::Emoticons(Some(false)));
        check("/login s3cret pass", Command::Login("s3cret pass".into()));
        check("/help", Command::Help);
        check("/quit", Command::Quit);
        check("/exit", Command::Quit);
        check_err("/history zero", "count of messages");
        check_err("/history 0", "count of messages");
        check_err("/emoticons maybe", "on, off");
        check_err("/login", "/login needs your password");
        check_err("/frobnicate", "unknown command /frobnicate");
        check_err("/", "empty command");
    }

    #[test]
    fn help_covers_every_command_of_the_issue() {
        let help = HELP.join("\n");
        for cmd in [
            "/join",
            "/msg",
            "/group create",
            "/group join",
            "/group leave",
            "/friend add",
            "/who",
            "/history",
            "/quit",
        ] {
            assert!(help.contains(cmd), "/help lacks {cmd}");
        }
    }
}
