/*
 * Broker lifecycle, configuration and the helpers every handler shares; see broker.h.
 * Handlers live in send.c, pull.c, clients.c and admin.c; NameServer registration in
 * register.c. Everything runs on one loop, so the tables need no locks.
 *
 * Graceful stop runs in stages, each waiting for the previous to drain:
 *   1 stop accepting; parked pulls answered; wait for appends in flight (<= 5 s)
 *   2 unregister from every NameServer (<= 3 s)
 *   3 close every connection (and the embedded NameServer's)
 *   4 persist offsets and topics, close the store (flush, checkpoint, abort file)
 */
#include "broker/broker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker_int.h"
#include "core/clock.h"
#include "core/file.h"
#include "core/log.h"
#include "core/util.h"
#include "net/handler.h"

#define STOP_SEND_WAIT_NS (5000ull * 1000000u)
#define STOP_UNREGISTER_WAIT_NS (3000ull * 1000000u)
#define STOP_POLL_NS (10ull * 1000000u)
#define SCAN_INTERVAL_NS (1000ull * 1000000u)

/* ---- configuration ------------------------------------------------------------------------ */

#define BK(n, t, f, d, lo, hi, h) \
    {n, t, offsetof(struct rmq_broker_config, f), sizeof(((struct rmq_broker_config *)0)->f), \
     d, lo, hi, NULL, h}

static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const roles[] = {"ASYNC_MASTER", "SYNC_MASTER", "SLAVE", NULL};

