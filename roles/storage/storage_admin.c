/* storage_admin.c - the storage role's operator API: the cluster-wide storage status (asked of
 * every storage node), repair on demand, and a test-only fault injection hook. */
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "gossip.h"
#include "log.h"
#include "proto/envelope.pb-c.h"
#include "proto/replica.pb-c.h"
#include "storage_int.h"

#define STATUS_TIMEOUT_MS 3000

static storage_t *running(node_t *n, http_req_t *req) {
  storage_t *st = storage_of(n);
  if (!st)
    admin_reply_error(req, 503, "RoleNotRunning",
                      "the storage role does not run on this node; ask a storage node (gureum members)");
  return st;
}

/* ---- GET /v1/storage/status ---- */

typedef struct {
  storage_t *st;
  http_req_t *req;
  json_t *nodes; /* per layout node, filled as answers come */
  size_t pending;
} status_op_t;

static const char *member_state(node_t *n, const char *name) {
  for (size_t i = 0, c = gossip_count(n->gossip); i < c; i++) {
    const member_t *m = gossip_member(n->gossip, i);
    if (strcmp(m->name, name) == 0) return gossip_state_name(m->state);
  }
  return "unknown";
}

static void status_finish(status_op_t *op) {
  const Gureum__Layout *l = layout_mgr_current(op->st->layout);
  json_int_t moving = 0, to_pull = 0, pulled = 0, elapsed = 0;
  for (size_t p = 0; l && p < l->n_partitions; p++) moving += l->partitions[p]->n_prev > 0;
  size_t i;
  json_t *n;
  json_array_foreach(op->nodes, i, n) {
    json_t *mv = json_object_get(n, "moving");
    if (json_integer_value(json_object_get(mv, "layout_version")) != (json_int_t)(l ? l->version : 0))
      continue;
    to_pull += json_integer_value(json_object_get(mv, "to_pull"));
    pulled += json_integer_value(json_object_get(mv, "pulled"));
    json_int_t e = json_integer_value(json_object_get(mv, "elapsed_ms"));
    if (e > elapsed) elapsed = e;
  }
  json_t *rb = json_object();
  json_object_set_new(rb, "moving_partitions", json_integer(moving));
  json_object_set_new(rb, "to_pull", json_integer(to_pull));
  json_object_set_new(rb, "pulled", json_integer(pulled));
  double pct = !moving ? 100.0 : to_pull ? 100.0 * (double)pulled / (double)to_pull : 0.0;
  json_object_set_new(rb, "percent", json_real(pct));
  if (moving && pulled && to_pull > pulled)
    json_object_set_new(rb, "eta_s", json_integer(elapsed * (to_pull - pulled) / pulled / 1000 + 1));
  else
    json_object_set_new(rb, "eta_s", moving ? json_null() : json_integer(0));
  json_t *out = json_pack("{s:I,s:I,s:I,s:o,s:o}", "layout_version",
                          (json_int_t)(l ? l->version : 0), "replicas",
                          (json_int_t)op->st->node->cfg.storage_replicas, "rr_replicas",
                          (json_int_t)op->st->node->cfg.storage_rr_replicas, "nodes", op->nodes,
                          "rebalance", rb);
  admin_reply_json(op->req, 200, out);
  free(op);
}

typedef struct {
  status_op_t *op;
  json_t *node;
} status_slot_t;

static void status_reply(void *arg, int status, const char *errmsg, const uint8_t *payload,
                         size_t len) {
  status_slot_t *s = arg;
  Gureum__ReplReply *rep = status == RPC_OK ? gureum__repl_reply__unpack(NULL, len, payload) : NULL;
  json_t *j = rep ? json_loadb((const char *)rep->data.data, rep->data.len, 0, NULL) : NULL;
  if (j) {
    json_object_del(j, "node");
    json_object_update_missing(s->node, j);
    json_decref(j);
  } else {
    json_object_set_new(s->node, "error", json_string(errmsg && *errmsg ? errmsg : rpc_strerror(status)));
  }
  if (rep) gureum__repl_reply__free_unpacked(rep, NULL);
  status_op_t *op = s->op;
  free(s);
  if (--op->pending == 0) status_finish(op);
}

