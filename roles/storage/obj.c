/* obj.c - the storage role's object layer: the asynchronous API of obj.h over the blocking engine
 * in obj_engine.c. Disk work runs on the libuv worker pool; every callback runs on the loop. */
#include "obj.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "obj_engine.h"
#include "obj_stats.h"

typedef struct obj_op_s obj_op_t;
typedef void (*obj_op_fn)(obj_op_t *op);

/* One asynchronous step: `work` on a worker thread (or none), then `done` on the loop. Callers
 * rely on completions never running inside the call that started them, so steps without disk
 * work are deferred to the next loop iteration rather than completed in place. */
struct obj_op_s {
  obj_t *o;
  obj_op_fn work, done;
  obj_op_t *next; /* defer queue */
  obj_status_t st;
};

struct obj_s {
  uv_loop_t *loop;
  obj_engine_t *eng;
  uv_idle_t *idle; /* active while deferred completions wait; freed by its close callback */
  obj_op_t *dq_head, *dq_tail;
  int closing; /* obj_free was called while steps were in flight: the last one frees */
  obj_stats_t stats;
};

static void obj_release(obj_t *o);

/* Two calls racing on one writer or reader are a bug in the caller that would corrupt the
 * stream; stop loudly rather than guess. */
static void obj_misuse(const char *what) {
  log_error("obj", "misuse", "call=%s", what);
  abort();
}

static char *dupz(const char *s) { return strdup(s ? s : ""); }

static char *dup_or_null(const char *s) { return s && *s ? strdup(s) : NULL; }

static uint64_t now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

const char *obj_strerror(obj_status_t s) {
  switch (s) {
  case OBJ_OK: return "ok";
  case OBJ_ENOENT: return "no such key";
  case OBJ_ENOVERSION: return "no such version";
  case OBJ_EDELETED: return "delete marker";
  case OBJ_ENOUPLOAD: return "no such upload";
  case OBJ_EPART: return "invalid part";
  case OBJ_EPARTORDER: return "invalid part order";
  case OBJ_ETOOSMALL: return "part too small";
  case OBJ_ERANGE: return "invalid range";
  case OBJ_ECORRUPT: return "data corrupt";
  case OBJ_EIO: return "i/o error";
  case OBJ_ECANCELED: return "canceled";
  case OBJ_EPRECOND: return "precondition failed";
  case OBJ_EUNAVAIL: return "not enough replicas reachable";
  }
  return "unknown";
}

/* ---- steps ---- */

static void op_end(obj_t *o) {
  o->stats.inflight--;
  if (o->closing && o->stats.inflight == 0) obj_release(o);
}

static void op_work(void *arg) {
  obj_op_t *op = arg;
  op->work(op);
}

static void op_after(void *arg, int cancelled) {
  obj_op_t *op = arg;
  obj_t *o = op->o;
  if (cancelled) op->st = OBJ_ECANCELED;
  op->done(op); /* may free op */
  op_end(o);
}

static void on_idle(uv_idle_t *h) {
  obj_t *o = h->data;
  obj_op_t *op = o->dq_head;
  /* Detach first: completions may defer more, which then run on the next iteration. */
  o->dq_head = o->dq_tail = NULL;
  uv_idle_stop(h);
  while (op) {
    obj_op_t *next = op->next;
    op_after(op, 0); /* only the last one can release o */
    op = next;
  }
}

static void op_defer(obj_op_t *op) {
  obj_t *o = op->o;
  o->stats.inflight++;
  op->next = NULL;
  if (o->dq_tail)
    o->dq_tail->next = op;
  else
    o->dq_head = op;
  o->dq_tail = op;
  uv_idle_start(o->idle, on_idle);
}

static void op_start(obj_op_t *op, obj_op_fn work, obj_op_fn done) {
  op->work = work;
  op->done = done;
  op->st = OBJ_OK;
  if (!work) {
    op_defer(op);
    return;
  }
  int rc = store_submit(op->o->loop, op_work, op_after, op);
  if (rc == 0) {
    op->o->stats.inflight++;
    return;
  }
  log_error("obj", "submit_failed", "err=%s", uv_strerror(rc));
  op->st = OBJ_EIO;
  op_defer(op);
}

/* ---- the layer ---- */

static void idle_closed(uv_handle_t *h) { free(h); }

obj_t *obj_new(uv_loop_t *loop, store_t *store, char **err) {
  obj_t *o = calloc(1, sizeof *o);
  uv_idle_t *idle = malloc(sizeof *idle);
  if (!o || !idle) {
    free(o);
    free(idle);
    if (err) *err = strdup("obj: out of memory");
    return NULL;
  }
  /* Creating the column families the first time touches the disk; this runs once at start. */
  o->eng = obj_engine_new(store, err);
  if (!o->eng) {
    free(o);
    free(idle);
    return NULL;
  }
  o->loop = loop;
  uv_idle_init(loop, idle);
  idle->data = o;
  o->idle = idle;
  return o;
}

static void obj_release(obj_t *o) {
  obj_engine_free(o->eng);
  uv_close((uv_handle_t *)o->idle, idle_closed);
  free(o);
}

/* Callers wait for their own callbacks first. Steps nobody waits for (the block deletion of an
 * abort, a read finishing for a freed reader) may still be running: the release then happens
 * when the last of them completes, so keep the loop running and the store open until it is
 * empty, as node shutdown does. Either way the loop must run once more to close our handle. */
void obj_free(obj_t *o) {
  if (!o) return;
  if (o->stats.inflight)
    o->closing = 1;
  else
    obj_release(o);
}

void obj_stats(const obj_t *o, obj_stats_t *out) { *out = o->stats; }

/* ---- writers ---- */

enum { OBJ_W_PUT, OBJ_W_PART };

/* An obj_cond_t whose strings we own. */
typedef struct {
  obj_cond_t c;
  int set;
} obj_cond_copy_t;

static void cond_copy(obj_cond_copy_t *dst, const obj_cond_t *src) {
  dst->c.if_match = src && src->if_match ? strdup(src->if_match) : NULL;
  dst->c.if_none_match = src && src->if_none_match ? strdup(src->if_none_match) : NULL;
  dst->set = dst->c.if_match || dst->c.if_none_match;
}

static void cond_clear(obj_cond_copy_t *c) {
  free((char *)c->c.if_match);
  free((char *)c->c.if_none_match);
  memset(c, 0, sizeof *c);
}

