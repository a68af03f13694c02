/*
 * libringmq: a client for RocketMQ 4.x brokers (ringmq's and Apache's), spec/CLIENT.md.
 *
 * Threads. A producer, pull consumer or admin handle runs on the thread that calls it:
 * it owns an io_uring loop which its calls drive, so a synchronous send is written,
 * answered and returned on the caller's thread with no hand-off to another thread.
 * Create, use and destroy each handle on one thread (one handle per thread for
 * parallel senders). Asynchronous sends complete in later calls on that handle or
 * in rmq_producer_poll(); route refreshes (30 s) and heartbeats (30 s) run there too,
 * and a handle left idle simply reconnects on its next call.
 *
 * Errors. Calls return 0 or a negative enum rmq_error; rmq_last_error() then holds one
 * line saying what failed and why (the broker's code and remark when it refused),
 * valid on the calling thread until its next failing call.
 */
#ifndef RMQ_CLIENT_RINGMQ_H
#define RMQ_CLIENT_RINGMQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum rmq_error {
    RMQ_OK = 0,
    RMQ_ERR_INVALID = -1,           /* bad argument: no topic, empty or oversized body... */
    RMQ_ERR_TIMEOUT = -2,           /* no answer within the call's timeout */
    RMQ_ERR_NETWORK = -3,           /* could not connect, or the connection was lost */
    RMQ_ERR_NO_ROUTE = -4,          /* the NameServer knows no (writable) queue of the topic */
    RMQ_ERR_BROKER = -5,            /* the broker refused: rmq_last_broker_code() says why */
    RMQ_ERR_NOMEM = -6,
    RMQ_ERR_STATE = -7,             /* the handle is stopped, or used from another thread */
};

/* "timeout", "network", ... for an enum rmq_error. */
const char *rmq_error_name(int err);
/* The last failure on this thread, one line. */
const char *rmq_last_error(void);
/* The broker's response code of the last RMQ_ERR_BROKER on this thread (REMOTING.md §3). */
int rmq_last_broker_code(void);

/* What every handle is configured with; zero values take the defaults. */
struct rmq_options {
    const char *namesrv;            /* "host:port;host:port"; NULL: $NAMESRV_ADDR, else
                                     * 127.0.0.1:9876 */
    const char *group;              /* producer or consumer group; NULL: DEFAULT_PRODUCER /
                                     * DEFAULT_CONSUMER */
    const char *instance_name;      /* clientID is <ip>@<pid>#<instance_name> */
    bool json_headers;              /* JSON request headers instead of RocketMQ binary */
    uint32_t timeout_ms;            /* each request, and a whole sync send; default 3000 */
    uint32_t retries;               /* sync sends: attempts after the first; default 2 */
    bool no_fault_avoidance;        /* keep sending to slow or failing brokers */
    uint32_t compress_over;         /* zlib bodies this large; default 4096, 0 default */
    uint32_t max_message_size;      /* default 4 MiB */
};

/* One queue of a topic on one broker. */
struct rmq_queue {
    char topic[128];
    char broker_name[128];
    int32_t queue_id;
};

/* ---- messages --------------------------------------------------------------------------------- */

/* A message to send. Strings are NUL-terminated; NULL leaves a field out. */
struct rmq_message {
    const char *topic;
    const char *tags;
    const char *keys;               /* space-separated */
    const void *body;
    size_t body_len;
    int32_t flag;
    int32_t delay_level;            /* 1..18 with the default levels; 0 none */
    int64_t deliver_at_ms;          /* absolute delivery time (TIMER_DELIVER_MS); 0 none */
    const char *const *properties;  /* user properties: name, value, name, value, ..., NULL */
};

enum rmq_send_status {
    RMQ_SEND_OK = 0,
    RMQ_SEND_FLUSH_DISK_TIMEOUT = 1,
    RMQ_SEND_FLUSH_SLAVE_TIMEOUT = 2,
    RMQ_SEND_SLAVE_NOT_AVAILABLE = 3,
};

const char *rmq_send_status_name(int status);

struct rmq_send_result {
    int status;                     /* enum rmq_send_status */
    char msg_id[33];                /* UNIQ_KEY, the id applications see */
    char offset_msg_id[57];         /* the broker's: store host + commitlog offset */
    struct rmq_queue queue;
    int64_t queue_offset;
    uint32_t attempts;
};

/* A received message; every pointer lives as long as the message (its pull result or
 * the consume callback). */
struct rmq_msg {
    const char *topic;              /* RETRY_TOPIC for retried messages */
    const char *tags;               /* "" when none */
    const char *keys;               /* "" when none */
    const uint8_t *body;            /* decompressed */
    uint32_t body_len;
    int32_t queue_id;
    int64_t queue_offset;
    int64_t commitlog_offset;
    int32_t flag;
    int32_t sysflag;
    int32_t reconsume_times;
    int64_t born_ms;
    int64_t store_ms;
    const char *msg_id;             /* UNIQ_KEY if present, else the offset id */
    char offset_msg_id[57];
    const char *broker_name;
    const char *props;              /* raw: name 0x01 value 0x02 ... */
    uint16_t props_len;
};

