/* Request-handler helpers; see handler.h. */
#include "net/handler.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"

#define REMARK_MAX 1024

void
rmq_handler_send(struct rmq_conn *c, const struct rmq_header *req, const struct rmq_header *resp,
                 const void *body, size_t body_len, const char *who)
{
    int ret = body_len > UINT32_MAX ? -EMSGSIZE
                                    : rmq_conn_respond(c, req, resp, body, (uint32_t)body_len);

    if (ret < 0) {
        RMQ_LOG_RL(RMQ_LOG_WARN, 5000, "%s: response not sent peer=%s code=%d opaque=%d err=%s, "
                   "peer will time out", who, c->peer_str, req->code, req->opaque, strerror(-ret));
    }
}

void
rmq_handler_vreply(struct rmq_conn *c, const struct rmq_header *req, const char *who,
                   int32_t code, const char *fmt, va_list ap)
{
    char remark[REMARK_MAX];
    struct rmq_header resp;

    vsnprintf(remark, sizeof(remark), fmt, ap);
    if (code != RMQ_RESP_SUCCESS) {
        const char *name = rmq_request_code_name(req->code);

        RMQ_LOG_RL(RMQ_LOG_WARN, 5000, "%s: request refused peer=%s request=%s code=%s: %s", who,
                   c->peer_str, name != NULL ? name : "?", rmq_response_code_name(code), remark);
    }
    rmq_header_init_response(&resp, req, code);
    rmq_header_set_remark(&resp, remark);
    rmq_handler_send(c, req, &resp, NULL, 0, who);
}

static void __attribute__((format(printf, 4, 5)))
refuse(struct rmq_conn *c, const struct rmq_frame *req, const char *who, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    rmq_handler_vreply(c, &req->h, who, RMQ_RESP_SYSTEM_ERROR, fmt, ap);
    va_end(ap);
}

int
rmq_field_str(const struct rmq_frame *req, const char *name, char *buf, size_t cap)
{
    struct rmq_str v;

    if (!rmq_header_get(&req->h, name, &v)) {
        return 0;
    }
    if (v.len >= cap || memchr(v.ptr, '\0', v.len) != NULL) {
        return -EMSGSIZE;
    }
    memcpy(buf, v.ptr, v.len);
    buf[v.len] = '\0';
    return 1;
}

bool
rmq_opt_str(struct rmq_conn *c, const struct rmq_frame *req, const char *who, const char *name,
            char *buf, size_t cap)
{
    int ret = rmq_field_str(req, name, buf, cap);

    if (ret == 0) {
        buf[0] = '\0';
    } else if (ret < 0) {
        refuse(c, req, who, "the custom field <%s> is longer than %zu bytes or holds a NUL", name,
               cap - 1);
        return false;
    }
    return true;
}

bool
rmq_need_str(struct rmq_conn *c, const struct rmq_frame *req, const char *who, const char *name,
             char *buf, size_t cap)
{
    int ret = rmq_field_str(req, name, buf, cap);

    if (ret == 0) {
        refuse(c, req, who, "the custom field <%s> is null", name);
    } else if (ret < 0) {
        refuse(c, req, who, "the custom field <%s> is longer than %zu bytes or holds a NUL", name,
               cap - 1);
    }
    return ret > 0;
}

static bool
need_int(struct rmq_conn *c, const struct rmq_frame *req, const char *who, const char *name,
         int ret, const char *type)
{
    if (ret == -ENOENT) {
        refuse(c, req, who, "the custom field <%s> is null", name);
    } else if (ret < 0) {
        refuse(c, req, who, "the custom field <%s> is not %s", name, type);
    }
    return ret == 0;
}

bool
rmq_need_i64(struct rmq_conn *c, const struct rmq_frame *req, const char *who, const char *name,
             int64_t *out)
{
    return need_int(c, req, who, name, rmq_header_get_i64(&req->h, name, out), "a long");
}

bool
rmq_need_i32(struct rmq_conn *c, const struct rmq_frame *req, const char *who, const char *name,
             int32_t *out)
{
    return need_int(c, req, who, name, rmq_header_get_i32(&req->h, name, out), "an int");
}
