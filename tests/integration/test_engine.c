/*
 * The engine over loopback: a real server loop thread and client loops, on a free
 * port chosen by the kernel. Covers pipelined request/response matching over many
 * connections in both serializations, unknown codes, timeouts, reconnect,
 * server-initiated requests, a peer that stops reading (bounded memory), and peers
 * that disconnect mid-frame or send garbage.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/be.h"
#include "core/clock.h"
#include "core/loop.h"
#include "core/util.h"
#include "net/client.h"
#include "net/codes.h"
#include "net/conn.h"
#include "net/server.h"

#define CODE_ECHO 105
#define CODE_BIG 28
#define CODE_NOREPLY 30
#define CODE_CLOSEME 31
#define CODE_CALLBACK 32
#define BIG_BODY (64 << 10)
#define TX_LIMIT (256 << 10)

/* ---- server thread ---------------------------------------------------------------- */

static struct {
    pthread_t th;
    struct rmq_loop loop;
    struct rmq_net_loop nl;
    struct rmq_server srv;
    pthread_barrier_t ready;
    struct rmq_loop_msg stop_msg;
    struct rmq_loop_msg stats_msg;
    _Atomic uint64_t max_tx_queued;
    _Atomic uint32_t live_conns;
    _Atomic uint64_t pauses;
    _Atomic uint64_t proto_errors;
    _Atomic int callback_answer;
    _Atomic uint32_t chunks_free;
    _Atomic uint64_t recv_nobufs;
    _Atomic uint32_t bufs_in_ring;
    uint16_t port;
} S;

static uint8_t big_body[BIG_BODY];

static void
h_echo(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    struct rmq_header resp;
    struct rmq_str seq;

    (void)ref;
    (void)ctx;
    rmq_header_init_response(&resp, &req->h, RMQ_RESP_SUCCESS);
    if (rmq_header_get(&req->h, "seq", &seq)) {
        rmq_header_add_n(&resp, "seq", 3, seq.ptr, seq.len);
    }
    rmq_conn_respond(c, &req->h, &resp, req->body, req->body_len);
}

static void
h_big(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    uint64_t q;
    uint64_t max;

    (void)ref;
    (void)ctx;
    rmq_conn_reply(c, &req->h, RMQ_RESP_SUCCESS, NULL, big_body, sizeof(big_body));
    q = c->tx_queued;
    max = atomic_load(&S.max_tx_queued);
    while (q > max && !atomic_compare_exchange_weak(&S.max_tx_queued, &max, q)) {
    }
}

static void
h_noreply(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    (void)c;
    (void)req;
    (void)ref;
    (void)ctx;
}

static void
h_closeme(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    (void)req;
    (void)ref;
    (void)ctx;
    rmq_conn_close(c, 0);
}

static void
h_callback(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    struct rmq_header out;

    (void)ref;
    (void)ctx;
    /* ask the client something on its own connection, then answer the request */
    rmq_header_init(&out, RMQ_REQ_NOTIFY_CONSUMER_IDS_CHANGED, (enum rmq_serialize)req->h.serialize);
    out.opaque = 4242;
    rmq_header_add(&out, "consumerGroup", "CG");
    rmq_conn_send(c, &out, NULL, 0);
    rmq_conn_reply(c, &req->h, RMQ_RESP_SUCCESS, NULL, NULL, 0);
}

/* Holds receive buffers past the callback, answers later from a timer (see test). */
#define CODE_HOLD 33
#define HOLD_MAX 2048

struct held {
    struct rmq_bufref ref;
    struct rmq_conn_handle conn;
    const uint8_t *body;
    uint32_t body_len;
    int32_t opaque;
    uint8_t serialize;
};

static struct held held[HOLD_MAX];
static int held_count;
static struct rmq_timer hold_timer;

static bool
body_intact(const uint8_t *b, uint32_t len)
{
    uint32_t seq = len >= 4 ? rmq_get_be32(b) : 0;

    for (uint32_t i = 4; i < len; i++) {
        if (b[i] != (uint8_t)(seq * 31 + i)) {
            return false;
        }
    }
    return len >= 4;
}

