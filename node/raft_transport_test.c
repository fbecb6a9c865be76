/* raft_transport_test.c - tests of the Raft tunnel with real rpc_t instances on loopback: byte
 * streams both ways, close propagation, refused connects, strangers, a 3-server libraft cluster. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "raft_transport.h"

#define MIB (1024 * 1024)
#define MAX_OWNED 16

/* Bytes read from one raft end. */
typedef struct sink_s {
  uint8_t *buf;
  size_t len, cap;
  int eof, err;
} sink_t;

typedef struct env_s env_t;

/* One node: an rpc_t, its transport and, for the cluster test, a libraft server. The
 * transport comes first so accept callbacks can cast it back to the node. */
typedef struct tnode_s {
  struct raft_uv_transport t;
  env_t *e;
  raft_id id;
  char addr[32];
  metrics_t *m;
  rpc_t *rpc;
  int closing, closed, freed, close_seq;
  int accepts;
  raft_id acc_id;
  char acc_addr[64];
  uv_stream_t *acc;
  /* libraft */
  char dir[64];
  struct raft_io io;
  struct raft_fsm fsm;
  struct raft raft;
  int count, raft_started, raft_closed;
} tnode_t;

typedef struct conn_s {
  struct raft_uv_connect req;
  env_t *e;
  int done, status, seq;
  uv_stream_t *stream;
} conn_t;

struct env_s {
  uv_loop_t loop;
  tnode_t n[4];
  int nn;
  uv_stream_t *owned[MAX_OWNED]; /* raft ends handed to the test, closed by the teardown */
  int nowned;
  int seq; /* orders callbacks */
  int writes_ok, writes_failed;
};

/* Run the loop until cond holds or ms passed. */
#define WAIT_FOR(e, cond, ms)                                                \
  do {                                                                       \
    uint64_t end_ = uv_hrtime() + (uint64_t)(ms) * 1000000ull;               \
    while (!(cond) && uv_hrtime() < end_) {                                  \
      uv_run(&(e)->loop, UV_RUN_NOWAIT);                                     \
      usleep(100);                                                           \
    }                                                                        \
  } while (0)

/* Below the kernel's ephemeral range (32768+), so outgoing connections never hold our ports. */
static int base_port(void) {
  static int next;
  if (!next) next = 10000 + ((getpid() * 7) % 20000);
  next += 3;
  if (next > 32000) next = 10000;
  return next;
}

static void on_accept(struct raft_uv_transport *t, raft_id id, const char *address,
                      uv_stream_t *stream);

static tnode_t *mk_node(env_t *e, raft_id id, const char *secret) {
  tnode_t *n = &e->n[e->nn++];
  memset(n, 0, sizeof *n);
  n->e = e;
  n->id = id;
  n->m = metrics_new();
  for (int attempt = 0;; attempt++) {
    snprintf(n->addr, sizeof n->addr, "127.0.0.1:%d", base_port());
    rpc_opts_t o = {.name = "node", .advertise = n->addr, .secret = secret,
                    .server_contexts = 8, .max_skew_ms = 300000};
    n->rpc = rpc_new(&e->loop, &o, n->m);
    char err[128];
    if (rpc_listen(n->rpc, n->addr, err, sizeof err) == 0) break;
    rpc_close(n->rpc); /* port taken by another process: try the next one */
    assert_true(attempt < 20);
  }
  assert_int_equal(raft_transport_init(&n->t, &e->loop, n->rpc, n->m), 0);
  return n;
}

/* What libraft would do first: init with our identity, then listen. */
static tnode_t *mk_started(env_t *e, raft_id id, const char *secret) {
  tnode_t *n = mk_node(e, id, secret);
  assert_int_equal(n->t.init(&n->t, id, n->addr), 0);
  assert_int_equal(n->t.listen(&n->t, on_accept), 0);
  return n;
}

static void own(env_t *e, uv_stream_t *s) {
  assert_true(e->nowned < MAX_OWNED);
  e->owned[e->nowned++] = s;
}

static void free_handle(uv_handle_t *h) { raft_free(h); }

/* Close a raft end the test owns, as libraft would: uv_close, then raft_free. */
static void close_owned(env_t *e, uv_stream_t *s) {
  for (int i = 0; i < e->nowned; i++)
    if (e->owned[i] == s) e->owned[i] = e->owned[--e->nowned];
  uv_close((uv_handle_t *)s, free_handle);
}

static void on_accept(struct raft_uv_transport *t, raft_id id, const char *address,
                      uv_stream_t *stream) {
  tnode_t *n = (tnode_t *)t;
  n->accepts++;
  n->acc_id = id;
  snprintf(n->acc_addr, sizeof n->acc_addr, "%s", address);
  n->acc = stream;
  own(n->e, stream);
}

