/* rpc_test.c - unit tests of the cluster RPC with real NNG sockets on loopback: round trips,
 * concurrency, deadlines, back-pressure, refusal of strangers, reconnection and shutdown, and
 * the same channel over TLS (mutual authentication against a cluster CA). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "rpc.h"
#include "proto/envelope.pb-c.h"

#define T_ECHO 100
#define T_SLOW 101 /* answered after 50 ms */
#define T_NEVER 102 /* held until the test releases it */

typedef struct env_s {
  uv_loop_t loop;
  metrics_t *m;
  rpc_t *a, *b;
  rpc_t *extra; /* a third party a test made; closed by the teardown even when the test fails */
  char a_addr[32], b_addr[32];
  int handled;
  rpc_req_t *held;        /* the last request T_NEVER held */
  rpc_req_t *held_all[8]; /* every one, so a test can answer them all */
  int nheld;
  int done, ok, errs[8];
  char last_err[128];
  char last_payload[64];
} env_t;

/* Below the kernel's ephemeral range (32768+), so outgoing connections never hold our ports. */
static int base_port(void) {
  static int next;
  if (!next) next = 10000 + (getpid() % 20000);
  next += 2;
  if (next > 32000) next = 10000;
  return next;
}

static rpc_t *mk_with(env_t *e, const char *name, const char *secret, char *addr, int inflight,
                      int listen, tls_creds_t *tls) {
  for (int attempt = 0;; attempt++) {
    snprintf(addr, 32, "127.0.0.1:%d", base_port());
    rpc_opts_t o = {.name = name, .advertise = addr, .secret = secret, .server_contexts = 8,
                    .max_inflight = inflight, .max_message = 1 << 20, .max_skew_ms = 300000,
                    .tls = tls};
    rpc_t *r = rpc_new(&e->loop, &o, e->m);
    if (!listen) return r;
    char err[128];
    int rv = rpc_listen(r, addr, err, sizeof err);
    if (rv == 0) return r;
    rpc_close(r); /* port taken by another process: try the next one */
    assert_true(attempt < 20);
  }
}

static rpc_t *mk(env_t *e, const char *name, const char *secret, char *addr, int inflight,
                 int listen) {
  return mk_with(e, name, secret, addr, inflight, listen, NULL);
}

static void on_echo(rpc_req_t *q, void *arg) {
  env_t *e = arg;
  size_t len;
  const uint8_t *p = rpc_req_payload(q, &len);
  e->handled++;
  rpc_reply(q, GUREUM__RPC_STATUS__RPC_STATUS_OK, NULL, p, len);
}

static void slow_fire(uv_timer_t *t) {
  rpc_req_t *q = t->data;
  size_t len;
  const uint8_t *p = rpc_req_payload(q, &len);
  rpc_reply(q, GUREUM__RPC_STATUS__RPC_STATUS_OK, NULL, p, len);
  uv_close((uv_handle_t *)t, (uv_close_cb)free);
}

static void on_slow(rpc_req_t *q, void *arg) {
  env_t *e = arg;
  e->handled++;
  uv_timer_t *t = malloc(sizeof *t);
  uv_timer_init(&e->loop, t);
  t->data = q;
  uv_timer_start(t, slow_fire, 50, 0);
}

static void on_never(rpc_req_t *q, void *arg) {
  env_t *e = arg;
  e->handled++;
  e->held = q;
  if (e->nheld < 8) e->held_all[e->nheld++] = q;
}

static int setup(void **state) {
  env_t *e = calloc(1, sizeof *e);
  uv_loop_init(&e->loop);
  e->m = metrics_new();
  e->a = mk(e, "a", "secret-one", e->a_addr, 256, 1);
  e->b = mk(e, "b", "secret-one", e->b_addr, 256, 1);
  rpc_t *rs[2] = {e->a, e->b};
  for (int i = 0; i < 2; i++) {
    rpc_handle(rs[i], T_ECHO, on_echo, e);
    rpc_handle(rs[i], T_SLOW, on_slow, e);
    rpc_handle(rs[i], T_NEVER, on_never, e);
  }
  *state = e;
  return 0;
}

