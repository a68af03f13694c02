/*
 * The NameServer's route table (spec/REMOTING.md §11): which broker names host which
 * topics with how many queues, the addresses of each broker name's master (id 0) and
 * slaves, clusters, and when each broker address last registered.
 *
 * Pure data: no I/O, no clock, no sockets. The caller passes the time and an opaque
 * connection tag, so the same table serves the daemon, the broker's --standalone
 * mode and unit tests. Single-threaded: one loop owns it.
 *
 * Tables, each a hash map (O(1) lookups with 10,000+ topics):
 *   topics    topic name  -> per broker name: QueueData (read/write queue nums, perm, sysflag)
 *   brokers   broker name -> BrokerData (cluster, brokerId -> address)
 *   clusters  cluster     -> broker names
 *   live      broker addr -> last registration time, DataVersion, conn tag, haServerAddr,
 *                            filter servers
 * Invariants (rmq_routeinfo_check): every live address appears in some BrokerData; a
 * BrokerData never has zero addresses; a topic never has zero QueueData; each broker
 * name is listed by exactly the cluster named in its BrokerData.
 */
#ifndef RMQ_NAMESRV_ROUTEINFO_H
#define RMQ_NAMESRV_ROUTEINFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/strmap.h"
#include "net/json.h"

#define RMQ_NAMESRV_MASTER_ID 0
#define RMQ_PERM_READ 4
#define RMQ_PERM_WRITE 2

/* Bounds a registration must respect; beyond them it is refused whole. */
#define RMQ_NAMESRV_NAME_MAX 255            /* topic, broker, cluster names (bytes) */
#define RMQ_NAMESRV_ADDR_MAX 255            /* "ip:port" strings */
#define RMQ_NAMESRV_QUEUE_NUMS_MAX 16384    /* read/write queue count per broker and topic */
#define RMQ_NAMESRV_PERM_MAX 15             /* PRIORITY | READ | WRITE | INHERIT */
#define RMQ_NAMESRV_FILTER_SERVERS_MAX 64
#define RMQ_NAMESRV_BROKER_IDS_MAX 64       /* master + slaves per broker name */

struct rmq_topic_queue_conf {
    const char *topic;              /* borrowed */
    int32_t read_queue_nums;
    int32_t write_queue_nums;
    int32_t perm;
    int32_t topic_sys_flag;
};

/* One REGISTER_BROKER, already decoded; every pointer borrowed for the call. */
struct rmq_register_req {
    const char *cluster;
    const char *broker_name;
    const char *broker_addr;
    const char *ha_server_addr;     /* may be "" */
    int64_t broker_id;
    bool has_topic_config;          /* a topicConfigSerializeWrapper came with it */
    struct rmq_data_version data_version;
    const struct rmq_topic_queue_conf *topics;
    uint32_t topic_count;
    const char *const *filter_servers;
    uint32_t filter_server_count;
    uint64_t conn_tag;              /* identifies the connection; 0 = none */
};

struct rmq_register_result {
    bool has_master;                /* for slaves: a live master of the same name */
    char master_addr[RMQ_NAMESRV_ADDR_MAX + 1];
    char ha_server_addr[RMQ_NAMESRV_ADDR_MAX + 1];
    bool queues_updated;            /* topic config applied (first time or new DataVersion) */
};

/* Table-wide caps: peers cannot grow the table without bound (raise in code if needed). */
#define RMQ_NAMESRV_TOPICS_MAX 1000000
#define RMQ_NAMESRV_BROKERS_MAX 8192        /* broker names, and live broker addresses */

struct rmq_routeinfo {
    uint32_t max_topics;            /* RMQ_NAMESRV_TOPICS_MAX; tests lower them */
    uint32_t max_brokers;           /* RMQ_NAMESRV_BROKERS_MAX */
    struct rmq_strmap topics;       /* values owned: struct rmq_ri_topic */
    struct rmq_strmap brokers;      /* values owned: struct rmq_ri_broker */
    struct rmq_strmap clusters;     /* values owned: struct rmq_ri_cluster */
    struct rmq_strmap live;         /* values owned: struct rmq_ri_live */
    uint32_t filter_live_count;     /* live entries with filter servers (usually 0) */
};

void rmq_routeinfo_init(struct rmq_routeinfo *rt);
void rmq_routeinfo_fini(struct rmq_routeinfo *rt);

/*
 * Check a registration against the bounds above without touching the table:
 * 0, or -EINVAL with a short reason in why (static text) naming the field.
 */
int rmq_routeinfo_validate(const struct rmq_register_req *req, const char **why);

