//! Native JSON behind a 4-byte big-endian length.

use bytes::{Buf, BufMut, BytesMut};
use serde_json::Value;
use tokio_util::codec::{Decoder, LengthDelimitedCodec};

use crate::error::{ApiError, ProtocolError};
use crate::message::{Push, Reply};
use crate::protocol::{Decoded, Protocol, native};

/// The native protocol with each JSON object behind its length.
///
/// ```text
/// +---------------------------+----------------------------------+
/// | length: u32, big-endian   | JSON object, `length` bytes      |
/// +---------------------------+----------------------------------+
///   00 00 00 1a                 {"id":1,"api":"echo"...}
/// ```
///
/// The length counts the payload only. A frame announcing more than the
/// frame limit gets a 413 reply with `id` null and its payload is skipped as
/// it arrives, never buffered; framing of valid frames is tokio-util's
/// [`LengthDelimitedCodec`]. A frame cut short by the peer closing is a
/// [`ProtocolError::Truncated`].
#[derive(Debug)]
pub struct LengthPrefixed {
    codec: LengthDelimitedCodec,
    max_frame: usize,
    /// Bytes of an oversized frame still to skip.
    skipping: usize,
}

impl LengthPrefixed {
    /// Frames of at most `max_frame` payload bytes.
    pub fn new(max_frame: usize) -> Self {
        Self {
            codec: LengthDelimitedCodec::builder()
                .big_endian()
                .length_field_length(4)
                .max_frame_length(max_frame)
                .new_codec(),
            max_frame,
            skipping: 0,
        }
    }

    fn put_frame(
        dst: &mut BytesMut,
        write: impl FnOnce(&mut BytesMut) -> Result<(), ProtocolError>,
    ) -> Result<(), ProtocolError> {
        let start = dst.len();
        dst.put_u32(0);
        write(dst)?;
        let len = dst.len() - start - 4;
        let len32 = u32::try_from(len).map_err(|_| ProtocolError::FrameTooLarge {
            len,
            limit: u32::MAX as usize,
        })?;
        dst[start..start + 4].copy_from_slice(&len32.to_be_bytes());
        Ok(())
    }
}

impl Protocol for LengthPrefixed {
    fn name(&self) -> &'static str {
        "length-prefixed"
    }

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Decoded>, ProtocolError> {
        if self.skipping > 0 {
            let n = self.skipping.min(src.len());
            src.advance(n);
            self.skipping -= n;
            if self.skipping > 0 {
                return Ok(None);
            }
        }
        if src.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len > self.max_frame {
            src.advance(4);
            self.skipping = len;
            let n = self.skipping.min(src.len());
            src.advance(n);
            self.skipping -= n;
            return Ok(Some(Decoded::Reply(Reply::error(
                Value::Null,
                None,
                ApiError::too_large(len, self.max_frame),
            ))));
        }
        if src.len() < 4 + len {
            // Wait for the whole frame so the codec never holds a half-read
            // head between calls (the header is peeked above).
            src.reserve(4 + len - src.len());
            return Ok(None);
        }
        match self.codec.decode(src)? {
            Some(frame) => Ok(Some(native::decode_request(&frame))),
            None => Ok(None),
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Decoded>, ProtocolError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() && self.skipping == 0 => Ok(None),
            None => Err(ProtocolError::Truncated {
                len: src.len() + self.skipping,
            }),
        }
    }

    fn encode_reply(&mut self, reply: &Reply, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        Self::put_frame(dst, |dst| native::encode_reply(reply, dst))
    }

    fn encode_push(&mut self, push: &Push, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        Self::put_frame(dst, |dst| {
            native::encode_push(push, dst);
            Ok(())
        })
    }

    fn encode_close(&mut self, reason: &str, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        self.encode_push(&native::close_push(reason), dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    fn statuses(p: &mut LengthPrefixed, buf: &mut BytesMut) -> Vec<u16> {
        let mut out = vec![];
        while let Some(d) = p.decode(buf).unwrap() {
            out.push(match d {
                Decoded::Call(_) => 200,
                Decoded::Reply(r) => r.status(),
            });
        }
        out
    }

    #[test]
    fn decodes_across_reads() {
        let mut p = LengthPrefixed::new(64);
        let bytes = [frame(br#"{"api":"a"}"#), frame(b"nope")].concat();
        let mut buf = BytesMut::from(&bytes[..7]);
        assert_eq!(statuses(&mut p, &mut buf), Vec::<u16>::new());
        buf.extend_from_slice(&bytes[7..]);
        assert_eq!(statuses(&mut p, &mut buf), vec![200, 400]);
    }

    #[test]
    fn oversized_frame_is_skipped_as_it_arrives() {
        let mut p = LengthPrefixed::new(16);
        let big = frame(&[b'x'; 100]);
        let mut buf = BytesMut::from(&big[..30]);
        assert_eq!(statuses(&mut p, &mut buf), vec![413]);
        assert!(buf.is_empty());
        buf.extend_from_slice(&big[30..]);
        buf.extend_from_slice(&frame(br#"{"api":"a"}"#));
        assert_eq!(statuses(&mut p, &mut buf), vec![200]);
    }

    #[test]
    fn truncated_frame_at_eof_is_an_error() {
        let mut p = LengthPrefixed::new(64);
        let f = frame(br#"{"api":"a"}"#);
        let mut buf = BytesMut::from(&f[..6]);
        assert!(matches!(
            p.decode_eof(&mut buf),
            Err(ProtocolError::Truncated { len: 6 })
        ));
    }

    #[test]
    fn encodes_length_then_json() {
        let mut p = LengthPrefixed::new(64);
        let mut dst = BytesMut::new();
        p.encode_push(&Push::new("m", 1), &mut dst).unwrap();
        assert_eq!(&dst[..], &frame(br#"{"push":"m","content":1}"#)[..]);
    }

    /// The shared conformance check: any bytes cut anywhere, a stream of
    /// calls, a bad frame and an oversized one, whatever the read boundaries.
    #[test]
    fn conforms() {
        let mut sample: Vec<u8> = (0..5)
            .flat_map(|i| frame(format!("{{\"id\":{i},\"api\":\"a\"}}").as_bytes()))
            .collect();
        sample.extend(frame(b"nope"));
        sample.extend(frame(&[b'x'; 100]));
        sample.extend(frame(br#"{"id":9,"api":"b"}"#));
        crate::testing::check_protocol(|| LengthPrefixed::new(64), &sample, 4 + 64);

        let got = crate::testing::ids_and_statuses(|| LengthPrefixed::new(64), &sample);
        assert_eq!(got, ["0", "1", "2", "3", "4", "400", "413", "9"]);
    }
}
