#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int
rmq_mkdir_p(const char *dir)
{
    char tmp[PATH_MAX];
    size_t len = strlen(dir);

    if (len == 0 || len >= sizeof(tmp)) {
        return -ENAMETOOLONG;
    }
    memcpy(tmp, dir, len + 1);
    for (char *c = tmp + 1; *c != '\0'; c++) {
        if (*c == '/') {
            *c = '\0';
            if (mkdir(tmp, 0755) < 0 && errno != EEXIST) {
                return -errno;
            }
            *c = '/';
        }
    }
    return mkdir(tmp, 0755) < 0 && errno != EEXIST ? -errno : 0;
}

static int
write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The directory part of path ("." for a bare name) into out. */
static int
parent_dir(const char *path, char *out, size_t out_len)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL) {
        snprintf(out, out_len, ".");
        return 0;
    }
    if ((size_t)(slash - path) + 2 > out_len) {
        return -ENAMETOOLONG;
    }
    /* "/name" lives in "/" */
    memcpy(out, path, slash == path ? 1 : (size_t)(slash - path));
    out[slash == path ? 1 : slash - path] = '\0';
    return 0;
}

int
rmq_file_replace(const char *path, const void *data, size_t len)
{
    char dir[PATH_MAX];
    char tmp[PATH_MAX];
    int fd;
    int ret = parent_dir(path, dir, sizeof(dir));

    if (ret < 0 || (size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
        return -ENAMETOOLONG;
    }
    ret = rmq_mkdir_p(dir);
    if (ret < 0) {
        return ret;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        return -errno;
    }
    ret = write_all(fd, data, len);
    if (ret == 0 && fsync(fd) < 0) {
        ret = -errno;
    }
    close(fd);
    if (ret == 0 && rename(tmp, path) < 0) {
        ret = -errno;
    }
    if (ret < 0) {
        unlink(tmp);
        return ret;
    }
    /* the rename itself is durable only once the directory is */
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0) {
        ret = -errno;
    }
    if (fd >= 0) {
        close(fd);
    }
    return ret;
}

int
rmq_file_read_all(const char *path, size_t max, char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    char *text;
    size_t got = 0;
    int ret = 0;

    if (fd < 0) {
        return -errno;
    }
    if (fstat(fd, &st) < 0) {
        ret = -errno;
    } else if ((uint64_t)st.st_size > max) {
        ret = -EFBIG;
    }
    text = ret == 0 ? malloc((size_t)st.st_size + 1) : NULL;
    if (ret == 0 && text == NULL) {
        ret = -ENOMEM;
    }
    while (ret == 0 && got < (size_t)st.st_size) {
        ssize_t n = pread(fd, text + got, (size_t)st.st_size - got, (off_t)got);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            ret = n < 0 ? -errno : -EIO;     /* shrank under us */
        } else {
            got += (size_t)n;
        }
    }
    close(fd);
    if (ret < 0) {
        free(text);
        return ret;
    }
    text[got] = '\0';
    *out = text;
    *len = got;
    return 0;
}
