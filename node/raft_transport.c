/* raft_transport.c - libraft transport over the cluster RPC: every Raft connection is a local
 * socketpair; libraft gets one end, we relay the other end as MSG_RAFT_STREAM calls to the peer. */
#include "raft_transport.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "proto/envelope.pb-c.h"
#include "proto/raft.pb-c.h"

#define RAFT_TRANSPORT_CHUNK (64 * 1024)     /* bytes per DATA call */
#define RAFT_TRANSPORT_OPEN_MS 2000          /* connect attempt deadline */
#define RAFT_TRANSPORT_DATA_MS 5000          /* a chunk not written by then means a stuck peer */
#define RAFT_TRANSPORT_CLOSE_MS 1000         /* best effort */
#define RAFT_TRANSPORT_ADDR_LEN 64           /* rpc.c keeps peer addresses in 64 bytes too */

typedef Gureum__RaftStream raft_transport_msg_t;
typedef struct raft_transport_s raft_transport_t;

/* One tunnelled connection. Streams are linked in the transport while usable; once closing they
 * are unlinked (so messages for them find nothing) and freed from the relay's close callback. */
typedef struct raft_transport_stream_s {
  raft_transport_t *tr;
  struct raft_transport_stream_s *prev, *next;
  uint64_t id;
  char peer[RAFT_TRANSPORT_ADDR_LEN]; /* the other side's RPC address: where DATA/CLOSE go */
  int incoming;
  raft_id peer_id;                    /* incoming: the connector's Raft id */
  int closing;
  uv_pipe_t relay;                    /* our end of the socketpair */
  int raft_fd;                        /* libraft's end until it is handed over, else -1 */
  struct raft_uv_connect *req;        /* connect waiting for the OPEN reply */
  raft_uv_connect_cb connect_cb;
  uint64_t send_seq, recv_seq;
  rpc_req_t *held;                    /* DATA request answered once its bytes are written */
  uv_write_t wr;
  uint8_t *wbuf;
  char rbuf[RAFT_TRANSPORT_CHUNK];
} raft_transport_stream_t;

struct raft_transport_s {
  struct raft_uv_transport *t;
  uv_loop_t *loop;
  rpc_t *rpc;
  raft_id id;
  char address[RAFT_TRANSPORT_ADDR_LEN];
  raft_uv_accept_cb accept_cb;
  raft_uv_transport_close_cb close_cb;
  int closing;
  int freed;
  int handles; /* handles of ours still closing */
  int calls;   /* rpc calls in flight: their callbacks need this struct */
  raft_transport_stream_t *streams;
  uv_timer_t closer; /* closed last so the close callback is always asynchronous */
  metric_t *m_streams, *m_out, *m_in, *m_failed;
};

/* What an rpc completion needs to find its stream again; the stream may be gone by then. */
typedef struct raft_transport_call_s {
  raft_transport_t *tr;
  int op;
  uint64_t stream_id;
  char peer[RAFT_TRANSPORT_ADDR_LEN];
} raft_transport_call_t;

static void raft_transport_stream_close(raft_transport_stream_t *s, int notify);

static void raft_transport_metric_add(metric_t *m, int64_t v) {
  if (m) metric_add(m, v);
}

static void raft_transport_maybe_release(raft_transport_t *tr) {
  if (tr->freed && tr->calls == 0 && tr->handles == 0) free(tr);
}

/* After each of our handles closed: once the last one is gone, the close is complete. */
static void raft_transport_handle_gone(raft_transport_t *tr) {
  tr->handles--;
  if (tr->closing && tr->handles == 0 && tr->close_cb) {
    raft_uv_transport_close_cb cb = tr->close_cb;
    tr->close_cb = NULL;
    cb(tr->t);
  }
  raft_transport_maybe_release(tr);
}

