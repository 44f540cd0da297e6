// Types of chat-client.js, the chat.v1 client (protocol/README.md is the contract).
// Hand-written; `tsc --noEmit` on clients/js/example.ts checks that they hold together.

// ---------------------------------------------------------------------------------------------
// Protocol objects, as the server sends them (protocol/schemas/defs.json)

/** RFC 3339 UTC with milliseconds, e.g. "2026-11-30T12:00:00.000Z". */
export type Timestamp = string;

export interface Conversation {
  conversationId: string;
  kind: "direct" | "group";
  /** The group's name; null for a direct conversation. */
  name: string | null;
  members: string[];
  /** Seq of the last message; 0 before the first. */
  lastSeq: number;
  updatedAt: Timestamp;
}

export interface LastMessage {
  messageId: string;
  seq: number;
  senderId: string;
  /** Cut to 200 characters; null once deleted. */
  text: string | null;
  deleted?: boolean;
  createdAt: Timestamp;
}

export interface ListedConversation extends Conversation {
  unread: number;
  reads: Record<string, number>;
  lastMessage: LastMessage | null;
}

export interface Message {
  messageId: string;
  conversationId: string;
  seq: number;
  senderId: string;
  clientId: string;
  /** null once deleted. */
  text: string | null;
  createdAt: Timestamp;
  editedAt: Timestamp | null;
  deleted: boolean;
  /** Only in history/sync results: the sender's Clerk user was deleted. */
  senderDeleted?: true;
}

export interface PresenceSnapshot {
  userId: string;
  isOnline: boolean;
  /** null for a user the server has never seen. */
  lastSeen: Timestamp | null;
}

export interface UserSummary extends PresenceSnapshot {
  username: string | null;
  firstName: string | null;
  lastName: string | null;
  imageUrl: string | null;
}

export interface SendAck {
  conversationId: string;
  clientId: string;
  messageId: string;
  seq: number;
  createdAt: Timestamp;
}

export interface HistoryPage {
  conversationId: string;
  /** Ascending seq, tombstones included. */
  messages: Message[];
  /** With `after`: newer messages exist; otherwise older ones do. */
  hasMore: boolean;
}

export interface UsersPage {
  users: UserSummary[];
  /** Pass as `after` for the next page; null on the last page. */
  next: string | null;
}

export interface ReadPosition {
  conversationId: string;
  seq: number;
}

// ---------------------------------------------------------------------------------------------
// Client state (immutable snapshots: a new object whenever something changed, the same one otherwise,
// so it suits React's useSyncExternalStore)

export type ConnectionStatus =
  /** connect() not called yet. */
  | "idle"
  /** Fetching a token / opening the socket / waiting for `welcome`. */
  | "connecting"
  /** Authenticated (`welcome` came); catching up may still be running (see `syncing`). */
  | "open"
  /** Lost the connection; waiting `retryInMs` before the next attempt. */
  | "reconnecting"
  /** Stopped for good: close() was called, or the server said not to reconnect (4005, 4006, ...). */
  | "closed";

export interface ConnectionState {
  status: ConnectionStatus;
  /** The signed-in user (`welcome.userId`), kept while reconnecting; null before the first welcome. */
  userId: string | null;
  sessionId: string | null;
  connectionId: string | null;
  /** True while the post-(re)connect catch-up (list, sync, history after) runs. */
  syncing: boolean;
  /** Failed attempts since the last connection that stayed up. */
  attempt: number;
  /** When reconnecting: epoch ms of the next attempt. */
  retryAt: number | null;
  /** The last close code seen (1006 for a lost connection or failed handshake), null if none. */
  lastCloseCode: number | null;
  lastCloseReason: string | null;
  /** Why the client stopped or the last attempt failed; null once connected. */
  error: ChatError | null;
  /** `exp` of the token the connection is on (epoch ms), null when unknown. */
  tokenExpiresAt: number | null;
}

export type MessageStatus =
  /** Sent or queued, no ack yet (survives reconnects: resent with the same clientId). */
  | "pending"
  /** Stored by the server (has messageId and seq). */
  | "sent"
  /** Refused for good (invalid_message, forbidden, not_found, bad_request): see `error`. */
  | "failed";

export interface ChatMessage {
  /** null while pending or failed. */
  messageId: string | null;
  conversationId: string;
  /** null while pending or failed. */
  seq: number | null;
  senderId: string;
  clientId: string;
  text: string | null;
  /** Local time of the send while pending, then the server's. */
  createdAt: Timestamp;
  editedAt: Timestamp | null;
  deleted: boolean;
  senderDeleted?: true;
  status: MessageStatus;
  error?: ChatError;
}

export interface ConversationState extends Conversation {
  /** Messages after the user's read position that others sent, not deleted. */
  unread: number;
  lastMessage: LastMessage | null;
  /** Every member's known read position (`{userId: seq}`); the user's own included. */
  reads: Record<string, number>;
  /** False until older history is known not to exist (loadOlder() pages further back). */
  historyComplete: boolean;
}