static int teardown(void **state) {
  env_t *e = *state;
  if (e->a) rpc_close(e->a);
  if (e->b) rpc_close(e->b);
  if (e->extra) rpc_close(e->extra);
  uv_run(&e->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&e->loop), 0);
  metrics_free(e->m);
  free(e);
  return 0;
}

static void on_done(void *arg, int status, const char *errmsg, const uint8_t *p, size_t len) {
  env_t *e = arg;
  e->done++;
  if (status == RPC_OK) {
    e->ok++;
    snprintf(e->last_payload, sizeof e->last_payload, "%.*s", (int)len, (const char *)p);
  } else {
    e->errs[-status]++;
    snprintf(e->last_err, sizeof e->last_err, "%s", errmsg ? errmsg : "");
  }
}

/* Run the loop until `n` calls completed or 5 s passed. */
static void wait_done(env_t *e, int n) {
  uint64_t end = uv_hrtime() + 5000000000ull;
  while (e->done < n && uv_hrtime() < end) uv_run(&e->loop, UV_RUN_NOWAIT), usleep(200);
}

static int64_t metric_of(metrics_t *m, const char *name, const char *labels) {
  return metric_value(metrics_counter(m, name, labels, ""));
}

static void test_round_trip(void **state) {
  env_t *e = *state;
  assert_int_equal(rpc_call(e->a, e->b_addr, T_ECHO, "hi there", 8, 2000, on_done, e), 0);
  assert_int_equal(e->done, 0); /* never completes inside rpc_call */
  wait_done(e, 1);
  assert_int_equal(e->ok, 1);
  assert_string_equal(e->last_payload, "hi there");
  assert_int_equal(rpc_call(e->b, e->a_addr, T_ECHO, "back", 4, 2000, on_done, e), 0);
  wait_done(e, 2);
  assert_int_equal(e->ok, 2);
  assert_string_equal(e->last_payload, "back");
}

static void test_many_concurrent(void **state) {
  env_t *e = *state;
  for (int i = 0; i < 200; i++)
    assert_int_equal(rpc_call(e->a, e->b_addr, i % 2 ? T_SLOW : T_ECHO, "x", 1, 3000, on_done, e), 0);
  wait_done(e, 200);
  assert_int_equal(e->ok, 200);
  assert_int_equal(e->handled, 200);
}

static void test_stranger_refused(void **state) {
  env_t *e = *state;
  char addr[32];
  rpc_t *c = mk(e, "mallory", "wrong-secret", addr, 16, 0);
  int64_t before = metric_of(e->m, "gureum_rpc_rejected_total", "reason=\"auth\"");
  assert_int_equal(rpc_call(c, e->b_addr, T_ECHO, "evil", 4, 300, on_done, e), 0);
  wait_done(e, 1);
  assert_int_equal(e->errs[-RPC_ETIMEDOUT], 1);
  assert_int_equal(e->handled, 0); /* never executed */
  assert_int_equal(metric_of(e->m, "gureum_rpc_rejected_total", "reason=\"auth\""), before + 1);
  rpc_close(c);
}

static void test_deadline(void **state) {
  env_t *e = *state;
  uint64_t t0 = uv_hrtime();
  assert_int_equal(rpc_call(e->a, e->b_addr, T_NEVER, "x", 1, 200, on_done, e), 0);
  wait_done(e, 1);
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  assert_int_equal(e->errs[-RPC_ETIMEDOUT], 1);
  assert_true(ms >= 190 && ms < 1500);
  assert_non_null(e->held);
  rpc_reply(e->held, GUREUM__RPC_STATUS__RPC_STATUS_OK, NULL, "late", 4); /* discarded */
  /* The connection still works afterwards. */
  assert_int_equal(rpc_call(e->a, e->b_addr, T_ECHO, "again", 5, 2000, on_done, e), 0);
  wait_done(e, 2);
  assert_int_equal(e->ok, 1);
}

