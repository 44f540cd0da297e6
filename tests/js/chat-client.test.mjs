// clients/js/chat-client.js against a real chat-server and the embedded MongoDB (see harness.mjs).
// Run: node --experimental-websocket --test tests/js/   (scripts/test.sh does, in `make test`)
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createChatClient } from "../../clients/js/chat-client.js";
import { Mongo, Issuer, Server, Relay, fixture, freePort, sleep, until } from "./harness.mjs";

if (typeof globalThis.WebSocket !== "function") throw new Error("no global WebSocket: run node with --experimental-websocket");

const issuer = new Issuer();
let mongo;
let cleanups = [];

/**
 * A test on an embedded MongoDB of its own; its clients and servers end with it (one database shared by
 * the run piles up change streams). Each attempt is bounded. SecantusDB 0.7.0b3 can wedge (a thread
 * spinning under its global lock): a failed attempt whose database no longer takes a write runs once
 * more on a fresh one, and says so; any other failure fails the test at once.
 */
function chatTest(name, fn, { limitMs = 120000 } = {}) {
  test(name, { timeout: 2 * limitMs + 60000 }, async (t) => {
    for (let attempt = 1; ; attempt++) {
      mongo = await new Mongo().start();
      let wedged = false;
      try {
        let timer;
        const deadline = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`no result in ${limitMs} ms`)), limitMs); });
        try { await Promise.race([fn(t), deadline]); } finally { clearTimeout(timer); }
        return;
      } catch (e) {
        wedged = !(await mongo.answers());
        if (!wedged || attempt >= 2) throw e;
        t.diagnostic(`the embedded MongoDB stopped answering (${e.message}): running again on a fresh one`);
      } finally {
        for (const fn of cleanups.reverse()) await fn().catch(() => {});
        cleanups = [];
        await mongo.stop();
      }
    }
  });
}

async function startServer(opts) {
  const s = await new Server(mongo, issuer, opts).start();
  cleanups.push(() => s.stop());
  return s;
}

const uid = (name) => `user_${name}_${randomUUID().slice(0, 8)}`;

/** A client for `user`; `tokens` counts getToken() calls. */
function makeClient(url, user, { sid, ttl, ...opts } = {}) {
  const tokens = { calls: 0 };
  const c = createChatClient({
    url,
    getToken: async () => { tokens.calls++; return issuer.token(user, { sid, ttl }); },
    backoff: { initialMs: 200, maxMs: 2000 },
    requestTimeoutMs: 10000,
    // CHAT_CLIENT_DEBUG=1: the client's diagnostics on stderr
    log: process.env.CHAT_CLIENT_DEBUG ? (level, msg, detail) => console.error(new Date().toISOString(), user, level, msg, detail ?? "") : undefined,
    ...opts,
  });
  c.tokens = tokens;
  c.user = user;
  cleanups.push(async () => c.close());
  return c;
}

const texts = (c, id) => (c.state.messages[id] ?? []).map((m) => m.text);
const sentSeqs = (c, id) => (c.state.messages[id] ?? []).filter((m) => m.status === "sent").map((m) => m.seq);

/** Every message of a conversation as the server has it, read by a separate fresh connection. */
async function serverHistory(url, user, conversationId) {
  const reader = makeClient(url, user);
  await reader.connect();
  const all = [];
  let after = 0;
  for (;;) {
    const page = await reader.history(conversationId, { after, limit: 200 });
    all.push(...page.messages);
    if (!page.hasMore) break;
    after = page.messages.at(-1).seq;
  }
  reader.close();
  return all;
}

