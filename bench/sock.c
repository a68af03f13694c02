/*
 * Blocking-socket helpers and the ping-pong baseline every latency figure is compared
 * with: a plain blocking server that answers each frame with either the same frame
 * (echo) or a small fixed reply, with TCP_NODELAY on both ends. It runs as its own
 * process, as the daemons it is compared with do: on these 2-vCPU VMs a server thread
 * inside the client's process measured 72-79 us p50 where a separate process took
 * about 40 us, which would flatter every ratio.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench.h"
#include "core/be.h"

int
rmq_bench_read_full(int fd, uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = read(fd, p, len);

        if (n <= 0) {
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int
rmq_bench_write_full(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n <= 0) {
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

ssize_t
rmq_bench_read_frame(int fd, uint8_t *buf, size_t cap)
{
    uint32_t len;

    if (rmq_bench_read_full(fd, buf, 4) < 0) {
        return -1;
    }
    len = rmq_get_be32(buf);
    if (len + 4 > cap || rmq_bench_read_full(fd, buf + 4, len) < 0) {
        return -1;
    }
    return (ssize_t)len + 4;
}

int
rmq_bench_tcp_connect(uint16_t port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;

    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static struct {
    int listen_fd;
    uint16_t port;
    size_t reply_len;
    pid_t pid;
} pp;

static void
pingpong_main(void)
{
    uint8_t *buf = malloc(1 << 20);
    uint8_t reply[256];

    memset(reply, 0, sizeof(reply));
    rmq_put_be32(reply, (uint32_t)(pp.reply_len - 4));
    for (;;) {
        int fd = accept(pp.listen_fd, NULL, NULL);
        int one = 1;
        ssize_t n;

        if (fd < 0) {
            break;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        while ((n = rmq_bench_read_frame(fd, buf, 1 << 20)) > 0) {
            const uint8_t *out = pp.reply_len ? reply : buf;

            if (rmq_bench_write_full(fd, out, pp.reply_len ? pp.reply_len : (size_t)n) < 0) {
                break;
            }
        }
        close(fd);
    }
    free(buf);
}

void
rmq_bench_pingpong_start(size_t reply_len)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t al = sizeof(a);

    pp.reply_len = reply_len > 0 && reply_len < 8 ? 8 : RMQ_BENCH_MIN(reply_len, 256);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    pp.listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    bind(pp.listen_fd, (struct sockaddr *)&a, sizeof(a));
    listen(pp.listen_fd, 16);
    getsockname(pp.listen_fd, (struct sockaddr *)&a, &al);
    pp.port = ntohs(a.sin_port);
    pp.pid = fork();
    if (pp.pid == 0) {
        pingpong_main();
        _exit(0);
    }
    close(pp.listen_fd);
}

uint16_t
rmq_bench_pingpong_port(void)
{
    return pp.port;
}

void
rmq_bench_pingpong_stop(void)
{
    if (pp.pid > 0) {
        kill(pp.pid, SIGKILL);
        waitpid(pp.pid, NULL, 0);
        pp.pid = 0;
    }
}
