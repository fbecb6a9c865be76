/* admin.c - the admin HTTP+JSON API: routing, /v1/status, /metrics and /v1/ping.
 * Handlers run on the loop thread; anything slow answers later from a callback. */
#include "admin.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "role.h"
#include "proto/envelope.pb-c.h"

typedef struct admin_route_s {
  char method[8];
  char path[96];
  admin_fn fn;
  void *arg;
} admin_route_t;

struct admin_s {
  node_t *node;
  http_server_t *http;
  admin_route_t *routes;
  size_t nroutes;
  void (*close_cb)(void *);
  void *close_arg;
};

void admin_reply_json(http_req_t *req, int status, json_t *body) {
  char *s = json_dumps(body, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  json_decref(body);
  size_t n = s ? strlen(s) : 0;
  if (s) s[n] = 0;
  /* A trailing newline keeps `curl` output readable. */
  char *t = malloc(n + 2);
  if (t) {
    memcpy(t, s ? s : "", n);
    t[n++] = '\n';
  }
  http_respond(req, status, "application/json", t, t ? n : 0, NULL);
  free(t);
  free(s);
}

void admin_reply_error(http_req_t *req, int status, const char *code, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  admin_reply_json(req, status, json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg));
}

/* ---- routes ---- */

static json_t *admin_endpoints(node_t *n) {
  char url[128], addr[80];
  json_t *e = json_object();
  const char *ip = n->cfg.advertise;
  snprintf(url, sizeof url, "http://%s:%d", ip, n->cfg.admin_port);
  json_object_set_new(e, "admin", json_string(url));
  snprintf(url, sizeof url, "http://%s:%d/metrics", ip, n->cfg.admin_port);
  json_object_set_new(e, "metrics", json_string(url));
  rpc_url(n->rpc, n->rpc_addr, url, sizeof url);
  json_object_set_new(e, "rpc", json_string(url));
  snprintf(addr, sizeof addr, "%s:%d", ip, n->cfg.raft_port);
  rpc_url(n->rpc, addr, url, sizeof url); /* the Raft channel runs over the same transport */
  json_object_set_new(e, "raft", json_string(url));
  for (int i = 0; role_registry[i] && i < 8; i++)
    if (n->roles[i].state && role_registry[i]->endpoints) role_registry[i]->endpoints(n->roles[i].state, e);
  return e;
}

static void admin_status(node_t *n, http_req_t *req, void *arg) {
  (void)arg;
  json_t *roles = json_array();
  for (int i = 0; i < n->cfg.nroles; i++) json_array_append_new(roles, json_string(n->cfg.roles[i]));
  json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:I,s:s,s:s,s:o,s:b,s:o}", "name", n->cfg.name, "id",
                        n->id, "version", GUREUM_VERSION, "uptime_s",
                        (json_int_t)node_uptime_s(n), "started_ms", (json_int_t)n->started_ms,
                        "zone", n->cfg.zone, "address", n->cfg.advertise, "roles", roles,
                        "cluster_tls", rpc_tls(n->rpc), "endpoints", admin_endpoints(n));
  admin_reply_json(req, 200, o);
}

static void admin_metrics(node_t *n, http_req_t *req, void *arg) {
  (void)arg;
  size_t len;
  char *text = metrics_render(n->metrics, &len);
  http_respond(req, 200, "text/plain; version=0.0.4", text, text ? len : 0, NULL);
  free(text);
}

/* GET /v1/ping?peer=IP:PORT: ping a peer over the cluster RPC (debugging and tests). */
typedef struct admin_ping_s {
  http_req_t *req;
  char peer[80];
  uint64_t nonce;
  uint64_t t0;
  uv_loop_t *loop;
} admin_ping_t;

static void admin_ping_done(void *arg, int status, const char *errmsg, const uint8_t *p,
                            size_t len) {
  admin_ping_t *pg = arg;
  double rtt_ms = (uv_hrtime() - pg->t0) / 1e6;
  if (status != RPC_OK) {
    admin_reply_error(pg->req, status == RPC_ETIMEDOUT ? 504 : 502, "PeerUnreachable",
                      "ping %s failed: %s", pg->peer, errmsg);
  } else {
    Gureum__Pong *pong = gureum__pong__unpack(NULL, len, p);
    if (!pong || pong->nonce != pg->nonce) {
      admin_reply_error(pg->req, 502, "BadReply", "ping %s: malformed pong", pg->peer);
    } else {
      admin_reply_json(pg->req, 200,
                       json_pack("{s:s,s:s,s:s,s:f}", "peer", pg->peer, "name", pong->name, "id",
                                 pong->id, "rtt_ms", rtt_ms));
    }
    if (pong) gureum__pong__free_unpacked(pong, NULL);
  }
  free(pg);
}

