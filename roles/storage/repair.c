/* repair.c - keeps this node's copies whole. One partition is synced at a time: fetch the
 * records another owner holds, pull what is missing or newer (streamed, rate-limited), apply its
 * tombstones. Anti-entropy, hints, layout moves and scrub all feed that one queue. */
#include "repair.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gossip.h"
#include "layout.h"
#include "log.h"
#include "obj_engine.h"
#include "proto/envelope.pb-c.h"
#include "proto/replica.pb-c.h"

#define REPAIR_RPC_TIMEOUT_MS 15000
#define REPAIR_CHUNK OBJ_BLOCK_SIZE
#define REPAIR_HINT_PERIOD_MS 1000
#define REPAIR_SCRUB_PAGE 64
#define REPAIR_DROP_AFTER_MS 10000 /* a layout this still is known everywhere */

typedef struct repair_hint_s {
  char name[64];
  uint8_t parts[32];
  int sending;
  struct repair_hint_s *next;
} repair_hint_t;

/* One partition being synced: with each peer in turn, the difference, then the actions. */
typedef struct repair_psync_s {
  repair_t *r;
  uint32_t p;
  repl_target_t peers[REPL_MAX_TARGETS];
  size_t npeers, peer;
  Gureum__ReplRecords *remote;
  Gureum__ObjectMeta **local; /* sorted by bucket, key, version */
  size_t nlocal;
  Gureum__ObjectMeta **todo; /* remote records to pull or apply (point into `remote`) */
  size_t ntodo, next;
  uint64_t actions;
  /* the version being pulled */
  obj_writer_t *w;
  uint64_t off;
  uint8_t *chunk;
  size_t chunk_len;
} repair_psync_t;

struct repair_s {
  node_t *node;
  obj_t *obj;
  replica_t *replica;
  repl_t *repl;
  layout_mgr_t *lm;
  uv_timer_t *ae_timer, *hint_timer, *scrub_timer, *rate_timer;
  /* sync queue */
  uint32_t queue[OBJ_PARTITIONS];
  size_t qhead, qlen;
  uint8_t queued[32];
  repair_psync_t *cur;
  /* hinted handoff */
  repair_hint_t *hints;
  /* layout moves */
  uint64_t move_version;
  uint8_t must_pull[32], pulled[32];
  uint64_t move_started_ms;
  uint64_t layout_changed_ms;
  uint64_t gc_last_ms;
  int reported;
  /* anti-entropy */
  int ae_running, ae_pending;
  uint8_t ae_diff[32];
  uint64_t ae_rounds, ae_last_ms, ae_differing, ae_round_actions;
  uint8_t round_changed[32]; /* partitions whose sync did something since the round began */
  obj_digests_t *digests;    /* the last local digests */
  /* scrub */
  int scrubbing;
  char *scrub_bucket, *scrub_key, *scrub_vid;
  uint64_t scrub_checked, scrub_bad, scrub_repaired, scrub_last_ms;
  obj_bad_block_t *bad;
  size_t nbad, bad_next;
  /* rate limit of pulled bytes */
  double allowance;
  uint64_t allowance_ms;
  /* counters */
  uint64_t pulled_bytes, pulled_versions, applied_records, dropped_partitions;
  int live, closing;
};

static void repair_maybe_free(repair_t *r);
static void next_partition(repair_t *r);
static void psync_next_peer(repair_psync_t *s);
static void psync_next_action(repair_psync_t *s);
static void scrub_next_bad(repair_t *r);

static char *dupz(const char *s) { return strdup(s ? s : ""); }

static int bit(const uint8_t *bm, uint32_t p) { return (bm[p / 8] >> (p % 8)) & 1; }
static void bit_set(uint8_t *bm, uint32_t p) { bm[p / 8] |= (uint8_t)(1u << (p % 8)); }
static void bit_clear(uint8_t *bm, uint32_t p) { bm[p / 8] &= (uint8_t)~(1u << (p % 8)); }
static size_t bits(const uint8_t *bm) {
  size_t n = 0;
  for (uint32_t p = 0; p < OBJ_PARTITIONS; p++) n += bit(bm, p);
  return n;
}

static uint64_t now_ms(repair_t *r) { return uv_now(&r->node->loop); }
static const char *self_name(repair_t *r) { return r->node->cfg.name; }

static int member_alive(repair_t *r, const char *name) {
  if (strcmp(name, self_name(r)) == 0) return 1;
  for (size_t i = 0, n = gossip_count(r->node->gossip); i < n; i++) {
    const member_t *m = gossip_member(r->node->gossip, i);
    if (strcmp(m->name, name) == 0) return m->state == MEMBER_STATE_ALIVE;
  }
  return 0;
}

/* Owners and previous owners of p, as repl targets (this node included when it is one). */
static size_t holders_of(repair_t *r, uint32_t p, repl_target_t *out, size_t max) {
  const Gureum__Layout *l = layout_mgr_current(r->lm);
  if (!l || p >= l->n_partitions) return 0;
  size_t n = 0;
  const Gureum__LayoutPartition *lp = l->partitions[p];
  for (int pass = 0; pass < 2; pass++) {
    size_t cnt = pass ? lp->n_prev : lp->n_owners;
    const uint32_t *idx = pass ? lp->prev : lp->owners;
    for (size_t i = 0; i < cnt && n < max; i++) {
      if (idx[i] >= l->n_nodes) continue;
      const Gureum__LayoutNode *ln = l->nodes[idx[i]];
      size_t j;
      for (j = 0; j < n && strcmp(out[j].name, ln->name) != 0; j++) {}
      if (j < n) {
        if (pass) out[j].prev = 1;
        continue;
      }
      memset(&out[n], 0, sizeof out[n]);
      snprintf(out[n].name, sizeof out[n].name, "%s", ln->name);
      snprintf(out[n].addr, sizeof out[n].addr, "%s", ln->addr);
      out[n].owner = !pass;
      out[n].prev = pass;
      n++;
    }
  }
  return n;
}

