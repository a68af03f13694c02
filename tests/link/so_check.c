/*
 * Links against build/lib/libringmq.so only (no static objects): proves the shared
 * library carries everything its public header promises. Run by tests/run.
 */
#include <stdio.h>
#include <string.h>

#include "client/ringmq.h"

int
main(void)
{
    struct rmq_options o = {.namesrv = "not an address"};
    struct rmq_producer *p = NULL;
    int ret = rmq_producer_create(&p, &o);

    /* a bad NameServer list is refused before anything is set up */
    if (ret != RMQ_ERR_INVALID || p != NULL || strstr(rmq_last_error(), "host:port") == NULL) {
        fprintf(stderr, "so_check: create gave %d (%s)\n", ret, rmq_last_error());
        return 1;
    }
    printf("so_check: libringmq.so links and answers: %s\n", rmq_error_name(ret));
    return 0;
}
