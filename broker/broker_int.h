/* Private to broker/ and tests/unit/broker/. */
#ifndef RMQ_BROKER_INT_H
#define RMQ_BROKER_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "broker/broker.h"
#include "broker/offsets.h"
#include "broker/topics.h"
#include "core/list.h"
#include "core/loop.h"
#include "core/strmap.h"
#include "core/wheel.h"
#include "ha/ha.h"
#include "index/index.h"
#include "net/client.h"
#include "net/handler.h"
#include "net/json.h"
#include "store/disk.h"
#include "store/store.h"

#define RMQ_BROKER_CLIENT_ID_MAX 256
#define RMQ_PULL_CODES_MAX 32               /* tags in one subscription expression */
#define RMQ_PULL_MSGS_MAX 32                /* messages per pull response */
#define RMQ_BROKER_NAMESRV_MAX 8
#define RMQ_LOCK_MAX_LIVE_MS 60000          /* REBALANCE_LOCK_MAX_LIVE_TIME */
#define RMQ_SEND_POOL 4096                  /* send contexts kept for reuse */

/* A saved request: enough to answer it later (opaque, serialization, oneway). */
struct rmq_saved_req {
    int32_t code;
    int32_t opaque;
    int32_t flag;
    int32_t version;
    uint8_t serialize;
    uint8_t language;
};

/* Per connection slot: who the client is and what it holds. */
struct rmq_conn_info {
    uint32_t gen;                           /* the connection this belongs to */
    bool known;                             /* a heartbeat arrived on it */
    char client_id[RMQ_BROKER_CLIENT_ID_MAX];
    uint8_t language;
    uint8_t serialize;
    int32_t version;
    uint64_t last_beat_ms;
    struct rmq_link parked;                 /* rmq_parked_pull on this connection */
};

struct rmq_subscription {
    char topic[RMQ_TOPIC_NAME_MAX + 1];
    char *sub_string;                       /* owned */
    int32_t codes[RMQ_PULL_CODES_MAX];
    uint32_t code_count;                    /* 0 with all = true: "*" */
    bool all;
    int64_t sub_version;
};

/* A consumer group as its members' heartbeats describe it. */
struct rmq_consumer_group {
    char name[RMQ_GROUP_NAME_MAX + 1];
    uint64_t *members;                      /* owned: connection tags */
    uint32_t member_count;
    uint32_t member_cap;
    struct rmq_subscription *subs;          /* owned */
    uint32_t sub_count;
    int consume_type;                       /* 0 ACTIVELY, 1 PASSIVELY */
    int message_model;                      /* 0 BROADCASTING, 1 CLUSTERING */
    int consume_from;
};

struct rmq_producer_group {
    char name[RMQ_GROUP_NAME_MAX + 1];
    uint64_t *members;
    uint32_t member_count;
    uint32_t member_cap;
};

struct rmq_queue_lock {
    char key[RMQ_GROUP_NAME_MAX + RMQ_TOPIC_NAME_MAX + 16]; /* group@topic@qid */
    char client_id[RMQ_BROKER_CLIENT_ID_MAX];
    uint64_t last_ms;
};

/* A pull that found nothing, waiting for a message or its deadline (long polling). */
struct rmq_parked_pull {
    struct rmq_link queue_link;             /* on its queue's list */
    struct rmq_link conn_link;              /* on its connection's list */
    struct rmq_timer timer;
    struct rmq_broker *b;
    struct rmq_conn_handle conn;
    struct rmq_saved_req req;
    char topic[RMQ_TOPIC_NAME_MAX + 1];
    uint8_t topic_len;
    char group[RMQ_GROUP_NAME_MAX + 1];
    int32_t queue_id;
    int64_t offset;
    int32_t max_msgs;
    int32_t codes[RMQ_PULL_CODES_MAX];
    uint32_t code_count;
    bool all;
    struct rmq_parked_queue *pq;
};

/* Parked pulls of one queue, keyed "topic@queueId". */
struct rmq_parked_queue {
    char key[RMQ_TOPIC_NAME_MAX + 16];
    struct rmq_link pulls;
};

/* One NameServer we register with. */
struct rmq_namesrv_peer {
    struct rmq_broker *b;
    char addr[64];
    struct rmq_client client;
    struct rmq_call call;
    bool call_pending;
    bool again;                             /* topics changed while a call was pending */
    bool registered;                        /* last registration succeeded */
    bool initialized;
};