chatTest("two clients chat: direct conversation, ack, unread, read receipts, typing, edit, delete, presence", async () => {
  const server = await startServer();
  const alice = makeClient(server.url, uid("alice"));
  const bob = makeClient(server.url, uid("bob"));
  const statuses = [];
  alice.on("connection", (c) => statuses.push(c.status));
  await Promise.all([alice.connect(), bob.connect()]);
  assert.equal(alice.state.connection.status, "open");
  assert.equal(alice.state.connection.userId, alice.user);
  assert.deepEqual(statuses.slice(0, 2), ["connecting", "open"]);

  const presenceEvents = [];
  alice.on("presence", (p) => presenceEvents.push(p));
  const [snap] = await alice.watchPresence([bob.user]);
  assert.equal(snap.isOnline, true);
  assert.equal(alice.state.presence[bob.user].isOnline, true);

  const bobConversationEvents = [];
  bob.on("conversation", (e) => bobConversationEvents.push(e));
  const conv = await alice.openDirect(bob.user);
  const id = conv.conversationId;
  assert.equal(id, `dm:${[alice.user, bob.user].sort().join(":")}`);
  await until(() => bob.state.conversationsById[id], "bob's conversation event");
  assert.equal(bobConversationEvents[0].removed, false);

  // A send is pending in state at once, then sent with the server's seq.
  const sending = alice.send(id, "Lunch at 12:30?");
  const pending = alice.state.messages[id].at(-1);
  assert.equal(pending.status, "pending");
  assert.equal(pending.seq, null);
  assert.equal(pending.senderId, alice.user);
  const ack = await sending;
  assert.equal(ack.seq, 1);
  assert.equal(ack.clientId, pending.clientId);
  await until(() => alice.state.messages[id].length === 1 && alice.state.messages[id][0].status === "sent", "alice's message sent");
  assert.equal(alice.state.messages[id][0].messageId, ack.messageId);

  await until(() => bob.state.messages[id]?.length === 1, "bob receives the message");
  assert.equal(bob.state.messages[id][0].text, "Lunch at 12:30?");
  assert.equal(bob.state.conversationsById[id].unread, 1);
  assert.equal(bob.state.conversationsById[id].lastMessage.text, "Lunch at 12:30?");
  assert.equal(alice.state.conversationsById[id].unread, 0, "one's own messages are not unread");

  // Read receipt: bob reads, both see it.
  await bob.markRead(id);
  assert.equal(bob.state.conversationsById[id].unread, 0);
  await until(() => alice.state.conversationsById[id].reads[bob.user] === 1, "alice sees bob's read position");

  // Typing: bob types, alice sees it; bob's message ends it.
  assert.deepEqual(await bob.sendTyping(id), { sent: true });
  assert.deepEqual(await bob.sendTyping(id), { sent: false }, "throttled");
  await until(() => alice.state.typing[id]?.some((t) => t.userId === bob.user), "alice sees bob typing");
  assert.ok(alice.state.typing[id][0].expiresAt > Date.now());
  await bob.send(id, "Sure, see you there");
  await until(() => !alice.state.typing[id] && alice.state.messages[id].length === 2, "bob's reply ends his typing");
  assert.deepEqual(sentSeqs(alice, id), [1, 2]);
  assert.equal(alice.state.conversationsById[id].unread, 1);

  // Edit and delete, seen by the other side.
  await alice.editMessage(id, ack.messageId, "Lunch at 13:00?");
  await until(() => bob.state.messages[id][0].text === "Lunch at 13:00?", "bob sees the edit");
  assert.ok(bob.state.messages[id][0].editedAt);
  await alice.deleteMessage(id, ack.messageId);
  await until(() => bob.state.messages[id][0].deleted, "bob sees the delete");
  assert.equal(bob.state.messages[id][0].text, null);
  assert.deepEqual(texts(bob, id), [null, "Sure, see you there"]);

  // Presence: bob leaves, alice sees him offline with a last-seen time.
  bob.close();
  assert.equal(bob.state.connection.status, "closed");
  await until(() => alice.state.presence[bob.user]?.isOnline === false, "alice sees bob offline");
  assert.ok(Date.parse(alice.state.presence[bob.user].lastSeen) > Date.now() - 60000);
  assert.ok(presenceEvents.some((p) => p.userId === bob.user && !p.isOnline));
});

