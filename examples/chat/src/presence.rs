//! Presence: every node hears every login and logout (through the broker)
//! and pushes it to the interested users connected to it — those who have
//! the user as a friend, and co-members of the user's groups other than the
//! lobby.

use std::collections::BTreeSet;
use std::time::Duration;

use homer::Push;
use rmq_core::{Presence, PresenceEvent};

use crate::app::Chat;
use crate::session::user_topic;
use crate::wire::{LOBBY, PresenceChange, push};

/// Most co-members looked at per group for one presence change.
const MAX_FANOUT_PER_GROUP: usize = 1000;

pub(crate) async fn run(chat: Chat) {
    loop {
        let mut stream = match chat.inner.broker.subscribe_presence().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "subscribing to presence; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(event) = stream.recv().await {
            match event {
                PresenceEvent::Changed(p) => {
                    if let Err(e) = fan_out(&chat, &p).await {
                        tracing::warn!(user = %p.user, error = %e, "pushing presence");
                    }
                }
                PresenceEvent::Lagged => tracing::warn!("presence events were missed"),
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn fan_out(
    chat: &Chat,
    p: &Presence,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let user = p.user.as_str();
    let mut to: BTreeSet<String> = chat.watchers(user).await?.into_iter().collect();
    for (scope, _) in chat.inner.auth.roles_of(user).await? {
        let Some(group) = scope.strip_prefix("group/") else {
            continue;
        };
        if group == LOBBY {
            continue;
        }
        for (member, _) in chat
            .inner
            .auth
            .scope_members(&scope, None, MAX_FANOUT_PER_GROUP)
            .await?
        {
            to.insert(member);
        }
    }
    to.remove(user);
    // Those the user blocked see none of their presence.
    for blocked in chat.blocked_by(user).await? {
        to.remove(&blocked);
    }
    let push = Push::json(
        push::PRESENCE,
        &PresenceChange {
            user: user.to_owned(),
            online: p.online,
        },
    )?;
    for r in to {
        chat.inner.hub.publish(&user_topic(&r), push.clone());
    }
    Ok(())
}
