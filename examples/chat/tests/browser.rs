//! The web client in real headless Chromium: two people, each in their own
//! browser, register, meet in a group, talk there and privately, and see
//! each other's messages and unread counts appear live; and two browser
//! profiles of one user, both live.
//!
//! Needs Chromium (`sudo apt-get install -y chromium`); the test fails,
//! saying so, when it is missing. Screenshots land in
//! `target/screenshots/*.png` (the docs' images are copies of them).

mod support;

use support::Server;
use support::browser::{Browser, js_str};

#[tokio::test]
async fn two_browsers_chat_in_a_group_and_privately() {
    // Fail first, and clearly, when there is no browser.
    support::browser::chromium_path();
    let server = Server::start().await;
    let url = format!("http://{}/", server.http);
    let (mut alice, mut bob) = tokio::join!(Browser::launch("alice"), Browser::launch("bob"));
    tokio::join!(alice.open(&url), bob.open(&url));
    watch_errors(&mut alice).await;
    watch_errors(&mut bob).await;

    // Register: the form logs in right after. bob's name is in his own
    // language (`tiny_storage::name`).
    register(&mut alice, "alice", Some("login")).await;
    register(&mut bob, "张三", None).await;
    say(&mut bob, "hello, anyone here?").await;
    wait_message(&mut alice, "张三", "hello, anyone here?").await;

    // alice creates #rust; bob finds it (search is case-insensitive) and
    // joins it with the group form (Enter = join).
    alice.type_into("#group-name", "rust").await;
    alice.click("#create-btn").await;
    wait_channel(&mut alice, "g:rust", "# rust").await;
    bob.type_into("#search-query", "RU").await;
    bob.press_enter().await;
    bob.wait_for(
        "#rust, with its one member, in bob's search results",
        "[...document.querySelectorAll('#search-results li')].some(li => li.querySelector('.label')?.innerText === 'rust' && li.querySelector('.badge')?.innerText === '1')",
    )
    .await;
    bob.type_into("#group-name", "rust").await;
    bob.press_enter().await;
    wait_channel(&mut bob, "g:rust", "# rust").await;
    alice
        .wait_for(
            "the notice that 张三 joined",
            "document.querySelector('#notice').innerText.includes('张三 joined rust')",
        )
        .await;

    // They talk in the group: Enter and the Send button both send.
    say(&mut alice, "hi bob, welcome to #rust").await;
    wait_message(&mut bob, "alice", "hi bob, welcome to #rust").await;
    bob.type_into("#text", "thanks! who wrote the web client?")
        .await;
    bob.click("#send-form button").await;
    wait_message(&mut bob, "张三", "thanks! who wrote the web client?").await;
    wait_message(&mut alice, "张三", "thanks! who wrote the web client?").await;
    say(&mut alice, "plain HTML, CSS and JavaScript — no build step").await;
    wait_message(
        &mut bob,
        "alice",
        "plain HTML, CSS and JavaScript — no build step",
    )
    .await;
    assert_eq!(
        bob.texts("#messages .text").await,
        [
            "hi bob, welcome to #rust",
            "thanks! who wrote the web client?",
            "plain HTML, CSS and JavaScript — no build step"
        ],
        "bob sees the conversation in order"
    );
    assert_eq!(
        bob.texts("#messages li.mine .text").await,
        ["thanks! who wrote the web client?"],
        "only bob's own message is marked as his"
    );

    // alice adds bob as a friend: he is listed, online.
    alice.type_into("#friend-name", "张三").await;
    alice.press_enter().await;
    alice.wait_for("张三 in alice's friends, online", "[...document.querySelectorAll('#friends li')].some(li => li.innerText.trim() === '张三' && li.querySelector('.dot.on'))").await;

    // bob goes to the lobby; a message in #rust raises its unread count
    // instead of appearing.
    bob.click(&channel("g:lobby")).await;
    wait_channel(&mut bob, "g:lobby", "# lobby").await;
    say(&mut alice, "see you in the lobby later").await;
    wait_badge(&mut bob, "g:rust", "1").await;
    assert!(
        !bob.texts("#messages .text")
            .await
            .iter()
            .any(|t| t == "see you in the lobby later"),
        "a #rust message must not show in the lobby"
    );
    assert_eq!(
        badge(&mut bob, "g:lobby").await,
        "",
        "no unread count on the open channel"
    );

    // bob writes to alice privately from his online list; alice, still in
    // #rust, gets a new "@ 张三" channel with an unread count.
    bob.wait_for(
        "alice in bob's online list",
        "[...document.querySelectorAll('#online li')].some(li => li.innerText.trim() === 'alice')",
    )
    .await;
    bob.click("#online li[data-user=\"alice\"]").await;
    wait_channel(&mut bob, "u:alice", "@ alice").await;
    say(
        &mut bob,
        "psst — can I ask you something about the protocol?",
    )
    .await;
    wait_badge(&mut alice, "u:张三", "1").await;
    assert_eq!(
        alice.text("#channel-title .name").await,
        "# rust",
        "a private message does not switch channels"
    );
    alice.screenshot("group").await;

    // alice opens it: the message is there and the count is gone; her reply
    // appears live in bob's open private chat.
    alice.click(&channel("u:张三")).await;
    wait_channel(&mut alice, "u:张三", "@ 张三").await;
    wait_message(
        &mut alice,
        "张三",
        "psst — can I ask you something about the protocol?",
    )
    .await;
    assert_eq!(
        badge(&mut alice, "u:张三").await,
        "",
        "opening a channel clears its unread count"
    );
    say(&mut alice, "sure — PROTOCOL.md §1 has every API").await;
    wait_message(&mut bob, "alice", "sure — PROTOCOL.md §1 has every API").await;
    bob.screenshot("private").await;

    // Back in #rust bob finds what he missed, and the count is cleared.
    bob.click(&channel("g:rust")).await;
    wait_channel(&mut bob, "g:rust", "# rust").await;
    wait_message(&mut bob, "alice", "see you in the lobby later").await;
    assert_eq!(
        badge(&mut bob, "g:rust").await,
        "",
        "opening #rust clears its count"
    );

    // A reload keeps alice logged in (the token resumes the session) with
    // her groups, and #rust's history is there.
    alice.open(&url).await;
    watch_errors(&mut alice).await;
    alice
        .wait_for(
            "alice to be logged in again",
            "document.querySelector('#me').innerText === 'alice'",
        )
        .await;
    alice.click(&channel("g:rust")).await;
    wait_channel(&mut alice, "g:rust", "# rust").await;
    wait_message(&mut alice, "张三", "thanks! who wrote the web client?").await;
    wait_message(&mut alice, "alice", "see you in the lobby later").await;

    for b in [&mut alice, &mut bob] {
        assert!(
            b.errors().is_empty(),
            "the page logged errors: {:?}",
            b.errors()
        );
        let shown = b.eval("window.shownErrors").await;
        assert_eq!(shown, serde_json::json!([]), "the page showed errors");
    }
    tokio::join!(alice.close(), bob.close());
    #[expect(
        clippy::print_stderr,
        reason = "tell the person running the test where to look"
    )]
    {
        eprintln!(
            "screenshots in {}",
            support::browser::screenshot_dir().display()
        );
    }
}

