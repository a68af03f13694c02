/*
 * Route table; see routeinfo.h. Owns every string it keeps (copied from requests),
 * so nothing here borrows from a frame. Each table is a core/strmap keyed by a name
 * stored inside its value.
 *
 * Per topic, QueueData live in a small array searched by broker name: a topic is
 * hosted by a handful of broker names, so the scan is shorter than a hash probe. The
 * one O(topics) path is removing a broker name everywhere (expiry, unregister,
 * connection loss), as in the reference; it runs rarely and never per request.
 */
#include "namesrv/routeinfo.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

struct rmq_ri_queue {
    char *broker_name;              /* owned */
    int32_t read_queue_nums;
    int32_t write_queue_nums;
    int32_t perm;
    int32_t topic_sys_flag;
};

struct rmq_ri_topic {
    struct rmq_ri_queue *queues;    /* owned: queue_count used of queue_cap */
    uint32_t queue_count;
    uint32_t queue_cap;
    char name[];
};

struct rmq_ri_addr {
    int64_t id;
    char *addr;                     /* owned */
};

struct rmq_ri_broker {
    char *cluster;                  /* owned */
    struct rmq_ri_addr *addrs;      /* owned: sorted by id, addr_count of addr_cap */
    uint32_t addr_count;
    uint32_t addr_cap;
    char name[];
};

struct rmq_ri_cluster {
    const char **broker_names;      /* owned array; names borrowed from struct rmq_ri_broker */
    uint32_t count;
    uint32_t cap;
    char name[];
};

struct rmq_ri_live {
    uint64_t last_update_ms;
    struct rmq_data_version data_version;
    uint64_t conn_tag;
    char *ha_server_addr;           /* owned */
    char **filter_servers;          /* owned, each owned */
    uint32_t filter_server_count;
    char addr[];
};

/* ---- small helpers ------------------------------------------------------------------- */

static void *
alloc_named(size_t base, const char *name, size_t off)
{
    size_t len = strlen(name);
    char *p = calloc(1, base + len + 1);

    if (p != NULL) {
        memcpy(p + off, name, len + 1);
    }
    return p;
}

/* Grow *arr (of elem bytes) to hold need entries; 0 or -ENOMEM. */
static int
grow(void **arr, uint32_t *cap, uint32_t need, size_t elem)
{
    uint32_t n = *cap ? *cap : 4;
    void *p;

    if (need <= *cap) {
        return 0;
    }
    while (n < need) {
        n *= 2;
    }
    p = realloc(*arr, (size_t)n * elem);
    if (p == NULL) {
        return -ENOMEM;
    }
    *arr = p;
    *cap = n;
    return 0;
}

static bool
name_ok(const char *s, size_t max)
{
    size_t len = 0;

    if (s == NULL) {
        return false;
    }
    for (; s[len] != '\0'; len++) {
        if ((unsigned char)s[len] < 0x20 || len >= max) {
            return false;
        }
    }
    return len > 0;
}

static void
topic_free(struct rmq_ri_topic *t)
{
    for (uint32_t i = 0; i < t->queue_count; i++) {
        free(t->queues[i].broker_name);
    }
    free(t->queues);
    free(t);
}

static void
broker_free(struct rmq_ri_broker *b)
{
    for (uint32_t i = 0; i < b->addr_count; i++) {
        free(b->addrs[i].addr);
    }
    free(b->addrs);
    free(b->cluster);
    free(b);
}

static void
live_free(struct rmq_ri_live *l)
{
    for (uint32_t i = 0; i < l->filter_server_count; i++) {
        free(l->filter_servers[i]);
    }
    free(l->filter_servers);
    free(l->ha_server_addr);
    free(l);
}

/* Free a live entry already taken out of rt->live. */
static void
live_drop(struct rmq_routeinfo *rt, struct rmq_ri_live *l)
{
    if (l->filter_server_count > 0) {
        rt->filter_live_count--;
    }
    live_free(l);
}

static void
cluster_free(struct rmq_ri_cluster *c)
{
    free(c->broker_names);
    free(c);
}

void
rmq_routeinfo_init(struct rmq_routeinfo *rt)
{
    rt->max_topics = RMQ_NAMESRV_TOPICS_MAX;
    rt->max_brokers = RMQ_NAMESRV_BROKERS_MAX;
    rt->filter_live_count = 0;
    rmq_strmap_init(&rt->topics);
    rmq_strmap_init(&rt->brokers);
    rmq_strmap_init(&rt->clusters);
    rmq_strmap_init(&rt->live);
}

