/* repl_ops.c - replicated one-shot operations: deletes, tags and multipart records go to the
 * partition's replicas with a write quorum; listings ask every storage node and merge. */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "obj_engine.h"
#include "proto/envelope.pb-c.h"
#include "repl_int.h"

#define REPL_OP_TIMEOUT_MS 10000
#define REPL_LIST_TIMEOUT_MS 15000
#define REPL_STRAGGLER_MS 2000 /* after a write quorum, how long the others may still answer */
#define REPL_LIST_GRACE_MS 200

typedef struct {
  obj_meta_fn meta_cb;
  obj_done_fn done_cb;
  obj_upload_fn upload_cb;
  void *arg;
  char upload_id[OBJ_UID_LEN + 1];
} repl_op_t;

static repl_op_t *op_new(void *arg) {
  repl_op_t *o = calloc(1, sizeof *o);
  if (!o) abort();
  o->arg = arg;
  return o;
}

/* Packs `msg` with its protobuf-c descriptor functions and sends it to the whole set. */
#define FAN_SEND(f, type, pfx, msg, timeout)                        \
  do {                                                              \
    size_t n_ = pfx##__get_packed_size(msg);                        \
    uint8_t *b_ = malloc(n_ ? n_ : 1);                              \
    if (!b_) abort();                                               \
    pfx##__pack(msg, b_);                                           \
    repl_fan_send(f, type, b_, n_, timeout);                        \
    free(b_);                                                       \
  } while (0)

/* A write round's verdict: OK with the first replica's record when a write quorum said OK;
 * otherwise what the replicas agreed on (e.g. NoSuchUpload), or unavailable. Replicas that
 * missed it get a hint. */
static obj_status_t write_verdict(repl_fan_t *f, Gureum__ReplReply **first) {
  int ok[REPL_MAX_TARGETS] = {0};
  obj_status_t other = OBJ_EUNAVAIL;
  size_t nother = 0;
  *first = NULL;
  for (size_t i = 0; i < f->n; i++) {
    Gureum__ReplReply *rep = NULL;
    obj_status_t st = f->st[i] == REPL_DROPPED ? OBJ_EUNAVAIL : repl_fan_status(f, i, &rep);
    if (st == OBJ_OK) {
      ok[i] = 1;
      if (!*first) *first = rep, rep = NULL;
    } else {
      if (st != OBJ_EUNAVAIL && st != OBJ_EIO) other = st, nother++;
      repl_fan_hint(f, i);
    }
    if (rep) gureum__repl_reply__free_unpacked(rep, NULL);
  }
  if (repl_fan_quorum(f, ok, 1)) return OBJ_OK;
  if (*first) {
    gureum__repl_reply__free_unpacked(*first, NULL);
    *first = NULL;
  }
  int agreed[REPL_MAX_TARGETS] = {0};
  for (size_t i = 0; i < f->n && nother; i++) agreed[i] = f->st[i] == RPC_OK;
  return nother && repl_fan_quorum(f, agreed, 0) ? other : OBJ_EUNAVAIL;
}

static void meta_round_done(repl_fan_t *f) {
  repl_op_t *o = f->arg;
  Gureum__ReplReply *first;
  obj_status_t st = write_verdict(f, &first);
  if (o->meta_cb) o->meta_cb(o->arg, st, first ? first->meta : NULL);
  if (o->done_cb) o->done_cb(o->arg, st);
  if (o->upload_cb) o->upload_cb(o->arg, st, st == OBJ_OK ? o->upload_id : NULL);
  if (first) gureum__repl_reply__free_unpacked(first, NULL);
  free(o);
  repl_fan_free(f);
}

static repl_fan_t *fan_for(repl_t *r, const char *bucket, const char *key, uint32_t copies,
                           repl_fan_fn done, repl_op_t *o) {
  repl_fan_t *f = repl_fan_new(r, obj_partition(bucket, key), copies, done, o);
  if (!f) abort();
  repl_fan_early(f, repl_fan_write_quorum_ok, REPL_STRAGGLER_MS);
  return f;
}

/* ---- deletes and tags ---- */

