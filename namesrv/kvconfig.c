/*
 * KV config; see kvconfig.h. Two levels of core/strmap; each entry owns its key
 * and value in one allocation.
 */
#include "namesrv/kvconfig.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"

struct kv_entry {
    char *value;                    /* owned */
    char key[];
};

struct kv_namespace {
    struct rmq_strmap entries;      /* values owned: struct kv_entry */
    char name[];
};

static void
namespace_free(struct kv_namespace *n)
{
    struct kv_entry *e;

    for (uint32_t i = 0; (e = rmq_strmap_next(&n->entries, &i)) != NULL;) {
        free(e->value);
        free(e);
    }
    rmq_strmap_fini(&n->entries);
    free(n);
}

void
rmq_kvconfig_fini(struct rmq_kvconfig *kv)
{
    struct kv_namespace *n;

    for (uint32_t i = 0; (n = rmq_strmap_next(&kv->namespaces, &i)) != NULL;) {
        namespace_free(n);
    }
    rmq_strmap_fini(&kv->namespaces);
    free(kv->path);
    kv->path = NULL;
}

/* Upper bound on the file bytes of a key and value (or a namespace name and its
 * braces): every byte escaped as \u00XX at worst, plus quotes, colon and comma. */
static uint64_t
file_bytes(const char *a, const char *b)
{
    return 6 * ((uint64_t)strlen(a) + strlen(b)) + 16;
}

/* Loading skips the bound: a file the reference wrote is taken whole, however large. */
static int
put(struct rmq_kvconfig *kv, const char *ns, const char *key, const char *value, bool bounded)
{
    struct kv_namespace *n = rmq_strmap_get(&kv->namespaces, ns);
    struct kv_entry *e = n != NULL ? rmq_strmap_get(&n->entries, key) : NULL;
    uint64_t grow = file_bytes(key, value) + (n == NULL ? file_bytes(ns, "") : 0);
    uint64_t shrink = e != NULL ? file_bytes(key, e->value) : 0;
    char *v;
    size_t len;

    if (bounded && grow > shrink && kv->file_bytes + (grow - shrink) > RMQ_KV_FILE_MAX - 64) {
        return -ENOSPC;
    }
    v = strdup(value);
    if (v == NULL) {
        return -ENOMEM;
    }
    if (n == NULL) {
        len = strlen(ns);
        n = calloc(1, sizeof(*n) + len + 1);
        if (n == NULL) {
            goto out_nomem;
        }
        memcpy(n->name, ns, len + 1);
        rmq_strmap_init(&n->entries);
        if (rmq_strmap_put(&kv->namespaces, n->name, n) < 0) {
            free(n);
            n = NULL;               /* not in the map: out_nomem must not free it again */
            goto out_nomem;
        }
    }
    kv->dirty = true;
    kv->file_bytes = kv->file_bytes + grow - shrink;
    if (e != NULL) {
        free(e->value);
        e->value = v;
        return 0;
    }
    len = strlen(key);
    e = malloc(sizeof(*e) + len + 1);
    if (e == NULL) {
        goto out_nomem;
    }
    memcpy(e->key, key, len + 1);
    e->value = v;
    if (rmq_strmap_put(&n->entries, e->key, e) < 0) {
        free(e);
        goto out_nomem;
    }
    return 0;
out_nomem:
    free(v);
    if (n != NULL && rmq_strmap_len(&n->entries) == 0) {
        kv->file_bytes -= grow;     /* the namespace goes with the entry */
        rmq_strmap_del(&kv->namespaces, n->name);
        namespace_free(n);
    } else if (n != NULL) {
        kv->file_bytes -= grow - shrink;
    }
    return -ENOMEM;
}

int
rmq_kvconfig_put(struct rmq_kvconfig *kv, const char *ns, const char *key, const char *value)
{
    return put(kv, ns, key, value, true);
}

bool
rmq_kvconfig_delete(struct rmq_kvconfig *kv, const char *ns, const char *key)
{
    struct kv_namespace *n = rmq_strmap_get(&kv->namespaces, ns);
    struct kv_entry *e = n != NULL ? rmq_strmap_del(&n->entries, key) : NULL;

    if (e == NULL) {
        return false;
    }
    kv->file_bytes -= file_bytes(key, e->value);
    free(e->value);
    free(e);
    kv->dirty = true;
    if (rmq_strmap_len(&n->entries) == 0) {
        kv->file_bytes -= file_bytes(n->name, "");
        rmq_strmap_del(&kv->namespaces, n->name);
        namespace_free(n);
    }
    return true;
}

