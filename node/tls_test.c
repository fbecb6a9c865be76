/* tls_test.c - unit tests of tls.c: CA and node certificate generation, SANs and key usage,
 * verification against the right and a wrong CA, file checks, the CLI's exit codes, the NNG
 * configs, and the tls.* config keys' cross-checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "tls.h"

typedef struct env_s {
  char root[64];     /* mkdtemp */
  char ca1[128];     /* one cluster's CA dir, with node "n1" (10.0.0.1) */
  char ca2[128];     /* another cluster's CA dir, with node "n1" too */
  tls_paths_t n1, other;
} env_t;

static void rm_tree(const char *dir) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

static void issue(const char *dir, const char *name, const char *ip, tls_paths_t *out) {
  tls_issue_opts_t o = {.dir = dir, .name = name, .days = 30, .nips = 1};
  o.ips[0] = ip;
  o.dns[o.ndns++] = "node.example";
  char err[512] = "";
  if (tls_issue(&o, out, err, sizeof err) != TLS_OK) fail_msg("tls_issue: %s", err);
}

static int setup(void **state) {
  env_t *e = calloc(1, sizeof *e);
  snprintf(e->root, sizeof e->root, "/tmp/gureum-tls-test-XXXXXX");
  assert_non_null(mkdtemp(e->root));
  snprintf(e->ca1, sizeof e->ca1, "%s/one", e->root);
  snprintf(e->ca2, sizeof e->ca2, "%s/two", e->root);
  tls_paths_t p;
  char err[512] = "";
  assert_int_equal(tls_make_ca(e->ca1, 365, 0, &p, err, sizeof err), TLS_OK);
  assert_int_equal(tls_make_ca(e->ca2, 365, 0, &p, err, sizeof err), TLS_OK);
  issue(e->ca1, "n1", "10.0.0.1", &e->n1);
  issue(e->ca2, "n1", "10.0.0.1", &e->other);
  *state = e;
  return 0;
}

static int teardown(void **state) {
  env_t *e = *state;
  rm_tree(e->root);
  free(e);
  return 0;
}

static X509 *load_cert(const char *path) {
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
  fclose(f);
  assert_non_null(x);
  return x;
}

static int mode_of(const char *path) {
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  return (int)(st.st_mode & 0777);
}

static void test_ca_files(void **state) {
  env_t *e = *state;
  char crt[256], key[256];
  snprintf(crt, sizeof crt, "%s/ca.crt", e->ca1);
  snprintf(key, sizeof key, "%s/ca.key", e->ca1);
  assert_int_equal(mode_of(key), 0600);
  assert_int_equal(mode_of(e->ca1), 0700);
  X509 *ca = load_cert(crt);
  assert_int_equal(X509_check_ca(ca), 1);
  /* Self-signed, and named apart from any other cluster's CA. */
  assert_int_equal(X509_NAME_cmp(X509_get_subject_name(ca), X509_get_issuer_name(ca)), 0);
  X509 *other = load_cert(e->other.ca);
  assert_int_not_equal(X509_NAME_cmp(X509_get_subject_name(ca), X509_get_subject_name(other)), 0);
  X509_free(other);
  X509_free(ca);
}

/* The node certificate: SANs (IP, and the IP again as a DNS name for mbedtls), both purposes,
 * a 0600 key, and a chain to its own CA only. */
static void test_node_cert(void **state) {
  env_t *e = *state;
  assert_int_equal(mode_of(e->n1.key), 0600);
  X509 *x = load_cert(e->n1.cert);
  assert_int_equal(X509_check_ip_asc(x, "10.0.0.1", 0), 1);
  assert_int_equal(X509_check_ip_asc(x, "10.0.0.2", 0), 0);
  assert_int_equal(X509_check_host(x, "node.example", 0, 0, NULL), 1);
  GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
  int dns_ip = 0;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
    GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
    if (g->type == GEN_DNS &&
        strcmp((const char *)ASN1_STRING_get0_data(g->d.dNSName), "10.0.0.1") == 0)
      dns_ip = 1;
  }
  GENERAL_NAMES_free(names);
  assert_true(dns_ip);
  assert_int_equal(X509_check_purpose(x, X509_PURPOSE_SSL_SERVER, 0), 1);
  assert_int_equal(X509_check_purpose(x, X509_PURPOSE_SSL_CLIENT, 0), 1);
  assert_int_equal(X509_check_ca(x), 0);
  X509_free(x);

  char why[512] = "";
  if (tls_check_files(e->n1.ca, e->n1.cert, e->n1.key, "10.0.0.1", why, sizeof why) != 0)
    fail_msg("own CA: %s", why);
  assert_int_equal(tls_check_files(e->n1.ca, e->n1.cert, e->n1.key, NULL, why, sizeof why), 0);
  assert_int_equal(tls_check_files(e->n1.ca, e->n1.cert, e->n1.key, "0.0.0.0", why, sizeof why), 0);
}

