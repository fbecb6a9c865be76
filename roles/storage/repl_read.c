/* repl_read.c - replicated reads: ask the partition's replicas for the version's record, take
 * the newest (HLC timestamp, then id), stream the bytes from one replica that holds it and fail
 * over to the next on error or a corrupt block; stale replicas get a repair hint. */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "obj_engine.h"
#include "proto/envelope.pb-c.h"
#include "repl_int.h"

#define REPL_HEAD_TIMEOUT_MS 3000
#define REPL_READ_TIMEOUT_MS 15000
#define REPL_READ_CHUNK OBJ_BLOCK_SIZE
#define REPL_HEAD_GRACE_MS 20 /* a read quorum answered: the rest only feed read repair */

struct repl_reader_s {
  repl_t *r;
  repl_fan_t *fan;
  char *bucket, *key, *vid;
  Gureum__ObjectMeta *meta; /* the chosen version */
  size_t holders[REPL_MAX_TARGETS], nholders, cur;
  uint64_t pos, end;
  uint8_t *chunk; /* the piece handed to the caller, valid until the next read */
  obj_status_t worst; /* what the failed replicas said */
  obj_meta_fn mcb;
  void *marg;
  obj_data_fn dcb;
  void *darg;
  int busy, freed;
};

/* 1 if a is newer than b: HLC timestamps first, then the id, so every coordinator agrees. */
static int newer(const Gureum__ObjectMeta *a, const Gureum__ObjectMeta *b) {
  if (a->ts_us != b->ts_us) return a->ts_us > b->ts_us;
  return strcmp(a->version_id, b->version_id) > 0;
}

typedef struct {
  obj_status_t st;
  Gureum__ReplReply *best; /* owned; best->meta is the answer */
  size_t holders[REPL_MAX_TARGETS], nholders;
} repl_pick_t;

/* A delete some replica knows of kills the version it names (a "null" one if not newer). */
static int killed(repl_fan_t *f, Gureum__ReplReply *const *rep, const Gureum__ObjectMeta *m) {
  for (size_t i = 0; i < f->n; i++)
    for (size_t j = 0; rep[i] && j < rep[i]->n_tombstones; j++) {
      const Gureum__ObjectMeta *t = rep[i]->tombstones[j];
      if (strcmp(t->version_id, m->version_id) != 0) continue;
      if (strcmp(m->version_id, "null") != 0 || t->ts_us >= m->ts_us) return 1;
    }
  return 0;
}

/* Merges the head round: the newest version no replica knows deleted wins; replicas without it
 * are told to sync. */
static void pick(repl_fan_t *f, const char *vid, repl_pick_t *p) {
  Gureum__ReplReply *rep[REPL_MAX_TARGETS] = {0};
  obj_status_t st[REPL_MAX_TARGETS];
  int answered[REPL_MAX_TARGETS] = {0};
  size_t best = SIZE_MAX, nanswered = 0;
  memset(p, 0, sizeof *p);
  for (size_t i = 0; i < f->n; i++) {
    st[i] = f->st[i] == REPL_DROPPED ? OBJ_EUNAVAIL : repl_fan_status(f, i, &rep[i]);
    if (st[i] == OBJ_EUNAVAIL || st[i] == OBJ_EIO || st[i] == OBJ_ECORRUPT) continue;
    answered[i] = 1;
    nanswered++;
  }
  for (size_t i = 0; i < f->n; i++)
    if (answered[i] && (st[i] == OBJ_OK || st[i] == OBJ_EDELETED) && rep[i] && rep[i]->meta &&
        !killed(f, rep, rep[i]->meta) && (best == SIZE_MAX || newer(rep[i]->meta, rep[best]->meta)))
      best = i;
  if (!repl_fan_quorum(f, answered, 0)) {
    p->st = OBJ_EUNAVAIL;
  } else if (best == SIZE_MAX) {
    p->st = vid ? OBJ_ENOVERSION : OBJ_ENOENT;
    for (size_t i = 0; i < f->n; i++) {
      if (answered[i] && st[i] != OBJ_OK && st[i] != OBJ_EDELETED) p->st = st[i];
      if (answered[i] && (st[i] == OBJ_OK || st[i] == OBJ_EDELETED))
        repl_fan_hint(f, i); /* it still has a version the others deleted */
    }
  } else {
    p->st = st[best];
    p->best = rep[best];
    rep[best] = NULL;
    const Gureum__ObjectMeta *b = p->best->meta;
    for (size_t i = 0; i < f->n; i++) {
      const Gureum__ObjectMeta *m = i == best ? b : rep[i] ? rep[i]->meta : NULL;
      if (m && st[i] == p->st && strcmp(m->version_id, b->version_id) == 0 &&
          m->ts_us == b->ts_us) {
        p->holders[p->nholders++] = i;
      } else if (answered[i]) {
        repl_fan_hint(f, i); /* read repair: it answered something older, or nothing */
      }
    }
  }
  for (size_t i = 0; i < f->n; i++)
    if (rep[i]) gureum__repl_reply__free_unpacked(rep[i], NULL);
}

