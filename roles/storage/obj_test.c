/* obj_test.c - unit tests for the storage role's object layer (roles/storage/obj*.c).
 * Each test gets a fresh store in its own mkdtemp directory and a real uv loop for callbacks. */
#include <ftw.h>
#include <openssl/evp.h>
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

#include "log.h"
#include "obj.h"
#include "obj_engine.h"
#include "obj_stats.h"
#include "store.h"

#define MIB (1024u * 1024u)
#define BS OBJ_BLOCK_SIZE

typedef struct {
  char dir[64];
  uv_loop_t loop;
  store_t *s;
  obj_t *o;
} fix_t;

/* ---- fixture ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

static void rm_rf(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static void open_all(fix_t *f) {
  store_opts_t opts = {8, 0};
  char *err = NULL;
  if (store_open(f->dir, &opts, &f->s, &err) != STORE_OK) fail_msg("store_open: %s", err);
  f->o = obj_new(&f->loop, f->s, &err);
  if (!f->o) fail_msg("obj_new: %s", err ? err : "?");
}

/* Everything started has finished, including work nobody waits for (aborts). */
static void drain(fix_t *f) {
  obj_stats_t st;
  uint64_t end = uv_hrtime() + 60000000000ull;
  for (obj_stats(f->o, &st); st.inflight; obj_stats(f->o, &st)) {
    assert_true(uv_hrtime() < end);
    uv_run(&f->loop, UV_RUN_ONCE);
  }
}

static void close_all(fix_t *f) {
  drain(f);
  obj_free(f->o);
  f->o = NULL;
  uv_run(&f->loop, UV_RUN_DEFAULT); /* closes the layer's idle handle */
  store_close(f->s);
  f->s = NULL;
}

static int setup(void **state) {
  fix_t *f = calloc(1, sizeof *f);
  if (!f) return -1;
  snprintf(f->dir, sizeof f->dir, "/tmp/obj_test.XXXXXX");
  if (!mkdtemp(f->dir) || uv_loop_init(&f->loop) != 0) {
    free(f);
    return -1;
  }
  open_all(f);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fix_t *f = *state;
  close_all(f);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  rm_rf(f->dir);
  free(f);
  return 0;
}

static void run_until(fix_t *f, const int *flag) {
  uint64_t end = uv_hrtime() + 60000000000ull;
  while (!*flag) {
    assert_true(uv_hrtime() < end);
    uv_run(&f->loop, UV_RUN_ONCE);
  }
}

/* ---- data ---- */

static uint8_t *rand_bytes(size_t n, uint64_t seed) {
  uint8_t *p = malloc(n ? n : 1);
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    p[i] = (uint8_t)(x >> 24);
  }
  return p;
}

static void md5_hex(const void *p, size_t n, char out[33]) {
  uint8_t d[16];
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  assert_int_equal(EVP_DigestInit_ex(c, EVP_md5(), NULL), 1);
  assert_int_equal(EVP_DigestUpdate(c, p, n), 1);
  assert_int_equal(EVP_DigestFinal_ex(c, d, NULL), 1);
  EVP_MD_CTX_free(c);
  obj_hex(out, d, 16);
}

static size_t count_keys(fix_t *f, const char *cfname) {
  store_cf_t *cf = store_cf(f->s, cfname, NULL);
  assert_non_null(cf);
  store_iter_t *it = store_iter_new(f->s, cf, NULL);
  size_t n = 0;
  for (store_iter_seek_first(it); store_iter_valid(it); store_iter_next(it)) n++;
  store_iter_free(it);
  return n;
}

/* ---- synchronous wrappers: start, check nothing ran yet, run the loop until done ---- */

typedef struct {
  int done;
  obj_status_t st;
  Gureum__ObjectMeta *meta;
} res_t;

static void on_meta(void *arg, obj_status_t st, const Gureum__ObjectMeta *m) {
  res_t *r = arg;
  r->done++;
  r->st = st;
  r->meta = m ? obj_meta_dup(m) : NULL;
}

static obj_status_t res_wait(fix_t *f, res_t *r, Gureum__ObjectMeta **meta) {
  assert_int_equal(r->done, 0); /* never inside the call that started it */
  run_until(f, &r->done);
  assert_int_equal(r->done, 1);
  if (meta)
    *meta = r->meta;
  else if (r->meta)
    gureum__object_meta__free_unpacked(r->meta, NULL);
  return r->st;
}

static void meta_free(Gureum__ObjectMeta *m) {
  if (m) gureum__object_meta__free_unpacked(m, NULL);
}

typedef struct {
  int done;
  obj_status_t st;
} done_t;

static void on_done(void *arg, obj_status_t st) {
  done_t *d = arg;
  d->done++;
  d->st = st;
}

static obj_status_t write_all(fix_t *f, obj_writer_t *w, const uint8_t *p, size_t len,
                              size_t piece) {
  size_t off = 0;
  do {
    size_t n = len - off < piece ? len - off : piece;
    done_t d = {0};
    obj_write(w, p + off, n, on_done, &d);
    assert_int_equal(d.done, 0);
    run_until(f, &d.done);
    if (d.st != OBJ_OK) return d.st;
    off += n;
  } while (off < len);
  return OBJ_OK;
}

static Gureum__ObjectMeta *put_ex(fix_t *f, const char *bucket, const char *key, const void *p,
                                  size_t len, int versioned, size_t piece) {
  Gureum__ObjectMeta m = GUREUM__OBJECT_META__INIT;
  m.bucket = (char *)bucket;
  m.key = (char *)key;
  m.content_type = "application/octet-stream";
  obj_writer_t *w = obj_put_begin(f->o, &m, versioned);
  assert_non_null(w);
  assert_int_equal(write_all(f, w, p, len, piece), OBJ_OK);
  res_t r = {0};
  obj_put_commit(w, on_meta, &r);
  Gureum__ObjectMeta *out = NULL;
  assert_int_equal(res_wait(f, &r, &out), OBJ_OK);
  assert_non_null(out);
  return out;
}

static Gureum__ObjectMeta *put(fix_t *f, const char *bucket, const char *key, const void *p,
                               size_t len, int versioned) {
  return put_ex(f, bucket, key, p, len, versioned, 300 * 1024 + 7);
}

static void put_str(fix_t *f, const char *bucket, const char *key, const char *s, int versioned) {
  meta_free(put(f, bucket, key, s, strlen(s), versioned));
}

typedef struct {
  int done;
  obj_status_t st;
  uint8_t *buf;
  size_t n, cap, pieces, maxpiece;
  int eof;
} rd_t;

static void on_data(void *arg, obj_status_t st, const void *data, size_t len, int eof) {
  rd_t *d = arg;
  d->done++;
  d->st = st;
  d->eof = eof;
  if (st != OBJ_OK) return;
  if (d->n + len > d->cap) {
    d->cap = (d->n + len) * 2 + 16;
    d->buf = realloc(d->buf, d->cap);
  }
  if (len) memcpy(d->buf + d->n, data, len);
  d->n += len;
  d->pieces++;
  if (len > d->maxpiece) d->maxpiece = len;
}

/* Reads [off, off+len) of a version; *out (free it) gets the bytes. */
static obj_status_t get_range(fix_t *f, const char *bucket, const char *key, const char *vid,
                              uint64_t off, uint64_t len, uint8_t **out, size_t *outlen,
                              Gureum__ObjectMeta **meta, size_t *maxpiece) {
  res_t r = {0};
  obj_reader_t *rd = obj_get_begin(f->o, bucket, key, vid, on_meta, &r);
  assert_non_null(rd);
  obj_status_t st = res_wait(f, &r, meta);
  if (st != OBJ_OK) {
    obj_reader_free(rd);
    return st;
  }
  if (off || len != UINT64_MAX) obj_reader_range(rd, off, len);
  rd_t d = {0};
  for (;;) {
    int before = d.done;
    obj_read(rd, on_data, &d);
    assert_int_equal(d.done, before);
    while (d.done == before) uv_run(&f->loop, UV_RUN_ONCE);
    if (d.st != OBJ_OK || d.eof) break;
  }
  obj_reader_free(rd);
  if (out) *out = d.buf;
  else free(d.buf);
  if (outlen) *outlen = d.n;
  if (maxpiece) *maxpiece = d.maxpiece;
  return d.st;
}

static obj_status_t get(fix_t *f, const char *bucket, const char *key, const char *vid,
                        uint8_t **out, size_t *outlen) {
  return get_range(f, bucket, key, vid, 0, UINT64_MAX, out, outlen, NULL, NULL);
}

static void check_content(fix_t *f, const char *bucket, const char *key, const char *vid,
                          const uint8_t *want, size_t n) {
  uint8_t *got = NULL;
  size_t gl = 0;
  assert_int_equal(get(f, bucket, key, vid, &got, &gl), OBJ_OK);
  assert_int_equal(gl, n);
  if (n) assert_memory_equal(got, want, n);
  free(got);
}

static obj_status_t head(fix_t *f, const char *bucket, const char *key, const char *vid,
                         Gureum__ObjectMeta **meta) {
  res_t r = {0};
  obj_head(f->o, bucket, key, vid, on_meta, &r);
  return res_wait(f, &r, meta);
}

static obj_status_t del(fix_t *f, const char *bucket, const char *key, const char *vid,
                        const char *versioning, Gureum__ObjectMeta **meta) {
  res_t r = {0};
  obj_delete(f->o, bucket, key, vid, versioning, on_meta, &r);
  return res_wait(f, &r, meta);
}

/* Listings are rendered as one string, e.g. "a b/ c | next=c" (prefixes end in the delimiter),
 * or for versions "a@VID* a@VID~" (* latest, ~ delete marker). */
typedef struct {
  int done;
  obj_status_t st;
  char s[16384];
  char next_key[1100], next_version[64];
  int truncated;
  size_t n, np;
  char vids[64][40];
} ls_t;

static void on_list(void *arg, obj_status_t st, const obj_list_t *l) {
  ls_t *r = arg;
  r->done++;
  r->st = st;
  r->s[0] = 0;
  if (st != OBJ_OK) return;
  size_t at = 0;
  /* Items and prefixes merged in key order, as S3 presents them. */
  size_t i = 0, j = 0;
  while (i < l->n || j < l->nprefixes) {
    int item = j >= l->nprefixes || (i < l->n && strcmp(l->items[i]->key, l->prefixes[j]) < 0);
    if (item) {
      const Gureum__ObjectMeta *m = l->items[i++];
      at += (size_t)snprintf(r->s + at, sizeof r->s - at, "%s%s", at ? " " : "", m->key);
      assert_true(m->is_latest);
      assert_false(m->delete_marker);
    } else {
      at += (size_t)snprintf(r->s + at, sizeof r->s - at, "%s%s", at ? " " : "", l->prefixes[j++]);
    }
  }
  if (l->truncated) snprintf(r->s + at, sizeof r->s - at, " | next=%s", l->next_key);
  r->truncated = l->truncated;
  r->n = l->n;
  r->np = l->nprefixes;
  snprintf(r->next_key, sizeof r->next_key, "%s", l->next_key ? l->next_key : "");
}

static void on_vlist(void *arg, obj_status_t st, const obj_list_t *l) {
  ls_t *r = arg;
  r->done++;
  r->st = st;
  r->s[0] = 0;
  if (st != OBJ_OK) return;
  size_t at = 0;
  for (size_t i = 0; i < l->n; i++) {
    const Gureum__ObjectMeta *m = l->items[i];
    at += (size_t)snprintf(r->s + at, sizeof r->s - at, "%s%s@%s%s%s", at ? " " : "", m->key,
                           m->version_id, m->is_latest ? "*" : "", m->delete_marker ? "~" : "");
    if (i < 64) snprintf(r->vids[i], sizeof r->vids[i], "%s", m->version_id);
  }
  for (size_t j = 0; j < l->nprefixes; j++)
    at += (size_t)snprintf(r->s + at, sizeof r->s - at, "%s%s", at ? " " : "", l->prefixes[j]);
  r->truncated = l->truncated;
  r->n = l->n;
  r->np = l->nprefixes;
  snprintf(r->next_key, sizeof r->next_key, "%s", l->next_key ? l->next_key : "");
  snprintf(r->next_version, sizeof r->next_version, "%s", l->next_version ? l->next_version : "");
}

static void list(fix_t *f, ls_t *r, const char *bucket, const char *prefix, const char *delim,
                 const char *start_after, uint32_t max) {
  char sa[1100]; /* start_after may point into *r, about to be cleared */
  snprintf(sa, sizeof sa, "%s", start_after ? start_after : "");
  memset(r, 0, sizeof *r);
  obj_list(f->o, bucket, prefix, delim, start_after ? sa : NULL, max, on_list, r);
  assert_int_equal(r->done, 0);
  run_until(f, &r->done);
  assert_int_equal(r->st, OBJ_OK);
}

static void vlist(fix_t *f, ls_t *r, const char *bucket, const char *prefix, const char *delim,
                  const char *km, const char *vm, uint32_t max) {
  memset(r, 0, sizeof *r);
  obj_list_versions(f->o, bucket, prefix, delim, km, vm, max, on_vlist, r);
  assert_int_equal(r->done, 0);
  run_until(f, &r->done);
  assert_int_equal(r->st, OBJ_OK);
}

/* ---- multipart wrappers ---- */

typedef struct {
  int done;
  obj_status_t st;
  char id[64];
} up_t;

static void on_upload(void *arg, obj_status_t st, const char *id) {
  up_t *u = arg;
  u->done++;
  u->st = st;
  snprintf(u->id, sizeof u->id, "%s", id ? id : "");
}

static void mpu_create(fix_t *f, const char *bucket, const char *key, char id[64]) {
  Gureum__ObjectMeta m = GUREUM__OBJECT_META__INIT;
  m.bucket = (char *)bucket;
  m.key = (char *)key;
  m.content_type = "text/plain";
  up_t u = {0};
  obj_mpu_create(f->o, &m, on_upload, &u);
  assert_int_equal(u.done, 0);
  run_until(f, &u.done);
  assert_int_equal(u.st, OBJ_OK);
  assert_int_equal(strlen(u.id), OBJ_UID_LEN);
  memcpy(id, u.id, 64);
}

static obj_status_t put_part(fix_t *f, const char *bucket, const char *key, const char *id,
                             uint32_t pn, const uint8_t *p, size_t len, char etag[64]) {
  obj_writer_t *w = obj_mpu_part_begin(f->o, bucket, key, id, pn);
  assert_non_null(w);
  assert_int_equal(write_all(f, w, p, len, MIB + 3), OBJ_OK);
  res_t r = {0};
  obj_put_commit(w, on_meta, &r);
  Gureum__ObjectMeta *m = NULL;
  obj_status_t st = res_wait(f, &r, &m);
  if (st == OBJ_OK) {
    char want[33];
    md5_hex(p, len, want);
    assert_string_equal(m->etag, want);
    assert_int_equal(m->size, len);
    if (etag) snprintf(etag, 64, "%s", m->etag);
  }
  meta_free(m);
  return st;
}

static obj_status_t mpu_complete(fix_t *f, const char *bucket, const char *key, const char *id,
                                 const obj_part_ref_t *parts, size_t n, int versioned,
                                 Gureum__ObjectMeta **meta) {
  res_t r = {0};
  obj_mpu_complete(f->o, bucket, key, id, parts, n, versioned, NULL, NULL, on_meta, &r);
  return res_wait(f, &r, meta);
}

static obj_status_t mpu_abort(fix_t *f, const char *bucket, const char *key, const char *id) {
  done_t d = {0};
  obj_mpu_abort(f->o, bucket, key, id, on_done, &d);
  assert_int_equal(d.done, 0);
  run_until(f, &d.done);
  return d.st;
}

typedef struct {
  int done;
  obj_status_t st;
  size_t n;
  int truncated;
  uint32_t numbers[64];
  char etags[64][40];
  char keys[64][64];
  char ids[64][40];
} pl_t;

