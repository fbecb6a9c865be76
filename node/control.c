/* control.c - the control plane: libraft with its libuv disk backend and our authenticated
 * transport, operations routed to the leader, and voters chosen automatically from gossip. */
#include "control.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/time.h>

#include "admin.h"
#include "gossip.h"
#include "log.h"
#include "proto/envelope.pb-c.h"
#include "raft_transport.h"

#define CONTROL_TICK_MS 500
#define CONTROL_RETRY_MS 100

typedef struct control_op_s control_op_t;

struct control_s {
  node_t *node;
  uv_loop_t *loop;
  fsm_t *fsm;
  rpc_t *rpc; /* the Raft channel (raft port): tunnelled streams and forwarded operations */
  struct raft raft;
  struct raft_io io;
  struct raft_uv_transport transport;
  int raft_started, transport_ready, io_ready;
  raft_id id;
  char address[80];
  uv_timer_t tick;
  int change_pending;
  struct raft_change change;
  int last_state;
  control_op_t *ops; /* in flight, for shutdown */
  int closing;
  void (*leave_cb)(void *);
  void *leave_arg;
  struct raft_transfer transfer;
  uv_timer_t leave_timer;
  void (*close_cb)(void *);
  void *close_arg;
  int close_handles;
  metric_t *m_writes, *m_forwarded, *m_leader, *m_term;
};

/* One write or read, retried until it lands on a leader or its deadline passes. */
struct control_op_s {
  control_t *c;
  Gureum__StateRequest__Kind kind;
  Gureum__StateCommand cmd; /* WRITE: key and value point into `buf` storage below */
  char *key;
  uint8_t *value;
  size_t value_len;
  int stale;
  int no_forward; /* served for another node: never forward again */
  uint32_t limit;
  uint64_t deadline;
  int raft_busy;  /* raft holds req/barrier: free only after its callback */
  int answered;
  uv_timer_t retry;
  int retry_init;
  struct raft_apply apply;
  uint64_t wait_revision; /* answered OK remotely: hold the answer until applied here */
  uint8_t *held;          /* the packed response being held */
  size_t held_len;
  control_done_fn cb;
  void *arg;
  control_op_t *prev, *next;
};