void repl_delete(repl_t *r, const char *bucket, const char *key, const char *version_id,
                 const char *versioning, obj_meta_fn cb, void *arg) {
  repl_op_t *o = op_new(arg);
  o->meta_cb = cb;
  Gureum__ReplDelete d = GUREUM__REPL_DELETE__INIT;
  d.bucket = (char *)bucket;
  d.key = (char *)key;
  d.version_id = (char *)(version_id ? version_id : "");
  d.versioning = (char *)(versioning ? versioning : "");
  /* What the delete creates (a marker, a null tombstone) is named here, once, for all replicas. */
  char vid[OBJ_UID_LEN + 1] = "null";
  if (!*d.version_id && strcmp(d.versioning, "Enabled") == 0) obj_random_uid(vid);
  d.new_version_id = vid;
  d.ts_us = hlc_now(&r->hlc);
  FAN_SEND(fan_for(r, bucket, key, r->o.copies, meta_round_done, o),
           GUREUM__MSG_TYPE__MSG_REPL_DELETE, gureum__repl_delete, &d, REPL_OP_TIMEOUT_MS);
}

void repl_set_tags(repl_t *r, const char *bucket, const char *key, const char *version_id,
                   const Gureum__KeyValue *const *tags, size_t n, obj_meta_fn cb, void *arg) {
  repl_op_t *o = op_new(arg);
  o->meta_cb = cb;
  Gureum__ReplTags t = GUREUM__REPL_TAGS__INIT;
  t.bucket = (char *)bucket;
  t.key = (char *)key;
  t.version_id = (char *)(version_id ? version_id : "");
  t.tags = (Gureum__KeyValue **)tags;
  t.n_tags = n;
  FAN_SEND(fan_for(r, bucket, key, r->o.copies, meta_round_done, o),
           GUREUM__MSG_TYPE__MSG_REPL_TAGS, gureum__repl_tags, &t, REPL_OP_TIMEOUT_MS);
}

/* ---- multipart ---- */

void repl_mpu_create(repl_t *r, const Gureum__ObjectMeta *meta, obj_upload_fn cb, void *arg) {
  repl_op_t *o = op_new(arg);
  o->upload_cb = cb;
  obj_random_uid(o->upload_id);
  Gureum__ObjectMeta m = *meta;
  m.version_id = o->upload_id; /* the replicas take it as the upload id */
  Gureum__ReplMpu u = GUREUM__REPL_MPU__INIT;
  u.bucket = meta->bucket;
  u.key = meta->key;
  u.upload_id = o->upload_id;
  u.meta = &m;
  uint32_t copies = repl_copies_for(r, meta->storage_class);
  FAN_SEND(fan_for(r, meta->bucket, meta->key, copies, meta_round_done, o),
           GUREUM__MSG_TYPE__MSG_REPL_MPU_CREATE, gureum__repl_mpu, &u, REPL_OP_TIMEOUT_MS);
}

void repl_mpu_complete(repl_t *r, const char *bucket, const char *key, const char *upload_id,
                       const obj_part_ref_t *parts, size_t n, int versioned,
                       const obj_cond_t *cond, obj_meta_fn cb, void *arg) {
  repl_op_t *o = op_new(arg);
  o->meta_cb = cb;
  Gureum__ReplPartRef *refs = calloc(n + 1, sizeof *refs);
  Gureum__ReplPartRef **ptrs = calloc(n + 1, sizeof *ptrs);
  if (!refs || !ptrs) abort();
  for (size_t i = 0; i < n; i++) {
    gureum__repl_part_ref__init(&refs[i]);
    refs[i].part_number = parts[i].part_number;
    refs[i].etag = (char *)parts[i].etag;
    ptrs[i] = &refs[i];
  }
  char vid[OBJ_UID_LEN + 1] = "null";
  if (versioned) obj_random_uid(vid);
  Gureum__ReplMpu u = GUREUM__REPL_MPU__INIT;
  u.bucket = (char *)bucket;
  u.key = (char *)key;
  u.upload_id = (char *)upload_id;
  u.parts = ptrs;
  u.n_parts = n;
  u.versioned = versioned;
  u.if_match = (char *)(cond && cond->if_match ? cond->if_match : "");
  u.if_none_match = (char *)(cond && cond->if_none_match ? cond->if_none_match : "");
  u.version_id = vid;
  u.ts_us = hlc_now(&r->hlc);
  /* The upload's storage class is on the replicas; STANDARD's set covers both classes. */
  FAN_SEND(fan_for(r, bucket, key, r->o.copies, meta_round_done, o),
           GUREUM__MSG_TYPE__MSG_REPL_MPU_COMPLETE, gureum__repl_mpu, &u, REPL_OP_TIMEOUT_MS);
  free(refs);
  free(ptrs);
}

