//! Reading a room's history from its RabbitMQ stream.
//!
//! A stream is read by offset, but AMQP 0-9-1 tells a reader neither the
//! stream's length nor when it has reached the end. So every query first
//! attaches a consumer, then appends a *probe* (an empty message with an
//! `x-im-probe` header, published straight to the stream with a confirm)
//! and reads until it sees its own probe: the probe was written after the
//! consumer attached, so it is always ahead of the reader, and its offset is
//! the end of the history this query sees. Probes are skipped by every reader.
//!
//! - `Last(n)`: attach at `last` (the last chunk), read to the probe, then read
//!   windows `[start, end)` backwards until `n` messages are collected or the
//!   beginning of the retained stream is reached.
//! - `After(id, n)`: attach at the id's timestamp minus the allowed clock skew,
//!   read forward, return the `n` messages that follow `id` (or, if `id` is not
//!   found, the first `n` with a greater id).
//! - `Before(id, n)`: find `id`'s offset the same way, then read backwards
//!   like `Last`.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Consumer};
use tokio::time::Instant;
use uuid::Uuid;

use super::link::{Attempt, Link, Pace, Shared, is_not_found};
use crate::envelope::uuid_ms;
use crate::{Envelope, Error, HistoryQuery, Result, RoomId};

const PROBE_HEADER: &str = "x-im-probe";
/// Extra messages read per backward window, for probes of concurrent readers.
const MARGIN: u64 = 8;
/// Stream consumer prefetch.
const PREFETCH: u16 = 500;
/// At most this many backward windows per query.
const MAX_ROUNDS: usize = 24;

/// Something a history read failed with.
enum ReadError {
    Lapin(lapin::Error),
    Done(Error),
}

impl From<lapin::Error> for ReadError {
    fn from(e: lapin::Error) -> Self {
        ReadError::Lapin(e)
    }
}

type Read<T> = std::result::Result<T, ReadError>;

pub(crate) async fn history(
    shared: &Shared,
    room: &RoomId,
    query: HistoryQuery,
) -> Result<Vec<Envelope>> {
    let limit = query.limit();
    if limit > shared.cfg.max_history {
        return Err(Error::HistoryTooLarge {
            requested: limit,
            limit: shared.cfg.max_history,
        });
    }
    let deadline = Instant::now() + shared.cfg.op_timeout;
    shared
        .retry("history", Pace::Bounded(deadline), 0, |link| async move {
            let reader = Reader {
                shared,
                link: &link,
                room,
                stream: shared.names.history(room),
            };
            match reader.run(query).await {
                Ok(found) => Attempt::Done(Ok(found)),
                Err(ReadError::Done(e)) => Attempt::Done(Err(e)),
                Err(ReadError::Lapin(e)) if is_not_found(&e) => {
                    Attempt::Done(Err(Error::UnknownRoom(room.clone())))
                }
                Err(ReadError::Lapin(e)) => shared.failed(&link, "history", e),
            }
        })
        .await
}

/// One decoded stream entry.
enum Entry {
    Probe(String),
    Message(Envelope),
    Junk,
}

struct Cursor {
    ch: Channel,
    consumer: Consumer,
}

impl Cursor {
    /// The next entry and its offset.
    async fn next(&mut self, max_body: usize) -> Read<(u64, Entry)> {
        let d = match self.consumer.next().await {
            Some(Ok(d)) => d,
            Some(Err(e)) => return Err(e.into()),
            None => {
                return Err(ReadError::Lapin(
                    lapin::ErrorKind::InvalidChannelState(
                        lapin::ChannelState::Closed,
                        "stream consumer cancelled",
                    )
                    .into(),
                ));
            }
        };
        // Stream consumers must ack to receive more; the ack settles nothing.
        let _ = d.acker.ack(BasicAckOptions::default()).await;
        let headers = d.properties.headers().as_ref();
        let offset = headers
            .and_then(|h| h.inner().get("x-stream-offset"))
            .and_then(|v| match v {
                AMQPValue::LongLongInt(i) => u64::try_from(*i).ok(),
                _ => None,
            });
        let Some(offset) = offset else {
            return Ok((0, Entry::Junk));
        };
        if let Some(probe) = headers.and_then(|h| h.inner().get(PROBE_HEADER)) {
            let id = match probe {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                _ => String::new(),
            };
            return Ok((offset, Entry::Probe(id)));
        }
        match Envelope::decode(&d.data, max_body) {
            Ok(env) => Ok((offset, Entry::Message(env))),
            Err(e) => {
                tracing::warn!(offset, error = %e, "malformed history entry skipped");
                Ok((offset, Entry::Junk))
            }
        }
    }