static void test_backpressure(void **state) {
  env_t *e = *state;
  char addr[32];
  rpc_t *c = mk(e, "c", "secret-one", addr, 4, 0);
  for (int i = 0; i < 4; i++)
    assert_int_equal(rpc_call(c, e->b_addr, T_SLOW, "x", 1, 2000, on_done, e), 0);
  assert_int_equal(rpc_call(c, e->b_addr, T_SLOW, "x", 1, 2000, on_done, e), RPC_EBUSY);
  wait_done(e, 4);
  assert_int_equal(e->ok, 4);
  assert_int_equal(rpc_call(c, e->b_addr, T_ECHO, "y", 1, 2000, on_done, e), 0);
  wait_done(e, 5);
  assert_int_equal(e->ok, 5);
  rpc_close(c);
}

static void test_no_handler(void **state) {
  env_t *e = *state;
  assert_int_equal(rpc_call(e->a, e->b_addr, 9999, NULL, 0, 2000, on_done, e), 0);
  wait_done(e, 1);
  assert_int_equal(e->errs[-RPC_EREMOTE], 1);
  assert_non_null(strstr(e->last_err, "no handler"));
}

static void test_bad_address(void **state) {
  env_t *e = *state;
  assert_int_equal(rpc_call(e->a, "not-an-ip:1", T_ECHO, "x", 1, 100, on_done, e), RPC_EADDR);
  assert_int_equal(rpc_call(e->a, "127.0.0.1", T_ECHO, "x", 1, 100, on_done, e), RPC_EADDR);
  assert_int_equal(rpc_call(e->a, "127.0.0.1:99999", T_ECHO, "x", 1, 100, on_done, e), RPC_EADDR);
  assert_int_equal(e->done, 0);
}

/* A peer that is down times out; once it listens, the same address works (redial). */
static void test_reconnect(void **state) {
  env_t *e = *state;
  char addr[32];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", base_port());
  assert_int_equal(rpc_call(e->a, addr, T_ECHO, "x", 1, 200, on_done, e), 0);
  wait_done(e, 1);
  assert_int_equal(e->errs[-RPC_ETIMEDOUT], 1);
  rpc_opts_t o = {.name = "late", .advertise = addr, .secret = "secret-one", .max_skew_ms = 300000};
  rpc_t *d = rpc_new(&e->loop, &o, e->m);
  rpc_handle(d, T_ECHO, on_echo, e);
  char err[128];
  assert_int_equal(rpc_listen(d, addr, err, sizeof err), 0);
  assert_int_equal(rpc_call(e->a, addr, T_ECHO, "up", 2, 3000, on_done, e), 0);
  wait_done(e, 2);
  assert_int_equal(e->ok, 1);
  assert_string_equal(e->last_payload, "up");
  rpc_close(d);
}

/* Closing with calls in flight completes each exactly once with RPC_ECLOSED. */
static void test_close_inflight(void **state) {
  env_t *e = *state;
  for (int i = 0; i < 5; i++)
    assert_int_equal(rpc_call(e->a, e->b_addr, T_NEVER, "x", 1, 5000, on_done, e), 0);
  uv_run(&e->loop, UV_RUN_NOWAIT);
  rpc_close(e->a);
  e->a = NULL;
  assert_int_equal(e->done, 5);
  assert_int_equal(e->errs[-RPC_ECLOSED], 5);
  /* Every request b got before a closed is still held: answer them, or b is never freed. */
  for (int i = 0; i < e->nheld; i++) rpc_reply(e->held_all[i], 0, NULL, NULL, 0);
}

/* ---- TLS ---- */

/* Certificates for the TLS tests, made once: the cluster's CA with two nodes on 127.0.0.1 and
 * one whose certificate names another address, and a second CA with a node of its own. */
static struct {
  char root[64];
  tls_creds_t *a, *b, *elsewhere, *stranger;
} certs;