static const struct rmq_config_key broker_keys[] = {
    BK("brokerClusterName", RMQ_CONFIG_STR, cluster, "DefaultCluster", 0, 0,
       "cluster this broker belongs to"),
    BK("brokerName", RMQ_CONFIG_STR, broker_name, "broker-a", 0, 0,
       "broker name, shared by a master and its slaves"),
    BK("brokerId", RMQ_CONFIG_I64, broker_id, "0", 0, 1024, "0 = master, > 0 = slave"),
    BK("brokerIP1", RMQ_CONFIG_STR, broker_ip1, "", 0, 0,
       "IPv4 address clients reach this broker at (empty: first non-loopback interface)"),
    BK("listenPort", RMQ_CONFIG_I64, listen_port, "10911", 0, 65535,
       "TCP port for clients (0 = any free port)"),
    BK("bindAddress", RMQ_CONFIG_STR, bind_address, "0.0.0.0", 0, 0, "IPv4 address to listen on"),
    BK("namesrvAddr", RMQ_CONFIG_STR, namesrv_addr, "", 0, 0,
       "NameServers to register with, host:port;host:port (empty: $NAMESRV_ADDR)"),
    BK("standalone", RMQ_CONFIG_BOOL, standalone, "false", 0, 0,
       "also serve the NameServer protocol in this process and register there"),
    BK("namesrvListenPort", RMQ_CONFIG_I64, namesrv_listen_port, "9876", 0, 65535,
       "standalone: port of the embedded NameServer (0 = any free port)"),
    BK("autoCreateTopicEnable", RMQ_CONFIG_BOOL, auto_create_topic, "true", 0, 0,
       "create unknown topics on first send (from TBW102)"),
    BK("defaultTopicQueueNums", RMQ_CONFIG_I64, default_topic_queue_nums, "8", 1, 1024,
       "queues of auto-created topics at most"),
    BK("registerBrokerInterval", RMQ_CONFIG_I64, register_interval_ms, "30000", 100, 60000,
       "ms between registrations with each NameServer"),
    {"brokerRole", RMQ_CONFIG_ENUM, offsetof(struct rmq_broker_config, broker_role), 0,
     "ASYNC_MASTER", 0, 0, roles, "ASYNC_MASTER, SYNC_MASTER or SLAVE"},
    BK("brokerIP2", RMQ_CONFIG_STR, broker_ip2, "", 0, 0,
       "IPv4 address slaves reach the HA port at (empty: brokerIP1); the HA port is always "
       "listenPort + 1"),
    BK("haMasterAddress", RMQ_CONFIG_STR, ha_master_address, "", 0, 0,
       "slave: the master's HA address ip:port (empty: learnt from the NameServer)"),
    BK("haTransferBatchSize", RMQ_CONFIG_I64, ha_batch_size, "32768", 1024, 1 << 20,
       "largest frame of log bytes the master sends a slave"),
    BK("haSendHeartbeatInterval", RMQ_CONFIG_I64, ha_heartbeat_ms, "5000", 100, 60000,
       "ms of silence after which master and slave send a heartbeat"),
    BK("haHousekeepingInterval", RMQ_CONFIG_I64, ha_housekeeping_ms, "20000", 500, 600000,
       "ms without a byte from the other side after which an HA connection is closed"),
    BK("haMaxGapNotInSync", RMQ_CONFIG_I64, ha_max_gap, "268435456", 1, 1LL << 40,
       "SYNC_MASTER: a slave this many bytes behind does not count (SLAVE_NOT_AVAILABLE)"),
    BK("slaveMetadataSyncInterval", RMQ_CONFIG_I64, slave_sync_ms, "10000", 100, 600000,
       "slave: ms between copies of the master's topics, consumer offsets and delay offsets"),
    BK("slaveReadEnable", RMQ_CONFIG_BOOL, slave_read_enable, "false", 0, 0,
       "suggest brokerId 1 to consumers reading beyond accessMessageInMemoryMaxRatio of RAM"),
    BK("brokerPermission", RMQ_CONFIG_I64, broker_permission, "6", 0, 7,
       "PermName bits: 4 read, 2 write"),
    BK("longPollingEnable", RMQ_CONFIG_BOOL, long_polling, "true", 0, 0,
       "hold empty pulls until a message arrives (else shortPollingTimeMills)"),
    BK("shortPollingTimeMills", RMQ_CONFIG_I64, short_polling_ms, "1000", 0, 60000,
       "hold time of an empty pull when long polling is off"),
    BK("maxParkedPulls", RMQ_CONFIG_I64, max_parked_pulls, "32768", 0, 60000,
       "empty pulls held at once; more are answered PULL_NOT_FOUND at once"),
    BK("pullSpliceMinBytes", RMQ_CONFIG_I64, pull_splice_min, "0", 0, 1 << 30,
       "pull responses this large go file -> socket by splice, smaller ones are sent from the "
       "mapped segment (0: always the mapping, measured faster on loopback)"),
    BK("timerMaxDelaySec", RMQ_CONFIG_I64, timer_max_delay_sec, "7776000", 1, 366 * 86400,
       "furthest delivery time a message may ask for (TIMER_DELIVER_MS etc.), seconds ahead"),
    BK("mappedFileSizeTimerLog", RMQ_CONFIG_I64, timer_seg_size, "104857600", 65536, 1LL << 30,
       "segment size of the timer log (scheduled messages): a segment goes once its messages "
       "were delivered"),
    BK("messageIndexEnable", RMQ_CONFIG_BOOL, index_enable, "true", 0, 0,
       "index every message's KEYS and UNIQ_KEY (QUERY_MESSAGE, query by id)"),
    BK("maxHashSlotNum", RMQ_CONFIG_I64, index_slots, "5000000", 1, 100000000,
       "hash slots per key index file"),
    BK("maxIndexNum", RMQ_CONFIG_I64, index_entries, "20000000", 2, 400000000,
       "entries per key index file (32 bytes each)"),
    BK("maxConnections", RMQ_CONFIG_I64, max_connections, "4096", 16, 65536,
       "client connections served at once; more are refused"),
    BK("clientChannelMaxIdleTimeSeconds", RMQ_CONFIG_I64, channel_idle_s, "120", 1, 86400,
       "a client silent this long (no heartbeat) is closed"),
    BK("flushConsumerOffsetInterval", RMQ_CONFIG_I64, flush_offset_interval_ms, "5000", 10,
       600000, "ms between writes of consumerOffset.json"),
    BK("regionId", RMQ_CONFIG_STR, region, "DefaultRegion", 0, 0, "MSG_REGION of send responses"),
    BK("traceOn", RMQ_CONFIG_BOOL, trace_on, "true", 0, 0, "TRACE_ON of send responses"),
    {"logLevel", RMQ_CONFIG_ENUM, offsetof(struct rmq_broker_config, log_level), 0, "info", 0, 0,
     log_levels, "log lines up to this level"},
};

static struct rmq_config_key all_keys[RMQ_ARRAY_LEN(broker_keys) + 32];
static struct rmq_config_spec spec = {.program = "rmq-broker", .keys = all_keys};

