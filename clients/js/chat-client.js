// chat.v1 client for browsers and Node 20+ (protocol/README.md is the contract). Dependency-free ES module.
// SKELETON: the API of chat-client.d.ts; the implementation follows in the next commits.

export const TERMINAL_CLOSE_CODES = Object.freeze([4005, 4006, 4010]);

const notYet = () => Promise.reject(new Error("chat-client: not implemented yet"));

export function createChatClient(options) {
  if (!options || typeof options.url !== "string") throw new TypeError("createChatClient: url is required");
  if (typeof options.getToken !== "function") throw new TypeError("createChatClient: getToken is required");
  const listeners = new Map();
  const state = Object.freeze({
    connection: Object.freeze({ status: "idle", userId: null, sessionId: null, connectionId: null, syncing: false,
      attempt: 0, retryAt: null, lastCloseCode: null, lastCloseReason: null, error: null, tokenExpiresAt: null }),
    conversations: [], conversationsById: {}, messages: {}, presence: {}, typing: {},
  });
  const on = (type, fn) => {
    if (!listeners.has(type)) listeners.set(type, new Set());
    listeners.get(type).add(fn);
    return () => listeners.get(type)?.delete(fn);
  };
  return {
    get state() { return state; },
    getState: () => state,
    subscribe: (fn) => on("state", () => fn()),
    connect: notYet, close() {},
    on, addEventListener(type, fn) { on(type, fn); }, removeEventListener(type, fn) { listeners.get(type)?.delete(fn); },
    send: notYet, retry: notYet, discard() {}, editMessage: notYet, deleteMessage: notYet,
    markRead: notYet, sendTyping: notYet, openConversation: notYet, loadOlder: notYet, history: notYet,
    openDirect: notYet, createGroup: notYet, renameGroup: notYet, addMembers: notYet, removeMember: notYet,
    leaveGroup: notYet, refreshConversations: notYet, queryUsers: notYet, watchPresence: notYet,
    unwatchPresence: notYet, request: notYet, ping: notYet,
  };
}
