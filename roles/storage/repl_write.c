/* repl_write.c - replicated streamed writes (PutObject, UploadPart): the coordinator names the
 * version, opens a session on every replica, sends each block to all of them, and commits when
 * a write quorum of the owners (and, during a move, of the previous owners) stored it. */
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "obj_engine.h"
#include "proto/envelope.pb-c.h"
#include "repl_int.h"

#define REPL_BEGIN_TIMEOUT_MS 5000
#define REPL_DATA_TIMEOUT_MS 15000
#define REPL_COMMIT_TIMEOUT_MS 15000
#define REPL_STRAGGLER_MS 2000 /* after a write quorum, how long the others may still answer */

struct repl_writer_s {
  repl_t *r;
  repl_fan_t *fan;
  Gureum__ObjectMeta *meta; /* with the version's identity */
  int versioned;
  char *upload_id;          /* parts */
  uint32_t part_number;
  char *if_match, *if_none_match;
  char *ck_algo, *ck_value, *ck_type;
  uint64_t session;
  int begun;
  uint8_t *buf; /* one block */
  size_t fill;
  uint64_t sent; /* bytes the replicas have */
  EVP_MD_CTX *md5;
  uint8_t digest[16];
  int md5_done;
  const uint8_t *src; /* the caller's piece, taken in as blocks go out */
  size_t left;
  obj_done_fn wcb;
  void *warg;
  obj_meta_fn ccb;
  void *carg;
  obj_status_t err; /* sticky */
  int busy, committing, aborted;
  int deferred; /* writer_wrote is queued: an abort meanwhile is finished there */
};

static void writer_free(repl_writer_t *w) {
  if (w->fan) repl_fan_free(w->fan);
  if (w->meta) gureum__object_meta__free_unpacked(w->meta, NULL);
  free(w->upload_id);
  free(w->if_match);
  free(w->if_none_match);
  free(w->ck_algo);
  free(w->ck_value);
  free(w->ck_type);
  free(w->buf);
  EVP_MD_CTX_free(w->md5);
  free(w);
}

static void writer_round(repl_fan_t *f);

static repl_writer_t *writer_new(repl_t *r, Gureum__ObjectMeta *meta, int versioned) {
  repl_writer_t *w = calloc(1, sizeof *w);
  if (!w || !meta) {
    if (meta) gureum__object_meta__free_unpacked(meta, NULL);
    free(w);
    return NULL;
  }
  w->r = r;
  w->meta = meta;
  w->versioned = versioned;
  w->buf = malloc(OBJ_BLOCK_SIZE);
  w->md5 = EVP_MD_CTX_new();
  uint32_t copies = repl_copies_for(r, meta->storage_class);
  w->fan = repl_fan_new(r, obj_partition(meta->bucket, meta->key), copies, writer_round, w);
  if (!w->buf || !w->md5 || !w->fan || EVP_DigestInit_ex(w->md5, EVP_md5(), NULL) != 1) {
    writer_free(w);
    return NULL;
  }
  repl_fan_early(w->fan, repl_fan_write_quorum_ok, REPL_STRAGGLER_MS);
  obj_random_bytes(&w->session, sizeof w->session);
  return w;
}

repl_writer_t *repl_put_begin(repl_t *r, const Gureum__ObjectMeta *meta, int versioned) {
  if (!meta || !meta->bucket || !*meta->bucket || !meta->key || !*meta->key) return NULL;
  Gureum__ObjectMeta *m = obj_meta_dup(meta);
  if (!m) return NULL;
  /* The version's identity is decided here, once, so every replica stores the same one. */
  char vid[OBJ_UID_LEN + 1] = "null";
  if (versioned) obj_random_uid(vid);
  if (m->version_id != protobuf_c_empty_string) free(m->version_id);
  m->version_id = strdup(vid);
  m->ts_us = hlc_now(&r->hlc);
  return writer_new(r, m, versioned);
}

repl_writer_t *repl_mpu_part_begin(repl_t *r, const char *bucket, const char *key,
                                   const char *upload_id, uint32_t part_number) {
  Gureum__ObjectMeta m = GUREUM__OBJECT_META__INIT;
  m.bucket = (char *)bucket;
  m.key = (char *)key;
  if (!bucket || !*bucket || !key || !*key || !upload_id) return NULL;
  repl_writer_t *w = writer_new(r, obj_meta_dup(&m), 0);
  if (!w) return NULL;
  w->upload_id = strdup(upload_id);
  w->part_number = part_number;
  return w;
}