static void on_connect(struct raft_uv_connect *req, uv_stream_t *stream, int status) {
  conn_t *c = req->data;
  c->done++;
  c->status = status;
  c->stream = stream;
  c->seq = ++c->e->seq;
  if (stream) own(c->e, stream);
}

static void connect_to(tnode_t *from, conn_t *c, raft_id id, const char *addr) {
  memset(c, 0, sizeof *c);
  c->e = from->e;
  c->req.data = c;
  assert_int_equal(from->t.connect(&from->t, &c->req, id, addr, on_connect), 0);
  assert_int_equal(c->done, 0); /* never completes inside connect */
}

static void on_transport_closed(struct raft_uv_transport *t) {
  tnode_t *n = (tnode_t *)t;
  n->closed++;
  n->close_seq = ++n->e->seq;
}

/* ---- reading and writing raft ends ---- */

static void sink_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  sink_t *k = h->data;
  (void)hint;
  if (k->cap - k->len < 65536) {
    k->cap = k->cap ? k->cap * 2 : 131072;
    k->buf = realloc(k->buf, k->cap);
  }
  *buf = uv_buf_init((char *)k->buf + k->len, (unsigned)(k->cap - k->len));
}

static void sink_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  sink_t *k = s->data;
  (void)buf;
  if (n > 0) k->len += (size_t)n;
  else if (n == UV_EOF) k->eof = 1;
  else if (n < 0) k->err = (int)n;
}

static void sink_start(uv_stream_t *s, sink_t *k) {
  s->data = k;
  assert_int_equal(uv_read_start(s, sink_alloc, sink_read), 0);
}

static void write_done(uv_write_t *w, int status) {
  env_t *e = w->data;
  if (status == 0) e->writes_ok++;
  else e->writes_failed++;
  free(w);
}

/* Queue `len` bytes in random-size writes (1 B .. 20 KiB). Returns the number of writes. */
static int write_pieces(env_t *e, uv_stream_t *s, const uint8_t *data, size_t len) {
  int n = 0;
  for (size_t off = 0; off < len; n++) {
    size_t piece = 1 + (size_t)rand() % 20000;
    if (piece > len - off) piece = len - off;
    uv_write_t *w = malloc(sizeof *w);
    w->data = e;
    uv_buf_t b = uv_buf_init((char *)data + off, (unsigned)piece);
    assert_int_equal(uv_write(w, s, &b, 1, write_done), 0);
    off += piece;
  }
  return n;
}

static uint8_t *random_bytes(size_t len) {
  uint8_t *p = malloc(len);
  for (size_t i = 0; i < len; i++) p[i] = (uint8_t)rand();
  return p;
}

static int64_t metric_of(metrics_t *m, const char *name, const char *labels) {
  return metric_value(metrics_counter(m, name, labels, ""));
}

static void on_raft_closed(struct raft *r);

/* ---- fixture ---- */

