// chat.v1 client for browsers and Node 20+ (protocol/README.md is the contract; chat-client.d.ts the API).
// One dependency-free ES module: copy it (and the .d.ts) into your app.

export const TERMINAL_CLOSE_CODES = Object.freeze([4005, 4006, 4010]);

const PROTOCOL = "chat.v1";
// Errors that do not heal by resending the same frame (protocol README, "Error codes").
const FINAL_SEND_ERRORS = new Set(["invalid_message", "forbidden", "not_found", "bad_request", "unknown_type", "bad_json"]);
const TERMINAL_REASON = { 4005: "session_ended", 4006: "user_deleted", 4010: "origin_refused" };
const CATCH_UP_PAGE = 200;
const CATCH_UP_MAX_PAGES = 25; // past this, load the newest page and let the user scroll back instead
const SUBSCRIBE_CHUNK = 1000;
const TYPING_THROTTLE_MS = 3000;

function chatError(code, message, extra) {
  const e = new Error(message || code);
  e.name = "ChatError";
  e.code = code;
  if (extra) Object.assign(e, extra);
  return e;
}

function uuid() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  const b = new Uint8Array(16);
  if (c && typeof c.getRandomValues === "function") c.getRandomValues(b);
  else for (let i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// The token's `exp` in epoch ms (read, not verified: the server verifies), or null.
function tokenExpiry(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(part + "=".repeat((4 - (part.length % 4)) % 4));
    const payload = JSON.parse(new TextDecoder().decode(Uint8Array.from(bin, (ch) => ch.charCodeAt(0))));
    return typeof payload.exp === "number" ? payload.exp * 1000 : null;
  } catch {
    return null;
  }
}

// Per messageId the latest state wins: deleted wins, otherwise the later editedAt (protocol README).
function isNewer(incoming, existing) {
  if (!existing) return true;
  if (existing.deleted) return false;
  if (incoming.deleted) return true;
  const a = incoming.editedAt || "", b = existing.editedAt || "";
  if (a !== b) return a > b;
  return Boolean(incoming.senderDeleted && !existing.senderDeleted);
}

function toChatMessage(m) {
  const out = {
    messageId: m.messageId, conversationId: m.conversationId, seq: m.seq, senderId: m.senderId,
    clientId: m.clientId, text: m.deleted ? null : m.text, createdAt: m.createdAt, editedAt: m.editedAt ?? null,
    deleted: Boolean(m.deleted), status: "sent",
  };
  if (m.senderDeleted) out.senderDeleted = true;
  return Object.freeze(out);
}

function preview(m) {
  const p = { messageId: m.messageId, seq: m.seq, senderId: m.senderId, text: m.deleted ? null : (m.text ?? "").slice(0, 200), createdAt: m.createdAt };
  if (m.deleted) p.deleted = true;
  return Object.freeze(p);
}

function reportListenerError(e) {
  if (typeof globalThis.reportError === "function") globalThis.reportError(e);
  else console.error("chat-client: a listener threw", e);
}