static void op_run(control_op_t *op);
static int op_expired(control_op_t *op);
static void op_fail(control_op_t *op, Gureum__StateResponse__Code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- identity ---- */

/* The Raft id comes from the persistent node id, so a restarted node keeps its place. */
static raft_id control_id_of(const char *node_id) {
  char hex[17] = {0};
  memcpy(hex, node_id, strlen(node_id) < 16 ? strlen(node_id) : 16);
  raft_id id = strtoull(hex, NULL, 16) & 0x7fffffffffffffffull;
  return id ? id : 1;
}

static const member_t *control_member_by_id(control_t *c, raft_id id) {
  gossip_t *g = c->node->gossip;
  for (size_t i = 0; g && i < gossip_count(g); i++) {
    const member_t *m = gossip_member(g, i);
    if (m->id[0] && control_id_of(m->id) == id) return m;
  }
  return NULL;
}

static const char *control_name_of(control_t *c, raft_id id) {
  if (id == c->id) return c->node->cfg.name;
  const member_t *m = control_member_by_id(c, id);
  return m ? m->name : "";
}

static const char *role_name(int role) {
  return role == RAFT_VOTER ? "voter" : role == RAFT_STANDBY ? "standby" : "spare";
}

static const char *state_name(int s) {
  static const char *names[] = {"unavailable", "follower", "candidate", "leader"};
  return s >= 0 && s < 4 ? names[s] : "unknown";
}

/* ---- answering ---- */

static void op_closed(uv_handle_t *h) { free(h->data); } /* h->data is the op */

static void op_free(control_op_t *op) {
  control_t *c = op->c;
  if (op->prev) op->prev->next = op->next;
  else if (c->ops == op) c->ops = op->next;
  if (op->next) op->next->prev = op->prev;
  free(op->key);
  free(op->value);
  free(op->held);
  if (op->retry_init) uv_close((uv_handle_t *)&op->retry, op_closed);
  else free(op);
}

static void op_hold_cb(uv_timer_t *t);

/* Read-your-writes: a write committed through another node's leadership is answered only once
 * this node has applied it too, so the caller's next local read sees it. */
static int op_hold(control_op_t *op, const Gureum__StateResponse *resp) {
  control_t *c = op->c;
  if (op->no_forward || op->kind != GUREUM__STATE_REQUEST__KIND__WRITE ||
      resp->code != GUREUM__STATE_RESPONSE__CODE__OK || resp->revision <= fsm_applied(c->fsm) ||
      op_expired(op) || c->closing)
    return 0;
  op->wait_revision = resp->revision;
  op->held_len = gureum__state_response__get_packed_size(resp);
  if (!(op->held = malloc(op->held_len ? op->held_len : 1))) return 0;
  gureum__state_response__pack(resp, op->held);
  if (!op->retry_init) {
    uv_timer_init(c->loop, &op->retry);
    op->retry.data = op;
    op->retry_init = 1;
  }
  uv_timer_start(&op->retry, op_hold_cb, 2, 2);
  return 1;
}

static void op_answer(control_op_t *op, const Gureum__StateResponse *resp);

static void op_hold_cb(uv_timer_t *t) {
  control_op_t *op = t->data;
  if (fsm_applied(op->c->fsm) < op->wait_revision && !op_expired(op) && !op->c->closing) return;
  uv_timer_stop(t);
  Gureum__StateResponse *r = gureum__state_response__unpack(NULL, op->held_len, op->held);
  free(op->held);
  op->held = NULL;
  op->wait_revision = 0;
  if (r) {
    op_answer(op, r);
    gureum__state_response__free_unpacked(r, NULL);
  } else {
    op_fail(op, GUREUM__STATE_RESPONSE__CODE__ERROR, "lost the leader's answer");
  }
}

static void op_answer(control_op_t *op, const Gureum__StateResponse *resp) {
  if (!op->answered && !op->wait_revision && op_hold(op, resp)) return;
  if (!op->answered) {
    op->answered = 1;
    op->cb(op->arg, resp);
  }
  if (!op->raft_busy) op_free(op);
}

static void op_fail(control_op_t *op, Gureum__StateResponse__Code code, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  Gureum__StateResponse r = GUREUM__STATE_RESPONSE__INIT;
  r.code = code;
  r.error = msg;
  op_answer(op, &r);
}

static int op_expired(control_op_t *op) { return uv_now(op->c->loop) >= op->deadline; }

static void op_retry_cb(uv_timer_t *t) { op_run(t->data); }

/* No leader yet (election in progress) or it moved: try again shortly, until the deadline. */
static void op_retry_later(control_op_t *op, const char *why) {
  if (op_expired(op) || op->c->closing) {
    op_fail(op, GUREUM__STATE_RESPONSE__CODE__NO_QUORUM,
            "no quorum: %s within %d ms (is a majority of voters up and reachable?)", why,
            op->c->node->cfg.raft_write_timeout_ms);
    return;
  }
  if (!op->retry_init) {
    uv_timer_init(op->c->loop, &op->retry);
    op->retry.data = op;
    op->retry_init = 1;
  }
  uv_timer_start(&op->retry, op_retry_cb, CONTROL_RETRY_MS, 0);
}

/* ---- local execution (we are the leader, or the read is stale) ---- */

static void op_read_local(control_op_t *op) {
  control_t *c = op->c;
  Gureum__StateResponse r = GUREUM__STATE_RESPONSE__INIT;
  r.applied_index = fsm_applied(c->fsm);
  if (op->kind == GUREUM__STATE_REQUEST__KIND__GET) {
    Gureum__StateKV *kv = NULL;
    if (fsm_get(c->fsm, op->key, &kv) != 0) {
      r.code = GUREUM__STATE_RESPONSE__CODE__NOT_FOUND;
      char msg[200];
      snprintf(msg, sizeof msg, "%s not found", op->key);
      r.error = msg;
      op_answer(op, &r);
      return;
    }
    r.kvs = &kv;
    r.n_kvs = 1;
    r.revision = kv->revision;
    op_answer(op, &r);
    gureum__state_kv__free_unpacked(kv, NULL);
    return;
  }
  size_t n;
  Gureum__StateKV **kvs = fsm_list(c->fsm, op->key, op->limit, &n);
  r.kvs = kvs;
  r.n_kvs = kvs ? n : 0;
  op_answer(op, &r);
  if (kvs) fsm_list_free(kvs, n);
}

static void op_apply_cb(struct raft_apply *req, int status, void *result) {
  control_op_t *op = req->data;
  op->raft_busy = 0;
  if (status != 0) {
    if (op->answered) op_free(op);
    else op_retry_later(op, raft_strerror(status));
    return;
  }
  fsm_result_t *res = result;
  Gureum__StateResponse r = GUREUM__STATE_RESPONSE__INIT;
  r.code = res->code;
  r.revision = res->revision;
  r.current_revision = res->current_revision;
  r.applied_index = fsm_applied(op->c->fsm);
  char msg[256] = "";
  if (res->code == GUREUM__STATE_RESPONSE__CODE__CONFLICT)
    snprintf(msg, sizeof msg, "conflict: %s is at revision %llu, not %llu", op->key,
             (unsigned long long)res->current_revision, (unsigned long long)op->cmd.expected_revision);
  else if (res->code == GUREUM__STATE_RESPONSE__CODE__NOT_FOUND)
    snprintf(msg, sizeof msg, "%s not found", op->key);
  r.error = msg;
  op_answer(op, &r);
}

static void op_read_applied_cb(struct raft_apply *req, int status, void *result) {
  control_op_t *op = req->data;
  (void)result;
  op->raft_busy = 0;
  if (status != 0) {
    if (op->answered) op_free(op);
    else op_retry_later(op, raft_strerror(status));
    return;
  }
  if (op->answered) op_free(op);
  else op_read_local(op);
}

static void op_on_leader(control_op_t *op) {
  control_t *c = op->c;
  int rv;
  if (op->kind == GUREUM__STATE_REQUEST__KIND__WRITE) {
    struct raft_buffer buf;
    if (fsm_encode(&op->cmd, &buf) != 0) {
      op_fail(op, GUREUM__STATE_RESPONSE__CODE__ERROR, "out of memory");
      return;
    }
    op->apply.data = op;
    rv = raft_apply(&c->raft, &op->apply, &buf, 1, op_apply_cb);
    if (rv != 0) raft_free(buf.base);
    else metric_inc(c->m_writes);
  } else {
    /* A no-op entry committed through us proves we are still the leader and that everything
     * committed before the read is applied. (Not raft_barrier: libraft 0.15 frees a barrier's
     * buffer before it is written, corrupting the segment; fixed upstream in canonical/raft#344.) */
    Gureum__StateCommand noop = GUREUM__STATE_COMMAND__INIT;
    noop.op = GUREUM__STATE_COMMAND__OP__NOOP;
    struct raft_buffer buf;
    if (fsm_encode(&noop, &buf) != 0) {
      op_fail(op, GUREUM__STATE_RESPONSE__CODE__ERROR, "out of memory");
      return;
    }
    op->apply.data = op;
    rv = raft_apply(&c->raft, &op->apply, &buf, 1, op_read_applied_cb);
    if (rv != 0) raft_free(buf.base);
  }
  if (rv == 0) op->raft_busy = 1;
  else op_retry_later(op, raft_strerror(rv));
}

/* ---- forwarding to the leader ---- */

static void op_forward_done(void *arg, int status, const char *errmsg, const uint8_t *p, size_t len) {
  control_op_t *op = arg;
  op->raft_busy = 0;
  if (op->answered) {
    op_free(op);
    return;
  }
  if (status != RPC_OK) {
    op_retry_later(op, errmsg ? errmsg : "leader unreachable");
    return;
  }
  Gureum__StateResponse *r = gureum__state_response__unpack(NULL, len, p);
  if (!r) {
    op_fail(op, GUREUM__STATE_RESPONSE__CODE__ERROR, "malformed reply from the leader");
    return;
  }
  if (r->code == GUREUM__STATE_RESPONSE__CODE__NO_LEADER) op_retry_later(op, "leader changed");
  else op_answer(op, r);
  gureum__state_response__free_unpacked(r, NULL);
}

static void op_forward(control_op_t *op, const char *leader_addr) {
  control_t *c = op->c;
  Gureum__StateRequest req = GUREUM__STATE_REQUEST__INIT;
  req.kind = op->kind;
  req.cmd = &op->cmd;
  req.key = op->key;
  req.limit = op->limit;
  size_t len = gureum__state_request__get_packed_size(&req);
  uint8_t *buf = malloc(len ? len : 1);
  if (!buf) {
    op_fail(op, GUREUM__STATE_RESPONSE__CODE__ERROR, "out of memory");
    return;
  }
  gureum__state_request__pack(&req, buf);
  uint64_t left = op->deadline > uv_now(c->loop) ? op->deadline - uv_now(c->loop) : 1;
  /* One attempt never outlasts an election: if that leader died, ask again who leads. */
  uint64_t attempt = (uint64_t)c->node->cfg.raft_election_timeout_ms;
  if (attempt < 500) attempt = 500;
  if (left > attempt) left = attempt;
  int rv = rpc_call(c->rpc, leader_addr, GUREUM__MSG_TYPE__MSG_RAFT_FORWARD, buf, len, (int)left,
                    op_forward_done, op);
  free(buf);
  if (rv == 0) {
    op->raft_busy = 1;
    metric_inc(c->m_forwarded);
  } else {
    op_retry_later(op, rpc_strerror(rv));
  }
}

static void op_run(control_op_t *op) {
  control_t *c = op->c;
  if (c->closing) {
    op_fail(op, GUREUM__STATE_RESPONSE__CODE__NO_LEADER, "node is shutting down");
    return;
  }
  if (op->stale && op->kind != GUREUM__STATE_REQUEST__KIND__WRITE) {
    op_read_local(op);
    return;
  }
  if (raft_state(&c->raft) == RAFT_LEADER) {
    op_on_leader(op);
    return;
  }
  raft_id lid;
  const char *laddr;
  raft_leader(&c->raft, &lid, &laddr);
  if (op->no_forward || lid == 0 || lid == c->id || !laddr) {
    if (op->no_forward) op_fail(op, GUREUM__STATE_RESPONSE__CODE__NO_LEADER, "not the leader");
    else op_retry_later(op, "no leader elected");
    return;
  }
  op_forward(op, laddr);
}

static control_op_t *op_new(control_t *c, Gureum__StateRequest__Kind kind, const char *key,
                            control_done_fn cb, void *arg) {
  control_op_t *op = calloc(1, sizeof *op);
  if (!op) return NULL;
  op->c = c;
  op->kind = kind;
  op->key = strdup(key ? key : "");
  op->cb = cb;
  op->arg = arg;
  op->deadline = uv_now(c->loop) + (uint64_t)c->node->cfg.raft_write_timeout_ms;
  gureum__state_command__init(&op->cmd);
  op->cmd.key = op->key;
  op->next = c->ops;
  if (c->ops) c->ops->prev = op;
  c->ops = op;
  return op;
}

static void control_oom(control_done_fn cb, void *arg) {
  Gureum__StateResponse r = GUREUM__STATE_RESPONSE__INIT;
  r.code = GUREUM__STATE_RESPONSE__CODE__ERROR;
  r.error = "out of memory";
  cb(arg, &r);
}

static void control_write(control_t *c, Gureum__StateCommand__Op o, const char *key,
                          const void *value, size_t len, int64_t expect, control_done_fn cb,
                          void *arg) {
  control_op_t *op = op_new(c, GUREUM__STATE_REQUEST__KIND__WRITE, key, cb, arg);
  if (!op) {
    control_oom(cb, arg);
    return;
  }
  op->cmd.op = o;
  if (value && len) {
    op->value = malloc(len);
    memcpy(op->value, value, len);
    op->cmd.value.data = op->value;
    op->cmd.value.len = len;
  }
  if (expect >= 0) {
    op->cmd.has_expected = 1;
    op->cmd.expected_revision = (uint64_t)expect;
  }
  op_run(op);
}

void control_put(control_t *c, const char *key, const void *value, size_t len, int64_t expect,
                 control_done_fn cb, void *arg) {
  control_write(c, GUREUM__STATE_COMMAND__OP__PUT, key, value, len, expect, cb, arg);
}

void control_delete(control_t *c, const char *key, int64_t expect, control_done_fn cb, void *arg) {
  control_write(c, GUREUM__STATE_COMMAND__OP__DELETE, key, NULL, 0, expect, cb, arg);
}

void control_get(control_t *c, const char *key, int stale, control_done_fn cb, void *arg) {
  control_op_t *op = op_new(c, GUREUM__STATE_REQUEST__KIND__GET, key, cb, arg);
  if (!op) return control_oom(cb, arg);
  op->stale = stale;
  op_run(op);
}

void control_list(control_t *c, const char *prefix, int stale, uint32_t limit, control_done_fn cb,
                  void *arg) {
  control_op_t *op = op_new(c, GUREUM__STATE_REQUEST__KIND__LIST, prefix, cb, arg);
  if (!op) return control_oom(cb, arg);
  op->stale = stale;
  op->limit = limit;
  op_run(op);
}

int control_watch(control_t *c, const char *prefix, uint64_t from, state_watch_fn fn, void *arg) {
  return fsm_watch(c->fsm, prefix, from, fn, arg);
}

void control_unwatch(control_t *c, int id) { fsm_unwatch(c->fsm, id); }

int control_is_leader(control_t *c) {
  return c && c->raft_started && !c->closing && raft_state(&c->raft) == RAFT_LEADER;
}

const char *control_leader_name(control_t *c) {
  raft_id lid;
  const char *laddr;
  if (!c || !c->raft_started || c->closing) return NULL;
  raft_leader(&c->raft, &lid, &laddr);
  const char *name = lid ? control_name_of(c, lid) : "";
  return *name ? name : NULL;
}

/* MSG_RAFT_FORWARD on the leader: run the operation here and answer the forwarding node. */
static void control_forward_reply(void *arg, const Gureum__StateResponse *resp) {
  rpc_req_t *q = arg;
  size_t len = gureum__state_response__get_packed_size(resp);
  uint8_t *buf = malloc(len ? len : 1);
  if (buf) gureum__state_response__pack(resp, buf);
  rpc_reply(q, buf ? GUREUM__RPC_STATUS__RPC_STATUS_OK : GUREUM__RPC_STATUS__RPC_STATUS_FAILED,
            NULL, buf, buf ? len : 0);
  free(buf);
}

static void control_on_forward(rpc_req_t *q, void *arg) {
  control_t *c = arg;
  size_t len;
  const uint8_t *p = rpc_req_payload(q, &len);
  Gureum__StateRequest *req = gureum__state_request__unpack(NULL, len, p);
  if (!req) {
    rpc_reply(q, GUREUM__RPC_STATUS__RPC_STATUS_BAD_REQUEST, "malformed StateRequest", NULL, 0);
    return;
  }
  control_op_t *op = op_new(c, req->kind, req->kind == GUREUM__STATE_REQUEST__KIND__WRITE && req->cmd ? req->cmd->key : req->key,
                            control_forward_reply, q);
  if (!op) {
    gureum__state_request__free_unpacked(req, NULL);
    rpc_reply(q, GUREUM__RPC_STATUS__RPC_STATUS_FAILED, "out of memory", NULL, 0);
    return;
  }
  op->no_forward = 1;
  op->limit = req->limit;
  if (req->kind == GUREUM__STATE_REQUEST__KIND__WRITE && req->cmd) {
    op->cmd.op = req->cmd->op;
    op->cmd.has_expected = req->cmd->has_expected;
    op->cmd.expected_revision = req->cmd->expected_revision;
    if (req->cmd->value.len) {
      op->value = malloc(req->cmd->value.len);
      memcpy(op->value, req->cmd->value.data, req->cmd->value.len);
      op->cmd.value.data = op->value;
      op->cmd.value.len = req->cmd->value.len;
    }
  }
  gureum__state_request__free_unpacked(req, NULL);
  op_run(op);
}

/* ---- voters chosen automatically ---- */

static void control_change_cb(struct raft_change *req, int status) {
  control_t *c = req->data;
  c->change_pending = 0;
  if (status != 0)
    log_warn("control", "membership_change_failed", "error=\"%s\"", raft_strerror(status));
}

static int member_healthy(control_t *c, const member_t *m, uint64_t now_ms) {
  if (!m) return 0;
  if (m->state == MEMBER_STATE_ALIVE || m->state == MEMBER_STATE_SUSPECT) return 1;
  /* A voter reported dead still counts until the timeout: short outages cause no churn. */
  return m->state == MEMBER_STATE_DEAD &&
         now_ms - m->since_ms < (uint64_t)c->node->cfg.raft_dead_voter_timeout_s * 1000;
}

static int zone_taken(control_t *c, const char *zone) {
  const struct raft_configuration *cf = &c->raft.configuration;
  for (unsigned i = 0; i < cf->n; i++) {
    if (cf->servers[i].role != RAFT_VOTER) continue;
    const char *z = cf->servers[i].id == c->id ? c->node->cfg.zone
                    : control_member_by_id(c, cf->servers[i].id) ? control_member_by_id(c, cf->servers[i].id)->zone : "";
    if (strcmp(z, zone) == 0) return 1;
  }
  return 0;
}

#define CHANGE(call, what, id)                                                                 \
  do {                                                                                         \
    c->change.data = c;                                                                        \
    if ((call) == 0) {                                                                         \
      c->change_pending = 1;                                                                   \
      log_info("control", what, "member=%s raft_id=%llu", control_name_of(c, id),              \
               (unsigned long long)(id));                                                      \
    }                                                                                          \
    return;                                                                                    \
  } while (0)

static void control_manage_members(control_t *c) {
  if (c->change_pending || c->closing || raft_state(&c->raft) != RAFT_LEADER) return;
  const struct raft_configuration *cf = &c->raft.configuration;
  gossip_t *g = c->node->gossip;
  struct timeval tv;
  gettimeofday(&tv, NULL);
  uint64_t now = (uint64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;

  /* 1. Members that left gracefully leave the configuration. */
  for (unsigned i = 0; i < cf->n; i++) {
    raft_id id = cf->servers[i].id;
    const member_t *m = id == c->id ? NULL : control_member_by_id(c, id);
    if (m && m->state == MEMBER_STATE_LEFT)
      CHANGE(raft_remove(&c->raft, &c->change, id, control_change_cb), "member_removed", id);
  }
  /* 2. New alive members join (as spares, then get a role below). */
  for (size_t i = 0; g && i < gossip_count(g); i++) {
    const member_t *m = gossip_member(g, i);
    if (m->is_self || m->state != MEMBER_STATE_ALIVE || !m->id[0] || m->raft_port <= 0) continue;
    raft_id id = control_id_of(m->id);
    int known = 0;
    for (unsigned j = 0; j < cf->n; j++) known |= cf->servers[j].id == id;
    if (known) continue;
    char addr[96];
    snprintf(addr, sizeof addr, "%.*s:%d", (int)strcspn(m->addr, ":"), m->addr, m->raft_port);
    CHANGE(raft_add(&c->raft, &c->change, id, addr, control_change_cb), "member_added", id);
  }
  /* 3. Voters: 3, or max_voters once that many nodes are healthy; zones spread when possible. */
  unsigned healthy = 0, healthy_voters = 0, voters = 0;
  for (unsigned i = 0; i < cf->n; i++) {
    const struct raft_server *s = &cf->servers[i];
    int ok = s->id == c->id || member_healthy(c, control_member_by_id(c, s->id), now);
    healthy += ok;
    voters += s->role == RAFT_VOTER;
    healthy_voters += ok && s->role == RAFT_VOTER;
  }
  unsigned want = healthy >= (unsigned)c->node->cfg.raft_max_voters ? (unsigned)c->node->cfg.raft_max_voters : 3;
  if (want > healthy) want = healthy;
  if (healthy_voters < want) {
    const struct raft_server *pick = NULL;
    for (int pass = 0; pass < 2 && !pick; pass++)
      for (unsigned i = 0; i < cf->n && !pick; i++) {
        const struct raft_server *s = &cf->servers[i];
        const member_t *m = control_member_by_id(c, s->id);
        if (s->role == RAFT_VOTER || !m || m->state != MEMBER_STATE_ALIVE) continue;
        if (pass == 0 && zone_taken(c, m->zone)) continue; /* first pass: a new zone */
        pick = s;
      }
    if (pick) CHANGE(raft_assign(&c->raft, &c->change, pick->id, RAFT_VOTER, control_change_cb), "voter_promoted", pick->id);
  }
  /* 4. With enough healthy voters, long-dead voters step down to spare. */
  if (healthy_voters >= want && voters > want)
    for (unsigned i = 0; i < cf->n; i++) {
      const struct raft_server *s = &cf->servers[i];
      if (s->role == RAFT_VOTER && s->id != c->id && !member_healthy(c, control_member_by_id(c, s->id), now))
        CHANGE(raft_assign(&c->raft, &c->change, s->id, RAFT_SPARE, control_change_cb), "voter_demoted", s->id);
    }
  /* 5. Alive spares replicate as standbys, ready to be promoted. */
  for (unsigned i = 0; i < cf->n; i++) {
    const struct raft_server *s = &cf->servers[i];
    const member_t *m = control_member_by_id(c, s->id);
    if (s->role == RAFT_SPARE && m && m->state == MEMBER_STATE_ALIVE)
      CHANGE(raft_assign(&c->raft, &c->change, s->id, RAFT_STANDBY, control_change_cb), "standby_assigned", s->id);
  }
}

static void control_tick(uv_timer_t *t) {
  control_t *c = t->data;
  int st = raft_state(&c->raft);
  if (st != c->last_state) {
    log_info("control", "raft_state", "state=%s term=%llu", state_name(st),
             (unsigned long long)c->raft.current_term);
    c->last_state = st;
  }
  metric_set(c->m_leader, st == RAFT_LEADER);
  metric_set(c->m_term, (int64_t)c->raft.current_term);
  control_manage_members(c);
}

/* ---- admin API ---- */

static json_t *control_status_json(control_t *c) {
  raft_id lid;
  const char *laddr;
  raft_leader(&c->raft, &lid, &laddr);
  json_t *members = json_array();
  const struct raft_configuration *cf = &c->raft.configuration;
  for (unsigned i = 0; i < cf->n; i++) {
    const struct raft_server *s = &cf->servers[i];
    json_array_append_new(members, json_pack("{s:s,s:I,s:s,s:s}", "name", control_name_of(c, s->id),
                                             "id", (json_int_t)s->id, "address", s->address,
                                             "role", role_name(s->role)));
  }
  return json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:o}", "name", c->node->cfg.name, "state",
                   state_name(raft_state(&c->raft)), "leader", lid ? control_name_of(c, lid) : "",
                   "leader_id", (json_int_t)lid, "term", (json_int_t)c->raft.current_term,
                   "commit_index", (json_int_t)c->raft.commit_index, "applied_index",
                   (json_int_t)raft_last_applied(&c->raft), "last_index",
                   (json_int_t)raft_last_index(&c->raft), "members", members);
}

