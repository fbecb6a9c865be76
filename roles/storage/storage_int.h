/* storage_int.h - the storage role's running state, shared by the files that serve its admin
 * API (storage.c: keys and grants; storage_admin.c: layout, status, repair). */
#ifndef GUREUM_STORAGE_INT_H
#define GUREUM_STORAGE_INT_H

#include "layout_mgr.h"
#include "node.h"
#include "obj.h"
#include "repair.h"
#include "replica.h"
#include "repl.h"
#include "s3.h"

typedef struct storage_s {
  node_t *node;
  obj_t *obj;         /* this node's copies */
  replica_t *replica; /* serves them to coordinators */
  layout_mgr_t *layout;
  repl_t *repl;       /* coordinates S3 requests across the replicas */
  repair_t *repair;
  s3_meta_t *meta;
  s3_t *s3;
  void (*stop_cb)(void *);
  void *stop_arg;
} storage_t;

/* The admin routes outlive a stopped role (routes cannot be removed): NULL means "storage is
 * not running here". */
storage_t *storage_of(node_t *n);
/* GET /v1/storage/status, POST /v1/storage/scrub|sync, GET /v1/storage/layout, and with
 * storage.debug_hooks POST /v1/debug/corrupt. */
void storage_admin_routes(node_t *n);

#endif