struct rmq_broker_stats {
    uint64_t put_msgs;
    uint64_t put_bytes;
    uint64_t put_refused;
    uint64_t get_msgs;
    uint64_t get_bytes;
    uint64_t pulls;
    uint64_t pulls_parked;
    uint64_t pulls_woken;
    uint64_t registrations;
    uint64_t registration_failures;
    uint64_t held_marks_recovered;          /* deliveries found by the start's walk */
    uint64_t timer_rolled;                  /* waiting messages copied to the log's head */
    uint64_t slave_syncs;                   /* metadata copies from the master completed */
    uint64_t slave_sync_failures;
    uint64_t slave_offsets_pushed;          /* offsets committed here sent to the master */
};

struct rmq_send_ctx;
struct rmq_sched_level;
struct rmq_timer_seg;
struct pending_key;

/* A delivered copy of a held message names where it came from, so that a start after
 * kill -9 knows it as delivered even when the progress that says so was lost. */
#define RMQ_PROP_SCHEDULE_FROM "SCHEDULE_FROM"      /* "<level>:<schedule queue offset>" */
#define RMQ_PROP_TIMER_FROM "TIMER_FROM"            /* its timer log queue 0 offset */
/* A waiting message copied to the timer log's head (timer.c) names its older copy. */
#define RMQ_PROP_TIMER_ROLLED_FROM "TIMER_ROLLED_FROM"

/* In an offset message id, this bit of the offset says "in the timer log": a timed
 * message's send answer names its record there, which VIEW_MESSAGE_BY_ID finds. */
#define RMQ_TIMER_LOG_ID_BIT (1ll << 62)

/* A timer message's delivered copy found in the commitlog at start (schedule.c walks,
 * timer.c checks it against the timer log and writes its mark). */
struct rmq_timer_found {
    int64_t q0;
    uint32_t body_crc;
    uint64_t phys;                          /* where the copy lies in the commitlog */
};

struct rmq_broker {
    struct rmq_broker_config cfg;
    struct rmq_net_loop *nl;                /* borrowed */
    struct rmq_loop *loop;                  /* borrowed */
    struct rmq_server srv;
    bool srv_up;
    struct rmq_server ns_srv;               /* standalone NameServer */
    struct rmq_namesrv *ns;                 /* standalone NameServer, owned */
    bool ns_srv_up;
    struct rmq_disk *disk;                  /* owned */
    struct rmq_store *store;                /* owned */
    struct rmq_topics topics;
    struct rmq_offsets offsets;
    uint8_t store_ip[4];                    /* brokerIP1 as bytes: the offset ids' host */
    char addr[80];                          /* brokerIP1:listenPort */
    uint64_t start_ms;

    struct rmq_conn_info *conns;            /* owned: one per connection slot */
    struct rmq_strmap consumers;            /* name -> rmq_consumer_group */
    struct rmq_strmap producers;            /* name -> rmq_producer_group */
    struct rmq_strmap locks;                /* key -> rmq_queue_lock */
    struct rmq_strmap parked;               /* "topic@qid" -> rmq_parked_queue */
    uint32_t parked_count;

    struct rmq_send_ctx *send_free;         /* reusable send contexts */
    uint32_t send_free_count;
    uint32_t sends_in_flight;
    struct rmq_pull_tx *pull_free;          /* reusable pull responses */
    uint32_t pull_free_count;
    uint32_t pulls_in_flight;               /* responses whose bytes are still queued */

    struct rmq_disk *timer_disk;            /* owned: the timer log (timer.c) */
    struct rmq_store *timer_store;          /* owned */
    char timer_root[RMQ_STORE_PATH_MAX + 16];
    struct rmq_wheel wheel;                 /* messages waiting in the timer log */
    struct rmq_timer wheel_timer;
    struct rmq_index *index;                /* owned: the key index (keys.c), or NULL */
    struct pending_key *keys_pending;       /* owned: puts collected over a dispatch run */
    uint32_t keys_pending_n;
    int64_t keys_mark;                      /* end of the last record whose keys are queued */
    struct rmq_deferred keys_flush;
    bool keys_flush_queued;
    struct rmq_timer_seg **tsegs;           /* waiting messages per timer log segment */
    uint64_t tseg_base;                     /* segment index of tsegs[0] */
    uint32_t tseg_cap;
    bool tseg_broken;                       /* a message not tracked: release nothing */
    uint64_t timer_waiting;                 /* messages in the timer log not delivered */
    uint64_t timer_waiting_bytes;
    struct rmq_link timer_fifo;             /* deliveries not yet marked, in issue order */
    struct rmq_timer timer_gc_timer;        /* segments released, sparse ones rolled */
    uint32_t timer_rolls_in_flight;
    struct rmq_timer_found *timer_found;    /* from the start's commitlog walk */
    uint32_t timer_found_count;
    uint64_t marks_scan_from;               /* delayOffset.json's scanFrom, read at start */
    uint64_t marks_saved;                   /* scanFrom last written */

