/*
 * One client instance: its loop (driven by the owner thread inside every call),
 * connections by address, requests with deadlines, NameServer fail-over, routes,
 * heartbeats, and the thread's last error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/client_int.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/util.h"
#include "net/codes.h"

#define ROUTE_REFRESH_MS 30000
#define HEARTBEAT_MS 30000

static _Thread_local char last_error[768];
static _Thread_local int last_broker_code;
static _Thread_local int last_code;

const char *
rmq_error_name(int err)
{
    switch (err) {
    case RMQ_OK:
        return "ok";
    case RMQ_ERR_INVALID:
        return "invalid argument";
    case RMQ_ERR_TIMEOUT:
        return "timeout";
    case RMQ_ERR_NETWORK:
        return "network";
    case RMQ_ERR_NO_ROUTE:
        return "no route";
    case RMQ_ERR_BROKER:
        return "refused by broker";
    case RMQ_ERR_NOMEM:
        return "out of memory";
    case RMQ_ERR_STATE:
        return "wrong state";
    default:
        return "unknown error";
    }
}

const char *
rmq_last_error(void)
{
    return last_error;
}

int
rmq_last_broker_code(void)
{
    return last_broker_code;
}

int
rmq_cli__last_code(void)
{
    return last_code != 0 ? last_code : RMQ_ERR_NETWORK;
}

int
rmq_cli__fail(int err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(last_error, sizeof(last_error), fmt, ap);
    va_end(ap);
    last_code = err;
    if (err != RMQ_ERR_BROKER) {
        last_broker_code = 0;
    }
    return err;
}

int
rmq_cli__broker_fail(const struct rmq_cli_resp *r, const char *what)
{
    last_broker_code = r->code;
    return rmq_cli__fail(RMQ_ERR_BROKER, "%s: broker answered %d (%s): %s", what, r->code,
                         rmq_response_code_name(r->code), r->remark[0] ? r->remark : "no remark");
}

/* ---- set-up ------------------------------------------------------------------------------------ */

static void
detect_ip(uint8_t ip[4])
{
    struct ifaddrs *ifs, *i;

    ip[0] = 127;
    ip[1] = ip[2] = 0;
    ip[3] = 1;
    if (getifaddrs(&ifs) < 0) {
        return;
    }
    for (i = ifs; i != NULL; i = i->ifa_next) {
        if (i->ifa_addr != NULL && i->ifa_addr->sa_family == AF_INET) {
            const struct sockaddr_in *sa = (const struct sockaddr_in *)(const void *)i->ifa_addr;
            uint32_t a = ntohl(sa->sin_addr.s_addr);

            if ((a >> 24) != 127) {
                memcpy(ip, &sa->sin_addr.s_addr, 4);
                break;
            }
        }
    }
    freeifaddrs(ifs);
}

static int
parse_namesrv(struct rmq_cli *c, const char *list)
{
    char buf[1024];
    char *save = NULL;

    snprintf(buf, sizeof(buf), "%s", list);
    for (char *tok = strtok_r(buf, ";, ", &save); tok != NULL; tok = strtok_r(NULL, ";, ", &save)) {
        char host[RMQ_CLI_ADDR_MAX];
        uint16_t port;

        if (rmq_addr_split(tok, host, sizeof(host), &port) < 0 ||
            strlen(tok) >= RMQ_CLI_ADDR_MAX) {
            return rmq_cli__fail(RMQ_ERR_INVALID, "NameServer address '%s' is not host:port",
                                 tok);
        }
        if (c->namesrv_count == RMQ_CLI_NAMESRV_MAX) {
            return rmq_cli__fail(RMQ_ERR_INVALID, "more than %d NameServer addresses",
                                 RMQ_CLI_NAMESRV_MAX);
        }
        snprintf(c->namesrv[c->namesrv_count++], RMQ_CLI_ADDR_MAX, "%s", tok);
    }
    if (c->namesrv_count == 0) {
        return rmq_cli__fail(RMQ_ERR_INVALID, "no NameServer address in '%s'", list);
    }
    return 0;
}

static void route_fire(struct rmq_timer *t);
static void heartbeat_fire(struct rmq_timer *t);