struct obj_writer_s {
  obj_op_t op; /* the one step in flight: block flush, write completion, commit or abort */
  int kind, versioned;
  Gureum__ObjectMeta *meta; /* put: the caller's headers; part: bucket and key */
  char *upload_id;
  uint32_t part_number;
  uint8_t id[OBJ_ID_LEN]; /* names this writer's blocks */
  uint8_t *blk;           /* 4 checksum bytes, then one block of data */
  size_t fill;
  uint64_t size, nblk; /* bytes taken in; blocks on disk */
  EVP_MD_CTX *md5;
  uint8_t digest[16];
  int md5_done;
  const uint8_t *src; /* the caller's piece, taken in as the buffer drains */
  size_t left;
  obj_done_fn wcb;
  void *warg;
  obj_meta_fn ccb;
  void *carg;
  Gureum__ObjectMeta *result;
  obj_cond_copy_t cond;
  obj_status_t err; /* sticky: after a failed block write the writer only fails */
  int busy, aborted, committing;
};

static obj_writer_t *writer_new(obj_t *o, int kind, Gureum__ObjectMeta *meta) {
  obj_writer_t *w = calloc(1, sizeof *w);
  if (!w || !meta) {
    free(w);
    if (meta) gureum__object_meta__free_unpacked(meta, NULL);
    return NULL;
  }
  w->op.o = o;
  w->kind = kind;
  w->meta = meta;
  w->md5 = EVP_MD_CTX_new();
  if (!w->md5 || EVP_DigestInit_ex(w->md5, EVP_md5(), NULL) != 1) {
    EVP_MD_CTX_free(w->md5);
    gureum__object_meta__free_unpacked(meta, NULL);
    free(w);
    return NULL;
  }
  obj_random_bytes(w->id, sizeof w->id);
  o->stats.writers++;
  return w;
}

static void writer_free(obj_writer_t *w) {
  obj_t *o = w->op.o;
  if (w->blk) o->stats.buffered -= OBJ_BLOCK_SIZE + 4;
  free(w->blk);
  EVP_MD_CTX_free(w->md5);
  gureum__object_meta__free_unpacked(w->meta, NULL);
  if (w->result) gureum__object_meta__free_unpacked(w->result, NULL);
  free(w->upload_id);
  cond_clear(&w->cond);
  o->stats.writers--;
  free(w);
}

static void writer_step(obj_writer_t *w, obj_op_fn work, obj_op_fn done) {
  w->busy = 1;
  op_start(&w->op, work, done);
}

static int meta_named(const Gureum__ObjectMeta *m) {
  return m && m->bucket && *m->bucket && m->key && *m->key;
}

obj_writer_t *obj_put_begin(obj_t *o, const Gureum__ObjectMeta *meta, int versioned) {
  if (!meta_named(meta)) return NULL;
  obj_writer_t *w = writer_new(o, OBJ_W_PUT, obj_meta_dup(meta));
  if (w) w->versioned = versioned;
  return w;
}

obj_writer_t *obj_mpu_part_begin(obj_t *o, const char *bucket, const char *key,
                                 const char *upload_id, uint32_t part_number) {
  Gureum__ObjectMeta m = GUREUM__OBJECT_META__INIT;
  m.bucket = (char *)bucket;
  m.key = (char *)key;
  if (!meta_named(&m) || !upload_id) return NULL;
  obj_writer_t *w = writer_new(o, OBJ_W_PART, obj_meta_dup(&m));
  if (!w) return NULL;
  w->part_number = part_number;
  if (!(w->upload_id = strdup(upload_id))) {
    writer_free(w);
    return NULL;
  }
  return w;
}

static void writer_abort_start(obj_writer_t *w);

/* Hands the caller its write callback; the writer stays usable (the caller may free it). */
static void writer_write_cb(obj_writer_t *w) {
  obj_done_fn cb = w->wcb;
  w->wcb = NULL;
  cb(w->warg, w->err);
}

static void writer_write_done(obj_op_t *op) {
  obj_writer_t *w = (obj_writer_t *)op;
  w->busy = 0;
  if (w->aborted)
    writer_abort_start(w);
  else
    writer_write_cb(w);
}

/* Worker: one full or final block to disk; hashing here keeps MD5 off the loop thread. */
static obj_status_t writer_block_put(obj_writer_t *w) {
  if (!w->md5_done && EVP_DigestUpdate(w->md5, w->blk + 4, w->fill) != 1) return OBJ_EIO;
  obj_status_t st = obj_engine_block_put(w->op.o->eng, w->id, w->nblk, w->blk, w->fill);
  if (st == OBJ_OK) {
    w->nblk++;
    w->fill = 0;
  }
  return st;
}

static void writer_flush_work(obj_op_t *op) { op->st = writer_block_put((obj_writer_t *)op); }

static void writer_take(obj_writer_t *w);

static void writer_flush_done(obj_op_t *op) {
  obj_writer_t *w = (obj_writer_t *)op;
  w->busy = 0;
  if (op->st != OBJ_OK) w->err = op->st;
  if (w->aborted)
    writer_abort_start(w);
  else if (w->err != OBJ_OK || w->left == 0)
    writer_write_cb(w); /* already asynchronous: no need to defer */
  else
    writer_take(w);
}

/* Copies the caller's piece into the block buffer. A full block goes to disk and the rest of
 * the piece waits in the caller's memory until that is done: one block per writer, never more. */
static void writer_take(obj_writer_t *w) {
  if (w->err == OBJ_OK && w->left && w->md5_done) {
    log_error("obj", "write_after_md5", "bucket=%s key=%s", w->meta->bucket, w->meta->key);
    w->err = OBJ_EIO;
  }
  if (w->err == OBJ_OK && w->left && !w->blk) {
    if (!(w->blk = malloc(OBJ_BLOCK_SIZE + 4))) {
      w->err = OBJ_EIO;
    } else {
      obj_stats_t *s = &w->op.o->stats;
      s->buffered += OBJ_BLOCK_SIZE + 4;
      if (s->buffered > s->buffered_peak) s->buffered_peak = s->buffered;
    }
  }
  while (w->err == OBJ_OK && w->left) {
    size_t n = OBJ_BLOCK_SIZE - w->fill;
    if (n > w->left) n = w->left;
    memcpy(w->blk + 4 + w->fill, w->src, n);
    w->fill += n;
    w->src += n;
    w->left -= n;
    w->size += n;
    if (w->fill == OBJ_BLOCK_SIZE) {
      writer_step(w, writer_flush_work, writer_flush_done);
      return;
    }
  }
  writer_step(w, NULL, writer_write_done);
}

void obj_write(obj_writer_t *w, const void *data, size_t len, obj_done_fn cb, void *arg) {
  if (w->busy || w->committing || w->aborted) obj_misuse("obj_write");
  w->src = data;
  w->left = len;
  w->wcb = cb;
  w->warg = arg;
  writer_take(w);
}

const uint8_t *obj_writer_md5(obj_writer_t *w) {
  if (!w->md5_done) {
    if (w->busy) obj_misuse("obj_writer_md5");
    /* The buffered tail is hashed here; the commit then writes it without hashing again. */
    if (w->fill) EVP_DigestUpdate(w->md5, w->blk + 4, w->fill);
    EVP_DigestFinal_ex(w->md5, w->digest, NULL);
    w->md5_done = 1;
  }
  return w->digest;
}

