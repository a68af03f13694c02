/*
 * Registration with every NameServer (spec/REMOTING.md §11.1-11.2): REGISTER_BROKER
 * every registerBrokerInterval and soon after a topic change, to each address in
 * namesrvAddr (or $NAMESRV_ADDR), plus the embedded one in standalone mode.
 * UNREGISTER_BROKER at graceful stop. Each NameServer has its own client connection
 * (net/client.h: reconnects with backoff), and a registration still pending when the
 * next is due is not doubled up.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker_int.h"
#include "core/crc32.h"
#include "core/log.h"
#include "core/util.h"

#define CALL_TIMEOUT_MS 6000

static void register_peer(struct rmq_broker *b, struct rmq_namesrv_peer *p);

/* A (re)connected NameServer gets our registration at once, not at the next interval. */
static void
peer_state(struct rmq_client *cl)
{
    struct rmq_namesrv_peer *p = rmq_container_of(cl, struct rmq_namesrv_peer, client);

    if (rmq_client_is_connected(cl) && !p->b->stopping) {
        register_peer(p->b, p);
    } else if (!rmq_client_is_connected(cl)) {
        p->registered = false;
    }
}

static int
peer_add(struct rmq_broker *b, const char *addr, size_t len)
{
    struct rmq_namesrv_peer *p;
    struct rmq_client_config cc = {0};
    char host[64];
    int ret;

    if (len == 0) {
        return 0;
    }
    if (b->peer_count == RMQ_BROKER_NAMESRV_MAX || len >= sizeof(p->addr)) {
        RMQ_ERROR("broker: namesrvAddr entry '%.*s' refused: at most %d addresses of host:port",
                  (int)RMQ_MIN(len, 80u), addr, RMQ_BROKER_NAMESRV_MAX);
        return -EINVAL;
    }
    p = &b->peers[b->peer_count];
    memcpy(p->addr, addr, len);
    p->addr[len] = '\0';
    if (rmq_addr_split(p->addr, host, sizeof(host), &cc.port) < 0) {
        RMQ_ERROR("broker: namesrvAddr entry '%s' is not host:port", p->addr);
        return -EINVAL;
    }
    cc.host = host;
    cc.reconnect_max_ms = 3000;
    ret = rmq_client_init(&p->client, b->nl, &cc);
    if (ret < 0) {
        RMQ_ERROR("broker: NameServer %s not usable err=%s (an IPv4 address is needed)", p->addr,
                  strerror(-ret));
        return ret;
    }
    p->b = b;
    p->client.on_state = peer_state;
    p->initialized = true;
    b->peer_count++;
    return 0;
}

int
rmq_broker__register_init(struct rmq_broker *b)
{
    const char *list = b->cfg.namesrv_addr;
    char own[32];
    int ret;

    if (list[0] == '\0' && getenv("NAMESRV_ADDR") != NULL) {
        list = getenv("NAMESRV_ADDR");
    }
    while (*list != '\0') {
        const char *end = strchr(list, ';');
        size_t len = end != NULL ? (size_t)(end - list) : strlen(list);

        ret = peer_add(b, list, len);
        if (ret < 0) {
            return ret;
        }
        list += len + (end != NULL);
    }
    if (b->cfg.standalone) {
        snprintf(own, sizeof(own), "127.0.0.1:%u", b->ns_srv.port);
        ret = peer_add(b, own, strlen(own));
        if (ret < 0) {
            return ret;
        }
    }
    if (b->peer_count == 0) {
        RMQ_WARN("broker: no NameServer configured (namesrvAddr, NAMESRV_ADDR or --standalone): "
                 "clients can only reach this broker by its address");
    }
    return 0;
}

static void
register_done(struct rmq_call *call, int err, struct rmq_frame *resp)
{
    struct rmq_namesrv_peer *p = rmq_container_of(call, struct rmq_namesrv_peer, call);
    struct rmq_broker *b = p->b;

    p->call_pending = false;
    if (err == 0 && resp->h.code == RMQ_RESP_SUCCESS) {
        if (!p->registered) {
            RMQ_INFO("broker: registered with NameServer %s", p->addr);
        }
        p->registered = true;
        b->stats.registrations++;
        rmq_broker__ha_registered(b, resp);
        if (p->again && !b->stopping) {
            register_peer(b, p);
        }
        return;
    }
    b->stats.registration_failures++;
    p->registered = false;
    RMQ_LOG_RL(RMQ_LOG_WARN, 30000, "broker: registration with NameServer %s failed: %s%.*s",
               p->addr, err ? strerror(-err) : rmq_response_code_name(resp->h.code),
               err ? 0 : (int)resp->h.remark.len, err ? "" : resp->h.remark.ptr);
}