int
rmq_cli__init(struct rmq_cli *c, const struct rmq_options *opts, const char *default_group)
{
    static const struct rmq_options none;
    struct rmq_loop_config lcfg = {.name = "ringmq", .sq_entries = 256};
    struct rmq_net_config ncfg = {
        .recv_buf_count = 128, .recv_buf_size = 64 * 1024,
        .tx_chunk_count = 512, .tx_chunk_size = 16 * 1024,
    };
    const char *ns;
    int ret;

    memset(c, 0, sizeof(*c));
    c->opts = opts != NULL ? *opts : none;
    c->opts.timeout_ms = c->opts.timeout_ms != 0 ? c->opts.timeout_ms : 3000;
    c->opts.retries = opts == NULL || opts->retries == 0 ? 2 : opts->retries;
    c->opts.compress_over = c->opts.compress_over != 0 ? c->opts.compress_over : 4096;
    c->opts.max_message_size =
        c->opts.max_message_size != 0 ? c->opts.max_message_size : 4u << 20;
    snprintf(c->group, sizeof(c->group), "%s",
             c->opts.group != NULL && c->opts.group[0] != '\0' ? c->opts.group : default_group);
    snprintf(c->instance, sizeof(c->instance), "%s",
             c->opts.instance_name != NULL ? c->opts.instance_name : "DEFAULT");
    c->opts.group = c->group;
    c->opts.instance_name = c->instance;
    c->ser = c->opts.json_headers ? RMQ_SER_JSON : RMQ_SER_ROCKETMQ;
    ns = c->opts.namesrv != NULL && c->opts.namesrv[0] != '\0' ? c->opts.namesrv
                                                               : getenv("NAMESRV_ADDR");
    ret = parse_namesrv(c, ns != NULL && ns[0] != '\0' ? ns : "127.0.0.1:9876");
    if (ret < 0) {
        return ret;
    }
    c->opts.namesrv = NULL;
    detect_ip(c->ip);
    {
        char ip[INET_ADDRSTRLEN];

        static _Atomic uint32_t handles;
        bool named = opts != NULL && opts->instance_name != NULL &&
                     strcmp(opts->instance_name, "DEFAULT") != 0;

        inet_ntop(AF_INET, c->ip, ip, sizeof(ip));
        /* unique per handle: two consumers of a group with one id would both take the same
         * queues and leave others to nobody (CLIENT.md §1) */
        if (named) {
            snprintf(c->client_id, sizeof(c->client_id), "%s@%d#%s", ip, (int)getpid(),
                     c->instance);
        } else {
            snprintf(c->client_id, sizeof(c->client_id), "%s@%d#%u", ip, (int)getpid(),
                     (unsigned)atomic_fetch_add(&handles, 1));
        }
    }
    c->owner = pthread_self();
    rmq_strmap_init(&c->conns);
    rmq_strmap_init(&c->routes);
    rmq_strmap_init(&c->brokers);
    rmq_strmap_init(&c->suggested);
    rmq_jw_init(&c->jw, RMQ_JSON_FASTJSON);
    c->async_mem = calloc(RMQ_CLI_ASYNC_MAX, sizeof(*c->async_mem));
    if (c->async_mem == NULL) {
        return rmq_cli__fail(RMQ_ERR_NOMEM, "out of memory creating a client");
    }
    for (uint32_t i = 0; i < RMQ_CLI_ASYNC_MAX; i++) {
        c->async_mem[i].next_free = c->async_free;
        c->async_free = &c->async_mem[i];
    }
    ret = rmq_loop_init(&c->loop, &lcfg);
    if (ret < 0) {
        free(c->async_mem);
        c->async_mem = NULL;
        return rmq_cli__fail(RMQ_ERR_STATE, "io_uring not available: %s", strerror(-ret));
    }
    ret = rmq_net_loop_init(&c->nl, &c->loop, &ncfg, 1);
    if (ret < 0) {
        rmq_loop_fini(&c->loop);
        free(c->async_mem);
        c->async_mem = NULL;
        return rmq_cli__fail(RMQ_ERR_NOMEM, "network buffers not set up: %s", strerror(-ret));
    }
    rmq_timer_arm(&c->loop, &c->route_timer, ROUTE_REFRESH_MS * 1000000ull, route_fire);
    rmq_timer_arm(&c->loop, &c->heartbeat_timer, HEARTBEAT_MS * 1000000ull, heartbeat_fire);
    return 0;
}

int
rmq_cli__check_thread(const struct rmq_cli *c)
{
    if (!pthread_equal(c->owner, pthread_self())) {
        return rmq_cli__fail(RMQ_ERR_STATE, "a ringmq handle is used from a thread other "
                             "than the one that created it");
    }
    return c->stopping ? rmq_cli__fail(RMQ_ERR_STATE, "the handle is stopping") : 0;
}

void
rmq_cli__run_once(struct rmq_cli *c, uint64_t timeout_ns)
{
    rmq_loop_run_once(&c->loop, timeout_ns);
}

static void
route_free(struct rmq_cli_route *r)
{
    if (r != NULL) {
        free(r->json);
        free(r->pub);
        free(r->sub);
        free(r);
    }
}

void
rmq_cli__fini(struct rmq_cli *c)
{
    uint32_t pos = 0;
    void *v;
    uint64_t end = rmq_clock_mono_ns() + 2000000000ull;
    bool busy = true;

    c->stopping = true;
    rmq_timer_cancel(&c->loop, &c->route_timer);
    rmq_timer_cancel(&c->loop, &c->heartbeat_timer);
    while ((v = rmq_strmap_next(&c->conns, &pos)) != NULL) {
        rmq_client_stop(&((struct rmq_cli_conn *)v)->cl);
    }
    /* the connections' closes complete on the loop; callers of pending calls are told */
    while (busy && rmq_clock_mono_ns() < end) {
        busy = false;
        pos = 0;
        while ((v = rmq_strmap_next(&c->conns, &pos)) != NULL) {
            busy |= ((struct rmq_cli_conn *)v)->cl.state != RMQ_CLIENT_STOPPED;
        }
        if (busy) {
            rmq_loop_run_once(&c->loop, 10000000);
        }
    }
    pos = 0;
    while ((v = rmq_strmap_next(&c->conns, &pos)) != NULL) {
        struct rmq_cli_conn *cc = v;

        if (cc->cl.state == RMQ_CLIENT_STOPPED) {
            rmq_client_fini(&cc->cl);
            free(cc);
        }
    }
    pos = 0;
    while ((v = rmq_strmap_next(&c->routes, &pos)) != NULL) {
        route_free(v);
    }
    pos = 0;
    while ((v = rmq_strmap_next(&c->brokers, &pos)) != NULL) {
        free(v);
    }
    pos = 0;
    while ((v = rmq_strmap_next(&c->suggested, &pos)) != NULL) {
        free(v);
    }
    rmq_strmap_fini(&c->suggested);
    rmq_strmap_fini(&c->conns);
    rmq_strmap_fini(&c->routes);
    rmq_strmap_fini(&c->brokers);
    rmq_net_loop_fini(&c->nl);
    rmq_loop_fini(&c->loop);
    rmq_jw_fini(&c->jw);
    free(c->resp.body);
    free(c->async_resp.body);
    free(c->async_mem);
}

