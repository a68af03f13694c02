/*
 * libringmq internals. A struct rmq_cli is one client instance (spec/CLIENT.md §1):
 * the loop its owner thread drives, connections by address, routes by topic, broker
 * addresses and their measured latency, heartbeats and the error of the last call.
 */
#ifndef RMQ_CLIENT_CLIENT_INT_H
#define RMQ_CLIENT_CLIENT_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "client/ringmq.h"
#include "core/loop.h"
#include "core/strmap.h"
#include "net/client.h"
#include "net/frame.h"
#include "net/json.h"

#define RMQ_CLI_ADDR_MAX 64
#define RMQ_CLI_NAMESRV_MAX 16
#define RMQ_CLI_BROKER_IDS 8
#define RMQ_CLI_EXT_BYTES 4096
#define RMQ_CLI_ASYNC_MAX 4096          /* async calls in flight per instance */
#define RMQ_CLI_DEFAULT_TOPIC "TBW102"

/* A connection to a NameServer or a broker. */
struct rmq_cli_conn {
    struct rmq_client cl;
    struct rmq_cli *owner;
    char addr[RMQ_CLI_ADDR_MAX];
};

/* A broker set (brokerName) as routes describe it, with fault avoidance state. */
struct rmq_cli_broker {
    char name[128];
    char cluster[128];
    int64_t ids[RMQ_CLI_BROKER_IDS];
    char addrs[RMQ_CLI_BROKER_IDS][RMQ_CLI_ADDR_MAX];
    uint32_t addr_count;
    uint64_t latency_ms;            /* of the last send attempt */
    uint64_t unavailable_until_ms;  /* fault avoidance: skipped until then */
};

struct rmq_cli_route {
    char topic[128];
    char *json;                     /* owned: as fetched, to tell a change */
    struct rmq_queue *pub;          /* owned: writable queues, by broker then id */
    uint32_t pub_count;
    struct rmq_queue *sub;          /* owned: readable queues */
    uint32_t sub_count;
    uint32_t counter;               /* round robin over pub */
    bool via_default;               /* no route of its own: TBW102's brokers */
    uint64_t fetched_ms;
};

/* An answer, copied out of its frame. */
struct rmq_cli_resp {
    int code;
    char remark[512];
    uint32_t ext_count;
    const char *ext_key[RMQ_FRAME_MAX_EXT];
    const char *ext_val[RMQ_FRAME_MAX_EXT];
    char ext_buf[RMQ_CLI_EXT_BYTES];
    uint8_t *body;                  /* owned (malloc), NUL-terminated; may be NULL */
    uint32_t body_len;
    size_t body_cap;
};

struct rmq_cli;
/* resp: the answer (NULL on error), the callback's to read and to take the body of
 * (rmq_cli__resp_take) until it returns. */
typedef void (*rmq_cli_async_fn)(struct rmq_cli *c, void *arg, int err,
                                 struct rmq_cli_resp *resp);

/* A call in flight without a waiting caller (async sends); from a fixed pool. */
struct rmq_cli_async {
    struct rmq_call call;
    struct rmq_cli *c;
    rmq_cli_async_fn fn;
    void *arg;
    const char *addr;               /* borrowed: its connection's */
    struct rmq_cli_async *next_free;
};

struct rmq_cli {
    struct rmq_loop loop;
    struct rmq_net_loop nl;
    pthread_t owner;                /* the thread that created it and drives the loop */
    struct rmq_options opts;        /* strings below are copies */
    char group[256];
    char instance[64];
    char client_id[160];
    char namesrv[RMQ_CLI_NAMESRV_MAX][RMQ_CLI_ADDR_MAX];
    uint32_t namesrv_count;
    uint32_t namesrv_next;
    enum rmq_serialize ser;
    uint8_t ip[4];                  /* this host's address, for UNIQ_KEY */
    struct rmq_strmap conns;        /* addr -> rmq_cli_conn, owned */
    struct rmq_strmap routes;       /* topic -> rmq_cli_route, owned */
    struct rmq_strmap brokers;      /* brokerName -> rmq_cli_broker, owned */
    struct rmq_strmap suggested;    /* "broker@topic@qid" -> rmq_cli_suggest, owned */
    struct rmq_timer route_timer;
    struct rmq_timer heartbeat_timer;
    /* the heartbeat body (HeartbeatData), written by the owner kind; NULL: none */
    void (*heartbeat_body)(struct rmq_cli *c, struct rmq_jw *w);
    rmq_request_fn on_request;      /* broker-initiated requests */
    void *owner_ctx;
    struct rmq_cli_async *async_mem;    /* owned */
    struct rmq_cli_async *async_free;
    uint32_t async_in_flight;
    struct rmq_jw jw;
    struct rmq_cli_resp resp;       /* scratch answer of sync calls */
    /* answers handed to async callbacks: apart from resp, as a sync call's answer and
     * a pull's can complete in the same loop iteration, the pull's after it */
    struct rmq_cli_resp async_resp;
    bool stopping;
};

