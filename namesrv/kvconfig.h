/*
 * NameServer KV config (spec/REMOTING.md §11.6): namespace -> key -> value, kept in
 * memory and persisted as {"configTable":{"<ns>":{"<key>":"<value>"}}}, the
 * reference's kvConfig.json format, so files move between the two.
 *
 * Persisting writes a temporary file, fsyncs it, renames it over the old one and
 * fsyncs the directory: a crash leaves either the old or the new file, never a torn
 * one. It is synchronous: KV changes are rare admin operations on a file of a few
 * KiB, and the reference also writes on every change.
 */
#ifndef RMQ_NAMESRV_KVCONFIG_H
#define RMQ_NAMESRV_KVCONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/strmap.h"
#include "net/json.h"

#define RMQ_KV_ORDER_TOPIC_CONFIG "ORDER_TOPIC_CONFIG"
#define RMQ_KV_FILE_MAX (64u << 20)         /* refuse to load a larger file */

struct rmq_kvconfig {
    struct rmq_strmap namespaces;   /* values owned: namespace tables */
    char *path;                     /* owned; NULL: memory only */
    bool dirty;                     /* changed since the last successful persist */
    uint64_t file_bytes;            /* upper bound on the file this table writes */
};

/*
 * Load path (NULL: memory only). A missing file is an empty table. -errno when the
 * file cannot be read, -EBADMSG when it is not the expected JSON (err says why).
 */
int rmq_kvconfig_init(struct rmq_kvconfig *kv, const char *path, char *err, size_t errlen);
void rmq_kvconfig_fini(struct rmq_kvconfig *kv);

/*
 * In memory only; call rmq_kvconfig_persist after. 0, -ENOMEM, or -ENOSPC when the
 * file would outgrow RMQ_KV_FILE_MAX: a larger file could not be loaded at the next start.
 */
int rmq_kvconfig_put(struct rmq_kvconfig *kv, const char *ns, const char *key, const char *value);
/* true when the key existed. */
bool rmq_kvconfig_delete(struct rmq_kvconfig *kv, const char *ns, const char *key);
/* Borrowed value, valid until the key changes; NULL when absent. */
const char *rmq_kvconfig_get(const struct rmq_kvconfig *kv, const char *ns, const char *key);

/* {"table":{k:v,...}} of ns; false (nothing written) when ns has no entry. */
bool rmq_kvconfig_write_namespace(const struct rmq_kvconfig *kv, const char *ns,
                                  struct rmq_jw *w);

/* Write the file atomically (see above); creates its directory. 0 or -errno. */
int rmq_kvconfig_persist(struct rmq_kvconfig *kv);

#endif