static int holds(repair_t *r, uint32_t p) {
  repl_target_t t[REPL_MAX_TARGETS];
  size_t n = holders_of(r, p, t, REPL_MAX_TARGETS);
  for (size_t i = 0; i < n; i++)
    if (strcmp(t[i].name, self_name(r)) == 0) return 1;
  return 0;
}

/* ---- the queue ---- */

static void enqueue(repair_t *r, uint32_t p) {
  if (p >= OBJ_PARTITIONS || bit(r->queued, p) || r->closing) return;
  bit_set(r->queued, p);
  r->queue[(r->qhead + r->qlen++) % OBJ_PARTITIONS] = p;
  if (!r->cur) next_partition(r);
}

static void psync_free(repair_psync_t *s) {
  if (s->remote) gureum__repl_records__free_unpacked(s->remote, NULL);
  for (size_t i = 0; i < s->nlocal; i++) gureum__object_meta__free_unpacked(s->local[i], NULL);
  free(s->local);
  free(s->todo);
  free(s->chunk);
  if (s->w) obj_put_abort(s->w);
  free(s);
}

static void maybe_report_moved(repair_t *r) {
  if (r->reported || !r->move_version || bits(r->must_pull) == 0) return;
  for (uint32_t p = 0; p < OBJ_PARTITIONS; p++)
    if (bit(r->must_pull, p) && !bit(r->pulled, p)) return;
  r->reported = 1;
  log_info("repair", "moved_in", "layout=%llu partitions=%zu ms=%llu",
           (unsigned long long)r->move_version, bits(r->pulled),
           (unsigned long long)(now_ms(r) - r->move_started_ms));
  layout_mgr_report_synced(r->lm, r->move_version, r->pulled, NULL, NULL);
}

static void psync_finish(repair_psync_t *s) {
  repair_t *r = s->r;
  if (s->actions) {
    bit_set(r->round_changed, s->p);
    log_info("repair", "partition_synced", "partition=%u actions=%llu", s->p,
             (unsigned long long)s->actions);
  }
  if (bit(r->must_pull, s->p) && s->npeers > 0) bit_set(r->pulled, s->p);
  r->cur = NULL;
  psync_free(s);
  r->live--;
  maybe_report_moved(r);
  if (r->closing) {
    repair_maybe_free(r);
    return;
  }
  next_partition(r);
}

static void next_partition(repair_t *r) {
  if (r->cur || !r->qlen || r->closing) return;
  uint32_t p = r->queue[r->qhead];
  r->qhead = (r->qhead + 1) % OBJ_PARTITIONS;
  r->qlen--;
  bit_clear(r->queued, p);
  repair_psync_t *s = calloc(1, sizeof *s);
  if (!s) abort();
  s->r = r;
  s->p = p;
  repl_target_t all[REPL_MAX_TARGETS];
  size_t n = holders_of(r, p, all, REPL_MAX_TARGETS);
  for (size_t i = 0; i < n; i++)
    if (strcmp(all[i].name, self_name(r)) != 0 && member_alive(r, all[i].name))
      s->peers[s->npeers++] = all[i];
  r->cur = s;
  r->live++;
  psync_next_peer(s);
}

/* ---- one peer: its records against ours ---- */

static int rec_cmp3(const char *b1, const char *k1, const char *v1, const Gureum__ObjectMeta *m) {
  int c = strcmp(b1, m->bucket);
  if (!c) c = strcmp(k1, m->key);
  return c ? c : strcmp(v1, m->version_id);
}

static int rec_qcmp(const void *a, const void *b) {
  const Gureum__ObjectMeta *x = *(Gureum__ObjectMeta *const *)a;
  return rec_cmp3(x->bucket, x->key, x->version_id, *(Gureum__ObjectMeta *const *)b);
}

static const Gureum__ObjectMeta *local_find(const repair_psync_t *s, const Gureum__ObjectMeta *m) {
  size_t lo = 0, hi = s->nlocal;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = rec_cmp3(m->bucket, m->key, m->version_id, s->local[mid]);
    if (!c) return s->local[mid];
    if (c < 0) hi = mid;
    else lo = mid + 1;
  }
  return NULL;
}

/* A reduced-redundancy version belongs on the first rr_copies owners only. */
static int belongs_here(const repair_psync_t *s, const Gureum__ObjectMeta *m) {
  if (strcmp(m->storage_class, "REDUCED_REDUNDANCY") != 0) return 1;
  const Gureum__Layout *l = layout_mgr_current(s->r->lm);
  if (!l) return 1;
  const Gureum__LayoutPartition *lp = l->partitions[s->p];
  uint32_t rr = s->r->node->cfg.storage_rr_replicas;
  for (size_t i = 0; i < lp->n_owners && i < rr; i++)
    if (lp->owners[i] < l->n_nodes && strcmp(l->nodes[lp->owners[i]]->name, self_name(s->r)) == 0)
      return 1;
  return 0;
}

/* What we need of the peer's record: nothing, or to apply it (tombstones, markers), or to pull
 * its bytes. The newer of two "null" versions wins, a tombstone beats the version it names. */
static int wanted(const repair_psync_t *s, const Gureum__ObjectMeta *m) {
  const Gureum__ObjectMeta *l = local_find(s, m);
  if (m->tombstone) return !l || !l->tombstone;
  if (!belongs_here(s, m)) return 0;
  if (!l) return 1;
  if (strcmp(m->version_id, "null") == 0) return m->ts_us > l->ts_us;
  return 0;
}

