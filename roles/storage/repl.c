/* repl.c - the replicated object layer's core: replica sets from the layout, the fan-out of one
 * request to a set (this node served without the network), and write/read quorums. */
#include "repl_int.h"

#include <stdlib.h>
#include <string.h>

#include "gossip.h"
#include "log.h"
#include "proto/envelope.pb-c.h"

uint32_t repl_write_quorum(uint32_t n) { return n / 2 + 1; }
uint32_t repl_read_quorum(uint32_t n) { return n ? n - repl_write_quorum(n) + 1 : 0; }

char *repl_strdup(const char *s) { return strdup(s ? s : ""); }

uint32_t repl_copies_for(const repl_t *r, const char *storage_class) {
  if (storage_class && strcmp(storage_class, "REDUCED_REDUNDANCY") == 0) return r->o.rr_copies;
  return r->o.copies;
}

static int is_self(const repl_t *r, const repl_target_t *t) {
  return strcmp(t->name, r->node->cfg.name) == 0;
}

/* Gossip's view: a member it knows to be dead or gone is not worth a timeout. */
static int looks_alive(const repl_t *r, const repl_target_t *t) {
  if (is_self(r, t) || !r->node->gossip) return 1;
  for (size_t i = 0, n = gossip_count(r->node->gossip); i < n; i++) {
    const member_t *m = gossip_member(r->node->gossip, i);
    if (strcmp(m->name, t->name) == 0)
      return m->state == MEMBER_STATE_ALIVE || m->state == MEMBER_STATE_SUSPECT;
  }
  return 1; /* unknown to gossip yet: try it */
}

/* Another member (alive or suspect) serves storage. */
static int others_store(const repl_t *r) {
  if (!r->node->gossip) return 0;
  for (size_t i = 0, n = gossip_count(r->node->gossip); i < n; i++) {
    const member_t *m = gossip_member(r->node->gossip, i);
    if (m->is_self || (m->state != MEMBER_STATE_ALIVE && m->state != MEMBER_STATE_SUSPECT)) continue;
    for (int j = 0; j < m->nroles; j++)
      if (strcmp(m->roles[j], "storage") == 0) return 1;
  }
  return 0;
}

int repl_call(repl_t *r, const repl_target_t *t, uint32_t type, const void *payload, size_t len,
              int timeout_ms, rpc_done_fn done, void *arg) {
  if (is_self(r, t)) {
    replica_call_local(r->local, type, payload, len, done, arg);
    return 0;
  }
  return rpc_call(r->node->rpc, t->addr, type, payload, len, timeout_ms, done, arg);
}

static void repl_maybe_free(repl_t *r);

/* ---- fan-out ---- */

repl_fan_t *repl_fan_new(repl_t *r, uint32_t partition, uint32_t copies, repl_fan_fn done,
                         void *arg) {
  repl_fan_t *f = calloc(1, sizeof *f);
  if (!f) return NULL;
  f->r = r;
  f->partition = partition;
  f->done = done;
  f->arg = arg;
  f->n = r->o.place ? r->o.place(r->o.arg, partition, copies, f->t, REPL_MAX_TARGETS) : 0;
  if (f->n == 0 && others_store(r)) {
    /* No layout here yet, but other storage nodes exist: this node cannot know where objects
     * live, and must not take writes alone. No targets: the request fails with 503. */
  } else if (f->n == 0) { /* a single storage node before its first layout: it holds all */
    snprintf(f->t[0].name, sizeof f->t[0].name, "%s", r->node->cfg.name);
    snprintf(f->t[0].addr, sizeof f->t[0].addr, "%s", r->node->rpc_addr);
    f->t[0].owner = 1;
    f->n = 1;
  }
  for (size_t i = 0; i < f->n; i++) f->st[i] = looks_alive(r, &f->t[i]) ? RPC_OK : REPL_DROPPED;
  f->timer = malloc(sizeof *f->timer);
  if (!f->timer) {
    free(f);
    return NULL;
  }
  uv_timer_init(&r->node->loop, f->timer);
  f->timer->data = f;
  r->live++;
  return f;
}

void repl_fan_early(repl_fan_t *f, repl_fan_early_fn early, int grace_ms) {
  f->early = early;
  f->grace_ms = grace_ms;
}

static void clear_replies(repl_fan_t *f) {
  for (size_t i = 0; i < f->n; i++) {
    free(f->reply[i]);
    f->reply[i] = NULL;
    f->rlen[i] = 0;
  }
}

