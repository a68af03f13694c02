/*
 * Intrusive doubly linked list (circular, with a sentinel head). Objects embed a
 * struct rmq_link, so linking never allocates (STYLE.md §3).
 */
#ifndef RMQ_CORE_LIST_H
#define RMQ_CORE_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct rmq_link {
    struct rmq_link *next;
    struct rmq_link *prev;
};

static inline void
rmq_list_init(struct rmq_link *head)
{
    head->next = head;
    head->prev = head;
}

static inline bool
rmq_list_is_empty(const struct rmq_link *head)
{
    return head->next == head;
}

/* A link that is on no list points at itself (after rmq_list_init or rmq_list_del). */
static inline bool
rmq_link_is_linked(const struct rmq_link *l)
{
    return l->next != l && l->next != NULL;
}

static inline void
rmq_list_add_tail(struct rmq_link *head, struct rmq_link *l)
{
    l->prev = head->prev;
    l->next = head;
    head->prev->next = l;
    head->prev = l;
}

static inline void
rmq_list_del(struct rmq_link *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->next = l;
    l->prev = l;
}

static inline struct rmq_link *
rmq_list_pop(struct rmq_link *head)
{
    struct rmq_link *l = head->next;

    if (l == head) {
        return NULL;
    }
    rmq_list_del(l);
    return l;
}

#endif
