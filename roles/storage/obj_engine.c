/* obj_engine.c - the object layer's blocking half over RocksDB: version records, checksummed
 * blocks, multipart records and listings. Worker threads only; obj_engine.h describes the keys. */
#include "obj_engine.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "log.h"

#define OBJ_STRIPES 64     /* per-key locks: writers of one key serialise, others do not */
#define OBJ_GC_BATCH 4096  /* block deletes per write batch (4 GiB of data) */

struct obj_engine_s {
  store_t *store;
  store_cf_t *meta, *data, *mpu;
  pthread_mutex_t stripes[OBJ_STRIPES];
  _Atomic uint64_t last_ts; /* version timestamps (us) never repeat or go back */
};

/* ---- small helpers ---- */

/* A growable byte buffer for keys; a failed allocation sticks in `oom` and is checked once. */
typedef struct {
  uint8_t *p;
  size_t n, cap;
  int oom;
} obj_buf_t;

static void buf_add(obj_buf_t *b, const void *d, size_t n) {
  if (b->oom) return;
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap : 128;
    while (cap < b->n + n) cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->n, d, n);
  b->n += n;
}

static void buf_str(obj_buf_t *b, const char *s) { buf_add(b, s, strlen(s) + 1); }

static void buf_byte(obj_buf_t *b, uint8_t c) { buf_add(b, &c, 1); }

static void be64_put(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}

static uint64_t be64_get(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
  return v;
}

static void be32_put(uint8_t *p, uint32_t v) {
  for (int i = 3; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}

static uint32_t be32_get(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void buf_be64(obj_buf_t *b, uint64_t v) {
  uint8_t t[8];
  be64_put(t, v);
  buf_add(b, t, 8);
}

/* The first key after every key that starts with b: drop trailing 0xff bytes, bump the last.
 * Our prefixes always hold a NUL separator, so this never runs out of bytes. */
static void buf_successor(obj_buf_t *b) {
  while (b->n && b->p[b->n - 1] == 0xff) b->n--;
  if (b->n) b->p[b->n - 1]++;
}

static int has_prefix(const uint8_t *k, size_t kl, const obj_buf_t *pre) {
  return kl >= pre->n && memcmp(k, pre->p, pre->n) == 0;
}

/* Byte-wise comparison of a counted string with a C string, as RocksDB orders keys. */
static int bcmp_str(const uint8_t *a, size_t al, const char *b) {
  size_t bl = strlen(b);
  int c = memcmp(a, b, al < bl ? al : bl);
  if (c) return c;
  return al < bl ? -1 : al > bl;
}

static uint64_t now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

/* Strictly increasing across the process and above `floor` (the key's newest version), so a
 * new version sorts first even if the clock stepped back since the last one was written. */
static uint64_t next_ts(obj_engine_t *e, uint64_t floor) {
  uint64_t now = now_us(), last = atomic_load(&e->last_ts), ts;
  do {
    ts = now;
    if (ts <= last) ts = last + 1;
    if (ts <= floor) ts = floor + 1;
  } while (!atomic_compare_exchange_weak(&e->last_ts, &last, ts));
  return ts;
}

static pthread_mutex_t *stripe(obj_engine_t *e, const char *bucket, const char *key) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a over bucket \0 key */
  for (const char *p = bucket; *p; p++) h = (h ^ (uint8_t)*p) * 1099511628211ull;
  h *= 1099511628211ull;
  for (const char *p = key; *p; p++) h = (h ^ (uint8_t)*p) * 1099511628211ull;
  return &e->stripes[h % OBJ_STRIPES];
}

static obj_status_t batch_write(obj_engine_t *e, store_batch_t *b, int sync) {
  char *err = NULL;
  if (store_write(e->store, b, sync, &err) == STORE_OK) return OBJ_OK;
  log_error("obj", "write_failed", "err=\"%s\"", err ? err : "?");
  free(err);
  return OBJ_EIO;
}

static obj_status_t iter_status(const store_iter_t *it) {
  char *err = NULL;
  if (store_iter_status(it, &err) == 0) return OBJ_OK;
  log_error("obj", "iter_failed", "err=\"%s\"", err ? err : "?");
  free(err);
  return OBJ_EIO;
}

static int md5(const void *p, size_t n, uint8_t out[16]) {
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  int ok = c && EVP_DigestInit_ex(c, EVP_md5(), NULL) && EVP_DigestUpdate(c, p, n) &&
           EVP_DigestFinal_ex(c, out, NULL);
  EVP_MD_CTX_free(c);
  return ok ? 0 : -1;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Exactly 2n hex digits into n bytes. */
static int unhex(const char *s, uint8_t *out, size_t n) {
  for (size_t i = 0; i < n; i++) {
    int hi = hexval(s[2 * i]), lo = hi < 0 ? -1 : hexval(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return -1;
    out[i] = (uint8_t)(hi << 4 | lo);
  }
  return s[2 * n] == '\0' ? 0 : -1;
}

void obj_hex(char *out, const uint8_t *in, size_t n) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 15];
  }
  out[2 * n] = '\0';
}

/* ---- CRC32C (Castagnoli), slicing by 8 ---- */

static uint32_t crc_tab[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
    crc_tab[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; i++)
    for (int t = 1; t < 8; t++)
      crc_tab[t][i] = (crc_tab[t - 1][i] >> 8) ^ crc_tab[0][crc_tab[t - 1][i] & 0xff];
}