static void test_wrong_ca_does_not_verify(void **state) {
  env_t *e = *state;
  char why[512] = "";
  assert_int_equal(tls_check_files(e->other.ca, e->n1.cert, e->n1.key, NULL, why, sizeof why),
                   TLS_FILE_CERT);
  assert_non_null(strstr(why, "does not verify against tls.ca"));
  assert_non_null(strstr(why, e->n1.cert));
}

static void test_check_faults(void **state) {
  env_t *e = *state;
  char why[512] = "";
  /* A certificate that does not name the node's address: peers would refuse it. */
  assert_int_equal(tls_check_files(e->n1.ca, e->n1.cert, e->n1.key, "10.0.0.9", why, sizeof why),
                   TLS_FILE_CERT);
  assert_non_null(strstr(why, "--ip 10.0.0.9"));
  /* The other cluster's key does not belong to our certificate. */
  assert_int_equal(tls_check_files(e->n1.ca, e->n1.cert, e->other.key, NULL, why, sizeof why),
                   TLS_FILE_KEY);
  assert_non_null(strstr(why, "does not belong"));
  /* A node certificate is not a CA. */
  assert_int_equal(tls_check_files(e->n1.cert, e->n1.cert, e->n1.key, NULL, why, sizeof why),
                   TLS_FILE_CA);
  /* Missing and unparsable files name themselves. */
  assert_int_equal(tls_check_files("/nonexistent/ca.crt", e->n1.cert, e->n1.key, NULL, why,
                                   sizeof why),
                   TLS_FILE_CA);
  assert_non_null(strstr(why, "/nonexistent/ca.crt"));
  assert_int_equal(tls_check_files(e->n1.ca, e->n1.key, e->n1.key, NULL, why, sizeof why),
                   TLS_FILE_CERT);
  assert_int_equal(tls_check_files(e->n1.ca, e->n1.cert, e->n1.cert, NULL, why, sizeof why),
                   TLS_FILE_KEY);
}