static void
hold_release_all(struct rmq_timer *t)
{
    (void)t;
    for (int i = 0; i < held_count; i++) {
        struct held *hd = &held[i];
        struct rmq_conn *c = rmq_conn_from_handle(hd->conn);
        struct rmq_header resp;

        if (c != NULL) {
            rmq_header_init(&resp, body_intact(hd->body, hd->body_len) ? RMQ_RESP_SUCCESS
                                                                       : RMQ_RESP_SYSTEM_ERROR,
                            (enum rmq_serialize)hd->serialize);
            resp.opaque = hd->opaque;
            resp.flag = RMQ_FLAG_RESPONSE;
            rmq_conn_send(c, &resp, NULL, 0);
        }
        rmq_bufref_release(&hd->ref);
    }
    held_count = 0;
}

static void
h_hold(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    struct held *hd;

    (void)ctx;
    if (held_count == HOLD_MAX || rmq_bufref_acquire(ref) < 0) {
        /* assembled across buffers (or full): nothing to hold, answer now */
        rmq_conn_reply(c, &req->h,
                       body_intact(req->body, req->body_len) ? RMQ_RESP_SUCCESS
                                                             : RMQ_RESP_SYSTEM_ERROR,
                       NULL, NULL, 0);
        return;
    }
    hd = &held[held_count++];
    hd->ref = *ref;
    hd->conn = rmq_conn_handle(c);
    hd->body = req->body;
    hd->body_len = req->body_len;
    hd->opaque = req->h.opaque;
    hd->serialize = req->h.serialize;
    if (!rmq_timer_is_armed(&hold_timer)) {
        rmq_timer_arm(&S.loop, &hold_timer, 100 * 1000000ull, hold_release_all);
    }
}

static void
on_server_response(struct rmq_conn *c, struct rmq_frame *resp, const struct rmq_bufref *ref,
                   void *ctx)
{
    (void)c;
    (void)ref;
    (void)ctx;
    if (resp->h.opaque == 4242) {
        atomic_store(&S.callback_answer, resp->h.code + 1000);
    }
}

static void
server_stopped(struct rmq_server *srv)
{
    (void)srv;
    rmq_loop_stop(&S.loop);
}

static void
stop_fn(struct rmq_loop_msg *m)
{
    (void)m;
    S.srv.on_stopped = server_stopped;
    rmq_server_stop(&S.srv);
}

static void
stats_fn(struct rmq_loop_msg *m)
{
    (void)m;
    atomic_store(&S.live_conns, S.srv.live_conns);
    atomic_store(&S.pauses, S.nl.stats.pauses);
    atomic_store(&S.proto_errors, S.nl.stats.proto_errors);
    atomic_store(&S.chunks_free, S.nl.chunks_free);
    atomic_store(&S.recv_nobufs, S.nl.stats.recv_nobufs);
    atomic_store(&S.bufs_in_ring, S.nl.bufs.in_ring);
}

static void *
server_main(void *arg)
{
    struct rmq_net_config ncfg = {
        .recv_buf_count = 256,
        .recv_buf_size = 16 << 10,
        .tx_chunk_count = 512,
        .tx_chunk_size = 16 << 10,
        .conn_tx_limit = TX_LIMIT,
        .limits = {.max_frame = 1 << 20, .max_header = 64 << 10},
    };
    struct rmq_server_config scfg = {.host = "127.0.0.1", .port = 0, .max_conns = 64};
    struct rmq_loop_config lcfg = {.name = "server"};

    (void)arg;
    /* Criterion asserts belong to the test thread: a set-up failure aborts instead. */
    RMQ_ASSERT(rmq_loop_init(&S.loop, &lcfg) == 0);
    RMQ_ASSERT(rmq_net_loop_init(&S.nl, &S.loop, &ncfg, 1) == 0);
    RMQ_ASSERT(rmq_server_init(&S.srv, &S.nl, &scfg) == 0);
    rmq_server_handle(&S.srv, CODE_ECHO, h_echo, NULL);
    rmq_server_handle(&S.srv, CODE_BIG, h_big, NULL);
    rmq_server_handle(&S.srv, CODE_NOREPLY, h_noreply, NULL);
    rmq_server_handle(&S.srv, CODE_CLOSEME, h_closeme, NULL);
    rmq_server_handle(&S.srv, CODE_CALLBACK, h_callback, NULL);
    rmq_server_handle(&S.srv, CODE_HOLD, h_hold, NULL);
    rmq_server_on_response(&S.srv, on_server_response, NULL);
    S.port = S.srv.port;
    pthread_barrier_wait(&S.ready);
    rmq_loop_run(&S.loop);
    rmq_server_fini(&S.srv);
    rmq_net_loop_fini(&S.nl);
    rmq_loop_fini(&S.loop);
    return NULL;
}