static void on_parts(void *arg, obj_status_t st, Gureum__UploadPart **parts, size_t n,
                     int truncated) {
  pl_t *r = arg;
  r->done++;
  r->st = st;
  r->n = n;
  r->truncated = truncated;
  for (size_t i = 0; i < n && i < 64; i++) {
    r->numbers[i] = parts[i]->part_number;
    snprintf(r->etags[i], sizeof r->etags[i], "%s", parts[i]->etag);
  }
}

static void on_uploads(void *arg, obj_status_t st, Gureum__MultipartUpload **ups, size_t n,
                       int truncated) {
  pl_t *r = arg;
  r->done++;
  r->st = st;
  r->n = n;
  r->truncated = truncated;
  for (size_t i = 0; i < n && i < 64; i++) {
    snprintf(r->keys[i], sizeof r->keys[i], "%s", ups[i]->key);
    snprintf(r->ids[i], sizeof r->ids[i], "%s", ups[i]->upload_id);
    assert_string_equal(ups[i]->meta->content_type, "text/plain");
  }
}

static obj_status_t list_parts(fix_t *f, pl_t *r, const char *bucket, const char *key,
                               const char *id, uint32_t marker, uint32_t max) {
  memset(r, 0, sizeof *r);
  obj_mpu_list_parts(f->o, bucket, key, id, marker, max, on_parts, r);
  assert_int_equal(r->done, 0);
  run_until(f, &r->done);
  return r->st;
}

static void list_uploads(fix_t *f, pl_t *r, const char *bucket, const char *prefix,
                         const char *km, const char *um, uint32_t max) {
  memset(r, 0, sizeof *r);
  obj_mpu_list_uploads(f->o, bucket, prefix, km, um, max, on_uploads, r);
  assert_int_equal(r->done, 0);
  run_until(f, &r->done);
  assert_int_equal(r->st, OBJ_OK);
}

typedef struct {
  int done, empty;
} empty_t;

static void on_empty(void *arg, int empty) {
  empty_t *e = arg;
  e->done++;
  e->empty = empty;
}

static int bucket_empty(fix_t *f, const char *bucket) {
  empty_t e = {0};
  obj_bucket_is_empty(f->o, bucket, on_empty, &e);
  assert_int_equal(e.done, 0);
  run_until(f, &e.done);
  return e.empty;
}

/* ---- replication wrappers ---- */

static Gureum__ObjectMeta *put_id(fix_t *f, const char *bucket, const char *key, const void *p,
                                  size_t len, const char *vid, uint64_t ts) {
  Gureum__ObjectMeta m = GUREUM__OBJECT_META__INIT;
  m.bucket = (char *)bucket;
  m.key = (char *)key;
  m.version_id = (char *)vid;
  m.ts_us = ts;
  /* versioned says nothing once the identity is fixed: the id decides. */
  obj_writer_t *w = obj_put_begin(f->o, &m, strcmp(vid, "null") == 0);
  assert_non_null(w);
  assert_int_equal(write_all(f, w, p, len, BS), OBJ_OK);
  res_t r = {0};
  obj_put_commit(w, on_meta, &r);
  Gureum__ObjectMeta *out = NULL;
  assert_int_equal(res_wait(f, &r, &out), OBJ_OK);
  assert_non_null(out);
  return out;
}

static obj_status_t del_at(fix_t *f, const char *bucket, const char *key, const char *vid,
                           const char *versioning, const char *ivid, uint64_t its,
                           Gureum__ObjectMeta **meta) {
  obj_ident_t id = {ivid, its};
  res_t r = {0};
  obj_delete_at(f->o, bucket, key, vid, versioning, its ? &id : NULL, on_meta, &r);
  return res_wait(f, &r, meta);
}

static obj_status_t apply(fix_t *f, const char *bucket, const char *key, const char *vid,
                          uint64_t ts, int marker, int tomb, Gureum__ObjectMeta **meta) {
  Gureum__ObjectMeta m = GUREUM__OBJECT_META__INIT;
  m.bucket = (char *)bucket;
  m.key = (char *)key;
  m.version_id = (char *)vid;
  m.ts_us = ts;
  m.delete_marker = marker;
  m.tombstone = tomb;
  res_t r = {0};
  obj_apply_record(f->o, &m, on_meta, &r);
  return res_wait(f, &r, meta);
}

/* The stored record of one version, tombstones included, straight from obj_meta. */
static Gureum__ObjectMeta *raw_record(fix_t *f, const char *bucket, const char *key,
                                      const char *vid) {
  store_cf_t *cf = store_cf(f->s, OBJ_CF_META, NULL);
  store_iter_t *it = store_iter_new(f->s, cf, NULL);
  size_t bl = strlen(bucket), kl = strlen(key), vl = strlen(vid), pn = bl + kl + 2;
  Gureum__ObjectMeta *out = NULL;
  for (store_iter_seek_first(it); store_iter_valid(it) && !out; store_iter_next(it)) {
    size_t n, len;
    const uint8_t *k = store_iter_key(it, &n);
    if (n != pn + 8 + vl || memcmp(k, bucket, bl + 1) != 0 || memcmp(k + bl + 1, key, kl + 1) ||
        memcmp(k + pn + 8, vid, vl) != 0)
      continue;
    const void *v = store_iter_value(it, &len);
    out = gureum__object_meta__unpack(NULL, len, v);
    uint64_t ts = 0;
    for (int i = 0; i < 8; i++) ts = ts << 8 | k[pn + i];
    assert_int_equal(out->ts_us, ~ts); /* the record carries the key's timestamp */
  }
  store_iter_free(it);
  return out;
}

typedef struct {
  int done;
  obj_status_t st;
  obj_digests_t d;
  uint64_t removed;
  char s[4096];
  size_t n;
} rep_t;

static void on_digests(void *arg, obj_status_t st, const obj_digests_t *d) {
  rep_t *r = arg;
  r->done++;
  r->st = st;
  if (d) r->d = *d;
}

static void digests(fix_t *f, obj_digests_t *out) {
  rep_t r = {0};
  obj_digests(f->o, on_digests, &r);
  assert_int_equal(r.done, 0);
  run_until(f, &r.done);
  assert_int_equal(r.st, OBJ_OK);
  *out = r.d;
}

/* Records rendered as "key@vid:ts" plus "~" for a marker, "x" for a tombstone, "*" latest. */
static void on_records(void *arg, obj_status_t st, Gureum__ObjectMeta **recs, size_t n) {
  rep_t *r = arg;
  r->done++;
  r->st = st;
  r->n = n;
  size_t at = 0;
  r->s[0] = 0;
  for (size_t i = 0; i < n; i++)
    at += (size_t)snprintf(r->s + at, sizeof r->s - at, "%s%s@%s:%llu%s%s%s", at ? " " : "",
                           recs[i]->key, recs[i]->version_id, (unsigned long long)recs[i]->ts_us,
                           recs[i]->delete_marker ? "~" : "", recs[i]->tombstone ? "x" : "",
                           recs[i]->is_latest ? "*" : "");
}

static void partition_records(fix_t *f, uint32_t p, rep_t *r) {
  memset(r, 0, sizeof *r);
  obj_partition_records(f->o, p, on_records, r);
  assert_int_equal(r->done, 0);
  run_until(f, &r->done);
  assert_int_equal(r->st, OBJ_OK);
}

static obj_status_t partition_drop(fix_t *f, uint32_t p) {
  done_t d = {0};
  obj_partition_drop(f->o, p, on_done, &d);
  assert_int_equal(d.done, 0);
  run_until(f, &d.done);
  return d.st;
}

static void on_gc(void *arg, obj_status_t st, uint64_t removed) {
  rep_t *r = arg;
  r->done++;
  r->st = st;
  r->removed = removed;
}

static uint64_t gc_tombstones(fix_t *f, uint64_t older_than_ms) {
  rep_t r = {0};
  obj_gc_tombstones(f->o, older_than_ms, on_gc, &r);
  assert_int_equal(r.done, 0);
  run_until(f, &r.done);
  assert_int_equal(r.st, OBJ_OK);
  return r.removed;
}

typedef struct {
  int done, end;
  obj_status_t st;
  size_t nbad;
  char bad[16][160]; /* "key@vid+offset/len" */
  char nb[64], nk[64], nv[64];
} scrub_res_t;

static void on_scrub(void *arg, obj_status_t st, const obj_bad_block_t *bad, size_t nbad,
                     const char *nb, const char *nk, const char *nv, int done) {
  scrub_res_t *r = arg;
  r->done++;
  r->st = st;
  r->end = done;
  for (size_t i = 0; i < nbad && r->nbad < 16; i++, r->nbad++)
    snprintf(r->bad[r->nbad], sizeof r->bad[r->nbad], "%s/%s@%s+%llu/%u", bad[i].bucket,
             bad[i].key, bad[i].version_id, (unsigned long long)bad[i].offset, bad[i].len);
  snprintf(r->nb, sizeof r->nb, "%s", nb);
  snprintf(r->nk, sizeof r->nk, "%s", nk);
  snprintf(r->nv, sizeof r->nv, "%s", nv);
}

/* The whole store, max versions a step; returns the steps taken. Bad blocks add up in *r. */
static int scrub_all(fix_t *f, uint32_t max, scrub_res_t *r) {
  memset(r, 0, sizeof *r);
  int steps = 0;
  do {
    char b[64], k[64], v[64];
    snprintf(b, sizeof b, "%s", r->nb);
    snprintf(k, sizeof k, "%s", r->nk);
    snprintf(v, sizeof v, "%s", r->nv);
    r->done = 0;
    obj_scrub(f->o, b, k, v, max, on_scrub, r);
    assert_int_equal(r->done, 0);
    run_until(f, &r->done);
    assert_int_equal(r->st, OBJ_OK);
    assert_true(++steps < 100);
  } while (!r->end);
  return steps;
}

static obj_status_t block_repair(fix_t *f, const char *bucket, const char *key, const char *vid,
                                 uint64_t off, const void *data, size_t len) {
  done_t d = {0};
  obj_block_repair(f->o, bucket, key, vid, off, data, len, on_done, &d);
  assert_int_equal(d.done, 0);
  run_until(f, &d.done);
  return d.st;
}

static obj_status_t debug_corrupt(fix_t *f, const char *bucket, const char *key, const char *vid,
                                  uint64_t off) {
  done_t d = {0};
  obj_debug_corrupt(f->o, bucket, key, vid, off, on_done, &d);
  assert_int_equal(d.done, 0);
  run_until(f, &d.done);
  return d.st;
}

/* ---- tests ---- */

/* Known answers for CRC32C (RFC 3720 and the usual "123456789" check value). */
static void test_crc32c(void **state) {
  (void)state;
  assert_int_equal(obj_crc32c(0, "123456789", 9), 0xe3069283u);
  uint8_t zeros[32] = {0}, ones[32];
  memset(ones, 0xff, sizeof ones);
  assert_int_equal(obj_crc32c(0, zeros, 32), 0x8a9136aau);
  assert_int_equal(obj_crc32c(0, ones, 32), 0x62a8ab43u);
  /* Incremental equals one shot, across the 8-byte fast path. */
  uint8_t *p = rand_bytes(1000, 7);
  uint32_t one = obj_crc32c(0, p, 1000);
  assert_int_equal(obj_crc32c(obj_crc32c(0, p, 333), p + 333, 667), one);
  free(p);
}

static void test_put_get_sizes(void **state) {
  fix_t *f = *state;
  const size_t sizes[] = {0, 1, BS - 1, BS, BS + 1, 3 * BS + BS / 2};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    char key[32], want[33];
    snprintf(key, sizeof key, "obj-%zu", sizes[i]);
    uint8_t *data = rand_bytes(sizes[i], i + 1);
    md5_hex(data, sizes[i], want);
    Gureum__ObjectMeta *m = put(f, "bkt", key, data, sizes[i], 0);
    assert_string_equal(m->etag, want);
    assert_int_equal(m->size, sizes[i]);
    assert_string_equal(m->version_id, "null");
    assert_string_equal(m->content_type, "application/octet-stream");
    assert_true(m->mtime_ms > 0);
    assert_true(m->is_latest);
    meta_free(m);

    Gureum__ObjectMeta *h = NULL;
    assert_int_equal(head(f, "bkt", key, NULL, &h), OBJ_OK);
    assert_string_equal(h->etag, want);
    assert_int_equal(h->size, sizes[i]);
    assert_true(h->is_latest);
    meta_free(h);

    uint8_t *got = NULL;
    size_t gl = 0, maxpiece = 0;
    assert_int_equal(get_range(f, "bkt", key, NULL, 0, UINT64_MAX, &got, &gl, NULL, &maxpiece),
                     OBJ_OK);
    assert_int_equal(gl, sizes[i]);
    if (gl) assert_memory_equal(got, data, gl);
    assert_true(maxpiece <= BS); /* one block at a time */
    free(got);
    free(data);
  }
  /* Whole blocks only, plus one partial: 0 + 1 + 1 + 1 + 2 + 4. */
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 9);
}

/* obj_writer_md5 sees what the commit will see, and the commit agrees with it. */
static void test_writer_md5(void **state) {
  fix_t *f = *state;
  size_t n = 2 * BS + 12345;
  uint8_t *data = rand_bytes(n, 99);
  char want[33], got[33];
  md5_hex(data, n, want);
  Gureum__ObjectMeta m = GUREUM__OBJECT_META__INIT;
  m.bucket = "bkt";
  m.key = "md5";
  obj_writer_t *w = obj_put_begin(f->o, &m, 0);
  assert_int_equal(write_all(f, w, data, n, 100000), OBJ_OK);
  obj_hex(got, obj_writer_md5(w), 16);
  assert_string_equal(got, want);
  res_t r = {0};
  obj_put_commit(w, on_meta, &r);
  Gureum__ObjectMeta *out = NULL;
  assert_int_equal(res_wait(f, &r, &out), OBJ_OK);
  assert_string_equal(out->etag, want);
  meta_free(out);
  check_content(f, "bkt", "md5", NULL, data, n);
  free(data);
  /* Missing bucket or key: no writer. */
  m.key = "";
  assert_null(obj_put_begin(f->o, &m, 0));
}