static void test_bad_arguments(void **state) {
  env_t *e = *state;
  char err[512];
  tls_paths_t p;
  tls_issue_opts_t o = {.dir = e->ca1, .name = "n2", .days = 30, .nips = 1};
  o.ips[0] = "10.0.0.2";
  struct {
    const char *field, *value, *want;
  } cases[] = {
      {"name", "bad/name", "NAME"}, {"name", "ca", "taken"},   {"name", "", "NAME"},
      {"ip", "10.0.0", "--ip"},     {"ip", "::1", "--ip"},     {"dns", "bad_host", "--dns"},
      {"dns", "a..b", "--dns"},     {"days", "0", "--days"},   {"days", "40000", "--days"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    tls_issue_opts_t b = o;
    if (!strcmp(cases[i].field, "name")) b.name = cases[i].value;
    if (!strcmp(cases[i].field, "ip")) b.ips[0] = cases[i].value;
    if (!strcmp(cases[i].field, "dns")) b.dns[b.ndns++] = cases[i].value;
    if (!strcmp(cases[i].field, "days")) b.days = atoi(cases[i].value);
    err[0] = 0;
    assert_int_equal(tls_issue(&b, &p, err, sizeof err), TLS_EINVAL);
    if (!strstr(err, cases[i].want)) fail_msg("case %zu: '%s' lacks '%s'", i, err, cases[i].want);
  }
  tls_issue_opts_t none = o;
  none.nips = 0;
  assert_int_equal(tls_issue(&none, &p, err, sizeof err), TLS_EINVAL);
  assert_non_null(strstr(err, "at least one --ip"));
  assert_int_equal(tls_make_ca(e->ca1, 0, 1, &p, err, sizeof err), TLS_EINVAL);
  /* No CA where it is looked for: the message says how to make one. */
  char nodir[160];
  snprintf(nodir, sizeof nodir, "%s/none", e->root);
  tls_issue_opts_t noca = o;
  noca.dir = nodir;
  assert_int_equal(tls_issue(&noca, &p, err, sizeof err), TLS_ENOCA);
  assert_non_null(strstr(err, "gureum tls init"));
  /* Nothing was written by any of these. */
  char path[256];
  snprintf(path, sizeof path, "%s/n2.crt", e->ca1);
  assert_int_equal(access(path, F_OK), -1);
}

/* Existing files are kept unless forced; a replaced CA no longer vouches for old certificates. */
static void test_overwrite(void **state) {
  env_t *e = *state;
  char err[512], why[512];
  tls_paths_t p;
  assert_int_equal(tls_make_ca(e->ca1, 365, 0, &p, err, sizeof err), TLS_EEXIST);
  assert_non_null(strstr(err, "--force"));
  tls_issue_opts_t o = {.dir = e->ca1, .name = "n1", .days = 30, .nips = 1};
  o.ips[0] = "10.0.0.1";
  assert_int_equal(tls_issue(&o, &p, err, sizeof err), TLS_EEXIST);
  assert_int_equal(tls_check_files(e->n1.ca, e->n1.cert, e->n1.key, NULL, why, sizeof why), 0);
  assert_int_equal(tls_make_ca(e->ca1, 365, 1, &p, err, sizeof err), TLS_OK);
  assert_int_equal(mode_of(p.key), 0600);
  assert_int_equal(tls_check_files(e->n1.ca, e->n1.cert, e->n1.key, NULL, why, sizeof why),
                   TLS_FILE_CERT);
  o.force = 1;
  assert_int_equal(tls_issue(&o, &p, err, sizeof err), TLS_OK);
  assert_int_equal(tls_check_files(p.ca, p.cert, p.key, "10.0.0.1", why, sizeof why), 0);
}

static int run_cli(int argc, const char **argv) {
  /* The CLI prints; keep the test output readable. */
  fflush(stdout);
  fflush(stderr);
  int out = dup(1), err = dup(2);
  FILE *null = fopen("/dev/null", "w");
  dup2(fileno(null), 1);
  dup2(fileno(null), 2);
  int rc = tls_cli(argc, (char **)argv);
  fflush(stdout);
  fflush(stderr);
  dup2(out, 1);
  dup2(err, 2);
  close(out);
  close(err);
  fclose(null);
  return rc;
}

static void test_cli_exit_codes(void **state) {
  env_t *e = *state;
  char dir[160], crt[200];
  snprintf(dir, sizeof dir, "%s/cli", e->root);
  snprintf(crt, sizeof crt, "%s/web-1.crt", dir);
  const char *init[] = {"tls", "init", "--dir", dir, "--json"};
  assert_int_equal(run_cli(5, init), CLI_OK);
  assert_int_equal(run_cli(5, init), CLI_FAILED); /* exists: --force or keep it */
  const char *force[] = {"tls", "init", "--dir", dir, "--force"};
  assert_int_equal(run_cli(5, force), CLI_OK);
  const char *issue_ok[] = {"tls", "issue", "web-1", "--dir", dir, "--ip", "10.1.0.1",
                            "--ip=10.1.0.2", "--dns", "web-1.internal", "--days", "7"};
  assert_int_equal(run_cli(12, issue_ok), CLI_OK);
  X509 *x = load_cert(crt);
  assert_int_equal(X509_check_ip_asc(x, "10.1.0.2", 0), 1);
  X509_free(x);
  const char *bad[][6] = {
      {"tls", "issue", "web-2", "--dir", dir, "--ip"},          /* flag without value */
      {"tls", "issue", "web-2", "--dir", dir, "--bogus"},       /* unknown flag */
      {"tls", "issue", "web-2", "--dir", dir, "--ip=1.2.3"},    /* bad address */
      {"tls", "issue", "web-2", "--dir", dir, "--days=x"},      /* bad days */
      {"tls", "frobnicate", "--dir", dir, NULL, NULL},          /* unknown subcommand */
      {"tls", "issue", "--dir", dir, "--ip", "10.1.0.3"},       /* no NAME */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int argc = 0;
    while (argc < 6 && bad[i][argc]) argc++;
    if (run_cli(argc, bad[i]) != CLI_USAGE) fail_msg("bad case %zu did not exit 2", i);
  }
  const char *none[] = {"tls"};
  assert_int_equal(run_cli(1, none), CLI_USAGE);
  const char *noca[] = {"tls", "issue", "x", "--dir", "/nonexistent-gureum", "--ip", "10.0.0.1"};
  assert_int_equal(run_cli(7, noca), CLI_FAILED);
  const char *help[] = {"tls", "--help"};
  assert_int_equal(run_cli(2, help), CLI_OK);
}

static void file_bytes(const char *path, char *buf, size_t len) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  memset(buf, 0, len);
  assert_true(fread(buf, 1, len - 1, f) > 0);
  fclose(f);
}