static uint32_t le32(const uint8_t *p) {
  return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint32_t obj_crc32c(uint32_t crc, const void *buf, size_t len) {
  pthread_once(&crc_once, crc_init);
  const uint8_t *p = buf;
  crc = ~crc;
  for (; len >= 8; p += 8, len -= 8) {
    uint32_t lo = crc ^ le32(p), hi = le32(p + 4);
    crc = crc_tab[7][lo & 0xff] ^ crc_tab[6][(lo >> 8) & 0xff] ^ crc_tab[5][(lo >> 16) & 0xff] ^
          crc_tab[4][lo >> 24] ^ crc_tab[3][hi & 0xff] ^ crc_tab[2][(hi >> 8) & 0xff] ^
          crc_tab[1][(hi >> 16) & 0xff] ^ crc_tab[0][hi >> 24];
  }
  while (len--) crc = crc_tab[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return ~crc;
}

/* ---- ids ---- */

void obj_random_bytes(void *buf, size_t len) {
  uint8_t *p = buf;
  while (len) {
    ssize_t r = getrandom(p, len, 0);
    if (r > 0) {
      p += r;
      len -= (size_t)r;
    } else if (r < 0 && errno != EINTR) {
      /* Data ids must never collide: without a random source there is no safe way on. */
      if (RAND_bytes(p, (int)len) == 1) return;
      log_error("obj", "no_randomness", "errno=%d", errno);
      abort();
    }
  }
}

void obj_random_uid(char out[OBJ_UID_LEN + 1]) {
  static const char a[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  size_t n = 0;
  while (n < OBJ_UID_LEN) {
    uint8_t r[OBJ_UID_LEN];
    obj_random_bytes(r, sizeof r);
    /* 248 = 4 * 62: rejecting the rest keeps every character equally likely. */
    for (size_t i = 0; i < sizeof r && n < OBJ_UID_LEN; i++)
      if (r[i] < 248) out[n++] = a[r[i] % 62];
  }
  out[n] = '\0';
}

/* ---- records ---- */

int obj_meta_extents(const Gureum__ObjectMeta *m, const uint8_t **ids, const uint64_t **sizes,
                     size_t *n) {
  *ids = NULL;
  *sizes = NULL;
  *n = 0;
  if (m->delete_marker || m->tombstone) return 0;
  if (m->n_part_sizes) {
    if (m->data_id.len != m->n_part_sizes * OBJ_ID_LEN) return -1;
    *n = m->n_part_sizes;
    *sizes = m->part_sizes;
  } else {
    if (m->data_id.len != OBJ_ID_LEN) return m->size ? -1 : 0;
    *n = 1;
    *sizes = &m->size;
  }
  *ids = m->data_id.data;
  return 0;
}

static uint8_t *meta_pack(const Gureum__ObjectMeta *m, size_t *len) {
  *len = gureum__object_meta__get_packed_size(m);
  uint8_t *p = malloc(*len ? *len : 1);
  if (p) gureum__object_meta__pack(m, p);
  return p;
}

Gureum__ObjectMeta *obj_meta_dup(const Gureum__ObjectMeta *m) {
  size_t n;
  uint8_t *p = meta_pack(m, &n);
  Gureum__ObjectMeta *c = p ? gureum__object_meta__unpack(NULL, n, p) : NULL;
  free(p);
  return c;
}

/* What a delete of something absent reports: just the names asked for. */
static Gureum__ObjectMeta *meta_stub(const char *bucket, const char *key, const char *vid) {
  Gureum__ObjectMeta m = GUREUM__OBJECT_META__INIT;
  m.bucket = (char *)bucket;
  m.key = (char *)key;
  if (vid) m.version_id = (char *)vid;
  return obj_meta_dup(&m);
}

/* ---- keys ---- */

/* bucket \0 key \0: the prefix of every version of one key. */
static void key_versions(obj_buf_t *b, const char *bucket, const char *key) {
  b->n = 0;
  buf_str(b, bucket);
  buf_str(b, key);
}

typedef struct {
  const uint8_t *key; /* the object key inside a meta key (not NUL-terminated) */
  size_t kl;
  uint64_t ts;
  const uint8_t *vid;
  size_t vl;
} obj_mkey_t;

static int in_bucket(const uint8_t *k, size_t kl, const char *bucket, size_t bl) {
  return kl > bl && memcmp(k, bucket, bl) == 0 && k[bl] == 0;
}

/* Splits bucket \0 key \0 be64(~ts) vid; the caller checked the bucket part. */
static int mkey_parse(const uint8_t *k, size_t kl, size_t bl, obj_mkey_t *out) {
  const uint8_t *p = k + bl + 1, *end = k + kl;
  const uint8_t *z = memchr(p, 0, (size_t)(end - p));
  if (!z || end - (z + 1) < 8) return -1;
  out->key = p;
  out->kl = (size_t)(z - p);
  out->ts = ~be64_get(z + 1);
  out->vid = z + 9;
  out->vl = (size_t)(end - out->vid);
  return 0;
}

void obj_block_key(uint8_t out[OBJ_BLOCK_KEY_LEN], const uint8_t *id, uint64_t idx) {
  memcpy(out, id, OBJ_ID_LEN);
  be64_put(out + OBJ_ID_LEN, idx);
}

static void key_upload(obj_buf_t *b, const char *bucket, const char *key, const char *uid) {
  b->n = 0;
  buf_byte(b, 'U');
  buf_str(b, bucket);
  buf_str(b, key);
  buf_add(b, uid, strlen(uid));
}

#define OBJ_PART_KEY_LEN (1 + OBJ_UID_LEN + 4)
static void key_part(uint8_t out[OBJ_PART_KEY_LEN], const char *uid, uint32_t pn) {
  out[0] = 'P';
  memcpy(out + 1, uid, OBJ_UID_LEN);
  be32_put(out + 1 + OBJ_UID_LEN, pn);
}

/* ---- freeing blocks ---- */

static uint64_t nblocks_of(uint64_t size) {
  return size / OBJ_BLOCK_SIZE + (size % OBJ_BLOCK_SIZE != 0);
}

typedef struct {
  uint8_t id[OBJ_ID_LEN];
  uint64_t nblocks;
} obj_ext_t;

/* Blocks to delete once the records pointing at them are gone; i/blk is how far we got. */
typedef struct {
  obj_ext_t *v;
  size_t n, cap, i;
  uint64_t blk;
} obj_gc_t;

static void gc_add(obj_gc_t *g, const uint8_t *id, uint64_t nblocks) {
  if (!nblocks) return;
  if (g->n == g->cap) {
    size_t cap = g->cap ? g->cap * 2 : 4;
    obj_ext_t *v = realloc(g->v, cap * sizeof *v);
    if (!v) {
      log_error("obj", "gc_oom", "nblocks=%llu", (unsigned long long)nblocks);
      return; /* the blocks stay behind as garbage; the records are still consistent */
    }
    g->v = v;
    g->cap = cap;
  }
  memcpy(g->v[g->n].id, id, OBJ_ID_LEN);
  g->v[g->n++].nblocks = nblocks;
}

static void gc_add_meta(obj_gc_t *g, const Gureum__ObjectMeta *m) {
  const uint8_t *ids;
  const uint64_t *sizes;
  size_t n;
  if (obj_meta_extents(m, &ids, &sizes, &n) != 0) {
    log_warn("obj", "bad_extents", "bucket=%s key=%s version=%s", m->bucket, m->key,
             m->version_id);
    return;
  }
  for (size_t i = 0; i < n; i++) gc_add(g, ids + i * OBJ_ID_LEN, nblocks_of(sizes[i]));
}

static void gc_add_part(obj_gc_t *g, const Gureum__UploadPart *p) {
  if (p->data_id.len == OBJ_ID_LEN) gc_add(g, p->data_id.data, nblocks_of(p->size));
}

static int gc_done(obj_gc_t *g) {
  while (g->i < g->n && g->blk >= g->v[g->i].nblocks) {
    g->i++;
    g->blk = 0;
  }
  return g->i >= g->n;
}

/* Adds up to `limit` block deletes to b, resuming where the previous call stopped. */
static void gc_fill(obj_engine_t *e, obj_gc_t *g, store_batch_t *b, size_t limit) {
  for (size_t added = 0; added < limit && !gc_done(g); added++) {
    uint8_t k[OBJ_BLOCK_KEY_LEN];
    obj_block_key(k, g->v[g->i].id, g->blk++);
    store_batch_delete(b, e->data, k, sizeof k);
  }
}

/* The rest, a batch at a time: no lock held, nothing refers to these blocks any more. */
static obj_status_t gc_finish(obj_engine_t *e, obj_gc_t *g) {
  obj_status_t st = OBJ_OK;
  while (st == OBJ_OK && !gc_done(g)) {
    store_batch_t *b = store_batch_new();
    gc_fill(e, g, b, OBJ_GC_BATCH);
    st = batch_write(e, b, 0);
    store_batch_free(b);
  }
  free(g->v);
  g->v = NULL;
  return st;
}

/* ---- engine ---- */

obj_engine_t *obj_engine_new(store_t *store, char **err) {
  obj_engine_t *e = calloc(1, sizeof *e);
  if (!e) {
    if (err) *err = strdup("obj: out of memory");
    return NULL;
  }
  e->store = store;
  if (!(e->meta = store_cf(store, OBJ_CF_META, err)) ||
      !(e->data = store_cf(store, OBJ_CF_DATA, err)) ||
      !(e->mpu = store_cf(store, OBJ_CF_MPU, err))) {
    free(e);
    return NULL;
  }
  for (int i = 0; i < OBJ_STRIPES; i++) pthread_mutex_init(&e->stripes[i], NULL);
  atomic_init(&e->last_ts, 0);
  return e;
}

void obj_engine_free(obj_engine_t *e) {
  if (!e) return;
  for (int i = 0; i < OBJ_STRIPES; i++) pthread_mutex_destroy(&e->stripes[i]);
  free(e);
}

const store_snap_t *obj_engine_snapshot(obj_engine_t *e) { return store_snapshot(e->store); }

void obj_engine_snapshot_release(obj_engine_t *e, const store_snap_t *snap) {
  store_snapshot_release(e->store, snap);
}

/* ---- blocks ---- */

obj_status_t obj_engine_block_put(obj_engine_t *e, const uint8_t *id, uint64_t idx, uint8_t *val,
                                  size_t len) {
  be32_put(val, obj_crc32c(0, val + 4, len));
  uint8_t k[OBJ_BLOCK_KEY_LEN];
  obj_block_key(k, id, idx);
  char *err = NULL;
  /* Unsynced: the commit batch that makes the object visible syncs the shared WAL after it. */
  if (store_put(e->store, e->data, k, sizeof k, val, len + 4, 0, &err) == STORE_OK) return OBJ_OK;
  log_error("obj", "block_write_failed", "err=\"%s\"", err ? err : "?");
  free(err);
  return OBJ_EIO;
}

obj_status_t obj_engine_block_get(obj_engine_t *e, const store_snap_t *snap, const uint8_t *id,
                                  uint64_t idx, size_t len, uint8_t **val) {
  uint8_t k[OBJ_BLOCK_KEY_LEN];
  obj_block_key(k, id, idx);
  void *v = NULL;
  size_t vl = 0;
  char *err = NULL, hex[2 * OBJ_ID_LEN + 1];
  int rc = store_get(e->store, e->data, snap, k, sizeof k, &v, &vl, &err);
  if (rc == STORE_ERR) {
    log_error("obj", "block_read_failed", "err=\"%s\"", err ? err : "?");
    free(err);
    return OBJ_EIO;
  }
  obj_hex(hex, id, OBJ_ID_LEN);
  if (rc == STORE_NOTFOUND) {
    log_error("obj", "block_missing", "data=%s block=%llu", hex, (unsigned long long)idx);
    return OBJ_ECORRUPT;
  }
  if (vl != len + 4 || be32_get(v) != obj_crc32c(0, (uint8_t *)v + 4, len)) {
    log_error("obj", "block_corrupt", "data=%s block=%llu len=%zu want=%zu", hex,
              (unsigned long long)idx, vl, len + 4);
    free(v);
    return OBJ_ECORRUPT;
  }
  *val = v;
  return OBJ_OK;
}

obj_status_t obj_engine_blocks_delete(obj_engine_t *e, const uint8_t *id, uint64_t nblocks) {
  obj_gc_t g = {0};
  gc_add(&g, id, nblocks);
  return gc_finish(e, &g);
}

/* ---- versions ---- */

/* Decodes a version record. The key's timestamp is the authority: records written before the
 * record carried ts_us have it only there. */
static Gureum__ObjectMeta *rec_unpack(const void *v, size_t vl, uint64_t ts) {
  Gureum__ObjectMeta *m = gureum__object_meta__unpack(NULL, vl, v);
  if (m) m->ts_us = ts;
  return m;
}

/* The iterator's record; its key k starts with a versions prefix of pn bytes. */
static Gureum__ObjectMeta *iter_rec(store_iter_t *it, const uint8_t *k, size_t pn) {
  size_t vl;
  const void *v = store_iter_value(it, &vl);
  return rec_unpack(v, vl, ~be64_get(k + pn));
}

static int vid_is(const uint8_t *k, size_t kl, size_t pn, const char *vid, size_t vl) {
  return kl - pn - 8 == vl && memcmp(k + pn + 8, vid, vl) == 0;
}

/* Version `vid` (NULL: the latest non-tombstone) of bucket/key, with is_latest set; *mk gets its
 * store key. A tombstone is not there for readers: a tombstoned vid is OBJ_ENOVERSION. */
static obj_status_t find_version(obj_engine_t *e, const store_snap_t *snap, const char *bucket,
                                 const char *key, const char *vid, Gureum__ObjectMeta **out,
                                 obj_buf_t *mk) {
  obj_buf_t pre = {0};
  key_versions(&pre, bucket, key);
  if (pre.oom) return OBJ_EIO;
  obj_status_t st = vid ? OBJ_ENOVERSION : OBJ_ENOENT;
  size_t vl = vid ? strlen(vid) : 0;
  int live_before = 0; /* a live version sorts first: what we find is not the latest */
  store_iter_t *it = store_iter_new(e->store, e->meta, snap);
  for (store_iter_seek(it, pre.p, pre.n); store_iter_valid(it); store_iter_next(it)) {
    size_t kl;
    const uint8_t *k = store_iter_key(it, &kl);
    if (!has_prefix(k, kl, &pre) || kl < pre.n + 8) break;
    /* Versions of one key are few; matching the id in the key avoids decoding the others once
     * we know whether a live one comes first. */
    int match = !vid || vid_is(k, kl, pre.n, vid, vl);
    if (!match && live_before) continue;
    Gureum__ObjectMeta *m = iter_rec(it, k, pre.n);
    if (!m && match) {
      st = OBJ_ECORRUPT;
      break;
    }
    if (!m || !match || m->tombstone) {
      live_before |= !m || !m->tombstone;
      if (m) gureum__object_meta__free_unpacked(m, NULL);
      if (vid && match) break; /* that version was deleted */
      continue;
    }
    m->is_latest = !live_before;
    if (mk) {
      mk->n = 0;
      buf_add(mk, k, kl);
    }
    *out = m;
    st = m->delete_marker ? OBJ_EDELETED : OBJ_OK;
    break;
  }
  if ((st == OBJ_ENOENT || st == OBJ_ENOVERSION) && iter_status(it) != OBJ_OK) st = OBJ_EIO;
  store_iter_free(it);
  free(pre.p);
  return st;
}

obj_status_t obj_engine_tombstones(obj_engine_t *e, const char *bucket, const char *key,
                                   const char *vid, uint64_t newer_than,
                                   Gureum__ObjectMeta ***out, size_t *n) {
  *out = NULL;
  *n = 0;
  obj_buf_t pre = {0};
  key_versions(&pre, bucket, key);
  if (pre.oom) return OBJ_EIO;
  size_t vl = vid ? strlen(vid) : 0, cap = 0;
  obj_status_t st = OBJ_OK;
  store_iter_t *it = store_iter_new(e->store, e->meta, NULL);
  for (store_iter_seek(it, pre.p, pre.n); store_iter_valid(it); store_iter_next(it)) {
    size_t kl;
    const uint8_t *k = store_iter_key(it, &kl);
    if (!has_prefix(k, kl, &pre) || kl < pre.n + 8) break;
    uint64_t ts = ~be64_get(k + pre.n);
    if (ts <= newer_than && !vid) break; /* newest first: the rest are older */
    if (vid && !vid_is(k, kl, pre.n, vid, vl)) continue;
    Gureum__ObjectMeta *m = iter_rec(it, k, pre.n);
    if (!m || !m->tombstone) {
      if (m) gureum__object_meta__free_unpacked(m, NULL);
      continue;
    }
    if (*n == cap) {
      cap = cap ? cap * 2 : 4;
      Gureum__ObjectMeta **grown = realloc(*out, cap * sizeof **out);
      if (!grown) {
        gureum__object_meta__free_unpacked(m, NULL);
        st = OBJ_EIO;
        break;
      }
      *out = grown;
    }
    (*out)[(*n)++] = m;
  }
  if (st == OBJ_OK) st = iter_status(it);
  store_iter_free(it);
  free(pre.p);
  return st;
}

obj_status_t obj_engine_head(obj_engine_t *e, const store_snap_t *snap, const char *bucket,
                             const char *key, const char *vid, Gureum__ObjectMeta **out) {
  *out = NULL;
  return find_version(e, snap, bucket, key, vid, out, NULL);
}

/* Walks the versions of one key (prefix `pre`) for a writer holding the key's lock: *newest gets
 * the newest timestamp, and with drop_null every "null" version (normally at most one) goes into
 * b, its blocks into g. */
static obj_status_t scan_key(obj_engine_t *e, const obj_buf_t *pre, int drop_null,
                             store_batch_t *b, obj_gc_t *g, uint64_t *newest) {
  obj_status_t st = OBJ_OK;
  *newest = 0;
  store_iter_t *it = store_iter_new(e->store, e->meta, NULL);
  for (store_iter_seek(it, pre->p, pre->n); store_iter_valid(it); store_iter_next(it)) {
    size_t kl, vl;
    const uint8_t *k = store_iter_key(it, &kl);
    if (!has_prefix(k, kl, pre) || kl < pre->n + 8) break;
    uint64_t ts = ~be64_get(k + pre->n);
    if (ts > *newest) *newest = ts;
    if (!drop_null) break; /* newest first: the first one is all we need */
    if (!vid_is(k, kl, pre->n, "null", 4)) continue;
    const void *v = store_iter_value(it, &vl);
    Gureum__ObjectMeta *m = gureum__object_meta__unpack(NULL, vl, v);
    if (!m) {
      st = OBJ_ECORRUPT;
      break;
    }
    store_batch_delete(b, e->meta, k, kl);
    gc_add_meta(g, m);
    gureum__object_meta__free_unpacked(m, NULL);
  }
  if (st == OBJ_OK) st = iter_status(it);
  store_iter_free(it);
  return st;
}

/* An If-Match / If-None-Match list ("*", quoted or weak ETags, comma separated) against one ETag. */
int obj_etag_matches(const char *list, const char *etag) {
  if (strcmp(list, "*") == 0) return 1;
  char *copy = strdup(list), *save = NULL;
  int hit = 0;
  for (char *t = strtok_r(copy, ",", &save); t && !hit; t = strtok_r(NULL, ",", &save)) {
    while (*t == ' ') t++;
    if (strncmp(t, "W/", 2) == 0) t += 2;
    size_t n = strlen(t);
    while (n && t[n - 1] == ' ') t[--n] = 0;
    if (n >= 2 && t[0] == '"' && t[n - 1] == '"') {
      t[n - 1] = 0;
      t++;
    }
    hit = strcmp(t, etag) == 0;
  }
  free(copy);
  return hit;
}

/* S3's conditional writes, checked under the key's lock so that two racing writers cannot both
 * pass: If-None-Match "*" wants no current object, If-Match wants the current object's ETag. */
static obj_status_t cond_check(obj_engine_t *e, const Gureum__ObjectMeta *in, const obj_cond_t *c) {
  if (!c || (!c->if_none_match && !c->if_match)) return OBJ_OK;
  Gureum__ObjectMeta *cur = NULL;
  obj_status_t st = find_version(e, NULL, in->bucket, in->key, NULL, &cur, NULL);
  int exists = st == OBJ_OK;
  if (st == OBJ_OK || st == OBJ_ENOENT || st == OBJ_EDELETED) {
    st = OBJ_OK;
    if (c->if_none_match && exists) st = OBJ_EPRECOND;
    else if (c->if_match && !exists) st = OBJ_ENOENT;
    else if (c->if_match && !obj_etag_matches(c->if_match, cur->etag ? cur->etag : "")) st = OBJ_EPRECOND;
  }
  if (cur) gureum__object_meta__free_unpacked(cur, NULL);
  return st;
}

/* What a version write reports: the record (packed) and whether it is now its key's latest;
 * for deletes also the live record a tombstone replaced. */
typedef struct {
  uint8_t *packed;
  size_t plen;
  int latest;
  Gureum__ObjectMeta *killed;
} obj_res_t;

static void res_clear(obj_res_t *r) {
  free(r->packed);
  if (r->killed) gureum__object_meta__free_unpacked(r->killed, NULL);
  memset(r, 0, sizeof *r);
}

static obj_status_t res_pack(const Gureum__ObjectMeta *m, obj_res_t *r) {
  Gureum__ObjectMeta c = *m;
  c.is_latest = 0; /* derived from the order on every read, never stored */
  free(r->packed);
  r->packed = meta_pack(&c, &r->plen);
  return r->packed ? OBJ_OK : OBJ_EIO;
}

/* Adds m to b under the key its bucket, key, ts_us and version id make, and packs it into r. */
static obj_status_t rec_store(obj_engine_t *e, store_batch_t *b, const Gureum__ObjectMeta *m,
                              obj_res_t *r) {
  obj_buf_t k = {0};
  key_versions(&k, m->bucket, m->key);
  buf_be64(&k, ~m->ts_us);
  buf_add(&k, m->version_id, strlen(m->version_id));
  obj_status_t st = k.oom ? OBJ_EIO : res_pack(m, r);
  if (st == OBJ_OK) store_batch_put(b, e->meta, k.p, k.n, r->packed, r->plen);
  free(k.p);
  return st;
}

/* Whether m will be its key's latest: live, and no live record of another version id sorts
 * before it (the records with its id are the ones this write replaces). */
static obj_status_t rec_latest(obj_engine_t *e, const obj_buf_t *pre, const Gureum__ObjectMeta *m,
                               int *latest) {
  *latest = !m->tombstone;
  if (!*latest) return OBJ_OK;
  size_t vl = strlen(m->version_id);
  store_iter_t *it = store_iter_new(e->store, e->meta, NULL);
  for (store_iter_seek(it, pre->p, pre->n); store_iter_valid(it); store_iter_next(it)) {
    size_t kl;
    const uint8_t *k = store_iter_key(it, &kl);
    if (!has_prefix(k, kl, pre) || kl < pre->n + 8) break;
    uint64_t ts = ~be64_get(k + pre->n);
    /* Newest first; equal timestamps go by version id. */
    if (ts < m->ts_us || (ts == m->ts_us && bcmp_str(k + pre->n + 8, kl - pre->n - 8,
                                                      m->version_id) >= 0))
      break;
    if (vid_is(k, kl, pre->n, m->version_id, vl)) continue;
    Gureum__ObjectMeta *o = iter_rec(it, k, pre->n);
    int live = !o || !o->tombstone;
    if (o) gureum__object_meta__free_unpacked(o, NULL);
    if (live) {
      *latest = 0;
      break;
    }
  }
  obj_status_t st = iter_status(it);
  store_iter_free(it);
  return st;
}

/* The records of one key with one version id (normally at most one), for the merge rules. */
typedef struct {
  obj_buf_t k;
  Gureum__ObjectMeta *m; /* NULL once handed on as res->killed */
} obj_have_t;

typedef struct {
  obj_have_t *v;
  size_t n;
} obj_haves_t;

static void haves_free(obj_haves_t *h) {
  for (size_t i = 0; i < h->n; i++) {
    free(h->v[i].k.p);
    if (h->v[i].m) gureum__object_meta__free_unpacked(h->v[i].m, NULL);
  }
  free(h->v);
  memset(h, 0, sizeof *h);
}

static obj_status_t haves_load(obj_engine_t *e, const obj_buf_t *pre, const char *vid,
                               obj_haves_t *h) {
  size_t vl = strlen(vid);
  obj_status_t st = OBJ_OK;
  store_iter_t *it = store_iter_new(e->store, e->meta, NULL);
  for (store_iter_seek(it, pre->p, pre->n); st == OBJ_OK && store_iter_valid(it);
       store_iter_next(it)) {
    size_t kl;
    const uint8_t *k = store_iter_key(it, &kl);
    if (!has_prefix(k, kl, pre) || kl < pre->n + 8) break;
    if (!vid_is(k, kl, pre->n, vid, vl)) continue;
    obj_have_t *v = realloc(h->v, (h->n + 1) * sizeof *v);
    if (!v) {
      st = OBJ_EIO;
      break;
    }
    h->v = v;
    obj_have_t *hv = &h->v[h->n];
    memset(hv, 0, sizeof *hv);
    if (!(hv->m = iter_rec(it, k, pre->n))) {
      st = OBJ_ECORRUPT;
      break;
    }
    h->n++;
    buf_add(&hv->k, k, kl);
    if (hv->k.oom) st = OBJ_EIO;
  }
  if (st == OBJ_OK) st = iter_status(it);
  store_iter_free(it);
  return st;
}

/* Takes a record the write replaces out of the store, freeing its blocks. */
static void have_remove(obj_engine_t *e, store_batch_t *b, obj_gc_t *g, obj_have_t *h,
                        obj_res_t *r) {
  store_batch_delete(b, e->meta, h->k.p, h->k.n);
  gc_add_meta(g, h->m);
  if (!h->m->tombstone && !r->killed) {
    r->killed = h->m;
    h->m = NULL;
  }
}

/* A tombstone keeps only what names the version it stands for: data and headers are gone. */
static void tomb_init(Gureum__ObjectMeta *t, const char *bucket, const char *key,
                      const char *vid, uint64_t ts, uint64_t mtime_ms) {
  Gureum__ObjectMeta init = GUREUM__OBJECT_META__INIT;
  *t = init;
  t->bucket = (char *)bucket;
  t->key = (char *)key;
  t->version_id = (char *)vid;
  t->ts_us = ts;
  t->tombstone = 1;
  t->mtime_ms = mtime_ms;
}

static int null_beats(const Gureum__ObjectMeta *a, const Gureum__ObjectMeta *b) {
  return a->ts_us > b->ts_us || (a->ts_us == b->ts_us && a->tombstone && !b->tombstone);
}

/* How a merge ends: the newcomer (or the tombstone it turned into) stored, an existing record
 * kept, or the newcomer dropped. */
typedef enum { MERGE_STORE, MERGE_KEEP, MERGE_DROP } obj_merge_t;

static obj_status_t merge_end(obj_engine_t *e, store_batch_t *b, const obj_buf_t *pre,
                              const Gureum__ObjectMeta *m, obj_merge_t how, obj_res_t *r) {
  obj_status_t st = how == MERGE_DROP ? OBJ_OK : rec_latest(e, pre, m, &r->latest);
  if (st != OBJ_OK) return st;
  return how == MERGE_STORE ? rec_store(e, b, m, r) : res_pack(m, r);
}

/* "null": last writer wins on ts_us, the null records it beats go. */
static obj_status_t merge_null(obj_engine_t *e, store_batch_t *b, obj_gc_t *g,
                               const obj_buf_t *pre, const Gureum__ObjectMeta *in,
                               const obj_cond_t *cond, obj_haves_t *h, obj_res_t *r) {
  Gureum__ObjectMeta nc = *in;
  /* A tombstone without a ts stands for whatever null version is here: it takes its ts. */
  for (size_t i = 0; nc.tombstone && !in->ts_us && i < h->n; i++)
    if (!h->v[i].m->tombstone && h->v[i].m->ts_us > nc.ts_us) nc.ts_us = h->v[i].m->ts_us;
  for (size_t i = 0; i < h->n; i++) {
    const Gureum__ObjectMeta *m = h->v[i].m;
    if (m->ts_us == nc.ts_us && m->tombstone == nc.tombstone) {
      gc_add_meta(g, &nc); /* the same write again: the stored one stays */
      return merge_end(e, b, pre, m, MERGE_KEEP, r);
    }
  }
  int wins = !(nc.tombstone && !nc.ts_us); /* one at ts 0 kills nothing: not worth storing */
  for (size_t i = 0; wins && i < h->n; i++) wins = null_beats(&nc, h->v[i].m);
  if (!wins) {
    gc_add_meta(g, &nc);
    return merge_end(e, b, pre, &nc, MERGE_DROP, r);
  }
  obj_status_t st = cond_check(e, &nc, cond);
  if (st != OBJ_OK) return st;
  for (size_t i = 0; i < h->n; i++) have_remove(e, b, g, &h->v[i], r);
  return merge_end(e, b, pre, &nc, MERGE_STORE, r);
}

/* Any other id: one record per id; a tombstone beats the live version, else it is a duplicate. */
static obj_status_t merge_id(obj_engine_t *e, store_batch_t *b, obj_gc_t *g,
                             const obj_buf_t *pre, const Gureum__ObjectMeta *in,
                             const obj_cond_t *cond, obj_haves_t *h, obj_res_t *r) {
  if (h->n == 0) { /* conditions only for new versions: a retry of a known one never fails */
    obj_status_t st = cond_check(e, in, cond);
    return st != OBJ_OK ? st : merge_end(e, b, pre, in, MERGE_STORE, r);
  }
  const Gureum__ObjectMeta *live = NULL, *tomb = NULL;
  uint64_t tomb_ts = in->tombstone ? in->ts_us : 0;
  for (size_t i = 0; i < h->n; i++) {
    const Gureum__ObjectMeta *m = h->v[i].m;
    if (!m->tombstone && !live) live = m;
    if (m->tombstone && !tomb) tomb = m;
    if (m->tombstone && m->ts_us > tomb_ts) tomb_ts = m->ts_us;
  }
  if (!live && !in->tombstone) live = in;
  if (!in->tombstone) gc_add_meta(g, in); /* kept or killed, the newcomer's blocks go */
  if (!tomb && !in->tombstone) return merge_end(e, b, pre, h->v[0].m, MERGE_KEEP, r);
  /* The tombstone stands at the killed version's ts (the same everywhere it was written). */
  Gureum__ObjectMeta t;
  tomb_init(&t, in->bucket, in->key, in->version_id, live ? live->ts_us : tomb_ts,
            tomb ? tomb->mtime_ms : now_us() / 1000);
  if (h->n == 1 && tomb && tomb->ts_us == t.ts_us) return merge_end(e, b, pre, tomb, MERGE_KEEP, r);
  for (size_t i = 0; i < h->n; i++) have_remove(e, b, g, &h->v[i], r);
  return merge_end(e, b, pre, &t, MERGE_STORE, r);
}

/* obj.h's replication rules for `in`, whose version id and ts_us are fixed (tombstones come as
 * tomb_init made them); the caller holds the key's lock. */
static obj_status_t version_merge(obj_engine_t *e, store_batch_t *b, obj_gc_t *g,
                                  const Gureum__ObjectMeta *in, const obj_cond_t *cond,
                                  obj_res_t *r) {
  obj_buf_t pre = {0};
  obj_haves_t h = {0};
  key_versions(&pre, in->bucket, in->key);
  obj_status_t st = pre.oom ? OBJ_EIO : haves_load(e, &pre, in->version_id, &h);
  if (st == OBJ_OK && strcmp(in->version_id, "null") == 0)
    st = merge_null(e, b, g, &pre, in, cond, &h, r);
  else if (st == OBJ_OK)
    st = merge_id(e, b, g, &pre, in, cond, &h, r);
  haves_free(&h);
  free(pre.p);
  return st;
}

static int fixed_identity(const Gureum__ObjectMeta *m) {
  return m->ts_us && m->version_id && *m->version_id;
}

/* Adds `in` to b as a live version (the caller holds the key's lock); r gets the record as
 * stored. Without a fixed identity it becomes the key's newest version, and unversioned writes
 * drop the "null" version they replace. */
static obj_status_t version_insert(obj_engine_t *e, store_batch_t *b, obj_gc_t *g,
                                   const Gureum__ObjectMeta *in, int versioned,
                                   const obj_cond_t *cond, obj_res_t *r) {
  Gureum__ObjectMeta m = *in;
  m.tombstone = 0;
  if (fixed_identity(in)) {
    m.mtime_ms = m.ts_us / 1000;
    return version_merge(e, b, g, &m, cond, r);
  }
  obj_status_t cst = cond_check(e, in, cond);
  if (cst != OBJ_OK) return cst;
  obj_buf_t k = {0};
  key_versions(&k, in->bucket, in->key);
  uint64_t newest;
  obj_status_t st = k.oom ? OBJ_EIO : scan_key(e, &k, !versioned, b, g, &newest);
  free(k.p);
  if (st != OBJ_OK) return st;
  char vid[OBJ_UID_LEN + 1] = "null";
  if (versioned) obj_random_uid(vid);
  m.version_id = vid;
  m.ts_us = next_ts(e, newest);
  m.mtime_ms = m.ts_us / 1000;
  r->latest = 1;
  return rec_store(e, b, &m, r);
}

/* Writes b (records first, then as many block deletes as fit), releases the lock, frees the rest
 * of the blocks and decodes the record r reports for the caller. */
static obj_status_t commit(obj_engine_t *e, pthread_mutex_t *mu, store_batch_t *b, obj_gc_t *g,
                           obj_status_t st, const obj_res_t *r, Gureum__ObjectMeta **out) {
  if (st == OBJ_OK) {
    gc_fill(e, g, b, OBJ_GC_BATCH);
    st = batch_write(e, b, -1);
  }
  pthread_mutex_unlock(mu);
  store_batch_free(b);
  if (st == OBJ_OK) {
    gc_finish(e, g); /* a failure here leaves garbage, not an inconsistency: already logged */
    if (r && r->packed && out) {
      *out = gureum__object_meta__unpack(NULL, r->plen, r->packed);
      if (*out)
        (*out)->is_latest = r->latest;
      else
        st = OBJ_EIO;
    }
  } else {
    free(g->v);
  }
  return st;
}

obj_status_t obj_engine_put(obj_engine_t *e, const Gureum__ObjectMeta *m, int versioned,
                            const obj_cond_t *cond, Gureum__ObjectMeta **out) {
  *out = NULL;
  pthread_mutex_t *mu = stripe(e, m->bucket, m->key);
  store_batch_t *b = store_batch_new();
  obj_gc_t g = {0};
  obj_res_t r = {0};
  pthread_mutex_lock(mu);
  obj_status_t st = version_insert(e, b, &g, m, versioned, cond, &r);
  st = commit(e, mu, b, &g, st, &r, out);
  res_clear(&r);
  return st;
}

/* Merges tombstone t (fresh: at a new timestamp above the key's newest, taken under the lock).
 * *out gets the live record it replaced, else just the names asked for. */
static obj_status_t delete_merge(obj_engine_t *e, Gureum__ObjectMeta *t, int fresh,
                                 const char *asked_vid, Gureum__ObjectMeta **out) {
  pthread_mutex_t *mu = stripe(e, t->bucket, t->key);
  store_batch_t *b = store_batch_new();
  obj_gc_t g = {0};
  obj_res_t r = {0};
  obj_buf_t pre = {0};
  uint64_t newest;
  obj_status_t st = OBJ_OK;
  pthread_mutex_lock(mu);
  if (fresh) {
    key_versions(&pre, t->bucket, t->key);
    st = pre.oom ? OBJ_EIO : scan_key(e, &pre, 0, b, &g, &newest);
    if (st == OBJ_OK) t->ts_us = next_ts(e, newest);
    free(pre.p);
  }
  if (st == OBJ_OK) st = version_merge(e, b, &g, t, NULL, &r);
  st = commit(e, mu, b, &g, st, NULL, NULL);
  if (st == OBJ_OK) {
    *out = r.killed ? r.killed : meta_stub(t->bucket, t->key, asked_vid);
    r.killed = NULL;
    if (*out)
      (*out)->is_latest = 0;
    else
      st = OBJ_EIO;
  }
  res_clear(&r);
  return st;
}

obj_status_t obj_engine_delete(obj_engine_t *e, const char *bucket, const char *key,
                               const char *vid, const char *versioning, const obj_ident_t *ident,
                               Gureum__ObjectMeta **out) {
  *out = NULL;
  uint64_t its = ident ? ident->ts_us : 0;
  Gureum__ObjectMeta t;
  if (vid && *vid) {
    /* ts 0: the tombstone takes the version's own ts (or stays at 0 for an unknown one). */
    tomb_init(&t, bucket, key, vid, its, now_us() / 1000);
    return delete_merge(e, &t, 0, vid, out);
  }
  if (!versioning) versioning = "";
  int enabled = strcmp(versioning, "Enabled") == 0;
  if (enabled || strcmp(versioning, "Suspended") == 0) {
    /* S3 adds the marker even when there is nothing to hide. */
    Gureum__ObjectMeta m = GUREUM__OBJECT_META__INIT;
    m.bucket = (char *)bucket;
    m.key = (char *)key;
    m.delete_marker = 1;
    if (ident) {
      m.version_id = enabled ? (char *)(ident->version_id ? ident->version_id : "") : "null";
      m.ts_us = its;
    }
    return obj_engine_put(e, &m, enabled, NULL, out);
  }
  /* Versioning never enabled: the null version becomes a null tombstone, so that a replica
   * which missed it cannot bring it back. */
  tomb_init(&t, bucket, key, "null", its, now_us() / 1000);
  return delete_merge(e, &t, !its, NULL, out);
}

obj_status_t obj_engine_apply(obj_engine_t *e, const Gureum__ObjectMeta *rec,
                              Gureum__ObjectMeta **out) {
  *out = NULL;
  int named = rec->bucket && *rec->bucket && rec->key && *rec->key && rec->version_id &&
              *rec->version_id;
  if (!named || !(rec->tombstone || (rec->delete_marker && rec->ts_us))) {
    log_warn("obj", "bad_apply", "bucket=%s key=%s", rec->bucket ? rec->bucket : "",
             rec->key ? rec->key : "");
    return OBJ_EIO;
  }
  Gureum__ObjectMeta m = *rec;
  if (rec->tombstone) {
    tomb_init(&m, rec->bucket, rec->key, rec->version_id, rec->ts_us, now_us() / 1000);
  } else {
    /* A marker has no data, whatever the record says. */
    m.size = 0;
    m.data_id.data = NULL;
    m.data_id.len = 0;
    m.n_part_sizes = 0;
    m.part_sizes = NULL;
    m.parts_count = 0;
    m.block_size = 0;
    m.mtime_ms = m.ts_us / 1000;
  }
  pthread_mutex_t *mu = stripe(e, m.bucket, m.key);
  store_batch_t *b = store_batch_new();
  obj_gc_t g = {0};
  obj_res_t r = {0};
  pthread_mutex_lock(mu);
  obj_status_t st = version_merge(e, b, &g, &m, NULL, &r);
  st = commit(e, mu, b, &g, st, &r, out);
  res_clear(&r);
  return st;
}

obj_status_t obj_engine_set_tags(obj_engine_t *e, const char *bucket, const char *key,
                                 const char *vid, Gureum__KeyValue **tags, size_t n,
                                 Gureum__ObjectMeta **out) {
  *out = NULL;
  pthread_mutex_t *mu = stripe(e, bucket, key);
  obj_buf_t mk = {0};
  Gureum__ObjectMeta *m = NULL;
  pthread_mutex_lock(mu);
  obj_status_t st = find_version(e, NULL, bucket, key, vid, &m, &mk);
  if (st == OBJ_OK) {
    Gureum__ObjectMeta t = *m;
    t.tags = tags;
    t.n_tags = n;
    t.is_latest = 0;
    size_t plen;
    uint8_t *packed = meta_pack(&t, &plen);
    char *err = NULL;
    if (!packed || mk.oom) {
      st = OBJ_EIO;
    } else if (store_put(e->store, e->meta, mk.p, mk.n, packed, plen, -1, &err) != STORE_OK) {
      log_error("obj", "write_failed", "err=\"%s\"", err ? err : "?");
      free(err);
      st = OBJ_EIO;
    } else if (!(*out = gureum__object_meta__unpack(NULL, plen, packed))) {
      st = OBJ_EIO;
    } else {
      (*out)->is_latest = m->is_latest;
    }
    free(packed);
    gureum__object_meta__free_unpacked(m, NULL);
  } else if (st == OBJ_EDELETED) {
    *out = m; /* tags do not go on delete markers */
  }
  pthread_mutex_unlock(mu);
  free(mk.p);
  return st;
}

/* ---- listing ---- */

static uint32_t list_max(uint32_t max) {
  return max == 0 || max > OBJ_LIST_MAX ? OBJ_LIST_MAX : max;
}

/* Collects a listing's entries; `last_prefix` says which kind came last (for next_key). */
typedef struct {
  obj_list_t *l;
  uint32_t max;
  int last_prefix, oom;
} obj_lb_t;

static int lb_full(const obj_lb_t *lb) { return lb->l->n + lb->l->nprefixes >= lb->max; }

static void lb_item(obj_lb_t *lb, Gureum__ObjectMeta *m) {
  obj_list_t *l = lb->l;
  Gureum__ObjectMeta **v = realloc(l->items, (l->n + 1) * sizeof *v);
  if (!v) {
    lb->oom = 1;
    gureum__object_meta__free_unpacked(m, NULL);
    return;
  }
  l->items = v;
  l->items[l->n++] = m;
  lb->last_prefix = 0;
}

static void lb_prefix(obj_lb_t *lb, const uint8_t *p, size_t n) {
  obj_list_t *l = lb->l;
  char **v = realloc(l->prefixes, (l->nprefixes + 1) * sizeof *v);
  char *s = strndup((const char *)p, n);
  if (v) l->prefixes = v;
  if (!v || !s) {
    lb->oom = 1;
    free(s);
    return;
  }
  l->prefixes[l->nprefixes++] = s;
  lb->last_prefix = 1;
}

/* next_key (and next_version) name the last entry returned, from which the next page resumes. */
static void lb_finish(obj_lb_t *lb, int with_version) {
  obj_list_t *l = lb->l;
  if (!l->truncated) return;
  if (lb->last_prefix && l->nprefixes) {
    l->next_key = strdup(l->prefixes[l->nprefixes - 1]);
  } else if (l->n) {
    l->next_key = strdup(l->items[l->n - 1]->key);
    if (with_version) l->next_version = strdup(l->items[l->n - 1]->version_id);
  }
}

void obj_list_clear(obj_list_t *l) {
  for (size_t i = 0; i < l->n; i++) gureum__object_meta__free_unpacked(l->items[i], NULL);
  for (size_t i = 0; i < l->nprefixes; i++) free(l->prefixes[i]);
  free(l->items);
  free(l->prefixes);
  free(l->next_key);
  free(l->next_version);
  memset(l, 0, sizeof *l);
}

/* If the key (inside the listing prefix) holds the delimiter, its common prefix length. */
static size_t common_prefix(const obj_mkey_t *mk, size_t pl, const char *delim) {
  if (!delim) return 0;
  size_t dl = strlen(delim);
  const uint8_t *d = memmem(mk->key + pl, mk->kl - pl, delim, dl);
  return d ? (size_t)(d - mk->key) + dl : 0;
}

/* Seeks past every key of the bucket that starts with p[0..n) (a key or common prefix, with
 * `term` appended: NUL for one key's versions, nothing for a common prefix). */
static void seek_past(store_iter_t *it, obj_buf_t *sk, const char *bucket, const uint8_t *p,
                      size_t n, int term) {
  sk->n = 0;
  buf_str(sk, bucket);
  buf_add(sk, p, n);
  if (term) buf_byte(sk, 0);
  buf_successor(sk);
  store_iter_seek(it, sk->p, sk->n);
}

/* Steps `it` past the older versions of mk's key: one step covers the usual single version,
 * else seek. mk points into the iterator's current key. */
static void skip_versions(store_iter_t *it, obj_buf_t *sk, const char *bucket,
                          const obj_mkey_t *mk) {
  size_t kl;
  sk->n = 0;
  buf_str(sk, bucket);
  buf_add(sk, mk->key, mk->kl);
  buf_byte(sk, 0);
  store_iter_next(it);
  if (store_iter_valid(it) && !sk->oom) {
    const uint8_t *k = store_iter_key(it, &kl);
    if (has_prefix(k, kl, sk)) {
      buf_successor(sk);
      store_iter_seek(it, sk->p, sk->n);
    }
  }
}

obj_status_t obj_engine_list(obj_engine_t *e, const char *bucket, const char *prefix,
                             const char *delim, const char *start_after, uint32_t max,
                             obj_list_t *out) {
  memset(out, 0, sizeof *out);
  if (!prefix) prefix = "";
  if (!start_after) start_after = "";
  if (delim && !*delim) delim = NULL;
  size_t bl = strlen(bucket), pl = strlen(prefix);
  obj_lb_t lb = {out, list_max(max), 0, 0};
  obj_buf_t sk = {0};
  store_iter_t *it = store_iter_new(e->store, e->meta, NULL);

  if (*start_after && strcmp(start_after, prefix) >= 0) {
    seek_past(it, &sk, bucket, (const uint8_t *)start_after, strlen(start_after), 1);
  } else {
    buf_str(&sk, bucket);
    buf_add(&sk, prefix, pl);
    store_iter_seek(it, sk.p, sk.n);
  }
  obj_status_t st = OBJ_OK;
  while (store_iter_valid(it) && !lb.oom && !sk.oom) {
    size_t kl, vl;
    const uint8_t *k = store_iter_key(it, &kl);
    obj_mkey_t mk;
    if (!in_bucket(k, kl, bucket, bl)) break;
    if (mkey_parse(k, kl, bl, &mk) != 0) {
      store_iter_next(it);
      continue;
    }
    if (mk.kl < pl || memcmp(mk.key, prefix, pl) != 0) break; /* past the prefix range */
    size_t cpl = common_prefix(&mk, pl, delim);
    if (cpl && *start_after && bcmp_str(mk.key, cpl, start_after) <= 0) {
      /* A prefix at or before start_after was returned on an earlier page. */
      seek_past(it, &sk, bucket, mk.key, cpl, 0);
      continue;
    }
    /* Newest first, so past the tombstones this is the key's latest version. */
    const void *v = store_iter_value(it, &vl);
    Gureum__ObjectMeta *m = rec_unpack(v, vl, mk.ts);
    if (!m) log_warn("obj", "bad_record", "bucket=%s", bucket);
    if (m && m->tombstone) {
      gureum__object_meta__free_unpacked(m, NULL);
      store_iter_next(it);
      continue;
    }
    int live = m && !m->delete_marker;
    if (cpl && live) {
      /* A common prefix only shows when some key under it is visible (not a delete marker). */
      gureum__object_meta__free_unpacked(m, NULL);
      if (lb_full(&lb)) {
        out->truncated = 1;
        break;
      }
      lb_prefix(&lb, mk.key, cpl);
      seek_past(it, &sk, bucket, mk.key, cpl, 0);
      continue;
    }
    if (!live || cpl) {
      if (m) gureum__object_meta__free_unpacked(m, NULL);
    } else if (lb_full(&lb)) {
      gureum__object_meta__free_unpacked(m, NULL);
      out->truncated = 1;
      break;
    } else {
      m->is_latest = 1;
      lb_item(&lb, m);
    }
    skip_versions(it, &sk, bucket, &mk);
  }
  if (lb.oom || sk.oom) st = OBJ_EIO;
  if (st == OBJ_OK) st = iter_status(it);
  store_iter_free(it);
  free(sk.p);
  if (st == OBJ_OK) lb_finish(&lb, 0);
  if (st != OBJ_OK) obj_list_clear(out);
  return st;
}

/* Positions `it` after (key_marker, version_marker); returns 1 if that left it inside
 * key_marker's versions (so what follows is not the key's latest). */
static int versions_resume(store_iter_t *it, obj_buf_t *sk, const char *bucket, const char *km,
                           const char *vm) {
  size_t kml = strlen(km);
  if (vm && *vm) {
    sk->n = 0;
    buf_str(sk, bucket);
    buf_str(sk, km);
    size_t vl = strlen(vm);
    for (store_iter_seek(it, sk->p, sk->n); store_iter_valid(it); store_iter_next(it)) {
      size_t kl;
      const uint8_t *k = store_iter_key(it, &kl);
      if (!has_prefix(k, kl, sk) || kl < sk->n + 8) break;
      if (kl - sk->n - 8 == vl && memcmp(k + sk->n + 8, vm, vl) == 0) {
        store_iter_next(it);
        return 1;
      }
    }
    /* An unknown version marker: resume after the whole key. */
  }
  seek_past(it, sk, bucket, (const uint8_t *)km, kml, 1);
  return 0;
}

obj_status_t obj_engine_list_versions(obj_engine_t *e, const char *bucket, const char *prefix,
                                      const char *delim, const char *key_marker,
                                      const char *version_marker, uint32_t max,
                                      obj_list_t *out) {
  memset(out, 0, sizeof *out);
  if (!prefix) prefix = "";
  if (!key_marker) key_marker = "";
  if (delim && !*delim) delim = NULL;
  size_t bl = strlen(bucket), pl = strlen(prefix);
  obj_lb_t lb = {out, list_max(max), 0, 0};
  obj_buf_t sk = {0}, prev = {0}; /* prev: the key whose versions we are walking */
  int have_prev = 0;
  store_iter_t *it = store_iter_new(e->store, e->meta, NULL);

  if (*key_marker && strcmp(key_marker, prefix) >= 0) {
    if (versions_resume(it, &sk, bucket, key_marker, version_marker)) {
      buf_add(&prev, key_marker, strlen(key_marker));
      have_prev = 1;
    }
  } else {
    buf_str(&sk, bucket);
    buf_add(&sk, prefix, pl);
    store_iter_seek(it, sk.p, sk.n);
  }
  obj_status_t st = OBJ_OK;
  while (store_iter_valid(it) && !lb.oom && !sk.oom && !prev.oom) {
    size_t kl, vl;
    const uint8_t *k = store_iter_key(it, &kl);
    obj_mkey_t mk;
    if (!in_bucket(k, kl, bucket, bl)) break;
    if (mkey_parse(k, kl, bl, &mk) != 0) {
      store_iter_next(it);
      continue;
    }
    if (mk.kl < pl || memcmp(mk.key, prefix, pl) != 0) break;
    const void *v = store_iter_value(it, &vl);
    Gureum__ObjectMeta *m = rec_unpack(v, vl, mk.ts);
    if (m && m->tombstone) { /* deleted versions are kept for replication, never listed */
      gureum__object_meta__free_unpacked(m, NULL);
      store_iter_next(it);
      continue;
    }
    size_t cpl = common_prefix(&mk, pl, delim);
    if (cpl || lb_full(&lb)) {
      if (m) gureum__object_meta__free_unpacked(m, NULL);
      m = NULL;
    }
    if (cpl) {
      if (!*key_marker || bcmp_str(mk.key, cpl, key_marker) > 0) {
        if (lb_full(&lb)) {
          out->truncated = 1;
          break;
        }
        lb_prefix(&lb, mk.key, cpl);
      }
      have_prev = 0;
      seek_past(it, &sk, bucket, mk.key, cpl, 0);
      continue;
    }
    if (lb_full(&lb)) {
      out->truncated = 1;
      break;
    }
    int latest = !(have_prev && prev.n == mk.kl && memcmp(prev.p, mk.key, mk.kl) == 0);
    if (m) {
      m->is_latest = latest;
      lb_item(&lb, m);
    } else {
      log_warn("obj", "bad_record", "bucket=%s", bucket);
    }
    prev.n = 0;
    buf_add(&prev, mk.key, mk.kl);
    have_prev = 1;
    store_iter_next(it);
  }
  if (lb.oom || sk.oom || prev.oom) st = OBJ_EIO;
  if (st == OBJ_OK) st = iter_status(it);
  store_iter_free(it);
  free(sk.p);
  free(prev.p);
  if (st == OBJ_OK) lb_finish(&lb, 1);
  if (st != OBJ_OK) obj_list_clear(out);
  return st;
}

/* Whether any key in cf starts with pre: 1 yes, 0 no, -1 on error. */
static int cf_has_prefix(obj_engine_t *e, store_cf_t *cf, const obj_buf_t *pre) {
  store_iter_t *it = store_iter_new(e->store, cf, NULL);
  store_iter_seek(it, pre->p, pre->n);
  int found = 0;
  if (store_iter_valid(it)) {
    size_t kl;
    const uint8_t *k = store_iter_key(it, &kl);
    found = has_prefix(k, kl, pre);
  }
  if (!found && iter_status(it) != OBJ_OK) found = -1;
  store_iter_free(it);
  return found;
}

/* Whether a version record other than a tombstone starts with pre: 1 yes, 0 no, -1 on error.
 * Tombstones wait for their GC, so this may step over a few. */
static int meta_has_versions(obj_engine_t *e, const obj_buf_t *pre) {
  store_iter_t *it = store_iter_new(e->store, e->meta, NULL);
  int found = 0;
  for (store_iter_seek(it, pre->p, pre->n); !found && store_iter_valid(it); store_iter_next(it)) {
    size_t kl, vl;
    const uint8_t *k = store_iter_key(it, &kl);
    if (!has_prefix(k, kl, pre)) break;
    const void *v = store_iter_value(it, &vl);
    Gureum__ObjectMeta *m = gureum__object_meta__unpack(NULL, vl, v);
    found = !m || !m->tombstone; /* an unreadable record is still something there */
    if (m) gureum__object_meta__free_unpacked(m, NULL);
  }
  if (!found && iter_status(it) != OBJ_OK) found = -1;
  store_iter_free(it);
  return found;
}

int obj_engine_bucket_is_empty(obj_engine_t *e, const char *bucket) {
  obj_buf_t pre = {0};
  buf_str(&pre, bucket);
  int r = pre.oom ? -1 : meta_has_versions(e, &pre);
  if (r == 0) {
    pre.n = 0;
    buf_byte(&pre, 'U');
    buf_str(&pre, bucket);
    r = pre.oom ? -1 : cf_has_prefix(e, e->mpu, &pre);
  }
  free(pre.p);
  return r < 0 ? -1 : !r;
}

/* ---- multipart ---- */

static obj_status_t upload_get(obj_engine_t *e, const char *bucket, const char *key,
                               const char *uid, obj_buf_t *uk, Gureum__MultipartUpload **out) {
  *out = NULL;
  /* Part keys assume the fixed id length, so anything else cannot be one of ours. */
  if (!uid || strlen(uid) != OBJ_UID_LEN) return OBJ_ENOUPLOAD;
  key_upload(uk, bucket, key, uid);
  if (uk->oom) return OBJ_EIO;
  void *v;
  size_t vl;
  char *err = NULL;
  int rc = store_get(e->store, e->mpu, NULL, uk->p, uk->n, &v, &vl, &err);
  if (rc == STORE_NOTFOUND) return OBJ_ENOUPLOAD;
  if (rc != STORE_OK) {
    log_error("obj", "read_failed", "err=\"%s\"", err ? err : "?");
    free(err);
    return OBJ_EIO;
  }
  *out = gureum__multipart_upload__unpack(NULL, vl, v);
  free(v);
  return *out ? OBJ_OK : OBJ_ECORRUPT;
}

static void parts_free(Gureum__UploadPart **p, size_t n) {
  for (size_t i = 0; i < n; i++) gureum__upload_part__free_unpacked(p[i], NULL);
  free(p);
}

/* Parts of an upload from part number `from`, ascending; max 0 = all. */
static obj_status_t parts_load(obj_engine_t *e, const char *uid, uint64_t from, size_t max,
                               Gureum__UploadPart ***out, size_t *n, int *more) {
  *out = NULL;
  *n = 0;
  *more = 0;
  if (from > UINT32_MAX) return OBJ_OK;
  uint8_t pre[OBJ_PART_KEY_LEN];
  key_part(pre, uid, (uint32_t)from);
  obj_status_t st = OBJ_OK;
  size_t cap = 0;
  store_iter_t *it = store_iter_new(e->store, e->mpu, NULL);
  for (store_iter_seek(it, pre, sizeof pre); store_iter_valid(it); store_iter_next(it)) {
    size_t kl, vl;
    const uint8_t *k = store_iter_key(it, &kl);
    if (kl != sizeof pre || memcmp(k, pre, 1 + OBJ_UID_LEN) != 0) break;
    if (max && *n >= max) {
      *more = 1;
      break;
    }
    if (*n == cap) {
      cap = cap ? cap * 2 : 16;
      Gureum__UploadPart **v = realloc(*out, cap * sizeof *v);
      if (!v) {
        st = OBJ_EIO;
        break;
      }
      *out = v;
    }
    const void *v = store_iter_value(it, &vl);
    if (!((*out)[*n] = gureum__upload_part__unpack(NULL, vl, v))) {
      st = OBJ_ECORRUPT;
      break;
    }
    (*n)++;
  }
  if (st == OBJ_OK) st = iter_status(it);
  store_iter_free(it);
  if (st != OBJ_OK) {
    parts_free(*out, *n);
    *out = NULL;
    *n = 0;
  }
  return st;
}

/* Part keys hold the upload id at a fixed length, so a chosen id must look like ours. */
static int uid_valid(const char *s) {
  size_t n = 0;
  for (; s[n]; n++) {
    char c = s[n];
    if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))) return 0;
  }
  return n == OBJ_UID_LEN;
}