void
rmq_routeinfo_fini(struct rmq_routeinfo *rt)
{
    void *v;

    for (uint32_t i = 0; (v = rmq_strmap_next(&rt->topics, &i)) != NULL;) {
        topic_free(v);
    }
    for (uint32_t i = 0; (v = rmq_strmap_next(&rt->clusters, &i)) != NULL;) {
        cluster_free(v);
    }
    for (uint32_t i = 0; (v = rmq_strmap_next(&rt->brokers, &i)) != NULL;) {
        broker_free(v);
    }
    for (uint32_t i = 0; (v = rmq_strmap_next(&rt->live, &i)) != NULL;) {
        live_free(v);
    }
    rmq_strmap_fini(&rt->topics);
    rmq_strmap_fini(&rt->brokers);
    rmq_strmap_fini(&rt->clusters);
    rmq_strmap_fini(&rt->live);
}

/* ---- removal ------------------------------------------------------------------------- */

static void
cluster_remove_name(struct rmq_routeinfo *rt, const char *cluster, const char *broker_name)
{
    struct rmq_ri_cluster *c = rmq_strmap_get(&rt->clusters, cluster);

    if (c == NULL) {
        return;
    }
    for (uint32_t i = 0; i < c->count; i++) {
        if (strcmp(c->broker_names[i], broker_name) == 0) {
            c->broker_names[i] = c->broker_names[--c->count];
            break;
        }
    }
    if (c->count == 0) {
        rmq_strmap_del(&rt->clusters, c->name);
        cluster_free(c);
    }
}

static bool
topic_remove_broker(struct rmq_ri_topic *t, const char *broker_name)
{
    for (uint32_t i = 0; i < t->queue_count; i++) {
        if (strcmp(t->queues[i].broker_name, broker_name) == 0) {
            free(t->queues[i].broker_name);
            t->queues[i] = t->queues[--t->queue_count];
            return true;
        }
    }
    return false;
}

/* The broker name is gone: drop it from its cluster and its QueueData from every topic. */
static void
broker_remove(struct rmq_routeinfo *rt, struct rmq_ri_broker *b)
{
    struct rmq_ri_topic *t;

    rmq_strmap_del(&rt->brokers, b->name);
    cluster_remove_name(rt, b->cluster, b->name);
    for (uint32_t i = 0; (t = rmq_strmap_next(&rt->topics, &i)) != NULL;) {
        if (topic_remove_broker(t, b->name) && t->queue_count == 0) {
            rmq_strmap_del(&rt->topics, t->name);
            topic_free(t);
        }
    }
    broker_free(b);
}

static void
broker_remove_at(struct rmq_ri_broker *b, uint32_t i)
{
    free(b->addrs[i].addr);
    memmove(&b->addrs[i], &b->addrs[i + 1], (b->addr_count - i - 1) * sizeof(b->addrs[0]));
    b->addr_count--;
}

/* Forget addr everywhere (reference: onChannelDestroy). Slaves of a removed master stay. */
static void
addr_remove(struct rmq_routeinfo *rt, const char *addr)
{
    struct rmq_ri_broker *b;
    struct rmq_ri_live *l;

    for (uint32_t i = 0; (b = rmq_strmap_next(&rt->brokers, &i)) != NULL;) {
        for (uint32_t k = 0; k < b->addr_count;) {
            if (strcmp(b->addrs[k].addr, addr) == 0) {
                broker_remove_at(b, k);
            } else {
                k++;
            }
        }
        if (b->addr_count == 0) {
            broker_remove(rt, b);
        }
    }
    l = rmq_strmap_del(&rt->live, addr);   /* last: addr may point into it */
    if (l != NULL) {
        live_drop(rt, l);
    }
}

void
rmq_routeinfo_unregister(struct rmq_routeinfo *rt, const char *cluster, const char *broker_name,
                         const char *broker_addr, int64_t broker_id)
{
    struct rmq_ri_live *l = rmq_strmap_del(&rt->live, broker_addr);
    struct rmq_ri_broker *b = rmq_strmap_get(&rt->brokers, broker_name);

    (void)cluster;                  /* the BrokerData knows its cluster */
    if (l != NULL) {
        live_drop(rt, l);
    }
    if (b == NULL) {
        return;
    }
    for (uint32_t i = 0; i < b->addr_count; i++) {
        /* only when the id still maps to this address: a newer owner of the id stays */
        if (b->addrs[i].id == broker_id && strcmp(b->addrs[i].addr, broker_addr) == 0) {
            broker_remove_at(b, i);
            break;
        }
    }
    if (b->addr_count == 0) {
        broker_remove(rt, b);
    }
}

uint32_t
rmq_routeinfo_conn_closed(struct rmq_routeinfo *rt, uint64_t conn_tag)
{
    struct rmq_ri_live *l;
    uint32_t n = 0;

    if (conn_tag == 0) {
        return 0;
    }
    for (uint32_t i = 0; (l = rmq_strmap_next(&rt->live, &i)) != NULL;) {
        if (l->conn_tag == conn_tag) {
            addr_remove(rt, l->addr);       /* frees l; the slot becomes a tombstone */
            n++;
        }
    }
    return n;
}

