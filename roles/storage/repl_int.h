/* repl_int.h - internals shared by the replicated object layer's files: the coordinator
 * context and the fan-out that sends one request to a replica set and counts quorums. */
#ifndef GUREUM_REPL_INT_H
#define GUREUM_REPL_INT_H

#include "hlc.h"
#include "proto/replica.pb-c.h"
#include "repl.h"

typedef struct repl_deferred_s {
  void (*fn)(void *arg);
  void *arg;
  struct repl_deferred_s *next;
} repl_deferred_t;

struct repl_s {
  node_t *node;
  replica_t *local;
  repl_opts_t o;
  hlc_t hlc;
  uv_idle_t *idle;                /* runs fans that finished without a single call in flight */
  struct repl_fan_s *ready;
  repl_deferred_t *deferred, **deferred_tail;
  int live;                       /* fans not yet freed */
  int closing;
};

enum { REPL_PENDING = 1, REPL_DROPPED = 2 }; /* besides RPC_OK and the negative RPC_E* */

typedef struct repl_fan_s repl_fan_t;
typedef void (*repl_fan_fn)(repl_fan_t *f);

/* Whether a round may end before every target answered (a quorum is in); see repl_fan_early. */
typedef int (*repl_fan_early_fn)(const repl_fan_t *f);

/* One request to every live member of a replica set; `done` runs once all have answered, or
 * once the `early` test holds and the stragglers had `grace_ms` more (they count as failed). */
struct repl_fan_s {
  repl_t *r;
  uint32_t partition;
  size_t n;
  repl_target_t t[REPL_MAX_TARGETS];
  int st[REPL_MAX_TARGETS];         /* REPL_PENDING, REPL_DROPPED, or the call's status */
  uint8_t *reply[REPL_MAX_TARGETS]; /* copies of the replies of this round */
  size_t rlen[REPL_MAX_TARGETS];
  size_t pending;
  repl_fan_fn done;
  void *arg;
  repl_fan_t *next_ready;
  uint32_t round;          /* replies of an earlier round are dropped */
  size_t inflight;         /* calls not answered yet, any round: the fan lives until 0 */
  int finished, freed;
  repl_fan_early_fn early;
  int grace_ms;
  uv_timer_t *timer;       /* the grace period */
};

/* Targets of `partition` (UINT32_MAX: every storage node) for `copies`; members gossip knows
 * to be dead or gone start out dropped. */
repl_fan_t *repl_fan_new(repl_t *r, uint32_t partition, uint32_t copies, repl_fan_fn done,
                         void *arg);
/* Sends to every target not dropped; clears the previous round's replies. */
void repl_fan_send(repl_fan_t *f, uint32_t type, const void *payload, size_t len, int timeout_ms);
void repl_fan_free(repl_fan_t *f);
/* End rounds early: once early(f) holds, stragglers get grace_ms to answer. A slow or dead
 * (not yet known dead) replica then costs grace_ms, not the call's timeout. */
void repl_fan_early(repl_fan_t *f, repl_fan_early_fn early, int grace_ms);
/* Ready-made tests: a write quorum said OBJ_OK; a read quorum answered; all but the failures a
 * listing tolerates answered. */
int repl_fan_write_quorum_ok(const repl_fan_t *f);
int repl_fan_read_quorum_answered(const repl_fan_t *f);
int repl_fan_listing_answered(const repl_fan_t *f);
/* Drops the targets whose last call failed (they leave a write session for good). */
void repl_fan_drop_failed(repl_fan_t *f);
/* 1 when the targets flagged in ok[] make a write (or read) quorum of the owners and, during a
 * move, of the previous owners too. */
int repl_fan_quorum(const repl_fan_t *f, const int *ok, int write);
/* The obj_status_t of target i's ReplReply (OBJ_EUNAVAIL when it did not answer); *meta gets
 * the decoded reply when asked (free with gureum__repl_reply__free_unpacked). */
obj_status_t repl_fan_status(const repl_fan_t *f, size_t i, Gureum__ReplReply **rep);
/* Tells the hint hook that target i missed this operation. */
void repl_fan_hint(const repl_fan_t *f, size_t i);

/* Runs fn(arg) on the next loop turn (callbacks never run inside the call that asked). */
void repl_defer(repl_t *r, void (*fn)(void *arg), void *arg);
uint32_t repl_copies_for(const repl_t *r, const char *storage_class);
char *repl_strdup(const char *s);

#endif