/* Writes the upload record unless it exists already (a coordinator's retry). */
static obj_status_t upload_put(obj_engine_t *e, const Gureum__MultipartUpload *u) {
  size_t plen = gureum__multipart_upload__get_packed_size(u);
  uint8_t *p = malloc(plen ? plen : 1);
  obj_buf_t k = {0};
  key_upload(&k, u->bucket, u->key, u->upload_id);
  obj_status_t st = OBJ_EIO;
  char *err = NULL;
  void *old = NULL;
  size_t ol;
  int rc = p && !k.oom ? store_get(e->store, e->mpu, NULL, k.p, k.n, &old, &ol, &err) : STORE_ERR;
  free(old);
  if (rc == STORE_OK) {
    st = OBJ_OK;
  } else if (rc == STORE_NOTFOUND) {
    gureum__multipart_upload__pack(u, p);
    if (store_put(e->store, e->mpu, k.p, k.n, p, plen, -1, &err) == STORE_OK) st = OBJ_OK;
  }
  if (st != OBJ_OK) log_error("obj", "write_failed", "err=\"%s\"", err ? err : "?");
  free(err);
  free(p);
  free(k.p);
  return st;
}

obj_status_t obj_engine_mpu_create(obj_engine_t *e, const Gureum__ObjectMeta *m,
                                   char upload_id[OBJ_UID_LEN + 1]) {
  if (m->version_id && *m->version_id) {
    if (!uid_valid(m->version_id)) {
      log_warn("obj", "bad_upload_id", "bucket=%s key=%s", m->bucket, m->key);
      return OBJ_EIO;
    }
    memcpy(upload_id, m->version_id, OBJ_UID_LEN + 1);
  } else {
    obj_random_uid(upload_id);
  }
  Gureum__ObjectMeta headers = *m;
  headers.version_id = ""; /* the upload's id, not a version's: complete decides that */
  headers.ts_us = 0;
  Gureum__MultipartUpload u = GUREUM__MULTIPART_UPLOAD__INIT;
  u.bucket = m->bucket;
  u.key = m->key;
  u.upload_id = upload_id;
  u.initiated_ms = now_us() / 1000;
  u.meta = &headers;
  pthread_mutex_t *mu = stripe(e, m->bucket, m->key);
  pthread_mutex_lock(mu);
  obj_status_t st = upload_put(e, &u);
  pthread_mutex_unlock(mu);
  return st;
}

