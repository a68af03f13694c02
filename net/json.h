/*
 * JSON bodies (control plane only: registration, routes, heartbeats, offsets).
 *
 * Writer: a growable text buffer with the two dialects the reference emits
 * (spec/REMOTING.md §10): FASTJSON writes integer map keys unquoted
 * ({0:"127.0.0.1:10911"}), STANDARD quotes them and escapes non-ASCII as \uXXXX.
 * Control characters are escaped (\n \r \t \b \f short, the rest \u00XX).
 * Errors (allocation, nesting deeper than RMQ_JSON_MAX_DEPTH, misuse) are sticky:
 * check rmq_jw_finish().
 *
 * Reader: cJSON behind a normaliser that quotes bare integer object keys, so both
 * dialects parse. Getters coerce the way the reference does (numbers where strings
 * are expected and back, enums by name or ordinal, "true"/"false" strings).
 * Numbers go through cJSON's double: integers beyond 2^53 lose precision, which no
 * body field of RocketMQ 4.x carries (timestamps and offsets stay far below).
 */
#ifndef RMQ_NET_JSON_H
#define RMQ_NET_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "net/frame.h"

#define RMQ_JSON_MAX_DEPTH 32

enum rmq_json_dialect {
    RMQ_JSON_FASTJSON,      /* unquoted integer map keys (clients with version < 401) */
    RMQ_JSON_STANDARD,      /* quoted keys, non-ASCII escaped */
};

struct rmq_jw {
    char *buf;              /* owned; NUL-terminated after rmq_jw_finish */
    size_t len;
    size_t cap;
    int err;                /* first error, sticky: -ENOMEM or -EINVAL */
    enum rmq_json_dialect dialect;
    uint32_t depth;
    uint8_t first[RMQ_JSON_MAX_DEPTH];   /* no element written yet at this depth */
    uint8_t is_obj[RMQ_JSON_MAX_DEPTH];
    bool after_key;         /* a key was written, its value is next */
};

void rmq_jw_init(struct rmq_jw *w, enum rmq_json_dialect dialect);
/* Empty w for a new document, keeping its buffer: a writer reused per request allocates
 * only while documents keep growing. */
void rmq_jw_reset(struct rmq_jw *w, enum rmq_json_dialect dialect);
void rmq_jw_fini(struct rmq_jw *w);
void rmq_jw_obj_begin(struct rmq_jw *w);
void rmq_jw_obj_end(struct rmq_jw *w);
void rmq_jw_arr_begin(struct rmq_jw *w);
void rmq_jw_arr_end(struct rmq_jw *w);
void rmq_jw_key(struct rmq_jw *w, const char *key);               /* always quoted */
void rmq_jw_key_i64(struct rmq_jw *w, int64_t key);
/* A key that is itself JSON, written verbatim: fastjson's maps keyed by objects
 * ({"brokerName":"b","queueId":0,"topic":"t"}:{...}), as in ConsumeStats. */
void rmq_jw_key_raw(struct rmq_jw *w, const char *json);                /* dialect decides quotes */
void rmq_jw_str(struct rmq_jw *w, const char *s);                  /* NULL writes null */
void rmq_jw_str_n(struct rmq_jw *w, const char *s, size_t len);
void rmq_jw_i64(struct rmq_jw *w, int64_t v);
void rmq_jw_bool(struct rmq_jw *w, bool v);
void rmq_jw_null(struct rmq_jw *w);
/* 0 with the text (owned by w) and its length when everything balanced, else the error. */
int rmq_jw_finish(struct rmq_jw *w, const char **out, size_t *len);

/*
 * Dialect for route data answering req (spec/REMOTING.md §10.3): STANDARD when the
 * client's version is >= V4_9_4 (401) or it sent acceptStandardJsonOnly=true.
 */
enum rmq_json_dialect rmq_json_route_dialect(const struct rmq_header *req);

/* DataVersion, as brokers version their topic tables: {"counter":N,"timestamp":ms}. */
struct rmq_data_version {
    int64_t counter;
    int64_t timestamp;
};

void rmq_jw_data_version(struct rmq_jw *w, const struct rmq_data_version *v);

/* Parse either dialect. NULL on a syntax error or allocation failure. Free with cJSON_Delete. */
cJSON *rmq_json_parse(const char *text, size_t len);

/* Coercing getters on an object member; they return def when missing or not coercible. */
int64_t rmq_json_get_i64(const cJSON *obj, const char *name, int64_t def);
bool rmq_json_get_bool(const cJSON *obj, const char *name, bool def);
/* Borrowed string (valid while obj lives); numbers are not converted here: NULL. */
const char *rmq_json_get_str(const cJSON *obj, const char *name);
/* Enum as name (exact match in names[0..n)) or as ordinal number/numeric string; def otherwise. */
int rmq_json_get_enum(const cJSON *obj, const char *name, const char *const *names, int n, int def);

#endif