const struct rmq_config_spec *
rmq_broker_config_spec(void)
{
    if (spec.key_count == 0) {
        size_t n = 0;

        RMQ_ASSERT(RMQ_ARRAY_LEN(broker_keys) + rmq_store_option_key_count <=
                   RMQ_ARRAY_LEN(all_keys));
        for (size_t i = 0; i < RMQ_ARRAY_LEN(broker_keys); i++) {
            all_keys[n++] = broker_keys[i];
        }
        for (size_t i = 0; i < rmq_store_option_key_count; i++) {
            all_keys[n] = rmq_store_option_keys[i];
            all_keys[n].offset += offsetof(struct rmq_broker_config, store);
            n++;
        }
        spec.key_count = n;
    }
    return &spec;
}

int
rmq_broker_config_parse(struct rmq_broker_config *cfg, int argc, char **argv, char *err,
                        size_t errlen)
{
    char **args = calloc((size_t)argc + 1, sizeof(*args));
    char standalone_true[] = "--standalone=true";
    int ret;

    if (args == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (int i = 0; i < argc; i++) {
        args[i] = strcmp(argv[i], "--standalone") == 0 ? standalone_true : argv[i];
    }
    memset(cfg, 0, sizeof(*cfg));
    ret = rmq_config_parse_args(rmq_broker_config_spec(), cfg, argc, args, err, errlen);
    free(args);
    if (ret < 0) {
        return ret;
    }
    ret = rmq_config_defaults(&rmq_namesrv_config_spec, &cfg->ns, err, errlen);
    if (ret < 0) {
        return ret;
    }
    cfg->ns.listen_port = cfg->namesrv_listen_port;
    snprintf(cfg->ns.bind_address, sizeof(cfg->ns.bind_address), "%s", cfg->bind_address);
    if (snprintf(cfg->ns.kv_config_path, sizeof(cfg->ns.kv_config_path), "%s/namesrv/kvConfig.json",
                 cfg->store.storePathRootDir) >= (int)sizeof(cfg->ns.kv_config_path)) {
        snprintf(err, errlen, "storePathRootDir: too long");
        return -EINVAL;
    }
    cfg->ns.log_level = cfg->log_level;
    if (!rmq_name_chars_valid(cfg->broker_name, strlen(cfg->broker_name)) ||
        cfg->broker_name[0] == '\0') {
        snprintf(err, errlen, "brokerName: '%s' must be [%%|a-zA-Z0-9_-]+", cfg->broker_name);
        return -EINVAL;
    }
    if (!rmq_name_chars_valid(cfg->cluster, strlen(cfg->cluster)) || cfg->cluster[0] == '\0') {
        snprintf(err, errlen, "brokerClusterName: '%s' must be [%%|a-zA-Z0-9_-]+", cfg->cluster);
        return -EINVAL;
    }
    return 0;
}

/* First non-loopback IPv4 interface that is up, else 127.0.0.1 (what the reference picks). */
static void
detect_ip(char *out, size_t cap)
{
    struct ifaddrs *ifs;

    snprintf(out, cap, "127.0.0.1");
    if (getifaddrs(&ifs) < 0) {
        return;
    }
    for (struct ifaddrs *i = ifs; i != NULL; i = i->ifa_next) {
        if (i->ifa_addr != NULL && i->ifa_addr->sa_family == AF_INET &&
            (i->ifa_flags & IFF_UP) && !(i->ifa_flags & IFF_LOOPBACK)) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, out,
                      (socklen_t)cap);
            break;
        }
    }
    freeifaddrs(ifs);
}

/* ---- shared helpers ------------------------------------------------------------------------- */

uint64_t
rmq_broker__now_ms(const struct rmq_broker *b)
{
    (void)b;
    return rmq_clock_wall_ms();
}

uint64_t
rmq_broker__conn_tag(const struct rmq_broker *b, const struct rmq_conn *c)
{
    return ((uint64_t)rmq_server_conn_index(&b->srv, c) + 1) << 32 | c->gen;
}

struct rmq_conn *
rmq_broker__conn_from_tag(const struct rmq_broker *b, uint64_t tag)
{
    uint64_t slot = tag >> 32;
    struct rmq_conn *c;

    if (slot == 0 || slot > b->srv.max_conns) {
        return NULL;
    }
    c = &b->srv.conns[slot - 1];
    return c->gen == (uint32_t)tag && rmq_conn_is_open(c) ? c : NULL;
}

