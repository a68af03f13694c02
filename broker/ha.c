/*
 * The broker's side of replication (spec/HA.md): a master runs the HA master on
 * listenPort + 1 and answers the metadata requests slaves make; a slave runs the HA
 * slave (the master's HA address from haMasterAddress or its NameServer registration)
 * and copies the master's topics, consumer offsets and delay offsets every
 * slaveMetadataSyncInterval over the remoting port.
 *
 * Offsets a consumer commits on the slave (while its master is down) are not simply
 * overwritten by the next copy, as in the reference: each is kept until the master
 * holds it or a larger one, and sent to the master at every copy meanwhile, so a
 * consumer that drained the slave does not read everything again when the master
 * returns.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker_int.h"
#include "core/file.h"
#include "core/log.h"
#include "core/util.h"

#define SYNC_FIRST_NS (3000ull * 1000 * 1000)
#define SYNC_CALL_TIMEOUT_MS 3000

enum { SYNC_TOPICS, SYNC_OFFSETS, SYNC_DELAY, SYNC_DONE };

static void sync_next(struct rmq_broker *b);
static void sync_fire(struct rmq_timer *t);

/* ---- master: what slaves ask for ---------------------------------------------------------- */

static void
h_all_offsets(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref,
              void *ctx)
{
    struct rmq_broker *b = ctx;

    (void)ref;
    rmq_jw_reset(&b->out, RMQ_JSON_FASTJSON);
    rmq_offsets_write(&b->offsets, &b->out);
    rmq_broker__reply_json(b, c, &req->h, NULL);
}

static void
h_all_delay(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    struct rmq_broker *b = ctx;

    (void)ref;
    rmq_jw_reset(&b->out, RMQ_JSON_FASTJSON);
    rmq_broker__delay_write(b, &b->out);
    rmq_broker__reply_json(b, c, &req->h, NULL);
}

/* ringmq keeps no subscription group table: an empty one, so slaves find nothing to copy */
static void
h_all_groups(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    struct rmq_broker *b = ctx;

    (void)ref;
    rmq_jw_reset(&b->out, RMQ_JSON_FASTJSON);
    rmq_jw_obj_begin(&b->out);
    rmq_jw_key(&b->out, "dataVersion");
    rmq_jw_data_version(&b->out, &b->topics.version);
    rmq_jw_key(&b->out, "subscriptionGroupTable");
    rmq_jw_obj_begin(&b->out);
    rmq_jw_obj_end(&b->out);
    rmq_jw_obj_end(&b->out);
    rmq_broker__reply_json(b, c, &req->h, NULL);
}

void
rmq_broker__ha_install(struct rmq_broker *b)
{
    rmq_server_handle(&b->srv, RMQ_REQ_GET_ALL_CONSUMER_OFFSET, h_all_offsets, b);
    rmq_server_handle(&b->srv, RMQ_REQ_GET_ALL_DELAY_OFFSET, h_all_delay, b);
    rmq_server_handle(&b->srv, RMQ_REQ_GET_ALL_SUBSCRIPTIONGROUP_CONFIG, h_all_groups, b);
}

/* ---- slave: copies of the master's metadata ------------------------------------------------- */

static void
take_masters(void *ctx, const char *key, int32_t queue_id, int64_t offset)
{
    struct rmq_broker *b = ctx;
    int64_t mine = rmq_offsets_get_key(&b->slave_local, key, queue_id);

    if (mine != RMQ_OFFSET_NONE && mine > offset) {
        return;                     /* committed here while the master was away: ours wins */
    }
    if (mine != RMQ_OFFSET_NONE) {
        rmq_offsets_set_key(&b->slave_local, key, queue_id, RMQ_OFFSET_NONE);
    }
    rmq_offsets_set_key(&b->offsets, key, queue_id, offset);
}