    struct rmq_sched_level *levels;         /* owned: one scheduler per delay level */
    uint32_t delay_level_count;
    bool delay_dirty;                       /* delayOffset.json behind */

    /* replication (ha.c) */
    struct rmq_ha_master *ha_master;        /* owned; masters */
    struct rmq_ha_slave *ha_slave;          /* owned; slaves */
    uint16_t ha_port;
    bool ha_stopped;
    char master_addr[80];                   /* slave: the master's remoting address */
    struct rmq_client master_client;        /* slave: metadata copies */
    bool master_client_up;
    struct rmq_call sync_call;
    bool sync_pending;
    int sync_step;
    struct rmq_timer sync_timer;
    struct rmq_offsets slave_local;         /* slave: offsets committed here, not yet on the master */
    bool slave_local_up;

    struct rmq_namesrv_peer peers[RMQ_BROKER_NAMESRV_MAX];
    uint32_t peer_count;
    struct rmq_jw out;                      /* control-plane bodies, reused */

    struct rmq_timer register_timer;
    struct rmq_timer offsets_timer;
    struct rmq_timer scan_timer;            /* idle channels, expired parked pulls sweep */
    struct rmq_timer stop_timer;
    struct rmq_deferred register_soon;      /* topics changed: register at once */

    bool stopping;
    int stop_stage;
    int stop_err;
    uint64_t stop_started_ns;
    void (*stop_done)(void *arg, int err);
    void *stop_arg;

    struct rmq_broker_stats stats;
};

/* ---- helpers shared by the handlers (broker.c) ---------------------------------------- */

uint64_t rmq_broker__now_ms(const struct rmq_broker *b);
uint64_t rmq_broker__conn_tag(const struct rmq_broker *b, const struct rmq_conn *c);
struct rmq_conn *rmq_broker__conn_from_tag(const struct rmq_broker *b, uint64_t tag);
struct rmq_conn_info *rmq_broker__info(struct rmq_broker *b, const struct rmq_conn *c);
void rmq_broker__save_req(struct rmq_saved_req *s, const struct rmq_header *h);
void rmq_broker__restore_req(struct rmq_header *h, const struct rmq_saved_req *s);