chatTest("a server restart mid-conversation loses and doubles nothing; presence is watched again", async () => {
  const server = await startServer({ port: await freePort() });
  const alice = makeClient(server.url, uid("alice"));
  const bob = makeClient(server.url, uid("bob"));
  await Promise.all([alice.connect(), bob.connect()]);
  await alice.watchPresence([bob.user]);
  const { conversationId: id } = await alice.openDirect(bob.user);
  await until(() => bob.state.conversationsById[id], "bob knows the conversation");
  // Both have it open (an app loads a conversation's history when it shows it): catch-up fills it whole.
  await Promise.all([alice.openConversation(id), bob.openConversation(id)]);

  const errors = [];
  alice.on("error", (e) => errors.push(e.code));
  const closeCodes = [];
  alice.on("connection", (c) => c.status === "reconnecting" && closeCodes.push(c.lastCloseCode));
  const sends = [];
  const say = (who, n) => { for (let i = 0; i < n; i++) sends.push(who.send(id, `${who === alice ? "a" : "b"}${sends.length}`)); };
  say(alice, 10);
  say(bob, 10);
  // Restart while those are in flight, and keep talking during the outage.
  const restarting = server.restart();
  await until(() => alice.state.connection.status !== "open" && bob.state.connection.status !== "open", "both notice the restart");
  say(alice, 5);
  say(bob, 5);
  await restarting;
  say(alice, 5);
  const acks = await Promise.all(sends);

  assert.ok(closeCodes.length >= 1, "alice reconnected");
  const stored = await serverHistory(server.url, alice.user, id);
  assert.equal(stored.length, 35, "each send stored exactly once");
  assert.deepEqual(stored.map((m) => m.seq), Array.from({ length: 35 }, (_, i) => i + 1));
  assert.equal(new Set(stored.map((m) => m.clientId)).size, 35);
  assert.deepEqual(new Set(acks.map((a) => a.messageId)), new Set(stored.map((m) => m.messageId)));
  for (const c of [alice, bob]) {
    await until(() => sentSeqs(c, id).length === 35 && c.state.connection.syncing === false, `${c.user} holds all 35`)
      .catch((e) => { console.error(errors, JSON.stringify(c.state.connection), sentSeqs(c, id), c.state.messages[id].filter((m) => m.status !== "sent")); throw e; });
    assert.deepEqual(sentSeqs(c, id), stored.map((m) => m.seq));
    assert.deepEqual(texts(c, id), stored.map((m) => m.text));
    assert.equal(c.state.messages[id].filter((m) => m.status !== "sent").length, 0, "nothing pending or failed");
  }
  // Watched again after the reconnect: bob going away reaches alice.
  await until(() => alice.state.presence[bob.user]?.isOnline === true, "alice sees bob online again");
  bob.close();
  await until(() => alice.state.presence[bob.user]?.isOnline === false, "alice sees bob offline after the restart");
});

chatTest("a send while disconnected stays pending and is stored once after the reconnect", async () => {
  const server = await startServer({ port: await freePort() });
  const alice = makeClient(server.url, uid("alice"));
  const bob = makeClient(server.url, uid("bob"));
  await Promise.all([alice.connect(), bob.connect()]);
  const { conversationId: id } = await alice.openDirect(bob.user);
  await until(() => bob.state.conversationsById[id], "bob knows the conversation");
  assert.deepEqual(await bob.openConversation(id), []);

  await server.stop();
  await until(() => alice.state.connection.status === "reconnecting", "alice is reconnecting");
  let acked = null;
  const sending = alice.send(id, "sent while offline").then((a) => { acked = a; return a; });
  await sleep(300);
  assert.equal(acked, null);
  const offline = alice.state.messages[id];
  assert.equal(offline.length, 1);
  assert.equal(offline[0].status, "pending");
  assert.equal(offline[0].text, "sent while offline");

  await server.start();
  const ack = await sending;
  assert.equal(ack.clientId, offline[0].clientId);
  await until(() => bob.state.messages[id]?.length === 1, "bob gets it after his own reconnect");
  assert.equal(bob.state.conversationsById[id].unread, 1);
  const stored = await serverHistory(server.url, bob.user, id);
  assert.deepEqual(stored.map((m) => [m.seq, m.clientId, m.text]), [[1, offline[0].clientId, "sent while offline"]]);
  await until(() => alice.state.messages[id].every((m) => m.status === "sent"), "alice's copy is sent");
  assert.equal(alice.state.messages[id].length, 1);
});

chatTest("an ack lost with the connection: the resend with the same clientId is stored once", async () => {
  const server = await startServer();
  const relay = await new Relay(server.port).start();
  cleanups.push(() => relay.stop());
  const alice = makeClient(relay.url, uid("alice"));
  const bob = makeClient(server.url, uid("bob"));
  await Promise.all([alice.connect(), bob.connect()]);
  const { conversationId: id } = await alice.openDirect(bob.user);
  await until(() => bob.state.conversationsById[id], "bob knows the conversation");

  relay.hold(); // the server's replies to alice go nowhere from now on
  const sending = alice.send(id, "did this arrive?");
  await until(() => bob.state.messages[id]?.length === 1, "the server stored it (bob got it)");
  assert.equal(alice.state.messages[id][0].status, "pending", "no ack reached alice");
  relay.cut();
  const ack = await sending;
  assert.equal(ack.seq, 1);
  assert.equal(ack.messageId, bob.state.messages[id][0].messageId, "the resend got the first send's ack");
  await until(() => alice.state.connection.syncing === false && alice.state.connection.status === "open", "alice caught up");
  assert.deepEqual(alice.state.messages[id].map((m) => [m.seq, m.status]), [[1, "sent"]]);
  await sleep(300);
  assert.equal(bob.state.messages[id].length, 1, "bob got no second message");
  const stored = await serverHistory(server.url, bob.user, id);
  assert.equal(stored.length, 1);
});