/* ---- connections and calls -------------------------------------------------------------------- */

static void
conn_request(struct rmq_conn *conn, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    struct rmq_cli_conn *cc = ctx;
    struct rmq_cli *c = cc->owner;

    if (c->on_request != NULL) {
        c->on_request(conn, req, ref, c->owner_ctx);
    }
}

struct rmq_cli_conn *
rmq_cli__conn(struct rmq_cli *c, const char *addr)
{
    struct rmq_cli_conn *cc = rmq_strmap_get(&c->conns, addr);
    struct rmq_client_config cfg = {.connect_timeout_ms = c->opts.timeout_ms,
                                    .reconnect_max_ms = 3000};
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    char host[RMQ_CLI_ADDR_MAX];
    char ip[INET_ADDRSTRLEN];

    if (cc != NULL) {
        return cc;
    }
    if (rmq_addr_split(addr, host, sizeof(host), &cfg.port) < 0) {
        rmq_cli__fail(RMQ_ERR_INVALID, "address '%s' is not host:port", addr);
        return NULL;
    }
    /* names are resolved once, when the connection is made */
    if (getaddrinfo(host, NULL, &hints, &ai) != 0 || ai == NULL) {
        rmq_cli__fail(RMQ_ERR_NETWORK, "cannot resolve host '%s' of %s", host, addr);
        return NULL;
    }
    inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)ai->ai_addr)->sin_addr, ip,
              sizeof(ip));
    freeaddrinfo(ai);
    cc = calloc(1, sizeof(*cc));
    if (cc == NULL) {
        rmq_cli__fail(RMQ_ERR_NOMEM, "out of memory connecting to %s", addr);
        return NULL;
    }
    cc->owner = c;
    snprintf(cc->addr, sizeof(cc->addr), "%s", addr);
    cfg.host = ip;
    if (rmq_client_init(&cc->cl, &c->nl, &cfg) < 0 || rmq_strmap_put(&c->conns, cc->addr, cc) < 0) {
        free(cc);
        rmq_cli__fail(RMQ_ERR_NOMEM, "connection to %s not set up", addr);
        return NULL;
    }
    cc->cl.on_request = conn_request;
    cc->cl.on_request_ctx = cc;
    return cc;
}

uint64_t
rmq_cli__deadline(const struct rmq_cli *c)
{
    return rmq_clock_mono_ns() + (uint64_t)c->opts.timeout_ms * 1000000u;
}

/* Wait until cc is connected: 0, or RMQ_ERR_NETWORK when a connect attempt failed or
 * the deadline passed. */
static int
wait_connected(struct rmq_cli *c, struct rmq_cli_conn *cc, uint64_t deadline_ns)
{
    uint64_t failures = cc->cl.stats.connect_failures;

    /* the caller may not have driven the loop for a while: timeouts armed now must count
     * from now, not from its last iteration */
    rmq_loop_update_time(&c->loop);
    while (!rmq_client_is_connected(&cc->cl)) {
        uint64_t now = rmq_clock_mono_ns();

        if (cc->cl.stats.connect_failures != failures || now >= deadline_ns) {
            return rmq_cli__fail(RMQ_ERR_NETWORK, "cannot connect to %s%s", cc->addr,
                                 now >= deadline_ns ? " (timed out)" : " (refused or unreachable)");
        }
        rmq_loop_run_once(&c->loop, RMQ_MIN(deadline_ns - now, 50000000ull));
    }
    return 0;
}

static void
resp_copy(struct rmq_cli_resp *r, const struct rmq_frame *f)
{
    size_t used = 0;

    r->code = f->h.code;
    snprintf(r->remark, sizeof(r->remark), "%.*s", f->h.has_remark ? (int)f->h.remark.len : 0,
             f->h.has_remark ? f->h.remark.ptr : "");
    r->ext_count = 0;
    for (uint32_t i = 0; i < f->h.ext_count; i++) {
        const struct rmq_ext *e = &f->h.ext[i];

        if (used + e->key.len + e->val.len + 2 > sizeof(r->ext_buf)) {
            break;
        }
        r->ext_key[r->ext_count] = r->ext_buf + used;
        memcpy(r->ext_buf + used, e->key.ptr, e->key.len);
        used += e->key.len;
        r->ext_buf[used++] = '\0';
        r->ext_val[r->ext_count] = r->ext_buf + used;
        memcpy(r->ext_buf + used, e->val.ptr, e->val.len);
        used += e->val.len;
        r->ext_buf[used++] = '\0';
        r->ext_count++;
    }
    /* grown, never shrunk: a send's empty answer costs no allocation */
    if ((size_t)f->body_len + 1 > r->body_cap) {
        uint8_t *b = realloc(r->body, (size_t)f->body_len + 1);

        if (b == NULL) {
            r->body_len = 0;
            if (r->body != NULL) {
                r->body[0] = '\0';
            }
            return;
        }
        r->body = b;
        r->body_cap = (size_t)f->body_len + 1;
    }
    memcpy(r->body, f->body, f->body_len);
    r->body[f->body_len] = '\0';
    r->body_len = f->body_len;
}

