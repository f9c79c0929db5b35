//! The `legacy.*` APIs the two legacy protocols call, the [`Translate`] hook
//! that turns the messages of the user's conversations into legacy objects, and the task that turns
//! presence into type-data's `NotifyUserStatusMes`.
//!
//! Every handler here composes the `Chat` methods the native APIs use; the
//! only thing it adds is the mapping between numbers (what legacy clients
//! know) and names (what the chat core uses), and the shapes of the legacy
//! answers.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use homer::{ApiError, Context, Homer, Push};
use rmq_core::{Envelope, PresenceEvent};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{apis, format_time, msgid_json, pushes, thrift, token_json as tj, type_data};
use crate::api::reply;
use crate::app::Chat;
use crate::error::{ChatError, Result};
use crate::session::{Acks, Later, Login, PushFuture, Translate};
use crate::wire::{self, Created, Done, LOBBY, Message, Role, Target};

/// How long a login waits for its offline messages before answering anyway.
const BACKLOG_WAIT: Duration = Duration::from_secs(5);
/// Most bytes of translated offline messages a login collects for its
/// answer; later ones are pushed (and still follow the answer).
const MAX_COLLECTED: usize = 8 << 20;
/// Most name → number pairs kept in memory.
const MAX_CACHED: usize = 100_000;
/// Most members listed per group in a msgid-json login answer.
const MAX_MEMBERS: usize = 1000;
/// Most users listed as online in a type-data login answer.
const MAX_ONLINE: usize = 10_000;

mod token_json;

/// Which legacy protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavour {
    MsgidJson,
    TypeData,
    TokenJson,
    Thrift,
}

impl Flavour {
    /// The flavour of the calling connection; `None` for native connections.
    fn of(ctx: &Context) -> Option<Flavour> {
        Flavour::of_protocol(ctx.connection().protocol())
    }

    /// The device a connection of this flavour is: each legacy protocol is
    /// one device of its user, with its own cursors.
    pub(crate) fn device(self) -> &'static str {
        match self {
            Flavour::MsgidJson => msgid_json::NAME,
            Flavour::TypeData => type_data::NAME,
            Flavour::TokenJson => tj::NAME,
            Flavour::Thrift => thrift::NAME,
        }
    }

    /// The flavour of a connection speaking `protocol`.
    fn of_protocol(protocol: &str) -> Option<Flavour> {
        match protocol {
            msgid_json::NAME => Some(Flavour::MsgidJson),
            type_data::NAME => Some(Flavour::TypeData),
            tj::NAME => Some(Flavour::TokenJson),
            thrift::NAME => Some(Flavour::Thrift),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// Params and replies: what the protocols put in calls and read from replies.

/// `legacy.login`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginParams {
    pub(crate) number: u64,
    pub(crate) password: String,
}

impl std::fmt::Debug for LoginParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginParams")
            .field("number", &self.number)
            .field("password", &wire::Redacted)
            .finish()
    }
}

/// `legacy.register`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterParams {
    pub(crate) name: String,
    pub(crate) password: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) number: Option<u64>,
}

impl std::fmt::Debug for RegisterParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterParams")
            .field("name", &self.name)
            .field("password", &wire::Redacted)
            .field("number", &self.number)
            .finish()
    }
}

/// The content of a successful `legacy.register`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Registered {
    pub(crate) number: u64,
}

/// Where `legacy.send` goes: a user's number, or a group's (0 = the lobby).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub(crate) enum Dest {
    User(u64),
    Group(u64),
}

/// `legacy.send`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SendParams {
    pub(crate) to: Dest,
    pub(crate) text: String,
}

/// `legacy.friend.add` and `legacy.group.join`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NumberParams {
    pub(crate) number: u64,
}

/// `legacy.group.create`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateGroupParams {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) desc: String,
}

/// The content of a successful type-data `legacy.login`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TypeDataLogin {
    /// The user's own number.
    pub(crate) number: u64,
    /// The numbers of the users online.
    pub(crate) users: Vec<u64>,
}

/// The status of a type-data login failure for an unknown number.
pub(crate) const NO_SUCH_USER: u16 = 404;

// ---------------------------------------------------------------------------
// Per-connection state.

/// What a legacy connection keeps in its homer session, shared between its
/// calls and its [`Translate`] hook. (Calls of one connection run one at a
/// time, in arrival order, so a login sent with a message right behind it
/// comes first: the server reads one call at a time, `max_in_flight(1)` in
/// `app.rs`.)
struct Shared {
    /// Offline messages collected during a login.
    collected: Mutex<Collected>,
}

