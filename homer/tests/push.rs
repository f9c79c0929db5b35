//! Publishing reaches subscribers on every transport; hooks; closing another
//! connection; HTTP sessions shared by calls, SSE and WebSocket.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use homer::{ApiError, CloseReason, ConnId, Context, Homer, Push, Transport};
use serde_json::json;
use support::*;

#[tokio::test]
async fn one_publish_reaches_every_transport() {
    let s = Server::default().await;
    let mut ws = s.ws().await;
    ws.call(1, "join", json!({"topic": "room"})).await;
    let mut lines = s.lines().await;
    lines.call(1, "join", json!({"topic": "room"})).await;
    let mut prefixed = s.prefixed().await;
    prefixed.call(1, "join", json!({"topic": "room"})).await;
    let mut http = s.http().await;
    http.post("login", &[], &json!({"user": "sse"})).await;
    http.post(
        "join",
        &[("cookie", "session=tok-sse")],
        &json!({"topic": "room"}),
    )
    .await;
    http.post("login", &[], &json!({"user": "poller"})).await;
    http.post(
        "join",
        &[("authorization", "Bearer tok-poller")],
        &json!({"topic": "room"}),
    )
    .await;
    let mut sse = Sse::open(s.http, &[("cookie", "session=tok-sse")])
        .await
        .unwrap();
    assert_eq!(sse.recv().await.unwrap()["push"], "welcome");

    let push = Push::new("message", json!({"text": "to everyone"}));
    assert_eq!(s.homer.publish("room", push), 5);
    let want = json!({"push": "message", "content": {"text": "to everyone"}});
    assert_eq!(ws.recv().await.unwrap(), want);
    assert_eq!(lines.recv().await.unwrap(), want);
    assert_eq!(prefixed.recv().await.unwrap(), want);
    assert_eq!(sse.recv().await.unwrap(), want);
    let polled = http
        .fetch(
            "GET",
            "/poll?wait=5",
            &[("authorization", "Bearer tok-poller")],
            "",
        )
        .await
        .json();
    assert_eq!(
        polled,
        json!([{"push": "welcome", "content": {"user": "poller"}}, want])
    );
}

