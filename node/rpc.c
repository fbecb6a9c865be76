/* rpc.c - cluster RPC over NNG req/rep with authenticated protobuf envelopes, over TCP or TLS.
 * NNG completes aios on its own threads; everything user-visible is handed to the loop via loopq. */
#include "rpc.h"

#include <arpa/inet.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "log.h"
#include "loopq.h"

enum { SLOT_RECV, SLOT_HANDLER, SLOT_SEND };
enum { CALL_SEND, CALL_RECV };
#define RPC_NREASONS 8 /* -ENVELOPE_E* codes plus "reply-on-server" */
#define RPC_TLS_POLL_MS 2000 /* how often NNG's handshake statistics are read into metrics */
enum { TLS_SIDE_IN, TLS_SIDE_OUT };

/* A server context: one request at a time, so it doubles as the rpc_req_t handed to handlers. */
struct rpc_req_s {
  rpc_t *rpc;
  nng_ctx ctx;
  nng_aio *aio;
  int state;
  Gureum__Envelope *env;
};

typedef struct rpc_handler_s {
  uint32_t type;
  rpc_handler_fn fn;
  void *arg;
} rpc_handler_t;

typedef struct rpc_peer_s {
  char addr[64];
  nng_socket sock;
  nng_dialer dialer;
  uint64_t tls_refused_seen; /* NNG's cumulative count, already added to the metric */
  uint64_t dial_attempts;    /* the dialer's outcome counters summed, at the last poll */
  int dial_idle_polls;       /* polls in a row with no pipe and no new attempt */
  int64_t dial_restarts;
  int timeouts;              /* calls made since the last redial that timed out in a row */
  uint64_t first_timeout_ms; /* when the first of them ended */
  uint64_t redial_ms;        /* loop time of the last redial (0: never) */
  int64_t resets;
  int inflight;
  struct rpc_peer_s *next;
} rpc_peer_t;

typedef struct rpc_call_s {
  rpc_t *rpc;
  rpc_peer_t *peer;
  uint64_t started_ms; /* loop time the call was made */
  nng_ctx ctx;
  nng_aio *aio;
  int state;
  uint64_t id;
  nng_time deadline;
  rpc_done_fn done;
  void *arg;
  int status;
  Gureum__Envelope *reply;
  struct rpc_call_s *prev, *next;
} rpc_call_t;

struct rpc_s {
  uv_loop_t *loop;
  loopq_t *q;
  envelope_key_t key;
  char name[64];
  char advertise[64];
  char bind_ip[64];
  int nslots, max_inflight;
  size_t max_message;
  uint64_t max_skew_ms;
  nng_socket rep;
  nng_listener listener;
  int listening;
  tls_creds_t *tls;          /* NULL = plain TCP */
  uv_timer_t tls_poll;       /* reads NNG's handshake statistics (TLS only) */
  int tls_poll_open;
  uint64_t tls_refused_seen; /* the listener's, as for rpc_peer_t */
  rpc_req_t *slots;
  rpc_handler_t *handlers;
  size_t nhandlers;
  rpc_peer_t *peers;
  rpc_call_t *calls;
  uint64_t next_id;
  atomic_int closing;
  int outstanding; /* requests handed to handlers and not yet answered */
  metric_t *m_served, *m_calls, *m_inflight;
  metric_t *m_rejected[RPC_NREASONS];
  metric_t *m_call_err[8];
  metric_t *m_tls_refused[2];
  metric_t *m_dial_restarts, *m_peer_resets;
};

static void rpc_maybe_free(rpc_t *r);

const char *rpc_strerror(int status) {
  switch (status) {
  case RPC_OK: return "ok";
  case RPC_ETIMEDOUT:
    return "timed out (peer down, unreachable, or it refused our frame or TLS certificate)";
  case RPC_EBUSY: return "too many calls in flight to this peer";
  case RPC_ECLOSED: return "node is shutting down";
  case RPC_EPROTO: return "invalid reply frame";
  case RPC_EREMOTE: return "peer returned an error";
  case RPC_EADDR: return "bad peer address (want IPv4:PORT)";
  case RPC_ENOMEM: return "out of memory";
  }
  return "unknown error";
}

static const char *rpc_errlabel(int status) {
  static const char *names[] = {"ok", "timeout", "busy", "closed", "proto", "remote", "addr", "nomem"};
  return status <= 0 && status >= -7 ? names[-status] : "other";
}

