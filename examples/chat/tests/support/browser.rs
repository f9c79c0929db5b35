//! A small driver for headless Chromium over the Chrome DevTools Protocol
//! (CDP), for testing the web client in a real browser.
//!
//! No WebDriver and no npm: Chromium is started with
//! `--remote-debugging-port=0` and prints where it listens on stderr,
//!
//! ```text
//! DevTools listening on ws://127.0.0.1:<port>/devtools/browser/<id>
//! ```
//!
//! We open one WebSocket there, create a page (`Target.createTarget`), attach
//! to it as a flat session (`Target.attachToTarget`, `flatten: true`) and
//! send the page's commands over the same socket, tagged with the session:
//!
//! ```text
//! → {"id": 7, "sessionId": "…", "method": "Runtime.evaluate", "params": {…}}
//! ← {"id": 7, "sessionId": "…", "result": {…}}        or "error": {"message"}
//! ← {"sessionId": "…", "method": "Runtime.exceptionThrown", "params": {…}}
//! ```
//!
//! Commands go one at a time; events arriving meanwhile are dropped except
//! JavaScript exceptions, console errors and failed loads, which are kept
//! (see [`Browser::errors`]) and shown when a wait times out.
//!
//! Every [`Browser`] is its own Chromium process with a fresh profile
//! directory, so two of them share no cookies, storage or cache: two users.
//! Typing and clicking go through CDP's `Input` domain — real key and mouse
//! events at the element's position — so a covered or hidden control cannot
//! be clicked, as for a person.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::WAIT;

/// The Debian package that provides the browser, named in failure messages.
const INSTALL: &str = "sudo apt-get install -y chromium";

/// Page size for every screenshot, CSS pixels.
const VIEWPORT: (u32, u32) = (1200, 760);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One headless Chromium with one page open.
pub(crate) struct Browser {
    /// Who this browser is in messages ("alice").
    name: String,
    ws: Ws,
    session: String,
    next_id: u64,
    errors: Vec<String>,
    child: Child,
    _profile: tempfile::TempDir,
}

/// The Chromium executable: `$CHROMIUM` if set, else `chromium` (Debian),
/// `chromium-browser` or `google-chrome` from `PATH`. Fails — never skips —
/// saying what to install.
pub(crate) fn chromium_path() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "CHROMIUM={} is not a file; unset it or point it at a Chromium executable",
            p.display()
        );
        return p;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ] {
        if let Some(p) = std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
        {
            return p;
        }
    }
    panic!(
        "the browser test needs headless Chromium, and none is installed (looked for chromium, chromium-browser, \
         google-chrome in PATH).\nInstall it with:\n    {INSTALL}\n(scripts/test does this when run as root), \
         or set CHROMIUM=/path/to/chromium."
    );
}

