//! The chat API in process: the whole service (`Chat::start`) on the
//! `memory:` store and the embedded broker, its users connected through
//! `homer::testing` pipes instead of sockets. The transports themselves are
//! tested over real sockets in `e2e.rs`.

use std::time::Duration;

use chat::wire::{
    self, Change, CreateGroup, FoundGroup, FriendName, GroupEvent, GroupName, LoggedIn, Member,
    Registered, Role, SendMessage, Sent, Target, api, push,
};
use chat::{Chat, Config, Running};
use homer::testing::Client;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// How long a test waits to see that nothing more is pushed.
const QUIET: Duration = Duration::from_millis(300);

/// The service on an empty `memory:` store, with `args` on top of flags
/// that keep it from listening anywhere but free loopback ports.
async fn start(args: &[&str]) -> Running {
    start_on("memory:", args).await
}

/// The service on `store`.
async fn start_on(store: &str, args: &[&str]) -> Running {
    let mut argv = vec![
        "chat-server",
        "--store",
        store,
        "--http",
        "127.0.0.1:0",
        "--tcp",
        "127.0.0.1:0",
        "--msgid-json",
        "off",
        "--type-data",
        "off",
        "--token-json",
        "off",
        "--thrift",
        "off",
        "--shutdown-drain-ms",
        "0",
    ];
    argv.extend_from_slice(args);
    let config = Config::load_from(argv).expect("test flags parse");
    Chat::start(config).await.expect("the service starts")
}

/// One connection of a client, speaking the native protocol.
struct User {
    client: Client,
    token: Option<String>,
}

impl User {
    fn connect(running: &Running) -> User {
        User {
            client: Client::connect(running.homer()).expect("in-memory connection"),
            token: None,
        }
    }

    /// A new account `name` (password `pw-<name>`), logged in on a new connection.
    async fn new(running: &Running, name: &str) -> User {
        let mut u = User::connect(running);
        let made: Registered = u
            .call(
                api::REGISTER,
                json!({"name": name, "password": format!("pw-{name}")}),
            )
            .await;
        assert_eq!(made.name, name);
        u.login(name).await;
        u
    }

    async fn login(&mut self, name: &str) -> LoggedIn {
        let login: LoggedIn = self
            .call(api::LOGIN, wire::Login::by_name(name, format!("pw-{name}")))
            .await;
        self.token = Some(login.token.clone());
        login
    }

    /// Call `api`, which must succeed; its reply as `R`.
    async fn call<R: DeserializeOwned>(&mut self, api: &str, params: impl Serialize) -> R {
        let content = self.ok(api, params).await;
        serde_json::from_value(content.clone())
            .unwrap_or_else(|e| panic!("{api} replied {content}, which does not read ({e})"))
    }

    /// Call `api`, which must succeed; its reply.
    async fn ok(&mut self, api: &str, params: impl Serialize) -> Value {
        let params = serde_json::to_value(params).expect("params encode");
        match self.client.call(api, params.clone()).await {
            Ok(content) => content,
            Err((status, e)) => panic!("{api} {params} failed with {status}: {e}"),
        }
    }

    /// Call `api`, which must fail with `status`; the error `{code, message}`.
    async fn err(&mut self, api: &str, params: impl Serialize, status: u16) -> Value {
        let params = serde_json::to_value(params).expect("params encode");
        match self.client.call(api, params.clone()).await {
            Ok(content) => panic!("{api} {params} succeeded ({content}); {status} was expected"),
            Err((got, e)) => {
                assert_eq!(got, status, "{api} {params}: {e}");
                e
            }
        }
    }

    /// The next push of `kind`, skipping pushes of other kinds.
    async fn push(&mut self, kind: &str) -> Value {
        loop {
            let (k, content) = self.client.push().await;
            if k == kind {
                return content;
            }
        }
    }

    /// The next message push with `text`, skipping others.
    async fn message(&mut self, text: &str) -> wire::Message {
        loop {
            let m: wire::Message =
                serde_json::from_value(self.push(push::MESSAGE).await).expect("a message push");
            if m.text == text {
                return m;
            }
        }
    }

    /// No push of `kind` arrives for a while.
    async fn no_push(&mut self, kind: &str) {
        while let Some((k, content)) = self.client.try_push(QUIET).await {
            assert_ne!(k, kind, "an unexpected {kind} push: {content}");
        }
    }
}

fn send(to: Target, text: &str) -> SendMessage {
    SendMessage::new(to, text)
}

#[tokio::test]
async fn after_shutdown_the_store_is_closed_and_its_directory_reopens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = format!("sled:{}", dir.path().join("data").display());
    for round in 0..2 {
        let running = start_on(&store, &[]).await;
        let mut ann = match round {
            0 => User::new(&running, "ann").await,
            _ => {
                // The account of the first run is there.
                let mut ann = User::connect(&running);
                ann.login("ann").await;
                ann
            }
        };
        ann.ok(api::SEND, send(Target::group("lobby"), "hello"))
            .await;
        running.shutdown(Duration::from_secs(1)).await;
        // sled locks its directory while it is open (nopi shares one open
        // database per path in a process, so ask sled itself): this fails
        // unless shutdown dropped every handle of the store (handlers,
        // sessions, background tasks and the broker).
        let path = dir.path().join("data");
        let reopened = sled::open(&path)
            .unwrap_or_else(|e| panic!("round {round}: the store is still open: {e}"));
        drop(reopened);
    }
}