static void rpc_init_metrics(rpc_t *r, metrics_t *m) {
  r->m_served = metrics_counter(m, "gureum_rpc_requests_total", NULL,
                                "Authenticated RPC requests received");
  r->m_calls = metrics_counter(m, "gureum_rpc_calls_total", NULL, "RPC calls made to peers");
  r->m_inflight = metrics_gauge(m, "gureum_rpc_calls_inflight", NULL, "RPC calls awaiting a reply");
  char lbl[64];
  for (int i = 1; i < RPC_NREASONS; i++) {
    const char *why = i == 7 ? "not_request" : envelope_reason(-i);
    snprintf(lbl, sizeof lbl, "reason=\"%s\"", why);
    r->m_rejected[i] = metrics_counter(m, "gureum_rpc_rejected_total", lbl,
                                       "Frames dropped unexecuted, by reason");
  }
  for (int i = 1; i < 8; i++) {
    snprintf(lbl, sizeof lbl, "error=\"%s\"", rpc_errlabel(-i));
    r->m_call_err[i] = metrics_counter(m, "gureum_rpc_call_errors_total", lbl,
                                       "RPC calls that failed, by error");
  }
  static const char help[] =
      "TLS handshakes that failed on the cluster channel: inbound = on our listener (the dialler "
      "had no certificate from the cluster CA or no TLS, or refused ours); outbound = when we "
      "dialled (the peer's certificate is not from the cluster CA or does not name the address "
      "dialled, or the peer does not speak TLS)";
  r->m_tls_refused[TLS_SIDE_IN] =
      metrics_counter(m, "gureum_rpc_tls_refused_total", "side=\"inbound\"", help);
  r->m_tls_refused[TLS_SIDE_OUT] =
      metrics_counter(m, "gureum_rpc_tls_refused_total", "side=\"outbound\"", help);
  r->m_dial_restarts = metrics_counter(
      m, "gureum_rpc_dialer_restarts_total", NULL,
      "Dialers to a peer restarted because they had no connection and had stopped trying");
  r->m_peer_resets = metrics_counter(
      m, "gureum_rpc_peer_resets_total", NULL,
      "Connections to a peer replaced after its calls kept timing out");
}

static void rpc_tls_poll(uv_timer_t *t);
static int rpc_peer_dial(rpc_t *r, rpc_peer_t *p);
static int rpc_peer_redial(rpc_t *r, rpc_peer_t *p);

rpc_t *rpc_new(uv_loop_t *loop, const rpc_opts_t *o, metrics_t *metrics) {
  rpc_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->loop = loop;
  r->q = loopq_new(loop);
  envelope_key_derive(&r->key, o->secret);
  snprintf(r->name, sizeof r->name, "%s", o->name);
  snprintf(r->advertise, sizeof r->advertise, "%s", o->advertise);
  snprintf(r->bind_ip, sizeof r->bind_ip, "%s", o->bind_ip ? o->bind_ip : "");
  r->nslots = o->server_contexts > 0 ? o->server_contexts : 16;
  r->max_inflight = o->max_inflight > 0 ? o->max_inflight : 256;
  r->max_message = o->max_message ? o->max_message : 16u << 20;
  r->max_skew_ms = o->max_skew_ms;
  r->next_id = ((uint64_t)nng_random() << 32) | nng_random();
  rpc_init_metrics(r, metrics);
  if (o->tls) {
    r->tls = tls_creds_hold(o->tls);
    uv_timer_init(loop, &r->tls_poll);
    r->tls_poll.data = r;
    r->tls_poll_open = 1;
    uv_timer_start(&r->tls_poll, rpc_tls_poll, RPC_TLS_POLL_MS, RPC_TLS_POLL_MS);
    uv_unref((uv_handle_t *)&r->tls_poll); /* statistics alone never keep the loop alive */
  }
  return r;
}

void rpc_handle(rpc_t *r, uint32_t type, rpc_handler_fn fn, void *arg) {
  for (size_t i = 0; i < r->nhandlers; i++)
    if (r->handlers[i].type == type) {
      r->handlers[i].fn = fn;
      r->handlers[i].arg = arg;
      return;
    }
  rpc_handler_t *h = realloc(r->handlers, (r->nhandlers + 1) * sizeof *h);
  if (!h) abort();
  r->handlers = h;
  h[r->nhandlers++] = (rpc_handler_t){type, fn, arg};
}