static void fan_closed(uv_handle_t *h) {
  repl_fan_t *f = h->data;
  repl_t *r = f->r;
  free(h);
  free(f);
  r->live--;
  repl_maybe_free(r);
}

/* Freed once no call of any round can still answer into it. */
static void fan_maybe_release(repl_fan_t *f) {
  if (!f->freed || f->inflight) return;
  clear_replies(f);
  uv_close((uv_handle_t *)f->timer, fan_closed);
}

void repl_fan_free(repl_fan_t *f) {
  if (!f) return;
  f->freed = 1;
  uv_timer_stop(f->timer);
  fan_maybe_release(f);
}

typedef struct {
  repl_fan_t *f;
  size_t i;
  uint32_t round;
} repl_slot_t;

/* Ends the round: whoever has not answered yet counts as failed. */
static void fan_finish(repl_fan_t *f) {
  uv_timer_stop(f->timer);
  f->finished = 1;
  for (size_t i = 0; i < f->n; i++)
    if (f->st[i] == REPL_PENDING) {
      f->st[i] = RPC_ETIMEDOUT;
      log_info("repl", "straggler_dropped", "node=%s partition=%u grace_ms=%d", f->t[i].name,
               f->partition, f->grace_ms);
    }
  f->pending = 0;
  f->done(f);
}

static void fan_grace_over(uv_timer_t *t) {
  repl_fan_t *f = t->data;
  if (!f->finished) fan_finish(f);
}

static void fan_reply(void *arg, int status, const char *errmsg, const uint8_t *payload,
                      size_t len) {
  repl_slot_t *s = arg;
  repl_fan_t *f = s->f;
  size_t i = s->i;
  int stale = s->round != f->round || f->finished || f->freed;
  free(s);
  f->inflight--;
  if (stale) { /* a straggler of a round that already ended */
    fan_maybe_release(f);
    return;
  }
  f->st[i] = status;
  if (status == RPC_OK) {
    f->reply[i] = malloc(len ? len : 1);
    if (f->reply[i]) {
      if (len) memcpy(f->reply[i], payload, len);
      f->rlen[i] = len;
    } else {
      f->st[i] = RPC_ENOMEM;
    }
  } else if (status != RPC_ECLOSED) {
    log_debug("repl", "call_failed", "node=%s status=%s err=\"%s\"", f->t[i].name,
              rpc_strerror(status), errmsg ? errmsg : "");
  }
  if (--f->pending == 0) {
    fan_finish(f);
    return;
  }
  if (f->early && !uv_is_active((uv_handle_t *)f->timer) && f->early(f)) {
    if (f->grace_ms <= 0) fan_finish(f);
    else uv_timer_start(f->timer, fan_grace_over, (uint64_t)f->grace_ms, 0);
  }
}

static void on_idle(uv_idle_t *h) {
  repl_t *r = h->data;
  repl_fan_t *f = r->ready;
  repl_deferred_t *d = r->deferred;
  r->ready = NULL;
  r->deferred = NULL;
  r->deferred_tail = &r->deferred;
  uv_idle_stop(h);
  r->live++; /* whatever the callbacks free, r stays until we are done here */
  while (f) {
    repl_fan_t *next = f->next_ready;
    f->next_ready = NULL;
    f->finished = 1;
    f->done(f);
    f = next;
  }
  while (d) {
    repl_deferred_t *next = d->next;
    d->fn(d->arg);
    free(d);
    r->live--;
    d = next;
  }
  r->live--;
  repl_maybe_free(r);
}

void repl_defer(repl_t *r, void (*fn)(void *arg), void *arg) {
  repl_deferred_t *d = malloc(sizeof *d);
  if (!d) abort();
  *d = (repl_deferred_t){fn, arg, NULL};
  *r->deferred_tail = d;
  r->deferred_tail = &d->next;
  r->live++;
  uv_idle_start(r->idle, on_idle);
}

void repl_fan_send(repl_fan_t *f, uint32_t type, const void *payload, size_t len, int timeout_ms) {
  clear_replies(f);
  f->round++;
  f->finished = 0;
  f->pending = 1; /* held while sending, so no answer can finish the round early */
  for (size_t i = 0; i < f->n; i++) {
    if (f->st[i] == REPL_DROPPED) continue;
    repl_slot_t *s = malloc(sizeof *s);
    if (!s) {
      f->st[i] = RPC_ENOMEM;
      continue;
    }
    *s = (repl_slot_t){f, i, f->round};
    f->st[i] = REPL_PENDING;
    f->pending++;
    f->inflight++;
    int rv = repl_call(f->r, &f->t[i], type, payload, len, timeout_ms, fan_reply, s);
    if (rv != 0) {
      free(s);
      f->st[i] = rv;
      f->pending--;
      f->inflight--;
    }
  }
  if (--f->pending == 0) { /* nothing in flight: finish on the next loop turn, never inside */
    f->next_ready = f->r->ready;
    f->r->ready = f;
    uv_idle_start(f->r->idle, on_idle);
  }
}

