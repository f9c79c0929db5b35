//! Each transport end to end with a real client over loopback.

mod support;

use serde_json::json;
use support::*;

#[tokio::test]
async fn http_post_api_returns_the_native_reply() {
    let s = Server::default().await;
    let mut http = s.http().await;
    let r = http.post("add", &[], &json!({"a": 2, "b": 3})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({"id": null, "status": 200, "content": {"sum": 5}})
    );
    // Same keep-alive connection, a second call; an empty body is no params.
    let r = http.fetch("POST", "/api/whoami", &[], "").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "not_logged_in");
}

#[tokio::test]
async fn websocket_calls_and_pushes() {
    let s = Server::default().await;
    let mut ws = s.ws().await;
    assert_eq!(
        ws.call(1, "add", json!({"a": 1, "b": 1})).await,
        json!({"id": 1, "status": 200, "content": {"sum": 2}})
    );
    assert_eq!(
        ws.call(2, "join", json!({"topic": "t"})).await["content"]["topics"],
        json!(["t"])
    );
    assert_eq!(
        s.homer
            .publish("t", homer::Push::new("message", json!({"n": 1}))),
        1
    );
    assert_eq!(
        ws.recv().await,
        Some(json!({"push": "message", "content": {"n": 1}}))
    );
    // String ids are echoed as given.
    assert_eq!(ws.call(0, "echo", json!([1])).await["content"], json!([1]));
    ws.send(&json!({"id": "abc", "api": "echo", "params": 5}))
        .await;
    assert_eq!(
        ws.recv().await,
        Some(json!({"id": "abc", "status": 200, "content": 5}))
    );
}

#[tokio::test]
async fn json_lines_tcp_calls_and_pushes() {
    let s = Server::default().await;
    let mut c = s.lines().await;
    assert_eq!(
        c.call(1, "add", json!({"a": 40, "b": 2})).await,
        json!({"id": 1, "status": 200, "content": {"sum": 42}})
    );
    c.call(2, "join", json!({"topic": "news"})).await;
    s.homer
        .publish("news", homer::Push::new("message", json!("hello")));
    assert_eq!(
        c.recv().await,
        Some(json!({"push": "message", "content": "hello"}))
    );
    // Several requests in one write, answered in order of completion.
    c.send_raw(
        b"{\"id\":3,\"api\":\"echo\",\"params\":3}\r\n\n{\"id\":4,\"api\":\"echo\",\"params\":4}\n",
    )
    .await;
    assert_eq!(c.recv().await.unwrap()["id"], 3);
    assert_eq!(c.recv().await.unwrap()["id"], 4);
}

#[tokio::test]
async fn length_prefixed_tcp_calls_and_pushes() {
    let s = Server::default().await;
    let mut c = s.prefixed().await;
    assert_eq!(
        c.call(9, "add", json!({"a": 1, "b": 2})).await,
        json!({"id": 9, "status": 200, "content": {"sum": 3}})
    );
    c.call(10, "join", json!({"topic": "news"})).await;
    s.homer
        .publish("news", homer::Push::new("message", json!({"x": true})));
    assert_eq!(
        c.recv().await,
        Some(json!({"push": "message", "content": {"x": true}}))
    );
}

#[tokio::test]
async fn sse_carries_every_topic_of_the_session() {
    let s = Server::default().await;
    let mut http = s.http().await;
    let login = http.post("login", &[], &json!({"user": "alice"})).await;
    assert_eq!(login.status, 200);
    let cookie = login.header("set-cookie").unwrap().to_owned();
    assert!(cookie.starts_with("session=tok-alice"), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    let cookie_header = "session=tok-alice";
    for t in ["a", "b", "c"] {
        let r = http
            .post("join", &[("cookie", cookie_header)], &json!({"topic": t}))
            .await;
        assert_eq!(r.status, 200);
    }
    let mut sse = Sse::open(s.http, &[("cookie", cookie_header)])
        .await
        .unwrap();
    // The welcome push queued by login arrives first.
    assert_eq!(sse.recv().await.unwrap()["push"], "welcome");
    for (i, t) in ["a", "b", "c", "user:alice"].iter().enumerate() {
        assert_eq!(
            s.homer.publish(t, homer::Push::new("message", json!(i))),
            1,
            "{t}"
        );
    }
    for i in 0..4 {
        assert_eq!(
            sse.recv().await,
            Some(json!({"push": "message", "content": i}))
        );
    }
    // Unsubscribed topics are not delivered.
    http.post(
        "leave",
        &[("cookie", cookie_header)],
        &json!({"topic": "a"}),
    )
    .await;
    assert_eq!(
        s.homer
            .publish("a", homer::Push::new("message", json!("no"))),
        0
    );
}

#[tokio::test]
async fn long_poll_returns_queued_pushes_or_an_empty_array() {
    let s = Server::default().await;
    let mut http = s.http().await;
    let login = http.post("login", &[], &json!({"user": "bob"})).await;
    let token = login.json()["content"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let auth = format!("Bearer {token}");
    let r = http
        .fetch("GET", "/poll?wait=0", &[("authorization", &auth)], "")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!([{"push": "welcome", "content": {"user": "bob"}}])
    );
    let r = http
        .fetch("GET", "/poll?wait=0.05", &[("authorization", &auth)], "")
        .await;
    assert_eq!(r.json(), json!([]));
    // A push while the poll waits ends the wait.
    let homer = s.homer.clone();
    let publisher = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        homer.publish("user:bob", homer::Push::new("message", json!(1)));
        homer.publish("user:bob", homer::Push::new("message", json!(2)));
    });
    let mut got = vec![];
    while got.len() < 2 {
        let r = http
            .fetch("GET", "/poll?wait=5", &[("authorization", &auth)], "")
            .await;
        got.extend(
            r.json()
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["content"].clone()),
        );
    }
    assert_eq!(got, vec![json!(1), json!(2)]);
    publisher.await.unwrap();
    // Without a session: 401.
    let r = http.fetch("GET", "/poll?wait=0", &[], "").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "no_session");
}