static void admin_ping(node_t *n, http_req_t *req, void *arg) {
  (void)arg;
  char *peer = http_req_query_param(req, "peer");
  if (!peer || !*peer) {
    free(peer);
    admin_reply_error(req, 400, "MissingParameter", "query parameter 'peer' (IP:PORT) is required");
    return;
  }
  admin_ping_t *pg = calloc(1, sizeof *pg);
  pg->req = req;
  snprintf(pg->peer, sizeof pg->peer, "%s", peer);
  free(peer);
  pg->t0 = uv_hrtime();
  pg->nonce = pg->t0 ^ (uint64_t)(uintptr_t)pg;
  Gureum__Ping ping = GUREUM__PING__INIT;
  ping.nonce = pg->nonce;
  uint8_t buf[32];
  size_t len = gureum__ping__pack(&ping, buf);
  char *t = http_req_query_param(req, "timeout_ms");
  int timeout = t ? atoi(t) : n->cfg.rpc_timeout_ms;
  free(t);
  int rv = rpc_call(n->rpc, pg->peer, GUREUM__MSG_TYPE__MSG_PING, buf, len, timeout,
                    admin_ping_done, pg);
  if (rv != 0) {
    admin_reply_error(req, rv == RPC_EADDR ? 400 : 503, "PingFailed", "ping %s: %s", pg->peer,
                      rpc_strerror(rv));
    free(pg);
  }
}

/* ---- routing ---- */

void admin_route(admin_t *a, const char *method, const char *path, admin_fn fn, void *arg) {
  admin_route_t *r = realloc(a->routes, (a->nroutes + 1) * sizeof *r);
  if (!r) abort();
  a->routes = r;
  r = &a->routes[a->nroutes++];
  snprintf(r->method, sizeof r->method, "%s", method);
  snprintf(r->path, sizeof r->path, "%s", path);
  r->fn = fn;
  r->arg = arg;
}

static int admin_match(const admin_route_t *r, const char *path) {
  size_t n = strlen(r->path);
  if (n && r->path[n - 1] == '*') return strncmp(r->path, path, n - 1) == 0;
  return strcmp(r->path, path) == 0;
}

static void admin_on_request(http_req_t *req, void *arg) {
  admin_t *a = arg;
  int path_known = 0;
  const char *method = strcmp(req->method, "HEAD") == 0 ? "GET" : req->method;
  for (size_t i = 0; i < a->nroutes; i++) {
    if (!admin_match(&a->routes[i], req->path)) continue;
    path_known = 1;
    if (strcmp(a->routes[i].method, method) == 0) {
      a->routes[i].fn(a->node, req, a->routes[i].arg);
      return;
    }
  }
  if (path_known)
    admin_reply_error(req, 405, "MethodNotAllowed", "%s is not allowed on %s", req->method,
                      req->path);
  else
    admin_reply_error(req, 404, "NotFound", "no such endpoint: %s", req->path);
}

admin_t *admin_new(node_t *n) {
  admin_t *a = calloc(1, sizeof *a);
  if (!a) return NULL;
  a->node = n;
  http_opts_t o = {.max_body = 1 << 20, .server_name = "gureum-admin"};
  a->http = http_server_new(&n->loop, &o, admin_on_request, a);
  admin_route(a, "GET", "/v1/status", admin_status, NULL);
  admin_route(a, "GET", "/metrics", admin_metrics, NULL);
  admin_route(a, "GET", "/v1/ping", admin_ping, NULL);
  return a;
}

int admin_listen(admin_t *a, const char *ip, int port, char *err, size_t errlen) {
  int rv = http_server_listen(a->http, ip, port);
  if (rv != 0) snprintf(err, errlen, "cannot listen on %s:%d: %s", ip, port, uv_strerror(rv));
  return rv;
}

static void admin_closed(void *arg) {
  admin_t *a = arg;
  if (a->close_cb) a->close_cb(a->close_arg);
  free(a->routes);
  free(a);
}

void admin_close(admin_t *a, void (*cb)(void *arg), void *arg) {
  a->close_cb = cb;
  a->close_arg = arg;
  http_server_close(a->http, admin_closed, a);
}
