//! Node liveness: how a cluster notices a node that died without saying so.
//!
//! Every node writes a heartbeat — the wall-clock time in ms — under its node
//! id in the `chat.inner.nodes` tree every [`BEAT`]. An entry of the online
//! tree (`user \0 device -> {node, since}`) counts only while its node's beat is younger
//! than [`STALE`]; `is_online` and `online_users` ignore the others at once.
//! Every node also runs a sweeper every [`BEAT`] that removes the entries of
//! stale nodes with a compare-and-swap (so exactly one node wins each entry)
//! and publishes offline presence for them.
//!
//! The bound: a user of a node that was SIGKILLed, lost its network or its
//! store is shown offline by `user.online`/`who-is-online` within [`STALE`]
//! (6 s) plus one beat of clock granularity, and other nodes push the offline
//! presence within `STALE + BEAT` (8 s) after the last beat. Nodes' clocks must
//! agree to well under [`STALE`] (NTP is plenty).
//!
//! A node judges others only after it has itself been beating without a failure
//! for [`STALE`]: so a node that just started, or whose store was away (when
//! everyone's store is away, every beat stops), gives the others the same time
//! to beat again before it takes them for dead. The bound above therefore
//! counts from the later of the dead node's last beat and the moment the
//! observing node's own beats resumed.
//!
//! A node that could not beat for a while (its store was away) may have had
//! its users swept by the others; when it beats again it puts back the online
//! entries of the users still connected to it, and announces them.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rmq_core::Presence;
use serde::{Deserialize, Serialize};

use crate::app::Chat;
use crate::session::Login;

/// How often a node writes its heartbeat and sweeps stale entries.
pub(crate) const BEAT: Duration = Duration::from_secs(2);
/// A node whose last heartbeat is older than this is taken for dead.
pub(crate) const STALE: Duration = Duration::from_secs(6);
/// A dead node's heartbeat record is deleted after this long.
const FORGET: Duration = Duration::from_secs(3600);

/// What the online tree holds for a logged-in user.
#[derive(Serialize, Deserialize)]
pub(crate) struct OnlineEntry {
    pub(crate) node: String,
    pub(crate) since: u64,
}

impl OnlineEntry {
    pub(crate) fn bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn stale_ms() -> u64 {
    STALE.as_millis() as u64
}

/// The last heartbeat of every node, as stored.
pub(crate) async fn beats(chat: &Chat) -> nopi::Result<HashMap<String, u64>> {
    let rows = chat.inner.nodes.scan(nopi::Scan::all()).await?;
    Ok(rows
        .into_iter()
        .filter_map(|(k, v)| {
            let node = String::from_utf8(k).ok()?;
            let beat = std::str::from_utf8(&v).ok()?.parse().ok()?;
            Some((node, beat))
        })
        .collect())
}

/// True while this node may not take others for dead: it has not been
/// beating without a failure for [`STALE`] yet.
fn judging_withheld(chat: &Chat, now: u64) -> bool {
    let since = chat.inner.healthy_since.load(Ordering::Relaxed);
    now.saturating_sub(since) < stale_ms()
}

/// Whether a heartbeat written at `beat` still counts at `now`.
fn fresh(chat: &Chat, beat: Option<u64>, now: u64) -> bool {
    beat.is_some_and(|b| now.saturating_sub(b) <= stale_ms()) || judging_withheld(chat, now)
}

/// Whether an online entry of `node` counts, given the nodes' beats.
pub(crate) fn alive(chat: &Chat, node: &str, beats: &HashMap<String, u64>, now: u64) -> bool {
    node == chat.inner.node || fresh(chat, beats.get(node).copied(), now)
}

/// Whether `node` is alive, reading its heartbeat from the store.
pub(crate) async fn node_alive(chat: &Chat, node: &str) -> nopi::Result<bool> {
    if node == chat.inner.node {
        return Ok(true);
    }
    let beat = chat.inner.nodes.get(node).await?;
    let beat: Option<u64> = beat
        .as_deref()
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.parse().ok());
    Ok(fresh(chat, beat, now_ms()))
}

/// Write this node's heartbeat once (done at start, before listening).
pub(crate) async fn beat(chat: &Chat) -> nopi::Result<()> {
    chat.inner
        .nodes
        .insert(&chat.inner.node, now_ms().to_string().into_bytes())
        .await
}

