/* node.c - the node's life: open the store, start RPC and the admin API, run the loop, and on
 * SIGTERM/SIGINT stop accepting, cancel in-flight work, flush RocksDB and exit within a deadline. */
#include "node.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "admin.h"
#include "control.h"
#include "gossip.h"
#include "role.h"
#include "log.h"
#include "proto/envelope.pb-c.h"

uint64_t node_uptime_s(const node_t *n) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  uint64_t now = (uint64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
  return now > n->started_ms ? (now - n->started_ms) / 1000 : 0;
}

/* The id survives restarts so peers can tell "restarted" from "replaced". */
static int node_load_id(node_t *n, char *err, size_t errlen) {
  char path[600];
  snprintf(path, sizeof path, "%s/node-id", n->cfg.data_dir);
  FILE *f = fopen(path, "r");
  if (f) {
    int ok = fscanf(f, "%32s", n->id) == 1 && strlen(n->id) == 32;
    fclose(f);
    if (ok) return 0;
  }
  unsigned char raw[16];
  if (RAND_bytes(raw, sizeof raw) != 1) {
    snprintf(err, errlen, "cannot generate a node id");
    return -1;
  }
  for (int i = 0; i < 16; i++) sprintf(n->id + 2 * i, "%02x", raw[i]);
  f = fopen(path, "w");
  if (!f || fprintf(f, "%s\n", n->id) < 0 || fclose(f) != 0) {
    snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
    return -1;
  }
  return 0;
}

static void node_on_ping(rpc_req_t *q, void *arg) {
  node_t *n = arg;
  size_t len;
  const uint8_t *p = rpc_req_payload(q, &len);
  Gureum__Ping *ping = gureum__ping__unpack(NULL, len, p);
  if (!ping) {
    rpc_reply(q, GUREUM__RPC_STATUS__RPC_STATUS_BAD_REQUEST, "malformed Ping", NULL, 0);
    return;
  }
  Gureum__Pong pong = GUREUM__PONG__INIT;
  pong.nonce = ping->nonce;
  pong.name = n->cfg.name;
  pong.id = n->id;
  uint8_t buf[256];
  size_t out = gureum__pong__pack(&pong, buf);
  gureum__ping__free_unpacked(ping, NULL);
  rpc_reply(q, GUREUM__RPC_STATUS__RPC_STATUS_OK, NULL, buf, out);
}

/* ---- shutdown: admin closed -> rpc closed -> store flushed on a worker -> handles closed ---- */

static void node_close_handles(node_t *n) {
  uv_close((uv_handle_t *)&n->sig_term, NULL);
  uv_close((uv_handle_t *)&n->sig_int, NULL);
  uv_close((uv_handle_t *)&n->deadline, NULL);
}

static void node_flush_work(void *arg) {
  node_t *n = arg;
  char *err = NULL;
  if (store_flush(n->store, &err) != 0) {
    log_error("node", "flush_failed", "error=\"%s\"", err ? err : "?");
    free(err);
  }
}

static void node_flush_done(void *arg, int cancelled) {
  node_t *n = arg;
  (void)cancelled;
  store_close(n->store);
  n->store = NULL;
  log_info("node", "stopped", "exit_code=%d", n->exit_code);
  node_close_handles(n);
}

static void node_admin_closed(void *arg);

/* Raft stops before the cluster RPC, which gossip and forwarding still use until then. */
static void node_control_closed(void *arg) {
  node_t *n = arg;
  n->control = NULL;
  node_admin_closed(n);
}

static void node_admin_closed(void *arg) {
  node_t *n = arg;
  n->admin = NULL;
  if (n->control) {
    control_close(n->control, node_control_closed, n);
    return;
  }
  rpc_close(n->rpc); /* completes every in-flight call, so gossip can go next */
  n->rpc = NULL;
  gossip_free(n->gossip);
  n->gossip = NULL;
  if (!n->store) {
    node_flush_done(n, 1);
    return;
  }
  if (store_submit(&n->loop, node_flush_work, node_flush_done, n) != 0) node_flush_done(n, 1);
}

static void node_left(void *arg);

static void node_leave_gossip(void *arg) {
  node_t *n = arg;
  if (n->gossip && n->exit_code == 0) gossip_leave(n->gossip, node_left, n);
  else node_left(n);
}

static void node_roles_stopped(void *arg) {
  node_t *n = arg;
  if (n->admin) admin_close(n->admin, node_admin_closed, n);
  else node_admin_closed(n);
}

static void node_left(void *arg) { node_stop_roles(arg, node_roles_stopped, arg); }

static void node_on_deadline(uv_timer_t *t) {
  node_t *n = t->data;
  log_error("node", "shutdown_timeout", "after_s=%d action=\"exiting without a clean stop\"",
            n->cfg.shutdown_timeout_s);
  _exit(1);
}

