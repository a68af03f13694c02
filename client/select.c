/*
 * Which queue a message goes to, which brokers to avoid, and which queues a consumer
 * of a group takes (spec/CLIENT.md §5.2, §6.2).
 */
#include <string.h>

#include "client/client_int.h"
#include "core/util.h"

/* Latency at or over latency_max[i] avoids the broker for not_available_ms[i]. */
static const uint64_t latency_max[] = {50, 100, 550, 1000, 2000, 3000, 15000};
static const uint64_t not_available_ms[] = {0, 0, 30000, 60000, 120000, 180000, 600000};

void
rmq_cli__fault_update(struct rmq_cli_broker *b, uint64_t latency_ms, bool failed, uint64_t now_ms)
{
    uint64_t lat = failed ? 30000 : latency_ms;

    b->latency_ms = lat;
    for (int i = (int)RMQ_ARRAY_LEN(latency_max) - 1; i >= 0; i--) {
        if (lat >= latency_max[i]) {
            b->unavailable_until_ms = now_ms + not_available_ms[i];
            return;
        }
    }
    b->unavailable_until_ms = 0;
}

static bool
available(struct rmq_cli *c, const char *broker, uint64_t now_ms)
{
    struct rmq_cli_broker *b;

    if (c->opts.no_fault_avoidance) {
        return true;
    }
    b = rmq_cli__broker(c, broker);
    return b == NULL || b->unavailable_until_ms <= now_ms;
}

uint32_t
rmq_cli__select_queue(struct rmq_cli *c, struct rmq_cli_route *r, const char *avoid_broker,
                      uint64_t now_ms)
{
    uint32_t n = r->pub_count;

    /* round robin over the queues of brokers that are neither avoided nor just failed */
    for (uint32_t i = 0; i < n; i++) {
        uint32_t idx = r->counter++ % n;
        const char *b = r->pub[idx].broker_name;

        if ((avoid_broker == NULL || strcmp(b, avoid_broker) != 0) && available(c, b, now_ms)) {
            return idx;
        }
    }
    /* every broker is avoided: another broker than the one that failed, if there is one */
    for (uint32_t i = 0; avoid_broker != NULL && i < n; i++) {
        uint32_t idx = r->counter++ % n;

        if (strcmp(r->pub[idx].broker_name, avoid_broker) != 0) {
            return idx;
        }
    }
    return r->counter++ % n;
}

uint32_t
rmq_cli__select_by_key(const char *key, uint32_t n)
{
    int32_t h = 0;

    /* Java's String.hashCode over the bytes (equal to it for ASCII keys) */
    for (const unsigned char *p = (const unsigned char *)key; *p != '\0'; p++) {
        h = (int32_t)(31u * (uint32_t)h + *p);
    }
    return (h < 0 ? (uint32_t)-(int64_t)h : (uint32_t)h) % n;
}

uint32_t
rmq_cli__allocate_avg(uint32_t queue_count, uint32_t cid_count, uint32_t index, uint32_t *out)
{
    uint32_t mod, size, start, range;

    if (cid_count == 0 || index >= cid_count || queue_count == 0) {
        return 0;
    }
    mod = queue_count % cid_count;
    if (queue_count <= cid_count) {
        size = 1;
    } else if (mod > 0 && index < mod) {
        size = queue_count / cid_count + 1;
    } else {
        size = queue_count / cid_count;
    }
    start = mod > 0 && index < mod ? index * size : index * size + mod;
    if (start >= queue_count) {
        return 0;
    }
    range = RMQ_MIN(size, queue_count - start);
    for (uint32_t i = 0; i < range; i++) {
        out[i] = (start + i) % queue_count;
    }
    return range;
}