obj_status_t obj_engine_mpu_put_part(obj_engine_t *e, const char *bucket, const char *key,
                                     const char *upload_id, const Gureum__UploadPart *p) {
  pthread_mutex_t *mu = stripe(e, bucket, key);
  store_batch_t *b = store_batch_new();
  obj_gc_t g = {0};
  obj_buf_t uk = {0};
  Gureum__MultipartUpload *u = NULL;
  pthread_mutex_lock(mu);
  obj_status_t st = upload_get(e, bucket, key, upload_id, &uk, &u);
  if (st == OBJ_OK) {
    uint8_t pk[OBJ_PART_KEY_LEN];
    key_part(pk, upload_id, p->part_number);
    void *v = NULL;
    size_t vl;
    int rc = store_get(e->store, e->mpu, NULL, pk, sizeof pk, &v, &vl, NULL);
    if (rc == STORE_OK) {
      /* Re-uploading a part number replaces the part: its blocks are garbage now. */
      Gureum__UploadPart *old = gureum__upload_part__unpack(NULL, vl, v);
      if (old) gc_add_part(&g, old);
      if (old) gureum__upload_part__free_unpacked(old, NULL);
    } else if (rc != STORE_NOTFOUND) {
      st = OBJ_EIO;
    }
    free(v);
    size_t plen = gureum__upload_part__get_packed_size(p);
    uint8_t *packed = malloc(plen ? plen : 1);
    if (!packed) st = OBJ_EIO;
    if (st == OBJ_OK) {
      gureum__upload_part__pack(p, packed);
      store_batch_put(b, e->mpu, pk, sizeof pk, packed, plen);
    }
    free(packed);
  }
  if (u) gureum__multipart_upload__free_unpacked(u, NULL);
  free(uk.p);
  return commit(e, mu, b, &g, st, NULL, NULL);
}