/* A property of m, copied into buf; NULL when absent or buf too small. */
const char *rmq_msg_property(const struct rmq_msg *m, const char *name, char *buf, size_t cap);

/* ---- producer --------------------------------------------------------------------------------- */

struct rmq_producer;

int rmq_producer_create(struct rmq_producer **out, const struct rmq_options *opts);
/* Wait (up to timeout) for async sends in flight, unregister from brokers, free. */
void rmq_producer_destroy(struct rmq_producer *p);

/* Send and wait: retried on another broker (opts.retries) within opts.timeout_ms. */
int rmq_producer_send(struct rmq_producer *p, const struct rmq_message *m,
                      struct rmq_send_result *res);
/* To one queue (no retry elsewhere): queue_id of broker_name, or any broker's with NULL. */
int rmq_producer_send_to_queue(struct rmq_producer *p, const struct rmq_message *m,
                               const char *broker_name, int32_t queue_id,
                               struct rmq_send_result *res);
/* Ordered messages: every message with the same key goes to the same queue (the key's
 * hash modulo the topic's writable queues), no retry elsewhere. */
int rmq_producer_send_ordered(struct rmq_producer *p, const struct rmq_message *m,
                              const char *sharding_key, struct rmq_send_result *res);

/* err 0 with res, or the failure (rmq_last_error() holds its text during the callback). */
typedef void (*rmq_send_fn)(void *arg, int err, const struct rmq_send_result *res);
/* Queue a send; cb runs later on this thread (in a later call or rmq_producer_poll).
 * Network errors are retried twice. RMQ_ERR_NOMEM when too many are in flight. */
int rmq_producer_send_async(struct rmq_producer *p, const struct rmq_message *m, rmq_send_fn cb,
                            void *arg);
/* Fire and forget: 0 once the request is written to the socket's queue. */
int rmq_producer_send_oneway(struct rmq_producer *p, const struct rmq_message *m);
/* One request carrying n messages of one topic (no delay), each its own record; res
 * describes the first; ids[i] (33 bytes each, if non-NULL) get each UNIQ_KEY. */
int rmq_producer_send_batch(struct rmq_producer *p, const struct rmq_message *ms, size_t n,
                            struct rmq_send_result *res, char (*ids)[33]);
/* Run callbacks and timers for up to timeout_ms (0: what is ready). Returns the number
 * of async sends still in flight. */
int rmq_producer_poll(struct rmq_producer *p, uint32_t timeout_ms);

/* ---- pull consumer ---------------------------------------------------------------------------- */

struct rmq_pull_consumer;

enum rmq_pull_status {
    RMQ_PULL_FOUND = 0,
    RMQ_PULL_NO_NEW_MSG = 1,        /* nothing at offset (yet) */
    RMQ_PULL_NO_MATCHED_MSG = 2,    /* something, but not for the tag expression */
    RMQ_PULL_OFFSET_ILLEGAL = 3,    /* next_offset says where to go */
};

struct rmq_pull_result {
    int status;                     /* enum rmq_pull_status */
    int64_t next_offset;
    int64_t min_offset;
    int64_t max_offset;
    struct rmq_msg *msgs;           /* owned; count entries */
    uint32_t count;
    void *mem;                      /* owned: the bytes msgs point into */
};

void rmq_pull_result_free(struct rmq_pull_result *r);

int rmq_pull_consumer_create(struct rmq_pull_consumer **out, const struct rmq_options *opts);
void rmq_pull_consumer_destroy(struct rmq_pull_consumer *c);
/* The topic's readable queues (sorted by broker, then id); free *qs. */
int rmq_pull_queues(struct rmq_pull_consumer *c, const char *topic, struct rmq_queue **qs,
                    size_t *n);
/* Up to max_msgs from offset matching tag_expr ("*", "A || B"; tags filtered exactly here
 * as the broker filters by hash); hold_ms > 0 lets the broker hold an empty pull that long
 * (long polling). */
int rmq_pull(struct rmq_pull_consumer *c, const struct rmq_queue *q, const char *tag_expr,
             int64_t offset, uint32_t max_msgs, uint32_t hold_ms, struct rmq_pull_result *res);
/* The group's committed offset of q: 0 with *offset, or *offset = -1 when none. */
int rmq_pull_fetch_offset(struct rmq_pull_consumer *c, const struct rmq_queue *q,
                          int64_t *offset);
int rmq_pull_commit_offset(struct rmq_pull_consumer *c, const struct rmq_queue *q,
                           int64_t offset);
int rmq_pull_min_offset(struct rmq_pull_consumer *c, const struct rmq_queue *q, int64_t *offset);
int rmq_pull_max_offset(struct rmq_pull_consumer *c, const struct rmq_queue *q, int64_t *offset);
/* The queue offset of the first message stored at or after ts_ms. */
int rmq_pull_offset_by_time(struct rmq_pull_consumer *c, const struct rmq_queue *q,
                            int64_t ts_ms, int64_t *offset);

