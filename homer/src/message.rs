//! The three things that travel: a [`Call`] in, a [`Reply`] out, and a
//! [`Push`] out that nobody asked for.

use std::sync::{Arc, OnceLock};

use serde::Serialize;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::error::ApiError;

/// One API call decoded from the wire: `{"id":7,"api":"chat.send","params":{...}}`
/// in the native protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// Chosen by the client (or allocated by a translating protocol) and
    /// echoed in the reply; `null` when absent.
    pub id: Value,
    /// The API's name, such as `chat.send`.
    pub api: String,
    /// The params; `null` when absent.
    pub params: Value,
}

impl Call {
    /// A call of `api` with `params` and `id`.
    pub fn new(id: impl Into<Value>, api: impl Into<String>, params: Value) -> Self {
        Self {
            id: id.into(),
            api: api.into(),
            params,
        }
    }
}

/// The answer to one call.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The call's id (`null` if it could not be read).
    pub id: Value,
    /// The API that was called, when known; translating protocols use it to
    /// pick their reply shape.
    pub api: Option<String>,
    /// The handler's content, or the error.
    pub result: Result<Value, ApiError>,
}

impl Reply {
    /// A 200 reply.
    pub fn ok(id: Value, api: Option<String>, content: Value) -> Self {
        Self {
            id,
            api,
            result: Ok(content),
        }
    }

    /// An error reply.
    pub fn error(id: Value, api: Option<String>, error: ApiError) -> Self {
        Self {
            id,
            api,
            result: Err(error),
        }
    }

    /// 200 on success, else the error's status.
    pub fn status(&self) -> u16 {
        match &self.result {
            Ok(_) => 200,
            Err(e) => e.status(),
        }
    }

    /// The native JSON object:
    /// `{"id":7,"status":200,"content":{...}}` or
    /// `{"id":7,"status":403,"error":{"code":"...","message":"..."}}`.
    pub fn to_native_json(&self) -> String {
        // Serialising a `Value` and an `ApiError` cannot fail.
        serde_json::to_string(&NativeReply::from(self)).unwrap_or_default()
    }
}

#[derive(Serialize)]
pub(crate) struct NativeReply<'a> {
    id: &'a Value,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a ApiError>,
}

impl<'a> From<&'a Reply> for NativeReply<'a> {
    fn from(r: &'a Reply) -> Self {
        match &r.result {
            Ok(c) => NativeReply {
                id: &r.id,
                status: 200,
                content: Some(c),
                error: None,
            },
            Err(e) => NativeReply {
                id: &r.id,
                status: e.status(),
                content: None,
                error: Some(e),
            },
        }
    }
}

/// A message pushed to subscribers: `{"push":"message","content":{...}}` in
/// the native protocol.
///
/// The native encoding is computed once and shared by every connection it is
/// delivered to.
#[derive(Debug)]
pub struct Push {
    kind: Arc<str>,
    content: Value,
    topic: Option<Arc<str>>,
    native: OnceLock<Utf8Bytes>,
}

impl Clone for Push {
    fn clone(&self) -> Self {
        Self {
            kind: self.kind.clone(),
            content: self.content.clone(),
            topic: self.topic.clone(),
            native: self.native.clone(),
        }
    }
}

impl PartialEq for Push {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.content == other.content && self.topic == other.topic
    }
}

#[derive(Serialize)]
struct NativePush<'a> {
    push: &'a str,
    content: &'a Value,
}

impl Push {
    /// A push of `kind` (such as `message` or `presence`) carrying `content`.
    pub fn new(kind: impl Into<Arc<str>>, content: impl Into<Value>) -> Self {
        Self {
            kind: kind.into(),
            content: content.into(),
            topic: None,
            native: OnceLock::new(),
        }
    }

    /// A push whose content is `content` serialised to JSON.
    pub fn json<T: Serialize + ?Sized>(
        kind: impl Into<Arc<str>>,
        content: &T,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self::new(kind, serde_json::to_value(content)?))
    }

    /// The kind, such as `message`.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The content.
    pub fn content(&self) -> &Value {
        &self.content
    }

    /// The topic it was published to; `None` for a push sent to one
    /// connection directly.
    pub fn topic(&self) -> Option<&str> {
        self.topic.as_deref()
    }

    pub(crate) fn with_topic(mut self, topic: Arc<str>) -> Self {
        self.topic = Some(topic);
        self
    }

    /// The native JSON object `{"push":"<kind>","content":...}`, computed on
    /// first use and cached.
    pub fn native_json(&self) -> &str {
        self.native_utf8().as_str()
    }

    pub(crate) fn native_utf8(&self) -> &Utf8Bytes {
        self.native.get_or_init(|| {
            let native = NativePush {
                push: &self.kind,
                content: &self.content,
            };
            // Serialising a `&str` and a `Value` cannot fail.
            Utf8Bytes::from(serde_json::to_string(&native).unwrap_or_default())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check_reply(reply: Reply, expected: Value) {
        let got: Value = serde_json::from_str(&reply.to_native_json()).unwrap();
        assert_eq!(got, expected);
    }

    #[test]
    fn native_reply_shapes() {
        check_reply(
            Reply::ok(json!(7), None, json!({"a": 1})),
            json!({"id": 7, "status": 200, "content": {"a": 1}}),
        );
        check_reply(
            Reply::error(json!(7), None, ApiError::forbidden("not_member", "no")),
            json!({"id": 7, "status": 403, "error": {"code": "not_member", "message": "no"}}),
        );
        check_reply(
            Reply::error(Value::Null, None, ApiError::malformed_json("x")),
            json!({"id": null, "status": 400, "error": {"code": "malformed_json", "message": "malformed json: x"}}),
        );
    }

    #[test]
    fn native_push_shape_is_cached() {
        let p = Push::new("message", json!({"text": "hi"}));
        assert_eq!(
            p.native_json(),
            r#"{"push":"message","content":{"text":"hi"}}"#
        );
        assert_eq!(p.native_json().as_ptr(), p.native_json().as_ptr());
    }
}