/// `target/screenshots/`, created if needed (honours `CARGO_TARGET_DIR`).
pub(crate) fn screenshot_dir() -> PathBuf {
    // Cargo gives integration tests `<target dir>/tmp`; its parent is the
    // target directory wherever it is.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .to_owned();
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

impl Browser {
    /// Start a fresh headless Chromium (own profile) with a blank page.
    pub(crate) async fn launch(name: &str) -> Browser {
        let exe = chromium_path();
        let profile = tempfile::tempdir().expect("temp profile dir");
        let mut cmd = Command::new(&exe);
        cmd.args([
            "--headless",
            // Chromium's sandbox refuses to run as root, as in containers and CI.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            // Nothing may leave the machine: no update checks, sync or
            // QUIC probes (they are refused here and slow the start).
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--lang=en-US",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group, so that Drop can end the renderer and
        // helper processes along with it.
        .process_group(0)
        .kill_on_drop(true);
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e}\nInstall Chromium with:\n    {INSTALL}",
                exe.display()
            )
        });

        // Wait for the DevTools address; keep what it said in case it dies.
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut said = Vec::new();
        let endpoint = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(at) = line.find("ws://")
                    && line.contains("DevTools listening on")
                {
                    return Some(line[at..].trim().to_owned());
                }
                said.push(line);
            }
            None
        })
        .await;
        let endpoint = match endpoint {
            Ok(Some(url)) => url,
            Ok(None) => panic!(
                "{} exited before it was ready; it said:\n{}",
                exe.display(),
                said.join("\n")
            ),
            Err(_) => panic!(
                "{} printed no DevTools address within 30 s; it said:\n{}",
                exe.display(),
                said.join("\n")
            ),
        };
        // Keep draining stderr (Chromium is chatty) so it never blocks.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let (ws, _) = tokio_tungstenite::connect_async(endpoint.as_str())
            .await
            .unwrap_or_else(|e| panic!("connect to Chromium's DevTools at {endpoint}: {e}"));
        let mut b = Browser {
            name: name.to_owned(),
            ws,
            session: String::new(),
            next_id: 1,
            errors: Vec::new(),
            child,
            _profile: profile,
        };
        let target = b
            .command("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = b
            .command(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        b.session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_owned();
        b.command("Runtime.enable", json!({})).await;
        b.command("Log.enable", json!({})).await;
        b.command("Page.enable", json!({})).await;
        let (width, height) = VIEWPORT;
        b.command(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await;
        b
    }

    /// Send one CDP command (to the page once attached) and return its result.
    async fn command(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        self.ws
            .send(WsMessage::text(msg.to_string()))
            .await
            .unwrap_or_else(|e| panic!("{}: send {method} to Chromium: {e}", self.name));
        let reply = tokio::time::timeout(WAIT, async {
            loop {
                let text = match self.ws.next().await {
                    Some(Ok(WsMessage::Text(t))) => t,
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        panic!("{}: Chromium's DevTools connection failed: {e}", self.name)
                    }
                    None => panic!(
                        "{}: Chromium closed its DevTools connection (did it crash?)",
                        self.name
                    ),
                };
                let frame: Value = serde_json::from_str(text.as_str()).expect("CDP sends JSON");
                if frame["id"] == id {
                    return frame;
                }
                self.note_event(&frame);
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{}: no reply to {method} from Chromium within {WAIT:?}",
                self.name
            )
        });
        if let Some(e) = reply.get("error") {
            panic!("{}: {method} failed: {e}", self.name);
        }
        reply["result"].clone()
    }

    /// Keep the events that say something went wrong in the page.
    fn note_event(&mut self, frame: &Value) {
        let p = &frame["params"];
        let error = match frame["method"].as_str() {
            Some("Runtime.exceptionThrown") => {
                let d = &p["exceptionDetails"];
                let what = d["exception"]["description"]
                    .as_str()
                    .or(d["text"].as_str())
                    .unwrap_or("?");
                Some(format!("uncaught exception: {what}"))
            }
            Some("Runtime.consoleAPICalled") if p["type"] == "error" => {
                let args: Vec<String> = p["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| {
                        a["value"]
                            .as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| a["description"].to_string())
                    })
                    .collect();
                Some(format!("console.error: {}", args.join(" ")))
            }
            Some("Log.entryAdded") if p["entry"]["level"] == "error" => {
                let e = &p["entry"];
                Some(format!(
                    "{} ({})",
                    e["text"].as_str().unwrap_or("?"),
                    e["url"].as_str().unwrap_or("")
                ))
            }
            _ => None,
        };
        if let Some(e) = error {
            self.errors.push(e);
        }
    }

    /// JavaScript exceptions, `console.error` calls and failed loads seen so far.
    pub(crate) fn errors(&self) -> &[String] {
        &self.errors
    }

    /// Load `url` and wait until the document and its scripts are loaded.
    pub(crate) async fn open(&mut self, url: &str) {
        let nav = self.command("Page.navigate", json!({"url": url})).await;
        if let Some(e) = nav["errorText"].as_str() {
            panic!("{}: cannot load {url}: {e}", self.name);
        }
        self.wait_for(
            &format!("{url} to load"),
            "document.readyState === 'complete'",
        )
        .await;
    }

    /// Evaluate a JavaScript expression in the page (promises are awaited)
    /// and return its value as JSON.
    pub(crate) async fn eval(&mut self, js: &str) -> Value {
        let r = self
            .command(
                "Runtime.evaluate",
                json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        if let Some(d) = r.get("exceptionDetails") {
            let what = d["exception"]["description"]
                .as_str()
                .or(d["text"].as_str())
                .unwrap_or("?");
            panic!("{}: evaluating `{js}` threw: {what}", self.name);
        }
        r["result"]["value"].clone()
    }

    /// Poll `js` until it is truthy; on timeout fail with `what`, the page's
    /// text, its errors and a screenshot.
    pub(crate) async fn wait_for(&mut self, what: &str, js: &str) {
        let start = Instant::now();
        loop {
            let v = self.eval(js).await;
            if !matches!(v, Value::Null | Value::Bool(false)) && v != json!(0) && v != json!("") {
                return;
            }
            if start.elapsed() > WAIT {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let text = self
            .eval("document.body ? document.body.innerText : ''")
            .await;
        let shot = self.screenshot(&format!("FAILED-{}", self.name)).await;
        panic!(
            "{name}: waited {WAIT:?} for {what}\n  condition: {js}\n  page text:\n{text}\n  page errors: {errors:?}\n  screenshot: {shot}",
            name = self.name,
            text = indent(text.as_str().unwrap_or("")),
            errors = self.errors,
            shot = shot.display(),
        );
    }

    /// The text of the first element matching `selector` ("" if none).
    pub(crate) async fn text(&mut self, selector: &str) -> String {
        let js = format!(
            "document.querySelector({})?.innerText ?? ''",
            js_str(selector)
        );
        self.eval(&js).await.as_str().unwrap_or("").to_owned()
    }

    /// The texts of every element matching `selector`, in document order.
    pub(crate) async fn texts(&mut self, selector: &str) -> Vec<String> {
        let js = format!(
            "[...document.querySelectorAll({})].map(e => e.innerText)",
            js_str(selector)
        );
        serde_json::from_value(self.eval(&js).await).unwrap_or_default()
    }

    /// Click the middle of the element matching `selector` with the mouse,
    /// waiting until it is visible and nothing covers it.
    pub(crate) async fn click(&mut self, selector: &str) {
        let sel = js_str(selector);
        let find = format!(
            "(() => {{ const el = document.querySelector({sel}); if (!el) return null;
               el.scrollIntoView({{block: 'nearest'}});
               const r = el.getBoundingClientRect(); if (!r.width || !r.height) return null;
               const x = r.left + r.width / 2, y = r.top + r.height / 2;
               return el.contains(document.elementFromPoint(x, y)) ? [x, y] : null; }})()"
        );
        self.wait_for(&format!("{selector} to be clickable"), &find)
            .await;
        let at = self.eval(&find).await;
        let (x, y) = (at[0].as_f64().expect("x"), at[1].as_f64().expect("y"));
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.command(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            )
            .await;
        }
    }

    /// Click into the input matching `selector`, clear it and type `text`.
    pub(crate) async fn type_into(&mut self, selector: &str, text: &str) {
        self.click(selector).await;
        self.eval(&format!(
            "document.querySelector({}).select()",
            js_str(selector)
        ))
        .await;
        self.command("Input.insertText", json!({"text": text}))
            .await;
    }

    /// Press and release Enter in the focused element (submits its form).
    pub(crate) async fn press_enter(&mut self) {
        for kind in ["keyDown", "keyUp"] {
            let mut key =
                json!({"type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13});
            if kind == "keyDown" {
                key["text"] = json!("\r");
            }
            self.command("Input.dispatchKeyEvent", key).await;
        }
    }

    /// Save a PNG of the page as `target/screenshots/<name>.png`.
    pub(crate) async fn screenshot(&mut self, name: &str) -> PathBuf {
        let shot = self
            .command("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64_decode(shot["data"].as_str().expect("screenshot data"));
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{}: the screenshot is not a PNG",
            self.name
        );
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Close Chromium and wait for it to exit.
    pub(crate) async fn close(mut self) {
        self.session.clear();
        let id = self.next_id;
        let _ = self
            .ws
            .send(WsMessage::text(
                json!({"id": id, "method": "Browser.close"}).to_string(),
            ))
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole process group: the browser and its renderers.
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// `s` as a JavaScript string literal.
pub(crate) fn js_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Decode standard base64 (CDP's encoding of screenshots).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {:?}", c as char),
    };
    let digits: Vec<u8> = text
        .bytes()
        .filter(|c| !matches!(c, b'=' | b'\n' | b'\r'))
        .map(value)
        .collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &d)| n | (u32::from(d) << (18 - 6 * i)));
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}