uint32_t
rmq_routeinfo_expire(struct rmq_routeinfo *rt, uint64_t now_ms, uint64_t expire_ms,
                     struct rmq_routeinfo_expired *out, uint32_t cap)
{
    struct rmq_ri_live *l;
    uint32_t n = 0;

    for (uint32_t i = 0; (l = rmq_strmap_next(&rt->live, &i)) != NULL;) {
        if (l->last_update_ms + expire_ms < now_ms) {
            if (n < cap) {
                out[n].conn_tag = l->conn_tag;
                snprintf(out[n].broker_addr, sizeof(out[n].broker_addr), "%s", l->addr);
            }
            n++;
            addr_remove(rt, l->addr);
        }
    }
    return n;
}

/* ---- registration -------------------------------------------------------------------- */

int
rmq_routeinfo_validate(const struct rmq_register_req *req, const char **why)
{
    if (!name_ok(req->cluster, RMQ_NAMESRV_NAME_MAX)) {
        *why = "clusterName empty, too long or with control characters";
        return -EINVAL;
    }
    if (!name_ok(req->broker_name, RMQ_NAMESRV_NAME_MAX)) {
        *why = "brokerName empty, too long or with control characters";
        return -EINVAL;
    }
    if (!name_ok(req->broker_addr, RMQ_NAMESRV_ADDR_MAX)) {
        *why = "brokerAddr empty, too long or with control characters";
        return -EINVAL;
    }
    if (req->ha_server_addr == NULL ||
        (req->ha_server_addr[0] != '\0' && !name_ok(req->ha_server_addr, RMQ_NAMESRV_ADDR_MAX))) {
        *why = "haServerAddr missing, too long or with control characters";
        return -EINVAL;
    }
    if (req->broker_id < 0 || req->broker_id > INT32_MAX) {
        *why = "brokerId out of range";
        return -EINVAL;
    }
    if (req->filter_server_count > RMQ_NAMESRV_FILTER_SERVERS_MAX) {
        *why = "too many filter servers";
        return -EINVAL;
    }
    for (uint32_t i = 0; i < req->filter_server_count; i++) {
        if (!name_ok(req->filter_servers[i], RMQ_NAMESRV_ADDR_MAX)) {
            *why = "filter server address empty or too long";
            return -EINVAL;
        }
    }
    for (uint32_t i = 0; i < req->topic_count; i++) {
        const struct rmq_topic_queue_conf *q = &req->topics[i];

        if (!name_ok(q->topic, RMQ_NAMESRV_NAME_MAX)) {
            *why = "topic name empty, too long or with control characters";
            return -EINVAL;
        }
        if (q->read_queue_nums < 0 || q->read_queue_nums > RMQ_NAMESRV_QUEUE_NUMS_MAX ||
            q->write_queue_nums < 0 || q->write_queue_nums > RMQ_NAMESRV_QUEUE_NUMS_MAX) {
            *why = "readQueueNums/writeQueueNums out of range 0..16384";
            return -EINVAL;
        }
        if (q->perm < 0 || q->perm > RMQ_NAMESRV_PERM_MAX) {
            *why = "perm out of range 0..15";
            return -EINVAL;
        }
        if (q->topic_sys_flag < 0) {
            *why = "topicSysFlag negative";
            return -EINVAL;
        }
    }
    return 0;
}

static int
cluster_add_name(struct rmq_routeinfo *rt, const char *cluster, const char *broker_name)
{
    struct rmq_ri_cluster *c = rmq_strmap_get(&rt->clusters, cluster);
    int ret;

    if (c == NULL) {
        c = alloc_named(sizeof(*c), cluster, offsetof(struct rmq_ri_cluster, name));
        if (c == NULL) {
            return -ENOMEM;
        }
        ret = rmq_strmap_put(&rt->clusters, c->name, c);
        if (ret < 0) {
            cluster_free(c);
            return ret;
        }
    }
    for (uint32_t i = 0; i < c->count; i++) {
        if (strcmp(c->broker_names[i], broker_name) == 0) {
            return 0;
        }
    }
    ret = grow((void **)&c->broker_names, &c->cap, c->count + 1, sizeof(c->broker_names[0]));
    if (ret < 0) {
        return ret;
    }
    c->broker_names[c->count++] = broker_name;
    return 0;
}

/* The BrokerData for req, created (and listed by its cluster) when new. */
static int
broker_get_or_add(struct rmq_routeinfo *rt, const struct rmq_register_req *req,
                  struct rmq_ri_broker **out, bool *created)
{
    struct rmq_ri_broker *b = rmq_strmap_get(&rt->brokers, req->broker_name);
    int ret;

