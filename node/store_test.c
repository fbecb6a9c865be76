/* store_test.c - unit tests for the RocksDB storage wrapper (node/store.c).
 * Each test gets a fresh store in its own mkdtemp directory, removed again afterwards. */
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "store.h"

typedef struct {
  char dir[64];
  store_opts_t opts;
  store_t *s;
} fix_t;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

static void rm_rf(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static void open_store(fix_t *f) {
  char *err = NULL;
  int rc = store_open(f->dir, &f->opts, &f->s, &err);
  if (rc != STORE_OK) fail_msg("store_open: %s", err ? err : "?");
  assert_non_null(f->s);
}

static void reopen(fix_t *f) {
  store_close(f->s);
  f->s = NULL;
  open_store(f);
}

static int setup(void **state) {
  fix_t *f = calloc(1, sizeof *f);
  if (!f) return -1;
  snprintf(f->dir, sizeof f->dir, "/tmp/store_test.XXXXXX");
  if (!mkdtemp(f->dir)) {
    free(f);
    return -1;
  }
  f->opts.cache_mb = 8;
  f->opts.sync_writes = 0;
  open_store(f);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fix_t *f = *state;
  store_close(f->s);
  rm_rf(f->dir);
  free(f);
  return 0;
}

/* Put/get of a string value; asserts the exact bytes and length. */
static void check_value(store_t *s, store_cf_t *cf, const store_snap_t *snap, const char *k,
                         const char *want) {
  void *v = NULL;
  size_t vl = 0;
  char *err = NULL;
  assert_int_equal(store_get(s, cf, snap, k, strlen(k), &v, &vl, &err), STORE_OK);
  assert_null(err);
  assert_int_equal(vl, strlen(want));
  assert_memory_equal(v, want, vl);
  free(v);
}

static void check_missing(store_t *s, store_cf_t *cf, const store_snap_t *snap, const char *k) {
  void *v = (void *)1;
  size_t vl = 99;
  assert_int_equal(store_get(s, cf, snap, k, strlen(k), &v, &vl, NULL), STORE_NOTFOUND);
  assert_null(v);
  assert_int_equal(vl, 0);
}

static void put_str(store_t *s, store_cf_t *cf, const char *k, const char *v, int sync) {
  char *err = NULL;
  assert_int_equal(store_put(s, cf, k, strlen(k), v, strlen(v), sync, &err), STORE_OK);
  assert_null(err);
}

static void test_put_get_delete(void **state) {
  fix_t *f = *state;
  store_cf_t *cf = store_cf(f->s, "default", NULL);
  assert_non_null(cf);
  put_str(f->s, cf, "alpha", "one", -1);
  check_value(f->s, cf, NULL, "alpha", "one");
  put_str(f->s, cf, "alpha", "uno", -1); /* overwrite */
  check_value(f->s, cf, NULL, "alpha", "uno");
  /* NULL cf means the default CF. */
  check_value(f->s, NULL, NULL, "alpha", "uno");
  char *err = NULL;
  assert_int_equal(store_delete(f->s, cf, "alpha", 5, -1, &err), STORE_OK);
  assert_null(err);
  check_missing(f->s, cf, NULL, "alpha");
}

static void test_not_found(void **state) {
  fix_t *f = *state;
  check_missing(f->s, NULL, NULL, "nope");
  /* Deleting a missing key is not an error. */
  assert_int_equal(store_delete(f->s, NULL, "nope", 4, -1, NULL), STORE_OK);
  /* An empty value is found, not missing, and comes back NUL-terminated. */
  assert_int_equal(store_put(f->s, NULL, "empty", 5, "", 0, -1, NULL), STORE_OK);
  void *v = NULL;
  size_t vl = 42;
  assert_int_equal(store_get(f->s, NULL, NULL, "empty", 5, &v, &vl, NULL), STORE_OK);
  assert_non_null(v);
  assert_int_equal(vl, 0);
  assert_int_equal(((char *)v)[0], '\0');
  free(v);
}

static void test_binary_keys_values(void **state) {
  fix_t *f = *state;
  const char k1[] = {'a', '\0', 'b'};
  const char k2[] = {'a', '\0', 'c'};
  const unsigned char val[] = {0x00, 0xff, 0x00, 0x01, 0x80, 0x00};
  assert_int_equal(store_put(f->s, NULL, k1, sizeof k1, val, sizeof val, -1, NULL), STORE_OK);
  void *v = NULL;
  size_t vl = 0;
  assert_int_equal(store_get(f->s, NULL, NULL, k1, sizeof k1, &v, &vl, NULL), STORE_OK);
  assert_int_equal(vl, sizeof val);
  assert_memory_equal(v, val, sizeof val);
  free(v);
  /* Keys differing only after an embedded NUL are distinct. */
  assert_int_equal(store_get(f->s, NULL, NULL, k2, sizeof k2, &v, &vl, NULL), STORE_NOTFOUND);
  /* The prefix up to the NUL is a different key too. */
  assert_int_equal(store_get(f->s, NULL, NULL, "a", 1, &v, &vl, NULL), STORE_NOTFOUND);
}

static void test_cf_independent_and_reopen(void **state) {
  fix_t *f = *state;
  char *err = NULL;
  store_cf_t *a = store_cf(f->s, "meta", &err);
  assert_non_null(a);
  assert_null(err);
  store_cf_t *b = store_cf(f->s, "blobs", &err);
  assert_non_null(b);
  assert_ptr_not_equal(a, b);
  assert_ptr_equal(store_cf(f->s, "meta", NULL), a); /* lookups return the same handle */

  put_str(f->s, a, "k", "in-meta", -1);
  put_str(f->s, b, "k", "in-blobs", -1);
  check_value(f->s, a, NULL, "k", "in-meta");
  check_value(f->s, b, NULL, "k", "in-blobs");
  check_missing(f->s, NULL, NULL, "k");
  assert_int_equal(store_delete(f->s, a, "k", 1, -1, NULL), STORE_OK);
  check_missing(f->s, a, NULL, "k");
  check_value(f->s, b, NULL, "k", "in-blobs");

  reopen(f);
  /* The CF is opened from disk, so its data is there before store_cf is ever called again. */
  b = store_cf(f->s, "blobs", &err);
  assert_non_null(b);
  check_value(f->s, b, NULL, "k", "in-blobs");
  a = store_cf(f->s, "meta", NULL);
  assert_non_null(a);
  check_missing(f->s, a, NULL, "k");
}

static void test_batch_atomic(void **state) {
  fix_t *f = *state;
  store_cf_t *a = store_cf(f->s, "a", NULL);
  store_cf_t *b = store_cf(f->s, "b", NULL);
  assert_non_null(a);
  assert_non_null(b);
  put_str(f->s, a, "old", "x", -1);
  put_str(f->s, b, "gone", "y", -1);

  store_batch_t *wb = store_batch_new();
  assert_non_null(wb);
  assert_int_equal(store_batch_count(wb), 0);
  store_batch_put(wb, a, "k1", 2, "v1", 2);
  store_batch_put(wb, b, "k2", 2, "v2", 2);
  store_batch_delete(wb, a, "old", 3);
  store_batch_delete(wb, b, "gone", 4);
  store_batch_put(wb, NULL, "k3", 2, "v3", 2);
  assert_int_equal(store_batch_count(wb), 5);

  /* Nothing is visible until the write. */
  check_missing(f->s, a, NULL, "k1");
  check_value(f->s, a, NULL, "old", "x");

  char *err = NULL;
  assert_int_equal(store_write(f->s, wb, 1, &err), STORE_OK);
  assert_null(err);
  store_batch_free(wb);

  check_value(f->s, a, NULL, "k1", "v1");
  check_value(f->s, b, NULL, "k2", "v2");
  check_value(f->s, NULL, NULL, "k3", "v3");
  check_missing(f->s, a, NULL, "old");
  check_missing(f->s, b, NULL, "gone");
  check_missing(f->s, b, NULL, "k1"); /* the put went to `a` only */
}

static void test_snapshot_get(void **state) {
  fix_t *f = *state;
  put_str(f->s, NULL, "k", "before", -1);
  put_str(f->s, NULL, "doomed", "here", -1);
  const store_snap_t *snap = store_snapshot(f->s);
  assert_non_null(snap);
  put_str(f->s, NULL, "k", "after", -1);
  put_str(f->s, NULL, "new", "later", -1);
  assert_int_equal(store_delete(f->s, NULL, "doomed", 6, -1, NULL), STORE_OK);

  check_value(f->s, NULL, snap, "k", "before");
  check_missing(f->s, NULL, snap, "new");
  check_value(f->s, NULL, snap, "doomed", "here");
  check_value(f->s, NULL, NULL, "k", "after");
  check_value(f->s, NULL, NULL, "new", "later");
  check_missing(f->s, NULL, NULL, "doomed");
  store_snapshot_release(f->s, snap);
  store_snapshot_release(f->s, NULL); /* NULL-safe */
}

/* Collect "key=value," for the whole CF into buf, asserting strictly increasing keys. */
static void dump(store_iter_t *it, char *buf, size_t cap) {
  buf[0] = '\0';
  size_t used = 0;
  char prev[64] = "";
  for (store_iter_seek_first(it); store_iter_valid(it); store_iter_next(it)) {
    size_t kl, vl;
    const char *k = store_iter_key(it, &kl);
    const char *v = store_iter_value(it, &vl);
    assert_true(kl < sizeof prev);
    char cur[64];
    memcpy(cur, k, kl);
    cur[kl] = '\0';
    assert_true(prev[0] == '\0' || strcmp(prev, cur) < 0);
    memcpy(prev, cur, kl + 1);
    used += (size_t)snprintf(buf + used, cap - used, "%.*s=%.*s,", (int)kl, k, (int)vl, v);
    assert_true(used < cap);
  }
  assert_int_equal(store_iter_status(it, NULL), 0);
}

static void test_snapshot_iter(void **state) {
  fix_t *f = *state;
  store_cf_t *cf = store_cf(f->s, "idx", NULL);
  put_str(f->s, cf, "a", "1", -1);
  put_str(f->s, cf, "c", "3", -1);
  const store_snap_t *snap = store_snapshot(f->s);
  put_str(f->s, cf, "b", "2", -1);
  put_str(f->s, cf, "c", "33", -1);
  assert_int_equal(store_delete(f->s, cf, "a", 1, -1, NULL), STORE_OK);

  char buf[256];
  store_iter_t *it = store_iter_new(f->s, cf, snap);
  assert_non_null(it);
  dump(it, buf, sizeof buf);
  assert_string_equal(buf, "a=1,c=3,");
  store_iter_free(it);

  it = store_iter_new(f->s, cf, NULL);
  dump(it, buf, sizeof buf);
  assert_string_equal(buf, "b=2,c=33,");
  store_iter_free(it);
  store_snapshot_release(f->s, snap);
}

static void test_iter_order_and_seek(void **state) {
  fix_t *f = *state;
  /* Inserted out of order; bytewise order puts "b" < "b\0" < "ba" < "c". */
  const char *keys[] = {"c", "ba", "a", "b"};
  for (size_t i = 0; i < 4; i++) put_str(f->s, NULL, keys[i], keys[i], -1);
  assert_int_equal(store_put(f->s, NULL, "b\0", 2, "nul", 3, -1, NULL), STORE_OK);

  store_iter_t *it = store_iter_new(f->s, NULL, NULL);
  assert_non_null(it);
  const char *want[] = {"a", "b", "b\0", "ba", "c"};
  const size_t wantlen[] = {1, 1, 2, 2, 1};
  size_t n = 0;
  for (store_iter_seek_first(it); store_iter_valid(it); store_iter_next(it), n++) {
    size_t kl;
    const void *k = store_iter_key(it, &kl);
    assert_true(n < 5);
    assert_int_equal(kl, wantlen[n]);
    assert_memory_equal(k, want[n], kl);
  }
  assert_int_equal(n, 5);

  /* Seek lands on the first key >= target, whether or not the target exists. */
  store_iter_seek(it, "b", 1);
  assert_true(store_iter_valid(it));
  size_t kl, vl;
  assert_memory_equal(store_iter_key(it, &kl), "b", 1);
  assert_int_equal(kl, 1);
  store_iter_seek(it, "bb", 2);
  assert_true(store_iter_valid(it));
  assert_memory_equal(store_iter_key(it, &kl), "c", 1);
  assert_memory_equal(store_iter_value(it, &vl), "c", 1);
  assert_int_equal(vl, 1);
  store_iter_seek(it, "d", 1);
  assert_false(store_iter_valid(it));
  store_iter_seek_first(it);
  assert_true(store_iter_valid(it));
  assert_memory_equal(store_iter_key(it, NULL), "a", 1); /* len may be NULL */
  assert_int_equal(store_iter_status(it, NULL), 0);
  store_iter_free(it);
  store_iter_free(NULL);
}

static void test_iter_prefix(void **state) {
  fix_t *f = *state;
  put_str(f->s, NULL, "obj/1", "x", -1);
  put_str(f->s, NULL, "user/alice", "A", -1);
  put_str(f->s, NULL, "user/bob", "B", -1);
  put_str(f->s, NULL, "user/carol", "C", -1);
  put_str(f->s, NULL, "users", "not-a-match", -1);
  put_str(f->s, NULL, "zzz", "z", -1);

  const char *pfx = "user/";
  size_t pl = strlen(pfx);
  const char *want[] = {"user/alice", "user/bob", "user/carol"};
  size_t n = 0;
  store_iter_t *it = store_iter_new(f->s, NULL, NULL);
  for (store_iter_seek(it, pfx, pl); store_iter_valid(it); store_iter_next(it)) {
    size_t kl;
    const char *k = store_iter_key(it, &kl);
    if (kl < pl || memcmp(k, pfx, pl) != 0) break;
    assert_true(n < 3);
    assert_int_equal(kl, strlen(want[n]));
    assert_memory_equal(k, want[n], kl);
    n++;
  }
  assert_int_equal(n, 3);
  assert_true(store_iter_valid(it)); /* stopped on "users", the first key past the prefix */
  size_t kl;
  assert_memory_equal(store_iter_key(it, &kl), "users", 5);
  store_iter_free(it);
}

static void test_sync_async_persist(void **state) {
  fix_t *f = *state;
  put_str(f->s, NULL, "sync", "1", 1);
  put_str(f->s, NULL, "async", "0", 0);
  put_str(f->s, NULL, "default", "d", -1);
  store_batch_t *b = store_batch_new();
  store_batch_put(b, NULL, "batch-async", 11, "ba", 2);
  assert_int_equal(store_write(f->s, b, 0, NULL), STORE_OK);
  store_batch_free(b);
  assert_int_equal(store_delete(f->s, NULL, "default", 7, 1, NULL), STORE_OK);

  reopen(f);
  check_value(f->s, NULL, NULL, "sync", "1");
  check_value(f->s, NULL, NULL, "async", "0");
  check_value(f->s, NULL, NULL, "batch-async", "ba");
  check_missing(f->s, NULL, NULL, "default");

  /* And with sync_writes on as the store default. */
  f->opts.sync_writes = 1;
  reopen(f);
  put_str(f->s, NULL, "sync-default", "yes", -1);
  reopen(f);
  check_value(f->s, NULL, NULL, "sync-default", "yes");
  check_value(f->s, NULL, NULL, "sync", "1");
}

typedef struct {
  store_t *s;
  pthread_t loop_thread, work_thread, done_thread;
  int work_calls, done_calls, cancelled;
  int work_rc;
} job_t;

static void job_work(void *arg) {
  job_t *j = arg;
  j->work_thread = pthread_self();
  j->work_calls++;
  /* A blocking store call, as real callers would make. */
  j->work_rc = store_put(j->s, NULL, "from-worker", 11, "w", 1, 1, NULL);
}

static void job_done(void *arg, int cancelled) {
  job_t *j = arg;
  j->done_thread = pthread_self();
  j->done_calls++;
  j->cancelled = cancelled;
}

static void test_submit_threads(void **state) {
  fix_t *f = *state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  job_t jobs[4];
  memset(jobs, 0, sizeof jobs);
  for (int i = 0; i < 4; i++) {
    jobs[i].s = f->s;
    jobs[i].loop_thread = pthread_self();
    assert_int_equal(store_submit(&loop, job_work, job_done, &jobs[i]), 0);
  }
  /* Nothing runs the done callback until the loop does. */
  for (int i = 0; i < 4; i++) assert_int_equal(jobs[i].done_calls, 0);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(jobs[i].work_calls, 1);
    assert_int_equal(jobs[i].done_calls, 1);
    assert_int_equal(jobs[i].cancelled, 0);
    assert_int_equal(jobs[i].work_rc, STORE_OK);
    assert_false(pthread_equal(jobs[i].work_thread, jobs[i].loop_thread));
    assert_true(pthread_equal(jobs[i].done_thread, jobs[i].loop_thread));
  }
  check_value(f->s, NULL, NULL, "from-worker", "w");
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_flush_and_disk_bytes(void **state) {
  fix_t *f = *state;
  store_cf_t *cf = store_cf(f->s, "flushme", NULL);
  assert_non_null(cf);
  char key[32], val[256];
  memset(val, 'v', sizeof val);
  for (int i = 0; i < 1000; i++) {
    int kl = snprintf(key, sizeof key, "key-%06d", i);
    assert_int_equal(store_put(f->s, cf, key, (size_t)kl, val, sizeof val, 0, NULL), STORE_OK);
  }
  assert_true(store_disk_bytes(f->s) > 0); /* memtables count before the flush */
  char *err = NULL;
  assert_int_equal(store_flush(f->s, &err), STORE_OK);
  assert_null(err);
  /* After a flush the data sits in SST files: at least the raw keys' worth... */
  assert_true(store_disk_bytes(f->s) >= 1000 * 10);
  /* ...and still reads back after reopening. */
  reopen(f);
  cf = store_cf(f->s, "flushme", NULL);
  void *v = NULL;
  size_t vl = 0;
  assert_int_equal(store_get(f->s, cf, NULL, "key-000500", 10, &v, &vl, NULL), STORE_OK);
  assert_int_equal(vl, sizeof val);
  assert_memory_equal(v, val, vl);
  free(v);
  assert_int_equal(store_disk_bytes(NULL), 0);
}

static void test_large_value(void **state) {
  fix_t *f = *state;
  size_t n = 4u << 20;
  unsigned char *big = malloc(n);
  assert_non_null(big);
  for (size_t i = 0; i < n; i++) big[i] = (unsigned char)(i * 2654435761u >> 13);
  assert_int_equal(store_put(f->s, NULL, "big", 3, big, n, 1, NULL), STORE_OK);
  void *v = NULL;
  size_t vl = 0;
  assert_int_equal(store_get(f->s, NULL, NULL, "big", 3, &v, &vl, NULL), STORE_OK);
  assert_int_equal(vl, n);
  assert_memory_equal(v, big, n);
  free(v);
  assert_int_equal(store_flush(f->s, NULL), STORE_OK);
  reopen(f);
  assert_int_equal(store_get(f->s, NULL, NULL, "big", 3, &v, &vl, NULL), STORE_OK);
  assert_int_equal(vl, n);
  assert_memory_equal(v, big, n);
  free(v);
  free(big);
}

static void test_open_nested_and_errors(void **state) {
  fix_t *f = *state;
  /* mkdir -p: two missing levels, and NULL opts mean defaults. */
  char nested[128];
  snprintf(nested, sizeof nested, "%s/x/y", f->dir);
  store_t *s2 = NULL;
  char *err = NULL;
  assert_int_equal(store_open(nested, NULL, &s2, &err), STORE_OK);
  assert_null(err);
  put_str(s2, NULL, "k", "v", -1);
  check_value(s2, NULL, NULL, "k", "v");
  store_close(s2);
  store_close(NULL);

  /* A regular file where the directory should be is an error with a message. */
  char file[128];
  snprintf(file, sizeof file, "%s/plain", f->dir);
  FILE *fp = fopen(file, "w");
  assert_non_null(fp);
  fclose(fp);
  s2 = (store_t *)1;
  assert_int_equal(store_open(file, NULL, &s2, &err), STORE_ERR);
  assert_null(s2);
  assert_non_null(err);
  assert_true(strlen(err) > 0);
  free(err);
  /* Without an err pointer the message is freed internally (LeakSanitizer checks). */
  assert_int_equal(store_open(file, NULL, &s2, NULL), STORE_ERR);

  /* The directory is locked by the fixture's open store: RocksDB's error is handed over. */
  err = NULL;
  assert_int_equal(store_open(f->dir, NULL, &s2, &err), STORE_ERR);
  assert_non_null(err);
  free(err);
  assert_int_equal(store_open(f->dir, NULL, &s2, NULL), STORE_ERR);
}

typedef struct {
  store_t *s;
  store_cf_t *got[8];
} cf_race_t;

static void *cf_racer(void *arg) {
  cf_race_t *r = arg;
  for (int i = 0; i < 8; i++) {
    char name[16];
    snprintf(name, sizeof name, "cf%d", i);
    r->got[i] = store_cf(r->s, name, NULL);
  }
  return NULL;
}

static void test_cf_concurrent_create(void **state) {
  fix_t *f = *state;
  cf_race_t r[4];
  pthread_t th[4];
  for (int t = 0; t < 4; t++) {
    r[t].s = f->s;
    assert_int_equal(pthread_create(&th[t], NULL, cf_racer, &r[t]), 0);
  }
  for (int t = 0; t < 4; t++) pthread_join(th[t], NULL);
  /* Every thread saw the one handle per name: no duplicate CFs were created. */
  for (int i = 0; i < 8; i++) {
    assert_non_null(r[0].got[i]);
    for (int t = 1; t < 4; t++) assert_ptr_equal(r[t].got[i], r[0].got[i]);
  }
  put_str(f->s, r[2].got[7], "k", "v7", -1);
  reopen(f);
  check_value(f->s, store_cf(f->s, "cf7", NULL), NULL, "k", "v7");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_put_get_delete, setup, teardown),
      cmocka_unit_test_setup_teardown(test_not_found, setup, teardown),
      cmocka_unit_test_setup_teardown(test_binary_keys_values, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cf_independent_and_reopen, setup, teardown),
      cmocka_unit_test_setup_teardown(test_batch_atomic, setup, teardown),
      cmocka_unit_test_setup_teardown(test_snapshot_get, setup, teardown),
      cmocka_unit_test_setup_teardown(test_snapshot_iter, setup, teardown),
      cmocka_unit_test_setup_teardown(test_iter_order_and_seek, setup, teardown),
      cmocka_unit_test_setup_teardown(test_iter_prefix, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sync_async_persist, setup, teardown),
      cmocka_unit_test_setup_teardown(test_submit_threads, setup, teardown),
      cmocka_unit_test_setup_teardown(test_flush_and_disk_bytes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_large_value, setup, teardown),
      cmocka_unit_test_setup_teardown(test_open_nested_and_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cf_concurrent_create, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
