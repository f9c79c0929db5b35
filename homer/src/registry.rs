//! The API registry: names to handlers, changeable while the server runs.

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::context::Context;
use crate::error::ApiError;

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A type-erased API handler.
pub(crate) trait ErasedHandler: Send + Sync + 'static {
    fn call(&self, ctx: Context, params: Value) -> BoxFuture<Result<Value, ApiError>>;
}

/// An async function of a [`Context`] and typed params returning a
/// serialisable value or an [`ApiError`]: what
/// [`Homer::api`](crate::Homer::api) registers.
///
/// Implemented for every `Fn(Context, P) -> impl Future<Output =
/// Result<R, ApiError>>` where `P: DeserializeOwned` and `R: Serialize`.
/// Params that do not deserialise into `P` get a 400 `bad_params` reply
/// naming what was expected; absent params are read as `null`, then as
/// `{}`, so a struct whose fields are all optional (or `()`) accepts none.
pub trait Handler<P, R>: Send + Sync + 'static {
    /// The future the handler returns.
    type Future: Future<Output = Result<R, ApiError>> + Send + 'static;
    /// Calls the handler.
    fn call(&self, ctx: Context, params: P) -> Self::Future;
}

impl<F, P, R, Fut> Handler<P, R> for F
where
    F: Fn(Context, P) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, ApiError>> + Send + 'static,
{
    type Future = Fut;
    fn call(&self, ctx: Context, params: P) -> Fut {
        self(ctx, params)
    }
}

pub(crate) struct Typed<H, P, R> {
    handler: H,
    _types: PhantomData<fn(P) -> R>,
}

impl<H, P, R> Typed<H, P, R> {
    pub(crate) fn new(handler: H) -> Self {
        Self {
            handler,
            _types: PhantomData,
        }
    }
}

fn parse_params<P: DeserializeOwned>(api: &str, params: Value) -> Result<P, ApiError> {
    if params.is_null() {
        if let Ok(p) = serde_json::from_value(Value::Null) {
            return Ok(p);
        }
        return serde_json::from_value(Value::Object(serde_json::Map::new()))
            .map_err(|e| ApiError::bad_params(api, e));
    }
    serde_json::from_value(params).map_err(|e| ApiError::bad_params(api, e))
}

impl<H, P, R> ErasedHandler for Typed<H, P, R>
where
    H: Handler<P, R>,
    P: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
{
    fn call(&self, ctx: Context, params: Value) -> BoxFuture<Result<Value, ApiError>> {
        let params = match parse_params::<P>(ctx.api().unwrap_or_default(), params) {
            Ok(p) => p,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let fut = self.handler.call(ctx, params);
        Box::pin(async move {
            let content = fut.await?;
            serde_json::to_value(content)
                .map_err(|e| ApiError::internal(format!("cannot serialise the reply: {e}")))
        })
    }
}

type Map = HashMap<String, Arc<dyn ErasedHandler>>;

/// Copy-on-write map: a call takes the read lock only to clone one `Arc`;
/// a registration builds the new map outside that lock and holds the write
/// lock only to swap a pointer.
#[derive(Default)]
pub(crate) struct Registry {
    map: RwLock<Arc<Map>>,
    writers: Mutex<()>,
}

impl Registry {
    pub(crate) fn get(&self, name: &str) -> Option<Arc<dyn ErasedHandler>> {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    fn update<T>(&self, f: impl FnOnce(&mut Map) -> T) -> T {
        let _one_writer = self.writers.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut next = (*current).clone();
        let out = f(&mut next);
        *self.map.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
        out
    }

    pub(crate) fn insert(&self, name: String, handler: Arc<dyn ErasedHandler>) -> bool {
        self.update(|m| m.insert(name, handler).is_some())
    }

    pub(crate) fn remove(&self, name: &str) -> bool {
        self.update(|m| m.remove(name).is_some())
    }

    /// Drops every handler (at shutdown).
    pub(crate) fn clear(&self) {
        self.update(Map::clear);
    }

    pub(crate) fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Opt {
        x: Option<u32>,
    }

    #[derive(Deserialize, Debug)]
    struct Req {
        #[expect(dead_code, reason = "deserialized to check the request, never read")]
        name: String,
    }

    #[test]
    fn absent_params_fit_optional_structs_and_unit() {
        assert_eq!(
            parse_params::<Opt>("a", Value::Null).unwrap(),
            Opt { x: None }
        );
        parse_params::<()>("a", Value::Null).unwrap();
        parse_params::<Value>("a", Value::Null).unwrap();
    }

    #[test]
    fn wrong_params_name_the_api_and_the_problem() {
        let e = parse_params::<Req>("user.login", Value::Null).unwrap_err();
        assert_eq!(e.status(), 400);
        assert_eq!(e.code(), "bad_params");
        assert!(e.message().contains("user.login"), "{}", e.message());
        assert!(
            e.message().contains("missing field `name`"),
            "{}",
            e.message()
        );
        let e = parse_params::<Req>("a", serde_json::json!({"name": 5})).unwrap_err();
        assert!(e.message().contains("expected a string"), "{}", e.message());
    }
}