void rpc_url(const rpc_t *r, const char *addr, char *out, size_t outlen) {
  snprintf(out, outlen, "%s://%s", r->tls ? "tls+tcp" : "tcp", addr);
}

int rpc_tls(const rpc_t *r) { return r->tls != NULL; }

/* ---- TLS handshake statistics ---- */

/* NNG refuses a bad handshake before any pipe exists, so no callback of ours sees it; its
 * per-listener and per-dialer "auth" statistics do count them. */
static uint64_t rpc_stat_auth(nng_stat *item) {
  nng_stat *s = nng_stat_find(item, "auth");
  return s ? nng_stat_value(s) : 0;
}

/* Is there a power of two in (before, now]? */
static int rpc_crossed_pow2(int64_t before, int64_t now) {
  for (int64_t p = 1; p > 0 && p <= now; p <<= 1)
    if (p > before) return 1;
  return 0;
}

static void rpc_tls_count(rpc_t *r, int side, uint64_t now, uint64_t *seen) {
  if (now <= *seen) return;
  int64_t delta = (int64_t)(now - *seen);
  *seen = now;
  metric_add(r->m_tls_refused[side], delta);
  /* Logged on powers of two, like rejected frames: a flood cannot flood the log. */
  int64_t n = metric_value(r->m_tls_refused[side]);
  if (rpc_crossed_pow2(n - delta, n))
    log_warn("rpc", "tls_handshake_refused", "side=%s total=%lld hint=%s",
             side == TLS_SIDE_IN ? "inbound" : "outbound", (long long)n,
             side == TLS_SIDE_IN ? "a_dialler_has_no_certificate_from_the_cluster_ca"
                                 : "a_peer_certificate_is_not_from_the_cluster_ca_or_its_ip");
}

/* Every outcome a dialer counts (connections made, refused, timed out, failed...): it grows
 * while the dialer keeps trying. */
static uint64_t rpc_stat_attempts(nng_stat *item) {
  uint64_t n = 0;
  for (nng_stat *c = nng_stat_child(item); c; c = nng_stat_next(c))
    if (nng_stat_type(c) == NNG_STAT_COUNTER) n += nng_stat_value(c);
  return n;
}

/* NNG 1.5.2's TLS dialer can stop for good (seen in the compose tests, reproduced by restarting
 * a TLS listener in a loop): most likely a redial that the peer closes while the TLS handshake
 * runs (it was shutting down or starting up) ends with NNG_ECLOSED, which the dialer takes for
 * its own close, so it never dials again. The peer then never hears from us
 * again (calls time out, Raft cannot reach it) while it still reaches us. A dialer with no
 * connection whose outcome counters stood still for two polls (4 s; a live one retries at
 * least every RECONNMAXT, 1 s) is replaced by a new one. A dialer waiting on a slow connect
 * may be replaced too, which only starts that connect over. */
static void rpc_peer_check_dialer(rpc_t *r, rpc_peer_t *p, nng_stat *item) {
  nng_stat *pipes = nng_stat_find(item, "pipes");
  uint64_t attempts = rpc_stat_attempts(item);
  int idle = pipes && nng_stat_value(pipes) == 0 && attempts == p->dial_attempts;
  p->dial_attempts = attempts;
  p->dial_idle_polls = idle ? p->dial_idle_polls + 1 : 0;
  if (p->dial_idle_polls < 2) return;
  if (rpc_peer_redial(r, p) != 0) return; /* the old one stays; the next polls try again */
  metric_inc(r->m_dial_restarts);
  p->dial_restarts++;
  if (rpc_crossed_pow2(p->dial_restarts - 1, p->dial_restarts))
    log_info("rpc", "dialer_restarted", "peer=%s restarts=%lld reason=no_connection_no_attempts",
             p->addr, (long long)p->dial_restarts);
}

/* One pass over the snapshot's top level, where NNG puts every listener and dialer. Matched by
 * their "id" child: nng_stat_find_listener/_dialer in NNG 1.5.2 return the first listener or
 * dialer whatever the id. */
