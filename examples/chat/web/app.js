// The chat web client: PROTOCOL.md §1 over one WebSocket.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  ws: null, nextId: 1, pending: new Map(), me: null, token: localStorage.getItem("chat.token"),
  channels: new Map(), // key -> {key, title, to, messages: Map(id -> msg), unread, loaded}
  current: "g:lobby", friends: new Map(), online: new Set(), toAck: new Set(), ackTimer: null,
  backoff: 500, closing: false,
};

// ---- connection -----------------------------------------------------------

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/ws`);
  state.ws = ws;
  setConn("connecting…", false);
  ws.onopen = async () => {
    state.backoff = 500;
    setConn("connected", true);
    if (state.token) {
      try { onLogin(await call("user.resume", { token: state.token })); }
      catch (e) { forgetToken(); showAuth(e.message); }
    } else {
      showAuth("");
    }
  };
  ws.onmessage = (ev) => {
    let frame;
    try { frame = JSON.parse(ev.data); } catch { return; }
    if (frame.push) return onPush(frame.push, frame.content || {});
    const waiter = state.pending.get(frame.id);
    if (!waiter) return;
    state.pending.delete(frame.id);
    if (frame.status === 200) waiter.resolve(frame.content || {});
    else waiter.reject(Object.assign(new Error(frame.error?.message || `error ${frame.status}`), { status: frame.status, code: frame.error?.code }));
  };
  ws.onclose = () => {
    for (const w of state.pending.values()) w.reject(new Error("connection lost"));
    state.pending.clear();
    if (state.closing) { setConn("signed out", false); return; }
    setConn("offline — reconnecting…", false);
    setTimeout(connect, state.backoff);
    state.backoff = Math.min(state.backoff * 2, 15000);
  };
}

function call(api, params = {}) {
  return new Promise((resolve, reject) => {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return reject(new Error("not connected"));
    const id = state.nextId++;
    state.pending.set(id, { resolve, reject });
    state.ws.send(JSON.stringify({ id, api, params }));
  });
}

// The connection state shows in the sidebar and on the login card, whose
// buttons only work while connected.
function setConn(text, ok) {
  for (const el of [$("conn"), $("auth-conn")]) { el.textContent = text; el.className = ok ? "conn ok" : "conn"; }
  $("login-btn").disabled = !ok;
  $("register-btn").disabled = !ok;
}
function forgetToken() { state.token = null; localStorage.removeItem("chat.token"); }

// ---- auth -----------------------------------------------------------------

function showAuth(error) {
  $("app").hidden = true;
  $("auth").hidden = false;
  $("auth-error").textContent = error || "";
  $("auth-name").focus();
}

// This browser profile's device id: each profile is its own device, so
// several stay logged in at once (a new login replaces only this one's).
function deviceId() {
  let id = localStorage.getItem("chat.device");
  if (!id) {
    const bytes = crypto.getRandomValues(new Uint8Array(6));
    id = "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    localStorage.setItem("chat.device", id);
  }
  return id;
}

function credentials() {
  const id = $("auth-name").value.trim();
  const params = { password: $("auth-password").value, device: deviceId() };
  if (/^\d+$/.test(id)) params.number = Number(id); else params.name = id;
  return params;
}

$("auth-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try { onLogin(await call("user.login", credentials())); }
  catch (e) { $("auth-error").textContent = e.message; }
});

$("register-btn").addEventListener("click", async () => {
  if (!$("auth-form").reportValidity()) return;
  const params = credentials();
  if (!params.name) { $("auth-error").textContent = "choose a name (not a number) to register"; return; }
  try {
    const { device, ...account } = params;
    const reg = await call("user.register", account);
    onLogin(await call("user.login", { name: reg.name, password: params.password, device: params.device }));
  } catch (e) { $("auth-error").textContent = e.message; }
});

$("logout-btn").addEventListener("click", async () => {
  try { await call("user.logout"); } catch { /* logged out either way */ }
  forgetToken();
  state.channels.clear();
  state.current = "g:lobby";
  $("auth-password").value = "";
  showAuth("");
});

async function onLogin(reply) {
  state.me = reply.name;
  state.token = reply.token;
  state.closing = false;
  localStorage.setItem("chat.token", reply.token);
  $("auth").hidden = true;
  $("app").hidden = false;
  $("auth-error").textContent = "";
  $("me").textContent = reply.name;
  $("me-number").textContent = `#${reply.number}`;
  state.friends = new Map((reply.friends || []).map((f) => [f.name, f.online]));
  ensureChannel("g:lobby");
  for (const g of reply.groups || []) ensureChannel(`g:${g.name}`);
  renderFriends();
  await refreshOnline();
  await openChannel(state.channels.has(state.current) ? state.current : "g:lobby");
}

