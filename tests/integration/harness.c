/* Integration test harness; see harness.h. */
#include "tests/integration/harness.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/util.h"

struct test_clients C;

/* ---- daemons ---------------------------------------------------------------------------- */

void
daemon_path(const char *name, char *out, size_t cap)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

    cr_assert_gt(n, 0);
    self[n] = '\0';
    snprintf(out, cap, "%s/../bin/%s", dirname(self), name);     /* build/tests/.. */
}

uint16_t
daemon_log_int(const struct daemon *d, const char *prefix)
{
    static char buf[1 << 20];
    FILE *f = fopen(d->log, "r");
    const char *p;
    size_t n;

    if (f == NULL) {
        return 0;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strstr(buf, prefix);
    return p != NULL ? (uint16_t)atoi(p + strlen(prefix)) : 0;
}

void
daemon_spawn(struct daemon *d, const char *tag, const char *const *argv, const char *prefix)
{
    uint64_t end;
    pid_t parent;

    if (d->dir[0] == '\0') {
        snprintf(d->dir, sizeof(d->dir), "/tmp/%s-XXXXXX", tag);
        cr_assert_not_null(mkdtemp(d->dir));
    }
    snprintf(d->log, sizeof(d->log), "%s/%s.log", d->dir, tag);
    unlink(d->log);
    parent = getpid();
    d->pid = fork();
    cr_assert_geq(d->pid, 0);
    if (d->pid == 0) {
        int fd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);

        /* A test that crashes never stops its daemons: they die with it instead, and
         * hold none of its descriptors (a runner reading the test's output would wait
         * for a daemon's copy of it to close). */
        if (fd < 0 || prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent) {
            _exit(127);
        }
        dup2(fd, 1);
        dup2(fd, 2);
        close_range(3, ~0u, 0);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    end = rmq_clock_mono_ns() + 10000000000ull;
    while ((d->port = daemon_log_int(d, prefix)) == 0 && rmq_clock_mono_ns() < end) {
        usleep(5000);
    }
    cr_assert_neq(d->port, 0, "daemon did not start; see %s", d->log);
}

int
daemon_signal_wait(struct daemon *d, int sig)
{
    uint64_t end = rmq_clock_mono_ns() + 10000000000ull;
    int status;

    kill(d->pid, sig);
    while (waitpid(d->pid, &status, WNOHANG) == 0) {
        if (rmq_clock_mono_ns() > end) {
            kill(d->pid, SIGKILL);
            waitpid(d->pid, &status, 0);
            d->pid = 0;
            return -1;
        }
        usleep(5000);
    }
    d->pid = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int
daemon_stop_at(struct daemon *d)
{
    return daemon_signal_wait(d, SIGTERM);
}

void
daemon_stop_ok_at(struct daemon *d)
{
    int rc = daemon_stop_at(d);

    cr_assert_eq(rc, 0, "daemon exit status %d; see %s", rc, d->log);
}

void
cleanup_one(struct daemon *d)
{
    char cmd[128];

    if (d->pid > 0) {
        kill(d->pid, SIGKILL);
        waitpid(d->pid, NULL, 0);
        d->pid = 0;
    }
    if (d->dir[0] != '\0') {
        snprintf(cmd, sizeof(cmd), "rm -rf %s", d->dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "cleanup of %s failed\n", d->dir);
        }
        d->dir[0] = '\0';
    }
}

/* ---- clients -------------------------------------------------------------------------------- */

bool
run_until(bool (*cond)(void *), void *arg, uint64_t timeout_ms)
{
    uint64_t end = rmq_clock_mono_ns() + timeout_ms * 1000000u;

    while (!cond(arg)) {
        if (rmq_clock_mono_ns() > end) {
            return false;
        }
        cr_assert_eq(rmq_loop_run_once(&C.loop, 10 * 1000000u), 0);
    }
    return true;
}

bool
connected(void *arg)
{
    return rmq_client_is_connected(arg);
}

bool
disconnected(void *arg)
{
    return !rmq_client_is_connected(arg);
}

bool
stopped(void *arg)
{
    return ((struct rmq_client *)arg)->state == RMQ_CLIENT_STOPPED;
}

void
clients_up_to(int n, const uint16_t *ports)
{
    struct rmq_loop_config lcfg = {.name = "test"};

    cr_assert_eq(rmq_loop_init(&C.loop, &lcfg), 0);
    cr_assert_eq(rmq_net_loop_init(&C.nl, &C.loop, NULL, 2), 0);
    C.up = true;
    C.used = n;
    for (int i = 0; i < n; i++) {
        struct rmq_client_config cfg = {
            .host = "127.0.0.1", .port = ports[i], .no_reconnect = true,
        };

        cr_assert_eq(rmq_client_init(&C.cl[i], &C.nl, &cfg), 0);
        cr_assert(run_until(connected, &C.cl[i], 5000));
    }
}

void
client_stop(int i)
{
    rmq_client_stop(&C.cl[i]);
    cr_assert(run_until(stopped, &C.cl[i], 5000));
}

void
clients_down(void)
{
    for (int i = 0; i < C.used; i++) {
        if (C.cl[i].state != RMQ_CLIENT_STOPPED) {
            client_stop(i);
        }
        rmq_client_fini(&C.cl[i]);
    }
    rmq_net_loop_fini(&C.nl);
    rmq_loop_fini(&C.loop);
    C.up = false;
}

void
answer_done(struct rmq_call *call, int err, struct rmq_frame *resp)
{
    struct answer *a = rmq_container_of(call, struct answer, call);

    a->done = true;
    a->err = err;
    if (resp == NULL) {
        return;
    }
    a->code = resp->h.code;
    snprintf(a->remark, sizeof(a->remark), "%.*s", (int)resp->h.remark.len,
             resp->h.has_remark ? resp->h.remark.ptr : "");
    a->body = malloc(resp->body_len + 1);
    memcpy(a->body, resp->body, resp->body_len);
    a->body[resp->body_len] = '\0';
    a->body_len = resp->body_len;
    for (uint32_t i = 0; i < resp->h.ext_count && a->ext_count < ANSWER_EXT_MAX; i++) {
        snprintf(a->ext[a->ext_count][0], sizeof(a->ext[0][0]), "%.*s",
                 (int)resp->h.ext[i].key.len, resp->h.ext[i].key.ptr);
        snprintf(a->ext[a->ext_count][1], sizeof(a->ext[0][1]), "%.*s",
                 (int)resp->h.ext[i].val.len, resp->h.ext[i].val.ptr);
        a->ext_count++;
    }
}

const char *
answer_ext(const struct answer *a, const char *key)
{
    for (int i = 0; i < a->ext_count; i++) {
        if (strcmp(a->ext[i][0], key) == 0) {
            return a->ext[i][1];
        }
    }
    return NULL;
}

bool
answered(void *arg)
{
    return ((struct answer *)arg)->done;
}

void
answer_free(struct answer *a)
{
    free(a->body);
    a->body = NULL;
}

void
call_n(int ci, struct rmq_header *h, const void *body, uint32_t len, struct answer *a)
{
    memset(a, 0, sizeof(*a));
    a->call.done = answer_done;
    cr_assert_eq(rmq_client_call(&C.cl[ci], &a->call, h, body, len, 30000), 0);
    cr_assert(run_until(answered, a, 31000));
    cr_assert_eq(a->err, 0, "call failed: %d", a->err);
}

void
call(int ci, struct rmq_header *h, const char *body, struct answer *a)
{
    call_n(ci, h, body, body != NULL ? (uint32_t)strlen(body) : 0, a);
}

uint16_t
broker_spawn_standalone(struct daemon *d, const char *tag, const char *const *extra)
{
    char bin[PATH_MAX];
    char root[128];
    const char *argv[40];
    int argc = 0;
    uint16_t ns;

    daemon_path("rmq-broker", bin, sizeof(bin));
    if (d->dir[0] == '\0') {
        snprintf(d->dir, sizeof(d->dir), "/tmp/rmq-%s-XXXXXX", tag);
        cr_assert_not_null(mkdtemp(d->dir));
    }
    snprintf(root, sizeof(root), "--storePathRootDir=%s/data", d->dir);
    argv[argc++] = bin;
    argv[argc++] = "--standalone";
    argv[argc++] = "--listenPort=0";
    argv[argc++] = "--namesrvListenPort=0";
    argv[argc++] = "--bindAddress=127.0.0.1";
    argv[argc++] = "--brokerIP1=127.0.0.1";
    argv[argc++] = "--mappedFileSizeCommitLog=67108864";
    argv[argc++] = root;
    for (int i = 0; extra != NULL && extra[i] != NULL && argc < 39; i++) {
        argv[argc++] = extra[i];
    }
    argv[argc] = NULL;
    daemon_spawn(d, tag, argv, "broker: ready port=");
    ns = daemon_log_int(d, "namesrv_port=");
    cr_assert_neq(ns, 0);
    return ns;
}
