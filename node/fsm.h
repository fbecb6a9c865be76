/* fsm.h - the control plane's state machine: applies Raft commands to a versioned key-value
 * state in RocksDB, snapshots and restores it, keeps a change log, and feeds watches. */
#ifndef GUREUM_FSM_H
#define GUREUM_FSM_H

#include <raft.h>
#include <stddef.h>
#include <stdint.h>

#include "metrics.h"
#include "proto/state.pb-c.h"
#include "store.h"

typedef struct fsm_s fsm_t;

/* Outcome of one applied command, handed to the raft_apply callback. */
typedef struct fsm_result_s {
  Gureum__StateResponse__Code code; /* OK or CONFLICT */
  uint64_t revision;                /* the write's revision */
  uint64_t current_revision;        /* CONFLICT: the key's revision (0 = absent) */
} fsm_result_t;

typedef struct state_change_s {
  const char *key;
  const uint8_t *value;
  size_t len;
  uint64_t revision;
  int deleted;
} state_change_t;

/* Called on the loop thread for each change to a key under the watched prefix, in revision
 * order. `resync` is set while a watch that started before the retained history replays the
 * full current state (then live changes follow). */
typedef void (*state_watch_fn)(const state_change_t *c, int resync, void *arg);

fsm_t *fsm_new(store_t *store, metrics_t *m, char **err);
void fsm_free(fsm_t *f);
/* The libraft FSM; `r` tells apply which log index it is applying. */
struct raft_fsm *fsm_raft(fsm_t *f, struct raft *r);
uint64_t fsm_applied(const fsm_t *f);

/* Reads of the local copy (callers make them linearizable with a barrier first).
 * Returns 0 with *out set (free with gureum__state_kv__free_unpacked), or 1 if absent. */
int fsm_get(fsm_t *f, const char *key, Gureum__StateKV **out);
/* Keys starting with prefix, in order, at most limit (0 = 10000). Free with fsm_list_free. */
Gureum__StateKV **fsm_list(fsm_t *f, const char *prefix, uint32_t limit, size_t *n);
void fsm_list_free(Gureum__StateKV **kvs, size_t n);

/* Watch keys starting with `prefix` for every change after revision `from`. */
int fsm_watch(fsm_t *f, const char *prefix, uint64_t from, state_watch_fn fn, void *arg);
void fsm_unwatch(fsm_t *f, int id);

/* Apply one encoded command as log entry `index` (what libraft's apply does; tests use it). */
int fsm_apply_at(fsm_t *f, const struct raft_buffer *buf, uint64_t index, fsm_result_t **result);

/* Encode a command for raft_apply (buffer from raft_malloc). */
int fsm_encode(const Gureum__StateCommand *cmd, struct raft_buffer *buf);

#endif