static uint64_t raft_transport_random_id(void) {
  static uint64_t fallback;
  uint64_t id = 0;
  if (getrandom(&id, sizeof id, GRND_NONBLOCK) != sizeof id)
    id = (uv_hrtime() << 16) ^ (uint64_t)getpid() ^ ++fallback;
  return id ? id : 1;
}

static raft_transport_stream_t *raft_transport_find(raft_transport_t *tr, const char *peer,
                                                    uint64_t id) {
  for (raft_transport_stream_t *s = tr->streams; s; s = s->next)
    if (s->id == id && strcmp(s->peer, peer) == 0) return s;
  return NULL;
}

/* ---- sending ---- */

static void raft_transport_call_done(void *arg, int status, const char *errmsg,
                                     const uint8_t *payload, size_t len);

/* Pack and send one message. Returns 0 or a negative RPC_E* (then nothing was sent). */
static int raft_transport_send(raft_transport_t *tr, const char *peer,
                               const raft_transport_msg_t *msg, int timeout_ms) {
  size_t n = gureum__raft_stream__get_packed_size(msg);
  uint8_t *buf = malloc(n ? n : 1);
  raft_transport_call_t *c = calloc(1, sizeof *c);
  if (!buf || !c) {
    free(buf);
    free(c);
    return RPC_ENOMEM;
  }
  gureum__raft_stream__pack(msg, buf);
  c->tr = tr;
  c->op = msg->op;
  c->stream_id = msg->stream_id;
  snprintf(c->peer, sizeof c->peer, "%s", peer);
  int rv = rpc_call(tr->rpc, peer, GUREUM__MSG_TYPE__MSG_RAFT_STREAM, buf, n, timeout_ms,
                    raft_transport_call_done, c);
  free(buf); /* rpc_call copied it into the frame */
  if (rv != 0) {
    free(c);
    return rv;
  }
  tr->calls++;
  return 0;
}

/* ---- streams ---- */

static void raft_transport_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  raft_transport_stream_t *s = h->data;
  (void)hint;
  /* One buffer per stream is enough: reading stops while its chunk is in flight. */
  *buf = uv_buf_init(s->rbuf, sizeof s->rbuf);
}

static void raft_transport_read_cb(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf) {
  raft_transport_stream_t *s = h->data;
  raft_transport_t *tr = s->tr;
  if (nread == 0) return;
  if (nread < 0) { /* libraft closed its end (or the pair broke): tell the peer */
    raft_transport_stream_close(s, 1);
    return;
  }
  /* Stop-and-wait: the next chunk is read only once the peer wrote this one, which keeps the
   * order without buffering and pushes back on libraft when the peer is slow. */
  uv_read_stop(h);
  raft_transport_msg_t m = GUREUM__RAFT_STREAM__INIT;
  m.op = GUREUM__RAFT_STREAM__OP__DATA;
  m.stream_id = s->id;
  m.seq = s->send_seq++;
  m.data.data = (uint8_t *)buf->base;
  m.data.len = (size_t)nread;
  int rv = raft_transport_send(tr, s->peer, &m, RAFT_TRANSPORT_DATA_MS);
  if (rv != 0) {
    log_debug("raft_transport", "data_send_failed", "peer=%s stream=%016llx error=\"%s\"", s->peer,
              (unsigned long long)s->id, rpc_strerror(rv));
    raft_transport_stream_close(s, 1);
    return;
  }
  raft_transport_metric_add(tr->m_out, nread);
}

static void raft_transport_stream_closed(uv_handle_t *h) {
  raft_transport_stream_t *s = h->data;
  raft_transport_t *tr = s->tr;
  /* A connect that never completed learns its fate only now, after the relay is gone, so it
   * always runs after connect() returned and before the transport's close callback. */
  if (s->req && !tr->freed) {
    struct raft_uv_connect *req = s->req;
    s->req = NULL;
    s->connect_cb(req, NULL, tr->closing ? RAFT_CANCELED : RAFT_NOCONNECTION);
  }
  free(s);
  raft_transport_handle_gone(tr);
}

