/* node.h - the one node context: the event loop and every core service a node runs.
 * No other global state exists; modules receive the node_t they belong to. */
#ifndef GUREUM_NODE_H
#define GUREUM_NODE_H

#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "metrics.h"
#include "rpc.h"
#include "store.h"

typedef struct admin_s admin_t;
typedef struct gossip_s gossip_t;
typedef struct control_s control_t;

typedef struct node_s {
  uv_loop_t loop;
  config_t cfg;
  char id[33];         /* persistent random id, hex; kept in DATA_DIR/node-id */
  uint64_t started_ms; /* wall clock at start */
  char rpc_addr[80];   /* advertised "IP:PORT" of the cluster RPC */
  metrics_t *metrics;
  store_t *store;
  rpc_t *rpc;
  tls_creds_t *tls; /* the cluster channel's certificates; NULL = plain TCP */
  admin_t *admin;
  gossip_t *gossip;
  control_t *control;
  struct {
    const struct role_s *role;
    void *state; /* NULL when not running */
  } roles[8];    /* parallel to role_registry */
  int roles_stopping;
  void (*roles_stopped_cb)(void *);
  void *roles_stopped_arg;
  uv_signal_t sig_term, sig_int;
  uv_timer_t deadline;
  int stopping;
  int exit_code;
} node_t;

/* Start a node with this configuration and run it until it is stopped.
 * Returns the process exit code (0 after a clean stop). */
int node_run(const config_t *cfg);

/* Begin a graceful stop (loop thread): stop accepting, cancel in-flight work, flush, exit. */
void node_stop(node_t *n, int exit_code);

uint64_t node_uptime_s(const node_t *n);

/* Replace the roles this node serves (validated names); starts/stops the role services and
 * announces the change to the cluster. Returns 0, or -1 with a message in err. */
int node_set_roles(node_t *n, const char *csv, char *err, size_t errlen);

#endif
