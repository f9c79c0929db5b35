//! A chat server: accounts (tiny_storage), sessions (easy_cookie), routing
//! (rmq_core) and the server (homer). Built step by step in `docs/guide.md`.

use easy_cookie::{Key, KeyRing, Sessions};
use homer::{ApiError, Context, Homer, Push};
use rmq_core::{Broker, Envelope, LocalBroker, RoomId, To, UserId};
use serde_json::json;
use tiny_storage::{NewUser, UserModel, Users};

/// What every handler shares.
struct Chat {
    users: Users,
    sessions: Sessions<()>,
    broker: LocalBroker,
}

/// In a connection's homer session: who logged in, and the pump of their inbox.
#[derive(Clone)]
struct Me(UserId, tokio::task::AbortHandle);

#[derive(serde::Deserialize)]
struct Login {
    name: String,
    password: String,
}

#[derive(serde::Deserialize)]
struct Token {
    token: String,
}

#[derive(serde::Deserialize)]
struct Say {
    room: String,
    text: Option<String>,
}

/// Errors of the composed crates as replies: 400 and 401.
fn bad(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("bad_request", e.to_string())
}
fn denied(e: impl std::fmt::Display) -> ApiError {
    ApiError::unauthorized("unauthorized", e.to_string())
}

fn me(ctx: &Context) -> Result<UserId, ApiError> {
    let me = ctx.session().get::<Me>();
    Ok(me.ok_or_else(|| denied("log in first"))?.0)
}

/// Logs `user` in on this connection: their inbox is pushed to it from now on.
async fn attach(chat: &Chat, ctx: &Context, user: UserId) -> Result<(), ApiError> {
    let mut inbox = chat.broker.subscribe(&user).await.map_err(bad)?;
    let conn = ctx.connection().clone();
    let pump = tokio::spawn(async move {
        while let Some(Ok(delivery)) = inbox.recv().await {
            let e = delivery.envelope();
            let room = e.to.room().map(RoomId::as_str);
            let text = String::from_utf8_lossy(&e.body);
            let push = json!({ "id": e.id, "from": e.from.as_str(), "room": room, "text": text });
            // Unacked deliveries go back to the inbox when the pump stops.
            if conn.push(Push::new("message", push)).is_err() || delivery.ack().await.is_err() {
                break;
            }
        }
    });
    detach(ctx);
    ctx.session().insert(Me(user, pump.abort_handle()));
    Ok(())
}

/// Logs the connection out: the pump stops.
fn detach(ctx: &Context) {
    if let Some(Me(_, pump)) = ctx.session().remove::<Me>() {
        pump.abort();
    }
}

/// The chat server over `store`, its APIs registered; start its listeners.
pub async fn chat_server(store: &nopi::Store) -> Result<Homer, Box<dyn std::error::Error>> {
    let model = UserModel::builder().user_name("name").password("password");
    let keys = KeyRing::new(Key::generate()?); // from your configuration in production
    // The state lives as long as the process; every handler borrows it.
    let c: &'static Chat = Box::leak(Box::new(Chat {
        users: Users::open(store, model.build()?).await?,
        sessions: Sessions::builder(keys).build(store.tree("sessions").await?)?,
        broker: LocalBroker::builder(store.clone()).build().await?,
    }));
    let homer = Homer::builder().build()?;
    homer.api("user.register", move |_: Context, p: Login| async move {
        let user = UserId::new(&p.name).map_err(bad)?;
        let new = NewUser::new(p.name).password(p.password);
        c.users.create(new).await.map_err(bad)?;
        c.broker.ensure_inbox(&user).await.map_err(bad)?;
        Ok::<_, ApiError>(json!({ "name": user.as_str() }))
    });
    homer.api("user.login", move |ctx: Context, p: Login| async move {
        let user = c.users.verify(p.name, "password", p.password).await;
        let name = user.map_err(denied)?.name().to_owned();
        let login = c.sessions.start(&name, ()).await.map_err(bad)?;
        attach(c, &ctx, UserId::new(&name).map_err(bad)?).await?;
        Ok::<_, ApiError>(json!({ "token": login.token }))
    });
    homer.api("user.resume", move |ctx: Context, p: Token| async move {
        let session = c.sessions.get(&p.token).await.map_err(denied)?;
        attach(c, &ctx, UserId::new(&session.user).map_err(bad)?).await?;
        Ok::<_, ApiError>(json!({ "name": session.user }))
    });
    homer.api("user.logout", move |ctx: Context, p: Token| async move {
        c.sessions.revoke(&p.token).await.map_err(bad)?;
        detach(&ctx);
        Ok::<_, ApiError>(json!({}))
    });
    homer.api("room.join", move |ctx: Context, p: Say| async move {
        let room = RoomId::new(&p.room).map_err(bad)?;
        c.broker.create_room(&room).await.map_err(bad)?;
        c.broker.join(&room, &me(&ctx)?).await.map_err(bad)?;
        Ok::<_, ApiError>(json!({ "joined": room.as_str() }))
    });
    homer.api("chat.send", move |ctx: Context, p: Say| async move {
        let to = To::Room(RoomId::new(&p.room).map_err(bad)?);
        let message = Envelope::builder(me(&ctx)?, to)
            .from_ip(ctx.peer_ip()) // set by the server, never by the client
            .body(p.text.unwrap_or_default())
            .build();
        c.broker.publish(&message).await.map_err(bad)?;
        Ok::<_, ApiError>(json!({ "id": message.id }))
    });
    homer.on_close(|ctx: Context, _| async move { detach(&ctx) });
    Ok(homer)
}