static int setup(void **state) {
  env_t *e = calloc(1, sizeof *e);
  uv_loop_init(&e->loop);
  srand((unsigned)getpid());
  *state = e;
  return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static int teardown(void **state) {
  env_t *e = *state;
  while (e->nowned) close_owned(e, e->owned[0]);
  /* A cluster test that failed half-way: stop its servers first. */
  for (int i = 0; i < e->nn; i++) {
    tnode_t *n = &e->n[i];
    if (n->raft_started && !n->freed && !n->raft_closed) raft_close(&n->raft, on_raft_closed);
  }
  for (int i = 0; i < e->nn; i++) {
    tnode_t *n = &e->n[i];
    if (!n->raft_started || n->freed) continue;
    WAIT_FOR(e, n->raft_closed, 5000);
    raft_uv_close(&n->io);
    raft_transport_free(&n->t);
    n->freed = 1;
  }
  for (int i = 0; i < e->nn; i++) {
    tnode_t *n = &e->n[i];
    if (!n->freed && !n->closing && !n->raft_started) {
      n->closing = 1;
      n->t.close(&n->t, on_transport_closed);
    }
  }
  for (int i = 0; i < e->nn; i++) WAIT_FOR(e, e->n[i].freed || e->n[i].closed, 5000);
  for (int i = 0; i < e->nn; i++) {
    tnode_t *n = &e->n[i];
    if (!n->freed) {
      assert_int_equal(n->closed, 1);
      raft_transport_free(&n->t);
    }
    rpc_close(n->rpc);
  }
  uv_run(&e->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&e->loop), 0);
  for (int i = 0; i < e->nn; i++) {
    metrics_free(e->n[i].m);
    if (e->n[i].dir[0]) nftw(e->n[i].dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
  }
  free(e);
  return 0;
}

/* ---- tests ---- */

static void test_byte_streams(void **state) {
  env_t *e = *state;
  tnode_t *a = mk_started(e, 1, "secret-one"), *b = mk_started(e, 2, "secret-one");
  conn_t c;
  connect_to(a, &c, 2, b->addr);
  WAIT_FOR(e, c.done && b->accepts, 5000);
  assert_int_equal(c.done, 1);
  assert_int_equal(c.status, 0);
  assert_non_null(c.stream);
  assert_int_equal(b->accepts, 1);
  assert_int_equal(b->acc_id, 1);
  assert_string_equal(b->acc_addr, a->addr);

  /* A -> B: 1 MiB in random pieces, read back byte-identical and in order. */
  uint8_t *out = random_bytes(MIB);
  sink_t kb = {0}, ka = {0};
  sink_start(b->acc, &kb);
  int n = write_pieces(e, c.stream, out, MIB);
  WAIT_FOR(e, kb.len >= MIB || kb.err || kb.eof, 20000);
  assert_int_equal(kb.err, 0);
  assert_int_equal(kb.eof, 0);
  assert_int_equal(kb.len, MIB);
  assert_memory_equal(kb.buf, out, MIB);
  WAIT_FOR(e, e->writes_ok == n, 2000);
  assert_int_equal(e->writes_ok, n);

  /* B -> A over the same connection. */
  uint8_t *back = random_bytes(MIB);
  sink_start(c.stream, &ka);
  n += write_pieces(e, b->acc, back, MIB);
  WAIT_FOR(e, ka.len >= MIB || ka.err || ka.eof, 20000);
  assert_int_equal(ka.len, MIB);
  assert_memory_equal(ka.buf, back, MIB);
  WAIT_FOR(e, e->writes_ok == n, 2000);
  assert_int_equal(e->writes_failed, 0);

  assert_true(metric_of(a->m, "gureum_raft_tunnel_bytes_total", "direction=\"out\"") >= MIB);
  assert_true(metric_of(b->m, "gureum_raft_tunnel_bytes_total", "direction=\"in\"") >= MIB);
  assert_int_equal(metric_value(metrics_gauge(a->m, "gureum_raft_streams", NULL, "")), 1);
  free(out);
  free(back);
  free(kb.buf);
  free(ka.buf);
}

static void test_close_propagates(void **state) {
  env_t *e = *state;
  tnode_t *a = mk_started(e, 1, "secret-one"), *b = mk_started(e, 2, "secret-one");
  conn_t c;
  connect_to(a, &c, 2, b->addr);
  WAIT_FOR(e, c.done && b->accepts, 5000);
  assert_int_equal(c.status, 0);
  sink_t kb = {0};
  sink_start(b->acc, &kb);
  /* Bytes written just before the close still arrive, then EOF. */
  uv_write_t *w = malloc(sizeof *w);
  w->data = e;
  uv_buf_t buf = uv_buf_init("last words", 10);
  assert_int_equal(uv_write(w, c.stream, &buf, 1, write_done), 0);
  close_owned(e, c.stream);
  WAIT_FOR(e, kb.eof || kb.err, 5000);
  assert_int_equal(kb.eof, 1);
  assert_int_equal(kb.len, 10);
  assert_memory_equal(kb.buf, "last words", 10);
  WAIT_FOR(e, metric_value(metrics_gauge(b->m, "gureum_raft_streams", NULL, "")) == 0, 2000);
  assert_int_equal(metric_value(metrics_gauge(b->m, "gureum_raft_streams", NULL, "")), 0);

  /* The other way: the acceptor's end closes, the connector's end reads EOF. */
  conn_t c2;
  connect_to(a, &c2, 2, b->addr);
  WAIT_FOR(e, c2.done && b->accepts == 2, 5000);
  assert_int_equal(c2.status, 0);
  sink_t ka = {0};
  sink_start(c2.stream, &ka);
  close_owned(e, b->acc);
  WAIT_FOR(e, ka.eof || ka.err, 5000);
  assert_int_equal(ka.eof, 1);
  free(kb.buf);
  free(ka.buf);
}

static void test_connect_nobody_listens(void **state) {
  env_t *e = *state;
  tnode_t *a = mk_started(e, 1, "secret-one");
  char addr[32];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", base_port());
  uint64_t t0 = uv_hrtime();
  conn_t c;
  connect_to(a, &c, 2, addr);
  WAIT_FOR(e, c.done, 5000);
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  assert_int_equal(c.done, 1);
  assert_int_not_equal(c.status, 0);
  assert_null(c.stream);
  assert_true(ms < 3000);
  assert_int_equal(metric_value(metrics_gauge(a->m, "gureum_raft_streams", NULL, "")), 0);
  /* Bad addresses fail at once, without a callback. */
  struct raft_uv_connect req = {.data = &c};
  assert_int_not_equal(a->t.connect(&a->t, &req, 2, "nowhere", on_connect), 0);
  assert_int_equal(c.done, 1);
}

static void test_stranger_refused(void **state) {
  env_t *e = *state;
  tnode_t *b = mk_started(e, 2, "secret-one");
  tnode_t *s = mk_started(e, 9, "wrong-secret");
  int64_t before = metric_of(b->m, "gureum_rpc_rejected_total", "reason=\"auth\"");
  conn_t c;
  connect_to(s, &c, 2, b->addr);
  WAIT_FOR(e, c.done, 5000);
  assert_int_equal(c.done, 1);
  assert_int_not_equal(c.status, 0);
  assert_int_equal(b->accepts, 0);
  assert_true(metric_of(b->m, "gureum_rpc_rejected_total", "reason=\"auth\"") > before);
  assert_int_equal(metric_value(metrics_gauge(b->m, "gureum_raft_streams", NULL, "")), 0);
}

/* Closing a transport with streams in both directions, bytes in flight and a connect pending:
 * the connect is cancelled before the close callback, peers see EOF, nothing leaks. */
static void test_close_with_streams(void **state) {
  env_t *e = *state;
  tnode_t *a = mk_started(e, 1, "secret-one"), *b = mk_started(e, 2, "secret-one");
  conn_t ab, ba, dead;
  connect_to(a, &ab, 2, b->addr);
  connect_to(b, &ba, 1, a->addr);
  WAIT_FOR(e, ab.done && ba.done && a->accepts && b->accepts, 5000);
  assert_int_equal(ab.status, 0);
  assert_int_equal(ba.status, 0);
  uv_stream_t *b_acc = b->acc;
  char dead_addr[32];
  snprintf(dead_addr, sizeof dead_addr, "127.0.0.1:%d", base_port());
  connect_to(a, &dead, 3, dead_addr);
  /* 512 KiB toward B, which does not read yet: its relay write backs up mid-flight. */
  uint8_t *out = random_bytes(MIB / 2);
  write_pieces(e, ab.stream, out, MIB / 2);
  for (int i = 0; i < 20; i++) uv_run(&e->loop, UV_RUN_NOWAIT), usleep(500);
  assert_int_equal(metric_value(metrics_gauge(a->m, "gureum_raft_streams", NULL, "")), 3);

  a->closing = 1;
  a->t.close(&a->t, on_transport_closed);
  assert_int_equal(a->closed, 0); /* asynchronous */
  WAIT_FOR(e, a->closed, 5000);
  assert_int_equal(a->closed, 1);
  assert_int_equal(dead.done, 1);
  assert_int_equal(dead.status, RAFT_CANCELED);
  assert_true(dead.seq < a->close_seq);
  assert_int_equal(metric_value(metrics_gauge(a->m, "gureum_raft_streams", NULL, "")), 0);

  /* B's ends of both connections read EOF (A's CLOSE got through). */
  sink_t k1 = {0}, k2 = {0};
  sink_start(b_acc, &k1);
  sink_start(ba.stream, &k2);
  WAIT_FOR(e, (k1.eof || k1.err) && (k2.eof || k2.err), 5000);
  assert_int_equal(k1.eof, 1);
  assert_int_equal(k2.eof, 1);
  assert_true(k1.len <= MIB / 2);
  if (k1.len) assert_memory_equal(k1.buf, out, k1.len); /* a prefix, never garbage */
  WAIT_FOR(e, metric_value(metrics_gauge(b->m, "gureum_raft_streams", NULL, "")) == 0, 2000);
  assert_int_equal(metric_value(metrics_gauge(b->m, "gureum_raft_streams", NULL, "")), 0);

  raft_transport_free(&a->t);
  a->freed = 1;
  /* B keeps working; A's rpc_t now refuses Raft streams instead of touching freed memory. */
  conn_t again;
  connect_to(b, &again, 1, a->addr);
  WAIT_FOR(e, again.done, 5000);
  assert_int_not_equal(again.status, 0);
  free(out);
  free(k1.buf);
  free(k2.buf);
}

/* ---- a real libraft cluster over the tunnel ---- */

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result) {
  tnode_t *n = fsm->data;
  (void)buf;
  n->count++;
  *result = NULL;
  return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs) {
  (void)fsm;
  (void)bufs;
  (void)n_bufs;
  return RAFT_NOTFOUND; /* the threshold below keeps libraft from asking */
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf) {
  (void)fsm;
  (void)buf;
  return RAFT_NOTFOUND;
}