static void
header_common(struct rmq_broker *b, struct rmq_header *h, int code, char *ha, size_t halen,
              char *id)
{
    rmq_header_init(h, code, RMQ_SER_JSON);
    h->version = 401;
    rmq_broker__ha_addr(b, ha, halen);
    snprintf(id, 24, "%lld", (long long)b->cfg.broker_id);
    rmq_header_add(h, "brokerAddr", b->addr);
    rmq_header_add(h, "brokerName", b->cfg.broker_name);
    rmq_header_add(h, "clusterName", b->cfg.cluster);
    rmq_header_add(h, "brokerId", id);
}

static void
register_peer(struct rmq_broker *b, struct rmq_namesrv_peer *p)
{
    struct rmq_header h;
    char ha[96];
    char id[24];
    const char *body;
    size_t len;
    int ret;

    if (p->call_pending) {
        p->again = true;            /* the answer sends this newer table */
        return;
    }
    if (!rmq_client_is_connected(&p->client)) {
        return;                     /* connecting: peer_state registers once connected */
    }
    p->again = false;
    rmq_jw_reset(&b->out, RMQ_JSON_FASTJSON);
    rmq_jw_obj_begin(&b->out);
    rmq_jw_key(&b->out, "filterServerList");
    rmq_jw_arr_begin(&b->out);
    rmq_jw_arr_end(&b->out);
    rmq_jw_key(&b->out, "topicConfigSerializeWrapper");
    rmq_topics_write_wrapper(&b->topics, &b->out);
    rmq_jw_obj_end(&b->out);
    ret = rmq_jw_finish(&b->out, &body, &len);
    if (ret < 0 || len > UINT32_MAX) {
        RMQ_ERROR("broker: registration body not encoded err=%s", strerror(ret < 0 ? -ret : E2BIG));
        return;
    }
    header_common(b, &h, RMQ_REQ_REGISTER_BROKER, ha, sizeof(ha), id);
    rmq_header_add(&h, "haServerAddr", ha);
    rmq_header_add(&h, "compressed", "false");
    rmq_header_add_i64(&h, "bodyCrc32", (int64_t)rmq_crc32_masked(body, len));
    p->call.done = register_done;
    ret = rmq_client_call(&p->client, &p->call, &h, body, (uint32_t)len, CALL_TIMEOUT_MS);
    if (ret == 0) {
        p->call_pending = true;
    } else {
        b->stats.registration_failures++;
        RMQ_LOG_RL(RMQ_LOG_WARN, 30000, "broker: registration with NameServer %s not sent "
                   "err=%s, retrying in %lld ms", p->addr, strerror(-ret),
                   (long long)b->cfg.register_interval_ms);
    }
}

void
rmq_broker__register_all(struct rmq_broker *b)
{
    for (uint32_t i = 0; i < b->peer_count; i++) {
        register_peer(b, &b->peers[i]);
    }
}

static void
unregister_done(struct rmq_call *call, int err, struct rmq_frame *resp)
{
    struct rmq_namesrv_peer *p = rmq_container_of(call, struct rmq_namesrv_peer, call);

    (void)resp;
    p->call_pending = false;
    if (err == 0) {
        RMQ_INFO("broker: unregistered from NameServer %s", p->addr);
    }
}

void
rmq_broker__unregister_all(struct rmq_broker *b)
{
    struct rmq_header h;
    char ha[96];
    char id[24];

    for (uint32_t i = 0; i < b->peer_count; i++) {
        struct rmq_namesrv_peer *p = &b->peers[i];

        if (p->call_pending || !rmq_client_is_connected(&p->client)) {
            continue;
        }
        header_common(b, &h, RMQ_REQ_UNREGISTER_BROKER, ha, sizeof(ha), id);
        p->call.done = unregister_done;
        if (rmq_client_call(&p->client, &p->call, &h, NULL, 0, 2000) == 0) {
            p->call_pending = true;
        }
    }
}

bool
rmq_broker__register_idle(const struct rmq_broker *b)
{
    for (uint32_t i = 0; i < b->peer_count; i++) {
        if (b->peers[i].call_pending) {
            return false;
        }
    }
    return true;
}

void
rmq_broker__register_stop(struct rmq_broker *b)
{
    for (uint32_t i = 0; i < b->peer_count; i++) {
        rmq_client_stop(&b->peers[i].client);
    }
}

bool
rmq_broker__register_stopped(const struct rmq_broker *b)
{
    for (uint32_t i = 0; i < b->peer_count; i++) {
        if (b->peers[i].client.state != RMQ_CLIENT_STOPPED) {
            return false;
        }
    }
    return true;
}

void
rmq_broker__register_fini(struct rmq_broker *b)
{
    for (uint32_t i = 0; i < b->peer_count; i++) {
        if (b->peers[i].initialized) {
            rmq_client_fini(&b->peers[i].client);
        }
    }
    b->peer_count = 0;
}