chatTest("catching up after being away: list with next, sync, history after, edits to held messages, removed groups dropped", async () => {
  const server = await startServer();
  const alice = makeClient(server.url, uid("alice"));
  const bob = makeClient(server.url, uid("bob"), { pageSize: 20 });
  await Promise.all([alice.connect(), bob.connect()]);
  const { conversationId: id } = await alice.openDirect(bob.user);
  const first = await alice.send(id, "first");
  const group = await alice.createGroup("Launch team", [bob.user]);
  await until(() => bob.state.messages[id]?.length === 1 && bob.state.conversationsById[group.conversationId], "bob has both");
  await bob.markRead(id);

  bob.close();
  // While bob (pages of 20) is away: 60 messages (more than a sync page: history after follows), he is
  // removed from the group, and 25 new groups push the list past one page.
  const sends = [];
  for (let i = 0; i < 60; i++) sends.push(alice.send(id, `m${i + 2}`));
  await Promise.all(sends);
  await alice.removeMember(group.conversationId, bob.user);
  await alice.editMessage(id, first.messageId, "first (edited)"); // a message bob already holds
  const groups = [];
  for (let i = 0; i < 25; i++) groups.push(alice.createGroup(`g${i}`, [bob.user]));
  await Promise.all(groups);

  await bob.connect();
  await until(() => bob.state.connection.syncing === false && sentSeqs(bob, id).length === 61, "bob caught up", 60000);
  assert.deepEqual(sentSeqs(bob, id), Array.from({ length: 61 }, (_, i) => i + 1));
  assert.equal(texts(bob, id).at(-1), "m61");
  await until(() => texts(bob, id)[0] === "first (edited)", "the edit made while away reaches bob's copy");
  assert.equal(bob.state.conversationsById[id].unread, 60);
  assert.equal(bob.state.conversationsById[group.conversationId], undefined, "the group he was removed from is gone");
  assert.equal(bob.state.conversations.length, 26, "every page of conversations.list");
  await bob.markRead(id);
  assert.equal(bob.state.conversationsById[id].unread, 0);
});

chatTest("4005 (session ended) stops reconnecting", async () => {
  const server = await startServer();
  const event = fixture("session.ended.json");
  const user = event.data.user_id;
  const alice = makeClient(server.url, user, { sid: event.data.id });
  const errors = [];
  alice.on("error", (e) => errors.push(e));
  await alice.connect();
  const callsBefore = alice.tokens.calls;
  assert.equal(await server.webhook(event), 200);
  await until(() => alice.state.connection.status === "closed", "the client stops");
  assert.equal(alice.state.connection.lastCloseCode, 4005);
  assert.equal(alice.state.connection.error.code, "session_ended");
  assert.equal(errors.at(-1).code, "session_ended");
  await sleep(2500); // several backoff periods (200 ms doubling)
  assert.equal(alice.state.connection.status, "closed");
  assert.equal(alice.tokens.calls, callsBefore, "no new connection attempt");
  await assert.rejects(alice.openDirect("user_x"), { code: "closed" });
});

chatTest("the token is refreshed before it expires, on the same connection", async () => {
  const server = await startServer();
  const alice = makeClient(server.url, uid("alice"), { ttl: 20, refreshMarginMs: 17000 });
  await alice.connect();
  const first = alice.state.connection.tokenExpiresAt;
  const connectionId = alice.state.connection.connectionId;
  assert.ok(first > Date.now());
  await until(() => alice.state.connection.tokenExpiresAt > first, "a refresh", 15000);
  assert.equal(alice.state.connection.connectionId, connectionId, "no reconnect");
  assert.ok(alice.tokens.calls >= 2);
});

chatTest("a refused handshake (HTTP 403, as from a draining server) is retried with backoff, then connects", async () => {
  const http = await import("node:http");
  const port = await freePort();
  const refusing = http.createServer((req, res) => { res.writeHead(403, { connection: "close" }); res.end(); });
  await new Promise((r) => refusing.listen(port, "127.0.0.1", r));
  // A minute of connect timeout: only the failed handshake itself can end each attempt in time.
  const alice = makeClient(`ws://127.0.0.1:${port}/ws`, uid("alice"), { connectTimeoutMs: 60000 });
  const connected = alice.connect();
  await until(() => alice.state.connection.attempt >= 3, "three failed attempts");
  assert.equal(alice.state.connection.status === "open", false);
  assert.equal(alice.state.connection.lastCloseCode, 1006);
  await new Promise((r) => { refusing.close(r); refusing.closeAllConnections(); });
  await startServer({ port });
  await connected;
  assert.equal(alice.state.connection.status, "open");
});