// Presence pushes only come for friends and group co-members, so the list
// of everyone online is fetched again now and then.
async function refreshOnline() {
  try { state.online = new Set((await call("user.online")).users); } catch { return; }
  renderOnline();
}
setInterval(() => { if (state.me && !$("app").hidden && !document.hidden) refreshOnline(); }, 20000);

// ---- channels and messages -------------------------------------------------

function channelKeyOf(msg) {
  if (msg.to.group) return `g:${msg.to.group}`; // a private word inside a group shows there, marked
  return `u:${msg.from === state.me ? msg.to.user : msg.from}`;
}

function ensureChannel(key) {
  let ch = state.channels.get(key);
  if (!ch) {
    const [kind, name] = [key.slice(0, 1), key.slice(2)];
    ch = {
      key, kind, name, title: kind === "g" ? `# ${name}` : `@ ${name}`,
      to: kind === "g" ? { group: name } : { user: name },
      messages: new Map(), unread: 0, loaded: false,
    };
    state.channels.set(key, ch);
    renderChannels();
  }
  return ch;
}

async function openChannel(key) {
  const ch = ensureChannel(key);
  state.current = key;
  ch.unread = 0;
  renderTitle(ch);
  renderChannels();
  renderMessages();
  $("text").placeholder = ch.kind === "g" ? `Message #${ch.name}` : `Message @${ch.name}`;
  $("text").focus();
  // The server keeps history for groups (the lobby included), not for
  // private chats: those fill from live and offline messages.
  if (!ch.loaded && ch.kind !== "g") ch.loaded = true;
  if (!ch.loaded) {
    ch.loaded = true;
    try {
      const { messages } = await call("chat.history", { to: ch.to, limit: 50 });
      for (const m of messages) ch.messages.set(m.id, m);
    } catch (e) { notice(e.message, true); }
    if (state.current === key) renderMessages();
  }
}

function addMessage(msg) {
  const ch = ensureChannel(channelKeyOf(msg));
  if (ch.messages.has(msg.id)) return; // delivered again after a reconnect
  ch.messages.set(msg.id, msg);
  if (ch.key === state.current) renderMessages();
  if (msg.from !== state.me && (ch.key !== state.current || document.hidden)) { ch.unread += 1; renderChannels(); }
}

function ack(id) {
  state.toAck.add(id);
  clearTimeout(state.ackTimer);
  state.ackTimer = setTimeout(async () => {
    const ids = [...state.toAck];
    state.toAck.clear();
    try { await call("chat.ack", { ids }); } catch { ids.forEach((i) => state.toAck.add(i)); }
  }, 200);
}

function onPush(kind, c) {
  if (kind === "message") { addMessage(c); ack(c.id); }
  else if (kind === "presence") {
    if (c.online) state.online.add(c.user); else state.online.delete(c.user);
    if (state.friends.has(c.user)) state.friends.set(c.user, c.online);
    renderFriends(); renderOnline();
  } else if (kind === "group") {
    if (c.user === state.me && (c.event === "kicked" || c.event === "left")) {
      state.channels.delete(`g:${c.group}`);
      if (state.current === `g:${c.group}`) openChannel("g:lobby");
      renderChannels();
      if (c.event === "kicked") notice(`you were removed from ${c.group}`, true);
    } else if (c.user !== state.me) {
      if (c.event === "joined") { state.online.add(c.user); renderOnline(); }
      if (state.current === `g:${c.group}`) notice(`${c.user} ${c.event} ${c.group}`);
    }
  } else if (kind === "session") {
    state.closing = true;
    forgetToken();
    const why = {
      replaced: "you logged in again on this device",
      too_many_devices: "signed out: you are logged in on too many devices",
      logged_out_everywhere: "you logged out everywhere",
    };
    showAuth(why[c.event] || "you were signed out");
  }
}

$("send-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = $("text").value;
  if (!text.trim()) return;
  const ch = state.channels.get(state.current);
  try {
    const r = await call("chat.send", { to: ch.to, text, client_id: crypto.randomUUID() });
    $("text").value = "";
    addMessage({ id: r.id, ts: r.ts, from: state.me, to: ch.to, text });
  } catch (e) { notice(e.message, true); }
});

// ---- groups and friends ----------------------------------------------------

$("group-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  await groupAction("group.join", $("group-name").value.trim());
});
$("create-btn").addEventListener("click", () => {
  if ($("group-form").reportValidity()) groupAction("group.create", $("group-name").value.trim());
});

