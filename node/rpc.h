/* rpc.h - cluster RPC over NNG: request/reply to any peer by "IP:PORT", per-call deadlines,
 * many concurrent calls per connection (nng_ctx), connections reused, every frame authenticated.
 * Handlers and completion callbacks always run on the event-loop thread. */
#ifndef GUREUM_RPC_H
#define GUREUM_RPC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "metrics.h"
#include "tls.h"

typedef struct rpc_s rpc_t;
typedef struct rpc_req_s rpc_req_t;

typedef struct rpc_opts_s {
  const char *name;        /* our node name, sent as Envelope.sender */
  const char *advertise;   /* our RPC address "IP:PORT", sent as Envelope.sender_addr */
  const char *secret;      /* cluster secret */
  const char *bind_ip;     /* source address of outgoing connections; NULL = kernel's choice */
  int server_contexts;     /* requests served concurrently */
  int max_inflight;        /* outstanding calls per peer */
  size_t max_message;      /* bytes */
  uint64_t max_skew_ms;    /* 0 = no clock check */
  tls_creds_t *tls;        /* NULL: tcp://; else tls+tcp:// with mutual authentication against
                            * the cluster CA (rpc_new takes its own hold) */
} rpc_opts_t;

/* Completion status of a call (0 = success). */
enum {
  RPC_OK = 0,
  RPC_ETIMEDOUT = -1, /* no reply in time: peer down, unreachable, or refused our frame or cert */
  RPC_EBUSY = -2,     /* too many calls in flight to that peer */
  RPC_ECLOSED = -3,   /* this node is shutting down */
  RPC_EPROTO = -4,    /* the reply was not a valid frame */
  RPC_EREMOTE = -5,   /* the peer answered with an error status (see errmsg) */
  RPC_EADDR = -6,     /* bad peer address */
  RPC_ENOMEM = -7,
};

typedef void (*rpc_handler_fn)(rpc_req_t *req, void *arg);
/* On success payload/len is the reply; on RPC_EREMOTE errmsg says why. Buffers are only valid
 * during the call. `from` is the replying node's name (or NULL). */
typedef void (*rpc_done_fn)(void *arg, int status, const char *errmsg, const uint8_t *payload,
                            size_t len);

rpc_t *rpc_new(uv_loop_t *loop, const rpc_opts_t *opts, metrics_t *metrics);
/* Listen on "IP:PORT" (the scheme follows opts.tls). Returns 0 or a negative NNG error. */
int rpc_listen(rpc_t *r, const char *addr, char *err, size_t errlen);

/* The one place cluster URLs are made: "tcp://ADDR" or "tls+tcp://ADDR" for "IP:PORT". */
void rpc_url(const rpc_t *r, const char *addr, char *out, size_t outlen);
/* Whether this channel runs over TLS. */
int rpc_tls(const rpc_t *r);
/* Register the handler for a message type (gureum.MsgType). */
void rpc_handle(rpc_t *r, uint32_t type, rpc_handler_fn fn, void *arg);

/* Call `peer` ("IP:PORT"). `done` always runs exactly once, on the loop thread, never before
 * rpc_call returns. Returns 0, or a negative RPC_E* if the call could not start (done not run). */
int rpc_call(rpc_t *r, const char *peer, uint32_t type, const void *payload, size_t len,
             int timeout_ms, rpc_done_fn done, void *arg);

/* Server side, on the loop thread. */
const uint8_t *rpc_req_payload(const rpc_req_t *q, size_t *len);
const char *rpc_req_sender(const rpc_req_t *q);
const char *rpc_req_sender_addr(const rpc_req_t *q);
uint32_t rpc_req_type(const rpc_req_t *q);
/* Answer and release the request. status is a gureum.RpcStatus; errmsg may be NULL. */
void rpc_reply(rpc_req_t *q, uint32_t status, const char *errmsg, const void *payload,
               size_t len);

/* Stop serving and cancel in-flight calls (their callbacks run with RPC_ECLOSED), then free
 * everything once outstanding handler requests are answered. Loop thread. */
void rpc_close(rpc_t *r);

const char *rpc_strerror(int status);

#endif