static void
server_start(void)
{
    pthread_barrier_init(&S.ready, NULL, 2);
    pthread_create(&S.th, NULL, server_main, NULL);
    pthread_barrier_wait(&S.ready);
}

static void
server_stop(void)
{
    S.stop_msg.fn = stop_fn;
    rmq_loop_post(&S.loop, &S.stop_msg);
    pthread_join(S.th, NULL);
}

/* Snapshot server stats from its own thread (posted message), wait a moment for it. */
static void
server_stats(void)
{
    S.stats_msg.fn = stats_fn;
    atomic_store(&S.live_conns, UINT32_MAX);
    rmq_loop_post(&S.loop, &S.stats_msg);
    for (int i = 0; i < 1000 && atomic_load(&S.live_conns) == UINT32_MAX; i++) {
        usleep(1000);
    }
}

/* ---- client side (this thread) -------------------------------------------------------- */

#define NCLIENTS 8
#define NREQ 10000
#define WINDOW 64
#define BODY 100

static struct {
    struct rmq_loop loop;
    struct rmq_net_loop nl;
    struct rmq_client cl[NCLIENTS];
} C;

struct req_call {
    struct rmq_call call;
    int client;
    int seq;
};

static struct req_call calls[NCLIENTS][NREQ];
static int sent[NCLIENTS];
static int answered;
static int mismatches;
static int errors;

static void
client_setup(int n, enum rmq_serialize ser_unused)
{
    struct rmq_loop_config lcfg = {.name = "client"};

    (void)ser_unused;
    cr_assert_eq(rmq_loop_init(&C.loop, &lcfg), 0);
    cr_assert_eq(rmq_net_loop_init(&C.nl, &C.loop, NULL, 2), 0);
    for (int i = 0; i < n; i++) {
        struct rmq_client_config cfg = {
            .host = "127.0.0.1", .port = S.port, .reconnect_min_ms = 20,
        };

        cr_assert_eq(rmq_client_init(&C.cl[i], &C.nl, &cfg), 0);
    }
}

static bool
run_until(bool (*cond)(void), uint64_t timeout_ms)
{
    uint64_t end = rmq_clock_mono_ns() + timeout_ms * 1000000u;

    while (!cond()) {
        if (rmq_clock_mono_ns() > end) {
            return false;
        }
        cr_assert_eq(rmq_loop_run_once(&C.loop, 10 * 1000000u), 0);
    }
    return true;
}

static int nclients_used;

static bool
all_connected(void)
{
    for (int i = 0; i < nclients_used; i++) {
        if (!rmq_client_is_connected(&C.cl[i])) {
            return false;
        }
    }
    return true;
}

static bool
all_stopped(void)
{
    for (int i = 0; i < nclients_used; i++) {
        if (C.cl[i].state != RMQ_CLIENT_STOPPED) {
            return false;
        }
    }
    return true;
}

static void
client_teardown(void)
{
    for (int i = 0; i < nclients_used; i++) {
        rmq_client_stop(&C.cl[i]);
    }
    cr_assert(run_until(all_stopped, 5000));
    for (int i = 0; i < nclients_used; i++) {
        rmq_client_fini(&C.cl[i]);
    }
    rmq_net_loop_fini(&C.nl);
    rmq_loop_fini(&C.loop);
}