void repl_fan_drop_failed(repl_fan_t *f) {
  for (size_t i = 0; i < f->n; i++)
    if (f->st[i] != RPC_OK) f->st[i] = REPL_DROPPED;
}

int repl_fan_quorum(const repl_fan_t *f, const int *ok, int write) {
  uint32_t own = 0, own_ok = 0, prev = 0, prev_ok = 0;
  for (size_t i = 0; i < f->n; i++) {
    if (f->t[i].owner) own++, own_ok += ok[i] != 0;
    if (f->t[i].prev) prev++, prev_ok += ok[i] != 0;
  }
  if (own == 0) return 0; /* no copies known: no quorum of anything */
  uint32_t need_own = write ? repl_write_quorum(own) : repl_read_quorum(own);
  uint32_t need_prev = write ? repl_write_quorum(prev) : repl_read_quorum(prev);
  return own_ok >= need_own && (prev == 0 || prev_ok >= need_prev);
}

obj_status_t repl_fan_status(const repl_fan_t *f, size_t i, Gureum__ReplReply **rep) {
  if (rep) *rep = NULL;
  if (f->st[i] != RPC_OK || !f->reply[i]) return OBJ_EUNAVAIL;
  Gureum__ReplReply *m = gureum__repl_reply__unpack(NULL, f->rlen[i], f->reply[i]);
  if (!m) return OBJ_EUNAVAIL;
  obj_status_t st = (obj_status_t)m->status;
  if (rep)
    *rep = m;
  else
    gureum__repl_reply__free_unpacked(m, NULL);
  return st;
}

int repl_fan_write_quorum_ok(const repl_fan_t *f) {
  int ok[REPL_MAX_TARGETS];
  for (size_t i = 0; i < f->n; i++)
    ok[i] = f->st[i] == RPC_OK && f->reply[i] && repl_fan_status(f, i, NULL) == OBJ_OK;
  return repl_fan_quorum(f, ok, 1);
}

int repl_fan_read_quorum_answered(const repl_fan_t *f) {
  int ok[REPL_MAX_TARGETS];
  for (size_t i = 0; i < f->n; i++) {
    obj_status_t st = f->st[i] == RPC_OK && f->reply[i] ? repl_fan_status(f, i, NULL) : OBJ_EUNAVAIL;
    ok[i] = st != OBJ_EUNAVAIL && st != OBJ_EIO && st != OBJ_ECORRUPT;
  }
  return repl_fan_quorum(f, ok, 0);
}

int repl_fan_listing_answered(const repl_fan_t *f) {
  size_t answered = 0;
  for (size_t i = 0; i < f->n; i++) answered += f->st[i] == RPC_OK && f->reply[i];
  uint32_t copies = f->r->o.copies < f->n ? f->r->o.copies : (uint32_t)f->n;
  return answered + (copies - repl_read_quorum(copies)) >= f->n;
}

void repl_fan_hint(const repl_fan_t *f, size_t i) {
  if (f->r->o.hint && f->partition != UINT32_MAX) f->r->o.hint(f->r->o.arg, f->t[i].name, f->partition);
}

/* ---- life cycle ---- */

repl_t *repl_new(node_t *n, replica_t *local, const repl_opts_t *opts) {
  repl_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->node = n;
  r->local = local;
  r->o = *opts;
  r->deferred_tail = &r->deferred;
  if (!r->o.copies) r->o.copies = 1;
  if (!r->o.rr_copies) r->o.rr_copies = 1;
  r->idle = malloc(sizeof *r->idle);
  if (!r->idle) {
    free(r);
    return NULL;
  }
  uv_idle_init(&n->loop, r->idle);
  r->idle->data = r;
  return r;
}

static void idle_closed(uv_handle_t *h) { free(h); }

static void repl_maybe_free(repl_t *r) {
  if (!r->closing || r->live > 0) return;
  uv_close((uv_handle_t *)r->idle, idle_closed);
  free(r);
}

/* In-flight fans (aborts sent after their writer went, hints) end through the RPC or the local
 * replica's queue; the last one frees us. The S3 front stops first, so nothing starts new ones. */
void repl_free(repl_t *r) {
  if (!r) return;
  r->closing = 1;
  repl_maybe_free(r);
}