static void test_ranges(void **state) {
  fix_t *f = *state;
  size_t n = 3 * BS + BS / 2;
  uint8_t *data = rand_bytes(n, 42);
  meta_free(put(f, "bkt", "r", data, n, 0));
  const struct {
    uint64_t off, len;
  } cases[] = {
      {0, 1},           {BS - 10, 20},      {BS, BS},           {BS - 1, 2 * BS + 2},
      {3 * BS + 100, UINT64_MAX}, {n - 1, 1}, {n - 1, 100},     {10, n * 2},
      {0, n},           {2 * BS + 5, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    uint8_t *got = NULL;
    size_t gl = 0, maxpiece = 0;
    assert_int_equal(
        get_range(f, "bkt", "r", NULL, cases[i].off, cases[i].len, &got, &gl, NULL, &maxpiece),
        OBJ_OK);
    uint64_t want = n - cases[i].off;
    if (cases[i].len < want) want = cases[i].len;
    assert_int_equal(gl, want);
    if (gl) assert_memory_equal(got, data + cases[i].off, gl);
    assert_true(maxpiece <= BS);
    free(got);
  }
  free(data);
}

static void test_range_beyond_end(void **state) {
  fix_t *f = *state;
  uint8_t *data = rand_bytes(1000, 3);
  meta_free(put(f, "bkt", "small", data, 1000, 0));
  assert_int_equal(get_range(f, "bkt", "small", NULL, 1000, 1, NULL, NULL, NULL, NULL),
                   OBJ_ERANGE);
  assert_int_equal(get_range(f, "bkt", "small", NULL, 5000, UINT64_MAX, NULL, NULL, NULL, NULL),
                   OBJ_ERANGE);
  size_t gl = 1;
  assert_int_equal(get_range(f, "bkt", "small", NULL, 999, 10, NULL, &gl, NULL, NULL), OBJ_OK);
  assert_int_equal(gl, 1);
  /* An empty object has no bytes to be out of range of. */
  meta_free(put(f, "bkt", "empty", "", 0, 0));
  assert_int_equal(get_range(f, "bkt", "empty", NULL, 0, 10, NULL, &gl, NULL, NULL), OBJ_OK);
  assert_int_equal(gl, 0);
  free(data);
}

static void test_versioned_puts(void **state) {
  fix_t *f = *state;
  char vids[3][40];
  const char *bodies[3] = {"first", "second!", "third!!!"};
  for (int i = 0; i < 3; i++) {
    Gureum__ObjectMeta *m = put(f, "bkt", "v", bodies[i], strlen(bodies[i]), 1);
    assert_int_equal(strlen(m->version_id), OBJ_UID_LEN);
    snprintf(vids[i], sizeof vids[i], "%s", m->version_id);
    meta_free(m);
  }
  assert_string_not_equal(vids[0], vids[1]);
  assert_string_not_equal(vids[1], vids[2]);
  check_content(f, "bkt", "v", NULL, (const uint8_t *)"third!!!", 8);
  for (int i = 0; i < 3; i++) {
    check_content(f, "bkt", "v", vids[i], (const uint8_t *)bodies[i], strlen(bodies[i]));
    Gureum__ObjectMeta *h = NULL;
    assert_int_equal(head(f, "bkt", "v", vids[i], &h), OBJ_OK);
    assert_string_equal(h->version_id, vids[i]);
    assert_int_equal(h->is_latest, i == 2);
    meta_free(h);
  }
  assert_int_equal(head(f, "bkt", "v", "nosuchversion", NULL), OBJ_ENOVERSION);
  assert_int_equal(head(f, "bkt", "nokey", NULL, NULL), OBJ_ENOENT);
  assert_int_equal(get(f, "bkt", "nokey", NULL, NULL, NULL), OBJ_ENOENT);
  assert_int_equal(get(f, "bkt", "v", "nosuchversion", NULL, NULL), OBJ_ENOVERSION);
  /* An unversioned put next to versions adds "null" as the latest and keeps the others. */
  put_str(f, "bkt", "v", "plain", 0);
  ls_t l;
  vlist(f, &l, "bkt", NULL, NULL, NULL, NULL, 0);
  char want[512];
  snprintf(want, sizeof want, "v@null* v@%s v@%s v@%s", vids[2], vids[1], vids[0]);
  assert_string_equal(l.s, want);
}

static void test_unversioned_replace_no_orphans(void **state) {
  fix_t *f = *state;
  uint8_t *a = rand_bytes(3 * BS, 1), *b = rand_bytes(2 * BS - 5, 2);
  meta_free(put(f, "bkt", "k", a, 3 * BS, 0));
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 3);
  meta_free(put(f, "bkt", "k", b, 2 * BS - 5, 0));
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 2);
  assert_int_equal(count_keys(f, OBJ_CF_META), 1);
  check_content(f, "bkt", "k", NULL, b, 2 * BS - 5);
  check_content(f, "bkt", "k", "null", b, 2 * BS - 5);
  meta_free(put(f, "bkt", "k", "", 0, 0));
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 0);
  assert_int_equal(count_keys(f, OBJ_CF_META), 1);
  free(a);
  free(b);
}

static void test_delete_enabled(void **state) {
  fix_t *f = *state;
  uint8_t *data = rand_bytes(BS + 10, 5);
  Gureum__ObjectMeta *v1 = put(f, "bkt", "d", data, BS + 10, 1);

  Gureum__ObjectMeta *dm = NULL;
  assert_int_equal(del(f, "bkt", "d", NULL, "Enabled", &dm), OBJ_OK);
  assert_true(dm->delete_marker);
  assert_int_equal(strlen(dm->version_id), OBJ_UID_LEN);
  assert_string_not_equal(dm->version_id, v1->version_id);

  Gureum__ObjectMeta *g = NULL;
  assert_int_equal(get_range(f, "bkt", "d", NULL, 0, UINT64_MAX, NULL, NULL, &g, NULL),
                   OBJ_EDELETED);
  assert_non_null(g);
  assert_true(g->delete_marker);
  assert_true(g->is_latest);
  assert_string_equal(g->version_id, dm->version_id);
  meta_free(g);
  assert_int_equal(head(f, "bkt", "d", dm->version_id, NULL), OBJ_EDELETED);
  assert_int_equal(head(f, "bkt", "d", NULL, NULL), OBJ_EDELETED);
  check_content(f, "bkt", "d", v1->version_id, data, BS + 10);
  ls_t l;
  list(f, &l, "bkt", NULL, NULL, NULL, 0);
  assert_string_equal(l.s, "");

  /* Removing the marker by id brings the object back. */
  Gureum__ObjectMeta *rm = NULL;
  assert_int_equal(del(f, "bkt", "d", dm->version_id, "Enabled", &rm), OBJ_OK);
  assert_true(rm->delete_marker);
  assert_string_equal(rm->version_id, dm->version_id);
  meta_free(rm);
  check_content(f, "bkt", "d", NULL, data, BS + 10);

  /* Removing the last version by id frees its blocks. */
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 2);
  assert_int_equal(del(f, "bkt", "d", v1->version_id, "Enabled", &rm), OBJ_OK);
  assert_false(rm->delete_marker);
  assert_string_equal(rm->version_id, v1->version_id);
  meta_free(rm);
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 0);
  assert_int_equal(head(f, "bkt", "d", NULL, NULL), OBJ_ENOENT);

  /* An unknown version id is not an error (S3 answers 204). */
  assert_int_equal(del(f, "bkt", "d", "nosuchversion", "Enabled", &rm), OBJ_OK);
  assert_string_equal(rm->version_id, "nosuchversion");
  assert_false(rm->delete_marker);
  meta_free(rm);
  /* A marker on a key that never existed is still made. */
  assert_int_equal(del(f, "bkt", "ghost", NULL, "Enabled", &rm), OBJ_OK);
  assert_true(rm->delete_marker);
  meta_free(rm);
  assert_int_equal(head(f, "bkt", "ghost", NULL, NULL), OBJ_EDELETED);
  meta_free(dm);
  meta_free(v1);
  free(data);
}

static void test_delete_suspended(void **state) {
  fix_t *f = *state;
  Gureum__ObjectMeta *v1 = put(f, "bkt", "s", "versioned", 9, 1);
  uint8_t *data = rand_bytes(2 * BS, 8);
  meta_free(put(f, "bkt", "s", data, 2 * BS, 0)); /* suspended: writes "null" */
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 3);

  Gureum__ObjectMeta *dm = NULL;
  assert_int_equal(del(f, "bkt", "s", NULL, "Suspended", &dm), OBJ_OK);
  assert_true(dm->delete_marker);
  assert_string_equal(dm->version_id, "null");
  meta_free(dm);
  /* The null object became the null marker: its blocks are gone, v1's remain. */
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 1);
  assert_int_equal(head(f, "bkt", "s", NULL, NULL), OBJ_EDELETED);
  assert_int_equal(head(f, "bkt", "s", "null", NULL), OBJ_EDELETED);
  check_content(f, "bkt", "s", v1->version_id, (const uint8_t *)"versioned", 9);
  ls_t l;
  vlist(f, &l, "bkt", NULL, NULL, NULL, NULL, 0);
  char want[256];
  snprintf(want, sizeof want, "s@null*~ s@%s", v1->version_id);
  assert_string_equal(l.s, want);
  /* A second suspended delete replaces the null marker rather than adding one. */
  assert_int_equal(del(f, "bkt", "s", NULL, "Suspended", &dm), OBJ_OK);
  meta_free(dm);
  vlist(f, &l, "bkt", NULL, NULL, NULL, NULL, 0);
  assert_string_equal(l.s, want);
  meta_free(v1);
  free(data);
}

static void test_delete_unversioned(void **state) {
  fix_t *f = *state;
  uint8_t *data = rand_bytes(BS + 1, 9);
  meta_free(put(f, "bkt", "u", data, BS + 1, 0));
  Gureum__ObjectMeta *rm = NULL;
  assert_int_equal(del(f, "bkt", "u", NULL, "", &rm), OBJ_OK);
  assert_false(rm->delete_marker);
  assert_string_equal(rm->version_id, "null");
  meta_free(rm);
  assert_int_equal(head(f, "bkt", "u", NULL, NULL), OBJ_ENOENT);
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 0);
  /* What is left is the null tombstone that keeps replicas from bringing it back. */
  assert_int_equal(count_keys(f, OBJ_CF_META), 1);
  /* Deleting what is not there succeeds (S3 answers 204), with or without versioning NULL. */
  assert_int_equal(del(f, "bkt", "u", NULL, NULL, &rm), OBJ_OK);
  assert_false(rm->delete_marker);
  assert_string_equal(rm->version_id, "");
  meta_free(rm);
  free(data);
}

static void test_list_prefix_delimiter(void **state) {
  fix_t *f = *state;
  const char *keys[] = {"a", "b/1", "b/2", "b/x/3", "c/x/1", "c/y", "d", "dd/e", "e"};
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) put_str(f, "bkt", keys[i], keys[i], 0);
  put_str(f, "bkt1", "zzz", "other bucket", 0); /* "bkt" is a prefix of "bkt1" */
  put_str(f, "bk", "a", "other bucket", 0);
  meta_free(put(f, "bkt", "gone", "x", 1, 1));
  Gureum__ObjectMeta *dm = NULL;
  assert_int_equal(del(f, "bkt", "gone", NULL, "Enabled", &dm), OBJ_OK);
  meta_free(dm);

  ls_t l;
  list(f, &l, "bkt", NULL, NULL, NULL, 0);
  assert_string_equal(l.s, "a b/1 b/2 b/x/3 c/x/1 c/y d dd/e e");
  list(f, &l, "bkt", NULL, "/", NULL, 0);
  assert_string_equal(l.s, "a b/ c/ d dd/ e");
  assert_int_equal(l.np, 3);
  list(f, &l, "bkt", "b/", "/", NULL, 0);
  assert_string_equal(l.s, "b/1 b/2 b/x/");
  list(f, &l, "bkt", "c", NULL, NULL, 0);
  assert_string_equal(l.s, "c/x/1 c/y");
  list(f, &l, "bkt", "d", "/", NULL, 0);
  assert_string_equal(l.s, "d dd/");
  list(f, &l, "bkt", NULL, NULL, "c/x/1", 0);
  assert_string_equal(l.s, "c/y d dd/e e");
  /* A common prefix at or before start_after was on an earlier page. */
  list(f, &l, "bkt", NULL, "/", "b/", 0);
  assert_string_equal(l.s, "c/ d dd/ e");
  list(f, &l, "bkt", NULL, "/", "b/2", 0);
  assert_string_equal(l.s, "c/ d dd/ e");
  /* start_after before the prefix, and after it. */
  list(f, &l, "bkt", "c/", NULL, "a", 0);
  assert_string_equal(l.s, "c/x/1 c/y");
  list(f, &l, "bkt", "c/", NULL, "d", 0);
  assert_string_equal(l.s, "");
  list(f, &l, "bkt", "zz", NULL, NULL, 0);
  assert_string_equal(l.s, "");
  list(f, &l, "bkt1", NULL, NULL, NULL, 0);
  assert_string_equal(l.s, "zzz");
  list(f, &l, "nobucket", NULL, NULL, NULL, 0);
  assert_string_equal(l.s, "");
  /* A multi-character delimiter. */
  list(f, &l, "bkt", NULL, "x/", NULL, 0);
  assert_string_equal(l.s, "a b/1 b/2 b/x/ c/x/ c/y d dd/e e");
}

/* A prefix whose keys are all hidden by delete markers is not a common prefix. */
static void test_list_prefix_only_markers(void **state) {
  fix_t *f = *state;
  const char *keys[] = {"gone/x", "gone/y", "kept/z", "mixed/a", "mixed/b", "top"};
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) put_str(f, "bkt", keys[i], "v", 1);
  const char *dels[] = {"gone/x", "gone/y", "mixed/a", "top"};
  for (size_t i = 0; i < sizeof dels / sizeof *dels; i++) {
    Gureum__ObjectMeta *dm = NULL;
    assert_int_equal(del(f, "bkt", dels[i], NULL, "Enabled", &dm), OBJ_OK);
    meta_free(dm);
  }
  ls_t l;
  list(f, &l, "bkt", NULL, "/", NULL, 0);
  assert_string_equal(l.s, "kept/ mixed/");
  list(f, &l, "bkt", NULL, "/", NULL, 1);
  assert_string_equal(l.s, "kept/ | next=kept/");
  list(f, &l, "bkt", NULL, "/", "kept/", 1);
  assert_string_equal(l.s, "mixed/");
  /* The versions listing still shows the markers' prefixes. */
  vlist(f, &l, "bkt", NULL, "/", NULL, NULL, 0);
  assert_int_equal(l.np, 3);
}

static obj_status_t put_cond(fix_t *f, const char *key, const char *body, const char *if_match,
                             const char *if_none_match) {
  Gureum__ObjectMeta m = GUREUM__OBJECT_META__INIT;
  m.bucket = "bkt";
  m.key = (char *)key;
  obj_writer_t *w = obj_put_begin(f->o, &m, 0);
  assert_non_null(w);
  obj_cond_t c = {.if_match = if_match, .if_none_match = if_none_match};
  obj_writer_set_cond(w, &c);
  assert_int_equal(write_all(f, w, (const uint8_t *)body, strlen(body), 1024), OBJ_OK);
  res_t r = {0};
  obj_put_commit(w, on_meta, &r);
  Gureum__ObjectMeta *out = NULL;
  obj_status_t st = res_wait(f, &r, &out);
  meta_free(out);
  return st;
}

static void test_conditional_put(void **state) {
  fix_t *f = *state;
  char etag[33], quoted[40];
  assert_int_equal(put_cond(f, "k", "first", NULL, "*"), OBJ_OK);
  assert_int_equal(put_cond(f, "k", "again", NULL, "*"), OBJ_EPRECOND);
  assert_int_equal(put_cond(f, "k", "other", "\"00000000000000000000000000000000\"", NULL), OBJ_EPRECOND);
  assert_int_equal(put_cond(f, "missing", "x", "\"abc\"", NULL), OBJ_ENOENT);
  md5_hex("first", 5, etag);
  snprintf(quoted, sizeof quoted, "\"%s\"", etag);
  assert_int_equal(put_cond(f, "k", "second", quoted, NULL), OBJ_OK);
  check_content(f, "bkt", "k", NULL, (const uint8_t *)"second", 6);
  /* A failed condition leaves no blocks behind. */
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 1);
  /* A delete marker is "no current object". */
  Gureum__ObjectMeta *dm = NULL;
  assert_int_equal(del(f, "bkt", "k", NULL, "Enabled", &dm), OBJ_OK);
  meta_free(dm);
  assert_int_equal(put_cond(f, "k", "third", NULL, "*"), OBJ_OK);
  assert_true(obj_etag_matches("W/\"a\", \"b\"", "b"));
  assert_false(obj_etag_matches("\"a\"", "b"));
  assert_true(obj_etag_matches("*", "b"));
}

static void on_recs(void *arg, obj_status_t st, Gureum__ObjectMeta **recs, size_t n) {
  ls_t *r = arg;
  r->done++;
  r->st = st;
  r->n = n;
  r->s[0] = 0;
  size_t at = 0;
  for (size_t i = 0; st == OBJ_OK && i < n; i++) {
    assert_true(recs[i]->tombstone);
    at += (size_t)snprintf(r->s + at, sizeof r->s - at, "%s%s", at ? " " : "", recs[i]->version_id);
  }
}