static void set_str(char **slot, const char *v) {
  free(*slot);
  *slot = v && *v ? strdup(v) : NULL;
}

void repl_writer_set_checksum(repl_writer_t *w, const char *algo, const char *value,
                              const char *type) {
  set_str(&w->ck_algo, algo);
  set_str(&w->ck_value, value);
  set_str(&w->ck_type, type);
}

void repl_writer_set_cond(repl_writer_t *w, const obj_cond_t *cond) {
  set_str(&w->if_match, cond ? cond->if_match : NULL);
  set_str(&w->if_none_match, cond ? cond->if_none_match : NULL);
}

const uint8_t *repl_writer_md5(repl_writer_t *w) {
  if (!w->md5_done) {
    EVP_DigestFinal_ex(w->md5, w->digest, NULL);
    w->md5_done = 1;
  }
  return w->digest;
}

/* ---- rounds: begin, then one per block, then the end ---- */

enum { ROUND_BEGIN = 1, ROUND_DATA, ROUND_COMMIT, ROUND_ABORT };

static int round_kind(const repl_writer_t *w);

static void send_begin_ex(repl_writer_t *w, int with_body);

/* Opens the sessions; with_body sends the buffered bytes along (the whole of a small object). */
static void send_begin_ex(repl_writer_t *w, int with_body) {
  Gureum__ReplPutBegin b = GUREUM__REPL_PUT_BEGIN__INIT;
  if (with_body) {
    b.data.data = w->buf;
    b.data.len = w->fill;
  }
  b.session = w->session;
  b.meta = w->meta;
  b.versioned = w->versioned;
  b.upload_id = w->upload_id ? w->upload_id : (char *)"";
  b.part_number = w->part_number;
  b.if_match = w->if_match ? w->if_match : (char *)"";
  b.if_none_match = w->if_none_match ? w->if_none_match : (char *)"";
  size_t n = gureum__repl_put_begin__get_packed_size(&b);
  uint8_t *p = malloc(n ? n : 1);
  if (!p) abort();
  gureum__repl_put_begin__pack(&b, p);
  w->begun = ROUND_BEGIN;
  if (with_body) {
    w->sent += w->fill;
    w->fill = 0;
  }
  repl_fan_send(w->fan, GUREUM__MSG_TYPE__MSG_REPL_PUT_BEGIN, p, n,
                with_body ? REPL_DATA_TIMEOUT_MS : REPL_BEGIN_TIMEOUT_MS);
  free(p);
}

static void send_block(repl_writer_t *w) {
  Gureum__ReplPutData d = GUREUM__REPL_PUT_DATA__INIT;
  d.session = w->session;
  d.offset = w->sent;
  d.data.data = w->buf;
  d.data.len = w->fill;
  size_t n = gureum__repl_put_data__get_packed_size(&d);
  uint8_t *p = malloc(n);
  if (!p) abort();
  gureum__repl_put_data__pack(&d, p);
  w->sent += w->fill;
  w->fill = 0;
  repl_fan_send(w->fan, GUREUM__MSG_TYPE__MSG_REPL_PUT_DATA, p, n, REPL_DATA_TIMEOUT_MS);
  free(p);
}

static void send_end(repl_writer_t *w, int commit) {
  Gureum__ReplPutEnd e = GUREUM__REPL_PUT_END__INIT;
  e.session = w->session;
  e.commit = commit;
  e.checksum_algorithm = w->ck_algo ? w->ck_algo : (char *)"";
  e.checksum_value = w->ck_value ? w->ck_value : (char *)"";
  e.checksum_type = w->ck_type ? w->ck_type : (char *)"";
  uint8_t p[512];
  size_t n = gureum__repl_put_end__get_packed_size(&e);
  if (n > sizeof p) { /* checksums are short; never expected */
    e.checksum_algorithm = e.checksum_value = e.checksum_type = "";
    n = gureum__repl_put_end__get_packed_size(&e);
  }
  gureum__repl_put_end__pack(&e, p);
  repl_fan_send(w->fan, GUREUM__MSG_TYPE__MSG_REPL_PUT_END, p, n, REPL_COMMIT_TIMEOUT_MS);
}