static void rpc_tls_poll(uv_timer_t *t) {
  rpc_t *r = t->data;
  nng_stat *st;
  if (atomic_load(&r->closing) || nng_stats_get(&st) != 0) return;
  int lid = r->listening ? nng_listener_id(r->listener) : -1;
  for (nng_stat *item = nng_stat_child(st); item; item = nng_stat_next(item)) {
    const char *kind = nng_stat_name(item);
    int listener = strcmp(kind, "listener") == 0;
    if (!listener && strcmp(kind, "dialer") != 0) continue;
    nng_stat *idst = nng_stat_find(item, "id");
    int id = idst ? (int)nng_stat_value(idst) : -1;
    if (listener && id == lid) {
      rpc_tls_count(r, TLS_SIDE_IN, rpc_stat_auth(item), &r->tls_refused_seen);
      continue;
    }
    for (rpc_peer_t *p = r->peers; !listener && p; p = p->next)
      if (nng_dialer_id(p->dialer) == id) {
        uint64_t auth = rpc_stat_auth(item);
        if (auth < p->tls_refused_seen) p->tls_refused_seen = 0; /* a new dialer */
        rpc_tls_count(r, TLS_SIDE_OUT, auth, &p->tls_refused_seen);
        rpc_peer_check_dialer(r, p, item);
        break;
      }
  }
  nng_stats_free(st);
}

/* ---- framing helpers ---- */

static nng_msg *rpc_frame(rpc_t *r, Gureum__Envelope *env) {
  env->version = ENVELOPE_VERSION;
  env->sender = r->name;
  env->sender_addr = r->advertise;
  env->sent_ms = envelope_now_ms();
  nng_msg *m;
  if (nng_msg_alloc(&m, envelope_frame_size(env)) != 0) return NULL;
  envelope_pack(&r->key, env, nng_msg_body(m));
  return m;
}

/* Rejections are logged on powers of two so a flood of bad frames cannot flood the log. */
static void rpc_reject(rpc_t *r, int reason_idx, nng_msg *m, const char *why) {
  metric_inc(r->m_rejected[reason_idx]);
  int64_t n = metric_value(r->m_rejected[reason_idx]);
  if ((n & (n - 1)) != 0) return;
  char from[64] = "?";
  nng_sockaddr sa;
  nng_pipe p = nng_msg_get_pipe(m);
  if (nng_pipe_get_addr(p, NNG_OPT_REMADDR, &sa) == 0 && sa.s_family == NNG_AF_INET) {
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &sa.s_in.sa_addr, ip, sizeof ip);
    snprintf(from, sizeof from, "%s:%u", ip, ntohs(sa.s_in.sa_port));
  }
  log_warn("rpc", "frame_rejected", "from=%s reason=\"%s\" count=%lld", from, why, (long long)n);
}

/* ---- server ---- */

static void rpc_dispatch(void *arg);

static void rpc_slot_cb(void *arg) {
  rpc_req_t *s = arg;
  rpc_t *r = s->rpc;
  int rv = nng_aio_result(s->aio);
  if (s->state == SLOT_SEND) {
    if (rv != 0) nng_msg_free(nng_aio_get_msg(s->aio));
    s->state = SLOT_RECV;
    if (!atomic_load(&r->closing)) nng_ctx_recv(s->ctx, s->aio);
    return;
  }
  if (rv != 0) {
    if (rv != NNG_ECLOSED && rv != NNG_ECANCELED && !atomic_load(&r->closing))
      nng_ctx_recv(s->ctx, s->aio);
    return;
  }
  nng_msg *m = nng_aio_get_msg(s->aio);
  Gureum__Envelope *env;
  int e = envelope_unpack(&r->key, nng_msg_body(m), nng_msg_len(m), r->max_message,
                          envelope_now_ms(), r->max_skew_ms, &env);
  if (e == ENVELOPE_OK && env->is_reply) {
    gureum__envelope__free_unpacked(env, NULL);
    rpc_reject(r, 7, m, "reply sent to a server");
    e = 1;
  } else if (e != ENVELOPE_OK) {
    rpc_reject(r, -e, m, envelope_strerror(e));
  }
  nng_msg_free(m);
  if (e != ENVELOPE_OK) {
    nng_ctx_recv(s->ctx, s->aio); /* a REP context forgets the dropped request */
    return;
  }
  metric_inc(r->m_served);
  s->env = env;
  s->state = SLOT_HANDLER;
  if (loopq_post(r->q, rpc_dispatch, s) != 0) {
    gureum__envelope__free_unpacked(env, NULL);
    s->env = NULL;
  }
}