static int etag_eq(const char *given, const char *stored) {
  size_t gl = strlen(given), sl = strlen(stored);
  if (gl >= 2 && given[0] == '"' && given[gl - 1] == '"') given++, gl -= 2;
  if (sl >= 2 && stored[0] == '"' && stored[sl - 1] == '"') stored++, sl -= 2;
  return gl == sl && strncasecmp(given, stored, gl) == 0;
}

static Gureum__UploadPart *part_find(Gureum__UploadPart **have, size_t n, uint32_t pn,
                                     size_t *idx) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (have[mid]->part_number == pn) {
      *idx = mid;
      return have[mid];
    }
    if (have[mid]->part_number < pn)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

/* The S3 checks, in S3's order, then the object's extents and multipart ETag. */
static obj_status_t complete_check(Gureum__UploadPart **have, size_t nhave,
                                   const obj_part_ref_t *parts, size_t n, uint8_t *used,
                                   uint8_t *ids, uint64_t *sizes, char etag[64]) {
  if (n == 0) return OBJ_EPART;
  for (size_t i = 1; i < n; i++)
    if (parts[i].part_number <= parts[i - 1].part_number) return OBJ_EPARTORDER;
  uint8_t *md5s = malloc(16 * n);
  if (!md5s) return OBJ_EIO;
  obj_status_t st = OBJ_OK;
  for (size_t i = 0; i < n && st == OBJ_OK; i++) {
    size_t j;
    Gureum__UploadPart *p = part_find(have, nhave, parts[i].part_number, &j);
    if (!p || !parts[i].etag || !etag_eq(parts[i].etag, p->etag) ||
        p->data_id.len != OBJ_ID_LEN || unhex(p->etag, md5s + 16 * i, 16) != 0) {
      st = OBJ_EPART;
      break;
    }
    if (i + 1 < n && p->size < OBJ_MIN_PART_SIZE) st = OBJ_ETOOSMALL;
    used[j] = 1;
    memcpy(ids + OBJ_ID_LEN * i, p->data_id.data, OBJ_ID_LEN);
    sizes[i] = p->size;
  }
  uint8_t d[16];
  if (st == OBJ_OK && md5(md5s, 16 * n, d) != 0) st = OBJ_EIO;
  if (st == OBJ_OK) {
    obj_hex(etag, d, 16);
    snprintf(etag + 32, 32, "-%zu", n);
  }
  free(md5s);
  return st;
}