static int applied;
static void on_applied(struct raft_apply *req, int status, void *result) {
  (void)result;
  applied = status == 0 ? 1 : -1;
  free(req);
}

static void on_raft_closed(struct raft *r) {
  tnode_t *n = r->data;
  n->raft_closed = 1;
}

static tnode_t *leader_of(env_t *e) {
  for (int i = 0; i < e->nn; i++)
    if (raft_state(&e->n[i].raft) == RAFT_LEADER) return &e->n[i];
  return NULL;
}

static void test_libraft_cluster(void **state) {
  env_t *e = *state;
  tnode_t *ns[3];
  for (int i = 0; i < 3; i++) ns[i] = mk_node(e, (raft_id)(i + 1), "secret-one");
  struct raft_configuration conf;
  raft_configuration_init(&conf);
  for (int i = 0; i < 3; i++)
    assert_int_equal(raft_configuration_add(&conf, ns[i]->id, ns[i]->addr, RAFT_VOTER), 0);
  for (int i = 0; i < 3; i++) {
    tnode_t *n = ns[i];
    snprintf(n->dir, sizeof n->dir, "/tmp/gureum-raft-test-XXXXXX");
    assert_non_null(mkdtemp(n->dir));
    int rv = raft_uv_init(&n->io, &e->loop, n->dir, &n->t);
    if (rv != 0) print_error("raft_uv_init(%s): %s\n", n->dir, n->io.errmsg);
    assert_int_equal(rv, 0);
    n->fsm = (struct raft_fsm){.version = 1, .data = n, .apply = fsm_apply,
                               .snapshot = fsm_snapshot, .restore = fsm_restore};
    rv = raft_init(&n->raft, &n->io, &n->fsm, n->id, n->addr);
    if (rv != 0) print_error("raft_init: %s (%s)\n", raft_errmsg(&n->raft), n->io.errmsg);
    assert_int_equal(rv, 0);
    n->raft.data = n;
    rv = raft_bootstrap(&n->raft, &conf);
    if (rv != 0) print_error("raft_bootstrap: %s\n", raft_errmsg(&n->raft));
    assert_int_equal(rv, 0);
    raft_set_election_timeout(&n->raft, 400);
    raft_set_heartbeat_timeout(&n->raft, 50);
    raft_set_pre_vote(&n->raft, true);
    raft_set_snapshot_threshold(&n->raft, 1u << 20);
    rv = raft_start(&n->raft);
    if (rv != 0) print_error("raft_start: %s\n", raft_errmsg(&n->raft));
    assert_int_equal(rv, 0);
    n->raft_started = 1;
  }
  raft_configuration_close(&conf);

  WAIT_FOR(e, leader_of(e), 10000);
  tnode_t *leader = leader_of(e);
  assert_non_null(leader);
  struct raft_buffer buf = {.base = raft_malloc(8), .len = 8};
  memcpy(buf.base, "counter!", 8);
  struct raft_apply *req = malloc(sizeof *req);
  applied = 0;
  assert_int_equal(raft_apply(&leader->raft, req, &buf, 1, on_applied), 0);
  WAIT_FOR(e, applied && ns[0]->count && ns[1]->count && ns[2]->count, 5000);
  assert_int_equal(applied, 1);
  for (int i = 0; i < 3; i++) assert_int_equal(ns[i]->count, 1);
  assert_true(metric_of(leader->m, "gureum_raft_tunnel_bytes_total", "direction=\"out\"") > 0);

  for (int i = 0; i < 3; i++) raft_close(&ns[i]->raft, on_raft_closed);
  WAIT_FOR(e, ns[0]->raft_closed && ns[1]->raft_closed && ns[2]->raft_closed, 5000);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(ns[i]->raft_closed, 1);
    raft_uv_close(&ns[i]->io);
    raft_transport_free(&ns[i]->t);
    ns[i]->freed = 1;
  }
}

int main(void) {
  signal(SIGPIPE, SIG_IGN); /* writes to a closed socketpair must fail, not kill us */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_byte_streams, setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_propagates, setup, teardown),
      cmocka_unit_test_setup_teardown(test_connect_nobody_listens, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stranger_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_with_streams, setup, teardown),
      cmocka_unit_test_setup_teardown(test_libraft_cluster, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