    *created = false;
    if (b == NULL) {
        b = alloc_named(sizeof(*b), req->broker_name, offsetof(struct rmq_ri_broker, name));
        if (b == NULL) {
            return -ENOMEM;
        }
        b->cluster = strdup(req->cluster);
        if (b->cluster == NULL || rmq_strmap_put(&rt->brokers, b->name, b) < 0) {
            broker_free(b);
            return -ENOMEM;
        }
        *created = true;
    } else if (strcmp(b->cluster, req->cluster) != 0) {
        /* moved to another cluster: keep "listed by exactly its own cluster" */
        char *cluster = strdup(req->cluster);

        if (cluster == NULL) {
            return -ENOMEM;
        }
        cluster_remove_name(rt, b->cluster, b->name);
        free(b->cluster);
        b->cluster = cluster;
    }
    ret = cluster_add_name(rt, b->cluster, b->name);
    if (ret < 0) {
        if (b->addr_count == 0) {
            broker_remove(rt, b);
        }
        return ret;
    }
    *out = b;
    return 0;
}

/* brokerId -> addr; drops the address from another id first. *was_new: id had no address. */
static int
broker_put_addr(struct rmq_ri_broker *b, int64_t id, const char *addr, bool *was_new)
{
    uint32_t i;
    char *copy;

    for (i = 0; i < b->addr_count;) {
        if (b->addrs[i].id != id && strcmp(b->addrs[i].addr, addr) == 0) {
            broker_remove_at(b, i);     /* e.g. a slave promoted to master */
        } else {
            i++;
        }
    }
    for (i = 0; i < b->addr_count && b->addrs[i].id < id; i++) {
    }
    *was_new = i == b->addr_count || b->addrs[i].id != id;
    if (!*was_new && strcmp(b->addrs[i].addr, addr) == 0) {
        return 0;
    }
    if (*was_new && b->addr_count >= RMQ_NAMESRV_BROKER_IDS_MAX) {
        return -ENOSPC;
    }
    copy = strdup(addr);
    if (copy == NULL) {
        return -ENOMEM;
    }
    if (!*was_new) {
        free(b->addrs[i].addr);
        b->addrs[i].addr = copy;
        return 0;
    }
    if (grow((void **)&b->addrs, &b->addr_cap, b->addr_count + 1, sizeof(b->addrs[0])) < 0) {
        free(copy);
        return -ENOMEM;
    }
    memmove(&b->addrs[i + 1], &b->addrs[i], (b->addr_count - i) * sizeof(b->addrs[0]));
    b->addrs[i].id = id;
    b->addrs[i].addr = copy;
    b->addr_count++;
    return 0;
}

static int
topic_put_queue(struct rmq_routeinfo *rt, const char *broker_name,
                const struct rmq_topic_queue_conf *qc)
{
    struct rmq_ri_topic *t = rmq_strmap_get(&rt->topics, qc->topic);
    struct rmq_ri_queue *q = NULL;

    if (t == NULL) {
        t = alloc_named(sizeof(*t), qc->topic, offsetof(struct rmq_ri_topic, name));
        if (t == NULL) {
            return -ENOMEM;
        }
        if (rmq_strmap_put(&rt->topics, t->name, t) < 0) {
            topic_free(t);
            return -ENOMEM;
        }
    }
    for (uint32_t i = 0; i < t->queue_count; i++) {
        if (strcmp(t->queues[i].broker_name, broker_name) == 0) {
            q = &t->queues[i];
            break;
        }
    }
    if (q == NULL) {
        char *name = strdup(broker_name);

        if (name == NULL ||
            grow((void **)&t->queues, &t->queue_cap, t->queue_count + 1, sizeof(*q)) < 0) {
            free(name);
            if (t->queue_count == 0) {
                rmq_strmap_del(&rt->topics, t->name);
                topic_free(t);
            }
            return -ENOMEM;
        }
        q = &t->queues[t->queue_count++];
        q->broker_name = name;
    }
    q->read_queue_nums = qc->read_queue_nums;
    q->write_queue_nums = qc->write_queue_nums;
    q->perm = qc->perm;
    q->topic_sys_flag = qc->topic_sys_flag;
    return 0;
}