/*
 * Apply a registration at now_ms (the caller's clock, ms). Validates first
 * (-EINVAL changes nothing); -ENOSPC when it would take the table past max_topics
 * or max_brokers, or a broker name past RMQ_NAMESRV_BROKER_IDS_MAX ids (changes
 * nothing); -ENOMEM may leave the registration half applied but the table consistent.
 * A master's topic config is applied on its first registration and whenever its
 * DataVersion differs from the stored one; an unchanged DataVersion only refreshes
 * liveness.
 */
int rmq_routeinfo_register(struct rmq_routeinfo *rt, const struct rmq_register_req *req,
                           uint64_t now_ms, struct rmq_register_result *res);

/* UNREGISTER_BROKER: drop the address (and the broker name once it has none). */
void rmq_routeinfo_unregister(struct rmq_routeinfo *rt, const char *cluster,
                              const char *broker_name, const char *broker_addr,
                              int64_t broker_id);

/* Every broker registered through conn_tag is removed (its connection closed). */
uint32_t rmq_routeinfo_conn_closed(struct rmq_routeinfo *rt, uint64_t conn_tag);

struct rmq_routeinfo_expired {
    uint64_t conn_tag;
    char broker_addr[RMQ_NAMESRV_ADDR_MAX + 1];
};

/*
 * Remove brokers whose last registration is older than expire_ms at now_ms.
 * Returns how many; the first cap of them are described in out, so the caller can
 * log them and close their connections, as the reference does.
 */
uint32_t rmq_routeinfo_expire(struct rmq_routeinfo *rt, uint64_t now_ms, uint64_t expire_ms,
                              struct rmq_routeinfo_expired *out, uint32_t cap);

/*
 * TopicRouteData of topic in dialect, appended to w (one JSON object). order_conf
 * (may be NULL) is written as orderTopicConf. -ENOENT when the topic has no
 * QueueData or none of its broker names has a BrokerData.
 */
int rmq_routeinfo_write_route(const struct rmq_routeinfo *rt, const char *topic,
                              size_t topic_len, const char *order_conf, struct rmq_jw *w);

/* ClusterInfo {brokerAddrTable, clusterAddrTable}. */
void rmq_routeinfo_write_cluster_info(const struct rmq_routeinfo *rt, struct rmq_jw *w);

/* {"topicList":[...]}: every topic (cluster NULL), or those on the cluster's brokers. */
void rmq_routeinfo_write_topic_list(const struct rmq_routeinfo *rt, const char *cluster,
                                    struct rmq_jw *w);

/* {"topicList":[...],"brokerAddr":...}: cluster and broker names (system topics). */
void rmq_routeinfo_write_system_topic_list(const struct rmq_routeinfo *rt, struct rmq_jw *w);

/* Topics with topicSysFlag bit `flag_mask` set on every broker hosting them. */
void rmq_routeinfo_write_unit_topic_list(const struct rmq_routeinfo *rt, int32_t flag_mask,
                                         bool require_unit_sub_only, struct rmq_jw *w);

/*
 * DELETE_TOPIC_IN_NAMESRV: the whole topic (cluster NULL) or only its QueueData of
 * that cluster's broker names. Returns true when something was removed.
 */
bool rmq_routeinfo_delete_topic(struct rmq_routeinfo *rt, const char *topic, const char *cluster);

/* Clear (wipe) or set (add, perm = READ|WRITE) the WRITE permission of every
 * QueueData of broker_name. Returns the number of topics changed. */
uint32_t rmq_routeinfo_wipe_write_perm(struct rmq_routeinfo *rt, const char *broker_name);
uint32_t rmq_routeinfo_add_write_perm(struct rmq_routeinfo *rt, const char *broker_name);

/*
 * QUERY_DATA_VERSION: whether dv differs from the stored DataVersion of broker_addr
 * (true when unknown). An unchanged answer refreshes the broker's liveness at now_ms.
 * stored gets the stored version when has_stored is set.
 */
bool rmq_routeinfo_query_data_version(struct rmq_routeinfo *rt, const char *broker_addr,
                                      const struct rmq_data_version *dv, uint64_t now_ms,
                                      struct rmq_data_version *stored, bool *has_stored);

uint32_t rmq_routeinfo_topic_count(const struct rmq_routeinfo *rt);
uint32_t rmq_routeinfo_live_count(const struct rmq_routeinfo *rt);
bool rmq_routeinfo_is_live(const struct rmq_routeinfo *rt, const char *broker_addr);

/* The invariants in the header comment; tests call it after every step. */
bool rmq_routeinfo_check(const struct rmq_routeinfo *rt);

#endif