/* Answer with code and a formatted remark; logs one rate-limited line for errors. */
void rmq_broker__reply(struct rmq_conn *c, const struct rmq_header *req, int32_t code,
                       const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void rmq_broker__reply_ok(struct rmq_conn *c, const struct rmq_header *req, const void *body,
                          size_t body_len);
/* Send b->out (finished here) as the SUCCESS body, with resp when given. */
void rmq_broker__reply_json(struct rmq_broker *b, struct rmq_conn *c, const struct rmq_header *req,
                            struct rmq_header *resp);
void rmq_broker__send_resp(struct rmq_conn *c, const struct rmq_header *req,
                           const struct rmq_header *resp, const void *body, size_t body_len);

/* extFields helpers (net/handler.h), logging as "broker". */
static inline int
rmq_broker__field_str(const struct rmq_frame *req, const char *name, char *buf, size_t cap)
{
    return rmq_field_str(req, name, buf, cap);
}

static inline bool
rmq_broker__need_str(struct rmq_conn *c, const struct rmq_frame *req, const char *name, char *buf,
                     size_t cap)
{
    return rmq_need_str(c, req, "broker", name, buf, cap);
}

static inline bool
rmq_broker__need_i64(struct rmq_conn *c, const struct rmq_frame *req, const char *name,
                     int64_t *out)
{
    return rmq_need_i64(c, req, "broker", name, out);
}

static inline bool
rmq_broker__need_i32(struct rmq_conn *c, const struct rmq_frame *req, const char *name,
                     int32_t *out)
{
    return rmq_need_i32(c, req, "broker", name, out);
}

/* Topic for a request; NULL after answering TOPIC_NOT_EXIST. */
const struct rmq_topic_config *rmq_broker__topic(struct rmq_broker *b, const char *name);
/* Create (or keep) a topic and register the change soon. 0 or -errno. */
int rmq_broker__topic_ensure(struct rmq_broker *b, const char *name, int32_t queues, int32_t perm);
void rmq_broker__topics_changed(struct rmq_broker *b);

/* ---- modules ------------------------------------------------------------------------------ */

void rmq_broker__send_install(struct rmq_broker *b);
void rmq_broker__send_fini(struct rmq_broker *b);

void rmq_broker__pull_install(struct rmq_broker *b);
/* Answer every parked pull now (stop), free the pools. */
void rmq_broker__pull_release_all(struct rmq_broker *b);
void rmq_broker__pull_fini(struct rmq_broker *b);
/* A connection closed: drop its parked pulls. */
void rmq_broker__pull_conn_closed(struct rmq_broker *b, struct rmq_conn_info *ci);
/* Store hook: a message reached (topic, queue). */
void rmq_broker__pull_arrival(void *ctx, const char *topic, uint32_t topic_len, int32_t queue_id,
                              int64_t max, int64_t tags_code);

void rmq_broker__clients_install(struct rmq_broker *b);
void rmq_broker__clients_conn_closed(struct rmq_broker *b, struct rmq_conn *c);
void rmq_broker__clients_scan(struct rmq_broker *b);
void rmq_broker__clients_fini(struct rmq_broker *b);
/* Parse a TAG expression ("*", "A || B") into codes. 0 or -EINVAL. */
int rmq_broker__parse_tags(const char *expr, size_t len, int32_t *codes, uint32_t *count,
                           bool *all);

void rmq_broker__admin_install(struct rmq_broker *b);

/* Delay levels, send-back, DLQ (schedule.c). */
int rmq_broker__delay_init(struct rmq_broker *b);
void rmq_broker__delay_install(struct rmq_broker *b);
void rmq_broker__delay_start(struct rmq_broker *b);
void rmq_broker__delay_stop(struct rmq_broker *b);
void rmq_broker__delay_fini(struct rmq_broker *b);
/* delayOffset.json's text: {"offsetTable":{level:offset,...},"scanFrom":N}. */
void rmq_broker__delay_write(const struct rmq_broker *b, struct rmq_jw *w);
/* Write delayOffset.json if progress moved: 0 or -errno (stays dirty). */
int rmq_broker__delay_persist(struct rmq_broker *b);
/* A schedule queue got an entry: wake its level when idle. */
void rmq_broker__delay_arrival(struct rmq_broker *b, int32_t queue_id, int64_t tags_code);
/* The DELAY level in props (clamped to the configured levels), 0 for none. */
int32_t rmq_broker__delay_level(const struct rmq_broker *b, const char *props, size_t len);
/* Copy src's property pairs except those named in skip (NULL-terminated); every pair
 * written ends in 0x02, so dst needs len + 1 bytes. Returns the length. */
size_t rmq_broker__props_copy_without(char *dst, const char *src, size_t len,
                                      const char *const *skip);
/* Append name=val (strlen(name) + val_len + 2 bytes); returns that length. */
size_t rmq_broker__props_add(char *dst, const char *name, const char *val, size_t val_len);
/* Lowest commitlog offset at which a delivered held message may lie whose mark is not
 * yet written (delay progress, timer marks): scanFrom in delayOffset.json. */
uint64_t rmq_broker__marks_horizon(const struct rmq_broker *b);
/* At start, before the timer log is read: walk the commitlog from the saved scanFrom,
 * advance delay levels over deliveries found and collect timer ones (timer_found). */
int rmq_broker__marks_recover(struct rmq_broker *b);

/* A record kept aside until due (schedule topic or timer log) at (phys, size) of s:
 * decoded, with where it goes (REAL_TOPIC into topic[RMQ_TOPIC_NAME_MAX + 1], REAL_QID).
 * 0 with *pin holding its view, or -errno (unreadable, or no valid REAL_TOPIC/REAL_QID). */
int rmq_broker__held_record(struct rmq_store *s, uint64_t phys, uint32_t size,
                            struct rmq_record *rec, struct rmq_seg_map **pin, char *topic,
                            int32_t *queue_id);

/* The record to append for a held one now due: its fields, topic and queue_id (copied
 * into topic_buf), its properties without those in drop (into props_buf: props_len + 1
 * bytes), IPv4 hosts, this broker as store host. The body stays where held points. */
void rmq_broker__held_to_real(const struct rmq_broker *b, const struct rmq_record *held,
                              const char *topic, int32_t queue_id, const char *const *drop,
                              struct rmq_record *out, char *topic_buf, char *props_buf);

/* The key index and QUERY_MESSAGE (keys.c). */
int rmq_broker__keys_init(struct rmq_broker *b);
void rmq_broker__keys_install(struct rmq_broker *b);
void rmq_broker__keys_arrival(struct rmq_broker *b, const char *topic, uint32_t topic_len,
                              int32_t queue_id, int64_t max);
void rmq_broker__keys_scan(struct rmq_broker *b);
void rmq_broker__keys_fini(struct rmq_broker *b);
/* Put the keys collected so far, then mark their records indexed. */
void rmq_broker__keys_flush(struct rmq_broker *b);
#define RMQ_BROKER_KEYS_PENDING 256

/* Arbitrary delivery times (timer.c). */
int rmq_broker__timer_init(struct rmq_broker *b);
void rmq_broker__timer_start(struct rmq_broker *b);
void rmq_broker__timer_stop(struct rmq_broker *b);
void rmq_broker__timer_fini(struct rmq_broker *b);
/* Issue position of the oldest delivery whose mark is not written, or UINT64_MAX. */
uint64_t rmq_broker__timer_horizon(const struct rmq_broker *b);
/* Delivery time asked for by props (TIMER_DELIVER_MS, TIMER_DELAY_MS, TIMER_DELAY_SEC):
 * 0 none or already due, -1 malformed or beyond timerMaxDelaySec. */
int64_t rmq_broker__timer_deliver_ms(const struct rmq_broker *b, const char *props, size_t len);
/* props without the timer and REAL_* pairs, then REAL_TOPIC, REAL_QID and the absolute
 * TIMER_DELIVER_MS; dst must hold len + 200 bytes. Returns the length. */
size_t rmq_broker__timer_props(char *dst, const char *props, size_t len, const char *topic,
                               int32_t queue_id, int64_t deliver_ms);

/* props without DELAY (dst: len + 1 bytes); the length. */
size_t rmq_broker__props_without_delay(char *dst, const char *props, size_t len);
/* props without REAL_TOPIC/REAL_QID, then those two for (topic, queue_id); dst must hold
 * len + 160 bytes. Returns the length. */
size_t rmq_broker__delay_props(char *dst, const char *props, size_t len, const char *topic,
                               int32_t queue_id);

/* Replication (ha.c): the HA master or slave, SYNC_MASTER waits, a slave's copies of
 * its master's metadata. */
int rmq_broker__ha_init(struct rmq_broker *b);
/* A NameServer's answer to our registration (a slave learns its master there). */
void rmq_broker__ha_registered(struct rmq_broker *b, const struct rmq_frame *resp);
/* Stop replication; rmq_broker__ha_idle once every socket is closed. */
void rmq_broker__ha_stop(struct rmq_broker *b);
bool rmq_broker__ha_idle(const struct rmq_broker *b);
void rmq_broker__ha_fini(struct rmq_broker *b);
void rmq_broker__ha_install(struct rmq_broker *b);
/* The HA address registered with the NameServers ("brokerIP2:haPort"). */
void rmq_broker__ha_addr(const struct rmq_broker *b, char *out, size_t len);
/* Why this slave must not serve reads (its log diverged from the master's), or NULL. */
const char *rmq_broker__ha_unusable(const struct rmq_broker *b);
/* SYNC_MASTER: wait until a slave acknowledged rec (the last record written for a
 * request): 0 w->done runs later (0, -ETIMEDOUT after syncFlushTimeout, -ESHUTDOWN);
 * -EAGAIN no slave is usable (SLAVE_NOT_AVAILABLE); 1 nothing to wait for (not a
 * SYNC_MASTER). */
int rmq_broker__ha_wait(struct rmq_broker *b, struct rmq_ha_wait *w,
                        const struct rmq_record *rec);
/* A consumer's offset committed on a slave: kept until the master has it too. */
void rmq_broker__ha_slave_commit(struct rmq_broker *b, const char *topic, const char *group,
                                 int32_t queue_id, int64_t offset);

int rmq_broker__register_init(struct rmq_broker *b);
void rmq_broker__register_all(struct rmq_broker *b);
/* Unregister from every NameServer; done once all answered or failed. */
void rmq_broker__unregister_all(struct rmq_broker *b);
bool rmq_broker__register_idle(const struct rmq_broker *b);
void rmq_broker__register_stop(struct rmq_broker *b);
bool rmq_broker__register_stopped(const struct rmq_broker *b);
void rmq_broker__register_fini(struct rmq_broker *b);

#endif