/* A coordinator retrying a complete this replica did already: the upload is gone, and the
 * version it made (or the tombstone that replaced it) has the identity asked for. */
static obj_status_t complete_again(obj_engine_t *e, const char *bucket, const char *key,
                                   const obj_ident_t *id, obj_res_t *r) {
  obj_buf_t pre = {0};
  obj_haves_t h = {0};
  key_versions(&pre, bucket, key);
  obj_status_t st = pre.oom ? OBJ_EIO : haves_load(e, &pre, id->version_id, &h);
  if (st == OBJ_OK) st = OBJ_ENOUPLOAD;
  for (size_t i = 0; st == OBJ_ENOUPLOAD && i < h.n; i++)
    if (strcmp(id->version_id, "null") != 0 || h.v[i].m->ts_us == id->ts_us)
      st = merge_end(e, NULL, &pre, h.v[i].m, MERGE_KEEP, r);
  haves_free(&h);
  free(pre.p);
  return st;
}

/* Completes upload u (the caller holds the key's lock and checked the upload exists): the
 * version goes into b, the upload and its part records out, unlisted parts' blocks into g. */
static obj_status_t complete_upload(obj_engine_t *e, store_batch_t *b, obj_gc_t *g,
                                    const Gureum__MultipartUpload *u, const obj_buf_t *uk,
                                    const obj_part_ref_t *parts, size_t n, int versioned,
                                    const obj_cond_t *cond, const obj_ident_t *ident,
                                    obj_res_t *r) {
  Gureum__UploadPart **have = NULL;
  size_t nhave = 0;
  int more;
  char etag[64];
  uint8_t *used = NULL, *ids = NULL;
  uint64_t *sizes = NULL;
  obj_status_t st = parts_load(e, u->upload_id, 0, 0, &have, &nhave, &more);
  if (st == OBJ_OK) {
    used = calloc(nhave + 1, 1);
    ids = malloc(OBJ_ID_LEN * n + 1);
    sizes = malloc(sizeof *sizes * n + 1);
    st = used && ids && sizes ? OBJ_OK : OBJ_EIO;
  }
  if (st == OBJ_OK) st = complete_check(have, nhave, parts, n, used, ids, sizes, etag);
  if (st == OBJ_OK) {
    Gureum__ObjectMeta init = GUREUM__OBJECT_META__INIT;
    Gureum__ObjectMeta m = u->meta ? *u->meta : init;
    m.bucket = u->bucket;
    m.key = u->key;
    m.version_id = ident ? (char *)ident->version_id : "";
    m.ts_us = ident ? ident->ts_us : 0;
    m.delete_marker = 0;
    m.etag = etag;
    m.size = 0;
    for (size_t i = 0; i < n; i++) m.size += sizes[i];
    m.parts_count = (uint32_t)n;
    m.n_part_sizes = n;
    m.part_sizes = sizes;
    m.data_id.data = ids;
    m.data_id.len = OBJ_ID_LEN * n;
    m.block_size = OBJ_BLOCK_SIZE;
    st = version_insert(e, b, g, &m, versioned, cond, r);
  }
  if (st == OBJ_OK) {
    /* The upload goes with its part records; parts left out of the list are freed. */
    store_batch_delete(b, e->mpu, uk->p, uk->n);
    for (size_t j = 0; j < nhave; j++) {
      uint8_t pk[OBJ_PART_KEY_LEN];
      key_part(pk, u->upload_id, have[j]->part_number);
      store_batch_delete(b, e->mpu, pk, sizeof pk);
      if (!used[j]) gc_add_part(g, have[j]);
    }
  }
  parts_free(have, nhave);
  free(used);
  free(ids);
  free(sizes);
  return st;
}

obj_status_t obj_engine_mpu_complete(obj_engine_t *e, const char *bucket, const char *key,
                                     const char *upload_id, const obj_part_ref_t *parts, size_t n,
                                     int versioned, const obj_cond_t *cond,
                                     const obj_ident_t *ident, Gureum__ObjectMeta **out) {
  *out = NULL;
  if (ident && !(ident->ts_us && ident->version_id && *ident->version_id)) ident = NULL;
  pthread_mutex_t *mu = stripe(e, bucket, key);
  store_batch_t *b = store_batch_new();
  obj_gc_t g = {0};
  obj_buf_t uk = {0};
  obj_res_t r = {0};
  Gureum__MultipartUpload *u = NULL;
  pthread_mutex_lock(mu);
  obj_status_t st = upload_get(e, bucket, key, upload_id, &uk, &u);
  if (st == OBJ_ENOUPLOAD && ident)
    st = complete_again(e, bucket, key, ident, &r);
  else if (st == OBJ_OK)
    st = complete_upload(e, b, &g, u, &uk, parts, n, versioned, cond, ident, &r);
  st = commit(e, mu, b, &g, st, &r, out);
  if (u) gureum__multipart_upload__free_unpacked(u, NULL);
  free(uk.p);
  res_clear(&r);
  return st;
}

obj_status_t obj_engine_mpu_abort(obj_engine_t *e, const char *bucket, const char *key,
                                  const char *upload_id) {
  pthread_mutex_t *mu = stripe(e, bucket, key);
  store_batch_t *b = store_batch_new();
  obj_gc_t g = {0};
  obj_buf_t uk = {0};
  Gureum__MultipartUpload *u = NULL;
  Gureum__UploadPart **have = NULL;
  size_t nhave = 0;
  int more;
  pthread_mutex_lock(mu);
  obj_status_t st = upload_get(e, bucket, key, upload_id, &uk, &u);
  if (st == OBJ_OK) st = parts_load(e, upload_id, 0, 0, &have, &nhave, &more);
  if (st == OBJ_OK) {
    store_batch_delete(b, e->mpu, uk.p, uk.n);
    for (size_t j = 0; j < nhave; j++) {
      uint8_t pk[OBJ_PART_KEY_LEN];
      key_part(pk, upload_id, have[j]->part_number);
      store_batch_delete(b, e->mpu, pk, sizeof pk);
      gc_add_part(&g, have[j]);
    }
  }
  st = commit(e, mu, b, &g, st, NULL, NULL);
  if (u) gureum__multipart_upload__free_unpacked(u, NULL);
  parts_free(have, nhave);
  free(uk.p);
  return st;
}

obj_status_t obj_engine_mpu_list_parts(obj_engine_t *e, const char *bucket, const char *key,
                                       const char *upload_id, uint32_t marker, uint32_t max,
                                       Gureum__UploadPart ***out, size_t *n, int *truncated) {
  *out = NULL;
  *n = 0;
  *truncated = 0;
  obj_buf_t uk = {0};
  Gureum__MultipartUpload *u = NULL;
  obj_status_t st = upload_get(e, bucket, key, upload_id, &uk, &u);
  if (u) gureum__multipart_upload__free_unpacked(u, NULL);
  free(uk.p);
  if (st != OBJ_OK) return st;
  return parts_load(e, upload_id, (uint64_t)marker + 1, list_max(max), out, n, truncated);
}