uint8_t *
rmq_cli__resp_take(struct rmq_cli_resp *r)
{
    uint8_t *b = r->body;

    r->body = NULL;
    r->body_cap = 0;
    return b;
}

const char *
rmq_cli__ext(const struct rmq_cli_resp *r, const char *key)
{
    for (uint32_t i = 0; i < r->ext_count; i++) {
        if (strcmp(r->ext_key[i], key) == 0) {
            return r->ext_val[i];
        }
    }
    return NULL;
}

struct sync_call {
    struct rmq_call call;
    struct rmq_cli *c;
    bool done;
    int err;
};

static void
sync_done(struct rmq_call *call, int err, struct rmq_frame *resp)
{
    struct sync_call *sc = rmq_container_of(call, struct sync_call, call);

    sc->done = true;
    sc->err = err;
    if (err == 0) {
        resp_copy(&sc->c->resp, resp);
    }
}

static int
call_error(int err, const char *addr, int code)
{
    if (err == -ETIMEDOUT) {
        return rmq_cli__fail(RMQ_ERR_TIMEOUT, "request %d (%s) to %s timed out", code,
                             rmq_request_code_name(code), addr);
    }
    if (err == -ENOBUFS) {
        return rmq_cli__fail(RMQ_ERR_NOMEM, "request %d to %s: too many in flight", code, addr);
    }
    if (err == -EMSGSIZE) {
        return rmq_cli__fail(RMQ_ERR_INVALID, "request %d to %s is too large", code, addr);
    }
    return rmq_cli__fail(RMQ_ERR_NETWORK, "request %d (%s) to %s failed: %s", code,
                         rmq_request_code_name(code), addr, strerror(-err));
}

int
rmq_cli__call(struct rmq_cli *c, const char *addr, struct rmq_header *h, const void *body,
              uint32_t body_len, uint64_t deadline_ns)
{
    struct rmq_cli_conn *cc = rmq_cli__conn(c, addr);
    struct sync_call sc = {.c = c};
    uint64_t now;
    int ret;

    if (c->loop.in_iteration) {
        return rmq_cli__fail(RMQ_ERR_STATE, "a synchronous call from inside a callback of the "
                             "same handle (use the async or oneway form there)");
    }
    if (cc == NULL) {
        return rmq_cli__last_code();
    }
    ret = wait_connected(c, cc, deadline_ns);
    if (ret < 0) {
        return ret;
    }
    now = rmq_clock_mono_ns();
    sc.call.done = sync_done;
    ret = rmq_client_call(&cc->cl, &sc.call, h, body, body_len,
                          (uint32_t)RMQ_MAX((deadline_ns - RMQ_MIN(now, deadline_ns)) / 1000000u, 1u));
    if (ret < 0) {
        return call_error(ret, addr, h->code);
    }
    while (!sc.done) {
        rmq_loop_run_once(&c->loop, 100000000);
    }
    return sc.err < 0 ? call_error(sc.err, addr, h->code) : 0;
}

int
rmq_cli__call_namesrv(struct rmq_cli *c, struct rmq_header *h, uint64_t deadline_ns)
{
    int ret = RMQ_ERR_NETWORK;

    for (uint32_t i = 0; i < c->namesrv_count; i++) {
        const char *addr = c->namesrv[c->namesrv_next % c->namesrv_count];

        ret = rmq_cli__call(c, addr, h, NULL, 0, deadline_ns);
        if (ret == 0) {
            return 0;
        }
        c->namesrv_next++;
        if (rmq_clock_mono_ns() >= deadline_ns) {
            break;
        }
    }
    return ret;
}

static void
async_done(struct rmq_call *call, int err, struct rmq_frame *resp)
{
    struct rmq_cli_async *a = rmq_container_of(call, struct rmq_cli_async, call);
    struct rmq_cli *c = a->c;
    rmq_cli_async_fn fn = a->fn;
    void *arg = a->arg;

    a->next_free = c->async_free;
    c->async_free = a;
    c->async_in_flight--;
    if (err == 0) {
        resp_copy(&c->async_resp, resp);
        fn(c, arg, 0, &c->async_resp);
    } else {
        fn(c, arg, call_error(err, a->addr, 0), NULL);
    }
}

int
rmq_cli__call_async(struct rmq_cli *c, const char *addr, struct rmq_header *h, const void *body,
                    uint32_t body_len, uint32_t timeout_ms, rmq_cli_async_fn fn, void *arg)
{
    struct rmq_cli_conn *cc = rmq_cli__conn(c, addr);
    struct rmq_cli_async *a = c->async_free;
    int ret;

    if (cc == NULL) {
        return rmq_cli__last_code();
    }
    if (a == NULL) {
        return rmq_cli__fail(RMQ_ERR_NOMEM, "%d async requests already in flight",
                             RMQ_CLI_ASYNC_MAX);
    }
    if (!c->loop.in_iteration) {
        ret = wait_connected(c, cc, rmq_clock_mono_ns() + (uint64_t)timeout_ms * 1000000u);
        if (ret < 0) {
            return ret;
        }
    }
    a->c = c;
    a->addr = cc->addr;
    a->fn = fn;
    a->arg = arg;
    a->call.done = async_done;
    ret = rmq_client_call(&cc->cl, &a->call, h, body, body_len, timeout_ms);
    if (ret < 0) {
        return call_error(ret, addr, h->code);
    }
    c->async_free = a->next_free;
    c->async_in_flight++;
    return 0;
}