#[tokio::test]
async fn two_browser_profiles_of_one_user_both_stay_live() {
    support::browser::chromium_path();
    let server = Server::start().await;
    let url = format!("http://{}/", server.http);
    let (mut alice, mut laptop, mut phone) = tokio::join!(
        Browser::launch("alice-2"),
        Browser::launch("bob-laptop"),
        Browser::launch("bob-phone")
    );
    tokio::join!(alice.open(&url), laptop.open(&url), phone.open(&url));
    register(&mut alice, "alice", None).await;
    register(&mut laptop, "bob", None).await;
    // The second profile logs in as bob too: its own device, so the first
    // one is not signed out.
    phone
        .wait_for(
            "the connection to the server",
            "!document.querySelector('#login-btn').disabled",
        )
        .await;
    phone.type_into("#auth-name", "bob").await;
    phone.type_into("#auth-password", "pw-bob-secret").await;
    phone.click("#login-btn").await;
    phone
        .wait_for(
            "bob to be logged in on the second profile",
            "document.querySelector('#me').innerText.startsWith('bob')",
        )
        .await;
    wait_channel(&mut phone, "g:lobby", "# lobby").await;

    say(&mut alice, "to both of bob's browsers").await;
    wait_message(&mut laptop, "alice", "to both of bob's browsers").await;
    wait_message(&mut phone, "alice", "to both of bob's browsers").await;
    // Each sends; the other profile shows it, as bob's own.
    say(&mut phone, "from the phone").await;
    wait_message(&mut laptop, "bob", "from the phone").await;
    say(&mut laptop, "from the laptop").await;
    wait_message(&mut phone, "bob", "from the laptop").await;
    assert!(
        laptop
            .eval("document.querySelector('#auth').hidden")
            .await
            .as_bool()
            .unwrap_or(false),
        "the first profile is still logged in"
    );
    phone.screenshot("two-profiles").await;
}