#[derive(Default)]
struct Collected {
    on: bool,
    /// Each object with the time and id (uuid v7, in the order they were
    /// made) of its message: the logs are caught up one conversation after
    /// another, and old clients show offline messages in the order they
    /// were sent, also when two were sent in the same millisecond.
    objects: Vec<((u64, String), String)>,
    bytes: usize,
}

#[derive(Clone)]
struct LegacyConn(Arc<Shared>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn shared(ctx: &Context) -> Arc<Shared> {
    if let Some(LegacyConn(s)) = ctx.session().get::<LegacyConn>() {
        return s;
    }
    let s = Arc::new(Shared {
        collected: Mutex::new(Collected::default()),
    });
    ctx.session().insert(LegacyConn(s.clone()));
    s
}

// ---------------------------------------------------------------------------
// The service.

/// The legacy side of the chat service.
pub(crate) struct Legacy {
    pub(super) chat: Chat,
    /// Users' numbers never change: name → number, bounded.
    numbers: Mutex<HashMap<String, u64>>,
}

pub(super) type Handler<P> =
    fn(Arc<Legacy>, Context, Flavour, P) -> Pin<Box<dyn Future<Output = Result<Value>> + Send>>;

/// Register one `legacy.*` API: refused (404) to native connections, params
/// read only after that.
pub(super) fn api<P: DeserializeOwned + Send + 'static>(
    homer: &Homer,
    legacy: &Arc<Legacy>,
    name: &'static str,
    handler: Handler<P>,
) {
    let l = legacy.clone();
    homer.api(name, move |ctx: Context, params: Value| {
        let l = l.clone();
        async move {
            let Some(flavour) = Flavour::of(&ctx) else {
                return Err(ApiError::unknown_api(name));
            };
            let params = match flavour {
                Flavour::TokenJson => reply(token_json::authorize(&l, &ctx, name, params).await)?,
                _ => params,
            };
            let p: P = serde_json::from_value(params).map_err(|e| ApiError::bad_params(name, e))?;
            reply(handler(l, ctx, flavour, p).await)
        }
    });
}

/// The JSON content of a legacy reply.
pub(super) fn content(reply: &impl Serialize) -> Result<Value> {
    serde_json::to_value(reply).map_err(|e| ChatError::failed("encoding a reply", e))
}

pub(crate) fn register(homer: &Homer, legacy: &Arc<Legacy>) {
    api::<LoginParams>(homer, legacy, apis::LOGIN, |l, ctx, f, p| {
        Box::pin(async move { l.login(&ctx, f, p).await })
    });
    api::<RegisterParams>(homer, legacy, apis::REGISTER, |l, ctx, _, p| {
        Box::pin(async move {
            let reg = wire::Register {
                name: p.name,
                password: p.password,
                number: p.number,
            };
            let made = l.chat.register(&ctx, reg).await?;
            l.remember(&made.name, made.number);
            content(&Registered {
                number: made.number,
            })
        })
    });
    api::<Value>(homer, legacy, apis::LOGOUT, |l, ctx, _, _| {
        Box::pin(async move {
            l.logout(&ctx).await?;
            content(&Done {})
        })
    });
    api::<SendParams>(homer, legacy, apis::SEND, |l, ctx, _, p| {
        Box::pin(async move {
            let login = Chat::login(&ctx)?;
            let to = match p.to {
                Dest::User(n) => Target::user(l.name_of(n).await?),
                Dest::Group(n) => Target::group(l.group_name(n).await?),
            };
            let sent = l
                .chat
                .send(&login, ctx.peer_ip(), wire::SendMessage::new(to, p.text))
                .await?;
            Ok(json!({ "id": sent.id }))
        })
    });
    api::<NumberParams>(homer, legacy, apis::ADD_FRIEND, |l, ctx, _, p| {
        Box::pin(async move {
            let login = Chat::login(&ctx)?;
            let friend = l.name_of(p.number).await?;
            l.chat.add_friend(login.name(), &friend).await?;
            content(&Done {})
        })
    });
    api::<CreateGroupParams>(homer, legacy, apis::CREATE_GROUP, |l, ctx, _, p| {
        Box::pin(async move {
            let login = Chat::login(&ctx)?;
            l.chat.create_group(login.name(), &p.name, &p.desc).await?;
            content(&Created { name: p.name })
        })
    });
    api::<NumberParams>(homer, legacy, apis::JOIN_GROUP, |l, ctx, _, p| {
        Box::pin(async move {
            let login = Chat::login(&ctx)?;
            let group = l.group_name(p.number).await?;
            l.chat.join_group(login.name(), &group).await?;
            content(&Done {})
        })
    });
    token_json::register(homer, legacy);
}

