/*
 * Small whole-file helpers for config and state files (topics, offsets, KV): read a
 * file whole, replace one atomically. Plain blocking syscalls: callers use them at
 * start, at shutdown, or for rare admin changes of small files, never per message.
 */
#ifndef RMQ_CORE_FILE_H
#define RMQ_CORE_FILE_H

#include <stddef.h>

/* mkdir -p: 0 when dir exists afterwards, else -errno (-ENAMETOOLONG past PATH_MAX). */
int rmq_mkdir_p(const char *dir);

/*
 * Replace path with data so that a crash leaves the old or the new content, never a
 * mix: parent directories made, data written to "<path>.tmp", fsync'd, renamed over
 * path, then the directory fsync'd. 0 or -errno (the temp file is removed on failure).
 */
int rmq_file_replace(const char *path, const void *data, size_t len);

/*
 * Read path whole into a malloc'd, NUL-terminated buffer (*out, length *len).
 * -ENOENT when absent, -EFBIG when larger than max, else -errno.
 */
int rmq_file_read_all(const char *path, size_t max, char **out, size_t *len);

#endif
