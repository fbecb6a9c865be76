/* hlc.h - a hybrid logical clock: microsecond timestamps that follow the wall clock, never go
 * backwards, and move past any timestamp seen from another node, so versions order causally. */
#ifndef GUREUM_HLC_H
#define GUREUM_HLC_H

#include <stdint.h>

typedef struct hlc_s {
  uint64_t last; /* the largest timestamp issued or observed */
} hlc_t;

/* A new timestamp, strictly greater than every one issued or observed before. */
uint64_t hlc_now(hlc_t *h);
/* Fold in a timestamp seen elsewhere (a replica's version, a peer's clock). */
void hlc_observe(hlc_t *h, uint64_t ts);

#endif