obj_status_t obj_engine_mpu_list_uploads(obj_engine_t *e, const char *bucket, const char *prefix,
                                         const char *key_marker, const char *upload_marker,
                                         uint32_t max, Gureum__MultipartUpload ***out, size_t *n,
                                         int *truncated) {
  *out = NULL;
  *n = 0;
  *truncated = 0;
  if (!prefix) prefix = "";
  if (!key_marker) key_marker = "";
  size_t pl = strlen(prefix), cap = 0;
  max = list_max(max);
  obj_buf_t sk = {0}, pre = {0};
  buf_byte(&pre, 'U');
  buf_str(&pre, bucket); /* 'U' bucket \0: this bucket's uploads */
  store_iter_t *it = store_iter_new(e->store, e->mpu, NULL);
  buf_add(&sk, pre.p, pre.n);
  if (*key_marker && strcmp(key_marker, prefix) >= 0) {
    buf_str(&sk, key_marker);
    if (upload_marker && *upload_marker) {
      /* Later uploads of key_marker, then later keys; the marker itself was shown already. */
      buf_add(&sk, upload_marker, strlen(upload_marker));
      store_iter_seek(it, sk.p, sk.n);
      size_t kl;
      if (store_iter_valid(it)) {
        const uint8_t *k = store_iter_key(it, &kl);
        if (kl == sk.n && memcmp(k, sk.p, kl) == 0) store_iter_next(it);
      }
    } else {
      buf_successor(&sk);
      store_iter_seek(it, sk.p, sk.n);
    }
  } else {
    buf_add(&sk, prefix, pl);
    store_iter_seek(it, sk.p, sk.n);
  }
  obj_status_t st = sk.oom || pre.oom ? OBJ_EIO : OBJ_OK;
  for (; st == OBJ_OK && store_iter_valid(it); store_iter_next(it)) {
    size_t kl, vl;
    const uint8_t *k = store_iter_key(it, &kl);
    if (!has_prefix(k, kl, &pre)) break;
    const uint8_t *key = k + pre.n;
    if (kl - pre.n < pl || memcmp(key, prefix, pl) != 0) break;
    if (*n >= max) {
      *truncated = 1;
      break;
    }
    if (*n == cap) {
      cap = cap ? cap * 2 : 16;
      Gureum__MultipartUpload **v = realloc(*out, cap * sizeof *v);
      if (!v) {
        st = OBJ_EIO;
        break;
      }
      *out = v;
    }
    const void *v = store_iter_value(it, &vl);
    Gureum__MultipartUpload *u = gureum__multipart_upload__unpack(NULL, vl, v);
    if (u)
      (*out)[(*n)++] = u;
    else
      log_warn("obj", "bad_record", "bucket=%s", bucket);
  }
  if (st == OBJ_OK) st = iter_status(it);
  store_iter_free(it);
  free(sk.p);
  free(pre.p);
  if (st != OBJ_OK) {
    for (size_t i = 0; i < *n; i++) gureum__multipart_upload__free_unpacked((*out)[i], NULL);
    free(*out);
    *out = NULL;
    *n = 0;
  }
  return st;
}

/* ---- repair: partitions, digests, tombstone GC, scrub ---- */

static void sha256(const void *p, size_t n, uint8_t out[32]) {
  if (EVP_Digest(p, n, out, NULL, EVP_sha256(), NULL) != 1) {
    /* Only an allocation failure gets here; partitions must not silently change. */
    log_error("obj", "sha256_failed", "len=%zu", n);
    abort();
  }
}

static uint32_t partition_of(const void *bucket, size_t bl, const void *key, size_t kl) {
  obj_buf_t b = {0};
  buf_add(&b, bucket, bl);
  buf_byte(&b, 0);
  buf_add(&b, key, kl);
  if (b.oom) {
    log_error("obj", "partition_oom", "len=%zu", bl + kl);
    abort();
  }
  uint8_t d[32];
  sha256(b.p, b.n, d);
  free(b.p);
  return d[0];
}

uint32_t obj_partition(const char *bucket, const char *key) {
  return partition_of(bucket, strlen(bucket), key, strlen(key));
}

/* One version record met by meta_walk. */
typedef struct {
  const uint8_t *k; /* its store key: bucket \0 key \0 be64(~ts) vid */
  size_t kl;
  const uint8_t *bucket; /* bl bytes at the start of k */
  size_t bl;
  obj_mkey_t mk;
  const void *v;
  size_t vl;
  uint32_t part;
  int first; /* the first record of its bucket/key: the newest */
} obj_walk_t;

/* Returns OBJ_OK to go on; anything else stops the walk and is its result. */
typedef obj_status_t (*obj_walk_fn)(obj_engine_t *e, const obj_walk_t *w, void *arg);

/* Calls fn on every version record in key order, computing each key's partition once. */
static obj_status_t meta_walk(obj_engine_t *e, const store_snap_t *snap, obj_walk_fn fn,
                              void *arg) {
  obj_buf_t prev = {0}; /* bucket \0 key \0 of the previous record */
  obj_status_t st = OBJ_OK;
  uint32_t part = 0;
  store_iter_t *it = store_iter_new(e->store, e->meta, snap);
  for (store_iter_seek_first(it); st == OBJ_OK && store_iter_valid(it); store_iter_next(it)) {
    obj_walk_t w = {0};
    w.k = store_iter_key(it, &w.kl);
    const uint8_t *z = memchr(w.k, 0, w.kl);
    if (!z || mkey_parse(w.k, w.kl, (size_t)(z - w.k), &w.mk) != 0) continue;
    w.bucket = w.k;
    w.bl = (size_t)(z - w.k);
    size_t pn = w.bl + 1 + w.mk.kl + 1; /* through the key's NUL */
    w.first = !(prev.n == pn && memcmp(prev.p, w.k, pn) == 0);
    if (w.first) {
      part = partition_of(w.bucket, w.bl, w.mk.key, w.mk.kl);
      prev.n = 0;
      buf_add(&prev, w.k, pn);
      if (prev.oom) st = OBJ_EIO;
    }
    w.part = part;
    w.v = store_iter_value(it, &w.vl);
    if (st == OBJ_OK) st = fn(e, &w, arg);
  }
  if (st == OBJ_OK) st = iter_status(it);
  store_iter_free(it);
  free(prev.p);
  return st;
}

static Gureum__ObjectMeta *walk_rec(const obj_walk_t *w) {
  Gureum__ObjectMeta *m = rec_unpack(w->v, w->vl, w->mk.ts);
  if (!m) log_warn("obj", "bad_record", "bucket=%.*s", (int)w->bl, (const char *)w->bucket);
  return m;
}

/* obj.h describes the canonical record: what replicas agree on, nothing local. */
static obj_status_t canon_digest(const Gureum__ObjectMeta *m, uint8_t out[32]) {
  char ts[24];
  snprintf(ts, sizeof ts, "%llu", (unsigned long long)m->ts_us);
  obj_buf_t c = {0};
  buf_str(&c, m->bucket);
  buf_str(&c, m->key);
  buf_str(&c, m->version_id);
  if (m->tombstone) {
    if (strcmp(m->version_id, "null") == 0) buf_str(&c, ts);
    buf_add(&c, "T", 1);
  } else {
    buf_str(&c, ts);
    buf_str(&c, m->etag ? m->etag : "");
    buf_add(&c, m->delete_marker ? "1" : "0", 1);
  }
  if (!c.oom) sha256(c.p, c.n, out);
  free(c.p);
  return c.oom ? OBJ_EIO : OBJ_OK;
}

static obj_status_t digest_one(obj_engine_t *e, const obj_walk_t *w, void *arg) {
  (void)e;
  obj_digests_t *d = arg;
  Gureum__ObjectMeta *m = walk_rec(w);
  if (!m) return OBJ_OK; /* unreadable: left out, so the digests differ and repair looks */
  uint8_t h[32];
  obj_status_t st = canon_digest(m, h);
  if (st == OBJ_OK) {
    for (int i = 0; i < 16; i++) d->digest[w->part][i] ^= h[i];
    d->records[w->part]++;
    if (!m->tombstone && !m->delete_marker) {
      d->objects[w->part]++;
      d->bytes[w->part] += m->size;
    }
  }
  gureum__object_meta__free_unpacked(m, NULL);
  return st;
}

obj_status_t obj_engine_digests(obj_engine_t *e, obj_digests_t *d) {
  memset(d, 0, sizeof *d);
  const store_snap_t *snap = store_snapshot(e->store); /* one consistent state for all */
  obj_status_t st = meta_walk(e, snap, digest_one, d);
  store_snapshot_release(e->store, snap);
  if (st != OBJ_OK) memset(d, 0, sizeof *d);
  return st;
}

void obj_records_free(Gureum__ObjectMeta **recs, size_t n) {
  for (size_t i = 0; i < n; i++) gureum__object_meta__free_unpacked(recs[i], NULL);
  free(recs);
}

typedef struct {
  uint32_t part;
  Gureum__ObjectMeta **v;
  size_t n, cap;
  int live_seen; /* of the current key: is_latest goes to its first live record */
} obj_recs_t;

static obj_status_t records_one(obj_engine_t *e, const obj_walk_t *w, void *arg) {
  (void)e;
  obj_recs_t *r = arg;
  if (w->part != r->part) return OBJ_OK;
  if (w->first) r->live_seen = 0;
  if (r->n == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 64;
    Gureum__ObjectMeta **v = realloc(r->v, cap * sizeof *v);
    if (!v) return OBJ_EIO;
    r->v = v;
    r->cap = cap;
  }
  Gureum__ObjectMeta *m = walk_rec(w);
  if (!m) return OBJ_OK;
  m->is_latest = !m->tombstone && !r->live_seen;
  r->live_seen |= !m->tombstone;
  r->v[r->n++] = m;
  return OBJ_OK;
}

obj_status_t obj_engine_partition_records(obj_engine_t *e, uint32_t partition,
                                          Gureum__ObjectMeta ***recs, size_t *n) {
  obj_recs_t r = {partition, NULL, 0, 0, 0};
  obj_status_t st = meta_walk(e, NULL, records_one, &r);
  if (st != OBJ_OK) {
    obj_records_free(r.v, r.n);
    r.v = NULL;
    r.n = 0;
  }
  *recs = r.v;
  *n = r.n;
  return st;
}

/* Every version of one key goes, with its blocks, under the key's lock. */
static obj_status_t drop_key(obj_engine_t *e, const char *bucket, const char *key) {
  pthread_mutex_t *mu = stripe(e, bucket, key);
  store_batch_t *b = store_batch_new();
  obj_gc_t g = {0};
  obj_buf_t pre = {0};
  key_versions(&pre, bucket, key);
  obj_status_t st = pre.oom ? OBJ_EIO : OBJ_OK;
  pthread_mutex_lock(mu);
  store_iter_t *it = store_iter_new(e->store, e->meta, NULL);
  for (store_iter_seek(it, pre.p, pre.n); st == OBJ_OK && store_iter_valid(it);
       store_iter_next(it)) {
    size_t kl, vl;
    const uint8_t *k = store_iter_key(it, &kl);
    if (!has_prefix(k, kl, &pre)) break;
    const void *v = store_iter_value(it, &vl);
    Gureum__ObjectMeta *m = gureum__object_meta__unpack(NULL, vl, v);
    if (m) gc_add_meta(&g, m); /* unreadable: its blocks, if any, stay behind as garbage */
    if (m) gureum__object_meta__free_unpacked(m, NULL);
    store_batch_delete(b, e->meta, k, kl);
  }
  if (st == OBJ_OK) st = iter_status(it);
  store_iter_free(it);
  free(pre.p);
  return commit(e, mu, b, &g, st, NULL, NULL);
}

static obj_status_t drop_one(obj_engine_t *e, const obj_walk_t *w, void *arg) {
  const uint32_t *part = arg;
  if (w->part != *part || !w->first) return OBJ_OK;
  char *bucket = strndup((const char *)w->bucket, w->bl);
  char *key = strndup((const char *)w->mk.key, w->mk.kl);
  obj_status_t st = bucket && key ? drop_key(e, bucket, key) : OBJ_EIO;
  free(bucket);
  free(key);
  return st;
}

/* Uploads in progress on the partition's keys would never complete here any more. */
static obj_status_t drop_uploads(obj_engine_t *e, uint32_t part) {
  obj_status_t st = OBJ_OK;
  store_iter_t *it = store_iter_new(e->store, e->mpu, NULL);
  for (store_iter_seek(it, "U", 1); st == OBJ_OK && store_iter_valid(it); store_iter_next(it)) {
    size_t kl, vl;
    const uint8_t *k = store_iter_key(it, &kl);
    if (kl < 1 || k[0] != 'U') break;
    const void *v = store_iter_value(it, &vl);
    Gureum__MultipartUpload *u = gureum__multipart_upload__unpack(NULL, vl, v);
    if (u && obj_partition(u->bucket, u->key) == part) {
      st = obj_engine_mpu_abort(e, u->bucket, u->key, u->upload_id);
      if (st == OBJ_ENOUPLOAD) st = OBJ_OK; /* aborted meanwhile */
    }
    if (u) gureum__multipart_upload__free_unpacked(u, NULL);
  }
  if (st == OBJ_OK) st = iter_status(it);
  store_iter_free(it);
  return st;
}

obj_status_t obj_engine_partition_drop(obj_engine_t *e, uint32_t partition) {
  obj_status_t st = meta_walk(e, NULL, drop_one, &partition);
  return st == OBJ_OK ? drop_uploads(e, partition) : st;
}

typedef struct {
  uint64_t older_than_ms, removed;
} obj_tgc_t;

/* Rechecks under the key's lock that the record is still that old tombstone, then removes it.
 * Unsynced: a removal lost in a crash only brings the tombstone back until the next GC. */
