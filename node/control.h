/* control.h - the control plane: a libraft node holding the cluster's state (buckets, keys,
 * zones, ...). Writes from any node go to the leader; reads are linearizable unless `stale`. */
#ifndef GUREUM_CONTROL_H
#define GUREUM_CONTROL_H

#include <stdint.h>

#include "fsm.h"
#include "node.h"
#include "proto/state.pb-c.h"

typedef struct control_s control_t;

/* `resp` is never NULL; it is only valid during the call. */
typedef void (*control_done_fn)(void *arg, const Gureum__StateResponse *resp);

/* Pass as `expect` for an unconditional write. */
#define CONTROL_ANY_REVISION (-1)

control_t *control_new(node_t *n, char *err, size_t errlen);
/* Open the Raft log, bootstrap if this node is the designated first one, join otherwise. */
int control_start(control_t *c, char *err, size_t errlen);

/* Writes commit through the leader; expect >= 0 makes them conditional on the key's revision
 * (0 = the key must not exist). */
void control_put(control_t *c, const char *key, const void *value, size_t len, int64_t expect,
                 control_done_fn cb, void *arg);
void control_delete(control_t *c, const char *key, int64_t expect, control_done_fn cb, void *arg);
/* Reads; stale = serve from this node's copy without asking the leader. */
void control_get(control_t *c, const char *key, int stale, control_done_fn cb, void *arg);
void control_list(control_t *c, const char *prefix, int stale, uint32_t limit, control_done_fn cb,
                  void *arg);
/* Every applied change under `prefix` after revision `from`, on this node, in order. */
int control_watch(control_t *c, const char *prefix, uint64_t from, state_watch_fn fn, void *arg);
void control_unwatch(control_t *c, int id);

/* 1 while this node is the Raft leader: for duties only one node should do (the storage
 * layout). Leadership can move at any time, so such duties still write with `expect`. */
int control_is_leader(control_t *c);
/* The leader's node name as gossip knows it, or NULL (none elected, or not known yet). */
const char *control_leader_name(control_t *c);

/* Before a graceful stop: hand leadership to another voter if we hold it; cb when done. */
void control_leave(control_t *c, void (*cb)(void *arg), void *arg);
/* Stop Raft and its channel; cb once everything is closed (c is freed). */
void control_close(control_t *c, void (*cb)(void *arg), void *arg);

#endif