static int
live_update(struct rmq_routeinfo *rt, const struct rmq_register_req *req, uint64_t now_ms)
{
    struct rmq_ri_live *l = rmq_strmap_get(&rt->live, req->broker_addr);
    char *ha = strdup(req->ha_server_addr);
    char **filters = NULL;
    uint32_t nf = 0;

    if (ha == NULL) {
        return -ENOMEM;
    }
    if (req->filter_server_count > 0) {
        filters = calloc(req->filter_server_count, sizeof(*filters));
        if (filters == NULL) {
            goto out_nomem;
        }
        for (; nf < req->filter_server_count; nf++) {
            filters[nf] = strdup(req->filter_servers[nf]);
            if (filters[nf] == NULL) {
                goto out_nomem;
            }
        }
    }
    if (l == NULL) {
        l = alloc_named(sizeof(*l), req->broker_addr, offsetof(struct rmq_ri_live, addr));
        if (l == NULL) {
            goto out_nomem;
        }
        if (rmq_strmap_put(&rt->live, l->addr, l) < 0) {
            free(l);
            goto out_nomem;
        }
    }
    rt->filter_live_count += (nf > 0) - (l->filter_server_count > 0);
    for (uint32_t i = 0; i < l->filter_server_count; i++) {
        free(l->filter_servers[i]);
    }
    free(l->filter_servers);
    free(l->ha_server_addr);
    l->filter_servers = filters;
    l->filter_server_count = nf;
    l->ha_server_addr = ha;
    l->last_update_ms = now_ms;
    l->data_version = req->data_version;
    l->conn_tag = req->conn_tag;
    return 0;
out_nomem:
    for (uint32_t i = 0; i < nf; i++) {
        free(filters[i]);
    }
    free(filters);
    free(ha);
    return -ENOMEM;
}

static bool
data_version_eq(const struct rmq_data_version *a, const struct rmq_data_version *b)
{
    return a->counter == b->counter && a->timestamp == b->timestamp;
}

/* Whether req stays within the table-wide caps; checked before anything changes. */
static bool
fits(const struct rmq_routeinfo *rt, const struct rmq_register_req *req,
     const struct rmq_ri_live *prev)
{
    uint32_t new_topics = 0;

    if (prev == NULL && rmq_strmap_len(&rt->live) >= rt->max_brokers) {
        return false;
    }
    if (rmq_strmap_get(&rt->brokers, req->broker_name) == NULL &&
        rmq_strmap_len(&rt->brokers) >= rt->max_brokers) {
        return false;
    }
    if (!req->has_topic_config || req->broker_id != RMQ_NAMESRV_MASTER_ID) {
        return true;
    }
    for (uint32_t i = 0; i < req->topic_count; i++) {
        new_topics += rmq_strmap_get(&rt->topics, req->topics[i].topic) == NULL;
    }
    return (uint64_t)rmq_strmap_len(&rt->topics) + new_topics <= rt->max_topics;
}

int
rmq_routeinfo_register(struct rmq_routeinfo *rt, const struct rmq_register_req *req,
                       uint64_t now_ms, struct rmq_register_result *res)
{
    const struct rmq_ri_live *prev = rmq_strmap_get(&rt->live, req->broker_addr);
    struct rmq_ri_broker *b;
    bool created;
    bool id_new;
    const char *why;
    int ret;

    memset(res, 0, sizeof(*res));
    ret = rmq_routeinfo_validate(req, &why);
    if (ret < 0) {
        return ret;
    }
    if (!fits(rt, req, prev)) {
        return -ENOSPC;
    }
    ret = broker_get_or_add(rt, req, &b, &created);
    if (ret < 0) {
        return ret;
    }
    ret = broker_put_addr(b, req->broker_id, req->broker_addr, &id_new);
    if (ret < 0) {
        if (b->addr_count == 0) {
            broker_remove(rt, b);
        }
        return ret;
    }
    /* Only a master's topic config makes routes, and only when it is news. */
    if (req->has_topic_config && req->broker_id == RMQ_NAMESRV_MASTER_ID &&
        (created || id_new || prev == NULL ||
         !data_version_eq(&prev->data_version, &req->data_version))) {
        for (uint32_t i = 0; i < req->topic_count; i++) {
            ret = topic_put_queue(rt, b->name, &req->topics[i]);
            if (ret < 0) {
                return ret;
            }
        }
        res->queues_updated = true;
    }
    ret = live_update(rt, req, now_ms);
    if (ret < 0) {
        return ret;
    }
    if (req->broker_id != RMQ_NAMESRV_MASTER_ID && b->addr_count > 0 &&
        b->addrs[0].id == RMQ_NAMESRV_MASTER_ID) {
        const struct rmq_ri_live *ml = rmq_strmap_get(&rt->live, b->addrs[0].addr);

        if (ml != NULL) {
            res->has_master = true;
            snprintf(res->master_addr, sizeof(res->master_addr), "%s", b->addrs[0].addr);
            snprintf(res->ha_server_addr, sizeof(res->ha_server_addr), "%s",
                     ml->ha_server_addr);
        }
    }
    return 0;
}