static void set_str(char **slot, const char *v) {
  if (*slot && *slot != protobuf_c_empty_string) free(*slot);
  *slot = strdup(v ? v : "");
}

void obj_writer_set_checksum(obj_writer_t *w, const char *algo, const char *value, const char *type) {
  set_str(&w->meta->checksum_algorithm, algo);
  set_str(&w->meta->checksum_value, value);
  set_str(&w->meta->checksum_type, type);
}

void obj_writer_set_cond(obj_writer_t *w, const obj_cond_t *cond) {
  if (w->kind != OBJ_W_PUT || w->committing) obj_misuse("obj_writer_set_cond");
  cond_clear(&w->cond);
  cond_copy(&w->cond, cond);
}

static obj_status_t writer_record(obj_writer_t *w, const char *etag) {
  obj_engine_t *e = w->op.o->eng;
  if (w->kind == OBJ_W_PUT) {
    Gureum__ObjectMeta m = *w->meta;
    /* A copy of an existing version (repair pulls one, identity and ETag given) keeps its ETag
     * and part count: a multipart object stays "-N" everywhere. Its bytes land in one extent
     * here, so part sizes (partNumber reads) are not kept on such a copy. */
    int copy = m.ts_us && m.etag && *m.etag;
    m.size = w->size;
    if (!copy || strcmp(m.etag, etag) == 0 || m.parts_count == 0) m.etag = (char *)etag;
    m.data_id.data = w->id;
    m.data_id.len = OBJ_ID_LEN;
    m.block_size = OBJ_BLOCK_SIZE;
    if (!copy) m.parts_count = 0;
    m.n_part_sizes = 0;
    m.part_sizes = NULL;
    m.delete_marker = 0;
    return obj_engine_put(e, &m, w->versioned, w->cond.set ? &w->cond.c : NULL, &w->result);
  }
  Gureum__UploadPart p = GUREUM__UPLOAD_PART__INIT;
  p.part_number = w->part_number;
  p.size = w->size;
  p.etag = (char *)etag;
  p.mtime_ms = now_ms();
  p.data_id.data = w->id;
  p.data_id.len = OBJ_ID_LEN;
  p.block_size = OBJ_BLOCK_SIZE;
  p.checksum_value = w->meta->checksum_value ? w->meta->checksum_value : (char *)"";
  obj_status_t st = obj_engine_mpu_put_part(e, w->meta->bucket, w->meta->key, w->upload_id, &p);
  if (st != OBJ_OK) return st;
  Gureum__ObjectMeta m = GUREUM__OBJECT_META__INIT;
  m.bucket = w->meta->bucket;
  m.key = w->meta->key;
  m.size = p.size;
  m.etag = p.etag;
  m.mtime_ms = p.mtime_ms;
  m.checksum_algorithm = w->meta->checksum_algorithm ? w->meta->checksum_algorithm : (char *)"";
  m.checksum_value = p.checksum_value;
  w->result = obj_meta_dup(&m);
  return w->result ? OBJ_OK : OBJ_EIO;
}

/* Worker: the last partial block, the ETag, then the record that makes it all visible. */
static void writer_commit_work(obj_op_t *op) {
  obj_writer_t *w = (obj_writer_t *)op;
  obj_status_t st = w->err;
  if (st == OBJ_OK && w->fill) st = writer_block_put(w);
  if (st == OBJ_OK && !w->md5_done) {
    st = EVP_DigestFinal_ex(w->md5, w->digest, NULL) == 1 ? OBJ_OK : OBJ_EIO;
    w->md5_done = 1;
  }
  char etag[33];
  obj_hex(etag, w->digest, 16);
  if (st == OBJ_OK) st = writer_record(w, etag);
  /* Nothing points at the blocks of a failed commit: free them now, not as orphans later. */
  if (st != OBJ_OK && w->nblk) obj_engine_blocks_delete(op->o->eng, w->id, w->nblk);
  op->st = st;
}

static void writer_commit_done(obj_op_t *op) {
  obj_writer_t *w = (obj_writer_t *)op;
  w->ccb(w->carg, op->st, op->st == OBJ_OK ? w->result : NULL);
  writer_free(w);
}

void obj_put_commit(obj_writer_t *w, obj_meta_fn cb, void *arg) {
  if (w->busy || w->committing || w->aborted) obj_misuse("obj_put_commit");
  w->committing = 1;
  w->ccb = cb;
  w->carg = arg;
  writer_step(w, writer_commit_work, writer_commit_done);
}

static void writer_abort_work(obj_op_t *op) {
  obj_writer_t *w = (obj_writer_t *)op;
  op->st = obj_engine_blocks_delete(op->o->eng, w->id, w->nblk);
}

static void writer_abort_done(obj_op_t *op) { writer_free((obj_writer_t *)op); }

static void writer_abort_start(obj_writer_t *w) {
  if (w->nblk)
    writer_step(w, writer_abort_work, writer_abort_done);
  else
    writer_free(w);
}

/* A step in flight finishes first (its callback is then dropped); the blocks go afterwards. */
void obj_put_abort(obj_writer_t *w) {
  if (!w) return;
  if (w->committing || w->aborted) obj_misuse("obj_put_abort");
  w->aborted = 1;
  if (!w->busy) writer_abort_start(w);
}

/* ---- readers ---- */

struct obj_reader_s {
  obj_op_t op; /* the lookup or one block read */
  char *bucket, *key, *vid;
  const store_snap_t *snap; /* blocks are read as of the lookup, even if overwritten since */
  Gureum__ObjectMeta *meta;
  obj_status_t mst; /* what the lookup said */
  obj_meta_fn mcb;
  void *marg;
  obj_data_fn dcb;
  void *darg;
  const uint8_t *ids; /* extents: data ids, sizes and where each starts in the object */
  const uint64_t *sizes;
  uint64_t *starts;
  size_t next, ext; /* number of extents; the one `pos` is in */
  int bad_extents, bad_range;
  uint64_t pos, end;
  uint64_t blk; /* the block being read: its index, length, and the slice wanted */
  size_t blen, skip, n;
  uint8_t *val; /* the last block handed out; valid until the next obj_read */
  int busy, freed;
};

static void reader_destroy(obj_reader_t *r) {
  obj_t *o = r->op.o;
  if (r->snap) obj_engine_snapshot_release(o->eng, r->snap);
  if (r->meta) gureum__object_meta__free_unpacked(r->meta, NULL);
  free(r->val);
  free(r->starts);
  free(r->bucket);
  free(r->key);
  free(r->vid);
  o->stats.readers--;
  free(r);
}

static void reader_lookup_work(obj_op_t *op) {
  obj_reader_t *r = (obj_reader_t *)op;
  r->snap = obj_engine_snapshot(op->o->eng);
  op->st = obj_engine_head(op->o->eng, r->snap, r->bucket, r->key, r->vid, &r->meta);
}

