/*
 * The broker as a component: topic table, consumer offsets, client connections,
 * long-polling pulls and the store, served through request handlers on one
 * rmq_server (spec/REMOTING.md §12). The rmq-broker daemon (broker/main.c) hosts it;
 * with standalone=true it also hosts the NameServer (namesrv/namesrv.h) on a second
 * server of the same loop and registers there like any other NameServer.
 *
 * Threading: one loop. The store's single writer lives on it too (DESIGN.md §3,
 * N = 1: no thread hop between a request and its append).
 */
#ifndef RMQ_BROKER_BROKER_H
#define RMQ_BROKER_BROKER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "namesrv/namesrv.h"
#include "net/server.h"
#include "store/options.h"

#define RMQ_BROKER_NAME_MAX 128

enum rmq_broker_role { RMQ_ROLE_ASYNC_MASTER, RMQ_ROLE_SYNC_MASTER, RMQ_ROLE_SLAVE };

struct rmq_broker_config {
    char cluster[RMQ_BROKER_NAME_MAX];          /* brokerClusterName */
    char broker_name[RMQ_BROKER_NAME_MAX];      /* brokerName */
    int64_t broker_id;                          /* brokerId: 0 master */
    char broker_ip1[64];                        /* brokerIP1: the address clients reach */
    int64_t listen_port;                        /* listenPort */
    char bind_address[64];                      /* bindAddress */
    char namesrv_addr[1024];                    /* namesrvAddr: "h:p;h:p" */
    bool standalone;                            /* also serve the NameServer protocol */
    int64_t namesrv_listen_port;                /* namesrvListenPort (standalone) */
    bool auto_create_topic;                     /* autoCreateTopicEnable */
    int64_t default_topic_queue_nums;           /* defaultTopicQueueNums */
    int64_t register_interval_ms;               /* registerBrokerInterval */
    int broker_role;                            /* brokerRole */
    char broker_ip2[64];                        /* brokerIP2: the HA address (empty: IP1) */
    char ha_master_address[80];                 /* haMasterAddress: static master HA ip:port */
    int64_t ha_batch_size;                      /* haTransferBatchSize */
    int64_t ha_heartbeat_ms;                    /* haSendHeartbeatInterval */
    int64_t ha_housekeeping_ms;                 /* haHousekeepingInterval */
    int64_t ha_max_gap;                         /* haMaxGapNotInSync */
    int64_t slave_sync_ms;                      /* slaveMetadataSyncInterval */
    bool slave_read_enable;                     /* slaveReadEnable */
    int64_t broker_permission;                  /* brokerPermission */
    bool long_polling;                          /* longPollingEnable */
    int64_t short_polling_ms;                   /* shortPollingTimeMills */
    int64_t max_parked_pulls;                   /* maxParkedPulls */
    int64_t pull_splice_min;                    /* pullSpliceMinBytes: 0 = always copy */
    int64_t timer_max_delay_sec;                /* timerMaxDelaySec */
    int64_t timer_seg_size;                     /* mappedFileSizeTimerLog */
    bool index_enable;                          /* messageIndexEnable */
    int64_t index_slots;                        /* maxHashSlotNum */
    int64_t index_entries;                      /* maxIndexNum */
    int64_t max_connections;                    /* maxConnections */
    int64_t channel_idle_s;                     /* clientChannelMaxIdleTimeSeconds */
    int64_t flush_offset_interval_ms;           /* flushConsumerOffsetInterval */
    char region[64];                            /* regionId */
    bool trace_on;                              /* traceOn */
    int log_level;                              /* logLevel */
    struct rmq_store_options store;
    struct rmq_namesrv_config ns;               /* standalone NameServer: defaults */
};

/* Every key (broker, store, standalone NameServer) with its default (--help, files). */
const struct rmq_config_spec *rmq_broker_config_spec(void);
/* Defaults, --config FILE, --key=value; "--standalone" alone means --standalone=true.
 * 0 or -EINVAL/-ENOENT with the reason in err. */
int rmq_broker_config_parse(struct rmq_broker_config *cfg, int argc, char **argv, char *err,
                            size_t errlen);

struct rmq_broker;

/*
 * Open the store (recovery), load topics and offsets, start serving on a server of
 * nl, register with every NameServer. On nl's loop thread. -errno with a log line;
 * when *out is still set, stop and destroy it as after a normal start.
 */
int rmq_broker_create(struct rmq_broker **out, struct rmq_net_loop *nl,
                      const struct rmq_broker_config *cfg);
/* Ports actually bound (after create): listen port, embedded NameServer port or 0. */
uint16_t rmq_broker_port(const struct rmq_broker *b);
uint16_t rmq_broker_namesrv_port(const struct rmq_broker *b);

/*
 * Graceful stop (SIGTERM): stop accepting, answer what is in flight, unregister,
 * close connections, persist offsets and topics, flush and checkpoint the store.
 * done(arg, err) runs on the loop once everything is down (err 0 or the first -errno).
 */
void rmq_broker_stop(struct rmq_broker *b, void (*done)(void *arg, int err), void *arg);
/* Free everything; after stop's done ran (or if create failed). */
void rmq_broker_destroy(struct rmq_broker *b);

#endif