static void admin_raft_status(node_t *n, http_req_t *req, void *arg) {
  (void)n;
  admin_reply_json(req, 200, control_status_json(arg));
}

static json_t *kv_json(const Gureum__StateKV *kv) {
  json_t *o = json_pack("{s:s,s:I,s:I}", "key", kv->key, "revision", (json_int_t)kv->revision,
                        "create_revision", (json_int_t)kv->create_revision);
  json_t *v = json_stringn((const char *)kv->value.data, kv->value.len);
  if (v) json_object_set_new(o, "value", v);
  else json_object_set_new(o, "value_hex_len", json_integer((json_int_t)kv->value.len));
  return o;
}

/* Turn a StateResponse into HTTP: 200 / 404 / 409 / 503 / 500. */
static void admin_state_done(void *arg, const Gureum__StateResponse *r) {
  http_req_t *req = arg;
  switch (r->code) {
  case GUREUM__STATE_RESPONSE__CODE__OK: break;
  case GUREUM__STATE_RESPONSE__CODE__NOT_FOUND:
    admin_reply_error(req, 404, "NotFound", "%s", r->error && *r->error ? r->error : "not found");
    return;
  case GUREUM__STATE_RESPONSE__CODE__CONFLICT: {
    json_t *e = json_pack("{s:{s:s,s:s,s:I}}", "error", "code", "Conflict", "message", r->error,
                          "current_revision", (json_int_t)r->current_revision);
    admin_reply_json(req, 409, e);
    return;
  }
  case GUREUM__STATE_RESPONSE__CODE__NO_LEADER:
  case GUREUM__STATE_RESPONSE__CODE__NO_QUORUM:
    admin_reply_error(req, 503, "NoQuorum", "%s", r->error);
    return;
  default: admin_reply_error(req, 500, "InternalError", "%s", r->error ? r->error : "error"); return;
  }
  const char *key = req->path + strlen("/v1/state");
  int single = *key == '/' && key[1];
  if (strcmp(req->method, "GET") == 0 && single && r->n_kvs == 1) {
    admin_reply_json(req, 200, kv_json(r->kvs[0]));
    return;
  }
  if (strcmp(req->method, "GET") == 0) {
    json_t *a = json_array();
    for (size_t i = 0; i < r->n_kvs; i++) json_array_append_new(a, kv_json(r->kvs[i]));
    admin_reply_json(req, 200, json_pack("{s:o,s:I}", "kvs", a, "applied_index", (json_int_t)r->applied_index));
    return;
  }
  admin_reply_json(req, 200, json_pack("{s:I}", "revision", (json_int_t)r->revision));
}