const char *
rmq_kvconfig_get(const struct rmq_kvconfig *kv, const char *ns, const char *key)
{
    const struct kv_namespace *n = rmq_strmap_get(&kv->namespaces, ns);
    const struct kv_entry *e = n != NULL ? rmq_strmap_get(&n->entries, key) : NULL;

    return e != NULL ? e->value : NULL;
}

static void
write_table(const struct kv_namespace *n, struct rmq_jw *w)
{
    const struct kv_entry *e;

    rmq_jw_obj_begin(w);
    for (uint32_t i = 0; (e = rmq_strmap_next(&n->entries, &i)) != NULL;) {
        rmq_jw_key(w, e->key);
        rmq_jw_str(w, e->value);
    }
    rmq_jw_obj_end(w);
}

bool
rmq_kvconfig_write_namespace(const struct rmq_kvconfig *kv, const char *ns, struct rmq_jw *w)
{
    const struct kv_namespace *n = rmq_strmap_get(&kv->namespaces, ns);

    if (n == NULL) {
        return false;
    }
    rmq_jw_obj_begin(w);
    rmq_jw_key(w, "table");
    write_table(n, w);
    rmq_jw_obj_end(w);
    return true;
}

/* ---- file ---------------------------------------------------------------------------- */

int
rmq_kvconfig_persist(struct rmq_kvconfig *kv)
{
    const struct kv_namespace *n;
    struct rmq_jw w;
    const char *text;
    size_t len;
    int ret;

    if (kv->path == NULL) {
        return 0;
    }
    rmq_jw_init(&w, RMQ_JSON_FASTJSON);
    rmq_jw_obj_begin(&w);
    rmq_jw_key(&w, "configTable");
    rmq_jw_obj_begin(&w);
    for (uint32_t i = 0; (n = rmq_strmap_next(&kv->namespaces, &i)) != NULL;) {
        rmq_jw_key(&w, n->name);
        write_table(n, &w);
    }
    rmq_jw_obj_end(&w);
    rmq_jw_obj_end(&w);
    ret = rmq_jw_finish(&w, &text, &len);
    if (ret == 0) {
        ret = rmq_file_replace(kv->path, text, len);
    }
    if (ret == 0) {
        kv->dirty = false;
    }
    rmq_jw_fini(&w);
    return ret;
}

static int
load(struct rmq_kvconfig *kv, char *err, size_t errlen)
{
    cJSON *root;
    const cJSON *table;
    const cJSON *ns;
    char *text;
    size_t n;
    int ret = rmq_file_read_all(kv->path, RMQ_KV_FILE_MAX, &text, &n);

    if (ret == -ENOENT) {
        return 0;
    }
    if (ret < 0) {
        snprintf(err, errlen, "cannot read %s: %s", kv->path, strerror(-ret));
        return ret;
    }
    root = rmq_json_parse(text, n);
    free(text);
    table = cJSON_GetObjectItemCaseSensitive(root, "configTable");
    if (root == NULL || !cJSON_IsObject(table)) {
        snprintf(err, errlen, "%s is not {\"configTable\":{...}} JSON", kv->path);
        cJSON_Delete(root);
        return -EBADMSG;
    }
    cJSON_ArrayForEach(ns, table) {
        const cJSON *e;

        if (!cJSON_IsObject(ns)) {
            snprintf(err, errlen, "%s: namespace %s is not an object", kv->path, ns->string);
            ret = -EBADMSG;
            break;
        }
        cJSON_ArrayForEach(e, ns) {
            if (!cJSON_IsString(e)) {
                snprintf(err, errlen, "%s: %s.%s is not a string", kv->path, ns->string,
                         e->string);
                ret = -EBADMSG;
                break;
            }
            ret = put(kv, ns->string, e->string, e->valuestring, false);
            if (ret < 0) {
                break;
            }
        }
        if (ret < 0) {
            break;
        }
    }
    cJSON_Delete(root);
    return ret;
}

int
rmq_kvconfig_init(struct rmq_kvconfig *kv, const char *path, char *err, size_t errlen)
{
    int ret;

    rmq_strmap_init(&kv->namespaces);
    kv->path = NULL;
    kv->dirty = false;
    kv->file_bytes = 0;
    if (path == NULL) {
        return 0;
    }
    kv->path = strdup(path);
    if (kv->path == NULL) {
        return -ENOMEM;
    }
    ret = load(kv, err, errlen);
    if (ret < 0) {
        rmq_kvconfig_fini(kv);
    }
    kv->dirty = false;              /* what was loaded is what the file holds */
    return ret;
}