/* Close our side of a stream; libraft's end then reads EOF (or fails its next write). With
 * `notify`, tell the peer so it closes its side too. Idempotent. */
static void raft_transport_stream_close(raft_transport_stream_t *s, int notify) {
  raft_transport_t *tr = s->tr;
  if (s->closing) return;
  s->closing = 1;
  if (s->prev) s->prev->next = s->next;
  else tr->streams = s->next;
  if (s->next) s->next->prev = s->prev;
  s->prev = s->next = NULL;
  if (s->raft_fd >= 0) {
    close(s->raft_fd);
    s->raft_fd = -1;
  }
  if (notify && !tr->freed) {
    raft_transport_msg_t m = GUREUM__RAFT_STREAM__INIT;
    m.op = GUREUM__RAFT_STREAM__OP__CLOSE;
    m.stream_id = s->id;
    raft_transport_send(tr, s->peer, &m, RAFT_TRANSPORT_CLOSE_MS); /* best effort */
  }
  log_debug("raft_transport", "stream_closed", "peer=%s stream=%016llx incoming=%d", s->peer,
            (unsigned long long)s->id, s->incoming);
  raft_transport_metric_add(tr->m_streams, -1);
  tr->handles++;
  /* Pending relay writes complete with UV_ECANCELED (answering their DATA) before this. */
  uv_close((uv_handle_t *)&s->relay, raft_transport_stream_closed);
}

/* Create a stream and its socketpair; libraft's end stays a bare fd in s->raft_fd until it is
 * handed over. Returns NULL on failure, with the reason in *err. */
static raft_transport_stream_t *raft_transport_stream_new(raft_transport_t *tr, const char *peer,
                                                          uint64_t id, int incoming,
                                                          const char **err) {
  int fds[2];
  raft_transport_stream_t *s = calloc(1, sizeof *s);
  if (!s) {
    *err = "out of memory";
    return NULL;
  }
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
    *err = strerror(errno);
    free(s);
    return NULL;
  }
  s->tr = tr;
  s->id = id;
  s->incoming = incoming;
  s->raft_fd = fds[1];
  snprintf(s->peer, sizeof s->peer, "%s", peer);
  uv_pipe_init(tr->loop, &s->relay, 0);
  s->relay.data = s;
  s->next = tr->streams;
  if (tr->streams) tr->streams->prev = s;
  tr->streams = s;
  raft_transport_metric_add(tr->m_streams, 1);
  int rv = uv_pipe_open(&s->relay, fds[0]);
  if (rv != 0) {
    close(fds[0]); /* the handle did not take it */
    *err = uv_strerror(rv);
    raft_transport_stream_close(s, 0);
    return NULL;
  }
  return s;
}

/* Wrap libraft's end in a raft_malloc'ed pipe, which libraft will uv_close and raft_free. */
static void raft_transport_free_handle(uv_handle_t *h) { raft_free(h); }

static uv_stream_t *raft_transport_handover(raft_transport_stream_t *s, const char **err) {
  uv_pipe_t *p = raft_malloc(sizeof *p);
  if (!p) {
    *err = "out of memory";
    return NULL;
  }
  uv_pipe_init(s->tr->loop, p, 0);
  int rv = uv_pipe_open(p, s->raft_fd);
  if (rv != 0) {
    *err = uv_strerror(rv);
    uv_close((uv_handle_t *)p, raft_transport_free_handle);
    return NULL; /* s->raft_fd is still ours: stream_close closes it */
  }
  s->raft_fd = -1;
  return (uv_stream_t *)p;
}

static int raft_transport_start_relay(raft_transport_stream_t *s, const char **err) {
  int rv = uv_read_start((uv_stream_t *)&s->relay, raft_transport_alloc_cb, raft_transport_read_cb);
  if (rv != 0) *err = uv_strerror(rv);
  return rv;
}

/* ---- rpc completions ---- */