/* The holders in the order to read from: this node first, it costs no network. */
static void order_holders(repl_reader_t *rd, const repl_pick_t *p) {
  rd->nholders = 0;
  for (int pass = 0; pass < 2; pass++)
    for (size_t j = 0; j < p->nholders; j++) {
      size_t i = p->holders[j];
      int self = strcmp(rd->fan->t[i].name, rd->r->node->cfg.name) == 0;
      if (self == (pass == 0)) rd->holders[rd->nholders++] = i;
    }
}

static void send_head(repl_fan_t *f, const char *bucket, const char *key, const char *vid) {
  Gureum__ReplKey k = GUREUM__REPL_KEY__INIT;
  k.bucket = (char *)bucket;
  k.key = (char *)key;
  k.version_id = (char *)(vid ? vid : "");
  size_t n = gureum__repl_key__get_packed_size(&k);
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf) abort();
  gureum__repl_key__pack(&k, buf);
  repl_fan_send(f, GUREUM__MSG_TYPE__MSG_REPL_HEAD, buf, n, REPL_HEAD_TIMEOUT_MS);
  free(buf);
}

/* ---- HeadObject ---- */

typedef struct {
  char *vid;
  obj_meta_fn cb;
  void *arg;
} repl_head_t;

static void head_done(repl_fan_t *f) {
  repl_head_t *h = f->arg;
  repl_pick_t p;
  pick(f, h->vid, &p);
  h->cb(h->arg, p.st, p.best ? p.best->meta : NULL);
  if (p.best) gureum__repl_reply__free_unpacked(p.best, NULL);
  free(h->vid);
  free(h);
  repl_fan_free(f);
}

void repl_head(repl_t *r, const char *bucket, const char *key, const char *version_id,
               obj_meta_fn cb, void *arg) {
  repl_head_t *h = calloc(1, sizeof *h);
  if (!h) abort();
  h->vid = version_id && *version_id ? strdup(version_id) : NULL;
  h->cb = cb;
  h->arg = arg;
  repl_fan_t *f = repl_fan_new(r, obj_partition(bucket, key), r->o.copies, head_done, h);
  if (!f) abort();
  repl_fan_early(f, repl_fan_read_quorum_answered, REPL_HEAD_GRACE_MS);
  send_head(f, bucket, key, h->vid);
}

/* ---- GetObject ---- */

static void reader_destroy(repl_reader_t *rd) {
  if (rd->fan) repl_fan_free(rd->fan);
  if (rd->meta) gureum__object_meta__free_unpacked(rd->meta, NULL);
  free(rd->bucket);
  free(rd->key);
  free(rd->vid);
  free(rd->chunk);
  free(rd);
}

static void reader_head_done(repl_fan_t *f) {
  repl_reader_t *rd = f->arg;
  repl_pick_t p;
  pick(f, rd->vid, &p);
  if (p.best && p.best->meta) {
    rd->meta = obj_meta_dup(p.best->meta);
    rd->end = rd->meta ? rd->meta->size : 0;
    order_holders(rd, &p);
  }
  rd->busy = 0;
  if (rd->freed) {
    if (p.best) gureum__repl_reply__free_unpacked(p.best, NULL);
    reader_destroy(rd);
    return;
  }
  obj_status_t st = p.st == OBJ_OK && !rd->meta ? OBJ_EIO : p.st;
  rd->mcb(rd->marg, st, p.best ? p.best->meta : NULL);
  if (p.best) gureum__repl_reply__free_unpacked(p.best, NULL);
}

repl_reader_t *repl_get_begin(repl_t *r, const char *bucket, const char *key,
                              const char *version_id, obj_meta_fn cb, void *arg) {
  repl_reader_t *rd = calloc(1, sizeof *rd);
  if (!rd) return NULL;
  rd->r = r;
  rd->bucket = repl_strdup(bucket);
  rd->key = repl_strdup(key);
  rd->vid = version_id && *version_id ? strdup(version_id) : NULL;
  rd->mcb = cb;
  rd->marg = arg;
  rd->worst = OBJ_EUNAVAIL;
  rd->fan = repl_fan_new(r, obj_partition(bucket, key), r->o.copies, reader_head_done, rd);
  if (!rd->fan || !rd->bucket || !rd->key) {
    reader_destroy(rd);
    return NULL;
  }
  rd->busy = 1;
  repl_fan_early(rd->fan, repl_fan_read_quorum_answered, REPL_HEAD_GRACE_MS);
  send_head(rd->fan, bucket, key, rd->vid);
  return rd;
}

