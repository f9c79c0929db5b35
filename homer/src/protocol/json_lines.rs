//! Native JSON, one object per line.

use bytes::{BufMut, BytesMut};
use serde_json::Value;
use tokio_util::codec::{Decoder, LinesCodec, LinesCodecError};

use crate::error::{ApiError, ProtocolError};
use crate::message::{Push, Reply};
use crate::protocol::{Decoded, Protocol, native};

/// The native protocol over a byte stream, one JSON object per line.
///
/// ```text
/// {"id":1,"api":"echo","params":{"x":1}}\n        client -> server
/// {"id":1,"status":200,"content":{"x":1}}\n       server -> client
/// {"push":"message","content":{...}}\n            server -> client
/// ```
///
/// Lines may end in `\r\n`; blank lines are ignored. A line longer than the
/// frame limit gets a 413 reply with `id` null and is skipped without being
/// buffered (framing by tokio-util's [`LinesCodec`]); a line that is not
/// UTF-8 or not JSON gets a 400 reply. A last line without `\n` before the
/// peer closes its side is still answered.
#[derive(Debug)]
pub struct JsonLines {
    lines: LinesCodec,
    max_frame: usize,
}

impl JsonLines {
    /// Lines of at most `max_frame` bytes (the newline excluded).
    pub fn new(max_frame: usize) -> Self {
        Self {
            lines: LinesCodec::new_with_max_length(max_frame),
            max_frame,
        }
    }

    fn map(
        &self,
        r: Result<Option<String>, LinesCodecError>,
    ) -> Result<Option<Decoded>, ProtocolError> {
        match r {
            Ok(Some(line)) => Ok(Some(native::decode_request(line.as_bytes()))),
            Ok(None) => Ok(None),
            Err(LinesCodecError::MaxLineLengthExceeded) => Ok(Some(Decoded::Reply(Reply::error(
                Value::Null,
                None,
                ApiError::too_large(self.max_frame + 1, self.max_frame),
            )))),
            Err(LinesCodecError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                Ok(Some(Decoded::Reply(Reply::error(
                    Value::Null,
                    None,
                    ApiError::malformed_json("line is not valid utf-8"),
                ))))
            }
            Err(LinesCodecError::Io(e)) => Err(e.into()),
        }
    }
}

impl Protocol for JsonLines {
    fn name(&self) -> &'static str {
        "json-lines"
    }

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Decoded>, ProtocolError> {
        loop {
            let r = self.lines.decode(src);
            if matches!(&r, Ok(Some(line)) if line.trim().is_empty()) {
                continue;
            }
            return self.map(r);
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Decoded>, ProtocolError> {
        loop {
            let r = self.lines.decode_eof(src);
            if matches!(&r, Ok(Some(line)) if line.trim().is_empty()) {
                continue;
            }
            return self.map(r);
        }
    }

    fn encode_reply(&mut self, reply: &Reply, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        native::encode_reply(reply, dst)?;
        dst.put_u8(b'\n');
        Ok(())
    }

    fn encode_push(&mut self, push: &Push, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        native::encode_push(push, dst);
        dst.put_u8(b'\n');
        Ok(())
    }

    fn encode_close(&mut self, reason: &str, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        self.encode_push(&native::close_push(reason), dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statuses(p: &mut JsonLines, buf: &mut BytesMut) -> Vec<u16> {
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
    fn frames_split_and_joined() {
        let mut p = JsonLines::new(64);
        let mut buf = BytesMut::from(&b"{\"api\":\"a\"}\r\n\n{\"api\":\"b\"}\n{\"api\""[..]);
        assert_eq!(statuses(&mut p, &mut buf), vec![200, 200]);
        buf.extend_from_slice(b":\"c\"}\n");
        assert_eq!(statuses(&mut p, &mut buf), vec![200]);
    }

    #[test]
    fn oversized_line_gets_413_and_is_skipped_without_buffering() {
        let mut p = JsonLines::new(16);
        let mut buf = BytesMut::from(&[b'x'; 40][..]);
        assert_eq!(statuses(&mut p, &mut buf), vec![413]);
        assert!(buf.is_empty(), "discarded bytes are not kept");
        buf.extend_from_slice(b"xxxx\n{\"api\":\"a\"}\n");
        assert_eq!(statuses(&mut p, &mut buf), vec![200]);
    }

    #[test]
    fn bad_utf8_and_bad_json_get_400() {
        let mut p = JsonLines::new(64);
        let mut buf = BytesMut::from(&b"\xff\xff\n{nope\n{\"api\":\"a\"}\n"[..]);
        assert_eq!(statuses(&mut p, &mut buf), vec![400, 400, 200]);
    }

    #[test]
    fn unterminated_last_line_is_answered_at_eof() {
        let mut p = JsonLines::new(64);
        let mut buf = BytesMut::from(&b"{\"api\":\"a\"}"[..]);
        assert!(p.decode(&mut buf).unwrap().is_none());
        assert!(matches!(
            p.decode_eof(&mut buf).unwrap(),
            Some(Decoded::Call(_))
        ));
        assert!(p.decode_eof(&mut buf).unwrap().is_none());
    }

    #[test]
    fn encodes_one_line_each() {
        let mut p = JsonLines::new(64);
        let mut dst = BytesMut::new();
        p.encode_reply(&Reply::ok(1.into(), None, Value::Null), &mut dst)
            .unwrap();
        p.encode_push(&Push::new("m", 1), &mut dst).unwrap();
        assert_eq!(
            &dst[..],
            b"{\"id\":1,\"status\":200,\"content\":null}\n{\"push\":\"m\",\"content\":1}\n"
        );
    }

    /// The shared conformance check: any bytes cut anywhere, a stream of
    /// calls, a bad line and an oversized one, whatever the read boundaries.
    #[test]
    fn conforms() {
        let mut sample: String = (0..5)
            .map(|i| format!("{{\"id\":{i},\"api\":\"a\"}}\n"))
            .collect();
        sample.push_str("{bad\r\n\n");
        sample.push_str(&format!("{}\n", "x".repeat(100)));
        sample.push_str("{\"id\":9,\"api\":\"b\"}\n");
        crate::testing::check_protocol(|| JsonLines::new(64), sample.as_bytes(), 64 + 1);

        let got = crate::testing::ids_and_statuses(|| JsonLines::new(64), sample.as_bytes());
        assert_eq!(got, ["0", "1", "2", "3", "4", "400", "413", "9"]);
    }
}