static void rpc_dispatch(void *arg) {
  rpc_req_t *s = arg;
  rpc_t *r = s->rpc;
  r->outstanding++;
  if (atomic_load(&r->closing)) {
    rpc_reply(s, GUREUM__RPC_STATUS__RPC_STATUS_SHUTTING_DOWN, "node is shutting down", NULL, 0);
    return;
  }
  for (size_t i = 0; i < r->nhandlers; i++)
    if (r->handlers[i].type == s->env->type) {
      r->handlers[i].fn(s, r->handlers[i].arg);
      return;
    }
  char msg[64];
  snprintf(msg, sizeof msg, "no handler for message type %u", s->env->type);
  rpc_reply(s, GUREUM__RPC_STATUS__RPC_STATUS_NO_HANDLER, msg, NULL, 0);
}

const uint8_t *rpc_req_payload(const rpc_req_t *q, size_t *len) {
  *len = q->env->payload.len;
  return q->env->payload.data;
}
const char *rpc_req_sender(const rpc_req_t *q) { return q->env->sender; }
const char *rpc_req_sender_addr(const rpc_req_t *q) { return q->env->sender_addr; }
uint32_t rpc_req_type(const rpc_req_t *q) { return q->env->type; }

void rpc_reply(rpc_req_t *s, uint32_t status, const char *errmsg, const void *payload,
               size_t len) {
  rpc_t *r = s->rpc;
  Gureum__Envelope *req = s->env;
  s->env = NULL;
  r->outstanding--;
  if (atomic_load(&r->closing) || !s->aio) {
    gureum__envelope__free_unpacked(req, NULL);
    rpc_maybe_free(r);
    return;
  }
  Gureum__Envelope env = GUREUM__ENVELOPE__INIT;
  env.type = req->type;
  env.request_id = req->request_id;
  env.is_reply = 1;
  env.status = status;
  env.error = (char *)(errmsg ? errmsg : "");
  env.payload.data = (uint8_t *)payload;
  env.payload.len = payload ? len : 0;
  nng_msg *m = rpc_frame(r, &env);
  gureum__envelope__free_unpacked(req, NULL);
  s->state = SLOT_SEND;
  if (!m) { /* cannot answer: let the caller time out, keep serving */
    s->state = SLOT_RECV;
    nng_ctx_recv(s->ctx, s->aio);
    return;
  }
  nng_aio_set_msg(s->aio, m);
  nng_ctx_send(s->ctx, s->aio);
}

/* Our certificate, and a peer's checked against the cluster CA before any frame is read. */
static int rpc_listen_tls(rpc_t *r) {
  nng_tls_config *cfg;
  int rv = tls_nng_config(r->tls, 1, NULL, &cfg);
  if (rv != 0) return rv;
  rv = nng_listener_set_ptr(r->listener, NNG_OPT_TLS_CONFIG, cfg);
  nng_tls_config_free(cfg); /* the listener holds it */
  return rv;
}

int rpc_listen(rpc_t *r, const char *addr, char *err, size_t errlen) {
  char url[96];
  rpc_url(r, addr, url, sizeof url);
  int rv;
  if ((rv = nng_rep0_open(&r->rep)) != 0) goto fail;
  nng_socket_set_size(r->rep, NNG_OPT_RECVMAXSZ, r->max_message);
  r->slots = calloc(r->nslots, sizeof *r->slots);
  if (!r->slots) return -NNG_ENOMEM;
  r->listening = 1;
  for (int i = 0; i < r->nslots; i++) {
    rpc_req_t *s = &r->slots[i];
    s->rpc = r;
    if ((rv = nng_aio_alloc(&s->aio, rpc_slot_cb, s)) != 0) goto fail;
    if ((rv = nng_ctx_open(&s->ctx, r->rep)) != 0) goto fail;
  }
  if ((rv = nng_listener_create(&r->listener, r->rep, url)) != 0) goto fail;
  if (r->tls && (rv = rpc_listen_tls(r)) != 0) goto fail;
  if ((rv = nng_listener_start(r->listener, 0)) != 0) goto fail;
  for (int i = 0; i < r->nslots; i++) nng_ctx_recv(r->slots[i].ctx, r->slots[i].aio);
  return 0;
fail:
  snprintf(err, errlen, "cannot listen on %s: %s", url, nng_strerror(rv));
  return -rv;
}

/* ---- client ---- */

