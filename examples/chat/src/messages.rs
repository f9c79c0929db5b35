//! Messages: send (idempotent by `client_id`) into the conversation logs, and ack.
//!
//! `client_id` idempotency lives in the tree `chat.inner.sent`:
//!
//! ```text
//! <user> \0 <client_id>  -> JSON {"id","ts","at","pending"}
//! ```
//!
//! The first send claims the key with `pending: true` and the id and time
//! it will give the message, publishes, then clears `pending`: the record is
//! now its reply, returned to every repeat. A claim left pending for longer
//! than [`ABANDONED`] (its node died mid-send) is taken over by the next
//! repeat, which publishes again *with the same id* — so a message is never
//! seen twice by a client that drops duplicates by id, even when the first
//! publish did happen. Records older than a day are purged.

use std::time::Duration;

use nopi::Scan;
use rmq_core::To;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::app::{Chat, perm};
use crate::error::{ChatError, Result};
use crate::session::Login;
use crate::wire::{LOBBY, SendMessage, Sent, Target, route, text_envelope};

/// Longest `client_id`, in bytes.
const MAX_CLIENT_ID: usize = 64;
/// Most ids one `chat.ack` may name.
const MAX_ACK_IDS: usize = 1000;
/// How long a pending claim may wait for its send before a repeat takes it over.
const ABANDONED: Duration = Duration::from_secs(5);
/// How long `client_id` records are kept.
const KEEP_SENT: Duration = Duration::from_secs(24 * 3600);

