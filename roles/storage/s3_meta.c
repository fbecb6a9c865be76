/* s3_meta.c - buckets and access keys: replicated records in the control plane, mirrored into
 * small local tables by watches so every S3 request can check them without a round trip. */
#include "s3_meta.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

typedef struct s3_rec_s {
  char *name;        /* record name without the namespace */
  uint64_t revision;
  void *msg;         /* Gureum__BucketConfig or Gureum__AccessKey */
} s3_rec_t;

typedef struct s3_table_s {
  s3_rec_t *recs;
  size_t n, cap;
  int is_bucket;
} s3_table_t;

struct s3_meta_s {
  control_t *control;
  s3_table_t buckets, keys;
  int watch_buckets, watch_keys;
};

static void rec_free_msg(const s3_table_t *t, void *msg) {
  if (!msg) return;
  if (t->is_bucket) gureum__bucket_config__free_unpacked(msg, NULL);
  else gureum__access_key__free_unpacked(msg, NULL);
}

static s3_rec_t *table_find(s3_table_t *t, const char *name) {
  for (size_t i = 0; i < t->n; i++)
    if (strcmp(t->recs[i].name, name) == 0) return &t->recs[i];
  return NULL;
}

/* Keep buckets sorted by name: ListBuckets returns them in order. */
static void table_set(s3_table_t *t, const char *name, uint64_t rev, void *msg) {
  s3_rec_t *r = table_find(t, name);
  if (r) {
    rec_free_msg(t, r->msg);
    r->msg = msg;
    r->revision = rev;
    return;
  }
  if (t->n == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 16;
    s3_rec_t *a = realloc(t->recs, cap * sizeof *a);
    if (!a) {
      rec_free_msg(t, msg);
      return;
    }
    t->recs = a;
    t->cap = cap;
  }
  size_t i = t->n;
  while (i > 0 && strcmp(t->recs[i - 1].name, name) > 0) {
    t->recs[i] = t->recs[i - 1];
    i--;
  }
  t->recs[i] = (s3_rec_t){strdup(name), rev, msg};
  t->n++;
}

static void table_del(s3_table_t *t, const char *name) {
  for (size_t i = 0; i < t->n; i++)
    if (strcmp(t->recs[i].name, name) == 0) {
      free(t->recs[i].name);
      rec_free_msg(t, t->recs[i].msg);
      memmove(&t->recs[i], &t->recs[i + 1], (t->n - i - 1) * sizeof *t->recs);
      t->n--;
      return;
    }
}

static void table_free(s3_table_t *t) {
  for (size_t i = 0; i < t->n; i++) {
    free(t->recs[i].name);
    rec_free_msg(t, t->recs[i].msg);
  }
  free(t->recs);
}

static void on_change(const state_change_t *c, int resync, void *arg) {
  s3_table_t *t = arg;
  (void)resync;
  const char *name = strchr(c->key, '/');
  if (!name) return;
  name++;
  if (c->deleted) {
    table_del(t, name);
    return;
  }
  void *msg = t->is_bucket ? (void *)gureum__bucket_config__unpack(NULL, c->len, c->value)
                           : (void *)gureum__access_key__unpack(NULL, c->len, c->value);
  if (!msg) {
    log_warn("s3", "bad_record", "key=%s", c->key);
    return;
  }
  table_set(t, name, c->revision, msg);
}

s3_meta_t *s3_meta_new(control_t *control) {
  s3_meta_t *m = calloc(1, sizeof *m);
  if (!m) return NULL;
  m->control = control;
  m->buckets.is_bucket = 1;
  m->watch_buckets = control_watch(control, "bucket/", 0, on_change, &m->buckets);
  m->watch_keys = control_watch(control, "key/", 0, on_change, &m->keys);
  return m;
}

void s3_meta_free(s3_meta_t *m) {
  if (!m) return;
  if (m->control) {
    control_unwatch(m->control, m->watch_buckets);
    control_unwatch(m->control, m->watch_keys);
  }
  table_free(&m->buckets);
  table_free(&m->keys);
  free(m);
}

const Gureum__BucketConfig *s3_meta_bucket(s3_meta_t *m, const char *name, uint64_t *revision) {
  s3_rec_t *r = table_find(&m->buckets, name);
  if (revision) *revision = r ? r->revision : 0;
  return r ? r->msg : NULL;
}

const Gureum__AccessKey *s3_meta_key(s3_meta_t *m, const char *akid) {
  s3_rec_t *r = akid ? table_find(&m->keys, akid) : NULL;
  return r ? r->msg : NULL;
}