/* A dialer checks that the peer's certificate names the IP it dialled (see tls_issue). */
static int rpc_dial_tls(rpc_t *r, nng_dialer d, const char *addr) {
  char ip[64];
  const char *colon = strrchr(addr, ':');
  size_t n = colon ? (size_t)(colon - addr) : strlen(addr);
  snprintf(ip, sizeof ip, "%.*s", (int)n, addr);
  nng_tls_config *cfg;
  int rv = tls_nng_config(r->tls, 0, ip, &cfg);
  if (rv != 0) return rv;
  rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg);
  nng_tls_config_free(cfg); /* the dialer holds it */
  return rv;
}

static void rpc_peer_sock_opts(rpc_t *r, nng_socket sock) {
  /* The call deadline decides; NNG's own resend would duplicate non-idempotent requests. */
  nng_socket_set_ms(sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
  nng_socket_set_size(sock, NNG_OPT_RECVMAXSZ, r->max_message);
  nng_socket_set_ms(sock, NNG_OPT_RECONNMINT, 50);
  nng_socket_set_ms(sock, NNG_OPT_RECONNMAXT, 1000);
}

/* A started dialer to p->addr on p->sock, stored in p->dialer. Returns 0 or an NNG error (then
 * p->dialer is unchanged). */
static int rpc_peer_dial(rpc_t *r, rpc_peer_t *p) {
  char url[96];
  rpc_url(r, p->addr, url, sizeof url);
  nng_dialer d;
  int rv = nng_dialer_create(&d, p->sock, url);
  if (rv != 0) return rv;
  if (r->tls && (rv = rpc_dial_tls(r, d, p->addr)) != 0)
    log_error("rpc", "tls_config_failed", "peer=%s error=\"%s\"", p->addr, nng_strerror(rv));
  /* Dial from our own address: peers (and firewalls) then see the node's real address, not
   * whatever source the kernel picks on a multi-homed host. */
  if (rv == 0 && r->bind_ip[0] && strcmp(r->bind_ip, "0.0.0.0") != 0) {
    nng_sockaddr sa = {.s_in = {.sa_family = NNG_AF_INET}};
    inet_pton(AF_INET, r->bind_ip, &sa.s_in.sa_addr);
    nng_dialer_set_addr(d, NNG_OPT_LOCADDR, &sa);
  }
  /* Non-blocking: a peer that is down now is redialled in the background. */
  if (rv == 0) rv = nng_dialer_start(d, NNG_FLAG_NONBLOCK);
  if (rv != 0) {
    nng_dialer_close(d);
    return rv;
  }
  p->dialer = d;
  return 0;
}

/* A new dialer in place of p's current one, whose close also closes its pipes. */
static int rpc_peer_redial(rpc_t *r, rpc_peer_t *p) {
  nng_dialer old = p->dialer;
  int rv = rpc_peer_dial(r, p);
  if (rv != 0) {
    log_warn("rpc", "redial_failed", "peer=%s error=\"%s\"", p->addr, nng_strerror(rv));
    return rv;
  }
  nng_dialer_close(old);
  p->dial_idle_polls = 0;
  p->dial_attempts = 0; /* a new dialer counts from 0 */
  p->redial_ms = uv_now(r->loop);
  return 0;
}

static rpc_peer_t *rpc_peer_get(rpc_t *r, const char *addr) {
  for (rpc_peer_t *p = r->peers; p; p = p->next)
    if (strcmp(p->addr, addr) == 0) return p;
  rpc_peer_t *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  snprintf(p->addr, sizeof p->addr, "%s", addr);
  if (nng_req0_open(&p->sock) != 0) {
    free(p);
    return NULL;
  }
  rpc_peer_sock_opts(r, p->sock);
  if (rpc_peer_dial(r, p) != 0) {
    nng_close(p->sock);
    free(p);
    return NULL;
  }
  p->next = r->peers;
  r->peers = p;
  return p;
}

static int rpc_valid_addr(const char *addr) {
  char ip[64];
  const char *colon = strrchr(addr, ':');
  if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof ip) return 0;
  memcpy(ip, addr, colon - addr);
  ip[colon - addr] = 0;
  struct in_addr a;
  char *end;
  long port = strtol(colon + 1, &end, 10);
  return inet_pton(AF_INET, ip, &a) == 1 && *end == 0 && port > 0 && port < 65536;
}