static void send_next(int ci);

static void
echo_done(struct rmq_call *call, int err, struct rmq_frame *resp)
{
    struct req_call *rc = rmq_container_of(call, struct req_call, call);
    int64_t seq = -1;

    if (err != 0) {
        errors++;
        return;
    }
    answered++;
    if (rmq_header_get_i64(&resp->h, "seq", &seq) != 0 || seq != rc->seq ||
        resp->body_len != BODY || resp->body[0] != (uint8_t)rc->seq ||
        resp->body[BODY - 1] != (uint8_t)(rc->seq * 7) ||
        resp->h.serialize != (rc->client % 2 ? RMQ_SER_ROCKETMQ : RMQ_SER_JSON)) {
        mismatches++;
    }
    send_next(rc->client);
}

static void
send_next(int ci)
{
    struct rmq_header h;
    uint8_t body[BODY];
    struct req_call *rc;
    int ret;

    if (sent[ci] == NREQ) {
        return;
    }
    rc = &calls[ci][sent[ci]];
    rc->client = ci;
    rc->seq = sent[ci];
    rc->call.done = echo_done;
    memset(body, 0x5A, sizeof(body));
    body[0] = (uint8_t)rc->seq;
    body[BODY - 1] = (uint8_t)(rc->seq * 7);
    rmq_header_init(&h, CODE_ECHO, ci % 2 ? RMQ_SER_ROCKETMQ : RMQ_SER_JSON);
    rmq_header_add_i64(&h, "seq", rc->seq);
    ret = rmq_client_call(&C.cl[ci], &rc->call, &h, body, sizeof(body), 10000);
    cr_assert_eq(ret, 0, "call failed: %d", ret);
    sent[ci]++;
}

static bool
all_answered(void)
{
    return answered + errors == NCLIENTS * NREQ;
}

Test(engine, eight_connections_ten_thousand_pipelined_requests_each, .timeout = 120)
{
    server_start();
    nclients_used = NCLIENTS;
    client_setup(NCLIENTS, RMQ_SER_JSON);
    cr_assert(run_until(all_connected, 5000));
    for (int ci = 0; ci < NCLIENTS; ci++) {
        for (int w = 0; w < WINDOW; w++) {
            send_next(ci);
        }
    }
    cr_assert(run_until(all_answered, 90000), "answered %d of %d", answered, NCLIENTS * NREQ);
    cr_assert_eq(errors, 0);
    cr_assert_eq(mismatches, 0);
    cr_assert_eq(answered, NCLIENTS * NREQ);
    for (int ci = 0; ci < NCLIENTS; ci++) {
        cr_assert_eq(C.cl[ci].stats.unmatched, 0);
        cr_assert_eq(C.cl[ci].pending_count, 0);
    }
    /* pipelining batches: far fewer enters than requests on the client loop */
    cr_assert_lt(C.loop.stats.enters, (uint64_t)NCLIENTS * NREQ);
    client_teardown();
    server_stop();
}

/* ---- single-call helpers ------------------------------------------------------------------ */

struct one_call {
    struct rmq_call call;
    bool done;
    int err;
    int code;
    char remark[128];
};

static void
one_done(struct rmq_call *call, int err, struct rmq_frame *resp)
{
    struct one_call *oc = rmq_container_of(call, struct one_call, call);

    oc->done = true;
    oc->err = err;
    if (resp != NULL) {
        oc->code = resp->h.code;
        snprintf(oc->remark, sizeof(oc->remark), "%.*s", (int)resp->h.remark.len,
                 resp->h.has_remark ? resp->h.remark.ptr : "");
    }
}

static struct one_call *waiting_call;

static bool
call_finished(void)
{
    return waiting_call->done;
}