void repl_mpu_abort(repl_t *r, const char *bucket, const char *key, const char *upload_id,
                    obj_done_fn cb, void *arg) {
  repl_op_t *o = op_new(arg);
  o->done_cb = cb;
  Gureum__ReplMpu u = GUREUM__REPL_MPU__INIT;
  u.bucket = (char *)bucket;
  u.key = (char *)key;
  u.upload_id = (char *)upload_id;
  FAN_SEND(fan_for(r, bucket, key, r->o.copies, meta_round_done, o),
           GUREUM__MSG_TYPE__MSG_REPL_MPU_ABORT, gureum__repl_mpu, &u, REPL_OP_TIMEOUT_MS);
}

/* ---- ListParts: the replica that knows the most parts answers ---- */

typedef struct {
  obj_parts_fn parts_cb;
  obj_uploads_fn uploads_cb;
  void *arg;
  uint32_t max;
} repl_mlist_t;

static Gureum__ReplMpuListReply *mlist_reply(repl_fan_t *f, size_t i) {
  if (f->st[i] != RPC_OK || !f->reply[i]) return NULL;
  return gureum__repl_mpu_list_reply__unpack(NULL, f->rlen[i], f->reply[i]);
}

static void parts_done(repl_fan_t *f) {
  repl_mlist_t *l = f->arg;
  Gureum__ReplMpuListReply *best = NULL;
  obj_status_t st = OBJ_EUNAVAIL;
  for (size_t i = 0; i < f->n; i++) {
    Gureum__ReplMpuListReply *rep = mlist_reply(f, i);
    if (!rep) continue;
    if (rep->status == OBJ_OK && (!best || rep->n_parts > best->n_parts)) {
      if (best) gureum__repl_mpu_list_reply__free_unpacked(best, NULL);
      best = rep;
      continue;
    }
    if (st == OBJ_EUNAVAIL) st = (obj_status_t)rep->status;
    gureum__repl_mpu_list_reply__free_unpacked(rep, NULL);
  }
  if (best)
    l->parts_cb(l->arg, OBJ_OK, best->parts, best->n_parts, best->truncated);
  else
    l->parts_cb(l->arg, st, NULL, 0, 0);
  if (best) gureum__repl_mpu_list_reply__free_unpacked(best, NULL);
  free(l);
  repl_fan_free(f);
}

void repl_mpu_list_parts(repl_t *r, const char *bucket, const char *key, const char *upload_id,
                         uint32_t part_marker, uint32_t max, obj_parts_fn cb, void *arg) {
  repl_mlist_t *l = calloc(1, sizeof *l);
  if (!l) abort();
  l->parts_cb = cb;
  l->arg = arg;
  Gureum__ReplMpu u = GUREUM__REPL_MPU__INIT;
  u.bucket = (char *)bucket;
  u.key = (char *)key;
  u.upload_id = (char *)upload_id;
  u.marker = part_marker;
  u.max = max;
  repl_fan_t *f = repl_fan_new(r, obj_partition(bucket, key), r->o.copies, parts_done, l);
  if (!f) abort();
  FAN_SEND(f, GUREUM__MSG_TYPE__MSG_REPL_MPU_PARTS, gureum__repl_mpu, &u, REPL_OP_TIMEOUT_MS);
}

/* ---- ListMultipartUploads: every node, union by (key, upload id) ---- */

static int upload_cmp(const void *a, const void *b) {
  const Gureum__MultipartUpload *x = *(Gureum__MultipartUpload *const *)a;
  const Gureum__MultipartUpload *y = *(Gureum__MultipartUpload *const *)b;
  int c = strcmp(x->key, y->key);
  return c ? c : strcmp(x->upload_id, y->upload_id);
}