static obj_status_t tgc_one(obj_engine_t *e, const obj_walk_t *w, void *arg) {
  obj_tgc_t *t = arg;
  Gureum__ObjectMeta *m = walk_rec(w);
  if (!m || !m->tombstone || m->mtime_ms >= t->older_than_ms) {
    if (m) gureum__object_meta__free_unpacked(m, NULL);
    return OBJ_OK;
  }
  pthread_mutex_t *mu = stripe(e, m->bucket, m->key);
  gureum__object_meta__free_unpacked(m, NULL);
  pthread_mutex_lock(mu);
  void *v = NULL;
  size_t vl;
  char *err = NULL;
  obj_status_t st = OBJ_OK;
  int rc = store_get(e->store, e->meta, NULL, w->k, w->kl, &v, &vl, &err);
  Gureum__ObjectMeta *cur = rc == STORE_OK ? gureum__object_meta__unpack(NULL, vl, v) : NULL;
  if (rc == STORE_ERR) st = OBJ_EIO;
  if (cur && cur->tombstone && cur->mtime_ms < t->older_than_ms) {
    if (store_delete(e->store, e->meta, w->k, w->kl, 0, &err) == STORE_OK)
      t->removed++;
    else
      st = OBJ_EIO;
  }
  pthread_mutex_unlock(mu);
  if (st != OBJ_OK) log_error("obj", "tombstone_gc_failed", "err=\"%s\"", err ? err : "?");
  if (cur) gureum__object_meta__free_unpacked(cur, NULL);
  free(v);
  free(err);
  return st;
}

obj_status_t obj_engine_gc_tombstones(obj_engine_t *e, uint64_t older_than_ms,
                                      uint64_t *removed) {
  obj_tgc_t t = {older_than_ms, 0};
  obj_status_t st = meta_walk(e, NULL, tgc_one, &t);
  *removed = t.removed;
  return st;
}

/* ---- scrub and block repair ---- */

#define OBJ_SCRUB_SCAN 10000 /* records one scrub step looks at, whatever they are */

void obj_scrub_clear(obj_scrub_t *s) {
  for (size_t i = 0; i < s->nbad; i++) {
    free(s->bad[i].bucket);
    free(s->bad[i].key);
    free(s->bad[i].version_id);
  }
  free(s->bad);
  free(s->next_bucket);
  free(s->next_key);
  free(s->next_vid);
  memset(s, 0, sizeof *s);
}

static obj_status_t scrub_bad(obj_scrub_t *s, const Gureum__ObjectMeta *m, uint64_t off,
                              size_t len) {
  if (s->nbad == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 8;
    obj_bad_block_t *v = realloc(s->bad, cap * sizeof *v);
    if (!v) return OBJ_EIO;
    s->bad = v;
    s->cap = cap;
  }
  obj_bad_block_t *b = &s->bad[s->nbad];
  b->bucket = strdup(m->bucket);
  b->key = strdup(m->key);
  b->version_id = strdup(m->version_id);
  b->offset = off;
  b->len = (uint32_t)len;
  s->nbad++;
  return b->bucket && b->key && b->version_id ? OBJ_OK : OBJ_EIO;
}

/* Reads every block of m as of snap; the bad ones go into s. */
static obj_status_t scrub_version(obj_engine_t *e, const store_snap_t *snap,
                                  const Gureum__ObjectMeta *m, obj_scrub_t *s) {
  const uint8_t *ids;
  const uint64_t *sizes;
  size_t n;
  if (obj_meta_extents(m, &ids, &sizes, &n) != 0) {
    log_warn("obj", "bad_extents", "bucket=%s key=%s version=%s", m->bucket, m->key,
             m->version_id);
    return OBJ_OK; /* a bad record, not a bad block: nothing a block repair could fix */
  }
  uint64_t at = 0;
  obj_status_t st = OBJ_OK;
  for (size_t i = 0; st == OBJ_OK && i < n; at += sizes[i], i++) {
    for (uint64_t blk = 0; st == OBJ_OK && blk < nblocks_of(sizes[i]); blk++) {
      uint64_t left = sizes[i] - blk * OBJ_BLOCK_SIZE;
      size_t len = left > OBJ_BLOCK_SIZE ? OBJ_BLOCK_SIZE : (size_t)left;
      uint8_t *v = NULL;
      st = obj_engine_block_get(e, snap, ids + OBJ_ID_LEN * i, blk, len, &v);
      free(v);
      if (st == OBJ_ECORRUPT) st = scrub_bad(s, m, at + blk * OBJ_BLOCK_SIZE, len);
    }
  }
  return st;
}

/* Positions it after (bucket, key, vid); a vid no longer there restarts at its key. */
static obj_status_t scrub_seek(store_iter_t *it, const char *bucket, const char *key,
                               const char *vid) {
  if (!*bucket) {
    store_iter_seek_first(it);
    return OBJ_OK;
  }
  obj_buf_t pre = {0};
  key_versions(&pre, bucket, key);
  if (pre.oom) return OBJ_EIO;
  size_t vl = strlen(vid);
  int found = 0;
  for (store_iter_seek(it, pre.p, pre.n); *vid && store_iter_valid(it); store_iter_next(it)) {
    size_t kl;
    const uint8_t *k = store_iter_key(it, &kl);
    if (!has_prefix(k, kl, &pre) || kl < pre.n + 8) break;
    if (vid_is(k, kl, pre.n, vid, vl)) {
      store_iter_next(it);
      found = 1;
      break;
    }
  }
  if (*vid && !found) store_iter_seek(it, pre.p, pre.n);
  free(pre.p);
  return OBJ_OK;
}

static int scrub_cursor(obj_scrub_t *s, const uint8_t *b, size_t bl, const obj_mkey_t *mk) {
  free(s->next_bucket);
  free(s->next_key);
  free(s->next_vid);
  s->next_bucket = strndup((const char *)b, bl);
  s->next_key = strndup((const char *)mk->key, mk->kl);
  s->next_vid = strndup((const char *)mk->vid, mk->vl);
  return s->next_bucket && s->next_key && s->next_vid ? 0 : -1;
}

obj_status_t obj_engine_scrub(obj_engine_t *e, const char *after_bucket, const char *after_key,
                              const char *after_vid, uint32_t max_versions, obj_scrub_t *s) {
  memset(s, 0, sizeof *s);
  s->next_bucket = strdup(after_bucket);
  s->next_key = strdup(after_key);
  s->next_vid = strdup(after_vid);
  if (!s->next_bucket || !s->next_key || !s->next_vid) return OBJ_EIO;
  if (!max_versions) max_versions = 1; /* every step makes progress */
  /* One snapshot for records and blocks: a version deleted meanwhile is not a missing block. */
  const store_snap_t *snap = store_snapshot(e->store);
  store_iter_t *it = store_iter_new(e->store, e->meta, snap);
  obj_status_t st = scrub_seek(it, after_bucket, after_key, after_vid);
  uint32_t verified = 0, looked = 0;
  while (st == OBJ_OK && store_iter_valid(it) && verified < max_versions &&
         looked < OBJ_SCRUB_SCAN) {
    size_t kl, vl;
    const uint8_t *k = store_iter_key(it, &kl);
    const uint8_t *z = memchr(k, 0, kl);
    obj_mkey_t mk;
    looked++;
    if (z && mkey_parse(k, kl, (size_t)(z - k), &mk) == 0) {
      if (scrub_cursor(s, k, (size_t)(z - k), &mk) != 0) st = OBJ_EIO;
      const void *v = store_iter_value(it, &vl);
      Gureum__ObjectMeta *m = rec_unpack(v, vl, mk.ts);
      if (m && !m->tombstone && !m->delete_marker && st == OBJ_OK) {
        st = scrub_version(e, snap, m, s);
        verified++;
      }
      if (m) gureum__object_meta__free_unpacked(m, NULL);
    }
    store_iter_next(it);
  }
  if (st == OBJ_OK && !store_iter_valid(it)) {
    st = iter_status(it);
    s->done = st == OBJ_OK;
  }
  store_iter_free(it);
  store_snapshot_release(e->store, snap);
  return st;
}

/* The extent and block of m at object offset `off`, which must be where a block starts. */
static obj_status_t block_locate(const Gureum__ObjectMeta *m, uint64_t off, const uint8_t **id,
                                 uint64_t *idx, size_t *len) {
  const uint8_t *ids;
  const uint64_t *sizes;
  size_t n;
  if (obj_meta_extents(m, &ids, &sizes, &n) != 0) return OBJ_ECORRUPT;
  uint64_t at = 0;
  for (size_t i = 0; i < n; at += sizes[i], i++) {
    if (off < at || off - at >= sizes[i]) continue; /* empty extents hold no block */
    uint64_t within = off - at, left = sizes[i] - within;
    if (within % OBJ_BLOCK_SIZE) return OBJ_ERANGE;
    *id = ids + OBJ_ID_LEN * i;
    *idx = within / OBJ_BLOCK_SIZE;
    *len = left > OBJ_BLOCK_SIZE ? OBJ_BLOCK_SIZE : (size_t)left;
    return OBJ_OK;
  }
  return OBJ_ERANGE;
}

/* What a block fix-up does once its version and block are found, under the key's lock (so
 * the version cannot be deleted and its blocks freed in between). */
typedef obj_status_t (*obj_blockfix_fn)(obj_engine_t *e, const uint8_t *id, uint64_t idx,
                                        size_t len, void *arg);

static obj_status_t block_fix(obj_engine_t *e, const char *bucket, const char *key,
                              const char *vid, uint64_t off, obj_blockfix_fn fn, void *arg) {
  pthread_mutex_t *mu = stripe(e, bucket, key);
  Gureum__ObjectMeta *m = NULL;
  pthread_mutex_lock(mu);
  obj_status_t st = find_version(e, NULL, bucket, key, vid && *vid ? vid : NULL, &m, NULL);
  const uint8_t *id = NULL;
  uint64_t idx = 0;
  size_t len = 0;
  if (st == OBJ_OK) st = block_locate(m, off, &id, &idx, &len);
  if (st == OBJ_OK) st = fn(e, id, idx, len, arg);
  pthread_mutex_unlock(mu);
  if (m) gureum__object_meta__free_unpacked(m, NULL);
  return st;
}

static obj_status_t block_write(obj_engine_t *e, const uint8_t *id, uint64_t idx,
                                const void *val, size_t vl) {
  uint8_t k[OBJ_BLOCK_KEY_LEN];
  obj_block_key(k, id, idx);
  char *err = NULL;
  if (store_put(e->store, e->data, k, sizeof k, val, vl, -1, &err) == STORE_OK) return OBJ_OK;
  log_error("obj", "block_write_failed", "err=\"%s\"", err ? err : "?");
  free(err);
  return OBJ_EIO;
}

typedef struct {
  uint8_t *val;
  size_t len;
} obj_repair_t;

static obj_status_t repair_fn(obj_engine_t *e, const uint8_t *id, uint64_t idx, size_t len,
                              void *arg) {
  obj_repair_t *r = arg;
  if (r->len != len) return OBJ_ERANGE;
  be32_put(r->val, obj_crc32c(0, r->val + 4, len));
  return block_write(e, id, idx, r->val, len + 4);
}

obj_status_t obj_engine_block_repair(obj_engine_t *e, const char *bucket, const char *key,
                                     const char *vid, uint64_t offset, uint8_t *val, size_t len) {
  obj_repair_t r = {val, len};
  obj_status_t st = block_fix(e, bucket, key, vid, offset, repair_fn, &r);
  if (st == OBJ_OK)
    log_info("obj", "block_repaired", "bucket=%s key=%s version=%s offset=%llu", bucket, key,
             vid ? vid : "", (unsigned long long)offset);
  return st;
}

static obj_status_t corrupt_fn(obj_engine_t *e, const uint8_t *id, uint64_t idx, size_t len,
                               void *arg) {
  (void)arg;
  (void)len;
  uint8_t k[OBJ_BLOCK_KEY_LEN];
  obj_block_key(k, id, idx);
  void *v = NULL;
  size_t vl = 0;
  int rc = store_get(e->store, e->data, NULL, k, sizeof k, &v, &vl, NULL);
  if (rc == STORE_ERR) return OBJ_EIO;
  if (rc == STORE_NOTFOUND || vl <= 4) {
    free(v);
    return OBJ_ECORRUPT; /* nothing left to flip */
  }
  ((uint8_t *)v)[4 + (vl - 4) / 2] ^= 0x01;
  obj_status_t st = block_write(e, id, idx, v, vl);
  free(v);
  return st;
}

obj_status_t obj_engine_debug_corrupt(obj_engine_t *e, const char *bucket, const char *key,
                                      const char *vid, uint64_t offset) {
  log_warn("obj", "debug_corrupt", "bucket=%s key=%s version=%s offset=%llu", bucket, key,
           vid ? vid : "", (unsigned long long)offset);
  return block_fix(e, bucket, key, vid, offset, corrupt_fn, NULL);
}