impl Legacy {
    pub(crate) fn new(chat: Chat) -> Self {
        Legacy {
            chat,
            numbers: Mutex::new(HashMap::new()),
        }
    }

    fn remember(&self, name: &str, number: u64) {
        if name.is_empty() || number == 0 {
            return;
        }
        let mut numbers = lock(&self.numbers);
        if numbers.len() >= MAX_CACHED {
            numbers.clear();
        }
        numbers.insert(name.to_owned(), number);
    }

    /// A user's number; 0 for a user that does not exist (any more), or
    /// when it cannot be read now.
    async fn number_of(&self, name: &str) -> u64 {
        self.try_number_of(name).await.unwrap_or(0)
    }

    /// A user's number; 0 for a user that does not exist (any more);
    /// [`Later`] when the store cannot be read.
    async fn try_number_of(&self, name: &str) -> Result<u64, Later> {
        if let Some(n) = lock(&self.numbers).get(name) {
            return Ok(*n);
        }
        match self.chat.inner.auth.users().get(name).await {
            Ok(Some(user)) => {
                let n = user.number().unwrap_or_default();
                self.remember(name, n);
                Ok(n)
            }
            Ok(None) => Ok(0),
            Err(e) => {
                tracing::warn!(user = name, error = %e, "looking up a user's number");
                Err(Later)
            }
        }
    }

    /// The name of the user with `number`, or 404.
    pub(super) async fn name_of(&self, number: u64) -> Result<String> {
        match self.chat.inner.auth.users().get_by_number(number).await {
            Ok(Some(user)) => {
                self.remember(user.name(), number);
                Ok(user.name().to_owned())
            }
            Ok(None) => Err(ChatError::not_found(
                "no_such_user",
                format!("no user has number {number}"),
            )),
            Err(e) => Err(ChatError::failed("reading a user", e)),
        }
    }

    /// The name of the group with `number` (0 is the lobby), or 404.
    async fn group_name(&self, number: u64) -> Result<String> {
        if number == 0 {
            return Ok(LOBBY.to_owned());
        }
        match self.chat.inner.groups.find_one_by("number", number).await? {
            Some((_, doc)) => Ok(doc.name),
            None => Err(ChatError::not_found(
                "no_such_group",
                format!("no group has number {number}"),
            )),
        }
    }

    /// A group's number (the lobby's is 0); `None` if it is gone; [`Later`]
    /// when the store cannot be read.
    async fn group_number(&self, name: &str) -> Result<Option<u64>, Later> {
        if name == LOBBY {
            return Ok(Some(0));
        }
        match self.chat.inner.groups.get(name).await {
            Ok(doc) => Ok(doc.map(|d| d.number)),
            Err(e) => {
                tracing::warn!(group = name, error = %e, "looking up a group's number");
                Err(Later)
            }
        }
    }