/* ---- push consumer ---------------------------------------------------------------------------- */

/*
 * A push consumer runs on a thread of its own, started by rmq_push_consumer_start: it
 * long-polls every queue assigned to it and calls the consume callback on that thread,
 * in queue-offset order per queue. Clustering (default): the group's consumers share
 * the queues (spec/CLIENT.md §6.2's average allocation, rebalanced every 20 s and as
 * soon as the broker says the group changed), offsets are committed to the broker every
 * 5 s and at destroy; a failed message goes back to the broker (CONSUMER_SEND_MSG_BACK)
 * and returns through %RETRY%<group> after the delay levels, to %DLQ%<group> after
 * max_reconsume. Broadcasting: every consumer takes every queue, offsets are kept in a
 * local file, failures are not retried. Orderly: a queue is consumed only while this
 * consumer holds its broker lock; a failed batch is retried in place after 1 s.
 */
struct rmq_push_consumer;

enum rmq_consume_status {
    RMQ_CONSUME_SUCCESS = 0,
    RMQ_CONSUME_LATER = 1,          /* failed: retry (orderly: suspend the queue 1 s) */
};

/* msgs[0..count) of one queue, in offset order; return enum rmq_consume_status. */
typedef int (*rmq_consume_fn)(void *arg, const struct rmq_msg *msgs, uint32_t count);

enum rmq_from_where {
    RMQ_FROM_LAST_OFFSET = 0,       /* a group with no committed offset starts at the end */
    RMQ_FROM_FIRST_OFFSET = 1,
    RMQ_FROM_TIMESTAMP = 2,
};

struct rmq_push_options {
    bool broadcasting;
    bool orderly;
    int from_where;                 /* enum rmq_from_where: only without a stored offset */
    int64_t from_timestamp_ms;      /* RMQ_FROM_TIMESTAMP; 0: 30 minutes before start */
    uint32_t batch_size;            /* messages per callback; default 1 */
    int32_t max_reconsume;          /* default 16; orderly: 0 means never give up */
    const char *offsets_dir;        /* broadcasting: default $HOME/.ringmq/offsets */
    uint32_t rebalance_ms;          /* default 20000 */
    uint32_t persist_ms;            /* offset commits; default 5000 */
};

int rmq_push_consumer_create(struct rmq_push_consumer **out, const struct rmq_options *opts,
                             const struct rmq_push_options *push);
/* Before start: consume topic's messages matching tag_expr ("*", "A || B"). */
int rmq_push_subscribe(struct rmq_push_consumer *c, const char *topic, const char *tag_expr);
/* Start the consumer's thread; returns once it is connected and subscribed (or failed). */
int rmq_push_consumer_start(struct rmq_push_consumer *c, rmq_consume_fn fn, void *arg);
/* Queues assigned to this consumer right now (retry topic included). */
uint32_t rmq_push_assigned_count(const struct rmq_push_consumer *c);
/* Stop pulling, commit offsets, release locks, unregister, join the thread, free. */
void rmq_push_consumer_destroy(struct rmq_push_consumer *c);

/* ---- admin ------------------------------------------------------------------------------------ */

struct rmq_admin;

int rmq_admin_create(struct rmq_admin **out, const struct rmq_options *opts);
void rmq_admin_destroy(struct rmq_admin *a);
/*
 * Raw requests for tools: send code with header fields (key, value, ..., NULL) to addr
 * (NULL: a NameServer) and wait. 0 with *resp_code, the remark (into remark, cap
 * bytes, may be NULL) and the body (*body malloc'ed, NUL-terminated; free it), or an
 * error for the transport. Header fields of the answer: rmq_admin_ext().
 */
int rmq_admin_call(struct rmq_admin *a, const char *addr, int code, const char *const *fields,
                   const void *body, size_t body_len, int *resp_code, char *remark, size_t cap,
                   char **body_out, size_t *body_len_out);
/* A header field of the last answer rmq_admin_call got, or NULL. */
const char *rmq_admin_ext(const struct rmq_admin *a, const char *key);
/* The topic's route as the NameServer's JSON (*json malloc'ed). */
int rmq_admin_route(struct rmq_admin *a, const char *topic, char **json);
/*
 * Messages of topic whose KEYS hold key (or, with unique, whose UNIQ_KEY is key) stored
 * in [begin_ms, end_ms] (0 and 0: any time), from every broker of the topic, at most max
 * (capped at 64 per broker by the brokers), in commitlog order per broker. 0 with res
 * (count 0 when none: not an error), or the failure. Free with rmq_pull_result_free.
 */
int rmq_admin_query(struct rmq_admin *a, const char *topic, const char *key, bool unique,
                    uint32_t max, int64_t begin_ms, int64_t end_ms, struct rmq_pull_result *res);
/* Master addresses of every broker of cluster (NULL: every cluster); free *addrs. */
int rmq_admin_masters(struct rmq_admin *a, const char *cluster, char ***addrs, size_t *n);

#endif