/* Set this thread's last error: returns err. */
int rmq_cli__fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The code of this thread's last failure. */
int rmq_cli__last_code(void);
/* RMQ_ERR_BROKER with the answer's code and remark. */
int rmq_cli__broker_fail(const struct rmq_cli_resp *r, const char *what);

int rmq_cli__init(struct rmq_cli *c, const struct rmq_options *opts, const char *default_group);
void rmq_cli__fini(struct rmq_cli *c);
/* The calling thread must be the owner. */
int rmq_cli__check_thread(const struct rmq_cli *c);

/* Run the loop once, waiting at most timeout_ns. */
void rmq_cli__run_once(struct rmq_cli *c, uint64_t timeout_ns);
/* The connection to addr, made on first use (connecting in the background). */
struct rmq_cli_conn *rmq_cli__conn(struct rmq_cli *c, const char *addr);
/*
 * Send h (+ body) to addr and wait until deadline_ns (monotonic) for the answer, which
 * lands in c->resp (valid until the next call). 0 when answered (look at resp.code),
 * else RMQ_ERR_TIMEOUT / RMQ_ERR_NETWORK with the last error set.
 */
int rmq_cli__call(struct rmq_cli *c, const char *addr, struct rmq_header *h, const void *body,
                  uint32_t body_len, uint64_t deadline_ns);
/* The same against the NameServers, each tried once from the next one in turn. */
int rmq_cli__call_namesrv(struct rmq_cli *c, struct rmq_header *h, uint64_t deadline_ns);
/* Without waiting: fn runs on the loop with the answer or an error. */
int rmq_cli__call_async(struct rmq_cli *c, const char *addr, struct rmq_header *h,
                        const void *body, uint32_t body_len, uint32_t timeout_ms,
                        rmq_cli_async_fn fn, void *arg);
int rmq_cli__oneway(struct rmq_cli *c, const char *addr, struct rmq_header *h, const void *body,
                    uint32_t body_len);
const char *rmq_cli__ext(const struct rmq_cli_resp *r, const char *key);
/* Take the answer's body over (the caller frees it); NULL when there is none. */
uint8_t *rmq_cli__resp_take(struct rmq_cli_resp *r);
uint64_t rmq_cli__deadline(const struct rmq_cli *c);

/* The topic's route, fetched when unknown (or TBW102's when allow_default and the topic
 * has none). NULL with the error set. */
struct rmq_cli_route *rmq_cli__route(struct rmq_cli *c, const char *topic, bool allow_default);
/* Parse a TopicRouteData body into r (queues sorted); 0 or RMQ_ERR_INVALID. */
int rmq_cli__route_parse(struct rmq_cli *c, struct rmq_cli_route *r, const char *json,
                         size_t len, uint32_t default_queues);
struct rmq_cli_broker *rmq_cli__broker(struct rmq_cli *c, const char *name);
/* Master address of broker name, or NULL. */
const char *rmq_cli__master(struct rmq_cli *c, const char *name);
/* The address serving q (its master, else any of its set), learning routes as needed;
 * NULL with the error set. */
const char *rmq_cli__queue_addr(struct rmq_cli *c, const struct rmq_queue *q);
/* The broker id a pull answer suggested for q's next pull (suggestWhichBrokerId,
 * CLIENT.md §7); 0 forgets. */
void rmq_cli__suggest(struct rmq_cli *c, const struct rmq_queue *q, int64_t broker_id);

/* Start h as a request code about q (consumerGroup when group is not NULL, topic,
 * queueId); the address serving q (for PULL_MESSAGE the broker id its last pull answer
 * suggested: that id, else id + 1, else the master, else any of the set), or NULL with
 * the error set. */
