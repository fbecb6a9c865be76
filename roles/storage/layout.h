/* layout.h - the storage layout as pure functions: which nodes own each of the 256 partitions
 * (zone-aware, balanced, minimal movement from the previous layout), lookups and sync tracking. */
#ifndef GUREUM_LAYOUT_H
#define GUREUM_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "proto/layout.pb-c.h"

#define LAYOUT_PARTITIONS 256
#define LAYOUT_MAX_REPLICAS 7
#define LAYOUT_BITMAP_BYTES (LAYOUT_PARTITIONS / 8)

/* A storage node as the layout sees it; the strings are copied. */
typedef struct {
  const char *name, *zone, *addr;
} layout_member_t;

/* The layout for `nodes` (any order; duplicate names count once) holding min(replicas, n)
 * copies of each partition, starting from `prev` (NULL for the first). version is
 * prev->version + 1 (1 for the first), updated_ms is prev's (the caller stamps the time).
 * NULL when n == 0. Free with layout_free. */
Gureum__Layout *layout_compute(const Gureum__Layout *prev, const layout_member_t *nodes, size_t n,
                               uint32_t replicas);

/* The first `copies` owners (or prev owners) of `partition`, at most `max`, into out; returns
 * how many (0 for a bad partition). Pointers are valid as long as l is. */
int layout_owners(const Gureum__Layout *l, uint32_t partition, uint32_t copies,
                  const Gureum__LayoutNode **out, size_t max);
int layout_prev(const Gureum__Layout *l, uint32_t partition, uint32_t copies,
                const Gureum__LayoutNode **out, size_t max);
const Gureum__LayoutNode *layout_node(const Gureum__Layout *l, const char *name);
/* Partitions where `name` is an owner: bit p%8 of bitmap[p/8]; returns how many. */
uint32_t layout_partitions_of(const Gureum__Layout *l, const char *name,
                              uint8_t bitmap[LAYOUT_BITMAP_BYTES]);
/* 1 when no partition has prev owners (every move finished). */
int layout_settled(const Gureum__Layout *l);
/* Owner slots of b that a did not have (partition, node name): the data a change moves. */
uint32_t layout_moved_slots(const Gureum__Layout *a, const Gureum__Layout *b);

/* A copy of l in which every partition whose new owners (owners not in prev) all reported it
 * synced for l->version has prev cleared; version is kept. NULL if nothing would change. */
Gureum__Layout *layout_mark_synced(const Gureum__Layout *l, const Gureum__LayoutSynced *const *reports,
                                   size_t n);

/* Wire form. layout_unpack rejects layouts whose partitions or indexes are malformed. */
uint8_t *layout_pack(const Gureum__Layout *l, size_t *len);
Gureum__Layout *layout_unpack(const uint8_t *buf, size_t len);
void layout_free(Gureum__Layout *l);

#endif
