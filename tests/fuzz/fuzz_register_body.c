/*
 * libFuzzer target: REGISTER_BROKER bodies. The first input byte picks the JSON or
 * the compressed (zlib) form; whatever decodes is validated, applied to a route
 * table as a master's registration, every topic's route written in both dialects,
 * and the table's invariants checked. Any crash, sanitizer report or broken
 * invariant aborts. Build: ninja fuzz; run: build/fuzz/fuzz_register_body.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "namesrv/namesrv_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rmq_namesrv__register_body rb;
    struct rmq_routeinfo rt;
    struct rmq_register_req req;
    struct rmq_register_result res;
    const char *why;
    uint8_t *body;

    if (size < 1 || size > (1 << 20)) {
        return 0;
    }
    body = malloc(size - 1 ? size - 1 : 1);     /* exact size: overreads are caught */
    memcpy(body, data + 1, size - 1);
    if (rmq_namesrv__register_body_decode(&rb, body, (uint32_t)(size - 1), data[0] & 1, &why) < 0) {
        free(body);
        return 0;
    }
    rmq_routeinfo_init(&rt);
    req = (struct rmq_register_req){
        .cluster = "C", .broker_name = "b", .broker_addr = "1.1.1.1:1", .ha_server_addr = "",
        .has_topic_config = rb.has_topic_config, .data_version = rb.data_version,
        .topics = rb.topics, .topic_count = rb.topic_count, .filter_servers = rb.filter_servers,
        .filter_server_count = rb.filter_server_count, .conn_tag = 1,
    };
    if (rmq_routeinfo_register(&rt, &req, 0, &res) == 0) {
        for (uint32_t i = 0; i < rb.topic_count; i++) {
            struct rmq_jw w;
            const char *text;
            size_t len;

            for (int d = 0; d < 2; d++) {
                rmq_jw_init(&w, d ? RMQ_JSON_STANDARD : RMQ_JSON_FASTJSON);
                if (rmq_routeinfo_write_route(&rt, rb.topics[i].topic, strlen(rb.topics[i].topic),
                                              NULL, &w) != 0 ||
                    rmq_jw_finish(&w, &text, &len) != 0) {
                    abort();    /* a registered topic always has a route */
                }
                rmq_jw_fini(&w);
            }
        }
    }
    if (!rmq_routeinfo_check(&rt)) {
        abort();
    }
    rmq_routeinfo_fini(&rt);
    rmq_namesrv__register_body_fini(&rb);
    free(body);
    return 0;
}