static void raft_transport_open_done(raft_transport_stream_t *s, int status, const char *errmsg) {
  const char *err = NULL;
  if (status != RPC_OK) {
    log_debug("raft_transport", "connect_failed", "peer=%s error=\"%s\"", s->peer,
              errmsg ? errmsg : rpc_strerror(status));
    raft_transport_metric_add(s->tr->m_failed, 1);
    /* A timed-out OPEN may still have reached the peer: ask it to drop the stream. */
    raft_transport_stream_close(s, status == RPC_ETIMEDOUT);
    return; /* the connect callback runs from the relay's close callback */
  }
  uv_stream_t *raft_end = NULL;
  if (raft_transport_start_relay(s, &err) != 0 || !(raft_end = raft_transport_handover(s, &err))) {
    log_warn("raft_transport", "connect_setup_failed", "peer=%s error=\"%s\"", s->peer, err);
    raft_transport_stream_close(s, 1);
    return;
  }
  struct raft_uv_connect *req = s->req;
  raft_uv_connect_cb cb = s->connect_cb;
  s->req = NULL;
  log_debug("raft_transport", "connected", "peer=%s stream=%016llx", s->peer,
            (unsigned long long)s->id);
  cb(req, raft_end, 0);
}

static void raft_transport_call_done(void *arg, int status, const char *errmsg,
                                     const uint8_t *payload, size_t len) {
  raft_transport_call_t *c = arg;
  raft_transport_t *tr = c->tr;
  (void)payload;
  (void)len;
  tr->calls--;
  raft_transport_stream_t *s = tr->freed ? NULL : raft_transport_find(tr, c->peer, c->stream_id);
  if (s && c->op == GUREUM__RAFT_STREAM__OP__OPEN && s->req) {
    raft_transport_open_done(s, status, errmsg);
  } else if (s && c->op == GUREUM__RAFT_STREAM__OP__DATA) {
    const char *err = NULL;
    if (status != RPC_OK) {
      /* The peer lost the stream, is down, or did not write in time. Dropping the stream makes
       * libraft reconnect, which is its recovery path anyway. */
      log_debug("raft_transport", "data_failed", "peer=%s stream=%016llx error=\"%s\"", s->peer,
                (unsigned long long)s->id, errmsg ? errmsg : rpc_strerror(status));
      raft_transport_stream_close(s, status != RPC_EREMOTE);
    } else if (raft_transport_start_relay(s, &err) != 0) {
      raft_transport_stream_close(s, 1);
    }
  }
  free(c);
  raft_transport_maybe_release(tr);
}

/* ---- rpc handlers ---- */

static void raft_transport_reply_err(rpc_req_t *q, uint32_t status, const char *why) {
  rpc_reply(q, status, why, NULL, 0);
}

