// A thin C layer over libwebsockets: builds its structs with designated initializers (their layout
// changes between versions) and exposes what Swift cannot import (macros such as LWS_PRE).
#pragma once
#include <libwebsockets.h>
#include <stddef.h>
#include <stdint.h>

extern const size_t chat_lws_pre;

typedef struct chat_lws_options {
    const char *interface;          // NULL: all interfaces
    int port;                       // 0: the kernel picks one; CONTEXT_PORT_NO_LISTEN for clients
    const char *tls_cert_path;      // NULL: plain http/ws
    const char *tls_key_path;
    const char *ws_protocol;        // the WebSocket subprotocol name, also the default for upgrades without one
    lws_callback_function *http_callback;
    lws_callback_function *ws_callback;
    void *user;                     // returned by lws_context_user()
    uint16_t ping_secs;             // idle seconds before a PING (0 with hangup_secs 0: lws does neither)
    uint16_t hangup_secs;           // idle seconds before hanging up
    size_t ws_rx_buffer;            // allocated per WebSocket for its lifetime; larger frames arrive in pieces
    size_t ws_tx_packet;            // most bytes one send() takes (0: ws_rx_buffer); lws buffers the rest
    unsigned int max_header_bytes;  // request line + headers one request may hold (0: lws' 4096)
    int client;                     // 1: a client context (no listener, TLS client init)
} chat_lws_options;

typedef struct chat_lws chat_lws;

chat_lws *chat_lws_create(const chat_lws_options *options);
struct lws_context *chat_lws_context(chat_lws *s);
int chat_lws_listen_port(chat_lws *s);
void chat_lws_destroy(chat_lws *s);
/// Calls fn(arg) on the service thread after usecs, once (reschedule from fn for a period).
void chat_lws_schedule(chat_lws *s, long long usecs, void (*fn)(void *), void *arg);

/// Routes lws' own log lines to fn.
void chat_lws_set_log(int levels, void (*fn)(int level, const char *line));

enum chat_http_method {
    CHAT_HTTP_GET = 1, CHAT_HTTP_POST, CHAT_HTTP_PUT, CHAT_HTTP_DELETE, CHAT_HTTP_PATCH,
    CHAT_HTTP_OPTIONS, CHAT_HTTP_HEAD, CHAT_HTTP_OTHER
};
int chat_lws_http_method(struct lws *wsi);
/// Copies a standard header (by token) or returns -1.
int chat_lws_header(struct lws *wsi, enum lws_token_indexes token, char *dst, int len);
/// Copies a custom header; name is lowercase with its colon ("svix-id:"). -1 when absent.
int chat_lws_custom_header(struct lws *wsi, const char *name, char *dst, int len);
int chat_lws_header_length(struct lws *wsi, enum lws_token_indexes token);

/// Writes the status line and headers of an HTTP response. Returns 0 on success.
int chat_lws_write_http_headers(struct lws *wsi, unsigned int status, const char *content_type,
                                long long content_length, const char *const *names,
                                const char *const *values, int count);
/// lws_write without Swift needing the enum values.
int chat_lws_write_http_body(struct lws *wsi, unsigned char *payload, size_t len, int final);
int chat_lws_write_text(struct lws *wsi, unsigned char *payload, size_t len);
/* Writes bytes that are already complete WebSocket frames (several in one send()). */
int chat_lws_write_frames(struct lws *wsi, unsigned char *bytes, size_t len);
/* Sends a close frame (payload: 2-byte code + reason) and leaves the socket open for the peer's ack. */
int chat_lws_send_close(struct lws *wsi, unsigned char *payload, size_t len, int ack_timeout_seconds);
/* An empty PING frame. */
int chat_lws_write_ping(struct lws *wsi);
/* Closes a connection from outside its callbacks (at the next service pass). */
void chat_lws_kill(struct lws *wsi);
/* The close frame lws sends if it fails the connection itself (code + short reason). */
void chat_lws_close_reason(struct lws *wsi, int code, const char *reason);
int chat_lws_write_ws(struct lws *wsi, unsigned char *payload, size_t len, int text, int first, int final);

/// A WebSocket client connection (for chat-client and chat-bench).
struct lws *chat_lws_connect(chat_lws *s, const char *host, int port, const char *path,
                             int tls, int allow_insecure, void *opaque_user_data);