static void uploads_done(repl_fan_t *f) {
  repl_mlist_t *l = f->arg;
  Gureum__ReplMpuListReply *reps[REPL_MAX_TARGETS] = {0};
  Gureum__MultipartUpload **all = NULL;
  size_t n = 0, cap = 0;
  int answered = 0, truncated = 0;
  for (size_t i = 0; i < f->n; i++) {
    reps[i] = mlist_reply(f, i);
    if (!reps[i] || reps[i]->status != OBJ_OK) continue;
    answered++;
    truncated |= reps[i]->truncated;
    for (size_t j = 0; j < reps[i]->n_uploads; j++) {
      if (n == cap) {
        cap = cap ? cap * 2 : 64;
        all = realloc(all, cap * sizeof *all);
        if (!all) abort();
      }
      all[n++] = reps[i]->uploads[j];
    }
  }
  if (!answered) {
    l->uploads_cb(l->arg, OBJ_EUNAVAIL, NULL, 0, 0);
  } else {
    if (n) qsort(all, n, sizeof *all, upload_cmp);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
      if (!k || upload_cmp(&all[k - 1], &all[i]) != 0) all[k++] = all[i];
    if (l->max && k > l->max) k = l->max, truncated = 1;
    l->uploads_cb(l->arg, OBJ_OK, all, k, truncated);
  }
  free(all);
  for (size_t i = 0; i < f->n; i++)
    if (reps[i]) gureum__repl_mpu_list_reply__free_unpacked(reps[i], NULL);
  free(l);
  repl_fan_free(f);
}

void repl_mpu_list_uploads(repl_t *r, const char *bucket, const char *prefix,
                           const char *key_marker, const char *upload_marker, uint32_t max,
                           obj_uploads_fn cb, void *arg) {
  repl_mlist_t *l = calloc(1, sizeof *l);
  if (!l) abort();
  l->uploads_cb = cb;
  l->arg = arg;
  l->max = max ? max : OBJ_LIST_MAX;
  Gureum__ReplMpu u = GUREUM__REPL_MPU__INIT;
  u.bucket = (char *)bucket;
  u.prefix = (char *)(prefix ? prefix : "");
  u.key_marker = (char *)(key_marker ? key_marker : "");
  u.upload_marker = (char *)(upload_marker ? upload_marker : "");
  u.max = l->max;
  repl_fan_t *f = repl_fan_new(r, UINT32_MAX, r->o.copies, uploads_done, l);
  if (!f) abort();
  repl_fan_early(f, repl_fan_listing_answered, REPL_LIST_GRACE_MS);
  FAN_SEND(f, GUREUM__MSG_TYPE__MSG_REPL_MPU_UPLOADS, gureum__repl_mpu, &u, REPL_LIST_TIMEOUT_MS);
}

/* ---- bucket emptiness: every node must say empty ---- */

typedef struct {
  void (*cb)(void *arg, int empty);
  void *arg;
} repl_empty_t;

static void empty_done(repl_fan_t *f) {
  repl_empty_t *e = f->arg;
  int empty = 1, answered = 0, failed = 0;
  for (size_t i = 0; i < f->n; i++) {
    Gureum__ReplReply *rep = NULL;
    obj_status_t st = f->st[i] == REPL_DROPPED ? OBJ_EUNAVAIL : repl_fan_status(f, i, &rep);
    if (st == OBJ_OK && rep) {
      answered++;
      if (!rep->empty) empty = 0;
    } else {
      failed++;
    }
    if (rep) gureum__repl_reply__free_unpacked(rep, NULL);
  }
  /* Deleting a bucket that an unreachable node still fills would orphan its objects. */
  e->cb(e->arg, !answered ? -1 : !empty ? 0 : failed ? -1 : 1);
  free(e);
  repl_fan_free(f);
}

void repl_bucket_is_empty(repl_t *r, const char *bucket, void (*cb)(void *arg, int empty),
                          void *arg) {
  repl_empty_t *e = calloc(1, sizeof *e);
  if (!e) abort();
  e->cb = cb;
  e->arg = arg;
  Gureum__ReplKey k = GUREUM__REPL_KEY__INIT;
  k.bucket = (char *)bucket;
  repl_fan_t *f = repl_fan_new(r, UINT32_MAX, r->o.copies, empty_done, e);
  if (!f) abort();
  FAN_SEND(f, GUREUM__MSG_TYPE__MSG_REPL_BUCKET_EMPTY, gureum__repl_key, &k, REPL_OP_TIMEOUT_MS);
}
