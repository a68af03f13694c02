/* Vector loading for unit tests; see vectors.h. */
#include "tests/unit/vectors.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *
vectors_dir(void)
{
    const char *env = getenv("RMQ_SPEC_DIR");

    return env != NULL ? env : "../shared/spec";
}

int
rmq_test_load_raw(const char *name, uint8_t **out, size_t *len)
{
    char path[512];
    FILE *f;
    long size;
    uint8_t *buf;

    snprintf(path, sizeof(path), "%s/vectors/%s", vectors_dir(), name);
    f = fopen(path, "rb");
    if (f == NULL) {
        return -errno;
    }
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)size + 1);
    if (buf == NULL || fread(buf, 1, (size_t)size, f) != (size_t)size) {
        free(buf);
        fclose(f);
        return -EIO;
    }
    fclose(f);
    buf[size] = 0;
    *out = buf;
    *len = (size_t)size;
    return 0;
}

static int
hexval(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

int
rmq_test_load_hex(const char *name, uint8_t **out, size_t *len)
{
    uint8_t *text;
    size_t tlen;
    size_t n = 0;
    int hi = -1;
    int ret = rmq_test_load_raw(name, &text, &tlen);

    if (ret < 0) {
        return ret;
    }
    for (size_t i = 0; i < tlen; i++) {
        int v = hexval(text[i]);

        if (v < 0) {
            continue;
        }
        if (hi < 0) {
            hi = v;
        } else {
            text[n++] = (uint8_t)(hi << 4 | v);
            hi = -1;
        }
    }
    *out = text;
    *len = n;
    return 0;
}

char **
rmq_test_list_vectors(const char *prefix, size_t *count)
{
    char path[512];
    DIR *d;
    struct dirent *e;
    char **names = NULL;
    size_t n = 0;

    snprintf(path, sizeof(path), "%s/vectors", vectors_dir());
    d = opendir(path);
    *count = 0;
    if (d == NULL) {
        return NULL;
    }
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);

        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0 || l < 4 ||
            strcmp(e->d_name + l - 4, ".hex") != 0) {
            continue;
        }
        names = realloc(names, (n + 2) * sizeof(*names));
        names[n++] = strdup(e->d_name);
        names[n] = NULL;
    }
    closedir(d);
    *count = n;
    return names;
}

void
rmq_test_free_list(char **names, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        free(names[i]);
    }
    free(names);
}