/* `tls ensure`: makes what is missing, keeps (byte for byte) what exists and still fits,
 * refuses what does not fit, and remakes half a pair. */
static void test_ensure(void **state) {
  env_t *e = *state;
  char dir[160], path[256], before[4096], after[4096], why[512];
  snprintf(dir, sizeof dir, "%s/ensure", e->root);
  const char *first[] = {"tls", "ensure", "--dir", dir, "a=10.2.0.1", "b=10.2.0.2,10.2.0.22"};
  assert_int_equal(run_cli(6, first), CLI_OK);
  assert_int_equal(mode_of(dir), 0700);
  char ca[200], crt[200], key[200];
  snprintf(ca, sizeof ca, "%s/ca.crt", dir);
  snprintf(crt, sizeof crt, "%s/b.crt", dir);
  snprintf(key, sizeof key, "%s/b.key", dir);
  assert_int_equal(mode_of(key), 0600);
  assert_int_equal(tls_check_files(ca, crt, key, "10.2.0.22", why, sizeof why), 0);
  file_bytes(crt, before, sizeof before);
  /* Again, with one more node: the CA and b are kept as they are, c is made. */
  const char *again[] = {"tls", "ensure", "--dir", dir, "a=10.2.0.1", "b=10.2.0.2,10.2.0.22",
                         "c=10.2.0.3", "--json"};
  assert_int_equal(run_cli(8, again), CLI_OK);
  file_bytes(crt, after, sizeof after);
  assert_string_equal(before, after);
  snprintf(path, sizeof path, "%s/c.key", dir);
  assert_int_equal(mode_of(path), 0600);
  /* An existing certificate that does not name the address: refused, not replaced. */
  const char *moved[] = {"tls", "ensure", "--dir", dir, "b=10.2.0.9"};
  assert_int_equal(run_cli(5, moved), CLI_FAILED);
  file_bytes(crt, after, sizeof after);
  assert_string_equal(before, after);
  /* Half a pair (the certificate lost): a new pair. */
  unlink(crt);
  assert_int_equal(run_cli(6, first), CLI_OK);
  assert_int_equal(tls_check_files(ca, crt, key, "10.2.0.2", why, sizeof why), 0);
  /* Node files from another CA: refused. */
  tls_paths_t p;
  char err[512];
  tls_issue_opts_t o = {.dir = e->ca2, .name = "b", .days = 30, .nips = 1};
  o.ips[0] = "10.2.0.2";
  assert_int_equal(tls_issue(&o, &p, err, sizeof err), TLS_OK);
  char cp[600];
  snprintf(cp, sizeof cp, "cp %s/b.crt %s/b.key %s/", e->ca2, e->ca2, dir);
  assert_int_equal(system(cp), 0);
  int made = 1;
  o.dir = dir;
  assert_int_equal(tls_ensure_node(&o, &made, &p, err, sizeof err), TLS_EEXIST);
  assert_non_null(strstr(err, "--force"));
  assert_int_equal(made, 0);
  /* Half a CA: made anew only when no node files come from it. */
  snprintf(path, sizeof path, "%s/ca.key", dir);
  unlink(path);
  assert_int_equal(tls_ensure_ca(dir, &o, 1, &made, &p, err, sizeof err), TLS_ENOCA);
  assert_non_null(strstr(err, "ca.key"));
  char fresh[160];
  snprintf(fresh, sizeof fresh, "%s/fresh", e->root);
  assert_int_equal(tls_make_ca(fresh, 30, 0, &p, err, sizeof err), TLS_OK);
  unlink(p.key);
  tls_issue_opts_t n = {.dir = fresh, .name = "z", .days = 30, .nips = 1};
  n.ips[0] = "10.2.0.5";
  assert_int_equal(tls_ensure_ca(fresh, &n, 1, &made, &p, err, sizeof err), TLS_OK);
  assert_int_equal(made, 1);
  assert_int_equal(tls_ensure_node(&n, &made, &p, err, sizeof err), TLS_OK);
  assert_int_equal(made, 1);
  /* Usage errors. */
  const char *bad[][6] = {
      {"tls", "ensure", "--dir", dir, NULL, NULL},                  /* no NAME=IP */
      {"tls", "ensure", "--dir", dir, "a", NULL},                   /* no =IP */
      {"tls", "ensure", "--dir", dir, "a=10.2.0", NULL},            /* bad address */
      {"tls", "ensure", "--dir", dir, "a=10.2.0.1", "a=10.2.0.2"},  /* twice */
      {"tls", "ensure", "--dir", dir, "ca=10.2.0.1", NULL},         /* reserved name */
      {"tls", "ensure", "--force", "a=10.2.0.1", NULL, NULL},       /* --force */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int argc = 0;
    while (argc < 6 && bad[i][argc]) argc++;
    if (run_cli(argc, bad[i]) != CLI_USAGE) fail_msg("bad ensure case %zu did not exit 2", i);
  }
}