static void
call_once(int ci, int code, uint32_t timeout_ms, struct one_call *oc)
{
    struct rmq_header h;

    memset(oc, 0, sizeof(*oc));
    oc->call.done = one_done;
    rmq_header_init(&h, code, RMQ_SER_JSON);
    cr_assert_eq(rmq_client_call(&C.cl[ci], &oc->call, &h, NULL, 0, timeout_ms), 0);
    waiting_call = oc;
    cr_assert(run_until(call_finished, 10000));
}

/* Server thread plus one connected client on this thread. */
static void
one_client_up(void)
{
    server_start();
    nclients_used = 1;
    client_setup(1, RMQ_SER_JSON);
    cr_assert(run_until(all_connected, 5000));
}

Test(engine, unknown_code_answered_not_supported_and_connection_kept, .timeout = 30)
{
    struct one_call oc;

    one_client_up();
    call_once(0, 777, 2000, &oc);
    cr_assert_eq(oc.err, 0);
    cr_assert_eq(oc.code, RMQ_RESP_REQUEST_CODE_NOT_SUPPORTED);
    cr_assert_str_eq(oc.remark, " request type 777 not supported");
    call_once(0, CODE_ECHO, 2000, &oc);
    cr_assert_eq(oc.err, 0);
    cr_assert_eq(oc.code, RMQ_RESP_SUCCESS);
    cr_assert_eq(C.cl[0].stats.connects, 1);
    client_teardown();
    server_stop();
}

Test(engine, timeout_then_late_nothing_and_reconnect_after_server_close, .timeout = 30)
{
    struct one_call oc;

    one_client_up();
    call_once(0, CODE_NOREPLY, 100, &oc);
    cr_assert_eq(oc.err, -ETIMEDOUT);
    cr_assert_eq(C.cl[0].stats.timeouts, 1);
    /* server closes the connection while the call is pending: -ECONNRESET */
    call_once(0, CODE_CLOSEME, 5000, &oc);
    cr_assert_eq(oc.err, -ECONNRESET);
    cr_assert(run_until(all_connected, 5000), "no reconnect");
    call_once(0, CODE_ECHO, 2000, &oc);
    cr_assert_eq(oc.err, 0);
    cr_assert_eq(C.cl[0].stats.connects, 2);
    client_teardown();
    server_stop();
}

static int client_requests_seen;

static void
client_on_request(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref,
                  void *ctx)
{
    (void)ref;
    (void)ctx;
    if (req->h.code == RMQ_REQ_NOTIFY_CONSUMER_IDS_CHANGED) {
        client_requests_seen++;
        rmq_conn_reply(c, &req->h, RMQ_RESP_SYSTEM_BUSY, NULL, NULL, 0);
    }
}

static bool
callback_answered(void)
{
    return atomic_load(&S.callback_answer) != 0;
}

Test(engine, server_initiated_request_reaches_client_handler, .timeout = 30)
{
    struct one_call oc;

    one_client_up();
    C.cl[0].on_request = client_on_request;
    call_once(0, CODE_CALLBACK, 2000, &oc);
    cr_assert_eq(oc.err, 0);
    cr_assert_eq(client_requests_seen, 1);
    cr_assert(run_until(callback_answered, 5000));
    cr_assert_eq(atomic_load(&S.callback_answer), 1000 + RMQ_RESP_SYSTEM_BUSY);
    client_teardown();
    server_stop();
}

/* ---- raw sockets: misbehaving peers ----------------------------------------------------- */