/* Which replicas answered this round with OBJ_OK. Others leave the session (and get a hint). */
static int round_ok(repl_writer_t *w, int *ok, obj_status_t *first_err, int *nprecond) {
  repl_fan_t *f = w->fan;
  int nok = 0;
  *first_err = OBJ_OK;
  *nprecond = 0;
  for (size_t i = 0; i < f->n; i++) {
    ok[i] = 0;
    if (f->st[i] == REPL_DROPPED) continue;
    obj_status_t st = repl_fan_status(f, i, NULL);
    if (st == OBJ_OK) {
      ok[i] = 1;
      nok++;
      continue;
    }
    if (st == OBJ_EPRECOND) (*nprecond)++;
    if (*first_err == OBJ_OK || *first_err == OBJ_EUNAVAIL) *first_err = st;
    f->st[i] = RPC_EREMOTE; /* failed: dropped below */
    repl_fan_hint(f, i);
  }
  repl_fan_drop_failed(f);
  return nok;
}

static void writer_take(repl_writer_t *w);
static void writer_fail(repl_writer_t *w, obj_status_t st);

/* The end of a write: a quorum stored it (the answer is the first replica's record), or not. */
static void writer_committed(repl_writer_t *w, const int *ok, int quorum, obj_status_t first_err,
                             int nprecond) {
  repl_fan_t *f = w->fan;
  Gureum__ReplReply *rep = NULL;
  for (size_t i = 0; i < f->n && quorum && !rep; i++)
    if (ok[i]) repl_fan_status(f, i, &rep);
  for (size_t i = 0; i < f->n; i++) /* owners that were down from the start missed it too */
    if (!ok[i] && f->st[i] == REPL_DROPPED) repl_fan_hint(f, i);
  obj_status_t st = OBJ_OK;
  if (!quorum || !rep || !rep->meta) {
    st = nprecond ? OBJ_EPRECOND : OBJ_EUNAVAIL;
    if (!nprecond && first_err != OBJ_OK && first_err != OBJ_EUNAVAIL && first_err != OBJ_ECANCELED)
      st = first_err; /* e.g. NoSuchUpload for a part: the replicas agree on a real answer */
    if (st == OBJ_EUNAVAIL)
      log_warn("repl", "commit_no_quorum", "bucket=%s key=%s err=%s", w->meta->bucket,
               w->meta->key, obj_strerror(first_err));
  }
  obj_meta_fn cb = w->ccb;
  if (cb) cb(w->carg, st, st == OBJ_OK ? rep->meta : NULL);
  if (rep) gureum__repl_reply__free_unpacked(rep, NULL);
  writer_free(w); /* committed or not: the replicas closed their sessions */
}

/* The only way to free a writer whose replicas may hold a session: abort them first. */
static void writer_abort_send(repl_writer_t *w) {
  int any = 0;
  for (size_t i = 0; i < w->fan->n; i++) any |= w->fan->st[i] != REPL_DROPPED;
  if (!w->begun || !any) {
    writer_free(w);
    return;
  }
  w->begun = ROUND_ABORT;
  send_end(w, 0);
}

/* Which copies a failed write had, so an operator can tell a dead node from a layout problem. */
static void log_quorum_lost(const repl_writer_t *w, const int *ok) {
  char who[512] = "";
  size_t at = 0;
  for (size_t i = 0; i < w->fan->n && at < sizeof who - 100; i++)
    at += (size_t)snprintf(who + at, sizeof who - at, "%s%s%s%s:%s", at ? "," : "", w->fan->t[i].name,
                           w->fan->t[i].owner ? "" : "(prev)", w->fan->t[i].prev && w->fan->t[i].owner ? "(+prev)" : "",
                           ok[i] ? "ok" : "failed");
  log_warn("repl", "write_no_quorum", "bucket=%s key=%s partition=%u copies=%s", w->meta->bucket,
           w->meta->key, w->fan->partition, who);
}

