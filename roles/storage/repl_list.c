/* repl_list.c - replicated listings: every storage node lists what it holds of the bucket, and
 * the pages are merged - one entry per key (the newest copy), cut where the first truncated
 * answer stops so no node's keys are skipped. */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "obj_engine.h"
#include "proto/envelope.pb-c.h"
#include "repl_int.h"

#define REPL_LIST_TIMEOUT_MS 15000
#define REPL_LIST_GRACE_MS 200 /* enough nodes answered: how long the others may still */

typedef struct {
  const char *name;         /* key or common prefix */
  Gureum__ObjectMeta *meta; /* NULL for a prefix */
} repl_entry_t;

typedef struct {
  int versions;
  uint32_t max;
  char *bucket;
  obj_list_fn cb;
  void *arg;
} repl_lreq_t;

/* Key ascending; versions of one key newest first (ts, then id); prefixes have no versions. */
static int entry_cmp(const repl_entry_t *a, const repl_entry_t *b) {
  int c = strcmp(a->name, b->name);
  if (c || !a->meta || !b->meta) return c ? c : (a->meta != NULL) - (b->meta != NULL);
  if (a->meta->ts_us != b->meta->ts_us) return a->meta->ts_us > b->meta->ts_us ? -1 : 1;
  return strcmp(a->meta->version_id, b->meta->version_id);
}

static int entry_qcmp(const void *a, const void *b) { return entry_cmp(a, b); }

/* Same entry for the listing: the same key (ListObjects) or the same version (versions). */
static int same_entry(const repl_entry_t *a, const repl_entry_t *b, int versions) {
  if (strcmp(a->name, b->name) != 0 || (a->meta == NULL) != (b->meta == NULL)) return 0;
  return !versions || !a->meta || strcmp(a->meta->version_id, b->meta->version_id) == 0;
}

static void entries_add(repl_entry_t **v, size_t *n, size_t *cap, repl_entry_t e) {
  if (*n == *cap) {
    *cap = *cap ? *cap * 2 : 256;
    *v = realloc(*v, *cap * sizeof **v);
    if (!*v) abort();
  }
  (*v)[(*n)++] = e;
}

/* The last entry of a truncated page: nothing after it is known from that node. */
static int page_last(const Gureum__ReplListReply *p, repl_entry_t *last) {
  int have = 0;
  for (size_t j = 0; j < p->n_items; j++) {
    repl_entry_t e = {p->items[j]->key, p->items[j]};
    if (!have || entry_cmp(&e, last) > 0) *last = e, have = 1;
  }
  for (size_t j = 0; j < p->n_prefixes; j++) {
    repl_entry_t e = {p->prefixes[j], NULL};
    if (!have || entry_cmp(&e, last) > 0) *last = e, have = 1;
  }
  return have;
}

/* A merged page waiting for the keys the replicas disagree on to be looked up. */
typedef struct {
  repl_lreq_t *q;
  repl_fan_t *f;
  Gureum__ReplListReply *reps[REPL_MAX_TARGETS];
  repl_entry_t *all; /* the page, one entry per key (or version) */
  size_t k;
  int truncated;
  Gureum__ObjectMeta **verified; /* per entry: the quorum's answer, when asked */
  uint8_t *drop;                 /* per entry: the quorum says it is gone */
  size_t pending;
} repl_page_t;

static void page_finish(repl_page_t *pg) {
  repl_lreq_t *q = pg->q;
  obj_list_t out = {0};
  out.items = calloc(pg->k + 1, sizeof *out.items);
  out.prefixes = calloc(pg->k + 1, sizeof *out.prefixes);
  if (!out.items || !out.prefixes) abort();
  for (size_t i = 0; i < pg->k; i++) {
    if (pg->drop[i]) continue;
    if (pg->all[i].meta)
      out.items[out.n++] = pg->verified[i] ? pg->verified[i] : pg->all[i].meta;
    else
      out.prefixes[out.nprefixes++] = (char *)pg->all[i].name;
  }
  out.truncated = pg->truncated && pg->k > 0;
  if (out.truncated) { /* resume after the last entry looked at, shown or not */
    out.next_key = (char *)pg->all[pg->k - 1].name;
    out.next_version = pg->all[pg->k - 1].meta ? pg->all[pg->k - 1].meta->version_id : (char *)"";
  }
  q->cb(q->arg, OBJ_OK, &out);
  free(out.items);
  free(out.prefixes);
  for (size_t i = 0; i < pg->k; i++)
    if (pg->verified[i]) gureum__object_meta__free_unpacked(pg->verified[i], NULL);
  free(pg->verified);
  free(pg->drop);
  free(pg->all);
  for (size_t i = 0; i < pg->f->n; i++)
    if (pg->reps[i]) gureum__repl_list_reply__free_unpacked(pg->reps[i], NULL);
  repl_fan_free(pg->f);
  free(q->bucket);
  free(q);
  free(pg);
}

