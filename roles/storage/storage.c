/* storage.c - the storage role: wires the object layer, bucket/key records and the S3 front
 * together, and serves the admin API for access keys (gureum key ..., gureum bucket allow). */
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "control.h"
#include "log.h"
#include "role.h"
#include "s3.h"
#include "storage_int.h"

storage_t *storage_of(node_t *n) {
  for (int i = 0; role_registry[i] && i < 8; i++)
    if (strcmp(role_registry[i]->name, "storage") == 0) return n->roles[i].state;
  return NULL;
}

static void random_alnum(char *out, size_t n, const char *alphabet) {
  unsigned char raw[64];
  size_t al = strlen(alphabet);
  RAND_bytes(raw, (int)n);
  for (size_t i = 0; i < n; i++) out[i] = alphabet[raw[i] % al];
  out[n] = 0;
}

/* ---- admin API: keys ---- */

typedef struct key_op_s {
  http_req_t *req;
  Gureum__AccessKey key;
  char akid[24], secret[48], name[128];
  Gureum__KeyValue **grants;
  size_t ngrants;
  int created;
} key_op_t;

static void key_op_free(key_op_t *k) {
  for (size_t i = 0; i < k->ngrants; i++) {
    free(k->grants[i]->key);
    free(k->grants[i]->value);
    free(k->grants[i]);
  }
  free(k->grants);
  free(k);
}

static void key_written(void *arg, const Gureum__StateResponse *r) {
  key_op_t *k = arg;
  if (r->code == GUREUM__STATE_RESPONSE__CODE__OK) {
    if (k->created)
      admin_reply_json(k->req, 200, json_pack("{s:s,s:s,s:s,s:b}", "access_key_id", k->akid, "secret_access_key",
                                              k->secret, "name", k->name, "can_create_buckets", k->key.can_create_buckets));
    else
      admin_reply_json(k->req, 200, json_pack("{s:s,s:s}", "access_key_id", k->akid, "status", "ok"));
  } else if (r->code == GUREUM__STATE_RESPONSE__CODE__CONFLICT) {
    admin_reply_error(k->req, 409, "Conflict", "the key changed meanwhile; retry");
  } else {
    admin_reply_error(k->req, 503, "NoQuorum", "%s", r->error ? r->error : "control plane unavailable");
  }
  key_op_free(k);
}