/* What a replica sends along with a read: the deletes newer than the version it found. */
static void test_tombstones_for_reads(void **state) {
  fix_t *f = *state;
  Gureum__ObjectMeta *v1 = put(f, "bkt", "k", "one", 3, 1);
  Gureum__ObjectMeta *v2 = put(f, "bkt", "k", "two", 3, 1);
  Gureum__ObjectMeta *dm = NULL;
  assert_int_equal(del(f, "bkt", "k", v2->version_id, "Enabled", &dm), OBJ_OK);
  meta_free(dm);
  ls_t r;
  memset(&r, 0, sizeof r);
  obj_tombstones(f->o, "bkt", "k", NULL, v1->ts_us, on_recs, &r);
  run_until(f, &r.done);
  assert_int_equal(r.st, OBJ_OK);
  assert_string_equal(r.s, v2->version_id);
  memset(&r, 0, sizeof r);
  obj_tombstones(f->o, "bkt", "k", v1->version_id, 0, on_recs, &r);
  run_until(f, &r.done);
  assert_int_equal(r.n, 0); /* v1 is alive */
  /* an unversioned key: the delete leaves a "null" tombstone newer than anything */
  put_str(f, "bkt", "plain", "x", 0);
  assert_int_equal(del(f, "bkt", "plain", NULL, "", &dm), OBJ_OK);
  meta_free(dm);
  memset(&r, 0, sizeof r);
  obj_tombstones(f->o, "bkt", "plain", NULL, 0, on_recs, &r);
  run_until(f, &r.done);
  assert_string_equal(r.s, "null");
  meta_free(v1);
  meta_free(v2);
}

static void test_list_pagination(void **state) {
  fix_t *f = *state;
  char key[32];
  for (int i = 0; i < 25; i++) {
    snprintf(key, sizeof key, "k%02d", i);
    put_str(f, "bkt", key, key, 0);
    /* Extra versions must not show up, nor slow the walk. */
    if (i % 5 == 0) meta_free(put(f, "bkt", key, key, strlen(key), 1));
  }
  for (int i = 0; i < 5; i++) {
    snprintf(key, sizeof key, "p/%d", i);
    put_str(f, "bkt", key, key, 0);
  }
  ls_t l;
  list(f, &l, "bkt", NULL, NULL, NULL, 10);
  assert_string_equal(l.s, "k00 k01 k02 k03 k04 k05 k06 k07 k08 k09 | next=k09");
  list(f, &l, "bkt", NULL, NULL, l.next_key, 10);
  assert_string_equal(l.s, "k10 k11 k12 k13 k14 k15 k16 k17 k18 k19 | next=k19");
  list(f, &l, "bkt", NULL, NULL, l.next_key, 10);
  assert_string_equal(l.s, "k20 k21 k22 k23 k24 p/0 p/1 p/2 p/3 p/4");
  assert_false(l.truncated);
  /* Exactly max left: not truncated. */
  list(f, &l, "bkt", "p/", NULL, NULL, 5);
  assert_false(l.truncated);
  /* A common prefix counts once and can end a page; the next page skips all of it. */
  list(f, &l, "bkt", "k2", "/", NULL, 0);
  assert_string_equal(l.s, "k20 k21 k22 k23 k24");
  list(f, &l, "bkt", NULL, "/", "k21", 4);
  assert_string_equal(l.s, "k22 k23 k24 p/");
  list(f, &l, "bkt", NULL, "/", "k22", 3);
  assert_string_equal(l.s, "k23 k24 p/"); /* exactly full, nothing after: not truncated */
  /* With something after p/ the page is truncated at the common prefix. */
  put_str(f, "bkt", "q", "q", 0);
  list(f, &l, "bkt", NULL, "/", "k22", 3);
  assert_string_equal(l.s, "k23 k24 p/ | next=p/");
  list(f, &l, "bkt", NULL, "/", l.next_key, 3);
  assert_string_equal(l.s, "q");
  /* max 0 means the default (1000); larger is capped. */
  list(f, &l, "bkt", NULL, NULL, NULL, 0);
  assert_int_equal(l.n, 31);
  list(f, &l, "bkt", NULL, NULL, NULL, 100000);
  assert_int_equal(l.n, 31);
  list(f, &l, "bkt", NULL, NULL, NULL, 1);
  assert_string_equal(l.s, "k00 | next=k00");
}

static void test_list_versions(void **state) {
  fix_t *f = *state;
  char a[3][40], b[2][40], want[1024];
  for (int i = 0; i < 3; i++) {
    Gureum__ObjectMeta *m = put(f, "bkt", "a", "x", 1, 1);
    snprintf(a[i], sizeof a[i], "%s", m->version_id);
    meta_free(m);
  }
  Gureum__ObjectMeta *m = put(f, "bkt", "b", "y", 1, 1);
  snprintf(b[0], sizeof b[0], "%s", m->version_id);
  meta_free(m);
  assert_int_equal(del(f, "bkt", "b", NULL, "Enabled", &m), OBJ_OK);
  snprintf(b[1], sizeof b[1], "%s", m->version_id);
  meta_free(m);
  put_str(f, "bkt", "c/1", "z", 0);
  put_str(f, "bkt", "c/2", "z", 0);

  ls_t l;
  vlist(f, &l, "bkt", NULL, NULL, NULL, NULL, 0);
  snprintf(want, sizeof want, "a@%s* a@%s a@%s b@%s*~ b@%s c/1@null* c/2@null*", a[2], a[1], a[0],
           b[1], b[0]);
  assert_string_equal(l.s, want);
  assert_false(l.truncated);

  /* Pages of two, resuming mid-key: is_latest stays right across the page break. */
  vlist(f, &l, "bkt", NULL, NULL, NULL, NULL, 2);
  snprintf(want, sizeof want, "a@%s* a@%s", a[2], a[1]);
  assert_string_equal(l.s, want);
  assert_true(l.truncated);
  assert_string_equal(l.next_key, "a");
  assert_string_equal(l.next_version, a[1]);
  char km[1100], vm[64];
  snprintf(km, sizeof km, "%s", l.next_key);
  snprintf(vm, sizeof vm, "%s", l.next_version);
  vlist(f, &l, "bkt", NULL, NULL, km, vm, 2);
  snprintf(want, sizeof want, "a@%s b@%s*~", a[0], b[1]);
  assert_string_equal(l.s, want);
  snprintf(km, sizeof km, "%s", l.next_key);
  snprintf(vm, sizeof vm, "%s", l.next_version);
  vlist(f, &l, "bkt", NULL, NULL, km, vm, 2);
  snprintf(want, sizeof want, "b@%s c/1@null*", b[0]);
  assert_string_equal(l.s, want);
  assert_true(l.truncated);
  snprintf(km, sizeof km, "%s", l.next_key);
  snprintf(vm, sizeof vm, "%s", l.next_version);
  vlist(f, &l, "bkt", NULL, NULL, km, vm, 2);
  assert_string_equal(l.s, "c/2@null*");
  assert_false(l.truncated);

  /* key_marker alone skips that key's versions; delimiter groups; prefix filters. */
  vlist(f, &l, "bkt", NULL, NULL, "a", NULL, 0);
  snprintf(want, sizeof want, "b@%s*~ b@%s c/1@null* c/2@null*", b[1], b[0]);
  assert_string_equal(l.s, want);
  vlist(f, &l, "bkt", NULL, "/", NULL, NULL, 0);
  snprintf(want, sizeof want, "a@%s* a@%s a@%s b@%s*~ b@%s c/", a[2], a[1], a[0], b[1], b[0]);
  assert_string_equal(l.s, want);
  vlist(f, &l, "bkt", "c/", NULL, NULL, NULL, 0);
  assert_string_equal(l.s, "c/1@null* c/2@null*");
  put_str(f, "bkt", "d", "z", 0);
  vlist(f, &l, "bkt", NULL, "/", NULL, NULL, 6);
  assert_true(l.truncated);
  assert_string_equal(l.next_key, "c/");
  assert_string_equal(l.next_version, "");
}

static void test_mpu_happy_path(void **state) {
  fix_t *f = *state;
  char id[64], etags[3][64];
  mpu_create(f, "bkt", "big", id);
  const size_t sizes[3] = {5 * MIB, 5 * MIB, 12345};
  uint8_t *parts[3], *all = malloc(10 * MIB + 12345);
  size_t at = 0;
  for (int i = 0; i < 3; i++) {
    parts[i] = rand_bytes(sizes[i], 100 + (uint64_t)i);
    memcpy(all + at, parts[i], sizes[i]);
    at += sizes[i];
  }
  /* Out of order on purpose: part numbers, not arrival, decide the layout. */
  assert_int_equal(put_part(f, "bkt", "big", id, 3, parts[2], sizes[2], etags[2]), OBJ_OK);
  assert_int_equal(put_part(f, "bkt", "big", id, 1, parts[0], sizes[0], etags[0]), OBJ_OK);
  assert_int_equal(put_part(f, "bkt", "big", id, 2, parts[1], sizes[1], etags[1]), OBJ_OK);
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 11);

  char quoted[80];
  snprintf(quoted, sizeof quoted, "\"%s\"", etags[1]);
  obj_part_ref_t refs[3] = {{1, etags[0]}, {2, quoted}, {3, etags[2]}};
  Gureum__ObjectMeta *m = NULL;
  assert_int_equal(mpu_complete(f, "bkt", "big", id, refs, 3, 0, &m), OBJ_OK);

  /* ETag: MD5 of the binary part MD5s, then "-3". */
  uint8_t md5s[48];
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 16; j++) {
      unsigned v;
      sscanf(etags[i] + 2 * j, "%2x", &v);
      md5s[16 * i + j] = (uint8_t)v;
    }
  char want[48];
  md5_hex(md5s, sizeof md5s, want);
  strcat(want, "-3");
  assert_string_equal(m->etag, want);
  assert_int_equal(m->size, 10 * MIB + 12345);
  assert_int_equal(m->parts_count, 3);
  assert_int_equal(m->n_part_sizes, 3);
  assert_int_equal(m->part_sizes[1], 5 * MIB);
  assert_string_equal(m->content_type, "text/plain"); /* from CreateMultipartUpload */
  assert_string_equal(m->version_id, "null");
  meta_free(m);

  /* Same bytes, no copy: the parts' blocks are the object's blocks. */
  check_content(f, "bkt", "big", NULL, all, at);
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 11);
  uint8_t *got = NULL;
  size_t gl = 0;
  assert_int_equal(
      get_range(f, "bkt", "big", NULL, 5 * MIB - 3, 6, &got, &gl, NULL, NULL), OBJ_OK);
  assert_int_equal(gl, 6);
  assert_memory_equal(got, all + 5 * MIB - 3, 6);
  free(got);
  assert_int_equal(get_range(f, "bkt", "big", NULL, 10 * MIB + 100, UINT64_MAX, &got, &gl, NULL,
                             NULL),
                   OBJ_OK);
  assert_int_equal(gl, 12245);
  assert_memory_equal(got, all + 10 * MIB + 100, gl);
  free(got);

  /* The upload is gone; overwriting the object frees every part's blocks. */
  pl_t pl;
  list_uploads(f, &pl, "bkt", NULL, NULL, NULL, 0);
  assert_int_equal(pl.n, 0);
  assert_int_equal(list_parts(f, &pl, "bkt", "big", id, 0, 0), OBJ_ENOUPLOAD);
  assert_int_equal(count_keys(f, OBJ_CF_MPU), 0);
  put_str(f, "bkt", "big", "tiny", 0);
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 1);
  for (int i = 0; i < 3; i++) free(parts[i]);
  free(all);
}

static void test_mpu_errors(void **state) {
  fix_t *f = *state;
  char id[64], e1[64], e2[64], e3[64];
  mpu_create(f, "bkt", "k", id);
  uint8_t *p5 = rand_bytes(5 * MIB, 1), *small = rand_bytes(1000, 2);
  assert_int_equal(put_part(f, "bkt", "k", id, 1, small, 1000, e1), OBJ_OK);
  assert_int_equal(put_part(f, "bkt", "k", id, 2, p5, 5 * MIB, e2), OBJ_OK);
  assert_int_equal(put_part(f, "bkt", "k", id, 3, small, 1000, e3), OBJ_OK);

  obj_part_ref_t order[2] = {{2, e2}, {1, e1}};
  assert_int_equal(mpu_complete(f, "bkt", "k", id, order, 2, 0, NULL), OBJ_EPARTORDER);
  obj_part_ref_t dup[2] = {{2, e2}, {2, e2}};
  assert_int_equal(mpu_complete(f, "bkt", "k", id, dup, 2, 0, NULL), OBJ_EPARTORDER);
  obj_part_ref_t bad[2] = {{2, e2}, {3, "\"0123456789abcdef0123456789abcdef\""}};
  assert_int_equal(mpu_complete(f, "bkt", "k", id, bad, 2, 0, NULL), OBJ_EPART);
  obj_part_ref_t missing[2] = {{2, e2}, {4, e3}};
  assert_int_equal(mpu_complete(f, "bkt", "k", id, missing, 2, 0, NULL), OBJ_EPART);
  obj_part_ref_t small_first[2] = {{1, e1}, {2, e2}};
  assert_int_equal(mpu_complete(f, "bkt", "k", id, small_first, 2, 0, NULL), OBJ_ETOOSMALL);
  assert_int_equal(mpu_complete(f, "bkt", "k", id, NULL, 0, 0, NULL), OBJ_EPART);
  assert_int_equal(mpu_complete(f, "bkt", "k", "nosuchupload", small_first, 2, 0, NULL),
                   OBJ_ENOUPLOAD);
  /* Another key's upload id is no upload of this key. */
  assert_int_equal(mpu_complete(f, "bkt", "other", id, small_first, 2, 0, NULL), OBJ_ENOUPLOAD);
  assert_int_equal(put_part(f, "bkt", "k", "nosuchupload", 1, small, 10, NULL), OBJ_ENOUPLOAD);
  assert_int_equal(head(f, "bkt", "k", NULL, NULL), OBJ_ENOENT);

  /* Failed completes change nothing: the upload completes afterwards; part 1 (unlisted) goes. */
  obj_part_ref_t ok[2] = {{2, e2}, {3, e3}};
  Gureum__ObjectMeta *m = NULL;
  assert_int_equal(mpu_complete(f, "bkt", "k", id, ok, 2, 1, &m), OBJ_OK);
  assert_int_equal(strlen(m->version_id), OBJ_UID_LEN);
  assert_int_equal(m->size, 5 * MIB + 1000);
  meta_free(m);
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 6);
  uint8_t *all = malloc(5 * MIB + 1000);
  memcpy(all, p5, 5 * MIB);
  memcpy(all + 5 * MIB, small, 1000);
  check_content(f, "bkt", "k", NULL, all, 5 * MIB + 1000);
  /* Completing twice: the upload no longer exists. */
  assert_int_equal(mpu_complete(f, "bkt", "k", id, ok, 2, 1, NULL), OBJ_ENOUPLOAD);
  free(all);
  free(p5);
  free(small);
}

static void test_mpu_replace_part(void **state) {
  fix_t *f = *state;
  char id[64], e_old[64], e_new[64];
  mpu_create(f, "bkt", "k", id);
  uint8_t *a = rand_bytes(3 * BS, 1), *b = rand_bytes(BS + 1, 2);
  assert_int_equal(put_part(f, "bkt", "k", id, 1, a, 3 * BS, e_old), OBJ_OK);
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 3);
  assert_int_equal(put_part(f, "bkt", "k", id, 1, b, BS + 1, e_new), OBJ_OK);
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 2); /* the old part's blocks went */
  pl_t pl;
  assert_int_equal(list_parts(f, &pl, "bkt", "k", id, 0, 0), OBJ_OK);
  assert_int_equal(pl.n, 1);
  assert_string_equal(pl.etags[0], e_new);
  obj_part_ref_t stale[1] = {{1, e_old}};
  assert_int_equal(mpu_complete(f, "bkt", "k", id, stale, 1, 0, NULL), OBJ_EPART);
  obj_part_ref_t fresh[1] = {{1, e_new}};
  Gureum__ObjectMeta *m = NULL;
  assert_int_equal(mpu_complete(f, "bkt", "k", id, fresh, 1, 0, &m), OBJ_OK);
  assert_int_equal(strlen(m->etag), 34);
  assert_string_equal(m->etag + 32, "-1");
  meta_free(m);
  check_content(f, "bkt", "k", NULL, b, BS + 1);
  free(a);
  free(b);
}