export function createChatClient(options) {
  if (!options || typeof options.url !== "string") throw new TypeError("createChatClient: `url` is required");
  if (typeof options.getToken !== "function") throw new TypeError("createChatClient: `getToken` is required");
  const url = options.url;
  const requestTimeoutMs = options.requestTimeoutMs ?? 15000;
  const connectTimeoutMs = options.connectTimeoutMs ?? 10000;
  const backoffInitial = options.backoff?.initialMs ?? 500;
  const backoffMax = options.backoff?.maxMs ?? 30000;
  const backoffReset = options.backoff?.resetAfterMs ?? 30000;
  const refreshMargin = options.refreshMarginMs ?? 15000;
  const heartbeatMs = options.heartbeatMs ?? 25000;
  const pageSize = Math.min(200, Math.max(1, options.pageSize ?? 50));
  const typingTimeoutMs = options.typingTimeoutMs ?? 5000;
  const ratePerSecond = options.rateLimit?.perSecond ?? 40;
  const rateBurst = options.rateLimit?.burst ?? 80;
  const log = typeof options.log === "function" ? options.log : () => {};

  // ------------------------------------------------------------------ events and state snapshots
  const listeners = new Map();
  function on(type, fn) {
    if (typeof fn !== "function") throw new TypeError("listener must be a function");
    if (!listeners.has(type)) listeners.set(type, new Set());
    listeners.get(type).add(fn);
    return () => off(type, fn);
  }
  function off(type, fn) { listeners.get(type)?.delete(fn); }
  function emit(type, detail) {
    const set = listeners.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try { fn(detail); } catch (e) { reportListenerError(e); }
    }
  }

  let conn = {
    status: "idle", userId: null, sessionId: null, connectionId: null, syncing: false, attempt: 0, retryAt: null,
    lastCloseCode: null, lastCloseReason: null, error: null, tokenExpiresAt: null,
  };
  const convs = new Map(); // id -> { meta, unread, lastMessage, reads, historyComplete, snap }
  const boxes = new Map(); // conversationId -> { bySeq: Map<seq, ChatMessage>, pending: Map<clientId, rec>, snap }
  const watched = new Set();
  const presence = new Map();
  const typing = new Map(); // conversationId -> Map<userId, { expiresAt, timer }>
  let snapshot = null, presenceSnap = null, typingSnap = null, stateQueued = false;

  function changed() {
    snapshot = null;
    if (stateQueued) return;
    stateQueued = true;
    queueMicrotask(() => { stateQueued = false; emit("state", getState()); });
  }

  function setConn(patch) {
    conn = Object.freeze({ ...conn, ...patch });
    changed();
    emit("connection", conn);
  }

  function convSnap(rec) {
    if (!rec.snap) {
      rec.snap = Object.freeze({
        ...rec.meta, members: Object.freeze([...rec.meta.members]), unread: rec.unread, lastMessage: rec.lastMessage,
        reads: Object.freeze({ ...rec.reads }), historyComplete: rec.historyComplete,
      });
    }
    return rec.snap;
  }

  function pendingSnap(p) {
    if (!p.snap) {
      const m = { messageId: null, conversationId: p.conversationId, seq: null, senderId: conn.userId ?? "", clientId: p.clientId,
        text: p.text, createdAt: p.createdAt, editedAt: null, deleted: false, status: p.status };
      if (p.error) m.error = p.error;
      p.snap = Object.freeze(m);
    }
    return p.snap;
  }

  function boxSnap(box) {
    if (!box.snap) {
      const sent = [...box.bySeq.values()].sort((a, b) => a.seq - b.seq);
      const pending = [...box.pending.values()].sort((a, b) => a.order - b.order).map(pendingSnap);
      box.snap = Object.freeze(sent.concat(pending));
    }
    return box.snap;
  }

  function getState() {
    if (snapshot) return snapshot;
    const list = [...convs.values()].map(convSnap).sort((a, b) =>
      a.updatedAt === b.updatedAt ? (a.conversationId < b.conversationId ? 1 : -1) : (a.updatedAt < b.updatedAt ? 1 : -1));
    const byId = {};
    for (const c of list) byId[c.conversationId] = c;
    const messages = {};
    for (const [id, box] of boxes) messages[id] = boxSnap(box);
    if (!presenceSnap) presenceSnap = Object.freeze(Object.fromEntries(presence));
    if (!typingSnap) {
      const t = {};
      for (const [id, users] of typing) {
        if (users.size) t[id] = Object.freeze([...users].map(([userId, u]) => Object.freeze({ userId, expiresAt: u.expiresAt })));
      }
      typingSnap = Object.freeze(t);
    }
    snapshot = Object.freeze({
      connection: conn, conversations: Object.freeze(list), conversationsById: Object.freeze(byId),
      messages: Object.freeze(messages), presence: presenceSnap, typing: typingSnap,
    });
    return snapshot;
  }

  // ------------------------------------------------------------------ conversations and messages
  function box(id) {
    let b = boxes.get(id);
    if (!b) { b = { bySeq: new Map(), pending: new Map(), snap: null }; boxes.set(id, b); }
    return b;
  }
  const touchBox = (b) => { b.snap = null; changed(); };
  const touchConv = (rec) => { rec.snap = null; changed(); };
  const myRead = (rec) => rec.reads[conn.userId] ?? 0;

  function ensureConv(id, hint) {
    let rec = convs.get(id);
    if (!rec) {
      // Known only from a message so far: conversations.list fills it in.
      rec = { meta: { conversationId: id, kind: id.startsWith("dm:") ? "direct" : "group", name: null, members: [],
        lastSeq: 0, updatedAt: hint ?? new Date(0).toISOString() }, unread: 0, lastMessage: null, reads: {}, historyComplete: false, snap: null };
      convs.set(id, rec);
      scheduleRelist();
    }
    return rec;
  }

  // conversations.list replies can be older than events that overtook them: while a listing runs, the
  // conversations events touched or removed are noted, so that a stale page neither drops nor revives them.
  const listings = new Set();
  const noteTouched = (id) => { for (const l of listings) l.touched.add(id); };
  const noteRemoved = (id) => { for (const l of listings) l.removed.add(id); };

  function applyConversation(c, { fromList = false } = {}) {
    const me = conn.userId;
    if (!fromList) noteTouched(c.conversationId);
    if (me && !c.members.includes(me)) { if (!fromList) noteRemoved(c.conversationId); dropConversation(c.conversationId, c); return null; }
    let rec = convs.get(c.conversationId);
    const isNew = !rec;
    if (!rec) {
      rec = { meta: { ...c }, unread: 0, lastMessage: null, reads: {}, historyComplete: c.lastSeq === 0, snap: null };
      convs.set(c.conversationId, rec);
      // Added to a group with history: only the list knows the unread count.
      if (!fromList && c.lastSeq > 0) scheduleRelist();
    } else {
      // lastSeq moves with the messages themselves (and the list), so that each new one is counted once.
      rec.meta = { ...c, lastSeq: rec.meta.lastSeq, updatedAt: c.updatedAt > rec.meta.updatedAt ? c.updatedAt : rec.meta.updatedAt };
    }
    touchConv(rec);
    if (isNew || !fromList) emit("conversation", { conversation: convSnap(rec), removed: false });
    return rec;
  }

  function dropConversation(id, last) {
    const rec = convs.get(id);
    const b = boxes.get(id);
    if (b) {
      for (const p of b.pending.values()) settleSend(p, null, chatError("forbidden", "no longer a member of this conversation"));
      boxes.delete(id);
    }
    if (typing.delete(id)) typingSnap = null;
    if (!rec && !last) return;
    convs.delete(id);
    changed();
    const gone = rec ? convSnap(rec) : Object.freeze({ ...last, unread: 0, lastMessage: null, reads: {}, historyComplete: false });
    emit("conversation", { conversation: gone, removed: true });
  }

  // A conversation's messages are held as one window without gaps, from `low` up to `high`; anything held
  // above `high` (up to `max`) means a gap to fill with `history after`.
  function noteHeld(b, seq) {
    if (b.low == null || seq < b.low) {
      b.low = b.high = seq;
    }
    while (b.bySeq.has(b.high + 1)) b.high++;
    if (b.max == null || seq > b.max) b.max = seq;
  }
  function clearHeld(b) { b.bySeq.clear(); b.low = b.high = b.max = null; }
  // The seq up to which all messages are held, counting from the lowest one held (0: none held).
  const contiguousHigh = (b) => (b && b.bySeq.size ? b.high : 0);

  // source: "event" (live), "catchup" (sync, history after: new to us) or "history" (pages loaded on demand).
  function applyMessage(m, change, source) {
    noteTouched(m.conversationId);
    const rec = ensureConv(m.conversationId, m.createdAt);
    const b = box(m.conversationId);
    const existing = b.bySeq.get(m.seq);
    const me = conn.userId;
    const prevLast = rec.meta.lastSeq;
    let msg = existing;
    if (isNewer(m, existing)) {
      msg = toChatMessage(m);
      b.bySeq.set(m.seq, msg);
      if (!existing) noteHeld(b, m.seq);
      touchBox(b);
    }
    // One of our sends, stored: the pending copy gives way (ack and event can come in either order).
    let acked = null;
    if (m.senderId === me && b.pending.has(m.clientId)) {
      acked = b.pending.get(m.clientId);
      b.pending.delete(m.clientId);
      touchBox(b);
    }
    if (m.seq > prevLast) {
      rec.meta = { ...rec.meta, lastSeq: m.seq, updatedAt: m.createdAt > rec.meta.updatedAt ? m.createdAt : rec.meta.updatedAt };
      if (m.senderId !== me && !msg.deleted && m.seq > myRead(rec)) rec.unread += 1;
      touchConv(rec);
    } else if (msg.deleted && msg !== existing && (existing ? !existing.deleted : change === "deleted")
               && m.senderId !== me && m.seq > myRead(rec) && rec.unread > 0) {
      // Deleted messages are not unread (protocol README, "Read state").
      rec.unread -= 1;
      touchConv(rec);
    }
    if (!rec.lastMessage || m.seq > rec.lastMessage.seq || (m.seq === rec.lastMessage.seq && msg !== existing)) {
      rec.lastMessage = preview(msg);
      touchConv(rec);
    }
    if (m.seq === 1 && !rec.historyComplete) { rec.historyComplete = true; touchConv(rec); }
    if (change === "created" && source === "event") stopTyping(m.conversationId, m.senderId);
    // A jump in seq (a live event after a loss, an ack or a resent send's own message landing past what is
    // held): fetch what lies between (protocol README, "Delivery order").
    if (!existing && b.max > b.high && source !== "history") fillGap(m.conversationId);
    if (acked) settleSend(acked, { conversationId: m.conversationId, clientId: m.clientId, messageId: m.messageId, seq: m.seq, createdAt: m.createdAt }, null, msg);
    // Pages of older history loaded on demand are not news: they show up in `state` only.
    if (msg !== existing && (existing || source !== "history")) {
      emit("message", { change: existing ? (msg.deleted ? "deleted" : "updated") : change, message: msg });
    }
    return msg;
  }

  function applyRead(r) {
    const rec = convs.get(r.conversationId);
    if (!rec) return;
    const before = rec.reads[r.userId] ?? 0;
    if (r.seq > before) { rec.reads = { ...rec.reads, [r.userId]: r.seq }; touchConv(rec); }
    if (r.userId === conn.userId) recountUnread(rec);
    emit("read", { conversationId: r.conversationId, userId: r.userId, seq: r.seq });
  }

  // "count again from the messages you hold" (protocol README, "Read state"); seqs not held keep their old count at most.
  function recountUnread(rec) {
    const read = myRead(rec), last = rec.meta.lastSeq, me = conn.userId;
    let n = 0;
    if (read < last && last - read > 10000) n = Math.min(rec.unread, last - read);
    else if (read < last) {
      const b = boxes.get(rec.meta.conversationId);
      let missing = 0, counted = 0;
      for (let s = read + 1; s <= last; s++) {
        const m = b?.bySeq.get(s);
        if (!m) missing++;
        else if (m.senderId !== me && !m.deleted) counted++;
      }
      n = Math.min(rec.unread, counted + missing);
      if (missing === 0) n = counted;
    }
    if (n !== rec.unread) { rec.unread = n; touchConv(rec); }
  }

  function applyTyping(t) {
    if (t.userId === conn.userId) return;
    let users = typing.get(t.conversationId);
    if (!users) { users = new Map(); typing.set(t.conversationId, users); }
    const old = users.get(t.userId);
    if (old) clearTimeout(old.timer);
    const ms = typeof t.expiresInMs === "number" ? t.expiresInMs : typingTimeoutMs;
    users.set(t.userId, { expiresAt: Date.now() + ms, timer: setTimeout(() => stopTyping(t.conversationId, t.userId), ms) });
    typingSnap = null;
    changed();
    emit("typing", { conversationId: t.conversationId, userId: t.userId, expiresInMs: ms });
  }

  function stopTyping(conversationId, userId) {
    const users = typing.get(conversationId);
    const u = users?.get(userId);
    if (!u) return;
    clearTimeout(u.timer);
    users.delete(userId);
    if (!users.size) typing.delete(conversationId);
    typingSnap = null;
    changed();
  }

  function applyPresence(p) {
    if (!watched.has(p.userId)) return;
    const snap = Object.freeze({ userId: p.userId, isOnline: p.isOnline, lastSeen: p.lastSeen ?? null });
    presence.set(p.userId, snap);
    presenceSnap = null;
    changed();
    emit("presence", snap);
  }

  // ------------------------------------------------------------------ the socket
  let ws = null;
  let generation = 0; // one per socket; callbacks of an older socket are ignored
  let wanted = false;
  let connectWaiters = [];
  let retryTimer = null, connectTimer = null, refreshTimer = null, heartbeatTimer = null, stableTimer = null, relistTimer = null;
  let authId = null;
  let openedAt = 0, lastRx = 0, pingSentAt = 0;
  let nextId = 0;
  let skipCacheNext = false;
  let refused4003 = false;
  let currentToken = null;
  const inflight = new Map(); // request id -> request record
  const queue = []; // requests waiting for a connection
  let sendOrder = 0;

  const newId = () => `r${++nextId}`;

  function clearTimers() {
    for (const t of [retryTimer, connectTimer, refreshTimer, stableTimer, relistTimer, drainTimer]) clearTimeout(t);
    clearInterval(heartbeatTimer);
    retryTimer = connectTimer = refreshTimer = stableTimer = relistTimer = heartbeatTimer = drainTimer = null;
    outbox.length = 0; // frames of a lost socket: their requests are failed or resent
  }

  // Outgoing frames pass a token bucket below the server's limit (50/s, bursts of 100), so that a burst
  // of sends waits here instead of being dropped as rate_limited.
  let bucket = rateBurst, bucketAt = 0, drainTimer = null;
  const outbox = [];
  function rawSend(frame) {
    if (!ws || ws.readyState !== 1) return false;
    outbox.push(JSON.stringify(frame));
    drain();
    return true;
  }
  function drain() {
    const now = Date.now();
    bucket = Math.min(rateBurst, bucket + ((now - bucketAt) / 1000) * ratePerSecond);
    bucketAt = now;
    while (outbox.length && bucket >= 1 && ws && ws.readyState === 1) {
      bucket -= 1;
      try { ws.send(outbox.shift()); } catch (e) { log("warn", "send failed", e); }
    }
    if (outbox.length && !drainTimer) {
      drainTimer = setTimeout(() => { drainTimer = null; drain(); }, Math.ceil(1000 / ratePerSecond));
    }
  }

  async function attempt() {
    const gen = ++generation;
    log("debug", `connecting (attempt ${conn.attempt})`);
    setConn({ status: "connecting", retryAt: null });
    let token;
    try {
      // Bounded: a getToken() that never settles (Clerk unreachable) must not stall reconnecting.
      let timer;
      token = await Promise.race([
        options.getToken(skipCacheNext ? { skipCache: true } : undefined),
        new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`no token in ${connectTimeoutMs} ms`)), connectTimeoutMs); }),
      ]).finally(() => clearTimeout(timer));
    } catch (e) {
      if (gen !== generation || !wanted) return;
      log("warn", "getToken failed", e);
      return lost(gen, null, "getToken failed", chatError("token_unavailable", `getToken failed: ${e?.message ?? e}`));
    }
    if (gen !== generation || !wanted) return;
    if (!token) return stop(chatError("no_token", "getToken() gave no token: signed out"));
    skipCacheNext = false;
    currentToken = token;
    const WS = options.WebSocket ?? globalThis.WebSocket;
    if (typeof WS !== "function") return stop(chatError("no_websocket", "no WebSocket: pass `WebSocket` in the options (Node 20: node --experimental-websocket)"));
    let sock;
    try {
      sock = new WS(url, PROTOCOL);
    } catch (e) {
      return stop(chatError("bad_url", `cannot open ${url}: ${e?.message ?? e}`));
    }
    ws = sock;
    try { sock.binaryType = "arraybuffer"; } catch { /* not settable: text frames only */ }
    connectTimer = setTimeout(() => drop(gen, "no welcome in time"), connectTimeoutMs);
    let opened = false;
    sock.onopen = () => {
      if (gen !== generation) return;
      opened = true;
      authId = newId();
      rawSend({ type: "auth", id: authId, token });
      log("debug", "socket open, auth sent");
    };
    sock.onmessage = (ev) => {
      if (gen !== generation) return;
      const data = ev.data;
      if (typeof data === "string") onFrame(gen, data);
      else if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) onFrame(gen, new TextDecoder().decode(data));
      else if (data && typeof data.text === "function") data.text().then((t) => gen === generation && onFrame(gen, t));
    };
    // Browsers follow an error with a close event; Node 20's WebSocket (undici) does not when the
    // handshake fails (a 403 while the server drains, say), so an error is a loss unless a close comes.
    sock.onerror = () => {
      if (gen !== generation) return;
      if (!opened) lost(gen, 1006, "handshake failed");
      else setTimeout(() => { if (gen === generation && sock.readyState === 3) lost(gen, 1006, "connection error"); }, 1000);
    };
    sock.onclose = (ev) => lost(gen, ev?.code ?? 1006, ev?.reason ?? "");
  }

  // Gives up on a socket that looks dead (no welcome, no answer to ping) as if the network dropped it.
  function drop(gen, why) {
    if (gen !== generation || !ws) return;
    log("info", `dropping the connection: ${why}`);
    const sock = ws;
    sock.onopen = sock.onmessage = sock.onclose = sock.onerror = null;
    try { sock.close(4000, why); } catch { /* already closing */ }
    lost(gen, 1006, why);
  }

  function lost(gen, code, reason, err) {
    if (gen !== generation) return;
    generation++; // late events of this socket are ignored from now on
    const sock = ws;
    ws = null;
    if (sock) {
      sock.onopen = sock.onmessage = sock.onclose = sock.onerror = null;
      if (sock.readyState === 0) try { sock.close(); } catch { /* a failed handshake may not close */ }
    }
    const wasUp = conn.status === "open";
    const upFor = wasUp ? Date.now() - openedAt : 0;
    clearTimers();
    failInflight(chatError("disconnected", "the connection was lost before the reply"));
    if (code != null) log("info", `connection closed: ${code} ${reason}`);
    if (!wanted) return;
    if (TERMINAL_REASON[code]) {
      return stop(chatError(TERMINAL_REASON[code], `closed by the server: ${code} ${reason}`, { closeCode: code }), code, reason);
    }
    let quick = false;
    if (code === 4003) {
      if (refused4003) return stop(chatError("token_refused", "the server refused a fresh token too (4003): sign in again", { closeCode: code }), code, reason);
      refused4003 = true; skipCacheNext = true; quick = true;
    } else if (code === 4004) { skipCacheNext = true; quick = true; }
    else if (code === 1012) quick = true;
    let attemptNo = wasUp && upFor >= backoffReset ? 0 : conn.attempt;
    if (attemptNo >= 3) quick = false; // a token that keeps failing, or a server that keeps draining: back off
    const ceiling = quick ? 250 : Math.min(backoffMax, backoffInitial * 2 ** Math.min(attemptNo, 30));
    const delay = Math.floor(Math.random() * ceiling); // full jitter
    attemptNo += 1;
    setConn({ status: "reconnecting", attempt: attemptNo, retryAt: Date.now() + delay, lastCloseCode: code ?? conn.lastCloseCode,
      lastCloseReason: code != null ? reason : conn.lastCloseReason, syncing: false, error: err ?? conn.error, connectionId: null });
    retryTimer = setTimeout(() => { retryTimer = null; if (wanted) attempt(); }, delay);
  }

  function stop(err, code, reason) {
    wanted = false;
    generation++;
    const sock = ws;
    ws = null;
    if (sock) {
      sock.onopen = sock.onmessage = sock.onclose = sock.onerror = null;
      try { sock.close(1000, "client closed"); } catch { /* already closing */ }
    }
    clearTimers();
    const e = err ?? chatError("closed", "the client was closed");
    failInflight(e);
    failQueue(e);
    for (const b of boxes.values()) for (const p of b.pending.values()) { clearTimeout(p.timer); rejectWaiters(p, e); }
    // Nobody is typing for a stopped client (and no timer outlives it).
    for (const users of typing.values()) for (const u of users.values()) clearTimeout(u.timer);
    if (typing.size) { typing.clear(); typingSnap = null; }
    if (onlineTarget) onlineTarget.removeEventListener("online", onOnline);
    setConn({ status: "closed", retryAt: null, syncing: false, error: err ?? null, connectionId: null,
      lastCloseCode: code ?? conn.lastCloseCode, lastCloseReason: code != null ? reason : conn.lastCloseReason });
    const waiters = connectWaiters;
    connectWaiters = [];
    for (const [, reject] of waiters) reject(e);
    if (err) emit("error", err);
  }

  function onFrame(gen, text) {
    lastRx = Date.now();
    pingSentAt = 0;
    let f;
    try { f = JSON.parse(text); } catch { log("warn", "a frame that is not JSON", text); return; }
    if (!f || typeof f !== "object") return;
    switch (f.type) {
      case "welcome": return onWelcome(gen, f);
      case "ok": case "error": return onReply(f);
      case "presence": return applyPresence(f);
      case "conversation": return f.conversation && applyConversation(f.conversation);
      case "message": return f.message && applyMessage(f.message, "created", "event");
      case "message.updated": return f.message && applyMessage(f.message, "updated", "event");
      case "message.deleted": return f.message && applyMessage(f.message, "deleted", "event");
      case "read": return applyRead(f);
      case "typing": return applyTyping(f);
      default: log("debug", "unknown frame", f);
    }
  }

  function onWelcome(gen, f) {
    log("debug", `welcome ${f.connectionId}`);
    clearTimeout(connectTimer);
    connectTimer = null;
    refused4003 = false;
    if (conn.userId && conn.userId !== f.userId) resetData(); // another user signed in
    if (!conn.userId) for (const b of boxes.values()) { for (const p of b.pending.values()) p.snap = null; b.snap = null; } // senderId was unknown
    openedAt = Date.now();
    lastRx = openedAt;
    setConn({ status: "open", userId: f.userId, sessionId: f.sessionId ?? null, connectionId: f.connectionId ?? null,
      error: null, retryAt: null, tokenExpiresAt: tokenExpiry(currentToken), syncing: true });
    stableTimer = setTimeout(() => { if (conn.status === "open" && conn.attempt) setConn({ attempt: 0 }); }, backoffReset);
    scheduleRefresh();
    if (heartbeatMs > 0) heartbeatTimer = setInterval(() => heartbeat(gen), Math.max(1000, Math.floor(heartbeatMs / 5)));
    const waiters = connectWaiters;
    connectWaiters = [];
    for (const [resolve] of waiters) resolve();
    // Unacked sends first, with the same clientId: the server stores each once.
    const pend = [];
    for (const b of boxes.values()) for (const p of b.pending.values()) if (p.status === "pending") pend.push(p);
    pend.sort((a, b) => a.order - b.order).forEach(transmitSend);
    while (queue.length) transmit(queue.shift());
    resubscribePresence(gen);
    catchUp(gen);
  }

  function heartbeat(gen) {
    if (gen !== generation || conn.status !== "open") return;
    const now = Date.now();
    if (pingSentAt && now - pingSentAt > heartbeatMs) return drop(gen, "no answer to ping");
    if (!pingSentAt && now - lastRx > heartbeatMs) {
      pingSentAt = now;
      rawSend({ type: "ping", id: newId() });
    }
  }

  // ------------------------------------------------------------------ tokens
  function scheduleRefresh() {
    clearTimeout(refreshTimer);
    refreshTimer = null;
    const exp = conn.tokenExpiresAt;
    if (!exp) return;
    const delay = Math.max(1000, exp - Date.now() - refreshMargin);
    const gen = generation;
    refreshTimer = setTimeout(() => refreshToken(gen), delay);
  }

  async function refreshToken(gen, forceFresh = false) {
    if (gen !== generation || conn.status !== "open") return;
    try {
      let token = await options.getToken(forceFresh ? { skipCache: true } : undefined);
      if (token && !forceFresh && (tokenExpiry(token) ?? 0) <= (conn.tokenExpiresAt ?? 0)) token = await options.getToken({ skipCache: true });
      if (gen !== generation) return;
      if (!token) return stop(chatError("no_token", "getToken() gave no token: signed out"));
      const data = await request("refresh", { token });
      if (gen !== generation) return;
      currentToken = token;
      setConn({ tokenExpiresAt: Date.parse(data.expiresAt) || tokenExpiry(token) });
      scheduleRefresh();
    } catch (e) {
      if (gen !== generation) return;
      if (e.code === "wrong_user") { skipCacheNext = true; return drop(gen, "another user's token"); }
      if ((e.code === "token_expired" || e.code === "token_invalid") && !forceFresh) return refreshToken(gen, true);
      emit("error", e);
      refreshTimer = setTimeout(() => refreshToken(gen), 10000);
    }
  }

  // ------------------------------------------------------------------ requests
  function request(type, fields = {}) {
    return new Promise((resolve, reject) => {
      if (conn.status === "idle" || (conn.status === "closed" && !wanted)) {
        return reject(chatError("closed", "not connected: call connect()", { requestType: type }));
      }
      const rec = { type, fields, resolve, reject, id: null };
      rec.timer = setTimeout(() => {
        if (rec.id) inflight.delete(rec.id);
        const i = queue.indexOf(rec);
        if (i >= 0) queue.splice(i, 1);
        reject(chatError("timeout", `no reply to ${type} in ${requestTimeoutMs} ms`, { requestType: type }));
      }, requestTimeoutMs);
      if (conn.status === "open") transmit(rec);
      else queue.push(rec);
    });
  }

  function transmit(rec) {
    rec.id = newId();
    inflight.set(rec.id, rec);
    if (!rawSend({ ...rec.fields, type: rec.type, id: rec.id })) {
      inflight.delete(rec.id);
      rec.id = null;
      queue.push(rec);
    }
  }

  function onReply(f) {
    if (f.id && f.id === authId && f.type === "error") {
      // A refused auth: the close (4003, 4004, 4005, 4006, 1013) follows; keep the reason.
      setConn({ error: chatError(f.code, f.message) });
      return;
    }
    const rec = f.id != null ? inflight.get(f.id) : undefined;
    if (!rec) {
      if (f.type === "error") {
        log("warn", `error ${f.code}: ${f.message}`);
        if (f.code === "rate_limited") emit("error", chatError(f.code, f.message));
      }
      return;
    }
    inflight.delete(f.id);
    if (rec.send) return onSendReply(rec.send, f);
    clearTimeout(rec.timer);
    if (f.type === "ok") rec.resolve(f.data ?? {});
    else rec.reject(chatError(f.code ?? "internal", f.message ?? "", { requestType: rec.type }));
  }

  function failInflight(err) {
    for (const [id, rec] of inflight) {
      inflight.delete(id);
      if (rec.send) { // sends stay pending: resent after the next welcome
        clearTimeout(rec.send.timer);
        rec.send.reqId = null;
        continue;
      }
      clearTimeout(rec.timer);
      rec.reject(chatError(err.code, err.message, { requestType: rec.type, closeCode: err.closeCode }));
    }
  }

  function failQueue(err) {
    while (queue.length) {
      const rec = queue.shift();
      clearTimeout(rec.timer);
      rec.reject(chatError(err.code, err.message, { requestType: rec.type }));
    }
  }

  // ------------------------------------------------------------------ sending
  function send(conversationId, text, opts = {}) {
    if (typeof conversationId !== "string" || typeof text !== "string") return Promise.reject(new TypeError("send(conversationId, text)"));
    const clientId = opts.clientId ?? `c_${uuid()}`;
    const b = box(conversationId);
    const existing = b.pending.get(clientId);
    if (existing) return new Promise((res, rej) => existing.waiters.push([res, rej]));
    const p = { clientId, conversationId, text, createdAt: new Date().toISOString(), status: "pending", error: null,
      waiters: [], reqId: null, timer: null, order: ++sendOrder, snap: null };
    const promise = new Promise((res, rej) => p.waiters.push([res, rej]));
    b.pending.set(clientId, p);
    touchBox(b);
    if (conn.status === "open") transmitSend(p);
    else if (conn.status === "idle" || (conn.status === "closed" && !wanted)) rejectWaiters(p, chatError("closed", "not connected: the message stays pending until connect()"));
    return promise;
  }

  function transmitSend(p) {
    if (p.status !== "pending" || p.reqId) return;
    const id = newId();
    const rec = { type: "message.send", send: p, id };
    if (!rawSend({ type: "message.send", id, conversationId: p.conversationId, clientId: p.clientId, text: p.text })) return;
    p.reqId = id;
    inflight.set(id, rec);
    // No reply (a dropped rate_limited frame has no id): send the same frame again; it is stored once.
    clearTimeout(p.timer);
    p.timer = setTimeout(() => {
      if (p.reqId !== id) return;
      inflight.delete(id);
      p.reqId = null;
      if (conn.status === "open") transmitSend(p);
    }, requestTimeoutMs);
  }

  function onSendReply(p, f) {
    clearTimeout(p.timer);
    p.reqId = null;
    const b = boxes.get(p.conversationId);
    if (!b || b.pending.get(p.clientId) !== p) return; // already settled by its `message` event
    if (f.type === "ok") {
      const d = f.data;
      const held = box(p.conversationId).bySeq.get(d.seq);
      if (held) { b.pending.delete(p.clientId); touchBox(b); return settleSend(p, d, null, held); }
      // Ack before the event: the message as we sent it, until the event (or history) brings the server's copy.
      applyMessage({ messageId: d.messageId, conversationId: d.conversationId, seq: d.seq, senderId: conn.userId, clientId: d.clientId,
        text: p.text, createdAt: d.createdAt, editedAt: null, deleted: false }, "created", "ack");
      return;
    }
    const err = chatError(f.code ?? "internal", f.message ?? "", { requestType: "message.send" });
    if (FINAL_SEND_ERRORS.has(err.code)) {
      p.status = "failed";
      p.error = err;
      p.snap = null;
      touchBox(b);
      rejectWaiters(p, err);
      return;
    }
    // unavailable, internal...: the same frame again after a pause.
    const gen = generation;
    p.timer = setTimeout(() => { if (gen === generation && conn.status === "open") transmitSend(p); }, 1000 + Math.random() * 2000);
  }

  function settleSend(p, ack, err, msg) {
    clearTimeout(p.timer);
    if (p.reqId) { inflight.delete(p.reqId); p.reqId = null; }
    p.status = err ? "failed" : "sent";
    if (err) { rejectWaiters(p, err); return; }
    const waiters = p.waiters;
    p.waiters = [];
    for (const [resolve] of waiters) resolve(ack);
    if (msg) emit("message", { change: "acked", message: msg });
  }

  function rejectWaiters(p, err) {
    const waiters = p.waiters;
    p.waiters = [];
    for (const [, reject] of waiters) reject(err);
  }

  function retry(conversationId, clientId) {
    const p = boxes.get(conversationId)?.pending.get(clientId);
    if (!p) return Promise.reject(chatError("not_found", "no such pending or failed message"));
    const promise = new Promise((res, rej) => p.waiters.push([res, rej]));
    if (p.status === "failed") { p.status = "pending"; p.error = null; p.snap = null; touchBox(boxes.get(conversationId)); }
    if (conn.status === "open") transmitSend(p);
    return promise;
  }

  function discard(conversationId, clientId) {
    const b = boxes.get(conversationId);
    const p = b?.pending.get(clientId);
    if (!p) return;
    clearTimeout(p.timer);
    if (p.reqId) inflight.delete(p.reqId);
    b.pending.delete(clientId);
    rejectWaiters(p, chatError("discarded", "the message was discarded"));
    touchBox(b);
  }

  // ------------------------------------------------------------------ catching up
  async function catchUp(gen) {
    try {
      await refreshConversations();
      if (gen !== generation) return;
      // A reply cut at the server's byte bound says data.hasMore: sync again from where it left us.
      for (let round = 0, more = true; more && round < CATCH_UP_MAX_PAGES; round++) {
        const positions = {};
        for (const [id, rec] of convs) {
          const b = boxes.get(id);
          // Held messages, or a loaded (possibly empty) history: from there; otherwise skip it (history on opening).
          positions[id] = b && (b.bySeq.size || b.loaded) ? contiguousHigh(b) : rec.meta.lastSeq;
        }
        const data = await request("sync", { positions, limit: pageSize });
        if (gen !== generation) return;
        for (const entry of data.conversations ?? []) {
          if (!applyConversation(entry.conversation, { fromList: true })) continue;
          for (const m of entry.messages) applyMessage(m, "created", "catchup");
          if (entry.hasMore) await pageForward(gen, entry.conversation.conversationId);
        }
        more = data.hasMore === true;
      }
      // Edits and deletes made meanwhile to messages already held (sync brings only newer ones).
      for (const [id, b] of boxes) {
        if (gen !== generation) return;
        if (!b.bySeq.size || !convs.has(id)) continue;
        const page = await request("history", { conversationId: id, limit: Math.min(200, Math.max(pageSize, b.bySeq.size)) });
        for (const m of page.messages) applyMessage(m, "created", "catchup");
      }
    } catch (e) {
      if (gen === generation && e.code !== "disconnected" && e.code !== "closed") { log("warn", "catching up failed", e); emit("error", e); }
    } finally {
      if (gen === generation) setConn({ syncing: false });
    }
  }

  async function pageForward(gen, conversationId) {
    for (let page = 0; page < CATCH_UP_MAX_PAGES; page++) {
      if (gen !== generation) return;
      const after = contiguousHigh(boxes.get(conversationId));
      const data = await request("history", { conversationId, after, limit: CATCH_UP_PAGE });
      for (const m of data.messages) applyMessage(m, "created", "catchup");
      if (!data.hasMore) return;
    }
    // A long absence: keep the newest page; older ones load as the user scrolls back.
    const b = boxes.get(conversationId);
    if (b) { clearHeld(b); touchBox(b); }
    const rec = convs.get(conversationId);
    if (rec) { rec.historyComplete = false; touchConv(rec); }
    const data = await request("history", { conversationId, limit: pageSize });
    for (const m of data.messages) applyMessage(m, "created", "catchup");
  }

  const filling = new Map(); // conversationId -> another gap showed up while filling
  async function fillGap(conversationId) {
    if (filling.has(conversationId)) { filling.set(conversationId, true); return; }
    filling.set(conversationId, false);
    try {
      for (;;) {
        const from = contiguousHigh(boxes.get(conversationId));
        await pageForward(generation, conversationId);
        const b = boxes.get(conversationId);
        if (!b || contiguousHigh(b) === from) break; // no progress: leave it to the next catch-up
        if (!filling.get(conversationId) && !(b.max > b.high)) break;
        filling.set(conversationId, false);
      }
    } catch (e) {
      log("warn", "filling a gap failed", e);
    } finally {
      filling.delete(conversationId);
    }
  }

  function scheduleRelist() {
    if (relistTimer || conn.status !== "open") return;
    relistTimer = setTimeout(() => {
      relistTimer = null;
      refreshConversations().catch((e) => log("warn", "re-listing conversations failed", e));
    }, 300);
  }

  async function refreshConversations() {
    const seen = new Set();
    const listing = { touched: new Set(), removed: new Set() };
    listings.add(listing);
    try {
      let before = null;
      do {
        const data = await request("conversations.list", before ? { limit: pageSize, before } : { limit: pageSize });
        for (const c of data.conversations) applyListed(c, listing, seen);
        before = data.next;
      } while (before);
    } finally {
      listings.delete(listing);
    }
    // In no page: removed or left while away (unless an event since says otherwise).
    for (const id of [...convs.keys()]) {
      if (seen.has(id) || listing.touched.has(id)) continue;
      log("info", `${id} is in no page of conversations.list: dropped`);
      dropConversation(id);
    }
    return getState().conversations;
  }

  function applyListed(c, listing, seen) {
    seen.add(c.conversationId);
    if (listing.removed.has(c.conversationId)) return; // left or removed after the server listed it
    // An event since the server listed it has the newer name and members.
    const rec = listing.touched.has(c.conversationId) && convs.get(c.conversationId) || applyConversation(c, { fromList: true });
    if (!rec) return;
    const b = boxes.get(c.conversationId);
    // Messages that came in after the server counted: count them on top.
    let extra = 0;
    if (b) for (const m of b.bySeq.values()) if (m.seq > c.lastSeq && m.senderId !== conn.userId && !m.deleted) extra++;
    const reads = { ...rec.reads };
    for (const [u, s] of Object.entries(c.reads ?? {})) if (s > (reads[u] ?? 0)) reads[u] = s;
    rec.reads = reads;
    rec.unread = c.unread + extra;
    if (c.lastSeq >= rec.meta.lastSeq) {
      rec.meta = { ...rec.meta, lastSeq: c.lastSeq, updatedAt: c.updatedAt > rec.meta.updatedAt ? c.updatedAt : rec.meta.updatedAt };
      rec.lastMessage = c.lastMessage ? Object.freeze({ ...c.lastMessage }) : null;
    }
    if (c.lastSeq === 0) rec.historyComplete = true;
    touchConv(rec);
  }

  // ------------------------------------------------------------------ presence
  async function resubscribePresence(gen) {
    const ids = [...watched];
    try {
      for (let i = 0; i < ids.length; i += SUBSCRIBE_CHUNK) {
        const data = await request("presence.subscribe", { userIds: ids.slice(i, i + SUBSCRIBE_CHUNK) });
        if (gen !== generation) return;
        for (const s of data.users) applyPresence(s); // the snapshots are the truth: no events are replayed
      }
    } catch (e) {
      if (gen === generation && e.code !== "disconnected") emit("error", e);
    }
  }

  async function watchPresence(userIds) {
    const ids = [...new Set(userIds)];
    for (const id of ids) watched.add(id);
    const out = [];
    for (let i = 0; i < ids.length; i += SUBSCRIBE_CHUNK) {
      const data = await request("presence.subscribe", { userIds: ids.slice(i, i + SUBSCRIBE_CHUNK) });
      for (const s of data.users) { applyPresence(s); out.push(presence.get(s.userId) ?? s); }
    }
    return out;
  }

  async function unwatchPresence(userIds) {
    for (const id of userIds) { watched.delete(id); presence.delete(id); }
    presenceSnap = null;
    changed();
    if (conn.status !== "open") return; // subscriptions end with the connection anyway
    for (let i = 0; i < userIds.length; i += SUBSCRIBE_CHUNK) {
      await request("presence.unsubscribe", { userIds: userIds.slice(i, i + SUBSCRIBE_CHUNK) });
    }
  }

  // ------------------------------------------------------------------ the rest of the API
  async function conversationRequest(type, fields) {
    const data = await request(type, fields);
    const rec = applyConversation(data.conversation);
    return rec ? convSnap(rec) : Object.freeze({ ...data.conversation, unread: 0, lastMessage: null, reads: {}, historyComplete: false });
  }

  async function history(conversationId, opts = {}) {
    const fields = { conversationId };
    if (opts.before != null) fields.before = opts.before;
    if (opts.after != null) fields.after = opts.after;
    if (opts.limit != null) fields.limit = opts.limit;
    const data = await request("history", fields);
    box(conversationId).loaded = true;
    for (const m of data.messages) applyMessage(m, "created", opts.after != null ? "catchup" : "history");
    return data;
  }

  async function loadOlder(conversationId, limit = pageSize) {
    const b = boxes.get(conversationId);
    const oldest = b && b.bySeq.size ? b.low : null;
    if (oldest === 1) return { conversationId, messages: [], hasMore: false };
    const page = await history(conversationId, oldest ? { before: oldest, limit } : { limit });
    const rec = convs.get(conversationId);
    if (rec && !page.hasMore && !rec.historyComplete) { rec.historyComplete = true; touchConv(rec); }
    return page;
  }

  async function openConversation(conversationId) {
    const b = boxes.get(conversationId);
    const rec = convs.get(conversationId);
    // A page to show: nothing held yet, or only a few live messages of a conversation never opened.
    if (!b || b.bySeq.size === 0 || (!b.loaded && b.bySeq.size < pageSize && !rec?.historyComplete)) await loadOlder(conversationId);
    return getState().messages[conversationId] ?? [];
  }

  const reading = new Map(); // conversationId -> { seq, promise }
  function markRead(conversationId, seq) {
    const rec = convs.get(conversationId);
    if (seq == null) {
      const b = boxes.get(conversationId);
      seq = Math.max(rec?.meta.lastSeq ?? 0, b && b.bySeq.size ? b.max : 0);
    }
    const current = rec ? myRead(rec) : 0;
    if (rec && seq <= current) return Promise.resolve({ conversationId, seq: current });
    const running = reading.get(conversationId);
    if (running && running.seq >= seq) return running.promise;
    const promise = request("read", { conversationId, seq }).then((data) => {
      applyRead({ conversationId: data.conversationId, userId: conn.userId, seq: data.seq });
      return data;
    }).finally(() => { if (reading.get(conversationId)?.promise === promise) reading.delete(conversationId); });
    reading.set(conversationId, { seq, promise });
    return promise;
  }

  const typingSentAt = new Map();
  function sendTyping(conversationId) {
    const now = Date.now();
    if (now - (typingSentAt.get(conversationId) ?? 0) < TYPING_THROTTLE_MS) return Promise.resolve({ sent: false });
    if (conn.status !== "open") return Promise.resolve({ sent: false }); // a stale "typing" is worse than none
    typingSentAt.set(conversationId, now);
    return request("typing", { conversationId });
  }

  function resetData() {
    for (const b of boxes.values()) for (const p of b.pending.values()) { clearTimeout(p.timer); rejectWaiters(p, chatError("closed", "another user signed in")); }
    for (const users of typing.values()) for (const u of users.values()) clearTimeout(u.timer);
    convs.clear(); boxes.clear(); watched.clear(); presence.clear(); typing.clear(); typingSentAt.clear();
    presenceSnap = typingSnap = null;
    changed();
  }

  // Browsers: back online while waiting to retry: retry now.
  const onlineTarget = typeof globalThis.addEventListener === "function" && typeof globalThis.navigator === "object" ? globalThis : null;
  function onOnline() {
    if (!wanted || conn.status !== "reconnecting") return;
    clearTimeout(retryTimer);
    retryTimer = null;
    attempt();
  }

  function connect() {
    if (wanted) {
      if (conn.status === "open") return Promise.resolve();
      return new Promise((res, rej) => connectWaiters.push([res, rej]));
    }
    wanted = true;
    refused4003 = false;
    const promise = new Promise((res, rej) => connectWaiters.push([res, rej]));
    conn = Object.freeze({ ...conn, attempt: 0, error: null }); // attempt() announces the change
    if (onlineTarget) onlineTarget.addEventListener("online", onOnline);
    attempt();
    return promise;
  }

  function close() {
    if (!wanted && conn.status === "closed") return;
    stop(null);
  }

  return {
    get state() { return getState(); },
    getState,
    subscribe: (fn) => on("state", () => fn()),
    connect,
    close,
    on,
    addEventListener(type, fn) { on(type, fn); },
    removeEventListener: off,
    send,
    retry,
    discard,
    editMessage: async (conversationId, messageId, text) => {
      const data = await request("message.edit", { conversationId, messageId, text });
      applyMessage(data.message, "updated", "event");
      return data.message;
    },
    deleteMessage: async (conversationId, messageId) => {
      const data = await request("message.delete", { conversationId, messageId });
      applyMessage(data.message, "deleted", "event");
      return data.message;
    },
    markRead,
    sendTyping,
    openConversation,
    loadOlder,
    history,
    openDirect: (userId) => conversationRequest("conversation.direct", { userId }),
    createGroup: (name, memberIds) => conversationRequest("conversation.create", { name, members: memberIds }),
    renameGroup: (conversationId, name) => conversationRequest("conversation.rename", { conversationId, name }),
    addMembers: (conversationId, userIds) => conversationRequest("conversation.add", { conversationId, userIds }),
    removeMember: (conversationId, userId) => conversationRequest("conversation.remove", { conversationId, userId }),
    leaveGroup: (conversationId) => conversationRequest("conversation.leave", { conversationId }),
    refreshConversations,
    queryUsers: (query = {}) => {
      const fields = {};
      for (const k of ["search", "online", "limit", "after"]) if (query[k] != null) fields[k] = query[k];
      return request("users.query", fields);
    },
    watchPresence,
    unwatchPresence,
    request,
    ping: () => request("ping"),
  };
}