#[tokio::test]
async fn static_files_are_served_and_confined_to_their_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<h1>chat</h1>").unwrap();
    std::fs::write(dir.path().join("app.js"), "let x = 1;").unwrap();
    let s = Server::start(homer::Homer::builder().static_dir(dir.path())).await;
    let mut http = s.http().await;
    let r = http.fetch("GET", "/", &[], "").await;
    assert_eq!((r.status, &r.body[..]), (200, &b"<h1>chat</h1>"[..]));
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let r = http.fetch("GET", "/app.js", &[], "").await;
    assert_eq!(
        r.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(http.fetch("GET", "/missing.css", &[], "").await.status, 404);
    assert_eq!(
        http.fetch("GET", "/../Cargo.toml", &[], "").await.status,
        404
    );
    assert_eq!(http.fetch("GET", "/.hidden", &[], "").await.status, 404);
}

#[tokio::test]
async fn get_routes_answer_before_static_files_and_change_at_run_time() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("healthz"), "a file").unwrap();
    let s = Server::start(homer::Homer::builder().static_dir(dir.path())).await;
    let ready = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = ready.clone();
    assert!(!s.homer.http_get("/healthz", move |req| {
        let up = flag.load(std::sync::atomic::Ordering::Relaxed);
        let who = req.header("x-probe").unwrap_or("nobody").to_owned();
        async move {
            if up {
                homer::HttpResponse::text(200, format!("ok {who}"))
            } else {
                homer::HttpResponse::json(503, &json!({"ready": false}))
            }
        }
    }));
    let mut http = s.http().await;
    let r = http.fetch("GET", "/healthz", &[], "").await;
    assert_eq!(r.status, 503, "the route wins over the file of that name");
    assert_eq!(r.json(), json!({"ready": false}));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("cache-control"), Some("no-store"));

    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    let r = http
        .fetch("GET", "/healthz", &[("x-probe", "lb")], "")
        .await;
    assert_eq!((r.status, &r.body[..]), (200, &b"ok lb"[..]));
    let r = http.fetch("HEAD", "/healthz", &[], "").await;
    assert_eq!((r.status, r.body.len()), (200, 0));
    let r = http.fetch("POST", "/healthz", &[], "").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/healthz"),
        "{:?}",
        r.json()
    );

    // Built-in routes cannot be shadowed.
    s.homer
        .http_get("/events", |_| async { homer::HttpResponse::text(200, "") });
    assert_eq!(http.fetch("GET", "/events", &[], "").await.status, 401);

    assert!(s.homer.remove_http_get("/healthz"));
    let r = http.fetch("GET", "/healthz", &[], "").await;
    assert_eq!((r.status, &r.body[..]), (200, &b"a file"[..]));
}

#[tokio::test]
async fn static_files_from_memory_follow_the_directory_rules() {
    let s = Server::start(homer::Homer::builder().max_static_file(64).static_files([
        ("index.html", &b"<h1>chat</h1>"[..]),
        ("app.js", b"let x = 1;"),
        ("docs/index.html", b"docs"),
        ("big.txt", &[b'x'; 65]),
    ]))
    .await;
    let mut http = s.http().await;
    let check = |path: &'static str, status: u16, body: &'static [u8], ty: Option<&'static str>| {
        (path, status, body, ty)
    };
    for (path, status, body, ty) in [
        check("/", 200, b"<h1>chat</h1>", Some("text/html; charset=utf-8")),
        check(
            "/index.html",
            200,
            b"<h1>chat</h1>",
            Some("text/html; charset=utf-8"),
        ),
        check(
            "/app.js",
            200,
            b"let x = 1;",
            Some("text/javascript; charset=utf-8"),
        ),
        check("/docs/", 200, b"docs", Some("text/html; charset=utf-8")),
        check("/docs", 200, b"docs", Some("text/html; charset=utf-8")),
        check(
            "//app.js",
            200,
            b"let x = 1;",
            Some("text/javascript; charset=utf-8"),
        ),
    ] {
        let r = http.fetch("GET", path, &[], "").await;
        assert_eq!((r.status, &r.body[..]), (status, body), "{path}");
        assert_eq!(r.header("content-type"), ty, "{path}");
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{path}");
    }
    for path in ["/missing.css", "/../app.js", "/.hidden", "/docs/../app.js"] {
        assert_eq!(http.fetch("GET", path, &[], "").await.status, 404, "{path}");
    }
    assert_eq!(http.fetch("GET", "/big.txt", &[], "").await.status, 413);
    let r = http.fetch("HEAD", "/app.js", &[], "").await;
    assert_eq!((r.status, r.body.len()), (200, 0));
    assert_eq!(http.fetch("DELETE", "/app.js", &[], "").await.status, 405);
}