static void test_mpu_abort(void **state) {
  fix_t *f = *state;
  char id[64];
  mpu_create(f, "bkt", "k", id);
  assert_int_equal(bucket_empty(f, "bkt"), 0);
  uint8_t *a = rand_bytes(2 * BS + 7, 1);
  assert_int_equal(put_part(f, "bkt", "k", id, 1, a, 2 * BS + 7, NULL), OBJ_OK);
  assert_int_equal(put_part(f, "bkt", "k", id, 2, a, BS, NULL), OBJ_OK);
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 4);
  assert_int_equal(mpu_abort(f, "bkt", "k", id), OBJ_OK);
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 0);
  assert_int_equal(count_keys(f, OBJ_CF_MPU), 0);
  assert_int_equal(bucket_empty(f, "bkt"), 1);
  pl_t pl;
  assert_int_equal(list_parts(f, &pl, "bkt", "k", id, 0, 0), OBJ_ENOUPLOAD);
  assert_int_equal(mpu_abort(f, "bkt", "k", id), OBJ_ENOUPLOAD);
  /* A part that finishes after the abort is refused and leaves nothing behind. */
  assert_int_equal(put_part(f, "bkt", "k", id, 3, a, 2 * BS + 7, NULL), OBJ_ENOUPLOAD);
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 0);
  free(a);
}

static void test_mpu_list(void **state) {
  fix_t *f = *state;
  char ids[4][64], e[64];
  mpu_create(f, "bkt", "a/x", ids[0]);
  mpu_create(f, "bkt", "a/x", ids[1]);
  mpu_create(f, "bkt", "b", ids[2]);
  mpu_create(f, "other", "a/y", ids[3]);
  const char *lo = strcmp(ids[0], ids[1]) < 0 ? ids[0] : ids[1];
  const char *hi = lo == ids[0] ? ids[1] : ids[0];

  pl_t pl;
  list_uploads(f, &pl, "bkt", NULL, NULL, NULL, 0);
  assert_int_equal(pl.n, 3);
  assert_false(pl.truncated);
  assert_string_equal(pl.keys[0], "a/x");
  assert_string_equal(pl.ids[0], lo);
  assert_string_equal(pl.ids[1], hi);
  assert_string_equal(pl.keys[2], "b");
  list_uploads(f, &pl, "bkt", "a/", NULL, NULL, 0);
  assert_int_equal(pl.n, 2);
  list_uploads(f, &pl, "bkt", NULL, NULL, NULL, 2);
  assert_int_equal(pl.n, 2);
  assert_true(pl.truncated);
  list_uploads(f, &pl, "bkt", NULL, "a/x", lo, 0);
  assert_int_equal(pl.n, 2);
  assert_string_equal(pl.ids[0], hi);
  assert_string_equal(pl.keys[1], "b");
  list_uploads(f, &pl, "bkt", NULL, "a/x", NULL, 0);
  assert_int_equal(pl.n, 1);
  assert_string_equal(pl.keys[0], "b");

  for (uint32_t pn = 1; pn <= 5; pn++) {
    uint8_t body[8];
    memset(body, (int)pn, sizeof body);
    assert_int_equal(put_part(f, "bkt", "b", ids[2], pn * 2, body, sizeof body, e), OBJ_OK);
  }
  assert_int_equal(list_parts(f, &pl, "bkt", "b", ids[2], 0, 0), OBJ_OK);
  assert_int_equal(pl.n, 5);
  assert_false(pl.truncated);
  for (size_t i = 0; i < 5; i++) assert_int_equal(pl.numbers[i], 2 * (i + 1));
  assert_int_equal(list_parts(f, &pl, "bkt", "b", ids[2], 0, 2), OBJ_OK);
  assert_int_equal(pl.n, 2);
  assert_true(pl.truncated);
  assert_int_equal(list_parts(f, &pl, "bkt", "b", ids[2], 4, 2), OBJ_OK);
  assert_int_equal(pl.n, 2);
  assert_int_equal(pl.numbers[0], 6);
  assert_int_equal(pl.numbers[1], 8);
  assert_true(pl.truncated);
  assert_int_equal(list_parts(f, &pl, "bkt", "b", ids[2], 8, 2), OBJ_OK);
  assert_int_equal(pl.n, 1);
  assert_false(pl.truncated);
  assert_int_equal(list_parts(f, &pl, "bkt", "b", ids[2], UINT32_MAX, 0), OBJ_OK);
  assert_int_equal(pl.n, 0);
  assert_int_equal(list_parts(f, &pl, "bkt", "a/x", ids[2], 0, 0), OBJ_ENOUPLOAD);
}

static void test_corrupt_block(void **state) {
  fix_t *f = *state;
  size_t n = 2 * BS + 500;
  uint8_t *data = rand_bytes(n, 77);
  meta_free(put(f, "bkt", "c", data, n, 0));
  Gureum__ObjectMeta *m = NULL;
  assert_int_equal(head(f, "bkt", "c", NULL, &m), OBJ_OK);
  assert_int_equal(m->data_id.len, OBJ_ID_LEN);
  store_cf_t *cf = store_cf(f->s, OBJ_CF_DATA, NULL);
  uint8_t k[OBJ_BLOCK_KEY_LEN];

  /* Same length, one flipped byte in block 1: the checksum catches it. */
  obj_block_key(k, m->data_id.data, 1);
  void *v = NULL;
  size_t vl = 0;
  assert_int_equal(store_get(f->s, cf, NULL, k, sizeof k, &v, &vl, NULL), STORE_OK);
  assert_int_equal(vl, BS + 4);
  ((uint8_t *)v)[4 + 1000] ^= 0x40;
  assert_int_equal(store_put(f->s, cf, k, sizeof k, v, vl, 0, NULL), STORE_OK);
  free(v);

  /* Block 0 still reads; block 1 fails with no bad bytes handed out. */
  uint8_t *got = NULL;
  size_t gl = 0;
  assert_int_equal(get_range(f, "bkt", "c", NULL, 0, BS, &got, &gl, NULL, NULL), OBJ_OK);
  assert_int_equal(gl, BS);
  assert_memory_equal(got, data, BS);
  free(got);
  assert_int_equal(get_range(f, "bkt", "c", NULL, 0, UINT64_MAX, &got, &gl, NULL, NULL),
                   OBJ_ECORRUPT);
  assert_int_equal(gl, BS);
  free(got);
  assert_int_equal(get_range(f, "bkt", "c", NULL, BS + 5, 1, NULL, NULL, NULL, NULL),
                   OBJ_ECORRUPT);
  /* Garbage of the wrong length, and a missing block, are corrupt too. */
  obj_block_key(k, m->data_id.data, 2);
  assert_int_equal(store_put(f->s, cf, k, sizeof k, "garbage", 7, 0, NULL), STORE_OK);
  assert_int_equal(get_range(f, "bkt", "c", NULL, 2 * BS, 10, NULL, NULL, NULL, NULL),
                   OBJ_ECORRUPT);
  assert_int_equal(store_delete(f->s, cf, k, sizeof k, 0, NULL), STORE_OK);
  assert_int_equal(get_range(f, "bkt", "c", NULL, 2 * BS, 10, NULL, NULL, NULL, NULL),
                   OBJ_ECORRUPT);
  assert_int_equal(head(f, "bkt", "c", NULL, NULL), OBJ_OK);
  meta_free(m);
  free(data);
}

static void test_restart(void **state) {
  fix_t *f = *state;
  uint8_t *a = rand_bytes(BS + 99, 1), *p5 = rand_bytes(5 * MIB, 2);
  meta_free(put(f, "bkt", "plain", a, BS + 99, 0));
  Gureum__ObjectMeta *v1 = put(f, "bkt", "ver", "one", 3, 1);
  Gureum__ObjectMeta *v2 = put(f, "bkt", "ver", "two", 3, 1);
  char id[64], e1[64], e2[64];
  mpu_create(f, "bkt", "mp", id);
  assert_int_equal(put_part(f, "bkt", "mp", id, 1, p5, 5 * MIB, e1), OBJ_OK);
  Gureum__ObjectMeta *t = NULL;
  const Gureum__KeyValue kv = {PROTOBUF_C_MESSAGE_INIT(&gureum__key_value__descriptor), "k", "v"};
  const Gureum__KeyValue *tags[1] = {&kv};
  res_t r = {0};
  obj_set_tags(f->o, "bkt", "plain", NULL, tags, 1, on_meta, &r);
  assert_int_equal(res_wait(f, &r, NULL), OBJ_OK);

  close_all(f);
  open_all(f);

  check_content(f, "bkt", "plain", NULL, a, BS + 99);
  assert_int_equal(head(f, "bkt", "plain", NULL, &t), OBJ_OK);
  assert_int_equal(t->n_tags, 1);
  assert_string_equal(t->tags[0]->value, "v");
  meta_free(t);
  check_content(f, "bkt", "ver", NULL, (const uint8_t *)"two", 3);
  check_content(f, "bkt", "ver", v1->version_id, (const uint8_t *)"one", 3);
  /* New versions still sort first after a restart. */
  Gureum__ObjectMeta *v3 = put(f, "bkt", "ver", "three", 5, 1);
  check_content(f, "bkt", "ver", NULL, (const uint8_t *)"three", 5);
  pl_t pl;
  list_uploads(f, &pl, "bkt", NULL, NULL, NULL, 0);
  assert_int_equal(pl.n, 1);
  assert_int_equal(put_part(f, "bkt", "mp", id, 2, a, 10, e2), OBJ_OK);
  obj_part_ref_t refs[2] = {{1, e1}, {2, e2}};
  assert_int_equal(mpu_complete(f, "bkt", "mp", id, refs, 2, 0, NULL), OBJ_OK);
  uint8_t *all = malloc(5 * MIB + 10);
  memcpy(all, p5, 5 * MIB);
  memcpy(all + 5 * MIB, a, 10);
  check_content(f, "bkt", "mp", NULL, all, 5 * MIB + 10);
  meta_free(v1);
  meta_free(v2);
  meta_free(v3);
  free(all);
  free(a);
  free(p5);
}

/* 20 MiB in 64 KiB pieces: never more than one block buffered, and the writer pushes back
 * (some writes wait for a block to reach the disk) instead of queueing memory. */
static void test_writer_memory_bounded(void **state) {
  fix_t *f = *state;
  const size_t piece = 64 * 1024, total = 20 * MIB;
  uint8_t *chunk = rand_bytes(piece, 5);
  Gureum__ObjectMeta m = GUREUM__OBJECT_META__INIT;
  m.bucket = "bkt";
  m.key = "big";
  obj_writer_t *w = obj_put_begin(f->o, &m, 0);
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  EVP_DigestInit_ex(c, EVP_md5(), NULL);
  obj_stats_t st;
  for (size_t off = 0; off < total; off += piece) {
    done_t d = {0};
    obj_write(w, chunk, piece, on_done, &d);
    EVP_DigestUpdate(c, chunk, piece);
    assert_int_equal(d.done, 0);
    run_until(f, &d.done);
    assert_int_equal(d.st, OBJ_OK);
    obj_stats(f->o, &st);
    assert_true(st.buffered <= BS + 4);
    assert_int_equal(st.writers, 1);
  }
  res_t r = {0};
  obj_put_commit(w, on_meta, &r);
  Gureum__ObjectMeta *out = NULL;
  assert_int_equal(res_wait(f, &r, &out), OBJ_OK);
  uint8_t d[16];
  char want[33];
  EVP_DigestFinal_ex(c, d, NULL);
  EVP_MD_CTX_free(c);
  obj_hex(want, d, 16);
  assert_string_equal(out->etag, want);
  assert_int_equal(out->size, total);
  meta_free(out);
  obj_stats(f->o, &st);
  assert_int_equal(st.buffered_peak, BS + 4);
  assert_int_equal(st.buffered, 0);
  assert_int_equal(st.writers, 0);
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 20);

  /* Three writers at once: three blocks at most. */
  obj_writer_t *ws[3];
  for (int i = 0; i < 3; i++) ws[i] = obj_put_begin(f->o, &m, 1);
  for (int round = 0; round < 40; round++) {
    done_t dd[3] = {{0}};
    for (int i = 0; i < 3; i++) obj_write(ws[i], chunk, piece, on_done, &dd[i]);
    for (int i = 0; i < 3; i++) run_until(f, &dd[i].done);
    obj_stats(f->o, &st);
    assert_true(st.buffered <= 3 * (BS + 4));
  }
  for (int i = 0; i < 3; i++) obj_put_abort(ws[i]);
  drain(f);
  obj_stats(f->o, &st);
  assert_int_equal(st.writers, 0);
  assert_int_equal(st.buffered, 0);
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 20); /* the aborted writers left nothing */
  free(chunk);
}

static void test_writer_abort(void **state) {
  fix_t *f = *state;
  uint8_t *data = rand_bytes(3 * BS + 5, 1);
  Gureum__ObjectMeta m = GUREUM__OBJECT_META__INIT;
  m.bucket = "bkt";
  m.key = "ab";
  obj_writer_t *w = obj_put_begin(f->o, &m, 0);
  assert_int_equal(write_all(f, w, data, 3 * BS + 5, BS / 2), OBJ_OK);
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 3);
  obj_put_abort(w);
  drain(f);
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 0);

  /* Aborting while a block is on its way to disk: the write callback is dropped. */
  w = obj_put_begin(f->o, &m, 0);
  done_t d = {0};
  obj_write(w, data, 2 * BS + 1, on_done, &d);
  obj_put_abort(w);
  drain(f);
  assert_int_equal(d.done, 0);
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 0);
  assert_int_equal(head(f, "bkt", "ab", NULL, NULL), OBJ_ENOENT);
  /* Aborting before any write at all. */
  obj_put_abort(obj_put_begin(f->o, &m, 0));
  obj_stats_t st;
  obj_stats(f->o, &st);
  assert_int_equal(st.writers, 0);
  free(data);
}

static void test_reader_free_in_flight(void **state) {
  fix_t *f = *state;
  uint8_t *data = rand_bytes(2 * BS, 1);
  meta_free(put(f, "bkt", "r", data, 2 * BS, 0));
  /* Freed during the lookup... */
  res_t r = {0};
  obj_reader_t *rd = obj_get_begin(f->o, "bkt", "r", NULL, on_meta, &r);
  obj_reader_free(rd);
  drain(f);
  assert_int_equal(r.done, 0);
  /* ...and during a block read. */
  rd = obj_get_begin(f->o, "bkt", "r", NULL, on_meta, &r);
  run_until(f, &r.done);
  meta_free(r.meta);
  rd_t d = {0};
  obj_read(rd, on_data, &d);
  obj_reader_free(rd);
  drain(f);
  assert_int_equal(d.done, 0);
  obj_stats_t st;
  obj_stats(f->o, &st);
  assert_int_equal(st.readers, 0);
  /* A reader keeps reading the version it found even if it is overwritten meanwhile. */
  r.done = 0;
  rd = obj_get_begin(f->o, "bkt", "r", NULL, on_meta, &r);
  run_until(f, &r.done);
  meta_free(r.meta);
  put_str(f, "bkt", "r", "replaced", 0);
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 1);
  rd_t all = {0};
  do {
    int before = all.done;
    obj_read(rd, on_data, &all);
    while (all.done == before) uv_run(&f->loop, UV_RUN_ONCE);
  } while (all.st == OBJ_OK && !all.eof);
  assert_int_equal(all.st, OBJ_OK);
  assert_int_equal(all.n, 2 * BS);
  assert_memory_equal(all.buf, data, 2 * BS);
  free(all.buf);
  obj_reader_free(rd);
  free(data);
}