void repl_reader_range(repl_reader_t *rd, uint64_t off, uint64_t len) {
  uint64_t size = rd->meta ? rd->meta->size : 0;
  rd->pos = off < size ? off : size;
  rd->end = len == UINT64_MAX || len > size - rd->pos ? size : rd->pos + len;
}

static void read_next(repl_reader_t *rd);

static void reader_deliver_eof(void *arg) {
  repl_reader_t *rd = arg;
  rd->busy = 0;
  if (rd->freed) {
    reader_destroy(rd);
    return;
  }
  rd->dcb(rd->darg, OBJ_OK, NULL, 0, 1);
}

static void read_reply(void *arg, int status, const char *errmsg, const uint8_t *payload,
                       size_t len) {
  (void)errmsg;
  repl_reader_t *rd = arg;
  rd->busy = 0;
  if (rd->freed) {
    reader_destroy(rd);
    return;
  }
  Gureum__ReplReply *rep = status == RPC_OK ? gureum__repl_reply__unpack(NULL, len, payload) : NULL;
  obj_status_t st = rep ? (obj_status_t)rep->status : OBJ_EUNAVAIL;
  uint64_t want = rd->end - rd->pos < REPL_READ_CHUNK ? rd->end - rd->pos : REPL_READ_CHUNK;
  if (st == OBJ_OK && rep->data.len != want) st = OBJ_EIO; /* a short answer is a bad answer */
  if (st != OBJ_OK) {
    size_t i = rd->holders[rd->cur];
    log_warn("repl", "read_failover", "bucket=%s key=%s node=%s err=%s", rd->bucket, rd->key,
             rd->fan->t[i].name, obj_strerror(st));
    if (st == OBJ_ECORRUPT || rd->worst == OBJ_EUNAVAIL) rd->worst = st;
    repl_fan_hint(rd->fan, i); /* a corrupt or missing block there: let repair see to it */
    rd->cur++;
    if (rep) gureum__repl_reply__free_unpacked(rep, NULL);
    read_next(rd);
    return;
  }
  free(rd->chunk);
  rd->chunk = malloc(rep->data.len ? rep->data.len : 1);
  if (!rd->chunk) abort();
  memcpy(rd->chunk, rep->data.data, rep->data.len);
  size_t n = rep->data.len;
  gureum__repl_reply__free_unpacked(rep, NULL);
  rd->pos += n;
  rd->dcb(rd->darg, OBJ_OK, rd->chunk, n, rd->pos >= rd->end);
}

static void read_next(repl_reader_t *rd) {
  if (rd->cur >= rd->nholders) {
    rd->dcb(rd->darg, rd->worst == OBJ_ECORRUPT ? OBJ_ECORRUPT : OBJ_EUNAVAIL, NULL, 0, 0);
    return;
  }
  Gureum__ReplRead q = GUREUM__REPL_READ__INIT;
  q.bucket = rd->bucket;
  q.key = rd->key;
  q.version_id = rd->meta->version_id;
  q.offset = rd->pos;
  q.length = (uint32_t)(rd->end - rd->pos < REPL_READ_CHUNK ? rd->end - rd->pos : REPL_READ_CHUNK);
  uint8_t buf[2048];
  size_t n = gureum__repl_read__get_packed_size(&q);
  if (n > sizeof buf) {
    rd->dcb(rd->darg, OBJ_EIO, NULL, 0, 0);
    return;
  }
  gureum__repl_read__pack(&q, buf);
  rd->busy = 1;
  const repl_target_t *t = &rd->fan->t[rd->holders[rd->cur]];
  if (repl_call(rd->r, t, GUREUM__MSG_TYPE__MSG_REPL_READ, buf, n, REPL_READ_TIMEOUT_MS,
                read_reply, rd) != 0) {
    rd->busy = 0;
    rd->cur++;
    read_next(rd);
  }
}

void repl_read(repl_reader_t *rd, obj_data_fn cb, void *arg) {
  if (rd->busy || !rd->meta) abort(); /* a caller bug */
  rd->dcb = cb;
  rd->darg = arg;
  if (rd->pos >= rd->end) {
    rd->busy = 1;
    repl_defer(rd->r, reader_deliver_eof, rd);
    return;
  }
  read_next(rd);
}

void repl_reader_free(repl_reader_t *rd) {
  if (!rd) return;
  if (rd->busy) {
    rd->freed = 1; /* the call in flight frees it */
    return;
  }
  reader_destroy(rd);
}