int
rmq_cli__oneway(struct rmq_cli *c, const char *addr, struct rmq_header *h, const void *body,
                uint32_t body_len)
{
    struct rmq_cli_conn *cc = rmq_cli__conn(c, addr);
    int ret;

    if (cc == NULL) {
        return rmq_cli__last_code();
    }
    if (!c->loop.in_iteration) {    /* inside the loop: never wait (a connect is started) */
        ret = wait_connected(c, cc, rmq_cli__deadline(c));
        if (ret < 0) {
            return ret;
        }
    }
    ret = rmq_client_oneway(&cc->cl, h, body, body_len);
    return ret < 0 ? call_error(ret, addr, h->code) : 0;
}

/* ---- routes ----------------------------------------------------------------------------------- */

struct rmq_cli_broker *
rmq_cli__broker(struct rmq_cli *c, const char *name)
{
    return rmq_strmap_get(&c->brokers, name);
}

const char *
rmq_cli__master(struct rmq_cli *c, const char *name)
{
    struct rmq_cli_broker *b = rmq_cli__broker(c, name);

    for (uint32_t i = 0; b != NULL && i < b->addr_count; i++) {
        if (b->ids[i] == 0) {
            return b->addrs[i];
        }
    }
    return NULL;
}

static int
cmp_queue(const void *a, const void *b)
{
    const struct rmq_queue *x = a, *y = b;
    int d = strcmp(x->broker_name, y->broker_name);

    return d != 0 ? d : (x->queue_id > y->queue_id) - (x->queue_id < y->queue_id);
}

static int
broker_learn(struct rmq_cli *c, const cJSON *bd)
{
    const char *name = rmq_json_get_str(bd, "brokerName");
    const char *cluster = rmq_json_get_str(bd, "cluster");
    const cJSON *addrs = cJSON_GetObjectItemCaseSensitive(bd, "brokerAddrs");
    struct rmq_cli_broker *b;
    const cJSON *a;

    if (name == NULL || strlen(name) >= sizeof(b->name) || !cJSON_IsObject(addrs)) {
        return RMQ_ERR_INVALID;
    }
    b = rmq_strmap_get(&c->brokers, name);
    if (b == NULL) {
        b = calloc(1, sizeof(*b));
        if (b == NULL) {
            return RMQ_ERR_NOMEM;
        }
        snprintf(b->name, sizeof(b->name), "%s", name);
        if (rmq_strmap_put(&c->brokers, b->name, b) < 0) {
            free(b);
            return RMQ_ERR_NOMEM;
        }
    }
    snprintf(b->cluster, sizeof(b->cluster), "%s", cluster != NULL ? cluster : "");
    b->addr_count = 0;
    cJSON_ArrayForEach(a, addrs) {
        if (b->addr_count < RMQ_CLI_BROKER_IDS && cJSON_IsString(a) &&
            strlen(a->valuestring) < RMQ_CLI_ADDR_MAX) {
            b->ids[b->addr_count] = strtoll(a->string, NULL, 10);
            snprintf(b->addrs[b->addr_count], RMQ_CLI_ADDR_MAX, "%s", a->valuestring);
            b->addr_count++;
        }
    }
    return 0;
}

int
rmq_cli__route_parse(struct rmq_cli *c, struct rmq_cli_route *r, const char *json, size_t len,
                     uint32_t default_queues)
{
    cJSON *root = rmq_json_parse(json, len);
    const cJSON *qds = root != NULL ? cJSON_GetObjectItemCaseSensitive(root, "queueDatas") : NULL;
    const cJSON *bds = root != NULL ? cJSON_GetObjectItemCaseSensitive(root, "brokerDatas") : NULL;
    const cJSON *qd, *bd;
    uint32_t pub = 0, sub = 0;
    int ret = 0;

    if (!cJSON_IsArray(qds) || !cJSON_IsArray(bds)) {
        cJSON_Delete(root);
        return rmq_cli__fail(RMQ_ERR_INVALID, "route of %s is not TopicRouteData", r->topic);
    }
    cJSON_ArrayForEach(bd, bds) {
        ret = broker_learn(c, bd);
        if (ret < 0) {
            cJSON_Delete(root);
            return rmq_cli__fail(ret, "route of %s: bad brokerDatas entry", r->topic);
        }
    }
    cJSON_ArrayForEach(qd, qds) {
        int64_t w = rmq_json_get_i64(qd, "writeQueueNums", 0);
        int64_t rd = rmq_json_get_i64(qd, "readQueueNums", 0);

        if (default_queues > 0) {
            w = RMQ_MIN(w, (int64_t)default_queues);
            rd = RMQ_MIN(rd, (int64_t)default_queues);
        }
        pub += (uint32_t)RMQ_MAX(RMQ_MIN(w, 1024), 0);
        sub += (uint32_t)RMQ_MAX(RMQ_MIN(rd, 1024), 0);
    }
    free(r->pub);
    free(r->sub);
    r->pub = calloc(pub + 1, sizeof(*r->pub));
    r->sub = calloc(sub + 1, sizeof(*r->sub));
    r->pub_count = r->sub_count = 0;
    if (r->pub == NULL || r->sub == NULL) {
        cJSON_Delete(root);
        return rmq_cli__fail(RMQ_ERR_NOMEM, "out of memory reading the route of %s", r->topic);
    }
    cJSON_ArrayForEach(qd, qds) {
        const char *name = rmq_json_get_str(qd, "brokerName");
        int64_t perm = rmq_json_get_i64(qd, "perm", 6);
        int64_t w = RMQ_MIN(rmq_json_get_i64(qd, "writeQueueNums", 0), 1024);
        int64_t rd = RMQ_MIN(rmq_json_get_i64(qd, "readQueueNums", 0), 1024);

        if (name == NULL || strlen(name) >= sizeof(r->pub->broker_name)) {
            continue;
        }
        if (default_queues > 0) {
            w = RMQ_MIN(w, (int64_t)default_queues);
            rd = RMQ_MIN(rd, (int64_t)default_queues);
        }
        for (int64_t i = 0; (perm & 2) && rmq_cli__master(c, name) != NULL && i < w; i++) {
            struct rmq_queue *q = &r->pub[r->pub_count++];

            snprintf(q->topic, sizeof(q->topic), "%s", r->topic);
            snprintf(q->broker_name, sizeof(q->broker_name), "%s", name);
            q->queue_id = (int32_t)i;
        }
        for (int64_t i = 0; (perm & 4) && i < rd; i++) {
            struct rmq_queue *q = &r->sub[r->sub_count++];

            snprintf(q->topic, sizeof(q->topic), "%s", r->topic);
            snprintf(q->broker_name, sizeof(q->broker_name), "%s", name);
            q->queue_id = (int32_t)i;
        }
    }
    qsort(r->pub, r->pub_count, sizeof(*r->pub), cmp_queue);
    qsort(r->sub, r->sub_count, sizeof(*r->sub), cmp_queue);
    cJSON_Delete(root);
    return 0;
}

