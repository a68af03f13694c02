/*
 * rmq-bench nats: a peer for bench/compare.sh — publishes to a NATS JetStream stream
 * with file storage and waits for each publish acknowledgement (the stream stored it),
 * like a RocketMQ send waits for SEND_OK. A small client of the text protocol on a
 * blocking socket, written for this: up to --inflight publishes are written before
 * their acks are read, each PUB naming its own reply subject so acks are matched.
 * Prints the same JSON as rmq-bench produce --json.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/hist.h"
#include "core/clock.h"

struct nconn {
    int fd;
    char buf[1 << 16];
    size_t len;
    size_t off;
};

static int
send_all(int fd, const void *p, size_t n)
{
    const char *c = p;

    while (n > 0) {
        ssize_t w = write(fd, c, n);

        if (w <= 0) {
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The next line (without \r\n) into out; -1 on a closed or failed connection. */
static int
read_line(struct nconn *c, char *out, size_t cap)
{
    for (;;) {
        char *nl = memchr(c->buf + c->off, '\n', c->len - c->off);

        if (nl != NULL) {
            size_t n = (size_t)(nl - (c->buf + c->off));

            if (n > 0 && nl[-1] == '\r') {
                n--;
            }
            snprintf(out, cap, "%.*s", (int)n, c->buf + c->off);
            c->off = (size_t)(nl - c->buf) + 1;
            return 0;
        }
        memmove(c->buf, c->buf + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
        if (c->len == sizeof(c->buf)) {
            return -1;
        }
        ssize_t r = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);

        if (r <= 0) {
            return -1;
        }
        c->len += (size_t)r;
    }
}

/* Skip n payload bytes and their \r\n, copying up to cap into out. */
static int
read_payload(struct nconn *c, size_t n, char *out, size_t cap)
{
    char line[4096];
    size_t want = n + 2;
    size_t got = 0;

    while (got < want) {
        size_t have = c->len - c->off;

        if (have == 0) {
            ssize_t r = read(c->fd, c->buf, sizeof(c->buf));

            if (r <= 0) {
                return -1;
            }
            c->len = (size_t)r;
            c->off = 0;
            continue;
        }
        size_t take = have < want - got ? have : want - got;

        if (got < cap) {
            memcpy(out + got, c->buf + c->off, got + take <= cap ? take : cap - got);
        }
        c->off += take;
        got += take;
    }
    (void)line;
    if (cap > 0) {
        out[n < cap ? n : cap - 1] = '\0';
    }
    return 0;
}

/* Read messages until one arrives (answering PINGs); its subject and payload. */
static int
next_msg(struct nconn *c, char *subject, size_t scap, char *payload, size_t pcap)
{
    char line[1024];

    for (;;) {
        char subj[512], sid[32], a3[512];
        long n;
        int k;

        if (read_line(c, line, sizeof(line)) < 0) {
            return -1;
        }
        if (strcmp(line, "PING") == 0) {
            send_all(c->fd, "PONG\r\n", 6);
            continue;
        }
        if (strncmp(line, "-ERR", 4) == 0) {
            fprintf(stderr, "rmq-bench nats: server says %s\n", line);
            return -1;
        }
        if (strncmp(line, "MSG ", 4) != 0) {
            continue;                   /* +OK, PONG, INFO */
        }
        k = sscanf(line + 4, "%511s %31s %511s %ld", subj, sid, a3, &n);
        if (k == 3) {
            n = atol(a3);               /* MSG subject sid bytes (no reply subject) */
        } else if (k != 4) {
            return -1;
        }
        snprintf(subject, scap, "%s", subj);
        return read_payload(c, (size_t)n, payload, pcap);
    }
}