static void reader_extents(obj_reader_t *r) {
  if (obj_meta_extents(r->meta, &r->ids, &r->sizes, &r->next) != 0) {
    r->bad_extents = 1;
    return;
  }
  r->starts = malloc((r->next + 1) * sizeof *r->starts);
  if (!r->starts) {
    r->bad_extents = 1;
    return;
  }
  uint64_t at = 0;
  for (size_t i = 0; i < r->next; i++) {
    r->starts[i] = at;
    at += r->sizes[i];
  }
  if (at != r->meta->size) r->bad_extents = 1;
  r->pos = 0;
  r->end = r->meta->size;
}

static void reader_lookup_done(obj_op_t *op) {
  obj_reader_t *r = (obj_reader_t *)op;
  r->busy = 0;
  r->mst = op->st;
  if (r->freed) {
    reader_destroy(r);
    return;
  }
  if (op->st == OBJ_OK) reader_extents(r);
  r->mcb(r->marg, op->st, r->meta); /* last use of r: the callback may free it */
}

obj_reader_t *obj_get_begin(obj_t *o, const char *bucket, const char *key, const char *version_id,
                            obj_meta_fn cb, void *arg) {
  obj_reader_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->op.o = o;
  r->bucket = dupz(bucket);
  r->key = dupz(key);
  r->vid = dup_or_null(version_id);
  r->mcb = cb;
  r->marg = arg;
  o->stats.readers++;
  if (!r->bucket || !r->key || (version_id && *version_id && !r->vid)) {
    reader_destroy(r);
    return NULL;
  }
  r->busy = 1;
  op_start(&r->op, reader_lookup_work, reader_lookup_done);
  return r;
}

void obj_reader_range(obj_reader_t *r, uint64_t off, uint64_t len) {
  if (r->busy) obj_misuse("obj_reader_range"); /* the worker may be filling r->meta */
  if (r->mst != OBJ_OK || !r->meta) return;
  uint64_t size = r->meta->size;
  r->bad_range = size > 0 && off >= size;
  if (r->bad_range) return;
  if (off > size) off = size; /* an empty object: any range reads as empty */
  r->pos = off;
  r->end = len > size - off ? size : off + len;
  r->ext = 0;
}

static void reader_read_work(obj_op_t *op) {
  obj_reader_t *r = (obj_reader_t *)op;
  op->st = obj_engine_block_get(op->o->eng, r->snap, r->ids + OBJ_ID_LEN * r->ext, r->blk,
                                r->blen, &r->val);
}

static void reader_read_done(obj_op_t *op) {
  obj_reader_t *r = (obj_reader_t *)op;
  r->busy = 0;
  if (r->freed) {
    reader_destroy(r);
    return;
  }
  if (op->st != OBJ_OK) {
    r->dcb(r->darg, op->st, NULL, 0, 1);
    return;
  }
  if (!r->n) {
    r->dcb(r->darg, OBJ_OK, NULL, 0, 1);
    return;
  }
  r->pos += r->n;
  r->dcb(r->darg, OBJ_OK, r->val + 4 + r->skip, r->n, r->pos >= r->end);
}

/* Chooses the block holding `pos` and the slice of it that is wanted. */
static void reader_locate(obj_reader_t *r) {
  /* Sequential reads move forward, so walking on from the last extent is cheap; a new range
   * reset the walk. Empty extents (a 0-byte last part) are stepped over. */
  while (r->ext + 1 < r->next && r->pos >= r->starts[r->ext] + r->sizes[r->ext]) r->ext++;
  uint64_t within = r->pos - r->starts[r->ext];
  uint64_t left_in_ext = r->sizes[r->ext] - within;
  r->blk = within / OBJ_BLOCK_SIZE;
  r->skip = (size_t)(within % OBJ_BLOCK_SIZE);
  uint64_t blen = r->sizes[r->ext] - r->blk * OBJ_BLOCK_SIZE;
  r->blen = blen > OBJ_BLOCK_SIZE ? OBJ_BLOCK_SIZE : (size_t)blen;
  uint64_t n = r->blen - r->skip;
  if (n > left_in_ext) n = left_in_ext;
  if (n > r->end - r->pos) n = r->end - r->pos;
  r->n = (size_t)n;
}

void obj_read(obj_reader_t *r, obj_data_fn cb, void *arg) {
  if (r->busy || r->freed) obj_misuse("obj_read");
  r->dcb = cb;
  r->darg = arg;
  free(r->val);
  r->val = NULL;
  r->n = 0;
  r->busy = 1;
  obj_status_t st = r->mst;
  if (st == OBJ_OK && r->bad_range) st = OBJ_ERANGE;
  if (st == OBJ_OK && r->bad_extents) st = OBJ_ECORRUPT;
  if (st != OBJ_OK || r->pos >= r->end) {
    op_start(&r->op, NULL, reader_read_done);
    r->op.st = st;
    return;
  }
  reader_locate(r);
  op_start(&r->op, reader_read_work, reader_read_done);
}

/* A step in flight finishes first; its callback is then dropped. */
void obj_reader_free(obj_reader_t *r) {
  if (!r || r->freed) return;
  r->freed = 1;
  if (!r->busy) reader_destroy(r);
}

/* ---- callbacks of the one-shot operations ---- */

typedef enum {
  OBJ_CB_META,
  OBJ_CB_DONE,
  OBJ_CB_UPLOAD,
  OBJ_CB_LIST,
  OBJ_CB_PARTS,
  OBJ_CB_UPLOADS,
  OBJ_CB_EMPTY,
  OBJ_CB_GC,
  OBJ_CB_DIGESTS,
  OBJ_CB_RECORDS,
  OBJ_CB_SCRUB,
} obj_cb_kind_t;

typedef void (*obj_gc_fn)(void *arg, obj_status_t st, uint64_t removed);
typedef void (*obj_digests_fn)(void *arg, obj_status_t st, const obj_digests_t *d);
typedef void (*obj_records_fn)(void *arg, obj_status_t st, Gureum__ObjectMeta **recs, size_t n);
typedef void (*obj_scrub_fn)(void *arg, obj_status_t st, const obj_bad_block_t *bad, size_t nbad,
                             const char *next_bucket, const char *next_key, const char *next_vid,
                             int done);

typedef union {
  obj_meta_fn meta;
  obj_done_fn done;
  obj_upload_fn upload;
  obj_list_fn list;
  obj_parts_fn parts;
  obj_uploads_fn ups;
  void (*empty)(void *arg, int empty);
  obj_gc_fn gc;
  obj_digests_fn digests;
  obj_records_fn records;
  obj_scrub_fn scrub;
} obj_cb_t;

/* When an operation cannot even be set up (out of memory, a request without bucket or key),
 * the caller still hears back, with OBJ_EIO, and still on a later loop iteration. */