export interface TypingUser {
  userId: string;
  /** Epoch ms when the indicator goes out unless renewed. */
  expiresAt: number;
}

export interface ChatState {
  connection: ConnectionState;
  /** Latest activity first (updatedAt, then conversationId, both descending). */
  conversations: ConversationState[];
  conversationsById: Record<string, ConversationState>;
  /** Per conversation: sent messages in seq order, then pending/failed ones in send order. */
  messages: Record<string, ChatMessage[]>;
  /** Watched users (watchPresence): the subscribe snapshot, then `presence` events. */
  presence: Record<string, PresenceSnapshot>;
  /** Per conversation: who is typing now (never the user themself). */
  typing: Record<string, TypingUser[]>;
}

// ---------------------------------------------------------------------------------------------
// Errors

/**
 * A rejected request or a connection problem. `code` is a protocol error code (`forbidden`,
 * `not_found`, `invalid_message`, `token_invalid`, ...) or one of the client's own:
 * `timeout` (no reply in time), `disconnected` (the connection dropped before the reply; the
 * request may or may not have happened), `closed` (close() was called or the client stopped),
 * `no_token` (getToken() gave no token: signed out), `token_unavailable` (getToken() threw; retried with
 * backoff), `session_ended` (4005), `user_deleted` (4006), `origin_refused` (4010), `token_refused`
 * (4003 twice), `no_websocket` / `bad_url` (set-up), `discarded` (discard() of a pending send).
 */
export interface ChatError extends Error {
  code: string;
  /** The request type it answers, if any. */
  requestType?: string;
  /** The close code, for connection errors. */
  closeCode?: number;
}

// ---------------------------------------------------------------------------------------------
// Events

export interface MessageEvent {
  /** `created`: a new message (`message` event, or found by catch-up); `updated`: edited;
   *  `deleted`: now a tombstone; `acked`: one of the user's pending sends was stored. */
  change: "created" | "updated" | "deleted" | "acked";
  message: ChatMessage;
}

export interface ConversationEvent {
  conversation: ConversationState;
  /** True when the user is no longer a member (removed or left): it was dropped from state. */
  removed: boolean;
}

export interface TypingEvent {
  conversationId: string;
  userId: string;
  expiresInMs: number;
}

export interface ReadEvent {
  conversationId: string;
  userId: string;
  seq: number;
}

export interface ChatEventMap {
  /** Any change to `state` (coalesced: at most one per microtask). */
  state: ChatState;
  /** Connection status or details changed. */
  connection: ConnectionState;
  message: MessageEvent;
  conversation: ConversationEvent;
  typing: TypingEvent;
  presence: PresenceSnapshot;
  read: ReadEvent;
  /** Something went wrong outside a request's promise (connection, catch-up, refresh). */
  error: ChatError;
}

export type ChatEventType = keyof ChatEventMap;
export type ChatListener<K extends ChatEventType> = (detail: ChatEventMap[K]) => void;

// ---------------------------------------------------------------------------------------------
// Options and the client

/** Just what the client uses of a WebSocket (the browser's, Node's, or the `ws` package's). */
export interface WebSocketLike {
  readonly readyState: number;
  binaryType: string;
  onopen: ((ev: any) => any) | null;
  onmessage: ((ev: { data: any }) => any) | null;
  onclose: ((ev: { code: number; reason: string }) => any) | null;
  onerror: ((ev: any) => any) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructorLike = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface ChatClientOptions {
  /** ws:// or wss:// URL of the server's /ws endpoint. */
  url: string;
  /**
   * A fresh Clerk session token: pass Clerk's `session.getToken` (or `useAuth().getToken`). Called
   * for every connection attempt and every refresh; `{ skipCache: true }` after a refused token.
   * Resolving to null means signed out: the client stops (`no_token`).
   */
  getToken: (options?: { skipCache?: boolean }) => Promise<string | null | undefined>;
  /** WebSocket constructor; default `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructorLike;
  /** A request with no reply after this long rejects with `timeout` (a send is resent instead). Default 15000. */
  requestTimeoutMs?: number;
  /** Give up an attempt that got no `welcome` after this long. Default 10000. */
  connectTimeoutMs?: number;
  /** Backoff: first ceiling (default 500), doubling up to maxMs (default 30000); reset after a connection stayed up resetAfterMs (default 30000). */
  backoff?: { initialMs?: number; maxMs?: number; resetAfterMs?: number };
  /** Refresh the token this long before its `exp`. Default 15000. */
  refreshMarginMs?: number;
  /** Send a `ping` after this long without any frame from the server, and drop the connection if nothing comes back within as long again. Default 25000; 0 disables. */
  heartbeatMs?: number;
  /** Outgoing frames per second and burst, kept under the server's WS_RATE_LIMIT/WS_RATE_BURST (50, 100) so that bursts queue in the client instead of being dropped. Default 40 and 80. */
  rateLimit?: { perSecond?: number; burst?: number };
  /** Page size (1-200) of history loads, `sync` and `conversations.list`. Default 50. */
  pageSize?: number;
  /** How long "typing" shows for a user when the server gives no expiry. Default 5000. */
  typingTimeoutMs?: number;
  /** Called with diagnostics ("debug" | "info" | "warn"). Default: nothing. */
  log?: (level: "debug" | "info" | "warn", message: string, detail?: unknown) => void;
}

export interface SendOptions {
  /** Default: a new random UUID. Reuse one only to retry the same message. */
  clientId?: string;
}

export interface HistoryOptions {
  before?: number;
  after?: number;
  limit?: number;
}

export interface UsersQuery {
  search?: string;
  online?: boolean;
  limit?: number;
  after?: string;
}

export interface ChatClient {
  /** The current state snapshot. */
  readonly state: ChatState;
  /** Same as `state` (for useSyncExternalStore). */
  getState(): ChatState;
  /** Calls `listener` after each state change; returns an unsubscribe function (for useSyncExternalStore). */
  subscribe(listener: () => void): () => void;