bool
rmq_routeinfo_query_data_version(struct rmq_routeinfo *rt, const char *broker_addr,
                                 const struct rmq_data_version *dv, uint64_t now_ms,
                                 struct rmq_data_version *stored, bool *has_stored)
{
    struct rmq_ri_live *l = rmq_strmap_get(&rt->live, broker_addr);
    bool changed = l == NULL || !data_version_eq(&l->data_version, dv);

    *has_stored = l != NULL;
    if (l != NULL) {
        *stored = l->data_version;
        if (!changed) {
            l->last_update_ms = now_ms;
        }
    }
    return changed;
}

/* ---- admin changes ------------------------------------------------------------------- */

bool
rmq_routeinfo_delete_topic(struct rmq_routeinfo *rt, const char *topic, const char *cluster)
{
    struct rmq_ri_topic *t = rmq_strmap_get(&rt->topics, topic);
    bool removed = false;

    if (t == NULL) {
        return false;
    }
    if (cluster == NULL || cluster[0] == '\0') {
        removed = true;
    } else {
        const struct rmq_ri_cluster *c = rmq_strmap_get(&rt->clusters, cluster);

        for (uint32_t i = 0; c != NULL && i < c->count; i++) {
            removed |= topic_remove_broker(t, c->broker_names[i]);
        }
        if (t->queue_count > 0) {
            return removed;
        }
    }
    rmq_strmap_del(&rt->topics, t->name);
    topic_free(t);
    return removed;
}

static uint32_t
perm_change(struct rmq_routeinfo *rt, const char *broker_name, bool add)
{
    struct rmq_ri_topic *t;
    uint32_t n = 0;

    for (uint32_t i = 0; (t = rmq_strmap_next(&rt->topics, &i)) != NULL;) {
        for (uint32_t k = 0; k < t->queue_count; k++) {
            struct rmq_ri_queue *q = &t->queues[k];

            if (strcmp(q->broker_name, broker_name) == 0) {
                q->perm = add ? RMQ_PERM_READ | RMQ_PERM_WRITE : q->perm & ~RMQ_PERM_WRITE;
                n++;
            }
        }
    }
    return n;
}

uint32_t
rmq_routeinfo_wipe_write_perm(struct rmq_routeinfo *rt, const char *broker_name)
{
    return perm_change(rt, broker_name, false);
}

uint32_t
rmq_routeinfo_add_write_perm(struct rmq_routeinfo *rt, const char *broker_name)
{
    return perm_change(rt, broker_name, true);
}

/* ---- JSON views ---------------------------------------------------------------------- */

static void
write_broker_data(const struct rmq_ri_broker *b, struct rmq_jw *w)
{
    rmq_jw_obj_begin(w);
    rmq_jw_key(w, "brokerAddrs");
    rmq_jw_obj_begin(w);
    for (uint32_t i = 0; i < b->addr_count; i++) {
        rmq_jw_key_i64(w, b->addrs[i].id);
        rmq_jw_str(w, b->addrs[i].addr);
    }
    rmq_jw_obj_end(w);
    rmq_jw_key(w, "brokerName");
    rmq_jw_str(w, b->name);
    rmq_jw_key(w, "cluster");
    rmq_jw_str(w, b->cluster);
    rmq_jw_obj_end(w);
}

#define ROUTE_BROKERS_CACHED 16

static const struct rmq_ri_broker *
route_broker(const struct rmq_routeinfo *rt, const struct rmq_ri_topic *t,
             const struct rmq_ri_broker *const *seen, uint32_t i)
{
    return i < ROUTE_BROKERS_CACHED ? seen[i] : rmq_strmap_get(&rt->brokers,
                                                               t->queues[i].broker_name);
}