uint64_t s3_meta_key_revision(s3_meta_t *m, const char *akid) {
  s3_rec_t *r = table_find(&m->keys, akid);
  return r ? r->revision : 0;
}

size_t s3_meta_nbuckets(s3_meta_t *m) { return m->buckets.n; }
const Gureum__BucketConfig *s3_meta_bucket_at(s3_meta_t *m, size_t i) {
  return i < m->buckets.n ? m->buckets.recs[i].msg : NULL;
}

s3_perm_t s3_meta_perm(s3_meta_t *m, const char *akid, const Gureum__BucketConfig *b) {
  s3_perm_t p = S3_PERM_NONE;
  /* A website configuration opens the website port only, never the S3 API. */
  if (b && strcmp(b->acl, "public-read") == 0) p = S3_PERM_READ;
  if (b && strcmp(b->acl, "public-read-write") == 0) p = S3_PERM_WRITE;
  if (!akid || !b) return p;
  if (strcmp(b->owner, akid) == 0) return S3_PERM_OWNER;
  const Gureum__AccessKey *k = s3_meta_key(m, akid);
  for (size_t i = 0; k && i < k->n_grants; i++) {
    if (strcmp(k->grants[i]->key, b->name) != 0) continue;
    const char *v = k->grants[i]->value;
    s3_perm_t g = strcmp(v, "owner") == 0 ? S3_PERM_OWNER : strcmp(v, "write") == 0 ? S3_PERM_WRITE
                                                                                    : S3_PERM_READ;
    if (g > p) p = g;
  }
  return p;
}

static void put_packed(s3_meta_t *m, const char *ns, const char *name, const ProtobufCMessage *msg,
                       int64_t expect, control_done_fn cb, void *arg) {
  char key[300];
  snprintf(key, sizeof key, "%s/%s", ns, name);
  size_t len = protobuf_c_message_get_packed_size(msg);
  uint8_t *buf = malloc(len ? len : 1);
  protobuf_c_message_pack(msg, buf);
  control_put(m->control, key, buf, len, expect, cb, arg);
  free(buf);
}

void s3_meta_put_bucket(s3_meta_t *m, const Gureum__BucketConfig *b, int64_t expect,
                        control_done_fn cb, void *arg) {
  put_packed(m, "bucket", b->name, &b->base, expect, cb, arg);
}

void s3_meta_delete_bucket(s3_meta_t *m, const char *name, int64_t expect, control_done_fn cb,
                           void *arg) {
  char key[300];
  snprintf(key, sizeof key, "bucket/%s", name);
  control_delete(m->control, key, expect, cb, arg);
}

void s3_meta_put_key(s3_meta_t *m, const Gureum__AccessKey *k, int64_t expect, control_done_fn cb,
                     void *arg) {
  put_packed(m, "key", k->access_key_id, &k->base, expect, cb, arg);
}

int s3_bucket_name_valid(const char *name) {
  size_t n = strlen(name);
  if (n < 3 || n > 63) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.')) return 0;
    if (c == '.' && i > 0 && (name[i - 1] == '.' || name[i - 1] == '-')) return 0;
    if (c == '-' && i > 0 && name[i - 1] == '.') return 0;
  }
  if (!((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= '0' && name[0] <= '9'))) return 0;
  char last = name[n - 1];
  if (!((last >= 'a' && last <= 'z') || (last >= '0' && last <= '9'))) return 0;
  struct in_addr a;
  if (inet_pton(AF_INET, name, &a) == 1) return 0;
  if (strncmp(name, "xn--", 4) == 0 || (n > 8 && strcmp(name + n - 8, "-s3alias") == 0)) return 0;
  return 1;
}

void s3_meta_keys_json(s3_meta_t *m, json_t *arr) {
  for (size_t i = 0; i < m->keys.n; i++) {
    const Gureum__AccessKey *k = m->keys.recs[i].msg;
    json_t *grants = json_object();
    for (size_t g = 0; g < k->n_grants; g++)
      json_object_set_new(grants, k->grants[g]->key, json_string(k->grants[g]->value));
    json_array_append_new(arr, json_pack("{s:s,s:s,s:b,s:I,s:o}", "access_key_id", k->access_key_id,
                                         "name", k->name, "can_create_buckets", k->can_create_buckets,
                                         "created_ms", (json_int_t)k->created_ms, "grants", grants));
  }
}
