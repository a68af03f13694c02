/*
 * NameServer lifecycle and configuration; see namesrv.h. The route table and the KV
 * config belong to the server's loop, so no locks: handlers (processor.c), the
 * expiry scan and connection-close hooks all run on that one thread. A NameServer
 * serves a few thousand small control-plane requests per second at most; one loop
 * answers far more (rmq-bench namesrv).
 */
#include "namesrv/namesrv.h"

#include <errno.h>
#include <pwd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "namesrv/namesrv_int.h"

#define NS_KEY(n, t, f, d, lo, hi, h) \
    {n, t, offsetof(struct rmq_namesrv_config, f), sizeof(((struct rmq_namesrv_config *)0)->f), \
     d, lo, hi, NULL, h}

static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};

static const struct rmq_config_key namesrv_keys[] = {
    NS_KEY("listenPort", RMQ_CONFIG_I64, listen_port, "9876", 0, 65535,
           "TCP port to serve on (0 = any free port)"),
    NS_KEY("bindAddress", RMQ_CONFIG_STR, bind_address, "0.0.0.0", 0, 0,
           "IPv4 address to listen on"),
    NS_KEY("maxConnections", RMQ_CONFIG_I64, max_connections, "1024", 1, 65536,
           "connections served at once; more are refused"),
    NS_KEY("kvConfigPath", RMQ_CONFIG_STR, kv_config_path, "~/namesrv/kvConfig.json", 0, 0,
           "KV config file (JSON, written atomically); ~/ is $HOME; empty: memory only"),
    NS_KEY("brokerExpiredMs", RMQ_CONFIG_I64, broker_expired_ms, "120000", 100, 86400000,
           "a broker not re-registered for this long is removed"),
    NS_KEY("scanNotActiveBrokerInterval", RMQ_CONFIG_I64, scan_not_active_broker_interval,
           "10000", 10, 3600000, "ms between scans for expired brokers"),
    NS_KEY("orderMessageEnable", RMQ_CONFIG_BOOL, order_message_enable, "false", 0, 0,
           "add orderTopicConf (KV namespace ORDER_TOPIC_CONFIG) to routes"),
    NS_KEY("enableAllTopicList", RMQ_CONFIG_BOOL, enable_all_topic_list, "true", 0, 0,
           "answer GET_ALL_TOPIC_LIST_FROM_NAMESERVER"),
    NS_KEY("enableTopicList", RMQ_CONFIG_BOOL, enable_topic_list, "true", 0, 0,
           "answer GET_TOPICS_BY_CLUSTER and the unit topic lists"),
    {"logLevel", RMQ_CONFIG_ENUM, offsetof(struct rmq_namesrv_config, log_level), 0, "info", 0,
     0, log_levels, "log lines up to this level"},
};

const struct rmq_config_spec rmq_namesrv_config_spec = {
    .program = "rmq-namesrv",
    .keys = namesrv_keys,
    .key_count = RMQ_ARRAY_LEN(namesrv_keys),
};

static void
scan_fire(struct rmq_timer *t)
{
    struct rmq_namesrv *ns = rmq_container_of(t, struct rmq_namesrv, scan_timer);

    rmq_namesrv__scan(ns);
    if (!ns->stopped) {
        rmq_timer_arm(ns->loop, &ns->scan_timer,
                      (uint64_t)ns->cfg.scan_not_active_broker_interval * 1000000ull, scan_fire);
    }
}

/* "~/x" -> "$HOME/x" (the passwd entry's home without HOME); other paths as they are. */
static int
expand_home(const char *path, char *out, size_t cap)
{
    const char *home = getenv("HOME");
    int n;

    if (home == NULL || home[0] == '\0') {
        const struct passwd *pw = getpwuid(getuid());

        home = pw != NULL ? pw->pw_dir : NULL;
    }

    if (strncmp(path, "~/", 2) == 0 && home != NULL && home[0] != '\0') {
        n = snprintf(out, cap, "%s/%s", home, path + 2);
    } else {
        n = snprintf(out, cap, "%s", path);
    }
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int
rmq_namesrv_create(struct rmq_namesrv **out, struct rmq_server *srv,
                   const struct rmq_namesrv_config *cfg)
{
    struct rmq_namesrv *ns = calloc(1, sizeof(*ns));
    char path[RMQ_NAMESRV_PATH_MAX];
    char err[512] = "";
    int ret;

    if (ns == NULL) {
        return -ENOMEM;
    }
    ns->cfg = *cfg;
    ns->srv = srv;
    ns->loop = srv->nl->loop;
    ns->conn_has_broker = calloc(srv->max_conns, 1);
    if (ns->conn_has_broker == NULL) {
        ret = -ENOMEM;
        goto out_free;
    }
    ret = expand_home(cfg->kv_config_path, path, sizeof(path));
    if (ret < 0) {
        RMQ_ERROR("namesrv: kvConfigPath too long path=%s", cfg->kv_config_path);
        goto out_free;
    }
    ret = rmq_kvconfig_init(&ns->kv, path[0] != '\0' ? path : NULL, err, sizeof(err));
    if (ret < 0) {
        RMQ_ERROR("namesrv: KV config not loaded (%s) err=%s, not starting; fix or move the "
                  "file (kvConfigPath)", err, strerror(-ret));
        goto out_free;
    }
    rmq_routeinfo_init(&ns->routes);
    rmq_jw_init(&ns->out, RMQ_JSON_FASTJSON);
    ret = rmq_timer_arm(ns->loop, &ns->scan_timer,
                        (uint64_t)cfg->scan_not_active_broker_interval * 1000000ull, scan_fire);
    if (ret < 0) {
        rmq_namesrv_destroy(ns);
        return ret;
    }
    rmq_namesrv__handlers_install(ns, true);   /* last: from here on, srv points at ns */
    ns->installed = true;
    RMQ_INFO("namesrv: started kvConfigPath=%s brokerExpiredMs=%lld "
             "scanNotActiveBrokerInterval=%lld", path[0] ? path : "(memory only)",
             (long long)cfg->broker_expired_ms,
             (long long)cfg->scan_not_active_broker_interval);
    *out = ns;
    return 0;
out_free:
    free(ns->conn_has_broker);
    free(ns);
    return ret;
}

int
rmq_namesrv_stop(struct rmq_namesrv *ns)
{
    int ret;

    ns->stopped = true;
    rmq_timer_cancel(ns->loop, &ns->scan_timer);
    if (!ns->kv.dirty) {
        return 0;                   /* every change was persisted when it was made */
    }
    ret = rmq_kvconfig_persist(&ns->kv);
    if (ret < 0) {
        RMQ_ERROR("namesrv: KV config not persisted at stop path=%s err=%s", ns->kv.path,
                  strerror(-ret));
    }
    return ret;
}

void
rmq_namesrv_destroy(struct rmq_namesrv *ns)
{
    if (ns == NULL) {
        return;
    }
    rmq_timer_cancel(ns->loop, &ns->scan_timer);
    if (ns->installed) {
        rmq_namesrv__handlers_install(ns, false);
    }
    rmq_routeinfo_fini(&ns->routes);
    rmq_kvconfig_fini(&ns->kv);
    rmq_jw_fini(&ns->out);
    free(ns->conn_has_broker);
    free(ns);
}
