/* fsm_test.c - unit tests of the control-plane state machine: revisions, compare-and-set,
 * idempotent replay, snapshot/restore round trip, and watches from a revision. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fsm.h"

typedef struct {
  char dir[64];
  store_t *store;
  metrics_t *m;
  fsm_t *f;
} env_t;

static fsm_t *open_fsm(env_t *e) {
  store_opts_t o = {0};
  assert_int_equal(store_open(e->dir, &o, &e->store, NULL), 0);
  e->f = fsm_new(e->store, e->m, NULL);
  assert_non_null(e->f);
  return e->f;
}

static void close_fsm(env_t *e) {
  fsm_free(e->f);
  store_close(e->store);
}

static int setup(void **state) {
  env_t *e = calloc(1, sizeof *e);
  snprintf(e->dir, sizeof e->dir, "/tmp/fsm_test.XXXXXX");
  assert_non_null(mkdtemp(e->dir));
  e->m = metrics_new();
  open_fsm(e);
  *state = e;
  return 0;
}

static int teardown(void **state) {
  env_t *e = *state;
  close_fsm(e);
  metrics_free(e->m);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", e->dir);
  assert_int_equal(system(cmd), 0);
  free(e);
  return 0;
}

/* Apply a command at `index`; returns the result. */
static fsm_result_t apply(fsm_t *f, uint64_t index, Gureum__StateCommand__Op op, const char *key,
                          const char *value, int64_t expect) {
  Gureum__StateCommand c = GUREUM__STATE_COMMAND__INIT;
  c.op = op;
  c.key = (char *)key;
  if (value) {
    c.value.data = (uint8_t *)value;
    c.value.len = strlen(value);
  }
  if (expect >= 0) {
    c.has_expected = 1;
    c.expected_revision = (uint64_t)expect;
  }
  struct raft_buffer buf;
  assert_int_equal(fsm_encode(&c, &buf), 0);
  fsm_result_t *res;
  assert_int_equal(fsm_apply_at(f, &buf, index, &res), 0);
  raft_free(buf.base);
  return *res;
}

#define PUT GUREUM__STATE_COMMAND__OP__PUT
#define DEL GUREUM__STATE_COMMAND__OP__DELETE
#define OK GUREUM__STATE_RESPONSE__CODE__OK

static void assert_value(fsm_t *f, const char *key, const char *value, uint64_t rev) {
  Gureum__StateKV *kv;
  assert_int_equal(fsm_get(f, key, &kv), 0);
  assert_int_equal(kv->value.len, strlen(value));
  assert_memory_equal(kv->value.data, value, strlen(value));
  assert_int_equal(kv->revision, rev);
  gureum__state_kv__free_unpacked(kv, NULL);
}

static void test_put_get_revisions(void **state) {
  env_t *e = *state;
  assert_int_equal(apply(e->f, 1, PUT, "bucket/a", "one", -1).code, OK);
  assert_int_equal(apply(e->f, 2, PUT, "bucket/a", "two", -1).revision, 2);
  assert_value(e->f, "bucket/a", "two", 2);
  Gureum__StateKV *kv;
  assert_int_equal(fsm_get(e->f, "bucket/a", &kv), 0);
  assert_int_equal(kv->create_revision, 1);
  gureum__state_kv__free_unpacked(kv, NULL);
  assert_int_equal(fsm_get(e->f, "bucket/none", &kv), 1);
  assert_int_equal(fsm_applied(e->f), 2);
}

static void test_compare_and_set(void **state) {
  env_t *e = *state;
  assert_int_equal(apply(e->f, 1, PUT, "zone/x", "v1", 0).code, OK); /* create-only */
  fsm_result_t r = apply(e->f, 2, PUT, "zone/x", "v2", 0);           /* exists now */
  assert_int_equal(r.code, GUREUM__STATE_RESPONSE__CODE__CONFLICT);
  assert_int_equal(r.current_revision, 1);
  r = apply(e->f, 3, PUT, "zone/x", "v3", 7); /* stale revision */
  assert_int_equal(r.code, GUREUM__STATE_RESPONSE__CODE__CONFLICT);
  assert_int_equal(r.current_revision, 1);
  assert_int_equal(apply(e->f, 4, PUT, "zone/x", "v4", 1).code, OK);
  assert_value(e->f, "zone/x", "v4", 4);
  assert_int_equal(apply(e->f, 5, DEL, "zone/x", NULL, 1).code, GUREUM__STATE_RESPONSE__CODE__CONFLICT);
  assert_int_equal(apply(e->f, 6, DEL, "zone/x", NULL, 4).code, OK);
  assert_int_equal(apply(e->f, 7, DEL, "zone/x", NULL, -1).code, GUREUM__STATE_RESPONSE__CODE__NOT_FOUND);
  assert_int_equal(fsm_applied(e->f), 7);
}

/* After a restart libraft re-applies entries the store already holds: they must not apply twice. */
static void test_replay_is_idempotent(void **state) {
  env_t *e = *state;
  apply(e->f, 1, PUT, "key/k", "a", 0);
  apply(e->f, 2, PUT, "key/k", "b", 1);
  close_fsm(e);
  open_fsm(e);
  assert_int_equal(fsm_applied(e->f), 2);
  /* Replaying entry 1 (a create-only put) would conflict if it ran again; it is skipped. */
  assert_int_equal(apply(e->f, 1, PUT, "key/k", "a", 0).code, OK);
  assert_value(e->f, "key/k", "b", 2);
  assert_int_equal(apply(e->f, 3, PUT, "key/k", "c", 2).code, OK);
}