static int64_t query_int(http_req_t *req, const char *name, int64_t dflt) {
  char *v = http_req_query_param(req, name);
  int64_t out = v && *v ? strtoll(v, NULL, 10) : dflt;
  free(v);
  return out;
}

static int query_flag(http_req_t *req, const char *name) {
  char *v = http_req_query_param(req, name);
  int on = v && (strcmp(v, "") == 0 || strcmp(v, "1") == 0 || strcmp(v, "true") == 0);
  free(v);
  return on;
}

/* /v1/state/NS/KEY (GET, PUT, DELETE; ?expect=REV, ?stale) and /v1/state?prefix=NS/ (list). */
static void admin_state(node_t *n, http_req_t *req, void *arg) {
  control_t *c = arg;
  (void)n;
  const char *key = req->path + strlen("/v1/state");
  if (*key == '/') key++;
  int stale = query_flag(req, "stale");
  if (strcmp(req->method, "GET") == 0 && !*key) {
    char *prefix = http_req_query_param(req, "prefix");
    control_list(c, prefix ? prefix : "", stale, (uint32_t)query_int(req, "limit", 0), admin_state_done, req);
    free(prefix);
    return;
  }
  if (!*key || !strchr(key, '/') || key[strlen(key) - 1] == '/') {
    admin_reply_error(req, 400, "InvalidKey", "key '%s' must look like NAMESPACE/NAME", key);
    return;
  }
  int64_t expect = query_int(req, "expect", CONTROL_ANY_REVISION);
  if (strcmp(req->method, "GET") == 0) control_get(c, key, stale, admin_state_done, req);
  else if (strcmp(req->method, "PUT") == 0) control_put(c, key, req->body, req->body_len, expect, admin_state_done, req);
  else control_delete(c, key, expect, admin_state_done, req);
}