async function groupAction(api, name) {
  if (!name) return;
  try {
    await call(api, { name });
    $("group-name").value = "";
    $("search-results").replaceChildren();
    await openChannel(`g:${name}`);
  } catch (e) { notice(e.message, true); }
}

$("search-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    const { groups } = await call("group.search", { query: $("search-query").value.trim() });
    const items = groups.map((g) => {
      const el = li(g.name, `${g.members}`, () => groupAction("group.join", g.name));
      el.title = g.desc ? `${g.desc} — click to join` : "click to join";
      return el;
    });
    if (!items.length) items.push(empty("no groups found"));
    $("search-results").replaceChildren(...items);
  } catch (e) { notice(e.message, true); }
});

$("friend-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const name = $("friend-name").value.trim();
  try {
    await call("friend.add", { name });
    $("friend-name").value = "";
    const { friends } = await call("friend.list");
    state.friends = new Map(friends.map((f) => [f.name, f.online]));
    renderFriends();
  } catch (e) { notice(e.message, true); }
});

// ---- rendering ------------------------------------------------------------

function li(text, badge, onclick, dot) {
  const el = document.createElement("li");
  const label = document.createElement("span");
  label.className = "label";
  if (dot !== undefined) { const d = document.createElement("span"); d.className = dot ? "dot on" : "dot"; d.title = dot ? "online" : "offline"; label.append(d); }
  label.append(text);
  el.append(label);
  if (badge) { const b = document.createElement("span"); b.className = "badge"; b.textContent = badge; el.append(b); }
  if (onclick) el.addEventListener("click", onclick);
  return el;
}

function empty(text) {
  const el = document.createElement("li");
  el.className = "empty";
  el.textContent = text;
  return el;
}

function person(name, online) {
  const el = li(name, null, () => openChannel(`u:${name}`), online);
  el.dataset.user = name;
  el.title = `message ${name} privately`;
  return el;
}

function renderChannels() {
  const order = (ch) => (ch.key === "g:lobby" ? 0 : ch.kind === "g" ? 1 : 2);
  const chans = [...state.channels.values()].sort((a, b) => order(a) - order(b) || a.name.localeCompare(b.name));
  $("channels").replaceChildren(...chans.map((ch) => {
    const el = li(ch.title, ch.unread || null, () => openChannel(ch.key));
    el.dataset.key = ch.key;
    if (ch.key === state.current) el.classList.add("active");
    if (ch.unread) el.classList.add("unread");
    return el;
  }));
}

function renderTitle(ch) {
  const title = $("channel-title");
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = ch.title;
  const sub = document.createElement("small");
  sub.textContent = ch.key === "g:lobby" ? "everyone" : ch.kind === "g" ? "group" : "private chat";
  title.replaceChildren(name, sub);
}

function renderFriends() {
  const items = [...state.friends].sort(([a], [b]) => a.localeCompare(b)).map(([name, on]) => person(name, on));
  $("friends").replaceChildren(...(items.length ? items : [empty("no friends yet")]));
}

function renderOnline() {
  const items = [...state.online].filter((n) => n !== state.me).sort().map((n) => person(n, true));
  $("online").replaceChildren(...(items.length ? items : [empty("nobody else")]));
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });

function renderMessages() {
  const ch = state.channels.get(state.current);
  if (!ch) return;
  const msgs = [...ch.messages.values()].sort((a, b) => a.ts - b.ts || (a.id < b.id ? -1 : 1));
  const ol = $("messages");
  if (!msgs.length) { ol.replaceChildren(empty(ch.loaded ? "No messages yet — say hello." : "Loading…")); return; }
  ol.replaceChildren(...msgs.map((m) => {
    const el = document.createElement("li");
    if (m.from === state.me) el.classList.add("mine");
    if (m.to.user && m.to.group) el.classList.add("private");
    const meta = document.createElement("div");
    meta.className = "meta";
    const from = document.createElement("span");
    from.className = "from";
    from.textContent = m.from;
    const time = document.createElement("time");
    time.dateTime = new Date(m.ts).toISOString();
    time.textContent = timeFormat.format(new Date(m.ts));
    time.title = new Date(m.ts).toLocaleString();
    meta.append(from, time);
    const text = document.createElement("div");
    text.className = "text";
    text.textContent = m.text;
    el.append(meta, text);
    return el;
  }));
  ol.scrollTop = ol.scrollHeight;
}

function notice(text, error = false) {
  $("notice").textContent = text;
  $("notice").className = error ? "notice error" : "notice";
  clearTimeout(notice.timer);
  notice.timer = setTimeout(() => { $("notice").textContent = ""; }, 5000);
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden) { const ch = state.channels.get(state.current); if (ch) { ch.unread = 0; renderChannels(); renderMessages(); } }
});

connect();