void node_stop(node_t *n, int exit_code) {
  if (n->stopping) return;
  n->stopping = 1;
  n->exit_code = exit_code;
  log_info("node", "stopping", "deadline_s=%d", n->cfg.shutdown_timeout_s);
  uv_timer_start(&n->deadline, node_on_deadline, (uint64_t)n->cfg.shutdown_timeout_s * 1000, 0);
  uv_unref((uv_handle_t *)&n->deadline);
  /* Hand over Raft leadership, leave the cluster (peers then show `left`, not `dead`), then
   * close the doors. */
  if (n->control && exit_code == 0) control_leave(n->control, node_leave_gossip, n);
  else node_leave_gossip(n);
}

static void node_on_signal(uv_signal_t *s, int signum) {
  node_t *n = s->data;
  log_info("node", "signal", "signal=%s", signum == SIGTERM ? "SIGTERM" : "SIGINT");
  node_stop(n, 0);
}

/* ---- roles ---- */

int node_set_roles(node_t *n, const char *csv, char *err, size_t errlen) {
  config_t next = n->cfg;
  if (config_set(&next, "roles", csv, "roles", err, errlen) != 0) return -1;
  /* Roles with a service (roles/registry.c) start or stop now; every role is also metadata
   * that peers (DNS answers, balancer targets, placement) read from gossip. */
  log_info("node", "roles_set", "roles=%s", csv);
  n->cfg.nroles = next.nroles;
  memcpy(n->cfg.roles, next.roles, sizeof next.roles);
  node_sync_roles(n);
  if (n->gossip) gossip_announce(n->gossip);
  return 0;
}

/* ---- role services ---- */

static void node_role_stopped(void *arg) {
  node_t *n = arg;
  if (--n->roles_stopping > 0 || !n->roles_stopped_cb) return;
  void (*cb)(void *) = n->roles_stopped_cb;
  n->roles_stopped_cb = NULL;
  cb(n->roles_stopped_arg);
}

static void node_role_stop(node_t *n, int i) {
  void *st = n->roles[i].state;
  n->roles[i].state = NULL;
  n->roles_stopping++;
  log_info("node", "role_stopping", "role=%s", role_registry[i]->name);
  role_registry[i]->stop(st, node_role_stopped, n);
}

void node_sync_roles(node_t *n) {
  for (int i = 0; role_registry[i] && i < 8; i++) {
    const role_t *r = role_registry[i];
    int want = config_has_role(&n->cfg, r->name) && !n->stopping;
    if (want && !n->roles[i].state) {
      char err[512];
      n->roles[i].role = r;
      if (!(n->roles[i].state = r->start(n, err, sizeof err)))
        log_error("node", "role_failed", "role=%s error=\"%s\"", r->name, err);
      else
        log_info("node", "role_started", "role=%s", r->name);
    } else if (!want && n->roles[i].state) {
      node_role_stop(n, i);
    }
  }
}

void node_stop_roles(node_t *n, void (*cb)(void *arg), void *arg) {
  n->roles_stopped_cb = cb;
  n->roles_stopped_arg = arg;
  n->roles_stopping++; /* our own hold, so cb runs once after every stop */
  for (int i = 0; role_registry[i] && i < 8; i++)
    if (n->roles[i].state) node_role_stop(n, i);
  node_role_stopped(n);
}

/* POST /v1/roles {"roles": ["storage", "dns"]} */
static void node_admin_roles(node_t *n, http_req_t *req, void *arg) {
  (void)arg;
  json_error_t je;
  json_t *body = json_loadb(req->body, req->body_len, 0, &je);
  json_t *roles = body ? json_object_get(body, "roles") : NULL;
  if (!json_is_array(roles)) {
    json_decref(body);
    admin_reply_error(req, 400, "InvalidRequest", "body must be {\"roles\": [\"storage\", ...]}");
    return;
  }
  char csv[256] = "", err[256];
  size_t i;
  json_t *v;
  json_array_foreach(roles, i, v) {
    if (!json_is_string(v)) {
      json_decref(body);
      admin_reply_error(req, 400, "InvalidRequest", "roles[%zu] is not a string", i);
      return;
    }
    size_t l = strlen(csv);
    snprintf(csv + l, sizeof csv - l, "%s%s", l ? "," : "", json_string_value(v));
  }
  json_decref(body);
  if (node_set_roles(n, csv, err, sizeof err) != 0) {
    admin_reply_error(req, 400, "InvalidRoles", "%s", err);
    return;
  }
  json_t *out = json_array();
  for (int r = 0; r < n->cfg.nroles; r++) json_array_append_new(out, json_string(n->cfg.roles[r]));
  admin_reply_json(req, 200, json_pack("{s:s,s:o}", "name", n->cfg.name, "roles", out));
}