int
rmq_bench_nats(int argc, char **argv)
{
    long count = rmq_bench_arg_long(argc, argv, "count", 100000);
    long size = rmq_bench_arg_long(argc, argv, "size", 1024);
    long inflight = rmq_bench_arg_long(argc, argv, "inflight", 1);
    long port = rmq_bench_arg_long(argc, argv, "port", 4222);
    static struct nconn c;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    static const char stream[] = "{\"name\":\"BENCH\",\"subjects\":[\"bench\"],\"storage\":\"file\"}";
    struct rmq_hist *h = calloc(1, sizeof(*h));
    uint64_t *due = calloc((size_t)count, sizeof(*due));
    char *out = malloc((size_t)size + 256);
    char subject[512], payload[1024], line[1024];
    long sent = 0, acked = 0, failed = 0;
    int one = 1;
    uint64_t t0;
    double secs;

    if (h == NULL || due == NULL || out == NULL || count < 1 || size < 1 || inflight < 1) {
        fprintf(stderr, "rmq-bench nats: --count >= 1, --size >= 1, --inflight >= 1\n");
        return 2;
    }
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    c.fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c.fd < 0 || connect(c.fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        fprintf(stderr, "rmq-bench nats: cannot connect to 127.0.0.1:%ld\n", port);
        return 1;
    }
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (read_line(&c, line, sizeof(line)) < 0 || strncmp(line, "INFO", 4) != 0) {
        fprintf(stderr, "rmq-bench nats: no INFO from the server\n");
        return 1;
    }
    snprintf(out, (size_t)size + 256,
             "CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1}\r\n"
             "SUB _INBOX.api 1\r\nSUB _INBOX.ack.* 2\r\n"
             "PUB $JS.API.STREAM.CREATE.BENCH _INBOX.api %zu\r\n%s\r\n",
             sizeof(stream) - 1, stream);
    if (send_all(c.fd, out, strlen(out)) < 0 ||
        next_msg(&c, subject, sizeof(subject), payload, sizeof(payload)) < 0) {
        fprintf(stderr, "rmq-bench nats: stream not created\n");
        return 1;
    }
    if (strstr(payload, "\"error\"") != NULL && strstr(payload, "already in use") == NULL) {
        fprintf(stderr, "rmq-bench nats: stream create: %s\n", payload);
        return 1;
    }
    t0 = rmq_clock_mono_ns();
    while (acked + failed < count) {
        /* write until inflight are out, then read acks */
        while (sent < count && sent - acked - failed < inflight) {
            int n = snprintf(out, 64, "PUB bench _INBOX.ack.%ld %ld\r\n", sent, size);

            memset(out + n, 'b', (size_t)size);
            memcpy(out + n + size, "\r\n", 2);
            due[sent] = rmq_clock_mono_ns();
            if (send_all(c.fd, out, (size_t)n + (size_t)size + 2) < 0) {
                fprintf(stderr, "rmq-bench nats: connection lost\n");
                return 1;
            }
            sent++;
        }
        if (next_msg(&c, subject, sizeof(subject), payload, sizeof(payload)) < 0) {
            fprintf(stderr, "rmq-bench nats: connection lost after %ld acks\n", acked);
            return 1;
        }
        if (strncmp(subject, "_INBOX.ack.", 11) == 0) {
            long seq = atol(subject + 11);

            if (strstr(payload, "\"error\"") != NULL || seq < 0 || seq >= count) {
                failed++;
                continue;
            }
            rmq_hist_record(h, rmq_clock_mono_ns() - due[seq]);
            acked++;
        }
    }
    secs = (double)(rmq_clock_mono_ns() - t0) / 1e9;
    printf("{\"command\":\"nats\",\"size\":%ld,\"msgs\":%ld,\"failed\":%ld,\"seconds\":%.3f,"
           "\"msgs_per_s\":%.0f,\"mb_per_s\":%.1f,\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,"
           "\"p99\":%.1f,\"p99.9\":%.1f,\"max\":%.1f}}\n", size, acked, failed, secs,
           (double)acked / secs, (double)acked * (double)size / secs / 1e6,
           rmq_hist_at(h, 50) / 1e3, rmq_hist_at(h, 90) / 1e3, rmq_hist_at(h, 99) / 1e3,
           rmq_hist_at(h, 99.9) / 1e3, h->max / 1e3);
    close(c.fd);
    free(h);
    free(due);
    free(out);
    return failed > 0;
}
