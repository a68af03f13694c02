/*
 * Shared by the integration tests: real daemons started from build/bin (next to the
 * test binary: ../bin) on loopback, stopped by PID; and rmq_client connections on
 * this thread's loop that send requests through the real codec and wait for answers.
 */
#ifndef RMQ_TESTS_HARNESS_H
#define RMQ_TESTS_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/loop.h"
#include "net/client.h"
#include "net/conn.h"

struct daemon {
    pid_t pid;
    uint16_t port;
    char dir[64];
    char log[128];
};

/* build/bin/<name> next to this test binary. */
void daemon_path(const char *name, char *out, size_t cap);
/* The number after prefix in d's log, or 0. */
uint16_t daemon_log_int(const struct daemon *d, const char *prefix);
/* Make d->dir (when empty: a fresh /tmp/<tag>-XXXXXX), fork and exec argv with stderr to
 * d->log, then wait up to 5 s for prefix in the log; d->port is the number after it. */
void daemon_spawn(struct daemon *d, const char *tag, const char *const *argv, const char *prefix);
/* Send sig (SIGTERM: graceful); the exit status, 128+signal, or -1 after 10 s. */
int daemon_signal_wait(struct daemon *d, int sig);
int daemon_stop_at(struct daemon *d);
void daemon_stop_ok_at(struct daemon *d);
/* build/bin/rmq-broker --standalone on 127.0.0.1 with free ports and 64 MiB segments, its
 * data in d->dir (a fresh /tmp/rmq-<tag>-XXXXXX the first time, the same on restarts),
 * then extra (NULL-terminated, may be NULL). The embedded NameServer's port. */
uint16_t broker_spawn_standalone(struct daemon *d, const char *tag, const char *const *extra);
/* SIGKILL if running, remove its directory. */
void cleanup_one(struct daemon *d);

#define MAX_CLIENTS 8

extern struct test_clients {
    struct rmq_loop loop;
    struct rmq_net_loop nl;
    struct rmq_client cl[MAX_CLIENTS];
    int used;
    bool up;
} C;

bool run_until(bool (*cond)(void *), void *arg, uint64_t timeout_ms);
bool connected(void *arg);
bool disconnected(void *arg);
bool stopped(void *arg);
/* n clients; client i connects to ports[i]. */
void clients_up_to(int n, const uint16_t *ports);
void client_stop(int i);
void clients_down(void);

#define ANSWER_EXT_MAX 16

struct answer {
    struct rmq_call call;
    bool done;
    int err;
    int code;
    char remark[512];
    char *body;                     /* malloc'd, NUL-terminated */
    uint32_t body_len;
    char ext[ANSWER_EXT_MAX][2][256];
    int ext_count;
};

void answer_done(struct rmq_call *call, int err, struct rmq_frame *resp);
const char *answer_ext(const struct answer *a, const char *key);
bool answered(void *arg);
void answer_free(struct answer *a);
/* One request on client ci with a body of len bytes; waits for the answer (asserts it). */
void call_n(int ci, struct rmq_header *h, const void *body, uint32_t len, struct answer *a);
/* Same with a NUL-terminated body (or NULL). */
void call(int ci, struct rmq_header *h, const char *body, struct answer *a);

#endif