static void local_records_done(void *arg, obj_status_t st, Gureum__ObjectMeta **recs, size_t n) {
  repair_psync_t *s = arg;
  if (st != OBJ_OK || s->r->closing) {
    s->peer = s->npeers; /* give up on this partition for now */
    psync_next_peer(s);
    return;
  }
  s->local = calloc(n + 1, sizeof *s->local);
  if (!s->local) abort();
  for (size_t i = 0; i < n; i++) s->local[i] = obj_meta_dup(recs[i]);
  s->nlocal = n;
  qsort(s->local, n, sizeof *s->local, rec_qcmp);
  s->todo = calloc(s->remote->n_records + 1, sizeof *s->todo);
  if (!s->todo) abort();
  for (size_t i = 0; i < s->remote->n_records; i++)
    if (wanted(s, s->remote->records[i])) s->todo[s->ntodo++] = s->remote->records[i];
  s->next = 0;
  psync_next_action(s);
}

static void remote_records_done(void *arg, int status, const char *errmsg, const uint8_t *payload,
                                size_t len) {
  (void)errmsg;
  repair_psync_t *s = arg;
  Gureum__ReplRecords *rec = status == RPC_OK ? gureum__repl_records__unpack(NULL, len, payload) : NULL;
  if (!rec || rec->status != OBJ_OK || s->r->closing) {
    if (rec) gureum__repl_records__free_unpacked(rec, NULL);
    s->peer++;
    psync_next_peer(s);
    return;
  }
  s->remote = rec;
  obj_partition_records(s->r->obj, s->p, local_records_done, s);
}

static void psync_next_peer(repair_psync_t *s) {
  if (s->remote) gureum__repl_records__free_unpacked(s->remote, NULL);
  s->remote = NULL;
  for (size_t i = 0; i < s->nlocal; i++) gureum__object_meta__free_unpacked(s->local[i], NULL);
  free(s->local);
  free(s->todo);
  s->local = NULL, s->todo = NULL, s->nlocal = s->ntodo = 0;
  if (s->peer >= s->npeers || s->r->closing) {
    psync_finish(s);
    return;
  }
  Gureum__ReplPartition q = GUREUM__REPL_PARTITION__INIT;
  q.partition = s->p;
  uint8_t buf[16];
  size_t n = gureum__repl_partition__pack(&q, buf);
  if (repl_call(s->r->repl, &s->peers[s->peer], GUREUM__MSG_TYPE__MSG_REPL_RECORDS, buf, n,
                REPAIR_RPC_TIMEOUT_MS, remote_records_done, s) != 0) {
    s->peer++;
    psync_next_peer(s);
  }
}

/* ---- actions: apply a record, or pull a version's bytes ---- */

static void action_done(repair_psync_t *s) {
  s->actions++;
  s->next++;
  psync_next_action(s);
}

static void applied(void *arg, obj_status_t st, const Gureum__ObjectMeta *m) {
  (void)m;
  repair_psync_t *s = arg;
  if (st == OBJ_OK) s->r->applied_records++;
  action_done(s);
}

static void pull_chunk(repair_psync_t *s);

static void pull_committed(void *arg, obj_status_t st, const Gureum__ObjectMeta *m) {
  (void)m;
  repair_psync_t *s = arg;
  s->w = NULL; /* the object layer freed it */
  if (st == OBJ_OK) s->r->pulled_versions++;
  else log_warn("repair", "pull_commit_failed", "partition=%u err=%s", s->p, obj_strerror(st));
  action_done(s);
}

static void pull_written(void *arg, obj_status_t st) {
  repair_psync_t *s = arg;
  if (st != OBJ_OK) {
    obj_put_abort(s->w);
    s->w = NULL;
    action_done(s);
    return;
  }
  pull_chunk(s);
}

/* Token bucket: pulled bytes may not exceed storage.rebalance_mib_s on average. */
static uint64_t rate_delay_ms(repair_t *r, size_t bytes) {
  double rate = (double)r->node->cfg.storage_rebalance_mib_s * 1048576.0;
  if (rate <= 0) return 0;
  uint64_t now = now_ms(r);
  r->allowance += (double)(now - r->allowance_ms) / 1000.0 * rate;
  if (r->allowance > rate) r->allowance = rate; /* at most one second of burst */
  r->allowance_ms = now;
  r->allowance -= (double)bytes;
  return r->allowance >= 0 ? 0 : (uint64_t)(-r->allowance / rate * 1000.0) + 1;
}

static void pull_resume(uv_timer_t *t) {
  repair_t *r = t->data;
  if (r->cur && r->cur->w) obj_write(r->cur->w, r->cur->chunk, r->cur->chunk_len, pull_written, r->cur);
}

static void pull_reply(void *arg, int status, const char *errmsg, const uint8_t *payload,
                       size_t len) {
  (void)errmsg;
  repair_psync_t *s = arg;
  Gureum__ReplReply *rep = status == RPC_OK ? gureum__repl_reply__unpack(NULL, len, payload) : NULL;
  if (!rep || rep->status != OBJ_OK || rep->data.len == 0 || s->r->closing) {
    if (rep) gureum__repl_reply__free_unpacked(rep, NULL);
    obj_put_abort(s->w);
    s->w = NULL;
    action_done(s); /* the next round tries again */
    return;
  }
  free(s->chunk);
  s->chunk = malloc(rep->data.len);
  if (!s->chunk) abort();
  memcpy(s->chunk, rep->data.data, rep->data.len);
  s->chunk_len = rep->data.len;
  s->off += rep->data.len;
  s->r->pulled_bytes += rep->data.len;
  gureum__repl_reply__free_unpacked(rep, NULL);
  uint64_t delay = rate_delay_ms(s->r, s->chunk_len);
  if (delay) {
    uv_timer_start(s->r->rate_timer, pull_resume, delay, 0);
    return;
  }
  obj_write(s->w, s->chunk, s->chunk_len, pull_written, s);
}

