/* config_test.c - unit tests for config.c: defaults, the YAML loader and its error messages,
 * GUREUM_* variables, flags and the cross-key checks in config_finish. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

/* Each test writes its YAML here; removed again by the teardown. */
static char tmp_path[64];

static int teardown(void **state) {
  (void)state;
  if (tmp_path[0]) unlink(tmp_path);
  tmp_path[0] = '\0';
  return 0;
}

static const char *write_yaml(const char *text) {
  teardown(NULL); /* one file at a time */
  snprintf(tmp_path, sizeof tmp_path, "/tmp/gureum-config-test-XXXXXX");
  int fd = mkstemp(tmp_path);
  assert_true(fd >= 0);
  size_t n = strlen(text);
  assert_int_equal(write(fd, text, n), (ssize_t)n);
  close(fd);
  return tmp_path;
}

/* Loads `text` over defaults and expects failure; the message must hold every `want`. */
static void expect_file_error(const char *text, const char *want1, const char *want2) {
  config_t c;
  char err[512] = "", prefix[128];
  config_defaults(&c);
  const char *path = write_yaml(text);
  assert_int_equal(config_load_file(&c, path, err, sizeof err), -1);
  snprintf(prefix, sizeof prefix, "%s:", path);
  if (!strstr(err, prefix) || !strstr(err, want1) || (want2 && !strstr(err, want2)))
    fail_msg("error '%s' lacks '%s' / '%s'", err, want1, want2 ? want2 : "");
}

static void load_ok(config_t *c, const char *text) {
  char err[512] = "";
  const char *path = write_yaml(text);
  if (config_load_file(c, path, err, sizeof err) != 0) fail_msg("unexpected error: %s", err);
}

static void test_defaults(void **state) {
  (void)state;
  config_t c;
  char err[256];
  config_defaults(&c);
  assert_true(c.name[0] != '\0');
  assert_true(strlen(c.name) <= 63);
  assert_string_equal(c.bind, "127.0.0.1");
  assert_string_equal(c.advertise, "");
  assert_string_equal(c.data_dir, "./gureum-data");
  assert_string_equal(c.zone, "default");
  assert_int_equal(c.nseeds, 0);
  assert_int_equal(c.nroles, CONFIG_NROLES);
  for (int i = 0; config_role_names[i]; i++) {
    assert_string_equal(c.roles[i], config_role_names[i]);
    assert_true(config_has_role(&c, config_role_names[i]));
  }
  assert_false(config_has_role(&c, "gateway"));
  assert_string_equal(c.secret, "gureum-insecure-dev-secret");
  assert_int_equal(c.admin_port, 7070);
  assert_int_equal(c.rpc_port, 7071);
  assert_int_equal(c.raft_port, 7072);
  assert_string_equal(c.log_level, "info");
  assert_string_equal(c.log_file, "");
  assert_int_equal(c.rpc_timeout_ms, 2000);
  assert_int_equal(c.rpc_max_inflight, 256);
  assert_int_equal(c.rpc_server_contexts, 64);
  assert_int_equal(c.rpc_max_message_kb, 16384);
  assert_int_equal(c.rpc_max_clock_skew_s, 300);
  assert_int_equal(c.store_sync_writes, 1);
  assert_int_equal(c.store_cache_mb, 64);
  assert_int_equal(c.shutdown_timeout_s, 10);
  assert_int_equal(c.gossip_probe_interval_ms, 500);
  assert_int_equal(c.gossip_probe_timeout_ms, 250);
  assert_int_equal(c.gossip_indirect_checks, 3);
  assert_int_equal(c.gossip_suspicion_mult, 5);
  assert_int_equal(c.gossip_suspicion_max_mult, 6);
  assert_int_equal(c.gossip_retransmit_mult, 4);
  assert_int_equal(c.gossip_interval_ms, 100);
  assert_int_equal(c.gossip_nodes, 3);
  assert_int_equal(c.gossip_pushpull_interval_ms, 15000);
  assert_int_equal(c.gossip_awareness_max, 8);
  assert_int_equal(c.gossip_reap_s, 3600);
  assert_int_equal(c.gossip_dead_gossip_s, 30);
  assert_int_equal(config_finish(&c, err, sizeof err), 0);
  assert_string_equal(c.advertise, "127.0.0.1");
}