    async fn login(
        self: &Arc<Self>,
        ctx: &Context,
        flavour: Flavour,
        p: LoginParams,
    ) -> Result<Value> {
        if flavour == Flavour::Thrift {
            return Err(thrift_logs_in_by_name());
        }
        if flavour == Flavour::TypeData {
            // type-data tells an unknown number (500) from a wrong password (403).
            match self.chat.inner.auth.users().get_by_number(p.number).await {
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Err(ChatError::not_found(
                        "no_such_user",
                        format!("no user has number {}", p.number),
                    ));
                }
                Err(e) => return Err(ChatError::failed("reading a user", e)),
            }
        }
        let how = self.chat.login_with_password(
            ctx,
            wire::Login::by_number(p.number, p.password).device(flavour.device()),
            Acks::OnWrite,
        );
        self.log_in(ctx, flavour, how).await
    }

    /// Log `ctx`'s connection in the way `how` does, and answer with the
    /// protocol's login reply, the messages that waited included.
    async fn log_in<T>(
        self: &Arc<Self>,
        ctx: &Context,
        flavour: Flavour,
        how: impl Future<Output = Result<T>>,
    ) -> Result<Value> {
        let shared = shared(ctx);
        ctx.session()
            .insert(translator(self.clone(), flavour, shared.clone()));
        start_collecting(&shared);
        if let Err(e) = how.await {
            stop_collecting(&shared);
            return Err(e);
        }
        let reply = self.login_reply(ctx, flavour, &shared).await;
        if reply.is_err() {
            stop_collecting(&shared);
        }
        reply
    }

    async fn login_reply(&self, ctx: &Context, flavour: Flavour, shared: &Shared) -> Result<Value> {
        let login = Chat::login(ctx)?;
        self.remember(login.name(), login.0.number);
        // Build the answer before collecting ends: what arrives meanwhile is
        // offline mail too.
        let answer = match flavour {
            Flavour::MsgidJson => Answer::Msgid {
                friends: self.friends(login.name()).await?,
                groups: self.groups(login.name()).await?,
            },
            Flavour::TypeData => {
                ctx.subscribe(super::STATUS_TOPIC);
                let names = self.chat.online_for(login.name(), MAX_ONLINE).await?;
                let mut users = Vec::with_capacity(names.len());
                for name in names {
                    match self.number_of(&name).await {
                        0 => {}
                        n => users.push(n),
                    }
                }
                Answer::TypeData { users }
            }
            Flavour::TokenJson => Answer::Token(self.token_login_data(&login).await?),
            Flavour::Thrift => return Err(thrift_logs_in_by_name()),
        };
        self.wait_for_backlog(&login).await;
        let offline = stop_collecting(shared);
        let (content, rest) = match answer {
            Answer::Msgid { friends, groups } => {
                let (ack, rest) =
                    msgid_json::login_ack(login.0.number, login.name(), offline, &friends, &groups);
                (Value::String(ack), rest)
            }
            Answer::TypeData { users } => (
                content(&TypeDataLogin {
                    number: login.0.number,
                    users,
                })?,
                offline,
            ),
            Answer::Token(data) => tj::login_data(data, offline),
        };
        for object in rest {
            let _ = ctx.push_after_reply(Push::new(pushes::OFFLINE, object));
        }
        let _ = ctx.push_after_reply(Push::new(pushes::RELEASE, Value::Null));
        Ok(content)
    }

    /// Wait until every message that waited for the user went through the
    /// [`Translate`] hook: the pump caught up on the conversations.
    async fn wait_for_backlog(&self, login: &Login) {
        if !login.caught_up(BACKLOG_WAIT).await {
            tracing::warn!(
                user = login.name(),
                "offline messages not all seen within {BACKLOG_WAIT:?}; answering the login anyway"
            );
        }
    }

    /// msgid-json's `friends`: JSON strings of `{"id","name","state"}`.
    async fn friends(&self, me: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for f in self.chat.friend_list(me).await? {
            let friend = msgid_json::User {
                id: self.number_of(&f.name).await,
                name: &f.name,
                state: msgid_json::state(f.online),
                role: None,
            };
            out.push(msgid_json::to_json(&friend));
        }
        Ok(out)
    }

    /// msgid-json's `groups` (the lobby is not listed): JSON strings of
    /// `{"id","groupname","groupdesc","users"}`.
    async fn groups(&self, me: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for g in self.chat.my_groups(me).await? {
            let name = g.name.as_str();
            if name == LOBBY {
                continue;
            }
            let Ok(number) = self.group_number(name).await else {
                return Err(ChatError::Unavailable {
                    service: "storage",
                    what: "reading a group's number",
                    source: "the store did not answer".into(),
                });
            };
            let Some(number) = number else {
                continue; // deleted meanwhile
            };
            let scope = crate::groups::scope(name);
            let members = self
                .chat
                .inner
                .auth
                .scope_members(&scope, None, MAX_MEMBERS)
                .await?;
            let mut users = Vec::with_capacity(members.len());
            for (member, member_role) in members {
                let user = msgid_json::User {
                    id: self.number_of(&member).await,
                    name: &member,
                    state: msgid_json::state(self.chat.is_online(&member).await?),
                    role: Some(if member_role == Role::Owner.as_str() {
                        "creator"
                    } else {
                        "normal"
                    }),
                };
                users.push(msgid_json::to_json(&user));
            }
            let group = msgid_json::Group {
                id: number,
                groupname: name,
                groupdesc: &g.desc,
                users,
            };
            out.push(msgid_json::to_json(&group));
        }
        Ok(out)
    }

    async fn logout(&self, ctx: &Context) -> Result<()> {
        self.chat.logout(ctx).await?;
        ctx.unsubscribe(super::STATUS_TOPIC);
        Ok(())
    }

    /// The legacy objects for a message delivered to `me` (one, or a long
    /// msgid-json text in parts); `None` when it has no legacy shape;
    /// [`Later`] when the store cannot be read now.
    async fn translate(
        &self,
        flavour: Flavour,
        m: Message,
        me: u64,
    ) -> Result<Option<Vec<String>>, Later> {
        let from = self.try_number_of(&m.from).await?;
        Ok(match flavour {
            Flavour::MsgidJson => {
                let time = format_time(m.ts);
                match (&m.to.user, &m.to.group) {
                    (Some(_), _) => Some(msgid_json::one_chat(from, &m.from, me, &m.text, &time)),
                    (None, Some(group)) => self.group_number(group).await?.map(|number| {
                        msgid_json::group_chat(from, &m.from, number, &m.text, &time)
                    }),
                    (None, None) => None,
                }
            }
            Flavour::TypeData => {
                let prefix = match (&m.to.user, &m.to.group) {
                    (Some(_), _) => "(private) ".to_owned(),
                    (None, Some(g)) if g == LOBBY => String::new(),
                    (None, Some(g)) => format!("({g}) "),
                    (None, None) => return Ok(None),
                };
                Some(vec![type_data::sms(
                    &format!("{prefix}{}", m.text),
                    from,
                    &m.from,
                )])
            }
            Flavour::TokenJson => self.token_json_object(&m, from).await?,
            // Thrift connections have their own hook (`thrift::api`).
            Flavour::Thrift => None,
        })
    }
}