static void test_list_prefix(void **state) {
  env_t *e = *state;
  apply(e->f, 1, PUT, "bucket/b", "2", -1);
  apply(e->f, 2, PUT, "bucket/a", "1", -1);
  apply(e->f, 3, PUT, "bucketz/c", "3", -1);
  apply(e->f, 4, PUT, "zone/d", "4", -1);
  size_t n;
  Gureum__StateKV **kvs = fsm_list(e->f, "bucket/", 0, &n);
  assert_int_equal(n, 2);
  assert_string_equal(kvs[0]->key, "bucket/a");
  assert_string_equal(kvs[1]->key, "bucket/b");
  fsm_list_free(kvs, n);
  kvs = fsm_list(e->f, "", 3, &n);
  assert_int_equal(n, 3);
  fsm_list_free(kvs, n);
}

static void test_snapshot_restore(void **state) {
  env_t *e = *state;
  for (int i = 1; i <= 50; i++) {
    char k[32], v[32];
    snprintf(k, sizeof k, "key/%03d", i);
    snprintf(v, sizeof v, "value-%d", i);
    apply(e->f, (uint64_t)i, PUT, k, v, -1);
  }
  apply(e->f, 51, DEL, "key/007", NULL, -1);
  struct raft_fsm *rf = fsm_raft(e->f, NULL);
  struct raft_buffer *bufs;
  unsigned nb;
  assert_int_equal(rf->snapshot(rf, &bufs, &nb), 0);
  assert_int_equal(nb, 1);
  /* Restore into a second, diverged store: it must end identical. */
  env_t e2 = {0};
  snprintf(e2.dir, sizeof e2.dir, "/tmp/fsm_test2.XXXXXX");
  assert_non_null(mkdtemp(e2.dir));
  e2.m = e->m;
  open_fsm(&e2);
  apply(e2.f, 1, PUT, "stale/junk", "x", -1);
  struct raft_fsm *rf2 = fsm_raft(e2.f, NULL);
  assert_int_equal(rf2->restore(rf2, &bufs[0]), 0); /* takes the buffer */
  raft_free(bufs);
  assert_int_equal(fsm_applied(e2.f), 51);
  size_t n;
  Gureum__StateKV **kvs = fsm_list(e2.f, "", 0, &n);
  assert_int_equal(n, 49);
  fsm_list_free(kvs, n);
  assert_value(e2.f, "key/050", "value-50", 50);
  Gureum__StateKV *kv;
  assert_int_equal(fsm_get(e2.f, "stale/junk", &kv), 1);
  assert_int_equal(fsm_get(e2.f, "key/007", &kv), 1);
  close_fsm(&e2);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", e2.dir);
  assert_int_equal(system(cmd), 0);
}

typedef struct {
  char keys[64][32];
  uint64_t revs[64];
  int deleted[64];
  int n, resyncs;
} seen_t;

static void on_change(const state_change_t *c, int resync, void *arg) {
  seen_t *s = arg;
  if (s->n >= 64) return;
  snprintf(s->keys[s->n], sizeof s->keys[0], "%s", c->key);
  s->revs[s->n] = c->revision;
  s->deleted[s->n] = c->deleted;
  s->n++;
  s->resyncs += resync;
}

static void test_watch_from_revision(void **state) {
  env_t *e = *state;
  apply(e->f, 1, PUT, "zone/a", "1", -1);
  apply(e->f, 2, PUT, "bucket/x", "1", -1);
  apply(e->f, 3, PUT, "zone/b", "1", -1);
  apply(e->f, 4, DEL, "zone/a", NULL, -1);
  seen_t s = {0};
  fsm_watch(e->f, "zone/", 1, on_change, &s); /* history after revision 1 */
  assert_int_equal(s.n, 2);
  assert_string_equal(s.keys[0], "zone/b");
  assert_int_equal(s.revs[0], 3);
  assert_string_equal(s.keys[1], "zone/a");
  assert_int_equal(s.deleted[1], 1);
  assert_int_equal(s.resyncs, 0);
  apply(e->f, 5, PUT, "zone/c", "live", -1);
  apply(e->f, 6, PUT, "bucket/y", "ignored", -1);
  assert_int_equal(s.n, 3);
  assert_string_equal(s.keys[2], "zone/c");
  assert_int_equal(s.revs[2], 5);
}

static void test_watch_before_history_resyncs(void **state) {
  env_t *e = *state;
  apply(e->f, 1, PUT, "zone/a", "1", -1);
  apply(e->f, 2, PUT, "zone/b", "1", -1);
  /* Simulate history lost to a snapshot restore: the log no longer reaches revision 0. */
  struct raft_fsm *rf = fsm_raft(e->f, NULL);
  struct raft_buffer *bufs;
  unsigned nb;
  assert_int_equal(rf->snapshot(rf, &bufs, &nb), 0);
  assert_int_equal(rf->restore(rf, &bufs[0]), 0);
  raft_free(bufs);
  seen_t s = {0};
  fsm_watch(e->f, "zone/", 0, on_change, &s);
  assert_int_equal(s.n, 2);
  assert_int_equal(s.resyncs, 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_put_get_revisions, setup, teardown),
      cmocka_unit_test_setup_teardown(test_compare_and_set, setup, teardown),
      cmocka_unit_test_setup_teardown(test_replay_is_idempotent, setup, teardown),
      cmocka_unit_test_setup_teardown(test_list_prefix, setup, teardown),
      cmocka_unit_test_setup_teardown(test_snapshot_restore, setup, teardown),
      cmocka_unit_test_setup_teardown(test_watch_from_revision, setup, teardown),
      cmocka_unit_test_setup_teardown(test_watch_before_history_resyncs, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