static void test_print_defaults(void **state) {
  (void)state;
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  config_print_defaults(f);
  fclose(f);
  assert_non_null(strstr(buf, "rpc.timeout_ms = 2000 "));
  assert_non_null(strstr(buf, "roles = storage,edge,balancer,dns,pipeline "));
  assert_non_null(strstr(buf, "advertise = \"\" "));
  assert_non_null(strstr(buf, "gossip.reap_s = 3600 "));
  assert_non_null(strstr(buf, "    # how long dead or left members are kept"));
  int lines = 0;
  for (char *p = buf; *p; p++) lines += *p == '\n';
  assert_int_equal(lines, 57); /* one per field of config_t, list counts excluded */
  free(buf);
}

static void test_full_file(void **state) {
  (void)state;
  config_t c;
  char err[256];
  config_defaults(&c);
  load_ok(&c,
          "# a full node\n"
          "name: node-1.eu_west\n"
          "bind: 10.0.0.1\n"
          "advertise: 192.168.1.10\n"
          "data_dir: /var/lib/gureum\n"
          "zone: eu-west-1a\n"
          "seeds:\n"
          "  - 10.0.0.2:7071\n"
          "  - 10.0.0.3:7071\n"
          "roles: storage, dns\n"
          "cluster:\n"
          "  secret: \"correct horse battery\"\n"
          "ports:\n"
          "  admin: 8080\n"
          "  rpc: 8081\n"
          "  raft: 8082\n"
          "log:\n"
          "  level: debug\n"
          "  file: /var/log/gureum.log\n"
          "rpc:\n"
          "  timeout_ms: 5000\n"
          "  max_inflight: 10\n"
          "  server_contexts: 4\n"
          "  max_message_kb: 1024\n"
          "  max_clock_skew_s: 60\n"
          "store:\n"
          "  sync_writes: off\n"
          "  cache_mb: 0\n"
          "shutdown_timeout_s: 30\n"
          "gossip:\n"
          "  probe_interval_ms: 1000\n"
          "  probe_timeout_ms: 400\n"
          "  indirect_checks: 0\n"
          "  suspicion_mult: 7\n"
          "  suspicion_max_mult: 7\n"
          "  retransmit_mult: 3\n"
          "  interval_ms: 200\n"
          "  nodes: 4\n"
          "  pushpull_interval_ms: 30000\n"
          "  awareness_max: 9\n"
          "  reap_s: 7200\n"
          "  dead_gossip_s: 60\n");
  assert_string_equal(c.name, "node-1.eu_west");
  assert_string_equal(c.bind, "10.0.0.1");
  assert_string_equal(c.advertise, "192.168.1.10");
  assert_string_equal(c.data_dir, "/var/lib/gureum");
  assert_string_equal(c.zone, "eu-west-1a");
  assert_int_equal(c.nseeds, 2);
  assert_string_equal(c.seeds[0], "10.0.0.2:7071");
  assert_string_equal(c.seeds[1], "10.0.0.3:7071");
  assert_int_equal(c.nroles, 2);
  assert_true(config_has_role(&c, "storage"));
  assert_true(config_has_role(&c, "dns"));
  assert_false(config_has_role(&c, "edge"));
  assert_string_equal(c.secret, "correct horse battery");
  assert_int_equal(c.admin_port, 8080);
  assert_int_equal(c.rpc_port, 8081);
  assert_int_equal(c.raft_port, 8082);
  assert_string_equal(c.log_level, "debug");
  assert_string_equal(c.log_file, "/var/log/gureum.log");
  assert_int_equal(c.rpc_timeout_ms, 5000);
  assert_int_equal(c.rpc_max_inflight, 10);
  assert_int_equal(c.rpc_server_contexts, 4);
  assert_int_equal(c.rpc_max_message_kb, 1024);
  assert_int_equal(c.rpc_max_clock_skew_s, 60);
  assert_int_equal(c.store_sync_writes, 0);
  assert_int_equal(c.store_cache_mb, 0);
  assert_int_equal(c.shutdown_timeout_s, 30);
  assert_int_equal(c.gossip_probe_interval_ms, 1000);
  assert_int_equal(c.gossip_probe_timeout_ms, 400);
  assert_int_equal(c.gossip_indirect_checks, 0);
  assert_int_equal(c.gossip_suspicion_mult, 7);
  assert_int_equal(c.gossip_suspicion_max_mult, 7);
  assert_int_equal(c.gossip_retransmit_mult, 3);
  assert_int_equal(c.gossip_interval_ms, 200);
  assert_int_equal(c.gossip_nodes, 4);
  assert_int_equal(c.gossip_pushpull_interval_ms, 30000);
  assert_int_equal(c.gossip_awareness_max, 9);
  assert_int_equal(c.gossip_reap_s, 7200);
  assert_int_equal(c.gossip_dead_gossip_s, 60);
  assert_int_equal(config_finish(&c, err, sizeof err), 0);
  assert_string_equal(c.advertise, "192.168.1.10");
}

