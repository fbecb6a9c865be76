/* replica.h - the replica side of the storage role: serves the replica protocol
 * (proto/replica.proto) on this node's object layer, for remote coordinators and for itself. */
#ifndef GUREUM_REPLICA_H
#define GUREUM_REPLICA_H

#include <stddef.h>
#include <stdint.h>

#include "node.h"
#include "obj.h"
#include "rpc.h"

typedef struct replica_s replica_t;

/* Registers the MSG_REPL_* handlers on the node's RPC. */
replica_t *replica_new(node_t *n, obj_t *obj);
/* Unregisters, aborts open write sessions; frees once in-flight requests are answered. */
void replica_free(replica_t *r);

/* The same operations for a coordinator on this node, without a network round trip: `done`
 * runs later on the loop thread, exactly as rpc_call's would. */
void replica_call_local(replica_t *r, uint32_t type, const void *payload, size_t len,
                        rpc_done_fn done, void *arg);

/* Requests that belong to other modules: MSG_REPL_SYNC (hinted handoff) and MSG_REPL_STATS.
 * The hook answers with replica_answer. */
typedef struct replica_req_s replica_req_t;
typedef void (*replica_hook_fn)(replica_req_t *q, const uint8_t *payload, size_t len, void *arg);
void replica_set_hook(replica_t *r, uint32_t type, replica_hook_fn fn, void *arg);
void replica_answer(replica_req_t *q, uint32_t rpc_status, const char *err, const void *payload,
                    size_t len);

#endif