struct rmq_conn_info *
rmq_broker__info(struct rmq_broker *b, const struct rmq_conn *c)
{
    struct rmq_conn_info *ci = &b->conns[rmq_server_conn_index(&b->srv, c)];

    if (ci->gen != c->gen) {
        /* first use of this slot by this connection: start clean */
        RMQ_ASSERT(rmq_list_is_empty(&ci->parked) || ci->parked.next == NULL);
        memset(ci, 0, sizeof(*ci));
        ci->gen = c->gen;
        rmq_list_init(&ci->parked);
    }
    return ci;
}

void
rmq_broker__save_req(struct rmq_saved_req *s, const struct rmq_header *h)
{
    s->code = h->code;
    s->opaque = h->opaque;
    s->flag = h->flag;
    s->version = h->version;
    s->serialize = h->serialize;
    s->language = h->language;
}

void
rmq_broker__restore_req(struct rmq_header *h, const struct rmq_saved_req *s)
{
    rmq_header_init(h, s->code, (enum rmq_serialize)s->serialize);
    h->opaque = s->opaque;
    h->flag = s->flag;
    h->version = s->version;
    h->language = s->language;
}

void
rmq_broker__send_resp(struct rmq_conn *c, const struct rmq_header *req,
                      const struct rmq_header *resp, const void *body, size_t body_len)
{
    rmq_handler_send(c, req, resp, body, body_len, "broker");
}

void
rmq_broker__reply(struct rmq_conn *c, const struct rmq_header *req, int32_t code, const char *fmt,
                  ...)
{
    va_list ap;

    va_start(ap, fmt);
    rmq_handler_vreply(c, req, "broker", code, fmt, ap);
    va_end(ap);
}

void
rmq_broker__reply_ok(struct rmq_conn *c, const struct rmq_header *req, const void *body,
                     size_t body_len)
{
    struct rmq_header resp;

    rmq_header_init_response(&resp, req, RMQ_RESP_SUCCESS);
    rmq_broker__send_resp(c, req, &resp, body, body_len);
}

void
rmq_broker__reply_json(struct rmq_broker *b, struct rmq_conn *c, const struct rmq_header *req,
                       struct rmq_header *resp)
{
    struct rmq_header ok;
    const char *text;
    size_t len;
    int ret = rmq_jw_finish(&b->out, &text, &len);

    if (ret < 0) {
        rmq_broker__reply(c, req, RMQ_RESP_SYSTEM_ERROR, "response body not encoded: %s",
                          strerror(-ret));
        return;
    }
    if (resp == NULL) {
        rmq_header_init_response(&ok, req, RMQ_RESP_SUCCESS);
        resp = &ok;
    }
    rmq_broker__send_resp(c, req, resp, text, len);
}

static void
register_soon_run(struct rmq_deferred *d)
{
    struct rmq_broker *b = rmq_container_of(d, struct rmq_broker, register_soon);

    if (!b->stopping) {
        rmq_broker__register_all(b);
    }
}

void
rmq_broker__topics_changed(struct rmq_broker *b)
{
    rmq_loop_defer(b->loop, &b->register_soon);
}

int
rmq_broker__topic_ensure(struct rmq_broker *b, const char *name, int32_t queues, int32_t perm)
{
    struct rmq_topic_config tc;
    const char *why = NULL;
    int ret;

    if (rmq_topics_get(&b->topics, name, strlen(name)) != NULL) {
        return 0;
    }
    memset(&tc, 0, sizeof(tc));
    snprintf(tc.name, sizeof(tc.name), "%s", name);
    tc.read_queues = tc.write_queues = queues;
    tc.perm = perm;
    ret = rmq_topics_put(&b->topics, &tc, &why);
    if (ret == -EINVAL) {
        RMQ_LOG_RL(RMQ_LOG_WARN, 5000, "broker: topic %s not created: %s", name, why);
        return ret;
    }
    if (rmq_topics_get(&b->topics, name, strlen(name)) == NULL) {
        return ret < 0 ? ret : -ENOMEM;
    }
    /* a failed file write keeps the topic in memory; the next change retries it */
    RMQ_INFO("broker: topic created topic=%s queues=%d perm=%d", name, queues, perm);
    rmq_broker__topics_changed(b);
    return 0;
}

/* ---- timers --------------------------------------------------------------------------------- */