/// `legacy.login` is by number; the Thrift protocol calls `legacy.login.name`.
fn thrift_logs_in_by_name() -> ChatError {
    ChatError::invalid(
        "bad_params",
        "thrift connections log in with legacy.login.name",
    )
}

enum Answer {
    Msgid {
        friends: Vec<String>,
        groups: Vec<String>,
    },
    TypeData {
        users: Vec<u64>,
    },
    Token(serde_json::Map<String, Value>),
}

fn start_collecting(shared: &Shared) {
    let mut c = lock(&shared.collected);
    c.on = true;
    c.objects.clear();
    c.bytes = 0;
}

/// Stop collecting; what was collected, oldest first (the parts of one
/// message stay in their order).
fn stop_collecting(shared: &Shared) -> Vec<String> {
    let mut c = lock(&shared.collected);
    c.on = false;
    c.bytes = 0;
    let mut objects = std::mem::take(&mut c.objects);
    objects.sort_by(|(a, _), (b, _)| a.cmp(b));
    objects.into_iter().map(|(_, o)| o).collect()
}

/// The hook the pump calls for each message to a legacy connection.
fn translator(legacy: Arc<Legacy>, flavour: Flavour, shared: Arc<Shared>) -> Translate {
    Translate(Arc::new(move |env: &Envelope, me: &Login| -> PushFuture {
        // A member's own group message is not sent back to them.
        let message =
            Message::from_envelope(env).filter(|m| m.to.user.is_some() || m.from != me.name());
        let Some(message) = message else {
            return Box::pin(std::future::ready(Ok(None)));
        };
        let (legacy, shared, my_number) = (legacy.clone(), shared.clone(), me.0.number);
        let sent = (message.ts, message.id.clone());
        Box::pin(async move {
            let Some(mut objects) = legacy.translate(flavour, message, my_number).await? else {
                return Ok(None);
            };
            let mut c = lock(&shared.collected);
            let bytes: usize = objects.iter().map(String::len).sum();
            if c.on && c.bytes + bytes <= MAX_COLLECTED {
                c.bytes += bytes;
                c.objects
                    .extend(objects.into_iter().map(|o| (sent.clone(), o)));
                return Ok(None);
            }
            drop(c);
            let content = match objects.len() {
                1 => Value::String(objects.swap_remove(0)),
                _ => Value::from(objects),
            };
            Ok(Some(Push::new(pushes::OBJECT, content)))
        })
    }))
}

/// Push every login and logout, with the user's number, to the type-data
/// connections (`NotifyUserStatusMes`).
pub(crate) async fn statuses(legacy: Arc<Legacy>) {
    let chat = &legacy.chat;
    loop {
        let mut stream = match chat.inner.broker.subscribe_presence().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "subscribing to presence for legacy clients; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(event) = stream.recv().await {
            let PresenceEvent::Changed(p) = event else {
                continue;
            };
            if chat.inner.hub.subscriber_count(super::STATUS_TOPIC) == 0 {
                continue;
            }
            let number = legacy.number_of(p.user.as_str()).await;
            if number == 0 {
                continue;
            }
            let status = if p.online {
                type_data::ONLINE
            } else {
                type_data::OFFLINE
            };
            let push = Push::new(
                pushes::STATUS,
                json!({ "userId": number, "status": status }),
            );
            chat.inner.hub.publish(super::STATUS_TOPIC, push);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