typedef struct {
  obj_op_t op;
  obj_cb_kind_t kind;
  obj_cb_t cb;
  void *arg;
  obj_list_t list; /* empty */
} obj_fail_t;

static void fail_done(obj_op_t *op) {
  obj_fail_t *f = (obj_fail_t *)op;
  switch (f->kind) {
  case OBJ_CB_META: f->cb.meta(f->arg, OBJ_EIO, NULL); break;
  case OBJ_CB_DONE: f->cb.done(f->arg, OBJ_EIO); break;
  case OBJ_CB_UPLOAD: f->cb.upload(f->arg, OBJ_EIO, NULL); break;
  case OBJ_CB_LIST: f->cb.list(f->arg, OBJ_EIO, &f->list); break;
  case OBJ_CB_PARTS: f->cb.parts(f->arg, OBJ_EIO, NULL, 0, 0); break;
  case OBJ_CB_UPLOADS: f->cb.ups(f->arg, OBJ_EIO, NULL, 0, 0); break;
  case OBJ_CB_EMPTY: f->cb.empty(f->arg, -1); break;
  case OBJ_CB_GC: f->cb.gc(f->arg, OBJ_EIO, 0); break;
  case OBJ_CB_DIGESTS: f->cb.digests(f->arg, OBJ_EIO, NULL); break;
  case OBJ_CB_RECORDS: f->cb.records(f->arg, OBJ_EIO, NULL, 0); break;
  case OBJ_CB_SCRUB: f->cb.scrub(f->arg, OBJ_EIO, NULL, 0, "", "", "", 0); break;
  }
  free(f);
}

static void fail_later(obj_t *o, obj_cb_kind_t kind, obj_cb_t cb, void *arg) {
  obj_fail_t *f = calloc(1, sizeof *f);
  if (!f) {
    log_error("obj", "oom_lost_callback", "kind=%d", (int)kind);
    return;
  }
  f->op.o = o;
  f->kind = kind;
  f->cb = cb;
  f->arg = arg;
  op_start(&f->op, NULL, fail_done);
}

/* ---- one-shot operations on versions and uploads ---- */

typedef struct {
  obj_op_t op;
  char *bucket, *key, *vid, *str; /* str: versioning, or the upload id */
  int versioned;
  obj_ident_t ident; /* with has_ident: the coordinator's identity (version_id is ours) */
  int has_ident;
  Gureum__ObjectMeta *in; /* headers (mpu_create) or tags (set_tags), our own copy */
  obj_part_ref_t *parts;
  size_t nparts;
  obj_cond_copy_t cond;
  Gureum__ObjectMeta *meta; /* the result */
  char upload_id[OBJ_UID_LEN + 1];
  obj_cb_t cb;
  void *arg;
} obj_mop_t;

static void mop_free(obj_mop_t *m) {
  free(m->bucket);
  free(m->key);
  free(m->vid);
  free(m->str);
  free((char *)m->ident.version_id);
  if (m->in) gureum__object_meta__free_unpacked(m->in, NULL);
  if (m->meta) gureum__object_meta__free_unpacked(m->meta, NULL);
  for (size_t i = 0; i < m->nparts; i++) free((char *)m->parts[i].etag);
  free(m->parts);
  cond_clear(&m->cond);
  free(m);
}

static obj_mop_t *mop_new(obj_t *o, const char *bucket, const char *key, const char *vid,
                          const char *str, obj_cb_t cb, void *arg) {
  obj_mop_t *m = calloc(1, sizeof *m);
  if (!m) return NULL;
  m->op.o = o;
  m->bucket = dupz(bucket);
  m->key = dupz(key);
  m->vid = dup_or_null(vid);
  m->str = dupz(str);
  m->cb = cb;
  m->arg = arg;
  if (!m->bucket || !m->key || !m->str || (vid && *vid && !m->vid)) {
    mop_free(m);
    return NULL;
  }
  return m;
}

/* Our own copy of a coordinator's identity; 0 if out of memory. */
static int mop_ident(obj_mop_t *m, const obj_ident_t *ident) {
  if (!ident) return 1;
  m->ident.version_id = dupz(ident->version_id);
  m->ident.ts_us = ident->ts_us;
  m->has_ident = 1;
  return m->ident.version_id != NULL;
}

static const obj_ident_t *mop_ident_get(const obj_mop_t *m) {
  return m->has_ident ? &m->ident : NULL;
}

static void mop_meta_done(obj_op_t *op) {
  obj_mop_t *m = (obj_mop_t *)op;
  m->cb.meta(m->arg, op->st, m->meta);
  mop_free(m);
}

static void mop_done_done(obj_op_t *op) {
  obj_mop_t *m = (obj_mop_t *)op;
  m->cb.done(m->arg, op->st);
  mop_free(m);
}

static void mop_upload_done(obj_op_t *op) {
  obj_mop_t *m = (obj_mop_t *)op;
  m->cb.upload(m->arg, op->st, op->st == OBJ_OK ? m->upload_id : NULL);
  mop_free(m);
}

static void mop_start(obj_t *o, obj_mop_t *m, obj_op_fn work, obj_op_fn done,
                      obj_cb_kind_t kind, obj_cb_t cb, void *arg) {
  if (m)
    op_start(&m->op, work, done);
  else
    fail_later(o, kind, cb, arg);
}

static void head_work(obj_op_t *op) {
  obj_mop_t *m = (obj_mop_t *)op;
  op->st = obj_engine_head(op->o->eng, NULL, m->bucket, m->key, m->vid, &m->meta);
}

void obj_head(obj_t *o, const char *bucket, const char *key, const char *version_id, obj_meta_fn cb,
              void *arg) {
  obj_cb_t c = {.meta = cb};
  obj_mop_t *m = mop_new(o, bucket, key, version_id, NULL, c, arg);
  mop_start(o, m, head_work, mop_meta_done, OBJ_CB_META, c, arg);
}

static void tags_work(obj_op_t *op) {
  obj_mop_t *m = (obj_mop_t *)op;
  op->st = obj_engine_set_tags(op->o->eng, m->bucket, m->key, m->vid, m->in->tags, m->in->n_tags,
                               &m->meta);
}

void obj_set_tags(obj_t *o, const char *bucket, const char *key, const char *version_id,
                  const Gureum__KeyValue *const *tags, size_t n, obj_meta_fn cb, void *arg) {
  obj_cb_t c = {.meta = cb};
  obj_mop_t *m = mop_new(o, bucket, key, version_id, NULL, c, arg);
  if (m) {
    /* Our own copy of the tags, made by packing them in an otherwise empty record. */
    Gureum__ObjectMeta t = GUREUM__OBJECT_META__INIT;
    t.tags = (Gureum__KeyValue **)tags;
    t.n_tags = n;
    if (!(m->in = obj_meta_dup(&t))) {
      mop_free(m);
      m = NULL;
    }
  }
  mop_start(o, m, tags_work, mop_meta_done, OBJ_CB_META, c, arg);
}