chatTest("tokens: 4004 (expired) reconnects with a fresh token; 4003 twice (refused) stops; a getToken() that hangs is retried", async () => {
  const server = await startServer();
  const user = uid("alice");
  // Expired first (the server closes 4004), then valid.
  const asked = [];
  const expiring = createChatClient({
    url: server.url, backoff: { initialMs: 200, maxMs: 2000 },
    getToken: async (options) => { asked.push(options ?? null); return issuer.token(user, { ttl: asked.length === 1 ? -60 : 60 }); },
  });
  cleanups.push(async () => expiring.close());
  await expiring.connect();
  assert.equal(expiring.state.connection.lastCloseCode, 4004);
  assert.deepEqual(asked, [null, { skipCache: true }], "the second token was asked for past Clerk's cache");

  // Signed by a key the server does not trust: 4003, one more try with a new token, then stop.
  const stranger = new Issuer();
  const refusedAsks = [];
  const refused = createChatClient({
    url: server.url, backoff: { initialMs: 200, maxMs: 2000 },
    getToken: async (options) => { refusedAsks.push(options ?? null); return stranger.token(user); },
  });
  cleanups.push(async () => refused.close());
  await assert.rejects(refused.connect(), { code: "token_refused" });
  assert.equal(refused.state.connection.status, "closed");
  assert.equal(refused.state.connection.lastCloseCode, 4003);
  assert.deepEqual(refusedAsks, [null, { skipCache: true }]);
  await sleep(1500);
  assert.equal(refusedAsks.length, 2, "no third attempt");

  // A getToken() that never settles (Clerk unreachable) is given up on, and the next attempt connects.
  let asks = 0;
  const stuck = createChatClient({
    url: server.url, backoff: { initialMs: 200, maxMs: 2000 }, connectTimeoutMs: 1500,
    getToken: () => (++asks === 1 ? new Promise(() => {}) : Promise.resolve(issuer.token(user))),
  });
  cleanups.push(async () => stuck.close());
  await stuck.connect();
  assert.equal(asks, 2);
  assert.equal(stuck.state.connection.status, "open");
});

chatTest("typing shows for expiresInMs and then goes by itself", async () => {
  const server = await startServer();
  const alice = makeClient(server.url, uid("alice"));
  const bob = makeClient(server.url, uid("bob"));
  await Promise.all([alice.connect(), bob.connect()]);
  const { conversationId: id } = await alice.openDirect(bob.user);
  await until(() => bob.state.conversationsById[id], "bob knows the conversation");
  const seen = [];
  alice.on("typing", (t) => seen.push(t));
  await bob.sendTyping(id);
  await until(() => alice.state.typing[id]?.length === 1, "alice sees bob typing");
  assert.equal(seen[0].expiresInMs, 5000);
  const { expiresAt } = alice.state.typing[id][0];
  await until(() => !alice.state.typing[id], "the indicator expires", 15000);
  assert.ok(Date.now() >= expiresAt, "not before its expiry");
  assert.equal(bob.state.typing[id], undefined, "the typer sees no indicator of himself");
});

chatTest("a connection that goes silent (network stalled) is dropped by the heartbeat and replaced; sends get through", async () => {
  const server = await startServer();
  const relay = await new Relay(server.port).start();
  cleanups.push(() => relay.stop());
  const alice = makeClient(relay.url, uid("alice"), { heartbeatMs: 1500 });
  const bob = makeClient(server.url, uid("bob"));
  await Promise.all([alice.connect(), bob.connect()]);
  const { conversationId: id } = await alice.openDirect(bob.user);
  await until(() => bob.state.conversationsById[id], "bob knows the conversation");
  const stalled = alice.state.connection.connectionId;
  relay.hold(); // no close, no error: only silence
  const sending = alice.send(id, "through the stall");
  await until(() => alice.state.connection.status === "open" && alice.state.connection.connectionId !== stalled, "a new connection", 20000);
  const ack = await sending;
  assert.equal(ack.seq, 1);
  assert.equal(alice.state.connection.lastCloseCode, 1006);
  await until(() => bob.state.messages[id]?.length === 1, "bob gets it once");
  const stored = await serverHistory(server.url, bob.user, id);
  assert.deepEqual(stored.map((m) => m.text), ["through the stall"]);
});
