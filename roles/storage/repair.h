/* repair.h - keeps this node's copies whole: anti-entropy against the other owners of each
 * partition, hinted handoff, pulling partitions after a layout change, dropping partitions that
 * moved away, scrubbing blocks, and the storage status it all reports. */
#ifndef GUREUM_REPAIR_H
#define GUREUM_REPAIR_H

#include <jansson.h>
#include <stdint.h>

#include "layout_mgr.h"
#include "node.h"
#include "obj.h"
#include "repl.h"

typedef struct repair_s repair_t;

repair_t *repair_new(node_t *n, obj_t *obj, replica_t *replica, repl_t *repl, layout_mgr_t *lm);
void repair_free(repair_t *r);

/* A replica missed a write or served stale data (repl's hint hook). */
void repair_hint(repair_t *r, const char *node, uint32_t partition);
/* Compare digests with every peer now (also runs every storage.sync_interval_s). */
void repair_antientropy_now(repair_t *r);
/* Verify every local block now (also runs every storage.scrub_interval_s). */
void repair_scrub_now(repair_t *r);
/* This node's view, for `gureum storage status`. */
json_t *repair_stats(repair_t *r);

#endif
