/* raft_transport.h - a libraft transport (struct raft_uv_transport) that carries Raft's byte
 * streams over the authenticated cluster RPC (MSG_RAFT_STREAM) instead of plain TCP.
 *
 * Addresses: a Raft address is the "IPv4:PORT" RPC address of the peer's dedicated Raft rpc_t,
 * and must equal that rpc_t's advertised address (peers reply to Envelope.sender_addr).
 * Each connection libraft gets is one end of a local socketpair, allocated with raft_malloc;
 * libraft owns it and uv_close()s + raft_free()s it. The process must ignore SIGPIPE.
 * The Raft rpc_t must accept frames of at least 65 KiB + envelope overhead (max_message).
 * Everything runs on the loop thread. */
#ifndef GUREUM_RAFT_TRANSPORT_H
#define GUREUM_RAFT_TRANSPORT_H

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "metrics.h"
#include "rpc.h"

/* Set up `t` to tunnel Raft streams over `rpc` (a dedicated rpc_t; this module registers the
 * MSG_RAFT_STREAM handler on it). Call before raft_uv_init. `m` may be NULL.
 * Returns 0 or RAFT_NOMEM. */
int raft_transport_init(struct raft_uv_transport *t, uv_loop_t *loop, rpc_t *rpc, metrics_t *m);

/* Free what init allocated; call after raft has closed the transport (its close cb ran).
 * The rpc_t must outlive this call; calls still in flight keep a little memory until they
 * complete (at the latest when the rpc_t is closed). */
void raft_transport_free(struct raft_uv_transport *t);

#endif