static void writer_round(repl_fan_t *f) {
  repl_writer_t *w = f->arg;
  int ok[REPL_MAX_TARGETS], nprecond;
  obj_status_t first_err;
  int kind = round_kind(w);
  if (kind == ROUND_ABORT) {
    writer_free(w);
    return;
  }
  round_ok(w, ok, &first_err, &nprecond);
  int quorum = repl_fan_quorum(f, ok, 1);
  if (kind == ROUND_COMMIT) {
    writer_committed(w, ok, quorum, first_err, nprecond);
    return;
  }
  w->busy = 0;
  if (w->aborted) {
    writer_abort_send(w);
    return;
  }
  if (!quorum) {
    if (!nprecond) log_quorum_lost(w, ok);
    writer_fail(w, nprecond ? OBJ_EPRECOND : OBJ_EUNAVAIL);
    return;
  }
  w->begun = ROUND_DATA;
  if (w->committing)
    repl_put_commit(w, w->ccb, w->carg);
  else
    writer_take(w);
}

static int round_kind(const repl_writer_t *w) {
  if (w->begun == ROUND_ABORT) return ROUND_ABORT;
  if (w->committing && w->begun == ROUND_COMMIT) return ROUND_COMMIT;
  return w->begun;
}

static void writer_fail(repl_writer_t *w, obj_status_t st) {
  w->err = st;
  w->busy = 0;
  if (w->committing) {
    obj_meta_fn cb = w->ccb;
    void *arg = w->carg;
    w->committing = 0;
    cb(arg, st, NULL);
    writer_abort_send(w);
    return;
  }
  if (w->wcb) {
    obj_done_fn cb = w->wcb;
    w->wcb = NULL;
    cb(w->warg, st); /* the caller answers and aborts us */
  }
}

static void writer_wrote(void *arg) {
  repl_writer_t *w = arg;
  w->deferred = 0;
  if (w->aborted) {
    writer_abort_send(w);
    return;
  }
  obj_done_fn cb = w->wcb;
  w->wcb = NULL;
  if (cb) cb(w->warg, w->err);
}

/* Takes the caller's piece into the block buffer; a full block goes out to every replica. */
static void writer_take(repl_writer_t *w) {
  while (w->left) {
    size_t n = OBJ_BLOCK_SIZE - w->fill;
    if (n > w->left) n = w->left;
    memcpy(w->buf + w->fill, w->src, n);
    EVP_DigestUpdate(w->md5, w->src, n);
    w->fill += n;
    w->src += n;
    w->left -= n;
    if (w->fill == OBJ_BLOCK_SIZE) {
      w->busy = 1;
      if (!w->begun) send_begin_ex(w, 1); /* the sessions open with the first block */
      else send_block(w);
      return; /* writer_round continues */
    }
  }
  /* Like the local layer, never call back from inside repl_write. */
  w->deferred = 1;
  repl_defer(w->r, writer_wrote, w);
}

void repl_write(repl_writer_t *w, const void *data, size_t len, obj_done_fn cb, void *arg) {
  if (w->busy || w->wcb || w->committing || w->aborted) abort(); /* a caller bug */
  w->wcb = cb;
  w->warg = arg;
  if (w->err) {
    w->deferred = 1;
    repl_defer(w->r, writer_wrote, w);
    return;
  }
  w->src = data;
  w->left = len;
  w->wcb = cb;
  w->warg = arg;
  writer_take(w);
}

/* Never answer a commit from inside repl_put_commit. */
static void commit_failed_later(void *arg) {
  repl_writer_t *w = arg;
  writer_fail(w, w->err);
}

void repl_put_commit(repl_writer_t *w, obj_meta_fn cb, void *arg) {
  w->committing = 1;
  w->ccb = cb;
  w->carg = arg;
  if (w->err) {
    w->busy = 1;
    repl_defer(w->r, commit_failed_later, w);
    return;
  }
  if (w->busy) return; /* the round in flight comes back here */
  repl_writer_md5(w);
  w->busy = 1;
  if (!w->begun) {
    /* All of it fits in one block: the sessions open with the body (one round), then commit.
     * Staging first matters: a replica commits nothing until a write quorum holds the bytes. */
    send_begin_ex(w, 1);
    return;
  }
  if (w->fill) {
    send_block(w);
    return;
  }
  w->begun = ROUND_COMMIT;
  send_end(w, 1);
}

void repl_put_abort(repl_writer_t *w) {
  w->aborted = 1;
  w->ccb = NULL;
  w->wcb = NULL;
  if (w->busy || w->deferred) return; /* the round in flight or writer_wrote sees `aborted` */
  writer_abort_send(w);
}