static void
offsets_fire(struct rmq_timer *t)
{
    struct rmq_broker *b = rmq_container_of(t, struct rmq_broker, offsets_timer);
    int ret = rmq_offsets_persist(&b->offsets);
    int dret = rmq_broker__delay_persist(b);

    if (dret < 0) {
        RMQ_LOG_RL(RMQ_LOG_ERROR, 60000, "broker: delayOffset.json not written err=%s, retrying",
                   strerror(-dret));
    }
    if (ret < 0) {
        RMQ_LOG_RL(RMQ_LOG_ERROR, 60000, "broker: consumer offsets not persisted err=%s, "
                   "retrying in %lld ms", strerror(-ret), (long long)b->cfg.flush_offset_interval_ms);
    }
    rmq_timer_arm(b->loop, &b->offsets_timer, (uint64_t)b->cfg.flush_offset_interval_ms * 1000000u,
                  offsets_fire);
}

static void
scan_fire(struct rmq_timer *t)
{
    struct rmq_broker *b = rmq_container_of(t, struct rmq_broker, scan_timer);

    rmq_broker__clients_scan(b);
    rmq_broker__keys_scan(b);
    rmq_timer_arm(b->loop, &b->scan_timer, SCAN_INTERVAL_NS, scan_fire);
}

static void
register_fire(struct rmq_timer *t)
{
    struct rmq_broker *b = rmq_container_of(t, struct rmq_broker, register_timer);

    rmq_broker__register_all(b);
    rmq_timer_arm(b->loop, &b->register_timer, (uint64_t)b->cfg.register_interval_ms * 1000000u,
                  register_fire);
}

/* ---- connections ------------------------------------------------------------------------------ */

static void
conn_closed(struct rmq_conn *c, int err, void *ctx)
{
    struct rmq_broker *b = ctx;
    struct rmq_conn_info *ci = &b->conns[rmq_server_conn_index(&b->srv, c)];

    (void)err;
    if (ci->gen == c->gen) {
        rmq_broker__pull_conn_closed(b, ci);
        rmq_broker__clients_conn_closed(b, c);
        ci->known = false;
    }
}

/* ---- create / stop / destroy ----------------------------------------------------------------- */

/* Every consume queue entry written in the commitlog: the key index, then whatever
 * waits for it (parked pulls, delay levels). */
static void
main_arrival(void *ctx, const char *topic, uint32_t topic_len, int32_t queue_id, int64_t max,
             int64_t tags_code)
{
    struct rmq_broker *b = ctx;

    rmq_broker__keys_arrival(b, topic, topic_len, queue_id, max);
    rmq_broker__pull_arrival(ctx, topic, topic_len, queue_id, max, tags_code);
}

static int
open_store(struct rmq_broker *b)
{
    struct rmq_store_config scfg;
    char dir[RMQ_STORE_PATH_MAX + 16];
    int ret;

    ret = rmq_store_options_apply(&b->cfg.store, &scfg);
    if (ret < 0) {
        return ret;
    }
    rmq_store_options_commitlog_dir(&b->cfg.store, dir, sizeof(dir));
    ret = rmq_mkdir_p(dir);
    if (ret < 0) {
        RMQ_ERROR("broker: commitlog directory %s not created err=%s", dir, strerror(-ret));
        return ret;
    }
    b->disk = rmq_disk_uring_create(b->loop, dir);
    if (b->disk == NULL) {
        return -ENOMEM;
    }
    rmq_disk_uring_set_write_mode(b->disk, rmq_store_write_mode(b->cfg.store.commitLogWriteMode,
                                                                scfg.flush_type));
    ret = rmq_store_open(&b->store, b->loop, b->disk, &scfg);
    if (ret < 0) {
        b->store = NULL;
        return ret;
    }
    rmq_store_on_arrival(b->store, main_arrival, b);
    ret = rmq_broker__keys_init(b);
    if (ret < 0) {
        return ret;
    }
    ret = rmq_broker__delay_init(b);
    if (ret == 0) {
        ret = rmq_broker__marks_recover(b);
    }
    return ret < 0 ? ret : rmq_broker__timer_init(b);
}