static int
raw_connect(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(S.port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

static size_t
json_request(uint8_t *out, int code, int opaque)
{
    char hdr[128];
    int hl = snprintf(hdr, sizeof(hdr), "{\"code\":%d,\"opaque\":%d,\"flag\":0}", code, opaque);

    rmq_put_be32(out, (uint32_t)(4 + hl));
    rmq_put_be32(out + 4, (uint32_t)hl);
    memcpy(out + 8, hdr, (size_t)hl);
    return (size_t)hl + 8;
}

/* Wait until the server closes fd (read returns 0 or an error). */
static bool
closed_by_server(int fd)
{
    uint8_t sink[4096];

    for (int i = 0; i < 500; i++) {
        struct pollfd p = {.fd = fd, .events = POLLIN};

        if (poll(&p, 1, 10) == 1) {
            ssize_t n = read(fd, sink, sizeof(sink));

            if (n <= 0) {
                return true;
            }
        }
    }
    return false;
}

static void
wait_live_conns(uint32_t want)
{
    for (int i = 0; i < 200; i++) {
        server_stats();
        if (atomic_load(&S.live_conns) == want) {
            return;
        }
        usleep(5000);
    }
    cr_assert_fail("server still has %u connections, want %u", atomic_load(&S.live_conns), want);
}

Test(engine, peer_disconnecting_mid_frame_is_cleaned_up, .timeout = 30)
{
    uint8_t wire[256];
    size_t n;

    server_start();
    for (int round = 0; round < 20; round++) {
        int fd = raw_connect();

        n = json_request(wire, CODE_ECHO, round);
        /* a frame cut at every kind of place: inside length, header, or claimed body */
        rmq_put_be32(wire, (uint32_t)(n - 4 + 1000));
        cr_assert_eq(write(fd, wire, (size_t)(round % 4 == 0 ? 2 : n - (size_t)round % 7)),
                     (ssize_t)(round % 4 == 0 ? 2 : n - (size_t)round % 7));
        close(fd);
    }
    wait_live_conns(0);
    server_stop();
}

Test(engine, garbage_and_oversized_frames_close_only_that_connection, .timeout = 30)
{
    uint8_t wire[256];
    int good = 0;
    int bad;
    size_t n;

    server_start();
    good = raw_connect();
    bad = raw_connect();
    /* garbage: serialize type 7 */
    memcpy(wire, "\x00\x00\x00\x10\x07\x00\x00\x04garbagegarbage", 20);
    cr_assert_eq(write(bad, wire, 20), 20);
    cr_assert(closed_by_server(bad));
    close(bad);
    bad = raw_connect();
    rmq_put_be32(wire, 64u << 20);              /* 64 MiB frame: over the 1 MiB limit */
    cr_assert_eq(write(bad, wire, 4), 4);
    cr_assert(closed_by_server(bad));
    close(bad);
    /* the other connection is still served */
    n = json_request(wire, CODE_ECHO, 9);
    cr_assert_eq(write(good, wire, n), (ssize_t)n);
    cr_assert_gt(read(good, wire, sizeof(wire)), 8);
    cr_assert_eq(rmq_get_be32(wire + 4) >> 24, 0);      /* JSON answer to JSON request */
    server_stats();
    cr_assert_eq(atomic_load(&S.proto_errors), 2);
    close(good);
    wait_live_conns(0);
    server_stop();
}

Test(engine, peer_that_stops_reading_is_paused_with_bounded_memory, .timeout = 60)
{
    uint8_t req[64];
    size_t n = json_request(req, CODE_BIG, 1);
    size_t total_req = 0;
    size_t got = 0;
    size_t want;
    int fd;
    int sent_reqs = 0;
    uint8_t *buf = malloc(1 << 20);

    server_start();
    fd = raw_connect();
    /* 2000 requests asking for 64 KiB each: 125 MiB of answers, nobody reading */
    for (int i = 0; i < 2000; i++) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};

        if (poll(&p, 1, 200) != 1) {
            break;          /* the server stopped reading us: backpressure reached us */
        }
        cr_assert_eq(write(fd, req, n), (ssize_t)n);
        total_req += n;
        sent_reqs++;
    }
    usleep(200 * 1000);
    server_stats();
    cr_assert_gt(atomic_load(&S.pauses), 0, "server never paused the connection");
    /* queued output stayed near the limit, never the 125 MiB asked for */
    cr_assert_leq(atomic_load(&S.max_tx_queued), (uint64_t)TX_LIMIT + BIG_BODY + 4096);
    /* now read everything: every answer arrives */
    want = (size_t)sent_reqs * (BIG_BODY + 8 + 100);
    while (got < (size_t)sent_reqs * BIG_BODY) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ssize_t r;

        if (poll(&p, 1, 5000) != 1) {
            break;
        }
        r = read(fd, buf, 1 << 20);
        if (r <= 0) {
            break;
        }
        got += (size_t)r;
    }
    cr_assert_geq(got, (size_t)sent_reqs * BIG_BODY, "got %zu of about %zu", got, want);
    close(fd);
    wait_live_conns(0);
    server_stats();
    cr_assert_eq(atomic_load(&S.chunks_free), 512, "tx chunks leaked");
    free(buf);
    server_stop();
}