static void delete_work(obj_op_t *op) {
  obj_mop_t *m = (obj_mop_t *)op;
  op->st = obj_engine_delete(op->o->eng, m->bucket, m->key, m->vid, m->str, mop_ident_get(m),
                             &m->meta);
}

void obj_delete_at(obj_t *o, const char *bucket, const char *key, const char *version_id,
                   const char *versioning, const obj_ident_t *ident, obj_meta_fn cb, void *arg) {
  obj_cb_t c = {.meta = cb};
  obj_mop_t *m = mop_new(o, bucket, key, version_id, versioning, c, arg);
  if (m && !mop_ident(m, ident)) {
    mop_free(m);
    m = NULL;
  }
  mop_start(o, m, delete_work, mop_meta_done, OBJ_CB_META, c, arg);
}

void obj_delete(obj_t *o, const char *bucket, const char *key, const char *version_id,
                const char *versioning, obj_meta_fn cb, void *arg) {
  obj_delete_at(o, bucket, key, version_id, versioning, NULL, cb, arg);
}

static void apply_work(obj_op_t *op) {
  obj_mop_t *m = (obj_mop_t *)op;
  op->st = obj_engine_apply(op->o->eng, m->in, &m->meta);
}

void obj_apply_record(obj_t *o, const Gureum__ObjectMeta *rec, obj_meta_fn cb, void *arg) {
  obj_cb_t c = {.meta = cb};
  obj_mop_t *m = meta_named(rec) ? mop_new(o, rec->bucket, rec->key, NULL, NULL, c, arg) : NULL;
  if (m && !(m->in = obj_meta_dup(rec))) {
    mop_free(m);
    m = NULL;
  }
  mop_start(o, m, apply_work, mop_meta_done, OBJ_CB_META, c, arg);
}

static void mpu_create_work(obj_op_t *op) {
  obj_mop_t *m = (obj_mop_t *)op;
  op->st = obj_engine_mpu_create(op->o->eng, m->in, m->upload_id);
}

void obj_mpu_create(obj_t *o, const Gureum__ObjectMeta *meta, obj_upload_fn cb, void *arg) {
  obj_cb_t c = {.upload = cb};
  obj_mop_t *m = meta_named(meta) ? mop_new(o, meta->bucket, meta->key, NULL, NULL, c, arg) : NULL;
  if (m && !(m->in = obj_meta_dup(meta))) {
    mop_free(m);
    m = NULL;
  }
  mop_start(o, m, mpu_create_work, mop_upload_done, OBJ_CB_UPLOAD, c, arg);
}

static void mpu_complete_work(obj_op_t *op) {
  obj_mop_t *m = (obj_mop_t *)op;
  op->st = obj_engine_mpu_complete(op->o->eng, m->bucket, m->key, m->str, m->parts, m->nparts,
                                   m->versioned, m->cond.set ? &m->cond.c : NULL,
                                   mop_ident_get(m), &m->meta);
}

void obj_mpu_complete(obj_t *o, const char *bucket, const char *key, const char *upload_id,
                      const obj_part_ref_t *parts, size_t n, int versioned,
                      const obj_cond_t *cond, const obj_ident_t *ident, obj_meta_fn cb,
                      void *arg) {
  obj_cb_t c = {.meta = cb};
  obj_mop_t *m = mop_new(o, bucket, key, NULL, upload_id, c, arg);
  if (m && n && !(m->parts = calloc(n, sizeof *m->parts))) {
    mop_free(m);
    m = NULL;
  }
  for (size_t i = 0; m && i < n; i++) {
    m->parts[i].part_number = parts[i].part_number;
    m->parts[i].etag = dupz(parts[i].etag);
    m->nparts++;
    if (!m->parts[i].etag) {
      mop_free(m);
      m = NULL;
    }
  }
  if (m && !mop_ident(m, ident)) {
    mop_free(m);
    m = NULL;
  }
  if (m) {
    m->versioned = versioned;
    cond_copy(&m->cond, cond);
  }
  mop_start(o, m, mpu_complete_work, mop_meta_done, OBJ_CB_META, c, arg);
}

static void mpu_abort_work(obj_op_t *op) {
  obj_mop_t *m = (obj_mop_t *)op;
  op->st = obj_engine_mpu_abort(op->o->eng, m->bucket, m->key, m->str);
}

void obj_mpu_abort(obj_t *o, const char *bucket, const char *key, const char *upload_id,
                   obj_done_fn cb, void *arg) {
  obj_cb_t c = {.done = cb};
  obj_mop_t *m = mop_new(o, bucket, key, NULL, upload_id, c, arg);
  mop_start(o, m, mpu_abort_work, mop_done_done, OBJ_CB_DONE, c, arg);
}

/* ---- listings ---- */

typedef struct {
  obj_op_t op;
  char *bucket, *key, *prefix, *delim, *m1, *m2; /* m1, m2: the markers */
  uint32_t max, part_marker;
  obj_list_t list;
  Gureum__UploadPart **parts;
  Gureum__MultipartUpload **ups;
  size_t n;
  int truncated, empty;
  obj_cb_t cb;
  void *arg;
} obj_lop_t;

static void lop_free(obj_lop_t *l) {
  obj_list_clear(&l->list);
  for (size_t i = 0; l->parts && i < l->n; i++)
    gureum__upload_part__free_unpacked(l->parts[i], NULL);
  for (size_t i = 0; l->ups && i < l->n; i++)
    gureum__multipart_upload__free_unpacked(l->ups[i], NULL);
  free(l->parts);
  free(l->ups);
  free(l->bucket);
  free(l->key);
  free(l->prefix);
  free(l->delim);
  free(l->m1);
  free(l->m2);
  free(l);
}

static obj_lop_t *lop_new(obj_t *o, const char *bucket, const char *key, const char *prefix,
                          const char *delim, const char *m1, const char *m2, uint32_t max,
                          obj_cb_t cb, void *arg) {
  obj_lop_t *l = calloc(1, sizeof *l);
  if (!l) return NULL;
  l->op.o = o;
  l->bucket = dupz(bucket);
  l->key = dupz(key);
  l->prefix = dupz(prefix);
  l->delim = dupz(delim);
  l->m1 = dupz(m1);
  l->m2 = dupz(m2);
  l->max = max;
  l->cb = cb;
  l->arg = arg;
  if (!l->bucket || !l->key || !l->prefix || !l->delim || !l->m1 || !l->m2) {
    lop_free(l);
    return NULL;
  }
  return l;
}

static void lop_start(obj_t *o, obj_lop_t *l, obj_op_fn work, obj_op_fn done,
                      obj_cb_kind_t kind, obj_cb_t cb, void *arg) {
  if (l)
    op_start(&l->op, work, done);
  else
    fail_later(o, kind, cb, arg);
}