static tls_creds_t *issue_creds(const char *dir, const char *name, const char *ip) {
  tls_issue_opts_t o = {.dir = dir, .name = name, .days = 2, .nips = 1};
  o.ips[0] = ip;
  tls_paths_t p;
  char err[512] = "";
  if (tls_issue(&o, &p, err, sizeof err) != TLS_OK) fail_msg("tls_issue: %s", err);
  tls_creds_t *c = tls_creds_load(p.ca, p.cert, p.key, err, sizeof err);
  assert_non_null(c);
  return c;
}

static int group_setup(void **state) {
  (void)state;
  char one[96], two[96], err[512] = "";
  tls_paths_t p;
  snprintf(certs.root, sizeof certs.root, "/tmp/gureum-rpc-test-XXXXXX");
  assert_non_null(mkdtemp(certs.root));
  snprintf(one, sizeof one, "%s/one", certs.root);
  snprintf(two, sizeof two, "%s/two", certs.root);
  assert_int_equal(tls_make_ca(one, 2, 0, &p, err, sizeof err), TLS_OK);
  assert_int_equal(tls_make_ca(two, 2, 0, &p, err, sizeof err), TLS_OK);
  certs.a = issue_creds(one, "a", "127.0.0.1");
  certs.b = issue_creds(one, "b", "127.0.0.1");
  certs.elsewhere = issue_creds(one, "elsewhere", "127.0.0.2");
  certs.stranger = issue_creds(two, "stranger", "127.0.0.1");
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  tls_creds_release(certs.a);
  tls_creds_release(certs.b);
  tls_creds_release(certs.elsewhere);
  tls_creds_release(certs.stranger);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", certs.root);
  return system(cmd) == 0 ? 0 : -1;
}

static int setup_tls(void **state) {
  env_t *e = calloc(1, sizeof *e);
  uv_loop_init(&e->loop);
  e->m = metrics_new();
  e->a = mk_with(e, "a", "secret-one", e->a_addr, 256, 1, certs.a);
  e->b = mk_with(e, "b", "secret-one", e->b_addr, 256, 1, certs.b);
  rpc_handle(e->a, T_ECHO, on_echo, e);
  rpc_handle(e->b, T_ECHO, on_echo, e);
  *state = e;
  return 0;
}

/* Run the loop until the metric exceeds `above` or 6 s passed (NNG's statistics are read every
 * 2 s); returns its value. */
static int64_t wait_metric(env_t *e, const char *labels, int64_t above) {
  uint64_t end = uv_hrtime() + 6000000000ull;
  int64_t v;
  while ((v = metric_of(e->m, "gureum_rpc_tls_refused_total", labels)) <= above &&
         uv_hrtime() < end)
    uv_run(&e->loop, UV_RUN_NOWAIT), usleep(1000);
  return v;
}

static void test_tls_round_trip(void **state) {
  env_t *e = *state;
  char url[96];
  rpc_url(e->a, e->b_addr, url, sizeof url);
  assert_string_equal(strstr(url, "tls+tcp://127.0.0.1:"), url);
  assert_true(rpc_tls(e->a));
  assert_int_equal(rpc_call(e->a, e->b_addr, T_ECHO, "over tls", 8, 3000, on_done, e), 0);
  wait_done(e, 1);
  assert_int_equal(e->ok, 1);
  assert_string_equal(e->last_payload, "over tls");
  assert_int_equal(rpc_call(e->b, e->a_addr, T_ECHO, "back", 4, 3000, on_done, e), 0);
  wait_done(e, 2);
  assert_int_equal(e->ok, 2);
  for (int i = 0; i < 50; i++)
    assert_int_equal(rpc_call(e->a, e->b_addr, T_ECHO, "x", 1, 3000, on_done, e), 0);
  wait_done(e, 52);
  assert_int_equal(e->ok, 52);
  assert_int_equal(metric_of(e->m, "gureum_rpc_tls_refused_total", "side=\"inbound\""), 0);
}

/* A certificate from another CA: the handshake fails, nothing is executed, and the refusal is
 * counted (with the right secret, so only TLS keeps it out). */
