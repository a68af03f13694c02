/* Private to net/: the JSON header half of the frame codec (json_hdr.c). */
#ifndef RMQ_NET_FRAME_INT_H
#define RMQ_NET_FRAME_INT_H

#include "net/frame.h"

/* Parse a JSON header in place; 0 or -EPROTO. */
int rmq__json_header_decode(uint8_t *p, size_t len, struct rmq_header *h);
/* Exact encoded length, or -EMSGSIZE past the 24-bit header limit. */
ssize_t rmq__json_header_len(const struct rmq_header *h);
/* Write the header; out must hold rmq__json_header_len bytes. Returns bytes written. */
size_t rmq__json_header_write(const struct rmq_header *h, uint8_t *out);
/* Java Long.parseLong on a header value: 0, or -EINVAL. */
int rmq__text_to_i64(struct rmq_str s, int64_t *out);

#endif