static void admin_key_create(node_t *n, http_req_t *req, void *arg) {
  (void)arg;
  storage_t *st = storage_of(n);
  json_t *body = req->body_len ? json_loadb(req->body, req->body_len, 0, NULL) : json_object();
  const char *name = json_string_value(json_object_get(body, "name"));
  if (!st) {
    json_decref(body);
    admin_reply_error(req, 503, "RoleNotRunning", "the storage role does not run on this node; use a storage node");
    return;
  }
  if (!name || !*name || strlen(name) > 100) {
    json_decref(body);
    admin_reply_error(req, 400, "InvalidName", "field 'name' is required (1-100 characters)");
    return;
  }
  key_op_t *k = calloc(1, sizeof *k);
  k->req = req;
  k->created = 1;
  snprintf(k->name, sizeof k->name, "%s", name);
  memcpy(k->akid, "GK", 2);
  random_alnum(k->akid + 2, 18, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
  random_alnum(k->secret, 40, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/");
  gureum__access_key__init(&k->key);
  k->key.access_key_id = k->akid;
  k->key.secret_access_key = k->secret;
  k->key.name = k->name;
  k->key.can_create_buckets = !json_is_true(json_object_get(body, "no_create_bucket"));
  k->key.created_ms = s3_now_ms();
  json_decref(body);
  s3_meta_put_key(st->meta, &k->key, 0, key_written, k);
}

static void admin_key_list(node_t *n, http_req_t *req, void *arg) {
  (void)arg;
  storage_t *st = storage_of(n);
  if (!st) {
    admin_reply_error(req, 503, "RoleNotRunning", "the storage role does not run on this node; use a storage node");
    return;
  }
  /* The local mirror is enough for a listing; it trails the leader by milliseconds. */
  json_t *a = json_array();
  s3_meta_keys_json(st->meta, a);
  admin_reply_json(req, 200, a);
}

static void key_deleted(void *arg, const Gureum__StateResponse *r) {
  http_req_t *req = arg;
  if (r->code == GUREUM__STATE_RESPONSE__CODE__OK) admin_reply_json(req, 200, json_pack("{s:s}", "status", "deleted"));
  else if (r->code == GUREUM__STATE_RESPONSE__CODE__NOT_FOUND) admin_reply_error(req, 404, "NoSuchKey", "no such access key");
  else admin_reply_error(req, 503, "NoQuorum", "%s", r->error ? r->error : "control plane unavailable");
}

static void admin_key_delete(node_t *n, http_req_t *req, void *arg) {
  (void)arg;
  const char *akid = req->path + strlen("/v1/keys/");
  char key[160];
  snprintf(key, sizeof key, "key/%s", akid);
  control_delete(n->control, key, CONTROL_ANY_REVISION, key_deleted, req);
}

/* POST /v1/buckets/NAME/allow {"key": AKID, "permission": "read"|"write"|"owner"} */
static void admin_bucket_allow(node_t *n, http_req_t *req, void *arg) {
  (void)arg;
  storage_t *st = storage_of(n);
  if (!st) {
    admin_reply_error(req, 503, "RoleNotRunning", "the storage role does not run on this node; use a storage node");
    return;
  }
  const char *p = req->path + strlen("/v1/buckets/");
  size_t bl = strcspn(p, "/");
  char bucket[64];
  snprintf(bucket, sizeof bucket, "%.*s", (int)(bl < 63 ? bl : 63), p);
  json_t *body = json_loadb(req->body, req->body_len, 0, NULL);
  char akid_copy[160], perm_copy[16];
  /* Copies: the JSON document is freed before the answers below use these. */
  snprintf(akid_copy, sizeof akid_copy, "%s", json_string_value(json_object_get(body, "key")) ? json_string_value(json_object_get(body, "key")) : "");
  snprintf(perm_copy, sizeof perm_copy, "%s", json_string_value(json_object_get(body, "permission")) ? json_string_value(json_object_get(body, "permission")) : "");
  const char *akid = akid_copy[0] ? akid_copy : NULL;
  const char *perm = perm_copy[0] ? perm_copy : NULL;
  const Gureum__AccessKey *k = akid ? s3_meta_key(st->meta, akid) : NULL;
  if (!perm || (strcmp(perm, "read") != 0 && strcmp(perm, "write") != 0 && strcmp(perm, "owner") != 0)) {
    json_decref(body);
    admin_reply_error(req, 400, "InvalidPermission", "field 'permission' must be read, write or owner");
    return;
  }
  if (!k) {
    json_decref(body);
    admin_reply_error(req, 404, "NoSuchKey", "no such access key: %s", akid ? akid : "(missing field 'key')");
    return;
  }
  if (!s3_bucket_name_valid(bucket)) {
    json_decref(body);
    admin_reply_error(req, 400, "InvalidBucketName", "not a valid bucket name: %s", bucket);
    return;
  }
  key_op_t *op = calloc(1, sizeof *op);
  op->req = req;
  op->key = *k;
  snprintf(op->akid, sizeof op->akid, "%s", k->access_key_id);
  snprintf(op->secret, sizeof op->secret, "%s", k->secret_access_key);
  snprintf(op->name, sizeof op->name, "%s", k->name);
  op->key.access_key_id = op->akid;
  op->key.secret_access_key = op->secret;
  op->key.name = op->name;
  op->grants = calloc(k->n_grants + 1, sizeof *op->grants);
  for (size_t i = 0; i < k->n_grants; i++) {
    if (strcmp(k->grants[i]->key, bucket) == 0) continue;
    Gureum__KeyValue *kv = malloc(sizeof *kv);
    gureum__key_value__init(kv);
    kv->key = strdup(k->grants[i]->key);
    kv->value = strdup(k->grants[i]->value);
    op->grants[op->ngrants++] = kv;
  }
  Gureum__KeyValue *kv = malloc(sizeof *kv);
  gureum__key_value__init(kv);
  kv->key = strdup(bucket);
  kv->value = strdup(perm);
  op->grants[op->ngrants++] = kv;
  op->key.grants = op->grants;
  op->key.n_grants = op->ngrants;
  json_decref(body);
  s3_meta_put_key(st->meta, &op->key, (int64_t)s3_meta_key_revision(st->meta, op->akid), key_written, op);
}

/* ---- role ---- */

/* Where a partition lives, from the layout: owners first (the first `copies` of them), then
 * previous owners still serving a move. UINT32_MAX: every storage node once. */
static size_t storage_place(void *arg, uint32_t partition, uint32_t copies, repl_target_t *out,
                            size_t max) {
  storage_t *st = arg;
  const Gureum__Layout *l = layout_mgr_current(st->layout);
  if (!l) return 0;
  size_t n = 0;
  if (partition == UINT32_MAX) {
    for (size_t i = 0; i < l->n_nodes && n < max; i++, n++) {
      memset(&out[n], 0, sizeof out[n]);
      snprintf(out[n].name, sizeof out[n].name, "%s", l->nodes[i]->name);
      snprintf(out[n].addr, sizeof out[n].addr, "%s", l->nodes[i]->addr);
      out[n].owner = 1;
    }
    return n;
  }
  const Gureum__LayoutNode *own[LAYOUT_MAX_REPLICAS], *prev[LAYOUT_MAX_REPLICAS];
  int no = layout_owners(l, partition, copies, own, LAYOUT_MAX_REPLICAS);
  int np = layout_prev(l, partition, copies, prev, LAYOUT_MAX_REPLICAS);
  for (int i = 0; i < no && n < max; i++, n++) {
    memset(&out[n], 0, sizeof out[n]);
    snprintf(out[n].name, sizeof out[n].name, "%s", own[i]->name);
    snprintf(out[n].addr, sizeof out[n].addr, "%s", own[i]->addr);
    out[n].owner = 1;
  }
  for (int i = 0; i < np; i++) {
    size_t j;
    for (j = 0; j < n && strcmp(out[j].name, prev[i]->name) != 0; j++) {}
    if (j == n) {
      if (n == max) break;
      memset(&out[n], 0, sizeof out[n]);
      snprintf(out[n].name, sizeof out[n].name, "%s", prev[i]->name);
      snprintf(out[n].addr, sizeof out[n].addr, "%s", prev[i]->addr);
      n++;
    }
    out[j].prev = 1;
  }
  return n;
}

static void storage_hint(void *arg, const char *node, uint32_t partition) {
  storage_t *st = arg;
  if (st->repair) repair_hint(st->repair, node, partition);
}

static void storage_teardown(storage_t *st) {
  if (st->repair) repair_free(st->repair);
  if (st->repl) repl_free(st->repl);
  if (st->replica) replica_free(st->replica);
  if (st->layout) layout_mgr_free(st->layout);
  if (st->meta) s3_meta_free(st->meta);
  if (st->obj) obj_free(st->obj);
}

static void *storage_start(node_t *n, char *err, size_t errlen) {
  storage_t *st = calloc(1, sizeof *st);
  char *e = NULL;
  st->node = n;
  if (!(st->obj = obj_new(&n->loop, n->store, &e))) {
    snprintf(err, errlen, "object layer: %s", e ? e : "?");
    free(e);
    free(st);
    return NULL;
  }
  st->layout = layout_mgr_new(n);
  st->replica = replica_new(n, st->obj);
  repl_opts_t ro = {.copies = (uint32_t)n->cfg.storage_replicas,
                    .rr_copies = (uint32_t)n->cfg.storage_rr_replicas,
                    .place = storage_place,
                    .hint = storage_hint,
                    .arg = st};
  st->repl = repl_new(n, st->replica, &ro);
  st->repair = st->layout && st->replica && st->repl
                   ? repair_new(n, st->obj, st->replica, st->repl, st->layout)
                   : NULL;
  st->meta = s3_meta_new(n->control);
  if (!st->repair || !(st->s3 = s3_start(n, st->repl, st->meta, err, errlen))) {
    if (!st->repair) snprintf(err, errlen, "storage: out of memory");
    storage_teardown(st);
    free(st);
    return NULL;
  }
  static int routes_added;
  if (!routes_added) {
    routes_added = 1;
    admin_route(n->admin, "POST", "/v1/keys", admin_key_create, NULL);
    admin_route(n->admin, "GET", "/v1/keys", admin_key_list, NULL);
    admin_route(n->admin, "DELETE", "/v1/keys/*", admin_key_delete, NULL);
    admin_route(n->admin, "POST", "/v1/buckets/*", admin_bucket_allow, NULL);
    storage_admin_routes(n);
  }
  log_info("s3", "listening", "s3=%s:%d website=%s:%d", n->cfg.bind, n->cfg.s3_port, n->cfg.bind,
           n->cfg.s3_website_port);
  return st;
}

/* The S3 front has answered everything in flight: nothing starts new replicated work now. */
static void storage_s3_stopped(void *arg) {
  storage_t *st = arg;
  storage_teardown(st);
  void (*cb)(void *) = st->stop_cb;
  void *carg = st->stop_arg;
  free(st);
  if (cb) cb(carg);
}

static void storage_stop(void *state, void (*cb)(void *arg), void *arg) {
  storage_t *st = state;
  st->stop_cb = cb;
  st->stop_arg = arg;
  s3_stop(st->s3, storage_s3_stopped, st);
}

static void storage_endpoints(void *state, json_t *eps) {
  storage_t *st = state;
  char url[128];
  snprintf(url, sizeof url, "http://%s:%d", st->node->cfg.advertise, st->node->cfg.s3_port);
  json_object_set_new(eps, "s3", json_string(url));
  snprintf(url, sizeof url, "http://%s:%d", st->node->cfg.advertise, st->node->cfg.s3_website_port);
  json_object_set_new(eps, "website", json_string(url));
}

const role_t storage_role = {"storage", storage_start, storage_stop, storage_endpoints};