int
rmq_routeinfo_write_route(const struct rmq_routeinfo *rt, const char *topic, size_t topic_len,
                          const char *order_conf, struct rmq_jw *w)
{
    const struct rmq_ri_topic *t = rmq_strmap_get_n(&rt->topics, topic, topic_len);
    const struct rmq_ri_broker *seen[ROUTE_BROKERS_CACHED];
    bool found = false;

    if (t == NULL) {
        return -ENOENT;
    }
    /* one lookup per broker name for the common case of a few names per topic */
    for (uint32_t i = 0; i < t->queue_count; i++) {
        const struct rmq_ri_broker *b = rmq_strmap_get(&rt->brokers, t->queues[i].broker_name);

        if (i < ROUTE_BROKERS_CACHED) {
            seen[i] = b;
        }
        found |= b != NULL;
    }
    if (!found) {
        return -ENOENT;
    }
    /* fields in fastjson's alphabetical order */
    rmq_jw_obj_begin(w);
    rmq_jw_key(w, "brokerDatas");
    rmq_jw_arr_begin(w);
    for (uint32_t i = 0; i < t->queue_count; i++) {
        const struct rmq_ri_broker *b = route_broker(rt, t, seen, i);

        if (b != NULL) {
            write_broker_data(b, w);
        }
    }
    rmq_jw_arr_end(w);
    rmq_jw_key(w, "filterServerTable");
    rmq_jw_obj_begin(w);
    for (uint32_t i = 0; rt->filter_live_count > 0 && i < t->queue_count; i++) {
        const struct rmq_ri_broker *b = route_broker(rt, t, seen, i);

        for (uint32_t k = 0; b != NULL && k < b->addr_count; k++) {
            const struct rmq_ri_live *l = rmq_strmap_get(&rt->live, b->addrs[k].addr);

            if (l == NULL || l->filter_server_count == 0) {
                continue;
            }
            rmq_jw_key(w, l->addr);
            rmq_jw_arr_begin(w);
            for (uint32_t f = 0; f < l->filter_server_count; f++) {
                rmq_jw_str(w, l->filter_servers[f]);
            }
            rmq_jw_arr_end(w);
        }
    }
    rmq_jw_obj_end(w);
    if (order_conf != NULL) {
        rmq_jw_key(w, "orderTopicConf");
        rmq_jw_str(w, order_conf);
    }
    rmq_jw_key(w, "queueDatas");
    rmq_jw_arr_begin(w);
    for (uint32_t i = 0; i < t->queue_count; i++) {
        const struct rmq_ri_queue *q = &t->queues[i];

        rmq_jw_obj_begin(w);
        rmq_jw_key(w, "brokerName");
        rmq_jw_str(w, q->broker_name);
        rmq_jw_key(w, "perm");
        rmq_jw_i64(w, q->perm);
        rmq_jw_key(w, "readQueueNums");
        rmq_jw_i64(w, q->read_queue_nums);
        rmq_jw_key(w, "topicSysFlag");
        rmq_jw_i64(w, q->topic_sys_flag);
        rmq_jw_key(w, "writeQueueNums");
        rmq_jw_i64(w, q->write_queue_nums);
        rmq_jw_obj_end(w);
    }
    rmq_jw_arr_end(w);
    rmq_jw_obj_end(w);
    return 0;
}

void
rmq_routeinfo_write_cluster_info(const struct rmq_routeinfo *rt, struct rmq_jw *w)
{
    const struct rmq_ri_broker *b;
    const struct rmq_ri_cluster *c;

    rmq_jw_obj_begin(w);
    rmq_jw_key(w, "brokerAddrTable");
    rmq_jw_obj_begin(w);
    for (uint32_t i = 0; (b = rmq_strmap_next(&rt->brokers, &i)) != NULL;) {
        rmq_jw_key(w, b->name);
        write_broker_data(b, w);
    }
    rmq_jw_obj_end(w);
    rmq_jw_key(w, "clusterAddrTable");
    rmq_jw_obj_begin(w);
    for (uint32_t i = 0; (c = rmq_strmap_next(&rt->clusters, &i)) != NULL;) {
        rmq_jw_key(w, c->name);
        rmq_jw_arr_begin(w);
        for (uint32_t k = 0; k < c->count; k++) {
            rmq_jw_str(w, c->broker_names[k]);
        }
        rmq_jw_arr_end(w);
    }
    rmq_jw_obj_end(w);
    rmq_jw_obj_end(w);
}

static bool
topic_on_cluster(const struct rmq_routeinfo *rt, const struct rmq_ri_topic *t,
                 const char *cluster)
{
    for (uint32_t k = 0; k < t->queue_count; k++) {
        const struct rmq_ri_broker *b = rmq_strmap_get(&rt->brokers, t->queues[k].broker_name);

        if (b != NULL && strcmp(b->cluster, cluster) == 0) {
            return true;
        }
    }
    return false;
}

void
rmq_routeinfo_write_topic_list(const struct rmq_routeinfo *rt, const char *cluster,
                               struct rmq_jw *w)
{
    const struct rmq_ri_topic *t;

    rmq_jw_obj_begin(w);
    rmq_jw_key(w, "topicList");
    rmq_jw_arr_begin(w);
    for (uint32_t i = 0; (t = rmq_strmap_next(&rt->topics, &i)) != NULL;) {
        if (cluster == NULL || topic_on_cluster(rt, t, cluster)) {
            rmq_jw_str(w, t->name);
        }
    }
    rmq_jw_arr_end(w);
    rmq_jw_obj_end(w);
}