/* The other form of each list, flow sequences, dotted keys at the top level, bool spellings. */
static void test_list_forms(void **state) {
  (void)state;
  config_t c;
  config_defaults(&c);
  load_ok(&c,
          "seeds: 10.0.0.2:7071, 10.0.0.3:7072\n"
          "roles: [edge, balancer]\n"
          "rpc.timeout_ms: 3000\n"
          "store: {sync_writes: YES}\n");
  assert_int_equal(c.nseeds, 2);
  assert_string_equal(c.seeds[1], "10.0.0.3:7072");
  assert_int_equal(c.nroles, 2);
  assert_string_equal(c.roles[0], "edge");
  assert_string_equal(c.roles[1], "balancer");
  assert_int_equal(c.rpc_timeout_ms, 3000);
  assert_int_equal(c.store_sync_writes, 1);

  load_ok(&c, "seeds: []\nroles:\n  - pipeline\n");
  assert_int_equal(c.nseeds, 0);
  assert_int_equal(c.nroles, 1);
  assert_string_equal(c.roles[0], "pipeline");
}

static void test_unknown_key_line(void **state) {
  (void)state;
  expect_file_error("name: n1\n"
                    "rpc:\n"
                    "  timeout_ms: 100\n"
                    "  timout_ms: 2000\n",
                    ":4: key 'rpc.timout_ms': unknown key", "did you mean 'rpc.timeout_ms'?");
  expect_file_error("\n\nfrobnicate: 1\n", ":3: key 'frobnicate': unknown key", NULL);
}

static void test_wrong_type(void **state) {
  (void)state;
  expect_file_error("rpc:\n  timeout_ms: abc\n",
                    ":2: key 'rpc.timeout_ms': expected an integer, got 'abc'", NULL);
  expect_file_error("ports:\n  admin:\n    x: 1\n",
                    ":3: key 'ports.admin': expected an integer, got a mapping", NULL);
  expect_file_error("ports:\n  admin: \"7070\"\n",
                    ":2: key 'ports.admin': expected an integer, got the quoted string '7070'",
                    NULL);
  expect_file_error("store:\n  sync_writes: maybe\n",
                    ":2: key 'store.sync_writes': expected a boolean", "got 'maybe'");
  expect_file_error("name: [a, b]\n", ":1: key 'name': expected a string, got a sequence", NULL);
  expect_file_error("rpc: 5\n", ":1: key 'rpc': expected a mapping of rpc.* keys, got a scalar",
                    NULL);
  expect_file_error("rpc:\n  timeout_ms:\n", ":2: key 'rpc.timeout_ms': expected an integer, "
                                             "got an empty value", NULL);
}

static void test_out_of_range(void **state) {
  (void)state;
  expect_file_error("ports:\n  admin: 70000\n",
                    ":2: key 'ports.admin': value 70000 out of range 1..65535", NULL);
  expect_file_error("rpc:\n  timeout_ms: 99999999999999999999999\n",
                    ":2: key 'rpc.timeout_ms': value 99999999999999999999999 out of range "
                    "10..600000",
                    NULL);
  expect_file_error("store:\n  cache_mb: -1\n",
                    ":2: key 'store.cache_mb': value -1 out of range 0..65536", NULL);
}

static void test_bad_role(void **state) {
  (void)state;
  expect_file_error("roles:\n  - storage\n  - gateway\n",
                    ":3: key 'roles': unknown role 'gateway'", NULL);
  expect_file_error("roles: storage,bogus\n", ":1: key 'roles': unknown role 'bogus'", NULL);
  expect_file_error("roles: []\n", ":1: key 'roles': needs at least 1 entry", NULL);
}

static void test_duplicate_role(void **state) {
  (void)state;
  expect_file_error("roles: [dns, edge, dns]\n", ":1: key 'roles': duplicate role 'dns'", NULL);
  expect_file_error("\nroles: edge, edge\n", ":2: key 'roles': duplicate role 'edge'", NULL);
}