static void raft_transport_on_open(raft_transport_t *tr, rpc_req_t *q,
                                   const raft_transport_msg_t *m) {
  const char *peer = rpc_req_sender_addr(q);
  const char *err = NULL;
  if (!tr->accept_cb || tr->closing) {
    raft_transport_reply_err(q, GUREUM__RPC_STATUS__RPC_STATUS_SHUTTING_DOWN,
                             "raft is not accepting connections");
    return;
  }
  if (!peer || !*peer || strlen(peer) >= RAFT_TRANSPORT_ADDR_LEN || m->from_id == 0) {
    raft_transport_reply_err(q, GUREUM__RPC_STATUS__RPC_STATUS_BAD_REQUEST, "bad OPEN");
    return;
  }
  if (raft_transport_find(tr, peer, m->stream_id)) {
    raft_transport_reply_err(q, GUREUM__RPC_STATUS__RPC_STATUS_FAILED, "duplicate stream id");
    return;
  }
  /* libraft keeps one connection per peer and opens a new one only after dropping the old,
   * so an older stream from the same server is dead; its CLOSE was lost (crash, timeout).
   * Dropping it here keeps dead streams from piling up on long-lived nodes. */
  for (raft_transport_stream_t *o = tr->streams, *n; o; o = n) {
    n = o->next;
    if (o->incoming && o->peer_id == m->from_id && strcmp(o->peer, peer) == 0)
      raft_transport_stream_close(o, 0);
  }
  raft_transport_stream_t *s = raft_transport_stream_new(tr, peer, m->stream_id, 1, &err);
  if (!s) {
    log_warn("raft_transport", "accept_failed", "peer=%s error=\"%s\"", peer, err);
    raft_transport_reply_err(q, GUREUM__RPC_STATUS__RPC_STATUS_FAILED, err);
    return;
  }
  s->peer_id = m->from_id;
  uv_stream_t *raft_end = NULL;
  if (raft_transport_start_relay(s, &err) != 0 || !(raft_end = raft_transport_handover(s, &err))) {
    log_warn("raft_transport", "accept_failed", "peer=%s error=\"%s\"", peer, err);
    raft_transport_stream_close(s, 0);
    raft_transport_reply_err(q, GUREUM__RPC_STATUS__RPC_STATUS_FAILED, err);
    return;
  }
  log_debug("raft_transport", "accepted", "peer=%s raft_id=%llu stream=%016llx", peer,
            (unsigned long long)m->from_id, (unsigned long long)m->stream_id);
  rpc_reply(q, GUREUM__RPC_STATUS__RPC_STATUS_OK, NULL, NULL, 0);
  /* libraft copies the address; fall back to the RPC address if the sender left it out. */
  const char *addr = m->from_address && *m->from_address ? m->from_address : peer;
  tr->accept_cb(tr->t, (raft_id)m->from_id, addr, raft_end);
}

static void raft_transport_write_cb(uv_write_t *w, int status) {
  raft_transport_stream_t *s = w->data;
  rpc_req_t *q = s->held;
  s->held = NULL;
  free(s->wbuf);
  s->wbuf = NULL;
  if (status == 0) {
    rpc_reply(q, GUREUM__RPC_STATUS__RPC_STATUS_OK, NULL, NULL, 0);
    return;
  }
  /* The error reply is what tells the sender; no CLOSE needed. */
  raft_transport_reply_err(q, GUREUM__RPC_STATUS__RPC_STATUS_FAILED,
                           status == UV_ECANCELED ? "stream closed" : uv_strerror(status));
  raft_transport_stream_close(s, 0);
}

static void raft_transport_on_data(raft_transport_t *tr, rpc_req_t *q,
                                   const raft_transport_msg_t *m) {
  raft_transport_stream_t *s = raft_transport_find(tr, rpc_req_sender_addr(q), m->stream_id);
  if (!s) {
    raft_transport_reply_err(q, GUREUM__RPC_STATUS__RPC_STATUS_FAILED, "unknown stream");
    return;
  }
  if (s->held || m->seq != s->recv_seq || m->data.len > RAFT_TRANSPORT_CHUNK) {
    /* Out of order or overlapping: the byte stream is broken, so is the connection. */
    log_warn("raft_transport", "bad_sequence", "peer=%s stream=%016llx seq=%llu want=%llu",
             s->peer, (unsigned long long)s->id, (unsigned long long)m->seq,
             (unsigned long long)s->recv_seq);
    raft_transport_reply_err(q, GUREUM__RPC_STATUS__RPC_STATUS_FAILED, "out of sequence");
    raft_transport_stream_close(s, 1);
    return;
  }
  s->recv_seq++;
  if (m->data.len == 0) {
    rpc_reply(q, GUREUM__RPC_STATUS__RPC_STATUS_OK, NULL, NULL, 0);
    return;
  }
  s->wbuf = malloc(m->data.len); /* the request's payload dies with the handler call */
  if (!s->wbuf) {
    raft_transport_reply_err(q, GUREUM__RPC_STATUS__RPC_STATUS_FAILED, "out of memory");
    raft_transport_stream_close(s, 1);
    return;
  }
  memcpy(s->wbuf, m->data.data, m->data.len);
  uv_buf_t b = uv_buf_init((char *)s->wbuf, (unsigned)m->data.len);
  s->wr.data = s;
  s->held = q;
  /* The reply waits for the write: a slow libraft slows the sender down (back-pressure). */
  int rv = uv_write(&s->wr, (uv_stream_t *)&s->relay, &b, 1, raft_transport_write_cb);
  if (rv != 0) {
    s->held = NULL;
    free(s->wbuf);
    s->wbuf = NULL;
    raft_transport_reply_err(q, GUREUM__RPC_STATUS__RPC_STATUS_FAILED, uv_strerror(rv));
    raft_transport_stream_close(s, 0);
    return;
  }
  raft_transport_metric_add(tr->m_in, (int64_t)m->data.len);
}