/* Ask a NameServer for topic's route into r. 0, RMQ_ERR_NO_ROUTE or a transport error. */
static int
route_fetch(struct rmq_cli *c, struct rmq_cli_route *r, const char *topic, uint32_t def_queues)
{
    struct rmq_header h;
    int ret;

    rmq_header_init(&h, RMQ_REQ_GET_ROUTEINFO_BY_TOPIC, c->ser);
    rmq_header_add(&h, "topic", topic);
    ret = rmq_cli__call_namesrv(c, &h, rmq_cli__deadline(c));
    if (ret < 0) {
        return ret;
    }
    if (c->resp.code == RMQ_RESP_TOPIC_NOT_EXIST) {
        return rmq_cli__fail(RMQ_ERR_NO_ROUTE, "topic %s has no route on the NameServer "
                             "(not created, or no broker holds it)", topic);
    }
    if (c->resp.code != RMQ_RESP_SUCCESS) {
        return rmq_cli__broker_fail(&c->resp, "route lookup");
    }
    if (r->json != NULL && strcmp(r->json, (const char *)c->resp.body) == 0 &&
        !r->via_default) {
        r->fetched_ms = rmq_clock_wall_ms();
        return 0;                   /* unchanged: keep it (and its counter) as it is */
    }
    ret = rmq_cli__route_parse(c, r, (const char *)c->resp.body, c->resp.body_len, def_queues);
    if (ret < 0) {
        return ret;
    }
    free(r->json);
    r->json = strdup((const char *)c->resp.body);
    r->fetched_ms = rmq_clock_wall_ms();
    return 0;
}

struct rmq_cli_route *
rmq_cli__route(struct rmq_cli *c, const char *topic, bool allow_default)
{
    struct rmq_cli_route *r = rmq_strmap_get(&c->routes, topic);
    int ret;

    if (r != NULL && (r->pub_count > 0 || r->sub_count > 0)) {
        return r;
    }
    if (r == NULL) {
        r = calloc(1, sizeof(*r));
        if (r == NULL) {
            rmq_cli__fail(RMQ_ERR_NOMEM, "out of memory");
            return NULL;
        }
        snprintf(r->topic, sizeof(r->topic), "%s", topic);
        r->counter = (uint32_t)rand();
        if (rmq_strmap_put(&c->routes, r->topic, r) < 0) {
            free(r);
            rmq_cli__fail(RMQ_ERR_NOMEM, "out of memory");
            return NULL;
        }
    }
    ret = route_fetch(c, r, topic, 0);
    if (ret == RMQ_ERR_NO_ROUTE && allow_default) {
        /* the brokers of TBW102 create the topic on the first send (CLIENT.md §3) */
        ret = route_fetch(c, r, RMQ_CLI_DEFAULT_TOPIC, 4);
        for (uint32_t i = 0; ret == 0 && i < r->pub_count; i++) {
            snprintf(r->pub[i].topic, sizeof(r->pub[i].topic), "%s", topic);
        }
        r->via_default = ret == 0;
        if (ret < 0) {
            rmq_cli__fail(RMQ_ERR_NO_ROUTE, "topic %s has no route and no broker allows "
                          "creating it (no route of %s)", topic, RMQ_CLI_DEFAULT_TOPIC);
        }
    }
    if (ret < 0) {
        return NULL;
    }
    if (r->pub_count == 0 && r->sub_count == 0) {
        rmq_cli__fail(RMQ_ERR_NO_ROUTE, "topic %s has no queues in its route", topic);
        return NULL;
    }
    return r;
}