/* ---- start ---- */

static int node_start_services(node_t *n, char *err, size_t errlen) {
  char *serr = NULL;
  if (mkdir(n->cfg.data_dir, 0750) != 0 && errno != EEXIST) {
    snprintf(err, errlen, "cannot create data dir %s: %s", n->cfg.data_dir, strerror(errno));
    return -1;
  }
  if (node_load_id(n, err, errlen) != 0) return -1;
  char dbdir[600];
  snprintf(dbdir, sizeof dbdir, "%s/db", n->cfg.data_dir);
  store_opts_t so = {.cache_mb = n->cfg.store_cache_mb, .sync_writes = n->cfg.store_sync_writes};
  if (store_open(dbdir, &so, &n->store, &serr) != 0) {
    snprintf(err, errlen, "cannot open store %s: %s (is another node using this data dir?)", dbdir,
             serr ? serr : "?");
    free(serr);
    return -1;
  }
  /* config_finish checked the files; both channels (RPC and Raft) share what is read here. */
  if (config_has_tls(&n->cfg) &&
      !(n->tls = tls_creds_load(n->cfg.tls_ca, n->cfg.tls_cert, n->cfg.tls_key, err, errlen)))
    return -1;
  snprintf(n->rpc_addr, sizeof n->rpc_addr, "%s:%d", n->cfg.advertise, n->cfg.rpc_port);
  rpc_opts_t ro = {.name = n->cfg.name,
                   .advertise = n->rpc_addr,
                   .secret = n->cfg.secret,
                   .bind_ip = n->cfg.bind,
                   .server_contexts = n->cfg.rpc_server_contexts,
                   .max_inflight = n->cfg.rpc_max_inflight,
                   .max_message = (size_t)n->cfg.rpc_max_message_kb * 1024,
                   .max_skew_ms = (uint64_t)n->cfg.rpc_max_clock_skew_s * 1000,
                   .tls = n->tls};
  n->rpc = rpc_new(&n->loop, &ro, n->metrics);
  rpc_handle(n->rpc, GUREUM__MSG_TYPE__MSG_PING, node_on_ping, n);
  char listen_addr[80];
  snprintf(listen_addr, sizeof listen_addr, "%s:%d", n->cfg.bind, n->cfg.rpc_port);
  if (rpc_listen(n->rpc, listen_addr, err, errlen) != 0) return -1;
  n->admin = admin_new(n);
  admin_route(n->admin, "POST", "/v1/roles", node_admin_roles, NULL);
  if (admin_listen(n->admin, n->cfg.bind, n->cfg.admin_port, err, errlen) != 0) return -1;
  n->gossip = gossip_new(n);
  if (gossip_start(n->gossip) != 0) return -1;
  if (!(n->control = control_new(n, err, errlen))) return -1;
  if (control_start(n->control, err, errlen) != 0) return -1;
  node_sync_roles(n);
  return 0;
}

int node_run(const config_t *cfg) {
  node_t *n = calloc(1, sizeof *n);
  if (!n) return 1;
  n->cfg = *cfg;
  char err[2048] = "";
  struct timeval tv;
  gettimeofday(&tv, NULL);
  n->started_ms = (uint64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
  /* A peer that dies mid-write must not kill us (libraft and NNG write to sockets). */
  signal(SIGPIPE, SIG_IGN);
  uv_loop_init(&n->loop);
  n->metrics = metrics_new();
  uv_signal_init(&n->loop, &n->sig_term);
  uv_signal_init(&n->loop, &n->sig_int);
  uv_timer_init(&n->loop, &n->deadline);
  n->sig_term.data = n->sig_int.data = n->deadline.data = n;
  uv_signal_start(&n->sig_term, node_on_signal, SIGTERM);
  uv_signal_start(&n->sig_int, node_on_signal, SIGINT);

  int rc;
  if (node_start_services(n, err, sizeof err) != 0) {
    log_error("node", "start_failed", "error=\"%s\"", err);
    fprintf(stderr, "gureum: %s\n", err);
    node_stop(n, 1);
  } else {
    log_info("node", "started", "name=%s id=%s admin=%s:%d rpc=%s tls=%s data=%s", n->cfg.name,
             n->id, n->cfg.bind, n->cfg.admin_port, n->rpc_addr, n->tls ? "on" : "off",
             n->cfg.data_dir);
  }
  uv_run(&n->loop, UV_RUN_DEFAULT);
  rc = n->exit_code;
  if (uv_loop_close(&n->loop) != 0) log_warn("node", "loop_not_empty", "%s", "");
  metrics_free(n->metrics);
  tls_creds_release(n->tls);
  free(n);
  return rc;
}
