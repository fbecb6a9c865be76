/* hlc.c - the hybrid logical clock: wall-clock microseconds, bumped by one whenever the wall
 * clock has not moved past the last timestamp issued or observed. */
#include "hlc.h"

#include <time.h>

static uint64_t wall_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

uint64_t hlc_now(hlc_t *h) {
  uint64_t w = wall_us();
  h->last = w > h->last ? w : h->last + 1;
  return h->last;
}

void hlc_observe(hlc_t *h, uint64_t ts) {
  if (ts > h->last) h->last = ts;
}