/* ---- life cycle ---- */

control_t *control_new(node_t *n, char *err, size_t errlen) {
  control_t *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->node = n;
  c->loop = &n->loop;
  c->id = control_id_of(n->id);
  c->last_state = -1;
  snprintf(c->address, sizeof c->address, "%s:%d", n->cfg.advertise, n->cfg.raft_port);
  char *e = NULL;
  if (!(c->fsm = fsm_new(n->store, n->metrics, &e))) {
    snprintf(err, errlen, "cannot open the state store: %s", e ? e : "?");
    free(e);
    free(c);
    return NULL;
  }
  c->m_writes = metrics_counter(n->metrics, "gureum_raft_applies_total", NULL, "Writes proposed by this node as leader");
  c->m_forwarded = metrics_counter(n->metrics, "gureum_raft_forwarded_total", NULL, "Operations forwarded to the leader");
  c->m_leader = metrics_gauge(n->metrics, "gureum_raft_is_leader", NULL, "1 when this node leads");
  c->m_term = metrics_gauge(n->metrics, "gureum_raft_term", NULL, "Current Raft term");
  return c;
}

/* The first node bootstraps: no seeds, or our own address is the first seed. */
static int control_should_bootstrap(control_t *c) {
  const config_t *cfg = &c->node->cfg;
  return cfg->nseeds == 0 || strcmp(cfg->seeds[0], c->node->rpc_addr) == 0;
}