static void list_done(obj_op_t *op) {
  obj_lop_t *l = (obj_lop_t *)op;
  l->cb.list(l->arg, op->st, &l->list);
  lop_free(l);
}

static void list_work(obj_op_t *op) {
  obj_lop_t *l = (obj_lop_t *)op;
  op->st = obj_engine_list(op->o->eng, l->bucket, l->prefix, l->delim, l->m1, l->max, &l->list);
}

void obj_list(obj_t *o, const char *bucket, const char *prefix, const char *delimiter,
              const char *start_after, uint32_t max, obj_list_fn cb, void *arg) {
  obj_cb_t c = {.list = cb};
  obj_lop_t *l = lop_new(o, bucket, NULL, prefix, delimiter, start_after, NULL, max, c, arg);
  lop_start(o, l, list_work, list_done, OBJ_CB_LIST, c, arg);
}

static void versions_work(obj_op_t *op) {
  obj_lop_t *l = (obj_lop_t *)op;
  op->st = obj_engine_list_versions(op->o->eng, l->bucket, l->prefix, l->delim, l->m1, l->m2,
                                    l->max, &l->list);
}

void obj_list_versions(obj_t *o, const char *bucket, const char *prefix, const char *delimiter,
                       const char *key_marker, const char *version_marker, uint32_t max,
                       obj_list_fn cb, void *arg) {
  obj_cb_t c = {.list = cb};
  obj_lop_t *l =
      lop_new(o, bucket, NULL, prefix, delimiter, key_marker, version_marker, max, c, arg);
  lop_start(o, l, versions_work, list_done, OBJ_CB_LIST, c, arg);
}

static void empty_work(obj_op_t *op) {
  obj_lop_t *l = (obj_lop_t *)op;
  l->empty = obj_engine_bucket_is_empty(op->o->eng, l->bucket);
}

static void empty_done(obj_op_t *op) {
  obj_lop_t *l = (obj_lop_t *)op;
  l->cb.empty(l->arg, op->st == OBJ_OK ? l->empty : -1);
  lop_free(l);
}

void obj_bucket_is_empty(obj_t *o, const char *bucket, void (*cb)(void *arg, int empty),
                         void *arg) {
  obj_cb_t c = {.empty = cb};
  obj_lop_t *l = lop_new(o, bucket, NULL, NULL, NULL, NULL, NULL, 0, c, arg);
  lop_start(o, l, empty_work, empty_done, OBJ_CB_EMPTY, c, arg);
}

static void parts_work(obj_op_t *op) {
  obj_lop_t *l = (obj_lop_t *)op;
  op->st = obj_engine_mpu_list_parts(op->o->eng, l->bucket, l->key, l->m1, l->part_marker, l->max,
                                     &l->parts, &l->n, &l->truncated);
}

static void parts_done(obj_op_t *op) {
  obj_lop_t *l = (obj_lop_t *)op;
  l->cb.parts(l->arg, op->st, l->parts, l->n, l->truncated);
  lop_free(l);
}

void obj_mpu_list_parts(obj_t *o, const char *bucket, const char *key, const char *upload_id,
                        uint32_t part_marker, uint32_t max, obj_parts_fn cb, void *arg) {
  obj_cb_t c = {.parts = cb};
  obj_lop_t *l = lop_new(o, bucket, key, NULL, NULL, upload_id, NULL, max, c, arg);
  if (l) l->part_marker = part_marker;
  lop_start(o, l, parts_work, parts_done, OBJ_CB_PARTS, c, arg);
}

static void uploads_work(obj_op_t *op) {
  obj_lop_t *l = (obj_lop_t *)op;
  op->st = obj_engine_mpu_list_uploads(op->o->eng, l->bucket, l->prefix, l->m1, l->m2, l->max,
                                       &l->ups, &l->n, &l->truncated);
}

static void uploads_done(obj_op_t *op) {
  obj_lop_t *l = (obj_lop_t *)op;
  l->cb.ups(l->arg, op->st, l->ups, l->n, l->truncated);
  lop_free(l);
}

void obj_mpu_list_uploads(obj_t *o, const char *bucket, const char *prefix,
                          const char *key_marker, const char *upload_marker, uint32_t max,
                          obj_uploads_fn cb, void *arg) {
  obj_cb_t c = {.ups = cb};
  obj_lop_t *l = lop_new(o, bucket, NULL, prefix, NULL, key_marker, upload_marker, max, c, arg);
  lop_start(o, l, uploads_work, uploads_done, OBJ_CB_UPLOADS, c, arg);
}

/* ---- repair ---- */

typedef struct {
  obj_op_t op;
  char *bucket, *key, *vid; /* the version, or scrub's cursor */
  uint32_t partition, max;
  uint64_t offset, older_than, removed;
  uint8_t *val; /* block repair: 4 spare bytes, then len bytes of data */
  size_t len;
  obj_digests_t *digests;
  Gureum__ObjectMeta **recs;
  size_t nrecs;
  obj_scrub_t scrub;
  obj_cb_t cb;
  void *arg;
} obj_rop_t;

static void rop_free(obj_rop_t *r) {
  free(r->bucket);
  free(r->key);
  free(r->vid);
  free(r->val);
  free(r->digests);
  obj_records_free(r->recs, r->nrecs);
  obj_scrub_clear(&r->scrub);
  free(r);
}

static obj_rop_t *rop_new(obj_t *o, const char *bucket, const char *key, const char *vid,
                          obj_cb_t cb, void *arg) {
  obj_rop_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->op.o = o;
  r->bucket = dupz(bucket);
  r->key = dupz(key);
  r->vid = dupz(vid);
  r->cb = cb;
  r->arg = arg;
  if (!r->bucket || !r->key || !r->vid) {
    rop_free(r);
    return NULL;
  }
  return r;
}

static void rop_start(obj_t *o, obj_rop_t *r, obj_op_fn work, obj_op_fn done, obj_cb_kind_t kind,
                      obj_cb_t cb, void *arg) {
  if (r)
    op_start(&r->op, work, done);
  else
    fail_later(o, kind, cb, arg);
}

static void rop_done_done(obj_op_t *op) {
  obj_rop_t *r = (obj_rop_t *)op;
  r->cb.done(r->arg, op->st);
  rop_free(r);
}

static void gc_work(obj_op_t *op) {
  obj_rop_t *r = (obj_rop_t *)op;
  op->st = obj_engine_gc_tombstones(op->o->eng, r->older_than, &r->removed);
}

static void gc_done(obj_op_t *op) {
  obj_rop_t *r = (obj_rop_t *)op;
  r->cb.gc(r->arg, op->st, r->removed);
  rop_free(r);
}