static int
load_tables(struct rmq_broker *b)
{
    char path[RMQ_STORE_PATH_MAX + 64];
    char err[512];
    struct rmq_topics_system sys = {
        .cluster = b->cfg.cluster,
        .broker_name = b->cfg.broker_name,
        .auto_create = b->cfg.auto_create_topic,
        .default_queues = (int32_t)b->cfg.default_topic_queue_nums,
    };
    int ret;

    snprintf(path, sizeof(path), "%s/config", b->cfg.store.storePathRootDir);
    ret = rmq_mkdir_p(path);
    if (ret < 0) {
        RMQ_ERROR("broker: config directory %s not created err=%s", path, strerror(-ret));
        return ret;
    }
    snprintf(path, sizeof(path), "%s/config/topics.json", b->cfg.store.storePathRootDir);
    ret = rmq_topics_init(&b->topics, path, err, sizeof(err));
    if (ret < 0) {
        RMQ_ERROR("broker: topics not loaded: %s", err);
        return ret;
    }
    ret = rmq_topics_add_system(&b->topics, &sys);
    if (ret < 0) {
        RMQ_ERROR("broker: system topics not added err=%s", strerror(-ret));
        return ret;
    }
    snprintf(path, sizeof(path), "%s/config/consumerOffset.json", b->cfg.store.storePathRootDir);
    ret = rmq_offsets_init(&b->offsets, path, err, sizeof(err));
    if (ret < 0) {
        RMQ_ERROR("broker: consumer offsets not loaded: %s", err);
        rmq_topics_fini(&b->topics);
        return ret;
    }
    return 0;
}

int
rmq_broker_create(struct rmq_broker **out, struct rmq_net_loop *nl,
                  const struct rmq_broker_config *cfg)
{
    struct rmq_broker *b = calloc(1, sizeof(*b));
    struct rmq_server_config scfg;
    int ret;

    *out = NULL;
    if (b == NULL) {
        return -ENOMEM;
    }
    b->cfg = *cfg;
    if (b->cfg.broker_role == RMQ_ROLE_SLAVE && b->cfg.broker_id == 0) {
        RMQ_ERROR("broker: brokerRole=SLAVE needs brokerId > 0 (0 is the master's)");
        free(b);
        return -EINVAL;
    }
    if (b->cfg.broker_role != RMQ_ROLE_SLAVE && b->cfg.broker_id != 0) {
        RMQ_WARN("broker: brokerId=%lld ignored: a master is always brokerId 0",
                 (long long)b->cfg.broker_id);
        b->cfg.broker_id = 0;
    }
    b->nl = nl;
    b->loop = nl->loop;
    b->start_ms = rmq_clock_wall_ms();
    rmq_strmap_init(&b->consumers);
    rmq_strmap_init(&b->producers);
    rmq_strmap_init(&b->locks);
    rmq_strmap_init(&b->parked);
    rmq_list_init(&b->timer_fifo);
    rmq_jw_init(&b->out, RMQ_JSON_FASTJSON);
    b->register_soon.fn = register_soon_run;
    if (b->cfg.broker_ip1[0] == '\0') {
        detect_ip(b->cfg.broker_ip1, sizeof(b->cfg.broker_ip1));
    }
    if (inet_pton(AF_INET, b->cfg.broker_ip1, b->store_ip) != 1) {
        RMQ_ERROR("broker: brokerIP1=%s is not an IPv4 address", b->cfg.broker_ip1);
        free(b);
        return -EINVAL;
    }
    ret = load_tables(b);
    if (ret < 0) {
        rmq_jw_fini(&b->out);
        free(b);
        return ret;
    }
    ret = open_store(b);
    if (ret < 0) {
        if (b->store != NULL) {
            goto fail_store;
        }
        goto fail_tables;
    }
    scfg = (struct rmq_server_config){
        .host = b->cfg.bind_address,
        .port = (uint16_t)b->cfg.listen_port,
        .max_conns = (uint32_t)b->cfg.max_connections,
    };
    ret = rmq_server_init(&b->srv, nl, &scfg);
    if (ret < 0) {
        goto fail_store;
    }
    b->srv_up = true;
    b->conns = calloc(b->srv.max_conns, sizeof(*b->conns));
    if (b->conns == NULL) {
        ret = -ENOMEM;
        goto fail_srv;
    }
    for (uint32_t i = 0; i < b->srv.max_conns; i++) {
        b->conns[i].gen = UINT32_MAX;
        rmq_list_init(&b->conns[i].parked);
    }
    snprintf(b->addr, sizeof(b->addr), "%s:%u", b->cfg.broker_ip1, b->srv.port);
    rmq_server_on_conn_close(&b->srv, conn_closed, b);
    rmq_broker__send_install(b);
    rmq_broker__pull_install(b);
    rmq_broker__clients_install(b);
    rmq_broker__admin_install(b);
    rmq_broker__delay_install(b);
    rmq_broker__keys_install(b);
    rmq_broker__ha_install(b);
    ret = rmq_broker__ha_init(b);
    if (ret < 0) {
        goto fail_srv;
    }

    if (b->cfg.standalone) {
        scfg = (struct rmq_server_config){
            .host = b->cfg.bind_address,
            .port = (uint16_t)b->cfg.ns.listen_port,
            .max_conns = 1024,
        };
        ret = rmq_server_init(&b->ns_srv, nl, &scfg);
        if (ret < 0) {
            goto fail_srv;
        }
        b->ns_srv_up = true;
        ret = rmq_namesrv_create(&b->ns, &b->ns_srv, &b->cfg.ns);
        if (ret < 0) {
            goto fail_srv;
        }
    }
    ret = rmq_broker__register_init(b);
    if (ret < 0) {
        goto fail_srv;
    }
    rmq_timer_arm(b->loop, &b->offsets_timer, (uint64_t)b->cfg.flush_offset_interval_ms * 1000000u,
                  offsets_fire);
    rmq_timer_arm(b->loop, &b->scan_timer, SCAN_INTERVAL_NS, scan_fire);
    rmq_timer_arm(b->loop, &b->register_timer, (uint64_t)b->cfg.register_interval_ms * 1000000u,
                  register_fire);
    rmq_broker__register_all(b);
    if (b->cfg.broker_role != RMQ_ROLE_SLAVE) {
        /* a slave's log is its master's copy: deliveries come from the master */
        rmq_broker__delay_start(b);
        rmq_broker__timer_start(b);
    }
    RMQ_INFO("broker: serving name=%s id=%lld cluster=%s addr=%s flushDiskType=%s%s",
             b->cfg.broker_name, (long long)b->cfg.broker_id, b->cfg.cluster, b->addr,
             b->cfg.store.flushDiskType ? "SYNC_FLUSH" : "ASYNC_FLUSH",
             b->cfg.standalone ? " standalone" : "");
    *out = b;
    return 0;

fail_srv:
    /* servers are up: the caller tears down through rmq_broker_stop, then destroy */
    b->stop_err = ret;
    *out = b;
    return ret;
fail_store:
    rmq_broker__keys_fini(b);
    rmq_broker__delay_fini(b);
    if (b->timer_store != NULL) {
        rmq_store_close_wait(b->timer_store, 10ull * 1000000000u);
    }
    rmq_broker__timer_fini(b);
    rmq_store_close_wait(b->store, 10ull * 1000000000u);
    rmq_store_destroy(b->store);
    rmq_disk_uring_destroy(b->disk);
fail_tables:
    rmq_offsets_fini(&b->offsets);
    rmq_topics_fini(&b->topics);
    rmq_jw_fini(&b->out);
    free(b);
    return ret;
}

