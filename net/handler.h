/*
 * Request-handler helpers shared by the NameServer and the broker: answers with a
 * formatted remark and one rate-limited log line per refusal, and extFields readers
 * that answer SYSTEM_ERROR themselves ("the custom field <x> is null", the reference's
 * words) when a required field is missing or malformed. `who` names the module in log
 * lines ("broker", "namesrv").
 */
#ifndef RMQ_NET_HANDLER_H
#define RMQ_NET_HANDLER_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/conn.h"

/* Send resp as the answer to req (nothing for oneway); a failure is logged, not returned:
 * the peer times out, as it would on a lost connection. */
void rmq_handler_send(struct rmq_conn *c, const struct rmq_header *req,
                      const struct rmq_header *resp, const void *body, size_t body_len,
                      const char *who);
/* Answer req with code and a printf remark; a refusal (code != SUCCESS) also logs
 * "<who>: request refused peer=... request=... code=...: <remark>", rate-limited. */
void rmq_handler_vreply(struct rmq_conn *c, const struct rmq_header *req, const char *who,
                        int32_t code, const char *fmt, va_list ap);

/* extFields[name] as a C string in buf: 1 found, 0 absent, -EMSGSIZE too long or with NUL. */
int rmq_field_str(const struct rmq_frame *req, const char *name, char *buf, size_t cap);
/* Required fields: false once the refusal has been answered. */
bool rmq_need_str(struct rmq_conn *c, const struct rmq_frame *req, const char *who,
                  const char *name, char *buf, size_t cap);
bool rmq_need_i64(struct rmq_conn *c, const struct rmq_frame *req, const char *who,
                  const char *name, int64_t *out);
bool rmq_need_i32(struct rmq_conn *c, const struct rmq_frame *req, const char *who,
                  const char *name, int32_t *out);
/* Optional string field: "" when absent; false once a malformed one has been answered. */
bool rmq_opt_str(struct rmq_conn *c, const struct rmq_frame *req, const char *who,
                 const char *name, char *buf, size_t cap);

#endif