#[tokio::test]
async fn replaced_session_gets_its_push_before_the_close() {
    let s = Server::default().await;
    let closed: Arc<Mutex<Vec<(ConnId, CloseReason)>>> = Arc::default();
    let c = closed.clone();
    s.homer.on_close(move |ctx, reason| {
        let c = c.clone();
        async move { c.lock().unwrap().push((ctx.conn_id(), reason)) }
    });
    // "Replace" closes another connection by id, after pushing to it.
    s.homer.api("replace", |ctx: Context, id: u64| async move {
        let old = ctx
            .hub()
            .connection(ConnId::from_raw(id))
            .ok_or_else(|| ApiError::not_found("no_conn", format!("no connection {id}")))?;
        old.push(Push::new("session", json!({"event": "replaced"})))
            .map_err(|e| ApiError::internal(e.to_string()))?;
        old.close("replaced");
        Ok::<_, ApiError>(json!({}))
    });
    let mut old_ws = s.ws().await;
    let old_id = old_ws.call(1, "login", json!({"user": "a"})).await["content"]["conn"].clone();
    let mut old_lines = s.lines().await;
    let old_lines_id =
        old_lines.call(1, "login", json!({"user": "a"})).await["content"]["conn"].clone();
    let mut new = s.lines().await;
    assert_eq!(new.call(1, "replace", old_id.clone()).await["status"], 200);
    assert_eq!(
        new.call(2, "replace", old_lines_id.clone()).await["status"],
        200
    );

    assert_eq!(old_ws.recv().await.unwrap()["push"], "welcome");
    assert_eq!(
        old_ws.recv().await.unwrap(),
        json!({"push": "session", "content": {"event": "replaced"}})
    );
    let (code, reason) = old_ws.recv_close().await.unwrap();
    assert_eq!(
        (code, reason.as_str()),
        (1000, "closed by the server: replaced")
    );
    assert_eq!(old_lines.recv().await.unwrap()["push"], "welcome");
    assert_eq!(
        old_lines.recv().await.unwrap()["content"]["event"],
        "replaced"
    );
    assert_eq!(old_lines.recv().await.unwrap()["push"], "close");
    assert_eq!(old_lines.recv().await, None);
    within(async {
        while closed.lock().unwrap().len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        closed
            .lock()
            .unwrap()
            .iter()
            .all(|(_, r)| *r == CloseReason::Closed("replaced".into()))
    );
    // The closed connections are gone from the hub and their topics.
    assert_eq!(s.homer.hub().subscriber_count("user:a"), 0);
    assert_eq!(new.call(3, "replace", old_id).await["status"], 404);
}

#[tokio::test]
async fn hooks_see_open_and_close_with_the_session_state() {
    let s = Server::default().await;
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let l = log.clone();
    s.homer.on_open(move |ctx| {
        let l = l.clone();
        async move {
            l.lock()
                .unwrap()
                .push(format!("open {:?} {}", ctx.transport(), ctx.peer_ip()))
        }
    });
    let l = log.clone();
    s.homer.on_close(move |ctx, reason| {
        let l = l.clone();
        async move {
            let user = ctx.session().get::<User>().map(|u| u.0);
            l.lock().unwrap().push(format!("close {user:?} {reason}"))
        }
    });
    let mut c = s.lines().await;
    c.call(1, "login", json!({"user": "carol"})).await;
    drop(c);
    within(async {
        while log.lock().unwrap().len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            "open Tcp 127.0.0.1".to_owned(),
            "close Some(\"carol\") peer closed the connection".to_owned()
        ]
    );
}

#[tokio::test]
async fn http_calls_and_sse_share_one_session_connection() {
    let s = Server::default().await;
    let mut http = s.http().await;
    let login = http
        .post("login", &[], &json!({"user": "dave"}))
        .await
        .json();
    let conn = login["content"]["conn"].clone();
    // Cookie and bearer token both find the session; a fresh socket too.
    let mut other = s.http().await;
    for h in [
        ("cookie", "a=b; session=tok-dave"),
        ("authorization", "Bearer tok-dave"),
    ] {
        let me = other.post("whoami", &[h], &json!(null)).await.json();
        assert_eq!(me["content"]["user"], "dave");
        assert_eq!(me["content"]["conn"], conn);
        assert_eq!(me["content"]["transport"], "Http");
        assert_eq!(me["content"]["ip"], "127.0.0.1");
    }
    let c = s
        .homer
        .hub()
        .connection(ConnId::from_raw(conn.as_u64().unwrap()))
        .unwrap();
    assert_eq!(c.transport(), Transport::Http);
    // An unknown key without a resolver: no session.
    let r = http
        .post("whoami", &[("cookie", "session=forged")], &json!(null))
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        Sse::open(s.http, &[("cookie", "session=forged")])
            .await
            .err()
            .unwrap()
            .status,
        401
    );
    // A second event stream takes over from the first.
    let mut first = Sse::open(s.http, &[("cookie", "session=tok-dave")])
        .await
        .unwrap();
    assert_eq!(first.recv().await.unwrap()["push"], "welcome");
    let mut second = Sse::open(s.http, &[("cookie", "session=tok-dave")])
        .await
        .unwrap();
    assert_eq!(first.recv().await, None);
    s.homer.publish("user:dave", Push::new("message", json!(1)));
    assert_eq!(second.recv().await.unwrap()["content"], 1);
    // Closing the session ends its stream after what was queued.
    s.homer.publish("user:dave", Push::new("message", json!(2)));
    c.close("logged out");
    assert_eq!(second.recv().await.unwrap()["content"], 2);
    assert_eq!(second.recv().await, None);
    within(async {
        while s.homer.session_count() != 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(
        http.post("whoami", &[("cookie", "session=tok-dave")], &json!(null))
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn session_resolver_restores_http_and_websocket_sessions() {
    let s = Server::default().await;
    s.homer
        .session_resolver(|ctx: Context, key: String| async move {
            let user = key
                .strip_prefix("tok-")
                .ok_or_else(|| ApiError::unauthorized("bad_token", "unknown token"))?;
            ctx.session().insert(User(user.to_owned()));
            ctx.subscribe(&format!("user:{user}"));
            Ok(())
        });
    // After a "restart" the server knows no session, but the token is good.
    let mut sse = Sse::open(s.http, &[("cookie", "session=tok-erin")])
        .await
        .unwrap();
    let mut http = s.http().await;
    let me = http
        .post(
            "whoami",
            &[("authorization", "Bearer tok-erin")],
            &json!(null),
        )
        .await;
    assert_eq!(me.json()["content"]["user"], "erin");
    let mut ws = Ws::connect(s.http, &[("cookie", "session=tok-erin")]).await;
    let me_ws = ws.call(1, "whoami", json!(null)).await;
    assert_eq!(me_ws["content"]["user"], "erin");
    assert_eq!(me_ws["content"]["transport"], "WebSocket");
    s.wait_subscribers("user:erin", 2).await;
    assert_eq!(
        s.homer
            .publish("user:erin", Push::new("message", json!("both"))),
        2
    );
    assert_eq!(sse.recv().await.unwrap()["content"], "both");
    assert_eq!(ws.recv().await.unwrap()["content"], "both");
    // A rejected key: the call runs without a session, the stream is refused.
    let r = http
        .post("whoami", &[("cookie", "session=junk")], &json!(null))
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        Sse::open(s.http, &[("cookie", "session=junk")])
            .await
            .err()
            .unwrap()
            .status,
        401
    );
    assert_eq!(s.homer.session_count(), 1);
}

#[tokio::test]
async fn idle_http_sessions_expire_and_run_the_close_hook() {
    let s = Server::start(Homer::builder().idle_timeout(Duration::from_millis(150))).await;
    let closed: Arc<Mutex<Vec<CloseReason>>> = Arc::default();
    let c = closed.clone();
    s.homer.on_close(move |_ctx, reason| {
        let c = c.clone();
        async move { c.lock().unwrap().push(reason) }
    });
    let mut http = s.http().await;
    http.post("login", &[], &json!({"user": "fay"})).await;
    assert_eq!(s.homer.session_count(), 1);
    // An attached event stream keeps the session alive past the timeout.
    let mut sse = Sse::open(s.http, &[("cookie", "session=tok-fay")])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(s.homer.session_count(), 1);
    assert_eq!(sse.recv().await.unwrap()["push"], "welcome");
    drop(sse);
    within(async {
        while s.homer.session_count() != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    within(async {
        while closed.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(matches!(closed.lock().unwrap()[0], CloseReason::Idle(_)));
}
