//! APIs are added, replaced and removed while the server runs and clients
//! are calling.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use homer::{ApiError, Context};
use serde_json::json;
use support::*;

#[tokio::test]
async fn add_replace_remove_at_runtime() {
    let s = Server::default().await;
    let mut ws = s.ws().await;
    let mut http = s.http().await;
    assert_eq!(ws.call(1, "greet", json!("ann")).await["status"], 404);
    assert!(!s.homer.api_names().contains(&"greet".to_owned()));

    let replaced = s
        .homer
        .api("greet", |_c: Context, name: String| async move {
            Ok::<_, ApiError>(format!("hello {name}"))
        });
    assert!(!replaced);
    assert_eq!(
        ws.call(2, "greet", json!("ann")).await["content"],
        "hello ann"
    );
    assert_eq!(
        http.post("greet", &[], &json!("bo")).await.json()["content"],
        "hello bo"
    );

    let replaced = s
        .homer
        .api("greet", |_c: Context, name: String| async move {
            Ok::<_, ApiError>(format!("hi {name}"))
        });
    assert!(replaced);
    assert_eq!(ws.call(3, "greet", json!("ann")).await["content"], "hi ann");

    assert!(s.homer.remove_api("greet"));
    assert!(!s.homer.remove_api("greet"));
    assert_eq!(ws.call(4, "greet", json!("ann")).await["status"], 404);
    assert_eq!(http.post("greet", &[], &json!("bo")).await.status, 404);
}

#[tokio::test]
async fn registering_while_clients_call_other_apis() {
    let s = Server::start(homer::Homer::builder().no_rate_limit()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = vec![];
    for n in 0..4u64 {
        let mut c = s.lines().await;
        let stop = stop.clone();
        callers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let r = c.call(i, "add", json!({"a": n, "b": i})).await;
                assert_eq!(r["content"]["sum"], n + i, "{r}");
                i += 1;
            }
            i
        }));
    }
    // Meanwhile, register and remove 200 APIs and call each new one.
    let mut ws = s.ws().await;
    for k in 0..200u64 {
        let name = format!("gen.{k}");
        s.homer
            .api(name.clone(), move |_c: Context, _p: ()| async move {
                Ok::<_, ApiError>(k)
            });
        assert_eq!(ws.call(k, &name, json!(null)).await["content"], k);
        if k % 2 == 0 {
            s.homer.remove_api(&name);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in callers {
        assert!(within(c).await.unwrap() > 0);
    }
    assert_eq!(
        s.homer
            .api_names()
            .iter()
            .filter(|n| n.starts_with("gen."))
            .count(),
        100
    );
}