/*
 * Consume the whole frames at the start of in[0..*got), keep the partial tail at the
 * front; returns how many were consumed and adds those answering SUCCESS to *ok.
 */
static int
take_frames(uint8_t *in, size_t *got, int *ok)
{
    size_t o = 0;
    int n = 0;

    while (*got - o >= 4 && *got - o >= 4 + rmq_get_be32(in + o)) {
        uint32_t len = 4 + rmq_get_be32(in + o);

        if (ok != NULL) {
            *ok += memmem(in + o, len, "\"code\":0,", 9) != NULL;
        }
        o += len;
        n++;
    }
    memmove(in, in + o, *got - o);
    *got -= o;
    return n;
}

/* Read what is there (waiting up to 5 s) and consume whole frames. */
static int
read_frames(int fd, uint8_t *in, size_t cap, size_t *got, int *ok)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    ssize_t r;

    cr_assert_eq(poll(&p, 1, 5000), 1, "no answer within 5 s");
    r = read(fd, in + *got, cap - *got);
    cr_assert_gt(r, 0);
    *got += (size_t)r;
    return take_frames(in, got, ok);
}

Test(engine, oneway_request_gets_no_response, .timeout = 30)
{
    uint8_t wire[512];
    char hdr[128];
    size_t n;
    int hl;
    int fd;

    server_start();
    fd = raw_connect();
    /* oneway request of an unknown code: no answer, not even NOT_SUPPORTED */
    hl = snprintf(hdr, sizeof(hdr), "{\"code\":777,\"opaque\":1,\"flag\":2}");
    rmq_put_be32(wire, (uint32_t)(4 + hl));
    rmq_put_be32(wire + 4, (uint32_t)hl);
    memcpy(wire + 8, hdr, (size_t)hl);
    n = (size_t)hl + 8;
    /* oneway echo: also no answer */
    hl = snprintf(hdr, sizeof(hdr), "{\"code\":%d,\"opaque\":2,\"flag\":2}", CODE_ECHO);
    rmq_put_be32(wire + n, (uint32_t)(4 + hl));
    rmq_put_be32(wire + n + 4, (uint32_t)hl);
    memcpy(wire + n + 8, hdr, (size_t)hl);
    n += (size_t)hl + 8;
    n += json_request(wire + n, CODE_ECHO, 3);
    cr_assert_eq(write(fd, wire, n), (ssize_t)n);
    n = (size_t)read(fd, wire, sizeof(wire));
    cr_assert_gt(n, 8);
    /* the first and only response is the one for opaque 3 */
    cr_assert_eq(rmq_get_be32(wire), n - 4, "more than one response arrived");
    cr_assert(memmem(wire, n, "\"opaque\":3", 10) != NULL);
    close(fd);
    server_stop();
}

Test(engine, injected_send_and_recv_errors_close_cleanly_and_reconnect, .timeout = 30)
{
    struct one_call oc;

    one_client_up();
    /* the next send completes with EPIPE: the call fails, the connection is rebuilt */
    rmq_loop_inject(&C.loop, &C.cl[0].conn.send_op, 1, -EPIPE);
    call_once(0, CODE_ECHO, 2000, &oc);
    cr_assert_eq(oc.err, -ECONNRESET);
    cr_assert(run_until(all_connected, 5000));
    call_once(0, CODE_ECHO, 2000, &oc);
    cr_assert_eq(oc.err, 0);
    /* the next receive completion reports a reset instead of the answer */
    rmq_loop_inject(&C.loop, &C.cl[0].conn.recv_op, 1, -ECONNRESET);
    call_once(0, CODE_ECHO, 2000, &oc);
    cr_assert_eq(oc.err, -ECONNRESET);
    cr_assert(run_until(all_connected, 5000));
    call_once(0, CODE_ECHO, 2000, &oc);
    cr_assert_eq(oc.err, 0);
    cr_assert_eq(C.cl[0].stats.connects, 3);
    client_teardown();
    wait_live_conns(0);
    server_stop();
}

