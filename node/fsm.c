/* fsm.c - the control plane's state machine over RocksDB: apply, snapshot, restore, change log
 * and watches. libraft calls apply on the loop thread, synchronously; durability comes from the
 * Raft log, so state writes are unsynced memtable writes and every apply is idempotent by index. */
#include "fsm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define FSM_RESULTS 4096    /* results kept by index until raft_apply's callback reads them */
#define FSM_LOG_KEEP 10000  /* changes kept for watches that resume from a revision */
#define FSM_LIST_MAX 10000

typedef struct fsm_watch_s {
  int id;
  char *prefix;
  state_watch_fn fn;
  void *arg;
} fsm_watch_t;

struct fsm_s {
  store_t *store;
  store_cf_t *cf_state, *cf_log, *cf_meta;
  struct raft_fsm rf;
  struct raft *raft;
  uint64_t applied;
  fsm_result_t results[FSM_RESULTS];
  fsm_watch_t *watches;
  size_t nwatches;
  int next_watch;
  metric_t *m_applied, *m_keys;
};

static void be64(uint8_t out[8], uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8) out[i] = (uint8_t)v;
}

static uint64_t from_be64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
  return v;
}

static int has_prefix(const char *key, const char *prefix) {
  return strncmp(key, prefix, strlen(prefix)) == 0;
}

uint64_t fsm_applied(const fsm_t *f) { return f->applied; }

/* Entry layout: 4-byte little-endian length, the protobuf, zero padding to a multiple of 8.
 * libraft 0.15's segment loader sums entry lengths without the padding its encoder adds, so an
 * entry whose length is not a multiple of 8 makes the segment unreadable after a restart. */
int fsm_encode(const Gureum__StateCommand *cmd, struct raft_buffer *buf) {
  size_t n = gureum__state_command__get_packed_size(cmd);
  buf->len = (4 + n + 7) & ~(size_t)7;
  buf->base = raft_malloc(buf->len);
  if (!buf->base) return -1;
  memset(buf->base, 0, buf->len);
  uint8_t *p = buf->base;
  p[0] = (uint8_t)n, p[1] = (uint8_t)(n >> 8), p[2] = (uint8_t)(n >> 16), p[3] = (uint8_t)(n >> 24);
  gureum__state_command__pack(cmd, p + 4);
  return 0;
}

