/* Private to namesrv/ and tests/unit/namesrv/. */
#ifndef RMQ_NAMESRV_INT_H
#define RMQ_NAMESRV_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/loop.h"
#include "namesrv/kvconfig.h"
#include "namesrv/namesrv.h"
#include "namesrv/routeinfo.h"
#include "net/json.h"
#include "net/server.h"

#define RMQ_NAMESRV_TOPICS_PER_REGISTER_MAX 200000
#define RMQ_NAMESRV_INFLATED_MAX (64u << 20)     /* compressed register bodies, inflated */

/*
 * A decoded RegisterBrokerBody (spec/REMOTING.md §11.1), JSON or compressed form.
 * Strings are borrowed from root or text, both owned here.
 */
struct rmq_namesrv__register_body {
    bool has_topic_config;
    struct rmq_data_version data_version;
    struct rmq_topic_queue_conf *topics;    /* owned */
    uint32_t topic_count;
    const char **filter_servers;            /* owned array of borrowed strings */
    uint32_t filter_server_count;
    cJSON *root;                            /* owned: JSON form */
    cJSON *filter_root;                     /* owned: compressed form's filter list */
    char *text;                             /* owned: compressed form, inflated */
};

/*
 * Decode body (len bytes; len 0 = no topic config). 0, or -EBADMSG with why set to a
 * static reason (malformed JSON, a field of the wrong type, counts over the limits),
 * or -ENOMEM. Value ranges are the route table's to check (rmq_routeinfo_validate).
 */
int rmq_namesrv__register_body_decode(struct rmq_namesrv__register_body *rb, const uint8_t *body,
                                      uint32_t len, bool compressed, const char **why);
void rmq_namesrv__register_body_fini(struct rmq_namesrv__register_body *rb);

struct rmq_namesrv {
    struct rmq_routeinfo routes;
    struct rmq_kvconfig kv;
    struct rmq_namesrv_config cfg;
    struct rmq_server *srv;         /* borrowed: outlives us */
    struct rmq_loop *loop;          /* borrowed */
    struct rmq_timer scan_timer;
    struct rmq_jw out;              /* response bodies, reused (rmq_jw_reset) */
    uint8_t *conn_has_broker;       /* owned: per connection slot, a broker registered on it */
    bool stopped;
    bool installed;                 /* handlers and close hook are on srv */
};

/* Install (or remove) every request handler and the close hook on ns->srv (processor.c). */
void rmq_namesrv__handlers_install(struct rmq_namesrv *ns, bool install);
/* Connection tag for the route table: slot and generation, never 0. */
uint64_t rmq_namesrv__conn_tag(const struct rmq_namesrv *ns, const struct rmq_conn *c);
/* One expiry pass at the loop's current time; closes expired brokers' connections. */
void rmq_namesrv__scan(struct rmq_namesrv *ns);

#endif
