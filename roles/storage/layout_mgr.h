/* layout_mgr.h - keeps the storage layout: every storage node mirrors `storage/layout` from the
 * control plane; the Raft leader recomputes it when storage nodes join or leave for good. */
#ifndef GUREUM_LAYOUT_MGR_H
#define GUREUM_LAYOUT_MGR_H

#include <stdint.h>

#include "control.h"
#include "http.h"
#include "layout.h"
#include "node.h"

typedef struct layout_mgr_s layout_mgr_t;

/* Called on the loop thread after the mirrored layout changed (a new version, or prev cleared
 * under the same version); l is NULL if the layout was deleted. Valid until the next change. */
typedef void (*layout_change_fn)(const Gureum__Layout *l, void *arg);

/* Start mirroring the layout, and maintaining it while this node is the Raft leader (or, when
 * the leader does not run storage, the alive storage node with the lowest name). */
layout_mgr_t *layout_mgr_new(node_t *n);
/* Stop; writes still in flight complete in the background. */
void layout_mgr_free(layout_mgr_t *m);

/* The current layout, NULL until the leader wrote the first one. Valid until the next change. */
const Gureum__Layout *layout_mgr_current(layout_mgr_t *m);
/* fn runs for every later change (not for the current layout: read layout_mgr_current). */
void layout_mgr_on_change(layout_mgr_t *m, layout_change_fn fn, void *arg);
/* Copies for a storage class: storage.replicas (the layout's) or storage.rr_replicas, capped at
 * the owners a partition has. */
uint32_t layout_mgr_copies(layout_mgr_t *m, int reduced_redundancy);

/* This node finished pulling the partitions in `bitmap` (bit p%8 of byte p/8) for layout
 * `version`: writes `storage/synced/<this node>`; the leader then clears their prev. cb may be
 * NULL. */
void layout_mgr_report_synced(layout_mgr_t *m, uint64_t version,
                              const uint8_t bitmap[LAYOUT_BITMAP_BYTES], control_done_fn cb,
                              void *arg);

/* GET /v1/storage/layout[?full=1]: {version, replicas, updated_ms, revision, settled, moving
 * (partitions with prev), maintainer (this node keeps the layout), nodes: [{name, zone, addr,
 * partitions, first (as first owner), pulling (new owner, not synced yet)}]}, plus with full=1
 * partitions: [{owners, prev}] by name. 404 before the first layout. */
void layout_mgr_admin(layout_mgr_t *m, http_req_t *req);

#endif