int control_start(control_t *c, char *err, size_t errlen) {
  node_t *n = c->node;
  const config_t *cfg = &n->cfg;
  char dir[600], listen_addr[80];
  snprintf(dir, sizeof dir, "%s/raft", cfg->data_dir);
  if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
    snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
    return -1;
  }
  rpc_opts_t ro = {.name = cfg->name, .advertise = c->address, .secret = cfg->secret,
                   .bind_ip = cfg->bind, .server_contexts = cfg->rpc_server_contexts,
                   .max_inflight = cfg->rpc_max_inflight,
                   .max_message = (size_t)cfg->rpc_max_message_kb * 1024,
                   .max_skew_ms = (uint64_t)cfg->rpc_max_clock_skew_s * 1000,
                   .tls = n->tls};
  c->rpc = rpc_new(c->loop, &ro, n->metrics);
  rpc_handle(c->rpc, GUREUM__MSG_TYPE__MSG_RAFT_FORWARD, control_on_forward, c);
  snprintf(listen_addr, sizeof listen_addr, "%s:%d", cfg->bind, cfg->raft_port);
  if (rpc_listen(c->rpc, listen_addr, err, errlen) != 0) return -1;
  if (raft_transport_init(&c->transport, c->loop, c->rpc, n->metrics) != 0) {
    snprintf(err, errlen, "cannot set up the Raft transport");
    return -1;
  }
  c->transport_ready = 1;
  int rv = raft_uv_init(&c->io, c->loop, dir, &c->transport);
  if (rv != 0) {
    snprintf(err, errlen, "cannot open the Raft log in %s: %s", dir, raft_strerror(rv));
    return -1;
  }
  c->io_ready = 1;
  rv = raft_init(&c->raft, &c->io, fsm_raft(c->fsm, &c->raft), c->id, c->address);
  if (rv != 0) {
    snprintf(err, errlen, "raft_init: %s", raft_errmsg(&c->raft));
    return -1;
  }
  raft_set_election_timeout(&c->raft, (unsigned)cfg->raft_election_timeout_ms);
  raft_set_heartbeat_timeout(&c->raft, (unsigned)cfg->raft_heartbeat_ms);
  raft_set_snapshot_threshold(&c->raft, (unsigned)cfg->raft_snapshot_threshold);
  raft_set_snapshot_trailing(&c->raft, (unsigned)cfg->raft_snapshot_trailing);
  raft_set_pre_vote(&c->raft, true);
  if (control_should_bootstrap(c)) {
    struct raft_configuration conf;
    raft_configuration_init(&conf);
    raft_configuration_add(&conf, c->id, c->address, RAFT_VOTER);
    rv = raft_bootstrap(&c->raft, &conf);
    raft_configuration_close(&conf);
    if (rv == 0) log_info("control", "bootstrapped", "raft_id=%llu address=%s", (unsigned long long)c->id, c->address);
    else if (rv != RAFT_CANTBOOTSTRAP) {
      snprintf(err, errlen, "raft_bootstrap: %s", raft_strerror(rv));
      return -1;
    }
  }
  if ((rv = raft_start(&c->raft)) != 0) {
    snprintf(err, errlen, "raft_start: %s", raft_errmsg(&c->raft));
    return -1;
  }
  c->raft_started = 1;
  uv_timer_init(c->loop, &c->tick);
  c->tick.data = c;
  uv_timer_start(&c->tick, control_tick, CONTROL_TICK_MS, CONTROL_TICK_MS);
  uv_timer_init(c->loop, &c->leave_timer);
  c->leave_timer.data = c;
  c->close_handles = 2;
  admin_route(n->admin, "GET", "/v1/raft/status", admin_raft_status, c);
  admin_route(n->admin, "GET", "/v1/state*", admin_state, c);
  admin_route(n->admin, "PUT", "/v1/state/*", admin_state, c);
  admin_route(n->admin, "DELETE", "/v1/state/*", admin_state, c);
  log_info("control", "started", "raft_id=%llu address=%s applied=%llu", (unsigned long long)c->id,
           c->address, (unsigned long long)fsm_applied(c->fsm));
  return 0;
}

