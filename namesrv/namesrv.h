/*
 * The NameServer as an embeddable component: the route table, broker liveness and
 * the KV config, served through request handlers installed on a caller's
 * rmq_server. The rmq-namesrv daemon hosts it on its own server; the broker's
 * --standalone mode hosts the same code next to its own handlers.
 *
 * Threading: everything runs on the server's loop thread.
 */
#ifndef RMQ_NAMESRV_NAMESRV_H
#define RMQ_NAMESRV_NAMESRV_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "net/server.h"

#define RMQ_NAMESRV_PATH_MAX 4096

struct rmq_namesrv_config {
    int64_t listen_port;                    /* listenPort (daemon) */
    char bind_address[64];                  /* bindAddress (daemon) */
    int64_t max_connections;                /* maxConnections (daemon) */
    char kv_config_path[RMQ_NAMESRV_PATH_MAX];  /* kvConfigPath; "~/" = $HOME; "" = no file */
    int64_t broker_expired_ms;              /* brokerExpiredMs */
    int64_t scan_not_active_broker_interval;    /* scanNotActiveBrokerInterval, ms */
    bool order_message_enable;              /* orderMessageEnable */
    bool enable_all_topic_list;             /* enableAllTopicList */
    bool enable_topic_list;                 /* enableTopicList */
    int log_level;                          /* logLevel: index into error/warn/info/debug */
};

/* Every key above with its RocketMQ name, default and bounds (for --help and files). */
extern const struct rmq_config_spec rmq_namesrv_config_spec;

struct rmq_namesrv;

/*
 * Load the KV config, install the NameServer's handlers and connection-close hook on
 * srv, and start the broker expiry scan. On srv's loop thread. -errno with one log
 * line (an unreadable or malformed KV file is an error: the operator must look).
 */
int rmq_namesrv_create(struct rmq_namesrv **out, struct rmq_server *srv,
                       const struct rmq_namesrv_config *cfg);

/*
 * Stop the scan and persist KV changes not yet on disk (each change is written when
 * made; this catches one whose write failed). Call before stopping srv. 0 or -errno.
 */
int rmq_namesrv_stop(struct rmq_namesrv *ns);

/* Free everything; after rmq_namesrv_stop and once srv has stopped. */
void rmq_namesrv_destroy(struct rmq_namesrv *ns);

#endif