static void
refresh_done(struct rmq_cli *c, void *arg, int err, struct rmq_cli_resp *resp)
{
    struct rmq_cli_route *r = rmq_strmap_get(&c->routes, (const char *)arg);

    free(arg);
    /* a failure or an unknown topic keeps the route it had */
    if (err < 0 || r == NULL || resp->code != RMQ_RESP_SUCCESS ||
        (r->json != NULL && strcmp(r->json, (const char *)resp->body) == 0)) {
        return;
    }
    if (rmq_cli__route_parse(c, r, (const char *)resp->body, resp->body_len, 0) == 0) {
        free(r->json);
        r->json = strdup((const char *)resp->body);
        r->via_default = false;
        r->fetched_ms = rmq_clock_wall_ms();
    }
}

/* Every 30 s, without waiting: each topic's route again from the next NameServer. */
static void
route_fire(struct rmq_timer *t)
{
    struct rmq_cli *c = rmq_container_of(t, struct rmq_cli, route_timer);
    uint32_t pos = 0;
    void *v;

    while ((v = rmq_strmap_next(&c->routes, &pos)) != NULL) {
        struct rmq_cli_route *r = v;
        struct rmq_header h;
        char *topic = strdup(r->topic);

        rmq_header_init(&h, RMQ_REQ_GET_ROUTEINFO_BY_TOPIC, c->ser);
        rmq_header_add(&h, "topic", r->topic);
        if (topic == NULL ||
            rmq_cli__call_async(c, c->namesrv[c->namesrv_next++ % c->namesrv_count], &h, NULL,
                                0, c->opts.timeout_ms, refresh_done, topic) < 0) {
            free(topic);
        }
    }
    if (!c->stopping) {
        rmq_timer_arm(&c->loop, &c->route_timer, ROUTE_REFRESH_MS * 1000000ull, route_fire);
    }
}

/* ---- heartbeats -------------------------------------------------------------------------------- */

void
rmq_cli__heartbeat_consumer(struct rmq_cli *c, struct rmq_jw *w, const char *consume_type,
                            const char *model, const char *from_where,
                            void (*subs)(struct rmq_jw *w, void *arg), void *arg)
{
    rmq_jw_obj_begin(w);
    rmq_jw_key(w, "clientID");
    rmq_jw_str(w, c->client_id);
    rmq_jw_key(w, "producerDataSet");
    rmq_jw_arr_begin(w);
    rmq_jw_arr_end(w);
    rmq_jw_key(w, "consumerDataSet");
    rmq_jw_arr_begin(w);
    rmq_jw_obj_begin(w);
    rmq_jw_key(w, "groupName");
    rmq_jw_str(w, c->group);
    rmq_jw_key(w, "consumeType");
    rmq_jw_str(w, consume_type);
    rmq_jw_key(w, "messageModel");
    rmq_jw_str(w, model);
    rmq_jw_key(w, "consumeFromWhere");
    rmq_jw_str(w, from_where);
    rmq_jw_key(w, "subscriptionDataSet");
    rmq_jw_arr_begin(w);
    if (subs != NULL) {
        subs(w, arg);
    }
    rmq_jw_arr_end(w);
    rmq_jw_key(w, "unitMode");
    rmq_jw_bool(w, false);
    rmq_jw_obj_end(w);
    rmq_jw_arr_end(w);
    rmq_jw_obj_end(w);
}

void
rmq_cli__heartbeat_all(struct rmq_cli *c)
{
    uint32_t pos = 0;
    const char *text;
    size_t len;
    void *v;

    if (c->heartbeat_body == NULL) {
        return;
    }
    rmq_jw_reset(&c->jw, RMQ_JSON_FASTJSON);
    c->heartbeat_body(c, &c->jw);
    if (rmq_jw_finish(&c->jw, &text, &len) < 0) {
        return;
    }
    while ((v = rmq_strmap_next(&c->brokers, &pos)) != NULL) {
        struct rmq_cli_broker *b = v;

        for (uint32_t i = 0; i < b->addr_count; i++) {
            struct rmq_header h;

            rmq_header_init(&h, RMQ_REQ_HEART_BEAT, c->ser);
            /* answered, but nothing in the answer matters: not waited for */
            rmq_cli__oneway(c, b->addrs[i], &h, text, (uint32_t)len);
        }
    }
}

static void
heartbeat_fire(struct rmq_timer *t)
{
    struct rmq_cli *c = rmq_container_of(t, struct rmq_cli, heartbeat_timer);

    rmq_cli__heartbeat_all(c);
    if (!c->stopping) {
        rmq_timer_arm(&c->loop, &c->heartbeat_timer, HEARTBEAT_MS * 1000000ull, heartbeat_fire);
    }
}

void
rmq_cli__unregister(struct rmq_cli *c, const char *producer_group, const char *consumer_group)
{
    uint32_t pos = 0;
    void *v;

    while ((v = rmq_strmap_next(&c->brokers, &pos)) != NULL) {
        struct rmq_cli_broker *b = v;

        for (uint32_t i = 0; i < b->addr_count; i++) {
            struct rmq_header h;

            if (rmq_strmap_get(&c->conns, b->addrs[i]) == NULL) {
                continue;           /* never talked to it */
            }
            rmq_header_init(&h, RMQ_REQ_UNREGISTER_CLIENT, c->ser);
            rmq_header_add(&h, "clientID", c->client_id);
            if (producer_group != NULL) {
                rmq_header_add(&h, "producerGroup", producer_group);
            }
            if (consumer_group != NULL) {
                rmq_header_add(&h, "consumerGroup", consumer_group);
            }
            rmq_cli__call(c, b->addrs[i], &h, NULL, 0,
                          rmq_clock_mono_ns() + RMQ_MIN(c->opts.timeout_ms, 1000u) * 1000000ull);
        }
    }
}

