//! The native JSON protocol (PROTOCOL.md §1), independent of framing.
//!
//! ```text
//! request  {"id": 7, "api": "chat.send", "params": {...}}
//! reply    {"id": 7, "status": 200, "content": {...}}
//!          {"id": 7, "status": 403, "error": {"code": "...", "message": "..."}}
//! push     {"push": "message", "content": {...}}
//! ```
//!
//! Translating protocols can reuse these helpers for the JSON they carry.

use bytes::{BufMut, BytesMut};
use serde_json::{Map, Value};

use crate::error::{ApiError, ProtocolError};
use crate::message::{Call, NativeReply, Push, Reply};
use crate::protocol::Decoded;

/// Decodes one native request from the bytes of one frame. Never fails:
/// malformed input becomes a 400 [`Decoded::Reply`] (with `id` null when the
/// id could not be read).
pub fn decode_request(frame: &[u8]) -> Decoded {
    let value: Value = match serde_json::from_slice(frame) {
        Ok(v) => v,
        Err(e) => {
            return Decoded::Reply(Reply::error(Value::Null, None, ApiError::malformed_json(e)));
        }
    };
    let Value::Object(obj) = value else {
        return Decoded::Reply(Reply::error(
            Value::Null,
            None,
            ApiError::bad_request(
                "bad_request",
                format!("request must be a json object, got {}", type_name(&value)),
            ),
        ));
    };
    decode_object(obj)
}

/// Decodes a request already parsed as a JSON object.
pub fn decode_object(mut obj: Map<String, Value>) -> Decoded {
    let id = obj.remove("id").unwrap_or(Value::Null);
    let api = match obj.remove("api") {
        Some(Value::String(api)) => api,
        Some(other) => {
            return Decoded::Reply(Reply::error(
                id,
                None,
                ApiError::bad_request(
                    "bad_request",
                    format!("field \"api\" must be a string, got {}", type_name(&other)),
                ),
            ));
        }
        None => {
            return Decoded::Reply(Reply::error(
                id,
                None,
                ApiError::bad_request("bad_request", "request has no \"api\" field"),
            ));
        }
    };
    let params = obj.remove("params").unwrap_or(Value::Null);
    Decoded::Call(Call { id, api, params })
}

/// Appends the native JSON of `reply` to `dst` (no delimiter).
pub fn encode_reply(reply: &Reply, dst: &mut BytesMut) -> Result<(), ProtocolError> {
    serde_json::to_writer(dst.writer(), &NativeReply::from(reply)).map_err(|source| {
        ProtocolError::Encode {
            what: "reply",
            source,
        }
    })
}

/// Appends the native JSON of `push` to `dst` (no delimiter).
pub fn encode_push(push: &Push, dst: &mut BytesMut) {
    dst.extend_from_slice(push.native_json().as_bytes());
}

/// The close notice the built-in TCP protocols send before closing:
/// `{"push":"close","content":{"reason":"..."}}`.
pub fn close_push(reason: &str) -> Push {
    Push::new("close", serde_json::json!({ "reason": reason }))
}

/// `"object"`, `"array"`, ... for error messages.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(input: &str, expected: Value) {
        let got = match decode_request(input.as_bytes()) {
            Decoded::Call(c) => json!({"call": [c.id, c.api, c.params]}),
            Decoded::Reply(r) => serde_json::from_str(&r.to_native_json()).unwrap(),
        };
        assert_eq!(got, expected, "input {input:?}");
    }

    fn status_of(input: &[u8]) -> (Value, u16) {
        match decode_request(input) {
            Decoded::Call(_) => (Value::Null, 200),
            Decoded::Reply(r) => (r.id.clone(), r.status()),
        }
    }

    #[test]
    fn decode_table() {
        check(
            r#"{"id":7,"api":"chat.send","params":{"text":"hi"}}"#,
            json!({"call": [7, "chat.send", {"text": "hi"}]}),
        );
        check(r#"{"api":"x"}"#, json!({"call": [null, "x", null]}));
        check(
            r#"{"id":"a","api":"x","extra":1}"#,
            json!({"call": ["a", "x", null]}),
        );
        assert_eq!(status_of(b"{"), (Value::Null, 400));
        assert_eq!(status_of(b""), (Value::Null, 400));
        assert_eq!(status_of(b"[1,2]"), (Value::Null, 400));
        assert_eq!(status_of(b"\xff\xfe"), (Value::Null, 400));
        assert_eq!(status_of(br#"{"id":3}"#), (json!(3), 400));
        assert_eq!(status_of(br#"{"id":3,"api":5}"#), (json!(3), 400));
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let deep = "[".repeat(100_000);
        assert_eq!(status_of(deep.as_bytes()).1, 400);
    }
}