static void control_leave_done(control_t *c) {
  if (!c->leave_cb) return;
  void (*cb)(void *) = c->leave_cb;
  c->leave_cb = NULL;
  uv_timer_stop(&c->leave_timer);
  cb(c->leave_arg);
}

static void control_transfer_cb(struct raft_transfer *req) { control_leave_done(req->data); }
static void control_leave_timeout(uv_timer_t *t) { control_leave_done(t->data); }

void control_leave(control_t *c, void (*cb)(void *arg), void *arg) {
  c->leave_cb = cb;
  c->leave_arg = arg;
  unsigned voters = 0;
  for (unsigned i = 0; c->raft_started && i < c->raft.configuration.n; i++)
    voters += c->raft.configuration.servers[i].role == RAFT_VOTER;
  if (c->raft_started && raft_state(&c->raft) == RAFT_LEADER && voters > 1) {
    c->transfer.data = c;
    if (raft_transfer(&c->raft, &c->transfer, 0, control_transfer_cb) == 0) {
      log_info("control", "leadership_transfer", "%s", "");
      uv_timer_start(&c->leave_timer, control_leave_timeout, 3000, 0);
      return;
    }
  }
  control_leave_done(c);
}

static void control_finish(control_t *c) {
  void (*cb)(void *) = c->close_cb;
  void *arg = c->close_arg;
  if (c->transport_ready) raft_transport_free(&c->transport);
  /* Closing the channel completes forwarded operations (RPC_ECLOSED), so none stays busy. */
  rpc_close(c->rpc);
  for (control_op_t *op = c->ops, *next; op; op = next) {
    next = op->next;
    if (!op->raft_busy) op_fail(op, GUREUM__STATE_RESPONSE__CODE__NO_LEADER, "node is shutting down");
  }
  fsm_free(c->fsm);
  free(c);
  if (cb) cb(arg);
}

static void control_handle_closed(uv_handle_t *h) {
  control_t *c = h->data;
  if (--c->close_handles == 0) control_finish(c);
}

static void control_raft_closed(struct raft *r) {
  control_t *c = r->data;
  if (c->io_ready) raft_uv_close(&c->io);
  uv_close((uv_handle_t *)&c->tick, control_handle_closed);
  uv_close((uv_handle_t *)&c->leave_timer, control_handle_closed);
}

void control_close(control_t *c, void (*cb)(void *arg), void *arg) {
  c->closing = 1;
  c->close_cb = cb;
  c->close_arg = arg;
  if (!c->raft_started) {
    if (c->io_ready) raft_uv_close(&c->io);
    control_finish(c);
    return;
  }
  c->raft.data = c;
  raft_close(&c->raft, control_raft_closed);
}