/* ---- per-queue requests --------------------------------------------------------------------- */

/* The address serving q (its master, else any of its set), learning routes as needed. */
const char *
rmq_cli__queue_addr(struct rmq_cli *c, const struct rmq_queue *q)
{
    struct rmq_cli_broker *b = rmq_cli__broker(c, q->broker_name);
    const char *addr;

    if (b == NULL && rmq_cli__route(c, q->topic, false) == NULL) {
        return NULL;
    }
    addr = rmq_cli__master(c, q->broker_name);
    b = rmq_cli__broker(c, q->broker_name);
    if (addr == NULL && b != NULL && b->addr_count > 0) {
        addr = b->addrs[0];
    }
    if (addr == NULL) {
        rmq_cli__fail(RMQ_ERR_NO_ROUTE, "no address of broker %s (queue %d of %s)",
                      q->broker_name, (int)q->queue_id, q->topic);
    }
    return addr;
}

struct rmq_cli_suggest {
    int64_t broker_id;
    char key[];
};

static void
suggest_key(const struct rmq_queue *q, char *out, size_t cap)
{
    snprintf(out, cap, "%s@%s@%d", q->broker_name, q->topic, (int)q->queue_id);
}

void
rmq_cli__suggest(struct rmq_cli *c, const struct rmq_queue *q, int64_t broker_id)
{
    char key[RMQ_CLI_ADDR_MAX + 320];
    struct rmq_cli_suggest *e;
    size_t len;

    suggest_key(q, key, sizeof(key));
    e = rmq_strmap_get(&c->suggested, key);
    if (e != NULL || broker_id == 0) {
        if (e != NULL) {
            e->broker_id = broker_id;   /* kept at 0 rather than freed: it comes back */
        }
        return;
    }
    len = strlen(key);
    e = malloc(sizeof(*e) + len + 1);
    if (e == NULL) {
        return;                         /* the master serves it: only slower */
    }
    e->broker_id = broker_id;
    memcpy(e->key, key, len + 1);
    if (rmq_strmap_put(&c->suggested, e->key, e) < 0) {
        free(e);
    }
}

/* A pull's address: the suggested broker id of q's set (CLIENT.md §7, the Java rule). */
static const char *
pull_addr(struct rmq_cli *c, const struct rmq_queue *q)
{
    char key[RMQ_CLI_ADDR_MAX + 320];
    const struct rmq_cli_suggest *e;
    const struct rmq_cli_broker *b;

    suggest_key(q, key, sizeof(key));
    e = rmq_strmap_get(&c->suggested, key);
    b = e != NULL && e->broker_id != 0 ? rmq_cli__broker(c, q->broker_name) : NULL;
    for (int64_t want = e != NULL ? e->broker_id : 0; b != NULL && want <= e->broker_id + 1;
         want++) {
        for (uint32_t i = 0; i < b->addr_count; i++) {
            if (b->ids[i] == want) {
                return b->addrs[i];
            }
        }
    }
    return rmq_cli__queue_addr(c, q);
}

const char *
rmq_cli__queue_request(struct rmq_cli *c, const struct rmq_queue *q, int code, const char *group,
                       struct rmq_header *h)
{
    const char *addr = code == RMQ_REQ_PULL_MESSAGE ? pull_addr(c, q) : rmq_cli__queue_addr(c, q);

    if (addr != NULL) {
        rmq_header_init(h, code, c->ser);
        if (group != NULL) {
            rmq_header_add(h, "consumerGroup", group);
        }
        rmq_header_add(h, "topic", q->topic);
        rmq_header_add_i64(h, "queueId", q->queue_id);
    }
    return addr;
}

/* One request about q answered with an "offset" field. */
int
rmq_cli__queue_offset(struct rmq_cli *c, const struct rmq_queue *q, int code, const char *group,
                      int64_t ts_ms, int64_t *offset)
{
    struct rmq_header h;
    const char *addr;
    const char *v;
    int ret = rmq_cli__check_thread(c);

    if (ret < 0) {
        return ret;
    }
    addr = rmq_cli__queue_request(c, q, code, group, &h);
    if (addr == NULL) {
        return rmq_cli__last_code();
    }
    if (code == RMQ_REQ_SEARCH_OFFSET_BY_TIMESTAMP) {
        rmq_header_add_i64(&h, "timestamp", ts_ms);
    }
    ret = rmq_cli__call(c, addr, &h, NULL, 0, rmq_cli__deadline(c));
    if (ret < 0) {
        return ret;
    }
    if (code == RMQ_REQ_QUERY_CONSUMER_OFFSET && c->resp.code == RMQ_RESP_QUERY_NOT_FOUND) {
        *offset = -1;
        return 0;
    }
    if (c->resp.code != RMQ_RESP_SUCCESS) {
        return rmq_cli__broker_fail(&c->resp, rmq_request_code_name(code));
    }
    v = rmq_cli__ext(&c->resp, "offset");
    *offset = v != NULL ? strtoll(v, NULL, 10) : -1;
    return 0;
}