static void
push_mine(void *ctx, const char *key, int32_t queue_id, int64_t offset)
{
    struct rmq_broker *b = ctx;
    const char *at = strchr(key, '@');
    char topic[RMQ_TOPIC_NAME_MAX + 1];
    struct rmq_header h;

    if (at == NULL || (size_t)(at - key) > RMQ_TOPIC_NAME_MAX || !b->master_client_up ||
        !rmq_client_is_connected(&b->master_client)) {
        return;
    }
    memcpy(topic, key, (size_t)(at - key));
    topic[at - key] = '\0';
    rmq_header_init(&h, RMQ_REQ_UPDATE_CONSUMER_OFFSET, RMQ_SER_JSON);
    rmq_header_add(&h, "consumerGroup", at + 1);
    rmq_header_add(&h, "topic", topic);
    rmq_header_add_i64(&h, "queueId", queue_id);
    rmq_header_add_i64(&h, "commitOffset", offset);
    if (rmq_client_oneway(&b->master_client, &h, NULL, 0) == 0) {
        b->stats.slave_offsets_pushed++;
    }
}

void
rmq_broker__ha_slave_commit(struct rmq_broker *b, const char *topic, const char *group,
                            int32_t queue_id, int64_t offset)
{
    char key[RMQ_TOPIC_NAME_MAX + 1 + RMQ_GROUP_NAME_MAX + 1];

    if (b->cfg.broker_role != RMQ_ROLE_SLAVE ||
        snprintf(key, sizeof(key), "%s@%s", topic, group) >= (int)sizeof(key)) {
        return;
    }
    rmq_offsets_set_key(&b->slave_local, key, queue_id, offset);
}

static void
sync_arm(struct rmq_broker *b, uint64_t ns)
{
    if (!b->stopping) {
        rmq_timer_arm(b->loop, &b->sync_timer, ns, sync_fire);
    }
}

static void
sync_failed(struct rmq_broker *b, const char *what, const char *why)
{
    b->stats.slave_sync_failures++;
    RMQ_LOG_RL(RMQ_LOG_WARN, 60000, "broker: copying %s from master %s failed: %s; retrying "
               "in %lld ms", what, b->master_addr, why, (long long)b->cfg.slave_sync_ms);
    b->sync_step = SYNC_DONE;
    sync_arm(b, (uint64_t)b->cfg.slave_sync_ms * 1000000u);
}

static void
sync_done(struct rmq_call *call, int err, struct rmq_frame *resp)
{
    struct rmq_broker *b = rmq_container_of(call, struct rmq_broker, sync_call);
    static const char *const what[] = {"topics", "consumer offsets", "delay offsets"};
    const char *body = resp != NULL ? (const char *)resp->body : NULL;
    size_t len = resp != NULL ? resp->body_len : 0;
    char why[300];
    int ret = 0;

    b->sync_pending = false;
    if (b->stopping) {
        return;
    }
    if (err != 0 || resp->h.code != RMQ_RESP_SUCCESS) {
        snprintf(why, sizeof(why), "%s", err ? strerror(-err) : rmq_response_code_name(resp->h.code));
        sync_failed(b, what[b->sync_step], why);
        return;
    }
    switch (b->sync_step) {
    case SYNC_TOPICS: {
        bool changed = false;

        ret = rmq_topics_replace(&b->topics, body, len, &changed, why, sizeof(why));
        if (ret == 0 && changed) {
            RMQ_INFO("broker: topics copied from master %s (dataVersion %lld)", b->master_addr,
                     (long long)b->topics.version.counter);
            rmq_broker__topics_changed(b);
        }
        break;
    }
    case SYNC_OFFSETS: {
        struct rmq_offsets masters;

        ret = rmq_offsets_parse(&masters, body, len, why, sizeof(why));
        if (ret == 0) {
            rmq_offsets_each(&masters, take_masters, b);
            rmq_offsets_each(&b->slave_local, push_mine, b);
            rmq_offsets_fini(&masters);
        }
        break;
    }
    case SYNC_DELAY: {
        char path[RMQ_STORE_PATH_MAX + 64];

        snprintf(path, sizeof(path), "%s/config/delayOffset.json",
                 b->cfg.store.storePathRootDir);
        ret = rmq_file_replace(path, body, len);
        if (ret < 0) {
            snprintf(why, sizeof(why), "writing delayOffset.json: %s", strerror(-ret));
        }
        break;
    }
    default:
        return;
    }
    if (ret < 0) {
        sync_failed(b, what[b->sync_step], why);
        return;
    }
    b->sync_step++;
    sync_next(b);
}