static void pull_chunk(repair_psync_t *s) {
  const Gureum__ObjectMeta *m = s->todo[s->next];
  if (s->off >= m->size) {
    obj_put_commit(s->w, pull_committed, s);
    return;
  }
  Gureum__ReplRead q = GUREUM__REPL_READ__INIT;
  q.bucket = m->bucket;
  q.key = m->key;
  q.version_id = m->version_id;
  q.offset = s->off;
  q.length = (uint32_t)(m->size - s->off < REPAIR_CHUNK ? m->size - s->off : REPAIR_CHUNK);
  uint8_t buf[2048];
  size_t n = gureum__repl_read__get_packed_size(&q);
  if (n > sizeof buf ||
      repl_call(s->r->repl, &s->peers[s->peer], GUREUM__MSG_TYPE__MSG_REPL_READ,
                (gureum__repl_read__pack(&q, buf), buf), n, REPAIR_RPC_TIMEOUT_MS, pull_reply, s) != 0) {
    obj_put_abort(s->w);
    s->w = NULL;
    action_done(s);
  }
}

static void psync_next_action(repair_psync_t *s) {
  if (s->next >= s->ntodo || s->r->closing) {
    s->peer++;
    psync_next_peer(s);
    return;
  }
  const Gureum__ObjectMeta *m = s->todo[s->next];
  if (m->tombstone || m->delete_marker) {
    obj_apply_record(s->r->obj, m, applied, s);
    return;
  }
  /* A copy keeps the version's identity and record (ETag, parts, checksum) exactly. */
  s->w = obj_put_begin(s->r->obj, m, strcmp(m->version_id, "null") != 0);
  s->off = 0;
  if (!s->w) {
    action_done(s);
    return;
  }
  pull_chunk(s);
}

/* ---- anti-entropy ---- */

static void ae_peer_done(void *arg, int status, const char *errmsg, const uint8_t *payload,
                         size_t len);
static void ae_release(repair_t *r);

typedef struct {
  repair_t *r;
  char name[64];
} repair_peer_t;

static void gc_done(void *arg, obj_status_t st, uint64_t removed) {
  repair_t *r = arg;
  if (st == OBJ_OK && removed) log_info("repair", "tombstones_purged", "count=%llu", (unsigned long long)removed);
  r->live--;
  repair_maybe_free(r);
}

/* Tombstones older than storage.tombstone_ttl_s have reached every replica by now (anti-entropy
 * runs far more often): forget them, at most once a minute. */