static void test_tls_other_ca_refused(void **state) {
  env_t *e = *state;
  char addr[32];
  rpc_t *c = e->extra = mk_with(e, "stranger", "secret-one", addr, 16, 1, certs.stranger);
  rpc_handle(c, T_ECHO, on_echo, e);
  assert_int_equal(rpc_call(c, e->b_addr, T_ECHO, "evil", 4, 500, on_done, e), 0);
  wait_done(e, 1);
  assert_int_equal(e->errs[-RPC_ETIMEDOUT], 1);
  assert_int_equal(e->handled, 0);
  assert_true(wait_metric(e, "side=\"inbound\"", 0) > 0);
  /* Nor do we accept its certificate when we dial it. */
  assert_int_equal(rpc_call(e->a, addr, T_ECHO, "hello?", 6, 500, on_done, e), 0);
  wait_done(e, 2);
  assert_int_equal(e->errs[-RPC_ETIMEDOUT], 2);
  assert_int_equal(e->handled, 0);
  assert_true(wait_metric(e, "side=\"outbound\"", 0) > 0);
}

/* A node without TLS cannot reach a TLS node, and the other way round. */
static void test_tls_plain_refused(void **state) {
  env_t *e = *state;
  char addr[32];
  rpc_t *c = e->extra = mk(e, "plain", "secret-one", addr, 16, 1);
  rpc_handle(c, T_ECHO, on_echo, e);
  int64_t in = metric_of(e->m, "gureum_rpc_tls_refused_total", "side=\"inbound\"");
  assert_int_equal(rpc_call(c, e->b_addr, T_ECHO, "plain", 5, 500, on_done, e), 0);
  assert_int_equal(rpc_call(e->a, addr, T_ECHO, "tls", 3, 500, on_done, e), 0);
  wait_done(e, 2);
  assert_int_equal(e->errs[-RPC_ETIMEDOUT], 2);
  assert_int_equal(e->handled, 0);
  assert_true(wait_metric(e, "side=\"inbound\"", in) > in);
}

/* A certificate from the right CA that names another address is refused by the dialler: a
 * stolen node certificate only works at its own address. */
static void test_tls_wrong_address_refused(void **state) {
  env_t *e = *state;
  char addr[32];
  rpc_t *c = e->extra = mk_with(e, "elsewhere", "secret-one", addr, 16, 1, certs.elsewhere);
  rpc_handle(c, T_ECHO, on_echo, e);
  assert_int_equal(rpc_call(e->a, addr, T_ECHO, "x", 1, 500, on_done, e), 0);
  wait_done(e, 1);
  assert_int_equal(e->errs[-RPC_ETIMEDOUT], 1);
  assert_int_equal(e->handled, 0);
  assert_true(wait_metric(e, "side=\"outbound\"", 0) > 0);
  /* It can still call us: a client's certificate must chain to the CA, not name its IP. */
  assert_int_equal(rpc_call(c, e->b_addr, T_ECHO, "y", 1, 3000, on_done, e), 0);
  wait_done(e, 2);
  assert_int_equal(e->ok, 1);
}

/* A TCP listener on 127.0.0.1 that never accepts: the kernel completes connections, nobody
 * ever speaks. Returns its fd; its address in addr. */
static int mute_listener(char *addr, size_t len) {
  int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sa = {.sin_family = AF_INET};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  for (int attempt = 0;; attempt++) {
    int port = base_port();
    sa.sin_port = htons((uint16_t)port);
    snprintf(addr, len, "127.0.0.1:%d", port);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0) break;
    assert_true(attempt < 20);
  }
  assert_int_equal(listen(fd, 64), 0);
  return fd;
}

/* Run the loop for `ms` milliseconds. */
static void run_for(env_t *e, int ms) {
  uint64_t end = uv_hrtime() + (uint64_t)ms * 1000000ull;
  while (uv_hrtime() < end) uv_run(&e->loop, UV_RUN_NOWAIT), usleep(1000);
}

/* NNG 1.5.2's TLS dialer can stop dialing for good (see rpc_peer_check_dialer); a dialer with
 * no connection whose counters stand still is replaced. Here a TCP listener that never speaks
 * TLS holds every handshake forever: the dialer is replaced again and again. One
 * connected to a live peer, or retrying a closed port, is left alone. */