uint16_t
rmq_broker_port(const struct rmq_broker *b)
{
    return b->srv.port;
}

uint16_t
rmq_broker_namesrv_port(const struct rmq_broker *b)
{
    return b->ns_srv_up ? b->ns_srv.port : 0;
}

static void stop_step(struct rmq_broker *b);

static void
stop_timer_fire(struct rmq_timer *t)
{
    stop_step(rmq_container_of(t, struct rmq_broker, stop_timer));
}

static void
stop_poll(struct rmq_broker *b)
{
    rmq_timer_arm(b->loop, &b->stop_timer, STOP_POLL_NS, stop_timer_fire);
}

static void
store_closed(struct rmq_store *s, void *arg)
{
    struct rmq_broker *b = arg;

    if (rmq_store_error(s) < 0 && b->stop_err == 0) {
        b->stop_err = -EIO;
    }
    if (s == b->store && b->timer_store != NULL) {
        rmq_store_close(b->timer_store, store_closed, b);   /* then the timer log */
        return;
    }
    b->stop_stage = 6;
    stop_step(b);
}

static void
server_stopped(struct rmq_server *srv)
{
    (void)srv;
}

static void
stop_step(struct rmq_broker *b)
{
    uint64_t waited = b->loop->now_ns - b->stop_started_ns;
    int ret;

    switch (b->stop_stage) {
    case 1:     /* appends in flight get their answers */
        if (b->sends_in_flight > 0 && waited < STOP_SEND_WAIT_NS) {
            stop_poll(b);
            return;
        }
        if (b->sends_in_flight > 0) {
            RMQ_WARN("broker: stopping with %u sends unanswered after 5 s", b->sends_in_flight);
        }
        b->stop_stage = 2;
        b->stop_started_ns = b->loop->now_ns;
        rmq_broker__unregister_all(b);
        /* fall through */
    case 2:
        if (!rmq_broker__register_idle(b) && waited < STOP_UNREGISTER_WAIT_NS) {
            stop_poll(b);
            return;
        }
        rmq_broker__register_stop(b);
        rmq_broker__ha_stop(b);
        b->stop_stage = 3;
        if (b->srv_up) {
            rmq_server_stop(&b->srv);
        }
        if (b->ns != NULL) {
            rmq_namesrv_stop(b->ns);
        }
        if (b->ns_srv_up) {
            rmq_server_stop(&b->ns_srv);
        }
        /* fall through */
    case 3:     /* connections closed: every pull response's pins are back */
        if ((b->srv_up && !rmq_server_is_stopped(&b->srv)) || (b->ns_srv_up && !rmq_server_is_stopped(&b->ns_srv)) ||
            !rmq_broker__register_stopped(b) || b->pulls_in_flight > 0 ||
            !rmq_broker__ha_idle(b)) {
            stop_poll(b);
            return;
        }
        b->stop_stage = 4;
        ret = rmq_offsets_persist(&b->offsets);
        if (ret < 0) {
            RMQ_ERROR("broker: consumer offsets not persisted at stop err=%s", strerror(-ret));
            b->stop_err = ret;
        }
        ret = rmq_broker__delay_persist(b);
        if (ret < 0) {
            RMQ_ERROR("broker: delayOffset.json not written at stop err=%s", strerror(-ret));
            b->stop_err = ret;
        }
        rmq_store_close(b->store, store_closed, b);
        return;
    case 6:
        RMQ_INFO("broker: stopped%s", b->stop_err ? " with errors" : "");
        b->stop_stage = 7;
        if (b->stop_done != NULL) {
            b->stop_done(b->stop_arg, b->stop_err);
        }
        return;
    default:
        return;
    }
}