typedef struct {
  repl_page_t *pg;
  size_t i;
} repl_check_t;

static void checked(void *arg, obj_status_t st, const Gureum__ObjectMeta *m) {
  repl_check_t *c = arg;
  repl_page_t *pg = c->pg;
  if (st == OBJ_OK && m)
    pg->verified[c->i] = obj_meta_dup(m);
  else if (st == OBJ_ENOENT || st == OBJ_EDELETED) {
    pg->drop[c->i] = 1; /* a replica that missed its delete listed it */
    log_info("repl", "listing_stale_copy", "bucket=%s key=%s", pg->q->bucket, pg->all[c->i].name);
  }
  free(c);
  if (--pg->pending == 0) page_finish(pg);
}

/* Replicas that hold the key's partition (for its storage class) and answered. */
static size_t holders_answered(repl_page_t *pg, const Gureum__ObjectMeta *m) {
  repl_t *r = pg->f->r;
  repl_target_t t[REPL_MAX_TARGETS];
  uint32_t copies = repl_copies_for(r, m->storage_class);
  size_t n = r->o.place ? r->o.place(r->o.arg, obj_partition(m->bucket, m->key), copies, t,
                                     REPL_MAX_TARGETS) : 0;
  size_t answered = 0;
  for (size_t i = 0; i < pg->f->n; i++) {
    if (!pg->reps[i] || pg->reps[i]->status != OBJ_OK) continue;
    for (size_t j = 0; j < n; j++)
      if (t[j].owner && strcmp(t[j].name, pg->f->t[i].name) == 0) answered++;
  }
  return answered;
}