static int rpc_map_nng(const rpc_t *r, int rv) {
  /* While we close our sockets, resets and aborts are our own doing. */
  if (atomic_load(&r->closing)) return RPC_ECLOSED;
  switch (rv) {
  case NNG_ETIMEDOUT:
  case NNG_ECONNRESET:
  case NNG_ECONNREFUSED:
  case NNG_ECONNABORTED:
  case NNG_EUNREACHABLE: return RPC_ETIMEDOUT;
  case NNG_ECLOSED:
  case NNG_ECANCELED: return RPC_ECLOSED;
  case NNG_ENOMEM: return RPC_ENOMEM;
  }
  return RPC_EPROTO;
}

/* NNG 1.5.2 over TLS can also keep a pipe whose connection is gone (the kernel has no socket
 * for it any more, NNG never noticed): every request sent on it is lost, and the dialer, which
 * has its pipe, never redials. So when a peer's calls keep timing out - RPC_PEER_RESET_TIMEOUTS
 * in a row over RPC_PEER_RESET_SPAN_MS, none answered - its dialer is replaced, which closes
 * that pipe too (requests waiting on it are sent again on the new one); at most once per
 * RPC_PEER_RESET_MIN_MS. For a peer that is really down this only redials it. Only the dialer:
 * closing the socket from the loop would wait on calls whose completions need the loop. */
#define RPC_PEER_RESET_TIMEOUTS 3
#define RPC_PEER_RESET_SPAN_MS 4000
#define RPC_PEER_RESET_MIN_MS 10000
static void rpc_peer_outcome(rpc_t *r, rpc_peer_t *p, uint64_t started_ms, int status) {
  if (atomic_load(&r->closing) || (p->redial_ms && started_ms < p->redial_ms)) return;
  if (status != RPC_ETIMEDOUT) {
    if (status == RPC_OK || status == RPC_EREMOTE) p->timeouts = 0; /* the peer answered */
    return;
  }
  uint64_t now = uv_now(r->loop);
  if (p->timeouts++ == 0) p->first_timeout_ms = now;
  if (p->timeouts < RPC_PEER_RESET_TIMEOUTS ||
      now - p->first_timeout_ms < RPC_PEER_RESET_SPAN_MS ||
      (p->redial_ms && now - p->redial_ms < RPC_PEER_RESET_MIN_MS))
    return;
  p->timeouts = 0;
  if (rpc_peer_redial(r, p) != 0) return;
  metric_inc(r->m_peer_resets);
  p->resets++;
  if (rpc_crossed_pow2(p->resets - 1, p->resets))
    log_info("rpc", "peer_reset", "peer=%s resets=%lld reason=calls_timed_out", p->addr,
             (long long)p->resets);
}

static void rpc_call_finish(void *arg) {
  rpc_call_t *c = arg;
  rpc_t *r = c->rpc;
  if (c->prev) c->prev->next = c->next;
  else r->calls = c->next;
  if (c->next) c->next->prev = c->prev;
  c->peer->inflight--;
  rpc_peer_outcome(r, c->peer, c->started_ms, c->status);
  metric_add(r->m_inflight, -1);
  if (c->status != RPC_OK) metric_inc(r->m_call_err[-c->status]);
  if (c->status == RPC_OK)
    c->done(c->arg, RPC_OK, NULL, c->reply->payload.data, c->reply->payload.len);
  else
    c->done(c->arg, c->status,
            c->status == RPC_EREMOTE && c->reply ? c->reply->error : rpc_strerror(c->status), NULL,
            0);
  if (c->reply) gureum__envelope__free_unpacked(c->reply, NULL);
  nng_aio_free(c->aio);
  nng_ctx_close(c->ctx);
  free(c);
}