/// A `client_id` record: the message's id and time, and whether its send is
/// still in flight.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    id: Uuid,
    ts: u64,
    /// The message's seq in its conversation, once stored.
    #[serde(default)]
    seq: u64,
    /// When the record was last written (ms), for purging and takeovers.
    at: u64,
    #[serde(default)]
    pending: bool,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Chat {
    /// A message's text (of a send or an edit) is not empty and within
    /// `--max-text`.
    pub(crate) fn check_text(&self, text: &str) -> Result<()> {
        if text.is_empty() {
            return Err(ChatError::invalid("empty", "a message needs some text"));
        }
        let max = self.inner.config.max_text;
        if text.len() > max {
            // homer's words for a request over a limit.
            let over = homer::ApiError::too_large(text.len(), max);
            return Err(ChatError::too_large("too_large", over.message()));
        }
        Ok(())
    }

    /// Route one message from `login`, sent from `ip`.
    pub(crate) async fn send(
        &self,
        login: &Login,
        ip: std::net::IpAddr,
        p: SendMessage,
    ) -> Result<Sent> {
        let me = login.name();
        self.check_text(&p.text)?;
        let Some(to) = route(&p.to) else {
            return Err(ChatError::invalid(
                "bad_target",
                "`to` is {\"group\"}, {\"user\"} or {\"user\",\"group\"} with valid names",
            ));
        };
        self.may_send(me, &p.to).await?;
        if let Err(wait) = self.inner.abuse.send.allow(me) {
            self.inner.metrics.rate_limited(crate::metrics::Limit::Send);
            let (rate, burst) = (self.inner.config.send_rate, self.inner.config.send_burst);
            return Err(ChatError::TooMany {
                code: "rate_limited",
                message: homer::ApiError::rate_limited(rate, burst)
                    .message()
                    .to_owned(),
                retry_after: wait,
            });
        }
        let (id, ts) = (Uuid::now_v7(), now_ms());
        let claim = match &p.client_id {
            Some(cid) => match self.claim(me, cid, id, ts).await? {
                Claim::Done(first) => return Ok(first),
                Claim::Mine { key, record } => Some((key, record)),
            },
            None => None,
        };
        let (id, ts) = claim.as_ref().map_or((id, ts), |(_, r)| (r.id, r.ts));
        let direct = match &to {
            To::User(user) | To::UserInRoom { user, .. } => Some(user.clone()),
            _ => None,
        };
        let env = text_envelope(&login.0.user, ip, to, &p.text, id, ts);
        login.sending(id);
        match self.inner.log.append(&env).await {
            Ok(appended) => {
                self.inner.metrics.sent();
                if let Some(peer) = direct
                    && appended.seq == 1
                {
                    // The first message of a direct conversation.
                    let me = &login.0.user;
                    self.tell_follow(me, &appended.conversation, true).await;
                    if &peer != me {
                        self.tell_follow(&peer, &appended.conversation, true).await;
                    }
                }
                let sent = Sent {
                    id: id.to_string(),
                    ts,
                    seq: appended.seq,
                };
                if let Some((key, mut record)) = claim {
                    record.seq = appended.seq;
                    record.pending = false;
                    record.at = now_ms();
                    let bytes = serde_json::to_vec(&record).unwrap_or_default();
                    if let Err(e) = self.inner.sent.insert(key, bytes).await {
                        tracing::warn!(error = %e, "recording a client_id");
                    }
                }
                Ok(sent)
            }
            Err(e) => {
                // The message may or may not have been routed: keep the claim
                // (with its id), so a repeat publishes the same message again.
                drop(claim);
                Err(crate::conversations::log_error(e, &p.to))
            }
        }
    }

    /// Only members send to a group; a private message inside a group goes
    /// from a member to a member; a private message goes to an existing user.
    pub(crate) async fn may_send(&self, me: &str, to: &Target) -> Result<()> {
        self.may_send_to(me, to).await?;
        if let Some(user) = &to.user
            && self.has_blocked(user, me).await?
        {
            return Err(ChatError::forbidden(
                "blocked",
                format!("{user} does not accept your messages"),
            ));
        }
        Ok(())
    }

    /// The membership and existence rules of [`may_send`](Self::may_send).
    async fn may_send_to(&self, me: &str, to: &Target) -> Result<()> {
        if let Some(group) = &to.group {
            if group != LOBBY {
                self.inner
                    .auth
                    .check_in(me, perm::GROUP_POST, &crate::groups::scope(group))
                    .await
                    .map_err(|e| ChatError::denied(e, || ChatError::not_member(group)))?;
            }
            if let Some(user) = &to.user
                && self.role_in(user, group).await?.is_none()
            {
                return Err(ChatError::not_a_member(user, group));
            }
        } else if let Some(user) = &to.user {
            self.user_exists(user).await?;
        }
        Ok(())
    }

    /// Claim `client_id` for this send (with the id and time it will give
    /// the message), or find the reply of the send that claimed it first —
    /// waiting while that one is in flight, and taking its claim over (id
    /// and all) if it was abandoned.
    async fn claim(&self, me: &str, cid: &str, id: Uuid, ts: u64) -> Result<Claim> {
        if cid.is_empty() || cid.len() > MAX_CLIENT_ID {
            return Err(ChatError::invalid(
                "bad_client_id",
                format!("a client_id is 1 to {MAX_CLIENT_ID} bytes"),
            ));
        }
        let key = [me.as_bytes(), b"\0", cid.as_bytes()].concat();
        let mine = |record: &Record| {
            serde_json::to_vec(record)
                .map_err(|e| ChatError::failed("encoding a client_id record", e))
        };
        let mut proposal = Record {
            id,
            ts,
            seq: 0,
            at: now_ms(),
            pending: true,
        };
        let mut expected: Option<Vec<u8>> = None;
        let waits = 2 * ABANDONED.as_millis() / 50;
        for _ in 0..waits {
            let bytes = mine(&proposal)?;
            match self
                .inner
                .sent
                .compare_and_swap(&key, expected.as_deref(), Some(&bytes))
                .await?
            {
                Ok(()) => {
                    return Ok(Claim::Mine {
                        key,
                        record: proposal,
                    });
                }
                Err(conflict) => {
                    let Some(current) = conflict.current else {
                        expected = None; // purged meanwhile: claim it afresh
                        continue;
                    };
                    let record: Record = serde_json::from_slice(&current)
                        .map_err(|e| ChatError::failed("reading a client_id record", e))?;
                    if !record.pending {
                        return Ok(Claim::Done(Sent {
                            id: record.id.to_string(),
                            ts: record.ts,
                            seq: record.seq,
                        }));
                    }
                    let age = now_ms().saturating_sub(record.at);
                    if u128::from(age) >= ABANDONED.as_millis() {
                        // Take the abandoned claim over, keeping its message id.
                        proposal = Record {
                            at: now_ms(),
                            ..record
                        };
                        expected = Some(current);
                    } else {
                        expected = None;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
        Err(ChatError::conflict(
            "in_progress",
            "a send with this client_id is still in progress",
        ))
    }

    /// `login`'s client has the messages `ids` (unknown ids are ignored).
    pub(crate) async fn ack(&self, login: &Login, ids: &[String]) -> Result<()> {
        if ids.len() > MAX_ACK_IDS {
            return Err(ChatError::too_large(
                "too_many_ids",
                format!("at most {MAX_ACK_IDS} ids per ack"),
            ));
        }
        let ids: Vec<Uuid> = ids.iter().filter_map(|s| s.parse().ok()).collect();
        login.ack(&self.inner.log, &ids).await?;
        Ok(())
    }
}

enum Claim {
    Mine { key: Vec<u8>, record: Record },
    Done(Sent),
}

/// Forget `client_id` records older than a day.
pub(crate) async fn purge_sent(chat: &Chat) -> nopi::Result<usize> {
    let cutoff = now_ms().saturating_sub(u64::try_from(KEEP_SENT.as_millis()).unwrap_or(u64::MAX));
    let mut removed = 0;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let scan = match &after {
            Some(k) => Scan::range::<Vec<u8>>((
                std::ops::Bound::Excluded(k.clone()),
                std::ops::Bound::Unbounded,
            )),
            None => Scan::all(),
        };
        let page = chat.inner.sent.scan(scan.limit(1000)).await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        let mut batch = nopi::Batch::new();
        for (k, v) in &page {
            if let Ok(r) = serde_json::from_slice::<Record>(v)
                && r.at < cutoff
            {
                batch.push_expect(k, Some(v));
                batch.push_remove(k);
                removed += 1;
            }
        }
        if !batch.is_empty() && chat.inner.sent.apply(batch).await.is_err() {
            removed = 0; // raced with a new send; the next round retries
        }
    }
    Ok(removed)
}