static void list_done(repl_fan_t *f) {
  repl_lreq_t *q = f->arg;
  repl_page_t *pg = calloc(1, sizeof *pg);
  if (!pg) abort();
  pg->q = q;
  pg->f = f;
  size_t answered = 0, failed = 0;
  repl_entry_t cut = {0};
  int have_cut = 0, any_truncated = 0;
  for (size_t i = 0; i < f->n; i++) {
    if (f->st[i] == RPC_OK && f->reply[i])
      pg->reps[i] = gureum__repl_list_reply__unpack(NULL, f->rlen[i], f->reply[i]);
    if (!pg->reps[i] || pg->reps[i]->status != OBJ_OK) {
      failed++;
      continue;
    }
    answered++;
    repl_entry_t last;
    if (pg->reps[i]->truncated && page_last(pg->reps[i], &last)) {
      any_truncated = 1;
      if (!have_cut || entry_cmp(&last, &cut) < 0) cut = last, have_cut = 1;
    }
  }
  /* Every key has `copies` holders among the nodes; more failures than copies - R could hide
   * the only copies written. */
  uint32_t copies = f->r->o.copies < f->n ? f->r->o.copies : (uint32_t)f->n;
  if (!answered || failed > copies - repl_read_quorum(copies)) {
    q->cb(q->arg, OBJ_EUNAVAIL, NULL);
    pg->k = 0;
    pg->drop = NULL;
    for (size_t i = 0; i < f->n; i++)
      if (pg->reps[i]) gureum__repl_list_reply__free_unpacked(pg->reps[i], NULL);
    repl_fan_free(f);
    free(q->bucket);
    free(q);
    free(pg);
    return;
  }
  size_t n = 0, cap = 0;
  for (size_t i = 0; i < f->n; i++) {
    Gureum__ReplListReply *rep = pg->reps[i];
    if (!rep || rep->status != OBJ_OK) continue;
    for (size_t j = 0; j < rep->n_items; j++)
      entries_add(&pg->all, &n, &cap, (repl_entry_t){rep->items[j]->key, rep->items[j]});
    for (size_t j = 0; j < rep->n_prefixes; j++)
      entries_add(&pg->all, &n, &cap, (repl_entry_t){rep->prefixes[j], NULL});
  }
  if (n) qsort(pg->all, n, sizeof *pg->all, entry_qcmp);
  /* One entry per key (the newest copy sorts first) or per version; nothing past the cut. How
   * many replicas listed each key tells whether they agree. */
  size_t k = 0, *seen = calloc(n + 1, sizeof *seen);
  if (!seen) abort();
  for (size_t i = 0; i < n; i++) {
    if (have_cut && entry_cmp(&pg->all[i], &cut) > 0) break;
    if (k && same_entry(&pg->all[k - 1], &pg->all[i], q->versions)) {
      seen[k - 1]++;
      continue;
    }
    seen[k] = 1;
    pg->all[k++] = pg->all[i];
  }
  pg->truncated = any_truncated || k > q->max;
  if (k > q->max) k = q->max;
  pg->k = k;
  pg->verified = calloc(k + 1, sizeof *pg->verified);
  pg->drop = calloc(k + 1, 1);
  if (!pg->verified || !pg->drop) abort();
  /* A key listed by fewer of its holders than answered: one of them may hold its delete (a
   * marker or tombstone is not listed). Ask a quorum, as GetObject would. */
  pg->pending = 1;
  for (size_t i = 0; i < k && !q->versions; i++) {
    const Gureum__ObjectMeta *m = pg->all[i].meta;
    if (!m || seen[i] >= holders_answered(pg, m)) continue;
    repl_check_t *c = malloc(sizeof *c);
    if (!c) abort();
    *c = (repl_check_t){pg, i};
    pg->pending++;
    repl_head(f->r, q->bucket, m->key, NULL, checked, c);
  }
  free(seen);
  if (--pg->pending == 0) page_finish(pg);
}

static void list_start(repl_t *r, int versions, const char *bucket, const char *prefix,
                       const char *delimiter, const char *marker, const char *version_marker,
                       uint32_t max, obj_list_fn cb, void *arg) {
  repl_lreq_t *q = calloc(1, sizeof *q);
  if (!q) abort();
  q->versions = versions;
  q->bucket = strdup(bucket);
  if (!q->bucket) abort();
  q->max = max && max < OBJ_LIST_MAX ? max : OBJ_LIST_MAX;
  q->cb = cb;
  q->arg = arg;
  Gureum__ReplList l = GUREUM__REPL_LIST__INIT;
  l.bucket = (char *)bucket;
  l.prefix = (char *)(prefix ? prefix : "");
  l.delimiter = (char *)(delimiter ? delimiter : "");
  l.start_after = (char *)(marker ? marker : "");
  l.version_marker = (char *)(version_marker ? version_marker : "");
  l.max = q->max;
  l.versions = versions;
  repl_fan_t *f = repl_fan_new(r, UINT32_MAX, r->o.copies, list_done, q);
  if (!f) abort();
  repl_fan_early(f, repl_fan_listing_answered, REPL_LIST_GRACE_MS);
  size_t n = gureum__repl_list__get_packed_size(&l);
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf) abort();
  gureum__repl_list__pack(&l, buf);
  repl_fan_send(f, GUREUM__MSG_TYPE__MSG_REPL_LIST, buf, n, REPL_LIST_TIMEOUT_MS);
  free(buf);
}

void repl_list(repl_t *r, const char *bucket, const char *prefix, const char *delimiter,
               const char *start_after, uint32_t max, obj_list_fn cb, void *arg) {
  list_start(r, 0, bucket, prefix, delimiter, start_after, NULL, max, cb, arg);
}

void repl_list_versions(repl_t *r, const char *bucket, const char *prefix, const char *delimiter,
                        const char *key_marker, const char *version_marker, uint32_t max,
                        obj_list_fn cb, void *arg) {
  list_start(r, 1, bucket, prefix, delimiter, key_marker, version_marker, max, cb, arg);
}
