// The chat web app: plain DOM on top of the chat.v1 client library (clients/js/chat-client.js).
// Served by chat-server under a strict CSP: no inline script, no eval, nothing from elsewhere but Clerk.
import { createChatClient } from "/lib/chat-client.js";

const $ = (id) => document.getElementById(id);
const config = JSON.parse(document.querySelector('meta[name="chat-config"]').content || "{}");
const wsURL = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${config.webSocketPath || "/ws"}`;

// ---------------------------------------------------------------------------------------------
// Sign-in: Clerk in production, "sign in as" (POST /dev/token) in development.

const DEV_USER_KEY = "chat.devUser";   // per tab: two tabs can be two people

async function devToken(userId) {
  const response = await fetch("/dev/token", {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ userId }),
  });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.error || `sign-in failed (HTTP ${response.status})`);
  }
  return (await response.json()).token;
}

function loadScript(src, attributes) {
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    for (const [name, value] of Object.entries(attributes)) script.setAttribute(name, value);
    script.src = src;
    script.async = true;
    script.onload = resolve;
    script.onerror = () => reject(new Error(`could not load ${new URL(src).host}`));
    document.head.append(script);
  });
}

async function boot() {
  if (config.signIn === "development") {
    const form = $("dev-signin");
    const remembered = sessionStorage.getItem(DEV_USER_KEY);
    if (remembered) {
      try { await startDevSession(remembered); return; } catch { sessionStorage.removeItem(DEV_USER_KEY); }
    }
    showSignIn(form);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const userId = $("dev-user").value.trim();
      $("dev-error").hidden = true;
      try { await startDevSession(userId); } catch (error) {
        $("dev-error").textContent = error.message;
        $("dev-error").hidden = false;
      }
    });
    $("dev-user").focus();
  } else if (config.signIn === "clerk") {
    await loadScript(config.clerkScript, { "data-clerk-publishable-key": config.publishableKey, crossorigin: "anonymous" });
    const clerk = window.Clerk;
    await clerk.load();
    const started = () => startApp({
      userId: clerk.user.id,
      profile: { username: clerk.user.username, firstName: clerk.user.firstName, lastName: clerk.user.lastName, imageUrl: clerk.user.imageUrl },
      getToken: (options) => clerk.session ? clerk.session.getToken(options) : Promise.resolve(null),
      signOut: () => clerk.signOut(),
    });
    if (clerk.user) { started(); return; }
    const mount = $("clerk-signin");
    showSignIn(mount);
    clerk.mountSignIn(mount);
    const stop = clerk.addListener(({ user }) => { if (user) { stop?.(); clerk.unmountSignIn(mount); started(); } });
  } else {
    showSignIn($("signin-unconfigured"));
  }
}

function showSignIn(part) {
  $("signin").hidden = false;
  $("app").hidden = true;
  part.hidden = false;
}

async function startDevSession(userId) {
  await devToken(userId);   // fails here, at the form, for a bad name or a server without the route
  sessionStorage.setItem(DEV_USER_KEY, userId);
  startApp({
    userId,
    profile: { username: userId },
    getToken: () => devToken(userId),
    signOut: async () => { sessionStorage.removeItem(DEV_USER_KEY); },
  });
}

// ---------------------------------------------------------------------------------------------
// The app

const ui = {
  client: null,
  me: null,
  signOut: null,
  activeId: null,
  everConnected: false,
  users: new Map(),          // userId -> directory entry (names, image)
  watched: new Set(),
  editing: null,             // {conversationId, messageId}
  loadingOlder: false,
  stickToBottom: true,
  readTimer: null,
  renderQueued: false,
};

function startApp({ userId, profile, getToken, signOut }) {
  ui.me = userId;
  ui.signOut = signOut;
  ui.users.set(userId, { userId, ...profile });
  $("signin").hidden = true;
  $("app").hidden = false;

  const client = createChatClient({ url: wsURL, getToken });
  ui.client = client;
  window.chat = client;   // for the console (and the browser tests)
  client.subscribe(scheduleRender);
  client.on("connection", (c) => {
    if (c.status === "open") {
      ui.everConnected = true;
      loadDirectory();
    }
  });
  client.on("message", ({ message }) => {
    if (message.conversationId === ui.activeId) scheduleRead();
  });
  client.connect().catch(() => {});
  wireEvents();
  setAvatar($("me-avatar"), userId, false);
  setInterval(scheduleRender, 15_000);   // "last seen 5 min ago" and times move on their own
  render();
}

/// Names for ids: the directory (users.query), a page at a time.
async function loadDirectory() {
  try {
    let after;
    for (let page = 0; page < 5; page++) {
      const { users, next } = await ui.client.queryUsers({ limit: 200, after });
      for (const u of users) ui.users.set(u.userId, u);
      if (!next) break;
      after = next;
    }
    scheduleRender();
  } catch { /* names fall back to ids */ }
}

/// Presence of everyone the user shares a conversation with (and their names, for people who joined
/// the directory after it was read).
function watchMembers() {
  const ids = new Set();
  for (const c of ui.client.state.conversations) for (const m of c.members) if (m !== ui.me) ids.add(m);
  if ([...ids].some((id) => !ui.users.has(id)) && !ui.directoryTimer) {
    ui.directoryTimer = setTimeout(() => { loadDirectory().finally(() => { ui.directoryTimer = null; }); }, 300);
  }
  const fresh = [...ids].filter((id) => !ui.watched.has(id)).slice(0, 1000);
  if (fresh.length === 0) return;
  fresh.forEach((id) => ui.watched.add(id));
  ui.client.watchPresence(fresh).catch(() => fresh.forEach((id) => ui.watched.delete(id)));
}

// ---------------------------------------------------------------------------------------------
// Names, avatars, times

function displayName(userId) {
  const u = ui.users.get(userId);
  if (!u) return userId;
  const full = [u.firstName, u.lastName].filter(Boolean).join(" ");
  return full || u.username || userId;
}

function conversationName(c) {
  if (c.kind === "group") return c.name || "Group";
  const other = c.members.find((m) => m !== ui.me) || ui.me;
  return displayName(other);
}

function peerOf(c) {
  return c.kind === "direct" ? (c.members.find((m) => m !== ui.me) || null) : null;
}

const PALETTE = ["#6366f1", "#0ea5e9", "#14b8a6", "#f59e0b", "#ef4444", "#ec4899", "#8b5cf6", "#10b981", "#f97316", "#3b82f6"];
function colorFor(id) {
  let h = 0;
  for (const ch of id) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return PALETTE[h % PALETTE.length];
}

function initials(name) {
  const parts = name.replace(/[^\p{L}\p{N} ]/gu, " ").trim().split(/\s+/).filter(Boolean);
  return ((parts[0]?.[0] || "?") + (parts[1]?.[0] || "")).toUpperCase();
}

function setAvatar(el, id, group, name, presence) {
  el.className = `avatar${group ? " group" : ""}${el.classList.contains("avatar-sm") ? " avatar-sm" : ""}`;
  el.style.setProperty("--avatar", colorFor(id));
  el.replaceChildren();
  const image = !group && ui.users.get(id)?.imageUrl;
  if (image) {
    const img = document.createElement("img");
    img.src = image; img.alt = "";
    el.append(img);
  } else {
    el.textContent = initials(name || displayName(id));
  }
  if (presence !== undefined) {
    const dot = document.createElement("span");
    dot.className = `dot${presence?.isOnline ? " online" : ""}`;
    dot.dataset.testid = "presence-dot";
    el.append(dot);
  }
}

function ago(iso) {
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 45) return "just now";
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 24) return `${hours} h ago`;
  const days = Math.round(hours / 24);
  return days === 1 ? "yesterday" : `${days} days ago`;
}

function presenceText(p) {
  if (!p) return "";
  if (p.isOnline) return "online";
  return p.lastSeen ? `last seen ${ago(p.lastSeen)}` : "offline";
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dayFormat = new Intl.DateTimeFormat(undefined, { weekday: "long", month: "short", day: "numeric" });
function shortTime(iso) {
  const d = new Date(iso);
  const today = new Date();
  if (d.toDateString() === today.toDateString()) return timeFormat.format(d);
  const days = (today - d) / 86_400_000;
  if (days < 6) return d.toLocaleDateString(undefined, { weekday: "short" });
  return d.toLocaleDateString(undefined, { month: "short", day: "numeric" });
}
function dayLabel(iso) {
  const d = new Date(iso);
  const today = new Date();
  const yesterday = new Date(Date.now() - 86_400_000);
  if (d.toDateString() === today.toDateString()) return "Today";
  if (d.toDateString() === yesterday.toDateString()) return "Yesterday";
  return dayFormat.format(d);
}

// ---------------------------------------------------------------------------------------------
// Rendering (state snapshots are immutable: unchanged objects are skipped)

function scheduleRender() {
  if (ui.renderQueued) return;
  ui.renderQueued = true;
  requestAnimationFrame(() => { ui.renderQueued = false; render(); });
}

function render() {
  const state = ui.client.state;
  if (state.conversations !== ui.seenConversations) {   // listed after a (re)connect, or changed
    ui.seenConversations = state.conversations;
    watchMembers();
  }
  renderBanner(state.connection);
  renderConversationList(state);
  renderChat(state);
  const unread = state.conversations.reduce((n, c) => n + (c.unread || 0), 0);
  document.title = unread > 0 ? `(${unread}) Chat` : "Chat";
}

function renderBanner(connection) {
  const banner = $("banner");
  let text = null, error = false;
  if (connection.status === "reconnecting" || (connection.status === "connecting" && ui.everConnected)) {
    const wait = connection.retryAt ? Math.ceil((connection.retryAt - Date.now()) / 1000) : 0;
    text = wait > 0 ? `Connection lost. Reconnecting in ${wait} s…` : "Connection lost. Reconnecting…";
    if (wait > 0) setTimeout(scheduleRender, 500);
  } else if (connection.status === "connecting") {
    text = "Connecting…";
  } else if (connection.status === "closed" && connection.error) {
    text = closedText(connection.error);
    error = true;
  }
  banner.hidden = text === null;
  banner.classList.toggle("error", error);
  if (text !== null && banner.textContent !== text) banner.textContent = text;
}

function closedText(error) {
  switch (error.code) {
    case "session_ended": return "Your session ended. Sign in again.";
    case "user_deleted": return "This account was deleted.";
    case "no_token": return "Signed out.";
    default: return `Disconnected: ${error.message || error.code}`;
  }
}

function renderConversationList(state) {
  const list = $("conversation-list");
  $("no-conversations").hidden = state.conversations.length > 0;
  const rows = new Map([...list.children].map((li) => [li.dataset.id, li]));
  let previous = null;
  for (const c of state.conversations) {
    let li = rows.get(c.conversationId);
    rows.delete(c.conversationId);
    if (!li) {
      li = document.createElement("li");
      li.className = "conv";
      li.dataset.id = c.conversationId;
      li.dataset.testid = "conversation";
      li.tabIndex = 0;
      li.innerHTML = '<span class="avatar"></span><span class="conv-name"></span><span class="conv-time"></span><span class="conv-preview"></span><span class="badge" data-testid="unread-badge"></span>';
      li.addEventListener("click", () => openConversation(c.conversationId));
      li.addEventListener("keydown", (e) => { if (e.key === "Enter") openConversation(c.conversationId); });
    }
    const peer = peerOf(c);
    const presence = peer ? livePresence(state, peer) : undefined;
    const typing = (state.typing[c.conversationId] || []).filter((t) => t.expiresAt > Date.now());
    const key = [c, presence, typing.length, ui.activeId === c.conversationId, ui.users.size, Math.floor(Date.now() / 60000)];
    if (!sameKey(li._key, key)) {
      li._key = key;
      li.classList.toggle("active", ui.activeId === c.conversationId);
      li.classList.toggle("unread", c.unread > 0);
      setAvatar(li.children[0], peer || c.conversationId, !peer, conversationName(c), peer ? presence || null : undefined);
      li.children[1].textContent = conversationName(c);
      li.children[2].textContent = c.lastMessage ? shortTime(c.lastMessage.createdAt) : "";
      const preview = li.children[3];
      preview.classList.toggle("typing-preview", typing.length > 0);
      preview.dataset.testid = "conversation-preview";
      if (typing.length > 0) preview.textContent = "typing…";
      else if (!c.lastMessage) preview.textContent = c.kind === "group" ? `${c.members.length} members` : "No messages yet";
      else {
        const who = c.lastMessage.senderId === ui.me ? "You: " : (c.kind === "group" ? `${displayName(c.lastMessage.senderId)}: ` : "");
        preview.textContent = who + (c.lastMessage.deleted || c.lastMessage.text === null ? "Message deleted" : c.lastMessage.text);
      }
      const badge = li.children[4];
      badge.hidden = !(c.unread > 0);
      badge.textContent = c.unread > 99 ? "99+" : String(c.unread || "");
    }
    if (li.previousElementSibling !== previous || li.parentNode !== list) {
      previous ? previous.after(li) : list.prepend(li);
    }
    previous = li;
  }
  for (const li of rows.values()) li.remove();
}

/// A watched user's presence, only while connected: what was true before a disconnect may no longer be.
function livePresence(state, userId) {
  return state.connection.status === "open" ? state.presence[userId] || null : null;
}

function sameKey(a, b) {
  return a && a.length === b.length && a.every((v, i) => v === b[i]);
}

function renderChat(state) {
  const c = ui.activeId ? state.conversationsById[ui.activeId] : null;
  if (ui.activeId && !c && state.connection.status === "open" && !state.connection.syncing) {
    ui.activeId = null;   // removed from a group, or left
  }
  $("app").classList.toggle("in-chat", Boolean(c));
  $("chat-empty").hidden = Boolean(c);
  $("chat-pane").hidden = !c;
  if (!c) return;

  const peer = peerOf(c);
  const presence = peer ? livePresence(state, peer) : undefined;
  setAvatar($("chat-avatar"), peer || c.conversationId, !peer, conversationName(c), peer ? presence || null : undefined);
  $("chat-name").textContent = conversationName(c);
  const status = $("chat-status");
  if (peer) {
    status.textContent = state.connection.status === "open" ? presenceText(presence) : "waiting for the network…";
    status.title = presence?.lastSeen && !presence.isOnline ? new Date(presence.lastSeen).toLocaleString() : "";
    status.classList.toggle("online", Boolean(presence?.isOnline));
  } else {
    const online = c.members.filter((m) => m !== ui.me && livePresence(state, m)?.isOnline).length;
    status.textContent = `${c.members.length} members` + (online ? ` · ${online} online` : "");
    status.classList.toggle("online", false);
  }

  $("leave-group").hidden = c.kind !== "group";
  renderMessages(c, state.messages[c.conversationId] || []);
  $("jump").hidden = ui.stickToBottom || !(c.unread > 0);
  // Whatever event brought them: unread messages on screen at the bottom of a visible page get read.
  if (ui.stickToBottom && !ui.readTimer && document.visibilityState === "visible"
      && newestHeld(c.conversationId) > (c.reads?.[ui.me] ?? 0)) scheduleRead();

  const typing = (state.typing[c.conversationId] || []).filter((t) => t.expiresAt > Date.now());
  const names = typing.map((t) => displayName(t.userId));
  $("typing").textContent = names.length === 0 ? "" :
    names.length === 1 ? `${names[0]} is typing…` : `${names.slice(0, -1).join(", ")} and ${names.at(-1)} are typing…`;
  if (typing.length > 0) setTimeout(scheduleRender, Math.max(50, Math.min(...typing.map((t) => t.expiresAt)) - Date.now() + 20));

  $("history-top").textContent = c.historyComplete ? ((state.messages[c.conversationId] || []).length ? "This is the beginning of the conversation" : "")
    : (ui.loadingOlder ? "Loading older messages…" : "");
}

function messageKey(m) { return m.clientId || m.messageId; }

function renderMessages(c, messages) {
  const box = $("messages");
  const list = $("message-list");
  if (list.dataset.conversation !== c.conversationId) {
    list.replaceChildren();
    list.dataset.conversation = c.conversationId;
    ui.stickToBottom = true;
  }
  const before = { height: box.scrollHeight, top: box.scrollTop };
  const atBottom = ui.stickToBottom;

  // "Seen by": for each other member, the newest of my messages they have read.
  const seenAt = new Map();   // messageKey -> [userIds]
  const mine = messages.filter((m) => m.senderId === ui.me && m.seq !== null && !m.deleted);
  for (const member of c.members) {
    if (member === ui.me) continue;
    const read = c.reads?.[member] || 0;
    const last = mine.filter((m) => m.seq <= read).at(-1);
    if (last) {
      const k = messageKey(last);
      seenAt.set(k, [...(seenAt.get(k) || []), member]);
    }
  }

  const existing = new Map([...list.children].map((el) => [el.dataset.key, el]));
  let previous = null, lastDay = null, lastSender = null;
  const wanted = [];
  for (const m of messages) {
    const day = dayLabel(m.createdAt);
    if (day !== lastDay) {
      wanted.push({ key: `day:${day}`, day });
      lastDay = day; lastSender = null;
    }
    wanted.push({ key: messageKey(m), m, first: m.senderId !== lastSender, seen: seenAt.get(messageKey(m)) || null });
    lastSender = m.senderId;
  }
  for (const item of wanted) {
    let el = existing.get(item.key);
    existing.delete(item.key);
    if (!el) {
      el = document.createElement("li");
      el.dataset.key = item.key;
      if (item.day) { el.className = "day"; el.textContent = item.day; }
    }
    if (item.m) updateMessage(el, c, item);
    if (el.previousElementSibling !== previous || el.parentNode !== list) {
      previous ? previous.after(el) : list.prepend(el);
    }
    previous = el;
  }
  for (const el of existing.values()) el.remove();

  if (atBottom) box.scrollTop = box.scrollHeight;
  else if (box.scrollHeight !== before.height && before.top < 200) box.scrollTop = before.top + (box.scrollHeight - before.height);
  // Nothing to scroll yet, but older messages exist: fetch them without waiting for a scroll.
  if (messages.length > 0 && !c.historyComplete && box.scrollHeight <= box.clientHeight) setTimeout(loadOlder, 0);
}

function updateMessage(el, c, { m, first, seen }) {
  const key = [m, first, seen?.join(","), ui.users.size, c.kind];
  if (sameKey(el._key, key)) return;
  el._key = key;
  const mine = m.senderId === ui.me;
  el.className = `msg${mine ? " mine" : ""}${first ? " first" : ""} ${m.status}${m.deleted ? " deleted" : ""}`;
  el.dataset.testid = "message";
  el.dataset.status = m.status;
  el.dataset.seq = m.seq ?? "";
  el.replaceChildren();
  if (first && !mine && c.kind === "group") {
    const sender = document.createElement("div");
    sender.className = "msg-sender";
    sender.textContent = m.senderDeleted ? "Deleted user" : displayName(m.senderId);
    el.append(sender);
  }
  const row = document.createElement("div");
  row.className = "msg-row";
  const bubble = document.createElement("div");
  bubble.className = "bubble";
  bubble.dataset.testid = "message-text";
  bubble.textContent = m.deleted ? "This message was deleted" : m.text;
  bubble.addEventListener("click", () => el.classList.toggle("show-actions"));   // touch screens: tap for Edit/Delete
  row.append(bubble);
  if (mine && !m.deleted && m.status === "sent") {
    const actions = document.createElement("div");
    actions.className = "msg-actions";
    actions.append(button("Edit", "edit", () => startEdit(c.conversationId, m)),
                   button("Delete", "delete", () => confirmDelete(c.conversationId, m)));
    row.append(actions);
  }
  el.append(row);

  const meta = document.createElement("div");
  meta.className = "msg-meta";
  const time = document.createElement("time");
  time.dateTime = m.createdAt;
  time.textContent = timeFormat.format(new Date(m.createdAt)) + (m.editedAt && !m.deleted ? " · edited" : "");
  meta.append(time);
  if (mine && !m.deleted) {
    const state = document.createElement("span");
    state.className = `state ${m.status}`;
    state.dataset.testid = "message-state";
    state.textContent = m.status === "pending" ? "Sending…" : m.status === "failed" ? `Not sent: ${m.error?.message || m.error?.code || "error"}` : "Delivered";
    meta.append(state);
    if (m.status === "failed") {
      meta.append(button("Retry", "retry", () => ui.client.retry(c.conversationId, m.clientId).catch(() => {})),
                  button("Discard", "retry", () => ui.client.discard(c.conversationId, m.clientId)));
    }
    if (seen) {
      const who = document.createElement("span");
      who.className = "seen";
      who.dataset.testid = "seen-by";
      who.textContent = c.kind === "direct" ? "Seen" : `Seen by ${seen.map(displayName).join(", ")}`;
      meta.append(who);
    }
  }
  el.append(meta);
}

function button(label, className, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  b.textContent = label;
  b.addEventListener("click", onClick);
  return b;
}

// ---------------------------------------------------------------------------------------------
// Actions

async function openConversation(conversationId) {
  cancelEdit();
  ui.activeId = conversationId;
  ui.stickToBottom = true;
  render();
  $("composer-input").focus();
  try { await ui.client.openConversation(conversationId); } catch { /* shown by the banner */ }
  scheduleRead(true);   // opening shows the newest messages
}

/// Read up to the newest message once the user sees it: the page is visible and scrolled to the end.
function scheduleRead(opened = false) {
  if (opened) ui.openedRead = true;   // kept until the timer runs, whatever reschedules it meanwhile
  clearTimeout(ui.readTimer);
  ui.readTimer = setTimeout(() => {
    ui.readTimer = null;
    const id = ui.activeId;
    const justOpened = ui.openedRead;
    ui.openedRead = false;
    if (!id || document.visibilityState !== "visible" || !(ui.stickToBottom || justOpened)) return;
    const c = ui.client.state.conversationsById[id];
    const seq = newestHeld(id);
    // Up to the newest message on screen (not lastSeq: one not loaded yet has not been seen).
    if (c && seq > (c.reads?.[ui.me] ?? 0)) ui.client.markRead(id, seq).catch(() => {});
  }, 300);
}

function newestHeld(conversationId) {
  const held = ui.client.state.messages[conversationId] || [];
  for (let i = held.length - 1; i >= 0; i--) if (held[i].seq !== null) return held[i].seq;
  return 0;
}

async function loadOlder() {
  const c = ui.client.state.conversationsById[ui.activeId];
  if (!c || c.historyComplete || ui.loadingOlder) return;
  ui.loadingOlder = true;
  scheduleRender();
  try { await ui.client.loadOlder(c.conversationId); } catch { /* retried on the next scroll */ }
  ui.loadingOlder = false;
  scheduleRender();
}

function startEdit(conversationId, m) {
  ui.editing = { conversationId, messageId: m.messageId };
  $("editing-bar").hidden = false;
  const input = $("composer-input");
  input.value = m.text;
  input.focus();
  autosize();
}

function cancelEdit() {
  if (!ui.editing) return;
  ui.editing = null;
  $("editing-bar").hidden = true;
  $("composer-input").value = "";
  autosize();
}

function askConfirm(title, text, action, run) {
  const dialog = $("confirm-dialog");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = action;
  dialog.returnValue = "";
  dialog.onclose = () => { if (dialog.returnValue === "ok") run(); };
  dialog.showModal();
}

function confirmDelete(conversationId, m) {
  askConfirm("Delete message?", "It is deleted for everyone in the conversation.", "Delete",
          () => ui.client.deleteMessage(conversationId, m.messageId).catch((e) => alertError(e)));
}

function confirmLeave(conversationId) {
  const c = ui.client.state.conversationsById[conversationId];
  askConfirm(`Leave ${c?.name || "the group"}?`, "You will no longer get its messages. A member can add you back.", "Leave",
          () => ui.client.leaveGroup(conversationId).then(() => { if (ui.activeId === conversationId) ui.activeId = null; scheduleRender(); },
                                                          (e) => alertError(e)));
}

function alertError(error) {
  const banner = $("banner");
  banner.textContent = error.message || String(error);
  banner.classList.add("error");
  banner.hidden = false;
  setTimeout(scheduleRender, 4000);
}

async function submitComposer() {
  const input = $("composer-input");
  const text = input.value;
  const id = ui.activeId;
  if (!id || text.trim() === "") return;
  if (ui.editing) {
    const { conversationId, messageId } = ui.editing;
    cancelEdit();
    ui.client.editMessage(conversationId, messageId, text).catch((e) => alertError(e));
    return;
  }
  input.value = "";
  autosize();
  ui.stickToBottom = true;
  // Pending at once; the library resends it with the same clientId until acked, across reconnects.
  ui.client.send(id, text).catch(() => {});
}

function autosize() {
  const input = $("composer-input");
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
}

// ---------------------------------------------------------------------------------------------
// New chat / new group

let peopleMode = "direct";
let selected = new Map();
let searchTimer = null;

function openPeople(mode) {
  peopleMode = mode;
  selected = new Map();
  $("people-title").textContent = mode === "direct" ? "New chat" : "New group";
  $("group-name").hidden = mode !== "group";
  $("group-name").value = "";
  $("people-create").hidden = mode !== "group";
  $("people-search").value = "";
  $("people-error").hidden = true;
  $("people-dialog").showModal();
  (mode === "group" ? $("group-name") : $("people-search")).focus();
  searchPeople();
}

async function searchPeople() {
  const search = $("people-search").value.trim();
  try {
    const { users } = await ui.client.queryUsers({ search: search || undefined, limit: 50 });
    for (const u of users) ui.users.set(u.userId, u);
    renderPeople(users.filter((u) => u.userId !== ui.me));
  } catch (error) {
    $("people-error").textContent = error.message;
    $("people-error").hidden = false;
  }
}

function renderPeople(users) {
  const list = $("people-list");
  list.replaceChildren();
  $("people-empty").hidden = users.length > 0;
  for (const u of users) {
    const li = document.createElement("li");
    li.className = `person${selected.has(u.userId) ? " selected" : ""}`;
    li.dataset.testid = "person";
    li.dataset.userId = u.userId;
    const avatar = document.createElement("span");
    avatar.className = "avatar avatar-sm";
    setAvatar(avatar, u.userId, false, displayName(u.userId), u);
    const text = document.createElement("div");
    const name = document.createElement("div");
    name.className = "person-name";
    name.textContent = displayName(u.userId);
    const sub = document.createElement("div");
    sub.className = "person-sub";
    sub.textContent = (u.username ? `@${u.username} · ` : "") + presenceText(u);
    text.append(name, sub);
    li.append(avatar, text);
    if (peopleMode === "group") {
      const check = document.createElement("span");
      check.className = "check";
      check.textContent = "✓";
      li.append(check);
    }
    li.addEventListener("click", () => pickPerson(u, li));
    list.append(li);
  }
}

async function pickPerson(u, li) {
  if (peopleMode === "group") {
    if (selected.has(u.userId)) selected.delete(u.userId); else selected.set(u.userId, u);
    li.classList.toggle("selected", selected.has(u.userId));
    return;
  }
  await openFromDialog(() => ui.client.openDirect(u.userId));
}

/** Opens the conversation `make` creates and closes the people dialog, or shows why it failed there. */
async function openFromDialog(make) {
  try {
    const c = await make();
    $("people-dialog").close();
    watchMembers();
    openConversation(c.conversationId);
  } catch (error) {
    $("people-error").textContent = error.message;
    $("people-error").hidden = false;
  }
}

async function createGroup() {
  const name = $("group-name").value.trim();
  if (!name) { $("people-error").textContent = "Give the group a name."; $("people-error").hidden = false; return; }
  await openFromDialog(() => ui.client.createGroup(name, [...selected.keys()]));
}

// ---------------------------------------------------------------------------------------------

function wireEvents() {
  $("new-direct").addEventListener("click", () => openPeople("direct"));
  $("new-group").addEventListener("click", () => openPeople("group"));
  $("people-search").addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(searchPeople, 200); });
  $("people-form").addEventListener("submit", (event) => {
    if (event.submitter?.value === "create") { event.preventDefault(); createGroup(); }
  });
  $("back").addEventListener("click", () => { ui.activeId = null; cancelEdit(); render(); });
  $("edit-cancel").addEventListener("click", cancelEdit);
  $("leave-group").addEventListener("click", () => ui.activeId && confirmLeave(ui.activeId));
  $("jump").addEventListener("click", () => { const box = $("messages"); box.scrollTop = box.scrollHeight; });
  $("signout").addEventListener("click", async () => {
    ui.client.close();
    await ui.signOut();
    location.reload();
  });
  $("composer").addEventListener("submit", (event) => { event.preventDefault(); submitComposer(); });
  const input = $("composer-input");
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); submitComposer(); }
    if (event.key === "Escape") cancelEdit();
  });
  input.addEventListener("input", () => {
    autosize();
    if (ui.activeId && input.value.trim() !== "" && !ui.editing) ui.client.sendTyping(ui.activeId).catch(() => {});
  });
  const box = $("messages");
  box.addEventListener("scroll", () => {
    ui.stickToBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    if (box.scrollTop < 120) loadOlder();
    if (ui.stickToBottom) scheduleRead();
    if (ui.stickToBottom && !$("jump").hidden) $("jump").hidden = true;
  });
  document.addEventListener("visibilitychange", () => { if (document.visibilityState === "visible") scheduleRead(); });
  window.addEventListener("focus", scheduleRead);
}

boot().catch((error) => {
  console.error(error);
  $("signin").hidden = false;
  $("app").hidden = true;
  $("boot-error").textContent = `Sign-in could not start: ${error.message}. Reload to try again.`;
  $("boot-error").hidden = false;
});