static void test_tags(void **state) {
  fix_t *f = *state;
  Gureum__ObjectMeta *v1 = put(f, "bkt", "t", "one", 3, 1);
  meta_free(put(f, "bkt", "t", "two", 3, 1));
  Gureum__KeyValue a = GUREUM__KEY_VALUE__INIT, b = GUREUM__KEY_VALUE__INIT;
  a.key = "color", a.value = "red";
  b.key = "size", b.value = "xl";
  const Gureum__KeyValue *two[2] = {&a, &b};
  res_t r = {0};
  Gureum__ObjectMeta *m = NULL;
  obj_set_tags(f->o, "bkt", "t", NULL, two, 2, on_meta, &r);
  assert_int_equal(res_wait(f, &r, &m), OBJ_OK);
  assert_int_equal(m->n_tags, 2);
  assert_true(m->is_latest);
  meta_free(m);
  assert_int_equal(head(f, "bkt", "t", NULL, &m), OBJ_OK);
  assert_int_equal(m->n_tags, 2);
  assert_string_equal(m->tags[1]->key, "size");
  assert_string_equal(m->etag, "b8a9f715dbb64fd5c56e7783c6820a61"); /* md5("two") */
  meta_free(m);
  /* Replace, on the older version only. */
  const Gureum__KeyValue *one[1] = {&b};
  r.done = 0;
  obj_set_tags(f->o, "bkt", "t", v1->version_id, one, 1, on_meta, &r);
  assert_int_equal(res_wait(f, &r, &m), OBJ_OK);
  assert_false(m->is_latest);
  meta_free(m);
  assert_int_equal(head(f, "bkt", "t", v1->version_id, &m), OBJ_OK);
  assert_int_equal(m->n_tags, 1);
  assert_string_equal(m->tags[0]->value, "xl");
  meta_free(m);
  assert_int_equal(head(f, "bkt", "t", NULL, &m), OBJ_OK);
  assert_int_equal(m->n_tags, 2);
  meta_free(m);
  /* Clear. */
  r.done = 0;
  obj_set_tags(f->o, "bkt", "t", NULL, NULL, 0, on_meta, &r);
  assert_int_equal(res_wait(f, &r, NULL), OBJ_OK);
  assert_int_equal(head(f, "bkt", "t", NULL, &m), OBJ_OK);
  assert_int_equal(m->n_tags, 0);
  meta_free(m);
  check_content(f, "bkt", "t", NULL, (const uint8_t *)"two", 3);
  /* Missing things. */
  r.done = 0;
  obj_set_tags(f->o, "bkt", "nokey", NULL, one, 1, on_meta, &r);
  assert_int_equal(res_wait(f, &r, NULL), OBJ_ENOENT);
  r.done = 0;
  obj_set_tags(f->o, "bkt", "t", "nosuchversion", one, 1, on_meta, &r);
  assert_int_equal(res_wait(f, &r, NULL), OBJ_ENOVERSION);
  assert_int_equal(del(f, "bkt", "t", NULL, "Enabled", NULL), OBJ_OK);
  r.done = 0;
  obj_set_tags(f->o, "bkt", "t", NULL, one, 1, on_meta, &r);
  assert_int_equal(res_wait(f, &r, NULL), OBJ_EDELETED);
  meta_free(v1);
}

static void test_bucket_is_empty(void **state) {
  fix_t *f = *state;
  assert_int_equal(bucket_empty(f, "bkt"), 1);
  put_str(f, "bkt1", "x", "x", 0); /* a bucket whose name extends ours */
  assert_int_equal(bucket_empty(f, "bkt"), 1);
  put_str(f, "bkt", "x", "x", 0);
  assert_int_equal(bucket_empty(f, "bkt"), 0);
  assert_int_equal(del(f, "bkt", "x", NULL, "", NULL), OBJ_OK);
  assert_int_equal(bucket_empty(f, "bkt"), 1);
  /* A delete marker alone still keeps a bucket from being deleted. */
  assert_int_equal(del(f, "bkt", "x", NULL, "Enabled", NULL), OBJ_OK);
  assert_int_equal(bucket_empty(f, "bkt"), 0);
}

/* Nothing completes inside the call that started it, including errors found up front. */
static void test_callbacks_async(void **state) {
  fix_t *f = *state;
  res_t r = {0};
  obj_head(f->o, "", "", NULL, on_meta, &r);
  assert_int_equal(res_wait(f, &r, NULL), OBJ_ENOENT);
  up_t u = {0};
  Gureum__ObjectMeta bad = GUREUM__OBJECT_META__INIT; /* no bucket, no key */
  obj_mpu_create(f->o, &bad, on_upload, &u);
  assert_int_equal(u.done, 0);
  run_until(f, &u.done);
  assert_int_equal(u.st, OBJ_EIO);
  /* A write that fits the buffer, a zero-length write, a read at eof. */
  Gureum__ObjectMeta m = GUREUM__OBJECT_META__INIT;
  m.bucket = "bkt";
  m.key = "a";
  obj_writer_t *w = obj_put_begin(f->o, &m, 0);
  done_t d = {0};
  obj_write(w, "abc", 3, on_done, &d);
  assert_int_equal(d.done, 0);
  run_until(f, &d.done);
  d.done = 0;
  obj_write(w, "", 0, on_done, &d);
  assert_int_equal(d.done, 0);
  run_until(f, &d.done);
  r.done = 0;
  obj_put_commit(w, on_meta, &r);
  assert_int_equal(res_wait(f, &r, NULL), OBJ_OK);
  r.done = 0;
  obj_reader_t *rd = obj_get_begin(f->o, "bkt", "a", NULL, on_meta, &r);
  assert_int_equal(res_wait(f, &r, NULL), OBJ_OK);
  obj_reader_range(rd, 3, 0); /* past the end */
  rd_t rr = {0};
  obj_read(rd, on_data, &rr);
  assert_int_equal(rr.done, 0);
  run_until(f, &rr.done);
  assert_int_equal(rr.st, OBJ_ERANGE);
  obj_reader_range(rd, 1, 1);
  rr.done = 0;
  obj_read(rd, on_data, &rr);
  run_until(f, &rr.done);
  assert_int_equal(rr.st, OBJ_OK);
  assert_true(rr.eof);
  assert_memory_equal(rr.buf, "b", 1);
  rr.done = 0;
  obj_read(rd, on_data, &rr); /* after eof: eof again, still asynchronously */
  assert_int_equal(rr.done, 0);
  run_until(f, &rr.done);
  assert_true(rr.eof);
  free(rr.buf);
  obj_reader_free(rd);
  assert_string_equal(obj_strerror(OBJ_ECORRUPT), "data corrupt");
}

/* Eight unversioned writers of one key committing at once: exactly one survives, whole, and no
 * other writer's blocks stay behind. */
static void test_concurrent_unversioned_puts(void **state) {
  fix_t *f = *state;
  enum { N = 8 };
  uint8_t *data[N];
  obj_writer_t *w[N];
  Gureum__ObjectMeta m = GUREUM__OBJECT_META__INIT;
  m.bucket = "bkt";
  m.key = "race";
  for (int i = 0; i < N; i++) {
    data[i] = rand_bytes(BS + 100 * (size_t)i, 50 + (uint64_t)i);
    w[i] = obj_put_begin(f->o, &m, 0);
    assert_int_equal(write_all(f, w[i], data[i], BS + 100 * (size_t)i, BS), OBJ_OK);
  }
  res_t r[N];
  memset(r, 0, sizeof r);
  for (int i = 0; i < N; i++) obj_put_commit(w[i], on_meta, &r[i]);
  for (int i = 0; i < N; i++) {
    run_until(f, &r[i].done);
    assert_int_equal(r[i].st, OBJ_OK);
    meta_free(r[i].meta);
  }
  assert_int_equal(count_keys(f, OBJ_CF_META), 1);
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 2);
  Gureum__ObjectMeta *h = NULL;
  assert_int_equal(head(f, "bkt", "race", NULL, &h), OBJ_OK);
  int winner = (int)((h->size - BS) / 100);
  meta_free(h);
  check_content(f, "bkt", "race", NULL, data[winner], BS + 100 * (size_t)winner);
  for (int i = 0; i < N; i++) free(data[i]);
}

/* S3 accepts an empty last part; reads step over the empty extent. */
static void test_mpu_empty_last_part(void **state) {
  fix_t *f = *state;
  char id[64], e1[64], e2[64];
  uint8_t *p5 = rand_bytes(5 * MIB, 4);
  mpu_create(f, "bkt", "k", id);
  assert_int_equal(put_part(f, "bkt", "k", id, 1, p5, 5 * MIB, e1), OBJ_OK);
  assert_int_equal(put_part(f, "bkt", "k", id, 2, p5, 0, e2), OBJ_OK);
  obj_part_ref_t refs[2] = {{1, e1}, {2, e2}};
  Gureum__ObjectMeta *m = NULL;
  assert_int_equal(mpu_complete(f, "bkt", "k", id, refs, 2, 0, &m), OBJ_OK);
  assert_int_equal(m->size, 5 * MIB);
  assert_string_equal(m->etag + 32, "-2");
  meta_free(m);
  check_content(f, "bkt", "k", NULL, p5, 5 * MIB);
  uint8_t *got = NULL;
  size_t gl = 0;
  assert_int_equal(get_range(f, "bkt", "k", NULL, 5 * MIB - 1, 10, &got, &gl, NULL, NULL), OBJ_OK);
  assert_int_equal(gl, 1);
  assert_int_equal(got[0], p5[5 * MIB - 1]);
  free(got);
  free(p5);
}

/* ---- replication ---- */

/* Versions with a coordinator's identity are stored exactly as told, in timestamp order
 * whatever the arrival order. */
static void test_fixed_identity_put(void **state) {
  fix_t *f = *state;
  Gureum__ObjectMeta *b = put_id(f, "bkt", "k", "newer", 5, "vid-b", 2000000);
  assert_string_equal(b->version_id, "vid-b");
  assert_int_equal(b->ts_us, 2000000);
  assert_int_equal(b->mtime_ms, 2000);
  assert_true(b->is_latest);
  meta_free(b);
  Gureum__ObjectMeta *a = put_id(f, "bkt", "k", "older", 5, "vid-a", 1000000);
  assert_string_equal(a->version_id, "vid-a");
  assert_false(a->is_latest); /* arrived last, but older */
  meta_free(a);
  Gureum__ObjectMeta *h = NULL;
  assert_int_equal(head(f, "bkt", "k", NULL, &h), OBJ_OK);
  assert_string_equal(h->version_id, "vid-b");
  assert_int_equal(h->ts_us, 2000000);
  meta_free(h);
  check_content(f, "bkt", "k", NULL, (const uint8_t *)"newer", 5);
  check_content(f, "bkt", "k", "vid-a", (const uint8_t *)"older", 5);
  ls_t l;
  vlist(f, &l, "bkt", NULL, NULL, NULL, NULL, 0);
  assert_string_equal(l.s, "k@vid-b* k@vid-a");
  /* "null" with a timestamp is the null version, whatever versioned says. */
  Gureum__ObjectMeta *n = put_id(f, "bkt", "k", "plain", 5, "null", 1500000);
  assert_string_equal(n->version_id, "null");
  meta_free(n);
  vlist(f, &l, "bkt", NULL, NULL, NULL, NULL, 0);
  assert_string_equal(l.s, "k@vid-b* k@null k@vid-a");
  /* Local writes (no timestamp) still become the newest version. */
  put_str(f, "bkt", "k", "local", 1);
  check_content(f, "bkt", "k", NULL, (const uint8_t *)"local", 5);
}

/* The same version twice (a coordinator's retry): the first stays, the second's blocks go. */
static void test_fixed_identity_idempotent(void **state) {
  fix_t *f = *state;
  uint8_t *one = rand_bytes(BS + 10, 1), *two = rand_bytes(2 * BS + 10, 2);
  Gureum__ObjectMeta *m1 = put_id(f, "bkt", "k", one, BS + 10, "v1", 1000000);
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 2);
  Gureum__ObjectMeta *m2 = put_id(f, "bkt", "k", two, 2 * BS + 10, "v1", 1000001);
  assert_string_equal(m2->etag, m1->etag); /* what is stored, not the newcomer */
  assert_int_equal(m2->ts_us, 1000000);
  assert_true(m2->is_latest);
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 2);
  assert_int_equal(count_keys(f, OBJ_CF_META), 1);
  check_content(f, "bkt", "k", "v1", one, BS + 10);
  /* A retry is not refused by a condition that the first write made false. */
  Gureum__ObjectMeta m = GUREUM__OBJECT_META__INIT;
  m.bucket = "bkt";
  m.key = "k";
  m.version_id = "v1";
  m.ts_us = 1000000;
  obj_cond_t none = {NULL, "*"};
  obj_writer_t *w = obj_put_begin(f->o, &m, 1);
  assert_int_equal(write_all(f, w, (const uint8_t *)"x", 1, 1), OBJ_OK);
  obj_writer_set_cond(w, &none);
  res_t r = {0};
  obj_put_commit(w, on_meta, &r);
  assert_int_equal(res_wait(f, &r, NULL), OBJ_OK);
  /* ...but a new version is. */
  m.version_id = "v2";
  w = obj_put_begin(f->o, &m, 1);
  assert_int_equal(write_all(f, w, (const uint8_t *)"x", 1, 1), OBJ_OK);
  obj_writer_set_cond(w, &none);
  memset(&r, 0, sizeof r);
  obj_put_commit(w, on_meta, &r);
  assert_int_equal(res_wait(f, &r, NULL), OBJ_EPRECOND);
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 2);
  meta_free(m1);
  meta_free(m2);
  free(one);
  free(two);
}

/* "null": the later timestamp wins in either arrival order; the loser's blocks go. */
static void test_null_lww(void **state) {
  fix_t *f = *state;
  uint8_t *big = rand_bytes(3 * BS, 3);
  /* Newer first: the older newcomer is dropped, yet reported OK as itself. */
  meta_free(put_id(f, "bkt", "a", "new", 3, "null", 2000));
  Gureum__ObjectMeta *m = put_id(f, "bkt", "a", big, 3 * BS, "null", 1000);
  assert_int_equal(m->ts_us, 1000);
  assert_false(m->is_latest);
  meta_free(m);
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 1);
  check_content(f, "bkt", "a", NULL, (const uint8_t *)"new", 3);
  /* Older first: replaced, its blocks freed. */
  meta_free(put_id(f, "bkt", "b", big, 3 * BS, "null", 1000));
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 4);
  meta_free(put_id(f, "bkt", "b", "new", 3, "null", 2000));
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 2);
  check_content(f, "bkt", "b", NULL, (const uint8_t *)"new", 3);
  assert_int_equal(count_keys(f, OBJ_CF_META), 2);
  /* Equal timestamps: the one stored stays. */
  meta_free(put_id(f, "bkt", "b", "dup", 3, "null", 2000));
  check_content(f, "bkt", "b", NULL, (const uint8_t *)"new", 3);
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 2);
  /* A null tombstone at the same ts beats the live record; a live one then does not. */
  assert_int_equal(apply(f, "bkt", "b", "null", 2000, 0, 1, NULL), OBJ_OK);
  assert_int_equal(head(f, "bkt", "b", NULL, NULL), OBJ_ENOENT);
  meta_free(put_id(f, "bkt", "b", "late", 4, "null", 2000));
  assert_int_equal(head(f, "bkt", "b", NULL, NULL), OBJ_ENOENT);
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 1);
  meta_free(put_id(f, "bkt", "b", "later", 5, "null", 2001));
  check_content(f, "bkt", "b", NULL, (const uint8_t *)"later", 5);
  free(big);
}