static Gureum__StateCommand *fsm_decode(const struct raft_buffer *buf) {
  const uint8_t *p = buf->base;
  if (buf->len < 4) return NULL;
  size_t n = (size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 | (size_t)p[3] << 24;
  if (n > buf->len - 4) return NULL;
  return gureum__state_command__unpack(NULL, n, p + 4);
}

/* ---- reads ---- */

static Gureum__StateEntry *fsm_load(fsm_t *f, const char *key) {
  void *v;
  size_t vl;
  if (store_get(f->store, f->cf_state, NULL, key, strlen(key), &v, &vl, NULL) != STORE_OK) return NULL;
  Gureum__StateEntry *e = gureum__state_entry__unpack(NULL, vl, v);
  free(v);
  return e;
}

static Gureum__StateKV *kv_from_entry(const char *key, const Gureum__StateEntry *e) {
  Gureum__StateKV *kv = malloc(sizeof *kv);
  if (!kv) return NULL;
  gureum__state_kv__init(kv);
  kv->key = strdup(key);
  kv->value.len = e->value.len;
  kv->value.data = malloc(e->value.len + 1);
  if (e->value.len) memcpy(kv->value.data, e->value.data, e->value.len);
  kv->value.data[e->value.len] = 0;
  kv->revision = e->revision;
  kv->create_revision = e->create_revision;
  return kv;
}

/* KVs built here use malloc'ed fields, which protobuf-c's default allocator frees too. */
int fsm_get(fsm_t *f, const char *key, Gureum__StateKV **out) {
  Gureum__StateEntry *e = fsm_load(f, key);
  if (!e) return 1;
  *out = kv_from_entry(key, e);
  gureum__state_entry__free_unpacked(e, NULL);
  return *out ? 0 : 1;
}

Gureum__StateKV **fsm_list(fsm_t *f, const char *prefix, uint32_t limit, size_t *n) {
  if (!limit || limit > FSM_LIST_MAX) limit = FSM_LIST_MAX;
  size_t cap = 16;
  Gureum__StateKV **out = malloc(cap * sizeof *out);
  *n = 0;
  store_iter_t *it = store_iter_new(f->store, f->cf_state, NULL);
  for (store_iter_seek(it, prefix, strlen(prefix)); out && store_iter_valid(it) && *n < limit;
       store_iter_next(it)) {
    size_t kl, vl;
    const char *k = store_iter_key(it, &kl);
    if (kl < strlen(prefix) || memcmp(k, prefix, strlen(prefix)) != 0) break;
    const void *v = store_iter_value(it, &vl);
    Gureum__StateEntry *e = gureum__state_entry__unpack(NULL, vl, v);
    if (!e) continue;
    char *key = strndup(k, kl);
    if (*n == cap) out = realloc(out, (cap *= 2) * sizeof *out);
    if (out) out[(*n)++] = kv_from_entry(key, e);
    free(key);
    gureum__state_entry__free_unpacked(e, NULL);
  }
  store_iter_free(it);
  return out;
}

void fsm_list_free(Gureum__StateKV **kvs, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (kvs[i]) gureum__state_kv__free_unpacked(kvs[i], NULL);
  free(kvs);
}

/* ---- watches ---- */

static void fsm_notify(fsm_t *f, const state_change_t *c, int resync) {
  for (size_t i = 0; i < f->nwatches; i++)
    if (has_prefix(c->key, f->watches[i].prefix)) f->watches[i].fn(c, resync, f->watches[i].arg);
}

static void fsm_deliver_state(fsm_t *f, const fsm_watch_t *w) {
  size_t n;
  Gureum__StateKV **kvs = fsm_list(f, w->prefix, FSM_LIST_MAX, &n);
  for (size_t i = 0; kvs && i < n; i++) {
    state_change_t c = {kvs[i]->key, kvs[i]->value.data, kvs[i]->value.len, kvs[i]->revision, 0};
    w->fn(&c, 1, w->arg);
  }
  if (kvs) fsm_list_free(kvs, n);
}

/* Replay history after `from` from the change log; returns 0 if it reached back far enough. */
static int fsm_deliver_log(fsm_t *f, const fsm_watch_t *w, uint64_t from) {
  store_iter_t *it = store_iter_new(f->store, f->cf_log, NULL);
  store_iter_seek_first(it);
  size_t kl;
  int covered = from >= f->applied ||
                (store_iter_valid(it) && from_be64(store_iter_key(it, &kl)) <= from + 1);
  if (!covered) {
    store_iter_free(it);
    return -1;
  }
  uint8_t k[8];
  be64(k, from + 1);
  for (store_iter_seek(it, k, 8); store_iter_valid(it); store_iter_next(it)) {
    size_t vl;
    const void *v = store_iter_value(it, &vl);
    Gureum__StateKV *kv = gureum__state_kv__unpack(NULL, vl, v);
    if (!kv) continue;
    if (has_prefix(kv->key, w->prefix)) {
      state_change_t c = {kv->key, kv->value.data, kv->value.len, kv->revision, kv->deleted};
      w->fn(&c, 0, w->arg);
    }
    gureum__state_kv__free_unpacked(kv, NULL);
  }
  store_iter_free(it);
  return 0;
}

int fsm_watch(fsm_t *f, const char *prefix, uint64_t from, state_watch_fn fn, void *arg) {
  fsm_watch_t *a = realloc(f->watches, (f->nwatches + 1) * sizeof *a);
  if (!a) return -1;
  f->watches = a;
  fsm_watch_t *w = &a[f->nwatches++];
  *w = (fsm_watch_t){++f->next_watch, strdup(prefix), fn, arg};
  if (fsm_deliver_log(f, w, from) != 0) fsm_deliver_state(f, w);
  return w->id;
}

void fsm_unwatch(fsm_t *f, int id) {
  for (size_t i = 0; i < f->nwatches; i++)
    if (f->watches[i].id == id) {
      free(f->watches[i].prefix);
      f->watches[i] = f->watches[--f->nwatches];
      return;
    }
}

/* ---- apply ---- */

static void fsm_put_applied(fsm_t *f, store_batch_t *b, uint64_t index) {
  uint8_t v[8];
  be64(v, index);
  store_batch_put(b, f->cf_meta, "applied", 7, v, 8);
}

static int fsm_apply_cmd(fsm_t *f, const Gureum__StateCommand *cmd, uint64_t index, fsm_result_t *res) {
  store_batch_t *b = store_batch_new();
  Gureum__StateEntry *cur = cmd->key && *cmd->key ? fsm_load(f, cmd->key) : NULL;
  uint64_t cur_rev = cur ? cur->revision : 0;
  state_change_t change = {0};
  Gureum__StateKV rec = GUREUM__STATE_KV__INIT;
  if (cmd->op == GUREUM__STATE_COMMAND__OP__NOOP || !cmd->key || !*cmd->key) {
    res->code = GUREUM__STATE_RESPONSE__CODE__OK;
  } else if (cmd->has_expected && cmd->expected_revision != cur_rev) {
    res->code = GUREUM__STATE_RESPONSE__CODE__CONFLICT;
    res->current_revision = cur_rev;
  } else if (cmd->op == GUREUM__STATE_COMMAND__OP__DELETE && !cur) {
    res->code = GUREUM__STATE_RESPONSE__CODE__NOT_FOUND;
  } else {
    res->code = GUREUM__STATE_RESPONSE__CODE__OK;
    res->revision = index;
    rec.key = cmd->key;
    rec.revision = index;
    if (cmd->op == GUREUM__STATE_COMMAND__OP__DELETE) {
      store_batch_delete(b, f->cf_state, cmd->key, strlen(cmd->key));
      rec.deleted = 1;
      rec.create_revision = cur->create_revision;
    } else {
      Gureum__StateEntry e = GUREUM__STATE_ENTRY__INIT;
      e.value = cmd->value;
      e.revision = index;
      e.create_revision = cur ? cur->create_revision : index;
      uint8_t *ev = malloc(gureum__state_entry__get_packed_size(&e) + 1);
      size_t el = gureum__state_entry__pack(&e, ev);
      store_batch_put(b, f->cf_state, cmd->key, strlen(cmd->key), ev, el);
      free(ev);
      rec.value = cmd->value;
      rec.create_revision = e.create_revision;
    }
    uint8_t lk[8];
    be64(lk, index);
    uint8_t *rv = malloc(gureum__state_kv__get_packed_size(&rec) + 1);
    size_t rl = gureum__state_kv__pack(&rec, rv);
    store_batch_put(b, f->cf_log, lk, 8, rv, rl);
    free(rv);
    if (index > FSM_LOG_KEEP) {
      be64(lk, index - FSM_LOG_KEEP);
      store_batch_delete(b, f->cf_log, lk, 8);
    }
    change = (state_change_t){cmd->key, cmd->value.data, cmd->value.len, index, rec.deleted};
  }
  fsm_put_applied(f, b, index);
  char *err = NULL;
  int rv = store_write(f->store, b, 0, &err);
  store_batch_free(b);
  if (cur) gureum__state_entry__free_unpacked(cur, NULL);
  if (rv != 0) {
    log_error("fsm", "apply_failed", "index=%llu error=\"%s\"", (unsigned long long)index, err ? err : "?");
    free(err);
    return RAFT_IOERR;
  }
  f->applied = index;
  metric_set(f->m_applied, (int64_t)index);
  if (change.key) fsm_notify(f, &change, 0);
  return 0;
}

int fsm_apply_at(fsm_t *f, const struct raft_buffer *buf, uint64_t index, fsm_result_t **result) {
  fsm_result_t *res = &f->results[index % FSM_RESULTS];
  memset(res, 0, sizeof *res);
  *result = res;
  if (index <= f->applied) return 0; /* already in RocksDB: replay after a restart */
  Gureum__StateCommand *cmd = fsm_decode(buf);
  if (!cmd) {
    /* Every node skips the same malformed entry, so they stay identical. */
    log_error("fsm", "bad_command", "index=%llu", (unsigned long long)index);
    res->code = GUREUM__STATE_RESPONSE__CODE__ERROR;
    Gureum__StateCommand noop = GUREUM__STATE_COMMAND__INIT;
    noop.op = GUREUM__STATE_COMMAND__OP__NOOP;
    return fsm_apply_cmd(f, &noop, index, res);
  }
  int rv = fsm_apply_cmd(f, cmd, index, res);
  gureum__state_command__free_unpacked(cmd, NULL);
  return rv;
}

static int fsm_apply(struct raft_fsm *rf, const struct raft_buffer *buf, void **result) {
  fsm_t *f = rf->data;
  /* libraft 0.15 does not pass the index: it is the one after the last applied entry. */
  return fsm_apply_at(f, buf, raft_last_applied(f->raft) + 1, (fsm_result_t **)result);
}

/* ---- snapshots ---- */

static int fsm_snapshot(struct raft_fsm *rf, struct raft_buffer *bufs[], unsigned *n_bufs) {
  fsm_t *f = rf->data;
  size_t n;
  Gureum__StateKV **kvs = fsm_list(f, "", 0xffffffffu, &n);
  Gureum__StateSnapshot s = GUREUM__STATE_SNAPSHOT__INIT;
  s.applied_index = f->applied;
  s.kvs = kvs;
  s.n_kvs = kvs ? n : 0;
  size_t len = gureum__state_snapshot__get_packed_size(&s);
  *bufs = raft_malloc(sizeof **bufs);
  void *data = raft_malloc(len ? len : 1);
  if (!*bufs || !data) {
    raft_free(*bufs);
    raft_free(data);
    if (kvs) fsm_list_free(kvs, n);
    return RAFT_NOMEM;
  }
  gureum__state_snapshot__pack(&s, data);
  (*bufs)[0].base = data;
  (*bufs)[0].len = len;
  *n_bufs = 1;
  log_info("fsm", "snapshot", "applied=%llu keys=%zu bytes=%zu", (unsigned long long)f->applied, n, len);
  if (kvs) fsm_list_free(kvs, n);
  return 0;
}

static void fsm_wipe(fsm_t *f, store_cf_t *cf, store_batch_t *b) {
  store_iter_t *it = store_iter_new(f->store, cf, NULL);
  for (store_iter_seek_first(it); store_iter_valid(it); store_iter_next(it)) {
    size_t kl;
    const void *k = store_iter_key(it, &kl);
    store_batch_delete(b, cf, k, kl);
  }
  store_iter_free(it);
}

static int fsm_restore(struct raft_fsm *rf, struct raft_buffer *buf) {
  fsm_t *f = rf->data;
  Gureum__StateSnapshot *s = gureum__state_snapshot__unpack(NULL, buf->len, buf->base);
  raft_free(buf->base);
  if (!s) return RAFT_MALFORMED;
  store_batch_t *b = store_batch_new();
  fsm_wipe(f, f->cf_state, b);
  fsm_wipe(f, f->cf_log, b); /* history before the snapshot no longer lines up */
  for (size_t i = 0; i < s->n_kvs; i++) {
    Gureum__StateEntry e = GUREUM__STATE_ENTRY__INIT;
    e.value = s->kvs[i]->value;
    e.revision = s->kvs[i]->revision;
    e.create_revision = s->kvs[i]->create_revision;
    uint8_t *ev = malloc(gureum__state_entry__get_packed_size(&e) + 1);
    size_t el = gureum__state_entry__pack(&e, ev);
    store_batch_put(b, f->cf_state, s->kvs[i]->key, strlen(s->kvs[i]->key), ev, el);
    free(ev);
  }
  fsm_put_applied(f, b, s->applied_index);
  char *err = NULL;
  int rv = store_write(f->store, b, 1, &err);
  store_batch_free(b);
  if (rv != 0) {
    log_error("fsm", "restore_failed", "error=\"%s\"", err ? err : "?");
    free(err);
    gureum__state_snapshot__free_unpacked(s, NULL);
    return RAFT_IOERR;
  }
  f->applied = s->applied_index;
  log_info("fsm", "restored", "applied=%llu keys=%zu", (unsigned long long)f->applied, s->n_kvs);
  gureum__state_snapshot__free_unpacked(s, NULL);
  /* Watchers missed whatever the snapshot skipped: give them the whole state again. */
  for (size_t i = 0; i < f->nwatches; i++) fsm_deliver_state(f, &f->watches[i]);
  return 0;
}

/* ---- life cycle ---- */

fsm_t *fsm_new(store_t *store, metrics_t *m, char **err) {
  fsm_t *f = calloc(1, sizeof *f);
  if (!f) return NULL;
  f->store = store;
  if (!(f->cf_state = store_cf(store, "state", err)) || !(f->cf_log = store_cf(store, "state_log", err)) ||
      !(f->cf_meta = store_cf(store, "state_meta", err))) {
    free(f);
    return NULL;
  }
  void *v;
  size_t vl;
  if (store_get(store, f->cf_meta, NULL, "applied", 7, &v, &vl, NULL) == STORE_OK) {
    if (vl == 8) f->applied = from_be64(v);
    free(v);
  }
  f->m_applied = metrics_gauge(m, "gureum_state_applied_index", NULL, "Last Raft index applied to the state");
  metric_set(f->m_applied, (int64_t)f->applied);
  f->rf.version = 1;
  f->rf.data = f;
  f->rf.apply = fsm_apply;
  f->rf.snapshot = fsm_snapshot;
  f->rf.restore = fsm_restore;
  return f;
}

struct raft_fsm *fsm_raft(fsm_t *f, struct raft *r) {
  f->raft = r;
  return &f->rf;
}

void fsm_free(fsm_t *f) {
  if (!f) return;
  for (size_t i = 0; i < f->nwatches; i++) free(f->watches[i].prefix);
  free(f->watches);
  free(f);
}