#[tokio::test]
async fn login_by_number_resume_and_logout() {
    let running = start(&[]).await;
    let mut a = User::connect(&running);
    let reg = a
        .ok(
            api::REGISTER,
            json!({"name": "carol", "password": "s3cret", "number": 4242}),
        )
        .await;
    assert_eq!(reg, json!({"name": "carol", "number": 4242}));
    let taken = a
        .err(
            api::REGISTER,
            json!({"name": "carol2", "password": "x", "number": 4242}),
            409,
        )
        .await;
    assert_eq!(taken["code"], "number_taken");
    let dup = a
        .err(
            api::REGISTER,
            json!({"name": "carol", "password": "x"}),
            409,
        )
        .await;
    assert_eq!(dup["code"], "name_taken");

    let login: LoggedIn = a
        .call(api::LOGIN, wire::Login::by_number(4242, "s3cret"))
        .await;
    assert_eq!((login.name.as_str(), login.number), ("carol", 4242));
    assert_eq!(login.groups[0].name, "lobby");

    // Resume on a new connection with the token: the old one is replaced.
    let mut b = User::connect(&running);
    let resumed: LoggedIn = b.call(api::RESUME, json!({"token": login.token})).await;
    assert_eq!(resumed.name, "carol");
    assert_eq!(a.push(push::SESSION).await, json!({"event": "replaced"}));
    assert!(a.client.closed().await, "the replaced connection is closed");

    b.ok(api::LOGOUT, json!({})).await;
    let e = b
        .err(api::SEND, send(Target::group("lobby"), "x"), 401)
        .await;
    assert_eq!(e["code"], "not_logged_in");
    let mut c = User::connect(&running);
    let gone = c.err(api::RESUME, json!({"token": login.token}), 401).await;
    assert_eq!(gone["code"], "bad_token", "logout really logs out");
    running.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn names_and_passwords_follow_the_user_model() {
    let running = start(&[]).await;
    let mut c = User::connect(&running);
    for (name, password, code) in [
        ("", "x", "bad_name"),
        ("12345", "x", "bad_name"),
        ("bad name!", "x", "bad_name"),
        (&"n".repeat(33) as &str, "x", "bad_name"),
        (&"界".repeat(22) as &str, "x", "bad_name"), // 66 bytes
        ("zero\u{200b}width", "x", "bad_name"),
        ("joi\u{200d}ner", "x", "bad_name"),
        ("pаypal", "x", "bad_name"), // a Cyrillic а among Latin letters
        ("ＦＵＬＬ", "x", "bad_name"),
        ("\u{3164}", "x", "bad_name"),
        ("fine", "", "bad_password"),
        (
            "fine",
            &"p".repeat(tiny_storage::MAX_PASSWORD_LEN + 1),
            "bad_password",
        ),
    ] {
        let e = c
            .err(
                api::REGISTER,
                json!({"name": name, "password": password}),
                400,
            )
            .await;
        assert_eq!(e["code"], code, "{name:?}: {e}");
    }
    let e = c
        .err(
            api::REGISTER,
            json!({"name": "fine", "password": "x", "number": 0}),
            400,
        )
        .await;
    assert_eq!(e["code"], "bad_number");
    // None of these cost a registration: the limit (20 an hour) is intact.
    let made: Registered = c
        .call(api::REGISTER, json!({"name": "fine", "password": "x"}))
        .await;
    assert_eq!(made.name, "fine");
    // A password too long to hash is simply wrong at login.
    let long = "p".repeat(tiny_storage::MAX_PASSWORD_LEN + 1);
    let e = c
        .err(api::LOGIN, wire::Login::by_name("fine", long), 401)
        .await;
    assert_eq!(e["code"], "bad_credentials");
    running.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn names_in_the_users_own_language() {
    let running = start(&[]).await;
    let mut zhang = User::new(&running, "张三").await;
    let mut li = User::new(&running, "李四").await;
    // A decomposed name is stored composed, and logs in in either form.
    let mut jose = User::connect(&running);
    let made: Registered = jose
        .call(
            api::REGISTER,
            json!({"name": "Jose\u{301}", "password": "pw-José"}),
        )
        .await;
    assert_eq!(made.name, "José");
    let login: LoggedIn = jose
        .call(api::LOGIN, wire::Login::by_name("Jose\u{301}", "pw-José"))
        .await;
    assert_eq!(login.name, "José");
    // Unique without regard to case.
    for taken in ["JOSÉ", "josé"] {
        let e = jose
            .err(api::REGISTER, json!({"name": taken, "password": "x"}), 409)
            .await;
        assert_eq!(e["code"], "name_taken", "{taken}: {e}");
    }

    zhang.ok(api::GROUP_CREATE, json!({"name": "中文群"})).await;
    li.ok(api::GROUP_JOIN, json!({"name": "中文群"})).await;
    zhang
        .ok(api::SEND, send(Target::group("中文群"), "大家好"))
        .await;
    let m = li.message("大家好").await;
    assert_eq!(
        (m.from.as_str(), m.to.clone()),
        ("张三", Target::group("中文群"))
    );
    li.ok(api::SEND, send(Target::user("张三"), "你好")).await;
    let m = zhang.message("你好").await;
    assert_eq!(m.from, "李四");

    // Group names follow the same rule, also unique without regard to case.
    zhang.ok(api::GROUP_CREATE, json!({"name": "Rust"})).await;
    let e = li
        .err(api::GROUP_CREATE, json!({"name": "rust"}), 409)
        .await;
    assert_eq!(e["code"], "group_exists", "{e}");
    for bad in ["中文\u{200d}群", "a b", "pаypal"] {
        let e = li.err(api::GROUP_CREATE, json!({"name": bad}), 400).await;
        assert_eq!(e["code"], "bad_group", "{bad:?}: {e}");
    }
    running.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn unknown_user_and_wrong_password_look_alike_and_back_off() {
    let running = start(&[]).await;
    let mut a = User::new(&running, "dave").await;
    let wrong = a
        .err(api::LOGIN, wire::Login::by_name("dave", "nope"), 401)
        .await;
    let unknown = a
        .err(api::LOGIN, wire::Login::by_name("nobody", "nope"), 401)
        .await;
    assert_eq!(wrong, unknown);
    for _ in 0..4 {
        for name in ["dave", "nobody"] {
            a.err(api::LOGIN, wire::Login::by_name(name, "nope"), 401)
                .await;
        }
    }
    // Past five failures both accounts must wait, alike.
    let w1 = a
        .err(api::LOGIN, wire::Login::by_name("dave", "pw-dave"), 429)
        .await;
    let w2 = a
        .err(api::LOGIN, wire::Login::by_name("nobody", "nope"), 429)
        .await;
    assert_eq!(
        (&w1["code"], &w2["code"]),
        (&json!("too_many_attempts"), &json!("too_many_attempts"))
    );
    running.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn groups_roles_and_membership() {
    let running = start(&[]).await;
    let mut alice = User::new(&running, "alice").await;
    let mut bob = User::new(&running, "bob").await;
    let mut carol = User::new(&running, "carol").await;

    let created = alice
        .ok(
            api::GROUP_CREATE,
            CreateGroup {
                name: "rust".into(),
                desc: Some("Rustaceans".into()),
            },
        )
        .await;
    assert_eq!(created, json!({"name": "rust"}));
    alice
        .err(api::GROUP_CREATE, json!({"name": "rust"}), 409)
        .await;
    alice
        .err(api::GROUP_CREATE, json!({"name": "bad name!"}), 400)
        .await;
    bob.ok(api::GROUP_JOIN, json!({"name": "rust"})).await;
    let joined: GroupEvent = serde_json::from_value(alice.push(push::GROUP).await).unwrap();
    assert_eq!(
        joined,
        GroupEvent {
            group: "rust".into(),
            user: "bob".into(),
            event: Change::Joined
        }
    );
    bob.err(api::GROUP_JOIN, json!({"name": "nope"}), 404).await;

    let found: wire::FoundGroups = carol.call(api::GROUP_SEARCH, json!({"query": "RUS"})).await;
    assert_eq!(
        found.groups,
        [FoundGroup {
            name: "rust".into(),
            desc: "Rustaceans".into(),
            members: 2
        }]
    );
    let members = carol
        .ok(
            api::GROUP_MEMBERS,
            GroupName {
                name: "rust".into(),
            },
        )
        .await;
    assert_eq!(
        members["members"],
        json!([{"name": "alice", "role": "owner", "online": true}, {"name": "bob", "role": "member", "online": true}])
    );
    let mine: wire::Groups = bob.call(api::GROUP_LIST, json!({})).await;
    assert!(
        mine.groups
            .iter()
            .any(|g| g.name == "rust" && g.role == Role::Member)
    );

    // Only members send, and only members receive.
    let e = carol
        .err(api::SEND, send(Target::group("rust"), "let me in"), 403)
        .await;
    assert_eq!(e["code"], "not_member");
    alice
        .ok(api::SEND, send(Target::group("rust"), "members only"))
        .await;
    assert_eq!(bob.message("members only").await.to, Target::group("rust"));
    carol.no_push(push::MESSAGE).await;

    // Only the owner and admins kick.
    bob.err(
        api::GROUP_KICK,
        json!({"name": "rust", "user": "alice"}),
        403,
    )
    .await;
    carol.ok(api::GROUP_JOIN, json!({"name": "rust"})).await;
    alice
        .ok(
            api::GROUP_ROLE,
            json!({"name": "rust", "user": "carol", "role": "admin"}),
        )
        .await;
    let bad_role = alice
        .err(
            api::GROUP_ROLE,
            json!({"name": "rust", "user": "carol", "role": "owner"}),
            400,
        )
        .await;
    assert_eq!(bad_role["code"], "bad_role");
    carol
        .err(
            api::GROUP_KICK,
            json!({"name": "rust", "user": "alice"}),
            403,
        )
        .await;
    carol
        .ok(api::GROUP_KICK, json!({"name": "rust", "user": "bob"}))
        .await;
    loop {
        let event: GroupEvent = serde_json::from_value(bob.push(push::GROUP).await).unwrap();
        if event.event == Change::Kicked {
            assert_eq!((event.group.as_str(), event.user.as_str()), ("rust", "bob"));
            break;
        }
    }
    bob.err(api::SEND, send(Target::group("rust"), "still here?"), 403)
        .await;

    carol
        .ok(
            api::GROUP_LEAVE,
            GroupName {
                name: "rust".into(),
            },
        )
        .await;
    carol
        .err(api::GROUP_LEAVE, json!({"name": "rust"}), 403)
        .await;
    carol
        .err(api::GROUP_LEAVE, json!({"name": "lobby"}), 400)
        .await;
    // The owner leaves: the group is handed over to the next member.
    alice.ok(api::GROUP_LEAVE, json!({"name": "rust"})).await;
    running.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn an_owner_who_leaves_hands_the_group_to_an_admin_and_the_last_one_deletes_it() {
    let running = start(&[]).await;
    let mut ann = User::new(&running, "ann").await;
    let mut ben = User::new(&running, "ben").await;
    let mut cy = User::new(&running, "cy").await;
    ann.ok(api::GROUP_CREATE, json!({"name": "club"})).await;
    ben.ok(api::GROUP_JOIN, json!({"name": "club"})).await;
    cy.ok(api::GROUP_JOIN, json!({"name": "club"})).await;
    ann.ok(
        api::GROUP_ROLE,
        json!({"name": "club", "user": "cy", "role": "admin"}),
    )
    .await;
    ann.ok(api::GROUP_LEAVE, json!({"name": "club"})).await;
    let members: wire::Members = ben.call(api::GROUP_MEMBERS, json!({"name": "club"})).await;
    let roles: Vec<(&str, Role)> = members
        .members
        .iter()
        .map(|m: &Member| (m.name.as_str(), m.role))
        .collect();
    assert_eq!(roles, [("ben", Role::Member), ("cy", Role::Owner)]);
    ben.ok(api::GROUP_LEAVE, json!({"name": "club"})).await;
    cy.ok(api::GROUP_LEAVE, json!({"name": "club"})).await;
    ann.err(api::GROUP_JOIN, json!({"name": "club"}), 404).await;
    running.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn private_messages_to_users_and_inside_groups() {
    let running = start(&[]).await;
    let mut alice = User::new(&running, "alice").await;
    let mut bob = User::new(&running, "bob").await;
    let mut carol = User::new(&running, "carol").await;

    let sent: Sent = alice
        .call(api::SEND, send(Target::user("bob"), "psst"))
        .await;
    let m = bob.message("psst").await;
    assert_eq!(
        (m.id.as_str(), m.from.as_str(), &m.to),
        (sent.id.as_str(), "alice", &Target::user("bob"))
    );
    assert_eq!(m.ip, "127.0.0.1", "the server stamps the sender's address");
    alice
        .err(api::SEND, send(Target::user("ghost"), "boo"), 404)
        .await;

    alice.ok(api::GROUP_CREATE, json!({"name": "team"})).await;
    bob.ok(api::GROUP_JOIN, json!({"name": "team"})).await;
    let inside = Target {
        user: Some("bob".into()),
        group: Some("team".into()),
    };
    alice.ok(api::SEND, send(inside.clone(), "just you")).await;
    assert_eq!(bob.message("just you").await.to, inside);
    // Not to a non-member, not from a non-member.
    let to_carol = Target {
        user: Some("carol".into()),
        group: Some("team".into()),
    };
    alice.err(api::SEND, send(to_carol, "x"), 404).await;
    carol.err(api::SEND, send(inside, "x"), 403).await;
    carol.no_push(push::MESSAGE).await;
    running.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn friends_presence_and_who_is_online() {
    let running = start(&[]).await;
    let mut alice = User::new(&running, "alice").await;
    let mut reg = User::connect(&running);
    reg.ok(api::REGISTER, json!({"name": "bob", "password": "pw-bob"}))
        .await;

    alice
        .ok(api::FRIEND_ADD, FriendName { name: "bob".into() })
        .await;
    alice
        .err(api::FRIEND_ADD, json!({"name": "ghost"}), 404)
        .await;
    alice
        .err(api::FRIEND_ADD, json!({"name": "alice"}), 400)
        .await;
    assert_eq!(
        alice.ok(api::FRIEND_LIST, json!({})).await["friends"],
        json!([{"name": "bob", "online": false}])
    );

    let mut bob = User::connect(&running);
    bob.login("bob").await;
    assert_eq!(
        alice.push(push::PRESENCE).await,
        json!({"user": "bob", "online": true})
    );
    let friends: wire::Friends = alice.call(api::FRIEND_LIST, json!({})).await;
    assert!(friends.friends[0].online);
    let online: wire::OnlineUsers = alice.call(api::ONLINE, json!({})).await;
    assert_eq!(online.users, ["alice", "bob"]);

    // An abnormal disconnect cleans up presence.
    drop(bob);
    assert_eq!(
        alice.push(push::PRESENCE).await,
        json!({"user": "bob", "online": false})
    );
    let online: wire::OnlineUsers = alice.call(api::ONLINE, json!({})).await;
    assert_eq!(online.users, ["alice"]);

    // Co-members of a group (not the lobby) hear presence too.
    let mut carol = User::new(&running, "carol").await;
    alice.no_push(push::PRESENCE).await;
    carol.ok(api::GROUP_CREATE, json!({"name": "g1"})).await;
    alice.ok(api::GROUP_JOIN, json!({"name": "g1"})).await;
    carol.ok(api::LOGOUT, json!({})).await;
    assert_eq!(
        alice.push(push::PRESENCE).await,
        json!({"user": "carol", "online": false})
    );

    alice.ok(api::FRIEND_REMOVE, json!({"name": "bob"})).await;
    let friends: wire::Friends = alice.call(api::FRIEND_LIST, json!({})).await;
    assert!(friends.friends.is_empty());
    running.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn unacked_messages_come_back_and_acked_ones_do_not() {
    let running = start(&[]).await;
    let mut alice = User::new(&running, "alice").await;
    let bob = User::new(&running, "bob").await;
    let token = bob.token.clone().expect("logged in");
    let mut bob = bob;

    alice.ok(api::SEND, send(Target::user("bob"), "one")).await;
    let first = bob.message("one").await;
    drop(bob); // no ack

    let mut bob = User::connect(&running);
    bob.ok(api::RESUME, json!({"token": token})).await;
    let again = bob.message("one").await;
    assert_eq!(again.id, first.id, "redelivered with the same id");
    bob.ok(api::ACK, json!({"ids": [again.id]})).await;
    alice.ok(api::SEND, send(Target::user("bob"), "two")).await;
    let two = bob.message("two").await;
    bob.ok(api::ACK, json!({"ids": [two.id, "not-an-id"]}))
        .await;
    let e = bob
        .err(api::ACK, json!({"ids": vec!["x"; 1001]}), 413)
        .await;
    assert_eq!(e["code"], "too_many_ids");
    drop(bob);

    let mut bob = User::connect(&running);
    bob.ok(api::RESUME, json!({"token": token})).await;
    bob.no_push(push::MESSAGE).await;
    running.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_repeated_client_id_sends_once() {
    let running = start(&[]).await;
    let mut alice = User::new(&running, "alice").await;
    let mut bob = User::new(&running, "bob").await;
    let once = send(Target::user("bob"), "exactly once").client_id("c-42");
    let first: Sent = alice.call(api::SEND, &once).await;
    let second: Sent = alice.call(api::SEND, &once).await;
    assert_eq!(first, second, "the first reply is returned");
    bob.message("exactly once").await;
    bob.no_push(push::MESSAGE).await;
    let e = alice
        .err(api::SEND, send(Target::user("bob"), "x").client_id(""), 400)
        .await;
    assert_eq!(e["code"], "bad_client_id");
    running.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_the_connection_stays() {
    let running = start(&["--send-rate", "1", "--send-burst", "3", "--max-text", "100"]).await;
    let mut c = User::connect(&running);
    // Malformed JSON and unknown APIs, logged in or not.
    c.client.send_raw("{not json").await;
    let r = c.client.read().await;
    assert_eq!((&r["status"], &r["id"]), (&json!(400), &json!(null)));
    assert_eq!(
        c.err("no.such.api", json!({}), 404).await["code"],
        "unknown_api"
    );
    assert_eq!(
        c.err(api::SEND, send(Target::group("lobby"), "x"), 401)
            .await["code"],
        "not_logged_in"
    );
    let mut c = User::new(&running, "eve").await;
    assert_eq!(
        c.err("no.such.api", json!({}), 404).await["code"],
        "unknown_api"
    );
    let e = c
        .err(api::SEND, json!({"to": "lobby", "text": "x"}), 400)
        .await;
    assert_eq!(e["code"], "bad_params");
    let e = c.err(api::SEND, json!({"to": {}, "text": "x"}), 400).await;
    assert_eq!(e["code"], "bad_target");
    let e = c
        .err(api::SEND, send(Target::group("lobby"), ""), 400)
        .await;
    assert_eq!(e["code"], "empty");
    let e = c
        .err(
            api::SEND,
            send(Target::group("lobby"), &"x".repeat(101)),
            413,
        )
        .await;
    assert_eq!(e["code"], "too_large");
    // A whole message object sent back: `from`, `ip` and `seq` are dropped.
    let echo = json!({"to": {"group": "lobby"}, "text": "hi", "from": "mallory", "ip": "6.6.6.6", "seq": 9});
    let sent: Sent = c.call(api::SEND, echo).await;
    let h: wire::Messages = c
        .call(api::HISTORY, json!({"to": {"group": "lobby"}}))
        .await;
    let stored = h.messages.last().expect("stored");
    assert_eq!(
        (stored.from.as_str(), stored.seq),
        ("eve", sent.seq),
        "the server stamps the sender and the seq"
    );
    assert_ne!(stored.ip, "6.6.6.6");
    let e = c
        .err(
            api::GROUP_KICK,
            json!({"name": "lobby", "user": "eve"}),
            400,
        )
        .await;
    assert_eq!(e["code"], "lobby");
    // Rate limit: a burst of 3, then 429 (the echo above was one).
    for _ in 0..2 {
        c.ok(api::SEND, send(Target::group("lobby"), "spam")).await;
    }
    let e = c
        .err(api::SEND, send(Target::group("lobby"), "spam"), 429)
        .await;
    assert_eq!(e["code"], "rate_limited");
    // An oversized frame is refused, never buffered whole.
    let huge = format!(
        "{{\"id\":1,\"api\":\"chat.send\",\"params\":{{\"text\":\"{}\"}}}}",
        "y".repeat(70_000)
    );
    let mut big = User::connect(&running);
    big.client.send_raw(&huge).await;
    assert_eq!(big.client.read().await["status"], 413);
    // The server is still there for everyone else.
    let online: wire::OnlineUsers = c.call(api::ONLINE, json!({})).await;
    assert_eq!(online.users, ["eve"]);
    running.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn late_joiners_read_history_oldest_first() {
    let running = start(&[]).await;
    let mut alice = User::new(&running, "alice").await;
    alice.ok(api::GROUP_CREATE, json!({"name": "book"})).await;
    for i in 1..=5 {
        alice
            .ok(api::SEND, send(Target::group("book"), &format!("ch{i}")))
            .await;
    }
    let mut bob = User::new(&running, "bob").await;
    let history = |before: Option<u64>, limit| wire::History {
        to: Target::group("book"),
        before,
        after: None,
        limit: Some(limit),
    };
    bob.err(api::HISTORY, history(None, 3), 403).await;
    bob.ok(api::GROUP_JOIN, json!({"name": "book"})).await;
    let h: wire::Messages = bob.call(api::HISTORY, history(None, 3)).await;
    let texts: Vec<&str> = h.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["ch3", "ch4", "ch5"]);
    let seqs: Vec<u64> = h.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [3, 4, 5]);
    let older: wire::Messages = bob
        .call(api::HISTORY, history(Some(h.messages[0].seq), 10))
        .await;
    let texts: Vec<&str> = older.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["ch1", "ch2"]);
    // A direct conversation nobody wrote in has an empty history.
    let none: wire::Messages = bob
        .call(api::HISTORY, json!({"to": {"user": "alice"}}))
        .await;
    assert!(none.messages.is_empty());
    running.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_setting_that_cannot_work_stops_the_start_with_its_name() {
    for (flags, setting) in [
        (&["--max-connections", "0"][..], "max_connections"),
        (&["--proxy-protocol"][..], "proxy_protocol"),
    ] {
        let mut argv = vec!["chat-server", "--store", "memory:"];
        argv.extend_from_slice(flags);
        let config = Config::load_from(argv).expect("flags parse");
        let Err(e) = Chat::start(config).await else {
            panic!("{flags:?} started");
        };
        assert!(matches!(e, chat::StartError::Homer(_)), "{e:?}");
        let shown = e.to_string();
        assert!(shown.contains(&format!("invalid {setting}")), "{shown}");
    }
}

#[tokio::test]
async fn a_blocked_user_cannot_send_direct_messages_and_sees_no_presence() {
    let running = start(&[]).await;
    let mut alice = User::new(&running, "alice").await;
    let mut bob = User::new(&running, "bob").await;
    let mut carol = User::new(&running, "carol").await;
    alice.ok(api::GROUP_CREATE, json!({"name": "team"})).await;
    bob.ok(api::GROUP_JOIN, json!({"name": "team"})).await;
    for watcher in [&mut bob, &mut carol] {
        watcher.ok(api::FRIEND_ADD, json!({"name": "alice"})).await;
    }

    alice.ok(api::BLOCK, json!({"name": "bob"})).await;
    alice.ok(api::BLOCK, json!({"name": "bob"})).await; // again: nothing changes
    let blocked: wire::BlockedUsers = alice.call(api::BLOCKED, json!({})).await;
    assert_eq!(blocked.users, ["bob"]);
    assert_eq!(
        alice.err(api::BLOCK, json!({"name": "alice"}), 400).await["code"],
        "self"
    );
    alice.err(api::BLOCK, json!({"name": "ghost"}), 404).await;

    // Direct messages from bob, also inside the group, are refused.
    let e = bob
        .err(api::SEND, send(Target::user("alice"), "hi?"), 403)
        .await;
    assert_eq!(e["code"], "blocked");
    let inside = Target {
        user: Some("alice".into()),
        group: Some("team".into()),
    };
    bob.err(api::SEND, send(inside, "hi?"), 403).await;
    alice.no_push(push::MESSAGE).await;
    // Group messages still reach the group; others still write to alice,
    // and alice to bob.
    bob.ok(api::SEND, send(Target::group("team"), "hello team"))
        .await;
    alice.message("hello team").await;
    carol.ok(api::SEND, send(Target::user("alice"), "hi")).await;
    alice.message("hi").await;
    alice.ok(api::SEND, send(Target::user("bob"), "fyi")).await;
    bob.message("fyi").await;

    // To bob, alice is offline everywhere; carol sees her.
    let friends: wire::Friends = bob.call(api::FRIEND_LIST, json!({})).await;
    assert!(!friends.friends[0].online, "{friends:?}");
    let online: wire::OnlineUsers = bob.call(api::ONLINE, json!({})).await;
    assert_eq!(online.users, ["bob", "carol"]);
    let members: wire::Members = bob.call(api::GROUP_MEMBERS, json!({"name": "team"})).await;
    assert!(
        members
            .members
            .iter()
            .all(|m| m.name != "alice" || !m.online)
    );
    let friends: wire::Friends = carol.call(api::FRIEND_LIST, json!({})).await;
    assert!(friends.friends[0].online);
    // alice leaves and comes back: carol hears it, bob does not.
    alice.ok(api::LOGOUT, json!({})).await;
    assert_eq!(
        carol.push(push::PRESENCE).await,
        json!({"user": "alice", "online": false})
    );
    alice.login("alice").await;
    assert_eq!(
        carol.push(push::PRESENCE).await,
        json!({"user": "alice", "online": true})
    );
    bob.no_push(push::PRESENCE).await;

    // Unblocked, bob writes again.
    alice.ok(api::UNBLOCK, json!({"name": "bob"})).await;
    bob.ok(api::SEND, send(Target::user("alice"), "thanks"))
        .await;
    alice.message("thanks").await;
    let blocked: wire::BlockedUsers = alice.call(api::BLOCKED, json!({})).await;
    assert!(blocked.users.is_empty());
    running.shutdown(Duration::from_secs(1)).await;
}

/// What a user's conversations look like: `(to, head, unread, last text)`.
async fn conversations(u: &mut User) -> Vec<(Target, u64, u64, String)> {
    let list: wire::ConversationList = u.call(api::CONVERSATIONS, json!({})).await;
    assert!(!list.more);
    list.conversations
        .into_iter()
        .map(|c| {
            let last = c.last.map(|m| m.text).unwrap_or_default();
            (c.to, c.head, c.unread, last)
        })
        .collect()
}

#[tokio::test]
async fn conversations_list_unread_counts_and_read_positions_with_receipts() {
    let running = start(&[]).await;
    let mut alice = User::new(&running, "alice").await;
    let mut bob = User::new(&running, "bob").await;
    alice.ok(api::GROUP_CREATE, json!({"name": "team"})).await;
    bob.ok(api::GROUP_JOIN, json!({"name": "team"})).await;
    for i in 1..=3 {
        let sent: Sent = alice
            .call(api::SEND, send(Target::group("team"), &format!("t{i}")))
            .await;
        assert_eq!(sent.seq, i);
    }
    alice.ok(api::SEND, send(Target::user("bob"), "d1")).await;
    alice.ok(api::SEND, send(Target::user("bob"), "d2")).await;
    // Live, each message with its seq; the direct conversation is followed
    // from its first message on.
    assert_eq!(bob.message("t3").await.seq, 3);
    assert_eq!(bob.message("d2").await.seq, 2);

    // Direct conversations first, then the rooms, each with its unread count.
    assert_eq!(
        conversations(&mut bob).await,
        [
            (Target::user("alice"), 2, 2, "d2".to_owned()),
            (Target::group("lobby"), 0, 0, String::new()),
            (Target::group("team"), 3, 3, "t3".to_owned()),
        ]
    );
    // Reading moves the read position; the sender gets a receipt.
    let read: wire::ReadEvent = bob
        .call(api::READ, json!({"to": {"group": "team"}, "seq": 2}))
        .await;
    assert_eq!((read.read, read.unread), (2, 1));
    let receipt: wire::Receipt =
        serde_json::from_value(alice.push(push::RECEIPT).await).expect("a receipt");
    assert_eq!(
        receipt,
        wire::Receipt {
            to: Target::group("team"),
            user: "bob".into(),
            seq: 2
        }
    );
    bob.ok(api::READ, json!({"to": {"user": "alice"}, "seq": 2}))
        .await;
    let receipt: wire::Receipt =
        serde_json::from_value(alice.push(push::RECEIPT).await).expect("a receipt");
    assert_eq!((receipt.to, receipt.seq), (Target::user("bob"), 2));
    let unread: Vec<u64> = conversations(&mut bob).await.iter().map(|c| c.2).collect();
    assert_eq!(unread, [0, 0, 1]);
    // The sender's own view: nothing unread in what they wrote.
    assert_eq!(
        conversations(&mut alice).await[0],
        (Target::user("bob"), 2, 0, "d2".to_owned())
    );

    // Bad reads change nothing.
    let e = bob
        .err(api::READ, json!({"to": {"group": "team"}, "seq": 99}), 400)
        .await;
    assert_eq!(e["code"], "beyond_head");
    alice.ok(api::GROUP_CREATE, json!({"name": "secret"})).await;
    let e = bob
        .err(api::READ, json!({"to": {"group": "secret"}, "seq": 0}), 403)
        .await;
    assert_eq!(e["code"], "not_member");
    // A direct conversation is always the caller's own; one nobody wrote in
    // has nothing to read yet.
    let mut carol = User::new(&running, "carol").await;
    let e = carol
        .err(api::READ, json!({"to": {"user": "alice"}, "seq": 1}), 400)
        .await;
    assert_eq!(e["code"], "beyond_head");
    assert_eq!(conversations(&mut bob).await[2].2, 1);
    let e = bob
        .err(api::CONVERSATIONS, json!({"limit": 501}), 400)
        .await;
    assert_eq!(e["code"], "bad_limit");

    // Direct conversations have a history, paged by seq.
    let h: wire::Messages = carol
        .call(api::HISTORY, json!({"to": {"user": "alice"}}))
        .await;
    assert!(h.messages.is_empty());
    let h: wire::Messages = alice
        .call(api::HISTORY, json!({"to": {"user": "bob"}, "after": 1}))
        .await;
    let got: Vec<(u64, &str)> = h
        .messages
        .iter()
        .map(|m| (m.seq, m.text.as_str()))
        .collect();
    assert_eq!(got, [(2, "d2")]);
    running.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn each_device_catches_up_exactly_from_its_own_cursor() {
    let running = start(&[]).await;
    let mut alice = User::new(&running, "alice").await;
    let bob = User::new(&running, "bob").await;
    drop(bob);
    alice.ok(api::GROUP_CREATE, json!({"name": "team"})).await;
    for i in 1..=3 {
        alice
            .ok(api::SEND, send(Target::group("lobby"), &format!("m{i}")))
            .await;
    }
    let running = &running;
    let as_device = |device: &'static str| async move {
        let mut u = User::connect(running);
        let login: LoggedIn = u
            .call(
                api::LOGIN,
                wire::Login::by_name("bob", "pw-bob").device(device),
            )
            .await;
        assert_eq!(login.device, device);
        u
    };
    // The laptop gets what it missed, acks two of them, and goes away.
    let mut laptop = as_device("laptop").await;
    for text in ["m1", "m2", "m3"] {
        let m = laptop.message(text).await;
        if text == "m2" {
            laptop.ok(api::ACK, json!({"ids": [m.id]})).await;
        }
    }
    drop(laptop);
    alice
        .ok(api::SEND, send(Target::group("lobby"), "m4"))
        .await;
    // Back: exactly what came after its cursor (m2), each once.
    let mut laptop = as_device("laptop").await;
    let got: Vec<(u64, String)> = [laptop.message("m3").await, laptop.message("m4").await]
        .into_iter()
        .map(|m| (m.seq, m.text))
        .collect();
    assert_eq!(got, [(3, "m3".to_owned()), (4, "m4".to_owned())]);
    laptop.no_push(push::MESSAGE).await;
    // Reading on the laptop moves the read position the user shares.
    laptop
        .ok(api::READ, json!({"to": {"group": "lobby"}, "seq": 3}))
        .await;
    drop(laptop);
    // A device new to the user starts from that read position.
    let mut phone = as_device("phone").await;
    assert_eq!(phone.message("m4").await.seq, 4);
    phone.no_push(push::MESSAGE).await;
    let e = phone
        .err(
            api::LOGIN,
            json!({"name": "bob", "password": "pw-bob", "device": "a/b"}),
            400,
        )
        .await;
    assert_eq!(e["code"], "bad_device");
}

/// `name` (password `pw-<name>`) logged in as `device` on a new connection.
async fn on_device(running: &Running, name: &str, device: &str) -> User {
    let mut u = User::connect(running);
    let login: LoggedIn = u
        .call(
            api::LOGIN,
            wire::Login::by_name(name, format!("pw-{name}")).device(device),
        )
        .await;
    assert_eq!(login.device, device);
    u.token = Some(login.token);
    u
}

#[tokio::test]
async fn several_devices_of_a_user_are_live_at_once_until_the_limit() {
    let running = start(&["--max-devices", "2"]).await;
    let mut alice = User::new(&running, "alice").await;
    drop(User::new(&running, "bob").await);
    let mut phone = on_device(&running, "bob", "phone").await;
    let mut laptop = on_device(&running, "bob", "laptop").await;

    // Both devices get live messages.
    let sent: Sent = alice
        .call(api::SEND, send(Target::user("bob"), "to both"))
        .await;
    for device in [&mut phone, &mut laptop] {
        assert_eq!(device.message("to both").await.seq, sent.seq);
    }
    // What one device sends reaches the other, not itself.
    phone
        .ok(api::SEND, send(Target::user("alice"), "from the phone"))
        .await;
    laptop.message("from the phone").await;
    assert_eq!(alice.message("from the phone").await.from, "bob");
    phone.no_push(push::MESSAGE).await;

    // Reading on the phone clears the laptop's badge; alice gets a receipt.
    phone
        .ok(api::READ, json!({"to": {"user": "alice"}, "seq": 2}))
        .await;
    let read = laptop.push(push::READ).await;
    assert_eq!(
        read,
        json!({"to": {"user": "alice"}, "read": 2, "unread": 0})
    );
    let receipt = alice.push(push::RECEIPT).await;
    assert_eq!(
        receipt,
        json!({"to": {"user": "bob"}, "user": "bob", "seq": 2})
    );

    // bob is online once, whatever his devices.
    let online: wire::OnlineUsers = alice.call(api::ONLINE, json!({})).await;
    assert_eq!(online.users, ["alice", "bob"]);

    // A third device: the least recently logged-in one (the phone) goes,
    // and its token no longer resumes it.
    let phone_token = phone.token.clone().unwrap();
    let mut tablet = on_device(&running, "bob", "tablet").await;
    assert_eq!(
        phone.push(push::SESSION).await,
        json!({"event": "too_many_devices"})
    );
    assert!(
        phone.client.closed().await,
        "the signed-out phone is closed"
    );
    let mut again = User::connect(&running);
    again
        .err(api::RESUME, json!({"token": phone_token}), 401)
        .await;
    alice
        .ok(api::SEND, send(Target::user("bob"), "still here"))
        .await;
    laptop.message("still here").await;
    tablet.message("still here").await;

    // The same device again replaces only itself.
    let mut laptop2 = on_device(&running, "bob", "laptop").await;
    assert_eq!(
        laptop.push(push::SESSION).await,
        json!({"event": "replaced"})
    );
    assert!(laptop.client.closed().await);
    alice
        .ok(api::SEND, send(Target::user("bob"), "after"))
        .await;
    laptop2.message("after").await;
    tablet.message("after").await;

    // Logging out everywhere ends every device; none resumes.
    let tablet_token = tablet.token.clone().unwrap();
    tablet.ok(api::LOGOUT_ALL, json!({})).await;
    assert_eq!(
        laptop2.push(push::SESSION).await,
        json!({"event": "logged_out_everywhere"})
    );
    assert!(laptop2.client.closed().await);
    tablet
        .err(api::SEND, send(Target::group("lobby"), "x"), 401)
        .await;
    again
        .err(api::RESUME, json!({"token": tablet_token}), 401)
        .await;
    // bob is offline now (once the closed connections are cleaned up).
    let mut online = Vec::new();
    for _ in 0..50 {
        let now: wire::OnlineUsers = alice.call(api::ONLINE, json!({})).await;
        online = now.users;
        if online == ["alice"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(online, ["alice"]);
    running.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn with_single_session_a_new_login_signs_out_every_other_device() {
    let running = start(&["--single-session"]).await;
    drop(User::new(&running, "bob").await);
    let mut phone = on_device(&running, "bob", "phone").await;
    let mut laptop = on_device(&running, "bob", "laptop").await;
    assert_eq!(
        phone.push(push::SESSION).await,
        json!({"event": "replaced"})
    );
    assert!(phone.client.closed().await);
    laptop
        .ok(api::SEND, send(Target::group("lobby"), "alone"))
        .await;
    running.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn edits_deletions_and_reactions_reach_members_and_show_in_history() {
    let running = start(&[]).await;
    let mut alice = User::new(&running, "alice").await;
    let mut bob = User::new(&running, "bob").await;
    let mut carol = User::new(&running, "carol").await;
    alice.ok(api::GROUP_CREATE, json!({"name": "team"})).await;
    for u in [&mut bob, &mut carol] {
        u.ok(api::GROUP_JOIN, json!({"name": "team"})).await;
    }
    let team = || json!({"group": "team"});
    let helo: Sent = alice
        .call(api::SEND, send(Target::group("team"), "helo"))
        .await;
    bob.message("helo").await;

    // The sender edits; the others see it live.
    alice
        .ok(
            api::EDIT,
            json!({"to": team(), "seq": helo.seq, "text": "hello"}),
        )
        .await;
    let edit: wire::MessageEdited =
        serde_json::from_value(bob.push(push::EDIT).await).expect("an edit push");
    assert_eq!(
        (edit.to, edit.seq, edit.text.as_str()),
        (Target::group("team"), helo.seq, "hello")
    );
    // Nobody else may edit or delete it; nothing changes.
    for (call, params) in [
        (
            api::EDIT,
            json!({"to": team(), "seq": helo.seq, "text": "mine"}),
        ),
        (api::DELETE, json!({"to": team(), "seq": helo.seq})),
    ] {
        assert_eq!(bob.err(call, params, 403).await["code"], "not_sender");
    }
    let e = alice
        .err(
            api::EDIT,
            json!({"to": team(), "seq": 99, "text": "x"}),
            404,
        )
        .await;
    assert_eq!(e["code"], "no_such_message");

    // Reactions: one emoji per user per message, toggled.
    let r: wire::Reacted = bob
        .call(
            api::REACT,
            json!({"to": team(), "seq": helo.seq, "reaction": "👍"}),
        )
        .await;
    assert_eq!(r.reaction.as_deref(), Some("👍"));
    let seen: wire::Reaction =
        serde_json::from_value(alice.push(push::REACT).await).expect("a react push");
    assert_eq!(
        (seen.user.as_str(), seen.reaction.as_deref()),
        ("bob", Some("👍"))
    );
    for bad in ["👍👍", "ok", &"x".repeat(100)] {
        let e = bob
            .err(
                api::REACT,
                json!({"to": team(), "seq": helo.seq, "reaction": bad}),
                400,
            )
            .await;
        assert_eq!(e["code"], "bad_reaction", "{bad}");
    }
    let r: wire::Reacted = bob
        .call(
            api::REACT,
            json!({"to": team(), "seq": helo.seq, "reaction": "👍"}),
        )
        .await;
    assert_eq!(r.reaction, None, "the same reaction again takes it back");
    carol
        .ok(
            api::REACT,
            json!({"to": team(), "seq": helo.seq, "reaction": "❤️"}),
        )
        .await;

    // An admin deletes a member's message; a member may not.
    alice
        .ok(
            api::GROUP_ROLE,
            json!({"name": "team", "user": "bob", "role": "admin"}),
        )
        .await;
    let spam: Sent = carol
        .call(api::SEND, send(Target::group("team"), "spam"))
        .await;
    let e = carol
        .err(api::DELETE, json!({"to": team(), "seq": helo.seq}), 403)
        .await;
    assert_eq!(e["code"], "not_sender");
    bob.ok(api::DELETE, json!({"to": team(), "seq": spam.seq}))
        .await;
    let gone: wire::MessageDeleted =
        serde_json::from_value(alice.push(push::DELETE).await).expect("a delete push");
    assert_eq!((gone.seq, gone.by.as_str()), (spam.seq, "bob"));
    let e = bob
        .err(api::DELETE, json!({"to": team(), "seq": spam.seq}), 409)
        .await;
    assert_eq!(e["code"], "deleted");

    // History carries all of it.
    let h: wire::Messages = carol.call(api::HISTORY, json!({"to": team()})).await;
    let [first, second] = &h.messages[..] else {
        panic!("two messages: {:?}", h.messages);
    };
    assert_eq!(first.text, "hello");
    assert!(first.edited.is_some());
    assert_eq!(
        first.reactions,
        std::collections::BTreeMap::from([("❤️".to_owned(), 1)])
    );
    assert!(second.deleted && second.text.is_empty());

    // A direct message is edited the same way; the peer sees its own `to`.
    let dm: Sent = alice
        .call(api::SEND, send(Target::user("bob"), "hi bb"))
        .await;
    bob.message("hi bb").await;
    alice
        .ok(
            api::EDIT,
            json!({"to": {"user": "bob"}, "seq": dm.seq, "text": "hi bob"}),
        )
        .await;
    let edit: wire::MessageEdited =
        serde_json::from_value(bob.push(push::EDIT).await).expect("an edit push");
    assert_eq!(
        (edit.to, edit.text.as_str()),
        (Target::user("alice"), "hi bob")
    );
    running.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn typing_reaches_the_others_online_is_rate_limited_and_never_stored() {
    let running = start(&[]).await;
    let mut alice = User::new(&running, "alice").await;
    let mut bob = User::new(&running, "bob").await;
    alice.ok(api::GROUP_CREATE, json!({"name": "team"})).await;
    bob.ok(api::GROUP_JOIN, json!({"name": "team"})).await;
    alice.ok(api::TYPING, json!({"to": {"user": "bob"}})).await;
    let t: wire::Typing =
        serde_json::from_value(bob.push(push::TYPING).await).expect("a typing push");
    assert_eq!(
        (t.to, t.user.as_deref()),
        (Target::user("alice"), Some("alice"))
    );
    alice
        .ok(api::TYPING, json!({"to": {"group": "team"}}))
        .await;
    let t: wire::Typing =
        serde_json::from_value(bob.push(push::TYPING).await).expect("a typing push");
    assert_eq!(t.to, Target::group("team"));
    // Nothing is stored: no message, nothing unread.
    let list: wire::ConversationList = bob.call(api::CONVERSATIONS, json!({})).await;
    assert!(list.conversations.iter().all(|c| c.head == 0), "{list:?}");
    // Where the caller may not send, it may not type either.
    alice.ok(api::GROUP_CREATE, json!({"name": "quiet"})).await;
    let e = bob
        .err(api::TYPING, json!({"to": {"group": "quiet"}}), 403)
        .await;
    assert_eq!(e["code"], "not_member");
    bob.ok(api::BLOCK, json!({"name": "alice"})).await;
    let e = alice
        .err(api::TYPING, json!({"to": {"user": "bob"}}), 403)
        .await;
    assert_eq!(e["code"], "blocked");
    // A flood gets 429 with when to come back.
    let mut refused = None;
    for _ in 0..10 {
        let params = json!({"to": {"group": "team"}});
        match alice.client.call(api::TYPING, params).await {
            Ok(_) => {}
            Err((status, e)) => {
                refused = Some((status, e));
                break;
            }
        }
    }
    let (status, e) = refused.expect("a typing flood is refused");
    assert_eq!((status, e["code"].as_str()), (429, Some("rate_limited")));
    running.shutdown(Duration::from_secs(1)).await;
}