static void raft_transport_on_msg(rpc_req_t *q, void *arg) {
  raft_transport_t *tr = arg;
  size_t len;
  const uint8_t *p = rpc_req_payload(q, &len);
  raft_transport_msg_t *m = gureum__raft_stream__unpack(NULL, len, p);
  if (!m) {
    raft_transport_reply_err(q, GUREUM__RPC_STATUS__RPC_STATUS_BAD_REQUEST, "bad RaftStream");
    return;
  }
  switch (m->op) {
  case GUREUM__RAFT_STREAM__OP__OPEN:
    raft_transport_on_open(tr, q, m);
    break;
  case GUREUM__RAFT_STREAM__OP__DATA:
    raft_transport_on_data(tr, q, m);
    break;
  case GUREUM__RAFT_STREAM__OP__CLOSE: {
    raft_transport_stream_t *s = raft_transport_find(tr, rpc_req_sender_addr(q), m->stream_id);
    if (s) raft_transport_stream_close(s, 0);
    rpc_reply(q, GUREUM__RPC_STATUS__RPC_STATUS_OK, NULL, NULL, 0);
    break;
  }
  default:
    raft_transport_reply_err(q, GUREUM__RPC_STATUS__RPC_STATUS_BAD_REQUEST, "unknown op");
  }
  gureum__raft_stream__free_unpacked(m, NULL);
}

/* Installed once the transport is freed: the rpc_t may live on and must not reach freed memory. */
static void raft_transport_on_gone(rpc_req_t *q, void *arg) {
  (void)arg;
  raft_transport_reply_err(q, GUREUM__RPC_STATUS__RPC_STATUS_SHUTTING_DOWN, "raft is stopped");
}

/* ---- struct raft_uv_transport methods ---- */

static int raft_transport_m_init(struct raft_uv_transport *t, raft_id id, const char *address) {
  raft_transport_t *tr = t->impl;
  if (!address || strlen(address) >= sizeof tr->address) {
    snprintf(t->errmsg, RAFT_ERRMSG_BUF_SIZE, "raft address too long");
    return RAFT_INVALID;
  }
  tr->id = id;
  snprintf(tr->address, sizeof tr->address, "%s", address);
  return 0;
}

static int raft_transport_m_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb) {
  raft_transport_t *tr = t->impl;
  tr->accept_cb = cb;
  return 0;
}