static void rpc_call_cb(void *arg) {
  rpc_call_t *c = arg;
  rpc_t *r = c->rpc;
  int rv = nng_aio_result(c->aio);
  if (rv != 0) {
    if (c->state == CALL_SEND) nng_msg_free(nng_aio_get_msg(c->aio));
    c->status = rpc_map_nng(r, rv);
  } else if (c->state == CALL_SEND) {
    nng_time now = nng_clock();
    c->state = CALL_RECV;
    nng_aio_set_timeout(c->aio, c->deadline > now ? (nng_duration)(c->deadline - now) : 1);
    nng_ctx_recv(c->ctx, c->aio);
    return;
  } else {
    nng_msg *m = nng_aio_get_msg(c->aio);
    int e = envelope_unpack(&r->key, nng_msg_body(m), nng_msg_len(m), r->max_message,
                            envelope_now_ms(), r->max_skew_ms, &c->reply);
    if (e != ENVELOPE_OK) {
      rpc_reject(r, -e, m, envelope_strerror(e));
      c->status = RPC_EPROTO;
    } else if (!c->reply->is_reply || c->reply->request_id != c->id) {
      c->status = RPC_EPROTO;
    } else if (c->reply->status != GUREUM__RPC_STATUS__RPC_STATUS_OK) {
      c->status = RPC_EREMOTE;
    }
    nng_msg_free(m);
  }
  /* Never refused: rpc_close stops every call's aio before it closes the queue. */
  loopq_post(r->q, rpc_call_finish, c);
}

int rpc_call(rpc_t *r, const char *peer, uint32_t type, const void *payload, size_t len,
             int timeout_ms, rpc_done_fn done, void *arg) {
  if (atomic_load(&r->closing)) return RPC_ECLOSED;
  if (!rpc_valid_addr(peer)) return RPC_EADDR;
  rpc_peer_t *p = rpc_peer_get(r, peer);
  if (!p) return RPC_ENOMEM;
  if (p->inflight >= r->max_inflight) {
    metric_inc(r->m_call_err[-RPC_EBUSY]);
    return RPC_EBUSY;
  }
  rpc_call_t *c = calloc(1, sizeof *c);
  if (!c) return RPC_ENOMEM;
  c->rpc = r;
  c->peer = p;
  c->started_ms = uv_now(r->loop);
  c->id = r->next_id++;
  c->done = done;
  c->arg = arg;
  c->deadline = nng_clock() + (timeout_ms > 0 ? timeout_ms : 1);
  Gureum__Envelope env = GUREUM__ENVELOPE__INIT;
  env.type = type;
  env.request_id = c->id;
  env.payload.data = (uint8_t *)payload;
  env.payload.len = payload ? len : 0;
  nng_msg *m = rpc_frame(r, &env);
  if (!m || nng_aio_alloc(&c->aio, rpc_call_cb, c) != 0 || nng_ctx_open(&c->ctx, p->sock) != 0) {
    if (m) nng_msg_free(m);
    if (c->aio) nng_aio_free(c->aio);
    free(c);
    return RPC_ENOMEM;
  }
  c->next = r->calls;
  if (r->calls) r->calls->prev = c;
  r->calls = c;
  p->inflight++;
  metric_inc(r->m_calls);
  metric_add(r->m_inflight, 1);
  c->state = CALL_SEND;
  nng_aio_set_timeout(c->aio, timeout_ms > 0 ? timeout_ms : 1);
  nng_aio_set_msg(c->aio, m);
  nng_ctx_send(c->ctx, c->aio);
  return 0;
}

/* ---- shutdown ---- */

static void rpc_maybe_free(rpc_t *r) {
  if (!r->q && r->outstanding == 0 && !r->tls_poll_open && atomic_load(&r->closing)) {
    tls_creds_release(r->tls);
    free(r->slots);
    free(r->handlers);
    free(r);
  }
}

static void rpc_tls_poll_closed(uv_handle_t *h) {
  rpc_t *r = h->data;
  r->tls_poll_open = 0;
  rpc_maybe_free(r);
}

void rpc_close(rpc_t *r) {
  if (!r || atomic_exchange(&r->closing, 1)) return;
  if (r->tls_poll_open) uv_close((uv_handle_t *)&r->tls_poll, rpc_tls_poll_closed);
  if (r->listening) {
    nng_close(r->rep);
    for (int i = 0; i < r->nslots; i++) {
      if (r->slots[i].aio) nng_aio_free(r->slots[i].aio);
      r->slots[i].aio = NULL;
    }
  }
  for (rpc_peer_t *p = r->peers; p; p = p->next) nng_close(p->sock);
  /* Wait until every in-flight call's callback has posted its completion... */
  for (rpc_call_t *c = r->calls; c; c = c->next) nng_aio_stop(c->aio);
  /* ...then run those completions (and any queued dispatches) before freeing the queue. */
  loopq_close(r->q);
  r->q = NULL;
  for (rpc_peer_t *p = r->peers, *n; p; p = n) {
    n = p->next;
    free(p);
  }
  r->peers = NULL;
  rpc_maybe_free(r);
}
