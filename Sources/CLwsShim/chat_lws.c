#include "chat_lws.h"
#include <stdlib.h>
#include <string.h>

const size_t chat_lws_pre = LWS_PRE;

struct chat_lws {
    lws_sorted_usec_list_t sul;         // first member: the timer callback finds us from it
    struct lws_context *context;
    struct lws_protocols protocols[3];
    struct lws_protocol_vhost_options pvo_default;
    struct lws_protocol_vhost_options pvo;
    lws_retry_bo_t retry;
    char *ws_protocol;
    void (*tick_fn)(void *);
    void *tick_arg;
};

chat_lws *chat_lws_create(const chat_lws_options *o) {
    chat_lws *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->ws_protocol = strdup(o->ws_protocol);
    s->protocols[0] = (struct lws_protocols){
        .name = "http", .callback = o->http_callback,
        .per_session_data_size = sizeof(uint64_t), .rx_buffer_size = 0,
    };
    s->protocols[1] = (struct lws_protocols){
        .name = s->ws_protocol, .callback = o->ws_callback,
        .per_session_data_size = sizeof(uint64_t), .rx_buffer_size = o->ws_rx_buffer,
        .tx_packet_size = o->ws_tx_packet,
    };
    // Upgrades that name no subprotocol (many browser clients) bind to ours, not to "http".
    s->pvo_default = (struct lws_protocol_vhost_options){ .name = "default", .value = "1" };
    s->pvo = (struct lws_protocol_vhost_options){ .options = &s->pvo_default, .name = s->ws_protocol, .value = "" };
    s->retry = (lws_retry_bo_t){
        .secs_since_valid_ping = o->ping_secs, .secs_since_valid_hangup = o->hangup_secs,
    };

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = o->client ? CONTEXT_PORT_NO_LISTEN : o->port;
    info.iface = o->interface;
    info.protocols = s->protocols;
    info.pvo = &s->pvo;
    info.user = o->user;
    info.gid = -1;
    info.uid = -1;
    info.max_http_header_data2 = o->max_header_bytes ? o->max_header_bytes : 4096;
    info.retry_and_idle_policy = &s->retry;
    info.options = LWS_SERVER_OPTION_VALIDATE_UTF8 | LWS_SERVER_OPTION_DISABLE_IPV6;
    info.server_string = "chat-server";
    if (o->client || o->tls_cert_path) info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    if (o->tls_cert_path) {
        info.ssl_cert_filepath = o->tls_cert_path;
        info.ssl_private_key_filepath = o->tls_key_path;
    }
    s->context = lws_create_context(&info);
    if (!s->context) { free(s->ws_protocol); free(s); return NULL; }
    return s;
}

struct lws_context *chat_lws_context(chat_lws *s) { return s->context; }

int chat_lws_listen_port(chat_lws *s) {
    struct lws_vhost *vh = lws_get_vhost_by_name(s->context, "default");
    return vh ? lws_get_vhost_listen_port(vh) : -1;
}

void chat_lws_destroy(chat_lws *s) {
    if (!s) return;
    lws_context_destroy(s->context);
    free(s->ws_protocol);
    free(s);
}

static void chat_lws_tick(lws_sorted_usec_list_t *sul) {
    chat_lws *s = (chat_lws *)sul;
    if (s->tick_fn) s->tick_fn(s->tick_arg);
}

void chat_lws_schedule(chat_lws *s, long long usecs, void (*fn)(void *), void *arg) {
    s->tick_fn = fn;
    s->tick_arg = arg;
    lws_sul_schedule(s->context, 0, &s->sul, chat_lws_tick, usecs);
}

void chat_lws_set_log(int levels, void (*fn)(int level, const char *line)) {
    lws_set_log_level(levels, fn);
}

int chat_lws_http_method(struct lws *wsi) {
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI)) return CHAT_HTTP_GET;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI)) return CHAT_HTTP_POST;
#if defined(LWS_WITH_HTTP_UNCOMMON_HEADERS) || defined(LWS_HTTP_HEADERS_ALL)
    if (lws_hdr_total_length(wsi, WSI_TOKEN_PUT_URI)) return CHAT_HTTP_PUT;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_DELETE_URI)) return CHAT_HTTP_DELETE;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_PATCH_URI)) return CHAT_HTTP_PATCH;
#endif
    if (lws_hdr_total_length(wsi, WSI_TOKEN_OPTIONS_URI)) return CHAT_HTTP_OPTIONS;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HEAD_URI)) return CHAT_HTTP_HEAD;
    return CHAT_HTTP_OTHER;
}