    async fn close(self) {
        drop(self.consumer);
        let _ =
            tokio::time::timeout(Duration::from_secs(2), self.ch.close(200, "done".into())).await;
    }
}

struct Reader<'a> {
    shared: &'a Shared,
    link: &'a Link,
    room: &'a RoomId,
    stream: String,
}

impl Reader<'_> {
    async fn attach(&self, offset: AMQPValue) -> Read<Cursor> {
        let ch = self.link.conn.create_channel().await?;
        ch.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
        let mut args = FieldTable::default();
        args.insert("x-stream-offset".into(), offset);
        let consumer = ch
            .basic_consume(
                self.stream.clone().into(),
                "".into(),
                BasicConsumeOptions::default(),
                args,
            )
            .await?;
        Ok(Cursor { ch, consumer })
    }

    /// Append a probe to the stream; returns its id.
    async fn probe(&self) -> Read<String> {
        let id = Uuid::new_v4().to_string();
        let mut headers = FieldTable::default();
        headers.insert(
            PROBE_HEADER.into(),
            AMQPValue::LongString(id.as_str().into()),
        );
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_headers(headers);
        let confirmation = self
            .shared
            .publish_confirmed("", &self.stream, true, &[], props)
            .await
            .map_err(ReadError::Done)?;
        match confirmation {
            Confirmation::Ack(Some(_)) => {
                Err(ReadError::Done(Error::UnknownRoom(self.room.clone())))
            }
            _ => Ok(id),
        }
    }

    /// Attach at `start`, append a probe, and visit every message up to it.
    /// `visit` returns `false` to stop early. Returns the first offset seen
    /// and the probe's offset (`None` if stopped early).
    async fn scan(
        &self,
        start: AMQPValue,
        mut visit: impl FnMut(u64, Envelope) -> bool,
    ) -> Read<(Option<u64>, Option<u64>)> {
        let mut cursor = self.attach(start).await?;
        let probe = match self.probe().await {
            Ok(p) => p,
            Err(e) => {
                cursor.close().await;
                return Err(e);
            }
        };
        let mut first = None;
        let result = loop {
            let (offset, entry) = match cursor.next(self.shared.cfg.max_body).await {
                Ok(x) => x,
                Err(e) => break Err(e),
            };
            first.get_or_insert(offset);
            let go_on = match entry {
                Entry::Probe(id) if id == probe => break Ok((first, Some(offset))),
                Entry::Message(env) => visit(offset, env),
                _ => true,
            };
            if !go_on {
                break Ok((first, None));
            }
        };
        cursor.close().await;
        result
    }

    /// The messages in offsets `[start, end)`, and the first offset seen
    /// (greater than `start` when the stream's beginning was truncated).
    async fn window(&self, start: u64, end: u64) -> Read<(Vec<(u64, Envelope)>, Option<u64>)> {
        let mut out = Vec::new();
        let mut first = None;
        if start >= end {
            return Ok((out, None));
        }
        let mut cursor = self
            .attach(AMQPValue::LongLongInt(
                i64::try_from(start).unwrap_or(i64::MAX),
            ))
            .await?;
        let result = loop {
            let (offset, entry) = match cursor.next(self.shared.cfg.max_body).await {
                Ok(x) => x,
                Err(e) => break Err(e),
            };
            first.get_or_insert(offset);
            if offset >= end {
                break Ok(());
            }
            if let Entry::Message(env) = entry {
                out.push((offset, env));
            }
            if offset + 1 >= end {
                break Ok(());
            }
        };
        cursor.close().await;
        result.map(|()| (out, first))
    }

    /// Complete `seen` (messages from offset `lower` on, oldest first) with
    /// older messages until it holds `limit` or the stream's beginning is reached.
    async fn backfill(
        &self,
        mut seen: VecDeque<(u64, Envelope)>,
        mut lower: u64,
        limit: usize,
    ) -> Read<Vec<Envelope>> {
        let mut span = limit as u64 + MARGIN;
        let mut rounds = 0;
        while seen.len() < limit && lower > 0 && rounds < MAX_ROUNDS {
            rounds += 1;
            let start = lower.saturating_sub(span);
            let (older, first) = self.window(start, lower).await?;
            for item in older.into_iter().rev() {
                seen.push_front(item);
            }
            match first {
                Some(first) if first <= start => {}
                // Truncated by retention, or nothing there: the beginning.
                _ => break,
            }
            lower = start;
            span = span.saturating_mul(2);
        }
        let skip = seen.len().saturating_sub(limit);
        Ok(seen.into_iter().skip(skip).map(|(_, env)| env).collect())
    }

    fn since(&self, id: &Uuid) -> AMQPValue {
        let ms = uuid_ms(id);
        if ms == 0 {
            return AMQPValue::LongString("first".into());
        }
        let skew = self.shared.cfg.history_clock_skew.as_millis() as u64;
        AMQPValue::Timestamp(ms.saturating_sub(skew) / 1000)
    }

    async fn run(&self, query: HistoryQuery) -> Read<Vec<Envelope>> {
        match query {
            HistoryQuery::Last { limit } => {
                let mut seen = VecDeque::new();
                let (first, _) = self
                    .scan(AMQPValue::LongString("last".into()), |offset, env| {
                        seen.push_back((offset, env));
                        if seen.len() > limit {
                            seen.pop_front();
                        }
                        true
                    })
                    .await?;
                if limit == 0 {
                    return Ok(Vec::new());
                }
                let lower = seen.front().map(|(o, _)| *o).or(first).unwrap_or(0);
                self.backfill(seen, lower, limit).await
            }
            HistoryQuery::After { id, limit } => {
                let mut found = false;
                let mut after = Vec::new();
                let mut greater = Vec::new();
                self.scan(self.since(&id), |_, env| {
                    if found {
                        after.push(env);
                        return after.len() < limit;
                    }
                    if env.id == id {
                        found = true;
                        return limit > 0;
                    }
                    if env.id > id && greater.len() < limit {
                        greater.push(env);
                    }
                    true
                })
                .await?;
                Ok(if found { after } else { greater })
            }
            HistoryQuery::Before { id, limit } => {
                // The last `limit` messages before the current point; a
                // snapshot of them at the first greater id, in case `id`
                // itself is never found.
                let mut seen = VecDeque::new();
                let mut fallback: Option<(u64, VecDeque<(u64, Envelope)>)> = None;
                let mut end = None;
                let (first, tail) = self
                    .scan(self.since(&id), |offset, env| {
                        if env.id == id {
                            end = Some(offset);
                            return false;
                        }
                        if env.id > id && fallback.is_none() {
                            fallback = Some((offset, seen.clone()));
                        }
                        seen.push_back((offset, env));
                        if seen.len() > limit {
                            seen.pop_front();
                        }
                        true
                    })
                    .await?;
                if limit == 0 {
                    return Ok(Vec::new());
                }
                let (end, seen) = match (end, fallback) {
                    (Some(end), _) => (end, seen),
                    (None, Some((end, snapshot))) => (end, snapshot),
                    (None, None) => (tail.unwrap_or(0), seen),
                };
                let lower = seen
                    .front()
                    .map(|(o, _)| *o)
                    .or(first)
                    .unwrap_or(end)
                    .min(end);
                self.backfill(seen, lower, limit).await
            }
        }
    }
}