void
rmq_broker_stop(struct rmq_broker *b, void (*done)(void *arg, int err), void *arg)
{
    if (b->stopping) {
        return;
    }
    b->stopping = true;
    b->stop_done = done;
    b->stop_arg = arg;
    b->stop_started_ns = b->loop->now_ns;
    b->srv.on_stopped = server_stopped;
    rmq_timer_cancel(b->loop, &b->register_timer);
    rmq_timer_cancel(b->loop, &b->offsets_timer);
    rmq_timer_cancel(b->loop, &b->scan_timer);
    if (rmq_link_is_linked(&b->register_soon.link)) {
        rmq_list_del(&b->register_soon.link);
    }
    if (b->srv_up) {
        rmq_server_stop_accepting(&b->srv);
    }
    rmq_broker__delay_stop(b);
    rmq_broker__timer_stop(b);
    rmq_broker__pull_release_all(b);
    if (b->store == NULL) {
        b->stop_stage = 6;
    } else {
        b->stop_stage = 1;
    }
    stop_step(b);
}

void
rmq_broker_destroy(struct rmq_broker *b)
{
    if (b == NULL) {
        return;
    }
    rmq_timer_cancel(b->loop, &b->stop_timer);
    rmq_broker__register_fini(b);
    rmq_broker__clients_fini(b);
    rmq_broker__pull_fini(b);
    rmq_broker__send_fini(b);
    rmq_broker__delay_fini(b);
    rmq_broker__timer_fini(b);
    rmq_broker__keys_fini(b);
    rmq_broker__ha_fini(b);
    if (b->ns != NULL) {
        rmq_namesrv_destroy(b->ns);
    }
    if (b->ns_srv_up) {
        rmq_server_fini(&b->ns_srv);
    }
    if (b->srv_up) {
        rmq_server_fini(&b->srv);
    }
    rmq_store_destroy(b->store);
    if (b->disk != NULL) {
        rmq_disk_uring_destroy(b->disk);
    }
    rmq_offsets_fini(&b->offsets);
    rmq_topics_fini(&b->topics);
    rmq_strmap_fini(&b->consumers);
    rmq_strmap_fini(&b->producers);
    rmq_strmap_fini(&b->locks);
    rmq_strmap_fini(&b->parked);
    rmq_jw_fini(&b->out);
    free(b->conns);
    free(b);
}