Test(engine, frames_split_at_every_byte_and_many_per_recv, .timeout = 60)
{
    static uint8_t wire[64 * 1024];
    static uint8_t in[256 * 1024];
    size_t n = 0;
    size_t got = 0;
    size_t frames = 0;
    int fd;

    server_start();
    fd = raw_connect();
    /* one frame a byte at a time, with pauses so each byte is its own recv */
    n = json_request(wire, CODE_ECHO, 1);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(write(fd, wire + i, 1), 1);
        usleep(500);
    }
    /* then 300 frames in one write: many frames per recv, and splits at buffer ends */
    n = 0;
    for (int k = 0; k < 300; k++) {
        n += json_request(wire + n, CODE_ECHO, 2 + k);
    }
    cr_assert_eq(write(fd, wire, n), (ssize_t)n);
    while (frames < 301) {
        frames += (size_t)read_frames(fd, in, sizeof(in), &got, NULL);
    }
    cr_assert_eq(frames, 301);
    close(fd);
    server_stop();
}

Test(engine, held_receive_buffers_are_not_reused_and_an_empty_ring_is_backpressure,
     .timeout = 60)
{
    enum { NFRAMES = 1200, BODYLEN = 6000 };
    static uint8_t frame[BODYLEN + 128];
    static uint8_t in[1 << 16];
    size_t got = 0;
    int answers = 0;
    int ok = 0;
    int fd;

    server_start();
    fd = raw_connect();
    /* 1200 frames of 6000 bytes: ~7 MiB, far more than the server's 256 x 16 KiB ring,
     * each held by the server until a timer answers a batch */
    for (int k = 0; k < NFRAMES; k++) {
        char hdr[96];
        int hl = snprintf(hdr, sizeof(hdr), "{\"code\":%d,\"opaque\":%d,\"flag\":0}",
                          CODE_HOLD, k + 1);
        uint8_t *b = frame + 8 + hl;

        rmq_put_be32(frame, (uint32_t)(4 + hl + BODYLEN));
        rmq_put_be32(frame + 4, (uint32_t)hl);
        memcpy(frame + 8, hdr, (size_t)hl);
        rmq_put_be32(b, (uint32_t)k);
        for (uint32_t i = 4; i < BODYLEN; i++) {
            b[i] = (uint8_t)((uint32_t)k * 31 + i);
        }
        for (size_t off = 0, n = 8 + (size_t)hl + BODYLEN; off < n;) {
            struct pollfd p = {.fd = fd, .events = POLLOUT | POLLIN};
            ssize_t w;

            cr_assert_eq(poll(&p, 1, 5000), 1);
            if (p.revents & POLLIN) {       /* drain answers so the server never stalls on us */
                answers += read_frames(fd, in, sizeof(in), &got, &ok);
            }
            if (p.revents & POLLOUT) {
                w = write(fd, frame + off, n - off);
                cr_assert_gt(w, 0);
                off += (size_t)w;
            }
        }
    }
    while (answers < NFRAMES) {
        answers += read_frames(fd, in, sizeof(in), &got, &ok);
    }
    cr_assert_eq(answers, NFRAMES);
    cr_assert_eq(ok, NFRAMES, "%d bodies changed while their buffer was held", NFRAMES - ok);
    server_stats();
    cr_assert_gt(atomic_load(&S.recv_nobufs), 0, "the ring never ran dry");
    close(fd);
    wait_live_conns(0);
    server_stats();
    cr_assert_eq(atomic_load(&S.bufs_in_ring), 256, "receive buffers leaked");
    server_stop();
}