void
rmq_routeinfo_write_system_topic_list(const struct rmq_routeinfo *rt, struct rmq_jw *w)
{
    const struct rmq_ri_cluster *c;
    const struct rmq_ri_broker *b;
    const char *any_addr = NULL;

    rmq_jw_obj_begin(w);
    for (uint32_t i = 0; any_addr == NULL && (b = rmq_strmap_next(&rt->brokers, &i)) != NULL;) {
        any_addr = b->addrs[0].addr;
    }
    if (any_addr != NULL) {
        rmq_jw_key(w, "brokerAddr");
        rmq_jw_str(w, any_addr);
    }
    rmq_jw_key(w, "topicList");
    rmq_jw_arr_begin(w);
    for (uint32_t i = 0; (c = rmq_strmap_next(&rt->clusters, &i)) != NULL;) {
        rmq_jw_str(w, c->name);
        for (uint32_t k = 0; k < c->count; k++) {
            rmq_jw_str(w, c->broker_names[k]);
        }
    }
    rmq_jw_arr_end(w);
    rmq_jw_obj_end(w);
}

void
rmq_routeinfo_write_unit_topic_list(const struct rmq_routeinfo *rt, int32_t flag_mask,
                                    bool exclude_unit, struct rmq_jw *w)
{
    const struct rmq_ri_topic *t;

    rmq_jw_obj_begin(w);
    rmq_jw_key(w, "topicList");
    rmq_jw_arr_begin(w);
    for (uint32_t i = 0; (t = rmq_strmap_next(&rt->topics, &i)) != NULL;) {
        int32_t flag = t->queues[0].topic_sys_flag;     /* the reference looks at the first */

        if ((flag & flag_mask) != 0 && !(exclude_unit && (flag & 1) != 0)) {
            rmq_jw_str(w, t->name);
        }
    }
    rmq_jw_arr_end(w);
    rmq_jw_obj_end(w);
}

/* ---- inspection ---------------------------------------------------------------------- */

uint32_t
rmq_routeinfo_topic_count(const struct rmq_routeinfo *rt)
{
    return rmq_strmap_len(&rt->topics);
}

uint32_t
rmq_routeinfo_live_count(const struct rmq_routeinfo *rt)
{
    return rmq_strmap_len(&rt->live);
}

bool
rmq_routeinfo_is_live(const struct rmq_routeinfo *rt, const char *broker_addr)
{
    return rmq_strmap_get(&rt->live, broker_addr) != NULL;
}

static bool
addr_in_some_broker(const struct rmq_routeinfo *rt, const char *addr)
{
    const struct rmq_ri_broker *b;

    for (uint32_t i = 0; (b = rmq_strmap_next(&rt->brokers, &i)) != NULL;) {
        for (uint32_t k = 0; k < b->addr_count; k++) {
            if (strcmp(b->addrs[k].addr, addr) == 0) {
                return true;
            }
        }
    }
    return false;
}

static bool
cluster_lists(const struct rmq_routeinfo *rt, const char *cluster, const char *broker_name)
{
    const struct rmq_ri_cluster *c = rmq_strmap_get(&rt->clusters, cluster);

    for (uint32_t i = 0; c != NULL && i < c->count; i++) {
        if (strcmp(c->broker_names[i], broker_name) == 0) {
            return true;
        }
    }
    return false;
}

bool
rmq_routeinfo_check(const struct rmq_routeinfo *rt)
{
    const struct rmq_ri_live *l;
    const struct rmq_ri_broker *b;
    const struct rmq_ri_topic *t;
    const struct rmq_ri_cluster *c;
    uint32_t with_filters = 0;
    uint32_t listed = 0;

    for (uint32_t i = 0; (l = rmq_strmap_next(&rt->live, &i)) != NULL;) {
        if (!addr_in_some_broker(rt, l->addr)) {
            return false;
        }
        with_filters += l->filter_server_count > 0;
    }
    if (with_filters != rt->filter_live_count) {
        return false;
    }
    for (uint32_t i = 0; (b = rmq_strmap_next(&rt->brokers, &i)) != NULL;) {
        if (b->addr_count == 0 || !cluster_lists(rt, b->cluster, b->name)) {
            return false;
        }
        for (uint32_t k = 1; k < b->addr_count; k++) {
            if (b->addrs[k - 1].id >= b->addrs[k].id) {
                return false;
            }
        }
    }
    for (uint32_t i = 0; (c = rmq_strmap_next(&rt->clusters, &i)) != NULL;) {
        if (c->count == 0) {
            return false;
        }
        for (uint32_t k = 0; k < c->count; k++) {
            b = rmq_strmap_get(&rt->brokers, c->broker_names[k]);
            if (b == NULL || strcmp(b->cluster, c->name) != 0) {
                return false;
            }
        }
        listed += c->count;
    }
    for (uint32_t i = 0; (t = rmq_strmap_next(&rt->topics, &i)) != NULL;) {
        if (t->queue_count == 0) {
            return false;
        }
    }
    return listed == rmq_strmap_len(&rt->brokers);
}