static void test_bad_seed(void **state) {
  (void)state;
  expect_file_error("seeds:\n  - 10.0.0.2:7071\n  - localhost:7071\n",
                    ":3: key 'seeds': invalid seed 'localhost:7071': expected IPv4:PORT", NULL);
  expect_file_error("seeds: 10.0.0.2\n", ":1: key 'seeds': invalid seed '10.0.0.2'", NULL);
  expect_file_error("seeds: 10.0.0.2:0\n", "invalid seed '10.0.0.2:0'", NULL);
  expect_file_error("seeds: 10.0.0.2:99999\n", "invalid seed '10.0.0.2:99999'", NULL);
}

static void test_bad_strings(void **state) {
  (void)state;
  expect_file_error("name: \"my node\"\n", ":1: key 'name': invalid character ' '", NULL);
  expect_file_error("bind: localhost\n",
                    ":1: key 'bind': expected a numeric IPv4 address, got 'localhost'", NULL);
  expect_file_error("log:\n  level: verbose\n", ":2: key 'log.level': expected one of", NULL);
  /* The secret is never echoed back, only its length is judged. */
  config_t c;
  char err[256];
  config_defaults(&c);
  const char *path = write_yaml("cluster:\n  secret: hunter2\n");
  assert_int_equal(config_load_file(&c, path, err, sizeof err), -1);
  assert_non_null(strstr(err, ":2: key 'cluster.secret': too short (at least 8 characters)"));
  assert_null(strstr(err, "hunter2"));
}

static void test_yaml_syntax_error(void **state) {
  (void)state;
  expect_file_error("name: n1\nrpc:\n  timeout_ms: 100\n bad: [1, 2\n", ":4: invalid YAML: ",
                    NULL);
  expect_file_error("name: n1\nroles: [a, b\n", "invalid YAML: ", NULL);
  expect_file_error("- a\n- b\n", ":1: the top level must be a mapping of keys, got a sequence",
                    NULL);
  expect_file_error("name: n1\nname: n2\n", ":2: key 'name': given more than once", NULL);
  expect_file_error("name: n1\n---\nname: n2\n", ":3: more than one YAML document", NULL);
}

/* A failed load leaves the configuration exactly as it was. */
static void test_error_changes_nothing(void **state) {
  (void)state;
  config_t c, before;
  char err[256];
  config_defaults(&c);
  before = c;
  const char *path = write_yaml("zone: z9\nroles: [dns]\nports:\n  admin: 0\n");
  assert_int_equal(config_load_file(&c, path, err, sizeof err), -1);
  assert_memory_equal(&c, &before, sizeof c);
  assert_int_equal(config_load_file(&c, "/nonexistent/gureum.yaml", err, sizeof err), -1);
  assert_non_null(strstr(err, "/nonexistent/gureum.yaml: cannot open: "));
}

static void test_empty_file(void **state) {
  (void)state;
  config_t c, def;
  config_defaults(&def);
  const char *texts[] = {"", "# only a comment\n\n   # another\n", "---\n", "rpc:\n"};
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    c = def;
    load_ok(&c, texts[i]);
    assert_memory_equal(&c, &def, sizeof c);
  }
}

static void test_env(void **state) {
  (void)state;
  config_t c;
  char err[256];
  config_defaults(&c);
  char *env[] = {"PATH=/usr/bin",
                 "GUREUM_RPC_TIMEOUT_MS=4500",
                 "GUREUM_DATA_DIR=/srv/g",
                 "GUREUM_SEEDS=10.1.0.1:7071,10.1.0.2:7071",
                 "GUREUM_STORE_SYNC_WRITES=no",
                 "GUREUM_NODE=http://127.0.0.1:7070", /* the CLI's: not a key, ignored */
                 "GUREUM_SECRET=from-the-alias",
                 "GUREUM_LOG_FILE=",
                 "gureum_zone=lowercase-is-not-ours",
                 NULL};
  assert_int_equal(config_load_env(&c, env, err, sizeof err), 0);
  assert_int_equal(c.rpc_timeout_ms, 4500);
  assert_string_equal(c.data_dir, "/srv/g");
  assert_int_equal(c.nseeds, 2);
  assert_string_equal(c.seeds[1], "10.1.0.2:7071");
  assert_int_equal(c.store_sync_writes, 0);
  assert_string_equal(c.secret, "from-the-alias");
  assert_string_equal(c.zone, "default");

  /* The canonical name wins over the alias, whatever the order. */
  char *both[] = {"GUREUM_CLUSTER_SECRET=canonical-secret", "GUREUM_SECRET=alias-secret", NULL};
  assert_int_equal(config_load_env(&c, both, err, sizeof err), 0);
  assert_string_equal(c.secret, "canonical-secret");

  char *bad[] = {"GUREUM_ZONE=z2", "GUREUM_RPC_TIMEOUT_MS=x", NULL};
  config_t before = c;
  assert_int_equal(config_load_env(&c, bad, err, sizeof err), -1);
  assert_string_equal(err, "GUREUM_RPC_TIMEOUT_MS: expected an integer, got 'x'");
  assert_memory_equal(&c, &before, sizeof c);

  char *bad_role[] = {"GUREUM_ROLES=storage,storage", NULL};
  assert_int_equal(config_load_env(&c, bad_role, err, sizeof err), -1);
  assert_string_equal(err, "GUREUM_ROLES: duplicate role 'storage'");
}

