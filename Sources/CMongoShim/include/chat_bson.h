// bson_t and bson_iter_t are over-aligned, so Swift sees them only as opaque pointers: this shim
// keeps them on the heap and exposes the few operations the Swift BSON mapping needs.
#pragma once
#include <mongoc/mongoc.h>

bson_t *chat_bson_begin_document(bson_t *parent, const char *key);
void chat_bson_end_document(bson_t *parent, bson_t *child);
bson_t *chat_bson_begin_array(bson_t *parent, const char *key);
void chat_bson_end_array(bson_t *parent, bson_t *child);
int chat_bson_append_oid_hex(bson_t *doc, const char *key, const char *hex);

bson_iter_t *chat_bson_iter_new(const bson_t *doc);
bson_iter_t *chat_bson_iter_child(bson_iter_t *iter);   // NULL unless at a document/array
void chat_bson_iter_free(bson_iter_t *iter);
int chat_bson_iter_oid_hex(const bson_iter_t *iter, char out[25]);

/// A reply out-parameter: libmongoc expects an *uninitialized* bson_t there and re-initializes it
/// (bson_new()'s heap struct would then never be freed: 128 bytes lost per call).
bson_t *chat_bson_reply_new(void);
void chat_bson_reply_free(bson_t *reply);

/// A stack-free bson_error_t accessor pair.
typedef struct chat_bson_error { uint32_t domain; uint32_t code; char message[504]; } chat_bson_error;
void chat_bson_error_copy(const bson_error_t *from, chat_bson_error *to);
bson_error_t *chat_bson_error_new(void);
void chat_bson_error_free(bson_error_t *e);
