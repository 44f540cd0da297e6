// A usage example that `tsc -p clients/js` type-checks against chat-client.d.ts (scripts/test.sh runs it),
// so the hand-written types cannot drift from how an app uses them. It is not run.
import {
  createChatClient,
  TERMINAL_CLOSE_CODES,
  type ChatClient,
  type ChatError,
  type ChatMessage,
  type ChatState,
  type ConversationState,
  type PresenceSnapshot,
  type SendAck,
  type UsersPage,
} from "./chat-client.js";

// Clerk's session object, as far as the client needs it.
declare const session: { getToken(options?: { skipCache?: boolean; template?: string }): Promise<string | null> };

const client: ChatClient = createChatClient({
  url: "wss://chat.example.com/ws",
  getToken: (options) => session.getToken(options),
  requestTimeoutMs: 15000,
  backoff: { initialMs: 500, maxMs: 30000, resetAfterMs: 30000 },
  log: (level, message, detail) => console[level === "warn" ? "warn" : "debug"](message, detail),
});

// React: const state = useSyncExternalStore(client.subscribe, client.getState);
declare function useSyncExternalStore<T>(subscribe: (onChange: () => void) => () => void, getSnapshot: () => T): T;
export function useChat(): ChatState {
  return useSyncExternalStore(client.subscribe, client.getState);
}

export function conversationTitle(c: ConversationState, me: string): string {
  return c.kind === "group" ? (c.name ?? "") : (c.members.find((m) => m !== me) ?? me);
}

export function banner(state: ChatState): string | null {
  const { status, retryAt, error } = state.connection;
  if (status === "reconnecting") return `Reconnecting${retryAt ? ` in ${Math.ceil((retryAt - Date.now()) / 1000)} s` : ""}…`;
  if (status === "closed" && error) return error.code === "session_ended" ? "Signed out" : error.message;
  return null;
}

export function lastSeen(p: PresenceSnapshot | undefined): string {
  if (!p) return "";
  if (p.isOnline) return "online";
  return p.lastSeen ? `last seen ${Math.round((Date.now() - Date.parse(p.lastSeen)) / 60000)} min ago` : "never seen";
}

export async function demo(): Promise<void> {
  const off = client.on("message", ({ change, message }) => {
    const m: ChatMessage = message;
    if (change === "created" && m.status === "sent" && m.seq !== null) console.log(m.seq, m.text);
  });
  client.addEventListener("connection", (c) => console.log(c.status, c.lastCloseCode));
  client.on("typing", (t) => console.log(`${t.userId} typing in ${t.conversationId} for ${t.expiresInMs} ms`));
  client.on("read", (r) => console.log(r.userId, "read up to", r.seq));
  client.on("conversation", ({ conversation, removed }) => console.log(conversation.conversationId, removed));
  client.on("error", (e: ChatError) => console.warn(e.code, e.closeCode ?? ""));
  client.subscribe(() => console.log(client.state.conversations.length));

  await client.connect();
  const page: UsersPage = await client.queryUsers({ search: "ada", online: true, limit: 20 });
  const other = page.users[0];
  if (!other) return;
  const snapshots: PresenceSnapshot[] = await client.watchPresence([other.userId]);
  console.log(snapshots[0]?.isOnline);

  const direct = await client.openDirect(other.userId);
  const held: ChatMessage[] = await client.openConversation(direct.conversationId);
  if (held.length && !client.state.conversationsById[direct.conversationId]?.historyComplete) {
    const older = await client.loadOlder(direct.conversationId);
    console.log(older.hasMore);
  }
  try {
    const ack: SendAck = await client.send(direct.conversationId, "Hello!");
    await client.editMessage(direct.conversationId, ack.messageId, "Hello again!");
    await client.markRead(direct.conversationId, ack.seq);
    await client.deleteMessage(direct.conversationId, ack.messageId);
  } catch (e) {
    const err = e as ChatError;
    if (err.code === "invalid_message") console.warn("fix the text");
  }
  const { sent } = await client.sendTyping(direct.conversationId);
  console.log(sent);

  const group = await client.createGroup("Launch team", [other.userId]);
  await client.renameGroup(group.conversationId, "Launch crew");
  await client.addMembers(group.conversationId, ["user_c"]);
  await client.removeMember(group.conversationId, "user_c");
  await client.leaveGroup(group.conversationId);
  const failed = client.state.messages[group.conversationId]?.find((m) => m.status === "failed");
  if (failed) {
    await client.retry(group.conversationId, failed.clientId).catch(() => client.discard(group.conversationId, failed.clientId));
  }
  const all: ConversationState[] = await client.refreshConversations();
  const history = await client.history(all[0]!.conversationId, { after: 0, limit: 200 });
  console.log(history.messages.length, history.hasMore);
  const pong = await client.ping();
  const raw = await client.request<{ time: string }>("ping");
  console.log(pong.time, raw.time, TERMINAL_CLOSE_CODES.includes(4005));
  await client.unwatchPresence([other.userId]);
  off();
  client.close();
}