static int raft_transport_m_connect(struct raft_uv_transport *t, struct raft_uv_connect *req,
                                    raft_id id, const char *address, raft_uv_connect_cb cb) {
  raft_transport_t *tr = t->impl;
  const char *err = NULL;
  if (tr->closing) {
    snprintf(t->errmsg, RAFT_ERRMSG_BUF_SIZE, "transport is closing");
    return RAFT_CANCELED;
  }
  if (!address || strlen(address) >= RAFT_TRANSPORT_ADDR_LEN) {
    snprintf(t->errmsg, RAFT_ERRMSG_BUF_SIZE, "bad address");
    return RAFT_NOCONNECTION;
  }
  raft_transport_stream_t *s =
      raft_transport_stream_new(tr, address, raft_transport_random_id(), 0, &err);
  if (!s) {
    snprintf(t->errmsg, RAFT_ERRMSG_BUF_SIZE, "connect to %llu (%s): %s", (unsigned long long)id,
             address, err);
    return RAFT_NOCONNECTION;
  }
  raft_transport_msg_t m = GUREUM__RAFT_STREAM__INIT;
  m.op = GUREUM__RAFT_STREAM__OP__OPEN;
  m.stream_id = s->id;
  m.from_id = tr->id;
  m.from_address = tr->address;
  int rv = raft_transport_send(tr, address, &m, RAFT_TRANSPORT_OPEN_MS);
  if (rv != 0) {
    snprintf(t->errmsg, RAFT_ERRMSG_BUF_SIZE, "connect to %llu (%s): %s", (unsigned long long)id,
             address, rpc_strerror(rv));
    raft_transport_stream_close(s, 0); /* req not set yet: no callback */
    return RAFT_NOCONNECTION;
  }
  /* rpc_call never completes before returning, so the callback cannot run inside connect. */
  s->req = req;
  s->connect_cb = cb;
  return 0;
}

static void raft_transport_closer_closed(uv_handle_t *h) {
  raft_transport_handle_gone(h->data);
}

static void raft_transport_m_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb) {
  raft_transport_t *tr = t->impl;
  tr->closing = 1;
  tr->accept_cb = NULL;
  tr->close_cb = cb;
  /* Pending connects complete with RAFT_CANCELED from their relay's close callback. */
  while (tr->streams) raft_transport_stream_close(tr->streams, 1);
  uv_timer_init(tr->loop, &tr->closer);
  tr->closer.data = tr;
  tr->handles++;
  uv_close((uv_handle_t *)&tr->closer, raft_transport_closer_closed);
}

/* ---- public ---- */

int raft_transport_init(struct raft_uv_transport *t, uv_loop_t *loop, rpc_t *rpc, metrics_t *m) {
  raft_transport_t *tr = calloc(1, sizeof *tr);
  if (!tr) return RAFT_NOMEM;
  tr->t = t;
  tr->loop = loop;
  tr->rpc = rpc;
  if (m) {
    tr->m_streams = metrics_gauge(m, "gureum_raft_streams", NULL, "Raft connections tunnelled");
    tr->m_out = metrics_counter(m, "gureum_raft_tunnel_bytes_total", "direction=\"out\"",
                                "Raft bytes carried through the RPC tunnel");
    tr->m_in = metrics_counter(m, "gureum_raft_tunnel_bytes_total", "direction=\"in\"",
                               "Raft bytes carried through the RPC tunnel");
    tr->m_failed = metrics_counter(m, "gureum_raft_connect_failures_total", NULL,
                                   "Raft connection attempts that failed");
  }
  t->impl = tr;
  t->errmsg[0] = 0;
  t->init = raft_transport_m_init;
  t->listen = raft_transport_m_listen;
  t->connect = raft_transport_m_connect;
  t->close = raft_transport_m_close;
  rpc_handle(rpc, GUREUM__MSG_TYPE__MSG_RAFT_STREAM, raft_transport_on_msg, tr);
  return 0;
}

void raft_transport_free(struct raft_uv_transport *t) {
  raft_transport_t *tr = t->impl;
  if (!tr) return;
  t->impl = NULL;
  rpc_handle(tr->rpc, GUREUM__MSG_TYPE__MSG_RAFT_STREAM, raft_transport_on_gone, NULL);
  tr->freed = 1; /* from here on: no libraft callbacks, no new rpc calls */
  tr->close_cb = NULL;
  if (tr->streams) { /* freed without a completed close: do not leave fds and handles behind */
    log_error("raft_transport", "free_while_open", "hint=\"close the transport first\"");
    tr->closing = 1;
    while (tr->streams) raft_transport_stream_close(tr->streams, 0);
  }
  raft_transport_maybe_release(tr);
}