/* A tombstone beats the live version of its id, whichever arrives first. */
static void test_tombstone_wins(void **state) {
  fix_t *f = *state;
  uint8_t *data = rand_bytes(2 * BS, 4);
  /* Live first. */
  meta_free(put_id(f, "bkt", "t1", data, 2 * BS, "a", 100));
  Gureum__ObjectMeta *m = NULL;
  assert_int_equal(apply(f, "bkt", "t1", "a", 0, 0, 1, &m), OBJ_OK);
  assert_true(m->tombstone);
  assert_int_equal(m->ts_us, 100); /* the killed version's ts */
  assert_int_equal(m->size, 0);
  meta_free(m);
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 0);
  assert_int_equal(head(f, "bkt", "t1", "a", NULL), OBJ_ENOVERSION);
  assert_int_equal(head(f, "bkt", "t1", NULL, NULL), OBJ_ENOENT);
  assert_int_equal(get(f, "bkt", "t1", "a", NULL, NULL), OBJ_ENOVERSION);
  /* Tombstone of a version this replica never saw, then the version: it stays deleted. */
  assert_int_equal(del_at(f, "bkt", "t2", "a", "Enabled", NULL, 0, &m), OBJ_OK);
  assert_string_equal(m->version_id, "a");
  assert_false(m->tombstone); /* the names asked for: nothing live was there */
  meta_free(m);
  Gureum__ObjectMeta *raw = raw_record(f, "bkt", "t2", "a");
  assert_non_null(raw);
  assert_true(raw->tombstone);
  assert_int_equal(raw->ts_us, 0);
  meta_free(raw);
  m = put_id(f, "bkt", "t2", data, 2 * BS, "a", 100);
  assert_true(m->tombstone); /* what survived */
  assert_int_equal(m->ts_us, 100);
  meta_free(m);
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 0);
  assert_int_equal(head(f, "bkt", "t2", NULL, NULL), OBJ_ENOENT);
  raw = raw_record(f, "bkt", "t2", "a");
  assert_true(raw->tombstone);
  assert_int_equal(raw->ts_us, 100); /* now it knows the version's ts */
  meta_free(raw);
  assert_int_equal(count_keys(f, OBJ_CF_META), 2);
  /* A local delete of one version: a tombstone at its ts; what it was is reported. */
  meta_free(put_id(f, "bkt", "t3", "old", 3, "o", 100));
  meta_free(put_id(f, "bkt", "t3", "new", 3, "n", 200));
  assert_int_equal(del(f, "bkt", "t3", "n", "Enabled", &m), OBJ_OK);
  assert_string_equal(m->version_id, "n");
  assert_false(m->tombstone);
  meta_free(m);
  raw = raw_record(f, "bkt", "t3", "n");
  assert_true(raw->tombstone);
  assert_int_equal(raw->ts_us, 200);
  assert_true(raw->mtime_ms > 1000000000000ull); /* local wall clock, for the GC */
  meta_free(raw);
  check_content(f, "bkt", "t3", NULL, (const uint8_t *)"old", 3);
  assert_int_equal(head(f, "bkt", "t3", "o", &m), OBJ_OK);
  assert_true(m->is_latest);
  meta_free(m);
  ls_t l;
  vlist(f, &l, "bkt", NULL, NULL, NULL, NULL, 0);
  assert_string_equal(l.s, "t3@o*");
  free(data);
}

/* delete_at: markers and null tombstones get the coordinator's identity. */
static void test_delete_at(void **state) {
  fix_t *f = *state;
  meta_free(put_id(f, "bkt", "k", "v", 1, "v1", 1000));
  Gureum__ObjectMeta *m = NULL;
  assert_int_equal(del_at(f, "bkt", "k", NULL, "Enabled", "dm-1", 5000, &m), OBJ_OK);
  assert_true(m->delete_marker);
  assert_string_equal(m->version_id, "dm-1");
  assert_int_equal(m->ts_us, 5000);
  assert_true(m->is_latest);
  meta_free(m);
  assert_int_equal(head(f, "bkt", "k", NULL, &m), OBJ_EDELETED);
  assert_string_equal(m->version_id, "dm-1");
  meta_free(m);
  /* The same delete again changes nothing. */
  assert_int_equal(del_at(f, "bkt", "k", NULL, "Enabled", "dm-1", 5000, NULL), OBJ_OK);
  assert_int_equal(count_keys(f, OBJ_CF_META), 2);
  /* Suspended: a null marker at the given ts. */
  assert_int_equal(del_at(f, "bkt", "s", NULL, "Suspended", "ignored", 6000, &m), OBJ_OK);
  assert_true(m->delete_marker);
  assert_string_equal(m->version_id, "null");
  assert_int_equal(m->ts_us, 6000);
  meta_free(m);
  /* Never versioned: a null tombstone at the given ts; an older put stays dropped. */
  meta_free(put_id(f, "bkt", "u", "v", 1, "null", 4000));
  assert_int_equal(del_at(f, "bkt", "u", NULL, "", NULL, 7000, &m), OBJ_OK);
  assert_string_equal(m->version_id, "null"); /* what it replaced */
  assert_int_equal(m->ts_us, 4000);
  meta_free(m);
  meta_free(put_id(f, "bkt", "u", "late", 4, "null", 6500));
  assert_int_equal(head(f, "bkt", "u", NULL, NULL), OBJ_ENOENT);
  Gureum__ObjectMeta *raw = raw_record(f, "bkt", "u", "null");
  assert_true(raw->tombstone);
  assert_int_equal(raw->ts_us, 7000);
  meta_free(raw);
  meta_free(put_id(f, "bkt", "u", "newer", 5, "null", 8000));
  check_content(f, "bkt", "u", NULL, (const uint8_t *)"newer", 5);
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 2);
}

/* An unversioned delete leaves a null tombstone nobody reading can see; a later put shows. */
static void test_unversioned_delete_tombstone(void **state) {
  fix_t *f = *state;
  put_str(f, "bkt", "x", "data", 0);
  Gureum__ObjectMeta *m = NULL;
  assert_int_equal(del(f, "bkt", "x", NULL, "", &m), OBJ_OK);
  meta_free(m);
  Gureum__ObjectMeta *raw = raw_record(f, "bkt", "x", "null");
  assert_non_null(raw);
  assert_true(raw->tombstone);
  meta_free(raw);
  assert_int_equal(head(f, "bkt", "x", NULL, NULL), OBJ_ENOENT);
  assert_int_equal(head(f, "bkt", "x", "null", NULL), OBJ_ENOVERSION);
  ls_t l;
  list(f, &l, "bkt", NULL, NULL, NULL, 0);
  assert_string_equal(l.s, "");
  list(f, &l, "bkt", NULL, "/", NULL, 0);
  assert_string_equal(l.s, "");
  vlist(f, &l, "bkt", NULL, NULL, NULL, NULL, 0);
  assert_string_equal(l.s, "");
  assert_int_equal(bucket_empty(f, "bkt"), 1);
  /* Tombstoned keys under a prefix do not make a common prefix in either listing. */
  put_str(f, "bkt", "d/y", "data", 0);
  assert_int_equal(del(f, "bkt", "d/y", NULL, "", NULL), OBJ_OK);
  put_str(f, "bkt", "z", "z", 0);
  list(f, &l, "bkt", NULL, "/", NULL, 0);
  assert_string_equal(l.s, "z");
  vlist(f, &l, "bkt", NULL, "/", NULL, NULL, 0);
  assert_string_equal(l.s, "z@null*");
  /* A conditional put sees no current object. */
  assert_int_equal(put_cond(f, "x", "again", NULL, "*"), OBJ_OK);
  check_content(f, "bkt", "x", NULL, (const uint8_t *)"again", 5);
  list(f, &l, "bkt", NULL, NULL, NULL, 0);
  assert_string_equal(l.s, "x z");
}

/* apply_record: delete markers with their own identity, and what it refuses. */
static void test_apply_record_markers(void **state) {
  fix_t *f = *state;
  meta_free(put_id(f, "bkt", "k", "v", 1, "v1", 2000));
  Gureum__ObjectMeta *m = NULL;
  assert_int_equal(apply(f, "bkt", "k", "m-old", 1000, 1, 0, &m), OBJ_OK);
  assert_true(m->delete_marker);
  assert_false(m->is_latest);
  assert_int_equal(m->mtime_ms, 1);
  meta_free(m);
  check_content(f, "bkt", "k", NULL, (const uint8_t *)"v", 1);
  assert_int_equal(apply(f, "bkt", "k", "m-new", 3000, 1, 0, &m), OBJ_OK);
  assert_true(m->is_latest);
  meta_free(m);
  assert_int_equal(head(f, "bkt", "k", NULL, NULL), OBJ_EDELETED);
  assert_int_equal(apply(f, "bkt", "k", "m-new", 3000, 1, 0, NULL), OBJ_OK); /* again */
  ls_t l;
  vlist(f, &l, "bkt", NULL, NULL, NULL, NULL, 0);
  assert_string_equal(l.s, "k@m-new*~ k@v1 k@m-old~");
  /* A tombstone for the newest marker brings the object back. */
  assert_int_equal(apply(f, "bkt", "k", "m-new", 0, 1, 1, &m), OBJ_OK);
  assert_true(m->tombstone);
  assert_int_equal(m->ts_us, 3000);
  meta_free(m);
  check_content(f, "bkt", "k", NULL, (const uint8_t *)"v", 1);
  /* Null markers follow last-writer-wins. */
  assert_int_equal(apply(f, "bkt", "n", "null", 500, 1, 0, NULL), OBJ_OK);
  meta_free(put_id(f, "bkt", "n", "v", 1, "null", 400));
  assert_int_equal(head(f, "bkt", "n", NULL, NULL), OBJ_EDELETED);
  /* Live records, markers without a ts, and unnamed records are not for apply. */
  assert_int_equal(apply(f, "bkt", "k", "live", 4000, 0, 0, NULL), OBJ_EIO);
  assert_int_equal(apply(f, "bkt", "k", "m", 0, 1, 0, NULL), OBJ_EIO);
  assert_int_equal(apply(f, "bkt", "k", "", 4000, 1, 0, NULL), OBJ_EIO);
  assert_int_equal(apply(f, "bkt", "", "m", 4000, 1, 0, NULL), OBJ_EIO);
}

static obj_status_t mpu_create_id(fix_t *f, const char *bucket, const char *key, const char *id,
                                  char out[64]) {
  Gureum__ObjectMeta m = GUREUM__OBJECT_META__INIT;
  m.bucket = (char *)bucket;
  m.key = (char *)key;
  m.version_id = (char *)id;
  m.content_type = "text/plain";
  up_t u = {0};
  obj_mpu_create(f->o, &m, on_upload, &u);
  assert_int_equal(u.done, 0);
  run_until(f, &u.done);
  if (out) memcpy(out, u.id, 64);
  return u.st;
}

static obj_status_t mpu_complete_at(fix_t *f, const char *key, const char *id,
                                    const obj_part_ref_t *parts, size_t n, const char *vid,
                                    uint64_t ts, Gureum__ObjectMeta **meta) {
  obj_ident_t ident = {vid, ts};
  res_t r = {0};
  obj_mpu_complete(f->o, "bkt", key, id, parts, n, 0, NULL, &ident, on_meta, &r);
  return res_wait(f, &r, meta);
}

/* Upload ids and completed versions chosen by the coordinator. */
static void test_mpu_fixed_identity(void **state) {
  fix_t *f = *state;
  const char *id = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
  char got[64], e1[64], e2[64];
  assert_int_equal(mpu_create_id(f, "bkt", "mp", id, got), OBJ_OK);
  assert_string_equal(got, id);
  assert_int_equal(mpu_create_id(f, "bkt", "mp", id, got), OBJ_OK); /* a retry */
  pl_t pl;
  list_uploads(f, &pl, "bkt", NULL, NULL, NULL, 0);
  assert_int_equal(pl.n, 1);
  assert_string_equal(pl.ids[0], id);
  assert_int_equal(mpu_create_id(f, "bkt", "mp", "short", NULL), OBJ_EIO);
  assert_int_equal(mpu_create_id(f, "bkt", "mp", "ABCDEFGHIJKLMNOPQRSTUVWXYZ01234/", NULL),
                   OBJ_EIO);
  uint8_t *p5 = rand_bytes(5 * MIB, 5);
  assert_int_equal(put_part(f, "bkt", "mp", id, 1, p5, 5 * MIB, e1), OBJ_OK);
  assert_int_equal(put_part(f, "bkt", "mp", id, 2, (const uint8_t *)"tail", 4, e2), OBJ_OK);
  obj_part_ref_t refs[2] = {{1, e1}, {2, e2}};
  Gureum__ObjectMeta *m = NULL;
  assert_int_equal(mpu_complete_at(f, "mp", id, refs, 2, "ver-1", 9000, &m), OBJ_OK);
  assert_string_equal(m->version_id, "ver-1");
  assert_int_equal(m->ts_us, 9000);
  assert_int_equal(m->size, 5 * MIB + 4);
  assert_string_equal(m->content_type, "text/plain");
  char etag[64];
  snprintf(etag, sizeof etag, "%s", m->etag);
  meta_free(m);
  /* Completing again once the upload is gone: the version it made. */
  assert_int_equal(mpu_complete_at(f, "mp", id, refs, 2, "ver-1", 9000, &m), OBJ_OK);
  assert_string_equal(m->etag, etag);
  meta_free(m);
  assert_int_equal(mpu_complete_at(f, "mp", id, refs, 2, "ver-2", 9000, NULL), OBJ_ENOUPLOAD);
  assert_int_equal(count_keys(f, OBJ_CF_MPU), 0);
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 6);
  uint8_t *all = malloc(5 * MIB + 4);
  memcpy(all, p5, 5 * MIB);
  memcpy(all + 5 * MIB, "tail", 4);
  check_content(f, "bkt", "mp", "ver-1", all, 5 * MIB + 4);
  /* A null complete older than the null version here is dropped with its parts' blocks. */
  meta_free(put_id(f, "bkt", "mp2", "newer", 5, "null", 5000));
  assert_int_equal(mpu_create_id(f, "bkt", "mp2", "ABCDEFGHIJKLMNOPQRSTUVWXYZ000000", got),
                   OBJ_OK);
  assert_int_equal(put_part(f, "bkt", "mp2", got, 1, p5, 5 * MIB, e1), OBJ_OK);
  obj_part_ref_t one[1] = {{1, e1}};
  assert_int_equal(mpu_complete_at(f, "mp2", got, one, 1, "null", 4000, &m), OBJ_OK);
  assert_int_equal(m->ts_us, 4000);
  meta_free(m);
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 7);
  check_content(f, "bkt", "mp2", NULL, (const uint8_t *)"newer", 5);
  assert_int_equal(count_keys(f, OBJ_CF_MPU), 0);
  free(all);
  free(p5);
}