static void test_nng_configs(void **state) {
  env_t *e = *state;
  char err[256];
  tls_creds_t *c = tls_creds_load(e->n1.ca, e->n1.cert, e->n1.key, err, sizeof err);
  assert_non_null(c);
  nng_tls_config *cfg = NULL;
  assert_int_equal(tls_nng_config(c, 1, NULL, &cfg), 0);
  nng_tls_config_free(cfg);
  assert_int_equal(tls_nng_config(c, 0, "10.0.0.1", &cfg), 0);
  nng_tls_config_free(cfg);
  assert_ptr_equal(tls_creds_hold(c), c);
  tls_creds_release(c);
  tls_creds_release(c);
  /* A certificate where the key should be: NNG refuses, and nothing leaks. */
  c = tls_creds_load(e->n1.ca, e->n1.cert, e->n1.cert, err, sizeof err);
  assert_non_null(c);
  assert_int_not_equal(tls_nng_config(c, 1, NULL, &cfg), 0);
  tls_creds_release(c);
  assert_null(tls_creds_load(e->n1.ca, e->n1.cert, "/nonexistent/key", err, sizeof err));
  assert_non_null(strstr(err, "/nonexistent/key"));
}

/* tls.* in the config: all three or none, checked files, errors naming the key. */
static void test_config_keys(void **state) {
  env_t *e = *state;
  config_t c;
  char err[700];
  config_defaults(&c);
  assert_int_equal(config_finish(&c, err, sizeof err), 0);
  assert_false(config_has_tls(&c));

  config_defaults(&c);
  assert_int_equal(config_set(&c, "tls.ca", e->n1.ca, NULL, err, sizeof err), 0);
  assert_int_equal(config_set(&c, "tls.cert", e->n1.cert, NULL, err, sizeof err), 0);
  assert_int_equal(config_finish(&c, err, sizeof err), -1);
  assert_non_null(strstr(err, "key 'tls.key'"));

  assert_int_equal(config_set(&c, "tls.key", e->n1.key, NULL, err, sizeof err), 0);
  assert_int_equal(config_finish(&c, err, sizeof err), -1); /* 127.0.0.1 is not in the cert */
  assert_non_null(strstr(err, "key 'tls.cert'"));
  assert_non_null(strstr(err, "127.0.0.1"));

  assert_int_equal(config_set(&c, "advertise", "10.0.0.1", NULL, err, sizeof err), 0);
  if (config_finish(&c, err, sizeof err) != 0) fail_msg("valid tls config refused: %s", err);
  assert_true(config_has_tls(&c));

  assert_int_equal(config_set(&c, "tls.ca", e->other.ca, NULL, err, sizeof err), 0);
  assert_int_equal(config_finish(&c, err, sizeof err), -1);
  assert_non_null(strstr(err, "key 'tls.cert'"));

  char *const envp[] = {"GUREUM_TLS_KEY=/nonexistent/n1.key", NULL};
  assert_int_equal(config_set(&c, "tls.ca", e->n1.ca, NULL, err, sizeof err), 0);
  assert_int_equal(config_load_env(&c, envp, err, sizeof err), 0);
  assert_int_equal(config_finish(&c, err, sizeof err), -1);
  assert_non_null(strstr(err, "key 'tls.key'"));
  assert_non_null(strstr(err, "cannot read"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_ca_files, setup, teardown),
      cmocka_unit_test_setup_teardown(test_node_cert, setup, teardown),
      cmocka_unit_test_setup_teardown(test_wrong_ca_does_not_verify, setup, teardown),
      cmocka_unit_test_setup_teardown(test_check_faults, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
      cmocka_unit_test_setup_teardown(test_overwrite, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cli_exit_codes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ensure, setup, teardown),
      cmocka_unit_test_setup_teardown(test_nng_configs, setup, teardown),
      cmocka_unit_test_setup_teardown(test_config_keys, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