const char *rmq_cli__queue_request(struct rmq_cli *c, const struct rmq_queue *q, int code,
                                   const char *group, struct rmq_header *h);
/* A request about q answered with an "offset" field (QUERY_CONSUMER_OFFSET for group,
 * GET_MIN/MAX_OFFSET, SEARCH_OFFSET_BY_TIMESTAMP with ts_ms). QUERY_NOT_FOUND: -1. */
int rmq_cli__queue_offset(struct rmq_cli *c, const struct rmq_queue *q, int code,
                          const char *group, int64_t ts_ms, int64_t *offset);
/* A HeartbeatData body for one consumer group of c; subs (may be NULL) writes the
 * subscriptionDataSet's elements. */
void rmq_cli__heartbeat_consumer(struct rmq_cli *c, struct rmq_jw *w, const char *consume_type,
                                 const char *model, const char *from_where,
                                 void (*subs)(struct rmq_jw *w, void *arg), void *arg);
/* Send a heartbeat to every known broker now. */
void rmq_cli__heartbeat_all(struct rmq_cli *c);
/* UNREGISTER_CLIENT for producer_group or consumer_group to every known broker. */
void rmq_cli__unregister(struct rmq_cli *c, const char *producer_group, const char *consumer_group);

/* ---- messages (message.c) ---------------------------------------------------------------- */

/* A new UNIQ_KEY (STORE.md §9.2) into out[33]. */
void rmq_cli__uniq_key(struct rmq_cli *c, char out[33]);
/* m's property string (UNIQ_KEY = uniq unless NULL) into *out (grown as needed, *cap
 * bytes): its length, or RMQ_ERR_INVALID / RMQ_ERR_NOMEM. */
int rmq_cli__props(const struct rmq_message *m, const char *uniq, char **out, size_t *cap);
int rmq_cli__check_message(const struct rmq_cli *c, const struct rmq_message *m);
/* zlib-deflate body when it is at least c's threshold into *out (grown as needed,
 * *out_cap bytes): 1 with *out_len, 0 when not compressed (small, or no gain), or
 * RMQ_ERR_NOMEM. */
int rmq_cli__compress(const struct rmq_cli *c, const void *body, size_t len, uint8_t **out,
                      size_t *out_cap, size_t *out_len);
/*
 * Decode a pull body into msgs (bodies decompressed into extra memory, tag filter
 * applied when tags != NULL): 0 with res->msgs/count/mem set. broker_name is copied.
 */
int rmq_cli__decode_pulled(uint8_t *body, uint32_t len, const char *broker_name,
                           const char *const *tags, uint32_t tag_count,
                           struct rmq_pull_result *res);
/* "A || B" into at most max tags pointing into buf (a copy of expr); *count 0 for "*". */
int rmq_cli__parse_tags(const char *expr, char *buf, size_t cap, const char **tags,
                        uint32_t max, uint32_t *count);

/* The END_TRANSACTION (oneway, commitOrRollback 0 = unknown, fromTransactionCheck) that
 * answers the CHECK_TRANSACTION_STATE check; out borrows check's strings. 0 or -EINVAL
 * when check lacks its offsets or message id. */
int rmq_cli__end_tx_unknown(const struct rmq_cli *c, const struct rmq_frame *check,
                            struct rmq_header *out);

/* ---- queue choice (select.c) -------------------------------------------------------------- */

/* Index into route->pub for the next send: round robin, skipping brokers marked
 * unavailable (unless all are), and avoiding avoid_broker (the one that just failed). */
uint32_t rmq_cli__select_queue(struct rmq_cli *c, struct rmq_cli_route *r,
                               const char *avoid_broker, uint64_t now_ms);
/* After a send attempt to broker: its latency, and for how long to avoid it. */
void rmq_cli__fault_update(struct rmq_cli_broker *b, uint64_t latency_ms, bool failed,
                           uint64_t now_ms);
/* Java String.hashCode of key, made non-negative, modulo n: the ordered-message queue. */
uint32_t rmq_cli__select_by_key(const char *key, uint32_t n);
/* spec/CLIENT.md §6.2: which of all (sorted) the consumer at index of cid_count gets;
 * writes indices into out, returns how many. */
uint32_t rmq_cli__allocate_avg(uint32_t queue_count, uint32_t cid_count, uint32_t index,
                               uint32_t *out);

#endif