static void test_set_flag(void **state) {
  (void)state;
  config_t c;
  char err[256];
  config_defaults(&c);
  assert_int_equal(config_set(&c, "ports.rpc", "9001", "--ports.rpc", err, sizeof err), 0);
  assert_int_equal(c.rpc_port, 9001);
  assert_int_equal(config_set(&c, "roles", "edge", "--roles", err, sizeof err), 0);
  assert_int_equal(c.nroles, 1);
  assert_true(config_has_role(&c, "edge"));

  assert_int_equal(config_set(&c, "seeds", "10.0.0.1:7071,nope", "--seeds", err, sizeof err), -1);
  assert_string_equal(err, "--seeds: invalid seed 'nope': expected IPv4:PORT, e.g. 10.0.0.2:7071");
  assert_int_equal(c.nseeds, 0);

  assert_int_equal(config_set(&c, "ports.raft", "0", "--ports.raft", err, sizeof err), -1);
  assert_string_equal(err, "--ports.raft: value 0 out of range 1..65535");
  assert_int_equal(c.raft_port, 7072);

  assert_int_equal(config_set(&c, "rpc.timeoutms", "1", "--set", err, sizeof err), -1);
  assert_string_equal(err, "--set: unknown key 'rpc.timeoutms' (did you mean 'rpc.timeout_ms'?)");

  assert_int_equal(config_set(&c, "gossip.nodes", "many", NULL, err, sizeof err), -1);
  assert_string_equal(err, "key 'gossip.nodes': expected an integer, got 'many'");
}

static void test_finish(void **state) {
  (void)state;
  config_t c;
  char err[256];
  config_defaults(&c);
  assert_int_equal(config_set(&c, "bind", "10.9.8.7", NULL, err, sizeof err), 0);
  assert_int_equal(config_finish(&c, err, sizeof err), 0);
  assert_string_equal(c.advertise, "10.9.8.7");

  config_defaults(&c);
  snprintf(c.advertise, sizeof c.advertise, "example.com"); /* set behind config_set's back */
  assert_int_equal(config_finish(&c, err, sizeof err), -1);
  assert_string_equal(err, "key 'advertise': expected a numeric IPv4 address, got 'example.com'");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_defaults, teardown),
      cmocka_unit_test_teardown(test_print_defaults, teardown),
      cmocka_unit_test_teardown(test_full_file, teardown),
      cmocka_unit_test_teardown(test_list_forms, teardown),
      cmocka_unit_test_teardown(test_unknown_key_line, teardown),
      cmocka_unit_test_teardown(test_wrong_type, teardown),
      cmocka_unit_test_teardown(test_out_of_range, teardown),
      cmocka_unit_test_teardown(test_bad_role, teardown),
      cmocka_unit_test_teardown(test_duplicate_role, teardown),
      cmocka_unit_test_teardown(test_bad_seed, teardown),
      cmocka_unit_test_teardown(test_bad_strings, teardown),
      cmocka_unit_test_teardown(test_yaml_syntax_error, teardown),
      cmocka_unit_test_teardown(test_error_changes_nothing, teardown),
      cmocka_unit_test_teardown(test_empty_file, teardown),
      cmocka_unit_test_teardown(test_env, teardown),
      cmocka_unit_test_teardown(test_set_flag, teardown),
      cmocka_unit_test_teardown(test_finish, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
