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

static void list_done(repl_fan_t *f) {
  repl_lreq_t *q = f->arg;
  Gureum__ReplListReply *reps[REPL_MAX_TARGETS] = {0};
  size_t answered = 0, failed = 0;
  repl_entry_t cut = {0};
  int have_cut = 0, any_truncated = 0;
  for (size_t i = 0; i < f->n; i++) {
    if (f->st[i] == RPC_OK && f->reply[i])
      reps[i] = gureum__repl_list_reply__unpack(NULL, f->rlen[i], f->reply[i]);
    if (!reps[i] || reps[i]->status != OBJ_OK) {
      failed++;
      continue;
    }
    answered++;
    repl_entry_t last;
    if (reps[i]->truncated && page_last(reps[i], &last)) {
      any_truncated = 1;
      if (!have_cut || entry_cmp(&last, &cut) < 0) cut = last, have_cut = 1;
    }
  }
  /* Every key has `copies` holders among the nodes; more failures than copies - R could hide
   * the only copies written. */
  uint32_t copies = f->r->o.copies < f->n ? f->r->o.copies : (uint32_t)f->n;
  if (!answered || failed > copies - repl_read_quorum(copies)) {
    q->cb(q->arg, OBJ_EUNAVAIL, NULL);
  } else {
    repl_entry_t *all = NULL;
    size_t n = 0, cap = 0;
    for (size_t i = 0; i < f->n; i++) {
      if (!reps[i] || reps[i]->status != OBJ_OK) continue;
      for (size_t j = 0; j < reps[i]->n_items; j++)
        entries_add(&all, &n, &cap, (repl_entry_t){reps[i]->items[j]->key, reps[i]->items[j]});
      for (size_t j = 0; j < reps[i]->n_prefixes; j++)
        entries_add(&all, &n, &cap, (repl_entry_t){reps[i]->prefixes[j], NULL});
    }
    if (n) qsort(all, n, sizeof *all, entry_qcmp);
    /* One entry per key (the newest copy sorts first) or per version; nothing past the cut. */
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
      if (have_cut && entry_cmp(&all[i], &cut) > 0) break;
      if (k && same_entry(&all[k - 1], &all[i], q->versions)) continue;
      all[k++] = all[i];
    }
    int truncated = any_truncated || k > q->max;
    if (k > q->max) k = q->max;
    obj_list_t out = {0};
    out.items = calloc(k + 1, sizeof *out.items);
    out.prefixes = calloc(k + 1, sizeof *out.prefixes);
    if (!out.items || !out.prefixes) abort();
    for (size_t i = 0; i < k; i++) {
      if (all[i].meta)
        out.items[out.n++] = all[i].meta;
      else
        out.prefixes[out.nprefixes++] = (char *)all[i].name;
    }
    out.truncated = truncated && k > 0;
    if (out.truncated) {
      out.next_key = (char *)all[k - 1].name;
      out.next_version = all[k - 1].meta ? all[k - 1].meta->version_id : (char *)"";
    }
    q->cb(q->arg, OBJ_OK, &out);
    free(out.items);
    free(out.prefixes);
    free(all);
  }
  for (size_t i = 0; i < f->n; i++)
    if (reps[i]) gureum__repl_list_reply__free_unpacked(reps[i], NULL);
  free(q);
  repl_fan_free(f);
}

static void list_start(repl_t *r, int versions, const char *bucket, const char *prefix,
                       const char *delimiter, const char *marker, const char *version_marker,
                       uint32_t max, obj_list_fn cb, void *arg) {
  repl_lreq_t *q = calloc(1, sizeof *q);
  if (!q) abort();
  q->versions = versions;
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