static void gc_tombstones(repair_t *r) {
  if (r->closing || now_ms(r) - r->gc_last_ms < 60000) return;
  r->gc_last_ms = now_ms(r);
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  uint64_t wall_ms = (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
  uint64_t ttl_ms = (uint64_t)r->node->cfg.storage_tombstone_ttl_s * 1000;
  if (wall_ms <= ttl_ms) return;
  r->live++;
  obj_gc_tombstones(r->obj, wall_ms - ttl_ms, gc_done, r);
}

static void ae_finish(repair_t *r) {
  gc_tombstones(r);
  r->ae_running = 0;
  r->ae_rounds++;
  r->ae_last_ms = now_ms(r);
  r->live--;
  repair_maybe_free(r);
}

static void dropped(void *arg, obj_status_t st) {
  if (st != OBJ_OK) log_warn("repair", "partition_drop_failed", "err=%s", obj_strerror(st));
  (void)arg;
}

static void ae_local_done(void *arg, obj_status_t st, const obj_digests_t *d) {
  repair_t *r = arg;
  if (st != OBJ_OK || r->closing) {
    ae_finish(r);
    return;
  }
  if (!r->digests) r->digests = malloc(sizeof *r->digests);
  if (!r->digests) abort();
  *r->digests = *d;
  /* Partitions that moved away for good (no longer owner or previous owner) are dropped - but
   * only once the layout has been still for a while: a coordinator with a newer layout than ours
   * may be writing to us in a partition our older copy of the layout does not give us. */
  const Gureum__Layout *l = layout_mgr_current(r->lm);
  uint64_t still = (uint64_t)r->node->cfg.storage_sync_interval_s * 3000;
  if (still < REPAIR_DROP_AFTER_MS) still = REPAIR_DROP_AFTER_MS;
  int may_drop = l && layout_node(l, self_name(r)) && now_ms(r) - r->layout_changed_ms >= still;
  for (uint32_t p = 0; may_drop && p < OBJ_PARTITIONS; p++)
    if (d->records[p] && !holds(r, p) && !r->closing) {
      log_info("repair", "partition_dropped", "partition=%u records=%llu", p,
               (unsigned long long)d->records[p]);
      r->dropped_partitions++;
      r->digests->records[p] = r->digests->objects[p] = r->digests->bytes[p] = 0;
      obj_partition_drop(r->obj, p, dropped, r);
    }
  /* The rest: every peer's digests against ours, for the partitions we both hold. */
  r->ae_pending = 1;
  for (size_t i = 0; l && i < l->n_nodes; i++) {
    const Gureum__LayoutNode *ln = l->nodes[i];
    if (strcmp(ln->name, self_name(r)) == 0 || !member_alive(r, ln->name)) continue;
    repair_peer_t *pp = calloc(1, sizeof *pp);
    if (!pp) abort();
    pp->r = r;
    snprintf(pp->name, sizeof pp->name, "%s", ln->name);
    repl_target_t t = {0};
    snprintf(t.name, sizeof t.name, "%s", ln->name);
    snprintf(t.addr, sizeof t.addr, "%s", ln->addr);
    r->ae_pending++;
    if (repl_call(r->repl, &t, GUREUM__MSG_TYPE__MSG_REPL_DIGESTS, "", 0, REPAIR_RPC_TIMEOUT_MS,
                  ae_peer_done, pp) != 0) {
      r->ae_pending--;
      free(pp);
    }
  }
  ae_release(r); /* drops our own hold */
}

static int both_hold(repair_t *r, uint32_t p, const char *peer) {
  repl_target_t t[REPL_MAX_TARGETS];
  size_t n = holders_of(r, p, t, REPL_MAX_TARGETS);
  int me = 0, them = 0;
  for (size_t i = 0; i < n; i++) {
    me |= strcmp(t[i].name, self_name(r)) == 0;
    them |= strcmp(t[i].name, peer) == 0;
  }
  return me && them;
}

static void ae_peer_done(void *arg, int status, const char *errmsg, const uint8_t *payload,
                         size_t len) {
  (void)errmsg;
  repair_peer_t *pp = arg;
  repair_t *r = pp->r;
  Gureum__ReplDigestsReply *d =
      status == RPC_OK ? gureum__repl_digests_reply__unpack(NULL, len, payload) : NULL;
  if (d && d->status == OBJ_OK && d->digests.len == sizeof r->digests->digest && r->digests)
    for (uint32_t p = 0; p < OBJ_PARTITIONS; p++)
      if (memcmp(d->digests.data + p * 16, r->digests->digest[p], 16) != 0 &&
          both_hold(r, p, pp->name))
        bit_set(r->ae_diff, p);
  if (d) gureum__repl_digests_reply__free_unpacked(d, NULL);
  free(pp);
  ae_release(r);
}

/* One peer (or the round itself) is done; the last one ends the round. */
static void ae_release(repair_t *r) {
  if (--r->ae_pending > 0) return;
  /* "differing" = partitions whose last sync had something to do; digests of partitions with
   * reduced-redundancy versions differ between owners by design, so they do not count. */
  r->ae_differing = bits(r->round_changed);
  memset(r->round_changed, 0, sizeof r->round_changed);
  for (uint32_t p = 0; p < OBJ_PARTITIONS; p++)
    if (bit(r->ae_diff, p)) enqueue(r, p);
  memset(r->ae_diff, 0, sizeof r->ae_diff);
  ae_finish(r);
}

void repair_antientropy_now(repair_t *r) {
  if (r->ae_running || r->closing || !layout_mgr_current(r->lm)) return;
  r->ae_running = 1;
  r->live++;
  obj_digests(r->obj, ae_local_done, r);
}

static void ae_tick(uv_timer_t *t) { repair_antientropy_now(t->data); }

/* ---- hinted handoff ---- */

void repair_hint(repair_t *r, const char *node, uint32_t partition) {
  if (partition >= OBJ_PARTITIONS || r->closing) return;
  if (strcmp(node, self_name(r)) == 0) {
    enqueue(r, partition);
    return;
  }
  repair_hint_t *h;
  for (h = r->hints; h && strcmp(h->name, node) != 0; h = h->next) {}
  if (!h) {
    h = calloc(1, sizeof *h);
    if (!h) return;
    snprintf(h->name, sizeof h->name, "%s", node);
    h->next = r->hints;
    r->hints = h;
  }
  bit_set(h->parts, partition);
}

typedef struct {
  repair_t *r;
  repair_hint_t *h;
  uint8_t sent[32];
} repair_hsend_t;

static void hint_sent(void *arg, int status, const char *errmsg, const uint8_t *payload,
                      size_t len) {
  (void)errmsg, (void)payload, (void)len;
  repair_hsend_t *x = arg;
  repair_t *r = x->r;
  x->h->sending = 0;
  if (status == RPC_OK) /* delivered: those partitions are the peer's to sync now */
    for (int i = 0; i < 32; i++) x->h->parts[i] &= (uint8_t)~x->sent[i];
  free(x);
  r->live--;
  repair_maybe_free(r);
}

static void hint_tick(uv_timer_t *t) {
  repair_t *r = t->data;
  const Gureum__Layout *l = layout_mgr_current(r->lm);
  for (repair_hint_t *h = r->hints; h && l; h = h->next) {
    if (h->sending || bits(h->parts) == 0 || !member_alive(r, h->name)) continue;
    const Gureum__LayoutNode *ln = layout_node(l, h->name);
    if (!ln) {
      memset(h->parts, 0, sizeof h->parts); /* not a storage node any more: nothing to hand off */
      continue;
    }
    Gureum__ReplSync q = GUREUM__REPL_SYNC__INIT;
    uint32_t parts[OBJ_PARTITIONS];
    for (uint32_t p = 0; p < OBJ_PARTITIONS; p++)
      if (bit(h->parts, p)) parts[q.n_partitions++] = p;
    q.partitions = parts;
    uint8_t buf[OBJ_PARTITIONS * 3 + 16];
    size_t n = gureum__repl_sync__pack(&q, buf);
    repair_hsend_t *x = calloc(1, sizeof *x);
    if (!x) return;
    x->r = r;
    x->h = h;
    memcpy(x->sent, h->parts, sizeof x->sent);
    repl_target_t tg = {0};
    snprintf(tg.name, sizeof tg.name, "%s", ln->name);
    snprintf(tg.addr, sizeof tg.addr, "%s", ln->addr);
    h->sending = 1;
    r->live++;
    if (repl_call(r->repl, &tg, GUREUM__MSG_TYPE__MSG_REPL_SYNC, buf, n, REPAIR_RPC_TIMEOUT_MS,
                  hint_sent, x) != 0) {
      h->sending = 0;
      r->live--;
      free(x);
    }
  }
}

/* MSG_REPL_SYNC: another node says we missed writes in these partitions. */
static void on_sync(replica_req_t *q, const uint8_t *payload, size_t len, void *arg) {
  repair_t *r = arg;
  Gureum__ReplSync *m = gureum__repl_sync__unpack(NULL, len, payload);
  if (!m) {
    replica_answer(q, GUREUM__RPC_STATUS__RPC_STATUS_BAD_REQUEST, "bad sync request", NULL, 0);
    return;
  }
  for (size_t i = 0; i < m->n_partitions; i++) enqueue(r, m->partitions[i]);
  gureum__repl_sync__free_unpacked(m, NULL);
  replica_answer(q, GUREUM__RPC_STATUS__RPC_STATUS_OK, NULL, NULL, 0);
}

/* ---- layout changes ---- */

static void on_layout(const Gureum__Layout *l, void *arg) {
  repair_t *r = arg;
  r->layout_changed_ms = now_ms(r);
  if (!l || r->closing) return;
  if (l->version != r->move_version) {
    uint8_t must[32] = {0};
    for (uint32_t p = 0; p < l->n_partitions && p < OBJ_PARTITIONS; p++) {
      const Gureum__LayoutPartition *lp = l->partitions[p];
      int owner = 0, was = 0;
      for (size_t i = 0; i < lp->n_owners; i++)
        owner |= lp->owners[i] < l->n_nodes && strcmp(l->nodes[lp->owners[i]]->name, self_name(r)) == 0;
      for (size_t i = 0; i < lp->n_prev; i++)
        was |= lp->prev[i] < l->n_nodes && strcmp(l->nodes[lp->prev[i]]->name, self_name(r)) == 0;
      if (owner && lp->n_prev && !was) bit_set(must, p);
    }
    r->move_version = l->version;
    memcpy(r->must_pull, must, sizeof must);
    memset(r->pulled, 0, sizeof r->pulled);
    r->reported = 0;
    r->move_started_ms = now_ms(r);
    if (bits(must)) log_info("repair", "moving_in", "layout=%llu partitions=%zu", (unsigned long long)l->version, bits(must));
    for (uint32_t p = 0; p < OBJ_PARTITIONS; p++)
      if (bit(must, p)) enqueue(r, p);
  }
}

/* ---- scrub ---- */

static void scrub_page(repair_t *r);

static void scrub_clear_bad(repair_t *r) {
  for (size_t i = 0; i < r->nbad; i++) {
    free(r->bad[i].bucket);
    free(r->bad[i].key);
    free(r->bad[i].version_id);
  }
  free(r->bad);
  r->bad = NULL;
  r->nbad = r->bad_next = 0;
}

static void scrub_end(repair_t *r) {
  r->scrubbing = 0;
  r->scrub_last_ms = now_ms(r);
  scrub_clear_bad(r);
  free(r->scrub_bucket), free(r->scrub_key), free(r->scrub_vid);
  r->scrub_bucket = r->scrub_key = r->scrub_vid = NULL;
  r->live--;
  repair_maybe_free(r);
}

typedef struct {
  repair_t *r;
  repl_target_t peers[REPL_MAX_TARGETS];
  size_t npeers, i;
  uint8_t *data;
  size_t len;
} repair_fix_t;

static void fix_try(repair_fix_t *x);

static void fix_written(void *arg, obj_status_t st) {
  repair_fix_t *x = arg;
  repair_t *r = x->r;
  if (st == OBJ_OK) {
    r->scrub_repaired++;
    log_info("repair", "block_repaired", "bucket=%s key=%s offset=%llu from=%s",
             r->bad[r->bad_next].bucket, r->bad[r->bad_next].key,
             (unsigned long long)r->bad[r->bad_next].offset, x->peers[x->i].name);
  }
  free(x->data);
  free(x);
  r->bad_next++;
  scrub_next_bad(r);
}

static void fix_reply(void *arg, int status, const char *errmsg, const uint8_t *payload,
                      size_t len) {
  (void)errmsg;
  repair_fix_t *x = arg;
  repair_t *r = x->r;
  const obj_bad_block_t *b = &r->bad[r->bad_next];
  Gureum__ReplReply *rep = status == RPC_OK ? gureum__repl_reply__unpack(NULL, len, payload) : NULL;
  if (rep && rep->status == OBJ_OK && rep->data.len == b->len && !r->closing) {
    x->data = malloc(rep->data.len);
    if (!x->data) abort();
    memcpy(x->data, rep->data.data, rep->data.len);
    x->len = rep->data.len;
    gureum__repl_reply__free_unpacked(rep, NULL);
    obj_block_repair(r->obj, b->bucket, b->key, b->version_id, b->offset, x->data, x->len,
                     fix_written, x);
    return;
  }
  if (rep) gureum__repl_reply__free_unpacked(rep, NULL);
  x->i++;
  fix_try(x);
}

static void fix_try(repair_fix_t *x) {
  repair_t *r = x->r;
  const obj_bad_block_t *b = &r->bad[r->bad_next];
  if (x->i >= x->npeers || r->closing) {
    log_error("repair", "block_unrepaired", "bucket=%s key=%s offset=%llu: no healthy copy reachable",
              b->bucket, b->key, (unsigned long long)b->offset);
    free(x);
    r->bad_next++;
    scrub_next_bad(r);
    return;
  }
  Gureum__ReplRead q = GUREUM__REPL_READ__INIT;
  q.bucket = b->bucket;
  q.key = b->key;
  q.version_id = b->version_id;
  q.offset = b->offset;
  q.length = b->len;
  uint8_t buf[2048];
  size_t n = gureum__repl_read__get_packed_size(&q);
  if (n > sizeof buf || repl_call(r->repl, &x->peers[x->i], GUREUM__MSG_TYPE__MSG_REPL_READ,
                                  (gureum__repl_read__pack(&q, buf), buf), n,
                                  REPAIR_RPC_TIMEOUT_MS, fix_reply, x) != 0) {
    x->i++;
    fix_try(x);
  }
}

static void scrub_next_bad(repair_t *r) {
  if (r->bad_next >= r->nbad || r->closing) {
    scrub_clear_bad(r);
    if (r->closing) {
      scrub_end(r);
      return;
    }
    scrub_page(r);
    return;
  }
  const obj_bad_block_t *b = &r->bad[r->bad_next];
  repair_fix_t *x = calloc(1, sizeof *x);
  if (!x) abort();
  x->r = r;
  repl_target_t all[REPL_MAX_TARGETS];
  size_t n = holders_of(r, obj_partition(b->bucket, b->key), all, REPL_MAX_TARGETS);
  for (size_t i = 0; i < n; i++)
    if (strcmp(all[i].name, self_name(r)) != 0 && member_alive(r, all[i].name))
      x->peers[x->npeers++] = all[i];
  fix_try(x);
}

static void scrub_done(void *arg, obj_status_t st, const obj_bad_block_t *bad, size_t nbad,
                       const char *nb, const char *nk, const char *nv, int done) {
  repair_t *r = arg;
  if (st != OBJ_OK || r->closing) {
    scrub_end(r);
    return;
  }
  r->scrub_checked += REPAIR_SCRUB_PAGE;
  free(r->scrub_bucket), free(r->scrub_key), free(r->scrub_vid);
  r->scrub_bucket = dupz(nb);
  r->scrub_key = dupz(nk);
  r->scrub_vid = dupz(nv);
  r->scrubbing = done ? 2 : 1; /* 2: this was the last page */
  if (nbad) {
    r->scrub_bad += nbad;
    r->bad = calloc(nbad, sizeof *r->bad);
    if (!r->bad) abort();
    for (size_t i = 0; i < nbad; i++) {
      r->bad[i] = bad[i];
      r->bad[i].bucket = dupz(bad[i].bucket);
      r->bad[i].key = dupz(bad[i].key);
      r->bad[i].version_id = dupz(bad[i].version_id);
      log_warn("repair", "block_bad", "bucket=%s key=%s version=%s offset=%llu", bad[i].bucket,
               bad[i].key, bad[i].version_id, (unsigned long long)bad[i].offset);
    }
    r->nbad = nbad;
  }
  scrub_next_bad(r); /* repairs this page's bad blocks, then the next page */
}

/* The next page after the cursor, or the end once the last page's repairs are done. */
static void scrub_page(repair_t *r) {
  if (r->scrubbing == 2) {
    scrub_end(r);
    return;
  }
  obj_scrub(r->obj, r->scrub_bucket, r->scrub_key, r->scrub_vid, REPAIR_SCRUB_PAGE, scrub_done, r);
}

void repair_scrub_now(repair_t *r) {
  if (r->scrubbing || r->closing) return;
  r->scrubbing = 1;
  r->live++;
  r->scrub_checked = r->scrub_bad = r->scrub_repaired = 0; /* the figures are the last run's */
  obj_scrub(r->obj, "", "", "", REPAIR_SCRUB_PAGE, scrub_done, r);
}

static void scrub_tick(uv_timer_t *t) { repair_scrub_now(t->data); }

/* ---- status ---- */

json_t *repair_stats(repair_t *r) {
  const Gureum__Layout *l = layout_mgr_current(r->lm);
  uint64_t objects = 0, bytes = 0, records = 0;
  size_t held = 0;
  for (uint32_t p = 0; p < OBJ_PARTITIONS; p++) {
    if (r->digests) {
      objects += r->digests->objects[p];
      bytes += r->digests->bytes[p];
      records += r->digests->records[p];
    }
    held += l && holds(r, p);
  }
  size_t hints = 0;
  for (repair_hint_t *h = r->hints; h; h = h->next) hints += bits(h->parts);
  return json_pack(
      "{s:s,s:I,s:I,s:I,s:I,s:I,s:{s:I,s:I,s:I,s:I},s:{s:I,s:I,s:I,s:b},s:{s:I,s:I,s:I,s:I,s:b},s:I,s:I,s:I,s:I}",
      "node", self_name(r), "layout_version", (json_int_t)(l ? l->version : 0), "partitions",
      (json_int_t)held, "objects", (json_int_t)objects, "bytes", (json_int_t)bytes, "records",
      (json_int_t)records, "moving", "layout_version", (json_int_t)r->move_version, "to_pull",
      (json_int_t)bits(r->must_pull), "pulled", (json_int_t)bits(r->pulled), "elapsed_ms",
      (json_int_t)(r->move_version ? now_ms(r) - r->move_started_ms : 0), "antientropy",
      "rounds", (json_int_t)r->ae_rounds, "last_ms_ago",
      (r->ae_last_ms ? (json_int_t)(now_ms(r) - r->ae_last_ms) : -1), "differing",
      (json_int_t)r->ae_differing, "running", r->ae_running, "scrub", "checked",
      (json_int_t)r->scrub_checked, "bad", (json_int_t)r->scrub_bad, "repaired",
      (json_int_t)r->scrub_repaired, "last_ms_ago",
      (r->scrub_last_ms ? (json_int_t)(now_ms(r) - r->scrub_last_ms) : -1), "running",
      r->scrubbing != 0, "sync_queue", (json_int_t)(r->qlen + (r->cur != NULL)), "hints_pending",
      (json_int_t)hints, "pulled_bytes", (json_int_t)r->pulled_bytes, "pulled_versions",
      (json_int_t)r->pulled_versions);
}

typedef struct {
  repair_t *r;
  replica_req_t *q;
} repair_stats_req_t;

static void stats_answer(repair_t *r, replica_req_t *q);

/* Counts are the operator's question: fresh ones, not the last anti-entropy round's. */
static void stats_digests(void *arg, obj_status_t st, const obj_digests_t *d) {
  repair_stats_req_t *x = arg;
  repair_t *r = x->r;
  if (st == OBJ_OK && d && !r->closing) {
    if (!r->digests) r->digests = malloc(sizeof *r->digests);
    if (r->digests) *r->digests = *d;
  }
  stats_answer(r, x->q);
  free(x);
  r->live--;
  repair_maybe_free(r);
}

static void on_stats(replica_req_t *q, const uint8_t *payload, size_t len, void *arg) {
  (void)payload, (void)len;
  repair_t *r = arg;
  repair_stats_req_t *x = malloc(sizeof *x);
  if (!x) {
    stats_answer(r, q);
    return;
  }
  *x = (repair_stats_req_t){r, q};
  r->live++;
  obj_digests(r->obj, stats_digests, x);
}

static void stats_answer(repair_t *r, replica_req_t *q) {
  json_t *j = repair_stats(r);
  char *s = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  Gureum__ReplReply rep = GUREUM__REPL_REPLY__INIT;
  rep.data.data = (uint8_t *)s;
  rep.data.len = s ? strlen(s) : 0;
  size_t n = gureum__repl_reply__get_packed_size(&rep);
  uint8_t *out = malloc(n ? n : 1);
  if (!out) abort();
  gureum__repl_reply__pack(&rep, out);
  replica_answer(q, GUREUM__RPC_STATUS__RPC_STATUS_OK, NULL, out, n);
  free(out);
  free(s);
}

/* ---- life cycle ---- */

static uv_timer_t *timer_new(repair_t *r) {
  uv_timer_t *t = malloc(sizeof *t);
  if (!t) abort();
  uv_timer_init(&r->node->loop, t);
  t->data = r;
  return t;
}

repair_t *repair_new(node_t *n, obj_t *obj, replica_t *replica, repl_t *repl, layout_mgr_t *lm) {
  repair_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->node = n;
  r->obj = obj;
  r->replica = replica;
  r->repl = repl;
  r->lm = lm;
  r->ae_timer = timer_new(r);
  r->hint_timer = timer_new(r);
  r->scrub_timer = timer_new(r);
  r->rate_timer = timer_new(r);
  r->allowance_ms = now_ms(r);
  uint64_t ae = (uint64_t)n->cfg.storage_sync_interval_s * 1000;
  uint64_t scrub = (uint64_t)n->cfg.storage_scrub_interval_s * 1000;
  uv_timer_start(r->ae_timer, ae_tick, ae / 2 + 1, ae ? ae : 30000);
  uv_timer_start(r->hint_timer, hint_tick, REPAIR_HINT_PERIOD_MS, REPAIR_HINT_PERIOD_MS);
  uv_timer_start(r->scrub_timer, scrub_tick, scrub ? scrub : 3600000, scrub ? scrub : 3600000);
  replica_set_hook(replica, GUREUM__MSG_TYPE__MSG_REPL_SYNC, on_sync, r);
  replica_set_hook(replica, GUREUM__MSG_TYPE__MSG_REPL_STATS, on_stats, r);
  layout_mgr_on_change(lm, on_layout, r);
  on_layout(layout_mgr_current(lm), r);
  return r;
}

static void timer_closed(uv_handle_t *h) { free(h); }

static void repair_maybe_free(repair_t *r) {
  if (!r->closing || r->live > 0) return;
  uv_close((uv_handle_t *)r->ae_timer, timer_closed);
  uv_close((uv_handle_t *)r->hint_timer, timer_closed);
  uv_close((uv_handle_t *)r->scrub_timer, timer_closed);
  uv_close((uv_handle_t *)r->rate_timer, timer_closed);
  while (r->hints) {
    repair_hint_t *h = r->hints;
    r->hints = h->next;
    free(h);
  }
  free(r->digests);
  free(r);
}

void repair_free(repair_t *r) {
  if (!r) return;
  r->closing = 1;
  replica_set_hook(r->replica, GUREUM__MSG_TYPE__MSG_REPL_SYNC, NULL, NULL);
  replica_set_hook(r->replica, GUREUM__MSG_TYPE__MSG_REPL_STATS, NULL, NULL);
  layout_mgr_on_change(r->lm, NULL, NULL);
  uv_timer_stop(r->ae_timer);
  uv_timer_stop(r->hint_timer);
  uv_timer_stop(r->scrub_timer);
  if (uv_is_active((uv_handle_t *)r->rate_timer) && r->cur) {
    /* a pull waiting for its rate slot: end it now */
    uv_timer_stop(r->rate_timer);
    repair_psync_t *s = r->cur;
    obj_put_abort(s->w);
    s->w = NULL;
    s->next = s->ntodo;
    s->peer = s->npeers;
    psync_next_peer(s);
    return;
  }
  repair_maybe_free(r);
}