int chat_lws_header(struct lws *wsi, enum lws_token_indexes token, char *dst, int len) {
    if (lws_hdr_total_length(wsi, token) <= 0) return -1;
    return lws_hdr_copy(wsi, dst, len, token);
}

int chat_lws_header_length(struct lws *wsi, enum lws_token_indexes token) {
    return lws_hdr_total_length(wsi, token);
}

int chat_lws_custom_header(struct lws *wsi, const char *name, char *dst, int len) {
    int nlen = (int)strlen(name);
    if (lws_hdr_custom_length(wsi, name, nlen) < 0) return -1;
    return lws_hdr_custom_copy(wsi, dst, len, name, nlen);
}

int chat_lws_write_http_headers(struct lws *wsi, unsigned int status, const char *content_type,
                                long long content_length, const char *const *names,
                                const char *const *values, int count) {
    unsigned char buf[LWS_PRE + 2048];
    unsigned char *start = buf + LWS_PRE, *p = start, *end = buf + sizeof(buf) - 1;
    if (lws_add_http_common_headers(wsi, status, content_type, (lws_filepos_t)content_length, &p, end))
        return 1;
    for (int i = 0; i < count; i++) {
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)names[i],
                                        (const unsigned char *)values[i], (int)strlen(values[i]), &p, end))
            return 1;
    }
    return lws_finalize_write_http_header(wsi, start, &p, end) ? 1 : 0;
}

int chat_lws_write_http_body(struct lws *wsi, unsigned char *payload, size_t len, int final) {
    return lws_write(wsi, payload, len, final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP);
}

int chat_lws_write_text(struct lws *wsi, unsigned char *payload, size_t len) {
    return lws_write(wsi, payload, len, LWS_WRITE_TEXT);
}

int chat_lws_write_frames(struct lws *wsi, unsigned char *bytes, size_t len) {
    /* On a ws connection lws passes LWS_WRITE_RAW bytes through unframed, and keeps what the
       kernel does not take for the next writable callback, as it does for its own frames. */
    return lws_write(wsi, bytes, len, LWS_WRITE_RAW);
}

int chat_lws_send_close(struct lws *wsi, unsigned char *payload, size_t len, int ack_timeout_seconds) {
    /* 4 is lws' own LWS_WRITE_CLOSE, kept out of the public header in favour of lws_close_reason(),
       whose path closes the socket as soon as the frame is out (measured with lws 4.1.6). */
    int n = lws_write(wsi, payload, len, (enum lws_write_protocol)4);
    /* Closing the socket at once would reset it if the peer is still sending, and a reset can discard
       the close frame before the peer reads it: wait for the ack, bounded. */
    lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_ACK, ack_timeout_seconds);
    return n;
}

int chat_lws_write_ping(struct lws *wsi) {
    /* One payload byte: lws 4.1.6 does not report an empty PONG (LWS_CALLBACK_RECEIVE_PONG), so the
       answer to an empty PING never counted as traffic and idle clients were dropped. */
    unsigned char buf[LWS_PRE + 1];
    buf[LWS_PRE] = 'p';
    return lws_write(wsi, buf + LWS_PRE, 1, LWS_WRITE_PING);
}

void chat_lws_kill(struct lws *wsi) { lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC); }

void chat_lws_close_reason(struct lws *wsi, int code, const char *reason) {
    lws_close_reason(wsi, (enum lws_close_status)code, (unsigned char *)reason, reason ? strlen(reason) : 0);
}

int chat_lws_write_ws(struct lws *wsi, unsigned char *payload, size_t len, int text, int first, int final) {
    int flags = lws_write_ws_flags(text ? LWS_WRITE_TEXT : LWS_WRITE_BINARY, first, final);
    return lws_write(wsi, payload, len, (enum lws_write_protocol)flags);
}

struct lws *chat_lws_connect(chat_lws *s, const char *host, int port, const char *path,
                             int tls, int allow_insecure, void *opaque_user_data) {
    struct lws_client_connect_info i;
    memset(&i, 0, sizeof(i));
    i.context = s->context;
    i.address = host;
    i.port = port;
    i.path = path;
    i.host = host;
    i.protocol = s->ws_protocol;
    i.local_protocol_name = s->ws_protocol;
    i.opaque_user_data = opaque_user_data;
    if (tls) {
        i.ssl_connection = LCCSCF_USE_SSL;
        if (allow_insecure)
            i.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                                LCCSCF_ALLOW_INSECURE;
    }
    return lws_client_connect_via_info(&i);
}