static void
sync_next(struct rmq_broker *b)
{
    static const int codes[] = {RMQ_REQ_GET_ALL_TOPIC_CONFIG, RMQ_REQ_GET_ALL_CONSUMER_OFFSET,
                                RMQ_REQ_GET_ALL_DELAY_OFFSET};
    struct rmq_header h;
    int ret;

    if (b->sync_step == SYNC_DONE) {
        b->stats.slave_syncs++;
        sync_arm(b, (uint64_t)b->cfg.slave_sync_ms * 1000000u);
        return;
    }
    rmq_header_init(&h, codes[b->sync_step], RMQ_SER_JSON);
    b->sync_call.done = sync_done;
    ret = rmq_client_call(&b->master_client, &b->sync_call, &h, NULL, 0, SYNC_CALL_TIMEOUT_MS);
    if (ret < 0) {
        sync_failed(b, "metadata", strerror(-ret));
        return;
    }
    b->sync_pending = true;
}

static void
sync_fire(struct rmq_timer *t)
{
    struct rmq_broker *b = rmq_container_of(t, struct rmq_broker, sync_timer);

    if (b->stopping || b->sync_pending) {
        return;
    }
    if (b->master_client_up && b->master_client.state == RMQ_CLIENT_STOPPED) {
        rmq_client_fini(&b->master_client);     /* the master moved: a new client below */
        b->master_client_up = false;
    }
    if (!b->master_client_up && b->master_addr[0] != '\0') {
        struct rmq_client_config cc = {0};
        char host[64];

        if (rmq_addr_split(b->master_addr, host, sizeof(host), &cc.port) == 0) {
            cc.host = host;
            if (rmq_client_init(&b->master_client, b->nl, &cc) == 0) {
                b->master_client_up = true;
            }
        }
    }
    if (!b->master_client_up || !rmq_client_is_connected(&b->master_client)) {
        sync_arm(b, 500ull * 1000000u);         /* connecting (or no master known yet) */
        return;
    }
    b->sync_step = SYNC_TOPICS;
    sync_next(b);
}

/* ---- set-up, registration, stop ------------------------------------------------------------ */

void
rmq_broker__ha_addr(const struct rmq_broker *b, char *out, size_t len)
{
    snprintf(out, len, "%s:%u", b->cfg.broker_ip2[0] ? b->cfg.broker_ip2 : b->cfg.broker_ip1,
             (unsigned)b->ha_port);
}

int
rmq_broker__ha_init(struct rmq_broker *b)
{
    struct rmq_ha_config hc = {
        .bind_addr = b->cfg.bind_address,
        .port = b->cfg.listen_port == 0 ? 0 : (uint16_t)(b->srv.port + 1),
        .batch_size = (uint32_t)b->cfg.ha_batch_size,
        .heartbeat_ms = (uint32_t)b->cfg.ha_heartbeat_ms,
        .housekeeping_ms = (uint32_t)b->cfg.ha_housekeeping_ms,
        .retry_ms = 5000,
        .max_gap = (uint64_t)b->cfg.ha_max_gap,
    };
    char err[128];
    int ret;

    if (b->cfg.broker_role != RMQ_ROLE_SLAVE) {
        ret = rmq_ha_master_create(&b->ha_master, b->loop, b->store, &hc);
        if (ret < 0) {
            RMQ_ERROR("broker: HA port %u not opened err=%s (it is always listenPort + 1)",
                      hc.port, strerror(-ret));
            return ret;
        }
        b->ha_port = rmq_ha_master_port(b->ha_master);
        return 0;
    }
    b->ha_port = b->cfg.listen_port == 0 ? 0 : (uint16_t)(b->srv.port + 1);
    ret = rmq_offsets_init(&b->slave_local, NULL, err, sizeof(err));
    if (ret < 0) {
        return ret;
    }
    b->slave_local_up = true;
    ret = rmq_ha_slave_create(&b->ha_slave, b->loop, b->store, &hc);
    if (ret < 0) {
        return ret;
    }
    if (b->cfg.ha_master_address[0] != '\0') {
        rmq_ha_slave_set_master(b->ha_slave, b->cfg.ha_master_address);
    }
    rmq_timer_arm(b->loop, &b->sync_timer, SYNC_FIRST_NS, sync_fire);
    RMQ_INFO("broker: slave of %s (brokerId %lld)%s", b->cfg.broker_name,
             (long long)b->cfg.broker_id,
             b->cfg.ha_master_address[0] ? "" : ", master learnt from the NameServer");
    return 0;
}

