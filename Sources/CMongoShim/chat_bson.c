#include "chat_bson.h"
#include <stdlib.h>
#include <string.h>

bson_t *chat_bson_begin_document(bson_t *parent, const char *key) {
    bson_t *child = bson_malloc0(sizeof(bson_t));
    bson_append_document_begin(parent, key, -1, child);
    return child;
}

void chat_bson_end_document(bson_t *parent, bson_t *child) {
    bson_append_document_end(parent, child);
    bson_free(child);
}

bson_t *chat_bson_begin_array(bson_t *parent, const char *key) {
    bson_t *child = bson_malloc0(sizeof(bson_t));
    bson_append_array_begin(parent, key, -1, child);
    return child;
}

void chat_bson_end_array(bson_t *parent, bson_t *child) {
    bson_append_array_end(parent, child);
    bson_free(child);
}

int chat_bson_append_oid_hex(bson_t *doc, const char *key, const char *hex) {
    if (!bson_oid_is_valid(hex, strlen(hex))) return 0;
    bson_oid_t oid;
    bson_oid_init_from_string(&oid, hex);
    return bson_append_oid(doc, key, -1, &oid);
}

bson_iter_t *chat_bson_iter_new(const bson_t *doc) {
    bson_iter_t *iter = bson_malloc0(sizeof(bson_iter_t));
    if (!bson_iter_init(iter, doc)) { bson_free(iter); return NULL; }
    return iter;
}

bson_iter_t *chat_bson_iter_child(bson_iter_t *iter) {
    bson_iter_t *child = bson_malloc0(sizeof(bson_iter_t));
    if (!bson_iter_recurse(iter, child)) { bson_free(child); return NULL; }
    return child;
}

void chat_bson_iter_free(bson_iter_t *iter) { bson_free(iter); }

int chat_bson_iter_oid_hex(const bson_iter_t *iter, char out[25]) {
    const bson_oid_t *oid = bson_iter_oid(iter);
    if (!oid) return 0;
    bson_oid_to_string(oid, out);
    return 1;
}

void chat_bson_error_copy(const bson_error_t *from, chat_bson_error *to) {
    to->domain = from->domain;
    to->code = from->code;
    memcpy(to->message, from->message, sizeof(to->message));
    to->message[sizeof(to->message) - 1] = 0;
}

bson_error_t *chat_bson_error_new(void) { return bson_malloc0(sizeof(bson_error_t)); }
void chat_bson_error_free(bson_error_t *e) { bson_free(e); }

bson_t *chat_bson_reply_new(void) {
    bson_t *reply = bson_malloc0(sizeof(bson_t));
    bson_init(reply);   /* static: bson_destroy frees its buffer, never the struct */
    return reply;
}

void chat_bson_reply_free(bson_t *reply) {
    bson_destroy(reply);
    bson_free(reply);
}