/// Record every error the page shows (login card or notice line) in
/// `window.shownErrors`: they are cleared after a few seconds, so a test
/// looking only at the end would miss them.
async fn watch_errors(b: &mut Browser) {
    b.eval(
        "window.shownErrors = [];
         for (const el of document.querySelectorAll('#auth-error, #notice')) {
           new MutationObserver(() => {
             if (el.classList.contains('error') && el.textContent) shownErrors.push(el.textContent);
           }).observe(el, {childList: true, characterData: true, subtree: true, attributes: true});
         }",
    )
    .await;
}

/// Fill the login card and press Register; wait until the app shows the
/// lobby, where everyone starts.
async fn register(b: &mut Browser, name: &str, screenshot: Option<&str>) {
    b.wait_for(
        "the connection to the server",
        "!document.querySelector('#register-btn').disabled",
    )
    .await;
    b.type_into("#auth-name", name).await;
    b.type_into("#auth-password", &format!("pw-{name}-secret"))
        .await;
    if let Some(shot) = screenshot {
        b.screenshot(shot).await;
    }
    b.click("#register-btn").await;
    b.wait_for(
        &format!("{name} to be logged in"),
        &format!(
            "document.querySelector('#me').innerText.startsWith({})",
            js_str(name)
        ),
    )
    .await;
    wait_channel(b, "g:lobby", "# lobby").await;
    assert!(
        b.eval("document.querySelector('#auth').hidden")
            .await
            .as_bool()
            .unwrap_or(false),
        "the login card is hidden"
    );
}

/// The channel list entry for `key` (`g:<group>` or `u:<user>`).
fn channel(key: &str) -> String {
    format!("#channels li[data-key={}]", js_str(key))
}

/// Wait until `key` is the open channel, titled `title`, and listed.
async fn wait_channel(b: &mut Browser, key: &str, title: &str) {
    let js = format!(
        "document.querySelector('#channel-title .name').innerText === {} && !!document.querySelector({})?.classList.contains('active')",
        js_str(title),
        js_str(&format!("{}.active", channel(key)))
    );
    b.wait_for(&format!("channel {title} to be open"), &js)
        .await;
}

/// Type `text` in the message box and press Enter; wait until it shows as ours.
async fn say(b: &mut Browser, text: &str) {
    b.type_into("#text", text).await;
    b.press_enter().await;
    let js = format!(
        "[...document.querySelectorAll('#messages li.mine .text')].some(t => t.innerText === {})",
        js_str(text)
    );
    b.wait_for(&format!("our message {text:?} to show"), &js)
        .await;
    b.wait_for(
        "the message box to clear after sending",
        "document.querySelector('#text').value === ''",
    )
    .await;
}

/// Wait until a message `text` from `from` shows in the open channel.
async fn wait_message(b: &mut Browser, from: &str, text: &str) {
    let js = format!(
        "[...document.querySelectorAll('#messages li')].some(li =>
            li.querySelector('.text')?.innerText === {t} && li.querySelector('.from')?.innerText === {f})",
        t = js_str(text),
        f = js_str(from)
    );
    b.wait_for(&format!("{from}'s message {text:?} to show"), &js)
        .await;
}

/// The unread count shown on channel `key` ("" when none).
async fn badge(b: &mut Browser, key: &str) -> String {
    b.text(&format!("{} .badge", channel(key))).await
}

async fn wait_badge(b: &mut Browser, key: &str, count: &str) {
    let js = format!(
        "document.querySelector({})?.innerText === {}",
        js_str(&format!("{} .badge", channel(key))),
        js_str(count)
    );
    b.wait_for(&format!("unread count {count} on {key}"), &js)
        .await;
}