void obj_gc_tombstones(obj_t *o, uint64_t older_than_ms,
                       void (*cb)(void *arg, obj_status_t st, uint64_t removed), void *arg) {
  obj_cb_t c = {.gc = cb};
  obj_rop_t *r = rop_new(o, NULL, NULL, NULL, c, arg);
  if (r) r->older_than = older_than_ms;
  rop_start(o, r, gc_work, gc_done, OBJ_CB_GC, c, arg);
}

static void digests_work(obj_op_t *op) {
  obj_rop_t *r = (obj_rop_t *)op;
  op->st = obj_engine_digests(op->o->eng, r->digests);
}

static void digests_done(obj_op_t *op) {
  obj_rop_t *r = (obj_rop_t *)op;
  r->cb.digests(r->arg, op->st, op->st == OBJ_OK ? r->digests : NULL);
  rop_free(r);
}

void obj_digests(obj_t *o, void (*cb)(void *arg, obj_status_t st, const obj_digests_t *d),
                 void *arg) {
  obj_cb_t c = {.digests = cb};
  obj_rop_t *r = rop_new(o, NULL, NULL, NULL, c, arg);
  if (r && !(r->digests = malloc(sizeof *r->digests))) { /* 10 KiB: not on a worker's stack */
    rop_free(r);
    r = NULL;
  }
  rop_start(o, r, digests_work, digests_done, OBJ_CB_DIGESTS, c, arg);
}

static void records_done(obj_op_t *op);

static void tombs_work(obj_op_t *op) {
  obj_rop_t *r = (obj_rop_t *)op;
  op->st = obj_engine_tombstones(op->o->eng, r->bucket, r->key, *r->vid ? r->vid : NULL,
                                 r->older_than, &r->recs, &r->nrecs);
}

void obj_tombstones(obj_t *o, const char *bucket, const char *key, const char *version_id,
                    uint64_t newer_than_us,
                    void (*cb)(void *arg, obj_status_t st, Gureum__ObjectMeta **recs, size_t n),
                    void *arg) {
  obj_cb_t c = {.records = cb};
  obj_rop_t *r = rop_new(o, bucket, key, version_id, c, arg);
  if (r) r->older_than = newer_than_us;
  rop_start(o, r, tombs_work, records_done, OBJ_CB_RECORDS, c, arg);
}

static void records_work(obj_op_t *op) {
  obj_rop_t *r = (obj_rop_t *)op;
  op->st = obj_engine_partition_records(op->o->eng, r->partition, &r->recs, &r->nrecs);
}

static void records_done(obj_op_t *op) {
  obj_rop_t *r = (obj_rop_t *)op;
  r->cb.records(r->arg, op->st, r->recs, r->nrecs);
  rop_free(r);
}

void obj_partition_records(obj_t *o, uint32_t partition,
                           void (*cb)(void *arg, obj_status_t st, Gureum__ObjectMeta **recs,
                                      size_t n),
                           void *arg) {
  obj_cb_t c = {.records = cb};
  obj_rop_t *r = rop_new(o, NULL, NULL, NULL, c, arg);
  if (r) r->partition = partition;
  rop_start(o, r, records_work, records_done, OBJ_CB_RECORDS, c, arg);
}

static void drop_work(obj_op_t *op) {
  obj_rop_t *r = (obj_rop_t *)op;
  op->st = obj_engine_partition_drop(op->o->eng, r->partition);
}

void obj_partition_drop(obj_t *o, uint32_t partition, obj_done_fn cb, void *arg) {
  obj_cb_t c = {.done = cb};
  obj_rop_t *r = rop_new(o, NULL, NULL, NULL, c, arg);
  if (r) r->partition = partition;
  rop_start(o, r, drop_work, rop_done_done, OBJ_CB_DONE, c, arg);
}

static void scrub_work(obj_op_t *op) {
  obj_rop_t *r = (obj_rop_t *)op;
  op->st = obj_engine_scrub(op->o->eng, r->bucket, r->key, r->vid, r->max, &r->scrub);
}

static void scrub_done(obj_op_t *op) {
  obj_rop_t *r = (obj_rop_t *)op;
  const obj_scrub_t *s = &r->scrub;
  if (op->st == OBJ_OK)
    r->cb.scrub(r->arg, OBJ_OK, s->bad, s->nbad, s->next_bucket, s->next_key, s->next_vid,
                s->done);
  else /* resume where this step was asked to start */
    r->cb.scrub(r->arg, op->st, NULL, 0, r->bucket, r->key, r->vid, 0);
  rop_free(r);
}

void obj_scrub(obj_t *o, const char *after_bucket, const char *after_key, const char *after_vid,
               uint32_t max_versions,
               void (*cb)(void *arg, obj_status_t st, const obj_bad_block_t *bad, size_t nbad,
                          const char *next_bucket, const char *next_key, const char *next_vid,
                          int done),
               void *arg) {
  obj_cb_t c = {.scrub = cb};
  obj_rop_t *r = rop_new(o, after_bucket, after_key, after_vid, c, arg);
  if (r) r->max = max_versions;
  rop_start(o, r, scrub_work, scrub_done, OBJ_CB_SCRUB, c, arg);
}

static void repair_work(obj_op_t *op) {
  obj_rop_t *r = (obj_rop_t *)op;
  /* No block is longer than OBJ_BLOCK_SIZE: such data was not even copied. */
  op->st = !r->val ? OBJ_ERANGE
                   : obj_engine_block_repair(op->o->eng, r->bucket, r->key, r->vid, r->offset,
                                             r->val, r->len);
}

void obj_block_repair(obj_t *o, const char *bucket, const char *key, const char *version_id,
                      uint64_t offset, const void *data, size_t len, obj_done_fn cb, void *arg) {
  obj_cb_t c = {.done = cb};
  obj_rop_t *r = rop_new(o, bucket, key, version_id, c, arg);
  if (r && len <= OBJ_BLOCK_SIZE && !(r->val = malloc(len + 4))) {
    rop_free(r);
    r = NULL;
  }
  if (r) {
    if (r->val && len) memcpy(r->val + 4, data, len);
    r->len = len;
    r->offset = offset;
  }
  rop_start(o, r, repair_work, rop_done_done, OBJ_CB_DONE, c, arg);
}

static void corrupt_work(obj_op_t *op) {
  obj_rop_t *r = (obj_rop_t *)op;
  op->st = obj_engine_debug_corrupt(op->o->eng, r->bucket, r->key, r->vid, r->offset);
}

void obj_debug_corrupt(obj_t *o, const char *bucket, const char *key, const char *version_id,
                       uint64_t offset, obj_done_fn cb, void *arg) {
  obj_cb_t c = {.done = cb};
  obj_rop_t *r = rop_new(o, bucket, key, version_id, c, arg);
  if (r) r->offset = offset;
  rop_start(o, r, corrupt_work, rop_done_done, OBJ_CB_DONE, c, arg);
}
