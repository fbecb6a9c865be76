/* obj_stats.h - counters of the object layer (loop thread only), for metrics and for the tests
 * that check its memory bound: writers hold at most one block buffer each. */
#ifndef GUREUM_OBJ_STATS_H
#define GUREUM_OBJ_STATS_H

#include <stddef.h>

#include "obj.h"

typedef struct obj_stats_s {
  size_t writers;       /* writers begun and not yet committed, aborted or freed */
  size_t readers;       /* readers not yet freed */
  size_t buffered;      /* bytes of writer block buffers allocated now */
  size_t buffered_peak; /* the most `buffered` ever was */
  size_t inflight;      /* asynchronous steps started whose completion has not run yet */
} obj_stats_t;

void obj_stats(const obj_t *o, obj_stats_t *out);

#endif