static void test_tls_stalled_dialer_restarted(void **state) {
  env_t *e = *state;
  const char *restarts = "gureum_rpc_dialer_restarts_total";
  assert_int_equal(rpc_call(e->a, e->b_addr, T_ECHO, "live", 4, 3000, on_done, e), 0);
  char closed[32];
  snprintf(closed, sizeof closed, "127.0.0.1:%d", base_port());
  assert_int_equal(rpc_call(e->a, closed, T_ECHO, "nobody", 6, 500, on_done, e), 0);
  run_for(e, 6000); /* three statistics polls */
  assert_int_equal(e->ok, 1);
  assert_int_equal(e->errs[-RPC_ETIMEDOUT], 1);
  assert_int_equal(metric_of(e->m, restarts, NULL), 0);

  char mute[32];
  int fd = mute_listener(mute, sizeof mute);
  assert_int_equal(rpc_call(e->a, mute, T_ECHO, "hello?", 6, 500, on_done, e), 0);
  uint64_t end = uv_hrtime() + 12000000000ull;
  while (metric_of(e->m, restarts, NULL) < 1 && uv_hrtime() < end)
    uv_run(&e->loop, UV_RUN_NOWAIT), usleep(1000);
  assert_true(metric_of(e->m, restarts, NULL) >= 1);
  close(fd);
  /* The live peer still answers. */
  int before = e->done;
  assert_int_equal(rpc_call(e->a, e->b_addr, T_ECHO, "still", 5, 3000, on_done, e), 0);
  wait_done(e, before + 1);
  assert_int_equal(e->ok, 2);
}

/* A peer whose calls keep timing out while a connection seems to be there (NNG 1.5.2 over TLS
 * can keep a pipe whose connection is gone): after three timeouts in a row over 4 s its dialer
 * is replaced. Plain TCP to a listener that never speaks shows the same from the outside. */
static void test_timeouts_redial(void **state) {
  env_t *e = *state;
  char mute[32];
  int fd = mute_listener(mute, sizeof mute);
  const char *resets = "gureum_rpc_peer_resets_total";
  for (int i = 0; i < 8 && metric_of(e->m, resets, NULL) < 1; i++) {
    assert_int_equal(rpc_call(e->a, mute, T_ECHO, "anyone?", 7, 400, on_done, e), 0);
    run_for(e, 900);
  }
  assert_int_equal(metric_of(e->m, resets, NULL), 1);
  assert_true(e->errs[-RPC_ETIMEDOUT] >= 3);
  /* Not again within 10 s, however many more time out. */
  for (int i = 0; i < 4; i++) {
    assert_int_equal(rpc_call(e->a, mute, T_ECHO, "anyone?", 7, 400, on_done, e), 0);
    run_for(e, 500);
  }
  assert_int_equal(metric_of(e->m, resets, NULL), 1);
  close(fd);
  /* Calls that are answered never count. */
  int before = e->ok;
  for (int i = 0; i < 5; i++)
    assert_int_equal(rpc_call(e->a, e->b_addr, T_ECHO, "hi", 2, 3000, on_done, e), 0);
  wait_done(e, e->done + 5);
  assert_int_equal(e->ok, before + 5);
  assert_int_equal(metric_of(e->m, resets, NULL), 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(test_many_concurrent, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stranger_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_deadline, setup, teardown),
      cmocka_unit_test_setup_teardown(test_backpressure, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_handler, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_address, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reconnect, setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_inflight, setup, teardown),
      cmocka_unit_test_setup_teardown(test_timeouts_redial, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tls_round_trip, setup_tls, teardown),
      cmocka_unit_test_setup_teardown(test_tls_other_ca_refused, setup_tls, teardown),
      cmocka_unit_test_setup_teardown(test_tls_plain_refused, setup_tls, teardown),
      cmocka_unit_test_setup_teardown(test_tls_wrong_address_refused, setup_tls, teardown),
      cmocka_unit_test_setup_teardown(test_tls_stalled_dialer_restarted, setup_tls, teardown),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