  /** Starts connecting (and reconnecting as needed). Resolves at the first `welcome`; rejects if the client stops first. Calling it again returns the same promise while running. */
  connect(): Promise<void>;
  /** Closes the socket and stops reconnecting; requests in flight reject with `closed`, pending sends stay pending in state. */
  close(): void;

  /** Listener gets the event's detail; returns an unsubscribe function. */
  on<K extends ChatEventType>(type: K, listener: ChatListener<K>): () => void;
  addEventListener<K extends ChatEventType>(type: K, listener: ChatListener<K>): void;
  removeEventListener<K extends ChatEventType>(type: K, listener: ChatListener<K>): void;

  // Messages
  /** Adds a pending message to state at once and resolves with the ack; while disconnected it waits, and it is resent with the same clientId after a reconnect until acked. Rejects (and marks the message failed) on invalid_message, forbidden, not_found, bad_request, or close(). */
  send(conversationId: string, text: string, options?: SendOptions): Promise<SendAck>;
  /** Sends a failed message again with its clientId. */
  retry(conversationId: string, clientId: string): Promise<SendAck>;
  /** Drops a pending or failed message from state (a pending one may still be stored if already sent). */
  discard(conversationId: string, clientId: string): void;
  editMessage(conversationId: string, messageId: string, text: string): Promise<Message>;
  deleteMessage(conversationId: string, messageId: string): Promise<Message>;

  // Reading
  /** Moves the user's read position to `seq` (default: the newest seq held). Resolves without a request when it would not move. */
  markRead(conversationId: string, seq?: number): Promise<ReadPosition>;
  /** Tells the others the user is typing; throttled to one signal per conversation every 3 s (then `{sent: false}` without a request). */
  sendTyping(conversationId: string): Promise<{ sent: boolean }>;

  // History
  /** Loads a page into state unless one is held already (a conversation never opened may hold a few live messages only); resolves with the messages held. */
  openConversation(conversationId: string): Promise<ChatMessage[]>;
  /** Loads the page before the oldest held message into state; resolves with the page (hasMore: older exist). */
  loadOlder(conversationId: string, limit?: number): Promise<HistoryPage>;
  /** A raw `history` request; the messages are merged into state too. */
  history(conversationId: string, options?: HistoryOptions): Promise<HistoryPage>;

  // Conversations
  /** Opens (creating the first time) the direct conversation with another user. */
  openDirect(userId: string): Promise<ConversationState>;
  /** Creates a group (not resent after a disconnect: it would make a second group). */
  createGroup(name: string, memberIds: string[]): Promise<ConversationState>;
  renameGroup(conversationId: string, name: string): Promise<ConversationState>;
  addMembers(conversationId: string, userIds: string[]): Promise<ConversationState>;
  removeMember(conversationId: string, userId: string): Promise<ConversationState>;
  leaveGroup(conversationId: string): Promise<ConversationState>;
  /** Re-lists all conversations (all pages) into state. */
  refreshConversations(): Promise<ConversationState[]>;

  // Users and presence
  queryUsers(query?: UsersQuery): Promise<UsersPage>;
  /** Adds users to the watch list (kept across reconnects) and resolves with their snapshots. */
  watchPresence(userIds: string[]): Promise<PresenceSnapshot[]>;
  unwatchPresence(userIds: string[]): Promise<void>;

  // Low level
  /** Any chat.v1 request: resolves with the `ok` frame's `data`, rejects with a ChatError. Waits for a connection first. */
  request<T = unknown>(type: string, fields?: Record<string, unknown>): Promise<T>;
  ping(): Promise<{ time: Timestamp }>;
}

export function createChatClient(options: ChatClientOptions): ChatClient;

/** The close codes after which the client does not reconnect. */
export const TERMINAL_CLOSE_CODES: readonly number[];