void
rmq_broker__ha_registered(struct rmq_broker *b, const struct rmq_frame *resp)
{
    char ha[96] = "";
    char master[80] = "";

    if (b->ha_slave == NULL) {
        return;
    }
    /* a NameServer that does not know the master leaves both out: keep what we have
     * (another NameServer may know it; the connection itself tells when it is gone) */
    rmq_field_str(resp, "haServerAddr", ha, sizeof(ha));
    rmq_field_str(resp, "masterAddr", master, sizeof(master));
    if (b->cfg.ha_master_address[0] == '\0' && ha[0] != '\0') {
        rmq_ha_slave_set_master(b->ha_slave, ha);
    }
    if (master[0] != '\0' && strcmp(master, b->master_addr) != 0) {
        RMQ_INFO("broker: master is %s (was %s)", master[0] ? master : "none",
                 b->master_addr[0] ? b->master_addr : "none");
        snprintf(b->master_addr, sizeof(b->master_addr), "%s", master);
        if (b->master_client_up && b->master_client.state != RMQ_CLIENT_STOPPED) {
            rmq_client_stop(&b->master_client);  /* sync_fire makes the new one */
        }
    }
}

int
rmq_broker__ha_wait(struct rmq_broker *b, struct rmq_ha_wait *w, const struct rmq_record *rec)
{
    if (b->ha_master == NULL || b->cfg.broker_role != RMQ_ROLE_SYNC_MASTER) {
        return 1;
    }
    return rmq_ha_master_wait(b->ha_master, w, (uint64_t)rec->phys_off + rec->total_size,
                              (uint32_t)b->cfg.store.syncFlushTimeout);
}

const char *
rmq_broker__ha_unusable(const struct rmq_broker *b)
{
    return b->ha_slave != NULL ? rmq_ha_slave_diverged(b->ha_slave) : NULL;
}

static void
ha_stopped(void *arg)
{
    struct rmq_broker *b = arg;

    b->ha_stopped = true;
}

void
rmq_broker__ha_stop(struct rmq_broker *b)
{
    rmq_timer_cancel(b->loop, &b->sync_timer);
    if (b->master_client_up && b->master_client.state != RMQ_CLIENT_STOPPED) {
        rmq_client_stop(&b->master_client);
    }
    if (b->ha_master != NULL) {
        rmq_ha_master_stop(b->ha_master, ha_stopped, b);
    } else if (b->ha_slave != NULL) {
        rmq_ha_slave_stop(b->ha_slave, ha_stopped, b);
    } else {
        b->ha_stopped = true;
    }
}

bool
rmq_broker__ha_idle(const struct rmq_broker *b)
{
    return b->ha_stopped &&
           (!b->master_client_up || b->master_client.state == RMQ_CLIENT_STOPPED);
}

void
rmq_broker__ha_fini(struct rmq_broker *b)
{
    if (b->master_client_up) {
        rmq_client_fini(&b->master_client);
        b->master_client_up = false;
    }
    rmq_ha_master_destroy(b->ha_master);
    rmq_ha_slave_destroy(b->ha_slave);
    b->ha_master = NULL;
    b->ha_slave = NULL;
    if (b->slave_local_up) {
        rmq_offsets_fini(&b->slave_local);
        b->slave_local_up = false;
    }
}