static void admin_status(node_t *n, http_req_t *req, void *arg) {
  (void)arg;
  storage_t *st = running(n, req);
  if (!st) return;
  const Gureum__Layout *l = layout_mgr_current(st->layout);
  status_op_t *op = calloc(1, sizeof *op);
  if (!op) abort();
  op->st = st;
  op->req = req;
  op->nodes = json_array();
  op->pending = 1;
  for (size_t i = 0; l && i < l->n_nodes; i++) {
    const Gureum__LayoutNode *ln = l->nodes[i];
    uint8_t bm[LAYOUT_BITMAP_BYTES];
    json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:I}", "name", ln->name, "zone", ln->zone, "addr",
                          ln->addr, "state", member_state(n, ln->name), "partitions",
                          (json_int_t)layout_partitions_of(l, ln->name, bm));
    json_array_append_new(op->nodes, j);
    status_slot_t *s = calloc(1, sizeof *s);
    if (!s) abort();
    *s = (status_slot_t){op, j};
    repl_target_t t = {0};
    snprintf(t.name, sizeof t.name, "%s", ln->name);
    snprintf(t.addr, sizeof t.addr, "%s", ln->addr);
    op->pending++;
    if (repl_call(st->repl, &t, GUREUM__MSG_TYPE__MSG_REPL_STATS, "", 0, STATUS_TIMEOUT_MS,
                  status_reply, s) != 0) {
      op->pending--;
      json_object_set_new(j, "error", json_string("unreachable"));
      free(s);
    }
  }
  if (--op->pending == 0) status_finish(op);
}

/* ---- repair on demand ---- */

static void admin_scrub(node_t *n, http_req_t *req, void *arg) {
  (void)arg;
  storage_t *st = running(n, req);
  if (!st) return;
  repair_scrub_now(st->repair);
  admin_reply_json(req, 202, json_pack("{s:s}", "status", "scrub started"));
}

static void admin_sync(node_t *n, http_req_t *req, void *arg) {
  (void)arg;
  storage_t *st = running(n, req);
  if (!st) return;
  repair_antientropy_now(st->repair);
  admin_reply_json(req, 202, json_pack("{s:s}", "status", "anti-entropy started"));
}

static void admin_layout(node_t *n, http_req_t *req, void *arg) {
  (void)arg;
  storage_t *st = running(n, req);
  if (st) layout_mgr_admin(st->layout, req);
}

/* ---- POST /v1/debug/corrupt?bucket=B&key=K&version=V&offset=N (storage.debug_hooks) ---- */

static void corrupted(void *arg, obj_status_t st) {
  http_req_t *req = arg;
  if (st == OBJ_OK)
    admin_reply_json(req, 200, json_pack("{s:s}", "status", "corrupted"));
  else
    admin_reply_error(req, st == OBJ_ENOENT || st == OBJ_ENOVERSION ? 404 : 500, "CorruptFailed",
                      "%s", obj_strerror(st));
}

static void admin_corrupt(node_t *n, http_req_t *req, void *arg) {
  (void)arg;
  storage_t *st = running(n, req);
  if (!st) return;
  if (!n->cfg.storage_debug_hooks) {
    admin_reply_error(req, 403, "DebugHooksOff", "fault injection is off; start the node with storage.debug_hooks: true");
    return;
  }
  char *b = http_req_query_param(req, "bucket"), *k = http_req_query_param(req, "key");
  char *v = http_req_query_param(req, "version"), *o = http_req_query_param(req, "offset");
  if (!b || !k || !v) {
    admin_reply_error(req, 400, "BadRequest", "bucket, key and version are required");
  } else {
    log_warn("storage", "debug_corrupt", "bucket=%s key=%s version=%s", b, k, v);
    obj_debug_corrupt(st->obj, b, k, v, o ? strtoull(o, NULL, 10) : 0, corrupted, req);
  }
  free(b), free(k), free(v), free(o);
}

void storage_admin_routes(node_t *n) {
  admin_route(n->admin, "GET", "/v1/storage/status", admin_status, NULL);
  admin_route(n->admin, "GET", "/v1/storage/layout", admin_layout, NULL);
  admin_route(n->admin, "POST", "/v1/storage/scrub", admin_scrub, NULL);
  admin_route(n->admin, "POST", "/v1/storage/sync", admin_sync, NULL);
  admin_route(n->admin, "POST", "/v1/debug/corrupt", admin_corrupt, NULL);
}