/// Remove the online entries this node left behind when it stopped without
/// clearing them (killed, crashed, lost power), and announce those users
/// offline. Called at start, before listening: no entry of this node can be
/// a live connection yet. (Two live processes must never share a node id.)
pub(crate) async fn forget_previous_run(chat: &Chat) -> nopi::Result<usize> {
    let forgotten = clear_entries(chat, |entry| entry.node == chat.inner.node).await?;
    if forgotten > 0 {
        tracing::info!(
            users = forgotten,
            "cleared online entries left by this node's previous run"
        );
    }
    Ok(forgotten)
}

/// Remove every online entry for which `gone` holds, each with a
/// compare-and-swap (a newer login, or another node sweeping, wins), and
/// announce those users offline. The announcements are not awaited: with
/// RabbitMQ away each may wait up to the broker timeout, and the caller (the
/// beat loop) must go on meanwhile.
async fn clear_entries(chat: &Chat, gone: impl Fn(&OnlineEntry) -> bool) -> nopi::Result<usize> {
    let mut cleared = 0;
    for (key, value) in chat.inner.online.scan(nopi::Scan::all()).await? {
        let Ok(entry) = serde_json::from_slice::<OnlineEntry>(&value) else {
            continue;
        };
        if !gone(&entry) {
            continue;
        }
        let Some(name) = crate::session::user_of_key(&key).map(str::to_owned) else {
            continue;
        };
        if chat
            .inner
            .online
            .compare_and_swap(&key, Some(&value), None)
            .await?
            .is_err()
        {
            continue;
        }
        cleared += 1;
        tracing::info!(user = %name, node = %entry.node, "user offline on a device: its node is gone");
        if let Ok(user) = rmq_core::UserId::new(name.as_str()) {
            let chat = chat.clone();
            tokio::spawn(async move { chat.announce_offline(&user).await });
        }
    }
    Ok(cleared)
}

/// Beat and sweep forever.
pub(crate) async fn run(chat: Chat) {
    let mut tick = tokio::time::interval(BEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_ok = now_ms();
    let mut failing = false;
    loop {
        tick.tick().await;
        match beat(&chat).await {
            Ok(()) => {
                let now = now_ms();
                if failing {
                    // Judge others only after they have had STALE to beat again.
                    chat.inner.healthy_since.store(now, Ordering::Relaxed);
                }
                // Beats were missed long enough for others to sweep us.
                if failing || now.saturating_sub(last_ok) > stale_ms() / 2 {
                    reassert(&chat).await;
                }
                failing = false;
                last_ok = now;
            }
            Err(e) => {
                // Withhold judging at once: the store may come back before
                // the next beat, showing every other node's beat as old.
                failing = true;
                chat.inner.healthy_since.store(u64::MAX, Ordering::Relaxed);
                tracing::warn!(error = %e, "writing this node's heartbeat");
            }
        }
        if let Err(e) = sweep(&chat).await {
            tracing::warn!(error = %e, "sweeping the online entries of dead nodes");
        }
    }
}

/// Remove the online entries of dead nodes and announce those users offline.
async fn sweep(chat: &Chat) -> nopi::Result<()> {
    let beats = beats(chat).await?;
    let now = now_ms();
    if judging_withheld(chat, now) {
        return Ok(());
    }
    clear_entries(chat, |entry| !alive(chat, &entry.node, &beats, now)).await?;
    for (node, b) in beats {
        if node != chat.inner.node && now.saturating_sub(b) > FORGET.as_millis() as u64 {
            let old = b.to_string();
            let _ = chat
                .inner
                .nodes
                .compare_and_swap(&node, Some(old.as_bytes()), None)
                .await?;
        }
    }
    Ok(())
}

/// Put back the online entries of this node's logged-in users that are
/// missing (swept while this node could not beat), and announce them.
async fn reassert(chat: &Chat) {
    let logins: Vec<Login> = chat
        .inner
        .hub
        .connections()
        .into_iter()
        .filter_map(|c| c.session().get::<Login>())
        .collect();
    for login in logins {
        let name = login.name().to_owned();
        let entry = OnlineEntry {
            node: chat.inner.node.clone(),
            since: login.0.since,
        };
        let key = crate::session::online_key(&name, &login.0.device);
        match chat
            .inner
            .online
            .compare_and_swap(&key, None, Some(&entry.bytes()))
            .await
        {
            Ok(Ok(())) => {
                let mut presence = Presence::new(login.0.user.clone(), true);
                presence.ts = login.0.since;
                if let Err(e) = chat.inner.broker.publish_presence(&presence).await {
                    tracing::warn!(user = %name, error = %e, "announcing presence");
                }
            }
            Ok(Err(_)) => {}
            Err(e) => tracing::warn!(user = %name, error = %e, "restoring online state"),
        }
    }
}
