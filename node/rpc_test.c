/* rpc_test.c - unit tests of the cluster RPC with real NNG sockets on loopback: round trips,
 * concurrency, deadlines, back-pressure, refusal of strangers, reconnection and shutdown. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
  char a_addr[32], b_addr[32];
  int handled;
  rpc_req_t *held;
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

static rpc_t *mk(env_t *e, const char *name, const char *secret, char *addr, int inflight,
                 int listen) {
  for (int attempt = 0;; attempt++) {
    snprintf(addr, 32, "127.0.0.1:%d", base_port());
    rpc_opts_t o = {.name = name, .advertise = addr, .secret = secret, .server_contexts = 8,
                    .max_inflight = inflight, .max_message = 1 << 20, .max_skew_ms = 300000};
    rpc_t *r = rpc_new(&e->loop, &o, e->m);
    if (!listen) return r;
    char url[64], err[128];
    snprintf(url, sizeof url, "tcp://%s", addr);
    int rv = rpc_listen(r, url, err, sizeof err);
    if (rv == 0) return r;
    rpc_close(r); /* port taken by another process: try the next one */
    assert_true(attempt < 20);
  }
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
  char url[64], err[128];
  snprintf(url, sizeof url, "tcp://%s", addr);
  assert_int_equal(rpc_listen(d, url, err, sizeof err), 0);
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
  if (e->held) rpc_reply(e->held, 0, NULL, NULL, 0);
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
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