/* The writes of the digest test, in two orders. */
static void digest_writes(fix_t *f, int order) {
  if (order == 0) {
    meta_free(put_id(f, "bkt", "a", "one", 3, "v1", 100));
    meta_free(put_id(f, "bkt", "a", "two", 3, "v2", 200));
    assert_int_equal(del_at(f, "bkt", "a", "v1", "Enabled", NULL, 0, NULL), OBJ_OK);
    meta_free(put_id(f, "bkt", "b", "x", 1, "null", 250));
    meta_free(put_id(f, "bkt", "b", "y", 1, "null", 300));
    assert_int_equal(apply(f, "bkt", "c", "m1", 150, 1, 0, NULL), OBJ_OK);
    meta_free(put_id(f, "bkt", "d", "old", 3, "null", 400));
    assert_int_equal(del_at(f, "bkt", "d", NULL, "", NULL, 500, NULL), OBJ_OK);
    meta_free(put_id(f, "other", "a", "zz", 2, "null", 10));
  } else {
    meta_free(put_id(f, "other", "a", "zz", 2, "null", 10));
    assert_int_equal(del_at(f, "bkt", "d", NULL, "", NULL, 500, NULL), OBJ_OK);
    meta_free(put_id(f, "bkt", "d", "old", 3, "null", 400));
    assert_int_equal(apply(f, "bkt", "c", "m1", 150, 1, 0, NULL), OBJ_OK);
    meta_free(put_id(f, "bkt", "b", "y", 1, "null", 300));
    meta_free(put_id(f, "bkt", "b", "x", 1, "null", 250));
    assert_int_equal(apply(f, "bkt", "a", "v1", 0, 0, 1, NULL), OBJ_OK);
    meta_free(put_id(f, "bkt", "a", "two", 3, "v2", 200));
    meta_free(put_id(f, "bkt", "a", "one", 3, "v1", 100));
  }
}

/* Two replicas (two stores) with the same writes in different orders agree; one record less
 * shows in exactly its partition. */
static void test_digests(void **state) {
  fix_t *f = *state, *g = NULL;
  assert_int_equal(setup((void **)&g), 0);
  digest_writes(f, 0);
  digest_writes(g, 1);
  obj_digests_t *df = malloc(sizeof *df), *dg = malloc(sizeof *dg);
  digests(f, df);
  digests(g, dg);
  assert_memory_equal(df, dg, sizeof *df);
  uint32_t pa = obj_partition("bkt", "a"), pb = obj_partition("bkt", "b");
  uint64_t records = 0, objects = 0, bytes = 0;
  for (int i = 0; i < OBJ_PARTITIONS; i++) {
    records += df->records[i];
    objects += df->objects[i];
    bytes += df->bytes[i];
  }
  assert_int_equal(records, 6); /* a: v2, v1 tombstone; b; c marker; d tombstone; other/a */
  assert_int_equal(objects, 3);
  assert_int_equal(bytes, 3 + 1 + 2);
  assert_true(df->records[pa] >= 2);
  /* Tags are not part of it. */
  const Gureum__KeyValue kv = {PROTOBUF_C_MESSAGE_INIT(&gureum__key_value__descriptor), "t", "v"};
  const Gureum__KeyValue *tags[1] = {&kv};
  res_t r = {0};
  obj_set_tags(f->o, "bkt", "b", NULL, tags, 1, on_meta, &r);
  assert_int_equal(res_wait(f, &r, NULL), OBJ_OK);
  digests(f, df);
  assert_memory_equal(df, dg, sizeof *df);
  /* One more record on one side: only its partition differs. */
  assert_int_equal(apply(f, "bkt", "b", "m9", 9000, 1, 0, NULL), OBJ_OK);
  digests(f, df);
  assert_memory_not_equal(df->digest[pb], dg->digest[pb], 16);
  assert_int_equal(df->records[pb], dg->records[pb] + 1);
  for (uint32_t i = 0; i < OBJ_PARTITIONS; i++)
    if (i != pb) assert_memory_equal(df->digest[i], dg->digest[i], 16);
  /* A different ts on a null version differs too. */
  meta_free(put_id(g, "bkt", "b", "w", 1, "null", 301));
  digests(g, dg);
  assert_int_equal(df->records[pb], dg->records[pb] + 1);
  free(df);
  free(dg);
  assert_int_equal(teardown((void **)&g), 0);
}

static void test_partitions(void **state) {
  fix_t *f = *state;
  /* First byte of SHA-256("b\0k"), by hand and as a known value. */
  uint8_t d[32];
  assert_int_equal(EVP_Digest("b\0k", 3, d, NULL, EVP_sha256(), NULL), 1);
  assert_int_equal(obj_partition("b", "k"), d[0]);
  assert_int_equal(obj_partition("b", "k"), 38);
  assert_int_equal(obj_partition("bkt", "key"), 14);
  /* k0 and k1 share partition 8, k2 is in 23. */
  assert_int_equal(obj_partition("bkt", "k0"), 8);
  assert_int_equal(obj_partition("bkt", "k1"), 8);
  assert_int_equal(obj_partition("bkt", "k2"), 23);
  uint8_t *data = rand_bytes(2 * BS, 6);
  meta_free(put_id(f, "bkt", "k0", data, 2 * BS, "a", 100));
  meta_free(put_id(f, "bkt", "k0", "b", 1, "b", 200));
  assert_int_equal(del_at(f, "bkt", "k0", NULL, "Enabled", "c", 300, NULL), OBJ_OK);
  assert_int_equal(del_at(f, "bkt", "k0", "b", "Enabled", NULL, 0, NULL), OBJ_OK);
  meta_free(put_id(f, "bkt", "k1", "x", 1, "null", 50));
  meta_free(put_id(f, "bkt", "k2", data, 2 * BS, "null", 60));
  char id[64], e[64];
  mpu_create(f, "bkt", "k1", id);
  assert_int_equal(put_part(f, "bkt", "k1", id, 1, data, BS, e), OBJ_OK);
  mpu_create(f, "bkt", "k2", id);
  assert_int_equal(put_part(f, "bkt", "k2", id, 1, data, 10, e), OBJ_OK);

  rep_t r;
  partition_records(f, 8, &r);
  assert_string_equal(r.s, "k0@c:300~* k0@b:200x k0@a:100 k1@null:50*");
  partition_records(f, 23, &r);
  assert_string_equal(r.s, "k2@null:60*");
  partition_records(f, 9, &r);
  assert_int_equal(r.n, 0);

  assert_int_equal(count_keys(f, OBJ_CF_DATA), 2 + 1 + 2 + 1 + 1);
  assert_int_equal(partition_drop(f, 8), OBJ_OK);
  partition_records(f, 8, &r);
  assert_int_equal(r.n, 0);
  assert_int_equal(count_keys(f, OBJ_CF_META), 1);
  assert_int_equal(count_keys(f, OBJ_CF_DATA), 2 + 1); /* k2's object and upload part */
  pl_t pl;
  list_uploads(f, &pl, "bkt", NULL, NULL, NULL, 0);
  assert_int_equal(pl.n, 1);
  assert_string_equal(pl.keys[0], "k2");
  check_content(f, "bkt", "k2", NULL, data, 2 * BS);
  assert_int_equal(head(f, "bkt", "k0", NULL, NULL), OBJ_ENOENT);
  free(data);
}

static void test_gc_tombstones(void **state) {
  fix_t *f = *state;
  put_str(f, "bkt", "u", "x", 0);
  assert_int_equal(del(f, "bkt", "u", NULL, "", NULL), OBJ_OK);
  meta_free(put_id(f, "bkt", "v", "x", 1, "a", 100));
  meta_free(put_id(f, "bkt", "v", "y", 1, "b", 200));
  assert_int_equal(del(f, "bkt", "v", "a", "Enabled", NULL), OBJ_OK);
  assert_int_equal(del(f, "bkt", "w", NULL, "Enabled", NULL), OBJ_OK); /* a marker stays */
  assert_int_equal(count_keys(f, OBJ_CF_META), 4);
  assert_int_equal(gc_tombstones(f, 1), 0); /* all younger than that */
  assert_int_equal(count_keys(f, OBJ_CF_META), 4);
  assert_int_equal(gc_tombstones(f, UINT64_MAX), 2);
  assert_int_equal(count_keys(f, OBJ_CF_META), 2);
  check_content(f, "bkt", "v", NULL, (const uint8_t *)"y", 1);
  assert_int_equal(head(f, "bkt", "w", NULL, NULL), OBJ_EDELETED);
  assert_int_equal(gc_tombstones(f, UINT64_MAX), 0);
}

/* Scrub finds a flipped and a missing block; repair puts the bytes back. */
static void test_scrub_repair(void **state) {
  fix_t *f = *state;
  size_t n = 2 * BS + 100;
  uint8_t *data = rand_bytes(n, 7), *p5 = rand_bytes(5 * MIB, 8);
  for (int i = 0; i < 5; i++) {
    char key[16];
    snprintf(key, sizeof key, "fine%d", i);
    put_str(f, "bkt", key, key, 1);
  }
  meta_free(put_id(f, "bkt", "obj", data, n, "v1", 100));
  char id[64], e1[64], e2[64];
  mpu_create(f, "bkt", "mp", id);
  assert_int_equal(put_part(f, "bkt", "mp", id, 1, p5, 5 * MIB, e1), OBJ_OK);
  assert_int_equal(put_part(f, "bkt", "mp", id, 2, data, 300, e2), OBJ_OK);
  obj_part_ref_t refs[2] = {{1, e1}, {2, e2}};
  assert_int_equal(mpu_complete(f, "bkt", "mp", id, refs, 2, 0, NULL), OBJ_OK);
  assert_int_equal(del(f, "bkt", "fine0", NULL, "Enabled", NULL), OBJ_OK); /* a marker */

  scrub_res_t r;
  assert_int_equal(scrub_all(f, 100, &r), 1);
  assert_int_equal(r.nbad, 0);

  assert_int_equal(debug_corrupt(f, "bkt", "obj", "v1", BS), OBJ_OK);
  assert_int_equal(get(f, "bkt", "obj", "v1", NULL, NULL), OBJ_ECORRUPT);
  Gureum__ObjectMeta *m = NULL;
  assert_int_equal(head(f, "bkt", "obj", "v1", &m), OBJ_OK);
  store_cf_t *cf = store_cf(f->s, OBJ_CF_DATA, NULL);
  uint8_t k[OBJ_BLOCK_KEY_LEN];
  obj_block_key(k, m->data_id.data, 2);
  assert_int_equal(store_delete(f->s, cf, k, sizeof k, 0, NULL), STORE_OK);
  meta_free(m);
  assert_int_equal(debug_corrupt(f, "bkt", "mp", "null", 5 * MIB), OBJ_OK); /* part 2 */
  assert_int_equal(debug_corrupt(f, "bkt", "obj", "v1", 2 * BS), OBJ_ECORRUPT); /* gone */
  assert_int_equal(debug_corrupt(f, "bkt", "obj", "v1", 10), OBJ_ERANGE);

  /* Two versions a step: the cursor carries on and the same bad blocks turn up. */
  int steps = scrub_all(f, 2, &r);
  assert_true(steps >= 4);
  assert_int_equal(r.nbad, 3);
  assert_string_equal(r.bad[0], "bkt/mp@null+5242880/300");
  char want[160];
  snprintf(want, sizeof want, "bkt/obj@v1+%u/%u", BS, BS);
  assert_string_equal(r.bad[1], want);
  snprintf(want, sizeof want, "bkt/obj@v1+%u/100", 2 * BS);
  assert_string_equal(r.bad[2], want);

  /* Wrong lengths and offsets are refused; the right ones repair. */
  assert_int_equal(block_repair(f, "bkt", "obj", "v1", BS, data + BS, 99), OBJ_ERANGE);
  assert_int_equal(block_repair(f, "bkt", "obj", "v1", BS + 1, data + BS, BS), OBJ_ERANGE);
  assert_int_equal(block_repair(f, "bkt", "obj", "v1", n, data, 1), OBJ_ERANGE);
  assert_int_equal(block_repair(f, "bkt", "obj", "v1", 0, data, BS + 1), OBJ_ERANGE);
  assert_int_equal(block_repair(f, "bkt", "obj", "nosuch", 0, data, BS), OBJ_ENOVERSION);
  assert_int_equal(block_repair(f, "bkt", "obj", "v1", BS, data + BS, BS), OBJ_OK);
  assert_int_equal(block_repair(f, "bkt", "obj", "v1", 2 * BS, data + 2 * BS, 100), OBJ_OK);
  assert_int_equal(block_repair(f, "bkt", "mp", "null", 5 * MIB, data, 300), OBJ_OK);
  assert_int_equal(scrub_all(f, 1000, &r), 1);
  assert_int_equal(r.nbad, 0);
  check_content(f, "bkt", "obj", "v1", data, n);
  uint8_t *all = malloc(5 * MIB + 300);
  memcpy(all, p5, 5 * MIB);
  memcpy(all + 5 * MIB, data, 300);
  check_content(f, "bkt", "mp", NULL, all, 5 * MIB + 300);
  /* A cursor whose version went meanwhile restarts at its key. */
  memset(&r, 0, sizeof r);
  obj_scrub(f->o, "bkt", "obj", "gone", 1, on_scrub, &r);
  run_until(f, &r.done);
  assert_int_equal(r.st, OBJ_OK);
  assert_string_equal(r.nk, "obj");
  assert_string_equal(r.nv, "v1");
  free(all);
  free(data);
  free(p5);
}

int main(void) {
  log_set_level(LOG_ERROR);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_crc32c),
      cmocka_unit_test_setup_teardown(test_put_get_sizes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_writer_md5, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ranges, setup, teardown),
      cmocka_unit_test_setup_teardown(test_range_beyond_end, setup, teardown),
      cmocka_unit_test_setup_teardown(test_versioned_puts, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unversioned_replace_no_orphans, setup, teardown),
      cmocka_unit_test_setup_teardown(test_delete_enabled, setup, teardown),
      cmocka_unit_test_setup_teardown(test_delete_suspended, setup, teardown),
      cmocka_unit_test_setup_teardown(test_delete_unversioned, setup, teardown),
      cmocka_unit_test_setup_teardown(test_list_prefix_delimiter, setup, teardown),
      cmocka_unit_test_setup_teardown(test_list_pagination, setup, teardown),
      cmocka_unit_test_setup_teardown(test_list_prefix_only_markers, setup, teardown),
      cmocka_unit_test_setup_teardown(test_conditional_put, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tombstones_for_reads, setup, teardown),
      cmocka_unit_test_setup_teardown(test_list_versions, setup, teardown),
      cmocka_unit_test_setup_teardown(test_mpu_happy_path, setup, teardown),
      cmocka_unit_test_setup_teardown(test_mpu_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_mpu_replace_part, setup, teardown),
      cmocka_unit_test_setup_teardown(test_mpu_abort, setup, teardown),
      cmocka_unit_test_setup_teardown(test_mpu_list, setup, teardown),
      cmocka_unit_test_setup_teardown(test_corrupt_block, setup, teardown),
      cmocka_unit_test_setup_teardown(test_restart, setup, teardown),
      cmocka_unit_test_setup_teardown(test_writer_memory_bounded, setup, teardown),
      cmocka_unit_test_setup_teardown(test_writer_abort, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reader_free_in_flight, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tags, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bucket_is_empty, setup, teardown),
      cmocka_unit_test_setup_teardown(test_callbacks_async, setup, teardown),
      cmocka_unit_test_setup_teardown(test_concurrent_unversioned_puts, setup, teardown),
      cmocka_unit_test_setup_teardown(test_mpu_empty_last_part, setup, teardown),
      cmocka_unit_test_setup_teardown(test_fixed_identity_put, setup, teardown),
      cmocka_unit_test_setup_teardown(test_fixed_identity_idempotent, setup, teardown),
      cmocka_unit_test_setup_teardown(test_null_lww, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tombstone_wins, setup, teardown),
      cmocka_unit_test_setup_teardown(test_delete_at, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unversioned_delete_tombstone, setup, teardown),
      cmocka_unit_test_setup_teardown(test_apply_record_markers, setup, teardown),
      cmocka_unit_test_setup_teardown(test_mpu_fixed_identity, setup, teardown),
      cmocka_unit_test_setup_teardown(test_digests, setup, teardown),
      cmocka_unit_test_setup_teardown(test_partitions, setup, teardown),
      cmocka_unit_test_setup_teardown(test_gc_tombstones, setup, teardown),
      cmocka_unit_test_setup_teardown(test_scrub_repair, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
